"""Storage adapters: where the Casbin rules (and the audit trail) live.

Every adapter implements the small :class:`~salesauthz.adapters.base.Adapter` protocol and passes
the shared suite in ``tests/adapters/suite.py``.
"""

from __future__ import annotations

from .base import Adapter, mask_url
from .memory import MemoryAdapter

__all__ = ["Adapter", "MemoryAdapter", "mask_url", "open_adapter"]


def open_adapter(url: str, *, domains: list[str] | None = None) -> Adapter:
    """Open the store at ``url``: ``memory://`` for an in-process store; other schemes are
    provided by the SQL adapter (``sqlite:///file.db``, ``postgresql://…``)."""
    del domains  # filtering happens at load time; kept for adapters that pre-filter
    if url.startswith("memory:"):
        return MemoryAdapter()
    from salesauthz.errors import StorageError

    raise StorageError(f"no adapter for store URL {mask_url(url)!r}", url=mask_url(url))
