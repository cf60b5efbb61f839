"""A scope filter as a Django ``Q`` object, for ``Model.objects.filter(...)``.

    >>> Customer.objects.filter(scope_q(flt, owner="owner", department="department"))

Field names are lookups as anywhere in Django (``"owner__username"`` follows a relation);
values are bound by Django, never spliced into SQL.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.db.models import Q

from ._terms import terms_of

if TYPE_CHECKING:
    from salesauthz.authorizer import Authorizer
    from salesauthz.values import ScopeFilter

__all__ = ["scope_q"]


def _in(field: str, values: tuple[str, ...]) -> Q:
    return Q(**{field: values[0]}) if len(values) == 1 else Q(**{f"{field}__in": list(values)})


def _never() -> Q:
    # An empty IN is Django's own "matches nothing" (it skips the query or renders a false clause).
    return Q(pk__in=[])


def scope_q(
    flt: ScopeFilter,
    *,
    owner: str = "owner",
    department: str = "department",
    domain: str | None = None,
    authz: Authorizer | None = None,
) -> Q:
    """A ``Q`` true exactly for the rows ``flt`` lets through.

    Args:
        flt: from :meth:`Authorizer.scope_filter <salesauthz.Authorizer.scope_filter>`.
        owner, department: the fields (lookups) holding owner and department names.
        domain: the tenant field; adds ``domain == flt.domain``.
        authz: the authorizer that made ``flt``, when the department field may be NULL or
            empty (see :func:`salesauthz.filters.sql.sql_where`).
    """
    fields: list[tuple[str, object]] = [("owner", owner), ("department", department)]
    if domain is not None:
        fields.append(("domain", domain))
    for role, name in fields:
        if not isinstance(name, str) or not name:
            raise ValueError(f"{role} field must be a non-empty field name, got {name!r}")
    terms = terms_of(flt, authz)
    if terms.nothing:
        condition = _never()
    elif terms.everything:
        condition = Q()
    else:
        condition = Q()
        alternatives: list[Q] = []
        if terms.owners:
            alternatives.append(_in(owner, terms.owners))
        if terms.departments:
            alternatives.append(_in(department, terms.departments))
        for owners, departments in terms.pairs:
            alternatives.append(_in(owner, owners) & _in(department, departments))
        if terms.null_department_owners:
            alternatives.append(
                (Q(**{f"{department}__isnull": True}) | Q(**{department: ""}))
                & _in(owner, terms.null_department_owners)
            )
        for alternative in alternatives:
            condition |= alternative
        if not alternatives:
            condition = _never()
    if domain is not None:
        return Q(**{domain: flt.domain}) & condition
    return condition
