"""Documents compile to Casbin rules and back; rule sets from stores are validated."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings

from salesauthz import Authorizer, PolicyError
from salesauthz.models import compile_document, decompile_rules, load_directory
from salesauthz.models.loader import bundled_model_text
from tests.conftest import POLICIES, examples
from tests.strategies import Organisation, organisations


def test_sample_round_trip() -> None:
    policy = load_directory(POLICIES)
    documents = decompile_rules(policy.rules)
    again = [r for d in documents for r in compile_document(d)]
    assert sorted(again) == sorted(policy.rules)
    assert decompile_rules(again) == documents


@settings(max_examples=examples(200))
@given(organisations())
def test_generated_round_trip(org: Organisation) -> None:
    documents = decompile_rules(org.rules)
    rules = [r for d in documents for r in compile_document(d)]
    assert sorted(rules) == sorted(org.rules)
    assert decompile_rules(rules) == documents


def test_bundled_model_matches_policies_copy() -> None:
    assert (POLICIES / "model.conf").read_text(encoding="utf-8") == bundled_model_text()


def test_from_rules_rejects_malformed_rules() -> None:
    with pytest.raises(PolicyError, match="takes 6 values"):
        Authorizer.from_rules([("p", "a", "acme", "customer", "read")])
    with pytest.raises(PolicyError, match="unknown rule type"):
        Authorizer.from_rules([("x", "a")])
    with pytest.raises(PolicyError, match="unknown scope"):
        Authorizer.from_rules([("p", "a", "acme", "customer", "read", "everyone", "")])
    with pytest.raises(PolicyError, match="invalid expiry"):
        Authorizer.from_rules([("p", "a", "acme", "customer", "read", "own", "soon")])
    with pytest.raises(PolicyError, match="status"):
        Authorizer.from_rules([("p3", "a", "acme", "asleep")])
    with pytest.raises(PolicyError, match="must not be empty"):
        Authorizer.from_rules([("p3", "", "acme", "active")])
    with pytest.raises(PolicyError, match="NUL"):
        Authorizer.from_rules([("p3", "a\x00", "acme", "active")])


def test_from_rules_rejects_dangling_references() -> None:
    with pytest.raises(PolicyError, match="neither a registered account"):
        Authorizer.from_rules([("g3", "a", "east", "acme")])
    with pytest.raises(PolicyError, match="unknown role 'boss'"):
        Authorizer.from_rules([("p3", "a", "acme", "active"), ("g", "a", "boss", "acme")])


def test_apply_changes_rejects_malformed_rules_and_changes_nothing(fresh_sample: Authorizer) -> None:
    before = fresh_sample.rules()
    with pytest.raises(PolicyError):
        fresh_sample.apply_changes([("p3", "x", "acme", "active"), ("p", "bad")])
    assert fresh_sample.rules() == before


def test_model_conf_that_differs_is_reported(tmp_path: Path) -> None:
    (tmp_path / "model.conf").write_text(bundled_model_text().replace("p.act == r.act", "p.act == r.typ"),
                                         encoding="utf-8")
    (tmp_path / "a.yaml").write_text("domain: a\n", encoding="utf-8")
    with pytest.raises(PolicyError, match="differs from salesauthz's model"):
        load_directory(tmp_path)
