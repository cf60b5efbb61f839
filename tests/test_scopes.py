"""The Coverage algebra: union and intersection behave as the set operations they model."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from salesauthz.scopes import Coverage, Scope, ScopeKind, parse_scope

OWNERS = ["a", "b", "c", None]
DEPTS = ["x", "y", "z", None]
UNIVERSE = [(o, d) for o in OWNERS for d in DEPTS]


@st.composite
def coverages(draw: st.DrawFn) -> Coverage:
    if draw(st.integers(0, 9)) == 0:
        return Coverage(everything=True)
    owners = frozenset(draw(st.lists(st.sampled_from("abc"), max_size=2)))
    depts = frozenset(draw(st.lists(st.sampled_from("xyz"), max_size=2)))
    pairs = draw(st.dictionaries(st.sampled_from("abc"),
                                 st.frozensets(st.sampled_from("xyz"), min_size=1), max_size=2))
    base = Coverage(owners=owners, departments=depts)
    for owner, ds in pairs.items():  # pairs are only built through intersection
        base = base.union(Coverage(owners=frozenset(owner)).intersect(Coverage(departments=ds)))
    return base


def members(c: Coverage) -> set[tuple[str | None, str | None]]:
    return {(o, d) for o, d in UNIVERSE if c.covers(o, d)}


@given(coverages(), coverages())
def test_union_is_set_union(a: Coverage, b: Coverage) -> None:
    assert members(a.union(b)) == members(a) | members(b)


@given(coverages(), coverages())
def test_intersection_is_set_intersection(a: Coverage, b: Coverage) -> None:
    both = a.intersect(b)
    assert members(both) == members(a) & members(b)
    assert both.is_empty == (not members(both) and not both.everything)


@given(coverages())
def test_equality_and_hash_follow_content(a: Coverage) -> None:
    again = a.union(Coverage())
    assert again == a
    assert hash(again) == hash(a)
    assert a != "not a coverage"
    assert repr(a).startswith("Coverage(")


def test_parse_scope_round_trip() -> None:
    for text in ("own", "team", "department_tree", "all", "custom:east-2", "custom:a:b"):
        assert parse_scope(text).encode() == [text]
    assert str(parse_scope("custom:a:b")) == "custom[a:b]"
    assert Scope.of("custom", ["b", "a"]).encode() == ["custom:a", "custom:b"]
    assert Scope.of(ScopeKind.TEAM) == parse_scope("team")


@pytest.mark.parametrize("bad", ["", "everything", "custom", "custom:", "Team"])
def test_parse_scope_rejects(bad: str) -> None:
    with pytest.raises(ValueError, match="scope"):
        parse_scope(bad)


def test_scope_of_checks_departments() -> None:
    with pytest.raises(ValueError, match="at least one department"):
        Scope.of("custom")
    with pytest.raises(ValueError, match="takes no department"):
        Scope.of("team", ["x"])
