"""The Django ``Q`` renderer, on a real Django project (SQLite): differential and unit tests."""

from __future__ import annotations

from typing import Any

import pytest
from django.db.models import Q

from salesauthz import Authorizer
from salesauthz.filters.django import scope_q


def test_sample_manager_sees_the_east_tree(sample: Authorizer, django_customers: Any) -> None:
    django_customers.objects.all().delete()
    django_customers.objects.bulk_create([
        django_customers(id=1, tenant="acme", owner="rep_e1a", department="east-1"),
        django_customers(id=2, tenant="acme", owner="rep_w1", department="west-1"),
        django_customers(id=3, tenant="acme", owner="rep_e2", department=None),  # owner's: east-2
        django_customers(id=4, tenant="globex", owner="rep_e1a", department="east-1"),
        django_customers(id=5, tenant="acme", owner="mgr_east", department="west-1"),
    ])
    flt = sample.scope_filter("mgr_east", "read", "customer", domain="acme")
    visible = django_customers.objects.filter(scope_q(flt, domain="tenant", authz=sample))
    assert sorted(visible.values_list("id", flat=True)) == [1, 3, 5]
    # Without the authorizer a row without a department passes on its owner only.
    loose = django_customers.objects.filter(scope_q(flt, domain="tenant"))
    assert sorted(loose.values_list("id", flat=True)) == [1, 5]


def test_nothing_and_everything(sample: Authorizer) -> None:
    nothing = sample.scope_filter("gone_1", "read", "customer", domain="acme")
    assert scope_q(nothing) == Q(pk__in=[])
    everything = sample.scope_filter("alice", "read", "customer", domain="acme")
    assert scope_q(everything) == Q()
    assert scope_q(everything, domain="tenant") == Q(tenant="acme")


def test_sub_account_pairs_render_as_and(sample: Authorizer) -> None:
    flt = sample.scope_filter("intern_e1", "read", "customer", domain="acme")
    q = scope_q(flt, owner="owner_name", department="dept")
    assert q == Q(dept="east-1") | (Q(owner_name="intern_e1") & Q(dept__in=["east", "east-2"]))


@pytest.mark.parametrize("bad", ["", None, 3])
def test_field_names_are_checked(sample: Authorizer, bad: Any) -> None:
    flt = sample.scope_filter("rep_e1a", "read", "customer", domain="acme")
    with pytest.raises(ValueError, match="owner field must be a non-empty field name"):
        scope_q(flt, owner=bad)


def test_empty_department_names_never_match_directly() -> None:
    from salesauthz.scopes import Coverage
    from salesauthz.values import ScopeFilter

    only_empty = ScopeFilter("someone", "read", "customer", "acme", Coverage(departments=frozenset({""})))
    assert scope_q(only_empty) == Q(pk__in=[])
    assert scope_q(only_empty, domain="tenant") == Q(tenant="acme") & Q(pk__in=[])
