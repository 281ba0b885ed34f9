"""Conversion between :class:`fem.Model` and :class:`meshio.Mesh`, and reading mesh files.

Solid cells (tetra, tetra10, hexahedron) become elements. Cell sets and gmsh physical groups of
solid cells become regions; those of surface cells (triangle, triangle6, quad) become face sets,
matched to the faces of the solid elements; point sets become node sets. Cell data ``E`` and
``nu`` (as written by :meth:`fem.Result.write`) become the materials, ``orthotropic`` (n, 9
engineering constants, NaN rows for isotropic elements) the orthotropic ones (with
``orthotropic_axis`` (n, 6), the axis of those in cylindrical axes),
``element_id``/``node_id`` the labels, and ``region`` codes with their ``region N: name`` field data the material regions.
"""

from __future__ import annotations

import contextlib
import errno
import io
import logging
import os
import re
import stat
from pathlib import Path

import numpy as np

from ..arrays import unique_sorted
from ..elements import MESHIO_TO_TYPE
from ..errors import InputFileError, MeshError, ModelError, SetError
from ..model import Model
from ..topology import match_faces

logger = logging.getLogger(__name__)

SURFACE_TYPES = {"triangle": 3, "triangle6": 3, "quad": 4, "quad8": 4, "quad9": 4}
IGNORED_TYPES = {"vertex", "line", "line3"}


def model_from_meshio(mesh, *, E=None, nu=None) -> Model:
    """A model from a meshio mesh (see the module docstring for what is kept)."""
    pts = np.asarray(mesh.points, dtype=float)
    if pts.ndim != 2 or pts.shape[1] != 3:
        raise MeshError(f"the mesh must have 3-D points, got shape {pts.shape}")
    solid, surface = _split_blocks(mesh)
    ids = (_cell_data(mesh, solid, "element_id", raw=True)
           if "element_id" in mesh.cell_data else None)
    model = Model.from_arrays(
        pts, [(mesh.cells[bi].type, mesh.cells[bi].data) for bi in solid],
        node_ids=_node_ids(mesh, len(pts)), element_ids=ids, source="<meshio>")
    offsets = {bi: model.blocks[i].start for i, bi in enumerate(solid)}
    _physical_groups(model, mesh, offsets, surface)
    _cell_sets(model, mesh, offsets, surface)
    for name, idx in (mesh.point_sets or {}).items():
        model.add_node_set(name, np.asarray(idx, dtype=np.int64))
    _materials(model, mesh, solid)
    _material_regions(model, mesh, solid)
    if E is not None or nu is not None:
        model.set_material(None, E=E, nu=nu)
    return model


def _split_blocks(mesh) -> tuple[list[int], list[int]]:
    """(solid, surface) cell block indices; an unsupported cell type is a MeshError."""
    solid, surface = [], []
    for bi, cb in enumerate(mesh.cells):
        if cb.type in MESHIO_TO_TYPE:
            solid.append(bi)
        elif cb.type in SURFACE_TYPES:
            surface.append(bi)
        elif cb.type not in IGNORED_TYPES:
            raise MeshError(f"unsupported cell type {cb.type!r} in cell block {bi}: vertebra-fem "
                            "solves tetra, tetra10 and hexahedron cells")
    if not solid:
        raise MeshError("the mesh has no solid cells (tetra, tetra10 or hexahedron)")
    return solid, surface


def _node_ids(mesh, n_points: int):
    """Point data ``node_id`` (one label per point), or None."""
    nids = mesh.point_data.get("node_id")
    if nids is None:
        return None
    nids = np.asarray(nids)
    if nids.ndim == 2 and nids.shape[1] == 1:
        nids = nids[:, 0]
    if nids.shape != (n_points,):
        raise MeshError(f"point data 'node_id' has shape {nids.shape}, expected "
                        f"({n_points},): one label per point")
    return nids


def _physical_groups(model: Model, mesh, offsets: dict, surface: list) -> None:
    """gmsh physical groups: volume groups become regions, surface groups face sets, named by
    the mesh's field data (``"physical <tag>"`` where it names none)."""
    if "gmsh:physical" not in mesh.cell_data:
        return
    names_by_tag = {}
    for name, v in (mesh.field_data or {}).items():
        v = np.asarray(v).ravel()
        if len(v) >= 2 and not name.startswith("region "):
            names_by_tag[(int(v[1]), int(v[0]))] = name
    tags = mesh.cell_data["gmsh:physical"]
    for dim, blocks in ((3, offsets), (2, surface)):
        for bi in blocks:
            t = np.asarray(tags[bi]).ravel()
            for tag in np.unique(t):
                name = names_by_tag.get((dim, int(tag)), f"physical {int(tag)}")
                idx = np.nonzero(t == tag)[0]
                if dim == 3:
                    _extend_region(model, name, offsets[bi] + idx)
                else:
                    _add_surface(model, name, mesh.cells[bi], idx)


def _cell_sets(model: Model, mesh, offsets: dict, surface: list) -> None:
    """meshio cell sets: on solid blocks regions, on surface blocks face sets."""
    for name, per_block in (mesh.cell_sets or {}).items():
        if name.startswith("gmsh:"):
            continue
        for bi, idx in enumerate(per_block):
            idx = np.asarray(idx if idx is not None else [], dtype=np.int64).ravel()
            if not len(idx):
                continue
            if bi in offsets:
                _extend_region(model, name, offsets[bi] + idx)
            elif bi in surface:
                _add_surface(model, name, mesh.cells[bi], idx)


def _materials(model: Model, mesh, solid: list) -> None:
    """E and nu, and orthotropic constants (with their cylindrical axes), as Result.write
    stores them."""
    cd = mesh.cell_data
    if "E" in cd and "nu" in cd:
        model.E = _cell_data(mesh, solid, "E")
        model.nu = _cell_data(mesh, solid, "nu")
    if "orthotropic" not in cd:
        return
    c = _cell_data(mesh, solid, "orthotropic", 9)
    rows = ~np.isnan(c).any(axis=1)
    axis = (_cell_data(mesh, solid, "orthotropic_axis", 6) if "orthotropic_axis" in cd
            else np.full((len(c), 6), np.nan))
    cyl = rows & np.isfinite(axis).all(axis=1)
    plain = rows & ~cyl
    if plain.any():
        model.set_orthotropic(np.nonzero(plain)[0], E=c[plain, :3], nu=c[plain, 3:6],
                              G=c[plain, 6:])
    if cyl.any():  # one call per axis
        keys, inv = np.unique(axis[cyl], axis=0, return_inverse=True)
        idx = np.nonzero(cyl)[0]
        for k, a in enumerate(keys):
            sel = idx[inv.ravel() == k]
            model.set_orthotropic(sel, E=c[sel, :3], nu=c[sel, 3:6], G=c[sel, 6:],
                                  cylinder=(a[:3], a[3:]))


def _material_regions(model: Model, mesh, solid: list) -> None:
    """Cell data ``region`` (codes) with the names in the field data ``"region <code>: name"``:
    the model's material regions, and a region per code that has elements."""
    if "region" not in mesh.cell_data:
        return
    codes = _cell_data(mesh, solid, "region")
    names = {}
    for key in mesh.field_data or {}:
        m = re.match(r"region ([0-9]{1,6}): (.*)$", key)
        if m:
            names[int(m.group(1))] = m.group(2)
    if not names:
        return
    bad = (codes != np.round(codes)) | (codes < -1) | (codes > max(names))
    if bad.any():
        raise MeshError(f"cell data 'region': code {codes[bad][0]:g} of element "
                        f"{model.element_ids[np.argmax(bad)]} is not -1 (none) or a "
                        f"region the field data names (0..{max(names)})")
    codes = codes.astype(np.int64)
    model.region_names = [names.get(i, f"region {i}") for i in range(max(names) + 1)]
    model.element_region = codes
    for code in unique_sorted(codes[codes >= 0]).tolist():  # not every named code
        name = model.region_names[code]
        if name not in model.regions:
            model.add_region(name, np.nonzero(codes == code)[0])


def _cell_data(mesh, solid: list, name: str, width: int | None = None, *, raw: bool = False):
    """Cell data ``name`` of the solid cell blocks, concatenated: one value per cell, or a row
    of ``width`` values (floats; the stored dtype where ``raw``). A field of another shape, as a
    file written by another program or edited by hand may have, is a MeshError naming it."""
    out = []
    for bi in solid:
        n = len(mesh.cells[bi].data)
        want = (n,) if width is None else (n, width)
        try:
            a = np.asarray(mesh.cell_data[name][bi])
            if not raw:
                a = a.astype(float)
        except (TypeError, ValueError, IndexError, KeyError):
            raise MeshError(f"cell data {name!r} of cell block {bi} ({mesh.cells[bi].type}) is "
                            "not an array of numbers") from None
        if width is None and a.ndim == 2 and a.shape[1] == 1:
            a = a[:, 0]
        if a.shape != want:
            what = "one value" if width is None else f"{width} values"
            raise MeshError(f"cell data {name!r} of cell block {bi} ({mesh.cells[bi].type}) has "
                            f"shape {a.shape}, expected {want}: {what} per cell")
        out.append(a)
    return np.concatenate(out)


def _extend_region(model: Model, name: str, elements) -> None:
    old = model.regions.get(name)
    e = np.asarray(elements) if old is None else np.concatenate([old, elements])
    model.add_region(name, e)


def _add_surface(model: Model, name: str, cb, rows) -> None:
    ncorner = SURFACE_TYPES[cb.type]
    corners = np.asarray(cb.data)[rows, :ncorner]
    e, f, found = match_faces(model, corners)
    if not found.all():
        miss = int(np.argmin(found))
        raise SetError(f"surface {name!r}: {cb.type} cell {int(rows[miss])} with nodes "
                       f"{corners[miss].tolist()} is not a face of any solid element")
    if name in model.face_sets:
        old = model.face_sets[name]
        e = np.concatenate([old.elements, e])
        f = np.concatenate([old.faces, f])
    model.add_face_set(name, e, f)


def model_to_meshio(model: Model):
    """A meshio mesh of the model: cells, labels, E, nu and region codes as cell data."""
    import meshio

    cells = [(b.etype.meshio, b.conn) for b in model.blocks]

    def per_block(a):
        return [a[b.start:b.stop] for b in model.blocks]

    cell_data = {"element_id": per_block(model.element_ids), "E": per_block(model.E),
                 "nu": per_block(model.nu), "region": per_block(model.element_region)}
    field_data = {f"region {i}: {n}": np.array([i]) for i, n in enumerate(model.region_names)}
    return meshio.Mesh(model.points, cells, point_data={"node_id": model.node_ids},
                       cell_data=cell_data, field_data=field_data)


def check_readable(path) -> Path:
    """Raise :class:`InputFileError` unless ``path`` is a readable, non-empty regular file: not
    missing, a folder, a loop of symbolic links, a link to nothing, or a pipe or device (which
    would be read forever)."""
    p = Path(path)
    try:
        st = os.stat(p)
    except FileNotFoundError:
        if os.path.islink(p):
            raise InputFileError(f"{p}: a symbolic link to a missing file "
                                 f"({os.readlink(p)})") from None
        raise InputFileError(f"{p}: no such file") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise InputFileError(f"{p}: a loop of symbolic links (it leads back to itself)") \
                from None
        raise InputFileError(f"{p}: cannot be opened ({exc.strerror or exc})") from None
    except ValueError as exc:  # a NUL in the name
        raise InputFileError(f"{p!r}: not a file name ({exc})") from None
    if stat.S_ISDIR(st.st_mode):
        raise InputFileError(f"{p}: is a folder, not a file")
    if not stat.S_ISREG(st.st_mode):
        raise InputFileError(f"{p}: not a regular file (a pipe, socket or device)")
    if not os.access(p, os.R_OK):
        raise InputFileError(f"{p}: permission denied")
    if st.st_size == 0:
        raise InputFileError(f"{p}: the file is empty")
    return p


def read_mesh_file(path, *, E=None, nu=None) -> Model:
    """Read any mesh file meshio understands into a model (materials optional)."""
    return _read(path, E=E, nu=nu)[0]


def read_result_file(path) -> tuple[Model, dict, dict]:
    """(model, point data, cell data) of a result file (a VTU :meth:`fem.Result.write`
    wrote), read once: the model as :func:`read_mesh_file` gives it, and the fields, cell
    fields concatenated over the solid cell blocks in the model's element order."""
    model, mesh = _read(path)
    solid = [bi for bi, cb in enumerate(mesh.cells) if cb.type in MESHIO_TO_TYPE]
    cells = {name: np.concatenate([np.asarray(per_block[bi]) for bi in solid])
             for name, per_block in mesh.cell_data.items()}
    return model, dict(mesh.point_data), cells


def _read(path, *, E=None, nu=None):
    """(model, meshio mesh) of a mesh file, faults named with the file."""
    import meshio

    p = check_readable(path)
    try:
        # meshio prints its own complaints (and sys.exit()s on some files): keep them quiet
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            mesh = meshio.read(p)
    except (Exception, SystemExit) as exc:  # meshio raises many types, and sys.exit()s on some
        raise InputFileError(f"{p}: cannot read as a mesh ({type(exc).__name__}: {exc})") from None
    try:
        model = model_from_meshio(mesh, E=E, nu=nu)
    except ModelError as exc:  # name the file; keep the type (and any attributes) of the error
        exc.args = (f"{p}: {exc}",) + exc.args[1:]
        raise
    model.source = str(p)
    return model, mesh
