"""Posterior ligaments of a segment: tension-only fibres between the posterior elements of
neighbouring levels. Units: mm, N, MPa.

A segment without ligaments holds a bending moment with its discs alone, and the discs of this
project are far softer in bending than a ligamentous motion segment (docs/validation.md, "A
segment in bending"). In flexion the posterior ligaments are the structures furthest from the
disc's centre of rotation and, stretched, carry most of the moment; in extension and under
axial compression they go slack. A builder that makes them (``ligaments=True`` of
``fem.meshes.vertebra.segment_model``, ``fem.meshes.ssm.ssm_segment_model`` and
``fem.meshes.patient.patient_segment_model``) fills the gaps between the neighbouring levels'
posterior elements with three regions per disc, ``"<upper>-<lower>/<part>"`` of
:data:`LIGAMENT_PARTS`:

* ``ligament_interspinous``: between the spinous processes, the interspinous and supraspinous
  ligaments together;
* ``ligament_flavum``: between the laminae, medially (the ligamentum flavum);
* ``ligament_capsular``: laterally, standing in for the facet capsules: between the laminae of
  the parametric vertebra, which has no articular processes, and between the articular
  processes of real anatomy (the shape model, a patient's CT) where one stands above the other
  (the joint's own gap, where they stand side by side, stays empty); both sides are one
  region.

Each is solved as fibres along the line between its two attachments, tension-only, on a soft
ground (:class:`fem.fibres.FibreLaw` at 90 degrees to the transverse plane, so both families run
along that line), by the secant iterations of :func:`fem.fibres.solve_fibres` with the discs'
fibres (:func:`fem.fibres.solve_disc` takes both). The fibres' modulus makes the region's axial
stiffness the ligament's measured one: ``E = k L / A``, with ``L`` the distance between the
centroids of the region's nodes on the upper and on the lower level's bone and ``A`` its volume
over ``L`` (:func:`ligament_fibres`), so the stiffness does not depend on the voxel size or the
block's shape; its strain does (the block is longer than the ligament, so it strains less for a
given stretch), which moves only where the toe ends. Where no fibre solve runs (``fem.solve``)
a ligament is its ground substance alone: nearly nothing.

Stiffness (:data:`LIGAMENTS`): the linear-region tensile stiffness of each ligament, from the
properties FE models of the lumbar spine take (modulus, cross-section and length, whose
product over the length is the stiffness). The toe (:data:`TOE_STRAIN`) is an ASSUMPTION of the
order of the transition strains those tables give. What the model leaves out: facet contact
(extension and axial rotation are resisted by the discs and the slack ligaments' ground alone),
the anterior and posterior longitudinal ligaments (next to the disc's centre, they add little
in flexion), the ligaments' pre-strain (the ligamentum flavum is pre-tensioned in vivo) and
their stiffening at large strain.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .analysis import solve
from .assembly import element_volumes
from .errors import SetError
from .fibres import FibreLaw, FibreRegion, solve_fibres
from .parts import LIGAMENT, level_elements, regions_of, split
from .validate import in_range

#: the ligament parts a builder makes, between the posterior elements of two levels
LIGAMENT_PARTS = LIGAMENT

KUO_2010 = (
    "Kuo C-S et al. (2010) BMC Musculoskelet Disord 11:151, Table 3 "
    "(https://pmc.ncbi.nlm.nih.gov/articles/PMC2913991/table/T3; the bilinear ligament "
    "properties of their lumbar FE model, from its references): small-strain modulus, "
    "cross-section, length")


@dataclass(frozen=True)
class Ligament:
    """A posterior ligament: its linear-region tensile ``stiffness`` (N/mm) and where it is
    from."""

    part: str
    stiffness: float
    source: str

    def __post_init__(self):
        in_range(f"{self.part} stiffness", self.stiffness, 0.0, lo_open=True, unit="N/mm")


#: the ligaments' stiffnesses (N/mm): modulus x area / length of the FE table
LIGAMENTS = {
    "ligament_interspinous": Ligament(
        "ligament_interspinous", 10.0 * 26.0 / 13.0 + 8.0 * 23.0 / 11.0,
        f"interspinous (10 MPa, 26 mm^2, 13 mm) and supraspinous (8 MPa, 23 mm^2, 11 mm) "
        f"ligaments in parallel: {KUO_2010}"),
    "ligament_flavum": Ligament(
        "ligament_flavum", 15.0 * 67.0 / 19.0,
        f"ligamentum flavum (15 MPa, 67 mm^2, 19 mm): {KUO_2010}"),
    "ligament_capsular": Ligament(
        "ligament_capsular", 36.0,
        "facet capsules, 36 N/mm up to 25 % strain: the piecewise ligament table of "
        "J Healthc Eng 2021:5542595, Table 2 (https://pmc.ncbi.nlm.nih.gov/articles/PMC8147546/"
        "table/tab2), taken for both capsules together (the table does not say whether it is "
        "per side)"),
}

#: the ligaments' ground substance (E MPa, nu): ASSUMPTION, soft (the annulus's ground of
#: fem.fibres): it holds the region together across its fibres and carries little else
GROUND = (0.8, 0.45)
#: strain at the end of the fibres' toe: ASSUMPTION, the order of the 6-20 % transition strains
#: of the FE table (where its modulus steps up)
TOE_STRAIN = 0.05
#: how far off a ligament the axis of its fibres' cylindrical frame passes (mm): the fibres run
#: along the axis, so the frame's radial direction is immaterial, but it must exist
_OFF_AXIS = 1.0e4


def has_ligaments(model) -> bool:
    """Whether ``model`` has ligament regions (:data:`LIGAMENT_PARTS`)."""
    return bool(regions_of(model, LIGAMENT_PARTS))


@dataclass(frozen=True)
class Span:
    """Where a ligament region runs: ``name``, its ``elements``, the centroids of its nodes on
    the upper and on the lower level's bone (``upper``, ``lower``, mm), the distance between
    them (``length``, mm) and its volume over that (``area``, mm^2)."""

    name: str
    elements: np.ndarray
    upper: np.ndarray
    lower: np.ndarray
    length: float
    area: float

    @property
    def direction(self) -> np.ndarray:
        """Unit vector from the lower attachment to the upper one (along the fibres)."""
        return (self.upper - self.lower) / self.length


def spans(model, volume=None) -> list[Span]:
    """The :class:`Span` of every ligament region ``"<upper>-<lower>/<part>"`` of ``model``
    (:data:`LIGAMENT_PARTS`), in the model's region order; none where it has no ligaments.
    ``volume``: the elements' volumes (mm^3) where the caller has them."""
    out = []
    for name in regions_of(model, LIGAMENT_PARTS):
        upper, _, lower = split(name)[0].partition("-")
        el = model.regions[name]
        own = np.unique(model.element_nodes(el))
        ends = []
        for level in (upper, lower):
            bone = np.intersect1d(own, model.element_nodes(level_elements(model, level)))
            if not len(bone):
                raise SetError(f"ligament {name!r} does not touch level {level!r}'s bone: a "
                               "ligament region must join the two levels its name gives")
            ends.append(model.points[bone].mean(axis=0))
        length = float(np.linalg.norm(ends[0] - ends[1]))
        if length <= 0.0:
            raise SetError(f"ligament {name!r}: its two attachments coincide")
        if volume is None:
            volume = element_volumes(model)
        out.append(Span(name, el, ends[0], ends[1], length,
                        float(np.asarray(volume)[el].sum()) / length))
    return out


def ligament_fibres(model) -> list[FibreRegion]:
    """One :class:`~fem.fibres.FibreRegion` per ligament region ``"<upper>-<lower>/<part>"`` of
    ``model``, with its own law: fibres along the line from the centroid of its nodes on the
    lower level's bone to that of its nodes on the upper level's, of modulus
    ``stiffness x L / A`` (module docstring); none where the model has no ligaments."""
    out = []
    for sp in spans(model):
        direction = sp.direction
        # any direction square to the fibres, for the frame's axis to pass far off the region
        perp = np.cross(direction, np.eye(3)[np.argmin(np.abs(direction))])
        centre = 0.5 * (sp.upper + sp.lower)
        law = FibreLaw(modulus=LIGAMENTS[split(sp.name)[1]].stiffness * sp.length / sp.area,
                       toe_strain=TOE_STRAIN, angle=90.0, ground=GROUND)
        out.append(FibreRegion(sp.name, sp.elements,
                               (centre + _OFF_AXIS * perp / np.linalg.norm(perp), direction),
                               law=law))
    return out


def solve_solid_discs(model, **kwargs):
    """Solve a segment whose discs are the builders' solid annulus: where it has posterior
    ligaments, their tension-only fibres by the secant iterations (:func:`fem.fibres.
    solve_fibres` with the exact stiffness, which for fibres along their axis drops nothing),
    else the one linear solve (:func:`fem.solve`). ``kwargs``: the solver's (``backend``,
    ``solver``, ``callback``, ...). The discs' fibres too: :func:`fem.fibres.solve_disc`."""
    fibres = ligament_fibres(model)
    if fibres:
        return solve_fibres(model, fibres, coupling=True, **kwargs)
    return solve(model, **kwargs)


def ligament_forces(model, stress, volume) -> dict[str, float]:
    """The tension (N; negative: compression) each ligament region of ``model`` carries, from
    the element ``stress`` (Voigt rows, MPa) and ``volume`` (mm^3) of a solution: the stress
    along its fibres, ``a . sigma . a``, volume-averaged over the region, times its cross-section
    ``A = V / L`` (:class:`Span`), i.e. ``sum(a . sigma . a V) / L``: the axial force through a
    prism under uniform stress exactly, and the mean force over the length elsewhere."""
    out = {}
    for sp in spans(model, volume):
        a = sp.direction
        s = np.asarray(stress)[sp.elements]
        along = (s[:, 0] * a[0] ** 2 + s[:, 1] * a[1] ** 2 + s[:, 2] * a[2] ** 2
                 + 2.0 * (s[:, 3] * a[0] * a[1] + s[:, 4] * a[1] * a[2] + s[:, 5] * a[0] * a[2]))
        out[sp.name] = float((along * np.asarray(volume)[sp.elements]).sum()) / sp.length
    return out
