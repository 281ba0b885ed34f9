"""The lumbar disc in large deformation: the parametric L4-L5 (posterior elements cut) between
parallel platens under a growing axial load, with the fibre-reinforced annulus of
``fem.solve_disc`` in small strain, in large deformation, and in large deformation with an
undrained disc (``drainage="undrained"``: the annulus ground and the nucleus keep their shear
moduli and take water's bulk modulus, as a load of seconds to minutes meets them). Prints, per load increment, the platen travel and
the segment's secant and tangent stiffness, then the nucleus pressure; writes the last state
(Cauchy stress, Green-Lagrange strain, the volume ratio ``jacobian``, fibre strains) as VTU.
Units: mm, N, MPa.

    python examples/disc_large_deformation.py                         # 3 mm, 1.6 kN: about 10 min
    python examples/disc_large_deformation.py --voxel 5 --load 500    # seconds

docs/validation.md ("The fibre disc in large deformation", "An undrained disc") gives the 3 mm
numbers and what they are compared with (a motion segment's 1 400 +- 480 N/mm, Holmes et al.
1993's endplate).
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

import fem
from fem import metrics
from fem.meshes import loadcases
from fem.meshes.bone import BoneQuality
from fem.meshes.vertebra import segment_model

CASES = (("small strain", "small", "drained"),
         ("large deformation", "finite", "drained"),
         ("large deformation, undrained disc", "finite", "undrained"))


def segment(voxel: float, load: float):
    """L4-L5 at 70 mg/cm^3, L5 fixed, ``load`` N on a platen held parallel on L4."""
    m = segment_model("L4-L5", voxel_size=voxel, materials=BoneQuality(bmd=70), posterior=False)
    m = loadcases.loaded(m, "standing", scale=load / 500.0)
    m = loadcases.between_platens(m)
    return m


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--voxel", type=float, default=3.0, help="voxel size (mm), default 3")
    ap.add_argument("--load", type=float, default=1600.0, help="axial load (N), default 1600")
    ap.add_argument("--increments", type=int, default=8, help="load increments, default 8")
    ap.add_argument("--out", type=Path, default=Path("."), help="folder for the VTU")
    args = ap.parse_args(argv)
    warnings.filterwarnings("ignore", message=".*B-bar formulation.*")
    m = segment(args.voxel, args.load)
    print(f"L4-L5, {args.voxel:g} mm voxels, {m.n_dof} dofs, {args.load:g} N in "
          f"{args.increments} increments")
    last = None
    for label, kinematics, drainage in CASES:
        extra = {"increments": args.increments} if kinematics == "finite" else {}
        # sparse LU, its factors reused across Newton iterations (fem.increments): at 3 mm
        # faster than AMG-CG, which "auto" would pick above 5 000 equations
        r = fem.solve_disc(m, kinematics=kinematics, drainage=drainage, solver="direct",
                           **extra)
        print(f"\n{label}")
        print(f"{'load N':>8s} {'travel mm':>10s} {'secant N/mm':>12s} {'tangent N/mm':>13s}")
        steps = [(s.load_factor, s.result) for s in r.history.steps] if kinematics == "finite" \
            else [(1.0, r)]
        prev = (0.0, 0.0)
        for lam, res in steps:
            f, w = args.load * lam, -float(res.plate_motion("load:standing")[2])
            print(f"{f:8.0f} {w:10.4f} {f / w:12.0f} {(f - prev[0]) / (w - prev[1]):13.0f}")
            prev = (f, w)
        p = float(metrics.level_metrics(r).set_index("level").loc["L4", "disc_pressure_mpa"])
        print(f"nucleus pressure {p:.3f} MPa")
        last = r
    path = last.write(args.out / "disc_large_deformation.vtu")
    print(f"\nwrote {path or args.out / 'disc_large_deformation.vtu'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
