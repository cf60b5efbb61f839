"""The public surface of salesauthz.middleware."""

from __future__ import annotations

import subprocess
import sys

import salesauthz.middleware as middleware


def test_every_name_in_all_imports() -> None:
    for name in middleware.__all__:
        assert getattr(middleware, name) is not None, name
    assert list(middleware.__all__) == sorted(set(middleware.__all__))


def test_the_package_imports_no_web_framework() -> None:
    code = ("import sys, salesauthz.middleware; print(','.join(m for m in ('starlette', 'fastapi', "
            "'flask', 'django', 'sqlalchemy') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == ""
