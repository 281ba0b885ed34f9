"""The same vertebra loaded through its discs and potted in PMMA end-caps: how far apart its
strengths are.

L2 of the parametric spine (trabecular BMD 70 mg/cm^3 by default, voxels): (a) its body, the
posterior elements cut, potted in tied PMMA caps between parallel platens
(``fem.meshes.rigs``, the benchmark's protocol), the damage pushover run on until the force falls
to 0.8 of its peak; (b) the same level in the canonical intact T12-L4 with fibre discs under
standing, the study's recipe and first-failure stops (only L2 can fail). Printed: first yield,
first failure (the first of a 2 % fall and the offset yield, ``first_failure_kind`` says which)
and the curve's largest force, each with the deformation there, and the ratio of the two first
failures. Maquer, Schwiedrzik & Zysset (homogenised FE of 12 vertebral bodies; abstract read)
found ultimate loads with PMMA embedding 22 % above those with a healthy disc; docs/validation.md,
"Disc loading against end-caps", discusses the gap.

    python bench/disc_vs_caps.py [--voxel 2] [--bmd 70]

About 1-2 minutes at 2 mm on one core.
"""

from __future__ import annotations

import argparse
import platform
import time
import warnings


def caps(voxel: float, bmd: float) -> dict:
    from fem.anatomy import level_height
    from fem.meshes import rigs
    from fem.meshes.bone import BoneQuality
    from fem.nonlinear_result import FIRST_PEAK_DROP, OFFSET_YIELD
    from fem.strength import bone_damage_law, pushover

    m = rigs.potted_body("L2", voxel_size=voxel, materials=BoneQuality(bmd=bmd), contact="tied")
    rigs.compression_test(m, 0.2, platen="fixed")
    t = time.perf_counter()
    res = pushover(m, law=bone_damage_law(m), level="L2", control="displacement", stop_ratio=0.8)
    return _row("L2 in PMMA caps (platen travel)", res, OFFSET_YIELD * level_height(m, "L2"),
                FIRST_PEAK_DROP, time.perf_counter() - t, m.n_dof)


def segment(voxel: float, bmd: float) -> dict:
    from first_failure import intact_segment  # bench/first_failure.py, beside this script

    import fem
    from fem.anatomy import level_height
    from fem.nonlinear_result import FIRST_PEAK_DROP
    from fem.strength import bone_damage_law, pushover
    from fem.study.recipe import failure_offset, pushover_model, pushover_stops

    p, model = intact_segment(bmd, voxel, "standing")
    t = time.perf_counter()
    res = fem.solve_disc(model, coupling=True)
    secant = pushover_model(model, res)
    h = level_height(secant, "L2")
    curve = pushover(secant, law=bone_damage_law(secant), level="L2", **pushover_stops(p, h))
    return _row("L2 in T12-L4, fibre discs (its shortening)", curve, failure_offset(p) * h,
                FIRST_PEAK_DROP, time.perf_counter() - t, model.n_dof)


def _row(name, res, offset, drop, seconds, n_dof) -> dict:
    from fem.nonlinear_result import reached_at

    first = res.first_failure(drop, offset)
    return {"name": name, "yield": res.info["first_yield_n"], "d_yield": res.info["first_yield_mm"],
            "first": first, "d_first": reached_at(res.curve, first)[0],
            "kind": res.first_failure_kind(drop, offset),
            "peak": res.peak_load, "d_peak": res.displacement_at_peak, "steps": len(res.steps),
            "s": seconds, "dof": n_dof}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--voxel", type=float, default=2.0)
    ap.add_argument("--bmd", type=float, default=70.0)
    args = ap.parse_args(argv)
    print(f"machine: {platform.processor() or platform.machine()}, python "
          f"{platform.python_version()}; L2, {args.voxel:g} mm, BMD {args.bmd:g}")
    print(f"{'set-up':44} {'DOF':>7} {'yield N':>8} {'at mm':>6} {'first N':>8} {'by':>6} "
          f"{'at mm':>6} {'largest N':>9} {'at mm':>6} {'steps':>5} {'s':>6}")
    rows = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        for fn in (caps, segment):
            r = fn(args.voxel, args.bmd)
            rows.append(r)
            print(f"{r['name']:44} {r['dof']:7d} {r['yield']:8.0f} {r['d_yield']:6.3f} "
                  f"{r['first']:8.0f} {r['kind']:>6} {r['d_first']:6.3f} {r['peak']:9.0f} "
                  f"{r['d_peak']:6.3f} {r['steps']:5d} {r['s']:6.1f}", flush=True)
    print(f"first failure in caps / through the discs: {rows[0]['first'] / rows[1]['first']:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
