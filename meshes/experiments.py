"""Published numbers the model is checked against: each with its source, what kind of number it
is, and the selection that produced it (``bench/validation.py`` prints the model beside them;
``tests/test_literature.py`` asserts what they can defend). Units in each entry's ``unit``.

Kinds:

* ``"crosshead"``: a testing machine's stiffness, force over crosshead travel. It contains the
  compliance of the machine, its fixtures and the seating of the end-caps in series with the
  specimen's, so it is a LOWER bound of the specimen's own stiffness (1/k = 1/k_specimen +
  1/k_rest), not the number a finite-element model of the specimen alone computes;
* ``"fe"``: an independent finite-element computation of real vertebrae (not a measurement),
  comparable like with like when the protocol is replicated;
* ``"in vivo"`` / ``"in vitro"``: measured on people / on cadaver specimens directly (an
  intradiscal pressure needle, strain on the specimen).
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Reference:
    """One published number: its mean, SD (NaN if not given), range and count."""

    name: str
    source: str
    quantity: str
    unit: str
    kind: str
    n: int
    mean: float
    sd: float = math.nan
    low: float = math.nan
    high: float = math.nan
    protocol: str = ""

    def within(self, value: float, sds: float = 1.0) -> bool | None:
        """Whether ``value`` lies within mean +- ``sds`` SD (None: no SD was published)."""
        if math.isfinite(self.sd):
            return abs(value - self.mean) <= sds * self.sd
        return None

    def in_range(self, value: float) -> bool | None:
        """Whether ``value`` lies within the published min-max range (None: none published)."""
        if math.isfinite(self.low) and math.isfinite(self.high):
            return self.low <= value <= self.high
        return None

    def describe(self) -> str:
        sd = f" ± {self.sd:.4g}" if math.isfinite(self.sd) else ""
        rng = (f" ({self.low:.4g}-{self.high:.4g})" if math.isfinite(self.low) else "")
        return f"{self.mean:.4g}{sd}{rng} {self.unit}"


#: Day, Jones & Wilcox 2020 (JOR Spine 3:e1077): 14 lumbar vertebral bodies (L1-L5 of 4 donors
#: aged 83-94), the thesis table ``tab:aug_non_aug_stiff`` (public repository
#: mngad/pythonPlotting, ``Chapters/Chapter_HT.tex``), mean and sample SD of its 14 intact values
DAY_2020_INTACT = (2991.0, 3456.0, 3244.0, 3223.0, 2891.0, 6149.0, 5153.0, 5357.0, 5338.0,
                   3277.0, 5064.0, 6098.0, 4957.0, 7185.0)


def _stats(values):
    n = len(values)
    mean = sum(values) / n
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    return n, mean, sd, min(values), max(values)


_n, _m, _s, _lo, _hi = _stats(DAY_2020_INTACT)
DAY_2020 = Reference(
    name="day2020", source="Day, Jones & Wilcox 2020, JOR Spine 3:e1077 (thesis data, "
    "mngad/pythonPlotting)", quantity="intact vertebral-body stiffness", unit="N/mm",
    kind="crosshead", n=_n, mean=_m, sd=_s, low=_lo, high=_hi,
    protocol="L1-L5 bodies, posterior elements cut at the pedicles, PMMA end-caps, upper cap on "
    "a ball; steepest slope of the machine's force-crosshead curve up to 1 600 N")

#: the Bonelab spine FE benchmark (github.com/Bonelab/spineFE-benchmark,
#: ``results/verse19fem_AppendixA.csv``): linear and nonlinear voxel FE of whole vertebrae from
#: clinical CT (VerSe), PMMA disks (E 2 500 MPa, nu 0.3) on both endplates, 0.2 mm
#: displacement, trabecular modulus by Kopperdahl's law. Selected here: the lumbar vertebrae with
#: a phantomless vBMD of 60-80 mg/cm^3 (n = 21, mean 70.9; 12 L1, 6 L2, 2 L4, 1 L5), the density
#: of the project's osteoporotic default (``BoneQuality(bmd=70)``)
SPINEFE_STIFFNESS = Reference(
    name="spinefe_stiffness", source="Bonelab spineFE-benchmark (verse19fem Appendix A)",
    quantity="linear stiffness, lumbar, vBMD 60-80 mg/cm3", unit="N/mm", kind="fe", n=21,
    mean=14854.0, sd=2595.0, low=11695.0, high=20911.0,
    protocol="whole vertebra between PMMA disks (2 500 MPa), 0.2 mm axial displacement")
SPINEFE_FAILURE = Reference(
    name="spinefe_failure", source="Bonelab spineFE-benchmark (verse19fem Appendix A)",
    quantity="nonlinear failure load, lumbar, vBMD 60-80 mg/cm3", unit="N", kind="fe", n=21,
    mean=2559.0, sd=804.0, low=877.0, high=4730.0,
    protocol="as the linear stiffness, nonlinear bone; peak force")

#: Wilke et al. 1999 (Spine 24:755): intradiscal pressure at L4-L5 of one volunteer, relaxed
#: standing; the load of the project's "standing" case (500 N) is its source's equivalent
#: (``fem.meshes.loadcases``)
WILKE_1999 = Reference(
    name="wilke1999", source="Wilke et al. 1999, Spine 24:755", quantity="L4-L5 nucleus "
    "pressure, relaxed standing", unit="MPa", kind="in vivo", n=1, mean=0.5,
    protocol="pressure transducer in the nucleus of one volunteer (no spread published)")
#: Nachemson 1960 (Acta Orthop Scand 31 suppl 43): nucleus pressure about 1.5 x axial load /
#: disc cross-section, in cadaver discs (the factor as quoted by the biomechanics reference of
#: this project; no spread given)
NACHEMSON_1960 = Reference(
    name="nachemson1960", source="Nachemson 1960 (as quoted in reference/biomechanics.md)",
    quantity="nucleus pressure / (axial load / disc area)", unit="-", kind="in vitro", n=1,
    mean=1.5, protocol="needle pressure transducer in loaded cadaver discs")

#: Holmes, Hukins & Freemont 1993 (Eur Spine J 2:16): the caudal endplate's instantaneous
#: displacement into the vertebra when six cadaveric lumbar motion segments (vertebra, disc,
#: vertebra) were compressed to 1.6 kN (abstract checked)
HOLMES_1993 = Reference(
    name="holmes1993", source="Holmes, Hukins & Freemont 1993, Eur Spine J 2:16",
    quantity="endplate displacement at 1.6 kN", unit="mm", kind="in vitro", n=6, mean=0.14,
    sd=0.04, protocol="lumbar motion segments compressed to 1.6 kN; displacement transducer on "
    "the caudal endplate")
#: the axial compressive stiffness of a lumbar motion segment, 1.4 +- 0.48 kN/mm, as tabulated in
#: PMC4844119 (secondary: its primary source was not identified, so no n is known; 1 stands in)
SEGMENT_STIFFNESS = Reference(
    name="segment_stiffness", source="lumbar motion segment, table in PMC4844119 (secondary)",
    quantity="axial compressive stiffness", unit="N/mm", kind="in vitro", n=1, mean=1400.0,
    sd=480.0, protocol="axial compression of a vertebra-disc-vertebra segment")

#: Wegrzyn et al. 2011 (J Bone Miner Res 26:739, PMC3179325): 21 human L3 compressed to 25 %
#: deformity between platens, then retested. Both losses are predictions since 2026-12-06: the
#: fracture model's damaged band takes its modulus ratio from Wolfram et al. 2011's overloaded
#: trabecular bone (``fem.meshes.pathology.CRUSHED_MODULUS_RATIO``); before, its factor was
#: calibrated on this stiffness loss
WEGRZYN_STIFFNESS = Reference(
    name="wegrzyn2011_stiffness", source="Wegrzyn et al. 2011, J Bone Miner Res 26:739",
    quantity="stiffness lost after a 25 % deformity", unit="%",
    kind="in vitro", n=21, mean=53.0, sd=18.0,
    protocol="axial compression between platens to 25 % deformity, relaxation, retest")
WEGRZYN_STRENGTH = Reference(
    name="wegrzyn2011_strength", source="Wegrzyn et al. 2011, J Bone Miner Res 26:739",
    quantity="failure load lost after a 25 % deformity", unit="%", kind="in vitro", n=21,
    mean=11.0, sd=19.0, protocol="as the stiffness; failure load of the retest")
#: the height the same vertebrae recovered after the 25 % deformity, 30 minutes unloaded (the
#: abstract: "deformation recovery averaged 31 % +- 7 %"). The model's value: the crushed body's
#: elastic springback plus what its trabecular core gives back (``fem.strength.crush_recovery``,
#: Fyhrie & Schaffler 1994's lower bound, the shell keeping its collapse); not converged in the
#: voxel size (bench/validation.py, docs/validation.md)
WEGRZYN_RECOVERY = Reference(
    name="wegrzyn2011_recovery", source="Wegrzyn et al. 2011, J Bone Miner Res 26:739",
    quantity="deformation recovered after a 25 % deformity", unit="%", kind="in vitro", n=21,
    mean=31.0, sd=7.0, protocol="as the stiffness; height after 30 min of relaxation")

#: Maquer, Schwiedrzik & Zysset (accepted manuscript 2014, Comput Methods Biomech Biomed Engin;
#: the abstract read, not the paper): homogenised HR-pQCT FE of 12 vertebral bodies under axial
#: compression, embedded in PMMA against bonded to a healthy disc; "ultimate forces obtained
#: with PMMA were 22 % higher than with IVD". An FE number, no SD; the model's value is the
#: same L2 potted in caps over through its discs in the canonical segment, each at its first
#: failure (bench/disc_vs_caps.py)
MAQUER_EMBEDDING = Reference(
    name="maquer_embedding", source="Maquer, Schwiedrzik & Zysset, CMBBE (FE)",
    quantity="strength in PMMA caps / through a healthy disc", unit="-", kind="fe", n=12,
    mean=1.22, protocol="the same vertebral body embedded in PMMA and bonded to a disc")

#: Molloy, Mathis & Belkoff 2003 (Spine 28:1549; the abstract read): 120 vertebral bodies (T6-L5)
#: of 10 osteoporotic female spines, their volumes by Archimedean displacement; compression
#: fractures created, the initial strength and stiffness measured; bipedicular PMMA, 2-8 mL;
#: recompressed. Restored strength and stiffness (% of initial) against the cement's share of
#: the body's volume, by linear regression (weak: r^2 0.21 and 0.27): on average 16.2 % fill
#: restored the strength and 29.8 % the stiffness. Regression intercepts, no SD. Not used to set
#: anything: the model's fills come from the fracture model and the cement fill of fem.augment
#: (bench/validation.py --molloy)
MOLLOY_STRENGTH_FILL = Reference(
    name="molloy2003_strength", source="Molloy, Mathis & Belkoff 2003, Spine 28:1549",
    quantity="cement fill that restores the failure load", unit="% of body", kind="in vitro",
    n=120, mean=16.2, protocol="compression fracture, bipedicular PMMA 2-8 mL, recompression; "
    "fill where restored strength reaches 100 % of initial (regression)")
MOLLOY_STIFFNESS_FILL = Reference(
    name="molloy2003_stiffness", source="Molloy, Mathis & Belkoff 2003, Spine 28:1549",
    quantity="cement fill that restores the stiffness", unit="% of body", kind="in vitro",
    n=120, mean=29.8, protocol="as the strength; fill where restored stiffness reaches 100 %")

#: Baroud, Nemes, Heini & Steffen 2003 (Eur Spine J 12:421; the abstract read): FE of an L4-L5
#: motion segment in quasi-static compression, one vertebra augmented by a rigid cement pillar
#: under its endplates: the augmented endplate's bulge fell to 7 % of its value, the disc
#: stiffened by about 17 %, the segment by 11 %, and "the IV pressure accordingly increased by
#: approximately 19 %". One model, an FE number (bench/load_shift.py replicates the pillar)
BAROUD_2003_PRESSURE = Reference(
    name="baroud2003_pressure", source="Baroud, Nemes, Heini & Steffen 2003, Eur Spine J 12:421",
    quantity="disc pressure rise next to a cement pillar", unit="%", kind="fe", n=1, mean=19.0,
    protocol="L4-L5 motion segment FE, one body augmented by a rigid pillar under its "
    "endplates, axial compression")
#: Rohlmann, Zander & Bergmann 2006 (Eur Spine J 15:1255; the abstract read): nonlinear FE of the
#: lumbar spine; "augmentation of the vertebral body with bone cement ... increase [of the
#: intradiscal pressure] only about 2.4 % for the intact as well as for the fractured vertebra"
ROHLMANN_2006_PRESSURE = Reference(
    name="rohlmann2006_pressure", source="Rohlmann, Zander & Bergmann 2006, Eur Spine J 15:1255",
    quantity="adjacent disc pressure rise from cement", unit="%", kind="fe", n=1, mean=2.4,
    protocol="nonlinear FE of the lumbar spine, upper body weight, vertebra augmented")

#: Niosi et al. 2006 (Eur Spine J 15:913, Table 1, PMC3489456; read in the table, not the whole
#: paper): 10 L2-L5 specimens, intact, +-7.5 N·m pure moments with and without a 600 N follower
#: preload; the rotation of one segment (the caption does not name the level: presumably L3-L4,
#: where the device under test went). Ligamentous segments with facets; the model has no facets
#: (fem.ligaments), so only flexion is compared
NIOSI_2006_FLEXION = Reference(
    name="niosi2006_flexion", source="Niosi et al. 2006, Eur Spine J 15:913",
    quantity="segment rotation, 7.5 N·m pure flexion", unit="deg", kind="in vitro", n=10,
    mean=3.7, sd=1.5, protocol="intact L2-L5 specimens, pure moment, no preload")
NIOSI_2006_FLEXION_PRELOAD = Reference(
    name="niosi2006_flexion_preload", source="Niosi et al. 2006, Eur Spine J 15:913",
    quantity="segment rotation, 7.5 N·m flexion + 600 N follower load", unit="deg",
    kind="in vitro", n=10, mean=4.4, sd=2.0,
    protocol="intact L2-L5 specimens, pure moment with a 600 N follower preload")
NIOSI_2006_EXTENSION = Reference(
    name="niosi2006_extension", source="Niosi et al. 2006, Eur Spine J 15:913",
    quantity="segment rotation, 7.5 N·m pure extension", unit="deg", kind="in vitro", n=10,
    mean=3.3, sd=1.5, protocol="intact L2-L5 specimens, pure moment, no preload")

ALL = (DAY_2020, SPINEFE_STIFFNESS, SPINEFE_FAILURE, WILKE_1999, NACHEMSON_1960,
       HOLMES_1993, SEGMENT_STIFFNESS, WEGRZYN_STIFFNESS, WEGRZYN_STRENGTH,
       WEGRZYN_RECOVERY, MAQUER_EMBEDDING, MOLLOY_STRENGTH_FILL, MOLLOY_STIFFNESS_FILL,
       BAROUD_2003_PRESSURE, ROHLMANN_2006_PRESSURE, NIOSI_2006_FLEXION,
       NIOSI_2006_FLEXION_PRELOAD, NIOSI_2006_EXTENSION)
