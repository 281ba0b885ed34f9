"""Bone, cement and damaged bone as damage laws, and the pushover of a vertebra or segment.

:func:`bone_damage_law` gives every element of a vertebra or segment model (parametric, shape
model or patient) a :class:`fem.nonlinear.DamageLaw` from its region (``"<level>/<part>"``) and
its modulus; :func:`pushover` runs :func:`fem.solve_nonlinear` on a loaded model; and
:func:`level_strength` finds the strength of one level of a segment, the first failure of a pushover
in which only that level's bone can fail (as a study reports it, :func:`first_failure_stops`).

The laws and their sources (units: strain, not %; MPa):

* **Bone** (trabecular core, compacted bone, cortex, posterior elements, haemangioma or lesion
  bone): yield strains 0.84 % in compression and 0.78 % in tension, the values measured on human
  vertebral trabecular bone (Kopperdahl & Keaveny 1998, J Biomech 31:601; reference/
  biomechanics.md). Apparent yield strains are uniform within an anatomic site whatever the
  density (Morgan et al. 2004, J Biomech 37:1413, abstract checked), so the yield stress of each
  element is ``E x eps_y`` and follows its density through its modulus; the cortex gets the same
  strains (an ASSUMPTION shared by the QCT finite-element models that map one density law over
  the whole vertebra). Thin layers whose modulus is scaled by thickness / element size keep the
  physical in-plane strain, so a strain criterion is unaffected by that scaling.
* **Post-yield**: the stress falls linearly to ``RESIDUAL`` = 0.6 of the yield stress over
  ``SOFTENING_STRAIN`` = 1.5 % strain and stays there (crushed trabecular bone carries a
  plateau stress until it densifies, Gibson 1985, J Biomech 18:317). Both numbers are
  ASSUMPTIONS, not fits: no measured residual-to-yield ratio of vertebral trabecular bone could be
  checked here (the primary sources, Keaveny et al. 1994 J Biomech 27:1309 and 1999 J Orthop Res
  17:346 on overloaded trabecular bone, were not available). They set the shape of the curve after
  the peak and the strength kept by damaged bone.
* **Regularisation**: nonlocal (Pijaudier-Cabot & Bazant 1987, J Eng Mech 113:1512;
  :mod:`fem.nonlinear`): the damage is driven by the normalised strain averaged with a Gaussian
  of ``NONLOCAL_LENGTH`` = 1 mm, about one trabecular spacing of elderly lumbar bone (ASSUMPTION:
  the order of magnitude, not a checked measurement; chosen before comparing meshes, not tuned),
  over the elements of the same yield strains (bone with bone, cement with cement). A failing
  band is then a few mm wide whatever the mesh, and the softening strain is the material's for
  elements up to ``REFERENCE_SIZE`` = 2 mm (crack band scaled beyond, Bazant & Oh 1983, Mater
  Struct 16:155). The peak of the benchmark L1 changes by +3.5 % from 2 to 1 mm voxels (+5.5 %
  with the crack band alone: the crushing at the peak spreads over many elements, which the
  crack band's one-element band does not assume; docs/nonlinear.md).
* **Damaged bone** (a fracture's band, ``damaged``, ``damaged_shell``, ``posterior_wall_breach``):
  the fracture lowered its modulus by the fracture's ``damage_factor``; it is the same bone after
  an overload, so it carries the history ``kappa0`` at which the law's secant is that fraction of
  the intact modulus (:meth:`DamageLaw.kappa_for_modulus_ratio`). It reloads along its reduced
  modulus up to the residual stress of its pre-fracture modulus: much of its stiffness is lost,
  less of its strength. (Wegrzyn et al. 2011, J Bone Miner Res 26:739: L3 vertebrae compressed to
  25 % deformity lost 53 +- 18 % of their stiffness but 11 +- 19 % of their failure load.)
  Where the fracture kept the bone's mass (``pathology.compress``'s ``conserve_mass``), the
  band's pre-fracture modulus is that of its compacted density, and with it its yield stress;
  a fracture made with ``envelope="original"`` gives the band the envelope of the bone it was
  crushed from instead: its yield and softening strains divided by its densification's modulus
  factor (``metadata["densification"]``), so it yields at the stresses of the uncompacted bone
  (the same normalised history; :func:`crushed_strain_scale`).
* **Cement** (solid bolus ``cement``, leaked cement): compressive and tensile strengths of the
  cement (:data:`CEMENT_STRENGTH`) over its modulus; it is brittle, so its residual is 0.1 after
  a short softening. **Cement-bone composite** (``cement_composite``): the cement network carries
  the load and fails at the cement's yield strains (an ASSUMPTION).
* **Recovery on unloading** (:func:`crush_recovery`): the law unloads along its secant, so a
  crushed level's recovery is computed apart: its trabecular core gives back
  :data:`TRABECULAR_RECOVERY` (0.6, a lower bound: Fyhrie & Schaffler 1994, Bone 15:105) of the
  strain its collapse imposed, as an eigenstrain, while the cortex and bony endplates keep their
  collapse (ASSUMPTION).
* **Bony endplates** (``endplate_superior``, ``endplate_inferior``, and a fracture's
  ``damaged_endplate``, which carries its damage like the band): bone's yield strains and
  softening, driven by their **in-plane** strain (:class:`fem.nonlinear.DamageLaw`'s
  ``layer_normal``). An endplate is a 0.25 mm layer represented by thicker elements whose
  modulus is scaled by thickness / element size: the strains across the layer (through its
  thickness and its transverse shears) answer tractions that the layer shares with the disc
  and the bone, so they are inflated by element size / thickness, and a criterion on them
  would fail the endplates first for a numerical reason (a full-strain criterion broke the
  crushed, cemented T11 of a probe study at 744 N, the in-plane one at 5 999 N); its in-plane
  strains follow its neighbours and are physical. The normal is each element's local plane of the layer
  (:func:`layer_normals`). Endplates are where initial failure is most likely: in micro-FE
  of 22 elderly vertebrae compressed through discs the highest tensile strains, and the
  highest ratios of strain to yield strain, lay in the endplates, from the disc's Poisson
  expansion (Fields, Lee & Keaveny 2010, J Biomech 43:3126; abstract checked). The element's
  average in-plane strain is the layer's membrane strain: its bending strain at the faces, a
  fraction of a voxel away, is not resolved (so endplate failure by bending comes late, if
  anything). Until 2026-12-07 the endplates stayed elastic, which let a cement bolus that
  bridges the body carry the load through them without limit (the canonical PVP 6 mL under
  standing did not fail before the pushover's cap).
* Discs, cartilage and anything else stay elastic.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass

import numpy as np

from .anatomy import level_height
from .errors import MaterialError, ModelError, ParameterError, SetError
from .nonlinear import (
    BAZANT_OH_1983,
    LIMIT_TANGENT,
    PIJAUDIER_CABOT_BAZANT_1987,
    DamageLaw,
    solve_nonlinear,
)
from .nonlinear_result import FIRST_PEAK_DROP, OFFSET_YIELD
from .parts import (
    BULK_CEMENT,
    COMPOSITE,
    ELASTIC_IN_PUSHOVER,
    FAILING_BONE,
    FAILING_LAYER,
    FRACTURE_DAMAGED,
    level_elements,
)
from .validate import in_range

logger = logging.getLogger(__name__)

#: yield strains of vertebral trabecular bone (Kopperdahl & Keaveny 1998, J Biomech 31:601)
YIELD_COMPRESSION = 0.0084
YIELD_TENSION = 0.0078
#: residual stress / yield stress after softening: ASSUMPTION (module docstring)
RESIDUAL = 0.6
#: strain over which the stress falls to the residual, for elements of REFERENCE_SIZE mm
SOFTENING_STRAIN = 0.015
REFERENCE_SIZE = 2.0
#: nonlocal length (mm) of the damage driver's average: ASSUMPTION (module docstring)
NONLOCAL_LENGTH = 1.0

BONE_PARTS = FAILING_BONE
DAMAGED_PARTS = FRACTURE_DAMAGED
CEMENT_PARTS = BULK_CEMENT
COMPOSITE_PARTS = COMPOSITE
ELASTIC_PARTS = ELASTIC_IN_PUSHOVER
LAYER_PARTS = FAILING_LAYER
FIELDS_2010 = ("bony endplates fail by their in-plane strain: Fields AJ, Lee GL, Keaveny TM "
               "(2010) Mechanisms of initial endplate failure in the human vertebral body. J "
               "Biomech 43:3126 (abstract checked: micro-FE of 22 elderly vertebrae compressed "
               "through discs; the highest tensile strains, and the highest ratio of strain to "
               "yield strain, lie in the endplates, from the disc's Poisson expansion)")
#: how the bony endplates fail (:func:`bone_damage_law`'s ``endplates``): by their in-plane
#: strain, or never (elastic, the law before 2026-12-07)
ENDPLATE_LAWS = ("in_plane", "elastic")
#: radius of the neighbourhood whose centroids give an endplate element's plane, in element
#: sizes (:func:`layer_normals`)
LAYER_NORMAL_RADIUS = 2.5


@dataclass(frozen=True)
class CementStrength:
    """Compressive and tensile strength (MPa) of a bone cement, with the source."""

    compressive: float
    tensile: float
    source: str


#: strengths of the cements of :data:`fem.augment.CEMENTS`
CEMENT_STRENGTH = {
    "pmma": CementStrength(
        70.0, 50.0, "ISO 5833 minima for acrylic bone cement: 70 MPa in compression, 50 MPa in "
        "bending (secondary: as quoted by cement studies, e.g. SBC 2011 proceedings; the standard "
        "itself not checked); the bending minimum stands for the tensile strength"),
    "pmma_iso5833": CementStrength(70.0, 50.0, "as pmma (ISO 5833 minima)"),
    "pmma_low_modulus": CementStrength(
        19.6, 14.0, "low-modulus PMMA: compressive strength 72 % below its control cement at "
        "24 h (Robo, Ohman-Magi & Persson 2021, J Mech Behav Biomed Mater 114:104437, abstract "
        "checked) applied to the ISO 5833 minima"),
    "calcium_phosphate": CementStrength(
        39.0, 3.9, "calcium phosphate cement: compressive strength 39 MPa (J Mater Sci Mater "
        "Med 2013, one optimised formulation, abstract seen); tensile 1/10 of it: ASSUMPTION "
        "(brittle ceramic)"),
}
CEMENT_RESIDUAL = 0.1
CEMENT_SOFTENING = 0.005


def _part(name: str) -> str:
    return name.rsplit("/", 1)[-1]


def _cement_strength(model, region_name: str) -> tuple[CementStrength, float]:
    """(strength, modulus of the bulk cement) of the cement a region holds. A variant of a
    listed cement (``Cement.base``: a study's ``cement_modulus``) keeps its base's yield
    strains, so its strengths scale with its modulus (an ASSUMPTION: low-modulus PMMA lost 72 %
    of its compressive strength, Robo et al. 2021, :data:`CEMENT_STRENGTH`)."""
    from .augment import CEMENTS, get_cement

    level = region_name.split("/", 1)[0]
    for rec in model.metadata.get("augmentations", []):
        if getattr(rec, "level", None) == level:
            cem = get_cement(getattr(rec, "cement", "pmma"))
            if cem.name in CEMENT_STRENGTH:
                return CEMENT_STRENGTH[cem.name], cem.E
            base = getattr(cem, "base", "")
            if base in CEMENT_STRENGTH and base in CEMENTS:
                s, f = CEMENT_STRENGTH[base], cem.E / CEMENTS[base].E
                return CementStrength(s.compressive * f, s.tensile * f,
                                      f"{base}'s yield strains at E {cem.E:g} MPa: "
                                      f"{s.source}"), cem.E
            raise MaterialError(f"cement {cem.name!r} of {region_name!r} has no strength in "
                                "fem.strength.CEMENT_STRENGTH and no base cement that has one "
                                "(Cement.base): add one to run a pushover")
    cem = get_cement("pmma")
    return CEMENT_STRENGTH["pmma"], cem.E


def bone_damage_law(model, *, yield_compression: float = YIELD_COMPRESSION,
                    yield_tension: float = YIELD_TENSION, residual: float = RESIDUAL,
                    softening_strain: float = SOFTENING_STRAIN,
                    reference_size: float = REFERENCE_SIZE,
                    nonlocal_length: float = NONLOCAL_LENGTH,
                    endplates: str = "in_plane", cement_strengths: bool = True) -> DamageLaw:
    """The damage law of every element of a vertebra or segment model, from its material region
    (module docstring). Elements of no region, or of a part not listed, are elastic (logged).
    ``nonlocal_length`` 0: a local law with the crack band alone. ``endplates``: "in_plane"
    (the bony endplates yield by their in-plane strain) or "elastic" (they never fail, the law
    before 2026-12-07). ``cement_strengths`` False leaves cement elastic instead of looking its
    strength up (:func:`damage_history` needs only the bone's state, whatever the cement)."""
    from .assembly import element_volumes

    if endplates not in ENDPLATE_LAWS:
        raise MaterialError(f"endplates must be one of {', '.join(ENDPLATE_LAWS)}, got "
                            f"{endplates!r}")

    n = model.n_elements
    ec = np.full(n, np.inf)
    et = np.full(n, np.inf)
    rho = np.full(n, residual, dtype=float)
    soft = np.full(n, softening_strain, dtype=float)
    kappa_ratio = np.ones(n)  # modulus ratio of damaged elements (1 = intact)
    layer = np.zeros(n, dtype=bool)  # thin layers: damage by their in-plane strain
    factors = {getattr(fr, "level", None): float(getattr(fr, "damage_factor", 1.0))
               for fr in model.metadata.get("fractures", [])}
    unknown = []

    def assign(el, name, part):
        # a later, overlapping set (cement carved out of a layer) takes the element whole
        layer[el] = part in LAYER_PARTS and endplates == "in_plane"
        if part in LAYER_PARTS and endplates == "elastic" or part in ELASTIC_PARTS:
            ec[el], et[el] = np.inf, np.inf
            kappa_ratio[el] = 1.0
        elif part in BONE_PARTS or part in DAMAGED_PARTS or part in LAYER_PARTS:
            ec[el], et[el] = yield_compression, yield_tension
            rho[el], soft[el] = residual, softening_strain
            kappa_ratio[el] = factors.get(name.split("/", 1)[0], 1.0) \
                if part in DAMAGED_PARTS else 1.0
        elif part in CEMENT_PARTS or part in COMPOSITE_PARTS or part.startswith("cement"):
            if cement_strengths:
                s, E_c = _cement_strength(model, name)
                ec[el], et[el] = s.compressive / E_c, s.tensile / E_c
                rho[el], soft[el] = CEMENT_RESIDUAL, CEMENT_SOFTENING
            else:
                ec[el], et[el] = np.inf, np.inf
            kappa_ratio[el] = 1.0
        else:
            return False
        return True

    # the material regions first, then the element sets that procedures carve out of them
    # (a fracture's damaged band keeps its material region "trabecular" but lost modulus; cement
    # and the elastic endplates win where sets overlap, as in fem.result.region_parts)
    for code, name in enumerate(model.region_names):
        el = np.nonzero(model.element_region == code)[0]
        if len(el) and not assign(el, name, _part(name)):
            unknown.append(name)
    groups = (LAYER_PARTS, DAMAGED_PARTS, ELASTIC_PARTS, COMPOSITE_PARTS, CEMENT_PARTS)
    for group in groups:
        for name, el in model.regions.items():
            part = _part(name)
            if len(el) and (part in group or (group is CEMENT_PARTS
                                              and part.startswith("cement")
                                              and part not in COMPOSITE_PARTS)):
                assign(np.asarray(el, dtype=np.int64), name, part)
    if unknown:
        logger.info("elastic in the pushover (no strength law for their part): %s",
                    ", ".join(unknown))
    sources = (
        "bone yield strains 0.84 % / 0.78 % (Kopperdahl & Keaveny 1998, J Biomech 31:601)",
        f"residual {residual:g} of yield after {softening_strain:g} strain at "
        f"{reference_size:g} mm elements: ASSUMPTION (fem.strength docstring)",
        BAZANT_OH_1983,
    ) + ((f"nonlocal length {nonlocal_length:g} mm: ASSUMPTION (fem.strength docstring)",
          PIJAUDIER_CABOT_BAZANT_1987) if nonlocal_length > 0 else ())
    if layer.any():
        sources += (FIELDS_2010,)
    law = DamageLaw(ec, et, rho, soft, np.zeros(n), float(reference_size), sources,
                    nonlocal_length=float(nonlocal_length),
                    layer_normal=layer_normals(model, layer) if layer.any() else None)
    damaged = kappa_ratio < 1.0
    if damaged.any():
        scale = np.where(damaged, crushed_strain_scale(model), 1.0)
        if (scale != 1.0).any():  # the "original" envelope of compacted crushed bone
            law = dataclasses.replace(law, yield_strain_compression=ec * scale,
                                      yield_strain_tension=et * scale,
                                      softening_strain=soft * scale)
        # the model holds the damaged modulus; the law scales the bone's undamaged one
        h = np.cbrt(element_volumes(model))
        k0 = law.kappa_for_modulus_ratio(np.where(damaged, kappa_ratio, 1.0), h)
        intact = np.where(damaged, np.asarray(model.E) / kappa_ratio, np.nan)
        law = dataclasses.replace(law, kappa0=np.where(damaged, k0, 0.0), intact_modulus=intact)
    return law


def crushed_strain_scale(model) -> np.ndarray:
    """Per element, the factor on the strains of the damage law's envelope: 1 / the modulus
    factor of the densification (:func:`fem.augment.compaction_factors`) for the body elements
    of a level whose fracture asked for the ``"original"`` envelope (``pathology.compress``'s
    ``envelope``), 1 elsewhere. :func:`bone_damage_law` applies it to the damaged elements."""
    from .augment import compaction_factors

    original = [getattr(fr, "level", None) for fr in model.metadata.get("fractures", [])
                if getattr(fr, "envelope", "compacted") == "original"]
    return 1.0 / compaction_factors(model, original)


def damage_history(model) -> np.ndarray:
    """The damage history of every element as a strain, in units of bone's yield strain
    (:data:`YIELD_COMPRESSION`; 0 where the bone is intact): a fracture's damaged bone reloads
    along its reduced modulus up to ``kappa0`` times its own yield strain, where it stands on
    the law's envelope again (module docstring, "Damaged bone"; with the defaults and the
    measured damage factor 0.14, on the residual plateau: 0.6 / 0.14 = 4.3; with the
    ``"original"`` envelope of compacted bone, that over its modulus factor). The linear strain
    criteria of :mod:`fem.metrics` read a damaged element's strain over it."""
    law = bone_damage_law(model, cement_strengths=False)
    k0 = np.asarray(law.kappa0, dtype=float)
    out = np.zeros_like(k0)
    hit = k0 > 0.0  # damaged bone: finite yield strains (cement and the elastic parts: 0)
    out[hit] = k0[hit] * law.yield_strain_compression[hit] / YIELD_COMPRESSION
    return out


def layer_normals(model, layer) -> np.ndarray:
    """Unit normals (n_elements, 3) of the thin-layer elements of mask ``layer`` (zero rows
    elsewhere): the direction of least spread of the centroids of the layer's elements within
    :data:`LAYER_NORMAL_RADIUS` element sizes (the local plane of a bony endplate, curved or
    tilted as it is). The layers of a level's two endplates are told apart by their parts
    (``endplate_superior`` / ``endplate_inferior``; a fracture's ``damaged_endplate`` joins
    the side of the level's centre it lies on, along the level's axis, or without an anatomy
    the nearer endplate), so a thin body's two endplates do not share a plane; where a
    neighbourhood has too few elements to span a plane, its whole layer's plane is used."""
    from scipy.spatial import cKDTree

    from .anatomy import anatomy_of
    from .assembly import element_centroids, element_volumes

    layer = np.asarray(layer, dtype=bool)
    out = np.zeros((len(layer), 3))
    idx = np.nonzero(layer)[0]
    if not len(idx):
        return out
    cent = element_centroids(model)
    anatomy = anatomy_of(model)
    radius = LAYER_NORMAL_RADIUS * float(np.median(np.cbrt(element_volumes(model)[idx])))
    # one sheet per level and side
    sheet = np.full(len(layer), -1, dtype=np.int64)
    sheets: dict = {}
    for name, el in model.regions.items():
        level, _, part = name.rpartition("/")
        if part in ("endplate_superior", "endplate_inferior") and len(el):
            el = np.asarray(el, dtype=np.int64)
            el = el[layer[el]]
            sheet[el] = sheets.setdefault((level, part), len(sheets))
    for name, el in model.regions.items():
        level, _, part = name.rpartition("/")
        el = np.asarray(el, dtype=np.int64)
        if part != "damaged_endplate" or not len(el):
            continue
        el = el[layer[el]]
        if level in anatomy.levels:
            f = anatomy[level].frame()
            up = f.superior(cent[el])
            for side, sel in (("endplate_superior", up), ("endplate_inferior", ~up)):
                sheet[el[sel]] = sheets.setdefault((level, side), len(sheets))
            continue
        own = [k for k in sheets if k[0] == level]
        if not own:
            sheet[el] = sheets.setdefault((level, part), len(sheets))
            continue
        ref = np.nonzero(np.isin(sheet, [sheets[k] for k in own]))[0]
        _, near = cKDTree(cent[ref]).query(cent[el])
        sheet[el] = sheet[ref[near]]
    rest = idx[sheet[idx] < 0]  # layer elements of no named endplate: one sheet
    sheet[rest] = len(sheets)
    for s in np.unique(sheet[idx]):
        el = idx[sheet[idx] == s]
        c = cent[el]
        whole = _plane_normal(c - c.mean(axis=0))
        tree = cKDTree(c)
        pairs = tree.query_pairs(radius, output_type="ndarray")
        i = np.concatenate([pairs[:, 0], pairs[:, 1], np.arange(len(el))])
        j = np.concatenate([pairs[:, 1], pairs[:, 0], np.arange(len(el))])
        count = np.bincount(i, minlength=len(el)).astype(float)
        mean = np.stack([np.bincount(i, weights=c[j, k], minlength=len(el))
                         for k in range(3)], axis=1) / count[:, None]
        d = c[j] - mean[i]
        cov = np.zeros((len(el), 3, 3))
        np.add.at(cov, i, d[:, :, None] * d[:, None, :])
        w, v = np.linalg.eigh(cov)
        # a plane: spread in two directions, the least clearly below the next; else (too few
        # neighbours, or a strip along the layer's edge) the whole sheet's plane
        flat = (count >= 6) & (w[:, 0] < 0.25 * w[:, 1]) & (w[:, 1] > 0.1 * w[:, 2])
        n = np.where(flat[:, None], v[:, :, 0], whole[None, :])
        out[el] = n / np.linalg.norm(n, axis=1, keepdims=True)
    return out


def _plane_normal(d) -> np.ndarray:
    """The direction of least spread of centred points (m, 3); the vertical where they are
    too few to span a plane."""
    if len(d) < 3:
        return np.array([0.0, 0.0, 1.0])
    return np.linalg.eigh(d.T @ d)[1][:, 0]


def _level(model, level: str) -> np.ndarray:
    """The elements of ``level`` (:func:`fem.parts.level_elements`); an error naming the
    levels where it has none."""
    elements = level_elements(model, level)
    if not len(elements):
        raise ModelError(f"the model has no level {level!r} (levels: "
                         f"{', '.join(model.metadata.get('levels', [])) or 'none'})")
    return elements


def pushover(model, *, law: DamageLaw | None = None, level: str | None = None, **kwargs):
    """:func:`fem.solve_nonlinear` of a loaded vertebra or segment model with
    :func:`bone_damage_law` (or ``law``); with ``level``, only that level's elements can fail
    (the strength of that level within the segment), and the step control follows the level's
    own deformation between its endplates (its shortening, plus its rotation times the moment
    over the force under a combined load: work-conjugate to the load,
    :mod:`fem.nonlinear_systems`): the discs are far more compliant than bone, so under
    the loading plate's displacement the curve of a failing level snaps back (the discs give
    back their stored energy faster than the softening bone can absorb it) and no
    displacement-controlled step could follow it. ``kwargs`` go to solve_nonlinear."""
    law = bone_damage_law(model) if law is None else law
    if level is not None:
        law = law.select(_level(model, level))
        sets = (f"{level}/superior", f"{level}/inferior")
        if all(s in model.node_sets for s in sets):
            kwargs.setdefault("control", sets)
    return solve_nonlinear(model, law, **kwargs)


def first_failure_stops(drop: float = FIRST_PEAK_DROP, offset: float | None = None) -> dict:
    """The stop keywords of :func:`fem.solve_nonlinear` that end a pushover at its first failure:
    the first step whose force falls ``drop`` below its running maximum (``stop_ratio``), where
    the curve has flattened to a plateau (``stop_plateau``, :data:`fem.nonlinear.LIMIT_TANGENT`),
    or, with ``offset`` (mm of the level's shortening), the first step past its offset yield
    (``stop_offset``). What a study's ``pushover_end = "first_failure"`` uses (docs/nonlinear.md,
    "The first failure")."""
    stops = {"stop_ratio": 1.0 - float(drop), "stop_plateau": LIMIT_TANGENT}
    if offset is not None:
        stops["stop_offset"] = float(offset)
    return stops


def level_strength(model, level: str, *, drop: float = FIRST_PEAK_DROP,
                   offset: float | None = OFFSET_YIELD, **kwargs) -> float:
    """The strength (N) of ``level`` in a loaded segment, as a study reports it: the first failure
    (:meth:`~fem.nonlinear_result.NonlinearResult.first_failure`) of a :func:`pushover` with
    only that level able to fail, stopped there (:func:`first_failure_stops`; ``kwargs`` go to
    the pushover and may override the stops): the first of a fall of ``drop`` below the
    curve's running maximum and its offset yield, the crossing of its initial stiffness's line
    shifted by ``offset`` times the level's mean height (:func:`fem.anatomy.level_height`;
    ``None``: the fall alone, as before 2026-12-07).
    In a segment a level's curve can fall at its first failure and then rise again, far past it,
    to the pushover's caps: its largest force (``pushover(...).peak_load`` of a curve run on) is
    then a bound that moves with the caps, not a failure load; and a level loaded through its
    discs can bend over without falling, to a plateau millimetres on."""
    mm = None
    if offset is not None:
        in_range("offset", offset, 0.0, 0.05, lo_open=True, error=ParameterError)
        try:
            mm = offset * level_height(model, level)
        except SetError as e:
            raise SetError(f"{e}; level_strength reads the offset yield at a share of the "
                           "level's height, which needs the level's anatomy and endplate node "
                           "sets: pass offset=None for the fall alone") from e
    kwargs = {**first_failure_stops(drop, mm), **kwargs}
    return pushover(model, level=level, **kwargs).first_failure(drop, mm)


#: share of an overload's deformation that vertebral trabecular bone gives back when unloaded: a
#: LOWER BOUND from Fyhrie & Schaffler 1994 (Bone 15:105, abstract checked), whose cores of human
#: vertebral cancellous bone, compressed to 15 % strain, all recovered at least 94 % of their
#: height (at least 60 % of the imposed deformation); the failure was microcracking, not broken
#: trabeculae
TRABECULAR_RECOVERY = 0.6
#: the parts of a fractured level that give back that share: its trabecular core and the
#: fracture's crushed band of it (the cortex, bony endplates and everything else keep their
#: collapse: an ASSUMPTION, :func:`crush_recovery`)
RECOVERING_PARTS = ("trabecular", "damaged")


@dataclass(frozen=True)
class Recovery:
    """What a fractured level gives back when unloaded (:func:`crush_recovery`): its collapse
    and the part of it recovered, both as the mean axial motion of its superior endplate
    relative to its inferior one (mm)."""

    level: str
    crush_mm: float
    recovered_mm: float
    recoverable: float

    @property
    def fraction(self) -> float:
        """Recovered over collapsed height."""
        return self.recovered_mm / self.crush_mm


def crush_recovery(model, level: str, *, recoverable: float = TRABECULAR_RECOVERY,
                   support: str = "bottom", solver: str = "auto", axis=None) -> Recovery:
    """The height a fractured ``level`` gives back, unloaded, from the recoverable strain of its
    trabecular bone (:data:`TRABECULAR_RECOVERY` of the strain its collapse imposed).

    ``model``: a model fractured by :func:`fem.meshes.pathology.compress` (its
    ``metadata["collapse"][level]`` gives every node's intact position). Every element of the
    level's :data:`RECOVERING_PARTS` that the collapse shortened to ``J`` of its volume takes an
    eigenstrain ``recoverable x (1 / J - 1)`` along the level's axis (the strain that returns
    that share of its lost height); everything else, the cortical shell and bony endplates
    included, keeps its collapse (an ASSUMPTION: no overload recovery of the thin shells was
    available; a collapsed shell that buckled or broke is taken to stay so). The eigenstrain's
    equivalent nodal forces (each element's stiffness times the affine displacement of its
    eigenstrain) are solved with ``support`` fixed and nothing else loaded, as
    :func:`fem.solve` solves any model (verified, with the model's moduli: the fracture's).
    ``axis``: the level's axial direction (default: its level frame's).

    Add the elastic springback from the load the level was crushed under (force over the
    crushed level's stiffness) for the whole recovery on unloading. Neither term depends on
    time: creep recovery over minutes (Wegrzyn et al. 2011 measured after 30 minutes) is in
    ``recoverable`` only as far as Fyhrie & Schaffler's unloading held it."""
    from .analysis import solve
    from .anatomy import level_frame
    from .assembly import assemble_stiffness, element_volumes, to_matrix
    from .kernels.backend import get_backend
    from .loads import Fixed, NodalForce
    from .model import Model

    if not 0.0 <= recoverable <= 1.0:
        raise ModelError(f"recoverable must lie in 0..1 (a share of the imposed strain), got "
                         f"{recoverable}")
    collapse = model.metadata.get("collapse", {}).get(level)
    if collapse is None:
        raise ModelError(f"{level} has no recorded collapse (metadata['collapse']): fracture it "
                         "with fem.meshes.pathology.compress first")
    if len(model.blocks) != 1:
        raise ModelError("crush_recovery expects a model with one cell block")
    _level(model, level)
    parts = [model.regions[f"{level}/{p}"] for p in RECOVERING_PARTS
             if len(model.regions.get(f"{level}/{p}", ()))]
    if not parts:
        raise ModelError(f"{level} has no trabecular regions ({', '.join(RECOVERING_PARTS)})")
    el = np.unique(np.concatenate(parts))
    axis = np.asarray(level_frame(model, level).axial if axis is None else axis, dtype=float)
    axis = axis / np.linalg.norm(axis)
    intact = model.copy()
    intact.points = model.points - collapse
    J = element_volumes(model)[el] / element_volumes(intact)[el]
    eps = recoverable * (1.0 / J - 1.0)
    block = model.blocks[0]
    conn = block.conn[el - block.start]
    # each element's stiffness times its eigenstrain's affine displacement, on a copy of the
    # elements that shares no nodes, summed back onto the model's nodes
    loose = Model.from_arrays(model.points[conn].reshape(-1, 3),
                              [(block.type, np.arange(conn.size).reshape(conn.shape))],
                              E=model.E[el], nu=model.nu[el])
    loose.ortho[:] = model.ortho[el]
    loose.ortho_axis[:] = model.ortho_axis[el]
    loose.hex8_formulation = model.hex8_formulation
    backend = get_backend("numpy")
    K = to_matrix(*assemble_stiffness(loose, backend), backend)
    x = loose.points.reshape(conn.shape + (3,))
    s = (x - x.mean(axis=1, keepdims=True)) @ axis
    u = (eps[:, None] * s)[..., None] * axis
    f = np.zeros((model.n_nodes, 3))
    np.add.at(f, conn.ravel(), (K @ u.ravel()).reshape(-1, 3))
    nodes = np.flatnonzero(np.abs(f).sum(axis=1) > 0.0)
    free = model.copy()
    free.conditions = [Fixed(support, "xyz"), NodalForce(nodes, f[nodes])]
    r = solve(free, solver=solver)
    top, bottom = (model.node_sets[f"{level}/{side}"] for side in ("superior", "inferior"))
    rise = float((r.displacement[top] @ axis).mean() - (r.displacement[bottom] @ axis).mean())
    crush = float((collapse[bottom] @ axis).mean() - (collapse[top] @ axis).mean())
    return Recovery(level, crush, rise, float(recoverable))
