"""A small CRM API (customers, orders, notes) protected by salesauthz.

Every route is protected: route-level rules by the ASGI middleware, records by FastAPI
dependencies, lists by the account's scope filter rendered as a SQL ``WHERE`` clause.
Identities come from HS256 bearer tokens the server verifies (``python -m examples.crm_api token
ACCOUNT --domain acme`` mints one); the tenant is the token's ``tenant`` claim. Administrators
freeze accounts and assign roles through ``/accounts/...``, under salesauthz's delegation rules.

Configuration comes from the environment, so that ``create_app`` is a factory any number of
worker processes can call (``uvicorn examples.crm_api.app:create_app --factory --workers 4``):

* ``CRM_TOKEN_SECRET`` — signs the bearer tokens (required by the command line);
* ``CRM_DATABASE_URL`` — the CRM's own tables (default: an in-memory SQLite of this process;
  give several workers one database, e.g. ``postgresql://…`` or ``sqlite:////srv/crm.db``);
* ``CRM_STORE_URL`` — where salesauthz keeps the rules (default: ``policies/`` loaded in
  memory, private to the process); on first use the store gets ``policies/`` imported;
* ``CRM_WATCH_URL`` — how workers tell each other about changes (``redis://…`` or
  ``postgresql://…``), needed as soon as there is more than one process;
* ``CRM_STALENESS`` — seconds a worker may go without confirming its rules fresh before it
  denies everything (default 5).
"""

# No ``from __future__ import annotations``: FastAPI reads these annotations at run time.
import contextlib
import os
import secrets
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request, Response
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from salesauthz import AuditRecord, Authorizer, Coverage, Record, ScopeFilter, UnknownNameError
from salesauthz.errors import ConflictError
from salesauthz.filters.sqlalchemy import ShareColumns, scope_clause
from salesauthz.middleware import DecisionLog, Guard, HS256Tokens, RequestAuthz
from salesauthz.middleware.asgi import AuthzMiddleware, context_for
from salesauthz.middleware.fastapi import FastAPIAuthz

from .db import Customer, CustomerShare, Note, Order, open_database, seed

# The customers' relevant teams: list views let shared customers through (the `shared` scope).
CUSTOMER_SHARES = ShareColumns.of(CustomerShare, record_id="customer_id")

__all__ = ["POLICIES", "create_app", "open_authorizer"]

POLICIES = Path(__file__).resolve().parents[2] / "policies"

# Route-level rules, by route template. Record-level checks happen in the handlers' dependencies.
ROUTE_RULES: dict[str, tuple[str, str] | None] = {
    "GET /health": None,
    "GET /customers": ("customer", "read"),
    "POST /customers": ("customer", "create"),
    "GET /customers/{customer_id}": ("customer", "read"),
    "PUT /customers/{customer_id}": ("customer", "update"),
    "DELETE /customers/{customer_id}": ("customer", "delete"),
    "GET /customers/{customer_id}/notes": ("customer", "read"),
    "POST /customers/{customer_id}/notes": ("note", "create"),
    "GET /orders": ("order", "read"),
    "POST /orders": ("order", "create"),
    "GET /orders/{order_id}": ("order", "read"),
    "POST /orders/{order_id}/approve": ("order", "approve"),
    # Administration: the actor must manage some account; the operation itself decides the rest.
    "POST /accounts/{account}/freeze": ("account", "manage"),
    "POST /accounts/{account}/unfreeze": ("account", "manage"),
    "PUT /accounts/{account}/roles/{role}": ("account", "manage"),
    "DELETE /accounts/{account}/roles/{role}": ("account", "manage"),
}


class CustomerIn(BaseModel):
    name: str = Field(min_length=1, max_length=200)


class CustomerChanges(BaseModel):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    phone: str | None = Field(default=None, max_length=40)
    contract_value: int | None = Field(default=None, ge=0)


CUSTOMER_FIELDS = ("id", "name", "owner", "department", "phone", "contract_value")


def customer_fields(row: Customer) -> dict[str, Any]:
    return {name: getattr(row, name) for name in CUSTOMER_FIELDS}


class OrderOut(BaseModel):
    id: int
    customer_id: int
    amount: int
    status: str
    owner: str


class OrderIn(BaseModel):
    customer_id: int
    amount: int = Field(gt=0)


class NoteOut(BaseModel):
    id: int
    author: str
    text: str


class NoteIn(BaseModel):
    text: str = Field(min_length=1, max_length=2000)


def customer_record(row: Customer) -> Record:
    return Record("customer", owner=row.owner, department=row.department, id=str(row.id))


def order_record(row: Order) -> Record:
    return Record("order", owner=row.owner, department=row.department, id=str(row.id))


class _OpenAccess:
    """The same dependencies with authorization switched off: tokens are still verified, but every
    check passes and lists are unfiltered. Only for the overhead benchmark's baseline."""

    def __init__(self, guard: Guard) -> None:
        async def current(request: Request) -> RequestAuthz:
            return await context_for(guard, request.scope)

        self.context = current

    def require(self, type: str, action: str) -> Any:
        return self.context

    def scope_filter(self, type: str, action: str = "read") -> Any:
        current = self.context

        async def everything(context: Annotated[RequestAuthz, Depends(current)]) -> ScopeFilter:
            return ScopeFilter(context.account, action, type, context.domain, Coverage(everything=True))

        return everything

    def record(self, action: str, load: Any, to_record: Any, *, hide: bool | None = None) -> Any:
        current = self.context

        async def loaded(context: Annotated[RequestAuthz, Depends(current)],
                         found: Annotated[Any, Depends(load)]) -> Any:
            if found is None:
                from salesauthz.errors import NotFoundError

                raise NotFoundError("no such record")
            return found

        return loaded


def open_authorizer(policies: Path = POLICIES, *, store_url: str | None = None, watch_url: str | None = None,
                    staleness: float | None = None) -> Authorizer:
    """The rules: ``policies`` in memory, or the store at ``store_url`` (default:
    ``CRM_STORE_URL``) followed through ``watch_url`` (``CRM_WATCH_URL``) — importing
    ``policies`` into the store first if it holds no rules yet."""
    store_url = store_url if store_url is not None else os.environ.get("CRM_STORE_URL")
    if not store_url:
        return Authorizer.from_directory(policies)
    watch_url = watch_url if watch_url is not None else os.environ.get("CRM_WATCH_URL") or None
    if staleness is None:
        staleness = float(os.environ.get("CRM_STALENESS") or 5.0)
    _import_once(store_url, policies)
    return Authorizer.from_url(store_url, watch=watch_url, staleness=staleness)


def _import_once(store_url: str, policies: Path) -> None:
    """Import ``policies`` into an empty store. Workers starting together race for it: the
    import is a compare-and-set on "no domain changed yet", so exactly one of them writes."""
    from salesauthz.adapters import open_adapter
    from salesauthz.audit import AuditDraft
    from salesauthz.models import load_directory

    loaded = load_directory(policies)
    store = open_adapter(store_url)
    try:
        if store.list_domains():
            return
        drafts = [AuditDraft(time.time(), "system:seed", domain, "import", policies.name,
                             detail=f"the example CRM imported {policies}")
                  for domain in loaded.domains]
        # Another worker may have imported them a moment ago: then this one writes nothing.
        with contextlib.suppress(ConflictError):
            store.apply(list(loaded.rules), [], drafts, expected=dict.fromkeys(loaded.domains, 0))
    finally:
        store.close()


def create_app(*, secret: str | None = None, database_url: str | None = None, enforce: bool = True,
               hide_denied: bool = True, debug: bool = False, policies: Path = POLICIES,
               decision_log: DecisionLog | None = None, cors_origins: Sequence[str] = (),
               authz: Authorizer | None = None, route_middleware: bool = True) -> FastAPI:
    """Build the API (every argument has a default, read from the environment where it says so,
    so that ``uvicorn --factory`` can call it in each worker). ``secret`` signs the bearer tokens
    (default: ``CRM_TOKEN_SECRET`` or a random one); ``database_url`` holds the CRM's tables
    (default: ``CRM_DATABASE_URL`` or an in-memory SQLite); the rules come from ``authz`` or
    :func:`open_authorizer`; ``enforce=False`` builds the benchmark baseline without
    authorization, and ``route_middleware=False`` the same app without its route-level
    middleware (every route is still protected by its dependencies; for measuring what the
    middleware costs)."""
    authz = authz if authz is not None else open_authorizer(policies)
    engine: Engine = open_database(database_url or os.environ.get("CRM_DATABASE_URL") or "sqlite://")
    seed(engine, authz)
    tokens = HS256Tokens(secret or os.environ.get("CRM_TOKEN_SECRET") or secrets.token_urlsafe(48))
    guard = Guard(authz, identity=tokens, hide_denied=hide_denied, debug=debug, decision_log=decision_log)
    web: Any = FastAPIAuthz(guard) if enforce else _OpenAccess(guard)

    app = FastAPI(title="salesauthz example CRM", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.authz = authz
    app.state.tokens = tokens
    app.state.engine = engine
    if cors_origins:  # browsers' preflight requests pass the authorization middleware untouched
        app.add_middleware(CORSMiddleware, allow_origins=list(cors_origins), allow_methods=["*"],
                           allow_headers=["Authorization", "Content-Type"])
    if enforce:
        web.install(app)
        if route_middleware:
            app.add_middleware(AuthzMiddleware, guard=guard, rules=ROUTE_RULES)
    else:
        FastAPIAuthz(guard).install(app)  # still answer 401 for bad tokens
    worker = str(os.getpid())

    @app.middleware("http")
    async def served_by(request: Request, call_next: Any) -> Response:
        # Which worker process answered: lets a multi-worker run show every worker agreeing.
        response: Response = await call_next(request)
        response.headers["x-served-by"] = worker
        return response

    @app.exception_handler(UnknownNameError)
    async def unknown(request: Request, error: Exception) -> JSONResponse:
        return JSONResponse({"title": "Not Found", "status": 404, "detail": str(error)}, status_code=404,
                            media_type="application/problem+json")

    @app.exception_handler(ConflictError)
    async def conflict(request: Request, error: Exception) -> JSONResponse:
        # The rules kept changing under the decision: nothing was written; the client may retry.
        return JSONResponse({"title": "Conflict", "status": 409, "detail": str(error)}, status_code=409,
                            media_type="application/problem+json")

    def session() -> Iterator[Session]:
        with Session(engine) as db:
            yield db

    DB = Annotated[Session, Depends(session)]
    Context = Annotated[RequestAuthz, Depends(web.context)]

    def load_customer(customer_id: int, db: DB, context: Context) -> Customer | None:
        row = db.get(Customer, customer_id)
        return row if row is not None and row.domain == context.domain else None

    def load_order(order_id: int, db: DB, context: Context) -> Order | None:
        row = db.get(Order, order_id)
        return row if row is not None and row.domain == context.domain else None

    def customer_dep(action: str) -> Any:
        return Depends(web.record(action, load_customer, customer_record))

    def order_dep(action: str) -> Any:
        return Depends(web.record(action, load_order, order_record))

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    def applied(record: AuditRecord) -> dict[str, Any]:
        return {"operation": record.operation, "target": record.target, "escalated": record.escalated,
                "sequence": record.sequence}

    @app.post("/accounts/{account}/freeze")
    def freeze(account: str, context: Context) -> dict[str, Any]:
        return applied(authz.admin(context.account, domain=context.domain).freeze(account))

    @app.post("/accounts/{account}/unfreeze")
    def unfreeze(account: str, context: Context) -> dict[str, Any]:
        return applied(authz.admin(context.account, domain=context.domain).unfreeze(account))

    @app.put("/accounts/{account}/roles/{role}")
    def assign_role(account: str, role: str, context: Context) -> dict[str, Any]:
        return applied(authz.admin(context.account, domain=context.domain).assign_role(account, role))

    @app.delete("/accounts/{account}/roles/{role}")
    def unassign_role(account: str, role: str, context: Context) -> dict[str, Any]:
        return applied(authz.admin(context.account, domain=context.domain).unassign_role(account, role))

    def shown(row: Customer, context: RequestAuthz) -> dict[str, Any]:
        """The customer as this account may see it: fields hidden by field rules are left out."""
        if not enforce:
            return customer_fields(row)
        return authz.redact(context.account, "customer", customer_fields(row), domain=context.domain)

    @app.get("/customers")
    def list_customers(db: DB, context: Context,
                       flt: Annotated[ScopeFilter, Depends(web.scope_filter("customer"))]
                       ) -> list[dict[str, Any]]:
        where = scope_clause(flt, owner=Customer.owner, department=Customer.department,
                             domain=Customer.domain, shares=CUSTOMER_SHARES,
                             record_id=Customer.id)
        rows = db.scalars(select(Customer).where(where).order_by(Customer.id))
        return [shown(r, context) for r in rows]

    @app.post("/customers", status_code=201)
    def create_customer(body: CustomerIn, db: DB, context: Context) -> dict[str, Any]:
        me = authz.account(context.account, domain=context.domain)
        department = (me.department if me is not None else None) or ""
        context.authorize("create", Record("customer", owner=context.account, department=department))
        row = Customer(domain=context.domain, name=body.name, owner=context.account, department=department)
        db.add(row)
        db.commit()
        return shown(row, context)

    @app.get("/customers/{customer_id}")
    def get_customer(context: Context, row: Annotated[Customer, customer_dep("read")]) -> dict[str, Any]:
        return shown(row, context)

    @app.put("/customers/{customer_id}")
    def update_customer(body: CustomerChanges, db: DB, context: Context,
                        row: Annotated[Customer, customer_dep("update")]) -> dict[str, Any]:
        changes = body.model_dump(exclude_unset=True)
        if enforce:  # every changed field must be writable (field rules: readonly / hidden)
            authz.check_write(context.account, "customer", customer_fields(row), changes,
                              domain=context.domain)
        for name, value in changes.items():
            setattr(row, name, value)
        db.commit()
        return shown(row, context)

    @app.delete("/customers/{customer_id}", status_code=204)
    def delete_customer(db: DB, row: Annotated[Customer, customer_dep("delete")]) -> None:
        db.delete(row)
        db.commit()

    @app.get("/customers/{customer_id}/notes")
    def list_notes(db: DB, row: Annotated[Customer, customer_dep("read")]) -> list[NoteOut]:
        # Notes are as visible as the customer they are about.
        notes = db.scalars(select(Note).where(Note.customer_id == row.id).order_by(Note.id))
        return [NoteOut.model_validate(n, from_attributes=True) for n in notes]

    @app.post("/customers/{customer_id}/notes", status_code=201)
    def add_note(body: NoteIn, db: DB, context: Context, customer_id: int) -> NoteOut:
        row = load_customer(customer_id, db, context)
        # A note belongs where its customer is: authorize note:create against the customer's owner.
        context.authorize("create", Record("note", owner=row.owner, department=row.department,
                                           id=str(row.id)) if row is not None else None)
        assert row is not None
        note = Note(domain=context.domain, customer_id=row.id, author=context.account, text=body.text)
        db.add(note)
        db.commit()
        return NoteOut.model_validate(note, from_attributes=True)

    @app.get("/orders")
    def list_orders(db: DB, flt: Annotated[ScopeFilter, Depends(web.scope_filter("order"))]
                    ) -> list[OrderOut]:
        where = scope_clause(flt, owner=Order.owner, department=Order.department, domain=Order.domain)
        rows = db.scalars(select(Order).where(where).order_by(Order.id))
        return [OrderOut.model_validate(r, from_attributes=True) for r in rows]

    @app.post("/orders", status_code=201)
    def create_order(body: OrderIn, db: DB, context: Context) -> OrderOut:
        customer = load_customer(body.customer_id, db, context)
        # An order is placed on a customer the account can read, and owned by the account.
        context.authorize("read", customer_record(customer) if customer is not None else None)
        assert customer is not None
        me = authz.account(context.account, domain=context.domain)
        department = (me.department if me is not None else None) or ""
        context.authorize("create", Record("order", owner=context.account, department=department))
        row = Order(domain=context.domain, customer_id=customer.id, amount=body.amount,
                    owner=context.account, department=department)
        db.add(row)
        db.commit()
        return OrderOut.model_validate(row, from_attributes=True)

    @app.get("/orders/{order_id}")
    def get_order(row: Annotated[Order, order_dep("read")]) -> OrderOut:
        return OrderOut.model_validate(row, from_attributes=True)

    @app.post("/orders/{order_id}/approve")
    def approve_order(db: DB, row: Annotated[Order, order_dep("approve")]) -> OrderOut:
        row.status = "approved"
        db.commit()
        return OrderOut.model_validate(row, from_attributes=True)

    return app
