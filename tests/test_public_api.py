"""Every public name imports, and `import salesauthz` stays light."""

from __future__ import annotations

import subprocess
import sys

import salesauthz


def test_every_name_in_all_imports() -> None:
    for name in salesauthz.__all__:
        assert getattr(salesauthz, name) is not None, name


def test_all_is_sorted_and_unique() -> None:
    assert list(salesauthz.__all__) == sorted(set(salesauthz.__all__))


def test_import_is_light() -> None:
    code = ("import sys, salesauthz; heavy = [m for m in ('pydantic', 'casbin', 'sqlalchemy', "
            "'yaml', 'redis') if m in sys.modules]; print(','.join(heavy))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == ""


def test_errors_subclass_builtins() -> None:
    assert issubclass(salesauthz.PolicyError, ValueError)
    assert issubclass(salesauthz.ForbiddenError, PermissionError)
    assert issubclass(salesauthz.EscalationError, salesauthz.ForbiddenError)
    assert issubclass(salesauthz.UnknownNameError, KeyError)
    assert issubclass(salesauthz.StorageError, OSError)
    for name in ("PolicyError", "ForbiddenError", "StorageError", "NotFoundError"):
        assert issubclass(getattr(salesauthz, name), salesauthz.SalesAuthzError)
