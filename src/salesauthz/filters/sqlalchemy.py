"""A scope filter as a SQLAlchemy 2.x boolean expression, for Core and ORM ``.where(...)``.

    >>> stmt = select(Customer).where(scope_clause(flt, owner=Customer.owner,
    ...                                            department=Customer.department))

Sets become ``IN`` with SQLAlchemy's expanding bound parameters: every value is bound, the
statement text (and its cache key) does not depend on how many values there are, and an index
on the column serves the lookup.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeAlias

from sqlalchemy import and_, false, or_, true
from sqlalchemy.orm import QueryableAttribute
from sqlalchemy.sql.elements import ColumnElement

from ._terms import terms_of

if TYPE_CHECKING:
    from salesauthz.authorizer import Authorizer
    from salesauthz.values import ScopeFilter

__all__ = ["Column", "scope_clause"]

#: A Core column (``table.c.owner``) or an ORM attribute (``Customer.owner``).
Column: TypeAlias = ColumnElement[Any] | QueryableAttribute[Any]


def _in(column: Column, values: tuple[str, ...]) -> ColumnElement[bool]:
    return column == values[0] if len(values) == 1 else column.in_(values)


def scope_clause(
    flt: ScopeFilter,
    *,
    owner: Column,
    department: Column,
    domain: Column | None = None,
    authz: Authorizer | None = None,
) -> ColumnElement[bool]:
    """A ``ColumnElement[bool]`` true exactly for the rows ``flt`` lets through.

    Args:
        flt: from :meth:`Authorizer.scope_filter <salesauthz.Authorizer.scope_filter>`.
        owner, department: the columns (or ORM attributes) holding owner and department names.
        domain: the tenant column; adds ``domain == flt.domain``.
        authz: the authorizer that made ``flt``, when the department column may be NULL or
            empty (see :func:`salesauthz.filters.sql.sql_where`).
    """
    terms = terms_of(flt, authz)
    condition: ColumnElement[bool]
    if terms.everything:
        return true() if domain is None else domain == flt.domain
    if terms.nothing:
        condition = false()
    else:
        alternatives: list[ColumnElement[bool]] = []
        if terms.owners:
            alternatives.append(_in(owner, terms.owners))
        if terms.departments:
            alternatives.append(_in(department, terms.departments))
        for owners, departments in terms.pairs:
            alternatives.append(and_(_in(owner, owners), _in(department, departments)))
        if terms.null_department_owners:
            alternatives.append(and_(
                or_(department.is_(None), department == ""),
                _in(owner, terms.null_department_owners),
            ))
        condition = or_(*alternatives) if alternatives else false()
    if domain is not None:
        return and_(domain == flt.domain, condition)
    return condition
