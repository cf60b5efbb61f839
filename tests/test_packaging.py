"""Packaging hygiene: the wheel and sdist build, pass ``twine check``, carry their data files,
and a plain ``pip install`` of the wheel in a fresh virtual environment gives a working
``salesauthz init DIR && salesauthz check DIR``.

These build for real (``python -m build``), so they take a while: the module is marked ``slow``
(it still runs in CI, which runs every test).
"""

from __future__ import annotations

import email
import os
import subprocess
import sys
import tarfile
import venv
import zipfile
from pathlib import Path

import pytest

import salesauthz

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


def _run(command: list[str], cwd: Path | None = None, timeout: float = 300) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True,
                            timeout=timeout, check=False)
    assert result.returncode == 0, (
        f"`{' '.join(command)}` exited with {result.returncode}:\n{result.stdout}\n{result.stderr}"
    )
    return result.stdout


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """``{"wheel": ..., "sdist": ...}`` built from this checkout."""
    out = tmp_path_factory.mktemp("dist")
    _run([sys.executable, "-m", "build", "--outdir", str(out), str(ROOT)])
    wheels = list(out.glob("*.whl"))
    sdists = list(out.glob("*.tar.gz"))
    assert len(wheels) == 1
    assert len(sdists) == 1
    return {"wheel": wheels[0], "sdist": sdists[0]}


def test_twine_check_passes(dist: dict[str, Path]) -> None:
    output = _run([sys.executable, "-m", "twine", "check", "--strict",
                   str(dist["wheel"]), str(dist["sdist"])])
    assert output.count("PASSED") == 2


def test_wheel_contains_the_model_types_and_templates(dist: dict[str, Path]) -> None:
    with zipfile.ZipFile(dist["wheel"]) as wheel:
        names = set(wheel.namelist())
        metadata_name = next(n for n in names if n.endswith(".dist-info/METADATA"))
        metadata = email.message_from_bytes(wheel.read(metadata_name))
        entry_points = wheel.read(metadata_name.replace("METADATA", "entry_points.txt")).decode()
    assert "salesauthz/data/model.conf" in names
    assert "salesauthz/py.typed" in names
    for template_file in ("README.md", "organisation.yaml", "organisation.test.yaml"):
        assert f"salesauthz/data/templates/sales-team/{template_file}" in names
    assert not any("__pycache__" in n or n.startswith(("tests/", "docs/")) for n in names)
    assert "salesauthz = salesauthz.checker.cli:main" in entry_points
    # Single-sourced version: _version.py is what the metadata and the file name say.
    assert metadata["Version"] == salesauthz.__version__
    assert f"-{salesauthz.__version__}-" in dist["wheel"].name


def test_sdist_carries_what_the_tests_and_docs_need(dist: dict[str, Path]) -> None:
    with tarfile.open(dist["sdist"]) as sdist:
        names = {name.split("/", 1)[1] for name in sdist.getnames() if "/" in name}
    for needed in ("README.md", "CHANGELOG.md", "pyproject.toml", "policies/model.conf",
                   "policies/acme.yaml", "src/salesauthz/data/model.conf", "docs/index.md",
                   "tests/conftest.py", "mkdocs.yml", "CONTRIBUTING.md"):
        assert needed in names, f"{needed} missing from the sdist"


def test_fresh_venv_install_then_init_and_check(dist: dict[str, Path], tmp_path: Path) -> None:
    # A plain venv (no system site-packages): only what the wheel declares gets installed.
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True, system_site_packages=False).create(env_dir)
    bin_dir = env_dir / ("Scripts" if os.name == "nt" else "bin")
    _run([str(bin_dir / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check",
          str(dist["wheel"])])
    command = str(bin_dir / "salesauthz")
    target = tmp_path / "new-policies"  # does not exist yet: init creates it
    created = _run([command, "init", str(target)], cwd=tmp_path)
    assert "organisation.yaml" in created
    checked = _run([command, "check", str(target)], cwd=tmp_path)
    assert "no findings" in checked
    tested = _run([command, "test", str(target)], cwd=tmp_path)
    assert "0 failed" in tested
    version = _run([command, "--version"])
    assert salesauthz.__version__ in version
