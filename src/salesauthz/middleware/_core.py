"""The framework-neutral half of every web adapter: a :class:`Guard` (configuration) and the
per-request :class:`RequestAuthz` that makes and logs decisions, plus RFC 9457 problem bodies."""

from __future__ import annotations

import inspect
import ipaddress
import itertools
import re
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from salesauthz.authorizer import Authorizer
from salesauthz.delegation import Admin
from salesauthz.errors import AuthorizationError, ForbiddenError, NotAuthenticatedError, NotFoundError
from salesauthz.values import Record, ScopeFilter

from .decision_log import DecisionLog, now_ns
from .identity import DomainResolver, Identity, IdentityResolver, RequestInfo

__all__ = ["Guard", "Problem", "RequestAuthz", "StepUpRequired", "assurance_level", "client_address",
           "problem_for", "request_context"]

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


# -- the request context (requires: mfa / ip) -----------------------------------------------

# RFC 8176 authentication method references that are a factor of their own: two different ones
# in ``amr`` are two factors.
_FACTORS = frozenset({"pwd", "pin", "kba", "otp", "sms", "tel", "hwk", "swk", "sc", "pop", "fpt",
                      "face", "iris", "retina", "vbm", "user"})


def assurance_level(claims: Mapping[str, Any], acr_levels: Mapping[str, int] | None = None) -> int:
    """The session's assurance level from a token's claims: ``0`` (one factor, or nothing
    said), ``1`` when ``amr`` says ``mfa`` (or names two distinct factors, e.g. ``pwd`` and
    ``otp``), or the level ``acr_levels`` gives the ``acr`` claim, whichever is higher."""
    level = 0
    amr = claims.get("amr")
    if isinstance(amr, list | tuple):
        methods = {m for m in amr if isinstance(m, str)}
        if "mfa" in methods or len(methods & _FACTORS) >= 2:
            level = 1
    acr = claims.get("acr")
    if acr_levels and isinstance(acr, str):
        given = acr_levels.get(acr)
        if isinstance(given, int) and not isinstance(given, bool):
            level = max(level, given)
    return level


def _networks(networks: Iterable[str]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    found = []
    for network in networks:
        try:
            found.append(ipaddress.ip_network(str(network), strict=False))
        except ValueError:
            raise ValueError(f"trusted_proxies: {network!r} is not a network (e.g. 10.0.0.0/8)") from None
    return tuple(found)


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text.strip())
    except ValueError:
        return None


def client_address(peer: str | None, headers: Mapping[str, str],
                   trusted: Iterable[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> str | None:
    """The client's address: the connection's ``peer``, unless it is a trusted proxy — then
    ``X-Forwarded-For`` is read from the right, skipping trusted proxies, and the first address
    that is not one is the client (hops to its left were written by the client and are not
    believed). ``None`` when no address can be told (a malformed hop included): a ``requires:
    ip`` then denies."""
    trusted = tuple(trusted)
    address = _address(peer) if peer else None
    if address is None:
        return None
    if not any(address.version == n.version and address in n for n in trusted):
        return str(address)
    forwarded = headers.get("x-forwarded-for", "")
    for hop in reversed([h for h in forwarded.split(",") if h.strip()]):
        address = _address(hop)
        if address is None:
            return None
        if not any(address.version == n.version and address in n for n in trusted):
            return str(address)
    return str(address)  # every hop a trusted proxy: the leftmost one


def request_context(guard: Guard, info: RequestInfo, identity: Identity) -> dict[str, Any]:
    """The context decisions get for this request: ``mfa`` (the session's assurance level,
    from the token's ``amr``/``acr`` claims) and ``ip`` (the client's address, honouring the
    guard's trusted proxies); ``now`` is left to the authorizer's clock. Shared by every
    framework adapter."""
    context: dict[str, Any] = {"mfa": assurance_level(identity.claims, guard.acr_levels)}
    address = client_address(info.client, info.headers, guard.trusted_proxies)
    if address is not None:
        context["ip"] = address
    return context


class StepUpRequired(NotAuthenticatedError):
    """A denial a stronger session would turn into an allow: answered 401 with a
    ``WWW-Authenticate`` step-up challenge (RFC 9470: ``error="insufficient_user_authentication"``
    and ``acr_values``), so the client can re-authenticate with a second factor."""

    def __init__(self, message: str, *, acr_values: str, level: int = 1, account: str | None = None,
                 domain: str | None = None) -> None:
        super().__init__(message)
        self.acr_values = acr_values
        self.level = level
        self.account = account
        self.domain = domain


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
    if isinstance(error, StepUpRequired):
        body["acr_values"] = error.acr_values
        headers = (("WWW-Authenticate",
                    f'Bearer realm="{realm}", error="insufficient_user_authentication", '
                    f'error_description="a stronger authentication is required", '
                    f'acr_values="{error.acr_values}"'),)
    elif status == 401:
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
        trusted_proxies: networks of the reverse proxies in front of the app: only when the
            connection comes from one is ``X-Forwarded-For`` read for the client's address
            (``requires: ip``). Empty (the default): the peer's address is the client's.
        acr_levels: ``acr`` claim value -> assurance level (``requires: {mfa: 2}``); the
            ``amr`` claim alone gives level 1 for a second factor.
        step_up_acr: the ``acr_values`` a step-up challenge asks for, by level (``{1: "mfa"}``
            by default; a level without an entry uses the nearest higher one, else the highest).
    """

    def __init__(self, authorizer: Authorizer, *, identity: IdentityResolver,
                 domain: DomainResolver | None = None, hide_denied: bool = False, debug: bool = False,
                 decision_log: DecisionLog | None = None, realm: str = "salesauthz",
                 request_id_header: str | None = "x-request-id",
                 trusted_proxies: Iterable[str] = (), acr_levels: Mapping[str, int] | None = None,
                 step_up_acr: Mapping[int, str] | None = None) -> None:
        self.trusted_proxies = _networks(trusted_proxies)
        self.acr_levels = dict(acr_levels or {})
        self.step_up_acr = dict(step_up_acr) if step_up_acr else {1: "mfa"}
        if any(not isinstance(k, int) or isinstance(k, bool) or k < 1 for k in self.step_up_acr):
            raise ValueError("step_up_acr: the keys are assurance levels (1, 2, ...)")
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
        return RequestAuthz(self, identity, domain, self.request_id(info.headers), info.method, info.route,
                            request_context(self, info, identity))

    def acr_for(self, level: int) -> str:
        """The ``acr_values`` that asks for at least ``level``."""
        higher = sorted(k for k in self.step_up_acr if k >= level)
        return self.step_up_acr[higher[0] if higher else max(self.step_up_acr)]

    def problem(self, error: AuthorizationError, instance: str | None = None) -> Problem:
        return problem_for(error, realm=self.realm, instance=instance, debug=self.debug)


class RequestAuthz:
    """Decisions for one request's account in its domain, each logged to the decision log.

    Handlers get one from their framework adapter and call :meth:`authorize` on the record they
    loaded, or :meth:`scope_filter` for a list view.
    """

    __slots__ = ("account", "context", "domain", "guard", "identity", "method", "request_id", "route")

    def __init__(self, guard: Guard, identity: Identity, domain: str, request_id: str,
                 method: str | None = None, route: str | None = None,
                 context: Mapping[str, Any] | None = None) -> None:
        self.guard = guard
        self.identity = identity
        self.account = identity.account
        self.domain = domain
        self.request_id = request_id
        self.method = method
        self.route = route
        self.context: Mapping[str, Any] = context if context is not None else {}

    def __repr__(self) -> str:
        return (f"RequestAuthz(account={self.account!r}, domain={self.domain!r}, "
                f"request_id={self.request_id!r})")

    # -- record level ------------------------------------------------------------------------

    def allows(self, action: str, record: Record) -> bool:
        """May the account do ``action`` on ``record``? (Logged.)"""
        started = now_ns()
        allowed = self.guard.authorizer.check(self.account, action, record, domain=self.domain,
                                              context=self.context)
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
        step_up = self._step_up(action, record.type, record)
        if step_up is not None:
            raise step_up
        raise self._forbidden(action, record.type, record)

    # -- route and list level ----------------------------------------------------------------

    def scope_filter(self, action: str, type: str) -> ScopeFilter:
        """Which records of ``type`` the account may ``action`` (for a list view's ``WHERE``)."""
        started = now_ns()
        found = self.guard.authorizer.scope_filter(self.account, action, type, domain=self.domain,
                                                   context=self.context)
        self._log(not found.nothing, action, type, None, now_ns() - started, "list")
        return found

    def can(self, type: str, action: str) -> bool:
        """May the account do ``action`` on *some* record of ``type``? (route-level, logged)."""
        started = now_ns()
        found = self.guard.authorizer.scope_filter(self.account, action, type, domain=self.domain,
                                                   context=self.context)
        self._log(not found.nothing, action, type, None, now_ns() - started, "route")
        return not found.nothing

    def require(self, type: str, action: str) -> None:
        """:meth:`can`, raising :class:`ForbiddenError` (403) when not."""
        if not self.can(type, action):
            step_up = self._step_up(action, type, None)
            if step_up is not None:
                raise step_up
            raise self._forbidden(action, type, None)

    # -- internals ---------------------------------------------------------------------------

    def _step_up(self, action: str, type: str, record: Record | None) -> StepUpRequired | None:
        """A step-up challenge when a stronger session would allow what was denied (the
        smallest assurance level that would, up to the highest the guard asks for), else
        ``None``: a denial for anything else — the network, the hours, the record — stays 403."""
        authorizer = self.guard.authorizer
        snapshot = authorizer._snapshot(self.domain)
        if snapshot is None or not snapshot.conditioned:
            return None  # no permission of the domain requires anything
        have = self.context.get("mfa")
        current = have if isinstance(have, int) and not isinstance(have, bool) else int(have is True)
        for level in range(current + 1, max(max(self.guard.step_up_acr), current + 1) + 1):
            stronger = {**self.context, "mfa": level}
            if record is not None:
                allowed = authorizer.check(self.account, action, record, domain=self.domain,
                                           context=stronger)
            else:
                allowed = not authorizer.scope_filter(self.account, action, type, domain=self.domain,
                                                      context=stronger).nothing
            if allowed:
                return StepUpRequired(f"{action} on {type} needs a stronger authentication "
                                      "(a second factor)", acr_values=self.guard.acr_for(level),
                                      level=level, account=self.account, domain=self.domain)
        return None

    def _forbidden(self, action: str, type: str, record: Record | None) -> ForbiddenError:
        error = _Denied(f"you may not {action} this {type}" if record is not None
                        else f"you may not {action} {type} records",
                        account=self.account, action=action, type=type, domain=self.domain)
        if self.guard.debug:
            decision = self.guard.authorizer.explain(
                self.account, action, record if record is not None else Record(type, owner=self.account),
                domain=self.domain, context=self.context)
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
            decision = self.guard.authorizer.explain(self.account, action, probe, domain=self.domain,
                                                     context=self.context)
            if decision.allowed and decision.rules:
                rule = _rule_text(decision.rules[0])
                role = decision.role
        log.emit(allowed=allowed, domain=self.domain, account=self.account, action=action, type=type,
                 record_id=record.id if record is not None else None, latency_ns=latency_ns,
                 request_id=self.request_id, method=self.method, route=self.route, rule=rule,
                 role=role, kind=kind, assurance=self._assurance())

    def _assurance(self) -> int | None:
        have = self.context.get("mfa")
        if have is None:
            return None
        return have if isinstance(have, int) and not isinstance(have, bool) else int(have is True)

    def admin(self) -> Admin:
        """Administrative operations by this request's account in its domain, their audit
        records carrying the session's assurance (``AuditRecord.assurance``)."""
        return self.guard.authorizer.admin(self.account, domain=self.domain, context=self.context)
