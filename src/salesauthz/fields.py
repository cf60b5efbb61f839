"""Field-level access: which fields of a record an account may see and change.

Roles carry field rules per resource type: ``visible`` (read and write), ``readonly`` or ``hidden``,
optionally *record-conditional* (one mode on records within a scope, another elsewhere — e.g. a
customer's phone visible only on one's own customers). For one account and one record:

- each of the account's roles (after inheritance) that has rules for the field votes the most
  permissive of its rules that apply to the record; the most permissive vote wins (grants add up);
- a field no role mentions is ``visible``;
- a sub-account's mode is capped by its parent's (the stricter of the two), like every other right;
- an account that is not active sees every ruled field as ``hidden``.

Field rules refine what a record-level permission allows; they never replace it: check ``read`` /
``update`` on the record first (``check_write`` does both).
"""

from __future__ import annotations

from collections.abc import Iterable

from ._index import DomainIndex

__all__ = ["field_modes", "ruled_fields"]

_RANK = {"visible": 0, "readonly": 1, "hidden": 2}  # lower is more permissive
_MODE = {rank: mode for mode, rank in _RANK.items()}


def field_modes(index: DomainIndex | None, account: str, type: str, owner: str | None,
                department: str | None, fields: Iterable[str]) -> dict[str, str]:
    """``field → mode`` for ``fields`` of a ``type`` record owned by ``owner`` in ``department``."""
    wanted = list(fields)
    if index is None:
        return dict.fromkeys(wanted, "hidden")
    if not index.role_fields:  # no field rule anywhere in the domain: nothing to refine
        return dict.fromkeys(wanted, "visible")
    ranks = _ranks(index, account, type, owner, department, frozenset(wanted), 0)
    return {f: _MODE[ranks.get(f, _VISIBLE)] for f in wanted}


def ruled_fields(index: DomainIndex, type: str) -> set[str]:
    """Every field of ``type`` that some role has a rule for, plus the declared fields."""
    names = set(index.field_vocabulary.get(type, ()))
    for rules in index.role_fields.values():
        names.update(r.field for r in rules if r.type == type)
    return names


_VISIBLE = _RANK["visible"]
_HIDDEN = _RANK["hidden"]


def _ranks(index: DomainIndex, account: str, type: str, owner: str | None, department: str | None,
           wanted: frozenset[str], depth: int) -> dict[str, int]:
    """``field → rank`` for the wanted fields that any rule touches (absent: visible)."""
    info = index.accounts.get(account)
    if info is None or info.status != "active" or depth > len(index.accounts):
        return dict.fromkeys(ruled_fields(index, type) & wanted, _HIDDEN)
    record_department = department or index.department_of(owner)
    ranks: dict[str, int] = {}
    covered: dict[object, bool] = {}  # scope -> covers this record, computed once per scope
    for role in index.roles_of(account):
        best: dict[str, int] = {}  # this role's vote per field: its most permissive applicable rule
        for rule in index.role_fields.get(role, ()):
            if rule.type != type or rule.field not in wanted:
                continue
            vote = best.setdefault(rule.field, _HIDDEN)
            if rule.scope is not None:
                inside = covered.get(rule.scope)
                if inside is None:
                    inside = covered[rule.scope] = index.scope_coverage(account, rule.scope).covers(
                        owner, record_department)
                if not inside:
                    continue
            best[rule.field] = min(vote, _RANK[rule.mode])
        for name, vote in best.items():  # the most permissive vote of all roles wins
            ranks[name] = min(ranks.get(name, _HIDDEN), vote)
    if info.parent is not None:  # a sub-account gets the stricter of its own and its parent's
        above = _ranks(index, info.parent, type, owner, department, wanted, depth + 1)
        for name in set(ranks) | set(above):
            ranks[name] = max(ranks.get(name, _VISIBLE), above.get(name, _VISIBLE))
    return ranks
