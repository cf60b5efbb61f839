"""Differential tests on real databases: the filtered query returns exactly the rows ``check`` allows.

Hypothesis draws organisations with hostile names (quotes, ``;``, ``--``, backslashes, ``%s``,
unicode); the tables hold every owner × department combination of each domain (plus unknown,
NULL and empty names), and the owner and department columns have hostile names too. One drawn
organisation is checked on every backend (SQLite and PostgreSQL through the plain-SQL and
SQLAlchemy renderers, SQLite through Django's ``Q``): drawing organisations is the slow part.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import ExitStack
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import Connection, Engine, Table, select

from salesauthz import Authorizer
from salesauthz.filters.django import scope_q
from salesauthz.filters.sql import Paramstyle, quote_identifier, sql_where
from salesauthz.filters.sqlalchemy import scope_clause
from salesauthz.values import ScopeFilter
from tests.conftest import examples, require_service, service_available
from tests.strategies import FIXED_NOW, Organisation, organisations

from ._records import Query, Row, allowed_ids, queries, rows_of
from .conftest import DEPARTMENT_COLUMN, OWNER_COLUMN, PG_URL


class SqlBackend:
    """A table in one database, queried through ``sql_where`` and ``scope_clause``."""

    def __init__(self, conn: Connection, table: Table, styles: list[tuple[Paramstyle, bool]]) -> None:
        self.conn = conn
        self.table = table
        self.styles = styles
        self.owner = quote_identifier(OWNER_COLUMN)
        self.department = quote_identifier(DEPARTMENT_COLUMN)

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
        clause = scope_clause(flt, owner=self.table.c.owner, department=self.table.c.department,
                              domain=self.table.c.tenant, authz=authz)
        assert set(self.conn.scalars(select(self.table.c.id).where(clause))) == expected, query
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
                                      ("pyformat", False)]))
        yield chosen


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


@settings(max_examples=examples(200))
@given(data=st.data(), org=organisations())
def test_filters_equal_check(
    data: st.DataObject, org: Organisation, backends: list[SqlBackend], django_customers: Any,
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
