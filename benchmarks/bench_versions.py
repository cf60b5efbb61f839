"""The hot path of two salesauthz versions, side by side in one sitting: is a warm check still as
fast as before a change?

    git worktree add --detach /tmp/before <commit>
    python benchmarks/bench_versions.py --before /tmp/before --out results.json [--plot results.png]

Each round runs one subprocess per version (alternating, so load changes hit both alike); each
subprocess imports its version's ``src/``, builds the same ``orggen`` organisation (100k rules;
``--quick``: 10k), caches the effective maps of up to 2,000 active top-level accounts spread over
every tenant, and times warm checks on their own customers (allowed), on another tenant's
vocabulary (denied: an unknown action) and ``check_many`` on 500-record pages. Medians over
rounds of per-call means; the target is *after ≤ 1.10 × before* for each row (a row that misses
it says so).

Wall time on a shared virtual machine swings by 2-4× between processes running the same code (the
memory a process happens to get), so a few rounds can show a regression that is not there. With
``--instructions`` (needs valgrind) each version also runs once under cachegrind with a fixed hash
seed, with and without the timed loops; the difference divided by the number of checks is the
instructions (and first-level data-cache misses) per check: deterministic, and the measure the
verdict then uses. Both are written to the JSON and shown.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
TARGET = 1.10

# Both probes start alike: argv = checkout, benchmarks dir, rules, accounts; the organisation, and
# ``count`` active top-level accounts spread over every tenant that may read their own customers.
SETUP = r'''
import json, random, sys, time
sys.path.insert(0, sys.argv[1] + "/src")
sys.path.insert(0, sys.argv[2])
import orggen
from salesauthz import Authorizer, Record
from salesauthz.adapters.memory import MemoryAdapter
size, count = int(sys.argv[3]), int(sys.argv[4])
org = orggen.generate(size)
authz = Authorizer(MemoryAdapter(org.rules))
rng = random.Random(size)
askers = [(d, a) for d in org.domains for a in org.top_level_active[d]]
rng.shuffle(askers)
askers = [(d, a) for d, a in askers
          if authz.check(a, "read", Record("customer", owner=a), domain=d)][:count]
'''

PROBE = SETUP + r'''
allowed = [(a, d, Record("customer", owner=a)) for d, a in askers]
denied = [(a, d, Record("customer", owner=a)) for d, a in askers]
def timed(action, batch):
    start = time.perf_counter_ns()
    for account, domain, record in batch:
        authz.check(account, action, record, domain=domain)
    return (time.perf_counter_ns() - start) / len(batch)
timed("read", allowed)  # warm every map
out = {"allowed": [], "denied": [], "check_many": []}
for _ in range(7):
    out["allowed"].append(timed("read", allowed))
    out["denied"].append(timed("frobnicate", denied))
    pages = []
    for domain, account in askers[:50]:
        page = [(account, "read", Record("customer", owner=rng.choice(org.accounts[domain])))
                for _ in range(500)]
        pages.append((domain, page))
    start = time.perf_counter_ns()
    for domain, page in pages:
        authz.check_many(page, domain=domain)
    out["check_many"].append((time.perf_counter_ns() - start) / (500 * len(pages)))
print(json.dumps({k: min(v) for k, v in out.items()}))
'''

# The same organisation and requests, each operation repeated ``repeat`` times, untimed: run under
# cachegrind twice (repeat 0 and N) to count what the operations alone execute.
COUNTED = SETUP + r'''
repeat = int(sys.argv[5])
batch = [(a, d, Record("customer", owner=a)) for d, a in askers]
pages = []
for domain, account in askers[:10]:
    pages.append((domain, [(account, "read", Record("customer", owner=rng.choice(org.accounts[domain])))
                           for _ in range(500)]))
for account, domain, record in batch:
    authz.check(account, "read", record, domain=domain)
import gc
gc.collect()
gc.freeze()  # the organisation is old: a collection during the loops would count its objects
check, check_many = authz.check, authz.check_many
for _ in range(repeat):
    if sys.argv[6] == "allowed":
        for account, domain, record in batch:
            check(account, "read", record, domain=domain)
    elif sys.argv[6] == "denied":
        for account, domain, record in batch:
            check(account, "frobnicate", record, domain=domain)
    else:
        for domain, page in pages:
            check_many(page, domain=domain)
'''
COUNT_REPEAT = 100  # checks enough to drown the setup's run-to-run variation (a few million)


def counted(checkout: Path, size: int, count: int, repeat: int, operation: str) -> tuple[int, int]:
    """Instructions and first-level data-cache misses of one run under cachegrind."""
    done = subprocess.run(["valgrind", "--tool=cachegrind", "--cache-sim=yes",
                           "--cachegrind-out-file=/dev/null", sys.executable, "-c", COUNTED,
                           str(checkout), str(HERE), str(size), str(count), str(repeat), operation],
                          check=True, capture_output=True, text=True,
                          env={**os.environ, "PYTHONHASHSEED": "7"})
    found: dict[str, int] = {}
    for line in done.stderr.splitlines():
        match = re.search(r"(I|D1)\s+(refs|misses):\s+([\d,]+)", line)
        if match and match.group(1) + match.group(2) not in found:
            found[match.group(1) + match.group(2)] = int(match.group(3).replace(",", ""))
    return found["Irefs"], found["D1misses"]


def per_check(checkout: Path, size: int, count: int, operation: str) -> tuple[float, float]:
    base = counted(checkout, size, count, 0, operation)
    full = counted(checkout, size, count, COUNT_REPEAT, operation)
    checks = COUNT_REPEAT * (count if operation != "check_many" else 10 * 500)
    return (full[0] - base[0]) / checks, (full[1] - base[1]) / checks


def probe(checkout: Path, size: int, count: int) -> dict[str, float]:
    done = subprocess.run([sys.executable, "-c", PROBE, str(checkout), str(HERE), str(size), str(count)],
                          check=True, capture_output=True, text=True)
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, required=True, help="a checkout of the older version")
    parser.add_argument("--after", type=Path, default=HERE.parent, help="default: this checkout")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "bench_versions.json")
    parser.add_argument("--plot", type=Path, default=None)
    parser.add_argument("--instructions", action="store_true",
                        help="also count instructions per check under valgrind; the verdict uses them")
    args = parser.parse_args()
    size, count = (10_000, 400) if args.quick else (100_000, 2_000)
    samples: dict[str, dict[str, list[float]]] = {"before": {}, "after": {}}
    for round_number in range(args.rounds):
        for label, checkout in (("before", args.before), ("after", args.after)):
            for row, value in probe(checkout, size, count).items():
                samples[label].setdefault(row, []).append(value)
        print(f"round {round_number + 1}/{args.rounds} done", flush=True)
    rows: list[dict[str, Any]] = []
    for row in samples["before"]:
        before = statistics.median(samples["before"][row])
        after = statistics.median(samples["after"][row])
        ratio = after / before
        result: dict[str, Any] = {"operation": row, "before_ns": round(before, 1),
                                  "after_ns": round(after, 1), "ratio": round(ratio, 3),
                                  "target": TARGET, "met": ratio <= TARGET, "measure": "wall time",
                                  "rules": size, "accounts": count}
        line = f"{row:>11}: before {before:7.0f} ns, after {after:7.0f} ns ({ratio:.2f}×)"
        if args.instructions:
            counts = {label: per_check(checkout, 10_000, 400, row)
                      for label, checkout in (("before", args.before), ("after", args.after))}
            ratio = counts["after"][0] / counts["before"][0]
            result.update({"before_instructions": round(counts["before"][0]),
                           "after_instructions": round(counts["after"][0]),
                           "before_d1_misses": round(counts["before"][1], 1),
                           "after_d1_misses": round(counts["after"][1], 1),
                           "instruction_ratio": round(ratio, 3), "met": ratio <= TARGET,
                           "measure": "instructions"})
            line += (f"; instructions {counts['before'][0]:.0f} → {counts['after'][0]:.0f} "
                     f"({ratio:.2f}×), D1 misses {counts['before'][1]:.1f} → {counts['after'][1]:.1f}")
        rows.append(result)
        print(f"{line}: target ≤ {TARGET}× on {result['measure']} "
              f"{'met' if result['met'] else 'MISSED'}", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"python": platform.python_version(), "before": str(args.before),
                                    "rounds": args.rounds, "rows": rows}, indent=2) + "\n",
                        encoding="utf-8")
    if args.plot is not None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        figure, axis = plt.subplots(figsize=(7, 3.8))
        xs = range(len(rows))
        axis.bar([x - 0.2 for x in xs], [r["before_ns"] for r in rows], 0.4, label="before")
        axis.bar([x + 0.2 for x in xs], [r["after_ns"] for r in rows], 0.4, label="after")
        for x, r in zip(xs, rows, strict=True):
            label = f"{r['ratio']:.2f}× wall" + (f"\n{r['instruction_ratio']:.2f}× instr."
                                                 if "instruction_ratio" in r else "")
            axis.text(x + 0.2, r["after_ns"], label + ("" if r["met"] else " MISSED"),
                      ha="center", va="bottom", fontsize=8)
        axis.margins(y=0.2)  # room for the labels under the title
        axis.set_xticks(list(xs), [r["operation"] for r in rows])
        axis.set_ylabel("ns per warm check (median of rounds)")
        axis.set_title(f"warm checks, {size:,} rules, {count:,} accounts (target ≤ {TARGET}×)")
        axis.legend()
        figure.tight_layout()
        figure.savefig(args.plot, dpi=110)
    return 0 if all(r["met"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
