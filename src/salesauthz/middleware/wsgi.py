"""WSGI middleware (Flask, or any WSGI app): authenticate, bind the domain, enforce route rules.

```python
app.wsgi_app = WSGIAuthzMiddleware(app.wsgi_app, guard, rules={
    "GET /customers/{id}": ("customer", "read"),
    "/health": None,                      # public
})
```

The per-request :class:`~salesauthz.middleware.RequestAuthz` is left in
``environ["salesauthz"]`` (the Flask extension picks it up from there). Identity resolvers get
the WSGI ``environ`` as ``RequestInfo.native``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Literal

from salesauthz.errors import AuthorizationError, ForbiddenError

from ._core import Guard, Problem, RequestAuthz
from ._routes import Requirement, RouteTable
from .identity import RequestInfo

__all__ = ["ENVIRON_KEY", "WSGIAuthzMiddleware", "request_info"]

ENVIRON_KEY = "salesauthz"

StartResponse = Callable[..., Any]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]
ErrorHook = Callable[[dict[str, Any], AuthorizationError], Problem]


def _headers(environ: Mapping[str, Any]) -> dict[str, str]:
    headers = {key[5:].replace("_", "-").lower(): str(value)
               for key, value in environ.items() if key.startswith("HTTP_")}
    for key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
        if environ.get(key):
            headers[key.replace("_", "-").lower()] = str(environ[key])
    return headers


def request_info(environ: dict[str, Any], *, route: str | None = None,
                 path_params: Mapping[str, Any] | None = None) -> RequestInfo:
    headers = _headers(environ)
    host = headers.get("host") or str(environ.get("SERVER_NAME", ""))
    return RequestInfo(method=str(environ.get("REQUEST_METHOD", "GET")).upper(),
                       path=str(environ.get("PATH_INFO", "/")) or "/", host=host, headers=headers,
                       path_params=path_params or {}, route=route, native=environ,
                       client=str(environ["REMOTE_ADDR"]) if environ.get("REMOTE_ADDR") else None)


def is_preflight(method: str, headers: Mapping[str, str]) -> bool:
    return method == "OPTIONS" and "origin" in headers and "access-control-request-method" in headers


def problem_response(problem: Problem, start_response: StartResponse) -> list[bytes]:
    body = json.dumps(problem.body).encode()
    start_response(f"{problem.status} {problem.body.get('title', '')}".rstrip(),
                   [("Content-Type", problem.content_type), ("Content-Length", str(len(body))),
                    *problem.headers])
    return [body]


class WSGIAuthzMiddleware:
    """The WSGI counterpart of :class:`~salesauthz.middleware.asgi.AuthzMiddleware`.

    The rules table alone says which routes exist for it: a path no entry matches is denied
    (``unmatched="deny"``, after authentication) or passed to the app (``"pass"``).
    """

    def __init__(self, app: WSGIApp, guard: Guard, *, rules: Mapping[str, Requirement] | None = None,
                 unmatched: Literal["deny", "pass"] = "deny", public: Iterable[str] = (),
                 on_error: ErrorHook | None = None) -> None:
        self.table = RouteTable.for_middleware(rules, unmatched, public)
        self.app = app
        self.guard = guard
        self.unmatched = unmatched
        self.on_error: ErrorHook = on_error if on_error is not None else self._problem

    def _problem(self, environ: dict[str, Any], error: AuthorizationError) -> Problem:
        return self.guard.problem(error, instance=str(environ.get("PATH_INFO", "/")))

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        method = str(environ.get("REQUEST_METHOD", "GET")).upper()
        path = str(environ.get("PATH_INFO", "/")) or "/"
        found = self.table.match(method, path)
        if (found is not None and found.requirement is None) or is_preflight(method, _headers(environ)):
            return self.app(environ, start_response)
        try:
            info = request_info(environ, route=found.template if found else None,
                                path_params=found.params if found else None)
            context = self.guard.resolve(info)
            environ[ENVIRON_KEY] = context
            if found is not None and found.requirement is not None:
                context.require(*found.requirement)
            elif found is None and self.unmatched == "deny":
                raise ForbiddenError("this route has no authorization rule", account=context.account,
                                     domain=context.domain)
        except AuthorizationError as error:
            return problem_response(self.on_error(environ, error), start_response)
        started = False

        def tracking_start_response(*args: Any) -> Any:
            nonlocal started
            started = True
            return start_response(*args)

        try:
            return self.app(environ, tracking_start_response)
        except AuthorizationError as error:  # raised by a handler's record-level check
            if started:
                raise
            return problem_response(self.on_error(environ, error), start_response)


def context_of(environ: Mapping[str, Any]) -> RequestAuthz | None:
    """The request's :class:`RequestAuthz`, if the middleware bound one."""
    found = environ.get(ENVIRON_KEY)
    return found if isinstance(found, RequestAuthz) else None
