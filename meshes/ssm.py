"""Real lumbar anatomy: the mean L2-L5 vertebrae of a statistical shape model as voxel models.

Data: closed triangle surfaces ``L2.ply`` .. ``L5.ply``, the mean shape of the statistical shape
model of Clouthier AL, Wenghofer J, Wai EK, Graham RB, "Morphable models of the lumbar spine to
vary geometry based on pathology, demographics, and anatomical measurements", J Biomech 2023;
146:111421, doi:10.1016/j.jbiomech.2022.111421 (MIT licence; github.com/aclouthier/
morphable-lumbar-model, ``SSM/meanMesh_*.csv``). Cite the paper wherever these shapes are used.
The files stay outside the repository: the folder is a parameter, by default the environment
variable ``FEM_SSM_DATA``, else ``../shared/data/lumbar-ssm-mean`` next to the repository.

Axes. The data have +x anterior, y lateral, +z superior. Assuming the data frame is right-handed
(a CT frame, not mirrored), its +y = z x x = superior x anterior is the patient's left. The
proper rotation ``(x, y, z) -> (y, -x, z)`` (:data:`ROTATION`) therefore gives the project's
axes: x lateral with the patient's left at +x, anterior at -y, z cranial. The mean shape is
nearly symmetric, so a mirrored source would change little but the labels of the pedicles.
The model is then translated so that x = y = 0 is the mean centroid of the bodies and z = 0 the
lowest point of the bottom body (``metadata["ssm"]["rotation"]``, ``["translation"]``:
``p_model = ROTATION @ p_data + translation``).

Voxel model (:func:`ssm_segment_model`): voxels whose centres lie inside a surface (signed
implicit distance < 0) belong to that level; a voxel inside two surfaces goes to the cranial
level, and voxels of a level touching (sharing a node with) the level above are emptied, so the
facet joints do not fuse. Per level:

* body / posterior elements: the posterior wall is found on the mid-sagittal strip (|x - x_c| <
  3 mm) as the first antero-posterior position, going posteriorly from the anterior surface,
  with no bone (the vertebral canal); voxels anterior of that plane and within the body's
  footprint (the convex hull of the voxel columns whose bone spans at least 60 % of the tallest
  column, grown by one voxel) are the body, the rest the posterior elements (cut at the pedicle
  bases; L5's transverse processes, which reach anterior of the wall plane, stay posterior);
* bony endplates: the top body voxel of each vertical voxel column if it lies above the body's
  mid-height, the bottom one if below, except in the short columns (under 60 % of the median
  column height) of a flaring rim lip, where only the voxel on the lip's own side of mid-height
  counts (the underside of the upper lip is cortex, not inferior endplate); in the columns of
  the shell (within ``cortex`` mm of the footprint's outline, at least one voxel) the end voxel
  stays cortex: the wall runs up to the surface at the endplate's rim, as in
  :mod:`fem.meshes.vertebra`;
* cortex: the other body voxels with a face neighbour outside the level or a centre within
  ``cortex`` mm of the surface (at least one voxel), moduli thickness-compensated as in
  :func:`fem.meshes.vertebra.thickness_compensated`;
* trabecular core: the rest of the body.

Discs fill, column by column where both bodies exist, the empty voxels between the upper body's
lowest and the lower body's highest voxel; they share nodes with both endplates. The nucleus is
the :data:`NUCLEUS_AREA` (40 %, inside the 30-50 % usually modelled; an assumption) of the disc's
cross-section farthest from its outline (2-D distance transform, ties broken towards the
centroid), the annulus the rest.

Posterior ligaments (``ligaments=True``, :func:`_label_ligaments`, :mod:`fem.ligaments`) fill,
column by column behind the front of the laminae (the first posterior-element voxel behind each
body in the mid-sagittal strip; the later of the two levels'), the empty voxels between the
upper level's lowest and the lower level's highest posterior-element voxel, at most
:data:`LIGAMENT_MAX_GAP` tall: within :data:`LIGAMENT_MEDIAL` of the body width from the midline
the flavum, and behind it, beyond :data:`LIGAMENT_FLAVUM_DEPTH` of the body depth, the
interspinous ligament; laterally the facet capsules, between the articular processes where one
stands above the other. A voxel that would join the two levels side by side (its lower face, or
its upper face, touching both levels' bone: a facet joint's own gap) stays empty, as the canal
and the foramina (in front of the laminae) do.

Anatomy (``model.anatomy[level]``, estimated from the voxels): ``centre`` the body
centroid; ``superior_centre`` / ``inferior_centre`` the mean of the endplate surface nodes within
a quarter of the body's smaller dimension from the centre's axis; ``height`` their distance;
``width`` / ``depth`` the lateral and antero-posterior extent of the body; pedicle axes per side
through the pedicle's isthmus, the antero-posterior layer of posterior-element voxels (within
15 mm behind the posterior wall and the body's height) with the smallest cross-section; the
direction is a line fitted through the centroids of the neighbouring layers (4 mm each way,
within 6 mm of the isthmus centre), made perpendicular to the body axis (the sagittal tilt is
not resolved at these voxel sizes). The voxel pedicle is only a few layers long, so the
convergence found so is small (0-7 degrees); the direction is then refined on the source surface
(:func:`_surface_axis`: the midline of the pedicle's narrowest stretch in three transverse
slices), which gives 14-22 degrees on the mean L2 and L3; on L4 and L5 the transverse processes
join the pedicle in those slices, the fit is refused and the voxel direction stays (0-4 degrees,
less than the transverse pedicle angles usually measured, which grow caudally). The entry is
where the axis leaves the bone posteriorly.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..anatomy import LevelAnatomy
from ..errors import InputFileError, MeshError, ParameterError
from ..limits import check as check_limit
from ..parts import LIGAMENT
from .vertebra import (
    LevelDims,
    add_endplate_sets,
    annotate,
    label_names,
    layer_factors,
    level_names,
    model_from_labels,
    resolve_materials,
    thickness_compensated,
)

SSM_LEVELS = ("L2", "L3", "L4", "L5")
ROTATION = np.array([[0.0, 1.0, 0.0], [-1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
NUCLEUS_AREA = 0.40
CITATION = ("Clouthier AL, Wenghofer J, Wai EK, Graham RB. Morphable models of the lumbar spine "
            "to vary geometry based on pathology, demographics, and anatomical measurements. "
            "J Biomech 2023;146:111421. doi:10.1016/j.jbiomech.2022.111421")
_PEDICLE_SEARCH = 15.0  # mm behind the posterior wall where the pedicle isthmus is sought
_PEDICLE_R = 6.0  # mm, radius around the isthmus centre of the pedicle's cross-sections
_PEDICLE_LAYERS = lambda h: max(1, int(np.ceil(4.0 / h)))  # noqa: E731 - layers each side
_STRIP = 3.0  # mm, half-width of the mid-sagittal strip that finds the posterior wall


def data_folder(folder=None) -> Path:
    """The folder of the PLY files: ``folder``, else ``$FEM_SSM_DATA``, else
    ``../shared/data/lumbar-ssm-mean`` beside the current folder or one of its parents (a
    checkout's root: an installed package does not live in the checkout), else beside the
    package's source tree (an editable install)."""
    if folder is None:
        folder = os.environ.get("FEM_SSM_DATA")
    if folder is None:
        rel = Path("shared") / "data" / "lumbar-ssm-mean"
        here = Path.cwd().resolve()
        candidates = [p.parent / rel for p in (here, *here.parents)]
        candidates.append(Path(__file__).resolve().parents[1].parent / rel)
        folder = next((c for c in candidates if c.is_dir()), candidates[0])
    return Path(folder).resolve()


def ssm_levels(levels="L2-L4") -> list[str]:
    """Validated contiguous level names within L2-L5, cranial to caudal."""
    names = level_names(levels)
    bad = [n for n in names if n not in SSM_LEVELS]
    if bad:
        raise MeshError(f"the shape model has levels {', '.join(SSM_LEVELS)} only, not "
                        f"{', '.join(bad)}")
    return names


def has_data(levels="L2-L5", folder=None) -> bool:
    """Whether :func:`load_surfaces` finds the levels' files: every ``<level>.ply``, or the
    original repository's CSV pair."""
    root = data_folder(folder)
    return _csv_pair(root) is not None or all((root / f"{n}.ply").is_file()
                                              for n in ssm_levels(levels))


def load_surfaces(levels="L2-L4", folder=None) -> dict:
    """{level: pyvista.PolyData} in the data's frame (mm, +x anterior), each checked closed
    and manifold: ``<level>.ply`` from the folder, or, where those are absent, the original
    repository's ``meanMesh_vertices.csv`` / ``meanMesh_faces.csv`` (in the folder or its
    ``SSM/``) split into levels."""
    import pyvista as pv

    root = data_folder(folder)
    names = ssm_levels(levels)
    csv = _csv_pair(root)
    if csv and not all((root / f"{n}.ply").is_file() for n in names):
        whole = _read_csv(*csv)
        return {n: whole[n] for n in names}
    out = {}
    for n in names:
        path = root / f"{n}.ply"
        if not path.is_file():
            raise InputFileError(f"{path}: missing: level {n} of the lumbar shape model "
                                 "(get L2.ply..L5.ply; see the module docstring)")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                surf = pv.read(path)
            except Exception as exc:  # noqa: BLE001 - any reader fault is an unreadable file
                raise InputFileError(f"{path}: unreadable surface ({exc})") from None
        if not isinstance(surf, pv.PolyData) or surf.n_cells == 0:
            why = str(caught[0].message).splitlines()[0] if caught else "no triangles"
            raise InputFileError(f"{path}: unreadable surface ({why})")
        surf = surf.triangulate()
        if surf.n_open_edges or not surf.is_manifold:
            raise MeshError(f"{path}: the surface is not closed and manifold "
                            f"({surf.n_open_edges} open edges)")
        if surf.volume <= 0:
            raise MeshError(f"{path}: the surface encloses no volume")
        out[n] = surf
    return out


def _csv_pair(root: Path):
    """(vertices, faces) paths of the original repository's mean mesh in ``root`` or
    ``root/SSM``, or None."""
    for base in (root, root / "SSM"):
        v, f = base / "meanMesh_vertices.csv", base / "meanMesh_faces.csv"
        if v.is_file() and f.is_file():
            return v, f
    return None


def _read_csv(vpath: Path, fpath: Path) -> dict:
    """The original repository's one-surface mean mesh (comma-separated x, y, z rows and
    1-based triangle rows) split into its four connected components, the top one L2."""
    import pyvista as pv

    try:
        pts = np.loadtxt(vpath, delimiter=",", ndmin=2)
    except ValueError as exc:
        raise InputFileError(f"{vpath}: unreadable vertices ({exc})") from None
    try:
        tri = np.loadtxt(fpath, delimiter=",", ndmin=2).astype(np.int64)
    except ValueError as exc:
        raise InputFileError(f"{fpath}: unreadable faces ({exc})") from None
    if pts.shape[1] != 3 or tri.shape[1] != 3:
        raise InputFileError(f"{vpath if pts.shape[1] != 3 else fpath}: expected 3 columns")
    tri = tri - tri.min() if tri.min() == 1 else tri
    if tri.min() < 0 or tri.max() >= len(pts):
        raise InputFileError(f"{fpath}: face indices outside 1..{len(pts)}")
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    edges = np.concatenate([tri[:, [0, 1]], tri[:, [1, 2]]])
    graph = coo_matrix((np.ones(len(edges)), (edges[:, 0], edges[:, 1])),
                       shape=(len(pts), len(pts)))
    ncomp, comp = connected_components(graph, directed=False)
    parts = []
    for c in range(ncomp):
        keep = np.nonzero(comp == c)[0]
        faces = np.searchsorted(keep, tri[comp[tri[:, 0]] == c])
        if len(faces):
            parts.append(pv.PolyData(pts[keep], np.hstack([np.full((len(faces), 1), 3),
                                                           faces]).ravel()))
    if len(parts) != len(SSM_LEVELS):
        raise MeshError(f"{vpath}: {len(parts)} connected surfaces, expected "
                        f"{len(SSM_LEVELS)} (L2-L5)")
    parts.sort(key=lambda p: -np.asarray(p.points)[:, 2].mean())
    out = {}
    for n, p in zip(SSM_LEVELS, parts):
        if p.n_open_edges or not p.is_manifold or p.volume <= 0:
            raise MeshError(f"{vpath}: level {n} is not a closed manifold surface")
        out[n] = p
    return out


def _inside(surfs_rot: list, origin, shape, h, within: float = 5.0):
    """Level index per voxel (-1 empty, cranial level wins) and the distance of each occupied
    voxel centre to its level's surface: exact (VTK's point-to-triangle distance) up to
    ``within`` mm, a lower bound above ``within`` beyond.

    Only the voxel centres near a surface are evaluated by VTK: those within ``max(within, h)``
    plus the longest triangle edge of a vertex (a point on a triangle lies within the longest
    edge of each of its corners). Every other centre is farther than ``max(within, h)`` from
    the surface, so a face-neighbour of it lies on its side of the surface: such centres take
    the sign of the evaluated centres next to their connected region (one VTK call for a region
    with none). The inside voxels are the ones a distance at every centre gives, in a fraction
    of the time (the VTK call was most of a shape-model build)."""
    import pyvista as pv
    from scipy import ndimage
    from scipy.spatial import cKDTree

    lvl = np.full(shape, -1, dtype=np.int16)
    dist = np.full(shape, np.inf, dtype=np.float32)
    band = max(float(within), float(h))
    for i, s in enumerate(surfs_rot):
        b = np.array(s.bounds).reshape(3, 2)
        lo = np.maximum(np.floor((b[:, 0] - origin) / h).astype(int), 0)
        hi = np.minimum(np.ceil((b[:, 1] - origin) / h).astype(int) + 1, shape)
        axes = [origin[a] + (np.arange(lo[a], hi[a]) + 0.5) * h for a in range(3)]
        pts = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)
        tri_s = s if s.is_all_triangles else s.triangulate()
        V = np.asarray(tri_s.points, dtype=float)
        tri = np.asarray(tri_s.faces).reshape(-1, 4)[:, 1:]
        edge = float(max(np.linalg.norm(V[tri[:, a]] - V[tri[:, (a + 1) % 3]], axis=1).max()
                         for a in range(3)))
        tree = cKDTree(V)
        to_vertex, _ = tree.query(pts, distance_upper_bound=band + edge)
        near = np.isfinite(to_vertex)
        d = np.empty(len(pts))
        d[near] = pv.PolyData(pts[near]).compute_implicit_distance(s)["implicit_distance"]
        far, n_far = ndimage.label(~near.reshape(hi - lo))
        if n_far:
            # each far region's sign from an evaluated face-neighbour (the regions' borders)
            grown = ndimage.grey_dilation(far, footprint=ndimage.generate_binary_structure(3, 1))
            border = near & (grown.ravel() > 0)
            sign = np.zeros(n_far + 1)
            sign[grown.ravel()[border]] = np.sign(d[border])
            for r in np.flatnonzero(sign[1:] == 0) + 1:  # no evaluated neighbour
                first = np.flatnonzero(far.ravel() == r)[0]
                sign[r] = np.sign(pv.PolyData(pts[first:first + 1]).compute_implicit_distance(
                    s)["implicit_distance"][0])
            # beyond the band: the distance from the nearest vertex less the longest edge (more
            # than ``band``, as the centre is not near)
            rest = ~near
            d[rest] = sign[far.ravel()[rest]] * (tree.query(pts[rest])[0] - edge)
        d = d.reshape(hi - lo)
        box = tuple(slice(lo[a], hi[a]) for a in range(3))
        sel = (d < 0) & (lvl[box] < 0)
        lvl[box][sel] = i
        dist[box][sel] = -d[sel]
    return lvl, dist


def _separate(lvl) -> int:
    """Empty the voxels of each level that share a node with the level above; returns how many."""
    from scipy.ndimage import binary_dilation

    removed = 0
    for i in range(int(lvl.max())):
        near = binary_dilation(lvl == i, structure=np.ones((3, 3, 3), bool))
        cut = near & (lvl == i + 1)
        removed += int(cut.sum())
        lvl[cut] = -1
    return removed


def _keep_largest_pieces(lvl, names) -> int:
    """Empty, per level, the voxels outside its largest face-connected piece (in place; a piece
    joined to the rest only by an edge or a corner would be a mechanism); returns how many."""
    from scipy import ndimage

    removed = 0
    for i, n in enumerate(names):
        pieces, count = ndimage.label(lvl == i)
        if count == 0:
            raise MeshError(f"{n}: no voxel left at this voxel size")
        if count > 1:
            sizes = np.bincount(pieces.ravel())[1:]
            stray = (pieces > 0) & (pieces != 1 + int(np.argmax(sizes)))
            removed += int(stray.sum())
            lvl[stray] = -1
    return removed


def _posterior_wall(mask, yc, xc, h, name) -> int:
    """Grid index j of the first canal voxel behind the body on the mid-sagittal strip."""
    strip = np.abs(xc - np.median(xc[np.any(mask, axis=(1, 2))])) < max(_STRIP, h)
    prof = mask[strip].sum(axis=(0, 2))
    occ = np.nonzero(prof > 0.02 * prof.max())[0]
    if not len(occ):
        raise MeshError(f"{name}: no bone on the mid-sagittal plane at this voxel size")
    gaps = np.nonzero(prof[occ[0]:] <= 0.02 * prof.max())[0]
    if not len(gaps):
        raise MeshError(f"{name}: no vertebral canal found behind the body")
    return int(occ[0] + gaps[0])


def _body_footprint(front, h):
    """Columns (i, j) of the body: the convex hull of the columns whose bone (anterior of the
    posterior wall) spans at least 60 % of the tallest one, grown by one voxel for the rim
    lips; the thinner processes beside it (L5's transverse processes) stay posterior."""
    from scipy.ndimage import binary_dilation
    from scipy.spatial import Delaunay

    k = np.arange(front.shape[2])
    top = np.where(front, k, -1).max(axis=2)
    bot = np.where(front, k, front.shape[2]).min(axis=2)
    span = np.where(front.any(axis=2), top - bot + 1, 0)
    core = np.argwhere(span >= 0.6 * span.max())
    if len(core) < 3:
        return front.any(axis=2)
    ij = np.argwhere(np.ones(span.shape, bool))
    hull = Delaunay(core).find_simplex(ij) >= 0
    return binary_dilation(hull.reshape(span.shape) | np.isin(
        np.ravel_multi_index(ij.T, span.shape).reshape(span.shape),
        np.ravel_multi_index(core.T, span.shape)), structure=np.ones((3, 3), bool))


def _pedicle_axes(post, body_z, y_wall, centres, lvl_mask, origin, h, e_ax, name,
                  surface=None):
    """{"left"/"right": (entry, direction)} through each pedicle's isthmus (module docstring);
    the direction is kept perpendicular to the body axis ``e_ax``; with the level's source
    ``surface`` (model frame) it is refined there (:func:`_surface_axis`). Without a surface
    (a segmented clinical scan, whose voxel pedicle is too ragged to fit: 0-60 degrees on the
    shared scan) the axis runs through the isthmus at the trajectory angle of
    :data:`TRAJECTORY_DEG` from the level's anterior direction (from the posterior elements'
    centroid to the body's centre)."""
    ijk = np.argwhere(post)
    p = origin + (ijk + 0.5) * h
    e_ant = _perpendicular(np.asarray(centres, dtype=float) - p.mean(axis=0), e_ax)
    near = (p[:, 2] >= body_z[0]) & (p[:, 2] <= body_z[1]) \
        & (p[:, 1] < y_wall + _PEDICLE_SEARCH)
    out = {}
    for side, s in (("left", 1.0), ("right", -1.0)):
        q = p[near & (s * (p[:, 0] - centres[0]) > 0)]
        if len(q) < 3:
            raise MeshError(f"{name}: no {side} pedicle found behind the posterior wall at this "
                            "voxel size")
        layer = np.round((q[:, 1] - q[:, 1].min()) / h).astype(int)
        area = np.bincount(layer)
        jm = int(np.argmin(np.where(area > 0, area, area.max() + 1)))
        c0 = q[layer == jm].mean(axis=0)
        cs = []
        for j in range(max(jm - _PEDICLE_LAYERS(h), 0), jm + _PEDICLE_LAYERS(h) + 1):
            r = q[(layer == j) & (np.hypot(q[:, 0] - c0[0], q[:, 2] - c0[2]) <= _PEDICLE_R)]
            if len(r):
                cs.append(r.mean(axis=0))
        if surface is None:  # a segmented scan: the trajectory rule through the isthmus
            d = _trajectory(name, s, e_ant, e_ax)
        else:
            d = _isthmus_direction(np.array(cs), e_ax)
            if d is None:
                raise MeshError(f"{name}: the {side} pedicle is too short at this voxel size")
            c0, d = _surface_axis(surface, c0, d, y_wall, e_ax, side)
        out[side] = (_exit_point(c0, d, lvl_mask, origin, h), d)
    return out


#: medial convergence (degrees) of the transpedicular trajectory on a segmented scan: lumbar
#: vertebral number x 5 degrees (Dickman et al. 1992, J Neurosurg 77:860: the mediolateral
#: trajectory of open lumbar pedicle screws); 5 degrees elsewhere (the parametric model's
#: thoracic value, fem.meshes.vertebra)
TRAJECTORY_DEG = {"L1": 5.0, "L2": 10.0, "L3": 15.0, "L4": 20.0, "L5": 25.0}


def _perpendicular(d, e_ax):
    d = np.asarray(d, dtype=float) - (np.asarray(d, dtype=float) @ e_ax) * e_ax
    return d / np.linalg.norm(d)


def _isthmus_direction(cs, e_ax):
    """The direction into the body of a line fitted through the layer centroids ``cs`` (k, 3),
    perpendicular to the body axis; None for fewer than two layers."""
    if len(cs) < 2:
        return None
    A = np.c_[cs[:, 1], np.ones(len(cs))]
    slope = np.linalg.lstsq(A, cs[:, [0, 2]], rcond=None)[0][0]
    return _perpendicular(-np.array([slope[0], 1.0, slope[1]]), e_ax)


def _trajectory(name: str, s: float, e_ant, e_ax):
    """The unit direction into the body of the pedicle on side ``s`` (+1 left, -1 right):
    ``e_ant`` turned medially by :data:`TRAJECTORY_DEG`."""
    a = np.radians(TRAJECTORY_DEG.get(name, 5.0))
    e_lat = np.cross(e_ax, e_ant)  # the patient's left
    return _perpendicular(np.cos(a) * e_ant - s * np.sin(a) * e_lat, e_ax)


def _exit_point(c0, d, lvl_mask, origin, h):
    """Where the line through ``c0`` along ``-d`` leaves the level's voxels posteriorly."""
    shape = np.array(lvl_mask.shape)
    entry = c0
    for t in np.arange(0.0, 80.0, 0.5 * h):
        x = c0 - t * d
        g = np.floor((x - origin) / h).astype(int)
        if np.any(g < 0) or np.any(g >= shape) or not lvl_mask[tuple(g)]:
            break
        entry = x
    return entry


def _surface_axis(surface, c0, d, y_wall, e_ax, side):
    """A pedicle axis (centre, direction) refined on the source surface: transverse slices
    (z - 2, z, z + 2 mm at the voxel isthmus) cut the pedicle; along each antero-posterior line
    y = const from the posterior wall to 14 mm behind it, the bone interval holding the voxel
    axis gives a midpoint and a width; the narrow stretch around the narrowest (width within
    1.3 times it) is the isthmus, and a line fitted through its midpoints gives the medial
    convergence. Falls back to the voxel axis (returned unchanged) when fewer than 6 midpoints
    are found or the fit points the wrong way or beyond 35 degrees."""
    mids = []
    for dz in (-2.0, 0.0, 2.0):
        sl = surface.slice(normal="z", origin=(c0[0], c0[1], c0[2] + dz))
        if sl.n_points == 0:
            continue
        pts = np.asarray(sl.points)
        seg = sl.lines.reshape(-1, 3)[:, 1:]
        A, B = pts[seg[:, 0]], pts[seg[:, 1]]
        rows = []
        for y in np.arange(y_wall + 1.0, y_wall + 14.0, 0.5):
            cross = (A[:, 1] - y) * (B[:, 1] - y) < 0
            t = (y - A[cross, 1]) / (B[cross, 1] - A[cross, 1])
            xs = np.sort(A[cross, 0] + t * (B[cross, 0] - A[cross, 0]))
            xa = c0[0] + (y - c0[1]) * d[0] / d[1]
            k = np.searchsorted(xs, xa) - 1
            if 0 <= k < len(xs) - 1 and k % 2 == 0:  # inside bone: even crossings before it
                rows.append((y, 0.5 * (xs[k] + xs[k + 1]), xs[k + 1] - xs[k], c0[2] + dz))
        if len(rows) < 2:
            continue
        rows = np.array(rows)
        w = rows[:, 2]
        k0 = int(np.argmin(w))
        lo = k0
        while lo > 0 and w[lo - 1] <= 1.3 * w[k0]:
            lo -= 1
        hi = k0
        while hi < len(w) - 1 and w[hi + 1] <= 1.3 * w[k0]:
            hi += 1
        mids.append(rows[lo:hi + 1])
    if not mids or sum(len(m) for m in mids) < 6:
        return c0, d
    mids = np.concatenate(mids)
    slope, icpt = np.polyfit(mids[:, 0], mids[:, 1], 1)
    lateral_backwards = slope > 0 if side == "left" else slope < 0
    if not lateral_backwards or abs(np.degrees(np.arctan(slope))) > 35.0:
        return c0, d
    y0 = mids[np.argmin(mids[:, 2]), 0]
    centre = np.array([icpt + slope * y0, y0, mids[:, 3].mean()])
    new = -np.array([slope, 1.0, 0.0])
    new -= (new @ e_ax) * e_ax
    return centre, new / np.linalg.norm(new)


def ssm_segment_model(levels="L2-L4", voxel_size: float = 1.0, materials=None,
                      cortex: float = 0.5, endplate: float = 0.25, folder=None,
                      ligaments: bool = False):
    """A hex8 voxel model of contiguous levels of the mean lumbar spine (L2-L5) with discs.

    ``voxel_size`` mm; ``materials`` as :func:`fem.meshes.vertebra.resolve_materials`;
    ``cortex`` / ``endplate``: physical shell and bony endplate thicknesses (mm), used for the
    cortex layer and the thickness compensation of thin layers; ``folder``: the data folder
    (:func:`data_folder`). Regions, sets and metadata as for the parametric models
    (:mod:`fem.meshes.vertebra`); see the module docstring for how they are found.
    """
    names = ssm_levels(levels)
    h = check_limit("voxel_size", voxel_size)
    if not (0.0 < cortex <= 5.0):
        raise ParameterError(f"cortex must lie in (0, 5] mm, got {cortex}")
    surfs = load_surfaces(names, folder)
    grid = _Grid.around(surfs, names, h)
    lvl, dist = _inside(grid.surfaces, grid.origin, grid.shape, h, within=cortex)
    n_inside = [int((lvl == i).sum()) for i in range(len(names))]
    m, made = segment_from_levels(lvl, dist, grid.origin, h, names, materials=materials,
                                  cortex=cortex, endplate=endplate, surfaces=surfs,
                                  ligaments=ligaments)
    m.metadata["ssm"] = dict(folder=str(data_folder(folder)), rotation=ROTATION.tolist(),
                             translation=made["translation"].tolist(), citation=CITATION,
                             surface_volumes={n: float(surfs[n].volume) for n in names},
                             inside_voxels=dict(zip(names, n_inside)),
                             separated_voxels=made["separated_voxels"],
                             nucleus_area_fraction=made["nucleus_area_fraction"])
    return m


def segment_from_levels(lvl, dist, origin, h: float, names: list[str], *, materials=None,
                        cortex: float = 0.5, endplate: float = 0.25, surfaces=None,
                        ligaments: bool = False):
    """A hex8 segment model from a grid of vertebrae: ``lvl`` (nx, ny, nz) the index into
    ``names`` (cranial to caudal) of each voxel's level, -1 empty (changed in place: voxels
    touching the level above are emptied); ``dist`` the distance (mm) of each occupied voxel's
    centre to its level's surface; ``origin`` the grid's corner (mm, the project's axes: x the
    patient's left, y posterior, z cranial); ``h`` the voxel size (mm). Parts, discs, sets and
    anatomy as the module docstring says; ``surfaces`` ({level: surface} in the grid's frame
    before rotation, as :func:`load_surfaces` gives them) refine the pedicle axes where given.

    Returns the model (translated as the module docstring says) and what was done:
    ``{"translation": (3,) mm added to the grid's positions, "separated_voxels": n (emptied
    where they touched the level above, or lay outside the level's largest face-connected
    piece),
    "nucleus_area_fraction": {disc: share}}``.
    """
    grid = _Grid(np.asarray(origin, dtype=float), tuple(lvl.shape), h, [])
    removed = _separate(lvl)
    removed += _keep_largest_pieces(lvl, names)
    labels = np.zeros(grid.shape, dtype=np.int16)
    bodies, rims = [], []
    for i, n in enumerate(names):
        body, rim = _label_level(labels, lvl, dist, grid, i, n, cortex)
        bodies.append(body)
        rims.append(rim)
    fractions = _label_discs(labels, lvl, bodies, names)
    if ligaments and len(names) > 1:
        _label_ligaments(labels, lvl, bodies, names, grid)
    shift = _model_shift(bodies, grid.origin, h)
    o_model = grid.origin + shift
    layers = LevelDims("ssm", 1.0, 1.0, 1.0, 1.0, 0.0, cortex=cortex, endplate=endplate)
    physical = resolve_materials(materials)
    mats = thickness_compensated(physical, layers, h)
    m = model_from_labels(labels, o_model, h, label_names(names), mats)
    m.metadata["layer_factors"] = layer_factors(names, physical, layers, h)
    add_endplate_sets(m, labels, names, rims)
    _annotate_levels(m, names, bodies, lvl, o_model, h, surfaces, shift, cortex, endplate)
    m.metadata["voxel_size"] = h
    return m, {"translation": shift, "separated_voxels": removed,
               "nucleus_area_fraction": fractions}


@dataclass(frozen=True)
class _Grid:
    """The voxel grid around the rotated source surfaces: origin (mm, a voxel corner), shape,
    voxel size h (mm), and the surfaces in the grid's frame."""

    origin: np.ndarray
    shape: tuple
    h: float
    surfaces: list

    @classmethod
    def around(cls, surfs: dict, names, h: float) -> _Grid:
        rot = []
        for n in names:
            s = surfs[n].copy()
            s.points = np.asarray(s.points, float) @ ROTATION.T
            rot.append(s)
        lo = np.min([np.array(s.bounds).reshape(3, 2)[:, 0] for s in rot], axis=0)
        hi = np.max([np.array(s.bounds).reshape(3, 2)[:, 1] for s in rot], axis=0)
        origin = np.floor(lo / h) * h - h
        shape = tuple(np.ceil((hi - origin) / h).astype(int) + 1)
        return cls(origin, shape, h, rot)

    def centres(self, axis: int) -> np.ndarray:
        return self.origin[axis] + (np.arange(self.shape[axis]) + 0.5) * self.h


def _label_level(labels, lvl, dist, grid: _Grid, i: int, n: str, cortex: float):
    """Label the voxels of level ``i`` (``labels`` in place, codes ``1 + 10 i + part``):
    posterior elements behind the posterior wall, the body's shell (cortex), trabecular core
    and the bony endplates (the top and bottom voxels of the body's columns, less the shell's
    rim). Returns (body, top, bottom, posterior wall index) and the endplate rims (top, bottom
    masks of shell voxels)."""
    from scipy.ndimage import binary_erosion, distance_transform_edt

    h, shape = grid.h, grid.shape
    kz = np.arange(shape[2])
    mask = lvl == i
    jw = _posterior_wall(mask, grid.centres(1), grid.centres(0), h, n)
    body = mask.copy()
    body[:, jw:, :] = False
    body &= _body_footprint(body, h)[..., None]
    cols = body.any(axis=2)
    top = np.where(cols, shape[2] - 1 - np.argmax(body[:, :, ::-1], axis=2), -1)
    bot = np.where(cols, np.argmax(body, axis=2), -1)
    k_mid = np.argwhere(body)[:, 2].mean()
    full = (top - bot) >= 0.6 * np.median((top - bot)[cols])
    c = 0.5 * (top + bot)
    top[~((top > k_mid) & (full | (c > k_mid)))] = -1
    bot[~((bot < k_mid) & (full | (c < k_mid)))] = -1
    shell = mask & ~binary_erosion(mask, structure=_FACES, border_value=0)
    shell |= dist <= cortex
    # the shell's columns (their top and bottom voxels are the endplate's rim, cortex)
    rim = cols & ~binary_erosion(cols, structure=_FACES[1], border_value=0)
    rim |= cols & ((distance_transform_edt(cols) - 0.5) * h <= cortex)
    code = 1 + 10 * i
    labels[mask] = code + 4
    labels[body] = code + 1
    labels[body & shell] = code
    ends_bot = body & (kz == bot[..., None])
    ends_top = body & (kz == top[..., None])
    labels[ends_bot & ~rim[..., None]] = code + 3
    labels[ends_top & ~rim[..., None]] = code + 2
    rims = (ends_top & rim[..., None] & shell, ends_bot & rim[..., None] & shell)
    return (body, top, bot, jw), rims


def _label_discs(labels, lvl, bodies, names) -> dict:
    """Label the disc between each pair of levels (``labels`` in place): the empty voxels
    between the facing endplates, the nucleus the innermost ``NUCLEUS_AREA`` of its footprint.
    Returns the nucleus's share of each disc's footprint."""
    from scipy.ndimage import distance_transform_edt

    kz = np.arange(labels.shape[2])
    fractions = {}
    for i in range(len(names) - 1):
        _, _, bot_up, _ = bodies[i]
        _, top_lo, _, _ = bodies[i + 1]
        both = (bot_up >= 0) & (top_lo >= 0) & (bot_up > top_lo + 1)
        gap = both[..., None] & (kz > top_lo[..., None]) & (kz < bot_up[..., None]) \
            & (labels == 0) & (lvl < 0)
        foot = gap.any(axis=2)
        if not foot.any():
            raise MeshError(f"no disc space between {names[i]} and {names[i + 1]} at this voxel "
                            "size")
        ij = np.argwhere(foot)
        key = distance_transform_edt(foot)[foot] \
            - 1e-3 * np.linalg.norm(ij - ij.mean(axis=0), axis=1) / len(ij)
        pick = ij[np.argsort(-key)[:int(round(NUCLEUS_AREA * len(ij)))]]
        nuc2 = np.zeros_like(foot)
        nuc2[pick[:, 0], pick[:, 1]] = True
        fractions[f"{names[i]}-{names[i + 1]}"] = float(nuc2.sum() / foot.sum())
        labels[gap] = 1 + 10 * i + 5
        labels[gap & nuc2[..., None]] = 1 + 10 * i + 6
    return fractions


#: the posterior ligaments between real posterior elements (:func:`_label_ligaments`):
#: ASSUMPTIONS of the anatomy's proportions, as the parametric builder's boxes are. The gaps are
#: filled behind the front of the laminae (the canal and the foramina stay empty); within
#: ``LIGAMENT_MEDIAL`` of the body width from the midline they are the flavum, and behind it,
#: more than ``LIGAMENT_FLAVUM_DEPTH`` of the body depth behind the laminae's front, the
#: interspinous ligament; laterally the facet capsules. A gap taller than
#: ``LIGAMENT_MAX_GAP`` mm is no ligament's.
LIGAMENT_MEDIAL = 0.2
LIGAMENT_FLAVUM_DEPTH = 0.2
LIGAMENT_MAX_GAP = 30.0


def _beside(lvl, i: int) -> np.ndarray:
    """The voxels whose lower face, or whose upper face, touches both level ``i``'s bone and
    level ``i + 1``'s (by a node): in a facet joint's gap, where the two articular processes
    stand side by side, such a voxel would join them sideways, and a fracture that slides one
    past the other (the levels above tip) would shear it through itself."""
    from scipy.ndimage import binary_dilation

    ring = np.ones((3, 3, 1), bool)

    def faces(bone):
        near = binary_dilation(bone, structure=ring)  # in the voxel's layer, by an edge
        lower, upper = near.copy(), near.copy()
        lower[:, :, 1:] |= near[:, :, :-1]  # ... or in the layer below
        upper[:, :, :-1] |= near[:, :, 1:]  # ... or above
        return lower, upper

    (lo_u, up_u), (lo_l, up_l) = faces(lvl == i), faces(lvl == i + 1)
    return (lo_u & lo_l) | (up_u & up_l)


def _label_ligaments(labels, lvl, bodies, names, grid: _Grid) -> None:
    """Label the posterior ligaments between each pair of neighbouring levels (``labels`` in
    place, codes ``1 + 10 i + 7 + r`` of :data:`fem.parts.LIGAMENT`, as the parametric
    builder's): in every vertical column of voxels behind the laminae's front where the upper
    level's posterior elements lie above the lower level's, the empty voxels between them,
    split into the three parts by :data:`LIGAMENT_MEDIAL` and :data:`LIGAMENT_FLAVUM_DEPTH`.
    Raises :class:`MeshError` where a part gets no voxel."""
    h = grid.h
    kz = np.arange(labels.shape[2])
    x, y = grid.centres(0), grid.centres(1)
    for i in range(len(names) - 1):
        post = [labels == 1 + 10 * (i + d) + 4 for d in (0, 1)]
        body = bodies[i][0] | bodies[i + 1][0]
        bc = np.argwhere(body)
        xc = grid.origin[0] + (bc[:, 0].mean() + 0.5) * h
        width = (np.ptp(bc[:, 0]) + 1) * h
        depth = (np.ptp(bc[:, 1]) + 1) * h
        strip = np.abs(x - xc) < max(3.0, h)
        fronts = []
        for d in (0, 1):
            js = np.nonzero(post[d][strip].any(axis=(0, 2)))[0]
            js = js[js > bodies[i + d][3]]
            if not len(js):
                raise MeshError(f"{names[i + d]}: no lamina found in the midline behind the "
                                "body at this voxel size, for the posterior ligaments")
            fronts.append(y[js.min()])
        front = max(fronts)
        # the lowest voxel of the upper level's arch and the highest of the lower's, per column
        bot_up = np.where(post[0].any(axis=2), np.argmax(post[0], axis=2), -1)
        top_lo = np.where(post[1].any(axis=2),
                          labels.shape[2] - 1 - np.argmax(post[1][:, :, ::-1], axis=2), -1)
        behind = (y >= front)[None, :]
        cols = behind & (bot_up >= 0) & (top_lo >= 0) & (bot_up > top_lo + 1) \
            & ((bot_up - top_lo - 1) * h <= LIGAMENT_MAX_GAP)
        gap = cols[..., None] & (kz > top_lo[..., None]) & (kz < bot_up[..., None]) \
            & (labels == 0) & (lvl < 0) & ~_beside(lvl, i)
        medial = (np.abs(x - xc) < LIGAMENT_MEDIAL * width)[:, None]
        spinous = (y > front + LIGAMENT_FLAVUM_DEPTH * depth)[None, :]
        parts = {"ligament_interspinous": medial & spinous, "ligament_flavum": medial & ~spinous,
                 "ligament_capsular": ~medial}
        for r, part in enumerate(LIGAMENT):  # the order of label_names' codes
            sel = gap & parts[part][..., None]
            if not sel.any():
                raise MeshError(f"voxel size {h:g} mm leaves no voxel for the {part} between "
                                f"{names[i]} and {names[i + 1]}: use a finer voxel size")
            labels[sel] = 1 + 10 * i + 7 + r


def _model_shift(bodies, origin, h: float) -> np.ndarray:
    """The translation that puts the bodies' mean axis at x = y = 0 and the lowest body's
    bottom at z = 0."""
    body_all = np.any([b[0] for b in bodies], axis=0)
    bc = origin + (np.argwhere(body_all) + 0.5) * h
    return np.array([-bc[:, 0].mean(), -bc[:, 1].mean(),
                     -(origin[2] + np.argwhere(bodies[-1][0])[:, 2].min() * h)])


def _annotate_levels(m, names, bodies, lvl, o_model, h: float, surfs, shift, cortex: float,
                     endplate: float) -> None:
    """Each level's anatomy from its voxels (centre, width, depth, endplate centres and height,
    pedicle axes, posterior wall) as the model's :class:`~fem.anatomy.Anatomy`."""
    levels = []
    for i, n in enumerate(names):
        body, _, _, jw = bodies[i]
        pc = o_model + (np.argwhere(body) + 0.5) * h
        centre = pc.mean(axis=0)
        width = np.ptp(pc[:, 0]) + h
        depth = np.ptp(pc[:, 1]) + h
        ends = endplate_centres(m, n, centre, width, depth)
        height = float(np.linalg.norm(ends["superior"] - ends["inferior"]))
        post = lvl == i
        post[:, :jw, :] = False
        e_ax = (ends["superior"] - ends["inferior"]) / height
        axes = _pedicle_axes(post, (ends["inferior"][2], ends["superior"][2]),
                             o_model[1] + jw * h, centre, lvl == i, o_model, h, e_ax, n,
                             surface=None if surfs is None else moved(surfs[n], shift))
        levels.append(measured_level(n, centre, ends, axes, float(width), float(depth),
                                     float(o_model[1] + jw * h), cortex, endplate))
    annotate(m, names, levels=levels)


def measured_level(name: str, centre, ends: dict, axes: dict, width: float, depth: float,
                   posterior_wall_y: float, cortex: float, endplate: float) -> LevelAnatomy:
    """A level's anatomy as a shape-model builder measures it. Its ``dims`` are a prismatic
    stand-in of the measured width, depth and endplate-to-endplate height, with its base at the
    inferior endplate centre (``z0``): what the axis-aligned fracture builder
    (:func:`fem.meshes.pathology.compress`) works with."""
    height = float(np.linalg.norm(np.subtract(ends["superior"], ends["inferior"])))
    dims = LevelDims(name, width, depth, height, height, 0.0, cortex=cortex, endplate=endplate)
    return LevelAnatomy(name, centre=centre, superior_centre=ends["superior"],
                        inferior_centre=ends["inferior"], pedicle_axes=axes, width=width,
                        depth=depth, height=height, rim=dims.rim,
                        z0=float(ends["inferior"][2]), dims=dims,
                        posterior_wall_y=posterior_wall_y)


def endplate_centres(m, level: str, centre, width: float, depth: float) -> dict:
    """{"superior"/"inferior": the mean of the level's endplate-set nodes within a quarter of
    the body's smaller dimension from the axis through ``centre``} (all of them if none is)."""
    r = 0.25 * min(width, depth)
    ends = {}
    for key in ("superior", "inferior"):
        q = m.points[m.node_sets[f"{level}/{key}"]]
        near = np.hypot(q[:, 0] - centre[0], q[:, 1] - centre[1]) <= r
        ends[key] = q[near].mean(axis=0) if near.any() else q.mean(axis=0)
    return ends


def moved(surface, translation, rotation=ROTATION):
    """A copy of a data-frame surface in a model frame: ``p -> rotation @ p + translation``."""
    out = surface.copy()
    out.points = np.asarray(surface.points, float) @ np.asarray(rotation).T \
        + np.asarray(translation)
    return out


def to_model_frame(surface, model):
    """A copy of a data-frame surface moved into ``model``'s frame (for overlays and checks)."""
    ssm = model.metadata["ssm"]
    return moved(surface, ssm["translation"], ssm["rotation"])


def level_surface(model, level: str):
    """The outer surface of a level's bone elements in ``model`` as a triangulated
    ``pyvista.PolyData`` (corner nodes; hex8 quads split in two), model frame."""
    import pyvista as pv

    from ..topology import boundary_faces

    bone = [model.regions[r] for r in model.regions
            if r.startswith(level + "/") and r.split("/")[1] in
            ("cortex", "trabecular", "endplate_superior", "endplate_inferior", "posterior")]
    if not bone:
        raise MeshError(f"level {level!r} has no bone regions in this model")
    b = model.blocks[0]
    part = type(model).from_arrays(model.points, [(b.type, b.conn[np.unique(np.concatenate(bone))])])
    el, fc = boundary_faces(part)
    et = part.blocks[0].etype
    ncorner = 4 if et.face_type == "quad4" else 3
    corners = np.array([f[:ncorner] for f in et.faces])
    faces = part.blocks[0].conn[el[:, None], corners[fc]]
    tri = faces if ncorner == 3 else np.concatenate([faces[:, [0, 1, 2]], faces[:, [0, 2, 3]]])
    return pv.PolyData(model.points, np.hstack([np.full((len(tri), 1), 3), tri]).ravel()).clean()


def hausdorff(model, level: str, surface) -> tuple[float, float]:
    """Surface fidelity of a level: (Hausdorff distance, mean distance), mm, between the outer
    surface of the level's bone elements in ``model`` (:func:`level_surface`) and the source
    ``surface`` (data frame, as from :func:`load_surfaces`), both ways: the distance from every
    vertex of each surface to the other surface (point to triangle, not point to vertex)."""
    mine = level_surface(model, level)
    src = to_model_frame(surface, model)
    d1 = np.abs(mine.compute_implicit_distance(src)["implicit_distance"])
    d2 = np.abs(src.compute_implicit_distance(mine)["implicit_distance"])
    return float(max(d1.max(), d2.max())), float(np.concatenate([d1, d2]).mean())


_FACES = np.zeros((3, 3, 3), bool)
_FACES[1, 1, :] = _FACES[1, :, 1] = _FACES[:, 1, 1] = True
