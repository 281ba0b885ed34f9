"""Regular voxel grids under hex8 models, and the matrix-free solve on them.

:func:`grid_of` recognises any hex8 model whose elements are the voxels of a regular grid (a deck
or mesh written by a voxel mesher, or :meth:`fem.voxel.VoxelModel.to_model`);
:func:`fem.solve` then takes the matrix-free geometric-multigrid path (:mod:`fem.gmg`) by itself
(:func:`solve_on_grid`) and maps the answer back to the model's node and element order.
:func:`run_grid_solver` is the part both this path and the native route of a
:class:`~fem.voxel.VoxelModel` (:mod:`fem.voxel_system`) share: the solver on a
:class:`fem.gmg.GridProblem` and what :class:`fem.solvers.SolveInfo` records of it.

Layout: grid nodes are numbered ``i + (nx+1) (j + (ny+1) k)``, voxels ``i + nx (j + ny k)``
(x fastest), the dofs of a node follow each other. Units: mm, N, MPa.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np

from .errors import SolverError
from .kernels.backend import add_at_flat
from .kernels.voxel import CORNERS
from .model import Model

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


class _Crop:
    """A :class:`fem.gmg.GridProblem` cut to the bounding box of its occupied voxels, and the
    way back to the full grid. The margins of an image (air, soft tissue below the threshold)
    are grid nodes of no voxel: the multigrid would carry them on every level, and its coarse
    voxels there average solid with empty children. On the 40 x 40 x 30 CT phantom (solid
    37 x 27 x 30) double-precision CG takes 260 iterations on the box against 349 on the
    image's grid. Memory: the box's moduli and support bits are copied (the kernels want them
    contiguous), about 1.4 (float32) to 2.8 (float64) bytes per DOF of the box, where the
    margins' vectors are saved (32 bytes per DOF of margin in double precision); a grid the
    voxels fill is solved as it is, without a copy."""

    def __init__(self, problem, xp, lo, hi):
        from .gmg import GridProblem

        self.xp, self.full = xp, problem
        self.node_shape = tuple(int(n) + 1 for n in problem.E.shape)
        self.lo, self.hi = lo, hi  # voxel box (k, j, i), hi exclusive; its nodes lo .. hi
        self.nodes = tuple(slice(a, b + 1) for a, b in zip(lo, hi))
        voxels = tuple(slice(a, b) for a, b in zip(lo, hi))
        load_index, load_value = self._inside(problem.load_index, problem.load_value)
        u0_index = u0_value = None
        if problem.u0_index is not None:
            u0_index, u0_value = self._inside(problem.u0_index, problem.u0_value)
        self.problem = GridProblem(
            E=xp.ascontiguousarray(problem.E[voxels]), nu=problem.nu, spacing=problem.spacing,
            bits=xp.ascontiguousarray(problem.bits[self.nodes]), load_index=load_index,
            load_value=load_value, bbar=problem.bbar,
            u0=None if problem.u0 is None else xp.ascontiguousarray(problem.u0[self.nodes]),
            u0_index=u0_index, u0_value=u0_value)

    @classmethod
    def of(cls, problem, be):
        """The crop of ``problem`` (on backend ``be``), or None where its occupied voxels fill
        the grid (or none are occupied: the solver says what is wrong with that)."""
        xp = be.xp
        solid = problem.E > 0
        box = []
        for axis in range(3):
            others = tuple(a for a in range(3) if a != axis)
            hit = np.nonzero(be.to_host(xp.any(solid, axis=others)))[0]
            if not len(hit):
                return None
            box.append((int(hit[0]), int(hit[-1]) + 1))
        if all(a == 0 and b == n for (a, b), n in zip(box, problem.E.shape)):
            return None
        lo, hi = zip(*box)
        return cls(problem, xp, lo, hi)

    def to_box(self, dofs):
        """(where inside, flat dof indices on the box) of flat dof indices on the full grid."""
        xp = self.xp
        d = xp.asarray(dofs, dtype=xp.int64)
        _, ny1, nx1 = self.node_shape
        node, c = d // 3, d % 3
        k, rem = node // (ny1 * nx1), node % (ny1 * nx1)
        j, i = rem // nx1, rem % nx1
        (k0, j0, i0), (k1, j1, i1) = self.lo, self.hi
        inside = (k >= k0) & (k <= k1) & (j >= j0) & (j <= j1) & (i >= i0) & (i <= i1)
        bj, bi = j1 - j0 + 1, i1 - i0 + 1
        return inside, 3 * (((k - k0) * bj + (j - j0)) * bi + (i - i0)) + c

    def _inside(self, index, value):
        inside, box = self.to_box(index)
        return box[inside], self.xp.asarray(value)[inside]

    def embed(self, u):
        """The box's solution on the full grid: the prescribed displacements at nodes of no
        voxel outside the box (as the full solve leaves them), 0 at the other such nodes."""
        xp, p = self.xp, self.full
        full = xp.zeros(self.node_shape + (3,), dtype=u.dtype)
        if p.u0 is not None:
            full[...] = xp.asarray(p.u0, dtype=u.dtype)
        elif p.u0_index is not None:
            add_at_flat(full, xp.asarray(p.u0_index, dtype=xp.int64),
                        xp.asarray(p.u0_value, dtype=u.dtype))
        full[self.nodes] = u
        return full


class _BoxSolver:
    """The solver of a cropped problem, answering :meth:`apply_at` on the full grid."""

    def __init__(self, solver, crop: _Crop):
        self.solver, self.crop = solver, crop
        self.levels = solver.levels

    def apply_at(self, u, dofs):
        """(A u) at full-grid flat dof indices (sorted): 0 at nodes outside the box, which
        belong to no voxel."""
        xp = self.crop.xp
        inside, box = self.crop.to_box(dofs)
        out = xp.zeros(inside.shape, dtype=xp.float64)
        if bool(xp.any(inside)):
            u_box = xp.ascontiguousarray(u[self.crop.nodes])
            out[inside] = self.solver.apply_at(u_box, box[inside])
        return out


def run_grid_solver(problem, be, info, *, rtol: float, atol: float, maxiter, precision: str,
                    callback, patience: bool = False):
    """Solve a :class:`fem.gmg.GridProblem` by matrix-free multigrid CG on backend ``be``;
    records setup and solve times, iterations, residuals, levels, held bytes and the true
    residual in ``info``. Returns (u on the grid (nz+1, ny+1, nx+1, 3), the solver).

    The multigrid works on the bounding box of the occupied voxels (:class:`_Crop`: an image's
    empty margins cut away); ``u`` and the solver's ``apply_at`` are on the full grid, while
    ``callback`` receives the iterate on the box and ``info.levels`` the box's hierarchy.
    ``patience``: give up early where the multigrid converges slowly (``fem.gmg.PATIENCE``)."""
    from .gmg import VoxelSolver

    t = time.perf_counter()
    crop = _Crop.of(problem, be)
    solver = VoxelSolver(crop.problem if crop else problem, be.xp, precision=precision)
    info.times["setup"] = time.perf_counter() - t
    logger.info("voxel multigrid: %s", ", ".join(
        f"{nx}x{ny}x{nz}" for (nx, ny, nz) in (lv.shape for lv in solver.levels)))
    u_grid, ginfo = solver.solve(rtol=rtol, atol=atol, maxiter=maxiter, callback=callback,
                                 patience=patience)
    info.times["solve"] = ginfo.times["solve"]
    info.iterations, info.residuals, info.residual = (ginfo.iterations, ginfo.residuals,
                                                      ginfo.residual)
    info.levels = [lv.shape for lv in solver.levels]
    info.held_bytes = ginfo.held_bytes
    info.true_residual = solver.true_residual(u_grid, ginfo)
    if crop is None:
        return u_grid, solver
    return crop.embed(u_grid), _BoxSolver(solver, crop)


def solve_on_grid(model: Model, grid: VoxelGrid, sysm, be, *, rtol: float, atol: float,
                  maxiter, precision: str, callback, info, patience: bool = False):
    """Solve ``model`` (whose conditions are compiled in ``sysm``) on its voxel grid by
    matrix-free multigrid CG; returns (u (n_nodes, 3), reaction values at sysm.fixed_dofs)."""
    if sysm.plates:
        raise SolverError("rigid plates are not supported on the voxel path: use solver='amg'")
    xp = be.xp
    t = time.perf_counter()
    gc = grid_conditions(model, grid, sysm)
    problem = gc.problem(grid, grid.moduli(model.E), xp)
    prep = time.perf_counter() - t
    u_grid, solver = run_grid_solver(problem, be, info, rtol=rtol, atol=atol, maxiter=maxiter,
                                     precision=precision, callback=callback, patience=patience)
    info.times["setup"] += prep
    flat = xp.reshape(u_grid, (-1, 3))
    node_index = xp.asarray(grid.node_index)
    u = flat[xp.maximum(node_index, 0)] * xp.asarray(grid.node_index >= 0)[:, None]
    r_fixed = xp.zeros(0)
    if len(gc.fixed_flat):
        order = np.argsort(gc.fixed_flat, kind="stable")
        at = solver.apply_at(u_grid, gc.fixed_flat[order])
        r_fixed = xp.empty(len(order))
        r_fixed[xp.asarray(order)] = at - xp.asarray(gc.f_fixed[order])
    return u, r_fixed
