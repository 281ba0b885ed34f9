"""Running a study: local processes by default, or any Dask cluster; results from the store.

``Study(folder, spec).run()`` claims runs from the store one at a time and executes them on
``processes`` local worker processes (the embedded default: no server, nothing to install), on a
local Dask cluster (``workers=N``) or on a running Dask scheduler (``scheduler="tcp://..."``). The
same function (:func:`fem.study.recipe.execute`) runs every run whatever the executor, and the
study process alone writes the store, so results are identical whichever way a run executes.
Each finished run is recorded in one transaction; a run that raises is recorded as failed with
its error and the study goes on; re-running a study skips what is done. VTU files are written by
the run itself, atomically (temporary file, then rename); temporaries left by a killed process
are removed when a study starts.
"""

from __future__ import annotations

import concurrent.futures as cf
import json
import math
import sys
import time
from pathlib import Path

from ..errors import ModelError
from .spec import MAX_RUNS, StudySpec, run_id
from .store import Store, StoreError

#: the columns ``vfem results`` shows, one row per run and level (``stiffness_n_per_mm`` under
#: axial compression, ``rotational_stiffness_nm_per_deg`` under a moment; NaN otherwise)
#: ``strength_n`` and ``factor_of_risk`` are the headline ones (:func:`fem.metrics.
#: headline_strength`): the damage pushover's peak load where the spec's ``strength =
#: "pushover"`` ran one on that level, the Pistoia proxy elsewhere, as ``strength_method`` says
RESULT_COLUMNS = ["run_id", "procedure", "approach", "cement_volume_ml", "load_case", "level",
                  "stiffness_n_per_mm", "rotational_stiffness_nm_per_deg", "strength_n",
                  "factor_of_risk", "strength_method", "endplate_bulge_max_mm",
                  "disc_pressure_mpa"]
#: the Pistoia proxy's columns, shown beside :data:`RESULT_COLUMNS` by :func:`result_columns`
#: in studies where some headline strength is a pushover's (``strength = "pushover"``)
PISTOIA_RESULT_COLUMNS = ["strength_pistoia_n", "factor_of_risk_pistoia"]


def result_columns(df) -> list:
    """:data:`RESULT_COLUMNS`, with ``strength_pushover_by`` (what set a pushover's strength:
    a fall, the offset yield, a plateau or the cap) and :data:`PISTOIA_RESULT_COLUMNS` after
    ``strength_method`` where some row's headline strength is a pushover's (pistoia-only
    studies and older stores: the headline is the Pistoia strength already)."""
    cols = list(RESULT_COLUMNS)
    if "strength_method" in df.columns and (df["strength_method"] == "pushover").any():
        i = cols.index("strength_method") + 1
        by = ["strength_pushover_by"] if "strength_pushover_by" in df.columns else []
        cols[i:i] = by + PISTOIA_RESULT_COLUMNS
    return cols


#: seconds to wait for a Dask scheduler given by address before giving up
SCHEDULER_TIMEOUT_S = 10
#: seconds between looks at a Dask scheduler's workers while runs are in flight
DASK_POLL_S = 5


def _small_strain_note(rows, ligaments: bool | None = None) -> str:
    """A run's log note where its linear answer turns a disc beyond small strain
    (:func:`fem.metrics.beyond_small_strain`), else ""; where the run had no posterior
    ligaments (``ligaments`` False), the note says what holds a segment in bending."""
    from ..metrics import SMALL_ROTATION_DEG, beyond_small_strain

    beyond = beyond_small_strain({"level": [r.get("level") for r in rows],
                                  "disc_rotation_deg": [r.get("disc_rotation_deg")
                                                        for r in rows]})
    hint = ("; without posterior ligaments only the discs hold the bending: ligaments = true "
            "(voxel segments)" if ligaments is False else "")
    return (f"; beyond small strain: {beyond} across the disc (holds to about "
            f"{SMALL_ROTATION_DEG:.1f} deg; disc_rotation_deg, docs/validation.md{hint})"
            if beyond else "")


class Study:
    """A study folder: its spec, its SQLite store, its runs' VTU files (``runs/<id>.vtu``)."""

    def __init__(self, folder, spec: StudySpec | dict | str | Path | None = None, *,
                 max_runs: int | None = MAX_RUNS):
        """``max_runs``: the most runs the spec may give (None: no limit); a larger grid is
        refused before anything is written."""
        self.folder = Path(folder)
        if spec is None:
            self.store = Store(self.folder)
            # its size was allowed when it was registered
            self.spec = StudySpec.from_dict(self.store.study()["spec"], max_runs=None)
        else:
            if isinstance(spec, (str, Path)):
                spec = StudySpec.from_toml(spec, max_runs=max_runs)
            elif isinstance(spec, dict):
                spec = StudySpec.from_dict(spec, max_runs=max_runs)
            self.spec = spec
            spec.check(max_runs)  # every fault in the spec surfaces here, before anything
            if self.folder.exists() and not self.folder.is_dir():
                raise StoreError(f"--out {self.folder} is a file, not a folder")
            self.store = Store(self.folder, create=True)
            self.store.register(spec, spec.iter_runs(max_runs=None))  # lazily, checked above
        self.runs_dir = self.folder / "runs"
        self._said_own = False  # whether results() warned of runs not the spec's (once)
        self._ids = self._expand_ids()
        if self._ids is not None:  # runs of an earlier version of the spec are not run again
            self.store.restrict(self._ids)

    # ------------------------------------------------------------------ running

    def run(self, *, processes: int = 1, workers: int | None = None,
            scheduler: str | None = None, retry_failed: bool = False,
            progress: bool | None = None, log=None,
            scheduler_timeout: float | None = None) -> dict:
        """Execute every pending run (and failed ones with ``retry_failed``); returns the
        counts per status. ``processes``: local worker processes (default 1: a solve already
        uses the machine's cores); ``workers``: a local Dask cluster of that many workers;
        ``scheduler``: the address of a running Dask scheduler, given ``scheduler_timeout``
        seconds to answer (default :data:`SCHEDULER_TIMEOUT_S`)."""
        if workers is not None and scheduler is not None:
            raise ModelError("give either workers (a local Dask cluster) or scheduler (an "
                             "existing one), not both")
        if workers is not None and workers < 1 or processes < 1:
            raise ModelError("workers and processes must be >= 1")
        timeout = SCHEDULER_TIMEOUT_S if scheduler_timeout is None else float(scheduler_timeout)
        if not timeout > 0:
            raise ModelError(f"scheduler_timeout must be > 0 s, got {scheduler_timeout}")
        tty = sys.stderr.isatty() if progress is None else progress
        log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
        self.runs_dir.mkdir(exist_ok=True)
        if n := self.store.recover():
            log(f"{n} run(s) left unfinished by a stopped process will run again")
        self._remove_temporaries()
        if retry_failed:
            with self.store.transaction() as db:
                db.execute(f"UPDATE runs SET status = 'pending' WHERE status = 'failed'"
                           f"{self.store.scope}")
        todo = self.store.counts().get("pending", 0)
        if todo == 0:
            log(f"study {self.spec.name!r}: nothing to run ({self._status_line()})")
            return self.store.counts()
        executor, kind, slots, close = _executor(processes, workers, scheduler, timeout)
        log(f"study {self.spec.name!r}: {todo} run(s) on {kind}")
        bar = _bar(todo, tty)
        try:
            self._loop(executor, slots, bar, log, solve_bars=tty and slots == 1 and
                       kind.startswith("1 local"))
        except BaseException:
            # stopped: the runs in flight were given back (pending), so do not wait for them;
            # once their workers are ended, their half-written files are stale like any other
            close(stop=True)
            self._remove_temporaries()
            raise
        else:
            close()
        finally:
            if bar is not None:
                bar.close()
        log(f"study {self.spec.name!r}: {self._status_line()}")
        return self.store.counts()

    def _remove_temporaries(self):
        """Remove temporaries of VTU, model-record and curve files (``.<id>.vtu.*.part``,
        ``*.part.fd``, ``.<id>.model.json.*.part``, ``.<id>_curve.csv.*.part``) left by a killed
        or stopped run; those of runs another live
        process is running (on this folder) are still being written."""
        busy = {r for (r,) in self.store.db.execute("SELECT run_id FROM runs WHERE status = "
                                                    "'running'")}
        for pattern, tail in ((".*.vtu.*.part*", ".vtu."), (".*_curve.csv.*.part", "_curve.csv."),
                              (".*.model.json.*.part", ".model.json.")):
            for tmp in self.runs_dir.glob(pattern):
                if tmp.name[1:].partition(tail)[0] not in busy:
                    tmp.unlink(missing_ok=True)

    def _loop(self, executor, slots, bar, log, solve_bars):
        in_flight = {}
        # the runs this loop claimed and has not recorded yet: a stop can come between the
        # claim and the submission (starting a worker takes a while) or between a run's end and
        # its record, when the run is not (or no longer) in in_flight
        held = set()
        done = 0
        try:
            while True:
                while len(in_flight) < (slots() if callable(slots) else slots):
                    claimed = self.store.claim()
                    if claimed is None:
                        break
                    rid, params = claimed
                    held.add(rid)
                    # absolute: a Dask worker may run in another folder (or on another host)
                    vtu = (str((self.runs_dir / f"{rid}.vtu").absolute())
                           if self.spec.write_vtu else None)
                    fut = _submit(executor, params, vtu, solve_bars)
                    in_flight[fut] = (rid, vtu, time.time())
                if not in_flight:
                    return
                for fut in _first_completed(executor, list(in_flight)):
                    rid, vtu, t0 = in_flight.pop(fut)
                    try:
                        out = fut.result()
                    except Exception as exc:  # noqa: BLE001 (any failure of a run is recorded)
                        err = f"{type(exc).__name__}: {exc}"
                        self.store.fail(rid, err)
                        msg = f"run {rid} failed: {err}"
                    else:
                        self.store.finish(rid, out, vtu)
                        msg = f"run {rid} done in {time.time() - t0:.1f} s ({out['n_dof']} DOF)"
                        msg += _small_strain_note(out["rows"], out.get("ligaments"))
                    held.discard(rid)
                    done += 1
                    if bar is not None:
                        bar.update()
                        bar.write(msg) if ("failed" in msg or "beyond small strain" in msg
                                           ) else None
                    else:
                        log(f"[{done}] {msg}")
        except BaseException:
            # stopped (SIGINT, SIGTERM) or failed: the runs in flight, and any claimed but not
            # yet submitted or recorded, go back to pending (release leaves a recorded run be)
            for fut in in_flight:
                fut.cancel()
            for rid in held:
                self.store.release(rid)
            raise

    def _status_line(self) -> str:
        c = self.store.counts()
        return ", ".join(f"{c.get(s, 0)} {s}" for s in ("done", "failed", "pending", "running")
                         if c.get(s, 0) or s == "done")

    # ------------------------------------------------------------------ results

    def results(self):
        """One row per finished run and level: the run's parameters, its status and timings,
        and the metrics of :func:`fem.metrics.level_metrics` (units in the column names), with
        the summary columns of :data:`RESULT_COLUMNS`. Only the runs the study's spec names
        (:meth:`own`): a folder in which an earlier version of the spec ran keeps those runs in
        its store, but they are not this study's."""
        return self.own(results_frame(self.store))

    def run_ids(self) -> set | None:
        """The ids of the runs this study's spec names; None where the spec cannot be expanded
        here (a patient's CT files moved, say): then every run of the store is the study's."""
        return self._ids

    def _expand_ids(self) -> set | None:
        try:
            return {run_id(p) for p in self.spec.iter_runs(max_runs=None)}
        except (ModelError, OSError):
            return None

    def own(self, df, *, warn: bool = True):
        """The rows of ``df`` (a frame with ``run_id``) whose runs this study's spec names. The
        others are runs of an earlier version of the spec in the same folder (a value edited, a
        default that changed: they have other ids), left out with a warning that says how many:
        mixing them in would put two studies in one table."""
        ids = self.run_ids()
        if ids is None or not len(df):
            return df
        other = ~df["run_id"].isin(ids)
        if other.any() and warn and not self._said_own:
            import warnings

            self._said_own = True  # once per Study: the summary, the report and the count ask

            warnings.warn(
                f"{self.folder}: {df.loc[other, 'run_id'].nunique()} run(s) in the store are "
                "not runs of this study's spec (an earlier version of it ran in this folder: a "
                "value or a default changed since); they are left out of the results. Run the "
                "spec into a new --out folder to start clean", UserWarning, stacklevel=3)
        return df[~other] if other.any() else df

    def uncertainty(self, *, reference: str | None = None):
        """How sure the predictions of a sampled study (``[uncertain]``) are: the
        :class:`fem.study.uq.Uncertainty` of its finished runs (:func:`fem.study.uq.uncertainty`)."""
        from .uq import uncertainty

        return uncertainty(self, reference=reference)

    def export(self, path) -> Path:
        """Write :meth:`results` as CSV or Parquet (by the suffix), atomically."""
        from ..io.atomic import atomic_path

        path = Path(path)
        if path.suffix.lower() not in (".csv", ".parquet"):
            raise ModelError(f"export to .csv or .parquet, not {path.name!r}")
        # under the store's write lock: with two processes on one folder, a run another process
        # finishes lands before the read or after the rename, so the file written last is whole
        with self.store.transaction(), atomic_path(path) as tmp:
            df = self.results()
            if path.suffix.lower() == ".csv":
                df.to_csv(tmp, index=False)
            else:
                try:
                    df.to_parquet(tmp, index=False)
                except ImportError:
                    raise ModelError("Parquet export needs pyarrow: pip install "
                                     "'vertebra-fem[study]'") from None
        return path


def results_frame(store: Store):
    import pandas as pd

    runs = store.runs_frame()
    mets = store.metrics_frame()
    if not len(runs):
        return pd.DataFrame(columns=RESULT_COLUMNS)
    params = pd.DataFrame([run_record(store, rid, p, "parameters")
                           for rid, p in zip(runs["run_id"], runs["params"])])
    # the backend and solver a run used, beside the ones its parameters asked for ("auto")
    record = runs[["run_id", "status", "error", "backend", "solver", "iterations", "n_dof",
                   "attempts"]].rename(columns={"backend": "backend_used", "solver": "solver_used"})
    base = pd.concat([record, params], axis=1)
    base["seconds"] = [run_record(store, rid, t, "timings").get("total", math.nan)
                       if isinstance(t, str) else math.nan
                       for rid, t in zip(runs["run_id"], runs["timings"])]
    df = base.merge(mets, on="run_id", how="inner")
    cemented = df["procedure"].isin(["pvp", "pkp"])
    df["cement_volume_ml"] = df["cement_volume_ml"].where(cemented, 0.0)
    # the headline strength and factor of risk, recomputed from the per-method columns: a store
    # written before they existed has them NULL (and its factor_of_risk was the Pistoia one)
    from ..metrics import headline_strength

    headline_strength(df)
    df["endplate_bulge_max_mm"] = df[["endplate_bulge_superior_mm",
                                      "endplate_bulge_inferior_mm"]].max(axis=1)
    # the former name of endplate_bulge_max_mm, kept for one release: fem.metrics.compare
    # uses endplate_bulge_mm for the bulge of the endplate facing the treated level
    df["endplate_bulge_mm"] = df["endplate_bulge_max_mm"]
    order = RESULT_COLUMNS + [c for c in df.columns if c not in RESULT_COLUMNS]
    level_rank = {lv: i for i, lv in enumerate(_level_order())}
    df = df[order].sort_values(
        ["run_id", "level"], key=lambda s: s.map(level_rank) if s.name == "level" else
        s.map({r: i for i, r in enumerate(runs["run_id"])})).reset_index(drop=True)
    return df


def run_record(store: Store, rid, text, what: str) -> dict:
    """A run's JSON record (parameters, timings) as a dict; a damaged one is a StoreError."""
    try:
        value = json.loads(text)
    except (ValueError, TypeError) as exc:
        raise store.damaged(f"the {what} of run {rid}", exc) from None
    if not isinstance(value, dict):
        raise store.damaged(f"the {what} of run {rid}", "not a table")
    return value


def _level_order():
    from ..meshes.vertebra import ORDER

    return ORDER


# ---------------------------------------------------------------------- executors

class _LocalPool:
    """A process pool that replaces itself when a worker dies (a killed or crashed run is
    recorded as failed and the study goes on). Workers start by ``forkserver``: a script that
    runs a study must guard its entry point with ``if __name__ == "__main__":``."""

    def __init__(self, processes):
        self.processes = processes
        self.pool = self._new()

    def _new(self):
        import multiprocessing as mp

        return cf.ProcessPoolExecutor(max_workers=self.processes,
                                      mp_context=mp.get_context("forkserver"),
                                      initializer=_end_with_parent)

    def submit(self, fn, *args, **kwargs):
        try:
            return self.pool.submit(fn, *args, **kwargs)
        except cf.process.BrokenProcessPool:
            self.pool.shutdown(wait=False, cancel_futures=True)
            self.pool = self._new()
            return self.pool.submit(fn, *args, **kwargs)

    def close(self, stop: bool = False):
        """Shut the pool down; ``stop``: end the workers now (their runs were given back).

        After a stop the pool's manager thread, which finds its workers gone, is waited for
        (briefly): on Python before 3.12 the interpreter's exit wakes every such thread through
        a pipe that the thread closes as it ends, without a lock between the two, and a stopped
        study then printed "Exception ignored ... OSError: [Errno 9] Bad file descriptor"
        after its own error line (seen once in CI, under load)."""
        manager = getattr(self.pool, "_executor_manager_thread", None)
        if stop:
            for proc in list((getattr(self.pool, "_processes", None) or {}).values()):
                proc.terminate()
            for proc in list((getattr(self.pool, "_processes", None) or {}).values()):
                proc.join(timeout=10)
        self.pool.shutdown(wait=not stop, cancel_futures=True)
        if stop and manager is not None:
            manager.join(timeout=10)


def _end_with_parent():
    """Worker initializer: end the worker when the study process is gone. A study process killed
    with SIGKILL would otherwise leave each worker finishing its run and then waiting forever (the
    forkserver and its workers hold each other's pipes open)."""
    import multiprocessing as mp
    import os
    import threading

    parent = mp.parent_process()  # the study process, through a pipe only it holds open
    if parent is None:
        return

    def watch():
        parent.join()
        os._exit(1)

    threading.Thread(target=watch, name="end-with-study", daemon=True).start()


def _executor(processes, workers, scheduler, timeout=SCHEDULER_TIMEOUT_S):
    """(executor, description, slots, close)"""
    if scheduler is None and workers is None:
        ex = _LocalPool(processes)
        return ex, f"{processes} local process(es)", processes, ex.close
    try:
        from dask.distributed import Client, LocalCluster
    except ImportError:
        raise ModelError("running on Dask needs dask.distributed: pip install "
                         "'vertebra-fem[study]'") from None
    if workers is not None:
        # one run per worker at a time; the dashboard on a free port (two studies may run)
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                               dashboard_address=":0")
        client = Client(cluster)

        def close(stop: bool = False):
            client.close()
            cluster.close()

        return client, f"a local Dask cluster of {workers} worker(s)", workers, close
    try:
        client = Client(scheduler, timeout=timeout)
    except (OSError, TimeoutError, ValueError, TypeError) as exc:
        raise ModelError(f"cannot reach the Dask scheduler at {scheduler!r} within "
                         f"{timeout:g} s ({_one_line(exc)})") from None

    def slots():
        # workers of a scheduler come and go (dask-jobqueue scales by jobs): ask every time
        return max(1, sum(client.nthreads().values()))

    return client, f"the Dask scheduler at {scheduler}", slots, lambda stop=False: client.close()


def _one_line(exc) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def worker(params: dict, vtu: str | None, progress: bool = False) -> dict:
    """:func:`fem.study.recipe.execute` as a worker runs it: its exception comes back to the study
    by pickling, so one that carries what cannot be pickled (a pushover's ConvergenceError holds
    its partial result, whose arrays name their backend module) comes back as
    :func:`portable` makes it, with its type and message, not as a pickling error."""
    from .recipe import execute

    try:
        return execute(params, vtu, progress=progress)
    except Exception as exc:
        raise portable(exc) from None


def portable(exc: Exception) -> Exception:
    """``exc`` made picklable: the attributes that cannot be pickled are dropped (its type,
    message and the rest stay); where that is not enough, a RuntimeError saying both."""
    import pickle

    def ok(obj) -> bool:
        try:
            pickle.loads(pickle.dumps(obj))
        except Exception:  # noqa: BLE001 (whatever pickling raises)
            return False
        return True

    if ok(exc):
        return exc
    for name, value in list(vars(exc).items()):
        if not ok(value):
            delattr(exc, name)
    return exc if ok(exc) else RuntimeError(f"{type(exc).__name__}: {exc}")


def _submit(executor, params, vtu, solve_bars):
    if isinstance(executor, _LocalPool):
        return executor.submit(worker, params, vtu, progress=solve_bars)
    return executor.submit(worker, params, vtu, pure=False, key=f"run-{run_id(params)}-"
                           f"{time.time_ns()}")


def _first_completed(executor, futures):
    if isinstance(executor, _LocalPool):
        done, _ = cf.wait(futures, return_when=cf.FIRST_COMPLETED)
        return done
    from dask.distributed import TimeoutError as DaskTimeout
    from dask.distributed import wait

    try:
        return wait(futures, timeout=DASK_POLL_S, return_when="FIRST_COMPLETED").done
    except DaskTimeout:  # nothing finished yet: the caller looks for new workers' slots
        return set()


def _bar(total, tty):
    if not tty:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc="runs", unit="run", file=sys.stderr)
