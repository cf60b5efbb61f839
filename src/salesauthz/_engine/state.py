"""The mutable master copy of one domain's rules, and the snapshots it publishes.

:class:`DomainState` is changed only under the authorizer's write lock. After each change it
publishes an immutable :class:`~.snapshot.Snapshot`, sharing every part the change did not touch.

Each snapshot has a *version* (from one process-wide counter, so versions never repeat) and a
*base*: a change to roles, departments or the vocabulary makes its version the base (every cached
effective map of the domain goes stale). A change to one account's facts writes its version in
*stamps* for that account and its sub-accounts only, in place, in the one dict shared by the
snapshots since the last such structural change: its cost follows the accounts it touches, not
the tenant (the accounts map is a :class:`~.snapshot.Layered` map, copied in proportion to the
change too). An effective map computed from a snapshot is tagged with that snapshot's version and
used while :meth:`Snapshot.fresh <.snapshot.Snapshot.fresh>` says so.
"""

from __future__ import annotations

import gc
import itertools
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from operator import attrgetter
from typing import TypeVar

from salesauthz import _rules as R
from salesauthz._rules import Rule
from salesauthz.conditions import decode_value, freeze
from salesauthz.errors import PolicyError, PolicyIssue

from .snapshot import (
    NO_ACCOUNT,
    NO_ROLES,
    AccountInfo,
    FieldRule,
    Permission,
    Snapshot,
    layered,
    parse_expiry,
    parse_field_rule,
    parse_permission,
)

__all__ = ["DomainState", "compile_domains", "load_domains"]

K = TypeVar("K")
V = TypeVar("V")
_stamp_counter = itertools.count(1)
_BULK = 10_000  # rules: above this, a first load pauses the cyclic garbage collector


@contextmanager
def _collection_paused(pause: bool) -> Iterator[None]:
    """Pause the cyclic GC while a bulk load allocates millions of long-lived objects that
    cannot form garbage cycles: otherwise every full collection re-scans all of them, which
    nearly doubles the load time of a million rules. The previous state is restored."""
    if not pause or not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


RolePart = tuple[frozenset[str], dict[str, frozenset[str]], dict[str, tuple[Permission, ...]],
                 dict[str, tuple[tuple[str, tuple[str, ...]], ...]]]


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
        self.field_rules: dict[str, set[Rule]] = {}  # p5: role -> rules
        self.fields: dict[str, set[str]] = {}  # p6: type -> fields
        self.sharing: dict[tuple[str, str], set[str]] = {}  # p7: (type, level) -> actions
        self.timed: dict[str, set[tuple[str, str]]] = {}  # p8: account -> (role, expires)
        self.also_in: dict[str, set[str]] = {}  # g5: account -> auxiliary departments
        self.reports_to: dict[str, str] = {}  # g6: account -> superior
        self.attributes: dict[str, set[tuple[str, str]]] = {}  # p9: account -> (name, value)
        self.settings: dict[str, set[str]] = {}  # p11: name -> values
        self.department_grants: dict[str, set[Permission]] = {}  # p12: department -> grants
        self._regranted: set[str] = set()  # departments whose grants changed since the last publish
        # department -> the accounts with it as main or auxiliary department: built on the first
        # change of a grant to a department after a load, then kept up to date.
        self._members: dict[str, set[str]] | None = None
        self._department_grant_part: dict[str, tuple[Permission, ...]] | None = None
        self._reports_changed = False
        self.snapshot: Snapshot | None = None
        # Derived structures, rebuilt only when their rules change (None: stale).
        self._role_part: RolePart | None = None
        self._department_part: tuple[dict[str, str | None], dict[str, frozenset[str]]] | None = None
        self._vocabulary_part: dict[str, frozenset[str]] | None = None
        self._field_part: tuple[dict[str, tuple[FieldRule, ...]], dict[str, frozenset[str]]] | None = None
        self._role_set_changed = False  # a name became (or stopped being) a role
        self._sharing_part: dict[str, dict[str, frozenset[str]]] | None = None
        self._reports_part: dict[str, frozenset[str]] | None = None
        self._conditions_changed = True
        self._stamps: dict[str, int] = {}  # the published snapshots' stamps (Snapshot.stamps)

    # -- applying rules --------------------------------------------------------------------

    def apply(self, added: Iterable[Rule], removed: Iterable[Rule]) -> Snapshot:
        """Apply a batch (removals first) and publish, and return, a new snapshot."""
        if self.snapshot is None and not self.rules and not removed:
            rules = list(added)
            with _collection_paused(len(rules) > _BULK):
                return self._load(rules)
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

    def _load(self, rules: list[Rule]) -> Snapshot:
        """The first batch of an empty domain (a whole store being loaded): the same effect as
        :meth:`_index` on each rule, in one tight loop, since nothing cached can be stale yet."""
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
            else:  # the rare rule types: the general path
                self._index(rule, set())
        self._role_part = self._department_part = self._vocabulary_part = None
        return self._publish(True, set())

    def _index(self, rule: Rule, touched: set[str]) -> bool:
        """Record one added rule; returns whether it changes what every account may do."""
        ptype, subject = rule[0], rule[1]
        if ptype == R.PERMISSION:
            permission = parse_permission(rule)
            self.permissions.setdefault(subject, set()).add(permission)
            if permission.scope.condition is not None:
                self._conditions_changed = True
            return self._subject_changed(subject, touched)
        if ptype == R.ROLE_LINK:
            self.links.setdefault(subject, set()).add(rule[2])
            return self._subject_changed(subject, touched)
        if ptype == R.DEPARTMENT_GRANT:
            self._department_grant(rule, add=True)
            return False
        if ptype in (R.ACCOUNT, R.MEMBERSHIP, R.PARENT):
            facts = {R.ACCOUNT: self.status, R.MEMBERSHIP: self.membership, R.PARENT: self.parent}
            before = self._member_of(subject) if ptype == R.MEMBERSHIP else None
            facts[ptype][subject] = rule[3] if ptype == R.ACCOUNT else rule[2]
            self._moved(subject, before)
            touched.add(subject)
            return False
        if ptype in (R.AUXILIARY, R.TIMED_ROLE, R.REPORTS_TO, R.ACCOUNT_ATTRIBUTE):
            self._account_fact(rule, touched, add=True)
            return False
        return self._structure(rule, add=True)

    def _unindex(self, rule: Rule, touched: set[str]) -> bool:
        """Forget one removed rule; returns whether it changes what every account may do."""
        ptype, subject = rule[0], rule[1]
        if ptype == R.PERMISSION:
            permission = parse_permission(rule)
            _discard(self.permissions, subject, permission)
            if permission.scope.condition is not None:
                self._conditions_changed = True
            return self._subject_changed(subject, touched)
        if ptype == R.ROLE_LINK:
            _discard(self.links, subject, rule[2])
            return self._subject_changed(subject, touched)
        if ptype == R.DEPARTMENT_GRANT:
            self._department_grant(rule, add=False)
            return False
        if ptype in (R.ACCOUNT, R.MEMBERSHIP, R.PARENT):
            facts = {R.ACCOUNT: self.status, R.MEMBERSHIP: self.membership, R.PARENT: self.parent}
            before = self._member_of(subject) if ptype == R.MEMBERSHIP else None
            value = rule[3] if ptype == R.ACCOUNT else rule[2]
            if facts[ptype].get(subject) == value:
                del facts[ptype][subject]
            self._moved(subject, before)
            touched.add(subject)
            return False
        if ptype in (R.AUXILIARY, R.TIMED_ROLE, R.REPORTS_TO, R.ACCOUNT_ATTRIBUTE):
            self._account_fact(rule, touched, add=False)
            return False
        return self._structure(rule, add=False)

    def _account_fact(self, rule: Rule, touched: set[str], *, add: bool) -> None:
        """Auxiliary departments, timed role assignments and reporting lines: the account's own
        map changes, and for a reporting line the maps of everyone above it in the line (their
        ``subordinates`` scopes)."""
        ptype, subject = rule[0], rule[1]
        touched.add(subject)
        if ptype == R.AUXILIARY:
            was_in = self._member_of(subject)
            _change(self.also_in, subject, rule[2], add)
            self._moved(subject, was_in)
        elif ptype == R.TIMED_ROLE:
            _change(self.timed, subject, (rule[2], rule[4]), add)
        elif ptype == R.ACCOUNT_ATTRIBUTE:
            _change(self.attributes, subject, (rule[3], rule[4]), add)
        else:
            before = self.reports_to.get(subject)
            if add:
                self.reports_to[subject] = rule[2]
            elif before == rule[2]:
                del self.reports_to[subject]
            for superior in (before, rule[2]):
                seen: set[str] = set()
                while superior is not None and superior not in seen:
                    seen.add(superior)
                    touched.add(superior)
                    superior = self.reports_to.get(superior)
            self._reports_changed = True

    def _department_grant(self, rule: Rule, *, add: bool) -> None:
        """A grant to a department: the accounts in its subtree are re-stamped on publishing
        (:meth:`_granted_to`), never every account of the domain."""
        permission = parse_permission(rule)
        _change(self.department_grants, rule[1], permission, add)
        if permission.scope.condition is not None:
            self._conditions_changed = True
        self._regranted.add(rule[1])
        self._department_grant_part = None

    def _member_of(self, account: str) -> set[str] | None:
        """The account's main and auxiliary departments, while the member index is kept."""
        if self._members is None:
            return None
        main = self.membership.get(account)
        return {*(() if main is None else (main,)), *self.also_in.get(account, ())}

    def _moved(self, account: str, before: set[str] | None) -> None:
        """Keep the member index up to date after the account's departments changed."""
        now, members = self._member_of(account), self._members
        if before is None or now is None or members is None:
            return
        for department in before - now:
            _discard(members, department, account)
        for department in now - before:
            members.setdefault(department, set()).add(account)

    def _granted_to(self, departments: Iterable[str]) -> set[str]:
        """The accounts whose main or auxiliary department is one of ``departments`` or below
        one (those holding the departments' grants), from the member index."""
        if self._members is None:
            members: dict[str, set[str]] = {}
            for account, department in self.membership.items():
                members.setdefault(department, set()).add(account)
            for account, auxiliary in self.also_in.items():
                for department in auxiliary:
                    members.setdefault(department, set()).add(account)
            self._members = members
        assert self._department_part is not None
        subtree = self._department_part[1]
        return {account for granting in departments for department in subtree.get(granting, ())
                for account in self._members.get(department, ())}

    def _structure(self, rule: Rule, *, add: bool) -> bool:
        """Departments, roles, the vocabulary and field rules: every account may be affected."""
        ptype = rule[0]
        if ptype == R.DEPARTMENT:
            if add:
                self.department_parent[rule[1]] = rule[2] or None
            elif self.department_parent.get(rule[1], "") == (rule[2] or None):
                del self.department_parent[rule[1]]
            self._department_part = None
        elif ptype == R.ROLE:
            (self.roles.add if add else self.roles.discard)(rule[1])
            self._role_part = None
            self._role_set_changed = True
        elif ptype == R.VOCABULARY:
            _change(self.vocabulary, rule[2], rule[3], add)
            self._vocabulary_part = None
        elif ptype == R.FIELD_RULE:
            _change(self.field_rules, rule[1], rule, add)
            self._field_part = None
        elif ptype == R.FIELD:
            _change(self.fields, rule[2], rule[3], add)
            self._field_part = None
        elif ptype == R.SHARE_LEVEL:
            _change(self.sharing, (rule[2], rule[3]), rule[4], add)
            self._sharing_part = None
        elif ptype == R.SETTING:
            _change(self.settings, rule[2], rule[3], add)
        elif ptype == R.RESOURCE_ATTRIBUTE:
            return False  # declarations: for validation, no decision reads them
        else:
            raise AssertionError(f"unhandled rule type {ptype!r}")  # check_rule() ran before
        return True

    def _subject_changed(self, subject: str, touched: set[str]) -> bool:
        if subject in self.roles:
            self._role_part = None
            return True
        touched.add(subject)
        return False

    # -- publishing snapshots --------------------------------------------------------------

    def _publish(self, structural: bool, touched: set[str]) -> Snapshot:
        previous = self.snapshot
        if self._role_part is None:
            self._role_part = self._build_roles()
        if self._department_part is None:
            self._department_part = self._build_departments()
        if self._vocabulary_part is None:
            self._vocabulary_part = {t: frozenset(a) for t, a in self.vocabulary.items() if a}
        if self._field_part is None:
            self._field_part = self._build_fields()
        if self._sharing_part is None:
            sharing: dict[str, dict[str, frozenset[str]]] = {}
            for (typ, level), actions in self.sharing.items():
                if actions:
                    sharing.setdefault(typ, {})[level] = frozenset(actions)
            self._sharing_part = sharing
        if self._reports_part is None or self._reports_changed:
            reports: dict[str, set[str]] = {}
            for name, superior in self.reports_to.items():
                reports.setdefault(superior, set()).add(name)
            self._reports_part = {s: frozenset(r) for s, r in reports.items()}
            self._reports_changed = False

        homes: Mapping[str, str | None]
        children: Mapping[str, frozenset[str]]
        accounts: Mapping[str, AccountInfo]
        members: Mapping[str, frozenset[str]]
        auxiliary: Mapping[str, frozenset[str]]
        if previous is None or self._role_set_changed:  # every subject is sorted again
            interned: dict[frozenset[str], frozenset[str]] = {}
            every: dict[str, AccountInfo] = {}
            every_home: dict[str, str | None] = {}
            for name in self._account_names():
                info = self._account_info(name, interned)
                if info is not NO_ACCOUNT:
                    every[name] = info
                    if info.department is not None:
                        every_home[name] = info.department
            accounts, homes = every, every_home
            children = _regrouped({}, [(name, (), (info.parent,)) for name, info in every.items()
                                       if info.parent is not None])
            members = _regrouped({}, [(name, (), (info.department,)) for name, info in every.items()
                                      if info.department])
            auxiliary = _regrouped({}, [(name, (), info.also_in) for name, info in every.items()
                                        if info.also_in])
        else:
            # Only the touched accounts: the map is persistent (no copy of the tenant's accounts);
            # the homes and the groupings below are copied once per change, not per account.
            changes: dict[str, AccountInfo | None] = {}
            rehomed: dict[str, str | None] = {}
            moved: list[tuple[str, Iterable[str], Iterable[str]]] = []
            moved_auxiliary: list[tuple[str, Iterable[str], Iterable[str]]] = []
            reparented: list[tuple[str, Iterable[str], Iterable[str]]] = []
            for name in touched:
                info = self._account_info(name)
                before = previous.accounts.get(name, NO_ACCOUNT)
                changes[name] = None if info is NO_ACCOUNT else info
                if info.department != before.department:
                    rehomed[name] = info.department
                    moved.append((name, (before.department,) if before.department else (),
                                  (info.department,) if info.department else ()))
                if info.also_in != before.also_in:
                    moved_auxiliary.append((name, before.also_in, info.also_in))
                if info.parent != before.parent:
                    reparented.append((name, () if before.parent is None else (before.parent,),
                                       () if info.parent is None else (info.parent,)))
            accounts = layered(previous.accounts).changed(changes)
            homes = previous.homes
            if rehomed:
                homes = dict(homes)
                for name, department in rehomed.items():
                    if department is None:
                        homes.pop(name, None)
                    else:
                        homes[name] = department
            members = _regrouped(previous.members, moved) if moved else previous.members
            auxiliary = (_regrouped(previous.auxiliary_members, moved_auxiliary)
                         if moved_auxiliary else previous.auxiliary_members)
            children = (_regrouped(previous.children, reparented) if reparented
                        else previous.children)
        self._role_set_changed = False

        if self._department_grant_part is None:
            self._department_grant_part = {d: tuple(sorted(grants, key=lambda p: p.rule))
                                           for d, grants in self.department_grants.items()}
        version = next(_stamp_counter)
        if previous is None or structural:
            base, stamps = version, {}
        else:
            base, stamps = previous.base, self._stamps
            stale = touched | self._granted_to(self._regranted) if self._regranted else set(touched)
            stack = list(stale)
            while stack:  # a sub-account's map depends on its parents'
                for child in children.get(stack.pop(), ()):
                    if child not in stale:
                        stale.add(child)
                        stack.append(child)
            for name in stale:  # in place: readers of older snapshots see these as stale too
                stamps[name] = version
        self._stamps = stamps
        self._regranted.clear()

        roles, role_parents, role_permissions, role_paths = self._role_part
        department_parent, subtree = self._department_part
        role_fields, field_vocabulary = self._field_part
        # A setting stored twice is no setting (the default applies), like a doubled attribute.
        settings = {name: next(iter(values)) for name, values in self.settings.items()
                    if len(values) == 1}
        conditioned = any(p.scope.condition is not None
                          for held in (*self.permissions.values(), *self.department_grants.values())
                          for p in held) if self._conditions_changed or previous is None \
            else previous.conditioned
        self._conditions_changed = False
        self.snapshot = Snapshot(self.name, self._vocabulary_part, roles, role_parents,
                                 role_permissions, role_paths, department_parent, subtree, accounts,
                                 homes, children, stamps, base, role_fields, field_vocabulary,
                                 self._sharing_part, self._reports_part, settings, conditioned,
                                 version, self._department_grant_part, members, auxiliary)
        return self.snapshot

    def _account_names(self) -> set[str]:
        names = set(self.status) | set(self.membership) | set(self.parent)
        names |= set(self.also_in) | set(self.timed) | set(self.reports_to) | set(self.attributes)
        names |= {s for s in self.links if s not in self.roles}
        names |= {s for s in self.permissions if s not in self.roles}
        return names

    def _account_info(self, name: str,
                      interned: dict[frozenset[str], frozenset[str]] | None = None) -> AccountInfo:
        if name in self.roles:
            return NO_ACCOUNT
        held = self.permissions.get(name)
        grants = tuple(sorted(held, key=_rule_of)) if held else ()
        links = self.links.get(name)
        roles = NO_ROLES
        if links:
            roles = frozenset(links)
            if interned is not None:  # thousands of accounts share a few role sets: keep one copy
                roles = interned.setdefault(roles, roles)
        also_in = self.also_in.get(name)
        timed: tuple[tuple[str, float], ...] = ()
        timed_rules = self.timed.get(name)
        if timed_rules:
            latest: dict[str, float] = {}
            for role, expires in timed_rules:
                if role not in roles:
                    moment = parse_expiry(expires)
                    latest[role] = max(moment, latest.get(role, moment))
            timed = tuple(sorted(latest.items()))
        attributes: tuple[tuple[str, object], ...] = ()
        attribute_rules = self.attributes.get(name)
        if attribute_rules:
            stored: dict[str, list[str]] = {}
            for attribute, value in attribute_rules:
                stored.setdefault(attribute, []).append(value)
            attributes = tuple(sorted((attribute, freeze(decode_value(values[0])))
                                      for attribute, values in stored.items() if len(values) == 1))
        status, department, parent = (self.status.get(name), self.membership.get(name),
                                      self.parent.get(name))
        reports_to = self.reports_to.get(name)
        if (status is None and department is None and parent is None and not roles and not grants
                and not also_in and reports_to is None and not timed and not attributes):
            return NO_ACCOUNT  # (what NO_ACCOUNT holds: nothing)
        return AccountInfo(status, department, parent, roles, grants,
                           frozenset(also_in) if also_in else NO_ROLES, reports_to, timed,
                           attributes)

    def _build_roles(self) -> RolePart:
        roles = frozenset(self.roles)
        parents = {r: frozenset(self.links.get(r, ())) for r in roles}
        permissions = {r: tuple(sorted(self.permissions.get(r, ()), key=lambda p: p.rule))
                       for r in roles}
        paths: dict[str, tuple[tuple[str, tuple[str, ...]], ...]] = {}
        for role in roles:
            found: dict[str, tuple[str, ...]] = {role: (role,)}
            queue = [role]
            for current in queue:  # breadth first: the shortest path to each inherited role
                for inherited in sorted(parents.get(current, ())):
                    if inherited not in found:  # a cycle (only in bad data) just stops here
                        found[inherited] = (*found[current], inherited)
                        queue.append(inherited)
            paths[role] = tuple(found.items())
        return roles, parents, permissions, paths

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

    def _build_fields(self) -> tuple[dict[str, tuple[FieldRule, ...]], dict[str, frozenset[str]]]:
        by_role = {role: tuple(sorted((parse_field_rule(r) for r in rules), key=lambda f: f.rule))
                   for role, rules in self.field_rules.items() if rules}
        return by_role, {t: frozenset(f) for t, f in self.fields.items() if f}


def compile_domains(rules: Iterable[Rule]) -> dict[str, Snapshot]:
    """One snapshot per domain of ``rules`` (for tools that analyse rules outside an authorizer)."""
    grouped: dict[str, list[Rule]] = {}
    for rule in rules:
        grouped.setdefault(R.domain_of(rule), []).append(rule)
    return {name: DomainState(name).apply(domain_rules, ()) for name, domain_rules in grouped.items()}


def load_domains(rules: Sequence[Rule] | Mapping[str, Sequence[Rule]], names: Collection[str] | None,
                 *, source: str) -> dict[str, DomainState]:
    """A fresh state for each domain of ``rules`` (or exactly for ``names``, empty ones
    included), all or nothing; ``rules`` may come grouped by domain already. Malformed rules
    raise :class:`PolicyError` naming each of them and ``source`` (diagnosed only on failure: a
    healthy load pays nothing for the check)."""
    try:
        grouped: Mapping[str, Sequence[Rule]]
        if isinstance(rules, Mapping):
            grouped = rules
        else:
            by_domain: dict[str, list[Rule]] = {}
            for rule in rules:
                by_domain.setdefault(R.domain_of(rule), []).append(rule)
            grouped = by_domain
        states: dict[str, DomainState] = {}
        for name in grouped if names is None else names:
            state = states[name] = DomainState(name)
            state.apply(grouped.get(name, ()), ())
        return states
    except Exception:
        flat = [r for group in rules.values() for r in group] if isinstance(rules, Mapping) else rules
        issues = [PolicyIssue(f"{problem}: {rule!r}", source, code="SA100")
                  for rule in flat if (problem := R.check_rule(rule)) is not None]
        if issues:
            raise PolicyError(issues) from None
        raise


_rule_of = attrgetter("rule")  # a permission's stored rule: the order grants are kept in


def _regrouped(groups: Mapping[str, frozenset[str]],
               moves: Sequence[tuple[str, Iterable[str], Iterable[str]]]
               ) -> dict[str, frozenset[str]]:
    """``groups`` (key -> names) after each ``(name, keys it leaves, keys it joins)``: one copy of
    the map, and of the sets that change (a group left empty goes)."""
    copy = dict(groups)
    left: dict[str, set[str]] = {}
    joined: dict[str, set[str]] = {}
    for name, olds, news in moves:
        for key in olds:
            left.setdefault(key, set()).add(name)
        for key in news:
            joined.setdefault(key, set()).add(name)
    for key in left.keys() | joined.keys():
        names = (copy.get(key, frozenset()) - left.get(key, set())) | joined.get(key, set())
        if names:
            copy[key] = frozenset(names)
        else:
            copy.pop(key, None)
    return copy


def _change(mapping: dict[K, set[V]], key: K, value: V, add: bool) -> None:
    if add:
        mapping.setdefault(key, set()).add(value)
    else:
        _discard(mapping, key, value)


def _discard(mapping: dict[K, set[V]], key: K, value: V) -> None:
    values = mapping.get(key)
    if values is not None:
        values.discard(value)
        if not values:
            del mapping[key]
