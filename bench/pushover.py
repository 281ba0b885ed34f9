"""Cost of a damage pushover against one linear solve of the same model (issue 15, deliverable 6).

An intact osteoporotic L1 (QCT BMD 70 mg/cm^3, posterior elements included) between a bonded
platen moved down (``Displacement`` on its superior endplate nodes) and a fixed base, with
Poisson's ratio 0.3 throughout (the voxel path's one ratio): the
matrix-free voxel path (no rigid plate), on NumPy and, where a GPU is usable, on CuPy. For each
voxel size and backend it prints the DOF, the time of one linear solve (``fem.solve``, gmg,
rtol 1e-8), the time of the pushover (:func:`fem.strength.pushover`, its defaults: equilibrium tol 5e-3,
linear solves at rtol 2e-4), their ratio, the steps, linear solves and the peak load. With both
backends it also prints the relative difference of the CuPy and NumPy peaks.

    python bench/pushover.py --sizes 2 1.5 [--backends numpy cupy] [--segment] [--tet10 3]

``--segment``: the canonical study's segment (L1-L3, 2 mm voxels, BMD 70, standing 500 N on a
rigid loading plate: the assembled AMG path) and the strength of its L2 (pushover with only L2
able to fail, controlled by L2's shortening) against one linear solve of the same model.
``--tet10 H``: the same for L3 of the real-anatomy L2-L4 (tet10, gmsh mesh size H mm, 0.5 MPa
top pressure), with CalculiX's time for one linear solve of its exported deck beside it.
"""

from __future__ import annotations

import argparse
import platform
import time
import warnings


def model(h: float):
    import fem
    from fem.meshes.bone import BoneQuality
    from fem.meshes.vertebra import vertebra_model

    m = vertebra_model("L1", voxel_size=h, materials=BoneQuality(bmd=70.0))
    m.nu[:] = 0.3  # the voxel path has one Poisson's ratio (bone parts 0.2-0.3 in the builder)
    m.add(fem.Fixed("bottom"), fem.Displacement("top", (0.0, 0.0, -0.5)))
    return m


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=float, nargs="*", default=[2.0])
    ap.add_argument("--backends", nargs="+", default=["numpy"])
    ap.add_argument("--segment", action="store_true")
    ap.add_argument("--tet10", type=float, default=None, metavar="MESH_SIZE",
                    help="also the real-anatomy tet10 L2-L4 (gmsh mesh size, mm) beside CalculiX")
    args = ap.parse_args(argv)
    import fem
    from fem.kernels.backend import cupy_unavailable_reason
    from fem.strength import pushover

    warnings.simplefilter("ignore")
    print(f"machine: {platform.processor() or platform.machine()}, python {platform.python_version()}")
    print(f"{'h mm':>5} {'backend':>7} {'DOF':>9} {'linear s':>9} {'pushover s':>10} {'ratio':>6} "
          f"{'steps':>5} {'solves':>6} {'peak N':>9} {'first yield N':>13}")
    for h in args.sizes:
        peaks = {}
        for be in args.backends:
            if be == "cupy" and cupy_unavailable_reason() is not None:
                print(f"{h:5g} {be:>7} skipped: {cupy_unavailable_reason()}")
                continue
            m = model(h)
            t = time.perf_counter()
            fem.solve(m, backend=be, solver="gmg", rtol=1e-8)
            t_lin = time.perf_counter() - t
            t = time.perf_counter()
            try:
                r = pushover(m, backend=be)
            except fem.ConvergenceError as exc:
                print(f"{h:5g} {be:>7} {m.n_dof:9d} {t_lin:9.2f} did not converge: {exc}")
                continue
            t_p = time.perf_counter() - t
            peaks[be] = r.peak_load
            print(f"{h:5g} {be:>7} {m.n_dof:9d} {t_lin:9.2f} {t_p:10.2f} {t_p / t_lin:6.1f} "
                  f"{len(r.steps):5d} {r.info['linear_solves']:6d} {r.peak_load:9.1f} "
                  f"{r.info['first_yield_n']:13.1f}" + ("" if r.peak_reached else " (no peak)"),
                  flush=True)
        if len(peaks) == 2:
            a, b = peaks.values()
            print(f"      peak cupy vs numpy: relative difference {abs(a - b) / abs(b):.2e}")
    if args.segment:
        segment(args.backends)
    if args.tet10 is not None:
        tet10(args.tet10)
    return 0


def tet10(mesh_size: float):
    """The real-anatomy segment (mean L2-L4 shape, tet10, gmsh ``mesh_size``) under a 0.5 MPa
    top pressure on a fixed base: the strength of L3 (only L3 can fail, steps following its
    shortening; assembled AMG-CG path) against one linear solve by vertebra-fem and by CalculiX
    (its exported deck, C3D10)."""
    import tempfile
    from pathlib import Path

    import fem
    from fem.io.calculix import run_ccx
    from fem.meshes.ssm_gmsh import ssm_segment_model_tet10

    m = ssm_segment_model_tet10("L2-L4", mesh_size=mesh_size)
    m.fix("bottom").add(fem.Pressure("top", 0.5))
    print(f"real-anatomy L2-L4 tet10, mesh size {mesh_size:g} mm: strength of L3")
    t = time.perf_counter()
    fem.solve(m)
    t_lin = time.perf_counter() - t
    with tempfile.TemporaryDirectory() as tmp:
        deck = m.write_inp(Path(tmp) / "l2l4.inp")
        t = time.perf_counter()
        run_ccx(deck)
        t_ccx = time.perf_counter() - t
    print(f"{'DOF':>8} {'linear s':>9} {'ccx s':>7} {'pushover s':>10} {'ratio':>6} "
          f"{'steps':>5} {'solves':>6} {'L3 strength N':>13}")
    _level_row(f"{m.n_dof:8d} {t_lin:9.2f} {t_ccx:7.2f}", m, "L3", t_lin)


def _level_row(prefix: str, m, level: str, t_lin: float, **kwargs):
    """Push ``level`` of ``m`` over and print the row after ``prefix``: time, ratio to the
    linear solve, steps, solves, strength (or why it stopped or did not converge)."""
    import fem
    from fem.strength import pushover

    t = time.perf_counter()
    try:
        r = pushover(m, level=level, **kwargs)
    except fem.ConvergenceError as exc:
        part = getattr(exc, "partial", None)
        steps = f", {len(part.steps)} steps converged" if part is not None else ""
        print(f"{prefix} did not converge after {time.perf_counter() - t:.0f} s{steps}: {exc}")
        return
    t_p = time.perf_counter() - t
    print(f"{prefix} {t_p:10.2f} {t_p / t_lin:6.1f} {len(r.steps):5d} "
          f"{r.info['linear_solves']:6d} {r.peak_load:13.1f}", flush=True)
    if r.info["stopped"]:
        print(f"        stopped: {r.info['stopped']}")


def segment(backends):
    import fem
    from fem.kernels.backend import cupy_unavailable_reason
    from fem.study.recipe import build_model

    p = dict(levels="L1-L3", voxel_size=2.0, bmd=70.0, fracture_level="L2",
             fracture_shape="wedge", fracture_grade=2, approach="bipedicular", cement="pmma",
             procedure="intact", treated_level=None, load_case="standing", burst=False,
             cement_volume_ml=0, tip_depth=None, seed=0, balloon_ml=None,
             height_restoration=0.5)
    print("canonical segment L1-L3, 2 mm, standing (rigid plate, assembled AMG path): "
          "strength of L2")
    print(f"{'backend':>7} {'DOF':>7} {'linear s':>9} {'pushover s':>10} {'ratio':>6} "
          f"{'steps':>5} {'solves':>6} {'L2 strength N':>13}")
    for be in backends:
        if be == "cupy" and cupy_unavailable_reason() is not None:
            continue
        m = build_model(p)
        t = time.perf_counter()
        fem.solve(m, backend=be)
        t_lin = time.perf_counter() - t
        _level_row(f"{be:>7} {m.n_dof:7d} {t_lin:9.2f}", m, "L2", t_lin, backend=be)


if __name__ == "__main__":
    raise SystemExit(main())
