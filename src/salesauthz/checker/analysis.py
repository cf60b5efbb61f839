"""Static analysis helpers shared by the checker commands (lint, diff, review, listings).

Everything here works on the engine's compiled snapshots and asks the engine's semantics
(:mod:`salesauthz._engine`) what an account holds; what is added here is only how two coverages
are *compared*. Comparisons of what two coverages reach are made over the *natural records* of a
domain: records owned by an account and kept in its department, and records of every department
with no particular owner. That is what a policy author means by "this grant reaches further": a
record owned by ``rep_e1a`` but filed under another department is an edge case the decision path
handles, not a lint.

Records reached only through shares (the ``shared`` scope: *guarded* terms of a coverage) have no
natural stand-in — a share may sit on any record — so they are compared as their own kind of
record: a guarded term is within another coverage when that coverage reaches its records
whatever their shares, or holds a guarded term whose guards it implies over at least its
records. They are never counted as every record, nor as none (:attr:`Excess.shared`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from salesauthz import _engine as engine
from salesauthz._engine import EffectiveMap, Holding, Key, Snapshot
from salesauthz._identity import IdentityCache
from salesauthz._wording import capped
from salesauthz.conditions import RequirementGuard
from salesauthz.scopes import Coverage, Guarded, Scope, ScopeKind, ShareGuard

__all__ = [
    "Excess",
    "excess",
    "exports_without_second_factor",
    "live_sources",
    "managed_by",
    "needs_second_factor",
    "permission_text",
    "requirements_met",
    "scope_label",
    "second_factor_matters",
    "static_ceiling",
    "widest_scopes",
]


def key_text(key: Key) -> str:
    return f"{key[0]}:{key[1]}"


def permission_text(key: Key, scope: str) -> str:
    """``customer:read@team``."""
    return f"{key[0]}:{key[1]}@{scope}"


def live_sources(snapshot: Snapshot, account: str, key: Key, now: float) -> list[Holding]:
    """The account's own unexpired holdings that give ``key``."""
    return [s.holding for s in engine.sources(snapshot, account, key, now) if not s.expired]


def needs_second_factor(scope: Scope) -> bool:
    """Whether a permission at ``scope`` allows only in a session with a second factor
    (``requires: {mfa: ...}``)."""
    condition = scope.condition
    return condition is not None and any(key == "mfa" for key, _ in condition.requires)


def second_factor_matters(snapshot: Snapshot) -> bool:
    """Whether the domain deals in second factors: it lists ``sensitive_actions`` or some
    permission of it requires ``mfa`` (the review flags exports without one only then: in a
    domain that never asks for one, every exporter would be flagged)."""
    if "sensitive_actions" in snapshot.settings:
        return True
    if not snapshot.conditioned:
        return False
    permissions = [p for ps in snapshot.role_permissions.values() for p in ps]
    permissions += [p for info in snapshot.accounts.values() for p in info.grants]
    return any(needs_second_factor(p.scope) for p in permissions)


def exports_without_second_factor(snapshot: Snapshot, account: str, now: float,
                                  keys: Iterable[Key]) -> list[Key]:
    """The ``*:export`` keys among ``keys`` the account holds through some unexpired
    permission that does not require a second factor."""
    return [key for key in sorted(keys) if key[1] == "export" and any(
        not needs_second_factor(held.permission.scope)
        for held in live_sources(snapshot, account, key, now))]


def requirements_met(coverage: Coverage) -> Coverage:
    """``coverage`` for a request that meets every requirement (``requires:``): terms guarded
    only by requirements become plain; conditions and shares stay."""
    if not coverage.guarded or not any(isinstance(g, RequirementGuard) for term in coverage.guarded
                                       for g in term.guards):
        return coverage
    found = Coverage(everything=coverage.everything, owners=coverage.owners,
                     departments=coverage.departments,
                     owner_departments=coverage.owner_departments)
    for term in coverage.guarded:
        rest = [g for g in term.guards if not isinstance(g, RequirementGuard)]
        found = found.union(Coverage.conditioned(term.base, rest) if rest else term.base)
    return found


def static_ceiling(snapshot: Snapshot, account: str, now: float) -> EffectiveMap | None:
    """The cap the parent chain puts on ``account`` with statuses ignored (a frozen parent is a
    separate finding), or ``None`` when it has no parent."""
    parent = snapshot.account(account).parent
    if parent is None:
        return None
    return engine.effective(snapshot, parent, now, statuses=False)[0]


@dataclass(frozen=True, slots=True)
class Excess:
    """The natural records one coverage reaches and another does not."""

    departments: frozenset[str] = frozenset()
    owners: frozenset[str] = frozenset()
    unfiled: bool = False  # records in no (known) department, which only ``all`` reaches
    everything: bool = False  # every record of the domain (``all`` against nothing at all)
    shared: tuple[str, ...] = ()  # records reached only through shares: ``shared read_write with rep_w1``

    def __bool__(self) -> bool:
        return bool(self.departments or self.owners or self.unfiled or self.shared)

    def describe(self, limit: int = 3) -> str:
        """``records in east-1, east-2, sales and 647 more departments; records in no
        department`` — at most ``limit`` names per list, so a line never grows with the
        organisation (``every record`` for all of them)."""
        if self.everything:
            return "every record"
        parts = []
        if self.departments:
            parts.append("records in " + capped(sorted(self.departments), limit, noun="department"))
        if self.owners:
            parts.append("records owned by " + capped(sorted(self.owners), limit, noun="account"))
        if self.unfiled:
            parts.append("records in no department")
        if self.shared:
            parts.append("records " + capped(list(self.shared), limit, noun="share"))
        return "; ".join(parts)


def excess(inner: Coverage, outer: Coverage | None, snapshot: Snapshot) -> Excess:
    """The natural records ``inner`` reaches that ``outer`` does not (``None``: nothing), and
    the shared records (guarded terms of ``inner``) that ``outer`` is not shown to reach."""
    if outer is None:
        outer = Coverage()
    if outer.everything or inner.is_empty:
        return Excess()
    found = _plain_excess(inner.plain, outer, snapshot)
    shared = tuple(sorted({shared_text(term, snapshot) for term in inner.guarded
                           if not _term_within(term, outer, snapshot)}))
    if shared:
        return Excess(found.departments, found.owners, found.unfiled, found.everything, shared)
    return found


def _implies(mine: object, theirs: object) -> bool:
    """Every record passing guard ``mine`` passes ``theirs`` (share guards: the levels, accounts
    and departments are contained; any other guard — a condition, a requirement — only implies
    an equal guard)."""
    if isinstance(mine, ShareGuard) and isinstance(theirs, ShareGuard):
        return (mine.levels <= theirs.levels and mine.accounts <= theirs.accounts
                and mine.departments <= theirs.departments)
    return bool(mine == theirs)


def _term_within(term: Guarded, outer: Coverage, snapshot: Snapshot) -> bool:
    """Whether ``outer`` reaches every (natural) record of ``term``'s base that carries shares
    matching its guards: it reaches those records whatever their shares, or one of its guarded
    terms reaches at least that base with guards the term's guards imply."""
    if not _plain_excess(term.base, outer.plain, snapshot):
        return True
    return any(all(any(_implies(mine, theirs) for mine in term.guards) for theirs in other.guards)
               and not _plain_excess(term.base, other.base, snapshot)
               for other in outer.guarded)


def shared_text(term: Guarded, snapshot: Snapshot) -> str:
    """``shared read_write with rep_w1`` (and ``, among records in east-1`` for a term capped by
    a plain coverage, e.g. a sub-account's ``shared`` under its parent's ``team``)."""
    shares = [guard for guard in term.guards if isinstance(guard, ShareGuard)]
    guards = " and ".join(sorted(
        f"{'/'.join(sorted(guard.levels))} with "
        + (", ".join(sorted(guard.accounts)) if guard.accounts else "its departments")
        for guard in shares))
    others = " and ".join(sorted(str(guard) for guard in term.guards if guard not in shares))
    among = "" if term.base.everything else \
        f", among {_plain_excess(term.base, Coverage(), snapshot).describe()}"
    if not shares:
        return f"records {others}{among}"
    return f"shared {guards}{among}" + (f", {others}" if others else "")


def _plain_excess(inner: Coverage, outer: Coverage, snapshot: Snapshot) -> Excess:
    """:func:`excess` of a coverage without guarded terms (``outer``'s are ignored)."""
    if outer.everything or inner.is_empty:
        return Excess()
    if inner.everything:
        departments = frozenset(snapshot.department_parent) - outer.departments
        # Accounts filed in a department are covered (or implied by `departments`): only the
        # ones with no known department can be outside on their own.
        outside = frozenset(name for name in _homeless(snapshot) if not outer.covers(name, None))
        return Excess(departments, outside, unfiled=True, everything=outer.is_empty)
    departments = inner.departments - outer.departments
    owners: set[str] = set()
    for owner in inner.owners:
        home = snapshot.department_of(owner)
        if home not in departments and not outer.covers(owner, home):
            owners.add(owner)
    for owner, depts in inner.owner_departments.items():
        home = snapshot.department_of(owner)
        if home in depts and home not in departments and not outer.covers(owner, home):
            owners.add(owner)
    return Excess(frozenset(departments), frozenset(owners))


_HOMELESS: IdentityCache[frozenset[str]] = IdentityCache(16)


def _homeless(snapshot: Snapshot) -> frozenset[str]:
    """Registered accounts with no known department (remembered per snapshot)."""
    found = _HOMELESS.get(snapshot)
    if found is None:
        found = _HOMELESS.put(frozenset(
            name for name, info in snapshot.accounts.items()
            if info.status is not None and info.department not in snapshot.department_parent),
            snapshot)
    return found


def widest_scopes(scopes: Iterable[Scope], snapshot: Snapshot | None = None) -> list[Scope]:
    """The scopes not reached by another one of the list, narrowest first."""
    unique = list(dict.fromkeys(scopes))
    kept = [s for s in unique
            if not any(o != s and engine.scope_within(s, o, snapshot) for o in unique)]
    return sorted(kept, key=lambda s: (engine.scope_width(s), str(s)))


def held_scopes(snapshot: Snapshot, account: str, key: Key, now: float) -> list[Scope]:
    """The widest scopes through which ``account`` holds ``key`` (custom ones as one)."""
    held = [h.permission.scope for h in live_sources(snapshot, account, key, now)]
    # Stored rules hold one department per custom scope: show them as one custom scope again.
    custom = frozenset(d for s in held if s.kind is ScopeKind.CUSTOM for d in s.departments)
    held = [s for s in held if s.kind is not ScopeKind.CUSTOM]
    if custom:
        held.append(Scope(ScopeKind.CUSTOM, custom))
    return list(widest_scopes(held, snapshot))


def scope_label(snapshot: Snapshot, account: str, key: Key, now: float) -> str:
    """The scope(s) through which ``account`` holds ``key``: ``team``, ``own+custom[west]``."""
    return "+".join(str(s) for s in held_scopes(snapshot, account, key, now)) or "nothing"


def managed_by(snapshot: Snapshot, effective: dict[str, EffectiveMap]) -> dict[str, list[str]]:
    """account -> the accounts whose effective ``account:manage`` reaches its own record (an
    account being a record owned by itself in its department). The same test as
    ``coverage.covers(account, None, snapshot.homes)``, inverted: from each manager's coverage to
    the accounts it reaches, rather than testing every pair."""
    by_department: dict[str | None, list[str]] = {}
    for name, info in snapshot.accounts.items():
        if info.status is not None:
            by_department.setdefault(snapshot.department_of(name), []).append(name)
    everyone = [name for names in by_department.values() for name in names]
    result: dict[str, set[str]] = {}
    for manager, held in effective.items():
        manage = held.get(("account", "manage"))
        if manage is None:
            continue
        manage = requirements_met(manage)  # a manager that needs a second factor still manages
        reached: set[str] = set()
        if manage.everything:
            reached.update(everyone)
        else:
            reached.update(o for o in manage.owners if o in snapshot.accounts)
            for department in manage.departments:
                reached.update(by_department.get(department, ()))
            for owner, depts in manage.owner_departments.items():
                if snapshot.department_of(owner) in depts:
                    reached.add(owner)
        for name in reached:
            result.setdefault(name, set()).add(manager)
    return {name: sorted(managers) for name, managers in result.items()}
