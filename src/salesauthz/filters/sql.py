"""A scope filter as a plain SQL ``WHERE`` fragment with bound parameters (any DB-API driver).

Values (account, department and tenant names) only ever travel as bound parameters, whatever
characters they contain; the SQL text holds nothing but the caller's column names, which are
validated (a plain or double-quoted identifier, optionally dotted: ``c.owner``,
``"Customer"."Owner Name"``) and written exactly as given.

    >>> where, params = sql_where(flt, owner="owner", department="department")
    >>> cursor.execute(f"SELECT id FROM customer WHERE {where} ORDER BY id", params)

A filter with the ``shared`` scope also needs the CRM's share table (:class:`ShareTable`) and
the records' id column; each share condition becomes a correlated ``EXISTS``:

    >>> where, params = sql_where(flt, owner="customer.owner", department="customer.department",
    ...                           shares=ShareTable("customer_share"), record_id="customer.id")
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Literal, TypeAlias

from salesauthz._identity import IdentityCache
from salesauthz.errors import UsageError

from ._terms import GuardTerms, Terms, shares_required, terms_of
from .closure import CLOSURE_ALIAS, Closure, ClosureTable, DepartmentTree
from .conditions import ConditionTerms, condition_sql

if TYPE_CHECKING:
    from salesauthz.authorizer import Authorizer
    from salesauthz.values import ScopeFilter

__all__ = ["ARRAY_MIN_VALUES", "Paramstyle", "ShareTable", "quote_identifier", "sql_where"]

Paramstyle: TypeAlias = Literal["format", "pyformat", "named", "qmark"]

_PLAIN = r"[A-Za-z_][A-Za-z0-9_$]*"
_QUOTED = r'"(?:[^"\x00]|"")+"'
_IDENTIFIER = re.compile(rf"(?:{_PLAIN}|{_QUOTED})(?:\.(?:{_PLAIN}|{_QUOTED}))*")
_PART = re.compile(rf"{_PLAIN}|{_QUOTED}")
_PARAM_PREFIX = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# With ``arrays=True``, sets of up to this many values are still bound one parameter each (``IN``).
# A prepared statement switches to a generic plan after five executions, and PostgreSQL plans an
# array parameter it cannot see as 10 elements: for a one-department team on a 2,000-department
# tree that overestimates the rows 10x, the generic plan walks the wrong index and the sixth
# execution is ~100x slower. Each small size gets its own SQL text, hence a generic plan with the
# exact estimate (k values, like k placeholders); larger sets are underestimated, which keeps
# the column's index attractive (no cliff), and share one SQL text whatever their size.
ARRAY_MIN_VALUES = 11

# Rendered SQL per coverage and department index (identities: what a filter's terms are
# computed from) and per rendering arguments as given, so the list view of a returning account
# costs one lookup, not a rendering. Not used with a closure (its text depends on the tree's
# version).
_RENDERED_PER_TERMS = 8
_rendered: IdentityCache[dict[tuple[Any, ...], tuple[str, list[Any] | dict[str, Any]]]] = \
    IdentityCache(4096)

# The share table's alias inside each EXISTS: its columns are always qualified with it, so they
# never resolve to a column of the records table (and the caller's names never to the shares').
SHARE_ALIAS = "salesauthz_share"


@dataclass(frozen=True, slots=True)
class ShareTable:
    """The CRM's share table (相关团队, account team, manual share): one row per share, naming
    the record (``record_id``), the account or the department it is shared with (the other one
    NULL) and the share level.

    ``name`` is a table name as in ``FROM`` (``customer_share``, ``crm.customer_share``, or
    quoted with :func:`quote_identifier`); the columns are plain or double-quoted names (not
    dotted: the renderer qualifies them with its own alias, ``salesauthz_share``).

    >>> ShareTable("crm.customer_share", record_id="customer_id").level
    'level'
    """

    name: str
    record_id: str = "record_id"
    account: str = "account"
    department: str = "department"
    level: str = "level"


def quote_identifier(name: str) -> str:
    """``name`` as a double-quoted SQL identifier (for column names that need quoting)."""
    if not name or "\x00" in name:
        raise ValueError(f"not a usable SQL identifier: {name!r}")
    return '"' + name.replace('"', '""') + '"'


def _column(role: str, name: str, paramstyle: Paramstyle) -> str:
    if not isinstance(name, str):
        raise ValueError(f"{role} column {name!r} is not a SQL identifier: give the column name as a string")
    return _checked_column(role, name, paramstyle)


@lru_cache(maxsize=64)
def _share_sql(shares: ShareTable, record_id: str, paramstyle: Paramstyle) -> tuple[str, ...]:
    """``(table, record id, account, department, level, records' id)``, checked and qualified."""
    table = _column("share table", shares.name, paramstyle)
    columns = []
    for role, name in (("share record_id", shares.record_id), ("share account", shares.account),
                       ("share department", shares.department), ("share level", shares.level)):
        if not isinstance(name, str) or not _PART.fullmatch(name):
            raise ValueError(
                f"{role} column {name!r} is not a SQL identifier: give one plain name such as "
                f"'account' (not dotted: it is qualified with the share table's alias), or "
                f"quote it with quote_identifier()")
        columns.append(f"{SHARE_ALIAS}.{_column(role, name, paramstyle)}")
    record = _column("record_id", record_id, paramstyle)
    if not _IDENTIFIER.fullmatch(record) or "." not in _outside_quotes(record):
        raise ValueError(
            f"record_id column {record_id!r} must be qualified with the records' table (or its "
            f"alias), e.g. 'customer.id': inside EXISTS (SELECT 1 FROM <share table> ...) an "
            f"unqualified name could resolve to a column of the share table")
    return (table, *columns, record)


@lru_cache(maxsize=16)
def _closure_sql(table: ClosureTable, paramstyle: Paramstyle) -> tuple[str, ...]:
    """``(table, tenant, version, ancestor, descendant)``, the columns qualified with the
    closure's alias (so they never resolve to the records' columns)."""
    columns = [f"{CLOSURE_ALIAS}.{_column('closure ' + role, getattr(table, role), paramstyle)}"
               for role in ("tenant", "version", "ancestor", "descendant")]
    return (_column("closure table", table.name, paramstyle), *columns)


def _outside_quotes(name: str) -> str:
    return re.sub(_QUOTED, "", name)


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
        # with a closure table: (its names, checked; the tree; the filter's domain)
        self.closure: tuple[tuple[str, ...], ClosureTable, DepartmentTree, str] | None = None

    def bind(self, value: Any) -> str:
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
        if self.arrays and len(values) >= ARRAY_MIN_VALUES:
            # one array parameter: the same SQL text whatever the (large) set's size
            return f"{column} = ANY({self.bind(list(values))})"
        if len(values) == 1:
            return f"{column} = {self.bind(values[0])}"
        return f"{column} IN ({', '.join(self.bind(v) for v in values)})"

    def departments(self, column: str, values: tuple[str, ...]) -> str:
        """``column`` in ``values``; with a closure table, large subtrees by their tops."""
        if self.closure is None:
            return self.in_list(column, values)
        (table, tenant, version, ancestor, descendant), spec, tree, domain = self.closure
        tops, rest = tree.split(values, spec.min_subtree)
        if not tops:
            return self.in_list(column, values)
        lookup = (f"SELECT {descendant} FROM {table} {CLOSURE_ALIAS} WHERE {tenant} = "
                  f"{self.bind(domain)} AND {version} = {self.bind(tree.version)} AND "
                  f"{self.in_list(ancestor, tops)}")
        # On PostgreSQL (arrays) the subtree is one array computed once (an InitPlan), which
        # the column's index can use even inside an OR; elsewhere an IN subquery.
        found = (f"{column} = ANY(ARRAY({lookup}))" if self.arrays
                 else f"{column} IN ({lookup})")
        if rest:
            return f"({found} OR {self.in_list(column, rest)})"
        return found

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
    shares: ShareTable | None = None,
    record_id: str | None = None,
    attributes: Mapping[str, str] | None = None,
    closure: Closure | None = None,
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
        arrays: PostgreSQL only (recommended there): bind each set of more than 10 values as one
            array, ``column = ANY(%s)``, so the SQL text (and a prepared statement, and its
            generic plan) is the same whatever the number of owners or departments, with one
            parameter instead of thousands; smaller sets stay ``IN`` lists (one SQL text per
            size), whose generic plans use the right index (see ``ARRAY_MIN_VALUES``).
        shares: the CRM's share table, needed when the filter lets records through by their
            shares (``flt.needs_shares``: the ``shared`` scope). Each share condition renders as
            ``EXISTS (SELECT 1 FROM <shares> salesauthz_share WHERE salesauthz_share.<record_id>
            = <record_id> AND salesauthz_share.<level> IN (...) AND (salesauthz_share.<account>
            IN (...) OR salesauthz_share.<department> IN (...)))``. Ignored by filters that do
            not need it (they render exactly as without it).
        record_id: with ``shares``: the records' id column, qualified with the records' table
            or alias (``customer.id``).
        attributes: record attribute → the column holding it (``{"region": "c.region"}``), to
            render the filter's conditions on record attributes (``where:``) as parameterised
            SQL (see :mod:`salesauthz.filters.conditions`). Without it a filter with such a
            condition is refused (``UsageError``), never rendered without it.
        closure: ``ClosureTable(...).using(authz)`` (:mod:`salesauthz.filters.closure`): the
            department sets that hold whole subtrees of at least ``min_subtree`` departments
            are rendered by their tops, through the closure table (``department = ANY(ARRAY(
            SELECT descendant FROM <closure> ...))`` with ``arrays=True``, ``department IN
            (SELECT ...)`` without), with parameters in proportion to the tops, not to the
            subtrees. The table must be synced (:func:`~salesauthz.filters.closure.sync`)
            after department changes; until it is, those subtrees show nothing (never more
            than ``check`` allows).

    Raises:
        ValueError: a column name is not a SQL identifier, or the tenant value is not the
            filter's domain.
        UsageError: the filter needs the share table (``flt.needs_shares``) and ``shares`` or
            ``record_id`` was not given.
    """
    # A filter rendered before with the same arguments (a returning account's list view): one
    # lookup by the coverage's identity and the arguments as given, before anything is checked
    # or built (only a rendering that passed every check is remembered).
    members = authz.department_members(domain=flt.domain) if authz is not None else None
    remembered, key = None, None
    if closure is None:
        try:
            key = (flt.domain, owner, department, domain, paramstyle, param_prefix, arrays, shares,
                   record_id, None if attributes is None else tuple(attributes.items()))
            hash(key)
        except TypeError:  # an argument that is not hashable: rendered (or refused) below
            key = None
        else:
            remembered = _rendered.get(flt.coverage, members)
            found = remembered.get(key) if remembered is not None else None
            if found is not None:
                return found[0], _copy(found[1])
    if paramstyle not in ("format", "pyformat", "named", "qmark"):
        raise ValueError(f"unknown paramstyle {paramstyle!r}: expected format, pyformat, named or qmark")
    if not _PARAM_PREFIX.fullmatch(param_prefix):
        raise ValueError(f"param_prefix {param_prefix!r} must be a plain identifier such as 'scope_'")
    owner_col = _column("owner", owner, paramstyle)
    department_col = _column("department", department, paramstyle)
    params = _Params(paramstyle, param_prefix, arrays)
    if closure is not None:
        params.closure = (_closure_sql(closure.table, paramstyle), closure.table,
                          closure.tree(flt.domain), flt.domain)
    tenant = ""
    if domain is not None:
        tenant_col, tenant_value = domain
        if tenant_value != flt.domain:
            raise ValueError(
                f"the filter is for domain {flt.domain!r} but the tenant condition names "
                f"{tenant_value!r}"
            )
        tenant = f"{_column('domain', tenant_col, paramstyle)} = {params.bind(tenant_value)}"
    terms = terms_of(flt, authz, conditions=attributes is not None)
    if closure is not None:
        return _render(terms, flt, params, tenant, owner_col, department_col, shares, record_id,
                       attributes, paramstyle)
    found = _render(terms, flt, params, tenant, owner_col, department_col, shares, record_id,
                    attributes, paramstyle)
    if key is not None:
        if remembered is None:
            remembered = _rendered.put({}, flt.coverage, members)
        if len(remembered) >= _RENDERED_PER_TERMS:
            remembered.clear()
        remembered[key] = found
    return found[0], _copy(found[1])


def _copy(params: list[Any] | dict[str, Any]) -> list[Any] | dict[str, Any]:
    """The parameters of a remembered rendering, for a caller to keep or change (arrays too)."""
    if isinstance(params, dict):
        return {k: list(v) if isinstance(v, list) else v for k, v in params.items()}
    return [list(v) if isinstance(v, list) else v for v in params]


def _render(terms: Terms, flt: ScopeFilter, params: _Params, tenant: str, owner_col: str,
            department_col: str, shares: ShareTable | None, record_id: str | None,
            attributes: Mapping[str, str] | None, paramstyle: Paramstyle,
            ) -> tuple[str, list[Any] | dict[str, Any]]:
    if terms.everything:
        return f"({tenant or '1 = 1'})", params.result()
    if terms.nothing:
        condition = "1 = 0"
    else:
        share_sql: tuple[str, ...] = ()
        if terms.shared:
            if shares is None or record_id is None:
                raise UsageError(shares_required(
                    flt, "shares=ShareTable(...) and record_id= (the records' id column, e.g. "
                    "'customer.id')"))
            share_sql = _share_sql(shares, record_id, paramstyle)
        condition = _condition(terms, params, owner_col, department_col, share_sql,
                               attributes or {}, paramstyle)
    if tenant:
        return f"({tenant} AND ({condition}))", params.result()
    return f"({condition})", params.result()


def _condition(terms: Terms, params: _Params, owner_col: str, department_col: str,
               share_sql: tuple[str, ...], attributes: Mapping[str, str],
               paramstyle: Paramstyle) -> str:
    """``terms`` (neither nothing nor everything) as one boolean expression, unparenthesised;
    ``attributes`` maps record attributes to their columns (conditions)."""
    if terms.factors:
        return " AND ".join("(" + _condition(factor, params, owner_col, department_col, share_sql,
                                             attributes, paramstyle)
                            + ")" for factor in terms.factors)
    alternatives = _alternatives(terms, params, owner_col, department_col)
    for term in terms.guarded:
        parts = []
        if not term.base.everything:
            parts.append("(" + (" OR ".join(_alternatives(term.base, params, owner_col,
                                                          department_col)) or "1 = 0") + ")")
        parts.extend(
            condition_sql(guard, attributes, owner_col, params.bind,
                          lambda role, name: _column(role, name, paramstyle))
            if isinstance(guard, ConditionTerms) else _exists(guard, params, share_sql)
            for guard in term.guards)
        alternatives.append("(" + " AND ".join(parts) + ")")
    return " OR ".join(alternatives) or "1 = 0"


def _alternatives(terms: Terms, params: _Params, owner_col: str, department_col: str) -> list[str]:
    """The plain alternatives of ``terms`` (owners, departments, pairs, NULL departments)."""
    alternatives: list[str] = []
    if terms.owners:
        alternatives.append(params.in_list(owner_col, terms.owners))
    if terms.departments:
        alternatives.append(params.departments(department_col, terms.departments))
    for owners, departments in terms.pairs:
        alternatives.append(
            f"({params.in_list(owner_col, owners)} AND "
            f"{params.departments(department_col, departments)})"
        )
    if terms.null_department_owners:
        alternatives.append(
            f"(({department_col} IS NULL OR {department_col} = {params.bind('')}) AND "
            f"{params.in_list(owner_col, terms.null_department_owners)})"
        )
    return alternatives


def _exists(guard: GuardTerms, params: _Params, share_sql: tuple[str, ...]) -> str:
    table, share_record, share_account, share_department, share_level, record = share_sql
    levels = params.in_list(share_level, guard.levels)  # bound in the order of the text
    names = []
    if guard.accounts:
        names.append(params.in_list(share_account, guard.accounts))
    if guard.departments:
        names.append(params.in_list(share_department, guard.departments))
    named = " OR ".join(names) or "1 = 0"
    return (f"EXISTS (SELECT 1 FROM {table} {SHARE_ALIAS} WHERE {share_record} = {record} AND "
            f"{levels} AND ({named}))")
