"""The finite-element model: nodes, cells, named sets, materials, boundary conditions and loads.

Units are mm, N and MPa throughout. Cells are tet4, tet10 or hex8 in VTK node order (which is
also Abaqus order for these types). Elements are numbered globally in input order; ``E`` and
``nu`` are per element, so a CT-mapped model can give every element its own modulus.

Named sets are first-class: ``regions`` (element sets), ``node_sets`` and ``face_sets``
(element, local face) are addressed by name, e.g. ``"L2/trabecular"``. Each element may also
carry one *material region* (``element_region``), the region its material came from; it is what
the output's ``region`` cell array shows.

Orthotropic elements (:meth:`Model.set_orthotropic`) keep their nine engineering constants in the
global axes in ``ortho`` (n_elements, 9): Ex, Ey, Ez, nu_xy, nu_xz, nu_yz, Gxy, Gxz, Gyz, NaN rows
for isotropic elements. For them ``E`` holds Ez (the axial modulus of a vertebra, for outputs)
and ``nu`` holds nu_zx = nu_xz Ez / Ex (the lateral contraction under axial load). An
orthotropic element may instead have its constants in cylindrical axes about an axis
(``cylinder=`` of :meth:`Model.set_orthotropic`; ``ortho_axis`` (n_elements, 6): a point on the
axis and its unit direction, NaN rows for the global axes): then 1 is radial, 2 circumferential
and 3 axial at each integration point (CalculiX's ``*ORIENTATION, SYSTEM=CYLINDRICAL``), e.g.
an annulus fibrosus stiff around the disc.

Von Mises plastic elements (:meth:`Model.set_plastic`, ``*PLASTIC`` in a deck) keep their yield
stress and linear isotropic hardening modulus (MPa) in ``plastic`` (n_elements, 2), NaN rows for
elastic elements; :func:`fem.plasticity.solve_plastic` uses them, :func:`fem.solve` ignores them.
"""

from __future__ import annotations

import copy as _copy
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import loads as _loads
from .arrays import unique_sorted
from .elements import ELEMENT_TYPES, MESHIO_TO_TYPE, ElementType
from .errors import MaterialError, MeshError, ModelError, SetError, format_labels
from .validate import finite_array

logger = logging.getLogger(__name__)

HEX8_FORMULATIONS = ("auto", "full", "bbar")
#: columns of ``Model.ortho``
ORTHO_CONSTANTS = ("Ex", "Ey", "Ez", "nu_xy", "nu_xz", "nu_yz", "Gxy", "Gxz", "Gyz")
#: with hex8_formulation="auto", hex8 elements with nu at or above this use B-bar
BBAR_NU_THRESHOLD = 0.45


def nearly_incompressible(constants: np.ndarray) -> np.ndarray:
    """Per row of orthotropic engineering constants (:data:`ORTHO_CONSTANTS`): True where the
    Reuss bulk modulus over the smallest shear modulus reaches that of an isotropic material at
    :data:`BBAR_NU_THRESHOLD` (so that an isotropic material written as orthotropic constants
    takes the formulation its isotropic form takes)."""
    c = np.asarray(constants, dtype=float).reshape(-1, 9)
    Ex, Ey, Ez, nxy, nxz, nyz = (c[:, i] for i in range(6))
    compliance = 1.0 / Ex + 1.0 / Ey + 1.0 / Ez - 2.0 * (nxy / Ex + nxz / Ex + nyz / Ey)
    g_min = c[:, 6:9].min(axis=1)
    nu = BBAR_NU_THRESHOLD
    ratio = 2.0 * (1.0 + nu) / (3.0 * (1.0 - 2.0 * nu))
    # K / G >= ratio, written without dividing by a compliance that may vanish
    return ratio * (1.0 - 1e-12) * g_min * compliance <= 1.0


@dataclass
class CellBlock:
    """Consecutive elements of one type: ``conn`` (m, k) node indices, first global index ``start``."""

    type: str
    conn: np.ndarray
    start: int

    @property
    def etype(self) -> ElementType:
        return ELEMENT_TYPES[self.type]

    @property
    def stop(self) -> int:
        return self.start + len(self.conn)

    def holds(self, elements: np.ndarray) -> np.ndarray:
        """Boolean mask over ``elements`` (global indices): which lie in this block."""
        return (elements >= self.start) & (elements < self.stop)

    def local(self, elements: np.ndarray) -> np.ndarray:
        """The block's own (local) indices of those of ``elements`` that lie in it, in order."""
        return elements[self.holds(elements)] - self.start


@dataclass
class FaceSet:
    """Element faces: global element indices and local face numbers (0-based, Abaqus S1 = 0)."""

    elements: np.ndarray
    faces: np.ndarray

    def __len__(self) -> int:
        return len(self.elements)


def _type_name(t: str) -> str:
    if t in ELEMENT_TYPES:
        return t
    if t in MESHIO_TO_TYPE:
        return MESHIO_TO_TYPE[t]
    raise MeshError(
        f"unsupported cell type {t!r}: vertebra-fem solves tet4 (tetra), tet10 (tetra10) and "
        "hex8 (hexahedron) cells"
    )


class Model:
    """Nodes, cells, named sets, per-element materials, boundary conditions and loads.

    Build one with :meth:`from_arrays`, :meth:`from_meshio`, :meth:`from_inp` or
    :meth:`from_file`; then :meth:`set_material`, add sets and conditions, and
    ``fem.solve(model)``.
    """

    def __init__(self):
        self.points = np.zeros((0, 3))
        self.blocks: list[CellBlock] = []
        self.node_ids = np.zeros(0, dtype=np.int64)
        self.element_ids = np.zeros(0, dtype=np.int64)
        self.E = np.zeros(0)
        self.nu = np.zeros(0)
        self.ortho = np.zeros((0, 9))
        self.ortho_axis = np.zeros((0, 6))
        self.plastic = np.zeros((0, 2))
        self.element_region = np.zeros(0, dtype=np.int64)
        self.region_names: list[str] = []
        self.regions: dict[str, np.ndarray] = {}
        self.node_sets: dict[str, np.ndarray] = {}
        self.face_sets: dict[str, FaceSet] = {}
        self.conditions: list = []
        self.metadata: dict = {}
        self.hex8_formulation = "auto"
        self.source = "<arrays>"

    # ---------------------------------------------------------------- constructors

    @classmethod
    def from_arrays(cls, points, cells, *, node_ids=None, element_ids=None, E=None, nu=None,
                    source: str = "<arrays>") -> Model:
        """A model from node coordinates (n, 3) and cells.

        ``cells`` is a list of ``(type, connectivity)`` pairs or a dict ``{type: connectivity}``
        with 0-based node indices in VTK order; types are "tet4", "tet10", "hex8" (or meshio's
        "tetra", "tetra10", "hexahedron"). Labels default to 1..n; E (MPa) and nu may be scalars
        or per-element arrays and may be given later with :meth:`set_material`.
        """
        m = cls()
        m.source = source
        try:
            pts = np.asarray(points, dtype=float)
        except (TypeError, ValueError):
            raise MeshError("points must be numbers (an (n, 3) array of coordinates in mm)") from None
        if pts.ndim != 2 or pts.shape[1] != 3:
            raise MeshError(f"points must be an (n, 3) array of coordinates in mm, got shape {pts.shape}")
        m.points = finite_array("node coordinates", pts, MeshError)
        n = len(pts)
        if isinstance(cells, dict):
            cells = list(cells.items())
        start = 0
        for t, conn in cells:
            name = _type_name(t)
            c = np.asarray(conn)
            k = ELEMENT_TYPES[name].n_nodes
            if c.ndim != 2 or c.shape[1] != k:
                raise MeshError(f"{name} connectivity must have shape (m, {k}), got {c.shape}")
            if c.size and c.dtype.kind not in "iu":
                raise MeshError(f"{name} connectivity must be integer node indices")
            c = c.astype(np.int64)
            if len(c) == 0:
                continue
            m.blocks.append(CellBlock(name, c, start))
            start += len(c)
        if start == 0:
            raise MeshError("the model has no solid (tet4, tet10, hex8) elements")
        m.node_ids = (np.arange(1, n + 1, dtype=np.int64) if node_ids is None
                      else _integer_labels("node", node_ids))
        m.element_ids = (np.arange(1, start + 1, dtype=np.int64) if element_ids is None
                         else _integer_labels("element", element_ids))
        if len(m.node_ids) != n or len(m.element_ids) != start:
            raise MeshError("node_ids / element_ids must have one label per node / element")
        for what, ids in (("node", m.node_ids), ("element", m.element_ids)):
            srt = np.sort(ids)
            dup = srt[1:][srt[1:] == srt[:-1]]
            if len(dup):
                raise MeshError(f"{what} label(s) {format_labels(unique_sorted(dup))} are used twice")
        for b in m.blocks:
            bad = (b.conn < 0) | (b.conn >= n)
            if bad.any():
                e = np.nonzero(bad.any(axis=1))[0] + b.start
                raise MeshError(
                    f"element(s) {format_labels(m.element_ids[e])} refer to undefined nodes "
                    f"(node indices outside 0..{n - 1})"
                )
        m.E = np.full(start, np.nan)
        m.nu = np.full(start, np.nan)
        m.ortho = np.full((start, 9), np.nan)
        m.ortho_axis = np.full((start, 6), np.nan)
        m.plastic = np.full((start, 2), np.nan)
        m.element_region = np.full(start, -1, dtype=np.int64)
        if E is not None or nu is not None:
            m.set_material(None, E=E, nu=nu)
        return m

    @classmethod
    def from_meshio(cls, mesh, *, E=None, nu=None) -> Model:
        """A model from a :class:`meshio.Mesh`; see :func:`fem.io.meshio_io.model_from_meshio`."""
        from .io.meshio_io import model_from_meshio

        return model_from_meshio(mesh, E=E, nu=nu)

    @classmethod
    def from_inp(cls, path) -> Model:
        """A model (mesh, sets, materials, boundary conditions, loads) from an Abaqus/CalculiX deck."""
        from .io.inp import read_inp

        return read_inp(path)

    @classmethod
    def from_file(cls, path, **kwargs) -> Model:
        """An ``.inp`` deck, or any mesh file meshio reads (VTU, gmsh .msh, ...)."""
        from .io.meshio_io import read_mesh_file

        if str(path).lower().endswith(".inp"):
            return cls.from_inp(path)
        return read_mesh_file(path, **kwargs)

    @property
    def anatomy(self):
        """The model's levels (:class:`fem.anatomy.Anatomy`, cranial to caudal; empty for a model
        no anatomical builder made), stored in ``metadata["anatomy"]``."""
        from .anatomy import anatomy_of

        return anatomy_of(self)

    @anatomy.setter
    def anatomy(self, value) -> None:
        from .anatomy import Anatomy

        if not isinstance(value, Anatomy):
            raise TypeError(f"model.anatomy takes a fem.anatomy.Anatomy, got {type(value).__name__}")
        self.metadata["anatomy"] = value

    def copy(self) -> Model:
        """A deep copy (augmentation procedures return modified copies)."""
        return _copy.deepcopy(self)

    # ---------------------------------------------------------------- sizes

    @property
    def n_nodes(self) -> int:
        return len(self.points)

    @property
    def n_elements(self) -> int:
        return sum(len(b.conn) for b in self.blocks)

    @property
    def n_dof(self) -> int:
        return 3 * self.n_nodes

    @property
    def cell_types(self) -> list[str]:
        return sorted({b.type for b in self.blocks})

    def __repr__(self) -> str:
        types = ", ".join(f"{len(b.conn)} {b.type}" for b in self.blocks)
        return (f"<Model {self.n_nodes} nodes, {types}; {len(self.regions)} regions, "
                f"{len(self.node_sets)} node sets, {len(self.face_sets)} face sets, "
                f"{len(self.conditions)} conditions>")

    def element_nodes(self, elements) -> np.ndarray:
        """Node indices used by the given elements (sorted, unique)."""
        elements = np.asarray(elements, dtype=np.int64)
        out = []
        for b in self.blocks:
            sel = b.local(elements)
            if len(sel):
                out.append(b.conn[sel].ravel())
        return unique_sorted(np.concatenate(out)) if out else np.zeros(0, dtype=np.int64)

    def used_nodes(self) -> np.ndarray:
        """Boolean mask of nodes referenced by at least one element."""
        used = np.zeros(self.n_nodes, dtype=bool)
        for b in self.blocks:
            used[b.conn.ravel()] = True
        return used

    def element_type_of(self, elements) -> np.ndarray:
        """The block index of each global element index."""
        starts = np.array([b.start for b in self.blocks])
        return np.searchsorted(starts, np.asarray(elements), side="right") - 1

    # ---------------------------------------------------------------- sets

    def _check_name(self, name: str) -> str:
        if not isinstance(name, str) or not name.strip():
            raise SetError(f"set names must be non-empty strings, got {name!r}")
        return name

    def add_region(self, name: str, elements) -> Model:
        """Name a set of elements (global element indices, 0-based)."""
        e = unique_sorted(np.asarray(elements, dtype=np.int64).ravel())
        if len(e) and (e[0] < 0 or e[-1] >= self.n_elements):
            raise SetError(f"region {name!r} refers to element indices outside 0..{self.n_elements - 1}")
        self.regions[self._check_name(name)] = e
        return self

    def move_elements(self, elements, region: str, *, E=None, nu=None) -> Model:
        """Take ``elements`` out of every region and add them to ``region`` (created, or
        extended): what a procedure does when it turns bone into cement or damaged bone. With
        ``E`` (MPa) and ``nu`` (scalars, or one value per element of ``elements``) the moved
        elements take that isotropic material and ``region`` becomes their material region,
        its other elements keeping theirs; without them the material is the caller's to set."""
        elements = np.asarray(elements, dtype=np.int64).ravel()
        if (E is None) != (nu is None):
            raise MaterialError(f"moving elements into region {region!r}: give both E and nu "
                                "for their new material, or neither")
        for name in list(self.regions):
            self.regions[name] = np.setdiff1d(self.regions[name], elements)
        self.add_region(region, np.union1d(self.regions.get(region, []), elements))
        if E is None:
            return self
        E_all, nu_all = self.E.copy(), self.nu.copy()
        E_all[elements], nu_all[elements] = E, nu
        el = self.regions[region]
        return self.set_material(region, E=E_all[el], nu=nu_all[el])

    def element_centres(self, elements=None) -> np.ndarray:
        """Mean of all nodes of each element (mid-edge nodes included), (n, 3) mm, of
        ``elements`` (default all). For straight-sided elements it is the centroid of the
        corners (:func:`fem.assembly.element_centroids`), up to rounding."""
        if len(self.blocks) == 1:
            conn = self.blocks[0].conn
            return self.points[conn if elements is None else conn[elements]].mean(axis=1)
        out = np.concatenate([self.points[b.conn].mean(axis=1) for b in self.blocks])
        return out if elements is None else out[elements]

    def add_node_set(self, name: str, nodes) -> Model:
        """Name a set of nodes (node indices, 0-based)."""
        n = unique_sorted(np.asarray(nodes, dtype=np.int64).ravel())
        if len(n) and (n[0] < 0 or n[-1] >= self.n_nodes):
            raise SetError(f"node set {name!r} refers to node indices outside 0..{self.n_nodes - 1}")
        self.node_sets[self._check_name(name)] = n
        return self

    def add_face_set(self, name: str, elements, faces) -> Model:
        """Name a set of element faces: global element indices and 0-based local face numbers."""
        e = np.asarray(elements, dtype=np.int64).ravel()
        f = np.asarray(faces, dtype=np.int64).ravel()
        if e.shape != f.shape:
            raise SetError(f"face set {name!r}: elements and faces must have the same length")
        if len(e) and (e.min() < 0 or e.max() >= self.n_elements):
            raise SetError(f"face set {name!r} refers to element indices outside 0..{self.n_elements - 1}")
        if len(e):
            nf = np.array([b.etype.n_faces for b in self.blocks])[self.element_type_of(e)]
            bad = (f < 0) | (f >= nf)
            if bad.any():
                i = int(np.argmax(bad))
                raise SetError(f"face set {name!r}: element {self.element_ids[e[i]]} has no face "
                               f"S{f[i] + 1}")
        key = unique_sorted(e * 8 + f)  # at most 6 faces per element
        self.face_sets[self._check_name(name)] = FaceSet(key // 8, key % 8)
        return self

    def _unknown(self, kind: str, name: str, known) -> SetError:
        avail = ", ".join(sorted(known)) or "none"
        return SetError(f"unknown {kind} {name!r} (defined: {avail})")

    def region(self, name: str) -> np.ndarray:
        if name not in self.regions:
            raise self._unknown("region (element set)", name, self.regions)
        return self.regions[name]

    def face_set(self, name: str) -> FaceSet:
        if name not in self.face_sets:
            raise self._unknown("face set", name, self.face_sets)
        return self.face_sets[name]

    def face_nodes(self, fs: FaceSet) -> list[tuple[str, np.ndarray, np.ndarray]]:
        """Face connectivity grouped by face type: [(face type, nodes (nf, kf), rows into fs)]."""
        out: dict[str, list] = {}
        blk = self.element_type_of(fs.elements)
        for bi, b in enumerate(self.blocks):
            rows = np.nonzero(blk == bi)[0]
            if not len(rows):
                continue
            local = fs.elements[rows] - b.start
            table = np.array(b.etype.faces)  # (n_faces, kf)
            conn = b.conn[local[:, None], table[fs.faces[rows]]]
            out.setdefault(b.etype.face_type, []).append((conn, rows))
        return [(ft, np.concatenate([c for c, _ in v]), np.concatenate([r for _, r in v]))
                for ft, v in out.items()]

    def nodes_of(self, target) -> np.ndarray:
        """Node indices of a target: a node set, face set or region name, or node indices."""
        if isinstance(target, str):
            if target in self.node_sets:
                nodes = self.node_sets[target]
            elif target in self.face_sets:
                fs = self.face_sets[target]
                nodes = unique_sorted(np.concatenate([c.ravel() for _, c, _ in self.face_nodes(fs)])
                                  ) if len(fs) else np.zeros(0, np.int64)
            elif target in self.regions:
                nodes = self.element_nodes(self.regions[target])
            else:
                raise self._unknown("node set", target,
                                    list(self.node_sets) + list(self.face_sets))
            if len(nodes) == 0:
                raise SetError(f"set {target!r} is empty")
            return nodes
        if isinstance(target, tuple):
            fs = FaceSet(*target)
            self._check_faces(fs, "face target")
            return unique_sorted(np.concatenate([c.ravel() for _, c, _ in self.face_nodes(fs)]))
        nodes = np.asarray(target, dtype=np.int64)
        if len(nodes) == 0:
            raise SetError("a node target is empty")
        bad = (nodes < 0) | (nodes >= self.n_nodes)
        if bad.any():
            raise SetError(f"node indices {format_labels(nodes[bad])} do not exist "
                           f"(the model has {self.n_nodes} nodes)")
        return unique_sorted(nodes)

    def faces_of(self, target) -> FaceSet:
        """The face set of a target: a face set name or an ``(elements, faces)`` pair."""
        if isinstance(target, str):
            if target not in self.face_sets:
                hint = " (it is a node set; surface loads need a face set)" if target in self.node_sets else ""
                raise SetError(str(self._unknown("face set", target, self.face_sets)) + hint)
            fs = self.face_sets[target]
            if len(fs) == 0:
                raise SetError(f"face set {target!r} is empty")
            return fs
        if isinstance(target, tuple):
            fs = FaceSet(*target)
            self._check_faces(fs, "face target")
            return fs
        raise SetError("surface loads need a face set name or (elements, faces) arrays")

    def _check_faces(self, fs: FaceSet, what: str):
        if len(fs) == 0:
            raise SetError(f"{what} is empty")
        if fs.elements.min() < 0 or fs.elements.max() >= self.n_elements:
            raise SetError(f"{what} refers to element indices outside 0..{self.n_elements - 1}")

    # ---------------------------------------------------------------- materials

    def _material_elements(self, region) -> np.ndarray:
        if region is None:
            idx = np.arange(self.n_elements)
        elif isinstance(region, str):
            idx = self.region(region)
            if len(idx) == 0:
                raise SetError(f"region {region!r} is empty")
        else:
            idx = np.asarray(region, dtype=np.int64).ravel()
            if len(idx) and (idx.min() < 0 or idx.max() >= self.n_elements):
                raise SetError(f"element indices outside 0..{self.n_elements - 1}")
        return idx

    def _material_region(self, region, idx) -> None:
        if isinstance(region, str):
            if region not in self.region_names:
                self.region_names.append(region)
            self.element_region[idx] = self.region_names.index(region)

    def set_material(self, region, E=None, nu=None) -> Model:
        """Isotropic material (E in MPa, nu) for a region name, element indices, or all (None).

        Scalars apply to every element of the region; arrays give one value per element.
        Assigning by region name also makes it those elements' material region; giving E or nu
        makes orthotropic elements isotropic again.
        """
        idx = self._material_elements(region)
        where = f" of region {region!r}" if isinstance(region, str) else ""
        for name, value, arr in (("E", E, self.E), ("nu", nu, self.nu)):
            if value is None:
                continue
            try:
                v = np.asarray(value, dtype=float)
            except (TypeError, ValueError):
                raise MaterialError(f"{name}{where} must be a number or an array of numbers, "
                                    f"got {value!r}") from None
            if v.ndim and v.shape != (len(idx),):
                raise MaterialError(f"{name}{where} needs one value per element ({len(idx)}), "
                                    f"got shape {v.shape}")
            arr[idx] = v
        if (E is not None or nu is not None) and len(self.ortho) == self.n_elements:
            self.ortho[idx] = np.nan
            if len(self.ortho_axis) == self.n_elements:
                self.ortho_axis[idx] = np.nan
        self._material_region(region, idx)
        return self

    def set_orthotropic(self, region, E, nu, G, *, cylinder=None) -> Model:
        """Orthotropic material for a region name, element indices, or all, in the global axes
        or, with ``cylinder=(point, direction)`` (mm; the direction need not be unit), in
        cylindrical axes about that axis: 1 radial, 2 circumferential, 3 axial (along
        ``direction``), evaluated at each integration point, as CalculiX's ``*ORIENTATION,
        SYSTEM=CYLINDRICAL`` with points a = point and b = point + direction.

        ``E = (E1, E2, E3)`` and ``G = (G12, G13, G23)`` in MPa, ``nu = (nu12, nu13, nu23)``
        with nu_ij = -eps_j / eps_i under uniaxial stress along i (the Abaqus/CalculiX
        ``*ELASTIC, TYPE=ENGINEERING CONSTANTS`` convention; nu_ji = nu_ij E_j / E_i); 1, 2, 3 are
        x, y, z in the global axes. Each may be three scalars or an (m, 3) array, one row per
        element. The compliance must be positive definite. Orthotropic hex8 elements use B-bar
        where :meth:`bbar_mask` finds them nearly incompressible, and cannot take the voxel
        path; an integration point on a cylinder's axis is refused when the model is assembled
        (its radial direction is undefined).
        """
        idx = self._material_elements(region)
        where = f"region {region!r}" if isinstance(region, str) else "the elements"
        cols = []
        for name, value in (("E", E), ("nu", nu), ("G", G)):
            try:
                v = np.asarray(value, dtype=float)
            except (TypeError, ValueError):
                raise MaterialError(f"orthotropic {name} of {where} must be three numbers, "
                                    f"got {value!r}") from None
            if v.shape == (3,):
                v = np.broadcast_to(v, (len(idx), 3))
            if v.shape != (len(idx), 3):
                raise MaterialError(f"orthotropic {name} of {where} must be three numbers or an "
                                    f"({len(idx)}, 3) array, got shape {v.shape}")
            cols.append(v)
        c = np.concatenate(cols, axis=1)
        _check_orthotropic(c, self.element_ids[idx], where)
        axis = np.full(6, np.nan)
        if cylinder is not None:
            try:
                point, direction = (np.asarray(v, dtype=float) for v in cylinder)
            except (TypeError, ValueError):
                raise MaterialError(f"cylinder of {where} must be (point, direction), got "
                                    f"{cylinder!r}") from None
            if point.shape != (3,) or direction.shape != (3,) or not (
                    np.isfinite(point).all() and np.isfinite(direction).all()):
                raise MaterialError(f"cylinder of {where} must be a finite point and direction "
                                    f"of three numbers each, got {cylinder!r}")
            length = float(np.linalg.norm(direction))
            if not length > 0:
                raise MaterialError(f"cylinder direction of {where} is zero")
            axis = np.concatenate([point, direction / length])
        if len(self.ortho) != self.n_elements:
            self.ortho = np.full((self.n_elements, 9), np.nan)
        if len(self.ortho_axis) != self.n_elements:
            self.ortho_axis = np.full((self.n_elements, 6), np.nan)
        self.ortho[idx] = c
        self.ortho_axis[idx] = axis
        self.E[idx] = c[:, 2]
        self.nu[idx] = c[:, 4] * (c[:, 2] / c[:, 0])
        self._material_region(region, idx)
        return self

    def _rows_given(self, name: str) -> np.ndarray:
        """Per element: True where the per-element table ``name`` (NaN rows: not given) has
        its row; all False before the table exists or after elements were added."""
        table = getattr(self, name, None)
        if table is None or len(table) != self.n_elements:
            return np.zeros(self.n_elements, dtype=bool)
        return ~np.isnan(table).any(axis=1)

    def orthotropic_mask(self) -> np.ndarray:
        """Per element: True where the material is orthotropic (:meth:`set_orthotropic`)."""
        return self._rows_given("ortho")

    def cylindrical_mask(self) -> np.ndarray:
        """Per element: True where an orthotropic material is in cylindrical axes."""
        return self._rows_given("ortho_axis") & self.orthotropic_mask()

    def set_plastic(self, region, yield_stress, hardening=0.0) -> Model:
        """Von Mises plasticity with linear isotropic hardening for a region name, element
        indices, or all elements (None): initial ``yield_stress`` > 0 (MPa) and hardening modulus
        ``hardening`` >= 0 (MPa, the slope of the yield stress against the equivalent plastic
        strain; 0 is perfect plasticity). Scalars or one value per element; ``yield_stress=None``
        makes the elements elastic again. Used by :func:`fem.plasticity.solve_plastic`."""
        idx = self._material_elements(region)
        where = f"region {region!r}" if isinstance(region, str) else "the elements"
        if len(self.plastic) != self.n_elements:
            self.plastic = np.full((self.n_elements, 2), np.nan)
        if yield_stress is None:
            self.plastic[idx] = np.nan
            return self
        cols = []
        for name, value, lo in (("yield stress", yield_stress, "> 0"),
                                ("hardening modulus", hardening, ">= 0")):
            try:
                v = np.broadcast_to(np.asarray(value, dtype=float), (len(idx),))
            except (TypeError, ValueError):
                raise MaterialError(f"{name} of {where} must be a number or one number per "
                                    f"element ({len(idx)}) in MPa, got {value!r}") from None
            bad = ~np.isfinite(v) | ((v <= 0) if lo == "> 0" else (v < 0))
            if bad.any():
                raise MaterialError(f"{name} of {where} must be finite and {lo} MPa; got "
                                    f"{v[bad][0]:g} for element(s) "
                                    f"{format_labels(self.element_ids[idx[bad]])}")
            cols.append(v)
        self.plastic[idx] = np.column_stack(cols)
        return self

    def plastic_mask(self) -> np.ndarray:
        """Per element: True where it has von Mises plastic data (:meth:`set_plastic`)."""
        return self._rows_given("plastic")

    def check_materials(self) -> None:
        """Raise :class:`MaterialError` for missing or impossible E and nu, naming the elements."""
        for name, arr in (("E", self.E), ("nu", self.nu)):
            missing = np.isnan(arr)
            if missing.any():
                raise MaterialError(
                    f"element(s) {format_labels(self.element_ids[missing])} have no material "
                    f"({name} undefined): assign one with set_material or *SOLID SECTION")
            bad = ~np.isfinite(arr)
            if bad.any():
                raise MaterialError(f"{name} is infinite for element(s) "
                                    f"{format_labels(self.element_ids[bad])}")
        bad = self.E <= 0
        if bad.any():
            i = int(np.argmax(bad))
            raise MaterialError(f"Young's modulus must be > 0 MPa; E = {self.E[i]:g} for element(s) "
                                f"{format_labels(self.element_ids[bad])}")
        ortho = self.orthotropic_mask()
        if ortho.any():
            _check_orthotropic(self.ortho[ortho], self.element_ids[ortho], "the elements")
        bad = ((self.nu >= 0.5) | (self.nu <= -1.0)) & ~ortho
        if bad.any():
            i = int(np.argmax(bad))
            raise MaterialError(f"Poisson's ratio must lie in (-1, 0.5); nu = {self.nu[i]:g} for "
                                f"element(s) {format_labels(self.element_ids[bad])}")

    def bbar_mask(self) -> np.ndarray:
        """Per element: True where the hex8 B-bar (mean-dilatation) formulation is used: every
        hex8 with ``hex8_formulation="bbar"``, none with ``"full"``, and with ``"auto"`` those
        that are nearly incompressible: isotropic with nu >= :data:`BBAR_NU_THRESHOLD`, or
        orthotropic with a bulk modulus (Reuss: 1 / the sum of the normal compliances) at least
        as many times their smallest shear modulus as an isotropic material at that nu has
        (K / G = 2 (1 + nu) / (3 (1 - 2 nu)), 9.67): a soft, nearly incompressible ground
        reinforced by fibres locks as the isotropic ground would."""
        if self.hex8_formulation not in HEX8_FORMULATIONS:
            raise ModelError(f"hex8_formulation must be one of {HEX8_FORMULATIONS}, "
                             f"got {self.hex8_formulation!r}")
        mask = np.zeros(self.n_elements, dtype=bool)
        if self.hex8_formulation == "full":
            return mask
        for b in self.blocks:
            if b.type == "hex8":
                if self.hex8_formulation == "bbar":
                    mask[b.start:b.stop] = True
                else:
                    mask[b.start:b.stop] = self.nu[b.start:b.stop] >= BBAR_NU_THRESHOLD
        ortho = self.orthotropic_mask()
        if self.hex8_formulation == "auto" and ortho.any():
            mask[ortho] &= nearly_incompressible(self.ortho[ortho])
        return mask

    # ---------------------------------------------------------------- conditions

    def add(self, *conditions) -> Model:
        """Add boundary conditions and loads (see :mod:`fem.loads`), checking their targets."""
        for c in conditions:
            if not isinstance(c, _loads.CONSTRAINTS + _loads.NODE_LOADS + _loads.FACE_LOADS
                              + (_loads.RigidPlate,)):
                raise ModelError(f"not a boundary condition or load: {c!r}")
            if isinstance(c, _loads.FACE_LOADS):
                self.faces_of(c.target)
            else:
                self.nodes_of(c.target)
            self.conditions.append(c)
        return self

    def fix(self, target, dofs: str = "xyz") -> Model:
        """Shorthand for ``add(Fixed(target, dofs))``."""
        return self.add(_loads.Fixed(target, dofs))

    def clear_conditions(self) -> Model:
        self.conditions = []
        return self

    # ---------------------------------------------------------------- output

    def to_meshio(self):
        """A :class:`meshio.Mesh` with the cells, E, nu, labels and region as cell data."""
        from .io.meshio_io import model_to_meshio

        return model_to_meshio(self)

    def solve(self, **kwargs):
        """``fem.solve(self, **kwargs)`` (as :meth:`fem.VoxelModel.solve`): the
        :class:`~fem.result.Result` of the model's conditions."""
        from .analysis import solve

        return solve(self, **kwargs)

    def to_inp(self, path, *, heading: str = "") -> Path:
        """Write the model as an Abaqus/CalculiX deck that :meth:`from_inp` and ``ccx`` both read
        (rigid plates, written as ``*EQUATION`` constraints, are for CalculiX only)."""
        from .io.inp import write_inp

        return write_inp(self, path, heading=heading)

    def write_inp(self, path, *, heading: str = "") -> Path:
        """The same as :meth:`to_inp` (the name researchers look for)."""
        return self.to_inp(path, heading=heading)


def _integer_labels(what: str, labels) -> np.ndarray:
    """Labels as int64, refusing what a cast would change silently: fractions, NaN, infinities,
    values beyond int64 and non-numbers (labels read from files arrive as floats or strings)."""
    try:
        a = np.asarray(labels)
        if a.dtype.kind not in "iuf":
            a = a.astype(np.int64)
    except (TypeError, ValueError, OverflowError):
        raise MeshError(f"{what} labels must be integers, got {labels!r:.60}") from None
    if a.dtype.kind == "f":
        bad = ~np.isfinite(a) | (a != np.round(a)) | (np.abs(a) >= 2.0**63)
    elif a.dtype.kind == "u":
        bad = a > np.iinfo(np.int64).max
    else:
        bad = np.zeros(a.shape, dtype=bool)
    if bad.any():
        raise MeshError(f"{what} label {a[bad].ravel()[0].item()} is not an integer within int64 "
                        f"({int(bad.sum())} such label(s))")
    return a.astype(np.int64)


def _check_orthotropic(c: np.ndarray, labels: np.ndarray, where: str) -> None:
    """Raise :class:`MaterialError` unless engineering constants (m, 9) are finite, the moduli
    positive and the compliance positive definite (the strain energy of any stress positive)."""
    bad = ~np.isfinite(c).all(axis=1)
    if bad.any():
        raise MaterialError(f"orthotropic constants of {where} are not finite numbers for "
                            f"element(s) {format_labels(labels[bad])}")
    moduli = c[:, [0, 1, 2, 6, 7, 8]]
    bad = (moduli <= 0).any(axis=1)
    if bad.any():
        i = int(np.argmax(bad))
        raise MaterialError(f"orthotropic moduli of {where} must be > 0 MPa; (Ex, Ey, Ez, Gxy, Gxz, "
                            f"Gyz) = {tuple(float(v) for v in moduli[i])} for element(s) "
                            f"{format_labels(labels[bad])}")
    nxy, nxz, nyz = c[:, 3], c[:, 4], c[:, 5]
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        # the normal block of the compliance scaled to a unit diagonal, D^-1/2 S D^-1/2 with
        # D = diag(1/Ex, 1/Ey, 1/Ez): off-diagonals -nu_ij sqrt(E_j / E_i), by square roots so
        # that no ratio of extreme moduli overflows; positive definite exactly when S is
        r = np.sqrt(c[:, :3])
        R = np.broadcast_to(np.eye(3), (len(c), 3, 3)).copy()
        R[:, 0, 1] = R[:, 1, 0] = -nxy * (r[:, 1] / r[:, 0])
        R[:, 0, 2] = R[:, 2, 0] = -nxz * (r[:, 2] / r[:, 0])
        R[:, 1, 2] = R[:, 2, 1] = -nyz * (r[:, 2] / r[:, 1])
        ok = np.isfinite(R).all(axis=(1, 2))
        ok[ok] = np.linalg.eigvalsh(R[ok])[:, 0] > 1e-12
    bad = ~ok
    if bad.any():
        i = int(np.argmax(bad))
        raise MaterialError(f"orthotropic constants of {where} give a compliance that is not "
                            f"positive definite (Poisson's ratios too large for the moduli: "
                            f"nu_xy, nu_xz, nu_yz = {tuple(float(v) for v in c[i, 3:6])} with Ex, "
                            f"Ey, Ez = {tuple(float(v) for v in c[i, :3])}) for element(s) "
                            f"{format_labels(labels[bad])}")
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        # what the assembly computes: the compliance (1/E, nu/E, 1/G), its inverse (the normal
        # block is D^-1/2 R^-1 D^-1/2, bounded by the moduli over R's smallest eigenvalue) and
        # the Poisson's ratio nu_zx kept as the element's nu
        compliance = np.column_stack([1.0 / c[:, [0, 1, 2, 6, 7, 8]], c[:, 3:6] / c[:, :3]])
        stiffness = (r[:, :, None] * np.linalg.inv(R)) * r[:, None, :]
        nu_zx = nxz * (c[:, 2] / c[:, 0])
        bad = ~(np.isfinite(compliance).all(axis=1) & np.isfinite(stiffness).all(axis=(1, 2))
                & np.isfinite(nu_zx))
    if bad.any():
        i = int(np.argmax(bad))
        raise MaterialError(f"orthotropic constants of {where} are beyond double precision (the "
                            f"compliance or the stiffness overflows): (Ex, Ey, Ez, nu_xy, nu_xz, "
                            f"nu_yz, Gxy, Gxz, Gyz) = {tuple(float(v) for v in c[i])} for "
                            f"element(s) {format_labels(labels[bad])}; use units that keep the "
                            "moduli and their ratios within about 1e-100..1e100")
