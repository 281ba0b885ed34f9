"""Matrix-free geometric-multigrid CG for regular hex8 voxel grids, on any array backend.

The fine operator is never assembled: ``A u`` is computed element by element from one reference
24 x 24 stiffness scaled by each voxel's modulus (:mod:`fem.kernels.voxel`, CUDA twin
:mod:`fem.kernels.cuda`). The preconditioner is one V-cycle of geometric multigrid on the voxel
hierarchy:

* coarse grids halve the number of voxels per axis (an odd count is padded with one empty voxel);
  a coarse voxel's modulus is the mean of its eight children (empty children count as 0), so soft
  and void regions stay soft and void on every level (rediscretisation, as in ParOSol);
* trilinear prolongation P and restriction R = P^T, applied axis by axis with strided slices;
* damped Jacobi smoothing, ``smoothing`` sweeps (default 1) before and after the coarse correction
  (the same sweeps in both, so the V-cycle is symmetric and CG stays CG; one sweep each costs 3
  products per CG iteration against 5 for two and takes about 30 % more iterations: 20 % faster
  on the 1M-dof bench model), damping 4 / (3 lambda_max(D^-1 A)) with
  lambda_max from a few power iterations per level;
* a supported dof of the coarse grid is one whose fine node at the same place is supported; nodes
  of no voxel are dropped on every level;
* the coarsest grid (at most a few hundred dofs) is solved exactly with a dense pseudo-inverse.

Backends. All array code here calls only the Array API standard on the solver's namespace ``xp``
(the tests run it under array-api-strict, which rejects anything else, so it calls nothing CuPy
lacks): indexing names every axis, no array methods beyond ``.shape``/``.dtype``/``.T``, views are
never written through. The one step beyond the standard, adding the loads at their dof indices, is
:func:`fem.kernels.backend.add_at_flat`; worker threads are used on NumPy only. The grid work of
an iteration goes through :mod:`fem.kernels.voxel`'s functions, each one CUDA kernel on CuPy and
its twin (also standard-only) everywhere else: the products, the V-cycle's fused steps (the first
Jacobi sweep, a sweep's update and the residual, each with the diagonal recomputed from the
moduli and the supports applied in the same pass; restriction; prolongation; masking) and CG's
steps (the product with its supports and p.Ap in one pass, the updates of x and r with |r|^2 in
one pass, float64-accumulated dots, the new direction). So on the GPU a step reads and writes a
range of the grid once instead of once per array operation; on the CPU the twins are the array
code the solver ran before the kernels existed, with the same numbers bit for bit.

Memory. Everything streams through the grid in ranges of node planes, so that a Jacobi sweep
updates ``z`` in place (a range is written back only after the next range has been computed, which
is all a range's neighbours read) and the residual is restricted to the coarse grid range by range,
without a full-size temporary. CG holds four vectors (x, r, p and q, which also receives the
preconditioned residual); each level below holds two vectors of its size and its moduli; no
diagonal is stored (it is recomputed range by range from the moduli). With the moduli (float64
or float32) and one byte of support flags per node, that is about 38 bytes per dof in float64
(:meth:`VoxelSolver.held_bytes` plus the CG vectors); in mixed precision (float32 moduli,
preconditioner and work vectors r, p, q; float64 solution, scalars and reductions, and the true
residual recomputed in float64 whenever the recursive one has dropped by 1e-3, and before
stopping) about 23. On top come what a range of node planes needs while it is processed (one
product buffer per worker thread, a Jacobi update,
the diagonal; built in place where the standard allows): on the CPU a range holds at most
:data:`CPU_RANGE_SHARE` of a level's nodes, which keeps them to a few bytes per dof on grids of a
few hundred thousand dofs as well (measured with tracemalloc at 1M dofs in double precision:
about 44 bytes per dof in all, of which 32 are the four CG vectors; ``bench/voxel_memory.py``).

Mixed precision that converges like double. Two things made mixed precision need more CG
iterations than double (up to 25 % on the 32^3 bench block, 2.2 times on a CT phantom with a
thin stiff shell; ``bench/mixed_iterations.py``), each found by swapping one part of the solve
between precisions: the product ``A p`` of CG's direction in float32 arithmetic (a smooth
direction's element products cancel to a small difference of large terms, so float32 loses
digits that CG's conjugacy needs), and the restart of the directions at each residual
replacement, which threw the Krylov space away. So the direction's product is accumulated in
float64 and rounded once per node (``voxel_matvec_acc``: float32 ``p``, moduli and ``q``, so
the bytes stored and moved are those of the float32 product; CUDA kernel
``voxel_matvec_acc_f32_f32``, NumPy twin in :mod:`fem.kernels.voxel`), and a replacement keeps
the directions. Mixed now takes the iterations of double on the blocks at every tolerance
measured and 1.3 times on the phantom, where the float32 V-cycle is the remaining difference.

Units as everywhere: mm, N, MPa.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field

import numpy as np

from .errors import ConvergenceError, SlowConvergence, SolverError
from .kernels.backend import add_at_flat, voxel_kernels
from .kernels.voxel import (
    CORNER_OFFSETS,
    INACTIVE,
    free_mask,
    inverse_diagonal,
    reference_stiffness,
)
from .parallel import n_threads, pool

logger = logging.getLogger(__name__)

#: coarsening stops when the next grid would have fewer than this many voxels per axis or when the
#: coarse grid has at most COARSE_MAX_DOF dofs (solved with a dense pseudo-inverse)
COARSE_MAX_DOF = 200
#: nodes per streamed range of node planes on the CPU (temporaries of about 24 x 8 x this bytes)
CPU_RANGE_NODES = 120_000
#: ... and on the CPU at most this share of the fine grid's nodes: the temporaries of a range
#: (about 150 bytes a node, plus one product buffer per worker thread) then cost a few bytes per
#: dof of the grid at any size, not tens of bytes on grids of a few hundred thousand dofs
CPU_RANGE_SHARE = 1 / 8
GPU_RANGE_NODES = 4_000_000
#: mixed precision: check the true residual after this many iterations without a replacement;
#: if it has not halved, float32 cannot make progress and the solve stops (fem.solve then
#: repeats it in float64)
STALL_ITERATIONS = 100
#: semi-coarsening: halve only the axes whose spacing is this many times finer than the coarsest
SEMI_RATIO = 1.9
#: ``solve(patience=True)`` (what solver="auto" asks for): after this many iterations, the rate
#: so far projects the iterations still needed; beyond PATIENCE[1] the solve raises
#: SlowConvergence. At 1M DOF the assembled AMG path costs about as much as 100 multigrid
#: iterations (assembly, set-up and solve, bench/README.md), less on smaller grids; the multigrid
#: needs 20-35 iterations on a well-conditioned grid, 260 on the CT phantom's thin stiff shell
PATIENCE = (30, 100)
#: mixed precision: recompute the true residual in float64 when the recursive one fell by this
REPLACE_DROP = 1e-3


def _padded(n: int) -> int:
    return n + (n % 2)


@dataclass
class Level:
    """One grid of the hierarchy: moduli, supports and the work vectors of the V-cycle."""

    E: object  # (nz, ny, nx)
    bits: object  # (nz+1, ny+1, nx+1) uint8: bits 0-2 supported x/y/z, bit 3 no voxel
    Ke: object  # (24, 24) in the level's dtype
    kdiag: object  # (24,)
    dtype: object
    ranges: list
    omega: float = 1.0
    lam_max: float = 0.0
    r: object = None
    z: object = None
    kinv: object = None  # coarsest only: dense (n, n) pseudo-inverse over all dofs
    factors: tuple = (2, 2, 2)  # coarsening factor per axis (x, y, z) to the next level
    spacing: tuple = (1.0, 1.0, 1.0)

    @property
    def shape(self):
        nz, ny, nx = self.E.shape
        return nx, ny, nz

    @property
    def node_shape(self):
        nz, ny, nx = self.E.shape
        return (nz + 1, ny + 1, nx + 1, 3)

    @property
    def n_dof(self) -> int:
        nz, ny, nx = self.E.shape
        return 3 * (nz + 1) * (ny + 1) * (nx + 1)


@dataclass
class GridProblem:
    """A voxel-grid linear static problem in grid layout (host or device arrays of backend xp).

    E (nz, ny, nx) MPa; nu; spacing (hx, hy, hz) mm; bits (nz+1, ny+1, nx+1) uint8 with bits 0-2
    set on supported dofs; u0 (nz+1, ny+1, nx+1, 3) float64 prescribed displacements (zero
    elsewhere) or None; load as (flat dof indices, values in N); bbar: B-bar reference stiffness.
    The prescribed displacements may instead be given as flat dof indices ``u0_index`` (each
    once) and values ``u0_value`` (mm), which spares a full-size array when they lie on a few
    planes.
    """

    E: object
    nu: float
    spacing: tuple
    bits: object
    load_index: object
    load_value: object
    u0: object = None
    bbar: bool = False
    u0_index: object = None
    u0_value: object = None


@dataclass
class GMGInfo:
    iterations: int = 0
    residuals: list = field(default_factory=list)
    residual: float = 0.0
    levels: list = field(default_factory=list)
    replacements: int = 0
    times: dict = field(default_factory=dict)
    held_bytes: int = 0
    #: ||F (b - A u0)||, the residual of the prescribed values alone: what the tolerance and
    #: :meth:`VoxelSolver.true_residual` are relative to
    initial_residual: float = 0.0


def box_stiffness(spacing, nu: float, bbar: bool = False) -> np.ndarray:
    """Reference 24x24 stiffness of a box voxel for E = 1 (full integration or B-bar)."""
    if not bbar:
        return reference_stiffness(spacing, nu)
    from .kernels import elastic
    from .kernels.voxel import gauss_gradients

    G, wdet = gauss_gradients(spacing)
    lam = nu / ((1.0 + nu) * (1.0 - 2.0 * nu))
    mu = 1.0 / (2.0 * (1.0 + nu))
    K = elastic.stiffness_matrices(G[None], wdet[None], np.array([lam]), np.array([mu]),
                                   np.array([True]))
    return K.reshape(24, 24)


class VoxelSolver:
    """Geometric-multigrid preconditioned CG on a regular voxel grid (see the module docstring).

    ``precision`` "double" (everything float64) or "mixed" (float32 operator, preconditioner and
    work vectors inside a float64 solution with float64 true-residual replacement);
    ``smoothing``: Jacobi sweeps before and after each coarse correction.
    """

    def __init__(self, problem: GridProblem, xp, *, precision: str = "double", smoothing: int = 1,
                 coarse_max_dof: int = COARSE_MAX_DOF, range_nodes: int | None = None):
        if precision not in ("double", "mixed"):
            raise SolverError(f"precision must be 'double' or 'mixed', got {precision!r}")
        self.xp = xp
        self.problem = problem
        self.precision = precision
        self.smoothing = int(smoothing)
        self.kern = voxel_kernels(xp)
        on_gpu = getattr(xp, "__name__", "") == "cupy"
        self.threads = n_threads() if xp is np else 1
        #: None: ranges scaled to each level's size (the CPU default)
        self._scaled = range_nodes is None and not on_gpu
        self.range_nodes = range_nodes or (GPU_RANGE_NODES if on_gpu else
                                           _cpu_range_nodes(problem.E.shape))
        self.work_dtype = xp.float64 if precision == "double" else xp.float32
        self.Ke_ref = box_stiffness(problem.spacing, problem.nu, problem.bbar)
        self._Ke64 = xp.asarray(self.Ke_ref, dtype=xp.float64)
        # the input moduli (not copied when already float64 on this backend): the true residual
        # of mixed precision uses them, so both precisions solve the same problem
        self._E64 = xp.asarray(problem.E)
        self._buffers: dict = {}
        t = time.perf_counter()
        with _blas_limited(self.threads):
            self.levels = self._hierarchy(coarse_max_dof)
        self.setup_time = time.perf_counter() - t

    # ------------------------------------------------------------------ hierarchy

    def _level(self, E, bits, dtype, spacing) -> Level:
        xp = self.xp
        Ke_np = box_stiffness(spacing, self.problem.nu, self.problem.bbar)
        Ke = xp.asarray(Ke_np, dtype=dtype)
        nz, ny, nx = E.shape
        plane = (ny + 1) * (nx + 1)
        limit = _cpu_range_nodes(E.shape) if self._scaled else self.range_nodes
        step = max(2, min(nz + 1, limit // max(plane, 1)))
        ranges = [(k, min(nz + 1, k + step)) for k in range(0, nz + 1, step)]
        return Level(E=E, bits=bits, Ke=Ke, kdiag=xp.asarray(np.diag(Ke_np).copy(), dtype=dtype),
                     dtype=dtype, ranges=ranges, spacing=tuple(spacing))

    def _hierarchy(self, coarse_max_dof: int) -> list:
        xp = self.xp
        p = self.problem
        fine_E = xp.asarray(p.E, dtype=self.work_dtype)
        bits = xp.asarray(p.bits, dtype=xp.uint8) | _inactive_bits(xp, fine_E)
        if not bool(xp.any(((bits & 7) != 0) & ((bits & INACTIVE) == 0))):
            raise SolverError("the voxel model has no support on any of its voxels: it is free to "
                              "move as a rigid body (fix some of its nodes)")
        levels = [self._level(fine_E, bits, self.work_dtype, p.spacing)]
        spacing = tuple(float(h) for h in p.spacing)
        pdtype = self.work_dtype
        while True:
            lv = levels[-1]
            nx, ny, nz = lv.shape
            factors = _coarsening_factors((nx, ny, nz), spacing)
            if lv.n_dof <= coarse_max_dof or factors == (1, 1, 1):
                break
            lv.factors = factors
            Ec = _coarsen_moduli(xp, lv.E, factors, pdtype)
            bits_c = _coarsen_bits(xp, lv.bits, factors) | _inactive_bits(xp, Ec)
            spacing = tuple(f * h for f, h in zip(factors, spacing))
            levels.append(self._level(Ec, bits_c, pdtype, spacing))
        for lv in levels[1:]:
            lv.r = xp.zeros(lv.node_shape, dtype=lv.dtype)
            lv.z = xp.zeros(lv.node_shape, dtype=lv.dtype)
        if len(levels) > 1:
            self._coarsest(levels[-1])
        for i, lv in enumerate(levels[:-1] if len(levels) > 1 else []):
            self._damping(lv, fine=(i == 0))
        if len(levels) == 1:
            self._coarsest(levels[0])
        return levels

    def _coarsest(self, lv: Level) -> None:
        """Dense pseudo-inverse of the coarsest operator over its free dofs (others map to 0)."""
        xp = self.xp
        n = lv.n_dof
        Ke = xp.asarray(box_stiffness(lv.spacing, self.problem.nu, self.problem.bbar),
                        dtype=xp.float64)
        K = _dense_stiffness(xp, xp.astype(lv.E, xp.float64), Ke)
        free = xp.reshape(free_mask(xp, lv.bits, xp.float64), (-1,))
        Kf = K * free[:, None] * free[None, :] + xp.eye(n, dtype=xp.float64) * (1.0 - free)
        w, V = xp.linalg.eigh(Kf)
        wmax = float(xp.max(xp.abs(w)))
        winv = xp.where(w > 1e-12 * wmax, 1.0 / xp.where(w > 0, w, xp.ones_like(w)),
                        xp.zeros_like(w))
        kinv = (V * winv[None, :]) @ V.T
        lv.kinv = xp.astype(kinv * free[:, None] * free[None, :], lv.dtype)

    def _damping(self, lv: Level, fine: bool) -> None:
        """Jacobi damping 4 / (3 lambda_max(D^-1 A)), lambda_max by power iteration."""
        xp = self.xp
        v = xp.empty(lv.node_shape, dtype=lv.dtype)
        per_plane = math.prod(lv.node_shape[1:])
        for k0, k1 in lv.ranges:
            v[k0:k1, ...] = _noise(xp, k0 * per_plane, (k1 - k0,) + lv.node_shape[1:], lv.dtype)
        w = xp.empty(lv.node_shape, dtype=lv.dtype)
        lam = 1.0
        for _ in range(6 if fine else 10):
            self._mask_into(lv, v)
            nv = math.sqrt(self._dot(lv, v, v))
            if nv == 0.0:
                break
            v /= nv
            for k0, k1, Au in self._products(lv, v):
                w[k0:k1, ...] = Au * inverse_diagonal(lv.E, lv.kdiag, lv.bits, k0, k1, lv.dtype)
            lam = self._dot(lv, v, w)
            v, w = w, v
        lv.lam_max = max(lam, 1e-30) * 1.05
        lv.omega = 4.0 / (3.0 * lv.lam_max)

    # ------------------------------------------------------------------ streaming operator

    def _stream(self, lv: Level, fill, *, spare: int = 0, into=None):
        """Yield (k0, k1, out) range by range, in order, where ``fill(k0, k1, out)`` has written
        the range's result into ``out``: ``into[k0:k1]`` where a full-size ``into`` is given,
        else a buffer of the level. All ranges of a batch are computed (on the worker threads)
        before any is yielded; a consumer must copy what it keeps from a buffer before asking
        for the next batch, except for ``spare`` ranges it may hold one batch longer (the
        buffers are a ring of threads + spare)."""
        xp = self.xp
        ranges = lv.ranges
        T = self.threads
        if into is not None:
            bufs = [into]
        else:  # one list per level, so that a stream with a spare reuses the others' buffers
            bufs = self._buffers.setdefault(id(lv), [])
            step = ranges[0][1] - ranges[0][0]
            while len(bufs) < T + spare:
                bufs.append(xp.empty((step,) + lv.node_shape[1:], dtype=lv.dtype))
            bufs = bufs[:T + spare]

        def compute(item):
            (k0, k1), buf = item
            out = buf[k0:k1, ...] if into is not None else buf[:k1 - k0, ...]
            fill(k0, k1, out)
            return k0, k1, out

        for start in range(0, len(ranges), T):
            items = [(rg, bufs[(start + t) % len(bufs)])
                     for t, rg in enumerate(ranges[start:start + T])]
            if len(items) > 1:
                yield from pool().map(compute, items)
            else:
                yield compute(items[0])

    def _products(self, lv: Level, u, *, acc64: bool = False):
        """:meth:`_stream` of (A u)[k0:k1]. ``acc64``: float32 u and moduli, the sums in
        float64, rounded once (``voxel_matvec_acc``: mixed precision's CG product)."""
        kern = self.kern

        def fill(k0, k1, out):
            if acc64:
                kern.voxel_matvec_acc(u, lv.E, self._Ke64, out, k0, k1)
            else:
                kern.voxel_matvec(u, lv.E, lv.Ke, out, k0, k1)
        return self._stream(lv, fill)

    def _cg_product(self, lv: Level, p, q, *, acc64: bool) -> float:
        """q = F A p range by range (worker threads on the CPU); returns p . q (float64, summed
        over the ranges in order). ``acc64``: mixed precision's float64-summed product."""
        kern = self.kern
        Ke = self._Ke64 if acc64 else lv.Ke
        parts = {}

        def fill(k0, k1, out):
            parts[k0] = kern.voxel_cg_product(p, lv.E, Ke, lv.bits, out, k0, k1, acc64)

        for _ in self._stream(lv, fill, into=q):
            pass
        pq = 0.0
        for k0, _ in lv.ranges:
            pq += parts[k0]
        return pq

    def _mask_into(self, lv: Level, v) -> None:
        for k0, k1 in lv.ranges:
            self.kern.voxel_mask(v[k0:k1, ...], lv.bits, k0, k1)

    def _dot(self, lv: Level, a, b) -> float:
        s = 0.0
        for k0, k1 in lv.ranges:
            s += self.kern.vector_dot(a[k0:k1, ...], b[k0:k1, ...])
        return s

    # ------------------------------------------------------------------ smoothing and transfer
    #
    # Each step is one fused kernel per range of node planes (fem.kernels.voxel's twins on the
    # CPU, voxel.cu's kernels on the GPU), so that on the GPU a step reads and writes the level
    # once instead of once per array operation.

    def _jacobi(self, lv: Level, r, z) -> None:
        """One damped Jacobi sweep z += omega D^-1 (r - A z), in place (lagged write-back: a
        range is written only once the next range, the last that reads it, is computed)."""
        kern = self.kern

        def fill(k0, k1, out):  # -(update) = omega F D^-1 (A z - r)
            kern.voxel_jacobi(z, r, lv.E, lv.Ke, lv.kdiag, lv.bits, lv.omega, out, k0, k1)

        pending = None
        for k0, k1, neg in self._stream(lv, fill, spare=1):
            if pending is not None:
                pk0, pk1, pu = pending
                z[pk0:pk1, ...] -= pu
            pending = (k0, k1, neg)
        if pending is not None:
            pk0, pk1, pu = pending
            z[pk0:pk1, ...] -= pu

    def _first_sweep(self, lv: Level, r, z) -> None:
        """z = omega F D^-1 r (a Jacobi sweep from z = 0)."""
        for k0, k1 in lv.ranges:
            self.kern.voxel_jacobi_first(r, lv.E, lv.kdiag, lv.bits, lv.omega, z[k0:k1, ...],
                                         k0, k1)

    def _residual_restrict(self, lv: Level, r, z, coarse: Level) -> None:
        """coarse.r = F_c R F (r - A z), range by range (a level of one range, as every level
        below GPU_RANGE_NODES on the GPU: restricted, masked and written in one launch)."""
        kern = self.kern
        rc = coarse.r

        def fill(k0, k1, out):
            kern.voxel_residual(z, r, lv.E, lv.Ke, lv.bits, out, k0, k1)

        if len(lv.ranges) == 1:
            for _, _, t in self._stream(lv, fill):
                kern.voxel_restrict(t, rc, coarse.bits, lv.factors)
            return
        rc[...] = 0
        for k0, _, t in self._stream(lv, fill):
            kern.voxel_restrict_add(t, rc, lv.factors, k0)
        self._mask_into(coarse, rc)

    def _prolong_add(self, coarse: Level, lv: Level, z) -> None:
        """z += F P coarse.z on the free dofs of lv, range by range."""
        for k0, k1 in lv.ranges:
            self.kern.voxel_prolong_add(coarse.z, lv.bits, z, lv.factors, k0, k1)

    def vcycle(self, r, z, level: int = 0) -> None:
        """z = M^-1 r by one V-cycle from ``level`` down (z is overwritten)."""
        xp = self.xp
        lv = self.levels[level]
        if lv.kinv is not None:
            z[...] = xp.reshape(lv.kinv @ xp.reshape(xp.astype(r, lv.dtype), (-1,)), z.shape)
            return
        coarse = self.levels[level + 1]
        self._first_sweep(lv, r, z)
        for _ in range(self.smoothing - 1):
            self._jacobi(lv, r, z)
        self._residual_restrict(lv, r, z, coarse)
        self.vcycle(coarse.r, coarse.z, level + 1)
        self._prolong_add(coarse, lv, z)
        for _ in range(self.smoothing):
            self._jacobi(lv, r, z)

    # ------------------------------------------------------------------ CG

    def _matvec64(self, x, out, k0: int, k1: int) -> None:
        """out = (A x)[k0:k1] in float64 (x float64), whatever the level's storage precision:
        only the moduli of the touching element planes are converted (grid re-based at k0-1)."""
        xp = self.xp
        E = self._E64
        nz = E.shape[0]
        e0, e1 = max(k0 - 1, 0), min(k1, nz)
        Ef = xp.astype(E[e0:e1, ...], xp.float64, copy=False)
        self.kern.voxel_matvec(x[e0:e1 + 1, ...], Ef, self._Ke64, out, k0 - e0, k1 - e0)

    def _loads_by_range(self):
        """The loads (flat dof index, N) sorted by index, zeroed where they do nothing (supported
        dofs, nodes of no voxel), and for each range of node planes its slice of them."""
        xp = self.xp
        p = self.problem
        lv = self.levels[0]
        idx = xp.asarray(p.load_index, dtype=xp.int64)
        val = xp.asarray(p.load_value, dtype=xp.float64) * _free_at(xp, lv.bits, idx)
        order = xp.argsort(idx)
        idx, val = xp.take(idx, order), xp.take(val, order)
        per_plane = math.prod(lv.node_shape[1:])
        starts = [k0 * per_plane for k0, _ in lv.ranges] + [lv.n_dof]
        cut = [int(c) for c in xp.searchsorted(idx, xp.asarray(starts, dtype=xp.int64))]
        return idx, val, [(cut[i], cut[i + 1]) for i in range(len(lv.ranges))]

    def _true_residual(self, x, out, loads) -> None:
        """out = F (b - A x) in float64 (x float64), range by range, rounded to out's dtype only
        after the subtraction (b - A x rounded to float32 term by term would carry an error of
        1e-7 |b|, more than the residual that mixed precision must reach)."""
        xp = self.xp
        lv = self.levels[0]
        idx, val, cuts = loads
        per_plane = math.prod(lv.node_shape[1:])
        for (k0, k1), (a, b) in zip(lv.ranges, cuts):
            Ax = xp.empty((k1 - k0,) + lv.node_shape[1:], dtype=xp.float64)
            self._matvec64(x, Ax, k0, k1)
            res = -Ax
            if b > a:
                add_at_flat(res, idx[a:b] - k0 * per_plane, val[a:b])
            out[k0:k1, ...] = xp.astype(res * free_mask(xp, lv.bits[k0:k1, ...], xp.float64),
                                        out.dtype)

    def set_moduli(self, E) -> None:
        """Replace the fine grid's moduli (nz, ny, nx) by ``E`` (a secant modulus of a damaged
        material, :mod:`fem.nonlinear`), keeping the coarse levels and the smoother damping of the
        moduli the solver was built with as the preconditioner. The operator changes exactly; the
        V-cycle stays a symmetric positive definite preconditioner (the fine Jacobi diagonal is
        recomputed from the new moduli range by range), so CG still converges to rtol, in more
        iterations where the moduli have fallen far. An element may soften but not vanish: a
        modulus of 0 where the grid had a voxel would leave its nodes without stiffness."""
        xp = self.xp
        E = xp.asarray(E)
        lv = self.levels[0]
        if tuple(E.shape) != tuple(lv.E.shape):
            raise SolverError(f"moduli of shape {tuple(E.shape)} for a grid of {tuple(lv.E.shape)}")
        if bool(xp.any((E <= 0) & (lv.E > 0))):
            raise SolverError("a secant modulus fell to 0 where the grid has a voxel")
        self._E64 = xp.astype(E, xp.float64, copy=False)
        lv.E = xp.astype(E, lv.dtype, copy=False)

    def solve(self, *, rtol: float = 1e-8, atol: float = 0.0, maxiter: int | None = None,
              callback=None, x0=None, patience: bool = False):
        """Run PCG; returns (u (nz+1, ny+1, nx+1, 3) float64, GMGInfo). ``x0``: a starting guess
        on the grid (its supported dofs are reset to the prescribed values). ``patience``:
        raise :class:`~fem.errors.SlowConvergence` when the first iterations project too many
        (:data:`PATIENCE`)."""
        with _blas_limited(self.threads):
            return self._solve(rtol=rtol, atol=atol, maxiter=maxiter, callback=callback, x0=x0,
                               patience=patience)

    def _solve(self, *, rtol, atol, maxiter, callback, x0=None, patience=False):
        xp = self.xp
        lv = self.levels[0]
        p = self.problem
        info = GMGInfo(levels=[(lv_.shape, lv_.n_dof) for lv_ in self.levels])
        t0 = time.perf_counter()
        shape = lv.node_shape
        x = xp.zeros(shape, dtype=xp.float64)
        if p.u0 is not None:
            x[...] = xp.asarray(p.u0, dtype=xp.float64)
        elif p.u0_index is not None:
            add_at_flat(x, xp.asarray(p.u0_index, dtype=xp.int64),
                        xp.asarray(p.u0_value, dtype=xp.float64))
        loads = self._loads_by_range()
        r = xp.empty(shape, dtype=self.work_dtype)
        self._true_residual(x, r, loads)
        r0 = math.sqrt(self._dot(lv, r, r))
        info.initial_residual = r0
        if x0 is not None and r0 > 0.0:
            # the tolerance stays relative to the residual of the prescribed values alone (the
            # right-hand side), not to the smaller residual of a good guess
            for k0, k1 in lv.ranges:
                x[k0:k1, ...] += xp.asarray(x0[k0:k1, ...], dtype=xp.float64) * free_mask(
                    xp, lv.bits[k0:k1, ...], xp.float64)
            self._true_residual(x, r, loads)
        info.residuals = [math.sqrt(self._dot(lv, r, r)) / r0 if r0 > 0.0 else 1.0]
        if r0 == 0.0:
            info.times["solve"] = time.perf_counter() - t0
            return x, info
        target = max(rtol * r0, atol)
        maxiter = maxiter or 1000
        q = xp.empty(shape, dtype=self.work_dtype)
        pv = xp.empty(shape, dtype=self.work_dtype)
        info.held_bytes = self.held_bytes() + sum(_nbytes(xp, a) for a in (x, r, q, pv))
        rnorm = r0 * info.residuals[0]
        if rnorm <= target:
            info.residual = info.residuals[-1]
            info.times["solve"] = time.perf_counter() - t0
            return x, info
        self.vcycle(r, q)
        rz = self._dot(lv, r, q)
        pv[...] = q
        last_true, last_true_it = rnorm, 0
        mixed = self.precision == "mixed"
        for it in range(1, maxiter + 1):
            pq = self._cg_product(lv, pv, q, acc64=mixed)
            if not pq > 0.0:
                raise ConvergenceError(
                    f"CG broke down at iteration {it}: p.Ap = {pq:.3e} <= 0; the voxel model "
                    "is a mechanism (a part with no support?)", info.residuals)
            alpha = rz / pq
            rr = 0.0
            for k0, k1 in lv.ranges:  # x += alpha p, r -= alpha q, |r|^2: one pass
                rr += self.kern.cg_update(x[k0:k1, ...], r[k0:k1, ...], pv[k0:k1, ...],
                                          q[k0:k1, ...], alpha)
            rnorm = math.sqrt(rr)
            stalled = mixed and it - last_true_it >= STALL_ITERATIONS
            if mixed and (rnorm < REPLACE_DROP * last_true or rnorm <= target or stalled):
                # the float32 recursion drifts from b - A x: replace it by the true residual,
                # keeping the directions (conjugate for the float64-accumulated operator; a
                # restart would throw away the Krylov space: 562 iterations instead of 338 on
                # the CT phantom of bench/mixed_iterations.py)
                self._true_residual(x, r, loads)
                rnorm = math.sqrt(self._dot(lv, r, r))
                if not rnorm <= 10.0 * last_true:
                    raise ConvergenceError(
                        f"CG diverged at iteration {it}: the true residual grew from "
                        f"{last_true / r0:.2e} to {rnorm / r0:.2e}; is the voxel model a "
                        "mechanism (a part with no support)?", info.residuals + [rnorm / r0])
                if stalled and rnorm > 0.5 * last_true:
                    raise ConvergenceError(
                        f"mixed precision stalled: the true residual fell only from "
                        f"{last_true / r0:.2e} to {rnorm / r0:.2e} in {it - last_true_it} "
                        "iterations (float32 cannot resolve this model; use precision="
                        "'double')", info.residuals + [rnorm / r0])
                last_true, last_true_it = rnorm, it
                info.replacements += 1
            info.residuals.append(rnorm / r0)
            if callback is not None:
                callback(x)
            if not math.isfinite(rnorm):
                raise ConvergenceError(f"CG diverged at iteration {it}", info.residuals)
            if rnorm <= target:
                info.iterations = it
                break
            if patience and it == PATIENCE[0]:
                _check_patience(it, rnorm, r0, target, info.residuals)
            self.vcycle(r, q)
            rz_new = self._dot(lv, r, q)
            beta = rz_new / rz
            rz = rz_new
            for k0, k1 in lv.ranges:
                self.kern.cg_direction(pv[k0:k1, ...], q[k0:k1, ...], beta)
        else:
            raise ConvergenceError(
                f"CG did not converge in {maxiter} iterations: relative residual "
                f"{info.residuals[-1]:.3e} > rtol {rtol:.1e}", info.residuals)
        info.residual = info.residuals[-1]
        info.times["solve"] = time.perf_counter() - t0
        return x, info

    def held_bytes(self) -> int:
        """Bytes of the arrays the hierarchy holds (moduli, supports, coarse vectors)."""
        total = 0
        for lv in self.levels:
            for a in (lv.E, lv.bits, lv.r, lv.z, lv.kinv):
                if a is not None:
                    total += _nbytes(self.xp, a)
        return total

    def true_residual(self, x, info: GMGInfo) -> float:
        """||F (b - A x)|| / ||F (b - A u0)||: the relative residual of ``x`` on the free dofs,
        computed afresh (not CG's recursion), against that of the prescribed values alone
        (``info.initial_residual`` of the solve that gave ``x``)."""
        xp = self.xp
        lv = self.levels[0]
        r = xp.empty(lv.node_shape, dtype=xp.float64)
        self._true_residual(xp.asarray(x, dtype=xp.float64), r, self._loads_by_range())
        rn = math.sqrt(self._dot(lv, r, r))
        r0 = info.initial_residual
        return rn / r0 if r0 > 0.0 else (0.0 if rn == 0.0 else math.inf)

    def apply_at(self, u, dofs):
        """(A u) at the flat dof indices ``dofs`` (sorted; reactions at the supports), in float64,
        computed only on the ranges of node planes that hold one of them."""
        xp = self.xp
        lv = self.levels[0]
        dofs = xp.asarray(dofs, dtype=xp.int64)
        per_plane = 3 * math.prod(lv.node_shape[1:3])
        out = xp.zeros(dofs.shape, dtype=xp.float64)
        starts = xp.asarray([k0 * per_plane for k0, _ in lv.ranges] + [lv.n_dof], dtype=xp.int64)
        cut = [int(c) for c in xp.searchsorted(dofs, starts)]
        for (k0, k1), a, b in zip(lv.ranges, cut[:-1], cut[1:]):
            if b == a:
                continue
            part = xp.empty((k1 - k0,) + lv.node_shape[1:], dtype=xp.float64)
            self._matvec64(u, part, k0, k1)
            out[a:b] = xp.take(xp.reshape(part, (-1,)), dofs[a:b] - k0 * per_plane)
        return out

    def apply(self, u):
        """(A u) over the whole grid, supported dofs included (for reactions), in float64."""
        xp = self.xp
        lv = self.levels[0]
        out = xp.empty(lv.node_shape, dtype=xp.float64)
        for k0, k1 in lv.ranges:
            part = xp.empty((k1 - k0,) + lv.node_shape[1:], dtype=xp.float64)
            self._matvec64(u, part, k0, k1)
            out[k0:k1, ...] = part
        return out


def _cpu_range_nodes(shape) -> int:
    """Nodes per streamed range on the CPU for moduli of ``shape`` (nz, ny, nx)."""
    nodes = math.prod(n + 1 for n in shape)
    return max(1, min(CPU_RANGE_NODES, math.ceil(CPU_RANGE_SHARE * nodes)))


def _coarsening_factors(shape, spacing) -> tuple:
    """Which axes to halve next: those of at least 2 voxels; where the spacing is anisotropic
    (an axis at least SEMI_RATIO times finer than the coarsest), only the fine axes
    (semi-coarsening, until the spacings are within SEMI_RATIO; point smoothers cannot smooth
    across strongly anisotropic voxels, so the grid must make them isotropic first)."""
    can = [n >= 2 for n in shape]
    h_max = max(h for h, c in zip(spacing, can) if c) if any(can) else 0.0
    fine = [c and SEMI_RATIO * h <= h_max for h, c in zip(spacing, can)]
    pick = fine if any(fine) else can
    return tuple(2 if p else 1 for p in pick)


def _blas_limited(threads: int):
    """One BLAS thread per worker thread while the voxel kernels run on the worker threads
    (their small GEMMs gain nothing from BLAS threads, and 2 x 2 threads on 2 cores cost 1.7x)."""
    import contextlib

    if threads <= 1:
        return contextlib.nullcontext()
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1, user_api="blas")


def _check_patience(it: int, rnorm: float, r0: float, target: float, residuals) -> None:
    """Raise SlowConvergence if the mean rate of the first ``it`` iterations needs more than
    PATIENCE[1] further ones to reach ``target``."""
    drop = math.log(rnorm / r0) if 0.0 < rnorm < r0 else 0.0
    need = math.log(target / rnorm) / drop * it if drop < 0.0 else math.inf
    if need > PATIENCE[1]:
        raise SlowConvergence(
            f"the multigrid converges slowly here: {it} iterations reached a relative residual "
            f"of {rnorm / r0:.1e}, a rate that needs about {need:.0f} more", residuals)


# ---------------------------------------------------------------------- helpers (array API only)

def _free_at(xp, bits, dof_index):
    """1.0 where the flat dof indices are free, 0.0 where supported or on a node of no voxel."""
    node = xp.astype(xp.take(xp.reshape(bits, (-1,)), dof_index // 3), xp.int64)
    fixed = (node >> (dof_index % 3)) & 1
    return xp.astype((fixed == 0) & ((node & INACTIVE) == 0), xp.float64)


def _nbytes(xp, a) -> int:
    """Bytes of an array's data (``.nbytes`` is not in the Array API standard)."""
    try:
        bits = xp.finfo(a.dtype).bits
    except (TypeError, ValueError):
        bits = xp.iinfo(a.dtype).bits
    return math.prod(a.shape) * bits // 8


def _noise(xp, start: int, shape, dtype):
    """Deterministic noise in [-0.5, 0.5) for the flat positions start, start+1, ... (an integer
    hash of the position): a power-iteration start vector with every frequency in it, the same
    on every backend, from integer operations of the standard only (products stay below 2^63)."""
    x = xp.arange(start, start + math.prod(shape), dtype=xp.int64)
    for mult in (0x7FEB352D, 0x5BD1E995):
        x = ((x ^ (x >> 16)) * mult) & 0xFFFFFFFF
    x = x ^ (x >> 16)
    return xp.astype(xp.reshape(xp.astype(x, xp.float64) / 2.0**32 - 0.5, shape), dtype)


def _dense_stiffness(xp, E, Ke):
    """The dense (n, n) stiffness of a small grid (float64 E and Ke), built without a scatter
    (the standard has none): node p couples only with its neighbours p + s, s the flat offset of
    one of 27 neighbour positions, and each offset is one strided diagonal of the flattened
    (N * N, 3, 3) node-block matrix. A node at the grid's edge has zero coupling with the
    neighbour positions outside the grid, so the entries that wrap around add nothing."""
    nz, ny, nx = E.shape
    nodes = (nz + 1, ny + 1, nx + 1)
    N = math.prod(nodes)
    Kb = xp.reshape(Ke, (8, 3, 8, 3))
    Ee = E[..., None, None]
    coupling = {}  # neighbour offset -> (nodes, 3, 3) block coupling node p with p + offset
    for a, (ai, aj, ak) in enumerate(CORNER_OFFSETS):
        for b, (bi, bj, bk) in enumerate(CORNER_OFFSETS):
            off = (bi - ai, bj - aj, bk - ak)
            if off not in coupling:
                coupling[off] = xp.zeros(nodes + (3, 3), dtype=xp.float64)
            coupling[off][ak:ak + nz, aj:aj + ny, ai:ai + nx, :, :] += Ee * Kb[a, :, b, :]
    flat = xp.zeros((N * N, 3, 3), dtype=xp.float64)
    for (oi, oj, ok), S in coupling.items():
        s = oi + nodes[2] * (oj + nodes[1] * ok)
        p0, p1 = max(0, -s), min(N, N - s)  # rows p whose p + s is a node
        start = p0 * (N + 1) + s
        flat[start:start + (p1 - p0 - 1) * (N + 1) + 1:N + 1, :, :] += \
            xp.reshape(S, (N, 3, 3))[p0:p1, :, :]
    K = xp.permute_dims(xp.reshape(flat, (N, N, 3, 3)), (0, 2, 1, 3))
    return xp.reshape(K, (3 * N, 3 * N))


def _inactive_bits(xp, E):
    """INACTIVE on nodes none of whose (up to eight) voxels has a modulus > 0."""
    nz, ny, nx = E.shape
    solid = xp.astype(E > 0, xp.uint8)
    touch = xp.zeros((nz + 1, ny + 1, nx + 1), dtype=xp.uint8)
    for dk in (0, 1):
        for dj in (0, 1):
            for di in (0, 1):
                touch[dk:dk + nz, dj:dj + ny, di:di + nx] |= solid
    return xp.where(touch > 0, xp.zeros_like(touch), xp.full_like(touch, INACTIVE))


def _coarsen_moduli(xp, E, factors, dtype):
    """Coarse voxel moduli: mean of the children (2 per coarsened axis; an odd count is padded
    with an empty voxel, which counts as 0)."""
    fx, fy, fz = factors
    nz, ny, nx = E.shape
    pz, py, px = (_padded(n) if f == 2 else n for n, f in ((nz, fz), (ny, fy), (nx, fx)))
    P = xp.zeros((pz, py, px), dtype=xp.float64)
    P[:nz, :ny, :nx] = xp.astype(E, xp.float64)
    Ec = xp.zeros((pz // fz, py // fy, px // fx), dtype=xp.float64)
    for dk in range(fz):
        for dj in range(fy):
            for di in range(fx):
                Ec += P[dk::fz, dj::fy, di::fx]
    return xp.astype(Ec / float(fx * fy * fz), dtype)


def _coarse_index(n_fine_nodes: int, factor: int) -> list:
    """Fine node index at each coarse node: 2I (the last fine node where 2I lies beyond)."""
    if factor == 1:
        return list(range(n_fine_nodes))
    n_coarse = _padded(n_fine_nodes - 1) // 2 + 1
    return [min(2 * i, n_fine_nodes - 1) for i in range(n_coarse)]


def _coarsen_bits(xp, bits, factors):
    """Supported bits of the coarse nodes, injected from the fine node at the same place."""
    b = bits & 7
    fx, fy, fz = factors
    for axis, f in ((0, fz), (1, fy), (2, fx)):
        idx = xp.asarray(_coarse_index(b.shape[axis], f), dtype=xp.int64)
        b = xp.take(b, idx, axis=axis)
    return b
