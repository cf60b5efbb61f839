"""List-view latency: salesauthz scope filters vs hand-written SQL on 1M customers in PostgreSQL.

    python benchmarks/bench_filters.py [--dsn postgresql://postgres@127.0.0.1:5432/test]
        [--rows 1000000] [--rounds 400] [--out benchmarks/results/bench_filters.json]
        [--plot ...png] [--docs-plot docs/filtering-benchmark.png] [--drop] [--quick]

Everything lives in the schema ``bench_filters`` (created on first run, reused by reruns while
its row count matches; ``--drop`` removes it at the end). No other schema is touched.

Data: one tenant, a department tree ``sales -> 10 regions -> 10 teams each`` (111 departments),
2,000 junior reps spread over the teams (each customer in its owner's team), 10 regional managers,
an analyst with a custom scope (one region and one team of another) and an admin; 1M customers
with a random last-contact time. Indexes: ``(owner, last_contact)``,
``(department, last_contact)`` and ``(last_contact)``.

Each persona's list query is one page of 50 customers ordered by last contact, newest first:

- *salesauthz*: ``scope_filter`` + ``sql_where`` (both timed, every round) then the query;
- *salesauthz, query only*: the same SQL, rendered once beforehand (isolates the SQL's quality
  from the few microseconds of rendering and the client-side noise of a busy machine);
- *hand-written*: the SQL a developer would write for that persona by hand (bound parameters,
  the department subtree as an array).

Each round times a batch of 5 back-to-back runs of each (the order rotates between rounds so
that drift hits all alike); the median over rounds is reported, with the ratio, and ``EXPLAIN``
of both queries (which plan nodes and indexes they use).
"""

from __future__ import annotations

import argparse
import gc
import json
import shutil
import statistics
import time
import timeit
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg

from salesauthz import Authorizer
from salesauthz.filters.sql import sql_where
from salesauthz.models import DomainDocument, compile_document

SCHEMA = "bench_filters"
TABLE = f"{SCHEMA}.customer"
DOMAIN = "bench"
REGIONS = 10
TEAMS = 10  # per region
REPS = 2_000
COLUMNS = "id, name, owner, department, last_contact"
ORDER = "ORDER BY last_contact DESC, id DESC LIMIT 50"
HERE = Path(__file__).resolve().parent
BATCH = 5
WARMUP = 4  # rounds of BATCH runs


def configure(teams: int) -> None:
    """Use ``teams`` teams per region (a schema of its own unless it is the default 10)."""
    global TEAMS, SCHEMA, TABLE
    if teams != TEAMS:
        TEAMS, SCHEMA = teams, f"bench_filters_t{teams}"
        TABLE = f"{SCHEMA}.customer"


def team_of(rep: int) -> str:
    team = rep % (REGIONS * TEAMS)
    return f"r{team // TEAMS}-t{team % TEAMS}"


def organisation() -> dict[str, Any]:
    departments: dict[str, Any] = {"sales": {}}
    for region in range(REGIONS):
        departments[f"r{region}"] = {"parent": "sales"}
        for team in range(TEAMS):
            departments[f"r{region}-t{team}"] = {"parent": f"r{region}"}
    accounts: dict[str, Any] = {"boss": {"department": "sales", "roles": ["admin"]},
                                "ana": {"department": "sales", "roles": ["analyst"]}}
    for region in range(REGIONS):
        accounts[f"mgr-r{region}"] = {"department": f"r{region}", "roles": ["sales_manager"]}
    accounts["director"] = {"department": "sales", "roles": ["sales_manager"]}
    accounts["lead-r4-t2"] = {"department": "r4-t2", "roles": ["team_lead"]}
    for rep in range(REPS):
        accounts[f"rep{rep:04d}"] = {"department": team_of(rep), "roles": ["junior_rep"]}
    return {
        "domain": DOMAIN,
        "resources": {"customer": ["read", "update"]},
        "departments": departments,
        "roles": {
            "admin": {"permissions": [{"scope": "all", "customer": ["*"]}]},
            "junior_rep": {"permissions": [{"scope": "own", "customer": ["read", "update"]}]},
            "sales_manager": {"permissions": [{"scope": "department_tree", "customer": ["read"]}]},
            "analyst": {"permissions": [{"scope": {"custom": ["r2", "r5-t3"]}, "customer": ["read"]}]},
            "team_lead": {"permissions": [{"scope": "team", "customer": ["read"]}]},
        },
        "accounts": accounts,
    }


def ensure_data(conn: psycopg.Connection[Any], rows: int) -> float:
    """Create and fill the schema unless a previous run left exactly ``rows`` rows; seconds spent."""
    started = time.perf_counter()
    exists = conn.execute("SELECT to_regclass(%s) IS NOT NULL", [TABLE]).fetchone()
    if exists and exists[0]:
        count = conn.execute(f"SELECT count(*) FROM {TABLE}").fetchone()
        if count and count[0] == rows:
            return 0.0
    conn.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
    conn.execute(f"CREATE SCHEMA {SCHEMA}")
    conn.execute(f"""
        CREATE TABLE {TABLE} (
            id bigint PRIMARY KEY,
            tenant text NOT NULL,
            name text NOT NULL,
            owner text NOT NULL,
            department text NOT NULL,
            last_contact timestamptz NOT NULL
        )""")
    teams = REGIONS * TEAMS
    conn.execute("SELECT setseed(0.42)")
    # rep k owns customers g with g % REPS == k; its team is k % teams (see team_of).
    conn.execute(f"""
        INSERT INTO {TABLE}
        SELECT g, %s, 'customer ' || g,
               'rep' || lpad(mod(g, {REPS})::text, 4, '0'),
               'r' || (mod(mod(g, {REPS}), {teams}) / {TEAMS})
                   || '-t' || mod(mod(mod(g, {REPS}), {teams}), {TEAMS}),
               timestamptz '2026-01-01' - random() * interval '730 days'
        FROM generate_series(1, %s) AS g""", [DOMAIN, rows])
    conn.execute(f"CREATE INDEX customer_owner_idx ON {TABLE} (owner, last_contact)")
    conn.execute(f"CREATE INDEX customer_department_idx ON {TABLE} (department, last_contact)")
    conn.execute(f"CREATE INDEX customer_last_contact_idx ON {TABLE} (last_contact)")
    conn.execute(f"VACUUM ANALYZE {TABLE}")
    return time.perf_counter() - started


Query = tuple[str, Any]


def personas(authz: Authorizer) -> Iterator[tuple[str, str, Callable[[], Query], Query]]:
    """``(persona, account, salesauthz query builder, hand-written query)``."""
    # The hand-written SQL walks the department tree itself (from the g2 rules), as a CRM would.
    children: dict[str, list[str]] = {}
    for rule in authz.rules(DOMAIN):
        if rule[0] == "g2" and rule[2]:
            children.setdefault(rule[2], []).append(rule[1])

    def ours(account: str, *, null_aware: bool = False, arrays: bool = False) -> Callable[[], Query]:
        def build() -> Query:
            flt = authz.scope_filter(account, "read", "customer", domain=DOMAIN)
            where, params = sql_where(flt, owner="owner", department="department",
                                      domain=("tenant", DOMAIN), authz=authz if null_aware else None,
                                      arrays=arrays)
            return f"SELECT {COLUMNS} FROM {TABLE} WHERE {where} {ORDER}", params
        return build

    def subtree(*roots: str) -> list[str]:
        found, stack = set(roots), list(roots)
        while stack:
            for child in children.get(stack.pop(), ()):
                found.add(child)
                stack.append(child)
        return sorted(found)

    hand = f"SELECT {COLUMNS} FROM {TABLE} WHERE tenant = %s AND "
    yield ("junior rep", "rep0042", ours("rep0042"),
           (hand + f"owner = %s {ORDER}", [DOMAIN, "rep0042"]))
    yield ("manager (region tree)", "mgr-r3", ours("mgr-r3"),
           (hand + f"(owner = %s OR department = ANY(%s)) {ORDER}", [DOMAIN, "mgr-r3", subtree("r3")]))
    yield ("manager, arrays=True", "mgr-r3", ours("mgr-r3", arrays=True),
           (hand + f"(owner = %s OR department = ANY(%s)) {ORDER}", [DOMAIN, "mgr-r3", subtree("r3")]))
    # Informative (no target): the NULL-department lookup adds the region's 200 reps as owners.
    yield ("manager, authz= (NULL-aware)", "mgr-r3", ours("mgr-r3", null_aware=True),
           (hand + f"(owner = %s OR department = ANY(%s)) {ORDER}", [DOMAIN, "mgr-r3", subtree("r3")]))
    yield ("analyst (custom scope)", "ana", ours("ana"),
           (hand + f"(owner = %s OR department = ANY(%s)) {ORDER}",
            [DOMAIN, "ana", subtree("r2", "r5-t3")]))
    # A manager at the root: every department of the tree (issue 17: one parameter each).
    for label, arrays in (("director (root tree)", False), ("director, arrays=True", True)):
        yield (label, "director", ours("director", arrays=arrays),
               (hand + f"(owner = %s OR department = ANY(%s)) {ORDER}",
                [DOMAIN, "director", subtree("sales")]))
    # A team scope (one department): the plan that must survive PostgreSQL's generic plans.
    for label, arrays in (("team lead", False), ("team lead, arrays=True", True)):
        yield (label, "lead-r4-t2", ours("lead-r4-t2", arrays=arrays),
               (hand + f"(owner = %s OR department = %s) {ORDER}", [DOMAIN, "lead-r4-t2", "r4-t2"]))
    yield ("admin (all)", "boss", ours("boss"), (hand.removesuffix(" AND ") + f" {ORDER}", [DOMAIN]))


def fixed(query: Query) -> Callable[[], Query]:
    return lambda: query


def build_filter_only(authz: Authorizer, account: str) -> Callable[[], Any]:
    def render() -> Any:
        flt = authz.scope_filter(account, "read", "customer", domain=DOMAIN)
        return sql_where(flt, owner="owner", department="department", domain=("tenant", DOMAIN))
    return render


def timed(conn: psycopg.Connection[Any], build: Callable[[], Query], batch: int = BATCH) -> float:
    """Seconds per list view: ``batch`` back-to-back runs, averaged (scheduler noise on a
    shared machine is larger than the differences measured)."""
    started = time.perf_counter()
    for _ in range(batch):
        sql, params = build()
        rows = conn.execute(sql, params).fetchall()
        assert rows, "a list view page must not be empty here"
    return (time.perf_counter() - started) / batch


def plan_of(conn: psycopg.Connection[Any], query: Query) -> dict[str, Any]:
    sql, params = query
    row = conn.execute("EXPLAIN (FORMAT JSON) " + sql, params).fetchone()
    assert row is not None
    plan: dict[str, Any] = row[0][0]["Plan"]
    nodes: list[str] = []
    indexes: set[str] = set()

    def walk(node: dict[str, Any]) -> None:
        nodes.append(node["Node Type"])
        if "Index Name" in node:
            indexes.add(node["Index Name"])
        for child in node.get("Plans", ()):
            walk(child)

    walk(plan)
    return {"nodes": nodes, "indexes": sorted(indexes), "uses_index": bool(indexes)}


def run(dsn: str, rows: int, rounds: int, drop: bool) -> dict[str, Any]:
    authz = Authorizer.from_rules(compile_document(DomainDocument.model_validate(organisation())))
    with psycopg.connect(dsn, autocommit=True) as conn:
        setup_seconds = ensure_data(conn, rows)
        results: list[dict[str, Any]] = []
        for persona, account, build, hand in personas(authz):
            ours_sql, ours_params = build()
            same = (conn.execute(ours_sql, ours_params).fetchall()
                    == conn.execute(hand[0], hand[1]).fetchall())
            assert same, f"{persona}: the salesauthz query and the hand-written one disagree"
            # Three variants, interleaved in a rotating order: salesauthz end to end (render the
            # filter, then query), the same SQL pre-rendered (the query alone), and by hand.
            variants: dict[str, Callable[[], Query]] = {
                "salesauthz": build,
                "salesauthz_query_only": fixed((ours_sql, ours_params)),
                "hand_written": fixed(hand),
            }
            times: dict[str, list[float]] = {name: [] for name in variants}
            names = list(variants)
            gc.disable()  # no collection pauses inside a timed batch (any variant)
            try:
                # 4 warm-up rounds, 20 runs of each statement: psycopg prepares it at its sixth
                # run and PostgreSQL's generic plan takes over five executions later, so every
                # timed run uses the plan a long-lived connection keeps.
                for i in range(rounds + WARMUP):
                    for name in names[i % 3:] + names[:i % 3]:
                        elapsed = timed(conn, variants[name])
                        if i >= WARMUP:
                            times[name].append(elapsed)
            finally:
                gc.enable()
            medians = {name: statistics.median(values) for name, values in times.items()}
            render = min(timeit.repeat(build_filter_only(authz, account), number=1000, repeat=5)) / 1000
            result: dict[str, Any] = {"persona": persona, "account": account}
            for name, median in medians.items():
                result[f"{name}_median_ms"] = round(median * 1000, 3)
            result.update({
                "ratio": round(medians["salesauthz"] / medians["hand_written"], 3),
                "ratio_query_only": round(medians["salesauthz_query_only"] / medians["hand_written"], 3),
                "render_us": round(render * 1e6, 1),
                "salesauthz_sql": ours_sql,
                "parameters": len(ours_params),
                "explain": plan_of(conn, (ours_sql, ours_params)),
                "hand_written_explain": plan_of(conn, hand),
            })
            results.append(result)
            print(f"{persona:30} salesauthz {medians['salesauthz'] * 1000:7.3f} ms "
                  f"(query only {medians['salesauthz_query_only'] * 1000:7.3f})  hand-written "
                  f"{medians['hand_written'] * 1000:7.3f} ms  ratio {result['ratio']:5.3f} "
                  f"({result['ratio_query_only']:5.3f})  render {result['render_us']} us  "
                  f"indexes {result['explain']['indexes']}")
        if drop:
            conn.execute(f"DROP SCHEMA {SCHEMA} CASCADE")
        server = conn.execute("SHOW server_version").fetchone()
    return {
        "benchmark": "bench_filters",
        "rows": rows,
        "rounds": rounds,
        "batch": BATCH,
        "warmup_runs": WARMUP * BATCH,
        "setup_seconds": round(setup_seconds, 1),
        "postgresql": server[0] if server else None,
        "query": f"SELECT {COLUMNS} FROM {TABLE} WHERE <scope> {ORDER}",
        "results": results,
    }


def plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results = report["results"]
    labels = [r["persona"].replace(" (", "\n(").replace(", ", "\n") for r in results]
    x = range(len(labels))
    fig, ax = plt.subplots(figsize=(9, 4.8))
    series = [("salesauthz_median_ms", "salesauthz (render + query)"),
              ("salesauthz_query_only_median_ms", "salesauthz SQL, pre-rendered"),
              ("hand_written_median_ms", "hand-written SQL")]
    for k, (key, label) in enumerate(series):
        ax.bar([i + (k - 1) * 0.27 for i in x], [r[key] for r in results], 0.27, label=label)
    for i, r in enumerate(results):
        top = max(r[key] for key, _ in series)
        ax.annotate(f"{r['ratio']:.2f}x", (i, top), ha="center", va="bottom")
    ax.set_xticks(list(x), labels)
    ax.set_ylabel("median latency, ms (page of 50)")
    version = str(report["postgresql"]).split()[0]
    ax.set_title(f"One page of 50 of {report['rows']:,} customers, PostgreSQL {version} (ratio: end to end)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--dsn", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=400)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "bench_filters.json")
    parser.add_argument("--plot", type=Path, help="PNG plot (default: --out with .png)")
    parser.add_argument("--docs-plot", default=str(HERE.parent / "docs" / "filtering-benchmark.png"),
                        help="a copy of the plot for docs/filtering.md ('' to skip)")
    parser.add_argument("--teams", type=int, default=TEAMS,
                        help="teams per region (10: 111 departments; 200: 2,011 departments, in "
                             "the schema bench_filters_t200)")
    parser.add_argument("--quick", action="store_true",
                        help="20 rounds, no plot copied into docs (a smoke run on a shared machine)")
    parser.add_argument("--drop", action="store_true", help="drop the bench_filters schema at the end")
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.docs_plot = min(args.rounds, 20), ""
        if args.out == HERE / "results" / "bench_filters.json":
            args.out = HERE / "results" / "bench_filters_quick.json"
    configure(args.teams)
    report = run(args.dsn, args.rows, args.rounds, args.drop)
    report["departments"] = 1 + REGIONS * (1 + TEAMS)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    plot_path = args.plot or args.out.with_suffix(".png")
    plot(report, plot_path)
    if args.docs_plot:
        shutil.copyfile(plot_path, Path(args.docs_plot))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
