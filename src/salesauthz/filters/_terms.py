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
  :meth:`Authorizer.check <salesauthz.Authorizer.check>` decides), or
- for one of the ``guarded`` terms: the row passes the term's ``base`` (plain terms as above) and,
  for *each* of the term's ``guards``, a row of the share table names it, at one of the guard's
  ``levels``, with its account in ``accounts`` or its department in ``departments`` (the
  ``shared`` scope; renderers turn each guard into one ``EXISTS``), or
- ``factors`` is not empty and the row passes every one of them (the other fields are then
  unused). A sub-account capped by its parent, both with ``shared``, has the coverage
  ``(P1 ∪ S1) ∩ (P2 ∪ S2)``; the algebra stores it expanded (``P1P2 ∪ P1S2 ∪ P2S1 ∪ S1S2``,
  each ``EXISTS`` twice), which PostgreSQL plans far worse than the factored form a developer
  writes. :func:`terms_of` factors such coverages back, and keeps the factored form only when
  its product is *equal* to the coverage (the algebra's own intersection, compared exactly).

Sets are sorted so the same filter always renders the same SQL text (statement caches).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from salesauthz._identity import IdentityCache
from salesauthz.conditions import ConditionGuard
from salesauthz.errors import UsageError
from salesauthz.scopes import EVERYTHING, NOTHING, Coverage, Guarded, ShareGuard

if TYPE_CHECKING:
    from salesauthz.authorizer import Authorizer
    from salesauthz.values import ScopeFilter

__all__ = ["ConditionTerms", "GuardTerms", "GuardedTerms", "Terms", "shares_required", "terms_of"]


@dataclass(frozen=True, slots=True, order=True)
class GuardTerms:
    """One share condition: a share row at one of ``levels`` naming one of ``accounts`` or one
    of ``departments`` (either may be empty, never both)."""

    levels: tuple[str, ...]
    accounts: tuple[str, ...]
    departments: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ConditionTerms(GuardTerms):
    """A guard of a filter's term that is a condition, not a share (its share fields empty):
    its tests, every operand a constant (``(attribute, op, operand)``, lists as tuples), and
    how the condition was written (for messages). Only a renderer that asked for conditions
    (``terms_of(..., conditions=True)``) meets one."""

    tests: tuple[tuple[str, str, Any], ...] = ()
    text: str = ""

    @classmethod
    def of(cls, guard: ConditionGuard) -> ConditionTerms:
        return cls((), (), (), tuple((t.attribute, t.op, t.operand) for t in guard.tests),
                   str(guard))


@dataclass(frozen=True, slots=True)
class Terms:
    nothing: bool
    everything: bool
    owners: tuple[str, ...] = ()
    departments: tuple[str, ...] = ()
    pairs: tuple[tuple[tuple[str, ...], tuple[str, ...]], ...] = ()
    null_department_owners: tuple[str, ...] = ()
    guarded: tuple[GuardedTerms, ...] = ()
    factors: tuple[Terms, ...] = ()

    @property
    def shared(self) -> bool:
        """Whether rendering needs the share table (a share guard here or in a factor; a
        condition's guard, :class:`~salesauthz.filters.conditions.ConditionTerms`, does not)."""
        return (any(type(guard) is GuardTerms for term in self.guarded for guard in term.guards)
                or any(factor.shared for factor in self.factors))


@dataclass(frozen=True, slots=True)
class GuardedTerms:
    """Rows passing ``base`` (plain terms, maybe *everything*) that match every guard."""

    base: Terms
    guards: tuple[GuardTerms, ...]


def shares_required(flt: ScopeFilter, how: str) -> str:
    """The message of the :class:`~salesauthz.errors.UsageError` a renderer raises when a filter
    needs the share table and none was described (``how``: what to pass)."""
    return (
        f"the filter for {flt.account} ({flt.action} {flt.type} in {flt.domain}) lets records "
        f"through by their shares (the shared scope), so it cannot be rendered without the CRM's "
        f"share table: pass {how}; flt.needs_shares tells whether a filter needs it"
    )


# Coverages are immutable and the authorizer hands out the same object while an account's
# permissions are unchanged, so a list view rendered again reuses its terms: entries are keyed by
# the coverage's identity and, for NULL-aware terms, by the identity of the domain's membership
# map (a new object whenever memberships change), in one bounded cache.
_cache: IdentityCache[Terms] = IdentityCache(4096)


_CONDITIONS = object()  # the cache key part of terms computed with ConditionTerms


def terms_of(flt: ScopeFilter, authz: Authorizer | None = None, *,
             conditions: bool = False) -> Terms:
    """The terms of ``flt``; with ``authz``, also those for rows whose department is NULL/empty.
    With ``conditions``, a condition on record attributes becomes a
    :class:`~salesauthz.filters.conditions.ConditionTerms` guard (for a renderer that knows
    the attribute columns); without, it is refused (:class:`UsageError`)."""
    members = authz.department_members(domain=flt.domain) if authz is not None else None
    keys = (flt.coverage, members, _CONDITIONS) if conditions else (flt.coverage, members)
    cached = _cache.get(*keys)
    if cached is not None:
        return cached
    return _cache.put(_compute_coverage(flt.coverage, flt.domain, authz, members, conditions),
                      *keys)


def _compute_coverage(coverage: Coverage, domain: str, authz: Authorizer | None,
                      members: Mapping[str, frozenset[str]] | None,
                      conditions: bool = False) -> Terms:
    if coverage.everything:
        return Terms(nothing=False, everything=True)
    if coverage.is_empty:
        return Terms(nothing=True, everything=False)
    factors = _factors(coverage)
    if factors is not None:
        return Terms(nothing=False, everything=False, factors=tuple(
            _compute_coverage(factor, domain, authz, members, conditions) for factor in factors))
    # ``check`` reads an empty department as "the owner's department", never as a name, so an
    # empty string must not match the department sets either.
    departments = frozenset(d for d in coverage.departments if d)
    by_departments: dict[frozenset[str], list[str]] = {}
    for owner, depts in coverage.owner_departments.items():
        kept = frozenset(d for d in depts if d)
        if kept and owner not in coverage.owners:
            by_departments.setdefault(kept, []).append(owner)
    pairs = tuple(sorted((tuple(sorted(owners)), tuple(sorted(depts)))
                         for depts, owners in by_departments.items()))
    null_owners: tuple[str, ...] = ()
    if authz is not None and members is not None:
        null_owners = _null_department_owners(coverage, domain, authz, members, departments)
    # A guarded term's base is a plain coverage: a record without a department is in its owner's
    # department there too (``check`` resolves the department before looking at the terms).
    guarded = tuple(sorted(
        (GuardedTerms(_compute_coverage(term.base, domain, authz, members, conditions),
                      tuple(sorted((_guard_terms(guard, conditions) for guard in term.guards),
                                   key=_guard_order)))
         for term in coverage.guarded),
        key=repr,
    ))
    return Terms(
        nothing=False,
        everything=False,
        owners=tuple(sorted(coverage.owners)),
        departments=tuple(sorted(departments)),
        pairs=pairs,
        null_department_owners=null_owners,
        guarded=guarded,
    )


# Beyond this many guards (a chain of sub-accounts each with ``shared``) the expanded form has
# 2**n terms and is not worth factoring: such chains are rare, the expanded form stays exact.
_MAX_FACTORS = 6


def _factors(coverage: Coverage) -> tuple[Coverage, ...] | None:
    """``coverage`` as ``F1 ∩ … ∩ Fn`` with ``Fi = Pi ∪ shared(gi)`` (one factor per guard),
    or None when it is not such a product (fewer than two guards, or the product differs).

    Expanding ``(P1 ∪ g1) ∩ … ∩ (Pn ∪ gn)`` gives, for each set ``S`` of guards, the term
    ``(∩_{i ∉ S} Pi) ∧ S``; so ``Pi`` is the base of the term guarded by every guard but
    ``gi`` (nothing when the algebra dropped that term as empty). The candidate is kept only
    when its product, computed by :meth:`Coverage.intersect`, equals ``coverage``.
    """
    if not coverage.guarded:
        return None
    guards: frozenset[object] = frozenset().union(*(term.guards for term in coverage.guarded))
    if not 2 <= len(guards) <= _MAX_FACTORS:
        return None
    bases = {term.guards: term.base for term in coverage.guarded}
    factors: list[Coverage] = []
    for guard in sorted(guards, key=repr):
        base = bases.get(guards - {guard}, NOTHING)
        factors.append(base.union(Coverage(guarded=frozenset((
            Guarded(EVERYTHING, frozenset((guard,))),)))))
    product = factors[0]
    for factor in factors[1:]:
        product = product.intersect(factor)
    return tuple(factors) if product == coverage else None


def _guard_order(guard: GuardTerms) -> tuple[bool, str, GuardTerms]:
    """Share guards in their own order (as ever), then conditions by their text."""
    text = getattr(guard, "text", None)
    return (text is not None, text or "", guard)


def _guard_terms(guard: object, conditions: bool = False) -> GuardTerms:
    if conditions and isinstance(guard, ConditionGuard):
        return ConditionTerms.of(guard)
    if not isinstance(guard, ShareGuard):
        # A condition on record attributes (``where:``) and the renderer was not told which
        # columns hold the attributes. Refuse rather than drop the term (which would hide rows
        # that check allows) or ignore the condition (which would show rows it denies).
        attributes = sorted({test.attribute for test in guard.tests}) if isinstance(
            guard, ConditionGuard) else []
        raise UsageError(
            f"this filter lets records through only where a condition holds ({guard}), on the "
            f"record attribute(s) {', '.join(map(repr, attributes))}; list filters render "
            "conditions on record attributes only when told where the attributes are: "
            "sql_where(..., attributes={attribute: column}), scope_clause(..., "
            "attributes={attribute: Column}) or scope_q(..., attributes={attribute: field}); "
            "otherwise filter those rows with Authorizer.check, or grant the list view a "
            "permission without `where:`")
    return GuardTerms(tuple(sorted(guard.levels)), tuple(sorted(guard.accounts)),
                      tuple(sorted(guard.departments)))


def _null_department_owners(coverage: Coverage, domain: str, authz: Authorizer,
                            members: Mapping[str, frozenset[str]],
                            departments: frozenset[str]) -> tuple[str, ...]:
    # A row without a department is in its owner's current department: it passes when that
    # department passes (for any owner, or for this owner through a pair).
    owners: set[str] = set()
    for department in departments:
        owners.update(members.get(department, ()))
    for owner, depts in coverage.owner_departments.items():
        account = authz.account(owner, domain=domain)
        if account is not None and account.department and account.department in depts:
            owners.add(owner)
    owners.difference_update(coverage.owners)  # already passes on the owner alone
    return tuple(sorted(owners))
