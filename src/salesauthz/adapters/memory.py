"""The in-memory store: what ``Authorizer.from_directory`` and ``from_rules`` use."""

from __future__ import annotations

import threading
from collections.abc import Collection, Iterable, Sequence

from salesauthz._rules import Rule, check_rule, domain_of
from salesauthz.audit import GENESIS, AuditDraft, AuditRecord, seal
from salesauthz.errors import PolicyError, PolicyIssue

__all__ = ["MemoryAdapter"]


class MemoryAdapter:
    """Rules and audit records held in this process (lost when it exits)."""

    def __init__(self, rules: Iterable[Rule] = ()) -> None:
        self._lock = threading.Lock()
        self._rules: dict[Rule, None] = {}  # insertion-ordered set
        self._audit: list[AuditRecord] = []
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
            sealed = self._seal(audit)
            for rule in removed:
                self._rules.pop(rule, None)
            for rule in added:
                self._rules[rule] = None
            self._audit.extend(sealed)
            return sealed

    def _seal(self, drafts: Sequence[AuditDraft]) -> list[AuditRecord]:
        heads: dict[str, tuple[int, str]] = {}
        for record in self._audit:
            heads[record.domain] = (record.sequence, record.hash)
        sealed = []
        for draft in drafts:
            sequence, previous = heads.get(draft.domain, (0, GENESIS))
            record = seal(draft, sequence + 1, previous)
            heads[draft.domain] = (record.sequence, record.hash)
            sealed.append(record)
        return sealed

    def list_domains(self) -> list[str]:
        with self._lock:
            return sorted({domain_of(r) for r in self._rules})

    def load_audit(self, domain: str | None = None) -> list[AuditRecord]:
        with self._lock:
            return [r for r in self._audit if domain is None or r.domain == domain]

    def close(self) -> None:
        """Nothing to release."""
