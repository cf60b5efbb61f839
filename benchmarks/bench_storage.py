"""Storage benchmarks: change propagation between two processes, and loading 1M rules.

1. **Propagation latency** — process A (this one) and process B (spawned) open the same
   PostgreSQL store, each with a watcher (Redis pub/sub, then PostgreSQL LISTEN/NOTIFY). A
   alternately revokes and re-grants one permission; B busy-checks it. Latency = from A calling
   ``apply_changes`` to B's ``check`` flipping (commit + publish + delivery + domain reload).
2. **Loading 1M rules from SQLite** — ``Authorizer.from_url("sqlite:///…")`` until it is ready to
   answer, against pycasbin's ``load_policy`` through ``casbin-sqlalchemy-adapter`` over the same
   rules in its ``casbin_rule`` table (same file system, same process, cold Python objects).

Writes the numbers as JSON (``--out``) and a PNG plot next to it. ``--quick``: 50 changes and
100k rules. Needs the PostgreSQL (127.0.0.1:5432, database ``test``) and Redis (127.0.0.1:6379)
servers for part 1 (``--no-watch`` skips it).
"""

from __future__ import annotations

import argparse
import gc
import json
import multiprocessing
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


def propagation(kind: str, changes: int) -> dict[str, Any]:
    import psycopg

    schema = "bench_" + uuid.uuid4().hex[:10]
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


def loading(target_rules: int) -> dict[str, Any]:
    import casbin
    import casbin_sqlalchemy_adapter
    from orggen import generate

    from salesauthz.models.loader import bundled_model_text

    rules = list(dict.fromkeys(generate(target_rules).rules))
    work = Path(tempfile.mkdtemp(prefix="bench_storage_"))
    ours_url, theirs_url = f"sqlite:///{work / 'ours.db'}", f"sqlite:///{work / 'casbin.db'}"
    started = time.perf_counter()
    store = SQLAdapter(ours_url)
    for start in range(0, len(rules), 100_000):
        store.apply(rules[start:start + 100_000], [])
    store.close()
    write_ours = time.perf_counter() - started
    theirs = casbin_sqlalchemy_adapter.Adapter(theirs_url)  # creates its casbin_rule table
    with theirs._engine.begin() as conn:
        table = casbin_sqlalchemy_adapter.adapter.CasbinRule.__table__
        for start in range(0, len(rules), 100_000):
            conn.execute(table.insert(), [rule_values(r) for r in rules[start:start + 100_000]])
    del store
    gc.collect()

    started = time.perf_counter()
    authz = Authorizer.from_url(ours_url)
    ours_ready = time.perf_counter() - started
    loaded = len(authz.rules())
    authz.close()
    del authz
    gc.collect()

    model = casbin.Enforcer.new_model(text=bundled_model_text())
    started = time.perf_counter()
    theirs.load_policy(model)
    pycasbin_load = time.perf_counter() - started
    pycasbin_rules = sum(len(a.policy) for s in ("p", "g") for a in model.model.get(s, {}).values())
    return {
        "rules": len(rules), "salesauthz_loaded_rules": loaded, "pycasbin_loaded_rules": pycasbin_rules,
        "salesauthz_from_url_ready_s": round(ours_ready, 3),
        "pycasbin_load_policy_s": round(pycasbin_load, 3),
        "speedup": round(pycasbin_load / ours_ready, 2),
        "salesauthz_import_write_s": round(write_ours, 3),
    }


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
        names = ["salesauthz\nfrom_url (ready)", "pycasbin\nload_policy"]
        values = [load["salesauthz_from_url_ready_s"], load["pycasbin_load_policy_s"]]
        bars = right.bar(names, values, color=["tab:blue", "tab:gray"])
        right.bar_label(bars, labels=[f"{v:.1f} s" for v in values])
        right.set_ylabel("seconds")
        right.set_title(f"Loading {load['rules']:,} rules from SQLite")
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, required=True, help="JSON file for the results")
    parser.add_argument("--plot", type=Path, help="PNG plot (default: --out with .png)")
    parser.add_argument("--quick", action="store_true", help="50 changes, 100k rules")
    parser.add_argument("--changes", type=int, default=None, help="changes per watcher (default 300)")
    parser.add_argument("--rules", type=int, default=None, help="rules to load (default 1,000,000)")
    parser.add_argument("--no-watch", action="store_true", help="skip the propagation part")
    parser.add_argument("--no-load", action="store_true", help="skip the loading part")
    args = parser.parse_args(argv)
    changes = args.changes or (50 if args.quick else 300)
    target = args.rules or (100_000 if args.quick else 1_000_000)
    result: dict[str, Any] = {
        "machine": {"python": platform.python_version(), "platform": platform.platform(),
                    "cpus": multiprocessing.cpu_count()},
        "propagation": [], "loading": None,
    }
    if not args.no_watch:
        for kind in ("redis", "postgresql"):
            row = propagation(kind, changes)
            print(f"{kind}: p50 {row['p50_ms']} ms, p99 {row['p99_ms']} ms, max {row['max_ms']} ms "
                  f"over {row['changes']} changes ({row['missed']} missed)", flush=True)
            result["propagation"].append(row)
    if not args.no_load:
        result["loading"] = loading(target)
        print(json.dumps(result["loading"]), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    plot(result, args.plot or args.out.with_suffix(".png"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
