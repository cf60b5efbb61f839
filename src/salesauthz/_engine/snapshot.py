"""One domain's rules, compiled and immutable: the data the decision semantics read.

A :class:`Snapshot` holds no behaviour of its own beyond lookups; what its data *means* for a
decision is :mod:`salesauthz._engine.semantics`. Snapshots are published by
:class:`~salesauthz._engine.state.DomainState` and read without locks: a check sees either the
whole old snapshot or the whole new one, never half a change.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import NamedTuple

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
    """An account's facts (``status`` is ``None`` when rules name it but it was never registered)."""

    status: str | None
    department: str | None
    parent: str | None
    roles: frozenset[str]
    grants: tuple[Permission, ...]


NO_ROLES: frozenset[str] = frozenset()
NO_ACCOUNT = AccountInfo(None, None, None, NO_ROLES, ())


# Thousands of rules share a few scope and expiry texts; bounded, so hostile input cannot grow them.
_parse_scope = lru_cache(maxsize=4096)(parse_scope)
_parse_expiry = lru_cache(maxsize=4096)(R.parse_expiry)


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

    def account(self, name: str) -> AccountInfo:
        return self.accounts.get(name, NO_ACCOUNT)

    def department_of(self, account: str | None) -> str | None:
        return self.homes.get(account) if account is not None else None

    def role_closure(self, role: str) -> frozenset[str]:
        """The role and every role it inherits."""
        return frozenset(inherited for inherited, _ in self.role_paths.get(role, ()))

    def roles_of(self, account: str) -> frozenset[str]:
        """Every role the account holds, directly or through inheritance."""
        return frozenset(inherited for assigned in self.account(account).roles
                         for inherited, _ in self.role_paths.get(assigned, ()))

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
