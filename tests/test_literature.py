"""The parametric vertebra against numbers from the literature (issue 4, deliverable 8).

Intact osteoporotic L1 stiffness. The model copies the in vitro whole-body compression test: the
L1 body without posterior elements (the tests cut them off), materials of
``BoneQuality(bmd=70)`` (QCT trabecular BMD below the 80 mg/cm^3 osteoporosis threshold), the
inferior endplate fixed and the superior endplate tied to a rigid plate carrying the 500 N
standing case. Stiffness = F / plate descent: with the bottom fixed, the descent is the
shortening between the two platens, the quantity a testing machine reads from its crosshead
(a measured value also contains the machine and embedding compliance, which lowers it).

Measured range: NOT VERIFIED, so that check skips (``MEASURED_STIFFNESS`` is None). Searched
and read as far as the stored copies go (abstracts, a few PMC table pages): Wegrzyn et al. 2011
(J Bone Miner Res 26:739; 21 L3, initial stiffness measured but the abstract gives only its
53 +- 18 % loss after a 25 % deformity), Roux et al. 2010 (J Bone Miner Res 25:356; 31 L3, 75 y;
correlations only), Buckley et al. 2007 (Bone 40:767; 81 T6-T10, 85 +- 8 y; Table 3 gives a
stiffness RMSE of 0.96-1.14 kN/mm at R^2 <= 0.38, not the mean), Kurutz et al. 2008 (J Multidiscip
Healthc 1:105; 54 osteoporotic L1-L2; moduli, not stiffness), Hou et al. 2013 (PLoS One,
doi:10.1371/journal.pone.0076843; stiffness per BMD group only in a figure), Tohmeh et al. 1999
(Spine 24:1772), Kopperdahl et al. 2000, Crawford et al. 2003, Dall'Ara et al. 2010, Eswaran et al.
2006 (no stiffness value in what could be read); and, searched again later, Steens et al. 2007 (Spine;
25 osteoporotic vertebrae, stiffness cut off in the abstract), Holub et al. 2015 (J Biomech; %
changes only), Kinzl et al. 2012 (Eur Spine J; % changes only), Aquarius et al. 2014 (Med Eng
Phys), Giambini et al. (PMC4852468; FE errors only), Day et al. 2020 (JOR Spine, PMC7084049) and
Trost et al. 2020 (Arch Orthop Trauma Surg 140:1395, doi:10.1007/s00402-020-03382-x: 7 intact
osteoporotic Th11-L2 controls failed at a mean 2841 N and a mean 0.99 mm, a secant of about
2.9 kN/mm to failure; a ratio of group means, not a reported stiffness, so not used). Fill
``MEASURED_STIFFNESS`` with a checked range (and its citation, donors and level) to turn the
check on. Expect it to need the test's compliance: a crosshead stiffness includes the platens,
the embedding and the seating of the endplates, which this model (rigid platens tied to the
endplates) leaves out; Trost's secant is about a sixth of this model's 18-19 kN/mm.

Not a measured range, so not used here: the only numbers found are finite-element predictions of
an independent lab, the Bonelab spine FE benchmark (github.com/Bonelab/spineFE-benchmark,
``results/verse19fem_AppendixA.csv``, column "Stiffness (linear) [N/mm]"; manuscript "in
submission" in 2024): linear voxel FE of whole vertebrae (posterior elements included, loaded
through PMMA caps) from 141 clinical VerSe CT scans (66 +- 15 y, vBMD 77.8 +- 53.6 mg/cm^3).
Their L1 targets at 60-80 mg/cm^3 give 12.0-16.0 kN/mm, below this model's 18-19 kN/mm at
70 mg/cm^3 (``BoneQuality(bmd=70)`` gives a trabecular E of 166 MPa, above the 34-146 MPa
usually reported for such bone).

Mesh: the stiffness is not monotone in the voxel size, because the 0.4 mm cortex and the 0.25 mm
endplates are one voxel thick with a thickness-scaled modulus. Measured on this model: 18.1, 18.9,
19.4 and 18.9 kN/mm at 1.5, 1.0, 0.75 and 0.5 mm voxels, so 1.0 mm (about 4 s) lies within 0.2 %
of the 0.5 mm value and the spread from 1.0 to 0.5 mm is about 3 %.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import pytest

import fem
from fem.meshes import loadcases
from fem.meshes.bone import BoneQuality
from fem.meshes.vertebra import LEVELS, vertebra_model

BMD = 70.0
VOXEL = 1.0
COARSER = 1.5

#: (low, high) intact whole-body stiffness in N/mm from a checked source, or None (see the module
#: docstring for what was searched)
MEASURED_STIFFNESS: tuple[float, float] | None = None


@lru_cache(maxsize=None)
def l1_stiffness(voxel: float) -> float:
    """Axial stiffness (N/mm) of the intact osteoporotic L1 body between rigid platens."""
    m = vertebra_model("L1", voxel_size=voxel, materials=BoneQuality(bmd=BMD), posterior=False)
    case = loadcases.apply(m, "standing")
    r = fem.solve(m, rtol=1e-10)
    force = -case["load:standing"].force[2]
    return force / -float(r.plate_motion("load:standing")[2])


def test_intact_osteoporotic_l1_stiffness_is_settled_in_the_voxel_size():
    """Refining 1.5 -> 1.0 mm changes the stiffness by less than 5 % (3.8 % measured; 1.0 mm is
    within 0.2 % of 0.5 mm), so a literature comparison at 1.0 mm is not a discretisation
    artefact."""
    k, k_coarse = l1_stiffness(VOXEL), l1_stiffness(COARSER)
    assert k > 0 and k_coarse > 0
    assert abs(k - k_coarse) / k < 0.05, (k, k_coarse)


def test_intact_osteoporotic_l1_stiffness():
    """The intact osteoporotic L1 lies inside the measured range (mean +- 2 SD or min-max)."""
    if MEASURED_STIFFNESS is None:
        pytest.skip("no measured intact vertebral-body stiffness could be checked in a primary "
                    "source: fill MEASURED_STIFFNESS (see the module docstring)")
    lo, hi = MEASURED_STIFFNESS
    assert lo <= l1_stiffness(VOXEL) <= hi


def test_thoracic_discs_lie_in_the_measured_thoracic_range():
    """Kunkel et al. 2011 (J Anat 219:375) measured thoracic disc heights of 4.5-7.2 mm on 72
    segments; the table spans exactly that range and thickens caudally (Fletcher et al. 2015,
    Eur Spine J: disc height rises from T4-5 to T10-11)."""
    discs = np.array([LEVELS[n].disc_below for n in ("T6", "T7", "T8", "T9", "T10", "T11", "T12")])
    np.testing.assert_allclose([discs.min(), discs.max()], [4.5, 7.2])
    assert np.all(np.diff(discs) > 0)
