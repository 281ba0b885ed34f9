"""Real lumbar anatomy (the mean L2-L5 of :mod:`fem.meshes.ssm`) as tet10 models, meshed by gmsh.

The voxel form (:func:`fem.meshes.ssm.ssm_segment_model`) staircases the surface; this form keeps
it: the source triangle surfaces (0.4-1.7 mm edges) are remeshed at ``mesh_size`` and filled with
tetrahedra, and the discs are volumes whose top and bottom are the endplate surfaces themselves.
gmsh is an optional dependency (``pip install vertebra-fem[mesh]``). The data, the axes and the
frame (``metadata["ssm"]``) are those of the voxel form; cite the shape model (``CITATION``).

How the model is built:

1. *Analysis.* The voxel form at :data:`ANALYSIS_VOXEL` mm supplies the frame (rotation and
   translation), the split of each level into body and posterior elements (posterior-wall plane
   and body footprint), and the pedicle axes.
2. *Endplate patches.* On each source surface (model frame), the superior (inferior) patch is the
   largest connected set of triangles of the body (nearest analysis voxel not posterior),
   anterior of the posterior wall less 1 mm, above (below) the body's mid-height, whose outward
   normal is within 60 degrees of the body axis (:data:`PATCH_NORMAL`) - the flat endplate and
   the top of its rim, not the rounded rim's flank. Where a disc joins two patches, each is cut
   to the other's footprint (projected along z, grown by 1 mm), as the voxel form fills only the
   columns where both bodies exist. Holes are filled and one-triangle spikes and notches
   removed, so each patch is a disc with one boundary loop.
3. *Surface mesh.* gmsh remeshes the patched surfaces (``classifySurfaces`` for parametrisable
   pieces, which keeps the patch boundaries as curves; ``createGeometry``) with triangles of at
   most ``mesh_size`` mm.
4. *Discs.* The side wall of a disc is ruled between the remeshed boundary loops of the upper
   body's inferior patch and the lower body's superior patch (rows of nodes about
   ``mesh_size`` apart, spaced by arc length), so it shares its rim nodes with both patches.
5. *Volumes.* gmsh fills each body and each disc with tetrahedra (Delaunay, then gmsh's and
   Netgen's optimisers), one volume at a time, keeping the surface meshes: a disc shares every
   node of its top and bottom with the bodies. Facet joints are not connected (two levels'
   surfaces meet there, and L4-L5 overlap by about 0.2 mm in the source data; each level is
   meshed on its own, so neither matters to the mesher). Mid-edge nodes are put at the edge
   midpoints (straight-sided tet10 on the remeshed, faceted surface).

Regions per level, element by element:

* posterior elements: elements whose centroid's nearest analysis voxel is posterior;
* bony endplates: the other (body) elements with a corner node on the superior (inferior) patch;
* cortex: the remaining body elements with a corner node on the surface or a centroid within
  ``cortex`` mm of it (one element layer, ``mesh_size`` thick or less);
* trabecular core: the rest of the body.

Thin layers. The cortex (``cortex`` mm, 0.35-1 usual) and bony endplates (``endplate`` mm) are
thinner than the element layers that represent them, so their moduli are scaled, per level and
layer, by A t / V (A: the layer's outer surface area, V: its element volume, t: the physical
thickness), keeping the layer's membrane stiffness (E t per unit area) - the voxel form's t / h
rule for a layer of irregular thickness. The scale factors are in ``metadata["mesh"]``.

Discs: the nucleus is the :data:`~fem.meshes.ssm.NUCLEUS_AREA` (40 %) of the disc's footprint
farthest from its outline, extended through the height: the elements whose centroid projects
there. The footprint is the disc's shadow along its axis (the union of its elements'
projections, :func:`footprint`, on a 0.25 mm grid; 2-D distance transform), as the voxel form
takes every column of its disc voxels; the axis is the normal between the disc's two rim loops
(:func:`fem.fibres.rim_axis`), the one its fibres wind about. Until 2026-12-05 the footprint was
where the two endplate patches overlap, projected along the line between the endplate centres:
the nucleus took 0.25 of the L4-L5 disc's volume against the voxel form's 0.45, and the fibre
disc's nucleus pressure 0.67 MPa at 500 N against the voxel form's 0.91 (3 mm); now 0.84 against
0.96 at 3 mm, the voxel form's falling to 0.86 at 1.5 mm (orthotropic secant, standing). The
nucleus share of the disc volume is recorded in ``metadata["ssm"]["nucleus_volume_fraction"]``.

Cost and limits. L2-L4 at ``mesh_size=4`` is 106 000 DOF (about 11 s to build on 2 cores), at 3
about 205 000 and at 2.5 about 323 000: some six times the DOF of voxels of the same size, for a
surface within 0.06-0.15 mm of the source on average instead of 0.5 (``bench/bench_ssm.py``).
At equal element size the two forms agree: the L3 of L2-L4 at BMD 70 under standing has a
stiffness of 17 394 N/mm as tet10 and 17 218 as voxels at 2.5 mm. Both soften as the elements
shrink (tet10 19 578, 18 277, 17 394 N/mm at 4, 3, 2.5 mm; voxels 17 218, 15 532, 14 542 at
2.5, 1.5, 1 mm; ``bench/ssm_convergence.py``). The likely cause: a thin layer represented by
one element layer d thick with its modulus scaled by t / d keeps its membrane stiffness but has
(d / t)^2 too much bending stiffness. Compare states at one mesh size, as the studies do, and
read absolute stiffness with that spread in mind. Genant wedge and biconcave deformities and lesions apply
(tested); a grade-2 crush of L3 at 3.5 mm inverts two annulus elements at the posterior rim,
which rises above the parametric endplate height that :func:`fem.meshes.pathology.compress`
moves the disc with, and is refused with that message.
"""

from __future__ import annotations

import logging
import time

import numpy as np

from ..assembly import element_volumes
from ..errors import MeshError, ParameterError
from ..fibres import rim_axis
from ..limits import check as check_limit
from ..model import Model
from .ssm import (
    NUCLEUS_AREA,
    endplate_centres,
    load_surfaces,
    measured_level,
    moved,
    ssm_levels,
    ssm_segment_model,
)
from .vertebra import BONE_PARTS, annotate, apply_material, resolve_materials
from .vertebra_gmsh import load_gmsh

logger = logging.getLogger(__name__)

#: mm, the voxel size of the analysis model (frame, body/posterior split, pedicle axes)
ANALYSIS_VOXEL = 1.5
#: least cosine between an endplate patch triangle's outward normal and the body axis
PATCH_NORMAL = 0.5
#: mm, how far anterior of the posterior-wall plane an endplate patch stops
WALL_MARGIN = 1.0
#: mm, how much a patch's partner footprint is grown before it cuts the patch
FOOTPRINT_GROWTH = 1.0
_GRID = 0.25  # mm, the 2-D grid of footprints
#: VTK tet10 mid-edge nodes 4..9 sit on these corner pairs
TET10_EDGES = np.array([(0, 1), (1, 2), (0, 2), (0, 3), (1, 3), (2, 3)])


# --------------------------------------------------------------------------- triangle surfaces
def _edge_pairs(tri: np.ndarray):
    """(a, b): indices of triangles sharing an edge, each pair once."""
    e = np.concatenate([tri[:, [0, 1]], tri[:, [1, 2]], tri[:, [2, 0]]])
    key = np.sort(e, axis=1)
    tid = np.tile(np.arange(len(tri)), 3)
    o = np.lexsort(key.T[::-1])
    k = key[o]
    same = np.all(k[1:] == k[:-1], axis=1)
    return tid[o][:-1][same], tid[o][1:][same]


def _largest(mask: np.ndarray, a, b) -> np.ndarray:
    """The largest edge-connected component of the triangles in ``mask``."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    if not mask.any():
        return mask
    sel = mask[a] & mask[b]
    n = len(mask)
    g = coo_matrix((np.ones(int(sel.sum())), (a[sel], b[sel])), shape=(n, n))
    _, comp = connected_components(g, directed=False)
    comp = np.where(mask, comp, -1)
    return comp == np.argmax(np.bincount(comp[mask]))


def _clean(mask: np.ndarray, a, b) -> np.ndarray:
    """One connected patch with no hole, spike (a triangle with one patch neighbour) or notch
    (an outside triangle with two)."""
    n = len(mask)
    mask = ~_largest(~_largest(mask, a, b), a, b)
    for _ in range(50):
        nb = np.bincount(np.r_[a, b], weights=np.r_[mask[b], mask[a]], minlength=n)
        new = mask.copy()
        new[mask & (nb <= 1)] = False
        new[~mask & (nb >= 2)] = True
        if (new == mask).all():
            break
        mask = new
    return ~_largest(~_largest(mask, a, b), a, b)


def _loop(tri: np.ndarray, what: str) -> np.ndarray:
    """The node loop bounding a patch of triangles (one simple loop, else MeshError)."""
    e = np.concatenate([tri[:, [0, 1]], tri[:, [1, 2]], tri[:, [2, 0]]])
    _, inv, cnt = np.unique(np.sort(e, axis=1), axis=0, return_inverse=True, return_counts=True)
    bd = e[cnt[inv.ravel()] == 1]
    nxt = {}
    for p, q in bd:
        if p in nxt:
            raise MeshError(f"{what}: the patch boundary touches itself at a node")
        nxt[p] = q
    loop = [bd[0, 0]]
    while (q := nxt[loop[-1]]) != loop[0]:
        loop.append(q)
        if len(loop) > len(bd):
            break
    if len(loop) != len(bd):
        raise MeshError(f"{what}: the patch has {len(bd)} boundary edges but a loop of "
                        f"{len(loop)}: it is not one disc")
    return np.array(loop)


def _params(X: np.ndarray) -> np.ndarray:
    """Normalised arc length of a closed polyline's nodes, plus 1.0 for the closing node."""
    s = np.r_[0.0, np.cumsum(np.linalg.norm(np.diff(np.r_[X, X[:1]], axis=0), axis=1))]
    return s / s[-1]


def _at(X: np.ndarray, sX: np.ndarray, s: np.ndarray) -> np.ndarray:
    Xc = np.r_[X, X[:1]]
    return np.stack([np.interp(s, sX, Xc[:, k]) for k in range(3)], axis=1)


def _stitch(ia, sa, ib, sb) -> np.ndarray:
    """Triangles between two closed rows of node ids with aligned parameters in [0, 1): walk
    both rows, advancing the one whose next node comes first."""
    tris, i, j, na, nb = [], 0, 0, len(ia), len(ib)
    while i < na or j < nb:
        na_next = sa[i + 1] if i + 1 < na else 1.0
        nb_next = sb[j + 1] if j + 1 < nb else 1.0
        if j >= nb or (i < na and na_next <= nb_next):
            tris.append((ia[i], ia[(i + 1) % na], ib[j % nb]))
            i += 1
        else:
            tris.append((ia[i % na], ib[(j + 1) % nb], ib[j]))
            j += 1
    return np.array(tris)


def _ccw(loop: np.ndarray, X: np.ndarray) -> np.ndarray:
    xy = X[loop, :2]
    area = np.sum(xy[:, 0] * np.roll(xy[:, 1], -1) - np.roll(xy[:, 0], -1) * xy[:, 1])
    return loop if area > 0 else loop[::-1]


def _band(X: np.ndarray, upper: np.ndarray, lower: np.ndarray, h: float):
    """(new points, triangles) of a disc's side wall ruled between two node loops of ``X``:
    rows of nodes about ``h`` apart, each spaced by arc length; new points get ids from
    ``len(X)`` on."""
    A, B = _ccw(upper, X), _ccw(lower, X)
    B = np.roll(B, -int(np.argmin(np.linalg.norm(X[B, :2] - X[A[0], :2], axis=1))))
    XA, XB = X[A], X[B]
    sA, sB = _params(XA), _params(XB)
    probe = np.linspace(0.0, 1.0, 200, endpoint=False)
    gap = float(np.median(np.linalg.norm(_at(XA, sA, probe) - _at(XB, sB, probe), axis=1)))
    nrow = max(1, int(round(gap / h)))
    rows, new, nid = [(A, sA[:-1])], [], len(X)
    for r in range(1, nrow):
        t = r / nrow
        n = int(round((1 - t) * len(A) + t * len(B)))
        s = np.arange(n) / n
        new.append((1 - t) * _at(XA, sA, s) + t * _at(XB, sB, s))
        rows.append((np.arange(nid, nid + n), s))
        nid += n
    rows.append((B, sB[:-1]))
    tri = np.concatenate([_stitch(*rows[r], *rows[r + 1]) for r in range(nrow)])
    return (np.concatenate(new) if new else np.zeros((0, 3))), tri


# --------------------------------------------------------------------------- patches
def _raster(xy: np.ndarray, lo: np.ndarray, shape) -> np.ndarray:
    from scipy.ndimage import binary_closing, binary_fill_holes

    M = np.zeros(shape, bool)
    ij = np.floor((xy - lo) / _GRID).astype(int)
    M[ij[:, 0], ij[:, 1]] = True
    return binary_fill_holes(binary_closing(M, iterations=int(np.ceil(1.0 / _GRID))))


def _patches(surfs: list, names: list[str], analysis: Model) -> list[np.ndarray]:
    """Per level, a label per source triangle: 0 other surface, 1 superior patch, 2 inferior."""
    from scipy.ndimage import binary_dilation
    from scipy.spatial import cKDTree

    vl = analysis.metadata["voxel_labels"]
    centres = np.asarray(vl["origin"]) + (vl["ijk"] + 0.5) * vl["spacing"]
    lab = np.asarray(vl["labels"]) - 1
    out, cand = [], []
    for i, (P, T) in enumerate(surfs):
        an = analysis.anatomy[names[i]]
        sc, ic = an.superior_centre, an.inferior_centre
        axis = (sc - ic) / np.linalg.norm(sc - ic)
        C = P[T].mean(axis=1)
        nrm = np.cross(P[T[:, 1]] - P[T[:, 0]], P[T[:, 2]] - P[T[:, 0]])
        nrm /= np.linalg.norm(nrm, axis=1)[:, None]
        own = lab // 10 == i
        _, j = cKDTree(centres[own]).query(C)
        body = lab[own][j] % 10 != 4
        up = (C - 0.5 * (sc + ic)) @ axis
        a, b = _edge_pairs(T)
        labels = np.zeros(len(T), dtype=np.int8)
        for code, sign in ((1, 1.0), (2, -1.0)):
            m = body & (sign * (nrm @ axis) > PATCH_NORMAL) & (sign * up > 0) \
                & (C[:, 1] < an.posterior_wall_y - WALL_MARGIN)
            if not m.any():
                raise MeshError(f"{names[i]}: no {'superior' if code == 1 else 'inferior'} "
                                "endplate found on the surface")
            labels[_clean(m, a, b) & (labels == 0)] = code
        out.append(labels)
        cand.append((C, a, b))
    allxy = np.concatenate([c[0][:, :2] for c in cand])
    lo = allxy.min(axis=0) - 5.0
    shape = tuple(np.ceil((allxy.max(axis=0) + 5.0 - lo) / _GRID).astype(int))
    grow = int(round(FOOTPRINT_GROWTH / _GRID))
    for j in range(len(names) - 1):
        (CU, aU, bU), (CL, aL, bL) = cand[j], cand[j + 1]
        mU, mL = out[j] == 2, out[j + 1] == 1
        RU = binary_dilation(_raster(CU[mU, :2], lo, shape), iterations=grow)
        RL = binary_dilation(_raster(CL[mL, :2], lo, shape), iterations=grow)
        inside = lambda R, C: R[tuple(np.floor((C[:, :2] - lo) / _GRID).astype(int).T)]  # noqa: E731
        keepU = _clean(mU & inside(RL, CU), aU, bU)
        keepL = _clean(mL & inside(RU, CL), aL, bL)
        out[j][mU & ~keepU] = 0
        out[j + 1][mL & ~keepL] = 0
    return out


# --------------------------------------------------------------------------- gmsh
def _add_surfaces(gmsh, groups: dict, X: np.ndarray) -> dict:
    """One discrete gmsh surface per group of triangles (0-based ids into ``X``); {key: tag}."""
    used = np.unique(np.concatenate(list(groups.values())))
    tags = {}
    for g, (key, tri) in enumerate(groups.items()):
        s = gmsh.model.addDiscreteEntity(2, g + 1)
        if g == 0:
            gmsh.model.mesh.addNodes(2, s, (used + 1).tolist(), X[used].ravel().tolist())
        gmsh.model.mesh.addElementsByType(s, 2, [], (tri + 1).ravel().tolist())
        tags[key] = s
    return tags


def _tri_keys(tri: np.ndarray) -> np.ndarray:
    t = np.sort(np.asarray(tri, dtype=np.int64), axis=1)
    return (t[:, 0] * 2 ** 21 + t[:, 1]) * 2 ** 21 + t[:, 2]


def _remesh(gmsh, groups: dict, X: np.ndarray, h: float):
    """Stage 1: the patched surfaces remeshed at ``h``; returns (points, {key: triangles})."""
    gmsh.model.add("surfaces")
    _add_surfaces(gmsh, groups, X)
    gmsh.model.mesh.createTopology()
    gmsh.model.mesh.classifySurfaces(np.pi, True, True, np.pi)
    index = {int(k): key for key, tri in groups.items() for k in _tri_keys(tri)}
    owner = {}
    for _, tag in gmsh.model.getEntities(2):
        _, _, en = gmsh.model.mesh.getElements(2, tag)
        keys = {index.get(int(k)) for k in _tri_keys(en[0].reshape(-1, 3) - 1)}
        if len(keys) != 1 or None in keys:
            raise MeshError("gmsh's surface classification mixed the endplate patches with the "
                            "rest of a surface")
        owner[tag] = keys.pop()
    gmsh.model.mesh.createGeometry()
    gmsh.model.geo.synchronize()
    _size_options(gmsh, h)
    gmsh.option.setNumber("Mesh.MeshSizeMin", 0.3 * h)
    try:
        gmsh.model.mesh.generate(2)
    except Exception as exc:
        raise MeshError(f"gmsh could not remesh the surfaces at mesh_size={h}: {exc}") from exc
    ntag, xyz, _ = gmsh.model.mesh.getNodes()
    out = {}
    for tag, key in owner.items():
        _, _, en = gmsh.model.mesh.getElements(2, tag)
        out.setdefault(key, []).append(en[0].reshape(-1, 3))
    out = {k: np.concatenate(v) for k, v in out.items()}
    used = np.unique(np.concatenate(list(out.values())))
    order = np.argsort(ntag)
    pts = xyz.reshape(-1, 3)[order[np.searchsorted(ntag, used, sorter=order)]]
    gmsh.model.remove()
    return pts, {k: np.searchsorted(used, v) for k, v in out.items()}


def _size_options(gmsh, h: float) -> None:
    gmsh.option.setNumber("Mesh.MeshSizeMax", h)
    gmsh.option.setNumber("Mesh.MeshSizeFromPoints", 0)
    gmsh.option.setNumber("Mesh.MeshSizeFromCurvature", 0)
    gmsh.option.setNumber("Mesh.MeshSizeExtendFromBoundary", 0)


def _fill(gmsh, groups: dict, X: np.ndarray, volumes: dict, h: float, optimize: bool):
    """Stage 2: tetrahedra in each volume {name: [surface keys]} from the fixed surface meshes,
    one volume at a time (two levels' surfaces may touch or overlap at a facet joint, which a
    joint tetrahedralisation refuses); returns (points: X then the interior nodes, tet4
    connectivity, volume name per tet)."""
    from scipy.spatial import cKDTree

    tree = cKDTree(X)
    points, conns, owner = [X], [], []
    n_points = len(X)
    for name, keys in volumes.items():
        gmsh.model.add(name)
        tags = _add_surfaces(gmsh, {k: groups[k] for k in keys}, X)
        gmsh.model.mesh.createTopology()
        gmsh.model.geo.addVolume([gmsh.model.geo.addSurfaceLoop([tags[k] for k in keys])])
        gmsh.model.geo.synchronize()
        _size_options(gmsh, h)
        gmsh.option.setNumber("Mesh.Optimize", 1 if optimize else 0)
        gmsh.option.setNumber("Mesh.OptimizeNetgen", 1 if optimize else 0)
        try:
            gmsh.model.mesh.generate(3)
        except Exception as exc:
            raise MeshError(f"gmsh could not fill {name} at mesh_size={h}: {exc}") from exc
        ntag, xyz, _ = gmsh.model.mesh.getNodes()
        xyz = xyz.reshape(-1, 3)
        types, _, enodes = gmsh.model.mesh.getElements(3)
        if list(types) != [4]:
            raise MeshError(f"gmsh produced element types {list(types)} instead of tet4")
        dist, near = tree.query(xyz)
        on_surface = dist <= 1e-9 * max(1.0, float(np.abs(X).max()))
        ids = np.where(on_surface, near, 0)
        ids[~on_surface] = n_points + np.arange(int((~on_surface).sum()))
        n_points += int((~on_surface).sum())
        points.append(xyz[~on_surface])
        order = np.argsort(ntag)
        conns.append(ids[order[np.searchsorted(ntag, enodes[0], sorter=order)]].reshape(-1, 4))
        owner += [name] * len(conns[-1])
        gmsh.model.remove()
    return np.concatenate(points), np.concatenate(conns), np.array(owner)


def _quadratic(points: np.ndarray, conn4: np.ndarray):
    """tet10 (VTK order) with straight edges from positively oriented tet4."""
    X = points[conn4]
    vol = np.einsum("ij,ij->i", np.cross(X[:, 1] - X[:, 0], X[:, 2] - X[:, 0]), X[:, 3] - X[:, 0])
    conn4 = conn4.copy()
    conn4[vol < 0] = conn4[vol < 0][:, [0, 2, 1, 3]]
    edges = np.sort(conn4[:, TET10_EDGES], axis=2).reshape(-1, 2)
    uniq, inv = np.unique(edges, axis=0, return_inverse=True)
    mid = 0.5 * (points[uniq[:, 0]] + points[uniq[:, 1]])
    conn = np.concatenate([conn4, len(points) + inv.reshape(-1, 6)], axis=1)
    return np.concatenate([points, mid]), conn


# --------------------------------------------------------------------------- the model
def ssm_segment_model_tet10(levels="L2-L4", mesh_size: float = 2.5, materials=None,
                            cortex: float = 0.5, endplate: float = 0.25, folder=None,
                            optimize: bool = True) -> Model:
    """A tet10 model of contiguous levels of the mean lumbar spine (L2-L5) with discs.

    ``mesh_size`` mm: gmsh's target edge length (the elements' longest edges are about 1.4
    times it on median; surface triangles no smaller than 0.3 of it);
    ``materials``, ``cortex``, ``endplate`` and ``folder`` as for
    :func:`fem.meshes.ssm.ssm_segment_model`. Regions, face and node sets and metadata
    (``levels``, ``anatomy``, ``ssm``) as in the voxel form; ``metadata["mesh"]`` holds the mesh
    size, the meshing times, the thin-layer modulus factors and the worst element quality. How
    it is built: module docstring.
    """
    names = ssm_levels(levels)
    h = check_limit("mesh_size", mesh_size)
    mats = _thin_layer_materials(materials, cortex, endplate)
    t0 = time.perf_counter()
    analysis = ssm_segment_model(names, voxel_size=ANALYSIS_VOXEL, cortex=cortex,
                                 endplate=endplate, folder=folder)
    frame, X, groups = _source_patches(names, folder, analysis)
    t_patch = time.perf_counter() - t0
    gmsh = load_gmsh()
    gmsh.initialize(interruptible=False)
    try:
        gmsh.option.setNumber("General.Terminal", 0)
        t = time.perf_counter()
        X, groups = _remesh(gmsh, groups, X, h)
        t_surface = time.perf_counter() - t
        X, volumes, loops = _disc_walls(X, groups, names, h)
        t = time.perf_counter()
        pts4, conn4, owner = _fill(gmsh, groups, X, volumes, h, optimize)
        t_volume = time.perf_counter() - t
    finally:
        gmsh.finalize()
    points, conn = _quadratic(pts4, conn4)
    m = Model.from_arrays(points, [("tet10", conn)], source="<lumbar shape model, gmsh>")
    vol = element_volumes(m)
    centroid = pts4[conn4].mean(axis=1)
    region_of = np.empty(len(conn4), dtype=object)
    factors = _bone_parts(region_of, names, owner, centroid, vol, pts4, conn4, groups, frame,
                          analysis, cortex, endplate)
    nucleus_area, nucleus_fraction = _disc_parts(region_of, names, owner, centroid, vol,
                                                 pts4[conn4], X, loops, analysis)
    _regions_and_materials(m, region_of, mats, factors)
    _endplate_sets(m, names, groups, pts4)
    _annotate_ssm(m, names, analysis, vol, cortex, endplate)
    ssm_meta = dict(analysis.metadata["ssm"])
    ssm_meta.pop("inside_voxels", None)
    ssm_meta.pop("separated_voxels", None)
    ssm_meta["nucleus_area_fraction"] = nucleus_area
    ssm_meta["nucleus_volume_fraction"] = nucleus_fraction
    m.metadata["ssm"] = ssm_meta
    q = tet_quality(points, conn)
    m.metadata["layer_factors"] = {k: v for k, v in factors.items() if v < 1.0}
    m.metadata["mesh"] = dict(mesh_size=h, cortex=cortex, endplate=endplate,
                              analysis_voxel=ANALYSIS_VOXEL, layer_factors=factors,
                              time_s=dict(analysis_and_patches=t_patch, surfaces=t_surface,
                                          volumes=t_volume),
                              min_quality=float(q.min()))
    logger.info("tet10 SSM %s: %d elements, %d nodes", "-".join(names), m.n_elements, m.n_nodes)
    return m


def _thin_layer_materials(materials, cortex: float, endplate: float) -> dict:
    """The materials, checked: layer thicknesses in (0, 5] mm, isotropic thin layers (their
    modulus is scaled by thickness / element size)."""
    if not (0.0 < cortex <= 5.0) or not (0.0 < endplate <= 5.0):
        raise ParameterError(f"cortex and endplate must lie in (0, 5] mm, got {cortex}, {endplate}")
    mats = resolve_materials(materials)
    for part in ("cortex", "endplate_superior", "endplate_inferior"):
        if isinstance(mats[part], dict):
            raise MeshError(f"{part}: thin layers must be isotropic (E, nu) here")
    return mats


def _source_patches(names, folder, analysis):
    """The source surfaces in the model frame ({level: surface}), their points stacked (X) and
    their triangles split into patches {(level, "surface" | "superior" | "inferior"): (k, 3)
    indices into X}, the endplate patches found from the voxel analysis model."""
    shift = np.asarray(analysis.metadata["ssm"]["translation"])
    src = load_surfaces(names, folder)
    frame = {n: moved(src[n], shift) for n in names}
    surfs = [(np.asarray(frame[n].points, float),
              frame[n].faces.reshape(-1, 4)[:, 1:].astype(np.int64)) for n in names]
    labels = _patches(surfs, names, analysis)
    offsets = np.cumsum([0] + [len(P) for P, _ in surfs])
    X = np.concatenate([P for P, _ in surfs])
    groups = {(n, part): surfs[i][1][labels[i] == code] + offsets[i]
              for i, n in enumerate(names)
              for code, part in ((0, "surface"), (1, "superior"), (2, "inferior"))}
    return frame, X, groups


def _disc_walls(X, groups, names, h: float):
    """The discs' side walls, a band of triangles between the facing endplate rims; returns
    the points with the walls' new ones, the closed shells of every volume
    ({level or disc: [patch keys]}) and each disc's two rim loops (upper, lower)."""
    volumes = {n: [(n, "surface"), (n, "superior"), (n, "inferior")] for n in names}
    loops = {}
    for j in range(len(names) - 1):
        d = f"{names[j]}-{names[j + 1]}"
        up = _loop(groups[(names[j], "inferior")], f"{names[j]} inferior endplate")
        lo = _loop(groups[(names[j + 1], "superior")], f"{names[j + 1]} superior endplate")
        new, tri = _band(X, up, lo, h)
        X = np.concatenate([X, new])
        groups[(d, "wall")] = tri
        volumes[d] = [(names[j], "inferior"), (d, "wall"), (names[j + 1], "superior")]
        loops[d] = (up, lo)
    return X, volumes, loops


def _bone_parts(region_of, names, owner, centroid, vol, pts4, conn4, groups, frame, analysis,
                cortex: float, endplate: float) -> dict:
    """Each level's elements into parts (``region_of`` filled in place): endplates (touching
    an endplate patch), cortex (touching the surface or within ``cortex`` mm of it), posterior
    elements (as the voxel analysis model labels them), trabecular bone. Returns the thin
    layers' modulus factors, physical thickness x area / element volume (at most 1)."""
    from scipy.spatial import cKDTree

    vl = analysis.metadata["voxel_labels"]
    vcent = np.asarray(vl["origin"]) + (vl["ijk"] + 0.5) * vl["spacing"]
    vlab = np.asarray(vl["labels"]) - 1
    factors = {}
    for i, n in enumerate(names):
        el = np.nonzero(owner == n)[0]
        own = vlab // 10 == i
        _, j = cKDTree(vcent[own]).query(centroid[el])
        post = vlab[own][j] % 10 == 4
        on = {}
        for part in ("surface", "superior", "inferior"):
            flag = np.zeros(len(pts4), bool)
            flag[np.unique(groups[(n, part)])] = True
            on[part] = flag[conn4[el]].any(axis=1)
        d_surf = np.abs(_distance(frame[n], centroid[el]))
        part = np.where(on["superior"], "endplate_superior",
                        np.where(on["inferior"], "endplate_inferior",
                                 np.where(on["surface"] | (d_surf <= cortex), "cortex",
                                          "trabecular")))
        part[post] = "posterior"
        region_of[el] = [f"{n}/{p}" for p in part]
        for layer, t_phys, key in (("cortex", cortex, "surface"),
                                   ("endplate_superior", endplate, "superior"),
                                   ("endplate_inferior", endplate, "inferior")):
            sel = el[part == layer]
            area = _layer_area(pts4, conn4[sel], groups[(n, key)])
            factors[f"{n}/{layer}"] = min(1.0, area * t_phys / vol[sel].sum()) if len(sel) else 1.0
    return factors


def _disc_parts(region_of, names, owner, centroid, vol, corners, X, loops, analysis):
    """Each disc's elements into nucleus and annulus (``region_of`` in place); returns the
    nucleus's share of each disc's footprint and of its volume. ``corners``: every element's
    four corner points (n, 4, 3); ``loops``: each disc's rim loops, node indices of ``X``."""
    nucleus_fraction, nucleus_area = {}, {}
    an = analysis.anatomy
    for j in range(len(names) - 1):
        d = f"{names[j]}-{names[j + 1]}"
        el = np.nonzero(owner == d)[0]
        _, axis = rim_axis(X[loops[d][0]], X[loops[d][1]],
                           an[names[j]].centre - an[names[j + 1]].centre)
        inner, nucleus_area[d] = _nucleus(corners[el], centroid[el], axis)
        region_of[el] = np.where(inner, f"{d}/nucleus", f"{d}/annulus")
        nucleus_fraction[d] = float(vol[el[inner]].sum() / vol[el].sum())
    return nucleus_area, nucleus_fraction


def _regions_and_materials(m: Model, region_of, mats: dict, factors: dict) -> None:
    """A region per part name, in order of first appearance, with its material (thin layers'
    modulus times their factor)."""
    for name in dict.fromkeys(region_of):
        m.add_region(name, np.nonzero(region_of == name)[0])
        value = mats[name.split("/")[1]]
        if name in factors:
            E, nu = value
            value = (E * factors[name], nu)
        apply_material(m, name, value)


def _annotate_ssm(m: Model, names, analysis, vol, cortex: float, endplate: float) -> None:
    """The level anatomy of the shape model (centres, frames, endplates, pedicle axes, body
    dimensions) as the model's :class:`~fem.anatomy.Anatomy`."""
    annotate(m, names, levels=_anatomy(m, names, analysis, vol, cortex, endplate))


def _distance(surface, points: np.ndarray) -> np.ndarray:
    """Signed distance (negative inside) of points to a closed surface."""
    import pyvista as pv

    return np.asarray(pv.PolyData(points).compute_implicit_distance(surface)["implicit_distance"])


def _layer_area(pts: np.ndarray, conn4: np.ndarray, tri: np.ndarray) -> float:
    """Area of the surface triangles ``tri`` that are faces of the elements ``conn4``."""
    faces = conn4[:, [[0, 1, 2], [0, 1, 3], [0, 2, 3], [1, 2, 3]]].reshape(-1, 3)
    hit = np.isin(_tri_keys(tri), _tri_keys(faces))
    t = pts[tri[hit]]
    return float(0.5 * np.linalg.norm(np.cross(t[:, 1] - t[:, 0], t[:, 2] - t[:, 0]),
                                      axis=1).sum())


def _plane_frame(axis) -> np.ndarray:
    """(3, 3) rows: two unit vectors across ``axis`` and ``axis`` (unit)."""
    e1 = np.cross(axis, [0.0, 1.0, 0.0])
    e1 /= np.linalg.norm(e1)
    return np.stack([e1, np.cross(axis, e1), axis])


def footprint(corners: np.ndarray, frame: np.ndarray, grid: float = _GRID):
    """The shadow of tetrahedra along ``frame[2]`` on a 2-D grid of ``grid`` mm: (mask, origin
    of the grid in the plane ``frame[:2]``). A cell is in it where its centre lies in the
    projection of an element, the convex hull of its four projected corners (the union of the
    four triangles of three corners), tested exactly."""
    P = corners[:, :4] @ frame[:2].T  # (m, 4, 2)
    lo = P.reshape(-1, 2).min(axis=0) - grid
    shape = tuple(np.ceil((P.reshape(-1, 2).max(axis=0) + grid - lo) / grid).astype(int))
    mask = np.zeros(shape, bool)
    i0 = np.floor((P.min(axis=1) - lo) / grid - 0.5).astype(int)  # each element's window
    n = np.ceil((P.max(axis=1) - lo) / grid - 0.5).astype(int) - i0 + 1
    w = np.arange(int(n.max()))
    tris = np.array([(0, 1, 2), (0, 1, 3), (0, 2, 3), (1, 2, 3)])
    for at in range(0, len(P), 256):  # chunks of elements, all their windows' cells at once
        k = slice(at, at + 256)
        ii = i0[k, 0, None, None] + w[None, :, None]
        jj = i0[k, 1, None, None] + w[None, None, :]
        ok = (w[None, :, None] < n[k, 0, None, None]) & (w[None, None, :] < n[k, 1, None, None])
        cx, cy = lo[0] + (ii + 0.5) * grid, lo[1] + (jj + 0.5) * grid
        inside = np.zeros(ok.shape, bool)
        for t in tris:
            ax, ay, bx, by, cx_, cy_ = (P[k, j, q][:, None, None] for j in t for q in (0, 1))
            det = (bx - ax) * (cy_ - ay) - (cx_ - ax) * (by - ay)
            good = np.abs(det) > 1e-12
            det = np.where(good, det, 1.0)
            rx, ry = cx - ax, cy - ay
            u = (rx * (cy_ - ay) - ry * (cx_ - ax)) / det
            v = (ry * (bx - ax) - rx * (by - ay)) / det
            inside |= good & (u >= 0) & (v >= 0) & (u + v <= 1)
        hit = inside & ok
        mask[np.broadcast_to(ii, hit.shape)[hit], np.broadcast_to(jj, hit.shape)[hit]] = True
    return mask, lo


def _nucleus(corners, centroids, axis):
    """Which disc elements are nucleus (their centroid projects, along the disc's ``axis``
    (:func:`fem.fibres.rim_axis` of its rims), into the :data:`NUCLEUS_AREA` of the disc's
    footprint farthest from its outline), and the footprint's share so chosen. The footprint is
    the disc's own shadow along its axis, as the voxel form takes the columns of its disc
    voxels."""
    from scipy.ndimage import distance_transform_edt

    frame = _plane_frame(axis)
    foot, origin = footprint(corners, frame)
    dist = distance_transform_edt(foot)
    cut = np.quantile(dist[foot], 1.0 - NUCLEUS_AREA)
    q = np.floor((centroids @ frame[:2].T - origin) / _GRID).astype(int)
    q = np.clip(q, 0, np.array(foot.shape) - 1)
    return dist[q[:, 0], q[:, 1]] >= cut, float((dist[foot] >= cut).mean())


def _endplate_sets(m: Model, names, groups, pts4) -> None:
    """``<level>/superior`` and ``/inferior`` face and node sets: the bone faces on the patches."""
    from ..topology import match_faces

    for n in names:
        bone = np.concatenate([m.regions[f"{n}/{p}"] for p in BONE_PARTS
                               if f"{n}/{p}" in m.regions])
        for key in ("superior", "inferior"):
            tri = groups[(n, key)]
            sub = Model.from_arrays(m.points, [("tet10", m.blocks[0].conn[bone])])
            e, f, found = match_faces(sub, tri)
            if not found.all():
                raise MeshError(f"{n} {key}: {int((~found).sum())} patch triangles are no face "
                                "of the level's elements")
            m.add_face_set(f"{n}/{key}", bone[e], f)
            table = np.array(m.blocks[0].etype.faces)
            m.add_node_set(f"{n}/{key}", np.unique(m.blocks[0].conn[bone[e][:, None], table[f]]))


def _anatomy(m: Model, names, analysis, vols: np.ndarray, cortex: float,
             endplate: float) -> list:
    """Per level, as the voxel form's: body centre, endplate centres, height, width, depth from
    this mesh (element volumes ``vols``); pedicle axes and the posterior-wall plane from the
    analysis model."""
    out = []
    for n in names:
        body = np.concatenate([m.regions[f"{n}/{p}"] for p in
                               ("cortex", "trabecular", "endplate_superior", "endplate_inferior")
                               if f"{n}/{p}" in m.regions])
        c = m.points[m.blocks[0].conn[body]].mean(axis=1)
        centre = (c * vols[body, None]).sum(axis=0) / vols[body].sum()
        width, depth = float(np.ptp(c[:, 0])), float(np.ptp(c[:, 1]))
        ends = endplate_centres(m, n, centre, width, depth)
        a = analysis.anatomy[n]
        out.append(measured_level(n, centre, ends, a.pedicle_axes, width, depth,
                                  a.posterior_wall_y, cortex, endplate))
    return out


def tet_quality(points: np.ndarray, conn: np.ndarray) -> np.ndarray:
    """Mean-ratio quality of each tetrahedron's corners, 1 for a regular one, 0 for a flat one:
    12 (3 V)^(2/3) / sum of squared edge lengths."""
    X = points[conn[:, :4]]
    v = np.einsum("ij,ij->i", np.cross(X[:, 1] - X[:, 0], X[:, 2] - X[:, 0]),
                  X[:, 3] - X[:, 0]) / 6.0
    e = X[:, [1, 2, 3, 2, 3, 3]] - X[:, [0, 0, 0, 1, 1, 2]]
    return 12.0 * np.cbrt(3.0 * np.abs(v)) ** 2 * np.sign(v) / (e ** 2).sum(axis=(1, 2))
