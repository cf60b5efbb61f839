"""Plain SQL fragments: placeholders, identifiers, tenants, and the shape of the SQL text."""

from __future__ import annotations

from types import MappingProxyType
from typing import Any

import pytest

import salesauthz.filters
from salesauthz import Authorizer
from salesauthz.errors import UsageError
from salesauthz.filters.sql import ARRAY_MIN_VALUES, ShareTable, quote_identifier, sql_where
from salesauthz.scopes import Coverage
from salesauthz.values import ScopeFilter


def _filter(coverage: Coverage, domain: str = "acme") -> ScopeFilter:
    return ScopeFilter("someone", "read", "customer", domain, coverage)


def test_package_exports_the_sql_renderer() -> None:
    assert salesauthz.filters.sql_where is sql_where
    assert salesauthz.filters.quote_identifier is quote_identifier


def test_manager_in_every_paramstyle(sample: Authorizer) -> None:
    flt = sample.scope_filter("mgr_east", "read", "customer", domain="acme")
    values = ["mgr_east", "east", "east-1", "east-2"]
    expected_text = "(owner = {} OR dept IN ({}, {}, {}))"
    assert sql_where(flt, owner="owner", department="dept") == (expected_text.format(*["%s"] * 4), values)
    assert sql_where(flt, owner="owner", department="dept", paramstyle="qmark") == (
        expected_text.format(*["?"] * 4), values)
    names = [f"scope_{i}" for i in range(4)]
    assert sql_where(flt, owner="owner", department="dept", paramstyle="named") == (
        expected_text.format(*[f":{n}" for n in names]), dict(zip(names, values, strict=True)))
    assert sql_where(flt, owner="owner", department="dept", paramstyle="pyformat",
                     param_prefix="p") == (
        expected_text.format(*[f"%(p{i})s" for i in range(4)]), {f"p{i}": v for i, v in enumerate(values)})


def test_tenant_condition_comes_first(sample: Authorizer) -> None:
    flt = sample.scope_filter("rep_e1a", "read", "customer", domain="acme")
    assert sql_where(flt, owner="c.owner", department="c.department", domain=("c.tenant", "acme")) == (
        "(c.tenant = %s AND (c.owner = %s))", ["acme", "rep_e1a"])


def test_nothing_and_everything(sample: Authorizer) -> None:
    nothing = sample.scope_filter("gone_1", "read", "customer", domain="acme")
    everything = sample.scope_filter("alice", "read", "customer", domain="acme")
    assert sql_where(nothing, owner="o", department="d") == ("(1 = 0)", [])
    assert sql_where(everything, owner="o", department="d") == ("(1 = 1)", [])
    assert sql_where(everything, owner="o", department="d", domain=("t", "acme"), paramstyle="qmark") == (
        "(t = ?)", ["acme"])


def test_a_filter_never_reaches_into_another_tenant(sample: Authorizer) -> None:
    flt = sample.scope_filter("alice", "read", "customer", domain="acme")
    with pytest.raises(ValueError, match="for domain 'acme' but the tenant condition names 'globex'"):
        sql_where(flt, owner="o", department="d", domain=("tenant", "globex"))


def test_sub_account_pairs(sample: Authorizer) -> None:
    flt = sample.scope_filter("intern_e1", "read", "customer", domain="acme")
    assert sql_where(flt, owner="o", department="d", paramstyle="qmark") == (
        "(d = ? OR (o = ? AND d IN (?, ?)))", ["east-1", "intern_e1", "east", "east-2"])


def test_null_departments_follow_the_owner_with_the_authorizer(sample: Authorizer) -> None:
    flt = sample.scope_filter("analyst_1", "read", "customer", domain="acme")
    where, params = sql_where(flt, owner="o", department="d", paramstyle="qmark", authz=sample)
    assert where == "(o = ? OR d IN (?, ?, ?) OR ((d IS NULL OR d = ?) AND o IN (?, ?, ?, ?)))"
    assert params == ["analyst_1", "east-2", "west", "west-1", "", "frozen_1", "rep_e2", "rep_w1",
                      "rep_w2"]
    # The reverse map is cached per snapshot: a second call gives the same answer.
    assert sql_where(flt, owner="o", department="d", paramstyle="qmark", authz=sample) == (where, params)


def test_null_department_pairs_and_unknown_domains(sample: Authorizer) -> None:
    # A sub-account's own records without a department: its home (east-1) is in its pair set.
    pairs = _filter(Coverage(owner_departments=MappingProxyType({"rep_e1a": frozenset({"east-1"}),
                                                                  "rep_w1": frozenset({"east-1"})})))
    assert sql_where(pairs, owner="o", department="d", paramstyle="qmark", authz=sample) == (
        "((o IN (?, ?) AND d = ?) OR ((d IS NULL OR d = ?) AND o = ?))",
        ["rep_e1a", "rep_w1", "east-1", "", "rep_e1a"])
    elsewhere = _filter(Coverage(owners=frozenset({"x"})), domain="nowhere")
    assert sql_where(elsewhere, owner="o", department="d", authz=sample) == ("(o = %s)", ["x"])


def test_empty_department_names_never_match_directly() -> None:
    # check() reads an empty department as "the owner's", so '' must not match as a name.
    odd = _filter(Coverage(owners=frozenset({"a"}), departments=frozenset({""}),
                           owner_departments=MappingProxyType({"a": frozenset({"x"}),
                                                               "b": frozenset({""})})))
    assert sql_where(odd, owner="o", department="d") == ("(o = %s)", ["a"])
    only_empty = _filter(Coverage(departments=frozenset({""})))
    assert sql_where(only_empty, owner="o", department="d") == ("(1 = 0)", [])


@pytest.mark.parametrize(
    "column",
    ["owner", "c.owner", "public.customer.owner", '"Owner Name"', 'c."we""ird"', "_x$1", '"x"."y"'],
)
def test_valid_identifiers_are_kept_as_written(sample: Authorizer, column: str) -> None:
    flt = sample.scope_filter("rep_e1a", "read", "customer", domain="acme")
    assert sql_where(flt, owner=column, department="d", paramstyle="qmark")[0] == f"({column} = ?)"


@pytest.mark.parametrize(
    "column",
    ["", "owner; DROP TABLE x", "a b", '"unterminated', "1abc", "c.", ".c", "o--", '"a"b"', '""',
     "own\u00e9r", 'x"\x00"', "owner)"],
)
def test_other_identifiers_are_refused(sample: Authorizer, column: str) -> None:
    flt = sample.scope_filter("rep_e1a", "read", "customer", domain="acme")
    with pytest.raises(ValueError, match=r"owner column .* is not a SQL identifier"):
        sql_where(flt, owner=column, department="d")
    with pytest.raises(ValueError, match=r"domain column .* is not a SQL identifier"):
        sql_where(flt, owner="o", department="d", domain=(column, "acme"))


def test_non_string_identifier_is_refused(sample: Authorizer) -> None:
    flt = sample.scope_filter("rep_e1a", "read", "customer", domain="acme")
    bad: Any = 3
    with pytest.raises(ValueError, match="department column 3 is not a SQL identifier"):
        sql_where(flt, owner="o", department=bad)


def test_percent_in_identifiers_is_escaped_for_percent_styles(sample: Authorizer) -> None:
    flt = sample.scope_filter("rep_e1a", "read", "customer", domain="acme")
    column = quote_identifier("pct%s")
    assert sql_where(flt, owner=column, department="d")[0] == '("pct%%s" = %s)'
    assert sql_where(flt, owner=column, department="d", paramstyle="named")[0] == '("pct%s" = :scope_0)'


def test_quote_identifier() -> None:
    assert quote_identifier('we"ird; --') == '"we""ird; --"'
    for bad in ("", "a\x00b"):
        with pytest.raises(ValueError, match="not a usable SQL identifier"):
            quote_identifier(bad)


def test_bad_paramstyle_and_prefix(sample: Authorizer) -> None:
    flt = sample.scope_filter("rep_e1a", "read", "customer", domain="acme")
    bad: Any = "numeric"
    with pytest.raises(ValueError, match="unknown paramstyle 'numeric'"):
        sql_where(flt, owner="o", department="d", paramstyle=bad)
    with pytest.raises(ValueError, match="param_prefix 'x-' must be a plain identifier"):
        sql_where(flt, owner="o", department="d", paramstyle="named", param_prefix="x-")


def test_terms_are_reused_per_coverage_and_the_cache_stays_bounded(
    sample: Authorizer, monkeypatch: pytest.MonkeyPatch,
) -> None:
    from salesauthz._identity import IdentityCache
    from salesauthz.filters import _terms

    monkeypatch.setattr(_terms, "_cache", IdentityCache(2))
    flts = [sample.scope_filter(a, "read", "customer", domain="acme")
            for a in ("rep_e1a", "mgr_east", "analyst_1")]
    first = _terms.terms_of(flts[0])
    assert _terms.terms_of(flts[0]) is first  # same coverage object: reused
    _terms.terms_of(flts[1])
    _terms.terms_of(flts[2])  # a third entry: the least recently used one is evicted
    assert _terms._cache.get(flts[0].coverage, None) is None
    assert _terms._cache.get(flts[2].coverage, None) is not None
    assert _terms.terms_of(flts[0]) == first


def test_terms_made_with_a_snapshot_are_dropped_with_it(fresh_sample: Authorizer) -> None:
    from salesauthz.filters import _terms

    flt = fresh_sample.scope_filter("mgr_east", "read", "customer", domain="acme")
    before = _terms.terms_of(flt, fresh_sample)
    assert "rep_e1a" in before.null_department_owners
    assert _terms.terms_of(flt, fresh_sample) is before
    old_members = fresh_sample.department_members(domain="acme")
    assert fresh_sample.department_members(domain="acme") is old_members
    # A change that moves nobody keeps the index (and the terms remembered with it).
    fresh_sample.apply_changes(added=[("p", "rep_e1a", "acme", "customer", "read", "own", "")])
    assert fresh_sample.department_members(domain="acme") is old_members
    # rep_e1a moves to west-1: new rules; rows without a department follow the owner.
    moved = [r for r in fresh_sample.rules("acme") if r[0] == "g3" and r[1] == "rep_e1a"]
    assert moved
    fresh_sample.apply_changes(added=[(*moved[0][:2], "west-1", *moved[0][3:])], removed=moved)
    assert fresh_sample.department_members(domain="acme") is not old_members
    flt = fresh_sample.scope_filter("mgr_east", "read", "customer", domain="acme")
    after = _terms.terms_of(flt, fresh_sample)
    assert "rep_e1a" not in after.null_department_owners


def _tree_authz(sizes: dict[str, int]) -> Authorizer:
    """A manager ``mgr_<root>`` over each ``root`` and its ``size - 1`` child departments."""
    from salesauthz.models import DomainDocument, compile_document

    departments: dict[str, Any] = {"sales": {}}
    accounts: dict[str, Any] = {}
    for root, size in sizes.items():
        departments[root] = {"parent": "sales"}
        departments.update({f"{root}-{i}": {"parent": root} for i in range(size - 1)})
        accounts[f"mgr_{root}"] = {"department": root, "roles": ["manager"]}
    document = {
        "domain": "acme", "resources": {"customer": ["read"]}, "departments": departments,
        "roles": {"manager": {"permissions": [{"scope": "department_tree", "customer": ["read"]}]}},
        "accounts": accounts,
    }
    return Authorizer.from_rules(compile_document(DomainDocument.model_validate(document)))


def test_postgres_arrays_bind_large_sets_as_one_array(sample: Authorizer) -> None:
    # Small sets keep one placeholder per value, exactly as without arrays: PostgreSQL's generic
    # plan of an array parameter assumes 10 elements and picks the wrong index for a small team.
    for account in ("mgr_east", "rep_e1a"):
        flt = sample.scope_filter(account, "read", "customer", domain="acme")
        assert (sql_where(flt, owner="o", department="d", domain=("t", "acme"), arrays=True)
                == sql_where(flt, owner="o", department="d", domain=("t", "acme")))
    authz = _tree_authz({"ten": 10, "eleven": 11, "forty": 40})
    ten = authz.scope_filter("mgr_ten", "read", "customer", domain="acme")
    where, params = sql_where(ten, owner="o", department="d", domain=("t", "acme"), arrays=True)
    assert where == "(t = %s AND (o = %s OR d IN (" + ", ".join(["%s"] * 10) + ")))"
    assert len(params) == 12
    # From ARRAY_MIN_VALUES (11) values on: one array, the same SQL text whatever the size.
    assert ARRAY_MIN_VALUES == 11
    for account, size in (("mgr_eleven", 11), ("mgr_forty", 40)):
        flt = authz.scope_filter(account, "read", "customer", domain="acme")
        where, params = sql_where(flt, owner="o", department="d", domain=("t", "acme"),
                                  arrays=True)
        assert where == "(t = %s AND (o = %s OR d = ANY(%s)))"
        assert params == ["acme", account, sorted(flt.departments)]
        assert len(params[2]) == size
    where, params = sql_where(authz.scope_filter("mgr_forty", "read", "customer", domain="acme"),
                              owner="o", department="d", paramstyle="named", arrays=True)
    assert where == "(o = :scope_0 OR d = ANY(:scope_1))"
    assert isinstance(params, dict)
    assert len(params["scope_1"]) == 40


def _shared_authz() -> Authorizer:
    from salesauthz.models import DomainDocument, compile_document

    document = {
        "domain": "acme", "resources": {"customer": ["read", "update"]},
        "departments": {"sales": {}, "east": {"parent": "sales"}},
        "sharing": {"customer": {"ro": ["read"], "rw": ["read", "update"]}},
        "roles": {"rep": {"permissions": [{"scope": "shared", "customer": ["read"]}]},
                  "team_lead": {"permissions": [{"scope": "team", "customer": ["read"]}]}},
        "accounts": {"lead": {"department": "east", "roles": ["team_lead"]},
                     "asst": {"department": "east", "roles": ["rep"], "parent": "lead"}},
    }
    return Authorizer.from_rules(compile_document(DomainDocument.model_validate(document)))


def test_a_guarded_term_is_its_base_and_one_exists_per_guard() -> None:
    flt = _shared_authz().scope_filter("asst", "read", "customer", domain="acme")
    where, params = sql_where(flt, owner="c.owner", department="c.department", paramstyle="qmark",
                              shares=ShareTable("crm.share", record_id='"Record"'),
                              record_id="c.id")
    assert where == (
        "(((c.owner = ? OR c.department = ?) AND EXISTS (SELECT 1 FROM crm.share salesauthz_share"
        ' WHERE salesauthz_share."Record" = c.id AND salesauthz_share.level IN (?, ?)'
        " AND (salesauthz_share.account = ? OR salesauthz_share.department IN (?, ?)))))")
    assert params == ["lead", "east", "ro", "rw", "asst", "east", "sales"]


def _capped_shared_authz() -> Authorizer:
    """A sub-account with own + shared capped by a lead with team + shared (both guarded)."""
    from salesauthz.models import DomainDocument, compile_document

    document = {
        "domain": "acme", "resources": {"customer": ["read", "update"]},
        "departments": {"sales": {}, "east": {"parent": "sales"}, "west": {"parent": "sales"}},
        "sharing": {"customer": {"ro": ["read"], "rw": ["read", "update"]}},
        "roles": {"rep": {"permissions": [{"scope": "own", "customer": ["read"]},
                                          {"scope": "shared", "customer": ["read"]}]},
                  "team_lead": {"permissions": [{"scope": "team", "customer": ["read"]},
                                                {"scope": "shared", "customer": ["read"]}]}},
        "accounts": {"lead": {"department": "east", "roles": ["team_lead"]},
                     "asst": {"department": "west", "roles": ["rep"], "parent": "lead"},
                     "other": {"department": "west", "roles": ["rep"]}},
    }
    return Authorizer.from_rules(compile_document(DomainDocument.model_validate(document)))


def test_a_capped_shared_scope_renders_factored_with_one_exists_per_guard() -> None:
    """(own ∪ shared with asst) ∩ (lead's team ∪ shared with lead): two factors, each EXISTS
    once — not the expanded four terms (PostgreSQL plans those 1.4x slower)."""
    flt = _capped_shared_authz().scope_filter("asst", "read", "customer", domain="acme")
    where, params = sql_where(flt, owner="c.owner", department="c.department", paramstyle="qmark",
                              shares=ShareTable("share"), record_id="c.id")
    exists = ("EXISTS (SELECT 1 FROM share salesauthz_share WHERE salesauthz_share.record_id = "
              "c.id AND salesauthz_share.level IN (?, ?) AND (salesauthz_share.account = ? OR "
              "salesauthz_share.department IN (?, ?)))")
    assert where == (f"((c.owner = ? OR ({exists})) AND "
                     f"(c.owner = ? OR c.department = ? OR ({exists})))")
    assert params == ["asst", "ro", "rw", "asst", "sales", "west",
                      "lead", "east", "ro", "rw", "lead", "east", "sales"]


def test_a_capped_shared_filter_lets_through_exactly_what_check_allows() -> None:
    import sqlite3

    from salesauthz import Record, Share

    authz = _capped_shared_authz()
    flt = authz.scope_filter("asst", "read", "customer", domain="acme")
    people = ["asst", "lead", "other", None]
    departments = ["east", "west", "sales"]
    shares: list[tuple[Share, ...]] = [
        (), (Share("ro", account="asst"),), (Share("rw", account="lead"),),
        (Share("ro", department="west"),), (Share("ro", department="east"),),
        (Share("ro", account="asst"), Share("rw", department="east")),
        (Share("ro", department="sales"),), (Share("ro", account="other"),)]
    db = sqlite3.connect(":memory:")
    db.execute("CREATE TABLE c (id INTEGER, owner TEXT, department TEXT)")
    db.execute("CREATE TABLE share (record_id INTEGER, account TEXT, department TEXT, level TEXT)")
    expected: set[int] = set()
    k = 0
    for owner in people:
        for department in departments:
            for record_shares in shares:
                k += 1
                db.execute("INSERT INTO c VALUES (?, ?, ?)", (k, owner, department))
                db.executemany("INSERT INTO share VALUES (?, ?, ?, ?)",
                               [(k, s.account, s.department, s.level) for s in record_shares])
                record = Record("customer", owner=owner, department=department,
                                shares=record_shares)
                if authz.check("asst", "read", record, domain="acme"):
                    expected.add(k)
    where, params = sql_where(flt, owner="c.owner", department="c.department", paramstyle="qmark",
                              shares=ShareTable("share"), record_id="c.id")
    found = {row[0] for row in db.execute(f"SELECT id FROM c WHERE {where}", params)}
    assert found == expected
    assert 0 < len(expected) < k


def test_shares_are_required_exactly_when_the_filter_needs_them() -> None:
    authz = _shared_authz()
    shared = authz.scope_filter("asst", "read", "customer", domain="acme")
    plain = authz.scope_filter("lead", "read", "customer", domain="acme")
    assert shared.needs_shares
    assert not plain.needs_shares
    with pytest.raises(UsageError, match=r"asst \(read customer in acme\).*shares=ShareTable"):
        sql_where(shared, owner="owner", department="department")
    with pytest.raises(UsageError, match="record_id="):
        sql_where(shared, owner="owner", department="department", shares=ShareTable("share"))
    assert sql_where(plain, owner="owner", department="department",
                     shares=ShareTable("share"), record_id="c.id") == sql_where(
        plain, owner="owner", department="department")


@pytest.mark.parametrize(("table", "record_id", "message"), [
    (ShareTable("share"), "id", "must be qualified"),
    (ShareTable("share"), '"c.id"', "must be qualified"),
    (ShareTable("share; DROP"), "c.id", "share table column"),
    (ShareTable("share", account="s.account"), "c.id", "not dotted"),
    (ShareTable("share", level="level --"), "c.id", "share level column"),
])
def test_share_table_names_are_validated(table: ShareTable, record_id: str, message: str) -> None:
    flt = _shared_authz().scope_filter("asst", "read", "customer", domain="acme")
    with pytest.raises(ValueError, match=message):
        sql_where(flt, owner="owner", department="department", shares=table, record_id=record_id)
