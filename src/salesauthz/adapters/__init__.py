"""Storage adapters: where the Casbin rules (and the audit trail) live.

Every adapter implements the small :class:`~salesauthz.adapters.base.Adapter` protocol and passes
the shared suite in ``tests/adapters/suite.py``. The SQL adapters and the watchers import
SQLAlchemy, psycopg and redis lazily: ``import salesauthz`` stays light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .base import Adapter, mask_url
from .memory import MemoryAdapter

if TYPE_CHECKING:
    from salesauthz._audit_chain import AuditKeyOption

    from .casbin_compat import CasbinRuleAdapter
    from .sql import SQLAdapter

__all__ = ["Adapter", "CasbinRuleAdapter", "MemoryAdapter", "SQLAdapter", "mask_url", "open_adapter"]

_SQL_SCHEMES = ("sqlite:", "postgresql:", "postgres:", "postgresql+psycopg:")


def open_adapter(url: str, *, domains: list[str] | None = None, audit_key: AuditKeyOption = None,
                 ) -> Adapter:
    """Open the store at ``url``:

    * ``memory://`` — in this process only;
    * ``sqlite:///salesauthz.db`` — an embedded SQLite file (the default for one process);
    * ``postgresql://user:password@host/db`` — shared by several app processes (psycopg 3);
    * ``casbin+sqlite:///…`` / ``casbin+postgresql://…`` — a Casbin ``casbin_rule`` table, which
      another Casbin application may share (salesauthz's rows are namespaced, ``salesauthz:p`` …;
      see :mod:`~salesauthz.adapters.casbin_compat`).

    ``audit_key`` seals the audit trail (default: the ``SALESAUTHZ_AUDIT_KEY`` environment variable;
    see :meth:`~salesauthz._audit_chain.AuditKeyring.of`).
    """
    del domains  # filtering happens at load time; kept for adapters that pre-filter
    if url.startswith("memory:"):
        return MemoryAdapter(audit_key=audit_key)
    if url.startswith("casbin+"):
        from .casbin_compat import CasbinRuleAdapter

        return CasbinRuleAdapter(url[len("casbin+"):], audit_key=audit_key)
    if url.startswith(_SQL_SCHEMES):
        from .sql import SQLAdapter

        return SQLAdapter(url, audit_key=audit_key)
    from salesauthz.errors import StorageError

    raise StorageError(f"no adapter for store URL {mask_url(url)!r} (expected memory://, sqlite:///…, "
                       "postgresql://… or casbin+<url>)", url=mask_url(url))


def __getattr__(name: str) -> object:
    # The SQL adapters load SQLAlchemy: import them only when asked for.
    if name == "SQLAdapter":
        from .sql import SQLAdapter

        return SQLAdapter
    if name == "CasbinRuleAdapter":
        from .casbin_compat import CasbinRuleAdapter

        return CasbinRuleAdapter
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
