"""A bounded cache keyed by the identity of objects (which need not be hashable).

Renderers and middleware remember work per immutable object — a coverage, a route — and must
neither grow without bound nor be fooled by a recycled ``id``: each entry keeps its key objects
(so their ids cannot be reused while cached) and a hit checks them by identity. At most
``maxsize`` entries, least recently used evicted; thread-safe.
"""

from __future__ import annotations

import threading
from typing import Generic, TypeVar

from cachetools import LRUCache

__all__ = ["IdentityCache"]

V = TypeVar("V")


class IdentityCache(Generic[V]):
    def __init__(self, maxsize: int) -> None:
        self._entries: LRUCache[tuple[int, ...], tuple[tuple[object, ...], V]] = LRUCache(maxsize)
        self._lock = threading.Lock()

    def get(self, *keys: object) -> V | None:
        with self._lock:
            found = self._entries.get(tuple(map(id, keys)))
        if found is None or any(a is not b for a, b in zip(found[0], keys, strict=True)):
            return None
        return found[1]

    def put(self, value: V, *keys: object) -> V:
        with self._lock:
            self._entries[tuple(map(id, keys))] = (keys, value)
        return value

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
