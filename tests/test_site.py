"""The documentation site builds without a warning and renders in a real browser.

``mkdocs build --strict`` writes the site into a scratch directory, a thread serves it on
127.0.0.1, and headless Chromium loads the home and concepts pages: ``--dump-dom`` must contain
their headings and ``--screenshot`` must produce an image. Skipped (with the reason) when no
Chromium is on ``PATH``; ``.ci/run`` installs it. Set ``SALESAUTHZ_SCREENSHOT_DIR`` to keep the
screenshots for a look.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
BROWSERS = ("chromium", "chromium-browser", "google-chrome")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("site")
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out),
         "--config-file", str(ROOT / "mkdocs.yml")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False,
    )
    assert result.returncode == 0, f"mkdocs build --strict failed:\n{result.stdout}\n{result.stderr}"
    assert "WARNING" not in result.stderr, result.stderr
    return out


@pytest.fixture(scope="module")
def base_url(site: Path) -> Iterator[str]:
    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            """No request log on stderr."""

    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(site)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def _chromium() -> str:
    for name in BROWSERS:
        found = shutil.which(name)
        if found:
            return found
    pytest.skip("no Chromium on PATH (.ci/run installs it)")


def _browse(url: str, profile: Path, *extra: str) -> str:
    command = [
        _chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run",
        f"--user-data-dir={profile}", "--window-size=1280,900", *extra, url,
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, f"chromium failed on {url}:\n{result.stderr[-2000:]}"
    return result.stdout


def test_every_nav_page_is_built(site: Path) -> None:
    for page in ("index.html", "quickstart/index.html", "concepts/index.html",
                 "policy-reference/index.html", "api/index.html", "changelog/index.html",
                 "architecture/index.html"):
        assert (site / page).is_file(), page
    api = (site / "api/index.html").read_text(encoding="utf-8")
    assert "Authorizer" in api  # mkdocstrings rendered the docstrings
    assert "scope_filter" in api
    assert ":class:" not in api  # reST roles shown as code by docs/hooks.py
    assert ":meth:" not in api
    changelog = (site / "changelog/index.html").read_text(encoding="utf-8")
    assert "Keep a Changelog" in changelog  # CHANGELOG.md was included, not linked
    concepts = (site / "concepts/index.html").read_text(encoding="utf-8")
    assert concepts.count('class="mermaid"') >= 3  # diagrams left for the theme to draw
    for plot in (ROOT / "benchmarks").rglob("*.png"):  # published by docs/hooks.py
        assert (site / plot.relative_to(ROOT)).is_file(), plot


def test_hook_rewrites_links_out_of_docs_to_published_benchmarks() -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("docs_hooks", ROOT / "docs" / "hooks.py")
    assert spec is not None
    assert spec.loader is not None
    hooks = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hooks)

    def rewrite(markdown: str, src_uri: str) -> str:
        page: Any = SimpleNamespace(file=SimpleNamespace(src_uri=src_uri))
        return str(hooks.on_page_markdown(markdown, page, {}, None))

    assert rewrite("![plot](../benchmarks/a.png)", "performance.md") == "![plot](benchmarks/a.png)"
    assert rewrite("[data](../../benchmarks/a.json)", "web/fastapi.md") == "[data](../benchmarks/a.json)"
    assert rewrite('<img src="../benchmarks/a.png">', "filtering.md") == '<img src="benchmarks/a.png">'
    shown = hooks.on_page_content(
        "see :class:<code>~salesauthz.errors.PolicyError</code> and :meth:<code>Authorizer.check</code>",
        None, {}, None)
    assert shown == "see <code>PolicyError</code> and <code>Authorizer.check</code>"
    # Links that stay inside docs/ or leave it for something else are left alone.
    assert rewrite("[x](../src/a.py) [y](web/django.md)", "index.md") == "[x](../src/a.py) [y](web/django.md)"


@pytest.mark.parametrize(
    ("path", "headings"),
    [
        ("/", ["salesauthz", "How a decision flows", "Where to go next"]),
        ("/concepts/", ["Concepts", "Domains", "Departments", "Accounts and sub-accounts",
                        "Data scopes", "Decision semantics"]),
    ],
    ids=["home", "concepts"],
)
def test_page_renders_in_chromium(base_url: str, path: str, headings: list[str], tmp_path: Path) -> None:
    url = base_url + path
    dom = _browse(url, tmp_path / "profile-dom", "--virtual-time-budget=3000", "--dump-dom")
    for heading in headings:
        assert f">{heading}<" in dom or f">{heading}<a" in dom, f"{path}: heading {heading!r} not in the DOM"
    keep = os.environ.get("SALESAUTHZ_SCREENSHOT_DIR")
    shots = Path(keep) if keep else tmp_path
    shots.mkdir(parents=True, exist_ok=True)
    png = shots / f"{path.strip('/') or 'home'}.png"
    _browse(url, tmp_path / "profile-shot", "--virtual-time-budget=3000", f"--screenshot={png}")
    data = png.read_bytes()
    assert data.startswith(PNG_SIGNATURE)
    assert len(data) > 20_000  # a blank 1280x900 page compresses to a few kB
