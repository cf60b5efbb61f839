"""The SQL store on SQLite and PostgreSQL: the shared suite, plus what is particular to SQL."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from salesauthz import Authorizer
from salesauthz.adapters import open_adapter
from salesauthz.adapters.base import Adapter
from salesauthz.adapters.casbin_compat import CasbinRuleAdapter
from salesauthz.adapters.sql import SQLAdapter, engine_url
from salesauthz.audit import AuditDraft, AuditKeyring, AuditSnapshot, AuditTrail
from salesauthz.errors import AuditVerificationError, ConflictError, PolicyError, StorageError

from ._services import postgres_schema, sqlite_url
from ._tamper import SQLTamperer, tamperer_for
from .suite import PLAIN, AdapterSuite, hostile_rules, sample_rules


class SQLSuite(AdapterSuite):
    url: str

    def reopen(self, store: Adapter, *, audit_key: AuditKeyring | str = PLAIN) -> Adapter:
        assert isinstance(store, SQLAdapter)
        other = SQLAdapter(self.url, audit_key=audit_key)
        self.opened.append(other)
        return other

    def shared_url(self) -> str | None:
        return self.url

    def with_log_retention(self, store: Adapter, retention: int) -> Adapter:
        other = SQLAdapter(self.url, log_retention=retention)
        self.opened.append(other)
        return other

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


# -- the audit anchors table: databases from before it, rows that are not records -------------


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def any_sql_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield sqlite_url(tmp_path)
    else:
        with postgres_schema() as url:
            yield url


def legacy_store(url: str, adapter: type[SQLAdapter], audit_key: str | AuditKeyring) -> AuditSnapshot:
    """A database as an earlier salesauthz left it: audited changes, no anchors table."""
    store = adapter(url, audit_key=audit_key)
    store.apply([("p4", "a", "acme")], [], [AuditDraft(1.0, "root", "acme", "grant", "a")] * 3)
    store.apply([], [], [AuditDraft(2.0, "root", "globex", "grant", "g")])
    snapshot = store.read_audit()
    with store.engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE salesauthz_audit_anchors"))
    store.close()
    return snapshot


@pytest.mark.parametrize("adapter", [SQLAdapter, CasbinRuleAdapter])
@pytest.mark.parametrize("keyed", [False, True], ids=["plain", "keyed"])
def test_first_open_anchors_existing_trails(any_sql_url: str, adapter: type[SQLAdapter], keyed: bool,
                                            caplog: pytest.LogCaptureFixture) -> None:
    key: str | AuditKeyring = "5a" * 32 if keyed else AuditKeyring()
    before = legacy_store(any_sql_url, adapter, AuditKeyring())
    with caplog.at_level(logging.WARNING, logger="salesauthz.audit"):
        store = adapter(any_sql_url, audit_key=key)
    assert "audit trails of 2 domain(s)" in caplog.text
    assert "first open after upgrading" in caplog.text
    after = store.read_audit()
    assert after.records == before.records
    assert {d: (a.count, a.head) for d, a in after.anchors.items()} == {
        d: (a.count, a.head) for d, a in before.anchors.items()}
    assert AuditTrail(store).verify(raise_on_failure=True)  # keyed: the anchors carry the key
    # Only the first open migrates: an anchor deleted later is not silently re-created.
    caplog.clear()
    with store.engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM salesauthz_audit_anchors WHERE domain = 'acme'"))
    store.close()
    with caplog.at_level(logging.WARNING, logger="salesauthz.audit"):
        store = adapter(any_sql_url, audit_key=key)
    assert caplog.text == ""
    assert "have no anchor" in AuditTrail(store).problems()[0].problem
    with pytest.raises(AuditVerificationError, match="no anchor"):
        store.apply([], [], [AuditDraft(3.0, "root", "acme", "grant", "b")])
    store.close()


def test_concurrent_first_opens_migrate_once(any_sql_url: str) -> None:
    before = legacy_store(any_sql_url, SQLAdapter, AuditKeyring())
    opened: list[SQLAdapter] = []
    errors: list[BaseException] = []

    def open_store() -> None:
        try:
            opened.append(SQLAdapter(any_sql_url, audit_key=AuditKeyring()))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=open_store) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    assert [s.read_audit().anchors == before.anchors for s in opened] == [True] * 4
    for store in opened:
        store.close()


def test_legacy_row_that_is_no_record_stays_unanchored(tmp_path: Path,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    url = sqlite_url(tmp_path)
    legacy_store(url, SQLAdapter, AuditKeyring())
    with sa.create_engine(url).begin() as conn:
        conn.execute(sa.text("UPDATE salesauthz_audit SET record = 'garbage' WHERE sequence = 3"))
    with caplog.at_level(logging.WARNING, logger="salesauthz.audit"):
        store = SQLAdapter(url, audit_key=AuditKeyring())
    assert "record 3: the stored row is not an audit record (JSONDecodeError): left unanchored" in caplog.text
    assert "audit trails of 1 domain(s)" in caplog.text  # globex
    store.close()


def test_a_row_that_is_no_record_is_reported_not_raised(tmp_path: Path) -> None:
    store = SQLAdapter(sqlite_url(tmp_path), audit_key=AuditKeyring())
    store.apply([], [], [AuditDraft(1.0, "root", "acme", "grant", "a")] * 2)
    SQLTamperer(store).corrupt("acme", 2, '{"not": "a record"}')
    (problem,) = AuditTrail(store).problems()
    assert (problem.domain, problem.sequence) == ("acme", 2)
    assert problem.problem == "the stored row is not an audit record (KeyError)"
    for domain in (None, "acme"):
        with pytest.raises(AuditVerificationError, match="domain 'acme' is broken at record 2"):
            store.load_audit(domain)
    rules = store.load()
    with pytest.raises(AuditVerificationError):
        store.apply([("p4", "x", "acme")], [], [AuditDraft(2.0, "root", "acme", "grant", "x")])
    assert store.load() == rules
    store.close()


def test_compare_and_set_sees_a_write_made_outside_salesauthz(tmp_path: Path) -> None:
    """SQLite queues writes made outside salesauthz; a write transaction folds the queue into
    versions before it compares, so a decision made before such a write does not commit."""
    url = sqlite_url(tmp_path)
    store = SQLAdapter(url)
    store.apply([("p4", "a", "acme"), ("p4", "b", "acme")], [])
    with store.engine.begin() as conn:  # a DBA's DELETE (not salesauthz: the triggers queue it)
        conn.execute(store.rules_table.delete().where(store.rules_table.c.v0 == "a"))
    with pytest.raises(ConflictError) as caught:
        store.commit([("p4", "c", "acme")], [], expected={"acme": 1})
    assert (caught.value.expected, caught.value.actual) == (1, 2)
    assert store.load(["acme"]) == [("p4", "b", "acme")]
    assert store.versions() == {"acme": 2}
    assert not store.changes("acme", 1).complete  # the foreign write left nothing to apply
    store.close()


def test_an_operation_that_meets_corrupt_rows_when_catching_up_is_refused(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path)
    store = SQLAdapter(url)
    store.apply(sample_rules(), [])
    authz = Authorizer(SQLAdapter(url))
    tamperer_for(store).insert_rows([("p3", "frozen_1", "acme", "active")])  # a doubled status
    before = store.load_audit("acme")
    with pytest.raises(PolicyError, match="frozen_1"):  # conflict, catch-up: the domain is closed
        authz.admin("alice", domain="acme").freeze("rep_e1a")
    assert "acme" in authz.quarantined
    assert store.load_audit("acme") == before
    authz.close()
    store.close()


# -- loading in batches of driver rows ---------------------------------------------------------


def test_load_reads_every_batch_of_driver_rows(any_sql_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Rules are read from the driver's cursor in batches: with a batch of 3 rows, hostile
    identifiers in several domains come back exactly (none lost at a batch's edge, none doubled),
    for a full load, a filtered load and an authorizer."""
    import salesauthz.adapters.sql as sql

    domains = ["华东一组", "a,b\n'\"; --", "x" * 1000]
    expected = {d: hostile_rules(d) for d in domains}
    store = SQLAdapter(any_sql_url)
    try:
        store.apply([r for rules in expected.values() for r in rules], [])
    finally:
        store.close()
    monkeypatch.setattr(sql, "LOAD_BATCH", 3)
    reader = SQLAdapter(any_sql_url)
    try:
        everything = reader.load()
        assert len(everything) == len(set(everything))
        assert sorted(everything) == sorted(r for rules in expected.values() for r in rules)
        assert sorted(reader.load_versioned([domains[1]]).rules) == sorted(expected[domains[1]])
    finally:
        reader.close()
    with Authorizer.from_url(any_sql_url) as authz:
        assert sorted(authz.rules()) == sorted(r for rules in expected.values() for r in rules)
