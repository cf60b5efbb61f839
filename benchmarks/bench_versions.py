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
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
TARGET = 1.10

PROBE = r'''
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
        rows.append({"operation": row, "before_ns": round(before, 1), "after_ns": round(after, 1),
                     "ratio": round(ratio, 3), "target": TARGET, "met": ratio <= TARGET,
                     "rules": size, "accounts": count})
        print(f"{row:>11}: before {before:7.0f} ns, after {after:7.0f} ns "
              f"({ratio:.2f}×, target ≤ {TARGET}× {'met' if ratio <= TARGET else 'MISSED'})")
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
            axis.text(x + 0.2, r["after_ns"], f"{r['ratio']:.2f}×" + ("" if r["met"] else " MISSED"),
                      ha="center", va="bottom", fontsize=8)
        axis.set_xticks(list(xs), [r["operation"] for r in rows])
        axis.set_ylabel("ns per warm check (median of rounds)")
        axis.set_title(f"warm checks, {size:,} rules, {count:,} accounts (target ≤ {TARGET}×)")
        axis.legend()
        figure.tight_layout()
        figure.savefig(args.plot, dpi=110)
    return 0 if all(r["met"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
