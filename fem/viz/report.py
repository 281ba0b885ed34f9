"""The study report: one HTML page with the results table, the study plots and standard views.

``write_report(folder)`` writes ``<folder>/report.html`` and its figures as PNG files in
``<folder>/report_files/`` (the browser's "save page" layout: the page links them by relative
paths, so the folder pair can be moved or zipped together; nothing is fetched from the network).
Every file is written atomically and the page last, so a reader never sees a page that points
at a missing figure. PNGs of an earlier report that this one no longer shows are removed.

Views are rendered from each chosen run's VTU (``runs/<run_id>.vtu``), never by solving again:
:func:`load_run` reads the run's mesh, materials and fields from its VTU and the anatomy,
regions, node sets and procedure records the scenes need from its model record
(``runs/<id>.model.json``, :mod:`fem.io.record`), which the run wrote beside the VTU: nothing is
rebuilt or solved. A VTU that does not match its record (replaced by another run's) is reported
on the page, not drawn.

A study whose spec samples its inputs (``[uncertain]``) gets an "Uncertainty" section:
:meth:`fem.study.Study.uncertainty` drawn by :mod:`fem.viz.uncertainty` (distributions, P(fracture)
per level, Sobol indices per prediction, convergence) with its summary, paired comparisons and
cement leakage;
where the analysis cannot run yet (no complete sampled patient) the section says why.
"""

from __future__ import annotations

import datetime as _dt
import html
import logging
import math
import re
import warnings
from pathlib import Path

import numpy as np

from ..errors import ModelError
from ..result import Result

logger = logging.getLogger(__name__)

#: column headers of the results table (units in brackets), in fem.study.RESULT_COLUMNS order
HEADERS = {
    "run_id": "run", "procedure": "procedure", "approach": "approach",
    "cement_volume_ml": "cement (mL)", "cement_placed_ml": "cement placed (mL)",
    "load_case": "load case", "level": "level",
    "stiffness_n_per_mm": "stiffness (N/mm)",
    "rotational_stiffness_nm_per_deg": "rotational stiffness (N m/deg)",
    "strength_n": "strength (N)", "factor_of_risk": "factor of risk Φ (-)",
    "strength_method": "strength by", "strength_pistoia_n": "strength, Pistoia (N)",
    "factor_of_risk_pistoia": "factor of risk, Pistoia (-)",
    "endplate_bulge_max_mm": "larger endplate bulge (mm)",
    "endplate_bulge_mm": "endplate bulge (mm)",
    "disc_pressure_mpa": "disc pressure (MPa)",
}
#: the metrics drawn against cement volume at the treated level
STUDY_METRICS = ("stiffness_n_per_mm", "rotational_stiffness_nm_per_deg", "strength_n",
                 "factor_of_risk")
#: the table cell of an axial stiffness left out under a load case with a moment, and the note
#: under the table that says why
STIFFNESS_UNDER_MOMENT = "– (moment)*"
STIFFNESS_NOTE = (
    "* Stiffness is load / shortening under axial compression only. Under a load case with a "
    "moment (flexion, extension, lateral bending, axial rotation) the body's axis lies near the "
    "neutral axis, so the shortening is near zero and that ratio meaningless (it read 2.7 × 10⁵ "
    "N/mm under flexion); the rotational stiffness (moment / relative rotation of the endplates, "
    "N m/deg) stands in its place, and no plot shows the axial one for these cases.")
#: the rotational stiffness of a level in a segment with posterior ligaments, and why
ROTATION_WITH_LIGAMENTS = "– (ligaments)†"
LIGAMENT_NOTE = (
    "† With posterior ligaments (ligaments = yes) a level's rotational stiffness is not read: "
    "the ligaments and the neural arch carry most of the moment past the body, whose own turn "
    "between its endplates (hundredths of a degree) is then of the order of the endplates' "
    "local deflection (fem.metrics); disc_rotation_deg says how far each disc turns.")
#: pixels of a rendered view (width, height), of each column of a side-by-side view (height,
#: widest) and dots per inch of the plots
VIEW_SIZE = (640, 480)
COLUMN_SIZE = (520, 440, 1800)
PLOT_DPI = 110

class ReportError(ModelError):
    """A study folder or run from which a report cannot be made."""


def format_value(v) -> str:
    """How a table cell shows a value: floats to 4 significant digits without an exponent
    from 1e-4 up (17196, 0.3225, 0.006494), with one below; '–' for NaN and None."""
    if v is None or (isinstance(v, (float, np.floating)) and math.isnan(v)):
        return "–"
    if isinstance(v, (bool, np.bool_)):
        return str(bool(v))
    if isinstance(v, (float, np.floating)):
        v = float(v)
        if v == 0.0 or abs(v) >= 1e-4:
            digits = 0 if v == 0.0 else max(0, 3 - math.floor(math.log10(abs(v))))
            return f"{v:.{digits}f}"
        return f"{v:.3e}"
    return str(v)


# ---------------------------------------------------------------------- runs from VTU

def load_run(folder, run_id: str) -> Result:
    """A finished run of the study in ``folder`` as a :class:`fem.Result` read back from what
    the run stored (:meth:`fem.Result.stored`): the mesh, materials and fields of
    ``runs/<run_id>.vtu`` and the anatomy, sets and procedure records of its model record
    ``runs/<run_id>.model.json`` (:mod:`fem.io.record`); nothing is rebuilt or solved."""
    from ..io.meshio_io import read_result_file
    from ..io.record import apply_model_record, mismatch, read_model_record
    from ..study import Study
    from ..study.recipe import record_path

    study = Study(folder)
    runs = study.store.runs_frame()
    hit = runs[runs["run_id"] == run_id]
    if not len(hit):
        raise ReportError(f"{folder}: no run {run_id!r}")
    if hit["status"].iloc[0] != "done":
        raise ReportError(f"run {run_id} is {hit['status'].iloc[0]}, not done")
    vtu = study.runs_dir / f"{run_id}.vtu"
    if not vtu.exists():
        raise ReportError(f"run {run_id} has no VTU ({vtu} is missing; a study with "
                          "write_vtu = false keeps none)")
    try:
        record = read_model_record(record_path(vtu))
    except ModelError as exc:
        raise ReportError(f"run {run_id}: {exc}; runs of studies made before model records "
                          "were stored (2026-12-05) have none: run the study again in a new "
                          "folder to draw its views") from None
    model, points, cells = read_result_file(vtu)
    why = mismatch(model, record)
    if why:
        raise ReportError(f"run {run_id}: {vtu.name} was not written with its model record "
                          f"({why}); the file was replaced or the model builder changed since "
                          "the study ran: run the study again in a new folder")
    apply_model_record(model, record)
    return Result.stored(model, points["displacement"], cells)


# ---------------------------------------------------------------------- choosing runs

def choose_runs(df, runs=None) -> list[tuple[str, str]]:
    """(label, run_id) of the runs whose views the report shows. ``runs``: run ids; by default
    the fractured run, a PVP run (the cement volume closest to the PKP run's, else the median)
    and a PKP run, all of the first load case of the table; the first run if none of these.
    Labels name the state ("PVP 4 mL") and whatever else tells the chosen runs apart."""
    first = df.drop_duplicates("run_id").set_index("run_id", drop=False)
    if runs:
        runs = list(dict.fromkeys(runs))
        unknown = [r for r in runs if r not in first.index]
        if unknown:
            raise ReportError(f"run(s) {', '.join(unknown)} are not finished runs of this study "
                              f"(runs: {', '.join(first.index)})")
        return _labelled(first.loc[runs])
    if not len(first):
        return []
    here = first[first["load_case"] == first["load_case"].iloc[0]]
    frac, pvp, pkp = (here[here["procedure"] == p] for p in ("fractured", "pvp", "pkp"))
    picked = [frac.index[0]] if len(frac) else []
    if len(pvp):
        target = (pkp["cement_volume_ml"].iloc[0] if len(pkp) else
                  float(np.median(pvp["cement_volume_ml"])))
        gap = (pvp["cement_volume_ml"] - target).abs() - 1e-9 * pvp["cement_volume_ml"]
        picked.append(gap.idxmin())
    if len(pkp):
        picked.append(pkp.index[0])
    return _labelled(first.loc[picked or [here.index[0]]])


def _labelled(rows) -> list[tuple[str, str]]:
    from .plots import state_label, varying

    extra = varying(rows, exclude=("procedure", "cement_volume_ml"))
    labels = [state_label(r, extra) for _, r in rows.iterrows()]
    if len(set(labels)) < len(labels):
        labels = [f"{lb} ({rid})" for lb, rid in zip(labels, rows.index)]
    return list(zip(labels, rows.index))


# ---------------------------------------------------------------------- figures

class _Figures:
    """PNG files of one report, written atomically into its files folder."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.written: list[str] = []

    def _name(self, stem: str) -> str:
        name = re.sub(r"[^A-Za-z0-9_.-]+", "-", stem).strip("-") + ".png"
        if name in self.written:
            raise RuntimeError(f"figure {name} written twice")
        self.written.append(name)
        return name

    def plot(self, stem: str, fig) -> str:
        from ..io.atomic import atomic_path

        name = self._name(stem)
        with atomic_path(self.folder / name) as tmp:
            fig.savefig(tmp, dpi=PLOT_DPI, format="png")
        return name

    def view(self, stem: str, plotter) -> str:
        from ..io.atomic import atomic_path

        name = self._name(stem)
        try:
            img = plotter.screenshot(None, return_img=True)
        finally:
            plotter.close()
        with atomic_path(self.folder / name) as tmp:
            _write_png(tmp, img)
        return name

    def remove_stale(self):
        """Remove PNGs of an earlier report that this one does not show."""
        for p in self.folder.glob("*.png"):
            if p.name not in self.written:
                p.unlink(missing_ok=True)


def _write_png(path, img: np.ndarray):
    from matplotlib.image import imsave

    imsave(path, np.ascontiguousarray(img), format="png")


def _plots(df, figs: _Figures, folder=None) -> list[tuple[str, str]]:
    """(caption, file) of the study plots; with the study ``folder``, also its pushover curves
    (where the runs wrote them)."""
    from .plots import metric_label, pushover_curves, risk_bars, study_curves, treated_levels

    out = []
    treated = treated_levels(df)
    where = f"the treated level ({', '.join(treated)})" if treated else "every level"
    cemented = df["procedure"].isin(("pvp", "pkp")).any()
    for metric in STUDY_METRICS if cemented else ():
        # a stiffness is drawn for the load cases that define it: the axial one under axial
        # compression, the rotational one under a moment (NaN elsewhere: no empty panels)
        cases = [c for c, g in df.groupby("load_case", sort=False)
                 if np.isfinite(g[metric].to_numpy(float)).any()]
        if not cases:
            continue
        fig = study_curves(df, metric, load_case=cases)
        some = f" ({', '.join(cases)})" if len(cases) < df["load_case"].nunique() else ""
        drawn = df[df["load_case"].isin(cases) & (df["level"].isin(treated) if treated
                                                  else True)]
        out.append((f"{metric_label(drawn, metric)} against cement volume at {where}{some}: PVP and "
                    "PKP lines, intact and fractured runs as horizontal references",
                    figs.plot(f"curves-{metric}", fig)))
    if cemented and df["level"].nunique() > 1:
        fig = study_curves(df, "factor_of_risk", level="all")
        out.append(("Factor of risk against cement volume at every level: the adjacent levels' "
                    "risk after augmentation", figs.plot("curves-factor_of_risk-all", fig)))
    out.append(("Factor of risk per level and run; Φ > 1 predicts fracture",
                figs.plot("risk-bars", risk_bars(df))))
    fig = pushover_curves(df, folder) if folder is not None else None
    if fig is not None:
        out.append(("Pushover curves of the pushed levels: force against the level's "
                    "deformation, each marked where its strength was read (its first fall of "
                    "2 %, its offset yield, a plateau, or the cap's lower bound: "
                    "strength_pushover_by)", figs.plot("pushover-curves", fig)))
    return out


def _views(folder, chosen, figs: _Figures) -> tuple[list, list]:
    """(sections, problems): the standard views of the chosen runs, rendered from their VTU;
    a view that cannot be made is listed as a problem (and warned about) instead."""
    from . import scenes

    results, problems, sections, ids = {}, [], [], dict(chosen)
    for label, rid in chosen:
        try:
            results[label] = load_run(folder, rid)
        except ModelError as exc:
            problems.append(f"{label} ({rid}): {exc}")
    if not results:
        return sections, problems

    def render(stem, caption, make):
        try:
            return (caption, figs.view(stem, make()))
        except Exception as exc:  # noqa: BLE001 (any failing view is reported on the page)
            problems.append(f"{caption}: {type(exc).__name__}: {exc}")
            return None

    n = len(results)
    wide = (min(COLUMN_SIZE[0] * n, COLUMN_SIZE[2]), COLUMN_SIZE[1])
    shared = []
    for field in ("von_mises", "min_principal_strain"):
        what = scenes.bar_title(field)
        got = render(f"side-mid_sagittal-{field}",
                     f"Mid-sagittal cut through the treated level, {what}, on one colour scale: "
                     f"{', '.join(results)}; cement outlined in red",
                     lambda field=field: scenes.side_by_side(
                         results, view=scenes.mid_sagittal, field=field, window_size=wide))
        shared += [got] if got else []
    sections.append(("Mid-sagittal cuts" + (" side by side" if n > 1 else ""), shared))
    per_run = (
        ("mid_coronal", "mid-coronal cut, " + scenes.bar_title("von_mises"), scenes.mid_coronal,
         {"window_size": VIEW_SIZE}),
        ("cement_view", "the cement in the translucent treated vertebra", scenes.cement_view,
         {"window_size": VIEW_SIZE}),
        ("bulge_map", "bulge of the endplates facing the treated level [mm]", scenes.bulge_map,
         {"window_size": (2 * COLUMN_SIZE[0], COLUMN_SIZE[1])}))
    for label, r in results.items():
        items = []
        for stem, caption, view, kw in per_run:
            if stem == "cement_view" and not r.model.metadata.get("augmentations"):
                continue
            got = render(f"view-{ids[label]}-{stem}", f"{label}: {caption}",
                         lambda r=r, view=view, kw=kw: view(r, **kw))
            items += [got] if got else []
        case = (r.model.metadata.get("load_case") or {}).get("name", "")
        sections.append((f"{label} (run {ids[label]}, {case})", items))
    return sections, problems


# ---------------------------------------------------------------------- uncertainty

def _uncertainty(study, figs: _Figures) -> dict:
    """The Uncertainty section of a sampled study: ``error`` (why the analysis could not run),
    else the :class:`fem.study.uq.Uncertainty` as ``u``, its ``figures`` (caption, file) and
    ``problems`` (figures that could not be drawn, and why)."""
    from . import uncertainty as uv

    out = {"error": None, "u": None, "figures": [], "problems": []}
    try:
        # whatever the analysis's libraries warn about stays off the page's caller (vfem
        # study): recorded, and logged at debug level
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            u = study.uncertainty()
        if caught:
            logger.debug("uncertainty: %d warnings from the analysis", len(caught))
    except ModelError as exc:
        out["error"] = str(exc)
        return out
    except Exception as exc:  # noqa: BLE001 (the rest of the report stands without it)
        out["error"] = f"the analysis failed: {type(exc).__name__}: {exc}"
        warnings.warn(f"report: {out['error']}", stacklevel=3)
        return out
    out["u"] = u

    def draw(stem, caption, make):
        try:
            out["figures"].append((caption, figs.plot(stem, make())))
        except ModelError as exc:
            out["problems"].append(f"{caption}: {exc}")

    preds = uv.prediction_names(u) if len(u.values) else []
    draw("uq-distributions", "Each prediction over the sampled patients, per arm and site: "
         "violin and dots (one per patient), mean (diamond) and 5-95 % interval (bar); the "
         "dashed line is the value it is read against", lambda: uv.uq_distributions(u))
    if "factor_of_risk" in preds:
        draw("uq-fracture", "P(fracture) = P(Φ > 1) per level and arm, with its 95 % Wilson "
             "interval (no fracture in n patients still allows up to 3.84 / (n + 3.84))", lambda: uv.uq_fracture(u))
    known = uv.sensitivity_predictions(u) if preds else []
    for pred in known:
        draw(f"uq-sobol-{pred}", f"Sensitivity of {uv.PREDICTION_TITLES.get(pred, pred)} to "
             "the sampled inputs: first-order Sobol index S1 (and total ST with a Saltelli "
             "design), error bars the 95 % bootstrap interval",
             lambda pred=pred: uv.uq_sensitivity(u, pred))
    out["no_indices"] = [p for p in preds if p not in known]
    draw("uq-convergence", "Convergence: each prediction's mean (line) and 5-95 % interval "
         "(band) from the first 8, 16, 32, ... sampled patients; flat lines say the sample "
         "was large enough", lambda: uv.uq_convergence(u))
    return out


# ---------------------------------------------------------------------- the page

def write_report(study_folder, out=None, runs=None, *, views: bool = True) -> Path:
    """Write the HTML report of the study in ``study_folder``; returns its path.

    ``out``: the page (default ``<folder>/report.html``); its figures go to
    ``<out stem>_files/`` beside it. ``runs``: run ids whose standard views to show (default:
    :func:`choose_runs`). ``views=False`` leaves the 3-D views out (plots and table only).
    """
    from ..io.atomic import atomic_path
    from ..study import Study
    from ..study.execute import result_columns

    folder = Path(study_folder)
    if not folder.is_dir():
        raise ReportError(f"study folder {folder} does not exist")
    study = Study(folder)
    out = folder / "report.html" if out is None else Path(out)
    if out.suffix.lower() not in (".html", ".htm"):
        raise ReportError(f"--out {out}: the report is an .html file")
    if not out.parent.is_dir():
        raise ReportError(f"--out {out}: folder {out.parent} does not exist")
    df = study.results()
    df = df.loc[:, ~df.columns.duplicated()]
    if runs and not len(df):
        raise ReportError(f"{folder}: no finished runs, so no views of {', '.join(runs)}")
    chosen = choose_runs(df, runs) if len(df) else []
    files = out.parent / f"{out.stem}_files"
    files.mkdir(exist_ok=True)
    figs = _Figures(files)
    plots, sections, problems = [], [], []
    sampled = study.spec.uncertain is not None
    if len(df):
        # a sampled study's runs are patients, not a design: one line or bar per run would
        # say less than the distributions of its Uncertainty section
        plots = [] if sampled else _plots(df, figs, folder)
        if views and chosen and study.spec.write_vtu:
            sections, problems = _views(folder, chosen, figs)
    uq = _uncertainty(study, figs) if sampled else None
    for p in problems:
        warnings.warn(f"report: {p}", stacklevel=2)
    page = _page(study, df[result_columns(df)] if len(df) else df, plots, sections, problems,
                 files.name, uq, full=df)
    with atomic_path(out) as tmp:
        Path(tmp).write_text(page, encoding="utf-8")
    figs.remove_stale()
    logger.info("wrote %s with %d figures", out, len(figs.written))
    return out


_CSS = """
body { font-family: sans-serif; margin: 1.5em auto; max-width: 1400px; color: #222; }
table { border-collapse: collapse; font-size: 0.85em; }
th, td { border: 1px solid #ccc; padding: 2px 6px; text-align: right; }
th { background: #eee; } td.t { text-align: left; }
tr.run-start td { border-top: 2px solid #888; }
td.risk { background: #fdd; font-weight: bold; }
figure { display: inline-block; margin: 0.5em; vertical-align: top; max-width: 660px; }
figure img { max-width: 100%; border: 1px solid #ddd; }
figcaption { font-size: 0.85em; }
.problem { color: #a00; }
"""


def _page(study, table, plots, sections, problems, files_name: str, uq=None, full=None) -> str:
    from .. import __version__

    e = html.escape
    spec = study.spec
    counts = study.store.counts()
    when = _dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        f"<title>Study {e(spec.name)}: vertebra-fem report</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>Study {e(spec.name)}</h1>",
        f"<p>Recipe <code>{e(spec.recipe)}</code>; runs: "
        + ", ".join(f"{n} {e(s)}" for s, n in sorted(counts.items()))
        + f". Written {e(when)} by vertebra-fem {e(str(__version__))}. Units: mm, N, MPa, mL; "
        "the factor of risk Φ is load / strength; Φ &gt; 1 predicts fracture. The strength is "
        "the peak load of a damage pushover of the level where the study ran one ("
        "<code>strength = \"pushover\"</code>; its first failure, where the force first fell "
        "<code>first_failure_drop</code> (2 % by default) below its running maximum, it "
        "crossed its initial stiffness's line shifted by <code>first_failure_offset</code> "
        "(0.2 % of the level's height by default: its offset yield) or it flattened to a "
        "plateau, whichever came first, unless "
        "<code>pushover_end = \"full\"</code>), "
        "else the linear Pistoia proxy (2 % of the "
        "body's bone volume above 0.7 % strain); the column <i>strength by</i> says which, row "
        "by row.</p>",
        _spec_table(spec),
        "<h2>Results</h2>", "<p>One row per run and level.</p>", _results_table(table, full),
    ]
    failed = study.store.runs_frame()
    failed = failed[failed["status"] == "failed"]
    if len(failed):
        parts += ["<h2>Failed runs</h2><ul>"] + [
            f"<li><code>{e(r)}</code>: {e(str(err))}</li>"
            for r, err in zip(failed["run_id"], failed["error"])] + ["</ul>"]
    if plots:
        parts.append("<h2>Plots</h2>")
        parts += [_figure(files_name, f, c) for c, f in plots]
    if uq is not None:
        parts += _uncertainty_html(spec, uq, files_name)
    if not spec.write_vtu:
        parts.append("<h2>Standard views</h2><p>None: the study keeps no fields "
                     "(<code>write_vtu = false</code>).</p>")
    if sections or problems:
        parts.append("<h2>Standard views</h2><p>Rendered from the runs' VTU files.</p>")
        for title, items in sections:
            if items:
                parts.append(f"<h3>{e(title)}</h3>")
                parts += [_figure(files_name, f, c) for c, f in items]
        if problems:
            parts += ["<h3>Views that could not be made</h3><ul>"] + [
                f'<li class="problem">{e(p)}</li>' for p in problems] + ["</ul>"]
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


#: the summary table's columns: (header, column or (low, high) columns shown as an interval)
UQ_SUMMARY = (("prediction", "prediction"), ("arm", "arm"), ("grid point", "condition"),
              ("site", "site"), ("n", "n"), ("mean", "mean"), ("SD", "sd"),
              ("5 %", "q05"), ("median", "q50"), ("95 %", "q95"),
              ("mean, 95 % interval", ("mean_low", "mean_high")),
              ("P(fracture)", "p_fracture"),
              ("P(fracture), 95 % interval", ("p_fracture_low", "p_fracture_high")))
UQ_COMPARISONS = (("prediction", "prediction"), ("grid point", "condition"), ("site", "site"),
                  ("arm A", "arm_a"), ("arm B", "arm_b"), ("n", "n"),
                  ("P(A better than B)", "p_a_better"),
                  ("95 % interval", ("p_low", "p_high")),
                  ("mean A − B", "diff_mean"), ("A − B, 5-95 %", ("diff_q05", "diff_q95")))
UQ_LEAKS = (("arm", "arm"), ("grid point", "condition"), ("where", "site"), ("n", "n"),
            ("leaks", "leaks"), ("P(leak)", "p_leak"), ("95 % interval", ("p_low", "p_high")),
            ("mean leak (mL)", "mean_leak_ml"))


def _uncertainty_html(spec, uq: dict, files_name: str) -> list[str]:
    from ..study.uq import PREDICTIONS

    e = html.escape
    unc = spec.uncertain
    inputs = "; ".join(f"<code>{e(x.name)}</code>: {e(x.describe())}" for x in unc.inputs)
    parts = ["<h2>Uncertainty</h2>",
             f"<p>The study samples its inputs ({e(unc.design)} design, {unc.size} sampled "
             f"patients, seed {unc.seed}): {inputs}. Each arm of <code>[[runs]]</code> saw the "
             "same sampled patients. The per-run plots (against cement volume, per level) "
             "are left out: one line or bar per sampled patient says less than the "
             "distributions below.</p>"]
    u = uq["u"]
    if u is None:
        return parts + [f"<p>No analysis yet: {e(uq['error'])}.</p>"]
    what = "".join(f"<li><code>{e(k)}</code>: {e(v[0])}</li>" for k, v in PREDICTIONS.items()
                   if k in set(u.values["prediction"]))
    parts.append(f"<p>{u.complete} of {u.samples} sampled patients complete; reference arm: "
                 f"{e(u.reference or 'none')}. Predictions (dimensionless):</p><ul>{what}</ul>")
    if u.notes:
        parts += ["<p>Notes:</p><ul>"] + [f"<li>{e(n)}</li>" for n in u.notes] + ["</ul>"]
    parts += [_figure(files_name, f, c) for c, f in uq["figures"]]
    if uq.get("no_indices"):
        parts.append(f"<p>No sensitivity chart for {e(', '.join(uq['no_indices']))}: their "
                     f"Sobol indices are not defined with {u.complete} complete samples of a "
                     f"{e(u.design)} design (too few, or the prediction does not vary).</p>")
    if uq["problems"]:
        parts += ["<ul>"] + [f'<li class="problem">{e(p)}</li>' for p in uq["problems"]] + [
            "</ul>"]
    grid = bool(spec.grid)
    parts += ["<h3>Summary</h3>", "<p>Per prediction, arm and site: mean, SD, 5 / 50 / 95 % "
              "quantiles over the sampled patients, the 95 % interval of the mean and, for the "
              "factor of risk, P(fracture) = P(Φ &gt; 1) with its 95 % Wilson interval.</p>",
              _uq_table(u.summary, UQ_SUMMARY, grid)]
    if len(u.comparisons):
        parts += ["<h3>Paired comparisons</h3>", "<p>Per sampled patient (both arms saw the "
                  "same one): the probability that arm A does better than arm B (larger "
                  "restoration, smaller risk or change) and the paired difference A − B.</p>",
                  _uq_table(u.comparisons, UQ_COMPARISONS, grid)]
    leaks = getattr(u, "leaks", None)
    if leaks is not None and len(leaks):
        parts += ["<h3>Cement leakage</h3>", "<p>Per augmented arm: the probability that cement "
                  "leaks out of the treated level, anywhere and by site, with its 95 % Wilson "
                  "interval.</p>", _uq_table(leaks, UQ_LEAKS, grid)]
    return parts


def _uq_table(df, columns, grid: bool) -> str:
    e = html.escape
    cols = [(h, c) for h, c in columns if grid or c != "condition"]
    head = "".join(f"<th>{e(h)}</th>" for h, _ in cols)
    rows = []
    for rec in df.to_dict(orient="records"):
        cells = []
        for _, c in cols:
            if isinstance(c, tuple):
                lo, hi = rec.get(c[0]), rec.get(c[1])
                text = "–" if _is_nan(lo) and _is_nan(hi) else \
                    f"{format_value(lo)} – {format_value(hi)}"
                cells.append(f"<td>{e(text)}</td>")
            else:
                v = rec.get(c)
                cls = " class=t" if isinstance(v, str) else ""
                cells.append(f"<td{cls}>{e(format_value(v))}</td>")
        rows.append(f"<tr>{''.join(cells)}</tr>")
    return f"<table><tr>{head}</tr>{''.join(rows)}</table>"


def _figure(files_name: str, name: str, caption: str) -> str:
    e = html.escape
    return (f'<figure><img src="{e(files_name)}/{e(name)}" alt="{e(caption)}">'
            f"<figcaption>{e(caption)}</figcaption></figure>")


def _spec_table(spec) -> str:
    e = html.escape
    rows = [f"<tr><td class=t>base</td><td class=t>{e(k)}</td><td class=t>{e(str(v))}</td></tr>"
            for k, v in spec.base.items()]
    rows += [f"<tr><td class=t>grid</td><td class=t>{e(k)}</td><td class=t>"
             f"{e(', '.join(map(str, v)))}</td></tr>" for k, v in spec.grid.items()]
    rows += [f"<tr><td class=t>run {i + 1}</td><td class=t colspan=2>"
             f"{e(', '.join(f'{k} = {v}' for k, v in r.items()))}</td></tr>"
             for i, r in enumerate(spec.runs)]
    return ("<table><tr><th>part</th><th>parameter</th><th>value</th></tr>" + "".join(rows)
            + "</table>") if rows else ""


def _results_table(df, full=None) -> str:
    """The results table of ``df`` (the columns shown); ``full``, the same rows with every
    column, says which strengths are bounds (:func:`fem.viz.plots.bounds`): written "≥ 2412",
    and their factors of risk "≤ 0.2073", with a note under the table."""
    from .plots import BOUND_WHY, BOUNDED, bounds

    e = html.escape
    if not len(df):
        return "<p>No finished runs.</p>"
    full = df if full is None else full
    marked = {c: bounds(full, c) for c in BOUNDED if c in df.columns}
    head = "".join(f"<th>{e(HEADERS.get(c, c))}</th>" for c in df.columns)
    rows, last, noted, lig_noted = [], None, False, False
    held = (full["ligaments"] == "yes").tolist() if "ligaments" in full.columns \
        else [False] * len(df)
    for i, rec in enumerate(df.to_dict(orient="records")):
        cls = ' class="run-start"' if rec["run_id"] != last else ""
        last = rec["run_id"]
        cells = []
        for c in df.columns:
            v = rec[c]
            kind = "t" if isinstance(v, str) else ""
            if c == "stiffness_n_per_mm" and _is_nan(v) and not _is_nan(
                    rec.get("rotational_stiffness_nm_per_deg")):
                noted = True
                cells.append(f"<td>{e(STIFFNESS_UNDER_MOMENT)}</td>")
                continue
            if c == "rotational_stiffness_nm_per_deg" and _is_nan(v) and held[i] and _is_nan(
                    rec.get("stiffness_n_per_mm", math.nan)):
                lig_noted = True
                cells.append(f"<td>{e(ROTATION_WITH_LIGAMENTS)}</td>")
                continue
            if c in ("factor_of_risk", "factor_of_risk_pistoia") and isinstance(v, float) \
                    and v > 1.0:
                kind = "risk"
            sign = BOUNDED[c] + " " if c in marked and marked[c][i] and not _is_nan(v) else ""
            cells.append(f"<td{f' class={kind}' if kind else ''}>{e(sign + format_value(v))}"
                         "</td>")
        rows.append(f"<tr{cls}>{''.join(cells)}</tr>")
    note = f"<p>{e(STIFFNESS_NOTE)}</p>" if noted else ""
    note += f"<p>{e(LIGAMENT_NOTE)}</p>" if lig_noted else ""
    note += _small_strain_note(full)
    if any(m.any() for m in marked.values()):
        note += f"<p>{e('≥ and ≤: ' + BOUND_WHY)} (pushover_peak_reached = 0 in summary.csv).</p>"
    return f"<table><tr>{head}</tr>{''.join(rows)}</table>{note}"


def _small_strain_note(full) -> str:
    """The note under the table where runs turn a disc beyond small strain
    (``disc_rotation_deg`` over :data:`fem.metrics.SMALL_ROTATION_DEG`), else ""."""
    import pandas as pd

    from ..metrics import SMALL_ROTATION_DEG

    if "disc_rotation_deg" not in full.columns:
        return ""
    turn = pd.to_numeric(full["disc_rotation_deg"], errors="coerce")
    beyond = full.loc[turn > SMALL_ROTATION_DEG, "run_id"].unique()
    if not len(beyond):
        return ""
    with_ligaments = ("ligaments" in full.columns
                      and (full.loc[turn > SMALL_ROTATION_DEG, "ligaments"] == "yes").all())
    held = ("no facets: posterior ligaments alone hold it" if with_ligaments else
            "no facets, and no ligaments: ligaments = no, or a tet10 mesh, which has none")
    return "<p>" + html.escape(
        f"{len(beyond)} of {full['run_id'].nunique()} runs turn a disc beyond small strain "
        f"(disc_rotation_deg above {SMALL_ROTATION_DEG:.1f}°, up to {turn.max():.0f}°): their "
        "displacements and deformed shapes are not physical, and a segment that flexible in "
        f"bending is not a spine's ({held}); stresses, pressures and strengths "
        "are the linear answer's. docs/validation.md, \"A segment in bending\".") + "</p>"


def _is_nan(v) -> bool:
    return v is None or (isinstance(v, (float, np.floating)) and math.isnan(v))
