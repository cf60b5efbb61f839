"""Flask extension: ``@authz.require("customer", "update")``, record-level checks, list filters.

```python
authz = FlaskAuthz(app, guard=Guard(authorizer, identity=flask_user, domain=fixed_domain("acme")))

@app.put("/customers/<int:customer_id>")
@authz.require("customer", "update")
def update(customer_id: int):
    row = authz.authorize("update", load(customer_id), to_record)   # 404 / 403 / the row
    ...
```

401/403/404 errors become RFC 9457 problem JSON through a Flask error handler. The identity
comes from the guard's resolver; :func:`flask_user` reads Flask-Login's ``current_user`` or
``g.user``. Behind :class:`~salesauthz.middleware.wsgi.WSGIAuthzMiddleware` the extension reuses
the identity the middleware established.
"""

from __future__ import annotations

import functools
import importlib
import json
from collections.abc import Callable
from typing import Any, TypeVar, cast

from flask import Flask, Response, g, has_request_context, request

from salesauthz.errors import AuthorizationError, NotFoundError
from salesauthz.values import Record, ScopeFilter

from ._core import MARKER, Guard, RequestAuthz
from .identity import Identity, RequestInfo
from .wsgi import ENVIRON_KEY, is_preflight

__all__ = ["FlaskAuthz", "flask_user"]

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")
_G_KEY = "_salesauthz_context"


def flask_user(info: RequestInfo) -> Identity | None:
    """The identity of the logged-in user: Flask-Login's ``current_user`` when Flask-Login is
    installed and someone is logged in, else ``g.user``. A user object gives its account as
    ``get_id()`` (Flask-Login), ``account`` or ``username``, and may carry ``domain``; a plain
    string in ``g.user`` is the account name."""
    user: Any = None
    try:
        current_user = importlib.import_module("flask_login").current_user  # optional dependency
    except ImportError:
        current_user = None
    if getattr(current_user, "is_authenticated", False):
        user = current_user
    if user is None:
        user = g.get("user")
    if user is None or user is False:
        return None
    if isinstance(user, str):
        return Identity(user) if user else None
    account = None
    for attribute in ("account", "username"):
        account = account or getattr(user, attribute, None)
    if account is None and callable(getattr(user, "get_id", None)):
        account = user.get_id()
    if not account:
        return None
    return Identity(str(account), getattr(user, "domain", None))


def _request_info() -> RequestInfo:
    rule = request.url_rule
    return RequestInfo(method=request.method, path=request.path, host=request.host,
                       headers={k.lower(): v for k, v in request.headers.items()},
                       path_params=dict(request.view_args or {}),
                       route=rule.rule if rule is not None else None, native=request,
                       client=request.remote_addr or None)


class FlaskAuthz:
    """The Flask extension (``init_app`` style)."""

    def __init__(self, app: Flask | None = None, *, guard: Guard) -> None:
        self.guard = guard
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        app.extensions["salesauthz"] = self
        app.register_error_handler(AuthorizationError, self._handle)

    def _handle(self, error: AuthorizationError) -> Response:
        problem = self.guard.problem(error, instance=request.path if has_request_context() else None)
        response = Response(status=problem.status, content_type=problem.content_type)
        response.set_data(json.dumps(problem.body))
        for name, value in problem.headers:
            response.headers[name] = value
        return response

    def context(self) -> RequestAuthz:
        """The current request's :class:`RequestAuthz` (raises 401/403 errors)."""
        found = g.get(_G_KEY) or request.environ.get(ENVIRON_KEY)
        if isinstance(found, RequestAuthz):
            return found
        context = self.guard.resolve(_request_info())
        setattr(g, _G_KEY, context)
        return context

    def require(self, type: str, action: str) -> Callable[[F], F]:
        """View decorator: the account must be able to ``action`` some ``type`` record (else
        403; 401 without identity). CORS preflight requests pass untouched."""

        def decorate(view: F) -> F:
            @functools.wraps(view)
            def wrapper(*args: Any, **kwargs: Any) -> Any:
                if not is_preflight(request.method, {k.lower(): v for k, v in request.headers.items()}):
                    self.context().require(type, action)
                return view(*args, **kwargs)

            setattr(wrapper, MARKER, True)
            return cast(F, wrapper)

        return decorate

    def authorize(self, action: str, found: T | None, to_record: Callable[[T], Record] | None = None, *,
                  hide: bool | None = None) -> T:
        """Return ``found`` if the account may ``action`` it: ``None`` is 404; denied is 403 (or
        404 when hiding is on). ``to_record`` turns an app object into a :class:`Record`
        (not needed when ``found`` is one)."""
        if found is None:
            raise NotFoundError("no such record")
        record = to_record(found) if to_record is not None else found
        if not isinstance(record, Record):
            raise TypeError("authorize() needs a Record, or to_record to make one")
        self.context().authorize(action, record, hide=hide)
        return found

    def scope_filter(self, type: str, action: str = "read") -> ScopeFilter:
        """The account's :class:`ScopeFilter` for a list view."""
        return self.context().scope_filter(action, type)
