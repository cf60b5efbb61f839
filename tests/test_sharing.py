"""Sharing is authorized: ``check_share`` and ``explain_share`` (salesauthz.sharing)."""

from __future__ import annotations

import asyncio
import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from salesauthz import Authorizer, Record, Share
from salesauthz._rules import Rule
from salesauthz.aio import AsyncAuthorizer
from salesauthz.models.loader import load_directory

from .conftest import examples

NOW = 1_900_000_000.0
LEVELS: list[Rule] = [
    ("p7", "acme", "customer", "read_only", "read"),
    ("p7", "acme", "customer", "read_write", "read"),
    ("p7", "acme", "customer", "read_write", "update"),
    ("p7", "acme", "customer", "with_export", "read"),
    ("p7", "acme", "customer", "with_export", "export"),
    # Whoever a record is shared with at this level may share it on (within what it holds).
    ("p7", "acme", "customer", "co_owner", "read"),
    ("p7", "acme", "customer", "co_owner", "update"),
    ("p7", "acme", "customer", "co_owner", "share"),
]
GRANTS: list[Rule] = [
    ("p", "lead_e1", "acme", "customer", "share", "team", ""),  # senior_rep: read, update @team
    ("p", "intern_e1", "acme", "customer", "share", "own", ""),  # its parent mgr_east may not share
    ("p", "rep_w1", "acme", "customer", "read", "shared", ""),
    ("p", "rep_w1", "acme", "customer", "share", "shared", ""),
]


@pytest.fixture(scope="module")
def authz() -> Authorizer:
    # The sample without its roles' own shared permissions: these tests give their own.
    sample = [r for r in load_directory("policies").rules if not (r[0] == "p" and r[5] == "shared")]
    return Authorizer.from_rules([*dict.fromkeys([*sample, *LEVELS, *GRANTS])], clock=lambda: NOW)


def east_1(*shares: Share) -> Record:
    return Record("customer", owner="rep_e1a", department="east-1", shares=shares)


@pytest.mark.parametrize(("actor", "record", "share", "allowed", "reason"), [
    ("lead_e1", east_1(), Share("read_only", account="cs_1"), True, "read_only (read) with account cs_1"),
    ("lead_e1", east_1(), Share("read_write", department="west"), True, "(read, update) with department"),
    # The level includes export, which lead_e1 may not do on the record.
    ("lead_e1", east_1(), Share("with_export", account="cs_1"), False, "may not export this record"),
    ("lead_e1", east_1(), Share("bogus", account="cs_1"), False, "'bogus' is not a share level"),
    ("lead_e1", Record("order", owner="rep_e1a", department="east-1"),
     Share("read_only", account="cs_1"), False, "declares no share levels"),
    # Not on records outside its team; not without the share action (mgr_east, an admin-less
    # manager); not for a sub-account whose parent may not share.
    ("lead_e1", Record("customer", owner="rep_w1", department="west-1"),
     Share("read_only", account="cs_1"), False, "may not share this record"),
    ("mgr_east", east_1(), Share("read_only", account="cs_1"), False, "may not share"),
    ("intern_e1", Record("customer", owner="intern_e1", department="east-1"),
     Share("read_only", account="cs_1"), False, "may not share"),
    ("alice", east_1(), Share("with_export", account="cs_1"), True, "may share"),
    # Who names nobody, or both, shares nothing.
    ("alice", east_1(), Share("read_only", account="ghost"), False, "no account of this domain"),
    ("alice", east_1(), Share("read_only", department="mars"), False, "no department"),
    ("alice", east_1(), Share("read_only", account="cs_1", department="west"), False, "exactly one"),
    ("alice", east_1(), Share("read_only"), False, "exactly one"),
    # A frozen account shares nothing; an unknown actor neither.
    ("frozen_1", east_1(), Share("read_only", account="cs_1"), False, "may not share"),
    ("nobody", east_1(), Share("read_only", account="cs_1"), False, "may not share"),
    # Through a share of its own: rep_w1 reads and shares what is shared co_owner with it, but
    # cannot pass on update, which its own rights (read, share @shared) do not include.
    ("rep_w1", east_1(Share("co_owner", account="rep_w1")), Share("read_only", account="cs_1"),
     True, "may share"),
    ("rep_w1", east_1(Share("co_owner", account="rep_w1")), Share("read_write", account="cs_1"),
     False, "may not update this record"),
    ("rep_w1", east_1(Share("read_only", account="rep_w1")), Share("read_only", account="cs_1"),
     False, "may not share this record"),
    ("rep_w1", east_1(), Share("read_only", account="cs_1"), False, "may not share this record"),
])
def test_check_share(authz: Authorizer, actor: str, record: Record, share: Share, allowed: bool,
                     reason: str) -> None:
    assert authz.check_share(actor, record, share, domain="acme") is allowed
    decision = authz.explain_share(actor, record, share, domain="acme")
    assert decision.allowed is allowed
    assert reason in decision.reason
    assert (decision.action, decision.account, decision.record) == ("share", actor, record)


def test_unknown_domain_and_odd_input_deny(authz: Authorizer) -> None:
    assert not authz.check_share("alice", east_1(), Share("read_only", account="cs_1"), domain="nowhere")
    assert authz.explain_share("alice", east_1(), Share("read_only", account="cs_1"),
                               domain="nowhere").reason == "unknown domain"
    odd: object = ("read_only", "cs_1", None)  # a plain tuple, not a Share
    assert not authz.check_share("alice", east_1(), odd, domain="acme")  # type: ignore[arg-type]


def test_explain_share_lists_each_action_asked(authz: Authorizer) -> None:
    decision = authz.explain_share("lead_e1", east_1(), Share("read_write", account="cs_1"),
                                   domain="acme")
    assert [step.split(":")[0] for step in decision.steps] == [
        "lead_e1 may share this record", "lead_e1 may read this record",
        "lead_e1 may update this record"]


def test_the_async_facade_answers_the_same(authz: Authorizer) -> None:
    share = Share("read_write", account="cs_1")

    async def ask() -> tuple[bool, bool]:
        facade = AsyncAuthorizer(authz)
        return (facade.check_share("lead_e1", east_1(), share, domain="acme"),
                facade.explain_share("lead_e1", east_1(), share, domain="acme").allowed)

    assert asyncio.run(ask()) == (True, True)


ACTORS = ["alice", "mgr_east", "lead_e1", "rep_e1a", "rep_w1", "intern_e1", "cs_1", "frozen_1"]
OWNERS = ["rep_e1a", "rep_w1", "intern_e1", "lead_e1"]
DEPARTMENTS = [None, "east", "east-1", "west-1", "service"]
SHARES = [Share(level, account=a) for level, a in itertools.product(
    ["read_only", "read_write", "with_export", "co_owner", "bogus"], ["rep_w1", "cs_1", "ghost"])] + [
    Share("read_only", department="east"), Share("read_write", department="sales")]


@settings(max_examples=examples(200), deadline=None)
@given(actor=st.sampled_from(ACTORS), owner=st.sampled_from(OWNERS),
       department=st.sampled_from(DEPARTMENTS),
       existing=st.lists(st.sampled_from(SHARES), max_size=2), share=st.sampled_from(SHARES))
def test_a_share_is_allowed_exactly_when_the_actor_holds_share_and_every_level_action(
        authz: Authorizer, actor: str, owner: str, department: str | None, existing: list[Share],
        share: Share) -> None:
    """The rule, restated independently: declared level, known target, and ``check`` allows
    ``share`` and every action of the level; explain_share agrees."""
    record = Record("customer", owner=owner, department=department, shares=tuple(existing))
    levels = {"read_only": ["read"], "read_write": ["read", "update"],
              "with_export": ["read", "export"], "co_owner": ["read", "update", "share"]}
    expected = (share.level in levels and share.account != "ghost"
                and all(authz.check(actor, action, record, domain="acme")
                        for action in ["share", *levels[share.level]]))
    assert authz.check_share(actor, record, share, domain="acme") is expected
    assert authz.explain_share(actor, record, share, domain="acme").allowed is expected
