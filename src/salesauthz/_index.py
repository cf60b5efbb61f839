"""The compiled decision index (private).

:class:`DomainState` is the mutable master copy of one domain's rules, changed only under the
authorizer's write lock. After each change it publishes an immutable :class:`DomainIndex`
snapshot, which readers use without locks: a check sees either the whole old snapshot or the
whole new one, never half a change.

Each snapshot carries *stamps*: a version per account (``stamps.get(account, base)``). A change to
roles, departments or the vocabulary moves ``base`` (every cached effective map of the domain goes
stale); a change to one account's facts gives only that account and its sub-accounts new stamps.
Stamps come from one process-wide counter, so they never repeat.
"""

from __future__ import annotations

import gc
import itertools
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import NamedTuple

from . import _rules as R
from ._rules import Rule
from .scopes import EVERYTHING, Coverage, Scope, ScopeKind, parse_scope

_stamp_counter = itertools.count(1)

EffectiveMap = dict[tuple[str, str], Coverage]
"""``(type, action) → Coverage``: what one account may do, wildcards resolved, ceiling folded in."""


def intersect_maps(held: EffectiveMap, ceiling: EffectiveMap) -> EffectiveMap:
    """What ``held`` allows within ``ceiling``, key by key (a sub-account under its parent)."""
    capped: EffectiveMap = {}
    for key, coverage in held.items():
        limit = ceiling.get(key)
        if limit is not None:
            both = coverage.intersect(limit)
            if not both.is_empty:
                capped[key] = both
    return capped


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
    status: str | None  # None: referenced by rules but never registered (denied like unknown)
    department: str | None
    parent: str | None
    roles: frozenset[str]
    grants: tuple[Permission, ...]


_NO_ROLES: frozenset[str] = frozenset()
_NO_ACCOUNT = AccountInfo(None, None, None, _NO_ROLES, ())


def _rule_of(permission: Permission) -> Rule:
    return permission.rule


_BULK = 10_000  # rules: above this, a first load pauses the cyclic garbage collector


@contextmanager
def _collection_paused(pause: bool) -> Iterator[None]:
    """Pause the cyclic GC while a bulk load allocates millions of long-lived objects that
    cannot form garbage cycles: otherwise every full collection re-scans all of them, which
    nearly doubles the load time of a million rules. The previous state is restored (a caller
    that disabled the GC keeps it disabled)."""
    if not pause or not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()

_scope_cache: dict[str, Scope] = {}
_expiry_cache: dict[str, float] = {}


def parse_permission(rule: Rule) -> Permission:
    _, _sub, _dom, typ, act, scope_text, expires_text = rule
    scope = _scope_cache.get(scope_text)
    if scope is None:
        scope = _scope_cache[scope_text] = parse_scope(scope_text)
    expires: float | None = None
    if expires_text:
        expires = _expiry_cache.get(expires_text)
        if expires is None:
            expires = _expiry_cache[expires_text] = R.parse_expiry(expires_text)
    return Permission(typ, act, scope, expires, rule)


@dataclass(frozen=True, slots=True, eq=False)
class DomainIndex:
    """An immutable snapshot of one domain, ready for decisions."""

    name: str
    vocabulary: dict[str, frozenset[str]]
    roles: frozenset[str]
    role_parents: dict[str, frozenset[str]]
    role_permissions: dict[str, tuple[Permission, ...]]
    role_closure: dict[str, frozenset[str]]  # role -> itself and every role it inherits
    department_parent: dict[str, str | None]
    subtree: dict[str, frozenset[str]]  # department -> itself and everything below it
    accounts: dict[str, AccountInfo]
    stamps: dict[str, int]
    base: int
    # Field-level access: role -> its field rules (p5), type -> declared fields (p6).
    role_fields: Mapping[str, tuple[FieldRule, ...]] = field(default_factory=dict)
    field_vocabulary: Mapping[str, frozenset[str]] = field(default_factory=dict)

    def account(self, name: str) -> AccountInfo:
        return self.accounts.get(name, _NO_ACCOUNT)

    def department_of(self, account: str | None) -> str | None:
        info = self.accounts.get(account) if account is not None else None
        return info.department if info is not None else None

    def roles_of(self, account: str) -> frozenset[str]:
        """Every role the account holds, directly or through inheritance."""
        held: set[str] = set()
        for role in self.account(account).roles:
            held |= self.role_closure.get(role, frozenset())
        return frozenset(held)

    def permissions_of(self, account: str) -> Iterator[tuple[str | None, Permission]]:
        """``(role or None for a direct grant, permission)`` for everything the account holds."""
        info = self.account(account)
        for grant in info.grants:
            yield None, grant
        for role in sorted(self.roles_of(account)):
            for permission in self.role_permissions.get(role, ()):
                yield role, permission

    def scope_coverage(self, account: str, scope: Scope, *, department: str | None = None,
                       moved: bool = False) -> Coverage:
        """The records ``scope`` reaches for ``account`` (rule 3 of the design); with
        ``moved=True``, as if the account were in ``department`` (for planned moves)."""
        kind = scope.kind
        if kind is ScopeKind.ALL:
            return EVERYTHING
        own = frozenset((account,))
        if kind is ScopeKind.OWN:
            return Coverage(owners=own)
        if kind is ScopeKind.CUSTOM:
            depts: set[str] = set()
            for department in scope.departments:
                depts |= self.subtree.get(department, frozenset())
            return Coverage(owners=own, departments=frozenset(depts))
        home = department if moved else self.department_of(account)
        if home is None or home not in self.department_parent:
            return Coverage(owners=own)
        if kind is ScopeKind.TEAM:
            return Coverage(owners=own, departments=frozenset((home,)))
        return Coverage(owners=own, departments=self.subtree.get(home, frozenset((home,))))

    def expand(self, typ: str, action: str) -> Iterator[tuple[str, str]]:
        """The known ``(type, action)`` pairs a possibly-wildcard permission names."""
        vocabulary = self.vocabulary
        types: Iterable[str] = vocabulary if typ == R.WILDCARD else (typ,)
        for t in types:
            actions = vocabulary.get(t)
            if actions is None:
                continue
            if action == R.WILDCARD:
                for a in actions:
                    yield t, a
            elif action in actions:
                yield t, action

    def effective(self, account: str, now: float) -> tuple[EffectiveMap, float | None]:
        """The account's effective map at ``now``, and when it next changes by itself (the
        earliest expiry of a grant it relies on, or ``None``)."""
        return self._effective(account, now, frozenset())

    def _effective(
        self, account: str, now: float, seen: frozenset[str]
    ) -> tuple[EffectiveMap, float | None]:
        info = self.accounts.get(account)
        if info is None or info.status != "active" or account in seen:
            return {}, None  # unknown, inactive, or a parent cycle in bad data: deny
        valid_until: float | None = None
        result: EffectiveMap = {}
        coverage_of: dict[Scope, Coverage] = {}
        for _role, permission in self.permissions_of(account):
            if permission.expires is not None:
                if permission.expires <= now:
                    continue
                if valid_until is None or permission.expires < valid_until:
                    valid_until = permission.expires
            coverage = coverage_of.get(permission.scope)
            if coverage is None:
                coverage = coverage_of[permission.scope] = self.scope_coverage(
                    account, permission.scope
                )
            for key in self.expand(permission.type, permission.action):
                held = result.get(key)
                result[key] = coverage if held is None else held.union(coverage)
        if info.parent is not None:
            ceiling, parent_until = self._effective(info.parent, now, seen | {account})
            if parent_until is not None and (valid_until is None or parent_until < valid_until):
                valid_until = parent_until
            result = intersect_maps(result, ceiling)
        # Never empty coverages: a scope always reaches the account's own records (or all), and
        # intersect_maps drops what the ceiling empties.
        return result, valid_until

    def descendants(self, account: str) -> set[str]:
        """The account's sub-accounts, transitively."""
        return self.descendants_of((account,))

    def descendants_of(self, accounts: Iterable[str]) -> set[str]:
        """The sub-accounts of any of ``accounts``, transitively (one pass over the domain)."""
        children: dict[str, list[str]] = {}
        for name, info in self.accounts.items():
            if info.parent is not None:
                children.setdefault(info.parent, []).append(name)
        found: set[str] = set()
        if not children:
            return found
        stack = list(accounts)
        while stack:
            for child in children.get(stack.pop(), ()):
                if child not in found:
                    found.add(child)
                    stack.append(child)
        return found


class DomainState:
    """The mutable master copy of one domain's rules (changed under the authorizer's lock)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.rules: set[Rule] = set()
        self.vocabulary: dict[str, set[str]] = {}
        self.roles: set[str] = set()
        self.links: dict[str, set[str]] = {}  # g: subject -> roles (assignment or inheritance)
        self.permissions: dict[str, set[Permission]] = {}  # p: subject -> permissions
        self.department_parent: dict[str, str | None] = {}
        self.status: dict[str, str] = {}
        self.membership: dict[str, str] = {}
        self.parent: dict[str, str] = {}
        self.index: DomainIndex | None = None
        self.field_rules: dict[str, set[Rule]] = {}  # p5: role -> rules
        self.fields: dict[str, set[str]] = {}  # p6: type -> fields
        self._field_part: tuple[dict[str, tuple[FieldRule, ...]], dict[str, frozenset[str]]] | None = None
        # Derived role/department structures, rebuilt only when their rules change.
        self._role_parts: tuple[
            frozenset[str], dict[str, frozenset[str]], dict[str, tuple[Permission, ...]],
            dict[str, frozenset[str]]
        ] | None = None
        self._department_parts: tuple[dict[str, str | None], dict[str, frozenset[str]]] | None = None
        self._vocabulary_part: dict[str, frozenset[str]] | None = None
        self._role_set_changed = False  # the set of role names changed: re-sort subjects

    # -- applying rules --------------------------------------------------------------------

    def apply(self, added: Iterable[Rule], removed: Iterable[Rule]) -> DomainIndex:
        """Apply a batch (removals first) and publish, and return, a new snapshot."""
        if self.index is None and not self.rules and not removed:
            return self._load(list(added))
        structural = False
        touched: set[str] = set()
        for rule in removed:
            if rule in self.rules:
                self.rules.discard(rule)
                structural |= self._unindex(rule, touched)
        for rule in added:
            if rule not in self.rules:
                self.rules.add(rule)
                structural |= self._index(rule, touched)
        return self._publish(structural, touched)

    def _load(self, rules: list[Rule]) -> DomainIndex:
        """The first batch of an empty domain (a whole store being loaded): the same effect as
        :meth:`_index` on each rule, in one tight loop, since nothing cached can be stale yet."""
        with _collection_paused(len(rules) > _BULK):
            return self._load_rules(rules)

    def _load_rules(self, rules: list[Rule]) -> DomainIndex:
        self.rules = set(rules)
        links, permissions, status = self.links, self.permissions, self.status
        membership, parent = self.membership, self.parent
        for rule in rules:  # the most frequent rule types first: most rules are about accounts
            ptype = rule[0]
            if ptype == R.ROLE_LINK:
                held = links.get(rule[1])
                if held is None:
                    links[rule[1]] = {rule[2]}
                else:
                    held.add(rule[2])
            elif ptype == R.ACCOUNT:
                status[rule[1]] = rule[3]
            elif ptype == R.MEMBERSHIP:
                membership[rule[1]] = rule[2]
            elif ptype == R.PERMISSION:
                permissions.setdefault(rule[1], set()).add(parse_permission(rule))
            elif ptype == R.PARENT:
                parent[rule[1]] = rule[2]
            elif ptype == R.DEPARTMENT:
                self.department_parent[rule[1]] = rule[2] or None
            elif ptype == R.ROLE:
                self.roles.add(rule[1])
            elif ptype == R.VOCABULARY:
                self.vocabulary.setdefault(rule[2], set()).add(rule[3])
            else:  # any other rule type: the general path (rare rules, so no hurry)
                self._index(rule, set())
        self._role_parts = self._department_parts = None
        self._vocabulary_part = None
        return self._publish(True, set())

    def _index(self, rule: Rule, touched: set[str]) -> bool:
        ptype = rule[0]
        if ptype == R.PERMISSION:
            self.permissions.setdefault(rule[1], set()).add(parse_permission(rule))
            return self._subject_changed(rule[1], touched)
        if ptype == R.ROLE_LINK:
            self.links.setdefault(rule[1], set()).add(rule[2])
            return self._subject_changed(rule[1], touched)
        if ptype == R.ACCOUNT:
            self.status[rule[1]] = rule[3]
            touched.add(rule[1])
            return False
        if ptype == R.MEMBERSHIP:
            self.membership[rule[1]] = rule[2]
            touched.add(rule[1])
            return False
        if ptype == R.PARENT:
            self.parent[rule[1]] = rule[2]
            touched.add(rule[1])
            return False
        if ptype == R.DEPARTMENT:
            self.department_parent[rule[1]] = rule[2] or None
            self._department_parts = None
            return True
        if ptype == R.ROLE:
            self.roles.add(rule[1])
            self._role_parts = None
            self._role_set_changed = True
            return True
        if ptype == R.VOCABULARY:
            self.vocabulary.setdefault(rule[2], set()).add(rule[3])
            self._vocabulary_part = None
            return True
        if ptype == R.FIELD_RULE:
            self.field_rules.setdefault(rule[1], set()).add(rule)
            self._field_part = None
            return True
        if ptype == R.FIELD:
            self.fields.setdefault(rule[2], set()).add(rule[3])
            self._field_part = None
            return True
        raise AssertionError(f"unhandled rule type {ptype!r}")  # check_rule() ran before

    def _unindex(self, rule: Rule, touched: set[str]) -> bool:
        ptype = rule[0]
        if ptype == R.PERMISSION:
            _discard(self.permissions, rule[1], parse_permission(rule))
            return self._subject_changed(rule[1], touched)
        if ptype == R.ROLE_LINK:
            _discard(self.links, rule[1], rule[2])
            return self._subject_changed(rule[1], touched)
        if ptype == R.ACCOUNT:
            if self.status.get(rule[1]) == rule[3]:
                del self.status[rule[1]]
            touched.add(rule[1])
            return False
        if ptype == R.MEMBERSHIP:
            if self.membership.get(rule[1]) == rule[2]:
                del self.membership[rule[1]]
            touched.add(rule[1])
            return False
        if ptype == R.PARENT:
            if self.parent.get(rule[1]) == rule[2]:
                del self.parent[rule[1]]
            touched.add(rule[1])
            return False
        if ptype == R.DEPARTMENT:
            if self.department_parent.get(rule[1], "") == (rule[2] or None):
                del self.department_parent[rule[1]]
            self._department_parts = None
            return True
        if ptype == R.ROLE:
            self.roles.discard(rule[1])
            self._role_parts = None
            self._role_set_changed = True
            return True
        if ptype == R.VOCABULARY:
            _discard(self.vocabulary, rule[2], rule[3])
            self._vocabulary_part = None
            return True
        if ptype == R.FIELD_RULE:
            _discard(self.field_rules, rule[1], rule)
            self._field_part = None
            return True
        if ptype == R.FIELD:
            _discard(self.fields, rule[2], rule[3])
            self._field_part = None
            return True
        raise AssertionError(f"unhandled rule type {ptype!r}")  # check_rule() ran before

    def _subject_changed(self, subject: str, touched: set[str]) -> bool:
        if subject in self.roles:
            self._role_parts = None
            return True
        touched.add(subject)
        return False

    # -- publishing snapshots --------------------------------------------------------------

    def _publish(self, structural: bool, touched: set[str]) -> DomainIndex:
        previous = self.index
        if self._role_parts is None:
            self._role_parts = self._build_roles()
        if self._department_parts is None:
            self._department_parts = self._build_departments()
        if self._vocabulary_part is None:
            self._vocabulary_part = {t: frozenset(a) for t, a in self.vocabulary.items() if a}
        roles, role_parents, role_permissions, role_closure = self._role_parts
        department_parent, subtree = self._department_parts

        if previous is None:
            interned: dict[frozenset[str], frozenset[str]] = {}
            accounts = {name: self._account_info(name, interned) for name in self._account_names()}
        else:
            accounts = dict(previous.accounts)
            for name in touched:
                info = self._account_info(name)
                if info == _NO_ACCOUNT:
                    accounts.pop(name, None)
                else:
                    accounts[name] = info

        if previous is None or structural:
            base, stamps = next(_stamp_counter), {}
            # A name became (or stopped being) a role: sort every subject again.
            if previous is not None and self._role_set_changed:
                interned = {}
                accounts = {name: self._account_info(name, interned)
                            for name in self._account_names()}
        self._role_set_changed = False
        if previous is not None and not structural:
            base, stamps = previous.base, dict(previous.stamps)
            provisional = DomainIndex(self.name, self._vocabulary_part, roles, role_parents,
                                      role_permissions, role_closure, department_parent, subtree,
                                      accounts, stamps, base, *self._fields_parts())
            stale = touched | provisional.descendants_of(touched)
            stamp = next(_stamp_counter)
            for name in stale:
                stamps[name] = stamp
        self.index = DomainIndex(self.name, self._vocabulary_part, roles, role_parents,
                                 role_permissions, role_closure, department_parent, subtree,
                                 accounts, stamps, base, *self._fields_parts())
        return self.index

    def _fields_parts(self) -> tuple[dict[str, tuple[FieldRule, ...]], dict[str, frozenset[str]]]:
        if self._field_part is None:
            by_role = {
                role: tuple(sorted((FieldRule(r[3], r[4], r[5], parse_scope(r[6]) if r[6] else None, r)
                                    for r in rules), key=lambda f: f.rule))
                for role, rules in self.field_rules.items() if rules
            }
            self._field_part = by_role, {t: frozenset(f) for t, f in self.fields.items() if f}
        return self._field_part

    def _account_names(self) -> set[str]:
        names = set(self.status) | set(self.membership) | set(self.parent)
        names |= {s for s in self.links if s not in self.roles}
        names |= {s for s in self.permissions if s not in self.roles}
        return names

    def _account_info(
        self, name: str, interned: dict[frozenset[str], frozenset[str]] | None = None
    ) -> AccountInfo:
        if name in self.roles:
            return _NO_ACCOUNT
        held = self.permissions.get(name)
        grants = tuple(sorted(held, key=_rule_of)) if held else ()
        links = self.links.get(name)
        roles = frozenset(links) if links else _NO_ROLES
        if interned is not None:  # thousands of accounts share a few role sets: keep one copy
            roles = interned.setdefault(roles, roles)
        return AccountInfo(
            self.status.get(name),
            self.membership.get(name),
            self.parent.get(name),
            roles,
            grants,
        )

    def _build_roles(
        self,
    ) -> tuple[frozenset[str], dict[str, frozenset[str]], dict[str, tuple[Permission, ...]],
               dict[str, frozenset[str]]]:
        roles = frozenset(self.roles)
        parents = {r: frozenset(self.links.get(r, ())) for r in roles}
        permissions = {
            r: tuple(sorted(self.permissions.get(r, ()), key=lambda p: p.rule)) for r in roles
        }
        closure: dict[str, frozenset[str]] = {}
        for role in roles:
            seen = {role}
            stack = [role]
            while stack:  # a cycle (only possible in bad data) just stops here
                for inherited in parents.get(stack.pop(), ()):
                    if inherited not in seen:
                        seen.add(inherited)
                        stack.append(inherited)
            closure[role] = frozenset(seen)
        return roles, parents, permissions, closure

    def _build_departments(self) -> tuple[dict[str, str | None], dict[str, frozenset[str]]]:
        parents = dict(self.department_parent)
        below: dict[str, set[str]] = {d: {d} for d in parents}
        for department in parents:
            seen = {department}
            ancestor = parents.get(department)
            while ancestor is not None and ancestor not in seen:  # cycle guard for bad data
                seen.add(ancestor)
                if ancestor in below:
                    below[ancestor].add(department)
                ancestor = parents.get(ancestor)
        return parents, {d: frozenset(s) for d, s in below.items()}


def _discard(mapping: dict[str, set[object]] | dict[str, set[str]] | dict[str, set[Permission]]
             | dict[str, set[Rule]],
             key: str, value: object) -> None:
    values = mapping.get(key)
    if values is not None:
        values.discard(value)
        if not values:
            del mapping[key]
