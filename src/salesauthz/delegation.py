"""Administration that can never escalate (DESIGN.md rule 5).

Every operation is performed *by an actor* and authorized by the actor's own rights, at the moment
of the change (under the authorizer's write lock, against the snapshot the change applies to):

1. **Manage.** The actor must hold ``account:manage`` at a scope covering the target account, an
   account being a record owned by itself in its own department.
2. **No escalation.** Whatever the operation gives the target (a direct grant, a role's
   permissions after inheritance, the rights a move or unfreeze brings back into force), the actor
   must hold each ``type:action`` at a scope at least as wide *for the target account*: every
   department the granted scope reaches must be one the actor reaches, and the target's own
   records (taken in the target's department) must be covered by the actor. This is Kubernetes'
   RBAC escalation rule, made scope-aware.
3. **Escape hatch.** Holding ``role:escalate`` over the target is the only way around rule 2; the
   audit record of such an operation is marked ``escalated``.

A rejected operation raises :class:`~salesauthz.errors.EscalationError` (or
:class:`~salesauthz.errors.ForbiddenError` / :class:`~salesauthz.errors.UnknownNameError`) and
changes nothing. Each operation changes its rules and appends its audit record in one atomic batch.
"""

from __future__ import annotations

import dataclasses
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol, TypeVar

from . import _engine as engine
from . import _rules as R
from ._engine import AccountInfo, EffectiveMap, Key, Permission, Snapshot
from ._rules import Rule
from .audit import AuditDraft, AuditRecord, AuditTrail
from .errors import EscalationError, ForbiddenError, UnknownNameError
from .scopes import NOTHING, Coverage, Scope, ScopeKind, parse_scope
from .values import ScopeFilter

__all__ = ["Admin", "Administered", "OffboardPlan"]

_Change = tuple[list[Rule], list[Rule], list[AuditDraft]]


class Administered(Protocol):
    """What administration needs from the :class:`~salesauthz.Authorizer` (which has it):
    the rules, the clock, the audit trail and atomic changes decided on the current snapshot."""

    audit: AuditTrail

    def now(self) -> float: ...

    def rules(self, domain: str | None = None) -> list[Rule]: ...

    def apply_changes(self, added: Iterable[Rule] = (), removed: Iterable[Rule] = (), *,
                      audit: Sequence[AuditDraft] = ()) -> list[AuditRecord]: ...

    def _transact(self, domain: str, plan: Callable[[Snapshot | None], tuple[
            Sequence[Rule], Sequence[Rule], Sequence[AuditDraft]]]) -> list[AuditRecord]: ...

    def _snapshot(self, domain: str) -> Snapshot | None: ...


def _grant_is_covered(actor: Coverage | None, granted: Coverage, snapshot: Snapshot,
                      capped: bool = False) -> bool:
    """Whether an actor holding ``actor`` may hand out ``granted`` (rule 2 above).

    ``granted`` is compared record-set-wise. An owner's records may be filed in any department
    (a record names its department; only one without is taken in its owner's), so an owner
    ``granted`` reaches wherever its records lie must be one the actor reaches wherever they lie
    — unless ``capped``: the account receiving ``granted`` is a sub-account below the actor, whose
    parent ceiling intersects it with the actor's rights at every decision, and then the owner's
    records are judged in its current department. Records reached through shares (the ``shared``
    scope) may lie anywhere in the domain: a guarded term is covered when the actor covers its
    records whatever their shares, or holds a term with the same guards over at least its records.
    """
    if actor is None:
        return False
    if actor.everything:
        return True
    if granted.everything:
        return False
    for term in granted.guarded:
        if not (_grant_is_covered(actor.plain, term.base, snapshot, capped) or any(
                theirs.guards <= term.guards
                and _grant_is_covered(theirs.base, term.base, snapshot, capped)
                for theirs in actor.guarded)):
            return False
    if not granted.departments <= actor.departments:
        return False
    for owner in granted.owners:
        if not (owner in actor.owners
                or (capped and actor.covers(owner, snapshot.department_of(owner)))):
            return False
    for owner, departments in granted.owner_departments.items():
        if not all(actor.covers(owner, d) for d in departments):
            return False
    return True


def _listed(missing: Iterable[str]) -> tuple[list[str], str]:
    """The distinct labels of what an actor lacks, and the first five of them in words."""
    unique = sorted(set(missing))
    return unique, ", ".join(unique[:5]) + (f" and {len(unique) - 5} more" if len(unique) > 5 else "")


def _role_permissions(snapshot: Snapshot, role: str) -> list[Permission]:
    """Every permission a role brings, after inheritance."""
    return [held.permission for held in engine.role_holdings(snapshot, role)]


def _held(snapshot: Snapshot, account: str) -> list[Permission]:
    """Every permission the account itself holds (its roles' and its grants), each with the
    earlier of its own expiry and its role assignment's as its ``expires``."""
    found: list[Permission] = []
    for held in engine.holdings(snapshot, account):
        permission = held.permission
        if held.until is not None and (permission.expires is None or held.until < permission.expires):
            permission = permission._replace(expires=held.until)
        found.append(permission)
    return found


def _missing(snapshot: Snapshot, actor_map: Mapping[Key, Coverage], account: str,
             department: str | None, permissions: Iterable[Permission],
             capped: bool = False, already: EffectiveMap | None = None) -> list[str]:
    """``type:action@scope`` labels of what ``permissions`` would give ``account`` (were it in
    ``department``) that an actor holding ``actor_map`` does not hold at least as widely
    (``capped``: the account is a sub-account below the actor, see :func:`_grant_is_covered`).
    With ``already`` (what the account reaches by itself without the change), only what the
    permissions give beyond it counts: a decision that was allowed stays as it was."""
    missing: list[str] = []
    for permission in permissions:
        for key in engine.expand(snapshot, permission.type, permission.action):
            granted = engine.scope_coverage(snapshot, account, permission.scope, department,
                                            moved=True, key=key)
            if already is not None:
                granted = _beyond(granted, already.get(key, NOTHING))
                if granted.is_empty:
                    continue
            if not _grant_is_covered(actor_map.get(key), granted, snapshot, capped):
                missing.append(f"{key[0]}:{key[1]}@{permission.scope}")
    return missing


class _Widened(Mapping[Key, Coverage]):
    """An actor's effective map with its ``role:escalate`` reach added to every right: what an
    escalating actor may hand out (rule 3: escalate reaches no further than its own scope)."""

    def __init__(self, held: EffectiveMap, reach: Coverage) -> None:
        self._held, self._reach = held, reach

    def __getitem__(self, key: Key) -> Coverage:
        return self._held.get(key, NOTHING).union(self._reach)

    def __iter__(self) -> Iterator[Key]:
        return iter(self._held)

    def __len__(self) -> int:
        return len(self._held)


_TIMELINE_LIMIT = 64
"""How many future changes of an actor's rights a decision looks at (beyond: refused)."""


def _own_without(snapshot: Snapshot, account: str, rule: Rule, now: float) -> EffectiveMap:
    """What ``account`` holds by itself at ``now`` without ``rule`` (a grant, or a role
    assignment: every holding through that role assignment)."""
    found: dict[Key, Coverage] = {}
    for held in engine.holdings(snapshot, account):
        permission = held.permission
        if permission.rule == rule or (rule[0] in (R.ROLE_LINK, R.TIMED_ROLE)
                                       and held.via[:1] == (rule[2],)):
            continue
        if permission.expires is not None and engine.expired(permission.expires, now):
            continue
        for key in engine.expand(snapshot, permission.type, permission.action):
            coverage = engine.scope_coverage(snapshot, account, permission.scope, key=key)
            found[key] = found.get(key, NOTHING).union(coverage)
    return found


_ACCOUNT_RULES = frozenset((R.ACCOUNT, R.MEMBERSHIP, R.AUXILIARY, R.PARENT, R.REPORTS_TO, R.ROLE_LINK,
                            R.TIMED_ROLE, R.PERMISSION, R.ACCOUNT_ATTRIBUTE))
"""The rule types whose first value is the account they are about."""


def _holders(snapshot: Snapshot, role: str) -> list[tuple[str, float | None]]:
    """Every account holding ``role`` (directly, by inheritance or until a moment), with the
    moment it stops holding it (``None``: permanently)."""
    found: list[tuple[str, float | None]] = []
    for name, info in sorted(snapshot.accounts.items()):
        if info.status is None:
            continue
        if any(role in snapshot.role_closure(r) for r in info.roles):
            found.append((name, None))
            continue
        ends = [until for r, until in info.timed_roles if role in snapshot.role_closure(r)]
        if ends:
            found.append((name, max(ends)))
    return found


def _with_department_parent(snapshot: Snapshot, name: str, parent: str | None) -> Snapshot:
    """``snapshot`` as it would be were department ``name`` below ``parent``: what scopes read of
    the tree (parents, subtrees) kept consistent."""
    parents = dict(snapshot.department_parent)
    parents[name] = parent
    children: dict[str, list[str]] = {}
    for department, above in parents.items():
        if above is not None:
            children.setdefault(above, []).append(department)
    subtree: dict[str, frozenset[str]] = {}

    def below(department: str) -> frozenset[str]:
        known = subtree.get(department)
        if known is None:
            found = {department}
            stack = list(children.get(department, ()))
            while stack:
                child = stack.pop()
                if child not in found:
                    found.add(child)
                    stack.extend(children.get(child, ()))
            known = subtree[department] = frozenset(found)
        return known

    for department in parents:
        below(department)
    return dataclasses.replace(snapshot, department_parent=parents, subtree=subtree)


def _with_facts(snapshot: Snapshot, changed: Mapping[str, AccountInfo]) -> Snapshot:
    """``snapshot`` as it would be were the accounts in ``changed`` to have those facts (their
    auxiliary departments or reporting superiors): a cheap overlay, for deciding on a change
    before it is made. Only what scopes read of these facts is kept consistent."""
    reports: dict[str, frozenset[str]] = {}
    for name, info in changed.items():
        old = snapshot.account(name).reports_to
        if old == info.reports_to:
            continue
        if old is not None:
            reports[old] = reports.get(old, snapshot.reports.get(old, frozenset())) - {name}
        if info.reports_to is not None:
            new = info.reports_to
            reports[new] = reports.get(new, snapshot.reports.get(new, frozenset())) | {name}
    return dataclasses.replace(snapshot, accounts=_Overlay(changed, snapshot.accounts),
                               reports=_Overlay(reports, snapshot.reports))


_V = TypeVar("_V")


class _Overlay(Mapping[str, _V]):
    """``base`` with the entries of ``top`` in front (neither copied)."""

    def __init__(self, top: Mapping[str, _V], base: Mapping[str, _V]) -> None:
        self._top, self._base = top, base

    def __getitem__(self, name: str) -> _V:
        return self._top[name] if name in self._top else self._base[name]

    def __iter__(self) -> Iterator[str]:
        yield from self._top
        yield from (name for name in self._base if name not in self._top)

    def __len__(self) -> int:
        return len(self._top) + sum(1 for name in self._base if name not in self._top)


def _reach(snapshot: Snapshot, account: str,
           moment: float | None = None) -> dict[Key, tuple[Coverage, dict[str, Coverage]]]:
    """``key → (union, scope label → coverage)`` of what the account's own holdings reach
    (those in force at ``moment``; all, expired ones included, without it; its status and
    parent ignored: as :func:`_missing` judges)."""
    found: dict[Key, tuple[Coverage, dict[str, Coverage]]] = {}
    for held in engine.holdings(snapshot, account):
        permission = held.permission
        if moment is not None and engine.expired(permission.expires, moment):
            continue
        for key in engine.expand(snapshot, permission.type, permission.action):
            coverage = engine.scope_coverage(snapshot, account, permission.scope, key=key)
            union, by_scope = found.get(key, (NOTHING, {}))
            label = str(permission.scope)
            by_scope[label] = by_scope.get(label, NOTHING).union(coverage)
            found[key] = (union.union(coverage), by_scope)
    return found


def _beyond(after: Coverage, before: Coverage) -> Coverage:
    """A coverage holding every record of ``after`` that ``before`` does not cover (and maybe
    more: only whole owners, departments, pairs and guarded terms are taken away)."""
    if before.everything:
        return NOTHING
    if after.everything:
        return after
    pairs = {owner: rest for owner, departments in after.owner_departments.items()
             if owner not in before.owners
             and (rest := departments - before.departments
                  - before.owner_departments.get(owner, frozenset()))}
    return Coverage(owners=after.owners - before.owners,
                    departments=after.departments - before.departments,
                    owner_departments=pairs, guarded=after.guarded - before.guarded)


def _missing_gains(before: Snapshot, after: Snapshot, actor_map: Mapping[Key, Coverage],
                   accounts: Iterable[str], target: str, moment: float | None = None) -> list[str]:
    """``type:action@scope`` labels (``… for <account>`` when not ``target``) of what
    ``accounts`` would reach in ``after`` beyond what they reach in ``before`` that an actor
    holding ``actor_map`` does not hold at least as widely (rule 2 for changes of the facts
    scopes read: auxiliary departments, reporting lines)."""
    missing: list[str] = []
    for account in dict.fromkeys(accounts):
        old = _reach(before, account, moment)
        for key, (union, by_scope) in _reach(after, account, moment).items():
            previous, previous_by_scope = old.get(key, (NOTHING, {}))
            gained = _beyond(union, previous)
            if gained.is_empty or _grant_is_covered(actor_map.get(key), gained, after):
                continue
            widened = sorted(label for label, coverage in by_scope.items()
                             if coverage != previous_by_scope.get(label, NOTHING)) or ["?"]
            suffix = "" if account == target else f" for {account}"
            missing.extend(f"{key[0]}:{key[1]}@{label}{suffix}" for label in widened)
    return missing


def _members_below(snapshot: Snapshot, department: str) -> list[str]:
    """The accounts a grant to ``department`` reaches: those whose main or auxiliary department
    is it or below it."""
    return sorted(name for name in snapshot.members_below(department)
                  if snapshot.account(name).status is not None)


def _stored_keys(snapshot: Snapshot, type: str, actions: Sequence[str],
                 escalated: bool) -> list[Key]:
    """The ``(type, action)`` pairs a grant of ``type:actions`` is stored as: as named, except
    that a wildcard the actor vouched for (not escalated) means the actions it holds now: stored
    as those, so that an action added to the vocabulary later is not handed out too."""
    if escalated or (type != R.WILDCARD and R.WILDCARD not in actions):
        return [(type, a) for a in actions]
    return list(dict.fromkeys(key for a in actions for key in engine.expand(snapshot, type, a)))


def _superiors(snapshot: Snapshot, account: str | None) -> list[str]:
    """``account`` and everyone above it in the reporting line (a loop in bad data just stops)."""
    found: list[str] = []
    while account is not None and account not in found:
        found.append(account)
        account = snapshot.account(account).reports_to
    return found


@dataclass(frozen=True, slots=True)
class OffboardPlan:
    """What happens when an account leaves: see :meth:`Admin.offboard`.

    ``records`` selects the leaver's records (``owner == account``) for the CRM to transfer to
    ``transfer_to`` (render it with the filters). ``sub_accounts`` pairs each direct sub-account
    with ``"reparent"`` (to ``transfer_to``) or ``"freeze"`` (when the actor could not vouch for its
    rights under the new parent). ``grants`` pairs each rule the leaver granted or assigned that is
    still in force with ``"reissue"`` (the actor holds it and takes it over) or ``"revoke"``.
    """

    admin: Admin
    account: str
    transfer_to: str
    records: ScopeFilter
    sub_accounts: tuple[tuple[str, str], ...]
    grants: tuple[tuple[Rule, str], ...]
    reports: tuple[tuple[str, str | None, str], ...] = ()
    applied: list[AuditRecord] = field(default_factory=list)

    def apply(self) -> list[AuditRecord]:
        """Carry out the plan atomically (re-checked against the rules at this moment)."""
        records = self.admin._apply_offboard(self)
        self.applied.extend(records)
        return records


class Admin:
    """Administrative operations by ``actor`` in ``domain`` (see the module documentation)."""

    def __init__(self, authz: Administered, actor: str, domain: str, *, audit_denied: bool = False,
                 context: Mapping[str, object] | None = None) -> None:
        self._authz = authz
        self.actor = actor
        self.domain = domain
        self.audit_denied = audit_denied
        # The actor's request context: its session assurance (``mfa``) goes into every audit
        # record this Admin writes.
        self.assurance = _assurance(context)

    # -- the operations --------------------------------------------------------------------

    def create_account(
        self,
        name: str,
        *,
        department: str | None = None,
        parent: str | None = None,
        status: str = "active",
    ) -> AuditRecord:
        """Create an account (a sub-account when ``parent`` is given: the parent must be the actor
        or one of its sub-accounts, transitively)."""

        def plan(snapshot: Snapshot) -> _Change:
            if name in snapshot.accounts or name in snapshot.roles:
                raise ForbiddenError(f"{name!r} already exists in domain {self.domain!r}",
                                     account=self.actor, domain=self.domain)
            if status not in R.STATUSES:
                raise ValueError(f"unknown status {status!r}: expected one of {', '.join(R.STATUSES)}")
            if department is not None and department not in snapshot.department_parent:
                raise UnknownNameError("department", department, self.domain)
            escalated = self._require_manage(snapshot, name, department, "create_account")
            if department is not None:  # it holds the grants of its department and those above
                escalated |= self._require_holds(snapshot, name, department, [
                    grant for d in snapshot.ancestry(department)
                    for grant in snapshot.department_grants.get(d, ())], "create_account", escalated)
            if parent is not None:
                if parent not in snapshot.accounts:
                    raise UnknownNameError("account", parent, self.domain)
                lineage = {self.actor} | snapshot.descendants_of((self.actor,))
                if parent not in lineage and not escalated:
                    escalated = self._bypass(
                        snapshot, name, "create_account",
                        f"{self.actor} may only create sub-accounts under itself or its own "
                        f"sub-accounts, not under {parent}", [f"parent {parent}"], department)
            added: list[Rule] = [(R.ACCOUNT, name, self.domain, status)]
            if department is not None:
                added.append((R.MEMBERSHIP, name, department, self.domain))
            if parent is not None:
                added.append((R.PARENT, name, parent, self.domain))
            return added, [], [self._draft("create_account", name, added, (), escalated)]

        return self._run("create_account", name, plan)[0]

    def assign_role(self, account: str, role: str, *, expires: datetime | None = None) -> AuditRecord:
        """Give ``account`` a role: the actor must hold every permission of the role (after
        inheritance) at least as widely for that account.

        With ``expires``, the role is held until that moment (a timed assignment): it replaces
        any earlier timed assignment of the role, and a permanent one too (the assignment now
        ends). Without it the role is held permanently, which ends any timed assignment of it.
        """
        expiry = R.format_expiry(expires)

        def plan(snapshot: Snapshot) -> _Change:
            self._require_account(snapshot, account)
            if role not in snapshot.roles:
                raise UnknownNameError("role", role, self.domain)
            if expiry and R.parse_expiry(expiry) <= self._authz.now():
                raise ValueError(f"the assignment of {role} to {account} would end at {expiry}, "
                                 "which is not in the future")
            escalated = self._require_manage(snapshot, account, None, "assign_role")
            ends = R.parse_expiry(expiry) if expiry else None
            permissions = [p._replace(expires=engine.earliest(p.expires, ends))
                           for p in _role_permissions(snapshot, role)]
            escalated |= self._require_holds(snapshot, account, snapshot.department_of(account),
                                             permissions, "assign_role", escalated)
            permanent: Rule = (R.ROLE_LINK, account, role, self.domain)
            removed = self._timed_assignments(snapshot, account, role)
            if expiry:
                added: list[Rule] = [(R.TIMED_ROLE, account, role, self.domain, expiry)]
                if role in snapshot.account(account).roles:
                    removed.append(permanent)
            else:
                added = [permanent]
            removed = [rule for rule in removed if rule not in added]
            return added, removed, [self._draft("assign_role", account, added, removed, escalated,
                                                detail=role + (f" until {expiry}" if expiry else ""))]

        return self._run("assign_role", account, plan)[0]

    def unassign_role(self, account: str, role: str) -> AuditRecord:
        """Take a role away, permanent and timed assignments alike (needs only
        ``account:manage``: removing rights never escalates)."""

        def plan(snapshot: Snapshot) -> _Change:
            self._require_account(snapshot, account)
            info = snapshot.account(account)
            if role not in info.roles and role not in dict(info.timed_roles):
                raise UnknownNameError("role assignment", f"{account} -> {role}", self.domain)
            escalated = self._require_manage(snapshot, account, None, "unassign_role")
            removed = self._timed_assignments(snapshot, account, role)
            if role in info.roles:
                removed.insert(0, (R.ROLE_LINK, account, role, self.domain))
            return [], removed, [self._draft("unassign_role", account, (), removed, escalated,
                                             detail=role)]

        return self._run("unassign_role", account, plan)[0]

    def add_auxiliary_department(self, account: str, department: str) -> AuditRecord:
        """Put ``account`` in ``department`` too (an auxiliary department, 附属部门): its ``team``
        and ``department_tree`` scopes then reach there as well, and shares naming the
        department reach it. Decided like a move: the actor must manage the account where it
        is and in ``department``, and hold at least as widely everything the account would
        reach there that it does not reach already."""
        operation = "add_auxiliary_department"

        def plan(snapshot: Snapshot) -> _Change:
            self._require_account(snapshot, account)
            if department not in snapshot.department_parent:
                raise UnknownNameError("department", department, self.domain)
            info = snapshot.account(account)
            if department == info.department or department in info.also_in:
                raise ForbiddenError(f"{account} is already in department {department}",
                                     account=self.actor, domain=self.domain)
            escalated = self._require_manage(snapshot, account, None, operation)
            escalated |= self._require_manage(snapshot, account, department, operation, escalated)
            after = _with_facts(snapshot, {account: info._replace(also_in=info.also_in | {department})})
            escalated |= self._require_gains(snapshot, after, [account], account, operation, escalated)
            rule: Rule = (R.AUXILIARY, account, department, self.domain)
            return [rule], [], [self._draft(operation, account, [rule], (), escalated,
                                            detail=department)]

        return self._run(operation, account, plan)[0]

    def remove_auxiliary_department(self, account: str, department: str) -> AuditRecord:
        """Take an auxiliary department away (needs only ``account:manage``: it only narrows)."""
        operation = "remove_auxiliary_department"

        def plan(snapshot: Snapshot) -> _Change:
            self._require_account(snapshot, account)
            if department not in snapshot.account(account).also_in:
                raise UnknownNameError("auxiliary department", f"{account} -> {department}",
                                       self.domain)
            escalated = self._require_manage(snapshot, account, None, operation)
            rule: Rule = (R.AUXILIARY, account, department, self.domain)
            return [], [rule], [self._draft(operation, account, (), [rule], escalated,
                                            detail=department)]

        return self._run(operation, account, plan)[0]

    def set_reports_to(self, account: str, superior: str | None) -> AuditRecord:
        """Make ``account`` report to ``superior`` (汇报对象), or to no one with ``None``.

        A reporting line gives visibility: the superior's ``subordinates`` scopes, and the
        ``subordinate_tree`` scopes of everyone above it, then reach the account's records (and,
        for ``subordinate_tree``, those of everyone below the account). So the actor must manage
        both the account and the superior, and hold at least as widely everything the superior
        and those above it would reach that they do not reach already. Clearing the line only
        narrows: it needs ``account:manage`` over the account. A line that would loop is refused.
        """
        operation = "set_reports_to"

        def plan(snapshot: Snapshot) -> _Change:
            self._require_account(snapshot, account)
            info = snapshot.account(account)
            if superior is not None:
                self._require_account(snapshot, superior)
                if superior == account:
                    raise ForbiddenError(f"{account} cannot report to itself", account=self.actor,
                                         domain=self.domain)
                line = _superiors(snapshot, superior)
                if account in line:
                    path = " -> ".join(line[: line.index(account) + 1])
                    raise ForbiddenError(
                        f"{account} cannot report to {superior}: {superior} already reports to "
                        f"{account} ({path}), and a reporting line must not loop",
                        account=self.actor, domain=self.domain)
            if info.reports_to == superior:
                raise ForbiddenError(f"{account} already reports to {superior or 'no one'}",
                                     account=self.actor, domain=self.domain)
            escalated = self._require_manage(snapshot, account, None, operation)
            if superior is not None:
                escalated |= self._require_manage(snapshot, superior, None, operation, escalated)
                after = _with_facts(snapshot, {account: info._replace(reports_to=superior)})
                escalated |= self._require_gains(snapshot, after, _superiors(after, superior),
                                                 account, operation, escalated)
            removed: list[Rule] = ([(R.REPORTS_TO, account, info.reports_to, self.domain)]
                                   if info.reports_to is not None else [])
            added: list[Rule] = ([(R.REPORTS_TO, account, superior, self.domain)]
                                 if superior is not None else [])
            return added, removed, [self._draft(
                operation, account, added, removed, escalated,
                detail=f"{info.reports_to or 'no one'} -> {superior or 'no one'}")]

        return self._run(operation, account, plan)[0]

    def set_attribute(self, account: str, name: str, value: object) -> AuditRecord:
        """Set the account's attribute ``name`` (what conditions compare with
        ``account.<name>``: territories, a pool, a portal user's ``customer_id``) to ``value``,
        or remove it with ``None``.

        ``value`` is text, a number, a boolean or a list of them, and must be comparable with
        every record attribute a condition of the domain compares ``account.<name>`` with (by
        the types the resource types declare): ``ValueError`` otherwise, naming it. The actor
        must manage the account; setting (not removing: that only narrows) is judged like a
        move — whatever the account's conditions would reach with the new value beyond what they
        reach now, the actor must hold at least as widely (so an actor whose own reach is
        narrowed by a condition cannot widen another's through an attribute; where two
        conditions cannot be compared, the change is refused). Not on the actor itself."""
        from .conditions import decode_value, encode_value, freeze, reference_mismatch, value_problem

        operation = "set_attribute"
        if not isinstance(name, str) or not name or "\x00" in name:
            raise ValueError(f"invalid attribute name {name!r}")
        if value is not None:
            problem = value_problem(value)
            if problem is not None:
                raise ValueError(f"attribute {name!r} of {account!r}: {problem}")
            value = list(value) if isinstance(value, tuple) else value
        declared: dict[str, dict[str, str]] = {}
        for rule in self._authz.rules(self.domain):
            if rule[0] == R.RESOURCE_ATTRIBUTE:
                declared.setdefault(rule[2], {})[rule[3]] = rule[4]

        def plan(snapshot: Snapshot) -> _Change:
            self._require_account(snapshot, account)
            info = snapshot.account(account)
            current = dict(info.attributes)
            if value is not None:
                _require_comparable(snapshot, declared, account, name, value, reference_mismatch)
            if freeze(current.get(name)) == freeze(value):
                raise ForbiddenError(f"{account}'s attribute {name} is already "
                                     f"{'unset' if value is None else repr(value)}",
                                     account=self.actor, domain=self.domain)
            escalated = self._require_manage(snapshot, account, None, operation)
            if value is not None:
                changed = {**current, name: value}
                after = _with_facts(snapshot, {account: info._replace(
                    attributes=tuple(sorted(changed.items())))})
                escalated |= self._require_gains(snapshot, after, [account], account, operation,
                                                 escalated)
            removed = _attribute_rules(self._authz.rules(self.domain), account, name)
            added: list[Rule] = ([(R.ACCOUNT_ATTRIBUTE, account, self.domain, name,
                                   encode_value(value))] if value is not None else [])
            old = (repr(decode_value(removed[0][4])) if removed else "unset")
            return added, removed, [self._draft(
                operation, account, added, removed, escalated,
                detail=f"{name}: {old} -> {'unset' if value is None else repr(value)}")]

        return self._run(operation, account, plan)[0]

    def grant(
        self,
        account: str,
        type: str,
        actions: Iterable[str],
        *,
        scope: str | Scope,
        departments: Iterable[str] = (),
        expires: datetime | None = None,
    ) -> AuditRecord:
        """A direct grant of ``type:action@scope`` (``scope="custom"`` with ``departments``),
        optionally ending at ``expires``."""
        action_list = list(actions)
        the_scope = scope if isinstance(scope, Scope) else Scope.of(scope, departments)
        expiry = R.format_expiry(expires)

        def plan(snapshot: Snapshot) -> _Change:
            self._require_account(snapshot, account)
            permissions = self._check_grant(snapshot, type, action_list, the_scope, expiry, account)
            escalated = self._require_manage(snapshot, account, None, "grant")
            escalated |= self._require_holds(snapshot, account, snapshot.department_of(account),
                                             permissions, "grant", escalated)
            return self._grant_change(snapshot, "grant", R.PERMISSION, account, type, action_list,
                                      the_scope, expiry, escalated)

        return self._run("grant", account, plan)[0]

    def revoke(self, account: str, type: str, actions: Iterable[str], *,
               scope: str | Scope | None = None) -> AuditRecord:
        """Remove direct grants of ``type:action`` (at ``scope``, or at every scope)."""
        action_set = set(actions)
        wanted = None if scope is None else (scope if isinstance(scope, Scope) else Scope.of(scope))

        def plan(snapshot: Snapshot) -> _Change:
            self._require_account(snapshot, account)
            escalated = self._require_manage(snapshot, account, None, "revoke")
            removed = [g.rule for g in snapshot.account(account).grants
                       if g.type == type and g.action in action_set
                       and (wanted is None or (wanted.kind is g.scope.kind
                            and (not wanted.departments or g.scope.departments <= wanted.departments)))]
            if not removed:
                raise UnknownNameError("grant", f"{account}: {type}:{','.join(sorted(action_set))}",
                                       self.domain)
            return [], removed, [self._draft("revoke", account, (), removed, escalated)]

        return self._run("revoke", account, plan)[0]

    def grant_department(
        self,
        department: str,
        type: str,
        actions: Iterable[str],
        *,
        scope: str | Scope,
        departments: Iterable[str] = (),
        expires: datetime | None = None,
    ) -> AuditRecord:
        """A grant of ``type:action@scope`` to ``department`` (a sharing rule), optionally ending
        at ``expires``: every account whose main or auxiliary department is ``department`` or
        below it holds it, the scope relative to that account, under its usual ceiling.

        Decided as a direct grant to each account it reaches: the actor must manage the
        department and every such account (``account:manage``), and hold what the grant would
        give each of them — beyond what it holds already — at least as widely; or its
        ``role:escalate`` must cover them and reach that far (docs/delegation.md)."""
        operation = "grant_department"
        action_list = list(actions)
        the_scope = scope if isinstance(scope, Scope) else Scope.of(scope, departments)
        expiry = R.format_expiry(expires)

        def plan(snapshot: Snapshot) -> _Change:
            if department not in snapshot.department_parent:
                raise UnknownNameError("department", department, self.domain)
            permissions = self._check_grant(snapshot, type, action_list, the_scope, expiry,
                                            f"department {department}")
            escalated = self._require_department(snapshot, department, operation)
            for account in _members_below(snapshot, department):
                escalated |= self._require_manage(snapshot, account, None, operation, escalated)
                escalated |= self._require_holds(snapshot, account, snapshot.department_of(account),
                                                 permissions, operation, escalated)
            return self._grant_change(snapshot, operation, R.DEPARTMENT_GRANT, department, type,
                                      action_list, the_scope, expiry, escalated)

        return self._run(operation, department, plan)[0]

    def revoke_department(self, department: str, type: str, actions: Iterable[str], *,
                          scope: str | Scope | None = None) -> AuditRecord:
        """Remove grants of ``type:action`` to ``department`` (at ``scope``, or at every scope).
        It only narrows: the actor must manage the department (``account:manage`` reaching it,
        or ``role:escalate`` there)."""
        operation = "revoke_department"
        action_set = set(actions)
        wanted = None if scope is None else (scope if isinstance(scope, Scope) else Scope.of(scope))

        def plan(snapshot: Snapshot) -> _Change:
            if department not in snapshot.department_parent:
                raise UnknownNameError("department", department, self.domain)
            escalated = self._require_department(snapshot, department, operation)
            removed = [g.rule for g in snapshot.department_grants.get(department, ())
                       if g.type == type and g.action in action_set
                       and (wanted is None or (wanted.kind is g.scope.kind
                            and (not wanted.departments or g.scope.departments <= wanted.departments)))]
            if not removed:
                raise UnknownNameError("grant", f"department {department}: {type}:"
                                       f"{','.join(sorted(action_set))}", self.domain)
            return [], removed, [self._draft(operation, department, (), removed, escalated)]

        return self._run(operation, department, plan)[0]

    def move(self, account: str, *, department: str) -> AuditRecord:
        """Move an account to another department. The actor must manage it in both places, and
        hold everything the account's roles and grants reach from the new department."""

        def plan(snapshot: Snapshot) -> _Change:
            self._require_account(snapshot, account)
            if department not in snapshot.department_parent:
                raise UnknownNameError("department", department, self.domain)
            escalated = self._require_manage(snapshot, account, None, "move")
            escalated |= self._require_manage(snapshot, account, department, "move", escalated)
            # in the new department it holds that department's grants (and those above it), not
            # the old one's: judged on the account as it would be there
            moved = _with_facts(snapshot, {account: snapshot.account(account)._replace(
                department=department)})
            escalated |= self._require_holds(snapshot, account, department,
                                             _held(moved, account), "move",
                                             escalated)
            old = snapshot.department_of(account)
            removed: list[Rule] = [(R.MEMBERSHIP, account, old, self.domain)] if old is not None else []
            added: list[Rule] = [(R.MEMBERSHIP, account, department, self.domain)]
            return added, removed, [self._draft("move", account, added, removed, escalated,
                                                detail=f"{old} -> {department}")]

        return self._run("move", account, plan)[0]

    def freeze(self, account: str) -> AuditRecord:
        """Block the account (and, through the ceiling, all its sub-accounts) from the next check."""
        return self._set_status(account, "frozen", "freeze")

    def deactivate(self, account: str) -> AuditRecord:
        """Mark the account as gone; like freeze, but undone only by :meth:`reactivate` (a
        deactivated account can be neither frozen nor unfrozen)."""
        return self._set_status(account, "deactivated", "deactivate")

    def reactivate(self, account: str) -> AuditRecord:
        """Bring a deactivated account back. Its own rule: the actor needs ``role:escalate`` over
        the account (besides ``account:manage``), and everything the account holds comes back into
        force, so it must lie within what the actor holds or its escalate right reaches. The audit
        record is always marked ``escalated``."""
        return self._set_status(account, "active", "reactivate")

    def unfreeze(self, account: str) -> AuditRecord:
        """Reactivate a frozen account. Its rights come back into force, so the actor must hold
        them (the escalation rule applies to everything the account holds)."""
        return self._set_status(account, "active", "unfreeze")

    # -- organisation: departments and roles -----------------------------------------------

    def create_department(self, name: str, *, parent: str | None) -> AuditRecord:
        """Create a department below ``parent`` (``None``: a root). The actor must manage the
        parent department (``account:manage`` reaching it, or ``role:escalate`` there); a root
        needs ``account:manage`` (or escalate) at ``all``. A new department holds no records, so
        it hands nothing out."""
        operation = "create_department"

        def plan(snapshot: Snapshot) -> _Change:
            self._check_new_department(snapshot, name, f"cannot create department {name!r}")
            if parent is not None and parent not in snapshot.department_parent:
                raise UnknownNameError("department", parent, self.domain)
            escalated = self._require_department(snapshot, parent, operation)
            rule: Rule = (R.DEPARTMENT, name, parent or "", self.domain)
            return [rule], [], [self._draft(operation, name, [rule], (), escalated,
                                            detail=f"below {parent or 'no one (a root)'}")]

        return self._run(operation, name, plan)[0]

    def move_department(self, name: str, *, parent: str | None) -> AuditRecord:
        """Put a department (and everything below it) under another ``parent``. The actor must
        manage the department and the new parent, and hold at least as widely everything anyone
        would reach that it does not reach now (``department_tree`` and ``custom`` scopes of the
        new parent's ancestors reach the moved subtree, shares naming them too). A move below
        itself is refused."""
        operation = "move_department"

        def plan(snapshot: Snapshot) -> _Change:
            if name not in snapshot.department_parent:
                raise UnknownNameError("department", name, self.domain)
            if parent is not None and parent not in snapshot.department_parent:
                raise UnknownNameError("department", parent, self.domain)
            old = snapshot.department_parent[name]
            if old == parent:
                raise ForbiddenError(f"department {name!r} is already below {parent or 'no one'}",
                                     account=self.actor, domain=self.domain)
            if parent is not None and parent in snapshot.subtree.get(name, frozenset((name,))):
                raise ForbiddenError(f"department {name!r} cannot be moved below {parent!r}, which "
                                     "is below it: a department cannot be below itself",
                                     account=self.actor, domain=self.domain)
            escalated = self._require_department(snapshot, name, operation)
            escalated |= self._require_department(snapshot, parent, operation)
            after = _with_department_parent(snapshot, name, parent)
            accounts = sorted(snapshot.accounts)

            def missing_with(actor_map: Mapping[Key, Coverage], moment: float) -> list[str]:
                return _missing_gains(snapshot, after, actor_map, accounts, "", moment)

            escalated |= self._judge(
                snapshot, None, parent if parent is not None else name, operation, missing_with,
                lambda shown: f"{self.actor} cannot move department {name} below "
                              f"{parent or 'no one'}: the move would give {shown} beyond what "
                              f"{self.actor} itself holds")
            removed: list[Rule] = [(R.DEPARTMENT, name, old or "", self.domain)]
            added: list[Rule] = [(R.DEPARTMENT, name, parent or "", self.domain)]
            return added, removed, [self._draft(operation, name, added, removed, escalated,
                                                detail=f"{old or 'no one'} -> {parent or 'no one'}")]

        return self._run(operation, name, plan)[0]

    def rename_department(self, old: str, new: str) -> AuditRecord:
        """Rename department ``old`` to ``new``, rewriting every rule that names it in one
        audited change: its own ``g2`` rule and those of the departments directly below it, the
        accounts in it (``g3``) and also in it (``g5``), and the ``custom`` scopes of permissions,
        grants and field rules naming it (conditions kept). Every decision stays what it was,
        with ``new`` in place of ``old``, so it hands nothing out; it changes the whole subtree's
        place in the tree, so the actor must manage every department of ``old``'s subtree (or
        escalate there). ``new`` must be a valid, unused department name (``ValueError`` /
        :class:`~salesauthz.errors.ForbiddenError` otherwise). Records are the CRM's: re-file
        those filed under ``old``; until then they lie in no department (they deny more, never
        allow more)."""
        operation = "rename_department"

        def plan(snapshot: Snapshot) -> _Change:
            if old not in snapshot.department_parent:
                raise UnknownNameError("department", old, self.domain)
            self._check_new_department(snapshot, new, f"cannot rename department {old!r} to {new!r}")
            escalated = False
            for department in sorted(snapshot.subtree.get(old, frozenset((old,)))):
                escalated |= self._require_department(snapshot, department, operation)
            removed: list[Rule] = []
            added: list[Rule] = []
            for rule in self._authz.rules(self.domain):
                renamed = _renamed(rule, old, new)
                if renamed != rule:
                    removed.append(rule)
                    added.append(renamed)
            return added, removed, [self._draft(operation, old, added, removed, escalated,
                                                detail=f"{old} -> {new}")]

        return self._run(operation, old, plan)[0]

    def delete_department(self, name: str) -> AuditRecord:
        """Delete an empty department: no department below it, no account in it (main or
        auxiliary), no ``custom`` scope naming it (otherwise :class:`~salesauthz.errors.PolicyError`
        naming what still does, SA120). The actor must manage it. It only narrows."""
        operation = "delete_department"

        def plan(snapshot: Snapshot) -> _Change:
            if name not in snapshot.department_parent:
                raise UnknownNameError("department", name, self.domain)
            escalated = self._require_department(snapshot, name, operation)
            rule: Rule = (R.DEPARTMENT, name, snapshot.department_parent[name] or "", self.domain)
            return [], [rule], [self._draft(operation, name, (), [rule], escalated)]

        return self._run(operation, name, plan)[0]

    def add_role_permission(self, role: str, type: str, actions: Iterable[str], *,
                            scope: str | Scope, departments: Iterable[str] = ()) -> AuditRecord:
        """Add ``type:action@scope`` to a role: it reaches every account holding the role
        (directly, through inheritance or until a moment). The actor must manage each holder and
        hold what the permission newly gives each of them at least as widely (or escalate over
        that holder, within its escalate right's reach); a holder that is the actor itself needs
        escalate. A wildcard is stored as the actions held unless escalated."""
        operation = "edit_role"
        action_list = list(actions)
        the_scope = scope if isinstance(scope, Scope) else Scope.of(scope, departments)

        def plan(snapshot: Snapshot) -> _Change:
            if role not in snapshot.roles:
                raise UnknownNameError("role", role, self.domain)
            granted = self._check_grant(snapshot, type, action_list, the_scope, "", role)
            self._require_administrator(snapshot, operation, role)
            escalated = False
            for holder, until in _holders(snapshot, role):
                escalated |= self._require_manage(snapshot, holder, None, operation)
                permissions = [p._replace(expires=until) for p in granted]
                escalated |= self._require_holds(snapshot, holder, snapshot.department_of(holder),
                                                 permissions, operation, escalated)
            keys = _stored_keys(snapshot, type, action_list, escalated)
            added: list[Rule] = [(R.PERMISSION, role, self.domain, t, a, text, "")
                                 for t, a in keys for text in the_scope.encode()]
            label = f"{role} + {type}:{','.join(action_list)}@{the_scope}"
            return added, [], [self._draft(operation, role, added, (), escalated, detail=label)]

        return self._run(operation, role, plan)[0]

    def remove_role_permission(self, role: str, type: str, actions: Iterable[str], *,
                               scope: str | Scope | None = None) -> AuditRecord:
        """Remove ``type:action`` (at ``scope``, or at every scope) from a role. It only narrows,
        but it changes every holder: the actor must manage each of them."""
        operation = "edit_role"
        action_set = set(actions)
        wanted = None if scope is None else (scope if isinstance(scope, Scope) else Scope.of(scope))

        def plan(snapshot: Snapshot) -> _Change:
            if role not in snapshot.roles:
                raise UnknownNameError("role", role, self.domain)
            removed = [p.rule for p in snapshot.role_permissions.get(role, ())
                       if p.type == type and p.action in action_set
                       and (wanted is None or (wanted.kind is p.scope.kind
                            and (not wanted.departments or p.scope.departments <= wanted.departments)))]
            if not removed:
                raise UnknownNameError("role permission",
                                       f"{role}: {type}:{','.join(sorted(action_set))}", self.domain)
            self._require_administrator(snapshot, operation, role)
            escalated = False
            for holder, _ in _holders(snapshot, role):
                escalated |= self._require_manage(snapshot, holder, None, operation)
            return [], removed, [self._draft(operation, role, (), removed, escalated,
                                             detail=f"{role} - {type}:{','.join(sorted(action_set))}")]

        return self._run(operation, role, plan)[0]

    def create_role(self, name: str, *, inherits: Iterable[str] = ()) -> AuditRecord:
        """Create a role (inheriting ``inherits``). Nobody holds it yet, so it hands nothing out:
        the actor must be an administrator (hold ``account:manage`` at some scope)."""
        operation = "create_role"
        parents = list(inherits)

        def plan(snapshot: Snapshot) -> _Change:
            if name in snapshot.roles or name in snapshot.accounts:
                raise ForbiddenError(f"{name!r} already exists in domain {self.domain!r}",
                                     account=self.actor, domain=self.domain)
            for parent in parents:
                if parent not in snapshot.roles:
                    raise UnknownNameError("role", parent, self.domain)
            self._require_administrator(snapshot, operation, name)
            added: list[Rule] = [(R.ROLE, name, self.domain)]
            added += [(R.ROLE_LINK, name, parent, self.domain) for parent in parents]
            return added, [], [self._draft(operation, name, added, (), False,
                                           detail=f"inherits {', '.join(parents) or 'nothing'}")]

        return self._run(operation, name, plan)[0]

    def delete_role(self, name: str) -> AuditRecord:
        """Delete a role with its permissions, field rules, assignments and the inheritance links
        naming it. It only narrows, but it changes every holder: the actor must manage each."""
        operation = "delete_role"

        def plan(snapshot: Snapshot) -> _Change:
            if name not in snapshot.roles:
                raise UnknownNameError("role", name, self.domain)
            escalated = False
            for holder, _ in _holders(snapshot, name):
                escalated |= self._require_manage(snapshot, holder, None, operation)
            removed = [rule for rule in self._authz.rules(self.domain)
                       if (rule[0] in (R.ROLE, R.PERMISSION, R.FIELD_RULE) and rule[1] == name)
                       or (rule[0] == R.ROLE_LINK and name in (rule[1], rule[2]))
                       or (rule[0] == R.TIMED_ROLE and rule[2] == name)]
            return [], removed, [self._draft(operation, name, (), removed, escalated)]

        return self._run(operation, name, plan)[0]

    def extend_vocabulary(self, type: str, actions: Iterable[str]) -> AuditRecord:
        """Add ``actions`` to resource type ``type`` (a new type too). Whoever holds a wildcard
        over the type gains them, and nobody — the actor included — could do them before: so
        when anyone holds such a wildcard, only ``role:escalate`` reaching as far (in practice:
        ``all``) may extend the vocabulary."""
        operation = "extend_vocabulary"
        action_list = list(actions)

        def plan(snapshot: Snapshot) -> _Change:
            if not action_list or any(a == R.WILDCARD or not a for a in action_list):
                raise ValueError("extend the vocabulary by named actions ('*' is not an action)")
            known = snapshot.vocabulary.get(type, frozenset())
            new = [a for a in dict.fromkeys(action_list) if a not in known]
            if not new:
                raise ForbiddenError(f"{type} already has {', '.join(action_list)}",
                                     account=self.actor, domain=self.domain)
            vocabulary = dict(snapshot.vocabulary)
            vocabulary[type] = known | frozenset(new)
            after = dataclasses.replace(snapshot, vocabulary=vocabulary)
            accounts = sorted(snapshot.accounts)

            def missing_with(actor_map: Mapping[Key, Coverage], moment: float) -> list[str]:
                return _missing_gains(snapshot, after, actor_map, accounts, "", moment)

            escalated = self._judge(
                snapshot, None, None, operation, missing_with,
                lambda shown: f"{self.actor} cannot extend the vocabulary of {type}: wildcards "
                              f"would give {shown}, which nobody could do before")
            added: list[Rule] = [(R.VOCABULARY, self.domain, type, a) for a in new]
            return added, [], [self._draft(operation, type, added, (), escalated,
                                           detail=f"{type}: {', '.join(new)}")]

        return self._run(operation, type, plan)[0]

    def delete_account(self, account: str) -> AuditRecord:
        """Delete a frozen or deactivated account and every rule about it (roles, grants,
        departments, attributes, its parent and superior). Refused while it is active, or while
        sub-accounts or reports name it (offboard it first). The actor must manage it."""
        operation = "delete_account"

        def plan(snapshot: Snapshot) -> _Change:
            self._require_account(snapshot, account)
            if account == self.actor:
                raise ForbiddenError("an account cannot delete itself", account=self.actor,
                                     domain=self.domain)
            info = snapshot.account(account)
            if info.status == "active":
                raise ForbiddenError(f"{account} is active: freeze or deactivate it (or offboard "
                                     "it) before deleting it", account=self.actor, domain=self.domain)
            below = sorted(snapshot.children.get(account, ()))
            reports = sorted(snapshot.reports.get(account, ()))
            if below or reports:
                raise ForbiddenError(f"{account} still has sub-accounts or reports "
                                     f"({', '.join([*below, *reports])}): offboard it first",
                                     account=self.actor, domain=self.domain)
            escalated = self._require_manage(snapshot, account, None, operation)
            removed = [rule for rule in self._authz.rules(self.domain)
                       if rule[1] == account and rule[0] in _ACCOUNT_RULES]
            return [], removed, [self._draft(operation, account, (), removed, escalated)]

        return self._run(operation, account, plan)[0]

    def _require_administrator(self, snapshot: Snapshot, operation: str, target: str) -> None:
        """The actor holds ``account:manage`` at some scope (roles are administered by
        administrators, even a role nobody holds yet)."""
        actor_map, _ = engine.effective(snapshot, self.actor, self._authz.now())
        manage = actor_map.get(("account", "manage"))
        if manage is None or manage.is_empty:
            raise EscalationError(f"{self.actor} may not {operation.replace('_', ' ')} {target}: it "
                                  "holds no account:manage", actor=self.actor, operation=operation,
                                  target=target, missing=["account:manage"], domain=self.domain)

    def _check_new_department(self, snapshot: Snapshot, name: str, refusal: str) -> None:
        """Refuse ``name`` for a new department: a name the stores cannot hold (``ValueError``
        starting with ``refusal``) or one the domain already has (``ForbiddenError``)."""
        problem = _department_name_problem(name)
        if problem is not None:
            raise ValueError(f"{refusal}: {problem}")
        if name in snapshot.department_parent:
            raise ForbiddenError(f"department {name!r} already exists in domain {self.domain!r}",
                                 account=self.actor, domain=self.domain)

    def _require_department(self, snapshot: Snapshot, department: str | None,
                            operation: str) -> bool:
        """The actor manages ``department`` (its ``account:manage`` reaches the department's
        records; ``None``: the whole domain), or its escalate right does; returns whether
        escalate was used."""
        actor_map, _ = engine.effective(snapshot, self.actor, self._authz.now())
        manage = actor_map.get(("account", "manage"))
        if manage is not None and (manage.everything or (
                department is not None and department in manage.departments)):
            return False
        escalate = actor_map.get(("role", "escalate"))
        if escalate is not None and (escalate.everything or (
                department is not None and department in escalate.departments)):
            return True
        where = f"department {department}" if department is not None else "the whole domain"
        raise EscalationError(f"{self.actor} may not manage {where}: it holds no account:manage "
                              "(nor role:escalate) reaching it", actor=self.actor,
                              operation=operation, target=department or self.domain,
                              missing=["account:manage"], domain=self.domain)

    def offboard(self, account: str, *, transfer_to: str) -> OffboardPlan:
        """Freeze ``account`` now and plan the rest: its records (a filter for the CRM to transfer
        to ``transfer_to``), its sub-accounts, the grants it issued to others (from the audit
        trail), to be re-issued by the actor where it may, revoked otherwise, and its direct
        reports, re-pointed to ``transfer_to`` (the successor takes over the team) where the
        actor may. :meth:`OffboardPlan.apply` carries it out in one atomic change."""
        snapshot = self._current()
        self._require_account(snapshot, account)
        self._require_account(snapshot, transfer_to)
        if account == self.actor:  # it would freeze itself and then could not apply the plan
            raise ForbiddenError("an account cannot offboard itself", account=self.actor,
                                 domain=self.domain)
        if snapshot.account(account).status == "active":
            self.freeze(account)
        snapshot = self._current()
        involved = [name for name, info in snapshot.accounts.items()
                    if info.parent == account or info.reports_to == account]
        involved += _superiors(snapshot, transfer_to)
        timeline = self._timeline(snapshot, [m for name in involved
                                             for m in self._own_changes(snapshot, name)])
        actor_map = timeline[0][1]
        subs: list[tuple[str, str]] = []
        for name in sorted(n for n, info in snapshot.accounts.items() if info.parent == account):
            held = _held(snapshot, name)
            ok = self._allowed_manage(snapshot, actor_map, name, None) and not any(
                _missing(snapshot, moment_map, name, snapshot.department_of(name),
                         [p for p in held if not engine.expired(p.expires, moment)])
                for moment, moment_map in timeline)
            subs.append((name, "reparent" if ok else "freeze"))
        grants: list[tuple[Rule, str]] = []
        current = set(self._authz.rules(self.domain))
        issued = [r for record in self._authz.audit.query(domain=self.domain, actor=account)
                  if record.outcome == "applied" and record.operation in ("grant", "assign_role")
                  for r in record.added]
        for rule in dict.fromkeys(issued):
            if rule not in current:
                continue
            target = rule[1]
            permissions = ([engine.parse_permission(rule)] if rule[0] == R.PERMISSION
                           else _role_permissions(snapshot, rule[2]))
            if rule[0] == R.TIMED_ROLE:
                ends = R.parse_expiry(rule[4])
                permissions = [p._replace(expires=engine.earliest(p.expires, ends))
                               for p in permissions]
            target_timeline = self._timeline(snapshot, self._own_changes(snapshot, target))
            keep = self._allowed_manage(snapshot, actor_map, target, None) and not any(
                _missing(snapshot, moment_map, target, snapshot.department_of(target),
                         [p for p in permissions if not engine.expired(p.expires, moment)],
                         already=_own_without(snapshot, target, rule, moment))
                for moment, moment_map in target_timeline)
            grants.append((rule, "reissue" if keep else "revoke"))
        reports = self._plan_reports(snapshot, timeline, account, transfer_to,
                                     snapshot.reports.get(account, ()))
        records = ScopeFilter(account, "*", "*", self.domain, Coverage(owners=frozenset((account,))))
        return OffboardPlan(self, account, transfer_to, records, tuple(subs), tuple(grants),
                            tuple(reports))

    # -- internals -------------------------------------------------------------------------

    def _apply_offboard(self, plan: OffboardPlan) -> list[AuditRecord]:
        def build(snapshot: Snapshot) -> _Change:
            added: list[Rule] = []
            removed: list[Rule] = []
            drafts: list[AuditDraft] = []
            for name, action in plan.sub_accounts:
                if snapshot.account(name).parent != plan.account:
                    continue  # changed since the plan was made
                if action == "reparent":
                    # Under the successor — unless the successor is this sub-account or below
                    # it (it would be its own ancestor): then it takes the leaver's place, under
                    # the leaver's parent if any. The plan checked that the actor holds all it
                    # holds, so losing the leaver's ceiling escalates nothing.
                    heir: str | None = plan.transfer_to
                    if heir == name or heir in snapshot.descendants_of((name,)):
                        heir = snapshot.account(plan.account).parent
                    change_add = [(R.PARENT, name, heir, self.domain)] if heir else []
                    change_remove = [(R.PARENT, name, plan.account, self.domain)]
                else:
                    status = snapshot.account(name).status or "active"
                    if status == "deactivated":
                        continue  # stays deactivated: freezing would make it unfreezable
                    change_add = [(R.ACCOUNT, name, self.domain, "frozen")]
                    change_remove = [(R.ACCOUNT, name, self.domain, status)] if status != "frozen" else []
                added += change_add
                removed += change_remove
                drafts.append(self._draft("offboard_" + action, name, change_add, change_remove, False,
                                          detail=f"offboarding {plan.account}"))
            planned = [name for name, _, action in plan.reports if action == "repoint"
                       and snapshot.account(name).reports_to == plan.account]  # else changed since
            involved = [*planned, *_superiors(snapshot, plan.transfer_to)]
            timeline = self._timeline(snapshot, [m for name in involved
                                                 for m in self._own_changes(snapshot, name)])
            for name, superior, action in self._plan_reports(snapshot, timeline, plan.account,
                                                             plan.transfer_to, planned):
                if action != "repoint":
                    continue  # no longer allowed: left as it is, like a "keep"
                change_remove = [(R.REPORTS_TO, name, plan.account, self.domain)]
                change_add = [(R.REPORTS_TO, name, superior, self.domain)] if superior else []
                added += change_add
                removed += change_remove
                drafts.append(self._draft("offboard_reports_to", name, change_add, change_remove,
                                          False, detail=f"offboarding {plan.account}: now reports "
                                                        f"to {superior or 'no one'}"))
            current = set(self._authz.rules(self.domain))
            for rule, action in plan.grants:
                if rule not in current:
                    continue
                if action == "revoke":
                    removed.append(rule)
                    drafts.append(self._draft("offboard_revoke", rule[1], (), [rule], False,
                                              detail=f"issued by {plan.account}"))
                else:
                    drafts.append(self._draft("offboard_reissue", rule[1], (), (), False,
                                              detail=f"{rule!r} issued by {plan.account}, now vouched "
                                                     f"for by {self.actor}"))
            return added, removed, drafts

        return self._run("offboard", plan.account, build)

    def _set_status(self, account: str, status: str, operation: str) -> AuditRecord:
        def plan(snapshot: Snapshot) -> _Change:
            self._require_account(snapshot, account)
            current = snapshot.account(account).status
            if current == status:
                raise ForbiddenError(f"{account} is already {status}", account=self.actor,
                                     domain=self.domain)
            if operation == "unfreeze" and current != "frozen":
                raise ForbiddenError(f"only a frozen account can be unfrozen; {account} is {current}"
                                     + (" (use reactivate)" if current == "deactivated" else ""),
                                     account=self.actor, domain=self.domain)
            if operation == "freeze" and current == "deactivated":
                raise ForbiddenError(f"{account} is deactivated: it cannot be frozen (nor then "
                                     "unfrozen); only reactivate brings it back",
                                     account=self.actor, domain=self.domain)
            if operation == "reactivate" and current != "deactivated":
                raise ForbiddenError(f"only a deactivated account can be reactivated; {account} is "
                                     f"{current}", account=self.actor, domain=self.domain)
            escalated = self._require_manage(snapshot, account, None, operation)
            if operation == "reactivate":
                escalated = self._bypass(snapshot, account, operation,
                                         f"{self.actor} may not reactivate {account}: reactivating "
                                         "a deactivated account needs role:escalate over it",
                                         ["role:escalate"])
            if operation in ("unfreeze", "reactivate"):
                if account == self.actor:
                    raise ForbiddenError(f"an account cannot {operation} itself", account=self.actor,
                                         domain=self.domain)
                escalated |= self._require_holds(snapshot, account, snapshot.department_of(account),
                                                 _held(snapshot, account),
                                                 operation, escalated, gained_only=False)
            removed: list[Rule] = [(R.ACCOUNT, account, self.domain, current or "active")]
            added: list[Rule] = [(R.ACCOUNT, account, self.domain, status)]
            return added, removed, [self._draft(operation, account, added, removed, escalated)]

        return self._run(operation, account, plan)[0]

    def _current(self) -> Snapshot:
        snapshot = self._authz._snapshot(self.domain)
        if snapshot is None:
            raise UnknownNameError("domain", self.domain)
        return snapshot

    def _run(self, operation: str, target: str,
             plan: Callable[[Snapshot], _Change]) -> list[AuditRecord]:
        def guarded(snapshot: Snapshot | None) -> _Change:
            if snapshot is None:
                raise UnknownNameError("domain", self.domain)
            info = snapshot.accounts.get(self.actor)
            if info is None or info.status != "active":
                raise ForbiddenError(f"actor {self.actor!r} is not an active account of domain "
                                     f"{self.domain!r}", account=self.actor, domain=self.domain)
            return plan(snapshot)

        try:
            return self._authz._transact(self.domain, guarded)
        except ForbiddenError as exc:
            if self.audit_denied:
                self._authz.apply_changes(audit=[self._draft(operation, target, (), (), False,
                                                             outcome="denied", detail=str(exc))])
            raise

    def _draft(self, operation: str, target: str, added: Sequence[Rule], removed: Sequence[Rule],
               escalated: bool, *, outcome: str = "applied", detail: str = "") -> AuditDraft:
        return AuditDraft(self._authz.now(), self.actor, self.domain, operation, target,
                          tuple(added), tuple(removed), escalated, outcome, detail, self.assurance)

    def _require_account(self, snapshot: Snapshot, account: str) -> None:
        info = snapshot.accounts.get(account)
        if info is None or info.status is None:
            raise UnknownNameError("account", account, self.domain)

    def _check_grant(self, snapshot: Snapshot, type: str, actions: Sequence[str], scope: Scope,
                     expiry: str, recipient: str) -> list[Permission]:
        """What a grant of ``type:actions@scope`` to ``recipient`` ending at ``expiry`` (``""``:
        never) gives, once checked: the vocabulary knows the type and actions, the domain every
        department the scope names, and the expiry is in the future (``ValueError`` otherwise)."""
        self._require_vocabulary(snapshot, type, actions)
        for name in scope.departments:
            if name not in snapshot.department_parent:
                raise UnknownNameError("department", name, self.domain)
        ends = R.parse_expiry(expiry) if expiry else None
        if ends is not None and ends <= self._authz.now():
            raise ValueError(f"the grant to {recipient} would end at {expiry}, which is not in "
                             "the future")
        return [Permission(type, a, scope, ends, ()) for a in actions]

    def _grant_change(self, snapshot: Snapshot, operation: str, kind: str, subject: str, type: str,
                      actions: Sequence[str], scope: Scope, expiry: str, escalated: bool) -> _Change:
        """The ``kind`` rules a grant to ``subject`` judged (``escalated`` or not) adds, and its
        audit record, whose detail names the grant as asked and, where a wildcard is stored as
        today's actions, as stored."""
        keys = _stored_keys(snapshot, type, actions, escalated)
        added: list[Rule] = [(kind, subject, self.domain, t, a, text, expiry)
                             for t, a in keys for text in scope.encode()]
        label = f"{type}:{','.join(actions)}@{scope}" + (f" until {expiry}" if expiry else "")
        if keys != [(type, a) for a in actions]:
            label += " (as " + ", ".join(f"{t}:{a}" for t, a in keys) + ")"
        return added, [], [self._draft(operation, subject, added, (), escalated, detail=label)]

    def _require_vocabulary(self, snapshot: Snapshot, type: str, actions: Sequence[str]) -> None:
        if not actions:
            raise ValueError("grant at least one action")
        if type != R.WILDCARD and type not in snapshot.vocabulary:
            raise UnknownNameError("resource type", type, self.domain)
        for action in actions:
            if action == R.WILDCARD:
                continue
            known = (snapshot.vocabulary.get(type, frozenset()) if type != R.WILDCARD
                     else frozenset().union(*snapshot.vocabulary.values()))
            if action not in known:
                raise UnknownNameError("action", f"{type}:{action}", self.domain)

    def _allowed_manage(self, snapshot: Snapshot, actor_map: EffectiveMap,
                        account: str, department: str | None) -> bool:
        coverage = actor_map.get(("account", "manage"))
        where = department if department is not None else snapshot.department_of(account)
        return coverage is not None and coverage.covers(account, where)

    def _escalate_reach(self, snapshot: Snapshot, account: str | None,
                        department: str | None) -> Coverage | None:
        """What the actor's ``role:escalate`` reaches, if it covers ``account`` (in ``department``,
        default its own; with no account: the department itself, records of no one in it);
        ``None`` otherwise."""
        effective, _ = engine.effective(snapshot, self.actor, self._authz.now())
        coverage = effective.get(("role", "escalate"))
        where = department if department is not None else snapshot.department_of(account)
        if account is None:  # a department's records; with no department, the whole domain
            return coverage if coverage is not None and (coverage.everything or (
                where is not None and where in coverage.departments)) else None
        return coverage if coverage is not None and coverage.covers(account, where) else None

    def _holds_escalate(self, snapshot: Snapshot, account: str, department: str | None) -> bool:
        return self._escalate_reach(snapshot, account, department) is not None

    def _timeline(self, snapshot: Snapshot, also: Iterable[float] = ()) -> list[tuple[float, EffectiveMap]]:
        """``(from, map)``: the actor's effective map now, at each later moment it changes (an
        expiry) and at the moments ``also`` (when what the target holds by itself changes), as
        the rules stand; the last one holds forever."""
        now = self._authz.now()
        pending = sorted({m for m in also if m > now})
        moment = now
        found: list[tuple[float, EffectiveMap]] = []
        while True:
            actor_map, until = engine.effective(snapshot, self.actor, moment)
            found.append((moment, actor_map))
            while pending and pending[0] <= moment:
                pending.pop(0)
            nxt = min(m for m in (until, pending[0] if pending else None) if m is not None) \
                if until is not None or pending else None
            if nxt is None:
                return found
            if len(found) >= _TIMELINE_LIMIT:  # rights changing this often: judged as ended here
                found.append((nxt, {}))
                return found
            moment = nxt

    def _own_changes(self, snapshot: Snapshot, account: str) -> list[float]:
        """The moments what ``account`` holds by itself changes (its grants and timed roles
        expiring)."""
        return sorted({p.expires for p in _held(snapshot, account) if p.expires is not None})

    def _bypass(self, snapshot: Snapshot, account: str, operation: str, message: str,
                missing: Sequence[str], department: str | None = None) -> bool:
        """Use the escalate right if the actor holds it over the account; raise otherwise."""
        if self._holds_escalate(snapshot, account, department):
            return True
        raise EscalationError(message, actor=self.actor, operation=operation, target=account,
                              missing=missing, domain=self.domain)

    def _require_manage(self, snapshot: Snapshot, account: str, department: str | None,
                        operation: str, escalated: bool = False) -> bool:
        """Rule 1 (for ``account`` in ``department``, default its own); returns whether the
        escalate right had to be used. Decided for this department whatever was decided before
        (``escalated`` is not sticky: an escalate right over the account where it is says
        nothing about where it goes)."""
        actor_map, _ = engine.effective(snapshot, self.actor, self._authz.now())
        if self._allowed_manage(snapshot, actor_map, account, department):
            return False
        where = department if department is not None else snapshot.department_of(account)
        return self._bypass(snapshot, account, operation,
                            f"{self.actor} may not manage account {account}"
                            + (f" in department {where}" if where else "")
                            + ": it holds no account:manage at a scope covering it"
                            + (" (nor role:escalate)" if escalated else ""),
                            ["account:manage"], department)

    def _judge(self, snapshot: Snapshot, account: str | None, department: str | None, operation: str,
               missing_with: Callable[[Mapping[Key, Coverage], float], list[str]],
               message: Callable[[str], str], also: Iterable[float] = ()) -> bool:
        """Rule 2 over time, and rule 3 bounded by the escalate right's own scope.

        ``missing_with(actor map, moment)`` lists what the operation gives (that is still in
        force at ``moment``) beyond an actor holding that map. The actor must hold it now and at
        every later change of its rights (a right of the actor that expires bounds what it may
        hand out). Otherwise the actor's ``role:escalate`` must cover ``account`` (in
        ``department``) and, added to what the actor holds, reach all of it — at every moment
        too. Returns whether escalate was used; raises :class:`EscalationError` otherwise."""
        timeline = self._timeline(snapshot, also)
        now = timeline[0][0]
        missing: list[str] = []
        for moment, actor_map in timeline:
            for label in missing_with(actor_map, moment):
                missing.append(label if moment <= now else
                               f"{label} after {R.format_expiry_at(moment)}")
        if not missing:
            return False
        unique, shown = _listed(missing)
        if self._escalate_reach(snapshot, account, department) is None:
            raise EscalationError(message(shown), actor=self.actor, operation=operation,
                                  target=account or department or "", missing=unique,
                                  domain=self.domain)
        beyond: list[str] = []
        for moment, actor_map in timeline:
            reach = actor_map.get(("role", "escalate"), NOTHING)
            for label in missing_with(_Widened(actor_map, reach), moment):
                beyond.append(label if moment <= now else
                              f"{label} after {R.format_expiry_at(moment)}")
        if beyond:
            unique, shown = _listed(beyond)
            raise EscalationError(
                f"{message(shown)}; its role:escalate does not reach that far either (escalation "
                "hands out nothing beyond the escalate right's own scope)", actor=self.actor,
                operation=operation, target=account or department or "", missing=unique,
                domain=self.domain)
        return True

    def _require_holds(self, snapshot: Snapshot, account: str, department: str | None,
                       permissions: Sequence[Permission], operation: str, escalated: bool, *,
                       gained_only: bool = True) -> bool:
        """Rule 2 for everything ``permissions`` would give ``account`` in ``department``, for as
        long as each is in force (its ``expires``). With ``gained_only`` only what they give
        beyond what the account holds by itself at each moment counts (a grant, a role, a move);
        without it all of it (an unfreeze: nothing was in force before)."""
        if account == self.actor and operation in ("assign_role", "grant", "move", "edit_role",
                                                   "grant_department") \
                and not escalated:
            escalated = self._bypass(snapshot, account, operation,
                                     f"{self.actor} may not {operation.replace('_', ' ')} for itself",
                                     [f"{operation} on itself"], department)
        capped = account in snapshot.descendants_of((self.actor,))

        def missing_with(actor_map: Mapping[Key, Coverage], moment: float) -> list[str]:
            if capped and moment > self._authz.now():
                return []  # the parent ceiling takes the actor's later rights into account
            alive = [p for p in permissions if p.expires is None or p.expires > moment]
            already = engine.own_map(snapshot, account, moment)[0] if gained_only else None
            return _missing(snapshot, actor_map, account, department, alive, capped, already)

        return self._judge(
            snapshot, account, department, operation, missing_with,
            lambda shown: f"{self.actor} cannot {operation.replace('_', ' ')} for {account}: it does "
                          f"not itself hold {shown} over {account}",
            self._own_changes(snapshot, account) if gained_only else ()) or escalated

    def _require_gains(self, before: Snapshot, after: Snapshot, accounts: Sequence[str], target: str,
                       operation: str, escalated: bool) -> bool:
        """Rule 2 for a change of the facts scopes read (``before`` → ``after``): whatever
        ``accounts`` would reach beyond what they reach now, the actor must hold as widely."""
        words = operation.replace("_", " ")
        if target == self.actor and target in accounts and not escalated:
            escalated = self._bypass(before, target, operation,
                                     f"{self.actor} may not {words} for itself",
                                     [f"{operation} on itself"])

        def missing_with(actor_map: Mapping[Key, Coverage], moment: float) -> list[str]:
            return _missing_gains(before, after, actor_map, accounts, target, moment)

        return self._judge(
            before, target, None, operation, missing_with,
            lambda shown: f"{self.actor} cannot {words} for {target}: the change would give "
                          f"{shown} beyond what {self.actor} itself holds",
            [m for name in accounts for m in self._own_changes(before, name)]) or escalated

    def _timed_assignments(self, snapshot: Snapshot, account: str, role: str) -> list[Rule]:
        """The ``p8`` rules assigning ``role`` to ``account`` until some moment (the stored rules
        are read only when the snapshot says there is one)."""
        if role not in dict(snapshot.account(account).timed_roles):
            return []
        return [rule for rule in self._authz.rules(self.domain)
                if rule[0] == R.TIMED_ROLE and rule[1] == account and rule[2] == role]

    def _plan_reports(self, snapshot: Snapshot, timeline: Sequence[tuple[float, EffectiveMap]],
                      leaver: str,
                      transfer_to: str, reports: Iterable[str]) -> list[tuple[str, str | None, str]]:
        """``(report, new superior, "repoint" | "keep")`` for the leaver's direct ``reports``:
        each is re-pointed to ``transfer_to`` (``transfer_to`` itself, if it reported to the
        leaver, to the leaver's own superior), where the actor manages the report and the new
        superior, the line does not loop, and the actor holds what the new line gives (rule 2);
        otherwise it keeps reporting to the (frozen) leaver, for an administrator who may."""
        decided: list[tuple[str, str | None, str]] = []
        current = snapshot
        actor_map = timeline[0][1]
        for name in sorted(reports):
            superior = transfer_to if name != transfer_to else snapshot.account(leaver).reports_to
            info = current.account(name)
            after = _with_facts(current, {name: info._replace(reports_to=superior)})
            allowed = (superior != leaver and self._allowed_manage(current, actor_map, name, None)
                       and (superior is None or (
                           self._allowed_manage(current, actor_map, superior, None)
                           and name not in _superiors(current, superior)
                           and not any(_missing_gains(current, after, moment_map,
                                                      _superiors(after, superior), name, moment)
                                       for moment, moment_map in timeline))))
            if allowed:
                current = after
            decided.append((name, superior, "repoint" if allowed else "keep"))
        return decided


_NAME_LIMIT = 255
"""The longest department name :meth:`Admin.create_department` / ``rename_department`` accept."""


def _department_name_problem(name: object) -> str | None:
    """Why ``name`` cannot name a department, or ``None``: it must be non-empty text of at most
    :data:`_NAME_LIMIT` characters, without control characters, lone surrogates or surrounding
    whitespace, not ``*``, and survive Casbin's line-based loaders (no comma outside brackets,
    balanced brackets), as every value a store holds should."""
    if not isinstance(name, str):
        return f"a department name is text, not {type(name).__name__}"
    if not name.strip():
        return "a department name must not be empty or blank"
    if len(name) > _NAME_LIMIT:
        return f"a department name has at most {_NAME_LIMIT} characters, this one {len(name)}"
    if name == R.WILDCARD:
        return "'*' is a wildcard, not a department name"
    if any(unicodedata.category(c) == "Cc" for c in name):
        return "it contains a control character (NUL, line feed, tab …)"
    problem = R.check_rule((R.DEPARTMENT, name, "", "d"))
    if problem is None:
        problem = R.casbin_value_problem(name)
    return problem


def _renamed(rule: Rule, old: str, new: str) -> Rule:
    """``rule`` with department ``old`` named ``new`` (the same tuple when it does not name it)."""
    ptype = rule[0]
    if ptype == R.DEPARTMENT:
        return (ptype, new if rule[1] == old else rule[1], new if rule[2] == old else rule[2],
                *rule[3:])
    if ptype in (R.MEMBERSHIP, R.AUXILIARY):
        return (ptype, rule[1], new, *rule[3:]) if rule[2] == old else rule
    if ptype == R.DEPARTMENT_GRANT and rule[1] == old:  # a grant to the department itself
        rule = (ptype, new, *rule[2:])
    position = 5 if ptype in (R.PERMISSION, R.DEPARTMENT_GRANT) else 6 if ptype == R.FIELD_RULE \
        else None
    if position is None or not rule[position]:
        return rule
    scope = parse_scope(rule[position])
    if scope.kind is not ScopeKind.CUSTOM or old not in scope.departments:
        return rule
    moved = Scope(ScopeKind.CUSTOM, scope.departments - {old} | {new}, scope.condition)
    (text,) = moved.encode()
    return (*rule[:position], text, *rule[position + 1:])


def _attribute_rules(rules: Iterable[Rule], account: str, name: str) -> list[Rule]:
    """The ``p9`` rules stating the account's attribute ``name``."""
    return [rule for rule in rules
            if rule[0] == R.ACCOUNT_ATTRIBUTE and rule[1] == account and rule[3] == name]


def _require_comparable(snapshot: Snapshot, declared: Mapping[str, Mapping[str, str]],
                        account: str, name: str, value: object,
                        mismatch: Callable[[object, str, frozenset[str]], tuple[bool, object]],
                        ) -> None:
    """``ValueError`` when ``value`` could never pass a condition of the domain comparing
    ``account.<name>`` with a declared record attribute."""
    from .conditions import OWNER, AccountRef

    permissions = [p for ps in snapshot.role_permissions.values() for p in ps]
    permissions += [p for info in snapshot.accounts.values() for p in info.grants]
    for permission in permissions:
        condition = permission.scope.condition
        if condition is None:
            continue
        for test in condition.where:
            if not (isinstance(test.operand, AccountRef) and test.operand.name == name):
                continue
            types = declared if permission.type == R.WILDCARD else {
                permission.type: declared.get(permission.type, {})}
            kinds = frozenset({"str"} if test.attribute == OWNER else
                              {attrs[test.attribute] for attrs in types.values()
                               if test.attribute in attrs})
            bad, item = mismatch(value, test.op, kinds)
            if bad:
                raise ValueError(
                    f"attribute {name!r} of {account!r}: {item!r} can never match "
                    f"{permission.type}.{test.attribute} ({' or '.join(sorted(kinds))}), which "
                    f"the condition `{test}` compares it with")


def _assurance(context: Mapping[str, object] | None) -> int | None:
    """The session assurance level a request context gives (``mfa``: true is 1, false 0, a
    level itself), ``None`` without a context (or without ``mfa`` in it)."""
    if context is None or "mfa" not in context:
        return None
    have = context["mfa"]
    if isinstance(have, bool):
        return int(have)
    return have if isinstance(have, int) and have >= 0 else 0
