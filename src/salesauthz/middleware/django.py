"""Django: middleware, a ``@require(...)`` view decorator, a permission backend so that
``user.has_perm("customer:update", obj)`` asks salesauthz, and a QuerySet helper for list views.

Settings:

``SALESAUTHZ_GUARD``
    dotted path to a :class:`~salesauthz.middleware.Guard` (or a zero-argument callable that
    returns one). :func:`configure` sets it from code instead.
``SALESAUTHZ_RULES``
    optional route-level rules by URL pattern: ``{"GET /customers/<int:pk>": ("customer", "read"),
    "/health": None}`` (the pattern as written in ``urls.py``, with a leading ``/``).
``SALESAUTHZ_UNMATCHED``
    ``"deny"`` or ``"pass"`` for views neither in the rules nor decorated with :func:`require`
    (default: ``"deny"`` when ``SALESAUTHZ_RULES`` is set, else ``"pass"``).
``SALESAUTHZ_DEFAULT_DOMAIN``
    the domain ``has_perm`` uses when the user object names none.

```python
MIDDLEWARE = [..., "django.contrib.auth.middleware.AuthenticationMiddleware",
              "salesauthz.middleware.django.SalesAuthzMiddleware"]
AUTHENTICATION_BACKENDS = ["django.contrib.auth.backends.ModelBackend",
                           "salesauthz.middleware.django.SalesAuthzBackend"]
```
"""

from __future__ import annotations

import functools
import json
import uuid
from collections.abc import Callable, Mapping
from typing import Any, TypeVar, cast

from django.conf import settings
from django.db.models import Model, QuerySet
from django.http import HttpRequest, HttpResponse
from django.utils.module_loading import import_string

from salesauthz.errors import AuthorizationError, ForbiddenError, NotFoundError
from salesauthz.filters.django import scope_q
from salesauthz.values import Record

from ._core import MARKER, Guard, RequestAuthz
from ._routes import RouteTable
from .identity import Identity, RequestInfo
from .wsgi import is_preflight

__all__ = [
    "SalesAuthzBackend",
    "SalesAuthzMiddleware",
    "authorize",
    "configure",
    "context_of",
    "django_user",
    "problem_response",
    "require",
    "scoped",
]

F = TypeVar("F", bound=Callable[..., Any])
M = TypeVar("M", bound=Model)
T = TypeVar("T")
_ATTRIBUTE = "_salesauthz_context"
_configured: Guard | None = None


def configure(guard: Guard | None) -> None:
    """Use ``guard`` (instead of the ``SALESAUTHZ_GUARD`` setting); ``None`` forgets it."""
    global _configured
    _configured = guard


def get_guard() -> Guard:
    if _configured is not None:
        return _configured
    path = getattr(settings, "SALESAUTHZ_GUARD", None)
    if not path:
        raise RuntimeError("salesauthz is not configured: set SALESAUTHZ_GUARD to the dotted path of a "
                           "Guard, or call salesauthz.middleware.django.configure(guard)")
    found = import_string(path)
    guard = found() if not isinstance(found, Guard) and callable(found) else found
    if not isinstance(guard, Guard):
        raise TypeError(f"SALESAUTHZ_GUARD {path!r} is not a Guard nor returns one")
    return guard


def identity_of_user(user: Any) -> Identity | None:
    """The identity of a Django user object: ``get_username()``, and ``salesauthz_domain`` or
    ``domain`` when the user (model) has one. Anonymous and inactive users have none."""
    if user is None or not getattr(user, "is_authenticated", False) or not getattr(user, "is_active", True):
        return None
    get_username = getattr(user, "get_username", None)
    account = get_username() if callable(get_username) else getattr(user, "username", None)
    if not account:
        return None
    domain = getattr(user, "salesauthz_domain", None) or getattr(user, "domain", None)
    return Identity(str(account), domain if isinstance(domain, str) else None)


def django_user(info: RequestInfo) -> Identity | None:
    """Identity resolver: ``request.user`` as set by Django's ``AuthenticationMiddleware``."""
    return identity_of_user(getattr(info.native, "user", None))


def _route(request: HttpRequest) -> str | None:
    match = request.resolver_match
    return "/" + match.route if match is not None else None


def context_of(request: HttpRequest) -> RequestAuthz:
    """The request's :class:`RequestAuthz` (raises 401/403 errors)."""
    found = getattr(request, _ATTRIBUTE, None)
    if isinstance(found, RequestAuthz):
        return found
    match = request.resolver_match
    info = RequestInfo(method=request.method or "GET", path=request.path,
                       host=str(request.META.get("HTTP_HOST", "")),
                       headers={k.lower(): v for k, v in request.headers.items()},
                       path_params=dict(match.kwargs) if match is not None else {},
                       route=_route(request), native=request,
                       client=str(request.META["REMOTE_ADDR"]) if request.META.get("REMOTE_ADDR")
                       else None)
    context = get_guard().resolve(info)
    setattr(request, _ATTRIBUTE, context)
    return context


def problem_response(request: HttpRequest, error: AuthorizationError) -> HttpResponse:
    problem = get_guard().problem(error, instance=request.path)
    response = HttpResponse(json.dumps(problem.body), status=problem.status,
                            content_type=problem.content_type)
    for name, value in problem.headers:
        response[name] = value
    return response


def _preflight(request: HttpRequest) -> bool:
    return is_preflight(request.method or "", {k.lower(): v for k, v in request.headers.items()})


def require(type: str, action: str) -> Callable[[F], F]:
    """View decorator: the account must be able to ``action`` some ``type`` record (403 if not,
    401 without identity). CORS preflights pass untouched."""

    def decorate(view: F) -> F:
        @functools.wraps(view)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
            if not _preflight(request):
                try:
                    context_of(request).require(type, action)
                except AuthorizationError as error:
                    return problem_response(request, error)
            return view(request, *args, **kwargs)

        setattr(wrapper, MARKER, True)
        return cast(F, wrapper)

    return decorate


def authorize(request: HttpRequest, action: str, found: T | None,
              to_record: Callable[[T], Record] | None = None, *, hide: bool | None = None) -> T:
    """Return ``found`` if the account may ``action`` it; ``None`` is 404; denied is 403 (404 when
    hiding is on). ``to_record`` makes the :class:`Record` (default: ``found.salesauthz_record()``,
    or ``found`` itself when it is a Record)."""
    if found is None:
        raise NotFoundError("no such record")
    context_of(request).authorize(action, _record_of(found, to_record), hide=hide)
    return found


def _record_of(found: Any, to_record: Callable[[Any], Record] | None = None) -> Record:
    if to_record is not None:
        return to_record(found)
    if isinstance(found, Record):
        return found
    make = getattr(found, "salesauthz_record", None)
    if callable(make):
        record = make()
        if isinstance(record, Record):
            return record
    raise TypeError(f"cannot make a salesauthz Record of {type(found).__name__}: give to_record, or "
                    "define salesauthz_record() on the model")


def scoped(queryset: QuerySet[M], request: HttpRequest, action: str = "read", *, type: str | None = None,
           owner: str = "owner", department: str = "department", domain: str | None = None,
           attributes: Mapping[str, str] | None = None) -> QuerySet[M]:
    """``queryset`` narrowed to the rows the request's account may ``action`` (a list view).

    ``type`` defaults to the model's name (``customer`` for ``Customer``); ``owner``,
    ``department`` and ``domain`` name the fields holding them (``domain`` adds the tenant test);
    ``attributes`` maps record attributes to their fields, for permissions with conditions
    (``where:``; see :func:`salesauthz.filters.django.scope_q`).
    """
    record_type = type or queryset.model._meta.model_name or ""
    flt = context_of(request).scope_filter(action, record_type)
    return queryset.filter(scope_q(flt, owner=owner, department=department, domain=domain,
                                   attributes=attributes))


class SalesAuthzMiddleware:
    """Binds identity and domain, enforces ``SALESAUTHZ_RULES`` by URL pattern, and answers the
    401/403/404 errors views raise with RFC 9457 problem JSON."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        rules = getattr(settings, "SALESAUTHZ_RULES", None)
        self.table = RouteTable(rules or {})
        self.unmatched = getattr(settings, "SALESAUTHZ_UNMATCHED", "deny" if rules else "pass")
        if self.unmatched not in ("deny", "pass"):
            raise ValueError(f"SALESAUTHZ_UNMATCHED must be 'deny' or 'pass', not {self.unmatched!r}")

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_view(self, request: HttpRequest, view: Callable[..., Any], args: Any,
                     kwargs: Any) -> HttpResponse | None:
        if _preflight(request):
            return None
        route = _route(request) or request.path
        declared = self.table.for_template(request.method or "GET", route)
        if declared is not None and declared.requirement is None:
            return None  # a public route
        if declared is None and (getattr(view, MARKER, False) or self.unmatched == "pass"):
            return None  # the view enforces (decorated), or unlisted views are let through
        try:
            context = context_of(request)
            if declared is None or declared.requirement is None:
                raise ForbiddenError("this route has no authorization rule", account=context.account,
                                     domain=context.domain)
            context.require(*declared.requirement)
        except AuthorizationError as error:
            return problem_response(request, error)
        return None

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if isinstance(exception, AuthorizationError):
            return problem_response(request, exception)
        return None


class SalesAuthzBackend:
    """An authentication backend that authenticates nobody but answers ``has_perm``.

    ``user.has_perm("customer:update")`` asks whether the user may update *some* customer;
    ``user.has_perm("customer:update", obj)`` asks about ``obj`` (a :class:`Record`, or a model
    with ``salesauthz_record()``). Permissions without a ``:`` are left to other backends.
    Decisions are written to the decision log like any other.
    """

    def authenticate(self, request: HttpRequest | None, **credentials: Any) -> None:
        return None

    def get_user(self, user_id: Any) -> None:
        return None

    def has_perm(self, user_obj: Any, perm: str, obj: Any = None) -> bool:
        type_, sep, action = perm.partition(":")
        if not sep or not type_ or not action:
            return False
        identity = identity_of_user(user_obj)
        if identity is None:
            return False
        domain = identity.domain or getattr(settings, "SALESAUTHZ_DEFAULT_DOMAIN", None)
        if not domain:
            return False
        context = RequestAuthz(get_guard(), identity, domain, uuid.uuid4().hex, None, "has_perm")
        if obj is None:
            return context.can(type_, action)
        record = _record_of(obj)
        if record.type != type_:
            return False
        return context.allows(action, record)
