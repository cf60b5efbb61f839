"""Administration of the record model: auxiliary departments, reporting lines, timed role
assignments and the offboarding of a leader with reports (allow, refuse, audit, conflicts)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from salesauthz import Authorizer, EscalationError, ForbiddenError, Record, UnknownNameError
from salesauthz._engine import Snapshot
from salesauthz._rules import Rule
from salesauthz.adapters.memory import MemoryAdapter
from salesauthz.models.loader import load_directory

NOW = 1_900_000_000.0
EXTRA: list[Rule] = [
    # lead_e1 sees its direct reports' customers; ops_1 may delete along its whole reporting line.
    ("p", "lead_e1", "acme", "customer", "read", "subordinates", ""),
    ("p", "ops_1", "acme", "customer", "delete", "subordinate_tree", ""),
    ("g6", "rep_e1a", "lead_e1", "acme"),
    ("g6", "lead_e1", "mgr_east", "acme"),
    # So that mgr_east holds everything senior_rep gives, over east.
    ("p", "mgr_east", "acme", "order", "create", "department_tree", ""),
    ("p", "mgr_east", "acme", "customer", "create", "department_tree", ""),
]


def sample_rules() -> list[Rule]:
    """The sample without its reporting lines and its roles' ``shared`` permissions (handing
    those out needs ``@all``, which would hide what these tests are about), plus ``EXTRA``."""
    return [*(r for r in load_directory("policies").rules
              if r[0] != "g6" and not (r[0] == "p" and r[5] == "shared")), *EXTRA]


@pytest.fixture
def authz() -> Authorizer:
    return Authorizer.from_rules(sample_rules(), clock=lambda: NOW)


def acme(authz: Authorizer) -> Snapshot:
    index = authz._snapshot("acme")
    assert index is not None
    return index


def customer(owner: str, department: str | None = None) -> Record:
    return Record("customer", owner=owner, department=department)


def state(authz: Authorizer) -> tuple[list[Rule], list[object]]:
    return authz.rules(), list(authz.audit.records())


def at(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, tz=UTC)


# -- reporting lines ---------------------------------------------------------------------------


def test_setting_a_superior_gives_it_subordinates_reach_and_is_audited(authz: Authorizer) -> None:
    assert not authz.check("lead_e1", "read", customer("rep_e1b", "west-1"), domain="acme")
    # mgr_east may not: lead_e1 would read rep_e1b's customers wherever they are filed, and
    # mgr_east does not read those filed outside east.
    before = state(authz)
    with pytest.raises(EscalationError) as caught:
        authz.admin("mgr_east", domain="acme").set_reports_to("rep_e1b", "lead_e1")
    assert caught.value.missing == ("customer:read@subordinates for lead_e1",)
    assert state(authz) == before
    record = authz.admin("alice", domain="acme").set_reports_to("rep_e1b", "lead_e1")
    assert (record.operation, record.target, record.escalated) == ("set_reports_to", "rep_e1b", False)
    assert record.added == (("g6", "rep_e1b", "lead_e1", "acme"),)
    assert record.removed == ()
    assert record.detail == "no one -> lead_e1"
    assert acme(authz).account("rep_e1b").reports_to == "lead_e1"
    # By reporting line: wherever rep_e1b files its customers.
    assert authz.check("lead_e1", "read", customer("rep_e1b", "west-1"), domain="acme")
    assert authz.audit.verify()


def test_changing_and_clearing_a_superior_replaces_the_single_fact(authz: Authorizer) -> None:
    admin = authz.admin("mgr_east", domain="acme")
    record = admin.set_reports_to("rep_e1a", "mgr_east")
    assert record.removed == (("g6", "rep_e1a", "lead_e1", "acme"),)
    assert record.detail == "lead_e1 -> mgr_east"
    assert not authz.check("lead_e1", "read", customer("rep_e1a", "west-1"), domain="acme")
    cleared = admin.set_reports_to("rep_e1a", None)
    assert (cleared.added, cleared.removed) == ((), (("g6", "rep_e1a", "mgr_east", "acme"),))
    assert [r for r in authz.rules("acme") if r[0] == "g6" and r[1] == "rep_e1a"] == []
    with pytest.raises(ForbiddenError, match="already reports to no one"):
        admin.set_reports_to("rep_e1a", None)


def test_a_superior_must_not_hand_on_what_the_actor_does_not_hold(authz: Authorizer) -> None:
    # lead_e1 reports to ops_1, which may delete along its reporting line: making rep_e1b report
    # to lead_e1 would let ops_1 delete rep_e1b's customers — mgr_east cannot delete customers.
    authz.admin("alice", domain="acme").set_reports_to("lead_e1", "ops_1")
    before = state(authz)
    with pytest.raises(EscalationError) as caught:
        authz.admin("mgr_east", domain="acme").set_reports_to("rep_e1b", "lead_e1")
    assert "customer:delete@subordinate_tree for ops_1" in caught.value.missing
    assert "beyond what mgr_east itself holds" in str(caught.value)
    assert state(authz) == before
    # alice holds everything: allowed, and not escalated.
    assert not authz.admin("alice", domain="acme").set_reports_to("rep_e1b", "lead_e1").escalated
    assert authz.check("ops_1", "delete", customer("rep_e1b"), domain="acme")


def test_the_actor_must_manage_the_account_and_the_superior(authz: Authorizer) -> None:
    authz.admin("alice", domain="acme").set_reports_to("rep_w1", "lead_e1")
    admin = authz.admin("mgr_east", domain="acme")
    before = state(authz)
    with pytest.raises(EscalationError, match="may not manage account rep_w1") as caught:
        admin.set_reports_to("rep_w1", "mgr_east")
    assert caught.value.missing == ("account:manage",)
    with pytest.raises(EscalationError, match="may not manage account ops_1"):
        admin.set_reports_to("rep_e1b", "ops_1")
    with pytest.raises(EscalationError, match="may not manage account rep_w1"):
        admin.set_reports_to("rep_w1", None)  # clearing needs account:manage too
    assert state(authz) == before


def test_no_one_widens_its_own_reach_through_a_reporting_line(authz: Authorizer) -> None:
    # lead_e1 manages nobody; give it account:manage over its team: it may now point rep_e1b at
    # itself only if it already reads rep_e1b's customers wherever they are filed (team: only
    # those in east-1, so no; all: yes).
    authz.admin("alice", domain="acme").grant("lead_e1", "account", ["manage"], scope="team")
    lead = authz.admin("lead_e1", domain="acme")
    before = state(authz)
    with pytest.raises(EscalationError) as caught:
        lead.set_reports_to("rep_e1b", "lead_e1")
    assert caught.value.missing == ("customer:read@subordinates for lead_e1",)
    # rep_e2 sits in east-2: managing it there is not enough to widen lead_e1's reach to it.
    authz.admin("alice", domain="acme").grant("lead_e1", "account", ["manage"],
                                              scope="custom", departments=["east-2"])
    before = state(authz)
    with pytest.raises(EscalationError) as caught:
        lead.set_reports_to("rep_e2", "lead_e1")
    assert caught.value.missing == ("customer:read@subordinates for lead_e1",)
    assert state(authz) == before
    authz.admin("alice", domain="acme").grant("lead_e1", "customer", ["read"], scope="all")
    assert not lead.set_reports_to("rep_e1b", "lead_e1").escalated


def test_reporting_lines_do_not_loop_and_name_known_accounts(authz: Authorizer) -> None:
    admin = authz.admin("alice", domain="acme")
    before = state(authz)
    with pytest.raises(ForbiddenError, match=r"rep_e1a -> lead_e1 -> mgr_east\), and a reporting"):
        admin.set_reports_to("mgr_east", "rep_e1a")
    with pytest.raises(ForbiddenError, match="cannot report to itself"):
        admin.set_reports_to("lead_e1", "lead_e1")
    with pytest.raises(UnknownNameError):
        admin.set_reports_to("lead_e1", "nobody")
    with pytest.raises(UnknownNameError):
        admin.set_reports_to("nobody", "lead_e1")
    with pytest.raises(ForbiddenError, match="already reports to mgr_east"):
        admin.set_reports_to("lead_e1", "mgr_east")
    assert state(authz) == before


def test_a_refusal_can_be_audited(authz: Authorizer) -> None:
    with pytest.raises(EscalationError):
        authz.admin("rep_e1a", domain="acme", audit_denied=True).set_reports_to("rep_e1b", "rep_e1a")
    (record,) = authz.audit.records()
    assert (record.operation, record.outcome, record.added) == ("set_reports_to", "denied", ())


def test_a_stale_process_decides_again_on_the_store_version() -> None:
    store = MemoryAdapter(sample_rules())
    first = Authorizer(store, clock=lambda: NOW)
    second = Authorizer(store, clock=lambda: NOW)  # loaded now: stale after first's change
    first.admin("alice", domain="acme").set_reports_to("rep_e1b", "lead_e1")
    record = second.admin("alice", domain="acme").set_reports_to("rep_e1b", "mgr_east")
    # Decided again on the store's rules: the superior first set is the one replaced.
    assert record.removed == (("g6", "rep_e1b", "lead_e1", "acme"),)
    assert record.detail == "lead_e1 -> mgr_east"
    lines = [r for r in store.load(["acme"]) if r[0] == "g6" and r[1] == "rep_e1b"]
    assert lines == [("g6", "rep_e1b", "mgr_east", "acme")]
    assert [r.operation for r in store.load_audit("acme")] == ["set_reports_to", "set_reports_to"]


# -- auxiliary departments ---------------------------------------------------------------------


def test_an_auxiliary_department_widens_team_and_is_audited(authz: Authorizer) -> None:
    record_in_e2 = customer("someone", "east-2")
    assert not authz.check("lead_e1", "read", record_in_e2, domain="acme")
    record = authz.admin("mgr_east", domain="acme").add_auxiliary_department("lead_e1", "east-2")
    assert (record.operation, record.added, record.escalated) == (
        "add_auxiliary_department", (("g5", "lead_e1", "east-2", "acme"),), False)
    assert authz.check("lead_e1", "read", record_in_e2, domain="acme")
    removed = authz.admin("mgr_east", domain="acme").remove_auxiliary_department("lead_e1", "east-2")
    assert removed.removed == (("g5", "lead_e1", "east-2", "acme"),)
    assert not authz.check("lead_e1", "read", record_in_e2, domain="acme")
    assert [r.operation for r in authz.audit.records()] == ["add_auxiliary_department",
                                                            "remove_auxiliary_department"]
    assert authz.audit.verify()


def test_an_auxiliary_department_is_escalation_checked_like_a_move(authz: Authorizer) -> None:
    alice = authz.admin("alice", domain="acme")
    alice.grant("mgr_east", "account", ["manage"], scope="custom", departments=["service"])
    before = state(authz)
    # mgr_east may now manage lead_e1 in service too, but lead_e1's team scope would reach the
    # service department's customers, which mgr_east does not reach.
    with pytest.raises(EscalationError) as caught:
        authz.admin("mgr_east", domain="acme").add_auxiliary_department("lead_e1", "service")
    assert set(caught.value.missing) == {"customer:read@team", "customer:update@team",
                                         "order:create@team", "order:read@team"}
    # Not managing the account in the new department is refused first.
    with pytest.raises(EscalationError, match="in department west-1"):
        authz.admin("mgr_east", domain="acme").add_auxiliary_department("lead_e1", "west-1")
    # Nor the account at all.
    with pytest.raises(EscalationError, match="may not manage account rep_w1"):
        authz.admin("mgr_east", domain="acme").add_auxiliary_department("rep_w1", "east-2")
    assert state(authz) == before


def test_only_the_new_reach_is_judged(authz: Authorizer) -> None:
    # A department already inside what the account reaches gives nothing new for its tree scope:
    # mgr_east (department_tree of east) gets east-1 as an auxiliary department from alice —
    # and can itself add east-2 to lead_e1 though lead_e1 reaches east-1 from before.
    authz.admin("alice", domain="acme").add_auxiliary_department("mgr_east", "east-1")
    assert not authz.audit.records()[-1].escalated
    authz.admin("mgr_east", domain="acme").add_auxiliary_department("lead_e1", "east-2")


def test_auxiliary_department_errors(authz: Authorizer) -> None:
    admin = authz.admin("mgr_east", domain="acme")
    before = state(authz)
    with pytest.raises(ForbiddenError, match="already in department east-1"):
        admin.add_auxiliary_department("lead_e1", "east-1")
    with pytest.raises(UnknownNameError):
        admin.add_auxiliary_department("lead_e1", "mars")
    with pytest.raises(UnknownNameError):
        admin.remove_auxiliary_department("lead_e1", "east-2")
    with pytest.raises(EscalationError, match="for itself"):
        admin.add_auxiliary_department("mgr_east", "east-2")
    assert state(authz) == before


# -- timed role assignments --------------------------------------------------------------------


def test_a_timed_role_ends_and_replaces_an_earlier_timed_one(authz: Authorizer) -> None:
    now = [NOW]
    authz = Authorizer.from_rules(sample_rules(), clock=lambda: now[0])
    admin = authz.admin("mgr_east", domain="acme")
    team_record = customer("rep_e1b", "east-1")
    assert not authz.check("rep_e1a", "read", team_record, domain="acme")
    first = admin.assign_role("rep_e1a", "senior_rep", expires=at(NOW + 60))
    assert first.added == (("p8", "rep_e1a", "senior_rep", "acme", "2030-03-17T17:47:40Z"),)
    assert first.detail == "senior_rep until 2030-03-17T17:47:40Z"
    assert authz.check("rep_e1a", "read", team_record, domain="acme")
    second = admin.assign_role("rep_e1a", "senior_rep", expires=at(NOW + 120))
    assert second.removed == first.added
    now[0] += 90
    assert authz.check("rep_e1a", "read", team_record, domain="acme")
    now[0] += 60
    assert not authz.check("rep_e1a", "read", team_record, domain="acme")
    assert authz.audit.verify()


def test_permanent_and_timed_assignments_replace_each_other(authz: Authorizer) -> None:
    admin = authz.admin("mgr_east", domain="acme")
    timed = admin.assign_role("rep_e1a", "senior_rep", expires=at(NOW + 60))
    permanent = admin.assign_role("rep_e1a", "senior_rep")
    assert permanent.added == (("g", "rep_e1a", "senior_rep", "acme"),)
    assert permanent.removed == timed.added
    assert dict(acme(authz).account("rep_e1a").timed_roles) == {}
    again = admin.assign_role("rep_e1a", "senior_rep", expires=at(NOW + 60))
    assert again.removed == (("g", "rep_e1a", "senior_rep", "acme"),)
    assert "senior_rep" not in acme(authz).account("rep_e1a").roles
    # unassign takes the timed assignment away too
    gone = admin.unassign_role("rep_e1a", "senior_rep")
    assert gone.removed == again.added
    assert acme(authz).roles_of("rep_e1a") == acme(authz).role_closure("junior_rep")
    with pytest.raises(UnknownNameError):
        admin.unassign_role("rep_e1a", "senior_rep")


def test_a_timed_role_is_escalation_checked(authz: Authorizer) -> None:
    before = state(authz)
    with pytest.raises(EscalationError, match=r"customer_service|customer:read@all"):
        authz.admin("mgr_east", domain="acme").assign_role("rep_e1a", "customer_service",
                                                           expires=at(NOW + 60))
    with pytest.raises(EscalationError, match="account:manage"):
        authz.admin("mgr_east", domain="acme").assign_role("rep_w1", "junior_rep",
                                                           expires=at(NOW + 60))
    with pytest.raises(ValueError, match="not in the future"):
        authz.admin("mgr_east", domain="acme").assign_role("rep_e1a", "senior_rep",
                                                           expires=at(NOW - 1))
    assert state(authz) == before


# -- offboarding a leader with reports ---------------------------------------------------------


def test_offboard_repoints_direct_reports_to_the_successor(authz: Authorizer) -> None:
    alice = authz.admin("alice", domain="acme")
    alice.set_reports_to("rep_e1b", "lead_e1")
    plan = alice.offboard("lead_e1", transfer_to="rep_e1a")
    # rep_e1a, the successor, reported to lead_e1 itself: it takes lead_e1's place under mgr_east.
    assert plan.reports == (("rep_e1a", "mgr_east", "repoint"), ("rep_e1b", "rep_e1a", "repoint"))
    applied = plan.apply()
    assert [(r.operation, r.target) for r in applied] == [
        ("offboard_reports_to", "rep_e1a"), ("offboard_reports_to", "rep_e1b")]
    assert applied[1].added == (("g6", "rep_e1b", "rep_e1a", "acme"),)
    assert applied[1].removed == (("g6", "rep_e1b", "lead_e1", "acme"),)
    index = acme(authz)
    assert (index.account("rep_e1a").reports_to, index.account("rep_e1b").reports_to) == (
        "mgr_east", "rep_e1a")
    assert authz.audit.verify()


def test_offboard_keeps_a_line_the_actor_may_not_repoint(authz: Authorizer) -> None:
    # ops_1 deletes along its reporting line: pointing lead_e1's reports at ops_1 would hand
    # that on, which mgr_east does not hold; nor does it manage ops_1.
    authz.admin("alice", domain="acme").grant("mgr_east", "account", ["manage"],
                                              scope="custom", departments=["ops"])
    plan = authz.admin("mgr_east", domain="acme").offboard("lead_e1", transfer_to="ops_1")
    assert plan.reports == (("rep_e1a", "ops_1", "keep"),)
    before = authz.rules("acme")
    assert [r.operation for r in plan.apply()] == []
    assert authz.rules("acme") == before
    assert acme(authz).account("rep_e1a").reports_to == "lead_e1"


def test_offboard_decides_reports_again_when_applied(authz: Authorizer) -> None:
    alice = authz.admin("alice", domain="acme")
    plan = alice.offboard("lead_e1", transfer_to="rep_e1b")
    assert plan.reports == (("rep_e1a", "rep_e1b", "repoint"),)
    alice.set_reports_to("rep_e1a", "mgr_east")  # changed since the plan was made
    assert plan.apply() == []
    assert acme(authz).account("rep_e1a").reports_to == "mgr_east"


def test_offboarding_to_ones_own_sub_account_moves_it_up_not_under_itself() -> None:
    from salesauthz import Authorizer

    rules = [("p2", "acme", "customer", "read"), ("p2", "acme", "account", "manage"),
             ("g2", "sales", "", "acme"),
             ("p3", "boss", "acme", "active"), ("g3", "boss", "sales", "acme"),
             ("p", "boss", "acme", "*", "*", "all", ""),
             ("p3", "lead", "acme", "active"), ("g3", "lead", "sales", "acme"),
             ("p", "lead", "acme", "customer", "read", "team", ""),
             ("p3", "asst", "acme", "active"), ("g3", "asst", "sales", "acme"),
             ("g4", "asst", "lead", "acme"), ("p", "asst", "acme", "customer", "read", "own", "")]
    authz = Authorizer.from_rules(rules)
    plan = authz.admin("boss", domain="acme").offboard("lead", transfer_to="asst")
    assert plan.sub_accounts == (("asst", "reparent"),)
    plan.apply()
    view = authz.account("asst", domain="acme")
    assert view is not None
    assert view.parent is None  # the leaver had no parent: the successor is top-level now
    Authorizer.from_rules(authz.rules())  # the stored rules stay valid (no account its own parent)
