"""Two rules of docs/architecture, checked on the source: no import cycle between the
modules of src/voharvest, and no module reaching for another package's private names.

The import graph is read with ``ast`` (nothing is imported): an edge for every
module-level import, the ``if TYPE_CHECKING:`` blocks left out (they never run).
Private names are judged on every import, lazy ones inside functions too.
"""

from __future__ import annotations

import ast
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import voharvest

SOURCE = Path(voharvest.__file__).parent

# Imports the rule forbids, allowed for now: (importing module, imported name), each with
# the reason. Empty: keep it so.
ALLOWED_PRIVATE: set[tuple[str, str]] = set()


@dataclass(frozen=True)
class Import:
    module: str  # the importing module
    target: str  # the dotted name imported: a module, or a module's attribute
    line: int
    top_level: bool  # runs when the module is imported (not in a function or TYPE_CHECKING)


def module_names(root: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every ``.py`` file of the package at ``root``."""
    names = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _walk(nodes: list[ast.stmt], top: bool) -> Iterator[tuple[ast.stmt, bool]]:
    """Every import statement under ``nodes``, with whether it runs at import time."""
    for node in nodes:
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node, top
        elif isinstance(node, ast.If) and _is_type_checking(node.test):
            yield from _walk(node.body, False)
            yield from _walk(node.orelse, top)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            yield from _walk(node.body, False)
        else:
            for field in ("body", "orelse", "finalbody", "handlers", "cases"):
                children = getattr(node, field, None)
                if isinstance(children, list):
                    statements = [c for c in children if isinstance(c, ast.stmt)]
                    for child in children:
                        if isinstance(child, ast.ExceptHandler | ast.match_case):
                            statements.extend(child.body)
                    yield from _walk(statements, top and not isinstance(node, ast.ClassDef))


def imports_of(name: str, path: Path, package: str) -> list[Import]:
    """The imports of our own package that module ``name`` (file ``path``) makes."""
    is_package = path.name == "__init__.py"
    here = name if is_package else name.rpartition(".")[0]
    found = []
    for node, top in _walk(ast.parse(path.read_text(), str(path)).body, True):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        else:
            if node.level:
                base = here.split(".")
                base = base[: len(base) - node.level + 1]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            targets = [f"{module}.{alias.name}" for alias in node.names if alias.name != "*"]
            targets = targets or [module]
        for target in targets:
            if target == package or target.startswith(package + "."):
                found.append(Import(name, target, node.lineno, top))
    return found


def import_graph(root: Path) -> dict[str, set[str]]:
    """Module -> the modules of the package it imports when it is imported."""
    modules = module_names(root)
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for found in imports_of(name, path, root.name):
            if not found.top_level:
                continue
            target = found.target
            while target not in modules and "." in target:
                target = target.rpartition(".")[0]  # an attribute of a module
            if target in modules and target != name:
                graph[name].add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle (a -> b -> ... -> a) per strongly connected group of modules."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[set[str]] = []

    def visit(node: str) -> None:  # Tarjan's algorithm
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.add(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(group)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return [_cycle_in(graph, group) for group in groups]


def _cycle_in(graph: dict[str, set[str]], group: set[str]) -> list[str]:
    """A path from the group's first module back to itself, inside the group."""
    start = min(group)
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        node = frontier.pop(0)
        for nxt in sorted(graph[node] & group):
            if nxt == start:
                return [*paths[node], start]
            if nxt not in paths:
                paths[nxt] = [*paths[node], nxt]
                frontier.append(nxt)
    raise AssertionError(f"no cycle in {group}")


def private_imports(root: Path, exempt: tuple[str, ...] = ()) -> list[str]:
    """Imports of a private name ``Q._x`` from outside ``Q`` and the packages under it.

    A module of package P may import ``Q._x`` only when Q is P or one of P's
    ancestors: ``voharvest.protocol.datalink`` may use ``voharvest._exceptions``,
    ``voharvest.cli._preview`` may not use ``voharvest.harvesting._journal``.
    """
    modules = module_names(root)
    wrong = []
    for name, path in modules.items():
        if any(name == e or name.startswith(e + ".") for e in exempt):
            continue
        here = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for found in imports_of(name, path, root.name):
            parts = found.target.split(".")
            for i, part in enumerate(parts):
                if not part.startswith("_") or part.startswith("__"):
                    continue
                owner = ".".join(parts[:i])
                if here != owner and not here.startswith(owner + "."):
                    if (name, found.target) not in ALLOWED_PRIVATE:
                        wrong.append(f"{name}:{found.line} imports {found.target}")
                    break
    return wrong


# --- the checks on our code ------------------------------------------------------------


def test_no_import_cycle_between_our_modules():
    found = cycles(import_graph(SOURCE))
    assert not found, "import cycles: " + "; ".join(" -> ".join(c) for c in found)


def test_no_module_imports_a_private_name_of_another_package():
    wrong = private_imports(SOURCE, exempt=("voharvest.testing",))
    assert not wrong, "private names used from outside their package:\n" + "\n".join(wrong)


def test_the_allow_list_holds_only_imports_that_exist():
    """An allowed exception that no longer happens is removed from the list."""
    modules = module_names(SOURCE)
    made = {
        (found.module, found.target)
        for name, path in modules.items()
        for found in imports_of(name, path, SOURCE.name)
    }
    assert ALLOWED_PRIVATE <= made, ALLOWED_PRIVATE - made


# --- the checkers on a tiny tree with planted faults ------------------------------------


def plant(root: Path, files: dict[str, str]) -> Path:
    for relative, text in files.items():
        path = root / "pkg" / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return root / "pkg"


def test_the_cycle_check_names_a_planted_cycle(tmp_path: Path):
    tree = plant(
        tmp_path,
        {
            "__init__.py": "",
            "a.py": "from . import b\n",
            "b.py": "from .sub.c import thing\n",
            "sub/__init__.py": "",
            "sub/c.py": "import pkg.a\nthing = 1\n",
            "d.py": "from .a import x\n",
        },
    )
    assert cycles(import_graph(tree)) == [["pkg.a", "pkg.b", "pkg.sub.c", "pkg.a"]]


def test_the_cycle_check_ignores_type_checking_and_lazy_imports(tmp_path: Path):
    tree = plant(
        tmp_path,
        {
            "__init__.py": "",
            "a.py": "from . import b\n",
            "b.py": (
                "from typing import TYPE_CHECKING\n"
                "if TYPE_CHECKING:\n    from . import a\n"
                "def later():\n    from . import a\n"
            ),
        },
    )
    assert import_graph(tree)["pkg.b"] == set()
    assert cycles(import_graph(tree)) == []


def test_the_private_check_names_a_planted_reach_in(tmp_path: Path):
    tree = plant(
        tmp_path,
        {
            "__init__.py": "",
            "_errors.py": "",
            "core/__init__.py": "from ._impl import thing\n",
            "core/_impl.py": "from .._errors import Oops\nthing = 1\n",
            "core/deep/__init__.py": "from .._impl import thing\n",
            "cli/__init__.py": "from ..core import thing\n",
            "cli/run.py": "def main():\n    from pkg.core._impl import thing\n",
            "cli/other.py": "from ..core.public import _helper\n",
            "tools/__init__.py": "from ..cli import run\n",
            "tools/_mine.py": "",
            "tools/use.py": "from . import _mine\n",
        },
    )
    assert private_imports(tree) == [
        "pkg.cli.other:1 imports pkg.core.public._helper",
        "pkg.cli.run:2 imports pkg.core._impl.thing",
    ]
    assert private_imports(tree, exempt=("pkg.cli",)) == []


@pytest.mark.parametrize("name", ["voharvest.protocol.datalink", "voharvest.harvesting"])
def test_the_graph_of_our_code_has_edges(name: str):
    assert import_graph(SOURCE)[name]  # the parser does see our imports
