"""The Casbin-compatible store (an existing ``casbin_rule`` table) passes the shared suite, and
stays readable and writable by pycasbin's own ``casbin-sqlalchemy-adapter``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import casbin_sqlalchemy_adapter
import pytest
import sqlalchemy as sa

from salesauthz.adapters import CasbinRuleAdapter, open_adapter
from salesauthz.adapters.base import Adapter
from salesauthz.adapters.casbin_compat import rules_from_casbin_adapter
from salesauthz.audit import AuditKeyring
from salesauthz.reference import reference_enforcer

from ._services import postgres_schema
from .suite import PLAIN, AdapterSuite


class CasbinSuite(AdapterSuite):
    url: str

    def reopen(self, store: Adapter, *, audit_key: AuditKeyring | str = PLAIN) -> Adapter:
        other = CasbinRuleAdapter(self.url, audit_key=audit_key)
        self.opened.append(other)
        return other

    def shared_url(self) -> str | None:
        return "casbin+" + self.url

    @pytest.fixture(autouse=True)
    def _close_reopened(self) -> Iterator[None]:
        self.opened: list[CasbinRuleAdapter] = []
        yield
        for store in self.opened:
            store.close()


class TestCasbinRuleSQLite(CasbinSuite):
    @pytest.fixture
    def store(self, tmp_path: Path) -> Iterator[Adapter]:
        self.url = f"sqlite:///{tmp_path / 'casbin.db'}"
        store = open_adapter("casbin+" + self.url)
        assert isinstance(store, CasbinRuleAdapter)
        yield store
        store.close()


@pytest.mark.postgres
class TestCasbinRulePostgreSQL(CasbinSuite):
    @pytest.fixture
    def store(self) -> Iterator[Adapter]:
        with postgres_schema() as url:
            self.url = url
            store = CasbinRuleAdapter(url)
            yield store
            store.close()


RULES = [
    ("p2", "acme", "customer", "read"), ("p3", "alice", "acme", "active"), ("p4", "rep", "acme"),
    ("g", "alice", "rep", "acme"), ("p", "rep", "acme", "customer", "read", "all", ""),
]


def test_existing_casbin_table_is_shared_with_pycasbin(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'casbin.db'}"
    theirs = casbin_sqlalchemy_adapter.Adapter(url)  # creates casbin_rule with VARCHAR(255)
    theirs.add_policy("p", "p4", ["legacy", "acme"])
    ours = CasbinRuleAdapter(url)
    assert ours.load(["acme"]) == [("p4", "legacy", "acme")]
    ours.apply(RULES, [("p4", "legacy", "acme")])
    # pycasbin reads what we wrote and decides the same way.
    enforcer = reference_enforcer(rules_from_casbin_adapter(theirs))
    assert enforcer.enforce("alice", "acme", "customer", "read", "bob", "")
    assert sorted(rules_from_casbin_adapter(theirs)) == sorted(RULES)
    ours.close()


def test_foreign_rows_and_duplicates_are_tolerated(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'casbin.db'}"
    store = CasbinRuleAdapter(url)
    with store.engine.begin() as conn:
        conn.execute(store.rules_table.insert(), [
            {"ptype": "p4", "v0": "dup", "v1": "acme"}, {"ptype": "p4", "v0": "dup", "v1": "acme"},
            {"ptype": "p9", "v0": "other app", "v1": "acme"},
        ])
    assert store.load(["acme"]) == [("p4", "dup", "acme")]
    store.apply([], [("p4", "dup", "acme")])
    assert store.load() == []
    with store.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(store.rules_table)).scalar() == 1
    store.close()


def test_custom_table_name(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'casbin.db'}"
    store = CasbinRuleAdapter(url, table="policy_lines")
    store.apply(RULES, [])
    assert sorted(store.load()) == sorted(RULES)
    assert store.rules_table.name == "policy_lines"
    store.close()
