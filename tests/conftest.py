"""Shared fixtures: backends, CalculiX, small models.

CalculiX (``ccx``) is required: the agreement tests are a deliverable and run in CI. Set
``FEM_SKIP_CCX=1`` to skip them (visibly) on a machine without it.
"""

from __future__ import annotations

import os

if os.environ.get("PYTEST_XDIST_WORKER"):
    # one thread per xdist worker: the workers already fill the cores, and two workers each
    # running a thread per core (fem.parallel, OpenBLAS, CalculiX's OpenMP) oversubscribe them
    # (the whole suite on 2 cores: 391 s -> 312 s). Set before numpy loads OpenBLAS; tests of
    # threading set FEM_THREADS in their subprocesses explicitly.
    for _var in ("FEM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(_var, "1")

import numpy as np
import pytest
from cupy_api import CUPY_WARNINGS_ARE_ERRORS

from fem.io.calculix import ccx_executable
from fem.kernels.backend import cupy_unavailable_reason

_CUPY_REASON = cupy_unavailable_reason()

BACKENDS = [
    "numpy",
    pytest.param("cupy", marks=[pytest.mark.gpu, pytest.mark.skipif(
        _CUPY_REASON is not None, reason=f"GPU test: {_CUPY_REASON}")]),
]


#: the modules that take longest (seconds of work, ``pytest --durations=0``, 2026-12-06), run
#: first: under ``-n 2 --dist loadfile`` a worker takes whole modules in collection order, so a
#: long module collected last (alphabetically: test_vertebra_gmsh, 48 s) could leave the other
#: worker idle for most of it; longest first packs the two workers evenly
LONGEST_FIRST = ("test_disc_fibres.py", "test_study.py", "test_vertebra_gmsh.py",
                 "test_ssm_tet10.py", "test_uq_report.py", "test_study_dask.py",
                 "test_examples.py", "test_viz_report.py", "test_literature.py",
                 "test_nonlinear.py", "test_canonical_study.py")


def pytest_collection_modifyitems(items):
    """The modules of :data:`LONGEST_FIRST` first (the order within a module kept). A test
    marked ``gpu`` fails on a DeprecationWarning or FutureWarning issued by CuPy, so a CuPy
    upgrade that deprecates a name the code uses shows on the GPU runner before the name is
    removed."""
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))
    for item in items:
        if item.get_closest_marker("gpu") is not None:
            item.add_marker(pytest.mark.filterwarnings(*CUPY_WARNINGS_ARE_ERRORS))


@pytest.fixture(params=BACKENDS)
def backend(request):
    """Each test using this runs once per backend; CuPy shows as a visible skip without a GPU."""
    return request.param


@pytest.fixture(scope="session")
def ccx():
    """Path of the CalculiX executable; fails (not skips) when it is missing, unless
    FEM_SKIP_CCX=1 is set, because the CalculiX comparisons are part of the suite."""
    exe = ccx_executable()
    if exe is None:
        if os.environ.get("FEM_SKIP_CCX") == "1":
            pytest.skip("CalculiX (ccx) not installed and FEM_SKIP_CCX=1")
        pytest.fail("CalculiX (ccx) is not installed: apt-get install calculix-ccx "
                    "(or set FEM_SKIP_CCX=1 to skip the CalculiX comparisons)")
    return exe


@pytest.fixture
def rng():
    return np.random.default_rng(20261123)
