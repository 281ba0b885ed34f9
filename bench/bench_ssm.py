"""Benchmark: real-anatomy segments (the mean L2-L5 of Clouthier et al. 2023) as voxel (hex8) and
tet10 models.

For each form and size: the time to build the model from the surfaces (voxel form:
voxelisation, regions, discs, sets; tet10 form: the same plus gmsh's surface remeshing and
volume filling), its DOF, its surface fidelity (the largest Hausdorff distance over the levels
and the mean distance, :func:`fem.meshes.ssm.hausdorff`, point to triangle both ways), and the
time of a 0.5 MPa top-pressure solve by vertebra-fem (auto solver: AMG-CG for these sizes) and,
as the peer on the same model, by CalculiX (its exported deck: C3D8 full integration for the
voxels, as vertebra-fem is told to use here, and C3D10). Prints a table; the machine is stated
by the caller.

    python bench/bench_ssm.py                       # L2-L4: voxels 2.5 and 1.5 mm, tet10 4 and 3
    python bench/bench_ssm.py --levels L2-L5 --voxel 2.0 1.0 --tet10 --no-ccx
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

import fem
from fem.meshes import ssm


def row(levels: str, form: str, h: float, with_ccx: bool) -> dict:
    t = time.perf_counter()
    if form == "voxel":
        m = ssm.ssm_segment_model(levels, voxel_size=h)
        m.hex8_formulation = "full"
    else:
        from fem.meshes.ssm_gmsh import ssm_segment_model_tet10

        m = ssm_segment_model_tet10(levels, mesh_size=h)
    build = time.perf_counter() - t
    m.fix("bottom").add(fem.Pressure("top", 0.5))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        t = time.perf_counter()
        r = fem.solve(m)
        solve = time.perf_counter() - t
    surfs = ssm.load_surfaces(levels)
    fid = [ssm.hausdorff(m, lv, surfs[lv]) for lv in surfs]
    out = {"form": form, "size": h, "elements": m.n_elements, "dof": m.n_dof, "build": build, "solve": solve,
           "hausdorff": max(f[0] for f in fid), "mean_dist": float(np.mean([f[1] for f in fid])),
           "solver": f"{r.info.solver} ({r.info.iterations} it)", "ccx": float("nan"),
           "diff": float("nan")}
    if with_ccx:
        from fem.io.calculix import run_ccx

        with tempfile.TemporaryDirectory() as tmp:
            deck = m.write_inp(Path(tmp) / "ssm.inp")
            t = time.perf_counter()
            ref = run_ccx(deck)
            out["ccx"] = time.perf_counter() - t
        u = r.displacement[np.searchsorted(m.node_ids, ref.node_labels)]
        out["diff"] = float(np.abs(u - ref.displacement).max() / np.abs(u).max())
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--levels", default="L2-L4")
    p.add_argument("--voxel", type=float, nargs="*", default=[2.5, 1.5],
                   help="voxel sizes, mm (none: skip the voxel form)")
    p.add_argument("--tet10", type=float, nargs="*", default=[4.0, 3.0],
                   help="tet10 mesh sizes, mm (none: skip the tet10 form)")
    p.add_argument("--no-ccx", action="store_true")
    a = p.parse_args(argv)
    print(f"SSM {a.levels}, 0.5 MPa on the top endplate, bottom fixed; {os.cpu_count()} CPUs")
    print(f"{'form':>6} {'size mm':>8} {'elements':>9} {'DOF':>9} {'build s':>8} {'solve s':>8} "
          f"{'solver':>16} {'ccx s':>7} {'|u-u_ccx|':>10} {'Hausdorff mm':>12} {'mean mm':>8}")
    for form, h in [("voxel", h) for h in a.voxel] + [("tet10", h) for h in a.tet10]:
        r = row(a.levels, form, h, not a.no_ccx)
        print(f"{r['form']:>6} {r['size']:8.2f} {r['elements']:9d} {r['dof']:9d} {r['build']:8.1f} "
              f"{r['solve']:8.1f} {r['solver']:>16} {r['ccx']:7.1f} {r['diff']:10.1e} "
              f"{r['hausdorff']:12.2f} {r['mean_dist']:8.2f}",
              flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
