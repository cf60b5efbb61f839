"""The cache of effective maps: ``domain → account → (version, map, valid until, shared)``.

A hit is two plain ``dict`` reads with no lock (``domains[domain].get(account)``: no key tuple to
build, hash or compare). Which entries stay is decided by a *strategy*:

- **built in** (the default): a bound on the number of entries, kept with no bookkeeping beyond
  the per-domain dicts themselves — they remember insertion order, a hit now and then moves its
  entry to the end, and when the bound is passed the oldest eighth of every domain goes (an
  approximate LRU; constant amortised work per write, ~110 bytes per cached account);
- or any cachetools-style ``MutableMapping`` passed in (``cachetools.LRUCache``, ``LFUCache``,
  ``TTLCache`` …), keyed ``(domain, account)``, kept in step under a lock on every write: the
  dicts drop what the strategy evicted as soon as they hold a quarter more than it (whatever the
  strategy's eviction order).

An entry is used only while it is fresh for the reader's snapshot and its validity has not run
out, so a kept entry can be outdated, never wrong. An entry tagged with the snapshot's own version
is fresh by construction: the hot path tests that one equality. An older entry is tested in full
(:meth:`Snapshot.fresh`) and, still fresh, tagged again with the newer version (so a change to one
account costs every other account one full test, not one per check).

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
from array import array
from collections.abc import MutableMapping
from itertools import islice
from typing import Final

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
DEFAULT_SIZE: Final = 400_000  # ~300 bytes each: a tenant of 300k active accounts, ~120 MB


class EffectiveCache:
    """See the module documentation. ``hits`` is counted by the reader without a lock."""

    def __init__(self, strategy: MutableMapping[CacheKey, Entry] | None = None, *,
                 maxsize: int = DEFAULT_SIZE) -> None:
        if maxsize < 0:
            raise ValueError(f"cache_size must be 0 or more, not {maxsize}")
        self.domains: dict[str, dict[str, Entry]] = {}  # read lock-free on the hot path
        self._strategy = strategy
        self._maxsize = maxsize
        self._size = 0  # entries in every domain's dict
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0
        self._coverages: dict[tuple[bool, frozenset[str]], Coverage] = {}
        self._shapes: dict[tuple[tuple[Key, ...], bytes], EffectiveMap] = {}
        self._keys: dict[Key, Key] = {}
        # (version, id(shared map), valid until) -> the one entry for it (it holds the map: the
        # id stays unique while the entry is here)
        self._entries: dict[tuple[int, int, float | None], Entry] = {}
        # (shared map, account) -> its absolute map: the same objects while the entry lives, so
        # that list filters rendered again find their terms cached (keyed by identity)
        self._absolute: dict[tuple[int, str], tuple[EffectiveMap, EffectiveMap]] = {}

    def peek(self, domain: str, account: str) -> Entry | None:
        """The entry kept for the account, fresh or not (tests and benchmarks)."""
        return self.domains.get(domain, {}).get(account)

    def get(self, snapshot: Snapshot, account: str, now: float) -> Entry:
        """The account's entry, computed (and kept) unless a kept one is still valid: fresh for
        ``snapshot`` (:meth:`Snapshot.fresh`), not past its validity. A sub-account's fill reuses its parent's
        entry, so a chain of sub-accounts is filled once per level, not once per descendant."""
        entries = self.domains.get(snapshot.name)
        entry = entries.get(account) if entries is not None else None
        if (entry is None or not snapshot.fresh(account, entry[0])
                or (entry[2] is not None and now >= entry[2])):
            held, valid_until = effective(snapshot, account, now,
                                          ceiling=lambda parent: self._ceiling(snapshot, parent, now))
            shared = self._shared(held, account)
            entry = ((snapshot.version, held, valid_until, False) if shared is None
                     else self._shared_entry(snapshot.version, shared, valid_until))
            # A change after this snapshot already touched the account: the map is right for
            # this snapshot's readers, but kept it would only be thrown away.
            if snapshot.stamps.get(account, 0) <= snapshot.version:
                self.put(snapshot.name, account, entry)
            else:
                self.misses += 1
            return entry
        self.hits += 1
        if entry[0] != snapshot.version and entries is not None:
            kept = entry
            entry = (self._shared_entry(snapshot.version, kept[1], kept[2]) if kept[3]
                     else (snapshot.version, kept[1], kept[2], False))  # the same map, newer
            with self._lock:
                if entries.get(account) is kept:  # not replaced or evicted meanwhile
                    entries[account] = entry
        return entry

    def _shared_entry(self, version: int, shared: EffectiveMap, until: float | None) -> Entry:
        """One entry object for every account whose map is ``shared`` (same version and
        validity): thousands of accounts point at one tuple, which stays in the processor's
        cache — spread traffic then touches little more than the domain's dict."""
        key = (version, id(shared), until)
        entry = self._entries.get(key)
        if entry is None:
            if len(self._entries) > _INTERNED_MAX:
                self._entries = {}
            entry = self._entries.setdefault(key, (version, shared, until, True))
        return entry

    def _ceiling(self, snapshot: Snapshot, parent: str, now: float) -> tuple[EffectiveMap, float | None]:
        """A parent's cached map and validity, for its sub-accounts' fills."""
        entry = self.get(snapshot, parent, now)
        return self.absolute(entry, parent, remember=False), entry[2]

    def _shared(self, held: EffectiveMap, account: str) -> EffectiveMap | None:
        """``held`` as a shared map (interned), or None when it cannot be one."""
        if not held:
            return None
        coverages, shapes, keys = self._coverages, self._shapes, self._keys
        if len(coverages) > _INTERNED_MAX or len(shapes) > _INTERNED_MAX:
            self._coverages = coverages = {}
            self._shapes = shapes = {}
            self._keys = keys = {}
        made: dict[int, Coverage] = {}
        shared: EffectiveMap = {}
        for key, coverage in held.items():
            key = keys.setdefault(key, key)  # one (type, action) tuple for every shape
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
        # The shape: its keys and its coverages' identities (8 bytes each, not an int object).
        shape = (tuple(shared), array("Q", map(id, shared.values())).tobytes())
        return shapes.setdefault(shape, shared)

    def absolute(self, entry: Entry, account: str, *, remember: bool = True) -> EffectiveMap:
        """The entry's map for ``account`` with :data:`SELF` resolved (the map itself when it is
        not shared); the same object on every call while the entry is cached (``remember=False``:
        a map used once, e.g. a parent's ceiling, is not kept)."""
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
        if remember:
            if len(self._absolute) > 4_096:
                self._absolute = {}
            self._absolute[(id(shared), account)] = (shared, result)
        return result

    def put(self, domain: str, account: str, entry: Entry) -> None:
        """Keep ``entry`` (the strategy may evict others)."""
        with self._lock:
            self.misses += 1
            entries = self.domains.get(domain)
            if entries is None:
                entries = self.domains[domain] = {}
            if self._strategy is not None:
                self._strategy[(domain, account)] = entry
                if entries.pop(account, None) is None:
                    self._size += 1
                entries[account] = entry
                kept = len(self._strategy)
                if self._size > kept + max(16, kept // 4):
                    self._sweep()
                return
            if entries.pop(account, None) is None:  # re-inserted: now the newest
                self._size += 1
            if self._maxsize == 0:
                self._size -= 1
                return
            entries[account] = entry
            if self._size > self._maxsize:
                self._evict_oldest()

    def _sweep(self) -> None:
        """Drop what the strategy no longer holds (under the lock)."""
        strategy = self._strategy
        assert strategy is not None
        for domain, entries in self.domains.items():
            for evicted in [a for a in entries if (domain, a) not in strategy]:
                del entries[evicted]
        self._size = sum(map(len, self.domains.values()))

    def _evict_oldest(self) -> None:
        """The built-in strategy: every domain loses its oldest eighth (at least one entry, and
        enough in all to be back within the bound). Under the lock."""
        excess = self._size - (self._maxsize - self._maxsize // 8)
        over = excess
        for entries in self.domains.values():
            if over <= 0:
                break
            share = -(-len(entries) * excess // self._size)  # this domain's part, rounded up
            drop = min(len(entries), max(1, share), over)
            for account in list(islice(entries, drop)):
                del entries[account]
            over -= drop
        self._size = sum(map(len, self.domains.values()))

    def touch(self, domain: str, account: str) -> None:
        """Tell the strategy the entry was used (it may reorder or expire entries)."""
        with self._lock:
            if self._strategy is not None:
                self._strategy.get((domain, account))
                return
            entries = self.domains.get(domain)
            if entries is not None:
                entry = entries.pop(account, None)
                if entry is not None:
                    entries[account] = entry  # moved to the end: the newest

    def clear(self) -> None:
        with self._lock:
            if self._strategy is not None:
                self._strategy.clear()
            for entries in self.domains.values():
                entries.clear()
            self._size = 0
            self._coverages, self._shapes, self._absolute, self._keys = {}, {}, {}, {}
            self._entries = {}

    def drop(self, domain: str, account: str) -> None:
        """Forget one account's entry (benchmarks measuring a cold fill)."""
        with self._lock:
            if self._strategy is not None:
                self._strategy.pop((domain, account), None)
            if self.domains.get(domain, {}).pop(account, None) is not None:
                self._size -= 1

    def info(self) -> CacheInfo:
        with self._lock:
            if self._strategy is None:
                return CacheInfo(self.hits, self.misses, self._maxsize, self._size)
            maxsize = getattr(self._strategy, "maxsize", len(self._strategy))
            return CacheInfo(self.hits, self.misses, int(maxsize), len(self._strategy))
