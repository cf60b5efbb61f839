"""The invariants stored rules must keep (``stored_rule_issues``): its fast screen for the common
rule shapes accepts exactly what ``check_rule`` accepts, and doubled single-valued facts are
found and named."""

from __future__ import annotations

from typing import cast

from hypothesis import given, settings
from hypothesis import strategies as st

from salesauthz import _rules as R
from salesauthz._rules import Rule
from salesauthz.models.validate import stored_rule_issues
from tests.conftest import examples

# Values that exercise every test of check_rule: empty, NUL, a lone surrogate, non-ASCII, None.
value = st.sampled_from(["a", "acme", "", "x\x00y", "\ud800", "华东", "active", "frozen", "bogus",
                         "all", "own", "team", "custom:east", "2030-01-01T00:00:00Z", "not-a-date",
                         "visible", None])
rule = st.builds(lambda ptype, values, width: (ptype, *values[:width]),
                 st.sampled_from(sorted(R.ARITY)), st.lists(value, min_size=7, max_size=7),
                 st.integers(min_value=0, max_value=7))


@settings(max_examples=examples(300))
@given(st.lists(rule, max_size=6))
def test_malformed_exactly_when_check_rule_says_so(stored: list[tuple[str | None, ...]]) -> None:
    rules = cast(list[Rule], stored)  # as a store returns them: None for a NULL
    issues = stored_rule_issues(rules)
    malformed = [i for i in issues if i.code == "SA100"]
    expected = [r for r in rules if R.check_rule(r) is not None]
    assert len(malformed) == len(expected)
    for issue, bad in zip(malformed, expected, strict=True):
        assert issue.message.endswith(repr(bad))


@given(st.permutations([("p3", "u", "acme", "active"), ("p3", "u", "acme", "frozen"),
                        ("p3", "u", "globex", "active"), ("p3", "v", "acme", "active"),
                        ("p3", "u", "acme", "active")]))
def test_a_doubled_fact_is_named_once_with_its_rules(rules: list[tuple[str, ...]]) -> None:
    issues = stored_rule_issues(rules, "sqlite:///x.db")
    assert [(i.code, i.file) for i in issues] == [("SA115", "sqlite:///x.db")]
    assert issues[0].message == ("account 'u' of domain 'acme' has 2 status rules, and may have only "
                                 "one: ('p3', 'u', 'acme', 'active'), ('p3', 'u', 'acme', 'frozen')")


def test_a_p_row_without_its_expiry_gets_a_hint() -> None:
    row = cast(Rule, ("p", "rep", "acme", "customer", "read", "all", None))
    (issue,) = stored_rule_issues([row])
    assert issue.message.startswith("a stored value is missing (NULL)")
    assert issue.hint is not None
    assert "write the expiry as ''" in issue.hint
