"""salesauthz ``check`` against pycasbin, side by side, on synthetic CRM organisations.

    python benchmarks/bench_check.py [--quick] --out results.json [--plot results.png]

Sizes: 1k, 10k, 100k and 1M policy rules (``--quick``: 1k, 10k, 100k). For each size, one
organisation (``orggen.generate``) is built and every engine is asked the same requests:

- salesauthz ``Authorizer.check(account, action, Record(type, owner=account), domain=...)``:
  *warm* (the account's effective map is cached) and *cold* (first check of each account after a
  change to its domain), allowed and denied; ``check_many`` on a 500-record page.
- ``casbin.Enforcer.enforce(account, domain, type, action)`` and ``casbin.FastEnforcer`` (keyed on
  domain, object, action) with Casbin's documented RBAC-with-domains model over the *same* role
  and permission rules (``p``: sub, dom, obj, act; ``g``: sub, role, dom); ``Enforcer`` is skipped
  above 100k rules (one request takes seconds there).
- ``functools.lru_cache`` around ``FastEnforcer.enforce``: the naive cache (it never forgets, so it
  answers from stale rules after a change; shown for the cost of a cache hit only).

The Casbin baselines are the strongest ones: each enforcer is built once per order of the
matcher's tests (``MATCHERS``: the documented ``g(...)`` first, and the equality tests first in
three orders), timed on the same requests, and the fastest order is kept (``op == "calibrate"``
rows, ``"chosen": true``; the measured rows name it in ``matcher``). Traffic comes two ways: a
hot set (50 accounts from each of the first four tenants) and *spread* traffic (up to 5,000
active accounts drawn from every tenant, all cached); the verdict rows (``engine == "verdict"``:
≥ 1,000× ``Enforcer`` and ≥ 50× ``FastEnforcer`` at 10k rules) use the spread rows. Cold checks
are measured after a vocabulary change (every map of the domain stale) and, per kind of account
(ordinary, sub-accounts, with a condition, reaching a record through a share), after a grant to
the asking account.

The requests are about the requesting account's own records, by active top-level accounts, so
scopes, statuses and sub-account ceilings cannot make salesauthz's richer answer differ from the
plain RBAC answer: every engine must return the same decision for every request, or the benchmark
aborts. Load time (rule tuples -> ready engine) and resident memory are measured in a fresh
subprocess per engine and size.

Latencies are medians and 99th percentiles of per-call means over batches
(``time.perf_counter_ns`` around a batch of calls; cold checks and the slow Casbin enforcers are
timed one call per sample). The Python loop driving the calls (~30-50 ns) is included.
"""

from __future__ import annotations

import argparse
import functools
import gc
import importlib.util
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "src"))

import orggen  # noqa: E402

from salesauthz import Authorizer, Record  # noqa: E402
from salesauthz.adapters.memory import MemoryAdapter  # noqa: E402

Row = dict[str, Any]
Request = tuple[str, str, str, str, bool]  # account, domain, type, action, expected

SIZES_FULL = [1_000, 10_000, 100_000, 1_000_000]
SIZES_QUICK = [1_000, 10_000, 100_000]
ENFORCER_LIMIT = 100_000
SPREAD_ACCOUNTS = 5_000  # the verdict's traffic: this many accounts over every tenant
VERDICT_RULES = 10_000
CLOCK: Callable[[], int] = time.perf_counter_ns  # --clock cpu: time.process_time_ns


class BenchmarkMismatch(SystemExit):
    """Two engines disagreed: the comparison would be meaningless."""


# -- timing ---------------------------------------------------------------------------------


def percentile(sorted_values: Sequence[float], fraction: float) -> float:
    index = min(len(sorted_values) - 1, max(0, round(fraction * (len(sorted_values) - 1))))
    return sorted_values[index]


def summarise(engine: str, variant: str, rules: int, op: str, per_call_ns: list[float],
              calls: int, **extra: Any) -> Row:
    values = sorted(per_call_ns)
    row: Row = {"engine": engine, "variant": variant, "rules": rules, "op": op,
                "median_ns": round(statistics.median(values), 1),
                "p99_ns": round(percentile(values, 0.99), 1), "n": calls}
    row.update(extra)
    return row


def time_batches(run_batch: Callable[[], object], batch_size: int, batches: int) -> list[float]:
    """Per-call mean (ns) of each of ``batches`` runs of ``run_batch``."""
    clock = CLOCK
    samples = []
    for _ in range(batches):
        start = clock()
        run_batch()
        samples.append((clock() - start) / batch_size)
    return samples


def time_each(calls: Sequence[Callable[[], object]]) -> list[float]:
    clock = CLOCK
    samples = []
    for call in calls:
        start = clock()
        call()
        samples.append(float(clock() - start))
    return samples


# -- engines --------------------------------------------------------------------------------


class ListAdapter:
    """A Casbin adapter serving rules from memory (the cheapest possible Casbin load path: no
    parsing, no I/O), so that ``load_policy`` measures Casbin itself. Like any adapter it hands
    Casbin one fresh list per rule (Casbin keeps them as its policy)."""

    def __init__(self, lines: list[tuple[str, tuple[str, ...]]]) -> None:
        self.lines = lines

    def load_policy(self, model: Any) -> None:
        sections = model.model
        for ptype, values in self.lines:
            sections[ptype[0]][ptype].policy.append(list(values))

    def save_policy(self, model: Any) -> bool:
        return False


def casbin_adapter(lines: list[tuple[str, tuple[str, ...]]]) -> Any:
    from casbin.persist.adapter import Adapter

    class _Adapter(ListAdapter, Adapter):  # type: ignore[misc]  # Casbin insists on its base class
        pass

    return _Adapter(lines)


def baseline_lines(rules: list[tuple[str, ...]]) -> list[tuple[str, tuple[str, ...]]]:
    p_lines, g_lines = orggen.baseline_rules(rules)
    unique_p = list(dict.fromkeys(tuple(v) for v in p_lines))
    return [("p", v) for v in unique_p] + [("g", tuple(v)) for v in g_lines]


def model_file(text: str) -> str:
    with tempfile.NamedTemporaryFile("w", suffix=".conf", delete=False) as handle:
        handle.write(text)
    return handle.name


# The same matcher with its tests in different orders. pycasbin evaluates ``&&`` left to right
# and stops at the first false test, so putting the cheap equality tests before the role lookup
# ``g(...)`` skips that lookup on most policy lines. The benchmark measures every order on the
# same requests and keeps the fastest for each enforcer (and size): the strongest baseline.
DOCUMENTED_MATCHER = "g(r.sub, p.sub, r.dom) && r.dom == p.dom && r.obj == p.obj && r.act == p.act"
MATCHERS: dict[str, str] = {
    "documented (g, dom, obj, act)": DOCUMENTED_MATCHER,
    "equality first (dom, obj, act, g)":
        "r.dom == p.dom && r.obj == p.obj && r.act == p.act && g(r.sub, p.sub, r.dom)",
    "equality first (obj, act, dom, g)":
        "r.obj == p.obj && r.act == p.act && r.dom == p.dom && g(r.sub, p.sub, r.dom)",
    "equality first (act, obj, dom, g)":
        "r.act == p.act && r.obj == p.obj && r.dom == p.dom && g(r.sub, p.sub, r.dom)",
}


def model_text(matcher: str) -> str:
    text = orggen.RBAC_WITH_DOMAINS_MODEL
    if DOCUMENTED_MATCHER not in text:
        raise SystemExit("orggen's model no longer holds the documented matcher")
    return text.replace(DOCUMENTED_MATCHER, matcher)


def casbin_enforcer(lines: list[tuple[str, tuple[str, ...]]], *, fast: bool,
                    matcher: str = DOCUMENTED_MATCHER) -> Any:
    import casbin

    path = model_file(model_text(matcher))
    try:
        if fast:
            enforcer = casbin.FastEnforcer(path, casbin_adapter(lines), cache_key_order=[1, 2, 3])
        else:
            enforcer = casbin.Enforcer(path, casbin_adapter(lines))
    finally:
        os.unlink(path)
    # pycasbin's DomainManager installs an equality "matching function" by default, which makes
    # building a domain's role manager (on the first request there) quadratic in the domain's
    # size: minutes at 20,000 accounts. Exact names are matched without it, so dropping it
    # changes no decision and lets the benchmark measure Casbin's steady state.
    enforcer.get_role_manager().matching_func = None
    return enforcer


# -- requests -------------------------------------------------------------------------------


def sample_requests(org: orggen.Organisation, authz: Authorizer, per_domain: int,
                    rng: random.Random) -> tuple[list[Request], list[Request]]:
    """Allowed and denied requests about own records of active top-level accounts."""
    allowed: list[Request] = []
    denied: list[Request] = []
    pairs = [(t, a) for t, actions in orggen.VOCABULARY.items() for a in actions]
    for domain in org.domains[:4]:
        candidates = org.top_level_active[domain]
        for account in rng.sample(candidates, min(per_domain, len(candidates))):
            held = set(authz.effective_permissions(account, domain=domain))
            yes = sorted(held)
            no = [p for p in pairs if p not in held]
            if yes:
                typ, act = rng.choice(yes)
                allowed.append((account, domain, typ, act, True))
            if no:
                typ, act = rng.choice(no)
                denied.append((account, domain, typ, act, False))
    return allowed, denied


def sample_spread(org: orggen.Organisation, authz: Authorizer, accounts: int,
                  rng: random.Random) -> tuple[list[Request], list[Request]]:
    """One allowed and one denied request for each of ``accounts`` active top-level accounts
    drawn from every tenant (all of them when there are fewer): realistic traffic, not a hot
    set. In random order."""
    pool = [(a, d) for d in org.domains for a in org.top_level_active[d]]
    chosen = rng.sample(pool, min(accounts, len(pool)))
    pairs = [(t, a) for t, actions in orggen.VOCABULARY.items() for a in actions]
    allowed: list[Request] = []
    denied: list[Request] = []
    for account, domain in chosen:
        held = set(authz.effective_permissions(account, domain=domain))
        yes = sorted(held)
        no = [p for p in pairs if p not in held]
        if yes:
            typ, act = rng.choice(yes)
            allowed.append((account, domain, typ, act, True))
        if no:
            typ, act = rng.choice(no)
            denied.append((account, domain, typ, act, False))
    return allowed, denied


def fastest_matcher(lines: list[tuple[str, tuple[str, ...]]], fast: bool,
                    requests: list[Request], rounds: int, target: int
                    ) -> tuple[str, Any, list[Row]]:
    """Build the enforcer once per matcher order, check every one decides ``requests`` as
    expected, time them on the same requests (interleaved, ``rounds`` times), and keep the
    fastest (smallest median allowed + median denied). Returns its name, the enforcer and one
    calibration row per order."""
    engine = "casbin.FastEnforcer" if fast else "casbin.Enforcer"
    built = {name: casbin_enforcer(lines, fast=fast, matcher=text) for name, text in MATCHERS.items()}
    for name, enforcer in built.items():
        compare(f"{engine} [{name}]", lambda q, e=enforcer: bool(e.enforce(q[0], q[1], q[2], q[3])),
                requests)
    clock = CLOCK
    samples: dict[tuple[str, bool], list[float]] = {(n, k): [] for n in built for k in (True, False)}
    for _ in range(rounds):
        for name, enforcer in built.items():
            enforce = enforcer.enforce
            for sub, dom, obj, act, expected in requests:
                start = clock()
                enforce(sub, dom, obj, act)
                samples[(name, expected)].append(float(clock() - start))
    rows: list[Row] = []
    score: dict[str, float] = {}
    for name in built:
        medians = {k: statistics.median(samples[(name, k)]) for k in (True, False)}
        score[name] = medians[True] + medians[False]
        rows.append({"engine": engine, "variant": "matcher order", "rules": target, "op": "calibrate",
                     "median_ns": None, "p99_ns": None, "n": sum(len(samples[(name, k)])
                                                               for k in (True, False)),
                     "matcher_name": name, "matcher": MATCHERS[name],
                     "allowed_median_ns": round(medians[True], 1),
                     "denied_median_ns": round(medians[False], 1)})
    best = min(score, key=score.__getitem__)
    for row in rows:
        row["chosen"] = row["matcher_name"] == best
    return best, built[best], rows


def spread(items: list[Request], count: int) -> list[Request]:
    """``count`` items taken evenly across the list (which is ordered by domain)."""
    step = max(1, len(items) // count)
    return items[::step][:count]


def compare(engine: str, decide: Callable[[Request], bool], requests: Sequence[Request]) -> None:
    for request in requests:
        got = decide(request)
        if got != request[4]:
            raise BenchmarkMismatch(f"decision mismatch: {engine} says {got} for {request[:4]}, "
                                    f"expected {request[4]}; aborting the benchmark")


# -- one size -------------------------------------------------------------------------------


def bench_size(target: int, quick: bool, log: Callable[[str], None]) -> list[Row]:
    rows: list[Row] = []
    rng = random.Random(target)
    org = orggen.generate(target)
    rules = len(org.rules)
    log(f"{target:>9,} rules ({rules:,} generated, {len(org.domains)} domains, "
        f"{sum(map(len, org.accounts.values())):,} accounts)")
    authz = Authorizer(MemoryAdapter(org.rules))
    allowed, denied = sample_requests(org, authz, 50, rng)
    spread_allowed, spread_denied = sample_spread(org, authz, SPREAD_ACCOUNTS, rng)
    authz.cache_clear()
    lines = baseline_lines(org.rules)
    use_enforcer = target <= ENFORCER_LIMIT

    # Every engine must agree on every request before anything is timed.
    everything = allowed + denied
    spread_everything = spread_allowed + spread_denied
    for name, requests in (("hot", everything), ("spread", spread_everything)):
        compare(f"salesauthz.check ({name})", lambda q: authz.check(
            q[0], q[3], Record(q[2], owner=q[0]), domain=q[1]), requests)
        compare(f"salesauthz.check_many ({name})", lambda q: authz.check_many(
            [(q[0], q[3], Record(q[2], owner=q[0]))], domain=q[1])[0], requests)

    def spread_sample(count: int) -> list[Request]:
        """Up to ``count`` allowed and ``count`` denied requests of the spread traffic, at random."""
        return (rng.sample(spread_allowed, min(count, len(spread_allowed)))
                + rng.sample(spread_denied, min(count, len(spread_denied))))

    def calibrate(fast: bool, requests: list[Request], rounds: int) -> tuple[str, Any]:
        """The fastest matcher order of one enforcer class and that enforcer (the calibration
        rows join the results)."""
        matcher, chosen, calibration = fastest_matcher(lines, fast, requests, rounds, target)
        rows.extend(calibration)
        log(f"    casbin.{'FastEnforcer' if fast else 'Enforcer'} matcher order: {matcher}")
        return matcher, chosen

    # Spread over the domains: the first domain's rules come first in Casbin's policy list, so
    # its allowed requests stop the scan early; taking only those would flatter Casbin.
    per_kind = 6 if target >= 100_000 else 24
    enforcer_sample = spread(allowed, per_kind) + spread(denied, per_kind)
    # The verdict's Enforcer sample: an allowed request's cost depends on where its line sits in
    # the policy, so the spread sample is larger wherever a call is cheap enough (≤ 10k rules).
    spread_kind = per_kind if target >= 100_000 else 100
    enforcer_spread = spread_sample(spread_kind)
    # The strongest baselines: each enforcer with the matcher order that is fastest for it here.
    fast_matcher, fast = calibrate(True, spread_sample(100), 2 if quick else 3)
    enforcer: Any = None
    enforcer_matcher = None
    if use_enforcer:
        half = len(enforcer_spread) // 2
        calibration_requests = (spread(enforcer_spread[:half], max(4, per_kind // 2))
                                + spread(enforcer_spread[half:], max(4, per_kind // 2)))
        enforcer_matcher, enforcer = calibrate(False, calibration_requests, 2)
    naive = functools.lru_cache(maxsize=None)(fast.enforce)
    compare("casbin.FastEnforcer", lambda q: bool(fast.enforce(q[0], q[1], q[2], q[3])),
            everything + spread_everything)
    compare("lru_cache(FastEnforcer.enforce)", lambda q: bool(naive(q[0], q[1], q[2], q[3])),
            everything + spread_everything)
    if enforcer is not None:
        compare("casbin.Enforcer", lambda q: bool(enforcer.enforce(q[0], q[1], q[2], q[3])),
                enforcer_sample + enforcer_spread)
    matchers = {"casbin.FastEnforcer": fast_matcher, "casbin.Enforcer": enforcer_matcher}

    batches = 100 if quick else 400
    for op, requests in (("check_allowed", allowed), ("check_denied", denied)):
        prepared = [(q[0], q[3], Record(q[2], owner=q[0]), q[1]) for q in requests]
        check = authz.check

        def warm_batch(prepared: list[tuple[str, str, Record, str]] = prepared,
                       check: Callable[..., bool] = check) -> None:
            for account, action, record, domain in prepared:
                check(account, action, record, domain=domain)

        warm_batch()
        samples = time_batches(warm_batch, len(prepared), batches)
        rows.append(summarise("salesauthz", "warm", target, op, samples, len(prepared) * batches,
                              rule_count=rules))

        # Cold: a change to each domain (a new action in its vocabulary) makes every cached map
        # of the domain stale; then time the first check of each account.
        cold: list[float] = []
        for round_number in range(2 if quick else 4):
            for domain in {q[3] for q in prepared}:
                marker = ("p2", domain, "product", f"bench-{round_number}")
                authz.apply_changes(added=[marker])
                calls = [functools.partial(check, a, act, rec, domain=d)
                         for a, act, rec, d in prepared if d == domain]
                cold.extend(time_each(calls))
                authz.apply_changes(removed=[marker])
                for call in calls:  # re-warm before the next domain's round
                    call()
        rows.append(summarise("salesauthz", "cold", target, op, cold, len(cold), rule_count=rules))

        naive_batch_requests = [(q[0], q[1], q[2], q[3]) for q in requests]

        def naive_batch(reqs: list[tuple[str, str, str, str]] = naive_batch_requests) -> None:
            for sub, dom, obj, act in reqs:
                naive(sub, dom, obj, act)

        naive_batch()
        samples = time_batches(naive_batch, len(naive_batch_requests), batches)
        rows.append(summarise("lru_cache(FastEnforcer.enforce)", "warm", target, op, samples,
                              len(naive_batch_requests) * batches, rule_count=rules))

        fast_calls = [functools.partial(fast.enforce, q[0], q[1], q[2], q[3]) for q in requests]
        fast_samples = time_each(fast_calls * (2 if quick else 5))
        rows.append(summarise("casbin.FastEnforcer", "uncached", target, op, fast_samples,
                              len(fast_samples), rule_count=rules, matcher=fast_matcher))

        if enforcer is not None:
            subset = [q for q in enforcer_sample if q[4] == (op == "check_allowed")]
            if target <= 1_000:
                subset = subset * 4
            calls = [functools.partial(enforcer.enforce, q[0], q[1], q[2], q[3]) for q in subset]
            samples = time_each(calls)
            rows.append(summarise("casbin.Enforcer", "uncached", target, op, samples, len(samples),
                                  rule_count=rules, matcher=enforcer_matcher))
    if enforcer is None:
        rows.append({"engine": "casbin.Enforcer", "variant": "skipped", "rules": target,
                     "op": "check_allowed", "median_ns": None, "p99_ns": None, "n": 0,
                     "note": f"skipped above {ENFORCER_LIMIT:,} rules (a denied request scans every line)"})

    rows.extend(bench_spread(authz, fast, enforcer, naive, matchers, spread_allowed,
                             spread_denied, enforcer_spread, target, rules, quick))
    rows.append(bench_check_many(org, authz, target, rules, batches, rng))
    rows.extend(bench_many_accounts(org, authz, naive, target, rules, rng))
    rows.extend(bench_cold_kinds(org, authz, target, rules, rng, 30 if quick else 100))
    for row in rows:
        if row["engine"] == "salesauthz" and row["op"] != "check_many":
            log(f"    {row['engine']:<32} {row['variant']:<9} {row['op']:<14} "
                f"median {row['median_ns']:>10,.0f} ns  p99 {row['p99_ns']:>10,.0f} ns")
        elif row["median_ns"] is not None:
            log(f"    {row['engine']:<32} {row['variant']:<9} {row['op']:<14} "
                f"median {row['median_ns']:>10,.0f} ns")
    return rows


def bench_spread(authz: Authorizer, fast: Any, enforcer: Any, naive: Callable[..., Any],
                 matchers: dict[str, str | None], spread_allowed: list[Request],
                 spread_denied: list[Request], enforcer_spread: list[Request], target: int,
                 rules: int, quick: bool) -> list[Row]:
    """Every engine on spread traffic (up to ``SPREAD_ACCOUNTS`` accounts over every tenant,
    each account's map cached for salesauthz): the rows the verdict uses."""
    rows: list[Row] = []
    check = authz.check
    for op, requests in (("check_allowed", spread_allowed), ("check_denied", spread_denied)):
        prepared = [(q[0], q[3], Record(q[2], owner=q[0]), q[1]) for q in requests]

        def batch(prepared: list[tuple[str, str, Record, str]] = prepared) -> None:
            for account, action, record, domain in prepared:
                check(account, action, record, domain=domain)

        batch()
        samples = time_batches(batch, len(prepared), 20 if quick else 60)
        rows.append(summarise("salesauthz", "warm, spread", target, op, samples,
                              len(prepared) * len(samples), rule_count=rules,
                              accounts=len(prepared)))
        plain = [(q[0], q[1], q[2], q[3]) for q in requests]

        def naive_batch(plain: list[tuple[str, str, str, str]] = plain) -> None:
            for sub, dom, obj, act in plain:
                naive(sub, dom, obj, act)

        naive_batch()
        samples = time_batches(naive_batch, len(plain), 20 if quick else 60)
        rows.append(summarise("lru_cache(FastEnforcer.enforce)", "warm, spread", target, op,
                              samples, len(plain) * len(samples), rule_count=rules,
                              accounts=len(plain)))
        samples = time_each([functools.partial(fast.enforce, *q) for q in plain])
        rows.append(summarise("casbin.FastEnforcer", "uncached, spread", target, op, samples,
                              len(samples), rule_count=rules, accounts=len(plain),
                              matcher=matchers["casbin.FastEnforcer"]))
        if enforcer is not None:
            subset = [q[:4] for q in enforcer_spread if q[4] == (op == "check_allowed")]
            samples = time_each([functools.partial(enforcer.enforce, *q) for q in subset * 2])
            rows.append(summarise("casbin.Enforcer", "uncached, spread", target, op, samples,
                                  len(samples), rule_count=rules, accounts=len(subset),
                                  matcher=matchers["casbin.Enforcer"]))
    return rows


def bench_cold_kinds(org: orggen.Organisation, authz: Authorizer, target: int, rules: int,
                     rng: random.Random, per_kind: int) -> list[Row]:
    """The first check after a real change to the asking account — a grant — for four kinds of
    accounts: ordinary (top-level), sub-accounts (the grant goes to the whole parent chain, so
    the ceiling lets it through), accounts holding a permission with a condition, and accounts
    reaching a record through a share. Each account is checked (and its map cached) before the
    grant, denied; the timed check after the grant must be allowed; the grant is then revoked."""
    from salesauthz import Share
    from salesauthz.conditions import Condition, encode_scope

    condition = Condition.of({"amount": {"le": 100000}})
    assert condition is not None
    conditioned = encode_scope("all", condition)
    setup: list[tuple[str, ...]] = []
    for domain in org.domains:
        setup += [("p2", domain, "report", "bench_grant"), ("p2", domain, "customer", "bench_cond"),
                  ("p2", domain, "customer", "bench_share"),
                  ("p10", domain, "customer", "amount", "int"),
                  ("p7", domain, "customer", "bench_level", "bench_share")]
    authz.apply_changes(added=setup)
    status = {(r[1], r[2]): r[3] for r in org.rules if r[0] == "p3"}
    parent = {(r[1], r[3]): r[2] for r in org.rules if r[0] == "g4"}
    home = {(r[1], r[3]): r[2] for r in org.rules if r[0] == "g3"}
    top = [(a, d) for d in org.domains for a in org.top_level_active[d]]

    def chain(account: str, domain: str) -> list[str] | None:
        links = [account]
        while (links[-1], domain) in parent:
            links.append(parent[(links[-1], domain)])
            if status.get((links[-1], domain)) != "active" or len(links) > 64:
                return None
        return links

    subs = [(a, d, c) for (a, d) in parent if status.get((a, d)) == "active"
            for c in [chain(a, d)] if c is not None]
    Case = tuple[str, str, str, Record, list[tuple[str, ...]]]  # account, domain, action, record, grants
    cases: dict[str, list[Case]] = {"ordinary": [], "sub-account": [], "conditions": [], "shares": []}
    for a, d in rng.sample(top, min(per_kind, len(top))):
        cases["ordinary"].append((a, d, "bench_grant", Record("report", owner=a),
                                  [("p", a, d, "report", "bench_grant", "own", "")]))
    for a, d, links in rng.sample(subs, min(per_kind, len(subs))):
        cases["sub-account"].append((a, d, "bench_grant", Record("report", owner=a),
                                     [("p", x, d, "report", "bench_grant", "all", "") for x in links]))
    for a, d in rng.sample(top, min(per_kind, len(top))):
        cases["conditions"].append((a, d, "bench_cond",
                                    Record("customer", owner=a, attributes={"amount": 5_000}),
                                    [("p", a, d, "customer", "bench_cond", conditioned, "")]))
    for a, d in rng.sample(top, min(per_kind, len(top))):
        others = [b for b in rng.sample(org.accounts[d], min(40, len(org.accounts[d])))
                  if b != a and home.get((b, d)) != home.get((a, d))]
        if len(others) < 5:
            continue
        shares = (*(Share("bench_level", account=b) for b in others[1:5]),
                  Share("bench_level", account=a))
        cases["shares"].append((a, d, "bench_share",
                                Record("customer", owner=others[0], department=home[(others[0], d)],
                                       shares=shares),
                                [("p", a, d, "customer", "bench_share", "shared", "")]))
    rows: list[Row] = []
    clock = CLOCK
    check = authz.check
    for kind, chosen in cases.items():
        samples: list[float] = []
        for account, domain, action, record, grants in chosen:
            if check(account, action, record, domain=domain):  # also caches the account's map
                raise BenchmarkMismatch(f"cold {kind}: {account} allowed before the grant")
            authz.apply_changes(added=grants)
            start = clock()
            allowed = check(account, action, record, domain=domain)
            samples.append(float(clock() - start))
            authz.apply_changes(removed=grants)
            if not allowed:
                raise BenchmarkMismatch(f"cold {kind}: {account} denied after the grant {grants}")
        if samples:
            rows.append(summarise("salesauthz", f"cold after a grant, {kind}", target,
                                  "check_allowed", samples, len(samples), rule_count=rules,
                                  accounts=len(samples)))
    authz.apply_changes(removed=setup)
    return rows


def verdicts(rows: list[Row]) -> list[Row]:
    """The issue's targets against pycasbin at 10k rules, on spread traffic (one row each)."""
    def median(engine: str, variant: str, op: str) -> Row | None:
        for row in rows:
            if (row["engine"], row["variant"], row["op"], row["rules"]) == (
                    engine, variant, op, VERDICT_RULES) and row.get("median_ns"):
                return row
        return None

    out: list[Row] = []
    for op in ("check_allowed", "check_denied"):
        ours = median("salesauthz", "warm, spread", op)
        for engine, target in (("casbin.Enforcer", 1_000.0), ("casbin.FastEnforcer", 50.0)):
            theirs = median(engine, "uncached, spread", op)
            if ours is None or theirs is None:
                continue
            ratio = theirs["median_ns"] / ours["median_ns"]
            out.append({"engine": "verdict", "variant": f"{engine} / salesauthz", "rules": VERDICT_RULES,
                        "op": op, "median_ns": None, "p99_ns": None, "n": 0,
                        "criterion": f"{engine} ({theirs.get('matcher')}) / salesauthz warm, "
                                     f"spread over {ours.get('accounts')} accounts, "
                                     f"{op.replace('check_', '')}, {VERDICT_RULES:,} rules",
                        "measured": round(ratio, 1), "target": f">= {target:,.0f}x",
                        "met": ratio >= target})
    return out


def bench_many_accounts(org: orggen.Organisation, authz: Authorizer, naive: Callable[..., Any],
                        target: int, rules: int, rng: random.Random,
                        accounts: int = 2_000) -> list[Row]:
    """Warm checks cycling through many accounts (all cached): the maps of 2,000 accounts no
    longer fit in the CPU caches, so each check waits for memory. The naive cache, on the same
    requests, for comparison."""
    pool = [(a, d) for d in org.domains for a in org.top_level_active[d]]
    chosen = rng.sample(pool, min(accounts, len(pool)))
    prepared = [(a, "read", Record("product", owner=a), d) for a, d in chosen]
    expected = [("product", "read") in authz.effective_permissions(a, domain=d) for a, d in chosen]
    check = authz.check
    if [check(a, act, rec, domain=d) for a, act, rec, d in prepared] != expected:
        raise BenchmarkMismatch("check disagrees with effective_permissions; aborting")

    def batch() -> None:
        for account, action, record, domain in prepared:
            check(account, action, record, domain=domain)

    samples = time_batches(batch, len(prepared), 40)
    ours = summarise("salesauthz", "warm, many accounts", target, "check_allowed", samples,
                     len(prepared) * 40, rule_count=rules, accounts=len(prepared),
                     allowed=sum(expected))
    requests = [(a, d, "product", "read") for a, d in chosen]
    if [bool(naive(*q)) for q in requests] != expected:
        raise BenchmarkMismatch("lru_cache(FastEnforcer.enforce) disagrees; aborting")

    def naive_batch() -> None:
        for sub, dom, obj, act in requests:
            naive(sub, dom, obj, act)

    samples = time_batches(naive_batch, len(requests), 40)
    theirs = summarise("lru_cache(FastEnforcer.enforce)", "warm, many accounts", target,
                       "check_allowed", samples, len(requests) * 40, rule_count=rules,
                       accounts=len(requests))
    return [ours, theirs]


def bench_check_many(org: orggen.Organisation, authz: Authorizer, target: int, rules: int,
                     batches: int, rng: random.Random) -> Row:
    """One list-view page: a manager filtering 500 records of its domain's accounts."""
    domain = org.domains[0]
    managers = [a for a in org.top_level_active[domain]
                if "sales_manager" in org.roles_of[(domain, a)]] or org.top_level_active[domain]
    viewer = managers[0]
    owners = org.accounts[domain]
    departments = org.departments[domain]
    page = []
    for i in range(500):
        owner = rng.choice(owners)
        department = None if i % 2 else rng.choice(departments)
        page.append((viewer, rng.choice(["read", "update", "export"]),
                     Record(rng.choice(["customer", "order", "lead"]), owner=owner,
                            department=department)))
    expected = [authz.check(a, act, rec, domain=domain) for a, act, rec in page]
    got = authz.check_many(page, domain=domain)
    if got != expected:
        raise BenchmarkMismatch("check_many disagrees with check; aborting the benchmark")
    check_many = authz.check_many
    samples = time_batches(lambda: check_many(page, domain=domain), len(page), batches)
    row = summarise("salesauthz", "warm", target, "check_many", samples, len(page) * batches,
                    rule_count=rules, page=len(page), allowed=sum(expected))
    row["checks_per_s"] = round(1e9 / row["median_ns"])
    return row


# -- load and memory (subprocesses) ---------------------------------------------------------


def rss_bytes() -> int:
    import psutil  # type: ignore[import-untyped]

    return int(psutil.Process().memory_info().rss)


def load_worker(engine: str, target: int, sqlite_url: str | None = None) -> Row:
    """Runs in a fresh interpreter: time to a ready engine, and the memory it holds."""
    org = orggen.generate(target)
    rules = org.rules
    if sqlite_url is not None and engine == "make-sqlite":
        return {"url": sqlite_store(rules, sqlite_url)}
    extra: dict[str, Any] = {}
    prepared: Any = None
    if engine == "casbin.Enforcer(salesauthz model)":
        from salesauthz.models.loader import bundled_model_text

        prepared = ([(r[0], r[1:]) for r in rules], bundled_model_text())
    elif engine.startswith("casbin"):
        prepared = (baseline_lines(rules), orggen.RBAC_WITH_DOMAINS_MODEL)
        extra["baseline_rules"] = len(prepared[0])
    elif engine == "salesauthz(sqlite)":
        prepared = sqlite_url or sqlite_store(rules)
        importlib.import_module("salesauthz.adapters.sql")  # imports (SQLAlchemy) are not load
    elif engine == "salesauthz":
        prepared = MemoryAdapter(rules)  # the store, like Casbin's adapter, exists beforehand
    gc.collect()
    before = rss_bytes()
    start = time.perf_counter()
    ready: Any
    if engine == "salesauthz":
        ready = Authorizer(prepared)
    elif engine == "salesauthz(from tuples)":
        ready = Authorizer(MemoryAdapter(rules))  # includes the store's shape check of each rule
    elif engine == "salesauthz(sqlite)":
        ready = Authorizer.from_url(prepared)
    else:
        import casbin

        lines, model_text = prepared
        path = model_file(model_text)
        kind = casbin.FastEnforcer if engine.startswith("casbin.FastEnforcer") else casbin.Enforcer
        options = {"cache_key_order": [1, 2, 3]} if kind is casbin.FastEnforcer else {}
        ready = kind(path, **options)
        ready.set_adapter(casbin_adapter(lines))
        start = time.perf_counter()  # load_policy only, as the issue asks
        ready.load_policy()
        os.unlink(path)
    seconds = time.perf_counter() - start
    gc.collect()
    after = rss_bytes()
    del ready
    return {"engine": engine, "variant": "load", "rules": target, "op": "load",
            "median_ns": None, "p99_ns": None, "n": 1, "seconds": round(seconds, 4),
            "rule_count": len(rules), "rss_delta_bytes": after - before, "rss_bytes": after,
            **extra}


def sqlite_store(rules: list[tuple[str, ...]], url: str | None = None) -> str:
    """A SQLite store holding ``rules`` (through salesauthz's own SQL adapter)."""
    if url is None:
        url = f"sqlite:///{tempfile.mkdtemp(prefix='salesauthz-bench-')}/rules.db"
    seeded = Authorizer.from_url(url)
    seeded.apply_changes(added=rules)
    seeded.close()
    return url


def sql_adapter_available() -> bool:
    try:
        return importlib.util.find_spec("salesauthz.adapters.sql") is not None
    except ModuleNotFoundError:
        return False


def bench_load(sizes: list[int], repeats: int, log: Callable[[str], None]) -> list[Row]:
    engines = ["salesauthz", "salesauthz(from tuples)", "casbin.Enforcer(salesauthz model)",
               "casbin.Enforcer(RBAC model)", "casbin.FastEnforcer(RBAC model)"]
    if sql_adapter_available():
        engines.insert(1, "salesauthz(sqlite)")
    rows = []
    scratch = Path(tempfile.mkdtemp(prefix="salesauthz-bench-"))
    for target in sizes:
        sqlite_url = f"sqlite:///{scratch}/rules-{target}.db"
        if "salesauthz(sqlite)" in engines:  # written once per size, read by each repeat
            subprocess.run([sys.executable, str(Path(__file__).resolve()), "--load-worker",
                            "make-sqlite", str(target), sqlite_url], check=True,
                           capture_output=True)
        for engine in engines:
            command = [sys.executable, str(Path(__file__).resolve()), "--load-worker", engine,
                       str(target), sqlite_url]
            runs = []
            for _ in range(repeats):  # a fresh process each time; the median resists noise
                done = subprocess.run(command, capture_output=True, text=True, check=False)
                if done.returncode != 0:
                    log(f"    load {engine} @ {target:,}: FAILED {done.stderr.strip()[-300:]}")
                    break
                runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
            if len(runs) < repeats:
                rows.append({"engine": engine, "variant": "load", "rules": target, "op": "load",
                             "median_ns": None, "p99_ns": None, "n": 0, "error": "worker failed"})
                continue
            row = runs[0]
            row["seconds_runs"] = [r["seconds"] for r in runs]
            row["seconds"] = statistics.median(row["seconds_runs"])
            row["n"] = len(runs)
            rows.append(row)
            log(f"    load {engine:<36} {target:>9,} rules: {row['seconds']:8.3f} s, "
                f"+{row['rss_delta_bytes'] / 2**20:8.1f} MiB")
    return rows


# -- output ---------------------------------------------------------------------------------


def environment() -> Row:
    from importlib.metadata import version

    load = os.getloadavg() if hasattr(os, "getloadavg") else (0.0, 0.0, 0.0)
    return {"engine": "environment", "variant": "", "rules": 0, "op": "environment",
            "median_ns": None, "p99_ns": None, "n": 0,
            "python": platform.python_version(), "implementation": platform.python_implementation(),
            "machine": platform.machine(), "system": platform.platform(),
            "processor": platform.processor() or cpu_model(), "cpus": os.cpu_count(),
            "casbin": version("casbin"), "loadavg_start": [round(x, 2) for x in load],
            "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def plot(rows: list[Row], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series: dict[str, list[tuple[int, float]]] = {}
    for row in rows:
        if row.get("median_ns") is None or row["op"] not in ("check_allowed", "check_many"):
            continue
        label = f"{row['engine']} {row['variant']}"
        if row["op"] == "check_many":
            label += " check_many (per check)"
        series.setdefault(label, []).append((row["rules"], row["median_ns"]))
    figure, axes = plt.subplots(figsize=(13, 7.5))
    for number, (label, points) in enumerate(sorted(series.items())):
        points.sort()
        axes.plot([p[0] for p in points], [p[1] for p in points], marker="os^D"[number // 10 % 4],
                  linestyle=["-", "--", ":", "-."][number // 10 % 4], label=label)
    axes.set_xscale("log")
    axes.set_yscale("log")
    axes.set_xlabel("policy rules")
    axes.set_ylabel("median latency per allowed check (ns)")
    axes.set_title("salesauthz check vs pycasbin (lower is better)")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    verdict_lines = [f"{'met' if r['met'] else 'MISSED'}: {r['variant']} at {r['rules']:,} rules, "
                     f"{r['op'].replace('check_', '')} (spread traffic): {r['measured']:,}x "
                     f"(target {r['target']})" for r in rows if r["engine"] == "verdict"]
    if verdict_lines:
        figure.text(0.01, 0.01, "\n".join(verdict_lines), fontsize=7, family="monospace",
                    va="bottom")
        figure.tight_layout(rect=(0, 0.03 * len(verdict_lines), 1, 1))
    else:
        figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="1k, 10k and 100k rules only")
    parser.add_argument("--out", type=Path, help="JSON file for the result rows")
    parser.add_argument("--plot", type=Path, help="PNG plot (default: --out with .png)")
    parser.add_argument("--sizes", type=lambda s: [int(x) for x in s.split(",")],
                        help="comma-separated rule counts (overrides --quick)")
    parser.add_argument("--no-load", action="store_true", help="skip the load/memory subprocesses")
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                        help="time with perf_counter (wall) or the process's CPU time: on a busy "
                             "machine CPU time leaves out the moments other jobs hold the CPU")
    parser.add_argument("--load-worker", nargs=3, metavar=("ENGINE", "RULES", "SQLITE_URL"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.load_worker:
        engine, target, url = args.load_worker
        print(json.dumps(load_worker(engine, int(target), url)))
        return 0
    if args.out is None:
        parser.error("--out is required")

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    global CLOCK
    CLOCK = time.process_time_ns if args.clock == "cpu" else time.perf_counter_ns
    sizes = args.sizes or (SIZES_QUICK if args.quick else SIZES_FULL)
    started = time.perf_counter()
    rows: list[Row] = [environment()]
    rows[0]["clock"] = args.clock
    for target in sizes:
        rows.extend(bench_size(target, args.quick, log))
        gc.collect()
    rows.extend(verdicts(rows))
    for row in rows:
        if row["engine"] == "verdict":
            log(f"verdict: {row['criterion']}: {row['measured']:,}x, target {row['target']}: "
                f"{'met' if row['met'] else 'MISSED'}")
    if not args.no_load:
        rows.extend(bench_load(sizes, 1 if args.quick else 3, log))
    rows[0]["seconds_total"] = round(time.perf_counter() - started, 1)
    rows[0]["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rows, indent=1) + "\n")
    plot_path = args.plot or args.out.with_suffix(".png")
    plot(rows, plot_path)
    log(f"wrote {args.out} and {plot_path} in {rows[0]['seconds_total']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
