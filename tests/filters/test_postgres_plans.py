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
from sqlalchemy import Engine

from salesauthz import Authorizer
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
