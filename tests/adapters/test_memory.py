"""The in-memory store passes the shared suite."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from salesauthz.adapters import MemoryAdapter, open_adapter
from salesauthz.adapters.base import Adapter

from .suite import AdapterSuite


class TestMemoryAdapter(AdapterSuite):
    @pytest.fixture
    def store(self) -> Iterator[Adapter]:
        store = open_adapter("memory://")
        assert isinstance(store, MemoryAdapter)
        yield store
        store.close()
