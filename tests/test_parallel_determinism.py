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
import fem.parallel
from fem.meshes import loadcases, vertebra
warnings.simplefilter("ignore")
# a small segment, with the threshold lowered so that its products are split as a large
# model's are (the partition rule is the same; only the size at which it starts differs)
fem.parallel.MIN_ROWS_PER_THREAD = int(sys.argv[2])
m = vertebra.segment_model("L1-L2", voxel_size=3.0)
m = loadcases.loaded(m, "standing")
r = fem.solve(m, solver="amg")
np.save(sys.argv[1], r.displacement)
"""


@pytest.mark.slow
def test_amg_solution_is_bit_identical_for_1_and_2_threads(tmp_path):
    min_rows = 2_000
    out = {}
    for threads in (1, 2):
        path = tmp_path / f"u{threads}.npy"
        env = {**os.environ, "FEM_THREADS": str(threads), "FEM_BACKEND": "numpy"}
        subprocess.run([sys.executable, "-c", SCRIPT, str(path), str(min_rows)], env=env, check=True,
                       timeout=600)
        out[threads] = np.load(path)
    # the model is large enough for the products to be split at this threshold
    assert out[1].size > 2 * min_rows
    assert np.array_equal(out[1], out[2])
