"""The in-memory store: what ``Authorizer.from_directory`` and ``from_rules`` use."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Collection, Iterable, Mapping, Sequence

from salesauthz._audit_chain import (
    AuditAnchor,
    AuditDraft,
    AuditKeyOption,
    AuditKeyring,
    AuditRecord,
    AuditSnapshot,
    chain_end,
    reanchor_end,
    seal,
)
from salesauthz._rules import Rule, check_rule, domain_of
from salesauthz.errors import ConflictError, PolicyError, PolicyIssue

from .base import (
    DEFAULT_LOG_RETENTION,
    LOG_MAX_RULES,
    AppliesByCommit,
    Change,
    ChangeFeed,
    Commit,
    Loaded,
)

__all__ = ["MemoryAdapter"]

FactKey = tuple[str, str, str]


class MemoryAdapter(AppliesByCommit):
    """Rules, audit records and audit anchors held in this process (lost when it exits).

    Args:
        rules: the initial rules (validated).
        audit_key: the key audit links are sealed with (see
            :meth:`~salesauthz._audit_chain.AuditKeyring.of`; default: ``SALESAUTHZ_AUDIT_KEY``).
    """

    def __init__(self, rules: Iterable[Rule] = (), *, audit_key: AuditKeyOption = None,
                 log_retention: int = DEFAULT_LOG_RETENTION) -> None:
        from salesauthz.models.validate import single_valued_key

        self._lock = threading.Lock()
        self._audit_key = audit_key
        self._keys: AuditKeyring | None = None  # resolved on first use: see audit_keys
        # domain -> its rules (insertion-ordered sets): loading one tenant reads only its rules
        self._rules: dict[str, dict[Rule, None]] = {}
        self._audit: list[AuditRecord] = []
        self._anchors: dict[str, AuditAnchor] = {}
        self._versions: dict[str, int] = {}
        self._log: dict[str, deque[Change]] = {}
        self._retention = log_retention
        self._facts: dict[FactKey, set[Rule]] = {}  # the rules stating each single-valued fact
        self._fact_key = single_valued_key
        problems = []
        for rule in rules:
            problem = check_rule(rule)
            if problem is not None:
                problems.append(PolicyIssue(f"{problem}: {rule!r}"))
                continue
            self._rules.setdefault(domain_of(rule), {})[rule] = None
        if problems:
            raise PolicyError(problems)
        for held in self._rules.values():  # seeded rules are the caller's to validate
            for rule in held:
                key = self._fact_key(rule)
                if key is not None:
                    self._facts.setdefault(key, set()).add(rule)

    @property
    def url(self) -> str:
        return "memory://"

    @property
    def audit_keys(self) -> AuditKeyring:
        """Resolved on first use, so a malformed ``SALESAUTHZ_AUDIT_KEY`` fails the first audited
        write or verification (:class:`~salesauthz.errors.AuditKeyError`, nothing written), not
        every reader of rules."""
        if self._keys is None:
            self._keys = AuditKeyring.of(self._audit_key)
        return self._keys

    def load(self, domains: Collection[str] | None = None) -> list[Rule]:
        with self._lock:
            return self._load(domains)

    def _load(self, domains: Collection[str] | None) -> list[Rule]:
        names = self._rules if domains is None else dict.fromkeys(domains)
        return [rule for name in names for rule in self._rules.get(name, ())]

    def load_versioned(self, domains: Collection[str] | None = None) -> Loaded:
        with self._lock:
            wanted = None if domains is None else set(domains)
            rules = self._load(domains)
            versions = {d: v for d, v in self._versions.items() if wanted is None or d in wanted}
            return Loaded(rules, versions)

    def commit(
        self,
        added: Sequence[Rule],
        removed: Sequence[Rule],
        audit: Sequence[AuditDraft] = (),
        *,
        expected: Mapping[str, int] | None = None,
    ) -> Commit:
        add, remove = list(dict.fromkeys(added)), list(dict.fromkeys(removed))
        problems = [f"{p}: {r!r}" for r in add if (p := check_rule(r)) is not None]
        if problems:
            raise PolicyError([PolicyIssue(p) for p in problems])
        touched = sorted({domain_of(r) for r in (*add, *remove)} | {d.domain for d in audit})
        with self._lock:
            for domain, version in (expected or {}).items():
                actual = self._versions.get(domain, 0)
                if actual != version:
                    raise ConflictError(domain, expected=version, actual=actual, url=self.url)
            self._check_facts(add, remove)
            # Seal first: a trail changed behind the store's back raises here, before any change.
            sealed, anchors = self._seal(audit)
            for rule in remove:
                held = self._rules.get(domain_of(rule))
                if held is not None and rule in held:
                    del held[rule]
                    if not held:
                        del self._rules[domain_of(rule)]
                    self._index_fact(rule, present=False)
            for rule in add:
                held = self._rules.setdefault(domain_of(rule), {})
                if rule not in held:
                    held[rule] = None
                    self._index_fact(rule, present=True)
            self._audit.extend(sealed)
            self._anchors.update(anchors)
            return Commit(sealed, self._bump(touched, add, remove))

    def _bump(self, domains: Sequence[str], add: Sequence[Rule], remove: Sequence[Rule]) -> dict[str, int]:
        """Bump each domain's version and log its part of the change (under the lock)."""
        versions = {}
        for domain in domains:
            versions[domain] = self._versions[domain] = self._versions.get(domain, 0) + 1
            domain_added = tuple(r for r in add if domain_of(r) == domain)
            domain_removed = tuple(r for r in remove if domain_of(r) == domain)
            small = len(domain_added) + len(domain_removed) <= LOG_MAX_RULES
            log = self._log.setdefault(domain, deque(maxlen=self._retention))
            log.append(Change(versions[domain], domain_added if small else None,
                              domain_removed if small else None))
        return versions

    def _index_fact(self, rule: Rule, *, present: bool) -> None:
        key = self._fact_key(rule)
        if key is None:
            return
        if present:
            self._facts.setdefault(key, set()).add(rule)
        else:
            held = self._facts.get(key)
            if held is not None:
                held.discard(rule)
                if not held:
                    del self._facts[key]

    def _check_facts(self, add: Sequence[Rule], remove: Sequence[Rule]) -> None:
        """Refuse a change that would leave a single-valued fact stated twice (under the lock)."""
        from salesauthz.models.validate import stored_rule_issues

        keys = {key for rule in add if (key := self._fact_key(rule)) is not None}
        if not keys:
            return
        removing = set(remove)
        after = [r for key in keys for r in self._facts.get(key, ()) if r not in removing]
        after += [r for r in add if self._fact_key(r) in keys]
        issues = stored_rule_issues(after, self.url)
        if issues:
            raise PolicyError(issues)

    def changes(self, domain: str, after: int) -> ChangeFeed:
        with self._lock:
            version = self._versions.get(domain, 0)
            entries = tuple(c for c in self._log.get(domain, ()) if c.version > after)
        complete = (after <= version and [c.version for c in entries] == list(range(after + 1, version + 1))
                    and all(c.added is not None and c.removed is not None for c in entries))
        return ChangeFeed(version, entries, complete)

    def _last(self, domain: str) -> AuditRecord | None:
        return next((r for r in reversed(self._audit) if r.domain == domain), None)

    def _seal(self, drafts: Sequence[AuditDraft]) -> tuple[list[AuditRecord], dict[str, AuditAnchor]]:
        heads: dict[str, tuple[int, str]] = {}
        sealed: list[AuditRecord] = []
        if not drafts:  # a change of rules only: no key needed
            return sealed, {}
        keys = self.audit_keys
        key = keys.current
        for draft in drafts:
            if draft.domain not in heads:
                heads[draft.domain] = chain_end(draft.domain, self._anchors.get(draft.domain),
                                                self._last(draft.domain), keys)
            sequence, previous = heads[draft.domain]
            record = seal(draft, sequence + 1, previous, key)
            heads[draft.domain] = (record.sequence, record.hash)
            sealed.append(record)
        anchors = {domain: AuditAnchor.sealed(domain, count, head, key)
                   for domain, (count, head) in heads.items()}
        return sealed, anchors

    def list_domains(self) -> list[str]:
        with self._lock:
            return sorted(self._rules)

    def load_audit(self, domain: str | None = None) -> list[AuditRecord]:
        with self._lock:
            return [r for r in self._audit if domain is None or r.domain == domain]

    def read_audit(self, domain: str | None = None) -> AuditSnapshot:
        with self._lock:
            records = tuple(r for r in self._audit if domain is None or r.domain == domain)
            anchors = {d: a for d, a in self._anchors.items() if domain is None or d == domain}
            return AuditSnapshot(records, anchors)

    def reanchor(self, draft: AuditDraft) -> AuditRecord:
        with self._lock:
            sequence, previous = reanchor_end(draft.domain, self._last(draft.domain), self.audit_keys)
            key = self.audit_keys.current
            record = seal(draft, sequence + 1, previous, key)
            self._audit.append(record)
            self._anchors[draft.domain] = AuditAnchor.sealed(draft.domain, record.sequence, record.hash, key)
            self._bump([draft.domain], (), ())
            return record

    def close(self) -> None:
        """Nothing to release."""
