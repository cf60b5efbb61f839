"""Real PostgreSQL / SQLite stores for the adapter tests: one private schema (or file) per test."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.conftest import require_service

PG_HOST, PG_PORT = "127.0.0.1", 5432
REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379
PG_BASE = f"postgresql://postgres@{PG_HOST}:{PG_PORT}/test"
REDIS_URL = f"redis://{REDIS_HOST}:{REDIS_PORT}/0"


def admin_connect() -> object:
    import psycopg

    return psycopg.connect(f"host={PG_HOST} port={PG_PORT} user=postgres dbname=test", autocommit=True)


@contextmanager
def postgres_schema() -> Iterator[str]:
    """A store URL whose tables live in a fresh schema, dropped afterwards."""
    import psycopg

    require_service("PostgreSQL", PG_HOST, PG_PORT)
    schema = "sa_test_" + uuid.uuid4().hex[:12]
    with psycopg.connect(f"host={PG_HOST} port={PG_PORT} user=postgres dbname=test",
                         autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield f"{PG_BASE}?options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(f"host={PG_HOST} port={PG_PORT} user=postgres dbname=test",
                             autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


def sqlite_url(directory: Path) -> str:
    return f"sqlite:///{directory / 'salesauthz.db'}"
