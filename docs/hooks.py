"""MkDocs hooks: benchmark artefacts for the site, and tidy reST roles in API docstrings.

Benchmark outputs live in ``benchmarks/`` (next to the scripts that make them), not in
``docs/``. This hook adds their images and JSON to the site under ``benchmarks/`` and rewrites
Markdown links that climb out of ``docs/`` to them (``../benchmarks/x.png`` from ``docs/a.md``,
which is also what GitHub renders), so one link works in both places and ``--strict`` still
checks that the file exists.

Docstrings use Sphinx-style roles (``:class:`~salesauthz.errors.PolicyError```), which
mkdocstrings' Google-style parser leaves as text; :func:`on_page_content` shows them as code
(``PolicyError``), the way Sphinx would.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files
from mkdocs.structure.pages import Page

ROOT = Path(__file__).resolve().parent.parent
PUBLISHED = ("benchmarks",)  # repository folders whose artefacts the site serves
SUFFIXES = {".png", ".svg", ".json"}
ROLE = re.compile(r":(?:class|meth|func|mod|attr|exc|data|obj):<code>(~?)([^<]*)</code>")


def on_files(files: Files, config: Any) -> Files:
    for folder in PUBLISHED:
        for path in sorted((ROOT / folder).rglob("*")):
            if path.is_file() and path.suffix in SUFFIXES:
                relative = path.relative_to(ROOT).as_posix()
                if files.get_file_from_path(relative) is None:
                    files.append(File(relative, str(ROOT), config["site_dir"],
                                      config["use_directory_urls"]))
    return files


def on_page_markdown(markdown: str, page: Page, config: Any, files: Files) -> str:
    # docs/<depth dirs>/page.md reaches the repository root with depth + 1 "../"; in the site,
    # the published folder sits at the docs root, so one "../" fewer.
    depth = page.file.src_uri.count("/")
    for folder in PUBLISHED:
        climb = re.escape("../" * (depth + 1) + folder + "/")
        markdown = re.sub(r"(\]\(|\]: |src=\")" + climb, r"\g<1>" + "../" * depth + folder + "/",
                          markdown)
    return markdown


def _role_as_code(match: re.Match[str]) -> str:
    target = match.group(2)
    shown = target.rsplit(".", 1)[-1] if match.group(1) else target
    return f"<code>{shown}</code>"


def on_page_content(html: str, page: Page, config: Any, files: Files) -> str:
    return ROLE.sub(_role_as_code, html)
