"""What the current rules say: the read side of :class:`~salesauthz.Authorizer` beside
``check`` — explanations, list filters, effective permissions, accounts, departments, rules.

Every answer comes from the engine (the cached effective maps or the snapshot); none decides by
itself.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any

from . import _engine as engine
from ._rules import Rule
from .scopes import NOTHING, Coverage
from .values import AccountView, Decision, Record, ScopeFilter

__all__ = ["Queries"]

_NO_DEPARTMENTS: Mapping[str, str | None] = {}  # the department tree of an unknown domain
_NO_MEMBERS: Mapping[str, frozenset[str]] = {}  # the departments' members in an unknown domain


class Queries:
    """Read-only questions about the rules (a base of :class:`~salesauthz.Authorizer`, which
    sets every attribute below in its constructor)."""

    _clock: Callable[[], float]
    _write_lock: threading.RLock
    _cache: engine.EffectiveCache
    _states: dict[str, engine.DomainState]
    _snapshots: dict[str, engine.Snapshot]

    def _context(self, context: Mapping[str, Any] | None) -> Mapping[str, Any]:
        """The request context with ``now`` filled in from the clock when absent."""
        if context is None:
            return {"now": self._clock()}
        if "now" in context:
            return context
        return {**context, "now": self._clock()}

    def _effective(self, snapshot: engine.Snapshot, account: str) -> engine.EffectiveMap:
        return self._cache.absolute(self._cache.get(snapshot, account, self._clock()), account)

    def explain(self, account: str, action: str, record: Record, *, domain: str,
                context: Mapping[str, Any] | None = None) -> Decision:
        """The decision ``check`` makes (with the same ``context``), with the reason and the
        rules behind it."""
        return engine.explain(self._snapshots.get(domain), account, action, record, domain,
                              self._clock(), self._context(context))

    def scope_filter(self, account: str, action: str, type: str, *, domain: str,
                     context: Mapping[str, Any] | None = None) -> ScopeFilter:
        """Which records of ``type`` the account may ``action`` in a request with ``context``
        (requirements are settled here: the filter is about records only): see
        :class:`ScopeFilter`."""
        coverage = NOTHING  # shared, so renderers can cache the empty filter
        snapshot = self._snapshots.get(domain)
        if snapshot is not None:
            coverage = self._effective(snapshot, account).get((type, action), NOTHING)
            if coverage.guarded:
                coverage = coverage.given(self._context(context))
        return ScopeFilter(account, action, type, domain, coverage)

    def effective_permissions(self, account: str, *, domain: str) -> dict[tuple[str, str], Coverage]:
        """``(type, action) → Coverage`` for everything the account may do right now."""
        snapshot = self._snapshots.get(domain)
        return dict(self._effective(snapshot, account)) if snapshot is not None else {}

    def account(self, name: str, *, domain: str) -> AccountView | None:
        """What the current rules say about an account (``None``: the rules never name it)."""
        snapshot = self._snapshots.get(domain)
        info = snapshot.accounts.get(name) if snapshot is not None else None
        if info is None:
            return None
        return AccountView(name, domain, info.status, info.department, info.parent, info.roles,
                           info.also_in, info.reports_to, dict(info.timed_roles))

    def department_members(self, *, domain: str) -> Mapping[str, frozenset[str]]:
        """``department → accounts whose main department it is`` under the current rules (the
        same object until an account moves, so callers may cache by identity; read it, never
        change it)."""
        snapshot = self._snapshots.get(domain)
        return snapshot.members if snapshot is not None else _NO_MEMBERS

    def department_parents(self, *, domain: str) -> Mapping[str, str | None]:
        """``department → its parent department`` (``None`` at a root): the domain's department
        tree under the current rules. One object per version of the tree, so callers may cache
        by identity (as :mod:`salesauthz.filters.closure` does); read it, never change it."""
        snapshot = self._snapshots.get(domain)
        return snapshot.department_parent if snapshot is not None else _NO_DEPARTMENTS

    def domains(self) -> list[str]:
        return sorted(self._snapshots)

    def rules(self, domain: str | None = None) -> list[Rule]:
        """The current rules (of one domain, or all), sorted."""
        with self._write_lock:
            if domain is not None:
                state = self._states.get(domain)
                return sorted(state.rules) if state is not None else []
            return sorted(r for s in self._states.values() for r in s.rules)

    def now(self) -> float:
        """The authorizer's clock (seconds since the epoch)."""
        return self._clock()
