"""Organisation operations on ``Admin``: departments, role permissions and account deletion —
authorized by the actor's own rights under the escalation rule, validated, audited."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from salesauthz import Authorizer, EscalationError, ForbiddenError, PolicyError, Record
from salesauthz.errors import UnknownNameError

D = "acme"


@pytest.fixture
def authz() -> Authorizer:
    return Authorizer.from_directory("policies", clock=lambda: 1_900_000_000.0)


def refused(authz: Authorizer, error: type[Exception], attempt: Callable[[], object]) -> Exception:
    rules, trail = authz.rules(), authz.audit.records()
    with pytest.raises(error) as caught:
        attempt()
    assert authz.rules() == rules
    assert authz.audit.records() == trail
    return caught.value


def customer(department: str, owner: str = "x") -> Record:
    return Record("customer", owner=owner, department=department)


def test_a_manager_creates_and_deletes_departments_where_it_manages(authz: Authorizer) -> None:
    manager = authz.admin("mgr_east", domain=D)
    record = manager.create_department("east-3", parent="east")
    assert (record.operation, record.added, record.escalated) == (
        "create_department", (("g2", "east-3", "east", D),), False)
    assert authz.check("mgr_east", "read", customer("east-3"), domain=D)  # department_tree
    refused(authz, EscalationError, lambda: manager.create_department("west-2", parent="west"))
    refused(authz, EscalationError, lambda: manager.create_department("top", parent=None))
    refused(authz, ForbiddenError, lambda: manager.create_department("east-3", parent="east"))
    refused(authz, UnknownNameError, lambda: manager.create_department("x", parent="nowhere"))
    assert manager.delete_department("east-3").removed == (("g2", "east-3", "east", D),)
    assert authz.audit.verify()


def test_a_department_that_still_holds_something_is_not_deleted(authz: Authorizer) -> None:
    error = refused(authz, PolicyError, lambda: authz.admin("alice", domain=D).delete_department("east-2"))
    assert {issue.code for issue in error.issues} == {"SA120"}  # type: ignore[attr-defined]
    assert "rep_e2" in str(error)


def test_moving_a_department_is_judged_on_what_anyone_would_gain(authz: Authorizer) -> None:
    manager = authz.admin("mgr_east", domain=D)
    # mgr_east does not manage west-1: moving it under east would give mgr_east west-1.
    error = refused(authz, EscalationError, lambda: manager.move_department("west-1", parent="east"))
    assert "department west-1" in str(error)
    # Within east it may: east-2 below east-1 gives nobody anything mgr_east lacks...
    alice = authz.admin("alice", domain=D)
    alice.create_department("east-9", parent="east")
    assert manager.move_department("east-9", parent="east-1").detail == "east -> east-1"
    # ... unless someone would reach records there that mgr_east does not: a custom scope over
    # east-1's subtree for the analyst, who may export them (mgr_east may not delete).
    alice.grant("analyst_1", "customer", ["delete"], scope="custom", departments=["east-1"])
    alice.create_department("east-8", parent="east")
    error = refused(authz, EscalationError, lambda: manager.move_department("east-8", parent="east-1"))
    assert "customer:delete@custom[east-1] for analyst_1" in error.missing  # type: ignore[attr-defined]
    # Below itself: refused, whoever asks.
    refused(authz, ForbiddenError, lambda: alice.move_department("east", parent="east-1"))
    # alice reaches everything: moving west-1 under east is hers to decide.
    assert not alice.move_department("west-1", parent="east").escalated
    assert authz.check("mgr_east", "read", customer("west-1"), domain=D)


def test_adding_a_permission_to_a_role_is_judged_for_every_holder(authz: Authorizer) -> None:
    manager = authz.admin("mgr_east", domain=D)
    # junior_rep is held in west too: mgr_east does not manage those accounts.
    error = refused(authz, EscalationError, lambda: manager.add_role_permission(
        "junior_rep", "customer", ["read"], scope="team"))
    assert "may not manage account rep_w1" in str(error)
    # sales_assistant is held by asst_e1 and asst_east (east-1, also east-2) only, who read their
    # team's customers (and so their own, wherever filed): reading their department trees adds
    # only east-1 and east-2, within mgr_east's department_tree.
    record = manager.add_role_permission("sales_assistant", "customer", ["read"],
                                         scope="department_tree")
    assert record.added == (("p", "sales_assistant", D, "customer", "read", "department_tree", ""),)
    assert not record.escalated
    # Approving orders at team would let an assistant approve its own orders filed anywhere.
    error = refused(authz, EscalationError, lambda: manager.add_role_permission(
        "sales_assistant", "order", ["approve"], scope="team"))
    assert "order:approve@team" in error.missing  # type: ignore[attr-defined]
    # A role the actor holds itself (senior_rep, inherited): that needs escalate.
    refused(authz, EscalationError, lambda: manager.add_role_permission(
        "senior_rep", "customer", ["read"], scope="team"))
    assert manager.remove_role_permission("sales_assistant", "customer", ["read"],
                                          scope="department_tree").removed == record.added
    refused(authz, UnknownNameError, lambda: manager.remove_role_permission(
        "sales_assistant", "customer", ["read"], scope="department_tree"))
    # alice reaches everything; a wildcard she vouches for without escalating is stored as the
    # actions the type has now.
    wide = authz.admin("alice", domain=D).add_role_permission("sales_ops", "note", ["*"], scope="all")
    assert sorted(wide.added) == [("p", "sales_ops", D, "note", "create", "all", ""),
                                  ("p", "sales_ops", D, "note", "read", "all", "")]


def test_deleting_an_account(authz: Authorizer) -> None:
    manager = authz.admin("mgr_east", domain=D)
    refused(authz, ForbiddenError, lambda: manager.delete_account("rep_e1b"))  # active
    refused(authz, ForbiddenError, lambda: manager.delete_account("mgr_east"))  # itself
    refused(authz, EscalationError, lambda: authz.admin("lead_e1", domain=D).delete_account("gone_1"))
    record = manager.delete_account("gone_1")
    assert ("p3", "gone_1", D, "deactivated") in record.removed
    assert ("g", "gone_1", "junior_rep", D) in record.removed
    assert authz.account("gone_1", domain=D) is None
    alice = authz.admin("alice", domain=D)
    alice.freeze("mgr_east")
    error = refused(authz, ForbiddenError, lambda: alice.delete_account("mgr_east"))
    assert "intern_e1" in str(error)  # a sub-account: offboard first
    assert authz.audit.verify()


def test_roles_are_created_and_deleted_by_those_who_manage_their_holders(authz: Authorizer) -> None:
    rep = authz.admin("rep_e1a", domain=D)
    refused(authz, EscalationError, lambda: rep.create_role("r1"))
    authz.admin("alice", domain=D).create_role("spare")
    error = refused(authz, EscalationError, lambda: rep.add_role_permission(  # nobody holds it
        "spare", "customer", ["delete"], scope="all"))
    assert "holds no account:manage" in str(error)
    manager = authz.admin("mgr_east", domain=D)
    record = manager.create_role("east_helper", inherits=["junior_rep"])
    assert record.added == (("p4", "east_helper", D), ("g", "east_helper", "junior_rep", D))
    refused(authz, ForbiddenError, lambda: manager.create_role("east_helper"))
    refused(authz, UnknownNameError, lambda: manager.create_role("r2", inherits=["nope"]))
    # senior_rep is held in west-1 too (rep_w2, timed): mgr_east does not manage it there.
    error = refused(authz, EscalationError, lambda: manager.delete_role("senior_rep"))
    assert "rep_w2" in str(error)
    assert manager.delete_role("east_helper").removed == (
        ("g", "east_helper", "junior_rep", D), ("p4", "east_helper", D))
    alice = authz.admin("alice", domain=D)
    removed = alice.delete_role("account_team").removed
    assert ("g", "rep_e2", "account_team", D) in removed
    assert "account_team" not in authz.account("rep_e2", domain=D).roles  # type: ignore[union-attr]
    assert authz.audit.verify()


def test_extending_the_vocabulary_hands_wildcard_holders_something_new(authz: Authorizer) -> None:
    # The admin role holds *:*: a new action reaches alice, which nobody could do before.
    error = refused(authz, EscalationError,
                    lambda: authz.admin("mgr_east", domain=D).extend_vocabulary("note", ["pin"]))
    assert "note:pin@all for alice" in error.missing  # type: ignore[attr-defined]
    record = authz.admin("alice", domain=D).extend_vocabulary("note", ["pin", "read"])
    assert (record.added, record.escalated) == ((("p2", D, "note", "pin"),), True)
    assert authz.check("alice", "pin", Record("note", owner="x"), domain=D)
    refused(authz, ForbiddenError,
            lambda: authz.admin("alice", domain=D).extend_vocabulary("note", ["pin"]))
    refused(authz, ValueError, lambda: authz.admin("alice", domain=D).extend_vocabulary("note", ["*"]))
