"""The CUDA voxel kernels, proven without a GPU.

CI has no GPU, so ``kernels/*.cu`` is checked three ways: it compiles to PTX with nvcc for the
GPUs we target (sm_80, sm_90); the same source, built for the host with g++ and
``cuda_emulation.h`` (the grid runs serially), gives the numbers of its NumPy twin; and the twin
itself agrees with the assembled stiffness matrix of the equivalent hex8 model. The names of the
CuPy API the package uses, read from its source (:mod:`cupy_api`), are checked against the
installed CuPy, and the CuPy launchers run against the twins where there is a GPU (marked ``gpu``,
a visible skip elsewhere; there a DeprecationWarning or FutureWarning from CuPy is an error).
"""

from __future__ import annotations

import ast
import ctypes
import importlib
import importlib.util
import inspect
import shutil
import subprocess
import warnings
from pathlib import Path

import numpy as np
import pytest
from cupy_api import (
    CUPY_WARNINGS_ARE_ERRORS,
    EXCLUDED,
    scan_package,
    scan_source,
    used_names,
)

import fem
from fem.assembly import assemble_stiffness, element_geometry, to_matrix
from fem.kernels import elastic, voxel
from fem.kernels.backend import get_backend, voxel_kernels

KERNEL_DIR = Path(voxel.__file__).parent
CU_FILES = sorted(KERNEL_DIR.glob("*.cu"))
DRIVER = Path(__file__).with_name("cuda_host_driver.cpp")
ARCHS = ("sm_80", "sm_90")

GRIDS = [(3, 4, 5), (2, 2, 7), (1, 1, 1)]  # (nx, ny, nz) voxels
SPACING = (0.5, 0.7, 0.9)
NU = 0.3
DTYPES = [(np.float64, np.float64), (np.float64, np.float32),
          (np.float32, np.float32), (np.float32, np.float64)]  # (compute, modulus)
TOL = {np.float64: 1e-12, np.float32: 1e-5}
TAG = {np.float64: "f64", np.float32: "f32"}


def _nvcc() -> str | None:
    found = shutil.which("nvcc")
    if found is None and Path("/usr/local/cuda/bin/nvcc").exists():
        found = "/usr/local/cuda/bin/nvcc"
    return found


def _node_ranges(nz):
    """Whole grid, first plane, last plane, an interior slab, an empty range."""
    r = [(0, nz + 1), (0, 1), (nz, nz + 1), (min(1, nz), min(3, nz + 1)), (nz // 2, nz // 2)]
    return list(dict.fromkeys(r))


def _element_ranges(nz):
    r = [(0, nz), (0, 1), (nz - 1, nz), (nz // 2, nz // 2 + 1), (nz // 2, nz // 2)]
    return list(dict.fromkeys(r))


def _voxel_case(shape, dtype, etype, seed):
    """Random u and moduli (about a third of the voxels empty) on a grid of ``shape`` voxels."""
    nx, ny, nz = shape
    rng = np.random.default_rng(seed)
    E = rng.uniform(50.0, 2000.0, (nz, ny, nx))
    E[rng.random(E.shape) < 0.35] = 0.0
    u = rng.standard_normal((nz + 1, ny + 1, nx + 1, 3))
    return u.astype(dtype), E.astype(etype)


def _rel_err(got, ref) -> float:
    scale = max(float(np.abs(ref).max()), 1e-300) if ref.size else 1.0
    return float(np.abs(got - ref).max()) / scale if ref.size else 0.0


# --- (a) every .cu compiles to PTX ---------------------------------------------------------------

@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("cu", CU_FILES, ids=lambda p: p.name)
def test_cu_compiles_to_ptx(cu, arch, tmp_path):
    nvcc = _nvcc()
    if nvcc is None:
        pytest.skip("nvcc (CUDA toolkit) not found on PATH or in /usr/local/cuda/bin")
    ptx = tmp_path / f"{cu.stem}_{arch}.ptx"
    proc = subprocess.run([nvcc, "-ptx", f"-arch={arch}", "--std=c++14", str(cu), "-o", str(ptx)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, f"nvcc failed on {cu.name} for {arch}:\n{proc.stderr}"
    text = ptx.read_text()
    assert f".target {arch}" in text
    if cu.name == "voxel.cu":
        entries = {f"{k}_{TAG[t]}_{TAG[e]}" for k in ("voxel_matvec", "voxel_diagonal")
                   for t, e in DTYPES} | {f"voxel_strain_{TAG[t]}" for t in TAG} | {
                   "voxel_matvec_acc_f32_f32"}
        for name in entries:  # the names kernels/cuda.py launches
            assert f".entry {name}(" in text, f"{name} missing from the PTX"


def test_kernel_sources_beside_the_package():
    """The launchers read voxel.cu from the package directory (package data in pyproject)."""
    assert (KERNEL_DIR / "voxel.cu").is_file()
    assert (KERNEL_DIR / "cuda_emulation.h").is_file()


# --- (b) host build of the .cu against the NumPy twins -------------------------------------------

class HostKernels:
    """voxel.cu compiled for the CPU; ``grid``/``block`` choose the emulated launch."""

    def __init__(self, lib: ctypes.CDLL, grid: int | None = None, block: int = 256):
        self.lib, self.grid, self.block = lib, grid, block

    def _call(self, name, n, arrays, ints):
        f = getattr(self.lib, f"host_{name}")
        ptrs = [ctypes.c_void_p(a.ctypes.data) for a in arrays]
        grid = self.grid if self.grid is not None else max(1, -(-n // self.block))
        f.argtypes = ([ctypes.c_uint, ctypes.c_uint] + [ctypes.c_void_p] * len(ptrs)
                      + [ctypes.c_longlong] * len(ints))
        f.restype = None
        f(grid, self.block, *ptrs, *ints)

    def voxel_matvec(self, u, E, Ke, out, k0, k1):
        nz, ny, nx = E.shape
        self._call(f"voxel_matvec_{TAG[out.dtype.type]}_{TAG[E.dtype.type]}", out.size // 3,
                   (u, E, Ke, out), (nx, ny, nz, k0, k1))

    def voxel_matvec_acc(self, u, E, Ke, out, k0, k1):
        nz, ny, nx = E.shape
        self._call("voxel_matvec_acc_f32_f32", out.size // 3, (u, E, Ke, out), (nx, ny, nz, k0, k1))

    def voxel_diagonal(self, E, kdiag, out, k0, k1):
        nz, ny, nx = E.shape
        self._call(f"voxel_diagonal_{TAG[out.dtype.type]}_{TAG[E.dtype.type]}", out.size // 3,
                   (E, kdiag, out), (nx, ny, nz, k0, k1))

    def voxel_strain(self, u, B, out, e0, e1):
        nz = u.shape[0] - 1
        self._call(f"voxel_strain_{TAG[out.dtype.type]}", out.size // 6, (u, B, out),
                   (out.shape[2], out.shape[1], nz, e0, e1))


@pytest.fixture(scope="module")
def host_lib(tmp_path_factory):
    gxx = shutil.which("g++")
    if gxx is None:
        pytest.fail("g++ is needed to build the CUDA kernels for the host (apt-get install g++)")
    lib = tmp_path_factory.mktemp("cuda_host") / "libvoxel_host.so"
    cmd = [gxx, "-std=c++17", "-O2", "-Wall", "-Werror", "-shared", "-fPIC", f"-I{KERNEL_DIR}",
           "-x", "c++", *map(str, CU_FILES), "-x", "none", str(DRIVER), "-o", str(lib)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 0, f"host build failed:\n{' '.join(cmd)}\n{proc.stderr}"
    return ctypes.CDLL(str(lib))


# the default launch (one thread per item) and a small grid, so the grid-stride loop wraps
LAUNCHES = [pytest.param((None, 256), id="grid=ceil(n/256)"), pytest.param((2, 3), id="grid=2x3")]


def _compare_all(k_test, shape, dtype, etype, seed):
    """Run all three kernels of ``k_test`` against the twins; return the worst relative error."""
    u, E = _voxel_case(shape, dtype, etype, seed)
    nx, ny, nz = shape
    Ke = voxel.reference_stiffness(SPACING, NU).astype(dtype)
    B = voxel.mean_strain_operator(SPACING).astype(dtype)
    kdiag = np.ascontiguousarray(np.diag(Ke))
    worst = 0.0
    for k0, k1 in _node_ranges(nz):
        for fn, args in (("voxel_matvec", (u, E, Ke)), ("voxel_diagonal", (E, kdiag))):
            ref = np.empty((k1 - k0, ny + 1, nx + 1, 3), dtype)
            got = np.full_like(ref, np.nan)
            getattr(voxel, fn)(*args, ref, k0, k1)
            getattr(k_test, fn)(*args, got, k0, k1)
            err = _rel_err(got, ref)
            assert err <= TOL[dtype], f"{fn} planes [{k0}, {k1}): relative error {err:.2e}"
            worst = max(worst, err)
    for e0, e1 in _element_ranges(nz):
        ref = np.empty((e1 - e0, ny, nx, 6), dtype)
        got = np.full_like(ref, np.nan)
        voxel.voxel_strain(u, B, ref, e0, e1)
        k_test.voxel_strain(u, B, got, e0, e1)
        err = _rel_err(got, ref)
        assert err <= TOL[dtype], f"voxel_strain planes [{e0}, {e1}): relative error {err:.2e}"
        worst = max(worst, err)
    return worst


@pytest.mark.parametrize("launch", LAUNCHES)
@pytest.mark.parametrize("dtype,etype", DTYPES, ids=lambda t: TAG.get(t, str(t)))
@pytest.mark.parametrize("shape", GRIDS, ids=lambda s: "x".join(map(str, s)))
def test_host_build_matches_numpy_twin(host_lib, shape, dtype, etype, launch):
    grid, block = launch
    worst = _compare_all(HostKernels(host_lib, grid, block), shape, dtype, etype, seed=sum(shape))
    assert worst <= TOL[dtype]


def _compare_acc(k_test, shape, seed):
    """The float64-summed float32 product of ``k_test`` against its twin (the same bits: both
    sum in float64 and round once) and against the float64 product (float32 rounding only),
    on a u with a large uniform part, whose element forces cancel between voxels; returns the
    plain float32 product's error on the same input, for scale."""
    u, E = _voxel_case(shape, np.float32, np.float32, seed)
    u = (u + np.float32(100.0)).astype(np.float32)
    nx, ny, nz = shape
    Ke = voxel.reference_stiffness(SPACING, NU)
    plain = 0.0
    for k0, k1 in _node_ranges(nz):
        ref64 = np.empty((k1 - k0, ny + 1, nx + 1, 3))
        voxel.voxel_matvec(u.astype(np.float64), E.astype(np.float64), Ke, ref64, k0, k1)
        twin = np.full(ref64.shape, np.nan, np.float32)
        voxel.voxel_matvec_acc(u, E, Ke, twin, k0, k1)
        got = np.full_like(twin, np.nan)
        k_test.voxel_matvec_acc(u, E, Ke, got, k0, k1)
        assert _rel_err(got, twin) <= 1e-7, (k0, k1)
        assert _rel_err(twin, ref64) <= 1e-7, (k0, k1)
        f32 = np.empty_like(twin)
        voxel.voxel_matvec(u, E, Ke.astype(np.float32), f32, k0, k1)
        plain = max(plain, _rel_err(f32, ref64))
    return plain


@pytest.mark.parametrize("launch", LAUNCHES)
@pytest.mark.parametrize("shape", GRIDS, ids=lambda s: "x".join(map(str, s)))
def test_host_build_of_the_float64_summed_product_matches_its_twin(host_lib, shape, launch):
    """voxel_matvec_acc_f32_f32 (mixed precision's CG product) on the host build."""
    grid, block = launch
    _compare_acc(HostKernels(host_lib, grid, block), shape, seed=sum(shape))


def test_float64_sums_keep_the_digits_float32_sums_lose():
    """What the float64-summed product is for: on a smooth u the plain float32 product is off by
    about 1e-6 of its largest force, the float64-summed one by float32 rounding (< 1e-7)."""
    plain = _compare_acc(voxel, (3, 4, 5), seed=12)
    assert plain > 3e-7


def test_host_matvec_is_deterministic(host_lib):
    """Node-parallel gather: the same bits whatever the launch shape."""
    u, E = _voxel_case((3, 4, 5), np.float32, np.float32, 7)
    Ke = voxel.reference_stiffness(SPACING, NU).astype(np.float32)
    outs = []
    for grid, block in ((None, 256), (1, 1), (5, 7)):
        out = np.empty((6, 5, 4, 3), np.float32)
        HostKernels(host_lib, grid, block).voxel_matvec(u, E, Ke, out, 0, 6)
        outs.append(out)
    assert all(np.array_equal(outs[0], o) for o in outs[1:])


# --- the twin itself against the assembled hex8 model --------------------------------------------

def _hex8_model(shape, E):
    """The voxel grid as an ordinary hex8 model: nodes numbered like the voxel layout, only the
    non-empty voxels as elements (the assembler rejects E = 0)."""
    nx, ny, nz = shape
    k, j, i = np.meshgrid(np.arange(nz + 1), np.arange(ny + 1), np.arange(nx + 1), indexing="ij")
    points = np.stack([i, j, k], axis=-1).reshape(-1, 3) * np.asarray(SPACING)
    ek, ej, ei = np.nonzero(E)
    corners = voxel.CORNERS
    conn = ((ei[:, None] + corners[:, 0]) + (nx + 1) * ((ej[:, None] + corners[:, 1])
            + (ny + 1) * (ek[:, None] + corners[:, 2])))
    model = fem.Model.from_arrays(points, [("hex8", conn)], E=E[ek, ej, ei], nu=NU)
    return model, conn


@pytest.mark.parametrize("shape", GRIDS[:2], ids=lambda s: "x".join(map(str, s)))
def test_numpy_twin_matches_assembled_matrix(shape):
    nx, ny, nz = shape
    u, E = _voxel_case(shape, np.float64, np.float64, 11)
    model, conn = _hex8_model(shape, E)
    be = get_backend("numpy")
    A = to_matrix(*assemble_stiffness(model, be), be)
    Au = (A @ u.ravel()).reshape(u.shape)
    Ke = voxel.reference_stiffness(SPACING, NU)
    for k0, k1 in _node_ranges(nz):
        out = np.empty((k1 - k0, ny + 1, nx + 1, 3))
        voxel.voxel_matvec(u, E, Ke, out, k0, k1)
        assert _rel_err(out, Au[k0:k1]) <= 1e-12
        voxel.voxel_diagonal(E, np.diag(Ke).copy(), out, k0, k1)
        diag = A.diagonal().reshape(u.shape)
        assert _rel_err(out, diag[k0:k1]) <= 1e-12

    G, wdet, _ = element_geometry(model, 0, slice(None), np)
    eps = elastic.strains(G, wdet, u.reshape(-1, 3)[conn]).mean(axis=1)  # (m, 3, 3)
    comps = ((0, 0), (1, 1), (2, 2), (0, 1), (1, 2), (0, 2))
    ref = np.stack([eps[:, a, b] for a, b in comps], axis=-1)
    out = np.empty((nz, ny, nx, 6))
    voxel.voxel_strain(u, voxel.mean_strain_operator(SPACING), out, 0, nz)
    assert _rel_err(out[np.nonzero(E)], ref) <= 1e-12


def test_voxel_kernels_for_numpy():
    assert voxel_kernels(np) is voxel


def test_voxel_kernels_for_cupy_read_the_packaged_source():
    """Needs an importable cupy, not a GPU: the launchers and the .cu they compile are found."""
    cupy = pytest.importorskip("cupy", reason="cupy is not installed")
    k = voxel_kernels(cupy)
    assert k.__name__ == "fem.kernels.cuda"
    assert k.source() == (KERNEL_DIR / "voxel.cu").read_text(encoding="utf-8")
    for name in ("voxel_matvec", "voxel_diagonal", "voxel_strain"):
        assert inspect.signature(getattr(k, name)) == inspect.signature(getattr(voxel, name))


# --- (c) the CuPy API the backend relies on exists -----------------------------------------------

def _bound_names(source: str) -> set[str]:
    """Names a module binds at top level (defs, classes, assignments, imports)."""
    names = set()
    for node in ast.parse(source).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
    return names


def _package_file(dotted: str) -> Path:
    """Source of a module found on disk, without importing it (importing needs the CUDA
    libraries: ``import cupyx.scipy.sparse.linalg`` loads cuBLAS)."""
    top, *rest = dotted.split(".")
    base = Path(importlib.util.find_spec(top).submodule_search_locations[0]).joinpath(*rest)
    return base / "__init__.py" if base.is_dir() else base.with_suffix(".py")


def _has_api(dotted: str) -> bool:
    parts = dotted.split(".")
    obj = importlib.import_module(parts[0])
    for i, name in enumerate(parts[1:], start=1):
        if hasattr(obj, name):
            obj = getattr(obj, name)
            continue
        module = ".".join(parts[:i + 1])
        try:
            obj = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name == module:
                return False
            raise
        except Exception:  # a CUDA library that cannot load on a machine without a GPU
            src = _package_file(module)
            if not src.is_file():
                return False
            if i == len(parts) - 1:  # the name is the module itself: its source is there
                return True
            if i + 1 == len(parts) - 1:
                return parts[-1] in _bound_names(src.read_text(encoding="utf-8"))
            raise AssertionError(f"cannot check {dotted} without importing {module}") from None
    return True


def _need_cupy() -> None:
    if importlib.util.find_spec("cupy") is None:
        pytest.skip("cupy is not installed")
    pytest.importorskip("cupy", reason="cupy is installed but cannot be imported")


def _missing(uses) -> list[str]:
    """The names of ``uses`` (required ones only) that the installed CuPy lacks, each with where
    the code uses it."""
    return [f"{name} ({', '.join(f'{u.path}:{u.line} {u.chain}' for u in where)})"
            for name, where in used_names(uses).items() if not _has_api(name)]


SNIPPET = """
import cupyx.scipy.sparse as csp
from cupyx.scipy import ndimage

def f(xp, a):
    return xp.sum(a) + xp.linalg.inv(a) + np.sum(a) + getattr(xp, "ndarray", None)

def g(be, A, b):
    spla = be.splinalg
    return be.sparse.csr_matrix(A), spla.spsolve(A, b), backend_of(A).splinalg.cg, scipy.sparse.eye

class S:
    def __init__(self, be):
        self.xp, self.nd = be.xp, ndimage

    def h(self, a):
        ctx = self.xp.errstate() if hasattr(self.xp, "errstate") else None
        return self.xp.cumsum(a), self.nd.gaussian_filter(a, 1.0), csp.diags(a), self.other.sum
"""


def test_cupy_api_scan_of_a_snippet():
    """Each spelling of the CuPy path maps to its CuPy name; NumPy, SciPy and unrelated
    attributes are not collected; a hasattr-guarded name is optional."""
    uses = scan_source(SNIPPET)
    assert set(used_names(uses)) == {
        "cupyx.scipy.sparse", "cupyx.scipy.ndimage",  # the imports
        "cupy.sum", "cupy.linalg.inv", "cupy.ndarray",
        "cupyx.scipy.sparse.csr_matrix", "cupyx.scipy.sparse.linalg.spsolve",
        "cupyx.scipy.sparse.linalg.cg", "cupyx.scipy.sparse.linalg",  # spla = be.splinalg
        "cupy",  # self.xp = be.xp
        "cupy.cumsum", "cupyx.scipy.ndimage.gaussian_filter", "cupyx.scipy.sparse.diags",
    }
    assert set(used_names(uses, optional=True)) == {"cupy.errstate"}
    assert scan_source("def f(xp):\n    return xp.sum(a)\n")[0].name == "cupy.sum"


def test_cupy_api_scan_of_the_package():
    """The scan reaches every part of the CuPy path: array module, backend attributes, aliases,
    imports; and each exclusion still names a use in the source (else it is stale)."""
    names = set(used_names(scan_package()))
    assert {"cupy.sum", "cupy.linalg.inv", "cupy.add.at", "cupy.RawModule",
            "cupy.cuda.runtime.getDeviceProperties", "cupyx.scipy.sparse.coo_matrix",
            "cupyx.scipy.sparse.csr_matrix", "cupyx.scipy.sparse.linalg.spsolve",
            "cupyx.scipy.sparse.linalg.splu", "cupyx.scipy.ndimage.gaussian_filter"} <= names
    assert "cupyx.scatter_add" not in names  # deprecated in CuPy 14; scatter_add uses add.at
    unexcluded = {(u.path, u.chain) for u in scan_package(excluded={})}
    assert set(EXCLUDED) <= unexcluded


def test_cupy_api_used_exists():
    """Every CuPy name the package's source uses exists in the installed CuPy."""
    _need_cupy()
    missing = _missing(scan_package())
    assert not missing, "the installed CuPy lacks:\n" + "\n".join(missing)


def test_cupy_api_check_detects_missing_names():
    _need_cupy()
    assert not _has_api("cupy.no_such_function")
    assert not _has_api("cupyx.scipy.sparse.linalg.no_such_solver")
    assert _has_api("cupyx.scipy.sparse.linalg.cg")
    assert _has_api("cupyx.scipy.sparse.linalg")  # a module that cannot load without a GPU
    fake = scan_source("def f(xp, be):\n    return xp.no_such_function(), be.sparse.no_such\n",
                       "fake.py")
    assert _missing(fake) == ["cupy.no_such_function (fake.py:2 xp.no_such_function)",
                              "cupyx.scipy.sparse.no_such (fake.py:2 be.sparse.no_such)"]


@pytest.mark.filterwarnings(*CUPY_WARNINGS_ARE_ERRORS)
def test_cupy_warning_filters_catch_cupy_and_only_cupy():
    """The filters conftest.py puts on the GPU tests: a DeprecationWarning or FutureWarning
    attributed to cupy, cupyx or a submodule raises; from any other module, or of another
    category, it stays a warning."""
    def issue(category, module):
        warnings.warn_explicit("old API", category, "x.py", 1, module=module, registry={})

    for module in ("cupy", "cupy._core.core", "cupyx", "cupyx.scipy.sparse.linalg._solve"):
        for category in (DeprecationWarning, FutureWarning):
            with pytest.raises(category):
                issue(category, module)
    with warnings.catch_warnings(record=True) as seen:
        for module in ("cupy_helpers", "fem.kernels.backend", "numpy"):
            issue(DeprecationWarning, module)
        issue(UserWarning, "cupy")
    assert len(seen) == 4


def test_gpu_tests_carry_the_cupy_warning_filters(request):
    gpu = [item for item in request.session.items if item.get_closest_marker("gpu")]
    if not gpu:
        pytest.skip("no test marked gpu was collected in this run")
    for item in gpu:
        args = {a for m in item.iter_markers("filterwarnings") for a in m.args}
        assert set(CUPY_WARNINGS_ARE_ERRORS) <= args, item.nodeid


# --- (d) the CuPy launchers on a GPU --------------------------------------------------------------

def _gpu_reason() -> str | None:
    try:
        import cupy
    except Exception as exc:
        return f"no CUDA GPU (cupy not importable: {type(exc).__name__})"
    try:
        return None if cupy.is_available() else "no CUDA GPU"
    except Exception as exc:
        return f"no CUDA GPU ({type(exc).__name__}: {exc})"


GPU_REASON = _gpu_reason()


class _OnDevice:
    """The CuPy launchers behind the host-array interface of :func:`_compare_all`."""

    def __init__(self):
        import cupy

        self.cp, self.k = cupy, voxel_kernels(cupy)

    def _run(self, fn, *args):
        *inputs, out, lo, hi = args
        d_out = self.cp.asarray(out)
        getattr(self.k, fn)(*map(self.cp.asarray, inputs), d_out, lo, hi)
        out[...] = self.cp.asnumpy(d_out)

    def voxel_matvec(self, *args):
        self._run("voxel_matvec", *args)

    def voxel_diagonal(self, *args):
        self._run("voxel_diagonal", *args)

    def voxel_strain(self, *args):
        self._run("voxel_strain", *args)


@pytest.mark.gpu
@pytest.mark.skipif(GPU_REASON is not None, reason=GPU_REASON or "")
@pytest.mark.parametrize("dtype,etype", DTYPES, ids=lambda t: TAG.get(t, str(t)))
@pytest.mark.parametrize("shape", GRIDS + [(37, 29, 23)], ids=lambda s: "x".join(map(str, s)))
def test_cupy_launchers_match_numpy_twin(shape, dtype, etype):
    worst = _compare_all(_OnDevice(), shape, dtype, etype, seed=sum(shape))
    assert worst <= TOL[dtype]


@pytest.mark.gpu
@pytest.mark.skipif(GPU_REASON is not None, reason=GPU_REASON or "")
@pytest.mark.parametrize("shape", GRIDS + [(37, 29, 23)], ids=lambda s: "x".join(map(str, s)))
def test_cupy_float64_summed_product_matches_numpy_twin(shape):
    class Acc(_OnDevice):
        def voxel_matvec_acc(self, *args):
            self._run("voxel_matvec_acc", *args)

    _compare_acc(Acc(), shape, seed=sum(shape))


@pytest.mark.gpu
@pytest.mark.skipif(GPU_REASON is not None, reason=GPU_REASON or "")
def test_cupy_launchers_reject_bad_output():
    import cupy

    k = voxel_kernels(cupy)
    E = cupy.ones((2, 2, 2))
    Ke = cupy.asarray(voxel.reference_stiffness(SPACING, NU))
    u = cupy.zeros((3, 3, 3, 3))
    with pytest.raises(ValueError):
        k.voxel_matvec(u, E, Ke, cupy.zeros((3, 3, 3, 3))[:, :, ::2], 0, 3)
    with pytest.raises(ValueError):
        k.voxel_matvec(u, E, Ke, cupy.zeros((5, 3, 3, 3)), 0, 5)
