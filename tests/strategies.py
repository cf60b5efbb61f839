"""Hypothesis strategies: random sales organisations (as policy documents) and requests."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

from salesauthz import Record, Share
from salesauthz._rules import Rule
from salesauthz.models import DomainDocument, compile_document

FIXED_NOW = 1_900_000_000.0  # 2030-03-17: grants expire either side of it

# Names include the hostile and the non-Latin on purpose.
NAME_POOL = [
    "east", "west", "east-1", "华东一组", "o'brien", 'a"b', "x,y", "semi;colon", "dash--dash",
    "back\\slash", "tab\there", "new\nline", "pct%s", ":colon", "custom:trick", "UPPER", "z" * 60,
]
RESOURCES = {"customer": ["read", "update", "export"], "order": ["read", "approve"]}
# What permissions may name: the declared resources plus the built-in administrative rights.
PERMISSION_TYPES = {**RESOURCES, "account": ["manage"], "role": ["escalate"]}
SCOPES = ["own", "team", "department_tree", "all"]
RECORD_MODEL_SCOPES = [*SCOPES, "shared", "subordinates", "subordinate_tree"]
SHARE_LEVELS = {"customer": {"ro": ["read"], "rw": ["read", "update"], "full": ["read", "update",
                                                                                  "export"]},
                "order": {"view": ["read"]}}


@dataclass
class Organisation:
    documents: list[dict[str, Any]]
    rules: list[Rule]

    @property
    def domains(self) -> list[str]:
        return [d["domain"] for d in self.documents]

    def accounts(self, domain: str) -> list[str]:
        return next(list(d["accounts"]) for d in self.documents if d["domain"] == domain)

    def departments(self, domain: str) -> list[str]:
        return next(list(d["departments"]) for d in self.documents if d["domain"] == domain)

    def document(self, domain: str) -> dict[str, Any]:
        return next(d for d in self.documents if d["domain"] == domain)

    def relatives(self, domain: str, account: str) -> tuple[list[str], list[str]]:
        """The departments strictly below ``account``'s own (main and auxiliary), and its own
        with their ancestors: records there are where team, department_tree and custom scopes
        differ."""
        document = self.document(domain)
        spec = document["accounts"].get(account) or {}
        homes = [h for h in [spec.get("department"), *spec.get("also_in", [])] if h is not None]
        if not homes:
            return [], []
        parent_of = {d: (spec or {}).get("parent") for d, spec in document["departments"].items()}
        below = [d for d in parent_of if d not in homes
                 and any(_below(parent_of, d, home) for home in homes)]
        above: list[str] = []
        for home in homes:
            ancestor: str | None = home
            while ancestor is not None and ancestor not in above:
                above.append(ancestor)
                ancestor = parent_of.get(ancestor)
        return below, above

    def reports_below(self, domain: str, account: str) -> list[str]:
        """Everyone below ``account`` in the reporting line, the deepest first."""
        accounts = self.document(domain)["accounts"]
        found: list[str] = []
        level = [account]
        while level:
            level = [name for name, spec in accounts.items()
                     if (spec or {}).get("reports_to") in level and name not in found]
            found = level + found
        return found

    def held_keys(self, domain: str, account: str) -> list[tuple[str, str]]:
        """The ``(type, action)`` pairs the account's roles (inherited too) and grants name."""
        document = self.document(domain)
        spec = document["accounts"].get(account) or {}
        sets = list(spec.get("grants", []))
        for department in self.relatives(domain, account)[1]:  # grants to its departments
            sets += (document["departments"].get(department) or {}).get("grants", [])
        roles = [r if isinstance(r, str) else r["role"] for r in spec.get("roles", [])]
        seen: set[str] = set()
        while roles:
            role = roles.pop()
            if role in seen:
                continue
            seen.add(role)
            body = document["roles"].get(role) or {}
            sets += body.get("permissions", [])
            roles += body.get("inherits", [])
        keys = []
        for permission_set in sets:
            for typ, actions in permission_set.items():
                if typ in ("scope", "expires", "where", "requires"):
                    continue
                for kind in (PERMISSION_TYPES if typ == "*" else [typ]):
                    pool = PERMISSION_TYPES.get(kind, [])
                    keys += [(kind, a) for a in (pool if "*" in actions else actions) if a in pool]
        return sorted(set(keys))


def _below(parent_of: dict[str, Any], department: str | None, top: str) -> bool:
    seen: set[str] = set()
    while department is not None and department not in seen:
        if department == top:
            return True
        seen.add(department)
        department = parent_of.get(department)
    return False


def _unique(draw: st.DrawFn, prefix: str, n: int) -> list[str]:
    chosen: list[str] = []
    for i in range(n):
        if draw(st.booleans()):
            candidate = draw(st.sampled_from(NAME_POOL))
            if candidate not in chosen:
                chosen.append(prefix + candidate)
                continue
        chosen.append(f"{prefix}{i}")
    return list(dict.fromkeys(chosen))


EXPIRIES = (FIXED_NOW - 3600.0, FIXED_NOW + 3600.0)
"""Grant expiries the default generators draw from (either side of FIXED_NOW)."""


REGIONS = ["East", "West", "North"]
AMOUNTS = [100, 200]  # thresholds; records draw amounts either side of and equal to them
REQUIREMENTS: list[dict[str, Any]] = [
    {"mfa": True}, {"mfa": 2}, {"ip": ["10.0.0.0/8"]}, {"ip": ["192.168.1.0/24", "10.1.0.0/16"]},
    {"hours": "Mon-Fri 08:00-20:00"}, {"hours": "Sat-Sun 00:00-12:00"}, {"mfa": True, "ip": ["10.0.0.0/8"]},
]
TIME_ZONES = ["UTC", "Asia/Shanghai", "America/New_York"]
# 2030-03-18 (a Monday) at 07:30, 12:00 and 21:00 UTC, and the Saturday after at 09:00 UTC.
MOMENTS = [1_900_050_600.0, 1_900_065_600.0, 1_900_098_000.0, 1_900_486_800.0]


@st.composite
def where_clauses(draw: st.DrawFn) -> dict[str, Any]:
    """A ``where:`` mapping over ``region`` (text), ``amount`` (int) and ``owner``."""
    choices: list[tuple[str, Any]] = [
        ("region", draw(st.sampled_from(REGIONS))),
        ("region", {"in": draw(st.lists(st.sampled_from(REGIONS), min_size=1, max_size=2,
                                        unique=True))}),
        ("region", {"in": "account.territories"}),
        ("region", "account.home_region"),
        ("region", {"null": draw(st.booleans())}),
        ("amount", {draw(st.sampled_from(["lt", "le", "gt", "ge"])): draw(st.sampled_from(AMOUNTS))}),
        ("amount", {draw(st.sampled_from(["lt", "le", "gt", "ge"])): "account.limit"}),
        ("amount", draw(st.sampled_from(AMOUNTS))),
        ("owner", None),
    ]
    picked = draw(st.lists(st.sampled_from(choices), min_size=1, max_size=2,
                           unique_by=lambda c: c[0]))
    return dict(picked)


@st.composite
def account_attributes(draw: st.DrawFn) -> dict[str, Any]:
    found: dict[str, Any] = {}
    if draw(st.integers(0, 3)):
        found["territories"] = draw(st.lists(st.sampled_from(REGIONS), max_size=2, unique=True))
    if draw(st.booleans()):
        found["home_region"] = draw(st.sampled_from(REGIONS))
    if draw(st.booleans()):
        found["limit"] = draw(st.sampled_from(AMOUNTS))
    return found


@st.composite
def record_attributes(draw: st.DrawFn) -> dict[str, Any] | None:
    if draw(st.integers(0, 5)) == 0:
        return None
    found: dict[str, Any] = {}
    if draw(st.integers(0, 4)):
        found["region"] = draw(st.sampled_from([*REGIONS, None, "east", 1]))
    if draw(st.integers(0, 4)):
        found["amount"] = draw(st.sampled_from([99, 100, 101, 199, 200, 201, 150.5, "100", True,
                                                None]))
    return found


@st.composite
def contexts(draw: st.DrawFn) -> dict[str, Any] | None:
    """A request context (``None`` half as often as not): mfa, ip and now, each maybe missing."""
    if draw(st.integers(0, 2)) == 0:
        return None
    found: dict[str, Any] = {}
    if draw(st.booleans()):
        found["mfa"] = draw(st.sampled_from([True, False, 1, 2, 3]))
    if draw(st.booleans()):
        found["ip"] = draw(st.sampled_from(["10.1.2.3", "192.168.1.7", "172.16.0.1", "::1",
                                           "not an address"]))
    if draw(st.booleans()):
        found["now"] = draw(st.sampled_from(MOMENTS))
    return found


@st.composite
def permission_sets(draw: st.DrawFn, departments: list[str], *, grant: bool,
                    expiries: tuple[float, ...] = EXPIRIES,
                    scopes: list[str] = SCOPES, conditions: bool = False) -> dict[str, Any]:
    scope: Any = draw(st.sampled_from([*scopes, "custom"] if departments else scopes))
    if scope == "custom":
        scope = {"custom": draw(st.lists(st.sampled_from(departments), min_size=1, max_size=2,
                                         unique=True))}
    body: dict[str, Any] = {"scope": scope}
    types = draw(st.lists(st.sampled_from([*PERMISSION_TYPES, "*"]), min_size=1, max_size=2,
                          unique=True))
    for typ in types:
        pool = ["*"] + (sorted({a for acts in PERMISSION_TYPES.values() for a in acts})
                        if typ == "*" else PERMISSION_TYPES[typ])
        body[typ] = draw(st.lists(st.sampled_from(pool), min_size=1, max_size=2, unique=True))
    if grant and draw(st.booleans()):
        body["expires"] = draw(st.sampled_from(expiries))
    if conditions:
        if draw(st.integers(0, 2)) != 0:
            body["where"] = draw(where_clauses())
        if draw(st.integers(0, 2)) == 0:
            body["requires"] = draw(st.sampled_from(REQUIREMENTS))
    return body


MODES = ["visible", "readonly", "hidden"]


@st.composite
def field_rules(draw: st.DrawFn, scopes: list[str] = SCOPES) -> dict[str, Any]:
    specs: dict[str, Any] = {}
    for field_name in draw(st.lists(st.sampled_from(["phone", "value", "x,y"]), unique=True,
                                    max_size=2)):
        if draw(st.booleans()):
            specs[field_name] = draw(st.sampled_from(MODES))
        else:
            spec: dict[str, Any] = {"mode": draw(st.sampled_from(MODES)),
                                    "scope": draw(st.sampled_from(scopes))}
            if draw(st.booleans()):
                spec["otherwise"] = draw(st.sampled_from(MODES))
            specs[field_name] = spec
    return {"customer": specs} if specs else {}


@st.composite
def domain_documents(draw: st.DrawFn, name: str, expiries: tuple[float, ...] = EXPIRIES,
                     record_model: bool = False, conditions: bool = False) -> dict[str, Any]:
    """One domain document; with ``record_model``, also share levels, the record-model scopes,
    auxiliary departments, reporting lines, timed role assignments and grants to departments
    (expiring ones too); with ``conditions``,
    record and account attributes, ``where:`` conditions, ``requires:`` and a time zone."""
    scopes = RECORD_MODEL_SCOPES if record_model else SCOPES
    departments = _unique(draw, "d:", draw(st.integers(0, 6)))
    tree: dict[str, Any] = {}
    for i, dept in enumerate(departments):
        # Often the previous department: deep chains, so many accounts sit in non-leaf departments.
        choices = [None, *departments[:i]] if i else [None]
        parent = draw(st.sampled_from([departments[i - 1], *choices])) if i else None
        tree[dept] = {"parent": parent} if parent else {}
    if record_model:
        for dept in departments:
            if draw(st.integers(0, 2)) == 0:
                tree[dept]["grants"] = draw(st.lists(permission_sets(
                    departments, grant=True, expiries=expiries, scopes=scopes,
                    conditions=conditions), min_size=1, max_size=2))
    roles = _unique(draw, "r:", draw(st.integers(1, 5)))
    role_docs: dict[str, Any] = {}
    for i, role in enumerate(roles):
        role_docs[role] = {
            "inherits": draw(st.lists(st.sampled_from(roles[:i]), unique=True, max_size=2)) if i else [],
            "permissions": draw(st.lists(permission_sets(departments, grant=False, scopes=scopes,
                                                         conditions=conditions),
                                         max_size=3)),
            "fields": draw(field_rules(scopes)),
        }
    accounts = _unique(draw, "u:", draw(st.integers(1, 7)))
    account_docs: dict[str, Any] = {}
    for i, account in enumerate(accounts):
        assigned: list[Any] = draw(st.lists(st.sampled_from(roles), unique=True, max_size=2))
        if record_model:
            assigned = [{"role": r, "expires": draw(st.sampled_from(expiries))}
                        if draw(st.integers(0, 2)) == 0 else r for r in assigned]
        doc: dict[str, Any] = {
            "roles": assigned,
            "status": draw(st.sampled_from(["active"] * 5 + ["frozen", "deactivated"])),
            "grants": draw(st.lists(permission_sets(departments, grant=True, expiries=expiries,
                                                    scopes=scopes, conditions=conditions),
                                    max_size=2)),
        }
        if conditions:
            doc["attributes"] = draw(account_attributes())
        if departments and draw(st.integers(0, 5)) != 0:
            # Departments with sub-departments twice as likely: where team and tree differ.
            parents = [spec["parent"] for spec in tree.values() if spec.get("parent")]
            doc["department"] = draw(st.sampled_from(departments + parents))
        if i and draw(st.booleans()):
            doc["parent"] = draw(st.sampled_from(accounts[:i]))
        if record_model:
            if departments:
                doc["also_in"] = draw(st.lists(st.sampled_from(departments), unique=True,
                                               max_size=2))
            if i and draw(st.integers(0, 2)) != 0:  # earlier accounts only: no cycles
                doc["reports_to"] = draw(st.sampled_from(accounts[:i]))
        account_docs[account] = doc
    document = {"domain": name, "resources": RESOURCES, "departments": tree, "roles": role_docs,
                "accounts": account_docs}
    if record_model:
        document["sharing"] = {typ: {level: actions for level, actions in levels.items()
                                     if draw(st.integers(0, 3)) != 0}
                               for typ, levels in SHARE_LEVELS.items() if draw(st.booleans())
                               or typ == "customer"}
    if conditions:
        document["resources"] = {typ: {"actions": actions,
                                       "attributes": {"region": "str", "amount": "int"}}
                                 for typ, actions in RESOURCES.items()}
        zone = draw(st.sampled_from([None, *TIME_ZONES]))
        if zone is not None:
            document["time_zone"] = zone
    return document


@st.composite
def organisations(draw: st.DrawFn, expiries: tuple[float, ...] = EXPIRIES,
                  record_model: bool = False, conditions: bool = False) -> Organisation:
    names = draw(st.sampled_from([["acme"], ["acme", "华东 Corp"]]))
    documents = [draw(domain_documents(name, expiries, record_model, conditions))
                 for name in names]
    rules: list[Rule] = []
    for document in documents:
        rules.extend(compile_document(DomainDocument.model_validate(document)))
    return Organisation(documents, rules)


@st.composite
def requests(draw: st.DrawFn, org: Organisation,
             conditions: bool = False) -> tuple[str, str, Record, str]:
    domain = draw(st.sampled_from([*org.domains, "nowhere"]))
    known = org.accounts(domain) if domain in org.domains else ["ghost"]
    depts = org.departments(domain) if domain in org.domains else []
    account = draw(st.sampled_from([*known, "ghost"]))
    action = draw(st.sampled_from(["read", "update", "export", "approve", "manage", "frob"]))
    typ = draw(st.sampled_from(["customer", "order", "account", "widget"]))
    held = org.held_keys(domain, account) if domain in org.domains and account in known else []
    prefer_held, prefer_near, prefer_below = (draw(st.booleans()) for _ in range(3))
    if held and prefer_held:  # half the time, something the account holds in some scope
        typ, action = draw(st.sampled_from(held))
    owner = draw(st.sampled_from([*known, None, "ghost"]))
    below_me = org.reports_below(domain, account) if domain in org.domains else []
    if len(below_me) > 0 and draw(st.booleans()):  # someone in the asker's reporting line, often deep
        owner = draw(st.sampled_from(below_me))
    below, above = org.relatives(domain, account) if domain in org.domains and account in known \
        else ([], [])
    # Half the time a department related to the asker's: below it (where team and
    # department_tree differ), or its own and above.
    pool: list[str | None] = [None, None, *depts, "d:nowhere"]
    if above and prefer_near:
        pool = list(below if below and prefer_below else above)
    department = draw(st.sampled_from(pool))
    shares = draw(record_shares(org, domain, account))
    attributes = draw(record_attributes()) if conditions else None
    return account, action, Record(typ, owner=owner, department=department, shares=shares,
                                   attributes=attributes), domain


@st.composite
def record_shares(draw: st.DrawFn, org: Organisation, domain: str,
                  account: str) -> tuple[Share, ...]:
    """Shares for a record (none when the domain declares no share levels), biased towards
    naming the asker, its departments and the departments above them."""
    if domain not in org.domains or not org.document(domain).get("sharing"):
        return ()
    document = org.document(domain)
    levels = sorted({lv for by_type in document["sharing"].values() for lv in by_type} | {"bogus"})
    near = org.relatives(domain, account)[1]
    accounts = [*org.accounts(domain), "ghost"]
    departments = [*org.departments(domain), "d:nowhere"]
    found: list[Share] = []
    for _ in range(draw(st.integers(0, 3))):
        level = draw(st.sampled_from(levels))
        choice = draw(st.integers(0, 3))
        if choice == 0:
            found.append(Share(level, account=account))
        elif choice == 1 and near:
            found.append(Share(level, department=draw(st.sampled_from(near))))
        elif choice == 2:
            found.append(Share(level, account=draw(st.sampled_from(accounts))))
        else:
            found.append(Share(level, department=draw(st.sampled_from(departments))))
    return tuple(found)
