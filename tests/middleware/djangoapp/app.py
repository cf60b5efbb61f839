"""Views, URLs, the login middleware and the guard of the Django test project."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import path

from salesauthz import Authorizer
from salesauthz.middleware import Guard, fixed_domain
from salesauthz.middleware.django import authorize, context_of, django_user, require, scoped
from tests.conftest import POLICIES

from .models import Customer

AUTHORIZER = Authorizer.from_directory(POLICIES)
GUARD = Guard(AUTHORIZER, identity=django_user, domain=fixed_domain("acme"))
SESSIONS = {"s-rep": "rep_e1a", "s-lead": "lead_e1", "s-admin": "alice", "s-gone": "gone_1"}


def make_guard() -> Guard:
    return GUARD


class AppUser:
    """What ``django.contrib.auth`` would put in ``request.user``, from a server-side session."""

    is_authenticated = True

    def __init__(self, username: str, *, is_active: bool = True) -> None:
        self.username = username
        self.is_active = is_active

    def get_username(self) -> str:
        return self.username


class Anonymous:
    is_authenticated = False


View = Callable[[HttpRequest], HttpResponse]


def login_middleware(get_response: View) -> View:
    def middleware(request: HttpRequest) -> HttpResponse:
        account = SESSIONS.get(request.COOKIES.get("session", ""))
        request.user = AppUser(account) if account else Anonymous()  # type: ignore[assignment]
        return get_response(request)

    return middleware


def customer_json(row: Customer) -> dict[str, Any]:
    return {"id": row.pk, "name": row.name, "owner": row.owner}


@require("customer", "read")
def list_customers(request: HttpRequest) -> JsonResponse:
    rows = scoped(Customer.objects.order_by("pk"), request, "read", domain="domain")
    return JsonResponse([r.pk for r in rows], safe=False)


@require("customer", "read")
def get_customer(request: HttpRequest, pk: int) -> JsonResponse:
    row = authorize(request, "read", Customer.objects.filter(pk=pk, domain="acme").first())
    return JsonResponse(customer_json(row) | {"route": context_of(request).route})


def delete_customer(request: HttpRequest, pk: int) -> JsonResponse:  # guarded by SALESAUTHZ_RULES
    return JsonResponse({"deleted": pk})


def health(request: HttpRequest) -> HttpResponse:
    return HttpResponse("ok")


def unguarded(request: HttpRequest) -> HttpResponse:
    return HttpResponse("unguarded")


@require("customer", "read")
def preflight_view(request: HttpRequest) -> HttpResponse:
    return HttpResponse("reached")


urlpatterns = [
    path("customers", list_customers),
    path("customers/<int:pk>", get_customer),
    path("customers/<int:pk>/delete", delete_customer),
    path("health", health),
    path("unguarded", unguarded),
    path("preflight", preflight_view),
]
