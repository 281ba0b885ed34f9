"""Mesh dependence of the real-anatomy models: the L3 of the mean L2-L4 (Clouthier et al. 2023) at
trabecular BMD 70 mg/cm^3 under the standing load case (500 N through a rigid plate, bottom
fixed), as tet10 and as voxels at several element sizes. Prints the L3 stiffness, Pistoia
strength and cortical load share per model (see the ``fem.meshes.ssm_gmsh`` docstring).

    python bench/ssm_convergence.py                          # tet10 4 3 2.5, voxels 2.5 1.5 1
    python bench/ssm_convergence.py --tet10 4 --voxel 2.5
"""

from __future__ import annotations

import argparse
import os
import time
import warnings

import fem
from fem import metrics
from fem.meshes import loadcases, ssm
from fem.meshes.bone import BoneQuality


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tet10", type=float, nargs="*", default=[4.0, 3.0, 2.5])
    p.add_argument("--voxel", type=float, nargs="*", default=[2.5, 1.5, 1.0])
    p.add_argument("--bmd", type=float, default=70.0)
    a = p.parse_args(argv)
    mats = BoneQuality(bmd=a.bmd)
    print(f"L3 of the mean L2-L4, BMD {a.bmd:g} mg/cm^3, standing; {os.cpu_count()} CPUs")
    print(f"{'form':>6} {'size mm':>8} {'DOF':>9} {'stiffness N/mm':>15} {'strength N':>11} "
          f"{'cortex share':>12} {'time s':>7}")
    for form, h in [("tet10", h) for h in a.tet10] + [("voxel", h) for h in a.voxel]:
        t = time.perf_counter()
        if form == "tet10":
            from fem.meshes.ssm_gmsh import ssm_segment_model_tet10

            m = ssm_segment_model_tet10("L2-L4", mesh_size=h, materials=mats)
        else:
            m = ssm.ssm_segment_model("L2-L4", voxel_size=h, materials=mats)
        m = loadcases.loaded(m, "standing")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # B-bar hex8 in the nucleus
            r = fem.solve(m)
        row = metrics.level_metrics(r).set_index("level").loc["L3"]
        print(f"{form:>6} {h:8.2f} {m.n_dof:9d} {row['stiffness_n_per_mm']:15.0f} "
              f"{row['strength_pistoia_n']:11.0f} {row['load_share_cortex']:12.2f} "
              f"{time.perf_counter() - t:7.0f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
