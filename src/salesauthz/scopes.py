"""Data scopes and what they cover.

A *scope* is which records a permission reaches, relative to the account holding it
(DESIGN.md rule 3). A :class:`Coverage` is what a scope (or a union or intersection of scopes)
resolves to for one account: the set of records as data — everything, some owners, some
departments, owner×department pairs (which only intersections produce, e.g. a sub-account's
``own`` capped by its parent's ``team``), and *guarded* terms: records of a plain coverage that
also carry a share matching each of a term's :class:`ShareGuard` (the ``shared`` scope). The same
object decides point checks and becomes the ``WHERE`` clause of list views, so the two cannot
disagree.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import Any, Final, NamedTuple

from .conditions import Condition, ConditionGuard, RequirementGuard, decode_scope, encode_scope

__all__ = ["Condition", "ConditionGuard", "Coverage", "Guarded", "RequirementGuard", "Scope",
           "ScopeKind", "ShareGuard", "parse_scope"]


class ScopeKind(StrEnum):
    """The kinds of data scope, from narrowest to widest (``custom`` is not ordered by kind)."""

    OWN = "own"
    SHARED = "shared"
    SUBORDINATES = "subordinates"
    TEAM = "team"
    SUBORDINATE_TREE = "subordinate_tree"
    DEPARTMENT_TREE = "department_tree"
    CUSTOM = "custom"
    ALL = "all"


_CUSTOM_PREFIX: Final = "custom:"


@dataclass(frozen=True, slots=True)
class Scope:
    """A data scope. ``departments`` is only used by ``custom`` (the listed department subtrees);
    ``condition`` (``where:`` tests on record attributes, ``requires:`` on the request context)
    narrows it further: a record is reached when the scope covers it *and* the condition holds."""

    kind: ScopeKind
    departments: frozenset[str] = frozenset()
    condition: Condition | None = None

    @classmethod
    def of(cls, kind: str | ScopeKind, departments: Iterable[str] = ()) -> Scope:
        """Build a scope, checking that ``custom`` lists departments and the others do not."""
        scope_kind = ScopeKind(kind)
        depts = frozenset(departments)
        if scope_kind is ScopeKind.CUSTOM and not depts:
            raise ValueError("a custom scope must list at least one department")
        if scope_kind is not ScopeKind.CUSTOM and depts:
            raise ValueError(f"scope {scope_kind.value!r} takes no department list")
        return cls(scope_kind, depts)

    def encode(self) -> list[str]:
        """The stored forms: one string per rule (a custom scope is one rule per department); a
        conditioned scope is canonical JSON in brackets (see :mod:`salesauthz.conditions`)."""
        if self.kind is ScopeKind.CUSTOM:
            words = [_CUSTOM_PREFIX + d for d in sorted(self.departments)]
        else:
            words = [self.kind.value]
        if self.condition is None:
            return words
        return [encode_scope(word, self.condition) for word in words]

    @property
    def bare(self) -> Scope:
        """This scope without its condition."""
        return self if self.condition is None else Scope(self.kind, self.departments)

    def __str__(self) -> str:
        if self.kind is ScopeKind.CUSTOM:
            text = "custom[" + ", ".join(sorted(self.departments)) + "]"
        else:
            text = self.kind.value
        return text if self.condition is None else f"{text} {self.condition}"


OWN: Final = Scope(ScopeKind.OWN)
TEAM: Final = Scope(ScopeKind.TEAM)
DEPARTMENT_TREE: Final = Scope(ScopeKind.DEPARTMENT_TREE)
ALL: Final = Scope(ScopeKind.ALL)


SCOPE_WORDS: Final = tuple(k.value for k in ScopeKind if k is not ScopeKind.CUSTOM)
"""The scopes written as one word (``custom`` lists departments)."""


def parse_scope(text: str) -> Scope:
    """Parse the stored form of one scope: one of :data:`SCOPE_WORDS` or
    ``custom:<department>`` (everything after the first colon is the department name, so names
    may contain colons), or a conditioned scope (canonical JSON in brackets, starting ``[``)."""
    if text.startswith("["):
        word, condition = decode_scope(text)
        return _with_condition(parse_scope(word), condition)
    if text.startswith(_CUSTOM_PREFIX):
        department = text[len(_CUSTOM_PREFIX) :]
        if not department:
            raise ValueError("scope 'custom:' must name a department, e.g. custom:east-2")
        return Scope(ScopeKind.CUSTOM, frozenset((department,)))
    try:
        kind = ScopeKind(text)
    except ValueError:
        raise ValueError(
            f"unknown scope {text!r}: expected {', '.join(SCOPE_WORDS)} or custom:<department>"
        ) from None
    if kind is ScopeKind.CUSTOM:
        raise ValueError("scope 'custom' must name a department, e.g. custom:east-2")
    return Scope(kind)


def _with_condition(scope: Scope, condition: Condition) -> Scope:
    return Scope(scope.kind, scope.departments, condition)


_EMPTY_PAIRS: Final[Mapping[str, frozenset[str]]] = MappingProxyType({})


ShareLike = tuple[str, str | None, str | None]
"""What a guard reads of a share: ``(level, account, department)`` — a :class:`salesauthz.Share`."""


@dataclass(frozen=True, slots=True)
class ShareGuard:
    """"The record carries a share at one of ``levels`` naming one of ``accounts`` or one of
    ``departments``" — what the ``shared`` scope reaches for one account and action (the levels
    that include the action; the account itself; its departments and every department above
    them)."""

    levels: frozenset[str]
    accounts: frozenset[str]
    departments: frozenset[str]
    # Every share that matches, as (level, account, None) / (level, None, department) tuples: a
    # record's shares are tested with one C-level set operation on the hot path.
    keys: frozenset[ShareLike] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        keys: set[ShareLike] = {(level, account, None) for level in self.levels
                                for account in self.accounts}
        keys.update((level, None, department) for level in self.levels
                    for department in self.departments)
        object.__setattr__(self, "keys", frozenset(keys))

    def holds(self, owner: str | None, shares: tuple[ShareLike, ...],
              attributes: Mapping[str, Any] | None, context: Mapping[str, Any] | None) -> bool:
        return self.matches(shares)

    def matches(self, shares: Iterable[ShareLike]) -> bool:
        return not self.keys.isdisjoint(shares)

    def __str__(self) -> str:
        names = sorted(self.accounts) + sorted(self.departments)
        return f"shared {'/'.join(sorted(self.levels))} with {', '.join(names)}"


Guard = ShareGuard | ConditionGuard | RequirementGuard
"""A test a guarded term's records pass besides its base: a share (the ``shared`` scope), a
condition on record attributes (``where:``) or a requirement on the request context
(``requires:``)."""


class Guarded(NamedTuple):
    """Records of ``base`` (a plain coverage: no guarded terms) that satisfy every guard."""

    base: Coverage
    # Each is a Guard (ShareGuard | ConditionGuard | RequirementGuard); typed Any until the
    # checker's analyses, written for share guards only, handle the other two.
    guards: frozenset[Any]

    def covers(self, owner: str | None, department: str | None,
               homes: Mapping[str, str | None] | None, shares: Iterable[ShareLike],
               attributes: Mapping[str, Any] | None = None,
               context: Mapping[str, Any] | None = None) -> bool:
        if not self.base.covers(owner, department, homes):
            return False
        if type(shares) is not tuple:
            shares = tuple(shares)
        for guard in self.guards:  # noqa: SIM110  # a generator would allocate cells per call
            if not guard.holds(owner, shares, attributes, context):
                return False
        return True


@dataclass(frozen=True, slots=True, eq=False)
class Coverage:
    """A set of records, as data: a record ``(owner, department, shares)`` is covered when

    - ``everything`` is true, or
    - its owner is in ``owners``, or
    - its department is in ``departments``, or
    - its department is in ``owner_departments[owner]``, or
    - a term of ``guarded`` covers it (its base covers the record and its shares match every
      guard of the term).

    Closed under :meth:`union` and :meth:`intersect`. Instances are immutable; treat
    ``owner_departments`` as read-only.
    """

    everything: bool = False
    owners: frozenset[str] = frozenset()
    departments: frozenset[str] = frozenset()
    owner_departments: Mapping[str, frozenset[str]] = field(default_factory=lambda: _EMPTY_PAIRS)
    guarded: frozenset[Guarded] = frozenset()
    # When every guarded term is one guard over everything (no ceiling folded in: the usual
    # case), the shares that match any of them, so that a check tests a record's shares with one
    # set operation; otherwise None.
    share_keys: frozenset[ShareLike] | None = field(default=None, init=False, repr=False,
                                                    compare=False)

    # Likewise when every guarded term is one condition (where:) over everything: those
    # conditions, tested in turn without building the terms' records.
    condition_guards: tuple[ConditionGuard, ...] | None = field(default=None, init=False,
                                                                repr=False, compare=False)
    # Whether a test reads the record's department (so a record without one needs its owner's
    # looked up): not when the set is only owners and terms over every record.
    reads_department: bool = field(default=False, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "reads_department", bool(
            self.departments or self.owner_departments
            or any(not term.base.everything for term in self.guarded)))
        if not self.guarded:
            return
        if all(term.base.everything and len(term.guards) == 1
               and all(isinstance(g, ShareGuard) for g in term.guards)
               for term in self.guarded):
            object.__setattr__(self, "share_keys", frozenset().union(
                *(guard.keys for term in self.guarded for guard in term.guards)))
        elif all(term.base.everything and len(term.guards) == 1
                 and all(isinstance(g, ConditionGuard) for g in term.guards)
                 for term in self.guarded):
            object.__setattr__(self, "condition_guards", tuple(
                guard for term in self.guarded for guard in term.guards))

    def covers(self, owner: str | None, department: str | None,
               homes: Mapping[str, str | None] | None = None,
               shares: Iterable[ShareLike] = (), attributes: Mapping[str, Any] | None = None,
               context: Mapping[str, Any] | None = None) -> bool:
        """Whether the record owned by ``owner`` in ``department`` (with ``shares`` and
        ``attributes``) is in this set, for a request with ``context`` (``None``: none, so every
        requirement fails; give ``now`` in it for hours).

        A record with no department is in its owner's current (main) department: give ``homes``
        (account → department) to have it looked up, as every decision does.
        """
        if self.everything or owner in self.owners:
            return True
        if not department and homes is not None and self.reads_department:
            department = homes.get(owner)  # type: ignore[arg-type]  # None: no such account
        if department in self.departments:
            return True
        if self.owner_departments:
            depts = self.owner_departments.get(owner)  # type: ignore[arg-type]  # None: no entry
            if depts is not None and department in depts:
                return True
        # Guarded terms need record data: without shares, attributes or a context this is a
        # comparison of record sets by owner and department (the delegation rule's), where
        # only the plain part counts.
        if self.guarded and (shares or attributes is not None or context is not None):
            keys = self.share_keys
            if keys is not None:  # share guards only: one set operation on the hot path
                return bool(shares) and not keys.isdisjoint(shares)
            conditions = self.condition_guards
            if conditions is not None:  # conditions only, over every record
                for guard in conditions:  # noqa: SIM110  # a generator would allocate cells
                    if guard.holds(owner, (), attributes, None):
                        return True
                return False
            # A loop, not any(<generator>): a generator closing over the arguments would make
            # every call (the plain ones too) allocate five cells (~3x the cost of this method).
            for term in self.guarded:
                if term.covers(owner, department, None, shares, attributes, context):
                    return True
        return False

    def given(self, context: Mapping[str, Any] | None) -> Coverage:
        """This coverage for requests with ``context``: terms whose requirements fail dropped,
        the requirements of the others (which hold) removed (list views: what remains is about
        records only)."""
        if not self.guarded or not any(isinstance(g, RequirementGuard)
                                       for term in self.guarded for g in term.guards):
            return self
        terms: set[Guarded] = set()
        for term in self.guarded:
            requirements = [g for g in term.guards if isinstance(g, RequirementGuard)]
            if not all(g.holds(None, (), None, context) for g in requirements):
                continue
            rest = term.guards.difference(requirements)
            if not rest:
                if term.base.everything:
                    return EVERYTHING
                terms.add(Guarded(term.base, frozenset()))
            else:
                terms.add(Guarded(term.base, rest))
        plain = self.plain
        result = plain
        for term in terms:
            result = result.union(term.base if not term.guards
                                  else Coverage(guarded=frozenset((term,))))
        return result

    @classmethod
    def conditioned(cls, base: Coverage, guards: Iterable[Guard]) -> Coverage:
        """The records of ``base`` (any coverage) that also pass every one of ``guards``."""
        extra = frozenset(guards)
        if not extra or base.is_empty:
            return base
        terms: set[Guarded] = set()
        plain = base.plain
        if not plain.is_empty:
            terms.add(Guarded(plain, extra))
        for term in base.guarded:
            terms.add(Guarded(term.base, term.guards | extra))
        return _normalise(frozenset(), frozenset(), _EMPTY_PAIRS, frozenset(terms))

    @property
    def plain(self) -> Coverage:
        """This coverage without its guarded terms."""
        if not self.guarded:
            return self
        return Coverage(self.everything, self.owners, self.departments, self.owner_departments)

    @property
    def is_empty(self) -> bool:
        return not (self.everything or self.owners or self.departments or self.owner_departments
                    or self.guarded)

    @classmethod
    def shared(cls, guard: ShareGuard) -> Coverage:
        """The records carrying a share that matches ``guard``."""
        if not guard.levels or not (guard.accounts or guard.departments):
            return NOTHING
        return cls(guarded=frozenset((Guarded(EVERYTHING, frozenset((guard,))),)))

    def union(self, other: Coverage) -> Coverage:
        if self.everything or other.is_empty:
            return self
        if other.everything or self.is_empty:
            return other
        pairs = _merge_pairs(self.owner_departments, other.owner_departments)
        return _normalise(self.owners | other.owners, self.departments | other.departments, pairs,
                          self.guarded | other.guarded)

    def intersect(self, other: Coverage) -> Coverage:
        if self.everything:
            return other
        if other.everything:
            return self
        if not (self.guarded or other.guarded):
            return _intersect_plain(self, other)
        # (P1 ∪ T1) ∩ (P2 ∪ T2): distribute over the terms; a term keeps the guards of both sides.
        mine, theirs = self.plain, other.plain
        plain = _intersect_plain(mine, theirs)
        terms: set[Guarded] = set()
        for term in self.guarded:
            terms.add(Guarded(_intersect_plain(term.base, theirs), term.guards))
            for their_term in other.guarded:
                terms.add(Guarded(_intersect_plain(term.base, their_term.base),
                                  term.guards | their_term.guards))
        for term in other.guarded:
            terms.add(Guarded(_intersect_plain(mine, term.base), term.guards))
        return _normalise(plain.owners, plain.departments, plain.owner_departments,
                          frozenset(terms)) if not plain.everything else EVERYTHING

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Coverage):
            return NotImplemented
        return (
            self.everything == other.everything
            and self.owners == other.owners
            and self.departments == other.departments
            and dict(self.owner_departments) == dict(other.owner_departments)
            and self.guarded == other.guarded
        )

    def __hash__(self) -> int:
        return hash((self.everything, self.owners, self.departments,
                     frozenset(self.owner_departments.items()), self.guarded))

    def __repr__(self) -> str:
        if self.everything:
            return "Coverage(everything)"
        parts = []
        if self.owners:
            parts.append(f"owners={sorted(self.owners)}")
        if self.departments:
            parts.append(f"departments={sorted(self.departments)}")
        if self.owner_departments:
            pairs = {o: sorted(d) for o, d in sorted(self.owner_departments.items())}
            parts.append(f"owner_departments={pairs}")
        for term in sorted(self.guarded, key=repr):
            guards = " and ".join(sorted(str(g) for g in term.guards))
            parts.append(guards if term.base.everything else f"{term.base!r} {guards}")
        return "Coverage(" + ", ".join(parts or ["nothing"]) + ")"


NOTHING: Final = Coverage()
EVERYTHING: Final = Coverage(everything=True)


def _intersect_plain(a: Coverage, b: Coverage) -> Coverage:
    """``a ∩ b`` for coverages without guarded terms."""
    if a.everything:
        return b
    if b.everything:
        return a
    owners = a.owners & b.owners
    departments = a.departments & b.departments
    pairs: dict[str, set[str]] = {}

    def add(owner: str, depts: Iterable[str]) -> None:
        pairs.setdefault(owner, set()).update(depts)

    for owner in a.owners:  # owner ∈ A.owners and (dept ∈ B.departments or B pair)
        if b.departments:
            add(owner, b.departments)
        if owner in b.owner_departments:
            add(owner, b.owner_departments[owner])
    for owner in b.owners:
        if a.departments:
            add(owner, a.departments)
        if owner in a.owner_departments:
            add(owner, a.owner_departments[owner])
    for owner, depts in a.owner_departments.items():
        add(owner, depts & b.departments)
        if owner in b.owner_departments:
            add(owner, depts & b.owner_departments[owner])
    for owner, depts in b.owner_departments.items():
        add(owner, depts & a.departments)
    frozen = {o: frozenset(d) for o, d in pairs.items() if d}
    return _normalise(owners, departments, frozen)


def _merge_pairs(
    a: Mapping[str, frozenset[str]], b: Mapping[str, frozenset[str]]
) -> dict[str, frozenset[str]]:
    if not a:
        return dict(b)
    merged = dict(a)
    for owner, depts in b.items():
        merged[owner] = merged[owner] | depts if owner in merged else depts
    return merged


def _normalise(
    owners: frozenset[str], departments: frozenset[str], pairs: Mapping[str, frozenset[str]],
    guarded: frozenset[Guarded] = frozenset(),
) -> Coverage:
    # Drop pairs already implied by an owner or a department, and terms with nothing left in
    # their base, so equal sets compare equal.
    kept: dict[str, frozenset[str]] = {}
    for owner, depts in pairs.items():
        if owner in owners:
            continue
        rest = depts - departments
        if rest:
            kept[owner] = rest
    if guarded:
        guarded = frozenset(term for term in guarded if not term.base.is_empty)
    return Coverage(False, owners, departments, MappingProxyType(kept) if kept else _EMPTY_PAIRS,
                    guarded)
