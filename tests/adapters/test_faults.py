"""Atomicity under faults: a multi-rule administrative change that fails after k of its n
statements — for every k, including the commit itself — leaves the store, the in-memory rules and
decisions, and the audit trail and its anchors exactly as they were (and verifying), and the
caller gets a StorageError. A writer process that dies mid-transaction leaves them as they were."""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import event

from salesauthz import Authorizer, Record
from salesauthz._rules import Rule
from salesauthz.adapters.casbin_compat import CasbinRuleAdapter
from salesauthz.adapters.sql import SQLAdapter
from salesauthz.audit import AuditDraft, AuditKeyring, AuditTrail
from salesauthz.errors import StorageError

from ._audit_worker import CRASH_EXIT, crash_while_writing
from ._services import admin_connect, postgres_schema

pytestmark = pytest.mark.timeout(120)

# "(bo,b)": a comma, but inside brackets, so that casbin+ stores (which refuse a value Casbin's
# line loaders would split, see salesauthz.casbin.value_problem) hold it too.
BASE: list[Rule] = [
    ("p2", "acme", "customer", "read"), ("p3", "ann", "acme", "active"), ("p4", "rep", "acme"),
    ("g", "ann", "rep", "acme"), ("p", "rep", "acme", "customer", "read", "all", ""),
    ("p2", "华东", "customer", "read"), ("p3", "(bo,b)", "华东", "active"), ("p4", "rep", "华东"),
    ("g", "(bo,b)", "rep", "华东"), ("p", "rep", "华东", "customer", "read", "own", ""),
]
# Revoke ann's grant and give bob a wider one, in two domains at once, with two audit records.
REMOVED: list[Rule] = [("p", "rep", "acme", "customer", "read", "all", ""),
                       ("p", "rep", "华东", "customer", "read", "own", "")]
ADDED: list[Rule] = [("p", "rep", "华东", "customer", "read", "all", ""), ("p4", "mgr", "acme"),
                     ("g", "(bo,b)", "mgr", "华东"), ("p4", "mgr", "华东")]
AUDIT = [AuditDraft(1.0, "root", "acme", "revoke", "rep", removed=(REMOVED[0],)),
         AuditDraft(1.0, "root", "华东", "grant", "(bo,b)", added=tuple(ADDED))]
RECORD = Record("customer", owner="someone")


class Injector:
    """Counts the statements of write transactions and fails the k-th (or the commit)."""

    def __init__(self, engine: sa.Engine, kill: Callable[[Any], None] | None = None) -> None:
        self.count = 0
        self.fail_at: int | None = None
        self.kill = kill
        event.listen(engine, "before_cursor_execute", self._statement)
        event.listen(engine, "commit", self._commit)

    def _fire(self, conn: Any) -> None:
        if self.fail_at is not None and self.count == self.fail_at:
            self.fail_at = None
            if self.kill is not None:
                self.kill(conn)  # the statement now runs on a dead connection
                return
            raise sa.exc.OperationalError("injected", None, ConnectionError("injected fault"))

    def _statement(self, conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if conn.get_execution_options().get("salesauthz_write"):
            self.count += 1
            self._fire(conn)

    def _commit(self, conn: Any) -> None:
        if conn.get_execution_options().get("salesauthz_write"):
            self.count += 1
            self._fire(conn)


def state(authz: Authorizer, store: SQLAdapter) -> tuple[object, ...]:
    audit = store.read_audit()
    return (sorted(store.load()), authz.rules(), (audit.records, dict(audit.anchors)), store.versions(),
            [authz.check(a, "read", RECORD, domain=d) for a, d in (("ann", "acme"), ("(bo,b)", "华东"))])


@pytest.fixture(autouse=True)
def _no_audit_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SALESAUTHZ_AUDIT_KEY", raising=False)


def run_every_injection_point(store: SQLAdapter, injector: Injector) -> int:
    store.apply(BASE, [], [AuditDraft(0.0, "root", "acme", "seed", "all")])
    authz = Authorizer(store)
    # Measure n on a throwaway copy of the change (applied, then undone).
    injector.count = 0
    authz.apply_changes(ADDED, REMOVED, audit=AUDIT)
    statements = injector.count
    authz.apply_changes(REMOVED, ADDED)
    snapshot = state(authz, store)
    before = snapshot[:2] + snapshot[4:]
    audit_before, versions_before = snapshot[2], snapshot[3]
    assert snapshot[4] == [True, False]  # bob reads only his own records before the change
    for k in range(1, statements + 1):
        injector.count = 0
        injector.fail_at = k
        with pytest.raises(StorageError) as caught:
            authz.apply_changes(ADDED, REMOVED, audit=AUDIT)
        assert caught.value.url == store.url
        after = state(authz, store)
        assert after[:2] + after[4:] == before, f"partial state after a fault at statement {k}"
        assert after[2] == audit_before, f"audit trail or anchors changed by a fault at statement {k}"
        assert after[3] == versions_before, f"versions changed by a fault at statement {k}"
        assert authz.audit.verify(raise_on_failure=True)
    injector.fail_at = None
    sealed = authz.apply_changes(ADDED, REMOVED, audit=AUDIT)  # the store is not wedged
    assert [r.domain for r in sealed] == ["acme", "华东"]
    anchors = store.read_audit().anchors
    assert [(anchors[r.domain].count, anchors[r.domain].head) for r in sealed] == [
        (r.sequence, r.hash) for r in sealed]
    assert authz.audit.verify(raise_on_failure=True)
    assert not authz.check("ann", "read", RECORD, domain="acme")
    assert authz.check("(bo,b)", "read", RECORD, domain="华东")
    return statements


@pytest.mark.parametrize("adapter", [SQLAdapter, CasbinRuleAdapter])
def test_every_fault_point_sqlite(tmp_path: Path, adapter: type[SQLAdapter]) -> None:
    store = adapter(f"sqlite:///{tmp_path / 'faults.db'}")
    statements = run_every_injection_point(store, Injector(store.engine))
    assert statements >= 6
    store.close()


@pytest.fixture
def pg_url() -> Iterator[str]:
    with postgres_schema() as url:
        yield url


@pytest.mark.postgres
@pytest.mark.parametrize("adapter", [SQLAdapter, CasbinRuleAdapter])
def test_every_fault_point_postgresql(pg_url: str, adapter: type[SQLAdapter]) -> None:
    store = adapter(pg_url)
    run_every_injection_point(store, Injector(store.engine))
    store.close()


@pytest.mark.postgres
def test_connection_killed_mid_transaction_postgresql(pg_url: str) -> None:
    """A real kill: pg_terminate_backend of the writing connection, at every statement."""
    store = SQLAdapter(pg_url)

    def terminate(conn: Any) -> None:
        pid = conn.connection.dbapi_connection.info.backend_pid
        with admin_connect() as admin:  # type: ignore[attr-defined]
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))

    statements = run_every_injection_point(store, Injector(store.engine, kill=terminate))
    assert statements >= 6
    store.close()


# -- a writer process that dies in the middle of its transaction -------------------------------

CRASH_POINTS = [
    pytest.param("INSERT INTO salesauthz_audit_anchors", id="records inserted, anchor not yet written"),
    pytest.param("COMMIT", id="at the commit"),
]


def crash_a_writer(url: str, marker: str) -> None:
    """A store with an anchored trail; a child process dies inside a change; the parent finds the
    rules, records and anchors as they were, verifying, and writes on."""
    store = SQLAdapter(url, audit_key=AuditKeyring())
    store.apply([("p4", "kept", "acme")], [], [AuditDraft(0.0, "root", "acme", "seed", "kept")])
    before = (sorted(store.load()), store.read_audit())
    store.close()
    child = multiprocessing.get_context("spawn").Process(target=crash_while_writing, args=(url, marker))
    child.start()
    child.join(timeout=120)
    assert child.exitcode == CRASH_EXIT  # it died where we wanted, not elsewhere
    again = SQLAdapter(url, audit_key=AuditKeyring())
    try:
        assert (sorted(again.load()), again.read_audit()) == before
        assert AuditTrail(again).verify(raise_on_failure=True)
        sealed = again.apply([], [], [AuditDraft(1.0, "root", "acme", "after", "crash")])
        assert sealed[0].sequence == 2
        assert AuditTrail(again).verify(raise_on_failure=True)
    finally:
        again.close()


@pytest.mark.parametrize("marker", CRASH_POINTS)
def test_writer_killed_mid_transaction_sqlite(tmp_path: Path, marker: str) -> None:
    crash_a_writer(f"sqlite:///{tmp_path / 'crash.db'}", marker)


@pytest.mark.postgres
@pytest.mark.parametrize("marker", CRASH_POINTS)
def test_writer_killed_mid_transaction_postgresql(pg_url: str, marker: str) -> None:
    crash_a_writer(pg_url, marker)
