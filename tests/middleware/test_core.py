"""The framework-neutral Guard and RequestAuthz: binding, 401/403/404 and problem bodies."""

from __future__ import annotations

import re

import pytest

from salesauthz import Authorizer, Record
from salesauthz.errors import ForbiddenError, NotAuthenticatedError, NotFoundError
from salesauthz.middleware import (
    Guard,
    Identity,
    RequestInfo,
    StaticTokens,
    domain_from_host,
    problem_for,
)


def request(host: str = "acme.crm.example", **headers: str) -> RequestInfo:
    return RequestInfo("GET", "/customers/3", host, headers)


def guard(sample: Authorizer, **options: object) -> Guard:
    return Guard(sample, identity=StaticTokens({}), **options)  # type: ignore[arg-type]


def test_no_identity_is_401(sample: Authorizer) -> None:
    with pytest.raises(NotAuthenticatedError):
        guard(sample).bind(request(), None)


def test_domain_comes_from_the_resolver_or_the_identity(sample: Authorizer) -> None:
    by_host = guard(sample, domain=domain_from_host(suffix="crm.example"))
    assert by_host.bind(request(), Identity("alice")).domain == "acme"
    assert by_host.bind(request(), Identity("alice", "acme")).domain == "acme"
    assert guard(sample).bind(request(), Identity("alice", "acme")).domain == "acme"


def test_a_token_of_one_tenant_never_acts_in_another(sample: Authorizer) -> None:
    by_host = guard(sample, domain=domain_from_host(suffix="crm.example"))
    with pytest.raises(ForbiddenError, match="may not act in the requested domain"):
        by_host.bind(request("globex.crm.example"), Identity("alice", "acme"))


def test_no_domain_is_403(sample: Authorizer) -> None:
    with pytest.raises(ForbiddenError, match="no domain"):
        guard(sample).bind(request(), Identity("alice"))


def test_request_ids_are_accepted_only_when_well_formed(sample: Authorizer) -> None:
    g = guard(sample)
    assert g.bind(request(**{"x-request-id": "abc-123"}), Identity("alice", "acme")).request_id == "abc-123"
    generated = g.bind(request(**{"x-request-id": "bad id\n"}), Identity("alice", "acme")).request_id
    assert generated != "bad id\n"
    assert re.fullmatch(r"[0-9a-f]{12}-[0-9a-f]+", generated)
    # A trailing newline would let a client forge log lines: refused too.
    assert g.bind(request(**{"x-request-id": "abc\n"}), Identity("alice", "acme")).request_id != "abc\n"
    ignored = guard(sample, request_id_header=None).request_id({"x-request-id": "abc"})
    assert ignored != "abc"
    assert ignored != generated  # unique within the process


def test_authorize_forbids_hides_or_returns(sample: Authorizer) -> None:
    context = guard(sample).bind(request(), Identity("rep_e1a", "acme"))
    mine = Record("customer", owner="rep_e1a", id="1")
    theirs = Record("customer", owner="rep_e1b", id="3")
    assert context.authorize("read", mine) is mine
    with pytest.raises(ForbiddenError, match="you may not read this customer") as caught:
        context.authorize("read", theirs)
    assert (caught.value.account, caught.value.action, caught.value.domain) == ("rep_e1a", "read", "acme")
    with pytest.raises(NotFoundError):
        context.authorize("read", theirs, hide=True)
    with pytest.raises(NotFoundError):
        context.authorize("read", None)
    hiding = guard(sample, hide_denied=True).bind(request(), Identity("rep_e1a", "acme"))
    with pytest.raises(NotFoundError):
        hiding.authorize("read", theirs)
    with pytest.raises(ForbiddenError):
        hiding.authorize("read", theirs, hide=False)


def test_route_level_and_list_checks(sample: Authorizer) -> None:
    context = guard(sample).bind(request(), Identity("rep_e1a", "acme"))
    assert context.can("customer", "read")
    assert not context.can("customer", "delete")
    context.require("customer", "read")
    with pytest.raises(ForbiddenError, match="you may not delete customer records"):
        context.require("customer", "delete")
    assert context.scope_filter("read", "customer").owners == {"rep_e1a"}
    assert "rep_e1a" in repr(context)


def test_problem_bodies_hide_internals_unless_debug(sample: Authorizer) -> None:
    theirs = Record("customer", owner="rep_e1b", id="3")
    quiet = guard(sample).bind(request(), Identity("rep_e1a", "acme"))
    with pytest.raises(ForbiddenError) as caught:
        quiet.authorize("read", theirs)
    body = problem_for(caught.value, instance="/customers/3").body
    assert body == {"type": "about:blank", "title": "Forbidden", "status": 403,
                    "detail": "you may not read this customer", "instance": "/customers/3"}
    loud = guard(sample, debug=True).bind(request(), Identity("rep_e1a", "acme"))
    with pytest.raises(ForbiddenError) as caught:
        loud.authorize("read", theirs)
    problem = loud.guard.problem(caught.value)
    assert "customer:read@own" in problem.body["reason"]
    assert problem.body["rules"] == ["p, junior_rep, acme, customer, read, own"]
    with pytest.raises(ForbiddenError) as caught:
        loud.require("customer", "delete")
    assert "no role or grant" in loud.guard.problem(caught.value).body["reason"]


def test_401_carries_www_authenticate() -> None:
    missing = problem_for(NotAuthenticatedError("authentication required"), realm="crm")
    assert missing.status == 401
    assert missing.headers == (("WWW-Authenticate", 'Bearer realm="crm"'),)
    assert missing.content_type == "application/problem+json"
    bad = problem_for(NotAuthenticatedError("bearer token has expired"))
    assert bad.headers == (("WWW-Authenticate", 'Bearer realm="salesauthz", error="invalid_token"'),)
    assert problem_for(NotFoundError("")).body["detail"] == "Not Found"
