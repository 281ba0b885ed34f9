"""Backends: the CuPy solve against the NumPy solve, and the device code path proven on the CPU.

Without a GPU the CuPy comparisons show as skipped ("no CUDA GPU"). What the GPU runs is still
executed here: the assembled path's device branches (scalar CSR stiffness, CSR constraints, the
plain-operator CG, the AMG hierarchy moved to a backend and cycled with sparse products only) run
with SciPy standing in for ``cupyx.scipy.sparse``, and must give the NumPy solve's answers.
"""

from __future__ import annotations

import logging

import numpy as np
import pytest
import scipy.sparse
import scipy.sparse.linalg

import fem
from fem import analysis, assembly
from fem import system as _system
from fem.amg import SmoothedAggregationAMG, _CoarseSolver
from fem.arrays import row_of_entries
from fem.cli import main
from fem.kernels import backend as backend_mod
from fem.kernels.backend import Backend, cupy_unavailable_reason, get_backend
from fem.meshes.blocks import hex_block, tet_block
from fem.solvers import cg, rigid_body_modes

NO_GPU = cupy_unavailable_reason()
GPU = [pytest.mark.gpu, pytest.mark.skipif(NO_GPU is not None, reason=f"no CUDA GPU: {NO_GPU}")]
CPU_ONLY = pytest.mark.skipif(NO_GPU is None, reason="a CUDA GPU is present: nothing falls back")

#: SciPy in the place of cupyx.scipy.sparse: any backend not named "numpy" takes the device
#: branches of the assembled path (CSR matrices, no worker threads, AMG cycled via to_backend)
STANDIN = Backend("scipy-as-device", np, scipy.sparse, scipy.sparse.linalg,
                  note="SciPy standing in for cupyx")

MESHES = ["tet4", "tet10", "hex8"]
SOLVERS = ["direct", "amg", "cg"]
RTOL = 1e-12  # solve tightly so that two backends' answers differ by rounding only
TOL = 1e-8


def _model(kind: str) -> fem.Model:
    """A heterogeneous block: fixed at the bottom, pressure on a side, a rigid plate on top
    with a force, a moment and one prescribed component (so it has a reaction too)."""
    shape, size = (3, 3, 6), (6.0, 6.0, 12.0)
    if kind == "hex8":
        m = hex_block(shape, size, distort=0.2, E=800.0, nu=0.3)
    else:
        m = tet_block(shape, size, order=2 if kind == "tet10" else 1, distort=0.2, E=800.0,
                      nu=0.3)
    centres = m.points[m.blocks[0].conn].mean(axis=1)
    m.add_region("stiff", np.nonzero(centres[:, 2] > 6.0)[0])
    m.set_material("stiff", E=4000.0, nu=0.35)
    m.add(fem.Fixed("zmin"), fem.Pressure("xmax", 0.4),
          fem.RigidPlate("zmax", force=(3.0, 0.0, -60.0), moment=(0.0, 25.0, 0.0),
                         displacement=(None, 0.0, None), name="plate"))
    return m


def _close(a, b, tol=TOL):
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    scale = max(float(np.abs(b).max()), 1e-300)
    return float(np.abs(a - b).max()) <= tol * scale


def _assert_same_result(res, ref, tol=TOL):
    h = res.backend.to_host
    assert _close(h(res.displacement), ref.displacement, tol)
    assert _close(h(res.stress), ref.stress, tol)
    assert _close(h(res.von_mises), ref.von_mises, tol)
    assert _close(h(res.principal_stress), ref.principal_stress, tol)
    assert res.reactions.keys() == ref.reactions.keys()
    for name, r in ref.reactions.items():
        assert _close(res.reactions[name], r, tol), name
    assert _close(res.plate_motion("plate"), ref.plate_motion("plate"), tol)


@pytest.fixture(scope="module")
def references():
    """The NumPy solves, once per mesh (direct; the iterative ones agree with it to 1e-10)."""
    return {kind: fem.solve(_model(kind), backend="numpy", solver="direct") for kind in MESHES}


# ------------------------------------------------------------------ the CuPy solve on a GPU

@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.parametrize("kind", MESHES)
@pytest.mark.parametrize("_", [pytest.param("cupy", marks=GPU)])
def test_cupy_solve_equals_numpy_solve(kind, solver, _, references):
    res = fem.solve(_model(kind), backend="cupy", solver=solver, rtol=RTOL)
    assert res.info.backend == "cupy" and res.info.solver == solver
    assert res.backend.name == "cupy" and res.backend.note  # the device's name
    _assert_same_result(res, references[kind])


@pytest.mark.parametrize("_", [pytest.param("cupy", marks=GPU)])
def test_cupy_mixed_precision_amg_reaches_the_tolerance(_, references):
    res = fem.solve(_model("hex8"), backend="cupy", solver="amg", rtol=1e-10, precision="mixed")
    assert res.info.residual <= 1e-10 and res.info.precision == "mixed"
    assert _close(res.backend.to_host(res.displacement), references["hex8"].displacement, 1e-7)


@pytest.mark.parametrize("_", [pytest.param("cupy", marks=GPU)])
def test_auto_picks_cupy_on_a_gpu_and_says_so(_, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("FEM_BACKEND", raising=False)
    deck = _deck(tmp_path)
    assert main(["solve", str(deck), "--out", str(tmp_path / "r.vtu")]) == 0
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("backend:")]
    assert len(lines) == 1 and lines[0].startswith("backend: cupy (")


# ------------------------------------------------------------------ the device path on the CPU

@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.parametrize("kind", MESHES)
def test_device_path_with_scipy_equals_numpy_solve(kind, solver, references, monkeypatch):
    """The whole of fem.solve down the branches CuPy takes, with SciPy in cupyx's place."""
    monkeypatch.setattr(analysis, "get_backend", lambda name: STANDIN)
    res = fem.solve(_model(kind), backend="cupy", solver=solver, rtol=RTOL)
    assert res.backend is STANDIN and res.info.backend == STANDIN.name
    _assert_same_result(res, references[kind])


def _constrained(model, be=None):
    be = be or get_backend("numpy")
    sysm = _system.compile_conditions(model)
    K = assembly.to_matrix(*assembly.assemble_stiffness(model, be), be)
    return analysis.constrain(model, sysm, K, be), sysm


def test_device_assembly_and_constraints_match_the_block_path():
    """Scalar CSR assembly (blocks expanded on the device) and the CSR elimination give the
    same constrained system as the NumPy block (BSR) path, entry for entry."""
    m = _model("tet10")
    ref, _ = _constrained(m)
    dev, _ = _constrained(m, STANDIN)
    assert dev.K.format == "csr" and ref.K.format == "bsr"
    assert abs(dev.K - ref.K.tocsr()).max() <= 1e-12 * abs(ref.K).max()
    assert _close(dev.rhs, ref.rhs, 1e-12)
    assert abs(dev.K_rows - ref.K_rows).max() <= 1e-12 * abs(ref.K).max()


@pytest.mark.parametrize("precision", ["double", "mixed"])
@pytest.mark.parametrize("kind", ["hex8", "tet10"])
def test_device_amg_cycle_gives_the_host_iterates(kind, precision):
    """The AMG hierarchy moved to a backend (CSR levels, R = P^T stored, block-diagonal CSR
    Jacobi, coarse inverse) and cycled with sparse products only, here on SciPy: every CG
    iterate equals the threaded host cycle's to 1e-10, or in mixed precision to float32's
    rounding (both cycles smooth in float32, their sums in different orders)."""
    m = _model(kind)
    lin, sysm = _constrained(m)
    B = rigid_body_modes(m.points, np, [p.reference for p in sysm.plates])
    host = SmoothedAggregationAMG(lin.K, B, precision=precision)
    assert host.n_levels >= 2
    dev = host.to_backend(get_backend("numpy"), finest=lin.K.tocsr())
    assert all(isinstance(lv.A, scipy.sparse.csr_matrix) for lv in dev.levels)
    r = np.random.default_rng(3).standard_normal(lin.n_eq)
    assert _close(dev.matvec(r), host.matvec(r), 1e-12 if precision == "double" else 1e-6)

    xs_h, xs_d = [], []
    its_h = cg(lin.K, lin.rhs, rtol=1e-10, M=host, callback=lambda x: xs_h.append(x.copy()))[1]
    its_d = cg(lin.K, lin.rhs, rtol=1e-10, M=dev, callback=lambda x: xs_d.append(x.copy()))[1]
    assert its_h == its_d
    for a, b in zip(xs_d, xs_h):
        assert _close(a, b, 1e-10 if precision == "double" else 1e-5)


@pytest.mark.parametrize("coarse", ["cholesky", "sparse LU"])
def test_device_coarse_solve_matches_the_host(coarse, monkeypatch):
    if coarse == "sparse LU":
        monkeypatch.setattr(_CoarseSolver, "DENSE_MAX", 0)
    m = _model("hex8")
    lin, sysm = _constrained(m)
    B = rigid_body_modes(m.points, np, [p.reference for p in sysm.plates])
    host = SmoothedAggregationAMG(lin.K, B)
    dev = host.to_backend(STANDIN)
    b = np.random.default_rng(5).standard_normal(host.sizes[-1])
    x = dev.coarse(b)
    assert _close(x, host.coarse(b), 1e-10)
    Ac = host.levels[-1].P.A.T @ (host.levels[-1].A.A @ host.levels[-1].P.A)
    assert _close(Ac @ x, b, 1e-8)


def test_device_coarse_solve_of_a_singular_matrix_uses_the_pseudo_inverse():
    A = scipy.sparse.bsr_matrix(np.diag([2.0, 1.0, 0.0, 4.0, 1.0, 1.0]), blocksize=(3, 3))
    host = _CoarseSolver(A)
    b = np.array([2.0, 1.0, 0.0, 4.0, 3.0, -1.0])
    x = host.to_backend(STANDIN)(b)
    assert np.allclose(x, host(b)) and np.allclose(x, [1.0, 1.0, 0.0, 1.0, 3.0, -1.0])


def test_row_of_entries_handles_empty_rows():
    indptr = np.array([0, 0, 2, 2, 5, 6, 6])
    expect = np.repeat(np.arange(6), np.diff(indptr))
    assert np.array_equal(row_of_entries(indptr), expect)
    assert row_of_entries(np.array([0, 0])).shape == (0,)


# ------------------------------------------------------------------ choosing the backend

@CPU_ONLY
def test_auto_falls_back_to_numpy_and_logs_why_once(caplog, monkeypatch):
    monkeypatch.delenv("FEM_BACKEND", raising=False)
    monkeypatch.setattr(backend_mod, "_announced", set())
    with caplog.at_level(logging.INFO, logger="fem.kernels.backend"):
        first, second = get_backend("auto"), get_backend("auto")
        res = fem.solve(_model("tet4"), backend="auto", solver="direct")
    said = [r.getMessage() for r in caplog.records if "backend auto" in r.getMessage()]
    assert len(said) == 1 and NO_GPU in said[0] and "NumPy" in said[0]
    assert first.name == second.name == res.info.backend == "numpy"
    assert res.backend.describe() == f"numpy ({NO_GPU})"


@CPU_ONLY
def test_cupy_without_a_gpu_is_a_solver_error_saying_why(monkeypatch):
    monkeypatch.delenv("FEM_BACKEND", raising=False)
    with pytest.raises(fem.SolverError, match="backend 'cupy' requested but") as err:
        fem.solve(_model("tet4"), backend="cupy")
    assert NO_GPU in str(err.value) and isinstance(err.value, fem.ModelError)


def test_fem_backend_numpy_forces_the_cpu(monkeypatch):
    monkeypatch.setenv("FEM_BACKEND", "numpy")
    for name in ("auto", "cupy"):
        be = get_backend(name)
        assert be.name == "numpy" and be.note == "FEM_BACKEND=numpy"
    res = fem.solve(_model("tet4"), backend="cupy", solver="direct")
    assert res.info.backend == "numpy"
    monkeypatch.setenv("FEM_BACKEND", "gpu-please")
    with pytest.raises(fem.SolverError, match="FEM_BACKEND"):
        fem.solve(_model("tet4"))


def _deck(tmp_path):
    m = hex_block((2, 2, 3), (4.0, 4.0, 6.0), E=500.0, nu=0.3)
    m.add(fem.Fixed("zmin"), fem.Pressure("zmax", 1.0))
    path = tmp_path / "block.inp"
    m.to_inp(path)
    return path


@pytest.mark.parametrize("flag", ["numpy", "auto"])
def test_cli_says_which_backend_it_used(flag, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("FEM_BACKEND", raising=False)
    out = tmp_path / "r.vtu"
    assert main(["solve", str(_deck(tmp_path)), "--out", str(out), "--backend", flag]) == 0
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("backend:")]
    assert len(lines) == 1
    if flag == "numpy":
        assert lines[0] == "backend: numpy (requested)"
    elif NO_GPU is not None:
        assert lines[0] == f"backend: numpy ({NO_GPU})"
    else:
        assert lines[0].startswith("backend: cupy (")


def test_the_mapped_subpackages_are_attributes_of_fem():
    """From a checkout or an editable install, kernels/ and meshes/ are mapped into fem at import;
    they must also be bound as attributes (``fem.meshes.vertebra`` raised AttributeError), as a
    wheel's subpackages are, and ``import fem`` must not load more than numpy for it."""
    import subprocess
    import sys

    code = ("import fem.meshes.vertebra, fem; "
            "assert fem.meshes.vertebra.segment_model and fem.kernels.voxel; print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr
    light = subprocess.run([sys.executable, "-c", "import sys, fem; print('scipy' in sys.modules)"],
                           capture_output=True, text=True, timeout=120)
    assert light.stdout.strip() == "False", light.stderr
