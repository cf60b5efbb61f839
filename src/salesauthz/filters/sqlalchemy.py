"""A scope filter as a SQLAlchemy 2.x boolean expression, for Core and ORM ``.where(...)``.

    >>> stmt = select(Customer).where(scope_clause(flt, owner=Customer.owner,
    ...                                            department=Customer.department))

Sets become ``IN`` with SQLAlchemy's expanding bound parameters: every value is bound, the
statement text (and its cache key) does not depend on how many values there are, and an index
on the column serves the lookup. On PostgreSQL pass ``arrays=True``: a set of more than 10
values is then one array parameter (``= ANY(%(p)s)``) instead of one parameter per value, as in
:func:`~salesauthz.filters.sql.sql_where`; and ``closure=`` renders large department subtrees
by their tops through a closure table (:mod:`salesauthz.filters.closure`).

A filter with the ``shared`` scope also needs the share table's columns (:class:`ShareColumns`)
and the records' id column; each share condition becomes a correlated ``EXISTS``:

    >>> scope_clause(flt, owner=Customer.owner, department=Customer.department,
    ...              shares=ShareColumns.of(CustomerShare, record_id="customer_id"),
    ...              record_id=Customer.id)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeAlias

from sqlalchemy import ARRAY, String, and_, any_, bindparam, column, exists, false, func, or_, true
from sqlalchemy import select as select_
from sqlalchemy import table as table_
from sqlalchemy.orm import QueryableAttribute
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.expression import FromClause

from salesauthz.errors import UsageError

from . import sql as _sql
from ._terms import GuardTerms, Terms, shares_required, terms_of
from .closure import CLOSURE_ALIAS, Closure, ClosureTable, unquoted_parts
from .conditions import ConditionTerms, condition_tests

if TYPE_CHECKING:
    from salesauthz.authorizer import Authorizer
    from salesauthz.values import ScopeFilter

__all__ = ["Column", "ShareColumns", "scope_clause"]

#: A Core column (``table.c.owner``) or an ORM attribute (``Customer.owner``).
Column: TypeAlias = ColumnElement[Any] | QueryableAttribute[Any]


@dataclass(frozen=True, slots=True)
class ShareColumns:
    """The columns of the CRM's share table (one row per share): the shared record's id, the
    account or the department it is shared with (the other one NULL), and the share level.
    All four belong to one table (a Core ``Table``, an ORM model, or an alias of either)."""

    record_id: Column
    account: Column
    department: Column
    level: Column

    @classmethod
    def of(cls, table: Any, *, record_id: str = "record_id", account: str = "account",
           department: str = "department", level: str = "level") -> ShareColumns:
        """The named columns of a Core ``Table`` (``table.c.<name>``) or the attributes of an
        ORM model (``Model.<name>``)."""
        columns = getattr(table, "c", None)
        if columns is not None:
            return cls(columns[record_id], columns[account], columns[department], columns[level])
        return cls(getattr(table, record_id), getattr(table, account), getattr(table, department),
                   getattr(table, level))

    def table(self) -> FromClause:
        """The table (or alias) the columns belong to."""
        tables = {_table_of(column) for column in (self.record_id, self.account, self.department,
                                                    self.level)}
        if len(tables) != 1 or None in tables:
            raise ValueError("the share columns must be four columns of one table, got "
                             f"{self.record_id!r}, {self.account!r}, {self.department!r}, "
                             f"{self.level!r}")
        found = tables.pop()
        assert found is not None
        return found


def _table_of(column: Column) -> FromClause | None:
    element = column.__clause_element__() if isinstance(column, QueryableAttribute) else column
    table = getattr(element, "table", None)
    return table if isinstance(table, FromClause) else None


def _in(column: Column, values: tuple[str, ...]) -> ColumnElement[bool]:
    return column == values[0] if len(values) == 1 else column.in_(values)


class _Sets:
    """How sets of names are rendered: ``IN`` (expanding), arrays, a closure table."""

    def __init__(self, arrays: bool, closure: Closure | None, domain: str) -> None:
        self.arrays = arrays
        self.domain = domain
        self.closure = closure

    def values(self, column: Column, values: tuple[str, ...]) -> ColumnElement[bool]:
        if self.arrays and len(values) >= _sql.ARRAY_MIN_VALUES:
            # one array parameter, like sql_where(arrays=True); see ARRAY_MIN_VALUES there
            return column == any_(bindparam(None, list(values), type_=ARRAY(String())))
        return _in(column, values)

    def departments(self, column: Column, values: tuple[str, ...]) -> ColumnElement[bool]:
        if self.closure is None:
            return self.values(column, values)
        tree = self.closure.tree(self.domain)
        tops, rest = tree.split(values, self.closure.table.min_subtree)
        if not tops:
            return self.values(column, values)
        closure = _closure_table(self.closure.table)
        lookup = select_(closure.c.descendant).where(
            closure.c.tenant == self.domain, closure.c.version == tree.version,
            self.values(closure.c.ancestor, tops))
        found = (column == any_(func.array(lookup.scalar_subquery())) if self.arrays
                 else column.in_(lookup))
        return or_(found, self.values(column, rest)) if rest else found


def _closure_table(spec: ClosureTable) -> FromClause:
    """The closure table as a lightweight Core table, aliased ``salesauthz_closure``; its
    columns keyed ``tenant``, ``version``, ``ancestor``, ``descendant``."""
    parts = unquoted_parts(spec.name)
    columns = [column(unquoted_parts(getattr(spec, role))[0], String()) for role in
               ("tenant", "version", "ancestor", "descendant")]
    for key, col in zip(("tenant", "version", "ancestor", "descendant"), columns, strict=True):
        col.key = key
    found = table_(parts[-1], *columns, schema=".".join(parts[:-1]) or None)
    return found.alias(CLOSURE_ALIAS)


def scope_clause(
    flt: ScopeFilter,
    *,
    owner: Column,
    department: Column,
    domain: Column | None = None,
    authz: Authorizer | None = None,
    shares: ShareColumns | None = None,
    record_id: Column | None = None,
    attributes: Mapping[str, Column] | None = None,
    arrays: bool = False,
    closure: Closure | None = None,
) -> ColumnElement[bool]:
    """A ``ColumnElement[bool]`` true exactly for the rows ``flt`` lets through.

    Args:
        flt: from :meth:`Authorizer.scope_filter <salesauthz.Authorizer.scope_filter>`.
        owner, department: the columns (or ORM attributes) holding owner and department names.
        domain: the tenant column; adds ``domain == flt.domain``.
        authz: the authorizer that made ``flt``, when the department column may be NULL or
            empty (see :func:`salesauthz.filters.sql.sql_where`).
        shares: the share table's columns, needed when the filter lets records through by their
            shares (``flt.needs_shares``: the ``shared`` scope); each share condition becomes
            ``EXISTS (SELECT * FROM <shares> WHERE <shares>.record_id = <record_id> AND
            level IN (...) AND (account IN (...) OR department IN (...)))``, never correlated
            to the share table of an enclosing query. Ignored by filters that do not need it.
        record_id: with ``shares``: the records' id column (``Customer.id``).
        attributes: record attribute → the column holding it (``{"region": Customer.region}``),
            to render the filter's conditions on record attributes (``where:``) as bound
            comparisons, exactly as :func:`~salesauthz.filters.sql.sql_where` does (see
            :mod:`salesauthz.filters.conditions`). Without it a filter with such a condition is
            refused.
        arrays: PostgreSQL only (recommended there): bind each set of more than 10 values as
            one array parameter (``column = ANY(%(p)s)``) instead of an expanding ``IN`` of one
            parameter per value (see :func:`~salesauthz.filters.sql.sql_where`).
        closure: ``ClosureTable(...).using(authz)``: department sets holding whole subtrees of
            at least ``min_subtree`` departments are rendered by their tops through the closure
            table (``= ANY(array((SELECT descendant ...)))`` with ``arrays``, ``IN (SELECT
            ...)`` without); see :mod:`salesauthz.filters.closure` (sync it after department
            changes: until then those subtrees show nothing).

    Raises:
        UsageError: the filter needs the share table and ``shares`` or ``record_id`` was not
            given; or it has a condition on a record attribute ``attributes`` does not map (or
            one SQL cannot state as ``check`` decides).
    """
    terms = terms_of(flt, authz, conditions=attributes is not None)
    condition: ColumnElement[bool]
    if terms.everything:
        return true() if domain is None else domain == flt.domain
    if terms.nothing:
        condition = false()
    else:
        table: FromClause | None = None
        if terms.shared:
            if shares is None or record_id is None:
                raise UsageError(shares_required(
                    flt, "shares=ShareColumns(...) and record_id= (the records' id column, e.g. "
                    "Customer.id)"))
            table = shares.table()
        condition = _condition(terms, owner, department, shares, table, record_id,
                               attributes or {}, _Sets(arrays, closure, flt.domain))
    if domain is not None:
        return and_(domain == flt.domain, condition)
    return condition


def _condition(terms: Terms, owner: Column, department: Column, shares: ShareColumns | None,
               table: FromClause | None, record_id: Column | None,
               attributes: Mapping[str, Column], sets: _Sets) -> ColumnElement[bool]:
    """``terms`` (neither nothing nor everything) as one boolean expression."""
    if terms.factors:
        return and_(*(_condition(factor, owner, department, shares, table, record_id, attributes,
                                 sets)
                      for factor in terms.factors))
    alternatives = _alternatives(terms, owner, department, sets)
    for term in terms.guarded:
        parts: list[ColumnElement[bool]] = []
        if not term.base.everything:
            base = _alternatives(term.base, owner, department, sets)
            parts.append(or_(*base) if base else false())
        for guard in term.guards:
            if isinstance(guard, ConditionTerms):
                parts.append(_condition_clause(guard, owner, attributes))
                continue
            assert shares is not None  # terms.shared
            assert table is not None
            assert record_id is not None
            parts.append(_exists(guard, shares, table, record_id, sets))
        alternatives.append(and_(*parts))
    return or_(*alternatives) if alternatives else false()


def _alternatives(terms: Terms, owner: Column, department: Column,
                  sets: _Sets) -> list[ColumnElement[bool]]:
    alternatives: list[ColumnElement[bool]] = []
    if terms.owners:
        alternatives.append(sets.values(owner, terms.owners))
    if terms.departments:
        alternatives.append(sets.departments(department, terms.departments))
    for owners, departments in terms.pairs:
        alternatives.append(and_(sets.values(owner, owners),
                                 sets.departments(department, departments)))
    if terms.null_department_owners:
        alternatives.append(and_(
            or_(department.is_(None), department == ""),
            sets.values(owner, terms.null_department_owners),
        ))
    return alternatives


def _exists(guard: GuardTerms, shares: ShareColumns, table: FromClause,
            record_id: Column, sets: _Sets) -> ColumnElement[bool]:
    names: list[ColumnElement[bool]] = []
    if guard.accounts:
        names.append(sets.values(shares.account, guard.accounts))
    if guard.departments:
        names.append(sets.values(shares.department, guard.departments))
    return (exists()
            .where(shares.record_id == record_id, sets.values(shares.level, guard.levels),
                   or_(*names) if names else false())
            .correlate_except(table))


def _condition_clause(terms: ConditionTerms, owner: Column,
                      attributes: Mapping[str, Column]) -> ColumnElement[bool]:
    """One condition on record attributes: its tests (:func:`~salesauthz.filters.conditions.
    condition_tests`, the semantics shared with ``sql_where``) ANDed, values bound."""
    parts: list[ColumnElement[bool]] = []
    for test in condition_tests(terms, attributes, "attributes={%r: <its column>, ...}"):
        column = owner if test.owner else attributes[test.attribute]
        if not isinstance(column, ColumnElement | QueryableAttribute):
            raise ValueError(f"attribute {test.attribute!r} column {column!r} is not a column: "
                             "give a Core column (table.c.region) or an ORM attribute "
                             "(Customer.region)")
        if test.op == "never":
            parts.append(false())
        elif test.op == "is_null":
            parts.append(or_(column.is_(None), column == "") if test.owner else column.is_(None))
        elif test.op == "not_null":
            parts.append(and_(column.is_not(None), column != "") if test.owner
                         else column.is_not(None))
        elif test.op == "in":
            parts.append(column.in_(test.values))
        else:
            parts.append(_COMPARE[test.op](column, test.values[0]))
    return and_(*parts) if parts else true()


_COMPARE: dict[str, Callable[[Column, Any], ColumnElement[bool]]] = {
    "eq": lambda column, value: column == value,
    "lt": lambda column, value: column < value,
    "le": lambda column, value: column <= value,
    "gt": lambda column, value: column > value,
    "ge": lambda column, value: column >= value,
}
