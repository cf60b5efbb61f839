"""Differential tests: the compiled decision path equals Casbin's own enforcer."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from salesauthz import Authorizer
from salesauthz.reference import reference_enforcer, request

from .conftest import examples
from .strategies import FIXED_NOW, Organisation, organisations, requests


@settings(max_examples=examples(300))
@given(data=st.data(), org=organisations(record_model=True))
def test_check_equals_casbin_reference(data: st.DataObject, org: Organisation) -> None:
    authz = Authorizer.from_rules(org.rules, clock=lambda: FIXED_NOW)
    enforcer = reference_enforcer(org.rules, clock=lambda: FIXED_NOW)
    batch = data.draw(st.lists(requests(org), min_size=5, max_size=25))
    for account, action, record, domain in batch:
        expected = bool(enforcer.enforce(*request(account, domain, action, record)))
        got = authz.check(account, action, record, domain=domain)
        assert got == expected, (account, action, record, domain)
        # explain() tells the same decision; check_many and scope_filter agree too.
        assert authz.explain(account, action, record, domain=domain).allowed == expected
        assert authz.check_many([(account, action, record)], domain=domain) == [expected]
        if record.department is not None:
            flt = authz.scope_filter(account, action, record.type, domain=domain)
            assert flt.matches(record.owner, record.department, record.shares) == expected


@settings(max_examples=examples(100))
@given(data=st.data(), org=organisations(record_model=True))
def test_cached_equals_uncached(data: st.DataObject, org: Organisation) -> None:
    cached = Authorizer.from_rules(org.rules, clock=lambda: FIXED_NOW)
    tiny = Authorizer.from_rules(org.rules, clock=lambda: FIXED_NOW, cache_size=1)
    for account, action, record, domain in data.draw(st.lists(requests(org), max_size=30)):
        first = cached.check(account, action, record, domain=domain)
        assert cached.check(account, action, record, domain=domain) == first  # now a cache hit
        assert tiny.check(account, action, record, domain=domain) == first  # evicts constantly
