"""Async administration for asyncio applications (FastAPI, Starlette, aiohttp …).

An :class:`~salesauthz.Authorizer` answers ``check`` from memory in about a microsecond: that
never blocks an event loop, so :class:`AsyncAuthorizer` keeps it synchronous. What does block is
the store — administrative operations (a grant writes its rules and audit record in one
transaction, and may wait for another writer's lock), reloads, opening a store — and, in an
``async def`` handler, a blocking call stops every other request of the process until it
returns. :class:`AsyncAuthorizer` runs those calls in a worker thread (``asyncio.to_thread``)
and awaits them, so the loop keeps serving while the store works::

    authz = await AsyncAuthorizer.from_url("postgresql://…/crm")
    await authz.admin("alice", domain="acme").grant("rep_e2", "customer", ["export"], scope="own")
    authz.check("rep_e2", "export", Record("customer", owner="rep_e2"), domain="acme")  # sync

The wrapped authorizer is the same object a synchronous part of the application (or the
middleware's :class:`~salesauthz.middleware.Guard`) uses: it is thread-safe, changes are
serialised by its own lock, and a check after an awaited grant sees the grant.
"""

from __future__ import annotations

import asyncio
import functools
import os
from collections.abc import Callable, Collection, Coroutine, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, TypeVar

from ._rules import Rule
from .audit import AuditDraft, AuditRecord
from .authorizer import Authorizer
from .delegation import Admin, OffboardPlan
from .scopes import Coverage
from .values import Decision, Record, ScopeFilter, Share

if TYPE_CHECKING:
    from types import TracebackType

__all__ = ["AsyncAdmin", "AsyncAuthorizer", "AsyncOffboardPlan"]

P = ParamSpec("P")
T = TypeVar("T")


def _in_thread(method: Callable[Concatenate[Admin, P], T],
               ) -> Callable[Concatenate[AsyncAdmin, P], Coroutine[Any, Any, T]]:
    """``Admin.method`` as a coroutine method of :class:`AsyncAdmin` run in a worker thread
    (same arguments, same result, same exceptions)."""

    @functools.wraps(method)
    async def run(self: AsyncAdmin, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return await asyncio.to_thread(method, self.sync, *args, **kwargs)

    return run


class AsyncAdmin:
    """:class:`~salesauthz.Admin`'s operations as coroutines, each run in a worker thread: the
    authorization, escalation rule, atomic write and audit record are the synchronous ones."""

    def __init__(self, admin: Admin) -> None:
        self.sync = admin
        """The synchronous :class:`~salesauthz.Admin` (for code already off the event loop)."""

    @property
    def actor(self) -> str:
        return self.sync.actor

    @property
    def domain(self) -> str:
        return self.sync.domain

    create_account = _in_thread(Admin.create_account)
    assign_role = _in_thread(Admin.assign_role)
    unassign_role = _in_thread(Admin.unassign_role)
    grant = _in_thread(Admin.grant)
    revoke = _in_thread(Admin.revoke)
    grant_department = _in_thread(Admin.grant_department)
    revoke_department = _in_thread(Admin.revoke_department)
    move = _in_thread(Admin.move)
    freeze = _in_thread(Admin.freeze)
    deactivate = _in_thread(Admin.deactivate)
    unfreeze = _in_thread(Admin.unfreeze)
    reactivate = _in_thread(Admin.reactivate)
    create_department = _in_thread(Admin.create_department)
    move_department = _in_thread(Admin.move_department)
    rename_department = _in_thread(Admin.rename_department)
    delete_department = _in_thread(Admin.delete_department)
    add_role_permission = _in_thread(Admin.add_role_permission)
    remove_role_permission = _in_thread(Admin.remove_role_permission)
    delete_account = _in_thread(Admin.delete_account)
    create_role = _in_thread(Admin.create_role)
    delete_role = _in_thread(Admin.delete_role)
    extend_vocabulary = _in_thread(Admin.extend_vocabulary)
    add_auxiliary_department = _in_thread(Admin.add_auxiliary_department)
    remove_auxiliary_department = _in_thread(Admin.remove_auxiliary_department)
    set_reports_to = _in_thread(Admin.set_reports_to)
    set_attribute = _in_thread(Admin.set_attribute)

    async def offboard(self, account: str, *, transfer_to: str) -> AsyncOffboardPlan:
        """:meth:`Admin.offboard <salesauthz.Admin.offboard>` (it freezes the account now), with
        the plan's ``apply`` a coroutine too."""
        plan = await asyncio.to_thread(self.sync.offboard, account, transfer_to=transfer_to)
        return AsyncOffboardPlan(plan)


class AsyncOffboardPlan:
    """An :class:`~salesauthz.OffboardPlan` whose :meth:`apply` is awaited."""

    def __init__(self, plan: OffboardPlan) -> None:
        self.sync = plan
        self.account = plan.account
        self.transfer_to = plan.transfer_to
        self.records = plan.records
        self.sub_accounts = plan.sub_accounts
        self.grants = plan.grants
        self.reports = plan.reports

    @property
    def applied(self) -> list[AuditRecord]:
        return self.sync.applied

    async def apply(self) -> list[AuditRecord]:
        """Carry out the plan atomically (re-checked against the rules at that moment)."""
        return await asyncio.to_thread(self.sync.apply)


class AsyncAuthorizer:
    """An :class:`~salesauthz.Authorizer` for asyncio code: decisions stay synchronous (they
    never block), everything that reaches the store is awaited in a worker thread.

    Build one with :meth:`from_url` / :meth:`from_directory` (awaited: opening and loading a
    store blocks), or wrap an authorizer the application already has.
    """

    def __init__(self, authorizer: Authorizer) -> None:
        self.sync = authorizer
        """The wrapped :class:`~salesauthz.Authorizer`: give it to a
        :class:`~salesauthz.middleware.Guard`, or to synchronous code."""

    @classmethod
    async def from_url(cls, url: str, *, domains: Collection[str] | None = None, watch: str | None = None,
                       **options: Any) -> AsyncAuthorizer:
        """:meth:`Authorizer.from_url <salesauthz.Authorizer.from_url>`, awaited."""
        return cls(await asyncio.to_thread(functools.partial(
            Authorizer.from_url, url, domains=domains, watch=watch, **options)))

    @classmethod
    async def from_directory(cls, path: str | os.PathLike[str], **options: Any) -> AsyncAuthorizer:
        """:meth:`Authorizer.from_directory <salesauthz.Authorizer.from_directory>`, awaited."""
        return cls(await asyncio.to_thread(functools.partial(Authorizer.from_directory, path, **options)))

    # -- decisions: from memory, synchronous ------------------------------------------------

    def check(self, account: str, action: str, record: Record, *, domain: str) -> bool:
        """:meth:`Authorizer.check <salesauthz.Authorizer.check>` (synchronous: it never blocks)."""
        return self.sync.check(account, action, record, domain=domain)

    def check_many(self, requests: Iterable[tuple[str, str, Record]], *, domain: str) -> list[bool]:
        return self.sync.check_many(requests, domain=domain)

    def scope_filter(self, account: str, action: str, type: str, *, domain: str) -> ScopeFilter:
        return self.sync.scope_filter(account, action, type, domain=domain)

    def explain(self, account: str, action: str, record: Record, *, domain: str) -> Decision:
        return self.sync.explain(account, action, record, domain=domain)

    def effective_permissions(self, account: str, *, domain: str) -> dict[tuple[str, str], Coverage]:
        return self.sync.effective_permissions(account, domain=domain)

    def check_share(self, actor: str, record: Record, share: Share, *, domain: str) -> bool:
        return self.sync.check_share(actor, record, share, domain=domain)

    def explain_share(self, actor: str, record: Record, share: Share, *, domain: str) -> Decision:
        return self.sync.explain_share(actor, record, share, domain=domain)

    # -- what reaches the store: awaited ----------------------------------------------------

    def admin(self, actor: str, *, domain: str, audit_denied: bool = False,
              context: Mapping[str, Any] | None = None) -> AsyncAdmin:
        """Administrative operations by ``actor`` (see :class:`AsyncAdmin`)."""
        return AsyncAdmin(self.sync.admin(actor, domain=domain, audit_denied=audit_denied,
                                          context=context))

    async def reload(self, domains: Collection[str] | None = None) -> None:
        """:meth:`Authorizer.reload <salesauthz.Authorizer.reload>`, awaited."""
        await asyncio.to_thread(self.sync.reload, domains)

    async def apply_changes(self, added: Iterable[Rule] = (), removed: Iterable[Rule] = (), *,
                            audit: Sequence[AuditDraft] = ()) -> list[AuditRecord]:
        """:meth:`Authorizer.apply_changes <salesauthz.Authorizer.apply_changes>`, awaited."""
        return await asyncio.to_thread(functools.partial(self.sync.apply_changes, list(added), list(removed),
                                                         audit=audit))

    async def run(self, function: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Any other blocking call, in a worker thread: ``await authz.run(authz.sync.audit.query,
        domain="acme")``."""
        return await asyncio.to_thread(function, *args, **kwargs)

    async def close(self) -> None:
        """Stop watchers and release the store's connections, awaited."""
        await asyncio.to_thread(self.sync.close)

    async def __aenter__(self) -> AsyncAuthorizer:
        return self

    async def __aexit__(self, kind: type[BaseException] | None, error: BaseException | None,
                        traceback: TracebackType | None) -> None:
        await self.close()
