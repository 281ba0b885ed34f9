"""The canonical segment's answers by disc model and by voxel size (2026-12-06).

The runs of ``examples/canonical_study.toml`` (T12-L4, QCT BMD 70 mg/cm^3, a grade-2 wedge of
L2; intact, fractured, PVP 4 mL, PKP 4 mL restoring half the height), built by the study's own
recipe (:func:`fem.study.recipe.build_model`), so that a row here is the run a study makes.

``--disc`` (default): each state and load case solved with the builders' solid annulus
(``fem.solve``, what a study's ``disc = "isotropic"`` runs) and with the fibre-reinforced annulus
(``fem.solve_disc(..., coupling=True)``, what a study's default ``disc = "fibres"`` runs): per level the pressure of the disc below it (MPa), the endplate bulges
(mm), the Pistoia factor of risk and the axial stiffness (N/mm), and each solve's time.
``--orthotropic`` adds the fibre disc's orthotropic secant (``coupling=False``) for the
fractured state, the form ``fem.solve_disc`` tries first.

``--pushover``: L2's damage pushover under standing (:func:`fem.strength.pushover`, only L2
able to fail) for each state at each of ``--voxels``: peak force (N), whether the curve turned
over (else the force at the displacement cap, a lower bound), the level's shortening at the
peak and the axial stiffness.

    python bench/canonical_models.py --voxel 2 --cases standing,flexion [--orthotropic]
    python bench/canonical_models.py --pushover --voxels 2 1.5
"""

from __future__ import annotations

import argparse
import platform
import time
import warnings

STATES = ({"procedure": "intact"}, {"procedure": "fractured"},
          {"procedure": "pvp", "cement_volume_ml": 4.0},
          {"procedure": "pkp", "cement_volume_ml": 4.0, "height_restoration": 0.5})
BASE = {"levels": "auto", "bmd": 70.0, "fracture_level": "L2", "fracture_shape": "wedge",
        "fracture_grade": 2, "approach": "bipedicular", "cement": "pmma"}


def runs(voxel: float, cases):
    from fem.study.spec import StudySpec

    spec = {"study": {"name": "bench"}, "base": {**BASE, "voxel_size": voxel},
            "grid": {"load_case": list(cases)}, "runs": list(STATES)}
    return StudySpec.from_dict(spec).expand()


def _label(p) -> str:
    return p["procedure"] + (f" {p['cement_volume_ml']:g} mL" if p["procedure"] in ("pvp", "pkp")
                             else "")


def disc_table(voxel: float, cases, orthotropic: bool) -> None:
    import fem
    from fem import metrics
    from fem.study.recipe import build_model

    cols = ("disc_pressure_mpa", "endplate_bulge_superior_mm", "endplate_bulge_inferior_mm",
            "factor_of_risk", "stiffness_n_per_mm")
    print(f"{'state':>12} {'case':>9} {'disc':>11} {'s':>6} {'level':>5} {'p MPa':>7} "
          f"{'bulge sup':>9} {'bulge inf':>9} {'FoR':>7} {'k N/mm':>8}")
    for p in runs(voxel, cases):
        m = build_model(p)
        forms = [("isotropic", fem.solve, {}), ("fibres", fem.solve_disc, {"coupling": True})]
        if orthotropic and p["procedure"] == "fractured":
            forms.append(("orthotropic", fem.solve_disc, {"coupling": False}))
        for name, solve, kw in forms:
            t = time.perf_counter()
            try:
                r = solve(m, **kw)
            except fem.ConvergenceError as exc:  # the orthotropic secant can run out
                print(f"{_label(p):>12} {p['load_case']:>9} {name:>11} "
                      f"{time.perf_counter() - t:6.1f} did not converge: {str(exc)[:60]}...")
                continue
            dt = time.perf_counter() - t
            table = metrics.level_metrics(r).set_index("level")
            for level, row in table.iterrows():
                print(f"{_label(p):>12} {p['load_case']:>9} {name:>11} {dt:6.1f} {level:>5} "
                      + " ".join(f"{row[c]:{w}.{d}f}" for c, w, d in
                                 zip(cols, (7, 9, 9, 7, 8), (4, 4, 4, 4, 0), strict=True)),
                      flush=True)


def pushover_table(voxels) -> None:
    import fem
    from fem import metrics, strength
    from fem.study.recipe import build_model

    print(f"{'voxel':>5} {'state':>12} {'s':>6} {'peak N':>7} {'turned':>6} {'at mm':>6} "
          f"{'k N/mm':>7}")
    for h in voxels:
        for p in runs(h, ["standing"]):
            m = build_model(p)
            t = time.perf_counter()
            k = float(metrics.level_metrics(fem.solve(m)).set_index("level").loc[
                "L2", "stiffness_n_per_mm"])
            res = strength.pushover(m, level="L2")
            print(f"{h:5g} {_label(p):>12} {time.perf_counter() - t:6.0f} {res.peak_load:7.0f} "
                  f"{'yes' if res.peak_reached else 'no':>6} {res.displacement_at_peak:6.3f} "
                  f"{k:7.0f}", flush=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pushover", action="store_true", help="L2's standing pushover by voxels")
    ap.add_argument("--voxel", type=float, default=2.0, help="voxel size of --disc (mm)")
    ap.add_argument("--voxels", type=float, nargs="+", default=[2.0, 1.5],
                    help="voxel sizes of --pushover (mm)")
    ap.add_argument("--cases", default="standing,flexion", help="load cases of --disc")
    ap.add_argument("--orthotropic", action="store_true",
                    help="--disc: also the orthotropic secant of the fractured state")
    args = ap.parse_args(argv)
    warnings.simplefilter("ignore")
    print(f"machine: {platform.processor() or platform.machine()}, "
          f"python {platform.python_version()}")
    if args.pushover:
        pushover_table(args.voxels)
    else:
        disc_table(args.voxel, args.cases.split(","), args.orthotropic)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
