"""The parametric vertebrae and segments of :mod:`fem.meshes.vertebra` as tet10 meshes via gmsh.

Same dimensions (:data:`~fem.meshes.vertebra.LEVELS`), regions, face and node sets and metadata as
the voxel form, built as OpenCASCADE solids, fragmented so that every interface between regions
has shared nodes, and meshed with quadratic tetrahedra of size ``mesh_size`` mm. gmsh is an
optional dependency (``pip install vertebra-fem[mesh]``).

Geometry differences from the implicit (voxel) form, all small:

* the concave endplates are caps of a flat ellipsoid (vertical semi-axis 8x the depth) with the
  same footprint and depth as the paraboloid, set normal to the wedged superior rim plane; the cap
  footprint is kept 1 mm inside the trabecular core's posterior wall (the paraboloid grazes it,
  which leaves sliver faces);
* thin layers: the cortex and the bony endplates are ``max(thickness, min_layer)`` thick,
  ``min_layer = mesh_size / 2`` by default. A 0.4 mm shell meshed with 2 mm tetrahedra gives flat
  elements (aspect ratio > 5) unless the mesh is refined to the shell thickness, which multiplies
  the element count; the voxel form makes the same trade (layers at least one voxel). Inside the
  layers the mesh size is ``min(mesh_size, 2 * layer)`` so elements stay near isotropic.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace

import numpy as np

from ..errors import MeshError
from ..model import Model
from .vertebra import (
    BONE_PARTS,
    NUCLEUS_FRACTION,
    POSTERIOR_FLAT,
    LevelDims,
    _Stack,
    _top,
    annotate,
    apply_material,
    level_names,
    pedicle_axes,
    resolve_materials,
)

logger = logging.getLogger(__name__)

#: gmsh's 10-node tetrahedron lists the mid-edge nodes of edges (3, 2) and (3, 1) last; VTK lists
#: (1, 3) then (2, 3)
GMSH_TO_VTK_TET10 = np.array([0, 1, 2, 3, 4, 5, 6, 7, 9, 8])
CAP_FLATNESS = 8.0


def _gmsh():
    try:
        import gmsh
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise MeshError("the tet10 vertebra needs gmsh: pip install 'vertebra-fem[mesh]'") from exc
    return gmsh


def _corner_t() -> float:
    """(x/a)^2 where the posterior parabola meets the ellipse."""
    p = POSTERIOR_FLAT
    qa, qb, qc = (1 - p) ** 2, 2 * p * (1 - p) + 1, p * p - 1
    return (-qb + np.sqrt(qb * qb - 4 * qa * qc)) / (2 * qa)


def _prism(occ, d: LevelDims, shrink: float, z0: float, z1: float):
    """The body's cross-section shrunk by ``shrink`` mm, extruded from z0 to z1: the anterior
    ellipse arc and the posterior parabola (a quadratic Bezier curve), both exact."""
    a, b = 0.5 * d.width - shrink, 0.5 * d.depth - shrink
    t = _corner_t()
    xc, yc = a * np.sqrt(t), b * np.sqrt(1 - t)
    left, right = occ.addPoint(-xc, yc, z0), occ.addPoint(xc, yc, z0)
    centre, major = occ.addPoint(0, 0, z0), occ.addPoint(a, 0, z0)
    bottom = occ.addPoint(a * np.cos(-2.0), b * np.sin(-2.0), z0)
    arcs = [occ.addEllipseArc(left, centre, major, bottom),
            occ.addEllipseArc(bottom, centre, major, right)]
    ctrl = occ.addPoint(0, 2 * b * POSTERIOR_FLAT - yc, z0)
    back = occ.addBezier([right, ctrl, left])
    surf = occ.addPlaneSurface([occ.addCurveLoop([*arcs, back])])
    occ.remove([(0, centre), (0, major), (0, ctrl)])
    out = occ.extrude([(2, surf)], 0, 0, z1 - z0)
    return [v for v in out if v[0] == 3]


def _slope(d: LevelDims) -> float:
    return -(d.height_anterior - d.height_posterior) / d.depth


def _above_plane(occ, d: LevelDims, z0: float, shift: float, big: float):
    """Half-space (a large box) above the superior rim plane lowered by ``shift``."""
    box = occ.addBox(-big, -big, 0.0, 2 * big, 2 * big, big)
    occ.rotate([(3, box)], 0, 0, 0, 1, 0, 0, np.arctan(_slope(d)))
    occ.translate([(3, box)], 0, 0, z0 + float(_top(d, 0.0)) - shift)
    return [(3, box)]


def _cap(occ, d: LevelDims, depth: float, superior: bool, z_plane: float, tilt: float):
    """Flat ellipsoid whose cap below (superior) or above the plane has the endplate's footprint
    and ``depth``."""
    a = max(0.5 * d.width - d.rim, 1.0)
    b = max(min(0.5 * d.depth - d.rim, (0.5 * d.depth - d.cortex) * POSTERIOR_FLAT - 1.0), 1.0)
    C = CAP_FLATNESS * depth
    s = 1.0 / np.sqrt(1.0 - (1.0 - depth / C) ** 2)
    ball = occ.addSphere(0, 0, 0, 1.0)
    occ.dilate([(3, ball)], 0, 0, 0, a * s, b * s, C)
    occ.translate([(3, ball)], 0, 0, (C - depth) * (1 if superior else -1))
    occ.rotate([(3, ball)], 0, 0, 0, 1, 0, 0, tilt)
    occ.translate([(3, ball)], 0, 0, z_plane)
    return [(3, ball)]


def _split(occ, obj, tools):
    """Fragment the volumes ``obj`` by ``tools`` (which may overlap and reach far outside) and
    return [(tag, set of indices of the tools containing the piece)] for the pieces of ``obj``;
    the rest is removed. Fragmenting instead of chaining boolean cuts avoids operations between
    solids with coincident faces, which OpenCASCADE handles badly."""
    _, children = occ.fragment(obj + tools, [])
    inside = {}
    for k, ch in enumerate(children[len(obj):]):
        for _, tag in ch:
            inside.setdefault(tag, set()).add(k)
    mine = {tag for ch in children[:len(obj)] for _, tag in ch}
    rest = {tag for ch in children[len(obj):] for _, tag in ch} - mine
    if rest:
        occ.remove([(3, t) for t in rest], recursive=True)
    return [(t, inside.get(t, set())) for t in sorted(mine)]


def _level_parts(occ, d: LevelDims, z0: float, posterior: bool) -> dict:
    """OCC volumes of one level's parts: {part: [(3, tag), ...]}."""
    H = max(d.height_anterior, d.height_posterior)
    big = 4 * max(d.width, d.depth, H)
    tilt = np.arctan(_slope(d))
    ztop = z0 + float(_top(d, 0.0))
    t = d.endplate
    outer = _outer_body(occ, d, z0)
    post = _posterior(occ, d, z0) if posterior else []
    sup = _above_plane(occ, d, z0, t, big)
    if d.concavity_superior > 0:
        sup += _cap(occ, d, d.concavity_superior, True, ztop - t, tilt)
    inf = [(3, occ.addBox(-big, -big, z0 + t - big, 2 * big, 2 * big, big))]
    if d.concavity_inferior > 0:
        inf += _cap(occ, d, d.concavity_inferior, False, z0 + t, 0.0)
    inner = _prism(occ, d, d.cortex, z0 - 1.0, z0 + H + 1.0)
    tools = sup + inf + inner
    i_sup, i_inf = set(range(len(sup))), set(range(len(sup), len(sup) + len(inf)))
    parts = {p: [] for p in ("cortex", "trabecular", "endplate_superior", "endplate_inferior")}
    for tag, ins in _split(occ, outer, tools):
        part = ("endplate_superior" if ins & i_sup else "endplate_inferior" if ins & i_inf
                else "trabecular" if len(tools) - 1 in ins else "cortex")
        parts[part].append((3, tag))
    if posterior:
        parts["posterior"] = post
    return parts


def _posterior(occ, d: LevelDims, z0: float):
    """Pedicles (elliptic cylinders along :func:`pedicle_axes`), lamina, spinous and transverse
    processes, as :func:`fem.meshes.vertebra._posterior` defines them, outside the body's
    prism."""
    w, h = d.pedicle
    ybody = 0.5 * d.depth * POSTERIOR_FLAT
    zc = z0 + 0.55 * d.height
    length = 0.3 * d.depth + 0.5 * h
    pieces = []
    for entry, direction in pedicle_axes(d).values():
        start = entry - 0.5 * w * direction
        cyl = occ.addCylinder(0, 0, 0, 0, 1.0, 0, 1.0)
        occ.dilate([(3, cyl)], 0, 0, 0, 0.5 * w, length + w, 0.5 * h)
        occ.rotate([(3, cyl)], 0, 0, 0, 0, 0, 1, np.arctan2(-direction[0], direction[1]))
        occ.translate([(3, cyl)], start[0], start[1], start[2] + z0)
        pieces.append((3, cyl))
    y_lam = ybody + length
    half_lam = 0.5 * d.width * 0.55 + 0.5 * w
    t_lam = 0.5 * w
    boxes = [(-half_lam, y_lam - t_lam, zc - 0.5 * h, 2 * half_lam, 2 * t_lam, h),
             (-0.35 * w, y_lam, zc - 0.1 * h - 0.45 * h, 0.7 * w, 0.9 * d.depth, 0.9 * h)]
    x0, x1 = half_lam - 0.5 * w, half_lam + 0.45 * d.width
    yt = y_lam - 0.5 * w
    for s in (1.0, -1.0):
        xa = x0 if s > 0 else -x1
        boxes.append((xa, yt - 0.35 * w, zc - 0.3 * h, x1 - x0, 0.7 * w, 0.6 * h))
    pieces += [(3, occ.addBox(*bx)) for bx in boxes]
    fused, _ = occ.fuse(pieces[:1], pieces[1:])
    H = max(d.height_anterior, d.height_posterior)
    prism = _prism(occ, d, 0.0, z0 - H, z0 + 2 * H)
    post, _ = occ.cut(fused, prism)
    return post


def _disc_parts(occ, up: LevelDims, lo: LevelDims, z_up: float, z_lo: float) -> dict:
    """Annulus and nucleus between the inferior surface of ``up`` and the superior one of
    ``lo``, inside the smaller section (the voxel form takes the intersection of the two, which
    differs by a sliver at the posterior wall and would leave sliver faces)."""
    z_a = z_lo + min(lo.height_anterior, lo.height_posterior) - lo.concavity_superior - 1.0
    z_b = z_up + up.concavity_inferior + 1.0
    small = up if up.width * up.depth <= lo.width * lo.depth else lo
    slab = _prism(occ, small, 0.0, z_a, z_b)
    bodies = _outer_body(occ, up, z_up) + _outer_body(occ, lo, z_lo)
    a = 0.5 * min(lo.width, up.width) * NUCLEUS_FRACTION
    b = 0.5 * min(lo.depth, up.depth) * NUCLEUS_FRACTION
    cyl = occ.addCylinder(0, 0, 0, 0, 0, 1.0, 1.0)
    occ.dilate([(3, cyl)], 0, 0, 0, a, b, z_b - z_a + 2.0)
    occ.translate([(3, cyl)], 0, -0.05 * lo.depth, z_a - 1.0)
    parts = {"annulus": [], "nucleus": []}
    for tag, ins in _split(occ, slab, bodies + [(3, cyl)]):
        if ins & {0, 1}:
            occ.remove([(3, tag)], recursive=True)
        else:
            parts["nucleus" if 2 in ins else "annulus"].append((3, tag))
    return parts


def _outer_body(occ, d: LevelDims, z0: float):
    H = max(d.height_anterior, d.height_posterior)
    big = 4 * max(d.width, d.depth, H)
    prism = _prism(occ, d, 0.0, z0, z0 + H + 1.0)
    tools = _above_plane(occ, d, z0, 0.0, big)
    if d.concavity_superior > 0:
        tools += _cap(occ, d, d.concavity_superior, True, z0 + float(_top(d, 0.0)),
                      np.arctan(_slope(d)))
    if d.concavity_inferior > 0:
        tools += _cap(occ, d, d.concavity_inferior, False, z0, 0.0)
    res, _ = occ.cut(prism, tools)
    return res


def _surface_faces(m: Model, region: np.ndarray, bone: np.ndarray, up: bool):
    """(elements, faces) of ``region`` not shared with another element of ``bone`` whose
    outward normal points up (or down): the outer surface of a bony endplate."""
    b = m.blocks[0]
    table = np.array([f[:3] for f in b.etype.faces])
    conn = b.conn[bone]
    keys = np.sort(conn[:, table], axis=-1).reshape(-1, 3)
    _, inv, counts = np.unique(keys, axis=0, return_inverse=True, return_counts=True)
    once = (counts[inv.ravel()] == 1).reshape(len(bone), 4)
    in_region = np.isin(bone, region)
    e_loc, f = np.nonzero(once & in_region[:, None])
    tri = m.points[conn[e_loc[:, None], table[f]]]
    n = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    nz = n[:, 2] / np.linalg.norm(n, axis=1)
    keep = nz > 0.3 if up else nz < -0.3
    return bone[e_loc[keep]], f[keep]


def _straighten(points: np.ndarray, conn: np.ndarray, ratio: float = 0.2, passes: int = 5):
    """Move the mid-edge nodes of badly curved tet10 elements to their edge midpoints.

    gmsh places mid-edge nodes on the curved geometry, which inverts some elements in thin curved
    layers; its high-order optimiser repairs them but takes a minute for one vertebra. An element
    whose Jacobian at a Gauss point or a node falls below ``ratio`` times that of its
    straight-sided twin gets straight edges (valid whenever the corners are); neighbours sharing
    a moved node are rechecked in the next pass. Returns the number of elements straightened.
    """
    from ..elements import ELEMENT_TYPES
    from ..kernels.elastic import det3, jacobians

    et = ELEMENT_TYPES["tet10"]
    dN = np.concatenate([et.dN, et.dN_nodes])
    edges = np.array([(0, 1), (1, 2), (2, 0), (0, 3), (1, 3), (2, 3)])
    done = np.zeros(len(conn), dtype=bool)
    for _ in range(passes):
        X = points[conn]
        lin = det3(jacobians(X[:, :4], ELEMENT_TYPES["tet4"].dN))[:, 0]
        bad = det3(jacobians(X, dN)).min(axis=1) < ratio * lin
        if not bad.any():
            break
        done |= bad
        c = conn[bad]
        points[c[:, 4:]] = 0.5 * (points[c[:, edges[:, 0]]] + points[c[:, edges[:, 1]]])
    return int(done.sum())


def segment_model_tet10(levels: str | list[str] = "L1", *, mesh_size: float = 2.0,
                        min_layer: float | None = None, materials: dict | None = None,
                        posterior: bool = True, optimize: bool = True) -> Model:
    """A tet10 model of one vertebra or a segment of contiguous levels with their discs.

    Arguments as :func:`fem.meshes.vertebra.segment_model` with ``mesh_size`` (mm, the largest
    element edge) for the voxel size; ``min_layer`` (mm, default ``mesh_size / 2``) is the least
    thickness of the cortex and endplates. Regions, face and node sets, materials and
    ``metadata["levels"]``/``["anatomy"]`` are those of the voxel form; ``metadata["mesh"]``
    holds the mesh size, the layer thicknesses used, the meshing time and the number of elements
    whose mid-edge nodes were straightened. ``optimize``: gmsh's tetrahedron optimiser.
    Known limitation: segments with discs mesh at 4 mm but gmsh fails on them at finer sizes
    (MeshError).
    """
    names = level_names(levels)
    h = float(mesh_size)
    if not (0.2 <= h <= 10.0):
        raise MeshError(f"mesh_size must lie in 0.2..10 mm, got {mesh_size}")
    layer = 0.5 * h if min_layer is None else float(min_layer)
    if layer <= 0:
        raise MeshError(f"min_layer must be positive, got {min_layer}")
    mats = resolve_materials(materials)
    stack = _Stack.of(names)
    dims = [replace(d, cortex=max(d.cortex, layer), endplate=max(d.endplate, layer))
            for d in stack.levels]

    gmsh = _gmsh()
    t0 = time.perf_counter()
    gmsh.initialize(interruptible=False)
    try:
        gmsh.option.setNumber("General.Terminal", 0)
        gmsh.model.add("vertebra")
        occ = gmsh.model.occ
        inputs: list[tuple[str, list]] = []
        for i, n in enumerate(names):
            for part, vols in _level_parts(occ, dims[i], stack.z0[i], posterior).items():
                inputs.append((f"{n}/{part}", vols))
        for i in range(len(names) - 1):
            up, lo = dims[i], dims[i + 1]
            disc = f"{names[i]}-{names[i + 1]}"
            for part, vols in _disc_parts(occ, up, lo, stack.z0[i], stack.z0[i + 1]).items():
                inputs.append((f"{disc}/{part}", vols))
        flat = [v for _, vols in inputs for v in vols]
        _, children = occ.fragment(flat, [])
        occ.synchronize()
        owner: dict[int, str] = {}
        k = 0
        for name, vols in inputs:
            for _ in vols:
                for dim, tag in children[k]:
                    if dim == 3:
                        owner.setdefault(tag, name)
                k += 1
        keep = set(gmsh.model.getBoundary([(3, t) for t in owner], combined=False,
                                          recursive=True))
        keep |= {(3, t) for t in owner}
        for dim in (3, 2, 1, 0):
            keep |= {(dim - 1, abs(t)) for e in list(keep) if e[0] == dim
                     for _, t in gmsh.model.getBoundary([e], oriented=False)} if dim else set()
        stray = [e for dim in (3, 2, 1, 0) for e in gmsh.model.getEntities(dim) if e not in keep]
        if stray:
            gmsh.model.removeEntities(stray)
        thin = [t for t, name in owner.items()
                if name.split("/")[1] in ("cortex", "endplate_superior", "endplate_inferior")]
        fld = gmsh.model.mesh.field
        f_thin = fld.add("Constant")
        fld.setNumbers(f_thin, "VolumesList", thin)
        fld.setNumber(f_thin, "IncludeBoundary", 1)
        fld.setNumber(f_thin, "VIn", min(h, 2.0 * layer))
        fld.setNumber(f_thin, "VOut", h)
        fld.setAsBackgroundMesh(f_thin)
        gmsh.option.setNumber("Mesh.MeshSizeMax", h)
        gmsh.option.setNumber("Mesh.MeshSizeExtendFromBoundary", 0)
        gmsh.option.setNumber("Mesh.MeshSizeFromPoints", 0)
        gmsh.option.setNumber("Mesh.MeshSizeFromCurvature", 0)
        gmsh.option.setNumber("Mesh.ElementOrder", 2)
        gmsh.option.setNumber("Mesh.Optimize", 1 if optimize else 0)
        try:
            gmsh.model.mesh.generate(3)
        except Exception as exc:
            raise MeshError(f"gmsh could not mesh {'-'.join(names)} at mesh_size={h}: {exc}. "
                            "Segments with discs fail at present (the disc faces do not glue "
                            "to the split endplate faces); single levels mesh.") from exc
        t_mesh = time.perf_counter() - t0

        node_tags, coords, _ = gmsh.model.mesh.getNodes()
        coords = coords.reshape(-1, 3)
        conns, region_of = [], []
        for tag, name in sorted(owner.items()):
            types, _, enodes = gmsh.model.mesh.getElements(3, tag)
            for et, en in zip(types, enodes):
                if et != 11:
                    raise MeshError(f"gmsh produced element type {et} instead of tet10")
                conns.append(en.reshape(-1, 10).astype(np.int64))
                region_of += [name] * (len(en) // 10)
    finally:
        gmsh.finalize()

    gconn = np.concatenate(conns)[:, GMSH_TO_VTK_TET10]
    used = np.unique(gconn)
    order = np.argsort(node_tags)
    points = coords[order[np.searchsorted(node_tags, used, sorter=order)]]
    conn = np.searchsorted(used, gconn)
    n_straight = _straighten(points, conn)
    m = Model.from_arrays(points, [("tet10", conn)], source="<parametric vertebra, gmsh>")
    region_of = np.array(region_of)
    for name in dict.fromkeys(name for name, _ in inputs):
        sel = np.nonzero(region_of == name)[0]
        if len(sel):
            m.add_region(name, sel)
            apply_material(m, name, mats[name.split("/")[1]])

    for n in names:
        bone = np.concatenate([m.regions[f"{n}/{p}"] for p in BONE_PARTS
                               if f"{n}/{p}" in m.regions])
        for key, part, up in (("superior", "endplate_superior", True),
                              ("inferior", "endplate_inferior", False)):
            e, f = _surface_faces(m, m.regions[f"{n}/{part}"], bone, up)
            m.add_face_set(f"{n}/{key}", e, f)
            table = np.array(m.blocks[0].etype.faces)
            m.add_node_set(f"{n}/{key}", np.unique(m.blocks[0].conn[e[:, None], table[f]]))
    annotate(m, names, stack)
    m.metadata["mesh"] = dict(mesh_size=h, min_layer=layer, cortex=dims[0].cortex,
                              endplate=dims[0].endplate, time_s=t_mesh,
                              straightened=n_straight)
    logger.info("tet10 %s: %d elements, %d nodes, %.1f s", "-".join(names), m.n_elements,
                m.n_nodes, t_mesh)
    return m


def vertebra_model_tet10(level: str = "L1", **kwargs) -> Model:
    """One vertebra as tet10 (see :func:`segment_model_tet10`)."""
    return segment_model_tet10([level.upper()], **kwargs)
