"""The :class:`Authorizer`: the facade a CRM imports, over the engine, the cache and the store."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Collection, Iterable, Mapping, MutableMapping, Sequence
from typing import TYPE_CHECKING, Any

from . import _engine as engine
from ._queries import Queries
from ._replica import Replica
from ._rules import Rule
from .adapters.base import Adapter
from .adapters.memory import MemoryAdapter
from .audit import AuditTrail
from .errors import PolicyError
from .fields import FieldAccess
from .sharing import ShareAccess
from .values import CacheInfo, Record

if TYPE_CHECKING:
    from .delegation import Admin

__all__ = ["Authorizer"]

logger = logging.getLogger("salesauthz")
_NO_CONTEXT: Mapping[str, Any] = {}  # a request context no condition (where:) reads
_TOUCH_EVERY = engine.TOUCH_EVERY


class Authorizer(Queries, FieldAccess, ShareAccess, Replica):
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
        cache_size: how many ``(domain, account)`` effective permission maps to keep (an
            approximate LRU; default 400,000 — ~300 bytes per account).
        cache: a cachetools-style cache deciding which maps stay (overrides ``cache_size``).
        clock: seconds since the epoch; injected by tests to move time (grant expiry).
    """

    def __init__(self, store: Adapter | None = None, *, domains: Collection[str] | None = None,
                 cache_size: int = engine.DEFAULT_CACHE_SIZE,
                 cache: MutableMapping[tuple[str, str], Any] | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self._store: Adapter = store if store is not None else MemoryAdapter()
        self._only_domains = frozenset(domains) if domains is not None else None
        self._clock = clock
        self._write_lock = threading.RLock()
        self._cache = engine.EffectiveCache(cache, maxsize=cache_size)
        self._hot = self._cache.domains  # the same dict, bound once: a hit needs no lock
        self._states: dict[str, engine.DomainState] = {}
        self._snapshots: dict[str, engine.Snapshot] = {}
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


    # -- decisions (the hot path) ----------------------------------------------------------

    def check(self, account: str, action: str, record: Record, *, domain: str,
              context: Mapping[str, Any] | None = None) -> bool:
        """May ``account`` do ``action`` on ``record`` in ``domain``? Never raises: unknown
        names and internal errors are a deny (errors are logged once per incident).

        ``context`` describes the request (``mfa``: bool or assurance level, ``ip``: the client
        address, ``now``: seconds since the epoch or an aware datetime, default the authorizer's
        clock) for permissions with ``requires:``; what they need and is missing is a deny."""
        try:
            snapshot = self._snapshots.get(domain)
            if snapshot is None:
                return False
            # The hit path of EffectiveCache.get inlined: a call would cost ~10 % of a check. An
            # entry tagged with this snapshot's version is fresh; any other takes the full test.
            entries = self._hot.get(domain)
            entry = entries.get(account) if entries is not None else None
            if (entry is None or entry[0] != snapshot.version
                    or (entry[2] is not None and self._clock() >= entry[2])):
                entry = self._cache.get(snapshot, account, self._clock())
            else:
                cache = self._cache
                cache.hits += 1
                if not cache.hits & _TOUCH_EVERY:
                    cache.touch(domain, account)
            coverage = entry[1].get((record.type, action))
            if coverage is None:
                return False
            # Coverage.covers' first test inlined: most allowed checks end here.
            owner = record.owner
            if coverage.everything or owner in coverage.owners:
                return True
            if entry[3] and owner == account and coverage.owners:  # a shared map: SELF
                return True
            if not coverage.guarded:
                if coverage.owner_departments:
                    return coverage.covers(owner, record.department, snapshot.homes)
                # Coverage.covers' department test inlined (a record with no department is in
                # its owner's)
                # An owner of None finds no home (as in covers()): the department stays None.
                department = record.department or snapshot.homes.get(owner)  # type: ignore[arg-type]
                return department in coverage.departments
            conditions = coverage.condition_guards
            if conditions is not None:  # where: only, no requires: no clock read
                if not coverage.reads_department:
                    # Coverage.covers' condition loop inlined (its owners were tested above):
                    # a call would cost a fifth of this check
                    attributes = record.attributes
                    for guard in conditions:  # noqa: SIM110  # any(<generator>) allocates per call
                        if guard.holds(owner, (), attributes, None):
                            return True
                    return False
                return coverage.covers(owner, record.department, snapshot.homes, record.shares,
                                       record.attributes, _NO_CONTEXT)
            return coverage.covers(owner, record.department, snapshot.homes, record.shares,
                                   record.attributes, self._context(context))
        except Exception:
            self._report_failure("check")
            return False

    def check_many(self, requests: Iterable[tuple[str, str, Record]], *, domain: str,
                   context: Mapping[str, Any] | None = None) -> list[bool]:
        """``check`` for each ``(account, action, record)`` (one request ``context`` for all);
        cheaper per request than ``check`` when requests share accounts (e.g. one page of a list
        view)."""
        results: list[bool] = []
        append = results.append
        try:
            snapshot = self._snapshots.get(domain)
            if snapshot is None:
                return [False for _ in requests]
            full: Mapping[str, Any] | None = None
            maps: dict[str, tuple[engine.EffectiveMap, bool]] = {}  # account -> (map, shared)
            entries = self._hot.get(domain, {})
            version, homes = snapshot.version, snapshot.homes
            now: float | None = None
            current: str | None = None  # the account of the previous request (pages repeat it)
            held: engine.EffectiveMap = {}
            shared = False
            for account, action, record in requests:
                if account != current:
                    found = maps.get(account)
                    if found is None:
                        # check's inlined cache hit, once per account of the batch
                        entry = entries.get(account)
                        if entry is not None and entry[2] is not None and now is None:
                            now = self._clock()
                        if (entry is None or entry[0] != version
                                or (entry[2] is not None and now is not None and now >= entry[2])):
                            entry = self._cache.get(snapshot, account, self._clock())
                        else:
                            self._cache.hits += 1
                        found = maps[account] = (entry[1], entry[3])
                    held, shared = found
                    current = account
                coverage = held.get((record.type, action))
                if coverage is None:
                    append(False)
                    continue
                owner = record.owner
                if (coverage.everything or owner in coverage.owners  # as in check()
                        or (shared and owner == account and coverage.owners)):  # shared map: SELF
                    append(True)
                elif not coverage.guarded:
                    # owner None: no home, and None is in no department set (as in check())
                    append((record.department or homes.get(owner))  # type: ignore[arg-type]
                           in coverage.departments  # type: ignore[operator]  # None: in no set
                           if not coverage.owner_departments
                           else coverage.covers(owner, record.department, homes))
                else:
                    if full is None:
                        full = self._context(context)
                    append(coverage.covers(owner, record.department, homes, record.shares,
                                           record.attributes, full))
            return results
        except Exception:
            self._report_failure("check_many")
            return [False for _ in requests] if isinstance(requests, Sequence) else []

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

    # -- changes ---------------------------------------------------------------------------

    def admin(self, actor: str, *, domain: str, audit_denied: bool = False,
              context: Mapping[str, Any] | None = None) -> Admin:
        """Administrative operations performed by ``actor``, authorized by its own rights
        (``audit_denied=True`` also records refused operations in the audit trail). ``context``
        is the actor's request context: its ``mfa`` (session assurance) is written into every
        audit record (``AuditRecord.assurance``)."""
        from .delegation import Admin

        return Admin(self, actor, domain, audit_denied=audit_denied, context=context)
