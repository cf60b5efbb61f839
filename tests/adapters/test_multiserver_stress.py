"""Several app servers on one PostgreSQL store with Redis watchers, stressed with real processes
(marked ``slow``; figures printed with ``-s``; the full-size runs are
``benchmarks/bench_multiserver.py``):

* two processes making conflicting administrative changes for 20 s: every committed operation,
  decided again on the rules as they were just before it committed, is allowed and does the
  same; no state of the store has a doubled single-valued fact; the audit trail holds exactly
  the committed changes;
* three followers and a writer at a steady rate: every change seen everywhere within 1 s (p99),
  none missed, no deny-all suspension.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import pytest

from salesauthz.adapters.sql import SQLAdapter
from salesauthz.models.loader import load_directory
from tests.conftest import POLICIES

from ._services import postgres_schema
from ._stress import run_conflicts, run_propagation, synthetic_rules
from .test_watch import watch_url

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.redis, pytest.mark.timeout(300)]


@pytest.fixture
def store_url() -> Iterator[str]:
    with postgres_schema() as url:
        yield url


def test_conflicting_administrators_commit_only_what_the_store_allowed(store_url: str) -> None:
    seed = SQLAdapter(store_url)
    seed.apply(list(load_directory(POLICIES).rules), [])
    seed.close()
    result = run_conflicts(store_url, watch_url("redis", "sa_test_" + uuid.uuid4().hex[:10]), 20.0)
    summary = result.summary()
    print("\nconflicts:", json.dumps(summary))
    assert result.replay.illegal == []
    assert result.replay.contradictions == 0
    assert result.replay.records == result.committed  # an audit record for each commit ...
    assert result.replay.final == result.store_rules  # ... and no change without one
    assert summary["conflicts detected"] > 0, "the processes never met: the test proved nothing"
    assert result.committed >= 100


def test_three_followers_see_every_change_within_a_second(store_url: str) -> None:
    rules, probes = synthetic_rules(16, 600)  # ~29k rules over 16 tenants
    seed = SQLAdapter(store_url)
    seed.apply(rules, [])
    seed.close()
    result = run_propagation(store_url, watch_url("redis", "sa_test_" + uuid.uuid4().hex[:10]), probes,
                             followers=3, changes=64, rate=8.0)
    summary = result.summary()
    print("\npropagation:", json.dumps(summary))
    assert summary["measurements"] == 3 * 64
    assert summary["missed"] == 0
    assert summary["p99_ms"] <= 1000
    assert summary["deny_all_suspensions"] == 0
    assert summary["domain_suspensions"] == 0
