"""Permissions in plain words, for the people who review access: one wording serving both the
report (``salesauthz review --format html``) and the campaign pages (``review start``)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from salesauthz import _engine as engine
from salesauthz import _rules as R
from salesauthz._engine import Snapshot
from salesauthz.scopes import Scope, ScopeKind

__all__ = ["permission_words", "scope_words", "verb_words"]


def scope_words(snapshot: Snapshot, account: str, scope: Scope) -> str:
    """Which records ``scope`` reaches for ``account``: ``its own records and records in east-1``."""
    departments = snapshot.departments_of(account)
    where = " or ".join(departments)
    kind = scope.kind
    if kind is ScopeKind.ALL:
        return "every record of the domain"
    if kind is ScopeKind.OWN:
        return "its own records"
    if kind is ScopeKind.SHARED:
        return "records shared with it"
    if kind is ScopeKind.SUBORDINATES:
        return "its own records and its direct reports'"
    if kind is ScopeKind.SUBORDINATE_TREE:
        return "its own records and those of everyone below it in the reporting line"
    if kind is ScopeKind.CUSTOM:
        return f"its own records and records in {', '.join(sorted(scope.departments))} and below"
    if not departments:
        return "its own records (it has no department)"
    if kind is ScopeKind.TEAM:
        return f"its own records and records in {where}"
    return f"its own records and records in {where} and below"


def verb_words(type: str, actions: Sequence[str]) -> str:
    """``read, update customer records``; ``do anything to records of every type``."""
    what = "records of every type" if type == R.WILDCARD else f"{type} records"
    if R.WILDCARD in actions:
        return f"do anything to {what}"
    return f"{', '.join(actions)} {what}"


def permission_words(snapshot: Snapshot, account: str, held: Iterable[tuple[str, str, Scope]]) -> str:
    """``(type, action, scope)`` triples the account holds, in plain words, grouped by scope
    (narrowest first): ``may read, update customer records — on its own records; and export
    customer records — on every record of the domain``. ``""`` when nothing is held."""
    by_scope: dict[str, dict[str, list[str]]] = {}
    order: dict[str, Scope] = {}
    for type, action, scope in held:
        label = str(scope)
        order.setdefault(label, scope)
        actions = by_scope.setdefault(label, {}).setdefault(type, [])
        if action not in actions:
            actions.append(action)
    parts = []
    for label, types in sorted(by_scope.items(), key=lambda kv: engine.scope_width(order[kv[0]])):
        verbs = "; ".join(verb_words(t, sorted(a)) for t, a in sorted(types.items()))
        parts.append(f"{verbs} — on {scope_words(snapshot, account, order[label])}")
    return "may " + "; and ".join(parts) if parts else ""
