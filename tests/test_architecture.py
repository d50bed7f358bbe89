"""The package's layering, read from the source with ``ast``: no import cycles, and each layer
imports only the layers below it (core < records < reliability, adapters, evaluation).

Imports under ``if TYPE_CHECKING:`` name a type for annotations only and never run, so they
are not dependencies here (``core.errors`` annotates ``RoutedLLMError.call`` with the
records layer's ``RoutedCall`` that way)."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import routedllm

ROOT = Path(routedllm.__file__).parent
PACKAGE = "routedllm"


@dataclass(frozen=True)
class Import:
    """One import statement: what it names, where, and whether it runs when the module loads."""

    target: str  # the module imported ("routedllm.records.ledger", "litellm", ...)
    line: int
    at_import_time: bool  # at module level, outside ``if TYPE_CHECKING:``
    type_only: bool = False  # under ``if TYPE_CHECKING:``: never runs


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES: dict[str, Path] = {module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _resolve(module: str, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    package = module if MODULES[module].name == "__init__.py" else module.rpartition(".")[0]
    base = package.split(".")
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, *([node.module] if node.module else [])])


def imports_of(module: str) -> Iterator[Import]:
    """Every import in ``module``, naming the submodule for ``from pkg import submodule``."""
    tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))

    def walk(node: ast.AST, top: bool, typing: bool) -> Iterator[Import]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import):
                for alias in child.names:
                    yield Import(alias.name, child.lineno, top, typing)
            elif isinstance(child, ast.ImportFrom):
                target = _resolve(module, child)
                for alias in child.names:
                    sub = f"{target}.{alias.name}"
                    yield Import(sub if sub in MODULES else target, child.lineno, top, typing)
            elif isinstance(child, ast.If) and _is_type_checking(child.test):
                yield from walk(child, False, True)
            elif isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
                yield from walk(child, False, typing)
            else:
                yield from walk(child, top, typing)

    yield from (imp for imp in walk(tree, True, False) if not imp.type_only)


def internal(target: str) -> str | None:
    """The routedllm module an import names (the longest known prefix), else None."""
    while target:
        if target in MODULES:
            return target
        target = target.rpartition(".")[0]
    return None


def graph(*, import_time_only: bool) -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {m: set() for m in MODULES}
    for module in MODULES:
        for imp in imports_of(module):
            if import_time_only and not imp.at_import_time:
                continue
            target = internal(imp.target)
            if target is not None and target != module:
                edges[module].add(target)
    return edges


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a path ``[a, b, ..., a]``, or None when the graph has none."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(edges[node]):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt)) is not None:
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state and (cycle := visit(node)) is not None:
            return cycle
    return None


def layer_of(module: str) -> str:
    """``core``, ``records``... for modules of a subpackage; ``top`` for the others."""
    parts = module.split(".")
    package = len(parts) > 2 or (len(parts) == 2 and MODULES[module].name == "__init__.py")
    return parts[1] if package else "top"


def violations(layer: str, forbidden: tuple[str, ...]) -> list[str]:
    """Imports (anywhere in the file, deferred ones too) from ``layer`` into ``forbidden``."""
    found = []
    for module in MODULES:
        if not module.startswith(f"{PACKAGE}.{layer}."):
            continue
        for imp in imports_of(module):
            if any(
                imp.target == f"{PACKAGE}.{f}" or imp.target.startswith(f"{PACKAGE}.{f}.")
                for f in forbidden
            ):
                found.append(f"{module}:{imp.line} imports {imp.target}")
    return found


def test_the_package_was_found() -> None:
    assert {"routedllm.core.catalog", "routedllm.records.schema", "routedllm.cli"} <= set(MODULES)


@pytest.mark.parametrize("import_time_only", [True, False], ids=["at-import", "deferred-too"])
def test_no_import_cycle(import_time_only: bool) -> None:
    """A cycle, even through an import deferred into a function, means two modules each need
    the other: one of them holds something that belongs lower down."""
    cycle = find_cycle(graph(import_time_only=import_time_only))
    assert cycle is None, "import cycle: " + " -> ".join(cycle or ())


def test_the_cycle_finder_finds_cycles() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"b"}}) is None


@pytest.mark.parametrize(
    ("layer", "forbidden"),
    [
        ("core", ("records", "reliability", "adapters", "evaluation")),
        ("records", ("reliability", "adapters", "evaluation")),
    ],
)
def test_lower_layers_do_not_import_higher_ones(layer: str, forbidden: tuple[str, ...]) -> None:
    assert violations(layer, forbidden) == []


def test_litellm_is_imported_at_module_level_only_by_its_callback() -> None:
    allowed = {"routedllm.adapters.litellm.callback"}
    found = [
        f"{module}:{imp.line}"
        for module in MODULES
        for imp in imports_of(module)
        if imp.at_import_time and imp.target.split(".")[0] == "litellm" and module not in allowed
    ]
    assert found == []


def test_core_and_records_do_not_import_langchain() -> None:
    allowed = {"routedllm.records.langsmith"}
    found = [
        f"{module}:{imp.line} imports {imp.target}"
        for module in MODULES
        if layer_of(module) in ("core", "records") and module not in allowed
        for imp in imports_of(module)
        if imp.target.split(".")[0] in ("langchain", "langchain_core", "langchain_openai")
    ]
    assert found == []
