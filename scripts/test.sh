#!/usr/bin/env bash
# Install everything the tests need into .venv and run the whole suite:
# ruff, mypy --strict (src and tests), pytest with branch coverage.
# The README's test command and .ci/run both call this script.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e ".[dev]"

echo "== ruff"
.venv/bin/ruff check src tests benchmarks examples docs
echo "== mypy --strict"
.venv/bin/mypy
if [ -f mkdocs.yml ]; then
    echo "== mkdocs build --strict"
    # Not --quiet: it hides warnings from the counter, and --strict then passes anyway.
    NO_MKDOCS_2_WARNING=1 .venv/bin/mkdocs build --strict
fi
# Two runs, one coverage report: everything else on every core (pytest-xdist), then the tests with
# wall-clock deadlines across processes (marker "serial") alone. Exit status 5 is "nothing
# collected" (arguments that select no test of one part), not a failure.
status=0
echo "== pytest (on ${SALESAUTHZ_TEST_WORKERS:-every} core(s))"
.venv/bin/python -m pytest -n "${SALESAUTHZ_TEST_WORKERS:-auto}" -m "not serial" \
    --cov --cov-report= --cov-fail-under=0 "$@" || status=$?
if [ "$status" -ne 0 ] && [ "$status" -ne 5 ]; then exit "$status"; fi
echo "== pytest (deadline tests, one at a time)"
status=0
.venv/bin/python -m pytest -m serial --cov --cov-append --cov-report=term "$@" || status=$?
if [ "$status" -eq 5 ]; then
    .venv/bin/python -m coverage report  # the first part's report, against the threshold
    exit $?
fi
exit "$status"
