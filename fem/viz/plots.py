"""Study plots (matplotlib): metrics against cement volume per procedure, factor of risk per level.

Both functions take the table of :meth:`fem.study.Study.results` (one row per run and level) and
return a :class:`matplotlib.figure.Figure` built without pyplot, so nothing depends on a display
or on pyplot's global state; the caller saves it (``fig.savefig("x.png")``) or shows it.
Units: N, mm, MPa, mL; the factor of risk is load / strength (dimensionless).

Runs are told apart by their procedure and by every other study parameter that varies among
them (e.g. ``bmd``), so a study with a grid over such a parameter gets one line (or bar) per
value instead of a zig-zag through them.
"""

from __future__ import annotations

import math
import textwrap

import numpy as np

from ..errors import ModelError

#: axis labels of the metrics that can be plotted (units in brackets)
METRIC_LABELS = {
    "stiffness_n_per_mm": "stiffness (N/mm)",
    "rotational_stiffness_nm_per_deg": "rotational stiffness (N m/deg)",
    "strength_n": "strength (N)",
    "strength_pistoia_n": "strength, Pistoia (N)",
    "strength_pushover_n": "strength, pushover (N)",
    "strength_strain_n": "strength, principal strain (N)",
    "factor_of_risk": "factor of risk Φ = load / strength (-)",
    "factor_of_risk_pistoia": "factor of risk Φ, Pistoia (-)",
    "factor_of_risk_pushover": "factor of risk Φ, pushover (-)",
    "factor_of_risk_strain": "factor of risk Φ, principal strain (-)",
    "endplate_bulge_max_mm": "larger endplate bulge (mm)",
    "endplate_bulge_mm": "endplate bulge (mm)",
    "disc_pressure_mpa": "disc pressure (MPa)",
    "wedge_angle_deg": "wedge angle (deg)",
}
X_LABELS = {"cement_volume_ml": "cement volume (mL)", "balloon_ml": "balloon volume (mL)",
            "bmd": "trabecular BMD (mg/cm³)", "height_restoration": "height restored (-)",
            "tip_depth": "needle tip depth (-)"}
#: states without cement, drawn as horizontal reference lines
REFERENCES = ("intact", "fractured")
CEMENTED = ("pvp", "pkp")
COLOURS = {"pvp": "tab:blue", "pkp": "tab:orange", "intact": "0.35", "fractured": "tab:red"}
REF_STYLES = {"intact": "--", "fractured": ":"}
#: what tells apart the lines of one procedure (or one reference state) at other parameters
MARKERS = ("o", "s", "^", "D", "v", "P")
LINE_STYLES = ("-", "--", "-.", ":", (0, (5, 1)), (0, (1, 1)))
REF_EXTRA_STYLES = ("-.", (0, (5, 1)), (0, (3, 1, 1, 1, 1, 1)), (0, (1, 3)))
#: parameters that never tell runs apart in a plot (how a run was computed, not what)
_HOW = ("backend", "solver")


def _table(df):
    """The results without repeated column names (the store's and the spec's ``solver``)."""
    if not len(df):
        raise ModelError("the results table is empty: no finished runs to plot")
    missing = [c for c in ("run_id", "procedure", "level", "load_case") if c not in df.columns]
    if missing:
        raise ModelError(f"the results table lacks column(s) {', '.join(missing)}: pass "
                         "fem.study.Study(folder).results()")
    return df.loc[:, ~df.columns.duplicated()]


def _params():
    from ..study import PARAMETERS

    return list(PARAMETERS)


def varying(df, exclude=()) -> list[str]:
    """Study parameters (other than ``exclude`` and how runs were computed) whose value differs
    between the runs of ``df``."""
    runs = df.drop_duplicates("run_id")
    return [p for p in _params() if p in runs.columns and p not in exclude and p not in _HOW
            and runs[p].astype(str).nunique() > 1]


def treated_levels(df) -> list[str]:
    """The levels augmented in the study (else the fractured ones), in table order."""
    df = _table(df)
    rows = df[df["procedure"].isin(CEMENTED)]
    if not len(rows):
        rows = df[df["procedure"] == "fractured"]
    def name(v):  # "" in the store, NaN in a summary.csv read back by pandas: no level
        return str(v) if isinstance(v, str) and v else ""

    out = []
    for _, r in rows.drop_duplicates("run_id").iterrows():
        lv = name(r.get("treated_level")) or name(r.get("fracture_level"))
        if lv and lv not in out:
            out.append(lv)
    return out


def select(present: list, wanted, what: str, where: str = "the results") -> list:
    """``wanted`` (None: all of ``present``; one value; or a list) checked against ``present``:
    a value not there is a ModelError naming it, ``what`` it is and what there is."""
    chosen = list(present) if wanted is None else (
        [wanted] if isinstance(wanted, str) else list(wanted))
    unknown = [c for c in chosen if c not in present]
    if unknown:
        raise ModelError(f"{what}(s) {', '.join(map(repr, unknown))} are not in {where} "
                         f"({what}s: {', '.join(map(repr, present))})")
    return chosen


def _levels(df, level) -> list[str]:
    present = list(dict.fromkeys(df["level"]))
    if level is None:
        return [lv for lv in treated_levels(df) if lv in present] or present
    return select(present, None if level == "all" else level, "level")


def _load_cases(df, load_case) -> list[str]:
    return select(list(dict.fromkeys(df["load_case"])), load_case, "load case")


#: the longest parameter value a legend label shows (longer ones are cut, a path shows its name)
LABEL_CHARS = 24


def _label(value, key: str) -> str:
    if key == "procedure":
        return str(value).upper() if value in CEMENTED else str(value)
    if isinstance(value, float):
        value = f"{value:g}"
    value = str(value)
    if "/" in value.rstrip("/"):  # a path (a CT image, its masks): its name
        value = value.rstrip("/").rsplit("/", 1)[-1]
    if len(value) > LABEL_CHARS:
        value = value[:LABEL_CHARS - 1] + "…"
    return f"{key}={value}"


def _wrap(label: str) -> str:
    """A legend label a few parameters to a line: a study that varies many keeps its legend
    narrow enough for the panel."""
    return textwrap.fill(label, width=2 * LABEL_CHARS + 8, break_long_words=False,
                         break_on_hyphens=False)


def _group_label(keys, values) -> str:
    return _wrap(", ".join(_label(v, k) for k, v in zip(keys, values)))


def state_label(row, extra=()) -> str:
    """A run's short name: "intact", "fractured", "PVP 4 mL", "PKP 4 mL", then ``extra``
    parameters (``"bmd=50"``)."""
    proc = row["procedure"]
    name = f"{proc.upper()} {row['cement_volume_ml']:g} mL" if proc in CEMENTED else str(proc)
    return _wrap(", ".join([name] + [_label(row[k], k) for k in extra]))


#: the metrics whose method a row's ``strength_method`` names (fem.metrics.headline_strength),
#: and the column of each method's own value
HEADLINE_METRICS = {"strength_n": "strength_{}_n", "factor_of_risk": "factor_of_risk_{}"}
METHOD_NAMES = {"pushover": "pushover", "pistoia": "Pistoia"}
MIXED_LABELS = {"strength_n": "strength, pushover or Pistoia (N)",
                "factor_of_risk": "factor of risk Φ = load / strength, pushover or Pistoia (-)"}


#: the headline metrics that a pushover stopped before its curve fell leaves a bound, not a value:
#: the force where the curve ended (its displacement cap, or its last allowed step: the canonical
#: intact and fractured L2 under standing load use all 60) is a lower bound on the strength, so
#: the factor of risk is an upper bound (the sign a table writes before such a value)
BOUNDED = {"strength_n": "≥", "factor_of_risk": "≤", "strength_pushover_n": "≥",
           "factor_of_risk_pushover": "≤"}
BOUND_WHY = ("the pushover stopped (at its displacement cap or after its last allowed step) "
             "before its curve fell, so the strength there is a lower bound and Φ an upper "
             "bound")
#: the legend entries of a bound in the plots (the report's table and captions say BOUND_WHY)
BOUND_LABEL = "open marker, (≥)/(≤): a bound, no peak reached"
BARS_LABEL = "dotted: Φ an upper bound, no peak reached"


def bounds(rows, metric: str) -> np.ndarray:
    """Which rows' ``metric`` is a bound, not a value (:data:`BOUNDED`): a strength (or factor
    of risk) from a pushover whose curve had not fallen when it stopped
    (``pushover_peak_reached`` 0). All False where the table cannot say (no such column: an
    older store, or a study without pushovers)."""
    n = len(rows)
    if metric not in BOUNDED or "pushover_peak_reached" not in rows.columns:
        return np.zeros(n, dtype=bool)
    capped = rows["pushover_peak_reached"].to_numpy(float) == 0.0
    if metric in HEADLINE_METRICS:  # the headline is the pushover's only where it says so
        if "strength_method" not in rows.columns:
            return np.zeros(n, dtype=bool)
        capped &= (rows["strength_method"] == "pushover").to_numpy()
    return capped


def with_bounds(df, full=None, fmt=str):
    """``df`` with each strength or factor of risk that is a bound (:func:`bounds`, read from
    ``full``: the same rows with every column, default ``df``) written as text, "≥ " or "≤ "
    before ``fmt(value)``, the other values of those columns as ``fmt`` writes them; ``df``
    itself where no value is a bound."""
    full = df if full is None else full
    out = df
    for col in (c for c in BOUNDED if c in df.columns):
        b = bounds(full, col) & df[col].notna().to_numpy()
        if b.any():
            out = df.copy() if out is df else out
            out[col] = [f"{BOUNDED[col]} {fmt(v)}" if m else
                        ("NaN" if v is None or v != v else fmt(v)) for v, m in zip(df[col], b)]
    return out


def _methods(rows, metric: str) -> list[str]:
    """The ``strength_method`` values of the rows where ``metric`` is a number (none where it
    is not a headline metric or the table has no such column: an older store)."""
    if metric not in HEADLINE_METRICS or "strength_method" not in rows.columns:
        return []
    ok = np.isfinite(rows[metric].to_numpy(float))
    return list(dict.fromkeys(rows["strength_method"][ok].dropna()))


def strength_method(rows, metric: str) -> str:
    """How the headline strength of ``rows`` was found, for a panel's title or a level's tick:
    "pushover", "Pistoia", "pushover and Pistoia" (runs differ), or ""."""
    return " and ".join(METHOD_NAMES.get(m, str(m)) for m in _methods(rows, metric))


def metric_label(rows, metric: str) -> str:
    """The axis label of ``metric`` (units in brackets); a headline strength or factor of risk
    names its method ("strength, pushover (N)") or says the rows mix two."""
    found = _methods(rows, metric)
    if len(found) == 1:
        return METRIC_LABELS.get(HEADLINE_METRICS[metric].format(found[0]), METRIC_LABELS[metric])
    if found:
        return MIXED_LABELS[metric]
    return METRIC_LABELS.get(metric, metric)


#: a legend of more text lines than this goes beside the panels, not over the last one
LEGEND_LINES_INSIDE = 12


def _legend(fig, ax, handles, labels, title):
    """The legend in the last panel, or, where its labels run to many lines (a study that
    varies many parameters), beside the panels, so that it does not crowd them out (the
    figure's ``title`` then stands over the panels, left of it)."""
    lines = sum(str(t).count("\n") + 1 for t in labels)
    if lines <= LEGEND_LINES_INSIDE:
        return ax.legend(handles, labels, fontsize=7)
    # the figure widens by the legend's width (7 pt text: about 0.055 in a character, plus
    # the handles), so the panels keep theirs
    chars = max(len(line) for t in labels for line in str(t).split("\n"))
    w, h = fig.get_size_inches()
    fig.set_size_inches(w + 0.7 + 0.055 * chars, max(h, 0.8 + 0.17 * lines))
    title.set_x(0.5 * w / fig.get_size_inches()[0])
    return fig.legend(handles, labels, fontsize=7, loc="outside right upper")


def _grid(n_rows, n_cols, sharey):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(0.5 + 3.6 * n_cols, 0.6 + 3.0 * n_rows), layout="constrained")
    axes = fig.subplots(n_rows, n_cols, squeeze=False, sharey=sharey)
    return fig, axes


def study_curves(df, metric: str = "factor_of_risk", level=None, x: str = "cement_volume_ml",
                 by: str = "procedure", load_case=None):
    """``metric`` against ``x`` (default the cement volume, mL), one line per value of ``by``
    (default the procedure: PVP, PKP) among the cemented runs, with the intact and fractured
    runs as horizontal reference lines.

    ``level``: None (the treated level), ``"all"`` (one panel per level), a level or a list;
    ``load_case``: None (one row of panels per load case in the table), a name or a list.
    Lines are labelled "PVP", "PKP" (with any other varying parameter: "PVP, bmd=50"), reference
    lines "intact" and "fractured"; points with a NaN metric are left out. A strength or factor
    of risk that is a bound (:func:`bounds`) has an open marker, or "(≥)" / "(≤)" after its
    reference line's label, and the legend says what that means.
    """
    df = _table(df)
    if metric not in df.columns:
        raise ModelError(f"unknown metric {metric!r}; plot one of "
                         f"{', '.join(c for c in METRIC_LABELS if c in df.columns)}")
    if x not in df.columns or by not in df.columns:
        raise ModelError(f"the results table has no column {x if x not in df.columns else by!r}")
    levels, cases = _levels(df, level), _load_cases(df, load_case)
    cemented = df[df["procedure"].isin(CEMENTED)]
    keys = [by] + varying(cemented, exclude=(x, by, "procedure", "load_case"))
    ref_keys = varying(df[df["procedure"].isin(REFERENCES)],
                       exclude=(x, by, "procedure", "load_case", "cement_volume_ml",
                                "approach", "cement", "balloon_ml", "height_restoration",
                                "tip_depth", "seed", "treated_level"))
    shown = df[df["level"].isin(levels) & df["load_case"].isin(cases)]
    label, mixed = metric_label(shown, metric), len(_methods(shown, metric)) > 1
    fig, axes = _grid(len(cases), len(levels), sharey="row")
    # one style per series over the whole figure, so that one legend names every panel's lines
    # (each panel had counted its own from the first style, and the legend, the last panel's,
    # named the lines of a panel showing other series, such as another fracture level, wrongly)
    style, count = {}, {}
    for values, g in cemented.groupby(keys, sort=False, dropna=False):
        proc, name = g["procedure"].iloc[0], _group_label(keys, values)
        if name not in style:
            style[name] = count.get(proc, 0)
            count[proc] = style[name] + 1
    ref_style = {}
    for proc in REFERENCES:
        refs = df[df["procedure"] == proc]
        for values, _ in (refs.groupby(ref_keys, sort=False) if ref_keys else [((), refs)]):
            values = values if isinstance(values, tuple) else (values,)
            ref_style.setdefault((proc, values), sum(1 for p, _ in ref_style if p == proc))
    bounded = False
    for i, case in enumerate(cases):
        for j, lv in enumerate(levels):
            ax = axes[i, j]
            here = df[(df["level"] == lv) & (df["load_case"] == case)]
            lines = here[here["procedure"].isin(CEMENTED)]
            for values, g in lines.groupby(keys, sort=False, dropna=False):
                g = g.sort_values(x)
                ok = np.isfinite(g[metric].to_numpy(float))
                proc = g["procedure"].iloc[0]
                k = style[_group_label(keys, values)]
                xs, ys = g[x].to_numpy(float)[ok], g[metric].to_numpy(float)[ok]
                (ln,) = ax.plot(xs, ys, marker=MARKERS[k % len(MARKERS)],
                                ls=LINE_STYLES[k % len(LINE_STYLES)],
                                color=COLOURS.get(proc) if by == "procedure" else None,
                                label=_group_label(keys, values))
                b = bounds(g, metric)[ok]
                if b.any():  # a bound, not a value: the marker left open
                    bounded = True
                    ax.plot(xs[b], ys[b], ls="none", marker=ln.get_marker(), mfc="white",
                            mec=ln.get_color(), zorder=ln.get_zorder() + 1)
            for proc in REFERENCES:
                refs = here[here["procedure"] == proc]
                groups = refs.groupby(ref_keys, sort=False) if ref_keys else [((), refs)]
                for values, g in groups:
                    values = values if isinstance(values, tuple) else (values,)
                    k = ref_style[(proc, values)]
                    ls = REF_STYLES[proc] if k == 0 else REF_EXTRA_STYLES[
                        (k - 1) % len(REF_EXTRA_STYLES)]
                    for v, b in zip(g[metric].to_numpy(float)[:1], bounds(g, metric)[:1]):
                        if math.isfinite(v):
                            bounded |= bool(b)
                            ax.axhline(v, color=COLOURS[proc], ls=ls, lw=1.2,
                                       label=_wrap(", ".join(
                                           [proc] + [_label(a, key) for key, a in
                                                     zip(ref_keys, values)])
                                           + (f" ({BOUNDED[metric]})" if b else "")))
            if metric.startswith("factor_of_risk"):
                ax.axhline(1.0, color="k", lw=0.8, alpha=0.6, label="Φ = 1 (fracture)")
            # panels whose strengths were found differently say how (pushover at the treated
            # level, Pistoia elsewhere, in a study with strength_levels = "treated")
            how = strength_method(here, metric) if mixed else ""
            ax.set_title(f"{lv}, {case}" + (f" ({how})" if how else ""), fontsize=10)
            ax.set_xlabel(X_LABELS.get(x, x))
            if j == 0:
                ax.set_ylabel(label)
            ax.grid(alpha=0.3)
    named = {}  # every panel's series, each once (the styles are the figure's)
    for ax in axes.flat:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            named.setdefault(lab, h)
    handles, labels = list(named.values()), list(named)
    if bounded:  # say what an open marker means, in the legend
        from matplotlib.lines import Line2D

        handles.append(Line2D([], [], ls="none", marker="o", mfc="white", mec="0.3"))
        labels.append(BOUND_LABEL)
    title = fig.suptitle(f"{label} against {X_LABELS.get(x, x)}", fontsize=11)
    _legend(fig, axes[0, -1], handles, labels, title)
    return fig


def risk_bars(df, runs=None, load_case=None, *, levels=None):
    """Factor of risk Φ per level as grouped bars: one group per level (cranial to caudal), one
    bar per run, with the line Φ = 1 (predicted fracture).

    ``runs``: None (every run of the load case, in table order), a list of run ids, or a
    mapping label -> run id; by default bars are labelled by state ("intact", "PVP 4 mL", ...).
    ``load_case``: None (one panel per load case in the table), a name or a list.
    Bars with a NaN factor of risk are drawn with zero height and a hatched edge; bars whose
    factor of risk is an upper bound (:func:`bounds`) are dotted, and the legend says so.
    """
    df = _table(df)
    if isinstance(runs, dict):
        labels, ids = list(runs), list(runs.values())
    elif runs is not None:
        ids, labels = list(runs), None
    else:
        ids, labels = None, None
    if ids is not None:
        unknown = [r for r in ids if r not in set(df["run_id"])]
        if unknown:
            raise ModelError(f"run(s) {', '.join(unknown)} are not in the results")
        df = df[df["run_id"].isin(ids)]
    cases = _load_cases(df, load_case)
    lv_order = _levels(df, "all") if levels is None else _levels(df, levels)
    fig, axes = _grid(1, len(cases), sharey=True)
    bounded = False
    for k, case in enumerate(cases):
        ax = axes[0, k]
        here = df[df["load_case"] == case]
        order = ids if ids is not None else list(dict.fromkeys(here["run_id"]))
        order = [r for r in order if r in set(here["run_id"])]
        if labels is not None:
            names = dict(zip(ids, labels))
        else:
            extra = varying(here, exclude=("procedure", "cement_volume_ml", "load_case"))
            names = {r: state_label(here[here["run_id"] == r].iloc[0], extra) for r in order}
        width = 0.8 / max(len(order), 1)
        pos = np.arange(len(lv_order), dtype=float)
        for b, rid in enumerate(order):
            rows = here[here["run_id"] == rid].set_index("level")
            phi = np.array([rows["factor_of_risk"].get(lv, np.nan) for lv in lv_order], float)
            bars = ax.bar(pos + (b - (len(order) - 1) / 2) * width, np.nan_to_num(phi), width,
                          label=names[rid], edgecolor="k", linewidth=0.5)
            capped = bounds(rows.reindex(lv_order), "factor_of_risk")
            for bar, v, b in zip(bars, phi, capped):
                if not math.isfinite(v):
                    bar.set_hatch("//")
                elif b:  # an upper bound: the pushover stopped before its curve fell
                    bar.set_hatch("..")
                    bounded = True
        ax.axhline(1.0, color="k", lw=1.0, ls="--", label="Φ = 1 (fracture)")
        # where levels' strengths were found differently (a pushover at the treated level, the
        # Pistoia proxy elsewhere: strength_levels = "treated"), each tick says how
        shown = here[here["run_id"].isin(order) & here["level"].isin(lv_order)]
        how = ([strength_method(shown[shown["level"] == lv], "factor_of_risk")
                for lv in lv_order] if len(_methods(shown, "factor_of_risk")) > 1
               else [""] * len(lv_order))
        ax.set_xticks(pos, [f"{lv}\n{h}" if h else lv for lv, h in zip(lv_order, how)])
        ax.set_xlabel("level")
        if k == 0:
            ax.set_ylabel(metric_label(df[df["level"].isin(lv_order)], "factor_of_risk"))
        ax.set_title(case, fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    handles, labels = axes[0, -1].get_legend_handles_labels()
    if bounded:  # say what a dotted bar means, in the legend
        from matplotlib.patches import Patch

        handles.append(Patch(facecolor="white", edgecolor="0.3", hatch=".."))
        labels.append(BARS_LABEL)
    title = fig.suptitle("factor of risk per level", fontsize=11)
    _legend(fig, axes[0, -1], handles, labels, title)
    return fig


#: colours of the pushover curves of runs with cement (the intact and fractured ones take
#: :data:`COLOURS`), none of them theirs
CURVE_COLOURS = ("tab:blue", "tab:orange", "tab:green", "tab:purple", "tab:brown", "tab:pink",
                 "tab:olive", "tab:cyan")
#: the marker of where a pushover's strength was read (``strength_pushover_by``,
#: :data:`fem.metrics.STRENGTH_READINGS`), and what the legend says of it
READING_MARKERS = {"fall": ("v", "a fall of 2 %: its running maximum"),
                   "offset": ("X", "the offset yield (0.2 % of the height)"),
                   "plateau": ("s", "a plateau (a limit load)"),
                   "cap": (">", "the cap, still rising (a lower bound)")}


def strength_point(curve, strength: float) -> float:
    """The deformation (mm) at which a pushover ``curve`` ((n, 2): deformation, force) first
    reaches ``strength`` (N): :func:`fem.nonlinear_result.reached_at`'s. NaN where it never
    does."""
    from ..nonlinear_result import reached_at

    return reached_at(curve, strength)[0]


def pushover_curves(df, folder, load_case=None):
    """The pushover curves of a study's pushed levels (``runs/<run_id>_curve.csv`` in the study
    ``folder``, written with its VTU files): force (N) against the level's deformation (mm: its
    shortening, plus rotation x moment / force under a combined load), one panel per load case
    (rows) and pushed level (columns), one line per run, and a marker where its strength
    (``strength_pushover_n``) was read, shaped by ``strength_pushover_by``
    (:data:`READING_MARKERS`). None where no pushed row has its curve."""
    from pathlib import Path

    import pandas as pd

    df = _table(df)
    if "strength_pushover_n" not in df.columns:
        return None
    pushed = df[np.isfinite(df["strength_pushover_n"].to_numpy(float))]
    curves = {}
    for rid in dict.fromkeys(pushed["run_id"]):
        path = Path(folder) / "runs" / f"{rid}_curve.csv"
        if path.is_file():
            curves[rid] = pd.read_csv(path)
    pushed = pushed[pushed["run_id"].isin(list(curves))]
    if not len(pushed):
        return None
    cases = _load_cases(pushed, load_case)
    levels = list(dict.fromkeys(pushed["level"]))
    extra = varying(pushed, exclude=("procedure", "cement_volume_ml", "load_case"))
    fig, axes = _grid(len(cases), len(levels), sharey="row")
    readings, colour = set(), {}
    for i, case in enumerate(cases):
        for j, lv in enumerate(levels):
            ax = axes[i, j]
            rows = pushed[(pushed["load_case"] == case) & (pushed["level"] == lv)]
            for _, r in rows.iterrows():
                c = curves[r["run_id"]]
                c = c[c["level"] == lv][["displacement_mm", "force_n"]].to_numpy(float)
                name = state_label(r, extra)
                if name not in colour:  # one colour per run across the panels
                    n = sum(1 for v in colour.values() if v in CURVE_COLOURS)
                    colour[name] = (COLOURS[r["procedure"]] if r["procedure"] in REFERENCES
                                    else CURVE_COLOURS[n % len(CURVE_COLOURS)])
                (ln,) = ax.plot(c[:, 0], c[:, 1], lw=1.2, label=name, color=colour[name])
                by = r.get("strength_pushover_by")
                if isinstance(by, str) and by in READING_MARKERS:
                    s = float(r["strength_pushover_n"])
                    ax.plot([strength_point(c, s)], [s], ls="none", color=ln.get_color(),
                            marker=READING_MARKERS[by][0], ms=8, mec="k", mew=0.6)
                    readings.add(by)
            ax.set_title(f"{lv}, {case}", fontsize=10)
            ax.set_xlabel(f"deformation of {lv} (mm)")
            if j == 0:
                ax.set_ylabel("force (N)")
            ax.grid(alpha=0.3)
    from matplotlib.lines import Line2D

    seen = {}
    for ax in axes.ravel():  # every run once, whichever panels it is in
        for h, lab in zip(*ax.get_legend_handles_labels()):
            seen.setdefault(lab, h)
    labels, handles = list(seen), list(seen.values())
    for by in READING_MARKERS:
        if by in readings:
            handles.append(Line2D([], [], ls="none", marker=READING_MARKERS[by][0], color="0.5",
                                  mec="k", mew=0.6, ms=8))
            labels.append(f"strength at {READING_MARKERS[by][1]}")
    title = fig.suptitle("pushover curves, strengths marked", fontsize=11)
    w, h = fig.get_size_inches()
    fig.set_size_inches(w + 2.6, h)
    title.set_x(0.5 * w / (w + 2.6))  # over the panels, not the legend
    fig.legend(handles, labels, fontsize=7, loc="outside right upper")  # off the curves
    return fig
