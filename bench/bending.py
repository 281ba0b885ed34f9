"""A motion segment in bending, with and without its posterior ligaments, against Niosi et al.
2006's intact segments (``fem.meshes.experiments.NIOSI_2006_*``; docs/validation.md, "A segment
in bending").

    python bench/bending.py [--voxel 3] [--levels L3-L4] [--bmd 70] [--anatomy ssm]

The parametric segment (``segment_model(..., ligaments=)``; with ``--anatomy ssm`` the mean shape
model's, ``ssm_segment_model(..., ligaments=)``, whose ligaments join its real posterior
elements; posterior elements kept, lower level fixed at its inferior endplate, a rigid plate on
the upper one), each disc model (the studies'
fibre disc, small strain, exact secant; the isotropic annulus) with and without the ligaments of
``fem.ligaments``, under the protocol of flexibility tests: a pure 7.5 N·m moment in flexion and
in extension, and flexion with a 600 N compression (Niosi's follower preload; here a dead load on
the plate's centroid, which in small strain acts as a follower would on one segment). Printed: the
rotation across the disc (``disc_rotation_deg``), the nucleus pressure, the share of the
interspinous ligament's fibres in tension, and the solve's time.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
import warnings

#: (name, axial force N, sagittal moment N mm, the measured Reference's name)
CASES = (("flexion, pure", 0.0, 7500.0, "NIOSI_2006_FLEXION"),
         ("extension, pure", 0.0, -7500.0, "NIOSI_2006_EXTENSION"),
         ("flexion + 600 N", 600.0, 7500.0, "NIOSI_2006_FLEXION_PRELOAD"))
DISCS = ("fibres", "isotropic")


def rotation(model, force: float, moment: float, disc: str) -> dict:
    """Solve ``model`` (a two-level segment) under ``force`` (N) and the sagittal ``moment``
    (N mm) on its plate; the disc's rotation (deg), nucleus pressure (MPa), the interspinous
    ligament's share of fibres in tension and the seconds the solve took."""
    import fem
    from fem import metrics
    from fem.ligaments import solve_solid_discs
    from fem.meshes import loadcases
    from fem.meshes.loadcases import LoadCase

    case = LoadCase("bending", force, mx=moment, source="in-vitro flexibility protocol")
    m = loadcases.loaded(model, case)
    t = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        r = fem.solve_disc(m, coupling=True) if disc == "fibres" else solve_solid_discs(m)
        seconds = time.perf_counter() - t
        row = metrics.level_metrics(r, load=max(force, 1.0)).iloc[0]
    tension = float("nan")
    for name, el in m.regions.items():
        if name.endswith("/ligament_interspinous"):
            tension = float((r.extra_cell_fields["fibre_strain_plus"][el] > 0.0).mean())
    return {"rotation": float(row["disc_rotation_deg"]),
            "pressure": float(row["disc_pressure_mpa"]), "tension": tension, "seconds": seconds}


def replica(h: float, bmd: float, levels: str = "L3-L4", discs=DISCS,
            ligaments=(False, True), anatomy: str = "parametric") -> list[dict]:
    """Every case of :data:`CASES` on ``levels`` at voxel ``h`` (mm), trabecular BMD ``bmd``,
    for each disc model and with / without ligaments, on the ``anatomy`` ("parametric" or
    "ssm"): rows of :func:`rotation` with ``case``, ``disc``, ``ligaments`` and the measured
    ``reference``."""
    from fem.meshes import experiments
    from fem.meshes.bone import BoneQuality
    from fem.meshes.ssm import ssm_segment_model
    from fem.meshes.vertebra import segment_model

    build = {"parametric": segment_model, "ssm": ssm_segment_model}[anatomy]
    rows = []
    for lig in ligaments:
        model = build(levels, voxel_size=h, materials=BoneQuality(bmd=bmd), ligaments=lig)
        for disc in discs:
            for name, force, moment, ref in CASES:
                rows.append({"case": name, "disc": disc, "ligaments": lig,
                             "reference": getattr(experiments, ref),
                             **rotation(model, force, moment, disc)})
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--voxel", type=float, default=3.0, help="voxel size (mm), default 3")
    ap.add_argument("--levels", default="L3-L4", help="the two levels, default L3-L4")
    ap.add_argument("--bmd", type=float, default=70.0,
                    help="trabecular QCT BMD (mg/cm^3), default 70")
    ap.add_argument("--anatomy", default="parametric", choices=("parametric", "ssm"),
                    help="the parametric segment (default) or the mean shape model's")
    args = ap.parse_args(argv)
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, python "
          f"{platform.python_version()}; {args.anatomy} {args.levels}, voxel {args.voxel:g} mm, "
          f"trabecular BMD {args.bmd:g} mg/cm^3")
    print(f"{'case':16s} {'disc':9s} {'ligaments':9s} {'rotation deg':>12s} "
          f"{'measured deg':>13s} {'2 SD':>4s} {'pressure MPa':>12s} {'ISL taut':>8s} "
          f"{'solve s':>7s}")
    for r in replica(args.voxel, args.bmd, args.levels, anatomy=args.anatomy):
        ref = r["reference"]
        inside = "yes" if ref.within(r["rotation"], 2.0) else "no"
        print(f"{r['case']:16s} {r['disc']:9s} {'yes' if r['ligaments'] else 'no':9s} "
              f"{r['rotation']:12.2f} {ref.describe():>13s} {inside:>4s} {r['pressure']:12.3f} "
              f"{r['tension']:8.2f} {r['seconds']:7.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
