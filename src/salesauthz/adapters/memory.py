"""The in-memory store: what ``Authorizer.from_directory`` and ``from_rules`` use."""

from __future__ import annotations

import threading
from collections.abc import Collection, Iterable, Sequence

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
from salesauthz.errors import PolicyError, PolicyIssue

__all__ = ["MemoryAdapter"]


class MemoryAdapter:
    """Rules, audit records and audit anchors held in this process (lost when it exits).

    Args:
        rules: the initial rules (validated).
        audit_key: the key audit links are sealed with (see
            :meth:`~salesauthz._audit_chain.AuditKeyring.of`; default: ``SALESAUTHZ_AUDIT_KEY``).
    """

    def __init__(self, rules: Iterable[Rule] = (), *, audit_key: AuditKeyOption = None) -> None:
        self._lock = threading.Lock()
        self._audit_key = audit_key
        self._keys: AuditKeyring | None = None  # resolved on first use: see audit_keys
        self._rules: dict[Rule, None] = {}  # insertion-ordered set
        self._audit: list[AuditRecord] = []
        self._anchors: dict[str, AuditAnchor] = {}
        problems = []
        for rule in rules:
            problem = check_rule(rule)
            if problem is not None:
                problems.append(PolicyIssue(f"{problem}: {rule!r}"))
            self._rules[rule] = None
        if problems:
            raise PolicyError(problems)

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
            if domains is None:
                return list(self._rules)
            wanted = set(domains)
            return [r for r in self._rules if domain_of(r) in wanted]

    def apply(
        self,
        added: Sequence[Rule],
        removed: Sequence[Rule],
        audit: Sequence[AuditDraft] = (),
    ) -> list[AuditRecord]:
        problems = [f"{p}: {r!r}" for r in added if (p := check_rule(r)) is not None]
        if problems:
            raise PolicyError([PolicyIssue(p) for p in problems])
        with self._lock:
            # Seal first: a trail changed behind the store's back raises here, before any change.
            sealed, anchors = self._seal(audit)
            for rule in removed:
                self._rules.pop(rule, None)
            for rule in added:
                self._rules[rule] = None
            self._audit.extend(sealed)
            self._anchors.update(anchors)
            return sealed

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
            return sorted({domain_of(r) for r in self._rules})

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
            return record

    def close(self) -> None:
        """Nothing to release."""
