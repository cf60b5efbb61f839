"""ASGI middleware (Starlette, FastAPI, any ASGI app).

``AuthzMiddleware`` establishes the identity and domain of every HTTP request, answers 401 when
there is none, enforces route-level requirements declared per route *template*, and leaves the
per-request :class:`~salesauthz.middleware.RequestAuthz` in ``request.state.salesauthz`` for
record-level checks in handlers; the 401/403/404 errors those raise are answered as problem
JSON. Non-HTTP scopes (lifespan, websocket) pass straight through.

```python
app.add_middleware(AuthzMiddleware, guard=guard, rules={
    "GET /customers": ("customer", "read"),
    "GET /customers/{customer_id}": ("customer", "read"),
    "/health": None,                      # public
})
```
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Literal

from starlette.requests import HTTPConnection

from salesauthz._identity import IdentityCache
from salesauthz.errors import AuthorizationError, ForbiddenError

from ._core import MARKER, Guard, Problem, RequestAuthz
from ._routes import Requirement, RouteMatch, RouteTable
from .identity import Identity, RequestInfo

__all__ = ["AuthzMiddleware", "context_for", "send_problem", "starlette_user"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
ErrorHook = Callable[[Scope, AuthorizationError], Problem]

STATE_KEY = "salesauthz"


def starlette_user(info: RequestInfo) -> Identity | None:
    """The identity of Starlette's ``request.user`` (set by its ``AuthenticationMiddleware``):
    ``user.identity`` (or ``display_name``), and ``user.domain`` when the user object has one."""
    scope = info.native.scope if isinstance(info.native, HTTPConnection) else {}
    user = scope.get("user")
    if user is None or not getattr(user, "is_authenticated", False):
        return None
    try:
        account = user.identity
    except NotImplementedError:
        account = user.display_name
    if not account:
        return None
    return Identity(str(account), getattr(user, "domain", None))


def request_info(scope: Scope, *, route: str | None = None,
                 path_params: Mapping[str, Any] | None = None) -> RequestInfo:
    connection = HTTPConnection(scope)
    headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", ())}
    return RequestInfo(method=scope.get("method", "GET"), path=scope.get("path", "/"),
                       host=headers.get("host", ""), headers=headers,
                       path_params=path_params if path_params is not None else scope.get("path_params", {}),
                       route=route, native=connection, client=_peer(scope))


def _peer(scope: Scope) -> str | None:
    client = scope.get("client")
    return str(client[0]) if client else None


async def context_for(guard: Guard, scope: Scope, *, route: str | None = None,
                      path_params: Mapping[str, Any] | None = None) -> RequestAuthz:
    """The request's :class:`RequestAuthz`: the one the middleware bound, or a new one (the
    identity resolver may be a coroutine function). Raises 401/403 errors."""
    # The scope is this request's own; ``state`` is only *meant* to be a per-request copy of
    # the lifespan state, so an identity is never read back from it.
    found = scope.get(STATE_KEY)
    if isinstance(found, RequestAuthz):
        return found
    info = request_info(scope, route=route, path_params=path_params)
    resolved = guard.identity(info)
    identity = await resolved if inspect.isawaitable(resolved) else resolved
    context = guard.bind(info, identity)
    scope[STATE_KEY] = context
    scope.setdefault("state", {})[STATE_KEY] = context  # for handlers: request.state.salesauthz
    return context


async def send_problem(send: Send, problem: Problem) -> None:
    body = json.dumps(problem.body).encode()
    headers = [(b"content-type", problem.content_type.encode()), (b"content-length", str(len(body)).encode())]
    headers += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in problem.headers]
    await send({"type": "http.response.start", "status": problem.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _is_preflight(scope: Scope) -> bool:
    if scope["method"] != "OPTIONS":
        return False
    names = {k.lower() for k, _ in scope.get("headers", ())}
    return b"origin" in names and b"access-control-request-method" in names


_MARKED: IdentityCache[bool] = IdentityCache(4096)  # route -> whether it protects itself


def _marked(route: Any) -> bool:
    """Whether a route protects itself (a salesauthz FastAPI dependency or decorated endpoint);
    remembered per route object, as routes do not change once built."""
    known = _MARKED.get(route)
    return known if known is not None else _MARKED.put(_declares_marker(route), route)


def _declares_marker(route: Any) -> bool:
    if getattr(getattr(route, "endpoint", None), MARKER, False):
        return True
    pending = [getattr(route, "dependant", None)]
    while pending:
        dependant = pending.pop()
        if dependant is None:
            continue
        if getattr(dependant.call, MARKER, False):
            return True
        pending.extend(dependant.dependencies)
    return False


def _route_path(scope: Scope) -> str:
    """The path routes match against: without the ``root_path`` an app (or mount) sits under."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    return path[len(root):] if root and path.startswith(root) else path


def _find_route(routes: Iterable[Any], scope: Scope, prefix: str
                ) -> tuple[str, Mapping[str, Any], bool] | None:
    """``(template, path parameters, protects itself)`` of the endpoint the app will route
    ``scope`` to, descending into mounts, sub-routers and FastAPI's included routers."""
    from starlette.routing import Match

    for route in routes:
        contexts = getattr(route, "effective_route_contexts", None)
        if callable(contexts):  # a FastAPI included router: its routes with their full paths
            found = _find_in_contexts(contexts(), scope, prefix)
            if found is not None:
                return found
            continue
        pattern = getattr(route, "path_regex", None)
        if pattern is not None and getattr(route, "endpoint", None) is not None and prefix == "":
            # A top-level endpoint route: match its compiled regex directly, much cheaper than
            # FastAPI's ``matches`` (the router still does the real routing afterwards).
            found = pattern.match(_route_path(scope))
            methods = getattr(route, "methods", None)
            if found is None or (methods is not None and scope["method"] not in methods):
                continue
            return prefix + str(route.path), found.groupdict(), _marked(route)
        match, child = route.matches(scope)
        if match is not Match.FULL:
            continue
        template = prefix + str(getattr(route, "path", ""))
        inner = getattr(route, "routes", None)
        if inner is not None and getattr(route, "endpoint", None) is None:  # Mount, Host, Router
            return _find_route(inner, {**scope, **child}, template)
        return template, dict(child.get("path_params", {})), _marked(route)
    return None


def _find_in_contexts(contexts: Iterable[Any], scope: Scope, prefix: str
                      ) -> tuple[str, Mapping[str, Any], bool] | None:
    path = _route_path(scope)
    for context in contexts:
        pattern = getattr(context, "path_regex", None)
        methods = getattr(context, "methods", None)
        found = pattern.match(path) if pattern is not None else None
        if found is None or (methods and scope["method"] not in methods
                             and not (scope["method"] == "HEAD" and "GET" in methods)):
            continue
        route = getattr(context, "original_route", context)
        return (prefix + str(getattr(context, "path", "")), found.groupdict(),
                _marked(route) or _marked(context))
    return None


@dataclass(frozen=True, slots=True)
class _Resolved:
    template: str
    params: Mapping[str, Any]
    declared: bool  # the rules table names this route
    requirement: Requirement
    protected: bool  # a salesauthz FastAPI dependency enforces inside the route


_UNKNOWN: Any = object()
ROUTE_CACHE_SIZE = 1024
"""Requests (method, root path, path) whose route a middleware remembers (then it starts
afresh)."""

# One step of a route plan: a top-level endpoint route matched on its compiled regex alone —
# ``(match, methods, template, route)`` — or any other route (``match`` is ``None``: a mount, a
# host, a router, FastAPI's included router), resolved the general way.
_Step = tuple[Callable[[str], Any] | None, Any, str, Any]


def _plan(routes: Iterable[Any]) -> tuple[_Step, ...]:
    """The routes in order, the ones matched by path and method alone prepared for that."""
    steps: list[_Step] = []
    for route in routes:
        pattern = getattr(route, "path_regex", None)
        if (not callable(getattr(route, "effective_route_contexts", None)) and pattern is not None
                and getattr(route, "endpoint", None) is not None):
            steps.append((pattern.match, getattr(route, "methods", None), str(route.path), route))
        else:
            steps.append((None, None, "", route))
    return tuple(steps)


def _resolve_planned(steps: tuple[_Step, ...], scope: Scope
                     ) -> tuple[tuple[str, Mapping[str, Any], bool] | None, bool]:
    """What :func:`_find_route` answers, over a plan; and whether the answer depends on the
    method and path alone (only routes matched by path and method were consulted), so that it
    may be remembered for them."""
    path = _route_path(scope)
    method = scope["method"]
    for position, (match, methods, template, route) in enumerate(steps):
        if match is None:  # a route whose match may depend on more than the path
            return _find_route([step[3] for step in steps[position:]], scope, ""), False
        found = match(path)
        if found is None or (methods is not None and method not in methods):
            continue
        return (template, found.groupdict(), _marked(route)), True
    return None, True


class AuthzMiddleware:
    """Authenticate, bind the domain and enforce route-level rules for every HTTP request.

    Args:
        app: the ASGI application.
        guard: the :class:`Guard` (authorizer, identity and domain resolvers, options).
        rules: ``"METHOD /template"`` (or ``"/template"`` for every method) -> ``(type, action)``,
            or ``None`` for a public route.
        unmatched: a route the app has but ``rules`` does not mention and no salesauthz FastAPI
            dependency protects: ``"deny"`` (403, the default: fail closed) or ``"pass"``.
            Paths no route matches go to the app (its 404); for an app without a Starlette
            router the table alone decides and ``unmatched`` applies to them too.
        public: extra public route templates (shorthand for ``rules[template] = None``).
        on_error: ``(scope, error) -> Problem`` for 401/403/404 answers (default: the guard's
            RFC 9457 problem body).
    """

    def __init__(self, app: ASGIApp, guard: Guard, *, rules: Mapping[str, Requirement] | None = None,
                 unmatched: Literal["deny", "pass"] = "deny", public: Iterable[str] = (),
                 on_error: ErrorHook | None = None) -> None:
        self.table = RouteTable.for_middleware(rules, unmatched, public)
        self.app = app
        self.guard = guard
        self.unmatched = unmatched
        self.on_error: ErrorHook = on_error if on_error is not None else self._problem
        # The app's routes, planned once (again if the list is replaced or grows), and the
        # routes of recent requests: resolving a route walks the app's routes, which costs
        # more than the rest of the middleware together.
        self._planned_from: Any = None
        self._planned_length = -1
        self._steps: tuple[_Step, ...] = ()
        self._recent: dict[tuple[str, str, str], _Resolved | None] = {}
        self._declared: dict[tuple[str, str], RouteMatch | None] = {}

    def _problem(self, scope: Scope, error: AuthorizationError) -> Problem:
        return self.guard.problem(error, instance=scope.get("path"))

    def _route(self, scope: Scope) -> _Resolved | None:
        """The route the request is for (``None``: no route matches)."""
        method = scope["method"]
        routes = getattr(scope.get("app") or self.app, "routes", None)
        if routes is None:
            found = self.table.match(method, scope["path"])
            if found is None:
                return None
            return _Resolved(found.template, found.params, True, found.requirement, False)
        if routes is not self._planned_from or len(routes) != self._planned_length:
            self._steps = _plan(routes)
            self._planned_from, self._planned_length = routes, len(routes)
            self._recent.clear()
        key = (method, scope.get("root_path", ""), scope["path"])
        recent = self._recent
        known: _Resolved | None = recent.get(key, _UNKNOWN)
        if known is not _UNKNOWN:
            return known
        routed, by_path = _resolve_planned(self._steps, scope)
        resolved = None
        if routed is not None:
            template, params, protected = routed
            declared = self._declared.get((method, template), _UNKNOWN)
            if declared is _UNKNOWN:  # one entry per route and method at most
                declared = self._declared[(method, template)] = self.table.for_template(method, template)
            # Read-only: a remembered route's parameters are handed to every request for it.
            resolved = _Resolved(template, MappingProxyType(dict(params)), declared is not None,
                                 declared.requirement if declared is not None else None, protected)
        if by_path:
            if len(recent) >= ROUTE_CACHE_SIZE:
                recent.clear()  # bounded; the routes in use come back at once
            recent[key] = resolved
        return resolved

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or _is_preflight(scope):
            await self.app(scope, receive, send)
            return
        route = self._route(scope)
        if route is not None and route.declared and route.requirement is None:  # a public route
            await self.app(scope, receive, send)
            return
        if route is None and getattr(scope.get("app") or self.app, "routes", None) is not None:
            await self.app(scope, receive, send)  # the app answers 404 / 405 itself
            return
        try:
            context = await context_for(self.guard, scope, route=route.template if route else None,
                                        path_params=route.params if route else None)
            if route is not None and route.requirement is not None:
                context.require(*route.requirement)
            elif (route is None or not route.protected) and self.unmatched == "deny":
                raise ForbiddenError("this route has no authorization rule", account=context.account,
                                     domain=context.domain)
        except AuthorizationError as error:
            await send_problem(send, self.on_error(scope, error))
            return
        # Handlers raise 401/403/404 errors from record-level checks; answer them here unless
        # the app already started its response (then there is nothing sensible left to send).
        # In this frame, not a helper coroutine's: every frame between the server and the app
        # is resumed each time the app's await resumes (a FastAPI request: about 20 times).
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except AuthorizationError as error:
            if started:
                raise
            await send_problem(send, self.on_error(scope, error))
