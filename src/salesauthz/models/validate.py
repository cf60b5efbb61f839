"""Semantic validation of policy documents: every reference resolves, no cycles, no clashes.

Structural errors (wrong types, unknown keys) come from pydantic; this module checks what a
schema cannot: that names refer to things that exist, in the same domain.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from pydantic import ValidationError

from salesauthz import _rules as R
from salesauthz._rules import Rule
from salesauthz.errors import PolicyError, PolicyIssue

from ._yaml import Path, Positions, position_of
from .documents import (
    AccountDocument,
    CustomScope,
    DomainDocument,
    FieldRuleDocument,
    PermissionSet,
    RoleDocument,
)

__all__ = ["SINGLE_VALUED", "SourcedDocument", "issues_from_validation_error", "single_valued_key",
           "stored_rule_issues", "validate_documents", "validate_rules"]


@dataclass(slots=True)
class SourcedDocument:
    """A parsed document with where it came from."""

    document: DomainDocument
    file: str | None = None
    positions: Positions = field(default_factory=dict)

    def issue(self, path: Path, message: str, hint: str | None = None, code: str = "SA110") -> PolicyIssue:
        line, column = position_of(self.positions, path)
        return PolicyIssue(message, self.file, line, column, hint, code)


def issues_from_validation_error(
    error: ValidationError, file: str | None, positions: Positions
) -> list[PolicyIssue]:
    """pydantic errors as located policy issues (one per offending value)."""
    issues: list[PolicyIssue] = []
    seen: set[Path] = set()
    odd_keys: dict[tuple[object, ...], object] | None = None  # built at the first use
    for item in error.errors():
        loc = tuple(item["loc"])
        # Drop pydantic's union-branch tags so the path points at the document's own keys.
        path = tuple(p for p in loc if not (isinstance(p, str) and ("[" in p or p == "CustomScope")))
        if path in seen:
            continue
        seen.add(path)
        hint = _hint_for(item["type"], path)
        if odd_keys is None:
            odd_keys = _odd_keys(positions)
        if odd_keys:
            path = _keyed(path, odd_keys)
            if path and (isinstance(path[-1], bool) or path[-1] is None):
                hint = "YAML reads yes/no/on/off/true/false as booleans and ~ or null as nothing: " \
                       "quote a name that is one of these words ('no')"
        line, column = position_of(positions, path)
        # repr() for a part that would not print as itself (a newline, a lone surrogate …).
        where = ".".join(str(p) if str(p).isprintable() else repr(p) for p in path) or "document"
        message = item["msg"]
        if item["type"] == "extra_forbidden":
            message = f"unknown key {path[-1]!r}"
        elif message.startswith("Value error, "):
            message = message[len("Value error, "):]
        issues.append(PolicyIssue(f"{where}: {message}", file, line, column, hint, "SA102"))
    return issues


def _odd_keys(positions: Positions) -> dict[tuple[object, ...], object]:
    """The document's mapping keys that are neither text nor numbers (``~``, ``no``, a date),
    indexed as pydantic writes them in an error's location: bools as 0 or 1, the others by
    repr, after their parent's path."""
    found: dict[tuple[object, ...], object] = {}
    for path in positions:
        if path and (isinstance(path[-1], bool) or not isinstance(path[-1], str | int)):
            key: object = path[-1]
            found[(path[:-1], int(key) if isinstance(key, bool) else repr(key))] = key
    return found


def _keyed(path: Path, odd_keys: dict[tuple[object, ...], object]) -> Any:
    """``path`` with each part pydantic rewrote replaced by the document's own key."""
    keyed: tuple[object, ...] = ()
    for part in path:
        keyed = (*keyed, odd_keys.get((keyed, part), part))
    return keyed


def _hint_for(error_type: str, path: Path) -> str | None:
    if error_type == "extra_forbidden":
        return "check the spelling; the policy file reference lists every key"
    if error_type in ("list_type", "dict_type", "model_type"):
        return "see the policy file reference for the expected shape"
    if error_type == "missing":
        return f"add the required key {path[-1]!r}" if path else None
    return None


def validate_documents(documents: Sequence[SourcedDocument]) -> list[PolicyIssue]:
    """Every semantic problem across the documents (empty when they are sound)."""
    issues: list[PolicyIssue] = []
    seen_domains: dict[str, SourcedDocument] = {}
    for sourced in documents:
        name = sourced.document.domain
        if name in seen_domains:
            first = seen_domains[name].file or "<rules>"
            issues.append(sourced.issue(("domain",), f"domain {name!r} is already defined in {first}",
                                        "put each domain in exactly one file", "SA111"))
            continue
        seen_domains[name] = sourced
        issues.extend(_validate_domain(sourced, {d.document.domain: d for d in documents}))
    return issues


def _validate_domain(src: SourcedDocument, all_domains: dict[str, SourcedDocument]) -> list[PolicyIssue]:
    doc = src.document
    issues: list[PolicyIssue] = []
    add = issues.append
    if doc.domain == R.WILDCARD:
        add(src.issue(("domain",), "'*' is not a valid domain name", code="SA112"))

    # Vocabulary.
    vocabulary: dict[str, set[str]] = {t: set(a) for t, a in R.BUILTIN_VOCABULARY.items()}
    for typ, actions in doc.resources.items():
        if typ in R.BUILTIN_VOCABULARY:
            add(src.issue(("resources", typ), f"resource type {typ!r} is built in and cannot be redeclared",
                          "remove it from resources; account:manage and role:escalate always exist",
                          "SA112"))
            continue
        if typ in (R.WILDCARD, "scope", "expires"):
            add(src.issue(("resources", typ), f"{typ!r} is reserved and cannot name a resource type",
                          code="SA112"))
        for i, action in enumerate(actions):
            if action == R.WILDCARD:
                add(src.issue(("resources", typ, i), "'*' is a wildcard, not an action",
                              "list the real actions; permissions may then use '*'", "SA112"))
        if len(set(actions)) != len(actions):
            add(src.issue(("resources", typ), f"resource type {typ!r} lists an action twice", code="SA103"))
        vocabulary[typ] = set(actions)

    for typ in doc.fields:
        if typ not in vocabulary:
            add(src.issue(("fields", typ), f"fields declared for unknown resource type {typ!r}",
                          "declare the type under `resources` first", "SA160"))

    # Departments: references and cycles.
    departments = doc.departments
    for name, dept in departments.items():
        parent = dept.parent if dept is not None else None
        if parent is not None and parent not in departments:
            add(src.issue(("departments", name, "parent"),
                          f"department {name!r} names unknown parent department {parent!r}",
                          _elsewhere(parent, "departments", all_domains, doc.domain), "SA120"))
    for cycle_start in _cycles({n: [d.parent] if d is not None and d.parent else []
                                for n, d in departments.items()}):
        add(src.issue(("departments", cycle_start),
                      f"the department tree has a cycle through {cycle_start!r}",
                      "a department cannot be below itself; fix the parent chain", "SA121"))

    # Roles.
    roles = doc.roles
    overlap = set(roles) & set(doc.accounts)
    for name in sorted(overlap):
        add(src.issue(("accounts", name), f"{name!r} is both a role and an account",
                      "roles and accounts share one namespace per domain; rename one", "SA113"))
    for name, role in roles.items():
        role = role or RoleDocument()
        for i, inherited in enumerate(role.inherits):
            if inherited not in roles:
                add(src.issue(("roles", name, "inherits", i),
                              f"role {name!r} inherits unknown role {inherited!r}",
                              _elsewhere(inherited, "roles", all_domains, doc.domain), "SA130"))
        for i, pset in enumerate(role.permissions):
            issues.extend(_validate_permission_set(src, ("roles", name, "permissions", i), pset,
                                                   vocabulary, departments, grant=False))
        for typ, specs in role.fields.items():
            if typ not in vocabulary:
                add(src.issue(("roles", name, "fields", typ),
                              f"field rules name unknown resource type {typ!r}",
                              "declare it under `resources`", "SA160"))
                continue
            declared = doc.fields.get(typ)
            for field_name, spec in specs.items():
                if declared is not None and field_name not in declared:
                    add(src.issue(("roles", name, "fields", typ, field_name),
                                  f"unknown field {field_name!r} of {typ!r}",
                                  f"declared fields: {', '.join(declared)}", "SA161"))
                if isinstance(spec, FieldRuleDocument) and isinstance(spec.scope, CustomScope):
                    for dept_name in spec.scope.custom:
                        if dept_name not in departments:
                            add(src.issue(("roles", name, "fields", typ, field_name, "scope"),
                                          f"custom scope names unknown department {dept_name!r}",
                                          "list departments defined under `departments`", "SA120"))
    for cycle_start in _cycles({n: list((r or RoleDocument()).inherits) for n, r in roles.items()}):
        add(src.issue(("roles", cycle_start),
                      f"role inheritance has a cycle through {cycle_start!r}",
                      "a role cannot inherit itself, directly or through other roles", "SA131"))

    # Accounts.
    accounts = doc.accounts
    for name, account in accounts.items():
        account = account or AccountDocument()
        if account.department is not None and account.department not in departments:
            add(src.issue(("accounts", name, "department"),
                          f"account {name!r} is in unknown department {account.department!r}",
                          _elsewhere(account.department, "departments", all_domains, doc.domain), "SA120"))
        for i, role_name in enumerate(account.roles):
            if role_name not in roles:
                add(src.issue(("accounts", name, "roles", i),
                              f"account {name!r} is assigned unknown role {role_name!r}",
                              _elsewhere(role_name, "roles", all_domains, doc.domain), "SA130"))
        if len(set(account.roles)) != len(account.roles):
            add(src.issue(("accounts", name, "roles"), f"account {name!r} lists a role twice", code="SA103"))
        if account.parent is not None:
            if account.parent == name:
                add(src.issue(("accounts", name, "parent"), f"account {name!r} cannot be its own parent",
                              code="SA141"))
            elif account.parent not in accounts:
                add(src.issue(("accounts", name, "parent"),
                              f"sub-account {name!r} names unknown parent account {account.parent!r}",
                              _elsewhere(account.parent, "accounts", all_domains, doc.domain), "SA140"))
        for i, pset in enumerate(account.grants):
            issues.extend(_validate_permission_set(src, ("accounts", name, "grants", i), pset,
                                                   vocabulary, departments, grant=True))
    for cycle_start in _cycles({n: [a.parent] if a is not None and a.parent else []
                                for n, a in accounts.items()}):
        if (accounts[cycle_start] or AccountDocument()).parent != cycle_start:
            add(src.issue(("accounts", cycle_start, "parent"),
                          f"the sub-account chain has a cycle through {cycle_start!r}",
                          "an account cannot be below itself; fix the parent chain", "SA141"))
    return issues


def _validate_permission_set(src: SourcedDocument, path: Path, pset: PermissionSet,
                             vocabulary: dict[str, set[str]], departments: Mapping[str, object],
                             *, grant: bool) -> list[PolicyIssue]:
    issues = []
    if not pset.actions:
        issues.append(src.issue(path, "a permission set names no resource type",
                                "add e.g. `customer: [read]` beside the scope", "SA150"))
    if pset.expires is not None and not grant:
        issues.append(src.issue((*path, "expires"), "only direct grants can expire, not role permissions",
                                "move the time-limited permission to the account's grants", "SA151"))
    if isinstance(pset.scope, CustomScope):
        for i, dept in enumerate(pset.scope.custom):
            if dept not in departments:
                issues.append(src.issue((*path, "scope", "custom", i),
                                        f"custom scope names unknown department {dept!r}",
                                        "list departments defined under `departments`", "SA120"))
    every_action = set().union(*vocabulary.values())
    for typ, actions in pset.actions.items():
        if typ != R.WILDCARD and typ not in vocabulary:
            issues.append(src.issue((*path, typ), f"unknown resource type {typ!r}",
                                    "declare it under `resources`, or use '*'", "SA152"))
            continue
        known = every_action if typ == R.WILDCARD else vocabulary[typ]
        for i, action in enumerate(actions):
            if action != R.WILDCARD and action not in known:
                issues.append(src.issue((*path, typ, i), f"unknown action {action!r} for {typ!r}",
                                        f"known actions: {', '.join(sorted(known))}", "SA153"))
    return issues


def _elsewhere(name: str, section: str, domains: dict[str, SourcedDocument], here: str) -> str | None:
    for domain, other in domains.items():
        if domain != here and name in getattr(other.document, section):
            return f"{name!r} exists in domain {domain!r}, but nothing crosses domains"
    return None


def _cycles(edges: dict[str, list[str]]) -> list[str]:
    """One representative node (the smallest) per cycle in a directed graph."""
    state: dict[str, int] = {}  # 1 = on stack, 2 = done
    found: list[str] = []
    for start in sorted(edges):
        if state.get(start):
            continue
        stack: list[tuple[str, Iterable[str]]] = [(start, iter(edges.get(start, [])))]
        path = [start]
        state[start] = 1
        while stack:
            node, children = stack[-1]
            child = next(iter(children), None)
            if child is None:
                state[node] = 2
                stack.pop()
                path.pop()
                continue
            if child not in edges:
                continue
            if state.get(child) == 1:
                cycle = path[path.index(child):]
                found.append(min(cycle))
            elif not state.get(child):
                state[child] = 1
                stack.append((child, iter(edges.get(child, []))))
                path.append(child)
    return sorted(set(found))


def validate_rules(rules: Sequence[Rule]) -> None:
    """Raise :class:`PolicyError` if a rule set (e.g. read from a store) is malformed or
    inconsistent; the problems name the offending rules."""
    from .compile import decompile_rules

    issues = stored_rule_issues(rules)
    if issues:
        raise PolicyError(issues)
    registered = {(r[1], r[2]) for r in rules if r[0] == R.ACCOUNT}
    roles = {(r[1], r[2]) for r in rules if r[0] == R.ROLE}
    for rule in rules:
        if rule[0] == R.FIELD_RULE and (rule[1], R.domain_of(rule)) not in roles:
            issues.append(PolicyIssue(f"{rule!r}: field rules belong to roles, and {rule[1]!r} is "
                                      "not a role (a 'p4' rule)", code="SA114"))
        if rule[0] in (R.MEMBERSHIP, R.PARENT, R.ROLE_LINK, R.PERMISSION):
            subject = (rule[1], R.domain_of(rule))
            if subject not in registered and subject not in roles:
                issues.append(PolicyIssue(
                    f"{rule!r} names {rule[1]!r}, which is neither a registered account "
                    "(a 'p3' rule) nor a role (a 'p4' rule)", code="SA114"))
    if issues:
        raise PolicyError(issues)
    try:
        documents = decompile_rules(rules)
    except ValidationError as exc:
        raise PolicyError(issues_from_validation_error(exc, None, {})) from None
    problems = validate_documents([SourcedDocument(d) for d in documents])
    if problems:
        raise PolicyError(problems)


SINGLE_VALUED: Final[dict[str, str]] = {R.ACCOUNT: "status", R.MEMBERSHIP: "department",
                                        R.PARENT: "parent account"}
"""The rule types that state a single-valued fact of an account: at most one rule of each type
per account and domain (its status, its main department, its parent account)."""


# Rule types whose values check_rule only requires to be non-empty text without NUL or lone
# surrogates (and, for p3, a known status): what the fast screen of stored_rule_issues accepts.
_PLAIN_WIDTH: Final[dict[str, int]] = {
    ptype: 1 + R.ARITY[ptype]
    for ptype in (R.VOCABULARY, R.ACCOUNT, R.ROLE, R.ROLE_LINK, R.DEPARTMENT, R.MEMBERSHIP, R.PARENT, R.FIELD)
}


_FACT_DOMAIN: Final[dict[str, int]] = {ptype: 1 + R.DOMAIN_FIELD[ptype] for ptype in SINGLE_VALUED}


def single_valued_key(rule: Rule) -> tuple[str, str, str] | None:
    """``(ptype, domain, account)`` for a rule stating a single-valued fact, else ``None``."""
    if rule[0] not in SINGLE_VALUED:
        return None
    return rule[0], rule[1 + R.DOMAIN_FIELD[rule[0]]], rule[1]


def stored_rule_issues(rules: Iterable[Rule], source: str | None = None) -> list[PolicyIssue]:
    """Every invariant that rules held in a store must keep, broken by ``rules`` — one domain's
    rules as loaded, or the rules a write would leave for the accounts it touches. Empty when
    they keep them all. Each issue names the offending rules (and ``source``, the store):

    * **SA100** a malformed rule (:func:`salesauthz._rules.check_rule`) — among them a stored
      row with a ``NULL`` (missing) value, e.g. a ``p`` row written by a Casbin adapter without
      the expiry (``""`` means "never expires"; a missing value is not that);
    * **SA115** a single-valued fact stated twice: two statuses (``p3``), two departments
      (``g3``) or two parent accounts (``g4``) for one account of one domain. Which one holds
      is unknowable, so neither may be used ("last row wins" could bring back an account an
      administrator deactivated).

    The load path of the :class:`~salesauthz.Authorizer` refuses a domain with any of these (it
    stays closed: every check there denies) and every store's write path refuses a change that
    would create one.
    """
    issues: list[PolicyIssue] = []
    first: dict[tuple[str, str, str], Rule] = {}  # each single-valued fact -> its first rule
    doubled: dict[tuple[str, str, str], set[Rule]] = {}
    for rule in rules:
        # The common shapes are screened with a few C-level tests (a load reads millions of
        # rules); anything else gets the full check.
        ptype = rule[0] if type(rule) is tuple and rule else None
        if ptype in _PLAIN_WIDTH and len(rule) == _PLAIN_WIDTH[ptype] and None not in rule \
                and "" not in rule and (ptype != R.ACCOUNT or rule[3] in R.STATUSES):
            joined = "".join(rule)
            problem = None if joined.isascii() and "\x00" not in joined else R.check_rule(rule)
        else:
            problem = R.check_rule(rule)
        if problem is not None:
            hint = None
            if isinstance(rule, tuple) and None in rule:
                problem = f"a stored value is missing (NULL): {problem}"
                if rule[:1] == (R.PERMISSION,) and len(rule) == 1 + R.ARITY[R.PERMISSION] \
                        and rule[-1] is None and None not in rule[:-1]:
                    hint = ("a 'p' rule has six values; write the expiry as '' (never expires) "
                            "instead of leaving it out")
            issues.append(PolicyIssue(f"{problem}: {rule!r}", source, code="SA100", hint=hint))
            continue
        position = _FACT_DOMAIN.get(rule[0])
        if position is not None:
            key = (rule[0], rule[position], rule[1])
            held = first.setdefault(key, rule)
            if held != rule:
                doubled.setdefault(key, {held}).add(rule)
    for (ptype, domain, account), stated in doubled.items():
        distinct = sorted(stated)
        issues.append(PolicyIssue(
            f"account {account!r} of domain {domain!r} has {len(distinct)} {SINGLE_VALUED[ptype]} "
            f"rules, and may have only one: {', '.join(repr(r) for r in distinct)}", source,
            code="SA115", hint="remove all but one of them (in one change)"))
    return issues
