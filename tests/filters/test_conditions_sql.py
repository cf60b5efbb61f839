"""Conditions on record attributes rendered as SQL (``sql_where(..., attributes=...)``): the
filter lets through exactly the rows ``check`` allows, NULL and missing attributes included,
on SQLite; what SQL cannot say the same way is refused."""

from __future__ import annotations

import sqlite3
from typing import Any

import pytest

from salesauthz import Authorizer
from salesauthz.errors import UsageError
from salesauthz.filters.sql import sql_where
from salesauthz.models import DomainDocument, compile_document

from ._conditions import ATTRIBUTES, DOCUMENT, record_of, rows


@pytest.fixture(scope="module")
def database() -> sqlite3.Connection:
    db = sqlite3.connect(":memory:")
    db.execute("CREATE TABLE customer (id INTEGER PRIMARY KEY, owner TEXT, department TEXT, "
               "region TEXT, amount NUMERIC, pool TEXT, customer_id TEXT, score REAL)")
    db.executemany("INSERT INTO customer VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows())
    return db


@pytest.fixture(scope="module")
def authz() -> Authorizer:
    return Authorizer.from_rules(compile_document(DomainDocument.model_validate(DOCUMENT)))


@pytest.mark.parametrize("account", sorted(DOCUMENT["accounts"]))
@pytest.mark.parametrize("action", ["read", "export", "claim", "update"])
@pytest.mark.parametrize("paramstyle", ["qmark", "named"])
def test_the_filter_equals_check(database: sqlite3.Connection, authz: Authorizer, account: str,
                                 action: str, paramstyle: Any) -> None:
    flt = authz.scope_filter(account, action, "customer", domain="acme")
    where, params = sql_where(flt, owner="c.owner", department="c.department", authz=authz,
                              attributes=ATTRIBUTES, paramstyle=paramstyle)
    got = {n for (n,) in database.execute(f"SELECT c.id FROM customer c WHERE {where}", params)}
    expected = {row[0] for row in rows()
                if authz.check(account, action, record_of(row), domain="acme")}
    assert got == expected, (where, params, sorted(got ^ expected)[:5])
    for row in rows():  # and the filter's own matches() agrees (it knows no homes: filed rows)
        record = record_of(row)
        if record.department is None:
            continue
        assert flt.matches(record.owner, record.department, (), record.attributes) == \
            (row[0] in expected)


def test_some_filters_let_rows_through_only_by_their_conditions(authz: Authorizer) -> None:
    flt = authz.scope_filter("rep_e", "read", "customer", domain="acme")
    where, params = sql_where(flt, owner="owner", department="department", attributes=ATTRIBUTES,
                              paramstyle="qmark")
    assert "c.region IN (?, ?)" in where
    assert {"East", "North"} <= set(params)


def test_what_cannot_be_rendered_is_refused(authz: Authorizer) -> None:
    flt = authz.scope_filter("rep_e", "read", "customer", domain="acme")
    with pytest.raises(UsageError, match="conditions on record attributes"):
        sql_where(flt, owner="owner", department="department")  # no attributes= at all
    with pytest.raises(UsageError, match=r"tests the record attribute 'region'.*attributes="):
        sql_where(flt, owner="owner", department="department", attributes={"amount": "amount"})
    with pytest.raises(ValueError, match="not a SQL identifier"):
        sql_where(flt, owner="owner", department="department",
                  attributes={"region": "region; DROP TABLE customer"})
    document = {**DOCUMENT, "resources": {"customer": {"actions": ["read"],
                                                        "attributes": {"vip": "bool"}}},
                "roles": {"r": {"permissions": [{"scope": "all", "where": {"vip": True},
                                                 "customer": ["read"]}]}},
                "accounts": {"a": {"roles": ["r"]}}}
    booleans = Authorizer.from_rules(compile_document(DomainDocument.model_validate(document)))
    with pytest.raises(UsageError, match="text and numbers only"):
        sql_where(booleans.scope_filter("a", "read", "customer", domain="acme"), owner="owner",
                  department="department", attributes={"vip": "vip"})


def test_an_empty_owner_equals_nothing() -> None:
    from salesauthz.filters.conditions import ConditionTerms, condition_sql

    bound: list[Any] = []

    def bind(value: Any) -> str:
        bound.append(value)
        return "?"

    def column(role: str, name: str) -> str:
        return name

    terms = ConditionTerms((), (), (), (("owner", "eq", ""),), "where owner = ")
    assert condition_sql(terms, {}, "c.owner", bind, column) == "(1 = 0)"
    terms = ConditionTerms((), (), (), (("owner", "in", ("", "x")),), "where owner in [, x]")
    assert condition_sql(terms, {}, "c.owner", bind, column) == "(c.owner = ?)"
    assert bound == ["x"]


@pytest.fixture(scope="module")
def postgres() -> Any:
    """A connection with the rows in a temporary table (this session's own: no name clashes)."""
    from tests.adapters._services import PG_HOST, PG_PORT
    from tests.conftest import require_service

    require_service("PostgreSQL", PG_HOST, PG_PORT)
    import psycopg

    conn = psycopg.connect(f"host={PG_HOST} port={PG_PORT} user=postgres dbname=test",
                           autocommit=True)
    conn.execute("CREATE TEMP TABLE customer (id INTEGER PRIMARY KEY, owner TEXT, department TEXT, "
                 "region TEXT, amount NUMERIC, pool TEXT, customer_id TEXT, score DOUBLE PRECISION)")
    with conn.cursor() as cursor:
        cursor.executemany("INSERT INTO customer VALUES (%s, %s, %s, %s, %s, %s, %s, %s)", rows())
    yield conn
    conn.close()


@pytest.mark.parametrize("account", sorted(DOCUMENT["accounts"]))
@pytest.mark.parametrize("arrays", [False, True])
def test_the_filter_equals_check_on_postgresql(postgres: Any, authz: Authorizer, account: str,
                                               arrays: bool) -> None:
    for action in ("read", "export", "claim", "update"):
        flt = authz.scope_filter(account, action, "customer", domain="acme")
        where, params = sql_where(flt, owner="c.owner", department="c.department", authz=authz,
                                  attributes=ATTRIBUTES, paramstyle="format", arrays=arrays)
        got = {n for (n,) in postgres.execute(f"SELECT c.id FROM customer c WHERE {where}",
                                              params).fetchall()}
        expected = {row[0] for row in rows()
                    if authz.check(account, action, record_of(row), domain="acme")}
        assert got == expected, (action, where, sorted(got ^ expected)[:5])
