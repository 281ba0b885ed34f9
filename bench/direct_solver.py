"""Benchmark: the sparse direct solver (SuperLU through ``fem.solvers.factorise``) with partial
pivoting (SuperLU's default diagonal threshold 1.0) and with the diagonal-preferring threshold
the project uses (:data:`fem.solvers.DIAG_PIVOT`), on the project's own systems, with CalculiX
(SPOOLES) on the same linear deck as the peer.

Rows:

* ``body``: a parametric L1 (``--voxel`` mm, default 2) under the standing load, one linear
  ``fem.solve(..., solver="direct")``; CalculiX solves the exported deck (hex8 fully integrated
  in both, so that the answers can be compared);
* ``disc``: the L4-L5 segment between platens in large deformation with an undrained disc,
  ramped to 1.6 kN in 11 steps (``tests/test_disc_fibres.py``'s replica of Holmes et al. 1993 at
  4 mm): dozens of factorisations and hundreds of solves with the factors.

For each: wall time, factorisations, and the largest difference of the answer from the
partial-pivoting one (relative to the largest displacement). Prints a table; state the machine
when quoting it.

    python bench/direct_solver.py
    python bench/direct_solver.py --voxel 1.5 --no-ccx
"""

from __future__ import annotations

import argparse
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

import fem
import fem.solvers as solvers
from fem.meshes import loadcases
from fem.meshes.bone import BoneQuality
from fem.meshes.vertebra import segment_model, vertebra_model

THRESHOLDS = (1.0, solvers.DIAG_PIVOT)
RAMP = (0.0625, 0.125, 0.1875, 0.25, 0.3125, 0.4375, 0.5625, 0.6875, 0.8125, 0.9375, 1.0)


class _Counted:
    """Counts and times the factorisations of one run."""

    def __init__(self):
        self.n, self.seconds = 0, 0.0
        self._factorise = solvers.factorise

    def __call__(self, A):
        t = time.perf_counter()
        try:
            return self._factorise(A)
        finally:
            self.n += 1
            self.seconds += time.perf_counter() - t


def _run(threshold: float, build):
    """(seconds, factorisations, seconds in them, displacement) of ``build()`` at ``threshold``."""
    import fem.increments as increments

    counted = _Counted()
    old = solvers.DIAG_PIVOT, solvers.factorise, increments.factorise
    solvers.DIAG_PIVOT = threshold
    solvers.factorise = increments.factorise = counted
    try:
        t = time.perf_counter()
        u = build()
        return time.perf_counter() - t, counted.n, counted.seconds, u
    finally:
        solvers.DIAG_PIVOT, solvers.factorise, increments.factorise = old


def body_case(voxel: float):
    m = loadcases.loaded(vertebra_model("L1", voxel_size=voxel, materials=BoneQuality(bmd=70)),
                         "standing")
    m.hex8_formulation = "full"
    return m, lambda: np.asarray(fem.solve(m, solver="direct").displacement)


def disc_case():
    m = segment_model("L4-L5", voxel_size=4.0, materials=BoneQuality(bmd=70), posterior=False)
    m = loadcases.between_platens(loadcases.loaded(m, "standing", scale=1600.0 / 500.0))
    return m, lambda: np.asarray(fem.solve_disc(m, kinematics="finite", drainage="undrained",
                                                increments=RAMP, solver="direct").displacement)


def ccx_seconds(model) -> tuple[float, np.ndarray]:
    from fem.io.calculix import run_ccx

    with tempfile.TemporaryDirectory() as tmp:
        deck = model.write_inp(Path(tmp) / "body.inp")
        t = time.perf_counter()
        ref = run_ccx(deck)
        return time.perf_counter() - t, np.asarray(ref.displacement).ravel()


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--voxel", type=float, default=2.0, help="voxel size of the body case (mm)")
    ap.add_argument("--no-ccx", action="store_true", help="leave CalculiX out")
    args = ap.parse_args(argv)
    rows = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        for name, (model, build) in (("body", body_case(args.voxel)), ("disc", disc_case())):
            ref = None
            for th in THRESHOLDS:
                secs, n, fsecs, u = _run(th, build)
                ref = u if ref is None else ref
                diff = float(np.abs(u - ref).max() / np.abs(ref).max())
                rows.append((name, model.n_dof, f"SuperLU, threshold {th:g}", secs, n, fsecs, diff))
            if name == "body" and not args.no_ccx:
                secs, uc = ccx_seconds(model)
                diff = float(np.abs(uc - ref.ravel()).max() / np.abs(ref).max())
                rows.append((name, model.n_dof, "CalculiX (SPOOLES)", secs, 1, float("nan"), diff))
    print("| case | dof | solver | wall (s) | factorisations | in them (s) | max diff |")
    print("|---|---|---|---|---|---|---|")
    for name, dof, solver, secs, n, fsecs, diff in rows:
        print(f"| {name} | {dof} | {solver} | {secs:.2f} | {n} | {fsecs:.2f} | {diff:.1e} |")


if __name__ == "__main__":
    main()
