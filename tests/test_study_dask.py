"""Studies on every executor: the same results on local processes, a local Dask cluster and an
existing scheduler; failures recorded on Dask; a clear error for an unreachable scheduler;
plain log lines off a terminal and progress bars on one; the user page docs/studies.md kept in
step with the code (parameter table, store columns, the SLURM recipe's job script)."""

from __future__ import annotations

import ast
import json
import os
import re
import select
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from fem.study import PARAMETERS, RESULT_COLUMNS, Study

pytest.importorskip("dask.distributed")

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs" / "studies.md"

# 3 mm voxels keep a run to about a second; the last run is an AMG-CG solve, whose dot products
# would differ in their last digits with the BLAS thread count if a run did not pin it
SPEC = """\
[study]
name = "executors"

[base]
levels = "L2"
voxel_size = 3.0
solver = "direct"
fracture_level = "L2"

[[runs]]
procedure = "intact"

[[runs]]
procedure = "fractured"

[[runs]]
procedure = "pvp"
cement_volume_ml = 2.0

[[runs]]
procedure = "intact"
levels = "L1-L2"
solver = "amg"
load_case = "flexion"
"""

# the first run raises while it runs (15 mL do not fit in a 3 mm L2), the second is fine
FAILING = """\
[study]
name = "failing"

[base]
levels = "L2"
voxel_size = 3.0
solver = "direct"
fracture_level = "L2"

[[runs]]
procedure = "pvp"
cement_volume_ml = 15.0

[[runs]]
procedure = "intact"
"""

# iterative solves, so that a solve bar would have something to draw
PROGRESS = """\
[study]
name = "progress"

[base]
levels = "L2"
voxel_size = 3.0
solver = "amg"
fracture_level = "L2"

[[runs]]
procedure = "intact"

[[runs]]
procedure = "fractured"
"""

#: a finished run's log line; a run whose linear answer turns a disc beyond small strain adds
#: a note (fem.study.execute._small_strain_note)
LOG_LINE = re.compile(r"^\[(\d+)\] run ([0-9a-f]{12}) done in (\d+\.\d) s \((\d+) DOF\)"
                      r"(?:; beyond small strain: [^\n]*)?$", re.M)


def _write(folder: Path, text: str, name="spec.toml") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text)
    return path


def _no_report() -> list[str]:
    """``--no-report`` where ``vfem study`` writes a report: these tests are about running."""
    from fem.cli import _parser

    sub = next(a for a in _parser()._actions if a.dest == "command")
    return ["--no-report"] if "--no-report" in sub.choices["study"].format_help() else []


def _vfem(*args, timeout=240, **kw):
    """``vfem ARGS`` in a child process with pipes (not a terminal)."""
    if args[0] == "study":
        args = (*args, *_no_report())
    return subprocess.run([sys.executable, "-m", "fem.cli", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, **kw)


def _tables(folder: Path):
    """(runs, metrics) of a study store as DataFrames, read without writing."""
    import pandas as pd

    db = sqlite3.connect(f"file:{folder / 'study.sqlite'}?mode=ro", uri=True)
    try:
        runs = pd.read_sql_query("SELECT * FROM runs ORDER BY run_id", db)
        mets = pd.read_sql_query("SELECT * FROM metrics ORDER BY run_id, level", db)
    finally:
        db.close()
    return runs, mets


def _assert_same_results(folder: Path, ref: Path):
    """Every run done in both, the same solver path, metrics and VTU fields equal to 1e-12 of
    each quantity's scale."""
    import meshio

    runs, mets = _tables(folder)
    runs0, mets0 = _tables(ref)
    assert list(runs["status"]) == ["done"] * len(runs0)
    assert list(runs["run_id"]) == list(runs0["run_id"])
    for col in ("backend", "solver", "iterations", "n_dof"):
        assert list(runs[col]) == list(runs0[col]), col
    assert list(zip(mets["run_id"], mets["level"])) == list(zip(mets0["run_id"], mets0["level"]))
    numeric = [c for c in mets0.columns if mets0[c].dtype.kind == "f"]
    assert len(numeric) >= 15
    for col in numeric:
        a, b = mets[col].to_numpy(float), mets0[col].to_numpy(float)
        assert np.array_equal(np.isnan(a), np.isnan(b)), col
        scale = np.nanmax(np.abs(b)) if np.isfinite(b).any() else 0.0
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12 * scale, err_msg=col)
    for rid in runs0["run_id"]:
        m, m0 = (meshio.read(f / "runs" / f"{rid}.vtu") for f in (folder, ref))
        for name in ("displacement",):
            u, u0 = m.point_data[name], m0.point_data[name]
            assert np.max(np.abs(u - u0)) <= 1e-12 * np.max(np.abs(u0)), (rid, name)
        s, s0 = m.cell_data["stress"][0], m0.cell_data["stress"][0]
        assert np.max(np.abs(s - s0)) <= 1e-12 * np.max(np.abs(s0)), (rid, "stress")


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The study on the default executor: one local worker process."""
    folder = tmp_path_factory.mktemp("local")
    spec = _write(folder, SPEC)
    lines = []
    counts = Study(folder / "out", spec).run(progress=False, log=lines.append)
    assert counts == {"done": 4}, lines
    return folder / "out"


@pytest.fixture(scope="module")
def scheduler():
    """An existing Dask scheduler with one worker process (two threads: two runs at a time in
    one process, as a dask-jobqueue worker with several cores runs them)."""
    from dask.distributed import LocalCluster

    with LocalCluster(n_workers=1, processes=True, threads_per_worker=2,
                      dashboard_address=":0") as cluster:
        yield cluster.scheduler_address


# ---------------------------------------------------------------------- identical results

def test_every_executor_gives_the_local_results(reference, scheduler, tmp_path):
    """One test for the three executors, so that the reference is computed once per xdist
    worker: a local Dask cluster (workers=2), an existing scheduler through the Python API, and
    the same scheduler through ``vfem study --scheduler``."""
    spec = _write(tmp_path, SPEC)

    lines = []
    counts = Study(tmp_path / "workers", spec).run(workers=2, progress=False, log=lines.append)
    assert counts == {"done": 4}
    assert any("local Dask cluster of 2 worker(s)" in line for line in lines)
    _assert_same_results(tmp_path / "workers", reference)

    lines = []
    counts = Study(tmp_path / "api", spec).run(scheduler=scheduler, progress=False,
                                               log=lines.append)
    assert counts == {"done": 4}
    assert any(f"the Dask scheduler at {scheduler}" in line for line in lines)
    _assert_same_results(tmp_path / "api", reference)

    # a relative --out, from another folder than the workers': the VTU paths must not depend
    # on a worker's working directory
    r = _vfem("study", spec.name, "--out", "cli", "--scheduler", scheduler, *_no_report(),
              cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert len(LOG_LINE.findall(r.stderr)) == 4
    assert "INFO" not in r.stderr  # Dask's own logging stays quiet without -v
    assert (tmp_path / "cli" / "summary.csv").exists()
    _assert_same_results(tmp_path / "cli", reference)


# ---------------------------------------------------------------------- faults on Dask

def test_run_that_raises_on_dask_is_recorded_and_the_study_goes_on(scheduler, tmp_path):
    spec = _write(tmp_path, FAILING)
    r = _vfem("study", spec, "--out", tmp_path / "out", "--scheduler", scheduler)
    assert r.returncode == 1, r.stderr
    assert "Traceback" not in r.stderr
    runs, mets = _tables(tmp_path / "out")
    status = {json.loads(p)["procedure"]: s for p, s in zip(runs["params"], runs["status"])}
    assert status == {"pvp": "failed", "intact": "done"}
    err = runs.loc[runs["status"] == "failed", "error"].item()
    assert err.startswith("MeshError: ") and "L2 can take only" in err
    assert set(mets["run_id"]) == set(runs.loc[runs["status"] == "done", "run_id"])
    failed_id = runs.loc[runs["status"] == "failed", "run_id"].item()
    assert f"run {failed_id} failed: MeshError" in r.stderr
    assert not (tmp_path / "out" / "runs" / f"{failed_id}.vtu").exists()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("address", ["tcp://127.0.0.1:{port}", "no-port-here"])
def test_unreachable_scheduler_is_a_clear_error(address, tmp_path):
    spec = _write(tmp_path, FAILING)
    address = address.format(port=_free_port())
    t = time.monotonic()
    r = _vfem("study", spec, "--out", tmp_path / "out", "--scheduler", address,
              "--scheduler-timeout", "1", timeout=90)
    waited = time.monotonic() - t
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: cannot reach the Dask scheduler at "
                                                   f"{address!r}"), r.stderr
    # nothing ran, nothing was lost: both runs wait, pending, for a scheduler that answers
    runs, _ = _tables(tmp_path / "out")
    assert list(runs["status"]) == ["pending", "pending"]
    assert list(runs["attempts"]) == [0, 0]
    assert "within 1 s" in lines[0] or "no-port" in address, r.stderr
    print(f"{address}: error after {waited:.1f} s")


# ---------------------------------------------------------------------- progress output

def test_plain_log_lines_off_a_terminal(tmp_path):
    spec = _write(tmp_path, PROGRESS)
    r = _vfem("study", spec, "--out", tmp_path / "out", *_no_report())
    assert r.returncode == 0, r.stderr
    found = LOG_LINE.findall(r.stderr)
    assert [int(k) for k, *_ in found] == [1, 2]
    runs, _ = _tables(tmp_path / "out")
    assert sorted(rid for _, rid, *_ in found) == sorted(runs["run_id"])
    assert all(int(it) > 0 for it in runs["iterations"])  # CG ran: a bar had something to draw
    for text in (r.stderr, r.stdout):
        assert "\r" not in text and "\x1b[" not in text
        assert "it/s" not in text and "CG (" not in text and "runs:" not in text


def _run_in_pty(cmd, timeout=120.0) -> tuple[int, str]:
    """Run ``cmd`` with stdin, stdout and stderr on a 120 x 40 pseudo-terminal; (status, output)."""
    import fcntl
    import pty
    import struct
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    proc = subprocess.Popen(cmd, stdin=slave, stdout=slave, stderr=slave, close_fds=True)
    os.close(slave)
    out = bytearray()
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.5)
            if ready:
                try:
                    data = os.read(master, 1 << 16)
                except OSError:  # EIO: every writer has closed the terminal
                    break
                if not data:
                    break
                out += data
            elif proc.poll() is not None:
                break
        else:
            proc.kill()
            pytest.fail(f"{cmd} did not finish within {timeout} s:\n{out.decode(errors='replace')}")
    finally:
        os.close(master)
    return proc.wait(timeout=30), out.decode(errors="replace")


def test_progress_bars_on_a_terminal(tmp_path):
    spec = _write(tmp_path, PROGRESS)
    status, out = _run_in_pty([sys.executable, "-m", "fem.cli", "study", str(spec), "--out",
                               str(tmp_path / "out"), *_no_report()])
    assert status == 0, out
    frames = re.split(r"[\r\n]", out)
    runs_bar = [f for f in frames if re.match(r"runs:\s+\d+%\|", f)]
    assert runs_bar and "2/2" in runs_bar[-1] and "100%" in runs_bar[-1], out
    assert any(re.search(r"CG \(\d+ DOF\): \d+ it", f) for f in frames), out
    assert not LOG_LINE.search(out.replace("\r\n", "\n"))  # the bar replaces the log lines
    assert "study 'progress': 2 done" in out


# ---------------------------------------------------------------------- docs/studies.md

def _allowed(p) -> str:
    choices = p.choices() if callable(p.choices) else p.choices
    if choices is not None:
        return ", ".join(f"`{c}`" for c in choices)
    if p.check is not None and p.check.__closure__:
        cells = dict(zip(p.check.__code__.co_freevars,
                         (c.cell_contents for c in p.check.__closure__)))
        if {"lo", "hi"} <= set(cells):
            return f"{cells['lo']} .. {cells['hi']}{cells.get('unit', '')}"
        if "lim" in cells:  # a limit of fem.limits.LIMITS
            return cells["lim"].describe()
    return ""


def _default(p) -> str:
    if p.kind is bool:
        return "`false`" if not p.default else "`true`"
    if p.kind is str:
        return f'`"{p.default}"`'
    return f"`{p.default}`"


def parameter_table() -> str:
    """The table of docs/studies.md, from :data:`fem.study.PARAMETERS`."""
    rows = ["| parameter | type | default | allowed | meaning (units) |",
            "|---|---|---|---|---|"]
    for name, p in PARAMETERS.items():
        rows.append(f"| `{name}` | {p.kind.__name__} | {_default(p)} | {_allowed(p)} | "
                    f"{p.help.replace('|', '/')} |")
    return "\n".join(rows)


def _doc() -> str:
    assert DOCS.exists(), f"{DOCS} is missing"
    return DOCS.read_text()


def test_docs_parameter_table_is_the_code_s():
    text = _doc()
    m = re.search(r"<!-- parameters: generated[^>]*-->\n(.*?)\n<!-- end parameters -->", text,
                  re.S)
    assert m, "docs/studies.md lost its generated parameter table markers"
    assert m.group(1).strip() == parameter_table(), (
        "docs/studies.md's parameter table is out of date; paste the output of "
        "`python tests/test_study_dask.py` between its markers")
    for name in PARAMETERS:
        assert f"| `{name}` |" in text


def test_docs_name_every_store_and_result_column():
    from fem.metrics import COLUMNS
    from fem.study.store import _versions  # noqa: F401 (the store the page describes exists)

    text = _doc()
    missing = [c for c in (*COLUMNS, *RESULT_COLUMNS) if f"`{c}`" not in text]
    assert not missing, f"docs/studies.md does not name the columns {missing}"
    for word in ("study.sqlite", "summary.csv", "runs/<run_id>.vtu", "--retry-failed",
                 "--scheduler", "--workers", "--processes", "vfem results"):
        assert word in text, word


def _code_block(heading: str) -> str:
    """The first ```python block under the first heading containing ``heading``."""
    text = _doc()
    m = re.search(rf"^#+ [^\n]*{re.escape(heading)}[^\n]*\n(.*?)(?=^#+ |\Z)", text, re.M | re.S)
    assert m, f"no section on {heading} in docs/studies.md"
    block = re.search(r"```python\n(.*?)```", m.group(1), re.S)
    assert block, f"no python block in the {heading} section"
    return block.group(1)


def _call_kwargs(tree, name: str) -> dict:
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == name:
            return {k.arg: ast.literal_eval(k.value) for k in node.keywords}
    raise AssertionError(f"no call to {name}")


def test_docs_slurm_recipe_builds_the_job_script_it_promises():
    code = _code_block("SLURM")
    tree = ast.parse(code)
    kwargs = _call_kwargs(tree, "SLURMCluster")
    assert {"cores", "memory", "processes", "walltime"} <= set(kwargs)
    assert "cluster.scale(jobs=" in code
    assert re.search(r"\.run\(\s*scheduler=cluster\.scheduler_address", code)
    assert 'if __name__ == "__main__":' in code
    imports = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    exec(compile(ast.Module(body=[n for n in imports if "dask_jobqueue" not in ast.unparse(n)],
                            type_ignores=[]), "<docs>", "exec"), {})
    dask_jobqueue = pytest.importorskip("dask_jobqueue")
    with dask_jobqueue.SLURMCluster(**kwargs, scheduler_options={"dashboard_address": ":0"}
                                    ) as cluster:
        script = cluster.job_script()
    sbatch = [line for line in script.splitlines() if line.startswith("#SBATCH")]
    assert f"#SBATCH --cpus-per-task={kwargs['cores']}" in sbatch, script
    assert f"#SBATCH -t {kwargs['walltime']}" in sbatch, script
    assert any(line.startswith("#SBATCH --mem=") for line in sbatch), script
    nthreads = kwargs["cores"] // kwargs["processes"]
    assert f"--nthreads {nthreads}" in script and "--nanny" in script, script


def test_docs_dask_cuda_recipe_uses_one_worker_per_gpu():
    code = _code_block("dask-cuda")
    tree = ast.parse(code)
    assert "LocalCUDACluster(" in code
    assert re.search(r"\.run\(\s*scheduler=cluster\.scheduler_address", code)
    assert 'if __name__ == "__main__":' in code
    names = {a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)
             for a in n.names}
    assert {"LocalCUDACluster", "Study"} <= names
    assert re.search(r'backend\s*=\s*"(cupy|auto)"', _doc())


if __name__ == "__main__":
    print(parameter_table())
