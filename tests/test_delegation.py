"""Administrative operations on the sample organisation: allow and reject paths."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from salesauthz import Authorizer, EscalationError, ForbiddenError, Record, UnknownNameError
from salesauthz._engine import Snapshot
from salesauthz.conditions import Condition
from salesauthz.scopes import Scope, ScopeKind

# The sample's exports need a second factor, so a grant of export by mgr_east (or by whoever
# stands in for it) carries the same requirement (a requirement narrows a right).
MFA = Condition.of(requires={"mfa": True})


def customer(owner: str, department: str | None = None) -> Record:
    return Record("customer", owner=owner, department=department)


def acme(authz: Authorizer) -> Snapshot:
    """The current snapshot of the sample's main domain."""
    index = authz._snapshot("acme")
    assert index is not None
    return index


@pytest.fixture
def authz() -> Authorizer:
    return Authorizer.from_directory("policies", clock=lambda: 1_900_000_000.0)


def unchanged(authz: Authorizer) -> tuple[list[tuple[str, ...]], int]:
    return authz.rules(), len(authz.audit.records())


def test_manager_grants_team_read_to_own_report(authz: Authorizer) -> None:
    admin = authz.admin("mgr_east", domain="acme")
    assert not authz.check("rep_e2", "read", customer("rep_e2b", "east-2"), domain="acme")
    record = admin.grant("rep_e2", "customer", ["read"], scope="team")
    assert record.operation == "grant"
    assert not record.escalated
    assert record.added == (("p", "rep_e2", "acme", "customer", "read", "team", ""),)
    assert authz.check("rep_e2", "read", customer("someone", "east-2"), domain="acme")
    assert authz.audit.verify()


@pytest.mark.parametrize(
    ("target", "scope", "missing"),
    [("rep_e2", "all", "customer:read@all"), ("rep_w1", "team", "account:manage")],
)
def test_manager_cannot_grant_beyond_what_it_holds(authz: Authorizer, target: str, scope: str,
                                                   missing: str) -> None:
    before = unchanged(authz)
    with pytest.raises(EscalationError) as caught:
        authz.admin("mgr_east", domain="acme").grant(target, "customer", ["read"], scope=scope)
    assert missing in caught.value.missing
    assert missing in str(caught.value)
    assert caught.value.actor == "mgr_east"
    assert unchanged(authz) == before


def test_rep_cannot_assign_roles(authz: Authorizer) -> None:
    admin = authz.admin("rep_e1a", domain="acme")
    for target in ("rep_e1b", "rep_e1a", "rep_e2"):
        with pytest.raises(EscalationError):
            admin.assign_role(target, "senior_rep")
    assert authz.audit.records() == []


def test_sub_account_creation_is_bounded_by_manage_scope(authz: Authorizer) -> None:
    admin = authz.admin("mgr_east", domain="acme")
    admin.create_account("intern_e2", department="east-2", parent="mgr_east")
    assert acme(authz).account("intern_e2").parent == "mgr_east"
    with pytest.raises(EscalationError, match="west-1"):
        admin.create_account("intern_w1", department="west-1", parent="mgr_east")
    # Sub-accounts of sub-accounts, but only below the actor's own lineage.
    admin.create_account("intern_e2b", department="east-2", parent="intern_e2")
    with pytest.raises(EscalationError, match="under itself"):
        admin.create_account("x", department="east-1", parent="lead_e1")
    with pytest.raises(ForbiddenError, match="already exists"):
        admin.create_account("rep_e2", department="east-2")


def test_unassigning_the_parent_role_caps_the_sub_account_at_once(authz: Authorizer) -> None:
    record = customer("intern_e1")
    assert authz.check("intern_e1", "update", record, domain="acme")
    authz.admin("alice", domain="acme").unassign_role("mgr_east", "sales_manager")
    assert not authz.check("intern_e1", "update", record, domain="acme")


def test_freeze_takes_effect_on_next_check_for_sub_accounts_too(authz: Authorizer) -> None:
    admin = authz.admin("alice", domain="acme")
    assert authz.check("intern_e1", "read", customer("rep_e1b"), domain="acme")
    admin.freeze("mgr_east")
    assert not authz.check("mgr_east", "read", customer("rep_e2"), domain="acme")
    assert not authz.check("intern_e1", "read", customer("rep_e1b"), domain="acme")
    admin.unfreeze("mgr_east")
    assert authz.check("intern_e1", "read", customer("rep_e1b"), domain="acme")
    admin.deactivate("mgr_east")
    with pytest.raises(ForbiddenError, match="only a frozen account"):
        admin.unfreeze("mgr_east")
    with pytest.raises(ForbiddenError, match="already deactivated"):
        admin.deactivate("mgr_east")


def test_admin_escalate_bypass_is_marked(authz: Authorizer) -> None:
    # alice holds *:*@all, which includes role:escalate: granting is within her rights anyway,
    # so no bypass is needed for ordinary grants ...
    admin = authz.admin("alice", domain="acme")
    assert not admin.grant("rep_w1", "customer", ["export"], scope="team").escalated
    # ... but acting on herself is only possible through the escalate right.
    assert admin.grant("alice", "customer", ["read"], scope="own").escalated


def test_self_escalation_is_refused(authz: Authorizer) -> None:
    admin = authz.admin("mgr_east", domain="acme")
    with pytest.raises(EscalationError, match="for itself"):
        admin.grant("mgr_east", "customer", ["read"], scope="team")
    with pytest.raises(EscalationError, match="for itself"):
        admin.move("mgr_east", department="sales")


def test_move_needs_manage_in_both_places_and_the_rights_there(authz: Authorizer) -> None:
    admin = authz.admin("mgr_east", domain="acme")
    with pytest.raises(EscalationError):
        admin.move("rep_e2", department="west-1")
    authz.admin("alice", domain="acme").move("rep_e2", department="east-1")
    assert acme(authz).department_of("rep_e2") == "east-1"
    record = authz.audit.records()[-1]
    assert record.detail == "east-2 -> east-1"


def test_revoke_and_unknown_names(authz: Authorizer) -> None:
    admin = authz.admin("mgr_east", domain="acme")
    admin.grant("rep_e2", "customer", ["read", "update"], scope="team")
    admin.revoke("rep_e2", "customer", ["update"])
    grants = {g.action for g in acme(authz).account("rep_e2").grants}
    assert grants == {"read"}
    with pytest.raises(UnknownNameError):
        admin.revoke("rep_e2", "customer", ["update"])
    with pytest.raises(UnknownNameError):
        admin.grant("nobody", "customer", ["read"], scope="own")
    with pytest.raises(UnknownNameError):
        admin.grant("rep_e2", "widget", ["read"], scope="own")
    with pytest.raises(UnknownNameError):
        admin.grant("rep_e2", "customer", ["fly"], scope="own")
    with pytest.raises(UnknownNameError):
        admin.assign_role("rep_e2", "overlord")
    with pytest.raises(UnknownNameError):
        admin.unassign_role("rep_e2", "senior_rep")
    with pytest.raises(UnknownNameError):
        admin.move("rep_e2", department="mars")
    with pytest.raises(UnknownNameError):
        authz.admin("alice", domain="nowhere").freeze("rep_e2")
    with pytest.raises(ForbiddenError, match="not an active account"):
        authz.admin("gone_1", domain="acme").freeze("rep_e2")


def test_time_limited_grant_expires() -> None:
    now = [1_900_000_000.0]
    authz = Authorizer.from_directory("policies", clock=lambda: now[0])
    until = datetime.fromtimestamp(now[0] + 60, tz=UTC)
    authz.admin("mgr_east", domain="acme").grant("rep_e2", "customer", ["read"], scope="team",
                                                  expires=until)
    record = customer("x", "east-2")
    assert authz.check("rep_e2", "read", record, domain="acme")
    now[0] += 61
    assert not authz.check("rep_e2", "read", record, domain="acme")


def test_denied_attempts_can_be_audited(authz: Authorizer) -> None:
    from salesauthz.delegation import Admin

    admin = Admin(authz, "rep_e1a", "acme", audit_denied=True)
    with pytest.raises(EscalationError):
        admin.grant("rep_e1b", "customer", ["read"], scope="all")
    (record,) = authz.audit.records()
    assert record.outcome == "denied"
    assert record.added == ()
    assert "account:manage" in record.detail


def test_offboard_freezes_and_plans_transfer(authz: Authorizer) -> None:
    manager = authz.admin("mgr_east", domain="acme")
    manager.grant("rep_e2", "customer", ["read"], scope="team")
    manager.grant("intern_e1", "customer", ["export"], scope=Scope(ScopeKind.OWN, condition=MFA))
    plan = authz.admin("alice", domain="acme").offboard("mgr_east", transfer_to="lead_e1")
    assert not authz.check("mgr_east", "read", customer("mgr_east"), domain="acme")  # frozen now
    assert plan.records.owners == {"mgr_east"}
    assert plan.records.matches("mgr_east", "east")
    assert dict(plan.sub_accounts) == {"intern_e1": "reparent"}
    assert {rule[1]: action for rule, action in plan.grants} == {"rep_e2": "reissue",
                                                                  "intern_e1": "reissue"}
    applied = plan.apply()
    assert [r.operation for r in applied] == ["offboard_reparent", "offboard_reissue",
                                              "offboard_reissue"]
    assert acme(authz).account("intern_e1").parent == "lead_e1"
    assert authz.audit.verify()


def test_offboard_by_a_manager_revokes_what_it_cannot_vouch_for(authz: Authorizer) -> None:
    alice = authz.admin("alice", domain="acme")
    alice.assign_role("lead_e1", "sales_manager")
    alice.grant("lead_e1", "customer", ["delete"], scope="department_tree")
    lead = authz.admin("lead_e1", domain="acme")
    # assign: mgr_east holds it without a requirement (the sample's export needs a second factor)
    alice.grant("rep_e1a", "customer", ["assign"], scope="own")
    lead.grant("rep_e1a", "customer", ["assign"], scope="team")  # mgr_east holds this
    alice.grant("rep_e1b", "customer", ["delete"], scope="own")
    lead.grant("rep_e1b", "customer", ["delete"], scope="team")  # mgr_east does not
    lead.create_account("helper", department="east-1", parent="lead_e1")
    lead.grant("helper", "customer", ["delete"], scope="own")
    plan = authz.admin("mgr_east", domain="acme").offboard("lead_e1", transfer_to="mgr_east")
    assert {(r[1], r[4]): a for r, a in plan.grants} == {
        ("rep_e1a", "assign"): "reissue", ("rep_e1b", "delete"): "revoke",
        ("helper", "delete"): "revoke"}
    assert dict(plan.sub_accounts) == {"helper": "freeze"}
    plan.apply()
    assert not authz.check("rep_e1b", "delete", customer("rep_e1a"), domain="acme")
    assert authz.check("rep_e1b", "delete", customer("rep_e1b"), domain="acme")  # alice's grant
    assert authz.check("rep_e1a", "assign", customer("rep_e1b"), domain="acme")
    assert acme(authz).account("helper").status == "frozen"
    assert authz.audit.verify()
