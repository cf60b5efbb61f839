"""Differential tests on real databases: the filtered query returns exactly the rows ``check`` allows.

Hypothesis draws organisations with hostile names (quotes, ``;``, ``--``, backslashes, ``%s``,
unicode); the tables hold every owner × department combination of each domain (plus unknown,
NULL and empty names), and the owner and department columns have hostile names too. One drawn
organisation is checked on every backend (SQLite and PostgreSQL through the plain-SQL and
SQLAlchemy renderers, SQLite through Django's ``Q``): drawing organisations is the slow part.

``test_filters_with_shares_equal_check`` does the same for organisations with the record model
(share levels, the ``shared``, ``subordinates`` and ``subordinate_tree`` scopes, auxiliary
departments, reporting lines, timed roles, sub-accounts capped by parents): each record carries
drawn shares, stored in a real share table (with hostile column names too), and the renderers
are given that table.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any, Literal

import pytest
from django.db import connection as django_connection
from hypothesis import event, given, settings
from hypothesis import strategies as st
from sqlalchemy import Connection, Engine, Table, select

from salesauthz import Authorizer
from salesauthz.errors import UsageError
from salesauthz.filters import sql as filters_sql
from salesauthz.filters.closure import ClosureTable, sync
from salesauthz.filters.django import ShareModel, scope_q
from salesauthz.filters.sql import Paramstyle, ShareTable, quote_identifier, sql_where
from salesauthz.filters.sqlalchemy import ShareColumns, scope_clause
from salesauthz.values import ScopeFilter
from tests.conftest import examples, require_service, service_available
from tests.strategies import FIXED_NOW, Organisation, organisations

from ._records import Query, Row, allowed_ids, queries, rows_of
from ._shares import (
    SharedRow,
    allowed_shared_ids,
    share_rows,
    shared_organisations,
    shared_queries,
    shared_rows,
)
from .conftest import (
    DEPARTMENT_COLUMN,
    OWNER_COLUMN,
    PG_URL,
    SHARE_ACCOUNT_COLUMN,
    SHARE_DEPARTMENT_COLUMN,
    SHARE_LEVEL_COLUMN,
    SHARE_RECORD_COLUMN,
)


@contextmanager
def arrays_from(size: int) -> Iterator[None]:
    """``arrays=True`` binds sets of ``size`` values or more as arrays (drawn organisations are
    small: with the production threshold their sets would almost never reach ``= ANY``)."""
    kept = filters_sql.ARRAY_MIN_VALUES
    filters_sql.ARRAY_MIN_VALUES = size
    try:
        yield
    finally:
        filters_sql.ARRAY_MIN_VALUES = kept

# A closure table with hostile names; every subtree (however small) goes through it.
def closure_table() -> ClosureTable:
    return ClosureTable(f'"sz closure %s {uuid.uuid4().hex[:12]}"', tenant='"t;--"', version="v",
                        ancestor="\"a'\"", descendant='"d %s"', min_subtree=1)


class SqlBackend:
    """A table in one database, queried through ``sql_where`` and ``scope_clause``; and a
    department closure table (created here, dropped by ``close``)."""

    def __init__(self, conn: Connection, table: Table, styles: list[tuple[Paramstyle, bool]],
                 sync_style: Literal["format", "qmark"] = "qmark") -> None:
        self.conn = conn
        self.table = table
        self.styles = styles
        self.owner = quote_identifier(OWNER_COLUMN)
        self.department = quote_identifier(DEPARTMENT_COLUMN)
        self.closure = closure_table()
        self.stale = closure_table()  # never synced: the closure form must fail closed
        self.sync_style = sync_style
        for table_spec in (self.closure, self.stale):
            self._raw_execute(table_spec.ddl()[0])

    def _raw_execute(self, statement: str) -> None:
        cursor = self.conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        cursor.execute(statement)
        cursor.close()

    def close(self) -> None:
        self.conn.rollback()
        for table_spec in (self.closure, self.stale):
            self._raw_execute(f"DROP TABLE IF EXISTS {table_spec.name}")
        self.conn.commit()

    def check_closure(self, flt: ScopeFilter, authz: Authorizer, query: Query, style: Paramstyle,
                      arrays: bool, expected: set[int]) -> None:
        """The closure form (synced: the same rows; never synced: never more)."""
        sync(self.conn.connection.driver_connection, self.closure, authz, domain=query.domain,
             paramstyle=self.sync_style)
        for spec, exact in ((self.closure, True), (self.stale, False)):
            where, params = sql_where(flt, owner=self.owner, department=self.department,
                                      domain=("tenant", query.domain), paramstyle=style,
                                      authz=authz, arrays=arrays, closure=spec.using(authz))
            found = self.raw(where, params)
            assert found == expected if exact else found <= expected, (query, where, params)
            clause = scope_clause(flt, owner=self.table.c.owner,
                                  department=self.table.c.department, domain=self.table.c.tenant,
                                  authz=authz, arrays=arrays, closure=spec.using(authz))
            found = set(self.conn.scalars(select(self.table.c.id).where(clause)))
            assert found == expected if exact else found <= expected, (query, clause)

    def load(self, rows: list[Row]) -> None:
        self.conn.execute(self.table.delete())
        self.conn.execute(self.table.insert(), [row._asdict() for row in rows])

    def raw(self, where: str, params: list[Any] | dict[str, Any]) -> set[int]:
        bound: Any = tuple(params) if isinstance(params, list) else params
        result = self.conn.exec_driver_sql(f'SELECT id FROM "{self.table.name}" WHERE {where}', bound)
        return {r[0] for r in result}

    def check(self, flt: ScopeFilter, authz: Authorizer, query: Query, i: int,
              expected: set[int], with_department: set[int]) -> None:
        style, arrays = self.styles[i % len(self.styles)]
        where, params = sql_where(flt, owner=self.owner, department=self.department,
                                  domain=("tenant", query.domain), paramstyle=style, authz=authz,
                                  arrays=arrays)
        assert self.raw(where, params) == expected, (query, where, params)
        if arrays:  # every set as an array, however small
            with arrays_from(1):
                where, params = sql_where(flt, owner=self.owner, department=self.department,
                                          domain=("tenant", query.domain), paramstyle=style,
                                          authz=authz, arrays=True)
            assert self.raw(where, params) == expected, (query, where, params)
            with arrays_from(1):
                clause = scope_clause(flt, owner=self.table.c.owner,
                                      department=self.table.c.department,
                                      domain=self.table.c.tenant, authz=authz, arrays=True)
            assert set(self.conn.scalars(select(self.table.c.id).where(clause))) == expected
        clause = scope_clause(flt, owner=self.table.c.owner, department=self.table.c.department,
                              domain=self.table.c.tenant, authz=authz)
        assert set(self.conn.scalars(select(self.table.c.id).where(clause))) == expected, query
        self.check_closure(flt, authz, query, style, arrays, expected)
        # Without the authorizer, rows without a department pass on their owner alone: never
        # more than check allows, and the same answer wherever the department is known.
        where, params = sql_where(flt, owner=self.owner, department=self.department,
                                  domain=("tenant", query.domain), paramstyle=style, arrays=arrays)
        loose = self.raw(where, params)
        assert loose <= expected
        assert loose & with_department == expected & with_department


@pytest.fixture(scope="module")  # holds connections: give them back when this module is done
def backends(
    sqlite_engine: Engine, sqlite_table: Table, request: pytest.FixtureRequest,
) -> Iterator[list[SqlBackend]]:
    with ExitStack() as stack:
        chosen = [SqlBackend(stack.enter_context(sqlite_engine.connect()), sqlite_table,
                             [("qmark", False), ("named", False)])]
        # PostgreSQL joins when it runs; test_postgres_is_reachable reports (or fails) otherwise.
        if service_available("127.0.0.1", 5432):
            pg_table: Table = request.getfixturevalue("pg_table")
            pg_engine: Engine = request.getfixturevalue("pg_engine")
            chosen.append(SqlBackend(stack.enter_context(pg_engine.connect()), pg_table,
                                     [("format", False), ("pyformat", True), ("format", True),
                                      ("pyformat", False)], sync_style="format"))
        yield chosen
        for backend in chosen:
            backend.close()


def test_postgres_is_reachable(pg_engine: Engine) -> None:
    require_service("PostgreSQL", "127.0.0.1", 5432)
    assert str(pg_engine.url).startswith(PG_URL.split("@")[0])


# The whole vocabulary of a qmark fragment over these columns: anything else in the text would
# mean a value leaked into the SQL instead of travelling as a parameter.
_TOKEN = re.compile(r"\s+|\(|\)|,|=|\?|\bIN\b|\bOR\b|\bAND\b|\bIS NULL\b|\b[01]\b|\"o ;--\"|\"d'\"|\"t\"")


def _assert_only_placeholders(flt: ScopeFilter, authz: Authorizer, domain: str) -> None:
    where, params = sql_where(flt, owner='"o ;--"', department="\"d'\"", domain=('"t"', domain),
                              paramstyle="qmark", authz=authz)
    assert _TOKEN.sub("", where) == "", where
    assert isinstance(params, list)
    assert where.count("?") == len(params)
    assert params[0] == domain


@pytest.fixture(scope="module")
def django_closure() -> Iterator[ClosureTable]:
    """A closure table in Django's database (hostile names: Django's %s placeholders)."""
    spec = closure_table()
    with django_connection.cursor() as cursor:
        cursor.execute(spec.ddl()[0])  # no parameters: Django leaves % alone
    yield spec
    with django_connection.cursor() as cursor:
        cursor.execute(f"DROP TABLE {spec.name}")


@settings(max_examples=examples(100))
@given(data=st.data(), org=organisations())
def test_filters_equal_check(
    data: st.DataObject, org: Organisation, backends: list[SqlBackend], django_customers: Any,
    django_closure: ClosureTable,
) -> None:
    authz = Authorizer.from_rules(org.rules, clock=lambda: FIXED_NOW)
    rows = rows_of(org)
    for backend in backends:
        backend.load(rows)
    django_customers.objects.all().delete()
    django_customers.objects.bulk_create(django_customers(**row._asdict()) for row in rows)
    with_department = {row.id for row in rows if row.department}
    for i, query in enumerate(data.draw(queries(org))):
        expected = allowed_ids(authz, query, rows)
        flt = authz.scope_filter(query.account, query.action, query.type, domain=query.domain)
        _assert_only_placeholders(flt, authz, query.domain)
        for backend in backends:
            backend.check(flt, authz, query, i, expected, with_department)
        q = scope_q(flt, domain="tenant", authz=authz)
        assert set(django_customers.objects.filter(q).values_list("id", flat=True)) == expected, (query, q)
        sync(django_connection, django_closure, authz, domain=query.domain)
        q = scope_q(flt, domain="tenant", authz=authz, closure=django_closure.using(authz))
        assert set(django_customers.objects.filter(q).values_list("id", flat=True)) == expected, (query, q)


class SharedBackend(SqlBackend):
    """A record table and its share table in one database."""

    def __init__(self, conn: Connection, table: Table, shares: Table,
                 styles: list[tuple[Paramstyle, bool]]) -> None:
        super().__init__(conn, table, styles)
        self.shares = shares
        self.share_table = ShareTable(
            quote_identifier(shares.name), record_id=quote_identifier(SHARE_RECORD_COLUMN),
            account=quote_identifier(SHARE_ACCOUNT_COLUMN),
            department=quote_identifier(SHARE_DEPARTMENT_COLUMN),
            level=quote_identifier(SHARE_LEVEL_COLUMN))
        self.record_id = f"{quote_identifier(table.name)}.id"
        self.columns = ShareColumns.of(shares)

    def load_shared(self, rows: list[SharedRow]) -> None:
        self.conn.execute(self.shares.delete())
        self.conn.execute(self.table.delete())
        self.conn.execute(self.table.insert(), [row.record() for row in rows])
        found = share_rows(rows)
        if found:
            self.conn.execute(self.shares.insert(), [share._asdict() for share in found])

    def check_shared(self, flt: ScopeFilter, authz: Authorizer, query: Query, i: int,
                     expected: set[int]) -> None:
        style, arrays = self.styles[i % len(self.styles)]
        where, params = sql_where(flt, owner=self.owner, department=self.department,
                                  domain=("tenant", query.domain), paramstyle=style, authz=authz,
                                  arrays=arrays, shares=self.share_table, record_id=self.record_id)
        assert self.raw(where, params) == expected, (query, where, params)
        if arrays:  # every set as an array, however small
            with arrays_from(1):
                arrayed = sql_where(flt, owner=self.owner, department=self.department,
                                    domain=("tenant", query.domain), paramstyle=style, authz=authz,
                                    arrays=True, shares=self.share_table, record_id=self.record_id)
            assert self.raw(*arrayed) == expected, (query, arrayed)
        clause = scope_clause(flt, owner=self.table.c.owner, department=self.table.c.department,
                              domain=self.table.c.tenant, authz=authz, shares=self.columns,
                              record_id=self.table.c.id)
        assert set(self.conn.scalars(select(self.table.c.id).where(clause))) == expected, query
        if not flt.needs_shares:  # the share table changes nothing: the same SQL as without it
            assert (where, params) == sql_where(
                flt, owner=self.owner, department=self.department,
                domain=("tenant", query.domain), paramstyle=style, authz=authz, arrays=arrays)
            return
        with pytest.raises(UsageError, match="shared scope"):
            sql_where(flt, owner=self.owner, department=self.department, paramstyle=style)
        with pytest.raises(UsageError, match="shared scope"):
            scope_clause(flt, owner=self.table.c.owner, department=self.table.c.department)


@pytest.fixture(scope="module")
def shared_backends(
    sqlite_engine: Engine, sqlite_shared_records: tuple[Table, Table],
    request: pytest.FixtureRequest,
) -> Iterator[list[SharedBackend]]:
    with ExitStack() as stack:
        chosen = [SharedBackend(stack.enter_context(sqlite_engine.connect()),
                                *sqlite_shared_records, [("qmark", False), ("named", False)])]
        if service_available("127.0.0.1", 5432):
            pg_records: tuple[Table, Table] = request.getfixturevalue("pg_shared_records")
            chosen.append(SharedBackend(
                stack.enter_context(request.getfixturevalue("pg_engine").connect()), *pg_records,
                [("format", False), ("pyformat", True), ("format", True), ("pyformat", False)]))
        yield chosen


_SHARED_TOKEN = re.compile(
    r"\s+|\(|\)|,|=|\?|\bIN\b|\bOR\b|\bAND\b|\bIS NULL\b|\b[01]\b|\"o ;--\"|\"d'\"|\"t\"|\bEXISTS\b"
    r"|\bSELECT\b|\bFROM\b|\bWHERE\b|\"s\.\"|\bsalesauthz_share\.?|\"[rald]\"|\bc\.id\b")


def _assert_shared_placeholders(flt: ScopeFilter, authz: Authorizer, domain: str) -> None:
    where, params = sql_where(flt, owner='"o ;--"', department="\"d'\"", domain=('"t"', domain),
                              paramstyle="qmark", authz=authz,
                              shares=ShareTable('"s."', record_id='"r"', account='"a"',
                                                department='"d"', level='"l"'),
                              record_id="c.id")
    assert _SHARED_TOKEN.sub("", where.replace('"l"', "")) == "", where
    assert isinstance(params, list)
    assert where.count("?") == len(params)
    assert params[0] == domain


def _count_shapes(flt: ScopeFilter, authz: Authorizer, query: Query, rows: list[SharedRow],
                  expected: set[int]) -> None:
    """Hypothesis statistics (``--hypothesis-show-statistics``): how often the interesting cases
    come up, so a generator change that loses them shows."""
    if not flt.needs_shares:
        return
    event("filter with guarded terms")
    terms = flt.coverage.guarded
    if any(not term.base.everything for term in terms):
        event("guarded term with a non-trivial base (a capped sub-account)")
    if any(len(term.guards) > 1 for term in terms):
        event("guarded term with two or more guards")
    unshared = {row.id for row in rows if not row.shares}
    if expected - unshared - allowed_shared_ids(authz, query, [r._replace(shares=()) for r in rows]):
        event("rows reached only through a share")


@settings(max_examples=examples(100))
@given(data=st.data(), org=shared_organisations())
def test_filters_with_shares_equal_check(
    data: st.DataObject, org: Organisation, shared_backends: list[SharedBackend],
    django_shares: Any,
) -> None:
    authz = Authorizer.from_rules(org.rules, clock=lambda: FIXED_NOW)
    rows = data.draw(shared_rows(org))
    for backend in shared_backends:
        backend.load_shared(rows)
    customers = django_shares._meta.get_field("customer").related_model
    django_shares.objects.all().delete()
    customers.objects.all().delete()
    customers.objects.bulk_create(customers(**row.record()) for row in rows)
    django_shares.objects.bulk_create(
        django_shares(customer_id=share.record_id, account=share.account,
                      department=share.department, level=share.level)
        for share in share_rows(rows))
    share_model = ShareModel(django_shares, record="customer")
    for i, query in enumerate(data.draw(shared_queries(org))):
        expected = allowed_shared_ids(authz, query, rows)
        flt = authz.scope_filter(query.account, query.action, query.type, domain=query.domain)
        _count_shapes(flt, authz, query, rows, expected)
        _assert_shared_placeholders(flt, authz, query.domain)
        for backend in shared_backends:
            backend.check_shared(flt, authz, query, i, expected)
        q = scope_q(flt, domain="tenant", authz=authz, shares=share_model)
        assert set(customers.objects.filter(q).values_list("id", flat=True)) == expected, (query, q)
        if flt.needs_shares:
            with pytest.raises(UsageError, match="shared scope"):
                scope_q(flt, domain="tenant", authz=authz)
