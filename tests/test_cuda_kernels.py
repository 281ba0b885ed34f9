"""The CUDA voxel kernels, proven without a GPU.

CI has no GPU, so ``kernels/*.cu`` is checked three ways: it compiles to PTX with nvcc for the
GPUs we run on (sm_90: H100, H200); the same source, built for the host with g++ and
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
# sm_90: the H100 and H200 the project runs on. One target is enough to show the source compiles:
# voxel.cu has no architecture-dependent code, and CuPy compiles it with NVRTC for the device at
# hand (kernels/cuda.py). sm_80 as well cost the suite 8.5 s of nvcc (2026-12-07).
ARCHS = ("sm_90",)

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
                   "voxel_matvec_acc_f32_f32"} | {f"voxel_smooth_{TAG[t]}_{TAG[e]}"
                                                 for t, e in DTYPES} | {
                   f"voxel_{k}_{TAG[t]}" for k in ("mask", "restrict", "prolong") for t in TAG} | {
                   f"vector_dot_{TAG[a]}_{TAG[b]}" for a in TAG for b in TAG} | {
                   f"cg_{k}_{TAG[t]}" for k in ("update", "direction") for t in TAG} | {
                   f"voxel_cg_product_{TAG[t]}_{TAG[e]}" for t, e in DTYPES} | {
                   "voxel_cg_product_acc_f32_f32"}
        for name in entries:  # the names kernels/cuda.py launches
            assert f".entry {name}(" in text, f"{name} missing from the PTX"


def test_kernel_sources_beside_the_package():
    """The launchers read voxel.cu from the package directory (package data in pyproject)."""
    assert (KERNEL_DIR / "voxel.cu").is_file()
    assert (KERNEL_DIR / "cuda_emulation.h").is_file()


# --- (b) host build of the .cu against the NumPy twins -------------------------------------------

def _ptr(a) -> int:
    """The data pointer of a C-contiguous NumPy array (a strided view would be read wrongly)."""
    assert isinstance(a, np.ndarray) and a.flags.c_contiguous, "host kernels take C-order arrays"
    return a.ctypes.data


def _arrays(*arrays):
    return [ctypes.c_void_p(_ptr(a)) for a in arrays]


def _i64(*values):
    return [ctypes.c_longlong(int(v)) for v in values]


def _i32(*values):
    return [ctypes.c_int(int(v)) for v in values]


class HostKernels:
    """voxel.cu compiled for the CPU; ``grid``/``block`` choose the emulated launch. The emulation
    keeps its thread and block indices in globals: call it from one thread at a time."""

    def __init__(self, lib: ctypes.CDLL, grid: int | None = None, block: int = 256):
        self.lib, self.grid, self.block = lib, grid, block

    def _grid(self, n: int) -> int:
        return self.grid if self.grid is not None else max(1, -(-n // self.block))

    def _launch(self, name, n, args):
        """host_<name> over n items; ``args``: ctypes values in the wrapper's order after its
        grid and block, which also give its argument types."""
        f = getattr(self.lib, f"host_{name}")
        f.argtypes = [ctypes.c_uint, ctypes.c_uint] + [type(a) for a in args]
        f.restype = None
        f(self._grid(n), self.block, *args)

    def _reduce(self, name, n, head, tail):
        """A reduction's launch (``head``, its partials, ``tail``) and the sum of its partials."""
        partial = np.full(self._grid(n) * self.block, np.nan)
        self._launch(name, n, [*head, *_arrays(partial), *tail])
        assert np.isfinite(partial).all()  # every thread leaves its partial
        return float(partial.sum())

    def voxel_matvec(self, u, E, Ke, out, k0, k1):
        nz, ny, nx = E.shape
        self._launch(f"voxel_matvec_{TAG[out.dtype.type]}_{TAG[E.dtype.type]}", out.size // 3,
                     _arrays(u, E, Ke, out) + _i64(nx, ny, nz, k0, k1))

    def voxel_matvec_acc(self, u, E, Ke, out, k0, k1):
        nz, ny, nx = E.shape
        self._launch("voxel_matvec_acc_f32_f32", out.size // 3,
                     _arrays(u, E, Ke, out) + _i64(nx, ny, nz, k0, k1))

    def voxel_diagonal(self, E, kdiag, out, k0, k1):
        nz, ny, nx = E.shape
        self._launch(f"voxel_diagonal_{TAG[out.dtype.type]}_{TAG[E.dtype.type]}", out.size // 3,
                     _arrays(E, kdiag, out) + _i64(nx, ny, nz, k0, k1))

    def voxel_strain(self, u, B, out, e0, e1):
        nz = u.shape[0] - 1
        self._launch(f"voxel_strain_{TAG[out.dtype.type]}", out.size // 6,
                     _arrays(u, B, out) + _i64(out.shape[2], out.shape[1], nz, e0, e1))

    # the V-cycle's fused steps
    def _smooth(self, z, r, E, Ke, kdiag, bits, omega, out, k0, k1, mode):
        nz, ny, nx = E.shape
        real = ctypes.c_double if out.dtype == np.float64 else ctypes.c_float
        self._launch(f"voxel_smooth_{TAG[out.dtype.type]}_{TAG[E.dtype.type]}", out.size // 3,
                     _arrays(z, r, E, Ke, kdiag, bits) + [real(omega)] + _arrays(out)
                     + _i64(nx, ny, nz, k0, k1) + _i32(mode))

    def voxel_jacobi_first(self, r, E, kdiag, bits, omega, out, k0, k1):
        self._smooth(r, r, E, kdiag, kdiag, bits, omega, out, k0, k1, 0)

    def voxel_jacobi(self, z, r, E, Ke, kdiag, bits, omega, out, k0, k1):
        self._smooth(z, r, E, Ke, kdiag, bits, omega, out, k0, k1, 1)

    def voxel_residual(self, z, r, E, Ke, bits, out, k0, k1):
        self._smooth(z, r, E, Ke, Ke, bits, 0.0, out, k0, k1, 2)

    def voxel_mask(self, v, bits, k0, k1):
        ny, nx = v.shape[1] - 1, v.shape[2] - 1
        self._launch(f"voxel_mask_{TAG[v.dtype.type]}", v.size // 3,
                     _arrays(v, bits) + _i64(nx, ny, k0, k1))

    def voxel_restrict_add(self, t, rc, factors, k0):
        self._restrict(t, rc, rc.view(np.uint8), factors, k0, 0)  # bits_c not read

    def voxel_restrict(self, t, rc, coarse_bits, factors):
        self._restrict(t, rc, coarse_bits, factors, 0, 1)

    def _restrict(self, t, rc, bits_c, factors, k0, whole):
        ncz, ncy, ncx = rc.shape[:3]
        m, nfy, nfx = t.shape[:3]
        c0, c1 = (k0 // 2, min(ncz, (k0 + m) // 2 + 1)) if factors[2] == 2 else (k0, k0 + m)
        self._launch(f"voxel_restrict_{TAG[rc.dtype.type]}", max(0, c1 - c0) * ncy * ncx,
                     _arrays(t, rc, bits_c) + _i64(nfx, nfy, ncx, ncy, ncz) + _i32(*factors)
                     + _i64(k0, m) + _i32(whole))

    def voxel_prolong_add(self, zc, bits, z, factors, k0, k1):
        nfz, nfy, nfx = z.shape[:3]
        self._launch(f"voxel_prolong_{TAG[z.dtype.type]}", (k1 - k0) * nfy * nfx,
                     _arrays(zc, bits, z) + _i64(nfx, nfy, zc.shape[2], zc.shape[1])
                     + _i32(*factors) + _i64(k0, k1))

    # CG's steps: reductions leave one partial sum per thread
    def voxel_cg_product(self, p, E, Ke, bits, out, k0, k1, acc64=False):
        nz, ny, nx = E.shape
        name = ("voxel_cg_product_acc_f32_f32" if acc64 else
                f"voxel_cg_product_{TAG[out.dtype.type]}_{TAG[E.dtype.type]}")
        return self._reduce(name, out.size // 3, _arrays(p, E, Ke, bits, out),
                            _i64(nx, ny, nz, k0, k1))

    def vector_dot(self, a, b):
        return self._reduce(f"vector_dot_{TAG[a.dtype.type]}_{TAG[b.dtype.type]}", a.size,
                            _arrays(a, b), _i64(a.size))

    def cg_update(self, x, r, p, q, alpha):
        return self._reduce(f"cg_update_{TAG[r.dtype.type]}", r.size,
                            _arrays(x, r, p, q) + [ctypes.c_double(alpha)], _i64(r.size))

    def cg_direction(self, p, z, beta):
        self._launch(f"cg_direction_{TAG[p.dtype.type]}", p.size,
                     _arrays(p, z) + [ctypes.c_double(beta)] + _i64(p.size))


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
        if hasattr(k_test, "voxel_cg_product"):  # the same product in CG's fused kernel
            bits = _support_bits(E, np.random.default_rng(k0 + k1))
            ref = np.full_like(twin, np.nan)
            pq_ref = voxel.voxel_cg_product(u, E, Ke, bits, ref, k0, k1, True)
            got = np.full_like(twin, np.nan)
            pq_got = k_test.voxel_cg_product(u, E, Ke, bits, got, k0, k1, True)
            assert _rel_err(got, ref) <= 1e-7, (k0, k1)
            assert pq_got == pytest.approx(pq_ref, rel=1e-6, abs=1e-9 * abs(pq_ref) + 1e-30)
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


def _support_bits(E, rng):
    """Support flags of a random grid: a fifth of the dofs supported, and the no-voxel bit on
    every node that no non-empty voxel touches (as fem.gmg sets them)."""
    nz, ny, nx = E.shape
    bits = np.zeros((nz + 1, ny + 1, nx + 1), np.uint8)
    for b in voxel.FIXED_BITS:
        bits[rng.random(bits.shape) < 0.2] |= b
    touch = np.zeros(bits.shape, bool)
    for di, dj, dk in voxel.CORNER_OFFSETS:
        touch[dk:dk + nz, dj:dj + ny, di:di + nx] |= E > 0
    bits[~touch] |= voxel.INACTIVE
    return bits


@pytest.mark.parametrize("launch", LAUNCHES)
@pytest.mark.parametrize("dtype,etype", DTYPES, ids=lambda t: TAG.get(t, str(t)))
@pytest.mark.parametrize("shape", GRIDS, ids=lambda s: "x".join(map(str, s)))
def test_host_build_of_the_smoother_matches_its_twins(host_lib, shape, dtype, etype, launch):
    """voxel_smooth's three modes (the first Jacobi sweep, a sweep's update, the residual) and
    voxel_mask, each one pass over the nodes, against the array code they replace."""
    _compare_smoother(HostKernels(host_lib, *launch), shape, dtype, etype)


def _compare_smoother(k_test, shape, dtype, etype):
    z, E = _voxel_case(shape, dtype, etype, sum(shape))
    rng = np.random.default_rng(len(shape) + sum(shape))
    r = rng.standard_normal(z.shape).astype(dtype)
    bits = _support_bits(E, rng)
    nx, ny, nz = shape
    Ke = voxel.reference_stiffness(SPACING, NU).astype(dtype)
    kdiag = np.ascontiguousarray(np.diag(Ke))
    omega = 0.61
    calls = (("voxel_jacobi_first", (r, E, kdiag, bits, omega)),
             ("voxel_jacobi", (z, r, E, Ke, kdiag, bits, omega)),
             ("voxel_residual", (z, r, E, Ke, bits)))
    for k0, k1 in _node_ranges(nz):
        for fn, args in calls:
            ref = np.empty((k1 - k0, ny + 1, nx + 1, 3), dtype)
            got = np.full_like(ref, np.nan)
            getattr(voxel, fn)(*args, ref, k0, k1)
            getattr(k_test, fn)(*args, got, k0, k1)
            assert _rel_err(got, ref) <= TOL[dtype], (fn, k0, k1, _rel_err(got, ref))
            assert not got[~voxel.free_mask(np, bits[k0:k1], bool)].any(), fn
        ref = np.empty((k1 - k0, ny + 1, nx + 1, 3), dtype)  # CG's product and its p.Ap
        got = np.full_like(ref, np.nan)
        pq_ref = voxel.voxel_cg_product(z, E, Ke, bits, ref, k0, k1)
        pq_got = k_test.voxel_cg_product(z, E, Ke, bits, got, k0, k1)
        assert _rel_err(got, ref) <= TOL[dtype], ("voxel_cg_product", k0, k1)
        scale = float(np.abs(ref).max() * np.abs(z).max() * ref.size) if ref.size else 0.0
        assert pq_got == pytest.approx(pq_ref, rel=TOL[dtype], abs=TOL[dtype] * scale)
        ref = r[k0:k1].copy()
        got = r[k0:k1].copy()
        voxel.voxel_mask(ref, bits, k0, k1)
        k_test.voxel_mask(got, bits, k0, k1)
        np.testing.assert_array_equal(got, ref)


def _coarse_nodes(nf: int, f: int) -> int:
    """Nodes of the coarse axis (fem.gmg: an odd voxel count is padded with an empty voxel)."""
    n = nf - 1
    return (n + n % 2) // 2 + 1 if f == 2 else nf


#: coarsening factors (x, y, z): full, and the semi-coarsenings of anisotropic voxels
FACTORS = [(2, 2, 2), (2, 2, 1), (1, 2, 2), (2, 1, 2), (1, 1, 2), (2, 1, 1)]


@pytest.mark.parametrize("launch", LAUNCHES)
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=lambda t: TAG[t])
@pytest.mark.parametrize("factors", FACTORS, ids=lambda f: "".join(map(str, f)))
@pytest.mark.parametrize("fine", [(5, 4, 7), (4, 3, 2), (2, 2, 2)],
                         ids=lambda s: "x".join(map(str, s)))
def test_host_build_of_the_transfers_matches_its_twins(host_lib, fine, factors, dtype, launch):
    """Restriction (one thread per coarse node, range of fine planes by range) and prolongation
    (one thread per fine node) against the axis-by-axis array code, for every split of the fine
    planes into ranges of 1, 2 and all planes."""
    _compare_transfers(HostKernels(host_lib, *launch), fine, factors, dtype)


def _compare_transfers(k_test, fine, factors, dtype):
    nfx, nfy, nfz = fine
    rng = np.random.default_rng(nfx + 10 * nfy + 100 * nfz)
    ncx, ncy, ncz = (_coarse_nodes(n, f) for n, f in zip(fine, factors))
    t = rng.standard_normal((nfz, nfy, nfx, 3)).astype(dtype)
    zc = rng.standard_normal((ncz, ncy, ncx, 3)).astype(dtype)
    bits = rng.integers(0, 16, (nfz, nfy, nfx), dtype=np.uint8)
    for step in (1, 2, nfz):
        ranges = [(k, min(nfz, k + step)) for k in range(0, nfz, step)]
        ref = np.zeros_like(zc)
        got = np.zeros_like(zc)
        for k0, k1 in ranges:
            voxel.voxel_restrict_add(t[k0:k1], ref, factors, k0)
            k_test.voxel_restrict_add(np.ascontiguousarray(t[k0:k1]), got, factors, k0)
        assert _rel_err(got, ref) <= TOL[dtype], ("restrict", step)
        if step == nfz:  # a level of one range: written at once with the coarse supports
            bits_c = rng.integers(0, 16, zc.shape[:3], dtype=np.uint8)
            ref = np.full_like(zc, np.nan)
            got = np.full_like(zc, np.nan)
            voxel.voxel_restrict(t, ref, bits_c, factors)
            k_test.voxel_restrict(t, got, bits_c, factors)
            assert _rel_err(got, ref) <= TOL[dtype], "restrict, whole grid"
            assert not got[~voxel.free_mask(np, bits_c, bool)].any()
        ref = t.copy()
        got = t.copy()
        for k0, k1 in ranges:
            voxel.voxel_prolong_add(zc, bits, ref, factors, k0, k1)
            k_test.voxel_prolong_add(zc, bits, got, factors, k0, k1)
        assert _rel_err(got, ref) <= TOL[dtype], ("prolong", step)
    # restriction is prolongation transposed (on the free dofs of the fine grid)
    F = voxel.free_mask(np, bits, np.float64)
    v = rng.standard_normal(t.shape) * F
    Pw = np.zeros(t.shape)
    k_test.voxel_prolong_add(zc.astype(np.float64), bits, Pw, factors, 0, nfz)
    Rv = np.zeros(zc.shape)
    k_test.voxel_restrict_add(v, Rv, factors, 0)
    assert float(np.sum(v * Pw)) == pytest.approx(float(np.sum(Rv * zc)), rel=1e-12)


def _compare_vectors(k_test, n, dtype):
    """CG's fused vector steps against their twins: the dot of every dtype pair, the update of
    x and r with the new |r|^2, the new direction."""
    rng = np.random.default_rng(n)
    a, b = rng.standard_normal(n), rng.standard_normal(n)
    for ta in (np.float64, np.float32):
        for tb in (np.float64, np.float32):
            at, bt = a.astype(ta), b.astype(tb)
            assert k_test.vector_dot(at, bt) == pytest.approx(voxel.vector_dot(at, bt),
                                                              rel=1e-12, abs=1e-12)
    x = rng.standard_normal(n)
    r, p, q = (rng.standard_normal(n).astype(dtype) for _ in range(3))
    refs = [v.copy() for v in (x, r, p, q)]
    gots = [v.copy() for v in (x, r, p, q)]
    rr_ref = voxel.cg_update(*refs, 0.37)
    rr_got = k_test.cg_update(*gots, 0.37)
    assert rr_got == pytest.approx(rr_ref, rel=1e-12 if dtype == np.float64 else 1e-6)
    for got, ref in zip(gots, refs):
        assert _rel_err(got, ref) <= TOL[dtype]
    voxel.cg_direction(refs[2], refs[3], 0.81)
    k_test.cg_direction(gots[2], gots[3], 0.81)
    assert _rel_err(gots[2], refs[2]) <= TOL[dtype]


@pytest.mark.parametrize("launch", LAUNCHES)
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=lambda t: TAG[t])
@pytest.mark.parametrize("n", [1, 300, 5001])
def test_host_build_of_the_cg_vector_steps_matches_its_twins(host_lib, n, dtype, launch):
    _compare_vectors(HostKernels(host_lib, *launch), n, dtype)


@pytest.mark.parametrize("precision", ["double", "mixed"])
def test_the_multigrid_solves_alike_with_the_host_built_kernels(host_lib, precision):
    """The whole VoxelSolver with every grid kernel of its iterations taken from the host build
    of voxel.cu instead of the twins: the kernels as the solver composes them (the Jacobi
    sweep's lagged write-back through its ring of buffers, restriction range by range into the
    coarse residual, CG's fused product into q, the partial sums of the reductions), several
    ranges of node planes per level, full and semi-coarsening. The same iterations and the same
    solution as with the twins, to the rounding of sums taken in another order."""
    from fem import gmg

    rng = np.random.default_rng(5)
    shape = (9, 8, 7)  # (nz, ny, nx) voxels
    E = rng.uniform(100.0, 3000.0, shape)
    E[rng.random(shape) < 0.15] = 0.0
    E[0] = 500.0
    bits = np.zeros((10, 9, 8), np.uint8)
    bits[0] = 7
    top = np.arange(9 * 9 * 8, 10 * 9 * 8)
    problem = gmg.GridProblem(E=E, nu=0.3, spacing=(0.5, 0.6, 1.1), bits=bits,
                              load_index=3 * top + 2, load_value=-np.ones(top.size))
    sols = []
    for kern in (voxel, HostKernels(host_lib, grid=3, block=32)):
        s = gmg.VoxelSolver(problem, np, precision=precision, range_nodes=2 * 9 * 8)
        s.kern, s.threads = kern, 1  # the emulation runs one launch at a time
        u, info = s.solve(rtol=1e-10)
        sols.append((u, info))
    (u0, i0), (u1, i1) = sols
    assert len(s.levels) >= 3 and len(s.levels[0].ranges) >= 3
    # a level of one range above the coarsest: its restriction writes the coarse residual at once
    assert any(len(lv.ranges) == 1 for lv in s.levels[:-1])
    assert s.levels[0].factors != (2, 2, 2)  # the z voxels are twice as long: semi-coarsened
    assert i1.iterations == i0.iterations
    np.testing.assert_allclose(u1, u0, rtol=0, atol=1e-8 * np.abs(u0).max())
    assert s.true_residual(u1, i1) <= 1e-9


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
    for name in ("voxel_matvec", "voxel_diagonal", "voxel_strain", "voxel_jacobi_first",
                 "voxel_jacobi", "voxel_residual", "voxel_mask", "voxel_restrict_add",
                 "voxel_prolong_add", "vector_dot", "cg_update", "cg_direction",
                 "voxel_cg_product", "voxel_restrict"):
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


class _Copied:
    """A kernel module's function run on the device: every NumPy array argument is copied there
    and back (so the in-place outputs return), scalars pass as they are, the value returns."""

    def __init__(self):
        import cupy

        self.cp, self.k = cupy, voxel_kernels(cupy)

    def __getattr__(self, name):
        def run(*args):
            dev = [self.cp.asarray(a) if isinstance(a, np.ndarray) else a for a in args]
            value = getattr(self.k, name)(*dev)  # the reductions' sums
            for a, d in zip(args, dev):
                if isinstance(a, np.ndarray):
                    a[...] = self.cp.asnumpy(d)
            return value
        return run


@pytest.mark.gpu
@pytest.mark.skipif(GPU_REASON is not None, reason=GPU_REASON or "")
@pytest.mark.parametrize("shape", GRIDS + [(37, 29, 23)], ids=lambda s: "x".join(map(str, s)))
def test_cupy_float64_summed_product_matches_numpy_twin(shape):
    """voxel_matvec_acc and CG's float64-summed product (voxel_cg_product_acc) on the device."""
    _compare_acc(_Copied(), shape, seed=sum(shape))


@pytest.mark.gpu
@pytest.mark.skipif(GPU_REASON is not None, reason=GPU_REASON or "")
@pytest.mark.parametrize("dtype,etype", DTYPES, ids=lambda t: TAG.get(t, str(t)))
@pytest.mark.parametrize("shape", GRIDS + [(37, 29, 23)], ids=lambda s: "x".join(map(str, s)))
def test_cupy_smoother_matches_numpy_twins(shape, dtype, etype):
    _compare_smoother(_Copied(), shape, dtype, etype)


@pytest.mark.gpu
@pytest.mark.skipif(GPU_REASON is not None, reason=GPU_REASON or "")
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=lambda t: TAG[t])
@pytest.mark.parametrize("factors", FACTORS, ids=lambda f: "".join(map(str, f)))
@pytest.mark.parametrize("fine", [(5, 4, 7), (38, 30, 24)], ids=lambda s: "x".join(map(str, s)))
def test_cupy_transfers_match_numpy_twins(fine, factors, dtype):
    _compare_transfers(_Copied(), fine, factors, dtype)


@pytest.mark.gpu
@pytest.mark.skipif(GPU_REASON is not None, reason=GPU_REASON or "")
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=lambda t: TAG[t])
@pytest.mark.parametrize("n", [1, 300, 5001, 3_000_001])
def test_cupy_cg_vector_steps_match_numpy_twins(n, dtype):
    _compare_vectors(_Copied(), n, dtype)


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
