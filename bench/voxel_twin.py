"""Benchmark: the NumPy twin of the voxel product (``fem.kernels.voxel.voxel_matvec``), whole
element planes per GEMM against one plane per call.

The twin multiplies the voxels of a block in one GEMM with the reference stiffness. Where whole
element planes fit in the block (``CHUNK_VOXELS``, 8 192 voxels), it takes as many planes as fit
(a multigrid's coarse levels: a few voxels per plane); before, it took one plane per call, so a
small grid paid the Python and slicing cost of every plane. Both forms give the same bits
(``tests/test_gmg.py::test_the_twin_product_does_not_depend_on_its_block_size``); this times them
on n^3 grids of random moduli (float64, one thread), the product over all node planes, best of
five runs of at least 0.2 s, and one whole solve (``fem.solve(bone_like_block(n), solver="gmg")``,
whose V-cycle runs the product on every level) with each form.

    python bench/voxel_twin.py
"""

from __future__ import annotations

import os
import platform
import time

os.environ.setdefault("FEM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402

import fem  # noqa: E402
from fem.kernels import voxel  # noqa: E402
from fem.meshes.voxel import bone_like_block  # noqa: E402

SIZES = (4, 8, 16, 32, 64)
SOLVE_SIZES = (16, 24)


def one_plane_per_call(u, E, Ke, out, k0, k1):
    """The product as it was: one element plane (or rows of one) per GEMM."""
    nx, ny, nz = E.shape[2], E.shape[1], E.shape[0]
    e0, e1 = max(k0 - 1, 0), min(k1, nz)
    out[...] = 0
    rows = max(1, min(ny, voxel.CHUNK_VOXELS // max(nx, 1)))
    for e in range(e0, e1):
        for j0 in range(0, ny, rows):
            voxel._matvec_block(np, u, E, Ke, out, k0, k1, e, j0, min(ny, j0 + rows))


def best(fn, *args):
    times = []
    for _ in range(5):
        n, t0 = 0, time.perf_counter()
        while True:
            fn(*args)
            n += 1
            if time.perf_counter() - t0 >= 0.2:
                break
        times.append((time.perf_counter() - t0) / n)
    return min(times)


def main():
    rng = np.random.default_rng(0)
    print(f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"NumPy {np.__version__}, one thread")
    print("| grid | voxels | one plane per call (ms) | planes per GEMM (ms) | speed-up |")
    print("|---|---|---|---|---|")
    for n in SIZES:
        E = rng.uniform(100.0, 10_000.0, (n, n, n))
        u = rng.standard_normal((n + 1, n + 1, n + 1, 3))
        Ke = voxel.reference_stiffness((1.0, 1.0, 1.0), 0.3)
        out = np.empty_like(u)
        old = best(one_plane_per_call, u, E, Ke, out, 0, n + 1)
        new = best(voxel.voxel_matvec, u, E, Ke, out, 0, n + 1)
        print(f"| {n}^3 | {n ** 3:,} | {old * 1e3:.3f} | {new * 1e3:.3f} | {old / new:.2f} |")
    print()
    print("| solve (gmg, double, rtol 1e-8) | DOF | iterations | one plane per call (s) | "
          "planes per GEMM (s) |")
    print("|---|---|---|---|---|")
    for n in SOLVE_SIZES:
        vm = bone_like_block((n, n, n))
        fem.solve(vm, solver="gmg")  # imports, threads
        got = {}
        for name, fn in (("old", one_plane_per_call), ("new", voxel.voxel_matvec)):
            saved = voxel.voxel_matvec
            voxel.voxel_matvec = fn
            try:
                t0 = time.perf_counter()
                r = fem.solve(vm, solver="gmg")
                got[name] = (time.perf_counter() - t0, r.info.iterations)
            finally:
                voxel.voxel_matvec = saved
        print(f"| {n}^3 block | {3 * (n + 1) ** 3:,} | {got['new'][1]} | {got['old'][0]:.2f} | "
              f"{got['new'][0]:.2f} |")


if __name__ == "__main__":
    main()
