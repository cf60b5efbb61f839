"""Structured decision logs: one ``logging`` record per authorization decision.

Modelled on OPA's decision logs: each record carries a ``decision_id``, a timestamp, the
request id, the input (domain, account, action, type, record id, method, route), the result
(``allowed``) and what decided it (``rule``, ``role``), plus the decision latency. Record field
values other than the id are never logged (owners and departments are personal data of the
CRM's users; the rule that decided says enough).

Records go to the ``salesauthz.decisions`` logger at INFO with the fields in
``record.decision`` (a dict) and a JSON message, so both structured handlers and plain text
logs work. Nothing is computed when that logger is disabled for INFO, which is the default
when an application has not configured logging.
"""

from __future__ import annotations

import json
import logging
import random
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

__all__ = ["DECISION_LOGGER", "DecisionLog"]

DECISION_LOGGER = "salesauthz.decisions"


class DecisionLog:
    """Where and how often decisions are logged.

    Args:
        logger: the logger (default ``salesauthz.decisions``).
        sample_rate: the fraction of *allowed* decisions logged (0.0-1.0).
        deny_sample_rate: the fraction of denials logged (default all: they are rarer and are
            what an investigation needs).
        explain: look up the deciding rule (costs an explanation, ~15 µs, per logged decision).
        random: a ``() -> float`` in [0, 1) deciding the sample (injected by tests).
    """

    def __init__(self, logger: logging.Logger | str = DECISION_LOGGER, *, sample_rate: float = 1.0,
                 deny_sample_rate: float = 1.0, explain: bool = True,
                 random: Callable[[], float] = random.random) -> None:
        for name, rate in (("sample_rate", sample_rate), ("deny_sample_rate", deny_sample_rate)):
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1, got {rate!r}")
        self.logger = logging.getLogger(logger) if isinstance(logger, str) else logger
        self.sample_rate = sample_rate
        self.deny_sample_rate = deny_sample_rate
        self.explain = explain
        self._random = random

    def wants(self, allowed: bool) -> bool:
        """Whether this decision is logged (logger enabled, and sampled in)."""
        if not self.logger.isEnabledFor(logging.INFO):
            return False
        rate = self.sample_rate if allowed else self.deny_sample_rate
        return rate >= 1.0 or (rate > 0.0 and self._random() < rate)

    def emit(self, *, allowed: bool, domain: str | None, account: str | None, action: str,
             type: str, record_id: str | None, latency_ns: int, request_id: str | None = None,
             method: str | None = None, route: str | None = None, rule: str | None = None,
             role: str | None = None, kind: str = "record", labels: dict[str, str] | None = None,
             assurance: int | None = None) -> None:
        """Write one decision record (the caller has already asked :meth:`wants`)."""
        fields: dict[str, Any] = {
            "decision_id": str(uuid.uuid4()),
            "time": datetime.now(UTC).isoformat(timespec="microseconds"),
            "request_id": request_id,
            "domain": domain,
            "account": account,
            "action": action,
            "type": type,
            "record_id": record_id,
            "kind": kind,
            "method": method,
            "route": route,
            "allowed": allowed,
            "rule": rule,
            "role": role,
            "latency_ns": latency_ns,
        }
        if assurance is not None:
            fields["mfa"] = assurance  # the session's assurance level (0: one factor)
        if labels:
            fields["labels"] = labels
        self.logger.info(json.dumps(fields, separators=(",", ":")), extra={"decision": fields})


def now_ns() -> int:
    """The monotonic clock decisions are timed with."""
    return time.perf_counter_ns()
