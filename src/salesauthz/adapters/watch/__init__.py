"""Change watchers: tell the other app processes that a domain changed, so they catch up with it.

A committed change publishes ``(domain, version)`` — through Redis pub/sub (``redis://…``,
:mod:`.redis_channel`) or PostgreSQL ``LISTEN``/``NOTIFY`` (``postgresql://…``,
:mod:`.postgres_channel`). Every process runs a :class:`Watcher` (:mod:`._core`) that, when a
version newer than the one it holds is announced, has its follower apply the store's change log
for that domain (an :class:`Incremental` follower, such as the Authorizer) or reload the domain.

What a process guarantees (measured figures in docs/adapters.md):

* **No silent staleness.** Every ``heartbeat`` seconds it reads the store's per-domain versions
  and reloads whatever moved without a message (a lost publish, a write made outside salesauthz,
  which the store's triggers turn into version bumps). A dead channel connection is found by a
  ping whose answer must come within ``timeout``, and replaced.
* **Fail closed past the bound.** If a domain has not been confirmed fresh by the store for
  ``staleness`` seconds, it is suspended (every check there denies, logged once) until it has
  caught up: every loaded domain when the store does not answer, a single domain when it is the
  one left behind. The guard that does this never waits for a lock held across I/O, and every
  store and channel call has a deadline, so a store that hangs — even in the middle of a
  catch-up — cannot hold it up.

The publishing side is a commit listener on the store (``add_commit_listener``): the SQL stores
call it after each commit with ``{domain: version}``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Protocol
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from salesauthz.adapters.base import mask_url
from salesauthz.errors import StorageError

from ._core import (
    Channel,
    Deadlines,
    Follower,
    Incremental,
    Versioned,
    Watcher,
    require_versioned,
    snapshot_versions,
)

__all__ = ["Deadlines", "Follower", "Incremental", "Versioned", "WatchedFollower", "Watcher",
           "snapshot_versions", "start_watcher"]

DEFAULT_STALENESS = 5.0
DEFAULT_CHANNEL = "salesauthz"
_OPTIONS = ("channel", "staleness", "heartbeat", "timeout")


class WatchedFollower(Follower, Protocol):
    """What :func:`start_watcher` wires up: a :class:`Follower` that also names its store and
    runs a closer when it closes (an :class:`~salesauthz.Authorizer` is one)."""

    @property
    def store(self) -> object: ...

    def add_closer(self, close: Callable[[], None]) -> None: ...


def default_heartbeat(staleness: float) -> float:
    """A quarter of the bound, at most 1 s."""
    return min(1.0, staleness / 4)


def default_timeout(heartbeat: float) -> float:
    """One heartbeat, kept between 0.5 s and 2 s."""
    return max(0.5, min(2.0, heartbeat))


def _split_options(url: str) -> tuple[str, dict[str, str]]:
    """Take salesauthz's own query parameters out of a watch URL."""
    parts = urlsplit(url)
    ours, theirs = {}, []
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key in _OPTIONS:
            ours[key] = value
        else:
            theirs.append((key, value))
    return urlunsplit(parts._replace(query=urlencode(theirs))), ours


def _seconds(options: dict[str, str], name: str, url: str) -> float | None:
    if name not in options:
        return None
    try:
        return float(options[name])
    except ValueError:
        raise StorageError(f"{name}={options[name]!r} in watch URL {mask_url(url)}: expected seconds",
                           url=mask_url(url)) from None


def start_watcher(
    follower: WatchedFollower,
    url: str,
    *,
    staleness: float | None = None,
    heartbeat: float | None = None,
    timeout: float | None = None,
    channel: str | None = None,
    versions: dict[str, int] | None = None,
    connect_timeout: float = 5.0,
) -> Watcher:
    """Follow the changes other processes make to ``follower``'s store, announced through
    ``url``: ``redis://host:6379/0`` or ``postgresql://host/db``.

    Each setting may also come from the URL (``?staleness=2&heartbeat=0.5&timeout=1&channel=x``);
    an argument wins over the URL.

    * ``staleness`` (seconds, default 5): how long the process may go without confirming its
      rules fresh before it fails closed;
    * ``heartbeat`` (default a quarter of it, at most 1 s): how often it confirms them;
    * ``timeout`` (default one heartbeat, kept within 0.5–2 s): how long one exchange with the
      channel or the store (a ping, a connection, a version read) may take before the
      connection is given up and replaced;
    * ``channel`` (default ``salesauthz``, or ``SALESAUTHZ_CHANNEL``): the pub/sub channel name.

    ``versions`` are the store's versions read before ``follower`` loaded (default: read now).
    The watcher stops when the follower closes. Raises :class:`StorageError` if the channel
    cannot be reached within ``connect_timeout``.
    """
    target, options = _split_options(url)
    name = channel or options.get("channel") or os.environ.get("SALESAUTHZ_CHANNEL", DEFAULT_CHANNEL)
    bound = staleness if staleness is not None else _seconds(options, "staleness", url)
    bound = DEFAULT_STALENESS if bound is None else bound
    beat = heartbeat if heartbeat is not None else _seconds(options, "heartbeat", url)
    beat = default_heartbeat(bound) if beat is None else beat
    limit = timeout if timeout is not None else _seconds(options, "timeout", url)
    limit = default_timeout(beat) if limit is None else limit
    store = require_versioned(follower.store)
    if versions is None:
        versions = store.versions()
    transport: Channel
    if target.startswith(("redis://", "rediss://", "unix://")):
        from .redis_channel import RedisChannel

        transport = RedisChannel(target, name, timeout=limit)
    elif target.startswith(("postgresql://", "postgres://", "postgresql+psycopg://")):
        from .postgres_channel import PostgresChannel

        transport = PostgresChannel(target.replace("postgresql+psycopg://", "postgresql://", 1), name,
                                    timeout=limit)
    else:
        raise StorageError(f"no watcher for {mask_url(url)!r} (expected redis://… or postgresql://…)",
                           url=mask_url(url))
    try:
        watcher = Watcher(follower, store, transport, url, staleness=bound, heartbeat=beat,
                          timeout=limit, versions=versions)
    except ValueError:
        transport.close()
        raise
    watcher.start(wait=connect_timeout)
    follower.add_closer(watcher.stop)
    return watcher
