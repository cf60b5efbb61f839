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
echo "== pytest"
.venv/bin/python -m pytest --cov --cov-report=term "$@"
