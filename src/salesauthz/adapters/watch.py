"""Change watchers: tell the other app processes that a domain changed, so they reload just it.

A committed change publishes ``(domain, version)`` — through Redis pub/sub (``redis://…``) or
PostgreSQL ``LISTEN``/``NOTIFY`` (``postgresql://…``). Every process runs one daemon thread that
listens, and reloads a domain when a version newer than the one it holds is announced.

What a process guarantees (see docs/adapters.md):

* **No silent staleness.** Every ``heartbeat`` seconds the thread pings its channel connection and
  reads the store's per-domain versions; a domain whose version moved without a message (a lost
  publish) is reloaded then. After a lost connection it reconnects, re-subscribes, and reloads
  every domain whose version changed meanwhile (the versions are compared, not guessed).
* **Fail closed past the bound.** If the process has not confirmed its rules fresh (channel
  healthy *and* store readable) for ``staleness`` seconds, it suspends every loaded domain
  (:meth:`Authorizer.suspend`: every check there denies, logged once) until it can reload them.

The publishing side is a commit listener on the store (``add_commit_listener``): the SQL stores
call it after each commit with ``{domain: version}``.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import threading
import time
import uuid
from collections.abc import Callable, Collection
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from salesauthz.errors import StorageError

from .base import mask_url

if TYPE_CHECKING:
    from salesauthz.authorizer import Authorizer

__all__ = ["Versioned", "Watcher", "snapshot_versions", "start_watcher"]

logger = logging.getLogger("salesauthz.watch")

DEFAULT_STALENESS = 5.0
DEFAULT_CHANNEL = "salesauthz"


@runtime_checkable
class Versioned(Protocol):
    """The optional store capability a watcher needs (the SQL stores have it)."""

    def versions(self, domains: Collection[str] | None = None) -> dict[str, int]: ...

    def add_commit_listener(
        self, listener: Callable[[dict[str, int]], None]
    ) -> Callable[[], None]: ...


def snapshot_versions(store: object) -> dict[str, int]:
    """The store's versions, read *before* loading rules (so what is loaded is at least as new)."""
    if not isinstance(store, Versioned):
        url = getattr(store, "url", type(store).__name__)
        raise StorageError(f"the store {url} keeps no versions, so it cannot be watched; "
                           "use a SQL store (sqlite:///…, postgresql://…)", url=str(url))
    return store.versions()


class _Channel(Protocol):
    """One transport: a subscriber connection and a publisher."""

    def connect(self) -> None: ...
    def receive(self, timeout: float) -> list[tuple[str, int]]: ...
    def ping(self) -> None: ...
    def reconnected(self) -> bool: ...
    def publish(self, domain: str, version: int) -> None: ...
    def close(self) -> None: ...


class Watcher:
    """Keeps one :class:`Authorizer` in step with its store (see the module docstring).

    Use :func:`start_watcher`; ``stop()`` (also run by ``Authorizer.close()``) ends the thread.
    """

    def __init__(self, authz: Authorizer, channel: _Channel, url: str, *, staleness: float,
                 heartbeat: float, versions: dict[str, int]) -> None:
        if staleness <= 0 or heartbeat <= 0:
            raise ValueError("staleness and heartbeat must be positive")
        store = authz.store
        if not isinstance(store, Versioned):
            snapshot_versions(store)  # raises the explanatory StorageError
            raise AssertionError  # pragma: no cover - snapshot_versions raised for this store
        self.url = mask_url(url)
        self.staleness = staleness
        self.heartbeat = heartbeat
        self._authz = authz
        self._store: Versioned = store
        self._channel = channel
        self._known = dict(versions)
        self._lock = threading.Lock()
        self._pending: set[str] = set()  # domains to reload (own commits that skipped a version)
        self._stop = threading.Event()
        self._connected = threading.Event()
        self._confirmed = time.monotonic()
        self._suspended = False
        self._incident: str | None = None
        self._state_lock = threading.RLock()  # suspend / resume
        self.reloads = 0  # statistics for tests and benchmarks
        self._remove_listener = self._store.add_commit_listener(self._committed)
        self._thread = threading.Thread(target=self._run, name=f"salesauthz-watch {self.url}",
                                        daemon=True)
        # A second thread enforces the bound, so a blocked network call cannot delay it.
        self._guard = threading.Thread(target=self._guard_staleness,
                                       name=f"salesauthz-staleness {self.url}", daemon=True)
        # Publishing happens off the writer's thread: a slow or dead channel must not stall
        # (or fail) a change that has already committed.
        self._outbox: queue.SimpleQueue[tuple[str, int]] = queue.SimpleQueue()
        self._publisher = threading.Thread(target=self._publish_loop,
                                           name=f"salesauthz-publish {self.url}", daemon=True)

    # -- lifecycle -------------------------------------------------------------------------

    def start(self, wait: float | None = None) -> None:
        """Start the thread; with ``wait``, raise :class:`StorageError` unless the channel is up
        within that many seconds."""
        self._thread.start()
        self._guard.start()
        self._publisher.start()
        if wait is not None and not self._connected.wait(wait):
            self.stop()
            raise StorageError(f"cannot reach the change channel {self.url} "
                               f"(no connection within {wait:g} s)", url=self.url)

    def stop(self) -> None:
        self._remove_listener()
        self._stop.set()
        for thread in (self._thread, self._guard, self._publisher):
            if thread.is_alive() and threading.current_thread() is not thread:
                thread.join(timeout=5.0)
        self._connected.clear()
        self._channel.close()

    @property
    def healthy(self) -> bool:
        return self._connected.is_set() and not self._suspended

    @property
    def suspended(self) -> bool:
        return self._suspended

    # -- publishing (the listener runs in the writer's thread, right after its commit) -------

    def _committed(self, versions: dict[str, int]) -> None:
        with self._lock:
            for domain, version in versions.items():
                # Our own change is applied in memory by the Authorizer right after this; if the
                # store skipped a version, someone else's change is missing too: reload it.
                if self._known.get(domain, 0) == version - 1:
                    self._known[domain] = version
                else:
                    self._pending.add(domain)
        for item in versions.items():
            self._outbox.put(item)

    def _publish_loop(self) -> None:
        while not self._stop.is_set():
            try:
                domain, version = self._outbox.get(timeout=0.1)
            except queue.Empty:
                continue
            try:
                self._channel.publish(domain, version)
            except Exception as exc:
                # The change is committed; peers still catch it at their next heartbeat poll.
                self._report(f"cannot publish to {self.url}: {exc}")

    # -- the thread ------------------------------------------------------------------------

    def _run(self) -> None:
        next_beat = 0.0
        while not self._stop.is_set():
            try:
                if not self._connected.is_set():
                    self._channel.connect()
                    self._connected.set()
                    self._catch_up()
                    next_beat = time.monotonic() + self.heartbeat
                announced = self._channel.receive(min(0.2, self.heartbeat))
                if self._channel.reconnected():
                    self._catch_up()  # the client reconnected by itself: messages may be lost
                self._apply_announcements(announced)
                if time.monotonic() >= next_beat:
                    self._channel.ping()
                    self._catch_up()
                    next_beat = time.monotonic() + self.heartbeat
            except Exception as exc:
                if self._stop.is_set():
                    break
                self._connected.clear()
                self._report(f"change channel {self.url} lost: {exc}")
                self._stop.wait(min(0.5, self.heartbeat))

    def _guard_staleness(self) -> None:
        while not self._stop.wait(min(0.05, self.heartbeat / 2)):
            self._check_staleness()

    def _apply_announcements(self, announced: list[tuple[str, int]]) -> None:
        with self._lock:
            stale = {d for d, v in announced if v > self._known.get(d, 0)} | self._pending
            self._pending.clear()
        if stale:
            with self._state_lock:  # never repopulate domains the guard has just suspended
                if not self._suspended:
                    self._reload(sorted(stale))

    def _catch_up(self) -> None:
        """Compare versions with the store; reload what moved. Success confirms freshness."""
        current = self._store.versions()
        with self._lock:
            moved = {d for d, v in current.items() if v != self._known.get(d, 0)} | self._pending
            self._pending.clear()
        with self._state_lock:
            if self._suspended:
                self._resume()
            elif moved:
                self._reload(sorted(moved), current)
            self._confirmed = time.monotonic()
        if self._incident is not None:
            logger.warning("salesauthz: change channel %s healthy again", self.url)
            self._incident = None

    def _reload(self, domains: list[str], versions: dict[str, int] | None = None) -> None:
        if versions is None:
            versions = self._store.versions(domains)
        self._authz.reload(domains)
        self.reloads += 1
        with self._lock:
            for domain in domains:
                self._known[domain] = max(self._known.get(domain, 0), versions.get(domain, 0))

    def _resume(self) -> None:
        versions = self._store.versions()
        self._authz.reload()
        self.reloads += 1
        with self._lock:
            self._known.update(versions)
        self._suspended = False
        logger.warning("salesauthz: rules reloaded from the store; checks resumed")

    def _check_staleness(self) -> None:
        with self._state_lock:
            if self._suspended or time.monotonic() - self._confirmed <= self.staleness:
                return
            self._suspended = True
            domains = self._authz.domains()
            self._authz.suspend(domains)
        logger.error("salesauthz: rules not confirmed fresh for %.1f s (bound %.1f s) via %s: "
                     "denying every check in %d domain(s) until the store is reachable again",
                     time.monotonic() - self._confirmed, self.staleness, self.url, len(domains))

    def _report(self, message: str) -> None:
        # Once per incident, not once per retry.
        if self._incident is None:
            logger.error("salesauthz: %s", message)
            self._incident = message


# -- transports -------------------------------------------------------------------------------


def _encode(domain: str, version: int, origin: str) -> str:
    return json.dumps({"d": domain, "v": version, "o": origin}, ensure_ascii=False)


def _decode(payload: str | bytes) -> tuple[str, int] | None:
    try:
        data = json.loads(payload)
        return str(data["d"]), int(data["v"])
    except (ValueError, KeyError, TypeError):
        logger.warning("salesauthz: ignoring a malformed change message %r", payload[:200])
        return None


class RedisChannel:
    """Redis pub/sub on one channel."""

    def __init__(self, url: str, channel: str) -> None:
        import redis

        self._redis = redis
        self._url = url
        self._name = channel
        self._origin = uuid.uuid4().hex
        self._client: Any = None
        self._pubsub: Any = None
        self._reconnected = False
        self._publisher_lock = threading.Lock()
        self._publisher: Any = redis.Redis.from_url(url, socket_timeout=2.0, socket_connect_timeout=2.0)

    def connect(self) -> None:
        self.close_subscriber()
        outer = self

        class _PubSub(self._redis.client.PubSub):  # type: ignore[name-defined,misc]  # redis is a lazily imported optional extra: its class is known only at run time
            def on_connect(self, connection: Any) -> None:
                outer._reconnected = True
                super().on_connect(connection)

        # Named, so an operator (or a test) can find and kill this connection in CLIENT LIST.
        self._client = self._redis.Redis.from_url(self._url, socket_timeout=2.0,
                                                  socket_connect_timeout=2.0,
                                                  client_name=f"salesauthz-watch:{self._name}")
        self._pubsub = _PubSub(self._client.connection_pool, ignore_subscribe_messages=True)
        self._pubsub.subscribe(self._name)
        self._reconnected = False

    def receive(self, timeout: float) -> list[tuple[str, int]]:
        found: list[tuple[str, int]] = []
        message = self._pubsub.get_message(timeout=timeout)
        while message is not None:
            if message.get("type") == "message":
                decoded = _decode(message["data"])
                if decoded is not None:
                    found.append(decoded)
            message = self._pubsub.get_message(timeout=0.0)
        return found

    def ping(self) -> None:
        self._pubsub.ping()

    def reconnected(self) -> bool:
        flag, self._reconnected = self._reconnected, False
        return flag

    def publish(self, domain: str, version: int) -> None:
        with self._publisher_lock:
            self._publisher.publish(self._name, _encode(domain, version, self._origin))

    def close_subscriber(self) -> None:
        if self._pubsub is not None:
            try:
                self._pubsub.close()
                self._client.close()
            except Exception:  # pragma: no cover - closing a broken connection
                logger.debug("salesauthz: error closing a Redis subscriber", exc_info=True)
            self._pubsub = self._client = None

    def close(self) -> None:
        self.close_subscriber()
        self._publisher.close()


class PostgresChannel:
    """PostgreSQL ``LISTEN``/``NOTIFY`` on one channel (its own connections, autocommit)."""

    def __init__(self, url: str, channel: str) -> None:
        self._url = url
        self._name = channel
        self._origin = uuid.uuid4().hex
        self._listener: Any = None
        self._publisher: Any = None
        self._publisher_lock = threading.Lock()

    def _connect(self) -> Any:
        import psycopg

        return psycopg.connect(self._url, autocommit=True, connect_timeout=2)

    def connect(self) -> None:
        from psycopg import sql

        self.close_listener()
        self._listener = self._connect()
        self._listener.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self._name)))

    @property
    def backend_pid(self) -> int | None:
        """The listening connection's server process (tests terminate it)."""
        return None if self._listener is None else int(self._listener.info.backend_pid)

    def receive(self, timeout: float) -> list[tuple[str, int]]:
        found: list[tuple[str, int]] = []
        # Wake on the first notification, then drain whatever else is already queued.
        notifies = list(self._listener.notifies(timeout=timeout, stop_after=1))
        while notifies:
            for notify in notifies:
                decoded = _decode(notify.payload)
                if decoded is not None:
                    found.append(decoded)
            notifies = list(self._listener.notifies(timeout=0.001, stop_after=1))
        return found

    def ping(self) -> None:
        self._listener.execute("SELECT 1")

    def reconnected(self) -> bool:
        return False  # psycopg never reconnects behind our back

    def publish(self, domain: str, version: int) -> None:
        payload = _encode(domain, version, self._origin)
        with self._publisher_lock:
            for attempt in (1, 2):
                try:
                    if self._publisher is None or self._publisher.closed:
                        self._publisher = self._connect()
                    self._publisher.execute("SELECT pg_notify(%s, %s)", (self._name, payload))
                    return
                except Exception:
                    self._publisher = None
                    if attempt == 2:
                        raise

    def close_listener(self) -> None:
        if self._listener is not None:
            try:
                self._listener.close()
            except Exception:  # pragma: no cover - closing a broken connection
                logger.debug("salesauthz: error closing a LISTEN connection", exc_info=True)
            self._listener = None

    def close(self) -> None:
        self.close_listener()
        with self._publisher_lock:
            if self._publisher is not None:
                self._publisher.close()
                self._publisher = None


def _split_options(url: str) -> tuple[str, dict[str, str]]:
    """Take salesauthz's own query parameters (channel, staleness, heartbeat) out of a URL."""
    parts = urlsplit(url)
    ours, theirs = {}, []
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key in ("channel", "staleness", "heartbeat"):
            ours[key] = value
        else:
            theirs.append((key, value))
    return urlunsplit(parts._replace(query=urlencode(theirs))), ours


def start_watcher(
    authz: Authorizer,
    url: str,
    *,
    staleness: float | None = None,
    heartbeat: float | None = None,
    channel: str | None = None,
    versions: dict[str, int] | None = None,
    connect_timeout: float = 5.0,
) -> Watcher:
    """Follow the changes other processes make to ``authz``'s store, announced through ``url``:
    ``redis://host:6379/0`` or ``postgresql://host/db``.

    ``staleness`` (seconds, default 5; or ``?staleness=`` in the URL) bounds how long the process
    may go without confirming its rules fresh before it fails closed; ``heartbeat`` (default a
    quarter of it, at most 1 s) is how often it confirms. ``versions`` are the store's versions
    read before ``authz`` loaded (default: read now). The watcher stops with ``authz.close()``.
    Raises :class:`StorageError` if the channel cannot be reached within ``connect_timeout``.
    """
    target, options = _split_options(url)
    name = channel or options.get("channel") or os.environ.get("SALESAUTHZ_CHANNEL", DEFAULT_CHANNEL)
    bound = staleness if staleness is not None else float(options.get("staleness", DEFAULT_STALENESS))
    beat = heartbeat if heartbeat is not None else float(options.get("heartbeat", min(1.0, bound / 4)))
    if versions is None:
        versions = snapshot_versions(authz.store)
    transport: _Channel
    if target.startswith(("redis://", "rediss://", "unix://")):
        transport = RedisChannel(target, name)
    elif target.startswith(("postgresql://", "postgres://", "postgresql+psycopg://")):
        transport = PostgresChannel(target.replace("postgresql+psycopg://", "postgresql://", 1), name)
    else:
        raise StorageError(f"no watcher for {mask_url(url)!r} (expected redis://… or postgresql://…)",
                           url=mask_url(url))
    watcher = Watcher(authz, transport, url, staleness=bound, heartbeat=beat, versions=versions)
    watcher.start(wait=connect_timeout)
    authz.add_closer(watcher.stop)
    return watcher
