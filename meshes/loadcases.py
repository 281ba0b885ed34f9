"""Physiological load cases for vertebra and segment models, each with the source of its numbers.

Units: force N, moment N mm, pressure MPa, length mm.

Axes (issue 4 convention): x lateral (patient's left = +x), y antero-posterior with anterior = -y,
z cranial. A load case puts an axial compression ``axial_force`` (N, positive = compression, i.e.
a force (0, 0, -F) on the superior surface) and a moment (``mx``, ``my``, ``mz``) in N mm about
the centroid of the loaded surface. Moment signs follow the right-hand rule about the axes, which
makes them read anatomically:

* ``mx > 0`` flexion (the top tilts forward, towards -y); ``mx < 0`` extension;
* ``my > 0`` left lateral bending (the top tilts towards +x, the patient's left); ``my < 0`` right;
* ``mz > 0`` left axial rotation (seen from above, counter-clockwise: the anterior side turns to
  the patient's left); ``mz < 0`` right.

Intradiscal pressure to force. Wilke et al. 1999 measured intradiscal pressure (IDP) in the
nucleus of one L4-L5 disc in vivo, not force. We convert with Nachemson's observation that the
nuclear pressure is about 1.5 times the applied axial load per unit disc area (Nachemson 1960,
Acta Orthop Scand Suppl 43; secondary: the factor as quoted in later IDP reviews, not checked):
``F = IDP * A / 1.5`` with ``A = DISC_AREA`` = 1500 mm^2 (ASSUMPTION: a typical adult L4-L5 disc
cross-section; the lumbar body dimensions in biomechanics.md, 40-50 mm wide and 30-36 mm deep,
bound it between about 1000 mm^2 as an ellipse and 1800 mm^2 as a rectangle). The two together
give F [N] = 1000 * IDP [MPa]. Cross-checks: relaxed standing 0.5 MPa -> 500 N, the compressive
preload of PVP/PKP FE studies; lifting 20 kg with flexed knees 1.7 MPa -> 1700 N against the
"forces up to 1650 N" telemetered on a vertebral body replacement when lifting weights from the
ground (Rohlmann et al. 2014, PLoS One, doi:10.1371/journal.pone.0098510, abstract checked).

Level. Every case is the L4-L5 disc's load, applied unchanged at whatever level a model puts
under the plate (as PVP/PKP FE studies apply their 500 N at any level); musculoskeletal modelling
puts the compressive peaks at the thoracolumbar junction and the lower lumbar spine (Bruno et al.
2017, J Bone Miner Res 32:1282, doi:10.1002/jbmr.3113, abstract checked), so mid-thoracic
models should scale the case (``scale``) rather than take it as that level's load.

Coughing. Wilke 1999 recorded sneezing and laughing, but the values are not in its abstract and
could not be checked. The case uses Nachemson's relative disc loads instead, cough = 140 % of
standing (secondary: the table as quoted at sittingsafely.com/loading, the primary 1960s studies
not checked), on Wilke's relaxed-standing IDP 0.5 MPa: 0.7 MPa, i.e. 700 N.

Loading a model with a case (:func:`loaded`, which returns a new Model, as every Model transform
does) adds a support that fixes every displacement component (x, y and z) of the nodes of the
``"bottom"`` set, and a load ``"load:<case>"``: either a rigid loading plate on ``"top"`` (force
and moment about the area centroid of the top surface) or a uniform pressure over the ``"top"``
face set. A uniform pressure cannot carry a moment, so cases with a moment are refused for
``method="pressure"`` rather than approximated. The case is recorded as data on the model,
``metadata["load_case"]`` (name, force N, moment N mm, method, support and top sets, scale),
which :mod:`fem.metrics` reads; :func:`conditions` gives back the two conditions by name.
:func:`apply` is the former in-place form, kept for one release with a DeprecationWarning.
"""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass

import numpy as np

from ..errors import BoundaryConditionError, SetError
from ..loads import Fixed, Pressure, RigidPlate
from ..system import face_integrals
from ..validate import finite, in_range

NACHEMSON_FACTOR = 1.5
DISC_AREA = 1500.0
PVP_MOMENT = 7500.0
PVP_PRELOAD = 500.0
RELAXED_STANDING_IDP = 0.5

WILKE_1999 = ("Wilke H-J, Neef P, Caimi M, Hoogland T, Claes LE (1999) New in vivo measurements "
              "of pressures in the intervertebral disc in daily life. Spine 24(8):755-762 "
              "(abstract checked)")
NACHEMSON_RELATIVE = ("Nachemson's relative lumbar disc loads (standing 100 %, lying supine 25 %, "
                      "forward flexion 150 %, cough 140 %, laugh 150 %), as tabulated at "
                      "http://sittingsafely.com/loading (secondary: the primary intradiscal "
                      "pressure studies of Nachemson (1960s) were not checked)")
PVP_FE = ("PVP/PKP finite-element convention, 500 N compressive preload + 7.5 N m in flexion, "
          "extension, lateral bending and axial rotation (reference/biomechanics.md, Loads; "
          "secondary)")


def force_from_disc_pressure(pressure: float, area: float = DISC_AREA,
                             factor: float = NACHEMSON_FACTOR) -> float:
    """Axial force (N) from an intradiscal pressure (MPa): ``pressure * area / factor``."""
    p = in_range("intradiscal pressure", pressure, 0.0, unit="MPa", error=BoundaryConditionError)
    a = in_range("disc area", area, 0.0, lo_open=True, unit="mm^2", error=BoundaryConditionError)
    k = in_range("pressure/stress factor", factor, 0.0, lo_open=True, error=BoundaryConditionError)
    return p * a / k


@dataclass(frozen=True)
class LoadCase:
    """An axial compression (N) and a moment (N mm) on the superior surface, with its source.

    ``axial_force`` is positive in compression. Moments follow the sign convention of the module
    docstring (``mx`` flexion +, ``my`` left bending +, ``mz`` left rotation +).
    """

    name: str
    axial_force: float
    mx: float = 0.0
    my: float = 0.0
    mz: float = 0.0
    source: str = ""
    notes: str = ""

    def __post_init__(self):
        err = BoundaryConditionError
        if not isinstance(self.name, str) or not self.name.strip():
            raise err(f"a load case needs a non-empty name, got {self.name!r}")
        if not isinstance(self.source, str) or not self.source.strip():
            raise err(f"load case {self.name!r} needs a source (a citation, or 'ASSUMPTION: ...')")
        object.__setattr__(self, "axial_force", in_range(
            f"load case {self.name!r} axial force", self.axial_force, 0.0, unit="N", error=err))
        for m in ("mx", "my", "mz"):
            v = finite(f"load case {self.name!r} {m}", getattr(self, m), err)
            object.__setattr__(self, m, v)

    @property
    def force(self) -> tuple:
        """The force (N) on the superior surface: compression points down (-z)."""
        return (0.0, 0.0, -self.axial_force)

    @property
    def moment(self) -> tuple:
        """The moment (N mm) about the loaded surface's centroid."""
        return (self.mx, self.my, self.mz)

    @property
    def has_moment(self) -> bool:
        return any(m != 0.0 for m in self.moment)

    def scaled(self, factor: float) -> LoadCase:
        """The same case with force and moment multiplied by ``factor`` (e.g. a safety factor)."""
        s = in_range("load scale", factor, 0.0, error=BoundaryConditionError)
        return dataclasses.replace(self, axial_force=s * self.axial_force, mx=s * self.mx,
                                   my=s * self.my, mz=s * self.mz)


def _wilke(name, pressure, activity, notes=""):
    f = force_from_disc_pressure(pressure)
    return LoadCase(
        name, f, source=f"{WILKE_1999}: {activity}, IDP {pressure} MPa at L4-L5",
        notes=(f"force = IDP * {DISC_AREA:g} mm^2 / {NACHEMSON_FACTOR:g} (module docstring; the "
               f"disc area is an assumption). The IDP reflects the total compression, muscle "
               f"forces included; the sagittal moment was not measured, so none is applied. "
               + notes).strip())


def _nachemson(name, ratio, activity, notes=""):
    f = ratio * force_from_disc_pressure(RELAXED_STANDING_IDP)
    return LoadCase(
        name, f,
        source=(f"{NACHEMSON_RELATIVE}: {activity} {100 * ratio:g} % of standing, applied to the "
                f"relaxed-standing IDP {RELAXED_STANDING_IDP} MPa at L4-L5 of {WILKE_1999}"),
        notes=(f"force = {ratio:g} * IDP_standing * {DISC_AREA:g} mm^2 / {NACHEMSON_FACTOR:g} "
               f"(module docstring). " + notes).strip())


_CASES = [
    LoadCase("standing", PVP_PRELOAD, source=PVP_FE,
             notes="Upright standing as the axial preload of vertebral augmentation FE studies; "
                   "biomechanics.md gives 500-800 N for standing and 500-1175 N for FE preloads."),
    _wilke("relaxed_standing", RELAXED_STANDING_IDP, "relaxed standing"),
    LoadCase("flexion", PVP_PRELOAD, mx=PVP_MOMENT, source=PVP_FE),
    LoadCase("extension", PVP_PRELOAD, mx=-PVP_MOMENT, source=PVP_FE),
    LoadCase("lateral_bending_left", PVP_PRELOAD, my=PVP_MOMENT, source=PVP_FE),
    LoadCase("lateral_bending_right", PVP_PRELOAD, my=-PVP_MOMENT, source=PVP_FE),
    LoadCase("axial_rotation_left", PVP_PRELOAD, mz=PVP_MOMENT, source=PVP_FE),
    LoadCase("axial_rotation_right", PVP_PRELOAD, mz=-PVP_MOMENT, source=PVP_FE),
    _wilke("forward_bending", 1.1, "standing flexed forward",
           "Telemetry on a vertebral body replacement gave about 450 N at 53 deg upper-body "
           "flexion and about 565 N on returning upright (Dreischarf et al. 2015, J Biomech, "
           "doi:10.1016/j.jbiomech.2015.01.007, abstract checked); that implant shares the "
           "load with a fixator, so it reads lower than the whole-spine compression."),
    _wilke("lifting_20kg_round_back", 2.3, "lifting a 20 kg weight with a round, flexed back"),
    _wilke("lifting_20kg_flexed_knees", 1.7, "lifting a 20 kg weight with flexed knees",
           "Rohlmann et al. 2014 (PLoS One, doi:10.1371/journal.pone.0098510, abstract "
           "checked) telemetered up to 1650 N on a vertebral body replacement when lifting a "
           "weight from the ground."),
    _nachemson("coughing_sneezing", 1.4, "coughing",
               "A brief peak of trunk-muscle co-contraction. Sneezing is not in the relative-load "
               "table; Wilke et al. 1999 recorded IDP during sneezing and laughing, but their "
               "peak values could not be checked here (abstract does not give them). Laughing is "
               "listed at 150 % in the same table."),
]

LOAD_CASES: dict[str, LoadCase] = {c.name: c for c in _CASES}


def get(case) -> LoadCase:
    """A load case by name (from :data:`LOAD_CASES`) or the :class:`LoadCase` itself."""
    if isinstance(case, LoadCase):
        return case
    if isinstance(case, str) and case in LOAD_CASES:
        return LOAD_CASES[case]
    raise BoundaryConditionError(
        f"unknown load case {case!r} (defined: {', '.join(LOAD_CASES)})")


def surface_geometry(model, face_set: str) -> tuple[np.ndarray, np.ndarray, float]:
    """Area centroid (3,), area vector (3,) (integral of the outward normal, mm^2) and total
    area (mm^2) of a face set, from the exact face integrals of the element shape functions."""
    ints = face_integrals(model, model.faces_of(face_set))
    pts = model.points
    area = sum(float(a.sum()) for _, _, a in ints)
    centroid = sum(np.einsum("nk,nkc->c", a, pts[conn]) for conn, _, a in ints) / area
    vector = sum(nv.sum(axis=(0, 1)) for _, nv, _ in ints)
    return centroid, vector, area


#: where a plate's load acts on a segment a fracture has tipped (``line`` of :func:`loaded`)
LOAD_LINES = ("plate", "space")


def loaded(model, case, *, method: str = "plate", support: str = "bottom", top: str = "top",
           scale: float = 1.0, line: str = "space"):
    """A copy of ``model`` with the ``support`` set fixed and the ``top`` surface loaded by
    ``case`` (a name of :data:`LOAD_CASES` or a :class:`LoadCase`), the case recorded in
    ``metadata["load_case"]``; ``model`` is not changed. ``method``, ``scale``: as
    :func:`apply` describes.

    ``line``: where the plate's load acts when a wedge fracture has tipped the levels above
    (``metadata["kyphosis"]``, :func:`fem.meshes.pathology.compress`). ``"space"`` (the
    default): at the top surface's centroid before the tipping (the intact segment's), so the
    load keeps its line of action in space (the trunk held upright over the pelvis) and the
    fractured level's answer does not depend on how many levels the model puts above it.
    ``"plate"``: at the tipped top surface's centroid, so the load rides the segment forward and
    adds a flexion moment on the fractured level and below (the body's weight carried forward
    with the trunk; the default before 2026-12). The two differ by the top plate's shift: 10 mm
    for a grade-2 wedge of L2 in L1-L3, 19 mm in T12-L4, and so does the added moment (5 and
    10 N m at 500 N). Without a tipped segment they are the same."""
    if line not in LOAD_LINES:
        raise BoundaryConditionError(f"line must be one of {', '.join(LOAD_LINES)}, got "
                                     f"{line!r}")
    out = model.copy()
    _apply(out, case, method=method, support=support, top=top, scale=scale, line=line)
    return out


def between_platens(model):
    """A copy of ``model`` whose rigid plates are held parallel and laterally (free only to
    move along the axis, z), as a testing machine's platens hold a specimen; ``model`` is not
    changed. Loads stay as they were (e.g. :func:`loaded`'s axial force on the top plate)."""
    out = model.copy()
    out.conditions = [dataclasses.replace(c, displacement=(0.0, 0.0, None),
                                          rotation=(0.0, 0.0, 0.0))
                      if isinstance(c, RigidPlate) else c for c in out.conditions]
    return out


def _untipped(model, point) -> np.ndarray:
    """``point`` on the top level carried back through the fractures' tipping of the levels
    above them (``metadata["kyphosis"]``: x' = R x + t from the intact model), latest first."""
    p = np.asarray(point, dtype=float)
    levels = model.metadata.get("levels") or []
    top_level = levels[0] if levels else None
    for rec in reversed(list((model.metadata.get("kyphosis") or {}).values())):
        if top_level in rec.get("levels", ()):
            R, t = np.asarray(rec["rotation"], float), np.asarray(rec["translation"], float)
            p = R.T @ (p - t)
    return p


def conditions(model) -> dict:
    """The conditions a load case added to ``model``, by name: ``{"support": Fixed,
    "load:<case>": RigidPlate or Pressure}``."""
    rec = model.metadata.get("load_case")
    if not rec:
        raise BoundaryConditionError("the model carries no load case (load it with "
                                     "fem.meshes.loadcases.loaded)")
    name = f"load:{rec['name']}"
    if rec["method"] == "pressure":  # a Pressure has no name: the one on the loaded set
        load = [c for c in model.conditions
                if isinstance(c, Pressure) and c.target == rec["top"]]
    else:
        load = [c for c in model.conditions if getattr(c, "name", None) == name]
    fixed = [c for c in model.conditions
             if isinstance(c, Fixed) and c.target == rec["support"] and c.dofs == "xyz"]
    if len(load) != 1 or not fixed:
        raise BoundaryConditionError(f"the conditions of load case {rec['name']!r} are no longer "
                                     "on the model (its conditions were changed)")
    return {"support": fixed[-1], name: load[0]}


def apply(model, case, *, method: str = "plate", support: str = "bottom", top: str = "top",
          scale: float = 1.0) -> dict:
    """Deprecated: changes ``model`` in place, unlike every other Model transform; use
    ``model = loaded(model, case)`` (and :func:`conditions` for the conditions). Kept for one
    release.

    Support the ``support`` set and load the ``top`` surface with ``case``; returns the
    conditions added to ``model``, by name: ``{"support": Fixed, "load:<case>": ...}``.

    ``method="plate"``: a rigid loading plate coupled to ``top``, loaded by the case's force and
    moment about the area centroid of the ``top`` face set (the node centroid where ``top`` is
    only a node set). ``method="pressure"``: a uniform pressure ``p = F / A_z`` on the ``top``
    face set, ``A_z`` its area projected on the transverse plane, so the resultant axial force is
    exactly ``F`` on a concave endplate too; cases with a moment are refused.
    The support fixes all three displacement components of every node of ``support``.
    """
    warnings.warn("fem.meshes.loadcases.apply changes the model in place and goes in the next "
                  "release: use model = loadcases.loaded(model, case), which returns a new "
                  "Model like every other transform", DeprecationWarning, stacklevel=2)
    return _apply(model, case, method=method, support=support, top=top, scale=scale)


def _apply(model, case, *, method, support, top, scale, line="space") -> dict:
    c = get(case).scaled(scale)
    if method not in ("plate", "pressure"):
        raise BoundaryConditionError(f"method must be 'plate' or 'pressure', got {method!r}")
    model.nodes_of(support)
    load_name = f"load:{c.name}"
    if method == "plate":
        if top in model.face_sets:
            ref = surface_geometry(model, top)[0]
        else:
            ref = model.points[model.nodes_of(top)].mean(axis=0)
        if line == "space":
            ref = _untipped(model, ref)
        load = RigidPlate(top, force=c.force, moment=c.moment, reference=tuple(ref),
                          name=load_name)
    else:
        if c.has_moment:
            raise BoundaryConditionError(
                f"load case {c.name!r} has a moment {c.moment} N mm, which a uniform pressure "
                f"cannot carry: use method='plate'")
        if top not in model.face_sets:
            raise SetError(f"method='pressure' needs a face set {top!r} (the model has "
                           f"{', '.join(sorted(model.face_sets)) or 'none'})")
        _, vec, _ = surface_geometry(model, top)
        if vec[2] <= 0.0:
            raise BoundaryConditionError(
                f"face set {top!r} does not face cranially (projected area {vec[2]:g} mm^2 along "
                f"+z): a pressure on it would not compress the model")
        load = Pressure(top, c.axial_force / vec[2])
    conditions = {"support": Fixed(support, "xyz"), load_name: load}
    model.add(*conditions.values())
    model.metadata["load_case"] = {
        "name": c.name, "force_n": [float(v) for v in c.force],
        "moment_nmm": [float(v) for v in c.moment], "method": method, "support": support,
        "top": top, "scale": float(scale), "line": line}
    return conditions
