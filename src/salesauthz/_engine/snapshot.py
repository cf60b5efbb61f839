"""One domain's rules, compiled and immutable: the data the decision semantics read.

A :class:`Snapshot` holds no behaviour of its own beyond lookups; what its data *means* for a
decision is :mod:`salesauthz._engine.semantics`. Snapshots are published by
:class:`~salesauthz._engine.state.DomainState` and read without locks: a check sees either the
whole old snapshot or the whole new one, never half a change.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, NamedTuple

from salesauthz import _rules as R
from salesauthz._rules import Rule
from salesauthz.scopes import Coverage, Scope, parse_scope

__all__ = ["AccountInfo", "EffectiveMap", "FieldRule", "Key", "Permission", "Snapshot",
           "parse_permission"]

Key = tuple[str, str]
"""``(type, action)``."""

EffectiveMap = dict[Key, Coverage]
"""``(type, action) → Coverage``: what one account may do, wildcards resolved."""


class Permission(NamedTuple):
    """One ``p`` rule, parsed."""

    type: str
    action: str
    scope: Scope
    expires: float | None
    rule: Rule


class FieldRule(NamedTuple):
    """One ``p5`` rule, parsed: ``mode`` for ``field`` of ``type`` (on records within ``scope``)."""

    type: str
    field: str
    mode: str
    scope: Scope | None
    rule: Rule


class AccountInfo(NamedTuple):
    """An account's facts (``status`` is ``None`` when rules name it but it was never registered).

    ``department`` is its main department, ``also_in`` its auxiliary ones; ``roles`` are its
    permanently assigned roles and ``timed_roles`` those assigned until a moment (role → the
    latest expiry of its ``p8`` rules; a role assigned both ways is only in ``roles``);
    ``reports_to`` is its reporting superior (visibility only, never a ceiling); ``attributes``
    its attributes (name → JSON value, sorted by name; an attribute stored twice is left out).
    """

    status: str | None
    department: str | None
    parent: str | None
    roles: frozenset[str]
    grants: tuple[Permission, ...]
    also_in: frozenset[str] = frozenset()
    reports_to: str | None = None
    timed_roles: tuple[tuple[str, float], ...] = ()
    attributes: tuple[tuple[str, Any], ...] = ()


NO_ROLES: frozenset[str] = frozenset()
NO_ACCOUNT = AccountInfo(None, None, None, NO_ROLES, ())


# Thousands of rules share a few scope and expiry texts; bounded, so hostile input cannot grow them.
_parse_scope = lru_cache(maxsize=4096)(parse_scope)
_parse_expiry = lru_cache(maxsize=4096)(R.parse_expiry)
parse_expiry = _parse_expiry


def parse_permission(rule: Rule) -> Permission:
    """A ``p`` rule as a :class:`Permission` (the rule's shape was checked by ``check_rule``)."""
    _, _subject, _domain, typ, action, scope_text, expires_text = rule
    expires = _parse_expiry(expires_text) if expires_text else None
    return Permission(typ, action, _parse_scope(scope_text), expires, rule)


def parse_field_rule(rule: Rule) -> FieldRule:
    """A ``p5`` rule as a :class:`FieldRule`."""
    return FieldRule(rule[3], rule[4], rule[5], _parse_scope(rule[6]) if rule[6] else None, rule)


@dataclass(frozen=True, slots=True, eq=False)
class Snapshot:
    """An immutable view of one domain, ready for decisions.

    ``stamps``/``base`` version each account's effective map: ``stamps.get(account, base)`` moves
    whenever anything that map depends on changes (see ``DomainState``).
    """

    name: str
    vocabulary: Mapping[str, frozenset[str]]
    roles: frozenset[str]
    role_parents: Mapping[str, frozenset[str]]
    role_permissions: Mapping[str, tuple[Permission, ...]]
    # role -> (inherited role, path from the role to it), breadth first: the role itself first
    role_paths: Mapping[str, tuple[tuple[str, tuple[str, ...]], ...]]
    department_parent: Mapping[str, str | None]
    subtree: Mapping[str, frozenset[str]]  # department -> itself and everything below it
    accounts: Mapping[str, AccountInfo]
    homes: Mapping[str, str | None]  # account -> its department (records default to it)
    children: Mapping[str, frozenset[str]]  # account -> its direct sub-accounts
    stamps: Mapping[str, int]
    base: int
    role_fields: Mapping[str, tuple[FieldRule, ...]]  # role -> its field rules (p5)
    field_vocabulary: Mapping[str, frozenset[str]]  # type -> declared fields (p6)
    sharing: Mapping[str, Mapping[str, frozenset[str]]]  # type -> share level -> actions (p7)
    reports: Mapping[str, frozenset[str]]  # account -> its direct reports (g6)
    settings: Mapping[str, str] = field(default_factory=dict)  # p11: name -> value
    conditioned: bool = False  # some permission of the domain carries a condition

    @property
    def time_zone(self) -> str:
        """The domain's time zone (``requires: hours``), UTC unless set."""
        return self.settings.get("time_zone", "UTC")

    def attributes_of(self, account: str) -> dict[str, Any]:
        return dict(self.account(account).attributes)

    def account(self, name: str) -> AccountInfo:
        return self.accounts.get(name, NO_ACCOUNT)

    def departments_of(self, account: str, home: str | None = None, *,
                       moved: bool = False) -> tuple[str, ...]:
        """The account's known departments: its main one first, then its auxiliary ones (with
        ``moved=True``, ``home`` instead of its current main department)."""
        info = self.account(account)
        main = home if moved else info.department
        found = [main] if main is not None and main in self.department_parent else []
        found.extend(sorted(d for d in info.also_in if d in self.department_parent and d != main))
        return tuple(found)

    def ancestry(self, department: str) -> tuple[str, ...]:
        """The department and every department above it (a loop in bad data just stops)."""
        found = [department]
        parent = self.department_parent.get(department)
        while parent is not None and parent not in found:
            found.append(parent)
            parent = self.department_parent.get(parent)
        return tuple(found)

    def levels_with(self, type: str, action: str) -> frozenset[str]:
        """The share levels of ``type`` that include ``action``."""
        return frozenset(level for level, actions in self.sharing.get(type, {}).items()
                         if action in actions)

    def reports_below(self, account: str, *, transitive: bool) -> frozenset[str]:
        """The account's direct reports, or everyone below it in the reporting line."""
        direct = self.reports.get(account, frozenset())
        if not transitive:
            return direct
        found: set[str] = set()
        stack = list(direct)
        while stack:
            name = stack.pop()
            if name not in found and name != account:
                found.add(name)
                stack.extend(self.reports.get(name, ()))
        return frozenset(found)

    def department_of(self, account: str | None) -> str | None:
        return self.homes.get(account) if account is not None else None

    def role_closure(self, role: str) -> frozenset[str]:
        """The role and every role it inherits."""
        return frozenset(inherited for inherited, _ in self.role_paths.get(role, ()))

    def roles_of(self, account: str) -> frozenset[str]:
        """Every role the account holds, directly or through inheritance (timed assignments
        included, expired or not)."""
        info = self.account(account)
        assigned = [*info.roles, *(role for role, _ in info.timed_roles)]
        return frozenset(inherited for role in assigned
                         for inherited, _ in self.role_paths.get(role, ()))

    def descendants_of(self, accounts: Iterable[str]) -> set[str]:
        """The sub-accounts of any of ``accounts``, transitively."""
        found: set[str] = set()
        stack = list(accounts)
        children = self.children
        while stack:
            for child in children.get(stack.pop(), ()):
                if child not in found:
                    found.add(child)
                    stack.append(child)
        return found

    def members(self, departments: Iterable[str]) -> frozenset[str]:
        """The accounts whose department is one of ``departments``."""
        wanted = set(departments)
        return frozenset(name for name, home in self.homes.items() if home in wanted)
