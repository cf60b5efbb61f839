"""The :class:`Authorizer`: the facade a CRM imports, over the engine, the cache and the store."""

from __future__ import annotations

import contextlib
import logging
import os
import random
import sys
import threading
import time
from collections.abc import Callable, Collection, Iterable, Mapping, MutableMapping, Sequence
from typing import TYPE_CHECKING, Any

from . import _engine as engine
from . import _rules as R
from ._rules import Rule
from .adapters.base import Adapter, Change, Loaded
from .adapters.memory import MemoryAdapter
from .audit import AuditDraft, AuditRecord, AuditTrail
from .errors import ConflictError, PolicyError, PolicyIssue, StorageError
from .fields import FieldAccess
from .scopes import NOTHING, Coverage
from .values import AccountView, CacheInfo, Decision, Record, ScopeFilter

if TYPE_CHECKING:
    from .delegation import Admin

__all__ = ["Authorizer"]

logger = logging.getLogger("salesauthz")
_Plan = Callable[[engine.Snapshot | None], tuple[Sequence[Rule], Sequence[Rule], Sequence[AuditDraft]]]


class Authorizer(FieldAccess):
    """Answers *may this account do this action on this record?* and administers the rules.

    Build one per process and share it between threads: checks need no lock; changes are
    serialised and published atomically.

    With several processes on one store, every administrative operation (:meth:`admin`) is
    decided on this process's copy of the domain's rules and committed only if the store is
    still at the version that copy reflects; otherwise the domain is brought up to date and the
    operation decided again, up to :attr:`conflict_retries` more times, before
    :class:`~salesauthz.errors.ConflictError` (nothing written).

    A domain whose stored rules break an invariant (a malformed row, two statuses, departments
    or parents for one account: :func:`~salesauthz.models.validate.stored_rule_issues`) is not
    loaded: every check there denies, the error is logged naming the rows, and
    :attr:`quarantined` holds it until a load finds the domain repaired.

    Args:
        store: where the rules live (any :class:`~salesauthz.adapters.base.Adapter`).
        domains: load only these domains (``None``: all).
        cache_size: how many ``(domain, account)`` effective permission maps to keep (LRU).
        cache: a cachetools-style cache deciding which maps stay (overrides ``cache_size``).
        clock: seconds since the epoch; injected by tests to move time (grant expiry).
    """

    conflict_retries = 3
    """How many times an administrative operation is decided again after the store moved on
    under it, before :class:`~salesauthz.errors.ConflictError`."""

    def __init__(self, store: Adapter | None = None, *, domains: Collection[str] | None = None,
                 cache_size: int = engine.DEFAULT_CACHE_SIZE,
                 cache: MutableMapping[tuple[str, str], Any] | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self._store: Adapter = store if store is not None else MemoryAdapter()
        self._only_domains = frozenset(domains) if domains is not None else None
        self._clock = clock
        self._write_lock = threading.RLock()
        self._cache = engine.EffectiveCache(cache, maxsize=cache_size)
        self._hot = self._cache.entries  # the same dict, bound once: a hit needs no lock
        self._states: dict[str, engine.DomainState] = {}
        self._snapshots: dict[str, engine.Snapshot] = {}
        self._members: dict[str, tuple[engine.Snapshot, Mapping[str, frozenset[str]]]] = {}
        self._closers: list[Callable[[], None]] = []
        self._suspended: set[str] = set()  # failing closed until the next reload
        # The store version each domain's state is exactly at (absent: 0), the domains whose state
        # is not exactly at it (a change of ours applied on rules that had fallen behind: only a
        # reload can tell), and the domains refused on load.
        self._versions: dict[str, int] = {}
        self._dirty: set[str] = set()
        self._quarantined: dict[str, PolicyError] = {}
        self._last_failure: tuple[tuple[str, str, str], float] | None = None
        self.audit = AuditTrail(self._store)
        # A domain refused on load is logged and stays closed; the others serve (see quarantined).
        with contextlib.suppress(PolicyError):
            self.reload()

    @classmethod
    def from_rules(cls, rules: Iterable[Rule], **options: Any) -> Authorizer:
        """An authorizer over an in-memory store seeded with ``rules`` (validated first)."""
        from .models.validate import validate_rules

        rule_list = list(rules)
        validate_rules(rule_list)
        return cls(MemoryAdapter(rule_list), **options)

    @classmethod
    def from_directory(cls, path: str | os.PathLike[str], **options: Any) -> Authorizer:
        """Load and validate a policy directory (``*.yaml`` documents); nothing is loaded if
        any document has an error (:class:`~salesauthz.errors.PolicyError`)."""
        from .models.loader import load_directory

        return cls(MemoryAdapter(load_directory(path).rules), **options)

    @classmethod
    def from_url(cls, url: str, *, domains: Collection[str] | None = None, watch: str | None = None,
                 **options: Any) -> Authorizer:
        """Open the store at ``url`` (``sqlite:///salesauthz.db``, ``postgresql://…``) and,
        with ``watch``, follow changes other processes make (``redis://…`` or ``postgresql://…``)."""
        from .adapters import open_adapter

        store = open_adapter(url, domains=list(domains) if domains is not None else None)
        if watch is None:
            return cls(store, domains=domains, **options)
        from .adapters.watch import snapshot_versions, start_watcher

        staleness = options.pop("staleness", None)  # seconds before a cut-off process fails closed
        try:
            versions = snapshot_versions(store)  # before loading: what loads is at least this new
            authz = cls(store, domains=domains, **options)
        except BaseException:
            store.close()
            raise
        try:
            start_watcher(authz, watch, staleness=staleness, versions=versions)
        except BaseException:
            authz.close()
            raise
        return authz

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def store(self) -> Adapter:
        return self._store

    @property
    def quarantined(self) -> Mapping[str, PolicyError]:
        """The domains not loaded because their stored rules break an invariant, each with the
        error naming the rows (every check there denies until a load finds them repaired)."""
        return dict(self._quarantined)

    def reload(self, domains: Collection[str] | None = None) -> None:
        """Reload rules from the store (all loaded domains, or only ``domains``); each domain is
        replaced whole or not at all, and a suspended domain that reloads is open again.

        A domain whose stored rules break an invariant is closed instead (see
        :attr:`quarantined`); the others load, and then :class:`~salesauthz.errors.PolicyError`
        is raised naming the offending rows. :class:`~salesauthz.errors.StorageError` when the
        store cannot be read (nothing changed)."""
        self._reload(domains, reopen=True)

    def _reload(self, domains: Collection[str] | None, *, reopen: bool) -> None:
        wanted: Collection[str] | None = domains
        if wanted is None:
            wanted = self._only_domains
        elif self._only_domains is not None:
            wanted = [d for d in wanted if d in self._only_domains]
        loaded = self._store.load_versioned(wanted)  # read outside the lock: checks go on meanwhile
        self._install(loaded, wanted, reopen=reopen)

    def _install(self, loaded: Loaded, wanted: Collection[str] | None, *, reopen: bool) -> None:
        """Replace the states of the domains ``loaded`` covers (those it reflects an older version
        of than we hold are kept), closing those whose rules break an invariant."""
        from .models.validate import stored_rule_issues

        grouped: dict[str, list[Rule]] = {}
        for rule in loaded.rules:
            try:
                name: object = R.domain_of(rule)
            except (IndexError, KeyError):
                name = None
            # A row without a domain (NULL there) is reported under "": it can open no domain.
            grouped.setdefault(name if isinstance(name, str) else "", []).append(rule)
        names = set(grouped) | set(loaded.versions) | set(wanted or ())
        if self._only_domains is not None:
            names &= self._only_domains
        refused: dict[str, PolicyError] = {}
        for name in sorted(names):
            issues = stored_rule_issues(grouped.get(name, ()), self._store.url)
            if issues:
                refused[name] = PolicyError(issues)
        healthy = [name for name in names if name not in refused]
        states = engine.load_domains([r for n in healthy for r in grouped.get(n, ())], healthy,
                                     source=self._store.url)
        with self._write_lock:
            if wanted is None:  # domains that left the store are emptied too
                for name in set(self._states) - names:
                    states[name] = engine.DomainState(name)
            for name in (*states, *refused):
                version = loaded.versions.get(name, 0)
                if version < self._versions.get(name, 0) and name not in self._dirty:
                    continue  # we already hold newer rules (a change of ours committed meanwhile)
                self._versions[name] = version
                self._dirty.discard(name)
                if name in refused:
                    self._quarantined[name] = refused[name]
                    self._states.pop(name, None)
                    self._snapshots.pop(name, None)
                else:
                    self._quarantined.pop(name, None)
                    self._publish(name, states[name])
            if reopen:
                for name in names | set(states):
                    self._suspended.discard(name)
                    state = self._states.get(name)
                    if state is not None:
                        self._publish(name, state)
        if refused:
            error = PolicyError([issue for e in refused.values() for issue in e.issues])
            logger.error("salesauthz: domain(s) %s not loaded, every check there denies: %s",
                         ", ".join(repr(d) for d in sorted(refused)), error)
            raise error

    def catch_up(self, versions: Mapping[str, int], *, reopen: bool = False) -> None:
        """Bring each domain of ``versions`` (``{domain: store version}``) to at least that
        version: by applying the store's change log to the rules held — the way a change made
        here is applied — or, where the log cannot bridge the gap (pruned, a write made outside
        salesauthz, a domain not held yet), by reloading the domain. With ``reopen``, those
        domains are open again afterwards if suspended (a watcher resuming after a suspension).

        Raises like :meth:`reload` (the other domains are brought up to date first)."""
        behind: list[str] = []
        for name, target in sorted(versions.items()):
            if self._only_domains is not None and name not in self._only_domains:
                continue
            if not self._advance(name, target):
                behind.append(name)
        try:
            if behind:
                self._reload(behind, reopen=reopen)
        finally:
            if reopen:
                with self._write_lock:
                    for name in versions:
                        if name in self._suspended:
                            self._suspended.discard(name)
                            state = self._states.get(name)
                            if state is not None:
                                self._publish(name, state)

    def _advance(self, name: str, target: int) -> bool:
        """Apply the change log of ``name`` up to the store's version (at least ``target``);
        ``False`` if the domain must be reloaded instead."""
        with self._write_lock:
            held = self._versions.get(name)
            usable = held is not None and name not in self._dirty and name not in self._quarantined
        if not usable or held is None:
            return False
        if held >= target:
            return True
        feed = self._store.changes(name, held)  # outside the lock
        if not feed.complete:
            return False
        with self._write_lock:
            now = self._versions.get(name)
            if now is None or name in self._dirty or name in self._quarantined:
                return False
            pending = [c for c in feed.changes if c.version > now]
            if now < feed.version:
                added, removed = _net(pending)
                state = self._states.get(name) or engine.DomainState(name)
                state.apply(added, removed)
                self._versions[name] = feed.version
                self._publish(name, state)
            return True

    def suspend(self, domains: Collection[str]) -> None:
        """Fail closed for ``domains``: every check there denies until :meth:`reload` brings
        them back (used by watchers when rules may be stale beyond the allowed bound). Takes no
        lock, so a write stuck on a hung store cannot delay it (``_publish`` re-checks)."""
        for name in domains:
            self._suspended.add(name)
            self._snapshots.pop(name, None)

    def add_closer(self, close: Callable[[], None]) -> None:
        """Register something (e.g. a watcher's stop function) for :meth:`close` to call."""
        self._closers.append(close)

    def close(self) -> None:
        """Stop watchers and release the store's connections."""
        while self._closers:
            self._closers.pop()()
        self._store.close()

    def __enter__(self) -> Authorizer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- decisions (the hot path) ----------------------------------------------------------

    def check(self, account: str, action: str, record: Record, *, domain: str) -> bool:
        """May ``account`` do ``action`` on ``record`` in ``domain``? Never raises: unknown
        names and internal errors are a deny (errors are logged once per incident)."""
        try:
            snapshot = self._snapshots.get(domain)
            if snapshot is None:
                return False
            # The hit path of EffectiveCache.get inlined: a call would cost ~10 % of a check.
            entry = self._hot.get((domain, account))
            if (entry is None or entry[0] != snapshot.stamps.get(account, snapshot.base)
                    or (entry[2] is not None and self._clock() >= entry[2])):
                entry = self._cache.get(snapshot, account, self._clock())
            else:
                self._cache.hits += 1
                if not self._cache.hits & engine.TOUCH_EVERY:
                    self._cache.touch((domain, account))
            coverage = entry[1].get((record.type, action))
            return coverage is not None and coverage.covers(record.owner, record.department,
                                                            snapshot.homes, record.shares)
        except Exception:
            self._report_failure("check")
            return False

    def check_many(self, requests: Iterable[tuple[str, str, Record]], *, domain: str) -> list[bool]:
        """``check`` for each ``(account, action, record)``; cheaper per request than ``check``
        when requests share accounts (e.g. one page of a list view)."""
        results: list[bool] = []
        try:
            snapshot = self._snapshots.get(domain)
            maps: dict[str, engine.EffectiveMap] = {}
            for account, action, record in requests:
                if snapshot is None:
                    results.append(False)
                    continue
                held = maps.get(account)
                if held is None:
                    held = maps[account] = self._effective(snapshot, account)
                coverage = held.get((record.type, action))
                results.append(coverage is not None and coverage.covers(
                    record.owner, record.department, snapshot.homes, record.shares))
            return results
        except Exception:
            self._report_failure("check_many")
            return [False for _ in requests] if isinstance(requests, Sequence) else []

    def _effective(self, snapshot: engine.Snapshot, account: str) -> engine.EffectiveMap:
        return self._cache.get(snapshot, account, self._clock())[1]

    def _report_failure(self, where: str) -> None:
        # Fail closed, and log once per incident (same error within a minute) rather than per check.
        error = sys.exc_info()[1]
        signature = (where, type(error).__name__, str(error))
        now = time.monotonic()
        if self._last_failure is None or self._last_failure[0] != signature \
                or now - self._last_failure[1] > 60.0:
            logger.exception("salesauthz %s failed; denying", where)
            self._last_failure = (signature, now)

    def cache_info(self) -> CacheInfo:
        """Hits, misses, bound and current size of the effective-permission cache."""
        return self._cache.info()

    def cache_clear(self) -> None:
        self._cache.clear()

    # -- questions -------------------------------------------------------------------------

    def explain(self, account: str, action: str, record: Record, *, domain: str) -> Decision:
        """The decision ``check`` makes, with the reason and the rules behind it."""
        return engine.explain(self._snapshots.get(domain), account, action, record, domain,
                              self._clock())

    def scope_filter(self, account: str, action: str, type: str, *, domain: str) -> ScopeFilter:
        """Which records of ``type`` the account may ``action``: see :class:`ScopeFilter`."""
        coverage = NOTHING  # shared, so renderers can cache the empty filter
        snapshot = self._snapshots.get(domain)
        if snapshot is not None:
            coverage = self._effective(snapshot, account).get((type, action), NOTHING)
        return ScopeFilter(account, action, type, domain, coverage)

    def effective_permissions(self, account: str, *, domain: str) -> dict[tuple[str, str], Coverage]:
        """``(type, action) → Coverage`` for everything the account may do right now."""
        snapshot = self._snapshots.get(domain)
        return dict(self._effective(snapshot, account)) if snapshot is not None else {}

    def account(self, name: str, *, domain: str) -> AccountView | None:
        """What the current rules say about an account (``None``: the rules never name it)."""
        snapshot = self._snapshots.get(domain)
        info = snapshot.accounts.get(name) if snapshot is not None else None
        if info is None:
            return None
        return AccountView(name, domain, info.status, info.department, info.parent, info.roles,
                           info.also_in, info.reports_to, dict(info.timed_roles))

    def department_members(self, *, domain: str) -> Mapping[str, frozenset[str]]:
        """``department → accounts in it`` under the current rules (one object per version of the
        domain's rules, so callers may cache by identity)."""
        snapshot = self._snapshots.get(domain)
        if snapshot is None:
            return {}
        known = self._members.get(domain)
        if known is None or known[0] is not snapshot:
            grouped: dict[str, set[str]] = {}
            for name, home in snapshot.homes.items():
                if home:
                    grouped.setdefault(home, set()).add(name)
            known = self._members[domain] = (snapshot, {d: frozenset(n) for d, n in grouped.items()})
        return known[1]

    def domains(self) -> list[str]:
        return sorted(self._snapshots)

    def rules(self, domain: str | None = None) -> list[Rule]:
        """The current rules (of one domain, or all), sorted."""
        with self._write_lock:
            if domain is not None:
                state = self._states.get(domain)
                return sorted(state.rules) if state is not None else []
            return sorted(r for s in self._states.values() for r in s.rules)

    def now(self) -> float:
        """The authorizer's clock (seconds since the epoch)."""
        return self._clock()

    # -- changes ---------------------------------------------------------------------------

    def admin(self, actor: str, *, domain: str, audit_denied: bool = False) -> Admin:
        """Administrative operations performed by ``actor``, authorized by its own rights
        (``audit_denied=True`` also records refused operations in the audit trail)."""
        from .delegation import Admin

        return Admin(self, actor, domain, audit_denied=audit_denied)

    def apply_changes(self, added: Iterable[Rule] = (), removed: Iterable[Rule] = (), *,
                      audit: Sequence[AuditDraft] = ()) -> list[AuditRecord]:
        """Apply a batch of rule changes: store first (atomically, with its audit records), then
        the in-memory snapshots. Unauthorized: administrative code goes through :meth:`admin`."""
        with self._write_lock:
            return self._commit(added, removed, audit, None)

    def _commit(self, added: Iterable[Rule], removed: Iterable[Rule], audit: Sequence[AuditDraft],
                expected: Mapping[str, int] | None) -> list[AuditRecord]:
        """Store first (atomically, with its audit records; compare-and-set on ``expected``),
        then the rules held here. Called under the write lock."""
        add, remove = list(dict.fromkeys(added)), list(dict.fromkeys(removed))
        issues = [PolicyIssue(f"{p}: {r!r}") for r in add if (p := R.check_rule(r)) is not None]
        if issues:
            raise PolicyError(issues)
        committed = self._store.commit(add, remove, audit, expected=expected)
        by_domain: dict[str, tuple[list[Rule], list[Rule]]] = {}
        for rule in remove:
            by_domain.setdefault(R.domain_of(rule), ([], []))[1].append(rule)
        for rule in add:
            by_domain.setdefault(R.domain_of(rule), ([], []))[0].append(rule)
        for name in sorted(set(committed.versions) | set(by_domain)):
            if self._only_domains is not None and name not in self._only_domains:
                continue
            domain_added, domain_removed = by_domain.get(name, ([], []))
            version = committed.versions.get(name)
            held = self._versions.get(name, 0)
            if version is not None and version == held + 1 and name not in self._dirty \
                    and name not in self._quarantined:
                if domain_added or domain_removed:
                    state = self._states.get(name) or engine.DomainState(name)
                    state.apply(domain_added, domain_removed)
                    self._publish(name, state)
                self._versions[name] = version
            else:
                # Another process's change committed before ours, unseen here: bring the
                # domain up to date from the store, ours included.
                self._catch_up_after_commit(name, version, domain_added, domain_removed)
        return committed.records

    def _catch_up_after_commit(self, name: str, version: int | None, added: list[Rule],
                               removed: list[Rule]) -> None:
        try:
            if version is None or not self._advance(name, version):
                self._reload([name], reopen=False)
            return
        except PolicyError:
            return  # the domain is closed now (reload logged why)
        except StorageError as exc:
            logger.warning("salesauthz: cannot bring domain %r up to date after a change: %s", name, exc)
        # The store did not answer: apply our own change at least (a revoke must take effect
        # here now), and let the next catch-up reload the domain.
        if (added or removed) and name not in self._quarantined:
            state = self._states.get(name) or engine.DomainState(name)
            state.apply(added, removed)
            self._publish(name, state)
        self._dirty.add(name)

    def _transact(self, domain: str, plan: _Plan) -> list[AuditRecord]:
        """Run ``plan`` on the domain's current snapshot under the write lock and commit what it
        returns ``(added, removed, audit)`` atomically, only if the store is still at the
        version that snapshot reflects: decisions made inside ``plan`` see exactly the rules
        the change applies to. If another process changed the domain first, bring it up to date
        and run ``plan`` again (at most :attr:`conflict_retries` more times), then raise
        :class:`~salesauthz.errors.ConflictError`. Raising from ``plan`` changes nothing."""
        attempts = 0
        while True:
            attempts += 1
            with self._write_lock:
                refused = self._quarantined.get(domain)
                if refused is not None:
                    raise PolicyError(refused.issues)
                version = self._versions.get(domain, 0)
                added, removed, audit = plan(self._snapshots.get(domain))
                try:
                    return self._commit(added, removed, audit, {domain: version})
                except ConflictError as conflict:
                    if attempts > self.conflict_retries:
                        raise ConflictError(domain, expected=version, actual=conflict.actual,
                                            attempts=attempts, url=self._store.url) from None
                    actual = conflict.actual if conflict.actual is not None else version + 1
            # A short random pause, so that two processes that keep meeting each other's
            # changes fall out of step; then, outside the lock (checks go on), catch up.
            time.sleep(random.uniform(0.0, 0.005 * attempts))
            try:
                self.catch_up({domain: actual})
            except PolicyError:
                continue  # closed now: the next attempt says so

    def _snapshot(self, domain: str) -> engine.Snapshot | None:
        return self._snapshots.get(domain)

    def _publish(self, name: str, state: engine.DomainState) -> None:
        """Make ``state`` the domain's current rules (a suspended domain stays closed)."""
        if not state.rules:
            self._states.pop(name, None)
            self._snapshots.pop(name, None)
            return
        self._states[name] = state
        if name not in self._suspended and state.snapshot is not None:
            self._snapshots[name] = state.snapshot
            if name in self._suspended:  # suspend() ran meanwhile (it takes no lock)
                self._snapshots.pop(name, None)


def _net(changes: Sequence[Change]) -> tuple[list[Rule], list[Rule]]:
    """Consecutive changes as one: each rule ends up as the last change touching it left it
    (removals before additions within a change, as every store applies them)."""
    last: dict[Rule, bool] = {}
    for change in changes:
        for rule in change.removed or ():
            last[rule] = False
        for rule in change.added or ():
            last[rule] = True
    return [r for r, present in last.items() if present], [r for r, present in last.items() if not present]
