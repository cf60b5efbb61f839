"""The SQL store on SQLite and PostgreSQL: the shared suite, plus what is particular to SQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from salesauthz import Authorizer
from salesauthz.adapters import open_adapter
from salesauthz.adapters.base import Adapter
from salesauthz.adapters.sql import SQLAdapter, engine_url
from salesauthz.audit import AuditKeyring
from salesauthz.errors import StorageError

from ._services import postgres_schema, sqlite_url
from .suite import PLAIN, AdapterSuite


class SQLSuite(AdapterSuite):
    url: str

    def reopen(self, store: Adapter, *, audit_key: AuditKeyring | str = PLAIN) -> Adapter:
        assert isinstance(store, SQLAdapter)
        other = SQLAdapter(self.url, audit_key=audit_key)
        self.opened.append(other)
        return other

    def shared_url(self) -> str | None:
        return self.url

    @pytest.fixture(autouse=True)
    def _close_reopened(self) -> Iterator[None]:
        self.opened: list[SQLAdapter] = []
        yield
        for store in self.opened:
            store.close()


class TestSQLite(SQLSuite):
    @pytest.fixture
    def store(self, tmp_path: Path) -> Iterator[Adapter]:
        self.url = sqlite_url(tmp_path)
        store = open_adapter(self.url)
        yield store
        store.close()


@pytest.mark.postgres
class TestPostgreSQL(SQLSuite):
    @pytest.fixture
    def store(self) -> Iterator[Adapter]:
        with postgres_schema() as url:
            self.url = url
            store = open_adapter(url)
            yield store
            store.close()


def test_postgresql_url_uses_psycopg3() -> None:
    assert engine_url("postgresql://u:p@h/db") == "postgresql+psycopg://u:p@h/db"
    assert engine_url("postgres://h/db") == "postgresql+psycopg://h/db"
    assert engine_url("sqlite:///x.db") == "sqlite:///x.db"


def test_unreachable_store_names_the_url_with_the_password_masked() -> None:
    url = "postgresql://admin:s3cret-pw@127.0.0.1:1/nowhere"
    with pytest.raises(StorageError) as caught:
        Authorizer.from_url(url)
    assert "s3cret-pw" not in str(caught.value)
    assert caught.value.url == "postgresql://admin:***@127.0.0.1:1/nowhere"
    assert "postgresql://admin:***@127.0.0.1:1/nowhere" in str(caught.value)


def test_unusable_sqlite_path_is_a_storage_error(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="cannot"):
        SQLAdapter(f"sqlite:///{tmp_path}/missing-dir/x.db")
    with pytest.raises(StorageError, match="cannot open store"):
        SQLAdapter("sqlite+nodriver:///x.db")


def test_unknown_scheme() -> None:
    with pytest.raises(StorageError, match="no adapter"):
        open_adapter("ftp://user:pw@host/x")


def test_closed_store_refuses_work(tmp_path: Path) -> None:
    store = SQLAdapter(sqlite_url(tmp_path))
    store.close()
    store.close()  # idempotent
    with pytest.raises(StorageError, match="closed"):
        store.load()


def test_create_false_needs_existing_tables(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path)
    store = SQLAdapter(url, create=False)  # connects, creates nothing
    with pytest.raises(StorageError, match="cannot read the rules"):
        store.load()
    store.close()


def test_versions_and_commit_listeners(tmp_path: Path) -> None:
    store = SQLAdapter(sqlite_url(tmp_path))
    seen: list[dict[str, int]] = []
    remove = store.add_commit_listener(seen.append)
    store.apply([("p4", "a", "acme"), ("p4", "b", "globex")], [])
    store.apply([], [("p4", "a", "acme")])
    remove()
    remove()
    store.apply([("p4", "c", "acme")], [])
    assert seen == [{"acme": 1, "globex": 1}, {"acme": 2}]
    assert store.versions() == {"acme": 3, "globex": 1}
    assert store.versions(["globex", "nowhere"]) == {"globex": 1}
    store.close()


def test_filtered_load_uses_the_domain_index(tmp_path: Path) -> None:
    store = SQLAdapter(sqlite_url(tmp_path))
    with store.engine.connect() as conn:
        plan = conn.exec_driver_sql(
            "EXPLAIN QUERY PLAN SELECT ptype FROM salesauthz_rules WHERE domain_key IN ('a', 'b')"
        ).fetchall()
    assert any("INDEX" in str(row[-1]) for row in plan), plan
    store.close()


def test_from_url_sqlite_default(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path)
    with Authorizer.from_url(url) as authz:
        authz.apply_changes([("p4", "rep", "acme")])
    with Authorizer.from_url(url, domains=["acme"]) as again:
        assert again.rules() == [("p4", "rep", "acme")]


def test_sql_adapters_are_imported_lazily() -> None:
    import salesauthz.adapters as adapters
    from salesauthz.adapters.casbin_compat import CasbinRuleAdapter

    assert adapters.SQLAdapter is SQLAdapter
    assert adapters.CasbinRuleAdapter is CasbinRuleAdapter
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        adapters.Nope  # noqa: B018
