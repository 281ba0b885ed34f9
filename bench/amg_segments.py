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

Columns: DOF (equations after constraints), CG iterations and solve time (s; set-up excluded,
shown apart) of vertebra-fem's AMG on K itself ("plain", the default before 2026-12-06) and on
the stand-in with exact solves on the nuclei ("stand-in", the default; the same as plain where a
model has no nearly incompressible element), both at fem.amg.THETA, and of pyamg's
smoothed_aggregation_solver (symmetric strength theta 0, block Gauss-Seidel smoothing, CG) on K.
"""

from __future__ import annotations

import argparse
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


def ours(model, stand_in: bool):
    import math

    import fem
    import fem.analysis

    old = fem.analysis.INCOMPRESSIBLE_RATIO
    if not stand_in:
        fem.analysis.INCOMPRESSIBLE_RATIO = math.inf  # no element counts: the plain AMG
    try:
        r = fem.solve(model, solver="amg", backend="numpy", rtol=1e-8)
    finally:
        fem.analysis.INCOMPRESSIBLE_RATIO = old
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


def main(argv=None) -> int:
    import fem.amg

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="the two smallest models only")
    args = ap.parse_args(argv)
    warnings.filterwarnings("ignore")
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
