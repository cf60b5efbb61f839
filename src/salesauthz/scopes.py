"""Data scopes and what they cover.

A *scope* is which records a permission reaches, relative to the account holding it
(DESIGN.md rule 3). A :class:`Coverage` is what a scope (or a union or intersection of scopes)
resolves to for one account: the set of records as data — everything, some owners, some
departments, and owner×department pairs (which only intersections produce, e.g. a sub-account's
``own`` capped by its parent's ``team``). The same object decides point checks and becomes the
``WHERE`` clause of list views, so the two cannot disagree.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import Final

__all__ = ["Coverage", "Scope", "ScopeKind", "parse_scope"]


class ScopeKind(StrEnum):
    """The kinds of data scope, from narrowest to widest (``custom`` is not ordered by kind)."""

    OWN = "own"
    TEAM = "team"
    DEPARTMENT_TREE = "department_tree"
    CUSTOM = "custom"
    ALL = "all"


_CUSTOM_PREFIX: Final = "custom:"


@dataclass(frozen=True, slots=True)
class Scope:
    """A data scope. ``departments`` is only used by ``custom`` (the listed department subtrees)."""

    kind: ScopeKind
    departments: frozenset[str] = frozenset()

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
        """The stored forms: one string per rule (a custom scope is one rule per department)."""
        if self.kind is ScopeKind.CUSTOM:
            return [_CUSTOM_PREFIX + d for d in sorted(self.departments)]
        return [self.kind.value]

    def __str__(self) -> str:
        if self.kind is ScopeKind.CUSTOM:
            return "custom[" + ", ".join(sorted(self.departments)) + "]"
        return self.kind.value


OWN: Final = Scope(ScopeKind.OWN)
TEAM: Final = Scope(ScopeKind.TEAM)
DEPARTMENT_TREE: Final = Scope(ScopeKind.DEPARTMENT_TREE)
ALL: Final = Scope(ScopeKind.ALL)


def parse_scope(text: str) -> Scope:
    """Parse the stored form of one scope: ``own``, ``team``, ``department_tree``, ``all`` or
    ``custom:<department>`` (everything after the first colon is the department name, so names
    may contain colons)."""
    if text.startswith(_CUSTOM_PREFIX):
        department = text[len(_CUSTOM_PREFIX) :]
        if not department:
            raise ValueError("scope 'custom:' must name a department, e.g. custom:east-2")
        return Scope(ScopeKind.CUSTOM, frozenset((department,)))
    try:
        kind = ScopeKind(text)
    except ValueError:
        raise ValueError(
            f"unknown scope {text!r}: expected own, team, department_tree, all or custom:<department>"
        ) from None
    if kind is ScopeKind.CUSTOM:
        raise ValueError("scope 'custom' must name a department, e.g. custom:east-2")
    return Scope(kind)


_EMPTY_PAIRS: Final[Mapping[str, frozenset[str]]] = MappingProxyType({})


@dataclass(frozen=True, slots=True, eq=False)
class Coverage:
    """A set of records, as data: a record ``(owner, department)`` is covered when

    - ``everything`` is true, or
    - its owner is in ``owners``, or
    - its department is in ``departments``, or
    - its department is in ``owner_departments[owner]``.

    Closed under :meth:`union` and :meth:`intersect`. Instances are immutable; treat
    ``owner_departments`` as read-only.
    """

    everything: bool = False
    owners: frozenset[str] = frozenset()
    departments: frozenset[str] = frozenset()
    owner_departments: Mapping[str, frozenset[str]] = field(default_factory=lambda: _EMPTY_PAIRS)

    def covers(self, owner: str | None, department: str | None,
               homes: Mapping[str, str | None] | None = None) -> bool:
        """Whether the record owned by ``owner`` in ``department`` is in this set.

        A record with no department is in its owner's current department: give ``homes``
        (account → department) to have it looked up, as every decision does.
        """
        if self.everything or owner in self.owners:
            return True
        if not department and homes is not None:
            department = homes.get(owner)  # type: ignore[arg-type]  # None: no such account
        if department in self.departments:
            return True
        if self.owner_departments:
            depts = self.owner_departments.get(owner)  # type: ignore[arg-type]  # None: no entry
            return depts is not None and department in depts
        return False

    @property
    def is_empty(self) -> bool:
        return not (self.everything or self.owners or self.departments or self.owner_departments)

    def union(self, other: Coverage) -> Coverage:
        if self.everything or other.is_empty:
            return self
        if other.everything or self.is_empty:
            return other
        pairs = _merge_pairs(self.owner_departments, other.owner_departments)
        return _normalise(self.owners | other.owners, self.departments | other.departments, pairs)

    def intersect(self, other: Coverage) -> Coverage:
        if self.everything:
            return other
        if other.everything:
            return self
        owners = self.owners & other.owners
        departments = self.departments & other.departments
        pairs: dict[str, set[str]] = {}

        def add(owner: str, depts: Iterable[str]) -> None:
            pairs.setdefault(owner, set()).update(depts)

        for owner in self.owners:  # owner ∈ A.owners and (dept ∈ B.departments or B pair)
            if other.departments:
                add(owner, other.departments)
            if owner in other.owner_departments:
                add(owner, other.owner_departments[owner])
        for owner in other.owners:
            if self.departments:
                add(owner, self.departments)
            if owner in self.owner_departments:
                add(owner, self.owner_departments[owner])
        for owner, depts in self.owner_departments.items():
            add(owner, depts & other.departments)
            if owner in other.owner_departments:
                add(owner, depts & other.owner_departments[owner])
        for owner, depts in other.owner_departments.items():
            add(owner, depts & self.departments)
        frozen = {o: frozenset(d) for o, d in pairs.items() if d}
        return _normalise(owners, departments, frozen)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Coverage):
            return NotImplemented
        return (
            self.everything == other.everything
            and self.owners == other.owners
            and self.departments == other.departments
            and dict(self.owner_departments) == dict(other.owner_departments)
        )

    def __hash__(self) -> int:
        return hash((self.everything, self.owners, self.departments,
                     frozenset(self.owner_departments.items())))

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
        return "Coverage(" + ", ".join(parts or ["nothing"]) + ")"


NOTHING: Final = Coverage()
EVERYTHING: Final = Coverage(everything=True)


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
    owners: frozenset[str], departments: frozenset[str], pairs: Mapping[str, frozenset[str]]
) -> Coverage:
    # Drop pairs already implied by an owner or a department, so equal sets compare equal.
    kept: dict[str, frozenset[str]] = {}
    for owner, depts in pairs.items():
        if owner in owners:
            continue
        rest = depts - departments
        if rest:
            kept[owner] = rest
    return Coverage(False, owners, departments, MappingProxyType(kept) if kept else _EMPTY_PAIRS)
