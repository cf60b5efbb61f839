"""Organisation operations on ``Admin``: departments, role permissions and account deletion —
authorized by the actor's own rights under the escalation rule, validated, audited."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from salesauthz import Authorizer, EscalationError, ForbiddenError, PolicyError, Record, Share
from salesauthz.checker.storage_commands import import_directory
from salesauthz.conditions import Condition
from salesauthz.errors import UnknownNameError
from salesauthz.scopes import Scope, ScopeKind
from tests._delegation import at, refused
from tests._delegation import authz as authz  # a fixture (`as`: imported to be used by name)
from tests._delegation import clock as clock  # a fixture
from tests.conftest import POLICIES

D = "acme"


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


def test_a_permission_reaches_a_timed_holder_only_until_its_role_ends(authz: Authorizer) -> None:
    alice = authz.admin("alice", domain=D)
    alice.grant("mgr_east", "customer", ["delete"], scope="department_tree", expires=at(3600))
    alice.grant("rep_e2", "customer", ["delete"], scope="own")
    alice.create_role("stand_in")
    alice.assign_role("rep_e2", "stand_in", expires=at(3600))
    manager = authz.admin("mgr_east", domain=D)
    # rep_e2 holds the role no longer than mgr_east holds customer:delete: within its right
    record = manager.add_role_permission("stand_in", "customer", ["delete"], scope="team")
    assert not record.escalated
    manager.remove_role_permission("stand_in", "customer", ["delete"])
    # held past the actor's right, the same permission would outlive it
    alice.assign_role("rep_e2", "stand_in", expires=at(7200))
    error = refused(authz, EscalationError, lambda: manager.add_role_permission(
        "stand_in", "customer", ["delete"], scope="team"))
    assert "customer:delete@team after 2030-03-17T18:46:40Z" in str(error)


def test_a_department_that_still_holds_something_is_not_deleted(authz: Authorizer) -> None:
    error = refused(authz, PolicyError, lambda: authz.admin("alice", domain=D).delete_department("east-2"))
    assert {issue.code for issue in error.issues} == {"SA120"}
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
    assert "customer:delete@custom[east-1] for analyst_1" in error.missing
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
    assert "order:approve@team" in error.missing
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
    assert "note:pin@all for alice" in error.missing
    record = authz.admin("alice", domain=D).extend_vocabulary("note", ["pin", "read"])
    assert (record.added, record.escalated) == ((("p2", D, "note", "pin"),), True)
    assert authz.check("alice", "pin", Record("note", owner="x"), domain=D)
    refused(authz, ForbiddenError,
            lambda: authz.admin("alice", domain=D).extend_vocabulary("note", ["pin"]))
    refused(authz, ValueError, lambda: authz.admin("alice", domain=D).extend_vocabulary("note", ["*"]))


# -- renaming a department --------------------------------------------------------------------

_CONDITIONED = Scope(ScopeKind.CUSTOM, frozenset({"east-2"}),
                     Condition.of(requires={"mfa": True})).encode()[0]
_NAMING: list[tuple[str, ...]] = [  # rules naming east-2 in every place a department is named
    ("p", "analyst_1", D, "customer", "delete", "custom:east-2", ""),
    ("p", "analyst_1", D, "customer", "update", _CONDITIONED, ""),
    ("p5", "sales_assistant", D, "customer", "phone", "visible", "custom:east-2"),
    ("g5", "rep_w1", "east-2", D),
    ("g2", "east-2a", "east-2", D),
    ("p3", "rep_e2a", D, "active"),
    ("g3", "rep_e2a", "east-2a", D),
]


def _decisions(authz: Authorizer, rename: Callable[[str | None], str | None] = lambda d: d,
               ) -> list[object]:
    """Every account's decisions (check with and without a second factor, field modes) on
    records filed in each department (and none), owned by each account and by no one, shared
    with each department — with department names passed through ``rename``."""
    snapshot = authz._snapshot(D)
    assert snapshot is not None
    accounts = sorted(snapshot.accounts)
    departments: list[str | None] = [None, *sorted(  # in the order of the old names
        snapshot.department_parent, key=lambda d: "east-2" if d == "east two" else d)]
    found: list[object] = []
    for owner in [*accounts[:8], "nobody"]:
        for department in departments:
            shares = [(), *[(Share("read_write", department=d),) for d in departments if d]]
            for share in shares[:3]:
                record = Record("customer", owner=owner, department=rename(department),
                                shares=tuple(Share(s.level, department=rename(s.department))
                                             for s in share))
                for account in accounts:
                    for action in ("read", "update", "delete", "export", "manage"):
                        for context in (None, {"mfa": True}):
                            found.append(authz.check(account, action, record, domain=D,
                                                     context=context))
                    found.append(authz.field_modes(account, "customer", {
                        "owner": owner, "department": rename(department), "phone": "1"},
                        domain=D))
    return found


def test_renaming_a_department_rewrites_every_rule_naming_it_and_changes_no_decision(
        authz: Authorizer) -> None:
    authz.apply_changes(_NAMING, actor="system:test")
    before = _decisions(authz)
    named = [r for r in authz.rules(D) if any(
        v in ("east-2", "custom:east-2") or '"custom:east-2"' in v for v in r)]
    trail = len(authz.audit.records())
    record = authz.admin("mgr_east", domain=D).rename_department("east-2", "east two")
    assert (record.operation, record.target, record.detail, record.escalated) == (
        "rename_department", "east-2", "east-2 -> east two", False)
    assert sorted(record.removed) == sorted(named)
    assert len(record.added) == len(record.removed)
    assert len(authz.audit.records()) == trail + 1  # one audited change
    assert not [r for r in authz.rules(D) if any(
        v in ("east-2", "custom:east-2") or '"custom:east-2"' in v for v in r)]
    rules = set(authz.rules(D))
    assert ("g2", "east two", "east", D) in rules
    assert ("g2", "east-2a", "east two", D) in rules
    assert ("g5", "rep_w1", "east two", D) in rules
    assert ("g3", "rep_e2", "east two", D) in rules
    assert ("p", "analyst_1", D, "customer", "delete", "custom:east two", "") in rules
    assert ("p", "analyst_1", D, "customer", "update", _CONDITIONED.replace("east-2", "east two"),
            "") in rules
    assert ("p5", "sales_assistant", D, "customer", "phone", "visible", "custom:east two") in rules
    assert _decisions(authz, lambda d: "east two" if d == "east-2" else d) == before
    # A fresh load of the rules decides the same (nothing in memory only).
    assert _decisions(Authorizer.from_rules(authz.rules(), clock=lambda: 1_900_000_000.0),
                      lambda d: "east two" if d == "east-2" else d) == before
    assert authz.audit.verify()


def test_renaming_needs_the_whole_subtree(authz: Authorizer) -> None:
    authz.apply_changes([("g2", "east-2a", "east-2", D)], actor="system:test")
    # lead_e1 manages its team, not department east; mgr_east manages east's tree, not west.
    refused(authz, EscalationError,
            lambda: authz.admin("lead_e1", domain=D).rename_department("east-1", "e1"))
    refused(authz, EscalationError,
            lambda: authz.admin("mgr_east", domain=D).rename_department("west-1", "w1"))
    refused(authz, EscalationError,
            lambda: authz.admin("mgr_east", domain=D).rename_department("sales", "s"))
    # account:manage at team reaches east-2 itself, not east-2a below it.
    alice = authz.admin("alice", domain=D)
    alice.grant("rep_e2", "account", ["manage"], scope="team")
    error = refused(authz, EscalationError,
                    lambda: authz.admin("rep_e2", domain=D).rename_department("east-2", "e2"))
    assert "east-2a" in str(error)
    alice.grant("rep_e2", "account", ["manage"], scope="custom", departments=["east-2a"])
    assert authz.admin("rep_e2", domain=D).rename_department("east-2", "e2").detail == "east-2 -> e2"
    # role:escalate over the subtree stands in for the management right, and says so.
    alice.grant("rep_e1b", "role", ["escalate"], scope="custom", departments=["e2"])
    assert authz.admin("rep_e1b", domain=D).rename_department("e2", "east-2").escalated


@pytest.mark.parametrize("name", [
    "", " ", "east-1", "east", "ops", "*", " padded", "padded ", "a,b", "a]", "[a", "x\x00y",
    "line\nfeed", "tab\there", "\ud800", "x" * 256, 7, None,
])
def test_a_rename_to_a_bad_or_taken_name_changes_nothing(tmp_path: Path, name: object) -> None:
    """Hostile and taken names are refused with an error naming them; the store's file is
    byte-identical afterwards, and so are the rules and the audit trail."""
    database = tmp_path / "rules.db"
    import_directory(POLICIES, f"sqlite:///{database}")
    with Authorizer.from_url(f"sqlite:///{database}") as authz:
        content = database.read_bytes()
        error = refused(authz, (ValueError, ForbiddenError), lambda: authz.admin(
            "alice", domain=D).rename_department("east-2", name))  # type: ignore[arg-type]
        assert repr(name) in str(error)  # the error names the offending value
        assert isinstance(error, ForbiddenError) or str(error).startswith(
            "cannot rename department 'east-2' to ")  # refused before any store sees it
        assert database.read_bytes() == content


def test_unknown_departments_are_not_renamed(authz: Authorizer) -> None:
    refused(authz, UnknownNameError,
            lambda: authz.admin("alice", domain=D).rename_department("nowhere", "n"))


def test_hostile_names_are_refused_on_creation_too(authz: Authorizer) -> None:
    for name in ("", "a,b", "x\x00y", "\ud800", "*", " x"):
        refused(authz, ValueError,
                lambda name=name: authz.admin("alice", domain=D).create_department(  # type: ignore[misc]
                    name, parent="east"))


def test_a_rename_through_a_store_is_one_change_a_reload_sees(tmp_path: Path) -> None:
    """The store's one-department-per-account index meets the removal and the addition of each
    g3 rule in one transaction; a fresh process reads the renamed organisation."""
    url = f"sqlite:///{tmp_path / 'rules.db'}"
    import_directory(POLICIES, url)
    with Authorizer.from_url(url) as authz:
        authz.apply_changes(_NAMING, actor="system:test")
        record = authz.admin("mgr_east", domain=D).rename_department("east-2", "east two")
        assert authz.audit.records()[-1] == record
    with Authorizer.from_url(url) as fresh:
        rules = set(fresh.rules(D))
        assert set(record.added) <= rules
        assert not set(record.removed) & rules
        assert fresh.check("analyst_1", "delete", customer("east-2a"), domain=D)
        assert not fresh.check("analyst_1", "delete", customer("east-2"), domain=D)  # not re-filed
        assert fresh.audit.verify()
