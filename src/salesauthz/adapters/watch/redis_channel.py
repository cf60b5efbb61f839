"""Redis pub/sub as a change channel (``redis://…``, ``rediss://…``, ``unix://…``).

redis-py's own timeouts bound every socket operation (``socket_connect_timeout``,
``socket_timeout``). A subscriber connection, though, is silent by nature: a dead one (a
half-open TCP connection, a proxy that stopped forwarding) just delivers no messages. So
:meth:`RedisChannel.ping` sends ``PING <token>`` on the subscriber connection and
:meth:`RedisChannel.receive` raises if the matching ``pong`` has not come back within the
timeout; the watcher then reconnects. redis-py's automatic retries are off for the subscriber
(the watcher reconnects and compares versions itself); the publisher retries once.
"""

from __future__ import annotations

import itertools
import threading
import time
import uuid
from typing import Any

from ._core import decode, encode, logger

__all__ = ["RedisChannel"]


class RedisChannel:
    """Redis pub/sub on one channel name. ``timeout`` (seconds) bounds connecting, each read,
    and the wait for the answer to a ping."""

    def __init__(self, url: str, channel: str, *, timeout: float) -> None:
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        self._redis = redis
        self._url = url
        self._name = channel
        self._timeout = timeout
        self._origin = uuid.uuid4().hex
        self._client: Any = None
        self._pubsub: Any = None
        self._reconnected = False
        self._tokens = itertools.count(1)
        self._ping: tuple[bytes, float] | None = None  # (token, answer due by)
        self._options: dict[str, Any] = {"socket_timeout": timeout, "socket_connect_timeout": timeout,
                                         "retry": Retry(NoBackoff(), 0)}
        self._publisher_lock = threading.Lock()
        # One retry: a publisher connection that died while idle is replaced at once.
        self._publisher: Any = redis.Redis.from_url(url, **{**self._options, "retry": Retry(NoBackoff(), 1)})

    def connect(self) -> None:
        self.close_subscriber()
        # Named, so an operator (or a test) can find and kill this connection in CLIENT LIST.
        self._client = self._redis.Redis.from_url(self._url, client_name=f"salesauthz-watch:{self._name}",
                                                  **self._options)
        self._pubsub = self._client.pubsub()
        self._pubsub.subscribe(self._name)
        # Subscribed means confirmed by the server, not merely sent.
        due = time.monotonic() + self._timeout
        while True:
            message = self._pubsub.get_message(timeout=max(0.0, due - time.monotonic()))
            if message is not None and message.get("type") == "subscribe":
                break
            if time.monotonic() >= due:
                raise TimeoutError(f"no confirmation of SUBSCRIBE within {self._timeout:g} s")
        self._pubsub.connection.register_connect_callback(self._on_reconnect)
        self._reconnected = False
        self._ping = None

    def _on_reconnect(self, connection: Any) -> None:
        self._reconnected = True

    def receive(self, timeout: float) -> list[tuple[str, int]]:
        found: list[tuple[str, int]] = []
        message = self._pubsub.get_message(timeout=timeout)
        while message is not None:
            kind = message.get("type")
            if kind == "message":
                decoded = decode(message["data"])
                if decoded is not None:
                    found.append(decoded)
            elif kind == "pong" and self._ping is not None and message["data"] == self._ping[0]:
                self._ping = None
            message = self._pubsub.get_message(timeout=0.0)
        self._check_ping()
        return found

    def ping(self) -> None:
        self._check_ping()
        if self._ping is None:
            token = f"salesauthz-{next(self._tokens)}"
            self._ping = (token.encode(), time.monotonic() + self._timeout)
            self._pubsub.ping(token)

    def _check_ping(self) -> None:
        if self._ping is not None and time.monotonic() > self._ping[1]:
            raise TimeoutError(f"no answer to PING within {self._timeout:g} s")

    def reconnected(self) -> bool:
        flag, self._reconnected = self._reconnected, False
        return flag

    def publish(self, domain: str, version: int) -> None:
        with self._publisher_lock:
            self._publisher.publish(self._name, encode(domain, version, self._origin))

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
