"""The in-memory store passes the shared suite; an Authorizer over a store that fails at the
worst moments."""

from __future__ import annotations

from collections.abc import Collection, Iterator

import pytest

from salesauthz import Authorizer, Record
from salesauthz._rules import Rule
from salesauthz.adapters import MemoryAdapter, open_adapter
from salesauthz.adapters.base import Adapter, ChangeFeed, Loaded
from salesauthz.audit import AuditKeyring
from salesauthz.errors import StorageError

from .suite import PLAIN, AdapterSuite


class TestMemoryAdapter(AdapterSuite):
    @pytest.fixture
    def store(self) -> Iterator[Adapter]:
        store = open_adapter("memory://")
        assert isinstance(store, MemoryAdapter)
        yield store
        store.close()

    def reopen(self, store: Adapter, *, audit_key: AuditKeyring | str = PLAIN) -> Adapter:
        assert isinstance(store, MemoryAdapter)
        keys = AuditKeyring.of(audit_key)
        if keys == store.audit_keys:
            return store
        # Another handle with other keys on the very same data (and lock).
        other = MemoryAdapter(audit_key=keys)
        other._lock, other._rules, other._audit, other._anchors = (
            store._lock, store._rules, store._audit, store._anchors)
        other._versions, other._log, other._facts = store._versions, store._log, store._facts
        return other

    def with_log_retention(self, store: Adapter, retention: int) -> Adapter:
        return MemoryAdapter(log_retention=retention)


class FlakyStore(MemoryAdapter):
    """A store whose reads fail while ``down`` (its writes still go through)."""

    down = False

    def changes(self, domain: str, after: int) -> ChangeFeed:
        if self.down:
            raise StorageError("the change log cannot be read", url=self.url)
        return super().changes(domain, after)

    def load_versioned(self, domains: Collection[str] | None = None) -> Loaded:
        if self.down:
            raise StorageError("the rules cannot be read", url=self.url)
        return super().load_versioned(domains)


def test_a_commit_that_reveals_a_gap_the_store_cannot_fill_still_takes_effect_here() -> None:
    rules: list[Rule] = [("p2", "acme", "customer", "read"), ("p4", "rep", "acme"),
                         ("p3", "u", "acme", "active"), ("g", "u", "rep", "acme"),
                         ("p", "rep", "acme", "customer", "read", "all", "")]
    store = FlakyStore(rules)
    here, elsewhere = Authorizer(store), Authorizer(store)
    elsewhere.apply_changes([("p4", "from-elsewhere", "acme")])  # unseen here: a gap
    store.down = True
    revoke: Rule = ("p", "rep", "acme", "customer", "read", "all", "")
    here.apply_changes(removed=[revoke])  # committed; the gap cannot be filled now
    assert not here.check("u", "read", Record("customer", owner="x"), domain="acme")  # ours: in force
    assert ("p4", "from-elsewhere", "acme") not in here.rules("acme")
    store.down = False
    # The next catch-up reloads the domain (its rules were not exactly a version of the store's).
    here.catch_up({"acme": store.load_versioned().versions["acme"]})
    assert here.rules("acme") == sorted(store.load(["acme"]))


def test_domain_filter_and_an_older_load() -> None:
    store = MemoryAdapter([("p4", "r", "acme"), ("p4", "r", "globex")])
    authz = Authorizer(store, domains=["acme"])
    authz.reload(["acme", "globex"])  # globex is not this process's
    authz.catch_up({"globex": 7})
    assert authz.domains() == ["acme"]
    older = store.load_versioned()
    authz.apply_changes([("p4", "newer", "acme")])
    authz._install(older, None, reopen=False)  # a load that finished after our commit: kept ours
    assert ("p4", "newer", "acme") in authz.rules("acme")


def test_loading_one_tenant_reads_only_its_rules(monkeypatch: pytest.MonkeyPatch) -> None:
    import salesauthz.adapters.memory as memory

    rules: list[Rule] = []
    for tenant in ("acme", "bolt", "core"):
        rules += [("p2", tenant, "customer", "read"), ("p3", "u1", tenant, "active"),
                  ("p3", "u2", tenant, "active")]
    store = MemoryAdapter(rules)
    store.commit([("p3", "u3", "bolt", "active")], [("p3", "u1", "bolt", "active")])
    store.commit([], [("p2", "core", "customer", "read"), ("p3", "u1", "core", "active"),
                      ("p3", "u2", "core", "active")])
    looked_at: list[Rule] = []

    def counting(rule: Rule) -> str:
        looked_at.append(rule)
        return str(rule[2] if rule[0] == "p3" else rule[1])

    monkeypatch.setattr(memory, "domain_of", counting)
    assert store.load(["bolt"]) == [("p2", "bolt", "customer", "read"),
                                    ("p3", "u2", "bolt", "active"), ("p3", "u3", "bolt", "active")]
    assert store.load_versioned(["acme", "nowhere"]).rules == rules[:3]
    assert looked_at == []  # no other tenant's rule was looked at
    assert store.list_domains() == ["acme", "bolt"]  # a tenant whose last rule went is gone
    assert len(store.load()) == 6
