"""The documentation site builds without a warning and renders in a real browser.

``mkdocs build --strict`` writes the site into a scratch directory, a thread serves it on
127.0.0.1, and headless Chromium loads the home and concepts pages: ``--dump-dom`` must contain
their headings and ``--screenshot`` must produce an image. Every Mermaid diagram of the site must
be *drawn* with no network: Chromium resolves no host but 127.0.0.1, and the test reads the SVG
the theme puts in each diagram's (closed) shadow root through the DevTools protocol, which
``--dump-dom`` cannot see. Skipped (with the reason) when no Chromium is on ``PATH``;
``.ci/run`` installs it. Set ``SALESAUTHZ_SCREENSHOT_DIR`` to keep the screenshots for a look.
"""

from __future__ import annotations

import base64
import fcntl
import functools
import hashlib
import html
import json
import os
import re
import select
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import SimpleHTTPRequestHandler
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from tests._http import QuietHTTPServer

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

    server = QuietHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(site)))
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


# -- diagrams -----------------------------------------------------------------------------------

MERMAID_BLOCK = re.compile(r'<pre class="mermaid"><code>(.*?)</code></pre>', re.S)
NOTICE = ROOT / "docs" / "javascripts" / "NOTICE.txt"


def _diagram_pages(site: Path) -> dict[str, list[str]]:
    """``/page/ -> [Mermaid source of each diagram]`` for every built page that has one."""
    found: dict[str, list[str]] = {}
    for page in sorted(site.rglob("index.html")):
        sources = [html.unescape(code) for code in MERMAID_BLOCK.findall(page.read_text(encoding="utf-8"))]
        if sources:
            relative = page.parent.relative_to(site).as_posix()
            found["/" if relative == "." else f"/{relative}/"] = sources
    return found


def _label(source: str) -> str:
    """A label the drawn diagram must show: a sequence diagram's first participant alias, a
    flowchart's first quoted label (up to its first line break), or else its first node."""
    if found := re.search(r"participant \w+ as ([^\n]+)", source):
        return found.group(1).strip()
    if found := re.search(r'"([^"<]+)', source):
        return found.group(1).strip()
    return source.splitlines()[1].split()[0]


def _high_fd(fd: int) -> int:
    moved = fcntl.fcntl(fd, fcntl.F_DUPFD, 10)
    os.close(fd)
    return moved


class DevTools:
    """Just enough of the Chrome DevTools protocol over ``--remote-debugging-pipe`` (requests on
    fd 3, replies on fd 4, each a JSON text ended by NUL): no websocket library needed."""

    def __init__(self, chromium: str, profile: Path) -> None:
        to_browser_read, self._to_browser = os.pipe()
        self._from_browser, from_browser_write = os.pipe()
        # Out of the way of fds 3 and 4 first, or the shell's redirections could overwrite one
        # end with the other.
        to_browser_read, from_browser_write = (_high_fd(to_browser_read), _high_fd(from_browser_write))
        flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run",
                 "--remote-debugging-pipe", f"--user-data-dir={profile}", "--window-size=1280,900",
                 # Offline: every host but the test's own server fails to resolve.
                 "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1", "about:blank"]
        # The browser expects the pipe on fds 3 and 4; bash moves them there (a preexec_fn
        # would be unsafe with the server thread running; dash takes single-digit fds only).
        self._process = subprocess.Popen(
            [shutil.which("bash") or "/bin/bash", "-c",
             f'exec "$0" "$@" 3<&{to_browser_read} 4>&{from_browser_write}', chromium, *flags],
            pass_fds=(to_browser_read, from_browser_write), stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(to_browser_read)
        os.close(from_browser_write)
        self._buffer = b""
        self._next_id = 0
        self.events: list[dict[str, Any]] = []

    def call(self, method: str, session: str | None = None, timeout: float = 30.0,
             **params: Any) -> dict[str, Any]:
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params}
        if session is not None:
            message["sessionId"] = session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._receive(deadline)
            if reply.get("id") == self._next_id:
                assert "error" not in reply, f"{method}: {reply['error']}"
                result: dict[str, Any] = reply["result"]
                return result
            self.events.append(reply)

    def _receive(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            ready, _, _ = select.select([self._from_browser], [], [], max(0.0, deadline - time.monotonic()))
            assert ready, "Chromium did not answer in time"
            chunk = os.read(self._from_browser, 1 << 16)
            assert chunk, "Chromium closed the DevTools pipe"
            self._buffer += chunk
        raw, _, self._buffer = self._buffer.partition(b"\0")
        message: dict[str, Any] = json.loads(raw)
        return message

    def close(self) -> None:
        try:
            self.call("Browser.close", timeout=10)
        finally:
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            os.close(self._to_browser)
            os.close(self._from_browser)


@dataclass(frozen=True)
class Drawn:
    """One diagram as the browser shows it."""

    node_id: int  # of the diagram's container, for the DevTools protocol
    has_svg: bool
    texts: tuple[str, ...]  # the text nodes of the drawing (labels), its stylesheet left out


def _walk(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield node
    for child in (*node.get("children", ()), *node.get("shadowRoots", ())):
        yield from _walk(child)


def _drawn_diagrams(root: dict[str, Any]) -> list[Drawn]:
    drawn = []
    for node in _walk(root):
        attributes = node.get("attributes", [])
        classes = dict(zip(attributes[::2], attributes[1::2], strict=True)).get("class", "").split()
        if node.get("nodeName") != "DIV" or "mermaid" not in classes:
            continue
        for shadow in node.get("shadowRoots", ()):
            inside = list(_walk(shadow))
            styles = {id(text) for element in inside if element.get("nodeName") == "STYLE"
                      for text in element.get("children", ())}
            drawn.append(Drawn(
                node_id=node["nodeId"],
                has_svg=any(element.get("nodeName") == "svg" for element in inside),
                texts=tuple(element["nodeValue"].strip() for element in inside
                            if element.get("nodeType") == 3 and id(element) not in styles
                            and element["nodeValue"].strip())))
    return drawn


def _draw(tools: DevTools, url: str, expected: int, screenshot: Path,
          timeout: float = 60.0) -> list[Drawn]:
    """The diagrams of the page at ``url`` once ``expected`` are drawn (or the time is up), and
    a screenshot of the first one in ``screenshot``."""
    target = tools.call("Target.createTarget", url="about:blank")["targetId"]
    session = tools.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
    tools.call("Network.enable", session=session)
    tools.call("Page.navigate", session=session, url=url)
    deadline = time.monotonic() + timeout
    drawn: list[Drawn] = []
    while time.monotonic() < deadline:
        # pierce: the theme draws each diagram into a closed shadow root, which page scripts
        # (and --dump-dom) cannot read but the DOM domain of the protocol can.
        root = tools.call("DOM.getDocument", session=session, depth=-1, pierce=True)["root"]
        drawn = _drawn_diagrams(root)
        if len(drawn) >= expected and all(diagram.has_svg for diagram in drawn):
            break
        time.sleep(0.25)
    if drawn:
        tools.call("DOM.scrollIntoViewIfNeeded", session=session, nodeId=drawn[0].node_id)
        shot = tools.call("Page.captureScreenshot", session=session, format="png")
        screenshot.write_bytes(base64.b64decode(shot["data"]))
    tools.call("Target.closeTarget", targetId=target)
    return drawn


@pytest.fixture(scope="module")
def devtools(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevTools]:
    tools = DevTools(_chromium(), tmp_path_factory.mktemp("devtools-profile"))
    try:
        yield tools
    finally:
        tools.close()


def test_every_diagram_is_drawn_offline(site: Path, base_url: str, devtools: DevTools,
                                        tmp_path: Path) -> None:
    keep = os.environ.get("SALESAUTHZ_SCREENSHOT_DIR")
    shots = Path(keep) if keep else tmp_path
    shots.mkdir(parents=True, exist_ok=True)
    pages = _diagram_pages(site)
    fences = sum(page.read_text(encoding="utf-8").count("```mermaid")
                 for page in (ROOT / "docs").rglob("*.md"))
    assert fences >= 9  # the docs have (at least) the nine diagrams this test was written with
    assert sum(len(sources) for sources in pages.values()) == fences, "a diagram was not built as one"
    for path, sources in pages.items():
        screenshot = shots / f"diagram-{path.strip('/') or 'home'}.png"
        drawn = _draw(devtools, base_url + path, len(sources), screenshot)
        assert screenshot.read_bytes().startswith(PNG_SIGNATURE)
        assert len(drawn) == len(sources), f"{path}: {len(drawn)} of {len(sources)} diagrams drawn"
        for number, (source, diagram) in enumerate(zip(sources, drawn, strict=True), start=1):
            assert diagram.has_svg, f"{path}: diagram {number} has no SVG"
            label = _label(source)
            assert any(label in text for text in diagram.texts), (
                f"{path}: diagram {number} does not show {label!r}; it shows {diagram.texts[:10]}")
    requested = {event["params"]["request"]["url"] for event in devtools.events
                 if event.get("method") == "Network.requestWillBeSent"}
    assert requested, "no request was recorded"
    elsewhere = sorted(url for url in requested if not url.startswith((base_url, "data:", "blob:")))
    assert not elsewhere, f"the site fetched from elsewhere: {elsewhere}"


def test_bundled_mermaid_matches_its_notice() -> None:
    script = (ROOT / "docs" / "javascripts" / "mermaid.min.js").read_bytes()
    notice = NOTICE.read_text(encoding="utf-8")
    version = re.search(r"Mermaid (\d+\.\d+\.\d+)", notice)
    digest = re.search(r"SHA-256:\s+([0-9a-f]{64})", notice)
    assert version is not None
    assert digest is not None
    assert hashlib.sha256(script).hexdigest() == digest.group(1), "mermaid.min.js changed: update NOTICE.txt"
    assert f'version:"{version.group(1)}"'.encode() in script
    assert "Permission is hereby granted" in notice  # the MIT licence travels with the file


# -- finding codes --------------------------------------------------------------------------------


def _finding_codes() -> set[str]:
    """Every finding code salesauthz can print: the tables of the checker, and every ``"SAnnn"``
    literal in the source (a code raised somewhere but missing from the tables counts too)."""
    from salesauthz.checker.findings import CODES, LOADER_CODES

    written = {code for path in (ROOT / "src").rglob("*.py")
               for code in re.findall(r'"(SA\d{3})"', path.read_text(encoding="utf-8"))}
    return set(CODES) | set(LOADER_CODES) | written


def _anchors(page: Path) -> set[str]:
    return set(re.findall(r'\bid="([^"]+)"', page.read_text(encoding="utf-8")))


def test_every_finding_code_has_an_anchor_in_the_checker_reference(site: Path) -> None:
    codes = _finding_codes()
    assert {"SA100", "SA160", "SA161", "SA209", "SA301"} <= codes
    missing = sorted(code for code in codes if code.lower() not in _anchors(site / "checker/index.html"))
    assert not missing, f"docs/checker.md has no heading for {missing}"


def test_sarif_help_links_land_on_an_anchor_of_the_site(site: Path) -> None:
    from salesauthz.checker.findings import CODES, LOADER_CODES, Finding
    from salesauthz.checker.output import DOCS_URL, sarif_report

    config = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    assert f"site_url: {DOCS_URL}\n" in config  # the links point at the published site
    log = sarif_report([Finding(code, "error", "m") for code in sorted(_finding_codes())])
    rules = log["runs"][0]["tool"]["driver"]["rules"]
    assert len(rules) == len(_finding_codes())
    for rule in rules:
        uri: str = rule["helpUri"]
        assert uri.startswith(DOCS_URL), uri
        page, _, anchor = uri[len(DOCS_URL):].partition("#")
        built = site / page / "index.html"
        assert built.is_file(), f"{rule['id']}: {uri} names no page of the site"
        assert anchor in _anchors(built), f"{rule['id']}: {uri} names no anchor of {page}"
        if rule["id"] in CODES or rule["id"] in LOADER_CODES:  # the codes `check` reports
            assert rule["shortDescription"]["text"] != "policy problem", f"{rule['id']} has no title"
