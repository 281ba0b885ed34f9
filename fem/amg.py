"""Smoothed-aggregation AMG for 3-D elasticity: pyamg builds the hierarchy, we run the V-cycle.

pyamg (Olson & Schroder) supplies the aggregation of the block (3x3 per node) matrix, with the
six rigid-body modes as near-null space. Its own cycle smooths with Gauss-Seidel, which is
sequential; here each level is smoothed instead by a Chebyshev polynomial in the block-Jacobi
preconditioned operator (Adams, Brezina, Hu & Tuminaro 2003), built from sparse products only.
That makes every operation of the cycle a sparse product or a vector update: it runs on several
CPU threads (:class:`fem.parallel.RowSplit`) and, after
:meth:`SmoothedAggregationAMG.to_backend`, on a GPU array backend.

Set-up choices, measured with ``bench/bench_hex_block.py`` and ``bench/amg_segments.py``:
symmetric strength of connection with theta 0.02 (``THETA``); standard aggregation;
Jacobi-smoothed prolongation with omega 4/3 over lambda_max of the block-Jacobi operator; coarsening down to at most 100 nodes, solved directly; Chebyshev of degree
2 on [lambda_max / 4, 1.1 lambda_max] with lambda_max from 10 Lanczos steps.

Why theta 0.02 and not 0: with theta 0 every neighbour is strong, so aggregates straddle the
bone-disc interfaces (moduli 1 to 2 800 MPa) and the coarse spaces fit neither side. Dropping the
weakest couplings keeps them apart. CG iterations to rtol 1e-8 and solve times on 2 cores
(``bench/amg_segments.py``: standing load as an endplate pressure; pyamg's own solver on the same
matrix beside). The homogeneous block shows no loss; 0.25 made a segment diverge to 1 893
iterations, so the value stays small.

    model                             DOF    theta 0     theta 0.02   pyamg SA (peer)
    parametric L1-L3, 3 mm          19 635   173, 2.2 s  107, 1.4 s   154, 3.0 s
    parametric L1, 1.5 mm (no disc) 33 441    26, 0.5 s   22, 0.5 s    28, 1.1 s
    parametric L1-L3, 2 mm          59 016   219, 8.2 s  117, 4.8 s   155, 10.6 s
    shape model L2-L4, 2 mm         98 646   174, 10.2 s 115, 7.1 s   154, 16.4 s
    shape model L3-L4, tet10 4 mm   70 056   207, 9.1 s  147, 6.7 s   207, 16.3 s
    homogeneous 30^3 hex block      89 373    10, 0.7 s   11, 0.7 s    10, 1.3 s

Nearly incompressible regions (a disc nucleus at nu 0.499) lock the aggregation's coarse spaces:
:class:`IncompressibleBlocks` eliminates them exactly and builds the hierarchy on a compressible
stand-in, the default of :func:`fem.analysis.amg_preconditioner` since 2026-12-06.
``bench/amg_segments.py`` on this 2-core machine, 2026-12-06 (theta 0.02 in both; iterations,
solve seconds; set-up 0.2-1.3 s, the stand-in's 0.0-0.6 s more for its block factorisations):

    model                             DOF    plain        stand-in     pyamg SA (peer)
    parametric L1-L3, 3 mm          19 635   107, 0.97 s   41, 0.51 s  153, 2.8 s
    parametric L1, 1.5 mm (no disc) 33 441    22, 0.38 s   22, 0.37 s   28, 1.1 s
    parametric L1-L3, 2 mm          59 016   117, 5.5 s    38, 2.2 s   155, 13.2 s
    shape model L2-L4, 2 mm         98 646   115, 8.7 s    57, 4.9 s   154, 22.9 s
    shape model L3-L4, tet10 4 mm   70 056   160, 7.9 s    69, 3.6 s   212, 21.1 s
    parametric T12-L4, 2 mm        102 042   122, 11.1 s   51, 4.9 s   180, 28.4 s
    homogeneous 30^3 hex block      89 373    11, 0.85 s   11, 0.78 s   10, 1.6 s
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass

import numpy as np

from .errors import SolverError
from .kernels.backend import array_module
from .parallel import RowSplit, map_ordered, map_parts, rmatvec, row_block

#: strength-of-connection threshold of the aggregation (module docstring)
THETA = 0.02


def _block_diagonal(A):
    """The diagonal blocks (nb, R, R) of a SciPy BSR matrix."""
    R = A.blocksize[0]
    nb = A.shape[0] // R
    ip, ind = A.indptr, A.indices
    brow = np.repeat(np.arange(nb), np.diff(ip))
    pos = np.nonzero(brow == ind)[0]
    D = np.zeros((nb, R, R), dtype=A.dtype)
    D[brow[pos]] = A.data[pos]
    return D


def _safe_block_inverse(D):
    """Inverse of each diagonal block; blocks that are singular (unused dofs) get identity."""
    R = D.shape[1]
    ok = np.abs(np.linalg.det(D)) > 1e-300
    Dinv = np.broadcast_to(np.eye(R, dtype=D.dtype), D.shape).copy()
    if ok.any():
        Dinv[ok] = np.linalg.inv(D[ok])
    return Dinv


class BlockJacobi:
    """x -> D^{-1} x with D the block diagonal of A."""

    def __init__(self, A):
        self.R = A.blocksize[0] if A.format == "bsr" else 1
        if self.R == 1:
            d = A.diagonal()
            self.Dinv = np.where(d != 0, 1.0 / np.where(d != 0, d, 1.0), 1.0)[:, None, None]
        else:
            self.Dinv = _safe_block_inverse(_block_diagonal(A))

    def __call__(self, r):
        R = self.R
        if R == 1:
            return self.Dinv[:, 0, 0] * r
        return np.matmul(self.Dinv, r.reshape(-1, R, 1)).reshape(-1)


class SparseBlockJacobi:
    """x -> D^{-1} x as one product with a block-diagonal CSR matrix of any array backend.

    The device form of :class:`BlockJacobi`: a sparse product needs no batched small-matrix
    kernel, and it is the one operation the rest of the cycle is made of.
    """

    def __init__(self, Dinv, sparse):
        import scipy.sparse as sp

        nb, R, _ = Dinv.shape
        D = sp.bsr_matrix((Dinv, np.arange(nb), np.arange(nb + 1)), shape=(nb * R, nb * R))
        self.D = sparse.csr_matrix(D.tocsr())

    def __call__(self, r):
        return self.D @ r


def lanczos_max_eig(matvec, n: int, prec, steps: int = 10, seed: int = 0) -> float:
    """Largest eigenvalue of M^{-1} A (A, M SPD) by a few Lanczos steps in the M inner product."""
    rng = np.random.default_rng(seed)
    v = rng.standard_normal(n)
    z = prec(v)
    beta = np.sqrt(max(float(v @ z), 1e-300))
    v_prev = np.zeros(n)
    v, z = v / beta, z / beta
    alphas, betas = [], []
    beta = 0.0
    for _ in range(steps):
        w = matvec(z)
        alpha = float(w @ z)
        w = w - alpha * v - beta * v_prev
        wz = prec(w)
        b2 = float(w @ wz)
        alphas.append(alpha)
        if b2 <= 1e-30 * max(abs(alpha), 1e-300):
            break
        beta_new = np.sqrt(b2)
        betas.append(beta_new)
        v_prev = v
        v, z = w / beta_new, wz / beta_new
        beta = beta_new
    k = len(alphas)
    T = np.diag(alphas) + np.diag(betas[: k - 1], 1) + np.diag(betas[: k - 1], -1)
    return float(np.linalg.eigvalsh(T)[-1])


class Chebyshev:
    """Chebyshev smoothing of degree ``degree`` for A x = b, preconditioned by block Jacobi."""

    def __init__(self, A, op, degree: int = 2, lower: float = 0.25, upper: float = 1.1):
        self.op = op
        self.prec = BlockJacobi(A)
        self.lmax = lanczos_max_eig(op.__matmul__, A.shape[0], self.prec)
        self.a, self.b = lower * self.lmax, upper * self.lmax
        self.degree = degree

    def on(self, op, prec) -> Chebyshev:
        """The same polynomial (degree and interval) applied with another operator and
        preconditioner: the smoother of a level moved to an array backend."""
        moved = copy.copy(self)
        moved.op, moved.prec = op, prec
        return moved

    def __call__(self, x, b, zero_guess: bool = False):
        """Smooth in place; with ``zero_guess`` the first residual is b itself (x = 0)."""
        theta = 0.5 * (self.b + self.a)
        delta = 0.5 * (self.b - self.a)
        sigma = theta / delta
        rho = 1.0 / sigma
        r = b.copy() if zero_guess else b - self.op @ x
        d = self.prec(r) / theta
        for k in range(self.degree):
            x += d
            if k == self.degree - 1:
                break
            r -= self.op @ d
            rho_new = 1.0 / (2.0 * sigma - rho)
            d *= rho_new * rho
            d += (2.0 * rho_new / delta) * self.prec(r)
            rho = rho_new
        return x


@dataclass
class _Level:
    """One level of the V-cycle: its operator A, smoother, prolongation P and restriction R."""

    A: object
    smooth: Chebyshev
    P: object
    R: object


class _Transposed:
    """P^T r from the row parts of a :class:`RowSplit` P (threads), without storing P^T."""

    def __init__(self, P: RowSplit):
        self.P = P

    def __matmul__(self, r):
        return rmatvec(self.P, r)


class SmoothedAggregationAMG:
    """A V-cycle preconditioner (``.matvec``) for SPD elasticity matrices in BSR form.

    The hierarchy is built level by level from pyamg's parts (symmetric strength of connection,
    standard aggregation, fitting the near-null space B into a tentative prolongator T), with the
    two sparse products that dominate time and memory done here on row parts of A, on the
    worker threads: the smoothed prolongator P = T - (4/3) / lambda_max D^{-1} A T (lambda_max of
    the block-Jacobi operator, from the same Lanczos estimate the Chebyshev smoother uses) and
    the Galerkin product P^T A P. Only P is stored; P^T r is computed from P's row parts.
    """

    def __init__(self, A, B, *, precision: str = "double", max_coarse: int = 100,
                 degree: int = 2, theta: float | None = None, max_levels: int = 12,
                 omega: float = 4 / 3):
        theta = THETA if theta is None else theta
        if precision not in ("double", "mixed"):
            raise SolverError(f"precision must be 'double' or 'mixed', got {precision!r}")
        t0 = time.perf_counter()
        self.dtype = np.float32 if precision == "mixed" else np.float64
        self.levels = []
        self.sizes = [A.shape[0]]
        nnz = [A.nnz]
        Al = A
        Bl = np.asarray(B, dtype=np.float64)
        while Al.shape[0] // Al.blocksize[0] > max_coarse and len(self.levels) < max_levels - 1:
            op = RowSplit(Al)
            smoother = Chebyshev(Al, op, degree)
            T, Bc = _tentative(Al, Bl, theta)
            if T.shape[1] >= Al.shape[0]:  # aggregation stalled
                break
            P = _smooth_prolongator(op, T, smoother.prec.Dinv, omega / smoother.lmax)
            Ac = _galerkin(Al, P)
            Pc = RowSplit(P.tocsr().astype(self.dtype, copy=False))
            del P, T
            Ah = Al if Al.dtype == self.dtype else Al.astype(self.dtype)
            if Ah is not Al:
                op = RowSplit(Ah)
                smoother = Chebyshev(Ah, op, degree)
            self.levels.append(_Level(op, smoother, Pc, _Transposed(Pc)))
            Al, Bl = Ac, Bc
            self.sizes.append(Al.shape[0])
            nnz.append(Al.nnz)
        self.coarse = _CoarseSolver(Al)
        self.n_levels = len(self.levels) + 1
        self.operator_complexity = float(sum(nnz) / nnz[0])
        self.shape = A.shape
        self.setup_time = time.perf_counter() - t0

    def to_backend(self, backend, finest=None) -> SmoothedAggregationAMG:
        """This preconditioner with its V-cycle on ``backend`` (a :class:`~fem.kernels.backend.
        Backend`), e.g. CuPy; the host hierarchy is not changed.

        The set-up runs on the host because its aggregation step (pyamg's strength of connection
        and standard aggregation) is a sequential graph algorithm with no GPU counterpart, and
        its cost is small next to the solve. The hierarchy then moves to the device once: every
        level's A, P and R = P^T as CSR, the block-Jacobi inverse as a block-diagonal CSR, the
        Chebyshev coefficients, and the coarse solve (see :meth:`_CoarseSolver.to_backend`). The
        cycle is then nothing but device sparse products, vector updates and one dense product;
        no transfer per cycle.

        ``finest`` is the finest-level matrix already on the device (used instead of a second
        copy when its dtype is the hierarchy's). With the NumPy backend the same code runs on
        SciPy matrices without threads, which is how the CPU tests prove the device cycle.
        """
        sparse = backend.sparse
        moved = copy.copy(self)
        moved.levels = []
        for i, lv in enumerate(self.levels):
            if i == 0 and finest is not None and finest.dtype == self.dtype:
                A = finest
            else:
                A = sparse.csr_matrix(lv.A.A.tocsr())
            P = lv.P.A.tocsr()
            prec = SparseBlockJacobi(lv.smooth.prec.Dinv, sparse)
            moved.levels.append(_Level(A, lv.smooth.on(A, prec), sparse.csr_matrix(P),
                                       sparse.csr_matrix(P.T.tocsr())))
        moved.coarse = self.coarse.to_backend(backend)
        return moved

    def _cycle(self, level: int, b):
        if level == len(self.levels):
            return self.coarse(b.astype(np.float64)).astype(b.dtype)
        lv = self.levels[level]
        x = lv.smooth(array_module(b).zeros_like(b), b, zero_guess=True)
        r = b - lv.A @ x
        x += lv.P @ self._cycle(level + 1, lv.R @ r)
        return lv.smooth(x, b)

    def matvec(self, r):
        x = self._cycle(0, r.astype(self.dtype, copy=False))
        return x.astype(np.float64, copy=False)

    __call__ = matvec

    def describe(self) -> str:
        return (f"{self.n_levels} levels {self.sizes}, operator complexity "
                f"{self.operator_complexity:.2f}")


class _CoarseSolver:
    """Direct solve on the coarsest level: dense Cholesky when small, else sparse LU; a singular
    coarse matrix (possible with unusual aggregates) falls back to the pseudo-inverse."""

    DENSE_MAX = 3000

    def __init__(self, A):
        import scipy.linalg as la

        self._cho = self._pinv = self._csc = None
        n = A.shape[0]
        if n <= self.DENSE_MAX:
            M = A.toarray().astype(np.float64)
            try:
                self._cho = la.cho_factor(M)
                self._solve = lambda b: la.cho_solve(self._cho, b)
            except la.LinAlgError:
                self._pinv = la.pinvh(M)
                self._solve = lambda b: self._pinv @ b
        else:
            import scipy.sparse.linalg as sla

            self._csc = A.tocsc().astype(np.float64)
            self._solve = sla.splu(self._csc).solve

    def __call__(self, b):
        return self._solve(b)

    def to_backend(self, backend):
        """The same solve on ``backend``: a product with the inverse (from the Cholesky factor;
        at most 3000 x 3000, and one matrix-vector product is the fastest solve on a GPU) or the
        pseudo-inverse, or else the backend's sparse LU (CuPy factorises on the host and solves
        on the device)."""
        import scipy.linalg as la

        if self._cho is not None or self._pinv is not None:
            inv = self._pinv
            if inv is None:
                inv = la.cho_solve(self._cho, np.eye(self._cho[0].shape[0]))
            inv = backend.xp.asarray(inv)
            return lambda b: inv @ b
        return backend.splinalg.splu(backend.sparse.csc_matrix(self._csc)).solve


class IncompressibleBlocks:
    """A preconditioner for a stiffness matrix K with nearly incompressible regions: their dofs
    (U) eliminated exactly, and the rest (R) preconditioned by the AMG of a compressible
    stand-in.

    Why. Smoothed aggregation builds its coarse spaces from the rigid-body modes, and a coarse
    basis function that is rigid on its aggregate changes the volume of the elements at its
    edges. Where lambda >> mu (a disc nucleus at nu 0.499, lambda / mu = 499) the coarse
    correction of a smooth, volume-keeping error then costs volumetric energy it should not (the
    coarse space locks), and the Chebyshev smoother, which damps only the stiff part, cannot
    make it up: AMG-CG on the parametric T12-L4 segment at 2 mm took 109 iterations to 1e-8,
    and 46 with its nuclei at nu 0.45 (bench/amg_segments.py).

    How. With K ordered (R, U), its block factorisation K = L diag(S, K_UU) L^T (S = K_RR -
    K_RU K_UU^-1 K_UR, the Schur complement) gives the preconditioner

        y_U = K_UU^-1 r_U;   z_R = M_RR (r_R - K_RU y_U);   z_U = y_U - K_UU^-1 K_UR z_R,

    with K_UU^-1 exact (sparse LU of each region's block; a few thousand dofs each) and S^-1
    approximated by the R rows and columns of ``M``, the AMG of a stand-in K' that differs from
    K only on U's block (the same shear moduli, lambda lowered: it does not lock). It is exact
    where M_RR = S^-1; it is symmetric positive definite whenever M is (a congruence of
    diag(M_RR, K_UU^-1)), so CG runs on K with it as with the plain AMG. What it leaves is
    where S and the stand-in's Schur complement S' differ: the stiffness of each incompressible
    region against a change of its volume, a few modes that CG resolves in a few iterations.
    Host (SciPy) matrices only.

    ``M``: the AMG of the stand-in (``.matvec``); ``K``: the true matrix; ``blocks``: disjoint
    dof index arrays, one per region."""

    def __init__(self, M, K, blocks):
        t0 = time.perf_counter()
        self.M = M
        self.blocks = [np.asarray(b, dtype=np.int64) for b in blocks if len(b)]
        self.U = np.concatenate(self.blocks) if self.blocks else np.zeros(0, np.int64)
        if len(np.unique(self.U)) != len(self.U):
            raise SolverError("the nearly incompressible blocks share dofs: give each connected "
                              "region one block")
        self._factor(K)
        self.offsets = np.cumsum([0] + [len(b) for b in self.blocks])
        self.shape = K.shape
        self.setup_time = getattr(M, "setup_time", 0.0) + time.perf_counter() - t0

    def _factor(self, K):
        """The rows of U and the exact (LU) solves of each block, from ``K``."""
        import scipy.sparse as sp
        import scipy.sparse.linalg as sla

        Kc = K.tocsr()
        self.KU = Kc[self.U]  # the rows of U
        self.KUt = self.KU.T.tocsr()  # their columns (K is symmetric)
        self.lu = []
        for b in self.blocks:
            try:
                # symmetric mode (diagonal pivots; a block of an SPD K is SPD): 0.43 s and
                # 6.0 M factor entries for an 8 256-dof disc, against 3.1 s and 11.1 M unsymmetric
                self.lu.append(sla.splu(sp.csc_matrix(Kc[b][:, b]), permc_spec="MMD_AT_PLUS_A",
                                        diag_pivot_thresh=0.0,
                                        options={"SymmetricMode": True}))
            except RuntimeError as exc:
                raise SolverError(f"a nearly incompressible block of {len(b)} dofs is singular "
                                  f"({exc}): is the region held by its neighbours?") from None

    def with_matrix(self, K):
        """The same preconditioner for another matrix of the same pattern of regions (a later
        tangent of an incremental analysis): the stand-in's AMG kept, the blocks solved exactly
        with ``K``'s. A nearly incompressible region's volumetric stiffness moves with its
        deformation and with the tissue's tangent, which the kept AMG need not follow but its
        exact solve must: on the large-deformation L4-L5 with an undrained disc (4 mm voxels,
        1 440 dofs in the block), CG took 700 iterations a solve on average with the first
        tangent's blocks kept, rising with the load (the plain AMG: 900), and 12-17 with
        each tangent's own."""
        if K.shape != self.shape:
            raise SolverError(f"the matrix has shape {K.shape}, the preconditioner {self.shape}")
        t0 = time.perf_counter()
        out = copy.copy(self)
        out._factor(K)
        out.setup_time = time.perf_counter() - t0
        return out

    def _solve_blocks(self, rU):
        zU = np.empty_like(rU)
        for lu, lo, hi in zip(self.lu, self.offsets[:-1], self.offsets[1:]):
            zU[lo:hi] = lu.solve(rU[lo:hi])
        return zU

    def matvec(self, r):
        U = self.U
        yU = self._solve_blocks(r[U])
        v = r - self.KUt @ yU  # r_R - K_RU y_U on R
        v[U] = 0.0
        z = self.M.matvec(v)
        z[U] = 0.0
        z[U] = yU - self._solve_blocks(self.KU @ z)
        return z

    __call__ = matvec

    def describe(self) -> str:
        return (f"{self.M.describe()}, on a compressible stand-in, with exact solves on "
                f"{len(self.blocks)} nearly incompressible block(s) of "
                f"{', '.join(str(len(b)) for b in self.blocks)} dofs")


def _tentative(A, B, theta: float):
    """Tentative prolongator T (BSR, R x 6 blocks) and coarse near-null space, by pyamg."""
    from pyamg.aggregation.aggregate import standard_aggregation
    from pyamg.aggregation.tentative import fit_candidates
    from pyamg.strength import symmetric_strength_of_connection

    C = symmetric_strength_of_connection(A, theta)
    AggOp = standard_aggregation(C)[0]
    T, Bc = fit_candidates(AggOp, B)
    return T, Bc


def _smooth_prolongator(op: RowSplit, T, Dinv, scale: float):
    """P = T - scale D^{-1} A T, computed on the row parts of A (threads)."""
    R = T.blocksize[0]
    T.sort_indices()

    def part(Ak, rows):
        a, b = rows[0] // R, rows[1] // R
        AT = (Ak @ T).tobsr(blocksize=T.blocksize)
        AT.sort_indices()
        brow = np.repeat(np.arange(a, b), np.diff(AT.indptr))
        AT.data[:] = np.matmul(Dinv[brow], AT.data) * scale
        return (row_block(T, a, b) - AT).tobsr(blocksize=T.blocksize)

    parts = map_parts(part, op)
    return _bsr_vstack(parts, T.blocksize, T.shape[1])


def _bsr_vstack(parts, blocksize, ncols: int):
    """Stack BSR matrices of one block size by concatenating their arrays (no COO detour)."""
    import scipy.sparse as sp

    parts = [p.tobsr(blocksize=blocksize) for p in parts]
    for p in parts:
        p.sort_indices()
    offsets = np.cumsum([0] + [p.indptr[-1] for p in parts[:-1]])
    indptr = np.concatenate([parts[0].indptr[:1]] + [p.indptr[1:] + o for p, o in zip(parts, offsets)])
    return sp.bsr_matrix((np.concatenate([p.data for p in parts]),
                          np.concatenate([p.indices for p in parts]), indptr),
                         shape=(sum(p.shape[0] for p in parts), ncols))


def _galerkin(A, P, parts: int = 8):
    """The coarse operator P^T A P, as the sum over row parts of A of P_k^T (A_k P).

    The parts run on the worker threads, a few at a time, and are summed as they come, so only a
    few slices of the large intermediate A P exist at once.
    """
    R = P.blocksize[0]
    C = P.blocksize[1]
    split = RowSplit(A, parts=parts)

    def part(item):
        Ak, (r0, r1) = item
        AP = Ak @ P
        return (row_block(P, r0 // R, r1 // R).T @ AP).tobsr(blocksize=(C, C))

    Ac = None
    for partial in map_ordered(part, list(zip(split.parts, split.rows))):
        Ac = partial if Ac is None else Ac + partial
    Ac = Ac.tobsr(blocksize=(C, C))
    Ac.sort_indices()
    return Ac
