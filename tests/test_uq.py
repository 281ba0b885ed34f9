"""Sampled studies (issue 21): [uncertain] specs, designs, common random numbers, and the
statistics of vfem uq, on analytic functions and on a real small study."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from fem.anatomy import level_frame
from fem.study import SpecError, Study, StudySpec, run_id
from fem.study import uq as uqmod
from fem.study.recipe import build_model
from fem.study.spec import PARAMETERS
from fem.study.uncertain import Uncertain

#: the solid-annulus disc without the posterior ligaments (one linear solve a run): these tests
#: are of the sampling and its analysis, not of the disc, and the fibre disc or the ligaments'
#: secant iterations would double their runs' cost
BASE = {"levels": "L1-L3", "fracture_level": "L2", "voxel_size": 4.0, "disc": "isotropic",
        "ligaments": "no"}


def spec(uncertain, runs=({"procedure": "intact"}, {"procedure": "pvp"}), base=BASE,
         grid=None):
    d = {"study": {"name": "uq", "write_vtu": False}, "base": dict(base),
         "runs": [dict(r) for r in runs], "uncertain": uncertain}
    if grid:
        d["grid"] = grid
    return StudySpec.from_dict(d)


def normal(mean, sd):
    return {"distribution": "normal", "mean": mean, "sd": sd}


def uniform(lo, hi):
    return {"distribution": "uniform", "low": lo, "high": hi}


# ------------------------------------------------------------------------------ the spec

@pytest.mark.parametrize("design,n,size", [("montecarlo", 5, 5), ("lhs", 7, 7), ("sobol", 8, 8),
                                           ("saltelli", 4, 4 * (2 + 2))])
def test_designs_give_their_number_of_patients_and_every_arm_sees_each(design, n, size):
    s = spec({"design": design, "samples": n, "seed": 2,
              "parameters": {"bmd": uniform(50.0, 90.0), "cement_modulus": uniform(1e3, 4e3)}})
    runs = s.expand()
    assert s.count() == len(runs) == 2 * size
    # sample-major, and common random numbers: both arms of a patient share its values
    assert [p["sample"] for p in runs] == [i for i in range(size) for _ in range(2)]
    for a, b in zip(runs[::2], runs[1::2]):
        assert (a["procedure"], b["procedure"]) == ("intact", "pvp")
        assert a["bmd"] == b["bmd"] and a["cement_modulus"] == b["cement_modulus"]
    assert len({run_id(p) for p in runs}) == len(runs)
    # reproducible from the seed, and another seed gives other patients
    again = spec(s.to_dict()["uncertain"]).expand()
    assert [run_id(p) for p in again] == [run_id(p) for p in runs]
    other = spec({**s.to_dict()["uncertain"], "seed": 3}).expand()
    assert [p["bmd"] for p in other] != [p["bmd"] for p in runs]


def test_lhs_puts_one_point_in_each_stratum():
    u = Uncertain.from_dict({"design": "lhs", "samples": 50, "seed": 1,
                             "parameters": {"bmd": uniform(0.0, 1.0), "x": uniform(0.0, 1.0)}})
    pts = u.unit()
    for j in range(2):
        assert sorted(np.floor(pts[:, j] * 50).astype(int)) == list(range(50))


@pytest.mark.parametrize("dist,mean,sd,lo,hi", [
    (normal(70.0, 10.0), 70.0, 10.0, -np.inf, np.inf),
    ({"distribution": "lognormal", "mean": 3000.0, "sd": 600.0}, 3000.0, 600.0, 0.0, np.inf),
    (uniform(40.0, 100.0), 70.0, 60.0 / math.sqrt(12.0), 40.0, 100.0),
    ({"distribution": "truncnormal", "mean": 70.0, "sd": 20.0, "low": 50.0, "high": 90.0},
     70.0, None, 50.0, 90.0),
])
def test_distributions_have_their_moments_and_support(dist, mean, sd, lo, hi):
    u = Uncertain.from_dict({"design": "lhs", "samples": 4000, "seed": 7,
                             "parameters": {"bmd": dist, "y": uniform(0, 1)}})
    v = np.array([row["bmd"] for row in u.values()])
    assert v.min() >= lo and v.max() <= hi
    assert abs(v.mean() - mean) < 0.01 * abs(mean)
    if sd is not None:
        assert abs(v.std() - sd) < 0.03 * sd
    else:  # a normal cut symmetrically at one SD: SD 0.538 sigma
        assert abs(v.std() - 0.538 * 20.0) < 0.03 * 0.538 * 20.0


def test_choices_follow_their_weights_and_integers_are_rounded():
    s = spec({"design": "montecarlo", "samples": 3000, "seed": 4,
              "parameters": {"density_law": {"distribution": "choice",
                                             "values": ["morgan2003", "kopperdahl1998",
                                                        "keller1994"],
                                             "weights": [2, 1, 1]},
                             "seed": uniform(0, 1000)}},
             runs=[{"procedure": "intact"}])
    rows = s.samples()
    share = np.mean([r["density_law"] == "morgan2003" for r in rows])
    assert abs(share - 0.5) < 3 * math.sqrt(0.25 / 3000)
    assert all(isinstance(r["seed"], int) and 0 <= r["seed"] <= 1000 for r in rows)


def test_toml_spec_with_uncertain_round_trips_through_the_store(tmp_path):
    text = """
[study]
name = "t"
write_vtu = false

[base]
levels = "L1-L3"
fracture_level = "L2"

[[runs]]
procedure = "pvp"

[uncertain]
design = "sobol"
samples = 4
seed = 11

[uncertain.parameters.seed]
distribution = "uniform"
low = 0
high = 99

[uncertain.parameters.cleft]
distribution = "choice"
values = [true, false]
"""
    path = tmp_path / "s.toml"
    path.write_text(text)
    s = StudySpec.from_toml(path)
    again = StudySpec.from_dict(json.loads(json.dumps(s.to_dict())))
    assert [run_id(p) for p in again.expand()] == [run_id(p) for p in s.expand()]
    assert {p["cleft"] for p in s.expand()} <= {True, False}


def test_unsampled_runs_keep_their_ids():
    """The parameters added for sampling hash away at their defaults: a store written before
    them finds its runs again."""
    p = {k: v.default for k, v in PARAMETERS.items()}
    p.update(BASE)
    old = {k: v for k, v in p.items() if k not in (
        "density_error", "density_law", "cement_modulus", "tip_offset_lateral",
        "tip_offset_axial", "heterogeneity", "load_scale", "cleft", "sample")}
    assert run_id(p) == run_id(old)


@pytest.mark.parametrize("uncertain,fault", [
    ({"design": "sobol", "samples": 6, "parameters": {"bmd": uniform(50, 90)}},
     "power of 2"),
    ({"design": "grid", "samples": 6, "parameters": {"bmd": uniform(50, 90)}}, "design"),
    ({"samples": 1, "parameters": {"bmd": uniform(50, 90)}}, "samples"),
    ({"samples": 4, "parameters": {}}, "samples no parameter"),
    ({"samples": 4, "parameters": {"bmd": {"distribution": "beta"}}}, "distribution"),
    ({"samples": 4, "parameters": {"bmd": {"distribution": "normal", "mean": 70}}},
     "needs mean, sd"),
    ({"samples": 4, "parameters": {"bmd": normal(70, -1)}}, "sd must be > 0"),
    ({"samples": 4, "parameters": {"bmd": uniform(90, 50)}}, "must exceed low"),
    ({"samples": 4, "parameters": {"bmd": {**normal(70, 5), "low": 1}}}, "unknown argument"),
    ({"samples": 4, "parameters": {"bmdd": uniform(50, 90)}}, "unknown parameter"),
    ({"samples": 4, "parameters": {"solver": {"distribution": "choice", "values": ["amg"]}}},
     "cannot be sampled"),
    ({"samples": 4, "parameters": {"approach": normal(1, 1)}}, "distribution = 'choice'"),
    ({"samples": 4, "parameters": {"approach": {"distribution": "choice",
                                                "values": ["transpedicular"]}}}, "one of"),
    ({"samples": 4, "parameters": {"fracture_level": {"distribution": "choice",
                                                      "values": ["L2", "L2"]}}}, "twice"),
    ({"samples": 4, "parameters": {"bmd": {"distribution": "choice", "values": [60, 70],
                                           "weights": [1]}}}, "weights"),
    ({"design": "saltelli", "samples": 4, "parameters": {"bmd": uniform(50, 90)}},
     "at least 2"),
    ({"samples": 4, "foo": 1, "parameters": {"bmd": uniform(50, 90)}}, "unknown key"),
    # a whole-number parameter's choices are whole numbers (1.5 and 2.5 had both rounded to 2)
    ({"samples": 4, "parameters": {"fracture_grade": {"distribution": "choice",
                                                      "values": [1.5, 2.5]}}},
     "whole numbers, got 1.5, 2.5"),
    # the discretisation is how a run computes, not what it models
    ({"samples": 4, "parameters": {"voxel_size": uniform(2, 4)}}, "cannot be sampled"),
])
def test_bad_uncertain_tables_name_their_fault(uncertain, fault):
    with pytest.raises(SpecError, match=fault) as e:
        spec(uncertain)
    assert e.value.key.startswith("uncertain")


def test_sampled_values_outside_a_parameters_limits_are_refused_before_any_run():
    with pytest.raises(SpecError, match=r"sample \d+ of 200: bmd = .*truncnormal") as e:
        spec({"design": "montecarlo", "samples": 200, "seed": 0,
              "parameters": {"bmd": normal(70.0, 200.0)}})
    assert e.value.key == "uncertain.parameters.bmd"
    # the combination with another value is cross-checked too
    with pytest.raises(SpecError, match="bmd \\+ density_error"):
        spec({"samples": 50, "parameters": {"density_error": uniform(-199.0, -150.0)}})


def test_a_sampled_parameter_may_not_also_be_listed(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text('[study]\nname = "t"\n\n[base]\nbmd = 70.0\nlevels = "L1-L3"\n\n'
                    '[uncertain]\nsamples = 4\n\n[uncertain.parameters.bmd]\n'
                    'distribution = "uniform"\nlow = 50.0\nhigh = 90.0\n')
    with pytest.raises(SpecError, match=r"line 5.*sampled in \[uncertain.parameters.bmd\]"):
        StudySpec.from_toml(path)
    with pytest.raises(SpecError, match="set by \\[uncertain\\]") as e:
        StudySpec.from_dict({"study": {"name": "t"}, "base": {"sample": 3}})
    assert e.value.key == "base.sample"
    path.write_text('[study]\nname = "t"\n\n[base]\nlevels = "L1-L3"\nsample = 3\n')
    with pytest.raises(SpecError, match=r"line 6, key 'base.sample'.*set by \[uncertain\]"):
        StudySpec.from_toml(path)  # named where it was written (it had had no line)


def test_the_sampling_inputs_reach_the_model():
    """density_error shifts the density, density_law and cement_modulus set the moduli, the
    tip offset moves the cement and load_scale the load (what a sample changes is modelled)."""
    def p(**kw):
        q = {k: v.default for k, v in PARAMETERS.items()}
        q.update(BASE, **{"procedure": "pvp", **kw})
        return q

    a, b = build_model(p(bmd=60.0, density_error=15.0)), build_model(p(bmd=75.0))
    assert np.array_equal(a.E, b.E)
    c = build_model(p(density_law="kopperdahl1998"))
    trab = b.regions["L1/trabecular"]
    assert not np.allclose(c.E[trab], b.E[trab], rtol=0.05)
    d = build_model(p(cement_modulus=1234.0))
    assert d.metadata["augmentations"][-1].cement.E == 1234.0
    f = build_model(p())
    assert f.metadata["augmentations"][-1].cement.E == 3000.0
    e = build_model(p(tip_offset_axial=4.0))
    tips = [np.array(n.tip) for n in e.metadata["augmentations"][-1].needles]
    planned = [np.array(n.tip) for n in f.metadata["augmentations"][-1].needles]
    axial = level_frame(e, "L2").axial
    for t, t0 in zip(tips, planned):
        assert math.isclose(np.linalg.norm(t - t0), 4.0, rel_tol=1e-9)
        assert math.isclose(float((t - t0) @ axial), 4.0, rel_tol=1e-9)
    g = build_model(p(load_scale=2.5))
    assert np.allclose(g.conditions[-1].force, 2.5 * np.asarray(f.conditions[-1].force))
    h = build_model(p(basivertebral_mm=4.0, endplate_breach_mm=4.0, endplate_breach_side="inferior"))
    assert {"L2/basivertebral_foramen", "L2/endplate_breach"} <= set(h.regions)
    assert "L2/cleft" in build_model(p(cleft=True, voxel_size=2.0)).regions
    assert [b.site for b in h.metadata["breaches"]] == ["inferior", "basivertebral"]
    assert "L2/endplate_breach" not in build_model(p(procedure="intact", endplate_breach_mm=4.0)
                                                   ).regions


# ------------------------------------------------------------------------------ the statistics

def ishigami(x, a=7.0, b=0.1):
    return np.sin(x[:, 0]) + a * np.sin(x[:, 1]) ** 2 + b * x[:, 2] ** 4 * np.sin(x[:, 0])


#: the Ishigami function's indices (Ishigami & Homma 1990; a = 7, b = 0.1), analytic
ISHIGAMI_S1 = (0.3139, 0.4424, 0.0)
ISHIGAMI_ST = (0.5576, 0.4424, 0.2437)


def test_saltelli_design_recovers_the_ishigami_indices():
    u = Uncertain.from_dict({"design": "saltelli", "samples": 1024, "seed": 3, "parameters": {
        f"x{i}": uniform(-math.pi, math.pi) for i in range(3)}})
    x = np.array([[row[f"x{i}"] for i in range(3)] for row in u.values()])
    y = ishigami(x)
    r = uqmod._sobol_indices(u, y.reshape(u.samples, 5))
    assert np.allclose(r["S1"], ISHIGAMI_S1, atol=0.05)
    assert np.allclose(r["ST"], ISHIGAMI_ST, atol=0.05)
    assert (r["S1_conf"] > 0).all() and (r["S1_conf"] < 0.1).all()


def test_given_data_first_order_indices_from_a_latin_hypercube():
    u = Uncertain.from_dict({"design": "lhs", "samples": 600, "seed": 5, "parameters": {
        f"x{i}": uniform(-math.pi, math.pi) for i in range(3)}})
    x = np.array([[row[f"x{i}"] for i in range(3)] for row in u.values()])
    r = uqmod._given_data_indices(u, u.unit(), ishigami(x))
    assert np.allclose(r["S1"], ISHIGAMI_S1, atol=0.08)
    assert np.isnan(r["ST"]).all()


def test_wilson_interval():
    lo, hi = uqmod.wilson(0, 20)
    assert lo == 0.0 and 0.15 < hi < 0.17  # 0.161
    lo, hi = uqmod.wilson(10, 20)
    assert math.isclose(lo + hi, 1.0) and 0.29 < lo < 0.30  # 0.299


@pytest.fixture(scope="module")
def sampled(tmp_path_factory):
    """A real sampled study: 8 patients x (intact, PVP), the load and bone density sampled."""
    s = spec({"design": "lhs", "samples": 8, "seed": 1, "parameters": {
        "load_scale": uniform(0.5, 6.0), "bmd": uniform(55.0, 85.0),
        "cement_modulus": uniform(1000.0, 4000.0)}})
    study = Study(tmp_path_factory.mktemp("uq") / "study", s)
    assert study.run(progress=False, log=lambda m: None).get("done") == 16
    return study


def test_summary_and_comparisons_are_the_per_patient_numbers(sampled):
    u = sampled.uncertainty()
    df = sampled.results()
    assert u.complete == u.samples == 8 and u.reference == "intact"
    l2 = df[df["level"] == "L2"].set_index(["sample", "procedure"])
    restoration = np.array([l2.at[(s, "pvp"), "strength_n"] / l2.at[(s, "intact"), "strength_n"]
                            for s in range(8)])
    row = u.summary.query("prediction == 'strength_restoration' and arm == 'pvp'").iloc[0]
    assert row["site"] == "L2" and row["n"] == 8
    assert math.isclose(row["mean"], restoration.mean(), rel_tol=1e-12)
    assert math.isclose(row["sd"], restoration.std(ddof=1), rel_tol=1e-12)
    assert math.isclose(row["q95"], np.quantile(restoration, 0.95), rel_tol=1e-12)
    # the load is sampled up to 6x: some patients' levels fail, P(fracture) counts them
    for (arm, level), g in df.groupby(["procedure", "level"]):
        sm = u.summary
        r = sm[(sm["prediction"] == "factor_of_risk") & (sm["arm"] == arm)
               & (sm["site"] == level)].iloc[0]
        assert r["p_fracture"] == np.mean(g["factor_of_risk"] > 1.0)
        assert r["p_fracture_low"] <= r["p_fracture"] <= r["p_fracture_high"]
    p_fracture = u.summary.query("prediction == 'factor_of_risk'")["p_fracture"]
    assert ((p_fracture > 0) & (p_fracture < 1)).any()
    # the factor of risk is linear in the load: its sensitivity is the load's
    fr = df[(df["level"] == "L1") & (df["procedure"] == "intact")]
    ratio = fr["factor_of_risk"] / fr["load_scale"] * fr["strength_n"]
    assert np.allclose(ratio, ratio.iloc[0], rtol=1e-6)
    # paired comparison: each arm against the other, sample by sample
    assert set(u.values["arm"]) == {"intact", "pvp"}
    for name in ("strength_restoration", "stiffness_restoration", "disc_pressure_change",
                 "endplate_bulge_change"):
        assert set(u.values[u.values["prediction"] == name]["arm"]) == {"pvp"}
    conv = u.convergence.query("prediction == 'strength_restoration'")
    assert list(conv["n"]) == [8] and math.isclose(conv["mean"].iloc[0], row["mean"])


def test_paired_comparison_counts_samples(sampled):
    """Two arms of the same patients: P(PVP's L2 risk below intact's) is the share of patients
    where it is, not a comparison of the two means."""
    u = sampled.uncertainty(reference="pvp")
    c = u.comparisons.query("prediction == 'factor_of_risk' and site == 'L2'")
    assert c.empty  # only one arm besides the reference
    u = sampled.uncertainty()
    df = sampled.results()
    l2 = df[df["level"] == "L2"].set_index(["sample", "procedure"])["factor_of_risk"]
    d = np.array([l2[(s, "pvp")] - l2[(s, "intact")] for s in range(8)])
    # restate P(a beats b) from the long table for the only arms there are
    vals = u.values.query("prediction == 'factor_of_risk' and site == 'L2'").pivot(
        index="sample", columns="arm", values="value")
    assert np.allclose(vals["pvp"] - vals["intact"], d)


def test_left_out_patients_and_written_tables(sampled, tmp_path):
    # a failed run leaves its patient out, and says so
    db = sampled.store
    rid = db.db.execute("SELECT run_id FROM runs ORDER BY idx LIMIT 1").fetchone()[0]
    with db.transaction() as t:
        t.execute("UPDATE runs SET status = 'failed' WHERE run_id = ?", (rid,))
    try:
        u = sampled.uncertainty()
        assert u.complete == 7 and any("1 sampled patient" in n for n in u.notes)
        assert 0 not in set(u.values["sample"])
    finally:
        with db.transaction() as t:
            t.execute("UPDATE runs SET status = 'done' WHERE run_id = ?", (rid,))
    paths = sampled.uncertainty().write(tmp_path / "uq")
    assert {p.name for p in paths} == {"values.csv", "summary.csv", "comparisons.csv",
                                       "sobol.csv", "convergence.csv", "leaks.csv"}
    assert "Predictions" in sampled.uncertainty().text()


def test_a_study_without_uncertain_inputs_is_refused(tmp_path):
    study = Study(tmp_path / "s", {"study": {"name": "plain", "write_vtu": False},
                                   "base": BASE, "runs": [{"procedure": "intact"}]})
    with pytest.raises(Exception, match="samples nothing"):
        study.uncertainty()


def test_arms_sharing_a_procedure_are_named_by_their_other_values():
    s = spec({"samples": 2, "parameters": {"bmd": uniform(60.0, 80.0)}},
             runs=[{"procedure": "pvp", "cement_volume_ml": 4.0},
                   {"procedure": "pvp", "cement_volume_ml": 8.0}, {"procedure": "intact"}])
    arm = uqmod._arm_labels(s)
    assert arm.names == ["pvp (cement_volume_ml=4.0)", "pvp (cement_volume_ml=8.0)", "intact"]
    assert [arm(p) for p in s.expand()[:3]] == arm.names


def test_a_grid_over_the_procedure_makes_arms():
    s = StudySpec.from_dict({"study": {"name": "g", "write_vtu": False}, "base": dict(BASE),
                             "grid": {"procedure": ["intact", "pvp"],
                                      "load_case": ["standing", "flexion"]},
                             "uncertain": {"samples": 2, "parameters": {
                                 "bmd": uniform(60.0, 80.0)}}})
    arm = uqmod._arm_labels(s)
    assert arm.names == ["intact", "pvp"]
    assert {arm(p) for p in s.expand()} == {"intact", "pvp"}


def test_a_study_grows_by_more_samples_and_keeps_the_ones_it_has(tmp_path):
    """Monte Carlo and Sobol designs extend: the first patients of 8 are those of 4, so the runs
    done stay done, and the store's spec becomes the grown one (vfem uq reads it)."""
    def grown(n):
        return spec({"design": "sobol", "samples": n, "seed": 9,
                     "parameters": {"bmd": uniform(50.0, 90.0), "seed": uniform(0, 99)}},
                    runs=[{"procedure": "pvp"}])

    small = Study(tmp_path / "s", grown(4))
    ids4 = list(small.store.runs_frame()["run_id"])
    big = Study(tmp_path / "s", grown(8))
    ids8 = list(big.store.runs_frame()["run_id"])
    assert len(ids4) == 4 and ids8[:4] == ids4 and len(ids8) == 8
    assert Study(tmp_path / "s").spec.uncertain.samples == 8


def test_the_indices_converge_with_the_sample():
    """The convergence table carries the first-order indices at 32, 64, ... patients: on the
    Ishigami function they approach the analytic values as the sample grows."""
    import pandas as pd

    u = Uncertain.from_dict({"design": "lhs", "samples": 512, "seed": 2, "parameters": {
        f"x{i}": uniform(-math.pi, math.pi) for i in range(3)}})
    x = np.array([[row[f"x{i}"] for i in range(3)] for row in u.values()])
    values = pd.DataFrame({"sample": np.arange(512), "arm": "a", "condition": "",
                           "prediction": "factor_of_risk", "site": "L1", "value": ishigami(x)})
    _, conv = uqmod._sensitivity(values, u, [])
    assert list(conv["n"]) == [32, 64, 128, 256, 512]
    err = [abs(r["S1[x1]"] - ISHIGAMI_S1[1]) + abs(r["S1[x0]"] - ISHIGAMI_S1[0])
           for _, r in conv.iterrows()]
    assert err[-1] < 0.12 and err[-1] < err[0]


def test_saltelli_indices_count_patients_and_converge_by_whole_blocks():
    import pandas as pd

    u = Uncertain.from_dict({"design": "saltelli", "samples": 64, "seed": 4, "parameters": {
        f"x{i}": uniform(-math.pi, math.pi) for i in range(3)}})
    x = np.array([[row[f"x{i}"] for i in range(3)] for row in u.values()])
    y = ishigami(x)
    y[7] = np.nan  # a patient whose run failed: its block of d + 2 is left out
    values = pd.DataFrame({"sample": np.arange(u.size), "arm": "a", "condition": "",
                           "prediction": "factor_of_risk", "site": "L1", "value": y})
    sob, conv = uqmod._sensitivity(values, u, [])
    assert set(sob["n"]) == {63 * 5} and set(sob["method"]) == {"sobol"}
    assert list(conv["n"]) == [8 * 5, 16 * 5, 32 * 5, 63 * 5]
    assert np.isfinite(sob["ST"]).all()
