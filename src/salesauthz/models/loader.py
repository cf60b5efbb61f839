"""Loading a policy directory: every ``*.yaml`` document (policy tests, ``*.test.yaml``, aside)
plus an optional ``model.conf``; all-or-nothing."""

from __future__ import annotations

import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from pydantic import ValidationError

from salesauthz._rules import Rule
from salesauthz.errors import PolicyError, PolicyIssue

from ._yaml import load_yaml
from .compile import compile_document
from .documents import DomainDocument
from .validate import SourcedDocument, issues_from_validation_error, validate_documents

__all__ = ["LoadedPolicy", "bundled_model_text", "load_directory", "load_document", "policy_files"]

TEST_SUFFIXES = (".test.yaml", ".test.yml")


def bundled_model_text() -> str:
    """The Casbin model salesauthz expresses its semantics in (``model.conf``)."""
    return resources.files("salesauthz").joinpath("data/model.conf").read_text(encoding="utf-8")


@dataclass(frozen=True, slots=True)
class LoadedPolicy:
    """A validated policy directory."""

    root: Path
    documents: tuple[SourcedDocument, ...]
    rules: tuple[Rule, ...]

    @property
    def domains(self) -> list[str]:
        return [d.document.domain for d in self.documents]


def policy_files(root: Path) -> list[Path]:
    """The policy documents of a directory (recursively), tests excluded, in a stable order."""
    found = []
    for path in sorted(root.rglob("*")):
        if path.suffix in (".yaml", ".yml") and path.is_file() and not path.name.endswith(TEST_SUFFIXES):
            if any(part.startswith(".") for part in path.relative_to(root).parts):
                continue
            found.append(path)
    return found


def load_document(text: str, file: str) -> SourcedDocument:
    """Parse and schema-check one document (no cross-reference checks)."""
    data, positions = load_yaml(text, file)
    if data is None:
        raise PolicyError([PolicyIssue("the file is empty", file, 1, 1,
                                       "start with `domain: <name>`", "SA104")])
    if not isinstance(data, dict):
        raise PolicyError([PolicyIssue(f"a policy document is a mapping, not a {type(data).__name__}",
                                       file, 1, 1, "start with `domain: <name>`", "SA102")])
    try:
        document = DomainDocument.model_validate(data)
    except ValidationError as exc:
        raise PolicyError(issues_from_validation_error(exc, file, positions)) from None
    return SourcedDocument(document, file, positions)


def _check_model(path: Path, display: str) -> list[PolicyIssue]:
    import casbin

    text = path.read_text(encoding="utf-8")
    try:
        model = casbin.Model()
        model.load_model_from_text(text)
    except Exception as exc:  # casbin raises assorted errors for a bad model
        return [PolicyIssue(f"invalid Casbin model: {exc}", display, None, None,
                            "start from the model.conf that `salesauthz init` writes", "SA105")]
    expected = casbin.Model()
    expected.load_model_from_text(bundled_model_text())
    issues = []
    for section in ("r", "p", "g", "m"):
        for key, assertion in expected.model.get(section, {}).items():
            mine = model.model.get(section, {}).get(key)
            if mine is None or mine.value != assertion.value:
                issues.append(PolicyIssue(
                    f"model.conf differs from salesauthz's model at [{section}] {key}",
                    display, _line_of(text, f"{key} ="), None,
                    "salesauthz decides by its own model; use the bundled model.conf unchanged",
                    "SA106"))
    return issues


def _line_of(text: str, needle: str) -> int | None:
    for number, line in enumerate(text.splitlines(), 1):
        if line.strip().startswith(needle):
            return number
    return None


def load_directory(path: str | os.PathLike[str]) -> LoadedPolicy:
    """Load, validate and compile every policy document under ``path``.

    Raises :class:`PolicyError` listing *every* problem (file, line, column) if anything is
    wrong; nothing is returned half-loaded.
    """
    root = Path(path)
    if not root.is_dir():
        raise PolicyError([PolicyIssue(f"{root} is not a directory", str(root), code="SA107",
                                       hint="pass the directory that holds your policy YAML files")])
    issues: list[PolicyIssue] = []
    model = root / "model.conf"
    if model.exists():
        issues.extend(_check_model(model, str(model)))
    documents: list[SourcedDocument] = []
    files = policy_files(root)
    if not files:
        issues.append(PolicyIssue(f"no policy documents (*.yaml) in {root}", str(root), code="SA107",
                                  hint="run `salesauthz init` to start one"))
    for file in files:
        try:
            text = file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            issues.append(PolicyIssue(f"cannot read: {exc}", str(file), code="SA101"))
            continue
        try:
            documents.append(load_document(text, str(file)))
        except PolicyError as exc:
            issues.extend(exc.issues)
    issues.extend(validate_documents(documents))
    if issues:
        raise PolicyError(issues)
    rules: list[Rule] = []
    for sourced in documents:
        rules.extend(compile_document(sourced.document))
    return LoadedPolicy(root, tuple(documents), tuple(rules))

