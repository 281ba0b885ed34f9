"""Fractures and lesions: transformations of a vertebra or segment Model into another Model.

They read the anatomy from the model (``model.anatomy[level]``, a :class:`~fem.anatomy.LevelAnatomy`: the level's
:class:`~fem.meshes.vertebra.LevelDims` as ``dims`` and its base height ``z0``; regions named
``"<level>/<part>"``) and never touch the solver, so they apply to the voxel (hex8) and the tet10
forms alike.

Compression fractures (:func:`compress`), Genant semi-quantitative grading (reference table of
../shared/reference/biomechanics.md, "Procedures"): grade 1 (mild) 20-25 % height loss, grade 2
(moderate) 25-40 %, grade 3 (severe) > 40 %; shapes wedge (anterior height lost), biconcave
(middle height lost, both endplates depressed) and crush (whole body). The body's nodes are moved
vertically (the height loss is a field over the endplate, zero where the shape keeps the height:
at the superior endplate for wedge and crush, half at each endplate for biconcave). The levels
above follow the collapsed superior endplate rigidly: the proper rigid motion that best carries
the endplate's nodes from their intact to their collapsed positions (least squares, Kabsch)
moves every level above and the discs between them, so a wedge fracture tips the segment into
kyphosis (the rotation is about the fractured body's wedge angle) instead of stretching the disc
above to fill the gap. The discs are nearly incompressible, so they keep their volume: the
fitted motion is shifted along the axis until the disc above, which blends from the endplate's
own motion at its bottom to that rigid motion at its top, has its intact volume; a biconcave
fracture raises the middle of the inferior endplate, and the disc below follows it into the
body only as far as the whole level (and everything above) sinks to keep that disc's volume
(where the disc is too thin somewhere for that, it sinks as far as the disc's elements allow
and a warning gives the disc's growth). Heights are counted from the level's actual inferior
endplate (interpolated between its nodes), so a wedge or crush of a real (tilted, concave)
vertebra leaves the disc below nearly as it was, and the same drop, of either sign, gives it
its volume back. Measured (2026-12-05), every shape at grades 1-3, discs' volumes: the
parametric L1-L5 (hex8, 2 and 3 mm), its tet10 form (L1-L3, 3 mm) and the clinical CT's L1-L3
(3 mm) to 1e-12; the mean shape model's L3 and L4 (2 mm) to 1e-12 too, except a biconcave L4,
whose one-voxel posterior disc rim lets its disc below grow 4.4 % (grade 2) and 17 % (grade 3,
with the warning), and a grade-3 biconcave L3, which inverted its disc above's thin rim until
the arch below stopped the levels above (next).

The levels above stop on the arch below: where the fractured level's posterior elements keep
their height and its body does not (biconcave, crush), the levels above would come down
through that arch, closing a gap between the two arches (a column of the grid where the upper
level's posterior bone stands over the lower's) past its height. They stop where the closing
gap keeps :data:`ARCH_GAP_KEPT` of its height and turn forward about that contact until the
disc above has its volume again (:func:`_stop_on_arches`; a warning where a turn of
:data:`ARCH_MAX_TURN` degrees cannot do it). Bone on bone by a geometric rule: the contact
carries no load (facets are not modelled). The parametric segment's arches stand far enough
apart that it never acts there; on real anatomy it does (docs/augmentation.md).
``metadata["kyphosis"][level]`` records the rotation, translation, angle (degrees) and the levels
moved; their anatomy (centres, pedicle axes) moves with them, so the metrics' level frames tilt
too. The fractured level's own anatomy follows its collapsed bone (:func:`carried_anatomy`, since
2026-12-07 evening): its centre stays in the middle of the crushed body and its transpedicular
paths run through the pedicles where the crushed mesh has them (before, they stayed at the intact
level's height: a grade-3 crush's needle tips ended above its body, and the frame's centre,
which splits a damaged band into its superior and inferior parts, near the collapsed top). A
tilted level cannot be fractured afterwards (fracture the upper level first). A damaged
trabecular zone of
``damage_depth`` mm under each collapsed endplate becomes region ``"<level>/damaged"`` with the
trabecular modulus times ``damage_factor``; with ``damage_shell`` (default) the cortex and bony
endplate in the same band join ``"<level>/damaged_shell"`` (cortex) and
``"<level>/damaged_endplate"`` (bony endplate) with the same factor. The factor is measured, not
calibrated: :data:`CRUSHED_MODULUS_RATIO` = 0.14, the modulus human vertebral trabecular bone
keeps after repeated compressive overloads (Wolfram, Wilke & Zysset 2011, J Biomech 44:1164:
damage, the loss of modulus, accumulated to 86 % in compression over five load steps on 251
cores from 104 donors, T1-L3, aged 21-94; abstract checked); the cortex and endplates in the band
take the same factor, as they take the trabecular yield strains in :mod:`fem.strength` (an
ASSUMPTION). The depth (5 mm) is an ASSUMPTION kept from the earlier calibration of the factor
0.2 on Wegrzyn et al. 2011's stiffness loss, which this replaced (2026-12-06).
Damaging the trabecular band alone barely changes the stiffness (the shell carries the load).

Densification (``conserve_mass=True``, the default since 2026-12-06): the collapse above shortens
the body's elements, and with their moduli unchanged the crushed body would lose a quarter of
its bone mass at a 25 % crush. Bone is not lost when it is crushed, it is compacted: with
``conserve_mass`` the body keeps its bone mass. A densified element's trabecular modulus (and
with it the damage law's yield stress, a fixed yield strain times the modulus) rises as
(rho / rho0)^1.56 (Morgan et al. 2003's density-modulus law), a shell's (cortex, bony endplates:
a thickness-scaled modulus) as rho / rho0. ``compaction="band"`` (default) puts the squeezed
mass into the damaged band of its column (below), each part (core, cortex, bony endplates)
keeping its own mass and the rest of it its intact density; ``"uniform"`` keeps every element's
own mass (rho / rho0 = 1 / J). Nothing is fitted to the fracture experiment: on the Wegrzyn
et al. 2011 replica (J Bone Miner Res 26:739: 21 human L3 crushed to a 25 % deformity lost
53 +- 18 % of their stiffness and 11 +- 19 % of their failure load; parametric L3, 25 % crush)
the defaults lose 54 % and 12 % at 5 mm voxels, 56 % and 19 % at 3 mm, 53 % and 26 % at 2 mm,
52 % and 27 % at 1.5 mm and 53 % and 28 % at 1 mm (pushover steps bounded by the damage,
:data:`fem.nonlinear.MAX_DAMAGE_STEP`); without the mass (``conserve_mass=False``) 70 % and 33 %
at 2 mm (docs/validation.md, bench/validation.py).

The strength envelope of the compacted band (``envelope``) is an ASSUMPTION either way.
"compacted" (default): the band is intact bone of its compacted density, damaged to the measured
modulus ratio, so its residual stress rises with its density as its modulus does (the Wegrzyn
replica's 25 % crush makes the core of the band 1.6 times as dense, its modulus 2.1 times: a
residual stress 1.25 times the yield stress of the bone it came from). "original": the band keeps the stress envelope of the bone it was crushed from, its
strains scaled down by its stiffening (its yield and softening strains over the modulus factor),
as a cellular solid crushed on its plateau carries the plateau stress until it densifies
(Gibson 1985, J Biomech 18:317, cellular-solid model of cancellous bone: recalled, not re-read):
denser and stiffer, no stronger. The Wegrzyn replica's pushover loses 24 / 30 / 30 % of its
strength at 3 / 2 / 1.5 mm with "original" (20 / 27 / 28 % by default; one SD reaches 30 %) and
its Pistoia estimate about 50 % (21-26 %); in a segment, under the disc, "original" turns the
biconcave fractures' gain over the intact level into losses (docs/validation.md, "The compacted
band's strength envelope"). A 25 % crush of the parametric L1 (1.5 mm,
standing) keeps 0.43 of its stiffness (0.39 with the old calibration). The balance is per
column (the elements above one another, binned on the element size): the bone crushed in front
of a wedge is compacted into the band in front, where it was crushed (until 2026-12-06 it was
spread over the band under the whole endplate). :func:`restore` takes the
densification back with the height. A burst fracture (``burst=True``) adds a breach of the
posterior wall's cortex (region ``"<level>/posterior_wall_breach"``, damaged modulus): the path
cement leaks along. ``cleft=True`` opens an intravertebral cleft (Kummell's): the damaged bone
within ``cleft_thickness`` mm under the collapsed superior endplate, in the anterior 70 % of the
depth and the middle 60 % of the width, becomes soft tissue (``"<level>/cleft"``, E 1 MPa, nu 0.45,
an assumption) that cement fills readily.

Openings of the shell (:func:`open_breach`): the basivertebral foramen (the venous opening in the
posterior wall) or a fracture line through a bony endplate, of a given diameter, become soft
tissue the cement filling can enter (``"<level>/basivertebral_foramen"``,
``"<level>/endplate_breach"``): the ways cement leaves a body besides a burst's posterior wall
and a cleft.

Lesions (:func:`add_lesion`): an osteolytic metastasis is an ellipsoidal region of soft tissue
(``"<level>/lesion"``, E 10 MPa, nu 0.45 by default: an assumption for tumour tissue, orders of
magnitude softer than bone) replacing trabecular bone and, with ``breach_cortex=True``, the cortex
it reaches; a haemangioma keeps the bone but reduces the trabecular modulus inside the ellipsoid
(``"<level>/haemangioma"``, factor 0.5 by default, an assumption).
"""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

from ..anatomy import LevelAnatomy
from ..assembly import check_geometry, element_volumes
from ..errors import MeshError, ParameterError, SetError
from ..kernels import elastic
from ..model import Model
from ..parts import DISC, LIGAMENT, level_elements
from ..validate import in_range
from .transform import Motion
from .vertebra import POSTERIOR_FLAT, rim_profile, superior_rim_height

#: intravertebral cleft (E MPa, nu): fluid and fibrous tissue, an ASSUMPTION (orders of magnitude
#: softer than bone, nearly incompressible)
CLEFT_MATERIAL = (1.0, 0.45)
#: the crushed band's modulus over its intact (densified) modulus, ``compress``'s default
#: ``damage_factor``: the largest compressive damage measured on human vertebral trabecular bone,
#: 86 % (Wolfram, Wilke & Zysset 2011, J Biomech 44:1164, abstract checked; module docstring)
CRUSHED_MODULUS_RATIO = 1.0 - 0.86
GENANT_LOSS = {1: (0.20, 0.25), 2: (0.25, 0.40), 3: (0.40, 0.60)}
SHAPES = ("wedge", "biconcave", "crush")


def genant_loss(grade: int) -> float:
    """The middle of a Genant grade's height-loss range (grade 3: 0.45, 'more than 40 %')."""
    if grade not in GENANT_LOSS:
        raise ParameterError(f"Genant grade must be 1, 2 or 3, got {grade!r}")
    lo, hi = GENANT_LOSS[grade]
    return 0.45 if grade == 3 else 0.5 * (lo + hi)


def _anatomy(model: Model, level: str) -> LevelAnatomy:
    return model.anatomy[level]


def _centroids(model: Model, elements) -> np.ndarray:
    if len(model.blocks) != 1:
        raise MeshError("pathology transforms expect a model with one cell block")
    return model.element_centres(elements)


def _loss_field(d, shape: str, loss: float, x, y):
    """Fraction of the local height lost at (x, y) (posterior elements take the wall's value)."""
    y_wall = 0.5 * d.depth * POSTERIOR_FLAT
    yc = np.minimum(y, y_wall)
    if shape == "crush":
        return np.full(np.shape(x), loss)
    if shape == "wedge":
        # anterior edge loses `loss` of the anterior height, the posterior wall nothing
        t = np.clip((y_wall - yc) / (y_wall + 0.5 * d.depth), 0.0, 1.0)
        return loss * t
    # biconcave: the middle loses `loss`, the rim keeps its height
    return loss * rim_profile(d, x, np.maximum(yc, -0.5 * d.depth))


class CleftError(MeshError):
    """No damaged bone lies close enough under the endplate to open the cleft asked for."""


@dataclass(frozen=True)
class Fracture:
    """A compression fracture of one level: shape, fractional height loss, damage, burst."""

    level: str
    shape: str = "wedge"
    height_loss: float = 0.325
    damage_depth: float = 5.0
    damage_factor: float = CRUSHED_MODULUS_RATIO
    burst: bool = False
    cleft: bool = False
    conserve_mass: bool = True
    envelope: str = "compacted"


#: exponent of the trabecular modulus on apparent density: Morgan, Bayraktar & Keaveny 2003
#: (J Biomech 36:897), E = 4730 rho^1.56 for vertebral bone, the default law of
#: :mod:`fem.meshes.bone` (``compress``'s ``conserve_mass``)
DENSITY_EXPONENT = 1.56
#: the body's parts that ``conserve_mass`` densifies, by the core or shell they form: (parts,
#: the one of them in the damaged band, whether the modulus follows the density law: trabecular
#: bone does; the thin shells, whose voxel modulus is thickness-scaled, follow their mass per area)
BODY_PARTS = ((("trabecular", "damaged"), "damaged", True),
              (("cortex", "damaged_shell"), "damaged_shell", False),
              (("endplate_superior", "endplate_inferior", "damaged_endplate"), "damaged_endplate",
               False))
#: where a mass-conserving fracture puts the compacted bone (``compress``'s ``compaction``)
COMPACTIONS = ("band", "uniform")
#: the strength envelope of the crushed, densified bone (``compress``'s ``envelope``): that of
#: intact bone of its compacted density ("compacted"), or that of the bone it was crushed from
#: ("original"; module docstring, "Densification")
ENVELOPES = ("compacted", "original")


def compress(model: Model, level: str, shape: str = "wedge", *, grade: int | None = 2,
             height_loss: float | None = None, damage_depth: float = 5.0,
             damage_factor: float = CRUSHED_MODULUS_RATIO, damage_shell: bool = True,
             burst: bool = False, cleft: bool = False, cleft_thickness: float = 2.0,
             conserve_mass: bool = True, compaction: str = "band",
             density_exponent: float = DENSITY_EXPONENT, carry_anatomy: bool = True,
             envelope: str = "compacted") -> Model:
    """A copy of ``model`` with a compression fracture of ``level`` (see the module docstring).

    ``height_loss`` (fraction, 0.05..0.8) overrides ``grade``. Returns the new model; its
    ``metadata["fractures"]`` records what was done and ``metadata["collapse"][level]`` the
    (n_nodes, 3) displacement from the intact to the fractured points (what kyphoplasty's height
    restoration undoes a share of).

    ``conserve_mass``: the crushed body keeps its bone mass (module docstring, "Densification"):
    each body element's apparent density rises by 1 / J (J its volume ratio, collapsed over
    intact), its trabecular modulus by (1 / J)^``density_exponent`` (Morgan et al. 2003's 1.56
    by default: give the exponent of the density-modulus law the model was built with) and its
    shell's (cortex, bony endplates) by 1 / J. ``compaction``: where the mass the collapse
    squeezed goes: "band" (default), into the damaged band (the crushed bone) of the same column,
    each part (core, cortex, bony endplates) keeping its own mass, the rest of the body at its
    intact density; "uniform", every element keeps its own mass (density times 1 / J
    everywhere). On by
    default; ``conserve_mass=False`` gives the fracture model before 2026-12-06 (with
    ``damage_factor=0.2``, its calibrated factor), in which the collapse loses the bone's mass.

    ``envelope``: the strength envelope the damage law (:func:`fem.strength.bone_damage_law`)
    gives the densified bone of the damaged band: "compacted" (default), that of intact bone of
    its compacted density, damaged to ``damage_factor`` of its modulus; "original", that of the
    bone it was crushed from, its strains scaled by the band's stiffening (module docstring,
    "Densification"). Recorded in the :class:`Fracture`; the same as "compacted" without
    ``conserve_mass``.

    ``carry_anatomy``: the fractured level's anatomy (its centre, endplate centres and
    transpedicular paths, ``model.anatomy[level]``) follows its collapsed bone
    (:func:`carried_anatomy`), so that a needle goes through the pedicle where the crushed mesh
    has it and the level's frame is centred in the crushed body. ``False`` leaves them where the
    intact level had them (the fracture model before 2026-12-07 evening).
    """
    loss = genant_loss(grade) if height_loss is None else float(height_loss)
    _check_fracture(model, level, shape, loss, damage_factor, damage_depth)
    if envelope not in ENVELOPES:
        raise ParameterError(f"envelope must be one of {', '.join(ENVELOPES)}, got "
                             f"{envelope!r}")
    anat = _anatomy(model, level)
    if anat.dims is None or anat.z0 is None:
        raise MeshError(f"{level}'s anatomy has no parametric dimensions (dims, z0): the "
                        "fracture builder needs a model of fem.meshes.vertebra or fem.meshes.ssm")
    col = _Collapse(anat.dims, float(anat.z0), shape, loss)
    levels = model.metadata["levels"]
    i = levels.index(level)
    below = levels[i + 1] if i + 1 < len(levels) else None
    if below is not None:
        col = _conserve_disc_below(model, level, below, col)
    out = model.copy()
    pts = out.points.copy()
    moved = _collapse_level(out, pts, level, col)
    kyphosis = _tip_levels_above(model, out, pts, level, levels[:i], col, moved) if i else None
    if below is not None:
        _follow_disc(model, out, pts, col, level, below, f"{level}-{below}", moved, upper=False)
    for disc in ([f"{levels[i - 1]}-{level}"] if i else []) + ([f"{level}-{below}"] if below
                                                               else []):
        _follow_ligaments(model, out, pts, disc)
    out.points = pts
    if carry_anatomy:
        out.anatomy = out.anatomy.replaced(carried_anatomy(model, pts, level))
        out.metadata["anatomy_carried"] = [*model.metadata.get("anatomy_carried", ()), level]
    try:
        check_geometry(out, np)
    except MeshError as exc:
        raise MeshError(f"the {shape} fracture of {level} ({loss:.0%} height loss) inverts "
                        f"elements of this mesh ({exc}); use a finer or better-shaped mesh "
                        "or a smaller height loss") from None
    _damage(out, level, col, damage_depth, damage_factor, damage_shell)
    if conserve_mass:
        _densify(model, out, level, density_exponent, compaction)
    if cleft:
        _open_cleft(out, level, col.d, cleft_thickness)
    if burst:
        _breach_posterior_wall(out, level, col, damage_factor)
    if kyphosis is not None:
        _record_kyphosis(out, level, levels[:i], *kyphosis[:2], arch_turn=kyphosis[2])
    out.metadata.setdefault("fractures", []).append(
        Fracture(level, shape, loss, damage_depth, damage_factor, burst, cleft, conserve_mass,
                 envelope))
    collapse = out.metadata.setdefault("collapse", {})
    collapse[level] = collapse.get(level, 0.0) + (out.points - model.points)
    return out


def _check_fracture(model: Model, level: str, shape: str, loss: float, damage_factor: float,
                    damage_depth: float) -> None:
    if shape not in SHAPES:
        raise ParameterError(f"fracture shape must be one of {', '.join(SHAPES)}, got {shape!r}")
    if not (0.05 <= loss <= 0.8):
        raise ParameterError(f"height loss must lie in 0.05..0.8 (5-80 %), got {loss}")
    if not (0.0 < damage_factor <= 1.0) or damage_depth < 0.0:
        raise ParameterError("damage_factor must lie in (0, 1] and damage_depth be >= 0 mm")
    if model.metadata.get("rotated"):
        raise MeshError("compress() works in the builder's axes: fracture the model before "
                        "rigid_transform() rotates it")
    tilted = [lv for lv, k in model.metadata.get("kyphosis", {}).items() if level in k["levels"]]
    if tilted:
        raise MeshError(f"{level} was tilted by the kyphosis of the {tilted[0]} fracture, and "
                        "compress() works in the builder's axes: fracture the upper level first")


@dataclass(frozen=True)
class _Collapse:
    """The height-loss field of one fracture, in the level's axes (base height ``z0``)."""

    d: object  # the level's LevelDims
    z0: float
    shape: str
    loss: float
    #: how far (mm) the whole level sinks so that the disc below keeps its volume (biconcave)
    drop: float = 0.0

    def top(self, y):
        """Local height of the superior endplate's rim over (.., y); posterior elements take the
        wall's."""
        return superior_rim_height(self.d, np.minimum(y, 0.5 * self.d.depth * POSTERIOR_FLAT))

    def lost(self, x, y):
        return _loss_field(self.d, self.shape, self.loss, x, y)

    def lift(self, L, top):
        """How far the fracture raises the inferior endplate: half the loss for a biconcave
        one, less the level's ``drop``."""
        return (0.5 * L * top if self.shape == "biconcave" else 0.0 * L) - self.drop

    @property
    def both_endplates(self) -> bool:
        return self.shape in ("biconcave", "crush")

    def in_band(self, c, depth: float):
        """Which points ``c`` (n, 3) lie within ``depth`` mm of a collapsed endplate."""
        cl = c[:, 2] - self.z0
        L = self.lost(c[:, 0], c[:, 1])
        top = self.top(c[:, 1])
        lift = self.lift(L, top)
        near = cl >= lift + top * (1.0 - L) - self.d.concavity_superior - depth
        if self.both_endplates:
            near |= cl <= lift + self.d.concavity_inferior + depth
        return near


def _collapse_level(out: Model, pts, level: str, col: _Collapse):
    """Move the level's nodes vertically (in ``pts``): its local height scaled by (1 - L); a
    biconcave fracture loses half at each endplate (the inferior one rises), the others at the
    superior endplate; parts hanging below the base (a real vertebra's inferior articular
    processes) move rigidly with it instead of being flattened onto it. Returns the mask of the
    nodes moved."""
    nodes = out.element_nodes(level_elements(out, level))
    pts[nodes, 2] += _body_motion(out, level, col, pts[nodes])
    moved = np.zeros(out.n_nodes, dtype=bool)
    moved[nodes] = True
    return moved


def _body_motion(model: Model, level: str, col: _Collapse, p) -> np.ndarray:
    """The vertical motion (mm) of the collapsing level at the intact points ``p`` (n, 3): the
    local height over the base scaled by (1 - L), the inferior endplate raised by ``lift`` (and
    the whole level lowered by ``drop``). Heights count from the inferior endplate where it
    stands above the base plane (a real, tilted or concave endplate, interpolated between its
    nodes: a smooth base, so the map keeps every element the right way up), so that a wedge or
    crush leaves it, and the disc below, nearly where they were; parts below the base (inferior
    articular processes) move with it."""
    L = col.lost(p[:, 0], p[:, 1])
    inferior = model.node_sets.get(f"{level}/inferior")
    base = col.z0
    if inferior is not None and len(inferior):
        base = np.maximum(col.z0, _interpolate(model.points[inferior],
                                               model.points[inferior, 2], p))
    return col.lift(L, col.top(p[:, 1])) - L * np.clip(p[:, 2] - base, 0.0, None)


def _tip_levels_above(model: Model, out: Model, pts, level: str, upper, col: _Collapse, moved):
    """The levels above follow the collapsed endplate rigidly (the segment tips into kyphosis):
    the rigid motion that best carries the superior endplate's nodes from their intact to their
    collapsed positions, then moved along the axis so that the disc above keeps its volume (the
    disc is nearly incompressible; the fit alone left it up to 4 % larger or smaller); the disc
    above blends from the endplate's own motion at its bottom to that rigid motion at its top,
    so it keeps its shape; where the arches meet, :func:`_stop_on_arches`. Returns (R, t) and
    the turn about the arches (degrees)."""
    sup = out.node_sets[f"{level}/superior"]
    R, t = _rigid_fit(model.points[sup], pts[sup])
    disc_name = f"{upper[-1]}-{level}"

    def placed(R_, t_):
        return _tipped(model, out, pts.copy(), level, upper, col, moved, (R_, t_))

    t = t + np.array([0.0, 0.0, _keep_volume(out, placed, model.points, R, t, disc_name)])
    R, t, turned = _stop_on_arches(model, pts, upper[-1], level, col.shape, placed,
                                   _disc_elements(out, disc_name), R, t)
    blend = {}
    _tipped(model, out, pts, level, upper, col, moved, (R, t), blend)
    out.metadata.setdefault("disc_blend", {})[level] = blend
    return R, t, turned


def _stop_on_arches(model: Model, pts, upper: str, level: str, shape: str, placed, disc, R, t):
    """(R, t) of the levels above, stopped where their posterior arch (``upper``'s) would come
    down through the fractured ``level``'s (:func:`_arch_lift`): raised until the closing gap
    keeps :data:`ARCH_GAP_KEPT` of its height, then turned forward about that contact (about
    the lateral axis through it) until the disc above (elements ``disc``, at the points
    ``placed(R, t)`` gives) has its intact volume again, as a segment whose inferior articular
    processes strike the lamina below tips into kyphosis; repeated while another gap closes.
    Where turning cannot give the disc its volume back (more than :data:`ARCH_MAX_TURN`), the
    disc keeps more and a warning says how much. Also returns how far (degrees) the levels
    above turned about the arches."""
    from scipy.optimize import brentq

    gaps = _arch_gaps(model, upper, level)
    v0 = _volume(model, model.points, disc) if len(disc) else 0.0

    def volume(R_, t_):
        return _volume(model, placed(R_, t_), disc)

    turned, lifted = 0.0, 0.0
    for _ in range(ARCH_STEPS):
        lift, pivot = _arch_lift(gaps, model, pts, R, t)
        if lift <= 0.0:
            break
        t = t + np.array([0.0, 0.0, lift])
        lifted += lift
        if not len(disc) or volume(R, t) <= v0:
            continue
        P = model.points[pivot] @ R.T + t
        top = np.radians(ARCH_MAX_TURN) - turned
        if volume(*_forward(R, t, P, top)) > v0:
            R, t = _forward(R, t, P, top)
            turned += top
            break
        angle = brentq(lambda a, R=R, t=t, P=P: volume(*_forward(R, t, P, a)) - v0, 0.0, top,
                       xtol=1e-12)
        R, t = _forward(R, t, P, angle)
        turned += angle
    lift, _ = _arch_lift(gaps, model, pts, R, t)
    t = t + np.array([0.0, 0.0, max(lift, 0.0)])
    if lifted > 0.0 and len(disc):
        change = volume(R, t) / v0 - 1.0
        if change > 1e-3:
            warnings.warn(f"the {shape} fracture of {level}: the posterior arch of "
                          f"{upper} comes down onto {level}'s, and turning the levels above "
                          f"forward {np.degrees(turned):.1f} degrees about that contact leaves "
                          f"the disc above ({upper}-{level}) {change:.1%} larger than it "
                          "was (facet contact is not modelled)", stacklevel=4)
    return R, t, float(np.degrees(turned))


def _forward(R, t, P, angle: float):
    """The rigid motion (R, t) followed by a forward turn of ``angle`` (radians) about the
    lateral (x) axis through the point ``P``: the front (-y) comes down, the back goes up."""
    c, s = np.cos(angle), np.sin(angle)
    Q = np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])
    return Q @ R, Q @ (t - P) + P


#: how many times :func:`_stop_on_arches` lifts and turns the levels above onto another closing
#: gap between the arches
ARCH_STEPS = 6
#: the most (degrees) the levels above turn forward about their arches' contact to keep the disc
#: above at its volume
ARCH_MAX_TURN = 20.0
#: the share of its intact height a gap between two levels' posterior arches keeps, at least,
#: when a fracture brings the levels above down (the disc rim's rule, _conserve_disc_below)
ARCH_GAP_KEPT = 0.1


def _arch_gaps(model: Model, upper: str, level: str):
    """The gaps between the posterior arches of ``upper`` and ``level`` (intact): per column of
    the grid (nodes with the same x, y) where ``upper``'s lowest posterior node stands above
    ``level``'s highest below it, those two nodes and the gap's height (mm); none where a level
    has no posterior elements or the mesh's nodes do not stand in columns (tet10)."""
    none = np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), np.zeros(0)
    names = [f"{upper}/posterior", f"{level}/posterior"]
    if not all(n in model.regions for n in names):
        return none
    up, low = (model.element_nodes(model.regions[n]) for n in names)
    up, low = np.setdiff1d(up, low), np.setdiff1d(low, up)
    if not len(up) or not len(low):
        return none
    xy = np.round(model.points[np.r_[up, low], :2] / 1e-6).astype(np.int64)
    _, column = np.unique(xy, axis=0, return_inverse=True)
    column = column.ravel()
    cu, cl = column[:len(up)], column[len(up):]
    n = int(column.max()) + 1
    first = _extreme(up, cu, model.points[up, 2], n, lowest=True)
    z_up = np.where(first >= 0, model.points[np.maximum(first, 0), 2], np.inf)
    below = model.points[low, 2] < z_up[cl]
    low, cl = low[below], cl[below]
    last = _extreme(low, cl, model.points[low, 2], n, lowest=False)
    cols = np.nonzero((first >= 0) & (last >= 0))[0]
    a, b = first[cols], last[cols]
    return a, b, model.points[a, 2] - model.points[b, 2]


def _arch_lift(gaps, model: Model, pts, R, t) -> tuple[float, int]:
    """How far (mm, >= 0; 0 where no gap closes) the levels above, moved by (R, t), must be
    raised so that none of the ``gaps`` between the arches (:func:`_arch_gaps`; the lower
    arch's nodes at ``pts``) closes below :data:`ARCH_GAP_KEPT` of its intact height: the bone
    of one arch cannot pass through the other's. Also returns the upper node of the gap that
    sets the lift (-1 where none does)."""
    a, b, gap0 = gaps
    if not len(a):
        return 0.0, -1
    need = ARCH_GAP_KEPT * gap0 - ((model.points[a] @ R.T + t)[:, 2] - pts[b, 2])
    k = int(np.argmax(need))
    return (float(need[k]), int(a[k])) if need[k] > 1e-9 else (0.0, -1)  # a nanometre


def _extreme(nodes, column, z, n: int, *, lowest: bool) -> np.ndarray:
    """Per column ``0..n-1``: the node of ``nodes`` (in ``column``, at heights ``z``) lowest
    (or highest) in it; -1 where the column has none."""
    out = np.full(n, -1)
    if len(nodes):
        order = np.lexsort((z if lowest else -z, column))  # by column, the extreme first
        cols, at = np.unique(column[order], return_index=True)
        out[cols] = nodes[order[at]]
    return out


def _tipped(model: Model, out: Model, pts, level: str, upper, col: _Collapse, moved, rigid,
            blend: dict | None = None):
    """``pts`` with the levels ``upper`` moved by ``rigid`` = (R, t) and the disc between them
    and ``level`` blended from its endplate's motion to that rigid motion; returns ``pts``.
    ``blend``: a dict that gets the disc's blended ``nodes`` and their weights ``w``
    (:func:`_follow_disc`)."""
    R, t = rigid
    up = _nodes_above(out, upper)
    up = up[~moved[up]]
    pts[up] = model.points[up] @ R.T + t
    moved_up = np.zeros(out.n_nodes, dtype=bool)
    moved_up[up] = True
    above = upper[-1]
    dn, w = _follow_disc(model, out, pts, col, level, above, f"{above}-{level}",
                         moved | moved_up, upper=True, rigid=rigid)
    if blend is not None:
        blend.update(nodes=dn, w=w)
    return pts


def _conserve_disc_below(model: Model, level: str, below: str, col: _Collapse) -> _Collapse:
    """``col`` with the ``drop`` (mm) of the whole level that keeps the disc below at its
    volume: a biconcave fracture raises the middle of the inferior endplate, and the disc,
    nearly incompressible, follows it into the body only as far as its rim sinks (the levels
    above come down with the level, through the fit of its superior endplate); a wedge or crush
    moves an endplate that is not flat a little (the base is interpolated between its nodes),
    which a small drop of either sign undoes in volume. Where the disc is thinner somewhere
    than that drop allows (a lordotic disc's posterior rim one voxel thick), the level sinks
    only as far as every disc element keeps a tenth of its height, and a warning says how much
    the disc then grows."""
    disc = _disc_elements(model, f"{level}-{below}")
    if not len(disc):
        return col
    vol, det = [], []
    for drop in (0.0, 1.0):  # only z moves, linearly in the drop: so do volumes and Jacobians
        c = dataclasses.replace(col, drop=drop)
        pts = model.points.copy()
        moved = _collapse_level(model, pts, level, c)
        _follow_disc(model, model, pts, c, level, below, f"{level}-{below}", moved, upper=False)
        vol.append(_volume(model, pts, disc))
        det.append(_jacobians(model, pts, disc))
    if vol[1] == vol[0]:
        return col
    v0 = _volume(model, model.points, disc)
    drop = (v0 - vol[0]) / (vol[1] - vol[0])
    shrinking = det[1] < det[0]  # the elements a positive drop compresses
    if drop > 0.0 and shrinking.any():
        a, b = det[0][shrinking], det[1][shrinking] - det[0][shrinking]
        most = float(np.min(0.9 * a / -b))
        if most < drop:
            grown = (vol[0] + most * (vol[1] - vol[0])) / v0 - 1.0
            warnings.warn(f"the biconcave fracture of {level}: the disc below ({level}-{below}) "
                          f"is too thin somewhere for the level to sink the {drop:.2f} mm that "
                          f"would keep its volume; it sinks {max(most, 0.0):.2f} mm and the disc "
                          f"grows by {grown:.1%} (a finer mesh resolves a thin disc rim)",
                          stacklevel=4)
            drop = max(most, 0.0)
    return dataclasses.replace(col, drop=drop)


def _dets(model: Model, points, elements):
    """Per cell block holding some of ``elements``: (det J at their integration points (m, g),
    the quadrature weights (g,)) on the nodes ``points``."""
    for b in model.blocks:
        sel = b.local(elements)
        if len(sel):
            yield elastic.gradients(points[b.conn[sel]], b.etype.dN)[1], b.etype.weights


def _jacobians(model: Model, points, elements) -> np.ndarray:
    """det J at the integration points of ``elements`` on the nodes ``points``, flat."""
    out = [det.ravel() for det, _ in _dets(model, points, elements)]
    return np.concatenate(out) if out else np.zeros(0)


def _volume(model: Model, points, elements) -> float:
    """Volume (mm^3) of ``elements`` on the nodes ``points``, by the stiffness quadrature."""
    return float(sum((det * w).sum() for det, w in _dets(model, points, elements)))


def _follow_disc(model: Model, out: Model, pts, col: _Collapse, level: str, neighbour: str,
                 disc_name: str, moved, *, upper: bool, rigid=None):
    """Move the disc between the fractured ``level`` and ``neighbour`` (in ``pts``) with the level's
    endplate; returns the nodes moved and the weight ``w`` of the body's motion in each (the
    rest, ``1 - w``, the rigid motion's). Both endplates' heights are interpolated at each
    node's x, y (:func:`_interpolate`, a smooth surface). A node on the level's side of its
    endplate surface (inside the endplate's concavity) moves with the body's own map
    (:func:`_body_motion`), so it cannot be pushed through the endplate; beyond, it takes the
    map's motion at the surface, weighted down to 0 at the neighbour's endplate; with ``rigid``
    = (R, t) (the levels above), the rest of the way it follows that rigid motion. Nodes in
    ``moved`` and the neighbour's are left alone."""
    disc = _disc_elements(out, disc_name)
    if not len(disc):
        return np.zeros(0, dtype=np.int64), np.zeros(0)
    dn = out.element_nodes(disc)
    neighbours = out.element_nodes(level_elements(out, neighbour))
    dn = dn[~moved[dn] & ~np.isin(dn, neighbours)]
    own = model.points[_endplate(out, level, "superior" if upper else "inferior")]
    other = model.points[_endplate(out, neighbour, "inferior" if upper else "superior")]
    p0 = model.points[dn]
    z = p0[:, 2]
    far, reach = _interpolate(other, other[:, 2], p0), _interpolate(own, own[:, 2], p0)
    if upper:
        w, zc = (far - z) / (far - reach), np.minimum(z, reach)
    else:
        w, zc = (z - far) / (reach - far), np.maximum(z, reach)
    w = np.clip(np.nan_to_num(w, nan=1.0, posinf=1.0, neginf=0.0), 0.0, 1.0)
    pts[dn, 2] = z + w * _body_motion(model, level, col, np.column_stack([p0[:, :2], zc]))
    if rigid is not None:
        R, t = rigid
        pts[dn] += (1.0 - w)[:, None] * (p0 @ R.T + t - p0)
    return dn, w


def _disc_elements(model: Model, disc: str) -> np.ndarray:
    """The elements of the disc ``disc`` (``"<upper>-<lower>"``): its annulus and nucleus, not
    the posterior ligaments that share its name (:func:`_follow_ligaments` moves those)."""
    got = [model.regions[f"{disc}/{p}"] for p in DISC if f"{disc}/{p}" in model.regions]
    return np.unique(np.concatenate(got)) if got else np.zeros(0, dtype=np.int64)


def _follow_ligaments(model: Model, out: Model, pts, disc: str) -> None:
    """Move the posterior ligaments of ``disc`` (in ``pts``) with the arches they join: their
    nodes on either level's bone have moved with it; the others take the harmonic extension of
    that motion over the ligament's mesh (each node the mean of its neighbours' motion, over the
    edges of its elements), so a ligament stretches or shortens smoothly between its
    attachments, without stress (a fracture moves the geometry; fem.ligaments)."""
    from scipy.sparse import coo_matrix, identity
    from scipy.sparse.csgraph import laplacian
    from scipy.sparse.linalg import spsolve

    names = [f"{disc}/{p}" for p in LIGAMENT if f"{disc}/{p}" in out.regions]
    if not names:
        return
    el = np.concatenate([out.regions[n] for n in names])
    rows = [b.conn[b.local(el)] for b in out.blocks]
    conn = np.concatenate([r for r in rows if len(r)])
    nodes, local = np.unique(conn, return_inverse=True)
    local = local.reshape(conn.shape)
    a, b = np.triu_indices(conn.shape[1], 1)
    i, j = local[:, a].ravel(), local[:, b].ravel()
    n = len(nodes)
    adj = coo_matrix((np.ones(2 * len(i)), (np.r_[i, j], np.r_[j, i])), shape=(n, n)).tocsr()
    adj.data[:] = 1.0  # an edge shared by elements counts once
    lap = laplacian(adj).tocsr()
    bone = np.zeros(out.n_nodes, dtype=bool)
    for level in disc.split("-"):
        bone[out.element_nodes(level_elements(out, level))] = True
    fixed = bone[nodes]
    if fixed.all() or not fixed.any():
        return
    d = pts[nodes] - model.points[nodes]
    free = ~fixed
    # a free piece no attachment reaches (none is built) would be singular: it stays put
    a_ff = lap[free][:, free] + 1e-9 * identity(int(free.sum()), format="csr")
    d[free] = spsolve(a_ff.tocsc(), -(lap[free][:, fixed] @ d[fixed])).reshape(-1, 3)
    pts[nodes[free]] = model.points[nodes[free]] + d[free]


def _endplate(model: Model, level: str, side: str) -> np.ndarray:
    nodes = model.node_sets.get(f"{level}/{side}")
    if nodes is None or not len(nodes):
        raise MeshError(f"node set {level}/{side} (the {side} endplate's nodes) is missing or "
                        "empty: the fracture moves the discs between endplates; build the model "
                        "with fem.meshes (annotate() names the endplates)")
    return nodes


def _interpolate(at, values, points, k: int = 4) -> np.ndarray:
    """Scalar ``values`` given at the nodes ``at`` (n, 3), interpolated at ``points`` (m, 3) by
    their x, y: inverse-distance weights over the ``k`` nearest in the transverse plane (a node
    straight above or below one of ``at`` takes its value)."""
    k = min(k, len(at))
    d, i = cKDTree(np.asarray(at)[:, :2]).query(np.asarray(points)[:, :2], k=k)
    d, i = d.reshape(len(points), k), i.reshape(len(points), k)
    w = 1.0 / (d + 1e-6)
    return (w * np.asarray(values)[i]).sum(axis=1) / w.sum(axis=1)


def _damage(out: Model, level: str, col: _Collapse, depth: float, factor: float,
            shell: bool) -> None:
    """The damaged band under the collapsed endplate(s): trabecular bone (``damaged``) and,
    with ``shell``, the cortex and bony endplates in it (``damaged_shell``,
    ``damaged_endplate``), their moduli times ``factor``."""
    trab = out.regions.get(f"{level}/trabecular")
    if trab is None:
        raise SetError(f"region {level}/trabecular not found")
    damaged = trab[col.in_band(_centroids(out, trab), depth)]
    if len(damaged):
        _move(out, damaged, f"{level}/damaged", factor=factor)
    if not shell:
        return
    parts = ["cortex", "endplate_superior"] + (["endplate_inferior"] if col.both_endplates
                                               else [])
    for part in parts:
        el = out.regions.get(f"{level}/{part}")
        if el is None or not len(el):
            continue
        hit = col.in_band(_centroids(out, el), depth)
        if hit.any():
            name = "damaged_shell" if part == "cortex" else "damaged_endplate"
            _move(out, el[hit], f"{level}/{name}", factor=factor, keep=f"{level}/{name}")


def _densify(intact: Model, out: Model, level: str, exponent: float, compaction: str) -> None:
    """Keep the bone mass of ``level``'s body through its collapse (``compress``'s
    ``conserve_mass``; :func:`_density_factors`), recorded in
    ``metadata["densification"][level]`` so that :func:`restore` can follow the height back;
    its ``"factors"`` are the modulus factors of its ``"elements"`` now (density factor ^
    exponent), which :func:`fem.strength.bone_damage_law` reads for the ``"original"``
    envelope."""
    e = in_range("density exponent", exponent, 0.0, lo_open=True, error=ParameterError)
    if compaction not in COMPACTIONS:
        raise ParameterError(f"compaction must be one of {', '.join(COMPACTIONS)}, got "
                             f"{compaction!r}")
    if level in out.metadata.get("densification", {}):
        raise MeshError(f"{level} was already fractured with conserve_mass: fracture it once")
    idx, exps, group, band = [], [], [], []
    for g, (parts, damaged, by_law) in enumerate(BODY_PARTS):
        for part in parts:
            el = out.regions.get(f"{level}/{part}")
            if el is not None and len(el):
                idx.append(el)
                exps.append(np.full(len(el), e if by_law else 1.0))
                group.append(np.full(len(el), g))
                band.append(np.full(len(el), part == damaged))
    if not idx:
        raise SetError(f"{level} has no body regions ({', '.join(_body_parts())}) to densify")
    rec = {"elements": np.concatenate(idx), "exponents": np.concatenate(exps),
           "group": np.concatenate(group), "band": np.concatenate(band),
           "compaction": compaction}
    rec["intact_volumes"] = element_volumes(intact)[rec["elements"]]
    rec["column"] = _columns(intact, rec["elements"])
    rec["factors"] = _density_factors(rec, element_volumes(out)[rec["elements"]])
    _scale_moduli(out, rec["elements"], rec["factors"])
    out.metadata.setdefault("densification", {})[level] = rec


def _body_parts() -> list[str]:
    """Every part of :data:`BODY_PARTS`."""
    return [p for parts, _, _ in BODY_PARTS for p in parts]


def _columns(model: Model, elements) -> np.ndarray:
    """A column id per element: its centre's (x, y) binned on the median element size (exactly a
    voxel mesh's columns: the collapse moves a level's nodes vertically)."""
    c = model.element_centres(elements)[:, :2]
    h = float(np.cbrt(np.median(element_volumes(model)[elements])))
    ij = np.floor((c - c.min(axis=0)) / h + 0.5).astype(np.int64)
    return np.unique(ij, axis=0, return_inverse=True)[1].ravel()


def _density_factors(rec: dict, volumes) -> np.ndarray:
    """Modulus factors (density factor ^ exponent) that keep each body element's intact mass
    at ``volumes``: "uniform", every element's density times V0 / V; "band", in each column
    (:func:`_columns`) each part (core, shell, endplates) keeps its mass by densifying its
    damaged band alone, the rest at its intact density, so the bone crushed in front of a wedge
    stays in front (a column without the part's band: uniform)."""
    V0, V = rec["intact_volumes"], np.asarray(volumes, dtype=float)
    rho = V0 / V
    if rec["compaction"] == "band":
        col = rec["column"]
        key = rec["group"] * (int(col.max()) + 1) + col
        order = np.argsort(key, kind="stable")
        bounds = np.flatnonzero(np.diff(key[order])) + 1
        for idx in np.split(order, bounds):
            band = rec["band"][idx]
            if band.any():
                b, rest = idx[band], idx[~band]
                rho[rest] = 1.0
                rho[b] = (V0[idx].sum() - V[rest].sum()) / V[b].sum()
    return rho ** rec["exponents"]


def _scale_moduli(model: Model, elements, factors) -> None:
    """Multiply the moduli of ``elements`` (isotropic E, or an orthotropic element's three
    Young's and three shear moduli) by ``factors`` (a scalar or one per element)."""
    elements = np.asarray(elements, dtype=np.int64)
    f = np.broadcast_to(np.asarray(factors, dtype=float), elements.shape)
    model.E[elements] = model.E[elements] * f
    ortho = model.orthotropic_mask()[elements]
    if ortho.any():
        model.ortho[np.ix_(elements[ortho], [0, 1, 2, 6, 7, 8])] *= f[ortho, None]


def _open_cleft(out: Model, level: str, d, thickness: float) -> None:
    """An intravertebral cleft: the damaged bone within ``thickness`` mm under the collapsed
    superior endplate, in the anterior 70 % of the depth and the middle 60 % of the width."""
    damaged = out.regions.get(f"{level}/damaged", np.zeros(0, np.int64))
    c = _centroids(out, damaged)
    dist, _ = cKDTree(out.points[out.node_sets[f"{level}/superior"]]).query(c)
    h = float(np.cbrt(np.median(element_volumes(out)[damaged]))) if len(damaged) else 0.0
    y_wall = 0.5 * d.depth * POSTERIOR_FLAT
    gap = (dist <= d.endplate + thickness + 0.5 * h) \
        & (c[:, 1] <= y_wall - 0.25 * d.depth) & (np.abs(c[:, 0]) <= 0.3 * d.width)
    if not gap.any():
        raise CleftError(f"no damaged bone of {level} lies within {thickness} mm of its superior "
                        "endplate to open a cleft in: raise cleft_thickness or damage_depth")
    _move(out, damaged[gap], f"{level}/cleft", E=CLEFT_MATERIAL[0], nu=CLEFT_MATERIAL[1])


def _breach_posterior_wall(out: Model, level: str, col: _Collapse, factor: float) -> None:
    """A burst fracture's breach of the posterior wall's cortex, between the pedicles, at 30-80 %
    of the height, with the damaged trabecular modulus."""
    d, z0 = col.d, col.z0
    cort = out.regions.get(f"{level}/cortex")
    cc = _centroids(out, cort)
    w_p, _ = d.pedicle
    y_wall = 0.5 * d.depth * POSTERIOR_FLAT
    hole = (np.abs(cc[:, 0]) <= 0.5 * w_p) & (cc[:, 1] >= y_wall - 3.0) \
        & (cc[:, 2] - z0 >= 0.3 * d.height) & (cc[:, 2] - z0 <= 0.8 * d.height)
    if hole.any():
        E_trab = float(np.median(out.E[out.regions[f"{level}/trabecular"]]))
        _move(out, cort[hole], f"{level}/posterior_wall_breach", E=E_trab * factor, nu=0.2)


def _record_kyphosis(out: Model, level: str, upper, R, t, moved_by=None,
                     arch_turn: float = 0.0) -> None:
    """``metadata["kyphosis"][level]`` = the tipped levels' rigid motion (R, t) from the intact
    model, and their anatomy moved with them (by ``moved_by`` = (R, t) of the motion from where
    the anatomy stands now, default the whole (R, t)); ``arch_turn_deg``: how far of it they
    turned about the arch below (:func:`_stop_on_arches`)."""
    motion = Motion(*(moved_by or (R, t)))
    out.anatomy = motion.anatomy(out.anatomy, upper)
    out.metadata.setdefault("kyphosis", {})[level] = {
        "rotation": R, "translation": t, "angle_deg": _angle(R), "levels": list(upper),
        "arch_turn_deg": float(arch_turn)}


def restore(model: Model, level: str, share: float) -> Model:
    """A copy of ``model`` with ``share`` (0..1) of ``level``'s recorded collapse undone (a
    kyphoplasty's height restoration): the body and its discs move back by that share of the
    collapse field, and the levels a wedge's kyphosis tipped move by the rigid motion that best
    carries the endplate's intact nodes to their restored positions, shifted along the axis so
    that the disc above keeps its volume, as in :func:`compress`, the disc above on the
    fracture's blend between its endplate and them (:func:`_placing`; so they stay rigid, and
    their anatomy and ``metadata["kyphosis"]`` follow), or, where they turned about the arch below
    (``arch_turn_deg``), their own nodes to that share of their way back; the level's own
    anatomy, where ``compress`` carried it with the collapse, is carried back with the bone.
    ``metadata["collapse"][level]`` keeps what is left of the collapse. The geometry is checked
    afterwards by the caller."""
    collapse = model.metadata.get("collapse", {})
    if level not in collapse:
        raise MeshError(f"{level} has no recorded fracture to restore (fracture it with "
                        "fem.meshes.pathology.compress first)")
    s = float(share)
    if not (0.0 <= s <= 1.0):
        raise ParameterError(f"the share of the height to restore must lie in 0..1, got {share}")
    out = model.copy()
    col = np.asarray(collapse[level], dtype=float)
    intact = model.points - col
    pts = model.points - s * col
    k = model.metadata.get("kyphosis", {}).get(level)
    if k is not None:
        up = _nodes_above(model, k["levels"])
        placed = _placing(model, level, intact, pts, up, k, s)
        if k.get("arch_turn_deg", 0.0) > 0.0:
            # they turned about the arch below, which the endplate does not carry: they go
            # back by the rigid motion nearest their own share of the way
            R, t = _rigid_fit(intact[up], pts[up])
        else:
            sup = model.node_sets[f"{level}/superior"]
            R, t = _rigid_fit(intact[sup], pts[sup])
        # then shifted along the axis until the disc above has its intact volume, as compress
        # did (without the shift a tet10 disc's thin elements inverted)
        t = t + np.array([0.0, 0.0, _keep_volume(model, placed, intact, R, t,
                                                 f"{k['levels'][-1]}-{level}")])
        pts = placed(R, t)
        # their anatomy was moved by the old kyphosis: move it on by the difference
        Rc = R @ np.asarray(k["rotation"]).T
        _record_kyphosis(out, level, k["levels"], R, t,
                         moved_by=(Rc, t - Rc @ np.asarray(k["translation"])),
                         arch_turn=(1.0 - s) * k.get("arch_turn_deg", 0.0))
    out.points = pts
    if level in model.metadata.get("anatomy_carried", ()):  # compress's carry_anatomy
        out.anatomy = out.anatomy.replaced(carried_anatomy(model, pts, level))
    out.metadata["collapse"] = {**collapse, level: pts - intact}
    dens = model.metadata.get("densification", {}).get(level)
    if dens is not None:  # the body's density follows its volume back (compress's conserve_mass)
        idx = dens["elements"]
        factors = _density_factors(dens, element_volumes(out)[idx])
        change = factors / dens["factors"]  # the moduli hold the factors compress recorded
        body = [model.regions.get(f"{level}/{p}", []) for p in _body_parts()]
        still = np.isin(idx, np.concatenate(body))  # not since made cement or a cleft
        _scale_moduli(out, idx[still], change[still])
        out.metadata["densification"][level]["factors"] = factors
    return out


def _placing(model: Model, level: str, intact, pts, up, k: dict, s: float):
    """A function (R, t) -> the points of a restoration of ``s`` of ``level``'s collapse: the
    levels above (nodes ``up``) at (R, t) from ``intact``, the disc above blended between its
    endplate's motion, ``1 - s`` of what the fracture gave it, and that rigid motion, with the
    weights the fracture blended it by (``metadata["disc_blend"]``; :func:`_follow_disc`), so
    that its nodes move with the levels above as it turns back (a straight line from where the
    fracture put them left tet10 elements inverted); the rest at ``pts``."""
    blend = model.metadata.get("disc_blend", {}).get(level)
    R0, t0 = np.asarray(k["rotation"]), np.asarray(k["translation"])

    def placed(R, t):
        p = pts.copy()
        p[up] = intact[up] @ R.T + t
        if blend is not None and len(blend["nodes"]):
            dn, w = blend["nodes"], np.asarray(blend["w"])[:, None]
            x0 = intact[dn]
            body = model.points[dn] - x0 - (1.0 - w) * (x0 @ R0.T + t0 - x0)
            p[dn] = x0 + (1.0 - s) * body + (1.0 - w) * (x0 @ R.T + t - x0)
        return p

    return placed


def _keep_volume(model: Model, placed, intact, R, t, disc_name: str) -> float:
    """The axial shift (mm) of the levels above, at (R, t), that gives the disc ``disc_name``
    its volume on ``intact``, the points for a motion (R, t) being ``placed(R, t)`` (the
    fracture's :func:`_tipped`, a restoration's :func:`_placing`): only z moves, so the volume
    is linear in the shift; 0 where the disc has no elements or does not change."""
    disc = _disc_elements(model, disc_name)
    if not len(disc):
        return 0.0
    vol = [_volume(model, placed(R, t + np.array([0.0, 0.0, dz])), disc) for dz in (0.0, 1.0)]
    if vol[1] == vol[0]:
        return 0.0
    return (_volume(model, intact, disc) - vol[0]) / (vol[1] - vol[0])


#: nodes in each local linear fit of :func:`carried_anatomy` (a voxel's corners; 27 nodes fit a
#: biconcave collapse's curved motion twice as far off, 0.3 mm at 2 mm voxels)
CARRY_NODES = 8


def carried_anatomy(model: Model, moved, level: str) -> LevelAnatomy:
    """``model.anatomy[level]`` carried by the motion of its own bone, from ``model.points`` to
    ``moved`` (n_nodes, 3): each anatomical point moves as a linear
    fit (least squares) of the displacements of the level's :data:`CARRY_NODES` nearest nodes
    does, exact for a motion linear in space (a uniform crush); a transpedicular path keeps its
    entry and the point where it crosses the body's frontal plane through the centre, each
    carried, so that it still runs through the pedicle and aims at the same bone; the height
    scales with the distance between the endplate centres."""
    anat = model.anatomy[level]
    nodes = model.element_nodes(level_elements(model, level))
    if not len(nodes):
        return anat
    x0 = np.asarray(model.points, dtype=float)[nodes]
    u = np.asarray(moved, dtype=float)[nodes] - x0
    tree = cKDTree(x0)
    k = min(CARRY_NODES, len(nodes))

    def point(p):
        p = np.asarray(p, dtype=float)
        _, i = tree.query(p, k=k)
        i = np.atleast_1d(i)
        X = np.c_[np.ones(len(i)), x0[i] - p]
        return p + np.linalg.lstsq(X, u[i], rcond=None)[0][0]

    ant = anat.frame().anterior
    axes = {}
    for side, (e, d) in anat.pedicle_axes.items():
        w = e + ((anat.centre - e) @ ant) / (d @ ant) * d
        e1, w1 = point(e), point(w)
        axes[side] = (e1, (w1 - e1) / np.linalg.norm(w1 - e1))
    sup, inf = point(anat.superior_centre), point(anat.inferior_centre)
    span = np.linalg.norm(anat.superior_centre - anat.inferior_centre)
    return dataclasses.replace(
        anat, centre=point(anat.centre), superior_centre=sup, inferior_centre=inf,
        pedicle_axes=axes, height=anat.height * np.linalg.norm(sup - inf) / span)


def _angle(R: np.ndarray) -> float:
    """The angle (degrees) of a rotation matrix."""
    return float(np.degrees(np.arccos(np.clip(0.5 * (np.trace(R) - 1.0), -1.0, 1.0))))


def _rigid_fit(P0: np.ndarray, P1: np.ndarray):
    """(R, t) of the proper rigid motion x -> R x + t that carries the points P0 closest to P1
    in least squares (Kabsch)."""
    c0, c1 = P0.mean(axis=0), P1.mean(axis=0)
    H = (P0 - c0).T @ (P1 - c1)
    U, _, Vt = np.linalg.svd(H)
    D = np.diag([1.0, 1.0, np.sign(np.linalg.det(Vt.T @ U.T))])
    R = Vt.T @ D @ U.T
    return R, c1 - R @ c0


def _nodes_above(model: Model, upper_levels) -> np.ndarray:
    """The nodes of the levels ``upper_levels`` and of the discs between them."""
    names = set(upper_levels)
    regions = []
    for r in model.regions:
        owner = r.split("/", 1)[0]
        if owner in names or ("-" in owner and set(owner.split("-")) <= names):
            regions.append(model.regions[r])
    if not regions:
        return np.zeros(0, dtype=np.int64)
    return model.element_nodes(np.concatenate(regions))


def _move(model: Model, elements, region: str, *, factor: float | None = None, E=None, nu=None,
          keep: str | None = None):
    """Move elements from their regions into ``region`` (new, or extended when it is ``keep``)
    and set its material."""
    elements = np.asarray(elements, dtype=np.int64)
    if not keep and region in model.regions:  # a new region: what it held is not kept
        model.regions[region] = np.zeros(0, np.int64)
    model.move_elements(elements, region)
    if factor is not None:
        _scale_moduli(model, elements, factor)
    else:
        model.set_material(region, E=E, nu=nu)


#: where :func:`open_breach` opens the shell: the basivertebral foramen (the venous opening in
#: the posterior wall, midline, mid-height) or a fracture line through either bony endplate
BREACH_SITES = ("basivertebral", "superior", "inferior")


@dataclass(frozen=True)
class Breach:
    """An opening of a level's bony shell (:func:`open_breach`): site, diameter (mm), position
    (0 posterior .. 1 anterior, for an endplate), and the elements opened."""

    level: str
    site: str
    diameter_mm: float
    position: float
    elements: int


def open_breach(model: Model, level: str, site: str, diameter_mm: float, *,
                position: float = 0.5) -> Model:
    """A copy of ``model`` with an opening of ``diameter_mm`` through ``level``'s bony shell,
    through which cement injected into the body can leave it.

    ``site``: ``"basivertebral"``, the basivertebral foramen, the opening in the posterior wall
    (midline, mid-height) through which the basivertebral veins leave the body, the cortex there
    becoming region ``"<level>/basivertebral_foramen"``; or ``"superior"`` / ``"inferior"``, a
    fracture line through that bony endplate on the midline at ``position`` of the body's depth
    (0 posterior wall .. 1 anterior wall), region ``"<level>/endplate_breach"``, next to the disc.
    The opened elements take soft tissue (the cleft's material, E 1 MPa, nu 0.45: an assumption,
    like the cleft's), so they barely carry load, and the cement filling
    (:func:`fem.augment.pvp`) can enter them: cement that reaches one has left the body, and is
    reported as a leak at "basivertebral foramen" or "endplate into <disc>". The elements are
    those of the shell (cortex, or bony endplate and its damaged band) whose centroids lie within
    ``diameter_mm / 2`` of the opening's axis in the level's frame (:func:`fem.anatomy.
    level_frame`), and at least the one nearest to it, so that a small foramen stays open on a
    coarse grid. The size is an input: no measured default is assumed here."""
    from ..anatomy import level_frame

    if site not in BREACH_SITES:
        raise ParameterError(f"breach site must be one of {', '.join(BREACH_SITES)}, got {site!r}")
    if not (np.isfinite(diameter_mm) and 0.0 < diameter_mm <= 20.0):
        raise ParameterError(f"breach diameter must lie in (0, 20] mm, got {diameter_mm}")
    if not 0.0 <= position <= 1.0:
        raise ParameterError(f"breach position must lie in 0..1 (posterior..anterior), got "
                             f"{position}")
    f = level_frame(model, level)
    parts = (("cortex", "damaged_shell") if site == "basivertebral" else
             (f"endplate_{site}", "damaged_endplate"))
    shell = [model.regions[f"{level}/{p}"] for p in parts if f"{level}/{p}" in model.regions]
    shell = np.concatenate(shell) if shell else np.zeros(0, np.int64)
    if not len(shell):
        raise SetError(f"level {level} has no {' or '.join(parts)} region to open a "
                       f"{site} breach in")
    rel = _centroids(model, shell) - f.centre
    ax, ant, lat = rel @ f.axial, rel @ f.anterior, rel @ f.lateral
    if site == "basivertebral":
        # the posterior wall at the midline: the shell's most posterior elements near lat = 0
        h = _spacing(model, shell)
        mid = np.abs(lat) <= max(0.5 * diameter_mm, 1e-9) + h
        wall = ant <= (ant[mid].min() if mid.any() else ant.min()) + h
        dist = np.hypot(lat, ax)
        keep = wall & (dist <= 0.5 * diameter_mm)
        nearest = np.argmin(np.where(wall, dist, np.inf))
    else:
        body = [model.regions[f"{level}/{p}"] for p in ("trabecular", "damaged")
                if f"{level}/{p}" in model.regions]
        core = (_centroids(model, np.concatenate(body)) - f.centre) @ f.anterior
        side = ax > 0 if site == "superior" else ax < 0
        a0 = core.min() + position * (core.max() - core.min())
        dist = np.hypot(lat, ant - a0)
        keep = side & (dist <= 0.5 * diameter_mm)
        nearest = np.argmin(np.where(side, dist, np.inf))
    keep[nearest] = True
    hit = shell[keep]
    out = model.copy()
    region = f"{level}/{'basivertebral_foramen' if site == 'basivertebral' else 'endplate_breach'}"
    _move(out, hit, region, E=CLEFT_MATERIAL[0], nu=CLEFT_MATERIAL[1], keep=region)
    out.metadata.setdefault("breaches", []).append(
        Breach(level, site, float(diameter_mm), float(position), int(len(hit))))
    return out


def _spacing(model: Model, elements) -> float:
    """A typical element size (mm) of ``elements``: the cube root of their median volume."""
    return float(np.median(element_volumes(model)[elements])) ** (1.0 / 3.0)


@dataclass(frozen=True)
class Lesion:
    """An ellipsoidal lesion: kind "osteolytic" or "haemangioma", centre (mm, model frame),
    semi-axes (mm)."""

    level: str
    kind: str
    centre: tuple
    semi_axes: tuple
    breach_cortex: bool = False


def add_lesion(model: Model, level: str, kind: str, centre, semi_axes, *,
               breach_cortex: bool = False, E: float = 10.0, nu: float = 0.45,
               factor: float = 0.5) -> Model:
    """A copy of ``model`` with an osteolytic metastasis or a haemangioma in ``level`` (see the
    module docstring). ``centre`` in the model frame (mm) or relative to the level's body centre
    when given as a string "centre"; ``semi_axes`` (a, b, c) mm."""
    if kind not in ("osteolytic", "haemangioma"):
        raise ParameterError(f"lesion kind must be 'osteolytic' or 'haemangioma', got {kind!r}")
    anat = _anatomy(model, level)
    ctr = np.asarray(anat.centre if isinstance(centre, str) else centre, dtype=float)
    ax = np.asarray(semi_axes, dtype=float)
    if ctr.shape != (3,) or ax.shape != (3,) or (ax <= 0).any():
        raise ParameterError("lesion centre must be (x, y, z) mm and semi_axes three lengths > 0 mm")
    out = model.copy()
    parts = ["trabecular", "damaged"] + (["cortex"] if breach_cortex and kind == "osteolytic"
                                          else [])
    cand = [out.regions[f"{level}/{p}"] for p in parts if f"{level}/{p}" in out.regions]
    elems = np.concatenate(cand) if cand else np.zeros(0, np.int64)
    c = _centroids(out, elems)
    inside = (((c - ctr) / ax) ** 2).sum(axis=1) <= 1.0
    hit = elems[inside]
    if len(hit) == 0:
        raise MeshError(f"the lesion at {tuple(ctr)} with semi-axes {tuple(ax)} mm contains no "
                        f"trabecular element of {level}: move it into the body or enlarge it")
    if kind == "osteolytic":
        _move(out, hit, f"{level}/lesion", E=E, nu=nu)
    else:
        _move(out, hit, f"{level}/haemangioma", factor=factor)
    out.metadata.setdefault("lesions", []).append(
        Lesion(level, kind, tuple(ctr), tuple(ax), breach_cortex))
    return out
