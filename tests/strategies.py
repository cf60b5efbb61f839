"""Hypothesis strategies: random sales organisations (as policy documents) and requests."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

from salesauthz import Record
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
        """The departments strictly below ``account``'s own, and its own with its ancestors:
        records there are where team, department_tree and custom scopes differ."""
        document = self.document(domain)
        home = (document["accounts"].get(account) or {}).get("department")
        if home is None:
            return [], []
        parent_of = {d: (spec or {}).get("parent") for d, spec in document["departments"].items()}
        below = [d for d in parent_of if d != home and _below(parent_of, d, home)]
        above = [home]
        ancestor = parent_of.get(home)
        while ancestor is not None and ancestor not in above:
            above.append(ancestor)
            ancestor = parent_of.get(ancestor)
        return below, above

    def held_keys(self, domain: str, account: str) -> list[tuple[str, str]]:
        """The ``(type, action)`` pairs the account's roles (inherited too) and grants name."""
        document = self.document(domain)
        spec = document["accounts"].get(account) or {}
        sets = list(spec.get("grants", []))
        roles, seen = list(spec.get("roles", [])), set()
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
                if typ in ("scope", "expires"):
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


@st.composite
def permission_sets(draw: st.DrawFn, departments: list[str], *, grant: bool,
                    expiries: tuple[float, ...] = EXPIRIES) -> dict[str, Any]:
    scope: Any = draw(st.sampled_from([*SCOPES, "custom"] if departments else SCOPES))
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
    return body


MODES = ["visible", "readonly", "hidden"]


@st.composite
def field_rules(draw: st.DrawFn) -> dict[str, Any]:
    specs: dict[str, Any] = {}
    for field_name in draw(st.lists(st.sampled_from(["phone", "value", "x,y"]), unique=True,
                                    max_size=2)):
        if draw(st.booleans()):
            specs[field_name] = draw(st.sampled_from(MODES))
        else:
            spec: dict[str, Any] = {"mode": draw(st.sampled_from(MODES)),
                                    "scope": draw(st.sampled_from(SCOPES))}
            if draw(st.booleans()):
                spec["otherwise"] = draw(st.sampled_from(MODES))
            specs[field_name] = spec
    return {"customer": specs} if specs else {}


@st.composite
def domain_documents(draw: st.DrawFn, name: str,
                     expiries: tuple[float, ...] = EXPIRIES) -> dict[str, Any]:
    departments = _unique(draw, "d:", draw(st.integers(0, 6)))
    tree: dict[str, Any] = {}
    for i, dept in enumerate(departments):
        # Often the previous department: deep chains, so many accounts sit in non-leaf departments.
        choices = [None, *departments[:i]] if i else [None]
        parent = draw(st.sampled_from([departments[i - 1], *choices])) if i else None
        tree[dept] = {"parent": parent} if parent else {}
    roles = _unique(draw, "r:", draw(st.integers(1, 5)))
    role_docs: dict[str, Any] = {}
    for i, role in enumerate(roles):
        role_docs[role] = {
            "inherits": draw(st.lists(st.sampled_from(roles[:i]), unique=True, max_size=2)) if i else [],
            "permissions": draw(st.lists(permission_sets(departments, grant=False), max_size=3)),
            "fields": draw(field_rules()),
        }
    accounts = _unique(draw, "u:", draw(st.integers(1, 7)))
    account_docs: dict[str, Any] = {}
    for i, account in enumerate(accounts):
        doc: dict[str, Any] = {
            "roles": draw(st.lists(st.sampled_from(roles), unique=True, max_size=2)),
            "status": draw(st.sampled_from(["active"] * 5 + ["frozen", "deactivated"])),
            "grants": draw(st.lists(permission_sets(departments, grant=True, expiries=expiries),
                                    max_size=2)),
        }
        if departments and draw(st.integers(0, 5)) != 0:
            # Departments with sub-departments twice as likely: where team and tree differ.
            parents = [spec["parent"] for spec in tree.values() if spec.get("parent")]
            doc["department"] = draw(st.sampled_from(departments + parents))
        if i and draw(st.booleans()):
            doc["parent"] = draw(st.sampled_from(accounts[:i]))
        account_docs[account] = doc
    return {"domain": name, "resources": RESOURCES, "departments": tree, "roles": role_docs,
            "accounts": account_docs}


@st.composite
def organisations(draw: st.DrawFn, expiries: tuple[float, ...] = EXPIRIES) -> Organisation:
    names = draw(st.sampled_from([["acme"], ["acme", "华东 Corp"]]))
    documents = [draw(domain_documents(name, expiries)) for name in names]
    rules: list[Rule] = []
    for document in documents:
        rules.extend(compile_document(DomainDocument.model_validate(document)))
    return Organisation(documents, rules)


@st.composite
def requests(draw: st.DrawFn, org: Organisation) -> tuple[str, str, Record, str]:
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
    below, above = org.relatives(domain, account) if domain in org.domains and account in known \
        else ([], [])
    # Half the time a department related to the asker's: below it (where team and
    # department_tree differ), or its own and above.
    pool: list[str | None] = [None, None, *depts, "d:nowhere"]
    if above and prefer_near:
        pool = list(below if below and prefer_below else above)
    department = draw(st.sampled_from(pool))
    return account, action, Record(typ, owner=owner, department=department), domain
