"""Conditions on record attributes in the SQLAlchemy renderer (``scope_clause(...,
attributes={attribute: Column})``): on SQLite the clause lets through exactly the rows ``check``
allows, row by row, NULL and missing attributes included; without the mapping it is refused."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import (
    Column,
    Engine,
    Float,
    Integer,
    MetaData,
    Numeric,
    String,
    Table,
    create_engine,
    select,
)
from sqlalchemy.pool import StaticPool

from salesauthz import Authorizer
from salesauthz.errors import UsageError
from salesauthz.filters.sqlalchemy import scope_clause
from salesauthz.models import DomainDocument, compile_document

from ._conditions import DOCUMENT, record_of, rows

METADATA = MetaData()
CUSTOMER = Table(
    "sz_cond_customer", METADATA,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("owner", String, nullable=True),
    Column("department", String, nullable=True),
    # Names that need quoting: the renderer keeps them intact.
    Column('region "r" %s', String, nullable=True, key="region"),
    Column("amount", Numeric, nullable=True),
    Column("pool;--", String, nullable=True, key="pool"),
    Column("customer_id", String, nullable=True),
    Column("score", Float, nullable=True),
)
ATTRIBUTES = {"region": CUSTOMER.c.region, "amount": CUSTOMER.c.amount, "pool": CUSTOMER.c.pool,
              "customer_id": CUSTOMER.c.customer_id, "score": CUSTOMER.c.score}


def _row_dicts() -> list[dict[str, Any]]:
    return [dict(zip(("id", "owner", "department", "region", "amount", "pool", "customer_id",
                      "score"), row, strict=True)) for row in rows()]


@pytest.fixture(scope="module")
def engine() -> Iterator[Engine]:
    engine = create_engine("sqlite+pysqlite:///:memory:", poolclass=StaticPool)
    METADATA.create_all(engine)
    with engine.begin() as connection:
        connection.execute(CUSTOMER.insert(), _row_dicts())
    yield engine
    engine.dispose()


@pytest.fixture(scope="module")
def authz() -> Authorizer:
    return Authorizer.from_rules(compile_document(DomainDocument.model_validate(DOCUMENT)))


@pytest.mark.parametrize("account", sorted(DOCUMENT["accounts"]))
@pytest.mark.parametrize("action", ["read", "export", "claim", "update"])
@pytest.mark.parametrize("with_authz", [True, False])
def test_the_clause_equals_check(engine: Engine, authz: Authorizer, account: str, action: str,
                                 with_authz: bool) -> None:
    flt = authz.scope_filter(account, action, "customer", domain="acme")
    clause = scope_clause(flt, owner=CUSTOMER.c.owner, department=CUSTOMER.c.department,
                          authz=authz if with_authz else None, attributes=ATTRIBUTES)
    with engine.connect() as connection:
        got = set(connection.scalars(select(CUSTOMER.c.id).where(clause)))
    expected = {row[0] for row in rows()
                if authz.check(account, action, record_of(row), domain="acme")}
    if with_authz:
        assert got == expected, (account, action, sorted(got ^ expected)[:5])
    else:  # rows without a department pass on their owner only: never more than check allows
        filed = {row[0] for row in rows() if row[2]}
        assert got <= expected, (account, action, sorted(got - expected)[:5])
        assert got & filed == expected & filed, (account, action)


def test_the_differential_is_not_vacuous(engine: Engine, authz: Authorizer) -> None:
    # Rows pass only by their conditions for rep_e's read (territories East and North), and
    # every kind of test lets some rows through and keeps some out.
    for account, action in (("rep_e", "read"), ("rep_e", "export"), ("rep_e", "claim"),
                            ("rep_w", "update"), ("guest", "read"), ("guest", "export"),
                            ("rep_w", "claim")):
        flt = authz.scope_filter(account, action, "customer", domain="acme")
        clause = scope_clause(flt, owner=CUSTOMER.c.owner, department=CUSTOMER.c.department,
                              authz=authz, attributes=ATTRIBUTES)
        with engine.connect() as connection:
            got = set(connection.scalars(select(CUSTOMER.c.id).where(clause)))
        assert 0 < len(got) < len(rows()), (account, action)


def test_values_are_bound(authz: Authorizer) -> None:
    flt = authz.scope_filter("rep_e", "read", "customer", domain="acme")
    clause = scope_clause(flt, owner=CUSTOMER.c.owner, department=CUSTOMER.c.department,
                          attributes=ATTRIBUTES)
    compiled = clause.compile(dialect=create_engine("postgresql+psycopg://").dialect)
    assert "East" not in str(compiled)
    assert '"region ""r"" %%s" IN' in str(compiled)
    assert ["East", "North"] in [list(v) if isinstance(v, list | tuple) else v
                                 for v in compiled.params.values()]


def test_without_the_mapping_it_is_refused_naming_the_attribute(authz: Authorizer) -> None:
    flt = authz.scope_filter("rep_e", "read", "customer", domain="acme")
    with pytest.raises(UsageError, match=r"record attribute\(s\) 'region'.*scope_clause"):
        scope_clause(flt, owner=CUSTOMER.c.owner, department=CUSTOMER.c.department)
    with pytest.raises(UsageError, match=r"tests the record attribute 'region'.*attributes="):
        scope_clause(flt, owner=CUSTOMER.c.owner, department=CUSTOMER.c.department,
                     attributes={"amount": CUSTOMER.c.amount})
    with pytest.raises(ValueError, match="attribute 'region' column 'region' is not a column"):
        scope_clause(flt, owner=CUSTOMER.c.owner, department=CUSTOMER.c.department,
                     attributes={"region": "region"})  # type: ignore[dict-item]


def test_booleans_are_refused_as_in_sql_where() -> None:
    document: dict[str, Any] = {
        **DOCUMENT, "resources": {"customer": {"actions": ["read"], "attributes": {"vip": "bool"}}},
        "roles": {"r": {"permissions": [{"scope": "all", "where": {"vip": True},
                                         "customer": ["read"]}]}},
        "accounts": {"a": {"roles": ["r"]}}}
    booleans = Authorizer.from_rules(compile_document(DomainDocument.model_validate(document)))
    flt = booleans.scope_filter("a", "read", "customer", domain="acme")
    with pytest.raises(UsageError, match="text and numbers only"):
        scope_clause(flt, owner=CUSTOMER.c.owner, department=CUSTOMER.c.department,
                     attributes={"vip": CUSTOMER.c.score})


@pytest.mark.parametrize("account", sorted(DOCUMENT["accounts"]))
def test_the_clause_equals_check_on_postgresql(pg_engine: Engine, authz: Authorizer,
                                               account: str) -> None:
    """The same rows in a table of this process's own (a unique name), on PostgreSQL."""
    metadata = MetaData()
    table = CUSTOMER.to_metadata(metadata, name="sz_cond_" + uuid.uuid4().hex[:12])
    metadata.create_all(pg_engine)
    try:
        with pg_engine.begin() as connection:
            connection.execute(table.insert(), _row_dicts())
        columns = {name: table.c[name] for name in ATTRIBUTES}
        for action in ("read", "export", "claim", "update"):
            flt = authz.scope_filter(account, action, "customer", domain="acme")
            clause = scope_clause(flt, owner=table.c.owner, department=table.c.department,
                                  authz=authz, attributes=columns)
            with pg_engine.connect() as connection:
                got = set(connection.scalars(select(table.c.id).where(clause)))
            expected = {row[0] for row in rows()
                        if authz.check(account, action, record_of(row), domain="acme")}
            assert got == expected, (account, action, sorted(got ^ expected)[:5])
    finally:
        metadata.drop_all(pg_engine)
