"""Hypothesis state machine: random administrative operations by random actors, including
deliberate escalation attempts, never let a sub-account exceed its parent, never let anyone grant
what they do not hold, and leave no trace when rejected.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from salesauthz import Authorizer, Record, SalesAuthzError
from salesauthz import _engine as engine
from salesauthz.audit import find_break
from salesauthz.scopes import Scope, parse_scope

from .conftest import examples
from .strategies import FIXED_NOW, PERMISSION_TYPES, Organisation, organisations

ACTIONS = sorted({a for acts in PERMISSION_TYPES.values() for a in acts})
TYPES = sorted(PERMISSION_TYPES)
SCOPES = ["own", "team", "department_tree", "all", "custom"]
STEPS: list[int] = []  # steps per example, reported by the summary test below


class Administration(RuleBasedStateMachine):
    authz: Authorizer
    org: Organisation
    domain: str

    @initialize(org=organisations())
    def start(self, org: Organisation) -> None:
        self.org = org
        self.domain = org.domains[0]
        self.authz = Authorizer.from_rules(org.rules, clock=lambda: FIXED_NOW)
        self.counter = 0
        self.steps = 0
        STEPS.append(0)

    # -- helpers ---------------------------------------------------------------------------

    def accounts(self) -> list[str]:
        index = self.authz._snapshot(self.domain)
        return sorted(index.accounts) if index is not None else []

    def departments(self) -> list[str]:
        index = self.authz._snapshot(self.domain)
        return sorted(index.department_parent) if index is not None else []

    def records(self) -> list[Record]:
        """A sample of records across owners and departments (None: the owner's own)."""
        owners: list[str | None] = [*self.accounts(), None]
        departments: list[str | None] = [None, *self.departments()]
        return [Record(t, owner=o, department=d) for t in ("customer", "account")
                for o in owners[:4] for d in departments[:3]]

    def decisions(self, authz: Authorizer) -> list[bool]:
        return [authz.check(a, act, r, domain=self.domain)
                for a in self.accounts() for act in ("read", "update", "manage")
                for r in self.records() if _fits(r.type, act)]

    def attempt(self, operation: str, actor: str, *args: Any, **kwargs: Any) -> None:
        """Run one administrative operation; a rejection must leave no trace."""
        self.steps += 1
        STEPS[-1] = self.steps
        before_rules = self.authz.rules()
        before_audit = self.authz.audit.records()
        before_decisions = self.decisions(self.authz)
        pre = Authorizer.from_rules(before_rules, clock=lambda: FIXED_NOW)  # the world as it was
        admin = self.authz.admin(actor, domain=self.domain)
        try:
            record = getattr(admin, operation)(*args, **kwargs)
        except (SalesAuthzError, ValueError):
            assert self.authz.rules() == before_rules
            assert self.authz.audit.records() == before_audit
            assert self.decisions(self.authz) == before_decisions
            return
        if operation in ("grant", "assign_role") and not record.escalated:
            self.check_actor_held_it(pre, actor, record.target, record.added)

    def check_actor_held_it(self, pre: Authorizer, actor: str, target: str,
                            added: tuple[tuple[str, ...], ...]) -> None:
        """Invariant 2: whatever was granted, the actor could do at that moment on every record
        the grant reaches for the target (sampled), judged by point checks on the old rules."""
        index = pre._snapshot(self.domain)
        assert index is not None
        permissions: list[tuple[str, str, str]] = []
        for added_rule in added:
            if added_rule[0] == "p":
                permissions.append((added_rule[3], added_rule[4], added_rule[5]))
            else:  # a role assignment: every permission of the role after inheritance
                for role in index.role_closure(added_rule[2]):
                    permissions.extend((p.type, p.action, p.rule[5])
                                       for p in index.role_permissions.get(role, ()))
        home = index.department_of(target)
        for typ, action, scope_text in permissions:
            coverage = engine.scope_coverage(index, target, parse_scope(scope_text))
            samples = [(target, home)] + [(None, d) for d in sorted(coverage.departments)]
            if coverage.everything:
                samples += [(None, d) for d in self.departments()] + [(a, None) for a in self.accounts()]
            for t, a in engine.expand(index, typ, action):
                for owner, department in samples:
                    assert pre.check(actor, a, Record(t, owner=owner, department=department),
                                     domain=self.domain), (actor, target, t, a, scope_text, owner,
                                                           department)

    # -- operations ------------------------------------------------------------------------

    @precondition(lambda self: bool(self.accounts()))
    @rule(data=st.data(), typ=st.sampled_from(TYPES), scope=st.sampled_from(SCOPES))
    def grant(self, data: st.DataObject, typ: str, scope: str) -> None:
        actor = data.draw(st.sampled_from(self.accounts()))
        target = data.draw(st.sampled_from(self.accounts()))
        actions = data.draw(st.lists(st.sampled_from(PERMISSION_TYPES[typ]), min_size=1, unique=True))
        departments: list[str] = []
        if scope == "custom":
            if not self.departments():
                return
            departments = data.draw(st.lists(st.sampled_from(self.departments()), min_size=1,
                                             max_size=2, unique=True))
        self.attempt("grant", actor, target, typ, actions, scope=Scope.of(scope, departments))

    @precondition(lambda self: bool(self.accounts()))
    @rule(data=st.data())
    def revoke(self, data: st.DataObject) -> None:
        actor = data.draw(st.sampled_from(self.accounts()))
        target = data.draw(st.sampled_from(self.accounts()))
        typ = data.draw(st.sampled_from(TYPES))
        self.attempt("revoke", actor, target, typ, PERMISSION_TYPES[typ])

    @precondition(lambda self: bool(self.accounts()))
    @rule(data=st.data())
    def assign_role(self, data: st.DataObject) -> None:
        index = self.authz._snapshot(self.domain)
        assert index is not None
        if not index.roles:
            return
        actor = data.draw(st.sampled_from(self.accounts()))
        target = data.draw(st.sampled_from(self.accounts()))
        role = data.draw(st.sampled_from(sorted(index.roles)))
        self.attempt("assign_role", actor, target, role)

    @precondition(lambda self: bool(self.accounts()))
    @rule(data=st.data())
    def unassign_role(self, data: st.DataObject) -> None:
        actor = data.draw(st.sampled_from(self.accounts()))
        target = data.draw(st.sampled_from(self.accounts()))
        index = self.authz._snapshot(self.domain)
        assert index is not None
        roles = sorted(index.account(target).roles) or ["nope"]
        self.attempt("unassign_role", actor, target, data.draw(st.sampled_from(roles)))

    @precondition(lambda self: bool(self.accounts()))
    @rule(data=st.data())
    def create_sub_account(self, data: st.DataObject) -> None:
        actor = data.draw(st.sampled_from(self.accounts()))
        parent = data.draw(st.sampled_from([actor, *self.accounts()]))
        department = data.draw(st.sampled_from([None, *self.departments()]))
        self.counter += 1
        self.attempt("create_account", actor, f"new{self.counter}", department=department,
                     parent=parent)

    @precondition(lambda self: bool(self.accounts()) and bool(self.departments()))
    @rule(data=st.data())
    def move(self, data: st.DataObject) -> None:
        actor = data.draw(st.sampled_from(self.accounts()))
        target = data.draw(st.sampled_from(self.accounts()))
        self.attempt("move", actor, target, department=data.draw(st.sampled_from(self.departments())))

    @precondition(lambda self: bool(self.accounts()))
    @rule(data=st.data(), operation=st.sampled_from(["freeze", "unfreeze", "deactivate"]))
    def set_status(self, data: st.DataObject, operation: str) -> None:
        actor = data.draw(st.sampled_from(self.accounts()))
        target = data.draw(st.sampled_from(self.accounts()))
        self.attempt(operation, actor, target)

    # -- invariants ------------------------------------------------------------------------

    @invariant()
    def sub_accounts_never_exceed_their_parents(self) -> None:
        index = self.authz._snapshot(self.domain)
        if index is None:
            return
        for account, info in index.accounts.items():
            parent = info.parent
            if parent is None:
                continue
            for action in ("read", "update", "manage"):
                for record in self.records():
                    if _fits(record.type, action) and self.authz.check(account, action, record,
                                                                       domain=self.domain):
                        assert self.authz.check(parent, action, record, domain=self.domain), (
                            account, parent, action, record)

    @invariant()
    def audit_chain_holds_and_detects_tampering(self) -> None:
        records = self.authz.audit.records()
        assert self.authz.audit.verify()
        if records:
            position = len(records) // 2
            tampered = list(records)
            tampered[position] = dataclasses.replace(records[position],
                                                      target=records[position].target + "!")
            assert find_break(tampered) is not None

    @invariant()
    def decisions_equal_a_fresh_rebuild(self) -> None:
        fresh = Authorizer.from_rules(self.authz.rules(), clock=lambda: FIXED_NOW)
        assert self.decisions(self.authz) == self.decisions(fresh)


def _fits(typ: str, action: str) -> bool:
    return action in PERMISSION_TYPES.get(typ, [action])


Administration.TestCase.settings = settings(
    max_examples=examples(400), stateful_step_count=60, deadline=None
)
TestAdministration = Administration.TestCase


def test_state_machine_ran_long_sequences() -> None:
    """Reported in the closing note: how many examples ran and how long their sequences were."""
    if STEPS:  # only meaningful when the state machine ran in this session
        print(f"\nstate machine: {len(STEPS)} examples, {sum(STEPS)} operations, "
              f"max {max(STEPS)} steps, {sum(s >= 30 for s in STEPS)} examples with >= 30 steps")
        assert max(STEPS) >= 30
        if len(STEPS) >= 400:  # the CI budget ran: at least 200 sequences of 30 steps or more
            assert sum(s >= 30 for s in STEPS) >= 200
