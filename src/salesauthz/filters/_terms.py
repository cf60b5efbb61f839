"""The renderer-neutral form of a :class:`~salesauthz.authorizer.ScopeFilter`.

Every renderer (plain SQL, SQLAlchemy, Django) builds its ``WHERE`` clause from the same
:class:`Terms`, so they cannot drift apart. A row passes when

- ``everything``, or
- its owner is in ``owners``, or
- its department is in ``departments``, or
- for one of the ``pairs`` ``(owners_i, departments_i)``: its owner is in ``owners_i`` and its
  department in ``departments_i`` (sub-account ceilings; owners sharing a department set are
  grouped so the clause stays short), or
- its department is NULL or empty and its owner is in ``null_department_owners`` (only when
  the authorizer was given: such a record lives in its owner's *current* department, exactly as
  :meth:`Authorizer.check <salesauthz.Authorizer.check>` decides).

Sets are sorted so the same filter always renders the same SQL text (statement caches).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeAlias

if TYPE_CHECKING:
    from salesauthz._index import DomainIndex
    from salesauthz.authorizer import Authorizer, ScopeFilter

__all__ = ["Terms", "terms_of"]


@dataclass(frozen=True, slots=True)
class Terms:
    nothing: bool
    everything: bool
    owners: tuple[str, ...] = ()
    departments: tuple[str, ...] = ()
    pairs: tuple[tuple[tuple[str, ...], tuple[str, ...]], ...] = ()
    null_department_owners: tuple[str, ...] = ()


_CACHE_SIZE = 4096
# Coverages are immutable and the authorizer hands out the same object while an account's
# permissions are unchanged, so a list view rendered again reuses its terms: entries are keyed
# by the coverage's identity (checked, so a recycled id never matches a dead object) and a
# bucket is cleared wholesale when full. Terms that used a domain snapshot (``authz=``) live in
# that snapshot's bucket, replaced as soon as the domain has a newer snapshot, so no stale
# snapshot is kept alive beyond the latest one per domain.
_Bucket: TypeAlias = dict[int, tuple[object, Terms]]
_plain_terms: _Bucket = {}
_snapshot_terms: dict[str, tuple[DomainIndex, _Bucket]] = {}


def terms_of(flt: ScopeFilter, authz: Authorizer | None = None) -> Terms:
    """The terms of ``flt``; with ``authz``, also those for rows whose department is NULL/empty."""
    index = authz.index(flt.domain) if authz is not None else None
    if index is None:
        bucket = _plain_terms
    else:
        held = _snapshot_terms.get(flt.domain)
        if held is None or held[0] is not index:
            held = _snapshot_terms[flt.domain] = (index, {})
        bucket = held[1]
    coverage = flt.coverage
    cached = bucket.get(id(coverage))
    if cached is not None and cached[0] is coverage:
        return cached[1]
    terms = _compute(flt, index)
    if len(bucket) >= _CACHE_SIZE:
        bucket.clear()
    bucket[id(coverage)] = (coverage, terms)
    return terms


def _compute(flt: ScopeFilter, index: DomainIndex | None) -> Terms:
    if flt.everything:
        return Terms(nothing=False, everything=True)
    if flt.nothing:
        return Terms(nothing=True, everything=False)
    # ``check`` reads an empty department as "the owner's department", never as a name, so an
    # empty string must not match the department sets either.
    departments = frozenset(d for d in flt.departments if d)
    by_departments: dict[frozenset[str], list[str]] = {}
    for owner, depts in flt.owner_departments.items():
        kept = frozenset(d for d in depts if d)
        if kept and owner not in flt.owners:
            by_departments.setdefault(kept, []).append(owner)
    pairs = tuple(sorted((tuple(sorted(owners)), tuple(sorted(depts)))
                         for depts, owners in by_departments.items()))
    null_owners: tuple[str, ...] = ()
    if index is not None:
        null_owners = _null_department_owners(flt, index, departments)
    return Terms(
        nothing=False,
        everything=False,
        owners=tuple(sorted(flt.owners)),
        departments=tuple(sorted(departments)),
        pairs=pairs,
        null_department_owners=null_owners,
    )


def _null_department_owners(
    flt: ScopeFilter, index: DomainIndex, departments: frozenset[str]
) -> tuple[str, ...]:
    # A row without a department is in its owner's current department: it passes when that
    # department passes (for any owner, or for this owner through a pair).
    members = _members_by_department(index)
    owners: set[str] = set()
    for department in departments:
        owners.update(members.get(department, ()))
    for owner, depts in flt.owner_departments.items():
        home = index.department_of(owner)
        if home and home in depts:
            owners.add(owner)
    owners.difference_update(flt.owners)  # already passes on the owner alone
    return tuple(sorted(owners))


# One reverse map per domain snapshot: snapshots are immutable, so it is valid as long as the
# snapshot is the current one (compared by identity; a newer snapshot replaces the entry).
_members_cache: dict[str, tuple[DomainIndex, dict[str, tuple[str, ...]]]] = {}


def _members_by_department(index: DomainIndex) -> dict[str, tuple[str, ...]]:
    cached = _members_cache.get(index.name)
    if cached is not None and cached[0] is index:
        return cached[1]
    grouped: dict[str, list[str]] = {}
    for name, info in index.accounts.items():
        if info.department:
            grouped.setdefault(info.department, []).append(name)
    members = {dept: tuple(names) for dept, names in grouped.items()}
    _members_cache[index.name] = (index, members)
    return members
