"""Fixtures shared by the web integration tests."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest

from salesauthz.middleware import DECISION_LOGGER, HS256Tokens

from . import djangoapp  # noqa: F401 - configures Django before any test module imports models

SECRET = "test-secret-that-is-long-enough-for-hs256-0123456789"


@pytest.fixture(scope="session")
def tokens() -> HS256Tokens:
    return HS256Tokens(SECRET)


def bearer(tokens: HS256Tokens, account: str, domain: str = "acme") -> dict[str, str]:
    return {"Authorization": "Bearer " + tokens.mint(account, domain=domain)}


class DecisionRecords:
    """The decision records logged while a test runs (their ``decision`` field dicts)."""

    def __init__(self, handler: logging.Handler, records: list[logging.LogRecord]) -> None:
        self.handler = handler
        self.records = records

    @property
    def decisions(self) -> list[dict[str, Any]]:
        return [dict(getattr(r, "decision")) for r in self.records]  # noqa: B009 - set via extra=


@pytest.fixture
def decisions() -> Iterator[DecisionRecords]:
    records: list[logging.LogRecord] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    logger = logging.getLogger(DECISION_LOGGER)
    handler = Collect(logging.INFO)
    previous = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield DecisionRecords(handler, records)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous)
