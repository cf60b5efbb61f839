"""What a change would break: the loader's reference and cycle rules, checked incrementally.

:func:`change_issues` judges one domain's change ``(added, removed)`` against the snapshot it
applies to, looking only at what the change touches, so its cost grows with the change, not with
the domain (a domain of a million rules is not re-validated per grant). It reports, with the
loader's codes:

* **SA120** a department that does not exist after the change, named by a department's parent, an
  account's main or auxiliary department, or a ``custom`` scope; a department deleted while
  something still names it;
* **SA121** a department below itself (a cycle through the department that moved), or given two
  parents;
* **SA130** an unknown role assigned or inherited, or a role deleted while something names it;
* **SA131** a role inheriting itself, directly or through other roles;
* **SA114** a rule about an account or role that is neither registered (``p3``) nor a role
  (``p4``), or an account deleted while rules still name it;
* **SA140/SA141** an unknown parent account, or a parent chain that loops;
* **SA142/SA143** an unknown reporting superior, or a reporting line that loops;
* **SA152/SA153** a permission naming an unknown resource type or action, or an action removed
  from the vocabulary while permissions name it.

Single-valued facts (**SA115**) and malformed rules (**SA100**) are checked by every store's write
path (:func:`salesauthz.models.validate.stored_rule_issues`).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence

from . import _engine as engine
from . import _rules as R
from ._rules import Rule
from .errors import PolicyIssue
from .scopes import parse_scope

__all__ = ["change_issues"]

_WALK_LIMIT = 100_000


def change_issues(snapshot: engine.Snapshot | None, held: Collection[Rule], domain: str,
                  added: Sequence[Rule], removed: Sequence[Rule]) -> list[PolicyIssue]:
    """The loader's reference and cycle rules broken by applying ``(added, removed)`` (rules of
    ``domain`` only) to ``snapshot`` (``None``: the domain is new), whose rules are ``held``
    (read whole only when the change deletes a department, role, account or action). Each issue
    names the offending rule."""
    return _Change(snapshot, held, domain, added, removed).issues()


class _Change:
    def __init__(self, snapshot: engine.Snapshot | None, held: Collection[Rule], domain: str,
                 added: Sequence[Rule], removed: Sequence[Rule]) -> None:
        self.s = snapshot
        self.held = held
        self.domain = domain
        dropped, kept = set(removed), set(added)
        self.added = [r for r in added if r not in dropped and r not in held]
        gone = dropped - kept
        self.removed = [r for r in removed if r in gone]
        self.add: dict[str, list[Rule]] = {}
        self.rem: dict[str, list[Rule]] = {}
        for rule in self.added:
            self.add.setdefault(rule[0], []).append(rule)
        for rule in self.removed:
            self.rem.setdefault(rule[0], []).append(rule)
        self.found: list[PolicyIssue] = []
        # Departments: name -> parent ("" for a root) as the change states it (None: deleted).
        self.dept_change: dict[str, str | None] = {r[1]: None for r in self.rem.get(R.DEPARTMENT, ())}
        for rule in self.add.get(R.DEPARTMENT, ()):
            self.dept_change[rule[1]] = rule[2]
        self.roles_added = {r[1] for r in self.add.get(R.ROLE, ())}
        self.roles_removed = {r[1] for r in self.rem.get(R.ROLE, ())} - self.roles_added
        self.accounts_added = {r[1] for r in self.add.get(R.ACCOUNT, ())}
        self.accounts_removed = {r[1] for r in self.rem.get(R.ACCOUNT, ())} - self.accounts_added

    # -- the domain after the change -------------------------------------------------------

    def department(self, name: str) -> bool:
        if name in self.dept_change:
            return self.dept_change[name] is not None
        return self.s is not None and name in self.s.department_parent

    def department_parent(self, name: str) -> str | None:
        if name in self.dept_change:
            return self.dept_change[name] or None
        return self.s.department_parent.get(name) if self.s is not None else None

    def role(self, name: str) -> bool:
        if name in self.roles_added:
            return True
        return self.s is not None and name in self.s.roles and name not in self.roles_removed

    def account(self, name: str) -> bool:
        if name in self.accounts_added:
            return True
        return (self.s is not None and name not in self.accounts_removed
                and self.s.account(name).status is not None)

    def _changed_links(self, ptype: str) -> tuple[dict[str, set[str]], dict[str, set[str]]]:
        plus: dict[str, set[str]] = {}
        minus: dict[str, set[str]] = {}
        for rule in self.add.get(ptype, ()):
            plus.setdefault(rule[1], set()).add(rule[2])
        for rule in self.rem.get(ptype, ()):
            minus.setdefault(rule[1], set()).add(rule[2])
        return plus, minus

    # -- the checks ------------------------------------------------------------------------

    def issue(self, message: str, code: str, hint: str | None = None) -> None:
        self.found.append(PolicyIssue(message, None, code=code, hint=hint))

    def issues(self) -> list[PolicyIssue]:
        self.departments()
        self.roles()
        self.subjects()
        self.accounts()
        self.permissions()
        self.deletions()
        return self.found

    def departments(self) -> None:
        stated: dict[str, int] = {}
        for rule in self.add.get(R.DEPARTMENT, ()):
            stated[rule[1]] = stated.get(rule[1], 0) + 1
        for rule in self.add.get(R.DEPARTMENT, ()):
            name, parent = rule[1], rule[2]
            if parent and not self.department(parent):
                self.issue(f"{rule!r}: department {name!r} has unknown parent {parent!r}", "SA120",
                           "create the parent department first")
            if stated[name] > 1 or (
                    self.s is not None and name in self.s.department_parent
                    and (R.DEPARTMENT, name, self.s.department_parent[name] or "",
                         self.domain) in self.held
                    and (R.DEPARTMENT, name, self.s.department_parent[name] or "", self.domain)
                    not in self.removed):
                self.issue(f"{rule!r}: department {name!r} would have two parents", "SA121",
                           "remove its old 'g2' rule in the same change")
            seen = {name}
            above = parent or None
            for _ in range(_WALK_LIMIT):
                if above is None:
                    break
                if above in seen:
                    self.issue(f"{rule!r}: department {name!r} would be below itself "
                               f"(through {above!r})", "SA121",
                               "a department cannot be below itself; fix the parent chain")
                    break
                seen.add(above)
                above = self.department_parent(above)

    def roles(self) -> None:
        plus, minus = self._changed_links(R.ROLE_LINK)

        def parents(role: str) -> set[str]:
            base = set(self.s.role_parents.get(role, ())) if self.s is not None else set()
            return (base - minus.get(role, set())) | plus.get(role, set())

        for rule in [*self.add.get(R.ROLE_LINK, ()), *self.add.get(R.TIMED_ROLE, ())]:
            subject, role = rule[1], rule[2]
            if not self.role(role):
                self.issue(f"{rule!r} assigns or inherits unknown role {role!r}", "SA130",
                           "create the role first")
                continue
            if rule[0] == R.ROLE_LINK and self.role(subject):
                stack: list[str] = [role]
                seen: set[str] = set()
                for _ in range(_WALK_LIMIT):
                    if not stack:
                        break
                    current = stack.pop()
                    if current == subject:
                        self.issue(f"{rule!r}: role {subject!r} would inherit itself through "
                                   f"{role!r}", "SA131",
                                   "a role cannot inherit itself, directly or through other roles")
                        break
                    if current not in seen:
                        seen.add(current)
                        stack.extend(parents(current))

    def subjects(self) -> None:
        for ptype in (R.MEMBERSHIP, R.PARENT, R.ROLE_LINK, R.PERMISSION, R.AUXILIARY,
                      R.REPORTS_TO, R.TIMED_ROLE, R.ACCOUNT_ATTRIBUTE):
            for rule in self.add.get(ptype, ()):
                subject = rule[1]
                if ptype in (R.ROLE_LINK, R.PERMISSION) and self.role(subject):
                    continue
                if not self.account(subject):
                    self.issue(f"{rule!r} names {subject!r}, which is neither a registered account "
                               "(a 'p3' rule) nor a role (a 'p4' rule)", "SA114")
        for rule in self.add.get(R.FIELD_RULE, ()):
            if not self.role(rule[1]):
                self.issue(f"{rule!r}: field rules belong to roles, and {rule[1]!r} is not a role "
                           "(a 'p4' rule)", "SA114")

    def accounts(self) -> None:
        for rule in [*self.add.get(R.MEMBERSHIP, ()), *self.add.get(R.AUXILIARY, ())]:
            if not self.department(rule[2]):
                self.issue(f"{rule!r} names unknown department {rule[2]!r}", "SA120",
                           "create the department first")
        links = {R.PARENT: ("parent", "SA140", "SA141"), R.REPORTS_TO: ("superior", "SA142", "SA143")}
        for ptype, (word, unknown_code, loop_code) in links.items():
            plus, minus = self._changed_links(ptype)

            def above(name: str, plus: dict[str, set[str]] = plus,
                      minus: dict[str, set[str]] = minus, ptype: str = ptype) -> str | None:
                if name in plus:
                    return next(iter(plus[name]))
                if self.s is None or name in minus:
                    return None
                info = self.s.account(name)
                return info.parent if ptype == R.PARENT else info.reports_to

            for rule in self.add.get(ptype, ()):
                account, target = rule[1], rule[2]
                if not self.account(target):
                    self.issue(f"{rule!r} names unknown {word} account {target!r}", unknown_code)
                    continue
                seen = {account}
                current: str | None = target
                for _ in range(_WALK_LIMIT):
                    if current is None:
                        break
                    if current in seen:
                        self.issue(f"{rule!r}: the {word} chain of {account!r} would loop "
                                   f"(through {current!r})", loop_code,
                                   "an account cannot be above itself; fix the chain")
                        break
                    seen.add(current)
                    current = above(current)

    def vocabulary(self, type: str) -> frozenset[str] | None:
        base = self.s.vocabulary.get(type) if self.s is not None else None
        plus = {r[3] for r in self.add.get(R.VOCABULARY, ()) if r[2] == type}
        minus = {r[3] for r in self.rem.get(R.VOCABULARY, ()) if r[2] == type}
        if base is None and not plus:
            return None
        return (frozenset(base or ()) - minus) | plus

    def permissions(self) -> None:
        for rule in self.add.get(R.PERMISSION, ()):
            self.permission(rule)
        for rule in self.add.get(R.DEPARTMENT_GRANT, ()):
            if not self.department(rule[1]):
                self.issue(f"{rule!r} grants to unknown department {rule[1]!r}", "SA120",
                           "create the department first")
            self.permission(rule)

    def permission(self, rule: Rule) -> None:
        type, action = rule[3], rule[4]
        if type != R.WILDCARD:
            known = self.vocabulary(type)
            if known is None:
                self.issue(f"{rule!r} names unknown resource type {type!r}", "SA152",
                           "declare it first (a 'p2' rule per action)")
            elif action != R.WILDCARD and action not in known:
                self.issue(f"{rule!r} names unknown action {action!r} for {type!r}", "SA153",
                           f"known actions: {', '.join(sorted(known)) or 'none'}")
        try:
            scope = parse_scope(rule[5])
        except ValueError:
            return  # malformed: the store's check reports it
        for name in scope.departments:
            if not self.department(name):
                self.issue(f"{rule!r}: custom scope names unknown department {name!r}", "SA120")

    def deletions(self) -> None:
        """What still names a department, role, account or action the change deletes (only
        looked for when the change deletes one: the whole domain is read then)."""
        s = self.s
        if s is None:
            return
        gone_departments = {d for d, parent in self.dept_change.items()
                            if parent is None and d in s.department_parent}
        gone_actions = {(r[2], r[3]) for r in self.rem.get(R.VOCABULARY, ())
                        if r[3] not in (self.vocabulary(r[2]) or ())}
        if not (gone_departments or self.roles_removed or self.accounts_removed or gone_actions):
            return
        removed = set(self.removed)
        still: list[Rule] = [r for r in self.held if r not in removed]
        still.extend(self.added)
        for rule in still:
            ptype = rule[0]
            if gone_departments:
                named: Iterable[str] = ()
                if ptype == R.DEPARTMENT or ptype in (R.MEMBERSHIP, R.AUXILIARY):
                    named = (rule[2],)
                elif ptype in (R.PERMISSION, R.DEPARTMENT_GRANT):
                    try:
                        named = parse_scope(rule[5]).departments
                    except ValueError:
                        named = ()
                    if ptype == R.DEPARTMENT_GRANT:
                        named = (rule[1], *named)
                for name in named:
                    if name in gone_departments:
                        self.issue(f"{rule!r} names department {name!r}, which the change deletes",
                                   "SA120", "move or delete what names it in the same change")
            if self.roles_removed and (
                    (ptype in (R.ROLE_LINK, R.TIMED_ROLE) and rule[2] in self.roles_removed)
                    or (ptype in (R.PERMISSION, R.FIELD_RULE, R.ROLE_LINK)
                        and rule[1] in self.roles_removed)):
                self.issue(f"{rule!r} names a role the change deletes", "SA130",
                           "remove its assignments, inheritance and permissions in the same change")
            if self.accounts_removed and ptype in (
                    R.MEMBERSHIP, R.PARENT, R.ROLE_LINK, R.PERMISSION, R.AUXILIARY, R.REPORTS_TO,
                    R.TIMED_ROLE, R.ACCOUNT_ATTRIBUTE) and (
                    rule[1] in self.accounts_removed
                    or (ptype in (R.PARENT, R.REPORTS_TO) and rule[2] in self.accounts_removed)):
                self.issue(f"{rule!r} names an account the change deletes", "SA114",
                           "remove the account's rules in the same change")
            if gone_actions and ptype in (R.PERMISSION, R.DEPARTMENT_GRANT) \
                    and (rule[3], rule[4]) in gone_actions:
                self.issue(f"{rule!r} names action {rule[4]!r}, which the change removes from "
                           f"the vocabulary of {rule[3]!r}", "SA153")
