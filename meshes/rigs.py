"""In-silico test rigs: a vertebral body potted in PMMA end-caps and compressed between platens,
as cadaver studies test it.

The set-up of Day, Jones & Wilcox 2020 (JOR Spine 3:e1077; the thesis chapter in the public
repository mngad/pythonPlotting, ``Chapters/Chapter_HT.tex``) and of most whole-body tests:

* the posterior elements are cut at the pedicles (the body alone is tested);
* each endplate is potted in a PMMA end-cap: the body is lowered into a container of liquid
  PMMA until the whole endplate touches cement and the body's edges are covered, leaving
  ``cap_depth`` (5 mm in Day's protocol) of cement beyond the body's lowest (highest) point; the
  caps' outer faces are flat and parallel; PMMA E 2 450 MPa, nu 0.3 (the value Day's FE replica
  used);
* bone and cap are tied (shared nodes: the voxel mesh's natural interface) or in frictionless
  contact. Frictionless contact is nonlinear (it opens under tension, slides without
  resistance); its LINEAR APPROXIMATION here is a slip layer: the cap voxels that share a face
  with bone become orthotropic, with the cap's modulus along each axis on which they face bone
  and ``SLIP`` x that modulus for every other modulus and every shear modulus (Poisson's ratios
  0). Such a layer carries the normal stress across the interface and almost no shear, nor any
  in-plane stress that would hold the endplate's Poisson expansion; unlike real contact it also
  carries tension, which a compression test does not put on the interface (checked by the
  tests: the layer's normal stress stays compressive but for a small fraction of it). Cap
  voxels that touch bone only along an edge or at a corner share those nodes with it (tied
  there): they are soft in every direction, so they transmit little;
* the base platen holds the lower cap's outer face fixed; the loading platen is a rigid plate
  tied to the upper cap's outer face, moved down by ``displacement`` (mm) and either held
  parallel (``platen="fixed"``) or free to rotate on a ball at ``ball_height`` above the cap's
  face centre (``platen="ball"``, Day's set-up), its lateral position held by the crosshead;
* the stiffness a testing machine reports is the platen force over the platen's displacement
  (:func:`machine_stiffness`); for a measured or pushover curve, the steepest slope of it over a
  window (:func:`steepest_slope`, as Day measured it: segments of 20 points of 0.0017 mm).

Units: mm, N, MPa. What the rig does not model: the testing machine's own compliance and that of
its fixtures (load cell, frame, the steel housing of the caps), the seating of the caps, the
toe region of a measured curve, and the bone's viscoelasticity; docs/validation.md puts numbers
on the gap they leave between a computed and a measured crosshead stiffness.
"""

from __future__ import annotations

import numpy as np

from ..errors import BoundaryConditionError, MeshError, ParameterError
from ..limits import LIMITS
from ..limits import check as check_limit
from ..loads import Fixed, RigidPlate
from .vertebra import (
    LEVELS,
    LevelStack,
    add_endplate_sets,
    annotate,
    grid_labels,
    label_names,
    layer_factors,
    level_names,
    model_from_labels,
    resolve_materials,
    thickness_compensated,
)

#: PMMA end-cap (E MPa, nu): the value of Day et al.'s FE replica (thesis chapter, "Final
#: material properties"); bone cements cure to 2-3 GPa
CAP_MATERIAL = (2450.0, 0.3)
#: cement beyond the body's lowest (highest) point (mm): the 5 mm Day et al. left between the
#: vertebra and the bottom of the potting container
CAP_DEPTH = 5.0
#: how far the cement rises up the body's side above the endplate's deepest point (mm), so that
#: "the edges of the vertebral body are covered"; and how far the container reaches beyond the
#: body laterally (mm). Both are ASSUMPTIONS (the protocol gives no number).
CAP_COVER = 1.0
CAP_MARGIN = 5.0
#: the slip layer's soft moduli as a fraction of the cap's (frictionless contact)
SLIP = 1e-4
CONTACTS = ("tied", "frictionless")
PLATENS = ("ball", "fixed")
#: label codes of the caps and their slip layers (the vertebra's codes stay below 60)
_CAP_CODES = {"cap_inferior": 91, "cap_superior": 92, "slip_inferior": 93, "slip_superior": 94}


def potted_body(level: str = "L1", *, voxel_size: float = 1.0, materials=None,
                contact: str = "frictionless", cap_depth: float = CAP_DEPTH,
                cap_cover: float = CAP_COVER, cap_margin: float = CAP_MARGIN,
                cap_material: tuple = CAP_MATERIAL):
    """A vertebral body (posterior elements cut at the pedicles) potted in PMMA end-caps.

    ``level``, ``voxel_size`` (mm) and ``materials`` as :func:`fem.meshes.vertebra.
    vertebra_model`; ``contact``: ``"tied"`` or ``"frictionless"`` (the slip layer of the module
    docstring); ``cap_depth``, ``cap_cover``, ``cap_margin`` in mm; ``cap_material``: (E MPa,
    nu). Regions: the level's bone parts and ``"rig/cap_inferior"``, ``"rig/cap_superior"``
    (with ``"rig/slip_inferior"`` and ``"rig/slip_superior"`` under frictionless contact).
    Face and node sets: the level's as in the vertebra model, plus ``"base"`` (the lower cap's
    outer face) and ``"platen"`` (the upper cap's). ``metadata["rig"]`` records the set-up.
    """
    if contact not in CONTACTS:
        raise ParameterError(f"contact must be one of {', '.join(CONTACTS)}, got {contact!r}")
    for name, v, positive in (("cap_depth", cap_depth, True), ("cap_cover", cap_cover, False),
                              ("cap_margin", cap_margin, False)):
        if not (np.isfinite(v) and (v > 0 if positive else v >= 0)):
            raise ParameterError(f"{name} must be a finite length {'> 0' if positive else '>= 0'} "
                            f"mm, got {v}")
    E_cap, nu_cap = (float(x) for x in cap_material)
    if not (E_cap > 0 and LIMITS["poisson"].contains(nu_cap)):
        raise ParameterError(f"cap_material must be (E > 0 MPa, -1 < nu < 0.5), got {cap_material}")
    names = level_names(level)
    if len(names) != 1:
        raise ParameterError(f"a rig holds one vertebral body, got levels {names}")
    h = check_limit("voxel_size", voxel_size)
    d = LEVELS[names[0]]
    physical = resolve_materials(materials)
    mats = thickness_compensated(physical, d, h)
    stack = LevelStack.of(names)
    body, origin = grid_labels(stack, h, with_posterior=False)
    labels, origin = _pot(body, origin, h, cap_depth, cap_cover, cap_margin)
    slip = contact == "frictionless"
    if slip:
        faces = _bone_faces(labels)
        _slip_layer(labels, faces)
    codes = label_names(names)
    codes.update({c: f"rig/{part}" for part, c in _CAP_CODES.items()})
    for part in _CAP_CODES:
        mats[part] = (E_cap, nu_cap)
    m = model_from_labels(labels, origin, h, codes, mats)
    if slip:
        _orthotropic_slip(m, faces, E_cap)
    add_endplate_sets(m, labels, names)
    annotate(m, names, stack)
    info = m.metadata["voxel_labels"]
    occ, lab = info["ijk"], info["labels"]
    caps = np.isin(lab, list(_CAP_CODES.values()))
    for name, k, face in (("base", 0, 0), ("platen", labels.shape[2] - 1, 1)):
        e = np.nonzero(caps & (occ[:, 2] == k))[0]
        m.add_face_set(name, e, np.full(len(e), face))
        m.add_node_set(name, m.nodes_of(name))
    m.metadata["voxel_size"] = h
    m.metadata["layer_factors"] = layer_factors(names, physical, d, h)
    m.metadata["rig"] = dict(level=names[0], contact=contact, cap_depth=cap_depth,
                             cap_cover=cap_cover, cap_margin=cap_margin, cap_material=(E_cap,
                                                                                        nu_cap),
                             height=float(labels.shape[2] * h))
    return m


def _pot(body, origin, h, depth, cover, margin):
    """The body's label grid padded and filled with the two caps (codes of ``_CAP_CODES``)."""
    pad_xy = int(np.ceil(margin / h))
    pad_z = int(np.ceil(depth / h))
    grid = np.zeros((body.shape[0] + 2 * pad_xy, body.shape[1] + 2 * pad_xy,
                     body.shape[2] + 2 * pad_z), dtype=body.dtype)
    grid[pad_xy:pad_xy + body.shape[0], pad_xy:pad_xy + body.shape[1],
         pad_z:pad_z + body.shape[2]] = body
    origin = np.asarray(origin, float) - h * np.array([pad_xy, pad_xy, pad_z])
    bone = grid > 0
    cols = bone.any(axis=2)
    if not cols.any():
        raise MeshError("the body produced no voxel: the voxel size is too large")
    nz = grid.shape[2]
    k = np.arange(nz)
    low = np.where(bone, k, nz).min(axis=2)  # lowest bone voxel of each column
    high = np.where(bone, k, -1).max(axis=2)
    # the container: the body's footprint's bounding box, widened by the margin
    ii, jj = np.nonzero(cols)
    box = np.zeros_like(cols)
    box[max(ii.min() - pad_xy, 0):ii.max() + pad_xy + 1,
        max(jj.min() - pad_xy, 0):jj.max() + pad_xy + 1] = True
    n_cover = int(np.ceil(cover / h))
    # cement fills the container up to the deepest point of the endplate's concavity plus the
    # cover (the whole endplate touches cement; the body's edges are covered)
    fill_low = int(low[cols].max()) + n_cover
    fill_high = int(high[cols].min()) - n_cover
    if fill_low >= fill_high:
        raise MeshError(f"the caps would meet: cap_cover {cover} mm is too large for the body")
    empty = ~bone & box[:, :, None]
    grid[empty & (k <= fill_low)[None, None, :]] = _CAP_CODES["cap_inferior"]
    grid[empty & (k >= fill_high)[None, None, :]] = _CAP_CODES["cap_superior"]
    # the pot's outer faces are flat: the grid's first and last layers are cement everywhere
    # in the container (the body ends pad_z >= 1 layers inside them)
    return grid, origin


def _bone_faces(labels):
    """Per axis (3, nx, ny, nz): the voxels with a bone voxel face-adjacent along that axis."""
    bone = (labels > 0) & (labels < 60)
    out = np.zeros((3,) + bone.shape, dtype=bool)
    for axis in range(3):
        lo, hi = [slice(None)] * 3, [slice(None)] * 3
        lo[axis], hi[axis] = slice(0, -1), slice(1, None)
        out[axis][tuple(lo)] |= bone[tuple(hi)]  # bone at +1
        out[axis][tuple(hi)] |= bone[tuple(lo)]  # bone at -1
    return out


def _slip_layer(labels, faces):
    """Relabel the cap voxels that share a face with bone (``faces``: :func:`_bone_faces`) as
    slip-layer voxels (in place)."""
    near = faces.any(axis=0)
    for cap, slip in (("cap_inferior", "slip_inferior"), ("cap_superior", "slip_superior")):
        labels[(labels == _CAP_CODES[cap]) & near] = _CAP_CODES[slip]


def _orthotropic_slip(m, faces, E_cap):
    """The slip layer's orthotropic constants: the cap's modulus along each axis on which the
    voxel faces bone (``faces``: :func:`_bone_faces`), SLIP x it for the other moduli and every
    shear modulus, nu 0."""
    info = m.metadata["voxel_labels"]
    occ, lab = info["ijk"], info["labels"]
    for slip in ("slip_inferior", "slip_superior"):
        sel = np.nonzero(lab == _CAP_CODES[slip])[0]
        if not len(sel):
            continue
        i, j, k = occ[sel].T
        E = np.where(faces[:, i, j, k].T, E_cap, SLIP * E_cap)
        m.set_orthotropic(f"rig/{slip}", E=E, nu=(0.0, 0.0, 0.0),
                          G=np.full((len(sel), 3), SLIP * E_cap))


def compression_test(m, displacement: float = 0.2, *, platen: str = "ball",
                     ball_height: float = 0.0) -> RigidPlate:
    """Displacement-controlled axial compression of a :func:`potted_body`: the ``"base"`` face
    fixed, a rigid platen (``"platen"``) tied to the upper cap's face and moved down by
    ``displacement`` (mm), held parallel (``platen="fixed"``) or free to rotate about a ball
    ``ball_height`` mm above the face's centre (``"ball"``). Returns the platen condition."""
    if "rig" not in m.metadata:
        raise BoundaryConditionError("compression_test needs a model from "
                                     "fem.meshes.rigs.potted_body (metadata['rig'])")
    if platen not in PLATENS:
        raise BoundaryConditionError(f"platen must be one of {', '.join(PLATENS)}, got "
                                     f"{platen!r}")
    d = float(displacement)
    if not (np.isfinite(d) and d > 0):
        raise BoundaryConditionError(f"displacement must be a positive length (mm), got "
                                     f"{displacement}")
    pts = m.points[m.nodes_of("platen")]
    centre = pts.mean(axis=0)
    centre[2] = pts[:, 2].max() + float(ball_height)
    rot = (None, None, None) if platen == "ball" else (0.0, 0.0, 0.0)
    plate = RigidPlate("platen", reference=tuple(centre), displacement=(0.0, 0.0, -d),
                       rotation=rot, name="platen")
    m.add(Fixed("base", "xyz"), plate)
    m.metadata["rig"].update(platen=platen, displacement=d, ball_height=float(ball_height))
    return plate


def machine_stiffness(result) -> float:
    """The stiffness a testing machine reports for a :func:`compression_test` (N/mm): the
    platen's axial reaction over its displacement."""
    rig = result.model.metadata.get("rig", {})
    if "displacement" not in rig:
        raise BoundaryConditionError("the result is not of a compression_test")
    force = -float(result.reactions["platen"][2])
    return force / rig["displacement"]


def steepest_slope(displacement, force, window: int = 20) -> float:
    """The steepest slope (N/mm) of a force-displacement curve: the largest least-squares
    slope over ``window`` consecutive points, as a testing machine's stiffness is read (Day et
    al. used windows of 20 points, 0.034 mm). The points must be ordered by displacement."""
    x = np.asarray(displacement, float)
    y = np.asarray(force, float)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"displacement and force must be 1-D of one length, got {x.shape} "
                         f"and {y.shape}")
    w = int(window)
    if w < 2 or len(x) < w:
        raise ValueError(f"window must lie in 2..{len(x)} points, got {window}")
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise ValueError("the curve holds NaN or inf")
    best = -np.inf
    for s in range(len(x) - w + 1):
        xs, ys = x[s:s + w], y[s:s + w]
        dx = xs - xs.mean()
        den = float(dx @ dx)
        if den > 0:
            best = max(best, float(dx @ (ys - ys.mean())) / den)
    if not np.isfinite(best):
        raise ValueError("the curve's displacement does not change within any window")
    return best
