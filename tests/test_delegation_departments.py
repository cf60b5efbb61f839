"""Grants to departments on ``Admin`` (sharing rules): decided as a direct grant to every account
they reach — the actor manages each of them and holds what each would gain — and audited; the
operations that put an account into a department (create, move, auxiliary departments) are judged
on that department's grants too."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from salesauthz import Authorizer, EscalationError, Record
from salesauthz.errors import UnknownNameError
from tests._delegation import NOW, refused
from tests._delegation import authz as authz  # a fixture (`as`: imported to be used by name)
from tests._delegation import clock as clock  # a fixture

D = "acme"


def customer(department: str, owner: str = "x") -> Record:
    return Record("customer", owner=owner, department=department)


def test_a_manager_grants_its_teams_what_it_holds_itself(authz: Authorizer) -> None:
    manager = authz.admin("mgr_east", domain=D)
    assert not authz.check("rep_e1a", "read", customer("east-1"), domain=D)
    record = manager.grant_department("east-1", "customer", ["read"], scope="team")
    assert (record.operation, record.target, record.escalated) == ("grant_department", "east-1", False)
    assert record.added == (("p12", "east-1", D, "customer", "read", "team", ""),)
    assert record.detail == "customer:read@team"
    # every account of east-1 holds it, its scope relative to that account
    assert authz.check("rep_e1a", "read", customer("east-1"), domain=D)
    assert not authz.check("rep_e1a", "read", customer("east-2"), domain=D)
    # asst_east is in east-1 and also in east-2: its team is both
    assert authz.check("asst_east", "read", customer("east-2"), domain=D)
    assert "grant to department east-1" in authz.explain(
        "rep_e1a", "read", customer("east-1"), domain=D).reason
    assert manager.revoke_department("east-1", "customer", ["read"]).removed == record.added
    assert not authz.check("rep_e1a", "read", customer("east-1"), domain=D)
    assert authz.audit.verify()


@pytest.mark.parametrize(("department", "scope", "departments", "missing"), [
    ("east-1", "all", (), "customer:read@all"),  # wider than the manager's department_tree
    ("east-1", "custom", ("west",), "customer:read@custom[west]"),
])
def test_a_grant_wider_than_the_actors_own_right_is_refused(
        authz: Authorizer, department: str, scope: str, departments: tuple[str, ...],
        missing: str) -> None:
    manager = authz.admin("mgr_east", domain=D)
    error = refused(authz, EscalationError, lambda: manager.grant_department(
        department, "customer", ["read"], scope=scope, departments=departments))
    assert missing in error.missing


def test_the_actor_must_manage_every_account_the_grant_reaches(authz: Authorizer) -> None:
    manager = authz.admin("mgr_east", domain=D)
    refused(authz, EscalationError, lambda: manager.grant_department(
        "service-east", "customer", ["read"], scope="own"))  # not its department
    # svc_1 (main department service) joins east-2 as an auxiliary department: a grant to east-2
    # reaches it, and the east manager does not manage it
    authz.admin("alice", domain=D).add_auxiliary_department("svc_1", "east-2")
    error = refused(authz, EscalationError, lambda: manager.grant_department(
        "east-2", "customer", ["read"], scope="own"))
    assert "svc_1" in str(error)
    # a grant to its own department gives the actor itself the right: only with escalate
    refused(authz, EscalationError, lambda: manager.grant_department(
        "east", "customer", ["read"], scope="own"))


def test_escalate_covers_what_the_actor_lacks(authz: Authorizer) -> None:
    record = authz.admin("alice", domain=D).grant_department(
        "service-east", "ticket", ["read"], scope="all")
    assert record.escalated is False  # alice holds everything anyway
    assert authz.check("svc_e1", "read", Record("ticket", owner="rep_w1"), domain=D)


def test_a_wildcard_grant_is_stored_as_the_actions_held(authz: Authorizer) -> None:
    authz.admin("alice", domain=D).grant("mgr_east", "note", ["read", "create"], scope="all")
    record = authz.admin("mgr_east", domain=D).grant_department("east-1", "note", ["*"], scope="team")
    assert not record.escalated
    assert sorted(record.added) == [("p12", "east-1", D, "note", "create", "team", ""),
                                    ("p12", "east-1", D, "note", "read", "team", "")]
    # (the vocabulary is a set: the actions in either order)
    assert record.detail in ("note:*@team (as note:read, note:create)",
                             "note:*@team (as note:create, note:read)")
    authz.apply_changes([("p2", D, "note", "delete")], actor="system:vocabulary")
    assert not authz.check("rep_e1a", "delete", Record("note", owner="x", department="east-1"),
                           domain=D)
    # An escalated grant (sales holds alice herself) keeps the wildcard.
    escalated = authz.admin("alice", domain=D).grant_department("sales", "note", ["*"], scope="own")
    assert escalated.escalated
    assert escalated.added == (("p12", "sales", D, "note", "*", "own", ""),)
    assert escalated.detail == "note:*@own"


def test_unknown_names_and_past_expiries_are_refused(authz: Authorizer) -> None:
    admin = authz.admin("alice", domain=D)
    refused(authz, UnknownNameError, lambda: admin.grant_department(
        "nowhere", "customer", ["read"], scope="all"))
    refused(authz, UnknownNameError, lambda: admin.grant_department(
        "east", "widget", ["read"], scope="all"))
    refused(authz, UnknownNameError, lambda: admin.grant_department(
        "east", "customer", ["fly"], scope="all"))
    refused(authz, UnknownNameError, lambda: admin.grant_department(
        "east", "customer", ["read"], scope="custom", departments=["nowhere"]))
    refused(authz, ValueError, lambda: admin.grant_department(
        "east", "customer", ["read"], scope="all", expires=datetime(2020, 1, 1, tzinfo=UTC)))
    refused(authz, UnknownNameError, lambda: admin.revoke_department("east", "customer", ["read"]))
    refused(authz, EscalationError, lambda: authz.admin("mgr_east", domain=D).revoke_department(
        "service-east", "customer", ["read"]))


def test_an_expiring_grant_to_a_department_ends_by_itself(authz: Authorizer, clock: list[float]) -> None:
    until = datetime.fromtimestamp(NOW + 3600, UTC)
    record = authz.admin("alice", domain=D).grant_department(
        "west", "order", ["approve"], scope="team", expires=until)
    assert record.added == (("p12", "west", D, "order", "approve", "team", "2030-03-17T18:46:40Z"),)
    assert record.detail == "order:approve@team until 2030-03-17T18:46:40Z"
    order = Record("order", owner="x", department="west-1")
    assert authz.check("rep_w1", "approve", order, domain=D)  # west-1 is below west
    clock[0] = NOW + 3600
    assert not authz.check("rep_w1", "approve", order, domain=D)


def test_putting_an_account_into_a_department_is_judged_on_its_grants(authz: Authorizer) -> None:
    # east-2's accounts may export every customer: more than the east manager holds
    authz.admin("alice", domain=D).grant_department("east-2", "customer", ["export"], scope="all")
    manager = authz.admin("mgr_east", domain=D)
    for attempt in (lambda: manager.move("rep_e1b", department="east-2"),
                    lambda: manager.add_auxiliary_department("rep_e1b", "east-2"),
                    lambda: manager.create_account("newbie", department="east-2")):
        error = refused(authz, EscalationError, attempt)
        assert "customer:export@all" in error.missing
    # without the grant the same move is the manager's to make
    authz.admin("alice", domain=D).revoke_department("east-2", "customer", ["export"])
    assert manager.move("rep_e1b", department="east-2").escalated is False


def test_renaming_a_department_renames_its_grants_and_the_grants_naming_it(authz: Authorizer) -> None:
    admin = authz.admin("alice", domain=D)
    admin.grant_department("east-2", "order", ["read"], scope="custom", departments=["east-2"])
    record = admin.rename_department("east-2", "east-two")
    assert ("p12", "east-two", D, "order", "read", "custom:east-two", "") in record.added
    assert ("p12", "service-east", D, "customer", "read", "custom:east", "") in authz.rules(D)
    assert not [r for r in authz.rules(D) if "east-2" in r]
    assert authz.check("rep_e2", "read", Record("order", owner="x", department="east-two"), domain=D)
