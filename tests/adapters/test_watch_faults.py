"""Store and channel faults behind a TCP proxy, against the real PostgreSQL and Redis servers.

Process B follows the store through the proxy; process A (direct) revokes a right. For every
fault — a blackhole or a strand at the worst moment (in the middle of B's catch-up: its read of
the change log, or the rule query of a reload when the revoke was a write made outside
salesauthz, which leaves nothing in the log), a cut — and for both channels:

* B never allows the revoked right later than ``staleness + 0.5 s`` after the revoke committed;
* B serves the store's rules again within one heartbeat of the fault ending;
* no exception escapes ``check``.

A fault on the channel alone must not suspend B at all (the store still confirms freshness);
the dead connection is found by a ping with a deadline and replaced within one heartbeat of the
fault ending, after which changes arrive at message speed again.

Each test prints one ``fault-measure`` line (run with ``-s``) with the figures docs/adapters.md
quotes.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest

from salesauthz import Authorizer
from salesauthz.adapters.sql import SQLAdapter, rule_key
from salesauthz.adapters.watch import Watcher, start_watcher

from . import _worker
from ._proxy import Proxy
from ._services import PG_HOST, PG_PORT, REDIS_HOST, REDIS_PORT, postgres_schema
from .test_watch import GRANT, RULES, watch_url

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(90)]

ACCOUNT, DOMAIN, RECORD = _worker.ACCOUNT, _worker.DOMAIN, _worker.RECORD
STALENESS = 2.0  # heartbeat 0.5 s, timeout 0.5 s (the defaults for this bound)
SLACK = 0.5  # the guarantee: denied by the revoke + staleness + 0.5 s


@dataclass
class Probe:
    """Asks B's ``check`` in a loop and records every answer (and any exception)."""

    authz: Authorizer
    answers: list[tuple[float, bool]] = field(default_factory=list)
    exceptions: list[BaseException] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                allowed = self.authz.check(ACCOUNT, "read", RECORD, domain=DOMAIN)
            except BaseException as exc:  # the property under test: check() never raises
                self.exceptions.append(exc)
            else:
                # Stamped when the answer is back: the latest moment it could have been decided.
                self.answers.append((time.monotonic(), allowed))
            time.sleep(0.001)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5.0)

    def allowed_after(self, moment: float, until: float = float("inf")) -> float:
        """How long after ``moment`` (and before ``until``) the check last allowed; 0 if never."""
        return max((at - moment for at, allowed in self.answers if allowed and moment < at < until),
                   default=0.0)


def wait_for(condition: Callable[[], bool], timeout: float) -> float:
    """Seconds until ``condition()`` held; fails the test after ``timeout``."""
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > timeout:
            pytest.fail(f"condition not met within {timeout} s")
        time.sleep(0.002)
    return time.monotonic() - start


def answers(authz: Authorizer, expected: bool) -> Callable[[], bool]:
    return lambda: authz.check(ACCOUNT, "read", RECORD, domain=DOMAIN) == expected


@dataclass
class Rig:
    """A (direct) and B (through proxies) on one PostgreSQL store, with a watcher each."""

    a: Authorizer
    b: Authorizer
    watcher: Watcher
    store_proxy: Proxy
    channel_proxy: Proxy | None
    probe: Probe


def open_rig(kind: str, store_url: str, *, channel_behind_proxy: bool, staleness: float,
             heartbeat: float | None = None) -> Rig:
    channel = "sa_test_" + uuid.uuid4().hex[:10]
    store_proxy = Proxy(PG_HOST, PG_PORT)
    store_proxy.start()
    channel_proxy: Proxy | None = None
    port: int | None = None
    if channel_behind_proxy:
        channel_proxy = Proxy(*((REDIS_HOST, REDIS_PORT) if kind == "redis" else (PG_HOST, PG_PORT)))
        channel_proxy.start()
        port = channel_proxy.port
    elif kind == "postgresql":
        port = store_proxy.port  # one server: a fault of the store is a fault of its LISTEN too
    b_store = SQLAdapter(store_url.replace(f"{PG_HOST}:{PG_PORT}", f"{PG_HOST}:{store_proxy.port}"))
    b = Authorizer(b_store)
    watcher = start_watcher(b, watch_url(kind, channel, port=port), staleness=staleness,
                            heartbeat=heartbeat)
    a = Authorizer.from_url(store_url, watch=watch_url(kind, channel), staleness=30.0)
    assert b.check(ACCOUNT, "read", RECORD, domain=DOMAIN)
    return Rig(a, b, watcher, store_proxy, channel_proxy, Probe(b))


def close_rig(rig: Rig) -> None:
    rig.probe.stop()
    for proxy in (rig.store_proxy, rig.channel_proxy):
        if proxy is not None:
            proxy.heal()
    rig.a.close()
    rig.b.close()
    for proxy in (rig.store_proxy, rig.channel_proxy):
        if proxy is not None:
            proxy.cut()


@pytest.fixture
def store_url() -> Iterator[str]:
    with postgres_schema() as url:
        store = SQLAdapter(url)
        store.apply(RULES, [])
        store.close()
        yield url


KINDS = ["redis", "postgresql"]


# -- the store fails ---------------------------------------------------------------------------


def revoke_outside_salesauthz(store_url: str) -> None:
    """A DBA's ``DELETE`` of the grant: the change triggers bump the version, the log has nothing."""
    store = SQLAdapter(store_url)
    try:
        with store.engine.begin() as conn:
            conn.execute(store.rules_table.delete().where(store.rules_table.c.rule_key == rule_key(GRANT)))
    finally:
        store.close()


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("fault", ["blackhole mid-catch-up", "strand mid-catch-up", "blackhole mid-reload",
                                   "cut"])
def test_store_fault_fails_closed_in_time_and_recovers(kind: str, fault: str, store_url: str) -> None:
    watch_url(kind, "probe")  # skips when the service is absent
    rig = open_rig(kind, store_url, channel_behind_proxy=False, staleness=STALENESS)
    try:
        time.sleep(0.3)
        # The worst moment: B's query for what changed (the change log, or the rules of the
        # domain when only a reload can tell).
        if fault == "blackhole mid-catch-up":
            rig.store_proxy.blackhole_on(b"salesauthz_changes")
        elif fault == "strand mid-catch-up":
            rig.store_proxy.strand_on(b"salesauthz_changes")
        elif fault == "blackhole mid-reload":
            rig.store_proxy.blackhole_on(b"salesauthz_rules")
        else:
            rig.store_proxy.cut()
        revoked = time.monotonic()
        if fault == "blackhole mid-reload":
            revoke_outside_salesauthz(store_url)
        else:
            rig.a.apply_changes(removed=[GRANT])
        wait_for(answers(rig.b, False), STALENESS + 2 * SLACK)
        # The domain that could not catch up may close first, alone; everything follows, since
        # no version can be read either.
        wait_for(lambda: rig.watcher.suspended, rig.watcher.heartbeat + SLACK)
        if fault != "cut":
            assert rig.store_proxy.fault_started is not None  # the fault did hit the catch-up
        time.sleep(STALENESS)  # the store stays away past the bound
        allowed_for = rig.probe.allowed_after(revoked)
        assert allowed_for <= STALENESS + SLACK
        rig.a.apply_changes([("p4", "after-the-fault", DOMAIN)])
        if fault == "cut":
            rig.store_proxy.start()
        else:
            rig.store_proxy.heal()
        healed = time.monotonic()
        recovered = wait_for(lambda: not rig.watcher.suspended, 5.0)
        assert ("p4", "after-the-fault", DOMAIN) in rig.b.rules(DOMAIN)  # the rules of now
        assert not rig.b.check(ACCOUNT, "read", RECORD, domain=DOMAIN)
        assert recovered <= rig.watcher.heartbeat
        granted = time.monotonic()
        rig.a.apply_changes([GRANT])
        propagated = wait_for(lambda: rig.b.check(ACCOUNT, "read", RECORD, domain=DOMAIN), 5.0)
        assert rig.probe.exceptions == []
        print(f"fault-measure store {fault} via {kind}: allowed {allowed_for:.3f} s after the revoke "
              f"(bound {STALENESS + SLACK:g}), recovered {recovered:.3f} s after the fault ended "
              f"(heartbeat {rig.watcher.heartbeat:g}), next change in {propagated:.3f} s; "
              f"{time.monotonic() - healed:.1f} s since heal, {granted - revoked:.1f} s in fault")
    finally:
        close_rig(rig)


# -- the channel fails -------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("fault", ["strand", "blackhole", "cut"])
def test_channel_fault_is_detected_and_replaced_without_suspending(kind: str, fault: str,
                                                                  store_url: str) -> None:
    watch_url(kind, "probe")  # skips when the service is absent
    # A longer heartbeat than the store tests, so that message speed and polling speed differ.
    rig = open_rig(kind, store_url, channel_behind_proxy=True, staleness=4.0, heartbeat=1.0)
    proxy = rig.channel_proxy
    assert proxy is not None
    try:
        time.sleep(0.3)
        assert rig.watcher.healthy
        started = time.monotonic()
        if fault == "strand":  # half-open: the dead subscriber looks alive to TCP
            proxy.strand()
        elif fault == "blackhole":
            proxy.blackhole()
        else:
            proxy.cut()
        # Found by the ping: one heartbeat until it is sent, one timeout for its answer.
        detected = wait_for(lambda: not rig.watcher.healthy, 5.0)
        assert detected <= rig.watcher.heartbeat + rig.watcher.timeout + 0.25
        # Meanwhile the store still confirms freshness: a revoke lands by the next heartbeat.
        revoked = time.monotonic()
        rig.a.apply_changes(removed=[GRANT])
        polled = wait_for(lambda: not rig.b.check(ACCOUNT, "read", RECORD, domain=DOMAIN), 5.0)
        assert polled <= rig.watcher.heartbeat + 0.25
        time.sleep(1.0)
        if fault == "cut":
            proxy.start()
        else:
            proxy.heal()
        recovered = wait_for(lambda: rig.watcher.healthy, 5.0)
        assert recovered <= rig.watcher.heartbeat
        allowed_for = rig.probe.allowed_after(revoked, until=time.monotonic())
        assert allowed_for <= rig.watcher.heartbeat + 0.25
        # Back at message speed: well under the heartbeat, three times in a row.
        speeds = []
        for added, removed in ([GRANT], []), ([], [GRANT]), ([GRANT], []):
            rig.a.apply_changes(added, removed)
            speeds.append(wait_for(answers(rig.b, bool(added)), 5.0))
        assert max(speeds) < 0.25
        assert rig.watcher.suspensions == 0
        assert rig.probe.exceptions == []
        print(f"fault-measure channel {fault} via {kind}: detected {detected:.3f} s after the fault, "
              f"revoke landed in {polled:.3f} s by polling (allowed {allowed_for:.3f} s after it), "
              f"reconnected {recovered:.3f} s after the fault ended (heartbeat {rig.watcher.heartbeat:g}), "
              f"then changes in {', '.join(f'{s * 1000:.0f}' for s in speeds)} ms; "
              f"{time.monotonic() - started:.1f} s")
    finally:
        close_rig(rig)
