"""The department closure table: its rows, its versions, the split of a department set into
subtree tops, and the renderers' closure form (SQLite here; PostgreSQL where it runs)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import Column, Integer, MetaData, String, Table, create_engine, select

from salesauthz import Authorizer, Record
from salesauthz.filters import closure as closure_module
from salesauthz.filters.closure import ClosureTable, is_synced, rows, sync, tree_of, tree_version
from salesauthz.filters.django import scope_q
from salesauthz.filters.sql import sql_where
from salesauthz.filters.sqlalchemy import scope_clause
from salesauthz.models import DomainDocument, compile_document
from tests.conftest import examples, service_available

from .conftest import PG_URL

REGIONS, TEAMS = 3, 12  # 1 + 3 × (1 + 12) = 40 departments


def document() -> dict[str, Any]:
    departments: dict[str, Any] = {"sales": {}}
    accounts: dict[str, Any] = {
        "root_mgr": {"department": "sales", "roles": ["manager"]},
        "r1_mgr": {"department": "r1", "roles": ["manager"]},
        "r1_lead": {"department": "r1", "roles": ["team_lead"]},  # r1 alone, not its teams
        "lead": {"department": "r0-t3", "roles": ["team_lead"]},
        "analyst": {"department": "sales", "roles": ["analyst_role"]},
        # a sub-account of the root manager, itself a manager of r2
        "assistant": {"department": "r2", "roles": ["manager"], "parent": "root_mgr"},
    }
    for region in range(REGIONS):
        departments[f"r{region}"] = {"parent": "sales"}
        for team in range(TEAMS):
            departments[f"r{region}-t{team}"] = {"parent": f"r{region}"}
            accounts[f"rep{region}-{team}"] = {"department": f"r{region}-t{team}",
                                               "roles": ["rep"]}
    return {
        "domain": "acme",
        "resources": {"customer": ["read"]},
        "departments": departments,
        "roles": {
            "manager": {"permissions": [{"scope": "department_tree", "customer": ["read"]}]},
            "team_lead": {"permissions": [{"scope": "team", "customer": ["read"]}]},
            "analyst_role": {"permissions": [{"scope": {"custom": ["r1", "r2-t5"]},
                                         "customer": ["read"]}]},
            "rep": {"permissions": [{"scope": "own", "customer": ["read"]}]},
        },
        "accounts": accounts,
    }


DIALECT = create_engine(PG_URL).dialect  # compiling only: never connects
ACCOUNTS = ["root_mgr", "r1_mgr", "r1_lead", "lead", "analyst", "assistant", "rep0-1"]
CLOSURE = ClosureTable("dept_closure")


@pytest.fixture
def authz() -> Authorizer:
    return Authorizer.from_rules(compile_document(DomainDocument.model_validate(document())))


def customers(authz: Authorizer) -> list[tuple[int, str, str, str | None]]:
    """Every owner × department of the tree (and an unknown and a NULL department)."""
    owners = [*sorted(a for a in ACCOUNTS), "rep2-7", "ghost"]
    departments: list[str | None] = [*sorted(authz.department_parents(domain="acme")),
                                     "nowhere", None]
    found: list[tuple[int, str, str, str | None]] = []
    for owner in owners:
        for department in departments:
            found.append((len(found) + 1, "acme", owner, department))
    return found


@pytest.fixture
def db(authz: Authorizer) -> Iterator[sqlite3.Connection]:
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE customer (id INTEGER PRIMARY KEY, tenant TEXT, owner TEXT, "
                 "department TEXT)")
    conn.executemany("INSERT INTO customer VALUES (?, ?, ?, ?)", customers(authz))
    for statement in CLOSURE.ddl():
        conn.execute(statement)
    yield conn
    conn.close()


def allowed(authz: Authorizer, account: str, records: list[tuple[int, str, str, str | None]]
            ) -> set[int]:
    return {i for i, _, owner, department in records
            if authz.check(account, "read", Record("customer", owner, department), domain="acme")}


def ids(conn: Any, where: str, params: Any) -> set[int]:
    return {row[0] for row in conn.execute(f"SELECT id FROM customer WHERE {where}", params)}


# -- the department tree and its versions -----------------------------------------------------


def test_department_parents_is_the_tree_one_object_per_version(authz: Authorizer) -> None:
    parents = authz.department_parents(domain="acme")
    assert parents["r1-t4"] == "r1"
    assert parents["r1"] == "sales"
    assert parents["sales"] is None
    assert len(parents) == 1 + REGIONS * (1 + TEAMS)
    assert authz.department_parents(domain="nowhere") == {}
    # a change that does not touch departments keeps the object (and the version)
    version = tree_version(authz, "acme")
    authz.apply_changes(added=[("g", "rep0-1", "manager", "acme")])
    assert authz.department_parents(domain="acme") is parents
    authz.apply_changes(added=[("g2", "r1-t99", "r1", "acme")])
    assert authz.department_parents(domain="acme")["r1-t99"] == "r1"
    assert tree_version(authz, "acme") != version


def test_the_version_is_a_digest_of_the_tree(authz: Authorizer) -> None:
    other = Authorizer.from_rules(compile_document(DomainDocument.model_validate(document())))
    assert tree_version(authz, "acme") == tree_version(other, "acme")
    assert tree_of(authz, "acme") is tree_of(authz, "acme")  # cached per version of the tree
    moved = document()
    moved["departments"]["r1-t0"] = {"parent": "r2"}  # same departments, one moved
    third = Authorizer.from_rules(compile_document(DomainDocument.model_validate(moved)))
    assert tree_version(third, "acme") != tree_version(authz, "acme")


def test_rows_are_every_ancestor_descendant_pair(authz: Authorizer) -> None:
    pairs = set(rows(authz, "acme"))
    assert ("sales", "r2-t11") in pairs
    assert ("r2", "r2-t11") in pairs
    assert ("r2-t11", "r2-t11") in pairs
    assert ("r1", "r2-t11") not in pairs
    # each team: itself, its region, the root; each region: itself and the root; the root
    assert len(pairs) == REGIONS * TEAMS * 3 + REGIONS * 2 + 1


# -- splitting a department set into subtree tops ----------------------------------------------


def test_split_finds_the_tops_of_whole_subtrees(authz: Authorizer) -> None:
    tree = tree_of(authz, "acme")
    everything = tuple(sorted(tree.below))
    assert tree.split(everything, 11) == (("sales",), ())
    region = tuple(sorted(tree.below["r1"]))
    assert tree.split(region, 11) == (("r1",), ())
    assert tree.split(region, 14) == ((), region)  # a 13-department subtree is too small
    # r1 without one of its teams: r1 itself is no top, its teams are too small
    partial = tuple(d for d in region if d != "r1-t3")
    assert tree.split(partial, 11) == ((), partial)
    assert tree.split(partial, 1) == (tuple(sorted(d for d in partial if d != "r1")), ("r1",))
    # unknown names stay inline
    assert tree.split(("ghost", *region), 11) == (("r1",), ("ghost",))


@settings(max_examples=examples(100))
@given(data=st.data())
def test_split_is_exact_for_any_set(data: st.DataObject) -> None:
    authz = Authorizer.from_rules(compile_document(DomainDocument.model_validate(document())))
    tree = tree_of(authz, "acme")
    names = [*sorted(tree.below), "ghost"]
    chosen = tuple(sorted(data.draw(st.sets(st.sampled_from(names)))))
    minimum = data.draw(st.integers(1, 40))
    tops, rest = tree.split(chosen, minimum)
    covered = set(rest).union(*(tree.below[top] for top in tops))
    assert covered == set(chosen)
    for top in tops:
        assert len(tree.below[top]) >= minimum
        assert not any(top in tree.below[other] for other in tops if other != top)
    assert all(set(rest).isdisjoint(tree.below[top]) for top in tops)


# -- syncing the table ------------------------------------------------------------------------


def test_sync_writes_the_rows_once_and_prunes_other_versions(
        authz: Authorizer, db: sqlite3.Connection) -> None:
    assert not is_synced(db, CLOSURE, authz, domain="acme", paramstyle="qmark")
    version = sync(db, CLOSURE, authz, domain="acme", paramstyle="qmark")
    assert version == tree_version(authz, "acme")
    assert is_synced(db, CLOSURE, authz, domain="acme", paramstyle="qmark")
    stored = set(db.execute("SELECT ancestor, descendant FROM dept_closure WHERE tenant = 'acme' "
                            "AND version = ?", [version]))
    assert stored == set(rows(authz, "acme"))
    db.execute("INSERT INTO dept_closure VALUES ('globex', 'v', 'a', 'a')")
    assert sync(db, CLOSURE, authz, domain="acme", paramstyle="qmark") == version  # idempotent
    assert db.execute("SELECT COUNT(*) FROM dept_closure").fetchone() == (len(stored) + 1,)
    authz.apply_changes(added=[("g2", "r0-t99", "r0", "acme")])
    assert not is_synced(db, CLOSURE, authz, domain="acme", paramstyle="qmark")
    kept = sync(db, CLOSURE, authz, domain="acme", paramstyle="qmark", prune=False)
    assert {v for (v,) in db.execute("SELECT DISTINCT version FROM dept_closure "
                                     "WHERE tenant = 'acme'")} == {version, kept}
    sync(db, CLOSURE, authz, domain="acme", paramstyle="qmark")
    assert {v for (v,) in db.execute("SELECT DISTINCT version FROM dept_closure")} == {kept, "v"}


def test_names_are_checked() -> None:
    for bad in ("dept closure", "x; DROP TABLE y", ""):
        with pytest.raises(ValueError, match="closure table name"):
            ClosureTable(bad)
    with pytest.raises(ValueError, match="closure ancestor column"):
        ClosureTable(ancestor="a.b")
    with pytest.raises(ValueError, match="min_subtree"):
        ClosureTable(min_subtree=0)
    with pytest.raises(ValueError, match="paramstyle"):
        sync(None, CLOSURE, Authorizer.from_rules([]), domain="acme",
             paramstyle="named")  # type: ignore[arg-type]


# -- the renderers' closure form --------------------------------------------------------------


def test_parameters_follow_the_tops_not_the_subtrees(authz: Authorizer) -> None:
    flt = authz.scope_filter("root_mgr", "read", "customer", domain="acme")
    where, params = sql_where(flt, owner="owner", department="department", paramstyle="qmark",
                              closure=CLOSURE.using(authz))
    assert where == ("(owner = ? OR department IN (SELECT salesauthz_closure.descendant FROM "
                     "dept_closure salesauthz_closure WHERE salesauthz_closure.tenant = ? AND "
                     "salesauthz_closure.version = ? AND salesauthz_closure.ancestor = ?))")
    assert params == ["root_mgr", "acme", tree_version(authz, "acme"), "sales"]
    where, params = sql_where(flt, owner="owner", department="department", arrays=True,
                              closure=CLOSURE.using(authz))
    assert "department = ANY(ARRAY(SELECT salesauthz_closure.descendant FROM" in where
    assert len(params) == 4
    # a team stays inline, as without the table
    team = authz.scope_filter("lead", "read", "customer", domain="acme")
    assert sql_where(team, owner="o", department="d", closure=CLOSURE.using(authz)) == (
        "(o = %s OR d = %s)", ["lead", "r0-t3"])


def test_closure_form_equals_check_once_synced_and_fails_closed_before(
        authz: Authorizer, db: sqlite3.Connection) -> None:
    records = customers(authz)
    for account in ACCOUNTS:  # never synced: never more than check
        flt = authz.scope_filter(account, "read", "customer", domain="acme")
        expected = allowed(authz, account, records)
        assert ids(db, *sql_where(flt, owner="owner", department="department",
                                  paramstyle="qmark", closure=CLOSURE.using(authz))) <= expected
    sync(db, CLOSURE, authz, domain="acme", paramstyle="qmark")
    for account in ACCOUNTS:
        flt = authz.scope_filter(account, "read", "customer", domain="acme")
        expected = allowed(authz, account, records)
        for null_aware in (authz, None):
            found = ids(db, *sql_where(flt, owner="owner", department="department",
                                       paramstyle="qmark", authz=null_aware,
                                       closure=CLOSURE.using(authz)))
            assert found == expected if null_aware else found <= expected, account
    # a new team under r1: check sees it at once; the table does not until synced
    authz.apply_changes(added=[("g2", "r1-t99", "r1", "acme")])
    db.execute("INSERT INTO customer VALUES (9999, 'acme', 'rep2-7', 'r1-t99')")
    records.append((9999, "acme", "rep2-7", "r1-t99"))
    flt = authz.scope_filter("r1_mgr", "read", "customer", domain="acme")
    expected = allowed(authz, "r1_mgr", records)
    assert 9999 in expected
    stale = ids(db, *sql_where(flt, owner="owner", department="department", paramstyle="qmark",
                               closure=CLOSURE.using(authz)))
    assert stale <= expected
    assert 9999 not in stale
    sync(db, CLOSURE, authz, domain="acme", paramstyle="qmark")
    assert ids(db, *sql_where(flt, owner="owner", department="department", paramstyle="qmark",
                              authz=authz, closure=CLOSURE.using(authz))) == expected


def test_stale_rows_of_an_old_tree_are_never_read(authz: Authorizer, db: sqlite3.Connection) -> None:
    """A department moved out of a subtree: the old version's rows still list it under its old
    ancestor, but the renderer asks for the new version only."""
    sync(db, CLOSURE, authz, domain="acme", paramstyle="qmark")
    moved = [r for r in authz.rules("acme") if r[0] == "g2" and r[1] == "r1-t0"]
    authz.apply_changes(added=[("g2", "r1-t0", "r2", "acme")], removed=moved)
    flt = authz.scope_filter("r1_mgr", "read", "customer", domain="acme")
    found = ids(db, *sql_where(flt, owner="owner", department="department", paramstyle="qmark",
                               closure=CLOSURE.using(authz)))
    assert found <= allowed(authz, "r1_mgr", customers(authz))
    assert not any(department == "r1-t0" for i, _, _, department in customers(authz)
                   if i in found and _ != "r1_mgr")


def test_sqlalchemy_and_django_closure_forms(authz: Authorizer) -> None:
    engine = create_engine("sqlite+pysqlite:///:memory:")
    metadata = MetaData()
    table = Table("customer", metadata, Column("id", Integer, primary_key=True),
                  Column("tenant", String), Column("owner", String), Column("department", String))
    metadata.create_all(engine)
    records = customers(authz)
    with engine.begin() as conn:
        conn.execute(table.insert(), [dict(zip(("id", "tenant", "owner", "department"), r,
                                               strict=True)) for r in records])
        raw = conn.connection.driver_connection
        assert raw is not None
        raw.execute(CLOSURE.ddl()[0])
        sync(raw, CLOSURE, authz, domain="acme", paramstyle="qmark")
        for account in ACCOUNTS:
            flt = authz.scope_filter(account, "read", "customer", domain="acme")
            clause = scope_clause(flt, owner=table.c.owner, department=table.c.department,
                                  domain=table.c.tenant, authz=authz,
                                  closure=CLOSURE.using(authz))
            assert set(conn.scalars(select(table.c.id).where(clause))) == allowed(
                authz, account, records), account
    engine.dispose()


def test_django_closure_form(authz: Authorizer, django_customers: Any) -> None:
    from django.db import connection

    spec = ClosureTable("sz_django_closure", min_subtree=11)  # the analyst's r2-t5 stays inline
    records = customers(authz)
    django_customers.objects.all().delete()
    django_customers.objects.bulk_create(
        django_customers(id=i, tenant=t, owner=o, department=d) for i, t, o, d in records)
    with connection.cursor() as cursor:
        cursor.execute(spec.ddl()[0])
    try:
        sync(connection, spec, authz, domain="acme")
        for account in ACCOUNTS:
            flt = authz.scope_filter(account, "read", "customer", domain="acme")
            q = scope_q(flt, domain="tenant", authz=authz, closure=spec.using(authz))
            assert set(django_customers.objects.filter(q).values_list("id", flat=True)) == (
                allowed(authz, account, records)), (account, q)
        root = authz.scope_filter("root_mgr", "read", "customer", domain="acme")
        assert "RawSQL" in str(scope_q(root, closure=spec.using(authz)))
    finally:
        with connection.cursor() as cursor:
            cursor.execute("DROP TABLE sz_django_closure")
        django_customers.objects.all().delete()


# -- PostgreSQL -------------------------------------------------------------------------------


@pytest.fixture
def pg(authz: Authorizer) -> Iterator[Any]:
    if not service_available("127.0.0.1", 5432):
        pytest.skip("PostgreSQL is not running")  # test_differential reports it as a failure
    import psycopg

    schema = "sz_closure_" + closure_module.tree_version(authz, "acme")[:8]
    with psycopg.connect(PG_URL.replace("+psycopg", ""), autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        conn.execute(f"CREATE SCHEMA {schema}")
        conn.execute(f"CREATE TABLE {schema}.customer (id int PRIMARY KEY, tenant text, "
                     "owner text, department text)")
        with conn.cursor() as cursor:
            cursor.executemany(f"INSERT INTO {schema}.customer VALUES (%s, %s, %s, %s)",
                               customers(authz))
        try:
            yield conn, schema
        finally:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


def test_postgres_closure_form_after_generic_plans(authz: Authorizer, pg: Any) -> None:
    """Each statement run 12 times (psycopg prepares at the 6th; PostgreSQL may go generic
    after 5 more): the same rows as check every time, in every form."""
    conn, schema = pg
    spec = ClosureTable(f"{schema}.dept_closure", min_subtree=5)
    for statement in spec.ddl():
        conn.execute(statement)
    sync(conn, spec, authz, domain="acme")
    records = customers(authz)
    for account in ACCOUNTS:
        flt = authz.scope_filter(account, "read", "customer", domain="acme")
        expected = allowed(authz, account, records)
        for arrays in (False, True):
            where, params = sql_where(flt, owner="owner", department="department",
                                      domain=("tenant", "acme"), authz=authz, arrays=arrays,
                                      closure=spec.using(authz))
            for _ in range(12):
                found = {r[0] for r in conn.execute(
                    f"SELECT id FROM {schema}.customer WHERE {where}", params)}
                assert found == expected, (account, arrays, where)


def test_sqlalchemy_arrays_bind_a_large_set_as_one_parameter(authz: Authorizer) -> None:
    table = Table("customer", MetaData(), Column("owner", String), Column("department", String))
    flt = authz.scope_filter("r1_mgr", "read", "customer", domain="acme")  # 13 departments
    compiled = select(table.c.owner).where(scope_clause(
        flt, owner=table.c.owner, department=table.c.department, arrays=True)).compile(
        dialect=DIALECT)
    assert "department = ANY (%(param_1)s::VARCHAR[])" in str(compiled)
    assert sorted(compiled.params["param_1"]) == sorted(tree_of(authz, "acme").below["r1"])
    team = authz.scope_filter("lead", "read", "customer", domain="acme")  # small: stays IN
    compiled = select(table.c.owner).where(scope_clause(
        team, owner=table.c.owner, department=table.c.department, arrays=True)).compile(
        dialect=DIALECT)
    assert "ANY" not in str(compiled)


def test_sqlalchemy_closure_form_with_arrays_is_an_indexable_array(authz: Authorizer) -> None:
    table = Table("customer", MetaData(), Column("owner", String), Column("department", String))
    flt = authz.scope_filter("root_mgr", "read", "customer", domain="acme")
    for arrays, form in ((True, "customer.department = ANY (array((SELECT "),
                         (False, "customer.department IN (SELECT ")):
        compiled = select(table.c.owner).where(scope_clause(
            flt, owner=table.c.owner, department=table.c.department, arrays=arrays,
            closure=CLOSURE.using(authz))).compile(dialect=DIALECT)
        assert form in str(compiled), str(compiled)
        assert sorted(map(str, compiled.params.values())) == sorted(
            ["root_mgr", "acme", tree_version(authz, "acme"), "sales"])
