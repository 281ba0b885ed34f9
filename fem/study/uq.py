"""How sure is a study's prediction: statistics of a sampled study (``[uncertain]``).

``Study(folder).uncertainty()`` (``vfem uq DIR``) reads the finished runs of a study whose spec
samples its inputs (:mod:`fem.study.uncertain`) and returns, for each headline prediction
(:data:`PREDICTIONS`), per arm (an entry of ``[[runs]]``), grid point and site (a level or a disc):

* ``summary``: n, mean, SD, the 5 / 50 / 95 % quantiles, a 95 % interval of the mean (normal
  approximation, SD / sqrt(n)) and, for the factor of risk, the probability of fracture
  P(factor of risk > 1) with its 95 % Wilson interval;
* ``comparisons``: for every two arms, the probability that the first beats the second, per
  sample (common random numbers: both arms saw the same sampled patient), with the 5-95 % range
  of the paired difference;
* ``sobol``: the share of the prediction's variance each input explains. With a Saltelli design,
  first-order and total Sobol indices (:func:`SALib.analyze.sobol.analyze`: Saltelli 2010 and
  Jansen estimators) with bootstrap 95 % intervals; with the other designs, the first-order index
  alone, from the given data (:func:`first_order`: the correlation ratio over equiprobable bins
  of each input, bias-corrected), also with bootstrap intervals. Totals need the Saltelli
  design;
* ``convergence``: the mean, SD, quantiles, P(fracture) and the indices (from 20 patients on) from the
  first 8, 16, 32, ... samples up to all of them: whether the sample was large enough;
* ``leaks``: for each augmented arm (procedure and volume), the probability that cement leaks
  out of the treated level, anywhere and by site ("posterior wall", "endplate into <disc>",
  "fracture cleft", ...), with its 95 % Wilson interval and the mean leaked volume.

The headline predictions, each computed within one sampled patient:

* ``strength_restoration``, ``stiffness_restoration``: the treated (else fractured) level's
  strength (``strength_n``: the spec's strength) and axial stiffness over the reference arm's
  (the ``intact`` arm of ``[[runs]]``, else the ``fractured`` one): 1 = fully restored;
* ``factor_of_risk``: each level's load over strength;
* ``disc_pressure_change``: the discs next to the treated level, pressure over the reference
  arm's minus 1;
* ``endplate_bulge_change``: the levels next to the treated one, endplate bulge
  (``endplate_bulge_max_mm``) over the reference arm's minus 1.

A sampled patient counts once every one of its runs is done; runs still pending or failed leave
it out (the count is reported), so the analysis can be repeated while a study runs or after it
resumes. For the Saltelli design the indices use the complete blocks of d + 2 samples only.
"""

from __future__ import annotations

import contextlib
import io
import math
import warnings
from dataclasses import dataclass, field

import numpy as np

from ..errors import ModelError
from .execute import run_record

#: prediction -> (what it is, unit, whether larger values are better)
PREDICTIONS = {
    "strength_restoration": ("treated level's strength / reference arm's", "", True),
    "stiffness_restoration": ("treated level's axial stiffness / reference arm's", "", True),
    "factor_of_risk": ("load / strength, per level", "", False),
    "disc_pressure_change": ("adjacent disc pressure / reference arm's - 1", "", False),
    "endplate_bulge_change": ("adjacent levels' endplate bulge / reference arm's - 1", "",
                              False),
}
#: the reference arms, in order of preference
REFERENCE_ARMS = ("intact", "fractured")
#: the first convergence point; then doubling up to all samples
FIRST_CONVERGENCE_N = 8
#: bootstrap resamples of the index intervals
BOOTSTRAP = 200


@dataclass
class Uncertainty:
    """The statistics of a sampled study (module docstring); tables are pandas DataFrames."""

    design: str
    inputs: list
    samples: int  # sampled patients the design has
    complete: int  # of them with every run done
    values: object  # long table: sample, arm, condition, prediction, site, value
    summary: object
    comparisons: object
    sobol: object
    convergence: object
    reference: str | None
    notes: list = field(default_factory=list)
    #: the arms in the order of the spec's [[runs]], and the treated (else fractured) level(s)
    arms: list = field(default_factory=list)
    treated: list = field(default_factory=list)
    #: arm, condition, site, n, leaks, p_leak (95 % Wilson interval p_low..p_high),
    #: mean_leak_ml: the probability that cement leaks, by site ("any": anywhere), per augmented
    #: arm (procedure and volume)
    leaks: object = None

    def write(self, folder) -> list:
        """Write each table as ``<folder>/<table>.csv`` (atomically); returns the paths."""
        from pathlib import Path

        from ..io.atomic import atomic_path

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        out = []
        for name in ("values", "summary", "comparisons", "sobol", "convergence", "leaks"):
            path = folder / f"{name}.csv"
            with atomic_path(path) as tmp:
                getattr(self, name).to_csv(tmp, index=False)
            out.append(path)
        return out

    def text(self) -> str:
        """The tables for a terminal."""
        import pandas as pd

        head = [f"design {self.design}: {self.complete} of {self.samples} sampled patients "
                f"complete; inputs: {', '.join(self.inputs)}; reference arm: "
                f"{self.reference or 'none'}"]
        head += [f"note: {n}" for n in self.notes]
        with pd.option_context("display.width", 160, "display.max_columns", 30,
                               "display.max_rows", 400, "display.float_format", "{:.4g}".format):
            cols = ["prediction", "arm", "condition", "site", "n", "mean", "sd", "q05", "q95",
                    "p_fracture"]
            parts = ["", "Predictions (mean, SD, 5-95 % interval; P(fracture) = P(factor of "
                     "risk > 1))", self.summary[cols].to_string(index=False)]
            if len(self.comparisons):
                parts += ["", "Paired comparisons: P(first arm beats second)",
                          self.comparisons[["prediction", "condition", "site", "arm_a", "arm_b",
                                            "p_a_better", "diff_q05", "diff_q95"]]
                          .to_string(index=False)]
            if self.leaks is not None and len(self.leaks):
                parts += ["", "Cement leakage: P(leak) by site (95 % Wilson interval)",
                          self.leaks.to_string(index=False)]
            known = self.sobol[np.isfinite(self.sobol["S1"].astype(float))]
            if len(known):
                parts += ["", f"Sensitivity ({known['method'].iloc[0]}; S1 first-order, ST "
                          "total Sobol index, *_conf the 95 % bootstrap half-width)",
                          known[["prediction", "arm", "condition", "site", "input", "n", "S1",
                                 "S1_conf", "ST", "ST_conf"]].to_string(index=False)]
            elif len(self.sobol):
                parts += ["", "Sensitivity: too few complete samples for indices (at least "
                          f"{2 * PER_BIN}, or 2 Saltelli blocks)"]
        return "\n".join(head + parts)


def uncertainty(study, *, reference: str | None = None) -> Uncertainty:
    """The statistics of ``study`` (a :class:`fem.study.Study`) from its store (module
    docstring). ``reference``: the arm restorations and changes are taken against (default: the
    ``intact`` arm, else the ``fractured`` one)."""
    import pandas as pd

    spec = study.spec
    unc = spec.uncertain
    if unc is None:
        raise ModelError(f"study {spec.name!r} samples nothing: add an [uncertain] table to its "
                         "spec (fem.study.uncertain) to ask how sure its predictions are")
    df = study.results()
    arms = _arm_labels(spec)
    notes = []
    if len(df):
        df = df[df["status"] == "done"].copy()
    if not len(df):
        raise ModelError(f"study {spec.name!r} has no finished run yet: run it (vfem study) "
                         "first")
    # a grid over the procedure makes arms, as [[runs]] entries do; the other grid keys are
    # conditions (grid points) under which the arms are compared
    grid_keys = [k for k in spec.grid if k != "procedure"]
    df["arm"] = [arms(row) for row in df.to_dict(orient="records")]
    df["condition"] = (df[grid_keys].astype(str).agg(lambda r: ", ".join(
        f"{k}={v}" for k, v in zip(grid_keys, r)), axis=1) if grid_keys else "")
    # a patient is complete when every run the store holds for it is done
    registered = study.own(study.store.runs_frame(), warn=False)  # results() said it
    per_sample = pd.Series([run_record(study.store, rid, p, "parameters").get("sample", -1)
                            for rid, p in zip(registered["run_id"], registered["params"])])
    total = per_sample.value_counts()
    done = df.groupby("sample")["run_id"].nunique()
    complete = done.index[done.to_numpy() >= total.reindex(done.index).to_numpy()]
    df = df[df["sample"].isin(complete)]
    if len(df) and int(df["sample"].max()) >= unc.size:  # runs of a larger design than this spec's
        notes.append(f"runs of sampled patients beyond this spec's {unc.size} are left out")
        df = df[df["sample"] < unc.size]
    if len(complete) < unc.size:
        notes.append(f"{unc.size - len(complete)} sampled patient(s) left out: some of their "
                     "runs are not done (pending or failed)")
    ref = reference or next((a for a in REFERENCE_ARMS if a in set(df["arm"])), None)
    if reference is not None and reference not in set(df["arm"]):
        raise ModelError(f"reference arm {reference!r} is not one of the study's arms "
                         f"({', '.join(sorted(set(df['arm'])))})")
    if ref is None:
        notes.append("no intact or fractured arm in [[runs]]: restorations and changes need a "
                     "reference arm, only the factors of risk are given")
    values = _predictions(df, ref)
    summary = _summary(values)
    comparisons = _comparisons(values, ref)
    leaks = _leaks(df)
    sob, conv_sobol = _sensitivity(values, unc, notes)
    conv = _convergence(values)
    if len(conv_sobol):
        # the indices' points (whole Saltelli blocks) are not the statistics' points: outer
        conv = conv.merge(conv_sobol, how="outer", on=GROUP + ["n"]).sort_values(
            GROUP + ["n"], kind="stable").reset_index(drop=True)
    from ..meshes.vertebra import ORDER

    treated = _treated(df)
    return Uncertainty(unc.design, unc.names, unc.size, len(complete), values, summary,
                       comparisons, sob, conv if len(conv) else pd.DataFrame(), ref, notes,
                       arms.names, sorted(set(treated[treated.astype(bool)]),
                                          key=list(ORDER).index), leaks)


# ------------------------------------------------------------------------------ predictions

def _arm_labels(spec):
    """A function from a run's parameters to its arm: the entry of ``[[runs]]`` it came from,
    named by its procedure, with the entry's other values where two entries share one."""
    entries = []
    gridded = spec.grid.get("procedure")
    for r in spec.runs or [{}]:
        # an entry without a procedure takes each of the grid's, or the base's
        for proc in ([r["procedure"]] if "procedure" in r else
                     gridded or [spec.base.get("procedure", "intact")]):
            entries.append({**r, "procedure": proc})
    procs = [r["procedure"] for r in entries]
    names = list(procs)
    for i, r in enumerate(entries):
        if procs.count(procs[i]) > 1:
            extra = ", ".join(f"{k}={v}" for k, v in r.items() if k != "procedure")
            names[i] = f"{procs[i]} ({extra})" if extra else procs[i]

    def arm(p: dict) -> str:
        for name, r in zip(names, entries):
            if all(_same(p.get(k), v) for k, v in r.items()):
                return name
        return "?"

    arm.names = names
    return arm


def _same(a, b) -> bool:
    if isinstance(b, list):
        b = ",".join(map(str, b))
    if isinstance(a, float) or isinstance(b, float):
        try:
            return math.isclose(float(a), float(b), rel_tol=1e-12, abs_tol=0.0)
        except (TypeError, ValueError):
            return False
    return a == b


def _predictions(df, ref):
    """The long table (sample, arm, condition, prediction, site, value)."""
    import pandas as pd

    from ..meshes.vertebra import level_range

    rows = []
    key = ["sample", "condition"]
    by_ref = {}
    if ref is not None:
        for (s, c), g in df[df["arm"] == ref].groupby(key):
            by_ref[(s, c)] = g.set_index("level")
    for (s, c, arm), g in df.groupby(key + ["arm"]):
        g = g.set_index("level")
        p = g.iloc[0]
        for level, v in g["factor_of_risk"].items():
            rows.append((s, arm, c, "factor_of_risk", level, v))
        r = by_ref.get((s, c))
        if r is None or arm == ref:  # the reference against itself: 1 and 0 by definition
            continue
        treated = p["treated_level"] or p["fracture_level"]
        names = list(level_range(p["levels"]))
        if treated in g.index and treated in r.index:
            rows.append((s, arm, c, "strength_restoration", treated,
                         _ratio(g.at[treated, "strength_n"], r.at[treated, "strength_n"])))
            rows.append((s, arm, c, "stiffness_restoration", treated,
                         _ratio(g.at[treated, "stiffness_n_per_mm"],
                                r.at[treated, "stiffness_n_per_mm"])))
        if treated not in names:
            continue
        i = names.index(treated)
        for j in (i - 1, i + 1):
            if 0 <= j < len(names) and names[j] in g.index and names[j] in r.index:
                rows.append((s, arm, c, "endplate_bulge_change", names[j],
                             _ratio(g.at[names[j], "endplate_bulge_max_mm"],
                                    r.at[names[j], "endplate_bulge_max_mm"]) - 1.0))
        # disc_pressure_mpa of a level is the disc below it
        for j in (i - 1, i):
            if 0 <= j < len(names) - 1 and names[j] in g.index and names[j] in r.index:
                rows.append((s, arm, c, "disc_pressure_change", f"{names[j]}-{names[j + 1]}",
                             _ratio(g.at[names[j], "disc_pressure_mpa"],
                                    r.at[names[j], "disc_pressure_mpa"]) - 1.0))
    out = pd.DataFrame(rows, columns=["sample", "arm", "condition", "prediction", "site",
                                      "value"])
    out["value"] = pd.to_numeric(out["value"], errors="coerce")
    return out.sort_values(["prediction", "arm", "condition", "site", "sample"],
                           kind="stable").reset_index(drop=True)


def _ratio(a, b) -> float:
    try:
        a, b = float(a), float(b)
    except (TypeError, ValueError):
        return math.nan
    return a / b if b and math.isfinite(a) and math.isfinite(b) else math.nan


GROUP = ["prediction", "arm", "condition", "site"]


def _stats(v: np.ndarray, prediction: str) -> dict:
    v = v[np.isfinite(v)]
    n = len(v)
    out = {"n": n, "mean": math.nan, "sd": math.nan, "q05": math.nan, "q50": math.nan,
           "q95": math.nan, "mean_low": math.nan, "mean_high": math.nan,
           "p_fracture": math.nan, "p_fracture_low": math.nan, "p_fracture_high": math.nan}
    if not n:
        return out
    sd = float(np.std(v, ddof=1)) if n > 1 else math.nan
    half = 1.96 * sd / math.sqrt(n) if n > 1 else math.nan
    q05, q50, q95 = np.quantile(v, [0.05, 0.5, 0.95])
    out.update(mean=float(v.mean()), sd=sd, q05=float(q05), q50=float(q50), q95=float(q95),
               mean_low=float(v.mean()) - half, mean_high=float(v.mean()) + half)
    if prediction == "factor_of_risk":
        k = int((v > 1.0).sum())
        lo, hi = wilson(k, n)
        out.update(p_fracture=k / n, p_fracture_low=lo, p_fracture_high=hi)
    return out


def wilson(k: int, n: int, z: float = 1.96) -> tuple:
    """The Wilson score interval of a proportion k / n (95 % by default)."""
    if n == 0:
        return (math.nan, math.nan)
    p = k / n
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return (max(0.0, c - h), min(1.0, c + h))


def _summary(values):
    import pandas as pd

    rows = [{**dict(zip(GROUP, k)), **_stats(g["value"].to_numpy(), k[0])}
            for k, g in values.groupby(GROUP, sort=False)]
    return pd.DataFrame(rows, columns=GROUP + list(_stats(np.array([1.0]), "x")))


def _comparisons(values, ref):
    """P(arm a beats arm b) per sample, for each two arms other than the reference one."""
    import pandas as pd

    rows = []
    for (pred, cond, site), g in values.groupby(["prediction", "condition", "site"], sort=False):
        wide = g.pivot_table(index="sample", columns="arm", values="value", aggfunc="first")
        arms = [a for a in wide.columns if a != ref]
        larger_better = PREDICTIONS[pred][2]
        for i, a in enumerate(arms):
            for b in arms[i + 1:]:
                d = (wide[a] - wide[b]).to_numpy()
                d = d[np.isfinite(d)]
                if not len(d):
                    continue
                better = (d > 0) if larger_better else (d < 0)
                ties = d == 0
                p = (better.sum() + 0.5 * ties.sum()) / len(d)
                lo, hi = wilson(int(round(p * len(d))), len(d))
                rows.append({"prediction": pred, "condition": cond, "site": site, "arm_a": a,
                             "arm_b": b, "n": len(d), "p_a_better": p, "p_low": lo, "p_high": hi,
                             "diff_mean": float(d.mean()),
                             "diff_q05": float(np.quantile(d, 0.05)),
                             "diff_q95": float(np.quantile(d, 0.95))})
    return pd.DataFrame(rows, columns=["prediction", "condition", "site", "arm_a", "arm_b", "n",
                                       "p_a_better", "p_low", "p_high", "diff_mean", "diff_q05",
                                       "diff_q95"])


def _treated(df):
    """Each row's treated level: its treated_level, else its fracture_level."""
    return df["treated_level"].where(df["treated_level"].astype(bool), df["fracture_level"])


def _leaks(df):
    """P(leak) of the treated level by site, per augmented arm and grid point."""
    import pandas as pd

    cols = ["arm", "condition", "site", "n", "leaks", "p_leak", "p_low", "p_high",
            "mean_leak_ml"]
    t = df[(df["level"] == _treated(df)) & df["procedure"].isin(["pvp", "pkp"])]
    rows = []
    for (arm, cond), g in t.groupby(["arm", "condition"], sort=False):
        n = len(g)
        ml = pd.to_numeric(g["leak_ml"], errors="coerce").fillna(0.0).to_numpy()
        where = [set(filter(None, str(x or "").split("; "))) for x in g["leak_locations"]]
        sites = {"any": ml > 0}
        for site in sorted(set().union(*where)):
            sites[site] = np.array([site in w for w in where])
        for site, hit in sites.items():
            k = int(hit.sum())
            lo, hi = wilson(k, n)
            rows.append({"arm": arm, "condition": cond, "site": site, "n": n, "leaks": k,
                         "p_leak": k / n, "p_low": lo, "p_high": hi,
                         "mean_leak_ml": float(ml.mean()) if site == "any" else math.nan})
    return pd.DataFrame(rows, columns=cols)


# ------------------------------------------------------------------------------ sensitivity

def _sensitivity(values, unc, notes):
    """(indices, indices at the convergence points). Only the Saltelli design's indices need
    SALib, and a spec with that design was refused without it (its design needs it too)."""
    import pandas as pd

    cols = GROUP + ["input", "method", "n", "S1", "S1_conf", "ST", "ST_conf"]
    unit = unc.unit()
    d = len(unc.inputs)
    rows, conv = [], []
    for k, g in values.groupby(GROUP, sort=False):
        y = np.full(unc.size, np.nan)
        y[g["sample"].to_numpy(int)] = g["value"].to_numpy(float)
        if unc.design == "saltelli":
            blocks = y.reshape(unc.samples, d + 2)
            ok = np.isfinite(blocks).all(axis=1)
            full = blocks[ok]
            res = _sobol_indices(unc, full)
            rows += _index_rows(k, unc, "sobol", len(full) * (d + 2), res)
            for n in _convergence_points(len(full)):
                r = _sobol_indices(unc, full[:n])
                conv.append({**dict(zip(GROUP, k)), "n": n * (d + 2),
                             **{f"S1[{x}]": r["S1"][j] for j, x in enumerate(unc.names)},
                             **{f"ST[{x}]": r["ST"][j] for j, x in enumerate(unc.names)}})
        else:
            ok = np.isfinite(y)
            res = _given_data_indices(unc, unit[ok], y[ok])
            rows += _index_rows(k, unc, "correlation ratio (S1 from given data)",
                                int(ok.sum()), res)
            xs, ys = unit[ok], y[ok]
            for n in _convergence_points(len(ys)):
                if n >= 2 * PER_BIN:
                    s1 = first_order(xs[:n], ys[:n])
                    conv.append({**dict(zip(GROUP, k)), "n": n,
                                 **{f"S1[{x}]": s1[j] for j, x in enumerate(unc.names)}})
    if unc.design != "saltelli":
        notes.append(f"a {unc.design} design gives first-order indices only (from the given "
                     "data); total indices need design = 'saltelli'")
        if len(sob := pd.DataFrame(rows, columns=cols)) and sob["S1"].isna().all():
            notes.append(f"no first-order index could be estimated: the given-data method bins "
                         f"each input's values ({PER_BIN} patients a bin, at least 2 bins) and "
                         f"needs {2 * PER_BIN} or more complete patients; sample more, or use a "
                         "Saltelli design")
    return pd.DataFrame(rows, columns=cols), pd.DataFrame(conv)


def _index_rows(k, unc, method, n, res):
    return [{**dict(zip(GROUP, k)), "input": x, "method": method, "n": n,
             "S1": res["S1"][j], "S1_conf": res["S1_conf"][j], "ST": res["ST"][j],
             "ST_conf": res["ST_conf"][j]} for j, x in enumerate(unc.names)]


def _nan_indices(d):
    nan = np.full(d, np.nan)
    return {"S1": nan, "S1_conf": nan, "ST": nan, "ST_conf": nan}


@contextlib.contextmanager
def _quiet():
    """SALib prints its notices (bin merges, small-sample biases) to stdout and stderr; the
    indices' intervals say what matters."""
    # record=True: some SALib methods reset the warning filter inside themselves (and replace
    # warnings.formatwarning), so "ignore" alone does not hold; recorded warnings are dropped
    fmt = warnings.formatwarning
    try:
        with warnings.catch_warnings(record=True), contextlib.redirect_stdout(io.StringIO()), \
                contextlib.redirect_stderr(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        warnings.formatwarning = fmt


def _sobol_indices(unc, blocks) -> dict:
    """First-order and total indices from complete Saltelli blocks (n, d + 2)."""
    from SALib.analyze import sobol

    d = len(unc.inputs)
    y = blocks.reshape(-1)
    if len(blocks) < 2 or not np.var(y) > 0:
        return _nan_indices(d)
    with _quiet():
        r = sobol.analyze(unc.problem(), y, calc_second_order=False,
                          num_resamples=BOOTSTRAP, seed=unc.seed)
    return {k: np.asarray(r[k], float) for k in ("S1", "S1_conf", "ST", "ST_conf")}


#: patients per bin of the given-data first-order index (at least); at most MAX_BINS bins
PER_BIN = 10
MAX_BINS = 50


def _given_data_indices(unc, x, y) -> dict:
    """First-order indices from any sample: each input's correlation ratio over equiprobable
    bins of its values, bias-corrected (:func:`first_order`), with a bootstrap 95 % half-width."""
    d = len(unc.inputs)
    if len(y) < 2 * PER_BIN or not np.var(y) > 0:
        return _nan_indices(d)
    rng = np.random.default_rng(unc.seed)
    s1 = first_order(x, y)
    boot = np.array([first_order(x[i], y[i]) for i in
                     rng.integers(0, len(y), size=(BOOTSTRAP, len(y)))])
    conf = 1.96 * np.nanstd(boot, axis=0, ddof=1)
    nan = np.full(d, np.nan)
    return {"S1": s1, "S1_conf": conf, "ST": nan, "ST_conf": nan}


def first_order(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """First-order sensitivity indices of ``y`` (n,) to each column of ``x`` (n, d) from one
    sample of any design: the correlation ratio (the share of var(y) explained by E[y | x_i]),
    E[y | x_i] estimated per equiprobable bin of x_i (n / :data:`PER_BIN` bins, at most
    :data:`MAX_BINS`), bias-corrected as epsilon squared, (SS_between - (M - 1) MS_within) /
    SS_total for M bins, which removes the positive bias the bin means' own scatter adds."""
    n, d = x.shape
    m = int(max(2, min(MAX_BINS, n // PER_BIN)))
    yc = y - y.mean()
    ss_total = float(yc @ yc)
    out = np.full(d, np.nan)
    if not ss_total > 0:
        return out
    for j in range(d):
        ranks = np.argsort(np.argsort(x[:, j], kind="stable"), kind="stable")
        b = ranks * m // n
        cnt = np.bincount(b, minlength=m)
        means = np.bincount(b, weights=y, minlength=m) / np.maximum(cnt, 1)
        ss_between = float((cnt * (means - y.mean()) ** 2).sum())
        ms_within = (ss_total - ss_between) / max(n - m, 1)
        out[j] = (ss_between - (m - 1) * ms_within) / ss_total
    return out


# ------------------------------------------------------------------------------ convergence

def _convergence_points(n: int) -> list:
    pts, k = [], FIRST_CONVERGENCE_N
    while k < n:
        pts.append(k)
        k *= 2
    return pts + [n] if n else []


def _convergence(values):
    """The statistics from the first 8, 16, 32, ... samples (in sample order) up to all."""
    import pandas as pd

    rows = []
    for k, g in values.groupby(GROUP, sort=False):
        v = g.sort_values("sample")["value"].to_numpy(float)
        for n in _convergence_points(len(v)):
            s = _stats(v[:n], k[0])
            rows.append({**dict(zip(GROUP, k)), "n": n, "mean": s["mean"], "sd": s["sd"],
                         "q05": s["q05"], "q95": s["q95"], "p_fracture": s["p_fracture"]})
    return pd.DataFrame(rows)
