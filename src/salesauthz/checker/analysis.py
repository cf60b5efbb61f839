"""Static analysis helpers shared by the checker commands (lint, diff, review, listings).

Everything here works on compiled :class:`~salesauthz._index.DomainIndex` snapshots. Comparisons
of what two coverages reach are made over the *natural records* of a domain: records owned by an
account and kept in its department, and records of every department with no particular owner.
That is what a policy author means by "this grant reaches further": a record owned by ``rep_e1a``
but filed under another department is an edge case the decision path handles, not a lint.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from salesauthz import _rules as R
from salesauthz._index import DomainIndex, DomainState, EffectiveMap, Permission, intersect_maps
from salesauthz._rules import Rule
from salesauthz.scopes import Coverage, Scope, ScopeKind

__all__ = [
    "Excess",
    "build_indexes",
    "excess",
    "managed_by",
    "permission_text",
    "raw_map",
    "scope_label",
    "scope_within",
    "sources",
    "static_ceiling",
]

Key = tuple[str, str]  # (type, action)


def build_indexes(rules: Iterable[Rule]) -> dict[str, DomainIndex]:
    """One compiled snapshot per domain of ``rules``."""
    grouped: dict[str, list[Rule]] = {}
    for rule in rules:
        grouped.setdefault(R.domain_of(rule), []).append(rule)
    indexes: dict[str, DomainIndex] = {}
    for name, domain_rules in grouped.items():
        state = DomainState(name)
        state.apply(domain_rules, ())
        if state.index is not None:
            indexes[name] = state.index
    return indexes


def key_text(key: Key) -> str:
    return f"{key[0]}:{key[1]}"


def permission_text(key: Key, scope: str) -> str:
    """``customer:read@team``."""
    return f"{key[0]}:{key[1]}@{scope}"


def sources(index: DomainIndex, account: str, key: Key, now: float
            ) -> Iterator[tuple[str | None, Permission]]:
    """The unexpired permissions of ``account`` (role or ``None`` for a grant) reaching ``key``."""
    for role, permission in index.permissions_of(account):
        if permission.expires is not None and permission.expires <= now:
            continue
        if permission.type in (key[0], R.WILDCARD) and permission.action in (key[1], R.WILDCARD) \
                and key in set(index.expand(permission.type, permission.action)):
            yield role, permission


def raw_map(index: DomainIndex, account: str, now: float) -> EffectiveMap:
    """What the account's own roles and grants reach, ignoring its status and any parent ceiling."""
    result: EffectiveMap = {}
    for _role, permission in index.permissions_of(account):
        if permission.expires is not None and permission.expires <= now:
            continue
        coverage = index.scope_coverage(account, permission.scope)
        for key in index.expand(permission.type, permission.action):
            held = result.get(key)
            result[key] = coverage if held is None else held.union(coverage)
    return result


def static_ceiling(index: DomainIndex, account: str, now: float,
                   raw_of: Callable[[str], EffectiveMap] | None = None) -> EffectiveMap | None:
    """The cap the parent chain puts on ``account`` (statuses ignored: a frozen parent is a
    separate finding), or ``None`` when it has no parent. ``raw_of`` may supply cached
    :func:`raw_map` results."""
    parent = index.account(account).parent
    if parent is None:
        return None
    seen = {account}
    ceiling: EffectiveMap | None = None
    while parent is not None and parent not in seen:
        seen.add(parent)
        own = raw_of(parent) if raw_of is not None else raw_map(index, parent, now)
        ceiling = own if ceiling is None else intersect_maps(ceiling, own)
        parent = index.account(parent).parent
    return ceiling if ceiling is not None else {}


@dataclass(frozen=True, slots=True)
class Excess:
    """The natural records one coverage reaches and another does not."""

    departments: frozenset[str] = frozenset()
    owners: frozenset[str] = frozenset()
    unfiled: bool = False  # records in no (known) department, which only ``all`` reaches

    def __bool__(self) -> bool:
        return bool(self.departments or self.owners or self.unfiled)

    def describe(self) -> str:
        parts = []
        if self.departments:
            parts.append("records in " + ", ".join(sorted(self.departments)))
        if self.owners:
            parts.append("records owned by " + ", ".join(sorted(self.owners)))
        if self.unfiled:
            parts.append("records in no department")
        return "; ".join(parts)


def excess(inner: Coverage, outer: Coverage | None, index: DomainIndex) -> Excess:
    """The natural records ``inner`` reaches that ``outer`` does not (``None``: nothing)."""
    if outer is None:
        outer = Coverage()
    if outer.everything or inner.is_empty:
        return Excess()
    if inner.everything:
        departments = frozenset(index.department_parent) - outer.departments
        # Accounts filed in a department are covered (or implied by `departments`): only the
        # ones with no known department can be outside on their own.
        outside = frozenset(name for name in _homeless(index) if not outer.covers(name, None))
        return Excess(departments, outside, unfiled=True)
    departments = inner.departments - outer.departments
    owners: set[str] = set()
    for owner in inner.owners:
        home = index.department_of(owner)
        if home not in departments and not outer.covers(owner, home):
            owners.add(owner)
    for owner, depts in inner.owner_departments.items():
        home = index.department_of(owner)
        if home in depts and home not in departments and not outer.covers(owner, home):
            owners.add(owner)
    return Excess(frozenset(departments), frozenset(owners))


_HOMELESS: dict[int, tuple[DomainIndex, frozenset[str]]] = {}


def _homeless(index: DomainIndex) -> frozenset[str]:
    """Registered accounts of ``index`` with no known department (cached per snapshot)."""
    cached = _HOMELESS.get(id(index))
    if cached is not None and cached[0] is index:
        return cached[1]
    found = frozenset(name for name, info in index.accounts.items()
                      if info.status is not None and info.department not in index.department_parent)
    if len(_HOMELESS) > 16:
        _HOMELESS.clear()
    _HOMELESS[id(index)] = (index, found)
    return found


def scope_within(inner: Scope, outer: Scope, index: DomainIndex | None = None) -> bool:
    """Whether ``outer`` reaches everything ``inner`` does, for *any* account (a static order:
    own ⊆ team ⊆ department_tree ⊆ all; own ⊆ custom; custom(D) ⊆ custom(E) when every
    department of D is in a subtree of E)."""
    if inner == outer or outer.kind is ScopeKind.ALL or inner.kind is ScopeKind.OWN:
        return True
    if inner.kind is ScopeKind.TEAM and outer.kind is ScopeKind.DEPARTMENT_TREE:
        return True
    if inner.kind is ScopeKind.CUSTOM and outer.kind is ScopeKind.CUSTOM:
        reach: set[str] = set()
        for department in outer.departments:
            reach |= index.subtree.get(department, {department}) if index is not None else {department}
        return inner.departments <= reach
    return False


_WIDTH = {ScopeKind.OWN: 0, ScopeKind.TEAM: 1, ScopeKind.CUSTOM: 2, ScopeKind.DEPARTMENT_TREE: 3,
          ScopeKind.ALL: 4}


def widest_scopes(scopes: Iterable[Scope], index: DomainIndex | None = None) -> list[Scope]:
    """The scopes not reached by another one of the list, narrowest first."""
    unique = list(dict.fromkeys(scopes))
    kept = [s for s in unique
            if not any(o != s and scope_within(s, o, index) for o in unique)]
    return sorted(kept, key=lambda s: (_WIDTH[s.kind], str(s)))


def scope_label(index: DomainIndex, account: str, key: Key, now: float) -> str:
    """The scope(s) through which ``account`` holds ``key``: ``team``, ``own+custom[west]``."""
    held = [p.scope for _, p in sources(index, account, key, now)]
    # Stored rules hold one department per custom scope: show them as one custom scope again.
    custom = frozenset(d for s in held if s.kind is ScopeKind.CUSTOM for d in s.departments)
    held = [s for s in held if s.kind is not ScopeKind.CUSTOM]
    if custom:
        held.append(Scope(ScopeKind.CUSTOM, custom))
    scopes = widest_scopes(held, index)
    return "+".join(str(s) for s in scopes) or "nothing"


def managed_by(index: DomainIndex, effective: dict[str, EffectiveMap]) -> dict[str, list[str]]:
    """account -> the accounts whose effective ``account:manage`` reaches its own record
    (computed from each manager's coverage, not by testing every pair)."""
    by_department: dict[str | None, list[str]] = {}
    for name, info in index.accounts.items():
        if info.status is not None:
            home = info.department if info.department in index.department_parent else None
            by_department.setdefault(home, []).append(name)
    everyone = [name for names in by_department.values() for name in names]
    result: dict[str, set[str]] = {}
    for manager, eff in effective.items():
        manage = eff.get(("account", "manage"))
        if manage is None:
            continue
        reached: set[str] = set()
        if manage.everything:
            reached.update(everyone)
        else:
            reached.update(o for o in manage.owners if o in index.accounts)
            for department in manage.departments:
                reached.update(by_department.get(department, ()))
            for owner, depts in manage.owner_departments.items():
                if index.department_of(owner) in depts:
                    reached.add(owner)
        for name in reached:
            result.setdefault(name, set()).add(manager)
    return {name: sorted(managers) for name, managers in result.items()}
