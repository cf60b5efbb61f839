"""The recipes of docs/conditions.md as a policy directory (examples/recipes): territories, the
public pool (公海), portal users and strong sessions check clean and pass their policy tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from salesauthz import Authorizer, Record
from salesauthz.checker.cli import main
from salesauthz.checker.lint import check_directory
from salesauthz.checker.testing import run_tests

RECIPES = Path(__file__).resolve().parents[1] / "examples" / "recipes"


def test_the_recipes_check_clean_and_pass_their_tests(capsys: pytest.CaptureFixture[str]) -> None:
    result = check_directory(RECIPES)
    assert result.findings == []
    assert result.suppressed == 1  # the administrator's SA214, silenced on its line
    report = run_tests(RECIPES)
    assert report.ok, [r.to_json() for r in report.failures]
    assert len(report.results) >= 19
    assert main(["test", str(RECIPES)]) == 0
    capsys.readouterr()


def test_pool_contact_fields_stay_hidden_until_claimed() -> None:
    authz = Authorizer.from_directory(RECIPES)
    pooled = Record("customer", attributes={"region": "West", "pool": "p-south"})
    assert authz.check("rep_s1", "read", pooled, domain="tianhe")
    assert authz.check("rep_s1", "claim", pooled, domain="tianhe")
    row = {"owner": None, "name": "Pearl River Trading", "phone": "+86 20 5555 0100",
           "email": "buyer@pearl.test", "region": "West", "pool": "p-south"}
    modes = authz.field_modes("rep_s1", "customer", row, domain="tianhe")
    assert (modes["phone"], modes["email"], modes["name"]) == ("hidden", "hidden", "visible")
    assert "phone" not in authz.redact("rep_s1", "customer", row, domain="tianhe")
    claimed = {**row, "owner": "rep_s1"}
    assert authz.field_modes("rep_s1", "customer", claimed, domain="tianhe")["phone"] == "visible"
    assert authz.check("rep_s1", "update", Record("customer", owner="rep_s1"), domain="tianhe")
    assert not authz.check("rep_s1", "update", pooled, domain="tianhe")
