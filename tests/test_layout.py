"""corelab's imports follow the data's flow (DESIGN "Module layout"): no circle, none backwards.

io -> preprocess -> segment -> measure -> pipeline -> compare -> agreement -> report, with train and
synth beside pipeline and cli on top. config, errors, audit and the package root hold facts every
step may use. A step never imports pipeline, cli, report, train or synth; segment never imports
measure; only cli imports train and synth. Imports inside functions count too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import corelab

PACKAGE = Path(corelab.__file__).resolve().parent

# Rank of each unit in the flow; a unit may import units of lower rank (and base units, rank 0).
RANKS = {
    "": 0, "config": 0, "errors": 0, "audit": 0,
    "io": 1, "preprocess": 2, "segment": 3, "measure": 4,
    "pipeline": 5, "train": 5, "synth": 5,
    "compare": 6, "agreement": 7, "report": 8,
    "cli": 9, "__main__": 10,
}
# Units only the command line may import (they sit beside the flow, not in it).
BESIDE = {"pipeline", "train", "synth"}
# Data folders installed as packages; they hold no code.
DATA = {"models", "templates"}


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(root: Path) -> dict[str, set[str]]:
    """Module -> the package's modules it imports (anywhere in its body), for every .py under root."""
    files = {module_name(p, root): p for p in root.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        edges = set()
        for node in ast.walk(ast.parse(path.read_text())):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    base = ".".join(anchor + ([base] if base else []))
                # `from pkg import sub` imports the submodule when there is one
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in files else base for a in node.names]
            edges |= {t for t in targets if t in files and t != name}
        graph[name] = edges
    return graph


def unit(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def layer_violations(graph: dict[str, set[str]]) -> list[str]:
    """Each import against the flow, as 'importer -> imported (why)'."""
    found = []
    for module, deps in sorted(graph.items()):
        here = unit(module)
        for dep in sorted(deps):
            there = unit(dep)
            if there == here or RANKS.get(there) == 0:
                continue
            if here not in RANKS or there not in RANKS:
                found.append(f"{module} -> {dep} (unit not in the flow: add it to RANKS)")
            elif there in BESIDE and here not in ("cli", "__main__"):
                found.append(f"{module} -> {dep} (only the command line imports {there})")
            elif RANKS[there] >= RANKS[here]:
                found.append(f"{module} -> {dep} (against the flow)")
    return found


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Import circles (strongly connected components of more than one module), by Tarjan."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for dep in graph.get(node, ()):
            if dep not in index:
                visit(dep)
                low[node] = min(low[node], low[dep])
            elif dep in stack:
                low[node] = min(low[node], index[dep])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_goes_against_the_flow():
    graph = import_graph(PACKAGE)
    assert len(graph) > 40  # the walk saw the whole package
    assert layer_violations(graph) == []


def test_no_import_circle():
    assert cycles(import_graph(PACKAGE)) == []


def test_every_package_folder_is_a_step_of_the_flow():
    folders = {p.name for p in PACKAGE.iterdir() if p.is_dir() and not p.name.startswith("__")}
    modules = {p.stem for p in PACKAGE.glob("*.py")}
    assert (folders | modules) - DATA <= set(RANKS) | {"__init__"}


@pytest.fixture
def bad_package(tmp_path) -> Path:
    """A package with three backwards imports (io -> report, measure -> synth, segment -> measure) and a
    circle between two report modules."""
    root = tmp_path / "corelab"
    for rel, text in {
        "__init__.py": "",
        "io/__init__.py": "",
        "io/read.py": "from corelab.report.pdf import render\n",
        "report/__init__.py": "",
        "report/pdf.py": "def render():\n    from corelab.report import text\n",
        "report/text.py": "from corelab.report.pdf import render\n",
        "measure.py": "def f():\n    from corelab import synth\n",
        "synth/__init__.py": "",
        "segment/__init__.py": "",
        "segment/labels.py": "import corelab.measure\n",
    }.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


def test_the_checks_find_a_backwards_import_and_a_circle(bad_package):
    graph = import_graph(bad_package)
    assert graph["corelab.report.pdf"] == {"corelab.report.text"}  # a function-level import counts
    violations = layer_violations(graph)
    assert "corelab.io.read -> corelab.report.pdf (against the flow)" in violations
    assert "corelab.measure -> corelab.synth (only the command line imports synth)" in violations
    assert "corelab.segment.labels -> corelab.measure (against the flow)" in violations
    assert len(violations) == 3
    assert cycles(graph) == [["corelab.report.pdf", "corelab.report.text"]]
