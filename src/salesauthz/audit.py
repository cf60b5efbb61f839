"""The append-only, tamper-evident audit trail of administrative changes.

Every administrative operation (and, optionally, every denied attempt) becomes one
:class:`AuditRecord`. Records are chained per domain — each record's link covers its content and
the link of the record before it: a SHA-256 hash, or an HMAC-SHA256 when the deployment configures
a key (``SALESAUTHZ_AUDIT_KEY``). The store seals the records, and keeps each domain's **anchor**
(record count and last link), in the same transaction as the rule change they describe.
:meth:`AuditTrail.verify` checks the chain against the anchor and, given one, against a
**checkpoint** an auditor kept outside the database. ``docs/delegation.md`` says exactly which
changes each of these detects.

The record types live in the leaf module :mod:`salesauthz._audit_chain` (the stores import it); they
are re-exported here, where they always were.
"""

from __future__ import annotations

import time as _time
from collections.abc import Callable

from ._audit_chain import (
    GENESIS,
    KEY_ENV,
    RETIRED_KEYS_ENV,
    AuditAnchor,
    AuditCheckpoint,
    AuditDraft,
    AuditKey,
    AuditKeyring,
    AuditRecord,
    AuditSnapshot,
    anchor_problem,
    find_break,
    seal,
    trail_problem,
)
from .adapters.base import Adapter
from .errors import AuditError, AuditKeyError, AuditVerificationError

__all__ = [
    "GENESIS",
    "KEY_ENV",
    "RETIRED_KEYS_ENV",
    "AuditAnchor",
    "AuditCheckpoint",
    "AuditDraft",
    "AuditError",
    "AuditKey",
    "AuditKeyError",
    "AuditKeyring",
    "AuditRecord",
    "AuditSnapshot",
    "AuditTrail",
    "AuditVerificationError",
    "find_break",
    "seal",
]


class AuditTrail:
    """The audit trail kept by a store: query it, verify it, checkpoint it.

    ``keys`` verify keyed records, anchors and checkpoints; by default the store's own keys (its
    ``audit_key`` option, else ``SALESAUTHZ_AUDIT_KEY``). An auditor may pass other keys.
    """

    def __init__(self, store: Adapter, *, keys: AuditKeyring | None = None) -> None:
        self._store = store
        self._keys = keys

    @property
    def keys(self) -> AuditKeyring:
        """The keys this trail verifies with."""
        return self._keys if self._keys is not None else self._store.audit_keys

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

    # -- verification ----------------------------------------------------------------------

    def problems(self, domain: str | None = None, *,
                 checkpoint: AuditCheckpoint | str | None = None) -> list[AuditVerificationError]:
        """The first problem of each broken domain (of ``domain``, or of every domain), from one
        consistent read of the records and anchors; empty when the trail is intact.

        With ``checkpoint`` (an :class:`AuditCheckpoint` or its JSON), its domain must also still
        extend it. Raises :class:`~salesauthz.errors.AuditError` for a malformed checkpoint or one
        of another domain than ``domain``.
        """
        mark = _as_checkpoint(checkpoint)
        if mark is not None and domain is not None and mark.domain != domain:
            raise AuditError(f"the checkpoint is of domain {mark.domain!r}, not {domain!r}")
        try:
            snapshot = self._store.read_audit(domain)
        except AuditVerificationError as exc:  # a stored row that is no record at all
            return [exc]
        names = [domain] if domain is not None else snapshot.domains()
        if mark is not None and mark.domain not in names:
            names.append(mark.domain)  # a domain whose whole trail is gone
        keys = self.keys
        found = []
        for name in names:
            problem = trail_problem(name, snapshot.records_of(name), snapshot.anchors.get(name), keys,
                                    mark if mark is not None and mark.domain == name else None)
            if problem is not None:
                found.append(problem)
        return found

    def verify(self, domain: str | None = None, *, checkpoint: AuditCheckpoint | str | None = None,
               raise_on_failure: bool = False) -> bool:
        """Whether the trail (of ``domain``, or of every domain) is intact: each chain numbered from
        1 with every link matching its content and the link before it, ending where its anchor
        says, keyed records, anchors and checkpoint under a configured key — and, with
        ``checkpoint``, the trail still extending it. With ``raise_on_failure`` the first problem is
        raised as :class:`~salesauthz.errors.AuditVerificationError` instead of returning ``False``.
        """
        found = self.problems(domain, checkpoint=checkpoint)
        if found and raise_on_failure:
            raise found[0]
        return not found

    def checkpoint(self, domain: str) -> AuditCheckpoint:
        """The domain's trail as it now stands (count, head link, time; signed with the current key
        if one is configured), to keep outside the database and pass to :meth:`verify` later.

        The trail is verified first: a broken trail raises
        :class:`~salesauthz.errors.AuditVerificationError` and gives no checkpoint.
        """
        snapshot = self._store.read_audit(domain)
        records = snapshot.records_of(domain)
        keys = self.keys
        problem = trail_problem(domain, records, snapshot.anchors.get(domain), keys)
        if problem is not None:
            raise problem
        return AuditCheckpoint.make(domain, len(records), records[-1].hash if records else GENESIS,
                                    keys.current)

    def reanchor(self, domain: str, *, actor: str, reason: str, at: float | None = None) -> AuditRecord:
        """Accept the domain's trail as it now ends: append an ``audit_reanchor`` record (naming
        ``actor``, ``reason`` and what the old anchor said) chained to the last stored record, and
        anchor the trail there — sealed with the store's current key.

        For after a detected change was investigated (a store refuses to extend a trail that no
        longer ends at its anchor), and once after configuring a key, to seal anchors written
        before it. Links broken *inside* the trail stay broken: :meth:`verify` still reports them.
        """
        snapshot = self._store.read_audit(domain)
        records = snapshot.records_of(domain)
        anchor = snapshot.anchors.get(domain)
        problem = anchor_problem(domain, records, anchor, self._store.audit_keys)
        was = "no anchor"
        if anchor is not None:
            was = f"anchor at record {anchor.count}" + (f", key {anchor.key_id}" if anchor.key_id else "")
        state = problem.problem if problem is not None else "it matched the trail"
        draft = AuditDraft(_time.time() if at is None else at, actor, domain, "audit_reanchor", domain,
                           detail=f"{reason} (was: {was}, {len(records)} record(s); {state})")
        return self._store.reanchor(draft)


def _as_checkpoint(checkpoint: AuditCheckpoint | str | None) -> AuditCheckpoint | None:
    if checkpoint is None or isinstance(checkpoint, AuditCheckpoint):
        return checkpoint
    return AuditCheckpoint.from_json(checkpoint)
