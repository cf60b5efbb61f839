"""A TCP forwarder a test can break in the ways networks break, without stopping the shared server
everyone else uses.

* :meth:`Proxy.cut` — every connection is closed and new ones are refused (a crashed server);
* :meth:`Proxy.blackhole` — nothing moves in either direction, on open connections and on new
  ones alike, until :meth:`Proxy.heal`; then whatever was held is delivered (a partition that
  heals: TCP retransmits what was lost). :meth:`Proxy.blackhole_on` starts it the moment a client
  sends a chosen byte string — e.g. in the middle of a reload;
* :meth:`Proxy.strand` — the open connections go half-open for good (their sockets stay open, but
  nothing they send or should receive is ever delivered, as after a server reboot behind a NAT)
  and new ones are refused until :meth:`Proxy.heal`.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable


class _Link:
    """One proxied connection: the client's socket and the server's."""

    def __init__(self, client: socket.socket, upstream: socket.socket) -> None:
        self.client = client
        self.upstream = upstream
        self.stranded = False


class Proxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self._server: socket.socket | None = None
        self._links: list[_Link] = []
        self._lock = threading.Lock()
        self._flowing = threading.Condition(self._lock)
        self._held = False  # blackhole: nothing moves until heal()
        self._refusing = False  # strand: new connections are closed at once
        self._trigger: tuple[bytes, Callable[[], None]] | None = None  # (pattern, fault)
        self.fault_started: float | None = None  # time.monotonic() of the last fault
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        self.port = int(probe.getsockname()[1])
        probe.close()

    # -- faults ------------------------------------------------------------------------------

    def blackhole(self) -> None:
        """Hold every byte, in both directions, on old and new connections, until heal()."""
        with self._lock:
            self._hold()

    def blackhole_on(self, pattern: bytes) -> None:
        """Blackhole as soon as a client sends ``pattern`` (that message is held too)."""
        with self._lock:
            self._trigger = (pattern, self._hold)

    def strand(self) -> None:
        """Leave every open connection half-open for good; refuse new ones until heal()."""
        with self._lock:
            self._strand()

    def strand_on(self, pattern: bytes) -> None:
        """Strand as soon as a client sends ``pattern`` (that message is lost)."""
        with self._lock:
            self._trigger = (pattern, self._strand)

    def heal(self) -> None:
        """End a blackhole (held bytes are delivered) or a strand (new connections work again;
        the stranded ones stay dead)."""
        with self._lock:
            self._held = False
            self._refusing = False
            self._trigger = None
            self._flowing.notify_all()

    def cut(self) -> None:
        """Refuse new connections and drop every open one."""
        if self._server is not None:
            # shutdown() first: close() alone does not wake a thread blocked in accept().
            with contextlib.suppress(OSError):
                self._server.shutdown(socket.SHUT_RDWR)
            self._server.close()
            self._server = None
        with self._lock:
            links, self._links = self._links, []
            self._held = False
            self._refusing = False
            self._trigger = None
            self._flowing.notify_all()
        for link in links:
            for sock in (link.client, link.upstream):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()

    def _hold(self) -> None:
        if not self._held:
            self._held = True
            self.fault_started = time.monotonic()

    def _strand(self) -> None:
        for link in self._links:
            link.stranded = True
        self._refusing = True
        self.fault_started = time.monotonic()
        self._flowing.notify_all()

    # -- forwarding --------------------------------------------------------------------------

    def start(self) -> None:
        server = socket.socket()
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", self.port))
        server.listen(16)
        self._server = server
        threading.Thread(target=self._accept, args=(server,), daemon=True).start()

    def _accept(self, server: socket.socket) -> None:
        while True:
            try:
                client, _ = server.accept()
            except OSError:
                return
            with self._lock:
                refusing = self._refusing
            if refusing:
                client.close()
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=2.0)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            link = _Link(client, upstream)
            with self._lock:
                self._links.append(link)
            for source, sink, outbound in ((client, upstream, True), (upstream, client, False)):
                threading.Thread(target=self._pump, args=(link, source, sink, outbound),
                                 daemon=True).start()

    def _pump(self, link: _Link, source: socket.socket, sink: socket.socket, outbound: bool) -> None:
        try:
            while data := source.recv(65536):
                with self._lock:
                    if outbound and self._trigger is not None and self._trigger[0] in data:
                        fault = self._trigger[1]
                        self._trigger = None
                        fault()
                    while self._held and not link.stranded:
                        self._flowing.wait()
                    if link.stranded:
                        continue  # half-open: swallowed, never delivered, never answered
                sink.sendall(data)
        except OSError:
            pass
        finally:
            if not link.stranded:
                for end in (source, sink):
                    with contextlib.suppress(OSError):
                        end.shutdown(socket.SHUT_RDWR)
