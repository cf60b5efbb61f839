"""Child processes of the audit tests (started with multiprocessing's spawn): writers appending
to one store at once, and a writer that dies in the middle of its transaction."""

from __future__ import annotations

import os
from typing import Any

from sqlalchemy import event

from salesauthz._audit_chain import AuditDraft, AuditKeyring
from salesauthz.adapters import open_adapter


def append_records(url: str, domain: str, name: str, count: int, key: str | None, barrier: Any) -> None:
    """Open the store, wait for the other writers, then append ``count`` audited changes."""
    store = open_adapter(url, audit_key=key if key is not None else AuditKeyring())
    try:
        barrier.wait(timeout=60)
        for n in range(count):
            rule = ("p4", f"{name}-{n}", domain)
            store.apply([rule], [], [AuditDraft(1_900_000_000.0, name, domain, "grant", f"{name}-{n}",
                                                added=(rule,))])
    finally:
        store.close()


CRASH_EXIT = 17


def crash_while_writing(url: str, marker: str) -> None:
    """Start an audited change and kill this process (no rollback, no cleanup, like SIGKILL) just
    before the first write statement mentioning ``marker``, or at the commit when ``marker`` is
    ``"COMMIT"``."""
    from salesauthz.adapters.sql import SQLAdapter

    store = open_adapter(url, audit_key=AuditKeyring())
    assert isinstance(store, SQLAdapter)

    def before_statement(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if conn.get_execution_options().get("salesauthz_write") and marker in statement:
            os._exit(CRASH_EXIT)

    def before_commit(conn: Any) -> None:
        if conn.get_execution_options().get("salesauthz_write") and marker == "COMMIT":
            os._exit(CRASH_EXIT)

    event.listen(store.engine, "before_cursor_execute", before_statement)
    event.listen(store.engine, "commit", before_commit)
    rule = ("p4", "never", "acme")
    store.apply([rule], [], [AuditDraft(1_900_000_000.0, "crash", "acme", "grant", "never", added=(rule,)),
                             AuditDraft(1_900_000_000.0, "crash", "acme", "grant", "never again")])
    raise AssertionError("the process should have died inside apply()")
