"""The canonical augmentation study (issue 5): examples/augmentation_study.py at 4 mm voxels
(4 mm halves the suite's cost of it against 3 mm) with its default
disc, the fibre-reinforced annulus of a study, its printed table and the behaviour it must
show."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "augmentation_study.py"
STATES = ["intact", "fractured", "pvp_2ml", "pvp_4ml", "pvp_6ml", "pkp_4ml"]


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    spec = importlib.util.spec_from_file_location("augmentation_study", EXAMPLE)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    out = tmp_path_factory.mktemp("canonical")
    return mod, out, mod.run(4.0, out, solver="direct")


def _get(t, state, case, level, col):
    row = t[(t.state == state) & (t.load_case == case) & (t.level == level)]
    assert len(row) == 1, (state, case, level)
    return float(row[col].iloc[0])


def test_table_has_every_state_case_and_level(study):
    _, out, comp = study
    t = comp.table
    assert sorted(set(t.state)) == sorted(STATES)
    assert sorted(set(t.load_case)) == ["flexion", "standing"]
    assert len(t) == len(STATES) * 2 * 5  # T12-L4
    back = pd.read_csv(out / "canonical_study.csv")
    assert len(back) == len(t)
    for col in ("stiffness_n_per_mm", "rotational_stiffness_nm_per_deg"):  # NaN where undefined
        assert np.allclose(back[col], t[col], rtol=1e-12, equal_nan=True)
    assert len(list(out.glob("*.vtu"))) == len(STATES) * 2


def test_fracture_softens_and_cement_stiffens_the_treated_level(study):
    t = study[2].table
    # axial stiffness under axial compression only; under flexion the rotational one, which
    # is NaN where the posterior ligaments carry the moment past the body (the default
    # segment's: its bending is read across the discs, disc_rotation_deg)
    assert t[t.load_case == "flexion"]["stiffness_n_per_mm"].isna().all()
    assert t["rotational_stiffness_nm_per_deg"].isna().all()
    assert (t[t.level != "L4"]["disc_rotation_deg"] > 0.0).all()
    k = {s: _get(t, s, "standing", "L2", "stiffness_n_per_mm") for s in STATES}
    # the fracture softens the level; how much a bare body loses is asserted against
    # Wegrzyn 2011 in tests/test_vertebra.py and tests/test_literature.py, not here
    assert k["fractured"] < k["intact"]
    assert k["fractured"] < k["pvp_2ml"] < k["pvp_4ml"] < k["pvp_6ml"]
    assert k["fractured"] < k["pkp_4ml"]
    for case in ("standing", "flexion"):
        # Pistoia's criterion reads the crushed band's strain over its damage history
        # (fem.metrics, "Damaged bone"), so the fracture costs the level a part of its strength
        # within about one SD of Wegrzyn et al. 2011's loss (11 +- 19 %; here 19 % standing and
        # 19 % under flexion at 4 mm with the ligaments, 2026-12-07; 16 and 24 % without), and
        # cement and PKP's restored, cemented body give it back (until then the band's raw
        # strain set the estimate: -70 %, and under flexion cement, which did not reach the
        # band's front, left it within 2 %)
        s = {st: _get(t, st, case, "L2", "strength_pistoia_n") for st in STATES}
        pvp = [s["pvp_2ml"], s["pvp_4ml"], s["pvp_6ml"]]
        assert 0.7 * s["intact"] < s["fractured"] < s["intact"]
        assert s["fractured"] < min(pvp) and s["fractured"] < s["pkp_4ml"]
        phi = {st: _get(t, st, case, "L2", "factor_of_risk") for st in STATES}
        assert phi["fractured"] > phi["intact"]
        assert phi["fractured"] == pytest.approx(_get(t, "fractured", case, "L2", "load_n")
                                                 / s["fractured"], rel=1e-12)


def test_pkp_restores_height_and_cement_volumes_hold(study):
    t = study[2].table
    h = {s: _get(t, s, "standing", "L2", "height_anterior_mm") for s in STATES}
    assert h["fractured"] < h["intact"]
    for v in ("pvp_2ml", "pvp_4ml", "pvp_6ml"):
        assert h[v] == pytest.approx(h["fractured"], abs=1e-9)
    assert h["pvp_4ml"] < h["pkp_4ml"] < h["intact"]
    # half of the anterior height lost is restored: the balloon lifts the endplate by that much,
    # a geometric move, so exactly (3e-14 mm at 4 mm voxels, 7e-15 at 3 mm)
    assert h["pkp_4ml"] - h["fractured"] == pytest.approx(0.5 * (h["intact"] - h["fractured"]),
                                                          abs=1e-9)
    w = {s: _get(t, s, "standing", "L2", "wedge_angle_deg") for s in STATES}
    assert w["fractured"] > w["pkp_4ml"] > w["intact"] - 1e-9
    for s, v in (("pvp_2ml", 2.0), ("pvp_4ml", 4.0), ("pvp_6ml", 6.0), ("pkp_4ml", 4.0)):
        assert _get(t, s, "standing", "L2", "cement_placed_ml") == pytest.approx(v, rel=0.05)
        assert _get(t, s, "standing", "L2", "leak_ml") == 0.0
        assert _get(t, s, "standing", "L1", "cement_placed_ml") == 0.0


def test_headlines_and_printed_table(study):
    mod, out, comp = study
    cp = comp.collapse_prevention
    assert set(cp.level) == {"L2"}
    row = cp[(cp.state == "fractured") & (cp.load_case == "standing")]
    assert float(row["stiffness_ratio_fractured"].iloc[0]) == pytest.approx(1.0)
    ar = comp.adjacent_risk
    assert set(ar.level) == {"L1", "L3"} and set(ar.position) == {"above", "below"}
    base = ar[ar.state == "fractured"]
    assert np.allclose(base["factor_of_risk_change_pct"], 0.0)
    # the printed report of the example carries the table and both headlines
    text = mod.report(comp)
    for s in ("Collapse prevention at L2", "Adjacent-level risk", "pkp_4ml", "pvp_6ml"):
        assert s in text


def test_the_neighbours_are_free_and_the_load_keeps_its_line(study):
    """Issue 16, deliverable 4: on T12-L4 the levels next to the fracture (L1, L3) carry neither
    the plate nor the support, so both their endplates deflect; and the load keeps its line in
    space, so below the fracture, where nothing tipped, the load path is what it was intact: L3
    and L4 see the intact state's answers, while the tipped levels above do not."""
    t = study[2].table
    for lv in ("L1", "L3"):
        for side in ("superior", "inferior"):
            assert _get(t, "fractured", "standing", lv, f"endplate_bulge_{side}_mm") > 1e-3
    for lv in ("L3", "L4"):
        for col in ("factor_of_risk", "stiffness_n_per_mm"):
            assert _get(t, "fractured", "standing", lv, col) == pytest.approx(
                _get(t, "intact", "standing", lv, col), rel=0.01), (lv, col)
    # above the fracture the levels were tipped in front of the load's line, which bends the
    # disc between them backwards: it turns more, its posterior ligaments' ground is squeezed
    # (extension; the segment has its ligaments by default), and T12's answers move
    turn = {s: _get(t, s, "standing", "T12", "disc_rotation_deg") for s in ("intact", "fractured")}
    assert turn["fractured"] > turn["intact"] + 3.0, turn
    assert _get(t, "fractured", "standing", "T12", "ligament_force_n") < -50.0
    assert _get(t, "intact", "standing", "T12", "ligament_force_n") > -50.0
    assert abs(_get(t, "fractured", "standing", "T12", "factor_of_risk")
               / _get(t, "intact", "standing", "T12", "factor_of_risk") - 1.0) > 0.05


def test_the_study_on_real_anatomy(tmp_path):
    """Issue 8, deliverable 5: the canonical study on the mean L2-L4 (Clouthier et al. 2023)
    with a wedge-fractured L3, standing, at 4 mm voxels: the same behaviour as on the parametric
    segment (L3 loses 50 % of its stiffness at 4 mm)."""
    from fem.meshes import ssm

    if not ssm.data_folder().is_dir():
        pytest.skip(f"lumbar shape model data not found in {ssm.data_folder()}")
    spec = importlib.util.spec_from_file_location("augmentation_study", EXAMPLE)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    comp = mod.run(4.0, tmp_path, load_cases=("standing",), write_vtu=False, solver="auto",
                   anatomy="ssm")
    t = comp.table
    k = {s: _get(t, s, "standing", "L3", "stiffness_n_per_mm") for s in STATES}
    # a prediction on the shape model (the band's damage is measured on trabecular cores, not
    # set on a vertebra): Wegrzyn 2011, 53 +- 18 % stiffness loss after a 25 % deformity
    assert 0.29 <= 1 - k["fractured"] / k["intact"] <= 0.65
    assert k["fractured"] < k["pvp_2ml"] < k["pvp_4ml"] < k["pvp_6ml"]
    h = {s: _get(t, s, "standing", "L3", "height_anterior_mm") for s in STATES}
    assert h["fractured"] < h["pkp_4ml"] < h["intact"]
    assert set(comp.adjacent_risk.level) == {"L2", "L4"}
    assert "Collapse prevention at L3" in mod.report(comp)


def test_with_ligaments_every_state_keeps_them():
    """The parametric segment has its posterior ligaments by default (``--no-ligaments`` leaves
    them out): the six states of the study (fracture, PVP, PKP transform the model) keep them,
    whole, between every pair of levels."""
    from fem.ligaments import ligament_fibres

    spec = importlib.util.spec_from_file_location("augmentation_study", EXAMPLE)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    states = mod.states(4.0)
    assert sorted(states) == sorted(STATES)
    counts = {name: {r.name: len(r.elements) for r in ligament_fibres(m)}
              for name, m in states.items()}
    assert len(counts["intact"]) == 3 * 4  # three ligaments x four discs of T12-L4
    for name, c in counts.items():
        assert c == counts["intact"], name
