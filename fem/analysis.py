"""``fem.solve`` (this module is fem.analysis): checks, assembly, constraints, linear solve and the :class:`~fem.result.Result`.

Constraints are applied without copying the stiffness matrix:

* rigid plates eliminate the coupled (slave) dofs through ``u = T z``, where the plate's six dofs
  join the unknowns (only when a model has plates);
* prescribed dofs are eliminated symmetrically in place: their rows and columns are zeroed, the
  diagonal set to the mean stiffness diagonal and the right-hand side corrected, so the system
  stays symmetric positive definite for CG and AMG.

The rows of the constrained dofs are kept aside before that, so reactions ``K u - f`` at the
supports come from the unmodified matrix.
"""

from __future__ import annotations

import logging
import math
import time
import warnings
from dataclasses import dataclass

import numpy as np

from . import assembly
from . import grid as fem_grid
from . import system as _system
from .amg import IncompressibleBlocks, SmoothedAggregationAMG
from .arrays import row_of_entries, unique_sorted
from .errors import BoundaryConditionError, ConvergenceError, SlowConvergence, SolverError
from .kernels.backend import BackendError, get_backend
from .model import BBAR_NU_THRESHOLD, Model
from .parallel import RowSplit
from .parts import LIGAMENT, regions_of
from .result import Result
from .solvers import SolveInfo, cg, direct, rigid_body_modes

logger = logging.getLogger(__name__)

SOLVERS = ("auto", "direct", "amg", "cg", "gmg")
#: with solver="auto", models up to this many dofs are solved directly, larger ones by AMG-CG
DIRECT_MAX_DOF = 5_000
#: with solver="auto", a voxel grid of at most this many dofs whose multigrid converges slowly
#: (fem.gmg.PATIENCE: a thin stiff CT shell) is solved by AMG-CG on its hex8 view instead; the
#: assembled path holds about 2 kB per dof (1.8 GB at 1M, bench/README.md), so larger grids
#: stay on the matrix-free multigrid
AUTO_AMG_MAX_DOF = 2_000_000


def gives_up_slow_multigrid(solver: str, n_dof: int) -> bool:
    """Whether a multigrid solve of ``n_dof`` dofs may give up for AMG (``patience``): only
    under solver="auto", and only where the assembled path fits (:data:`AUTO_AMG_MAX_DOF`)."""
    return solver == "auto" and n_dof <= AUTO_AMG_MAX_DOF


def solve(model: Model, *, backend: str = "auto", solver: str = "auto", rtol: float = 1e-8,
          atol: float = 0.0, maxiter: int | None = None, precision: str = "double",
          callback=None) -> Result:
    """Solve the linear static problem of ``model`` (mm, N, MPa); returns a :class:`Result`.

    ``solver``: "direct" (sparse LU), "amg" (CG with a smoothed-aggregation AMG preconditioner),
    "gmg" (matrix-free geometric-multigrid CG, for hex8 models whose elements are the voxels of
    a regular grid: :mod:`fem.voxel`), "cg" (Jacobi-preconditioned CG, for tests) or "auto"
    (direct up to 5 000 equations; above that gmg for voxel grids without rigid plates, else amg:
    SuperLU fill-in grows fast on 3-D meshes, AMG-CG is faster from a few thousand dofs on; a
    grid of at most :data:`AUTO_AMG_MAX_DOF` dofs on which the multigrid's first 30 iterations
    project over 100 more, such as a CT model's thin stiff cortex, is handed to amg).
    ``model`` may also be a :class:`fem.voxel.VoxelModel`.
    ``rtol``/``atol``/``maxiter`` control the iterative solvers; ``precision="mixed"`` keeps the
    AMG hierarchy in float32; ``callback(x)`` is called after every CG iteration. Raises a
    :class:`~fem.ModelError` subclass for bad input.
    """
    if not isinstance(model, Model) and hasattr(model, "to_model"):
        # a fem.voxel.VoxelModel solves itself, on its grid where the multigrid serves
        return model.solve(backend=backend, solver=solver, rtol=rtol, atol=atol,
                           maxiter=maxiter, precision=precision, callback=callback)
    be = backend_for(solver, rtol, backend)
    xp = be.xp
    times: dict[str, float] = {}
    t0 = time.perf_counter()

    model.check_materials()
    grid, why = None, ""
    if solver == "gmg" or (solver == "auto" and 3 * model.n_nodes > DIRECT_MAX_DOF):
        grid = model.metadata.get("voxel_grid")
        if grid is None:
            grid, why = fem_grid.grid_of(model)
    if grid is None:  # voxels are boxes by construction: nothing to check
        assembly.check_geometry(model, xp, xp.asarray(model.points))
    sysm = _system.compile_conditions(model)
    _system.check_constraints(model, sysm)
    check_magnitudes(model, sysm)
    times["checks"] = time.perf_counter() - t0

    _warn_locking_tets(model)
    _warn_ill_conditioning(model)
    _warn_bare_ligaments(model)
    if model.hex8_formulation == "auto":
        n_bbar = int(model.bbar_mask().sum())
        if n_bbar:
            warn_bbar(n_bbar, stacklevel=3)

    if solver in ("auto", "gmg"):
        if grid is not None and sysm.plates:
            grid, why = None, "it has rigid plates"
            assembly.check_geometry(model, xp, xp.asarray(model.points))
        if grid is not None:
            result = _solve_voxel(model, grid, sysm, be, times, t0, rtol=rtol, atol=atol,
                                  maxiter=maxiter, precision=precision, callback=callback,
                                  patience=gives_up_slow_multigrid(solver, model.n_dof))
            if result is not None:
                return result
            grid = None  # "auto" gave up on the multigrid: the assembled path below
        if solver == "gmg":
            raise SolverError(f"solver 'gmg' needs a hex8 model whose elements are the voxels of "
                              f"a regular grid, and this one is not: {why}")

    t = time.perf_counter()
    pattern, data = assembly.assemble_stiffness(model, be)
    K = assembly.to_matrix(pattern, data, be)
    del pattern, data  # the element positions are not needed any more
    times["assembly"] = time.perf_counter() - t

    t = time.perf_counter()
    lin = constrain(model, sysm, K, be)
    del K
    times["constraints"] = time.perf_counter() - t

    name = solver
    if solver == "auto":
        name = "direct" if lin.n_eq <= DIRECT_MAX_DOF else "amg"
    info = SolveInfo(solver=name, backend=be.name, n_dof=model.n_dof, n_equations=lin.n_eq,
                     precision=precision if name == "amg" else "double")
    z = _linear_solve(name, lin, model, sysm, be, info, times, rtol=rtol, atol=atol,
                      maxiter=maxiter, precision=precision, callback=callback)
    if len(sysm.fixed_dofs):  # exactly the prescribed values, not to the solver's tolerance
        z[xp.asarray(sysm.fixed_dofs)] = xp.asarray(sysm.fixed_values, dtype=z.dtype)

    t = time.perf_counter()
    n3 = 3 * model.n_nodes
    u = (lin.T @ z if lin.T is not None else z)[:n3].reshape(-1, 3)
    fixed = xp.asarray(sysm.fixed_dofs)
    r_fixed = lin.K_rows @ z - lin.f[fixed] if len(sysm.fixed_dofs) else xp.zeros(0)
    bnorm = float(xp.linalg.norm(lin.rhs))
    true_res = float(xp.linalg.norm(lin.rhs - lin.K @ z)) / bnorm if bnorm > 0 else 0.0
    result = Result(model, u, backend=be, system=sysm, reaction_dofs=sysm.fixed_dofs,
                    reaction_values=r_fixed, plate_dofs=z[n3:] if lin.T is not None else None,
                    info=info)
    verify_answer(result, true_res, rtol=rtol)
    times["reactions"] = time.perf_counter() - t
    info.times.update(times)
    info.times["total"] = time.perf_counter() - t0
    logger.info("solved %d dofs: %s", model.n_dof, info.summary())
    return result


def backend_for(solver: str, rtol: float, backend: str):
    """The :class:`~fem.kernels.backend.Backend` of a solve, after checking the solver's name
    and ``rtol`` (a :class:`~fem.SolverError` for either, or for an unavailable backend)."""
    if solver not in SOLVERS:
        raise SolverError(f"unknown solver {solver!r}: choose one of {', '.join(SOLVERS)}")
    if not (0.0 < rtol < 1.0):
        raise SolverError(f"rtol must lie in (0, 1), got {rtol}")
    try:
        return get_backend(backend)
    except BackendError as exc:
        raise SolverError(str(exc)) from None


def warn_bbar(n_bbar: int, *, stacklevel: int) -> None:
    """Say that ``n_bbar`` hex8 elements use B-bar by default (nu >= BBAR_NU_THRESHOLD, or
    orthotropic and as nearly incompressible: :meth:`fem.Model.bbar_mask`)."""
    warnings.warn(
        f"{n_bbar} hex8 element(s) with nu >= {BBAR_NU_THRESHOLD} (or orthotropic and as nearly "
        "incompressible) use the B-bar "
        "formulation, which does not lock (CalculiX's C3D8 does; "
        "hex8_formulation='full' reproduces it)", stacklevel=stacklevel)


def _warn_locking_tets(model) -> None:
    """tet4 locks at nu >= 0.45 (one point, linear displacement: a nearly incompressible region
    cannot deform; a cantilever 86 x too stiff, nucleus pressures of both signs at nu 0.4999):
    say so. (tet10 does not lock; its pressure oscillates between neighbours, which the README
    states, but its displacements and mean pressures hold: no warning on every tet10 disc.)"""
    for b in model.blocks:
        if b.type != "tet4":
            continue
        nu = np.asarray(model.nu[b.start:b.stop])
        n = int((nu >= BBAR_NU_THRESHOLD).sum())
        if n:
            warnings.warn(
                f"{n} tet4 element(s) with nu >= {BBAR_NU_THRESHOLD} (largest "
                f"{float(nu.max()):.4g}): tet4 locks for nearly incompressible material (far "
                "too stiff, pressures of either sign); mesh such regions (a disc nucleus) with "
                "hex8, which uses B-bar there, or tet10", stacklevel=3)


def _solve_voxel(model, grid, sysm, be, times, t0, *, rtol, atol, maxiter, precision, callback,
                 patience=False):
    """The matrix-free multigrid path of :func:`solve` for models on a regular voxel grid; None
    where ``patience`` gave up on it (:class:`~fem.errors.SlowConvergence`)."""
    info = SolveInfo(solver="gmg", backend=be.name, n_dof=model.n_dof,
                     n_equations=model.n_dof - len(sysm.fixed_dofs), precision=precision)
    try:
        u, r_fixed = fem_grid.solve_on_grid(model, grid, sysm, be, rtol=rtol, atol=atol,
                                         maxiter=maxiter, precision=precision,
                                         callback=callback, info=info, patience=patience)
    except SlowConvergence as exc:
        logger.info("%s: solver 'auto' takes the assembled AMG path instead", exc)
        return None
    except ConvergenceError as exc:
        if precision != "mixed":
            raise
        # float32 cannot resolve very ill-conditioned models (a thin stiff shell on a soft
        # core): say so and solve again in float64 rather than give up
        warnings.warn(f"mixed precision did not converge ({exc}); solving again in float64",
                      stacklevel=3)
        info = SolveInfo(solver="gmg", backend=be.name, n_dof=model.n_dof,
                         n_equations=info.n_equations, precision="double")
        u, r_fixed = fem_grid.solve_on_grid(model, grid, sysm, be, rtol=rtol, atol=atol,
                                         maxiter=maxiter, precision="double",
                                         callback=callback, info=info)
    result = Result(model, u, backend=be, system=sysm, reaction_dofs=sysm.fixed_dofs,
                    reaction_values=r_fixed, info=info)
    verify_answer(result, info.true_residual, rtol=rtol)
    info.times.update(times)
    info.times["total"] = time.perf_counter() - t0
    logger.info("solved %d dofs: %s", model.n_dof, info.summary())
    return result


#: the true relative residual of a solve may exceed the iterative solver's tolerance by this
#: factor (CG updates its residual recursively, which drifts from b - A x by rounding) before the
#: answer is refused; a direct solve is held to max(rtol, DIRECT_RESIDUAL)
RESIDUAL_SLACK = 10.0
DIRECT_RESIDUAL = 1e-10
#: the resultant of the reactions and the loads must vanish to this fraction of the forces
#: involved (1-norm), or RESIDUAL_SLACK x rtol x sqrt(equations) where that is larger (the
#: resultant is the sum of the free dofs' residuals)
EQUILIBRIUM_TOL = 1e-6


#: loads (N), prescribed displacements and coordinates (mm) and moduli (MPa) must lie within
#: these magnitudes (zero allowed): beyond them the squares in norms and energies overflow or
#: underflow double precision (1e308 / 1e-308), and a solver's tolerances lose their meaning
MAGNITUDE_MAX = 1e100
MAGNITUDE_MIN = 1e-100


#: a modulus contrast (largest / smallest modulus of the model's elements) above this is warned
#: about: the stiffness matrix's condition number grows with it, so an iterative solve needs
#: more iterations and the displacement of the soft part is resolved only to about rtol x the
#: contrast relative to the stiff part's (the answer is still verified against rtol)
CONTRAST_WARNING = 1e6


def _warn_bare_ligaments(model) -> None:
    """Say so where a model's ligament regions (:mod:`fem.ligaments`) are their isotropic ground
    alone: a linear solve does not give them their fibres, the fibre solve does."""
    names = regions_of(model, LIGAMENT)
    if names and not model.orthotropic_mask()[np.concatenate(
            [model.regions[n] for n in names])].any():
        warnings.warn(f"the model's ligaments ({names[0]}, ...) are solved as their soft ground "
                      "alone: their tension-only fibres come with fem.solve_disc (or "
                      "fem.fibres.solve_fibres with fem.ligaments.ligament_fibres)",
                      stacklevel=3)


def _warn_ill_conditioning(model) -> None:
    """Warn when the moduli span more than :data:`CONTRAST_WARNING` (a few soft elements in a
    stiff model, a near-rigid part, or a modulus in the wrong units), naming the extremes."""
    # every modulus with the element it belongs to (an orthotropic element has six)
    ortho = np.nonzero(model.orthotropic_mask())[0]
    E = np.concatenate([np.asarray(model.E, dtype=float), _ortho_moduli(model).ravel()])
    owner = np.concatenate([np.arange(len(model.E)), np.repeat(ortho, 6)])
    ok = np.isfinite(E) & (E > 0)
    E, owner = E[ok], owner[ok]
    if not len(E):
        return
    i_lo, i_hi = int(np.argmin(E)), int(np.argmax(E))

    def where(i):
        code = int(model.element_region[i]) if len(model.element_region) else -1
        name = model.region_names[code] if 0 <= code < len(model.region_names) else None
        return f"element {int(model.element_ids[i])}" + (f" of region {name!r}" if name else "")

    warn_contrast(float(E[i_lo]), float(E[i_hi]), lambda: where(owner[i_lo]),
                  lambda: where(owner[i_hi]), stacklevel=4)


def warn_contrast(lo: float, hi: float, where_lo, where_hi, *, stacklevel: int) -> None:
    """Warn when the largest modulus ``hi`` exceeds :data:`CONTRAST_WARNING` x the smallest
    ``lo`` (MPa); ``where_lo`` / ``where_hi`` name where they are (strings, or functions that
    give them, called only for the warning)."""
    if hi <= CONTRAST_WARNING * lo:
        return
    where_lo = where_lo() if callable(where_lo) else where_lo
    where_hi = where_hi() if callable(where_hi) else where_hi
    warnings.warn(
        f"the moduli span {hi / lo:.2g} (from {lo:.3g} MPa at {where_lo} to {hi:.3g} "
        f"MPa at {where_hi}): the system is ill-conditioned, so iterative solves take "
        "longer and the soft part's displacements are resolved only to about rtol x that "
        "ratio; check the units, or model a near-rigid part with a rigid plate or fixed nodes",
        stacklevel=stacklevel)


def check_magnitudes(model, sysm) -> None:
    """Refuse inputs whose magnitudes double precision cannot carry through a solve (the
    tolerances are relative, so any units within 1e-100..1e100 work; say which input is out)."""
    for what, unit, values in (
            ("load", "N", np.asarray(sysm.f, dtype=float)),
            ("prescribed displacement", "mm", np.asarray(sysm.fixed_values, dtype=float)),
            ("node coordinate", "mm", np.asarray(model.points, dtype=float)),
            ("Young's modulus", "MPa", np.asarray(model.E, dtype=float)),
            ("orthotropic modulus", "MPa", _ortho_moduli(model))):
        check_magnitude(what, unit, values)


def check_magnitude(what: str, unit: str, values) -> None:
    """Refuse ``values`` (host array) whose non-zero finite magnitudes leave
    MAGNITUDE_MIN..MAGNITUDE_MAX, naming the input (``what``, ``unit``)."""
    a = np.abs(values[np.isfinite(values)]).ravel()
    nz = a[a > 0]
    if not len(nz):
        return
    big, small = float(nz.max()), float(nz.min())
    if big > MAGNITUDE_MAX or small < MAGNITUDE_MIN:
        bad = big if big > MAGNITUDE_MAX else small
        raise BoundaryConditionError(
            f"a {what} of {bad:.3g} {unit} is outside what a solve in double precision can "
            f"carry ({MAGNITUDE_MIN:g}..{MAGNITUDE_MAX:g} in magnitude; zero is fine): use "
            "units that bring it into range (mm, N, MPa suit bone)")


def _ortho_moduli(model) -> np.ndarray:
    """E1, E2, E3, G12, G13, G23 of orthotropic elements (MPa; empty without any)."""
    ortho = getattr(model, "ortho", None)
    if ortho is None or not model.orthotropic_mask().any():
        return np.zeros(0)
    return np.asarray(ortho, dtype=float)[model.orthotropic_mask()][:, [0, 1, 2, 6, 7, 8]]


def verify_answer(result, true_res: float, *, rtol: float) -> None:
    """Refuse an answer that is not one: non-finite displacements or reactions, a true relative
    residual above the tolerance the solver was asked for, or reactions that do not balance the
    loads (:meth:`Result.balance`). Records the true residual and the imbalance in
    ``result.info``."""
    model, sysm, info, xp = result.model, result.system, result.info, result.xp
    u = result.displacement
    bad = ~xp.all(xp.isfinite(u), axis=1)
    if bool(xp.any(bad)):
        i = int(xp.nonzero(bad)[0][0])
        f = np.asarray(sysm.f)
        raise SolverError(
            f"the displacement is not finite at node {model.node_ids[i]} "
            f"({int(bad.sum())} node(s) in all): the loads (largest {np.abs(f).max():.3g} N) or "
            "the moduli overflow double precision, or the model is a mechanism; use units that "
            "keep loads and moduli within about 1e-100..1e100")
    f_free = np.array(sysm.f, dtype=float)
    f_free[np.asarray(sysm.fixed_dofs, dtype=np.int64)] = 0.0
    check_moved_and_finite(bool(xp.any(u != 0.0)), np.any(f_free != 0.0)
                           or np.any(np.asarray(sysm.fixed_values) != 0.0),
                           result.reaction_values)
    resultant, scale = result.balance()
    # a model moved rigidly by its prescribed displacements carries (almost) no force: judge
    # its rounding-level resultant against the force that straining it by g / L would take
    g = np.abs(np.asarray(sysm.fixed_values, dtype=float))
    if len(g) and g.max() > 0.0:
        L = float(np.max(np.ptp(model.points, axis=0))) or 1.0
        scale = max(scale, float(np.max(model.E)) * L * float(g.max()))
    judge_answer(info, true_res, resultant, scale, rtol=rtol)


def check_moved_and_finite(moved: bool, loaded: bool, reactions) -> None:
    """Refuse an answer that did not move under loads or prescribed displacements
    (``loaded``), or whose reactions are not finite: the checks of :func:`verify_answer` that
    every path (assembled or voxel grid) shares."""
    if not moved and loaded:
        raise SolverError("the solver returned zero displacement everywhere for non-zero loads "
                          "or prescribed displacements: the answer underflowed; use other units")
    if not np.isfinite(reactions).all():
        raise SolverError("the reactions are not finite: the loads or moduli overflow double "
                          "precision; use smaller units")


def judge_answer(info, true_res: float, resultant, scale: float, *, rtol: float) -> None:
    """The last checks of :func:`verify_answer`, on any path: the true relative residual
    ``true_res`` within what the solver was asked for, and the resultant (N) of reactions and
    loads small against ``scale`` (N: the forces involved). Records both in ``info``."""
    info.true_residual = true_res
    limit = max(rtol, DIRECT_RESIDUAL) if info.solver == "direct" else RESIDUAL_SLACK * rtol
    if not (true_res <= limit):
        raise ConvergenceError(
            f"the {info.solver} solve returned an answer that does not satisfy the equations: "
            f"true relative residual {true_res:.2e} > {limit:.1e}. The stiffness matrix is "
            "singular or nearly so: a mechanism (parts joined by a node or an edge, a chain of "
            "elements that can fold), or moduli spanning too many orders of magnitude",
            [true_res])
    if scale == 0.0:
        info.imbalance = 0.0
        return
    imbalance = float(np.linalg.norm(resultant)) / scale
    info.imbalance = imbalance
    n_eq = max(int(info.n_equations or 1), 1)
    tol = max(EQUILIBRIUM_TOL, RESIDUAL_SLACK * rtol * math.sqrt(n_eq))
    if not (imbalance <= tol):
        raise ConvergenceError(
            f"the reactions do not balance the loads: resultant {resultant} N is "
            f"{imbalance:.2e} of the forces involved (> {tol:.1e}); the answer is not an "
            "equilibrium (a mechanism, or a solver that stopped early)", [true_res])


@dataclass
class Constrained:
    """The system after the supports: K z = rhs; u = T z (T None without plates); the load
    vector f and the unmodified rows of the constrained dofs, for the reactions."""

    K: object
    rhs: object
    f: object
    K_rows: object
    T: object

    @property
    def n_eq(self) -> int:
        return self.K.shape[0]


def constrain(model: Model, sysm, K, be) -> Constrained:
    """Eliminate rigid-plate slave dofs (through T) and prescribed dofs (in place).

    ``sysm`` (:class:`fem.system.System`) gives the load vector ``f`` (all dofs, plates'
    included) and the prescribed values; the nonlinear solvers pass a residual and a
    displacement correction in their place (:mod:`fem.plasticity`). K is modified in place."""
    xp = be.xp
    f = xp.asarray(sysm.f)
    T = coupling_matrix(model, sysm, be) if sysm.plates else None
    if T is not None:
        block = K.format == "bsr"
        K = T.T @ K.tocsr() @ T
        # keep a stored diagonal on the eliminated (slave) dofs, whose rows are now empty
        K = K + be.sparse.diags(xp.asarray(_dof_mask(sysm.n_dof, dead_dofs(model, sysm)),
                                           dtype=float))
        K = K.tobsr(blocksize=(3, 3)) if block else K.tocsr()
        K.sort_indices()
        # loads on coupled nodes move to the plate; the plate's own force and moment stay
        n3 = 3 * model.n_nodes
        f_plate = f[n3:]
        f = T.T @ f[:n3]
        f[n3:] += f_plate
    fixed = xp.asarray(sysm.fixed_dofs)
    g = xp.zeros(K.shape[0])
    g[fixed] = xp.asarray(sysm.fixed_values)
    K_rows = _rows(K, sysm.fixed_dofs, be)
    rhs = f - K @ g
    mask = xp.asarray(eliminated(model, sysm, K.shape[0]))
    diag_scale = _eliminate(K, mask, be)
    rhs[mask] = 0.0
    rhs[fixed] = diag_scale * g[fixed]
    return Constrained(K, rhs, f, K_rows, T)


def _linear_solve(name, lin: Constrained, model, sysm, be, info, times, *, rtol, atol, maxiter,
                  precision, callback):
    """Run the chosen solver on the constrained system; fills ``info`` and ``times``."""
    xp = be.xp
    t = time.perf_counter()
    if name == "direct":
        z = direct(lin.K, lin.rhs)
        times["solve"] = time.perf_counter() - t
        res = xp.linalg.norm(lin.rhs - lin.K @ z) / max(float(xp.linalg.norm(lin.rhs)), 1e-300)
        info.residual = float(res)
        return z
    if name == "amg":
        B = rigid_body_modes(model.points, np, [p.reference for p in sysm.plates])
        M = amg_preconditioner(lin.K, B, be, precision, model=model, sysm=sysm, T=lin.T)
        logger.info("AMG: %s", M.describe())
    else:
        M = _Jacobi(1.0 / lin.K.diagonal())
    times["setup"] = time.perf_counter() - t
    t = time.perf_counter()
    op = RowSplit(lin.K) if be.name == "numpy" else lin.K
    z, its, hist = cg(op, lin.rhs, rtol=rtol, atol=atol, maxiter=maxiter, M=M, callback=callback)
    times["solve"] = time.perf_counter() - t
    info.iterations, info.residuals, info.residual = its, hist, hist[-1]
    return z


#: lambda / mu from which an isotropic element counts as nearly incompressible for the AMG
#: preconditioner (nu 0.49; a disc nucleus is at 0.499, an undrained one at 0.4999):
#: :func:`amg_preconditioner`
INCOMPRESSIBLE_RATIO = 49.0
#: lambda / mu of the compressible stand-in the AMG hierarchy is then built on (nu 0.4). Any
#: value from 0 to 9 served (bench/amg_segments.py, 2026-12-06: parametric T12-L4 at 2 mm,
#: 109 iterations plain, 58 / 62 / 46 / 85 at 0 / 1 / 4 / 9; the shape model's L2-L4 at 2 mm,
#: 103 plain, 44 / 50 / 50 / 48; an undrained nucleus, L4-L5 at 3 mm, 378 plain, 34-36); 4 was
#: the best on the canonical segment
STAND_IN_RATIO = 4.0


def amg_preconditioner(K, B, be, precision: str = "double", *, model: Model | None = None,
                       sysm=None, T=None):
    """The AMG preconditioner of K. A NumPy block matrix gets the threaded host cycle; any other
    (a CuPy CSR, or a SciPy CSR in the CPU tests of this path) is set up on the host and cycled
    on its backend (:meth:`SmoothedAggregationAMG.to_backend` says why).

    With the ``model`` and ``sysm`` that K was constrained from (and the plates' coupling ``T``,
    ``Constrained.T``), on the NumPy backend: where the model has nearly incompressible elements
    (isotropic, lambda / mu >= :data:`INCOMPRESSIBLE_RATIO`), the hierarchy is built on a
    stand-in with their lambda lowered to :data:`STAND_IN_RATIO` mu, and each connected region of
    them is solved exactly (:class:`fem.amg.IncompressibleBlocks`, which says why). The answer
    is K's either way: only the preconditioner changes."""
    parts = None
    if model is not None and be.name == "numpy" and K.format == "bsr":
        parts = incompressible_parts(model, sysm, T, K.shape[0])
    if parts is not None:
        dK, blocks = parts
        stand_in = (K - dK).tobsr(blocksize=(3, 3))
        stand_in.sort_indices()
        return IncompressibleBlocks(SmoothedAggregationAMG(stand_in, B, precision=precision),
                                    K, blocks)
    if be.name == "numpy" and K.format == "bsr":
        return SmoothedAggregationAMG(K, B, precision=precision)
    host = be.sparse_to_host(K).tobsr(blocksize=(3, 3))
    return SmoothedAggregationAMG(host, B, precision=precision).to_backend(be, finest=K)


def incompressible_parts(model: Model, sysm, T, n_eq: int):
    """(dK, blocks) of :func:`amg_preconditioner`'s stand-in, or None where the model has no
    nearly incompressible element: dK (host CSR, the constrained dof space of n_eq equations,
    eliminated dofs zero) is what lowering their lambda takes off K; blocks are the kept dofs of
    each connected region of them (elements sharing a node)."""
    import scipy.sparse as sp
    from scipy.sparse.csgraph import connected_components

    lam, mu = assembly.lame(np.asarray(model.E, dtype=float), np.asarray(model.nu, dtype=float))
    stiff = (lam >= INCOMPRESSIBLE_RATIO * mu) & ~model.orthotropic_mask()
    elements = np.nonzero(stiff)[0]
    if not len(elements):
        return None
    d_lam = lam[elements] - STAND_IN_RATIO * mu[elements]
    dK = assembly.stiffness_of(model, elements, lame_constants=(d_lam, np.zeros(len(elements))),
                               T=T)
    keep = ~eliminated(model, sysm, n_eq)
    D = sp.diags(keep.astype(float))
    dK = (D @ dK @ D).tocsr()
    # connected regions: each element joins its nodes to its first one
    conns = [b.conn[sel] for b in model.blocks for sel in [b.local(elements)] if len(sel)]
    nodes = np.concatenate([c.ravel() for c in conns])
    first = np.concatenate([np.repeat(c[:, :1], c.shape[1], axis=1).ravel() for c in conns])
    graph = sp.coo_matrix((np.ones(len(nodes), dtype=np.int8), (first, nodes)),
                          shape=(model.n_nodes, model.n_nodes))
    _, label = connected_components(graph, directed=False)
    nodes = np.unique(nodes)
    blocks = []
    for i in np.unique(label[nodes]):
        dofs = (3 * nodes[label[nodes] == i, None] + np.arange(3)).ravel()
        blocks.append(dofs[keep[dofs]])
    return dK, blocks


class _Jacobi:
    def __init__(self, dinv):
        self.dinv = dinv

    def matvec(self, r):
        return self.dinv * r


def _dof_mask(n: int, dofs) -> np.ndarray:
    m = np.zeros(n, dtype=bool)
    m[dofs] = True
    return m


def eliminated(model: Model, sysm, n_eq: int) -> np.ndarray:
    """Per dof of a constrained system of n_eq equations: True where :func:`constrain`
    eliminated it (the prescribed dofs, and the plates' coupled and unused ones)."""
    return _dof_mask(n_eq, np.concatenate([np.asarray(sysm.fixed_dofs, dtype=np.int64),
                                           dead_dofs(model, sysm)]))


def dead_dofs(model: Model, sysm) -> np.ndarray:
    """Dofs with no stiffness of their own: rigid-plate slave dofs and nodes of no element."""
    dead = [3 * sysm.slave_nodes[:, None] + np.arange(3)]
    orphan = np.nonzero(~sysm.active_nodes)[0]
    dead.append(3 * orphan[:, None] + np.arange(3))
    return np.concatenate([d.ravel() for d in dead]).astype(np.int64)


def coupling_matrix(model: Model, sysm, be):
    """T (3n, 3n + 6p): identity on free mesh dofs, rigid-body kinematics on coupled nodes
    (mesh displacements u = T z of the unknowns z when the model has rigid plates)."""
    import scipy.sparse as sp

    n3 = 3 * model.n_nodes
    rows, cols, vals = [], [], []
    slave = np.zeros(model.n_nodes, dtype=bool)
    for p in sysm.plates:
        slave[p.nodes] = True
        d = model.points[p.nodes] - p.reference  # (s, 3)
        s = len(p.nodes)
        base = 3 * p.nodes
        for i in range(3):  # translations
            rows.append(base + i)
            cols.append(np.full(s, p.first_dof + i))
            vals.append(np.ones(s))
        # u = theta x d: ux = ty dz - tz dy, uy = tz dx - tx dz, uz = tx dy - ty dx
        for i, (j, k, sgn) in enumerate(((1, 2, 1.0), (2, 0, 1.0), (0, 1, 1.0))):
            # row i gets +theta_j d_k - theta_k d_j
            rows += [base + i, base + i]
            cols += [np.full(s, p.first_dof + 3 + j), np.full(s, p.first_dof + 3 + k)]
            vals += [sgn * d[:, k], -sgn * d[:, j]]
    free = np.nonzero(~np.repeat(slave, 3))[0]
    rows.append(free)
    cols.append(free)
    vals.append(np.ones(len(free)))
    T = sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                      shape=(n3, sysm.n_dof))
    if be.name != "numpy":
        T = be.sparse.csr_matrix(T)
    return T


def _rows(K, dofs, be):
    """The rows ``dofs`` of K as a CSR matrix (kept before constraints modify K)."""
    if len(dofs) == 0:
        return None
    if be.name == "numpy" and K.format == "bsr":
        import scipy.sparse as sp

        dofs = np.asarray(dofs)
        nodes = unique_sorted(dofs // 3)
        starts = K.indptr[nodes]
        counts = K.indptr[nodes + 1] - starts
        offsets = np.concatenate([[0], np.cumsum(counts)])
        idx = np.repeat(starts - offsets[:-1], counts) + np.arange(offsets[-1])
        sub = sp.bsr_matrix((K.data[idx], K.indices[idx], offsets),
                            shape=(3 * len(nodes), K.shape[1]))
        local = np.searchsorted(nodes, dofs // 3) * 3 + dofs % 3
        return sub.tocsr()[local]
    return K.tocsr()[be.xp.asarray(dofs)]


def _eliminate(K, mask, be) -> float:
    """Zero the rows and columns of masked dofs in place and put a scaled 1 on their diagonal."""
    xp = be.xp
    d = K.diagonal()
    keep = ~mask
    scale = float(d[keep].mean()) if bool(xp.any(keep)) else 1.0
    if be.name == "numpy" and K.format == "bsr":
        n = K.shape[0] // 3
        m3 = mask.reshape(n, 3)
        indptr, indices, data = K.indptr, K.indices, K.data
        brow = np.repeat(np.arange(n), np.diff(indptr))
        rm = m3[brow]  # (nnzb, 3)
        cm = m3[indices]
        hit = np.nonzero(rm.any(axis=1) | cm.any(axis=1))[0]
        blk = data[hit]
        blk[rm[hit][:, :, None] | cm[hit][:, None, :]] = 0.0
        diag_blk = brow[hit] == indices[hit]
        for i in range(3):
            sel = diag_blk & rm[hit][:, i]
            blk[sel, i, i] = scale
        data[hit] = blk
    else:
        rows = row_of_entries(K.indptr)
        kill = mask[rows] | mask[K.indices]
        K.data[kill] = 0.0
        K.data[kill & (rows == K.indices) & mask[rows]] = scale
    return scale
