"""The effective-map cache: a strategy passed in decides what stays; hits need no lock; entries
are used only while their stamp and validity hold."""

from __future__ import annotations

from collections.abc import MutableMapping

from cachetools import LFUCache, LRUCache, TTLCache

from salesauthz import Authorizer, Record
from salesauthz import _engine as engine
from salesauthz._rules import Rule

D = "acme"


def rules(accounts: int) -> list[Rule]:
    found: list[Rule] = [("p2", D, "customer", "read"), ("p4", "rep", D),
                         ("p", "rep", D, "customer", "read", "own", ""), ("g2", "hq", "", D)]
    for i in range(accounts):
        found += [("p3", f"u{i}", D, "active"), ("g3", f"u{i}", "hq", D), ("g", f"u{i}", "rep", D)]
    return found


def ask(authz: Authorizer, account: str) -> bool:
    return authz.check(account, "read", Record("customer", owner=account), domain=D)


def test_the_default_strategy_is_an_lru_of_the_given_size() -> None:
    authz = Authorizer.from_rules(rules(50), cache_size=10)
    assert all(ask(authz, f"u{i}") for i in range(50))
    info = authz.cache_info()
    assert (info.maxsize, info.currsize, info.misses) == (10, 10, 50)


def test_the_lock_free_mirror_stays_bounded_by_the_strategy() -> None:
    strategy: LRUCache[tuple[str, str], engine.Entry] = LRUCache(maxsize=20)
    authz = Authorizer.from_rules(rules(500), cache=strategy)
    for i in range(500):
        assert ask(authz, f"u{i}")
        # Never more than a quarter (or 16) beyond what the strategy keeps.
        assert len(authz._cache.entries) <= len(strategy) + 16
    assert set(strategy) <= set(authz._cache.entries)


def test_any_cachetools_strategy_serves_the_same_answers() -> None:
    clock = [1_000.0]
    strategies: list[MutableMapping[tuple[str, str], engine.Entry]] = [
        LFUCache(maxsize=3), TTLCache(maxsize=3, ttl=5, timer=lambda: clock[0]), {}]
    answers = []
    for strategy in strategies:
        authz = Authorizer.from_rules(rules(10), cache=strategy)
        answers.append([ask(authz, f"u{i % 10}") for i in range(40)]
                       + [authz.check("u1", "read", Record("customer", owner="u2"), domain=D)])
        clock[0] += 10
    assert answers[0] == answers[1] == answers[2] == [True] * 40 + [False]


def test_hits_refresh_the_strategys_recency_now_and_then() -> None:
    strategy: LRUCache[tuple[str, str], engine.Entry] = LRUCache(maxsize=2)
    authz = Authorizer.from_rules(rules(3), cache=strategy)
    ask(authz, "u0")
    ask(authz, "u1")
    for _ in range(64):  # u0 is hot: sampled touches keep it the most recent
        ask(authz, "u0")
    ask(authz, "u2")  # evicts the least recently used: u1
    assert (D, "u0") in strategy
    assert (D, "u1") not in strategy


def test_clearing_empties_both() -> None:
    authz = Authorizer.from_rules(rules(5))
    ask(authz, "u1")
    authz.cache_clear()
    assert authz.cache_info().currsize == 0
    assert authz._cache.entries == {}
    assert ask(authz, "u1")
