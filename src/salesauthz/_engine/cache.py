"""The cache of effective maps: ``(domain, account) → (version, map, valid until, shared)``.

A hit is a plain ``dict`` read with no lock (``entries``). Which entries stay is decided by a
cachetools-style *strategy* passed in — any ``MutableMapping`` (``cachetools.LRUCache``,
``LFUCache``, ``TTLCache`` …; default an ``LRUCache``) — kept in step under a lock on every write:
``entries`` drops what the strategy evicted as soon as it holds a quarter more than the strategy
(amortised constant work per write, whatever the strategy's eviction order). An entry is used only
while its stamp equals the snapshot's stamp for the account and its validity has not run out, so
a kept entry can be outdated, never wrong.

**Shared maps.** Thousands of accounts hold the same roles in the same department: their maps
differ only by the account's own name in ``owners``. When every coverage of a map is
``everything`` or "the account's own records (or none) plus departments ``D``" (no sub-account
ceiling, no shares, no conditions, no reporting line), the entry keeps a *shared* map instead:
one dict per distinct shape, whose coverages name :data:`SELF` (an object, never equal to an
account name) for "the account itself", interned per ``(own?, D)``. The entry's last item says so.
Readers resolve :data:`SELF` to the entry's account: ``check`` and ``check_many`` inline (a
record owned by the account is covered iff the coverage's ``owners`` is not empty), everything
else through :meth:`EffectiveCache.absolute`, which never hands :data:`SELF` out. Memory then
grows with the number of distinct shapes, not with the accounts.
"""

from __future__ import annotations

import threading
from collections.abc import MutableMapping
from typing import Final

from cachetools import LRUCache

from salesauthz.scopes import Coverage
from salesauthz.values import CacheInfo

from .semantics import effective
from .snapshot import EffectiveMap, Key, Snapshot

__all__ = ["SELF", "CacheKey", "EffectiveCache", "Entry"]


class _Self:
    """The account a shared map is read for (see the module documentation)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<the account>"


SELF: Final = _Self()
_OWN_ONLY: Final = frozenset((SELF,))
_INTERNED_MAX: Final = 65_536  # shapes and shared coverages kept before starting afresh

CacheKey = tuple[str, str]  # (domain, account)
# (the version of the snapshot it was computed from, effective map, valid until, shared: the map
# names SELF for the account)
Entry = tuple[int, EffectiveMap, float | None, bool]
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
        self._coverages: dict[tuple[bool, frozenset[str]], Coverage] = {}
        self._shapes: dict[tuple[tuple[Key, int], ...], EffectiveMap] = {}
        # (shared map, account) -> its absolute map: the same objects while the entry lives, so
        # that list filters rendered again find their terms cached (keyed by identity)
        self._absolute: dict[tuple[int, str], tuple[EffectiveMap, EffectiveMap]] = {}

    def get(self, snapshot: Snapshot, account: str, now: float) -> Entry:
        """The account's entry, computed (and kept) unless a kept one is still valid: fresh for
        ``snapshot`` (:meth:`Snapshot.fresh`), not past its validity. A sub-account's fill reuses its parent's
        entry, so a chain of sub-accounts is filled once per level, not once per descendant."""
        entry = self.entries.get((snapshot.name, account))
        if (entry is None or not snapshot.fresh(account, entry[0])
                or (entry[2] is not None and now >= entry[2])):
            held, valid_until = effective(snapshot, account, now,
                                          ceiling=lambda parent: self._ceiling(snapshot, parent, now))
            shared = self._shared(held, account)
            entry = ((snapshot.version, held, valid_until, False) if shared is None
                     else (snapshot.version, shared, valid_until, True))
            # A change after this snapshot already touched the account: the map is right for
            # this snapshot's readers, but kept it would only be thrown away.
            if snapshot.stamps.get(account, 0) <= snapshot.version:
                self.put((snapshot.name, account), entry)
            else:
                self.misses += 1
        else:
            self.hits += 1
        return entry

    def _ceiling(self, snapshot: Snapshot, parent: str, now: float) -> tuple[EffectiveMap, float | None]:
        """A parent's cached map and validity, for its sub-accounts' fills."""
        entry = self.get(snapshot, parent, now)
        return self.absolute(entry, parent), entry[2]

    def _shared(self, held: EffectiveMap, account: str) -> EffectiveMap | None:
        """``held`` as a shared map (interned), or None when it cannot be one."""
        if not held:
            return None
        coverages, shapes = self._coverages, self._shapes
        if len(coverages) > _INTERNED_MAX or len(shapes) > _INTERNED_MAX:
            self._coverages = coverages = {}
            self._shapes = shapes = {}
        made: dict[int, Coverage] = {}
        shared: EffectiveMap = {}
        for key, coverage in held.items():
            relative = made.get(id(coverage))
            if relative is None:
                if coverage.everything:
                    relative = coverage
                else:
                    owners = coverage.owners
                    if coverage.guarded or coverage.owner_departments or (
                            owners and (len(owners) != 1 or account not in owners)):
                        return None
                    interned = (bool(owners), coverage.departments)
                    relative = coverages.get(interned)
                    if relative is None:
                        relative = coverages.setdefault(interned, Coverage(
                            owners=_OWN_ONLY if owners else frozenset(),  # type: ignore[arg-type]
                            departments=coverage.departments))
                made[id(coverage)] = relative
            shared[key] = relative
        return shapes.setdefault(tuple((key, id(c)) for key, c in shared.items()), shared)

    def absolute(self, entry: Entry, account: str) -> EffectiveMap:
        """The entry's map for ``account`` with :data:`SELF` resolved (the map itself when it is
        not shared); the same object on every call while the entry is cached."""
        if not entry[3]:
            return entry[1]
        shared = entry[1]
        memo = self._absolute.get((id(shared), account))
        if memo is not None and memo[0] is shared:
            return memo[1]
        own = frozenset((account,))
        made: dict[int, Coverage] = {}
        result: EffectiveMap = {}
        for key, relative in shared.items():
            coverage = made.get(id(relative))
            if coverage is None:
                coverage = made[id(relative)] = (
                    Coverage(owners=own, departments=relative.departments)
                    if relative.owners and not relative.everything else relative)
            result[key] = coverage
        if len(self._absolute) > 4_096:
            self._absolute = {}
        self._absolute[(id(shared), account)] = (shared, result)
        return result

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
            self._coverages, self._shapes, self._absolute = {}, {}, {}

    def info(self) -> CacheInfo:
        with self._lock:
            maxsize = getattr(self._strategy, "maxsize", len(self._strategy))
            return CacheInfo(self.hits, self.misses, int(maxsize), len(self._strategy))
