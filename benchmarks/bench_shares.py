"""Checks on shared records (相关团队): a warm check on a record carrying 5 shares against the same
check on a record without shares, side by side in one run, on realistic traffic.

    python benchmarks/bench_shares.py [--quick] --out results.json [--plot results.png]

The organisation is ``orggen.generate`` (100k rules; ``--quick``: 10k) with share levels declared
for customers (``read_only: [read]``, ``read_write: [read, update]``) and ``customer:read@shared``
and ``customer:update@shared`` added to the ``junior_rep`` role, so that every rep's effective
map holds a guarded (share) term. Requests come from up to 2,000 active top-level accounts spread
over every tenant (not a hot few); each account's map is cached before timing (warm checks).

Pairs — the same request on the same record, without shares and with 5 shares (each ratio's
target: ≤ 1.5×, the issue's acceptance point):

- *reached by a share*: another account's record in another department; without shares it is
  denied, with 5 shares (the last naming the asker read-write) it is allowed by ``shared``;
- *no matching share*: the same record, with 5 shares none of which names the asker (denied
  both ways, every share examined);
- *own record*: the asker's own record (allowed by ``own`` both ways, before any share is
  looked at).

Latencies are medians and 95th percentiles of per-call means over batches (``perf_counter_ns``
around a batch of 500 calls), the Python loop included; a row that misses its target says so.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "src"))

import orggen  # noqa: E402

from salesauthz import Authorizer, Record, Share  # noqa: E402
from salesauthz.adapters.memory import MemoryAdapter  # noqa: E402

TARGET = 1.5
BATCH = 500
Request = tuple[str, str, Record]  # account, domain, record


def organisation(size: int) -> tuple[orggen.Organisation, list[tuple[str, ...]]]:
    org = orggen.generate(size)
    rules = list(org.rules)
    for domain in org.domains:
        rules += [("p7", domain, "customer", "read_only", "read"),
                  ("p7", domain, "customer", "read_write", "read"),
                  ("p7", domain, "customer", "read_write", "update"),
                  ("p", "junior_rep", domain, "customer", "read", "shared", ""),
                  ("p", "junior_rep", domain, "customer", "update", "shared", "")]
    return org, rules


def requests(org: orggen.Organisation, rules: Sequence[tuple[str, ...]], rng: random.Random,
             count: int, authz: Authorizer) -> dict[str, tuple[list[Request], list[Request]]]:
    """``pair name → (without shares, with 5 shares)``, request by request the same asker: active
    top-level accounts whose roles include the rep's (``update`` on their own customers and on
    customers shared with them read-write)."""
    home = {(r[1], r[3]): r[2] for r in rules if r[0] == "g3"}
    askers = [(d, a) for d in org.domains for a in org.top_level_active[d]
              if authz.check(a, "update", Record("customer", owner=a), domain=d)]
    rng.shuffle(askers)
    askers = askers[:count]
    pairs: dict[str, tuple[list[Request], list[Request]]] = {
        "reached by a share": ([], []), "no matching share": ([], []), "own record": ([], [])}
    for domain, asker in askers:
        others = [a for a in org.accounts[domain]
                  if home.get((a, domain)) not in (None, home.get((asker, domain)))]
        if not others:
            continue
        other = rng.choice(others)
        where = home[(other, domain)]
        if authz.check(asker, "update", Record("customer", owner=other, department=where),
                       domain=domain):
            continue  # a manager reaching that department anyway: not a share's question
        decoys = tuple(Share(rng.choice(["read_only", "read_write"]),
                             account=rng.choice(others)) for _ in range(4))
        mine = Share("read_write", account=asker)
        foreign = Share("read_write", account=rng.choice(others))
        theirs = Record("customer", owner=other, department=where)
        own = Record("customer", owner=asker)
        if not authz.check(asker, "update", theirs._replace(shares=(*decoys, mine)), domain=domain):
            continue  # its roles do not include the rep's shared rights
        for name, record, shares in (("reached by a share", theirs, (*decoys, mine)),
                                     ("no matching share", theirs, (*decoys, foreign)),
                                     ("own record", own, (*decoys, foreign))):
            pairs[name][0].append((asker, domain, record))
            pairs[name][1].append((asker, domain, record._replace(shares=shares)))
    return pairs


def timed(check: Callable[..., bool], batch: list[Request], action: str, rounds: int) -> list[float]:
    samples: list[float] = []
    for _ in range(rounds):
        start = time.perf_counter_ns()
        for account, domain, record in batch:
            check(account, action, record, domain=domain)
        samples.append((time.perf_counter_ns() - start) / len(batch))
    return samples


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def run(size: int, accounts: int, rounds: int, log: Callable[[str], None]) -> list[dict[str, Any]]:
    rng = random.Random(size)
    org, rules = organisation(size)
    authz = Authorizer(MemoryAdapter(rules))
    pairs = requests(org, rules, rng, accounts, authz)
    rows: list[dict[str, Any]] = []
    expected = {"reached by a share": (False, True), "no matching share": (False, False),
                "own record": (True, True)}
    for name, (plain, shared) in pairs.items():
        action = "update"
        for batch, want in zip((plain, shared), expected[name], strict=True):
            wrong = [r for r in batch if authz.check(r[0], action, r[2], domain=r[1]) != want]
            if wrong:
                raise SystemExit(f"{name}: {len(wrong)} unexpected decisions, e.g. {wrong[0]}")
        # Interleave the two sides round by round, so that load changes hit both alike.
        plain_samples: list[float] = []
        shared_samples: list[float] = []
        for _ in range(rounds):
            for start in range(0, len(plain), BATCH):
                plain_samples += timed(authz.check, plain[start:start + BATCH], action, 1)
                shared_samples += timed(authz.check, shared[start:start + BATCH], action, 1)
        base, with_shares = statistics.median(plain_samples), statistics.median(shared_samples)
        ratio = with_shares / base
        row = {"pair": name, "rules": len(rules), "accounts": len(plain), "action": action,
               "without_shares_ns": round(base, 1),
               "without_shares_p95_ns": round(percentile(plain_samples, 0.95), 1),
               "with_5_shares_ns": round(with_shares, 1),
               "with_5_shares_p95_ns": round(percentile(shared_samples, 0.95), 1),
               "ratio": round(ratio, 3), "target": TARGET, "met": ratio <= TARGET}
        rows.append(row)
        log(f"{name:>18}: {base:7.0f} ns without shares, {with_shares:7.0f} ns with 5 "
            f"({ratio:.2f}×, target ≤ {TARGET}× {'met' if row['met'] else 'MISSED'})")
    return rows


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7.5, 4))
    names = [r["pair"] for r in rows]
    xs = range(len(rows))
    axis.bar([x - 0.2 for x in xs], [r["without_shares_ns"] for r in rows], 0.4, label="without shares")
    axis.bar([x + 0.2 for x in xs], [r["with_5_shares_ns"] for r in rows], 0.4, label="with 5 shares")
    for x, r in zip(xs, rows, strict=True):
        axis.text(x + 0.2, r["with_5_shares_ns"], f"{r['ratio']:.2f}×" + ("" if r["met"] else " MISSED"),
                  ha="center", va="bottom", fontsize=8)
    axis.set_xticks(list(xs), names)
    axis.set_ylabel("ns per warm check (median)")
    axis.set_title(f"check on shared records, {rows[0]['rules']:,} rules, "
                   f"{rows[0]['accounts']:,} accounts (target ≤ {TARGET}×)")
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10k rules, fewer rounds")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "bench_shares.json")
    parser.add_argument("--plot", type=Path, default=None)
    args = parser.parse_args(argv)
    size, accounts, rounds = (10_000, 400, 5) if args.quick else (100_000, 2_000, 15)
    rows = run(size, accounts, rounds, lambda line: print(line, flush=True))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"python": platform.python_version(), "machine": platform.machine(),
                                    "rows": rows}, indent=2) + "\n", encoding="utf-8")
    if args.plot is not None:
        plot(rows, args.plot)
    return 0 if all(r["met"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
