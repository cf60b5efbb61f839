"""The shape of the code base, read from the source with ``ast`` (docs/architecture.md).

- No import cycles between salesauthz's modules, counting imports inside functions and under
  ``TYPE_CHECKING`` (a module imports its package's ``__init__`` too, except its own ancestors).
- The engine (``salesauthz._engine``) is entered through its package only: nothing outside it
  imports its submodules.
- No public API takes or returns an engine type: the public modules' ``__all__`` functions and
  the public methods of their classes mention none in their annotations. (``salesauthz.checker``
  is the command line's implementation, not an API, and is allowed to work on snapshots.)
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import salesauthz._engine as engine

SRC = Path(__file__).resolve().parent.parent / "src"
PACKAGE = SRC / "salesauthz"
ENGINE = "salesauthz._engine"
PUBLIC_PREFIXES = ("salesauthz.filters", "salesauthz.middleware", "salesauthz.adapters")
PUBLIC_MODULES = {"salesauthz", "salesauthz.values", "salesauthz.scopes", "salesauthz.errors",
                  "salesauthz.audit", "salesauthz.authorizer", "salesauthz.delegation",
                  "salesauthz.fields", "salesauthz.sharing", "salesauthz.reference", "salesauthz.aio",
                  "salesauthz.casbin"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def is_package(name: str) -> bool:
    return MODULES[name].name == "__init__.py"


def imported(name: str, tree: ast.Module) -> Iterator[str]:
    """Every salesauthz module ``name`` imports, anywhere in the file."""
    package = name if is_package(name) else name.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            yield target
            for alias in node.names:  # `from . import _rules` imports a module
                if f"{target}.{alias.name}" in MODULES:
                    yield f"{target}.{alias.name}"


def graph() -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {name: set() for name in MODULES}
    for name, path in MODULES.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        own_ancestors = {".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 1)}
        for target in imported(name, tree):
            parts = target.split(".")
            for i in range(1, len(parts) + 1):  # importing a.b.c runs a/__init__ and a/b/__init__
                candidate = ".".join(parts[:i])
                if candidate in MODULES and candidate != name and candidate not in own_ancestors:
                    edges[name].add(candidate)
    return edges


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the stack, 2: done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges[node]):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt):], nxt]
            if nxt not in state and (found := visit(nxt)) is not None:
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state and (found := visit(node)) is not None:
            return found
    return None


def test_the_import_graph_has_no_cycle() -> None:
    cycle = find_cycle(graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_the_cycle_finder_finds_a_cycle() -> None:
    # The test above must be able to fail.
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_the_graph_counts_lazy_and_type_checking_imports() -> None:
    edges = graph()
    assert "salesauthz.delegation" in edges["salesauthz.authorizer"]  # imported inside admin()
    assert "salesauthz.models.loader" in edges["salesauthz.authorizer"]  # inside from_directory()


def test_nothing_outside_the_engine_imports_its_internals() -> None:
    offenders = sorted(
        f"{name} imports {target}"
        for name, targets in graph().items() if not name.startswith(ENGINE)
        for target in targets if target.startswith(ENGINE + "."))
    assert offenders == []


ENGINE_TYPES = {name for name in engine.__all__ if name[:1].isupper() and name not in ("ACTIVE",)}


def annotation_names(node: ast.expr | None) -> set[str]:
    if node is None:
        return set()
    if isinstance(node, ast.Constant) and isinstance(node.value, str):  # a quoted annotation
        return annotation_names(ast.parse(node.value, mode="eval").body)
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)} | {
        n.attr for n in ast.walk(node) if isinstance(n, ast.Attribute)}


def public_signatures() -> Iterator[tuple[str, ast.FunctionDef | ast.AsyncFunctionDef]]:
    for name, path in MODULES.items():
        if not (name in PUBLIC_MODULES or name.startswith(PUBLIC_PREFIXES)):
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        exported: set[str] = set()
        for node in tree.body:
            if isinstance(node, ast.Assign) and any(
                    isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets):
                exported = set(ast.literal_eval(node.value))
        for node in tree.body:
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name in exported:
                yield f"{name}.{node.name}", node
            if isinstance(node, ast.ClassDef) and node.name in exported:
                for item in node.body:
                    if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef) and (
                            not item.name.startswith("_") or item.name == "__init__"):
                        yield f"{name}.{node.name}.{item.name}", item


def test_no_public_api_takes_or_returns_an_engine_type() -> None:
    offenders = []
    for where, function in public_signatures():
        arguments = function.args
        annotations = [a.annotation for a in (*arguments.posonlyargs, *arguments.args,
                                              *arguments.kwonlyargs)]
        annotations += [arguments.vararg.annotation if arguments.vararg else None,
                        arguments.kwarg.annotation if arguments.kwarg else None, function.returns]
        leaked = set().union(*(annotation_names(a) for a in annotations)) & ENGINE_TYPES
        if leaked:
            offenders.append(f"{where}: {', '.join(sorted(leaked))}")
    assert offenders == []


def test_the_public_surface_is_read() -> None:
    found = {where for where, _ in public_signatures()}
    assert "salesauthz.authorizer.Authorizer.check" in found
    assert "salesauthz.filters.sql.sql_where" in found
    assert "salesauthz.fields.FieldAccess.redact" in found
