"""Storage benchmarks: change propagation between two processes, and loading 1M rules.

1. **Propagation latency** — process A (this one) and process B (spawned) open the same
   PostgreSQL store, each with a watcher (Redis pub/sub, then PostgreSQL LISTEN/NOTIFY). A
   alternately revokes and re-grants one permission; B busy-checks it. Latency = from A calling
   ``apply_changes`` to B's ``check`` flipping (commit + publish + delivery + domain reload).
2. **Loading 1M rules from SQLite** — ``Authorizer.from_url("sqlite:///…")`` until it is ready to
   answer, against ``casbin.Enforcer.load_policy()`` (salesauthz's model, role links built) over
   the same rules in a ``casbin_rule`` table, read by a plain ``sqlite3`` adapter
   (``casbin_sqlite3_adapter.py``, the verdict's baseline), by the same adapter the way most
   adapters do it (``load_policy_line``), and by ``casbin-sqlalchemy-adapter``. Each load runs in
   a fresh process (imports not timed), the engines alternating round by round; the verdict is
   the median over rounds of salesauthz's CPU time over the plain adapter's.

Writes the numbers as JSON (``--out``) and a PNG plot next to it. ``--quick``: 50 changes and
100k rules. Needs the PostgreSQL (127.0.0.1:5432, database ``test``) and Redis (127.0.0.1:6379)
servers for part 1 (``--no-watch`` skips it).
"""

from __future__ import annotations

import argparse
import gc
import json
import multiprocessing
import os
import platform
import statistics
import sys
import tempfile
import time
import uuid
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "src"))

from salesauthz import Authorizer, Record  # noqa: E402
from salesauthz.adapters.sql import SQLAdapter, rule_values  # noqa: E402

PG = "postgresql://postgres@127.0.0.1:5432/test"
ACCOUNT, DOMAIN = "rep-1", "acme"
RECORD = Record("customer", owner="someone")
GRANT = ("p", "rep", DOMAIN, "customer", "read", "all", "")
RULES = [("p2", DOMAIN, "customer", "read"), ("p3", ACCOUNT, DOMAIN, "active"), ("p4", "rep", DOMAIN),
         ("g", ACCOUNT, "rep", DOMAIN), GRANT]


# -- 1. propagation ---------------------------------------------------------------------------


def _process_b(pipe: Connection, store_url: str, watch_url: str) -> None:
    sys.path.insert(0, str(HERE.parent / "src"))
    authz = Authorizer.from_url(store_url, watch=watch_url)
    pipe.send("ready")
    while True:
        command = pipe.recv()
        if command is None:
            break
        expected, timeout = command
        pipe.send("armed")
        deadline = time.monotonic() + timeout
        flipped = None
        while time.monotonic() < deadline:
            if authz.check(ACCOUNT, "read", RECORD, domain=DOMAIN) == expected:
                flipped = time.time()
                break
            time.sleep(0.0002)
        pipe.send(flipped)
    authz.close()


def propagation(kind: str, changes: int, tag: str = "bench") -> dict[str, Any]:
    import psycopg

    schema = f"{tag}_" + uuid.uuid4().hex[:10]  # also the Redis / NOTIFY channel
    admin = psycopg.connect("host=127.0.0.1 user=postgres dbname=test", autocommit=True)
    admin.execute(f'CREATE SCHEMA "{schema}"')
    store_url = f"{PG}?options=-csearch_path%3D{schema}"
    channel = schema
    watch_url = (f"redis://127.0.0.1:6379/0?channel={channel}" if kind == "redis"
                 else f"{PG}?channel={channel}")
    try:
        seed = SQLAdapter(store_url)
        seed.apply(RULES, [])
        seed.close()
        context = multiprocessing.get_context("spawn")
        ours, theirs = context.Pipe()
        worker = context.Process(target=_process_b, args=(theirs, store_url, watch_url), daemon=True)
        worker.start()
        if not ours.poll(60) or ours.recv() != "ready":
            raise RuntimeError("process B did not start")
        latencies: list[float] = []
        missed = 0
        with Authorizer.from_url(store_url, watch=watch_url) as process_a:
            for n in range(changes):
                revoke = n % 2 == 0
                ours.send((not revoke, 5.0))
                if ours.recv() != "armed":
                    raise RuntimeError("process B is out of step")
                started = time.time()
                if revoke:
                    process_a.apply_changes(removed=[GRANT])
                else:
                    process_a.apply_changes([GRANT])
                flipped = ours.recv()
                if flipped is None:
                    missed += 1
                else:
                    latencies.append(max(0.0, flipped - started))
        ours.send(None)
        worker.join(10)
    finally:
        admin.execute(f'DROP SCHEMA "{schema}" CASCADE')
        admin.close()
    ordered = sorted(latencies)
    return {
        "watcher": kind, "changes": changes, "missed": missed,
        "p50_ms": round(1000 * statistics.median(ordered), 2),
        "p99_ms": round(1000 * ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))], 2),
        "max_ms": round(1000 * ordered[-1], 2),
        "mean_ms": round(1000 * statistics.fmean(ordered), 2),
        "latencies_ms": [round(1000 * x, 3) for x in latencies],
    }


# -- 2. loading ---------------------------------------------------------------------------------

LOAD_ENGINES = {
    "salesauthz": "Authorizer.from_url('sqlite:///…') until ready to answer (read, validate, compile)",
    "pycasbin + plain sqlite3 adapter": "casbin.Enforcer(salesauthz's model).load_policy() through "
                                        "benchmarks/casbin_sqlite3_adapter.py (one cursor, values "
                                        "appended to the model; role links built): the verdict's baseline",
    "pycasbin + sqlite3 adapter, parsed lines": "the same adapter the way most adapters hand rules "
                                                "over (persist.load_policy_line on a joined line)",
    "pycasbin + casbin-sqlalchemy-adapter": "casbin.Enforcer(...).load_policy() through "
                                            "casbin_sqlalchemy_adapter (ORM objects; the previous baseline)",
}


def make_stores(target_rules: int, work: Path) -> dict[str, Any]:
    """The same rules in salesauthz's store and in a ``casbin_rule`` table (two files)."""
    import casbin_sqlalchemy_adapter
    import casbin_sqlite3_adapter
    from orggen import generate

    rules = list(dict.fromkeys(generate(target_rules).rules))
    started = time.perf_counter()
    store = SQLAdapter(f"sqlite:///{work / 'ours.db'}")
    for start in range(0, len(rules), 100_000):
        store.apply(rules[start:start + 100_000], [])
    store.close()
    write_ours = time.perf_counter() - started
    casbin_sqlite3_adapter.write_rules(str(work / "casbin.db"), rules)
    # casbin-sqlalchemy-adapter's own table, in a file of its own (its ORM creates it).
    theirs = casbin_sqlalchemy_adapter.Adapter(f"sqlite:///{work / 'casbin-orm.db'}")
    with theirs._engine.begin() as conn:
        table = casbin_sqlalchemy_adapter.adapter.CasbinRule.__table__
        for start in range(0, len(rules), 100_000):
            conn.execute(table.insert(), [rule_values(r) for r in rules[start:start + 100_000]])
    return {"rules": len(rules), "salesauthz_import_write_s": round(write_ours, 3)}


def load_worker(engine: str, work: Path) -> dict[str, Any]:
    """In a fresh interpreter: imports first (not timed), then the load, in wall and CPU time."""
    import casbin
    import casbin_sqlalchemy_adapter
    import casbin_sqlite3_adapter

    from salesauthz.models.loader import bundled_model_text

    enforcer: Any = None
    if engine != "salesauthz":
        model = work / "model.conf"
        model.write_text(bundled_model_text())
        enforcer = casbin.Enforcer(str(model))
        if engine == "pycasbin + casbin-sqlalchemy-adapter":
            adapter: Any = casbin_sqlalchemy_adapter.Adapter(f"sqlite:///{work / 'casbin-orm.db'}")
        else:
            adapter = casbin_sqlite3_adapter.SQLite3Adapter(
                str(work / "casbin.db"), parse_lines=engine.endswith("parsed lines"))
        enforcer.set_adapter(adapter)
    gc.collect()
    wall, cpu = time.perf_counter(), time.process_time()
    if enforcer is None:
        authz = Authorizer.from_url(f"sqlite:///{work / 'ours.db'}")
    else:
        enforcer.load_policy()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    if enforcer is None:
        loaded = len(authz.rules())
        authz.close()
    else:
        loaded = sum(len(a.policy) for s in ("p", "g") for a in enforcer.model.model.get(s, {}).values())
    return {"engine": engine, "wall_s": round(wall, 4), "cpu_s": round(cpu, 4), "loaded_rules": loaded}


def loading(target_rules: int, rounds: int, work: Path | None = None) -> dict[str, Any]:
    """Every engine in a fresh process per round, the engines' order alternating between
    rounds; per round, salesauthz's time over each baseline's (wall and CPU). ``work``: a
    directory to keep the stores in (reused when it already holds them)."""
    import subprocess

    work = work or Path(tempfile.mkdtemp(prefix="bench_storage_"))
    made = work / "stores.json"
    if made.exists() and json.loads(made.read_text())["target"] == target_rules:
        result = json.loads(made.read_text())["result"]
    else:
        work.mkdir(parents=True, exist_ok=True)
        for name in ("ours.db", "casbin.db", "casbin-orm.db"):
            (work / name).unlink(missing_ok=True)
        result = make_stores(target_rules, work)
        made.write_text(json.dumps({"target": target_rules, "result": result}))
    runs: dict[str, list[dict[str, Any]]] = {engine: [] for engine in LOAD_ENGINES}
    for number in range(rounds):
        order = list(LOAD_ENGINES) if number % 2 == 0 else list(reversed(LOAD_ENGINES))
        for engine in order:
            done = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--load-worker",
                                   engine, str(work)], capture_output=True, text=True, check=True)
            runs[engine].append(json.loads(done.stdout.strip().splitlines()[-1]))
            print(f"  round {number + 1}: {engine}: {runs[engine][-1]}", flush=True)
    result["rounds"] = rounds
    result["engines"] = {}
    for engine, measured in runs.items():
        result["engines"][engine] = {
            "description": LOAD_ENGINES[engine], "loaded_rules": measured[0]["loaded_rules"],
            "wall_s": [m["wall_s"] for m in measured], "cpu_s": [m["cpu_s"] for m in measured],
            "median_wall_s": statistics.median(m["wall_s"] for m in measured),
            "median_cpu_s": statistics.median(m["cpu_s"] for m in measured)}
    ours = runs["salesauthz"]
    for engine in list(LOAD_ENGINES)[1:]:
        theirs = runs[engine]
        entry = result["engines"][engine]
        pairs = list(zip(ours, theirs, strict=True))
        entry["ratio_wall_per_round"] = [round(a["wall_s"] / b["wall_s"], 3) for a, b in pairs]
        entry["ratio_cpu_per_round"] = [round(a["cpu_s"] / b["cpu_s"], 3) for a, b in pairs]
        entry["median_ratio_wall"] = statistics.median(entry["ratio_wall_per_round"])
        entry["median_ratio_cpu"] = statistics.median(entry["ratio_cpu_per_round"])
    baseline = result["engines"]["pycasbin + plain sqlite3 adapter"]
    result["target"] = ("salesauthz / pycasbin with a plain sqlite3 adapter <= 1.0 "
                        "(median of per-round CPU-time ratios)")
    result["measured"] = baseline["median_ratio_cpu"]
    result["met"] = baseline["median_ratio_cpu"] <= 1.0
    result["load_average"] = os.getloadavg()
    # The previous format's keys, for readers of older results.
    result["salesauthz_from_url_ready_s"] = result["engines"]["salesauthz"]["median_wall_s"]
    result["pycasbin_load_policy_s"] = baseline["median_wall_s"]
    return result


# -- output -----------------------------------------------------------------------------------


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for row in result["propagation"]:
        ordered = sorted(row["latencies_ms"])
        left.plot(ordered, [(i + 1) / len(ordered) for i in range(len(ordered))],
                  label=f"{row['watcher']}: p50 {row['p50_ms']} ms, p99 {row['p99_ms']} ms")
    left.set_xlabel("commit in A → check flips in B (ms)")
    left.set_ylabel("fraction of changes")
    left.set_title("Propagation between two processes (PostgreSQL store)")
    left.set_xscale("log")
    left.grid(True, alpha=0.3)
    if result["propagation"]:
        left.legend(fontsize=8)
    load = result.get("loading")
    if load:
        names = list(load["engines"])
        values = [load["engines"][n]["median_cpu_s"] for n in names]
        bars = right.barh([n.replace(" + ", "\n+ ") for n in names], values,
                          color=["tab:blue"] + ["tab:gray"] * (len(names) - 1))
        right.bar_label(bars, labels=[f"{v:.2f} s" for v in values])
        right.invert_yaxis()
        right.tick_params(axis="y", labelsize=7)
        right.set_xlabel("CPU seconds to a ready engine (median of rounds)")
        verdict = "met" if load["met"] else "MISSED"
        right.set_title(f"Loading {load['rules']:,} rules from SQLite: {verdict} "
                        f"({load['measured']:.2f}x the plain sqlite3 adapter)", fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, help="JSON file for the results")
    parser.add_argument("--plot", type=Path, help="PNG plot (default: --out with .png)")
    parser.add_argument("--quick", action="store_true", help="50 changes, 100k rules")
    parser.add_argument("--changes", type=int, default=None, help="changes per watcher (default 300)")
    parser.add_argument("--rules", type=int, default=None, help="rules to load (default 1,000,000)")
    parser.add_argument("--no-watch", action="store_true", help="skip the propagation part")
    parser.add_argument("--no-load", action="store_true", help="skip the loading part")
    parser.add_argument("--load-rounds", type=int, default=None, help="loading rounds (default 5; quick 3)")
    parser.add_argument("--tag", default="bench",
                        help="prefix of the PostgreSQL schema and channel names (made unique)")
    parser.add_argument("--load-dir", type=Path, help="keep (and reuse) the loading part's stores here")
    parser.add_argument("--load-worker", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.load_worker:
        print(json.dumps(load_worker(args.load_worker[0], Path(args.load_worker[1]))))
        return 0
    if args.out is None:
        parser.error("--out is required")
    changes = args.changes or (50 if args.quick else 300)
    target = args.rules or (100_000 if args.quick else 1_000_000)
    result: dict[str, Any] = {
        "machine": {"python": platform.python_version(), "platform": platform.platform(),
                    "cpus": multiprocessing.cpu_count()},
        "propagation": [], "loading": None,
    }
    if not args.no_watch:
        for kind in ("redis", "postgresql"):
            row = propagation(kind, changes, args.tag)
            print(f"{kind}: p50 {row['p50_ms']} ms, p99 {row['p99_ms']} ms, max {row['max_ms']} ms "
                  f"over {row['changes']} changes ({row['missed']} missed)", flush=True)
            result["propagation"].append(row)
    if not args.no_load:
        result["loading"] = loading(target, args.load_rounds or (3 if args.quick else 5), args.load_dir)
        print(json.dumps({k: v for k, v in result["loading"].items() if k != "engines"}), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    plot(result, args.plot or args.out.with_suffix(".png"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
