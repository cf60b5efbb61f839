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

__all__ = ["field_mode", "field_modes"]

_RANK = {"visible": 0, "readonly": 1, "hidden": 2}  # lower is more permissive
_MODE = {rank: mode for mode, rank in _RANK.items()}


def field_modes(index: DomainIndex | None, account: str, type: str, owner: str | None,
                department: str | None, fields: Iterable[str]) -> dict[str, str]:
    """``field → mode`` for ``fields`` of a ``type`` record owned by ``owner`` in ``department``."""
    wanted = list(fields)
    if index is None:
        return dict.fromkeys(wanted, "hidden")
    return {f: _MODE[_rank(index, account, type, owner, department, f, 0)] for f in wanted}


def field_mode(index: DomainIndex | None, account: str, type: str, owner: str | None,
               department: str | None, field: str) -> str:
    """The mode of one field (see :func:`field_modes`)."""
    return field_modes(index, account, type, owner, department, [field])[field]


def ruled_fields(index: DomainIndex, type: str) -> set[str]:
    """Every field of ``type`` that some role has a rule for, plus the declared fields."""
    names = set(index.field_vocabulary.get(type, ()))
    for rules in index.role_fields.values():
        names.update(r.field for r in rules if r.type == type)
    return names


def _rank(index: DomainIndex, account: str, type: str, owner: str | None, department: str | None,
          field: str, depth: int) -> int:
    info = index.accounts.get(account)
    if info is None or info.status != "active" or depth > len(index.accounts):
        return _RANK["hidden"] if field in ruled_fields(index, type) else _RANK["visible"]
    record_department = department or index.department_of(owner)
    votes: list[int] = []
    for role in index.roles_of(account):
        applicable = [r for r in index.role_fields.get(role, ()) if r.type == type and r.field == field]
        if not applicable:
            continue
        best = _RANK["hidden"]
        for rule in applicable:
            if rule.scope is not None and not index.scope_coverage(account, rule.scope).covers(
                owner, record_department
            ):
                continue
            best = min(best, _RANK[rule.mode])
        votes.append(best)
    rank = min(votes) if votes else _RANK["visible"]
    if info.parent is not None:
        rank = max(rank, _rank(index, info.parent, type, owner, department, field, depth + 1))
    return rank

