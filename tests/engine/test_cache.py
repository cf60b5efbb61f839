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


def kept(authz: Authorizer) -> set[tuple[str, str]]:
    return {(d, a) for d, entries in authz._cache.domains.items() for a in entries}


def test_the_default_strategy_keeps_at_most_cache_size_maps_the_newest_first() -> None:
    authz = Authorizer.from_rules(rules(50), cache_size=10)
    for i in range(50):
        assert ask(authz, f"u{i}")
        assert len(kept(authz)) <= 10
    info = authz.cache_info()
    assert info.maxsize == 10
    assert 8 <= info.currsize <= 10
    assert info.currsize == len(kept(authz))
    assert info.misses == 50
    # The oldest went first: what is kept is the last ones asked about.
    assert kept(authz) == {(D, f"u{i}") for i in range(50 - info.currsize, 50)}


def test_the_default_strategy_keeps_a_hot_entry() -> None:
    authz = Authorizer.from_rules(rules(200), cache_size=16)
    assert ask(authz, "u0")
    for i in range(1, 200):
        for _ in range(engine.TOUCH_EVERY + 1):  # u0 stays hot: sampled hits move it to the end
            assert ask(authz, "u0")
        assert ask(authz, f"u{i}")
    assert (D, "u0") in kept(authz)
    assert (D, "u1") not in kept(authz)
    assert authz.cache_info().misses == 200  # u0 was computed once: never evicted


def test_a_map_computed_again_counts_as_the_newest() -> None:
    authz = Authorizer.from_rules(rules(10), cache_size=8)
    for i in range(8):
        assert ask(authz, f"u{i}")
    authz.apply_changes(added=[("p", "u0", D, "customer", "read", "all", "")])
    assert authz.check("u0", "read", Record("customer", owner="u5"), domain=D)  # u0 again
    assert ask(authz, "u8")  # past the bound: the oldest go, and u0 is not among them
    assert (D, "u0") in kept(authz)
    assert (D, "u1") not in kept(authz)


def test_the_default_strategy_evicts_from_every_domain_in_proportion() -> None:
    both = rules(40) + [(r[0], *(("beta" if v == D else v) for v in r[1:])) for r in rules(40)]
    authz = Authorizer.from_rules(both, cache_size=40)
    for i in range(20):
        assert ask(authz, f"u{i}")
        assert authz.check(f"u{i}", "read", Record("customer", owner=f"u{i}"), domain="beta")
    for i in range(20, 40):
        assert ask(authz, f"u{i}")
    counts = {d: len(entries) for d, entries in authz._cache.domains.items()}
    assert sum(counts.values()) <= 40
    assert counts["beta"] >= 10  # the older domain kept part of its maps
    assert counts[D] > counts["beta"]


def test_a_zero_sized_cache_keeps_nothing_and_still_decides() -> None:
    authz = Authorizer.from_rules(rules(3), cache_size=0)
    assert [ask(authz, "u1") for _ in range(3)] == [True] * 3
    assert authz.cache_info().currsize == 0
    assert kept(authz) == set()


def test_the_lock_free_mirror_stays_bounded_by_the_strategy() -> None:
    strategy: LRUCache[tuple[str, str], engine.Entry] = LRUCache(maxsize=20)
    authz = Authorizer.from_rules(rules(500), cache=strategy)
    for i in range(500):
        assert ask(authz, f"u{i}")
        # Never more than a quarter (or 16) beyond what the strategy keeps.
        assert len(kept(authz)) <= len(strategy) + 16
    assert set(strategy) <= kept(authz)


def test_an_entry_from_an_older_snapshot_is_tagged_again_once_found_fresh() -> None:
    authz = Authorizer.from_rules(rules(3))
    assert ask(authz, "u1")
    first = authz._cache.peek(D, "u1")
    assert first is not None
    authz.apply_changes(added=[("p", "u2", D, "customer", "read", "all", "")])  # u2 only
    version = authz._snapshots[D].version
    assert first[0] != version
    assert ask(authz, "u1")
    again = authz._cache.peek(D, "u1")
    assert again is not None
    assert again[0] == version
    assert again[1] is first[1]  # the same map: not computed again
    assert authz.check("u2", "read", Record("customer", owner="u0"), domain=D)
    assert not authz.check("u1", "read", Record("customer", owner="u0"), domain=D)


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
    assert kept(authz) == set()
    assert ask(authz, "u1")


def _shaped() -> Authorizer:
    found: list[Rule] = [
        ("p2", D, "customer", "read"), ("p2", D, "customer", "update"), ("p4", "rep", D),
        ("p4", "lead", D), ("p", "rep", D, "customer", "read", "team", ""),
        ("p", "rep", D, "customer", "update", "own", ""),
        ("p", "lead", D, "customer", "read", "subordinates", ""),
        ("g2", "hq", "", D), ("g2", "east", "hq", D), ("g2", "west", "hq", D)]
    for name, team in (("a", "east"), ("b", "east"), ("c", "west"), ("sub", "west"),
                       ("boss", "east"), ("report", "west")):
        found += [("p3", name, D, "active"), ("g3", name, team, D), ("g", name, "rep", D)]
    found += [("g4", "sub", "a", D), ("g", "boss", "lead", D), ("g6", "report", "boss", D)]
    return Authorizer.from_rules(found)


def test_accounts_with_the_same_roles_and_department_share_one_map() -> None:
    authz = _shaped()
    east = Record("customer", owner="zed", department="east")
    for name in ("a", "b", "c", "sub", "boss"):
        authz.check(name, "read", east, domain=D)
    entry = {name: authz._cache.domains[D][name] for name in ("a", "b", "c", "sub", "boss")}
    assert entry["a"][3]
    assert entry["b"][3]
    assert entry["a"][1] is entry["b"][1]  # one dict for both
    assert entry["c"][3]
    assert entry["c"][1] is not entry["a"][1]  # another department: another shape
    assert not entry["sub"][3]  # capped by a parent in another department: pairs, its own map
    assert not entry["boss"][3]  # its subordinates scope names its report
    # Each reads the shared map as its own: own records, the team's, nobody else's.
    assert [authz.check(n, "update", Record("customer", owner=o), domain=D)
            for n, o in (("a", "a"), ("b", "b"), ("a", "b"), ("b", "a"), ("c", "a"))] == [
        True, True, False, False, False]
    assert authz.check_many([("a", "update", Record("customer", owner=o)) for o in "abc"],
                            domain=D) == [True, False, False]
    assert authz.check("c", "read", Record("customer", owner="c", department="east"), domain=D)
    assert not authz.check("c", "read", east, domain=D)
    assert authz.check("boss", "read", Record("customer", owner="report", department="west"),
                       domain=D)


def test_a_shared_map_never_leaves_the_cache_unresolved() -> None:
    authz = _shaped()
    for name in ("a", "b"):
        authz.check(name, "read", Record("customer", owner=name), domain=D)
        uncached, _ = engine.effective(authz._snapshots[D], name, authz.now())
        held = authz.effective_permissions(name, domain=D)
        assert held == uncached
        assert held[("customer", "update")].owners == frozenset({name})
        flt = authz.scope_filter(name, "update", "customer", domain=D)
        assert flt.coverage.owners == frozenset({name})
        assert authz.scope_filter(name, "update", "customer", domain=D).coverage is flt.coverage
    everything_held = authz.effective_permissions("a", domain=D).values()
    assert all(isinstance(owner, str) for c in everything_held for owner in c.owners)
