"""The decision rules of salesauthz._engine.semantics, one by one, on a small hand-built domain.

    sales ─┬─ east ── east-1
           └─ west
"""

from __future__ import annotations

import pytest

from salesauthz import _engine as engine
from salesauthz._rules import Rule
from salesauthz.scopes import EVERYTHING, Coverage, Scope, ScopeKind, parse_scope

D = "acme"
NOW = 1_900_000_000.0


def domain(*extra: Rule) -> engine.Snapshot:
    rules: list[Rule] = [
        ("p2", D, "customer", "read"), ("p2", D, "customer", "update"), ("p2", D, "order", "read"),
        ("g2", "sales", "", D), ("g2", "east", "sales", D), ("g2", "east-1", "east", D),
        ("g2", "west", "sales", D),
        ("p4", "rep", D), ("p4", "lead", D), ("p4", "boss", D),
        ("g", "lead", "rep", D), ("g", "boss", "lead", D),
        ("p", "rep", D, "customer", "read", "own", ""),
        ("p", "lead", D, "customer", "read", "team", ""),
        ("p", "boss", D, "customer", "*", "department_tree", ""),
        ("p3", "ann", D, "active"), ("g3", "ann", "east", D), ("g", "ann", "lead", D),
        ("p3", "bob", D, "active"), ("g3", "bob", "east-1", D),
        ("p3", "cid", D, "active"), ("g3", "cid", "east", D), ("g", "cid", "boss", D),
        *extra,
    ]
    return engine.compile_domains(rules)[D]


def covers(coverage: Coverage | None, owner: str | None, department: str | None,
           snapshot: engine.Snapshot) -> bool:
    return coverage is not None and coverage.covers(owner, department, snapshot.homes)


def test_team_covers_its_own_department_only_not_below_it() -> None:
    snapshot = domain()
    team = engine.scope_coverage(snapshot, "ann", Scope(ScopeKind.TEAM))
    assert team.covers("x", "east")
    assert not team.covers("x", "east-1")  # below ann's department: team stops at its own
    assert team.covers("ann", "west")  # its own records wherever they are filed


def test_department_tree_reaches_below() -> None:
    snapshot = domain()
    tree = engine.scope_coverage(snapshot, "ann", Scope(ScopeKind.DEPARTMENT_TREE))
    assert tree.departments == {"east", "east-1"}


def test_custom_scope_reaches_the_listed_subtrees() -> None:
    snapshot = domain()
    custom = engine.scope_coverage(snapshot, "bob", Scope.of("custom", ["east"]))
    assert custom.departments == {"east", "east-1"}
    assert custom.owners == {"bob"}


def test_scopes_of_an_account_without_a_department_reach_its_own_records() -> None:
    snapshot = domain(("p3", "dan", D, "active"))
    for kind in (ScopeKind.TEAM, ScopeKind.DEPARTMENT_TREE, ScopeKind.OWN):
        assert engine.scope_coverage(snapshot, "dan", Scope(kind)) == Coverage(owners=frozenset({"dan"}))
    assert engine.scope_coverage(snapshot, "dan", Scope(ScopeKind.ALL)) is EVERYTHING


def test_a_planned_move_is_judged_from_the_new_department() -> None:
    snapshot = domain()
    team = engine.scope_coverage(snapshot, "ann", Scope(ScopeKind.TEAM), "west", moved=True)
    assert team.departments == {"west"}


def test_a_record_without_a_department_is_in_its_owners_current_department() -> None:
    snapshot = domain()
    held = engine.effective(snapshot, "ann", NOW)[0][("customer", "read")]
    assert covers(held, "bob", None, snapshot) is False  # bob is in east-1: below ann's team
    assert covers(held, "cid", None, snapshot) is True  # cid is in east
    assert covers(held, "ghost", None, snapshot) is False


def test_roles_are_closed_over_inheritance_with_their_shortest_path() -> None:
    snapshot = domain()
    via = {h.permission.rule[1]: h.via for h in engine.holdings(snapshot, "cid")}
    assert via == {"boss": ("boss",), "lead": ("boss", "lead"), "rep": ("boss", "lead", "rep")}


def test_wildcards_expand_over_the_vocabulary_of_the_type() -> None:
    snapshot = domain()
    assert set(engine.expand(snapshot, "customer", "*")) == {("customer", "read"), ("customer", "update")}
    assert set(engine.expand(snapshot, "*", "read")) == {("customer", "read"), ("order", "read")}
    assert list(engine.expand(snapshot, "widget", "*")) == []


def test_grants_add_up() -> None:
    snapshot = domain()
    held = engine.effective(snapshot, "cid", NOW)[0]
    assert held[("customer", "read")].departments == {"east", "east-1"}  # tree ∪ team ∪ own
    assert ("customer", "update") in held
    assert ("order", "read") not in held


@pytest.mark.parametrize("status", ["frozen", "deactivated"])
def test_only_active_accounts_hold_anything(status: str) -> None:
    snapshot = domain(("p3", "eve", D, status), ("g", "eve", "boss", D))
    assert engine.effective(snapshot, "eve", NOW) == ({}, None)
    # ... unless statuses are ignored, as the checker's analyses do.
    assert engine.effective(snapshot, "eve", NOW, statuses=False)[0]
    assert engine.effective(snapshot, "nobody", NOW) == ({}, None)


def test_a_grant_stops_allowing_at_the_instant_it_expires() -> None:
    assert engine.expired(NOW, NOW)
    assert not engine.expired(NOW + 1, NOW)
    assert not engine.expired(None, NOW)
    snapshot = domain(("p", "bob", D, "order", "read", "all", "2030-03-17T17:46:40Z"))
    expires = NOW  # 2030-03-17T17:46:40Z
    assert ("order", "read") in engine.effective(snapshot, "bob", expires - 1)[0]
    assert ("order", "read") not in engine.effective(snapshot, "bob", expires)[0]


def test_a_map_is_valid_until_the_earliest_live_expiry() -> None:
    late, early, past = "2030-03-17T18:00:00Z", "2030-03-17T17:50:00Z", "2020-01-01T00:00:00Z"
    snapshot = domain(("p", "bob", D, "order", "read", "all", late),
                      ("p", "bob", D, "customer", "update", "own", early),
                      ("p", "bob", D, "customer", "read", "all", past))
    held, until = engine.own_map(snapshot, "bob", NOW)
    assert until == NOW + 200.0  # 17:50:00 — the earliest
    assert ("customer", "read") not in held  # the expired grant gives nothing (bob has no role)
    assert held[("customer", "update")] == Coverage(owners=frozenset({"bob"}))
    # The same with the earliest grant sorting last (grants are visited in rule order).
    swapped = domain(("p", "bob", D, "customer", "update", "own", late),
                     ("p", "bob", D, "order", "read", "all", early))
    assert engine.own_map(swapped, "bob", NOW)[1] == NOW + 200.0
    assert engine.earliest(None, 5.0) == 5.0
    assert engine.earliest(3.0, 5.0) == 3.0


def test_a_sub_account_is_capped_by_its_parent_and_expires_with_it() -> None:
    parents_grant = "2030-03-17T17:50:00Z"
    snapshot = domain(("p3", "sub", D, "active"), ("g3", "sub", "east", D), ("g4", "sub", "bob", D),
                      ("p", "sub", D, "order", "read", "all", ""),
                      ("p", "bob", D, "order", "read", "team", parents_grant))
    held, until = engine.effective(snapshot, "sub", NOW)
    assert held[("order", "read")].departments == {"east-1"}  # all, within bob's team
    assert until == NOW + 200.0  # the parent's grant bounds the sub-account's map
    assert engine.effective(snapshot, "sub", NOW + 200.0)[0] == {}


def test_a_parent_chain_that_loops_denies_everything() -> None:
    snapshot = domain(("p3", "x", D, "active"), ("p3", "y", D, "active"),
                      ("g4", "x", "y", D), ("g4", "y", "x", D), ("p", "x", D, "order", "read", "all", ""))
    assert engine.chain(snapshot, "x") is None
    assert engine.effective(snapshot, "x", NOW) == ({}, None)
    assert engine.chain(snapshot, "ann") == ("ann",)


def test_the_ceiling_may_come_from_a_cache() -> None:
    snapshot = domain(("p3", "sub", D, "active"), ("g4", "sub", "cid", D),
                      ("p", "sub", D, "customer", "read", "all", ""))
    asked: list[str] = []

    def ceiling(parent: str) -> tuple[engine.EffectiveMap, engine.Until]:
        asked.append(parent)
        return {("customer", "read"): Coverage(departments=frozenset({"west"}))}, None

    held, _ = engine.effective(snapshot, "sub", NOW, ceiling=ceiling)
    assert asked == ["cid"]
    assert held[("customer", "read")].departments == {"west"}


def test_sources_tell_where_each_right_comes_from() -> None:
    snapshot = domain(("p", "bob", D, "customer", "read", "all", "2020-01-01T00:00:00Z"))
    found = engine.sources(snapshot, "bob", ("customer", "read"), NOW)
    assert [(s.holding.role, s.expired) for s in found] == [(None, True)]
    found = engine.sources(snapshot, "cid", ("customer", "read"), NOW)
    assert [s.holding.via for s in found] == [("boss",), ("boss", "lead"), ("boss", "lead", "rep")]
    assert [str(s.holding.permission.scope) for s in found] == ["department_tree", "team", "own"]


def test_the_static_scope_order() -> None:
    snapshot = domain()
    own, team, tree, all_ = (parse_scope(s) for s in ("own", "team", "department_tree", "all"))
    assert engine.scope_within(own, team)
    assert engine.scope_within(team, tree)
    assert engine.scope_within(tree, all_)
    assert not engine.scope_within(tree, team)
    assert engine.scope_within(Scope.of("custom", ["east-1"]), Scope.of("custom", ["east"]), snapshot)
    assert not engine.scope_within(Scope.of("custom", ["east"]), Scope.of("custom", ["east-1"]), snapshot)
    assert [engine.scope_width(s) for s in (own, team, tree, all_)] == sorted(
        engine.scope_width(s) for s in (own, team, tree, all_))


# -- the record model: shares, auxiliary departments, reporting lines, timed roles ------------

SHARING: tuple[Rule, ...] = (("p7", D, "customer", "ro", "read"), ("p7", D, "customer", "rw", "read"),
                             ("p7", D, "customer", "rw", "update"))


def test_shared_reaches_only_records_shared_with_the_account_or_a_department_above_its_own() -> None:
    from salesauthz import Share

    snapshot = domain(*SHARING, ("p", "bob", D, "customer", "*", "shared", ""))
    held = engine.effective(snapshot, "bob", NOW)[0]
    read, update = held[("customer", "read")], held[("customer", "update")]
    assert not read.covers("bob", None, snapshot.homes)  # its own records are not shared with it
    assert read.covers("ann", "west", snapshot.homes, [Share("ro", account="bob")])
    assert not update.covers("ann", "west", snapshot.homes, [Share("ro", account="bob")])
    assert update.covers("ann", "west", snapshot.homes, [Share("rw", department="east")])  # above
    assert not update.covers("ann", "west", snapshot.homes, [Share("rw", department="west")])
    assert not read.covers("ann", "west", snapshot.homes, [Share("nope", account="bob")])


def test_auxiliary_departments_widen_team_and_tree_a_homeless_record_stays_in_the_main_one() -> None:
    snapshot = domain(("g5", "ann", "west", D))
    team = engine.effective(snapshot, "ann", NOW)[0][("customer", "read")]  # lead: team
    assert covers(team, "x", "west", snapshot)
    assert covers(team, "x", "east", snapshot)
    assert not covers(team, "x", "east-1", snapshot)
    assert snapshot.homes["ann"] == "east"  # records without a department follow the main one


def test_subordinates_reach_direct_reports_and_the_tree_everyone_below() -> None:
    snapshot = domain(("p3", "dan", D, "active"), ("g6", "bob", "ann", D), ("g6", "dan", "bob", D),
                      ("p", "ann", D, "order", "read", "subordinates", ""),
                      ("p", "ann", D, "customer", "update", "subordinate_tree", ""))
    held = engine.effective(snapshot, "ann", NOW)[0]
    assert held[("order", "read")] == Coverage(owners=frozenset({"ann", "bob"}))
    assert held[("customer", "update")] == Coverage(owners=frozenset({"ann", "bob", "dan"}))


def test_a_timed_role_assignment_expires_and_bounds_the_map() -> None:
    snapshot = domain(("p8", "bob", "lead", D, "2030-03-17T17:50:00Z"))
    held, until = engine.effective(snapshot, "bob", NOW)
    assert covers(held[("customer", "read")], "x", "east-1", snapshot)  # lead: team
    assert until == NOW + 200.0
    assert ("customer", "read") not in engine.effective(snapshot, "bob", NOW + 200.0)[0]
    # Assigned permanently too: the permanent assignment wins.
    both = domain(("p8", "bob", "lead", D, "2030-03-17T17:50:00Z"), ("g", "bob", "lead", D))
    assert engine.effective(both, "bob", NOW + 200.0)[0][("customer", "read")] is not None
