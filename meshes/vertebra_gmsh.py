"""The parametric vertebrae and segments of :mod:`fem.meshes.vertebra` as tet10 meshes via gmsh.

Same dimensions (:data:`~fem.meshes.vertebra.LEVELS`), regions, face and node sets and metadata as
the voxel form, built as OpenCASCADE solids, fragmented together once (so every interface between
regions, bone/disc included, is one face with shared nodes) and meshed with quadratic tetrahedra
of size ``mesh_size`` mm. gmsh is an optional dependency (``pip install vertebra-fem[mesh]``).

Every solid that touches another across a curved face comes out of that one fragment, never from
separate boolean operations on copies: OpenCASCADE matches coincident B-spline faces of copies
slowly and unreliably, and where it does not, the two surface meshes cross (gmsh: "PLC Error: a
segment and a facet intersect"). The bodies and discs are lofts between section wires of
identical control structure, so a disc shares its rim curves with both bodies.

Geometry differences from the implicit (voxel) form, all small:

* the concave endplates are caps of a flat ellipsoid (vertical semi-axis 8x the depth) with the
  same footprint and depth as the paraboloid, set normal to the wedged superior rim plane; the cap
  footprint is kept 1 mm inside the trabecular core's posterior wall (the paraboloid grazes it,
  which leaves sliver faces);
* a disc is ruled between the rims of its two bodies, so its wall runs from the lower
  endplate's outline to the upper one's; the voxel form keeps the intersection of the two
  sections, which leaves a strip of the larger endplate uncovered (up to 1.3 mm wide);
* thin layers: by default (``layers="mesh"``) the cortex and the bony endplates are
  ``max(thickness, min_layer)`` thick, ``min_layer = mesh_size / 2``, with the modulus of what
  such a layer holds (:func:`fem.meshes.vertebra.thickness_compensated`, as in the voxel form:
  the cortex a mixture of its physical thickness of cortex and trabecular bone, an endplate its
  modulus x physical / layer thickness; the factors in ``metadata["layer_factors"]``; until
  2026-12-07 the thickened layers kept the full modulus, which made an L1 at BMD 70 2.7 times
  as stiff as its voxel form; now 19 270 against 20 512 N/mm at 3 mm / 2 mm). One difference
  stays: here the endplate caps cover the top of the cortical wall (the plate's face set is
  all endplate), where the voxel form's wall reaches the plate itself, so the wall's load
  passes through the scaled endplate, whose through-thickness compliance is (layer / t)^2 too
  high. With a study's bone (endplates at the cortical modulus) that costs a few percent; with
  the builders' default endplate of 1 000 MPa the tet10 L1 at 3 mm is 43 % softer than voxels
  (9 634 against 16 969 N/mm). A 0.4 mm shell meshed with
  2 mm tetrahedra gives flat elements (aspect ratio > 5) unless the mesh is refined to the shell
  thickness, which multiplies the element count; the voxel form makes the same trade (layers at
  least one voxel). Inside each layer the mesh size is ``min(mesh_size, 2 * thickness)`` so
  elements stay near isotropic. ``layers="physical"`` keeps 0.4 and 0.25 mm and so refines to
  0.8 and 0.5 mm there, which costs 5 to 13 times the elements: L1 at ``mesh_size=2`` has
  167 000 elements (258 000 nodes, 27 s to mesh) instead of 30 000, L1-L2 without posterior
  elements at ``mesh_size=3`` 353 000 (59 s) instead of 27 000. Those meshes are valid (worst
  mean-ratio quality 0.16 and 0.02), but a segment that size is a job for the GPU backend.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace

import numpy as np

from ..errors import MeshError, ParameterError
from ..limits import check as check_limit
from ..model import Model
from .vertebra import (
    BONE_PARTS,
    NUCLEUS_FRACTION,
    POSTERIOR_FLAT,
    LevelDims,
    LevelStack,
    annotate,
    apply_material,
    layer_factors,
    level_names,
    pedicle_axes,
    resolve_materials,
    superior_rim_height,
    thickness_compensated,
)

logger = logging.getLogger(__name__)

#: gmsh's 10-node tetrahedron lists the mid-edge nodes of edges (3, 2) and (3, 1) last; VTK lists
#: (1, 3) then (2, 3)
GMSH_TO_VTK_TET10 = np.array([0, 1, 2, 3, 4, 5, 6, 7, 9, 8])
CAP_FLATNESS = 8.0
#: rational quadratic pieces of the anterior ellipse arc (each under 90 degrees)
ARC_PIECES = 4


def load_gmsh():
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


def _rim_plane(d: LevelDims, z0: float) -> tuple[float, float]:
    """(z at y = 0, dz/dy) of the superior rim plane (the wedge), unclipped beyond the body."""
    return z0 + float(superior_rim_height(d, 0.0)), _slope(d)


def _section_wire(occ, d: LevelDims, shrink: float, z: float, slope: float = 0.0):
    """The body's cross-section shrunk by ``shrink`` mm as a closed wire of two exact rational
    curves (the anterior ellipse arc and the posterior parabola) in the plane
    ``z + slope * y``. Every wire has the same control structure, so two of them loft into ruled walls
    that are exactly vertical between copies of one section (a prism with a wedged top) and
    join two different sections without a free strip (a disc)."""
    a, b = 0.5 * d.width - shrink, 0.5 * d.depth - shrink
    t = _corner_t()
    phi = np.arctan2(np.sqrt(1 - t), np.sqrt(t))
    span = (np.pi + 2 * phi) / ARC_PIECES
    w = np.cos(0.5 * span)
    th = np.pi - phi + 0.5 * span * np.arange(2 * ARC_PIECES + 1)
    r = np.where(np.arange(len(th)) % 2, 1.0 / w, 1.0)
    xy = np.stack([a * r * np.cos(th), b * r * np.sin(th)], axis=1)
    tags = [occ.addPoint(x, y, z + slope * y) for x, y in xy]
    arc = occ.addBSpline(tags, degree=2, weights=list(np.where(r > 1, w, 1.0)),
                         knots=list(range(ARC_PIECES + 1)),
                         multiplicities=[3] + [2] * (ARC_PIECES - 1) + [3])
    cy = 2 * b * POSTERIOR_FLAT - xy[-1, 1]
    back = occ.addBSpline([tags[-1], occ.addPoint(0.0, cy, z + slope * cy), tags[0]], degree=2)
    return occ.addWire([arc, back])


def _loft(occ, lower: int, upper: int):
    return [v for v in occ.addThruSections([lower, upper], makeSolid=True, makeRuled=True)
            if v[0] == 3]


def _slope(d: LevelDims) -> float:
    return -(d.height_anterior - d.height_posterior) / d.depth


def _half_space(occ, d: LevelDims, z_plane: float, tilt: float, below: bool):
    """A box below (or above) the plane through (0, 0, z_plane) tilted by ``tilt`` about x."""
    big = 4 * max(d.width, d.depth, d.height_anterior, d.height_posterior)
    box = occ.addBox(-big, -big, -big if below else 0.0, 2 * big, 2 * big, big)
    occ.rotate([(3, box)], 0, 0, 0, 1, 0, 0, tilt)
    occ.translate([(3, box)], 0, 0, z_plane)
    return [(3, box)]


def _lens(occ, d: LevelDims, depth: float, superior: bool, z_plane: float, tilt: float):
    """The concavity under (superior) or over the rim plane: a cap of a flat ellipsoid with the
    endplate's footprint and ``depth``, cut at the plane so that it reaches into no other
    part. The sphere is turned so that its poles and seam fall outside the cap: a pole inside
    it pins a mesh node where the surface parametrisation degenerates (flat elements), and
    where the seam crosses the rim decides whether some segments mesh at all."""
    a = max(0.5 * d.width - d.rim, 1.0)
    b = max(min(0.5 * d.depth - d.rim, (0.5 * d.depth - d.cortex) * POSTERIOR_FLAT - 1.0), 1.0)
    C = CAP_FLATNESS * depth
    s = 1.0 / np.sqrt(1.0 - (1.0 - depth / C) ** 2)
    ball = occ.addSphere(0, 0, 0, 1.0)
    occ.rotate([(3, ball)], 0, 0, 0, 0, 1, 0, -0.5 * np.pi if superior else 0.5 * np.pi)
    occ.dilate([(3, ball)], 0, 0, 0, a * s, b * s, C)
    occ.translate([(3, ball)], 0, 0, (C - depth) * (1 if superior else -1))
    occ.rotate([(3, ball)], 0, 0, 0, 1, 0, 0, tilt)
    occ.translate([(3, ball)], 0, 0, z_plane)
    lens, _ = occ.intersect([(3, ball)], _half_space(occ, d, z_plane, tilt, superior))
    return lens


def _endplate_tool(occ, d: LevelDims, z_plane: float, tilt: float, superior: bool,
                   depth: float):
    """Everything of the body within ``d.endplate`` (vertically) of its bony surface: a slab
    under the rim plane fused with the lens shifted by the thickness, as one solid so that it
    adds no face inside the endplate."""
    t = d.endplate
    W, D = d.width + 4.0, d.depth + 4.0
    slab = occ.addBox(-0.5 * W, -0.5 * D, -t if superior else 0.0, W, D, t)
    occ.rotate([(3, slab)], 0, 0, 0, 1, 0, 0, tilt)
    occ.translate([(3, slab)], 0, 0, z_plane)
    if depth <= 0:
        return [(3, slab)]
    shifted = _lens(occ, d, depth, superior, z_plane, tilt)
    occ.translate(shifted, 0, 0, -t if superior else t)
    fused, _ = occ.fuse([(3, slab)], shifted)
    return fused


def _posterior(occ, d: LevelDims, z0: float):
    """Pedicles (elliptic cylinders along :func:`pedicle_axes`), lamina, spinous and transverse
    processes, as :func:`fem.meshes.vertebra._posterior` defines them; the part inside the body
    goes to the body when the pieces are classified."""
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
    return fused


def _segment_solids(occ, dims: list, z0: list, posterior: bool) -> list:
    """[(key, dimtags)] of every solid of the segment, to be fragmented together once: per level
    i ("body", i) (the prism under the wedged rim plane), ("lens_sup"/"lens_inf", i) (the
    concavities, which belong to the discs), ("ep_sup"/"ep_inf", i), ("core", i) (the prism
    inside the cortex) and ("posterior", i); per disc j (below level j) ("disc", j) (lofted
    from the lower level's rim to the upper one's, so no endplate overhangs it) and
    ("nucleus", j) (an elliptic cylinder reaching 35 % of the height into each level, so that it
    splits the concavities; its faces inside the bone separate pieces of one region, and the
    cylinders of two discs never meet)."""
    out = []
    bottom, top = [], []
    for i, d in enumerate(dims):
        bottom.append(_section_wire(occ, d, 0.0, z0[i]))
        top.append(_section_wire(occ, d, 0.0, *_rim_plane(d, z0[i])))
        out.append((("body", i), _loft(occ, bottom[i], top[i])))
    for j in range(len(dims) - 1):
        out.append((("disc", j), _loft(occ, top[j + 1], bottom[j])))
    for i, d in enumerate(dims):
        tilt = np.arctan(_slope(d))
        z_rim = _rim_plane(d, z0[i])[0]
        inner = (_section_wire(occ, d, d.cortex, z0[i]),
                 _section_wire(occ, d, d.cortex, *_rim_plane(d, z0[i])))
        out.append((("core", i), _loft(occ, *inner)))
        for key, depth, sup, zp, tl in (("sup", d.concavity_superior, True, z_rim, tilt),
                                        ("inf", d.concavity_inferior, False, z0[i], 0.0)):
            if depth > 0:
                out.append(((f"lens_{key}", i), _lens(occ, d, depth, sup, zp, tl)))
            out.append(((f"ep_{key}", i), _endplate_tool(occ, d, zp, tl, sup, depth)))
        if posterior:
            post, _ = occ.cut(_posterior(occ, d, z0[i]), occ.copy(out[i][1]))
            out.append((("posterior", i), post))
    for j in range(len(dims) - 1):
        up, lo = dims[j], dims[j + 1]
        a = 0.5 * min(lo.width, up.width) * NUCLEUS_FRACTION
        b = 0.5 * min(lo.depth, up.depth) * NUCLEUS_FRACTION
        za, zb = z0[j + 1] + 0.65 * lo.height, z0[j] + 0.35 * up.height
        cyl = occ.addCylinder(0, 0, 0, 0, 0, 1.0, 1.0)
        occ.dilate([(3, cyl)], 0, 0, 0, a, b, zb - za)
        occ.translate([(3, cyl)], 0, -0.05 * lo.depth, za)
        out.append((("nucleus", j), [(3, cyl)]))
    return out


def _classify(keys: set, names: list[str]) -> str | None:
    """Region of a fragment piece from the set of solids containing it (None: outside)."""
    n = len(names)

    def disc(j):
        if not 0 <= j < n - 1:
            return None
        part = "nucleus" if ("nucleus", j) in keys else "annulus"
        return f"{names[j]}-{names[j + 1]}/{part}"

    body = [i for k, i in keys if k == "body"]
    if body:
        i = body[0]
        if ("lens_sup", i) in keys:
            return disc(i - 1)
        if ("lens_inf", i) in keys:
            return disc(i)
        part = ("endplate_superior" if ("ep_sup", i) in keys else
                "endplate_inferior" if ("ep_inf", i) in keys else
                "trabecular" if ("core", i) in keys else "cortex")
        return f"{names[i]}/{part}"
    for k, i in keys:
        if k == "disc":
            return disc(i)
    for k, i in keys:
        if k == "posterior":
            return f"{names[i]}/posterior"
    return None


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
                        posterior: bool = True, optimize: bool = True,
                        layers: str = "mesh") -> Model:
    """A tet10 model of one vertebra or a segment of contiguous levels with their discs.

    Arguments as :func:`fem.meshes.vertebra.segment_model` with ``mesh_size`` (mm, the largest
    element edge) for the voxel size; ``min_layer`` (mm, default ``mesh_size / 2``) is the least
    thickness of the cortex and endplates. ``layers="physical"`` keeps them at their physical
    thickness (0.4 and 0.25 mm) and refines the mesh inside each to twice its thickness, at 5 to
    13 times the element count (numbers in the module docstring). Regions, face and node sets, materials and
    ``metadata["levels"]`` and ``model.anatomy`` are those of the voxel form; ``metadata["mesh"]``
    holds the mesh size, the layer thicknesses used, the meshing time and the number of elements
    whose mid-edge nodes were straightened. ``optimize``: gmsh's tetrahedron optimisers, its own
    and Netgen's (Netgen's removes the slivers the first leaves at layer rims, and adds about
    a quarter more elements).
    """
    names = level_names(levels)
    h = check_limit("mesh_size", mesh_size)
    _least_layer(h, layers, min_layer)  # its checks, before gmsh starts
    mats = resolve_materials(materials)
    stack = LevelStack.of(names)
    gmsh = load_gmsh()
    t0 = time.perf_counter()
    asked, first = h, None
    for factor in RETRY_SIZES:
        h = asked * factor
        layer = _least_layer(h, layers, min_layer)
        dims = [replace(d, cortex=max(d.cortex, layer), endplate=max(d.endplate, layer))
                for d in stack.levels]
        gmsh.initialize(interruptible=False)
        try:
            gmsh.option.setNumber("General.Terminal", 0)
            gmsh.model.add("vertebra")
            owner = _segment_volumes(gmsh, dims, stack.z0, names, posterior)
            _thin_layer_sizes(gmsh, owner, dims[0], h)
            _generate(gmsh, names, h, optimize)
            t_mesh = time.perf_counter() - t0
            node_tags, coords, conns, region_of = _read_tet10(gmsh, owner)
            break
        except MeshError as exc:
            first = first or exc
            if factor == RETRY_SIZES[-1]:
                tried = ", ".join(f"{asked * f:.3g}" for f in RETRY_SIZES[1:])
                raise MeshError(f"{first}; also at {tried} mm: try another mesh_size") from None
        finally:
            gmsh.finalize()
    if h != asked:
        import warnings

        warnings.warn(f"{str(first).splitlines()[0]}; meshed at {h:.3g} mm instead, its "
                      "elements no larger than asked", stacklevel=2)
    # layers thickened to the mesh carry the modulus of what they hold (the voxel form's rule,
    # fem.meshes.vertebra.thickness_compensated): t of cortex and the rest trabecular bone, an
    # endplate's modulus x t / thickness; at full modulus a 2 mm shell standing in for a 0.4 mm
    # cortex made the segment a third stiffer and its pushover strength twice the voxel form's
    m, n_straight = _tet10_model(node_tags, coords, conns, region_of,
                                 thickness_compensated(mats, stack.levels[0], layer))
    m.metadata["layer_factors"] = layer_factors(names, mats, stack.levels[0], layer)
    _endplate_faces(m, names)
    annotate(m, names, stack)
    m.metadata["mesh"] = dict(mesh_size=h, asked_mesh_size=asked, layers=layers, min_layer=layer, cortex=dims[0].cortex,
                              endplate=dims[0].endplate, time_s=t_mesh,
                              straightened=n_straight)
    logger.info("tet10 %s: %d elements, %d nodes, %.1f s", "-".join(names), m.n_elements,
                m.n_nodes, t_mesh)
    return m


#: the mesh sizes tried, as factors of the one asked for: gmsh's boundary recovery fails at some
#: sizes on some segments ("PLC Error: a segment and a facet intersect"; L1-L3 at 8 and 9 mm,
#: T12-L2 at 8 mm) and succeeds a little below; a smaller size keeps mesh_size's promise (the
#: largest element edge), so it is tried, with a warning, before the run fails
RETRY_SIZES = (1.0, 0.97, 0.94, 0.9)


def _least_layer(h: float, layers: str, min_layer) -> float:
    """The least thickness (mm) of the cortex and endplates: 0 for physical layers, else
    ``min_layer`` (default half the mesh size)."""
    if layers not in ("mesh", "physical"):
        raise ParameterError(f"layers must be 'mesh' or 'physical', got {layers!r}")
    if layers == "physical" and min_layer is not None:
        raise ParameterError("min_layer sets the layers' least thickness for layers='mesh' only")
    layer = 0.0 if layers == "physical" else 0.5 * h if min_layer is None else float(min_layer)
    if layers == "mesh" and layer <= 0:
        raise ParameterError(f"min_layer must be positive, got {min_layer}")
    return layer


def _segment_volumes(gmsh, dims, z0, names, posterior) -> dict:
    """Build the segment's solids, fragment them into conforming volumes and remove what no
    part owns; returns {volume tag: region name}."""
    occ = gmsh.model.occ
    solids = _segment_solids(occ, dims, z0, posterior)
    keys = [k for k, vols in solids for _ in vols]
    _, children = occ.fragment([v for _, vols in solids for v in vols], [])
    inside: dict[int, set] = {}
    for k, ch in zip(keys, children):
        for dim, tag in ch:
            if dim == 3:
                inside.setdefault(tag, set()).add(k)
    owner = {tag: _classify(ks, names) for tag, ks in sorted(inside.items())}
    occ.remove([(3, t) for t, name in owner.items() if name is None], recursive=True)
    owner = {t: name for t, name in owner.items() if name is not None}
    occ.synchronize()
    _remove_stray_entities(gmsh, owner)
    return owner


def _remove_stray_entities(gmsh, owner: dict) -> None:
    """Remove the entities of every dimension that bound no kept volume."""
    keep = set(gmsh.model.getBoundary([(3, t) for t in owner], combined=False, recursive=True))
    keep |= {(3, t) for t in owner}
    for dim in (3, 2, 1, 0):
        keep |= {(dim - 1, abs(t)) for e in list(keep) if e[0] == dim
                 for _, t in gmsh.model.getBoundary([e], oriented=False)} if dim else set()
    stray = [e for dim in (3, 2, 1, 0) for e in gmsh.model.getEntities(dim) if e not in keep]
    if stray:
        gmsh.model.removeEntities(stray)


def _thin_layer_sizes(gmsh, owner: dict, d, h: float) -> None:
    """Elements of twice the layer's thickness inside the cortex and the endplates, where that
    is finer than ``h`` (a Min of Constant fields as the background mesh size)."""
    fld = gmsh.model.mesh.field
    sizes = []
    for parts, t in ((("cortex",), d.cortex),
                     (("endplate_superior", "endplate_inferior"), d.endplate)):
        thin = [tag for tag, name in owner.items() if name.split("/")[1] in parts]
        if thin and 2.0 * t < h:
            f = fld.add("Constant")
            fld.setNumbers(f, "VolumesList", thin)
            fld.setNumber(f, "IncludeBoundary", 1)
            fld.setNumber(f, "VIn", 2.0 * t)
            fld.setNumber(f, "VOut", h)
            sizes.append(f)
    if sizes:
        f_min = fld.add("Min")
        fld.setNumbers(f_min, "FieldsList", sizes)
        fld.setAsBackgroundMesh(f_min)


def _generate(gmsh, names, h: float, optimize: bool) -> None:
    """Second-order tetrahedra of at most ``h`` mm, gmsh's and Netgen's optimisers if asked."""
    gmsh.option.setNumber("Mesh.MeshSizeMax", h)
    gmsh.option.setNumber("Mesh.MeshSizeExtendFromBoundary", 0)
    gmsh.option.setNumber("Mesh.MeshSizeFromPoints", 0)
    gmsh.option.setNumber("Mesh.MeshSizeFromCurvature", 0)
    gmsh.option.setNumber("Mesh.ElementOrder", 2)
    gmsh.option.setNumber("Mesh.Optimize", 1 if optimize else 0)
    gmsh.option.setNumber("Mesh.OptimizeNetgen", 1 if optimize else 0)
    try:
        gmsh.model.mesh.generate(3)
    except Exception as exc:
        raise MeshError(f"gmsh could not mesh {'-'.join(names)} at mesh_size={h}: "
                        f"{exc}") from exc


def _read_tet10(gmsh, owner: dict):
    """(node tags, coordinates, tet10 connectivities in gmsh order, region name per element)."""
    node_tags, coords, _ = gmsh.model.mesh.getNodes()
    conns, region_of = [], []
    for tag, name in sorted(owner.items()):
        types, _, enodes = gmsh.model.mesh.getElements(3, tag)
        for et, en in zip(types, enodes):
            if et != 11:
                raise MeshError(f"gmsh produced element type {et} instead of tet10")
            conns.append(en.reshape(-1, 10).astype(np.int64))
            region_of += [name] * (len(en) // 10)
    return node_tags, coords.reshape(-1, 3), conns, region_of


def _tet10_model(node_tags, coords, conns, region_of, mats) -> tuple[Model, int]:
    """The Model of the used nodes (VTK tet10 order, mid-edge nodes straightened where gmsh
    curved them) with its regions and materials; and the number of elements straightened."""
    gconn = np.concatenate(conns)[:, GMSH_TO_VTK_TET10]
    used = np.unique(gconn)
    order = np.argsort(node_tags)
    points = coords[order[np.searchsorted(node_tags, used, sorter=order)]]
    conn = np.searchsorted(used, gconn)
    n_straight = _straighten(points, conn)
    m = Model.from_arrays(points, [("tet10", conn)], source="<parametric vertebra, gmsh>")
    region_of = np.array(region_of)
    for name in sorted(set(region_of)):
        sel = np.nonzero(region_of == name)[0]
        if len(sel):
            m.add_region(name, sel)
            apply_material(m, name, mats[name.split("/")[1]])
    return m, n_straight


def _endplate_faces(m: Model, names) -> None:
    """Face and node sets ``"<L>/superior"`` and ``"<L>/inferior"``: the endplates' faces
    towards the disc (or the free end)."""
    table = np.array(m.blocks[0].etype.faces)
    for n in names:
        bone = np.concatenate([m.regions[f"{n}/{p}"] for p in BONE_PARTS
                               if f"{n}/{p}" in m.regions])
        for key, part, up in (("superior", "endplate_superior", True),
                              ("inferior", "endplate_inferior", False)):
            e, f = _surface_faces(m, m.regions[f"{n}/{part}"], bone, up)
            m.add_face_set(f"{n}/{key}", e, f)
            m.add_node_set(f"{n}/{key}", np.unique(m.blocks[0].conn[e[:, None], table[f]]))


def vertebra_model_tet10(level: str = "L1", **kwargs) -> Model:
    """One vertebra as tet10 (see :func:`segment_model_tet10`)."""
    return segment_model_tet10([level.upper()], **kwargs)
