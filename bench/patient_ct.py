"""Benchmark: a patient's L1-L3 from the shared clinical CT and its TotalSegmentator masks, image
to solved result (issue 20, deliverable 5).

Per voxel size, in a fresh process each (so its peak memory is its own): the time to read the CT
and the masks, to build the segment (fem.meshes.patient), to solve it under standing (500 N
through a rigid plate, auto solver) and to write the result's VTU; its DOF; the process's peak
resident memory. The peer on the same model is CalculiX solving the exported deck (C3D8, full
integration, as vertebra-fem is told to use here), where ``--ccx`` lists the size. Prints a
table; state the machine beside it.

    python bench/patient_ct.py                      # 2 and 1 mm, CalculiX at 2 mm
    python bench/patient_ct.py --voxel 3 2 --ccx 3 2
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "ct-abdomen-totalsegmentator"


def one(h: float, with_ccx: bool) -> dict:
    """Run one size in this process; returns its row."""
    import resource

    import numpy as np

    import fem
    from fem.meshes import ct, loadcases
    from fem.meshes.patient import patient_segment_model
    from fem.meshes.segmentation import read_segmentation

    t = time.perf_counter()
    image = ct.read_nifti(DATA / "ct.nii.gz")
    seg = read_segmentation(DATA / "masks")
    t_read = time.perf_counter() - t
    t = time.perf_counter()
    m = patient_segment_model(image, seg, ct.Calibration(0.8, -8.0), levels="L1-L3",
                              voxel_size=h)
    m.hex8_formulation = "full"
    t_build = time.perf_counter() - t
    m = loadcases.loaded(m, "standing")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        t = time.perf_counter()
        r = fem.solve(m)
        t_solve = time.perf_counter() - t
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        r.write(Path(tmp) / "patient.vtu")
        t_write = time.perf_counter() - t
        out = {"h": h, "elements": m.n_elements, "dof": m.n_dof, "read": t_read,
               "build": t_build, "solve": t_solve, "write": t_write,
               "solver": f"{r.info.solver} ({r.info.iterations} it)",
               "peak_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2,
               "ccx": float("nan"), "diff": float("nan")}
        if with_ccx:
            from fem.io.calculix import run_ccx

            deck = m.write_inp(Path(tmp) / "patient.inp")
            t = time.perf_counter()
            ref = run_ccx(deck)
            out["ccx"] = time.perf_counter() - t
            u = np.asarray(r.displacement)[np.searchsorted(m.node_ids, ref.node_labels)]
            out["diff"] = float(np.abs(u - ref.displacement).max() / np.abs(u).max())
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--voxel", type=float, nargs="+", default=[2.0, 1.0], help="mm")
    p.add_argument("--ccx", type=float, nargs="*", default=[2.0],
                   help="sizes also solved by CalculiX (none: no peer)")
    p.add_argument("--one", type=float, help=argparse.SUPPRESS)
    p.add_argument("--with-ccx", action="store_true", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.one is not None:  # the child: one size, its row as JSON
        print(json.dumps(one(a.one, a.with_ccx)))
        return 0
    if not (DATA / "ct.nii.gz").is_file():
        print(f"the shared CT data are absent ({DATA})", file=sys.stderr)
        return 2
    print(f"patient L1-L3 (shared clinical CT, 3 mm scan), standing 500 N; {os.cpu_count()} CPUs")
    print(f"{'voxel mm':>8} {'elements':>9} {'DOF':>9} {'read s':>7} {'build s':>8} "
          f"{'solve s':>8} {'write s':>8} {'solver':>16} {'peak GB':>8} {'ccx s':>7} "
          f"{'|u-u_ccx|':>10}")
    for h in a.voxel:
        cmd = [sys.executable, __file__, "--one", str(h)] + (
            ["--with-ccx"] if any(abs(h - c) < 1e-9 for c in a.ccx) else [])
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode:
            print(f"{h:8.2f} failed: {done.stderr.strip().splitlines()[-1]}")
            continue
        r = json.loads(done.stdout.strip().splitlines()[-1])
        print(f"{r['h']:8.2f} {r['elements']:9d} {r['dof']:9d} {r['read']:7.1f} "
              f"{r['build']:8.1f} {r['solve']:8.1f} {r['write']:8.1f} {r['solver']:>16} "
              f"{r['peak_gb']:8.2f} {r['ccx']:7.1f} {r['diff']:10.1e}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
