"""Bone quality: density-modulus laws, density conversions, T-scores and material tables.

Units: moduli in MPa, densities in g/cm^3, except clinical QCT bone mineral density (BMD), which is
in mg/cm^3 of equivalent mineral (K2HPO4 or hydroxyapatite, HA) because that is how the clinic
reports it.

Density-modulus laws (``LAWS``) have the form ``E = a + b * rho**c`` with ``rho`` in g/cm^3 and
each states which density it takes:

- ``morgan2003`` (default): E = 4730 rho_app^1.56, vertebra T10-L5, r^2 = 0.73 (Morgan, Bayraktar
  & Keaveny 2003, J Biomech 36:897).
- ``keller1994``: E = 1890 rho_ash^1.92, spine (Keller 1994, J Biomech 27:1159) (secondary); it
  gives far lower moduli than the other laws at the same BMD (15 MPa at 80 mg/cm^3).
- ``kopperdahl1998``: E = -80 + 2100 rho_app, vertebral trabecular bone (Kopperdahl & Keaveny
  1998, J Biomech 31:601) (secondary).
- ``crawford2003``: E = -34.7 + 3230 rho_QCT, rho_QCT the QCT equivalent (K2HPO4) density; used by
  Crawford, Cann & Keaveny 2003 (Bone 33:744) from Kopperdahl et al. 2002 (J Orthop Res 20:801),
  where it is quoted as -34.7 + 3.230 rho_QCT with rho_QCT in mg/cm^3 (secondary).

Linear laws become negative at low density; :func:`trabecular_modulus` floors every law at
``E_min``.

Conversions from the QCT equivalent mineral density to the density a law takes go through the ash
density (``ASH_RULES``), then rho_app = rho_ash / 0.6 (ash fraction of apparent density 0.6;
Schileo et al. 2008, J Biomech 41:356, after Dalstra 1993; (secondary), the factor also used by the
Bonemat mapping code):

- ``"equivalent"`` (default): rho_ash = rho_QCT. An assumption: it treats the phantom-equivalent
  mineral density as ash density. Chosen because the cited calibrations below were fitted on
  femoral and tibial bone and their intercepts (0.05-0.08 g/cm^3 of ash at zero mineral) make
  osteoporotic vertebral bone several times stiffer than the vertebral FE tables (34-146 MPa);
  with this rule, Morgan 2003 agrees with the vertebral QCT law of Crawford 2003 within 21 % from
  60 to 150 mg/cm^3 (tested).
- ``"keyak1994"`` (K2HPO4 phantom): rho_ash = 1.22 rho_K2HPO4 + 0.0523 g/cm^3 (Keyak, Lee &
  Skinner 1994, J Biomed Mater Res 28:1329) (secondary, not checked against the primary).
- ``"schileo2008"`` (HA phantom): rho_QCT = 1.14 rho_ash - 0.09 g/cm^3, i.e. rho_ash =
  (rho_HA + 0.09) / 1.14 (Schileo et al. 2008) (secondary, not checked against the primary).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import MaterialError
from ..validate import in_range

BMD_MAX = 1750.0
"""mg/cm^3: the upper end of the range over which QCT calibration was shown linear and repeatable
(Crookshank et al. 2014); higher values are rejected as implausible."""

OSTEOPOROSIS_BMD = 80.0
"""mg/cm^3: QCT trabecular BMD below which the spine is osteoporotic (ACR practice parameter for
QCT; 80-120 osteopenia, > 120 normal)."""

NORMAL_BMD = 120.0
"""mg/cm^3: the lower end of normal QCT trabecular BMD (ACR practice parameter)."""

YOUNG_ADULT_QCT = (175.0, 30.0)
"""(mean, SD) of young-adult lumbar trabecular QCT BMD in mg/cm^3 used for T-scores. An
assumption: a round value within the young-adult means of about 165-185 mg/cm^3 (SD 25-35) that
QCT reference databases report; not checked against one primary source in this project. Pass
your scanner's reference database values as ``reference=(mean, sd)``."""

ASH_FRACTION = 0.6
"""rho_ash / rho_app (Schileo et al. 2008, J Biomech 41:356) (secondary)."""

T_SCORE_RANGE = (-5.0, 5.0)


@dataclass(frozen=True)
class DensityLaw:
    """``E = a + b * rho**c`` (MPa, rho in g/cm^3 of the ``density`` it names)."""

    name: str
    a: float
    b: float
    c: float
    density: str
    site: str
    source: str

    def __post_init__(self):
        if self.density not in ("apparent", "ash", "qct"):
            raise MaterialError(f"law {self.name!r}: density must be 'apparent', 'ash' or 'qct', "
                                f"got {self.density!r}")

    def __call__(self, rho):
        rho = np.asarray(rho, dtype=float)
        return self.a + self.b * np.maximum(rho, 0.0) ** self.c


LAWS = {law.name: law for law in (
    DensityLaw("morgan2003", 0.0, 4730.0, 1.56, "apparent", "vertebra T10-L5, axial",
               "Morgan, Bayraktar & Keaveny 2003, J Biomech 36:897"),
    DensityLaw("keller1994", 0.0, 1890.0, 1.92, "ash", "spine",
               "Keller 1994, J Biomech 27:1159 (secondary)"),
    DensityLaw("kopperdahl1998", -80.0, 2100.0, 1.0, "apparent", "vertebral trabecular bone",
               "Kopperdahl & Keaveny 1998, J Biomech 31:601 (secondary)"),
    DensityLaw("crawford2003", -34.7, 3230.0, 1.0, "qct", "vertebral body, QCT (K2HPO4)",
               "Crawford, Cann & Keaveny 2003, Bone 33:744; Kopperdahl et al. 2002 (secondary)"),
)}

TRANSVERSE_LAWS = {
    "morgan2003": (DensityLaw("morgan2003_t1", 0.0, 1987.0, 1.56, "apparent", "vertebra, transverse",
                              "Int J Spine Surg FE table (secondary)"),
                   DensityLaw("morgan2003_t2", 0.0, 1357.0, 1.56, "apparent", "vertebra, transverse",
                              "Int J Spine Surg FE table (secondary)")),
}
"""Transverse moduli (MPa) for orthotropic models, E = 1987 rho_app^1.56 and 1357 rho_app^1.56 with
nu 0.2 (see :func:`orthotropic_trabecular` for how they are assigned to the axes)."""

ASH_RULES = ("equivalent", "keyak1994", "schileo2008")

REFERENCE_MATERIALS = {
    "cortex": (12000.0, 0.3),
    "cortex_osteoporotic": (8040.0, 0.3),
    "endplate": (12000.0, 0.3),
    "endplate_osteoporotic": (8040.0, 0.3),
    "posterior": (3500.0, 0.25),
    "posterior_osteoporotic": (2800.0, 0.25),
    "annulus": (4.2, 0.45),
    "nucleus": (1.0, 0.499),
    "trabecular_nu": (None, 0.2),
}
"""(E MPa, nu) from the FE tables: cortex 12 000 healthy (BMC Musculoskelet Disord 2017,
s12891-017-1623-0, Tab. 1), 8 040 osteoporotic = 67 % (J Orthop Surg Res 2020, s13018-020-01650-5,
Tab. 1); bony endplate 12 000 / 0.3 (BMC 2017) scaled like the cortex (assumption: same tissue);
posterior elements 3 500 / 0.25, osteoporotic pedicle 2 800; annulus ground substance 4.2 / 0.45;
nucleus 1 / 0.499; trabecular nu 0.2 (IJSS table)."""


def get_law(name: str) -> DensityLaw:
    """The density-modulus law called ``name`` (raises listing the known ones)."""
    try:
        return LAWS[name]
    except (KeyError, TypeError):
        raise MaterialError(f"unknown density-modulus law {name!r}; known laws: "
                            f"{', '.join(sorted(LAWS))}") from None


def _bmd_array(bmd, name="BMD"):
    b = np.asarray(bmd, dtype=float)
    bad = ~np.isfinite(b) | (b <= 0) | (b > BMD_MAX)
    if bad.any():
        v = b[np.unravel_index(np.argmax(bad), b.shape)] if b.ndim else b
        raise MaterialError(f"{name} = {float(v):g} mg/cm^3 is not plausible: QCT equivalent "
                            f"mineral density must lie in (0, {BMD_MAX:g}] mg/cm^3")
    return b


def ash_density(bmd_mg_cm3, rule: str = "equivalent"):
    """Ash density (g/cm^3) from QCT equivalent mineral density (mg/cm^3) by ``rule`` (see the
    module docstring for the rules and their sources)."""
    rho = np.asarray(bmd_mg_cm3, dtype=float) / 1000.0
    if rule == "equivalent":
        return rho
    if rule == "keyak1994":
        return 1.22 * rho + 0.0523
    if rule == "schileo2008":
        return (rho + 0.09) / 1.14
    raise MaterialError(f"unknown ash-density rule {rule!r}; known rules: {', '.join(ASH_RULES)}")


def qct_from_ash(rho_ash, rule: str = "equivalent"):
    """QCT equivalent mineral density (mg/cm^3) from ash density (g/cm^3): the inverse of
    :func:`ash_density`."""
    r = np.asarray(rho_ash, dtype=float)
    if rule == "equivalent":
        q = r
    elif rule == "keyak1994":
        q = (r - 0.0523) / 1.22
    elif rule == "schileo2008":
        q = 1.14 * r - 0.09
    else:
        raise MaterialError(f"unknown ash-density rule {rule!r}; known rules: "
                            f"{', '.join(ASH_RULES)}")
    return 1000.0 * q


def apparent_density(bmd_mg_cm3, rule: str = "equivalent"):
    """Apparent (wet) density (g/cm^3) from QCT equivalent mineral density (mg/cm^3):
    rho_app = rho_ash / 0.6."""
    return ash_density(bmd_mg_cm3, rule) / ASH_FRACTION


def law_density(bmd_mg_cm3, law_name: str = "morgan2003", rule: str = "equivalent"):
    """The density (g/cm^3) that ``law_name`` takes, from QCT BMD in mg/cm^3."""
    kind = get_law(law_name).density
    if kind == "qct":
        return np.asarray(bmd_mg_cm3, dtype=float) / 1000.0
    if kind == "ash":
        return ash_density(bmd_mg_cm3, rule)
    return apparent_density(bmd_mg_cm3, rule)


def apparent_from_law_density(rho, law_name: str = "morgan2003", rule: str = "equivalent"):
    """Apparent density (g/cm^3) from the density ``law_name`` takes (g/cm^3): the inverse of
    :func:`law_density` followed by :func:`apparent_density`."""
    kind = get_law(law_name).density
    rho = np.asarray(rho, dtype=float)
    if kind == "apparent":
        return rho
    if kind == "ash":
        return rho / ASH_FRACTION
    return apparent_density(1000.0 * rho, rule)


def trabecular_modulus(bmd_mg_cm3, law: str = "morgan2003", *, rule: str = "equivalent",
                       E_min: float = 1.0):
    """Trabecular Young's modulus (MPa) from QCT trabecular BMD (mg/cm^3, > 0, <= 1750) through
    the density-modulus law ``law``; floored at ``E_min`` MPa where a linear law would fall below
    it. Works elementwise on arrays."""
    lw = get_law(law)
    b = _bmd_array(bmd_mg_cm3)
    E_min = in_range("E_min", E_min, 0.0, lo_open=True, unit="MPa", error=MaterialError)
    E = np.maximum(lw(law_density(b, law, rule)), E_min)
    return float(E) if E.ndim == 0 else E


def transverse_moduli(bmd_mg_cm3, law: str = "morgan2003", *, rule: str = "equivalent"):
    """(E_t1, E_t2) transverse trabecular moduli (MPa) where the law has transverse data."""
    if law not in TRANSVERSE_LAWS:
        raise MaterialError(f"no transverse moduli for law {law!r}; available for: "
                            f"{', '.join(sorted(TRANSVERSE_LAWS))}")
    rho = law_density(_bmd_array(bmd_mg_cm3), law, rule)
    return tuple(float(t(rho)) if np.ndim(rho) == 0 else t(rho) for t in TRANSVERSE_LAWS[law])


def orthotropic_trabecular(bmd_mg_cm3, law: str = "morgan2003", *, rule: str = "equivalent",
                           E_min: float = 1.0, nu: float = 0.2) -> dict:
    """Engineering constants {E: (Ex, Ey, Ez), nu: (nu_xy, nu_xz, nu_yz), G: (Gxy, Gxz, Gyz)}
    (MPa) of trabecular bone in the vertebra's axes (x lateral, y antero-posterior, z axial), for
    :meth:`fem.Model.set_orthotropic`.

    Ez is the axial law (:func:`trabecular_modulus`); the transverse moduli are the law's
    (:func:`transverse_moduli`), the larger (1987 rho^1.56 for morgan2003) along x (lateral)
    and the smaller along y: an ASSUMPTION, the source table does not say which transverse
    direction is which. ``nu`` (0.2, IJSS table) is taken as the Poisson's ratio for loading
    along the stiffer axis of each pair (nu_zx = nu_zy = nu_xy = 0.2, hence nu_xz = 0.2 Ex / Ez
    and nu_yz = 0.2 Ey / Ez in the ccx convention nu_ij = -eps_j / eps_i): an ASSUMPTION too.
    The shear moduli are the common approximation G_ij = sqrt(E_i E_j) / (2 (1 + nu))
    (APPROXIMATION, not measured data).
    """
    Ez = float(trabecular_modulus(bmd_mg_cm3, law, rule=rule, E_min=E_min))
    Ex, Ey = (max(float(e), E_min) for e in transverse_moduli(bmd_mg_cm3, law, rule=rule))
    g = lambda a, b: float(np.sqrt(a * b) / (2.0 * (1.0 + nu)))  # noqa: E731
    return {"E": (Ex, Ey, Ez), "nu": (nu, nu * Ex / Ez, nu * Ey / Ez),
            "G": (g(Ex, Ey), g(Ex, Ez), g(Ey, Ez))}


def _reference(reference):
    mean, sd = (float(v) for v in reference)
    if not (mean > 0 and sd > 0):
        raise MaterialError(f"T-score reference must be (mean > 0, sd > 0) mg/cm^3, got "
                            f"{reference}")
    return mean, sd


def bmd_from_tscore(t, reference=YOUNG_ADULT_QCT) -> float:
    """QCT trabecular BMD (mg/cm^3) at T-score ``t`` against ``reference`` (mean, SD)."""
    t = in_range("T-score", t, *T_SCORE_RANGE, error=MaterialError)
    mean, sd = _reference(reference)
    bmd = mean + t * sd
    if bmd <= 0:
        raise MaterialError(f"T-score {t:g} gives BMD {bmd:g} mg/cm^3 <= 0 with reference "
                            f"mean {mean:g}, SD {sd:g}")
    return bmd


def tscore_from_bmd(bmd, reference=YOUNG_ADULT_QCT) -> float:
    """T-score of QCT trabecular BMD (mg/cm^3) against ``reference`` (mean, SD)."""
    b = float(_bmd_array(bmd))
    mean, sd = _reference(reference)
    return (b - mean) / sd


def osteoporosis_scale(bmd) -> float:
    """0 at or below 80 mg/cm^3 (osteoporotic), 1 at or above 120 mg/cm^3 (normal), linear in
    BMD between: the rule by which cortex, endplates and posterior elements are scaled."""
    b = float(_bmd_array(bmd))
    return float(np.clip((b - OSTEOPOROSIS_BMD) / (NORMAL_BMD - OSTEOPOROSIS_BMD), 0.0, 1.0))


@dataclass(frozen=True)
class BoneQuality:
    """A patient's bone quality: trabecular BMD (mg/cm^3) or a T-score, a density-modulus law,
    and the material table it implies (:meth:`materials`).

    Osteoporosis scaling rule: with s = :func:`osteoporosis_scale` (0 at <= 80 mg/cm^3, 1 at
    >= 120), the cortex and bony endplates get E = 8040 + s (12000 - 8040) MPa and the posterior
    elements E = 2800 + s (3500 - 2800) MPa. With ``anisotropic=True`` the trabecular entry of
    :meth:`materials` is a dict of orthotropic engineering constants
    (:func:`orthotropic_trabecular`, with its stated assumptions) instead of (E, nu); the law
    must have transverse data.
    """

    bmd: float | None = None
    t_score: float | None = None
    law: str = "morgan2003"
    rule: str = "equivalent"
    reference: tuple = YOUNG_ADULT_QCT
    anisotropic: bool = False
    E_min: float = 1.0
    _bmd: float = field(init=False, repr=False)

    def __post_init__(self):
        if (self.bmd is None) == (self.t_score is None):
            raise MaterialError("give exactly one of bmd (mg/cm^3) or t_score")
        get_law(self.law)
        if self.anisotropic and self.law not in TRANSVERSE_LAWS:
            raise MaterialError(f"anisotropic bone needs transverse moduli, which law {self.law!r} "
                                f"does not give; laws with them: {', '.join(sorted(TRANSVERSE_LAWS))}")
        if self.rule not in ASH_RULES:
            raise MaterialError(f"unknown ash-density rule {self.rule!r}; known rules: "
                                f"{', '.join(ASH_RULES)}")
        b = (float(_bmd_array(self.bmd)) if self.bmd is not None
             else bmd_from_tscore(self.t_score, self.reference))
        object.__setattr__(self, "_bmd", b)

    @property
    def bmd_mg_cm3(self) -> float:
        return self._bmd

    @property
    def osteoporotic(self) -> bool:
        return self._bmd < OSTEOPOROSIS_BMD

    def materials(self) -> dict:
        """{part: (E MPa, nu)} for cortex, trabecular, endplate, posterior, annulus, nucleus;
        with ``anisotropic`` the trabecular entry is {E, nu, G} (:func:`orthotropic_trabecular`)."""
        s = osteoporosis_scale(self._bmd)
        r = REFERENCE_MATERIALS

        def mix(name):
            (eh, nu), (eo, _) = r[name], r[name + "_osteoporotic"]
            return (eo + s * (eh - eo), nu)

        nu = r["trabecular_nu"][1]
        trab = (orthotropic_trabecular(self._bmd, self.law, rule=self.rule, E_min=self.E_min, nu=nu)
                if self.anisotropic else
                (trabecular_modulus(self._bmd, self.law, rule=self.rule, E_min=self.E_min), nu))
        return {
            "cortex": mix("cortex"),
            "trabecular": trab,
            "endplate": mix("endplate"),
            "posterior": mix("posterior"),
            "annulus": r["annulus"],
            "nucleus": r["nucleus"],
        }
