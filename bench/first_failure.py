"""Where a segment's level first fails, read three ways, across bone density.

The canonical segment (T12-L4, parametric, voxels, fibre discs, the study's recipe) intact under
one load case; for each BMD, L2's pushover (only L2 can fail, the study's law) is run on until its
force falls a tenth below its running maximum or flattens to a plateau, so one curve gives both
readings: the first failure with a fall of 2 % (:data:`fem.nonlinear_result.FIRST_PEAK_DROP`,
a study's default ``first_failure_drop`` since 2026-12-07) and with a tenth (the rule before),
each with the level's shortening there, and the first of a fall of 2 % and the offset yield
(0.2 % of the level's height: :data:`fem.nonlinear_result.OFFSET_YIELD`, a study's default
``first_failure_offset`` since 2026-12-07, its headline strength), beside the linear Pistoia
estimate (docs/nonlinear.md, "The first failure").

    python bench/first_failure.py [--bmd 50 60 70 80 100 130] [--voxel 2] [--load-case standing]

About 30-120 s a density at 2 mm on one core.
"""

from __future__ import annotations

import argparse
import platform
import time
import warnings


def intact_segment(bmd: float, voxel: float, load_case: str):
    """(a run's parameters, its model): the canonical intact T12-L4 (levels "auto" about L2)
    at ``bmd`` and ``voxel``, loaded by ``load_case``, as a study with an L2 pushover builds
    it (also bench/disc_vs_caps.py's)."""
    from fem.study.recipe import build_model
    from fem.study.spec import StudySpec

    (p,) = StudySpec.from_dict({"study": {"name": "bench"}, "base": {
        "levels": "auto", "fracture_level": "L2", "procedure": "intact", "bmd": bmd,
        "voxel_size": voxel, "load_case": load_case, "strength": "pushover"}}).expand()
    return p, build_model(p)


def row(bmd: float, voxel: float, load_case: str) -> dict:
    import fem
    from fem import metrics
    from fem.anatomy import level_height
    from fem.nonlinear import LIMIT_TANGENT
    from fem.nonlinear_result import FIRST_PEAK_DROP, OFFSET_YIELD, reached_at
    from fem.strength import bone_damage_law, pushover
    from fem.study.recipe import pushover_model

    p, model = intact_segment(bmd, voxel, load_case)
    t = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        res = fem.solve_disc(model, coupling=True)
        secant = pushover_model(model, res)
        curve = pushover(secant, law=bone_damage_law(secant), level="L2", stop_ratio=0.9,
                         stop_plateau=LIMIT_TANGENT)
    pistoia = float(metrics.level_metrics(res).set_index("level").loc["L2",
                                                                     "strength_pistoia_n"])

    def at(force):  # the shortening (mm) where the curve reached ``force``
        return reached_at(curve.curve, force)[0]

    two, tenth = curve.first_failure(FIRST_PEAK_DROP), curve.first_failure(0.1)
    offset = OFFSET_YIELD * level_height(secant, "L2")
    head = curve.first_failure(FIRST_PEAK_DROP, offset)
    return {"bmd": bmd, "two": two, "d_two": at(two), "tenth": tenth, "d_tenth": at(tenth),
            "head": head, "kind": curve.first_failure_kind(FIRST_PEAK_DROP, offset),
            "pistoia": pistoia, "steps": len(curve.steps), "s": time.perf_counter() - t}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bmd", type=float, nargs="+", default=[50.0, 60.0, 70.0, 80.0, 100.0, 130.0])
    ap.add_argument("--voxel", type=float, default=2.0)
    ap.add_argument("--load-case", default="standing")
    args = ap.parse_args(argv)
    print(f"machine: {platform.processor() or platform.machine()}, python "
          f"{platform.python_version()}; T12-L4 intact, {args.voxel:g} mm, {args.load_case}, L2")
    print(f"{'BMD':>5} {'2 % fall N':>10} {'at mm':>6} {'tenth N':>8} {'at mm':>6} "
          f"{'headline N':>10} {'by':>6} {'Pistoia N':>9} {'steps':>5} {'s':>6}")
    for b in args.bmd:
        r = row(b, args.voxel, args.load_case)
        print(f"{r['bmd']:5g} {r['two']:10.0f} {r['d_two']:6.3f} {r['tenth']:8.0f} "
              f"{r['d_tenth']:6.3f} {r['head']:10.0f} {r['kind']:>6} {r['pistoia']:9.0f} "
              f"{r['steps']:5d} {r['s']:6.1f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
