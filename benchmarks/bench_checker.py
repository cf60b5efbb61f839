"""How fast the policy author's commands are.

    python benchmarks/bench_checker.py [--rules 100000] [--repeat 5] --out results.json [--plot results.png]

1. ``check`` + ``test`` of the bundled sample organisation (``policies/``), the README's main job:
   in-process (median of ``--repeat`` runs) and as the two real commands in fresh processes
   (interpreter start-up and imports included). Target: under 1 s.
2. ``check`` of a generated policy directory of about ``--rules`` Casbin rules (default 100k):
   the synthetic organisation of ``orggen.generate``, written as one YAML document per tenant,
   then loaded, validated and linted like any policy directory. Target: under 10 s.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT / "src"))

import orggen  # noqa: E402
import yaml  # noqa: E402

from salesauthz.checker.lint import check_directory, lint_policy  # noqa: E402
from salesauthz.checker.testing import run_tests  # noqa: E402
from salesauthz.models.compile import decompile_rules  # noqa: E402
from salesauthz.models.loader import load_directory  # noqa: E402


def _median(function: Callable[[], object], repeat: int) -> tuple[float, float, list[float]]:
    """Median wall time and median CPU time of ``repeat`` runs (the CPU time matters on a
    shared machine, where wall time also counts other processes), and the wall samples."""
    walls, cpus = [], []
    for _ in range(repeat):
        start, cpu = time.perf_counter(), time.process_time()
        function()
        walls.append(time.perf_counter() - start)
        cpus.append(time.process_time() - cpu)
    return statistics.median(walls), statistics.median(cpus), walls


@contextmanager
def libyaml_composer() -> Iterator[None]:
    """Measure a proposed core change: compose YAML with libyaml's parser (``CSafeLoader``)
    instead of PyYAML's pure-Python one, positions and all (models/_yaml.py calls
    ``yaml.compose(text, Loader=yaml.SafeLoader)``)."""
    original = yaml.compose

    def compose(stream: str, Loader: Any = None) -> Any:
        return original(stream, Loader=yaml.CSafeLoader)

    yaml.compose = compose  # type: ignore[assignment]
    try:
        yield
    finally:
        yaml.compose = original


def bench_sample(repeat: int) -> dict[str, Any]:
    policies = ROOT / "policies"

    def both() -> None:
        assert not check_directory(policies).errors
        assert run_tests(policies).ok

    both()  # warm imports
    in_process, in_process_cpu, samples = _median(both, repeat)
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    processes, process_cpus = [], []
    for _ in range(repeat):
        start = time.perf_counter()
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        for command in ("check", "test"):
            subprocess.run([sys.executable, "-m", "salesauthz.checker.cli", command, str(policies)],
                           check=True, capture_output=True, env=env)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        processes.append(time.perf_counter() - start)
        process_cpus.append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
    return {
        "name": "check + test of policies/ (sample organisation)",
        "in_process_seconds": round(in_process, 4),
        "in_process_cpu_seconds": round(in_process_cpu, 4),
        "in_process_samples": [round(s, 4) for s in samples],
        "two_processes_seconds": round(statistics.median(processes), 4),
        "two_processes_cpu_seconds": round(statistics.median(process_cpus), 4),
        "two_processes_samples": [round(s, 4) for s in processes],
        "target_seconds": 1.0,
    }


def write_directory(rules: list[tuple[str, ...]], target: Path) -> int:
    """Write ``rules`` as one policy document per domain; return the number of files."""
    documents = decompile_rules(rules)
    for document in documents:
        data = document.model_dump(mode="json", exclude_defaults=True)
        # Leaf collections in flow style, as people write them: `a: {department: d, roles: [r]}`.
        text = yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=1000,
                              default_flow_style=None)
        (target / f"{document.domain}.yaml").write_text(text, encoding="utf-8")
    return len(documents)


def bench_generated(target_rules: int, repeat: int) -> dict[str, Any]:
    org = orggen.generate(target_rules)
    with tempfile.TemporaryDirectory(prefix="salesauthz-bench-") as scratch:
        directory = Path(scratch)
        files = write_directory(org.rules, directory)
        size = sum(p.stat().st_size for p in directory.iterdir())
        loaded = load_directory(directory)
        findings = check_directory(directory).findings
        load_time, load_cpu, _ = _median(lambda: load_directory(directory), repeat)
        lint_time, lint_cpu, _ = _median(lambda: lint_policy(loaded), repeat)
        total, total_cpu, samples = _median(lambda: check_directory(directory), repeat)
        proposed: dict[str, float] = {}
        if getattr(yaml, "__with_libyaml__", False):
            with libyaml_composer():
                assert len(check_directory(directory).findings) == len(findings)
                wall, cpu, _ = _median(lambda: check_directory(directory), repeat)
            proposed = {"check_seconds": round(wall, 3), "check_cpu_seconds": round(cpu, 3)}
    codes: dict[str, int] = {}
    for finding in findings:
        codes[finding.code] = codes.get(finding.code, 0) + 1
    return {
        "name": f"check of a generated directory of {len(org.rules)} rules",
        "rules": len(org.rules),
        "compiled_rules": len(loaded.rules),
        "files": files,
        "bytes": size,
        "accounts": sum(len(a) for a in org.accounts.values()),
        "load_and_validate_seconds": round(load_time, 3),
        "load_and_validate_cpu_seconds": round(load_cpu, 3),
        "lint_seconds": round(lint_time, 3),
        "lint_cpu_seconds": round(lint_cpu, 3),
        "check_seconds": round(total, 3),
        "check_cpu_seconds": round(total_cpu, 3),
        "check_samples": [round(s, 3) for s in samples],
        "with_libyaml_composer": proposed,
        "findings_by_code": codes,
        "target_seconds": 10.0,
    }


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sample, generated = results["sample"], results["generated"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    left = axes[0]
    labels = ["in process", "two processes\n(check; test)"]
    walls = [sample["in_process_seconds"], sample["two_processes_seconds"]]
    cpus = [sample["in_process_cpu_seconds"], sample["two_processes_cpu_seconds"]]
    left.bar([-0.2, 0.8], walls, width=0.4, label="wall", color="#4c78a8")
    left.bar([0.2, 1.2], cpus, width=0.4, label="CPU", color="#f58518")
    left.set_xticks([0, 1], labels)
    left.axhline(sample["target_seconds"], color="#e45756", linestyle="--", label="target 1 s")
    left.set_title("check + test, sample organisation")
    left.set_ylabel("seconds (median)")
    left.legend()
    right = axes[1]
    labels = ["load +\nvalidate", "lint", "check", "check with\nlibyaml composer"]
    walls = [generated["load_and_validate_seconds"], generated["lint_seconds"], generated["check_seconds"],
             generated["with_libyaml_composer"].get("check_seconds", 0.0)]
    cpus = [generated["load_and_validate_cpu_seconds"], generated["lint_cpu_seconds"],
            generated["check_cpu_seconds"], generated["with_libyaml_composer"].get("check_cpu_seconds", 0.0)]
    positions = range(len(labels))
    right.bar([p - 0.2 for p in positions], walls, width=0.4, label="wall", color="#4c78a8")
    right.bar([p + 0.2 for p in positions], cpus, width=0.4, label="CPU", color="#f58518")
    right.set_xticks(list(positions), labels)
    right.axhline(generated["target_seconds"], color="#e45756", linestyle="--", label="target 10 s")
    right.set_title(f"check, generated directory ({generated['rules']:,} rules)")
    right.set_ylabel("seconds (median)")
    right.legend()
    machine = results["machine"]
    fig.suptitle(f"salesauthz checker — Python {machine['python']} on {machine['cpu']}, "
                 f"{machine['cpus']} CPUs, load average {machine['load_average'][0]}")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rules", type=int, default=100_000, help="size of the generated directory")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    parser.add_argument("--plot", type=Path, help="write a PNG chart here")
    args = parser.parse_args(argv)
    results = {
        "machine": {"python": platform.python_version(), "cpu": platform.processor() or platform.machine(),
                    "cpus": os.cpu_count(), "system": platform.platform(),
                    # Other work on the machine inflates wall times; CPU times are comparable.
                    "load_average": [round(x, 2) for x in os.getloadavg()]},
        "sample": bench_sample(args.repeat),
        "generated": bench_generated(args.rules, max(1, min(args.repeat, 3))),
    }
    # CPU time decides on a shared machine; an idle machine's wall time is about the same.
    results["ok"] = (results["sample"]["in_process_cpu_seconds"] < 1.0
                     and results["sample"]["two_processes_cpu_seconds"] < 1.0
                     and results["generated"]["check_cpu_seconds"] < 10.0)
    text = json.dumps(results, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n", encoding="utf-8")
    if args.plot:
        plot(results, args.plot)
    return 0 if results["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
