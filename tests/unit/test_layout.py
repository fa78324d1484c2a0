"""The layout holds: the stages import one way (import-linter's contracts in pyproject.toml), no
module imports itself back through others, modules stay small, each package says what it holds and
may import, code for hosts and devices imports only the standard library, and every name the plugin
docs tell authors to import imports."""
from __future__ import annotations

import ast
import importlib
import re
import subprocess
import sys
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parents[2]
MAX_LINES = 400


def _sources() -> list[Path]:
    return [p for top in ("fleetbuild", "plugins") for p in (ROOT / top).rglob("*.py") if "__pycache__" not in p.parts]


def test_import_contracts_hold():
    lint = Path(sys.executable).parent / "lint-imports"
    result = subprocess.run([str(lint), "--no-cache"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "0 broken" in result.stdout


def _cycles(graph) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    for root in sorted(graph.modules):
        if root in index:
            continue
        work = [(root, iter(sorted(graph.find_modules_directly_imported_by(root))))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.find_modules_directly_imported_by(child)))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_no_module_imports_itself_back():
    """Counting every import, lazy ones and those only for type hints."""
    graph = grimp.build_graph("fleetbuild", cache_dir=None)
    assert _cycles(graph) == []


def test_the_cycle_finder_finds_a_cycle():
    graph = grimp.ImportGraph()
    for name in ("a", "a.b", "a.c", "a.d"):
        graph.add_module(name)
    graph.add_import(importer="a.b", imported="a.c")
    graph.add_import(importer="a.c", imported="a.b")
    graph.add_import(importer="a.d", imported="a.b")
    assert _cycles(graph) == [["a.b", "a.c"]]


def test_no_module_over_400_lines():
    long = {p.relative_to(ROOT).as_posix(): n for p in _sources() if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert long == {}, "split these by what they decide"


def test_every_package_says_what_it_holds_and_may_import():
    for init in (ROOT / "fleetbuild").rglob("__init__.py"):
        doc = ast.get_docstring(ast.parse(init.read_text())) or ""
        where = init.relative_to(ROOT).as_posix()
        assert len(doc.splitlines()) >= 2, f"{where}: say in two or three lines what the package holds"
        assert "import" in doc.lower(), f"{where}: say what the package may import"


def test_code_for_hosts_and_devices_imports_only_the_standard_library():
    graph = grimp.build_graph("fleetbuild", include_external_packages=True, cache_dir=None)
    allowed = set(sys.stdlib_module_names) | {"tensorrt", "tensorrt_rtx"}
    outside = {}
    for module in graph.find_children("fleetbuild.remote") | graph.find_descendants("fleetbuild.remote"):
        for imported in graph.find_modules_directly_imported_by(module):
            if not imported.startswith("fleetbuild.remote") and imported.split(".")[0] not in allowed:
                outside.setdefault(module, []).append(imported)
    assert outside == {}


def _documented_names() -> list[tuple[str, str]]:
    """(module, name) for each dotted name and `from ... import` line in docs/plugins.md."""
    text = (ROOT / "docs" / "plugins.md").read_text()
    found = set()
    for module, names in re.findall(r"^from (fleetbuild[\w.]*) import ([\w, ]+)$", text, re.M):
        found |= {(module, name.strip()) for name in names.split(",")}
    for dotted in re.findall(r"`(fleetbuild(?:\.\w+)+)(?![\w.])", text):
        module, _, name = dotted.rpartition(".")
        found.add((module, name))
    for module, names in re.findall(r"`(fleetbuild(?:\.\w+)*)\.\{([\w, ]+)\}`", text):
        found |= {(module, name.strip()) for name in names.split(",")}
    return sorted(found)


def test_the_docs_name_what_plugin_authors_import():
    names = _documented_names()
    assert ("fleetbuild.plugin", "hookimpl") in names and ("fleetbuild.compat", "Problem") in names
    assert ("fleetbuild.targets", "Target") in names and ("fleetbuild.store.api", "ArtifactStore") in names


@pytest.mark.parametrize("module,name", _documented_names(), ids=lambda v: v)
def test_each_documented_plugin_name_imports(module, name):
    assert hasattr(importlib.import_module(module), name), f"{module}.{name} is in docs/plugins.md"


def test_the_plugin_package_exports_what_the_docs_list():
    import fleetbuild.plugin

    docs = (ROOT / "docs" / "plugins.md").read_text()
    for name in fleetbuild.plugin.__all__:
        assert getattr(fleetbuild.plugin, name) is not None
        assert name == "hookspec" or f"`{name}`" in docs, f"docs/plugins.md does not list fleetbuild.plugin.{name}"
