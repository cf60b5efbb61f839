"""What the ``Admin`` tests on the sample organisation share: the organisation on a clock a test
may move, and ``refused`` (a refusal must change nothing)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import TypeVar

import pytest

from salesauthz import Authorizer

NOW = 1_900_000_000.0  # 2030-03-17
E = TypeVar("E", bound=BaseException)


@pytest.fixture
def clock() -> list[float]:
    return [NOW]


@pytest.fixture
def authz(clock: list[float]) -> Authorizer:
    return Authorizer.from_directory("policies", clock=lambda: clock[0])


def at(seconds: float) -> datetime:
    """``seconds`` after ``NOW``."""
    return datetime.fromtimestamp(NOW + seconds, UTC)


def refused(authz: Authorizer, error: type[E] | tuple[type[E], ...],
            attempt: Callable[[], object]) -> E:
    """Run ``attempt``: it must raise ``error`` and leave rules and audit trail as they were.
    Returns the exception, typed as raised (an ``EscalationError``'s ``missing`` is checked)."""
    rules, trail = authz.rules(), authz.audit.records()
    with pytest.raises(error) as caught:
        attempt()
    assert authz.rules() == rules
    assert authz.audit.records() == trail
    return caught.value
