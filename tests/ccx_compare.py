"""Solve a model with vertebra-fem and with CalculiX on its exported deck, and compare."""

import numpy as np

import fem
from fem.io.calculix import run_ccx


def agree_with_ccx(model, deck, *, u_tol=1e-6, s_tol=1e-5, **solve_kwargs):
    """Write ``model`` to ``deck``, run ccx on it and assert that displacements and element
    stresses agree within the relative tolerances (of the largest value); returns the errors."""
    out = run_ccx(model.write_inp(deck))
    r = fem.solve(model, **({"solver": "direct"} | solve_kwargs))
    u = r.displacement[np.searchsorted(model.node_ids, out.node_labels)]
    eu = np.abs(u - out.displacement).max() / np.abs(u).max()
    labels, s_ccx = out.element_average_stress()
    s = r.stress[np.searchsorted(model.element_ids, labels)]
    es = np.abs(s - s_ccx).max() / np.abs(s).max()
    assert eu < u_tol, f"displacements differ from CalculiX by {eu:.2e} of the largest"
    assert es < s_tol, f"element stresses differ from CalculiX by {es:.2e} of the largest"
    return eu, es
