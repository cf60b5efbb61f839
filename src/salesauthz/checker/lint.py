"""``salesauthz check``: the loader's errors plus lints that know about scopes, sub-accounts,
departments and delegation (codes SA2xx, see :data:`~salesauthz.checker.findings.CODES`).

A finding can be silenced where it is reported with a YAML comment on its line or the line
above: ``# salesauthz: ignore[SA207]`` (or ``ignore`` alone for every code on that line).
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from salesauthz import _engine as engine
from salesauthz import _rules as R
from salesauthz._engine import EffectiveMap, Key, Permission, Snapshot
from salesauthz._wording import capped, count
from salesauthz.conditions import AccountRef, Condition, Test, parse_where
from salesauthz.errors import PolicyError
from salesauthz.models.compile import scope_of
from salesauthz.models.documents import (
    AccountDocument,
    DomainDocument,
    FieldRuleDocument,
    PermissionSet,
    RoleDocument,
    TimedRole,
)
from salesauthz.models.loader import LoadedPolicy, load_directory, not_a_directory
from salesauthz.models.validate import SourcedDocument
from salesauthz.scopes import Coverage, Scope, ScopeKind

from .analysis import (
    excess,
    managed_by,
    permission_text,
    scope_label,
    static_ceiling,
)
from .findings import CODES, Finding

__all__ = ["CheckResult", "check_directory", "lint_policy"]

PathKey = tuple[str | int, ...]
Progress = Callable[[str, int, int], None]  # report(phase, done, total)


@dataclass(slots=True)
class CheckResult:
    """What ``check`` found; ``loaded`` is ``None`` when the policy did not load."""

    path: str
    findings: list[Finding]
    loaded: LoadedPolicy | None = None
    unreadable: bool = False  # the path itself could not be read (exit code 2)
    suppressed: int = 0

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "error"]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "warning"]


def check_directory(path: str | os.PathLike[str], *, strict: bool = False, now: float | None = None,
                    progress: Progress | None = None, target: str | None = None) -> CheckResult:
    """Load ``path`` (every loader error is a finding) and, if it loads, lint it (with the lints
    of a storage ``target`` too, e.g. ``"casbin"``: see :mod:`~salesauthz.checker.casbin_lint`)."""
    root = Path(path)
    if not root.is_dir():
        return CheckResult(str(root), [Finding.from_issue(not_a_directory(root))], unreadable=True)
    try:
        loaded = load_directory(root, progress=progress)
    except PolicyError as exc:
        findings = sorted((Finding.from_issue(i, "error") for i in exc.issues), key=Finding.sort_key)
        return CheckResult(str(root), findings)
    from .casbin_lint import target_findings

    findings = sorted(lint_policy(loaded, now=now, progress=progress) + target_findings(loaded, target),
                      key=Finding.sort_key)
    kept = _without_suppressed(findings)
    if strict:
        kept = [f.escalated() for f in kept]
    return CheckResult(str(root), kept, loaded, suppressed=len(findings) - len(kept))


_IGNORE = re.compile(r"#\s*salesauthz:\s*ignore(?:\[([A-Za-z0-9_,\s]+)\])?")


def _without_suppressed(findings: list[Finding]) -> list[Finding]:
    lines_of: dict[str, list[str]] = {}
    kept = []
    for finding in findings:
        if finding.file is None or finding.line is None:
            kept.append(finding)
            continue
        if finding.file not in lines_of:
            try:
                lines_of[finding.file] = Path(finding.file).read_text(encoding="utf-8").splitlines()
            except OSError:  # pragma: no cover - the loader has just read it
                lines_of[finding.file] = []
        lines = lines_of[finding.file]
        candidates = [lines[n] for n in (finding.line - 1, finding.line - 2) if 0 <= n < len(lines)]
        if any(_ignores(text, finding.code) for text in candidates):
            continue
        kept.append(finding)
    return kept


def _ignores(text: str, code: str) -> bool:
    match = _IGNORE.search(text)
    if match is None:
        return False
    codes = match.group(1)
    return codes is None or code in {c.strip() for c in codes.split(",")}


# -- the lints --------------------------------------------------------------------------------


@dataclass(slots=True)
class _Entry:
    """One (type, action, scope) a role or account lists, with where."""

    type: str
    action: str
    scope: Scope
    path: PathKey
    owner: str  # the role (or account) that declares it
    expires: str = ""


def _entries(owner: str, sets: list[PermissionSet], section: str, field_name: str) -> list[_Entry]:
    found = []
    for i, pset in enumerate(sets):
        scope = scope_of(pset.scope)
        condition = Condition.of(pset.where, pset.requires)
        if condition is not None:  # a conditioned permission is narrower than its bare scope
            scope = Scope(scope.kind, scope.departments, condition)
        expires = R.format_expiry(pset.expires)
        for typ, actions in pset.actions.items():
            for j, action in enumerate(actions):
                found.append(_Entry(typ, action, scope, (section, owner, field_name, i, typ, j), owner,
                                    expires))
    return found


def _covers_key(entry: _Entry, typ: str, action: str) -> bool:
    return entry.type in (typ, R.WILDCARD) and entry.action in (action, R.WILDCARD)


@dataclass(slots=True)
class _Domain:
    sourced: SourcedDocument
    index: Snapshot
    now: float
    findings: list[Finding] = field(default_factory=list)

    @property
    def doc(self) -> object:
        return self.sourced.document

    managed: dict[str, list[str]] = field(default_factory=dict)
    raw: dict[str, EffectiveMap] = field(default_factory=dict)
    role_items: dict[str, list[tuple[Key, Scope]]] = field(default_factory=dict)

    def raw_map(self, account: str) -> EffectiveMap:
        found = self.raw.get(account)
        if found is None:
            found = self.raw[account] = engine.own_map(self.index, account, self.now)[0]
        return found

    def items_of_role(self, role_name: str) -> list[tuple[Key, Scope]]:
        """Every (type, action) and scope the role gives, inheritance and wildcards resolved."""
        found = self.role_items.get(role_name)
        if found is None:
            index = self.index
            found = self.role_items[role_name] = [
                (key, held.permission.scope) for held in engine.role_holdings(index, role_name)
                for key in engine.expand(index, held.permission.type, held.permission.action)]
        return found

    def add(self, code: str, path: PathKey, message: str, hint: str | None = None) -> None:
        issue = self.sourced.issue(path, message, hint, code)
        self.findings.append(Finding.from_issue(issue, CODES[code][0]))


def lint_policy(policy: LoadedPolicy, *, now: float | None = None,
                progress: Progress | None = None) -> list[Finding]:
    """Every lint finding of a policy that loaded cleanly."""
    moment = time.time() if now is None else now
    total = sum(len(s.document.accounts) for s in policy.documents) or 1
    done = 0
    if progress is not None:
        progress("linting", 0, total)
    indexes = engine.compile_domains(policy.rules)
    findings: list[Finding] = []
    for sourced in policy.documents:
        index = indexes.get(sourced.document.domain)
        if index is None:  # pragma: no cover - every loaded document compiles to rules
            continue
        domain = _Domain(sourced, index, moment)
        _lint_roles(domain)
        _lint_shared_scopes(domain)
        _lint_reporting_lines(domain)
        _lint_sensitive_actions(domain)
        _lint_impossible_conditions(domain)
        for _ in _lint_accounts(domain):
            done += 1
            if progress is not None and done % 200 == 0:
                progress("linting", done, total)
        findings.extend(domain.findings)
    if progress is not None:
        progress("linting", total, total)
    return sorted(findings, key=Finding.sort_key)


def _lint_sensitive_actions(domain: _Domain) -> None:
    """SA214 (only in a domain that lists ``sensitive_actions``): a role permission or a direct
    grant giving one of them without a ``requires:`` (a second factor, the office network …)."""
    doc = domain.sourced.document
    listed = doc.sensitive_actions
    if not listed:
        return
    vocabulary = domain.index.vocabulary

    def sensitive(typ: str, action: str) -> list[str]:
        """The listed actions ``typ:action`` gives (wildcards expanded)."""
        found = []
        for entry in listed:
            want_type, _, want_action = entry.rpartition(":")
            types = [typ] if typ != R.WILDCARD else sorted(vocabulary)
            for t in types:
                if want_type and want_type != t:
                    continue
                actions = vocabulary.get(t, frozenset())
                if (action == want_action or action == R.WILDCARD) and want_action in actions:
                    found.append(f"{t}:{want_action}")
        return sorted(set(found))

    owners: list[tuple[str, str, list[PermissionSet]]] = [
        ("roles", name, (role or RoleDocument()).permissions) for name, role in doc.roles.items()]
    owners += [("accounts", name, (account or AccountDocument()).grants)
               for name, account in doc.accounts.items()]
    owners += [("departments", name, department.grants)
               for name, department in doc.departments.items() if department is not None]
    for section, name, sets in owners:
        field_name = "permissions" if section == "roles" else "grants"
        who = {"roles": f"role {name!r}", "accounts": f"account {name!r} (a direct grant)",
               "departments": f"department {name!r} (a grant to a department)"}[section]
        for i, pset in enumerate(sets):
            if pset.requires and any(v is not False for v in pset.requires.values()):
                continue
            for typ, actions in pset.actions.items():
                for j, action in enumerate(actions):
                    hits = sensitive(typ, action)
                    if hits:
                        domain.add("SA214", (section, name, field_name, i, typ, j),
                                   f"{who} gives {', '.join(hits)} without a requirement "
                                   f"(requires:), and domain {doc.domain!r} lists it as sensitive",
                                   "add e.g. `requires: {mfa: true}` to this permission set, or "
                                   "silence it here with `# salesauthz: ignore[SA214]`")


def _never_holds(tests: list[Test]) -> str | None:
    """Why the tests of one attribute can never all hold (``None``: they can), judged on
    their constants (``account.<name>`` operands are left to SA215's other half)."""
    constants = [t for t in tests if not isinstance(t.operand, AccountRef)]
    nulls = {t.operand for t in constants if t.op == "null"}
    if True in nulls and (False in nulls or any(t.op != "null" for t in tests)):
        return "it must be missing (null) and have a value at once"
    allowed: set[Any] | None = None  # the values eq/in leave (None: not narrowed)
    for test in constants:
        if test.op in ("eq", "in"):
            values = set(test.operand) if test.op == "in" else {test.operand}
            allowed = values if allowed is None else allowed & values
    if allowed is not None and not allowed:
        return "no value is in every list it must be in" if any(
            t.op == "in" for t in constants) else "it must equal two different values"
    low = [(t.operand, t.op == "gt") for t in constants if t.op in ("gt", "ge")]
    high = [(t.operand, t.op == "lt") for t in constants if t.op in ("lt", "le")]
    for bound, strict_low in low:
        for top, strict_high in high:
            try:
                if bound > top or (bound == top and (strict_low or strict_high)):
                    return f"no value is both above {bound!r} and below {top!r}"
            except TypeError:  # a number and a text: SA171's business
                continue
    if allowed is not None:
        def fits(value: Any) -> bool:
            try:
                return all(value > b if strict else value >= b for b, strict in low) and \
                    all(value < t if strict else value <= t for t, strict in high)
            except TypeError:
                return False
        if (low or high) and not any(fits(v) for v in allowed):
            return "none of its allowed values is within its bounds"
    return None


def _lint_impossible_conditions(domain: _Domain) -> None:
    """SA215: a condition (``where:``) that can never hold — contradictory tests on one
    attribute, an empty ``in:``, or an ``account.<name>`` no account given the permission has."""
    doc = domain.sourced.document
    index = domain.index
    holders: dict[str, list[str]] = {}  # role -> accounts assigned it (through inheritance too)
    for name in index.accounts:
        for role in index.roles_of(name):
            holders.setdefault(role, []).append(name)
    owners: list[tuple[str, str, list[PermissionSet], list[str]]] = [
        ("roles", name, (role or RoleDocument()).permissions, holders.get(name, []))
        for name, role in doc.roles.items()]
    owners += [("accounts", name, (account or AccountDocument()).grants, [name])
               for name, account in doc.accounts.items()]
    owners += [("departments", name, department.grants,  # the accounts in its subtree
                [a for a in index.accounts if any(name in index.ancestry(d)
                                                  for d in index.departments_of(a))])
               for name, department in doc.departments.items() if department is not None]
    for section, name, sets, accounts in owners:
        field_name = "permissions" if section == "roles" else "grants"
        for i, pset in enumerate(sets):
            if not pset.where:
                continue
            tests = parse_where(pset.where)
            by_attribute: dict[str, list[Test]] = {}
            for test in tests:
                by_attribute.setdefault(test.attribute, []).append(test)
            where = (section, name, field_name, i, "where")
            for attribute, own in by_attribute.items():
                why = _never_holds(own)
                if why is not None:
                    domain.add("SA215", (*where, attribute),
                               f"the condition on {attribute!r} can never hold: {why}",
                               "fix the tests, or delete the permission: it allows nothing")
            for test in tests:
                if not isinstance(test.operand, AccountRef) or not accounts:
                    continue
                if not any(test.operand.name in dict(index.account(a).attributes)
                           for a in accounts):
                    who = {"roles": "no account assigned this role", "accounts": f"account {name!r}",
                           "departments": f"no account of department {name!r}"}[section]
                    domain.add("SA215", (*where, test.attribute),
                               f"the condition {test} can never hold: {who} has the attribute "
                               f"{test.operand.name!r}",
                               f"give the accounts `attributes: {{{test.operand.name}: ...}}` "
                               "(or Admin.set_attribute at run time)")


def _lint_roles(domain: _Domain) -> None:
    doc = domain.sourced.document
    index = domain.index
    own: dict[str, list[_Entry]] = {
        name: _entries(name, (role or RoleDocument()).permissions, "roles", "permissions")
        for name, role in doc.roles.items()
    }
    for name, entries in own.items():
        inherited = [e for other in sorted(index.role_closure(name) - {name})
                     for e in own.get(other, [])]
        _redundant(domain, entries, inherited, f"role {name!r}")

    # Roles never assigned (directly, or inherited by an assigned role).
    used: set[str] = set()
    for account in doc.accounts.values():
        for role_name in (account or AccountDocument()).role_names:
            used |= index.role_closure(role_name) | {role_name}
    for name in doc.roles:
        if name not in used:
            domain.add("SA205", ("roles", name), f"role {name!r} is never assigned to any account",
                       "assign it, have an assigned role inherit it, or delete it")


def _redundant(domain: _Domain, entries: list[_Entry], inherited: list[_Entry], owner: str) -> None:
    """Report each entry duplicated by, or subsumed by, another entry or an inherited one."""
    index = domain.index
    for position, entry in enumerate(entries):
        label = permission_text((entry.type, entry.action), str(entry.scope))
        earlier = entries[:position]
        others = [e for e in entries if e is not entry] + inherited
        twin = next((e for e in [*earlier, *inherited]
                     if (e.type, e.action, e.scope, e.expires) == (entry.type, entry.action, entry.scope,
                                                                    entry.expires)), None)
        if twin is not None:
            where = "earlier in the same list" if twin.owner == entry.owner else f"by role {twin.owner!r}"
            domain.add("SA203", entry.path, f"{owner} lists {label} twice (already given {where})",
                       "delete the repeated entry")
            continue
        wider = next((e for e in others
                      if _covers_key(e, entry.type, entry.action)
                      and engine.scope_within(entry.scope, e.scope, index)
                      and (e.type, e.action, e.scope) != (entry.type, entry.action, entry.scope)
                      and not e.expires), None)
        if wider is not None:
            wide = permission_text((wider.type, wider.action), str(wider.scope))
            where = "in the same role" if wider.owner == entry.owner else f"through role {wider.owner!r}"
            if entry.path[0] == "accounts" and wider.owner == entry.owner:
                where = "among the same account's grants"
            domain.add("SA204", entry.path, f"{owner}: {label} is subsumed by {wide} {where}",
                       "delete the narrower entry; the wider one already allows it")


def _lint_shared_scopes(domain: _Domain) -> None:
    """SA211: a permission or field rule at scope ``shared`` that can never allow anything —
    its type declares no share levels (or none of its levels includes the action)."""
    doc: DomainDocument = domain.sourced.document
    sharing = domain.index.sharing
    holders: list[tuple[str, str, str, list[PermissionSet]]] = [
        ("roles", name, "permissions", (role or RoleDocument()).permissions)
        for name, role in doc.roles.items()]
    holders += [("accounts", name, "grants", (account or AccountDocument()).grants)
                for name, account in doc.accounts.items()]
    for section, owner, field_name, sets in holders:
        who = f"role {owner!r}" if section == "roles" else f"account {owner!r}"
        for i, pset in enumerate(sets):
            if scope_of(pset.scope).kind is not ScopeKind.SHARED:
                continue
            for typ, actions in pset.actions.items():
                path: PathKey = (section, owner, field_name, i, typ)
                types = sorted(sharing) if typ == R.WILDCARD else [typ]
                if not any(sharing.get(t) for t in types):
                    what = "no resource type declares" if typ == R.WILDCARD else f"{typ!r} declares no"
                    example = "customer" if typ == R.WILDCARD else typ
                    domain.add("SA211", path, f"{who} holds {typ}:{', '.join(actions)}@shared, but "
                               f"{what} share levels, so it can never allow anything",
                               f"declare share levels under `sharing:` (e.g. {example}: "
                               "{read_only: [read]}), or use another scope")
                    continue
                for j, action in enumerate(actions):
                    if action == R.WILDCARD or any(action in actions_of for t in types
                                                   for actions_of in sharing.get(t, {}).values()):
                        continue
                    levels = sorted({level for t in types for level in sharing.get(t, {})})
                    domain.add("SA211", (*path, j), f"{who} holds {typ}:{action}@shared, but no share "
                               f"level of {typ!r} includes {action!r}, so it can never allow anything",
                               f"add {action!r} to a level ({', '.join(levels)}), or use another scope")
    for name, role in doc.roles.items():
        for typ, rules in (role or RoleDocument()).fields.items():
            for field_name, spec in rules.items():
                if isinstance(spec, FieldRuleDocument) and scope_of(spec.scope).kind is ScopeKind.SHARED \
                        and not sharing.get(typ):
                    domain.add("SA211", ("roles", name, "fields", typ, field_name, "scope"),
                               f"role {name!r}: the rule for {typ}.{field_name} applies on shared "
                               f"records, but {typ!r} declares no share levels, so it never applies",
                               "declare share levels under `sharing:`, or use another scope")


def _lint_reporting_lines(domain: _Domain) -> None:
    """SA212: a reporting line that runs against the sub-account hierarchy — an account whose
    reporting superiors (its ``reports_to``, theirs, and so on up) include one of its own
    sub-accounts (at any depth). A sub-account works under its parent; were the parent to report
    to it, the sub-account would see its parent's records through ``subordinates``."""
    doc: DomainDocument = domain.sourced.document
    index = domain.index
    for name, account in doc.accounts.items():
        if account is None or account.reports_to is None:
            continue
        below = index.descendants_of([name])
        if not below:
            continue
        line = [name]
        superior: str | None = account.reports_to
        while superior is not None and superior not in line:
            line.append(superior)
            if superior in below:
                through = f" (through {' → '.join(line[1:-1])})" if len(line) > 2 else ""
                domain.add("SA212", ("accounts", name, "reports_to"),
                           f"account {name!r} reports{through} to {superior!r}, which is one of its "
                           f"own sub-accounts ({superior} → {_chain(index, superior)})",
                           "a sub-account works under its parent: have the sub-account report to "
                           "its parent (or someone above), not the parent to it")
                break
            superior = index.account(superior).reports_to


def _lint_accounts(domain: _Domain) -> Iterator[str]:
    doc = domain.sourced.document
    index = domain.index
    now = domain.now
    # Only accounts that could hold account:manage are potential managers (SA202): computing the
    # effective map of every account would cost more than the rest of the lints together.
    manage = ("account", "manage")
    manager_roles = {role for role in index.roles
                     if any(manage in set(engine.expand(index, held.permission.type, held.permission.action))
                            for held in engine.role_holdings(index, role))}
    effective = {name: engine.effective(index, name, now)[0] for name, info in index.accounts.items()
                 if info.status == "active" and (
                     any(r in manager_roles for r in info.roles)
                     or any(manage in set(engine.expand(index, g.type, g.action)) for g in info.grants))}
    managers = {name: eff for name, eff in effective.items() if manage in eff}
    domain.managed = managed_by(index, managers)
    children: dict[str, list[str]] = {}
    for name, account in doc.accounts.items():
        if account is not None and account.parent is not None:
            children.setdefault(account.parent, []).append(name)
    role_entries = {name: _entries(name, (role or RoleDocument()).permissions, "roles", "permissions")
                    for name, role in doc.roles.items()}

    for name, maybe_account in doc.accounts.items():
        account = maybe_account or AccountDocument()
        yield name
        if account.department is None:
            domain.add("SA206", ("accounts", name), f"account {name!r} belongs to no department",
                       "set `department:`; team and department_tree scopes reach only its own records")
        if account.status != "active":
            if account.roles or account.grants:
                held = capped([*account.role_names, *(["direct grants"] if account.grants else [])], 5)
                domain.add("SA207", ("accounts", name, "status"),
                           f"{account.status} account {name!r} still holds {held}",
                           "remove its roles and grants (it is denied everything anyway), "
                           "or reactivate it")
            if name in children:
                domain.add("SA208", ("accounts", name, "status"),
                           f"{account.status} account {name!r} still has "
                           + count(len(children[name]), "sub-account") + ": "
                           + capped(sorted(children[name]), 5),
                           "move the sub-accounts to an active parent or deactivate them; "
                           "they are denied everything while their parent is not active")
            continue
        grants = _entries(name, account.grants, "accounts", "grants")
        for entry in grants:
            if entry.expires and engine.expired(R.parse_expiry(entry.expires), now):
                domain.add("SA209", (*entry.path[:4], "expires"),
                           f"grant of {permission_text((entry.type, entry.action), str(entry.scope))} "
                           f"to {name!r} expired at {entry.expires}", "delete the expired grant")
        for k, assignment in enumerate(account.roles):
            if isinstance(assignment, TimedRole):
                until = R.format_expiry(assignment.expires)
                if engine.expired(R.parse_expiry(until), now):
                    domain.add("SA213", ("accounts", name, "roles", k, "expires"),
                               f"assignment of role {assignment.role!r} to {name!r} expired at {until}",
                               "delete the expired assignment, or renew it with a later `expires:`")
        inherited = [e for role_name in sorted(index.roles_of(name)) for e in role_entries.get(role_name, [])]
        _redundant(domain, grants, inherited, f"account {name!r}")
        if account.parent is not None and not _inactive_above(index, name):
            # (Below an inactive parent everything is denied: SA208 already says so.)
            _lint_sub_account(domain, name, account)
        _lint_delegation(domain, name, account, effective, managers)


def _source_path(index: Snapshot, account: str, doc_account: AccountDocument, role: str | None,
                 permission: Permission) -> PathKey:
    """Where the account's document gives it ``permission``: the grant entry, or the role
    assignment that (through inheritance) leads to ``role``."""
    if role is None:
        for i, pset in enumerate(doc_account.grants):
            for typ, actions in pset.actions.items():
                if typ == permission.type and permission.action in actions \
                        and permission.rule[5] in scope_of(pset.scope).encode():
                    return ("accounts", account, "grants", i, typ, actions.index(permission.action))
        return ("accounts", account, "grants")  # pragma: no cover - every grant has an entry
    for k, assigned in enumerate(doc_account.role_names):
        if role in index.role_closure(assigned):
            return ("accounts", account, "roles", k)
    return ("accounts", account, "roles")  # pragma: no cover - roles_of came from these


def _role_via(index: Snapshot, account: AccountDocument, role: str) -> str:
    """``role 'lead' (inheriting 'exporter')``, or ``role 'rep'`` when assigned directly."""
    if role in account.role_names:
        return f"role {role!r}"
    for assigned in account.role_names:
        if role in index.role_closure(assigned):
            return f"role {assigned!r}, which inherits {role!r}"
    return f"role {role!r}"  # pragma: no cover - roles_of came from the assigned roles


def _inactive_above(index: Snapshot, account: str) -> bool:
    names = engine.chain(index, account) or (account,)
    return any(index.account(name).status != engine.ACTIVE for name in names[1:])


def _chain(index: Snapshot, account: str) -> str:
    return " → ".join((engine.chain(index, account) or (account,))[1:])


@dataclass(frozen=True, slots=True)
class _Dead:
    """One permission a sub-account holds beyond its parent chain (part of an SA201)."""

    held: str  # customer:read@all
    via: str  # a direct grant / role 'lead', which inherits 'exporter'
    limit: str | None  # the scope the chain holds the permission at (None: not at all)
    beyond: str  # which records are beyond the chain's


def _lint_sub_account(domain: _Domain, name: str, account: AccountDocument) -> None:
    index, now = domain.index, domain.now
    ceiling = static_ceiling(index, name, now) or {}
    parent = account.parent or ""
    problems: dict[PathKey, dict[_Dead, None]] = {}
    held_permissions = [(held.role, held.permission,
                         frozenset(engine.expand(index, held.permission.type, held.permission.action)),
                         held.department)
                        for held in engine.holdings(index, name)
                        if not engine.expired(held.permission.expires, now)]
    for key, coverage in sorted(domain.raw_map(name).items()):
        limit = ceiling.get(key)
        if not excess(coverage, limit, index):
            continue
        for role, permission, keys, granting in held_permissions:
            if key not in keys:
                continue
            beyond = excess(engine.scope_coverage(index, name, permission.scope, key=key), limit, index)
            if not beyond:
                continue
            via = (f"the grant to department {granting!r}" if granting is not None
                   else "a direct grant" if role is None else _role_via(index, account, role))
            dead = _Dead(permission_text(key, str(permission.scope)), via,
                         None if limit is None else scope_label(index, parent, key, now), beyond.describe())
            # a department's grant: reported where the account joins that department
            path = (_source_path(index, name, account, role, permission) if granting is None
                    else ("accounts", name, "department") if account.department is not None
                    and granting in index.ancestry(account.department) else ("accounts", name, "also_in"))
            problems.setdefault(path, {})[dead] = None
    for path, found in problems.items():
        # One finding per place (the grant or the role assignment to remove), whatever the
        # number of permissions it gives beyond the ceiling: those are counted and capped.
        domain.add("SA201", path, _dead_message(name, _chain(index, name), list(found)),
                   "remove it from the sub-account, or grant it to the parent first")


_DEAD_SHOWN = 2  # permissions an SA201 message details; the rest are counted


def _dead_message(name: str, chain: str, found: list[_Dead]) -> str:
    if len(found) == 1:
        dead = found[0]
        if dead.limit is None:
            text = f"{dead.held} (through {dead.via}), which its parent chain ({chain}) does not hold at all"
        else:
            key = dead.held.rpartition("@")[0]
            text = (f"{dead.held} (through {dead.via}), but its parent chain ({chain}) holds {key} only at "
                    f"{dead.limit}: {dead.beyond} are beyond it")
        return f"sub-account {name!r} holds {text} — the ceiling denies it at run time, so this is dead"
    vias = list(dict.fromkeys(d.via for d in found))
    through = f" (through {vias[0]})" if len(vias) == 1 else ""

    def detail(dead: _Dead) -> str:
        via = "" if through else f" through {dead.via}"
        if dead.limit is None:
            return f"{dead.held}{via}, which the chain does not hold at all"
        return f"{dead.held}{via}, which the chain holds only at {dead.limit} ({dead.beyond} beyond it)"

    shown = [detail(d) for d in found[:_DEAD_SHOWN]]
    rest = len(found) - len(shown)
    listed = "; ".join(shown) + (f"; and {count(rest, 'more permission')}" if rest else "")
    return (f"sub-account {name!r} holds {count(len(found), 'permission')}{through} beyond its parent "
            f"chain ({chain}): {listed} — the ceiling denies them at run time, so they are dead")


def _lint_delegation(domain: _Domain, name: str, account: AccountDocument,
                     effective: dict[str, EffectiveMap], managers: dict[str, EffectiveMap]) -> None:
    """SA202: every grant and role assignment should be one some manager of the account could
    have made (DESIGN rule 5): it manages the account and holds what is granted, at least as
    widely, for that account — or holds ``role:escalate``. Self-grants need ``role:escalate``."""
    index = domain.index
    who = domain.managed.get(name, [])
    able = [m for m in who if m != name or ("role", "escalate") in effective.get(m, {})]

    coverage_of: dict[tuple[Scope, Key | None], Coverage] = {}

    def granted(scope: Scope, key: Key) -> Coverage:
        # `shared` reaches records shared at the levels that include the action: keyed.
        memo = (scope, key if scope.kind is ScopeKind.SHARED else None)
        found = coverage_of.get(memo)
        if found is None:
            found = coverage_of[memo] = engine.scope_coverage(index, name, scope, key=key)
        return found

    def could_grant(items: list[tuple[Key, Scope]]) -> bool:
        if any(("role", "escalate") in managers[m] for m in able):
            return True
        return any(all(not excess(granted(scope, key), managers[m].get(key), index)
                       for key, scope in items)
                   for m in able)

    def missing_text(items: list[tuple[Key, Scope]]) -> str:
        wanted = sorted({permission_text(k, str(s)) for k, s in items})
        shown = capped(wanted, 4)
        if not who:
            return (f"no account manages {name!r} (holds account:manage over it), "
                    f"so no one could grant {shown}")
        return (f"none of the accounts that manage {name!r} ({capped(who, 4)}) holds {shown} "
                "for it, nor role:escalate")

    for i, pset in enumerate(account.grants):
        scope = scope_of(pset.scope)
        items = [(key, scope) for typ, actions in pset.actions.items() for action in actions
                 for key in engine.expand(index, typ, action)]
        if items and not could_grant(items):
            domain.add("SA202", ("accounts", name, "grants", i),
                       f"direct grant to {name!r}: {missing_text(items)}",
                       "have a manager who holds this permission make the grant, "
                       "or give the granting administrator role:escalate")
    for k, role_name in enumerate(account.role_names):
        items = domain.items_of_role(role_name)
        if items and not could_grant(items):
            domain.add("SA202", ("accounts", name, "roles", k),
                       f"role {role_name!r} assigned to {name!r}: {missing_text(items)}",
                       "have a manager who holds everything in the role assign it, "
                       "or give the assigning administrator role:escalate")
