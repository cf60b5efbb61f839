"""The storage adapter protocol.

Small on purpose: load rules (all, or only some domains), apply a batch of additions and removals
atomically together with the audit records that describe it (and the anchor of each domain's
audit trail), list domains, read the audit trail. Rules have set semantics: adding a rule that
exists, or removing one that does not, is a no-op.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence
from typing import Protocol, runtime_checkable

from salesauthz._audit_chain import AuditDraft, AuditKeyring, AuditRecord, AuditSnapshot
from salesauthz._rules import Rule

__all__ = ["Adapter", "mask_url"]


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

    def apply(
        self,
        added: Sequence[Rule],
        removed: Sequence[Rule],
        audit: Sequence[AuditDraft] = (),
    ) -> list[AuditRecord]:
        """Apply removals then additions and append the audit records, all or nothing.

        The records are sealed with the current key of :attr:`audit_keys` (if any) and each
        domain's anchor is updated in the same transaction. Returns the sealed records. Raises
        (and changes nothing) :class:`~salesauthz.errors.StorageError` on a storage failure, and
        :class:`~salesauthz.errors.AuditVerificationError` /
        :class:`~salesauthz.errors.AuditKeyError` when a domain's stored trail no longer ends at
        its anchor or is sealed with a key this store was not given (see
        :func:`salesauthz._audit_chain.chain_end`).
        """
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


def mask_url(url: str) -> str:
    """``url`` with its password replaced by ``***``."""
    return _PASSWORD.sub(lambda m: m.group("head") + "***@", url)
