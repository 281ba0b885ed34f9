"""Results do not depend on the number of CPU threads (FEM_THREADS): the row partition of the
threaded sparse products, and with it the summation order of A.T @ r, is fixed by the matrix."""

import os
import subprocess
import sys

import numpy as np
import pytest

SCRIPT = """
import sys, warnings
import numpy as np
import fem
from fem.meshes import loadcases, vertebra
warnings.simplefilter("ignore")
m = vertebra.segment_model("L1-L3", voxel_size=2.0)
loadcases.apply(m, "standing")
r = fem.solve(m, solver="amg")
np.save(sys.argv[1], r.displacement)
"""


@pytest.mark.slow
def test_amg_solution_is_bit_identical_for_1_and_2_threads(tmp_path):
    from fem.parallel import MIN_ROWS_PER_THREAD

    out = {}
    for threads in (1, 2):
        path = tmp_path / f"u{threads}.npy"
        env = {**os.environ, "FEM_THREADS": str(threads), "FEM_BACKEND": "numpy"}
        subprocess.run([sys.executable, "-c", SCRIPT, str(path)], env=env, check=True,
                       timeout=600)
        out[threads] = np.load(path)
    # the model is large enough for the products to be split (59 016 dof > 2 x 20 000 rows)
    assert out[1].size > 2 * MIN_ROWS_PER_THREAD
    assert np.array_equal(out[1], out[2])
