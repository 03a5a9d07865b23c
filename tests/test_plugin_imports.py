"""The shipped plugins' own modules import each other without cycles, and never the entry point.

A provider's entry-point module is what sandbox-core loads (also just to list providers), so it
must stay light; the modules that do the work (execution, pools, SDK calls) are imported by it,
inside its hooks. When one of them imports the entry-point module back for some shared state (a
pool set, a credential map), or reaches it through ``sys.modules``, the two depend on each other
and the import order decides what works. The rule checked here: no module of a plugin imports its
entry-point module, the import graph of its modules (imports inside functions included, those
under ``TYPE_CHECKING`` left out) has no cycle, and no module looks its own package up in
``sys.modules``.

The check reads the sources (``ast``), so it sees imports that only run inside a hook.
"""

from __future__ import annotations

import ast
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

PLUGINS = Path(__file__).resolve().parent.parent / "plugins"
PLUGIN_DIRS = sorted(path.parent for path in PLUGINS.glob("*/pyproject.toml"))


def _package_sources(plugin: Path) -> tuple[str, dict[str, Path]]:
    """The plugin's top-level package name and its modules' dotted names mapped to their files."""
    (package_dir,) = [path.parent for path in (plugin / "src").glob("*/__init__.py")]
    modules: dict[str, Path] = {}
    for path in package_dir.rglob("*.py"):
        parts = path.relative_to(package_dir.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return package_dir.name, modules


def _entry_points(plugin: Path) -> set[str]:
    project = tomllib.loads((plugin / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    groups = project.get("entry-points", {})
    return {value.split(":")[0] for group in groups.values() for value in group.values()}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _walk_runtime(tree: ast.AST) -> Iterator[ast.AST]:
    """Every node of ``tree`` except what sits under ``if TYPE_CHECKING:``."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and _is_type_checking(node):
            for other in node.orelse:
                yield other
                yield from _walk_runtime(other)
            continue
        yield node
        yield from _walk_runtime(node)


def _imports(name: str, path: Path, modules: set[str]) -> set[str]:
    """The package's modules that module ``name`` imports when it runs (at any depth)."""
    found: set[str] = set()
    is_package = path.name == "__init__.py"
    for node in _walk_runtime(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name in modules)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = name.split(".")
                anchor = anchor if is_package else anchor[:-1]
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                if f"{base}.{alias.name}" in modules:
                    found.add(f"{base}.{alias.name}")
                elif base in modules:
                    found.add(base)
    found.discard(name)
    return found


def _sys_modules_lookups(path: Path, package: str) -> list[str]:
    """Lookups such as ``sys.modules.get("<package>.client")``: the package's own modules found in ``sys.modules``."""
    hits = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            target, keys = node.func.value, node.args[:1]
        elif isinstance(node, ast.Subscript):
            target, keys = node.value, [node.slice]
        else:
            continue
        if ast.unparse(target) != "sys.modules":
            continue
        for key in keys:
            if isinstance(key, ast.Constant) and str(key.value).split(".")[0] == package:
                hits.append(ast.unparse(node))
    return hits


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph`` (its modules in order, the first repeated last), or None."""
    state: dict[str, str] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = "open"
        stack.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == "open":
                return [*stack[stack.index(target) :], target]
            if target not in state:
                found = visit(target)
                if found:
                    return found
        stack.pop()
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


@pytest.mark.parametrize("plugin", PLUGIN_DIRS, ids=[path.name for path in PLUGIN_DIRS])
def test_no_module_imports_the_entry_point_module(plugin: Path) -> None:
    _, modules = _package_sources(plugin)
    entry_points = _entry_points(plugin)
    assert entry_points, f"{plugin.name} declares no entry point"
    offenders = {
        name: sorted(_imports(name, path, set(modules)) & entry_points)
        for name, path in modules.items()
        if name not in entry_points
    }
    assert not {name: hit for name, hit in offenders.items() if hit}, "modules importing the entry point"


@pytest.mark.parametrize("plugin", PLUGIN_DIRS, ids=[path.name for path in PLUGIN_DIRS])
def test_the_plugins_modules_import_each_other_without_cycles(plugin: Path) -> None:
    _, modules = _package_sources(plugin)
    graph = {name: _imports(name, path, set(modules)) for name, path in modules.items()}
    assert _cycle(graph) is None, f"import cycle: {' -> '.join(_cycle(graph) or [])}"


@pytest.mark.parametrize("plugin", PLUGIN_DIRS, ids=[path.name for path in PLUGIN_DIRS])
def test_no_module_finds_its_own_package_in_sys_modules(plugin: Path) -> None:
    package, modules = _package_sources(plugin)
    lookups = {name: _sys_modules_lookups(path, package) for name, path in modules.items()}
    assert not {name: hit for name, hit in lookups.items() if hit}, "shared state reached through sys.modules"


def test_the_cycle_finder_finds_a_cycle() -> None:
    """The check above would pass vacuously if the finder missed cycles."""
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None
