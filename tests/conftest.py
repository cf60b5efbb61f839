"""Shared fixtures: Hypothesis profiles, the sample organisation, real-service discovery."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from salesauthz import Authorizer

ROOT = Path(__file__).resolve().parent.parent
POLICIES = ROOT / "policies"

# "ci" is the default; "long" multiplies every example budget by 20 (HYPOTHESIS_PROFILE=long).
settings.register_profile("ci", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("long", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", deadline=None, max_examples=20)
PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "ci")
settings.load_profile(PROFILE)


def examples(n: int) -> int:
    """The example budget for a property: ``n`` in CI, 20 × n under the long profile."""
    if PROFILE == "long":
        return n * 20
    if PROFILE == "dev":
        return max(5, n // 20)
    return n


REQUIRE_SERVICES = os.environ.get("SALESAUTHZ_REQUIRE_SERVICES") == "1"


def service_available(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


def require_service(name: str, host: str, port: int) -> None:
    """Skip (with the reason) when a real service is absent, or fail when CI demands it."""
    if service_available(host, port):
        return
    message = f"{name} is not reachable at {host}:{port}"
    if REQUIRE_SERVICES:
        pytest.fail(message + " and SALESAUTHZ_REQUIRE_SERVICES=1", pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def sample() -> Authorizer:
    """The bundled sample organisation (read-only: tests that change rules build their own)."""
    return Authorizer.from_directory(POLICIES)


@pytest.fixture
def fresh_sample() -> Authorizer:
    """A private copy of the sample organisation that a test may change."""
    return Authorizer.from_directory(POLICIES)


# Tests that measure propagation or fault handling against wall-clock deadlines (several real
# processes, proxies that delay and cut connections). scripts/test.sh runs the rest on every core
# and then these alone, so that a busy neighbour does not eat their margins.
SERIAL_MODULES = frozenset({
    "tests/adapters/test_watch.py", "tests/adapters/test_watch_faults.py",
    "tests/adapters/test_multiserver.py", "tests/adapters/test_multiserver_stress.py",
    "tests/adapters/test_faults.py", "tests/adapters/test_timeouts.py",
    "tests/engine/test_concurrency.py", "tests/examples/test_crm_api_workers.py",
    "tests/adapters/test_external_writes.py", "tests/test_aio.py", "tests/middleware/test_jwks.py",
})


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.relative_to(ROOT).as_posix() in SERIAL_MODULES:
            item.add_marker(pytest.mark.serial)
