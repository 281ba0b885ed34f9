"""GPU benchmark of the matrix-free voxel solver (issue 3, deliverable 9).

On a machine with a CUDA GPU (``fem.kernels.backend.cupy_unavailable_reason()`` is None):

1. checks CuPy against NumPy on a small bone-like block: the matvec kernel on random input, the
   whole ``fem.solve(..., solver="gmg")`` in double and mixed precision, and the solve of the same
   problem built directly on the device the way step 2 builds it; it prints each max relative
   difference and exits 1 if one exceeds 1e-6;
2. measures the device's copy bandwidth (device-to-device ``cudaMemcpyAsync`` of 1 GiB, timed with
   CUDA events; 2 bytes moved per byte copied, read and write);
3. for 1M, 10M and 100M DOF cubes (n^3 voxels, 3 (n+1)^3 DOF) builds the problem on the device
   (no hex8 Model, no host copy of the grid: moduli 100..10 000 MPa from a smooth random field,
   log-uniform, generated with cupyx.scipy.ndimage; z supported on zmin with x and y held along
   two edges; 1 MPa pressure on zmax as consistent nodal forces), solves it with
   ``fem.gmg.VoxelSolver`` to rtol 1e-6 in double and mixed precision and prints setup and solve
   times, iterations, time per CG iteration, achieved bandwidth against the copy bandwidth,
   DOF per second and held bytes per DOF. A size whose estimated footprint exceeds the free device
   memory is skipped with a note. Then each grid step of an iteration on the fine level (the
   product, the three smoother modes, mask, CG's vector steps, restriction, prolongation), run
   range by range as the solver runs it and timed alone, with its useful bytes and their share of
   the copy bandwidth (:func:`step_times`): where the iteration's time goes.

4. end to end, for ``--e2e-sizes`` (1M and 10M DOF by default): ``fem.solve`` of a host-built
   ``VoxelModel`` of the same block and the write of its result as an uncompressed VTK image
   (``.vti``), timed as a user runs it, with the host bytes per DOF beyond the moduli
   (tracemalloc) and the device bytes per DOF (CuPy's memory pool) (:func:`end_to_end`).

Where no GPU is usable it prints why and exits 0. ``--numpy`` runs the same steps on NumPy (CPU
timers, /proc/meminfo for free memory) to check the script itself; give it small ``--sizes``.

Bandwidth model (bytes per CG iteration, :func:`iteration_bytes`). Every pass over the grid counts
the arrays it must read and write once, as fused kernels with perfect caching inside a kernel
would: a matvec reads its input vector and the moduli and writes its output (neighbour reuse
assumed from cache), a Jacobi sweep reads z (matvec), the moduli (which also give the diagonal,
recomputed by the solver rather than stored), r and the support bits and writes z. Per iteration: CG (q = F A p with p.q; x += a p and
r -= a q with r.r, x in float64; r.q; p = q + b p) and one V-cycle (per level above the coarsest:
a first sweep from zero, 2 nu - 1 further sweeps, residual-and-restrict, prolongate-and-add;
coarsest: the dense pseudo-inverse). Temporaries the implementation creates are not counted, so
the achieved bandwidth is the useful traffic per second, a lower bound on what the memory
system really moved; the occasional float64 true residual of mixed precision is not counted.
"""

from __future__ import annotations

import argparse
import math
import re
import sys
import time
from pathlib import Path

import numpy as np

RTOL = 1e-6
CHECK_RTOL = 1e-10
CHECK_TOL = 1e-6
CHECK_TOL_F32 = 1e-5  # float32 kernels: the same sums in another order
CHECK_N = 16
SIZES = "1M,10M,100M"
PRECISIONS = ("double", "mixed")
E_MIN, CONTRAST, NU, PRESSURE, CORRELATION = 100.0, 100.0, 0.3, 1.0, 2.0
COPY_BYTES = 1 << 30
#: device bytes per DOF assumed when deciding whether a size fits: the solver's own estimate
#: (36 / 22 B per DOF) plus the float64 input moduli and the field generation's temporaries
FOOTPRINT = {"double": 48.0, "mixed": 34.0}
FIT_FRACTION = 0.85
TARGET_DOF, TARGET_S = 100_000_000, 60.0
#: end-to-end sizes (fem.solve of a host-built VoxelModel, then its .vti): a 10^8-DOF block adds
#: about a minute of host work (building the moduli, writing ~7 GB) per precision
E2E_SIZES = "1M,10M"


def parse_dofs(text: str) -> int:
    m = re.fullmatch(r"\s*([0-9.]+)\s*([kKmM]?)\s*", text)
    if not m:
        raise argparse.ArgumentTypeError(f"not a DOF count: {text!r} (e.g. 1M, 100M)")
    return int(round(float(m.group(1)) * {"": 1, "k": 1e3, "m": 1e6}[m.group(2).lower()]))


def cube_for(dofs: int) -> int:
    """The n of the n^3 voxel cube whose 3 (n+1)^3 DOF is nearest to ``dofs``."""
    ns = np.arange(1, 5000)
    return int(ns[np.argmin(np.abs(3 * (ns + 1) ** 3 - dofs))])


# ----------------------------------------------------------------------------- device helpers

class Device:
    """What differs between CuPy and the NumPy stand-in: timers, memory, filters, transfers."""

    def __init__(self, xp):
        self.xp = xp
        self.gpu = xp is not np

    def timer(self):
        return _EventTimer(self.xp) if self.gpu else _HostTimer()

    def free_bytes(self) -> int:
        if self.gpu:
            self.xp.get_default_memory_pool().free_all_blocks()
            return int(self.xp.cuda.Device().mem_info[0])
        m = re.search(r"^MemAvailable:\s*(\d+)", Path("/proc/meminfo").read_text(), re.M)
        return int(m[1]) * 1024

    def gaussian_filter(self, a, sigma):
        if self.gpu:
            from cupyx.scipy import ndimage
        else:
            from scipy import ndimage
        return ndimage.gaussian_filter(a, sigma, mode="wrap")

    def to_host(self, a) -> np.ndarray:
        return self.xp.asnumpy(a) if self.gpu else np.asarray(a)

    def release(self) -> None:
        if self.gpu:
            self.xp.get_default_memory_pool().free_all_blocks()

    def describe(self) -> str:
        if not self.gpu:
            import platform

            return f"NumPy stand-in on {platform.processor() or 'the CPU'} (--numpy)"
        cp = self.xp
        dev = cp.cuda.Device()
        props = cp.cuda.runtime.getDeviceProperties(dev.id)
        name = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
        attrs = dev.attributes
        free, total = dev.mem_info
        peak = ""
        clock, bus = attrs.get("MemoryClockRate"), attrs.get("GlobalMemoryBusWidth")
        if clock and bus:  # kHz, bits; double data rate
            peak = f", theoretical memory bandwidth {2.0 * clock * 1e3 * bus / 8 / 1e9:.0f} GB/s"
        rt = cp.cuda.runtime.runtimeGetVersion()
        return (f"{name} (device {dev.id}, compute capability {dev.compute_capability}, "
                f"{attrs.get('MultiProcessorCount', '?')} SMs), {total / 2 ** 30:.1f} GiB, "
                f"{free / 2 ** 30:.1f} GiB free{peak}; CUDA runtime {rt // 1000}.{rt % 1000 // 10}, "
                f"CuPy {cp.__version__}")


class _EventTimer:
    """Elapsed device time between two CUDA events on the current stream (seconds)."""

    def __init__(self, cp):
        self.cp = cp

    def __enter__(self):
        self.stream = self.cp.cuda.get_current_stream()
        self.start, self.end = self.cp.cuda.Event(), self.cp.cuda.Event()
        self.start.record(self.stream)
        return self

    def __exit__(self, *exc):
        self.end.record(self.stream)
        self.end.synchronize()
        self.seconds = self.cp.cuda.get_elapsed_time(self.start, self.end) / 1e3
        return False


class _HostTimer:
    def __enter__(self):
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.t0
        return False


def copy_bandwidth(dev: Device, nbytes: int = COPY_BYTES, repeats: int = 10) -> float:
    """Device copy bandwidth in bytes/s: best of 3 timings of ``repeats`` copies of ``nbytes``,
    counting 2 nbytes per copy (read and write), as CUDA's bandwidthTest does."""
    xp = dev.xp
    src = xp.ones(nbytes // 8, dtype=xp.float64)
    dst = xp.empty_like(src)
    best = math.inf
    for trial in range(4):  # the first is a warm-up
        with dev.timer() as t:
            for _ in range(repeats):
                if dev.gpu:
                    dst.data.copy_from_device_async(src.data, src.nbytes)
                else:
                    np.copyto(dst, src)
        if trial:
            best = min(best, t.seconds)
    if float(dst[-1]) != 1.0:
        raise RuntimeError("the timed copy did not copy")
    del src, dst
    dev.release()
    return 2.0 * nbytes * repeats / best


# ----------------------------------------------------------------------------- the problem

def smooth_moduli(dev: Device, n: int, seed: int = 0):
    """(n, n, n) moduli E_MIN .. E_MIN * CONTRAST MPa, log-uniform in a smooth random field made
    on the device (the construction of fem.meshes.voxel.smooth_field)."""
    xp = dev.xp
    g = xp.random.default_rng(seed).standard_normal((n, n, n), dtype=xp.float64)
    g = dev.gaussian_filter(g, CORRELATION)
    lo, hi = float(xp.min(g)), float(xp.max(g))
    g -= lo
    g *= 1.0 / (hi - lo)
    return E_MIN * xp.power(CONTRAST, g)


def grid_problem(dev: Device, E, spacing=(1.0, 1.0, 1.0)):
    """The voxel problem of ``fem.meshes.voxel.bone_like_block`` for moduli E (nz, ny, nx), built
    on the device: z fixed on zmin, y on its edge along x, x on its edge along y; PRESSURE on zmax
    as consistent nodal forces (a quarter of each face's p h_x h_y to each of its corners)."""
    from fem.gmg import GridProblem
    from fem.kernels.voxel import FIXED_BITS

    xp = dev.xp
    nz, ny, nx = E.shape
    hx, hy, _ = spacing
    bits = xp.zeros((nz + 1, ny + 1, nx + 1), dtype=xp.uint8)
    bits[0] |= FIXED_BITS[2]
    bits[0, 0, :] |= FIXED_BITS[1]
    bits[0, :, 0] |= FIXED_BITS[0]

    def edge_weights(m):
        w = xp.ones(m + 1, dtype=xp.float64)
        w[0] = w[m] = 0.5
        return w

    force = -PRESSURE * hx * hy * (edge_weights(ny)[:, None] * edge_weights(nx)[None, :])
    node = xp.arange((ny + 1) * (nx + 1), dtype=xp.int64) + nz * (ny + 1) * (nx + 1)
    return GridProblem(E=E, nu=NU, spacing=tuple(spacing), bits=bits, load_index=3 * node + 2,
                       load_value=xp.reshape(force, (-1,)))


# ----------------------------------------------------------------------------- traffic model

def iteration_bytes(solver) -> int:
    """Useful bytes one PCG iteration moves (see the module docstring for the model)."""
    levels = solver.levels
    nu = solver.smoothing
    total = 0.0
    for i, lv in enumerate(levels):
        s = np.dtype(lv.dtype).itemsize
        nz, ny, nx = lv.E.shape
        N = (nz + 1) * (ny + 1) * (nx + 1)
        V, Ev, B = 3 * N * s, nz * ny * nx * s, N
        if i == 0:
            X = 3 * N * 8
            total += (2 * V + Ev + B) + (2 * X + 4 * V) + 2 * V + 3 * V
        if lv.kinv is not None:
            total += lv.kinv.size * s + 2 * V
            continue
        nxt = levels[i + 1]
        nzc, nyc, nxc = nxt.E.shape
        Vc = 3 * (nzc + 1) * (nyc + 1) * (nxc + 1) * np.dtype(nxt.dtype).itemsize
        total += 2 * V + Ev + B  # first sweep from z = 0: z = omega D^-1 r
        total += (2 * nu - 1) * (3 * V + Ev + B)  # further Jacobi sweeps
        total += 2 * V + Ev + B + Vc  # r - A z, restricted
        total += 2 * V + B + Vc  # z += P z_c
    return int(total)


# ----------------------------------------------------------------------------- steps

def rel_diff(a, b) -> float:
    a, b = np.asarray(a).reshape(-1, 3), np.asarray(b).reshape(-1, 3)
    return float(np.linalg.norm(a - b, axis=1).max() / np.linalg.norm(b, axis=1).max())


def check(dev: Device, n: int = CHECK_N) -> bool:
    """CuPy (or the stand-in) against NumPy on an n^3 bone-like block; True if all agree."""
    import fem
    from fem.gmg import VoxelSolver
    from fem.kernels import voxel as twin
    from fem.kernels.backend import voxel_kernels
    from fem.meshes.voxel import bone_like_block

    xp = dev.xp
    backend = "cupy" if dev.gpu else "numpy"
    vm = bone_like_block((n, n, n), E_min=E_MIN, contrast=CONTRAST, nu=NU, pressure=PRESSURE,
                         correlation=CORRELATION)
    E = np.ascontiguousarray(np.transpose(vm.E, (2, 1, 0)))  # (nz, ny, nx)
    rng = np.random.default_rng(1)
    u = rng.standard_normal((n + 1, n + 1, n + 1, 3))
    Ke = twin.reference_stiffness((1.0, 1.0, 1.0), NU)
    ok = True

    def report(what, d, tol=CHECK_TOL):
        nonlocal ok
        good = d <= tol
        ok &= good
        print(f"  {what:<58} max rel diff {d:.1e} {'ok' if good else 'FAIL'} (<= {tol:g})",
              flush=True)

    for dt, tol in ((np.float64, CHECK_TOL), (np.float32, CHECK_TOL_F32)):
        ref = np.empty((n + 1, n + 1, n + 1, 3), dtype=dt)
        twin.voxel_matvec(u.astype(dt), E.astype(dt), Ke.astype(dt), ref, 0, n + 1)
        out = xp.empty(ref.shape, dtype=dt)
        voxel_kernels(xp).voxel_matvec(xp.asarray(u, dtype=dt), xp.asarray(E, dtype=dt),
                                       xp.asarray(Ke, dtype=dt), out, 0, n + 1)
        report(f"voxel_matvec {np.dtype(dt).name}, {backend} vs NumPy twin",
               rel_diff(dev.to_host(out), ref), tol)
    for p in PRECISIONS:
        ref = fem.solve(vm, backend="numpy", solver="gmg", precision=p, rtol=CHECK_RTOL)
        u_ref = np.asarray(ref.displacement)
        res = fem.solve(vm, backend=backend, solver="gmg", precision=p, rtol=CHECK_RTOL)
        report(f"fem.solve gmg {p}, {backend} vs NumPy", rel_diff(dev.to_host(res.displacement),
                                                                  u_ref))
        solver = VoxelSolver(grid_problem(dev, xp.asarray(E)), xp, precision=p)
        ug, _ = solver.solve(rtol=CHECK_RTOL)
        report(f"device-built problem, VoxelSolver {p}, vs fem.solve NumPy",
               rel_diff(dev.to_host(ug), u_ref))
    dev.release()
    return ok


def fits(dev: Device, n_dof: int, precision: str, what: str) -> bool:
    """Whether ``n_dof`` in ``precision`` fits the free device memory; says so where not."""
    need = FOOTPRINT[precision] * n_dof
    free = dev.free_bytes()
    if need > FIT_FRACTION * free:
        print(f"  {what} {n_dof} DOF {precision}: needs about {need / 1e9:.1f} GB, "
              f"{free / 1e9:.1f} GB free", flush=True)
        return False
    return True


def bench_one(dev: Device, n: int, precision: str, copy_bw: float) -> dict | None:
    """Build, set up and solve one size in one precision; None (with a note) if it won't fit."""
    from fem.gmg import VoxelSolver

    xp = dev.xp
    n_dof = 3 * (n + 1) ** 3
    if not fits(dev, n_dof, precision, "skipped"):
        return None
    try:
        with dev.timer() as tb:
            problem = grid_problem(dev, smooth_moduli(dev, n))
        with dev.timer() as ts:
            solver = VoxelSolver(problem, xp, precision=precision)
        with dev.timer() as tv:
            _, info = solver.solve(rtol=RTOL)
    except Exception as exc:
        if type(exc).__name__ != "OutOfMemoryError":
            raise
        print(f"  skipped {n_dof} DOF {precision}: out of device memory ({exc})", flush=True)
        dev.release()
        return None
    per_it = tv.seconds / info.iterations
    moved = iteration_bytes(solver)
    rec = {"n": n, "n_dof": n_dof, "precision": precision, "build": tb.seconds,
           "setup": ts.seconds, "solve": tv.seconds, "total": ts.seconds + tv.seconds,
           "iterations": info.iterations, "residual": info.residual, "per_iteration": per_it,
           "bytes_per_iteration": moved, "bandwidth": moved / per_it,
           "held_bytes": info.held_bytes, "levels": len(solver.levels)}
    rec["fraction"] = rec["bandwidth"] / copy_bw
    rec["dof_per_s"] = n_dof / rec["total"]
    rec["steps"] = step_times(dev, solver)
    del problem, solver
    dev.release()
    return rec


def step_times(dev: Device, solver, repeats: int = 5) -> list:
    """Each grid step of a PCG iteration on the fine level, range by range as the solver runs
    it, timed alone (mean of ``repeats`` after a warm-up): (step, ms, useful bytes) with the
    bytes of :func:`iteration_bytes`'s model. Where the iteration's time goes, kernel by kernel."""
    xp, k = dev.xp, solver.kern
    lv = solver.levels[0]
    s = np.dtype(lv.dtype).itemsize
    nz, ny, nx = lv.E.shape
    N = (nz + 1) * (ny + 1) * (nx + 1)
    V, Ev, B = 3 * N * s, nz * ny * nx * s, N
    noise = xp.asarray(np.random.default_rng(0).standard_normal(lv.node_shape[1:]))
    z = xp.empty(lv.node_shape, dtype=lv.dtype)
    z[...] = noise  # the same plane everywhere: values, not zeros, in every kernel
    r, out = xp.ones_like(z), xp.empty_like(z)
    x = xp.zeros(lv.node_shape, dtype=xp.float64)
    ranges = lv.ranges
    acc64 = solver.precision == "mixed"  # CG's product: float32 in and out, float64 sums
    Ke = xp.asarray(solver.Ke_ref, dtype=xp.float64) if acc64 else lv.Ke

    def product():
        return [k.voxel_cg_product(z, lv.E, Ke, lv.bits, out[a:b], a, b, acc64)
                for a, b in ranges]
    steps = [("F A p and p.Ap", 2 * V + Ev + B, product),
             ("first sweep", 2 * V + Ev + B,
              lambda: [k.voxel_jacobi_first(r, lv.E, lv.kdiag, lv.bits, lv.omega, out[a:b], a, b)
                       for a, b in ranges]),
             ("Jacobi update", 3 * V + Ev + B,
              lambda: [k.voxel_jacobi(z, r, lv.E, lv.Ke, lv.kdiag, lv.bits, lv.omega, out[a:b],
                                      a, b) for a, b in ranges]),
             ("residual", 3 * V + Ev + B,
              lambda: [k.voxel_residual(z, r, lv.E, lv.Ke, lv.bits, out[a:b], a, b)
                       for a, b in ranges]),
             ("mask", 2 * V + B,
              lambda: [k.voxel_mask(out[a:b], lv.bits, a, b) for a, b in ranges]),
             ("x, r update + r.r", 2 * 3 * N * 8 + 4 * V,
              lambda: [k.cg_update(x[a:b], r[a:b], z[a:b], out[a:b], 1e-9) for a, b in ranges]),
             ("dot", 2 * V, lambda: [k.vector_dot(z[a:b], out[a:b]) for a, b in ranges]),
             ("direction", 3 * V, lambda: [k.cg_direction(out[a:b], z[a:b], 0.5)
                                           for a, b in ranges])]
    if len(solver.levels) > 1:
        co = solver.levels[1]
        Vc = 3 * math.prod(co.node_shape[:3]) * np.dtype(co.dtype).itemsize
        if len(ranges) == 1:  # as the solver: written at once with the coarse supports
            def restrict():
                return k.voxel_restrict(out, co.r, co.bits, lv.factors)
        else:
            def restrict():
                return [k.voxel_restrict_add(out[a:b], co.r, lv.factors, a) for a, b in ranges]
        steps += [("restrict", V + 2 * Vc, restrict),
                  ("prolong", 2 * V + B + Vc,
                   lambda: [k.voxel_prolong_add(co.z, lv.bits, out, lv.factors, a, b)
                            for a, b in ranges])]
    rows = []
    for name, nbytes, run in steps:
        run()
        with dev.timer() as t:
            for _ in range(repeats):
                run()
        rows.append((name, 1e3 * t.seconds / repeats, nbytes))
    return rows


def steps_table(n_dof: int, precision: str, rows: list, copy_bw: float) -> str:
    lines = [f"{n_dof} DOF {precision}, fine level, step by step:",
             f"  {'step':<20}{'ms':>9}{'GB':>7}{'GB/s':>8}{'of copy':>9}"]
    for name, ms, nbytes in rows:
        bw = nbytes / (ms / 1e3)
        lines.append(f"  {name:<20}{ms:>9.3f}{nbytes / 1e9:>7.2f}{bw / 1e9:>8.1f}"
                     f"{100 * bw / copy_bw:>8.0f}%")
    return "\n".join(lines)


def end_to_end(dev: Device, n: int, precision: str, folder: Path) -> dict | None:
    """What a user runs: ``fem.solve`` of a host-built :class:`fem.voxel.VoxelModel` (the same
    bone-like block, built by ``fem.meshes.voxel.bone_like_block``) and ``write`` of its result
    as a VTK image, uncompressed (``.vti``, ``compression=None``). Timed as a user runs it; then
    run again under ``tracemalloc`` for the host peak beyond the model's moduli (NumPy reports
    its buffers to it; CuPy's device buffers are not host memory), and on a GPU with CuPy's memory
    pool emptied first, whose size after the solve and the write is the device peak it held."""
    import gc
    import tracemalloc

    import fem
    from fem.meshes.voxel import bone_like_block

    n_dof = 3 * (n + 1) ** 3
    if not fits(dev, n_dof, precision, "end to end: skipped"):
        return None
    backend = "cupy" if dev.gpu else "numpy"
    t = time.perf_counter()
    vm = bone_like_block((n, n, n), E_min=E_MIN, contrast=CONTRAST, nu=NU, pressure=PRESSURE,
                         correlation=CORRELATION)
    t_build = time.perf_counter() - t
    out = folder / f"e2e_{n}_{precision}.vti"

    def solve_and_write():
        r = fem.solve(vm, backend=backend, solver="gmg", precision=precision, rtol=RTOL)
        t1 = time.perf_counter()
        r.write(out, compression=None)
        return r, time.perf_counter() - t1

    dev.release()
    t = time.perf_counter()
    res, t_write = solve_and_write()
    t_total = time.perf_counter() - t
    rec = {"n": n, "n_dof": n_dof, "precision": precision, "build": t_build,
           "total": t_total, "write": t_write, "solve": t_total - t_write,
           "iterations": res.info.iterations, "vti_bytes": out.stat().st_size}
    del res
    out.unlink()
    gc.collect()
    dev.release()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    res, _ = solve_and_write()
    rec["host_bytes"] = tracemalloc.get_traced_memory()[1] - base
    tracemalloc.stop()
    rec["device_bytes"] = (dev.xp.get_default_memory_pool().total_bytes() if dev.gpu
                           else float("nan"))
    del res
    out.unlink()
    dev.release()
    return rec


def e2e_table(rows: list) -> str:
    head = (f"{'DOF':>11}  {'precision':<9}{'its':>5}{'build s':>9}{'solve s':>9}{'write s':>9}"
            f"{'total s':>9}{'host B/DOF':>11}{'device B/DOF':>13}{'.vti GB':>9}")
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(
            f"{r['n_dof']:>11}  {r['precision']:<9}{r['iterations']:>5}{r['build']:>9.2f}"
            f"{r['solve']:>9.2f}{r['write']:>9.2f}{r['total']:>9.2f}"
            f"{r['host_bytes'] / r['n_dof']:>11.1f}{r['device_bytes'] / r['n_dof']:>13.1f}"
            f"{r['vti_bytes'] / 1e9:>9.2f}")
    lines.append("end to end: total = fem.solve(VoxelModel) (checks, moduli to the device, "
                 f"solve to rtol {RTOL:g}, reactions) + write of an uncompressed .vti; build = "
                 "the host-side bone_like_block (not counted); host B/DOF = tracemalloc peak over "
                 "solve and write beyond the moduli; device B/DOF = CuPy pool after both (nan on "
                 "NumPy)")
    return "\n".join(lines)


def table(rows: list, copy_bw: float) -> str:
    head = (f"{'DOF':>11}  {'precision':<9}{'levels':>7}{'its':>5}{'build s':>9}{'setup s':>9}"
            f"{'solve s':>9}{'total s':>9}{'ms/it':>8}{'GB/it':>7}{'GB/s':>8}{'of copy':>8}"
            f"{'MDOF/s':>8}{'B/DOF':>7}")
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(
            f"{r['n_dof']:>11}  {r['precision']:<9}{r['levels']:>7}{r['iterations']:>5}"
            f"{r['build']:>9.2f}{r['setup']:>9.2f}{r['solve']:>9.2f}{r['total']:>9.2f}"
            f"{1e3 * r['per_iteration']:>8.2f}{r['bytes_per_iteration'] / 1e9:>7.2f}"
            f"{r['bandwidth'] / 1e9:>8.1f}{100 * r['fraction']:>7.0f}%"
            f"{r['dof_per_s'] / 1e6:>8.2f}{r['held_bytes'] / r['n_dof']:>7.1f}")
    lines.append(f"copy bandwidth {copy_bw / 1e9:.0f} GB/s; total = setup + solve (to rtol "
                 f"{RTOL:g}); ms/it = solve / its; GB/s = useful bytes per iteration / (ms/it); "
                 "MDOF/s = DOF / total; B/DOF = held bytes per DOF")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default=SIZES, help=f"target DOF counts (default {SIZES})")
    ap.add_argument("--precision", choices=("both",) + PRECISIONS, default="both")
    ap.add_argument("--e2e-sizes", default=E2E_SIZES,
                    help=f"end-to-end DOF counts, fem.solve(VoxelModel) + .vti (default "
                         f"{E2E_SIZES}; '' skips)")
    ap.add_argument("--numpy", action="store_true",
                    help="run on NumPy instead (checks this script without a GPU)")
    args = ap.parse_args(argv)

    from fem.kernels.backend import cupy_unavailable_reason

    if args.numpy:
        dev = Device(np)
    else:
        reason = cupy_unavailable_reason()
        if reason is not None:
            print(f"no GPU benchmark: {reason.strip()}")
            return 0
        import cupy

        dev = Device(cupy)
    print(dev.describe(), flush=True)
    print(f"check against NumPy on a {CHECK_N}^3 bone-like block (rtol {CHECK_RTOL:g}):",
          flush=True)
    if not check(dev):
        print(f"FAILED: the {'CuPy' if dev.gpu else 'stand-in'} answers differ from NumPy's by "
              f"more than {CHECK_TOL:g}", file=sys.stderr)
        return 1
    copy_bw = copy_bandwidth(dev)
    print(f"device copy bandwidth: {copy_bw / 1e9:.0f} GB/s", flush=True)
    precisions = PRECISIONS if args.precision == "both" else (args.precision,)
    rows = []
    for dofs in (parse_dofs(s) for s in args.sizes.split(",") if s.strip()):
        n = cube_for(dofs)
        for p in precisions:
            rec = bench_one(dev, n, p, copy_bw)
            if rec is not None:
                rows.append(rec)
                print(f"  {rec['n_dof']} DOF {p}: {rec['iterations']} its, total "
                      f"{rec['total']:.2f} s", flush=True)
    print()
    print(dev.describe())
    print(f"bone-like cubes: moduli {E_MIN:g}..{E_MIN * CONTRAST:g} MPa (smooth log-uniform "
          f"field), nu {NU:g}, z fixed on zmin, {PRESSURE:g} MPa on zmax; CG rtol {RTOL:g}")
    print(table(rows, copy_bw))
    for r in rows:
        print(steps_table(r["n_dof"], r["precision"], r["steps"], copy_bw))
    for r in rows:
        if r["n_dof"] >= 0.9 * TARGET_DOF:
            print(f"issue 3 target, {r['n_dof']} DOF {r['precision']}: {r['total']:.1f} s "
                  f"(< {TARGET_S:g} s on an 80 GB H100): "
                  f"{'PASS' if r['total'] < TARGET_S else 'FAIL'}")
    e2e = []
    if args.e2e_sizes.strip():
        import tempfile

        print("\nend to end (fem.solve(VoxelModel) and its .vti):", flush=True)
        with tempfile.TemporaryDirectory() as tmp:
            for dofs in (parse_dofs(s) for s in args.e2e_sizes.split(",") if s.strip()):
                for p in precisions:
                    rec = end_to_end(dev, cube_for(dofs), p, Path(tmp))
                    if rec is not None:
                        e2e.append(rec)
                        print(f"  {rec['n_dof']} DOF {p}: total {rec['total']:.2f} s",
                              flush=True)
        print(e2e_table(e2e))
    return 0


if __name__ == "__main__":
    sys.exit(main())
