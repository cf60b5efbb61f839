"""The rendered predicates are index-friendly on PostgreSQL, even for large sets.

With sequential scans disabled, PostgreSQL must still find an index path for the scoped query:
that proves the predicate can use the owner and department indexes (it is "sargable"). Timing
is the benchmark's business (``benchmarks/bench_filters.py``), not this test's.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from psycopg.sql import Literal
from sqlalchemy import Engine

from salesauthz import Authorizer
from salesauthz.filters.closure import ClosureTable, sync
from salesauthz.filters.sql import sql_where
from salesauthz.models import DomainDocument, compile_document


def _organisation(reps: int, departments: int) -> Authorizer:
    document: dict[str, Any] = {
        "domain": "plans",
        "resources": {"customer": ["read"]},
        "departments": {"root": {}, **{f"d{i}": {"parent": "root"} for i in range(departments)}},
        "roles": {"manager": {"permissions": [{"scope": "department_tree", "customer": ["read"]}]},
                  "rep": {"permissions": [{"scope": "own", "customer": ["read"]}]}},
        "accounts": {"boss": {"department": "root", "roles": ["manager"]},
                     **{f"rep{i}": {"department": f"d{i % departments}", "roles": ["rep"]}
                        for i in range(reps)}},
    }
    return Authorizer.from_rules(compile_document(DomainDocument.model_validate(document)))


@pytest.fixture(scope="module")
def indexed_table(pg_engine: Engine) -> Iterator[str]:
    name = "sz_plans_" + uuid.uuid4().hex[:12]
    with pg_engine.begin() as conn:
        conn.exec_driver_sql(
            f"CREATE TABLE {name} (id int PRIMARY KEY, tenant text, owner text, department text)")
        conn.exec_driver_sql(
            f"INSERT INTO {name} SELECT g, 'plans', 'rep' || mod(g, 3000), 'd' || mod(g, 1000)"
            " FROM generate_series(1, 30000) AS g")
        conn.exec_driver_sql(f"CREATE INDEX {name}_owner ON {name} (owner)")
        conn.exec_driver_sql(f"CREATE INDEX {name}_department ON {name} (department)")
        conn.exec_driver_sql(f"ANALYZE {name}")
    yield name
    with pg_engine.begin() as conn:
        conn.exec_driver_sql(f"DROP TABLE {name}")


def _plan(engine: Engine, table: str, where: str, params: list[Any] | dict[str, Any]) -> str:
    with engine.begin() as conn:
        conn.exec_driver_sql("SET LOCAL enable_seqscan = off")
        row = conn.exec_driver_sql(f"EXPLAIN (FORMAT JSON) SELECT id FROM {table} WHERE {where}",
                                   tuple(params) if isinstance(params, list) else params).one()
    return json.dumps(row[0])


@pytest.mark.parametrize("arrays", [False, True])
def test_large_scopes_keep_an_index_path(pg_engine: Engine, indexed_table: str, arrays: bool) -> None:
    authz = _organisation(reps=3000, departments=1000)
    manager = authz.scope_filter("boss", "read", "customer", domain="plans")
    assert len(manager.departments) == 1001
    where, params = sql_where(manager, owner="owner", department="department",
                              domain=("tenant", "plans"), arrays=arrays, authz=authz)
    plan = _plan(pg_engine, indexed_table, where, params)
    assert "Seq Scan" not in plan
    assert f"{indexed_table}_department" in plan
    rep = authz.scope_filter("rep7", "read", "customer", domain="plans")
    where, params = sql_where(rep, owner="owner", department="department", arrays=arrays)
    plan = _plan(pg_engine, indexed_table, where, params)
    assert "Seq Scan" not in plan
    assert f"{indexed_table}_owner" in plan


def _scans(node: dict[str, Any]) -> set[tuple[str, str]]:
    """``(node type, relation)`` of every scan in a JSON plan."""
    found = {(node["Node Type"], node["Relation Name"])} if "Relation Name" in node else set()
    for child in node.get("Plans", ()):
        found |= _scans(child)
    return found


def test_a_closure_subtree_keeps_the_department_index(pg_engine: Engine,
                                                      indexed_table: str) -> None:
    """With ``arrays=True`` the closure form is ``department = ANY(ARRAY(SELECT ...))``: one top
    bound, and the department index still serves it inside the ``OR``."""
    authz = _organisation(reps=3000, departments=1000)
    spec = ClosureTable(f"{indexed_table}_closure")
    raw = pg_engine.raw_connection()
    try:
        conn = raw.driver_connection
        assert conn is not None
        for statement in spec.ddl():
            conn.execute(statement)
        sync(conn, spec, authz, domain="plans")
        conn.execute(f"ANALYZE {spec.name}")
        raw.commit()
        manager = authz.scope_filter("boss", "read", "customer", domain="plans")
        where, params = sql_where(manager, owner="owner", department="department",
                                  domain=("tenant", "plans"), arrays=True,
                                  closure=spec.using(authz))
        assert isinstance(params, list)
        assert params[-1] == "root"
        assert len(params) == 5  # tenant, owner, and the closure's tenant, version and top
        plan = _plan(pg_engine, indexed_table, where, params)
        assert ("Seq Scan", indexed_table) not in _scans(json.loads(plan)[0]["Plan"]), plan
        assert f"{indexed_table}_department" in plan, plan
    finally:
        cursor = raw.cursor()
        cursor.execute(f"DROP TABLE IF EXISTS {spec.name}")
        cursor.close()
        raw.commit()
        raw.close()


def _team_organisation(departments: int) -> Authorizer:
    document: dict[str, Any] = {
        "domain": "plans",
        "resources": {"customer": ["read"]},
        "departments": {"root": {}, **{f"d{i}": {"parent": "root"} for i in range(departments)}},
        "roles": {"lead": {"permissions": [{"scope": "team", "customer": ["read"]}]}},
        "accounts": {"lead7": {"department": "d7", "roles": ["lead"]}},
    }
    return Authorizer.from_rules(compile_document(DomainDocument.model_validate(document)))


@pytest.fixture(scope="module")
def list_view_table(pg_engine: Engine) -> Iterator[str]:
    """100,000 customers of 2,000 owners in 1,000 departments, with the indexes of a list view
    ordered by last contact: where PostgreSQL's generic plan of ``department = ANY($3)`` (an
    array it cannot see, estimated as 10 elements) walks the last-contact index instead."""
    name = "sz_generic_" + uuid.uuid4().hex[:12]
    with pg_engine.begin() as conn:
        conn.exec_driver_sql(f"CREATE TABLE {name} (id int PRIMARY KEY, tenant text, owner text,"
                             " department text, last_contact int)")
        conn.exec_driver_sql(
            f"INSERT INTO {name} SELECT g, 'plans', 'rep' || mod(g, 2000),"
            " 'd' || mod(mod(g, 2000), 1000), mod(g * 7919, 100003)"
            " FROM generate_series(1, 100000) AS g")
        conn.exec_driver_sql(f"CREATE INDEX {name}_owner ON {name} (owner, last_contact)")
        conn.exec_driver_sql(f"CREATE INDEX {name}_department ON {name} (department, last_contact)")
        conn.exec_driver_sql(f"CREATE INDEX {name}_last_contact ON {name} (last_contact)")
        conn.exec_driver_sql(f"ANALYZE {name}")
    yield name
    with pg_engine.begin() as conn:
        conn.exec_driver_sql(f"DROP TABLE {name}")


def _numbered(sql: str, count: int) -> str:
    """``sql`` with its ``count`` ``%s`` placeholders numbered as PostgreSQL's ``$1 … $n``."""
    for i in range(count):
        sql = sql.replace("%s", f"${i + 1}", 1)
    return sql


def _generic_plan(cursor: Any, sql: str, params: list[Any]) -> str:
    """EXPLAIN of the plan PostgreSQL caches for ``sql`` once it goes generic."""
    cursor.execute("SET plan_cache_mode = force_generic_plan")
    cursor.execute(f"PREPARE sz_generic AS {_numbered(sql, len(params))}")
    # EXECUTE's arguments are not parameters of the statement: values as quoted literals
    values = ", ".join(Literal(value).as_string(cursor.connection) for value in params)
    cursor.execute(f"EXPLAIN (FORMAT JSON) EXECUTE sz_generic({values})")
    plan = json.dumps(cursor.fetchone()[0])
    cursor.execute("DEALLOCATE sz_generic")
    cursor.execute("RESET plan_cache_mode")
    return plan


def test_a_team_scope_keeps_its_index_once_the_plan_goes_generic(
        pg_engine: Engine, list_view_table: str) -> None:
    authz = _team_organisation(departments=1000)
    team = authz.scope_filter("lead7", "read", "customer", domain="plans")
    assert team.departments == frozenset({"d7"})
    where, params = sql_where(team, owner="owner", department="department",
                              domain=("tenant", "plans"), arrays=True)
    assert isinstance(params, list)
    sql = (f"SELECT id FROM {list_view_table} WHERE {where}"
           " ORDER BY last_contact DESC, id DESC LIMIT 50")
    raw = pg_engine.raw_connection()
    try:
        conn = raw.driver_connection
        assert conn is not None
        expected = [row[0] for row in conn.execute(
            f"SELECT id FROM {list_view_table} WHERE tenant = 'plans' AND"
            " (owner = 'lead7' OR department = 'd7') ORDER BY last_contact DESC, id DESC LIMIT 50")]
        assert len(expected) == 50
        for _ in range(10):  # a prepared statement: custom plans 1-5, then the generic plan
            assert [row[0] for row in conn.execute(sql, params, prepare=True)] == expected
        generic = conn.execute("SELECT generic_plans FROM pg_prepared_statements"
                               " WHERE statement = %s", [_numbered(sql, len(params))]).fetchone()
        assert generic is not None, "psycopg did not prepare the statement"
        assert generic[0] >= 1, "the statement never went generic"
        with conn.cursor() as cursor:
            plan = _generic_plan(cursor, sql, params)
        raw.rollback()
    finally:
        raw.close()
    assert f"{list_view_table}_department" in plan, plan
    assert f"{list_view_table}_owner" in plan, plan
    assert f"{list_view_table}_last_contact" not in plan, plan
