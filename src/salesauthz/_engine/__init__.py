"""The decision engine (private): the semantics, compiled snapshots, the cache, explanations.

Modules outside the engine import from this package only, never from its submodules
(``tests/test_architecture.py`` checks it), and no public API takes or returns its types.

- :mod:`.semantics` — the decision rules, once: scopes, expiry, wildcards, role inheritance, the
  parent ceiling, what an account holds and through which roles.
- :mod:`.snapshot` — one domain's compiled rules, immutable; :mod:`.state` — the mutable master
  copy that publishes snapshots, incrementally.
- :mod:`.cache` — effective maps per account, with a strategy passed in.
- :mod:`.explain` — the provenance of a right and decisions told from it; :mod:`.fields` — field
  modes; :mod:`.order` — which scope reaches at least what another does (administration).
"""

from .cache import DEFAULT_SIZE as DEFAULT_CACHE_SIZE
from .cache import TOUCH_EVERY, CacheKey, EffectiveCache, Entry
from .explain import Source, explain, permission_label, sources
from .fields import field_modes, ruled_fields
from .order import scope_width, scope_within
from .semantics import (
    ACTIVE,
    Holding,
    Until,
    chain,
    earliest,
    effective,
    expand,
    expired,
    holdings,
    intersect_maps,
    own_map,
    role_holdings,
    scope_coverage,
)
from .snapshot import (
    AccountInfo,
    EffectiveMap,
    FieldRule,
    Key,
    Layered,
    Permission,
    Snapshot,
    parse_permission,
)
from .state import DomainState, compile_domains, load_domains

__all__ = [
    "ACTIVE",
    "DEFAULT_CACHE_SIZE",
    "TOUCH_EVERY",
    "AccountInfo",
    "CacheKey",
    "DomainState",
    "EffectiveCache",
    "EffectiveMap",
    "Entry",
    "FieldRule",
    "Holding",
    "Key",
    "Layered",
    "Permission",
    "Snapshot",
    "Source",
    "Until",
    "chain",
    "compile_domains",
    "earliest",
    "effective",
    "expand",
    "expired",
    "explain",
    "field_modes",
    "holdings",
    "intersect_maps",
    "load_domains",
    "own_map",
    "parse_permission",
    "permission_label",
    "role_holdings",
    "ruled_fields",
    "scope_coverage",
    "scope_width",
    "scope_within",
    "sources",
]
