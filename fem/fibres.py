"""A fibre-reinforced annulus: tension-only, stiffening collagen fibres on a soft ground
substance, solved by secant (fixed-point) iterations on the linear solvers. Units: mm, N, MPa.

The annulus fibrosus is lamellae of collagen fibres, the fibres of neighbouring lamellae at about
+-30 degrees to the transverse plane (Holzapfel et al. 2005, Biomech Model Mechanobiol 3:125:
fibre angles of about 23-45 degrees to the horizontal, photogrammetric), in a soft, hydrated
ground substance. The fibres carry no compression (they buckle) and stiffen as their crimp
straightens (a toe region, then a linear region). Each element of an annulus gets:

* the **ground substance**, isotropic: E 0.8 MPa, the annulus's axial tensile modulus, which the
  fibres at 60 degrees to the axis hardly touch (0.8 +- 0.9 MPa, Elliott & Setton 2001, J Biomech
  Eng 123:256), and nu 0.45 (the FE tables of ../shared/reference/biomechanics.md); hex8
  annulus elements on a ground that is nearly incompressible take B-bar (:meth:`fem.Model.bbar_mask`),
  so raising nu towards 0.5 (an undrained annulus) does not lock;
* **two fibre families**, directions ``a = cos(t) e_theta +- sin(t) e_z`` in the cylindrical axes
  about the disc's axis at the element's centre (t = 30 degrees), each in half of the volume
  (the lamellae alternate): per unit volume each adds ``0.5 E_s(eps_f) a x a x a x a`` to the
  stiffness, where ``eps_f = a . eps . a`` is the family's strain and ``E_s`` the secant modulus
  of the lamella along its fibres:

      sigma_f(eps) = 0                              eps <= 0   (no compression)
                   = E_L eps^2 / (2 eps_toe)        0 < eps < eps_toe   (toe: tangent rises from 0)
                   = E_L (eps - eps_toe / 2)        eps >= eps_toe      (linear region)

  ``E_L`` is the linear-region modulus of single annulus lamellae pulled along their fibres:
  59 +- 44 to 136 +- 34 MPa between the regions of Skaggs et al. 1994 (Spine 19:1310; the
  lamella modulus includes its ground substance, a percent of it); 80 MPa is the default,
  within that range and about the product of the fibre modulus and fibre fraction FE tables use
  (500 MPa x about 16 %); Skaggs's and Holzapfel's numbers were recalled, not re-checked
  against the papers (Elliott & Setton's were, in its abstract). ``eps_toe`` (2 %) is an
  ASSUMPTION of the order of collagen's toe
  region, not a measured annulus value: the segment-level numbers are reported with their
  sensitivity to it (docs/validation.md).

The secant stiffness is kept orthotropic in the cylindrical axes (``Model.set_orthotropic(...,
cylinder=...)``, verified against CalculiX), so that the :class:`~fem.Result`'s stresses are the
secant state's: the two families' terms that couple normal strain to the theta-z shear,
``(E_s+ - E_s-) cos^3 t sin t`` and ``... cos t sin^3 t``, are dropped. They vanish where both
families strain alike (axisymmetric compression of a round disc); :attr:`FibreState.asymmetry`
says how far a solution is from that (0.7 in the standing L4-L5: its bulging annulus shears in
theta-z). ``coupling=True`` assembles them as well (an exact anisotropic stiffness: +4 % nucleus
pressure, +8 % endplate bulge on that segment), at the price of ``result.stress`` in the fibre
elements holding the orthotropic part only. Where the annulus shears much, the orthotropic
secant can stall: equilibrium met, but fibres near zero strain flipping between tension and
compression from one iteration to the next (the shape model's real L4-L5 at 1 mm voxels, whose
fixed point the dropped terms make unstable). The default ``coupling="auto"`` then solves again
with the exact stiffness and warns (``FibreState.coupling``).

The disc's axis (:func:`disc_axis`) is the normal of its mid-plane: the bisector of the
least-squares planes through its two rims, where its side wall meets the bones. In a lordotic
spine the disc is tilted (about 20 degrees at the shape model's L4-L5, 3.4 degrees at the
parametric L4-L5, whose L5 is wedged). Until 2026-12-05 the axis was the line between the two
endplate centres, each measured on its own body's vertical: 73 degrees off the disc's normal
in the shape model's L4-L5, where the bodies stand 12 mm apart across the tilted disc, so its
fibres wound about a nearly antero-posterior line, and the orthotropic secant stalled there at
3 mm; vertical in the parametric segment.

Drainage (:func:`solve_disc`'s ``drainage``): the ground above is the *drained* solid, the FE
tables' nu 0.45. Loaded for seconds to minutes, as a testing machine or standing does, disc
tissue cannot drain: in confined compression the human annulus has an aggregate modulus
H_A = 0.56 +- 0.21 MPa and a permeability k = 0.20 +- 0.10 e-15 m^4/(N s) (Iatridis et al. 1998,
J Biomech 31:535; abstract checked), so fluid leaves a layer of drainage length L in about
``L^2 / (H_A k)`` (:func:`consolidation_time`): 62 hours for 5 mm, 2.5 hours for 1 mm. Within
minutes the tissue keeps its volume: its shear modulus is the drained one, its bulk modulus that
of the water it holds (:func:`undrained`: ``WATER_BULK_MODULUS``, a lower bound on the mixture's;
the biphasic theory takes both phases incompressible). ``drainage="undrained"`` gives the
annulus ground and the nucleus that bulk modulus (nu 0.49994 and 0.49992).

Large deformation: :func:`solve_disc` with ``kinematics="finite"`` solves the same annulus with
the fibres stretched by their Green-Lagrange strain (:mod:`fem.finite_strain`).

Secant iteration (:func:`solve_fibres`): the fibre strains of the last iterate set every annulus
element's secant constants; the model is reassembled and solved again by CG, warm-started, with
the AMG preconditioner of the first iterate or, for direct-sized models, the LU factors of the
first iterate's stiffness (which differs from the later ones in the annulus only). The material is
elastic (the stress is a function of the strain), so the answer does not depend on a load path
and the full load is applied at once, from fibres at the end of their toe. In the toe the
plain secant map oscillates (for sigma = k eps^2 the next strain is F / (k eps): slope -1 at the
fixed point), far into the linear region it barely moves (slope near 0), so the fibre strains
are relaxed, starting at ``relaxation`` = 0.5 (which makes a slope of -1 vanish), by Aitken's
dynamic relaxation (Irons & Tuck 1969, Int J Numer Methods Eng 1:275): the factor follows the
last two steps of the map, within [0.05, 1]. Converged: the out-of-balance force with the
updated constants below ``tol`` of the load vector (2-norm), as :mod:`fem.nonlinear` checks
equilibrium, and the fibre strains' last step below ``strain_tol`` (1 %) of the largest fibre
strain (or of the toe strain): where displacements are prescribed the out-of-balance force alone cannot see
constants that lag the strain.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
import warnings
from dataclasses import dataclass, field

import numpy as np

from . import assembly
from . import system as _system
from .analysis import DIRECT_MAX_DOF, amg_preconditioner, constrain, verify_answer
from .errors import ConvergenceError, MaterialError, SetError, SolverError
from .kernels import elastic
from .kernels.backend import BackendError, get_backend, scatter_add
from .nonlinear_systems import Perturbed, change_pieces, element_strain_operator, kept_dofs
from .parallel import RowSplit, serial_blas
from .parts import level_elements, region, split
from .result import Result
from .solvers import SolveInfo, cg, direct, factored_solve, factorise, rigid_body_modes
from .validate import in_range

logger = logging.getLogger(__name__)

ELLIOTT_SETTON_2001 = ("Elliott DM, Setton LA (2001) Anisotropic and inhomogeneous tensile "
                       "behavior of the human anulus fibrosus. J Biomech Eng 123:256-263 (axial "
                       "tensile modulus 0.8 +- 0.9 MPa; circumferential 17.4 +- 14.3 outer, "
                       "5.6 +- 4.7 inner)")
SKAGGS_1994 = ("Skaggs DL, Weidenbaum M, Iatridis JC, Ratcliffe A, Mow VC (1994) Regional "
               "variation in tensile properties and biochemical composition of the human lumbar "
               "anulus fibrosus. Spine 19:1310-1319 (single lamellae along their fibres, "
               "59 +- 44 to 136 +- 34 MPa between regions)")
HOLZAPFEL_2005 = ("Holzapfel GA, Schulze-Bauer CAJ, Feigl G, Regitnig P (2005) Single lamellar "
                  "mechanics of the human lumbar anulus fibrosus. Biomech Model Mechanobiol "
                  "3:125-140 (fibre angles about 23-45 degrees to the horizontal)")

IATRIDIS_1998 = ("Iatridis JC, Setton LA, Foster RJ, Rawlins BA, Weidenbaum M, Mow VC (1998) "
                 "Degeneration affects the anisotropic and nonlinear behaviors of human anulus "
                 "fibrosus in compression. J Biomech 31:535-544 (confined compression of L2-3 "
                 "anterior outer annulus: aggregate modulus H_A0 0.56 +- 0.21 MPa non-degenerate, "
                 "permeability k0 0.20 +- 0.10 e-15 m^4/N-s)")
WATER = ("water's isothermal compressibility, about 4.5e-10 1/Pa at 20-37 C (Kell 1975, J Chem "
         "Eng Data 20:97; a physical constant, recalled): bulk modulus 2.2 GPa")

#: the annulus's aggregate modulus (MPa) and permeability (m^4 / (N s)), Iatridis et al. 1998
AGGREGATE_MODULUS = 0.56
PERMEABILITY = 0.20e-15
#: bulk modulus of water (MPa): an undrained tissue's, keeping its drained shear modulus
WATER_BULK_MODULUS = 2200.0
#: how the disc's water behaves under the load (:func:`solve_disc`)
DRAINAGES = ("drained", "undrained")

#: fibre angle to the transverse plane (degrees), Holzapfel et al. 2005's range
FIBRE_ANGLE = 30.0
#: the ground substance (E MPa, nu): Elliott & Setton 2001's axial tensile modulus
GROUND = (0.8, 0.45)
#: linear-region modulus of a lamella along its fibres (MPa), within Skaggs et al. 1994's regions
LAMELLA_MODULUS = 80.0
#: strain at the end of the toe region: ASSUMPTION (order of collagen's crimp straightening)
TOE_STRAIN = 0.02
#: volume share of each of the two families (alternate lamellae)
FAMILY_SHARE = 0.5
#: secant iterations' defaults: equilibrium tolerance, relaxation of the fibre strains
TOL = 1e-3
#: ... and the fibre strains' last step, relative to the largest fibre strain (the fibre stress
#: where it is largest consistent with the strain to 1 %)
STRAIN_TOL = 1e-2
RELAXATION = 0.5
#: ``coupling="auto"``: iterations in equilibrium with the fibre strains still moving (counted
#: over the whole iteration, not in a row: a stall's out-of-balance force can spike above the
#: tolerance now and then), after which the orthotropic secant counts as stalled
STALL_ITERATIONS = 15
#: the least relaxation factor Aitken's update may take
MIN_RELAXATION = 0.05
MAX_ITERATIONS = 60
#: a secant iteration's linear solve stops at FORCING x the out-of-balance force it starts
#: from (Eisenstat & Walker 1996, SIAM J Sci Comput 17:16: an inexact Newton method's forcing
#: term; a fixed-point iteration converges as it does with exact solves while the solve's
#: error stays a fraction of the step), and at most FIRST_RTOL (the first solve)
FORCING = 0.1
FIRST_RTOL = 1e-2


#: the entries of a Voigt stiffness an orthotropic material has in its own axes
ORTHOTROPIC_ENTRIES = np.zeros((6, 6), dtype=bool)
ORTHOTROPIC_ENTRIES[:3, :3] = True
ORTHOTROPIC_ENTRIES[[3, 4, 5], [3, 4, 5]] = True


@dataclass(frozen=True)
class FibreLaw:
    """Tension-only, toe-to-linear fibres at +-``angle`` degrees to the transverse plane on an
    isotropic ground substance ``ground`` = (E MPa, nu) (module docstring for the sources)."""

    modulus: float = LAMELLA_MODULUS
    toe_strain: float = TOE_STRAIN
    angle: float = FIBRE_ANGLE
    ground: tuple = GROUND
    share: float = FAMILY_SHARE

    def __post_init__(self):
        in_range("fibre modulus", self.modulus, 0.0, unit="MPa", error=MaterialError)
        in_range("toe strain", self.toe_strain, 0.0, 0.5, lo_open=True, error=MaterialError)
        in_range("fibre angle", self.angle, 0.0, 90.0, unit="degrees", error=MaterialError)
        in_range("family share", self.share, 0.0, 1.0, error=MaterialError)
        try:
            E, nu = (float(v) for v in self.ground)
        except (TypeError, ValueError):
            raise MaterialError(f"ground must be (E MPa, nu), got {self.ground!r}") from None
        in_range("ground modulus", E, 0.0, lo_open=True, unit="MPa", error=MaterialError)
        in_range("ground Poisson's ratio", nu, -1.0, 0.5, lo_open=True, hi_open=True,
                 error=MaterialError)
        object.__setattr__(self, "ground", (E, nu))

    def stress(self, strain):
        """Fibre stress (MPa) of one lamella along its fibres at fibre strain ``strain``."""
        e = np.asarray(strain, dtype=float)
        k = self.toe_strain
        return np.where(e <= 0.0, 0.0, np.where(e < k, self.modulus * e * e / (2.0 * k),
                                                self.modulus * (e - 0.5 * k)))

    def secant(self, strain):
        """Secant modulus sigma_f / eps (MPa) along the fibres; 0 in compression."""
        e = np.asarray(strain, dtype=float)
        k = self.toe_strain
        safe = np.where(e > 0.0, e, 1.0)
        return np.where(e <= 0.0, 0.0, np.where(e < k, self.modulus * e / (2.0 * k),
                                                self.modulus * (1.0 - 0.5 * k / safe)))

    def tangent(self, strain):
        """Tangent modulus d sigma_f / d eps (MPa) along the fibres; 0 in compression."""
        e = np.asarray(strain, dtype=float)
        k = self.toe_strain
        return np.where(e <= 0.0, 0.0, np.where(e < k, self.modulus * e / k, self.modulus))

    def energy(self, strain):
        """Strain energy per unit volume of one lamella (MPa = mJ/mm^3) at fibre strain
        ``strain``: the integral of :meth:`stress`."""
        e = np.asarray(strain, dtype=float)
        k = self.toe_strain
        toe = self.modulus * np.minimum(e, k) ** 3 / (6.0 * k)
        lin = self.modulus * (0.5 * (e * e - k * k) - 0.5 * k * (e - k))
        return np.where(e <= 0.0, 0.0, np.where(e < k, toe, self.modulus * k * k / 6.0 + lin))

    def undrained(self, bulk_modulus: float = WATER_BULK_MODULUS) -> FibreLaw:
        """This law with its ground substance undrained (:func:`undrained`); fibres unchanged."""
        return dataclasses.replace(self, ground=undrained(*self.ground, bulk_modulus))

    def directions(self) -> np.ndarray:
        """(2, 3): the families' unit directions in the cylindrical axes (radial,
        circumferential, axial)."""
        t = math.radians(self.angle)
        return np.array([[0.0, math.cos(t), math.sin(t)], [0.0, math.cos(t), -math.sin(t)]])

    def stiffness(self, secants, *, orthotropic: bool = True) -> np.ndarray:
        """Voigt stiffness (m, 6, 6) in the cylindrical axes of the ground plus the families at
        secant moduli ``secants`` (2, m) MPa; with ``orthotropic`` the normal-shear coupling
        terms dropped (module docstring)."""
        secants = np.asarray(secants, dtype=float)
        lam, mu = assembly.lame(*self.ground)
        C0 = np.zeros((6, 6))
        C0[:3, :3] = lam
        C0[[0, 1, 2], [0, 1, 2]] += 2.0 * mu
        C0[[3, 4, 5], [3, 4, 5]] = mu
        C = np.broadcast_to(C0, (secants.shape[1], 6, 6)).copy()
        for a, Es in zip(self.directions(), secants):
            # Voigt (xx, yy, zz, xy, yz, xz) of a x a, on engineering shear strains
            v = np.array([a[0] ** 2, a[1] ** 2, a[2] ** 2, a[0] * a[1], a[1] * a[2], a[0] * a[2]])
            C += self.share * Es[:, None, None] * np.outer(v, v)
        if orthotropic:
            C[:, ~ORTHOTROPIC_ENTRIES] = 0.0
        return C

    def constants(self, secants) -> np.ndarray:
        """Engineering constants (m, 9) E1, E2, E3, nu12, nu13, nu23, G12, G13, G23 (1 radial,
        2 circumferential, 3 axial) of :meth:`stiffness`, as ``Model.set_orthotropic`` takes
        them."""
        C = self.stiffness(secants)
        S = np.linalg.inv(C[:, :3, :3])
        E = 1.0 / np.stack([S[:, 0, 0], S[:, 1, 1], S[:, 2, 2]], axis=1)
        nu = np.stack([-S[:, 0, 1] * E[:, 0], -S[:, 0, 2] * E[:, 0], -S[:, 1, 2] * E[:, 1]],
                      axis=1)
        G = np.stack([C[:, 3, 3], C[:, 5, 5], C[:, 4, 4]], axis=1)
        return np.concatenate([E, nu, G], axis=1)


def consolidation_time(length: float, aggregate_modulus: float = AGGREGATE_MODULUS,
                       permeability: float = PERMEABILITY) -> float:
    """Time (s) a poroelastic layer needs to drain over ``length`` (mm): ``L^2 / (H_A k)``,
    the time constant of confined consolidation, with the aggregate modulus ``H_A`` (MPa) and the
    permeability ``k`` (m^4 / (N s)) of Iatridis et al. 1998's annulus by default. Loads held
    for much less than this meet an undrained tissue (module docstring)."""
    L = in_range("drainage length", length, 0.0, lo_open=True, unit="mm", error=MaterialError)
    H = in_range("aggregate modulus", aggregate_modulus, 0.0, lo_open=True, unit="MPa",
                 error=MaterialError)
    k = in_range("permeability", permeability, 0.0, lo_open=True, unit="m^4/(N s)",
                 error=MaterialError)
    return (L * 1e-3) ** 2 / (H * 1e6 * k)


def undrained(E, nu, bulk_modulus: float = WATER_BULK_MODULUS):
    """(E, nu) of a drained solid (E MPa, nu; scalars or arrays) loaded too fast to drain: the
    same shear modulus, the bulk modulus ``bulk_modulus`` (MPa; water's by default) or the
    drained one where that is larger."""
    E, nu = np.asarray(E, dtype=float), np.asarray(nu, dtype=float)
    K = in_range("bulk modulus", bulk_modulus, 0.0, lo_open=True, unit="MPa",
                 error=MaterialError)
    _, mu = assembly.lame(E, nu)
    K = np.maximum(K, E / (3.0 * (1.0 - 2.0 * nu)))
    E_u = 9.0 * K * mu / (3.0 * K + mu)
    nu_u = (3.0 * K - 2.0 * mu) / (2.0 * (3.0 * K + mu))
    if E_u.ndim == 0:
        return float(E_u), float(nu_u)
    return E_u, nu_u


@dataclass(frozen=True)
class FibreRegion:
    """Elements whose fibres wind about one axis: ``cylinder`` = (point, direction) in mm,
    as ``Model.set_orthotropic(..., cylinder=...)`` takes it; ``name`` says which (a disc).
    ``law``: the region's own :class:`FibreLaw` (a ligament's, :mod:`fem.ligaments`), or None
    for the solve's (a disc's)."""

    name: str
    elements: np.ndarray
    cylinder: tuple
    law: FibreLaw | None = None

    def __post_init__(self):
        el = np.asarray(self.elements, dtype=np.int64).ravel()
        if not len(el):
            raise SetError(f"fibre region {self.name!r} has no elements")
        point, direction = (np.asarray(v, dtype=float).reshape(3) for v in self.cylinder)
        n = float(np.linalg.norm(direction))
        if not (np.isfinite(point).all() and np.isfinite(direction).all() and n > 0):
            raise MaterialError(f"fibre region {self.name!r}: the axis must be a finite point "
                                f"and a non-zero direction, got {self.cylinder!r}")
        if self.law is not None and not isinstance(self.law, FibreLaw):
            raise MaterialError(f"fibre region {self.name!r}: law must be a FibreLaw, got "
                                f"{self.law!r:.60}")
        object.__setattr__(self, "elements", el)
        object.__setattr__(self, "cylinder", (point, direction / n))


@dataclass
class FibreState:
    """The converged fibres of :func:`solve_fibres`, per fibre element (``elements``): the two
    families' strains and stresses (2, m), the residual history and the iterations."""

    elements: np.ndarray
    strain: np.ndarray
    stress: np.ndarray
    residuals: list = field(default_factory=list)
    iterations: int = 0
    linear_iterations: int = 0
    seconds: float = 0.0
    #: whether the exact anisotropic secant (True) or the orthotropic one solved it
    coupling: bool = False

    @property
    def asymmetry(self) -> float:
        """sum |sigma+ - sigma-| / sum (sigma+ + sigma-) over the elements: the share of the
        fibre stress on which the dropped coupling terms act (0: both families strained alike
        everywhere)."""
        total = float(self.stress.sum())
        if total <= 0.0:
            return 0.0
        return float(np.abs(self.stress[0] - self.stress[1]).sum()) / total

    @property
    def tension_fraction(self) -> float:
        """Share of the (element, family) pairs in tension."""
        return float((self.strain > 0.0).mean()) if self.strain.size else 0.0


def annuli(model) -> list[tuple[str, str, str]]:
    """(region, upper level, lower level) of each disc of a segment: the regions
    ``"<upper>-<lower>/annulus"`` between consecutive levels of ``model.anatomy`` (none for a
    single level)."""
    levels = [lv.name for lv in model.anatomy.values()]
    names = [(region(f"{a}-{b}", "annulus"), a, b) for a, b in zip(levels, levels[1:])]
    return [n for n in names if n[0] in model.regions]


def disc_fibres(model) -> list[FibreRegion]:
    """One :class:`FibreRegion` per disc of a segment (:func:`annuli`), winding about the
    disc's axis (:func:`disc_axis`)."""
    out = [FibreRegion(name, model.regions[name], disc_axis(model, upper, lower))
           for name, upper, lower in annuli(model)]
    if not out:
        raise SetError("the model has no disc between two levels of its anatomy "
                       "(regions '<upper>-<lower>/annulus'): nothing for the fibres")
    return out


def disc_axis(model, upper: str, lower: str) -> tuple[np.ndarray, np.ndarray]:
    """(point, unit direction pointing cranially) of the axis the annulus of the disc between levels
    ``upper`` and ``lower`` winds about: the normal of the disc's mid-plane through the centre
    of its outline.

    The disc's outline is its two rims, the nodes where its free side wall meets the upper
    level's bone and the lower level's. A least-squares plane is fitted through each rim; the
    direction bisects their normals, and the point is the midpoint of the rims' centroids. The
    lamellae run along the side wall from rim to rim, so this is the axis their fibres wind
    about, whatever the levels' posture: in a lordotic spine the disc is tilted (the mean shape
    model's L4-L5 by about 20 degrees) and the centres of its two endplates, each measured on
    its own body's vertical, lie 12 mm apart across it. Where a rim cannot be found (no free
    side wall: a disc enclosed by other parts) the line between the endplate centres is used,
    with a warning."""
    an = model.anatomy
    up, lo = an[upper], an[lower]
    rims = _disc_rims(model, f"{upper}-{lower}", level_elements(model, upper),
                      level_elements(model, lower))
    if rims is None:
        warnings.warn(f"disc {upper}-{lower}: no free side wall meets both levels, so its fibres "
                      "wind about the line between the endplate centres (model.anatomy), which "
                      "is the disc's axis only where the levels stand on one vertical",
                      stacklevel=3)
        a, b = np.asarray(lo.superior_centre), np.asarray(up.inferior_centre)
        return 0.5 * (a + b), b - a
    return rim_axis(*rims, np.asarray(up.centre, float) - np.asarray(lo.centre, float))


def rim_axis(upper_rim, lower_rim, cranial) -> tuple[np.ndarray, np.ndarray]:
    """(point, unit direction) of a disc's axis from the points of its two rims (k, 3) each:
    the bisector of the normals of their least-squares planes, both turned to ``cranial``,
    through the midpoint of their centroids (:func:`disc_axis`)."""
    normals, centroids = [], []
    for P in (np.asarray(upper_rim, float), np.asarray(lower_rim, float)):
        c = P.mean(axis=0)
        n = np.linalg.svd(P - c, full_matrices=False)[2][2]
        normals.append(n if n @ np.asarray(cranial, float) >= 0 else -n)
        centroids.append(c)
    d = normals[0] + normals[1]
    return 0.5 * (centroids[0] + centroids[1]), d / np.linalg.norm(d)


def _disc_rims(model, disc: str, upper_elements, lower_elements):
    """The points of the upper and lower rims of ``disc`` (its annulus and nucleus): nodes of
    the disc's free boundary faces (faces neither shared with another disc element nor lying
    wholly on either level's nodes) that are also nodes of the upper (lower) level. None where
    either rim has fewer than three points."""
    from .model import Model
    from .topology import boundary_faces

    el = np.concatenate([model.regions[r] for r in (region(disc, "annulus"),
                                                      region(disc, "nucleus"))
                         if r in model.regions])
    on_up = np.zeros(model.n_nodes, bool)
    on_lo = np.zeros(model.n_nodes, bool)
    free = np.zeros(model.n_nodes, bool)
    on_up[model.element_nodes(upper_elements)] = True
    on_lo[model.element_nodes(lower_elements)] = True
    for b in model.blocks:
        mine = b.local(el)
        if not len(mine):
            continue
        sub = Model.from_arrays(model.points, [(b.type, b.conn[mine])])
        e, f = boundary_faces(sub)
        ncorner = 4 if b.etype.face_type == "quad4" else 3
        table = np.array([t[:ncorner] for t in b.etype.faces])
        corners = sub.blocks[0].conn[e[:, None], table[f]]
        side = ~on_up[corners].all(axis=1) & ~on_lo[corners].all(axis=1)
        free[corners[side].ravel()] = True
    rims = [model.points[free & on_up], model.points[free & on_lo]]
    return None if min(len(r) for r in rims) < 3 else rims


def fibre_directions(model, regions: list[FibreRegion], law: FibreLaw):
    """(elements (m,), the two families' unit directions (2, m, 3) in the global axes at the
    element centres) of the fibre regions."""
    els, dirs = [], []
    for reg in regions:
        local = (reg.law or law).directions()
        x = model.element_centres(reg.elements)
        R = elastic.cylinder_frames(x, reg.cylinder[0][None], reg.cylinder[1][None])
        if not np.isfinite(R).all():
            raise MaterialError(f"{reg.name}: an element centre lies on the fibres' axis")
        els.append(reg.elements)
        dirs.append(np.einsum("mij,fj->fmi", R, local))
    return np.concatenate(els), np.concatenate(dirs, axis=1)


class RegionLaws:
    """The fibre laws of ``regions``' elements, in the regions' order (each region's own
    :attr:`FibreRegion.law`, or ``law``): :class:`FibreLaw`'s per-element methods, each
    region's slice by its own law."""

    def __init__(self, regions, law: FibreLaw):
        self.parts, at = [], 0
        for reg in regions:
            self.parts.append((slice(at, at + len(reg.elements)), reg.law or law))
            at += len(reg.elements)
        #: the least toe strain: the scale below which a fibre strain counts as none
        self.toe_strain = min(lw.toe_strain for _, lw in self.parts)
        #: each element's toe strain (m,), where the iterations start
        self.toe_strains = np.concatenate([np.full(s.stop - s.start, lw.toe_strain)
                                           for s, lw in self.parts])

    def _each(self, method, values, **kw):
        return [getattr(lw, method)(values[..., s], **kw) for s, lw in self.parts]

    def secant(self, strain):
        return np.concatenate(self._each("secant", np.asarray(strain, float)), axis=-1)

    def stress(self, strain):
        return np.concatenate(self._each("stress", np.asarray(strain, float)), axis=-1)

    def stiffness(self, secants, *, orthotropic: bool = True):
        return np.concatenate(self._each("stiffness", np.asarray(secants, float),
                                         orthotropic=orthotropic), axis=0)

    def constants(self, secants):
        return np.concatenate(self._each("constants", np.asarray(secants, float)), axis=0)


def _set(model, regions, law, secants, elements):
    """Give every fibre element the secant constants of ``secants`` (2, m)."""
    c = law.constants(secants)
    at = 0
    for reg in regions:
        n = len(reg.elements)
        model.set_orthotropic(reg.elements, c[at:at + n, :3], c[at:at + n, 3:6],
                              c[at:at + n, 6:], cylinder=reg.cylinder)
        at += n
    assert at == len(elements)


def _coupling(model, pattern, regions, law, secants):
    """(flat block-data indices, values) on the host of the stiffness the orthotropic secant
    leaves out: the two families' normal-shear coupling terms, rotated to the global axes at
    each integration point as the assembly rotates the orthotropic part."""
    Cc = law.stiffness(secants, orthotropic=False) - law.stiffness(secants)
    ij = 3 * np.arange(3)[:, None, None] + np.arange(3)[None, None, :]
    idx, val = [], []
    at = 0
    for reg in regions:
        el, C = reg.elements, Cc[at:at + len(reg.elements)]
        at += len(el)
        for bi, b in enumerate(model.blocks):
            sel = np.nonzero(b.holds(el))[0]
            if not len(sel):
                continue
            loc = el[sel] - b.start
            X = model.points[b.conn[loc]]
            G, det = elastic.gradients(X, b.etype.dN)
            xq = np.einsum("gk,mkc->mgc", b.etype.N, X)
            R = elastic.cylinder_frames(xq, reg.cylinder[0], reg.cylinder[1])
            Cq = elastic.rotate_stiffness(
                np.broadcast_to(C[sel][:, None], (len(sel), b.etype.n_gauss, 6, 6)), R)
            bbar = model.bbar_mask()[el[sel]] if b.type == "hex8" else None
            Ke = elastic.general_stiffness_matrices(G, det * b.etype.weights, Cq, bbar)
            pos = pattern.positions[bi][loc].astype(np.int64)
            idx.append((pos[:, :, None, :, None] * 9 + ij[None, None]).ravel())
            val.append(Ke.ravel())
    return np.concatenate(idx), np.concatenate(val)


@serial_blas()  # the same path whatever the caller's BLAS threads
def solve_fibres(model, regions: list[FibreRegion], law: FibreLaw | None = None, *,
                 tol: float = TOL, strain_tol: float = STRAIN_TOL, relaxation: float = RELAXATION,
                 max_iterations: int = MAX_ITERATIONS, rtol: float | None = None,
                 coupling: bool | str = "auto", backend: str = "auto",
                 solver: str = "auto", callback=None) -> Result:
    """Solve ``model`` (its loads and supports, mm, N, MPa) with the elements of ``regions``
    made of ground substance and tension-only, stiffening fibres (:class:`FibreLaw`), by secant
    iterations (module docstring). Returns a :class:`~fem.Result` on the converged secant
    model (``result.model``: the fibre elements orthotropic in their cylindrical axes), with
    ``result.fibres`` a :class:`FibreState` and cell fields ``fibre_strain_plus``/``_minus``
    and ``fibre_stress_plus``/``_minus`` (0 outside the fibres). ``tol``, ``strain_tol``,
    ``relaxation``: the convergence and relaxation of the module docstring; ``rtol``: the
    linear solves' (default ``tol / 25``). ``coupling``: also assemble the two families'
    normal-shear coupling terms that the orthotropic secant drops (an exact anisotropic
    stiffness; then ``result.stress`` of the fibre elements is the orthotropic part only, while
    displacements, reactions and the other elements' stresses are exact; on the standing L4-L5
    it moves the nucleus pressure by +4 % and the endplate bulge by +8 %). ``coupling="auto"``
    (default): the orthotropic secant, and where its iterations stall (equilibrium met in
    ``STALL_ITERATIONS`` iterations while the fibre strains keep moving: fibres near
    zero strain flipping between tension and compression where the annulus shears, as on the
    shape model's real L4-L5 and the canonical T12-L4 with a wedge-fractured L2 at 2 mm), or
    where they run out of ``max_iterations``, the exact stiffness from the start, with a
    warning; ``result.fibres.coupling`` says which was used. To compare models, give one form
    to all of them (a study gives ``coupling=True``): the two differ by up to 16 % in a disc's
    pressure under flexion (docs/studies.md), so "auto" could compare unlike with unlike.
    ``solver``: "auto" (direct up to 5 000 equations, else AMG-CG), "direct" or "amg".
    ``callback(x)`` is called after every CG iteration of the secant iterations' linear solves
    (as :func:`fem.solve`'s: a progress bar counts them). Raises
    :class:`~fem.ConvergenceError` when ``max_iterations`` pass without equilibrium."""
    law = law or FibreLaw()
    tol = in_range("tol", tol, 0.0, 1.0, lo_open=True, hi_open=True, error=SolverError)
    strain_tol = in_range("strain_tol", strain_tol, 0.0, 1.0, lo_open=True, hi_open=True,
                          error=SolverError)
    w = in_range("relaxation", relaxation, 0.0, 1.0, lo_open=True, error=SolverError)
    if solver not in ("auto", "direct", "amg"):
        raise SolverError(f"solver must be 'auto', 'direct' or 'amg', got {solver!r}")
    if int(max_iterations) < 1:
        raise SolverError(f"max_iterations must be at least 1, got {max_iterations!r}")
    if coupling not in (True, False, "auto"):
        raise SolverError(f"coupling must be True, False or 'auto', got {coupling!r}")
    rtol = tol / 25.0 if rtol is None else rtol
    try:
        be = get_backend(backend)
    except BackendError as exc:
        raise SolverError(str(exc)) from None
    t0 = time.perf_counter()
    opts = dict(tol=tol, strain_tol=strain_tol, relaxation=w, max_iterations=int(max_iterations),
                rtol=rtol, be=be, solver=solver, callback=callback)
    if coupling != "auto":
        return _secant(model, regions, law, coupling=bool(coupling), stall=False, t0=t0, **opts)
    try:
        return _secant(model, regions, law, coupling=False, stall=True, t0=t0, **opts)
    except _Stalled as exc:
        first = str(exc)
    warnings.warn(f"{first}; solved again with coupling=True, the exact anisotropic "
                  "stiffness (result.stress of the fibre elements then holds the orthotropic "
                  "part only)", stacklevel=2)
    try:
        return _secant(model, regions, law, coupling=True, stall=False, t0=t0, **opts)
    except ConvergenceError as exc:
        raise ConvergenceError(f"{exc} (with coupling=True, after the orthotropic secant: "
                               f"{first})") from None


class _Stalled(ConvergenceError):
    """The orthotropic secant's iterations stalled (``coupling="auto"`` retries exactly)."""


def _secant(model, regions, law, *, tol, strain_tol, relaxation, max_iterations, rtol, be,
            solver, coupling: bool, stall: bool, t0: float, callback=None) -> Result:
    """The secant iterations of :func:`solve_fibres` with the orthotropic (``coupling``
    False) or the exact secant stiffness; with ``stall``, :class:`_Stalled` once equilibrium
    has held in ``STALL_ITERATIONS`` iterations without the fibre strains converging."""
    w = relaxation
    xp = be.xp
    m = model.copy()
    m.check_materials()
    elements, dirs = fibre_directions(m, regions, law)
    law = RegionLaws(regions, law)
    eps_f = np.broadcast_to(law.toe_strains, (2, len(elements))).copy()
    _set(m, regions, law, law.secant(eps_f), elements)
    assembly.check_geometry(m, xp, xp.asarray(m.points))
    sysm = _system.compile_conditions(m)
    _system.check_constraints(m, sysm)
    pattern = assembly.build_pattern(m, xp)
    S = element_strain_operator(m, elements)
    n3 = 3 * m.n_nodes
    solve = _LinearSolves(m, sysm, be, solver, rtol, callback)
    z = last = changes = None
    residuals = []
    held = 0

    def stiffness(only=None):
        """The secant stiffness's block data: of every element, or of the elements ``only``."""
        _, data = assembly.assemble_stiffness(m, be, pattern, elements=only)
        if coupling:
            idx, val = _coupling(m, pattern, regions, law, law.secant(eps_f))
            scatter_add(data.reshape(-1), xp.asarray(idx), xp.asarray(val))
        return data

    for k in range(max_iterations + 1):
        if changes:  # the fibre elements' stiffness only: the rest is the first system's
            lin = changes.system(stiffness(elements))
        else:
            lin = constrain(m, sysm, assembly.to_matrix(pattern, stiffness(), be), be)
            if changes is None:
                changes = (be.name == "numpy"
                           and _SecantChanges(m, sysm, pattern, stiffness(elements), lin, be))
        if z is not None:
            residuals.append(_out_of_balance(lin, z, xp))
            logger.info("fibre iteration %d: out-of-balance %.3e", k, residuals[-1])
            moved = float(np.abs(last).max()) / max(float(np.abs(eps_f).max()), law.toe_strain)
            if residuals[-1] < tol and moved < strain_tol:
                break
            held += residuals[-1] < tol
            if stall and held >= STALL_ITERATIONS:
                raise _Stalled(
                    f"fibre secant iterations stalled: equilibrium met ({residuals[-1]:.2e} of "
                    f"the load) for {held} iterations while the fibre strains still moved "
                    f"{moved:.2e} of the largest (strain_tol {strain_tol:g}); fibres near zero "
                    "strain flip between tension and compression where the annulus shears "
                    "(orthotropic secant)")
            if k == max_iterations:
                state = (f"out-of-balance force {residuals[-1]:.2e} of the load and fibre strain "
                         f"step {moved:.2e} of the largest (tol {tol:g}, strain_tol "
                         f"{strain_tol:g})")
                history = "history " + ", ".join(f"{r:.2e}" for r in residuals[-5:])
                if stall:
                    raise _Stalled(f"fibre secant iterations (orthotropic) did not converge in "
                                   f"{max_iterations} iterations: {state}; {history}")
                hint = ("" if coupling else
                        "; the orthotropic secant drops the families' normal-shear coupling, "
                        "and where the annulus shears much (FibreState.asymmetry) fibres near "
                        "zero strain can oscillate between tension and compression: "
                        "coupling=True (the exact anisotropic stiffness) converges there")
                raise ConvergenceError(f"fibre secant iterations: {state} after {max_iterations} "
                                       f"iterations; {history}{hint}")
        # inexact solves (Eisenstat & Walker 1996): each linear solve only as accurate as a
        # share of the out-of-balance force it starts from; the converged iterate is checked
        # above on the exact out-of-balance of its own secant stiffness, which the last solves
        # (the force by then below tol) resolve to at least FORCING * tol
        z = solve(lin, z, max(rtol, min(FIRST_RTOL, FORCING * residuals[-1]) if residuals
                              else FIRST_RTOL))
        u = be.to_host((lin.T @ z if lin.T is not None else z)[:n3])
        step = (np.einsum("fmi,mij,fmj->fm", dirs, _tensor((S @ u).reshape(-1, 6)), dirs)
                - eps_f).ravel()
        if last is not None:  # Aitken's dynamic relaxation (Irons & Tuck 1969)
            d = step - last
            w = float(np.clip(-w * (last @ d) / max(float(d @ d), 1e-300), MIN_RELAXATION, 1.0))
        last = step
        eps_f = eps_f + w * step.reshape(eps_f.shape)
        _set(m, regions, law, law.secant(eps_f), elements)
    result = _result(m, sysm, be, lin, z, solve, residuals, tol)
    state = FibreState(elements, eps_f, law.stress(eps_f), residuals, len(residuals),
                       solve.iterations, time.perf_counter() - t0, coupling)
    result.info.times["total"] = state.seconds
    result.fibres = state
    for i, sign in enumerate(("plus", "minus")):
        for name, v in (("strain", state.strain[i]), ("stress", state.stress[i])):
            full = np.zeros(m.n_elements)
            full[elements] = v
            result.extra_cell_fields[f"fibre_{name}_{sign}"] = full
    return result


class _SecantChanges:
    """The secant stiffness of a later iteration as the first one's constrained system plus the
    change of the fibre elements' stiffness (:class:`fem.nonlinear_systems.Perturbed`): only
    the fibre elements are assembled again (their block data at the first iteration ``data0``
    and at this one, of those elements alone) and only the blocks whose values changed are
    constrained (T^T dK T through the plates' coupling, the supports' rows and columns zeroed),
    instead of a whole reassembly and constraint at every iteration (the canonical T12-L4 at
    2 mm, intact, standing: a solve of 17.2 s with the inexact solves alone took 13.7 s; at
    4 mm the partial assembly took a solve from 2.9 to 2.2 s). Host only."""

    def __init__(self, model, sysm, pattern, data0, lin0, be):
        self.data0, self.lin0, self.be = data0.reshape(-1, 9), lin0, be
        self.brow = pattern.block_rows(np)
        self.bcol = np.asarray(pattern.indices, dtype=np.int64)
        self.n3 = 3 * model.n_nodes
        self.keep, self.g = kept_dofs(model, sysm, lin0.n_eq)
        self.fixed = sysm.fixed_dofs

    def system(self, data) -> Perturbed:
        import scipy.sparse as sp

        diff = data.reshape(-1, 9) - self.data0
        blocks = np.nonzero(np.any(diff != 0.0, axis=1))[0]
        i = np.arange(3)
        rows = 3 * self.brow[blocks, None, None] + i[None, :, None]
        cols = 3 * self.bcol[blocks, None, None] + i[None, None, :]
        rows, cols = np.broadcast_arrays(rows, cols)
        dK = sp.csr_matrix((diff[blocks].ravel(), (rows.ravel(), cols.ravel())),
                           shape=(self.n3, self.n3))
        T = self.lin0.T
        if T is not None:
            dK = (T.T @ dK @ T).tocsr()
        return Perturbed(self.lin0, *change_pieces(dK, self.keep, self.g, self.fixed, self.be),
                         self.be)


class _LinearSolves:
    """The linear solve of each secant iteration, warm-started from the last solution: CG with
    the AMG of the first stiffness, or for direct-sized models (host) CG with the first
    stiffness's LU factors, which differ from the later stiffnesses in the fibres only (the first
    solve is the factorisation's own); cuSOLVER's direct solve each time on a GPU."""

    def __init__(self, model, sysm, be, solver, rtol, callback=None):
        self.model, self.sysm, self.be, self.solver, self.rtol = model, sysm, be, solver, rtol
        self.callback = callback
        self.M = self.direct = None
        self.iterations = 0

    def __call__(self, lin, z, rtol=None):
        rtol = self.rtol if rtol is None else rtol
        xp = self.be.xp
        if self.direct is None:
            self.direct = self.solver == "direct" or (self.solver == "auto"
                                                      and lin.n_eq <= DIRECT_MAX_DOF)
        if self.direct and self.be.name == "numpy":
            if self.M is None:
                self.M = factorise(lin.K)
                z = factored_solve(self.M, lin.rhs)
            else:
                z, n, _ = cg(lin.K, lin.rhs, x0=z, rtol=rtol, M=self.M.solve,
                             callback=self.callback)
                self.iterations += n
        elif self.direct:
            z = direct(lin.K, lin.rhs)
        else:
            if self.M is None:
                B = rigid_body_modes(self.model.points, np,
                                     [p.reference for p in self.sysm.plates])
                self.M = amg_preconditioner(lin.K, B, self.be, model=self.model,
                                            sysm=self.sysm, T=lin.T)
            op = (lin if isinstance(lin, Perturbed) else
                  RowSplit(lin.K) if self.be.name == "numpy" else lin.K)
            z, n, _ = cg(op, lin.rhs, x0=z, rtol=rtol, M=self.M, callback=self.callback)
            self.iterations += n
        if len(self.sysm.fixed_dofs):
            z[xp.asarray(self.sysm.fixed_dofs)] = xp.asarray(self.sysm.fixed_values,
                                                            dtype=z.dtype)
        return z


def _out_of_balance(lin, z, xp) -> float:
    """||rhs - K z|| / ||rhs|| of the constrained system."""
    return float(xp.linalg.norm(lin.rhs - lin.K @ z)) / max(float(xp.linalg.norm(lin.rhs)),
                                                            1e-300)


def _result(m, sysm, be, lin, z, solve: _LinearSolves, residuals, tol) -> Result:
    """The :class:`~fem.Result` of the converged iterate (as :func:`fem.solve` makes one)."""
    xp = be.xp
    n3 = 3 * m.n_nodes
    u = (lin.T @ z if lin.T is not None else z)[:n3].reshape(-1, 3)
    fixed = xp.asarray(sysm.fixed_dofs)
    r_fixed = lin.K_rows @ z - lin.f[fixed] if len(sysm.fixed_dofs) else xp.zeros(0)
    true_res = _out_of_balance(lin, z, xp)
    info = SolveInfo(solver=("direct" if solve.direct else "amg") + " (fibre secant)",
                     iterations=solve.iterations, residual=residuals[-1] if residuals else
                     true_res, residuals=residuals, backend=be.name, n_dof=m.n_dof,
                     n_equations=lin.n_eq)
    result = Result(m, u, backend=be, system=sysm, reaction_dofs=sysm.fixed_dofs,
                    reaction_values=r_fixed, plate_dofs=z[n3:] if lin.T is not None else None,
                    info=info)
    verify_answer(result, true_res, rtol=max(tol, 1e-8) / 10.0)
    return result


def _tensor(eps):
    """Strain tensors (m, 3, 3) of Voigt rows (xx, yy, zz, xy, yz, xz; tensor shear)."""
    t = np.empty((len(eps), 3, 3))
    for row, (i, j) in enumerate(((0, 0), (1, 1), (2, 2), (0, 1), (1, 2), (0, 2))):
        t[:, i, j] = eps[:, row]
        t[:, j, i] = eps[:, row]
    return t


KINEMATICS = ("small", "finite")


def solve_disc(model, law: FibreLaw | None = None, *, kinematics: str = "small",
               drainage: str = "drained", nucleus_pressure: float | None = None,
               **kwargs) -> Result:
    """Solve a segment with fibre-reinforced annuli (:func:`disc_fibres`, :class:`FibreLaw`):
    the researcher's entry point. The nucleus and everything else keep the model's materials.
    ``fem.metrics.level_metrics`` reads the result as any other (disc pressure, endplate bulge).

    ``kinematics``: "small" (default): small strain, secant iterations (:func:`solve_fibres`,
    whose keyword arguments it takes); "finite": large deformation
    (:func:`fem.finite_strain.solve_finite_strain`, whose keyword arguments it takes, e.g.
    ``increments``), the fibres stretched by their Green-Lagrange strain and every other
    element neo-Hookean: the :class:`~fem.finite_strain.FiniteStrainResult` of the full load,
    with the increments' :class:`~fem.nonlinear_result.NonlinearResult` as its ``history``.
    Hold a segment's plates (``fem.meshes.loadcases.between_platens``): under a dead load on a
    plate free to tilt a segment of several levels sways, and the analysis is refused once the
    plate turns beyond :data:`fem.finite_strain.MAX_PLATE_ROTATION` (docs/validation.md).

    ``drainage``: "drained" (default: the FE tables' ground substance and the model's nucleus
    as they are) or "undrained": loaded too fast for the disc's water to leave (seconds to
    minutes, against the hours of :func:`consolidation_time`), the annulus ground and every
    nucleus keep their shear moduli and take water's bulk modulus (:func:`undrained`). The
    configuration that reproduces a motion segment's measured axial stiffness, with
    ``kinematics="finite"`` (docs/validation.md).

    ``nucleus_pressure`` (MPa; "finite" only): pressurise every nucleus to this before any load,
    by the swelling that :func:`fem.finite_strain.nucleus_swelling` finds for it under the
    model's supports (e.g. 0.1 MPa, Wilke et al. 1999's L4-L5 lying supine), then load it;
    the swelling is ``result.swelling``, its pressurised unloaded state
    ``result.swelling.state``. Displacements count from the unswollen reference: subtract that
    state's to measure from the pressurised, unloaded disc, as a test would. Several
    large-deformation solves more."""
    if kinematics not in KINEMATICS:
        raise SolverError(f"kinematics must be one of {KINEMATICS}, got {kinematics!r}")
    if drainage not in DRAINAGES:
        raise SolverError(f"drainage must be one of {DRAINAGES}, got {drainage!r}")
    from .ligaments import ligament_fibres  # builds on this module

    fibres = disc_fibres(model)
    nuclei = [n for n in (region(split(reg.name)[0], "nucleus") for reg in fibres)
              if n in model.regions]
    ligaments = ligament_fibres(model)
    if ligaments and kinematics != "small":
        raise SolverError(f"the model has posterior ligaments ({ligaments[0].name}, ...): "
                          "they are solved in small strain only (kinematics='small')")
    if drainage == "undrained":
        law = (law or FibreLaw()).undrained()
        model = model.copy()
        for nucleus in nuclei:
            idx = model.region(nucleus)
            model.set_material(nucleus, *undrained(model.E[idx], model.nu[idx]))
    if kinematics == "small":
        if nucleus_pressure is not None:
            raise SolverError("nucleus_pressure needs kinematics='finite' (a swelling nucleus "
                              "is a large-deformation model)")
        return solve_fibres(model, fibres + ligaments, law, **kwargs)
    from .finite_strain import nucleus_swelling, solve_finite_strain  # builds on this module

    swelling = None
    if nucleus_pressure is not None:
        if not nuclei:
            raise SetError("nucleus_pressure: the model's discs have no nucleus regions "
                           "('<upper>-<lower>/nucleus')")
        opts = {k: v for k, v in kwargs.items() if k in ("backend", "solver", "rtol", "tol")}
        swelling = nucleus_swelling(model, nucleus_pressure, nuclei, fibres=fibres, law=law,
                                    **opts)
    history = solve_finite_strain(model, fibres=fibres, law=law,
                                  swelling=swelling.ratios if swelling else None,
                                  initial=swelling.state if swelling else None, **kwargs)
    result = history.final
    result.history = history
    result.swelling = swelling
    return result
