"""Who is asking, and in which domain: pluggable resolvers shared by every framework adapter.

An *identity resolver* turns a request into an :class:`Identity` (or ``None``: nobody is
authenticated, which the adapters answer with 401). A *domain resolver* names the domain (tenant)
the request acts in. Both receive a :class:`RequestInfo`, a framework-neutral view of the
request that still carries the framework's own request object as ``native``.

Client-supplied headers are never trusted by default: no resolver here reads an account name
from a header. Bearer tokens are *verified* (HS256 JWT with a server-side secret, or a
server-side table of opaque tokens), never taken at their word.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from salesauthz.errors import NotAuthenticatedError

__all__ = [
    "DomainResolver",
    "HS256Tokens",
    "Identity",
    "IdentityResolver",
    "RequestInfo",
    "StaticTokens",
    "bearer_token",
    "domain_from_claim",
    "domain_from_host",
    "domain_from_path",
    "fixed_domain",
]


@dataclass(frozen=True, slots=True)
class Identity:
    """An authenticated account. ``domain`` is set when the credential itself names the tenant
    (e.g. a ``tenant`` claim); ``claims`` keeps whatever else the credential said."""

    account: str
    domain: str | None = None
    claims: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class RequestInfo:
    """A framework-neutral view of a request, built by each adapter.

    ``headers`` has lower-case names; ``route`` is the matched route *template*
    (``/customers/{id}``), ``None`` when no route matched; ``native`` is the framework's request
    object (Starlette ``HTTPConnection``, Flask ``request``, Django ``HttpRequest``, or the
    WSGI ``environ``).
    """

    method: str
    path: str
    host: str
    headers: Mapping[str, str]
    path_params: Mapping[str, Any] = field(default_factory=dict)
    route: str | None = None
    native: Any = None


IdentityResolver = Callable[[RequestInfo], "Identity | Awaitable[Identity | None] | None"]
"""``request -> Identity | None`` (ASGI adapters also accept a coroutine function)."""

DomainResolver = Callable[[RequestInfo, Identity], "str | None"]
"""``(request, identity) -> domain | None``."""


def bearer_token(info: RequestInfo) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, if there is one."""
    value = info.headers.get("authorization", "")
    scheme, _, token = value.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


class StaticTokens:
    """Opaque bearer tokens looked up in a server-side table (``token -> account`` or
    ``token -> Identity``). Tokens are kept only as SHA-256 digests and compared in constant time
    per candidate, so the table leaks neither the tokens nor, by timing, their prefixes."""

    def __init__(self, tokens: Mapping[str, str | Identity], *, domain: str | None = None) -> None:
        self._table: dict[bytes, Identity] = {}
        for token, who in tokens.items():
            if not token:
                raise ValueError("an empty string is not a usable bearer token")
            identity = who if isinstance(who, Identity) else Identity(who, domain)
            self._table[hashlib.sha256(token.encode()).digest()] = identity

    def __call__(self, info: RequestInfo) -> Identity | None:
        token = bearer_token(info)
        if token is None:
            return None
        digest = hashlib.sha256(token.encode()).digest()
        found: Identity | None = None
        for known, identity in self._table.items():
            if hmac.compare_digest(known, digest):
                found = identity
        return found


def _b64decode(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class HS256Tokens:
    """Verified JWT bearer tokens signed with HMAC-SHA256 and a server-side secret.

    Checks the signature (constant time), that the header says ``HS256`` (no ``none``, no
    algorithm confusion), ``exp``/``nbf`` with ``leeway`` seconds, and ``aud``/``iss`` when
    configured. The account is the ``account_claim`` (default ``sub``), the domain the
    ``domain_claim`` (default ``tenant``). A token that fails any check raises
    :class:`~salesauthz.errors.NotAuthenticatedError` (answered with 401); no token is ``None``.
    """

    def __init__(self, secret: str | bytes, *, audience: str | None = None, issuer: str | None = None,
                 account_claim: str = "sub", domain_claim: str | None = "tenant", leeway: float = 30.0,
                 clock: Callable[[], float] = time.time) -> None:
        key = secret.encode() if isinstance(secret, str) else secret
        if len(key) < 32:
            raise ValueError("an HS256 secret must be at least 32 bytes long")
        self._key = key
        self._audience = audience
        self._issuer = issuer
        self._account_claim = account_claim
        self._domain_claim = domain_claim
        self._leeway = leeway
        self._clock = clock

    def mint(self, account: str, *, domain: str | None = None, ttl: float = 3600.0,
             **claims: Any) -> str:
        """A signed token for ``account`` (server-side tooling and tests)."""
        now = int(self._clock())
        body: dict[str, Any] = {self._account_claim: account, "iat": now, "exp": now + int(ttl), **claims}
        if domain is not None and self._domain_claim is not None:
            body[self._domain_claim] = domain
        if self._audience is not None:
            body.setdefault("aud", self._audience)
        if self._issuer is not None:
            body.setdefault("iss", self._issuer)
        head = _b64encode(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())
        payload = _b64encode(json.dumps(body, separators=(",", ":")).encode())
        signature = hmac.new(self._key, f"{head}.{payload}".encode(), hashlib.sha256).digest()
        return f"{head}.{payload}.{_b64encode(signature)}"

    def verify(self, token: str) -> dict[str, Any]:
        """The claims of a valid token; :class:`NotAuthenticatedError` saying why otherwise."""
        parts = token.split(".")
        if len(parts) != 3:
            raise NotAuthenticatedError("malformed bearer token")
        try:
            header = json.loads(_b64decode(parts[0]))
            claims = json.loads(_b64decode(parts[1]))
            signature = _b64decode(parts[2])
        except (binascii.Error, ValueError) as error:
            raise NotAuthenticatedError("malformed bearer token") from error
        if not isinstance(header, dict) or header.get("alg") != "HS256":
            raise NotAuthenticatedError("bearer token must be signed with HS256")
        expected = hmac.new(self._key, f"{parts[0]}.{parts[1]}".encode(), hashlib.sha256).digest()
        if not hmac.compare_digest(expected, signature):
            raise NotAuthenticatedError("bearer token signature is invalid")
        if not isinstance(claims, dict):
            raise NotAuthenticatedError("bearer token claims must be an object")
        now = self._clock()
        if not isinstance(claims.get("exp"), int | float) or now > claims["exp"] + self._leeway:
            raise NotAuthenticatedError("bearer token has expired or has no exp claim")
        if isinstance(claims.get("nbf"), int | float) and now + self._leeway < claims["nbf"]:
            raise NotAuthenticatedError("bearer token is not valid yet")
        if self._audience is not None and self._audience not in _as_list(claims.get("aud")):
            raise NotAuthenticatedError("bearer token is meant for another audience")
        if self._issuer is not None and claims.get("iss") != self._issuer:
            raise NotAuthenticatedError("bearer token comes from an unknown issuer")
        return claims

    def __call__(self, info: RequestInfo) -> Identity | None:
        token = bearer_token(info)
        if token is None:
            return None
        claims = self.verify(token)
        account = claims.get(self._account_claim)
        if not isinstance(account, str) or not account:
            raise NotAuthenticatedError(f"bearer token has no {self._account_claim!r} claim")
        domain = claims.get(self._domain_claim) if self._domain_claim else None
        return Identity(account, domain if isinstance(domain, str) else None, claims)


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


# -- domain resolvers -------------------------------------------------------------------------


def fixed_domain(domain: str) -> DomainResolver:
    """Every request acts in ``domain`` (single-tenant deployments)."""

    def resolve(info: RequestInfo, identity: Identity) -> str:
        return domain

    return resolve


def domain_from_host(hosts: Mapping[str, str] | None = None, *, suffix: str | None = None) -> DomainResolver:
    """The domain from the ``Host`` the request was sent to: an exact ``host -> domain`` table,
    and/or the first label under ``suffix`` (``acme.crm.example`` with ``suffix="crm.example"``).
    The port is ignored; an unknown host resolves to no domain (answered with 403)."""
    table = {h.lower(): d for h, d in (hosts or {}).items()}
    tail = "." + suffix.lower().lstrip(".") if suffix else None

    def resolve(info: RequestInfo, identity: Identity) -> str | None:
        host = info.host.lower().rsplit(":", 1)[0] if not info.host.startswith("[") else info.host
        if host in table:
            return table[host]
        if tail is not None and host.endswith(tail):
            label = host[: -len(tail)]
            if label and "." not in label:
                return label
        return None

    return resolve


def domain_from_path(parameter: str = "domain") -> DomainResolver:
    """The domain from a path parameter of the matched route (``/t/{domain}/customers``)."""

    def resolve(info: RequestInfo, identity: Identity) -> str | None:
        value = info.path_params.get(parameter)
        return str(value) if value is not None else None

    return resolve


def domain_from_claim(claim: str = "tenant") -> DomainResolver:
    """The domain from a claim of the verified credential."""

    def resolve(info: RequestInfo, identity: Identity) -> str | None:
        value = identity.claims.get(claim)
        return value if isinstance(value, str) else identity.domain

    return resolve
