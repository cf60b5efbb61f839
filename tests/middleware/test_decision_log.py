"""The decision log: fields, sampling, and no record field values."""

from __future__ import annotations

import json
import logging

import pytest

from salesauthz import Authorizer, Record
from salesauthz.middleware import DecisionLog, Guard, Identity, RequestAuthz, RequestInfo, StaticTokens

from .conftest import DecisionRecords

FIELDS = {"decision_id", "time", "request_id", "domain", "account", "action", "type", "record_id",
          "kind", "method", "route", "allowed", "rule", "role", "latency_ns", "mfa"}


def bound(sample: Authorizer, log: DecisionLog, account: str = "lead_e1") -> RequestAuthz:
    guard = Guard(sample, identity=StaticTokens({}), decision_log=log)
    request = RequestInfo("PUT", "/customers/7", "h", {"x-request-id": "req-1"}, route="/customers/{id}")
    return guard.bind(request, Identity(account, "acme"))


def test_one_record_per_decision_with_the_opa_style_fields(sample: Authorizer,
                                                            decisions: DecisionRecords) -> None:
    context = bound(sample, DecisionLog())
    record = Record("customer", owner="rep_e1b", department="east-1", id="7")
    assert context.allows("update", record)
    [entry] = decisions.decisions
    assert set(entry) == FIELDS
    assert entry["request_id"] == "req-1"
    assert (entry["domain"], entry["account"], entry["action"], entry["type"]) == \
        ("acme", "lead_e1", "update", "customer")
    assert (entry["record_id"], entry["allowed"], entry["kind"]) == ("7", True, "record")
    assert entry["rule"] == "p, senior_rep, acme, customer, update, team"
    assert entry["role"] == "senior_rep"
    assert (entry["method"], entry["route"]) == ("PUT", "/customers/{id}")
    assert isinstance(entry["latency_ns"], int)
    assert entry["latency_ns"] >= 0
    # The message is the same record as JSON, and carries no record field beyond the id.
    message = decisions.records[0].getMessage()
    assert json.loads(message) == entry
    assert "rep_e1b" not in message
    assert "east-1" not in message


def test_denials_have_no_rule(sample: Authorizer, decisions: DecisionRecords) -> None:
    context = bound(sample, DecisionLog(), account="rep_e1a")
    assert not context.allows("update", Record("customer", owner="rep_e1b", id="8"))
    [entry] = decisions.decisions
    assert (entry["allowed"], entry["rule"], entry["role"], entry["record_id"]) == (False, None, None, "8")


def test_sampling(sample: Authorizer, decisions: DecisionRecords) -> None:
    draws = iter([0.4, 0.6, 0.4, 0.6])
    context = bound(sample, DecisionLog(sample_rate=0.5, deny_sample_rate=0.0, random=lambda: next(draws)))
    mine = Record("customer", owner="lead_e1")
    other = Record("customer", owner="rep_w1")
    for _ in range(2):
        context.allows("read", mine)
        context.allows("read", other)  # denied: never sampled
    assert [d["allowed"] for d in decisions.decisions] == [True]
    assert len(decisions.decisions) == 1


def test_no_explanation_when_not_asked(sample: Authorizer, decisions: DecisionRecords) -> None:
    context = bound(sample, DecisionLog(explain=False))
    context.allows("read", Record("customer", owner="lead_e1"))
    assert decisions.decisions[0]["rule"] is None


def test_nothing_is_logged_when_the_logger_is_disabled(sample: Authorizer) -> None:
    log = DecisionLog(logging.getLogger("salesauthz.tests.silent"))
    log.logger.setLevel(logging.WARNING)
    assert not log.wants(True)
    assert not log.wants(False)


@pytest.mark.parametrize("rate", [-0.1, 1.5])
def test_rates_are_validated(rate: float) -> None:
    with pytest.raises(ValueError, match="between 0 and 1"):
        DecisionLog(sample_rate=rate)


def test_labels_are_carried(decisions: DecisionRecords) -> None:
    DecisionLog().emit(allowed=True, domain="acme", account="a", action="read", type="customer",
                       record_id=None, latency_ns=1, labels={"app": "crm"})
    assert decisions.decisions[0]["labels"] == {"app": "crm"}
