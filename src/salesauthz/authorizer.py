"""The :class:`Authorizer`: the facade a CRM imports."""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

from cachetools import LRUCache

from . import _rules as R
from ._index import DomainIndex, DomainState, EffectiveMap, Permission
from ._rules import Rule
from .adapters.base import Adapter
from .adapters.memory import MemoryAdapter
from .audit import AuditDraft, AuditRecord, AuditTrail
from .errors import PolicyError, PolicyIssue
from .scopes import NOTHING, Coverage, Scope

if TYPE_CHECKING:
    from .delegation import Admin

__all__ = ["Authorizer", "CacheInfo", "Decision", "Record", "ScopeFilter"]

logger = logging.getLogger("salesauthz")


class Record(NamedTuple):
    """A protected record: its type, owner account and department.

    When ``department`` is ``None`` the record is taken to be in its owner's *current*
    department. ``id`` is carried through to decision logs only.
    """

    type: str
    owner: str | None = None
    department: str | None = None
    id: str | None = None


class CacheInfo(NamedTuple):
    hits: int
    misses: int
    maxsize: int
    currsize: int


@dataclass(frozen=True, slots=True)
class Decision:
    """The answer to a check, with why.

    ``reason`` is a sentence a person understands; ``rules`` are the Casbin rules that decided
    (the permissions that allowed, or the ones considered when none did); ``role`` is the role
    that allowed (``None`` for a direct grant or a deny); ``steps`` is the chain of reasoning,
    one line per step, including the parent ceiling of a sub-account.
    """

    allowed: bool
    reason: str
    account: str
    action: str
    record: Record
    domain: str
    rules: tuple[Rule, ...] = ()
    role: str | None = None
    scope: Scope | None = None
    steps: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return self.allowed


@dataclass(frozen=True, slots=True)
class ScopeFilter:
    """Which records of ``type`` an account may ``action``, as data (for list views).

    ``nothing``: no record; ``everything``: every record of the domain; otherwise records whose
    owner is in ``owners``, or whose department is in ``departments``, or whose department is in
    ``owner_departments[owner]``. Department subtrees are already expanded and a sub-account's
    parent ceiling already applied, so this is exactly equivalent to :meth:`Authorizer.check`
    for records whose department is known.
    """

    account: str
    action: str
    type: str
    domain: str
    coverage: Coverage

    @property
    def nothing(self) -> bool:
        return self.coverage.is_empty

    @property
    def everything(self) -> bool:
        return self.coverage.everything

    @property
    def owners(self) -> frozenset[str]:
        return self.coverage.owners

    @property
    def departments(self) -> frozenset[str]:
        return self.coverage.departments

    @property
    def owner_departments(self) -> Mapping[str, frozenset[str]]:
        return self.coverage.owner_departments

    def matches(self, owner: str | None, department: str | None) -> bool:
        """Whether a record with this owner and department passes the filter."""
        return self.coverage.covers(owner, department)

    def explain(self) -> str:
        head = f"{self.account} may {self.action} {self.type} records in {self.domain}"
        if self.nothing:
            return f"{self.account} may {self.action} no {self.type} record in {self.domain}"
        if self.everything:
            return head + ": all of them"
        parts = []
        if self.owners:
            parts.append("owned by " + ", ".join(sorted(self.owners)))
        if self.departments:
            parts.append("in department " + ", ".join(sorted(self.departments)))
        for owner, depts in sorted(self.owner_departments.items()):
            parts.append(f"owned by {owner} and in department " + ", ".join(sorted(depts)))
        return head + " " + "; or ".join(parts)


_Entry = tuple[int, EffectiveMap, float | None]  # (stamp, effective map, valid until)
_TOUCH_EVERY = 15  # refresh LRU recency on every 16th hit (a bit mask)


class _BoundedCache(LRUCache[tuple[str, str], _Entry]):
    """cachetools' LRU, keeping a lock-free mirror dict in step on eviction."""

    def __init__(self, maxsize: int, mirror: dict[tuple[str, str], _Entry]) -> None:
        super().__init__(maxsize=maxsize)
        self._mirror = mirror

    def popitem(self) -> tuple[tuple[str, str], _Entry]:
        key, value = super().popitem()
        self._mirror.pop(key, None)
        return key, value


class Authorizer:
    """Answers *may this account do this action on this record?* and administers the rules.

    Build one per process and share it between threads: checks need no lock; changes are
    serialised and published atomically.

    Args:
        store: where the rules live (any :class:`~salesauthz.adapters.base.Adapter`).
        domains: load only these domains (``None``: all).
        cache_size: how many ``(domain, account)`` effective permission maps to keep (LRU).
        clock: seconds since the epoch; injected by tests to move time (grant expiry).
    """

    def __init__(
        self,
        store: Adapter | None = None,
        *,
        domains: Collection[str] | None = None,
        cache_size: int = 65_536,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store: Adapter = store if store is not None else MemoryAdapter()
        self._only_domains = frozenset(domains) if domains is not None else None
        self._clock = clock
        self._write_lock = threading.RLock()
        self._cache_lock = threading.Lock()
        # The bounded LRU (cachetools) decides what stays; ``_hot`` mirrors its contents as a
        # plain dict so that a cache hit needs no lock and no Python-level LRU bookkeeping.
        self._hot: dict[tuple[str, str], _Entry] = {}
        self._cache: _BoundedCache = _BoundedCache(cache_size, self._hot)
        self._hits = 0  # statistics only: updated without a lock, so approximate under threads
        self._misses = 0
        self._last_failure: tuple[str, str, str] | None = None
        self._last_failure_at = 0.0
        self._states: dict[str, DomainState] = {}
        self._indexes: dict[str, DomainIndex] = {}
        self._closers: list[Callable[[], None]] = []
        self._suspended: set[str] = set()  # failing closed until the next reload
        self.audit = AuditTrail(self._store)
        self.reload()

    # -- construction ----------------------------------------------------------------------

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

        policy = load_directory(path)
        return cls(MemoryAdapter(policy.rules), **options)

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        domains: Collection[str] | None = None,
        watch: str | None = None,
        **options: Any,
    ) -> Authorizer:
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

    @property
    def store(self) -> Adapter:
        return self._store

    def suspend(self, domains: Collection[str]) -> None:
        """Fail closed for ``domains``: every check there denies until :meth:`reload` brings
        them back (used by watchers when rules may be stale beyond the allowed bound)."""
        with self._write_lock:
            for name in domains:
                self._suspended.add(name)
                self._indexes.pop(name, None)

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

    def reload(self, domains: Collection[str] | None = None) -> None:
        """Reload rules from the store (all loaded domains, or only ``domains``)."""
        wanted: Collection[str] | None = domains
        if wanted is None:
            wanted = self._only_domains
        elif self._only_domains is not None:
            wanted = [d for d in wanted if d in self._only_domains]
        with self._write_lock:
            rules = self._store.load(wanted)
            # Build every domain first and publish only if all of them load: a reload is
            # all-or-nothing, like every other change.
            try:
                grouped: dict[str, list[Rule]] = {}
                for rule in rules:
                    grouped.setdefault(R.domain_of(rule), []).append(rule)
                names = set(grouped) if wanted is None else set(wanted)
                fresh: dict[str, tuple[DomainState, DomainIndex]] = {}
                for name in names | (set(self._states) if wanted is None else set()):
                    state = DomainState(name)
                    fresh[name] = state, state.apply(grouped.get(name, ()), ())
            except Exception:
                # Diagnose only on failure, so a healthy load pays nothing for the check.
                issues = [PolicyIssue(f"{problem}: {rule!r}", self._store.url, code="SA100")
                          for rule in rules if (problem := R.check_rule(rule)) is not None]
                if issues:
                    raise PolicyError(issues) from None
                raise
            for name, (state, index) in fresh.items():
                self._suspended.discard(name)
                if state.rules:
                    self._states[name] = state
                    self._indexes[name] = index
                else:
                    self._states.pop(name, None)
                    self._indexes.pop(name, None)

    # -- decisions (the hot path) ----------------------------------------------------------

    def check(self, account: str, action: str, record: Record, *, domain: str) -> bool:
        """May ``account`` do ``action`` on ``record`` in ``domain``? Never raises: unknown
        names and internal errors are a deny (errors are logged once per incident)."""
        try:
            index = self._indexes.get(domain)
            if index is None:
                return False
            # _effective() inlined: on a cache hit the extra call would cost ~10 % of a check.
            entry = self._hot.get((domain, account))
            if (
                entry is None
                or entry[0] != index.stamps.get(account, index.base)
                or (entry[2] is not None and self._clock() >= entry[2])
            ):
                entry = self._fill(index, (domain, account))
            else:
                self._hits += 1
                if not self._hits & _TOUCH_EVERY:
                    self._touch((domain, account))
            coverage = entry[1].get((record.type, action))
            if coverage is None:
                return False
            owner = record.owner
            if coverage.everything or owner in coverage.owners:
                return True
            department = record.department
            if not department:  # None or "": the owner's current department
                info = index.accounts.get(owner)  # type: ignore[arg-type]  # None finds nothing
                department = info.department if info is not None else None
            if department in coverage.departments:
                return True
            pairs = coverage.owner_departments
            if pairs:
                depts = pairs.get(owner)  # type: ignore[arg-type]  # None finds nothing
                return depts is not None and department in depts
            return False
        except Exception:
            self._report_failure("check")
            return False

    def check_many(
        self, requests: Iterable[tuple[str, str, Record]], *, domain: str
    ) -> list[bool]:
        """``check`` for each ``(account, action, record)``; cheaper per request than ``check``
        when requests share accounts (e.g. one page of a list view)."""
        results: list[bool] = []
        append = results.append
        try:
            index = self._indexes.get(domain)
            if index is None:
                return [False for _ in requests]
            accounts = index.accounts
            effective: dict[str, EffectiveMap] = {}
            for account, action, record in requests:
                eff = effective.get(account)
                if eff is None:
                    eff = effective[account] = self._effective(index, domain, account)
                coverage = eff.get((record.type, action))
                if coverage is None:
                    append(False)
                    continue
                owner = record.owner
                department = record.department
                if not department:
                    info = accounts.get(owner)  # type: ignore[arg-type]
                    department = info.department if info is not None else None
                append(coverage.covers(owner, department))
            return results
        except Exception:
            self._report_failure("check_many")
            return [False for _ in requests] if isinstance(requests, Sequence) else []

    def _effective(self, index: DomainIndex, domain: str, account: str) -> EffectiveMap:
        entry = self._hot.get((domain, account))
        if (
            entry is None
            or entry[0] != index.stamps.get(account, index.base)
            or (entry[2] is not None and self._clock() >= entry[2])
        ):
            entry = self._fill(index, (domain, account))
        else:
            self._hits += 1
        return entry[1]

    def _fill(self, index: DomainIndex, key: tuple[str, str]) -> _Entry:
        self._misses += 1
        account = key[1]
        stamp = index.stamps.get(account, index.base)
        effective, valid_until = index.effective(account, self._clock())
        entry: _Entry = (stamp, effective, valid_until)
        with self._cache_lock:
            self._cache[key] = entry  # may evict: _BoundedCache.popitem drops it from _hot too
            self._hot[key] = entry
        return entry

    def _touch(self, key: tuple[str, str]) -> None:
        # Refresh the key's recency in the LRU order (sampled: every 16th hit).
        with self._cache_lock:
            self._cache.get(key)

    def _report_failure(self, where: str) -> None:
        # Fail closed, and log once per incident (same error within a minute) rather than per check.
        error = sys.exc_info()[1]
        signature = (where, type(error).__name__, str(error))
        now = time.monotonic()
        if signature != self._last_failure or now - self._last_failure_at > 60.0:
            logger.exception("salesauthz %s failed; denying", where)
            self._last_failure_at = now
        self._last_failure = signature

    def cache_info(self) -> CacheInfo:
        """Hits, misses, bound and current size of the effective-permission cache."""
        with self._cache_lock:
            return CacheInfo(self._hits, self._misses, int(self._cache.maxsize),
                             int(self._cache.currsize))

    def cache_clear(self) -> None:
        with self._cache_lock:
            self._cache.clear()
            self._hot.clear()

    # -- explanations and listings ---------------------------------------------------------

    def explain(self, account: str, action: str, record: Record, *, domain: str) -> Decision:
        """The decision ``check`` makes, with the reason and the rules behind it."""
        from ._explain import explain

        return explain(self._indexes.get(domain), account, action, record, domain, self._clock())

    def scope_filter(self, account: str, action: str, type: str, *, domain: str) -> ScopeFilter:
        """Which records of ``type`` the account may ``action``: see :class:`ScopeFilter`."""
        coverage = NOTHING  # shared, so renderers can cache the empty filter
        index = self._indexes.get(domain)
        if index is not None:
            coverage = self._effective(index, domain, account).get((type, action), NOTHING)
        return ScopeFilter(account, action, type, domain, coverage)

    # -- field-level access ----------------------------------------------------------------

    def field_modes(self, account: str, type: str, record: Mapping[str, Any], *, domain: str,
                    fields: Iterable[str] | None = None, owner_field: str = "owner",
                    department_field: str = "department") -> dict[str, str]:
        """``field → "visible" | "readonly" | "hidden"`` for a record given as a mapping (its
        owner and department are read from ``owner_field``/``department_field``)."""
        from .fields import field_modes, ruled_fields

        index = self._indexes.get(domain)
        names = set(record if fields is None else fields)
        if index is not None and fields is None:
            names |= ruled_fields(index, type)
        return field_modes(index, account, type, _text(record.get(owner_field)),
                           _text(record.get(department_field)), sorted(names))

    def redact(self, account: str, type: str, record: Mapping[str, Any], *, domain: str,
               owner_field: str = "owner", department_field: str = "department") -> dict[str, Any]:
        """A copy of ``record`` without the fields hidden from ``account``. (Whether the account
        may read the record at all is :meth:`check`'s question: ask it first.)"""
        modes = self.field_modes(account, type, record, domain=domain, fields=record,
                                 owner_field=owner_field, department_field=department_field)
        return {k: v for k, v in record.items() if modes.get(k) != "hidden"}

    def writable_fields(self, account: str, type: str, record: Mapping[str, Any], *, domain: str,
                        fields: Iterable[str] | None = None, owner_field: str = "owner",
                        department_field: str = "department") -> frozenset[str]:
        """The fields (of ``fields``, or of the record and every ruled field) the account may
        change on this record: neither readonly nor hidden, and only if it may ``update`` it."""
        owner = _text(record.get(owner_field))
        department = _text(record.get(department_field))
        if not self.check(account, "update", Record(type, owner, department), domain=domain):
            return frozenset()
        modes = self.field_modes(account, type, record, domain=domain, fields=fields,
                                 owner_field=owner_field, department_field=department_field)
        return frozenset(f for f, mode in modes.items() if mode == "visible")

    def check_write(self, account: str, type: str, record: Mapping[str, Any],
                    changes: Mapping[str, Any], *, domain: str, owner_field: str = "owner",
                    department_field: str = "department") -> None:
        """Raise :class:`~salesauthz.errors.ForbiddenError` unless ``account`` may ``update``
        the record and every changed field is writable for it; the message names the fields."""
        from .errors import ForbiddenError

        owner = _text(record.get(owner_field))
        department = _text(record.get(department_field))
        if not self.check(account, "update", Record(type, owner, department), domain=domain):
            raise ForbiddenError(f"{account} may not update this {type} record", account=account,
                                 action="update", type=type, domain=domain)
        modes = self.field_modes(account, type, record, domain=domain, fields=changes,
                                 owner_field=owner_field, department_field=department_field)
        refused = sorted(f for f, mode in modes.items() if mode != "visible")
        if refused:
            detail = ", ".join(f"{f} ({modes[f]})" for f in refused)
            raise ForbiddenError(f"{account} may not change {detail} of this {type} record",
                                 account=account, action="update", type=type, domain=domain)

    def effective_permissions(self, account: str, *, domain: str) -> dict[tuple[str, str], Coverage]:
        """``(type, action) → Coverage`` for everything the account may do right now."""
        index = self._indexes.get(domain)
        if index is None:
            return {}
        return dict(self._effective(index, domain, account))

    def domains(self) -> list[str]:
        return sorted(self._indexes)

    def index(self, domain: str) -> DomainIndex | None:
        """The current compiled snapshot of a domain (read-only; for tools and tests)."""
        return self._indexes.get(domain)

    def rules(self, domain: str | None = None) -> list[Rule]:
        """The current rules (of one domain, or all), sorted."""
        with self._write_lock:
            if domain is not None:
                state = self._states.get(domain)
                return sorted(state.rules) if state is not None else []
            return sorted(r for s in self._states.values() for r in s.rules)

    # -- changes ---------------------------------------------------------------------------

    def admin(self, actor: str, *, domain: str) -> Admin:
        """Administrative operations performed by ``actor``, authorized by its own rights."""
        from .delegation import Admin

        return Admin(self, actor, domain)

    def apply_changes(
        self,
        added: Iterable[Rule] = (),
        removed: Iterable[Rule] = (),
        *,
        audit: Sequence[AuditDraft] = (),
    ) -> list[AuditRecord]:
        """Apply a batch of rule changes: store first (atomically, with its audit records), then
        the in-memory index. Unauthorized: administrative code goes through :meth:`admin`, and
        changes that must be decided against the current rules through :meth:`transact`."""
        add = list(dict.fromkeys(added))
        remove = list(dict.fromkeys(removed))
        issues = [PolicyIssue(f"{p}: {r!r}") for r in add if (p := R.check_rule(r)) is not None]
        if issues:
            raise PolicyError(issues)
        with self._write_lock:
            sealed = self._store.apply(add, remove, audit)
            self._apply_in_memory(add, remove)
            return sealed

    def transact(
        self,
        domain: str,
        plan: Callable[[DomainIndex | None], tuple[Sequence[Rule], Sequence[Rule], Sequence[AuditDraft]]],
    ) -> list[AuditRecord]:
        """Run ``plan`` on the domain's current snapshot under the write lock and apply what it
        returns ``(added, removed, audit)`` atomically. Decisions made inside ``plan`` therefore
        see exactly the rules the change applies to; raising from ``plan`` changes nothing."""
        with self._write_lock:
            added, removed, audit = plan(self._indexes.get(domain))
            return self.apply_changes(added, removed, audit=audit)

    def _apply_in_memory(self, added: Sequence[Rule], removed: Sequence[Rule]) -> None:
        by_domain: dict[str, tuple[list[Rule], list[Rule]]] = {}
        for rule in removed:
            by_domain.setdefault(R.domain_of(rule), ([], []))[1].append(rule)
        for rule in added:
            by_domain.setdefault(R.domain_of(rule), ([], []))[0].append(rule)
        for name, (add, remove) in by_domain.items():
            if self._only_domains is not None and name not in self._only_domains:
                continue
            state = self._states.get(name)
            if state is None:
                state = self._states[name] = DomainState(name)
            index = state.apply(add, remove)
            if not state.rules:
                del self._states[name]
                self._indexes.pop(name, None)
            elif name not in self._suspended:  # a suspended domain stays closed until reload()
                self._indexes[name] = index

    def now(self) -> float:
        """The authorizer's clock (seconds since the epoch)."""
        return self._clock()


def _text(value: object) -> str | None:
    return None if value is None else str(value)


def permission_label(permission: Permission) -> str:
    """``customer:read@team`` for a permission."""
    return f"{permission.type}:{permission.action}@{permission.scope}"
