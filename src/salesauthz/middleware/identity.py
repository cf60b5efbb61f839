"""Who is asking, and in which domain: pluggable resolvers shared by every framework adapter.

An *identity resolver* turns a request into an :class:`Identity` (or ``None``: nobody is
authenticated, which the adapters answer with 401). A *domain resolver* names the domain (tenant)
the request acts in. Both receive a :class:`RequestInfo`, a framework-neutral view of the
request that still carries the framework's own request object as ``native``.

Client-supplied headers are never trusted by default: no resolver here reads an account name
from a header. Bearer tokens are *verified* (an HS256 JWT with a server-side secret, an RS256 or
ES256 JWT signed by an identity provider with a key of its JWKS, or a server-side table of
opaque tokens), never taken at their word.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from salesauthz.errors import NotAuthenticatedError

if TYPE_CHECKING:
    from jwt import PyJWK, PyJWKClient

__all__ = [
    "DomainResolver",
    "HS256Tokens",
    "Identity",
    "IdentityResolver",
    "JWKSTokens",
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
    WSGI ``environ``). ``client`` is the address of the connection's peer (``None`` when the
    server does not say); :func:`~salesauthz.middleware.client_address` finds the client behind
    trusted proxies.
    """

    method: str
    path: str
    host: str
    headers: Mapping[str, str]
    path_params: Mapping[str, Any] = field(default_factory=dict)
    route: str | None = None
    native: Any = None
    client: str | None = None  # the peer's address (the last hop: a proxy's, behind one)


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
        return _identity(self.verify(token), self._account_claim, self._domain_claim)


def _identity(claims: dict[str, Any], account_claim: str, domain_claim: str | None) -> Identity:
    account = claims.get(account_claim)
    if not isinstance(account, str) or not account:
        raise NotAuthenticatedError(f"bearer token has no {account_claim!r} claim")
    domain = claims.get(domain_claim) if domain_claim else None
    return Identity(account, domain if isinstance(domain, str) else None, claims)


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


_log = logging.getLogger(__name__)

# Public-key signature algorithms only: an HMAC algorithm would let anyone holding the public
# key sign tokens, and "none" signs nothing.
_ASYMMETRIC_ALGORITHMS = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512",
                                   "ES256", "ES384", "ES512", "EdDSA"})


class JWKSTokens:
    """Verified JWT bearer tokens signed by an identity provider (Auth0, Okta, Keycloak, Entra ID,
    Cognito …) with a key it publishes as a JSON Web Key Set (JWKS). Needs the ``jwt`` extra
    (PyJWT with cryptography; keys are fetched and cached by PyJWT's ``PyJWKClient``).

    A token must name its key (``kid``) and an algorithm of ``algorithms`` (default RS256 and
    ES256) that is also the key's own: HS256 (a token "signed" with the public key as an HMAC
    secret) and ``none`` are refused before any key is looked up. Its signature, ``exp`` (with
    ``leeway`` seconds), ``nbf``, ``aud`` (must include ``audience``) and ``iss`` (must equal
    ``issuer``) are checked; both are required, since any other application of the same provider
    gets tokens signed with the same keys. The account is the ``account_claim`` (default ``sub``),
    the domain the ``domain_claim`` (default ``tenant``).

    Keys: the key set is fetched on first use and kept ``cache_ttl`` seconds. A token signed with
    a key the cached set lacks (the provider rotated its keys) refetches the set at once — but at
    most once per ``refresh_cooldown`` seconds, so tokens with made-up ``kid`` values cannot
    make every request call the provider. Each fetch gives up after ``timeout`` seconds.

    Failing closed: any failed check raises :class:`~salesauthz.errors.NotAuthenticatedError`
    (answered with 401). So does a key set that cannot be fetched (provider down, timeout, not
    JSON): the token cannot be verified, and nothing is allowed on a token that was not. The
    failure is logged (WARNING, logger ``salesauthz.middleware.identity``), and for
    ``retry_after`` seconds after it no fetch is tried again, so requests during an outage are
    answered at once instead of each waiting out the timeout.

    For ASGI apps pass :meth:`resolve_async` as the guard's identity resolver, so a key fetch
    never blocks the event loop; synchronous frameworks take the object itself.
    """

    def __init__(self, jwks_url: str, *, audience: str, issuer: str,
                 algorithms: Sequence[str] = ("RS256", "ES256"), account_claim: str = "sub",
                 domain_claim: str | None = "tenant", leeway: float = 30.0, cache_ttl: float = 300.0,
                 refresh_cooldown: float = 30.0, retry_after: float = 5.0, timeout: float = 5.0,
                 headers: Mapping[str, str] | None = None) -> None:
        if isinstance(algorithms, str):
            raise TypeError("algorithms is a sequence of names, e.g. ('RS256',)")
        unsafe = sorted(set(algorithms) - _ASYMMETRIC_ALGORITHMS)
        if unsafe or not algorithms:
            raise ValueError(f"JWKSTokens verifies public-key signatures only; not allowed: "
                             f"{', '.join(unsafe) or 'no algorithm at all'}")
        if not audience or not issuer:
            raise ValueError("JWKSTokens needs the audience and the issuer your tokens carry")
        self.jwks_url = jwks_url
        self._audience = audience
        self._issuer = issuer
        self._algorithms = tuple(algorithms)
        self._account_claim = account_claim
        self._domain_claim = domain_claim
        self._leeway = leeway
        self._client = _key_set_client(jwks_url, cache_ttl=cache_ttl, refresh_cooldown=refresh_cooldown,
                                       retry_after=retry_after, timeout=timeout, headers=headers)

    def _signing_key(self, kid: str) -> PyJWK:
        from jwt import PyJWKClientConnectionError, PyJWKClientError

        try:
            return self._client.get_signing_key(kid)
        except PyJWKClientConnectionError as error:
            raise NotAuthenticatedError(
                "the identity provider's signing keys could not be fetched; try again later") from error
        except PyJWKClientError as error:
            # Not in the set even after a refetch (or within the refetch cooldown).
            raise NotAuthenticatedError("bearer token is signed with a key the identity provider "
                                        "does not publish") from error

    def verify(self, token: str) -> dict[str, Any]:
        """The claims of a valid token; :class:`NotAuthenticatedError` saying why otherwise."""
        import jwt

        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError as error:
            raise NotAuthenticatedError("malformed bearer token") from error
        algorithm, kid = header.get("alg"), header.get("kid")
        if algorithm not in self._algorithms:  # before any key lookup: junk costs no fetch
            raise NotAuthenticatedError(
                f"bearer token must be signed with {' or '.join(self._algorithms)}")
        if not isinstance(kid, str) or not kid:
            raise NotAuthenticatedError("bearer token names no signing key (kid)")
        key = self._signing_key(kid)
        try:
            claims: dict[str, Any] = jwt.decode(
                token, key, algorithms=[algorithm], audience=self._audience, issuer=self._issuer,
                leeway=self._leeway, options={"require": ["exp", "aud", "iss"]})
        except jwt.ExpiredSignatureError as error:
            raise NotAuthenticatedError("bearer token has expired") from error
        except jwt.ImmatureSignatureError as error:
            raise NotAuthenticatedError("bearer token is not valid yet") from error
        except jwt.MissingRequiredClaimError as error:
            raise NotAuthenticatedError(f"bearer token has no {error.claim!r} claim") from error
        except jwt.InvalidAudienceError as error:
            raise NotAuthenticatedError("bearer token is meant for another audience") from error
        except jwt.InvalidIssuerError as error:
            raise NotAuthenticatedError("bearer token comes from an unknown issuer") from error
        except jwt.InvalidAlgorithmError as error:  # the token's alg is not its key's
            raise NotAuthenticatedError("bearer token's algorithm does not match its key") from error
        except jwt.InvalidSignatureError as error:
            raise NotAuthenticatedError("bearer token signature is invalid") from error
        except jwt.InvalidTokenError as error:
            raise NotAuthenticatedError("invalid bearer token") from error
        return claims

    def __call__(self, info: RequestInfo) -> Identity | None:
        token = bearer_token(info)
        if token is None:
            return None
        return _identity(self.verify(token), self._account_claim, self._domain_claim)

    async def resolve_async(self, info: RequestInfo) -> Identity | None:
        """:meth:`__call__` in a worker thread, for ASGI apps: a key fetch (at most once per
        ``cache_ttl``, or on rotation) then waits there, not on the event loop."""
        import asyncio

        return await asyncio.to_thread(self, info)


def _key_set_client(url: str, *, cache_ttl: float, refresh_cooldown: float, retry_after: float,
                    timeout: float, headers: Mapping[str, str] | None) -> PyJWKClient:
    """PyJWT's JWKS client, plus a pause after a failed fetch (PyJWT retries on every request)."""
    try:
        from jwt import PyJWKClient, PyJWKClientConnectionError, PyJWKClientError, PyJWKSetError
    except ImportError as error:
        raise ImportError("JWKSTokens needs PyJWT with cryptography: "
                          "pip install 'salesauthz[jwt]'") from error

    class KeySetClient(PyJWKClient):
        failed_at: float | None = None

        def fetch_data(self) -> Any:
            now = time.monotonic()
            if self.failed_at is not None and now - self.failed_at < retry_after:
                raise PyJWKClientConnectionError(f"fetching {url} failed less than {retry_after:g} s "
                                                 "ago; not retried yet")
            try:
                data = super().fetch_data()
            # Unreachable, timed out, an HTTP error, not JSON (PyJWT lets that ValueError
            # through), not a key set: all mean the keys cannot be had now.
            except (PyJWKClientError, PyJWKSetError, ValueError) as error:
                self.failed_at = now
                _log.warning("cannot fetch the identity provider's keys from %s: %s; bearer tokens "
                             "are refused until it answers", url, error)
                raise PyJWKClientConnectionError(str(error)) from error
            self.failed_at = None
            return data

    try:
        return KeySetClient(url, cache_jwk_set=True, lifespan=cache_ttl, timeout=timeout,
                            headers=dict(headers or {}), cooldown_duration=refresh_cooldown)
    except PyJWKClientError as error:  # e.g. a URL that is not http(s)
        raise ValueError(f"unusable JWKS URL {url!r}: {error}") from error


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
