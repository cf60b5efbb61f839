"""The decision semantics of salesauthz, written once (DESIGN.md, "Decision semantics").

Everything that decides asks these functions: ``check``'s cached maps, ``explain``, field modes,
list filters, the delegation rule and every checker command (who-can, what-can, lint, review,
diff, test). None of them re-implements scopes, expiry, wildcards, role inheritance or the parent
ceiling. The Casbin reference (:mod:`salesauthz.reference`) is the one independent
implementation, on purpose: the differential tests compare the two.

1. Default deny: an unknown domain, account, type or action holds nothing.
2. Only an ``active`` account is allowed anything (:func:`effective`).
3. A scope covers records relative to the account (:func:`scope_coverage`): ``team`` and
   ``department_tree`` from its main and auxiliary departments, ``subordinates`` and
   ``subordinate_tree`` from its reporting line, ``shared`` from the record's shares; a record
   with no department is in its owner's current main department (``Coverage.covers`` with the
   snapshot's ``homes``).
4. An account holds the unexpired permissions of its unexpired role assignments (closed over inheritance),
   its direct grants and those to its main and auxiliary departments or above, wildcards expanded
   (:func:`holdings`, :func:`own_map`); grants add up (union) and a sub-account is capped by what its
   parent holds (intersection, up the whole chain, evaluated at decision time: :func:`effective`).
5. Field modes refine a record a role may see (:func:`field_modes`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Final, NamedTuple

from salesauthz import _rules as R
from salesauthz.scopes import EVERYTHING, NOTHING, Coverage, Scope, ScopeKind, ShareGuard

from .snapshot import EffectiveMap, Key, Permission, Snapshot

ACTIVE: Final = "active"
Until = float | None
"""When a computed answer next changes by itself (an expiry), or ``None`` for never."""


def expired(expires: float | None, now: float) -> bool:
    """A grant stops allowing at the instant it expires."""
    return expires is not None and expires <= now


def earliest(first: Until, second: Until) -> Until:
    return second if first is None else first if second is None or first <= second else second


def expand(snapshot: Snapshot, type: str, action: str) -> Iterator[Key]:
    """The known ``(type, action)`` pairs a permission names (``*`` is every known one)."""
    vocabulary = snapshot.vocabulary
    for known_type in (vocabulary if type == R.WILDCARD else (type,)):
        actions = vocabulary.get(known_type)
        if actions is None:
            continue
        if action == R.WILDCARD:
            for known_action in actions:
                yield known_type, known_action
        elif action in actions:
            yield known_type, action


def scope_coverage(snapshot: Snapshot, account: str, scope: Scope, home: str | None = None, *,
                   moved: bool = False, key: tuple[str, str | None] | None = None) -> Coverage:
    """The records ``scope`` reaches for ``account`` (rule 3); with ``moved=True``, as if the
    account's main department were ``home`` (what a planned move would give it).

    ``key`` is the ``(type, action)`` the scope is used for: ``shared`` reaches records carrying a
    share at a level of ``type`` that includes ``action`` (any level when ``action`` is ``None``:
    field rules) naming the account, one of its departments or one above; without a key, nothing.
    A condition guards what the scope reaches: ``where:`` with ``account.<name>`` operands resolved
    (an attribute the account lacks: nothing), ``requires:`` on the request context."""
    condition = scope.condition
    if condition is None:
        return _bare_coverage(snapshot, account, scope, home, moved, key)
    resolved = condition.resolve(dict(snapshot.account(account).attributes), snapshot.time_zone)
    if resolved is None:
        return NOTHING
    base = _bare_coverage(snapshot, account, scope.bare, home, moved, key)
    return Coverage.conditioned(base, [guard for guard in resolved if guard is not None])


def _bare_coverage(snapshot: Snapshot, account: str, scope: Scope, home: str | None,
                   moved: bool, key: tuple[str, str | None] | None) -> Coverage:
    kind = scope.kind
    if kind is ScopeKind.ALL:
        return EVERYTHING
    own = frozenset((account,))
    if kind is ScopeKind.OWN:
        return Coverage(owners=own)
    if kind is ScopeKind.SHARED:
        if key is None:
            return NOTHING
        typ, action = key
        levels = (snapshot.levels_with(typ, action) if action is not None
                  else frozenset(snapshot.sharing.get(typ, {})))
        named = frozenset(above for department in snapshot.departments_of(account, home, moved=moved)
                          for above in snapshot.ancestry(department))
        return Coverage.shared(ShareGuard(levels, own, named))
    if kind in (ScopeKind.SUBORDINATES, ScopeKind.SUBORDINATE_TREE):
        below = snapshot.reports_below(account, transitive=kind is ScopeKind.SUBORDINATE_TREE)
        return Coverage(owners=own | below)
    if kind is ScopeKind.CUSTOM:
        reached: set[str] = set()
        for top in scope.departments:
            reached |= snapshot.subtree.get(top, frozenset())
        return Coverage(owners=own, departments=frozenset(reached))
    departments = snapshot.departments_of(account, home, moved=moved)
    if not departments:
        return Coverage(owners=own)  # no (known) department: team and tree reach its own records
    if kind is ScopeKind.TEAM:
        return Coverage(owners=own, departments=frozenset(departments))
    if len(departments) == 1:
        return Coverage(owners=own, departments=snapshot.subtree[departments[0]])
    return Coverage(owners=own, departments=frozenset().union(
        *(snapshot.subtree[d] for d in departments)))


def keyed_coverage(snapshot: Snapshot, account: str, scope: Scope, key: Key,
                   memo: dict[tuple[Scope, Key | None], Coverage]) -> Coverage:
    """``scope_coverage`` for ``key``, memoised in ``memo`` (only ``shared`` depends on it)."""
    memo_key = (scope, key if scope.kind is ScopeKind.SHARED else None)
    coverage = memo.get(memo_key)
    if coverage is None:
        coverage = memo[memo_key] = scope_coverage(snapshot, account, scope, key=key)
    return coverage


def chain(snapshot: Snapshot, account: str) -> tuple[str, ...] | None:
    """The account, its parent, its parent's parent …; ``None`` if the chain loops (only bad
    stored data can make it loop: the account is then denied everything)."""
    names = [account]
    parent = snapshot.account(account).parent
    while parent is not None:
        if parent in names:  # chains are short: a list is the cheapest set
            return None
        names.append(parent)
        parent = snapshot.account(parent).parent
    return tuple(names)


class Holding(NamedTuple):
    """A permission an account holds, and how: ``via`` is the path assigned role → … → the role that
    lists it (``()`` for a grant; ``department`` names the department a grant was given to, if any);
    ``until`` is when the role assignment it comes through expires (``None``: permanent, or a grant),
    and the permission then carries the earlier of its own expiry and the assignment's."""

    permission: Permission
    via: tuple[str, ...]
    until: float | None = None
    department: str | None = None

    @property
    def role(self) -> str | None:
        return self.via[-1] if self.via else None


def role_holdings(snapshot: Snapshot, role: str) -> Iterator[Holding]:
    """Everything a role gives, through inheritance (each inherited role once, shortest path)."""
    for inherited, path in snapshot.role_paths.get(role, ()):
        for permission in snapshot.role_permissions.get(inherited, ()):
            yield Holding(permission, path)


def holdings(snapshot: Snapshot, account: str) -> Iterator[Holding]:
    """Every permission the account itself holds (expired ones included): its grants (``grants_of``),
    then its roles' (after inheritance, by role name). Each reached role counts once, through its
    best assignment — a permanent one, else the one expiring last — by its shortest path."""
    info = snapshot.account(account)
    for department, grant in snapshot.grants_of(account):
        yield Holding(grant, (), department=department)
    best: dict[str, tuple[tuple[object, ...], tuple[str, ...], float | None]] = {}
    assigned: list[tuple[str, float | None]] = [(role, None) for role in sorted(info.roles)]
    assigned.extend(info.timed_roles)
    for role, until in assigned:
        for inherited, path in snapshot.role_paths.get(role, ()):
            rank = (until is not None, -(until or 0.0), len(path))
            known = best.get(inherited)
            if known is None or rank < known[0]:
                best[inherited] = (rank, path, until)
    for role in sorted(best):
        _, path, until = best[role]
        for permission in snapshot.role_permissions.get(role, ()):
            if until is not None:
                permission = permission._replace(expires=earliest(permission.expires, until))
            yield Holding(permission, path, until)


def assigned_roles(snapshot: Snapshot, account: str, now: float) -> set[str]:
    """Every role the account holds at ``now``, through inheritance (timed assignments that have
    expired left out)."""
    info = snapshot.account(account)
    live = [*info.roles, *(role for role, until in info.timed_roles if not expired(until, now))]
    return {inherited for role in live for inherited, _ in snapshot.role_paths.get(role, ())}


def own_map(snapshot: Snapshot, account: str, now: float) -> tuple[EffectiveMap, Until]:
    """What the account's own roles and grants reach at ``now`` (its status and its parent
    ignored), and when that next changes by itself (its earliest live expiry)."""
    result: EffectiveMap = {}
    until: Until = None
    memo: dict[tuple[Scope, Key | None], Coverage] = {}
    for held in holdings(snapshot, account):
        permission = held.permission
        if permission.expires is not None:
            if expired(permission.expires, now):
                continue
            until = earliest(until, permission.expires)
        for key in expand(snapshot, permission.type, permission.action):
            coverage = keyed_coverage(snapshot, account, permission.scope, key, memo)
            if coverage.is_empty:
                continue
            before = result.get(key)
            result[key] = coverage if before is None else before.union(coverage)
    return result, until


def intersect_maps(held: EffectiveMap, ceiling: EffectiveMap) -> EffectiveMap:
    """What ``held`` allows within ``ceiling``, key by key."""
    capped: EffectiveMap = {}
    for key, coverage in held.items():
        limit = ceiling.get(key)
        if limit is not None:
            both = coverage.intersect(limit)
            if not both.is_empty:
                capped[key] = both
    return capped


Ceiling = Callable[[str], tuple[EffectiveMap, Until]]
"""The effective map of a parent (a cache may serve it)."""


def effective(snapshot: Snapshot, account: str, now: float, *, ceiling: Ceiling | None = None,
              statuses: bool = True) -> tuple[EffectiveMap, Until]:
    """What ``account`` may do at ``now`` (rules 1, 2 and 4), and until when that holds.

    ``ceiling(parent)`` serves the parent's effective map (default: computed here). With
    ``statuses=False`` account statuses are ignored (what it would hold were it active; the
    checker's analyses). A parent chain that loops denies everything.
    """
    info = snapshot.accounts.get(account)
    if info is None or (statuses and info.status != ACTIVE) or chain(snapshot, account) is None:
        return {}, None
    result, until = own_map(snapshot, account, now)
    if info.parent is None:
        return result, until
    if ceiling is None:
        above, above_until = effective(snapshot, info.parent, now, statuses=statuses)
    else:
        above, above_until = ceiling(info.parent)
    return intersect_maps(result, above), earliest(until, above_until)
