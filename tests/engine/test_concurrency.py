"""Checks from many threads while another thread changes the rules: no exception, and no
decision older than the last change that had completed when the check started."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator

import pytest

from salesauthz import Authorizer, Record
from salesauthz._rules import Rule

DOMAIN = "acme"
CHECKERS = 4
DURATION = 3.0  # seconds of stress, whatever the machine's speed
WAVES = 2500  # accounts activated (odd generations) / actions added (even ones): enough for 3 s


def _organisation() -> list[Rule]:
    rules: list[Rule] = [
        ("p4", "rep", DOMAIN), ("p4", "auditor", DOMAIN), ("g2", "sales", "", DOMAIN),
        ("p2", DOMAIN, "customer", "read"),
        ("p", "rep", DOMAIN, "customer", "read", "own", ""),
        # The auditor may do every action on customers, including the ones added later.
        ("p", "auditor", DOMAIN, "customer", "*", "all", ""),
        ("p3", "auditor_1", DOMAIN, "active"), ("g", "auditor_1", "auditor", DOMAIN),
        ("g3", "auditor_1", "sales", DOMAIN),
    ]
    for wave in range(WAVES):
        rules += [("p3", f"rep_{wave}", DOMAIN, "frozen"), ("g", f"rep_{wave}", "rep", DOMAIN),
                  ("g3", f"rep_{wave}", "sales", DOMAIN)]
    return rules


def _change(generation: int) -> tuple[list[Rule], list[Rule]]:
    """Generation ``g`` (1, 2, ...): odd ones activate an account (a per-account change), even
    ones add an action to the vocabulary (a change to the whole domain)."""
    wave = (generation - 1) // 2
    if generation % 2:
        return ([("p3", f"rep_{wave}", DOMAIN, "active")],
                [("p3", f"rep_{wave}", DOMAIN, "frozen")])
    return [("p2", DOMAIN, "customer", f"action_{wave}")], []


def _request(generation: int) -> tuple[str, str, Record]:
    """A request allowed from generation ``generation`` on, and denied before it."""
    wave = (generation - 1) // 2
    if generation % 2:
        account = f"rep_{wave}"
        return account, "read", Record("customer", owner=account)
    return "auditor_1", f"action_{wave}", Record("customer", owner="someone")


class _FailureLog(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture
def failure_log() -> Iterator[_FailureLog]:
    handler = _FailureLog()
    logger = logging.getLogger("salesauthz")
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)


def test_no_check_sees_rules_older_than_the_last_completed_change(failure_log: _FailureLog) -> None:
    authz = Authorizer.from_rules(_organisation(), cache_size=64)  # small: evictions too
    completed = [0]  # the last generation whose apply_changes has returned
    stop = threading.Event()
    errors: list[BaseException] = []
    stale: list[tuple[int, int]] = []
    checks = [0] * CHECKERS

    def mutate() -> None:
        try:
            for generation in range(1, 2 * WAVES + 1):
                if stop.is_set():
                    return
                added, removed = _change(generation)
                authz.apply_changes(added=added, removed=removed)
                completed[0] = generation  # published only after the change has returned
        except BaseException as exc:  # any error: reported by the main thread
            errors.append(exc)

    def check(worker: int) -> None:
        try:
            while not stop.is_set():
                seen = completed[0]  # read BEFORE the check
                if seen == 0:
                    continue
                # The newest change must be visible, and so must an older one (still cached?).
                for generation in {seen, max(1, seen - 1 - worker), 1 + (seen * 7 + worker) % seen}:
                    account, action, record = _request(generation)
                    if worker % 2:
                        allowed = authz.check_many([(account, action, record)], domain=DOMAIN)[0]
                    else:
                        allowed = authz.check(account, action, record, domain=DOMAIN)
                    if not allowed:
                        stale.append((seen, generation))
                    checks[worker] += 1
        except BaseException as exc:  # any error: reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=check, args=(i,)) for i in range(CHECKERS)]
    threads.append(threading.Thread(target=mutate))
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + DURATION
    while time.monotonic() < deadline and threads[-1].is_alive():
        time.sleep(0.05)
    time.sleep(0.05)  # let the checkers run a little after the last change too
    stop.set()
    for thread in threads:
        thread.join(timeout=10)

    assert not any(thread.is_alive() for thread in threads)
    assert errors == []
    assert failure_log.messages == []  # check() never had to fail closed
    assert stale == []
    assert completed[0] >= 10, "the mutator hardly ran: the test proved nothing"
    assert all(count > 0 for count in checks)
    info = authz.cache_info()
    assert info.currsize <= 64
    assert info.misses > 0


def _revocations() -> list[Rule]:
    """A parent with sub-accounts, and waves of grants that will be revoked: a direct grant, a
    role's permission, and a parent's grant (which caps a sub-account)."""
    rules: list[Rule] = [
        ("p4", "viewer", DOMAIN), ("g2", "sales", "", DOMAIN), ("p2", DOMAIN, "customer", "read"),
        ("p3", "boss", DOMAIN, "active"), ("g3", "boss", "sales", DOMAIN),
        ("p3", "helper", DOMAIN, "active"), ("g3", "helper", "sales", DOMAIN),
        ("g4", "helper", "boss", DOMAIN),
        # The helper holds everything itself: only its parent's grants decide for it.
        ("p", "helper", DOMAIN, "customer", "*", "all", ""),
        ("p3", "member", DOMAIN, "active"), ("g", "member", "viewer", DOMAIN),
        ("g3", "member", "sales", DOMAIN),
    ]
    for wave in range(WAVES):
        rules.append(("p2", DOMAIN, "customer", f"act_{wave}"))
    return rules


def _grant_of(wave: int) -> Rule:
    """Wave ``w`` grants (then revokes) ``act_w`` to boss, to the viewer role, or directly to
    the member, in turn."""
    action = f"act_{wave}"
    subject = ("boss", "viewer", "member")[wave % 3]
    return ("p", subject, DOMAIN, "customer", action, "all", "")


def _asker(wave: int) -> str:
    # Boss's grant is checked through the sub-account it caps.
    return ("helper", "member", "member")[wave % 3]


def test_no_check_allows_after_the_revoke_returned(failure_log: _FailureLog) -> None:
    """A check that starts after a revoke has returned never allows what it revoked — not from a
    cached map, not through a parent's cached map (the direction that matters for security).

    Each grant is revoked only once a checker has seen it in force, so the map being revoked
    was really cached (and a grant never seen in force is a failure too: a stale deny)."""
    authz = Authorizer.from_rules(_revocations(), cache_size=64)
    revoked = [-1]  # the last wave whose revoke has returned
    granted = [-1]  # the last wave whose grant has returned
    in_force = threading.Event()
    stop = threading.Event()
    errors: list[BaseException] = []
    stale_allows: list[int] = []
    unseen: list[int] = []
    checks = [0] * CHECKERS

    def mutate() -> None:
        try:
            for wave in range(WAVES):
                if stop.is_set():
                    return
                in_force.clear()
                authz.apply_changes(added=[_grant_of(wave)])
                granted[0] = wave
                # Wait for a checker to see it in force; if the checkers were starved (a loaded
                # machine), see for ourselves: a grant not in force now is a stale deny.
                if not in_force.wait(timeout=2.0) and not authz.check(
                        _asker(wave), f"act_{wave}", Record("customer", owner="someone",
                                                            department="sales"), domain=DOMAIN):
                    unseen.append(wave)
                authz.apply_changes(removed=[_grant_of(wave)])
                revoked[0] = wave
        except BaseException as exc:  # any error: reported by the main thread
            errors.append(exc)

    def check(worker: int) -> None:
        try:
            while not stop.is_set():
                done = revoked[0]  # read BEFORE the check
                live = granted[0]
                for wave in {live, done, max(0, done - 1 - worker)}:
                    if wave < 0:
                        continue
                    account = _asker(wave)
                    record = Record("customer", owner="someone", department="sales")
                    if worker % 2:
                        allowed = authz.check_many([(account, f"act_{wave}", record)], domain=DOMAIN)[0]
                    else:
                        allowed = authz.check(account, f"act_{wave}", record, domain=DOMAIN)
                    if allowed and wave <= done:
                        stale_allows.append(wave)
                    elif allowed and wave == live:
                        in_force.set()
                    checks[worker] += 1
        except BaseException as exc:  # any error: reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=check, args=(i,)) for i in range(CHECKERS)]
    threads.append(threading.Thread(target=mutate))
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + DURATION
    while time.monotonic() < deadline and threads[-1].is_alive() and not unseen:
        time.sleep(0.05)
    stop.set()
    for thread in threads:
        thread.join(timeout=10)

    assert not any(thread.is_alive() for thread in threads)
    assert errors == []
    assert failure_log.messages == []
    assert stale_allows == []
    assert unseen == [], f"grants not in force after they returned: waves {unseen[:5]}"
    assert revoked[0] >= 30, "the mutator hardly ran: the test proved nothing"
    assert all(count > 0 for count in checks)
