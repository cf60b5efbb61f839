"""Decisions as time moves: grants (an account's own and its parents') expire between checks, and
the cached maps must stop allowing at that instant — never later.

One authorizer is asked the same exhaustive set of questions at successive moments, so every
answer after the first comes from a map cached at an earlier moment; each is compared with
Casbin's reference enforcer (on the same clock) and with a fresh authorizer.
"""

from __future__ import annotations

from hypothesis import given, settings

from salesauthz import Authorizer, Record
from salesauthz.reference import reference_enforcer, request
from tests.conftest import examples
from tests.strategies import FIXED_NOW, Organisation, organisations

# Expiries between the moments the clock visits (the first moment is before all of them).
EXPIRIES = (FIXED_NOW + 10.0, FIXED_NOW + 20.0, FIXED_NOW + 30.0)
MOMENTS = (FIXED_NOW, FIXED_NOW + 15.0, FIXED_NOW + 25.0, FIXED_NOW + 35.0)


def questions(org: Organisation, domain: str) -> list[tuple[str, str, Record]]:
    """Every account × every key it holds × a record of its own, of each other account, and in
    each department (the records where expiry and the parent ceiling show)."""
    found = []
    accounts = org.accounts(domain)
    for account in accounts:
        for typ, action in org.held_keys(domain, account):
            records = [Record(typ, owner=owner) for owner in accounts]
            records += [Record(typ, department=d) for d in org.departments(domain)]
            found += [(account, action, record) for record in records]
    return found


@settings(max_examples=examples(60))
@given(org=organisations(expiries=EXPIRIES, record_model=True))
def test_cached_maps_expire_exactly_when_a_grant_or_a_parents_grant_does(org: Organisation) -> None:
    clock = [MOMENTS[0]]
    authz = Authorizer.from_rules(org.rules, clock=lambda: clock[0])
    enforcer = reference_enforcer(org.rules, clock=lambda: clock[0])
    for moment in MOMENTS:
        clock[0] = moment
        fresh = Authorizer.from_rules(org.rules, clock=lambda: clock[0])
        for domain in org.domains:
            for account, action, record in questions(org, domain):
                expected = bool(enforcer.enforce(*request(account, domain, action, record)))
                got = authz.check(account, action, record, domain=domain)
                assert got == expected, (moment - FIXED_NOW, domain, account, action, record)
                assert fresh.check(account, action, record, domain=domain) == expected
