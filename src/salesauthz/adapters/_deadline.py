"""Deadlines on blocking network calls whose drivers offer none.

psycopg waits for a server's answer for as long as the socket stays open, and TCP keeps a socket
open while the far end stops answering — a frozen server, a partition, a half-open connection —
for up to ~15 minutes. Server-side limits (``statement_timeout``) cannot help when the answer never
arrives. So a :class:`Watchdog` thread shuts the socket down (``shutdown(2)``, which wakes a thread
blocked on it; the driver then fails with its own "connection closed" error) when a deadline
passes, unless the call finished first. :func:`call_before` gives a blocking call that cannot be
interrupted at all (opening a connection) a deadline by running it in a helper thread.

Deadlines are ``time.monotonic()`` values.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

__all__ = ["DeadlineExceeded", "Watchdog", "call_before", "shutdown_socket", "watchdog"]

T = TypeVar("T")


class DeadlineExceeded(TimeoutError):
    """A call did not finish before its deadline."""


class Watchdog:
    """Runs an action when a deadline passes, unless :meth:`disarm` came first.

    Actions run with the watchdog's lock held, so once ``disarm`` returns the action has either
    run completely or will never run: the caller may then close the socket the action would have
    touched (its file descriptor number can be reused afterwards). Actions must be quick and must
    not block.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._heap: list[tuple[float, int]] = []
        self._actions: dict[int, Callable[[], None]] = {}
        self._tickets = itertools.count(1)
        self._thread: threading.Thread | None = None

    def arm(self, at: float, action: Callable[[], None]) -> int:
        """Run ``action`` at ``at`` (monotonic seconds); returns a ticket for :meth:`disarm`."""
        with self._lock:
            ticket = next(self._tickets)
            self._actions[ticket] = action
            heapq.heappush(self._heap, (at, ticket))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="salesauthz-deadlines",
                                                daemon=True)
                self._thread.start()
            if self._heap[0][1] == ticket:  # wake the thread only if it must wake earlier
                self._wake.notify()
            return ticket

    def disarm(self, ticket: int) -> bool:
        """Cancel a ticket; ``False`` if its action has already run."""
        with self._lock:
            armed = self._actions.pop(ticket, None) is not None
            # Cancelled entries leave the heap lazily; keep it from growing with them.
            if len(self._heap) > 64 + 2 * len(self._actions):
                self._heap = [entry for entry in self._heap if entry[1] in self._actions]
                heapq.heapify(self._heap)
            return armed

    @contextlib.contextmanager
    def guard(self, at: float, action: Callable[[], None]) -> Iterator[None]:
        """Run ``action`` if the block is still running at ``at``."""
        ticket = self.arm(at, action)
        try:
            yield
        finally:
            self.disarm(ticket)

    def _run(self) -> None:
        with self._lock:
            while True:
                while self._heap and self._heap[0][1] not in self._actions:
                    heapq.heappop(self._heap)  # disarmed
                if not self._heap:
                    self._wake.wait()
                    continue
                at, ticket = self._heap[0]
                delay = at - time.monotonic()
                if delay > 0:
                    self._wake.wait(delay)
                    continue
                heapq.heappop(self._heap)
                action = self._actions.pop(ticket)
                with contextlib.suppress(Exception):  # a failed action must not stop the others
                    action()


watchdog = Watchdog()
"""The process's one watchdog thread (started on first use)."""


def shutdown_socket(fileno: int) -> None:
    """Shut a connected socket down in both directions, given its file descriptor: a thread
    blocked reading it wakes up and sees the connection closed. The descriptor itself stays
    open (its owner closes it), so this cannot touch an unrelated socket."""
    duplicate = os.dup(fileno)
    with socket.socket(fileno=duplicate) as sock, contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


def call_before(at: float, call: Callable[[], T], discard: Callable[[T], None]) -> T:
    """``call()``, or :class:`DeadlineExceeded` if it has not returned by ``at``.

    The call runs in a helper thread and is abandoned at the deadline, not stopped: when it
    finishes later its result goes to ``discard`` (e.g. closing a connection that opened late).
    So ``call`` must end by itself within a bounded time (a driver's own connect timeout).
    """
    lock = threading.Lock()
    done = threading.Event()
    outcome: list[T] = []
    failure: list[BaseException] = []
    abandoned = False

    def run() -> None:
        try:
            value = call()
        except BaseException as exc:
            failure.append(exc)
        else:
            with lock:
                if abandoned:
                    with contextlib.suppress(Exception):
                        discard(value)
                    return
                outcome.append(value)
        finally:
            done.set()

    threading.Thread(target=run, name="salesauthz-connect", daemon=True).start()
    done.wait(max(0.0, at - time.monotonic()))
    with lock:
        if outcome:
            return outcome[0]
        if failure:
            raise failure[0]
        abandoned = True
    raise DeadlineExceeded("the call did not finish before its deadline")
