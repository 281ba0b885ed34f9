"""Predictions from a solved vertebra or segment model, per level, and comparisons of states.

Units: mm, N, MPa; volumes in mL where the clinic uses them. Every length, force and angle is
measured in the level's anatomical frame, built from ``model.anatomy[level]`` vectors
only, so the numbers do not change under a rigid motion of the whole model
(:func:`fem.meshes.transform.rigid_transform`):

* axial ``e_ax`` = normalise(superior_centre - inferior_centre);
* anterior ``e_ant`` = the part of normalise(left + right pedicle direction) orthogonal to
  ``e_ax`` (the pedicle directions point into the body, i.e. anteriorly);
* lateral ``e_lat = e_ax x e_ant`` (the patient's left).

Failure criteria (reference/biomechanics.md, "Yield and failure"):

* Pistoia: effective strain ``sqrt(2 SED / E)`` per element over the level's body bone (without
  the bony endplates: see :data:`BODY_PARTS`); failure
  load = applied load x 0.007 / (effective strain at the 98th volume percentile), i.e. the load
  at which 2 % of the bone volume exceeds 0.7 % strain (Pistoia et al. 2002, Bone 30:842, as in
  the Numerics88 n88tools defaults).
* Principal strain: the asymmetric yield strains of vertebral trabecular bone, 0.84 % in
  compression and 0.78 % in tension (Kopperdahl & Keaveny 1998, J Biomech 31:601); per element
  ``r = max(-eps_min / 0.0084, eps_max / 0.0078)`` over the trabecular-type bone; failure load =
  load / (98th volume percentile of r). The 2 % rule is carried over from Pistoia: an
  ASSUMPTION (the yield strains are tissue-level; no whole-body calibration of this criterion
  is used here).
* Damaged bone (a fracture's band, its damaged shell and endplate): both criteria read its
  strain over its damage history ``kappa0`` (:func:`fem.strength.damage_history`, the pushover's
  own law): crushed bone reloads along its reduced modulus up to ``kappa0`` times its yield
  strain (4.3 with the defaults) before it yields again, so 0.7 % of strain in it is not a new
  failure. Until 2026-12-07 evening they read its raw strain: the band's 0.14 of the modulus
  gave it about seven times the strain of the bone around it, and it set the fractured level's
  98th percentile (the canonical L2's Pistoia strength fell by 68 % with the fracture, where the
  pushover falls by 3 % and Wegrzyn et al. 2011 measured 11 +- 19 %).
* Factor of risk = applied load / strength; > 1 predicts fracture (Bouxsein et al. 2006,
  J Bone Miner Res 21:1475).

The headline ``strength_n`` and ``factor_of_risk`` (:func:`headline_strength`) are the
nonlinear strength where a damage pushover of the level was run (:func:`add_pushover`,
:func:`fem.strength.pushover`: the peak of its force-displacement curve) and the Pistoia proxy
otherwise; ``strength_method`` names which, row by row. The per-method columns stay beside
them: ``strength_pistoia_n`` / ``factor_of_risk_pistoia``, ``strength_strain_n`` /
``factor_of_risk_strain``, ``strength_pushover_n`` / ``factor_of_risk_pushover``. (Before the
pushover, ``factor_of_risk`` was the Pistoia one; it still is wherever no pushover ran.)

Both criteria are linear: the strength is a load scaled by a strain ratio, so it does not
depend on the load applied, only on its direction and distribution. Volume percentiles are
interpolated between the elements' cumulative-volume midpoints, so they change continuously
with the field.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from .anatomy import (  # noqa: F401 (public here too)
    DEFAULT_RIM,
    HEIGHT_BAND,
    LevelFrame,
    body_heights,
    endplate_nodes,
    level_frame,
    level_height,
)
from .assembly import element_centroids, element_volumes
from .errors import ModelError, SetError
from .loads import RigidPlate
from .nonlinear_result import FIRST_PEAK_DROP, OFFSET_YIELD, reached_at
from .parts import (
    CEMENT_IN_BODY,
    INTERFACE_BONE,
    LIGAMENT,
    SHARE_GROUPS,
    STRAIN_BODY,
    STRAIN_TRABECULAR,
    regions_of,
    split,
)
from .result import mean_pressure, von_mises

#: parts of a level's vertebral body that count as bone for the Pistoia criterion: not the
#: posterior elements, solid cement, leaked cement, lesions or discs, and not the bony
#: endplates. The endplates (0.25 mm) are represented by elements thicker than they are, with
#: the modulus scaled down by thickness / element size (voxel form) or by a layer half an element
#: thick (tet10): that keeps their in-plane stiffness, but their through-thickness strain under
#: the disc is inflated by about element size / thickness, and with them in, the 98th percentile
#: was set by endplate voxels alone (intact L1-L3 at 2 mm: Phi 1.19 at 500 N). The cortical wall
#: is loaded in its plane, where the scaled layer's strain is the physical one, so it stays. The
#: burst fracture's ``posterior_wall_breach`` is the body's damaged cortex, so it counts too.
BODY_PARTS = STRAIN_BODY
#: trabecular-type parts for the principal-strain criterion
TRABECULAR_PARTS = STRAIN_TRABECULAR
CEMENT_PARTS = CEMENT_IN_BODY
#: SHARE_GROUPS (load-share groups) and INTERFACE_BONE: fem.parts

PISTOIA_STRAIN = 0.007
PISTOIA_VOLUME = 0.02
YIELD_COMPRESSION = 0.0084
YIELD_TENSION = 0.0078

#: the columns of a level's damage pushover (:func:`add_pushover`; NaN where none was run):
#: its strength (N, the level's strength within the segment: in a study that stops at the first
#: failure, the first of a fall of 2 % (``first_failure_drop``) below the curve's running
#: maximum and its offset yield (``first_failure_offset``, 0.2 % of the level's height); else
#: the curve's largest force), the level's deformation where the curve reached that strength
#: (mm: its shortening, plus rotation x moment / force under a combined load; the column keeps
#: its old name), the energy to there (mJ), applied
#: load / strength, 1.0 where the curve fell after its peak, flattened to a plateau or passed
#: its offset yield (0.0: the analysis stopped first and the strength is a lower bound), the
#: force at the curve's first fall of 2 % (N: its running maximum there, as a cadaver test's
#: first drop; the peak load where it never fell,
#: :attr:`~fem.nonlinear_result.NonlinearResult.first_peak_load`), and the force where the curve
#: crosses its initial stiffness's line shifted by 0.2 % of the level's height, or by the
#: offset the strength was read with where one was given (N, the offset yield,
#: :data:`OFFSET_YIELD`; NaN where the pushover stopped before it, docs/nonlinear.md),
#: and what set the strength (text, :data:`STRENGTH_READINGS`)
PUSHOVER_COLUMNS = ("strength_pushover_n", "displacement_at_peak_mm", "energy_to_failure_mj",
                    "factor_of_risk_pushover", "pushover_peak_reached", "strength_first_peak_n",
                    "strength_offset_yield_n", "strength_pushover_by")
#: what ``strength_pushover_n`` was read at: the curve's fall (its running maximum there), its
#: offset yield (the force at the crossing), its plateau (a limit load), or the pushover's
#: displacement or step cap with the curve still rising (a lower bound)
STRENGTH_READINGS = ("fall", "offset", "plateau", "cap")
#: how a row's headline ``strength_n`` was found: the peak of a damage pushover of that level
#: where one was run (:func:`add_pushover`), else the linear Pistoia proxy
STRENGTH_METHODS = ("pushover", "pistoia")
#: the headline columns (:func:`headline_strength`): the level's strength (N) by
#: ``strength_method``, and the factor of risk from it (load / strength)
HEADLINE_COLUMNS = ("strength_n", "factor_of_risk", "strength_method")
COLUMNS = (
    "level", "load_n", "stiffness_n_per_mm", "rotational_stiffness_nm_per_deg",
    ) + HEADLINE_COLUMNS + (
    "strength_pistoia_n", "strength_strain_n",
    "factor_of_risk_pistoia", "factor_of_risk_strain", "endplate_bulge_superior_mm",
    "endplate_bulge_inferior_mm", "disc_pressure_mpa", "interface_stress_mpa",
    "load_share_cortex", "load_share_trabecular", "load_share_cement", "height_anterior_mm",
    "height_posterior_mm", "wedge_angle_deg", "cement_placed_ml", "fill_fraction", "leak_ml",
    "leak_locations", "cement_contact_superior", "cement_contact_inferior",
    "disc_rotation_deg", "ligament_force_n",
) + PUSHOVER_COLUMNS
#: former column names kept one release beside :data:`COLUMNS` (old name: the column it copies);
#: ``cement_volume_ml`` is the *requested* volume in a study (its spec parameter), so the placed
#: volume a level holds is ``cement_placed_ml``
DEPRECATED_COLUMNS = {"cement_volume_ml": "cement_placed_ml"}


class MetricsError(ModelError):
    """A metric or comparison that cannot be computed from what it was given."""


#: the rotation across a disc (deg) up to which a linear (small-strain) answer's kinematics
#: hold: a rigid rotation theta, linearised, stretches the body by about theta^2 / 2, which
#: reaches bone's compressive yield strain (0.84 %) at 7.4 degrees (the limit
#: fem.finite_strain.MAX_PLATE_ROTATION puts on a rigid plate for the same reason)
SMALL_ROTATION_DEG = float(np.degrees(np.sqrt(2.0 * YIELD_COMPRESSION)))


class SmallStrainWarning(UserWarning):
    """A linear answer whose segment turns beyond :data:`SMALL_ROTATION_DEG` across a disc."""


def beyond_small_strain(table, order=None) -> str | None:
    """Which discs of a :func:`level_metrics` table turn by more than
    :data:`SMALL_ROTATION_DEG` (``"L1-L2 51 deg, ..."``), or None. ``order``: the model's
    levels, cranial to caudal (default the table's, which names the disc below each level
    where the table holds every level)."""
    if "disc_rotation_deg" not in table:
        return None
    order = list(table["level"]) if order is None else list(order)
    rows = [(str(lv), float(a)) for lv, a in zip(table["level"], table["disc_rotation_deg"])
            if a is not None and np.isfinite(a) and a > SMALL_ROTATION_DEG]
    return ", ".join(f"{lv}-{order[order.index(lv) + 1]} {a:.0f} deg" for lv, a in rows
                     if lv in order and order.index(lv) + 1 < len(order)) or None


# ---------------------------------------------------------------------- helpers

def weighted_quantile(values, weights, q: float) -> float:
    """The ``q`` quantile of ``values`` weighted by ``weights`` (e.g. element volumes),
    interpolated linearly between the cumulative-weight midpoints of the sorted values."""
    v = np.asarray(values, dtype=float)
    w = np.asarray(weights, dtype=float)
    if not len(v):
        return math.nan
    order = np.argsort(v, kind="stable")
    v, w = v[order], w[order]
    cw = np.cumsum(w) - 0.5 * w
    return float(np.interp(q * w.sum(), cw, v))


def _parts(model, level: str, parts) -> np.ndarray:
    sel = [model.regions[f"{level}/{p}"] for p in parts if f"{level}/{p}" in model.regions]
    return np.unique(np.concatenate(sel)) if sel else np.zeros(0, dtype=np.int64)


def _touching(model, elements: np.ndarray, node_mask: np.ndarray) -> np.ndarray:
    """The elements among ``elements`` that have a node where ``node_mask`` is True."""
    keep = np.zeros(len(elements), dtype=bool)
    for b in model.blocks:
        inb = b.holds(elements)
        keep[inb] = node_mask[b.conn[elements[inb] - b.start]].any(axis=1)
    return elements[keep]


def _node_mask(model, elements) -> np.ndarray:
    mask = np.zeros(model.n_nodes, dtype=bool)
    mask[model.element_nodes(elements)] = True
    return mask


def mesh_size(model, volumes) -> float:
    """The model's element size (mm): the voxel size, the tet mesh size, or the cube root of the
    median element volume (mm^3) when neither is recorded."""
    h = model.metadata.get("voxel_size") or model.metadata.get("mesh", {}).get("mesh_size")
    return float(h) if h else float(np.median(volumes) ** (1.0 / 3.0))


def _records(model, level: str) -> list:
    return [a for a in model.metadata.get("augmentations", []) if _get(a, "level") == level]


def _get(record, name: str, default=None):
    if isinstance(record, Mapping):
        return record.get(name, default)
    return getattr(record, name, default)


def _axial_stress(stress: np.ndarray, e: np.ndarray) -> np.ndarray:
    """e . sigma . e for Voigt-ordered stresses (n, 6): xx, yy, zz, xy, yz, xz."""
    return (stress[:, 0] * e[0] ** 2 + stress[:, 1] * e[1] ** 2 + stress[:, 2] * e[2] ** 2
            + 2.0 * (stress[:, 3] * e[0] * e[1] + stress[:, 4] * e[1] * e[2]
                     + stress[:, 5] * e[0] * e[2]))


@dataclass(frozen=True)
class PlateLoad:
    """The loaded (not prescribed) force (N) and moment (N mm) of a rigid loading plate and the
    point (mm) the moment is taken about."""

    reference: np.ndarray
    force: np.ndarray
    moment: np.ndarray

    def moment_about(self, point) -> np.ndarray:
        """The plate's load as a moment (N mm) about ``point``: M + (reference - point) x F."""
        return self.moment + np.cross(self.reference - np.asarray(point, float), self.force)


def plate_loads(model) -> list[PlateLoad]:
    """The rigid plates' loads of ``model`` (:class:`fem.RigidPlate` conditions): components that
    are prescribed (displacement, rotation) carry a reaction, not a load, and count as zero."""
    out = []
    for c in model.conditions:
        if not isinstance(c, RigidPlate):
            continue
        free = np.array([v is None for v in tuple(c.displacement) + tuple(c.rotation)])
        ref = (np.asarray(c.reference, float) if c.reference is not None
               else model.points[model.nodes_of(c.target)].mean(axis=0))
        out.append(PlateLoad(ref, np.where(free[:3], np.asarray(c.force, float), 0.0),
                             np.where(free[3:], np.asarray(c.moment, float), 0.0)))
    return out


def applied_moment(model) -> np.ndarray:
    """The moment (N mm, (3,)) the model's loading plates apply about their reference points:
    non-zero for the bending and axial-rotation load cases (flexion, extension, lateral bending,
    axial rotation), zero for axial compression."""
    return sum((p.moment for p in plate_loads(model)), np.zeros(3))


def endplate_rotation(model, u, node_set: str) -> np.ndarray:
    """Rotation vector (rad, (3,)) of a node set: the least-squares rigid fit of its nodes'
    displacements ``u`` (n_nodes, 3), u_i = t + theta x r_i (small rotations, every node weighted
    alike), with r_i the node's position from the set's centroid. Centred, the translation
    drops out and theta = J^-1 sum(r_i x u_i), J = sum(|r_i|^2 I - r_i r_i^T) the set's
    inertia tensor: for a flat endplate the tilt is the slope of a plane fitted to the axial
    displacements, so a bulge symmetric about the centroid does not tilt it."""
    nodes = endplate_nodes(model, node_set)
    r = model.points[nodes] - model.points[nodes].mean(axis=0)
    J = (r * r).sum() * np.eye(3) - r.T @ r
    return np.linalg.solve(J, np.cross(r, np.asarray(u)[nodes]).sum(axis=0))


def _load_case_name(model) -> str:
    """The load case's name: recorded on the model by fem.meshes.loadcases, else the one
    ``"load:<case>"`` condition (a model read from a deck), else "default"."""
    rec = model.metadata.get("load_case")
    if isinstance(rec, dict) and rec.get("name"):
        return str(rec["name"])
    names = [c.name[5:] for c in model.conditions
             if isinstance(getattr(c, "name", None), str) and c.name.startswith("load:")]
    return names[0] if len(names) == 1 else "default"


class _Fields:
    """Host copies of the result fields the metrics use, computed once per result."""

    def __init__(self, result):
        h = result.backend.to_host
        m = result.model
        self.model = m
        self.result = result
        self.u = np.asarray(h(result.displacement))
        self.stress = np.asarray(h(result.stress))
        self.physical_stress = np.asarray(h(result.physical_stress))
        self.volume = np.asarray(h(result.element_volume))
        self.sed = np.asarray(h(result.strain_energy_density))
        self.pstrain = np.asarray(h(result.principal_strain))
        self.applied = np.asarray(h(result.applied_total()), dtype=float)[:3]
        self.centroids = element_centroids(m)
        self.plates = plate_loads(m)
        moment = sum((p.moment for p in self.plates), np.zeros(3))
        norm = float(np.linalg.norm(moment))
        #: the axis of the applied moment, None under axial compression
        self.moment_axis = moment / norm if norm > 0.0 else None
        #: whether the levels are joined by posterior ligaments (fem.ligaments)
        self.ligaments = bool(regions_of(m, LIGAMENT))

    @cached_property
    def strain_history(self) -> np.ndarray:
        """Per element, the strain (in units of bone's yield strain) up to which it reloads
        elastically: the damage history of a fracture's damaged bone
        (:func:`fem.strength.damage_history`), 1 elsewhere. Damaged bone reloads along its
        reduced modulus up to that strain before it yields again, so a strain criterion reads
        its strain over it (:data:`PISTOIA_STRAIN`, :data:`YIELD_COMPRESSION`)."""
        if not self.model.metadata.get("fractures"):
            return np.ones(self.model.n_elements)
        from .strength import damage_history

        h = damage_history(self.model)
        return np.where(h > 0.0, h, 1.0)

    @cached_property
    def _ligament_forces(self) -> dict:
        from .ligaments import ligament_forces

        return ligament_forces(self.model, self.stress, self.volume) if self.ligaments else {}

    def ligament_force(self, level: str, below: str) -> float:
        """The tension (N) of the posterior ligaments between ``level`` and ``below`` together
        (:func:`fem.ligaments.ligament_forces`); NaN where they have none."""
        own = [f for name, f in self._ligament_forces.items()
               if split(name)[0] == f"{level}-{below}"]
        return float(sum(own)) if own else math.nan

    @cached_property
    def face_pairs(self):
        """The model's face-sharing element pairs (:func:`fem.topology.face_neighbours`), or
        None where no level holds cement in its body (nothing to find contacts of)."""
        from .topology import face_neighbours

        if not any(r.endswith(tuple(f"/{p}" for p in CEMENT_IN_BODY)) and len(e)
                   for r, e in self.model.regions.items()):
            return None
        return face_neighbours(self.model)


# ---------------------------------------------------------------------- per-level metrics

#: the endplate centre where the bulge is read: normalised elliptic radius up to this value
BULGE_CENTRE = 0.5


def endplate_deflection(result, level: str, side: str):
    """(node indices, deflection into the body (mm), rim mask, centre mask) of the endplate node
    set ``"<level>/<side>"`` (side "superior" or "inferior"): the axial displacement relative to
    the least-squares plane through the rim nodes' axial displacements, positive into the body.
    Rim: normalised elliptic radius (about the set's centroid, in the level frame) >= 1 - 2 rim /
    min(width, depth); centre: radius <= :data:`BULGE_CENTRE`. ``endplate_bulge_*_mm`` is the
    largest deflection over the centre: reading it there keeps the steps of a voxel endplate near
    the pedicles (rim-plane artefacts, not the endplate's bending) out of the metric."""
    m = result.model
    f = level_frame(m, level)
    nodes = endplate_nodes(m, f"{level}/{side}")
    rel = m.points[nodes] - m.points[nodes].mean(axis=0)
    lat, ant = rel @ f.lateral, rel @ f.anterior
    rho = np.hypot(lat / (0.5 * f.width), ant / (0.5 * f.depth))
    rim = rho >= 1.0 - 2.0 * f.rim / min(f.width, f.depth)
    centre = (rho <= BULGE_CENTRE) & ~rim
    if rim.sum() < 3 or not centre.any():
        raise MetricsError(f"{level}/{side}: too few rim or centre nodes for a bulge (rim "
                           f"{f.rim} mm on a {f.width} x {f.depth} mm endplate)")
    w = np.asarray(result.backend.to_host(result.displacement))[nodes] @ f.axial
    A = np.stack([np.ones(rim.sum()), lat[rim], ant[rim]], axis=1)
    coef, *_ = np.linalg.lstsq(A, w[rim], rcond=None)
    d = w - (coef[0] + coef[1] * lat + coef[2] * ant)
    return nodes, (-d if side == "superior" else d), rim, centre


def _bulge(fd: _Fields, level: str, f: LevelFrame, superior: bool) -> float:
    """Endplate centre deflection into the body relative to the plane through its rim (mm)."""
    try:
        _, d, _, centre = endplate_deflection(fd.result, level,
                                              "superior" if superior else "inferior")
    except MetricsError:
        return math.nan
    return float(d[centre].max())


def _axial_at_centre(fd: _Fields, f: LevelFrame, node_set: str, at=(0.0, 0.0)) -> float:
    """Axial displacement of an endplate at a line parallel to the body's axis: a least-squares
    plane through its nodes' axial displacements, evaluated where that line crosses it, ``at``
    (lateral, anterior) mm from the level's centre (default the axis itself). Under pure
    compression this is the mean displacement; unlike the mean, it takes out the rigid tilt of a
    bending segment, which would otherwise add tilt x (offset between the two sets' centroids)
    to the shortening."""
    nodes = endplate_nodes(fd.model, node_set)
    rel = fd.model.points[nodes] - f.centre
    A = np.stack([np.ones(len(nodes)), rel @ f.lateral, rel @ f.anterior], axis=1)
    coef, *_ = np.linalg.lstsq(A, fd.u[nodes] @ f.axial, rcond=None)
    return float(coef[0] + coef[1] * at[0] + coef[2] * at[1])


def load_line(fd: _Fields, f: LevelFrame) -> tuple:
    """Where the loading plates' resultant crosses the level's transverse plane: (lateral,
    anterior) mm from the level's centre; (0, 0) without plates. The force's line of action is
    offset from the centre by d = F x M_c / |F|^2 (M_c: the plates' moment about the centre),
    which for a vertical load riding a tipped plate is the plate's offset over the level."""
    if not fd.plates:
        return (0.0, 0.0)
    F = sum((p.force for p in fd.plates), np.zeros(3))
    M = sum((p.moment_about(f.centre) for p in fd.plates), np.zeros(3))
    ff = float(F @ F)
    if not ff > 0.0:
        return (0.0, 0.0)
    d = np.cross(F, M) / ff
    return (float(d @ f.lateral), float(d @ f.anterior))


def _nucleus_pressure(fd: _Fields, disc: str) -> float:
    el = fd.model.regions.get(f"{disc}/nucleus")
    if el is None or not len(el):
        return math.nan
    return mean_pressure(fd.stress, fd.volume, el)


def _disc_rotation(fd: _Fields, level: str, below: str) -> float:
    """The rotation (deg) across the disc between ``level`` and ``below``: the magnitude of the
    rotation of ``level``'s inferior endplate relative to ``below``'s superior one
    (:func:`endplate_rotation`), NaN where a set is missing."""
    m = fd.model
    sets = (f"{level}/inferior", f"{below}/superior")
    if not all(s in m.node_sets and len(m.node_sets[s]) >= 3 for s in sets):
        return math.nan
    turn = endplate_rotation(m, fd.u, sets[0]) - endplate_rotation(m, fd.u, sets[1])
    return float(np.degrees(np.linalg.norm(turn)))


def _interface_stress(fd: _Fields, level: str) -> float:
    m = fd.model
    cement = _parts(m, level, CEMENT_PARTS)
    bone = _parts(m, level, INTERFACE_BONE)
    if not len(cement) or not len(bone):
        return math.nan
    shared = _node_mask(m, cement) & _node_mask(m, bone)
    if not shared.any():
        return math.nan
    el = np.concatenate([_touching(m, cement, shared), _touching(m, bone, shared)])
    return float(von_mises(fd.physical_stress[el]).max())


def _load_shares(fd: _Fields, level: str, f: LevelFrame) -> dict:
    m = fd.model
    t = max(2.0 * mesh_size(m, fd.volume), 2.0)
    forces = {}
    for group, parts in SHARE_GROUPS.items():
        el = _parts(m, level, parts)
        s = (fd.centroids[el] - f.centre) @ f.axial
        el = el[(s >= -0.5 * t) & (s < 0.5 * t)]
        forces[group] = float((_axial_stress(fd.stress[el], f.axial) * fd.volume[el]).sum()) / t
    total = sum(forces.values())
    return {f"load_share_{g}": (v / total + 0.0 if total != 0.0 else math.nan)
            for g, v in forces.items()}


#: the parts of a level's bony endplates (the damaged ones on the side their centroid lies)
ENDPLATE_PARTS = {"superior": "endplate_superior", "inferior": "endplate_inferior"}


def cement_endplate_contact(model, level: str, pairs=None) -> dict:
    """The share of each bony endplate of ``level`` that cement touches: {"superior": s,
    "inferior": i}, each the volume of the endplate's elements sharing a face with cement in
    the body (``"<level>/cement"``, ``"<level>/cement_composite"``) over the volume of that
    endplate's elements (a layer of even thickness, so a share of its area). A fracture's
    ``"<level>/damaged_endplate"`` counts on the side its elements' centroids lie, against the
    level's centre along its axis. 0 without cement; NaN for a side with no endplate elements.
    Cement that touches both endplates bridges the body: clinically, after PVP, vertebrae whose
    cement contacted both endplates recompressed less (5.2 % against 16.5 %, BMC Musculoskelet
    Disord 2020, doi:10.1186/s12891-020-03568-9, 137 patients, abstract read). ``pairs``: the
    model's face-sharing element pairs (:func:`fem.topology.face_neighbours`), if known."""
    from .topology import face_neighbours

    cement = np.concatenate([np.asarray(model.regions.get(f"{level}/{p}", []), np.int64)
                             for p in CEMENT_IN_BODY])
    f = level_frame(model, level)
    sides = {s: np.asarray(model.regions.get(f"{level}/{part}", []), np.int64)
             for s, part in ENDPLATE_PARTS.items()}
    damaged = np.asarray(model.regions.get(f"{level}/damaged_endplate", []), np.int64)
    if len(damaged):
        up = f.superior(element_centroids(model)[damaged])
        sides = {"superior": np.r_[sides["superior"], damaged[up]],
                 "inferior": np.r_[sides["inferior"], damaged[~up]]}
    out = {s: (math.nan if not len(e) else 0.0) for s, e in sides.items()}
    if not len(cement) or not any(len(e) for e in sides.values()):
        return out
    a, b = face_neighbours(model) if pairs is None else pairs
    is_cement = np.zeros(model.n_elements, bool)
    is_cement[cement] = True
    touched = np.zeros(model.n_elements, bool)
    touched[a[is_cement[b]]] = True
    touched[b[is_cement[a]]] = True
    vol = element_volumes(model)
    for s, e in sides.items():
        if len(e):
            out[s] = float(vol[e][touched[e]].sum() / vol[e].sum())
    return out


def _cement(model, level: str, pairs=None) -> dict:
    recs = _records(model, level)
    leaks = [lk for r in recs for lk in (_get(r, "leaks", ()) or ())]
    where = [str(_get(lk, "site", None) or _get(lk, "region", ""))
             for lk in leaks if float(_get(lk, "volume_ml", 0.0) or 0.0) > 0]
    return {
        "cement_placed_ml": float(sum(float(_get(r, "volume_ml", 0.0) or 0.0) for r in recs)),
        "fill_fraction": float(sum(float(_get(r, "fill_fraction", 0.0) or 0.0) for r in recs)),
        "leak_ml": float(sum(float(_get(r, "leak_ml", 0.0) or 0.0) for r in recs)),
        "leak_locations": "; ".join(dict.fromkeys(w for w in where if w)),
        **{f"cement_contact_{s}": v
           for s, v in cement_endplate_contact(model, level, pairs).items()},
    }


def _stiffness(fd: _Fields, level: str, f: LevelFrame, load_n: float) -> dict:
    """Axial stiffness (N/mm) under axial compression; under a moment it is NaN and the
    rotational stiffness (N m/deg) about the moment's axis takes its place."""
    if fd.moment_axis is None:
        # along the load's line: where a tipped segment carries the load off the body's axis
        # (the kyphosis of a fracture above), the shortening at the axis mixes in the level's
        # bending and can reach zero or change sign; along the line of action it is the
        # displacement the load works through, F x shortening = 2 x the level's strain energy
        at = load_line(fd, f)
        shortening = (_axial_at_centre(fd, f, f"{level}/inferior", at)
                      - _axial_at_centre(fd, f, f"{level}/superior", at))
        return {"stiffness_n_per_mm": load_n / shortening if shortening != 0.0 else math.nan,
                "rotational_stiffness_nm_per_deg": math.nan}
    if fd.ligaments:
        # the ligaments and the neural arch carry most of the moment past the body (about three
        # quarters on the canonical L2), whose own turn between its endplates (hundredths of a
        # degree) is then of the order of its endplates' local deflection: the ratio read 131,
        # 133, 680 and 266 N m/deg for the intact, fractured, 4 and 6 mL states of L2 at 4 mm
        return {"stiffness_n_per_mm": math.nan, "rotational_stiffness_nm_per_deg": math.nan}
    n = fd.moment_axis
    moment = sum(float(p.moment_about(f.centre) @ n) for p in fd.plates)
    turn = math.degrees(float((endplate_rotation(fd.model, fd.u, f"{level}/superior")
                               - endplate_rotation(fd.model, fd.u, f"{level}/inferior")) @ n))
    return {"stiffness_n_per_mm": math.nan,
            "rotational_stiffness_nm_per_deg": 1e-3 * moment / turn if turn != 0.0 else math.nan}


def _level_row(fd: _Fields, level: str, below: str | None, load: float | None) -> dict:
    m = fd.model
    f = level_frame(m, level)
    if load is None:
        if not np.linalg.norm(fd.applied) > 0.0:
            raise MetricsError("the model has no applied force (displacement-controlled?): pass "
                               "load= (N), the axial compression through the levels")
        load_n = float(-(fd.applied @ f.axial))
    else:
        load_n = float(load)
    row = {"level": level, "load_n": load_n}
    row.update(_stiffness(fd, level, f, load_n))

    body = _parts(m, level, BODY_PARTS)
    if len(body):
        eff = np.sqrt(np.clip(2.0 * fd.sed[body] / m.E[body], 0.0, None)) / fd.strain_history[body]
        e98 = weighted_quantile(eff, fd.volume[body], 1.0 - PISTOIA_VOLUME)
        row["strength_pistoia_n"] = load_n * PISTOIA_STRAIN / e98 if e98 > 0 else math.nan
    else:
        row["strength_pistoia_n"] = math.nan
    trab = _parts(m, level, TRABECULAR_PARTS)
    if len(trab):
        ps = fd.pstrain[trab]
        r = np.maximum(-ps[:, 2] / YIELD_COMPRESSION, ps[:, 0] / YIELD_TENSION) \
            / fd.strain_history[trab]
        r98 = weighted_quantile(r, fd.volume[trab], 1.0 - PISTOIA_VOLUME)
        row["strength_strain_n"] = load_n / r98 if r98 > 0 else math.nan
    else:
        row["strength_strain_n"] = math.nan
    for key, strength in (("factor_of_risk_pistoia", "strength_pistoia_n"),
                          ("factor_of_risk_strain", "strength_strain_n")):
        s = row[strength]
        row[key] = load_n / s if s and np.isfinite(s) else math.nan
    row["endplate_bulge_superior_mm"] = _bulge(fd, level, f, superior=True)
    row["endplate_bulge_inferior_mm"] = _bulge(fd, level, f, superior=False)
    row["disc_pressure_mpa"] = (_nucleus_pressure(fd, f"{level}-{below}") if below
                                else math.nan)
    row["disc_rotation_deg"] = _disc_rotation(fd, level, below) if below else math.nan
    row["ligament_force_n"] = fd.ligament_force(level, below) if below else math.nan
    row["interface_stress_mpa"] = _interface_stress(fd, level)
    row.update(_load_shares(fd, level, f))
    h_ant, h_post, wedge = body_heights(m, level)
    row.update(height_anterior_mm=h_ant, height_posterior_mm=h_post, wedge_angle_deg=wedge)
    row.update(_cement(m, level, fd.face_pairs))
    return row


def level_metrics(result, *, levels=None, load: float | None = None):
    """One row per level (cranial to caudal) of the predictions in :data:`COLUMNS`.

    ``result``: a :class:`fem.Result` of a vertebra or segment model (``metadata["levels"]``,
    ``model.anatomy``, regions ``"<level>/<part>"``, node sets ``"<level>/superior"`` and
    ``"/inferior"``). ``levels``: a subset (default all). ``load``: the axial compression (N)
    through the levels; by default ``-(applied force . e_ax)`` of each level.

    Columns (units in the names): ``load_n``; ``stiffness_n_per_mm`` = load / shortening of
    the body, the axial displacement of the inferior endplate minus that of the superior one,
    each from a least-squares plane through its nodes evaluated where the load's line of action
    crosses it (:func:`load_line`: on the axis through the level's centre for a centred load,
    the mean displacement under pure compression; off it where a tipped segment carries the
    load off the axis, where the shortening at the axis would mix in the level's bending),
    under axial compression
    only: where the loading plates apply a moment (:func:`applied_moment`: flexion, extension,
    lateral bending, axial rotation) the body's axis lies near the neutral axis, the shortening
    near zero and load / shortening meaningless (it reached 2.7e5 N/mm under flexion), so it is
    NaN; ``rotational_stiffness_nm_per_deg`` takes its place there (NaN under axial
    compression): the moment about the level's centre along the applied moment's axis n (the
    plates' moments plus their forces' lever about the centre; the applied moment itself where
    the load's line passes through the centre), in N m, over the rotation of the superior
    endplate node set relative to the inferior one about n, in degrees, each set's rotation
    from a least-squares rigid fit of its nodes' displacements (:func:`endplate_rotation`).
    Under a combined case (a preload and a moment) the rotation includes whatever the preload
    turns the level by, as in a test under preload. NaN too where the levels are joined by
    posterior ligaments (:mod:`fem.ligaments`): the ligaments and the neural arch then carry
    most of the moment past the body, and the body's own turn is too small to read;
    ``strength_n``, ``factor_of_risk`` and ``strength_method`` (the Pistoia proxy's until
    :func:`add_pushover` writes a pushover's), ``strength_pistoia_n``, ``strength_strain_n`` and
    their factors of risk (module docstring);
    ``endplate_bulge_*_mm``, the largest deflection into the body over the endplate's centre
    relative to a least-squares plane through the rim nodes (:func:`endplate_deflection`); ``disc_pressure_mpa``, the volume-mean hydrostatic
    pressure -tr(sigma)/3 of the nucleus of the disc below; ``disc_rotation_deg``, the rotation
    across the disc below (:func:`_disc_rotation`; NaN for the lowest level): beyond
    :data:`SMALL_ROTATION_DEG` the linear answer's kinematics do not hold, and the table is
    returned with a :class:`SmallStrainWarning`; ``ligament_force_n``, the tension of the
    posterior ligaments between the level and the one below together
    (:func:`fem.ligaments.ligament_forces`; NaN without ligaments); ``interface_stress_mpa``, the peak
    von Mises stress of the cement and bone elements sharing a node across the cement-bone
    interface (NaN without cement), at the physical thickness of thin layers
    (:attr:`fem.Result.physical_stress`: a cortex or endplate voxel whose modulus carries a
    factor of the layer's reports its stress over that factor); ``load_share_*``, the axial force of cortex (with the bony
    endplates and damaged shell), trabecular core (with damaged, haemangioma, compacted bone)
    and cement (solid and composite) through a slab of thickness max(2 element sizes, 2 mm)
    at the level's centre, as shares of their sum; ``height_*_mm`` and ``wedge_angle_deg``
    (:func:`body_heights`); ``cement_placed_ml`` (the cement placed in the level, leaks included;
    ``cement_volume_ml``, its name before, stays one release as a copy), ``fill_fraction``
    (cement in the body / volume of the whole vertebral body: cortex, bony endplates and
    trabecular bone, no posterior elements; :func:`fem.augment.body_volume`), ``leak_ml`` and
    ``leak_locations`` (the leaks' sites, "; "-separated) from
    ``metadata["augmentations"]``; ``cement_contact_superior`` and ``_inferior``, the share of
    each bony endplate that cement in the body touches (:func:`cement_endplate_contact`: both
    above 0, the cement bridges the body from endplate to endplate).
    The frame's ``attrs["load_case"]`` names the model's ``"load:<case>"`` condition.
    """
    import pandas as pd

    m = result.model
    order = list(m.metadata.get("levels", []))
    if not order:
        raise MetricsError("the model has no metadata['levels']: build it with "
                           "fem.meshes.vertebra or give it levels, anatomy and endplate sets")
    chosen = order if levels is None else ([levels] if isinstance(levels, str) else list(levels))
    unknown = [lv for lv in chosen if lv not in order]
    if unknown:
        raise SetError(f"level(s) {', '.join(unknown)} are not in this model "
                       f"(levels: {', '.join(order)})")
    fd = _Fields(result)
    rows = []
    for lv in chosen:
        i = order.index(lv)
        rows.append(_level_row(fd, lv, order[i + 1] if i + 1 < len(order) else None, load))
    df = headline_strength(pd.DataFrame(rows, columns=list(COLUMNS)))  # Pistoia's until a pushover
    for old, new in DEPRECATED_COLUMNS.items():
        df[old] = df[new]
    df.attrs["load_case"] = _load_case_name(m)
    beyond = beyond_small_strain(df, order)
    if beyond:
        import warnings

        warnings.warn(f"the linear answer turns {beyond} across the disc (small strain holds "
                      f"to about {SMALL_ROTATION_DEG:.1f} deg): its displacements and deformed "
                      "shape are not physical; stresses, pressures and strengths are the linear "
                      "answer's (docs/validation.md, 'A segment in bending')",
                      SmallStrainWarning, stacklevel=2)
    return df


def add_pushover(table, level: str, res, drop: float | None = None,
                 offset: float | None = None):
    """Write the :data:`PUSHOVER_COLUMNS` of ``level`` into its row of a :func:`level_metrics`
    ``table`` (in place) from ``res``, a :class:`~fem.nonlinear_result.NonlinearResult` of
    :func:`fem.strength.pushover` with ``level=level``. ``drop``: the fall that marks the first
    failure (``strength_first_peak_n``; None: :data:`~fem.nonlinear_result.FIRST_PEAK_DROP`).
    ``offset`` (a share of the level's mean height): the row's ``strength_pushover_n`` is the
    curve's first failure with that offset yield
    (:meth:`~fem.nonlinear_result.NonlinearResult.first_failure`: the first of the fall and the
    offset yield), as a study with ``pushover_end = "first_failure"`` reads it; None: the
    curve's largest force (its peak load). The factor of risk is the row's ``load_n`` over
    that strength; ``strength_pushover_by`` says what set it (:data:`STRENGTH_READINGS`). The
    row's headline ``strength_n`` and ``factor_of_risk`` become the pushover's
    (``strength_method`` = ``"pushover"``)."""
    import pandas as pd

    sel = table["level"] == level
    if not sel.any():
        raise SetError(f"level {level!r} is not in the table (levels: "
                       f"{', '.join(table['level'])})")
    drop = FIRST_PEAK_DROP if drop is None else drop
    height = float(table.loc[sel, ["height_anterior_mm", "height_posterior_mm"]].astype(float)
                   .to_numpy().mean()) if "height_anterior_mm" in table.columns else math.nan
    known = math.isfinite(height) and height > 0
    if offset is not None and not known:
        raise SetError(f"level {level!r} has no height in the table: its offset yield needs one")
    if offset is None:  # the largest force: after a fall, on a plateau, or a bound
        strength = float(res.peak_load)
        kind = ("fall" if strength > float(res.curve[-1, 1])
                else "plateau" if res.info.get("plateau") else "cap")
    else:
        strength = float(res.first_failure(drop, offset * height))
        kind = res.first_failure_kind(drop, offset * height)
    load = table.loc[sel, "load_n"].astype(float)
    table.loc[sel, "strength_pushover_n"] = strength
    at, energy = reached_at(res.curve, strength)  # where the strength was read
    table.loc[sel, "displacement_at_peak_mm"] = at
    table.loc[sel, "energy_to_failure_mj"] = energy
    table.loc[sel, "factor_of_risk_pushover"] = load / strength if strength > 0 else math.nan
    table.loc[sel, "pushover_peak_reached"] = 1.0 if res.peak_reached else 0.0
    table.loc[sel, "strength_first_peak_n"] = float(res.first_failure(drop))
    # at the offset the strength was read with (first_failure_offset), the default 0.2 % where
    # none was (it had stayed at 0.2 % whatever the run's offset)
    table.loc[sel, "strength_offset_yield_n"] = (res.offset_yield((offset or OFFSET_YIELD)
                                                                  * height)
                                                 if known else math.nan)
    by = table["strength_pushover_by"] if "strength_pushover_by" in table.columns else None
    if by is None or by.dtype != object:  # text in a column of NaN (no level pushed yet)
        table["strength_pushover_by"] = pd.Series(None, index=table.index, dtype=object)
    table.loc[sel, "strength_pushover_by"] = kind
    return headline_strength(table)


def headline_strength(table):
    """Set a table's :data:`HEADLINE_COLUMNS` (in place, and return it) from its per-method
    columns: ``strength_n`` is the pushover's peak load where ``strength_pushover_n`` is
    finite, else the Pistoia strength; ``strength_method`` says which (``"pushover"`` or
    ``"pistoia"``); ``factor_of_risk`` = ``load_n`` / ``strength_n``. A table without
    ``factor_of_risk_pistoia`` (a study store written before the headline columns, whose
    ``factor_of_risk`` was the Pistoia one) gets it from ``load_n`` / ``strength_pistoia_n``."""
    load = table["load_n"].astype(float)
    pistoia = table["strength_pistoia_n"].astype(float)
    if "factor_of_risk_pistoia" not in table.columns or table["factor_of_risk_pistoia"].isna().all():
        table["factor_of_risk_pistoia"] = (load / pistoia).where(pistoia > 0)
    push = (table["strength_pushover_n"].astype(float) if "strength_pushover_n" in table.columns
            else pistoia * math.nan)
    ran = np.isfinite(push.to_numpy(dtype=float))
    strength = push.where(ran, pistoia)
    table["strength_n"] = strength
    table["factor_of_risk"] = (load / strength).where(strength > 0)
    table["strength_method"] = np.where(ran, *STRENGTH_METHODS)  # "pushover", else "pistoia"
    return table


def disc_metrics(result):
    """One row per disc: ``disc``, ``nucleus_pressure_mpa`` (volume-mean -tr(sigma)/3) and
    ``annulus_max_von_mises_mpa`` (NaN where the part is missing)."""
    import pandas as pd

    fd = _Fields(result)
    m = result.model
    levels = list(m.metadata.get("levels", []))
    discs = [f"{a}-{b}" for a, b in zip(levels, levels[1:])]
    discs += sorted({r.rsplit("/", 1)[0] for r in m.regions
                     if r.endswith(("/nucleus", "/annulus"))} - set(discs))
    rows = []
    for d in discs:
        ann = m.regions.get(f"{d}/annulus")
        if f"{d}/nucleus" not in m.regions and ann is None:
            continue
        rows.append({"disc": d, "nucleus_pressure_mpa": _nucleus_pressure(fd, d),
                     "annulus_max_von_mises_mpa": (float(von_mises(fd.stress[ann]).max())
                                                   if ann is not None and len(ann)
                                                   else math.nan)})
    return pd.DataFrame(rows, columns=["disc", "nucleus_pressure_mpa",
                                       "annulus_max_von_mises_mpa"])


# ---------------------------------------------------------------------- comparison

KEYS = ["state", "load_case", "level"]
#: the two stiffnesses: one of them is NaN in every row (axial compression or a moment), so a
#: table of one kind of load case leaves the other out of what it prints
STIFFNESS = ("stiffness_n_per_mm", "rotational_stiffness_nm_per_deg")
#: the changes :class:`Comparison` prints (its ``table`` has them for every numeric metric)
HEADLINE = ("stiffness_n_per_mm", "rotational_stiffness_nm_per_deg", "strength_n",
            "factor_of_risk", "strength_pistoia_n", "strength_strain_n", "factor_of_risk_pistoia",
            "strength_pushover_n", "factor_of_risk_pushover",
            "endplate_bulge_superior_mm", "endplate_bulge_inferior_mm", "disc_pressure_mpa",
            "load_share_cortex", "height_anterior_mm", "wedge_angle_deg")


def _is_result(x) -> bool:
    return hasattr(x, "displacement") and hasattr(x, "model")


def _frame(name: str, case: str | None, value):
    import pandas as pd

    if _is_result(value):
        df = level_metrics(value)
    elif isinstance(value, pd.DataFrame):
        df = value.copy()
        if "level" not in df.columns:
            raise MetricsError(f"state {name!r}: the table has no 'level' column; pass "
                               "fem.metrics.level_metrics(result) or the Result itself")
        if {"load_n", "strength_pistoia_n"} <= set(df.columns):
            headline_strength(df)  # a table saved before the headline columns, or edited
    else:
        raise MetricsError(f"state {name!r}: expected a Result, a level_metrics table or a "
                           f"mapping of load case -> either, got {type(value).__name__}")
    lc = case if case is not None else df.attrs.get("load_case", "default")
    df = df.drop(columns=[c for c in ("state", "load_case") if c in df.columns])
    df.insert(0, "load_case", lc)
    df.insert(0, "state", name)
    return df


def _change(x, base):
    with np.errstate(divide="ignore", invalid="ignore"):
        out = (x - base) / base * 100.0
    return out.where(base != 0.0)


@dataclass
class Comparison:
    """Model states side by side (see :func:`compare`)."""

    table: object
    reference: str
    fractured: str
    treated: str | None = None
    levels: list = field(default_factory=list)

    def _level(self) -> str:
        if self.treated is None:
            raise MetricsError("no augmentation found in the compared states, so the treated "
                               "level is unknown: pass compare(..., treated_level='L2')")
        if self.treated not in self.levels:
            raise MetricsError(f"treated level {self.treated!r} is not among the compared levels "
                               f"({', '.join(self.levels)})")
        return self.treated

    def _baseline(self) -> str:
        return self.fractured if self.fractured in set(self.table["state"]) else self.reference

    @cached_property
    def collapse_prevention(self):
        """The treated level per state and load case: stiffness (axial; rotational where a load
        case has a moment) and strengths, and their ratios to the ``fractured`` state (NaN
        without one) and to the reference state."""
        level = self._level()
        t = self.table
        names = {"stiffness_n_per_mm": "stiffness", "strength_n": "strength",
                 "strength_pistoia_n": "strength_pistoia", "strength_strain_n": "strength_strain"}
        if has_values(t, "strength_pushover_n"):  # tables without a pushover stay as they were
            names["strength_pushover_n"] = "strength_pushover"
        if has_values(t, "rotational_stiffness_nm_per_deg"):  # so do axial-only tables
            names["rotational_stiffness_nm_per_deg"] = "rotational_stiffness"
        cols = list(names)
        method = ["strength_method"] if "strength_method" in t.columns else []
        rows = t[t["level"] == level][KEYS + method + cols].reset_index(drop=True)
        for base, tag in ((self.fractured, "fractured"), (self.reference, "reference")):
            ref = t[(t["state"] == base) & (t["level"] == level)][["load_case"] + cols]
            merged = rows[["load_case"]].merge(ref, on="load_case", how="left")
            for c, name in names.items():
                rows[f"{name}_ratio_{tag}"] = (rows[c].to_numpy(dtype=float)
                                               / merged[c].to_numpy(dtype=float))
        return rows

    @cached_property
    def adjacent_risk(self):
        """The levels directly above and below the treated one, per state and load case: factor
        of risk, bulge of the endplate facing the treated level and pressure of the disc between
        them, with their change (%) relative to the ``fractured`` state (else the reference)."""
        import pandas as pd

        level = self._level()
        i = self.levels.index(level)
        t = self.table
        base = self._baseline()
        near = [self.levels[j] for j in (i - 1, i + 1) if 0 <= j < len(self.levels)]
        # where a neighbour had a pushover (strength_levels = "all") its headline factor of
        # risk is the pushover's, and the Pistoia one is listed beside it
        risks = ["factor_of_risk"] + (["factor_of_risk_pistoia"] if has_values(
            t[t["level"].isin(near)], "strength_pushover_n") else [])
        method = ["strength_method"] if "strength_method" in t.columns else []
        parts = []
        for pos, j, endplate in (("above", i - 1, "inferior"), ("below", i + 1, "superior")):
            if not (0 <= j < len(self.levels)):
                continue
            nb = self.levels[j]
            upper = nb if pos == "above" else level
            disc = f"{nb}-{level}" if pos == "above" else f"{level}-{nb}"
            sel = t[t["level"] == nb][["state", "load_case", "factor_of_risk"]
                                      + [f"endplate_bulge_{endplate}_mm"] + risks[1:]
                                      + method]
            press = t[t["level"] == upper][["state", "load_case", "disc_pressure_mpa"]]
            df = sel.merge(press, on=["state", "load_case"], how="left")
            df = df.rename(columns={f"endplate_bulge_{endplate}_mm": "endplate_bulge_mm"})
            df.insert(2, "level", nb)
            df.insert(3, "position", pos)
            df.insert(5, "endplate", f"{nb}/{endplate}")
            df.insert(7, "disc", disc)
            changed = risks + ["endplate_bulge_mm", "disc_pressure_mpa"]
            ref = df[df["state"] == base][["load_case"] + changed]
            merged = df[["load_case"]].merge(ref, on="load_case", how="left")
            for c in changed:
                df[f"{c}_change_pct"] = _change(df[c], merged[c].set_axis(df.index))
            parts.append(df)
        if not parts:
            raise MetricsError(f"the treated level {level} has no neighbour in the compared "
                               "levels: compare a segment with the levels around it")
        order = (["state", "load_case", "level", "position", "factor_of_risk",
                  "factor_of_risk_change_pct"] + method
                 + ["endplate", "endplate_bulge_mm", "endplate_bulge_mm_change_pct", "disc",
                    "disc_pressure_mpa", "disc_pressure_mpa_change_pct"])
        for c in risks[1:]:
            order += [c, f"{c}_change_pct"]
        return pd.concat(parts, ignore_index=True)[order]

    def __str__(self) -> str:
        import pandas as pd

        fmt = {"float_format": lambda v: f"{v:.4g}", "index": False}
        with pd.option_context("display.width", 250, "display.max_columns", None):
            t = self.table
            changes = [f"{c}_change_pct" for c in HEADLINE if f"{c}_change_pct" in t.columns
                       and (c not in STIFFNESS or has_values(t, c))]
            out = ["Metrics per state, load case and level (units in the column names: N, mm, "
                   "MPa, mL, deg)",
                   t[[c for c in t.columns if not c.endswith("_change_pct")]].to_string(**fmt),
                   "", f"Change (%) relative to {self.reference!r} (all metrics: .table)",
                   t[KEYS + changes].to_string(**fmt)]
            try:
                cp, ar = self.collapse_prevention, self.adjacent_risk
            except MetricsError as exc:
                out += ["", f"Collapse prevention and adjacent-level risk: {exc}"]
                return "\n".join(out)
            out += ["", f"Collapse prevention at {self.treated} (stiffness N/mm, strength N; "
                        f"ratios to {self.fractured!r} and to {self.reference!r})",
                    cp.to_string(**fmt), "",
                    f"Adjacent-level risk around {self.treated} (bulge mm into the body, disc "
                    f"pressure MPa; change % relative to {self._baseline()!r})",
                    ar.to_string(**fmt)]
        return "\n".join(out)


def has_values(table, column: str) -> bool:
    """Whether ``table`` has ``column`` with a number in it (stores written before the pushover
    lack its columns; runs without one hold NaN there)."""
    return column in table.columns and bool(
        np.isfinite(np.asarray(table[column], dtype=float)).any())


def _treated_level(states: dict) -> str | None:
    for value in states.values():
        if _is_result(value):
            for a in value.model.metadata.get("augmentations", []):
                return _get(a, "level")
    for value in states.values():
        cols = getattr(value, "columns", ())
        col = next((c for c in ("cement_placed_ml", "cement_volume_ml") if c in cols), None)
        if not _is_result(value) and col is not None:
            hit = value[value[col] > 0]
            if len(hit):
                return str(hit["level"].iloc[0])
    return None


def compare(states: Mapping, *, reference: str = "intact", treated_level: str | None = None,
            fractured: str = "fractured") -> Comparison:
    """Compare model states (e.g. intact, fractured, PVP 4 mL, PKP) level by level.

    ``states``: state name -> a :class:`fem.Result`, a :func:`level_metrics` table, or a
    mapping load-case name -> either. ``Comparison.table`` has one row per (state, load_case,
    level), the metric columns and, for each numeric metric, ``<metric>_change_pct`` =
    (x - x_ref) / x_ref x 100 against the same load case and level of ``reference`` (NaN where
    x_ref is 0 or missing). A state given without load cases takes the name of its model's
    ``"load:<case>"`` condition (else "default"). ``Comparison.collapse_prevention`` and
    ``.adjacent_risk`` give the two headline predictions for ``treated_level`` (default: the
    level of the first augmentation found in the states' models).
    """
    import pandas as pd

    if not isinstance(states, Mapping) or not states:
        raise MetricsError("compare() needs a non-empty mapping of state name -> Result")
    if reference not in states:
        raise MetricsError(f"unknown reference state {reference!r} (states: "
                           f"{', '.join(map(str, states))}): pass reference= one of them")
    frames, flat = [], {}
    for name, value in states.items():
        cases = value.items() if isinstance(value, Mapping) else [(None, value)]
        for case, v in cases:
            frames.append(_frame(str(name), case, v))
            flat.setdefault(name, v)
    table = pd.concat(frames, ignore_index=True)
    numeric = [c for c in table.columns
               if c not in KEYS and pd.api.types.is_numeric_dtype(table[c])]
    ref = table[table["state"] == reference][["load_case", "level"] + numeric]
    common = table[["load_case", "level"]].merge(ref[["load_case", "level"]], how="inner")
    for name in table["state"].unique():
        mine = table[table["state"] == name][["load_case", "level"]]
        if not len(mine.merge(common, how="inner")):
            raise MetricsError(f"state {name!r} shares no (load case, level) with the reference "
                               f"{reference!r}: compare states of the same segment under the "
                               "same load cases")
    merged = table[["load_case", "level"]].merge(ref, on=["load_case", "level"], how="left")
    for c in numeric:
        table[f"{c}_change_pct"] = _change(table[c], merged[c].set_axis(table.index))
    levels = list(dict.fromkeys(table["level"]))
    treated = treated_level if treated_level is not None else _treated_level(flat)
    return Comparison(table, reference, fractured, treated, levels)
