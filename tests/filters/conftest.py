"""Fixtures for the list-view filters: one table per backend and test session.

Each backend gets a table with a unique name, created once and emptied per example, so the
property tests stay fast and parallel runs never collide. Django is configured here (SQLite in
memory) unless the test run configured it already.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import django
import pytest
from django.conf import settings
from sqlalchemy import Column, Engine, Integer, MetaData, String, Table, create_engine
from sqlalchemy.pool import StaticPool

from tests.conftest import require_service

if not settings.configured:
    settings.configure(
        DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
        INSTALLED_APPS=[],
        DEFAULT_AUTO_FIELD="django.db.models.BigAutoField",
        USE_TZ=True,
    )
django.setup()

PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"

# Column names that need quoting, on purpose: the renderers must keep them intact.
OWNER_COLUMN = 'owner "x" %s'
DEPARTMENT_COLUMN = "dept;--"
# The share table's columns too (a dot inside the quotes, a percent sign, a quote).
SHARE_ACCOUNT_COLUMN = 'acct.%s "a"'
SHARE_DEPARTMENT_COLUMN = "dept'--"
SHARE_LEVEL_COLUMN = "level"
SHARE_RECORD_COLUMN = "record id"


def record_table(metadata: MetaData) -> Table:
    name = "sz_filter_" + uuid.uuid4().hex[:12]
    return Table(
        name, metadata,
        Column("id", Integer, primary_key=True, autoincrement=False),
        Column("tenant", String, nullable=False),
        Column(OWNER_COLUMN, String, nullable=True, key="owner"),
        Column(DEPARTMENT_COLUMN, String, nullable=True, key="department"),
    )


def share_table(metadata: MetaData) -> Table:
    name = "sz share " + uuid.uuid4().hex[:12]
    return Table(
        name, metadata,
        Column(SHARE_RECORD_COLUMN, Integer, nullable=False, key="record_id"),
        Column(SHARE_ACCOUNT_COLUMN, String, nullable=True, key="account"),
        Column(SHARE_DEPARTMENT_COLUMN, String, nullable=True, key="department"),
        Column(SHARE_LEVEL_COLUMN, String, nullable=False, key="level"),
    )


@pytest.fixture(scope="session")
def sqlite_engine() -> Iterator[Engine]:
    engine = create_engine("sqlite+pysqlite:///:memory:", poolclass=StaticPool)
    yield engine
    engine.dispose()


@pytest.fixture(scope="session")
def sqlite_table(sqlite_engine: Engine) -> Table:
    metadata = MetaData()
    table = record_table(metadata)
    metadata.create_all(sqlite_engine)
    return table


@pytest.fixture(scope="session")
def sqlite_shared_records(sqlite_engine: Engine) -> tuple[Table, Table]:
    """A record table and its share table (apart from ``sqlite_table``: another module's
    connection may hold a transaction open on that one)."""
    metadata = MetaData()
    tables = record_table(metadata), share_table(metadata)
    metadata.create_all(sqlite_engine)
    return tables


@pytest.fixture(scope="session")
def pg_engine() -> Iterator[Engine]:
    require_service("PostgreSQL", "127.0.0.1", 5432)
    engine = create_engine(PG_URL, pool_size=2, max_overflow=2)
    yield engine
    engine.dispose()


@pytest.fixture(scope="session")
def pg_table(pg_engine: Engine) -> Iterator[Table]:
    metadata = MetaData()
    table = record_table(metadata)
    metadata.create_all(pg_engine)
    yield table
    metadata.drop_all(pg_engine)


@pytest.fixture(scope="session")
def pg_shared_records(pg_engine: Engine) -> Iterator[tuple[Table, Table]]:
    """A record table and its share table in PostgreSQL, apart from ``pg_table``: the
    differential's other connection keeps a transaction open on that one (an insert of the same
    ids from here would wait for it forever)."""
    metadata = MetaData()
    tables = record_table(metadata), share_table(metadata)
    metadata.create_all(pg_engine)
    yield tables
    metadata.drop_all(pg_engine)


@pytest.fixture(scope="session")
def django_customers() -> Iterator[type[Any]]:
    """The Django ``Customer`` model, its table created in Django's (in-memory SQLite) database."""
    from django.db import connection

    from ._django_models import Customer

    if connection.vendor != "sqlite":
        pytest.skip("the Django filter tests run on SQLite; Django is configured for " + connection.vendor)
    with connection.schema_editor() as editor:
        editor.create_model(Customer)
    yield Customer
    with connection.schema_editor() as editor:
        editor.delete_model(Customer)


@pytest.fixture(scope="session")
def django_shares(django_customers: type[Any]) -> Iterator[type[Any]]:
    """The Django ``CustomerShare`` model (a foreign key to ``Customer``), its table created."""
    from django.db import connection

    from ._django_models import CustomerShare

    with connection.schema_editor() as editor:
        editor.create_model(CustomerShare)
    yield CustomerShare
    with connection.schema_editor() as editor:
        editor.delete_model(CustomerShare)


@pytest.fixture(scope="session")
def django_attributed_customers() -> Iterator[type[Any]]:
    """The Django ``AttributedCustomer`` model (record attributes in fields), its table created."""
    from django.db import connection

    from ._django_models import AttributedCustomer

    if connection.vendor != "sqlite":
        pytest.skip("the Django filter tests run on SQLite; Django is configured for " + connection.vendor)
    with connection.schema_editor() as editor:
        editor.create_model(AttributedCustomer)
    yield AttributedCustomer
    with connection.schema_editor() as editor:
        editor.delete_model(AttributedCustomer)
