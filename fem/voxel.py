"""Voxel models: a regular grid of box hex8 elements, each with its own modulus (CT-derived).

:class:`VoxelModel` is the compact description a CT pipeline produces: grid shape, spacing and
origin (mm), one Young's modulus per voxel (MPa; 0, or ``mask`` False, for empty voxels) and one
Poisson's ratio, with the grid's six faces named ``xmin`` ... ``zmax`` for supports and loads.
It converts to an ordinary hex8 :class:`~fem.model.Model` (:meth:`VoxelModel.to_model`) and back
(:meth:`VoxelModel.from_model`).

:func:`grid_of` recognises any hex8 model whose elements are the voxels of a regular grid (a deck
or mesh written by a voxel mesher, or :meth:`VoxelModel.to_model`); :func:`fem.solve` then takes
the matrix-free geometric-multigrid path (:mod:`fem.gmg`) by itself and maps the answer back to the
model's node and element order, so the :class:`~fem.result.Result` is the same object either way.

Array order: ``E[i, j, k]`` is the voxel whose lowest corner is ``origin + (i hx, j hy, k hz)``
(x index first, as images read by nibabel or pydicom stacks come).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np

from .errors import MaterialError, MeshError, SetError, SolverError
from .kernels.voxel import CORNERS
from .limits import LIMITS
from .model import Model
from .validate import vector3

POISSON = LIMITS["poisson"]

logger = logging.getLogger(__name__)

#: grid faces and the hex8 face (0-based Abaqus S1..S6) lying on each
PLANE_FACE = {"zmin": 0, "zmax": 1, "ymin": 2, "xmax": 3, "ymax": 4, "xmin": 5}
PLANES = ("xmin", "xmax", "ymin", "ymax", "zmin", "zmax")
#: a hex8 model is taken for a grid only if the grid's bounding box holds at most this many
#: voxels per element (a sparse scatter of elements in a huge box is better solved assembled)
MAX_EMPTY_RATIO = 8.0
#: relative tolerance on coordinates when recognising a grid
GRID_TOL = 1e-6


@dataclass
class VoxelGrid:
    """Where a model's nodes and elements sit in a regular grid.

    shape (nx, ny, nz) voxels; spacing and origin in mm; node_index: flat grid node index
    ``i + (nx+1) (j + (ny+1) k)`` of each model node (-1 for nodes of no element);
    element_index: flat voxel index ``i + nx (j + ny k)`` of each element; bbar: the elements use
    the B-bar formulation.
    """

    shape: tuple
    spacing: tuple
    origin: tuple
    node_index: np.ndarray
    element_index: np.ndarray
    nu: float
    bbar: bool = False

    @property
    def node_shape(self) -> tuple:
        nx, ny, nz = self.shape
        return (nz + 1, ny + 1, nx + 1)

    def moduli(self, E_elements) -> np.ndarray:
        """Per-voxel moduli (nz, ny, nx) from per-element ones (0 for voxels with no element)."""
        nx, ny, nz = self.shape
        E = np.zeros(nx * ny * nz)
        E[self.element_index] = E_elements
        return E.reshape(nz, ny, nx)


def grid_of(model: Model) -> tuple[VoxelGrid | None, str]:
    """(grid, "") if the model's elements are voxels of one regular grid, else (None, why not)."""
    if len(model.blocks) != 1 or model.blocks[0].type != "hex8":
        return None, "the model has elements other than hex8"
    if model.orthotropic_mask().any():
        return None, "some elements are orthotropic (the voxel path has one isotropic material)"
    nu = np.asarray(model.nu)
    if nu.size == 0 or np.isnan(nu).any() or np.ptp(nu) != 0.0:
        return None, "Poisson's ratio differs between elements"
    bb = model.bbar_mask()
    if bb.any() and not bb.all():
        return None, "some hex8 elements use B-bar and others not"
    conn = model.blocks[0].conn
    X0 = model.points[conn[:, 0]]
    h = np.array([model.points[conn[0, 1], 0] - X0[0, 0], model.points[conn[0, 3], 1] - X0[0, 1],
                  model.points[conn[0, 4], 2] - X0[0, 2]])
    if not (h > 0).all():
        return None, "the first element is not an axis-aligned box in VTK corner order"
    tol = GRID_TOL * float(h.min())
    for c in range(1, 8):
        d = model.points[conn[:, c]] - X0 - CORNERS[c] * h
        if np.abs(d).max() > tol:
            return None, "the elements are not equal axis-aligned boxes"
    used = np.zeros(model.n_nodes, dtype=bool)
    used[conn.ravel()] = True
    origin = model.points[used].min(axis=0)
    q = (model.points[used] - origin) / h
    qi = np.rint(q)
    if np.abs(q - qi).max() > GRID_TOL:
        return None, "the nodes are not on one lattice"
    qi = qi.astype(np.int64)
    nx, ny, nz = (int(v) for v in qi.max(axis=0))
    if min(nx, ny, nz) < 1:
        return None, "the grid is flat"
    n_vox = nx * ny * nz
    if n_vox > MAX_EMPTY_RATIO * len(conn):
        return None, (f"the grid's bounding box holds {n_vox} voxels for {len(conn)} elements "
                      "(too sparse for the voxel path)")
    node_index = np.full(model.n_nodes, -1, dtype=np.int64)
    node_index[used] = qi[:, 0] + (nx + 1) * (qi[:, 1] + (ny + 1) * qi[:, 2])
    srt = np.sort(node_index[used])
    if (srt[1:] == srt[:-1]).any():
        return None, "two nodes share a grid position (unmerged nodes)"
    e0 = np.rint((X0 - origin) / h).astype(np.int64)
    element_index = e0[:, 0] + nx * (e0[:, 1] + ny * e0[:, 2])
    srt = np.sort(element_index)
    if (srt[1:] == srt[:-1]).any():
        return None, "two elements occupy the same voxel"
    return VoxelGrid((nx, ny, nz), tuple(float(v) for v in h), tuple(float(v) for v in origin),
                     node_index, element_index, float(nu[0]), bool(bb.all())), ""


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

    def to_model(self) -> Model:
        """The equivalent hex8 :class:`Model` (occupied voxels only; nodes numbered in grid
        order), with the node and face sets xmin..zmax and the conditions; it remembers its grid,
        so :func:`fem.solve` takes the voxel path without searching for it."""
        nx, ny, nz = self.shape
        hx, hy, hz = self.spacing
        ox, oy, oz = self.origin
        solid = self._E.ravel() > 0
        vox = np.nonzero(solid)[0]
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
        """``fem.solve(self.to_model(), **kwargs)``: the :class:`~fem.result.Result` lives on the
        hex8 model (``result.model``)."""
        from .analysis import solve

        return solve(self.to_model(), **kwargs)


# ---------------------------------------------------------------------- the solve

@dataclass
class GridConditions:
    """A model's compiled conditions (:class:`fem.system.System`) in grid layout (host arrays):
    ``bits`` (nz+1, ny+1, nx+1) uint8 with bits 0-2 set on supported dofs; ``fixed_flat`` the
    flat grid dof of each of ``sysm.fixed_dofs`` and ``f_fixed`` the loads there (N); ``u0``
    (nz+1, ny+1, nx+1, 3) prescribed displacements (mm) or None when all are zero; the loads
    as flat grid dof indices ``load_index`` and values ``load_value`` (N)."""

    bits: np.ndarray
    fixed_flat: np.ndarray
    f_fixed: np.ndarray
    u0: np.ndarray | None
    load_index: np.ndarray
    load_value: np.ndarray

    def problem(self, grid: VoxelGrid, E, xp):
        """The :class:`fem.gmg.GridProblem` of moduli E (nz, ny, nx) on backend ``xp``."""
        from .gmg import GridProblem

        return GridProblem(E=xp.asarray(E), nu=grid.nu, spacing=grid.spacing,
                           bits=xp.asarray(self.bits), load_index=xp.asarray(self.load_index),
                           load_value=xp.asarray(self.load_value),
                           u0=None if self.u0 is None else xp.asarray(self.u0), bbar=grid.bbar)


def grid_conditions(model: Model, grid: VoxelGrid, sysm) -> GridConditions:
    """The supports, prescribed displacements and loads of ``sysm`` on ``grid``."""
    nz1, ny1, nx1 = grid.node_shape
    bits = np.zeros(nz1 * ny1 * nx1, dtype=np.uint8)
    fd = np.asarray(sysm.fixed_dofs, dtype=np.int64)
    gnode = grid.node_index[fd // 3]
    np.bitwise_or.at(bits, gnode, (1 << (fd % 3)).astype(np.uint8))
    fixed_flat = 3 * gnode + fd % 3
    values = np.asarray(sysm.fixed_values, dtype=float)
    u0 = None
    if len(fd) and np.any(values != 0.0):
        u0 = np.zeros(3 * nz1 * ny1 * nx1)
        u0[fixed_flat] = values
        u0 = u0.reshape(nz1, ny1, nx1, 3)
    f = np.asarray(sysm.f)
    fm = f[:3 * model.n_nodes]
    nzf = np.nonzero(fm)[0]
    return GridConditions(bits.reshape(nz1, ny1, nx1), fixed_flat, f[fd], u0,
                          3 * grid.node_index[nzf // 3] + nzf % 3, fm[nzf])

def solve_on_grid(model: Model, grid: VoxelGrid, sysm, be, *, rtol: float, atol: float,
                  maxiter, precision: str, callback, info):
    """Solve ``model`` (whose conditions are compiled in ``sysm``) on its voxel grid by
    matrix-free multigrid CG; returns (u (n_nodes, 3), reaction values at sysm.fixed_dofs)."""
    from .gmg import VoxelSolver

    if sysm.plates:
        raise SolverError("rigid plates are not supported on the voxel path: use solver='amg'")
    xp = be.xp
    t = time.perf_counter()
    gc = grid_conditions(model, grid, sysm)
    problem = gc.problem(grid, grid.moduli(model.E), xp)
    solver = VoxelSolver(problem, xp, precision=precision)
    info.times["setup"] = time.perf_counter() - t
    logger.info("voxel multigrid: %s", ", ".join(
        f"{nx}x{ny}x{nz}" for (nx, ny, nz), _ in [(lv.shape, 0) for lv in solver.levels]))
    u_grid, ginfo = solver.solve(rtol=rtol, atol=atol, maxiter=maxiter, callback=callback)
    info.times["solve"] = ginfo.times["solve"]
    info.iterations, info.residuals, info.residual = (ginfo.iterations, ginfo.residuals,
                                                      ginfo.residual)
    info.levels = [lv.shape for lv in solver.levels]
    info.held_bytes = ginfo.held_bytes
    info.true_residual = solver.true_residual(u_grid, ginfo)
    flat = xp.reshape(u_grid, (-1, 3))
    node_index = xp.asarray(grid.node_index)
    u = flat[xp.maximum(node_index, 0)] * xp.asarray(grid.node_index >= 0)[:, None]
    r_fixed = xp.zeros(0)
    if len(gc.fixed_flat):
        Au = xp.reshape(solver.apply(u_grid), (-1,))
        r_fixed = Au[xp.asarray(gc.fixed_flat)] - xp.asarray(gc.f_fixed)
    return u, r_fixed
