"""The shared adapter test suite (like cachetools' ``CacheTestMixin``): every store passes it.

A test module subclasses :class:`AdapterSuite` and provides the ``store`` fixture (a fresh, empty
store) and, where the store can be opened twice, ``reopen`` (a second handle on the same data,
as another process would hold).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from salesauthz import Authorizer, Record
from salesauthz._rules import Rule
from salesauthz.adapters.base import Adapter
from salesauthz.audit import AuditDraft, find_break
from salesauthz.errors import PolicyError
from tests.conftest import examples

HOSTILE = [
    "华东一组", "a,b", 'quote"d', "single'q", "new\nline", "tab\there", "ctl\x01\x1f\x7f",
    "; DROP TABLE x; --",
    "%s %(x)s ? :name $1", "back\\slash", "x" * 1000, "华" * 1000, " padded ", "*", "NULL", "",
]


def hostile_rules(domain: str) -> list[Rule]:
    """Rules whose values are every hostile identifier (a p rule per identifier, plus links)."""
    rules: list[Rule] = []
    for i, name in enumerate(n for n in HOSTILE if n):
        rules.append(("p", name, domain, "customer", "read", "own", ""))
        rules.append(("g", f"{name}#{i}", name, domain))
        rules.append(("p4", name, domain))
        rules.append(("g2", name, "", domain))
    rules.append(("p", "r", domain, "customer", "read", "all", "2030-01-01T00:00:00Z"))
    return rules


def draft(domain: str, target: str = "t", added: tuple[Rule, ...] = ()) -> AuditDraft:
    return AuditDraft(time=1_900_000_000.0, actor="admin", domain=domain, operation="grant",
                      target=target, added=added)


values = st.text(st.characters(blacklist_characters="\x00", blacklist_categories=["Cs"]),
                 min_size=1, max_size=40)


class AdapterSuite:
    """Mixed into one test class per adapter."""

    @pytest.fixture
    def store(self) -> Iterator[Adapter]:  # pragma: no cover - always overridden
        raise NotImplementedError

    def reopen(self, store: Adapter) -> Adapter:
        """Another handle on the same store (the same object where that is all there is)."""
        return store

    # -- round trip ------------------------------------------------------------------------

    def test_empty_store(self, store: Adapter) -> None:
        assert store.load() == []
        assert store.load(["acme"]) == []
        assert store.list_domains() == []
        assert store.load_audit() == []
        assert "***" in store.url or ":" in store.url

    def test_round_trip_hostile_identifiers(self, store: Adapter) -> None:
        domains = ["华东一组", "a,b\n'\"; --", "x" * 1000]
        expected = [r for d in domains for r in hostile_rules(d)]
        store.apply(expected, [])
        assert sorted(store.load()) == sorted(expected)
        other = self.reopen(store)
        for domain in domains:
            assert sorted(other.load([domain])) == sorted(hostile_rules(domain))
        assert sorted(other.list_domains()) == sorted(domains)

    @settings(max_examples=examples(15), suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                         HealthCheck.differing_executors])
    @given(names=st.lists(values, min_size=1, max_size=4, unique=True), domain=values)
    def test_round_trip_any_text(self, store: Adapter, names: list[str], domain: str) -> None:
        rules: list[Rule] = [("p4", name, domain) for name in names]
        rules += [("g", names[0], name, domain) for name in names]
        store.apply(rules, [])
        try:
            assert sorted(self.reopen(store).load([domain])) == sorted(rules)
        finally:
            store.apply([], rules)
        assert store.load([domain]) == []

    def test_set_semantics(self, store: Adapter) -> None:
        rule = ("p4", "manager", "acme")
        store.apply([rule, rule], [])
        store.apply([rule], [])
        assert store.load() == [rule]
        store.apply([], [("p4", "absent", "acme")])
        assert store.load() == [rule]
        store.apply([rule], [rule])  # removals first, then additions
        assert store.load() == [rule]
        store.apply([], [rule])
        assert store.load() == []

    def test_empty_string_is_kept_distinct_from_absent(self, store: Adapter) -> None:
        root = ("g2", "root", "", "acme")
        grant = ("p", "u", "acme", "customer", "read", "own", "")
        store.apply([root, grant], [])
        assert sorted(self.reopen(store).load(["acme"])) == sorted([root, grant])

    # -- atomic batches --------------------------------------------------------------------

    def test_invalid_batch_changes_nothing(self, store: Adapter) -> None:
        good = ("p4", "manager", "acme")
        store.apply([good], [], [draft("acme")])
        with pytest.raises(PolicyError):
            store.apply([("p4", "other", "acme"), ("p4", "bad\x00nul", "acme")], [good], [draft("acme")])
        with pytest.raises(PolicyError):
            store.apply([("zz", "x")], [])
        assert store.load() == [good]
        assert len(store.load_audit("acme")) == 1

    def test_batch_spanning_domains(self, store: Adapter) -> None:
        first = [("p4", "r1", "acme"), ("p4", "r2", "globex")]
        store.apply(first, [])
        store.apply([("p4", "r3", "acme")], [("p4", "r2", "globex")],
                    [draft("acme"), draft("globex")])
        assert sorted(store.load()) == [("p4", "r1", "acme"), ("p4", "r3", "acme")]
        assert [r.domain for r in store.load_audit()] == ["acme", "globex"]

    # -- filtered load ---------------------------------------------------------------------

    def test_filtered_load(self, store: Adapter) -> None:
        acme = hostile_rules("acme")
        globex: list[Rule] = [("p2", "globex", "customer", "read"), ("p3", "u", "globex", "active"),
                  ("g3", "u", "east", "globex"), ("g4", "u2", "u", "globex")]
        store.apply(acme + globex, [])
        assert sorted(store.load(["globex"])) == sorted(globex)
        assert sorted(store.load(["acme"])) == sorted(acme)
        assert sorted(store.load(["acme", "globex", "nowhere"])) == sorted(acme + globex)
        assert store.load([]) == []
        assert store.load(["nowhere"]) == []
        assert store.list_domains() == ["acme", "globex"]

    # -- concurrent writers ----------------------------------------------------------------

    def test_concurrent_writers_keep_every_rule_and_one_audit_chain(self, store: Adapter) -> None:
        threads, per_thread = 4, 6
        errors: list[BaseException] = []
        handles = [store if i % 2 == 0 else self.reopen(store) for i in range(threads)]

        def write(worker: int) -> None:
            try:
                for n in range(per_thread):
                    rule = ("p4", f"role-{worker}-{n}", "acme")
                    handles[worker].apply([rule], [], [draft("acme", f"{worker}-{n}", (rule,))])
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        workers = [threading.Thread(target=write, args=(i,)) for i in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(timeout=60)
        assert errors == []
        assert len(store.load(["acme"])) == threads * per_thread
        audit = store.load_audit("acme")
        assert [r.sequence for r in audit] == list(range(1, threads * per_thread + 1))
        assert find_break(audit) is None

    # -- audit -----------------------------------------------------------------------------

    def test_audit_chains_per_domain(self, store: Adapter) -> None:
        rule = ("p4", "华东一组", "acme")
        sealed = store.apply([rule], [], [draft("acme", "a", (rule,)), draft("globex", "g")])
        sealed += store.apply([], [rule], [draft("acme", "b")])
        assert [(r.domain, r.sequence) for r in sealed] == [("acme", 1), ("globex", 1), ("acme", 2)]
        assert sealed[2].previous_hash == sealed[0].hash
        again = self.reopen(store)
        assert again.load_audit() == sealed
        assert again.load_audit("acme") == [sealed[0], sealed[2]]
        assert again.load_audit("nowhere") == []
        assert find_break(again.load_audit()) is None
        assert again.load_audit("acme")[0].added == (rule,)

    def test_audit_only_change(self, store: Adapter) -> None:
        sealed = store.apply([], [], [draft("acme", "denied attempt")])
        assert [r.sequence for r in sealed] == [1]
        assert store.load() == []
        assert store.apply([], []) == []

    # -- through the Authorizer ------------------------------------------------------------

    def test_authorizer_over_the_store(self, store: Adapter) -> None:
        rules: list[Rule] = [
            ("p2", "华东一组", "customer", "read"), ("p3", "o'brien,\n", "华东一组", "active"),
            ("p4", "rep", "华东一组"), ("g", "o'brien,\n", "rep", "华东一组"),
            ("p", "rep", "华东一组", "customer", "read", "all", ""),
        ]
        store.apply(rules, [])
        authz = Authorizer(self.reopen(store))
        record = Record("customer", owner="someone")
        assert authz.check("o'brien,\n", "read", record, domain="华东一组")
        authz.apply_changes(removed=[rules[-1]])
        assert not authz.check("o'brien,\n", "read", record, domain="华东一组")
        assert sorted(store.load()) == sorted(rules[:-1])
