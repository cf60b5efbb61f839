"""PostgreSQL ``LISTEN``/``NOTIFY`` as a change channel (``postgresql://…``).

psycopg has no read timeout: a query on a half-open connection waits until TCP gives up (about
15 minutes by Linux defaults), and a listening connection that died just stays quiet. So every
call here runs under a deadline — the shared watchdog shuts the socket down when it passes, and
psycopg then fails with "server closed the connection" — and opening a connection is abandoned
at the deadline (libpq's own ``connect_timeout`` cannot go below 2 s). :meth:`PostgresChannel.ping`
is a ``SELECT 1`` on the listening connection. TCP keepalives (libpq defaults of
:data:`~salesauthz.adapters.sql.LIBPQ_DEFAULTS`) are set unless the URL sets its own.
"""

from __future__ import annotations

import math
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

from salesauthz.adapters._deadline import call_before, shutdown_socket, watchdog
from salesauthz.adapters.sql import LIBPQ_DEFAULTS

from ._core import decode, encode, logger

__all__ = ["PostgresChannel"]

T = TypeVar("T")


class PostgresChannel:
    """``LISTEN``/``NOTIFY`` on one channel, over two connections of its own (autocommit): one
    listens, one publishes. ``timeout`` (seconds) bounds every call."""

    def __init__(self, url: str, channel: str, *, timeout: float) -> None:
        from psycopg.conninfo import conninfo_to_dict, make_conninfo

        self._name = channel
        self._timeout = timeout
        self._origin = uuid.uuid4().hex
        given = conninfo_to_dict(url)
        defaults = {key: value for key, value in LIBPQ_DEFAULTS.items() if key not in given}
        if "connect_timeout" not in given:
            defaults["connect_timeout"] = str(max(2, math.ceil(timeout)))
        self._conninfo = make_conninfo(url, **defaults)
        self._listener: Any = None
        self._publisher: Any = None
        self._publisher_lock = threading.Lock()

    def _connect(self) -> Any:
        import psycopg

        return call_before(time.monotonic() + self._timeout,
                           lambda: psycopg.connect(self._conninfo, autocommit=True),
                           lambda late: late.close())

    def _bounded(self, connection: Any, call: Callable[[], T]) -> T:
        """``call()`` on ``connection``, which is given up if no answer comes within the timeout."""
        with watchdog.guard(time.monotonic() + self._timeout,
                            lambda: shutdown_socket(connection.fileno())):
            return call()

    def connect(self) -> None:
        from psycopg import sql

        self.close_subscriber()
        listener = self._listener = self._connect()
        self._bounded(listener, lambda: listener.execute(
            sql.SQL("LISTEN {}").format(sql.Identifier(self._name))))

    def receive(self, timeout: float) -> list[tuple[str, int]]:
        found: list[tuple[str, int]] = []
        # Wake on the first notification, then drain whatever else is already queued.
        notifies = list(self._listener.notifies(timeout=timeout, stop_after=1))
        while notifies:
            for notify in notifies:
                decoded = decode(notify.payload)
                if decoded is not None:
                    found.append(decoded)
            notifies = list(self._listener.notifies(timeout=0.001, stop_after=1))
        return found

    def ping(self) -> None:
        listener = self._listener
        self._bounded(listener, lambda: listener.execute("SELECT 1"))

    def reconnected(self) -> bool:
        return False  # psycopg never reconnects behind our back

    def publish(self, domain: str, version: int) -> None:
        payload = encode(domain, version, self._origin)
        with self._publisher_lock:
            for attempt in (1, 2):
                try:
                    if self._publisher is None or self._publisher.closed:
                        self._publisher = self._connect()
                    self._notify(self._publisher, payload)
                    return
                except Exception:
                    self._close(self._publisher)
                    self._publisher = None
                    if attempt == 2:
                        raise

    def _notify(self, publisher: Any, payload: str) -> None:
        self._bounded(publisher, lambda: publisher.execute("SELECT pg_notify(%s, %s)", (self._name, payload)))

    @staticmethod
    def _close(connection: Any) -> None:
        if connection is not None:
            try:
                connection.close()
            except Exception:  # pragma: no cover - closing a broken connection
                logger.debug("salesauthz: error closing a PostgreSQL connection", exc_info=True)

    def close_subscriber(self) -> None:
        self._close(self._listener)
        self._listener = None

    def close(self) -> None:
        self.close_subscriber()
        with self._publisher_lock:
            self._close(self._publisher)
            self._publisher = None
