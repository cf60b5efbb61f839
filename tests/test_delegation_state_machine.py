"""Hypothesis state machine: random administrative operations by random actors, including
deliberate escalation attempts, never let a sub-account exceed its parent, never let anyone grant
what they do not hold, and leave no trace when rejected.

The organisations carry the record model (share levels, the ``shared`` and reporting scopes,
auxiliary departments, reporting lines, timed roles) and a ``customer:share`` action; the
operations include setting reporting lines, auxiliary departments, timed role assignments and
offboarding, and the sampled records carry shares. After every operation that was not escalated,
no account may do anything on a sampled record that it could not do before unless the actor
could (the escalation rule, judged by point checks on the rules before and after) — now, and at
every later moment a right expires ("and for no longer"), on records filed in any department;
and ``check_share`` answers by its rule.

The clock moves (``advance_clock``), so grants and timed roles expire during a run; the moves of
issue 15 are among the operations: ``role:escalate`` granted at narrow scopes and then used,
grants with expiries by actors whose own rights expire, wildcard grants followed by an action
added to the vocabulary, moves by actors whose escalate right covers one department only, and
deactivation followed by freeze, unfreeze and reactivate.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from salesauthz import Authorizer, Record, SalesAuthzError, Share
from salesauthz import _engine as engine
from salesauthz._rules import Rule
from salesauthz.audit import AuditRecord, find_break
from salesauthz.scopes import NOTHING, Scope, parse_scope

from .conftest import examples
from .strategies import FIXED_NOW, PERMISSION_TYPES, SHARE_LEVELS, Organisation, organisations

# The generated organisations' actions, plus customer:share (sharing is authorized).
ACTIONS_OF = {**PERMISSION_TYPES, "customer": [*PERMISSION_TYPES["customer"], "share"]}
ACTIONS = sorted({a for acts in ACTIONS_OF.values() for a in acts})
TYPES = sorted(ACTIONS_OF)
KEYS = [(t, a) for t in TYPES for a in ACTIONS_OF[t]]
SCOPES = ["own", "team", "department_tree", "all", "custom", "shared", "subordinates",
          "subordinate_tree"]
EXPIRY_OFFSETS = (600.0, 7200.0)
STEPS: list[int] = []  # steps per example, reported by the summary test below


class Administration(RuleBasedStateMachine):
    authz: Authorizer
    org: Organisation
    domain: str

    @initialize(org=organisations(record_model=True), data=st.data())
    def start(self, org: Organisation, data: st.DataObject) -> None:
        self.org = org
        self.domain = org.domains[0]
        document = org.document(self.domain)
        # customer:share exists, some levels include it, and some accounts and roles hold it.
        extra: list[Rule] = [("p2", self.domain, "customer", "share")]
        if data.draw(st.booleans()):
            extra.append(("p7", self.domain, "customer", "rw", "share"))
        holders = sorted(document["roles"]) + sorted(document["accounts"])
        for holder in data.draw(st.lists(st.sampled_from(holders), unique=True, max_size=3)):
            scope = data.draw(st.sampled_from(["own", "team", "department_tree", "all", "shared"]))
            extra.append(("p", holder, self.domain, "customer", "share", scope, ""))
        self.now = FIXED_NOW
        self.authz = Authorizer.from_rules([*org.rules, *extra], clock=lambda: self.now)
        self.levels = {level: frozenset(actions) for level, actions in
                       document.get("sharing", {}).get("customer", {}).items()}
        if ("p7", self.domain, "customer", "rw", "share") in extra:
            self.levels["rw"] = self.levels.get("rw", frozenset()) | {"share"}
        self.counter = 0
        self.actions_added = 0
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
        """A sample of records across owners and departments (None: the owner's own), some of
        them shared."""
        owners: list[str | None] = [*self.accounts(), None]
        departments: list[str | None] = [None, *self.departments()]
        plain = [Record(t, owner=o, department=d) for t in ("customer", "account")
                 for o in owners[:4] for d in departments[:3]]
        return plain + [Record("customer", owner=o, shares=shares)
                        for o in owners[:3] for shares in self.share_sets()]

    def share_sets(self) -> list[tuple[Share, ...]]:
        """A few share sets: each level with an account, and with a department."""
        levels = [*sorted(SHARE_LEVELS["customer"]), "bogus"]
        accounts, departments = self.accounts(), self.departments()
        found: list[tuple[Share, ...]] = []
        for i, level in enumerate(levels):
            if accounts:
                found.append((Share(level, account=accounts[i % len(accounts)]),))
            if departments:
                found.append((Share(level, department=departments[i % len(departments)]),))
        return found

    def gain_records(self, pre: Authorizer) -> list[Record]:
        """Records to judge gains on: each account's own (in its department), each department's
        (owned by no account), with and without shares; owners whose department an operation
        changed are left out (records follow their owner, by design)."""
        before, after = pre._snapshot(self.domain), self.authz._snapshot(self.domain)
        assert before is not None
        assert after is not None
        owners = [o for o in sorted(before.accounts)
                  if before.department_of(o) == after.department_of(o)]
        found = [Record(t, owner=o) for t in ("customer", "order", "account") for o in owners]
        # An owner's records filed in any department (a record names its department): what an
        # ``own`` scope reaches wherever it lies (issue 15, point 3).
        found += [Record("customer", owner=o, department=d) for o in sorted(before.accounts)[:4]
                  for d in sorted(before.department_parent)]
        found += [Record(t, owner="nobody", department=d) for t in ("customer", "order")
                  for d in sorted(before.department_parent)]
        found += [Record("customer", owner=o, shares=shares) for o in [*owners[:3], "nobody"]
                  for shares in self.share_sets()]
        return found

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
        pre = Authorizer.from_rules(before_rules, clock=lambda: self.now)  # the world as it was
        admin = self.authz.admin(actor, domain=self.domain)
        try:
            if operation == "offboard":  # freezes (if active), plans, and applies the plan
                applied = admin.offboard(*args, **kwargs).apply()
                records: list[AuditRecord] = self.authz.audit.records()[len(before_audit):]
                assert records[len(records) - len(applied):] == applied
            else:
                records = [getattr(admin, operation)(*args, **kwargs)]
                assert self.authz.audit.records()[len(before_audit):] == records
        except (SalesAuthzError, ValueError):
            assert self.authz.rules() == before_rules
            assert self.authz.audit.records() == before_audit
            assert self.decisions(self.authz) == before_decisions
            return
        if any(record.escalated for record in records):
            return
        if operation in ("grant", "assign_role"):
            self.check_actor_held_it(pre, actor, records[0].target, records[0].added)
        self.check_no_gain_beyond_the_actor(pre, actor, operation)

    def moments(self, rules: list[Rule]) -> list[float]:
        """Now, and just after every later expiry the rules name (when decisions may change)."""
        found = {self.now}
        for stored in rules:
            text = stored[6] if stored[0] in ("p", "p12") else stored[4] if stored[0] == "p8" else ""
            if text:
                moment = datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
                if moment >= self.now:
                    found.add(moment + 1.0)
        return sorted(found)

    def check_no_gain_beyond_the_actor(self, pre: Authorizer, actor: str, operation: str) -> None:
        """Invariant 3 (issue 15, point 3, time included): whatever any account may do on a
        sampled record at any moment from now on and could not do then without the operation,
        the actor could do at that moment."""
        records = self.gain_records(pre)
        rules = self.authz.rules()
        moment = [self.now]
        before = Authorizer.from_rules(pre.rules(), clock=lambda: moment[0])
        after = Authorizer.from_rules(rules, clock=lambda: moment[0])
        for moment[0] in self.moments([*rules, *pre.rules()]):
            for account in self.accounts():
                for typ, action in KEYS:
                    for record in records:
                        if record.type != typ:
                            continue
                        if after.check(account, action, record, domain=self.domain) and not \
                                before.check(account, action, record, domain=self.domain):
                            assert before.check(actor, action, record, domain=self.domain), (
                                operation, actor, account, action, record, moment[0] - self.now)

    def check_actor_held_it(self, pre: Authorizer, actor: str, target: str,
                            added: tuple[tuple[str, ...], ...]) -> None:
        """Invariant 2: whatever the grant newly allows the target, the actor could do at that
        moment, on every record the grant reaches for the target (sampled), judged by point
        checks on the old rules."""
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
                    record = Record(t, owner=owner, department=department)
                    if pre.check(target, a, record, domain=self.domain) or not self.authz.check(
                            target, a, record, domain=self.domain):
                        continue  # not a decision the operation turned (what it held counts)
                    assert pre.check(actor, a, record, domain=self.domain), (
                        actor, target, t, a, scope_text, owner, department)

    # -- operations ------------------------------------------------------------------------

    def expiry(self, data: st.DataObject) -> datetime | None:
        offset = data.draw(st.sampled_from([None, None, *EXPIRY_OFFSETS]))
        return None if offset is None else datetime.fromtimestamp(self.now + offset, UTC)

    @rule(seconds=st.sampled_from([300.0, 3601.0, 7300.0]))
    def advance_clock(self, seconds: float) -> None:
        """Time passes: grants and timed roles expire."""
        self.now += seconds

    @precondition(lambda self: bool(self.accounts()))
    @rule(data=st.data(), typ=st.sampled_from(["*", *TYPES]), scope=st.sampled_from(SCOPES))
    def grant(self, data: st.DataObject, typ: str, scope: str) -> None:
        actor = data.draw(st.sampled_from(self.accounts()))
        target = data.draw(st.sampled_from(self.accounts()))
        known = ["*"] if typ == "*" else ["*", *ACTIONS_OF[typ]]
        actions = data.draw(st.lists(st.sampled_from(known), min_size=1, unique=True))
        departments: list[str] = []
        if scope == "custom":
            if not self.departments():
                return
            departments = data.draw(st.lists(st.sampled_from(self.departments()), min_size=1,
                                             max_size=2, unique=True))
        self.attempt("grant", actor, target, typ, actions, scope=Scope.of(scope, departments),
                     expires=self.expiry(data))

    @precondition(lambda self: bool(self.accounts()) and bool(self.departments()))
    @rule(data=st.data(), typ=st.sampled_from(["*", *TYPES]), scope=st.sampled_from(SCOPES))
    def grant_department(self, data: st.DataObject, typ: str, scope: str) -> None:
        """A sharing rule: every account in the department's subtree (main or auxiliary) gains
        it; invariant 3 judges each of them against the actor."""
        actor = data.draw(st.sampled_from(self.accounts()))
        department = data.draw(st.sampled_from(self.departments()))
        known = ["*"] if typ == "*" else ["*", *ACTIONS_OF[typ]]
        actions = data.draw(st.lists(st.sampled_from(known), min_size=1, unique=True))
        departments = data.draw(st.lists(st.sampled_from(self.departments()), min_size=1,
                                         max_size=2, unique=True)) if scope == "custom" else []
        self.attempt("grant_department", actor, department, typ, actions,
                     scope=Scope.of(scope, departments), expires=self.expiry(data))

    @precondition(lambda self: bool(self.accounts()) and bool(self.departments()))
    @rule(data=st.data())
    def revoke_department(self, data: st.DataObject) -> None:
        index = self.authz._snapshot(self.domain)
        assert index is not None
        actor = data.draw(st.sampled_from(self.accounts()))
        granted = [p for grants in index.department_grants.values() for p in grants]
        if len(granted) > 0 and data.draw(st.booleans()):
            grant = data.draw(st.sampled_from(granted))
            self.attempt("revoke_department", actor, grant.rule[1], grant.type, [grant.action])
        else:  # nothing of the kind: refused without a trace
            self.attempt("revoke_department", actor, data.draw(st.sampled_from(self.departments())),
                         "customer", ["read"], scope="own")

    @precondition(lambda self: len(self.accounts()) >= 2)
    @rule(data=st.data(), scope=st.sampled_from(["own", "team", "department_tree", "custom"]))
    def escalate_narrowly(self, data: st.DataObject, scope: str) -> None:
        """An administrator gives someone role:escalate (and account:manage) at a narrow scope;
        the next operations may try to use it beyond that scope."""
        index = self.authz._snapshot(self.domain)
        assert index is not None
        admins = [a for a in self.accounts() if self.authz.check(
            a, "escalate", Record("role", owner="nobody"), domain=self.domain)] or self.accounts()
        actor = data.draw(st.sampled_from(admins))
        target = data.draw(st.sampled_from(self.accounts()))
        departments = data.draw(st.lists(st.sampled_from(self.departments()), min_size=1, max_size=1)) \
            if scope == "custom" and self.departments() else []
        if scope == "custom" and not departments:
            return
        for typ, action in (("role", "escalate"), ("account", "manage")):
            self.attempt("grant", actor, target, typ, [action], scope=Scope.of(scope, departments))

    @precondition(lambda self: len(self.departments()) >= 2)
    @rule(data=st.data())
    def move_department(self, data: st.DataObject) -> None:
        actor = data.draw(st.sampled_from(self.accounts()))
        name = data.draw(st.sampled_from(self.departments()))
        parent = data.draw(st.sampled_from([None, *self.departments()]))
        self.attempt("move_department", actor, name, parent=parent)

    @precondition(lambda self: bool(self.accounts()) and bool(self.departments()))
    @rule(data=st.data(), step=st.sampled_from(["create", "delete", "rename"]))
    def department_lifecycle(self, data: st.DataObject, step: str) -> None:
        actor = data.draw(st.sampled_from(self.accounts()))
        if step == "create":
            self.counter += 1
            parent = data.draw(st.sampled_from([None, *self.departments()]))
            self.attempt("create_department", actor, f"dept{self.counter}", parent=parent)
        elif step == "delete":
            self.attempt("delete_department", actor, data.draw(st.sampled_from(self.departments())))
        else:
            self.rename_department(actor, data)

    def rename_department(self, actor: str, data: st.DataObject) -> None:
        """A rename (to a fresh name, or to a taken one: refused) changes no decision but the
        name: every account decides on each sampled record, re-filed and re-shared under the new
        name, as it did before."""
        old = data.draw(st.sampled_from(self.departments()))
        # Mostly by an actor whose account:manage reaches the department (most are refused
        # otherwise), sometimes by anyone.
        reach = {a: self.authz.effective_permissions(a, domain=self.domain).get(
            ("account", "manage"), NOTHING) for a in self.accounts()}
        managers = [a for a, manage in reach.items() if manage.everything or old in manage.departments]
        actor = data.draw(st.sampled_from(managers or [actor])) if data.draw(st.booleans()) \
            else actor
        self.counter += 1
        fresh = f"renamed {self.counter}"
        new = data.draw(st.sampled_from([fresh, fresh, fresh, *self.departments()[:2]]))
        records = self.records()
        before = [self.authz.check(a, act, r, domain=self.domain) for a in self.accounts()
                  for act in ("read", "update", "manage") for r in records if _fits(r.type, act)]
        trail = len(self.authz.audit.records())
        self.attempt("rename_department", actor, old, new)
        if len(self.authz.audit.records()) == trail:
            return  # refused: attempt() saw it leave no trace

        def moved(record: Record) -> Record:
            return record._replace(
                department=new if record.department == old else record.department,
                shares=tuple(share._replace(department=new)
                             if share.department == old else share for share in record.shares))

        after = [self.authz.check(a, act, moved(r), domain=self.domain) for a in self.accounts()
                 for act in ("read", "update", "manage") for r in records if _fits(r.type, act)]
        assert after == before, (actor, old, new)

    @precondition(lambda self: bool(self.accounts()))
    @rule(data=st.data(), typ=st.sampled_from(TYPES), scope=st.sampled_from(SCOPES[:4]),
          adding=st.booleans())
    def edit_role(self, data: st.DataObject, typ: str, scope: str, adding: bool) -> None:
        index = self.authz._snapshot(self.domain)
        assert index is not None
        if not index.roles:
            return
        actor = data.draw(st.sampled_from(self.accounts()))
        role = data.draw(st.sampled_from(sorted(index.roles)))
        actions = data.draw(st.lists(st.sampled_from(["*", *ACTIONS_OF[typ]]), min_size=1,
                                     unique=True))
        if adding:
            self.attempt("add_role_permission", actor, role, typ, actions, scope=scope)
        else:
            self.attempt("remove_role_permission", actor, role, typ, actions)

    @precondition(lambda self: bool(self.accounts()))
    @rule(data=st.data())
    def delete_account(self, data: st.DataObject) -> None:
        actor, target = (data.draw(st.sampled_from(self.accounts())) for _ in range(2))
        self.attempt("delete_account", actor, target)

    @rule(data=st.data())
    def extend_vocabulary(self, data: st.DataObject) -> None:
        """A new action on a type (a raw, audited change): a wildcard an actor vouched for
        without escalating must not pick it up (see the invariant below)."""
        typ = data.draw(st.sampled_from(["customer", "order"]))
        self.actions_added += 1
        action = f"act{self.actions_added}"
        self.authz.apply_changes([("p2", self.domain, typ, action)], actor="system:vocabulary")
        assert self.authz.audit.records()[-1].actor == "system:vocabulary"

    @precondition(lambda self: bool(self.accounts()))
    @rule(data=st.data())
    def revoke(self, data: st.DataObject) -> None:
        actor = data.draw(st.sampled_from(self.accounts()))
        target = data.draw(st.sampled_from(self.accounts()))
        typ = data.draw(st.sampled_from(TYPES))
        self.attempt("revoke", actor, target, typ, ACTIONS_OF[typ])

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
        self.attempt("assign_role", actor, target, role, expires=self.expiry(data))

    @precondition(lambda self: bool(self.accounts()))
    @rule(data=st.data())
    def unassign_role(self, data: st.DataObject) -> None:
        actor = data.draw(st.sampled_from(self.accounts()))
        target = data.draw(st.sampled_from(self.accounts()))
        index = self.authz._snapshot(self.domain)
        assert index is not None
        info = index.account(target)
        roles = sorted(info.roles | {role for role, _ in info.timed_roles}) or ["nope"]
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
    @rule(data=st.data(),
          operation=st.sampled_from(["freeze", "unfreeze", "deactivate", "reactivate"]))
    def set_status(self, data: st.DataObject, operation: str) -> None:
        actor = data.draw(st.sampled_from(self.accounts()))
        target = data.draw(st.sampled_from(self.accounts()))
        self.attempt(operation, actor, target)

    @precondition(lambda self: bool(self.accounts()))
    @rule(data=st.data())
    def set_reports_to(self, data: st.DataObject) -> None:
        actor, target = (data.draw(st.sampled_from(self.accounts())) for _ in range(2))
        superior = data.draw(st.sampled_from([None, actor, *self.accounts()]))
        self.attempt("set_reports_to", actor, target, superior)

    @precondition(lambda self: bool(self.accounts()) and bool(self.departments()))
    @rule(data=st.data(), adding=st.booleans())
    def auxiliary_department(self, data: st.DataObject, adding: bool) -> None:
        actor, target = (data.draw(st.sampled_from(self.accounts())) for _ in range(2))
        index = self.authz._snapshot(self.domain)
        assert index is not None
        pool = self.departments() if adding else sorted(index.account(target).also_in) or ["none"]
        department = data.draw(st.sampled_from(pool))
        self.attempt("add_auxiliary_department" if adding else "remove_auxiliary_department",
                     actor, target, department)

    @precondition(lambda self: len(self.accounts()) >= 2)
    @rule(data=st.data())
    def offboard(self, data: st.DataObject) -> None:
        actor, leaver, successor = (data.draw(st.sampled_from(self.accounts())) for _ in range(3))
        self.attempt("offboard", actor, leaver, transfer_to=successor)

    @precondition(lambda self: bool(self.accounts()))
    @rule(data=st.data())
    def share_check(self, data: st.DataObject) -> None:
        """check_share by its rule: a declared level of the type, a known target, and check()
        allows share and every action of the level (explain_share agrees)."""
        actor = data.draw(st.sampled_from(self.accounts()))
        record = data.draw(st.sampled_from([r for r in self.records() if r.type == "customer"]))
        share = data.draw(st.sampled_from([s for shares in self.share_sets() for s in shares]))
        expected = share.level in self.levels and all(
            self.authz.check(actor, action, record, domain=self.domain)
            for action in ["share", *self.levels[share.level]])
        assert self.authz.check_share(actor, record, share, domain=self.domain) is expected
        assert self.authz.explain_share(actor, record, share, domain=self.domain).allowed is expected

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
        fresh = Authorizer.from_rules(self.authz.rules(), clock=lambda: self.now)
        assert self.decisions(self.authz) == self.decisions(fresh)

    @invariant()
    def no_wildcard_was_vouched_for_without_escalating(self) -> None:
        """Issue 15, point 5: a grant that did not need escalate stores the actions the actor
        held (so later vocabulary does not reach it); only an escalated grant keeps a ``*``."""
        for record in self.authz.audit.records():
            if record.operation in ("grant", "edit_role") and not record.escalated:
                assert all("*" not in (rule[3], rule[4]) for rule in record.added), record

    @invariant()
    def deactivation_is_undone_only_by_reactivate(self) -> None:
        """Issue 15, point 1: an account deactivated is active again only through an (escalated)
        reactivate record."""
        status: dict[str, str] = {}
        for record in self.authz.audit.records():
            for added in record.added:
                if added[0] == "p3":
                    if status.get(added[1]) == "deactivated" and added[3] != "deactivated":
                        assert (record.operation, record.escalated) == ("reactivate", True), record
                    status[added[1]] = added[3]


def _fits(typ: str, action: str) -> bool:
    return action in ACTIONS_OF.get(typ, [action])


Administration.TestCase.settings = settings(
    # 100 sequences of up to 50 operations in CI (each operation checks sampled records with
    # shares before and after, at every moment a right expires); HYPOTHESIS_PROFILE=long runs
    # 20 times as many.
    max_examples=examples(100), stateful_step_count=50, deadline=None
)
# Run without coverage tracing (pytest-cov's marker): the sequences evaluate the Casbin
# reference thousands of times, which tracing slows fourfold (27 s -> 106 s of a CI worker),
# and the lines they reach are measured by the other tests.
TestAdministration = pytest.mark.no_cover(Administration.TestCase)


def test_state_machine_ran_long_sequences() -> None:
    """Reported in the closing note: how many examples ran and how long their sequences were."""
    if STEPS:  # only meaningful when the state machine ran in this session
        print(f"\nstate machine: {len(STEPS)} examples, {sum(STEPS)} operations, "
              f"max {max(STEPS)} steps, {sum(s >= 30 for s in STEPS)} examples with >= 30 steps")
        assert max(STEPS) >= 30
        if len(STEPS) >= 100:  # the CI budget ran: at least 25 sequences of 30 steps or more
            assert sum(s >= 30 for s in STEPS) >= 25
