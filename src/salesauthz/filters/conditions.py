"""Conditions on record attributes (``where:``) in list filters, as parameterised SQL over the
columns that hold the attributes.

A guarded term of a filter may carry a condition (``region in account.territories``, already
resolved for the asking account: ``region IN ('East', 'North')``). :func:`sql_where
<salesauthz.filters.sql.sql_where>` renders it when given ``attributes={"region":
"customer.region", ...}`` (attribute → column; ``owner`` is the owner column), exactly as
``check`` decides:

- ``eq`` → ``col = ?``; ``in`` → ``col IN (?, ...)`` (an empty list: ``1 = 0``); ``lt``/``le``/
  ``gt``/``ge`` → ``col < ?`` …; ``null: true`` → ``col IS NULL`` (for ``owner``: NULL or
  ``''``, as ``check`` reads a record without an owner), ``null: false`` → ``col IS NOT NULL``.
- A NULL column makes every other test unknown in SQL, so the row is left out: a missing
  attribute is a deny, as in ``check``.
- Conditions on booleans are not rendered (SQLite has no boolean type: ``1`` would pass for
  ``true`` where ``check`` compares kinds), nor tests no SQL can state (an operand that is not a
  constant of the compared kind): the renderer refuses them with a :class:`~salesauthz.errors.
  UsageError` rather than show rows ``check`` denies.

Columns must hold values of the attribute's declared kind (``int`` attributes in numeric
columns, ``str`` in text columns): SQL compares what the column holds.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from salesauthz.conditions import OWNER
from salesauthz.errors import UsageError

from ._terms import ConditionTerms

__all__ = ["ConditionTerms", "condition_sql"]

_SYMBOLS = {"eq": "=", "lt": "<", "le": "<=", "gt": ">", "ge": ">="}


def _kind(value: Any) -> str | None:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "text"
    return None


def condition_sql(terms: ConditionTerms, attributes: Mapping[str, str], owner_column: str,
                  bind: Callable[[Any], str], column: Callable[[str, str], str]) -> str:
    """The SQL of one condition: its tests ANDed. ``bind`` writes a placeholder for a value,
    ``column`` checks a column name (``(role, name) -> SQL``)."""
    parts: list[str] = []
    for attribute, op, operand in terms.tests:
        if attribute == OWNER:
            col = owner_column
        else:
            name = attributes.get(attribute)
            if name is None:
                raise UsageError(
                    f"the filter's condition `{terms.text}` tests the record attribute "
                    f"{attribute!r}: pass attributes={{{attribute!r}: '<its column>', ...}} to "
                    "render conditions on record attributes as SQL")
            col = column(f"attribute {attribute!r}", name)
        if op == "null":
            if attribute == OWNER:
                parts.append(f"({col} IS NULL OR {col} = {bind('')})" if operand
                             else f"({col} IS NOT NULL AND {col} <> {bind('')})")
            else:
                parts.append(f"{col} IS NULL" if operand else f"{col} IS NOT NULL")
            continue
        values = list(operand) if op == "in" and isinstance(operand, tuple) else [operand]
        if attribute == OWNER:  # check reads an empty owner as none: it equals nothing
            values = [v for v in values if v != ""]
            if not values:
                parts.append("1 = 0")
                continue
        kinds = {_kind(v) for v in values}
        if not kinds <= {"text", "number"} or len(kinds) > 1 or (
                op == "in" and not isinstance(operand, tuple)):
            raise UsageError(
                f"the filter's condition `{terms.text}` cannot be rendered as SQL (a test on "
                f"{_shown(operand)}: list filters render tests on text and numbers only); filter "
                "those rows with Authorizer.check")
        if op == "in":
            if not values:
                parts.append("1 = 0")
            elif len(values) == 1:
                parts.append(f"{col} = {bind(values[0])}")
            else:
                parts.append(f"{col} IN ({', '.join(bind(v) for v in values)})")
        else:
            parts.append(f"{col} {_SYMBOLS[op]} {bind(operand)}")
    return "(" + " AND ".join(parts) + ")" if parts else "1 = 1"


def _shown(value: Any) -> str:
    if isinstance(value, tuple):
        return "[" + ", ".join(_shown(v) for v in value) + "]"
    return repr(value)
