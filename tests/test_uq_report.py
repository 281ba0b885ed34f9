"""Pictures of a sampled study (issue 21, deliverable 4): the figures of fem.viz.uncertainty and
the report's Uncertainty section, on one small real sampled study (5 mm voxels, 10 sampled
patients x intact / PVP / PKP: 30 runs) made once by `vfem study`, which writes the report."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import warnings

import numpy as np
import pandas as pd
import pytest
from matplotlib.container import ErrorbarContainer

from fem.cli import main
from fem.errors import ModelError
from fem.study import Study
from fem.viz import uncertainty as uv
from fem.viz.report import write_report

BASE = """\
[study]
name = "{name}"
write_vtu = false

[base]
levels = "L1-L3"
fracture_level = "L2"
voxel_size = 5.0
# the solid annulus without the posterior ligaments: these tests are of the report, not of the
# disc or the ligaments (half the runs' cost)
disc = "isotropic"
ligaments = "no"
"""
ARMS = """
[[runs]]
procedure = "intact"

[[runs]]
procedure = "pvp"

[[runs]]
procedure = "pkp"
"""
UNCERTAIN = """
[uncertain]
design = "lhs"
samples = 10
seed = 3

[uncertain.parameters.bmd]
distribution = "truncnormal"
mean = 70.0
sd = 15.0
low = 30.0
high = 120.0

[uncertain.parameters.density_law]
distribution = "choice"
values = ["morgan2003", "kopperdahl1998"]
"""
SAMPLED = BASE.format(name="uq-report") + ARMS + UNCERTAIN
PNG = b"\x89PNG\r\n\x1a\n"


def run_cli(*argv):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def sampled(tmp_path_factory):
    """A finished sampled study whose report `vfem study` wrote, and its Uncertainty."""
    root = tmp_path_factory.mktemp("uq-report")
    spec, folder = root / "uq.toml", root / "uq"
    spec.write_text(SAMPLED)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # SALib's notices about its bins
        code, out, err = run_cli("study", spec, "--out", folder)
        assert code == 0, err
        u = Study(folder).uncertainty()
    return {"folder": folder, "stdout": out, "stderr": err, "u": u}


def is_png(path, at_least=10_000) -> bool:
    return path.is_file() and path.stat().st_size > at_least and path.read_bytes()[:8] == PNG


def finite_sobol(u, total: bool):
    """``u`` with made-up finite indices (as a larger sample or a Saltelli design gives)."""
    s = u.sobol.copy()
    s["S1"] = np.linspace(0.1, 0.7, len(s))
    s["S1_conf"] = 0.05
    if total:
        s["ST"], s["ST_conf"] = s["S1"] + 0.1, 0.04
    return dataclasses.replace(u, sobol=s)


# ---------------------------------------------------------------------- the report

def test_vfem_study_writes_the_uncertainty_section(sampled):
    folder = sampled["folder"]
    assert "report.html" in sampled["stdout"]
    page = (folder / "report.html").read_text()
    section = page.split("<h2>Uncertainty</h2>")[1]
    files = folder / "report_files"
    shown = {"uq-distributions.png", "uq-fracture.png", "uq-convergence.png"}
    for name in shown:
        assert f'src="report_files/{name}"' in section
        assert is_png(files / name), name
    # the inputs, the count of complete patients, the notes, the tables
    assert "<code>bmd</code>: truncnormal(" in section and "kopperdahl1998" in section
    assert "10 of 10 sampled patients complete; reference arm: intact" in section
    assert "total indices need design = &#x27;saltelli&#x27;" in section
    assert "<h3>Summary</h3>" in section and "<h3>Paired comparisons</h3>" in section
    assert section.count("<td class=t>factor_of_risk</td>") == 9 + 3  # summary + comparisons
    # 10 patients give no index: said in place of the charts
    assert "No sensitivity chart for strength_restoration" in section
    # the per-run plots are left out (36 runs as lines or bars say nothing); only uq figures
    assert {p.name for p in files.glob("*.png")} == shown
    assert "<h2>Plots</h2>" not in page


def test_the_report_draws_a_chart_per_prediction_with_indices(sampled, tmp_path, monkeypatch):
    u = finite_sobol(sampled["u"], total=False)
    monkeypatch.setattr(Study, "uncertainty", lambda self, **kw: u)
    out = write_report(sampled["folder"], tmp_path / "r.html", views=False)
    page, files = out.read_text(), tmp_path / "r_files"
    for pred in uv.prediction_names(u):
        assert f'src="r_files/uq-sobol-{pred}.png"' in page
        assert is_png(files / f"uq-sobol-{pred}.png")
    assert "No sensitivity chart" not in page


def test_a_study_not_yet_run_says_why_it_has_no_analysis(tmp_path):
    spec = tmp_path / "uq.toml"
    spec.write_text(SAMPLED)
    Study(tmp_path / "s", spec)  # registered, nothing run
    page = write_report(tmp_path / "s").read_text()
    section = page.split("<h2>Uncertainty</h2>")[1]
    assert "No analysis yet" in section and "no finished run" in section
    assert not list((tmp_path / "s" / "report_files").glob("uq-*"))


def test_an_unsampled_study_has_no_uncertainty_section(tmp_path):
    spec = tmp_path / "plain.toml"
    spec.write_text(BASE.format(name="plain") + '\n[[runs]]\nprocedure = "pvp"\n')
    code, _, err = run_cli("study", spec, "--out", tmp_path / "s")
    assert code == 0, err
    page = (tmp_path / "s" / "report.html").read_text()
    assert "Uncertainty" not in page and "uq-" not in page
    assert "<h2>Plots</h2>" in page
    assert not list((tmp_path / "s" / "report_files").glob("uq-*"))


# ---------------------------------------------------------------------- the figures

def test_distributions_one_panel_per_prediction_arms_side_by_side(sampled):
    u = sampled["u"]
    fig = uv.uq_distributions(u)
    axes = [ax for ax in fig.axes if ax.get_visible()]
    preds = uv.prediction_names(u)
    assert preds[0] == "strength_restoration" and len(axes) == len(preds) == 5
    for ax, pred in zip(axes, preds):
        assert ax.get_ylabel().endswith("(-)")
        legend = [t.get_text() for t in ax.get_legend().get_texts()]
        arms = set(u.values[u.values["prediction"] == pred]["arm"])
        assert {uv.arm_label(a) for a in arms} <= set(legend) and "5-95 %" in legend
    fr = axes[preds.index("factor_of_risk")]
    assert [t.get_text() for t in fr.get_xticklabels()] == ["L1", "L2", "L3"]
    disc = axes[preds.index("disc_pressure_change")]
    assert [t.get_text() for t in disc.get_xticklabels()] == ["L1-L2", "L2-L3"]


def test_fracture_bars_carry_the_wilson_interval(sampled):
    u = sampled["u"]
    ax = uv.uq_fracture(u).axes[0]
    bars = [p for p in ax.patches]
    assert len(bars) == 3 * 3  # levels x arms
    s = u.summary[u.summary["prediction"] == "factor_of_risk"]
    assert sorted(b.get_height() for b in bars) == sorted(s["p_fracture"])
    # each bar's error bar reaches its Wilson upper bound (0 of 10 still allows ~28 %)
    tops = sorted(float(np.max(seg[:, 1])) for c in ax.collections
                  for seg in c.get_segments())
    assert np.allclose(tops, sorted(s["p_fracture_high"]))
    assert ax.get_ylim() == (0.0, 1.0) and "P(fracture)" in ax.get_ylabel()


def test_sensitivity_bars_with_their_intervals_and_totals_where_known(sampled):
    u = sampled["u"]
    with pytest.raises(ModelError, match="no finite Sobol index of factor_of_risk"):
        uv.uq_sensitivity(u, "factor_of_risk")
    assert uv.sensitivity_predictions(u) == []
    first = uv.uq_sensitivity(finite_sobol(u, total=False), "factor_of_risk")
    # the factor of risk at the treated level: one panel per arm, one bar per input
    axes = [ax for ax in first.axes if ax.get_visible()]
    assert [ax.get_title().split(",")[0] for ax in axes] == ["intact", "PVP", "PKP"]
    assert all(", L2," in ax.get_title() for ax in axes)
    assert all(len(ax.patches) == 2 for ax in axes)
    assert all(sum(isinstance(c, ErrorbarContainer) for c in ax.containers) == 1 for ax in axes)
    both = uv.uq_sensitivity(finite_sobol(u, total=True), "disc_pressure_change")
    axes = [ax for ax in both.axes if ax.get_visible()]
    assert len(axes) == 2 * 2  # PVP, PKP x the two adjacent discs
    assert all(len(ax.patches) == 4 for ax in axes)  # S1 and ST per input
    assert all(sum(isinstance(c, ErrorbarContainer) for c in ax.containers) == 2 for ax in axes)
    assert [t.get_text() for t in both.legends[0].get_texts()] == ["S1 (first order)",
                                                                  "ST (total)"]


def test_convergence_points_as_in_the_table(sampled):
    u = sampled["u"]
    axes = [ax for ax in uv.uq_convergence(u).axes if ax.get_visible()]
    assert len(axes) == 5
    fr = axes[uv.prediction_names(u).index("factor_of_risk")]
    assert len(fr.get_lines()) == 3 + 1  # three arms at the treated level, and Φ = 1
    assert list(fr.get_lines()[0].get_xdata()) == [8, 10]


def test_an_empty_uncertainty_is_refused_with_the_reason(sampled):
    u = sampled["u"]
    empty = dataclasses.replace(u, complete=0, values=u.values.iloc[:0],
                                summary=u.summary.iloc[:0], sobol=u.sobol.iloc[:0],
                                convergence=pd.DataFrame())
    for draw in (uv.uq_distributions, uv.uq_fracture, uv.uq_convergence,
                 lambda x: uv.uq_sensitivity(x, "factor_of_risk")):
        with pytest.raises(ModelError, match="nothing to draw.*0 of 10 sampled patients"):
            draw(empty)


def test_unknown_names_are_refused(sampled):
    u = sampled["u"]
    with pytest.raises(ModelError, match="condition"):
        uv.uq_distributions(u, condition="bmd=1")
    with pytest.raises(ModelError, match="no values of wedge_angle"):
        uv.uq_distributions(u, predictions=["wedge_angle"])
    with pytest.raises(ModelError, match="site.*L5"):
        uv.uq_sensitivity(finite_sobol(u, total=False), "factor_of_risk", site="L5")
