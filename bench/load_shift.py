"""Cement's load shift onto the adjacent disc: Baroud et al. 2003's replica, and what sets its
size (docs/validation.md, "Cement's load shift onto the next disc").

    python bench/load_shift.py [--voxel 3] [--bmd 70] [--volume 3] [--ssm]
                               [--discs iso,fibres,undrained,finite]

Baroud, Nemes, Heini & Steffen 2003 (Eur Spine J 12:421; the abstract read): an FE model of an
L4-L5 motion segment in quasi-static compression, one vertebra augmented by a rigid cement
"pillar" under its endplates. The augmented endplate's bulge fell to 7 % of its value, the disc
(intervertebral joint) stiffened by about 17 %, the segment by about 11 %, the disc pressure
rose by about 19 % and the bulge of the endplate facing it across the disc rose too.

The replica: the parametric L4-L5 (posterior elements included) at ``--bmd`` between platens
held parallel (the rig of the disc rows of bench/validation.py), 500 N (``--ssm``: the shape
model's mean L4-L5, real anatomy with a disc half as tall); L5, the caudal body,
augmented two ways:

* **pillar** (Baroud's idealisation): every trabecular voxel of L5 in the columns under the
  L4-L5 nucleus becomes PMMA-bone composite (``fem.augment.composite_modulus`` at the bone's
  porosity), from endplate to endplate;
* **PVP**: ``--volume`` mL of PMMA by a unipedicular needle to the body's centre with a tall
  front (permeability anisotropy 20), so that the cement reaches both endplates, as a
  clinical injection can.

Each with the disc models of ``fem.solve_disc`` (``--discs``): ``iso`` the builders' isotropic
annulus (``fem.solve``), ``fibres`` the studies' default (drained, small strain, exact secant),
``undrained`` (small strain), ``finite`` (undrained, large deformation: the configuration that
reproduces the segment's measured stiffness, docs/validation.md). Printed per disc model and
augmentation: the change of the segment's stiffness (500 N over the platens' travel), of the
L4-L5 nucleus pressure, of the L4 inferior endplate's bulge (across the disc from the cement),
and the L5 superior endplate's bulge after / before.

Below the table, the mechanism in numbers: an augmentation can shift load onto the next disc
only by the volume the stiffened endplate no longer gives way by, against the volume the disc
loses as it shortens. The "endplate share" is the L5 superior endplate's swept volume (its
deflection into the body over its nodes, relative to its rim's plane) over the disc's
shortening times its cross-section; and the same share from measured numbers: Holmes et al.
1993's 0.14 mm at 1.6 kN over the model's own deflection shape, against a segment of 1 400 N/mm
(``fem.meshes.experiments``).
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import time
import warnings

import numpy as np

DISCS = ("iso", "fibres", "undrained", "finite")
FORCE = 500.0


def segment(h: float, bmd: float, anatomy: str = "parametric"):
    """The L4-L5 (posterior elements included) at ``bmd`` between parallel platens, 500 N;
    ``anatomy`` "parametric" or "ssm" (the shape model's mean, real anatomy)."""
    from validation import disc_segment  # bench/validation.py, beside this script

    return disc_segment(h, bmd, FORCE, platen=True, anatomy=anatomy)


def pillar(model, level: str = "L5", disc: str = "L4-L5", cement: str = "pmma"):
    """A copy of the voxel ``model`` with every fillable (trabecular) voxel of ``level`` in the
    columns under ``disc``'s nucleus made PMMA-bone composite, region ``<level>/cement_composite``
    (Baroud et al. 2003's pillar, from endplate to endplate)."""
    from fem.augment import composite_modulus, get_cement, porosity
    from fem.parts import FILLABLE

    if "voxel_labels" not in model.metadata:
        raise SystemExit("pillar: the pillar is built from voxel columns; give a voxel model")
    ijk = model.metadata["voxel_labels"]["ijk"]
    columns = {(i, j) for i, j, _ in ijk[model.regions[f"{disc}/nucleus"]].tolist()}
    body = np.concatenate([model.regions[f"{level}/{p}"] for p in FILLABLE
                           if f"{level}/{p}" in model.regions])
    under = body[[(i, j) in columns for i, j, _ in ijk[body].tolist()]]
    out = model.copy()
    E, nu = composite_modulus(out.E[under], porosity(out, under), get_cement(cement))
    return out.move_elements(under, f"{level}/cement_composite", E=E, nu=nu)


def pvp(model, volume_ml: float, level: str = "L5"):
    """Unipedicular PVP to the centre of ``level`` with a tall front (anisotropy 20)."""
    from fem import augment

    return augment.pvp(model, level, volume_ml, approach="unipedicular", tip_depth=0.5,
                       permeability_anisotropy=20.0)


def solve(model, disc: str):
    import fem

    if disc == "iso":
        return fem.solve(model, rtol=1e-8)
    if disc == "fibres":
        return fem.solve_disc(model, coupling=True)
    if disc == "undrained":
        return fem.solve_disc(model, coupling=True, drainage="undrained")
    if disc == "finite":
        return fem.solve_disc(model, kinematics="finite", drainage="undrained", increments=5)
    raise SystemExit(f"unknown disc model {disc!r}: one of {', '.join(DISCS)}")


def swept_volume(result, level: str, side: str, h: float) -> float:
    """Volume (mm^3) an endplate sweeps into its body: its deflection relative to its rim's
    plane (``fem.metrics.endplate_deflection``) over its nodes, h^2 each (voxel faces)."""
    from fem import metrics

    _, d, _, _ = metrics.endplate_deflection(result, level, side)
    return float(d.sum()) * h * h


def measure(result, h: float) -> dict:
    """The quantities of the load shift of one solve (module docstring)."""
    from fem import metrics

    rows = metrics.level_metrics(result).set_index("level")
    travel = -float(result.plate_motion("load:standing")[2])
    return {"stiffness": FORCE / travel, "travel": travel,
            "pressure": float(metrics.disc_metrics(result).set_index("disc")
                              .loc["L4-L5", "nucleus_pressure_mpa"]),
            "adjacent": float(rows.loc["L4", "endplate_bulge_inferior_mm"]),
            "treated": float(rows.loc["L5", "endplate_bulge_superior_mm"]),
            "swept": swept_volume(result, "L5", "superior", h)}


def replica(h: float, bmd: float = 70.0, volume_ml: float = 3.0, discs=DISCS,
            anatomy: str = "parametric", states=("intact", "pillar", "pvp")) -> dict:
    """{disc model: {state: measure(...)}} for ``states`` of "intact", "pillar" and "pvp", and
    the model's disc area."""
    from validation import disc_area

    m0 = segment(h, bmd, anatomy)
    make = {"intact": lambda: m0, "pillar": lambda: pillar(m0),
            "pvp": lambda: pvp(m0, volume_ml)}
    states = {name: make[name]() for name in states}
    out = {}
    for disc in discs:
        out[disc] = {}
        for name, m in states.items():
            t = time.perf_counter()
            out[disc][name] = measure(solve(m, disc), h)
            out[disc][name]["seconds"] = time.perf_counter() - t
    return {"rows": out, "area": disc_area(m0, h), "states": states}


def main(argv=None) -> int:
    from fem import metrics
    from fem.meshes import experiments as ex

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--voxel", type=float, default=3.0, help="voxel size (mm), default 3")
    ap.add_argument("--bmd", type=float, default=70.0, help="trabecular BMD (mg/cm^3)")
    ap.add_argument("--volume", type=float, default=3.0, help="PVP volume (mL), default 3")
    ap.add_argument("--ssm", action="store_true",
                    help="the shape model's mean L4-L5 (real anatomy, a thinner disc) instead of "
                         "the parametric one")
    ap.add_argument("--discs", default=",".join(DISCS),
                    help=f"disc models, comma-separated, of {', '.join(DISCS)}")
    args = ap.parse_args(argv)
    discs = [d.strip() for d in args.discs.split(",") if d.strip()]
    warnings.filterwarnings("ignore", message=".*B-bar formulation.*")
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, python "
          f"{platform.python_version()}; voxel {args.voxel:g} mm, trabecular BMD {args.bmd:g}")
    t0 = time.perf_counter()
    rep = replica(args.voxel, args.bmd, args.volume, discs,
                  "ssm" if args.ssm else "parametric")
    for name in ("pillar", "pvp"):
        m = rep["states"][name]
        contact = metrics.cement_endplate_contact(m, "L5")
        aug = m.metadata.get("augmentations")
        fill = aug[-1].fill_fraction if aug else math.nan
        print(f"{name}: L5 endplate area over cement, superior {contact['superior']:.2f}, "
              f"inferior {contact['inferior']:.2f}; fill {fill:.3f} of the body")
    print(f"\n{'disc model':10s} {'cement':7s} {'k (N/mm)':>9s} {'dk %':>6s} {'p (MPa)':>8s} "
          f"{'dp %':>6s} {'L4 inf bulge %':>14s} {'L5 sup (mm)':>11s} {'after/before':>12s} "
          f"{'time s':>7s}")
    for disc, states in rep["rows"].items():
        base = states["intact"]
        for name, r in states.items():
            d = {key: 100.0 * (r[key] / base[key] - 1.0)
                 for key in ("stiffness", "pressure", "adjacent")}
            print(f"{disc:10s} {name:7s} {r['stiffness']:9.1f} {d['stiffness']:6.2f} "
                  f"{r['pressure']:8.4f} {d['pressure']:6.2f} {d['adjacent']:14.2f} "
                  f"{r['treated']:11.4f} {r['treated'] / base['treated']:12.2f} "
                  f"{r['seconds']:7.1f}")
    for ref in (ex.BAROUD_2003_PRESSURE, ex.ROHLMANN_2006_PRESSURE):
        print(f"{ref.source} ({ref.kind}): {ref.quantity} {ref.describe()}")
    print("(Baroud et al. also: the augmented endplate's bulge 0.07 of before, the disc "
          "+17 %, the segment +11 %)")
    area = rep["area"]
    print(f"\nendplate share: L5 superior endplate's swept volume / (disc shortening x "
          f"{area:.0f} mm^2), intact")
    k_meas = ex.SEGMENT_STIFFNESS.mean
    for disc, states in rep["rows"].items():
        r = states["intact"]
        share = r["swept"] / (r["travel"] * area)
        shape = r["swept"] / r["treated"]  # mm^2: swept volume per mm of centre deflection
        measured = ex.HOLMES_1993.mean * shape / (1600.0 / k_meas * area)
        print(f"{disc:10s} model {100.0 * share:6.2f} %   from Holmes's 0.14 mm at 1.6 kN and "
              f"{k_meas:.0f} N/mm on this deflection shape ({shape:.0f} mm^2): "
              f"{100.0 * measured:5.2f} %")
    print(f"\ntotal {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
