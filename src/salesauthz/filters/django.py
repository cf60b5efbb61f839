"""A scope filter as a Django ``Q`` object, for ``Model.objects.filter(...)``.

    >>> Customer.objects.filter(scope_q(flt, owner="owner", department="department"))

Field names are lookups as anywhere in Django (``"owner__username"`` follows a relation);
values are bound by Django, never spliced into SQL.

A filter with the ``shared`` scope also needs the CRM's share model (:class:`ShareModel`); each
share condition becomes an ``Exists`` subquery correlated to the record (``OuterRef("pk")``):

    >>> Customer.objects.filter(scope_q(flt, shares=ShareModel(CustomerShare, record="customer")))
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.db.models import Exists, OuterRef, Q
from django.db.models.expressions import RawSQL

from salesauthz.errors import UsageError

from ._terms import GuardTerms, Terms, shares_required, terms_of
from .closure import CLOSURE_ALIAS, Closure
from .conditions import ConditionTerms, condition_tests

if TYPE_CHECKING:
    from salesauthz.authorizer import Authorizer
    from salesauthz.values import ScopeFilter

__all__ = ["ShareModel", "scope_q"]


@dataclass(frozen=True, slots=True)
class ShareModel:
    """The CRM's share model (one row per share) and its fields: ``record`` names the shared
    record (a foreign key to the record model, or a plain field holding its id), ``account`` or
    ``department`` whom it is shared with (the other one NULL), ``level`` the share level. All
    are lookups on ``model``."""

    model: Any  # a django.db.models.Model subclass
    record: str = "record"
    account: str = "account"
    department: str = "department"
    level: str = "level"


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
    shares: ShareModel | None = None,
    record_id: str = "pk",
    attributes: Mapping[str, str] | None = None,
    closure: Closure | None = None,
) -> Q:
    """A ``Q`` true exactly for the rows ``flt`` lets through.

    Args:
        flt: from :meth:`Authorizer.scope_filter <salesauthz.Authorizer.scope_filter>`.
        owner, department: the fields (lookups) holding owner and department names.
        domain: the tenant field; adds ``domain == flt.domain``.
        authz: the authorizer that made ``flt``, when the department field may be NULL or
            empty (see :func:`salesauthz.filters.sql.sql_where`).
        shares: the share model, needed when the filter lets records through by their shares
            (``flt.needs_shares``: the ``shared`` scope); each share condition becomes
            ``Exists(model.objects.filter(record=OuterRef(record_id), level__in=...,
            account__in=... | department__in=...))``. Ignored by filters that do not need it.
        record_id: the record model's field the share's ``record`` refers to (default ``pk``).
        attributes: record attribute → the field (lookup) holding it (``{"region": "region"}``),
            to render the filter's conditions on record attributes (``where:``) as field
            lookups (``region__in``, ``amount__lte``, ``owner__isnull``), exactly as
            :func:`~salesauthz.filters.sql.sql_where` does (see
            :mod:`salesauthz.filters.conditions`). Without it a filter with such a condition is
            refused.
        closure: ``ClosureTable(...).using(authz)``: department sets holding whole subtrees of
            at least ``min_subtree`` departments become ``department__in=<SELECT descendant
            FROM the closure table WHERE ancestor IN (tops)>`` (:mod:`salesauthz.filters.
            closure`; sync it after department changes: until then those subtrees show
            nothing).

    Raises:
        UsageError: the filter needs the share model and ``shares`` was not given; or it has a
            condition on a record attribute ``attributes`` does not map (or one SQL cannot
            state as ``check`` decides).
    """
    fields: list[tuple[str, object]] = [("owner", owner), ("department", department)]
    if domain is not None:
        fields.append(("domain", domain))
    fields.extend((f"attribute {attribute!r}", name)
                  for attribute, name in (attributes or {}).items())
    for role, name in fields:
        if not isinstance(name, str) or not name:
            raise ValueError(f"{role} field must be a non-empty field name, got {name!r}")
    terms = terms_of(flt, authz, conditions=attributes is not None)
    if terms.nothing:
        condition = _never()
    elif terms.everything:
        condition = Q()
    else:
        if terms.shared and shares is None:
            raise UsageError(shares_required(
                flt, "shares=ShareModel(<share model>, record=<its field naming the record>)"))
        departments = _Departments(closure, flt.domain)
        condition = _condition(terms, owner, department, shares, record_id, attributes or {},
                               departments)
    if domain is not None:
        return Q(**{domain: flt.domain}) & condition
    return condition


class _Departments:
    """Department sets as ``__in`` lists or, with a closure table, by their subtrees' tops."""

    def __init__(self, closure: Closure | None, domain: str) -> None:
        self.closure = closure
        self.domain = domain

    def __call__(self, field: str, values: tuple[str, ...]) -> Q:
        if self.closure is None:
            return _in(field, values)
        spec = self.closure.table
        tree = self.closure.tree(self.domain)
        tops, rest = tree.split(values, spec.min_subtree)
        if not tops:
            return _in(field, values)
        # Django's own placeholders are %s (it converts them per database): a % in a quoted
        # name is doubled.
        table, tenant, version, ancestor, descendant = (
            getattr(spec, role).replace("%", "%%")
            for role in ("name", "tenant", "version", "ancestor", "descendant"))
        marks = ", ".join(["%s"] * len(tops))
        lookup = RawSQL(
            f"SELECT {CLOSURE_ALIAS}.{descendant} FROM {table} {CLOSURE_ALIAS} WHERE "
            f"{CLOSURE_ALIAS}.{tenant} = %s AND {CLOSURE_ALIAS}.{version} = %s AND "
            f"{CLOSURE_ALIAS}.{ancestor} IN ({marks})", (self.domain, tree.version, *tops))
        found = Q(**{f"{field}__in": lookup})
        return found | _in(field, rest) if rest else found


def _condition(terms: Terms, owner: str, department: str, shares: ShareModel | None,
               record_id: str, attributes: Mapping[str, str], departments: _Departments) -> Q:
    """``terms`` (neither nothing nor everything) as one ``Q``."""
    if terms.factors:
        condition = Q()
        for factor in terms.factors:
            condition &= _condition(factor, owner, department, shares, record_id, attributes,
                                    departments)
        return condition
    alternatives = _alternatives(terms, owner, department, departments)
    for term in terms.guarded:
        term_q = Q()
        if not term.base.everything:
            term_q = _any(_alternatives(term.base, owner, department, departments))
        for guard in term.guards:
            if isinstance(guard, ConditionTerms):
                term_q &= _condition_q(guard, owner, attributes)
                continue
            assert shares is not None  # checked by the caller (terms.shared)
            term_q &= Q(_exists(guard, shares, record_id))
        alternatives.append(term_q)
    return _any(alternatives)


def _alternatives(terms: Terms, owner: str, department: str,
                  departments_in: _Departments) -> list[Q]:
    alternatives: list[Q] = []
    if terms.owners:
        alternatives.append(_in(owner, terms.owners))
    if terms.departments:
        alternatives.append(departments_in(department, terms.departments))
    for owners, departments in terms.pairs:
        alternatives.append(_in(owner, owners) & departments_in(department, departments))
    if terms.null_department_owners:
        alternatives.append(
            (Q(**{f"{department}__isnull": True}) | Q(**{department: ""}))
            & _in(owner, terms.null_department_owners)
        )
    return alternatives


def _any(alternatives: list[Q]) -> Q:
    if not alternatives:
        return _never()
    found = alternatives[0]
    for alternative in alternatives[1:]:
        found |= alternative
    return found


def _exists(guard: GuardTerms, shares: ShareModel, record_id: str) -> Exists:
    names: list[Q] = []
    if guard.accounts:
        names.append(_in(shares.account, guard.accounts))
    if guard.departments:
        names.append(_in(shares.department, guard.departments))
    rows = shares.model._default_manager.filter(
        Q(**{shares.record: OuterRef(record_id)}), _in(shares.level, guard.levels), _any(names))
    return Exists(rows)


_LOOKUPS = {"lt": "lt", "le": "lte", "gt": "gt", "ge": "gte"}


def _condition_q(terms: ConditionTerms, owner: str, attributes: Mapping[str, str]) -> Q:
    """One condition on record attributes: its tests (:func:`~salesauthz.filters.conditions.
    condition_tests`, the semantics shared with ``sql_where``) ANDed as field lookups. Django
    renders ``field__lt=v`` as ``field < v``: a NULL field fails every test but ``isnull``."""
    condition = Q()
    for test in condition_tests(terms, attributes, "attributes={%r: '<its field>', ...}"):
        field = owner if test.owner else attributes[test.attribute]
        if test.op == "never":
            condition &= _never()
        elif test.op == "is_null":
            condition &= (Q(**{f"{field}__isnull": True}) | Q(**{field: ""}) if test.owner
                          else Q(**{f"{field}__isnull": True}))
        elif test.op == "not_null":
            condition &= (Q(**{f"{field}__isnull": False}) & ~Q(**{field: ""}) if test.owner
                          else Q(**{f"{field}__isnull": False}))
        elif test.op == "in":
            condition &= Q(**{f"{field}__in": list(test.values)})
        else:
            lookup = field if test.op == "eq" else f"{field}__{_LOOKUPS[test.op]}"
            condition &= Q(**{lookup: test.values[0]})
    return condition
