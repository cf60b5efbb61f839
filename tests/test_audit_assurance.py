"""The session assurance of an administrative change is part of its audit record (covered by
the chain), and every decision record of the web adapters carries the request's ``mfa``."""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import Any

import pytest

from salesauthz import Authorizer
from salesauthz.adapters.sql import SQLAdapter
from salesauthz.audit import KEY_ENV, RETIRED_KEYS_ENV, AuditRecord, find_break
from salesauthz.middleware import Guard, HS256Tokens, RequestAuthz, RequestInfo
from salesauthz.middleware.decision_log import DecisionLog
from salesauthz.models.loader import load_directory


@pytest.fixture(autouse=True)
def _no_audit_key_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(KEY_ENV, raising=False)
    monkeypatch.delenv(RETIRED_KEYS_ENV, raising=False)


def test_admin_records_carry_the_session_assurance(tmp_path: Path) -> None:
    store = SQLAdapter(f"sqlite:///{tmp_path / 'audit.db'}")
    store.apply(list(load_directory("policies").rules), [])
    authz = Authorizer(store)
    strong = authz.admin("alice", domain="acme", context={"mfa": True})
    first = strong.grant("rep_e2", "customer", ["read"], scope="team")
    assert first.assurance == 1
    leveled = authz.admin("alice", domain="acme", context={"mfa": 2}).freeze("rep_e2")
    assert leveled.assurance == 2
    weak = authz.admin("alice", domain="acme", context={"ip": "10.0.0.1"}).unfreeze("rep_e2")
    assert weak.assurance is None  # a context without mfa says nothing about it
    none = authz.admin("alice", domain="acme", context={"mfa": False}).revoke(
        "rep_e2", "customer", ["read"], scope="team")
    assert none.assurance == 0
    plain = authz.admin("alice", domain="acme").grant("rep_e2", "customer", ["read"],
                                                         scope="team")
    assert plain.assurance is None
    assert "assurance" not in json.loads(plain.to_json())  # byte-identical to earlier records
    assert json.loads(first.to_json())["assurance"] == 1
    assert AuditRecord.from_json(first.to_json()) == first
    assert authz.audit.verify("acme", raise_on_failure=True)
    reread = Authorizer(store).audit.records("acme")  # as stored, read back
    assert [r.assurance for r in reread] == [1, 2, None, 0, None]
    assert reread[0] == first
    # The chain covers it: changing the recorded assurance breaks the link.
    records = authz.audit.records("acme")
    tampered = [dataclasses.replace(r, assurance=2) if r.sequence == first.sequence else r
                for r in records]
    assert find_break(tampered) is not None
    store.close()


def test_decision_records_carry_the_requests_mfa() -> None:
    records: list[logging.LogRecord] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    logger = logging.getLogger("tests.audit_assurance.decisions")
    logger.setLevel(logging.INFO)
    logger.propagate = False
    logger.addHandler(Collect())
    authz = Authorizer.from_directory("policies")
    tokens = HS256Tokens("a-server-side-secret-of-at-least-32-bytes!")
    guard = Guard(authz, identity=tokens, decision_log=DecisionLog(logger))

    def bound(**claims: Any) -> RequestAuthz:
        token = tokens.mint("rep_e1a", domain="acme", **claims)
        return guard.resolve(RequestInfo("GET", "/", "h", {"authorization": f"Bearer {token}"}))

    strong = bound(amr=["pwd", "otp"])
    strong.can("customer", "read")
    assert json.loads(records[-1].getMessage())["mfa"] == 1
    bound().can("customer", "read")
    assert json.loads(records[-1].getMessage())["mfa"] == 0
    admin = strong.admin()
    assert (admin.actor, admin.domain, admin.assurance) == ("rep_e1a", "acme", 1)
