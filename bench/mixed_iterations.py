"""Mixed against double precision in the voxel multigrid: CG iterations (issue 19, deliverable 3).

Issue 19 measured on an H200 that mixed precision (float32 operator, V-cycle and work vectors;
float64 solution and reductions) needs 45 iterations where double needs 24 at 100M DOF, and 96 at
1G DOF. This script counts the iterations both precisions take on the CPU, on the sizes a
development machine affords, so that a change to the mixed path can be judged before a GPU is
lent:

* ``block``: ``fem.meshes.voxel.bone_like_block`` (n^3 voxels, moduli 100..10 000 MPa from a
  smooth random field, log-uniform, the field ``bench/gpu.py`` uses), to rtol 1e-6, 1e-8, 1e-10;
* ``phantom``: the synthetic CT vertebra of ``fem.meshes.ct`` (40 x 40 x 30 voxels, a one-voxel
  cortical shell, 40 mg/cm^3 threshold), the model of the test of the float64 fallback, to rtol
  1e-8. Mixed precision runs without its stall check there (``fem.gmg.STALL_ITERATIONS`` raised),
  so the table shows where it ends after ``--maxiter`` iterations.

    python bench/mixed_iterations.py [--sizes 16,24,32,40,48] [--maxiter 600]

Prints one row per case: iterations in double and in mixed, their ratio (mixed / double), and the
relative residual mixed reached when it did not converge. Nothing is timed: the counts do not
depend on the machine (one thread, one range order).
"""

from __future__ import annotations

import argparse
import math
import os
import warnings

os.environ.setdefault("FEM_THREADS", "1")

RTOLS = (1e-6, 1e-8, 1e-10)


def _problem(model):
    """The model's voxel problem, as ``fem.solve`` builds it for the multigrid."""
    import numpy as np

    from fem import grid, system

    g, why = grid.grid_of(model)  # the occupied voxels' box, where fem.solve's multigrid works
    if g is None:
        raise SystemExit(f"not a voxel grid: {why}")
    conditions = grid.grid_conditions(model, g, system.compile_conditions(model))
    return conditions.problem(g, g.moduli(model.E), np)


def _count(problem, precision: str, rtol: float, maxiter: int) -> tuple[int | None, float]:
    """(iterations, or None where CG did not converge in maxiter; final relative residual) of
    the multigrid CG itself (``fem.solve`` would repeat a mixed solve that fails in float64)."""
    import numpy as np

    from fem.errors import ConvergenceError
    from fem.gmg import VoxelSolver

    try:
        _, info = VoxelSolver(problem, np, precision=precision).solve(rtol=rtol,
                                                                      maxiter=maxiter)
    except ConvergenceError as exc:
        return None, exc.residuals[-1] if exc.residuals else math.nan
    return info.iterations, info.residual


def phantom():
    import fem
    from fem.meshes.ct import Calibration, ct_voxel_model, synthetic_vertebra_phantom

    image, truth = synthetic_vertebra_phantom((40, 40, 30), bmd=90.0, seed=1)
    vm = ct_voxel_model(image, Calibration.from_rods(image, truth["rods"]), threshold_mg_cm3=40.0)
    vm.fix("zmin").add(fem.Pressure("zmax", 1.0))
    return vm.to_model()


def main(argv=None) -> int:
    import fem
    import fem.gmg
    from fem.meshes.voxel import bone_like_block

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="16,24,32,40,48", help="n of the n^3 blocks")
    ap.add_argument("--maxiter", type=int, default=600)
    args = ap.parse_args(argv)
    fem.gmg.STALL_ITERATIONS = 10 * args.maxiter  # count, do not stop early
    warnings.simplefilter("ignore", UserWarning)
    cases = [(f"block {n}^3", 3 * (n + 1) ** 3, rtol, lambda n=n: bone_like_block((n, n, n)))
             for n in (int(s) for s in args.sizes.split(",")) for rtol in RTOLS]
    cases.append(("CT phantom 40x40x30", None, 1e-8, phantom))
    print(f"{'case':<22}{'DOF':>9}{'rtol':>8}{'double':>8}{'mixed':>8}{'ratio':>7}  mixed ended at")
    for name, n_dof, rtol, build in cases:
        model = build()
        if not isinstance(model, fem.Model):
            model = model.to_model()
        n_dof = n_dof or model.n_dof
        problem = _problem(model)
        d, _ = _count(problem, "double", rtol, args.maxiter)
        m, res = _count(problem, "mixed", rtol, args.maxiter)
        ratio = f"{m / d:7.2f}" if m and d else f"{'-':>7}"
        ended = "converged" if m else f"residual {res:.1e} after {args.maxiter}"
        print(f"{name:<22}{n_dof:>9}{rtol:>8.0e}{d or '-':>8}{m or '-':>8}{ratio}  {ended}",
              flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
