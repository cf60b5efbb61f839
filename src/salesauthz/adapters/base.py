"""The storage adapter protocol.

Small on purpose: load rules (all, or only some domains), apply a batch of additions and removals
atomically together with the audit records that describe it, list domains, read the audit trail.
Rules have set semantics: adding a rule that exists, or removing one that does not, is a no-op.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence
from typing import Protocol, runtime_checkable

from salesauthz._rules import Rule
from salesauthz.audit import AuditDraft, AuditRecord

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

        Returns the sealed audit records. Raises :class:`~salesauthz.errors.StorageError` (and
        changes nothing) on failure.
        """
        ...

    def list_domains(self) -> list[str]:
        """The domains that have at least one rule."""
        ...

    def load_audit(self, domain: str | None = None) -> list[AuditRecord]:
        """The audit records (of one domain, or all), in order."""
        ...

    def close(self) -> None:
        """Release connections; the adapter is unusable afterwards."""
        ...


_PASSWORD = re.compile(r"(?P<head>[a-z][a-z0-9+.-]*://[^:/@]*:)(?P<password>[^@/]*)@", re.I)


def mask_url(url: str) -> str:
    """``url`` with its password replaced by ``***``."""
    return _PASSWORD.sub(lambda m: m.group("head") + "***@", url)
