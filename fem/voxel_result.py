"""The :class:`~fem.result.Result` of a voxel model solved on its grid (:mod:`fem.voxel`).

A :class:`VoxelResult` holds the displacement on the grid (nz+1, ny+1, nx+1, 3), the
conditions compiled on the grid (:class:`fem.voxel_system.GridSystem`) and the reactions at
the supported dofs, and answers every question of a :class:`~fem.result.Result` with the same
names, shapes and values: fields in the order of the hex8 view (nodes of the occupied voxels
and occupied voxels, both in grid order). Strains and stresses are recovered on the grid,
plane range by plane range, with the voxel kernels (:func:`fem.kernels.voxel.voxel_strain` at
each Gauss point of :func:`fem.kernels.voxel.gauss_gradients`; CUDA on a GPU). The hex8 view
itself (``result.model``, a :class:`~fem.model.Model`) and the compiled
:class:`fem.system.System` (``result.system``) are built only when asked for: :meth:`write`
streams the VTU (:mod:`fem.io.vtu_stream`) range of planes by range without them;
:meth:`to_pyvista` builds them.

Units as everywhere: mm, N, MPa.
"""

from __future__ import annotations

import math
from functools import cached_property
from pathlib import Path

import numpy as np

from .errors import InputFileError
from .kernels.backend import voxel_kernels
from .kernels.voxel import CORNER_OFFSETS, gauss_gradients
from .result import (
    STORED_CELL_FIELDS,
    UNITS_NOTE,
    VOIGT,
    Result,
    principal,
    summary_text,
    von_mises,
)

#: voxels per range of planes in the stress recovery and the streamed output (temporaries of
#: about 1 KB a voxel of the range: a few MB)
RECOVERY_VOXELS = 8_192


#: the Gauss points of :func:`fem.kernels.voxel.gauss_gradients` (corner order) in the order of
#: the hex8 rule of :mod:`fem.elements` (x fastest, then y, then z), which Result reports
POINT_ORDER = (0, 1, 3, 2, 4, 5, 7, 6)


def gauss_strain_operators(spacing) -> np.ndarray:
    """(8, 6, 24): the strain (Voigt xx, yy, zz, xy, yz, xz; tensor components) at each Gauss
    point of a box voxel (in :data:`POINT_ORDER`) from its 24 nodal displacements (corner-major,
    VTK order)."""
    G, _ = gauss_gradients(spacing)  # (8 points, 8 nodes, 3)
    G = G[list(POINT_ORDER)]
    B = np.zeros((8, 6, 8, 3))
    for c, (i, j) in enumerate(VOIGT):
        B[:, c, :, i] += 0.5 * G[:, :, j]
        B[:, c, :, j] += 0.5 * G[:, :, i]
    return B.reshape(8, 6, 24)


def _sed(eps, sig, xp):
    """1/2 sigma:eps of Voigt tensors (..., 6) (shear terms count twice)."""
    return 0.5 * (xp.sum(sig[..., :3] * eps[..., :3], axis=-1)
                  + 2.0 * xp.sum(sig[..., 3:] * eps[..., 3:], axis=-1))


class VoxelResult(Result):
    """The solution of ``fem.solve(voxel_model)`` on the grid (module docstring).

    ``grid_displacement`` (nz+1, ny+1, nx+1, 3) mm on the solve's backend is the answer itself;
    ``displacement``, ``stress``, ``strain`` and the derived fields are those of
    :class:`~fem.result.Result` on the hex8 view, computed when first asked for.
    """

    def __init__(self, voxels, grid_displacement, *, backend, grid_system, reaction_values,
                 bbar: bool, moduli=None, info=None):
        self.voxels = voxels
        #: the moduli (nz, ny, nx) on the backend (the solver's copy: they move to a GPU once)
        self.moduli = backend.xp.asarray(voxels.grid_moduli) if moduli is None else moduli
        self.backend = backend
        self.grid_displacement = grid_displacement
        self.grid_system = grid_system
        self.bbar = bool(bbar)
        self.info = info
        self._reaction_values = backend.to_host(reaction_values)
        self._plate_dofs = None
        self.extra_cell_fields: dict = {}

    # ------------------------------------------------------------ the hex8 view, when asked

    @cached_property
    def model(self):
        """The hex8 view (:meth:`fem.voxel.VoxelModel.to_model`), built on first use."""
        return self.voxels.to_model()

    @cached_property
    def system(self):
        """The conditions compiled on the hex8 view (:func:`fem.system.compile_conditions`)."""
        from .system import compile_conditions

        return compile_conditions(self.model)

    @cached_property
    def _solid(self):
        return self.voxels.grid_moduli > 0

    @cached_property
    def _nodes(self):
        """Flat grid indices of the hex8 view's nodes (nodes of occupied voxels), on xp."""
        from .voxel_system import active_mask

        return self.xp.asarray(np.flatnonzero(active_mask(self._solid)))

    @cached_property
    def _elements(self):
        """Flat grid indices of the hex8 view's elements (occupied voxels), on xp."""
        return self.xp.asarray(np.flatnonzero(self._solid))

    @property
    def n_nodes(self) -> int:
        return int(self._nodes.shape[0])

    @property
    def n_elements(self) -> int:
        return int(self._elements.shape[0])

    @cached_property
    def displacement(self):
        """Nodal displacement (n_nodes, 3) mm in the hex8 view's node order."""
        return self.xp.reshape(self.grid_displacement, (-1, 3))[self._nodes]

    # ------------------------------------------------------------ strains and stresses

    @cached_property
    def _operators(self):
        return [self.xp.asarray(B) for B in gauss_strain_operators(self.voxels.spacing)]

    def _plane_ranges(self, planes: int) -> list:
        """Ranges of about RECOVERY_VOXELS voxels (or nodes) over ``planes`` planes."""
        nz, ny, nx = self._solid.shape
        step = max(1, RECOVERY_VOXELS // max((nx + 1) * (ny + 1), 1))
        return [(a, min(planes, a + step)) for a in range(0, planes, step)]

    def _recover_planes(self, e0: int, e1: int, keep_points: bool):
        """:meth:`_stresses` of the occupied voxels of the voxel planes e0..e1-1."""
        xp = self.xp
        vm = self.voxels
        kern = voxel_kernels(xp)
        E = self.moduli
        _, ny, nx = E.shape
        solid = xp.reshape(E[e0:e1, ...] > 0, (-1,))
        eps = xp.empty((8, e1 - e0, ny, nx, 6))
        for g, B in enumerate(self._operators):
            kern.voxel_strain(self.grid_displacement, B, eps[g, ...], e0, e1)
        eps = xp.reshape(eps, (8, -1, 6))[:, solid, :]
        Ee = xp.reshape(E[e0:e1, ...], (-1,))[solid]
        lam1 = vm.nu / ((1.0 + vm.nu) * (1.0 - 2.0 * vm.nu))
        mu1 = 1.0 / (2.0 * (1.0 + vm.nu))
        return self._stresses(eps, Ee * lam1, Ee * mu1, keep_points)

    def _recover(self, keep_points: bool):
        """Strain and stress (Voigt) of the occupied voxels from the grid displacement, range of
        voxel planes by range: element averages and the strain energy density, or with
        ``keep_points`` the (n, 8, 6) values at the Gauss points."""
        parts = [self._recover_planes(e0, e1, keep_points)
                 for e0, e1 in self._plane_ranges(self._solid.shape[0])]
        return [self.xp.concatenate([p[i] for p in parts]) for i in range(len(parts[0]))]

    def _stresses(self, eps, lam, mu, keep_points: bool):
        """(strain, stress, sed) element averages of Gauss-point strains eps (8, m, 6), or the
        Gauss-point strains and stresses (m, 8, 6) with ``keep_points``."""
        xp = self.xp
        if self.bbar:  # the mean dilatation replaces each point's (fem.kernels.elastic.strains)
            theta = eps[..., 0] + eps[..., 1] + eps[..., 2]
            corr = (xp.mean(theta, axis=0)[None, :] - theta) / 3.0
            eps = xp.concatenate([eps[..., :3] + corr[..., None], eps[..., 3:]], axis=-1)
        tr = eps[..., 0] + eps[..., 1] + eps[..., 2]
        sig = 2.0 * mu[None, :, None] * eps
        sig = xp.concatenate([sig[..., :3] + (lam[None, :] * tr)[..., None], sig[..., 3:]],
                             axis=-1)
        if keep_points:
            return xp.moveaxis(eps, 0, 1), xp.moveaxis(sig, 0, 1)
        return xp.mean(eps, axis=0), xp.mean(sig, axis=0), xp.mean(_sed(eps, sig, xp), axis=0)

    @cached_property
    def _averages(self):
        return self._recover(keep_points=False)

    @cached_property
    def _ip(self):
        strain, stress = self._recover(keep_points=True)
        wdet = self.xp.full((strain.shape[0], 8), math.prod(self.voxels.spacing) / 8.0)
        return [(strain, stress, wdet)]

    @cached_property
    def strain(self):
        """Element-average strain (n_elements, 6): xx, yy, zz, xy, yz, xz."""
        return self._averages[0]

    @cached_property
    def stress(self):
        """Element-average Cauchy stress (n_elements, 6) in MPa: xx, yy, zz, xy, yz, xz."""
        return self._averages[1]

    @cached_property
    def strain_energy_density(self):
        """Element-average strain energy density 1/2 sigma:epsilon (MPa = mJ/mm^3)."""
        return self._averages[2]

    @cached_property
    def element_volume(self):
        """Element volumes (mm^3): the voxel's."""
        return self.xp.full(self.n_elements, math.prod(self.voxels.spacing))

    def strain_energy(self) -> float:
        """Total strain energy (N mm), integrated with the stiffness quadrature (= 1/2 u.K.u)."""
        return float(self.xp.sum(self.strain_energy_density) * math.prod(self.voxels.spacing))

    @cached_property
    def physical_stress(self):
        """:attr:`stress` (a voxel model has no thickness-compensated layers)."""
        return self.stress

    def nodal_average(self, values):
        """Average element values (n_elements, ...) at the nodes (mean over the occupied voxels
        at each node), on the grid."""
        xp = self.xp
        values = xp.asarray(values)
        nz, ny, nx = self._solid.shape
        flat = xp.reshape(values, (values.shape[0], -1))
        cols = flat.shape[1]
        V = xp.zeros((nz * ny * nx, cols))
        V[self._elements, :] = flat
        V = xp.reshape(V, (nz, ny, nx, cols))
        solid = xp.asarray(self._solid, dtype=xp.float64)
        acc = xp.zeros((nz + 1, ny + 1, nx + 1, cols))
        cnt = xp.zeros((nz + 1, ny + 1, nx + 1))
        for di, dj, dk in CORNER_OFFSETS:
            acc[dk:dk + nz, dj:dj + ny, di:di + nx, :] += V
            cnt[dk:dk + nz, dj:dj + ny, di:di + nx] += solid
        acc /= xp.maximum(cnt, 1.0)[..., None]
        out = xp.reshape(acc, (-1, cols))[self._nodes]
        return xp.reshape(out, (self.n_nodes,) + tuple(values.shape[1:]))

    # ------------------------------------------------------------ reactions

    @cached_property
    def reactions(self) -> dict:
        """Support reactions per constrained set: name -> force (3,) in N (as
        :attr:`fem.result.Result.reactions`: each constrained dof counts once, for the last
        condition that constrained it)."""
        gs = self.grid_system
        names = list(dict.fromkeys(gs.constraint_names))
        code = np.array([names.index(n) for n in gs.constraint_names], dtype=np.int64)
        owner = code[gs.fixed_owner] if len(gs.fixed_owner) else np.zeros(0, np.int64)
        comp = gs.fixed_dofs % 3
        return {name: np.bincount(comp[owner == c], weights=self._reaction_values[owner == c],
                                  minlength=3)[:3].astype(float)
                for c, name in enumerate(names)}

    def reaction_total(self) -> np.ndarray:
        """Sum of all support reaction forces (N), each constrained dof counted once."""
        return np.bincount(self.grid_system.fixed_dofs % 3, weights=self._reaction_values,
                           minlength=3)[:3].astype(float)

    def applied_total(self) -> np.ndarray:
        """Sum of all applied forces (N)."""
        return self.grid_system.applied_total()

    def balance(self) -> tuple[np.ndarray, float]:
        """(resultant (3,), forces involved) as :meth:`fem.result.Result.balance`."""
        scale = float(np.abs(self.grid_system.load_value).sum()
                      + np.abs(self._reaction_values).sum())
        return self.applied_total() + self.reaction_total(), scale

    def plate_motion(self, name: str) -> np.ndarray:
        raise KeyError(f"no rigid plate named {name!r}")

    # ------------------------------------------------------------ output

    def cell_fields(self) -> dict:
        """Host arrays of the per-element output fields, in the hex8 view's element order."""
        h = self.backend.to_host
        n = self.n_elements
        return {
            "element_id": np.arange(1, n + 1, dtype=np.int64),
            **{name: h(getattr(self, name)) for name in STORED_CELL_FIELDS},
            "E": self.voxels.grid_moduli.ravel()[h(self._elements)],
            "nu": np.full(n, self.voxels.nu),
            "region": np.full(n, -1, dtype=np.int64),
            **self.extra_cell_fields,
        }

    def point_fields(self) -> dict:
        h = self.backend.to_host
        return {
            "displacement": h(self.displacement),
            "node_id": np.arange(1, self.n_nodes + 1, dtype=np.int64),
            "von_mises_nodal": h(self.nodal_average(self.von_mises)),
        }

    def write(self, path, *, compression: str | None = "zlib") -> Path:
        """Write a VTU file atomically, streamed from the grid: the same arrays as
        :meth:`fem.result.Result.write` (the hex8 view's points and cells, every output field),
        each produced and compressed range of planes by range from the element-average strain,
        stress and energy density (computed once, and kept, as when asked for), so that no
        point or cell array, no derived field and no :class:`~fem.model.Model` is built."""
        from .io.vtu_stream import VTK_HEXAHEDRON, StreamedArray, write_vtu_streamed

        path = Path(path)
        if path.suffix.lower() == ".vti":
            return self._write_vti(path, compression)
        if path.suffix.lower() != ".vtu":
            raise InputFileError(f"output file {path} must end in .vtu (the occupied voxels as "
                                 "hex8 cells) or .vti (the whole image grid)")
        if compression not in ("zlib", None):
            return super().write(path, compression=compression)
        cells = _CellStreams(self)
        nodes = _NodeStreams(self)
        return write_vtu_streamed(
            path, self.n_nodes, self.n_elements,
            StreamedArray("Points", np.float64, 3, nodes.points),
            StreamedArray("connectivity", np.int64, 1, cells.connectivity), 8, VTK_HEXAHEDRON,
            [StreamedArray("displacement", np.float64, 3, nodes.displacement),
             StreamedArray("node_id", np.int64, 1, nodes.ids),
             StreamedArray("von_mises_nodal", np.float64, 1, nodes.von_mises)],
            [StreamedArray(name, dtype, k, cells.field(name))
             for name, dtype, k in _CellStreams.fields(self)],
            {UNITS_NOTE: 1}, compression=compression)

    def _write_vti(self, path: Path, compression) -> Path:
        """VTK ImageData of the whole grid (:meth:`write` to a ``.vti``): no points or cells are
        written (the image's origin and spacing place them), so the file holds the fields alone.
        The arrays of the VTU, under the same names, over every voxel and node of the image:
        empty voxels and the nodes of none hold 0 (``region`` -1, as in the VTU); the cell
        array ``solid`` (1 occupied, 0 empty) tells them apart (ParaView: Threshold on it)."""
        from .io.vtu_stream import StreamedArray, write_vti_streamed

        if compression not in ("zlib", None):
            raise InputFileError(f"compression of a .vti must be 'zlib' or None, got "
                                 f"{compression!r}")
        cells = _CellStreams(self)
        nodes = _NodeStreams(self)
        vm = self.voxels
        return write_vti_streamed(
            path, vm.shape, vm.origin, vm.spacing,
            [StreamedArray("displacement", np.float64, 3, nodes.grid_displacement),
             StreamedArray("node_id", np.int64, 1, nodes.grid_ids),
             StreamedArray("von_mises_nodal", np.float64, 1, nodes.grid_von_mises)],
            [StreamedArray("solid", np.uint8, 1, cells.solid)]
            + [StreamedArray(name, dtype, k, cells.on_grid(name, dtype, k))
               for name, dtype, k in _CellStreams.fields(self)],
            {UNITS_NOTE: 1}, compression=compression)

    def to_meshio(self):
        """A :class:`meshio.Mesh` of the hex8 view with every output field (what :meth:`write`
        writes), from the grid's arrays (no :class:`~fem.model.Model` is built)."""
        import meshio

        points, conn, _, _ = self.voxels.hex8_arrays()
        cf = self.cell_fields()
        return meshio.Mesh(points, [("hexahedron", conn)], point_data=self.point_fields(),
                           cell_data={k: [v] for k, v in cf.items()},
                           field_data={UNITS_NOTE: np.array([1])})

    def summary(self) -> str:
        return summary_text(self, self.n_nodes, self.n_elements, 3 * self.n_nodes,
                            von_mises(self.stress))


# ---------------------------------------------------------------------- streamed output

def active_planes(solid, k0: int, k1: int) -> np.ndarray:
    """(k1-k0, ny+1, nx+1) True on the nodes of node planes k0..k1-1 that belong to an
    occupied voxel (``solid`` (nz, ny, nx))."""
    nz, ny, nx = solid.shape
    out = np.zeros((k1 - k0, ny + 1, nx + 1), dtype=bool)
    for di, dj, dk in CORNER_OFFSETS:
        lo, hi = max(k0, dk), min(k1, nz + dk)  # node plane k touches voxel plane k - dk
        if hi > lo:
            out[lo - k0:hi - k0, dj:dj + ny, di:di + nx] |= solid[lo - dk:hi - dk]
    return out


class _NodeStreams:
    """The point arrays of a VoxelResult's VTU, node-plane range by range."""

    def __init__(self, result: VoxelResult):
        self.r = result
        self.solid = result._solid
        self.ranges = result._plane_ranges(self.solid.shape[0] + 1)

    def _each(self):
        for k0, k1 in self.ranges:
            yield k0, k1, active_planes(self.solid, k0, k1)

    def points(self):
        vm = self.r.voxels
        for k0, _, act in self._each():
            k, j, i = np.nonzero(act)
            yield np.stack([vm.origin[0] + i * vm.spacing[0], vm.origin[1] + j * vm.spacing[1],
                            vm.origin[2] + (k + k0) * vm.spacing[2]], axis=1)

    def displacement(self):
        h = self.r.backend.to_host
        for k0, k1, act in self._each():
            yield h(self.r.grid_displacement[k0:k1, ...])[act]

    def ids(self):
        start = 1
        for _, _, act in self._each():
            n = int(act.sum())
            yield np.arange(start, start + n, dtype=np.int64)
            start += n

    def grid_displacement(self):
        """Displacement of every node of the image (0 at the nodes of no occupied voxel)."""
        h = self.r.backend.to_host
        for k0, k1, act in self._each():
            yield np.where(act[..., None], h(self.r.grid_displacement[k0:k1, ...]), 0.0)

    def grid_ids(self):
        """The hex8 view's node numbers on every node of the image (0: a node of none)."""
        start = 1
        for _, _, act in self._each():
            ids = np.zeros(act.shape, dtype=np.int64)
            n = int(act.sum())
            ids[act] = np.arange(start, start + n, dtype=np.int64)
            start += n
            yield ids

    def von_mises(self):
        """The nodal average of the voxels' von Mises stress (Result.nodal_average)."""
        for act, values in self._von_mises_planes():
            yield values[act]

    def grid_von_mises(self):
        """The same on every node of the image (0 at the nodes of no occupied voxel)."""
        for _, values in self._von_mises_planes():
            yield values

    def _von_mises_planes(self):
        vm_all = self.r.backend.to_host(self.r.von_mises)
        start = element_offsets(self.solid)
        nz, ny, nx = self.solid.shape
        for k0, k1, act in self._each():
            e0, e1 = max(k0 - 1, 0), min(k1, nz)
            occupied = self.solid[e0:e1]
            vm = np.zeros((e1 - e0, ny, nx))
            vm[occupied] = vm_all[start[e0]:start[e1]]
            acc = np.zeros((k1 - k0, ny + 1, nx + 1))
            cnt = np.zeros((k1 - k0, ny + 1, nx + 1))
            for di, dj, dk in CORNER_OFFSETS:
                lo, hi = max(k0, e0 + dk), min(k1, e1 + dk)
                if hi > lo:
                    acc[lo - k0:hi - k0, dj:dj + ny, di:di + nx] += vm[lo - dk - e0:hi - dk - e0]
                    cnt[lo - k0:hi - k0, dj:dj + ny, di:di + nx] += occupied[lo - dk - e0:
                                                                             hi - dk - e0]
            yield act, acc / np.maximum(cnt, 1.0)


def element_offsets(solid) -> np.ndarray:
    """(nz+1,): the hex8 view's index of the first occupied voxel of each voxel plane."""
    return np.concatenate([[0], np.cumsum(solid.sum(axis=(1, 2)))]).astype(np.int64)


class _CellStreams:
    """The cells and cell arrays of a VoxelResult's VTU, voxel-plane range by range."""

    def __init__(self, result: VoxelResult):
        self.r = result
        self.solid_mask = result._solid
        self.ranges = result._plane_ranges(self.solid_mask.shape[0])

    @staticmethod
    def fields(result) -> list:
        extra = [(k, np.asarray(v).dtype, int(np.prod(np.asarray(v).shape[1:], dtype=int)))
                 for k, v in result.extra_cell_fields.items()]
        return [("element_id", np.int64, 1), ("stress", np.float64, 6),
                ("strain", np.float64, 6), ("von_mises", np.float64, 1),
                ("principal_stress", np.float64, 3), ("principal_strain", np.float64, 3),
                ("strain_energy_density", np.float64, 1), ("E", np.float64, 1),
                ("nu", np.float64, 1), ("region", np.int64, 1)] + extra

    def connectivity(self):
        """Node numbers (the hex8 view's: rank among the nodes of occupied voxels in grid
        order) of each occupied voxel's corners, VTK order."""
        nz = self.solid_mask.shape[0]
        counts = [int(active_planes(self.solid_mask, k, k + 1).sum()) for k in range(nz + 1)]
        offset = np.concatenate([[0], np.cumsum(counts)])
        for e0, e1 in self.ranges:
            act = active_planes(self.solid_mask, e0, e1 + 1)
            flat = act.reshape(e1 + 1 - e0, -1)
            rank = (np.cumsum(flat, axis=1) - 1 + offset[e0:e1 + 1, None]).reshape(act.shape)
            e, j, i = np.nonzero(self.solid_mask[e0:e1])
            yield np.stack([rank[e + dk, j + dj, i + di] for di, dj, dk in CORNER_OFFSETS],
                           axis=1)

    def solid(self):
        """1 on the occupied voxels, 0 on the empty ones, range by range (the image's cells)."""
        for e0, e1 in self.ranges:
            yield self.solid_mask[e0:e1].astype(np.uint8)

    def on_grid(self, name: str, dtype, components: int):
        """A function yielding cell array ``name`` over every voxel of the image, range by
        range: the occupied voxels' values, 0 in the empty ones (``region``: -1)."""
        fill = -1 if name == "region" else 0
        chunks = self.field(name)

        def grid():
            for (e0, e1), values in zip(self.ranges, chunks()):
                occupied = self.solid_mask[e0:e1]
                tail = (components,) if components > 1 else ()
                full = np.full(occupied.shape + tail, fill, dtype=dtype)
                full[occupied] = np.asarray(values).reshape((-1,) + tail)
                yield full
        return grid

    def field(self, name: str):
        """A function yielding the chunks of cell array ``name``."""
        r = self.r
        h = r.backend.to_host
        start = element_offsets(self.solid_mask)
        derived = {"von_mises": ("stress", von_mises), "principal_stress": ("stress", principal),
                   "principal_strain": ("strain", principal)}

        def values(a, b):
            if name == "element_id":
                return np.arange(a + 1, b + 1, dtype=np.int64)
            if name == "nu":
                return np.full(b - a, r.voxels.nu)
            if name == "region":
                return np.full(b - a, -1, dtype=np.int64)
            if name in r.extra_cell_fields:
                return np.asarray(r.extra_cell_fields[name])[a:b]
            if name in derived:
                base, fn = derived[name]
                return h(fn(getattr(r, base)[a:b]))
            return h(getattr(r, name)[a:b])

        def chunks():
            for e0, e1 in self.ranges:
                a, b = int(start[e0]), int(start[e1])
                if name == "E":
                    yield r.voxels.grid_moduli[e0:e1][self.solid_mask[e0:e1]]
                else:
                    yield values(a, b)
        return chunks
