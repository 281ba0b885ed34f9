"""Benchmark: a sampled study of the canonical model, end to end (issue 21, deliverable 6).

Runs ``examples/uq_study.toml`` (the canonical L1-L3 patient, intact / PVP 4 mL / PKP 4 mL, seven
uncertain inputs, a Latin hypercube) with ``--samples`` sampled patients on ``--processes`` local
worker processes into a fresh folder, then its statistics (``Study.uncertainty``), and prints:

* the wall time of the study and of the analysis, the runs, the mean run time and the core
  seconds per sampled patient (the sum of the runs' own times);
* what 10 000 sampled patients cost in core-hours at that rate, the figure a cluster request needs
  (docs/studies.md, "A sampled study on a cluster");
* the headline answers with their 5-95 % intervals, P(fracture) per level and the leak
  probabilities, so a reader sees what the time bought.

There is no peer: no open tool samples a vertebral augmentation study (FEBio, the QCT tools and
the published PVP/PKP studies run single deterministic cases). State the machine beside the table.

    python bench/uq_study.py                       # 200 samples on 2 processes (~30 min)
    python bench/uq_study.py --samples 16 --voxel 3
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

SPEC = Path(__file__).resolve().parents[1] / "examples" / "uq_study.toml"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=200)
    ap.add_argument("--processes", type=int, default=2)
    ap.add_argument("--voxel", type=float, default=None, help="voxel size (mm); default the "
                    "spec's (2 mm)")
    ap.add_argument("--out", default=None, help="study folder (default: a temporary one)")
    args = ap.parse_args(argv)

    from fem.study import Study, StudySpec

    d = StudySpec.from_toml(SPEC, max_runs=None).to_dict()
    d["uncertain"]["samples"] = args.samples
    if args.voxel is not None:
        d["base"]["voxel_size"] = args.voxel
    spec = StudySpec.from_dict(d, max_runs=None)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(args.out or Path(tmp) / "uq")
        study = Study(folder, spec, max_runs=None)
        t = time.perf_counter()
        counts = study.run(processes=args.processes, progress=False, log=lambda m: None)
        wall = time.perf_counter() - t
        t = time.perf_counter()
        u = study.uncertainty()
        t_uq = time.perf_counter() - t
        runs = study.store.runs_frame()
        secs = [json.loads(x).get("total", 0.0) for x in runs["timings"] if isinstance(x, str)]
        dof = int(runs["n_dof"].dropna().iloc[0]) if runs["n_dof"].notna().any() else 0
        report(args, spec, counts, wall, t_uq, secs, dof, u)


def report(args, spec, counts, wall, t_uq, secs, dof, u):
    n_runs = sum(counts.values())
    per_patient = sum(secs) / max(1, u.complete)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
          f"{args.processes} worker process(es)")
    print(f"spec: {SPEC.name}, {spec.uncertain.design} design, {args.samples} samples, "
          f"{len(spec.runs)} arms, {spec.base.get('voxel_size')} mm voxels ({dof} DOF)")
    print()
    print("| samples | runs | done | failed | study wall (s) | mean run (s) | core-s per "
          "patient | analysis (s) | 10 000 patients (core-h) |")
    print("|---|---|---|---|---|---|---|---|---|")
    print(f"| {args.samples} | {n_runs} | {counts.get('done', 0)} | {counts.get('failed', 0)} "
          f"| {wall:.0f} | {sum(secs) / max(1, len(secs)):.2f} | {per_patient:.1f} | "
          f"{t_uq:.1f} | {10_000 * per_patient / 3600:.0f} |")
    print()
    s = u.summary
    keep = s[s["prediction"] != "factor_of_risk"]
    print("headline predictions (mean, 5-95 %):")
    for _, r in keep.iterrows():
        print(f"  {r['prediction']:<22} {r['arm']:<7} {r['site']:<6} {r['mean']:8.3f} "
              f"[{r['q05']:.3f}, {r['q95']:.3f}]")
    print("P(fracture) = P(factor of risk > 1), 95 % Wilson interval:")
    for _, r in s[s["prediction"] == "factor_of_risk"].iterrows():
        print(f"  {r['arm']:<7} {r['site']:<4} {r['p_fracture']:.3f} "
              f"[{r['p_fracture_low']:.3f}, {r['p_fracture_high']:.3f}]  "
              f"(factor of risk {r['mean']:.3f}, 5-95 % {r['q05']:.3f}-{r['q95']:.3f})")
    c = u.comparisons
    for _, r in c.iterrows():
        print(f"  P({r['arm_a']} beats {r['arm_b']}) on {r['prediction']} at {r['site']}: "
              f"{r['p_a_better']:.2f}")
    if u.leaks is not None and len(u.leaks):
        print("leaks:")
        print(u.leaks.to_string(index=False))
    known = u.sobol.dropna(subset=["S1"])
    if len(known):
        print("first-order indices (largest per prediction):")
        for k, g in known.groupby(["prediction", "arm", "site"]):
            top = g.sort_values("S1", ascending=False).iloc[0]
            print(f"  {' '.join(k):<36} {top['input']:<18} S1 {top['S1']:.2f} +- "
                  f"{top['S1_conf']:.2f}")


if __name__ == "__main__":
    main()
