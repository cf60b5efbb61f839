"""The value types of the public API: records, decisions, scope filters, account views.

A leaf module: it depends on nothing in salesauthz but :mod:`salesauthz.scopes`, so every layer
(the engine, the facade, filters, middleware, the checker) can share these types.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from ._rules import Rule
from .scopes import Coverage, Scope, ShareGuard

__all__ = ["AccountView", "CacheInfo", "Decision", "Record", "ScopeFilter", "Share"]


class Share(NamedTuple):
    """A share on a record (相关团队, a Salesforce account team or manual share): the record is
    also reachable at ``level`` (a share level the policy's ``sharing`` section declares for the
    record's type) by ``account``, or by every account of ``department`` and of the departments
    below it. Exactly one of ``account`` and ``department`` is given.

    >>> Share("read_write", account="rep_w1")
    Share(level='read_write', account='rep_w1', department=None)
    """

    level: str
    account: str | None = None
    department: str | None = None

    @classmethod
    def checked(cls, level: str, *, account: str | None = None,
                department: str | None = None) -> Share:
        """A share, refusing one that names neither or both of ``account`` and ``department``."""
        if (account is None) == (department is None):
            raise ValueError("a share names exactly one of account= and department=")
        return cls(level, account, department)


class Record(NamedTuple):
    """A protected record: its type, owner account and department, and its shares.

    When ``department`` is ``None`` the record is taken to be in its owner's *current* main
    department. ``shares`` are data of the record, like its owner: the CRM stores them and
    salesauthz decides with them (the ``shared`` scope). ``attributes`` are the record's values
    that conditions test (``{"region": "East", "amount": 120000}``; a missing one fails every
    test but ``null``). ``id`` is carried through to decision logs only.
    """

    type: str
    owner: str | None = None
    department: str | None = None
    id: str | None = None
    shares: tuple[Share, ...] = ()
    attributes: Mapping[str, Any] | None = None


class AccountView(NamedTuple):
    """What the rules say about one account (read-only): its status (``None`` when rules name
    it but it was never registered), main department, parent account, permanently assigned
    roles, auxiliary departments, reporting superior and timed role assignments (role → expiry in
    seconds since the epoch)."""

    name: str
    domain: str
    status: str | None
    department: str | None
    parent: str | None
    roles: frozenset[str]
    also_in: frozenset[str] = frozenset()
    reports_to: str | None = None
    timed_roles: Mapping[str, float] = {}  # a NamedTuple default, never mutated


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
    the parent ceiling of a sub-account. ``missing_context`` names the request-context keys a
    requirement needed and did not find met (``mfa``, ``ip``, ``hours``): a web app may answer
    a step-up (401) rather than 403 when the denial is only for them.
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
    missing_context: tuple[str, ...] = ()

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

    @property
    def needs_shares(self) -> bool:
        """Whether some records pass only through a share (render with a share table)."""
        return any(isinstance(guard, ShareGuard) for term in self.coverage.guarded
                   for guard in term.guards)

    def matches(self, owner: str | None, department: str | None,
                shares: tuple[Share, ...] = (), attributes: Mapping[str, Any] | None = None) -> bool:
        """Whether a record with this owner, department, shares and attributes passes the
        filter (requirements on the request context were settled when it was made)."""
        return self.coverage.covers(owner, department, shares=shares,
                                    attributes=attributes if attributes is not None else {})

    def explain(self) -> str:
        head = f"{self.account} may {self.action} {self.type} records in {self.domain}"
        if self.nothing:
            return f"{self.account} may {self.action} no {self.type} record in {self.domain}"
        if self.everything:
            return head + ": all of them"
        parts = _plain_parts(self.coverage)
        for term in sorted(self.coverage.guarded, key=repr):
            guards = " and ".join(sorted(str(g) for g in term.guards))
            if not term.base.everything:
                guards += " (and " + " or ".join(_plain_parts(term.base)) + ")"
            parts.append(guards)
        return head + " " + "; or ".join(parts)


def _plain_parts(coverage: Coverage) -> list[str]:
    """The owners, departments and owner × department pairs of a coverage, in words."""
    parts = []
    if coverage.owners:
        parts.append("owned by " + ", ".join(sorted(coverage.owners)))
    if coverage.departments:
        parts.append("in department " + ", ".join(sorted(coverage.departments)))
    for owner, depts in sorted(coverage.owner_departments.items()):
        parts.append(f"owned by {owner} and in department " + ", ".join(sorted(depts)))
    return parts
