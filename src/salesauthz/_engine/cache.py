"""The cache of effective maps: ``(domain, account) → (stamp, map, valid until)``.

A hit is a plain ``dict`` read with no lock (``entries``). Which entries stay is decided by a
cachetools-style *strategy* passed in — any ``MutableMapping`` (``cachetools.LRUCache``,
``LFUCache``, ``TTLCache`` …; default an ``LRUCache``) — kept in step under a lock on every write:
``entries`` drops what the strategy evicted as soon as it holds a quarter more than the strategy
(amortised constant work per write, whatever the strategy's eviction order). An entry is used only
while its stamp equals the snapshot's stamp for the account and its validity has not run out, so
a kept entry can be outdated, never wrong.
"""

from __future__ import annotations

import threading
from collections.abc import MutableMapping
from typing import Final

from cachetools import LRUCache

from salesauthz.values import CacheInfo

from .semantics import effective
from .snapshot import EffectiveMap, Snapshot

__all__ = ["CacheKey", "EffectiveCache", "Entry"]

CacheKey = tuple[str, str]  # (domain, account)
# (the version of the snapshot it was computed from, effective map, valid until)
Entry = tuple[int, EffectiveMap, float | None]
TOUCH_EVERY: Final = 15  # hits refresh the strategy's recency one time in 16 (a bit mask)
DEFAULT_SIZE: Final = 65_536


class EffectiveCache:
    """See the module documentation. ``hits`` is counted by the reader without a lock."""

    def __init__(self, strategy: MutableMapping[CacheKey, Entry] | None = None, *,
                 maxsize: int = DEFAULT_SIZE) -> None:
        self.entries: dict[CacheKey, Entry] = {}  # read lock-free on the hot path
        self._strategy: MutableMapping[CacheKey, Entry] = (
            strategy if strategy is not None else LRUCache(maxsize=maxsize))
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, snapshot: Snapshot, account: str, now: float) -> Entry:
        """The account's entry, computed (and kept) unless a kept one is still valid: fresh for
        ``snapshot`` (:meth:`Snapshot.fresh`), not past its validity. A sub-account's fill reuses its parent's
        entry, so a chain of sub-accounts is filled once per level, not once per descendant."""
        entry = self.entries.get((snapshot.name, account))
        if (entry is None or not snapshot.fresh(account, entry[0])
                or (entry[2] is not None and now >= entry[2])):
            held, valid_until = effective(snapshot, account, now,
                                          ceiling=lambda parent: self.get(snapshot, parent, now)[1:])
            entry = (snapshot.version, held, valid_until)
            # A change after this snapshot already touched the account: the map is right for
            # this snapshot's readers, but kept it would only be thrown away.
            if snapshot.stamps.get(account, 0) <= snapshot.version:
                self.put((snapshot.name, account), entry)
            else:
                self.misses += 1
        else:
            self.hits += 1
        return entry

    def put(self, key: CacheKey, entry: Entry) -> None:
        """Keep ``entry`` (the strategy may evict others)."""
        with self._lock:
            self.misses += 1
            self._strategy[key] = entry
            self.entries[key] = entry
            kept = len(self._strategy)
            if len(self.entries) > kept + max(16, kept // 4):
                strategy = self._strategy
                for evicted in [k for k in self.entries if k not in strategy]:
                    del self.entries[evicted]

    def touch(self, key: CacheKey) -> None:
        """Tell the strategy ``key`` was used (it may reorder or expire entries)."""
        with self._lock:
            self._strategy.get(key)

    def clear(self) -> None:
        with self._lock:
            self._strategy.clear()
            self.entries.clear()

    def info(self) -> CacheInfo:
        with self._lock:
            maxsize = getattr(self._strategy, "maxsize", len(self._strategy))
            return CacheInfo(self.hits, self.misses, int(maxsize), len(self._strategy))
