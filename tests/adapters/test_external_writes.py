"""Writes made outside salesauthz — a DBA's SQL on our tables, pycasbin on a shared
``casbin_rule`` table — reach every follower within the documented bound: one heartbeat (plus
the reload), and on PostgreSQL with a LISTEN watcher at message speed (the trigger notifies)."""

from __future__ import annotations

import sqlite3
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import casbin_sqlalchemy_adapter
import pytest
import sqlalchemy as sa

from salesauthz import Authorizer
from salesauthz._rules import Rule, domain_of
from salesauthz.adapters.casbin_compat import PTYPE_PREFIX, CasbinRuleAdapter
from salesauthz.adapters.sql import SQLAdapter, domain_key, rule_key
from salesauthz.adapters.watch import Watcher, start_watcher

from . import _worker
from ._services import PG_HOST, PG_PORT, admin_connect, postgres_schema, sqlite_url
from .test_watch import GRANT, RULES, watch_url

pytestmark = pytest.mark.timeout(60)

ACCOUNT, DOMAIN, RECORD = _worker.ACCOUNT, _worker.DOMAIN, _worker.RECORD
STALENESS = 2.0  # heartbeat 0.5 s


@dataclass
class Setup:
    url: str
    schema: str | None  # PostgreSQL: the test's schema
    store_class: type[SQLAdapter]
    channel: str = ""  # PostgreSQL: the triggers' NOTIFY channel, set per writing session

    @property
    def kind(self) -> str:
        return "sqlite" if self.schema is None else "postgresql"

    @contextmanager
    def raw(self) -> Iterator[Callable[[str, tuple[Any, ...]], object]]:
        """A plain driver connection — no salesauthz in between — that commits each statement."""
        if self.schema is None:
            sqlite = sqlite3.connect(self.url.removeprefix("sqlite:///"), isolation_level=None)
            try:
                yield lambda sql, params: sqlite.execute(sql.replace("%s", "?"), params)
            finally:
                sqlite.close()
        else:
            with admin_connect() as conn:  # type: ignore[attr-defined]
                conn.execute(f'SET search_path TO "{self.schema}"')
                if self.channel:
                    conn.execute(f"SET salesauthz.channel TO '{self.channel}'")
                yield conn.execute

    def ptype(self, ptype: str) -> str:
        """The rule type as stored (a Casbin store namespaces salesauthz's rows)."""
        return PTYPE_PREFIX + ptype if self.store_class is CasbinRuleAdapter else ptype

    def insert(self, rule: Rule) -> tuple[str, tuple[Any, ...]]:
        values = (*rule[1:], *(None,) * (7 - len(rule)))
        if self.store_class is CasbinRuleAdapter:
            return ("INSERT INTO casbin_rule (ptype, v0, v1, v2, v3, v4, v5) VALUES "
                    "(%s, %s, %s, %s, %s, %s, %s)", (self.ptype(rule[0]), *values))
        return ("INSERT INTO salesauthz_rules (rule_key, domain_key, domain, ptype, v0, v1, v2, v3, v4, v5) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                (rule_key(rule), domain_key(domain_of(rule)), domain_of(rule), rule[0], *values))

    def table(self) -> str:
        return "casbin_rule" if self.store_class is CasbinRuleAdapter else "salesauthz_rules"


STORES = [SQLAdapter, CasbinRuleAdapter]


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def location(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str | None]]:
    """A store URL and, on PostgreSQL, its schema."""
    if request.param == "sqlite":
        yield sqlite_url(tmp_path), None
        return
    with postgres_schema() as url:
        yield url, url.rsplit("%3D", 1)[1]


def follow(setup: Setup) -> tuple[Authorizer, Watcher]:
    authz = Authorizer(setup.store_class(setup.url))
    # PostgreSQL: LISTEN, which the trigger notifies; SQLite: Redis, so heartbeat speed.
    setup.channel = "sa_test_" + uuid.uuid4().hex[:10]
    watch = watch_url(setup.kind if setup.kind == "postgresql" else "redis", setup.channel)
    return authz, start_watcher(authz, watch, staleness=STALENESS)


def flips(authz: Authorizer, expected: bool, timeout: float = 5.0) -> float:
    start = time.monotonic()
    while authz.check(ACCOUNT, "read", RECORD, domain=DOMAIN) != expected:
        if time.monotonic() - start > timeout:
            pytest.fail(f"the follower still answers {not expected} after {timeout} s")
        time.sleep(0.002)
    return time.monotonic() - start


@pytest.mark.parametrize("store_class", STORES)
def test_sql_written_by_someone_else_reaches_followers(location: tuple[str, str | None],
                                                       store_class: type[SQLAdapter]) -> None:
    setup = Setup(*location, store_class)
    seed = setup.store_class(setup.url)
    seed.apply(RULES, [])
    seed.close()
    authz, watcher = follow(setup)
    bound = watcher.heartbeat + 0.25
    try:
        assert authz.check(ACCOUNT, "read", RECORD, domain=DOMAIN)
        taken = {}
        column = "v4"  # the scope of a p rule, in both tables
        with setup.raw() as execute:
            execute(f"DELETE FROM {setup.table()} WHERE ptype = %s AND v0 = 'rep'", (setup.ptype("p"),))
            taken["delete"] = flips(authz, False)
            execute(*setup.insert(GRANT))
            taken["insert"] = flips(authz, True)
            execute(f"UPDATE {setup.table()} SET {column} = 'own' WHERE ptype = %s AND v0 = 'rep'",
                    (setup.ptype("p"),))
            taken["update"] = flips(authz, False)
        assert max(taken.values()) <= bound
        assert watcher.suspensions == 0
        print(f"fault-measure external {setup.kind} {store_class.__name__}: "
              + ", ".join(f"{op} {t * 1000:.0f} ms" for op, t in taken.items()) + f" (bound {bound:g} s)")
    finally:
        authz.close()


@pytest.mark.parametrize("store_class", STORES)
def test_own_writes_bump_each_version_once(location: tuple[str, str | None],
                                           store_class: type[SQLAdapter]) -> None:
    setup = Setup(*location, store_class)
    store = setup.store_class(setup.url)
    again = setup.store_class(setup.url)  # installing the triggers twice is harmless
    try:
        store.apply(RULES, [])
        assert store.versions() == {DOMAIN: 1}
        store.apply([("p4", "x", DOMAIN), ("p4", "y", DOMAIN)], [GRANT])
        assert again.versions() == {DOMAIN: 2}
        assert sorted(again.load()) == sorted([*RULES[:-1], ("p4", "x", DOMAIN), ("p4", "y", DOMAIN)])
        with setup.raw() as execute:  # and one foreign statement bumps once, however many rows
            execute(f"DELETE FROM {setup.table()} WHERE ptype = %s", (setup.ptype("p4"),))
        assert again.versions() == {DOMAIN: 3}
        assert store.versions() == {DOMAIN: 3}
    finally:
        store.close()
        again.close()


def test_pycasbin_writing_the_shared_table_is_noticed(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path)
    setup = Setup(url, None, CasbinRuleAdapter)
    seed = CasbinRuleAdapter(url)
    seed.apply([rule for rule in RULES if rule != GRANT], [])
    seed.close()
    authz, _ = follow(setup)
    engine = sa.create_engine(url)
    pycasbin = casbin_sqlalchemy_adapter.Adapter(engine)
    try:
        assert not authz.check(ACCOUNT, "read", RECORD, domain=DOMAIN)
        # A pycasbin application on salesauthz's model writes salesauthz's (namespaced) rows.
        pycasbin.add_policy("p", PTYPE_PREFIX + "p", list(GRANT[1:]))
        assert flips(authz, True) <= 0.75
        pycasbin.remove_policy("p", PTYPE_PREFIX + "p", list(GRANT[1:]))
        assert flips(authz, False) <= 0.75
        # Another application's own rows in the shared table change nothing for us.
        pycasbin.add_policy("p", "p", ["alice", "data1", "read"])
        time.sleep(0.75)
        assert not authz.check(ACCOUNT, "read", RECORD, domain=DOMAIN)
    finally:
        authz.close()
        engine.dispose()


@pytest.mark.postgres
def test_postgresql_trigger_notifies_ignores_unknown_rows_and_bumps_all_on_truncate() -> None:
    with postgres_schema() as url:
        schema = url.rsplit("%3D", 1)[1]
        store = CasbinRuleAdapter(url)
        store.apply([("p4", "a", "acme"), ("p4", "b", "华东")], [])
        with admin_connect() as conn:  # type: ignore[attr-defined]
            conn.execute(f'SET search_path TO "{schema}"')
            conn.execute(f"SET salesauthz.channel TO '{schema}'")  # not the shared default
            conn.execute(f'LISTEN "{schema}"')
            conn.execute("INSERT INTO casbin_rule (ptype, v0, v1) VALUES (%s, 'c', '华东'), "
                         "('p', 'another app', 'acme')", (PTYPE_PREFIX + "p4",))
            payloads = [notify.payload for notify in conn.notifies(timeout=1.0, stop_after=1)]
            assert payloads == ['{"d" : "华东", "v" : 2}']  # another app's p: acme untouched
            assert store.versions() == {"acme": 1, "华东": 2}
            conn.execute("TRUNCATE casbin_rule")
            assert store.versions() == {"acme": 2, "华东": 3}
            # The function runs as its owner with the installer's search_path: a session with
            # another search_path (a DBA's) still finds salesauthz's tables.
            conn.execute("SET search_path TO public")
            conn.execute(f'INSERT INTO "{schema}".casbin_rule (ptype, v0, v1) VALUES (%s, %s, %s)',
                         (PTYPE_PREFIX + "p4", "d", "acme"))
        assert store.versions() == {"acme": 3, "华东": 3}
        with store.engine.connect() as conn:
            triggers = conn.exec_driver_sql(
                "SELECT count(*) FROM pg_trigger WHERE tgrelid = 'casbin_rule'::regclass "
                "AND NOT tgisinternal").scalar()
        assert triggers == 4  # insert, update, delete, truncate — once, after two installs
        store.close()


def test_sqlite_queue_is_folded_once(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path)
    first, second = SQLAdapter(url), SQLAdapter(url)
    first.apply(RULES, [])
    setup = Setup(url, None, SQLAdapter)
    with setup.raw() as execute:
        execute(*setup.insert(("p4", "x", DOMAIN)))
        execute(*setup.insert(("p4", "y", "华东")))
    assert second.versions() == {DOMAIN: 2, "华东": 1}
    assert first.versions() == {DOMAIN: 2, "华东": 1}  # already folded by the other reader
    with first.engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM salesauthz_external_changes").scalar() == 0
        assert conn.exec_driver_sql("SELECT count(*) FROM salesauthz_own_writes").scalar() == 0
    first.close()
    second.close()


def test_a_store_from_before_the_triggers_works_and_is_upgraded_by_create(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path)
    old = SQLAdapter(url)
    old.apply(RULES, [])
    with old.engine.begin() as conn:  # as an earlier release left it
        for (name,) in conn.exec_driver_sql("SELECT name FROM sqlite_master WHERE type = 'trigger'").all():
            conn.exec_driver_sql(f"DROP TRIGGER {name}")
        conn.exec_driver_sql("DROP TABLE salesauthz_own_writes")
        conn.exec_driver_sql("DROP TABLE salesauthz_external_changes")
    old.close()
    store = SQLAdapter(url, create=False)
    store.apply([("p4", "x", DOMAIN)], [])
    assert store.versions() == {DOMAIN: 2}
    store.close()
    upgraded = SQLAdapter(url)
    setup = Setup(url, None, SQLAdapter)
    with setup.raw() as execute:
        execute(*setup.insert(("p4", "y", DOMAIN)))
    assert upgraded.versions() == {DOMAIN: 3}
    upgraded.close()


@pytest.mark.postgres
def test_postgresql_channel_setting_names_the_notify_channel() -> None:
    import psycopg

    with postgres_schema() as url:
        schema = url.rsplit("%3D", 1)[1]
        SQLAdapter(url).close()
        with psycopg.connect(f"host={PG_HOST} port={PG_PORT} user=postgres dbname=test "
                             f"options='-csearch_path={schema} -csalesauthz.channel=crm_authz'",
                             autocommit=True) as conn:
            conn.execute("LISTEN crm_authz")
            setup = Setup(url, schema, SQLAdapter)
            conn.execute(*setup.insert(("p4", "x", DOMAIN)))
            assert [n.payload for n in conn.notifies(timeout=1.0, stop_after=1)] == [
                f'{{"d" : "{DOMAIN}", "v" : 1}}']
