"""The rules this process holds, one state per domain, and how they follow the store.

:class:`Replica` is the part of :class:`~salesauthz.Authorizer` that loads domains, commits
changes (store first, compare-and-set on the domain's version for administrative decisions),
catches up with changes other processes made, closes domains that cannot be trusted and
publishes snapshots for the hot path. It holds no decision logic: that is the engine's.
"""

from __future__ import annotations

import dataclasses
import logging
import random
import threading
import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from typing import Self

from . import _engine as engine
from . import _rules as R
from ._rules import Rule
from .adapters.base import Adapter, Change, Loaded
from .audit import AuditDraft, AuditRecord
from .errors import ConflictError, PolicyError, PolicyIssue, StorageError

__all__ = ["Plan", "Replica"]

logger = logging.getLogger("salesauthz")
Plan = Callable[[engine.Snapshot | None], tuple[Sequence[Rule], Sequence[Rule], Sequence[AuditDraft]]]
"""Decides a change on a snapshot: ``(added, removed, audit)``."""


class Replica:
    """The domains this process holds and their synchronisation with the store (a base of
    :class:`~salesauthz.Authorizer`, which sets every attribute below in its constructor)."""

    conflict_retries = 3
    """How many times an administrative operation is decided again after the store moved on
    under it, before :class:`~salesauthz.errors.ConflictError`."""

    _store: Adapter
    _only_domains: frozenset[str] | None
    _write_lock: threading.RLock
    _cache: engine.EffectiveCache
    _states: dict[str, engine.DomainState]
    _snapshots: dict[str, engine.Snapshot]
    _closers: list[Callable[[], None]]
    _suspended: set[str]
    _versions: dict[str, int]
    _dirty: set[str]
    _quarantined: dict[str, PolicyError]
    _clock: Callable[[], float]

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
        states = engine.load_domains({n: grouped.get(n, []) for n in healthy}, healthy,
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

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- committing changes ------------------------------------------------------------------

    def apply_changes(self, added: Iterable[Rule] = (), removed: Iterable[Rule] = (), *,
                      audit: Sequence[AuditDraft] = (),
                      actor: str = "system:apply_changes") -> list[AuditRecord]:
        """Apply a batch of raw rule changes — the low-level, **unauthorized** write path
        (administrative code goes through :meth:`admin`): store first, atomically with its audit
        records, then the in-memory snapshots.

        The change is validated first: malformed rules and doubled single-valued facts (by the
        store), and for every domain this process holds, the loader's reference and cycle rules
        on what the change touches (unknown departments, roles, accounts, types and actions,
        department, role-inheritance, parent and reporting cycles, deletions leaving something
        dangling: ``SA1xx`` codes as the loader's). A refused change raises
        :class:`~salesauthz.errors.PolicyError` and writes nothing.

        It is audited: with ``audit`` drafts, those; without, one record per domain it touches,
        naming ``actor`` (a non-human one is named ``system:<what>``, e.g. ``system:import``)."""
        if not isinstance(actor, str) or not actor.strip():
            raise ValueError(f"apply_changes needs an actor to audit the change under, not {actor!r}")
        add, remove = list(dict.fromkeys(added)), list(dict.fromkeys(removed))
        with self._write_lock:
            now = self._clock()
            drafts = list(audit) or [
                AuditDraft(now, actor, domain, "apply_changes", domain, tuple(plus), tuple(minus),
                           False, "applied", f"{len(plus)} added, {len(minus)} removed")
                for domain, (plus, minus) in sorted(_by_domain(add, remove).items()) if domain]
            return self._commit(add, remove, drafts, None)

    def _commit(self, added: Iterable[Rule], removed: Iterable[Rule], audit: Sequence[AuditDraft],
                expected: Mapping[str, int] | None) -> list[AuditRecord]:
        """Store first (atomically, with its audit records; compare-and-set on ``expected``),
        then the rules held here. Called under the write lock."""
        add, remove = list(dict.fromkeys(added)), list(dict.fromkeys(removed))
        issues = [PolicyIssue(f"{p}: {r!r}") for r in add if (p := R.check_rule(r)) is not None]
        if issues:
            raise PolicyError(issues)
        self._check_integrity(add, remove)
        committed = self._store.commit(add, remove, audit, expected=expected)
        by_domain = _by_domain(add, remove)
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

    def _check_integrity(self, add: Sequence[Rule], remove: Sequence[Rule]) -> None:
        """Refuse a change that would leave a domain this process holds breaking the loader's
        reference and cycle rules (:func:`salesauthz._integrity.change_issues`: only what the
        change touches is looked at). A domain held back (``domains=``) or closed on load is not
        judged here: repairing a closed domain must stay possible; the store still refuses
        malformed rules and doubled single-valued facts."""
        from ._integrity import change_issues

        by_domain: dict[str, tuple[list[Rule], list[Rule]]] = {}
        for rule in add:
            by_domain.setdefault(R.domain_of(rule), ([], []))[0].append(rule)
        for rule in remove:
            by_domain.setdefault(R.domain_of(rule), ([], []))[1].append(rule)
        issues: list[PolicyIssue] = []
        for name, (domain_added, domain_removed) in sorted(by_domain.items()):
            if (self._only_domains is not None and name not in self._only_domains) \
                    or name in self._quarantined:
                continue
            state = self._states.get(name)
            snapshot = state.snapshot if state is not None else None
            held: Collection[Rule] = state.rules if state is not None else frozenset()
            issues.extend(change_issues(snapshot, held, name, domain_added, domain_removed))
        if issues:
            raise PolicyError([dataclasses.replace(issue, file=self._store.url) for issue in issues])

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

    def _transact(self, domain: str, plan: Plan) -> list[AuditRecord]:
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


def _by_domain(added: Iterable[Rule], removed: Iterable[Rule]) -> dict[str, tuple[list[Rule], list[Rule]]]:
    """``domain -> (added, removed)``; a rule too malformed to name its domain goes under ``""``
    (the store refuses it)."""
    grouped: dict[str, tuple[list[Rule], list[Rule]]] = {}
    for index, rules in ((0, added), (1, removed)):
        for rule in rules:
            try:
                name = R.domain_of(rule)
            except (IndexError, KeyError, TypeError):
                name = ""
            grouped.setdefault(name if isinstance(name, str) else "", ([], []))[index].append(rule)
    return grouped
