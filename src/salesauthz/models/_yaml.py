"""YAML loading that remembers where every value came from (for line-accurate errors)."""

from __future__ import annotations

from typing import Any

import yaml

from salesauthz.errors import PolicyError, PolicyIssue

# libyaml's C parser where PyYAML was built with it (several times faster); same nodes and marks.
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

Path = tuple[str | int, ...]
Positions = dict[Path, tuple[int, int]]  # path -> (line, column), 1-based


def load_yaml(text: str, file: str) -> tuple[Any, Positions]:
    """Parse one YAML document; return the data and the position of every key and item.

    Duplicate mapping keys are an error (PyYAML would silently keep the last one).
    """
    try:
        node = yaml.compose(text, Loader=_LOADER)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        raise PolicyError([PolicyIssue(
            f"invalid YAML: {problem}", file,
            mark.line + 1 if mark is not None else None,
            mark.column + 1 if mark is not None else None,
            hint="check indentation, colons and quoting around this point", code="SA101",
        )]) from None
    positions: Positions = {}
    issues: list[PolicyIssue] = []
    if node is None:
        return None, positions
    data = _convert(node, (), positions, issues, file, yaml.constructor.SafeConstructor())
    if issues:
        raise PolicyError(issues)
    return data, positions


def _mark(node: yaml.Node) -> tuple[int, int]:
    return node.start_mark.line + 1, node.start_mark.column + 1


def _convert(node: yaml.Node, path: Path, positions: Positions, issues: list[PolicyIssue],
             file: str, constructor: yaml.constructor.SafeConstructor) -> Any:
    positions.setdefault(path, _mark(node))
    if isinstance(node, yaml.MappingNode):
        result: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = constructor.construct_object(key_node, deep=True) \
                if not isinstance(key_node, yaml.ScalarNode) else _scalar(key_node, file, issues,
                                                                           constructor)
            if isinstance(key, list | dict):
                line, col = _mark(key_node)
                issues.append(PolicyIssue("a mapping key must be a plain value", file, line, col,
                                          code="SA102"))
                continue
            if key == "<<":
                line, col = _mark(key_node)
                issues.append(PolicyIssue("YAML merge keys (<<) are not supported", file, line,
                                          col, code="SA102"))
                continue
            if key in result:
                line, col = _mark(key_node)
                first = positions.get((*path, key), (None, None))[0]
                issues.append(PolicyIssue(
                    f"duplicate key {key!r}" + (f" (first defined on line {first})" if first else ""),
                    file, line, col, hint="each name may appear only once here; merge or rename",
                    code="SA103"))
                continue
            child = (*path, key)
            positions[child] = _mark(key_node)
            result[key] = _convert(value_node, child, positions, issues, file, constructor)
        return result
    if isinstance(node, yaml.SequenceNode):
        items = []
        for i, item in enumerate(node.value):
            items.append(_convert(item, (*path, i), positions, issues, file, constructor))
        return items
    return _scalar(node, file, issues, constructor)


def _scalar(node: yaml.Node, file: str, issues: list[PolicyIssue],
            constructor: yaml.constructor.SafeConstructor) -> Any:
    try:
        return constructor.construct_object(node, deep=True)
    except yaml.YAMLError as exc:  # pragma: no cover - composer already validated scalars
        line, col = _mark(node)
        issues.append(PolicyIssue(f"invalid value: {exc}", file, line, col, code="SA101"))
        return None


def position_of(positions: Positions, path: Path) -> tuple[int | None, int | None]:
    """The position of ``path``, or of its nearest ancestor that has one."""
    for end in range(len(path), -1, -1):
        found = positions.get(tuple(path[:end]))
        if found is not None:
            return found
    return None, None
