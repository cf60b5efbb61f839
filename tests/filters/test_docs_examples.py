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
from salesauthz.errors import UsageError
from salesauthz.filters.django import ShareModel, scope_q
from salesauthz.filters.sql import ShareTable, sql_where
from salesauthz.filters.sqlalchemy import ShareColumns, scope_clause

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


SHARED_POLICY = """
domain: acme
resources:
  customer: [read, update]
departments:
  sales: {}
  east: {parent: sales}
  service: {}
sharing:
  customer:
    read_only: [read]
    read_write: [read, update]
roles:
  rep:
    permissions:
      - {scope: own, customer: [read, update]}
      - {scope: shared, customer: [read, update]}
accounts:
  rep_e1: {department: east, roles: [rep]}
  rep_e2: {department: east, roles: [rep]}
  svc_1: {department: service, roles: [rep]}
"""


@pytest.fixture
def shared_authz(tmp_path: Path) -> Authorizer:
    page = PAGE.read_text(encoding="utf-8")
    assert SHARED_POLICY.strip() in page  # the page shows this very policy
    (tmp_path / "acme.yaml").write_text(SHARED_POLICY, encoding="utf-8")
    return Authorizer.from_directory(tmp_path)


def test_shared_explain_matches_the_page(shared_authz: Authorizer) -> None:
    shown = re.findall(r"```text\n(.*?)```", PAGE.read_text(encoding="utf-8"), re.S)
    flt = shared_authz.scope_filter("rep_e1", "read", "customer", domain="acme")
    assert flt.explain() in [block.strip() for block in shown]


def test_shared_records_in_plain_sql(shared_authz: Authorizer) -> None:
    with closing(sqlite3.connect(":memory:")) as db:
        db.executescript("""
            CREATE TABLE customer (id INTEGER PRIMARY KEY, name TEXT, tenant TEXT, owner TEXT,
                                   department TEXT);
            CREATE TABLE customer_share (customer_id INTEGER, account TEXT, department TEXT,
                                         level TEXT);""")
        db.executemany("INSERT INTO customer VALUES (?, ?, 'acme', ?, 'east')", [
            (1, "Initech", "rep_e1"), (2, "Umbrella", "rep_e2"), (3, "Hooli", "rep_e2"),
            (4, "Globex", "rep_e2")])
        db.executemany("INSERT INTO customer_share VALUES (?, ?, ?, ?)", [
            (2, "svc_1", None, "read_only"), (3, None, "sales", "read_write"),
            (4, "rep_e1", None, "read_only")])
        shares = ShareTable("customer_share", record_id="customer_id")

        def visible(account: str, action: str) -> list[str]:
            flt = shared_authz.scope_filter(account, action, "customer", domain="acme")
            where, params = sql_where(flt, owner="c.owner", department="c.department",
                                      domain=("c.tenant", "acme"), paramstyle="qmark",
                                      shares=shares, record_id="c.id")
            query = f"SELECT c.name FROM customer c WHERE {where} ORDER BY c.id"
            return [name for (name,) in db.execute(query, params)]

        assert visible("rep_e1", "read") == ["Initech", "Hooli", "Globex"]
        assert visible("rep_e1", "update") == ["Initech", "Hooli"]
        assert visible("svc_1", "read") == ["Umbrella"]
        assert visible("svc_1", "update") == []
        flt = shared_authz.scope_filter("svc_1", "read", "customer", domain="acme")
        with pytest.raises(UsageError, match="shares=ShareTable"):
            sql_where(flt, owner="c.owner", department="c.department")
        with pytest.raises(ValueError, match="must be qualified"):
            sql_where(flt, owner="c.owner", department="c.department", shares=shares,
                      record_id="id")


def test_shared_records_in_sqlalchemy_and_django(shared_authz: Authorizer, django_customers: Any,
                                                 django_shares: Any) -> None:
    metadata = MetaData()
    customers = Table("customer", metadata, Column("id", Integer, primary_key=True),
                      Column("owner", String), Column("department", String))
    customer_shares = Table("customer_share", metadata, Column("customer_id", Integer),
                            Column("account", String), Column("department", String),
                            Column("level", String))
    engine = create_engine("sqlite://")
    metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(customers.insert(), [{"id": i, "owner": "rep_e2", "department": "east"}
                                          for i in (1, 2)])
        conn.execute(customer_shares.insert(), [
            {"customer_id": 1, "account": "rep_e1", "department": None, "level": "read_only"},
            {"customer_id": 2, "account": None, "department": "sales", "level": "read_write"}])
        for action, expected in [("read", [1, 2]), ("update", [2])]:
            flt = shared_authz.scope_filter("rep_e1", action, "customer", domain="acme")
            clause = scope_clause(flt, owner=customers.c.owner, department=customers.c.department,
                                  shares=ShareColumns.of(customer_shares, record_id="customer_id"),
                                  record_id=customers.c.id)
            assert sorted(conn.scalars(select(customers.c.id).where(clause))) == expected
    engine.dispose()
    django_shares.objects.all().delete()
    django_customers.objects.all().delete()
    django_customers.objects.bulk_create([
        django_customers(id=1, tenant="acme", owner="rep_e2", department="east"),
        django_customers(id=2, tenant="acme", owner="rep_e2", department="east")])
    django_shares.objects.create(customer_id=2, account="rep_e1", level="read_only")
    flt = shared_authz.scope_filter("rep_e1", "read", "customer", domain="acme")
    q = scope_q(flt, domain="tenant", shares=ShareModel(django_shares, record="customer"))
    assert list(django_customers.objects.filter(q).values_list("id", flat=True)) == [2]
    with pytest.raises(UsageError, match="shares=ShareModel"):
        scope_q(flt)
