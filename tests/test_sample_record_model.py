"""The bundled sample organisation's record model (issue 13): shared records, an auxiliary
department, a reporting line and a timed role assignment — decisions and how `explain` words them.

The policy tests (`salesauthz test policies/`) cover the same organisation; the cases whose records
carry shares are in ``policies/acme-sharing.test.yaml``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from salesauthz import Authorizer, Record, Share

ROOT = Path(__file__).resolve().parent.parent
POLICIES = ROOT / "policies"

# rep_e2's key account (east-2): read-only for the service rep, read-write for rep_w1 in west-1.
KEY_ACCOUNT = Record("customer", owner="rep_e2", id="northwind",
                     shares=(Share("read_only", account="svc_1"), Share("read_write", account="rep_w1")))
# rep_w1's customer, shared read-only with the east region: east and every department below it.
WEST_FOR_EAST = Record("customer", owner="rep_w1", shares=(Share("read_only", department="east"),))

ACCOUNTS = ["alice", "dir_sales", "mgr_east", "lead_e1", "rep_e1a", "rep_e1b", "rep_e2", "rep_w1",
            "rep_w2", "asst_e1", "asst_east", "svc_1", "cs_1", "ops_1", "analyst_1", "intern_e1"]


def _reason(authz: Authorizer, account: str, action: str, record: Record) -> str:
    decision = authz.explain(account, action, record, domain="acme")
    assert decision.allowed == authz.check(account, action, record, domain="acme")
    return decision.reason if decision.allowed else "DENY: " + decision.reason


# -- shares --------------------------------------------------------------------------------------


def test_a_key_account_shared_read_write_with_a_colleague_in_another_region(sample: Authorizer) -> None:
    for action in ("read", "update"):
        assert _reason(sample, "rep_w1", action, KEY_ACCOUNT) == (
            f"allowed by role account_team: customer:{action}@shared reaches records shared "
            f"{'read_only/read_write' if action == 'read' else 'read_write'} with rep_w1 or with its "
            "department west-1 (shared with rep_w1 read_write)")
    # read_write allows what the level lists, nothing more: no export, no delete.
    assert not sample.check("rep_w1", "delete", KEY_ACCOUNT, domain="acme")
    # Without the share, rep_w1 reaches only its own customers.
    assert not sample.check("rep_w1", "read", KEY_ACCOUNT._replace(shares=()), domain="acme")


def test_the_share_level_bounds_the_action_not_the_role(sample: Authorizer) -> None:
    # service_rep holds customer:update@shared, but a read_only share allows only read.
    assert _reason(sample, "svc_1", "read", KEY_ACCOUNT).endswith("(shared with svc_1 read_only)")
    assert not sample.check("svc_1", "update", KEY_ACCOUNT, domain="acme")
    assert "customer:update@shared" in sample.explain("svc_1", "update", KEY_ACCOUNT, domain="acme").reason


def test_a_share_names_someone_else_reaches_no_one_else(sample: Authorizer) -> None:
    assert not sample.check("rep_e1a", "read", KEY_ACCOUNT, domain="acme")
    assert not sample.check("asst_east", "read", KEY_ACCOUNT._replace(owner="rep_w1"), domain="acme")
    holders = [a for a in ACCOUNTS if sample.check(a, "update", KEY_ACCOUNT, domain="acme")]
    assert holders == ["alice", "mgr_east", "rep_e2", "rep_w1"]
    readers = [a for a in ACCOUNTS if sample.check(a, "read", KEY_ACCOUNT, domain="acme")]
    assert set(readers) - set(holders) == {"dir_sales", "asst_east", "svc_1", "cs_1", "ops_1",
                                           "analyst_1"}


def test_a_share_with_a_department_reaches_its_subtree(sample: Authorizer) -> None:
    assert _reason(sample, "rep_e2", "read", WEST_FOR_EAST) == (
        "allowed by role account_team: customer:read@shared reaches records shared "
        "read_only/read_write with rep_e2 or with its department east-2 "
        "(shared read_only with department east, above its department east-2)")
    assert not sample.check("lead_e1", "read", WEST_FOR_EAST, domain="acme")   # not on the team
    assert not sample.check("mgr_east", "read", WEST_FOR_EAST, domain="acme")  # not on the team
    assert not sample.check("rep_e2", "update", WEST_FOR_EAST, domain="acme")  # read_only
    assert not sample.check("svc_1", "read", WEST_FOR_EAST, domain="acme")    # service: elsewhere


def test_a_department_share_reaches_an_auxiliary_department(fresh_sample: Authorizer) -> None:
    # svc_1 also works for east-2 (an auxiliary department, rule g5): east's share reaches it.
    fresh_sample.apply_changes([("g5", "svc_1", "east-2", "acme")])
    assert _reason(fresh_sample, "svc_1", "read", WEST_FOR_EAST).endswith(
        "(shared read_only with department east, above its department east-2)")


def test_shared_is_only_shared_records_not_the_accounts_own(sample: Authorizer) -> None:
    # service_rep has no own scope: svc_1 does not even read a customer it owns, unless shared.
    mine = Record("customer", owner="svc_1")
    assert not sample.check("svc_1", "read", mine, domain="acme")
    assert sample.check("svc_1", "read", mine._replace(shares=(Share("read_only", account="svc_1"),)),
                        domain="acme")


def test_undeclared_levels_and_types_without_levels_reach_no_one(sample: Authorizer) -> None:
    assert not sample.check("rep_w1", "read", KEY_ACCOUNT._replace(
        shares=(Share("full_access", account="rep_w1"),)), domain="acme")
    # order declares no share levels in the sample (and reps hold no order right @shared).
    order = Record("order", owner="rep_e2", shares=(Share("read_write", account="rep_w1"),))
    assert not sample.check("rep_w1", "read", order, domain="acme")


def test_a_sub_accounts_shared_right_is_capped_by_its_parent(fresh_sample: Authorizer) -> None:
    # intern_e1 (under mgr_east) gets customer:read@shared; a west record shared with it is
    # still out of reach unless mgr_east may read it too (mgr_east's own shared right counts:
    # it gets one here, since in the sample only the account team holds shared rights).
    fresh_sample.apply_changes([("p", "intern_e1", "acme", "customer", "read", "shared", ""),
                                ("p", "mgr_east", "acme", "customer", "read", "shared", "")])
    to_intern = Record("customer", owner="rep_w1", shares=(Share("read_only", account="intern_e1"),))
    decision = fresh_sample.explain("intern_e1", "read", to_intern, domain="acme")
    assert not decision.allowed
    assert "its parent mgr_east is not" in decision.reason
    to_both = to_intern._replace(shares=(*to_intern.shares, Share("read_only", account="mgr_east")))
    assert fresh_sample.check("intern_e1", "read", to_both, domain="acme")


def test_check_many_and_filters_agree_with_check_on_shared_records(sample: Authorizer) -> None:
    records = [KEY_ACCOUNT, WEST_FOR_EAST, KEY_ACCOUNT._replace(shares=()),
               Record("customer", owner="rep_w1", department="east-2")]
    batch = [(a, action, r) for a in ACCOUNTS for action in ("read", "update") for r in records]
    expected = [sample.check(a, action, r, domain="acme") for a, action, r in batch]
    assert sample.check_many(batch, domain="acme") == expected
    for account in ACCOUNTS:
        for action in ("read", "update"):
            flt = sample.scope_filter(account, action, "customer", domain="acme")
            for record in records:
                department = record.department or sample.account(record.owner or "", domain="acme").department  # type: ignore[union-attr]
                assert flt.matches(record.owner, department, record.shares) == sample.check(
                    account, action, record, domain="acme"), (account, action, record)
    assert sample.scope_filter("rep_w1", "read", "customer", domain="acme").needs_shares
    assert not sample.scope_filter("dir_sales", "read", "customer", domain="acme").needs_shares


# -- auxiliary departments -----------------------------------------------------------------------


def test_team_covers_the_main_and_auxiliary_departments(sample: Authorizer) -> None:
    assert sample.account("asst_east", domain="acme").also_in == {"east-2"}  # type: ignore[union-attr]
    assert _reason(sample, "asst_east", "read", Record("customer", owner="rep_e2")) == (
        "allowed by role sales_assistant: customer:read@team reaches records owned by asst_east "
        "or in its departments east-1, east-2")
    assert sample.check("asst_east", "read", Record("customer", owner="rep_e1b"), domain="acme")
    assert not sample.check("asst_east", "read", Record("customer", owner="rep_w1"), domain="acme")
    # A record of asst_east's with no department is in its main department only.
    theirs = Record("customer", owner="asst_east")
    assert sample.check("asst_e1", "read", theirs, domain="acme")          # east-1
    assert not sample.check("rep_e2", "read", theirs, domain="acme")


# -- reporting lines -----------------------------------------------------------------------------


def test_a_director_sees_the_customers_of_its_reporting_line_across_departments(
        sample: Authorizer) -> None:
    assert _reason(sample, "dir_sales", "read", Record("customer", owner="rep_e2")) == (
        "allowed by role sales_director: customer:read@subordinate_tree reaches records owned by "
        "dir_sales or by anyone below it in the reporting line "
        "(the owner rep_e2 reports to dir_sales through lead_e1)")
    assert _reason(sample, "dir_sales", "read", Record("customer", owner="rep_w1")).endswith(
        "(the owner rep_w1 reports to dir_sales)")
    # rep_e1b reports to no one: out of the line, though in a department below sales.
    assert not sample.check("dir_sales", "read", Record("customer", owner="rep_e1b"), domain="acme")
    flt = sample.scope_filter("dir_sales", "read", "customer", domain="acme")
    assert flt.owners == {"dir_sales", "lead_e1", "rep_e1a", "rep_e2", "rep_w1", "rep_w2"}
    assert not flt.departments


def test_a_reporting_line_caps_nothing(sample: Authorizer) -> None:
    # lead_e1 reports to dir_sales, who may not update customers; lead_e1 still may (its team).
    east_1 = Record("customer", owner="rep_e1b")
    assert sample.check("lead_e1", "update", east_1, domain="acme")
    assert not sample.check("dir_sales", "update", Record("customer", owner="lead_e1"), domain="acme")


# -- timed role assignments ----------------------------------------------------------------------


def test_a_stand_in_senior_rep_until_2030() -> None:
    until = datetime(2030, 6, 30, tzinfo=UTC).timestamp()
    now = [until - 86_400.0]
    authz = Authorizer.from_directory(POLICIES, clock=lambda: now[0])
    west = Record("customer", owner="rep_w1")
    assert authz.account("rep_w2", domain="acme").timed_roles == {"senior_rep": until}  # type: ignore[union-attr]
    assert _reason(authz, "rep_w2", "read", west) == (
        "allowed by role senior_rep: customer:read@team reaches records owned by rep_w2 or in its "
        "department west-1 (role senior_rep assigned until 2030-06-30T00:00:00Z)")
    now[0] = until
    decision = authz.explain("rep_w2", "read", west, domain="acme")
    assert not decision.allowed
    assert any("the assignment of role senior_rep expired at 2030-06-30T00:00:00Z" in step
               for step in decision.steps), decision.steps
    # Its permanent junior_rep role goes on.
    assert authz.check("rep_w2", "update", Record("customer", owner="rep_w2"), domain="acme")


# -- the policy tests with shares ----------------------------------------------------------------
