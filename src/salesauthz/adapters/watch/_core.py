"""The watcher itself: threads and state, written against three small protocols — the
:class:`Follower` it keeps in step, the store's :class:`Versioned` capability, and a
:class:`Channel` (one per transport module) — never against a concrete authorizer or driver."""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import threading
import time
from collections.abc import Callable, Collection, Mapping
from typing import Protocol, runtime_checkable

from salesauthz.adapters.base import mask_url
from salesauthz.errors import PolicyError, StorageError

__all__ = ["Channel", "Deadlines", "Follower", "Incremental", "Versioned", "Watcher", "decode", "encode",
           "require_versioned", "snapshot_versions"]

logger = logging.getLogger("salesauthz.watch")


# -- what the watcher needs from others ----------------------------------------------------------


class Follower(Protocol):
    """What a watcher keeps in step with the store (an :class:`~salesauthz.Authorizer` is one).

    ``suspend`` is called from the staleness guard's thread and must not wait for the store: the
    guard's promise ("deny past the bound") is only as good as that.
    """

    def domains(self) -> list[str]:
        """The domains held now."""
        ...

    def reload(self, domains: Collection[str] | None = None) -> None:
        """Read ``domains`` (``None``: all) from the store again; a suspended domain that
        reloads is open again."""
        ...

    def suspend(self, domains: Collection[str]) -> None:
        """Deny every check in ``domains`` until they are reloaded."""
        ...


@runtime_checkable
class Incremental(Protocol):
    """An optional follower capability (an :class:`~salesauthz.Authorizer` has it): catch up with
    the store by applying its change log — what changed, not the whole domain. A watcher uses it
    instead of :meth:`Follower.reload` when the follower has it.

    A :class:`~salesauthz.errors.PolicyError` from it means a domain was refused (its stored
    rules break an invariant) and is closed: it denies, so it is not stale."""

    def catch_up(self, versions: Mapping[str, int], *, reopen: bool = False) -> None:
        """Bring each domain of ``versions`` to at least that store version; with ``reopen``,
        open every suspended domain afterwards."""
        ...


@runtime_checkable
class Versioned(Protocol):
    """The store capability a watcher needs (the SQL stores have it)."""

    def versions(self, domains: Collection[str] | None = None) -> dict[str, int]: ...

    def add_commit_listener(
        self, listener: Callable[[dict[str, int]], None]
    ) -> Callable[[], None]: ...


@runtime_checkable
class Deadlines(Protocol):
    """An optional store capability: every call this thread makes inside ``deadline(at)`` is
    done by ``at`` (``time.monotonic()``) or fails. Without it a hung store can delay recovery
    and, if the follower holds a lock across its reload, the guard."""

    def deadline(self, at: float) -> contextlib.AbstractContextManager[None]: ...


class Channel(Protocol):
    """One transport: a subscriber connection and a publisher. Every call returns or raises
    within the channel's own timeout, whatever the network does."""

    def connect(self) -> None:
        """(Re)open the subscriber connection and subscribe."""
        ...

    def receive(self, timeout: float) -> list[tuple[str, int]]:
        """The announcements that arrive within ``timeout`` seconds; raises when the
        subscriber is found dead (e.g. its last ping went unanswered past the timeout)."""
        ...

    def ping(self) -> None:
        """Start a health check of the subscriber (its answer is awaited by ``receive``, or
        here); raises if the connection is already known dead."""
        ...

    def reconnected(self) -> bool:
        """Whether the driver reconnected by itself since the last call (messages may be lost)."""
        ...

    def publish(self, domain: str, version: int) -> None: ...

    def close_subscriber(self) -> None: ...

    def close(self) -> None: ...


def require_versioned(store: object) -> Versioned:
    """``store``, if it keeps versions; else a :class:`StorageError` saying why it cannot be watched."""
    if not isinstance(store, Versioned):
        url = getattr(store, "url", type(store).__name__)
        raise StorageError(f"the store {url} keeps no versions, so it cannot be watched; "
                           "use a SQL store (sqlite:///…, postgresql://…)", url=str(url))
    return store


def snapshot_versions(store: object) -> dict[str, int]:
    """The store's versions, read *before* loading rules (so what is loaded is at least as new)."""
    return require_versioned(store).versions()


def encode(domain: str, version: int, origin: str) -> str:
    return json.dumps({"d": domain, "v": version, "o": origin}, ensure_ascii=False)


def decode(payload: str | bytes) -> tuple[str, int] | None:
    try:
        data = json.loads(payload)
        return str(data["d"]), int(data["v"])
    except (ValueError, KeyError, TypeError):
        logger.warning("salesauthz: ignoring a malformed change message %r", payload[:200])
        return None


# -- the watcher -------------------------------------------------------------------------------

_RESYNC = ("", -1)  # inbox marker: compare every version with the store now


class Watcher:
    """Keeps one :class:`Follower` in step with its store (see the package docstring).

    Four daemon threads, so that nothing one of them waits for can hold up another:

    * **listener** — the channel: receive announcements, ping with a deadline, reconnect;
    * **syncer** — the store: every ``heartbeat`` (and on each announcement of a version newer
      than the one held) read the versions and catch up with what moved (through the change
      log, with an :class:`Incremental` follower; by reloading those domains otherwise); resume
      after a suspension;
    * **guard** — suspends the follower when its rules have not been confirmed fresh for
      ``staleness`` seconds: all of them when the store has not answered for that long, or
      only the domains still behind the versions it announced. Its path takes two locks,
      neither ever held across I/O;
    * **publisher** — announces this process's own commits (off the writer's thread).

    Freshness is confirmed by the store, not the channel, and per domain: a version read that
    started at time ``t`` confirms as of ``t`` every domain whose version had not moved; a
    domain that had moved stays confirmed as of its previous confirmation until it has caught
    up (then it is fresh as of ``t`` too). So a dead channel slows propagation to heartbeat
    speed (logged) but suspends nothing while the store answers, and a slow catch-up of one
    domain never makes the others deny.

    Use :func:`~salesauthz.adapters.watch.start_watcher`; ``stop()`` ends the threads.
    """

    def __init__(self, follower: Follower, store: Versioned, channel: Channel, url: str, *,
                 staleness: float, heartbeat: float, timeout: float,
                 versions: dict[str, int]) -> None:
        if staleness <= 0 or heartbeat <= 0 or timeout <= 0:
            raise ValueError("staleness, heartbeat and timeout must be positive")
        self.url = mask_url(url)
        self.staleness = staleness
        self.heartbeat = heartbeat
        self.timeout = timeout
        self._follower = follower
        self._store = store
        self._channel = channel
        # A failed connection or store read is retried this often: recovery comes within one
        # heartbeat of the fault ending.
        self._retry = min(0.5, heartbeat / 2)
        # A reload must be over this long before the guard's deadline (a follower may hold a
        # lock the guard needs while it reloads).
        self._margin = min(0.25, staleness / 10)
        self._lock = threading.Lock()  # _known, _pending
        self._known = dict(versions)
        self._pending: set[str] = set()  # domains to reload (own commits that skipped a version)
        self._flags = threading.Lock()  # _confirmed, _suspended, _epoch, _behind, _closed, _held
        self._confirmed = time.monotonic()  # start of the last successful version read
        self._behind: dict[str, float] = {}  # domains still catching up -> when last confirmed
        self._closed: set[str] = set()  # domains the guard suspended one by one
        self._held: set[str] = set()  # the domains the guard suspended all at once
        self._suspended = False
        self._epoch = 0  # counts suspensions of everything
        self._suspending = threading.Lock()  # held by the guard while it suspends the follower
        self._incidents: dict[str, str] = {}
        self._incidents_lock = threading.Lock()
        self._stop = threading.Event()
        self._channel_up = threading.Event()
        self._inbox: queue.SimpleQueue[tuple[str, int]] = queue.SimpleQueue()
        self._outbox: queue.SimpleQueue[tuple[str, int]] = queue.SimpleQueue()
        self.reloads = 0  # statistics for tests and benchmarks
        self.suspensions = 0  # of everything (deny-all)
        self.domain_suspensions = 0  # of single domains that stayed behind
        self._remove_listener = store.add_commit_listener(self._committed)
        self._threads = [
            threading.Thread(target=target, name=f"salesauthz-{role} {self.url}", daemon=True)
            for role, target in (("listen", self._listen), ("sync", self._sync),
                                 ("staleness", self._guard), ("publish", self._publish_loop))
        ]

    # -- lifecycle -------------------------------------------------------------------------

    def start(self, wait: float | None = None) -> None:
        """Start the threads; with ``wait``, raise :class:`StorageError` unless the channel is
        up within that many seconds."""
        for thread in self._threads:
            thread.start()
        if wait is not None and not self._channel_up.wait(wait):
            self.stop()
            raise StorageError(f"cannot reach the change channel {self.url} "
                               f"(no connection within {wait:g} s)", url=self.url)

    def stop(self) -> None:
        self._remove_listener()
        self._stop.set()
        self._inbox.put(_RESYNC)  # wake the syncer
        for thread in self._threads:
            if thread.is_alive() and threading.current_thread() is not thread:
                thread.join(timeout=5.0)
        self._channel_up.clear()
        self._channel.close()

    @property
    def healthy(self) -> bool:
        """The channel is up and the rules are not suspended."""
        return self._channel_up.is_set() and not self._suspended

    @property
    def suspended(self) -> bool:
        return self._suspended

    # -- publishing (the listener runs in the writer's thread, right after its commit) -------

    def _committed(self, versions: dict[str, int]) -> None:
        gap = False
        with self._lock:
            for domain, version in versions.items():
                # Our own change is applied in memory by the follower right after this; if the
                # store skipped a version, someone else's change is missing too: reload it.
                if self._known.get(domain, 0) == version - 1:
                    self._known[domain] = version
                else:
                    self._pending.add(domain)
                    gap = True
        if gap:
            self._inbox.put(_RESYNC)
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
                # The change is committed; peers still catch it at their next heartbeat.
                self._incident("publish", f"cannot publish to {self.url}: {exc}")
            else:
                self._recovered("publish", f"publishing to {self.url} works again")

    # -- listener: the channel ---------------------------------------------------------------

    def _listen(self) -> None:
        next_ping = 0.0
        while not self._stop.is_set():
            if not self._channel_up.is_set():
                try:
                    self._channel.connect()
                except Exception as exc:
                    self._incident("channel", f"cannot reach the change channel {self.url}: {exc}")
                    self._stop.wait(self._retry)
                    continue
                self._channel_up.set()
                self._inbox.put(_RESYNC)  # announcements may have been missed meanwhile
                self._recovered("channel", f"change channel {self.url} connected again")
                next_ping = time.monotonic() + self.heartbeat
            try:
                for announced in self._channel.receive(min(0.2, self.heartbeat)):
                    self._inbox.put(announced)
                if self._channel.reconnected():
                    self._inbox.put(_RESYNC)
                if time.monotonic() >= next_ping:
                    self._channel.ping()
                    next_ping = time.monotonic() + self.heartbeat
            except Exception as exc:
                if self._stop.is_set():
                    break
                self._channel_up.clear()
                self._incident("channel", f"change channel {self.url} lost: {exc}")
                with contextlib.suppress(Exception):
                    self._channel.close_subscriber()

    # -- syncer: the store -------------------------------------------------------------------

    def _sync(self) -> None:
        next_beat = time.monotonic()  # the rules were loaded a moment ago: confirm them now
        while not self._stop.is_set():
            try:
                items = [self._inbox.get(timeout=max(0.0, next_beat - time.monotonic()))]
            except queue.Empty:
                items = []
            while True:
                try:
                    items.append(self._inbox.get_nowait())
                except queue.Empty:
                    break
            if self._stop.is_set():
                break
            with self._lock:
                newer = any(item == _RESYNC or item[1] > self._known.get(item[0], 0) for item in items)
            if newer or time.monotonic() >= next_beat:
                if self._catch_up_safely():
                    # After a slow reload, confirm again before the guard would act.
                    next_beat = min(time.monotonic() + self.heartbeat,
                                    self._confirmed + self.staleness / 2)
                else:
                    next_beat = time.monotonic() + self._retry

    def _catch_up_safely(self) -> bool:
        try:
            return self._catch_up()
        except Exception:  # a follower's bug must not end the thread that keeps it fresh
            logger.exception("salesauthz: catching up with the store failed")
            return False

    def _catch_up(self) -> bool:
        """Compare every version with the store and catch up with what moved; ``True`` if the
        rules are now confirmed fresh as of the moment this started."""
        started = time.monotonic()
        try:
            with self._store_deadline(started + self.timeout):
                current = self._store.versions()
        except Exception as exc:
            self._incident("store", f"cannot read the versions from the store: {exc}")
            return False
        with self._flags:
            suspended, epoch = self._suspended, self._epoch
        if suspended:
            return self._resume(started, current)
        with self._lock:
            moved = sorted({d for d, v in current.items() if v != self._known.get(d, 0)} | self._pending)
            self._pending.clear()
        with self._flags:
            if self._epoch != epoch:
                return False  # suspended meanwhile: the next catch-up resumes
            # What did not move is fresh as of `started`; what moved, as of its last confirmation.
            for domain in moved:
                self._behind.setdefault(domain, self._confirmed)
            self._confirmed = started
            due = [self._behind[d] for d in moved if d not in self._closed]
        # Done before the guard would close a domain still behind (see _margin), and in any case
        # before it would close everything: a hung store cannot keep this thread from confirming.
        deadline = min([started, *due]) + self.staleness - self._margin
        caught_up = self._reload(moved, current, epoch, deadline) if moved else []
        with self._flags:
            if self._epoch != epoch:
                return False  # suspended meanwhile: the next catch-up resumes
            for domain in caught_up:
                self._behind.pop(domain, None)
            # A domain closed one by one opens again once it is fresh as of a read that is
            # itself within the bound (not after a catch-up that outlived it: the next one).
            reopen: list[str] = []
            if time.monotonic() - started < self.staleness - self._margin:
                reopen = sorted(d for d in self._closed if d not in self._behind)
                self._closed.difference_update(reopen)
        if reopen:
            self._reopen(reopen, current)
        if len(caught_up) < len(moved):
            return False
        self._recovered("store", "the store answers again")
        return True

    def _reopen(self, domains: list[str], versions: dict[str, int]) -> None:
        """Open domains the guard closed one by one, now caught up (fresh as of the read)."""
        try:
            if isinstance(self._follower, Incremental):
                self._follower.catch_up({d: versions.get(d, 0) for d in domains}, reopen=True)
            else:
                self._follower.reload(domains)
        except PolicyError as exc:
            self._refused(exc)
        except Exception as exc:
            with self._flags:
                self._closed.update(domains)
            with self._lock:
                self._pending.update(domains)  # retried at the next catch-up
            self._incident("store", f"cannot reopen {len(domains)} domain(s): {exc}")
            return
        logger.warning("salesauthz: domain(s) %s caught up with the store; checks there resumed",
                       ", ".join(repr(d) for d in domains))

    def _reload(self, domains: list[str], versions: dict[str, int], epoch: int,
                deadline: float) -> list[str]:
        """Catch up with ``domains`` (an :class:`Incremental` follower one domain at a time, so
        that one that fails holds back no other); the domains now caught up."""
        batches = [[d] for d in domains] if isinstance(self._follower, Incremental) else [domains]
        done: list[str] = []
        failed: list[str] = []
        problem: Exception | None = None
        for batch in batches:
            try:
                with self._store_deadline(deadline):
                    if isinstance(self._follower, Incremental):
                        self._follower.catch_up({d: versions.get(d, 0) for d in batch})
                    else:
                        self._follower.reload(batch)
            except PolicyError as exc:
                self._refused(exc)  # those domains are closed: denying is not being stale
            except Exception as exc:
                failed += batch
                problem = exc
                continue
            done += batch
        if failed:
            with self._lock:
                self._pending.update(failed)
            self._incident("store", f"cannot catch up with {len(failed)} domain(s) from the store: {problem}")
        if not done:
            return []
        self.reloads += 1
        with self._lock:
            for domain in done:
                self._known[domain] = max(self._known.get(domain, 0), versions.get(domain, 0))
        with self._flags:
            closed_meanwhile = self._epoch != epoch
        if closed_meanwhile:
            # The guard suspended everything while this ran; a reload may have reopened these.
            with self._suspending:
                self._follower.suspend(done)
            return []
        return done

    def _resume(self, started: float, versions: dict[str, int]) -> bool:
        with self._suspending:
            pass  # a suspension still being applied is complete: what reloads now stays open
        with self._flags:
            closed = self._held | self._closed
        try:
            # What is reloaded is fresh as of `started`; it may be served until started + bound.
            with self._store_deadline(started + self.staleness - self._margin):
                if isinstance(self._follower, Incremental):
                    self._follower.catch_up({d: versions.get(d, 0) for d in closed | set(versions)},
                                            reopen=True)
                else:
                    self._follower.reload()
        except PolicyError as exc:
            self._refused(exc)
        except Exception as exc:
            self._incident("store", f"cannot reload the rules from the store: {exc}")
            return False
        self.reloads += 1
        with self._lock:
            self._known.update(versions)
            self._pending.clear()
        with self._flags:
            self._confirmed = started
            self._suspended = False
            self._behind.clear()
            self._closed.clear()
            self._held.clear()
        logger.warning("salesauthz: rules reloaded from the store; checks resumed")
        self._recovered("store", "the store answers again")
        return True

    def _store_deadline(self, at: float) -> contextlib.AbstractContextManager[None]:
        if isinstance(self._store, Deadlines):
            return self._store.deadline(at)
        return contextlib.nullcontext()

    # -- guard: the staleness bound ----------------------------------------------------------

    def _guard(self) -> None:
        while not self._stop.wait(min(0.05, self.heartbeat / 2)):
            try:
                self._check_staleness()
            except Exception:  # retried at the next tick: the guard thread must never end
                logger.exception("salesauthz: the staleness guard could not suspend the rules")

    def _check_staleness(self) -> None:
        with self._flags:
            now = time.monotonic()
            overdue = now - self._confirmed
            if self._suspended:
                return
            if overdue <= self.staleness:
                late = sorted(d for d, since in self._behind.items()
                              if now - since > self.staleness and d not in self._closed)
                if not late:
                    return
                self._closed.update(late)
                self.domain_suspensions += 1
            else:
                late = []
                self._suspended = True
                self._epoch += 1
                self.suspensions += 1
        if late:
            self._suspend_behind(late)
            return
        try:
            with self._suspending:
                domains = self._follower.domains()
                self._follower.suspend(domains)
            with self._flags:
                self._held.update(domains)
        except BaseException:
            with self._flags:
                self._suspended = False  # not suspended after all: try again
            raise
        logger.error("salesauthz: rules not confirmed fresh for %.1f s (bound %.1f s) via %s: "
                     "denying every check in %d domain(s) until the store is reachable again",
                     overdue, self.staleness, self.url, len(domains))

    def _suspend_behind(self, domains: list[str]) -> None:
        """The store answers, but these domains have not caught up with the versions it gave
        within the bound: close just them."""
        try:
            with self._suspending:
                self._follower.suspend(domains)
        except BaseException:
            with self._flags:
                self._closed.difference_update(domains)  # not suspended after all: try again
            raise
        logger.error("salesauthz: domain(s) %s not caught up with the store within %.1f s via %s: "
                     "denying every check there until they are", ", ".join(repr(d) for d in domains),
                     self.staleness, self.url)

    # -- logging -----------------------------------------------------------------------------

    def _refused(self, error: PolicyError) -> None:
        # The follower has logged the rows (at each load); say once that the watcher goes on.
        self._incident("refused", f"the store holds rules that break an invariant; the domains "
                       f"concerned stay closed until they are repaired ({len(error.issues)} problem(s))")

    def _incident(self, kind: str, message: str) -> None:
        # Once per incident, not once per retry.
        with self._incidents_lock:
            if kind in self._incidents:
                return
            self._incidents[kind] = message
        logger.error("salesauthz: %s", message)

    def _recovered(self, kind: str, message: str) -> None:
        with self._incidents_lock:
            if self._incidents.pop(kind, None) is None:
                return
        logger.warning("salesauthz: %s", message)
