"""Linear solvers with SciPy-shaped signatures, written against ``xp``.

* :func:`direct` -- sparse direct (SuperLU on the CPU), for small models.
* :func:`cg` -- preconditioned conjugate gradients on any backend; raises
  :class:`~fem.errors.ConvergenceError` with the residual history when it does not converge.
* :func:`rigid_body_modes` -- the near-null space handed to the AMG preconditioner
  (:class:`fem.amg.SmoothedAggregationAMG`).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

import numpy as np

from .errors import ConvergenceError, SolverError
from .kernels.backend import array_module, backend_of

logger = logging.getLogger(__name__)


@dataclass
class SolveInfo:
    """What the solver did: name, iterations, final relative residual, history and times (s)."""

    solver: str
    iterations: int = 0
    residual: float = 0.0
    residuals: list = field(default_factory=list)
    times: dict = field(default_factory=dict)
    backend: str = "numpy"
    n_dof: int = 0
    n_equations: int = 0
    precision: str = "double"
    levels: list = field(default_factory=list)  # geometric multigrid: grid shapes, fine first
    held_bytes: int = 0  # geometric multigrid: bytes its vectors and levels hold
    true_residual: float = math.nan  # ||b - A x|| / ||b|| checked after the solve
    imbalance: float = math.nan  # |resultant of loads and reactions| / forces involved

    def summary(self) -> str:
        t = ", ".join(f"{k} {v:.2f} s" for k, v in self.times.items())
        its = f", {self.iterations} iterations" if self.iterations else ""
        return (f"{self.solver} on {self.backend}{its}, relative residual {self.residual:.2e}; "
                f"{t}")


#: smallest/largest pivot ratio below which the factorised stiffness counts as singular: a hinge
#: between two hex8 gives 1e-16, a slender bar with a 10^6 stiffness contrast 8e-12
PIVOT_TOL = 1e-14
#: SuperLU's diagonal pivoting threshold (:func:`factorise`): a diagonal pivot is kept when it is
#: at least this fraction of its column's largest entry (UMFPACK's default relative pivot tolerance)
DIAG_PIVOT = 0.1


def factorise(A):
    """A sparse LU factorisation of A on the host (SuperLU; ``.solve(b)``), for :func:`direct`
    and as an exact preconditioner of nearby matrices (a secant iteration's next stiffness);
    raises SolverError if A is singular."""
    import scipy.sparse.linalg as sla

    try:
        # minimum degree on A^T + A suits the symmetric stiffness matrix far better than the
        # default COLAMD (3x less fill, 3x faster on a 20k-dof vertebral body); threshold
        # pivoting that prefers the diagonal (a row swap only where a diagonal is below 0.1 of
        # its column) keeps that ordering's fill, where SuperLU's default partial pivoting
        # (threshold 1) swaps rows of an SPD matrix and adds fill: 20 % less fill, half the
        # time of a solve with the factors (bench/direct_solver.py)
        lu = sla.splu(A.tocsc(), permc_spec="MMD_AT_PLUS_A", diag_pivot_thresh=DIAG_PIVOT,
                      options={"SymmetricMode": True})
    except RuntimeError as exc:
        raise SolverError(f"the stiffness matrix is singular ({exc}): look for elements "
                          "or parts connected by a single node or edge") from None
    pivots = np.abs(lu.U.diagonal())
    ratio = pivots.min() / max(pivots.max(), 1e-300)
    if ratio < PIVOT_TOL:
        raise SolverError(
            f"the stiffness matrix is singular (smallest/largest pivot {ratio:.1e}): a "
            "mechanism, e.g. parts joined by a single node or edge, or unsupported parts")
    return lu


def direct(A, b):
    """Solve A x = b with a sparse direct factorisation; raises SolverError if singular."""
    xp = array_module(b)
    if xp is np:
        return factored_solve(factorise(A), b)
    # cuSOLVER's sparse QR
    return _finite(backend_of(xp).splinalg.spsolve(A.tocsr(), b))


def factored_solve(lu, b):
    """x of A x = b from A's factors ``lu`` (:func:`factorise`); raises SolverError where the
    solution is not finite (a singular A)."""
    return _finite(lu.solve(b))


def _finite(x):
    xp = array_module(x)
    if not bool(xp.all(xp.isfinite(x))):
        raise SolverError("the direct solver returned non-finite values: the stiffness matrix "
                          "is singular (a mechanism in the mesh?)")
    return x


def cg(A, b, *, x0=None, rtol=1e-8, atol=0.0, maxiter=None, M=None, callback=None):
    """Preconditioned conjugate gradients for SPD ``A``; returns (x, iterations, residuals).

    Stops when ||b - A x|| <= max(rtol ||b||, atol). ``M`` is an object with ``.matvec`` (or a
    callable) applying the preconditioner. The Polak-Ribiere form of beta keeps convergence robust
    when the preconditioner is slightly variable (a float32 V-cycle). ``residuals`` holds the
    relative residual norms, starting with the initial one.
    """
    xp = array_module(b)
    n = b.shape[0]
    maxiter = maxiter if maxiter is not None else max(100, min(10 * n, 5000))
    apply_M = (M.matvec if hasattr(M, "matvec") else M) if M is not None else (lambda r: r)
    matvec = A.matvec if hasattr(A, "matvec") and not hasattr(A, "tocsr") else (lambda v: A @ v)
    x = xp.zeros_like(b) if x0 is None else xp.array(x0, dtype=b.dtype, copy=True)
    bnorm = float(xp.linalg.norm(b))
    if bnorm == 0.0:
        return xp.zeros_like(b), 0, [0.0]
    target = max(rtol * bnorm, atol)
    r = b - matvec(x) if x0 is not None else b.copy()
    rnorm = float(xp.linalg.norm(r))
    history = [rnorm / bnorm]
    if rnorm <= target:
        return x, 0, history
    z = apply_M(r)
    p = z.copy()
    rz = float(xp.dot(r, z))
    for it in range(1, maxiter + 1):
        q = matvec(p)
        pq = float(xp.dot(p, q))
        if pq <= 0.0:
            raise ConvergenceError(
                f"CG broke down at iteration {it}: the matrix is not positive definite (p.Ap = "
                f"{pq:.3e}); is the model a mechanism, or an element inverted?", history)
        alpha = rz / pq
        x += alpha * p
        r_old_z = z
        r -= alpha * q
        rnorm = float(xp.linalg.norm(r))
        history.append(rnorm / bnorm)
        if callback is not None:
            callback(x)
        if not np.isfinite(rnorm):
            raise ConvergenceError(f"CG diverged at iteration {it} (residual is not finite)",
                                   history)
        if rnorm <= target:
            return x, it, history
        z = apply_M(r)
        rz_new = float(xp.dot(r, z))
        beta = (rz_new - float(xp.dot(r, r_old_z))) / rz  # Polak-Ribiere (flexible)
        beta = max(beta, 0.0)
        rz = rz_new
        p *= beta
        p += z
    raise ConvergenceError(
        f"CG did not converge in {maxiter} iterations: relative residual {history[-1]:.3e} > "
        f"rtol {rtol:.1e} (last residuals: {', '.join(f'{h:.2e}' for h in history[-5:])}); "
        "raise maxiter, loosen rtol, or check the model for near-mechanisms", history)


def rigid_body_modes(points, xp=np, extra=()) -> np.ndarray:
    """The six rigid-body modes (3 translations, 3 rotations about the centroid) as (3n, 6).

    ``extra`` adds rows for rigid-plate pseudo-nodes: pairs (reference point) producing the
    translation node (modes evaluated at the point) and the rotation node (identity rotations).
    """
    pts = np.asarray(points, dtype=float)
    c = pts.mean(axis=0)
    rows = [rigid_modes_at(pts - c).reshape(-1, 6)]
    for ref in extra:
        rows.append(rigid_modes_at(np.asarray(ref, dtype=float)[None] - c).reshape(-1, 6))
        rot = np.zeros((3, 6))
        rot[:, 3:] = np.eye(3)
        rows.append(rot)
    return xp.asarray(np.concatenate(rows))


def rigid_modes_at(d) -> np.ndarray:
    """The six rigid-body modes (3 translations, rotations theta x d) at offsets d (n, 3) from the
    centre of rotation, as (n, 3, 6)."""
    n = len(d)
    B = np.zeros((n, 3, 6))
    B[:, 0, 0] = B[:, 1, 1] = B[:, 2, 2] = 1.0
    B[:, 1, 3], B[:, 2, 3] = -d[:, 2], d[:, 1]
    B[:, 0, 4], B[:, 2, 4] = d[:, 2], -d[:, 0]
    B[:, 0, 5], B[:, 1, 5] = -d[:, 1], d[:, 0]
    return B
