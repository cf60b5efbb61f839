"""Field-level access: which fields of a record an account may see and change.

Roles carry field rules per resource type: ``visible`` (read and write), ``readonly`` or
``hidden``, optionally *record-conditional* (one mode on records within a scope, another
elsewhere). Field rules refine what a record-level permission allows; they never replace it.
The walk up the parent chain, the role inheritance and the scopes are the decision semantics'
(:mod:`.semantics`); this module only says how field rules vote.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Final

from salesauthz import _rules as R
from salesauthz.scopes import Scope, ShareLike

from .semantics import ACTIVE, assigned_roles, chain, scope_coverage
from .snapshot import Snapshot

__all__ = ["field_modes", "ruled_fields"]

FIELD_RANK: Final = {mode: rank for rank, mode in enumerate(R.FIELD_MODES)}  # lower: more permissive
_VISIBLE: Final = FIELD_RANK["visible"]
_HIDDEN: Final = FIELD_RANK["hidden"]


def ruled_fields(snapshot: Snapshot, type: str) -> set[str]:
    """Every field of ``type`` that some role rules, plus the declared fields."""
    names = set(snapshot.field_vocabulary.get(type, ()))
    for rules in snapshot.role_fields.values():
        names.update(rule.field for rule in rules if rule.type == type)
    return names


def field_modes(snapshot: Snapshot, account: str, type: str, owner: str | None,
                department: str | None, fields: Iterable[str], *, now: float | None = None,
                shares: Iterable[ShareLike] = ()) -> dict[str, str]:
    """``field → visible | readonly | hidden`` on a ``type`` record of ``owner`` in ``department``
    carrying ``shares``, at ``now`` (default: the system clock; timed role assignments expire).

    Each of the account's roles (after inheritance) votes, per field, the most permissive of its
    rules that apply to the record; the most permissive vote wins; a field no role rules is
    visible. Every account of the parent chain must be active (else ruled fields are hidden), and
    a sub-account gets the strictest mode along its chain.
    """
    listed = list(fields)
    wanted = frozenset(listed)
    if not snapshot.role_fields:  # no field rule anywhere in the domain: nothing to refine
        return dict.fromkeys(listed, "visible")
    names = chain(snapshot, account)
    if names is None or any(snapshot.account(name).status != ACTIVE for name in names):
        ruled = ruled_fields(snapshot, type)
        return {f: "hidden" if f in ruled else "visible" for f in listed}
    ranks: dict[str, int] = {}
    moment = time.time() if now is None else now
    record = (owner, department, tuple(shares))
    for name in names:
        for field, vote in _votes(snapshot, name, type, record, wanted, moment).items():
            ranks[field] = max(ranks.get(field, _VISIBLE), vote)
    return {f: R.FIELD_MODES[ranks.get(f, _VISIBLE)] for f in listed}


def _votes(snapshot: Snapshot, account: str, type: str,
           record: tuple[str | None, str | None, tuple[ShareLike, ...]], wanted: frozenset[str],
           now: float) -> dict[str, int]:
    """The account's own votes (its live roles only): ``field → rank`` for the ruled wanted
    fields."""
    owner, department, shares = record
    result: dict[str, int] = {}
    inside: dict[Scope, bool] = {}  # scope -> covers this record, computed once per scope
    for role in assigned_roles(snapshot, account, now):
        best: dict[str, int] = {}
        for rule in snapshot.role_fields.get(role, ()):
            if rule.type != type or rule.field not in wanted:
                continue
            vote = best.setdefault(rule.field, _HIDDEN)
            if rule.scope is not None:
                covered = inside.get(rule.scope)
                if covered is None:
                    covered = inside[rule.scope] = scope_coverage(
                        snapshot, account, rule.scope, key=(type, None)).covers(
                        owner, department, snapshot.homes, shares)
                if not covered:
                    continue
            best[rule.field] = min(vote, FIELD_RANK[rule.mode])
        for field, vote in best.items():
            result[field] = min(result.get(field, _HIDDEN), vote)
    return result
