"""``salesauthz.aio``: administration awaited in a worker thread, under FastAPI, while the event
loop keeps serving — measured as the longest gap of a ticking task during a store write that is
genuinely slow (another connection holds SQLite's write lock)."""

from __future__ import annotations

import asyncio
import inspect
import sqlite3
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from salesauthz import Admin, Authorizer, EscalationError, PolicyError, Record
from salesauthz.aio import AsyncAdmin, AsyncAuthorizer
from salesauthz.checker.storage_commands import import_directory
from tests.conftest import POLICIES

HOLD = 0.8  # seconds another writer keeps the store locked
TICK = 0.005


def _store(tmp_path: Path) -> tuple[str, Path]:
    database = tmp_path / "rules.db"
    url = f"sqlite:///{database}"
    import_directory(POLICIES, url)
    return url, database


@asynccontextmanager
async def _ticking() -> AsyncIterator[list[float]]:
    """A task ticking every few milliseconds; yields the gaps between its ticks (the loop's
    worst stall is the largest)."""
    gaps: list[float] = []
    stop = asyncio.Event()

    async def tick() -> None:
        last = time.perf_counter()
        while not stop.is_set():
            await asyncio.sleep(TICK)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    task = asyncio.create_task(tick())
    await asyncio.sleep(0.05)
    try:
        yield gaps
    finally:
        stop.set()
        await task


def _lock_the_store(database: Path, locked: threading.Event) -> threading.Thread:
    """Another writer: takes SQLite's write lock and keeps it for ``HOLD`` seconds."""

    def hold() -> None:
        connection = sqlite3.connect(database, isolation_level=None)
        try:
            connection.execute("BEGIN IMMEDIATE")
            locked.set()
            time.sleep(HOLD)
            connection.execute("COMMIT")
        finally:
            connection.close()

    thread = threading.Thread(target=hold)
    thread.start()
    return thread


def _app(authz: AsyncAuthorizer, *, blocking: bool) -> FastAPI:
    app = FastAPI()

    @app.post("/grants/{account}")
    async def grant(account: str) -> dict[str, int]:
        if blocking:  # the mistake this module exists for: a store write in an async handler
            record = authz.sync.admin("alice", domain="acme").grant(account, "customer", ["export"],
                                                                  scope="own")
        else:
            record = await authz.admin("alice", domain="acme").grant(account, "customer", ["export"],
                                                                     scope="own")
        return {"sequence": record.sequence}

    @app.get("/may/{account}/{action}")
    async def may(account: str, action: str) -> dict[str, bool]:
        return {"allowed": authz.check(account, action, Record("customer", owner=account), domain="acme")}

    return app


async def _slow_grant(url: str, database: Path, *, blocking: bool) -> tuple[float, float, float, bool]:
    """Grant through the app while another writer holds the store; returns the loop's worst
    stall, how long the grant took, how long a concurrent check took, and the check after."""
    async with AsyncAuthorizer(await asyncio.to_thread(Authorizer.from_url, url)) as authz:
        transport = httpx.ASGITransport(app=_app(authz, blocking=blocking))
        async with httpx.AsyncClient(transport=transport, base_url="http://crm") as client:
            locked = threading.Event()
            holder = _lock_the_store(database, locked)
            await asyncio.to_thread(locked.wait)
            async with _ticking() as gaps:
                start = time.perf_counter()
                granting = asyncio.create_task(client.post("/grants/rep_e2"))
                await asyncio.sleep(0.1)  # the grant is waiting for the lock now
                checked = time.perf_counter()
                answer = await client.get("/may/rep_e1a/read")
                check_time = time.perf_counter() - checked
                response = await granting
                grant_time = time.perf_counter() - start
            await asyncio.to_thread(holder.join)
            assert response.status_code == 200, response.text
            assert answer.json() == {"allowed": True}
            after = await client.get("/may/rep_e2/export")
            return max(gaps), grant_time, check_time, after.json()["allowed"]


def test_the_loop_keeps_serving_during_a_slow_store_write(tmp_path: Path) -> None:
    url, database = _store(tmp_path)
    stall, grant_time, check_time, allowed = asyncio.run(_slow_grant(url, database, blocking=False))
    assert grant_time >= HOLD * 0.8  # the write really waited for the other writer
    assert allowed  # and then it was applied: a check right after sees it
    assert check_time < 0.2  # a request made meanwhile was answered at once
    assert stall < 0.2, f"the event loop stalled {stall:.3f} s"


def test_the_control_a_blocking_grant_stalls_the_loop(tmp_path: Path) -> None:
    # The same request, calling the synchronous admin in the async handler: the loop stops for
    # the whole wait. (What the measurement above would show if the facade did not offload.)
    url, database = _store(tmp_path)
    stall, grant_time, _, allowed = asyncio.run(_slow_grant(url, database, blocking=True))
    assert allowed
    assert grant_time >= HOLD * 0.8
    assert stall >= HOLD * 0.5


def test_every_admin_operation_has_an_awaitable_twin() -> None:
    public = {name for name, _ in inspect.getmembers(Admin, inspect.isfunction) if not name.startswith("_")}
    for name in public:
        twin = getattr(AsyncAdmin, name, None)
        assert twin is not None, f"AsyncAdmin lacks {name}: add `{name} = _in_thread(Admin.{name})`"
        assert inspect.iscoroutinefunction(twin), name
        if name != "offboard":
            assert inspect.signature(twin).parameters.keys() == inspect.signature(getattr(Admin, name)
                                                                                  ).parameters.keys()
            assert twin.__doc__ == getattr(Admin, name).__doc__


async def _administer(url: str) -> list[str]:
    events: list[str] = []
    authz = await AsyncAuthorizer.from_url(url)
    try:
        admin = authz.admin("alice", domain="acme")
        assert (admin.actor, admin.domain) == ("alice", "acme")
        await admin.create_account("temp_1", department="east-2")
        await admin.assign_role("temp_1", "junior_rep")
        events.append("created")
        mine = Record("customer", owner="temp_1")
        assert authz.check("temp_1", "read", mine, domain="acme")
        await admin.freeze("temp_1")
        assert not authz.check("temp_1", "read", mine, domain="acme")
        await admin.unfreeze("temp_1")
        await admin.move("temp_1", department="east-1")
        await admin.assign_role("temp_1", "senior_rep")
        await admin.unassign_role("temp_1", "senior_rep")
        await admin.grant("temp_1", "customer", ["export"], scope="own")
        await admin.revoke("temp_1", "customer", ["export"])
        plan = await admin.offboard("temp_1", transfer_to="rep_e2")
        assert plan.account == "temp_1"
        assert await plan.apply() == plan.applied
        await admin.deactivate("temp_1")
        events.append("administered")
        # Refusals are the synchronous ones, raised by the awaited call.
        with pytest.raises(EscalationError):
            await authz.admin("mgr_east", domain="acme").grant("rep_e1a", "customer", ["delete"], scope="all")
        events.append("refused")
        # Decisions and questions stay synchronous.
        assert authz.check_many([("alice", "read", mine)], domain="acme") == [True]
        assert authz.scope_filter("rep_e1a", "read", "customer", domain="acme").account == "rep_e1a"
        assert authz.explain("alice", "read", mine, domain="acme").allowed
        assert ("customer", "read") in authz.effective_permissions("alice", domain="acme")
        # Other blocking work, and raw changes, awaited too.
        trail = await authz.run(authz.sync.audit.query, domain="acme", actor="alice")
        assert [r.operation for r in trail][-1] == "deactivate"
        rule = ("p", "rep_e2", "acme", "customer", "export", "own", "")
        await authz.apply_changes([rule])
        assert authz.check("rep_e2", "export", Record("customer", owner="rep_e2"), domain="acme")
        await authz.reload()
        await authz.apply_changes(removed=[rule])
        assert not authz.check("rep_e2", "export", Record("customer", owner="rep_e2"), domain="acme")
        events.append("done")
    finally:
        await authz.close()
    return events


def test_every_operation_through_the_facade(tmp_path: Path) -> None:
    url, _ = _store(tmp_path)
    assert asyncio.run(_administer(url)) == ["created", "administered", "refused", "done"]


def test_from_directory_and_a_directory_error(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with await AsyncAuthorizer.from_directory(POLICIES) as authz:
            assert authz.check("alice", "read", Record("customer"), domain="acme")
        with pytest.raises(PolicyError):
            await AsyncAuthorizer.from_directory(tmp_path)  # no documents

    asyncio.run(scenario())
