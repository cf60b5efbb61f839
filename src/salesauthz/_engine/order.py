"""The order of scopes: which scope reaches at least what another does, for any account.

Administration (you cannot grant what you do not hold) and the checker's listings compare scopes
with it; decisions never do (they ask :mod:`.semantics` what a scope reaches for one account).
"""

from __future__ import annotations

from typing import Final

from salesauthz.scopes import Scope, ScopeKind

from .snapshot import Snapshot

__all__ = ["scope_width", "scope_within"]

_WIDTH: Final = {ScopeKind.OWN: 0, ScopeKind.SHARED: 1, ScopeKind.SUBORDINATES: 1,
                 ScopeKind.TEAM: 1, ScopeKind.SUBORDINATE_TREE: 2, ScopeKind.CUSTOM: 2,
                 ScopeKind.DEPARTMENT_TREE: 3, ScopeKind.ALL: 4}


def scope_within(inner: Scope, outer: Scope, snapshot: Snapshot | None = None) -> bool:
    """Whether ``outer`` reaches everything ``inner`` does for *any* account (the static order
    own ⊆ team ⊆ department_tree ⊆ all; own ⊆ subordinates ⊆ subordinate_tree; own ⊆ custom(D)
    ⊆ custom(E) when E's subtrees hold D; shared — which reaches only records shared with the
    account, not its own — only within shared and all). A conditioned ``outer`` holds only an
    ``inner`` with the very same condition (conditions are not compared otherwise: refuse
    rather than guess); a conditioned ``inner`` is narrower than its bare scope."""
    if inner == outer:
        return True
    if outer.condition is not None:
        if inner.condition != outer.condition:
            return False
        outer = outer.bare
    inner = inner.bare
    if inner == outer or outer.kind is ScopeKind.ALL:
        return True
    if inner.kind is ScopeKind.OWN:
        return outer.kind is not ScopeKind.SHARED
    if inner.kind is ScopeKind.TEAM and outer.kind is ScopeKind.DEPARTMENT_TREE:
        return True
    if inner.kind is ScopeKind.SUBORDINATES and outer.kind is ScopeKind.SUBORDINATE_TREE:
        return True
    if inner.kind is ScopeKind.CUSTOM and outer.kind is ScopeKind.CUSTOM:
        reach: set[str] = set()
        for department in outer.departments:
            reach |= snapshot.subtree.get(department, {department}) if snapshot else {department}
        return inner.departments <= reach
    return False


def scope_width(scope: Scope) -> int:
    """A sort key, narrowest scope kind first."""
    return _WIDTH[scope.kind]
