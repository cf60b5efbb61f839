"""Conditions on record attributes (``where:``) in list filters, as parameterised SQL over the
columns that hold the attributes.

A guarded term of a filter may carry a condition (``region in account.territories``, already
resolved for the asking account: ``region IN ('East', 'North')``). :func:`sql_where
<salesauthz.filters.sql.sql_where>` renders it when given ``attributes={"region":
"customer.region", ...}`` (attribute → column; ``owner`` is the owner column), exactly as
``check`` decides; :func:`scope_clause <salesauthz.filters.sqlalchemy.scope_clause>`
(``attributes={"region": Customer.region}``) and :func:`scope_q
<salesauthz.filters.django.scope_q>` (``attributes={"region": "region"}``) render it the same
way. All three read a condition through :func:`condition_tests` (the one semantics: which test,
which values, what is refused); each only writes the tests in its own terms:

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

from collections.abc import Callable, Container, Mapping
from dataclasses import dataclass
from typing import Any

from salesauthz.conditions import OWNER, value_kind
from salesauthz.errors import UsageError

from ._terms import ConditionTerms

__all__ = ["ConditionTerms", "Test", "condition_sql", "condition_tests"]

_SYMBOLS = {"eq": "=", "lt": "<", "le": "<=", "gt": ">", "ge": ">="}


@dataclass(frozen=True, slots=True)
class Test:
    """One test of a condition, in the form every renderer turns into a clause (the one
    semantics of conditions in filters; a renderer only chooses how each form is written):

    - ``never``: no row passes (an empty ``in``, or an owner test naming only ``''``);
    - ``is_null`` / ``not_null``: the column is NULL / is not (``owner``: NULL *or* ``''`` /
      neither, as ``check`` reads a record without an owner);
    - ``eq`` / ``in`` / ``lt`` / ``le`` / ``gt`` / ``ge`` against ``values`` (``in``: two or
      more; the others: one), all text or all numbers. A NULL column fails them (SQL's unknown),
      as a missing attribute fails in ``check``.
    """

    attribute: str
    op: str
    values: tuple[Any, ...] = ()

    @property
    def owner(self) -> bool:
        """Whether the test is on the record's owner (the owner column, not an attribute)."""
        return self.attribute == OWNER


def condition_tests(terms: ConditionTerms, attributes: Container[str],
                    how: str = "attributes={%r: '<its column>', ...}") -> tuple[Test, ...]:
    """The tests of one condition (ANDed), checked: every attribute is in ``attributes`` (else
    a :class:`UsageError` naming it, ``how`` telling what to pass, ``%r`` the attribute) and
    every operand a constant SQL states as ``check`` reads it (else a :class:`UsageError`)."""
    found: list[Test] = []
    for attribute, op, operand in terms.tests:
        if attribute != OWNER and attribute not in attributes:
            raise UsageError(
                f"the filter's condition `{terms.text}` tests the record attribute "
                f"{attribute!r}: pass {how % (attribute,)} to render conditions on record "
                "attributes as SQL")
        if op == "null":
            found.append(Test(attribute, "is_null" if operand else "not_null"))
            continue
        values = list(operand) if op == "in" and isinstance(operand, tuple) else [operand]
        if attribute == OWNER:  # check reads an empty owner as none: it equals nothing
            values = [v for v in values if v != ""]
            if not values:
                found.append(Test(attribute, "never"))
                continue
        kinds = {value_kind(v) for v in values}
        if not kinds <= {"text", "number"} or len(kinds) > 1 or (
                op == "in" and not isinstance(operand, tuple)):
            raise UsageError(
                f"the filter's condition `{terms.text}` cannot be rendered as SQL (a test on "
                f"{_shown(operand)}: list filters render tests on text and numbers only); filter "
                "those rows with Authorizer.check")
        if op == "in":
            if not values:
                found.append(Test(attribute, "never"))
            elif len(values) == 1:
                found.append(Test(attribute, "eq", (values[0],)))
            else:
                found.append(Test(attribute, "in", tuple(values)))
        else:
            found.append(Test(attribute, op, (operand,)))
    # The owner's "no owner" tests are two comparisons each (NULL or ''), the others one: they
    # go last, so that a row another test rules out costs the database one comparison (the
    # database keeps the written order of equally cheap tests; 0.91x against 1.06x the
    # hand-written SQL for the public pool's page in bench_condition_filters).
    found.sort(key=lambda test: test.owner and test.op in ("is_null", "not_null"))
    return tuple(found)


def condition_sql(terms: ConditionTerms, attributes: Mapping[str, str], owner_column: str,
                  bind: Callable[[Any], str], column: Callable[[str, str], str]) -> str:
    """The SQL of one condition: its tests ANDed. ``bind`` writes a placeholder for a value,
    ``column`` checks a column name (``(role, name) -> SQL``)."""
    parts: list[str] = []
    for test in condition_tests(terms, attributes):
        col = (owner_column if test.owner
               else column(f"attribute {test.attribute!r}", attributes[test.attribute]))
        if test.op == "never":
            parts.append("1 = 0")
        elif test.op == "is_null":
            parts.append(f"({col} IS NULL OR {col} = {bind('')})" if test.owner
                         else f"{col} IS NULL")
        elif test.op == "not_null":
            parts.append(f"({col} IS NOT NULL AND {col} <> {bind('')})" if test.owner
                         else f"{col} IS NOT NULL")
        elif test.op == "in":
            parts.append(f"{col} IN ({', '.join(bind(v) for v in test.values)})")
        else:
            parts.append(f"{col} {_SYMBOLS[test.op]} {bind(test.values[0])}")
    return "(" + " AND ".join(parts) + ")" if parts else "1 = 1"


def _shown(value: Any) -> str:
    if isinstance(value, tuple):
        return "[" + ", ".join(_shown(v) for v in value) + "]"
    return repr(value)
