"""Conditions on record attributes in the Django renderer (``scope_q(...,
attributes={attribute: field})``): on SQLite the ``Q`` lets through exactly the rows ``check``
allows, row by row, NULL and missing attributes included; without the mapping it is refused."""

from __future__ import annotations

from typing import Any

import pytest
from django.db.models import Q

from salesauthz import Authorizer
from salesauthz.errors import UsageError
from salesauthz.filters.django import scope_q
from salesauthz.models import DomainDocument, compile_document

from ._conditions import DOCUMENT, record_of, rows

# Field names differ from the attribute names on purpose: the mapping is what the renderer uses.
FIELDS = {"region": "region_code", "amount": "amount", "pool": "pool",
          "customer_id": "customer_id", "score": "score"}


@pytest.fixture(scope="module")
def customers(django_attributed_customers: Any) -> Any:
    model = django_attributed_customers
    model.objects.all().delete()
    model.objects.bulk_create(
        model(id=n, owner_name=owner, dept=department, region_code=region, amount=amount,
              pool=pool, customer_id=customer_id, score=score)
        for n, owner, department, region, amount, pool, customer_id, score in rows())
    return model


@pytest.fixture(scope="module")
def authz() -> Authorizer:
    return Authorizer.from_rules(compile_document(DomainDocument.model_validate(DOCUMENT)))


def _ids(customers: Any, q: Q) -> set[int]:
    return set(customers.objects.filter(q).values_list("id", flat=True))


@pytest.mark.parametrize("account", sorted(DOCUMENT["accounts"]))
@pytest.mark.parametrize("action", ["read", "export", "claim", "update"])
@pytest.mark.parametrize("with_authz", [True, False])
def test_the_q_equals_check(customers: Any, authz: Authorizer, account: str, action: str,
                            with_authz: bool) -> None:
    flt = authz.scope_filter(account, action, "customer", domain="acme")
    q = scope_q(flt, owner="owner_name", department="dept", authz=authz if with_authz else None,
                attributes=FIELDS)
    got = _ids(customers, q)
    expected = {row[0] for row in rows()
                if authz.check(account, action, record_of(row), domain="acme")}
    if with_authz:
        assert got == expected, (account, action, q, sorted(got ^ expected)[:5])
    else:  # rows without a department pass on their owner only: never more than check allows
        filed = {row[0] for row in rows() if row[2]}
        assert got <= expected, (account, action, sorted(got - expected)[:5])
        assert got & filed == expected & filed, (account, action)


def test_the_differential_is_not_vacuous(customers: Any, authz: Authorizer) -> None:
    for account, action in (("rep_e", "read"), ("rep_e", "export"), ("rep_e", "claim"),
                            ("rep_w", "update"), ("guest", "read"), ("guest", "export"),
                            ("rep_w", "claim")):
        flt = authz.scope_filter(account, action, "customer", domain="acme")
        got = _ids(customers, scope_q(flt, owner="owner_name", department="dept", authz=authz,
                                      attributes=FIELDS))
        assert 0 < len(got) < len(rows()), (account, action)


def test_conditions_become_field_lookups(authz: Authorizer) -> None:
    flt = authz.scope_filter("guest", "read", "customer", domain="acme")
    assert scope_q(flt, attributes=FIELDS) == Q(customer_id="c-17")
    flt = authz.scope_filter("rep_e", "export", "customer", domain="acme")
    assert scope_q(flt, owner="owner_name", department="dept", attributes=FIELDS) == (
        (Q(owner_name="rep_e") | Q(dept="east"))
        & Q(amount__gt=0) & Q(amount__lte=100000) & Q(region_code="East"))
    flt = authz.scope_filter("rep_w", "claim", "customer", domain="acme")  # no pool attribute
    assert scope_q(flt, owner="owner_name", department="dept", attributes=FIELDS) == (
        Q(amount__lt=0) & Q(pool__isnull=False))
    flt = authz.scope_filter("guest", "export", "customer", domain="acme")
    assert scope_q(flt, owner="owner_name", department="dept", attributes=FIELDS) == (
        Q(customer_id__isnull=True) & Q(region_code="West"))


def test_without_the_mapping_it_is_refused_naming_the_attribute(authz: Authorizer) -> None:
    flt = authz.scope_filter("rep_e", "read", "customer", domain="acme")
    with pytest.raises(UsageError, match=r"record attribute\(s\) 'region'.*scope_q"):
        scope_q(flt)
    with pytest.raises(UsageError, match=r"tests the record attribute 'region'.*attributes="):
        scope_q(flt, attributes={"amount": "amount"})
    with pytest.raises(ValueError, match="attribute 'region' field must be a non-empty"):
        scope_q(flt, attributes={"region": ""})


def test_booleans_are_refused_as_in_sql_where() -> None:
    document: dict[str, Any] = {
        **DOCUMENT, "resources": {"customer": {"actions": ["read"], "attributes": {"vip": "bool"}}},
        "roles": {"r": {"permissions": [{"scope": "all", "where": {"vip": True},
                                         "customer": ["read"]}]}},
        "accounts": {"a": {"roles": ["r"]}}}
    booleans = Authorizer.from_rules(compile_document(DomainDocument.model_validate(document)))
    flt = booleans.scope_filter("a", "read", "customer", domain="acme")
    with pytest.raises(UsageError, match="text and numbers only"):
        scope_q(flt, attributes={"vip": "vip"})


def test_the_middleware_helper_scoped_passes_the_mapping(customers: Any,
                                                         authz: Authorizer) -> None:
    from django.http import HttpRequest

    from salesauthz.middleware import Guard, Identity, StaticTokens
    from salesauthz.middleware._core import RequestAuthz
    from salesauthz.middleware.django import _ATTRIBUTE, scoped

    request = HttpRequest()
    guard = Guard(authz, identity=StaticTokens({}))
    setattr(request, _ATTRIBUTE, RequestAuthz(guard, Identity("rep_e", "acme"), "acme", "r-1"))
    expected = {row[0] for row in rows()
                if authz.check("rep_e", "read", record_of(row), domain="acme")}
    got = scoped(customers.objects.all(), request, "read", type="customer", owner="owner_name",
                 department="dept", attributes=FIELDS)
    assert set(got.values_list("id", flat=True)) == expected
    with pytest.raises(UsageError, match=r"record attribute\(s\) 'region'"):
        scoped(customers.objects.all(), request, "read", type="customer", owner="owner_name",
               department="dept")
