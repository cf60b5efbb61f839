"""What salesauthz adds to a web request: the example CRM (``examples/crm_api``) under load on
loopback, with enforcement on and off.

    python benchmarks/bench_web.py --out benchmarks/results/bench_web.json [--plot ...png]

Three builds of the same FastAPI app are served by uvicorn (one worker, h11, a subprocess each,
one at a time) and driven by an asyncio + httpx load loop in this process:

- ``off``: enforcement off — bearer tokens are still verified (authentication stays), but there
  is no middleware, no check, and list endpoints are unfiltered;
- ``on``: the example as shipped — route rules in the ASGI middleware, record checks in FastAPI
  dependencies, lists filtered by ``scope_clause``; the decision logger is not enabled (the
  default when an application has not configured logging for ``salesauthz.decisions``);
- ``on+log``: the same with the decision log enabled at INFO into a discarding handler (every
  decision explained and serialised).

The workload only contains requests all three builds answer identically (same status, same
body): a rep reading its own customers, an admin listing customers and orders, a manager reading
an order in its tree. Latency is measured one request at a time, rotating between the builds request by
request (a paired design: every build sees the same moments of a busy shared machine), and
reported as median, 99th percentile and the median paired difference to ``off``. Throughput is
measured at the given concurrency in rounds alternating between the builds
(``off, on, on+log, on+log, on, off, ...``), each a fixed number of requests after a warm-up.
The server processes' CPU time per request (user + system, over both phases) is reported too,
and finally each build's *service time* in CPU nanoseconds per request, calling the three ASGI
apps directly in this process (no sockets, no client), rotating request by request: on a shared,
busy machine CPU time is the steadiest measure of what each build costs, since wall-clock
latency there is dominated by waiting for the CPU.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import psutil

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SECRET = "bench-web-secret-" + "0" * 40
MODES = ("off", "on", "on+log")


def serve(mode: str, port: int) -> None:
    """The server subprocess: build the app for ``mode`` and run uvicorn until killed."""
    import logging

    import uvicorn

    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, str(ROOT / "src"))
    from examples.crm_api import create_app

    if mode == "on+log":
        logger = logging.getLogger("salesauthz.decisions")
        logger.setLevel(logging.INFO)
        logger.addHandler(logging.StreamHandler(open(os.devnull, "w")))  # noqa: SIM115 - lives as long as the server
        logger.propagate = False
    app = create_app(secret=SECRET, enforce=mode != "off")
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False,
                lifespan="off", ws="none", http="h11")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start(mode: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    process = subprocess.Popen([sys.executable, __file__, "--serve", mode, "--port", str(port)], cwd=ROOT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                return process, url
        except httpx.TransportError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"the {mode} server did not start")


def workload() -> list[tuple[str, dict[str, str]]]:
    sys.path.insert(0, str(ROOT / "src"))
    from salesauthz.middleware import HS256Tokens

    tokens = HS256Tokens(SECRET)

    def auth(account: str) -> dict[str, str]:
        return {"Authorization": "Bearer " + tokens.mint(account, domain="acme", ttl=86_400)}

    rep, admin, manager = auth("rep_e1a"), auth("alice"), auth("mgr_east")
    return [("/customers/1", rep), ("/customers/2", rep), ("/customers", admin),
            ("/orders/3", manager), ("/customers/1", rep), ("/orders", admin)]


async def drive(url: str, requests: int, concurrency: int) -> tuple[list[float], float]:
    """Send ``requests`` requests with ``concurrency`` in flight; latencies (s) and wall time."""
    plan = workload()
    latencies: list[float] = []
    counter = iter(range(requests))
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30) as client:

        async def worker() -> None:
            for number in counter:
                path, headers = plan[number % len(plan)]
                started = time.perf_counter()
                response = await client.get(path, headers=headers)
                latencies.append(time.perf_counter() - started)
                if response.status_code != 200:
                    raise RuntimeError(f"{path} answered {response.status_code}: {response.text}")

        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return latencies, time.perf_counter() - began


def check_same_answers(urls: dict[str, str]) -> None:
    """Every build must answer the workload identically, or the comparison is meaningless."""
    for path, headers in workload():
        bodies = {mode: httpx.get(url + path, headers=headers).json() for mode, url in urls.items()}
        if len({json.dumps(b, sort_keys=True) for b in bodies.values()}) != 1:
            raise RuntimeError(f"the builds disagree on {path}: {bodies}")


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def paired_latencies(urls: dict[str, str], requests: int) -> dict[str, list[float]]:
    """One request at a time, rotating between the builds request by request, so that every
    build sees the same moments of a busy shared machine (a paired design)."""
    plan = workload()
    clients = {mode: httpx.Client(base_url=url, timeout=30) for mode, url in urls.items()}
    latencies: dict[str, list[float]] = {mode: [] for mode in urls}
    order = list(urls)
    try:
        for number in range(requests):
            path, headers = plan[number % len(plan)]
            rotation = order[number % len(order):] + order[:number % len(order)]
            for mode in rotation:
                started = time.perf_counter()
                response = clients[mode].get(path, headers=headers)
                latencies[mode].append(time.perf_counter() - started)
                if response.status_code != 200:
                    raise RuntimeError(f"{mode} {path} answered {response.status_code}")
    finally:
        for client in clients.values():
            client.close()
    return latencies


IN_PROCESS_MODES = ("off", "on", "on+log", "on, no middleware")
"""The builds called in process: ``on, no middleware`` is ``on`` without its ``AuthzMiddleware``
(the routes' dependencies still authorize every request): ``on`` over it is what the
middleware costs."""


def in_process_service_times(requests: int, modes: tuple[str, ...] = IN_PROCESS_MODES
                             ) -> dict[str, list[int]]:
    """CPU time (ns, all threads of this process) to serve each request, calling the builds'
    ASGI apps directly, rotating between them request by request. CPU time, unlike wall time,
    does not count the moments other processes of a busy machine hold the CPU. Every build must
    answer every request with the same status and body."""
    import logging

    sys.path.insert(0, str(ROOT))
    from examples.crm_api import create_app

    decisions = logging.getLogger("salesauthz.decisions")
    sink = logging.StreamHandler(open(os.devnull, "w"))  # noqa: SIM115 - closed below

    def build(mode: str) -> Any:
        return create_app(secret=SECRET, enforce=mode != "off",
                          route_middleware=mode != "on, no middleware")

    apps = {mode: build(mode) for mode in modes}
    plan = workload()
    times: dict[str, list[int]] = {mode: [] for mode in modes}

    async def call(app: Any, path: str, headers: dict[str, str]) -> tuple[int, bytes]:
        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
                 "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"",
                 "root_path": "", "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 80),
                 "headers": [(b"host", b"bench")] + [(k.lower().encode(), v.encode())
                                                     for k, v in headers.items()]}
        status = 0
        body = []

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body":
                body.append(message.get("body", b""))

        await app(scope, receive, send)
        return status, b"".join(body)

    async def drive_all() -> None:
        order = list(modes)
        for number in range(requests):
            path, headers = plan[number % len(plan)]
            rotation = order[number % len(order):] + order[:number % len(order)]
            answers = set()
            for mode in rotation:
                logged = mode == "on+log"
                if logged:
                    decisions.setLevel(logging.INFO)
                    decisions.addHandler(sink)
                    decisions.propagate = False
                started = time.process_time_ns()
                status, body = await call(apps[mode], path, headers)
                elapsed = time.process_time_ns() - started
                if logged:
                    decisions.removeHandler(sink)
                    decisions.setLevel(logging.NOTSET)
                    decisions.propagate = True
                if status != 200:
                    raise RuntimeError(f"{mode} {path} answered {status}")
                answers.add(body)
                if number >= len(plan) * 20:  # after a warm-up
                    times[mode].append(elapsed)
            if len(answers) != 1:
                raise RuntimeError(f"the builds answered {path} differently")

    try:
        asyncio.run(drive_all())
    finally:
        sink.close()
    return times


def per_round_ratios(times: dict[str, list[int]], mode: str, base: str, rounds: int) -> list[float]:
    """The request-by-request CPU times cut into ``rounds`` consecutive rounds; per round, the
    median of ``mode`` over the median of ``base`` (both saw the same moments of the machine)."""
    size = min(len(times[mode]), len(times[base])) // rounds
    return [statistics.median(times[mode][i * size:(i + 1) * size])
            / statistics.median(times[base][i * size:(i + 1) * size]) for i in range(rounds)]


def count_worker(mode: str, requests: int) -> None:
    """Under cachegrind: build ``mode``'s app, serve a warm-up, then ``requests`` more requests
    (the difference between two runs is what the requests alone execute)."""
    import gc

    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, str(ROOT / "src"))
    from examples.crm_api import create_app

    app = create_app(secret=SECRET, enforce=True, route_middleware=mode != "on, no middleware")
    plan = workload()

    async def serve(count: int) -> None:
        for number in range(count):
            path, headers = plan[number % len(plan)]
            scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
                     "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"",
                     "root_path": "", "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 80),
                     "headers": [(b"host", b"bench")] + [(k.lower().encode(), v.encode())
                                                         for k, v in headers.items()]}

            async def receive() -> dict[str, Any]:
                return {"type": "http.request", "body": b"", "more_body": False}

            async def send(message: dict[str, Any]) -> None:
                pass

            await app(scope, receive, send)

    asyncio.run(serve(len(plan) * 20))
    gc.collect()
    gc.freeze()
    asyncio.run(serve(requests))


def instructions(mode: str, requests: int) -> int:
    done = subprocess.run(["valgrind", "--tool=cachegrind", "--cache-sim=no",
                           "--cachegrind-out-file=/dev/null", sys.executable, __file__,
                           "--count-worker", mode, str(requests)],
                          check=True, capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, "PYTHONHASHSEED": "7"})
    for line in done.stderr.splitlines():
        if "I" in line and "refs:" in line:
            return int(line.rsplit(":", 1)[1].strip().replace(",", ""))
    raise RuntimeError("no instruction count in cachegrind's output")


def middleware_instructions(requests: int) -> dict[str, Any]:
    """Instructions per request (cachegrind; fixed hash seed; a run with and without the
    measured requests, the difference divided by their number), with and without the
    middleware: a count, unlike a time, does not move with the machine's load."""
    per_request = {}
    for mode in ("on", "on, no middleware"):
        base, full = instructions(mode, 0), instructions(mode, requests)
        per_request[mode] = (full - base) / requests
    ratio = per_request["on"] / per_request["on, no middleware"]
    return {"requests": requests, "instructions_per_request": per_request,
            "ratio": round(ratio, 4), "overhead_pct": round((ratio - 1) * 100, 2),
            "met": ratio <= 1.03}


def middleware_cost(requests: int, rounds: int) -> dict[str, Any]:
    """What the route middleware adds to a request's CPU time, in process (the verdict)."""
    times = in_process_service_times(requests, ("on", "on, no middleware"))
    ratios = per_round_ratios(times, "on", "on, no middleware", rounds)
    median = statistics.median(ratios)
    return {"requests": len(times["on"]), "rounds": rounds,
            "median_cpu_us": {m: statistics.median(v) / 1000 for m, v in times.items()},
            "ratio_per_round": [round(r, 4) for r in ratios], "median_ratio": round(median, 4),
            "overhead_pct": round((median - 1) * 100, 2),
            "target": "the middleware adds <= 3 % CPU per request ('on' over 'on, no middleware')",
            "met": median <= 1.03, "load_average": os.getloadavg()}


def cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


def run(rounds: int, requests: int, concurrency: int, warmup: int) -> dict[str, Any]:
    servers = {mode: start(mode) for mode in MODES}
    try:
        urls = {mode: url for mode, (_, url) in servers.items()}
        processes = {mode: psutil.Process(process.pid) for mode, (process, _) in servers.items()}
        check_same_answers(urls)
        for mode in MODES:
            asyncio.run(drive(urls[mode], warmup, concurrency))
        # Server CPU time per request: what each build costs, whatever else the machine runs.
        cpu_before = {mode: cpu_seconds(p) for mode, p in processes.items()}
        latencies = paired_latencies(urls, requests * rounds)
        served: dict[str, int] = dict.fromkeys(MODES, 0)
        walls: dict[str, float] = dict.fromkeys(MODES, 0.0)
        for number in range(rounds):
            for mode in MODES if number % 2 == 0 else reversed(MODES):
                done, wall = asyncio.run(drive(urls[mode], requests, concurrency))
                served[mode] += len(done)
                walls[mode] += wall
        cpu_per_request = {mode: (cpu_seconds(p) - cpu_before[mode]) / (requests * rounds + served[mode])
                           for mode, p in processes.items()}
    finally:
        for process, _ in servers.values():
            process.terminate()
            process.wait(timeout=10)
    results: dict[str, Any] = {}
    for mode in MODES:
        values = latencies[mode]
        results[mode] = {"requests": len(values),
                         "median_ms": statistics.median(values) * 1000,
                         "p99_ms": percentile(values, 0.99) * 1000,
                         "throughput_rps": served[mode] / walls[mode],
                         "server_cpu_ms_per_request": cpu_per_request[mode] * 1000}
    base = results["off"]
    for mode in MODES[1:]:
        differences = [a - b for a, b in zip(latencies[mode], latencies["off"], strict=True)]
        results[mode]["median_paired_difference_ms"] = statistics.median(differences) * 1000
        results[mode]["median_overhead_pct"] = (results[mode]["median_ms"] / base["median_ms"] - 1) * 100
        results[mode]["throughput_change_pct"] = (results[mode]["throughput_rps"] / base["throughput_rps"]
                                                  - 1) * 100
        results[mode]["server_cpu_overhead_pct"] = (results[mode]["server_cpu_ms_per_request"]
                                                    / base["server_cpu_ms_per_request"] - 1) * 100
    service = in_process_service_times(requests * rounds)
    in_process: dict[str, Any] = {}
    for mode in IN_PROCESS_MODES:
        values = service[mode]
        in_process[mode] = {"requests": len(values), "median_us": statistics.median(values) / 1000,
                            "p99_us": percentile([float(v) for v in values], 0.99) / 1000}
    for mode in IN_PROCESS_MODES[1:]:
        in_process[mode]["median_overhead_pct"] = (in_process[mode]["median_us"]
                                                   / in_process["off"]["median_us"] - 1) * 100
    ratios = per_round_ratios(service, "on", "on, no middleware", rounds)
    middleware = {"ratio_per_round": [round(r, 4) for r in ratios],
                  "median_ratio": round(statistics.median(ratios), 4),
                  "overhead_pct": round((statistics.median(ratios) - 1) * 100, 2),
                  "target": "the middleware adds <= 3 % CPU per request ('on' over 'on, no middleware', "
                            "in process, median of per-round ratios)",
                  "met": statistics.median(ratios) <= 1.03}
    return {
        "benchmark": "bench_web",
        "workload": [path for path, _ in workload()],
        "latency": "concurrency 1, requests rotated between the builds one by one",
        "throughput": f"concurrency {concurrency}, {rounds} alternating rounds of {requests} requests",
        "rounds": rounds, "requests_per_round": requests, "concurrency": concurrency, "warmup": warmup,
        "machine": {"python": platform.python_version(), "platform": platform.platform(),
                    "cpus": os.cpu_count(), "load_average": os.getloadavg()},
        "results": results,
        "in_process_service_cpu": in_process,
        "middleware_cpu": middleware,
        "target": "salesauthz adds <= 5 % to median latency ('on' vs 'off')",
        "target_met_loopback_wall_clock": results["on"]["median_overhead_pct"] <= 5.0,
        "target_met_service_cpu": in_process["on"]["median_overhead_pct"] <= 5.0,
    }


def plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results = report["results"]
    figure, (latency, throughput) = plt.subplots(1, 2, figsize=(10, 4))
    positions = range(len(MODES))
    latency.bar([p - 0.2 for p in positions], [results[m]["median_ms"] for m in MODES], 0.4, label="median")
    latency.bar([p + 0.2 for p in positions], [results[m]["p99_ms"] for m in MODES], 0.4, label="p99")
    latency.set_xticks(list(positions), MODES)
    latency.set_ylabel("latency per request (ms)")
    latency.legend()
    throughput.bar(list(positions), [results[m]["throughput_rps"] for m in MODES], 0.5, color="tab:green")
    throughput.set_xticks(list(positions), MODES)
    throughput.set_ylabel(f"requests / s (concurrency {report['concurrency']})")
    figure.suptitle("example CRM on uvicorn: salesauthz enforcement off / on / on + decision log")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--requests", type=int, default=1500, help="requests per round and build")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--warmup", type=int, default=300)
    parser.add_argument("--out", type=Path, help="JSON file for the results")
    parser.add_argument("--plot", type=Path, help="PNG chart (default: --out with .png)")
    parser.add_argument("--middleware-only", action="store_true",
                        help="only the in-process middleware CPU comparison (rounds x requests)")
    parser.add_argument("--instructions", action="store_true",
                        help="also count instructions per request under valgrind (cachegrind)")
    parser.add_argument("--instruction-requests", type=int, default=120,
                        help="requests counted under cachegrind per build (default 120)")
    parser.add_argument("--count-worker", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--serve", choices=MODES, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.port)
        return 0
    if args.count_worker:
        count_worker(args.count_worker[0], int(args.count_worker[1]))
        return 0
    if args.middleware_only:
        result = middleware_cost(args.requests * args.rounds, args.rounds)
        if args.instructions:
            result["instructions"] = middleware_instructions(args.instruction_requests)
        print(json.dumps(result, indent=2))
        if args.out is not None:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(result, indent=2) + "\n")
        return 0
    report = run(args.rounds, args.requests, args.concurrency, args.warmup)
    if args.instructions:
        report["middleware_cpu"]["instructions"] = middleware_instructions(args.instruction_requests)
    text = json.dumps(report, indent=2)
    print(text)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
        plot(report, args.plot or args.out.with_suffix(".png"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
