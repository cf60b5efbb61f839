"""``sql_where`` remembers what it rendered for a filter's terms and its arguments: a returning
account's list view costs a lookup, and the result is exactly a fresh rendering's."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from salesauthz import Authorizer
from salesauthz.errors import UsageError
from salesauthz.filters import sql
from salesauthz.filters.sql import ShareTable, sql_where
from salesauthz.models import DomainDocument, compile_document

from .test_sql import _capped_shared_authz


@pytest.fixture
def big_tree() -> Authorizer:
    """A manager at the root of 13 departments holding ``department_tree where amount <= 5``."""
    departments: dict[str, Any] = {"root": {}}
    departments.update({f"d{i}": {"parent": "root"} for i in range(12)})
    return Authorizer.from_rules(compile_document(DomainDocument.model_validate({
        "domain": "acme",
        "resources": {"customer": {"actions": ["read"], "attributes": {"amount": "int"}}},
        "departments": departments,
        "roles": {"boss": {"permissions": [
            {"scope": "department_tree", "where": {"amount": {"le": 5}}, "customer": ["read"]}]}},
        "accounts": {"m": {"department": "root", "roles": ["boss"]}},
    })))


# Each differs from the first in one argument the remembered rendering depends on.
VARIANTS: list[dict[str, Any]] = [
    {},
    {"owner": "c.owner"},
    {"department": "c.department"},
    {"domain": ("tenant", "acme")},
    {"domain": ("c.tenant", "acme")},
    {"paramstyle": "qmark"},
    {"paramstyle": "named"},
    {"paramstyle": "named", "param_prefix": "p_"},
    {"arrays": True},
    {"attributes": {"amount": "c.amount"}},
]


def _render(authz: Authorizer, **changes: Any) -> tuple[str, Any]:
    kwargs: dict[str, Any] = {"owner": "owner", "department": "department",
                              "attributes": {"amount": "amount"}}
    kwargs.update(changes)
    flt = authz.scope_filter("m", "read", "customer", domain="acme")
    return sql_where(flt, **kwargs)


def test_each_argument_gets_its_own_rendering(big_tree: Authorizer) -> None:
    fresh = []
    for changes in VARIANTS:
        sql._rendered.clear()
        fresh.append(_render(big_tree, **changes))
    assert len({text for text, _ in fresh}) == len(VARIANTS)  # all different
    for _ in range(2):  # remembered, interleaved: each still its own
        assert [_render(big_tree, **changes) for changes in VARIANTS] == fresh


def test_returned_parameters_are_the_callers(big_tree: Authorizer) -> None:
    first = _render(big_tree, arrays=True)
    expected = copy.deepcopy(first)
    params = first[1]
    assert isinstance(params, list)
    departments = next(p for p in params if isinstance(p, list))
    assert len(departments) == 13  # bound as one array
    departments.append("elsewhere")
    params.append("more")
    assert _render(big_tree, arrays=True) == expected
    named = _render(big_tree, paramstyle="named")
    expected = copy.deepcopy(named)
    assert isinstance(named[1], dict)
    named[1].clear()
    assert _render(big_tree, paramstyle="named") == expected


def test_a_returning_filter_is_not_rendered_again(big_tree: Authorizer,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    sql._rendered.clear()
    calls = []
    render = sql._render

    def counted(*args: Any) -> Any:
        calls.append(1)
        return render(*args)

    monkeypatch.setattr(sql, "_render", counted)
    first = _render(big_tree)
    assert _render(big_tree) == first
    assert len(calls) == 1


def test_the_share_table_is_part_of_what_is_remembered() -> None:
    flt = _capped_shared_authz().scope_filter("asst", "read", "customer", domain="acme")
    fresh = []
    for shares, record_id in ((ShareTable("share"), "c.id"), (ShareTable("other"), "c.id"),
                              (ShareTable("share"), "c.record")):
        sql._rendered.clear()
        fresh.append(sql_where(flt, owner="o", department="d", shares=shares, record_id=record_id))
    assert len({text for text, _ in fresh}) == 3
    for _ in range(2):
        assert [sql_where(flt, owner="o", department="d", shares=shares, record_id=record_id)
                for shares, record_id in ((ShareTable("share"), "c.id"),
                                          (ShareTable("other"), "c.id"),
                                          (ShareTable("share"), "c.record"))] == fresh
    with pytest.raises(UsageError, match="shares=ShareTable"):  # still refused without
        sql_where(flt, owner="o", department="d")


def test_a_remembered_rendering_never_serves_another_tenant() -> None:
    """Two tenants' ``@all`` filters share one coverage object: what was rendered for one must
    neither be handed to the other nor let a mismatched tenant value through."""
    rules: list[tuple[str, ...]] = []
    for tenant in ("a", "b"):
        rules += [("p2", tenant, "customer", "read"), ("p4", "boss", tenant),
                  ("p3", "u", tenant, "active"), ("g", "u", "boss", tenant),
                  ("p", "boss", tenant, "customer", "read", "all", "")]
    authz = Authorizer.from_rules(rules)
    for_a = authz.scope_filter("u", "read", "customer", domain="a")
    for_b = authz.scope_filter("u", "read", "customer", domain="b")
    assert for_a.coverage is for_b.coverage  # what makes the test able to fail
    assert sql_where(for_a, owner="o", department="d", domain=("tenant", "a"))[1] == ["a"]
    with pytest.raises(ValueError, match="the filter is for domain 'b'"):
        sql_where(for_b, owner="o", department="d", domain=("tenant", "a"))
    assert sql_where(for_b, owner="o", department="d", domain=("tenant", "b"))[1] == ["b"]
