"""The examples of ``docs/filtering.md``, as tests (the docs' own blocks run in ``tests/test_docs.py``).

Each test follows one example of the page; where the page shows output, the test compares it
with what the code prints, so the page cannot drift from the code.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator
from contextlib import closing
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Column, Date, Integer, MetaData, String, Table, create_engine, select
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from salesauthz import Authorizer, Record
from salesauthz.filters.django import scope_q
from salesauthz.filters.sql import sql_where
from salesauthz.filters.sqlalchemy import scope_clause

PAGE = Path(__file__).resolve().parents[2] / "docs" / "filtering.md"


def test_explain_output_matches_the_page(sample: Authorizer) -> None:
    shown = re.search(r"```text\n(.*?)```", PAGE.read_text(encoding="utf-8"), re.S)
    assert shown is not None
    printed = [sample.scope_filter(a, "read", "customer", domain="acme").explain()
               for a in ["rep_e1a", "mgr_east", "intern_e1", "alice", "gone_1"]]
    assert shown.group(1).strip().splitlines() == printed


class Base(DeclarativeBase):
    pass


class Customer(Base):
    __tablename__ = "customer"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    tenant: Mapped[str] = mapped_column(String(50))
    owner: Mapped[str] = mapped_column(String(50), index=True)
    department: Mapped[str] = mapped_column(String(50), index=True)
    last_contact: Mapped[date] = mapped_column(Date)


@pytest.fixture
def orm_session() -> Iterator[Session]:
    engine = create_engine("sqlite://")
    Base.metadata.create_all(engine)
    with Session(engine) as db:
        db.add_all([
            Customer(id=1, name="Initech", tenant="acme", owner="rep_e1a", department="east-1",
                     last_contact=date(2026, 3, 1)),
            Customer(id=2, name="Umbrella", tenant="acme", owner="rep_e2", department="east-2",
                     last_contact=date(2026, 2, 1)),
            Customer(id=3, name="Hooli", tenant="acme", owner="rep_w1", department="west-1",
                     last_contact=date(2026, 1, 1)),
            Customer(id=4, name="Globex's own", tenant="globex", owner="rep_e1a",
                     department="east-1", last_contact=date(2026, 4, 1)),
        ])
        db.commit()
        yield db
    engine.dispose()


def test_sqlalchemy_list_view(orm_session: Session, sample: Authorizer) -> None:
    def list_customers(account: str, page: int = 0) -> list[str]:
        flt = sample.scope_filter(account, "read", "customer", domain="acme")
        visible = scope_clause(flt, owner=Customer.owner, department=Customer.department,
                               domain=Customer.tenant)
        stmt = (select(Customer.name).where(visible)
                .order_by(Customer.last_contact.desc()).limit(50).offset(50 * page))
        return list(orm_session.scalars(stmt))

    assert list_customers("rep_e1a") == ["Initech"]
    assert list_customers("mgr_east") == ["Initech", "Umbrella"]
    assert list_customers("analyst_1") == ["Umbrella", "Hooli"]
    assert list_customers("alice") == ["Initech", "Umbrella", "Hooli"]
    assert list_customers("gone_1") == []
    assert list_customers("alice", page=1) == []


def test_plain_sql_with_sqlite3(sample: Authorizer) -> None:
    with closing(sqlite3.connect(":memory:")) as db:
        db.execute("CREATE TABLE customer (id INTEGER PRIMARY KEY, name TEXT, tenant TEXT,"
                   " owner TEXT NOT NULL, department TEXT NOT NULL, last_contact TEXT)")
        db.executemany("INSERT INTO customer VALUES (?, ?, ?, ?, ?, ?)", [
            (1, "Initech", "acme", "rep_e1a", "east-1", "2026-03-01"),
            (2, "Umbrella", "acme", "rep_e2", "east-2", "2026-02-01"),
            (3, "Hooli", "acme", "o'brien; DROP TABLE customer; --", "west-1", "2026-01-01"),
        ])
        flt = sample.scope_filter("mgr_east", "read", "customer", domain="acme")
        where, params = sql_where(flt, owner="owner", department="department",
                                  domain=("tenant", "acme"), paramstyle="qmark")
        assert where == "(tenant = ? AND (owner = ? OR department IN (?, ?, ?)))"
        assert params == ["acme", "mgr_east", "east", "east-1", "east-2"]
        rows = db.execute(f"SELECT name FROM customer WHERE {where} ORDER BY last_contact DESC LIMIT 50",
                          params).fetchall()
        assert rows == [("Initech",), ("Umbrella",)]
        # The hostile owner name was stored and compared as a value, never run as SQL.
        hostile = sample.scope_filter("alice", "read", "customer", domain="acme")
        where, params = sql_where(hostile, owner="owner", department="department", paramstyle="qmark")
        assert db.execute(f"SELECT count(*) FROM customer WHERE {where}", params).fetchone() == (3,)


def test_django_list_view(sample: Authorizer, django_customers: Any) -> None:
    django_customers.objects.all().delete()
    django_customers.objects.bulk_create([
        django_customers(id=1, tenant="acme", owner="rep_e1a", department="east-1"),
        django_customers(id=2, tenant="acme", owner="rep_e2", department="east-2"),
        django_customers(id=3, tenant="acme", owner="rep_w1", department="west-1"),
    ])
    flt = sample.scope_filter("analyst_1", "read", "customer", domain="acme")
    page = (django_customers.objects.filter(scope_q(flt, domain="tenant"))
            .order_by("-id").values_list("id", flat=True)[:50])
    assert list(page) == [3, 2]


def test_rows_without_a_department(sample: Authorizer) -> None:
    leads = Table("lead", MetaData(), Column("id", Integer), Column("owner", String),
                  Column("department", String))
    flt = sample.scope_filter("analyst_1", "read", "customer", domain="acme")
    where, params = sql_where(flt, owner="owner", department="department", paramstyle="qmark",
                              authz=sample)
    assert where == ("(owner = ? OR department IN (?, ?, ?)"
                     " OR ((department IS NULL OR department = ?) AND owner IN (?, ?, ?, ?)))")
    assert isinstance(params, list)
    assert params[-4:] == ["frozen_1", "rep_e2", "rep_w1", "rep_w2"]
    assert sample.check("analyst_1", "read", Record("customer", owner="rep_w1"), domain="acme")
    engine = create_engine("sqlite://")
    leads.metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(leads.insert(), [{"id": 1, "owner": "rep_w1", "department": None},
                                      {"id": 2, "owner": "rep_e1a", "department": None},
                                      {"id": 3, "owner": "rep_e1a", "department": "west"}])
        clause = scope_clause(flt, owner=leads.c.owner, department=leads.c.department, authz=sample)
        assert sorted(conn.scalars(select(leads.c.id).where(clause))) == [1, 3]
    engine.dispose()
