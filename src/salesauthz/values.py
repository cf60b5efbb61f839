"""The value types of the public API: records, decisions, scope filters, account views.

A leaf module: it depends on nothing in salesauthz but :mod:`salesauthz.scopes`, so every layer
(the engine, the facade, filters, middleware, the checker) can share these types.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import NamedTuple

from ._rules import Rule
from .scopes import Coverage, Scope

__all__ = ["AccountView", "CacheInfo", "Decision", "Record", "ScopeFilter"]


class Record(NamedTuple):
    """A protected record: its type, owner account and department.

    When ``department`` is ``None`` the record is taken to be in its owner's *current*
    department. ``id`` is carried through to decision logs only.
    """

    type: str
    owner: str | None = None
    department: str | None = None
    id: str | None = None


class AccountView(NamedTuple):
    """What the rules say about one account (read-only): its status (``None`` when rules name
    it but it was never registered), department, parent account and directly assigned roles."""

    name: str
    domain: str
    status: str | None
    department: str | None
    parent: str | None
    roles: frozenset[str]


class CacheInfo(NamedTuple):
    """Statistics of the effective-permission cache (hits are counted without a lock, so they
    are approximate under threads)."""

    hits: int
    misses: int
    maxsize: int
    currsize: int


@dataclass(frozen=True, slots=True)
class Decision:
    """The answer to a check, with why.

    ``reason`` is a sentence a person understands; ``rules`` are the Casbin rules that decided
    (the permissions that allowed, or the ones considered when none did); ``role`` is the role
    that allowed (``None`` for a direct grant or a deny); ``via`` the path from the account's
    assigned role to that role; ``steps`` is the chain of reasoning, one line per step, including
    the parent ceiling of a sub-account.
    """

    allowed: bool
    reason: str
    account: str
    action: str
    record: Record
    domain: str
    rules: tuple[Rule, ...] = ()
    role: str | None = None
    scope: Scope | None = None
    steps: tuple[str, ...] = ()
    via: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return self.allowed


@dataclass(frozen=True, slots=True)
class ScopeFilter:
    """Which records of ``type`` an account may ``action``, as data (for list views).

    ``nothing``: no record; ``everything``: every record of the domain; otherwise records whose
    owner is in ``owners``, or whose department is in ``departments``, or whose department is in
    ``owner_departments[owner]``. Department subtrees are already expanded and a sub-account's
    parent ceiling already applied, so this is exactly equivalent to
    :meth:`Authorizer.check <salesauthz.Authorizer.check>` for records whose department is known.
    """

    account: str
    action: str
    type: str
    domain: str
    coverage: Coverage

    @property
    def nothing(self) -> bool:
        return self.coverage.is_empty

    @property
    def everything(self) -> bool:
        return self.coverage.everything

    @property
    def owners(self) -> frozenset[str]:
        return self.coverage.owners

    @property
    def departments(self) -> frozenset[str]:
        return self.coverage.departments

    @property
    def owner_departments(self) -> Mapping[str, frozenset[str]]:
        return self.coverage.owner_departments

    def matches(self, owner: str | None, department: str | None) -> bool:
        """Whether a record with this owner and department passes the filter."""
        return self.coverage.covers(owner, department)

    def explain(self) -> str:
        head = f"{self.account} may {self.action} {self.type} records in {self.domain}"
        if self.nothing:
            return f"{self.account} may {self.action} no {self.type} record in {self.domain}"
        if self.everything:
            return head + ": all of them"
        parts = []
        if self.owners:
            parts.append("owned by " + ", ".join(sorted(self.owners)))
        if self.departments:
            parts.append("in department " + ", ".join(sorted(self.departments)))
        for owner, depts in sorted(self.owner_departments.items()):
            parts.append(f"owned by {owner} and in department " + ", ".join(sorted(depts)))
        return head + " " + "; or ".join(parts)
