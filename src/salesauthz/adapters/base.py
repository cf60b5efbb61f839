"""The storage adapter protocol.

Small on purpose: load rules (all, or only some domains) with the version of each domain they
are at, commit a batch of additions and removals atomically together with the audit records that
describe it (and the anchor of each domain's audit trail) — optionally only if the domains are
still at the versions the change was decided on —, read the change log, list domains, read the
audit trail. Rules have set semantics: adding a rule that exists, or removing one that does not,
is a no-op.

**Versions.** Every committed change bumps the version of each domain it touches by exactly one,
in the same transaction (a domain never changed is at version 0). A store may bump a version
without a change-log entry (a write made outside salesauthz); a follower then reloads the domain.

**Invariants.** Every store refuses (``PolicyError``, nothing written) a change that would leave
an account with two statuses, two departments or two parent accounts
(:func:`salesauthz.models.validate.stored_rule_issues`), checked inside the write transaction so
that two concurrent writers cannot both pass it.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from salesauthz._audit_chain import AuditDraft, AuditKeyring, AuditRecord, AuditSnapshot
from salesauthz._rules import Rule

__all__ = ["Adapter", "AppliesByCommit", "Change", "ChangeFeed", "Commit", "Loaded", "mask_url"]

DEFAULT_LOG_RETENTION = 10_000
"""Change-log entries a store keeps per domain (older ones are pruned as new ones are written):
a follower further behind reloads the domain."""
LOG_MAX_RULES = 10_000
"""A change of more rules than this (a bulk import) is logged without its rules: followers reload
the domain, which costs them less than applying it rule by rule."""


@dataclass(frozen=True, slots=True)
class Change:
    """One committed change of one domain, as the store's change log keeps it: the domain went
    from ``version - 1`` to ``version`` by removing ``removed`` and then adding ``added``
    (``None``: the change was too large to log — reload the domain)."""

    version: int
    added: tuple[Rule, ...] | None = ()
    removed: tuple[Rule, ...] | None = ()


@dataclass(frozen=True, slots=True)
class ChangeFeed:
    """What a domain's change log holds after some version: the domain's current ``version``
    and every change that led there, in order. ``complete`` is false when the log cannot bring
    a follower from that version to this one (entries pruned, a version bumped by a write made
    outside salesauthz, a change too large to log): the follower must reload the domain."""

    version: int
    changes: tuple[Change, ...] = ()
    complete: bool = True


@dataclass(frozen=True, slots=True)
class Commit:
    """A committed change: the sealed audit records, and each touched domain's new version."""

    records: list[AuditRecord] = field(default_factory=list)
    versions: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Loaded:
    """Rules and the version of each domain they reflect, read in one consistent snapshot
    (domains never changed are absent from ``versions``: version 0)."""

    rules: list[Rule]
    versions: dict[str, int]


@runtime_checkable
class Adapter(Protocol):
    """What salesauthz needs from a rule store."""

    @property
    def url(self) -> str:
        """Where the store is, with any password masked (safe to log)."""
        ...

    def load(self, domains: Collection[str] | None = None) -> list[Rule]:
        """Every rule, or only those of the given domains."""
        ...

    def load_versioned(self, domains: Collection[str] | None = None) -> Loaded:
        """Every rule (or those of the given domains) and the versions they are at, read in one
        consistent snapshot: a change committed meanwhile is in both or in neither."""
        ...

    def commit(
        self,
        added: Sequence[Rule],
        removed: Sequence[Rule],
        audit: Sequence[AuditDraft] = (),
        *,
        expected: Mapping[str, int] | None = None,
    ) -> Commit:
        """Apply removals then additions and append the audit records, all or nothing; bump the
        version of every domain touched (by the rules or the records) and log the change.

        With ``expected`` (``{domain: version}``), commit only if each of those domains is still
        at that version when the transaction holds its lock (compare-and-set in the same
        transaction as the bump): otherwise raise :class:`~salesauthz.errors.ConflictError`.

        The records are sealed with the current key of :attr:`audit_keys` (if any) and each
        domain's anchor is updated in the same transaction. Raises (and changes nothing)
        :class:`~salesauthz.errors.PolicyError` for a malformed rule or a change that would
        break an invariant (see the module documentation),
        :class:`~salesauthz.errors.StorageError` on a storage failure, and
        :class:`~salesauthz.errors.AuditVerificationError` /
        :class:`~salesauthz.errors.AuditKeyError` when a domain's stored trail no longer ends at
        its anchor or is sealed with a key this store was not given (see
        :func:`salesauthz._audit_chain.chain_end`).
        """
        ...

    def apply(
        self,
        added: Sequence[Rule],
        removed: Sequence[Rule],
        audit: Sequence[AuditDraft] = (),
        *,
        expected: Mapping[str, int] | None = None,
    ) -> list[AuditRecord]:
        """:meth:`commit`, returning only the sealed records."""
        ...

    def changes(self, domain: str, after: int) -> ChangeFeed:
        """The domain's change log after version ``after`` (see :class:`ChangeFeed`)."""
        ...

    @property
    def audit_keys(self) -> AuditKeyring:
        """The keys the store seals (current) and accepts (current and retired) audit links with."""
        ...

    def list_domains(self) -> list[str]:
        """The domains that have at least one rule."""
        ...

    def load_audit(self, domain: str | None = None) -> list[AuditRecord]:
        """The audit records (of one domain, or all), in order."""
        ...

    def read_audit(self, domain: str | None = None) -> AuditSnapshot:
        """The audit records and the anchors (of one domain, or all), read in one consistent
        snapshot — a concurrent append is seen in both or in neither."""
        ...

    def reanchor(self, draft: AuditDraft) -> AuditRecord:
        """Append ``draft`` chained to the last *stored* record of its domain, whatever its anchor
        says, and anchor the trail at it (one transaction). The repair behind
        :meth:`salesauthz.audit.AuditTrail.reanchor`."""
        ...

    def close(self) -> None:
        """Release connections; the adapter is unusable afterwards."""
        ...


_PASSWORD = re.compile(r"(?P<head>[a-z][a-z0-9+.-]*://[^:/@]*:)(?P<password>[^@/]*)@", re.I)


class AppliesByCommit:
    """:meth:`Adapter.apply` written once, in terms of the store's own :meth:`Adapter.commit`
    (the bundled stores inherit it; a store of your own may too)."""

    def apply(
        self: Adapter,
        added: Sequence[Rule],
        removed: Sequence[Rule],
        audit: Sequence[AuditDraft] = (),
        *,
        expected: Mapping[str, int] | None = None,
    ) -> list[AuditRecord]:
        """:meth:`Adapter.commit`, returning only the sealed records."""
        return self.commit(added, removed, audit, expected=expected).records


def mask_url(url: str) -> str:
    """``url`` with its password replaced by ``***``."""
    return _PASSWORD.sub(lambda m: m.group("head") + "***@", url)
