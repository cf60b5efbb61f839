"""List filters on a 2,011-department tree: each form of the filter vs hand-written SQL, for a
page and for ``COUNT(*)``, every statement warmed past PostgreSQL's switch to generic plans.

    python benchmarks/bench_filters_large.py [--dsn postgresql://postgres@127.0.0.1:5432/test]
        [--schema bench_filters_large] [--rows 1000000] [--rounds 20] [--batch 3]
        [--out benchmarks/results/bench_filters_large.json] [--drop]

Data: :mod:`bench_filters` with 200 teams per region (``sales -> 10 regions -> 200 teams``:
2,011 departments, one rep per team, 1M customers; built on first use in ``--schema``, reused
while its row count matches), plus the closure table ``<schema>.department_closure``
(:class:`salesauthz.filters.closure.ClosureTable`, synced from the authorizer).

Personas (issue 17): a manager at the root (``department_tree`` of every department), a
regional manager (201 departments), a team lead (``team``: one department), an analyst with a
custom scope (a region and a team of another) and a sub-account (a manager of a region whose
parent is the root manager: its own records anywhere under its parent's ceiling, plus its
region). Forms of the salesauthz filter (``sql_where``): the default ``IN`` lists, ``arrays=True``,
``arrays=True`` with ``closure=`` (large subtrees by their tops: ``= ANY(ARRAY(SELECT …))``), and
``closure=`` without arrays (``IN (SELECT …)``). The hand-written SQL binds
each department set as one array (``department = ANY(%s)``), as a developer would.

Each statement is executed ``WARMUP`` (20) times before it is measured: psycopg prepares a
statement at its sixth execution (``prepare_threshold``, default 5) and PostgreSQL switches a
prepared statement to a generic plan after five more, so the measured runs use the plan a
long-lived connection keeps. Then ``--rounds`` rounds, each timing a batch of ``--batch`` runs of
every variant in a rotating order; medians over rounds. ``arrays=True`` and the closure form
are also timed end to end (``scope_filter`` + ``sql_where`` + the query, every run); each row's
verdict (target ≤ 1.1× the hand-written SQL) is given for each, and for the form
``docs/filtering.md`` recommends for that kind of query (``RECOMMENDED``: the closure's ``IN``
subquery for a page, ``arrays=True`` for ``COUNT(*)``).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import bench_filters
import psycopg
from bench_filters import COLUMNS, DOMAIN, HERE, ensure_data, organisation

from salesauthz import Authorizer
from salesauthz.filters.closure import ClosureTable, sync
from salesauthz.filters.sql import sql_where
from salesauthz.models import DomainDocument, compile_document

WARMUP = 20
# timed end to end too; and the form docs/filtering.md recommends for each kind of query
E2E = ("arrays", "closure", "closure, IN subquery")
RECOMMENDED = {"page": "closure, IN subquery", "count": "arrays"}
TARGET = 1.1
PAGE = "ORDER BY last_contact DESC, id DESC LIMIT 50"
Query = tuple[str, Any]
PERSONAS = [("root manager", "director"), ("regional manager", "mgr-r3"),
            ("team lead", "lead-r4-t2"), ("custom scope", "ana"), ("sub-account", "asst-r3")]
# sql_where's forms: (arrays, closure)
FORMS = {"in": (False, False), "arrays": (True, False), "closure": (True, True),
         "closure, IN subquery": (False, True)}


def authorizer() -> Authorizer:
    document = organisation()
    # a sub-account: the root manager's assistant, itself a manager of one region
    document["accounts"]["asst-r3"] = {"department": "r3", "roles": ["sales_manager"],
                                       "parent": "director"}
    return Authorizer.from_rules(compile_document(DomainDocument.model_validate(document)))


def subtree(children: dict[str, list[str]], *roots: str) -> list[str]:
    found, stack = set(roots), list(roots)
    while stack:
        for child in children.get(stack.pop(), ()):
            found.add(child)
            stack.append(child)
    return sorted(found)


def hand_written(authz: Authorizer, account: str, table: str) -> tuple[str, list[Any]]:
    """The WHERE clause (and its parameters) a developer writes for the persona."""
    children: dict[str, list[str]] = {}
    for rule in authz.rules(DOMAIN):
        if rule[0] == "g2" and rule[2]:
            children.setdefault(rule[2], []).append(rule[1])
    if account == "lead-r4-t2":
        return "tenant = %s AND (owner = %s OR department = %s)", [DOMAIN, account, "r4-t2"]
    if account == "asst-r3":
        return ("tenant = %s AND (department = ANY(%s) OR (owner = %s AND department = ANY(%s)))",
                [DOMAIN, subtree(children, "r3"), account, subtree(children, "sales")])
    roots = {"director": ("sales",), "mgr-r3": ("r3",), "ana": ("r2", "r5-t3")}[account]
    return ("tenant = %s AND (owner = %s OR department = ANY(%s))",
            [DOMAIN, account, subtree(children, *roots)])


def statement(kind: str, table: str, where: str) -> str:
    if kind == "page":
        return f"SELECT {COLUMNS} FROM {table} WHERE {where} {PAGE}"
    return f"SELECT count(*) FROM {table} WHERE {where}"


def timed(conn: psycopg.Connection[Any], build: Callable[[], Query], batch: int) -> float:
    started = time.perf_counter()
    for _ in range(batch):
        sql, params = build()
        rows = conn.execute(sql, params).fetchall()  # type: ignore[arg-type]
        assert rows, "a list view page must not be empty here"
    return (time.perf_counter() - started) / batch


def measure(conn: psycopg.Connection[Any], variants: dict[str, Callable[[], Query]], rounds: int,
            batch: int) -> dict[str, list[float]]:
    """Seconds per run of each variant: ``WARMUP`` executions of each statement first, then
    ``rounds`` rounds of ``batch`` runs, the variants' order rotating from round to round (so
    none always runs first), the garbage collector off."""
    names = list(variants)
    times: dict[str, list[float]] = {name: [] for name in names}
    gc.disable()
    try:
        for name in names:
            timed(conn, variants[name], WARMUP)
        for i in range(rounds):
            shift = i % len(names)
            for name in names[shift:] + names[:shift]:
                times[name].append(timed(conn, variants[name], batch))
    finally:
        gc.enable()
    return times


def walk(node: dict[str, Any]) -> tuple[list[str], set[str]]:
    """The plan's nodes (depth first, with their indexes) and the indexes it uses."""
    nodes = [node["Node Type"] + (f" on {node['Index Name']}" if "Index Name" in node else "")]
    indexes = {node["Index Name"]} if "Index Name" in node else set()
    for child in node.get("Plans", ()):
        more, used = walk(child)
        nodes.extend(more)
        indexes |= used
    return nodes, indexes


def plan_of(conn: psycopg.Connection[Any], query: Query) -> dict[str, Any]:
    """Nodes and indexes of the plan the statement runs with once warm (a generic plan, if
    PostgreSQL picked one: forced here to show it, since EXPLAIN plans afresh)."""
    sql, params = query
    plans = {}
    for mode in ("auto", "force_generic_plan"):
        conn.execute(f"SET plan_cache_mode = {mode}")  # type: ignore[arg-type]
        try:
            row = conn.cursor().execute("EXPLAIN (FORMAT JSON) " + sql, params,  # type: ignore[arg-type]
                                        prepare=True).fetchone()
        finally:
            conn.execute("RESET plan_cache_mode")
        assert row is not None
        nodes, indexes = walk(row[0][0]["Plan"])
        plans["custom" if mode == "auto" else "generic"] = {"nodes": nodes,
                                                            "indexes": sorted(indexes)}
    return plans


def run(dsn: str, schema: str, rows: int, rounds: int, batch: int, drop: bool) -> dict[str, Any]:
    bench_filters.configure(200)
    bench_filters.SCHEMA, bench_filters.TABLE = schema, f"{schema}.customer"
    table = f"{schema}.customer"
    authz = authorizer()
    closure = ClosureTable(f"{schema}.department_closure")
    with psycopg.connect(dsn, autocommit=True) as conn:
        setup_seconds = ensure_data(conn, rows)
        for ddl in closure.ddl():
            conn.execute(ddl)  # type: ignore[arg-type]
        version = sync(conn, closure, authz, domain=DOMAIN)
        conn.execute(f"VACUUM ANALYZE {closure.name}")  # type: ignore[arg-type]
        results: list[dict[str, Any]] = []
        for persona, account in PERSONAS:
            hand_where, hand_params = hand_written(authz, account, table)

            def render(form: str, account: str = account) -> tuple[str, Any]:
                flt = authz.scope_filter(account, "read", "customer", domain=DOMAIN)
                arrays, closed = FORMS[form]
                return sql_where(flt, owner="owner", department="department",
                                 domain=("tenant", DOMAIN), arrays=arrays,
                                 closure=closure.using(authz) if closed else None)

            for kind in ("page", "count"):
                variants: dict[str, Callable[[], Query]] = {}
                rendered: dict[str, tuple[str, Any]] = {}
                for form in FORMS:
                    where, params = render(form)
                    rendered[form] = (statement(kind, table, where), params)
                    variants[form] = (lambda q=rendered[form]: q)

                for form in E2E:
                    def end_to_end(kind: str = kind, render: Callable[[str], Any] = render,
                                   form: str = form) -> Query:
                        where, params = render(form)
                        return statement(kind, table, where), params

                    variants[f"{form}, render + query"] = end_to_end
                hand = (statement(kind, table, hand_where), hand_params)
                variants["hand-written"] = lambda hand=hand: hand
                expected = conn.execute(*hand).fetchall()  # type: ignore[arg-type]
                for form, query in rendered.items():
                    got = conn.execute(*query).fetchall()  # type: ignore[arg-type]
                    assert got == expected, f"{persona} {kind} {form}: differs from hand-written"
                times = measure(conn, variants, rounds, batch)
                medians = {name: statistics.median(values) for name, values in times.items()}
                hand_ms = medians["hand-written"]
                result: dict[str, Any] = {
                    "persona": persona, "account": account, "query": kind,
                    "median_ms": {name: round(m * 1000, 3) for name, m in medians.items()},
                    "ratio": {name: round(m / hand_ms, 3) for name, m in medians.items()
                              if name != "hand-written"},
                    "parameters": {form: len(q[1]) for form, q in rendered.items()},
                    "plans": {form: plan_of(conn, q) for form, q in
                              [*rendered.items(), ("hand-written", hand)]},
                }
                result["verdict"] = {
                    form: {"measure": f"{form}, render + query / hand-written",
                           "ratio": result["ratio"][f"{form}, render + query"], "target": TARGET,
                           "met": result["ratio"][f"{form}, render + query"] <= TARGET}
                    for form in E2E}
                best = RECOMMENDED[kind]
                result["verdict"]["recommended"] = {**result["verdict"][best], "form": best}
                results.append(result)
                print(f"{persona:17} {kind:5} hand {hand_ms * 1000:8.3f} ms  " + "  ".join(
                    f"{name} {ratio:.2f}x" for name, ratio in result["ratio"].items())
                    + f"  params {result['parameters']}", flush=True)
        if drop:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")  # type: ignore[arg-type]
        server = conn.execute("SHOW server_version").fetchone()
    return {
        "benchmark": "bench_filters_large",
        "rows": rows,
        "departments": 1 + bench_filters.REGIONS * (1 + bench_filters.TEAMS),
        "rounds": rounds,
        "batch": batch,
        "warmup_executions_per_statement": WARMUP,
        "setup_seconds": round(setup_seconds, 1),
        "closure_version": version,
        "postgresql": server[0] if server else None,
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "target": f"end to end (render + query) ≤ {TARGET}x hand-written",
        "results": results,
    }


LABELS = {"in": "IN lists (default)", "arrays, render + query": "arrays=True",
          "closure, render + query": "closure, ANY(ARRAY(SELECT …))",
          "closure, IN subquery, render + query": "closure, IN (SELECT …)"}


def plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FormatStrFormatter, NullFormatter

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8), sharey=True)
    series = ["in", "arrays, render + query", "closure, render + query",
              "closure, IN subquery, render + query"]
    for ax, kind in zip(axes, ("page", "count"), strict=True):
        rows = [r for r in report["results"] if r["query"] == kind]
        x = range(len(rows))
        for k, name in enumerate(series):
            ax.bar([i + (k - 1.5) * 0.2 for i in x], [r["ratio"][name] for r in rows], 0.2,
                   label=LABELS[name] if kind == "page" else None)
        ax.axhline(1.0, color="black", linewidth=0.8)
        ax.axhline(TARGET, color="red", linestyle="--", linewidth=0.8,
                   label=f"target {TARGET}x" if kind == "page" else None)
        ax.set_xticks(list(x), [r["persona"].replace(" ", "\n", 1) for r in rows])
        ax.set_title("page of 50" if kind == "page" else "COUNT(*)")
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(FormatStrFormatter("%gx"))
        ax.yaxis.set_minor_formatter(NullFormatter())
        ax.set_yticks([0.25, 0.5, 1, 2, 4])
    axes[0].set_ylabel("time / hand-written SQL (log)")
    fig.legend(loc="upper center", ncol=5)
    fig.suptitle(f"{report['departments']:,} departments, {report['rows']:,} customers, "
                 f"after {WARMUP} executions per statement (render + query, except 'in': SQL "
                 "only)", y=0.04)
    fig.tight_layout(rect=(0, 0.06, 1, 0.92))
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--dsn", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--schema", default="bench_filters_large")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--batch", type=int, default=3)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "bench_filters_large.json")
    parser.add_argument("--drop", action="store_true", help="drop the schema at the end")
    args = parser.parse_args(argv)
    report = run(args.dsn, args.schema, args.rows, args.rounds, args.batch, args.drop)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    plot(report, args.out.with_suffix(".png"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
