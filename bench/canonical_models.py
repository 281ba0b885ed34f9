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

``--cost``: where the canonical study's time goes. The runs of ``examples/canonical_study.toml``
itself (``--only`` picks some, e.g. ``pvp-4-standing``), each solved as the study solves it (the
fibre disc's secant solve, then L2's pushover on its converged model, to the first failure
since 2026-12-07, ``pushover_end``): per run the fibre solve's
and the pushover's seconds, the pushover's steps, linear solves, the solves of attempts that
were cut (a step that did not converge or destroyed too much, solved again shorter), CG
iterations, and the seconds in the preconditioner (the AMG V-cycle with the nuclei's exact block
solves) with its cost per application. ``--mixed`` runs each pushover again with the AMG
hierarchy in float32 (``precision="mixed"``).

    python bench/canonical_models.py --voxel 2 --cases standing,flexion [--orthotropic]
    python bench/canonical_models.py --pushover --voxels 2 1.5
    python bench/canonical_models.py --cost [--only pvp-4-standing intact-standing] [--mixed]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import time
import warnings
from pathlib import Path

CANONICAL = Path(__file__).resolve().parent.parent / "examples" / "canonical_study.toml"

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


class _Timed:
    """A preconditioner whose applications are counted and timed."""

    def __init__(self, M):
        self.M, self.seconds, self.calls = M, 0.0, 0

    def matvec(self, r):
        t = time.perf_counter()
        z = self.M.matvec(r)
        self.seconds += time.perf_counter() - t
        self.calls += 1
        return z


@contextlib.contextmanager
def _timed_preconditioner(precision: str, timers: list):
    """fem.analysis.amg_preconditioner, in ``precision``, handing out timed preconditioners."""
    from fem import analysis

    plain = analysis.amg_preconditioner

    def timed(*args, **kwargs):
        kwargs.setdefault("precision", precision)
        timers.append(_Timed(plain(*args, **kwargs)))
        return timers[-1]

    analysis.amg_preconditioner = timed
    try:
        yield
    finally:
        analysis.amg_preconditioner = plain


def _run_name(p) -> str:
    vol = f"-{p['cement_volume_ml']:g}" if p["procedure"] in ("pvp", "pkp") else ""
    return f"{p['procedure']}{vol}-{p['load_case']}"


def cost_table(only, mixed: bool) -> None:
    from threadpoolctl import threadpool_limits

    import fem
    from fem import strength
    from fem.study.recipe import build_model, pushover_model, pushover_stops
    from fem.study.spec import StudySpec

    # as a study's run (fem.study.recipe); the fibre and pushover solves hold BLAS to one thread
    # themselves (fem.parallel.serial_blas), so their paths are the study's to the bit
    threadpool_limits(limits=1, user_api="blas")
    todo = [p for p in StudySpec.from_toml(CANONICAL).expand()
            if not only or _run_name(p) in only]
    print(f"{'run':>20} {'DOF':>7} {'prec':>6} {'fibre s':>7} {'push s':>6} {'steps':>5} "
          f"{'solves':>6} {'cut':>9} {'CG its':>6} {'its/sol':>7} {'M s':>6} {'M share':>7} "
          f"{'ms/M':>5} {'peak N':>7}")
    for p in todo:
        m = build_model(p)
        t = time.perf_counter()
        res = fem.solve_disc(m, coupling=True, drainage="drained")
        t_fibre = time.perf_counter() - t
        model = pushover_model(m, res)
        for precision in ("double", "mixed") if mixed else ("double",):
            timers = []
            t = time.perf_counter()
            with _timed_preconditioner(precision, timers):
                po = strength.pushover(model, level="L2", **pushover_stops(p))
            dt = time.perf_counter() - t
            i = po.info
            ms, calls = sum(x.seconds for x in timers), sum(x.calls for x in timers)
            n, cut, its = i["linear_solves"], i["cut_solves"], sum(i["cg_iterations"])
            print(f"{_run_name(p):>20} {m.n_dof:7d} {precision:>6} {t_fibre:7.1f} {dt:6.1f} "
                  f"{len(po.steps):5d} {n:6d} {cut:4d} ({100 * cut / n:2.0f}%) "
                  f"{its:6d} {its / n:7.1f} {ms:6.1f} "
                  f"{100 * ms / dt:6.0f}% {1000 * ms / max(calls, 1):5.1f} "
                  f"{po.peak_load:7.0f}", flush=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pushover", action="store_true", help="L2's standing pushover by voxels")
    ap.add_argument("--voxel", type=float, default=2.0, help="voxel size of --disc (mm)")
    ap.add_argument("--voxels", type=float, nargs="+", default=[2.0, 1.5],
                    help="voxel sizes of --pushover (mm)")
    ap.add_argument("--cases", default="standing,flexion", help="load cases of --disc")
    ap.add_argument("--orthotropic", action="store_true",
                    help="--disc: also the orthotropic secant of the fractured state")
    ap.add_argument("--cost", action="store_true",
                    help="where the canonical study's time goes, run by run")
    ap.add_argument("--only", nargs="+", default=[],
                    help="--cost: these runs only (e.g. pvp-4-standing intact-flexion)")
    ap.add_argument("--mixed", action="store_true",
                    help="--cost: each pushover again with a float32 AMG hierarchy")
    args = ap.parse_args(argv)
    warnings.simplefilter("ignore")
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"python {platform.python_version()}")
    if args.cost:
        cost_table(set(args.only), args.mixed)
    elif args.pushover:
        pushover_table(args.voxels)
    else:
        disc_table(args.voxel, args.cases.split(","), args.orthotropic)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
