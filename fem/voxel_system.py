"""The conditions of a :class:`~fem.voxel.VoxelModel` compiled on its grid, and the checks
before its solve, without a hex8 :class:`~fem.model.Model`.

:func:`compile_on_grid` gives a :class:`GridSystem`: the supported dofs as bits of the node grid
and a sorted list of flat dofs with their prescribed values, the loads as flat dofs and values.
Its numbers are those :func:`fem.system.compile_conditions` gives for
:meth:`VoxelModel.to_model <fem.voxel.VoxelModel.to_model>` (same sums in the same order), but
they cost memory only where a condition acts (a plane, a node set), never per node of the grid.
:func:`check_supports` is :func:`fem.system.check_constraints` on the grid: the parts are the
voxels' connected components (sharing a node), the rigid-body motions their supports leave free
are named the same way, and parts held only through an edge or a node of another part (a hinge)
are found with the voxels' face-connected components.

Targets as on the hex8 view: the planes ``xmin`` ... ``zmax`` (node and face sets of the
occupied voxels on them), node sets added with ``add_node_set``, node indices and
``(elements, faces)`` pairs in the numbering of ``to_model()`` (nodes of occupied voxels and
occupied voxels, both in grid order). Grid nodes are numbered ``i + (nx+1) (j + (ny+1) k)``,
dofs ``3 node + component``. Units: mm, N, MPa.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import loads as L
from .errors import (
    BoundaryConditionError,
    MechanismError,
    SetError,
    UnderConstrainedError,
    format_labels,
)
from .grid import PLANE_FACE, PLANES
from .kernels.voxel import CORNER_OFFSETS
from .system import face_vectors, free_motions, moving_part, rigid_rows

#: corners (indices into CORNER_OFFSETS) of each hex8 face, Abaqus S1..S6 (fem.elements)
FACE_CORNERS = ((0, 3, 2, 1), (4, 5, 6, 7), (0, 1, 5, 4), (1, 2, 6, 5), (2, 3, 7, 6),
                (3, 0, 4, 7))
#: rigid-body rows reduced per chunk of this many supported dofs (bounded temporaries)
ROW_CHUNK = 65_536


@dataclass
class GridSystem:
    """The conditions on the grid (host arrays). ``bits`` (nz+1, ny+1, nx+1) uint8, bits 0-2 on
    supported dofs; ``fixed_dofs`` sorted flat dofs, ``fixed_values`` (mm) and ``fixed_owner``
    (index into ``constraint_names``: the last condition that prescribed the dof, as
    :attr:`fem.system.System.fixed_owners`); ``constraint_names`` the name of each support
    condition in order; ``load_index`` sorted flat dofs with a non-zero load, ``load_value`` (N)."""

    bits: np.ndarray
    fixed_dofs: np.ndarray
    fixed_values: np.ndarray
    fixed_owner: np.ndarray
    constraint_names: list
    load_index: np.ndarray
    load_value: np.ndarray

    def loads_at(self, dofs) -> np.ndarray:
        """The load (N) at each flat dof of ``dofs`` (0 where none)."""
        dofs = np.asarray(dofs, dtype=np.int64)
        pos = np.searchsorted(self.load_index, dofs)
        pos = np.minimum(pos, max(len(self.load_index) - 1, 0))
        hit = (len(self.load_index) > 0) & (self.load_index[pos] == dofs)
        return np.where(hit, self.load_value[pos] if len(self.load_index) else 0.0, 0.0)

    def applied_total(self) -> np.ndarray:
        """Sum of the applied forces (N)."""
        return np.bincount(self.load_index % 3, weights=self.load_value, minlength=3)[:3]

    def problem(self, E, nu: float, spacing, bbar: bool, xp):
        """The :class:`fem.gmg.GridProblem` of moduli E (nz, ny, nx) on ``xp`` (E goes to the
        device once; the prescribed values travel as (index, value), not as a grid)."""
        from .gmg import GridProblem

        moving = np.nonzero(self.fixed_values != 0.0)[0]
        return GridProblem(E=xp.asarray(E), nu=nu, spacing=tuple(spacing),
                           bits=xp.asarray(self.bits), load_index=xp.asarray(self.load_index),
                           load_value=xp.asarray(self.load_value), bbar=bbar,
                           u0_index=xp.asarray(self.fixed_dofs[moving]) if len(moving) else None,
                           u0_value=xp.asarray(self.fixed_values[moving]))


# ---------------------------------------------------------------------- targets on the grid

def _node_index(shape, i, j, k):
    nx, ny, _ = shape
    return i + (nx + 1) * (j + (ny + 1) * k)


def grid_ijk(shape, nodes) -> tuple:
    """(i, j, k) grid indices of flat node indices."""
    nx, ny, _ = shape
    k, rem = np.divmod(np.asarray(nodes, dtype=np.int64), (nx + 1) * (ny + 1))
    j, i = np.divmod(rem, nx + 1)
    return i, j, k


def active_nodes_at(solid, nodes) -> np.ndarray:
    """True for the flat node indices that belong to an occupied voxel (``solid`` (nz, ny, nx))."""
    nz, ny, nx = solid.shape
    i, j, k = grid_ijk((nx, ny, nz), nodes)
    out = np.zeros(len(i), dtype=bool)
    for di, dj, dk in CORNER_OFFSETS:
        vi, vj, vk = i - di, j - dj, k - dk
        ok = (vi >= 0) & (vi < nx) & (vj >= 0) & (vj < ny) & (vk >= 0) & (vk < nz)
        out[ok] |= solid[vk[ok], vj[ok], vi[ok]]
    return out


def active_mask(solid) -> np.ndarray:
    """(nz+1, ny+1, nx+1) True on the nodes of occupied voxels (1 byte a node)."""
    nz, ny, nx = solid.shape
    touch = np.zeros((nz + 1, ny + 1, nx + 1), dtype=bool)
    for di, dj, dk in CORNER_OFFSETS:
        touch[dk:dk + nz, dj:dj + ny, di:di + nx] |= solid
    return touch


class GridTargets:
    """Node and face targets of conditions resolved on the grid of ``vm``, as the hex8 view
    (:meth:`fem.voxel.VoxelModel.to_model`) resolves them (same sets, same errors)."""

    def __init__(self, vm):
        self.vm = vm
        self.solid = vm.grid_moduli > 0
        self.shape = vm.shape
        self._active = None
        self._voxels = None
        for name, nodes in vm.node_sets.items():
            if not active_nodes_at(self.solid, nodes).any():
                raise SetError(f"node set {name!r} has no node on an occupied voxel")

    @property
    def active(self) -> np.ndarray:
        """Flat indices of the nodes of occupied voxels: the hex8 view's nodes."""
        if self._active is None:
            self._active = np.flatnonzero(active_mask(self.solid))
        return self._active

    @property
    def voxels(self) -> np.ndarray:
        """Flat indices of the occupied voxels: the hex8 view's elements."""
        if self._voxels is None:
            self._voxels = np.flatnonzero(self.solid)
        return self._voxels

    def plane_nodes(self, name: str) -> np.ndarray:
        nx, ny, nz = self.shape
        axis = "xyz".index(name[0])
        at = 0 if name.endswith("min") else self.shape[axis]
        ranges = [np.arange(nx + 1), np.arange(ny + 1), np.arange(nz + 1)]
        ranges[axis] = np.array([at])
        k, j, i = np.meshgrid(ranges[2], ranges[1], ranges[0], indexing="ij")
        nodes = _node_index(self.shape, i.ravel(), j.ravel(), k.ravel())
        return nodes[active_nodes_at(self.solid, nodes)]

    def plane_faces(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """(flat voxel indices, hex8 face ids) of the occupied voxels' faces on a plane."""
        nx, ny, nz = self.shape
        axis = "xyz".index(name[0])
        at = 0 if name.endswith("min") else self.shape[axis] - 1
        key = [slice(None)] * 3
        key[2 - axis] = slice(at, at + 1)
        idx = np.arange(nx * ny * nz).reshape(nz, ny, nx)[tuple(key)]
        vox = idx[self.solid[tuple(key)]]
        return vox, np.full(len(vox), PLANE_FACE[name])

    def nodes(self, target) -> np.ndarray:
        """Sorted flat node indices of a target (Model.nodes_of on the hex8 view)."""
        if isinstance(target, str):
            if target in self.vm.node_sets:
                g = np.unique(self.vm.node_sets[target])
                nodes = g[active_nodes_at(self.solid, g)]
            elif target in PLANES:
                nodes = self.plane_nodes(target)
            else:
                known = sorted(set(PLANES) | set(self.vm.node_sets))
                raise SetError(f"unknown node set {target!r} (defined: {', '.join(known)})")
            if len(nodes) == 0:
                raise SetError(f"set {target!r} is empty")
            return nodes
        if isinstance(target, tuple):
            vox, face = self.faces(target)
            return np.unique(self._face_corner_nodes(vox, face))
        nodes = np.asarray(target, dtype=np.int64)
        if len(nodes) == 0:
            raise SetError("a node target is empty")
        n = len(self.active)
        bad = (nodes < 0) | (nodes >= n)
        if bad.any():
            raise SetError(f"node indices {format_labels(nodes[bad])} do not exist "
                           f"(the model has {n} nodes)")
        return self.active[np.unique(nodes)]

    def faces(self, target) -> tuple[np.ndarray, np.ndarray]:
        """(flat voxel indices, hex8 face ids 0..5) of a face target (Model.faces_of)."""
        if isinstance(target, str):
            if target not in PLANES:
                hint = (" (it is a node set; surface loads need a face set)"
                        if target in self.vm.node_sets else "")
                raise SetError(f"unknown face set {target!r} (defined: "
                               f"{', '.join(sorted(PLANES))})" + hint)
            vox, face = self.plane_faces(target)
            if len(vox) == 0:
                raise SetError(f"face set {target!r} is empty")
            return vox, face
        if isinstance(target, tuple):
            e = np.asarray(target[0], dtype=np.int64).ravel()
            f = np.asarray(target[1], dtype=np.int64).ravel()
            n = len(self.voxels)
            if len(e) == 0:
                raise SetError("face target is empty")
            if e.min() < 0 or e.max() >= n:
                raise SetError(f"face target refers to element indices outside 0..{n - 1}")
            if f.min() < 0 or f.max() > 5:
                raise SetError("face target: a hex8 element has faces 0..5 (S1..S6)")
            key = np.unique(e * 8 + f)  # as a FaceSet: sorted, each face once
            return self.voxels[key // 8], key % 8
        raise SetError("surface loads need a face set name or (elements, faces) arrays")

    def _face_corner_nodes(self, vox, face) -> np.ndarray:
        """(n, 4) flat node indices of the corners of faces ``face`` of voxels ``vox``."""
        nx, ny, _ = self.shape
        k, rem = np.divmod(vox, nx * ny)
        j, i = np.divmod(rem, nx)
        corners = np.array(FACE_CORNERS)[face]  # (n, 4) corner numbers
        off = np.array(CORNER_OFFSETS)[corners]  # (n, 4, 3)
        return _node_index(self.shape, i[:, None] + off[..., 0], j[:, None] + off[..., 1],
                           k[:, None] + off[..., 2])

    def face_loads(self, cond) -> tuple[np.ndarray, np.ndarray]:
        """(flat dofs, forces N) of a Pressure, Traction or TotalForce: the consistent nodal
        loads of :func:`fem.system.add_face_load`, by the same quadrature on the same corner
        coordinates (so the same numbers to the last bit)."""
        vox, face = self.faces(cond.target)
        nodes = self._face_corner_nodes(vox, face)  # (n, 4)
        X = _points(self.vm, nodes.ravel()).reshape(nodes.shape + (3,))
        nvec, area = face_vectors("quad4", X)
        if isinstance(cond, L.Pressure):
            force = -cond.pressure * nvec
        else:
            t = np.asarray(cond.traction if isinstance(cond, L.Traction) else cond.force,
                           dtype=float)
            if isinstance(cond, L.TotalForce):
                t = t / area.sum()
            force = area[..., None] * t
        dofs = 3 * nodes[:, :, None] + np.arange(3)  # (n, 4, 3)
        return dofs.ravel(), force.ravel()


# ---------------------------------------------------------------------- compile

def compile_on_grid(vm) -> GridSystem:
    """The supports and loads of ``vm.conditions`` on its grid (raises as
    :func:`fem.system.compile_conditions` does on conflicting prescribed values and unknown or
    empty sets). Rigid plates are not compiled here: a model with one is solved on its hex8
    view."""
    targets = GridTargets(vm)
    fixed, loads, names = [], [], []
    for c in vm.conditions:
        name = L.describe(c)
        if isinstance(c, L.CONSTRAINTS):
            nodes = targets.nodes(c.target)
            for comp, v in enumerate(c.values()):
                if v is not None:
                    fixed.append((3 * nodes + comp, np.full(len(nodes), float(v)),
                                  np.full(len(nodes), len(names))))
            names.append(name)
        elif isinstance(c, L.NodalForce):
            nodes = targets.nodes(c.target)
            dofs = 3 * nodes[:, None] + np.arange(3)
            loads.append((dofs.ravel(), c.forces(nodes).ravel()))
        elif isinstance(c, L.FACE_LOADS):
            loads.append(targets.face_loads(c))
        else:
            raise BoundaryConditionError(f"{type(c).__name__} {name!r} is not compiled on a "
                                         "voxel grid (solve the model's hex8 view)")
    nx, ny, nz = vm.shape
    bits = np.zeros((nz + 1) * (ny + 1) * (nx + 1), dtype=np.uint8)
    dofs, values, owner = _prescribed(fixed, names, vm.shape)
    np.bitwise_or.at(bits, dofs // 3, (1 << (dofs % 3)).astype(np.uint8))
    index, value = _summed_loads(loads)
    return GridSystem(bits.reshape(nz + 1, ny + 1, nx + 1), dofs, values, owner, names, index,
                      value)


def _prescribed(fixed, names, shape):
    """Sorted unique dofs, their values and owners (the last condition that prescribed each),
    refusing a dof prescribed twice with different values."""
    if not fixed:
        return np.zeros(0, np.int64), np.zeros(0), np.zeros(0, np.int64)
    dofs = np.concatenate([d for d, _, _ in fixed])
    vals = np.concatenate([v for _, v, _ in fixed])
    owner = np.concatenate([o for _, _, o in fixed])
    order = np.argsort(dofs, kind="stable")  # condition order kept within a dof
    dofs, vals, owner = dofs[order], vals[order], owner[order]
    last = np.ones(len(dofs), dtype=bool)
    last[:-1] = dofs[1:] != dofs[:-1]
    first = np.ones(len(dofs), dtype=bool)
    first[1:] = dofs[1:] != dofs[:-1]
    start = np.maximum.accumulate(np.where(first, np.arange(len(dofs)), 0))
    clash = vals != vals[start]
    if clash.any():
        at = int(np.argmax(clash))
        i, j, k = (int(v[0]) for v in grid_ijk(shape, [dofs[at] // 3]))
        raise BoundaryConditionError(
            f"conflicting prescribed displacement at grid node ({i}, {j}, {k}) "
            f"({'xyz'[dofs[at] % 3]}): {vals[start[at]]:g} mm from {names[owner[start[at]]]!r} "
            f"and {vals[at]:g} mm from {names[owner[at]]!r}")
    return dofs[last], vals[last], owner[last]


def _summed_loads(loads):
    """Sorted flat dofs with a non-zero load and the load there (N), each dof's terms summed in
    the order of the conditions and faces (as the hex8 view's load vector adds them)."""
    if not loads:
        return np.zeros(0, np.int64), np.zeros(0)
    idx = np.concatenate([i for i, _ in loads])
    val = np.concatenate([v for _, v in loads])
    index, inverse = np.unique(idx, return_inverse=True)
    value = np.bincount(inverse, weights=val, minlength=len(index))
    keep = value != 0.0
    return index[keep], value[keep]


# ---------------------------------------------------------------------- rigid-body checks

def node_labels(labels) -> np.ndarray:
    """(nz+1, ny+1, nx+1) int32: the largest label of the voxels at each node (0: none)."""
    nz, ny, nx = labels.shape
    out = np.zeros((nz + 1, ny + 1, nx + 1), dtype=labels.dtype)
    for di, dj, dk in CORNER_OFFSETS:
        view = out[dk:dk + nz, dj:dj + ny, di:di + nx]
        np.maximum(view, labels, out=view)
    return out


def _points(vm, nodes) -> np.ndarray:
    i, j, k = grid_ijk(vm.shape, nodes)
    ox, oy, oz = vm.origin
    hx, hy, hz = vm.spacing
    return np.stack([ox + i * hx, oy + j * hy, oz + k * hz], axis=1)


def _reduced_rows(vm, dofs, centre, L: float) -> np.ndarray:
    """At most six rows with the singular values and row space of the rigid-body rows
    (:func:`fem.system.rigid_rows`) at the flat dofs ``dofs``, reduced chunk by chunk (QR)."""
    R = np.zeros((0, 6))
    for a in range(0, len(dofs), ROW_CHUNK):
        d = dofs[a:a + ROW_CHUNK]
        rows = rigid_rows(_points(vm, d // 3), centre, L).reshape(len(d), 3, 6)
        C = np.vstack([R, rows[np.arange(len(d)), d % 3]])
        R = np.linalg.qr(C, mode="r") if len(C) > 6 else C
    return R


def _part_geometry(vm, labels, node_lab, n: int):
    """Per part (label 1..n): the mean of its nodes (mm) and the largest extent L (mm)."""
    from scipy import ndimage

    ox = np.asarray(vm.origin)
    h = np.asarray(vm.spacing)
    com = ndimage.center_of_mass(node_lab > 0, node_lab, np.arange(1, n + 1))
    centres = [ox + np.asarray(c)[::-1] * h for c in com]
    extents = []
    for sl in ndimage.find_objects(labels, n):
        span = np.array([s.stop - s.start for s in sl])[::-1] * h  # voxels -> nodes span
        extents.append(float(span.max()) or 1.0)
    return centres, extents


def check_supports(vm, gs: GridSystem) -> None:
    """Raise :class:`~fem.UnderConstrainedError` if the supports leave a rigid-body motion of a
    part (voxels connected through faces, edges or nodes) free, as
    :func:`fem.system.check_constraints`; then :func:`check_hinges`."""
    from scipy import ndimage

    solid = vm.grid_moduli > 0
    labels, n = ndimage.label(solid, structure=np.ones((3, 3, 3), dtype=bool))
    node_lab = node_labels(labels)
    part = node_lab.ravel()[gs.fixed_dofs // 3]
    order = np.argsort(part, kind="stable")
    cuts = np.searchsorted(part[order], np.arange(1, n + 2))
    centres, extents = _part_geometry(vm, labels, node_lab, n)
    problems = []
    for c in range(1, n + 1):
        dofs = gs.fixed_dofs[order[cuts[c - 1]:cuts[c]]]
        if not len(dofs) and problems:
            problems.append((c, None))  # all six motions free; only the first is named
            continue
        C = _reduced_rows(vm, dofs, centres[c - 1], extents[c - 1])
        free = free_motions(C, centres[c - 1], extents[c - 1])
        if free:
            problems.append((c, free))
    if problems:
        c, free = problems[0]
        where = ""
        if n > 1:
            i, j, k = (int(v[0]) for v in grid_ijk(vm.shape, [np.argmax(node_lab.ravel() == c)]))
            where = f" of the part containing grid node ({i}, {j}, {k})"
        more = f" ({len(problems)} unsupported parts in all)" if len(problems) > 1 else ""
        raise UnderConstrainedError(
            f"the model is under-constrained: rigid-body motion(s) {', '.join(free)}{where} are "
            f"free{more}; add supports (Fixed/Displacement) that stop them", free_motions=free)
    del labels, node_lab
    check_hinges(vm, gs, solid, n)


def _joints(labels):
    """Nodes where voxels of two face-connected parts meet: (flat nodes, part a, part b) with
    a the node's lowest part (labels 1..), one row per other part; and each node's lowest part
    (0 where none)."""
    nz, ny, nx = labels.shape
    big = np.iinfo(labels.dtype).max
    lo = np.full((nz + 1, ny + 1, nx + 1), big, dtype=labels.dtype)
    lab_lo = np.where(labels > 0, labels, big)
    for di, dj, dk in CORNER_OFFSETS:
        view = lo[dk:dk + nz, dj:dj + ny, di:di + nx]
        np.minimum(view, lab_lo, out=view)
    del lab_lo
    hi = node_labels(labels)
    lo[lo == big] = 0
    jn = np.flatnonzero((hi != lo).ravel())
    i, j, k = grid_ijk((nx, ny, nz), jn)
    around = np.zeros((len(jn), 8), dtype=np.int64)
    for c, (di, dj, dk) in enumerate(CORNER_OFFSETS):
        vi, vj, vk = i - di, j - dj, k - dk
        ok = (vi >= 0) & (vi < nx) & (vj >= 0) & (vj < ny) & (vk >= 0) & (vk < nz)
        around[ok, c] = labels[vk[ok], vj[ok], vi[ok]]
    low = lo.ravel()[jn]
    rows = [(jn[r], low[r], p) for r in range(len(jn))
            for p in sorted(set(around[r].tolist()) - {0, int(low[r])})]
    node, a, b = (np.array(v, dtype=np.int64) for v in zip(*rows)) if rows else (
        np.zeros(0, np.int64),) * 3
    return node, a, b, lo


def check_hinges(vm, gs: GridSystem, solid, n_parts: int) -> None:
    """Raise :class:`~fem.MechanismError` if a face-connected part of the voxels is held only
    through a node or an edge of another (:func:`fem.system.check_mechanisms` on the grid)."""
    from scipy import ndimage

    labels, ng = ndimage.label(solid)
    if ng == n_parts:  # every part is face-connected: no hinge
        return
    jn, a, b, lowest = _joints(labels)
    active = np.flatnonzero(lowest.ravel() > 0)
    pts = _points(vm, active)
    centre = pts.mean(axis=0)
    L = float(np.max(np.ptp(pts, axis=0))) or 1.0
    del pts, active
    owner = lowest.ravel()[gs.fixed_dofs // 3] - 1
    supports = {g: _reduced_rows(vm, gs.fixed_dofs[owner == g], centre, L) for g in range(ng)}
    found = moving_part(ng, supports, (_points(vm, jn), a - 1, b - 1), centre, L)
    if found is None:
        return
    g, free = found
    size = int((labels == g + 1).sum())
    k, j, i = np.unravel_index(int(np.argmax(labels == g + 1)), labels.shape)
    hinge = np.unique(np.concatenate([jn[a == g + 1], jn[b == g + 1]]))
    hi, hj, hk = grid_ijk(vm.shape, hinge[:10])
    nodes = ", ".join(f"({x}, {y}, {z})" for x, y, z in zip(hi, hj, hk))
    more = f", ... ({len(hinge)} in all)" if len(hinge) > 10 else ""
    what = f" ({', '.join(free)})" if free else ""
    raise MechanismError(
        f"the model is a mechanism: a part of {size} element(s) (voxels; the first at ({i}, {j}, "
        f"{k})) is joined "
        f"to the rest only through grid node(s) {nodes}{more}, a hinge about which it moves "
        f"freely{what}; parts must share voxel faces (or be supported on their own)",
        free_motions=free)
