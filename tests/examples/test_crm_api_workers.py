"""The example CRM as documented for production: ``uvicorn --factory --workers 2`` on a shared
PostgreSQL store with a Redis watcher. A change made through one worker is seen by requests the
other worker serves."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from salesauthz.middleware import HS256Tokens
from tests.adapters._services import REDIS_HOST, REDIS_PORT, postgres_schema
from tests.conftest import require_service

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.timeout(180)]

ROOT = Path(__file__).resolve().parents[2]
SECRET = "example-crm-workers-secret-0123456789-abcdefgh"
TOKENS = HS256Tokens(SECRET)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def two_workers() -> Iterator[str]:
    require_service("Redis", REDIS_HOST, REDIS_PORT)
    with postgres_schema() as url:
        port = free_port()
        env = {**os.environ, "CRM_TOKEN_SECRET": SECRET, "CRM_DATABASE_URL": url, "CRM_STORE_URL": url,
               "CRM_WATCH_URL": f"redis://{REDIS_HOST}:{REDIS_PORT}/0?channel=crm_{uuid.uuid4().hex[:10]}",
               "CRM_STALENESS": "5"}
        server = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "examples.crm_api.app:create_app", "--factory",
             "--workers", "2", "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 90
            while True:
                try:
                    if httpx.get(base + "/health", timeout=2).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if server.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"the workers did not start:\n{server.communicate()[0]}")
                time.sleep(0.2)
            yield base
        finally:
            server.terminate()
            try:
                server.communicate(timeout=30)  # waits, and closes the pipe
            except subprocess.TimeoutExpired:
                server.kill()
                server.communicate()


def call(base: str, method: str, path: str, account: str) -> httpx.Response:
    """One request on a connection of its own (so that either worker may take it)."""
    token = TOKENS.mint(account, domain="acme")
    return httpx.request(method, base + path, headers={"Authorization": f"Bearer {token}"}, timeout=10)


def answers_by_worker(base: str, path: str, account: str, *, until: float) -> dict[str, int]:
    """The status each worker gives, asking until both have answered (or ``until``)."""
    seen: dict[str, int] = {}
    while len(seen) < 2 and time.monotonic() < until:
        response = call(base, "GET", path, account)
        seen[response.headers["x-served-by"]] = response.status_code
    return seen


def test_a_change_through_one_worker_is_seen_by_the_other(two_workers: str) -> None:
    base = two_workers
    before = answers_by_worker(base, "/customers/1", "rep_e1a", until=time.monotonic() + 30)
    assert list(before.values()) == [200, 200], before  # two workers, both allow
    frozen = call(base, "POST", "/accounts/rep_e1a/freeze", "alice")
    assert frozen.status_code == 200, frozen.text
    assert frozen.json()["operation"] == "freeze"
    changed_by = frozen.headers["x-served-by"]
    # Within a second, the other worker denies too (and keeps denying).
    deadline = time.monotonic() + 1.0
    other_denied = False
    while time.monotonic() < deadline and not other_denied:
        response = call(base, "GET", "/customers/1", "rep_e1a")
        other_denied = response.headers["x-served-by"] != changed_by and response.status_code != 200
    assert other_denied
    after = answers_by_worker(base, "/customers/1", "rep_e1a", until=time.monotonic() + 30)
    assert sorted(after) == sorted(before)
    assert 200 not in after.values(), after
    # Administration is decided on the store's rules whichever worker takes it: a second freeze
    # is refused by both, and the unfreeze (through any worker) reaches both.
    for _ in range(4):
        assert call(base, "POST", "/accounts/rep_e1a/freeze", "alice").status_code == 403
    assert call(base, "POST", "/accounts/rep_e1a/unfreeze", "alice").status_code == 200
    time.sleep(0.5)
    again = answers_by_worker(base, "/customers/1", "rep_e1a", until=time.monotonic() + 30)
    assert list(again.values()) == [200, 200], again
    # A rep cannot administer: refused by the delegation rules, not by a stale worker.
    assert call(base, "POST", "/accounts/rep_e1b/freeze", "rep_e1a").status_code == 403
