"""The example CRM's tables (SQLAlchemy 2.x ORM) and its seed data."""

from __future__ import annotations

import time

from sqlalchemy import ForeignKey, String, create_engine, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column
from sqlalchemy.pool import StaticPool

from salesauthz import Authorizer

__all__ = ["Base", "Customer", "CustomerShare", "Note", "Order", "open_database", "seed"]


class Base(DeclarativeBase):
    pass


class Customer(Base):
    __tablename__ = "customers"

    id: Mapped[int] = mapped_column(primary_key=True)
    domain: Mapped[str] = mapped_column(String(64), index=True)
    name: Mapped[str] = mapped_column(String(200))
    owner: Mapped[str] = mapped_column(String(64), index=True)
    department: Mapped[str] = mapped_column(String(64), index=True)
    phone: Mapped[str] = mapped_column(String(40), default="")
    contract_value: Mapped[int] = mapped_column(default=0)


class CustomerShare(Base):
    """A customer's relevant team (相关团队): who else may reach it, and at which share level."""

    __tablename__ = "customer_shares"

    id: Mapped[int] = mapped_column(primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"), index=True)
    account: Mapped[str | None] = mapped_column(String(64), index=True, default=None)
    department: Mapped[str | None] = mapped_column(String(64), index=True, default=None)
    level: Mapped[str] = mapped_column(String(32))


class Order(Base):
    __tablename__ = "orders"

    id: Mapped[int] = mapped_column(primary_key=True)
    domain: Mapped[str] = mapped_column(String(64), index=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"))
    amount: Mapped[int]
    status: Mapped[str] = mapped_column(String(20), default="open")
    owner: Mapped[str] = mapped_column(String(64), index=True)
    department: Mapped[str] = mapped_column(String(64), index=True)


class Note(Base):
    __tablename__ = "notes"

    id: Mapped[int] = mapped_column(primary_key=True)
    domain: Mapped[str] = mapped_column(String(64), index=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"))
    author: Mapped[str] = mapped_column(String(64))
    text: Mapped[str] = mapped_column(String(2000))


def open_database(url: str = "sqlite://") -> Engine:
    """An engine with the tables created (an in-memory SQLite shared by every thread by default;
    ``postgresql://`` uses psycopg 3). Several workers may open one database at once."""
    if url == "sqlite://":
        engine = create_engine(url, poolclass=StaticPool, connect_args={"check_same_thread": False})
    else:
        engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1)
                               if url.startswith("postgresql://") else url)
    for attempt in range(5):
        try:
            Base.metadata.create_all(engine)
            break
        except DBAPIError:  # another worker created the same table a moment earlier: look again
            if attempt == 4:
                raise
            time.sleep(0.2)
    return engine


# (domain, customer name, owner): departments follow the owners' departments in policies/.
SEED_CUSTOMERS = [
    ("acme", "Northwind", "rep_e1a"),
    ("acme", "Contoso", "rep_e1a"),
    ("acme", "Fabrikam", "rep_e1b"),
    ("acme", "Tailspin", "rep_e2"),
    ("acme", "Wingtip", "rep_w1"),
    ("acme", "Litware", "lead_e1"),
    ("acme", "Adventure Works", "mgr_east"),
    ("acme", "Proseware", "alice"),
    ("globex", "Initech", "g_rep"),
    ("globex", "Hooli", "g_admin"),
]


def seed(engine: Engine, authz: Authorizer) -> None:
    """Sample customers, one order per customer and one note each (idempotent: only when empty;
    of several workers seeding one database at once, one wins and the others find it seeded)."""
    with Session(engine) as session:
        if session.query(Customer).first() is not None:
            return
        for number, (domain, name, owner) in enumerate(SEED_CUSTOMERS, start=1):
            account = authz.account(owner, domain=domain)
            department = (account.department if account is not None else None) or ""
            session.add(Customer(id=number, domain=domain, name=name, owner=owner, department=department,
                                 phone=f"555-01{number:02d}", contract_value=1000 * number))
            session.add(Order(id=number, domain=domain, customer_id=number, amount=100 * number,
                              owner=owner, department=department))
            session.add(Note(id=number, domain=domain, customer_id=number, author=owner,
                             text=f"first call with {name}"))
        try:
            session.commit()
        except DBAPIError:
            session.rollback()  # another worker seeded it first
            return
        if engine.dialect.name == "postgresql":  # explicit ids do not move PostgreSQL's sequences
            for table in ("customers", "orders", "notes"):
                session.execute(text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                                     f"(SELECT max(id) FROM {table}))"))
            session.commit()
