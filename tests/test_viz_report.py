"""Study plots, the HTML report and ``vfem report``: what the figures show equals the table.

One small study (L1-L2, 3 mm voxels, direct solver: intact, fractured, PVP 2 and 4 mL, PKP 4 mL,
standing) is run once by ``vfem study`` (which also writes its report); under pytest-xdist the
workers share it through a lock file, and every test that changes a folder works on a copy.
"""

from __future__ import annotations

import contextlib
import fcntl
import html
import io
import json
import os
import shutil
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from fem.cli import main
from fem.study import RESULT_COLUMNS, Study

BASE = """\
[base]
levels = "L1-L2"
voxel_size = 3.0
fracture_level = "L2"
solver = "direct"
backend = "numpy"
# the solid annulus: these tests are of the report, not of the disc (half the runs' cost);
# without the posterior ligaments, so that a level's rotational stiffness is read under a moment
# (the report's cells with ligaments: test_the_table_says_why_a_ligamentous_level_has_...)
disc = "isotropic"
ligaments = "no"
"""
SPEC = """\
[study]
name = "viz-report"

""" + BASE + """
[[runs]]
procedure = "intact"

[[runs]]
procedure = "fractured"

[[runs]]
procedure = "pvp"
cement_volume_ml = 2.0

[[runs]]
procedure = "pvp"
cement_volume_ml = 4.0

[[runs]]
procedure = "pkp"
cement_volume_ml = 4.0
"""
LEVELS = ["L1", "L2"]


def run_cli(*argv) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """The study folder, made once per session by `vfem study` (shared by xdist workers)."""
    shared = os.environ.get("PYTEST_XDIST_WORKER") is not None
    root = tmp_path_factory.getbasetemp().parent if shared else tmp_path_factory.mktemp("viz")
    folder, spec, done = root / "viz-study", root / "viz-study.toml", root / "viz-study.json"
    with open(root / "viz-study.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not done.exists():
            spec.write_text(SPEC)
            code, out, err = run_cli("study", spec, "--out", folder)
            done.write_text(json.dumps({"code": code, "stdout": out, "stderr": err}))
        info = json.loads(done.read_text())
    assert info["code"] == 0, info["stderr"]
    df = Study(folder).results()
    return {"folder": folder, "spec": spec, "df": df.loc[:, ~df.columns.duplicated()], **info}


def run_of(df, procedure, volume=None) -> str:
    rows = df[df["procedure"] == procedure]
    if volume is not None:
        rows = rows[rows["cement_volume_ml"] == volume]
    ids = rows["run_id"].unique()
    assert len(ids) == 1
    return ids[0]


def value(df, rid, level, metric) -> float:
    return float(df[(df["run_id"] == rid) & (df["level"] == level)][metric].iloc[0])


# ---------------------------------------------------------------------- plots

@pytest.mark.parametrize("metric", ["stiffness_n_per_mm", "strength_n", "factor_of_risk"])
def test_study_curves_show_the_table(study, metric):
    from fem.viz.plots import study_curves

    df = study["df"]
    fig = study_curves(df, metric)  # the treated level, L2
    assert len(fig.axes) == 1
    ax = fig.axes[0]
    lines = {ln.get_label(): ln for ln in ax.get_lines()}
    expected = {"PVP", "PKP", "intact", "fractured"} | (
        {"Φ = 1 (fracture)"} if metric == "factor_of_risk" else set())
    assert set(lines) == expected
    pvp = [run_of(df, "pvp", 2.0), run_of(df, "pvp", 4.0)]
    np.testing.assert_array_equal(lines["PVP"].get_xdata(), [2.0, 4.0])
    np.testing.assert_allclose(lines["PVP"].get_ydata(), [value(df, r, "L2", metric)
                                                          for r in pvp], rtol=1e-12)
    np.testing.assert_array_equal(lines["PKP"].get_xdata(), [4.0])
    np.testing.assert_allclose(lines["PKP"].get_ydata(),
                               [value(df, run_of(df, "pkp"), "L2", metric)], rtol=1e-12)
    for state in ("intact", "fractured"):
        np.testing.assert_allclose(lines[state].get_ydata(),
                                   [value(df, run_of(df, state), "L2", metric)] * 2, rtol=1e-12)
    if metric == "factor_of_risk":
        np.testing.assert_array_equal(lines["Φ = 1 (fracture)"].get_ydata(), [1.0, 1.0])
    ys = df[df["level"] == "L2"][metric].to_numpy(float)
    lo, hi = ax.get_ylim()
    assert lo <= ys.min() and ys.max() <= hi
    lo, hi = ax.get_xlim()
    assert lo <= 2.0 and 4.0 <= hi
    assert ax.get_xlabel() == "cement volume (mL)"
    unit = {"stiffness_n_per_mm": "(N/mm)", "strength_n": "(N)", "factor_of_risk": "(-)"}[metric]
    assert ax.get_ylabel().endswith(unit)
    assert ax.get_title() == "L2, standing"


def test_study_curves_all_levels_are_panels(study):
    from fem.viz.plots import study_curves

    df = study["df"]
    fig = study_curves(df, "factor_of_risk", level="all")
    assert [ax.get_title() for ax in fig.axes] == [f"{lv}, standing" for lv in LEVELS]
    pvp = [run_of(df, "pvp", 2.0), run_of(df, "pvp", 4.0)]
    for ax, lv in zip(fig.axes, LEVELS):
        lines = {ln.get_label(): ln for ln in ax.get_lines()}
        np.testing.assert_allclose(lines["PVP"].get_ydata(),
                                   [value(df, r, lv, "factor_of_risk") for r in pvp])
        np.testing.assert_allclose(lines["fractured"].get_ydata()[0],
                                   value(df, run_of(df, "fractured"), lv, "factor_of_risk"))


def test_study_curves_tell_apart_runs_at_other_parameters(study):
    """A second bone density (the table's rows again, Φ scaled): one line per procedure and
    density, told apart by marker and line style, each showing its own rows."""
    import pandas as pd

    from fem.viz.plots import study_curves

    df = study["df"]
    other = df.assign(bmd=90.0, run_id=df["run_id"] + "-90",
                      factor_of_risk=1.5 * df["factor_of_risk"])
    ax = study_curves(pd.concat([df, other], ignore_index=True), "factor_of_risk").axes[0]
    lines = {ln.get_label(): ln for ln in ax.get_lines()}
    assert {"PVP, bmd=70", "PVP, bmd=90", "PKP, bmd=70", "PKP, bmd=90", "intact, bmd=70",
            "intact, bmd=90", "fractured, bmd=70", "fractured, bmd=90"} <= set(lines)
    np.testing.assert_allclose(lines["PVP, bmd=90"].get_ydata(),
                               1.5 * lines["PVP, bmd=70"].get_ydata(), rtol=1e-12)
    np.testing.assert_allclose(lines["fractured, bmd=90"].get_ydata(),
                               1.5 * np.asarray(lines["fractured, bmd=70"].get_ydata()),
                               rtol=1e-12)
    a, b = lines["PVP, bmd=70"], lines["PVP, bmd=90"]
    assert (a.get_marker(), a.get_linestyle()) != (b.get_marker(), b.get_linestyle())
    assert lines["fractured, bmd=70"].get_linestyle() != lines["fractured, bmd=90"].get_linestyle()


def test_one_legend_names_the_series_of_every_panel(study):
    """Runs treating two levels (a panel each): the figure's legend names both panels' series,
    each label keeps one style wherever it is drawn, and different series of one procedure
    differ in style (each panel had styled its own series from the first, and the legend, the
    last panel's, named the first panel's lines after the last panel's fracture level)."""
    import pandas as pd

    from fem.viz.plots import study_curves

    df = study["df"]
    # the runs of each treated level have rows at their own level only (as segments of
    # different levels, T6-T8 and L3-L5, have): each panel shows its own series
    other = df.assign(fracture_level="L1", run_id=df["run_id"] + "-L1")
    both = pd.concat([df[df["level"] != "L1"], other[other["level"] == "L1"]],
                     ignore_index=True)
    fig = study_curves(both, "factor_of_risk")
    panels = [ax for ax in fig.axes if ax.get_title()]
    assert sorted(ax.get_title().split(",")[0] for ax in panels) == ["L1", "L2"]
    legend = fig.legends[0] if fig.legends else next(ax.get_legend() for ax in fig.axes
                                                      if ax.get_legend())
    names = [t.get_text().replace("\n", " ") for t in legend.get_texts()]
    for level in ("L1", "L2"):
        assert any(n.startswith("PVP") and f"fracture_level={level}" in n for n in names), names
    drawn = {}
    for ax in panels:
        for ln in ax.get_lines():
            key = (ln.get_marker(), ln.get_linestyle(), ln.get_color())
            assert drawn.setdefault(ln.get_label(), key) == key  # one style per series
    pvp = {k: v for k, v in drawn.items() if k.startswith("PVP")}
    assert len(pvp) == 2 and len(set(pvp.values())) == 2


def test_plots_of_runs_that_differ_in_many_long_parameters_stay_legible(study, tmp_path):
    """Runs on another patient's CT and other settings vary many parameters, some of them paths:
    a path shows its name, a long value is cut, and a legend label wraps a few parameters to a
    line, so the figures keep their layout (a one-line label of every varying parameter had
    collapsed the panels: matplotlib's "axes sizes collapsed to zero"). A summary.csv read back
    by pandas (empty levels as NaN) still names the treated level."""
    import warnings

    import pandas as pd

    from fem.viz.plots import LABEL_CHARS, risk_bars, study_curves, treated_levels

    df = study["df"]
    scan = "/data/patients/patient-0042/ct_abdomen_portal_venous_phase.nii.gz"
    other = df.assign(run_id=df["run_id"] + "-ct", anatomy="ct", ct=scan,
                      masks="/data/patients/patient-0042/masks/", mesh="tet10", mesh_size=4.0,
                      density_law="kopperdahl1998", load_line="plate")
    both = pd.concat([df, other], ignore_index=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for fig in (study_curves(both, "factor_of_risk"),
                    risk_bars(both, load_case="standing")):
            fig.savefig(tmp_path / "f.png")
            labels = [t for ax in fig.axes for t in ax.get_legend_handles_labels()[1]]
            assert any("ct=ct_abdomen_portal_venou…" in t for t in labels), labels
            assert any("masks=masks" in t for t in labels), labels
            assert max(len(line) for t in labels for line in t.split("\n")) <= 2 * LABEL_CHARS + 8
            assert "/data/" not in " ".join(labels)
    csv = tmp_path / "summary.csv"
    df.to_csv(csv, index=False)
    assert treated_levels(pd.read_csv(csv)) == treated_levels(df) == ["L2"]


def test_risk_bars_one_group_per_level_one_bar_per_run(study):
    from fem.viz.plots import risk_bars

    df = study["df"]
    fig = risk_bars(df)
    ax, = fig.axes
    runs = list(dict.fromkeys(df["run_id"]))
    assert [c.get_label() for c in ax.containers] == [
        "intact", "fractured", "PVP 2 mL", "PVP 4 mL", "PKP 4 mL"]
    assert len(ax.patches) == len(runs) * len(LEVELS)
    assert [t.get_text() for t in ax.get_xticklabels()] == LEVELS
    for rid, bars in zip(runs, ax.containers):
        for i, (bar, lv) in enumerate(zip(bars, LEVELS)):
            assert bar.get_height() == pytest.approx(value(df, rid, lv, "factor_of_risk"),
                                                     rel=1e-12)
            centre = bar.get_x() + bar.get_width() / 2
            assert i - 0.4 <= centre <= i + 0.4  # in its level's group
    phi1 = [ln for ln in ax.get_lines() if ln.get_label().startswith("Φ = 1")]
    assert len(phi1) == 1 and list(phi1[0].get_ydata()) == [1.0, 1.0]
    lo, hi = ax.get_ylim()
    assert lo <= 0.0 and df["factor_of_risk"].max() <= hi
    # the line Φ = 1 stays in view where no bar reaches it (the fractured L2 no longer does since
    # the Pistoia criterion reads crushed bone's strain over its damage history, 2026-12-07)
    assert hi >= 1.0
    labelled = risk_bars(df, {"before": run_of(df, "fractured"), "after": run_of(df, "pkp")})
    assert [c.get_label() for c in labelled.axes[0].containers] == ["before", "after"]


def test_plots_say_which_strength_a_pushover_study_used(study):
    """A study with strength = "pushover" at the treated level: the headline strength and
    factor of risk are the pushover's at L2 and the Pistoia proxy's at L1; the plots show the
    headline values and say, per panel and per level, which method found them."""
    from fem.metrics import headline_strength
    from fem.viz.plots import risk_bars, study_curves

    df = study["df"].copy()
    l2 = df["level"] == "L2"
    df.loc[l2, "strength_pushover_n"] = 3.0 * df.loc[l2, "strength_pistoia_n"]
    headline_strength(df)
    assert list(df.loc[l2, "strength_method"].unique()) == ["pushover"]
    assert list(df.loc[~l2, "strength_method"].unique()) == ["pistoia"]
    np.testing.assert_allclose(df.loc[l2, "factor_of_risk"],
                               df.loc[l2, "factor_of_risk_pistoia"] / 3.0, rtol=1e-12)
    np.testing.assert_allclose(df.loc[~l2, "factor_of_risk"],
                               df.loc[~l2, "factor_of_risk_pistoia"], rtol=1e-12)

    ax = study_curves(df, "strength_n").axes[0]  # L2 alone: one method, named in the label
    assert ax.get_ylabel() == "strength, pushover (N)" and ax.get_title() == "L2, standing"
    lines = {ln.get_label(): ln for ln in ax.get_lines()}
    np.testing.assert_allclose(lines["fractured"].get_ydata()[0],
                               value(df, run_of(df, "fractured"), "L2", "strength_pushover_n"))
    fig = study_curves(df, "factor_of_risk", level="all")
    assert [a.get_title() for a in fig.axes] == ["L1, standing (Pistoia)",
                                                 "L2, standing (pushover)"]
    assert fig.axes[0].get_ylabel().endswith("pushover or Pistoia (-)")
    ax, = risk_bars(df).axes
    assert [t.get_text() for t in ax.get_xticklabels()] == ["L1\nPistoia", "L2\npushover"]
    rid = run_of(df, "pvp", 4.0)
    bars = ax.containers[list(dict.fromkeys(df["run_id"])).index(rid)]
    assert bars[1].get_height() == pytest.approx(value(df, rid, "L2", "factor_of_risk"))


def test_a_strength_the_pushover_only_bounds_is_shown_as_a_bound(study):
    """A pushover that stopped at its displacement cap before its curve fell
    (pushover_peak_reached 0) gives a lower bound on the strength and an upper bound on the
    factor of risk: the plots draw it open (reference lines say "(≥)"), the risk bars dotted,
    and the table writes "≥ ..." and "≤ ..." with a note; reached peaks are drawn as before."""
    from fem.metrics import headline_strength
    from fem.viz.plots import (
        BARS_LABEL,
        BOUND_LABEL,
        BOUND_WHY,
        bounds,
        risk_bars,
        study_curves,
        with_bounds,
    )
    from fem.viz.report import _results_table, format_value

    df = study["df"].copy()
    l2 = df["level"] == "L2"
    df.loc[l2, "strength_pushover_n"] = 3.0 * df.loc[l2, "strength_pistoia_n"]
    headline_strength(df)
    df["pushover_peak_reached"] = np.where(l2, 1.0, np.nan)
    capped = l2 & df["run_id"].isin([run_of(df, "fractured"), run_of(df, "pvp", 2.0)])
    df.loc[capped, "pushover_peak_reached"] = 0.0
    np.testing.assert_array_equal(bounds(df, "strength_n"), capped.to_numpy())
    np.testing.assert_array_equal(bounds(df, "factor_of_risk_pistoia"), False)

    fig = study_curves(df, "strength_n")
    ax = fig.axes[0]
    labels = [ln.get_label() for ln in ax.get_lines()]
    assert "fractured (≥)" in labels and "intact" in labels
    opened = [ln for ln in ax.get_lines() if ln.get_markerfacecolor() == "white"]
    assert len(opened) == 1  # PVP 2 mL alone; PVP 4 mL and PKP reached their peaks
    np.testing.assert_allclose(opened[0].get_xdata(), [2.0])
    np.testing.assert_allclose(opened[0].get_ydata(), [value(df, run_of(df, "pvp", 2.0), "L2",
                                                             "strength_n")])
    assert BOUND_LABEL in [tx.get_text() for tx in ax.get_legend().get_texts()]
    ax, = risk_bars(df).axes
    assert BARS_LABEL in [tx.get_text() for tx in ax.get_legend().get_texts()]
    order = list(dict.fromkeys(df["run_id"]))
    for rid in df["run_id"].unique():
        l2_bar = ax.containers[order.index(rid)][1]
        assert (l2_bar.get_hatch() == "..") == (rid in set(df.loc[capped, "run_id"]))
        assert ax.containers[order.index(rid)][0].get_hatch() in (None, "")
    html_table = _results_table(df[["run_id", "level", "strength_n", "factor_of_risk",
                                    "strength_method"]], df)
    rid = run_of(df, "fractured")
    s = format_value(value(df, rid, "L2", "strength_n"))
    phi = format_value(value(df, rid, "L2", "factor_of_risk"))
    assert f"<td>≥ {s}</td>" in html_table and f"<td>≤ {phi}</td>" in html_table
    assert BOUND_WHY in html_table
    reached = format_value(value(df, run_of(df, "pkp"), "L2", "strength_n"))
    assert f"<td>{reached}</td>" in html_table
    shown = with_bounds(df, fmt=lambda v: f"{v:.5g}")  # `vfem results` prints this
    row = (df["run_id"] == rid) & l2
    assert shown.loc[row, "strength_n"].item() == f"≥ {value(df, rid, 'L2', 'strength_n'):.5g}"
    assert shown.loc[row, "factor_of_risk"].item().startswith("≤ 0.")
    assert shown.loc[~capped, "strength_n"].tolist() == [f"{v:.5g}" for v in
                                                       df.loc[~capped, "strength_n"]]
    plain = df.drop(columns="pushover_peak_reached")
    assert with_bounds(plain) is plain
    ax = study_curves(df, "stiffness_n_per_mm").axes[0]  # no bound: drawn as before
    assert BOUND_LABEL not in [tx.get_text() for tx in ax.get_legend().get_texts()]


def test_plots_refuse_what_the_table_lacks(study):
    from fem.errors import ModelError
    from fem.viz.plots import risk_bars, study_curves

    with pytest.raises(ModelError, match="unknown metric 'stifness'"):
        study_curves(study["df"], "stifness")
    with pytest.raises(ModelError, match="level.*L5.*not in the results"):
        study_curves(study["df"], "strength_n", level="L5")
    with pytest.raises(ModelError, match="not in the results"):
        risk_bars(study["df"], ["0123456789ab"])


# ---------------------------------------------------------------------- the report

class Page(HTMLParser):
    """The images and the table rows (cell texts) of a report."""

    def __init__(self, text):
        super().__init__()
        self.images, self.tables, self._cell = [], [], None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.images.append(dict(attrs)["src"])
        elif tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = ""

    def handle_data(self, data):
        if self._cell is not None:
            self._cell += data

    def handle_endtag(self, tag):
        if tag in ("td", "th"):
            self.tables[-1][-1].append(self._cell)
            self._cell = None


def results_table(page: Page) -> list[list[str]]:
    hits = [t for t in page.tables if "stiffness (N/mm)" in t[0]]
    assert len(hits) == 1
    return hits[0]


def check_png(path: Path):
    """A PNG that decodes, is not blank and is not one flat colour with a few marks."""
    from PIL import Image

    with Image.open(path) as im:
        assert im.format == "PNG"
        im.verify()
    with Image.open(path) as im:
        img = np.asarray(im.convert("RGB"), dtype=float)
    assert img.shape[0] >= 200 and img.shape[1] >= 200, (path.name, img.shape)
    background = img[0, 0]
    drawn = np.abs(img - background).sum(axis=2) > 30
    assert drawn.mean() > 0.03, (path.name, drawn.mean())
    assert img.std() > 10, (path.name, img.std())


def test_vfem_study_writes_the_report(study):
    folder = study["folder"]
    page_path = folder / "report.html"
    assert f"report: {page_path}" in study["stdout"]
    page = Page(page_path.read_text())
    files = folder / "report_files"
    assert page.images and all(src.startswith("report_files/") for src in page.images)
    assert len(set(page.images)) == len(page.images)
    for src in page.images:
        check_png(folder / src)
    # only what the page shows is there
    assert sorted(p.name for p in files.iterdir()) == sorted(Path(s).name for s in page.images)
    df = study["df"]
    ids = {s: run_of(df, s) for s in ("fractured", "pkp")} | {"pvp": run_of(df, "pvp", 4.0)}
    names = {Path(s).name for s in page.images}
    assert {"curves-stiffness_n_per_mm.png", "curves-strength_n.png",
            "curves-factor_of_risk.png", "risk-bars.png",
            "side-mid_sagittal-von_mises.png"} <= names
    from fem.viz.report import choose_runs

    assert choose_runs(df) == [("fractured", ids["fractured"]), ("PVP 4 mL", ids["pvp"]),
                               ("PKP 4 mL", ids["pkp"])]
    for state, rid in ids.items():  # the default views: fractured, PVP 4 mL (as PKP), PKP
        assert f"view-{rid}-mid_coronal.png" in names
        assert (f"view-{rid}-cement_view.png" in names) == (state != "fractured")
    assert not any(run_of(df, s) in n for s in ("intact",) for n in names)
    assert 'class="problem"' not in page_path.read_text()


def test_report_table_holds_the_results(study):
    from fem.viz.report import HEADERS, format_value

    df = study["df"]
    rows = results_table(Page((study["folder"] / "report.html").read_text()))
    assert rows[0] == [HEADERS[c] for c in RESULT_COLUMNS]
    for unit in ("(mL)", "(N/mm)", "(N)", "(-)", "(mm)", "(MPa)"):
        assert any(h.endswith(unit) for h in rows[0])
    body = rows[1:]
    assert len(body) == len(df) == 5 * len(LEVELS)
    by_key = {(r[0], r[5]): r for r in body}
    for state, volume in (("fractured", None), ("pvp", 4.0), ("pkp", 4.0)):
        rid = run_of(df, state, volume)
        for lv in LEVELS:
            row = by_key[(rid, lv)]
            for metric in ("stiffness_n_per_mm", "strength_n", "factor_of_risk",
                           "disc_pressure_mpa"):
                cell = row[RESULT_COLUMNS.index(metric)]
                assert cell == format_value(value(df, rid, lv, metric)), (rid, lv, metric)
    # four significant digits, as printed: the value read back is within 5e-4 relative
    frac = run_of(df, "fractured")
    shown = float(by_key[(frac, "L2")][RESULT_COLUMNS.index("stiffness_n_per_mm")])
    assert shown == pytest.approx(value(df, frac, "L2", "stiffness_n_per_mm"), rel=5e-4)
    assert by_key[(frac, "L2")][RESULT_COLUMNS.index("disc_pressure_mpa")] == "–"  # no disc


def test_format_value():
    from fem.viz.report import format_value

    assert [format_value(v) for v in (17195.9, 1550.16, 0.32255, 0.0064941, 0.0, 2.0)] == [
        "17196", "1550", "0.3226", "0.006494", "0", "2.000"]
    assert format_value(float("nan")) == format_value(None) == "–"
    assert format_value(4.4e-16) == "4.400e-16"


def test_views_render_from_the_vtu_without_solving(study, monkeypatch):
    """A stored run is the solved one, read back without building or solving anything: its
    stored stress is what its stored model and displacement give, its records and sets are the
    run's, and asking for what the VTU does not hold says so."""
    import fem.study.recipe
    from fem.viz.report import load_run

    def no_build(*args, **kwargs):
        raise AssertionError("load_run rebuilt a model")

    monkeypatch.setattr(fem.study.recipe, "build_model", no_build)
    monkeypatch.setattr(fem, "solve", no_build)
    df = study["df"]
    r = load_run(study["folder"], run_of(df, "pkp"))
    stored = r.von_mises.copy()
    assert r.model.metadata["augmentations"][0].procedure == "PKP"
    assert r.model.metadata["levels"] == ["L1", "L2"] and len(r.model.node_sets["L2/superior"])
    assert "L2/cement" in r.model.regions
    for name in ("stress", "von_mises"):
        del r.__dict__[name]  # recovered from the displacement by the core
    np.testing.assert_allclose(r.von_mises, stored, rtol=1e-9, atol=1e-12 * stored.max())
    with pytest.raises(fem.ModelError, match="does not store the reactions"):
        r.reactions  # noqa: B018


def test_a_vtu_from_another_model_is_reported_not_rendered(study, tmp_path):
    from fem.viz.report import ReportError, load_run, write_report

    df = study["df"]
    folder = tmp_path / "study"
    shutil.copytree(study["folder"], folder)
    pvp, frac = run_of(df, "pvp", 4.0), run_of(df, "fractured")
    shutil.copy(folder / "runs" / f"{frac}.vtu", folder / "runs" / f"{pvp}.vtu")
    with pytest.raises(ReportError, match="element moduli differ"):
        load_run(folder, pvp)
    (folder / "runs" / f"{frac}.model.json").unlink()
    with pytest.raises(ReportError, match="no model record.*run the study again"):
        load_run(folder, frac)
    with pytest.warns(UserWarning, match=f"{pvp}.*element moduli differ"):
        page = write_report(folder, runs=[pvp])
    text = page.read_text()
    assert 'class="problem"' in text and "model builder changed" in text
    names = {Path(s).name for s in Page(text).images}
    assert not any(pvp in n for n in names)  # no view of it, the stale ones removed too
    assert not any(p.name.startswith("view-") for p in (folder / "report_files").iterdir())


def test_vfem_report_chosen_runs_and_out(study, tmp_path):
    df = study["df"]
    folder = tmp_path / "study"
    shutil.copytree(study["folder"], folder)
    pkp, pvp2 = run_of(df, "pkp"), run_of(df, "pvp", 2.0)
    out = tmp_path / "elsewhere" / "mine.html"
    out.parent.mkdir()
    code, stdout, stderr = run_cli("report", folder, "--out", out, "--runs", pvp2, pkp)
    assert code == 0, stderr
    assert stdout.strip() == str(out)
    page = Page(out.read_text())
    assert all(src.startswith("mine_files/") for src in page.images)
    names = {Path(s).name for s in page.images}
    views = {n for n in names if n.startswith("view-")}
    assert views and all(pvp2 in n or pkp in n for n in views)
    assert {f"view-{pvp2}-cement_view.png", f"view-{pkp}-cement_view.png"} <= views
    for src in page.images:
        check_png(out.parent / src)


@pytest.mark.parametrize("case", ["missing", "no study", "unknown run", "bad out"])
def test_vfem_report_bad_input_is_one_error_line(study, tmp_path, case):
    folder = study["folder"]
    argv = {"missing": ["report", tmp_path / "nope"],
            "no study": ["report", tmp_path],
            "unknown run": ["report", folder, "--out", tmp_path / "r.html", "--runs", "feed"],
            "bad out": ["report", folder, "--out", tmp_path / "r.pdf"]}[case]
    code, stdout, stderr = run_cli(*argv)
    assert code == 2 and stdout == ""
    assert stderr.startswith("error: ") and stderr.count("\n") == 1, stderr
    word = {"missing": "nope", "no study": "holds no study", "unknown run": "'feed'",
            "bad out": ".html"}[case]
    assert word in stderr or word.strip("'") in stderr
    assert not (tmp_path / "r.html").exists() and not (tmp_path / "r_files").exists()


def test_a_report_that_cannot_be_written_is_a_warning_not_a_failed_study(study, tmp_path):
    folder = tmp_path / "study"
    shutil.copytree(study["folder"], folder)
    shutil.rmtree(folder / "report_files")
    (folder / "report_files").write_text("in the way")
    (folder / "report.html").unlink()
    code, stdout, stderr = run_cli("study", study["spec"], "--out", folder)
    assert code == 0, stderr
    assert "warning: the report was not written" in stderr and "vfem report" in stderr
    assert not (folder / "report.html").exists()
    assert (folder / "summary.csv").exists()


BENDING_SPEC = """\
[study]
name = "viz-bending"

""" + BASE + """
[grid]
load_case = ["standing", "flexion"]

[[runs]]
procedure = "fractured"

[[runs]]
procedure = "pvp"
cement_volume_ml = 3.0
"""


def test_report_leaves_the_axial_stiffness_out_under_a_moment(tmp_path):
    """Under flexion the axial stiffness is NaN (ill-posed): its table cell says why, no plot
    draws it, and the rotational stiffness is drawn for flexion only."""
    import html

    from fem.viz.report import STIFFNESS_NOTE, STIFFNESS_UNDER_MOMENT, write_report

    spec = tmp_path / "bending.toml"
    spec.write_text(BENDING_SPEC)
    folder = tmp_path / "study"
    Study(folder, spec).run(progress=False, log=lambda msg: None)
    text = write_report(folder, views=False).read_text()
    rows = results_table(Page(text))
    head = rows[0]
    case, k, k_rot = (head.index(h) for h in ("load case", "stiffness (N/mm)",
                                              "rotational stiffness (N m/deg)"))
    assert sorted({r[case] for r in rows[1:]}) == ["flexion", "standing"]
    for r in rows[1:]:
        if r[case] == "flexion":
            assert r[k] == STIFFNESS_UNDER_MOMENT and float(r[k_rot]) > 0
        else:
            assert float(r[k]) > 0 and r[k_rot] == "–"
    assert html.escape(STIFFNESS_NOTE) in text
    where = "against cement volume at the treated level (L2)"
    assert f"stiffness (N/mm) {where} (standing):" in text
    assert f"rotational stiffness (N m/deg) {where} (flexion):" in text
    assert f"strength, Pistoia (N) {where}:" in text  # every case where both define it


def test_the_report_draws_each_pushover_curve_marked_where_its_strength_was_read(tmp_path):
    """A pushover study (L1-L2 at 4 mm, L2 pushed under standing): the report has
    the curves figure; each run's line is its ``runs/<id>_curve.csv``, and its marker sits on
    the line at the headline strength, shaped by ``strength_pushover_by``. ``strength_point`` reads a crossing between points linearly; a study without curves
    (no pushover) gets no such figure."""
    import pandas as pd

    from fem.viz.plots import READING_MARKERS, pushover_curves, strength_point

    c = np.array([[0.0, 0.0], [0.1, 10.0], [0.2, 14.0], [0.3, 13.0]])
    assert strength_point(c, 14.0) == pytest.approx(0.2)  # a running maximum: a point
    assert strength_point(c, 12.0) == pytest.approx(0.15)  # between two points
    assert np.isnan(strength_point(c, 15.0))
    spec = tmp_path / "push.toml"
    spec.write_text('[study]\nname = "push"\n\n' + BASE.replace("voxel_size = 3.0",
                                                                 "voxel_size = 4.0")
                    + 'strength = "pushover"\n\n'
                    '[[runs]]\nprocedure = "intact"\n\n[[runs]]\nprocedure = "fractured"\n')
    folder = tmp_path / "push"
    code, out, err = run_cli("study", spec, "--out", folder, "--no-report")
    assert code == 0, err
    df = Study(folder).results()
    df = df.loc[:, ~df.columns.duplicated()]
    pushed = df[df["strength_method"] == "pushover"]
    assert len(pushed) == 2 and set(pushed["level"]) == {"L2"}
    assert set(pushed["strength_pushover_by"]) <= set(READING_MARKERS)
    fig = pushover_curves(df, folder)
    assert [a.get_title() for a in fig.axes] == ["L2, standing"]
    seen = set()
    for ax, case in zip(fig.axes, ("standing",)):
        lines = ax.get_lines()
        for _, r in pushed[pushed["load_case"] == case].iterrows():
            curve = pd.read_csv(folder / "runs" / f"{r['run_id']}_curve.csv")
            x, f = curve["displacement_mm"].to_numpy(), curve["force_n"].to_numpy()
            line = [ln for ln in lines if ln.get_linestyle() == "-"
                    and np.array_equal(ln.get_xdata(), x)]
            assert len(line) == 1 and np.array_equal(line[0].get_ydata(), f)
            marker = READING_MARKERS[r["strength_pushover_by"]][0]
            mark = [ln for ln in lines if ln.get_marker() == marker
                    and ln.get_color() == line[0].get_color()]
            assert len(mark) == 1
            mx, my = mark[0].get_xdata()[0], mark[0].get_ydata()[0]
            assert my == pytest.approx(r["strength_pushover_n"], rel=1e-12)
            assert np.interp(mx, x, f) == pytest.approx(my, rel=1e-9)  # on the line
            seen.add(r["strength_pushover_by"])
    assert "fall" in seen  # (this small isotropic-disc segment falls)
    assert pushover_curves(df[df["strength_method"] != "pushover"], folder) is None
    from fem.viz.report import write_report

    page = write_report(folder, views=False)  # the plots and the table, no 3-D views
    assert "pushover-curves.png" in page.read_text()
    assert (folder / "report_files" / "pushover-curves.png").is_file()


def test_the_table_notes_runs_beyond_small_strain(study):
    """Runs whose linear answer turns a disc beyond SMALL_ROTATION_DEG get a note under the
    results table that counts them and says what is not physical; runs inside it get none."""
    from fem.metrics import SMALL_ROTATION_DEG
    from fem.viz.report import _results_table

    df = study["df"].copy()
    shown = ["run_id", "level", "strength_n"]
    inside = df.assign(disc_rotation_deg=0.5 * SMALL_ROTATION_DEG)
    assert "beyond small strain" not in _results_table(inside[shown], inside)
    beyond = inside.copy()
    rid = df["run_id"].iloc[0]
    beyond.loc[beyond["run_id"] == rid, "disc_rotation_deg"] = 53.0
    note = _results_table(beyond[shown], beyond)
    assert (f"1 of {df['run_id'].nunique()} runs turn a disc beyond small strain" in note
            and "up to 53°" in note and "not physical" in note)


def test_the_table_says_why_a_ligamentous_level_has_no_rotational_stiffness(study):
    """Where a run has posterior ligaments and both stiffnesses are NaN (under a moment), the
    rotational stiffness cell says so and a note under the table says why; the small-strain
    note then does not blame missing ligaments."""
    from fem.viz.report import LIGAMENT_NOTE, ROTATION_WITH_LIGAMENTS, _results_table

    df = study["df"].copy()
    shown = ["run_id", "level", "stiffness_n_per_mm", "rotational_stiffness_nm_per_deg"]
    held = df.assign(ligaments="yes", stiffness_n_per_mm=np.nan,
                     rotational_stiffness_nm_per_deg=np.nan, disc_rotation_deg=9.0)
    page = _results_table(held[shown], held)
    assert page.count(html.escape(ROTATION_WITH_LIGAMENTS)) == len(df)
    assert html.escape(LIGAMENT_NOTE) in page
    assert "posterior ligaments alone hold it" in page
    bare = held.assign(ligaments="no")
    page = _results_table(bare[shown], bare)
    assert html.escape(ROTATION_WITH_LIGAMENTS) not in page
    assert "no ligaments: ligaments = no" in page
