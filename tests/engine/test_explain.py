"""explain() is a renderer of the engine's provenance: its verdict is always check()'s, its story
names the role path, the scope, the expired grants and the parent that caps."""

from __future__ import annotations

import importlib
import logging

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from salesauthz import Authorizer, Record
from salesauthz import _engine as engine
from tests.conftest import examples
from tests.strategies import FIXED_NOW, Organisation, organisations, requests


@settings(max_examples=examples(100))
@given(data=st.data(), org=organisations(record_model=True))
def test_the_story_ends_with_the_verdict_of_check(data: st.DataObject, org: Organisation) -> None:
    authz = Authorizer.from_rules(org.rules, clock=lambda: FIXED_NOW)
    for account, action, record, domain in data.draw(st.lists(requests(org), max_size=20)):
        decision = authz.explain(account, action, record, domain=domain)
        assert decision.allowed == authz.check(account, action, record, domain=domain)
        assert decision.steps[-1].startswith("allow: " if decision.allowed else "deny: ")
        assert decision.steps[-1].endswith(decision.reason)
        if decision.allowed:  # the deciding rules are permissions the account holds
            assert decision.rules
            assert all(r[0] in ("p", "p12") for r in decision.rules)  # p12: a department's grant
            assert decision.via == () or decision.via[-1] == decision.role


def test_the_story_names_the_inheritance_path(sample: Authorizer) -> None:
    decision = sample.explain("lead_e1", "read", Record("customer", owner="rep_e1b"), domain="acme")
    assert decision.allowed
    assert decision.role == "senior_rep"
    assert decision.via == ("senior_rep",)
    assert "reaches records owned by lead_e1 or in its department east-1" in decision.reason


def test_a_disagreeing_story_is_never_the_verdict(sample: Authorizer, monkeypatch: pytest.MonkeyPatch,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    # Force the story to claim an allow that the engine does not make.
    module = importlib.import_module("salesauthz._engine.explain")  # the module, not the function

    record = Record("customer", owner="rep_w1")
    told = engine.explain(sample._snapshot("acme"), "rep_e1a", "update", record, "acme", sample.now())
    assert not told.allowed
    allowed_story = type(told)(True, "made up", "rep_e1a", "update", record, "acme")
    monkeypatch.setattr(module, "_tell", lambda *args: allowed_story)
    with caplog.at_level(logging.ERROR, logger="salesauthz"):
        decision = sample.explain("rep_e1a", "update", record, domain="acme")
    assert not decision.allowed
    assert "disagrees" in decision.reason
    assert "disagrees" in caplog.text


def test_the_story_names_the_department_whose_grant_decides() -> None:
    rules = [("p2", "acme", "customer", "read"), ("g2", "service", "", "acme"),
             ("g2", "service-1", "service", "acme"), ("g2", "east", "", "acme"),
             ("p12", "service", "acme", "customer", "read", "custom:east", ""),
             ("p3", "main", "acme", "active"), ("g3", "main", "service-1", "acme"),
             ("p3", "aux", "acme", "active"), ("g3", "aux", "east", "acme"),
             ("g5", "aux", "service", "acme")]
    authz = Authorizer.from_rules(rules)
    record = Record("customer", owner="x", department="east")
    reason = authz.explain("main", "read", record, domain="acme").reason
    assert reason.startswith("allowed by a grant to department service (main's main department "
                             "service-1 is below it): customer:read@custom[east]")
    decision = authz.explain("aux", "read", record, domain="acme")
    assert "grant to department service (aux's auxiliary department is service)" in decision.reason
    assert decision.rules == (("p12", "service", "acme", "customer", "read", "custom:east", ""),)
