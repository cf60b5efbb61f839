"""List filters with conditions on record attributes (issue 14) vs hand-written SQL, for a page
and for ``COUNT(*)``, on 1M customers in PostgreSQL, every statement warmed past the switch to
generic plans.

    python benchmarks/bench_condition_filters.py [--dsn postgresql://postgres@127.0.0.1:5432/test]
        [--schema bench_condition_filters] [--rows 1000000] [--rounds 40] [--batch 5]
        [--out benchmarks/results/bench_condition_filters.json] [--drop]

Data (built on first use in ``--schema``, reused while its row count matches; ``--drop`` removes
the schema at the end): the organisation of :mod:`bench_filters` (``sales -> 10 regions -> 10
teams``, 2,000 reps) and a ``customer`` table of 1M rows with ``tenant``, ``owner`` (NULL for 5 %:
the public pool), ``department``, ``region`` (five values), ``amount`` (an integer, uniform in
0..999,999), ``pool`` (``p0``..``p4`` on unowned rows, NULL elsewhere) and ``last_contact``.
Indexes, as a CRM would have them: ``(tenant, department, last_contact)``, ``(tenant, owner,
last_contact)``, ``(tenant, region, last_contact)``, ``(tenant, pool, last_contact)`` and
``(tenant, last_contact)``; no index on ``amount``.

Personas, each holding one conditioned permission on ``customer:read``:

- *territory rep*: ``@all where region in account.territories`` (territories East, North);
- *manager*: ``@department_tree where amount <= 100000`` (a regional manager: 11 departments);
- *two conditions*: ``@all where region in account.territories and amount <= 100000``;
- *public pool*: ``@all where owner: null and pool in account.pools`` (pools p1, p3).

The salesauthz statement is ``scope_filter`` + ``sql_where(..., attributes={"region": "region",
"amount": "amount", "pool": "pool"}, arrays=True)`` (the form docs/filtering.md recommends on
PostgreSQL), rendered and executed on every run ("render + query"); the rendered SQL alone is
timed too ("query only"). The hand-written SQL is what a developer writes for the same rule
(each set one array: ``region = ANY(%s)``). Both return exactly the same rows (asserted, page and
count, before timing). Each statement is executed ``WARMUP`` (20) times first (psycopg prepares
at its sixth execution, PostgreSQL picks a generic plan five executions later), then
``--rounds`` rounds, each timing a batch of ``--batch`` runs of every variant in a rotating
order. Reported: medians and 95th percentiles over rounds and their ratios to the hand-written
SQL; the verdict is the median ratio of "render + query" against the target (≤ 1.1×). The plans
(``EXPLAIN ANALYZE`` of both statements, generic plan forced as the warm connection runs it) are
kept in the JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import bench_filters
import psycopg
from bench_filters import HERE, organisation
from bench_filters_large import TARGET, WARMUP, measure, subtree

from salesauthz import Authorizer
from salesauthz.filters.sql import sql_where
from salesauthz.models import DomainDocument, compile_document

DOMAIN = bench_filters.DOMAIN
COLUMNS = "id, name, owner, department, region, amount, last_contact"
PAGE = "ORDER BY last_contact DESC, id DESC LIMIT 50"
ATTRIBUTES = {"region": "region", "amount": "amount", "pool": "pool"}
REGIONS = ("East", "West", "North", "South", "Central")
POOLS = 5
TERRITORIES = ["East", "North"]
MY_POOLS = ["p1", "p3"]
LIMIT = 100_000
Query = tuple[str, Any]
PERSONAS = [("territory rep", "terr-e"), ("manager, amount <= 100000", "deals-r3"),
            ("two conditions", "terr-small"), ("public pool", "pooler")]


def authorizer() -> Authorizer:
    document = organisation()
    document["resources"] = {"customer": {"actions": ["read", "update"],
                                          "attributes": {"region": "str", "amount": "int",
                                                         "pool": "str"}}}
    roles = document["roles"]
    territories = {"region": {"in": "account.territories"}}
    small = {"amount": {"le": LIMIT}}
    roles["territory_rep"] = {"permissions": [
        {"scope": "all", "where": territories, "customer": ["read"]}]}
    roles["deal_manager"] = {"permissions": [
        {"scope": "department_tree", "where": small, "customer": ["read"]}]}
    roles["small_deals"] = {"permissions": [
        {"scope": "all", "where": {**territories, **small}, "customer": ["read"]}]}
    roles["pool_member"] = {"permissions": [
        {"scope": "all", "where": {"owner": None, "pool": {"in": "account.pools"}},
         "customer": ["read"]}]}
    accounts = document["accounts"]
    accounts["terr-e"] = {"department": "sales", "roles": ["territory_rep"],
                          "attributes": {"territories": TERRITORIES}}
    accounts["deals-r3"] = {"department": "r3", "roles": ["deal_manager"]}
    accounts["terr-small"] = {"department": "sales", "roles": ["small_deals"],
                              "attributes": {"territories": TERRITORIES}}
    accounts["pooler"] = {"department": "sales", "roles": ["pool_member"],
                          "attributes": {"pools": MY_POOLS}}
    return Authorizer.from_rules(compile_document(DomainDocument.model_validate(document)))


def ensure_data(conn: psycopg.Connection[Any], schema: str, rows: int) -> float:
    """Create and fill ``<schema>.customer`` unless it holds exactly ``rows`` rows; seconds."""
    table = f"{schema}.customer"
    started = time.perf_counter()
    exists = conn.execute("SELECT to_regclass(%s) IS NOT NULL", [table]).fetchone()
    if exists and exists[0]:
        count = conn.execute(f"SELECT count(*) FROM {table}").fetchone()  # type: ignore[arg-type]
        if count and count[0] == rows:
            return 0.0
    conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")  # type: ignore[arg-type]
    conn.execute(f"CREATE SCHEMA {schema}")  # type: ignore[arg-type]
    conn.execute(f"""
        CREATE TABLE {table} (
            id bigint PRIMARY KEY,
            tenant text NOT NULL,
            name text NOT NULL,
            owner text,
            department text NOT NULL,
            region text NOT NULL,
            amount integer NOT NULL,
            pool text,
            last_contact timestamptz NOT NULL
        )""")  # type: ignore[arg-type]
    reps, teams, per = bench_filters.REPS, bench_filters.REGIONS * bench_filters.TEAMS, \
        bench_filters.TEAMS
    conn.execute("SELECT setseed(0.14)")
    # every 20th customer is unowned, in pool p0..p4; the others are rep k's (g % reps == k),
    # in k's team (bench_filters.team_of)
    conn.execute(f"""
        INSERT INTO {table}
        SELECT g, %s, 'customer ' || g,
               CASE WHEN mod(g, 20) = 0 THEN NULL
                    ELSE 'rep' || lpad(mod(g, {reps})::text, 4, '0') END,
               'r' || (mod(mod(g, {reps}), {teams}) / {per})
                   || '-t' || mod(mod(mod(g, {reps}), {teams}), {per}),
               (%s::text[])[1 + floor(random() * {len(REGIONS)})::int],
               floor(random() * 1000000)::int,
               CASE WHEN mod(g, 20) = 0 THEN 'p' || mod(g / 20, {POOLS}) END,
               timestamptz '2026-01-01' - random() * interval '730 days'
        FROM generate_series(1, %s) AS g""", [DOMAIN, list(REGIONS), rows])  # type: ignore[arg-type]
    for name, columns in (("department", "tenant, department, last_contact"),
                          ("owner", "tenant, owner, last_contact"),
                          ("region", "tenant, region, last_contact"),
                          ("pool", "tenant, pool, last_contact"),
                          ("last_contact", "tenant, last_contact")):
        conn.execute(f"CREATE INDEX customer_{name}_idx ON {table} ({columns})")  # type: ignore[arg-type]
    conn.execute(f"VACUUM ANALYZE {table}")  # type: ignore[arg-type]
    return time.perf_counter() - started


def hand_written(authz: Authorizer, account: str) -> tuple[str, list[Any]]:
    """The WHERE clause (and its parameters) a developer writes for the persona's rule."""
    if account == "terr-e":
        return "tenant = %s AND region = ANY(%s)", [DOMAIN, TERRITORIES]
    if account == "terr-small":
        return ("tenant = %s AND region = ANY(%s) AND amount <= %s",
                [DOMAIN, TERRITORIES, LIMIT])
    if account == "pooler":
        return "tenant = %s AND owner IS NULL AND pool = ANY(%s)", [DOMAIN, MY_POOLS]
    assert account == "deals-r3"
    children: dict[str, list[str]] = {}
    for rule in authz.rules(DOMAIN):
        if rule[0] == "g2" and rule[2]:
            children.setdefault(rule[2], []).append(rule[1])
    # department_tree reaches the manager's own records too (wherever they are)
    return ("tenant = %s AND (owner = %s OR department = ANY(%s)) AND amount <= %s",
            [DOMAIN, account, subtree(children, "r3"), LIMIT])


def statement(kind: str, table: str, where: str) -> str:
    if kind == "page":
        return f"SELECT {COLUMNS} FROM {table} WHERE {where} {PAGE}"
    return f"SELECT count(*) FROM {table} WHERE {where}"


def explain(conn: psycopg.Connection[Any], query: Query) -> dict[str, Any]:
    """``EXPLAIN ANALYZE`` of the statement as a warm connection runs it (generic plan forced:
    EXPLAIN plans afresh): the plan's lines and its execution time."""
    sql, params = query
    conn.execute("SET plan_cache_mode = force_generic_plan")
    try:
        rows = conn.cursor().execute("EXPLAIN (ANALYZE, BUFFERS) " + sql, params,  # type: ignore[arg-type]
                                     prepare=True).fetchall()
    finally:
        conn.execute("RESET plan_cache_mode")
    lines = [row[0] for row in rows]
    return {"plan": lines,
            "execution_ms": float(lines[-1].split(":")[1].split()[0])
            if lines[-1].startswith("Execution Time") else None}


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20, method="inclusive")[-1]


def run(dsn: str, schema: str, rows: int, rounds: int, batch: int, drop: bool) -> dict[str, Any]:
    table = f"{schema}.customer"
    authz = authorizer()
    with psycopg.connect(dsn, autocommit=True) as conn:
        setup_seconds = ensure_data(conn, schema, rows)
        results: list[dict[str, Any]] = []
        for persona, account in PERSONAS:
            hand_where, hand_params = hand_written(authz, account)

            def render(account: str = account) -> tuple[str, Any]:
                flt = authz.scope_filter(account, "read", "customer", domain=DOMAIN)
                return sql_where(flt, owner="owner", department="department",
                                 domain=("tenant", DOMAIN), arrays=True, attributes=ATTRIBUTES)

            for kind in ("page", "count"):
                where, params = render()
                ours = (statement(kind, table, where), params)
                hand = (statement(kind, table, hand_where), hand_params)

                def end_to_end(kind: str = kind, render: Callable[[], Any] = render) -> Query:
                    where, params = render()
                    return statement(kind, table, where), params

                variants: dict[str, Callable[[], Query]] = {
                    "salesauthz, render + query": end_to_end,
                    "salesauthz, query only": lambda q=ours: q,
                    "hand-written": lambda q=hand: q,
                }
                expected = conn.execute(*hand).fetchall()  # type: ignore[arg-type]
                got = conn.execute(*ours).fetchall()  # type: ignore[arg-type]
                assert got == expected, f"{persona} {kind}: the filter's rows differ from hand-written"
                if kind == "count":  # the same rows, not only as many: compare the id sets
                    ids = [f"SELECT id FROM {table} WHERE {w} ORDER BY id" for w in
                           (where, hand_where)]
                    assert (conn.execute(ids[0], params).fetchall()  # type: ignore[arg-type]
                            == conn.execute(ids[1], hand_params).fetchall()), (  # type: ignore[arg-type]
                        f"{persona}: the filter's rows differ from hand-written")
                names = list(variants)
                times = measure(conn, variants, rounds, batch)
                medians = {name: statistics.median(v) for name, v in times.items()}
                p95s = {name: p95(v) for name, v in times.items()}
                ratio = {name: round(medians[name] / medians["hand-written"], 3)
                         for name in names if name != "hand-written"}
                result: dict[str, Any] = {
                    "persona": persona, "account": account, "query": kind,
                    "rows": expected[0][0] if kind == "count" else len(expected),
                    "salesauthz_sql": ours[0], "salesauthz_params": params,
                    "hand_written_sql": hand[0], "hand_written_params": hand_params,
                    "median_ms": {n: round(m * 1000, 3) for n, m in medians.items()},
                    "p95_ms": {n: round(m * 1000, 3) for n, m in p95s.items()},
                    "ratio": ratio,
                    "p95_ratio": {name: round(p95s[name] / p95s["hand-written"], 3)
                                  for name in names if name != "hand-written"},
                    "explain_analyze": {"salesauthz": explain(conn, ours),
                                        "hand-written": explain(conn, hand)},
                }
                measured = ratio["salesauthz, render + query"]
                result["verdict"] = {"measure": "salesauthz render + query / hand-written, median",
                                     "ratio": measured, "target": TARGET,
                                     "met": measured <= TARGET}
                results.append(result)
                print(f"{persona:27} {kind:5} hand {medians['hand-written'] * 1000:8.3f} ms  "
                      + "  ".join(f"{n} {r:.2f}x" for n, r in ratio.items())
                      + f"  p95 {result['p95_ratio']['salesauthz, render + query']:.2f}x"
                      + f"  rows {result['rows']}", flush=True)
        if drop:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")  # type: ignore[arg-type]
        server = conn.execute("SHOW server_version").fetchone()
    return {
        "benchmark": "bench_condition_filters",
        "rows": rows,
        "rounds": rounds,
        "batch": batch,
        "warmup_executions_per_statement": WARMUP,
        "setup_seconds": round(setup_seconds, 1),
        "postgresql": server[0] if server else None,
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "target": f"render + query ≤ {TARGET}x hand-written (median)",
        "results": results,
    }


def plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.6), sharey=True)
    series = [("salesauthz, render + query", "median", "ratio"),
              ("salesauthz, render + query", "p95", "p95_ratio"),
              ("salesauthz, query only", "median", "ratio")]
    for ax, kind in zip(axes, ("page", "count"), strict=True):
        rows = [r for r in report["results"] if r["query"] == kind]
        x = range(len(rows))
        for k, (name, stat, key) in enumerate(series):
            ax.bar([i + (k - 1) * 0.26 for i in x], [r[key][name] for r in rows], 0.26,
                   label=f"{name.removeprefix('salesauthz, ')} ({stat})" if kind == "page"
                   else None)
        ax.axhline(1.0, color="black", linewidth=0.8)
        ax.axhline(TARGET, color="red", linestyle="--", linewidth=0.8,
                   label=f"target {TARGET}x" if kind == "page" else None)
        ax.set_xticks(list(x), [r["persona"].replace(", ", ",\n") for r in rows], fontsize=8)
        ax.set_title("page of 50" if kind == "page" else "COUNT(*)")
    axes[0].set_ylabel("time / hand-written SQL")
    fig.legend(loc="upper center", ncol=4)
    load = report["load_average"]
    fig.suptitle(f"conditions in list filters: {report['rows']:,} customers, PostgreSQL "
                 f"{report['postgresql']}, after {WARMUP} executions per statement "
                 f"(load {load[0]:.1f})", y=0.04, fontsize=9)
    fig.tight_layout(rect=(0, 0.06, 1, 0.92))
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--dsn", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--schema", default="bench_condition_filters")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--batch", type=int, default=5)
    parser.add_argument("--out", type=Path,
                        default=HERE / "results" / "bench_condition_filters.json")
    parser.add_argument("--drop", action="store_true", help="drop the schema at the end")
    args = parser.parse_args(argv)
    report = run(args.dsn, args.schema, args.rows, args.rounds, args.batch, args.drop)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    plot(report, args.out.with_suffix(".png"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
