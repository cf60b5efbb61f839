"""One domain's rules, compiled and immutable: the data the decision semantics read.

A :class:`Snapshot` holds no behaviour of its own beyond lookups; what its data *means* for a
decision is :mod:`salesauthz._engine.semantics`. Snapshots are published by
:class:`~salesauthz._engine.state.DomainState` and read without locks: a check sees either the
whole old snapshot or the whole new one, never half a change.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from math import isqrt
from typing import Any, Final, NamedTuple, TypeVar

from salesauthz import _rules as R
from salesauthz._rules import Rule
from salesauthz.scopes import Coverage, Scope, parse_scope

__all__ = ["AccountInfo", "EffectiveMap", "FieldRule", "Key", "Layered", "Permission", "Snapshot",
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


K = TypeVar("K")
V = TypeVar("V")


class _Marker:
    __slots__ = ()


_ABSENT: Final = _Marker()  # in a Layered top: the key was removed
_MISSING: Final = _Marker()  # a lookup found nothing


class Layered(Mapping[K, V]):
    """An immutable map that a change copies in time proportional to the change, not to the map.

    A shared *base* dict (never changed once a Layered holds it) and a small *top* dict of the
    keys changed since (a removed key maps to a marker). :meth:`changed` copies only the top;
    when the top outgrows ``2·√n + 64`` entries it is folded into a new base (one copy of the
    whole map every ~√n changes: amortised O(√n) per change, instead of O(n)). Lookups cost one
    or two dict reads.
    """

    __slots__ = ("_base", "_len", "_top")

    def __init__(self, base: Mapping[K, V], top: dict[K, Any] | None = None,
                 length: int | None = None) -> None:
        self._base: Mapping[K, V] = base
        self._top: dict[K, Any] = top if top is not None else {}
        self._len = len(base) if length is None else length

    def get(self, key: K, default: Any = None) -> Any:
        found = self._top.get(key, _MISSING)
        if found is _MISSING:
            return self._base.get(key, default)
        return default if found is _ABSENT else found

    def __getitem__(self, key: K) -> V:
        found = self.get(key, _MISSING)
        if found is _MISSING:
            raise KeyError(key)
        return found  # type: ignore[no-any-return]  # get() returns Any: a V, _MISSING ruled out

    def __contains__(self, key: object) -> bool:
        return self.get(key, _MISSING) is not _MISSING  # type: ignore[arg-type]  # object, as Mapping says

    def __iter__(self) -> Iterator[K]:
        top = self._top
        for key in self._base:
            if key not in top:
                yield key
        for key, value in top.items():
            if value is not _ABSENT:
                yield key

    def __len__(self) -> int:
        return self._len

    def changed(self, changes: Mapping[K, V | None]) -> Layered[K, V]:
        """A new map with ``changes`` applied (a ``None`` value removes the key); this one is
        left as it was."""
        top = dict(self._top)
        length = self._len
        for key, value in changes.items():
            was = key in self
            if value is None:
                top[key] = _ABSENT
                length -= was
            else:
                top[key] = value
                length += not was
        if len(top) <= 2 * isqrt(length) + 64:
            return Layered(self._base, top, length)
        base = dict(self._base)
        for key, value in top.items():
            if value is _ABSENT:
                base.pop(key, None)
            else:
                base[key] = value
        return Layered(base, None, length)


def layered(mapping: Mapping[K, V]) -> Layered[K, V]:
    """``mapping`` as a :class:`Layered` (itself when it is one already; a dict is not copied,
    so its owner must not change it any more)."""
    return mapping if isinstance(mapping, Layered) else Layered(mapping)


@dataclass(frozen=True, slots=True, eq=False)
class Snapshot:
    """An immutable view of one domain, ready for decisions.

    ``version``, ``base`` and ``stamps`` tell whether an effective map computed from an earlier
    snapshot is still this one's (see :meth:`fresh` and ``DomainState``).
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
    # account -> the version of the last change its effective map depends on, since ``base``:
    # one dict shared by the snapshots published since the last structural change, and only
    # ever raised (never read it as this snapshot's own state; see ``fresh``).
    stamps: Mapping[str, int]
    base: int  # the version of the last change that could affect every account
    role_fields: Mapping[str, tuple[FieldRule, ...]]  # role -> its field rules (p5)
    field_vocabulary: Mapping[str, frozenset[str]]  # type -> declared fields (p6)
    sharing: Mapping[str, Mapping[str, frozenset[str]]]  # type -> share level -> actions (p7)
    reports: Mapping[str, frozenset[str]]  # account -> its direct reports (g6)
    settings: Mapping[str, str] = field(default_factory=dict)  # p11: name -> value
    conditioned: bool = False  # some permission of the domain carries a condition
    version: int = 0  # this snapshot's version (from one process-wide counter)
    # department -> its grants (p12), held by the accounts in its subtree (main or auxiliary)
    department_grants: Mapping[str, tuple[Permission, ...]] = field(default_factory=dict)
    # department -> the accounts whose main department it is (``homes`` inverted); the same
    # object across versions until an account moves, and a move copies two sets, not the map
    # of accounts
    members: Mapping[str, frozenset[str]] = field(default_factory=dict)
    # department -> the accounts for which it is an auxiliary department (likewise)
    auxiliary_members: Mapping[str, frozenset[str]] = field(default_factory=dict)

    def fresh(self, account: str, computed: int) -> bool:
        """Whether the account's map computed from the snapshot of version ``computed`` is this
        snapshot's too: computed no earlier than ``base``, no later than this snapshot, and no
        change that the map depends on since. (``stamps`` is shared with later snapshots: a
        change after this snapshot only makes an entry look stale here, never fresh.)"""
        return self.base <= computed <= self.version and self.stamps.get(account, 0) <= computed

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

    def granting(self, account: str) -> tuple[str, ...]:
        """The departments whose grants (``p12``) the account holds: each of its main and
        auxiliary departments and every department above one, once, nearest first."""
        if not self.department_grants:
            return ()
        found: dict[str, None] = {}
        for department in self.departments_of(account):
            found.update(dict.fromkeys(d for d in self.ancestry(department)
                                       if d in self.department_grants))
        return tuple(found)

    def grants_of(self, account: str) -> Iterator[tuple[str | None, Permission]]:
        """The account's grants: its direct ones (department ``None``), then those to each of
        its main and auxiliary departments and to every department above one (:meth:`granting`),
        with the department each was given to."""
        for grant in self.account(account).grants:
            yield None, grant
        for department in self.granting(account):
            for grant in self.department_grants[department]:
                yield department, grant

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

    def members_below(self, department: str) -> set[str]:
        """The accounts whose main or auxiliary department is ``department`` or below it (those
        a grant to it reaches), registered or not: in time proportional to them."""
        found: set[str] = set()
        for name in self.subtree.get(department, frozenset((department,))):
            found.update(self.members.get(name, ()))
            found.update(self.auxiliary_members.get(name, ()))
        return found
