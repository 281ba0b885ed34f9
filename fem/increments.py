"""Load increments of a nonlinear static analysis on the assembled path, shared by the
material laws that need a tangent (:mod:`fem.plasticity`, :mod:`fem.finite_strain`).

Loads and prescribed displacements are scaled by a load factor that grows from 0 to 1 over the
step time (CalculiX ``*STATIC`` semantics: :class:`StaticControl`, :func:`increment_control`).
Each increment is solved by Newton-Raphson (:func:`drive`): the predictor uses the tangent of
the last converged state, each iteration the tangent at the current iterate; constraints and
rigid plates are eliminated as :func:`fem.solve` does (:func:`fem.analysis.constrain`), and the
linear solves are sparse LU or CG preconditioned by the AMG of the first tangent.

An increment that does not converge within ``max_iterations`` is halved (fixed increments too:
the halves are extra steps, after which the given end times are kept), down to the minimum
increment; then :class:`~fem.ConvergenceError` names the increment and the load factor reached.
Automatic increments grow by 1.5 after an increment that converged within 5 iterations, up to
the maximum. Equilibrium: an iteration has converged when the out-of-balance force on the free
dofs is below ``tol`` of the force through the model (applied loads plus support reactions) and
the last displacement correction is below ``utol`` of the increment's displacement (an increment
whose residual is at round-off level after one solve, a linear one, needs no second solve).
"""

from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import dataclass

import numpy as np

from . import analysis, assembly
from . import system as _system
from .amg import IncompressibleBlocks
from .errors import ConvergenceError, SolverError
from .kernels.backend import BackendError, get_backend
from .model import Model
from .nonlinear_result import Step
from .solvers import SolveInfo, cg, direct, factored_solve, factorise, rigid_body_modes

logger = logging.getLogger(__name__)

#: an increment whose relative residual is below this after its first solve was linear
LINEAR_RESIDUAL = 1e-10
#: automatic increments grow after an increment that converged within this many iterations
EASY_ITERATIONS = 5
GROW = 1.5
#: CG iterations preconditioned by the last LU factors before a direct solve factorises anew
REUSE_ITERATIONS = 40


@dataclass(frozen=True)
class StaticControl:
    """Increment control of a static step, as CalculiX's ``*STATIC`` data line: ``initial``
    increment, step time ``total``, ``minimum`` and ``maximum`` increments (defaults: the
    smaller of the initial increment and 1e-5 of the step time; the step time). ``direct``:
    fixed increments of ``initial`` (``*STATIC, DIRECT``)."""

    initial: float = 1.0
    total: float = 1.0
    minimum: float | None = None
    maximum: float | None = None
    direct: bool = False

    def __post_init__(self):
        for name in ("initial", "total", "minimum", "maximum"):
            v = getattr(self, name)
            if v is None and name in ("minimum", "maximum"):
                continue
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise SolverError(f"*STATIC {name} increment/time must be a number > 0, got {v!r}")
        if self.initial > self.total * (1 + 1e-12):
            raise SolverError(f"*STATIC initial increment {self.initial:g} exceeds the step time "
                              f"{self.total:g}")
        if self.minimum is not None and self.maximum is not None and self.minimum > self.maximum:
            raise SolverError(f"*STATIC minimum increment {self.minimum:g} exceeds the maximum "
                              f"{self.maximum:g}")

    @property
    def min_increment(self) -> float:
        return self.minimum if self.minimum is not None else min(self.initial, 1e-5 * self.total)

    @property
    def max_increment(self) -> float:
        return min(self.maximum, self.total) if self.maximum is not None else self.total

    def end_times(self) -> tuple | None:
        """The fixed end times of ``direct`` increments (None for automatic ones)."""
        if not self.direct:
            return None
        n = max(1, math.ceil(self.total / self.initial - 1e-9))
        return tuple(min(self.total, (k + 1) * self.initial) for k in range(n))


def increment_control(model: Model, increments=None) -> tuple[StaticControl, tuple | None]:
    """(control, fixed end times or None) from ``increments`` (module docstring)."""
    if increments is None:
        increments = model.metadata.get("static")
        if increments is None:
            increments = 10
    if isinstance(increments, dict):
        increments = StaticControl(**increments)
    if isinstance(increments, StaticControl):
        return increments, increments.end_times()
    if isinstance(increments, (int, np.integer)) and not isinstance(increments, bool):
        n = int(increments)
        if n < 1:
            raise SolverError(f"increments must be >= 1, got {n}")
        return StaticControl(1.0 / n, 1.0, direct=True), tuple((k + 1) / n for k in range(n))
    try:
        times = [float(t) for t in increments]
    except (TypeError, ValueError):
        raise SolverError("increments must be an int, a sequence of end times, a StaticControl "
                          f"or None, got {increments!r}") from None
    if not times or not all(math.isfinite(t) for t in times) or times[0] <= 0 or any(
            b <= a for a, b in zip(times, times[1:])):
        raise SolverError(f"increment end times must be finite, > 0 and increasing, got {times}")
    return StaticControl(times[0], times[-1], direct=True), tuple(times)


def prepare(model, *, backend: str, solver: str, rtol: float, tol: float, utol: float,
            max_iterations: int, what: str):
    """(the model, its backend) for an incremental analysis: the options checked (``what``
    names the analysis in the messages) and a voxel model turned into its assembled form."""
    if solver not in ("auto", "direct", "amg"):
        raise SolverError(f"solver must be auto, direct or amg for {what}, got {solver!r}")
    for name, v, hi in (("rtol", rtol, 1.0), ("tol", tol, 0.1), ("utol", utol, 0.5)):
        if not (0.0 < v < hi):
            raise SolverError(f"{name} must lie in (0, {hi:g}), got {v}")
    if int(max_iterations) < 2:
        raise SolverError(f"max_iterations must be >= 2, got {max_iterations}")
    try:
        be = get_backend(backend)
    except BackendError as exc:
        raise SolverError(str(exc)) from None
    if hasattr(model, "to_model") and not isinstance(model, Model):  # a VoxelModel
        model = model.to_model()
    return model, be


class IncrementalProblem:
    """What an incremental analysis of a model keeps constant: constraints, rigid plates, the
    block pattern, loads and prescribed displacements, and the linear solves. A material
    subclass provides ``_initial_state(initial)`` (a state with ``z``, ``f``, ``g`` and
    ``force_norm``), ``evaluate(z, *, tangent, predictor=False)`` -> (internal forces in the
    unknowns' space, trial state, tangent or None), ``accept(trial, z, f, g, force_norm)`` ->
    the converged state, ``result(state, react, lam, history, iterations)`` -> a
    :class:`~fem.Result` and ``n_failed(result)`` (the elements the step reports as failed)."""

    def __init__(self, model: Model, be, *, solver, rtol, initial):
        xp = be.xp
        self.model, self.be, self.xp, self.rtol = model, be, xp, rtol
        model.check_materials()
        assembly.check_geometry(model, xp, xp.asarray(model.points))
        self.sysm = _system.compile_conditions(model)
        _system.check_constraints(model, self.sysm)
        self.n3 = 3 * model.n_nodes
        self.pattern = assembly.build_pattern(model, xp)
        self.fixed = np.asarray(self.sysm.fixed_dofs, dtype=np.int64)
        self.fixed_x = xp.asarray(self.fixed)
        dead = [3 * self.sysm.slave_nodes[:, None] + np.arange(3),
                3 * np.nonzero(~self.sysm.active_nodes)[0][:, None] + np.arange(3)]
        free = np.ones(self.sysm.n_dof, dtype=bool)
        free[self.fixed] = False
        free[np.concatenate([d.ravel() for d in dead]).astype(np.int64)] = False
        self.free = xp.asarray(free)
        self.T = analysis.coupling_matrix(model, self.sysm, be) if self.sysm.plates else None
        self.M = None
        #: direct solves: new LU factorisations, and solves that reused the last ones
        self.factorisations = self.reused = 0
        #: AMG-CG solves: the iterations of each
        self.cg_iterations: list[int] = []
        self.solver = solver
        self.n_eq = self.sysm.n_dof
        self.solver_name = "direct" if solver == "direct" or (
            solver == "auto" and self.n_eq <= analysis.DIRECT_MAX_DOF) else "amg"
        # end values of this analysis, and where it starts from
        self.f1 = xp.asarray(self.sysm.f)
        self.g1 = xp.asarray(self.sysm.fixed_values, dtype=float)
        self.state = self._initial_state(initial)
        self.g0 = self.state.z[self.fixed_x] if len(self.fixed) else xp.zeros(0)
        self.f0 = self.state.f
        dg = self.be.to_host(self.g1 - self.g0)
        self.direction = dg / np.abs(dg).max() if len(dg) and np.abs(dg).max() > 0 else None
        if self.direction is None:
            df = self.be.to_host(self.f1 - self.f0)
            res = df[:self.n3].reshape(-1, 3).sum(axis=0)
            for p in self.sysm.plates:
                res = res + df[p.first_dof:p.first_dof + 3]
            nrm = float(np.linalg.norm(res))
            self.load_dir = res / nrm if nrm > 0 else np.zeros(3)

    def solver_info(self) -> dict:
        """What the linear solves did, for the analysis' ``info``: the direct path's
        factorisations (new and reused), the AMG path's preconditioner and CG iterations."""
        out = {"factorisations": self.factorisations, "reused_factorisations": self.reused}
        if self.M is not None:
            out["preconditioner"] = self.M.describe()
            out["cg_iterations"] = list(self.cg_iterations)
        return out

    def result_info(self, history, iterations) -> SolveInfo:
        """The :class:`~fem.solvers.SolveInfo` of a converged increment."""
        return SolveInfo(solver=self.solver_name, backend=self.be.name, n_dof=self.model.n_dof,
                         n_equations=self.n_eq, residual=history[-1], iterations=iterations,
                         residuals=list(history))

    # ------------------------------------------------------------------ kinematics

    def displacement(self, z):
        """Mesh displacements (3n,) of the unknowns z."""
        u = self.T @ z if self.T is not None else z
        return u[:self.n3]

    def to_z(self, v_mesh):
        """A mesh-dof vector (forces) in the unknowns' space: T^T v."""
        return self.T.T @ v_mesh if self.T is not None else v_mesh

    # ------------------------------------------------------------------ linear solves

    def solve(self, K, r_full, dg):
        """The correction dz of K dz = r with dz = dg on the prescribed dofs."""
        xp = self.xp
        sysm = dataclasses.replace(self.sysm, f=r_full, fixed_values=dg)
        lin = analysis.constrain(self.model, sysm, K, self.be)
        if self.solver_name == "direct" and self.be.name == "numpy":
            dz = self._direct_reusing(lin)
        elif self.solver_name == "direct":
            dz = direct(lin.K, lin.rhs)
        else:
            if self.M is None:  # the AMG of the first (elastic) tangent serves every iteration
                B = rigid_body_modes(self.model.points, np,
                                     [p.reference for p in self.sysm.plates])
                # where the model has nearly incompressible regions (an undrained disc), on
                # NumPy: the AMG of the first tangent's compressible stand-in, and their blocks
                # solved exactly with each tangent's own (IncompressibleBlocks.with_matrix)
                self.M = analysis.amg_preconditioner(lin.K, B, self.be, model=self.model,
                                                     sysm=self.sysm, T=lin.T)
            elif isinstance(self.M, IncompressibleBlocks):
                self.M = self.M.with_matrix(lin.K)
            op = lin.K
            if self.be.name == "numpy":
                from .parallel import RowSplit

                op = RowSplit(lin.K)
            dz, its, _ = cg(op, lin.rhs, rtol=self.rtol, M=self.M)
            self.cg_iterations.append(its)
        if len(self.fixed):
            dz[self.fixed_x] = xp.asarray(dg, dtype=dz.dtype)
        return dz

    def _direct_reusing(self, lin):
        """The direct solve on the host, reusing the last LU factors: CG preconditioned by them
        (the tangents of successive iterations differ little: 5-20 iterations at 17 ms each on
        a 12 000-equation disc, against 2.2 s for a new factorisation), to ``rtol`` of the
        true residual; a new factorisation where CG does not get there in
        :data:`REUSE_ITERATIONS` iterations (a tangent far from the factored one, or one that
        is not positive definite), and for the next solve after one that needed more than half
        of them."""
        lu = getattr(self, "_lu", None)
        if lu is not None and lu.shape == lin.K.shape:
            try:
                dz, n, _ = cg(lin.K, lin.rhs, rtol=self.rtol, M=lu.solve,
                              maxiter=REUSE_ITERATIONS)
            except ConvergenceError:
                dz = None
            if dz is not None and float(np.linalg.norm(lin.rhs - lin.K @ dz)) <= \
                    2.0 * self.rtol * float(np.linalg.norm(lin.rhs)):
                if n > REUSE_ITERATIONS // 2:
                    self._lu = None
                self.reused += 1
                return dz
        self._lu = factorise(lin.K)
        self.factorisations += 1
        return factored_solve(self._lu, lin.rhs)

    # ------------------------------------------------------------------ loads

    def loads(self, lam):
        """(applied load vector (all dofs), prescribed values) at load factor ``lam``."""
        return self.f0 + lam * (self.f1 - self.f0), self.g0 + lam * (self.g1 - self.g0)

    def residual(self, fint_z, f_full):
        """Out-of-balance force (unknowns' space; zero on prescribed and dead dofs), its norm
        relative to the force through the model, and the reactions at the prescribed dofs."""
        xp = self.xp
        fz = self.to_z(f_full[:self.n3]) if self.sysm.plates else f_full
        if self.sysm.plates:
            fz = fz.copy()
            fz[self.n3:] += f_full[self.n3:]
        r = fz - fint_z
        react = -r[self.fixed_x] if len(self.fixed) else xp.zeros(0)
        r = xp.where(self.free, r, 0.0)
        # at a state of (nearly) no force, e.g. unloaded to zero, compare with the largest
        # force so far (CalculiX and Abaqus use a time-averaged force likewise)
        scale = max(float(xp.linalg.norm(fz)) + float(xp.linalg.norm(react)),
                    self.state.force_norm, self.internal_force_scale())
        return r, float(xp.linalg.norm(r)) / max(scale, 1e-300), react

    def internal_force_scale(self) -> float:
        """A force (N) for the residual's scale where the load is internal (a swelling that
        no support resists has neither loads nor reactions): 0 unless a material says."""
        return 0.0

    def force(self, react, f_full) -> float:
        if self.direction is not None:
            return float(self.be.to_host(react) @ self.direction)
        f = self.be.to_host(f_full)
        res = f[:self.n3].reshape(-1, 3).sum(axis=0)
        for p in self.sysm.plates:
            res = res + f[p.first_dof:p.first_dof + 3]
        return float(res @ self.load_dir)


def drive(prob: IncrementalProblem, control: StaticControl, fixed_times, *, tol, utol,
          max_iterations, progress):
    """The increment loop: Newton-Raphson per increment, cut-backs and growth."""
    total = control.total
    dmin, dmax = control.min_increment, control.max_increment
    t = 0.0
    dt = control.initial if fixed_times is None else math.inf
    target_i = 0
    steps: list[Step] = []
    histories: list[list] = []
    n_failed = 0
    eps_t = 1e-12 * total
    while t < total - eps_t:
        if fixed_times is not None:
            while fixed_times[target_i] <= t + eps_t:
                target_i += 1
            dt_try = min(dt, fixed_times[target_i] - t)
        else:
            dt_try = min(dt, dmax, total - t)
        if total - (t + dt_try) < eps_t:
            dt_try = total - t
        ok, out = _increment(prob, t, t + dt_try, total, tol=tol, utol=utol,
                             max_iterations=max_iterations)
        if not ok:
            n_failed += 1
            dt = 0.5 * dt_try
            logger.info("increment %d (step time %.6g -> %.6g) did not converge (%s); halved",
                        len(steps) + 1, t, t + dt_try, out)
            if dt < dmin * (1 - 1e-9):
                raise ConvergenceError(
                    f"increment {len(steps) + 1} did not converge ({out}) and cannot be cut back "
                    f"below the minimum increment {dmin:g}: load factor reached {t / total:.6g} "
                    f"(step time {t:.6g} of {total:g})", residuals=out_residuals(out))
            continue
        t += dt_try
        iterations, history, result, force, z = out
        histories.append(history)
        step = Step(len(steps) + 1, t / total, t, force, iterations, history[-1], result,
                    n_failed=prob.n_failed(result),
                    linear_solves=iterations)
        steps.append(step)
        logger.info("increment %d: step time %.6g, load factor %.6g, force %.6g N, %d "
                    "iterations, residual %.2e, %d elements failed", step.index, t, t / total,
                    force, iterations, history[-1], step.n_failed)
        if progress is not None:
            progress(step)
        if fixed_times is not None:
            if abs(t - fixed_times[target_i]) <= eps_t:
                dt = math.inf  # back to the given increments after a cut-back
        elif iterations <= EASY_ITERATIONS:
            dt = min(dt_try * GROW, dmax)
        else:
            dt = dt_try
    return steps, histories


def out_residuals(out) -> list:
    return list(out.history) if isinstance(out, _Failure) else []


@dataclass
class _Failure:
    why: str
    history: list

    def __str__(self) -> str:
        return self.why


def _increment(prob: IncrementalProblem, t_start, t_end, total, *, tol, utol,
               max_iterations):
    """One Newton-Raphson increment to step time ``t_end``; (True, (iterations, residual
    history, result, force, z)) or (False, _Failure)."""
    xp = prob.xp
    lam = t_end / total
    f_full, g = prob.loads(lam)
    st = prob.state
    z_n = st.z
    history: list[float] = []
    try:
        fint, _, K = prob.evaluate(z_n, tangent=True, predictor=True)
        r, _, _ = prob.residual(fint, f_full)
        dg = g - z_n[prob.fixed_x] if len(prob.fixed) else xp.zeros(0)
        # r is already in the unknowns' space, zero on slave dofs, where constrain's T^T is
        # the identity: it passes as the 'load vector' unchanged
        dz = prob.solve(K, r, dg)
        z = z_n + dz
        for it in range(1, max_iterations + 1):
            fint, trial, K = prob.evaluate(z, tangent=False)
            r, res, react = prob.residual(fint, f_full)
            history.append(res)
            if not math.isfinite(res):
                return False, _Failure("the residual is not finite", history)
            du = float(xp.linalg.norm(z - z_n))
            corr = float(xp.linalg.norm(dz)) / max(du, 1e-300)  # 1 after the predictor
            if res <= tol and (corr <= utol or res <= LINEAR_RESIDUAL):
                break
            if it == max_iterations:
                return False, _Failure(f"relative residual {res:.2e} after {it} iterations",
                                       history)
            if it > 2 and res > 1e3 * history[0]:
                return False, _Failure(f"diverging: relative residual {res:.2e}", history)
            _, _, K = prob.evaluate(z, tangent=True)
            dz = prob.solve(K, r, xp.zeros(len(prob.fixed)))
            z = z + dz
    except SolverError as exc:  # a singular tangent (a collapse mechanism at this load)
        return False, _Failure(str(exc).split(":")[0], history)
    fz = prob.to_z(f_full[:prob.n3])
    norm = float(xp.linalg.norm(fz)) + float(xp.linalg.norm(react))
    state = prob.accept(trial, z, f_full, g, max(norm, st.force_norm))
    prob.state = state
    result = prob.result(state, react, lam, history, it)
    return True, (it, history, result, prob.force(react, f_full), z)
