"""No store call waits forever: connect and statement timeouts, TCP keepalives, a client-side
deadline when the answer never comes, per-thread deadlines — and the watchdog under them."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest
import sqlalchemy as sa

from salesauthz.adapters._deadline import DeadlineExceeded, Watchdog, call_before
from salesauthz.adapters.sql import SQLAdapter, StoreTimeouts, prepare_url
from salesauthz.errors import StorageError

from ._proxy import Proxy
from ._services import PG_HOST, PG_PORT, postgres_schema, sqlite_url

pytestmark = pytest.mark.timeout(60)


# -- the watchdog --------------------------------------------------------------------------------


def fail() -> None:
    raise RuntimeError("an action that fails")


def test_watchdog_runs_what_was_not_disarmed_in_deadline_order() -> None:
    dog = Watchdog()
    ran: list[str] = []
    now = time.monotonic()
    dog.arm(now + 0.2, lambda: ran.append("late"))
    early = dog.arm(now + 0.1, lambda: ran.append("early"))
    cancelled = dog.arm(now + 0.05, lambda: ran.append("cancelled"))
    dog.arm(now + 0.01, fail)  # a failing action does not stop the others
    assert dog.disarm(cancelled)
    time.sleep(0.4)
    assert ran == ["early", "late"]
    assert not dog.disarm(early)  # already run
    with dog.guard(time.monotonic() + 5.0, lambda: ran.append("never")):
        pass
    time.sleep(0.05)
    assert ran == ["early", "late"]


def test_call_before_returns_raises_or_gives_up() -> None:
    assert call_before(time.monotonic() + 1.0, lambda: 42, lambda late: None) == 42
    with pytest.raises(ZeroDivisionError):
        call_before(time.monotonic() + 1.0, lambda: 1 // 0, lambda late: None)
    discarded: list[str] = []
    release = threading.Event()

    def slow() -> str:
        release.wait(5.0)
        return "connection"

    started = time.monotonic()
    with pytest.raises(DeadlineExceeded):
        call_before(started + 0.2, slow, discarded.append)
    assert time.monotonic() - started < 0.5
    release.set()  # the abandoned call finishes: its result is discarded, not leaked
    deadline = time.monotonic() + 2.0
    while not discarded and time.monotonic() < deadline:
        time.sleep(0.01)
    assert discarded == ["connection"]


# -- configuration -------------------------------------------------------------------------------


def test_postgresql_urls_get_timeouts_and_keepalives_unless_they_set_their_own() -> None:
    url, timeouts = prepare_url("postgresql://u:pw@db/crm?options=-csearch_path%3Dauthz")
    assert timeouts == StoreTimeouts(connect=5.0, statement=30.0)
    assert url.query["connect_timeout"] == "5"
    assert url.query["keepalives_idle"] == "5"
    assert url.query["tcp_user_timeout"] == "10000"
    assert url.query["options"] == ("-csearch_path=authz -c statement_timeout=30000 "
                                    "-c idle_in_transaction_session_timeout=30000")
    url, timeouts = prepare_url("postgres://db/crm?statement_timeout=2.5&connect_timeout=3"
                                "&keepalives_idle=60&options=-c%20statement_timeout%3D1000")
    assert timeouts == StoreTimeouts(connect=3.0, statement=2.5)
    assert "statement_timeout" not in url.query  # salesauthz's own parameter, not libpq's
    assert url.query["connect_timeout"] == "3"
    assert url.query["keepalives_idle"] == "60"
    assert url.query["options"] == "-c statement_timeout=1000 -c idle_in_transaction_session_timeout=2500"
    assert timeouts.answer == 2.5 + 2.0


def test_sqlite_statement_timeout_is_the_busy_timeout(tmp_path: Path) -> None:
    url, timeouts = prepare_url(sqlite_url(tmp_path) + "?statement_timeout=0.3")
    assert timeouts.statement == 0.3
    assert "statement_timeout" not in url.query
    store = SQLAdapter(sqlite_url(tmp_path) + "?statement_timeout=0.3")
    other = SQLAdapter(sqlite_url(tmp_path) + "?statement_timeout=0.3")
    try:
        with store.engine.connect() as holder:
            holder.execution_options(salesauthz_write=True).begin()  # holds the write lock
            started = time.monotonic()
            with pytest.raises(StorageError, match="locked"):
                other.apply([("p4", "r", "acme")], [])
            assert 0.25 < time.monotonic() - started < 2.0
    finally:
        store.close()
        other.close()


@pytest.mark.parametrize("value", ["0", "-1", "soon", "inf"])
def test_bad_timeouts_name_the_parameter(value: str) -> None:
    with pytest.raises(StorageError, match=rf"statement_timeout={value!r} in store URL postgresql://u:\*\*\*@db"):
        SQLAdapter(f"postgresql://u:secret@db/crm?statement_timeout={value}")
    with pytest.raises(StorageError, match="connect_timeout"):
        prepare_url(f"postgresql://db/crm?connect_timeout={value}")


# -- PostgreSQL: the server's limits and the client's deadlines -------------------------------


@pytest.fixture
def pg_url() -> Iterator[str]:
    with postgres_schema() as url:
        yield url


@pytest.fixture
def proxy() -> Iterator[Proxy]:
    proxy = Proxy(PG_HOST, PG_PORT)
    proxy.start()
    yield proxy
    proxy.heal()
    proxy.cut()


def through(proxy: Proxy, url: str) -> str:
    return url.replace(f"{PG_HOST}:{PG_PORT}", f"{PG_HOST}:{proxy.port}")


@pytest.mark.postgres
def test_the_server_applies_the_statement_timeout(pg_url: str) -> None:
    store = SQLAdapter(pg_url + "&statement_timeout=0.2")
    try:
        with store.engine.connect() as conn:
            assert conn.exec_driver_sql("SHOW statement_timeout").scalar() == "200ms"
            assert conn.exec_driver_sql("SHOW idle_in_transaction_session_timeout").scalar() == "200ms"
            client = cast(Any, conn.connection.dbapi_connection).info.get_parameters()  # psycopg's
            assert (client["keepalives_idle"], client["tcp_user_timeout"]) == ("5", "10000")
            with pytest.raises(sa.exc.OperationalError, match="statement timeout"):
                conn.exec_driver_sql("SELECT pg_sleep(2)")
    finally:
        store.close()


@pytest.mark.postgres
def test_an_answer_that_never_comes_ends_at_the_client_deadline(pg_url: str, proxy: Proxy) -> None:
    store = SQLAdapter(through(proxy, pg_url) + "&statement_timeout=0.3")
    try:
        assert store.versions() == {}
        # Held from the query on (the pre-ping passes): the server's cancellation cannot come back.
        proxy.blackhole_on(b"salesauthz_versions")
        started = time.monotonic()
        with pytest.raises(StorageError, match="no answer in time"):
            store.versions()
        took = time.monotonic() - started
        assert store.timeouts.answer - 0.1 < took < store.timeouts.answer + 1.0
        proxy.heal()
        assert store.versions() == {}  # a fresh connection replaced the one given up
    finally:
        store.close()


@pytest.mark.postgres
def test_a_thread_deadline_bounds_every_call_of_that_thread(pg_url: str, proxy: Proxy) -> None:
    store = SQLAdapter(through(proxy, pg_url))
    try:
        store.versions()
        proxy.blackhole()
        started = time.monotonic()
        with pytest.raises(StorageError, match="no answer in time"), store.deadline(started + 0.3):
            store.load(["acme"])
        assert time.monotonic() - started < 0.6
        # A connection opened under the deadline is abandoned at it (libpq cannot go below 2 s).
        started = time.monotonic()
        with pytest.raises(StorageError, match="no answer in time"), store.deadline(started + 0.3):
            store.versions()
        assert time.monotonic() - started < 0.6
        with pytest.raises(StorageError, match="deadline has passed"), store.deadline(started):
            store.versions()  # nothing is even tried
        with store.deadline(time.monotonic() + 60.0), store.deadline(started):
            assert store._deadline_of_thread() == started  # the earlier one wins
        assert store._deadline_of_thread() is None
    finally:
        store.close()


@pytest.mark.postgres
def test_a_stranded_pooled_connection_is_replaced_at_checkout(pg_url: str, proxy: Proxy) -> None:
    store = SQLAdapter(through(proxy, pg_url) + "&connect_timeout=2")
    try:
        store.versions()  # one pooled connection, now idle
        proxy.strand()  # it goes half-open ...
        proxy.heal()  # ... while new connections work
        started = time.monotonic()
        assert store.versions() == {}
        assert 1.9 < time.monotonic() - started < 3.0  # the pre-ping waited connect_timeout
    finally:
        store.close()


def test_sqlite_calls_are_interrupted_at_the_thread_deadline(tmp_path: Path) -> None:
    store = SQLAdapter(sqlite_url(tmp_path))
    try:
        started = time.monotonic()
        with pytest.raises(sa.exc.OperationalError, match="interrupted"), \
                store.deadline(started + 0.2), store.engine.connect() as conn:
            conn.exec_driver_sql("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) "
                                 "SELECT count(*) FROM n").scalar()
        assert time.monotonic() - started < 1.0
    finally:
        store.close()


def test_the_watchdog_keeps_no_trace_of_disarmed_deadlines() -> None:
    dog = Watchdog()
    for _ in range(1_000):
        dog.disarm(dog.arm(time.monotonic() + 60.0, fail))
    assert len(dog._heap) <= 64


def test_a_malformed_store_url_is_a_storage_error() -> None:
    with pytest.raises(StorageError, match="not a store URL"):
        SQLAdapter("::nonsense")


def test_sqlite_statements_have_no_client_deadline_of_their_own(tmp_path: Path) -> None:
    store = SQLAdapter(sqlite_url(tmp_path) + "?statement_timeout=0.05")  # busy timeout only
    try:
        with store.engine.connect() as conn:
            count = conn.exec_driver_sql("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n "
                                         "WHERE i < 300000) SELECT count(*) FROM n").scalar()
            assert count == 300_000
            assert "salesauthz_deadline" not in conn.connection.info  # nothing was armed
            with store.deadline(time.monotonic() + 60.0):
                conn.exec_driver_sql("SELECT 1")
                assert "salesauthz_deadline" in conn.connection.info  # a thread deadline is
    finally:
        store.close()


@pytest.mark.postgres
def test_bulk_writes_are_left_to_the_servers_per_statement_limit(pg_url: str) -> None:
    store = SQLAdapter(pg_url)
    armed: list[tuple[bool, bool]] = []

    @sa.event.listens_for(store.engine, "before_cursor_execute")
    def spy(conn: sa.Connection, cursor: Any, statement: str, parameters: Any, context: Any,
            executemany: bool) -> None:
        armed.append((executemany, "salesauthz_deadline" in conn.connection.info))

    try:
        store.apply([("p4", "a", "acme"), ("p4", "b", "acme")], [])  # the insert is an executemany
        assert (True, False) in armed  # the import of a million rules is not cut at 32 s
        assert (False, True) in armed  # every other statement has its deadline
        assert all(deadline != many for many, deadline in armed)
    finally:
        store.close()
