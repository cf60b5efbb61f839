"""Raw writes (``Authorizer.apply_changes``): validated with the loader's codes on what the change
touches, refused whole (nothing written, nothing audited), and audited under an actor."""

from __future__ import annotations

import pytest

from salesauthz import Authorizer, PolicyError, Record
from salesauthz._rules import Rule

D = "acme"


@pytest.fixture
def authz() -> Authorizer:
    return Authorizer.from_directory("policies", clock=lambda: 1_900_000_000.0)


@pytest.mark.parametrize(("added", "removed", "code", "names"), [
    # a department cycle: east below east-1 (mgr_east would then reach west-1 through it, etc.)
    ([("g2", "east", "east-1", D)], [("g2", "east", "sales", D)], "SA121", "'east'"),
    ([("g2", "east", "west", D)], [], "SA121", "two parents"),
    ([("g2", "north", "nowhere", D)], [], "SA120", "'nowhere'"),
    ([("g3", "newbie", "nowhere", D), ("p3", "newbie", D, "active")], [], "SA120", "'nowhere'"),
    ([("g5", "rep_e1a", "nowhere", D)], [], "SA120", "'nowhere'"),
    ([("p", "rep_e1a", D, "customer", "read", "custom:nowhere", "")], [], "SA120", "'nowhere'"),
    # an unknown role, and senior_rep inheriting sales_manager (a senior rep could approve orders)
    ([("g", "rep_e1a", "no_such_role", D)], [], "SA130", "'no_such_role'"),
    ([("p8", "rep_e1a", "no_such_role", D, "2031-01-01T00:00:00Z")], [], "SA130", "'no_such_role'"),
    ([("g", "senior_rep", "sales_manager", D)], [], "SA131", "'senior_rep'"),
    ([("g", "ghost", "junior_rep", D)], [], "SA114", "'ghost'"),
    ([("p", "ghost", D, "customer", "read", "own", "")], [], "SA114", "'ghost'"),
    ([("g4", "rep_e1a", "ghost", D)], [], "SA140", "'ghost'"),
    ([("g4", "mgr_east", "intern_e1", D)], [], "SA141", "loop"),
    ([("g6", "rep_e1b", "ghost", D)], [], "SA142", "'ghost'"),
    ([("g6", "dir_sales", "rep_e1a", D)], [], "SA143", "loop"),
    ([("p", "rep_e1a", D, "widget", "read", "own", "")], [], "SA152", "'widget'"),
    ([("p", "rep_e1a", D, "customer", "fly", "own", "")], [], "SA153", "'fly'"),
    # grants to departments: an unknown department, type, action or custom department
    ([("p12", "nowhere", D, "customer", "read", "all", "")], [], "SA120", "'nowhere'"),
    ([("p12", "service", D, "widget", "read", "all", "")], [], "SA152", "'widget'"),
    ([("p12", "service", D, "customer", "fly", "all", "")], [], "SA153", "'fly'"),
    ([("p12", "service", D, "customer", "read", "custom:nowhere", "")], [], "SA120", "'nowhere'"),
    # deletions leaving something dangling
    ([], [("g2", "east-2", "east", D)], "SA120", "'east-2'"),
    ([], [("g2", "service-east", "service", D), ("g3", "svc_e1", "service-east", D)],
     "SA120", "'service-east'"),
    ([], [("p4", "junior_rep", D)], "SA130", "junior_rep"),
    ([], [("p3", "lead_e1", D, "active")], "SA114", "lead_e1"),
    ([], [("p2", D, "order", "approve")], "SA153", "'approve'"),
])
def test_a_change_the_loader_would_refuse_is_refused_whole(
        authz: Authorizer, added: list[Rule], removed: list[Rule], code: str, names: str) -> None:
    rules, trail = authz.rules(), authz.audit.records()
    decision = authz.check("mgr_east", "read", Record("customer", owner="x", department="west-1"),
                           domain=D)
    with pytest.raises(PolicyError) as caught:
        authz.apply_changes(added, removed, actor="system:import")
    assert code in {issue.code for issue in caught.value.issues}, caught.value
    assert names in str(caught.value)
    assert authz.rules() == rules
    assert authz.audit.records() == trail
    assert authz.check("mgr_east", "read", Record("customer", owner="x", department="west-1"),
                       domain=D) is decision


def test_a_consistent_change_is_applied_and_audited_under_its_actor(authz: Authorizer) -> None:
    added: list[Rule] = [("g2", "north", "sales", D), ("p3", "rep_n1", D, "active"),
                         ("g3", "rep_n1", "north", D), ("g", "rep_n1", "junior_rep", D)]
    (record,) = authz.apply_changes(added, actor="system:import")
    assert (record.actor, record.operation, record.domain) == ("system:import", "apply_changes", D)
    assert sorted(record.added) == sorted(added)
    assert record.detail == "4 added, 0 removed"
    assert authz.audit.verify()
    # Moving a department within the tree, and deleting one nothing names, are fine too.
    authz.apply_changes([("g2", "north", "east", D)], [("g2", "north", "sales", D)])
    assert authz.audit.records()[-1].actor == "system:apply_changes"
    authz.apply_changes([("g2", "empty", "", D)])
    authz.apply_changes(removed=[("g2", "empty", "", D)])


def test_a_change_fixing_what_it_breaks_in_the_same_batch_passes(authz: Authorizer) -> None:
    # Deleting a role together with everything that names it.
    named = [r for r in authz.rules(D) if "account_team" in r[1:3] and r[0] in ("g", "p", "p4")]
    authz.apply_changes(removed=named, actor="system:cleanup")
    assert "account_team" not in authz.account("rep_e2", domain=D).roles  # type: ignore[union-attr]


def test_an_actor_is_required(authz: Authorizer) -> None:
    with pytest.raises(ValueError, match="needs an actor"):
        authz.apply_changes([("p4", "extra", D)], actor=" ")
    assert ("p4", "extra", D) not in authz.rules(D)


def test_given_drafts_are_the_audit(authz: Authorizer) -> None:
    from salesauthz.audit import AuditDraft

    draft = AuditDraft(1.0, "system:seed", D, "seed", D, (("p4", "extra", D),))
    (record,) = authz.apply_changes([("p4", "extra", D)], audit=[draft])
    assert (record.actor, record.operation) == ("system:seed", "seed")
