"""The Casbin-compatible store (an existing ``casbin_rule`` table) passes the shared suite, and
shares its table with another Casbin application (pycasbin + ``casbin-sqlalchemy-adapter``): on
SQLite and PostgreSQL, whichever starts first, including a table an older salesauthz wrote."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import casbin
import casbin_sqlalchemy_adapter
import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from salesauthz import Authorizer, PolicyError, Record, StorageError
from salesauthz._rules import Rule, domain_of
from salesauthz.adapters import CasbinRuleAdapter, open_adapter
from salesauthz.adapters.base import Adapter
from salesauthz.adapters.casbin_compat import PTYPE_PREFIX, rules_from_casbin_adapter
from salesauthz.adapters.sql import VALUE_COLUMNS, domain_key, engine_url, rule_values
from salesauthz.audit import AuditKeyring
from salesauthz.casbin import StoreAdapter, model_path, register_functions, value_problem
from salesauthz.checker.cli import main
from tests.conftest import examples

from ._services import postgres_schema
from .suite import HOSTILE, PLAIN, AdapterSuite, values

FIXTURES = Path(__file__).parents[1] / "fixtures" / "casbin" / "pycasbin"
THEIR_MODEL = str(FIXTURES / "rbac_with_domains_model.conf")
THEIR_POLICY = [
    ("p", "admin", "domain1", "data1", "read"), ("p", "admin", "domain1", "data1", "write"),
    ("p", "admin", "domain2", "data2", "read"), ("p", "admin", "domain2", "data2", "write"),
    ("g", "alice", "admin", "domain1"), ("g", "bob", "admin", "domain2"),
]
THEIR_EXPECTATIONS = [  # pycasbin tests/test_enforcer.py, test_enforce_rbac_with_domains
    (("alice", "domain1", "data1", "read"), True), (("alice", "domain1", "data1", "write"), True),
    (("alice", "domain1", "data2", "read"), False), (("alice", "domain1", "data2", "write"), False),
    (("bob", "domain2", "data1", "read"), False), (("bob", "domain2", "data1", "write"), False),
    (("bob", "domain2", "data2", "read"), True), (("bob", "domain2", "data2", "write"), True),
]
RULES: list[Rule] = [
    ("p2", "acme", "customer", "read"), ("p3", "alice", "acme", "active"), ("p4", "rep", "acme"),
    ("g", "alice", "rep", "acme"), ("p", "rep", "acme", "customer", "read", "all", ""),
]
# The hostile identifiers of the shared suite that a Casbin store can hold.
CASBIN_SAFE = [name for name in HOSTILE if value_problem(name) is None]


def casbin_safe_rules(domain: str) -> list[Rule]:
    rules: list[Rule] = []
    for i, name in enumerate(n for n in CASBIN_SAFE if n):
        rules += [("p", name, domain, "customer", "read", "own", ""), ("g", f"{name}#{i}", name, domain),
                  ("p4", name, domain), ("g2", name, "", domain)]
    return [*rules, ("p", "r", domain, "customer", "read", "all", "2030-01-01T00:00:00Z")]


class CasbinSuite(AdapterSuite):
    """The shared suite; its tests of hostile identifiers use those a Casbin store can hold
    (the others are refused: ``test_values_casbin_loaders_would_change_are_refused``)."""

    url: str

    def reopen(self, store: Adapter, *, audit_key: AuditKeyring | str = PLAIN) -> Adapter:
        other = CasbinRuleAdapter(self.url, audit_key=audit_key)
        self.opened.append(other)
        return other

    def shared_url(self) -> str | None:
        return "casbin+" + self.url

    def with_log_retention(self, store: Adapter, retention: int) -> Adapter:
        other = CasbinRuleAdapter(self.url, log_retention=retention)
        self.opened.append(other)
        return other

    @pytest.fixture(autouse=True)
    def _close_reopened(self) -> Iterator[None]:
        self.opened: list[CasbinRuleAdapter] = []
        yield
        for store in self.opened:
            store.close()

    def test_round_trip_hostile_identifiers(self, store: Adapter) -> None:
        domains = ["华东一组", "a'\"; --", "x" * 1000]
        expected = [r for d in domains for r in casbin_safe_rules(d)]
        store.apply(expected, [])
        assert sorted(store.load()) == sorted(expected)
        other = self.reopen(store)
        for domain in domains:
            assert sorted(other.load([domain])) == sorted(casbin_safe_rules(domain))
        assert sorted(other.list_domains()) == sorted(domains)

    @settings(max_examples=examples(15), suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                         HealthCheck.differing_executors])
    @given(names=st.lists(values.filter(lambda v: value_problem(v) is None), min_size=1, max_size=4,
                          unique=True),
           domain=values.filter(lambda v: value_problem(v) is None))
    def test_round_trip_any_text(self, store: Adapter, names: list[str], domain: str) -> None:
        rules: list[Rule] = [("p4", name, domain) for name in names]
        rules += [("g", names[0], name, domain) for name in names]
        store.apply(rules, [])
        try:
            assert sorted(self.reopen(store).load([domain])) == sorted(rules)
        finally:
            store.apply([], rules)
        assert store.load([domain]) == []

    def test_filtered_load(self, store: Adapter) -> None:
        acme = casbin_safe_rules("acme")
        globex: list[Rule] = [("p2", "globex", "customer", "read"), ("p3", "u", "globex", "active"),
                              ("g3", "u", "east", "globex"), ("g4", "u2", "u", "globex")]
        store.apply(acme + globex, [])
        assert sorted(store.load(["globex"])) == sorted(globex)
        assert sorted(store.load(["acme", "globex", "nowhere"])) == sorted(acme + globex)
        assert store.load(["nowhere"]) == []
        assert store.list_domains() == ["acme", "globex"]

    def test_authorizer_over_the_store(self, store: Adapter) -> None:
        rules: list[Rule] = [
            ("p2", "华东一组", "customer", "read"), ("p3", "o'brien (jr)", "华东一组", "active"),
            ("p4", "rep", "华东一组"), ("g", "o'brien (jr)", "rep", "华东一组"),
            ("p", "rep", "华东一组", "customer", "read", "all", ""),
        ]
        store.apply(rules, [])
        authz = Authorizer(self.reopen(store))
        assert authz.check("o'brien (jr)", "read", Record("customer", owner="x"), domain="华东一组")
        authz.apply_changes(removed=[rules[-1]])
        assert not authz.check("o'brien (jr)", "read", Record("customer", owner="x"), domain="华东一组")

    def test_values_casbin_loaders_would_change_are_refused(self, store: Adapter) -> None:
        unsafe = [name for name in HOSTILE if value_problem(name) is not None]
        assert sorted(unsafe) == sorted(["a,b", "new\nline", " padded "])
        store.apply([("p4", "kept", "acme")], [])
        for name in [*unsafe, "lead)", "(draft", "tab\t"]:
            with pytest.raises(PolicyError, match="cannot be stored in a Casbin store") as raised:
                store.apply([("p4", "fine", "acme"), ("p4", name, "acme")], [("p4", "kept", "acme")])
            assert repr(name) in str(raised.value)
        assert store.load() == [("p4", "kept", "acme")]  # nothing written


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


# -- sharing the table with another Casbin application -------------------------------------------


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def shared_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'shared.db'}"
        return
    with postgres_schema() as url:
        yield url


class TheirApp:
    """Another application: pycasbin with casbin-sqlalchemy-adapter on the same table."""

    def __init__(self, url: str) -> None:
        self.adapter = casbin_sqlalchemy_adapter.Adapter(engine_url(url))
        self.enforcer: Any = casbin.Enforcer(THEIR_MODEL, self.adapter)

    def write_policy(self) -> None:
        for ptype, *rule in THEIR_POLICY:
            if ptype == "p":
                assert self.enforcer.add_policy(*rule)
            else:
                assert self.enforcer.add_grouping_policy(*rule)

    def decides_as_pycasbins_tests_expect(self) -> None:
        for request, expected in THEIR_EXPECTATIONS:
            assert self.enforcer.enforce(*request) == expected, request

    def close(self) -> None:
        self.adapter._engine.dispose()


def stored_ptypes(url: str) -> dict[str, int]:
    engine = sa.create_engine(engine_url(url))
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT ptype, count(*) FROM casbin_rule GROUP BY ptype"))
            return {str(ptype): int(count) for ptype, count in rows}
    finally:
        engine.dispose()


def check_ours(url: str) -> None:
    with Authorizer.from_url("casbin+" + url) as authz:
        assert sorted(authz.rules()) == sorted(RULES)
        assert authz.domains() == ["acme"]
        assert authz.check("alice", "read", Record("customer", owner="bob"), domain="acme")
        assert not authz.check("alice", "read", Record("data1"), domain="domain1")


def test_they_start_first_then_salesauthz_joins(shared_url: str) -> None:
    theirs = TheirApp(shared_url)
    theirs.write_policy()
    theirs.decides_as_pycasbins_tests_expect()
    # salesauthz starts on the table they wrote and ignores their rows.
    with Authorizer.from_url("casbin+" + shared_url) as authz:
        assert authz.domains() == []
        assert isinstance(authz.store, CasbinRuleAdapter)
        assert sorted(authz.store.foreign_rows()) == sorted(THEIR_POLICY)
        authz.apply_changes(RULES)
    # Their enforcer reloads with salesauthz's rows in the table: no 'invalid policy size'.
    theirs.enforcer.load_policy()
    theirs.decides_as_pycasbins_tests_expect()
    fresh = TheirApp(shared_url)
    fresh.decides_as_pycasbins_tests_expect()
    their_p = sorted(r[1:] for r in THEIR_POLICY if r[0] == "p")
    assert sorted(map(tuple, fresh.enforcer.get_policy())) == their_p
    # Their own changes (auto-save) never touch salesauthz's rows, even filtered removals.
    fresh.enforcer.delete_roles_for_user_in_domain("alice", "admin", "domain1")
    fresh.enforcer.remove_filtered_policy(1, "domain2")
    fresh.enforcer.add_policy("carol", "acme", "customer", "read")
    assert not fresh.enforcer.enforce("alice", "domain1", "data1", "read")
    assert fresh.enforcer.enforce("carol", "acme", "customer", "read")
    check_ours(shared_url)
    ours = {PTYPE_PREFIX + t: 1 for t in ("p", "p2", "p3", "p4", "g")}
    assert stored_ptypes(shared_url) == {"p": 3, "g": 1, **ours}
    theirs.close()
    fresh.close()


def test_salesauthz_starts_first_then_they_join(shared_url: str) -> None:
    with Authorizer.from_url("casbin+" + shared_url) as authz:
        authz.apply_changes(RULES)
    theirs = TheirApp(shared_url)  # loads a table holding only salesauthz's rows: nothing for it
    assert theirs.enforcer.get_policy() == []
    assert not theirs.enforcer.enforce("alice", "acme", "customer", "read")
    theirs.write_policy()
    theirs.decides_as_pycasbins_tests_expect()
    again = TheirApp(shared_url)
    again.decides_as_pycasbins_tests_expect()
    again.close()
    check_ours(shared_url)
    # A plain pycasbin enforcer on salesauthz's model reads salesauthz's rows of the shared table.
    plain = casbin.Enforcer(model_path(), StoreAdapter("casbin+" + shared_url))
    register_functions(plain)
    assert plain.enforce("alice", "acme", "customer", "read", "bob", "", "", "")
    assert sorted(map(tuple, plain.get_model().get_policy("p", "p4"))) == [("rep", "acme")]
    theirs.close()


def test_their_save_policy_rewrites_the_whole_table(tmp_path: Path) -> None:
    """The one thing sharing cannot survive (docs/coming-from-casbin.md says so):
    casbin-sqlalchemy-adapter's ``save_policy`` deletes every row and writes back its own."""
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    with Authorizer.from_url("casbin+" + url) as authz:
        authz.apply_changes(RULES)
    theirs = TheirApp(url)
    theirs.write_policy()
    theirs.enforcer.save_policy()
    assert stored_ptypes(url) == {"p": 4, "g": 2}
    theirs.close()


def test_existing_table_gets_the_indexes_a_filtered_load_needs(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    TheirApp(url).close()  # creates casbin_rule without indexes
    CasbinRuleAdapter(url).close()
    engine = sa.create_engine(url)
    names = {index["name"] for index in sa.inspect(engine).get_indexes("casbin_rule")}
    engine.dispose()
    assert names == {"ix_casbin_rule_ptype", "ix_casbin_rule_v0", "ix_casbin_rule_v1", "ix_casbin_rule_v2"}


# -- a table written by an older salesauthz (no namespace) ------------------------------------------


def write_as_older_salesauthz(url: str, rules: list[Rule], foreign: list[dict[str, str]]) -> None:
    """What salesauthz before the namespace left in a table: the rule type itself in ``ptype``,
    values in ``v0``… (``NULL`` past the rule's width) and a version row per domain it wrote."""
    store = CasbinRuleAdapter(url)
    with store.engine.begin() as conn:
        blank = dict.fromkeys(("ptype", *VALUE_COLUMNS))
        conn.execute(store.rules_table.insert(),
                     [rule_values(r) for r in rules] + [{**blank, **f} for f in foreign])
        conn.execute(store.versions_table.insert(), [
            {"domain_key": domain_key(d), "domain": d, "version": 3}
            for d in sorted({domain_of(r) for r in rules})])
    store.close()


def test_a_table_an_older_salesauthz_wrote_is_migrated(shared_url: str) -> None:
    foreign = [  # another application's rows: a g row shaped like salesauthz's, in a domain it never wrote
        {"ptype": "g", "v0": "alice", "v1": "admin", "v2": "domain1"},
        {"ptype": "p", "v0": "admin", "v1": "domain1", "v2": "data1", "v3": "read"},
    ]
    malformed = [{"ptype": "p4", "v0": "", "v1": "acme"},  # not valid rules: left alone
                 {"ptype": "p4", "v0": "x", "v1": "acme", "v2": "too wide"}]
    write_as_older_salesauthz(shared_url, RULES, [*foreign, *malformed])
    assert stored_ptypes(shared_url) == {"p": 2, "p2": 1, "p3": 1, "p4": 3, "g": 2}
    migrated = CasbinRuleAdapter(shared_url)
    assert sorted(migrated.load()) == sorted(RULES)
    assert migrated.versions()["acme"] == 4  # bumped: watching processes reload
    assert migrated.migrate_legacy_rows() == {}  # idempotent
    migrated.close()
    assert stored_ptypes(shared_url) == {"p": 1, "p4": 2, "g": 1,
                                         **{PTYPE_PREFIX + t: 1 for t in ("p", "p2", "p3", "p4", "g")}}
    # The other application's rows were left alone, and it can load the table now.
    theirs = TheirApp(shared_url)
    assert theirs.enforcer.enforce("alice", "domain1", "data1", "read")
    theirs.close()
    check_ours(shared_url)


def test_no_migration_once_the_table_is_namespaced(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    with Authorizer.from_url("casbin+" + url) as authz:
        authz.apply_changes(RULES)  # namespaced rows and a version for acme
    # Another application writes a row shaped like salesauthz's, in salesauthz's domain.
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO casbin_rule (ptype, v0, v1, v2) "
                             "VALUES ('g', 'eve', 'rep', 'acme')"))
    engine.dispose()
    store = CasbinRuleAdapter(url)
    assert store.migrate_legacy_rows() == {}
    assert ("g", "eve", "rep", "acme") not in store.load()
    store.close()
    assert stored_ptypes(url)["g"] == 1


def test_migration_without_create_is_left_to_the_next_open_that_may(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    write_as_older_salesauthz(url, RULES, [])
    read_only = CasbinRuleAdapter(url, create=False)
    assert read_only.load() == []
    read_only.close()
    assert sorted(CasbinRuleAdapter(url).load()) == sorted(RULES)


# -- export on a table another application wrote ---------------------------------------------------


def test_export_of_their_table_is_a_clear_error_and_writes_nothing(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    theirs = TheirApp(url)
    theirs.write_policy()
    theirs.close()
    out = tmp_path / "out"
    assert main(["export", "casbin+" + url, "--domain", "domain1", "--to", str(out)]) == 2
    err = capsys.readouterr().err
    assert "no rules for domain 'domain1'" in err
    assert "holds 6 rows of another Casbin application" in err
    assert "--from-casbin" in err
    assert not out.exists()


def test_export_of_malformed_rows_is_a_clear_error_and_writes_nothing(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    with Authorizer.from_url("casbin+" + url) as authz:
        authz.apply_changes(RULES)
    engine = sa.create_engine(url)
    with engine.begin() as conn:  # a hand-written row: a permission with three values
        conn.execute(sa.text(f"INSERT INTO casbin_rule (ptype, v0, v1, v2) "
                             f"VALUES ('{PTYPE_PREFIX}p', 'rep', 'acme', 'order')"))
    engine.dispose()
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine", encoding="utf-8")
    assert main(["export", "casbin+" + url, "--domain", "acme", "--to", str(out)]) == 2
    err = capsys.readouterr().err
    assert "rule values must be strings" in err
    assert "nothing written" in err
    assert "Traceback" not in err
    assert [p.name for p in out.iterdir()] == ["keep.txt"]  # no model.conf, no acme.yaml
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no scratch left


def test_export_of_rules_no_document_can_hold_is_a_clear_error(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    """Well-formed rules that are still no policy document: a resource type named ``scope``."""
    url = "casbin+sqlite:///" + str(tmp_path / "shared.db")
    store = open_adapter(url)
    store.apply([("p2", "acme", "scope", "read"), ("p4", "rep", "acme"),
                 ("p", "rep", "acme", "scope", "read", "all", "")], [])
    store.close()
    assert main(["export", url, "--domain", "acme", "--to", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "cannot write the rules as a policy document" in err
    assert "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_rules_from_another_casbin_adapter_must_be_salesauthz_rules(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    theirs = casbin_sqlalchemy_adapter.Adapter(url)
    for rule in RULES:
        theirs.add_policy(rule[0][0], rule[0], list(rule[1:]))
    assert sorted(rules_from_casbin_adapter(theirs)) == sorted(RULES)
    other = TheirApp(f"sqlite:///{tmp_path / 'other.db'}")
    other.write_policy()
    with pytest.raises(PolicyError, match="import --from-casbin"):
        rules_from_casbin_adapter(other.adapter)
    other.close()


def test_foreign_rows_and_duplicates_are_tolerated(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'casbin.db'}"
    store = CasbinRuleAdapter(url)
    dup = {"ptype": PTYPE_PREFIX + "p4", "v0": "dup", "v1": "acme"}
    with store.engine.begin() as conn:
        conn.execute(store.rules_table.insert(), [
            dup, dup, {"ptype": "p9", "v0": "other app", "v1": "acme"},
            {"ptype": None, "v0": "x", "v1": None},
            {"ptype": PTYPE_PREFIX + "p4", "v0": "a,b", "v1": "acme"},  # written before values were checked
        ])
        conn.execute(store.rules_table.insert(), {"ptype": "p", **{f"v{i}": str(i + 1) for i in range(6)}})
    assert sorted(store.load(["acme"])) == [("p4", "a,b", "acme"), ("p4", "dup", "acme")]
    store.apply([], [("p4", "dup", "acme"), ("p4", "a,b", "acme")])  # removing such a value is allowed
    assert store.load() == []
    assert store.foreign_rows() == [("p9", "other app", "acme"), ("p", "1", "2", "3", "4", "5", "6")]
    with store.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(store.rules_table)).scalar() == 3
    store.close()


def test_a_table_of_that_name_that_is_not_casbins_is_a_clear_error(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'other.db'}"
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE casbin_rule (id INTEGER PRIMARY KEY, note TEXT)"))
    engine.dispose()
    with pytest.raises(StorageError, match=r"cannot index store sqlite:///.*other\.db"):
        CasbinRuleAdapter(url)


def test_custom_table_name(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'casbin.db'}"
    store = CasbinRuleAdapter(url, table="policy_lines")
    store.apply(RULES, [])
    assert sorted(store.load()) == sorted(RULES)
    assert store.rules_table.name == "policy_lines"
    store.close()
