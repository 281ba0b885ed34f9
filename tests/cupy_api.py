"""The CuPy names the package uses, read from its source with :mod:`ast` (no list kept by hand).

The CuPy path reaches CuPy through a few spellings, each mapped here to the dotted CuPy name it
stands for on that path:

- the array-module variables ``xp``, ``cp`` and ``cupy`` (``cupy``) and ``cupyx`` (``cupyx``);
- an attribute ``.xp`` of any object (``cupy``): :class:`fem.kernels.backend.Backend`, the
  systems, results and multigrid objects keep their array module there;
- ``.sparse`` and ``.splinalg`` of a backend object (a name or attribute ``be`` or
  ``backend``, or a call of ``get_backend``, ``backend_of``, ``_cupy_backend``):
  ``cupyx.scipy.sparse`` and ``cupyx.scipy.sparse.linalg``, as ``_cupy_backend`` builds it;
- names bound by ``import cupy...`` / ``from cupy... import ...`` (and ``cupyx``);
- aliases: a name, or an attribute of ``self``, assigned one of the above as it stands
  (``sparse = backend.sparse``, ``self.xp, self.ndimage = xp, ndimage``), anywhere in the same
  module.

Every attribute chain read or called on those (``xp.linalg.inv(a)`` -> ``cupy.linalg.inv``), every
``getattr(xp, "name", ...)`` with a literal name and every imported name is collected. A chain
used only where ``hasattr`` of its first step was tested (``xp.errstate(...) if hasattr(xp,
"errstate") else None``) is collected as optional: the code copes without it. Methods of CuPy
arrays and sparse matrices (``a.astype``, ``A.tocsr()``) are not collected: telling which objects
are CuPy arrays would need types the source does not state.

Code that is shared with NumPy is scanned as if it ran on CuPy, so a name that only NumPy has
shows up as missing: that is the point. :data:`EXCLUDED` lists the few chains that are not CuPy at
all, each with the reason.
"""

from __future__ import annotations

import ast
import importlib.util
from dataclasses import dataclass
from pathlib import Path

#: Variable names that hold an array module on the CuPy path, and the module they stand for.
ROOT_NAMES = {"xp": "cupy", "cp": "cupy", "cupy": "cupy", "cupyx": "cupyx"}
#: Attributes of a backend object and the CuPy module each holds (see ``_cupy_backend``).
BACKEND_ATTRS = {"xp": "cupy", "sparse": "cupyx.scipy.sparse",
                 "splinalg": "cupyx.scipy.sparse.linalg"}
#: Names (or attribute names) under which the code keeps a Backend object.
BACKEND_NAMES = {"be", "backend"}
#: Functions that return a Backend object.
BACKEND_FACTORIES = {"get_backend", "backend_of", "_cupy_backend"}
#: Modules whose imports are CuPy's.
CUPY_MODULES = {"cupy", "cupyx"}

#: (file relative to the package folders' parent, chain as written) -> why it is not CuPy.
EXCLUDED = {
    ("fem/metrics.py", "cp.to_string"):
        "cp is the collapse-prevention table (a pandas DataFrame, Comparison.__str__), not CuPy",
}


@dataclass(frozen=True)
class Use:
    """One CuPy name (``name``) as written (``chain``) at ``path``:``line``; ``optional`` when
    the code tests ``hasattr`` first and copes without it."""

    name: str
    chain: str
    path: str
    line: int
    optional: bool = False


def package_dirs() -> list[Path]:
    """The source folders of the installed package: fem/ and the top-level kernels/ and meshes/
    (installed as fem.kernels and fem.meshes). Found through the import system, not imported."""
    dirs = []
    for mod in ("fem", "fem.kernels", "fem.meshes"):
        spec = importlib.util.find_spec(mod)
        dirs.append(Path(spec.submodule_search_locations[0]))
    return dirs


def _chain_text(node: ast.AST) -> str:
    if isinstance(node, ast.Attribute):
        return f"{_chain_text(node.value)}.{node.attr}"
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Call):
        return f"{_chain_text(node.func)}(...)"
    return type(node).__name__


class _Module:
    """The roots and aliases of one module's source, and the uses found in it."""

    def __init__(self, tree: ast.Module):
        self.tree = tree
        self.names = dict(ROOT_NAMES)  # variable name -> CuPy module it stands for
        self.self_attrs: dict[str, str] = {}  # attribute of self -> CuPy module
        self._imports()
        self._aliases()

    def _imports(self) -> None:
        for node in ast.walk(self.tree):
            if isinstance(node, ast.Import):
                for a in node.names:
                    if a.name.split(".")[0] in CUPY_MODULES:
                        # "import cupyx.scipy.sparse" binds cupyx; "... as csp" binds the module
                        self.names[a.asname or a.name.split(".")[0]] = (
                            a.name if a.asname else a.name.split(".")[0])
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                if node.module.split(".")[0] in CUPY_MODULES:
                    for a in node.names:
                        self.names[a.asname or a.name] = f"{node.module}.{a.name}"

    def _aliases(self) -> None:
        """Names and self attributes assigned a root as it stands; repeated until none is new
        (an alias of an alias)."""
        pairs = []
        for node in ast.walk(self.tree):
            if isinstance(node, ast.Assign):
                for target in node.targets:
                    pairs.extend(_pairs(target, node.value))
            elif isinstance(node, ast.AnnAssign) and node.value is not None:
                pairs.extend(_pairs(node.target, node.value))
        changed = True
        while changed:
            changed = False
            for target, value in pairs:
                resolved = self.resolve(value)
                if resolved is None or not resolved[1]:
                    continue
                if isinstance(target, ast.Name) and target.id not in self.names:
                    self.names[target.id] = resolved[0]
                    changed = True
                elif (isinstance(target, ast.Attribute) and _is_self(target.value)
                      and target.attr not in self.self_attrs):
                    self.self_attrs[target.attr] = resolved[0]
                    changed = True

    def resolve(self, node: ast.AST) -> tuple[str, bool] | None:
        """(dotted CuPy name, whether it is a root as it stands) for an expression, or None."""
        if isinstance(node, ast.Name):
            return (self.names[node.id], True) if node.id in self.names else None
        if not isinstance(node, ast.Attribute):
            return None
        base = self.resolve(node.value)
        if base is not None:
            return f"{base[0]}.{node.attr}", False
        if node.attr == "xp":
            return BACKEND_ATTRS["xp"], True
        if node.attr in BACKEND_ATTRS and _is_backend(node.value):
            return BACKEND_ATTRS[node.attr], True
        if node.attr in self.self_attrs and _is_self(node.value):
            return self.self_attrs[node.attr], True
        return None

    def _guarded(self) -> set[int]:
        """ids of the attribute nodes ``E.name`` inside the true branch of an ``if`` or
        conditional expression whose test is (or ands) ``hasattr(E, "name")``."""
        guarded = set()
        for node in ast.walk(self.tree):
            if not isinstance(node, (ast.If, ast.IfExp)):
                continue
            tests = node.test.values if isinstance(node.test, ast.BoolOp) and isinstance(
                node.test.op, ast.And) else [node.test]
            checked = {(ast.dump(t.args[0]), t.args[1].value) for t in tests
                       if isinstance(t, ast.Call) and isinstance(t.func, ast.Name)
                       and t.func.id == "hasattr" and len(t.args) == 2
                       and isinstance(t.args[1], ast.Constant)}
            body = node.body if isinstance(node, ast.If) else [node.body]
            for part in body:
                for sub in ast.walk(part):
                    if (isinstance(sub, ast.Attribute)
                            and (ast.dump(sub.value), sub.attr) in checked):
                        guarded.add(id(sub))
        return guarded

    def uses(self, path: str) -> list[Use]:
        found = []
        inner = {id(n.value) for n in ast.walk(self.tree) if isinstance(n, ast.Attribute)}
        guarded = self._guarded()
        for node in ast.walk(self.tree):
            if isinstance(node, ast.Attribute) and id(node) not in inner:
                resolved = self.resolve(node)
                if resolved is not None:
                    step = node  # the first step after the root, which hasattr would test
                    while isinstance(step.value, ast.Attribute) and self.resolve(
                            step.value) is not None and not self.resolve(step.value)[1]:
                        step = step.value
                    found.append(Use(resolved[0], _chain_text(node), path, node.lineno,
                                     optional=id(step) in guarded))
            elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                  and node.func.id == "getattr" and len(node.args) >= 2
                  and isinstance(node.args[1], ast.Constant) and isinstance(node.args[1].value, str)):
                resolved = self.resolve(node.args[0])
                if resolved is not None:
                    found.append(Use(f"{resolved[0]}.{node.args[1].value}",
                                     f"getattr({_chain_text(node.args[0])}, "
                                     f"{node.args[1].value!r})", path, node.lineno))
            elif isinstance(node, ast.Import):
                found.extend(Use(a.name, f"import {a.name}", path, node.lineno)
                             for a in node.names if a.name.split(".")[0] in CUPY_MODULES)
            elif (isinstance(node, ast.ImportFrom) and node.level == 0 and node.module
                  and node.module.split(".")[0] in CUPY_MODULES):
                found.extend(Use(f"{node.module}.{a.name}", f"from {node.module} import {a.name}",
                                 path, node.lineno) for a in node.names)
        return found


def _pairs(target: ast.AST, value: ast.AST) -> list[tuple[ast.AST, ast.AST]]:
    """(target, value) pairs of an assignment, tuples unpacked element by element."""
    if (isinstance(target, (ast.Tuple, ast.List)) and isinstance(value, (ast.Tuple, ast.List))
            and len(target.elts) == len(value.elts)):
        return [p for t, v in zip(target.elts, value.elts) for p in _pairs(t, v)]
    return [(target, value)]


def _is_self(node: ast.AST) -> bool:
    return isinstance(node, ast.Name) and node.id == "self"


def _is_backend(node: ast.AST) -> bool:
    if isinstance(node, ast.Name):
        return node.id in BACKEND_NAMES
    if isinstance(node, ast.Attribute):
        return node.attr in BACKEND_NAMES
    if isinstance(node, ast.Call):
        f = node.func
        name = f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else ""
        return name in BACKEND_FACTORIES
    return False


def scan_source(source: str, path: str = "<source>") -> list[Use]:
    """The CuPy uses in one module's source, exclusions not applied."""
    return _Module(ast.parse(source)).uses(path)


def scan_package(excluded=EXCLUDED) -> list[Use]:
    """The CuPy uses in every .py file of the package folders, less those ``excluded`` (keys
    (path, chain) as in :data:`EXCLUDED`)."""
    uses = []
    for d in package_dirs():
        for f in sorted(d.rglob("*.py")):
            rel = f.relative_to(d.parent).as_posix()
            uses.extend(u for u in scan_source(f.read_text(encoding="utf-8"), rel)
                        if (u.path, u.chain) not in excluded)
    return uses


def used_names(uses: list[Use], optional: bool = False) -> dict[str, list[Use]]:
    """The uses grouped by CuPy name, names sorted: the required ones (used at least once without
    a ``hasattr`` guard), or with ``optional=True`` the names only ever used under one."""
    out: dict[str, list[Use]] = {}
    for u in sorted(uses, key=lambda u: (u.name, u.path, u.line)):
        out.setdefault(u.name, []).append(u)
    return {k: v for k, v in out.items() if all(u.optional for u in v) == optional}


#: pytest ``filterwarnings`` marks (action:message:category:module) that turn a DeprecationWarning
#: or FutureWarning issued by CuPy into an error: the module field is a regular expression matched
#: at the start of the name of the module the warning is attributed to, here cupy, cupyx or one of
#: their submodules (not, say, a package called cupy_something). conftest.py puts them on every
#: test marked ``gpu``. A warning issued with ``stacklevel=2``, or from CuPy's compiled (Cython)
#: code, is attributed to the calling module (fem...), not to CuPy, and stays a warning.
CUPY_WARNINGS_ARE_ERRORS = (
    r"error::DeprecationWarning:cupyx?(\.|$)",
    r"error::FutureWarning:cupyx?(\.|$)",
)
