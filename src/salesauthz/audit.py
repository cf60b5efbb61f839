"""The append-only, hash-chained audit trail of administrative changes.

Every administrative operation (and, optionally, every denied attempt) becomes one
:class:`AuditRecord`. Records are chained per domain: each carries the SHA-256 of the previous
record of its domain, so :meth:`AuditTrail.verify` detects any edited, removed, inserted or
reordered record. The store seals records (numbers and chains them) inside the same transaction
as the rule change they describe — see :func:`seal`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from ._rules import Rule

if TYPE_CHECKING:
    from .adapters.base import Adapter

__all__ = ["AuditDraft", "AuditRecord", "AuditTrail", "AuditVerificationError", "seal"]

GENESIS = "0" * 64
"""The ``previous_hash`` of the first record of a domain."""


@dataclass(frozen=True, slots=True)
class AuditDraft:
    """An audit record before the store numbers and chains it."""

    time: float
    actor: str
    domain: str
    operation: str
    target: str
    added: tuple[Rule, ...] = ()
    removed: tuple[Rule, ...] = ()
    escalated: bool = False
    outcome: str = "applied"  # or "denied"
    detail: str = ""


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """One sealed audit record. ``hash`` covers every other field, ``previous_hash`` included."""

    sequence: int
    time: float
    actor: str
    domain: str
    operation: str
    target: str
    added: tuple[Rule, ...]
    removed: tuple[Rule, ...]
    escalated: bool
    outcome: str
    detail: str
    previous_hash: str
    hash: str = field(default="")

    def compute_hash(self) -> str:
        body = asdict(self)
        body.pop("hash")
        return hashlib.sha256(_canonical(body).encode("utf-8")).hexdigest()

    def to_json(self) -> str:
        return _canonical(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> AuditRecord:
        data = json.loads(text)
        data["added"] = tuple(tuple(r) for r in data["added"])
        data["removed"] = tuple(tuple(r) for r in data["removed"])
        return cls(**data)


def _canonical(data: dict[str, Any]) -> str:
    return json.dumps(data, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def seal(draft: AuditDraft, sequence: int, previous_hash: str) -> AuditRecord:
    """Number and chain a draft (called by stores inside their write transaction)."""
    record = AuditRecord(sequence, draft.time, draft.actor, draft.domain, draft.operation,
                         draft.target, tuple(draft.added), tuple(draft.removed), draft.escalated,
                         draft.outcome, draft.detail, previous_hash)
    return AuditRecord(**{**asdict(record), "added": record.added, "removed": record.removed,
                          "hash": record.compute_hash()})


class AuditVerificationError(Exception):
    """Raised by :meth:`AuditTrail.verify` with ``raise_on_failure``; names the broken record."""

    def __init__(self, domain: str, sequence: int, problem: str) -> None:
        self.domain = domain
        self.sequence = sequence
        self.problem = problem
        super().__init__(f"audit trail of domain {domain!r} is broken at record {sequence}: {problem}")


class AuditTrail:
    """Read access to the audit trail kept by an authorizer's store."""

    def __init__(self, store: Adapter) -> None:
        self._store = store

    def records(self, domain: str | None = None) -> list[AuditRecord]:
        """All records (of one domain, or every domain), in order."""
        return self._store.load_audit(domain)

    def query(
        self,
        *,
        domain: str | None = None,
        actor: str | None = None,
        target: str | None = None,
        operation: str | None = None,
        since: float | None = None,
        until: float | None = None,
        escalated: bool | None = None,
    ) -> list[AuditRecord]:
        """Records matching every given criterion (time range is ``since <= time < until``)."""
        tests: list[Callable[[AuditRecord], bool]] = []
        if actor is not None:
            tests.append(lambda r: r.actor == actor)
        if target is not None:
            tests.append(lambda r: r.target == target)
        if operation is not None:
            tests.append(lambda r: r.operation == operation)
        if since is not None:
            tests.append(lambda r: r.time >= since)
        if until is not None:
            tests.append(lambda r: r.time < until)
        if escalated is not None:
            tests.append(lambda r: r.escalated == escalated)
        return [r for r in self.records(domain) if all(t(r) for t in tests)]

    def verify(self, domain: str | None = None, *, raise_on_failure: bool = False) -> bool:
        """Whether every domain's chain is intact: numbers consecutive from 1, each record's hash
        matching its content and each ``previous_hash`` the hash of the record before."""
        problem = find_break(self.records(domain))
        if problem is None:
            return True
        if raise_on_failure:
            raise AuditVerificationError(*problem)
        return False


def find_break(records: Iterable[AuditRecord]) -> tuple[str, int, str] | None:
    """The first ``(domain, sequence, problem)`` where the chains break, or ``None``."""
    last: dict[str, AuditRecord] = {}
    for record in records:
        before = last.get(record.domain)
        expected_sequence = 1 if before is None else before.sequence + 1
        expected_previous = GENESIS if before is None else before.hash
        if record.sequence != expected_sequence:
            return record.domain, record.sequence, f"expected record {expected_sequence} here"
        if record.previous_hash != expected_previous:
            return record.domain, record.sequence, "does not chain to the record before it"
        if record.hash != record.compute_hash():
            return record.domain, record.sequence, "its content does not match its hash"
        last[record.domain] = record
    return None

