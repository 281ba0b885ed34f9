"""Benchmark: the matrix-free voxel solver (geometric-multigrid CG) on heterogeneous bone-like cubes.

Each model is an n x n x n voxel cube from ``fem.meshes.voxel.bone_like_block`` (moduli from a
smooth random field, log-uniform over 100:1; z supported on zmin, 1 MPa pressure on zmax), n
chosen so that 3 (n+1)^3 is nearest to the requested DOF count. Every row runs in a fresh
subprocess (``--row``), so its peak resident memory is its own:

* gmg rows (every size, double and mixed precision): ``fem.solve(model, solver="gmg")`` to
  rtol 1e-8, timed (after a solve of a 4^3 model has done the lazy imports); then ru_maxrss; then the same solve again under tracemalloc for the peak of
  the arrays it allocates (tracemalloc starts after the model is built, so the input is not
  counted; the traced run is not the timed one, tracing costs time);
* peer rows (one size, 1M DOF by default): the assembled AMG path of vertebra-fem
  (``solver="amg"``) and scikit-fem + pyamg on the same model, each compared with the gmg double
  answer by max |u - u_gmg| / max |u_gmg| (node-wise vector norms).

    python bench/bench_voxel.py                  # 0.1M, 0.3M, 1M, 3M DOF; peers at 1M
    python bench/bench_voxel.py --quick          # 0.1M only, peers too (a smoke run)
    python bench/bench_voxel.py --no-peers       # gmg rows only

The issue-3 targets it checks: iterations within 2x from the smallest to the largest size
(deliverable 4), held bytes per DOF at most 40 in double and 24 in mixed precision
(deliverable 7), and the 1M-DOF gmg solve in at most 15 s with peak RSS under 1 GB
(deliverable 8). MB here are 10^6 bytes. See bench/README.md.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import re
import resource
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

RTOL = 1e-8
CONTRAST = 100.0
PRECISIONS = ("double", "mixed")
HELD_LIMIT = {"double": 40.0, "mixed": 24.0}  # bytes per DOF (deliverable 7)
ITERATION_RATIO_LIMIT = 2.0  # deliverable 4
TIME_LIMIT_S = 15.0  # deliverable 8, gmg at 1M DOF
RSS_LIMIT_B = 1e9
PEER_NAMES = {"gmg-double": "vfem gmg double", "gmg-mixed": "vfem gmg mixed",
              "amg": "vfem assembled AMG", "skfem": "skfem+pyamg"}


def parse_dofs(text: str) -> int:
    """'0.3M', '100k' or '300000' -> a number of DOF."""
    m = re.fullmatch(r"\s*([0-9.]+)\s*([kKmM]?)\s*", text)
    if not m:
        raise argparse.ArgumentTypeError(f"not a DOF count: {text!r} (e.g. 0.3M, 100k, 300000)")
    return int(round(float(m.group(1)) * {"": 1, "k": 1e3, "m": 1e6}[m.group(2).lower()]))


def cube_for(dofs: int) -> int:
    """The n of the n^3 voxel cube whose 3 (n+1)^3 DOF is nearest to ``dofs``."""
    ns = np.arange(1, 1000)
    return int(ns[np.argmin(np.abs(3 * (ns + 1) ** 3 - dofs))])


def model_for(n: int):
    from fem.meshes.voxel import bone_like_block

    return bone_like_block((n, n, n), contrast=CONTRAST)


def peak_rss_bytes() -> int:
    """Peak resident memory of this process; ru_maxrss is in KiB on Linux."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


# ----------------------------------------------------------------------------- rows (subprocess)

def row_gmg(n: int, precision: str, save: str | None) -> dict:
    """Timed gmg solve, then ru_maxrss, then a traced repeat for the allocation peak."""
    import fem

    vm = model_for(n)
    fem.solve(model_for(4), solver="gmg", precision=precision, rtol=RTOL)  # imports, threads
    gc.collect()
    t = time.perf_counter()
    res = fem.solve(vm, solver="gmg", precision=precision, rtol=RTOL)
    wall = time.perf_counter() - t
    rss = peak_rss_bytes()
    info = res.info
    rec = {"n_dof": info.n_dof, "iterations": info.iterations, "residual": info.residual,
           "levels": [list(s) for s in info.levels], "setup": info.times["setup"],
           "solve": info.times["solve"], "total": wall, "times": dict(info.times),
           "held_bytes": int(info.held_bytes), "peak_rss": rss}
    if save:
        np.save(save, np.asarray(res.displacement))
    del res, info
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    fem.solve(vm, solver="gmg", precision=precision, rtol=RTOL)
    rec["peak_traced"] = tracemalloc.get_traced_memory()[1] - base
    tracemalloc.stop()
    return rec


def row_amg(n: int, save: str | None) -> dict:
    """vertebra-fem's assembled path (BSR stiffness, smoothed-aggregation AMG-CG)."""
    import fem

    vm = model_for(n)
    fem.solve(model_for(4), solver="amg", rtol=RTOL)  # imports, threads
    gc.collect()
    t = time.perf_counter()
    res = fem.solve(vm, solver="amg", rtol=RTOL)
    wall = time.perf_counter() - t
    rec = {"n_dof": res.info.n_dof, "iterations": res.info.iterations, "total": wall,
           "times": dict(res.info.times), "peak_rss": peak_rss_bytes()}
    if save:
        np.save(save, np.asarray(res.displacement))
    return rec


def row_skfem(n: int, save: str | None) -> dict:
    """scikit-fem assembly (per-element moduli as a quadrature field, 2x2x2 Gauss points) and
    pyamg smoothed-aggregation CG on the same hex8 model. The load vector and the supported dofs
    come from vertebra-fem's ``compile_conditions`` (not timed), so both codes get the same right
    hand side; timed is everything from the mesh to the solution. The supports take only some
    components of a node, so the supported rows and columns are replaced by the identity
    (symmetric, keeps the 3x3 blocks pyamg aggregates by) instead of skfem's ``condense``."""
    import meshio
    import pyamg
    import scipy.sparse as sp
    import scipy.sparse.linalg as sla
    from skfem import Basis, BilinearForm, ElementHex1, ElementVector, asm
    from skfem.helpers import ddot, sym_grad, trace
    from skfem.io.meshio import from_meshio

    from fem.system import compile_conditions

    model = model_for(n).to_model()
    sysm = compile_conditions(model)
    f = np.asarray(sysm.f)[:3 * model.n_nodes]
    fixed = np.asarray(sysm.fixed_dofs)
    points, conn, E, nu = model.points, model.blocks[0].conn, np.asarray(model.E), model.nu
    gc.collect()

    t0 = time.perf_counter()
    mesh = from_meshio(meshio.Mesh(points, [("hexahedron", conn)]))
    basis = Basis(mesh, ElementVector(ElementHex1()), intorder=3)
    nq = basis.X.shape[-1]
    lam = (E * nu / ((1.0 + nu) * (1.0 - 2.0 * nu)))[:, None] * np.ones(nq)
    mu = (E / (2.0 * (1.0 + nu)))[:, None] * np.ones(nq)

    @BilinearForm
    def elasticity(u, v, w):
        eu, ev = sym_grad(u), sym_grad(v)
        return 2.0 * w.mu * ddot(eu, ev) + w.lam * trace(eu) * trace(ev)

    K = asm(elasticity, basis, lam=lam, mu=mu)
    free = np.ones(K.shape[0])
    free[fixed] = 0.0
    A = (sp.diags(free) @ K @ sp.diags(free) + sp.diags(1.0 - free)).tobsr(blocksize=(3, 3))
    b = f * free
    del K
    t_asm = time.perf_counter() - t0

    t = time.perf_counter()
    from fem.solvers import rigid_body_modes  # the same six modes, (3n, 6)

    ml = pyamg.smoothed_aggregation_solver(A, B=rigid_body_modes(points))
    t_setup = time.perf_counter() - t
    t = time.perf_counter()
    its = [0]

    def count(_):
        its[0] += 1

    x, status = sla.cg(A, b, rtol=RTOL, atol=0.0, maxiter=2000,
                        M=ml.aspreconditioner(cycle="V"), callback=count)
    if status != 0:
        raise RuntimeError(f"scikit-fem/pyamg CG did not converge (status {status})")
    t_solve = time.perf_counter() - t
    rec = {"n_dof": 3 * model.n_nodes, "iterations": its[0], "total": time.perf_counter() - t0,
           "times": {"assembly": t_asm, "setup": t_setup, "solve": t_solve},
           "peak_rss": peak_rss_bytes()}
    if save:
        np.save(save, x.reshape(-1, 3))
    return rec


def run_row(spec: dict) -> dict:
    code, n, save = spec["code"], spec["n"], spec.get("save")
    if code.startswith("gmg-"):
        return row_gmg(n, code[4:], save)
    if code == "amg":
        return row_amg(n, save)
    if code == "skfem":
        return row_skfem(n, save)
    raise ValueError(f"unknown row code {code!r}")


def child(spec: dict) -> dict:
    """Run one row in a fresh interpreter; its record comes back as the last stdout line."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--row", json.dumps(spec)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr)
        raise RuntimeError(f"row {spec} failed (exit {proc.returncode})")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------- report

def machine() -> str:
    """CPU, cores, memory, load, library versions and thread counts."""
    from importlib import metadata

    from threadpoolctl import threadpool_info

    from fem.parallel import n_threads

    cpu, ram = platform.processor() or "unknown CPU", "RAM unknown"
    try:
        names = re.findall(r"^model name\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.M)
        cpu = names[0] if names else cpu
        mem = re.search(r"^MemTotal:\s*(\d+)", Path("/proc/meminfo").read_text(), re.M)
        ram = f"{int(mem[1]) / 1024 ** 2:.1f} GiB RAM"
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    vers = []
    for dist in ("vertebra-fem", "numpy", "scipy", "pyamg", "scikit-fem"):
        try:
            vers.append(f"{dist} {metadata.version(dist)}")
        except metadata.PackageNotFoundError:
            vers.append(f"{dist} (not installed)")
    blas = ", ".join(f"{p['internal_api']} {p['num_threads']} threads"
                     for p in threadpool_info() if p["user_api"] == "blas") or "no BLAS found"
    return (f"{cpu}, {cores} cores, {ram}, load average {load}\n"
            f"Python {platform.python_version()}; " + ", ".join(vers) + "\n"
            f"threads: vertebra-fem {n_threads()} (FEM_THREADS), BLAS {blas}")


def mb(nbytes: float) -> float:
    return nbytes / 1e6


def gmg_table(rows: list) -> str:
    head = (f"{'DOF':>9}  {'precision':<9}{'levels':>7}{'CG its':>7}{'setup s':>9}{'solve s':>9}"
            f"{'total s':>9}{'held B/DOF':>11}{'traced MB':>10}{'RSS MB':>8}  held <= limit")
    lines = [head, "-" * len(head)]
    for r in rows:
        bpd = r["held_bytes"] / r["n_dof"]
        lim = HELD_LIMIT[r["precision"]]
        lines.append(
            f"{r['n_dof']:>9}  {r['precision']:<9}{len(r['levels']):>7}{r['iterations']:>7}"
            f"{r['setup']:>9.2f}{r['solve']:>9.2f}{r['total']:>9.2f}{bpd:>11.1f}"
            f"{mb(r['peak_traced']):>10.0f}{mb(r['peak_rss']):>8.0f}  "
            f"{'PASS' if bpd <= lim else 'FAIL'} (<= {lim:g})")
    return "\n".join(lines)


def iteration_lines(rows: list) -> list:
    out = []
    for p in PRECISIONS:
        its = [(r["n_dof"], r["iterations"]) for r in rows if r["precision"] == p]
        if len(its) < 2:
            continue
        counts = [i for _, i in its]
        ratio = max(counts) / min(counts)
        verdict = "PASS" if ratio <= ITERATION_RATIO_LIMIT else "FAIL"
        out.append(f"deliverable 4, {p}: CG iterations {counts} from {its[0][0]} to {its[-1][0]} "
                   f"DOF, max/min = {ratio:.2f} {verdict} (<= {ITERATION_RATIO_LIMIT:g})")
    return out


def peer_table(rows: list) -> str:
    head = (f"{'code':<20}{'DOF':>9}{'time s':>9}{'peak RSS MB':>13}"
            f"  max |u - u_gmg| / max |u_gmg|")
    lines = [head, "-" * len(head)]
    for code, r, diff in rows:
        d = "-" if diff is None else f"{diff:.1e}"
        lines.append(f"{PEER_NAMES[code]:<20}{r['n_dof']:>9}{r['total']:>9.2f}"
                     f"{mb(r['peak_rss']):>13.0f}  {d}")
    return "\n".join(lines)


def max_rel_diff(u: np.ndarray, ref: np.ndarray) -> float:
    return float(np.linalg.norm(u - ref, axis=1).max() / np.linalg.norm(ref, axis=1).max())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="0.1M,0.3M,1M,3M",
                    help="comma-separated target DOF counts (default 0.1M,0.3M,1M,3M)")
    ap.add_argument("--quick", action="store_true",
                    help="0.1M DOF only, peers at 0.1M too (a smoke run)")
    ap.add_argument("--no-peers", action="store_true",
                    help="skip the assembled AMG and scikit-fem + pyamg rows")
    ap.add_argument("--peer-size", default="1M",
                    help="target DOF of the model the peers solve (default 1M)")
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "out"),
                    help="folder for answers and results.json (default bench/out)")
    ap.add_argument("--row", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.row:
        print(json.dumps(run_row(json.loads(args.row))))
        return 0

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    sizes = [parse_dofs(s) for s in ("0.1M" if args.quick else args.sizes).split(",") if s.strip()]
    ns = sorted({cube_for(d) for d in sizes})
    peer_n = None if args.no_peers else cube_for(parse_dofs("0.1M" if args.quick
                                                            else args.peer_size))
    print(machine(), flush=True)

    rows, answers = [], {}
    for n in ns + ([peer_n] if peer_n is not None and peer_n not in ns else []):
        for p in PRECISIONS:
            code = f"gmg-{p}"
            save = str(out / f"u_{code}_{n}.npy") if n == peer_n else None
            r = {**child({"code": code, "n": n, "save": save}), "precision": p, "n": n}
            if n in ns:
                rows.append(r)
            if save:
                answers[code] = (r, save)
            print(f"  {n}^3 voxels, {r['n_dof']} DOF, {p}: {r['iterations']} its, total "
                  f"{r['total']:.2f} s, held {r['held_bytes'] / r['n_dof']:.1f} B/DOF, "
                  f"RSS {mb(r['peak_rss']):.0f} MB", flush=True)
    peers = []
    if peer_n is not None:
        ref = np.load(answers["gmg-double"][1])
        for code in ("gmg-double", "gmg-mixed", "amg", "skfem"):
            if code in answers:
                r, save = answers[code]
            else:
                save = str(out / f"u_{code}_{peer_n}.npy")
                r = child({"code": code, "n": peer_n, "save": save})
                print(f"  {PEER_NAMES[code]}: {r['n_dof']} DOF, total {r['total']:.2f} s, "
                      f"RSS {mb(r['peak_rss']):.0f} MB", flush=True)
            diff = None if code == "gmg-double" else max_rel_diff(np.load(save), ref)
            peers.append((code, r, diff))

    print()
    print(machine())
    print(f"bone_like_block n^3 voxel cubes, moduli 100..{100 * CONTRAST:g} MPa (log-uniform "
          f"smooth field), nu 0.3, z fixed on zmin, 1 MPa on zmax; CG rtol {RTOL:g}")
    print()
    print(gmg_table(rows))
    for line in iteration_lines(rows):
        print(line)
    if peers:
        print()
        print(peer_table(peers))
        for code, g, _ in peers:
            if not code.startswith("gmg-"):
                continue
            ok = g["total"] <= TIME_LIMIT_S and g["peak_rss"] < RSS_LIMIT_B
            print(f"deliverable 8, {PEER_NAMES[code]} at {g['n_dof']} DOF: {g['total']:.2f} s "
                  f"(<= {TIME_LIMIT_S:g} s), peak RSS {mb(g['peak_rss']):.0f} MB "
                  f"(< {mb(RSS_LIMIT_B):.0f} MB): {'PASS' if ok else 'FAIL'}")
    (out / "voxel_results.json").write_text(json.dumps(
        {"machine": machine(), "gmg": rows,
         "peers": [{"code": c, "diff": d, **r} for c, r, d in peers]}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
