"""Pictures of how sure a sampled study's predictions are (:mod:`fem.study.uq`).

Each function takes the :class:`fem.study.uq.Uncertainty` of ``Study(folder).uncertainty()``
and returns a :class:`matplotlib.figure.Figure` built without pyplot (as :mod:`fem.viz.plots`):

* :func:`uq_distributions`: each prediction's values over the sampled patients, one panel per
  prediction, arms side by side at each site (violin, the patients as dots, the mean and the
  5-95 % interval);
* :func:`uq_sensitivity`: one prediction's Sobol indices per input (S1, and ST where the design
  gives it), with their 95 % bootstrap intervals;
* :func:`uq_fracture`: P(fracture) = P(Φ > 1) per level and arm, with its 95 % Wilson interval;
* :func:`uq_convergence`: the mean and the 5-95 % interval from the first 8, 16, 32, ...
  samples: whether the sample was large enough.

Every prediction is a ratio (dimensionless, "(-)"). An Uncertainty with nothing to draw (no
complete sampled patient, no finite index) is refused with a :class:`fem.errors.ModelError`
that says why, so the caller (the report) can say so instead of drawing an empty frame.
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import ModelError
from .plots import COLOURS, select

#: axis labels of the predictions (all dimensionless)
PREDICTION_LABELS = {
    "strength_restoration": "strength / reference arm's (-)",
    "stiffness_restoration": "axial stiffness / reference arm's (-)",
    "factor_of_risk": "factor of risk Φ = load / strength (-)",
    "disc_pressure_change": "disc pressure / reference arm's − 1 (-)",
    "endplate_bulge_change": "endplate bulge / reference arm's − 1 (-)",
}
#: panel titles of the predictions
PREDICTION_TITLES = {
    "strength_restoration": "strength restoration",
    "stiffness_restoration": "stiffness restoration",
    "factor_of_risk": "factor of risk",
    "disc_pressure_change": "adjacent disc pressure change",
    "endplate_bulge_change": "adjacent endplate bulge change",
}
#: the value each prediction is read against: (value, what it means)
PREDICTION_REFERENCES = {
    "strength_restoration": (1.0, "= reference"),
    "stiffness_restoration": (1.0, "= reference"),
    "factor_of_risk": (1.0, "Φ = 1 (fracture)"),
    "disc_pressure_change": (0.0, "no change"),
    "endplate_bulge_change": (0.0, "no change"),
}
#: the order of the arms by procedure (the reference arm comes first in any case)
ARM_ORDER = ("intact", "fractured", "pvp", "pkp")
#: colours of arms other than the ones plots.COLOURS names
ARM_COLOURS = ("tab:green", "tab:purple", "tab:brown", "tab:pink", "tab:olive", "tab:cyan")
#: panels per row of a figure with several
PANEL_COLUMNS = 3


# ---------------------------------------------------------------------- order and names

def _check(u, table: str = "values"):
    """``u``'s table, refused with a clear error when it has no rows."""
    df = getattr(u, table, None)
    if df is None or not len(df):
        why = (f"{u.complete} of {u.samples} sampled patients have every run done"
               if hasattr(u, "complete") else "no table")
        raise ModelError(f"nothing to draw: the uncertainty's {table} table is empty ({why}); "
                         "run the study (vfem study) until some sampled patient is complete")
    return df


def prediction_names(u) -> list[str]:
    """The predictions ``u`` has values of, in :data:`fem.study.uq.PREDICTIONS` order."""
    from ..study.uq import PREDICTIONS

    have = set(_check(u)["prediction"])
    return [p for p in PREDICTIONS if p in have] + sorted(have - set(PREDICTIONS))


def arm_order(u) -> list[str]:
    """The arms: the reference arm first, then by procedure (:data:`ARM_ORDER`; an arm is
    named by its procedure, "pvp" or "pvp (cement_volume_ml=4.0)"), then as in the table."""
    arms = list(dict.fromkeys(_check(u)["arm"]))

    def key(arm):
        proc = arm.split(" ")[0]
        return (arm != u.reference, ARM_ORDER.index(proc) if proc in ARM_ORDER
                else len(ARM_ORDER))

    return sorted(arms, key=key)


def arm_colours(arms) -> dict:
    """arm -> colour: the procedures' colours of :mod:`fem.viz.plots`, others in turn."""
    out, k = {}, 0
    for a in arms:
        if a in COLOURS:
            out[a] = COLOURS[a]
        else:
            out[a] = ARM_COLOURS[k % len(ARM_COLOURS)]
            k += 1
    return out


def arm_label(arm: str) -> str:
    return arm.upper() if arm in ("pvp", "pkp") else arm


def site_order(sites) -> list[str]:
    """Sites (levels "L2", discs "L1-L2") cranial to caudal; unknown names last, as given."""
    from ..meshes.vertebra import ORDER

    def key(s):
        first = str(s).split("-")[0].strip().upper()
        return (ORDER.index(first) if first in ORDER else len(ORDER), "-" in str(s))

    return sorted(dict.fromkeys(sites), key=key)


def conditions(u) -> list[str]:
    """The grid points (``condition``; "" for a study without a grid), in table order."""
    return list(dict.fromkeys(_check(u)["condition"]))


def _conditions(u, condition) -> list[str]:
    return select(conditions(u), condition, "condition", "the uncertainty")


def _title(*parts) -> str:
    return ", ".join(p for p in parts if p)


def treated_sites(u) -> list[str]:
    """The treated (else fractured) level(s) (``u.treated``); none where the study had no
    reference arm (then no prediction is read at them)."""
    _check(u)
    return list(u.treated) if u.reference is not None else []


def _panels(n: int, *, width=3.8, height=3.2):
    from matplotlib.figure import Figure

    cols = min(n, PANEL_COLUMNS)
    rows = math.ceil(n / cols)
    fig = Figure(figsize=(0.5 + width * cols, 0.7 + height * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, list(axes.flat[:n])


def _reference_line(ax, prediction, *, vertical=False):
    ref = PREDICTION_REFERENCES.get(prediction)
    if ref is None:
        return
    line = ax.axvline if vertical else ax.axhline
    line(ref[0], color="k", lw=0.8, ls="--", alpha=0.6, label=ref[1])


# ---------------------------------------------------------------------- the figures

def uq_distributions(u, *, condition=None, predictions=None):
    """Each prediction's values over the sampled patients: one panel per prediction (and grid
    point), the sites along x (cranial to caudal), the arms side by side at each site.

    Each group is a violin of the values (where they spread), the patients as dots, the mean
    as a white diamond and the 5-95 % interval of :attr:`Uncertainty.summary` as a black bar;
    a dashed line marks the value the prediction is read against (restoration 1, change 0,
    Φ = 1). ``condition``: a grid point, a list, or None (all); ``predictions``: a subset of
    the predictions (default all that have values).
    """
    v = _check(u)
    preds = prediction_names(u) if predictions is None else list(predictions)
    unknown = [p for p in preds if p not in set(v["prediction"])]
    if unknown:
        raise ModelError(f"no values of {', '.join(unknown)} (the uncertainty has "
                         f"{', '.join(prediction_names(u))})")
    conds = _conditions(u, condition)
    arms = arm_order(u)
    colours = arm_colours(arms)
    summary = u.summary.set_index(["prediction", "arm", "condition", "site"])
    panels = [(c, p) for c in conds for p in preds
              if len(v[(v["condition"] == c) & (v["prediction"] == p)])]
    fig, axes = _panels(len(panels))
    rng = np.random.default_rng(0)  # the dots' jitter: the same picture every time
    for ax, (cond, pred) in zip(axes, panels):
        here = v[(v["condition"] == cond) & (v["prediction"] == pred)]
        sites = site_order(here["site"])
        present = [a for a in arms if a in set(here["arm"])]
        width = 0.8 / len(present)
        for j, arm in enumerate(present):
            for i, site in enumerate(sites):
                y = here[(here["arm"] == arm) & (here["site"] == site)]["value"].to_numpy(float)
                y = y[np.isfinite(y)]
                if not len(y):
                    continue
                x = i + (j - (len(present) - 1) / 2) * width
                if len(y) > 2 and np.ptp(y) > 0:
                    body = ax.violinplot(y, [x], widths=0.9 * width, showextrema=False)
                    for b in body["bodies"]:
                        b.set_facecolor(colours[arm])
                        b.set_alpha(0.3)
                ax.scatter(x + (rng.random(len(y)) - 0.5) * 0.35 * width, y, s=7,
                           color=colours[arm], alpha=0.7, lw=0, zorder=3)
                key = (pred, arm, cond, site)
                if key in summary.index:
                    s = summary.loc[key]
                    ax.vlines(x, s["q05"], s["q95"], color="k", lw=2.0, zorder=4)
                    ax.scatter([x], [s["mean"]], marker="D", s=22, color="white",
                               edgecolor="k", zorder=5)
        # one legend entry per arm and the markers' meaning
        for arm in present:
            ax.scatter([], [], color=colours[arm], label=arm_label(arm))
        ax.vlines([], 0, 0, color="k", lw=2.0, label="5-95 %")
        ax.scatter([], [], marker="D", color="white", edgecolor="k", label="mean")
        _reference_line(ax, pred)
        ax.set_xticks(range(len(sites)), sites)
        ax.set_xlim(-0.6, len(sites) - 0.4)
        ax.set_xlabel("level" if "-" not in "".join(sites) else "disc")
        ax.set_ylabel(PREDICTION_LABELS.get(pred, f"{pred} (-)"))
        n = here.groupby(["arm", "site"])["value"].count()
        ax.set_title(_title(PREDICTION_TITLES.get(pred, pred), cond,
                            f"n = {n.min()}" if n.min() == n.max() else
                            f"n = {n.min()}-{n.max()}"), fontsize=9)
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=7)
    import textwrap

    # the inputs can be many: wrapped to the figure's width (about 9 characters per inch)
    width = max(40, int(9 * fig.get_figwidth()))
    fig.suptitle(textwrap.fill(f"predictions over {u.complete} sampled patients ({u.design} "
                               f"design; inputs: {', '.join(u.inputs)})", width), fontsize=11)
    return fig


def sensitivity_predictions(u) -> list[str]:
    """The predictions with at least one finite first-order index."""
    s = u.sobol
    if s is None or not len(s):
        return []
    ok = s[np.isfinite(s["S1"].to_numpy(float))]
    have = set(ok["prediction"])
    return [p for p in prediction_names(u) if p in have]


def uq_sensitivity(u, prediction: str, *, condition=None, site=None):
    """The share of ``prediction``'s variance each input explains: horizontal bars of the
    first-order index S1 and, where the design gives it (Saltelli), the total index ST, with
    the 95 % bootstrap half-widths (``S1_conf``, ``ST_conf``) as error bars.

    One panel per arm, grid point and site with finite indices; ``site``: a site or a list
    (default: the treated level for the factor of risk, else every site of the prediction,
    which are the treated level or its neighbours). Refuses a prediction without a finite
    index (too few samples) with a :class:`~fem.errors.ModelError`.
    """
    _check(u)
    s = _check(u, "sobol")
    s = s[s["prediction"] == prediction]
    if not len(s):
        raise ModelError(f"no indices of {prediction!r} (the uncertainty has "
                         f"{', '.join(prediction_names(u))})")
    conds = _conditions(u, condition)
    s = s[s["condition"].isin(conds)]
    if site is None:
        treated = treated_sites(u)
        sites = [x for x in treated if x in set(s["site"])] if prediction == "factor_of_risk" \
            else []
        sites = sites or site_order(s["site"])
    else:
        sites = [site] if isinstance(site, str) else list(site)
        unknown = [x for x in sites if x not in set(s["site"])]
        if unknown:
            raise ModelError(f"site(s) {', '.join(unknown)} have no indices of {prediction} "
                             f"(sites: {', '.join(site_order(s['site']))})")
    s = s[s["site"].isin(sites)]
    finite = s[np.isfinite(s["S1"].to_numpy(float))]
    if not len(finite):
        raise ModelError(f"no finite Sobol index of {prediction}: too few complete samples "
                         f"({u.complete}) for the {u.design} design")
    arms = [a for a in arm_order(u) if a in set(finite["arm"])]
    panels = [(a, c, x) for c in conds for a in arms for x in site_order(finite["site"])
              if len(finite[(finite["arm"] == a) & (finite["condition"] == c)
                            & (finite["site"] == x)])]
    fig, axes = _panels(len(panels), width=3.6, height=0.9 + 0.45 * len(u.inputs))
    method, high = str(finite["method"].iloc[0]), 1.0
    for ax, (arm, cond, site_) in zip(axes, panels):
        g = s[(s["arm"] == arm) & (s["condition"] == cond) & (s["site"] == site_)]
        g = g.set_index("input").reindex(u.inputs)
        y = np.arange(len(g), dtype=float)
        total = np.isfinite(g["ST"].to_numpy(float)).any()
        h = 0.38 if total else 0.6
        s1 = g["S1"].to_numpy(float)
        ax.barh(y - (h / 2 if total else 0), np.nan_to_num(s1), h,
                xerr=np.nan_to_num(g["S1_conf"].to_numpy(float)), color="tab:blue",
                edgecolor="k", lw=0.5, capsize=2, label="S1 (first order)")
        high = max(high, np.nanmax(s1 + np.nan_to_num(g["S1_conf"].to_numpy(float))))
        if total:
            st = g["ST"].to_numpy(float)
            ax.barh(y + h / 2, np.nan_to_num(st), h,
                    xerr=np.nan_to_num(g["ST_conf"].to_numpy(float)), color="tab:orange",
                    edgecolor="k", lw=0.5, capsize=2, label="ST (total)")
            high = max(high, np.nanmax(st + np.nan_to_num(g["ST_conf"].to_numpy(float))))
        ax.set_yticks(y, list(g.index))
        ax.invert_yaxis()
        ax.axvline(0.0, color="k", lw=0.6)
        ax.set_xlabel("Sobol index: share of the variance (-)")
        n = int(g["n"].max())
        ax.set_title(_title(arm_label(arm), site_, cond, f"n = {n}"), fontsize=9)
        ax.grid(axis="x", alpha=0.3)
    fig.legend(*axes[0].get_legend_handles_labels(), loc="outside lower center",
               ncols=2, fontsize=8)
    for ax in axes:
        ax.set_xlim(min(0.0, float(np.nanmin(finite["S1"]))) - 0.05, high + 0.05)
    fig.suptitle(f"{PREDICTION_TITLES.get(prediction, prediction)}: sensitivity to the inputs; "
                 f"method: {method}; error bars: 95 % bootstrap interval", fontsize=10)
    return fig


def uq_fracture(u, *, condition=None):
    """P(fracture) = P(Φ > 1) per level (cranial to caudal) and arm, as grouped bars with the
    95 % Wilson interval (``p_fracture_low`` .. ``p_fracture_high``) as error bars: an
    estimate of 0 out of 16 still allows up to about 19 %. One panel per grid point."""
    _check(u)
    s = u.summary
    s = s[(s["prediction"] == "factor_of_risk") & np.isfinite(s["p_fracture"].to_numpy(float))]
    if not len(s):
        raise ModelError("no factor of risk in the uncertainty: nothing to say about "
                         "P(fracture)")
    conds = [c for c in _conditions(u, condition) if c in set(s["condition"])]
    arms = [a for a in arm_order(u) if a in set(s["arm"])]
    colours = arm_colours(arm_order(u))
    fig, axes = _panels(len(conds), width=max(3.8, 1.0 + 0.45 * len(arms) * s["site"].nunique()))
    for ax, cond in zip(axes, conds):
        here = s[s["condition"] == cond]
        levels = site_order(here["site"])
        width = 0.8 / len(arms)
        pos = np.arange(len(levels), dtype=float)
        for j, arm in enumerate(arms):
            g = here[here["arm"] == arm].set_index("site").reindex(levels)
            p = g["p_fracture"].to_numpy(float)
            lo, hi = g["p_fracture_low"].to_numpy(float), g["p_fracture_high"].to_numpy(float)
            err = np.vstack([np.nan_to_num(p - lo), np.nan_to_num(hi - p)])
            x = pos + (j - (len(arms) - 1) / 2) * width
            ax.bar(x, np.nan_to_num(p), width, yerr=err, capsize=3, color=colours[arm],
                   edgecolor="k", lw=0.5, label=arm_label(arm))
            # a bar of 0 % is invisible: each says its estimate, above its interval
            for xi, pi, top in zip(x, p, np.fmax(hi, p)):
                if math.isfinite(pi):
                    ax.annotate(f"{pi:.0%}", (xi, top), xytext=(0, 2),
                                textcoords="offset points", ha="center", va="bottom",
                                fontsize=6)
        ax.set_xticks(pos, levels)
        ax.set_ylim(0.0, 1.0)
        ax.set_xlabel("level")
        ax.set_ylabel("P(fracture) = P(Φ > 1) (-)")
        n = here["n"]
        ax.set_title(_title(cond, f"n = {n.min()}" if n.min() == n.max() else
                            f"n = {n.min()}-{n.max()}"), fontsize=9)
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle("probability of fracture per level (bars: 95 % Wilson interval)", fontsize=11)
    return fig


def uq_convergence(u, *, condition=None, predictions=None):
    """The mean (line) and the 5-95 % interval (band) of each prediction from the first 8, 16,
    32, ... sampled patients up to all of them: flat lines say the sample was large enough.
    One panel per prediction (and grid point), one line per arm and site; the factor of risk
    at the treated level only where the study has one."""
    _check(u)
    c = _check(u, "convergence")
    preds = [p for p in (prediction_names(u) if predictions is None else list(predictions))
             if p in set(c["prediction"])]
    conds = _conditions(u, condition)
    arms = arm_order(u)
    colours = arm_colours(arms)
    treated = treated_sites(u)
    c = c[np.isfinite(c["mean"].to_numpy(float))] if "mean" in c.columns else c.iloc[:0]
    panels = [(cd, p) for cd in conds for p in preds
              if len(c[(c["condition"] == cd) & (c["prediction"] == p)])]
    if not panels:
        raise ModelError("no convergence points in the uncertainty")
    fig, axes = _panels(len(panels))
    styles = ("-", "--", ":", "-.")
    for ax, (cond, pred) in zip(axes, panels):
        here = c[(c["condition"] == cond) & (c["prediction"] == pred)]
        sites = site_order(here["site"])
        if pred == "factor_of_risk" and any(x in sites for x in treated):
            sites = [x for x in sites if x in treated]
        for arm in [a for a in arms if a in set(here["arm"])]:
            for k, site in enumerate(sites):
                g = here[(here["arm"] == arm) & (here["site"] == site)].sort_values("n")
                if not len(g):
                    continue
                n = g["n"].to_numpy(float)
                ax.fill_between(n, g["q05"].to_numpy(float), g["q95"].to_numpy(float),
                                color=colours[arm], alpha=0.12, lw=0)
                ax.plot(n, g["mean"].to_numpy(float), marker="o", ms=3,
                        ls=styles[k % len(styles)], color=colours[arm],
                        label=_title(arm_label(arm), site if len(sites) > 1 else ""))
        _reference_line(ax, pred)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("sampled patients n (-)")
        ax.set_ylabel(PREDICTION_LABELS.get(pred, f"{pred} (-)"))
        ax.set_title(_title(PREDICTION_TITLES.get(pred, pred), cond,
                            sites[0] if len(sites) == 1 else ""), fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6)
    fig.suptitle("convergence: mean (line) and 5-95 % interval (band) from the first n samples",
                 fontsize=11)
    return fig
