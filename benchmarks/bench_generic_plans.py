"""The generic-plan cliff: one prepared statement executed 10 times, executions 1-5 vs 6-10.

    python benchmarks/bench_generic_plans.py [--dsn ...] [--rows 1000000] [--teams 200]
        [--out benchmarks/results/bench_generic_plans.json]

PostgreSQL plans the first five executions of a prepared statement with the bound values
(custom plans), then switches to a *generic* plan, made without the values, when its estimated
cost is no worse. psycopg 3 prepares a statement after ``prepare_threshold`` (5) executions;
here every statement is prepared from the first one (``prepare=True``), so executions 6-10 run
the generic plan whenever PostgreSQL picks it.

Uses the data of ``bench_filters.py --teams 200`` (2,011 departments, schema
``bench_filters_t200``, built on first use). For each
persona it reports the median time of executions 1-5 and 6-10 and the indexes of the generic
plan (``plan_cache_mode = force_generic_plan``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

import bench_filters
import psycopg
from bench_filters import COLUMNS, DOMAIN, HERE, ORDER, ensure_data, organisation

from salesauthz import Authorizer
from salesauthz.filters.sql import sql_where
from salesauthz.models import DomainDocument, compile_document

PERSONAS = [("team lead", "lead-r4-t2"), ("director (root tree)", "director"),
            ("manager (region tree)", "mgr-r3"), ("analyst (custom scope)", "ana"), ("junior rep", "rep0042")]


def generic_indexes(conn: psycopg.Connection[Any], sql: str, params: list[Any]) -> list[str]:
    """The indexes of the generic plan of ``sql`` (prepared by name, values bound at EXECUTE)."""
    conn.execute("SET plan_cache_mode = force_generic_plan")
    try:
        conn.execute("DEALLOCATE ALL")
        numbered = sql
        for i in range(len(params)):
            numbered = numbered.replace("%s", f"${i + 1}", 1)
        conn.execute(f"PREPARE salesauthz_generic AS {numbered}")  # type: ignore[arg-type]
        values = ", ".join(psycopg.sql.Literal(p).as_string(conn) for p in params)
        row = conn.execute(f"EXPLAIN (FORMAT JSON) EXECUTE salesauthz_generic({values})").fetchone()  # type: ignore[arg-type]
        conn.execute("DEALLOCATE salesauthz_generic")
    finally:
        conn.execute("RESET plan_cache_mode")
    assert row is not None
    found: set[str] = set()

    def walk(node: dict[str, Any]) -> None:
        if "Index Name" in node:
            found.add(node["Index Name"])
        for child in node.get("Plans", ()):
            walk(child)

    walk(row[0][0]["Plan"])
    return sorted(found)


def run(dsn: str, rows: int) -> dict[str, Any]:
    authz = Authorizer.from_rules(compile_document(DomainDocument.model_validate(organisation())))
    results = []
    with psycopg.connect(dsn, autocommit=True) as setup:
        ensure_data(setup, rows)
    for persona, account in PERSONAS:
        for arrays in (False, True):
            flt = authz.scope_filter(account, "read", "customer", domain=DOMAIN)
            where, params = sql_where(flt, owner="owner", department="department",
                                      domain=("tenant", DOMAIN), arrays=arrays)
            assert isinstance(params, list)
            sql = f"SELECT {COLUMNS} FROM {bench_filters.TABLE} WHERE {where} {ORDER}"
            with psycopg.connect(dsn, autocommit=True) as conn:  # a fresh statement cache
                times = []
                for _ in range(10):
                    started = time.perf_counter()
                    conn.execute(sql, params, prepare=True).fetchall()  # type: ignore[arg-type]
                    times.append((time.perf_counter() - started) * 1000)
                conn.prepare_threshold = None
                indexes = generic_indexes(conn, sql, params)
            first, last = statistics.median(times[:5]), statistics.median(times[5:])
            results.append({"persona": persona, "arrays": arrays, "sql": where,
                            "executions_1_5_median_ms": round(first, 3),
                            "executions_6_10_median_ms": round(last, 3),
                            "cliff": round(last / first, 2), "generic_plan_indexes": indexes})
            print(f"{persona:24} arrays={arrays!s:5}  1-5 {first:8.2f} ms  6-10 {last:8.2f} ms  "
                  f"x{last / first:6.2f}  generic plan: {indexes}")
    return {"benchmark": "bench_generic_plans", "rows": rows, "results": results}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--dsn", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "bench_generic_plans.json")
    parser.add_argument("--teams", type=int, default=200,
                        help="teams per region (bench_filters.py --teams; 200: 2,011 departments)")
    args = parser.parse_args(argv)
    bench_filters.configure(args.teams)
    report = run(args.dsn, args.rows)
    report["departments"] = 1 + bench_filters.REGIONS * (1 + bench_filters.TEAMS)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
