"""``vfem``: the command line.

    vfem solve INPUT --out OUT.vtu [--backend auto|numpy|cupy] [--rtol R] [--solver S]
    vfem example [--out example.vtu]
    vfem study SPEC.toml --out DIR [--scheduler ADDRESS | --workers N] [--retry-failed]
               [--max-runs N]
    vfem results DIR [--format table|csv|json]
    vfem report DIR [--out report.html] [--runs ID ...]

A deck with ``*PLASTIC`` materials is solved elasto-plastically (:func:`fem.solve_plastic`) in
the increments of its ``*STATIC`` line, one line printed per increment; the VTU holds the final
state with cell data ``peeq`` and ``yielded``.

Errors in the input are printed as one line ``error: ...`` on stderr with exit status 2; no
traceback and no partial output file.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import time
import warnings
from pathlib import Path

from .errors import ModelError

logger = logging.getLogger("fem.cli")


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad command line as one ``error: ...`` line (exit 2)."""

    def error(self, message):
        self.exit(2, f"error: {_one_line(message)} (see vfem -h)\n")


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="vfem", description="vertebra-fem: linear-elastic FE of "
                                "vertebrae before and after cement augmentation (mm, N, MPa)")
    p.add_argument("-v", "--verbose", action="store_true", help="log progress and timings")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("solve", help="solve an Abaqus/CalculiX deck or a mesh file, write VTU")
    s.add_argument("input", help="an .inp deck (mesh, materials, supports and loads) or a mesh "
                   "file meshio reads (VTU, gmsh .msh, ...: give --E/--nu unless it carries E and "
                   "nu cell data, and supports and loads with the options below)")
    s.add_argument("--out", required=True, help="output .vtu file")
    _solver_args(s)
    g = s.add_argument_group("materials, supports and loads (added to those of a deck; SET "
                             "names a node set, face set or region of the input)")
    g.add_argument("--E", type=float, default=None, help="Young's modulus (MPa) of all elements")
    g.add_argument("--nu", type=float, default=None, help="Poisson's ratio of all elements")
    g.add_argument("--fix", action="append", default=[], metavar="SET[:xyz]",
                   help="zero displacement of SET (all components, or those listed)")
    g.add_argument("--displace", action="append", default=[], metavar="SET=ux,uy,uz",
                   help="prescribed displacement (mm) of SET; '-' leaves a component free")
    g.add_argument("--pressure", action="append", default=[], metavar="FACESET=p",
                   help="uniform pressure (MPa) on a face set, positive into the body")
    g.add_argument("--force", action="append", default=[], metavar="FACESET=Fx,Fy,Fz",
                   help="total force (N) spread over a face set by area")

    e = sub.add_parser("example", help="solve the bundled example (an osteoporotic lumbar "
                       "vertebral body under 0.6 MPa endplate pressure) and write VTU")
    e.add_argument("--out", default="example.vtu", help="output .vtu file (default example.vtu)")
    _solver_args(e)

    st = sub.add_parser("study", help="run (or resume) a study: every run of SPEC.toml into DIR "
                        "(SQLite store, summary.csv, one VTU per run)")
    st.add_argument("spec", help="study spec (TOML: [study], [base], [grid], [[runs]])")
    st.add_argument("--out", required=True, help="study folder (created; re-running resumes)")
    where = st.add_mutually_exclusive_group()
    where.add_argument("--scheduler", metavar="ADDRESS", default=None,
                       help="run on this Dask scheduler (e.g. tcp://host:8786)")
    where.add_argument("--workers", type=int, metavar="N", default=None,
                       help="run on a local Dask cluster of N worker processes")
    where.add_argument("--processes", type=int, metavar="N", default=1,
                       help="local worker processes, the default executor (default 1)")
    st.add_argument("--scheduler-timeout", type=float, metavar="S", default=None,
                    help="seconds to wait for the --scheduler to answer (default "
                    "fem.study.execute.SCHEDULER_TIMEOUT_S, 10 s)")
    st.add_argument("--retry-failed", action="store_true", help="run failed runs again")
    st.add_argument("--max-runs", type=int, metavar="N", default=None,
                    help="allow a study of up to N runs (default 10000: a larger grid is refused "
                    "when the spec is checked)")
    st.add_argument("--no-report", action="store_true", help="do not write the HTML report "
                    "(DIR/report.html) at the end of a study without failed runs")

    r = sub.add_parser("results", help="print a study's results, one row per run and level")
    r.add_argument("folder", help="study folder (--out of vfem study)")
    r.add_argument("--format", choices=["table", "csv", "json"], default="table")
    r.add_argument("--all", action="store_true", help="every column, not only the summary")

    uq = sub.add_parser("uq", help="how sure a sampled study's predictions are ([uncertain] "
                        "in its spec): mean, SD, 5-95 %% interval, P(fracture), paired "
                        "comparisons of the arms and Sobol indices; tables as CSV in DIR/uq/")
    uq.add_argument("folder", help="study folder (--out of vfem study)")
    uq.add_argument("--reference", default=None, help="the arm restorations and changes are "
                    "taken against (default: intact, else fractured)")

    rp = sub.add_parser("report", help="write a study's HTML report: table, plots and the "
                        "standard views of chosen runs (figures as PNG in <out>_files/)")
    rp.add_argument("folder", help="study folder (--out of vfem study)")
    rp.add_argument("--out", default=None, help="the page (default DIR/report.html)")
    rp.add_argument("--runs", nargs="+", metavar="ID", default=None,
                    help="run ids whose views to show (default: the fractured run, one PVP and "
                    "one PKP run)")
    return p


def _solver_args(p):
    p.add_argument("--backend", choices=["auto", "numpy", "cupy"], default="auto")
    p.add_argument("--solver", choices=["auto", "direct", "amg", "cg", "gmg"], default="auto")
    p.add_argument("--rtol", type=float, default=1e-8, help="relative residual tolerance of the "
                   "iterative solver (default 1e-8)")
    p.add_argument("--precision", choices=["double", "mixed"], default="double",
                   help="mixed: float32 AMG hierarchy inside float64 CG")
    p.add_argument("--hex8", choices=["auto", "full", "bbar"], default=None,
                   help="hex8 formulation: full integration (CalculiX's C3D8), B-bar (no "
                   "locking), or auto (B-bar where nu >= 0.45; the default)")


def _solve_and_write(model, args) -> int:
    from .analysis import solve
    from .io.atomic import check_writable

    out = Path(args.out)
    if out.suffix.lower() != ".vtu":
        raise ModelError(f"--out {out}: the output file must end in .vtu")
    check_writable(out)  # its folder exists and takes a file: before the solve, not after it
    if args.hex8 is not None:
        model.hex8_formulation = args.hex8
    t = time.perf_counter()
    if model.plastic_mask().any():
        return _solve_plastic_and_write(model, args, out, t)
    result = solve(model, backend=args.backend, solver=args.solver, rtol=args.rtol,
                   precision=args.precision)
    result.write(out)
    print(f"backend: {result.backend.describe()}", file=sys.stderr)
    print(result.summary())
    print(f"wrote {out} ({time.perf_counter() - t:.2f} s)")
    return 0


def _solve_plastic_and_write(model, args, out: Path, t: float) -> int:
    """A model with von Mises plastic elements: the increments of its *STATIC line (or 10),
    one line per increment, the final state written (cell data peeq and yielded too)."""
    from .plasticity import solve_plastic

    if args.solver not in ("auto", "direct", "amg"):
        raise ModelError(f"--solver {args.solver}: a plastic model is solved with auto, direct "
                         "or amg")

    def progress(step):
        print(f"increment {step.index}: load factor {step.load_factor:.6g}, force "
              f"{step.force:.6g} N, {step.iterations} iterations, residual {step.residual:.2e}, "
              f"{step.n_failed} elements yielded", flush=True)

    nl = solve_plastic(model, backend=args.backend, solver=args.solver, rtol=args.rtol,
                       progress=progress)
    result = nl.final
    result.write(out)
    print(f"backend: {result.backend.describe()}", file=sys.stderr)
    print(result.summary())
    peeq = result.extra_cell_fields["peeq"]
    print(f"{len(nl.steps)} increments; max equivalent plastic strain {peeq.max():.6g}, "
          f"{int(result.extra_cell_fields['yielded'].sum())} elements yielded")
    print(f"wrote {out} ({time.perf_counter() - t:.2f} s)")
    return 0


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    # warnings are shown after a successful run only, so a failing run prints one line
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        status = _run(args)
    if status == 0:
        for w in caught:
            print(f"warning: {_one_line(str(w.message))}", file=sys.stderr)
    return status


def _run(args) -> int:
    try:
        if args.command == "solve":
            from .model import Model

            if not (0.0 < args.rtol < 1.0):
                raise ModelError(f"--rtol must lie in (0, 1), got {args.rtol}")
            path = Path(args.input)
            model = Model.from_inp(path) if path.suffix.lower() == ".inp" else Model.from_file(path)
            if args.E is not None or args.nu is not None:
                model.set_material(None, E=args.E, nu=args.nu)
            model.add(*_conditions(args))
            return _solve_and_write(model, args)
        if args.command == "example":
            from .meshes.example import example_deck
            from .model import Model

            model = Model.from_inp(example_deck())
            print(f"example: {example_deck().name} ({model})")
            return _solve_and_write(model, args)
        if args.command == "study":
            return _study(args)
        if args.command == "results":
            return _results(args)
        if args.command == "report":
            return _report(args)
        if args.command == "uq":
            return _uq(args)
    except ModelError as exc:
        print(f"error: {_one_line(str(exc))}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `vfem results DIR | head`: the reader has what it wanted
        # Python flushes stdout again at exit: point it at devnull so that flush is quiet too
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as exc:  # writing the output: disk full, permission denied
        print(f"error: {_one_line(str(exc))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        why = f" ({exc})" if str(exc) else ""
        print(f"error: interrupted{why}: finished runs are recorded, the others run when the "
              "study is started again" if args.command == "study" else
              f"error: interrupted{why}", file=sys.stderr)
        return 130
    return 1


def _study(args) -> int:
    from .study import Study
    from .study.spec import MAX_RUNS

    if args.workers is not None and args.workers < 1 or args.processes < 1:
        raise ModelError("--workers and --processes must be >= 1")
    if (args.workers is not None or args.scheduler is not None) and not args.verbose:
        try:
            import distributed  # noqa: F401 (importing it sets its loggers to INFO)

            logging.getLogger("distributed").setLevel(logging.WARNING)
        except ImportError:
            pass  # Study.run says what to install
    if args.max_runs is not None and args.max_runs < 1:
        raise ModelError("--max-runs must be >= 1")
    study = Study(args.out, args.spec,
                  max_runs=MAX_RUNS if args.max_runs is None else args.max_runs)
    # SIGTERM (a batch system's stop, `kill`) stops like Ctrl-C: finished runs are recorded as
    # they finish, the ones in flight go back to pending, their half-written files are removed
    signal.signal(signal.SIGTERM, _interrupt)
    # and SIGINT as documented even where it was started with SIGINT ignored (a background job
    # of a non-interactive shell, some test runners' children): Python then installs no handler
    signal.signal(signal.SIGINT, _interrupt)
    counts = study.run(processes=args.processes, workers=args.workers,
                       scheduler=args.scheduler, retry_failed=args.retry_failed,
                       scheduler_timeout=args.scheduler_timeout)
    running = study.store.counts().get("running", 0)
    if running:  # another process on this folder is still at work: the last one writes
        print(f"store: {study.store.path}")
        print(f"{running} run(s) are still running in another process on this folder: the "
              "last process to finish writes summary.csv and the report (a process that died "
              "leaves them to the next vfem study, which resumes its runs)")
        return 1 if counts.get("failed") else 0
    summary = study.export(Path(args.out) / "summary.csv")
    print(f"store: {study.store.path}")
    print(f"summary: {summary} ({len(study.results())} rows: run x level)")
    print(f"fields: {study.runs_dir}/<run_id>.vtu")
    if counts.get("failed"):
        print(f"report: not written, {counts['failed']} run(s) failed (their errors are above): "
              "fix the spec and run again with --retry-failed, or write the report of the runs "
              f"done with vfem report {args.out}")
        return 1
    if not args.no_report:
        _study_report(args.out)
    return 0


def _interrupt(signum, frame):
    raise KeyboardInterrupt(f"stopped by signal {signum}")


def _study_report(folder):
    """The report of a finished study; a failure to render it is a warning, not a failed study
    (the store, summary and VTU files are complete)."""
    try:
        from .viz.report import write_report

        print(f"report: {write_report(folder)}")
    except Exception as exc:  # noqa: BLE001 (rendering needs a working OpenGL; say why not)
        warnings.warn(f"the report was not written ({type(exc).__name__}: {exc}); "
                      f"try vfem report {folder}")


def _report(args) -> int:
    from .viz.report import write_report

    print(write_report(args.folder, args.out, args.runs))
    return 0


def _uq(args) -> int:
    from .study import Study

    folder = Path(args.folder)
    if not folder.is_dir():
        raise ModelError(f"study folder {folder} does not exist")
    u = Study(folder).uncertainty(reference=args.reference)
    print(u.text())
    paths = u.write(folder / "uq")
    print(f"\ntables: {', '.join(str(p) for p in paths)}")
    return 0


def _results(args) -> int:
    from .study import Study
    from .study.execute import result_columns

    folder = Path(args.folder)
    if not folder.is_dir():
        raise ModelError(f"study folder {folder} does not exist")
    full = Study(folder).results()
    df = full if args.all else full[result_columns(full)]
    if args.format == "csv":
        df.to_csv(sys.stdout, index=False)
    elif args.format == "json":
        print(df.to_json(orient="records", indent=1))
    else:
        import pandas as pd

        from .viz.plots import BOUND_WHY, with_bounds

        # a strength the pushover only bounds reads "≥ 2412" (its factor of risk "≤ 0.2")
        shown = with_bounds(df, full, lambda v: f"{v:.5g}")
        with pd.option_context("display.width", 250, "display.max_columns", None,
                               "display.max_rows", None):
            print(shown.to_string(index=False, float_format=lambda v: f"{v:.5g}"))
        if shown is not df:
            print(f"\n≥ and ≤: {BOUND_WHY} (pushover_peak_reached = 0).")
    return 0


def _conditions(args) -> list:
    """Supports and loads from --fix, --displace, --pressure and --force."""
    from . import loads as L

    out = []
    for spec in args.fix:
        name, _, dofs = spec.partition(":")
        out.append(L.Fixed(name, dofs or "xyz"))
    for spec in args.displace:
        name, vals = _split("--displace", spec, "SET=ux,uy,uz")
        out.append(L.Displacement(name, tuple(None if v == "-" else _float("--displace", v)
                                              for v in vals)))
    for spec in args.pressure:
        name, vals = _split("--pressure", spec, "FACESET=p")
        out.append(L.Pressure(name, _float("--pressure", vals[0])))
    for spec in args.force:
        name, vals = _split("--force", spec, "FACESET=Fx,Fy,Fz")
        out.append(L.TotalForce(name, tuple(_float("--force", v) for v in vals)))
    return out


def _split(opt: str, spec: str, form: str):
    """'NAME=a,b,c' -> ('NAME', ['a', 'b', 'c']), as many values as ``form`` has."""
    name, eq, rest = spec.partition("=")
    vals = [v.strip() for v in rest.split(",")] if eq else []
    if not name or len(vals) != form.count(",") + 1:
        raise ModelError(f"{opt} {spec!r}: expected {form}")
    return name, vals


def _float(opt: str, text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ModelError(f"{opt}: {text!r} is not a number") from None


def _one_line(text: str) -> str:
    return " ".join(text.split())


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
