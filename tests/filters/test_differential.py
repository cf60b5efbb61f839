"""Differential tests on real databases: the filtered query returns exactly the rows ``check`` allows.

Hypothesis draws organisations with hostile names (quotes, ``;``, ``--``, backslashes, ``%s``,
unicode); the table holds every owner × department combination of each domain (plus unknown,
NULL and empty names) and its owner and department columns have hostile names too.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, Table, select

from salesauthz import Authorizer
from salesauthz.filters.sql import Paramstyle, quote_identifier, sql_where
from salesauthz.filters.sqlalchemy import scope_clause
from tests.conftest import examples
from tests.strategies import FIXED_NOW, Organisation, organisations

from ._records import Query, Row, allowed_ids, queries, rows_of
from .conftest import DEPARTMENT_COLUMN, OWNER_COLUMN


def _load(engine: Engine, table: Table, rows: list[Row]) -> None:
    with engine.begin() as conn:
        conn.execute(table.delete())
        conn.execute(table.insert(), [row._asdict() for row in rows])


def _raw_ids(engine: Engine, table: Table, where: str, params: list[str] | dict[str, str]) -> set[int]:
    bound: Any = tuple(params) if isinstance(params, list) else params
    with engine.connect() as conn:
        return {r[0] for r in conn.exec_driver_sql(f'SELECT id FROM "{table.name}" WHERE {where}', bound)}


def _core_ids(engine: Engine, table: Table, authz: Authorizer, query: Query) -> set[int]:
    flt = authz.scope_filter(query.account, query.action, query.type, domain=query.domain)
    clause = scope_clause(flt, owner=table.c.owner, department=table.c.department,
                          domain=table.c.tenant, authz=authz)
    with engine.connect() as conn:
        return set(conn.scalars(select(table.c.id).where(clause)))


def _compare_backend(
    engine: Engine, table: Table, org: Organisation, batch: list[Query], styles: list[Paramstyle],
) -> None:
    authz = Authorizer.from_rules(org.rules, clock=lambda: FIXED_NOW)
    rows = rows_of(org)
    _load(engine, table, rows)
    with_department = {row.id for row in rows if row.department}
    for i, query in enumerate(batch):
        expected = allowed_ids(authz, query, rows)
        flt = authz.scope_filter(query.account, query.action, query.type, domain=query.domain)
        style = styles[i % len(styles)]
        columns: dict[str, Any] = {"owner": quote_identifier(OWNER_COLUMN),
                                   "department": quote_identifier(DEPARTMENT_COLUMN),
                                   "domain": ("tenant", query.domain), "paramstyle": style}
        where, params = sql_where(flt, authz=authz, **columns)
        assert _raw_ids(engine, table, where, params) == expected, (query, where, params)
        assert _core_ids(engine, table, authz, query) == expected, query
        # Without the authorizer, rows without a department pass on their owner alone: never
        # more than check allows, and the same answer wherever the department is known.
        where, params = sql_where(flt, **columns)
        loose = _raw_ids(engine, table, where, params)
        assert loose <= expected
        assert loose & with_department == expected & with_department


@settings(max_examples=examples(200))
@given(data=st.data(), org=organisations())
def test_sqlite_filters_equal_check(
    data: st.DataObject, org: Organisation, sqlite_engine: Engine, sqlite_table: Table
) -> None:
    _compare_backend(sqlite_engine, sqlite_table, org, data.draw(queries(org)), ["qmark", "named"])


@settings(max_examples=examples(200))
@given(data=st.data(), org=organisations())
def test_postgres_filters_equal_check(
    data: st.DataObject, org: Organisation, pg_engine: Engine, pg_table: Table
) -> None:
    _compare_backend(pg_engine, pg_table, org, data.draw(queries(org)), ["format", "pyformat"])
