"""The SQLAlchemy renderer: ORM and Core on SQLite, compiled SQL for PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import String, create_engine, select
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, aliased, mapped_column

from salesauthz import Authorizer
from salesauthz.errors import UsageError
from salesauthz.filters.sqlalchemy import ShareColumns, scope_clause
from salesauthz.models import DomainDocument, compile_document
from salesauthz.values import ScopeFilter


class Base(DeclarativeBase):
    pass


class Customer(Base):
    __tablename__ = "customer"
    id: Mapped[int] = mapped_column(primary_key=True)
    tenant: Mapped[str] = mapped_column(String(100))
    owner: Mapped[str | None] = mapped_column(String(100))
    department: Mapped[str | None] = mapped_column(String(100))


@pytest.fixture
def session() -> Iterator[Session]:
    engine = create_engine("sqlite+pysqlite:///:memory:")
    Base.metadata.create_all(engine)
    with Session(engine) as db:
        db.add_all([
            Customer(id=1, tenant="acme", owner="rep_e1a", department="east-1"),
            Customer(id=2, tenant="acme", owner="rep_w1", department="west-1"),
            Customer(id=3, tenant="acme", owner="rep_e2", department=None),
            Customer(id=4, tenant="acme", owner="rep_e2", department=""),
            Customer(id=5, tenant="globex", owner="rep_e1a", department="east-1"),
            Customer(id=6, tenant="acme", owner="intern_e1", department="east-2"),
            Customer(id=7, tenant="acme", owner="rep_e1b", department="east-2"),
        ])
        db.commit()
        yield db
    engine.dispose()


def _ids(db: Session, sample: Authorizer, account: str, *, authz: Authorizer | None = None) -> list[int]:
    flt = sample.scope_filter(account, "read", "customer", domain="acme")
    clause = scope_clause(flt, owner=Customer.owner, department=Customer.department,
                          domain=Customer.tenant, authz=authz)
    return list(db.scalars(select(Customer.id).where(clause).order_by(Customer.id)))


def test_orm_list_views(session: Session, sample: Authorizer) -> None:
    assert _ids(session, sample, "rep_e1a") == [1]
    assert _ids(session, sample, "mgr_east") == [1, 6, 7]
    assert _ids(session, sample, "mgr_east", authz=sample) == [1, 3, 4, 6, 7]
    assert _ids(session, sample, "intern_e1") == [1, 6]  # east-1 by team; own records in east-2
    assert _ids(session, sample, "alice") == [1, 2, 3, 4, 6, 7]
    assert _ids(session, sample, "gone_1") == []


def test_no_tenant_column_means_no_tenant_condition(session: Session, sample: Authorizer) -> None:
    flt = sample.scope_filter("rep_e1a", "read", "customer", domain="acme")
    clause = scope_clause(flt, owner=Customer.owner, department=Customer.department)
    assert list(session.scalars(select(Customer.id).where(clause).order_by(Customer.id))) == [1, 5]


def test_values_are_bound_never_inlined(sample: Authorizer) -> None:
    flt = sample.scope_filter("analyst_1", "read", "customer", domain="acme")
    clause = scope_clause(flt, owner=Customer.owner, department=Customer.department,
                          domain=Customer.tenant, authz=sample)
    compiled = select(Customer.id).where(clause).compile(dialect=create_engine("postgresql+psycopg://").dialect)
    text = str(compiled)
    for value in ("acme", "analyst_1", "east-2", "west-1", "rep_w1"):
        assert value not in text
    assert "customer.department IN (__[POSTCOMPILE_" in text
    assert "customer.department IS NULL" in text
    params = list(compiled.params.values())
    assert "acme" in params
    assert "analyst_1" in params
    assert ["east-2", "west", "west-1"] in params


def test_nothing_and_everything_compile_to_constants(sample: Authorizer) -> None:
    nothing = sample.scope_filter("gone_1", "read", "customer", domain="acme")
    everything = sample.scope_filter("alice", "read", "customer", domain="acme")
    pg = create_engine("postgresql+psycopg://").dialect
    lite = create_engine("sqlite://").dialect
    never = scope_clause(nothing, owner=Customer.owner, department=Customer.department)
    assert str(never.compile(dialect=pg)) == "false"
    always = scope_clause(everything, owner=Customer.owner, department=Customer.department)
    assert str(always.compile(dialect=lite)) == "1"
    with_tenant = scope_clause(everything, owner=Customer.owner, department=Customer.department,
                               domain=Customer.tenant)
    assert str(with_tenant.compile(dialect=pg)) .startswith("customer.tenant = %(tenant_1)s")


class CustomerShare(Base):
    __tablename__ = "customer_share"
    id: Mapped[int] = mapped_column(primary_key=True)
    customer_id: Mapped[int]
    account: Mapped[str | None] = mapped_column(String(100))
    department: Mapped[str | None] = mapped_column(String(100))
    level: Mapped[str] = mapped_column(String(20))


def _shared_filter() -> ScopeFilter:
    document = {
        "domain": "acme", "resources": {"customer": ["read"]}, "departments": {"east": {}},
        "sharing": {"customer": {"ro": ["read"]}},
        "roles": {"rep": {"permissions": [{"scope": "shared", "customer": ["read"]}]}},
        "accounts": {"r1": {"department": "east", "roles": ["rep"]}},
    }
    authz = Authorizer.from_rules(compile_document(DomainDocument.model_validate(document)))
    return authz.scope_filter("r1", "read", "customer", domain="acme")


def test_the_exists_keeps_its_share_table_when_the_query_joins_it(session: Session) -> None:
    # Customers 1 and 2 of the fixture: one shared with r1, one with r3.
    session.add_all([CustomerShare(id=1, customer_id=1, account="r1", level="ro"),
                     CustomerShare(id=2, customer_id=2, account="r3", level="ro")])
    session.commit()
    clause = scope_clause(_shared_filter(), owner=Customer.owner, department=Customer.department,
                          shares=ShareColumns.of(CustomerShare, record_id="customer_id"),
                          record_id=Customer.id)
    joined = select(Customer.id, CustomerShare.account).join(
        CustomerShare, CustomerShare.customer_id == Customer.id).where(clause)
    assert sorted(tuple(row) for row in session.execute(joined)) == [(1, "r1")]
    assert "FROM customer_share" in str(joined)  # not correlated away
    aliased_share = aliased(CustomerShare)
    clause = scope_clause(_shared_filter(), owner=Customer.owner, department=Customer.department,
                          shares=ShareColumns.of(aliased_share, record_id="customer_id"),
                          record_id=Customer.id)
    assert list(session.scalars(select(Customer.id).where(clause))) == [1]


def test_share_columns_of_one_table() -> None:
    other = Customer.__table__
    columns = ShareColumns(CustomerShare.customer_id, CustomerShare.account,
                           other.c.department, CustomerShare.level)
    with pytest.raises(ValueError, match="four columns of one table"):
        scope_clause(_shared_filter(), owner=Customer.owner, department=Customer.department,
                     shares=columns, record_id=Customer.id)
    with pytest.raises(UsageError, match="shares=ShareColumns"):
        scope_clause(_shared_filter(), owner=Customer.owner, department=Customer.department)
