"""A scope filter as a plain SQL ``WHERE`` fragment with bound parameters (any DB-API driver).

Values (account, department and tenant names) only ever travel as bound parameters, whatever
characters they contain; the SQL text holds nothing but the caller's column names, which are
validated (a plain or double-quoted identifier, optionally dotted: ``c.owner``,
``"Customer"."Owner Name"``) and written exactly as given.

    >>> where, params = sql_where(flt, owner="owner", department="department")
    >>> cursor.execute(f"SELECT id FROM customer WHERE {where} ORDER BY id", params)
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Literal, TypeAlias

from ._terms import terms_of

if TYPE_CHECKING:
    from salesauthz.authorizer import Authorizer
    from salesauthz.values import ScopeFilter

__all__ = ["Paramstyle", "quote_identifier", "sql_where"]

Paramstyle: TypeAlias = Literal["format", "pyformat", "named", "qmark"]

_PLAIN = r"[A-Za-z_][A-Za-z0-9_$]*"
_QUOTED = r'"(?:[^"\x00]|"")+"'
_IDENTIFIER = re.compile(rf"(?:{_PLAIN}|{_QUOTED})(?:\.(?:{_PLAIN}|{_QUOTED}))*")
_PARAM_PREFIX = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def quote_identifier(name: str) -> str:
    """``name`` as a double-quoted SQL identifier (for column names that need quoting)."""
    if not name or "\x00" in name:
        raise ValueError(f"not a usable SQL identifier: {name!r}")
    return '"' + name.replace('"', '""') + '"'


def _column(role: str, name: str, paramstyle: Paramstyle) -> str:
    if not isinstance(name, str):
        raise ValueError(f"{role} column {name!r} is not a SQL identifier: give the column name as a string")
    return _checked_column(role, name, paramstyle)


@lru_cache(maxsize=256)  # the same few column names come back on every list view
def _checked_column(role: str, name: str, paramstyle: Paramstyle) -> str:
    if not _IDENTIFIER.fullmatch(name):
        raise ValueError(
            f"{role} column {name!r} is not a SQL identifier: use a plain name such as "
            f"'owner' or 'c.owner', or quote it with quote_identifier()"
        )
    # The percent-based styles read '%' in the statement as a placeholder marker.
    return name.replace("%", "%%") if paramstyle in ("format", "pyformat") else name


class _Params:
    """Collects bound values and writes placeholders in one paramstyle."""

    def __init__(self, paramstyle: Paramstyle, prefix: str, arrays: bool) -> None:
        self.style = paramstyle
        self.prefix = prefix
        self.arrays = arrays
        self.positional: list[Any] = []
        self.named: dict[str, Any] = {}

    def bind(self, value: str | list[str]) -> str:
        if self.style == "format":
            self.positional.append(value)
            return "%s"
        if self.style == "qmark":
            self.positional.append(value)
            return "?"
        name = f"{self.prefix}{len(self.named)}"
        self.named[name] = value
        return f"%({name})s" if self.style == "pyformat" else f":{name}"

    def in_list(self, column: str, values: Sequence[str]) -> str:
        if self.arrays:  # one array parameter: the same SQL text whatever the set's size
            return f"{column} = ANY({self.bind(list(values))})"
        if len(values) == 1:
            return f"{column} = {self.bind(values[0])}"
        return f"{column} IN ({', '.join(self.bind(v) for v in values)})"

    def result(self) -> list[Any] | dict[str, Any]:
        return self.positional if self.style in ("format", "qmark") else self.named


def sql_where(
    flt: ScopeFilter,
    *,
    owner: str,
    department: str,
    domain: tuple[str, str] | None = None,
    paramstyle: Paramstyle = "format",
    authz: Authorizer | None = None,
    param_prefix: str = "scope_",
    arrays: bool = False,
) -> tuple[str, list[Any] | dict[str, Any]]:
    """``(fragment, params)``: a parenthesised boolean SQL expression true exactly for the rows
    ``flt`` lets through, and its bound parameters (a list for ``format``/``qmark``, a dict for
    ``pyformat``/``named``, whose keys start with ``param_prefix``).

    Args:
        flt: from :meth:`Authorizer.scope_filter <salesauthz.Authorizer.scope_filter>`.
        owner, department: the columns holding the record's owner account and department names.
        domain: ``(tenant column, tenant value)`` to add ``tenant column = value``; the value must
            be the filter's own domain (a filter never reaches into another tenant).
        paramstyle: the driver's placeholder style (psycopg: ``format``/``pyformat``; sqlite3:
            ``qmark``/``named``).
        authz: the authorizer that made ``flt``. Give it when the department column may be NULL
            or empty: such rows then count as being in their owner's current department, as
            ``check`` decides. Without it they pass only on their owner (never more than
            ``check`` allows).
        arrays: PostgreSQL only: bind each set as one array, ``column = ANY(%s)``, so the SQL
            text (and a prepared statement) is the same whatever the number of owners or
            departments; the planner uses the column's index as for ``IN``.

    Raises:
        ValueError: a column name is not a SQL identifier, or the tenant value is not the
            filter's domain.
    """
    if paramstyle not in ("format", "pyformat", "named", "qmark"):
        raise ValueError(f"unknown paramstyle {paramstyle!r}: expected format, pyformat, named or qmark")
    if not _PARAM_PREFIX.fullmatch(param_prefix):
        raise ValueError(f"param_prefix {param_prefix!r} must be a plain identifier such as 'scope_'")
    owner_col = _column("owner", owner, paramstyle)
    department_col = _column("department", department, paramstyle)
    params = _Params(paramstyle, param_prefix, arrays)
    tenant = ""
    if domain is not None:
        tenant_col, tenant_value = domain
        if tenant_value != flt.domain:
            raise ValueError(
                f"the filter is for domain {flt.domain!r} but the tenant condition names "
                f"{tenant_value!r}"
            )
        tenant = f"{_column('domain', tenant_col, paramstyle)} = {params.bind(tenant_value)}"
    terms = terms_of(flt, authz)
    if terms.everything:
        return f"({tenant or '1 = 1'})", params.result()
    if terms.nothing:
        condition = "1 = 0"
    else:
        alternatives: list[str] = []
        if terms.owners:
            alternatives.append(params.in_list(owner_col, terms.owners))
        if terms.departments:
            alternatives.append(params.in_list(department_col, terms.departments))
        for owners, departments in terms.pairs:
            alternatives.append(
                f"({params.in_list(owner_col, owners)} AND {params.in_list(department_col, departments)})"
            )
        if terms.null_department_owners:
            alternatives.append(
                f"(({department_col} IS NULL OR {department_col} = {params.bind('')}) AND "
                f"{params.in_list(owner_col, terms.null_department_owners)})"
            )
        condition = " OR ".join(alternatives) or "1 = 0"
    if tenant:
        return f"({tenant} AND ({condition}))", params.result()
    return f"({condition})", params.result()
