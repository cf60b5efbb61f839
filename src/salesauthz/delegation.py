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
from .scopes import NOTHING, Coverage, Scope
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


def _grant_is_covered(actor: Coverage | None, granted: Coverage, snapshot: Snapshot) -> bool:
    """Whether an actor holding ``actor`` may hand out ``granted`` (rule 2 above).

    ``granted`` is compared record-set-wise, with each owner's records taken in that owner's
    current department (records follow their owner by default). Records reached through shares
    (the ``shared`` scope) may lie anywhere in the domain: a guarded term is covered when the
    actor covers its records whatever their shares, or holds a term with the same guards over at
    least its records.
    """
    if actor is None:
        return False
    if actor.everything:
        return True
    if granted.everything:
        return False
    for term in granted.guarded:
        if not (_grant_is_covered(actor.plain, term.base, snapshot) or any(
                theirs.guards <= term.guards and _grant_is_covered(theirs.base, term.base, snapshot)
                for theirs in actor.guarded)):
            return False
    if not granted.departments <= actor.departments:
        return False
    for owner in granted.owners:
        if not actor.covers(owner, snapshot.department_of(owner)):
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
    """Every permission the account itself holds (its roles' and its grants)."""
    return [held.permission for held in engine.holdings(snapshot, account)]


def _missing(snapshot: Snapshot, actor_map: EffectiveMap, account: str, department: str | None,
             permissions: Iterable[Permission]) -> list[str]:
    """``type:action@scope`` labels of what ``permissions`` would give ``account`` (were it in
    ``department``) that an actor holding ``actor_map`` does not hold at least as widely."""
    missing: list[str] = []
    for permission in permissions:
        for key in engine.expand(snapshot, permission.type, permission.action):
            granted = engine.scope_coverage(snapshot, account, permission.scope, department,
                                            moved=True, key=key)
            if not _grant_is_covered(actor_map.get(key), granted, snapshot):
                missing.append(f"{key[0]}:{key[1]}@{permission.scope}")
    return missing


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


def _reach(snapshot: Snapshot, account: str) -> dict[Key, tuple[Coverage, dict[str, Coverage]]]:
    """``key → (union, scope label → coverage)`` of what the account's own holdings reach
    (expired ones included, its status and parent ignored: as :func:`_missing` judges)."""
    found: dict[Key, tuple[Coverage, dict[str, Coverage]]] = {}
    for held in engine.holdings(snapshot, account):
        permission = held.permission
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


def _missing_gains(before: Snapshot, after: Snapshot, actor_map: EffectiveMap,
                   accounts: Iterable[str], target: str) -> list[str]:
    """``type:action@scope`` labels (``… for <account>`` when not ``target``) of what
    ``accounts`` would reach in ``after`` beyond what they reach in ``before`` that an actor
    holding ``actor_map`` does not hold at least as widely (rule 2 for changes of the facts
    scopes read: auxiliary departments, reporting lines)."""
    missing: list[str] = []
    for account in dict.fromkeys(accounts):
        old = _reach(before, account)
        for key, (union, by_scope) in _reach(after, account).items():
            previous, previous_by_scope = old.get(key, (NOTHING, {}))
            gained = _beyond(union, previous)
            if gained.is_empty or _grant_is_covered(actor_map.get(key), gained, after):
                continue
            widened = sorted(label for label, coverage in by_scope.items()
                             if coverage != previous_by_scope.get(label, NOTHING)) or ["?"]
            suffix = "" if account == target else f" for {account}"
            missing.extend(f"{key[0]}:{key[1]}@{label}{suffix}" for label in widened)
    return missing


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
            escalated |= self._require_holds(snapshot, account, snapshot.department_of(account),
                                             _role_permissions(snapshot, role), "assign_role", escalated)
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
            self._require_vocabulary(snapshot, type, action_list)
            for name in the_scope.departments:
                if name not in snapshot.department_parent:
                    raise UnknownNameError("department", name, self.domain)
            escalated = self._require_manage(snapshot, account, None, "grant")
            added: list[Rule] = [(R.PERMISSION, account, self.domain, type, action, text, expiry)
                                 for action in action_list for text in the_scope.encode()]
            permissions = [Permission(type, a, the_scope, None, ()) for a in action_list]
            escalated |= self._require_holds(snapshot, account, snapshot.department_of(account),
                                             permissions, "grant", escalated)
            label = f"{type}:{','.join(action_list)}@{the_scope}" + (f" until {expiry}" if expiry else "")
            return added, [], [self._draft("grant", account, added, (), escalated, detail=label)]

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

    def move(self, account: str, *, department: str) -> AuditRecord:
        """Move an account to another department. The actor must manage it in both places, and
        hold everything the account's roles and grants reach from the new department."""

        def plan(snapshot: Snapshot) -> _Change:
            self._require_account(snapshot, account)
            if department not in snapshot.department_parent:
                raise UnknownNameError("department", department, self.domain)
            escalated = self._require_manage(snapshot, account, None, "move")
            escalated |= self._require_manage(snapshot, account, department, "move", escalated)
            escalated |= self._require_holds(snapshot, account, department,
                                             _held(snapshot, account), "move",
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
        """Mark the account as gone; like freeze, but not undone by :meth:`unfreeze`."""
        return self._set_status(account, "deactivated", "deactivate")

    def unfreeze(self, account: str) -> AuditRecord:
        """Reactivate a frozen account. Its rights come back into force, so the actor must hold
        them (the escalation rule applies to everything the account holds)."""
        return self._set_status(account, "active", "unfreeze")

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
        actor_map, _ = engine.effective(snapshot, self.actor, self._authz.now())
        subs: list[tuple[str, str]] = []
        for name in sorted(n for n, info in snapshot.accounts.items() if info.parent == account):
            ok = self._allowed_manage(snapshot, actor_map, name, None) and not _missing(
                snapshot, actor_map, name, snapshot.department_of(name),
                _held(snapshot, name))
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
            keep = self._allowed_manage(snapshot, actor_map, target, None) and not _missing(
                snapshot, actor_map, target, snapshot.department_of(target), permissions)
            grants.append((rule, "reissue" if keep else "revoke"))
        reports = self._plan_reports(snapshot, actor_map, account, transfer_to,
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
                    change_add = [(R.ACCOUNT, name, self.domain, "frozen")]
                    change_remove = [(R.ACCOUNT, name, self.domain, status)] if status != "frozen" else []
                added += change_add
                removed += change_remove
                drafts.append(self._draft("offboard_" + action, name, change_add, change_remove, False,
                                          detail=f"offboarding {plan.account}"))
            planned = [name for name, _, action in plan.reports if action == "repoint"
                       and snapshot.account(name).reports_to == plan.account]  # else changed since
            actor_map, _ = engine.effective(snapshot, self.actor, self._authz.now())
            for name, superior, action in self._plan_reports(snapshot, actor_map, plan.account,
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
                raise ForbiddenError(f"only a frozen account can be unfrozen; {account} is {current}",
                                     account=self.actor, domain=self.domain)
            escalated = self._require_manage(snapshot, account, None, operation)
            if operation == "unfreeze":
                if account == self.actor:
                    raise ForbiddenError("an account cannot unfreeze itself", account=self.actor,
                                         domain=self.domain)
                escalated |= self._require_holds(snapshot, account, snapshot.department_of(account),
                                                 _held(snapshot, account),
                                                 operation, escalated)
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

    def _holds_escalate(self, snapshot: Snapshot, account: str, department: str | None) -> bool:
        effective, _ = engine.effective(snapshot, self.actor, self._authz.now())
        coverage = effective.get(("role", "escalate"))
        where = department if department is not None else snapshot.department_of(account)
        return coverage is not None and coverage.covers(account, where)

    def _bypass(self, snapshot: Snapshot, account: str, operation: str, message: str,
                missing: Sequence[str], department: str | None = None) -> bool:
        """Use the escalate right if the actor holds it over the account; raise otherwise."""
        if self._holds_escalate(snapshot, account, department):
            return True
        raise EscalationError(message, actor=self.actor, operation=operation, target=account,
                              missing=missing, domain=self.domain)

    def _require_manage(self, snapshot: Snapshot, account: str, department: str | None,
                        operation: str, escalated: bool = False) -> bool:
        """Rule 1; returns whether the escalate right had to be used."""
        actor_map, _ = engine.effective(snapshot, self.actor, self._authz.now())
        if self._allowed_manage(snapshot, actor_map, account, department):
            return False
        if escalated:
            return True
        where = department if department is not None else snapshot.department_of(account)
        return self._bypass(snapshot, account, operation,
                            f"{self.actor} may not manage account {account}"
                            + (f" in department {where}" if where else "")
                            + ": it holds no account:manage at a scope covering it",
                            ["account:manage"], department)

    def _require_holds(self, snapshot: Snapshot, account: str, department: str | None,
                       permissions: Sequence[Permission], operation: str, escalated: bool) -> bool:
        """Rule 2 for everything ``permissions`` would give ``account`` in ``department``."""
        if account == self.actor and operation in ("assign_role", "grant", "move") and not escalated:
            return self._bypass(snapshot, account, operation,
                                f"{self.actor} may not {operation.replace('_', ' ')} for itself",
                                [f"{operation} on itself"], department)
        actor_map, _ = engine.effective(snapshot, self.actor, self._authz.now())
        missing = _missing(snapshot, actor_map, account, department, permissions)
        if not missing:
            return False
        if escalated:
            return True
        unique, shown = _listed(missing)
        return self._bypass(snapshot, account, operation,
                            f"{self.actor} cannot {operation.replace('_', ' ')} for {account}: it does "
                            f"not itself hold {shown} over {account}", unique, department)

    def _require_gains(self, before: Snapshot, after: Snapshot, accounts: Sequence[str], target: str,
                       operation: str, escalated: bool) -> bool:
        """Rule 2 for a change of the facts scopes read (``before`` → ``after``): whatever
        ``accounts`` would reach beyond what they reach now, the actor must hold as widely."""
        words = operation.replace("_", " ")
        if target == self.actor and target in accounts and not escalated:
            return self._bypass(before, target, operation, f"{self.actor} may not {words} for itself",
                                [f"{operation} on itself"])
        actor_map, _ = engine.effective(before, self.actor, self._authz.now())
        missing = _missing_gains(before, after, actor_map, accounts, target)
        if not missing:
            return False
        if escalated:
            return True
        unique, shown = _listed(missing)
        return self._bypass(before, target, operation,
                            f"{self.actor} cannot {words} for {target}: the change would give "
                            f"{shown} beyond what {self.actor} itself holds", unique)

    def _timed_assignments(self, snapshot: Snapshot, account: str, role: str) -> list[Rule]:
        """The ``p8`` rules assigning ``role`` to ``account`` until some moment (the stored rules
        are read only when the snapshot says there is one)."""
        if role not in dict(snapshot.account(account).timed_roles):
            return []
        return [rule for rule in self._authz.rules(self.domain)
                if rule[0] == R.TIMED_ROLE and rule[1] == account and rule[2] == role]

    def _plan_reports(self, snapshot: Snapshot, actor_map: EffectiveMap, leaver: str,
                      transfer_to: str, reports: Iterable[str]) -> list[tuple[str, str | None, str]]:
        """``(report, new superior, "repoint" | "keep")`` for the leaver's direct ``reports``:
        each is re-pointed to ``transfer_to`` (``transfer_to`` itself, if it reported to the
        leaver, to the leaver's own superior), where the actor manages the report and the new
        superior, the line does not loop, and the actor holds what the new line gives (rule 2);
        otherwise it keeps reporting to the (frozen) leaver, for an administrator who may."""
        decided: list[tuple[str, str | None, str]] = []
        current = snapshot
        for name in sorted(reports):
            superior = transfer_to if name != transfer_to else snapshot.account(leaver).reports_to
            info = current.account(name)
            after = _with_facts(current, {name: info._replace(reports_to=superior)})
            allowed = (superior != leaver and self._allowed_manage(current, actor_map, name, None)
                       and (superior is None or (
                           self._allowed_manage(current, actor_map, superior, None)
                           and name not in _superiors(current, superior)
                           and not _missing_gains(current, after, actor_map,
                                                  _superiors(after, superior), name))))
            if allowed:
                current = after
            decided.append((name, superior, "repoint" if allowed else "keep"))
        return decided


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
