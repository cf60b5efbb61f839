"""Web integration: identity and domain resolution, per-request decisions, decision logs.

The framework adapters live in submodules you import explicitly, so importing this package
pulls in no web framework: :mod:`~salesauthz.middleware.asgi` (Starlette / any ASGI app),
:mod:`~salesauthz.middleware.fastapi`, :mod:`~salesauthz.middleware.flask`,
:mod:`~salesauthz.middleware.wsgi` and :mod:`~salesauthz.middleware.django`.
"""

from ._core import (
    Guard,
    Problem,
    RequestAuthz,
    StepUpRequired,
    assurance_level,
    client_address,
    problem_for,
    request_context,
)
from ._routes import Requirement
from .decision_log import DECISION_LOGGER, DecisionLog
from .identity import (
    DomainResolver,
    HS256Tokens,
    Identity,
    IdentityResolver,
    JWKSTokens,
    RequestInfo,
    StaticTokens,
    bearer_token,
    domain_from_claim,
    domain_from_host,
    domain_from_path,
    fixed_domain,
)

__all__ = [
    "DECISION_LOGGER",
    "DecisionLog",
    "DomainResolver",
    "Guard",
    "HS256Tokens",
    "Identity",
    "IdentityResolver",
    "JWKSTokens",
    "Problem",
    "RequestAuthz",
    "RequestInfo",
    "Requirement",
    "StaticTokens",
    "StepUpRequired",
    "assurance_level",
    "bearer_token",
    "client_address",
    "domain_from_claim",
    "domain_from_host",
    "domain_from_path",
    "fixed_domain",
    "problem_for",
    "request_context",
]
