"""Voxel models: a regular grid of box hex8 elements, each with its own modulus (CT-derived).

:class:`VoxelModel` is the compact description a CT pipeline produces: grid shape, spacing and
origin (mm), one Young's modulus per voxel (MPa; 0, or ``mask`` False, for empty voxels) and one
Poisson's ratio, with the grid's six faces named ``xmin`` ... ``zmax`` for supports and loads.
It converts to an ordinary hex8 :class:`~fem.model.Model` (:meth:`VoxelModel.to_model`) and back
(:meth:`VoxelModel.from_model`).

The native route. ``fem.solve(voxel_model)`` (= :meth:`VoxelModel.solve`, :func:`solve_voxels`)
never builds the hex8 model when it takes the matrix-free multigrid (``solver="gmg"``, or
``"auto"`` above :data:`fem.analysis.DIRECT_MAX_DOF` dofs): supports, loads and the rigid-body
check are compiled on the grid (:mod:`fem.voxel_system`), the moduli go to the solver's device
once, and the :class:`~fem.voxel_result.VoxelResult` answers displacements, strains, stresses
and reactions on the grid; its hex8 view (``result.model``) is built only when asked for
(writing a VTU, PyVista). The answers are those of ``fem.solve(voxel_model.to_model())`` to
rounding. Other solvers, small models and models with rigid plates are solved on the hex8 view,
as before.

:func:`fem.grid.grid_of` recognises the hex8 models of regular grids from any source (decks,
meshes), which :func:`fem.solve` sends to the same multigrid.

Array order: ``E[i, j, k]`` is the voxel whose lowest corner is ``origin + (i hx, j hy, k hz)``
(x index first, as images read by nibabel or pydicom stacks come).
"""

from __future__ import annotations

import copy
import logging
import time
import warnings

import numpy as np

from . import analysis
from . import loads as L
from .errors import (
    ConvergenceError,
    MaterialError,
    MeshError,
    ModelError,
    SetError,
    SlowConvergence,
    SolverError,
)
from .grid import (  # noqa: F401  (names that lived here, kept for their users)
    GRID_TOL,
    MAX_EMPTY_RATIO,
    PLANE_FACE,
    PLANES,
    GridConditions,
    VoxelGrid,
    grid_conditions,
    grid_of,
    run_grid_solver,
    solve_on_grid,
)
from .kernels.voxel import CORNERS
from .limits import LIMITS
from .model import BBAR_NU_THRESHOLD, HEX8_FORMULATIONS, Model
from .solvers import SolveInfo
from .validate import vector3
from .voxel_result import VoxelResult
from .voxel_system import active_mask, check_supports, compile_on_grid, grid_ijk

POISSON = LIMITS["poisson"]

logger = logging.getLogger(__name__)


class VoxelModel:
    """A regular grid of box voxels with per-voxel Young's modulus (MPa) and one Poisson's ratio.

    ``E`` (nx, ny, nz), indexed ``E[i, j, k]`` (x first); ``spacing`` (hx, hy, hz) and ``origin``
    in mm; ``mask`` (optional, same shape) False for empty voxels, as is ``E == 0``. The grid's
    faces are named ``xmin``, ``xmax``, ``ymin``, ``ymax``, ``zmin``, ``zmax`` (node sets and face
    sets of the occupied voxels on them); more node sets (grid node indices (i, j, k)) can be added
    with :meth:`add_node_set`. Conditions (:mod:`fem.loads`) are added with :meth:`add` or
    :meth:`fix` as on a :class:`~fem.model.Model`; ``fem.solve(voxel_model)`` solves it by
    matrix-free multigrid.
    """

    def __init__(self, E, spacing=(1.0, 1.0, 1.0), origin=(0.0, 0.0, 0.0), nu: float = 0.3,
                 mask=None):
        try:
            E = np.asarray(E, dtype=float)
        except (TypeError, ValueError):
            raise MaterialError("voxel moduli E must be numbers (MPa)") from None
        if E.ndim != 3 or min(E.shape) < 1:
            raise MaterialError(f"voxel moduli E must be a 3-D array (nx, ny, nz), got shape "
                                f"{E.shape}")
        bad = ~np.isfinite(E) | (E < 0)
        if bad.any():
            i, j, k = np.argwhere(bad)[0]
            raise MaterialError(f"voxel modulus E[{i}, {j}, {k}] = {E[i, j, k]} is not a finite "
                                f"number >= 0 MPa ({int(bad.sum())} such voxels)")
        if mask is not None:
            mask = np.asarray(mask, dtype=bool)
            if mask.shape != E.shape:
                raise MaterialError(f"mask shape {mask.shape} differs from E's {E.shape}")
            E = np.where(mask, E, 0.0)
        if not (E > 0).any():
            raise MaterialError("every voxel is empty (E = 0 or masked out)")
        self.spacing = vector3("spacing", spacing, MeshError)
        if (np.asarray(self.spacing) <= 0).any():
            raise MeshError(f"voxel spacing must be > 0 mm, got {tuple(self.spacing)}")
        self.origin = vector3("origin", origin, MeshError)
        if not POISSON.contains(nu):
            raise MaterialError(f"Poisson's ratio nu must lie in {POISSON.describe()}, got {nu}")
        self.nu = float(nu)
        # internal C order (z, y, x): the solver's layout
        self._E = np.ascontiguousarray(np.transpose(E, (2, 1, 0)))
        self.conditions: list = []
        self.node_sets: dict[str, np.ndarray] = {}
        self.hex8_formulation = "auto"

    @property
    def shape(self) -> tuple:
        nz, ny, nx = self._E.shape
        return (nx, ny, nz)

    @property
    def E(self) -> np.ndarray:
        """Moduli (nx, ny, nz) in MPa (a view; 0 for empty voxels)."""
        return np.transpose(self._E, (2, 1, 0))

    @property
    def n_voxels(self) -> int:
        return int((self._E > 0).sum())

    def __repr__(self) -> str:
        return (f"VoxelModel({self.shape[0]}x{self.shape[1]}x{self.shape[2]} voxels of "
                f"{tuple(round(h, 6) for h in self.spacing)} mm, {self.n_voxels} occupied, "
                f"nu={self.nu})")

    def add(self, *conditions) -> VoxelModel:
        self.conditions.extend(conditions)
        return self

    def fix(self, target, dofs: str = "xyz") -> VoxelModel:
        from .loads import Fixed

        return self.add(Fixed(target, dofs))

    def add_node_set(self, name: str, ijk) -> VoxelModel:
        """A named set of grid nodes given as (n, 3) integer indices (i, j, k)."""
        ijk = np.asarray(ijk, dtype=np.int64).reshape(-1, 3)
        nx, ny, nz = self.shape
        hi = np.array([nx, ny, nz])
        if ((ijk < 0) | (ijk > hi)).any():
            raise SetError(f"node set {name!r}: grid node indices must lie in 0..{tuple(hi)}")
        self.node_sets[name] = ijk[:, 0] + (nx + 1) * (ijk[:, 1] + (ny + 1) * ijk[:, 2])
        return self

    # ------------------------------------------------------------------ conversion

    @property
    def grid_moduli(self) -> np.ndarray:
        """Moduli (nz, ny, nx) in MPa in the solver's layout (C order, x fastest; not a copy)."""
        return self._E

    def hex8_arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The hex8 view's arrays: node coordinates (n, 3) mm and connectivity (m, 8) of the
        occupied voxels (VTK corner order), with the flat grid index of each node and voxel."""
        nx, ny, nz = self.shape
        hx, hy, hz = self.spacing
        ox, oy, oz = self.origin
        vox = np.flatnonzero(self._E.ravel() > 0)
        k, rem = np.divmod(vox, nx * ny)
        j, i = np.divmod(rem, nx)
        base = i + (nx + 1) * (j + (ny + 1) * k)
        offs = CORNERS[:, 0] + (nx + 1) * (CORNERS[:, 1] + (ny + 1) * CORNERS[:, 2])
        gconn = base[:, None] + offs[None, :]
        gnodes = np.unique(gconn)  # sorted grid node indices of the occupied voxels
        conn = np.searchsorted(gnodes, gconn)
        kk, r2 = np.divmod(gnodes, (nx + 1) * (ny + 1))
        jj, ii = np.divmod(r2, nx + 1)
        pts = np.stack([ox + ii * hx, oy + jj * hy, oz + kk * hz], axis=1)
        return pts, conn, gnodes, vox

    def uses_bbar(self) -> bool:
        """Whether its voxels use the B-bar formulation (``hex8_formulation`` as on a Model)."""
        if self.hex8_formulation not in HEX8_FORMULATIONS:
            raise ModelError(f"hex8_formulation must be one of {HEX8_FORMULATIONS}, got "
                                f"{self.hex8_formulation!r}")
        return self.hex8_formulation == "bbar" or (self.hex8_formulation == "auto"
                                                   and self.nu >= BBAR_NU_THRESHOLD)

    def to_model(self) -> Model:
        """The equivalent hex8 :class:`Model` (occupied voxels only; nodes numbered in grid
        order), with the node and face sets xmin..zmax and the conditions; it remembers its grid,
        so :func:`fem.solve` takes the voxel path without searching for it."""
        nx, ny, nz = self.shape
        pts, conn, gnodes, vox = self.hex8_arrays()
        k, rem = np.divmod(vox, nx * ny)
        j, i = np.divmod(rem, nx)
        kk, r2 = np.divmod(gnodes, (nx + 1) * (ny + 1))
        jj, ii = np.divmod(r2, nx + 1)
        m = Model.from_arrays(pts, [("hex8", conn)], E=self._E.ravel()[vox], nu=self.nu,
                              source="<voxels>")
        m.hex8_formulation = self.hex8_formulation
        ijk = {"x": (ii, nx), "y": (jj, ny), "z": (kk, nz)}
        vijk = {"x": (i, nx), "y": (j, ny), "z": (k, nz)}
        for name in PLANES:
            idx, n = ijk[name[0]]
            at = 0 if name.endswith("min") else n
            m.add_node_set(name, np.nonzero(idx == at)[0])
            vidx, _ = vijk[name[0]]
            elems = np.nonzero(vidx == (0 if at == 0 else n - 1))[0]
            m.add_face_set(name, elems, np.full(len(elems), PLANE_FACE[name]))
        for name, g in self.node_sets.items():
            pos = np.searchsorted(gnodes, g)
            ok = (pos < len(gnodes)) & (gnodes[np.minimum(pos, len(gnodes) - 1)] == g)
            if not ok.any():
                raise SetError(f"node set {name!r} has no node on an occupied voxel")
            m.add_node_set(name, pos[ok])
        m.add(*self.conditions)
        bb = m.bbar_mask()
        m.metadata["voxel_grid"] = VoxelGrid(self.shape, tuple(self.spacing), tuple(self.origin),
                                             gnodes, vox, self.nu, bool(bb.any()))
        return m

    @classmethod
    def from_model(cls, model: Model) -> VoxelModel:
        """The voxel model of a hex8 model whose elements form a regular grid (raises
        :class:`~fem.MeshError` saying why not otherwise). Node sets are carried over as grid
        node sets; conditions are copied (they refer to sets by name: face sets other than the
        six grid faces are not carried, so conditions on them raise when solved)."""
        grid, why = grid_of(model)
        if grid is None:
            raise MeshError(f"the model is not a regular voxel grid: {why}")
        nx, ny, nz = grid.shape
        vm = cls(np.transpose(grid.moduli(model.E), (2, 1, 0)), spacing=grid.spacing,
                 origin=grid.origin, nu=grid.nu)
        vm.hex8_formulation = model.hex8_formulation
        for name, nodes in model.node_sets.items():
            if name in PLANES:
                continue
            g = grid.node_index[nodes]
            g = g[g >= 0]
            k, rem = np.divmod(g, (nx + 1) * (ny + 1))
            j, i = np.divmod(rem, nx + 1)
            vm.add_node_set(name, np.stack([i, j, k], axis=1))
        vm.conditions = list(model.conditions)
        return vm

    def solve(self, **kwargs):
        """``fem.solve(self, **kwargs)``: :func:`solve_voxels`."""
        return solve_voxels(self, **kwargs)


# ---------------------------------------------------------------------- the native route

def takes_grid_route(vm: VoxelModel, solver: str) -> bool:
    """Whether ``fem.solve(vm, solver=solver)`` solves on the grid: the multigrid was asked
    for, or chosen by "auto" above :data:`fem.analysis.DIRECT_MAX_DOF` dofs, and no rigid
    plate needs the assembled path (it couples its nodes to six more unknowns)."""
    if any(isinstance(c, L.RigidPlate) for c in vm.conditions):
        return False
    if solver == "gmg":
        return True
    return solver == "auto" and 3 * int(active_mask(vm.grid_moduli > 0).sum()) > \
        analysis.DIRECT_MAX_DOF


def solve_voxels(vm: VoxelModel, *, backend: str = "auto", solver: str = "auto",
                 rtol: float = 1e-8, atol: float = 0.0, maxiter: int | None = None,
                 precision: str = "double", callback=None):
    """:func:`fem.solve` for a :class:`VoxelModel` (the same arguments): on the grid where the
    multigrid solves it (:func:`takes_grid_route`), giving a :class:`VoxelResult`; otherwise on
    its hex8 view (``vm.to_model()``), giving a :class:`~fem.result.Result`."""
    be = analysis.backend_for(solver, rtol, backend)
    if not takes_grid_route(vm, solver):
        return analysis.solve(vm.to_model(), backend=backend, solver=solver, rtol=rtol,
                              atol=atol, maxiter=maxiter, precision=precision, callback=callback)
    t0 = time.perf_counter()
    gs = compile_on_grid(vm)
    _check_magnitudes(vm, gs)
    check_supports(vm, gs)
    times = {"checks": time.perf_counter() - t0}
    _warn_contrast(vm)
    bbar = vm.uses_bbar()
    n_dof = 3 * int(active_mask(vm.grid_moduli > 0).sum())
    if bbar and vm.hex8_formulation == "auto":
        analysis.warn_bbar(vm.n_voxels, stacklevel=4)
    snapshot = _snapshot(vm)
    try:
        u_grid, r_fixed, info, E = _solve_grid(
            vm, gs, be, bbar, n_dof, rtol=rtol, atol=atol, maxiter=maxiter,
            precision=precision, callback=callback,
            patience=analysis.gives_up_slow_multigrid(solver, n_dof))
    except SlowConvergence as exc:
        # a thin stiff shell (a CT cortex) that the geometric multigrid resolves slowly: AMG
        # on the hex8 view, as for a model with a rigid plate
        logger.info("%s: solver 'auto' takes AMG on the hex8 view instead", exc)
        return analysis.solve(vm.to_model(), backend=backend, solver="amg", rtol=rtol,
                              atol=atol, maxiter=maxiter, precision=precision, callback=callback)
    result = VoxelResult(snapshot, u_grid, backend=be, grid_system=gs, reaction_values=r_fixed,
                         bbar=bbar, moduli=E, info=info)
    t = time.perf_counter()
    _verify(result, vm, gs, info.true_residual, rtol=rtol)
    times["reactions"] = time.perf_counter() - t
    info.times.update(times)
    info.times["total"] = time.perf_counter() - t0
    logger.info("solved %d dofs on the grid: %s", n_dof, info.summary())
    return result


def _snapshot(vm: VoxelModel) -> VoxelModel:
    """The model as solved, for the result's hex8 view: its own lists of conditions and node
    sets (the moduli are shared, not copied)."""
    snap = copy.copy(vm)
    snap.conditions = list(vm.conditions)
    snap.node_sets = dict(vm.node_sets)
    return snap


def _solve_grid(vm, gs, be, bbar: bool, n_dof: int, *, rtol, atol, maxiter, precision,
                callback, patience=False):
    """The multigrid solve of ``gs`` with mixed precision falling back to float64 (as the hex8
    grid path does); returns (u on the grid, reactions at gs.fixed_dofs, SolveInfo, the
    moduli on the backend)."""
    n_eq = n_dof - len(gs.fixed_dofs)
    t = time.perf_counter()
    problem = gs.problem(vm.grid_moduli, vm.nu, vm.spacing, bbar, be.xp)  # moduli sent once
    prep = time.perf_counter() - t
    for attempt in ((precision,) if precision != "mixed" else ("mixed", "double")):
        info = SolveInfo(solver="gmg", backend=be.name, n_dof=n_dof, n_equations=n_eq,
                         precision=attempt)
        try:
            u_grid, solver = run_grid_solver(problem, be, info, rtol=rtol, atol=atol,
                                             maxiter=maxiter, precision=attempt,
                                             callback=callback, patience=patience)
        except ConvergenceError as exc:
            if attempt != "mixed" or isinstance(exc, SlowConvergence):
                raise
            # float32 cannot resolve very ill-conditioned models: solve again in float64
            warnings.warn(f"mixed precision did not converge ({exc}); solving again in "
                          "float64", stacklevel=4)
            continue
        info.times["setup"] += prep
        break
    r_fixed = be.xp.zeros(0)
    if len(gs.fixed_dofs):
        r_fixed = solver.apply_at(u_grid, gs.fixed_dofs) - be.xp.asarray(
            gs.loads_at(gs.fixed_dofs))
    return u_grid, r_fixed, info, problem.E


def _check_magnitudes(vm: VoxelModel, gs) -> None:
    """:func:`fem.analysis.check_magnitudes` on the grid: loads, prescribed displacements,
    node coordinates and moduli within what double precision carries."""
    E = vm.grid_moduli
    nx, ny, nz = vm.shape
    coords = np.concatenate([o + np.arange(n + 1) * h
                             for o, n, h in zip(vm.origin, (nx, ny, nz), vm.spacing)])
    lo, hi = np.inf, 0.0
    for k in range(E.shape[0]):  # plane by plane: no full-size temporary
        plane = E[k]
        hi = max(hi, float(plane.max()))
        pos = plane[plane > 0]
        if len(pos):
            lo = min(lo, float(pos.min()))
    for what, unit, values in (("load", "N", gs.load_value),
                               ("prescribed displacement", "mm", gs.fixed_values),
                               ("node coordinate", "mm", coords),
                               ("Young's modulus", "MPa", np.array([lo, hi]))):
        analysis.check_magnitude(what, unit, values)


def _voxel_at(vm: VoxelModel, flat: int) -> str:
    k, j, i = np.unravel_index(int(flat), vm.grid_moduli.shape)
    return f"voxel ({i}, {j}, {k})"


def _warn_contrast(vm: VoxelModel) -> None:
    """:func:`fem.analysis.warn_contrast` for the voxels' moduli, naming voxels."""
    E = vm.grid_moduli.ravel()
    i_hi = int(np.argmax(E))
    masked = np.where(E > 0, E, np.inf)
    i_lo = int(np.argmin(masked))
    del masked
    analysis.warn_contrast(float(E[i_lo]), float(E[i_hi]), _voxel_at(vm, i_lo),
                           _voxel_at(vm, i_hi), stacklevel=4)


def _verify(result: VoxelResult, vm: VoxelModel, gs, true_res: float, *, rtol: float) -> None:
    """:func:`fem.analysis.verify_answer` on the grid: finite, non-zero displacements, finite
    reactions, the true residual and the balance of reactions and loads."""
    xp = result.xp
    u = result.grid_displacement
    bad = ~xp.all(xp.isfinite(u), axis=-1)
    if bool(xp.any(bad)):
        first = int(xp.argmax(xp.reshape(bad, (-1,))))
        i, j, k = (int(v[0]) for v in grid_ijk(vm.shape, [first]))
        raise SolverError(
            f"the displacement is not finite at grid node ({i}, {j}, {k}) ({int(bad.sum())} "
            f"node(s) in all): the loads (largest {np.abs(gs.load_value).max(initial=0):.3g} N) "
            "or the moduli overflow double precision, or the model is a mechanism; use units "
            "that keep loads and moduli within about 1e-100..1e100")
    del bad
    free_load = ~np.isin(gs.load_index, gs.fixed_dofs)
    analysis.check_moved_and_finite(bool(xp.any(u != 0.0)), np.any(gs.load_value[free_load] != 0.0)
                                    or np.any(gs.fixed_values != 0.0), result.reaction_values)
    resultant, scale = result.balance()
    g = np.abs(gs.fixed_values)
    if len(g) and g.max() > 0.0:
        scale = max(scale, float(vm.grid_moduli.max()) * _extent(vm) * float(g.max()))
    analysis.judge_answer(result.info, true_res, resultant, scale, rtol=rtol)


def _extent(vm: VoxelModel) -> float:
    """The largest extent (mm) of the occupied voxels' nodes (1 when they have none)."""
    solid = vm.grid_moduli > 0
    spans = []
    for axes, h in (((0, 1), vm.spacing[0]), ((0, 2), vm.spacing[1]), ((1, 2), vm.spacing[2])):
        at = np.flatnonzero(solid.any(axis=axes))
        spans.append((at[-1] + 1 - at[0]) * h)
    return float(max(spans)) or 1.0
