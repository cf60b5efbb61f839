"""Several app servers on one store (PostgreSQL + Redis): what a remote change costs a follower,
how fast changes propagate to several followers, and whether concurrent administrators can ever
commit a decision made on stale rules.

    python benchmarks/bench_multiserver.py --out benchmarks/results/bench_multiserver.json

Parts (each can be run alone with ``--only``):

1. ``cpu`` — **CPU per remote change.** A follower process holds one tenant (20k, then 62.5k
   rules, from ``orggen``) and follows the store through a Redis watcher; this process changes
   one account's roles at a steady rate. The follower reports its own CPU time (user + system)
   over the run, minus what it burns idle over the same time (heartbeats): divided by the number
   of changes, that is what one change made elsewhere costs every other process.
2. ``propagation`` — **four processes, 1M rules over 16 tenants** (``orggen``). Three
   followers load every tenant; one writer process (this one, holding no tenant itself) makes
   changes at a steady rate (``--rate``), round-robin over the tenants, each giving or taking one
   account's ``sales_ops`` role, which a follower observes with ``check``. Each follower is armed
   before the commit, busy-polls the decision and reports when it flipped: propagation = flip
   time - the moment the writer called ``apply_changes`` (commit included). Reported:
   p50/p99/max, changes a follower never saw within 5 s (missed), and the watchers' deny-all
   and single-domain suspensions.
3. ``conflicts`` — **two processes making conflicting administrative changes** for ``--seconds``
   (default 20) through ``authz.admin(...)`` on the sample organisation: taking and giving back
   mgr_east's role, freezing it, granting, revoking, moving and freezing its reports
   (``tests/adapters/_stress.py``). Afterwards the audit trail is replayed: each committed
   operation is decided again on the rules *as they were just before it committed*. Reported:
   commits, compare-and-set failures (decided again), operations given up after the retries,
   refusals, illegal commits (must be 0), store states with a doubled fact (must be 0), whether
   the audit records are exactly the committed changes. Run once more with the compare-and-set
   switched off (``without_cas``: what a process did before this release) for comparison.

Writes the results as JSON (``--out``) and a PNG plot next to it (``--plot``). Needs PostgreSQL
(127.0.0.1:5432, database ``test``) and Redis (127.0.0.1:6379).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import platform
import resource
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE.parent / "src"))

from salesauthz import Authorizer  # noqa: E402
from salesauthz.adapters.sql import SQLAdapter  # noqa: E402

PG = "postgresql://postgres@127.0.0.1:5432/test"
REDIS = "redis://127.0.0.1:6379/0"
Rule = tuple[str, ...]


@contextmanager
def pg_schema(prefix: str = "bench_ms_") -> Iterator[str]:
    """A store URL in a fresh PostgreSQL schema, dropped afterwards."""
    import psycopg

    schema = prefix + uuid.uuid4().hex[:10]
    with psycopg.connect("host=127.0.0.1 user=postgres dbname=test", autocommit=True) as admin:
        admin.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield f"{PG}?options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect("host=127.0.0.1 user=postgres dbname=test", autocommit=True) as admin:
            admin.execute(f'DROP SCHEMA "{schema}" CASCADE')


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def seed(url: str, rules: list[Rule]) -> None:
    store = SQLAdapter(url)
    try:
        for start in range(0, len(rules), 100_000):
            store.apply(rules[start:start + 100_000], [])
    finally:
        store.close()


# -- 1. CPU per remote change --------------------------------------------------------------------


def _cpu_follower(pipe: Connection, store_url: str, watch_url: str, domain: str) -> None:
    sys.path.insert(0, str(HERE.parent / "src"))
    authz = Authorizer.from_url(store_url, watch=watch_url, domains=[domain], staleness=30.0)
    pipe.send("ready")
    try:
        while True:
            command = pipe.recv()
            if command == "stop":
                return
            if command == "cpu":
                pipe.send(cpu_seconds())
            elif isinstance(command, tuple) and command[0] == "wait":  # ("wait", account, role, present)
                _, account, role, present = command
                deadline = time.monotonic() + 30.0
                while time.monotonic() < deadline:
                    view = authz.account(account, domain=domain)
                    if view is not None and (role in view.roles) == present:
                        break
                    time.sleep(0.005)
                pipe.send(time.monotonic() < deadline)
    finally:
        authz.close()


def cpu_per_change(rules_per_tenant: int, changes: int, rate: float) -> dict[str, Any]:
    from orggen import generate

    org = generate(rules_per_tenant * 16)
    domain = org.domains[0]
    rules = [r for r in dict.fromkeys(org.rules) if r[1 + _DOMAIN_AT[r[0]]] == domain]
    account = next(a for a in org.accounts[domain] if "junior_rep" not in org.roles_of[(domain, a)])
    link: Rule = ("g", account, "junior_rep", domain)
    with pg_schema() as url:
        seed(url, rules)
        channel = "bench_cpu_" + uuid.uuid4().hex[:8]
        watch = f"{REDIS}?channel={channel}"
        context = multiprocessing.get_context("spawn")
        ours, theirs = context.Pipe()
        follower = context.Process(target=_cpu_follower, args=(theirs, url, watch, domain), daemon=True)
        follower.start()
        try:
            if not ours.poll(300) or ours.recv() != "ready":
                raise RuntimeError("the follower did not start")
            period = 1.0 / rate
            duration = changes * period
            time.sleep(1.0)
            ours.send("cpu")
            idle_start = ours.recv()
            time.sleep(duration)
            ours.send("cpu")
            idle = ours.recv() - idle_start
            with Authorizer.from_url(url, watch=watch, domains=[domain], staleness=30.0) as writer:
                ours.send("cpu")
                busy_start = ours.recv()
                started = time.monotonic()
                for n in range(changes):
                    time.sleep(max(0.0, started + n * period - time.monotonic()))
                    if n % 2 == 0:
                        writer.apply_changes([link])
                    else:
                        writer.apply_changes(removed=[link])
                time.sleep(max(0.0, started + duration - time.monotonic()))
                ours.send(("wait", account, "junior_rep", changes % 2 == 1))
                if not ours.recv():
                    raise RuntimeError("the follower never saw the last change")
                ours.send("cpu")
                busy = ours.recv() - busy_start
                elapsed = time.monotonic() - started
            ours.send("stop")
            follower.join(30)
        finally:
            if follower.is_alive():
                follower.kill()
    idle_rate = idle / duration
    per_change = max(0.0, busy - idle_rate * elapsed) / changes
    return {"rules_per_tenant": len(rules), "changes": changes, "rate_per_s": rate,
            "follower_cpu_busy_s": round(busy, 4), "follower_cpu_idle_s_per_s": round(idle_rate, 5),
            "cpu_ms_per_change": round(1000 * per_change, 3)}


_DOMAIN_AT = {"p": 1, "p2": 0, "p3": 1, "p4": 1, "g": 2, "g2": 2, "g3": 2, "g4": 2, "p5": 1, "p6": 0}


# -- 2. propagation to three followers -----------------------------------------------------------


def propagation(target_rules: int, changes: int, rate: float) -> dict[str, Any]:
    from orggen import generate
    from tests.adapters._stress import run_propagation

    org = generate(target_rules)
    rules = list(dict.fromkeys(org.rules))
    # Per tenant, a junior rep with no other role: it may delete customers only with sales_ops.
    probes = [(d, next(a for a in org.top_level_active[d] if org.roles_of[(d, a)] == ["junior_rep"]))
              for d in org.domains]
    with pg_schema() as url:
        started = time.monotonic()
        seed(url, rules)
        print(f"propagation: {len(rules):,} rules written in {time.monotonic() - started:.0f} s", flush=True)
        watch = f"{REDIS}?channel=bench_prop_{uuid.uuid4().hex[:8]}"
        result = run_propagation(url, watch, probes, followers=3, changes=changes, rate=rate)
    summary = result.summary()
    summary["rules"] = len(rules)
    summary["tenants"] = len(org.domains)
    summary["latencies_ms"] = [round(1000 * x, 3) for x in result.latencies]
    return summary


# -- 3. conflicting administrators ---------------------------------------------------------------


def conflicts(seconds: float, *, without_cas: bool) -> dict[str, Any]:
    from tests.adapters._stress import run_conflicts

    from salesauthz.models.loader import load_directory

    with pg_schema() as url:
        seed(url, list(load_directory(HERE.parent / "policies").rules))
        watch = f"{REDIS}?channel=bench_conf_{uuid.uuid4().hex[:8]}"
        result = run_conflicts(url, watch, seconds, without_cas=without_cas)
    return {"compare_and_set": not without_cas, **result.summary()}


# -- output ---------------------------------------------------------------------------------------


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, middle, right) = plt.subplots(1, 3, figsize=(15, 4.4))
    cpu = result.get("cpu") or {}
    if cpu:
        runs = [label for label in ("before", "after") if cpu.get(label)]
        sizes = [row["rules_per_tenant"] for row in cpu[runs[0]]]
        width = 0.8 / len(runs)
        for i, label in enumerate(runs):
            values = [row["cpu_ms_per_change"] for row in cpu[label]]
            name = "whole-tenant reload (before)" if label == "before" else "change log (after)"
            bars = left.bar([x + i * width for x in range(len(sizes))], values, width, label=name,
                            color="tab:gray" if label == "before" else "tab:blue")
            left.bar_label(bars, labels=[f"{v:.1f}" for v in values], fontsize=8)
        left.set_xticks([x + width * (len(runs) - 1) / 2 for x in range(len(sizes))],
                        [f"{s:,} rules/tenant" for s in sizes])
        left.set_ylabel("follower CPU ms per remote change")
        left.set_yscale("log")
        left.set_title("What one change elsewhere costs a follower")
        left.legend(fontsize=8)
    prop = result.get("propagation")
    if prop:
        ordered = sorted(prop["latencies_ms"])
        middle.plot(ordered, [(i + 1) / len(ordered) for i in range(len(ordered))], color="tab:blue")
        middle.axvline(1000, color="tab:red", linestyle="--", linewidth=1, label="target p99: 1 s")
        middle.set_xscale("log")
        middle.set_xlabel("commit in the writer → check flips in a follower (ms)")
        middle.set_ylabel("fraction of (change, follower)")
        middle.set_title(f"4 processes, {prop['rules']:,} rules / {prop['tenants']} tenants:\n"
                         f"p50 {prop['p50_ms']} ms, p99 {prop['p99_ms']} ms, {prop['missed']} missed, "
                         f"{prop['deny_all_suspensions']} suspensions", fontsize=9)
        middle.grid(True, alpha=0.3)
        middle.legend(fontsize=8)
    runs = result.get("conflicts") or []
    if runs:
        labels = ["without\ncompare-and-set" if not r["compare_and_set"] else "with\ncompare-and-set"
                  for r in runs]
        committed = [r.get("committed", 0) for r in runs]
        illegal = [r["illegal_commits"] for r in runs]
        positions = range(len(runs))
        right.bar([x - 0.2 for x in positions], committed, 0.4, label="committed", color="tab:blue")
        bars = right.bar([x + 0.2 for x in positions], illegal, 0.4, label="illegal commits", color="tab:red")
        right.bar_label(bars, labels=[str(v) for v in illegal])
        right.set_xticks(list(positions), labels)
        right.set_title(f"2 processes, conflicting administration for {runs[0]['seconds']:g} s", fontsize=9)
        right.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, required=True, help="JSON file for the results")
    parser.add_argument("--plot", type=Path, help="PNG plot (default: --out with .png)")
    parser.add_argument("--only", choices=("cpu", "propagation", "conflicts"), action="append")
    parser.add_argument("--cpu-changes", type=int, default=30)
    parser.add_argument("--cpu-rate", type=float, default=2.0)
    parser.add_argument("--baseline", type=Path,
                        help="the JSON of a --only cpu run of the previous release, shown as 'before'")
    parser.add_argument("--rules", type=int, default=1_000_000, help="rules for the propagation run")
    parser.add_argument("--changes", type=int, default=300, help="changes in the propagation run")
    parser.add_argument("--rate", type=float, default=5.0, help="changes per second in the propagation run")
    parser.add_argument("--seconds", type=float, default=20.0, help="length of each conflicts run")
    args = parser.parse_args(argv)
    parts = args.only or ["cpu", "propagation", "conflicts"]
    # A run of some parts updates those parts of an existing results file.
    result: dict[str, Any] = json.loads(args.out.read_text()) if args.out.exists() and args.only else {}
    result["machine"] = {"python": platform.python_version(), "platform": platform.platform(),
                         "cpus": multiprocessing.cpu_count()}
    if "cpu" in parts:
        rows = []
        for size in (20_000, 62_500):
            row = cpu_per_change(size, args.cpu_changes, args.cpu_rate)
            print(f"cpu: {row['rules_per_tenant']:,} rules/tenant: {row['cpu_ms_per_change']} ms CPU "
                  "per remote change", flush=True)
            rows.append(row)
        before = json.loads(args.baseline.read_text())["cpu"] if args.baseline else None
        result["cpu"] = {"before": before.get("after", before) if isinstance(before, dict) else before,
                         "after": rows}
    if "propagation" in parts:
        result["propagation"] = propagation(args.rules, args.changes, args.rate)
        print("propagation:", json.dumps({k: v for k, v in result["propagation"].items()
                                          if k != "latencies_ms"}), flush=True)
    if "conflicts" in parts:
        result["conflicts"] = []
        for without_cas in (True, False):
            row = conflicts(args.seconds, without_cas=without_cas)
            print("conflicts:", json.dumps(row), flush=True)
            result["conflicts"].append(row)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    plot(result, args.plot or args.out.with_suffix(".png"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
