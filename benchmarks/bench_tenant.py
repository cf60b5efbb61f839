"""Big tenants: what a change, a sub-account fill, a reload, the cache and spread traffic cost as
a deployment grows (issue "Big tenants").

    python benchmarks/bench_tenant.py [--quick] [--sizes 100000,1000000]
        [--out benchmarks/results/bench_tenant.json] [--plot ...png]

For each size, one organisation (``orggen.generate``: 2-16 tenants, ~3.3 rules per account) in
the in-memory store, and:

- **grant**: ``apply_changes`` adding one direct grant to a different active account each time,
  after 1,000 warm-up grants (steady state: the first collections of the garbage collector after
  a bulk load move the whole heap once and are not a change's cost); median and p99 per grant.
  Target at 1M rules: ≤ 0.2 ms.
- **move**: one account moved to another department, 300 times (no target: shown beside the
  grant; the homes map is copied once per change that moves someone).
- **sub-account fill**: a chain of sub-accounts (each ``regional_vp``, capped by its parent), the
  leaf's cache entry dropped with its parents cached — depth 1 vs depth 16 (target: depth 16
  ≤ 2× depth 1) — and the whole chain cold (linear in depth by nature: each level's own map is
  computed once).
- **reload one tenant**: ``store.load`` of one tenant and ``Authorizer.reload`` of one tenant.
- **cache**: bytes per cached account (tracemalloc over 5,000 fills, the cache's bookkeeping
  included), the cold fill per account, and the cache size a tenant's active accounts need.
- **spread traffic**: warm checks cycling over a hot 200 accounts, 2,000 and 20,000 accounts drawn
  uniformly from every tenant's active accounts, and over every account of the organisation
  (~300k at 1M rules), all cached under the default cache size — once over prepared request
  objects (the benchmark's own objects are as cold as the cache: a lower bound), and once as a
  server sees them, a stream of requests decoded into fresh objects, the check's share being the
  loop with the check minus the loop without it (the verdict: ≤ 1.5× the hot 200), and the
  floor of any cache keyed by account: the same loop with one ``dict.get`` by the account's
  name in the cache's own dict, whose growth over the hot 200 is set against what the target
  allows the whole check to grow (0.5× the hot check);
  the resident memory that caching every account adds, against the index's own (target: ≤ 1×);
  and ``check_many`` on a page of 500 records for 500 different accounts against 500 single
  checks.

Medians over batches (``time.perf_counter_ns``); the Python loop driving the calls is included.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "src"))

import orggen  # noqa: E402

from salesauthz import Authorizer, Record  # noqa: E402
from salesauthz.adapters.memory import MemoryAdapter  # noqa: E402

Row = dict[str, Any]
GRANT_TARGET_MS = 0.2
SPREAD_TARGET = 1.5  # warm check over many accounts / over a hot 200


def rss_bytes() -> int:
    """This process's resident set now (Linux)."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def median_p99(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


def per_call_ns(run: Callable[[], object], calls: int, batches: int) -> float:
    run()
    samples = []
    for _ in range(batches):
        started = time.perf_counter_ns()
        run()
        samples.append((time.perf_counter_ns() - started) / calls)
    return statistics.median(samples)


def bench_grant(org: orggen.Organisation, authz: Authorizer, count: int) -> Row:
    domain = org.domains[0]
    accounts = org.top_level_active[domain]
    for i in range(1_000):  # warm-up: see the module documentation
        authz.apply_changes(added=[("p", accounts[i % len(accounts)], domain, "customer",
                                    "export", "own", "")])
    samples = []
    for i in range(count):
        rule = ("p", accounts[i % len(accounts)], domain, "lead", "delete", "own", "")
        started = time.perf_counter_ns()
        authz.apply_changes(added=[rule])
        samples.append((time.perf_counter_ns() - started) / 1e6)
    median, p99 = median_p99(samples)
    return {"op": "grant", "median_ms": round(median, 4), "p99_ms": round(p99, 4),
            "n": count, "target_ms": GRANT_TARGET_MS, "accounts_in_tenant": len(org.accounts[domain])}


def bench_move(org: orggen.Organisation, authz: Authorizer, count: int) -> Row:
    """One account moved to another department (its ``g3`` rule replaced), ``count`` times
    over different accounts of the first tenant: what a move costs as the tenant grows (no
    target in the issue; shown beside the grant's)."""
    domain = org.domains[0]
    accounts = org.top_level_active[domain][:count]
    departments = org.departments[domain]
    homes = {r[1]: r for r in authz.rules(domain) if r[0] == "g3"}
    samples = []
    for i, account in enumerate(accounts):
        old = homes.get(account)
        if old is None:
            continue
        new = (old[0], old[1], departments[i % len(departments)], *old[3:])
        if new == old:
            continue
        started = time.perf_counter_ns()
        authz.apply_changes(added=[new], removed=[old])
        samples.append((time.perf_counter_ns() - started) / 1e6)
    median, p99 = median_p99(samples)
    return {"op": "move", "median_ms": round(median, 4), "p99_ms": round(p99, 4),
            "n": len(samples), "accounts_in_tenant": len(org.accounts[domain])}


def chain_rules(depth: int, chains: int) -> list[tuple[str, ...]]:
    domain = "chains"
    rules: list[tuple[str, ...]] = [("p2", domain, t, a) for t, acts in orggen.VOCABULARY.items()
                                    for a in acts]
    for role, (parents, permissions) in orggen.ROLES.items():
        rules.append(("p4", role, domain))
        rules += [("g", role, parent, domain) for parent in parents]
        rules += [("p", role, domain, t, a, scope, "") for t, acts, scope in permissions for a in acts]
    rules += [("g2", "company", "", domain), ("g2", "east", "company", domain),
              ("g2", "region-0", "company", domain), ("g2", "region-1", "company", domain)]
    for c in range(chains):
        for k in range(depth + 1):
            name = f"c{c}-{k}"
            rules += [("p3", name, domain, "active"), ("g3", name, "east", domain),
                      ("g", name, "regional_vp", domain)]
            if k:
                rules.append(("g4", name, f"c{c}-{k - 1}", domain))
    return rules


def bench_chains(depths: tuple[int, ...] = (1, 16), chains: int = 30) -> list[Row]:
    authz = Authorizer.from_rules(chain_rules(max(depths), chains))
    record = Record("customer", owner="someone", department="east")
    rows: list[Row] = []
    for depth in depths:
        leaf: list[float] = []
        whole: list[float] = []
        for c in range(chains):
            for k in range(depth):
                authz.check(f"c{c}-{k}", "read", record, domain="chains")
            authz._cache.drop("chains", f"c{c}-{depth}")
            started = time.perf_counter_ns()
            authz.check(f"c{c}-{depth}", "read", record, domain="chains")
            leaf.append((time.perf_counter_ns() - started) / 1e3)
            authz.cache_clear()
            started = time.perf_counter_ns()
            authz.check(f"c{c}-{depth}", "read", record, domain="chains")
            whole.append((time.perf_counter_ns() - started) / 1e3)
        rows.append({"op": "sub-account fill", "depth": depth,
                     "leaf_fill_us": round(statistics.median(leaf), 1),
                     "whole_chain_cold_us": round(statistics.median(whole), 1)})
    rows[-1]["leaf_ratio_to_depth_1"] = round(rows[-1]["leaf_fill_us"] / rows[0]["leaf_fill_us"], 2)
    rows[-1]["target_ratio"] = 2.0
    return rows


def bench_reload(org: orggen.Organisation, store: MemoryAdapter, authz: Authorizer) -> Row:
    domain = org.domains[0]
    loads, reloads = [], []
    for _ in range(3):
        started = time.perf_counter_ns()
        rules = store.load([domain])
        loads.append((time.perf_counter_ns() - started) / 1e6)
        started = time.perf_counter_ns()
        authz.reload([domain])
        reloads.append((time.perf_counter_ns() - started) / 1e6)
    return {"op": "reload one tenant", "tenants": len(org.domains), "tenant_rules": len(rules),
            "store_load_ms": round(min(loads), 2), "reload_ms": round(min(reloads), 1)}


def bench_cache(org: orggen.Organisation, authz: Authorizer, rng: random.Random) -> Row:
    pool = [(a, d) for d in org.domains for a in org.accounts[d]]
    chosen = rng.sample(pool, min(5_000, len(pool)))
    authz.cache_clear()
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for account, domain in chosen:
        authz.check(account, "read", Record("customer", owner=account), domain=domain)
    per_account = (tracemalloc.get_traced_memory()[0] - before) / len(chosen)
    tracemalloc.stop()
    authz.cache_clear()
    started = time.perf_counter_ns()
    for account, domain in chosen:
        authz.check(account, "read", Record("customer", owner=account), domain=domain)
    fill_us = (time.perf_counter_ns() - started) / 1e3 / len(chosen)
    active = sum(len(v) for v in org.top_level_active.values())
    return {"op": "cache", "bytes_per_cached_account": round(per_account),
            "cold_fill_us": round(fill_us, 1), "active_top_level_accounts": active,
            "default_cache_size": authz.cache_info().maxsize,
            "memory_to_cache_every_active_account_mb": round(per_account * active / 2**20, 1)}


def request_stream(traffic: list[tuple[str, str]]) -> tuple[bytes, int]:
    """``(account, domain)`` requests as one buffer of fixed-width ``domain<TAB>account`` lines."""
    lines = [f"{d}\t{a}".encode() for a, d in traffic]
    width = max(map(len, lines))
    return b"".join(line.ljust(width) for line in lines), width


def stream_ns(blob: bytes, width: int, check: Callable[..., object] | None, rounds: int) -> float:
    """Per request: decode it into fresh objects and (with ``check``) decide it."""
    count = len(blob) // width

    def run() -> None:
        for start in range(0, len(blob), width):
            domain, account = blob[start:start + width].decode().rstrip().split("\t")
            record = Record("customer", owner=account)
            if check is not None:
                check(account, "read", record, domain=domain)

    return per_call_ns(run, count, rounds)


def bench_spread(org: orggen.Organisation, authz: Authorizer, rng: random.Random,
                 index: int) -> list[Row]:
    pool = [(a, d) for d in org.domains for a in org.top_level_active[d]]
    rows: list[Row] = []
    check = authz.check
    for count in (200, 2_000, 20_000):
        if count > len(pool):
            continue
        chosen = rng.sample(pool, count)
        prepared = [(a, Record("customer", owner=a), d) for a, d in chosen]

        def batch(prepared: list[tuple[str, Record, str]] = prepared) -> None:
            for account, record, domain in prepared:
                check(account, "read", record, domain=domain)

        rows.append({"op": "warm check", "accounts": count,
                     "median_ns": round(per_call_ns(batch, count, max(5, 40_000 // count)))})
    # Uniform traffic over every account of the organisation (sub-accounts and inactive ones
    # included), all of them cached under the default cache size; and what caching them costs
    # in memory (resident set growth) against the index's own.
    everyone = [(a, Record("customer", owner=a), d) for d in org.domains for a in org.accounts[d]]
    rng.shuffle(everyone)
    gc.collect()
    before = rss_bytes()
    for account, record, domain in everyone:
        check(account, "read", record, domain=domain)
    gc.collect()
    cached = rss_bytes() - before

    def whole(prepared: list[tuple[str, Record, str]] = everyone) -> None:
        for account, record, domain in prepared:
            check(account, "read", record, domain=domain)

    rows.append({"op": "warm check", "accounts": len(everyone), "every_account": True,
                 "median_ns": round(per_call_ns(whole, len(everyone), 5)),
                 "cached_entries": authz.cache_info().currsize})
    hot = rows[0]["median_ns"]
    for row in rows:
        row["ratio_to_hot_200"] = round(row["median_ns"] / hot, 2)
    # The same traffics as a server sees them: a stream of requests read in arrival order, each
    # decoded into fresh objects (the account's name, the record) before its check, so only the
    # authorizer's own structures are cold. The check's share is the loop with the check minus
    # the same loop without it; the verdict is on that share.
    pools = {200: pool, 2_000: pool, 20_000: pool}
    by_domain = authz._cache.domains  # the cache's own dicts: domain -> account -> entry

    def one_lookup(account: str, action: str, record: Record, *, domain: str) -> object:
        return by_domain[domain].get(account)

    streamed: list[Row] = []
    for count, source in (*pools.items(), (len(everyone), None)):
        if source is None:
            chosen = [(a, d) for a, _, d in everyone]
        elif count > len(source):
            continue
        else:
            chosen = rng.sample(source, count)
        traffic = chosen * max(1, 40_000 // len(chosen))
        rng.shuffle(traffic)
        blob, width = request_stream(traffic)
        rounds = 5 if len(traffic) > 100_000 else 15
        with_check = stream_ns(blob, width, check, rounds)
        without = stream_ns(blob, width, None, rounds)
        lookup = stream_ns(blob, width, one_lookup, rounds)
        streamed.append({"op": "warm check, request stream", "accounts": count,
                         "every_account": source is None, "requests": len(traffic),
                         "loop_with_check_ns": round(with_check),
                         "loop_without_check_ns": round(without),
                         "loop_with_one_lookup_ns": round(lookup),
                         "median_ns": round(with_check - without)})
    hot_stream = streamed[0]
    for row in streamed:
        row["ratio_to_hot_200"] = round(row["median_ns"] / hot_stream["median_ns"], 2)
        row["target"] = SPREAD_TARGET
        row["met"] = row["ratio_to_hot_200"] <= SPREAD_TARGET
        # The floor: what one dict lookup by the account's name (the least any cache keyed by
        # account does) costs more here than over the hot 200, against what the target allows
        # the whole check to cost more: (target - 1) x the hot check.
        row["one_lookup_extra_ns"] = (row["loop_with_one_lookup_ns"]
                                      - hot_stream["loop_with_one_lookup_ns"])
        row["allowed_extra_ns"] = round((SPREAD_TARGET - 1) * hot_stream["median_ns"])
    rows.extend(streamed)
    rows.append({"op": "cache memory, every account cached", "accounts": len(everyone),
                 "cache_rss_mb": round(cached / 2**20, 1), "index_rss_mb": round(index / 2**20, 1),
                 "ratio_to_index": round(cached / index, 2), "target": "<= 1.0 x index",
                 "met": cached <= index})
    # One page of 500 records, each of a different account (a mixed page: an approval queue).
    domain = org.domains[0]
    owners = org.accounts[domain]
    viewers = rng.sample(org.top_level_active[domain], min(500, len(org.top_level_active[domain])))
    page = [(viewer, "read", Record("customer", owner=rng.choice(owners),
                                    department=rng.choice(org.departments[domain])))
            for viewer in viewers]
    for viewer, action, record in page:
        check(viewer, action, record, domain=domain)
    expected = [check(a, act, r, domain=domain) for a, act, r in page]
    if authz.check_many(page, domain=domain) != expected:
        raise SystemExit("check_many disagrees with check; aborting")
    many = per_call_ns(lambda: authz.check_many(page, domain=domain), len(page), 100)

    def singles() -> None:
        for account, action, record in page:
            check(account, action, record, domain=domain)

    single = per_call_ns(singles, len(page), 100)
    rows.append({"op": "check_many, 500 accounts", "check_many_ns": round(many),
                 "check_ns": round(single), "ratio": round(many / single, 2)})
    return rows


def bench_size(target: int, log: Callable[[str], None]) -> list[Row]:
    rng = random.Random(target)
    org = orggen.generate(target)
    store = MemoryAdapter(org.rules)
    gc.collect()
    before = rss_bytes()
    authz = Authorizer(store)
    gc.collect()
    index = rss_bytes() - before  # the compiled index and master copy (the store excluded)
    log(f"{target:>9,} rules, {len(org.domains)} tenants, "
        f"{sum(map(len, org.accounts.values())):,} accounts")
    rows = [bench_grant(org, authz, 2_000), bench_move(org, authz, 300),
            bench_reload(org, store, authz),
            bench_cache(org, authz, rng), *bench_spread(org, authz, rng, index)]
    for row in rows:
        row["rules"] = target
        log("    " + json.dumps({k: v for k, v in row.items() if k != "rules"}))
    return rows


def plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = report["results"]
    fig, axes = plt.subplots(1, 3, figsize=(13, 4))
    grants = [r for r in rows if r["op"] == "grant"]
    axes[0].bar([f"{r['rules']:,}" for r in grants], [r["median_ms"] for r in grants])
    axes[0].axhline(GRANT_TARGET_MS, color="red", linestyle="--", label="target")
    axes[0].set_title("one grant (median ms)")
    axes[0].set_xlabel("rules")
    axes[0].legend()
    chains = [r for r in rows if r["op"] == "sub-account fill"]
    x = range(len(chains))
    axes[1].bar([i - 0.2 for i in x], [r["leaf_fill_us"] for r in chains], 0.4,
                label="leaf, parents cached")
    axes[1].bar([i + 0.2 for i in x], [r["whole_chain_cold_us"] for r in chains], 0.4,
                label="whole chain cold")
    axes[1].set_xticks(list(x), [f"depth {r['depth']}" for r in chains])
    axes[1].set_title("sub-account fill (µs)")
    axes[1].legend(fontsize=8)
    for op, how in (("warm check", "prepared objects"), ("warm check, request stream", "request stream")):
        spread = [r for r in rows if r["op"] == op]
        for size in sorted({r["rules"] for r in spread}):
            mine = [r for r in spread if r["rules"] == size]
            axes[2].plot([r["accounts"] for r in mine], [r["median_ns"] for r in mine], marker="o",
                         label=f"{size:,} rules, {how}")
            for r in mine:
                if "met" in r and not r["met"]:
                    axes[2].annotate("missed", (r["accounts"], r["median_ns"]), fontsize=7)
    axes[2].set_xscale("log")
    axes[2].set_title("warm check vs accounts in the traffic (ns)")
    axes[2].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="100k and 1M rules, fewer samples")
    parser.add_argument("--sizes", help="comma-separated rule counts")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "bench_tenant.json")
    parser.add_argument("--plot", type=Path)
    args = parser.parse_args(argv)
    sizes = ([int(s) for s in args.sizes.split(",")] if args.sizes
             else [100_000, 1_000_000])

    def log(message: str) -> None:
        print(message, flush=True)

    rows: list[Row] = []
    for size in sizes:
        rows.extend(bench_size(size, log))
        gc.collect()
    rows.extend(bench_chains())
    for row in rows[-2:]:
        log("    " + json.dumps(row))
    report = {"benchmark": "bench_tenant", "python": sys.version.split()[0], "results": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    plot(report, args.plot or args.out.with_suffix(".png"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
