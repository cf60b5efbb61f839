"""The in-memory store passes the shared suite."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from salesauthz.adapters import MemoryAdapter, open_adapter
from salesauthz.adapters.base import Adapter
from salesauthz.audit import AuditKeyring

from .suite import PLAIN, AdapterSuite


class TestMemoryAdapter(AdapterSuite):
    @pytest.fixture
    def store(self) -> Iterator[Adapter]:
        store = open_adapter("memory://")
        assert isinstance(store, MemoryAdapter)
        yield store
        store.close()

    def reopen(self, store: Adapter, *, audit_key: AuditKeyring | str = PLAIN) -> Adapter:
        assert isinstance(store, MemoryAdapter)
        keys = AuditKeyring.of(audit_key)
        if keys == store.audit_keys:
            return store
        # Another handle with other keys on the very same data (and lock).
        other = MemoryAdapter(audit_key=keys)
        other._lock, other._rules, other._audit, other._anchors = (
            store._lock, store._rules, store._audit, store._anchors)
        other._versions, other._log, other._facts = store._versions, store._log, store._facts
        return other

    def with_log_retention(self, store: Adapter, retention: int) -> Adapter:
        return MemoryAdapter(log_retention=retention)
