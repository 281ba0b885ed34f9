"""Benchmark: host memory and time of a voxel solve and of writing its result, by route.

Issue 19, deliverable 1: ``fem.solve(VoxelModel)`` on the grid (the native route: conditions and
rigid-body check compiled on the grid, a :class:`fem.voxel_result.VoxelResult`) against the hex8
route it replaces (``fem.solve(vm.to_model())``: what ``fem.solve(vm)`` did before), both by the
matrix-free multigrid (``solver="gmg"``, rtol 1e-8) on the CPU (NumPy), in double precision,
and the native route in mixed precision too.

Model: an n^3 voxel cube of ``fem.meshes.voxel.bone_like_block`` (moduli log-uniform over 100:1
from a smooth random field; zmin supported in z, two edges in x and y; 1 MPa on zmax), n chosen so
that 3 (n+1)^3 is nearest to the requested DOF count.

Every (route, size) runs in a fresh subprocess (``--row``), after a 4^3 solve that does the lazy
imports and starts the worker threads:

* timed (no tracing): ``solve`` = ``fem.solve`` (for the hex8 route including ``to_model``),
  ``write`` = ``Result.write`` of a zlib-compressed VTU (stress recovery, nodal averages, file);
  on the native routes then ``write .vti``, the same fields as a zlib-compressed VTK image of
  the whole grid (``VoxelResult.write("r.vti")``, after the VTU: the stresses are computed);
* traced: the same solve again under ``tracemalloc`` (NumPy reports its array buffers to it), its
  peak minus what was allocated before it started, per DOF: "host B/DOF beyond the moduli" (the
  VoxelModel and its moduli exist before tracing starts, so they are not counted; everything the
  solve allocates is, including a copy of the moduli). The write's traced peak is reported too.
  ``ru_maxrss`` grows only by what the interpreter's allocator keeps, so it is printed as a check
  (peak RSS of the row's process, MB).

    python bench/voxel_memory.py                   # 0.1M, 0.5M, 1M DOF, both routes
    python bench/voxel_memory.py --sizes 0.1M      # quicker

MB here are 10^6 bytes. See bench/README.md for a table.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

RTOL = 1e-8
#: hex8: fem.solve(vm.to_model()), what fem.solve(vm) did before; grid: fem.solve(vm), the native
#: route; grid-mixed: the native route in precision="mixed"
ROUTES = ("hex8", "grid", "grid-mixed")
TARGET_B_PER_DOF = 40.0


def parse_dofs(text: str) -> int:
    scale = {"k": 1e3, "m": 1e6}.get(text[-1].lower(), 1.0)
    return int(round(float(text[:-1] if scale != 1.0 else text) * scale))


def cube_for(dofs: int) -> int:
    ns = np.arange(1, 1000)
    return int(ns[np.argmin(np.abs(3 * (ns + 1) ** 3 - dofs))])


def model_for(n: int):
    from fem.meshes.voxel import bone_like_block

    return bone_like_block((n, n, n), contrast=100.0)


def solve(route: str, vm):
    import fem

    target = vm.to_model() if route == "hex8" else vm
    precision = "mixed" if route.endswith("mixed") else "double"
    return fem.solve(target, solver="gmg", rtol=RTOL, precision=precision)


def traced(fn):
    """(value of fn(), tracemalloc peak above the start, bytes)."""
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    value = fn()
    peak = tracemalloc.get_traced_memory()[1] - base
    tracemalloc.stop()
    return value, peak


def row(route: str, n: int) -> dict:
    """One route at one size (run in its own process)."""
    solve(route, model_for(4))  # imports, worker threads
    vm = model_for(n)
    gc.collect()
    t = time.perf_counter()
    res = solve(route, vm)
    t_solve = time.perf_counter() - t
    n_dof = res.info.n_dof
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        res.write(Path(tmp) / "r.vtu")
        t_write = time.perf_counter() - t
        size = (Path(tmp) / "r.vtu").stat().st_size
        t_vti = vti_size = None
        if route != "hex8":  # a VoxelResult also writes the image grid (.vti)
            t = time.perf_counter()
            res.write(Path(tmp) / "r.vti")
            t_vti = time.perf_counter() - t
            vti_size = (Path(tmp) / "r.vti").stat().st_size
    rec = {"route": route, "n": n, "n_dof": n_dof, "iterations": res.info.iterations,
           "solve_s": t_solve, "write_s": t_write, "vtu_bytes": size,
           "write_vti_s": t_vti, "vti_bytes": vti_size,
           "times": dict(res.info.times), "held_bytes": int(res.info.held_bytes)}
    del res
    res, peak = traced(lambda: solve(route, vm))
    rec["solve_peak_bytes"] = peak
    with tempfile.TemporaryDirectory() as tmp:
        _, wpeak = traced(lambda: res.write(Path(tmp) / "r.vtu"))
    rec["write_peak_bytes"] = wpeak
    rec["moduli_bytes"] = vm.grid_moduli.nbytes
    rec["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e6
    return rec


def run_rows(sizes, routes) -> list[dict]:
    out = []
    for dofs in sizes:
        n = cube_for(dofs)
        for route in routes:
            cmd = [sys.executable, __file__, "--row", route, str(n)]
            done = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                raise RuntimeError(f"row {route} n={n} failed:\n{done.stderr[-3000:]}")
            out.append(json.loads(done.stdout.strip().splitlines()[-1]))
            print(f"  done: {route} {out[-1]['n_dof']} DOF", file=sys.stderr, flush=True)
    return out


def machine() -> str:
    import fem

    return (f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
            f"Python {platform.python_version()}, NumPy {np.__version__}, "
            f"vertebra-fem {fem.__version__}, backend numpy (no GPU)")


def table(rows: list[dict]) -> str:
    head = ("| route | DOF | iterations | solve s | write s | write/solve | host B/DOF solve "
            "(beyond moduli) | host B/DOF write | peak RSS MB | write .vti s | .vti/.vtu bytes |")
    lines = [head, "|" + "---|" * 11]
    for r in rows:
        d = r["n_dof"]
        vti = ("- | -" if r.get("write_vti_s") is None else
               f"{r['write_vti_s']:.2f} | {r['vti_bytes'] / r['vtu_bytes']:.2f}")
        lines.append(
            f"| {r['route']} | {d:,} | {r['iterations']} | {r['solve_s']:.2f} | "
            f"{r['write_s']:.2f} | {r['write_s'] / r['solve_s']:.2f} | "
            f"{r['solve_peak_bytes'] / d:.1f} | {r['write_peak_bytes'] / d:.1f} | "
            f"{r['peak_rss_mb']:.0f} | {vti} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="0.1M,0.5M,1M")
    p.add_argument("--routes", default=",".join(ROUTES))
    p.add_argument("--row", nargs=2, metavar=("ROUTE", "N"), help=argparse.SUPPRESS)
    p.add_argument("--json", help="also write the rows to this file")
    a = p.parse_args(argv)
    if a.row:
        print(json.dumps(row(a.row[0], int(a.row[1]))))
        return 0
    rows = run_rows([parse_dofs(s) for s in a.sizes.split(",")], a.routes.split(","))
    print(machine())
    print(f"target: at most {TARGET_B_PER_DOF:g} B/DOF beyond the moduli (grid route)")
    print(table(rows))
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
