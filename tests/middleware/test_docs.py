"""The examples of the web guides (docs/web/*.md) run as written.

Every ```python block of a guide runs, in order, in one fresh module (blocks marked ```py are
fragments of a larger project and are not run); the blocks assert their own outcomes.
"""

from __future__ import annotations

import re
import sys
import types
from pathlib import Path

import pytest

from tests.conftest import ROOT

from . import _clients  # noqa: F401 - imports starlette.testclient once, without its warning

GUIDES = sorted((ROOT / "docs" / "web").glob("*.md"))
BLOCK = re.compile(r"^```python\n(.*?)^```", re.MULTILINE | re.DOTALL)


def test_every_framework_has_a_guide() -> None:
    assert {p.stem for p in GUIDES} >= {"fastapi", "flask", "django"}


@pytest.mark.parametrize("guide", GUIDES, ids=lambda p: p.stem)
def test_guide_examples_run(guide: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocks = BLOCK.findall(guide.read_text(encoding="utf-8"))
    assert blocks, f"{guide.name} has no runnable example"
    name = f"docs_web_{guide.stem}"
    module = types.ModuleType(name)
    module.__file__ = str(guide)
    monkeypatch.chdir(ROOT)  # the guides load "policies" relative to the repository root
    monkeypatch.setitem(sys.modules, name, module)  # Django imports middleware by dotted path
    for number, block in enumerate(blocks, start=1):
        code = compile(block, f"{guide.name}[python block {number}]", "exec")
        exec(code, module.__dict__)
