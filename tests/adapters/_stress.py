"""Several app servers on one store, stressed with real processes: shared by the slow tests
(``test_multiserver_stress.py``) and ``benchmarks/bench_multiserver.py``.

* :func:`run_conflicts` — administrators in two processes making conflicting changes to one
  tenant for a while; then :func:`replay` decides every committed operation again on the rules
  as they were just before it committed.
* :func:`run_propagation` — one writer, several followers: how long until each follower's
  ``check`` shows a change.
"""

from __future__ import annotations

import random
import resource
import statistics
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

from salesauthz import Admin, AuditRecord, Authorizer, Record
from salesauthz._rules import Rule
from salesauthz.adapters.memory import MemoryAdapter
from salesauthz.adapters.watch import Watcher, snapshot_versions, start_watcher
from salesauthz.errors import ConflictError, ForbiddenError, PolicyError, UnknownNameError
from salesauthz.models.validate import stored_rule_issues
from salesauthz.scopes import parse_scope

DOMAIN = "acme"

# -- conflicting administrators (the sample organisation) ---------------------------------------

# Each operation needs rights another may take away meanwhile: alice (admin) takes and gives back
# mgr_east's role, freezes it, moves its reports out of its tree; mgr_east grants, revokes,
# freezes and moves within east. Both processes draw from the same list.
Operation = Callable[[Authorizer], AuditRecord]


def _as(actor: str, authz: Authorizer) -> Admin:
    return authz.admin(actor, domain=DOMAIN)


OPERATIONS: list[tuple[str, Operation]] = [
    ("alice unassigns mgr_east's sales_manager",
     lambda a: _as("alice", a).unassign_role("mgr_east", "sales_manager")),
    ("alice assigns mgr_east sales_manager",
     lambda a: _as("alice", a).assign_role("mgr_east", "sales_manager")),
    ("alice freezes mgr_east", lambda a: _as("alice", a).freeze("mgr_east")),
    ("alice unfreezes mgr_east", lambda a: _as("alice", a).unfreeze("mgr_east")),
    ("alice moves rep_e2 to west-1", lambda a: _as("alice", a).move("rep_e2", department="west-1")),
    ("alice moves rep_e2 to east-2", lambda a: _as("alice", a).move("rep_e2", department="east-2")),
    ("mgr_east grants rep_e2 customer:read@department_tree",
     lambda a: _as("mgr_east", a).grant("rep_e2", "customer", ["read"], scope="department_tree")),
    ("mgr_east revokes rep_e2's customer:read",
     lambda a: _as("mgr_east", a).revoke("rep_e2", "customer", ["read"])),
    ("mgr_east freezes rep_e1a", lambda a: _as("mgr_east", a).freeze("rep_e1a")),
    ("mgr_east unfreezes rep_e1a", lambda a: _as("mgr_east", a).unfreeze("rep_e1a")),
    ("alice freezes rep_e1a", lambda a: _as("alice", a).freeze("rep_e1a")),
    ("mgr_east moves rep_e1b to east-2", lambda a: _as("mgr_east", a).move("rep_e1b", department="east-2")),
    ("mgr_east moves rep_e1b to east-1", lambda a: _as("mgr_east", a).move("rep_e1b", department="east-1")),
    ("alice moves rep_e1b to west-1", lambda a: _as("alice", a).move("rep_e1b", department="west-1")),
]


def conflict_worker(pipe: Connection, url: str, watch: str, seed: int, seconds: float,
                    without_cas: bool) -> None:
    """One app server: administrative operations drawn at random for ``seconds``."""
    authz = Authorizer.from_url(url, watch=watch, staleness=5.0)
    stats: Counter[str] = Counter()
    store: Any = authz.store
    commit = store.commit

    def counting(*args: Any, **kwargs: Any) -> Any:
        try:
            return commit(*args, **kwargs)
        except ConflictError:
            stats["conflicts detected"] += 1
            raise

    store.commit = counting  # instrumentation only: count the compare-and-set failures
    if without_cas:  # what a process did before: commit whatever version the store is at
        decide: Any = authz._commit
        vars(authz)["_commit"] = lambda added, removed, audit, expected: decide(added, removed, audit, None)
    rng = random.Random(seed)
    pipe.send("ready")
    pipe.recv()  # start together
    end = time.monotonic() + seconds
    try:
        while time.monotonic() < end:
            _, operation = rng.choice(OPERATIONS)
            try:
                operation(authz)
                stats["committed"] += 1
            except ConflictError:
                stats["gave up on conflicts"] += 1
            except (ForbiddenError, UnknownNameError, PolicyError):
                stats["refused"] += 1
        pipe.send(dict(stats))
    finally:
        authz.close()


@dataclass
class ReplayResult:
    records: int = 0
    illegal: list[str] = field(default_factory=list)  # committed, but not allowed at commit
    contradictions: int = 0  # store states with a doubled single-valued fact
    final: list[Rule] = field(default_factory=list)


def _redo(authz: Authorizer, record: AuditRecord) -> AuditRecord:
    """The operation ``record`` audits, performed again by its actor on ``authz``."""
    admin = authz.admin(record.actor, domain=record.domain)
    if record.operation == "assign_role":
        return admin.assign_role(record.target, record.detail)
    if record.operation == "unassign_role":
        return admin.unassign_role(record.target, record.detail)
    if record.operation == "freeze":
        return admin.freeze(record.target)
    if record.operation == "unfreeze":
        return admin.unfreeze(record.target)
    if record.operation == "move":
        (membership,) = [r for r in record.added if r[0] == "g3"]
        return admin.move(record.target, department=membership[2])
    if record.operation == "grant":
        first = record.added[0]
        return admin.grant(record.target, first[3], sorted({r[4] for r in record.added}),
                           scope=parse_scope(first[5]))
    if record.operation == "revoke":
        return admin.revoke(record.target, record.removed[0][3], sorted({r[4] for r in record.removed}))
    raise AssertionError(f"no replay for {record.operation!r}")


def replay(initial: Iterable[Rule], records: Sequence[AuditRecord]) -> ReplayResult:
    """Decide each committed operation again, in commit order, on the rules just before it."""
    result = ReplayResult()
    state = set(initial)
    for record in records:
        if record.outcome != "applied" or record.operation == "import":
            continue
        result.records += 1
        again = Authorizer(MemoryAdapter(sorted(state)))
        try:
            redone = _redo(again, record)
        except (ForbiddenError, UnknownNameError) as exc:
            result.illegal.append(f"record {record.sequence} ({record.actor} {record.operation} "
                                  f"{record.target}): {exc}")
        else:
            if (set(redone.added), set(redone.removed), redone.escalated) != \
                    (set(record.added), set(record.removed), record.escalated):
                result.illegal.append(f"record {record.sequence}: decided differently on the rules "
                                      "at its commit")
        state.difference_update(record.removed)
        state.update(record.added)
        if stored_rule_issues(sorted(state)):
            result.contradictions += 1
    result.final = sorted(state)
    return result


@dataclass
class ConflictResult:
    seconds: float
    workers: list[dict[str, int]]
    replay: ReplayResult
    store_rules: list[Rule]

    @property
    def committed(self) -> int:
        return sum(w.get("committed", 0) for w in self.workers)

    def summary(self) -> dict[str, Any]:
        total: Counter[str] = Counter()
        for worker in self.workers:
            total.update(worker)
        return {"seconds": self.seconds, "processes": len(self.workers), **dict(sorted(total.items())),
                "audit_records": self.replay.records, "illegal_commits": len(self.replay.illegal),
                "illegal_examples": self.replay.illegal[:5],
                "contradictory_facts": self.replay.contradictions,
                "audit_equals_commits": self.replay.records == self.committed
                and self.replay.final == self.store_rules}


def run_conflicts(url: str, watch: str, seconds: float, *, without_cas: bool = False,
                  processes: int = 2) -> ConflictResult:
    """Seed ``url`` with the sample organisation first (the caller does), then run."""
    import multiprocessing

    from salesauthz.adapters import open_adapter

    store = open_adapter(url)
    initial = store.load([DOMAIN])
    already = len(store.load_audit(DOMAIN))
    context = multiprocessing.get_context("spawn")
    pipes, workers = [], []
    for n in range(processes):
        ours, theirs = context.Pipe()
        worker = context.Process(target=conflict_worker,
                                 args=(theirs, url, watch, 1000 + n, seconds, without_cas), daemon=True)
        worker.start()
        pipes.append(ours)
        workers.append(worker)
    try:
        for pipe in pipes:
            if not pipe.poll(120) or pipe.recv() != "ready":
                raise RuntimeError("a worker did not start")
        for pipe in pipes:
            pipe.send("go")
        stats = []
        for pipe in pipes:
            if not pipe.poll(seconds + 120):
                raise RuntimeError("a worker did not finish")
            stats.append(pipe.recv())
        for worker in workers:
            worker.join(30)
    finally:
        for worker in workers:
            if worker.is_alive():
                worker.kill()
    records = store.load_audit(DOMAIN)[already:]
    final = sorted(store.load([DOMAIN]))
    store.close()
    return ConflictResult(seconds, stats, replay(initial, records), final)


# -- propagation ---------------------------------------------------------------------------------


def synthetic_rules(tenants: int, accounts: int) -> tuple[list[Rule], list[tuple[str, str]]]:
    """A small organisation per tenant, and one probe account per tenant (a junior rep, who may
    not delete customers unless it is given sales_ops)."""
    rules: list[Rule] = []
    probes: list[tuple[str, str]] = []
    for t in range(tenants):
        domain = f"tenant-{t:02d}"
        rules += [("p2", domain, "customer", "read"), ("p2", domain, "customer", "delete"),
                  ("p4", "junior_rep", domain), ("p4", "sales_ops", domain),
                  ("p", "junior_rep", domain, "customer", "read", "own", ""),
                  ("p", "sales_ops", domain, "customer", "delete", "all", ""),
                  ("g2", "company", "", domain), ("g2", "team", "company", domain)]
        for n in range(accounts):
            name = f"u{n:06d}"
            rules += [("p3", name, domain, "active"), ("g3", name, "team", domain),
                      ("g", name, "junior_rep", domain)]
        probes.append((domain, "u000000"))
    return rules, probes


PROBE_RECORD = Record("customer", owner="nobody-in-particular", department="company")


def propagation_follower(pipe: Connection, url: str, watch: str, staleness: float) -> None:
    """A follower: loads every tenant, then busy-checks what it is told to wait for."""
    from salesauthz.adapters import open_adapter

    started = time.monotonic()
    store = open_adapter(url)
    versions = snapshot_versions(store)
    authz = Authorizer(store)
    watcher: Watcher = start_watcher(authz, watch, staleness=staleness, versions=versions)
    suspended_at: list[float] = []  # seconds after this process was ready
    suspend = authz.suspend
    ready = time.monotonic()

    def recording(domains: Any) -> None:
        suspended_at.append(round(time.monotonic() - ready, 2))
        suspend(domains)

    vars(authz)["suspend"] = recording  # instrumentation only: when did the guard act?
    # (Not len(authz.rules()): sorting a million rules holds the GIL for seconds, long enough
    # to stall the watcher's threads past the bound and make the guard suspend this process.)
    pipe.send(("ready", ready - started, len(authz.domains())))
    cpu_start = _cpu()
    try:
        while True:
            command = pipe.recv()
            if command[0] == "stop":
                return
            if command[0] == "stats":
                pipe.send({"suspensions": watcher.suspensions,
                           "domain_suspensions": getattr(watcher, "domain_suspensions", 0),
                           "cpu_seconds": round(_cpu() - cpu_start, 3),
                           "suspended_at": list(suspended_at)})
            elif command[0] == "arm":  # ("arm", domain, account, expected, timeout)
                _, domain, account, expected, timeout = command
                pipe.send("armed")
                deadline = time.monotonic() + timeout
                flipped: float | None = None
                while time.monotonic() < deadline:
                    if authz.check(account, "delete", PROBE_RECORD, domain=domain) == expected:
                        flipped = time.time()
                        break
                    time.sleep(0.0005)
                pipe.send(flipped)
    finally:
        authz.close()


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@dataclass
class PropagationResult:
    followers: int
    changes: int
    rate_per_s: float
    latencies: list[float]
    missed: int
    follower_stats: list[dict[str, Any]]
    load_seconds: list[float]
    stats_at_start: list[dict[str, Any]] = field(default_factory=list)  # once all were loaded

    def summary(self) -> dict[str, Any]:
        ordered = sorted(self.latencies)

        def at(q: float) -> float | None:
            return round(1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))], 2) if ordered else None

        return {"followers": self.followers, "changes": self.changes, "rate_per_s": self.rate_per_s,
                "measurements": len(self.latencies), "missed": self.missed,
                "p50_ms": at(0.5), "p99_ms": at(0.99),
                "max_ms": round(1000 * ordered[-1], 2) if ordered else None,
                "mean_ms": round(1000 * statistics.fmean(ordered), 2) if ordered else None,
                "deny_all_suspensions": sum(s["suspensions"] for s in self.follower_stats),
                "domain_suspensions": sum(s["domain_suspensions"] for s in self.follower_stats),
                "suspensions_while_loading": sum(s["suspensions"] + s["domain_suspensions"]
                                                 for s in self.stats_at_start),
                "suspended_at_s": [s["suspended_at"] for s in self.follower_stats],
                "follower_cpu_seconds": [s["cpu_seconds"] for s in self.follower_stats],
                "follower_load_seconds": [round(x, 1) for x in self.load_seconds]}


def run_propagation(url: str, watch: str, probes: Sequence[tuple[str, str]], *, followers: int = 3,
                    changes: int = 100, rate: float = 5.0, staleness: float = 5.0,
                    timeout: float = 5.0) -> PropagationResult:
    """``followers`` processes follow the store at ``url``; this process (the writer) gives
    and takes the probes' ``sales_ops`` role, round-robin, at ``rate`` changes per second."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    pipes, processes = [], []
    for _ in range(followers):
        ours, theirs = context.Pipe()
        process = context.Process(target=propagation_follower, args=(theirs, url, watch, staleness),
                                  daemon=True)
        process.start()
        pipes.append(ours)
        processes.append(process)
    latencies: list[float] = []
    missed = 0
    try:
        loads = []
        for pipe in pipes:
            if not pipe.poll(900):
                raise RuntimeError("a follower did not load in time")
            _, took, _ = pipe.recv()
            loads.append(took)
        at_start = []
        for pipe in pipes:
            pipe.send(("stats",))
            at_start.append(pipe.recv())
        holds: dict[str, bool] = {domain: False for domain, _ in probes}
        # The writer holds no tenant itself: it only commits (and announces) the changes.
        with Authorizer.from_url(url, watch=watch, domains=[], staleness=staleness) as writer:
            period = 1.0 / rate
            begin = time.monotonic()
            for n in range(changes):
                domain, account = probes[n % len(probes)]
                time.sleep(max(0.0, begin + n * period - time.monotonic()))
                give = not holds[domain]
                for pipe in pipes:
                    pipe.send(("arm", domain, account, give, timeout))
                for pipe in pipes:
                    if pipe.recv() != "armed":
                        raise RuntimeError("a follower is out of step")
                link: Rule = ("g", account, "sales_ops", domain)
                committed = time.time()
                if give:
                    writer.apply_changes([link])
                else:
                    writer.apply_changes(removed=[link])
                holds[domain] = give
                for pipe in pipes:
                    flipped = pipe.recv()
                    if flipped is None:
                        missed += 1
                    else:
                        latencies.append(max(0.0, flipped - committed))
            achieved = changes / max(1e-9, time.monotonic() - begin)
        stats = []
        for pipe in pipes:
            pipe.send(("stats",))
            stats.append(pipe.recv())
            pipe.send(("stop",))
        for process in processes:
            process.join(30)
    finally:
        for process in processes:
            if process.is_alive():
                process.kill()
    return PropagationResult(followers, changes, round(achieved, 2), latencies, missed, stats, loads,
                             at_start)
