"""Markdown tables (and the issue's acceptance checks) from a ``bench_check.py`` JSON file.

    python benchmarks/report.py benchmarks/results/bench_check.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

Row = dict[str, Any]


def fmt_ns(value: float | None) -> str:
    if value is None:
        return "—"
    if value >= 1_000_000:
        return f"{value / 1_000_000:,.1f} ms"
    if value >= 1_000:
        return f"{value / 1_000:,.1f} µs"
    return f"{value:,.0f} ns"


def latency_table(rows: list[Row]) -> str:
    sizes = sorted({r["rules"] for r in rows if r["op"].startswith("check")})
    keys: list[tuple[str, str, str]] = []
    for r in rows:
        key = (r["engine"], r["variant"], r["op"])
        if r["op"].startswith("check") and r["median_ns"] is not None and key not in keys:
            keys.append(key)
    lines = ["| engine | variant | request | " + " | ".join(f"{s:,} rules" for s in sizes) + " |",
             "|---|---|---|" + "---:|" * len(sizes)]
    for engine, variant, op in keys:
        cells = []
        for size in sizes:
            found = [r for r in rows if (r["engine"], r["variant"], r["op"], r["rules"])
                     == (engine, variant, op, size)]
            if not found or found[0]["median_ns"] is None:
                cells.append("skipped" if engine == "casbin.Enforcer" else "—")
            else:
                row = found[0]
                cells.append(f"{fmt_ns(row['median_ns'])} (p99 {fmt_ns(row['p99_ns'])})")
        label = op.replace("check_", "")
        lines.append(f"| {engine} | {variant} | {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def load_table(rows: list[Row]) -> str:
    loads = [r for r in rows if r["op"] == "load" and r.get("seconds") is not None]
    sizes = sorted({r["rules"] for r in loads})
    engines = list(dict.fromkeys(r["engine"] for r in loads))
    lines = ["| engine | " + " | ".join(f"{s:,} rules" for s in sizes) + " |",
             "|---|" + "---:|" * len(sizes)]
    for engine in engines:
        cells = []
        for size in sizes:
            found = [r for r in loads if r["engine"] == engine and r["rules"] == size]
            if not found:
                cells.append("—")
                continue
            row = found[0]
            cells.append(f"{row['seconds']:.3f} s, +{row['rss_delta_bytes'] / 2**20:,.0f} MiB")
        lines.append(f"| {engine} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def pick(rows: list[Row], engine: str, variant: str, op: str, size: int) -> float | None:
    for r in rows:
        if (r["engine"], r["variant"], r["op"], r["rules"]) == (engine, variant, op, size):
            value = r.get("median_ns") if op != "load" else r.get("seconds")
            return float(value) if value is not None else None
    return None


def acceptance(rows: list[Row]) -> str:
    lines = ["| criterion | measured | target | met |", "|---|---:|---:|:---:|"]

    def add(name: str, measured: float | None, target: str, met: bool | None, unit: str = "") -> None:
        shown = "—" if measured is None else f"{measured:,.1f}{unit}"
        verdict = "—" if met is None else ("yes" if met else "**missed**")
        lines.append(f"| {name} | {shown} | {target} | {verdict} |")

    for op in ("check_allowed", "check_denied"):
        kind = op.replace("check_", "")
        warm100k = pick(rows, "salesauthz", "warm", op, 100_000)
        add(f"warm median at 100k ({kind})", warm100k, "≤ 1,000 ns", None if warm100k is None
            else warm100k <= 1_000, " ns")
        for verdict in rows:  # spread traffic, each enforcer with its fastest matcher order
            if verdict["engine"] == "verdict" and verdict["op"] == op:
                add(verdict["criterion"], verdict["measured"],
                    verdict["target"].replace(">=", "≥").replace("x", "×"), verdict["met"], "×")
        warm10k = pick(rows, "salesauthz", "warm", op, 10_000)
        fast10k = pick(rows, "casbin.FastEnforcer", "uncached", op, 10_000)
        enf10k = pick(rows, "casbin.Enforcer", "uncached", op, 10_000)
        if warm10k and fast10k:  # the hot set: shown, not the verdict
            add(f"FastEnforcer / salesauthz at 10k, hot set ({kind})", fast10k / warm10k, "—", None,
                "×")
        if warm10k and enf10k:
            add(f"Enforcer / salesauthz at 10k, hot set ({kind})", enf10k / warm10k, "—", None, "×")
        warm1k = pick(rows, "salesauthz", "warm", op, 1_000)
        warm1m = pick(rows, "salesauthz", "warm", op, 1_000_000)
        if warm1k and warm1m:
            add(f"warm at 1M / warm at 1k ({kind})", warm1m / warm1k, "≤ 1.5×",
                warm1m / warm1k <= 1.5, "×")
        cold = pick(rows, "salesauthz", "cold", op, 100_000)
        add(f"cold median at 100k ({kind})", None if cold is None else cold / 1_000, "≤ 100 µs",
            None if cold is None else cold <= 100_000, " µs")
    largest = max((r["rules"] for r in rows if r["op"] == "load"), default=0)
    ours = pick(rows, "salesauthz", "load", "load", largest)
    theirs = pick(rows, "casbin.Enforcer(salesauthz model)", "load", "load", largest)
    if ours is not None and theirs is not None:
        add(f"load {largest:,} rules: salesauthz s (Casbin load_policy {theirs:.2f} s)", ours,
            "≤ Casbin", ours <= theirs, " s")
    for r in rows:
        if r["op"] == "check_many" and r["rules"] == largest:
            add(f"check_many throughput at {largest:,} rules", r["checks_per_s"] / 1_000, "≥ 500k/s",
                r["checks_per_s"] >= 500_000, "k/s")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    rows: list[Row] = json.loads(Path(argv[1]).read_text())
    env = rows[0]
    print(f"Machine: {env.get('processor')}, {env.get('cpus')} CPUs, {env.get('system')}; "
          f"Python {env.get('python')}, casbin {env.get('casbin')}; load average at start "
          f"{env.get('loadavg_start')}, at end {env.get('loadavg_end')}; "
          f"{env.get('seconds_total')} s in all.\n")
    print("### Latency (median of per-call means over batches; p99 of the same)\n")
    print(latency_table(rows))
    print("\n### Load (rules → ready engine, median of fresh processes) and resident memory added\n")
    print(load_table(rows))
    print("\n### Acceptance\n")
    print(acceptance(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
