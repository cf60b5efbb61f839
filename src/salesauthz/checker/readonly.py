"""Opening a store only to read it (``explain``/``who-can``/``what-can``/``review --url``,
``diff`` of a store, ``audit verify``): a read-only command never creates a database file, and
never creates tables, indexes or triggers (no DDL) — a mistyped ``--url`` must not leave an empty
database behind, and a reader must not need the rights to change a schema."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from salesauthz.adapters.base import Adapter

__all__ = ["is_store", "open_read_only"]


def is_store(spec: str) -> bool:
    """Whether a command's source names a store (``sqlite:///…``, ``postgresql://…``,
    ``casbin+…``, ``memory://``) rather than a policy directory (or a git revision)."""
    return "://" in spec or spec.startswith(
        ("sqlite:", "memory:", "postgresql:", "postgres:", "casbin+"))


def open_read_only(url: str) -> Adapter:
    """The store at ``url``, opened without creating anything.

    Raises :class:`~salesauthz.errors.StorageError` naming the URL (password masked) when it
    cannot be opened — for an SQLite file that does not exist, before anything is created."""
    from salesauthz.adapters import mask_url, open_adapter
    from salesauthz.errors import StorageError

    inner = url.removeprefix("casbin+")
    if not inner.startswith(("sqlite:", "postgresql:", "postgres:", "postgresql+psycopg:")):
        return open_adapter(url)  # memory:// (nothing to create), or the error for an unknown scheme
    database = _sqlite_file(inner)
    if database is not None and not database.exists():
        raise StorageError(f"cannot open store {mask_url(url)}: {database} does not exist",
                           url=mask_url(url))
    if url.startswith("casbin+"):
        from salesauthz.adapters.casbin_compat import CasbinRuleAdapter

        return CasbinRuleAdapter(inner, create=False)
    from salesauthz.adapters.sql import SQLAdapter

    return SQLAdapter(url, create=False)


def _sqlite_file(url: str) -> Path | None:
    """The file of an ``sqlite:`` URL (``None``: not SQLite, in memory, or an SQLite URI)."""
    if not url.startswith("sqlite:"):
        return None
    import sqlalchemy as sa

    try:
        database = sa.engine.make_url(url).database
    except Exception:  # let the adapter report a malformed URL
        return None
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(database)
