"""Benchmark: a hex8 block with distorted interior nodes, vertebra-fem against scikit-fem + pyamg.

The problem is a 20 x 20 x 40 mm block of n x n x 2n hex8 elements whose interior nodes are moved
at random by up to 0.25 of the grid spacing (so no shortcut for regular grids applies): bone
(E 500 MPa, nu 0.3) with a cement layer (E 3000 MPa, nu 0.35) across the middle fifth of its
height, fixed on z = 0 and loaded by 1 MPa pressure on z = 40 mm. Each size is written once as an
Abaqus deck; then every (code, size) case runs in its own subprocess, from reading the deck to
writing a VTU file, so that its phase times and its peak memory (ru_maxrss) are its own.

    python bench/bench_hex_block.py                      # 0.1M, 0.3M and 1M DOF, both codes
    python bench/bench_hex_block.py --sizes 20k,0.1M     # smaller sizes
    python bench/bench_hex_block.py --skip-peer          # vertebra-fem only

Both codes use 2 x 2 x 2 Gauss points per hex8 (scikit-fem's default for ElementHex1 would be
4 x 4 x 4, a different discretisation), CG to a relative residual of 1e-8 and a smoothed-
aggregation AMG preconditioner with the six rigid-body modes as near-null space. See
bench/README.md for what each phase column contains.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

SIZE_MM = (20.0, 20.0, 40.0)
DISTORT = 0.25
BONE = (500.0, 0.3)
CEMENT = (3000.0, 0.35)
LAYER = (0.4, 0.6)  # cement layer: fraction of the height
PRESSURE = 1.0  # MPa on zmax, pushing into the block
RTOL = 1e-8
PHASES = ("read", "assembly", "setup", "solve", "output")


def parse_dofs(text: str) -> int:
    """'0.3M', '20k' or '300000' -> a number of DOF."""
    m = re.fullmatch(r"\s*([0-9.]+)\s*([kKmM]?)\s*", text)
    if not m:
        raise argparse.ArgumentTypeError(f"not a DOF count: {text!r} (e.g. 0.3M, 20k, 300000)")
    return int(round(float(m.group(1)) * {"": 1, "k": 1e3, "m": 1e6}[m.group(2).lower()]))


def grid_for(dofs: int) -> tuple[int, int, int]:
    """The n x n x 2n element grid whose 3 (n+1)^2 (2n+1) DOF is nearest to ``dofs``."""
    ns = np.arange(2, 400)
    n = int(ns[np.argmin(np.abs(3 * (ns + 1) ** 2 * (2 * ns + 1) - dofs))])
    return n, n, 2 * n


def deck_path(out: Path, dofs: int) -> Path:
    return out / f"hex_block_{dofs}.inp"


# ----------------------------------------------------------------------------- the problem

def write_deck(out: Path, dofs: int) -> dict:
    """Build the block model and write it as an Abaqus deck (outside every timed region)."""
    import fem
    from fem.meshes.blocks import hex_block

    t = time.perf_counter()
    shape = grid_for(dofs)
    model = hex_block(shape, SIZE_MM, distort=DISTORT, seed=0)
    zc = _centroids(model.points, model.blocks[0].conn)[:, 2]
    h = SIZE_MM[2] / shape[2]  # centroids lie within h/4 of their layer's mid-height
    lo, hi = (round(f * shape[2]) * h for f in LAYER)
    layer = (zc >= lo) & (zc < hi)
    model.add_region("bone", np.nonzero(~layer)[0]).add_region("cement", np.nonzero(layer)[0])
    model.set_material("bone", E=BONE[0], nu=BONE[1])
    model.set_material("cement", E=CEMENT[0], nu=CEMENT[1])
    model.add(fem.Fixed("zmin"), fem.Pressure("zmax", PRESSURE))
    path = model.to_inp(deck_path(out, dofs), heading=f"hex block {shape}, distort {DISTORT}")
    return {"shape": shape, "n_dof": model.n_dof, "n_elements": model.n_elements,
            "deck_mb": path.stat().st_size / 1e6, "write_s": time.perf_counter() - t}


# ----------------------------------------------------------------------------- vertebra-fem

def run_vfem(deck: Path, out: Path, tag: str, backend: str) -> dict:
    """Deck in, VTU out with vertebra-fem; phase times from ``result.info.times``."""
    import fem

    t0 = time.perf_counter()
    model = fem.Model.from_inp(deck)
    t_read = time.perf_counter() - t0
    result = fem.solve(model, backend=backend, solver="amg", rtol=RTOL)
    t = time.perf_counter()
    result.write(out / f"vfem_{tag}.vtu")
    t_write = time.perf_counter() - t
    total = time.perf_counter() - t0
    tm = result.info.times
    rec = {
        "read": t_read,
        "assembly": tm["checks"] + tm["assembly"] + tm["constraints"],
        "setup": tm["setup"],
        "solve": tm["solve"],
        "output": tm["reactions"] + t_write,
        "total": total,
        "iterations": result.info.iterations,
        "residual": result.info.residual,
        "n_dof": model.n_dof,
        "vfem_times": dict(tm),
    }
    rec["peak_mb"] = peak_mb()
    h = result.backend.to_host
    np.savez(out / f"answer_vfem_{tag}.npz", points=model.points, u=h(result.displacement),
             centroids=_centroids(model.points, model.blocks[0].conn), stress=h(result.stress))
    return rec


# ----------------------------------------------------------------------------- scikit-fem

def deck_cards(path: Path) -> dict:
    """What meshio does not read from the deck: materials per element set, the fixed node set and
    the pressure (the deck writer's ``*MATERIAL``/``*ELASTIC``, ``*SOLID SECTION``, ``*BOUNDARY``
    and ``*DSLOAD`` cards)."""
    text = Path(path).read_text()
    flags = re.MULTILINE | re.IGNORECASE
    elastic = {m[1]: tuple(float(v) for v in m[2].split(",")[:2]) for m in re.finditer(
        r"^\*MATERIAL,\s*NAME=([^,\s]+)\s*\n\*ELASTIC[^\n]*\n([^\n]+)", text, flags)}
    sections = {m[1]: elastic[m[2]] for m in re.finditer(
        r"^\*SOLID SECTION,\s*ELSET=([^,\s]+),\s*MATERIAL=([^,\s]+)", text, flags)}
    fixed = re.search(r"^\*BOUNDARY\s*\n([^,\n]+),\s*1,\s*3,\s*0\s*$", text, flags)[1].strip()
    surf, _, p = re.search(r"^\*DSLOAD\s*\n([^\n]+)", text, flags)[1].split(",")
    return {"materials": sections, "fixed": fixed, "surface": surf.strip(), "pressure": float(p)}


def rigid_body_modes(points: np.ndarray) -> np.ndarray:
    """(3n, 6): translations and rotations about the centroid, dofs interleaved per node."""
    d = points - points.mean(axis=0)
    B = np.zeros((len(d), 3, 6))
    B[:, 0, 0] = B[:, 1, 1] = B[:, 2, 2] = 1.0
    B[:, 1, 3], B[:, 2, 3] = -d[:, 2], d[:, 1]
    B[:, 0, 4], B[:, 2, 4] = d[:, 2], -d[:, 0]
    B[:, 0, 5], B[:, 1, 5] = -d[:, 1], d[:, 0]
    return B.reshape(-1, 6)


def run_skfem(deck: Path, out: Path, tag: str, amg: str) -> dict:
    """Deck in, VTU out with scikit-fem (assembly) and pyamg (AMG-preconditioned CG)."""
    import meshio
    import pyamg
    import scipy.sparse.linalg as sla
    from skfem import Basis, ElementHex1, ElementVector, FacetBasis, LinearForm, asm, condense
    from skfem.helpers import dot
    from skfem.io.meshio import from_meshio
    from skfem.models.elasticity import lame_parameters, linear_elasticity

    t0 = time.perf_counter()
    raw = meshio.read(deck, file_format="abaqus")
    mesh = from_meshio(raw)
    cards = deck_cards(deck)
    times = {"read": time.perf_counter() - t0}

    t = time.perf_counter()
    element = ElementVector(ElementHex1())
    parts = []  # (basis, lambda, mu) per material element set
    for name, (E, nu) in cards["materials"].items():
        parts.append((Basis(mesh, element, elements=mesh.subdomains[name], intorder=3),
                      *lame_parameters(E, nu)))
    K = sum(asm(linear_elasticity(lam, mu), b) for b, lam, mu in parts)
    zmax = mesh.p[2].max()
    top = mesh.facets_satisfying(lambda x: np.abs(x[2] - zmax) <= 1e-9 * zmax,
                                 boundaries_only=True)
    p = cards["pressure"]
    load = LinearForm(lambda v, w: -p * dot(w.n, v))
    f = asm(load, FacetBasis(mesh, element, facets=top, intorder=3))
    fixed_nodes = np.asarray(raw.point_sets[cards["fixed"]])
    D = parts[0][0].nodal_dofs[:, fixed_nodes].ravel()
    A, b, x, I = condense(K, f, D=D)
    times["assembly"] = time.perf_counter() - t

    t = time.perf_counter()
    free_nodes = I[::3] // 3
    opts = {}
    if amg == "lean":
        opts = {"strength": ("symmetric", {"theta": 0.0}), "improve_candidates": None}
    ml = pyamg.smoothed_aggregation_solver(A.tobsr(blocksize=(3, 3)),
                                           B=rigid_body_modes(mesh.p.T[free_nodes]), **opts)
    M = ml.aspreconditioner(cycle="V")
    times["setup"] = time.perf_counter() - t

    t = time.perf_counter()
    its = [0]

    def count(_):
        its[0] += 1

    xI, status = sla.cg(A, b, rtol=RTOL, atol=0.0, maxiter=2000, M=M, callback=count)
    if status != 0:
        raise RuntimeError(f"scikit-fem/pyamg CG did not converge (status {status})")
    x[I] = xI
    residual = float(np.linalg.norm(b - A @ xI) / np.linalg.norm(b))
    times["solve"] = time.perf_counter() - t

    t = time.perf_counter()
    u = x.reshape(-1, 3)
    sig = np.zeros((mesh.nelements, 3, 3))
    eps = np.zeros((mesh.nelements, 3, 3))
    for basis, lam, mu in parts:
        g = basis.interpolate(x).grad  # (3, 3, m, q)
        e = 0.5 * (g + g.transpose(1, 0, 2, 3))
        tr = np.einsum("iimq->mq", e)
        s = 2.0 * mu * e + lam * tr * np.eye(3)[:, :, None, None]
        eps[basis.tind] = e.mean(axis=3).transpose(2, 0, 1)
        sig[basis.tind] = s.mean(axis=3).transpose(2, 0, 1)
    voigt = (0, 1, 2, 0, 1, 0), (0, 1, 2, 1, 2, 2)
    stress, strain = sig[:, voigt[0], voigt[1]], eps[:, voigt[0], voigt[1]]
    dev = sig - np.einsum("mii->m", sig)[:, None, None] / 3.0 * np.eye(3)
    vm = np.sqrt(1.5 * np.einsum("mij,mij->m", dev, dev))
    principal = np.linalg.eigvalsh(sig)[:, ::-1]
    result = meshio.Mesh(raw.points, [("hexahedron", raw.cells_dict["hexahedron"])],
                         point_data={"displacement": u},
                         cell_data={"stress": [stress], "strain": [strain], "von_mises": [vm],
                                    "principal_stress": [principal]})
    meshio.write(out / f"skfem_{tag}.vtu", result, file_format="vtu", compression="zlib")
    times["output"] = time.perf_counter() - t
    times["total"] = time.perf_counter() - t0
    rec = {**times, "iterations": its[0], "residual": residual, "n_dof": 3 * int(mesh.nvertices),
           "amg": amg, "levels": len(ml.levels),
           "operator_complexity": float(ml.operator_complexity())}
    rec["peak_mb"] = peak_mb()
    np.savez(out / f"answer_skfem_{tag}.npz", points=mesh.p.T, u=u,
             centroids=_centroids(raw.points, raw.cells_dict["hexahedron"]), stress=stress)
    return rec


# ----------------------------------------------------------------------------- driver

def peak_mb() -> float:
    """Peak resident memory of this process (MB); ru_maxrss is in kB on Linux."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _centroids(points, conn):
    return np.asarray(points)[np.asarray(conn)].mean(axis=1)


def child(args) -> int:
    """Run one case in this (fresh) process and write its record as JSON."""
    out = Path(args.out)
    tag = str(args.dofs)
    if args.case == "deck":
        rec = write_deck(out, args.dofs)
    else:
        deck = deck_path(out, args.dofs)
        if args.case == "vfem":
            def run():
                return run_vfem(deck, out, tag, args.backend)
        else:
            def run():
                return run_skfem(deck, out, tag, args.peer_amg)
        if args.profile:
            import cProfile
            import pstats

            prof = cProfile.Profile()
            rec = prof.runcall(run)
            stats_path = out / f"profile_{args.case}_{tag}.txt"
            with open(stats_path, "w") as fh:
                for key in ("cumulative", "tottime"):
                    pstats.Stats(prof, stream=fh).sort_stats(key).print_stats(30)
            print(f"profile written to {stats_path}")
        else:
            rec = run()
    (out / f"{args.case}_{tag}.json").write_text(json.dumps(rec, indent=1))
    return 0


def run_child(case: str, dofs: int, args) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--case", case, "--dofs", str(dofs),
           "--out", str(args.out), "--backend", args.backend, "--peer-amg", args.peer_amg]
    subprocess.run(cmd, check=True)
    return json.loads((Path(args.out) / f"{case}_{dofs}.json").read_text())


def compare(out: Path, dofs: int) -> dict:
    """Largest nodal displacement difference (relative to the largest displacement) and largest
    element stress difference (relative to the largest stress component), nodes and elements
    matched by position, not by index."""
    from scipy.spatial import cKDTree

    a = np.load(out / f"answer_vfem_{dofs}.npz")
    b = np.load(out / f"answer_skfem_{dofs}.npz")
    res = {}
    for key, where in (("u", "points"), ("stress", "centroids")):
        dist, idx = cKDTree(a[where]).query(b[where])
        if dist.max() > 1e-9 * np.ptp(a[where]):
            raise RuntimeError(f"{where} of the two answers do not match (off by {dist.max():.3g})")
        d = np.linalg.norm(a[key][idx] - b[key], axis=1).max() if key == "u" else \
            np.abs(a[key][idx] - b[key]).max()
        scale = np.linalg.norm(a[key], axis=1).max() if key == "u" else np.abs(a[key]).max()
        res[f"max_d{key}"] = float(d / scale)
    return res


def machine() -> str:
    """CPU, cores, memory, load and library versions, for the table's heading."""
    from importlib import metadata

    cpu = "unknown CPU"
    try:
        names = re.findall(r"^model name\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.M)
        cpu = names[0] if names else platform.processor() or cpu
        mem = re.search(r"^MemTotal:\s*(\d+)", Path("/proc/meminfo").read_text(), re.M)
        ram = f"{int(mem[1]) / 1024 ** 2:.1f} GiB RAM"
    except OSError:
        ram = "RAM unknown"
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = ", ".join(f"{v:.2f}" for v in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    vers = []
    for dist in ("vertebra-fem", "numpy", "scipy", "pyamg", "scikit-fem", "meshio"):
        try:
            vers.append(f"{dist} {metadata.version(dist)}")
        except metadata.PackageNotFoundError:
            vers.append(f"{dist} (not installed)")
    return (f"{cpu}, {cores} cores, {ram}, load average {load}\n"
            f"Python {platform.python_version()}; " + ", ".join(vers))


def table(rows: list, comparisons: dict, decks: dict) -> str:
    head = f"{'code':<13}{'DOF':>9}" + "".join(f"{p:>10}" for p in PHASES + ("other", "total")) \
        + f"{'peak MB':>9}{'CG its':>8}"
    lines = [head, "-" * len(head)]
    for code, _, r in rows:
        other = r["total"] - sum(r[p] for p in PHASES)
        lines.append(f"{code:<13}{r['n_dof']:>9}"
                     + "".join(f"{v:>9.2f}s" for v in [r[p] for p in PHASES] + [other, r["total"]])
                     + f"{r['peak_mb']:>9.0f}{r['iterations']:>8}")
    lines.append("")
    for dofs, c in comparisons.items():
        d = decks[dofs]
        s = f"{d['n_dof']:>9} DOF ({'x'.join(map(str, d['shape']))} hex8, deck " \
            f"{d['deck_mb']:.0f} MB):"
        if "speedup" in c:
            s += (f" total skfem/vfem = {c['speedup']:.1f}x, max |du|/max|u| = "
                  f"{c['max_du']:.1e}, max |ds|/max|s| = {c['max_dstress']:.1e}")
        lines.append(s)
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="0.1M,0.3M,1M",
                    help="comma-separated target DOF counts (default 0.1M,0.3M,1M)")
    ap.add_argument("--skip-peer", action="store_true", help="run vertebra-fem only")
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "out"),
                    help="folder for decks, VTU files and records (default bench/out)")
    ap.add_argument("--backend", default="numpy",
                    help="vertebra-fem backend (default numpy: its AMG runs on the CPU)")
    ap.add_argument("--peer-amg", choices=("default", "lean"), default="default",
                    help="pyamg options for the peer: its defaults, or 'lean' (symmetric "
                         "strength theta 0, no candidate improvement)")
    ap.add_argument("--keep-decks", action="store_true",
                    help="reuse decks already in --out instead of writing them again")
    ap.add_argument("--case", choices=("deck", "vfem", "skfem"), help=argparse.SUPPRESS)
    ap.add_argument("--dofs", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--profile", action="store_true",
                    help="with --case: run under cProfile, write the top functions to --out")
    args = ap.parse_args(argv)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    if args.case:
        return child(args)

    sizes = [parse_dofs(s) for s in args.sizes.split(",") if s.strip()]
    print(machine(), flush=True)
    rows, comparisons, decks = [], {}, {}
    for dofs in sizes:
        meta = Path(args.out) / f"deck_{dofs}.json"
        if args.keep_decks and meta.exists() and deck_path(Path(args.out), dofs).exists():
            decks[dofs] = json.loads(meta.read_text())
        else:
            decks[dofs] = run_child("deck", dofs, args)
        print(f"deck {deck_path(Path(args.out), dofs).name}: {decks[dofs]['n_dof']} DOF",
              flush=True)
        codes = ("vfem",) if args.skip_peer else ("vfem", "skfem")
        recs = {}
        for code in codes:
            recs[code] = run_child(code, dofs, args)
            r = recs[code]
            print(f"  {code}: total {r['total']:.2f} s, peak {r['peak_mb']:.0f} MB, "
                  f"{r['iterations']} CG iterations", flush=True)
            rows.append(("vertebra-fem" if code == "vfem" else "skfem+pyamg", dofs, r))
        comparisons[dofs] = {}
        if "skfem" in recs:
            comparisons[dofs] = {"speedup": recs["skfem"]["total"] / recs["vfem"]["total"],
                                 **compare(Path(args.out), dofs)}
    print()
    print(machine())
    peer = "" if args.skip_peer else f"; peer AMG: pyamg {args.peer_amg} options"
    print(f"hex8 block {SIZE_MM} mm, distort {DISTORT}, bone E {BONE[0]:g} nu {BONE[1]:g}, "
          f"cement layer E {CEMENT[0]:g} nu {CEMENT[1]:g}, zmin fixed, {PRESSURE:g} MPa on zmax; "
          f"CG rtol {RTOL:g}{peer}")
    print(table(rows, comparisons, decks))
    (Path(args.out) / "results.json").write_text(json.dumps(
        {"machine": machine(), "rows": [{"code": c, "target_dofs": d, **r} for c, d, r in rows],
         "comparisons": {str(k): v for k, v in comparisons.items()}, "decks": {
             str(k): v for k, v in decks.items()}}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
