"""The layer contract of DESIGN.md, checked from the source (issue 18, deliverable 1): each layer
imports only the layers below it.

    faces        fem.cli, fem.viz, fem.study
    procedures   fem.augment, fem.metrics, fem.strength (procedures on Models, predictions)
    meshes       fem.meshes (the top-level meshes/ folder)
    core         every other module of fem/ (Model, assembly, solvers, Result, I/O)
    kernels      fem.kernels (the top-level kernels/ folder): nothing of the project

Every import statement of every module is read (``ast``), relative ones resolved, including
imports inside functions: a lazy import is still a dependency.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RANK = {"kernels": 0, "core": 1, "meshes": 2, "procedures": 3, "faces": 4}
PROCEDURES = ("augment", "metrics", "strength")
FACES = ("cli", "viz", "study")


def layer(module: str) -> str:
    parts = module.split(".")
    if len(parts) < 2:
        return "core"  # the package itself
    if parts[1] == "kernels":
        return "kernels"
    if parts[1] == "meshes":
        return "meshes"
    if parts[1] in PROCEDURES:
        return "procedures"
    if parts[1] in FACES:
        return "faces"
    return "core"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[0] in ("kernels", "meshes"):  # installed as fem.kernels, fem.meshes
        parts = ["fem"] + parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def source_module(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    """The absolute name of the module a ``from ... import`` statement imports from."""
    if not node.level:
        return node.module or ""
    package = module if is_package else module.rsplit(".", 1)[0]
    base = package.split(".")
    base = base[:len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imports(source: str, module: str, is_package: bool) -> list[tuple[str, int]]:
    """(imported fem module or name, line) of every import in ``source``."""
    out = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom):
            target = source_module(node, module, is_package)
            out += [(target, node.lineno)]
            out += [(f"{target}.{a.name}", node.lineno) for a in node.names]
        elif isinstance(node, ast.Import):
            out += [(a.name, node.lineno) for a in node.names]
    return [(t, ln) for t, ln in out if t == "fem" or t.startswith("fem.")]


def upward(source: str, module: str, is_package: bool = False) -> list[str]:
    mine = RANK[layer(module)]
    return [f"{module} (line {ln}) imports {t} ({layer(t)} above {layer(module)})"
            for t, ln in imports(source, module, is_package) if RANK[layer(t)] > mine]


def sources():
    for folder in ("fem", "kernels", "meshes"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            yield path


def test_no_layer_imports_a_layer_above_it():
    bad = []
    for path in sources():
        bad += upward(path.read_text(), module_name(path), path.name == "__init__.py")
    assert not bad, "\n".join(bad)


def test_the_check_sees_imports_and_would_catch_an_upward_one():
    """It reads real edges (augment -> meshes.pathology, a relative import into a subpackage) and
    flags an upward import, also one hidden in a function."""
    edges = {t for p in sources() if module_name(p) == "fem.augment"
             for t, _ in imports(p.read_text(), "fem.augment", False)}
    assert "fem.meshes.pathology" in edges
    edges = {t for p in sources() if module_name(p) == "fem.meshes.pathology"
             for t, _ in imports(p.read_text(), "fem.meshes.pathology", False)}
    assert "fem.assembly" in edges  # "from ..assembly import ..." inside fem.meshes
    assert upward("def f():\n    from ..metrics import level_metrics\n", "fem.meshes.x")
    assert upward("from . import study\n", "fem.model") == [
        "fem.model (line 1) imports fem.study (faces above core)"]
    assert not upward("from ..model import Model\n", "fem.meshes.x")
    assert upward("import fem.viz\n", "fem.kernels.elastic")


@pytest.mark.parametrize("module, expected", [("fem.kernels.voxel", "kernels"),
                                              ("fem.meshes.rigs", "meshes"),
                                              ("fem.strength", "procedures"),
                                              ("fem.study.store", "faces"),
                                              ("fem.io.inp", "core"), ("fem", "core")])
def test_layers_of_modules(module, expected):
    assert layer(module) == expected


def private_imports(source: str, module: str, is_package: bool) -> list[str]:
    """Underscore names that ``source`` imports from another module of the package."""
    out = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom):
            target = source_module(node, module, is_package)
            if target != "fem" and not target.startswith("fem."):
                continue
            out += [f"{module} (line {node.lineno}) imports {a.name} from {target}"
                    for a in node.names
                    if a.name.startswith("_") and not a.name.startswith("__")]
    return out


def test_no_module_imports_another_s_underscore_names():
    """Issue 18, deliverable 2: what a sibling needs is public (the toolkit of
    meshes/vertebra.py was imported by four modules under private names)."""
    bad = []
    for path in sources():
        bad += private_imports(path.read_text(), module_name(path), path.name == "__init__.py")
    assert not bad, "\n".join(bad)
    assert private_imports("from .vertebra import _Stack\n", "fem.meshes.ssm", False)
    assert not private_imports("from numpy import _globals\n", "fem.meshes.ssm", False)
