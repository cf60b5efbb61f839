"""List views over shared records: the rendered filter (with its share ``EXISTS``) vs hand-written
SQL, on PostgreSQL with 1M customers and 3M shares.

    python benchmarks/bench_share_filters.py [--dsn postgresql://postgres@127.0.0.1:5432/test]
        [--rows 1000000] [--shares-per-record 3] [--accounts 200] [--rounds 3]
        [--out benchmarks/results/bench_share_filters.json] [--plot ...png]
        [--docs-plot docs/filtering-shares-benchmark.png] [--drop] [--only TEXT]

Everything lives in the schema ``bench_share_filters`` (created on first run, reused by reruns
while its sizes match; ``--drop`` removes it at the end). No other schema is touched.

Data (one tenant): a sales tree ``sales -> 10 regions -> 10 teams each`` and a service tree
``service -> 2 teams``; 2,000 reps spread over the sales teams (own + shared), a team lead per
team (team + shared), an assistant per team (a sub-account of its lead: own + shared, capped by
the lead's team), 200 service reps (shared only, each also in one sales team as an auxiliary
department). 1M customers, each in its owner's team, with a random last-contact time; every
customer carries ``--shares-per-record`` shares (3M): two with accounts (reps, leads, service
reps), one with a department (90 % a team, 9 % a region, 1 % a whole tree), ``read_only`` or
``read_write``. Indexes a CRM would have, used by both sides alike: customers on ``(owner,
last_contact)``, ``(department, last_contact)``, ``(last_contact)``; shares on ``(record_id)``,
``(account, level)``, ``(department, level)``.

Each list view is one page of 50 customers ordered by last contact, newest first. For each
persona, ``--accounts`` accounts are drawn (seeded; not a hot few) and every round asks, for each
of them, both

- *salesauthz*: ``scope_filter`` + ``sql_where(..., shares=ShareTable(...), arrays=True)`` (both
  timed, every time) then the query;
- *hand-written*: the SQL a developer would write for that persona and account (the department
  chain walked in Python, sets bound as arrays, the same ``EXISTS`` on the share table),

in alternating order. Median and p95 over all (account, round) samples; the target is ≤ 1.2×
the hand-written SQL for both, and a row that misses it is marked ``missed``. The first round
also checks that both queries return the same page for every account.
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import shutil
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from salesauthz import Authorizer
from salesauthz.filters.sql import ShareTable, sql_where
from salesauthz.models import DomainDocument, compile_document

SCHEMA = "bench_share_filters"
TABLE = f"{SCHEMA}.customer"
SHARES = f"{SCHEMA}.customer_share"
DOMAIN = "bench"
REGIONS = 10
TEAMS = 10  # per region
REPS = 2_000
SERVICE_TEAMS = 2
SERVICE_REPS = 200
COLUMNS = "c.id, c.name, c.owner, c.department, c.last_contact"
ORDER = "ORDER BY c.last_contact DESC, c.id DESC LIMIT 50"
HERE = Path(__file__).resolve().parent
TARGET = 1.2
LEVELS = {"read": ["read_only", "read_write"], "update": ["read_write"]}


def team_of(rep: int) -> str:
    team = rep % (REGIONS * TEAMS)
    return f"r{team // TEAMS}-t{team % TEAMS}"


def teams() -> list[str]:
    return [f"r{region}-t{team}" for region in range(REGIONS) for team in range(TEAMS)]


def organisation() -> dict[str, Any]:
    departments: dict[str, Any] = {"sales": {}, "service": {}}
    for region in range(REGIONS):
        departments[f"r{region}"] = {"parent": "sales"}
        for team in range(TEAMS):
            departments[f"r{region}-t{team}"] = {"parent": f"r{region}"}
    for team in range(SERVICE_TEAMS):
        departments[f"svc-t{team}"] = {"parent": "service"}
    accounts: dict[str, Any] = {}
    for team in teams():
        accounts[f"lead-{team}"] = {"department": team, "roles": ["team_lead"]}
        accounts[f"asst-{team}"] = {"department": team, "roles": ["rep"], "parent": f"lead-{team}"}
    for rep in range(REPS):
        accounts[f"rep{rep:04d}"] = {"department": team_of(rep), "roles": ["rep"]}
    sales_teams = teams()
    for k in range(SERVICE_REPS):
        accounts[f"svc{k:03d}"] = {"department": f"svc-t{k % SERVICE_TEAMS}", "roles": ["service"],
                                   "also_in": [sales_teams[(k * 7) % len(sales_teams)]]}
    read_update = ["read", "update"]
    return {
        "domain": DOMAIN,
        "resources": {"customer": read_update},
        "departments": departments,
        "sharing": {"customer": {"read_only": ["read"], "read_write": read_update}},
        "roles": {
            "rep": {"permissions": [{"scope": "own", "customer": read_update},
                                    {"scope": "shared", "customer": read_update}]},
            "team_lead": {"permissions": [{"scope": "team", "customer": read_update},
                                          {"scope": "shared", "customer": read_update}]},
            "service": {"permissions": [{"scope": "shared", "customer": read_update}]},
        },
        "accounts": accounts,
    }


def ensure_data(conn: psycopg.Connection[Any], rows: int, per_record: int) -> float:
    """Create and fill the schema unless a previous run left these sizes; seconds spent."""
    started = time.perf_counter()
    exists = conn.execute("SELECT to_regclass(%s) IS NOT NULL AND to_regclass(%s) IS NOT NULL",
                          [TABLE, SHARES]).fetchone()
    if exists and exists[0]:
        counts = conn.execute(f"SELECT (SELECT count(*) FROM {TABLE}), "
                              f"(SELECT count(*) FROM {SHARES})").fetchone()
        if counts == (rows, rows * per_record):
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
    conn.execute(f"""
        CREATE TABLE {SHARES} (
            record_id bigint NOT NULL,
            account text,
            department text,
            level text NOT NULL
        )""")
    n_teams = REGIONS * TEAMS
    conn.execute("SELECT setseed(0.42)")
    conn.execute(f"""
        INSERT INTO {TABLE}
        SELECT g, %s, 'customer ' || g,
               'rep' || lpad(mod(g, {REPS})::text, 4, '0'),
               'r' || (mod(mod(g, {REPS}), {n_teams}) / {TEAMS})
                   || '-t' || mod(mod(mod(g, {REPS}), {n_teams}), {TEAMS}),
               timestamptz '2026-01-01' - random() * interval '730 days'
        FROM generate_series(1, %s) AS g""", [DOMAIN, rows])
    # Share k of record r: the last one with a department, the others with an account.
    conn.execute(f"""
        INSERT INTO {SHARES}
        SELECT (g - 1) / {per_record} + 1,
               CASE WHEN kind THEN NULL
                    WHEN pick < 0.85 THEN 'rep' || lpad(floor(random() * {REPS})::text, 4, '0')
                    WHEN pick < 0.95 THEN 'svc' || lpad(floor(random() * {SERVICE_REPS})::text, 3, '0')
                    ELSE 'lead-r' || floor(random() * {REGIONS}) || '-t' || floor(random() * {TEAMS})
               END,
               CASE WHEN NOT kind THEN NULL
                    WHEN pick < 0.90 THEN 'r' || floor(random() * {REGIONS}) || '-t'
                                          || floor(random() * {TEAMS})
                    WHEN pick < 0.99 THEN 'r' || floor(random() * {REGIONS})
                    WHEN pick < 0.995 THEN 'sales'
                    ELSE 'service'
               END,
               CASE WHEN random() < 0.6 THEN 'read_only' ELSE 'read_write' END
        FROM (SELECT g, mod(g, {per_record}) = 0 AS kind, random() AS pick
              FROM generate_series(1, %s) AS g) AS s""", [rows * per_record])
    conn.execute(f"CREATE INDEX customer_owner_idx ON {TABLE} (owner, last_contact)")
    conn.execute(f"CREATE INDEX customer_department_idx ON {TABLE} (department, last_contact)")
    conn.execute(f"CREATE INDEX customer_last_contact_idx ON {TABLE} (last_contact)")
    conn.execute(f"CREATE INDEX share_record_idx ON {SHARES} (record_id)")
    conn.execute(f"CREATE INDEX share_account_idx ON {SHARES} (account, level)")
    conn.execute(f"CREATE INDEX share_department_idx ON {SHARES} (department, level)")
    conn.execute(f"VACUUM ANALYZE {TABLE}")
    conn.execute(f"VACUUM ANALYZE {SHARES}")
    return time.perf_counter() - started


Query = tuple[str, Any]


@dataclass(frozen=True)
class Persona:
    name: str
    action: str
    accounts: list[str]
    ours: Callable[[str], Query]
    hand: Callable[[str], Query]


def personas(authz: Authorizer, n_accounts: int, seed: int = 7) -> Iterator[Persona]:
    document = organisation()
    parent_of = {d: spec.get("parent") for d, spec in document["departments"].items()}
    accounts = document["accounts"]
    share_table = ShareTable(SHARES)
    rng = random.Random(seed)

    def sample(prefix: str) -> list[str]:
        found = sorted(a for a in accounts if a.startswith(prefix))
        return rng.sample(found, min(n_accounts, len(found)))

    def ours(action: str, *, arrays: bool = True) -> Callable[[str], Query]:
        def build(account: str) -> Query:
            flt = authz.scope_filter(account, action, "customer", domain=DOMAIN)
            where, params = sql_where(flt, owner="c.owner", department="c.department",
                                      domain=("c.tenant", DOMAIN), arrays=arrays,
                                      shares=share_table, record_id="c.id")
            return f"SELECT {COLUMNS} FROM {TABLE} c WHERE {where} {ORDER}", params
        return build

    # By hand, as a CRM developer would: walk up from the account's departments (main and
    # auxiliary) in Python, bind the sets as arrays, one EXISTS on the share table.
    def chain(account: str) -> list[str]:
        spec = accounts[account]
        found: list[str] = []
        for home in [spec["department"], *spec.get("also_in", [])]:
            department: str | None = home
            while department is not None and department not in found:
                found.append(department)
                department = parent_of.get(department)
        return found

    shared = (f"EXISTS (SELECT 1 FROM {SHARES} s WHERE s.record_id = c.id AND s.level = ANY(%s)"
              " AND (s.account = %s OR s.department = ANY(%s)))")
    head = f"SELECT {COLUMNS} FROM {TABLE} c WHERE c.tenant = %s AND "

    def hand_rep(action: str) -> Callable[[str], Query]:
        def build(account: str) -> Query:
            return (head + f"(c.owner = %s OR {shared}) {ORDER}",
                    [DOMAIN, account, LEVELS[action], account, chain(account)])
        return build

    def hand_service(action: str) -> Callable[[str], Query]:
        def build(account: str) -> Query:
            return head + f"{shared} {ORDER}", [DOMAIN, LEVELS[action], account, chain(account)]
        return build

    def hand_lead(action: str) -> Callable[[str], Query]:
        def build(account: str) -> Query:
            team = accounts[account]["department"]
            return (head + f"(c.owner = %s OR c.department = %s OR {shared}) {ORDER}",
                    [DOMAIN, account, team, LEVELS[action], account, chain(account)])
        return build

    def hand_assistant(action: str) -> Callable[[str], Query]:
        # What the assistant would see, limited to what its lead sees (the parent's ceiling).
        def build(account: str) -> Query:
            lead = accounts[account]["parent"]
            team = accounts[lead]["department"]
            return (head + f"(c.owner = %s OR {shared}) AND (c.owner = %s OR c.department = %s OR "
                    f"{shared}) {ORDER}",
                    [DOMAIN, account, LEVELS[action], account, chain(account),
                     lead, team, LEVELS[action], lead, chain(lead)])
        return build

    reps = sample("rep")
    yield Persona("rep: own + shared (read)", "read", reps, ours("read"), hand_rep("read"))
    yield Persona("rep: own + shared (update)", "update", reps, ours("update"), hand_rep("update"))
    yield Persona("rep, IN lists (arrays=False)", "read", reps, ours("read", arrays=False),
                  hand_rep("read"))
    yield Persona("service rep: shared only", "read", sample("svc"), ours("read"),
                  hand_service("read"))
    yield Persona("team lead: team + shared", "read", sample("lead-"), ours("read"),
                  hand_lead("read"))
    yield Persona("assistant: capped by its lead", "read", sample("asst-"), ours("read"),
                  hand_assistant("read"))


def timed(conn: psycopg.Connection[Any], build: Callable[[], Query]) -> tuple[float, list[Any]]:
    started = time.perf_counter()
    sql, params = build()
    rows = conn.execute(sql, params).fetchall()
    return time.perf_counter() - started, rows


def plan_of(conn: psycopg.Connection[Any], query: Query) -> dict[str, Any]:
    sql, params = query
    row = conn.execute("EXPLAIN (FORMAT JSON) " + sql, params).fetchone()
    assert row is not None
    nodes: list[str] = []
    indexes: set[str] = set()

    def walk(node: dict[str, Any]) -> None:
        nodes.append(node["Node Type"] + (f" ({node['Subplan Name']})" if "Subplan Name" in node
                                          else ""))
        if "Index Name" in node:
            indexes.add(node["Index Name"])
        for child in node.get("Plans", ()):
            walk(child)

    walk(row[0][0]["Plan"])
    return {"nodes": nodes, "indexes": sorted(indexes)}


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20, method="inclusive")[18]


def run(dsn: str, rows: int, per_record: int, n_accounts: int, rounds: int,
        drop: bool, only: str | None = None) -> dict[str, Any]:
    authz = Authorizer.from_rules(compile_document(DomainDocument.model_validate(organisation())))
    with psycopg.connect(dsn, autocommit=True) as conn:
        setup_seconds = ensure_data(conn, rows, per_record)
        sizes = conn.execute(f"SELECT (SELECT count(*) FROM {TABLE}), (SELECT count(*) FROM {SHARES})"
                             ).fetchone()
        assert sizes is not None
        results: list[dict[str, Any]] = []
        for persona in personas(authz, n_accounts):
            if only is not None and only not in persona.name:
                continue
            times: dict[str, list[float]] = {"salesauthz": [], "hand_written": []}
            gc.disable()
            try:
                for round_ in range(rounds + 1):  # round 0: warm-up and the equality check
                    for k, account in enumerate(persona.accounts):
                        pair = [("salesauthz", persona.ours), ("hand_written", persona.hand)]
                        if (k + round_) % 2:
                            pair.reverse()
                        pages = {}
                        for name, build in pair:
                            elapsed, page = timed(conn, lambda b=build, a=account: b(a))  # type: ignore[misc]
                            pages[name] = page
                            if round_:
                                times[name].append(elapsed)
                        if not round_:
                            assert pages["salesauthz"] == pages["hand_written"], (
                                f"{persona.name}: {account}: the salesauthz query and the "
                                f"hand-written one disagree")
            finally:
                gc.enable()
            example = persona.accounts[0]
            ours_sql, ours_params = persona.ours(example)
            result: dict[str, Any] = {"persona": persona.name, "action": persona.action,
                                      "accounts": len(persona.accounts), "samples": len(times["salesauthz"])}
            for name, values in times.items():
                result[f"{name}_median_ms"] = round(statistics.median(values) * 1000, 3)
                result[f"{name}_p95_ms"] = round(p95(values) * 1000, 3)
            result["ratio_median"] = round(result["salesauthz_median_ms"]
                                           / result["hand_written_median_ms"], 3)
            result["ratio_p95"] = round(result["salesauthz_p95_ms"] / result["hand_written_p95_ms"], 3)
            result["target"] = TARGET
            result["met"] = result["ratio_median"] <= TARGET and result["ratio_p95"] <= TARGET
            result.update({
                "example_account": example,
                "salesauthz_sql": ours_sql,
                "hand_written_sql": persona.hand(example)[0],
                "explain": plan_of(conn, (ours_sql, ours_params)),
                "hand_written_explain": plan_of(conn, persona.hand(example)),
            })
            results.append(result)
            print(f"{persona.name:32} salesauthz median {result['salesauthz_median_ms']:7.3f} ms "
                  f"p95 {result['salesauthz_p95_ms']:7.3f}  hand-written median "
                  f"{result['hand_written_median_ms']:7.3f} p95 {result['hand_written_p95_ms']:7.3f}  "
                  f"ratio {result['ratio_median']:.3f} / {result['ratio_p95']:.3f}"
                  f"{'' if result['met'] else '  MISSED'}", flush=True)
        if drop:
            conn.execute(f"DROP SCHEMA {SCHEMA} CASCADE")
        server = conn.execute("SHOW server_version").fetchone()
    return {
        "benchmark": "bench_share_filters",
        "rows": sizes[0],
        "shares": sizes[1],
        "accounts_per_persona": n_accounts,
        "rounds": rounds,
        "setup_seconds": round(setup_seconds, 1),
        "postgresql": server[0] if server else None,
        "target": f"salesauthz <= {TARGET}x hand-written SQL, median and p95",
        "query": f"SELECT {COLUMNS} FROM {TABLE} c WHERE <scope> {ORDER}",
        "results": results,
    }


def plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results = report["results"]
    labels = [r["persona"].replace(": ", ":\n").replace(", ", ",\n") for r in results]
    x = range(len(labels))
    fig, ax = plt.subplots(figsize=(10, 5))
    series = [("salesauthz_median_ms", "salesauthz, median", "tab:blue", 1.0),
              ("hand_written_median_ms", "hand-written, median", "tab:orange", 1.0),
              ("salesauthz_p95_ms", "salesauthz, p95", "tab:blue", 0.45),
              ("hand_written_p95_ms", "hand-written, p95", "tab:orange", 0.45)]
    width = 0.2
    for k, (key, label, color, alpha) in enumerate(series):
        ax.bar([i + (k - 1.5) * width for i in x], [r[key] for r in results], width, label=label,
               color=color, alpha=alpha)
    for i, r in enumerate(results):
        top = max(r[key] for key, *_ in series)
        text = f"{r['ratio_median']:.2f}x / {r['ratio_p95']:.2f}x"
        ax.annotate(text if r["met"] else text + "\nmissed", (i, top), ha="center", va="bottom",
                    color="black" if r["met"] else "red", fontsize=8)
    ax.set_xticks(list(x), labels, fontsize=8)
    ax.set_ylabel("latency, ms (page of 50)")
    ax.margins(y=0.15)
    version = str(report["postgresql"]).split()[0]
    ax.set_title(f"Shared records: {report['rows']:,} customers, {report['shares']:,} shares, "
                 f"PostgreSQL {version}\n(ratio salesauthz / hand-written: median / p95; "
                 f"target <= {TARGET}x)", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--dsn", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--shares-per-record", type=int, default=3)
    parser.add_argument("--accounts", type=int, default=200, help="accounts drawn per persona")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "bench_share_filters.json")
    parser.add_argument("--plot", type=Path, help="PNG plot (default: --out with .png)")
    parser.add_argument("--docs-plot",
                        default=str(HERE.parent / "docs" / "filtering-shares-benchmark.png"),
                        help="a copy of the plot for docs/filtering.md ('' to skip)")
    parser.add_argument("--drop", action="store_true",
                        help="drop the bench_share_filters schema at the end")
    parser.add_argument("--only", help="rerun only the personas whose name contains this text; "
                        "their rows replace the same rows of the existing --out report")
    args = parser.parse_args(argv)
    report = run(args.dsn, args.rows, args.shares_per_record, args.accounts, args.rounds,
                 args.drop, args.only)
    if args.only is not None and args.out.exists():
        previous = json.loads(args.out.read_text())
        fresh = {r["persona"]: r for r in report["results"]}
        for row in fresh.values():
            row["rerun"] = time.strftime("%Y-%m-%d", time.gmtime())
        kept = [fresh.pop(r["persona"], r) for r in previous["results"]]
        previous["results"] = kept + list(fresh.values())
        report = previous
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1, ensure_ascii=False) + "\n")
    plot_path = args.plot or args.out.with_suffix(".png")
    plot(report, plot_path)
    if args.docs_plot:
        shutil.copyfile(plot_path, Path(args.docs_plot))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
