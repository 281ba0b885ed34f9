"""The parametric vertebra against numbers from the literature (issue 4, deliverable 8; issue 16,
deliverable 1). Each check says which kind of number it compares with
(``fem.meshes.experiments``) and asserts only what that kind of number can defend.

Intact osteoporotic L1 stiffness (``BoneQuality(bmd=70)``: QCT trabecular BMD below the
80 mg/cm^3 osteoporosis threshold; posterior elements cut off, as whole-body tests do).

* Against an independent FE computation, like with like: the Bonelab spine FE benchmark
  (github.com/Bonelab/spineFE-benchmark, ``results/verse19fem_AppendixA.csv``) computed the
  linear stiffness and nonlinear failure load of vertebrae from clinical CT between PMMA disks
  (2 500 MPa) under 0.2 mm. Its lumbar vertebrae of 60-80 mg/cm^3 (n = 21): 14.9 +- 2.6 kN/mm
  (11.7-20.9) and 2.56 +- 0.80 kN (0.88-4.73). The same rig here (``fem.meshes.rigs``, tied PMMA
  disks, fixed platen) gives 20.5 kN/mm at 1.5 mm voxels (20.6 at 1 mm): inside the range, at
  its top, 1.4 SD above the mean (their vertebrae keep their posterior elements and a CT-blurred
  cortex; ours is the parametric L1 with a 0.4 mm cortex of 8 GPa); and a pushover of L1 in it
  peaks at 4.0 kN at 2 mm (inside the range, 1.8 SD above the mean). The tests assert the ranges.
* Against a measured crosshead stiffness: Day, Jones & Wilcox 2020 (JOR Spine 3:e1077; thesis
  table in mngad/pythonPlotting): 14 lumbar bodies of donors aged 83-94, 4 599 +- 1 398 N/mm
  (2 891-7 185), posterior elements cut at the pedicles, PMMA end-caps, a ball-mounted platen.
  A crosshead stiffness holds the machine's, the fixtures' and the caps' seating compliance in
  series with the specimen's, so it is a lower bound of the specimen's own stiffness; the model of
  the specimen alone (their protocol replicated: frictionless caps, ball platen) must lie above
  the highest of them, and does (19.0 kN/mm at 1 mm). Closing the gap to their mean takes a
  series stiffness of about 6 kN/mm (``bench/validation.py``, docs/validation.md); the thesis
  gives no measurement of its machine's compliance, so that number is not checked against one,
  and no test asserts the model inside the crosshead range.

Mesh: the stiffness is not monotone in the voxel size, because the 0.4 mm cortex and the 0.25 mm
endplates are one voxel thick with a thickness-scaled modulus. Measured on the bare body between
rigid platens: 18.1, 18.9, 19.4 and 18.9 kN/mm at 1.5, 1.0, 0.75 and 0.5 mm voxels, so 1.0 mm
(about 4 s) lies within 0.2 % of the 0.5 mm value and the spread from 1.0 to 0.5 mm is about 3 %.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import pytest

import fem
from fem.meshes import experiments, loadcases, rigs
from fem.meshes.bone import BoneQuality
from fem.meshes.vertebra import LEVELS, vertebra_model

BMD = 70.0
VOXEL = 1.0
COARSER = 1.5
#: voxel sizes of the rig checks (mm): the benchmark replica's stiffness moves 0.6 % from 1.5 to
#: 1.0 mm, the crosshead bound is an order of magnitude away from either
RIG_VOXEL = 1.5
PUSHOVER_VOXEL = 2.0


@lru_cache(maxsize=None)
def l1_stiffness(voxel: float) -> float:
    """Axial stiffness (N/mm) of the intact osteoporotic L1 body between rigid platens."""
    m = vertebra_model("L1", voxel_size=voxel, materials=BoneQuality(bmd=BMD), posterior=False)
    m = loadcases.loaded(m, "standing")
    case = loadcases.conditions(m)
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


def _rig(contact, platen, cap_material=rigs.CAP_MATERIAL, voxel=RIG_VOXEL):
    m = rigs.potted_body("L1", voxel_size=voxel, materials=BoneQuality(bmd=BMD),
                         contact=contact, cap_material=cap_material)
    rigs.compression_test(m, 0.2, platen=platen)
    return m


def test_intact_l1_in_the_fe_benchmark_rig_lies_in_its_range():
    """Kind "fe": the benchmark's protocol (PMMA disks of 2 500 MPa tied to the endplates, fixed
    platen, 0.2 mm) gives a linear stiffness inside the range of its 21 lumbar vertebrae of
    60-80 mg/cm^3."""
    ref = experiments.SPINEFE_STIFFNESS
    k = rigs.machine_stiffness(fem.solve(_rig("tied", "fixed", (2500.0, 0.3)), rtol=1e-10))
    assert ref.in_range(k), (k, ref.describe())


def test_intact_l1_failure_load_in_the_fe_benchmark_rig_lies_in_its_range():
    """Kind "fe": the peak of a damage pushover of L1 in the benchmark's rig lies inside the
    range of its nonlinear failure loads at 60-80 mg/cm^3."""
    from fem.strength import pushover

    ref = experiments.SPINEFE_FAILURE
    m = _rig("tied", "fixed", (2500.0, 0.3), voxel=PUSHOVER_VOXEL)
    res = pushover(m, level="L1", control="displacement")
    assert res.peak_reached
    assert ref.in_range(res.peak_load), (res.peak_load, ref.describe())


def test_intact_l1_is_stiffer_than_any_crosshead_stiffness_of_day_2020():
    """Kind "crosshead": a testing machine's stiffness is a lower bound of the specimen's, so the
    specimen's model in the same set-up (frictionless end-caps, ball platen) lies above every
    one of Day et al.'s 14 bodies."""
    ref = experiments.DAY_2020
    k = rigs.machine_stiffness(fem.solve(_rig("frictionless", "ball"), rtol=1e-10))
    assert k > ref.high, (k, ref.describe())


def test_thoracic_discs_lie_in_the_measured_thoracic_range():
    """Kunkel et al. 2011 (J Anat 219:375) measured thoracic disc heights of 4.5-7.2 mm on 72
    segments; the table spans exactly that range and thickens caudally (Fletcher et al. 2015,
    Eur Spine J: disc height rises from T4-5 to T10-11)."""
    discs = np.array([LEVELS[n].disc_below for n in ("T6", "T7", "T8", "T9", "T10", "T11", "T12")])
    np.testing.assert_allclose([discs.min(), discs.max()], [4.5, 7.2])
    assert np.all(np.diff(discs) > 0)


def _stiffness_and_peak(model):
    """A bare L3's stiffness (N/mm: the standing 500 N on a rigid plate over its travel) and
    the peak of its damage pushover (N): the Wegrzyn and Molloy replicas' measures."""
    from fem.strength import pushover

    model = model.copy()
    model.conditions = []
    model = loadcases.loaded(model, "standing")
    k = 500.0 / -float(fem.solve(model).plate_motion("load:standing")[2])
    return k, pushover(model, level="L3").peak_load


@pytest.fixture(scope="module")
def crushed_l3():
    """The parametric L3 at 5 mm (posterior elements cut, BMD 70), intact and after the
    fracture model's default 25 % crush, each with its stiffness and pushover peak."""
    from fem.meshes.pathology import compress

    m = vertebra_model("L3", voxel_size=5.0, materials=BoneQuality(bmd=70), posterior=False)
    crushed = compress(m, "L3", "crush", height_loss=0.25)
    return {"intact": m, "crushed": crushed, "k0s0": _stiffness_and_peak(m),
            "k1s1": _stiffness_and_peak(crushed)}


def test_the_default_crush_loses_stiffness_much_more_than_strength(crushed_l3):
    """Wegrzyn et al. 2011 (in vitro, n = 21): human L3 crushed to a 25 % deformity lost
    53 +- 18 % of their stiffness and 11 +- 19 % of their failure load. The fracture model's
    defaults (since 2026-12-06: the crushed bone's mass kept, compacted into the damaged band,
    whose modulus ratio is measured on overloaded trabecular bone, Wolfram et al. 2011; no
    parameter set from this experiment) on the parametric L3, posterior elements cut, standing
    load on a rigid plate, pushover of L3 (steps bounded by the damage, since 2026-12-06):
    54 % and 13 % at 5 mm (seconds), 53 % and 26 % at 2 mm (docs/validation.md). Asserted:
    both within one SD, and the measured pattern, stiffness lost more than twice as fast as
    strength. Without the mass the same measured damage loses 69 % and 16 % at 5 mm, 70 % and
    33 % at 2 mm (outside one SD)."""
    (k0, s0), (k1, s1) = crushed_l3["k0s0"], crushed_l3["k1s1"]
    k_lost, s_lost = 100.0 * (1.0 - k1 / k0), 100.0 * (1.0 - s1 / s0)
    assert experiments.WEGRZYN_STIFFNESS.within(k_lost), k_lost
    assert experiments.WEGRZYN_STRENGTH.within(s_lost), s_lost
    assert k_lost > 2.0 * s_lost, (k_lost, s_lost)


def test_the_linear_pistoia_estimate_loses_what_crushed_bone_loses():
    """The study's default strength (``strength = "pistoia"``, linear) on the Wegrzyn replica:
    the parametric L3 at 3 mm (posterior elements cut, BMD 70, standing on a rigid plate) loses
    26.0 % of its Pistoia strength with the default 25 % crush, within one SD of Wegrzyn et
    al.'s 11 +- 19 % (21.3 % at 2 mm, 21.0 % at 1.5 mm; docs/validation.md), because the
    criterion reads the crushed band's strain over its damage history; on its raw strain the
    band, at 0.14 of its modulus, had set the estimate and the loss was 76 % (2 mm). The
    fracture that loses its bone's mass loses more (46 % at 5 mm to 42 % at 2 mm)."""
    from fem import metrics
    from fem.meshes.pathology import compress

    def pistoia(model):
        model = model.copy()
        model.conditions = []
        model = loadcases.loaded(model, "standing")
        rows = metrics.level_metrics(fem.solve(model, rtol=1e-8)).set_index("level")
        return float(rows.loc["L3", "strength_pistoia_n"])

    m = vertebra_model("L3", voxel_size=3.0, materials=BoneQuality(bmd=70), posterior=False)
    p0 = pistoia(m)
    lost = 100.0 * (1.0 - pistoia(compress(m, "L3", "crush", height_loss=0.25)) / p0)
    assert experiments.WEGRZYN_STRENGTH.within(lost), lost
    massless = compress(m, "L3", "crush", height_loss=0.25, conserve_mass=False)
    assert 100.0 * (1.0 - pistoia(massless) / p0) > lost + 5.0


def test_vertebroplasty_restores_the_strength_before_the_stiffness(crushed_l3):
    """Molloy, Mathis & Belkoff 2003 (in vitro, 120 bodies T6-L5; abstract read): after a
    compression fracture, bipedicular PMMA restored the failure load at 16.2 % of the body's
    volume on average and the stiffness at 29.8 %: strength first. (Issue 16 found the model
    the other way round: 36-40 % for the strength, 12-13 % for the stiffness.) The crushed L3
    of the Wegrzyn replica with 2 mL of bipedicular PMMA, nothing set from this experiment:
    at 5 mm its fill is 9.4 % and the strength is back (1.49 of intact) while the stiffness is
    not (0.52). Asserted: the fill is a few percent of the body, and at it the strength is
    restored and the stiffness is not. The fills themselves are not converged in the voxel size
    and are not asserted: the strength comes back at 11.5 / 20.4 / 25.3 / 30.7 % fill at 3 / 2 /
    1.5 / 1 mm, the stiffness at 33-35 % from 3 to 1.5 mm and not by 38 % at 1 mm
    (docs/validation.md, ``bench/validation.py --molloy``, 2026-12-07 evening)."""
    from fem import augment

    (k0, s0), (k1, s1) = crushed_l3["k0s0"], crushed_l3["k1s1"]
    treated = augment.pvp(crushed_l3["crushed"], "L3", 2.0, approach="bipedicular")
    fill = treated.metadata["augmentations"][-1].fill_fraction
    assert 0.05 < fill < 0.15, fill
    k, s = _stiffness_and_peak(treated)
    assert s > s1 and k > k1  # cement adds both
    assert s >= s0 and k < k0, (k / k0, s / s0)
