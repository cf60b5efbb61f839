"""Conditions and request context: the engine equals the Casbin reference, point checks,
``check_many``, ``explain`` and filters agree, and cached maps equal uncached ones."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from salesauthz import Authorizer
from salesauthz.reference import reference_enforcer, request
from tests.conftest import examples
from tests.strategies import FIXED_NOW, Organisation, contexts, organisations, requests


@settings(max_examples=examples(150))
@given(data=st.data(), org=organisations(record_model=True, conditions=True))
def test_conditions_equal_casbin_reference(data: st.DataObject, org: Organisation) -> None:
    authz = Authorizer.from_rules(org.rules, clock=lambda: FIXED_NOW)
    enforcer = reference_enforcer(org.rules, clock=lambda: FIXED_NOW)
    batch = data.draw(st.lists(st.tuples(requests(org, conditions=True), contexts()),
                               min_size=5, max_size=25))
    for (account, action, record, domain), context in batch:
        expected = bool(enforcer.enforce(*request(account, domain, action, record, context)))
        got = authz.check(account, action, record, domain=domain, context=context)
        assert got == expected, (account, action, record, domain, context)
        decision = authz.explain(account, action, record, domain=domain, context=context)
        assert decision.allowed == expected, decision
        assert authz.check_many([(account, action, record)], domain=domain,
                                context=context) == [expected]
        if record.department is not None:
            flt = authz.scope_filter(account, action, record.type, domain=domain, context=context)
            assert flt.matches(record.owner, record.department, record.shares,
                               record.attributes) == expected


@settings(max_examples=examples(50))
@given(data=st.data(), org=organisations(record_model=True, conditions=True))
def test_conditions_cached_equal_uncached(data: st.DataObject, org: Organisation) -> None:
    cached = Authorizer.from_rules(org.rules, clock=lambda: FIXED_NOW)
    tiny = Authorizer.from_rules(org.rules, clock=lambda: FIXED_NOW, cache_size=1)
    batch = data.draw(st.lists(st.tuples(requests(org, conditions=True), contexts()), max_size=30))
    for (account, action, record, domain), context in batch:
        first = cached.check(account, action, record, domain=domain, context=context)
        assert cached.check(account, action, record, domain=domain, context=context) == first
        assert tiny.check(account, action, record, domain=domain, context=context) == first
