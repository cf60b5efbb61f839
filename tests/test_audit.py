"""The hash-chained audit trail: verify() catches any edit, removal, insertion or reordering."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from salesauthz import Authorizer
from salesauthz.adapters.memory import MemoryAdapter
from salesauthz.audit import AuditRecord, AuditVerificationError, find_break


@pytest.fixture
def trail() -> Authorizer:
    now = [1_900_000_000.0]

    def clock() -> float:
        now[0] += 1
        return now[0]

    authz = Authorizer.from_directory("policies", clock=clock)
    admin = authz.admin("mgr_east", domain="acme")
    admin.grant("rep_e2", "customer", ["read"], scope="team")
    admin.create_account("intern_e2", department="east-2", parent="mgr_east")
    admin.freeze("rep_e2")
    authz.admin("g_admin", domain="globex").grant("g_rep", "order", ["approve"], scope="all")
    return authz


def test_chain_verifies_per_domain(trail: Authorizer) -> None:
    records = trail.audit.records()
    assert [r.sequence for r in records if r.domain == "acme"] == [1, 2, 3]
    assert [r.sequence for r in records if r.domain == "globex"] == [1]
    assert trail.audit.verify()
    assert trail.audit.verify("acme")
    assert trail.audit.verify(raise_on_failure=True)


@pytest.mark.parametrize("field", ["actor", "target", "operation", "detail", "time", "escalated",
                                   "added"])
def test_any_edit_is_detected(trail: Authorizer, field: str) -> None:
    records = trail.audit.records("acme")
    for position in range(len(records)):
        tampered = list(records)
        value = getattr(tampered[position], field)
        replacement: object = {str: value + "x" if isinstance(value, str) else value,
                               float: 0.0, bool: not value, tuple: ()}[type(value)]
        changes: dict[str, Any] = {field: replacement}
        tampered[position] = dataclasses.replace(tampered[position], **changes)
        assert find_break(tampered) is not None, (field, position)


def test_removal_insertion_and_reordering_are_detected(trail: Authorizer) -> None:
    records = trail.audit.records("acme")
    assert find_break(records[1:]) is not None
    assert find_break(records[:1] + records[2:]) is not None
    assert find_break([records[1], records[0], records[2]]) is not None
    assert find_break([*records, records[-1]]) is not None
    # Re-hashing an edited record does not help: the next record's link breaks.
    edited = dataclasses.replace(records[0], actor="alice")
    edited = dataclasses.replace(edited, hash=edited.compute_hash())
    assert find_break([edited, *records[1:]]) is not None
    assert find_break(records[:-1]) is None  # truncating the tail is a valid shorter chain


def test_verify_reports_where_it_broke(trail: Authorizer) -> None:
    store = trail.store
    assert isinstance(store, MemoryAdapter)
    records = store._audit  # the memory store's own list: tampering from outside the API
    records[1] = dataclasses.replace(records[1], target="someone_else")
    assert not trail.audit.verify()
    with pytest.raises(AuditVerificationError) as caught:
        trail.audit.verify(raise_on_failure=True)
    assert (caught.value.domain, caught.value.sequence) == ("acme", 2)


def test_query(trail: Authorizer) -> None:
    assert [r.operation for r in trail.audit.query(actor="mgr_east")] == [
        "grant", "create_account", "freeze"]
    assert [r.target for r in trail.audit.query(target="rep_e2")] == ["rep_e2", "rep_e2"]
    assert [r.domain for r in trail.audit.query(operation="grant")] == ["acme", "globex"]
    first = trail.audit.records()[0].time
    assert len(trail.audit.query(since=first + 1)) == 3
    assert len(trail.audit.query(until=first + 1)) == 1
    assert trail.audit.query(escalated=True) == []
    assert len(trail.audit.query(domain="globex")) == 1


def test_json_round_trip(trail: Authorizer) -> None:
    for record in trail.audit.records():
        again = AuditRecord.from_json(record.to_json())
        assert again == record
        assert again.compute_hash() == record.hash
