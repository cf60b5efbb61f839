"""FastAPI dependencies: route-level requirements, record-level checks and list filters.

```python
web = FastAPIAuthz(guard)
web.install(app)                                  # 401/403/404 as RFC 9457 problem JSON

@app.get("/customers")
def list_customers(flt: ScopeFilter = Depends(web.scope_filter("customer", "read"))): ...

@app.put("/customers/{customer_id}")
def update(customer: Customer = Depends(web.record("update", load_customer, customer_record))): ...

@app.delete("/customers/{customer_id}", dependencies=[Depends(web.require("customer", "delete"))])
def delete(...): ...
```

The dependencies work on their own or behind :class:`~salesauthz.middleware.asgi.AuthzMiddleware`
(then they reuse the identity it established, and it treats routes using them as protected).
"""

# No ``from __future__ import annotations`` here: FastAPI reads the dependencies' annotations at
# run time, and they refer to closure variables.
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse

from salesauthz.errors import AuthorizationError, NotFoundError
from salesauthz.values import Record, ScopeFilter

from ._core import MARKER, Guard, RequestAuthz
from .asgi import context_for

__all__ = ["FastAPIAuthz"]

T = TypeVar("T")


def _mark(function: Callable[..., Any]) -> Callable[..., Any]:
    setattr(function, MARKER, True)
    return function


class FastAPIAuthz:
    """FastAPI integration for one :class:`~salesauthz.middleware.Guard`."""

    def __init__(self, guard: Guard) -> None:
        self.guard = guard

        async def current(request: Request) -> RequestAuthz:
            route = request.scope.get("route")
            return await context_for(guard, request.scope, route=getattr(route, "path", None),
                                     path_params=request.path_params)

        self.context: Callable[[Request], Awaitable[RequestAuthz]] = _mark(current)
        """Dependency: the request's :class:`RequestAuthz` (401/403 when there is no identity)."""

    def install(self, app: FastAPI) -> None:
        """Answer :class:`~salesauthz.errors.AuthorizationError` with problem JSON (401/403/404)."""

        async def handle(request: Request, error: Exception) -> JSONResponse:
            assert isinstance(error, AuthorizationError)
            problem = self.guard.problem(error, instance=request.url.path)
            return JSONResponse(problem.body, status_code=problem.status, headers=dict(problem.headers),
                                media_type=problem.content_type)

        app.add_exception_handler(AuthorizationError, handle)

    def require(self, type: str, action: str) -> Callable[..., Awaitable[RequestAuthz]]:
        """Dependency: the account must be able to ``action`` some ``type`` record (else 403)."""
        current = self.context

        async def requirement(context: Annotated[RequestAuthz, Depends(current)]) -> RequestAuthz:
            context.require(type, action)
            return context

        return _mark(requirement)

    def scope_filter(self, type: str, action: str = "read") -> Callable[..., Awaitable[ScopeFilter]]:
        """Dependency: the :class:`ScopeFilter` of the account for a list view. An empty filter
        is not an error (the list is simply empty); render it with ``scope_clause``."""
        current = self.context

        async def scoped(context: Annotated[RequestAuthz, Depends(current)]) -> ScopeFilter:
            return context.scope_filter(action, type)

        return _mark(scoped)

    def record(self, action: str, load: Callable[..., Any], to_record: Callable[[Any], Record], *,
               hide: bool | None = None) -> Callable[..., Awaitable[Any]]:
        """Dependency: load a record with ``load`` (itself a FastAPI dependency, so it can take
        path parameters and a database session), then authorize ``action`` on it.

        Missing (``load`` returns ``None``) is 404; denied is 403, or 404 when hiding is on
        (``hide``, default ``Guard.hide_denied``). Returns what ``load`` returned.
        """
        current = self.context

        async def loaded(context: Annotated[RequestAuthz, Depends(current)],
                         found: Annotated[Any, Depends(load)]) -> Any:
            if found is None:
                raise NotFoundError("no such record")
            context.authorize(action, to_record(found), hide=hide)
            return found

        return _mark(loaded)
