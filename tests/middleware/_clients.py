"""Starlette's TestClient, imported without its import-time deprecation warning.

Starlette warns when ``httpx`` (rather than its successor ``httpx2``) backs the TestClient; the
suite runs with ``filterwarnings=error``, and the warning is about the test tooling, not salesauthz.
"""

from __future__ import annotations

import warnings

from starlette.exceptions import StarletteDeprecationWarning

with warnings.catch_warnings():
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from starlette.testclient import TestClient

__all__ = ["TestClient"]
