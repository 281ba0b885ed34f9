"""Benchmark: AMG-CG iterations and times on vertebral segments, vertebra-fem's smoothed
aggregation plain and on its compressible stand-in (the default since 2026-12-06,
:class:`fem.amg.IncompressibleBlocks`), beside pyamg's own solver (the peer).

Segments hold bone (cortex up to 2 800 MPa) and discs (nucleus 1 MPa, nu 0.499) in one matrix:
the contrast the AMG's aggregation must respect (fem.amg explains why theta 0.02), and a nearly
incompressible nucleus, on which smoothed aggregation's coarse spaces lock (the stand-in's
reason). Each model is loaded by the standing case as an endplate pressure (no rigid plate, so
pyamg gets the very same matrix and rigid-body modes), solved to a relative residual of 1e-8.

    python bench/amg_segments.py            # the five models of the fem.amg docstring table
    python bench/amg_segments.py --quick    # the two smallest
    python bench/amg_segments.py --finite 4 3 [--plain-up-to 4]   # the increments' solves

``--finite H ...``: the large-deformation increments (``fem.increments``) instead, on the disc
configuration that reproduces a motion segment's stiffness: the parametric L4-L5 (posterior
elements cut) with an undrained fibre disc (``fem.solve_disc(kinematics="finite",
drainage="undrained")``: lambda / mu about 8 000 in the whole disc) ramped to 1.6 kN between
parallel platens, at each voxel size H mm. Columns: the direct solver (SuperLU, reusing its
factors as preconditioner, the peer: time, factorisations), the plain AMG of the first tangent
(the default before 2026-12-06; only up to ``--plain-up-to`` mm, it is slow) and the AMG of the
first tangent's stand-in with the disc refactored from each tangent (the default since): time,
CG iterations in all and the most in one solve; and the steepest force-travel slope each found.
Then, for the default solver's runs, the disc's numbers (docs/validation.md, "An undrained
disc"): that steepest slope, the secant and the tangent (chord over the increments either side)
at the standing 500 N, the nucleus pressure at 500 N over load / disc area (Nachemson's ratio)
and the caudal endplate's deflection at 1.6 kN (Holmes et al. 1993).

Columns: DOF (equations after constraints), CG iterations and solve time (s; set-up excluded,
shown apart) of vertebra-fem's AMG on K itself ("plain", the default before 2026-12-06) and on
the stand-in with exact solves on the nuclei ("stand-in", the default; the same as plain where a
model has no nearly incompressible element), both at fem.amg.THETA, and of pyamg's
smoothed_aggregation_solver (symmetric strength theta 0, block Gauss-Seidel smoothing, CG) on K.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import time
import warnings

import numpy as np


def models(quick: bool):
    from fem.meshes import blocks, loadcases, ssm, ssm_gmsh, vertebra

    out = [("parametric L1-L3, 3 mm", lambda: vertebra.segment_model("L1-L3", voxel_size=3.0)),
           ("parametric L1, 1.5 mm", lambda: vertebra.vertebra_model("L1", voxel_size=1.5))]
    if not quick:
        out += [("parametric L1-L3, 2 mm", lambda: vertebra.segment_model("L1-L3",
                                                                          voxel_size=2.0)),
                ("shape model L2-L4, 2 mm", lambda: ssm.ssm_segment_model("L2-L4",
                                                                         voxel_size=2.0)),
                ("shape model L3-L4, tet10 4 mm",
                 lambda: ssm_gmsh.ssm_segment_model_tet10("L3-L4", mesh_size=4.0)),
                ("parametric T12-L4, 2 mm", lambda: vertebra.segment_model("T12-L4",
                                                                           voxel_size=2.0))]
    for name, build in out:
        yield name, loadcases.loaded(build(), "standing", method="pressure")
    block = blocks.hex_block((30, 30, 30), (30.0, 30.0, 30.0))
    block.set_material(None, E=100.0, nu=0.3)
    block.fix("zmin").add(__import__("fem").Pressure("zmax", 1.0))
    yield "homogeneous 30^3 hex block", block


@contextlib.contextmanager
def _stand_in(on: bool):
    """The AMG on its compressible stand-in (the default) or, with ``on`` False, plain: no
    element counts as nearly incompressible while the block runs."""
    import math

    import fem.analysis

    old = fem.analysis.INCOMPRESSIBLE_RATIO
    if not on:
        fem.analysis.INCOMPRESSIBLE_RATIO = math.inf
    try:
        yield
    finally:
        fem.analysis.INCOMPRESSIBLE_RATIO = old


def ours(model, stand_in: bool):
    import fem

    with _stand_in(stand_in):
        r = fem.solve(model, solver="amg", backend="numpy", rtol=1e-8)
    return r.info.n_equations, r.info.iterations, r.info.times["setup"], r.info.times["solve"]


def peer(model):
    """pyamg's smoothed aggregation on the constrained matrix fem.solve builds."""
    import pyamg

    import fem
    import fem.analysis as an
    from fem.solvers import rigid_body_modes

    seen = {}
    constrain = an.constrain

    def capture(*args, **kwargs):
        seen["lin"] = lin = constrain(*args, **kwargs)
        return lin

    an.constrain = capture
    try:
        fem.solve(model, solver="amg", backend="numpy", maxiter=1, rtol=1e-8)
    except fem.ConvergenceError:
        pass
    finally:
        an.constrain = constrain
    lin = seen["lin"]
    K = lin.K.tobsr(blocksize=(3, 3))
    B = rigid_body_modes(model.points)
    t = time.perf_counter()
    ml = pyamg.smoothed_aggregation_solver(K, B=B, strength=("symmetric", {"theta": 0.0}),
                                           max_coarse=100)
    setup = time.perf_counter() - t
    res = []
    t = time.perf_counter()
    ml.solve(np.asarray(lin.rhs), tol=1e-8, accel="cg", residuals=res, maxiter=5000)
    return len(res) - 1, setup, time.perf_counter() - t


def finite_disc(h: float, solver: str, stand_in: bool = True):
    """(DOF, seconds, CG iterations (all, most in a solve) or factorisations, steepest slope
    N/mm) of the undrained L4-L5 ramp (bench/validation.py's RAMP) at voxel ``h`` with
    ``solver``."""
    from validation import RAMP, disc_segment, force_travel  # bench/, beside this script

    import fem

    m = disc_segment(h, 70.0, 1600.0, platen=True, posterior=False)
    t = time.perf_counter()
    with _stand_in(stand_in):
        r = fem.solve_disc(m, kinematics="finite", drainage="undrained", increments=RAMP,
                           solver=solver)
    t = time.perf_counter() - t
    f, w = force_travel(r, 1600.0)
    k = max((f[i + 1] - f[i]) / (w[i + 1] - w[i]) for i in range(len(f) - 1))
    info = r.history.info
    its = info.get("cg_iterations", [])
    work = (f"{sum(its):6d} {max(its):4d}" if its else
            f"{info['factorisations']:6d} {'':4s}")
    return m.n_dof, t, work, k, _disc_numbers(m, h, r, f, w, k)


def _disc_numbers(m, h, r, f, w, k) -> str:
    """The disc's numbers of a ramp (module docstring) as a table row's cells."""
    from validation import disc_area

    from fem import metrics

    at = [i for i, x in enumerate(f) if abs(x - 500.0) < 1e-6]
    if not at or at[0] + 1 >= len(f):
        return "the ramp has no step end at 500 N"
    i = at[0]
    area = disc_area(m, h)
    p = float(metrics.level_metrics(r.history.steps[i - 1].result).set_index("level").loc[
        "L4", "disc_pressure_mpa"])
    bulge = float(metrics.level_metrics(r).set_index("level").loc[
        "L5", "endplate_bulge_superior_mm"])
    tangent = (f[i + 1] - f[i - 1]) / (w[i + 1] - w[i - 1])
    return (f"{k:8.0f} {500.0 / w[i]:8.0f} {tangent:8.0f} {p / (500.0 / area):6.2f} "
            f"{bulge:8.3f}")


def finite_table(sizes, plain_up_to: float) -> None:
    print(f"{'L4-L5 undrained, finite':24s} {'DOF':>7s} | {'direct (peer)':>25s} | "
          f"{'plain AMG':>25s} | {'stand-in + disc blocks':>25s}")
    head = f"{'s':>6s} {'its':>6s} {'max':>4s} {'N/mm':>6s}"
    lus = f"{'s':>6s} {'LUs':>6s} {'':4s} {'N/mm':>6s}"
    print(f"{'':24s} {'':>7s} | {lus:>25s} | {head:>25s} | {head:>25s}")
    disc = {}
    for h in sizes:
        n, td, wd, kd, _ = finite_disc(h, "direct")
        plain = "not run".rjust(25)
        if h >= plain_up_to:
            _, tp, wp, kp, _ = finite_disc(h, "amg", stand_in=False)
            plain = f"{tp:6.1f} {wp} {kp:6.0f}"
        _, tb, wb, kb, disc[h] = finite_disc(h, "amg")
        print(f"{f'{h:g} mm voxels':24s} {n:7d} | {td:6.1f} {wd} {kd:6.0f} | {plain} | "
              f"{tb:6.1f} {wb} {kb:6.0f}", flush=True)
    print()
    print(f"{'voxel':8s} {'steepest':>8s} {'secant':>8s} {'tangent':>8s} {'ratio':>6s} "
          f"{'endplate':>8s}")
    print(f"{'mm':8s} {'N/mm':>8s} {'@500 N':>8s} {'@500 N':>8s} {'@500 N':>6s} "
          f"{'mm@1.6kN':>8s}")
    for h, row in disc.items():
        print(f"{h:<8g} {row}")


def main(argv=None) -> int:
    import fem.amg

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="the two smallest models only")
    ap.add_argument("--finite", type=float, nargs="+", metavar="H",
                    help="the large-deformation undrained L4-L5 at these voxel sizes (mm)")
    ap.add_argument("--plain-up-to", type=float, default=4.0, metavar="H",
                    help="with --finite: run the plain AMG only at voxels this size or larger")
    args = ap.parse_args(argv)
    warnings.filterwarnings("ignore")
    if args.finite:
        print(f"machine: {platform.machine()}, {os.cpu_count()} cores, python "
              f"{platform.python_version()}; Newton to 1e-6, CG to 1e-8")
        finite_table(args.finite, args.plain_up_to)
        return 0
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, python "
          f"{platform.python_version()}; rtol 1e-8; theta {fem.amg.THETA:g}")
    print(f"{'model':32s} {'DOF':>8s} | {'plain':>16s} | {'stand-in':>16s} | "
          f"{'pyamg (peer)':>16s}")
    print(f"{'':32s} {'':>8s} | {'its  setup solve':>16s} | {'its  setup solve':>16s} | "
          f"{'its  setup solve':>16s}")
    for name, model in models(args.quick):
        n, i0, s0, t0 = ours(model, False)
        _, i1, s1, t1 = ours(model, True)
        ip, sp, tp = peer(model)
        print(f"{name:32s} {n:8d} | {i0:4d} {s0:5.2f} {t0:5.2f} | {i1:4d} {s1:5.2f} {t1:5.2f} | "
              f"{ip:4d} {sp:5.2f} {tp:5.2f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
