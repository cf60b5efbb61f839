"""The framework-neutral half of every web adapter: a :class:`Guard` (configuration) and the
per-request :class:`RequestAuthz` that makes and logs decisions, plus RFC 9457 problem bodies."""

from __future__ import annotations

import inspect
import itertools
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from salesauthz.authorizer import Authorizer
from salesauthz.errors import AuthorizationError, ForbiddenError, NotAuthenticatedError, NotFoundError
from salesauthz.values import Record, ScopeFilter

from .decision_log import DecisionLog, now_ns
from .identity import DomainResolver, Identity, IdentityResolver, RequestInfo

__all__ = ["Guard", "Problem", "RequestAuthz", "problem_for"]

PROBLEM_JSON = "application/problem+json"
MARKER = "__salesauthz__"
"""Set on views and dependencies that enforce salesauthz themselves (the middleware trusts them)."""
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")

_NO_CREDENTIALS = "authentication required"
_ID_PREFIX = uuid.uuid4().hex[:12]
_ID_COUNTER = itertools.count(1)
_TITLES = {401: "Unauthorized", 403: "Forbidden", 404: "Not Found"}


def _rule_text(rule: tuple[str, ...]) -> str:
    """``p, senior_rep, acme, customer, update, team`` (a trailing empty ``expires`` dropped)."""
    values = list(rule)
    while values and values[-1] == "":
        values.pop()
    return ", ".join(values)


@dataclass(frozen=True, slots=True)
class Problem:
    """An error response: status, extra headers and an RFC 9457 ``application/problem+json`` body."""

    status: int
    body: dict[str, Any]
    headers: tuple[tuple[str, str], ...] = ()

    @property
    def content_type(self) -> str:
        return PROBLEM_JSON


def problem_for(error: AuthorizationError, *, realm: str = "salesauthz", instance: str | None = None,
                debug: bool = False) -> Problem:
    """The response for an authorization error: 401 (with ``WWW-Authenticate``), 403 or 404.

    The body never carries policy internals unless ``debug``: then the explanation's reason and
    the rules that decided are added as ``reason`` and ``rules`` extension members.
    """
    if isinstance(error, NotAuthenticatedError):
        status = 401
    elif isinstance(error, NotFoundError):
        status = 404
    else:
        status = 403
    body: dict[str, Any] = {"type": "about:blank", "title": _TITLES[status], "status": status,
                            "detail": str(error) or _TITLES[status]}
    if instance is not None:
        body["instance"] = instance
    if debug:
        reason = getattr(error, "reason", None)
        if reason:
            body["reason"] = reason
        rules = getattr(error, "rules", None)
        if rules:
            body["rules"] = [_rule_text(rule) for rule in rules]
    headers: tuple[tuple[str, str], ...] = ()
    if status == 401:
        # RFC 6750: a presented but unusable token is "invalid_token"; no token at all has no error code.
        error_code = ', error="invalid_token"' if str(error) not in ("", _NO_CREDENTIALS) else ""
        headers = (("WWW-Authenticate", f'Bearer realm="{realm}"{error_code}'),)
    return Problem(status, body, headers)


class _Denied(ForbiddenError):
    """A denial carrying its explanation, shown only when the guard is in debug mode."""

    reason: str | None = None
    rules: tuple[tuple[str, ...], ...] = ()


class Guard:
    """How a web application authorizes requests; one per application, shared by all requests.

    Args:
        authorizer: the decisions.
        identity: ``request -> Identity | None``; see :mod:`salesauthz.middleware.identity`.
        domain: ``(request, identity) -> domain``; ``None`` uses the identity's own domain. When
            both name a domain and they differ, the request is denied (a token of one tenant
            never acts in another).
        hide_denied: answer 404 instead of 403 when a *record* is denied, so its existence does
            not leak (route-level denials stay 403).
        debug: put the explanation of a denial in the response body (never in production).
        decision_log: where decisions are logged (default: the ``salesauthz.decisions`` logger).
        realm: the ``WWW-Authenticate`` realm of 401 answers.
        request_id_header: a correlation id accepted from the client when well-formed (it is only
            ever logged, never trusted for a decision); otherwise one is generated.
    """

    def __init__(self, authorizer: Authorizer, *, identity: IdentityResolver,
                 domain: DomainResolver | None = None, hide_denied: bool = False, debug: bool = False,
                 decision_log: DecisionLog | None = None, realm: str = "salesauthz",
                 request_id_header: str | None = "x-request-id") -> None:
        self.authorizer = authorizer
        self.identity = identity
        self.domain = domain
        self.hide_denied = hide_denied
        self.debug = debug
        self.decision_log = decision_log if decision_log is not None else DecisionLog()
        self.realm = realm
        self.request_id_header = request_id_header.lower() if request_id_header else None

    def request_id(self, headers: Mapping[str, str]) -> str:
        if self.request_id_header is not None:
            given = headers.get(self.request_id_header)
            if given and _REQUEST_ID.fullmatch(given):
                return given
        # Unique within the process and cheap (no system call per request, unlike uuid4):
        # a random per-process prefix and a counter.
        return f"{_ID_PREFIX}-{next(_ID_COUNTER):x}"

    def resolve(self, info: RequestInfo) -> RequestAuthz:
        """Identity and domain for a synchronous framework (WSGI, Flask, Django)."""
        identity = self.identity(info)
        if inspect.isawaitable(identity):
            close = getattr(identity, "close", None)
            if close is not None:
                close()  # a coroutine that will never run: close it to avoid a warning
            raise TypeError("this framework needs a synchronous identity resolver, not a coroutine function")
        return self.bind(info, identity)

    def bind(self, info: RequestInfo, identity: Identity | None) -> RequestAuthz:
        """The per-request context for an identity (:class:`NotAuthenticatedError` if ``None``)."""
        if identity is None:
            raise NotAuthenticatedError(_NO_CREDENTIALS)
        domain = identity.domain
        if self.domain is not None:
            resolved = self.domain(info, identity)
            if resolved is not None and domain is not None and resolved != domain:
                raise ForbiddenError("this identity may not act in the requested domain",
                                     account=identity.account, domain=resolved)
            domain = resolved
        if not domain:
            raise ForbiddenError("no domain could be determined for this request",
                                 account=identity.account)
        return RequestAuthz(self, identity, domain, self.request_id(info.headers), info.method, info.route)

    def problem(self, error: AuthorizationError, instance: str | None = None) -> Problem:
        return problem_for(error, realm=self.realm, instance=instance, debug=self.debug)


class RequestAuthz:
    """Decisions for one request's account in its domain, each logged to the decision log.

    Handlers get one from their framework adapter and call :meth:`authorize` on the record they
    loaded, or :meth:`scope_filter` for a list view.
    """

    __slots__ = ("account", "domain", "guard", "identity", "method", "request_id", "route")

    def __init__(self, guard: Guard, identity: Identity, domain: str, request_id: str,
                 method: str | None = None, route: str | None = None) -> None:
        self.guard = guard
        self.identity = identity
        self.account = identity.account
        self.domain = domain
        self.request_id = request_id
        self.method = method
        self.route = route

    def __repr__(self) -> str:
        return (f"RequestAuthz(account={self.account!r}, domain={self.domain!r}, "
                f"request_id={self.request_id!r})")

    # -- record level ------------------------------------------------------------------------

    def allows(self, action: str, record: Record) -> bool:
        """May the account do ``action`` on ``record``? (Logged.)"""
        started = now_ns()
        allowed = self.guard.authorizer.check(self.account, action, record, domain=self.domain)
        self._log(allowed, action, record.type, record, now_ns() - started, "record")
        return allowed

    def authorize(self, action: str, record: Record | None, *, hide: bool | None = None) -> Record:
        """Return ``record`` if the account may do ``action`` on it; otherwise raise
        :class:`NotFoundError` (``record`` is ``None``: it does not exist; or it is denied and
        hiding is on) or :class:`ForbiddenError`. ``hide`` overrides ``Guard.hide_denied``."""
        if record is None:
            raise NotFoundError("no such record")
        if self.allows(action, record):
            return record
        hidden = self.guard.hide_denied if hide is None else hide
        if hidden:
            raise NotFoundError("no such record")
        raise self._forbidden(action, record.type, record)

    # -- route and list level ----------------------------------------------------------------

    def scope_filter(self, action: str, type: str) -> ScopeFilter:
        """Which records of ``type`` the account may ``action`` (for a list view's ``WHERE``)."""
        started = now_ns()
        found = self.guard.authorizer.scope_filter(self.account, action, type, domain=self.domain)
        self._log(not found.nothing, action, type, None, now_ns() - started, "list")
        return found

    def can(self, type: str, action: str) -> bool:
        """May the account do ``action`` on *some* record of ``type``? (route-level, logged)."""
        started = now_ns()
        found = self.guard.authorizer.scope_filter(self.account, action, type, domain=self.domain)
        self._log(not found.nothing, action, type, None, now_ns() - started, "route")
        return not found.nothing

    def require(self, type: str, action: str) -> None:
        """:meth:`can`, raising :class:`ForbiddenError` (403) when not."""
        if not self.can(type, action):
            raise self._forbidden(action, type, None)

    # -- internals ---------------------------------------------------------------------------

    def _forbidden(self, action: str, type: str, record: Record | None) -> ForbiddenError:
        error = _Denied(f"you may not {action} this {type}" if record is not None
                        else f"you may not {action} {type} records",
                        account=self.account, action=action, type=type, domain=self.domain)
        if self.guard.debug:
            decision = self.guard.authorizer.explain(
                self.account, action, record if record is not None else Record(type, owner=self.account),
                domain=self.domain)
            error.reason = decision.reason
            error.rules = decision.rules
        return error

    def _log(self, allowed: bool, action: str, type: str, record: Record | None, latency_ns: int,
             kind: str) -> None:
        log = self.guard.decision_log
        if not log.wants(allowed):
            return
        rule = role = None
        if allowed and log.explain:
            # A route or list decision has no record: explain one of the account's own, which
            # every non-empty scope reaches, to name the rule that grants the action.
            probe = record if record is not None else Record(type, owner=self.account)
            decision = self.guard.authorizer.explain(self.account, action, probe, domain=self.domain)
            if decision.allowed and decision.rules:
                rule = _rule_text(decision.rules[0])
                role = decision.role
        log.emit(allowed=allowed, domain=self.domain, account=self.account, action=action, type=type,
                 record_id=record.id if record is not None else None, latency_ns=latency_ns,
                 request_id=self.request_id, method=self.method, route=self.route, rule=rule,
                 role=role, kind=kind)
