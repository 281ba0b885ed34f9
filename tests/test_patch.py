"""Patch tests (Irons): every element must reproduce a linear displacement field, and so a
constant stress, exactly on a distorted mesh; otherwise it does not converge.

Displacement patch: the field u = a + B x is prescribed on the boundary of a mesh with randomly
moved interior nodes; the interior nodes must recover it to round-off and every integration point
must carry the constant stress. Force patch: tractions S n of a constant stress S on the six faces
(with a statically determinate 3-2-1 support) must give the same. Units mm, N, MPa.

tet10 elements are straight-sided here. A tet10 with curved edges passes only approximately with
the 4-point rule: cof(J) grad_xi N is cubic in the reference coordinates, the rule is of degree 2
(about 1e-3 relative error for mid-edge nodes moved by 5 % of the edge length);
CalculiX's C3D10 uses the same 4-point rule.
"""

import numpy as np
import pytest

import fem
from verification_models import block, boundary_nodes, impose_field

E, NU = 800.0, 0.3
LAM = E * NU / ((1 + NU) * (1 - 2 * NU))
MU = E / (2 * (1 + NU))
KINDS = ["tet4", "tet10", "hex8", "hex8-bbar"]
SIZE = (2.0, 1.5, 1.0)


def _stress(eps):
    return LAM * np.trace(eps) * np.eye(3) + 2 * MU * eps


def _voigt(t):
    return np.array([t[0, 0], t[1, 1], t[2, 2], t[0, 1], t[1, 2], t[0, 2]])


def _distorted(kind, shape=(3, 3, 3)):
    """A block with randomly moved interior nodes (tet10: straight-sided, see the module note)."""
    return block(kind, shape, SIZE, origin=(0.3, -0.2, 0.1), distort=0.25, seed=7, E=E, nu=NU)


def _all_ip_stress(res):
    return np.concatenate([s.reshape(-1, 6) for s in res.integration_point_stress()])


@pytest.mark.parametrize("kind", KINDS)
def test_displacement_patch(kind, rng):
    m = _distorted(kind)
    a = np.array([1e-3, -2e-3, 5e-4])
    B = rng.uniform(-1e-3, 1e-3, (3, 3))
    exact = lambda x: a + x @ B.T  # noqa: E731
    bnd = boundary_nodes(m)
    impose_field(m, bnd, exact)
    res = fem.solve(m, backend="numpy", solver="direct")

    inner = np.setdiff1d(np.arange(m.n_nodes), bnd)
    assert len(inner) >= 8
    u = np.asarray(res.displacement)
    scale = np.abs(exact(m.points)).max()
    assert np.abs(u[inner] - exact(m.points[inner])).max() < 1e-10 * scale

    eps = 0.5 * (B + B.T)
    sig = _voigt(_stress(eps))
    assert np.abs(_all_ip_stress(res) - sig).max() < 1e-9 * np.abs(sig).max()
    strains = np.concatenate([e.reshape(-1, 6) for e in res.integration_point_strain()])
    assert np.abs(strains - _voigt(eps)).max() < 1e-9 * np.abs(eps).max()
    assert np.abs(np.asarray(res.stress) - sig).max() < 1e-9 * np.abs(sig).max()


def _three_two_one(m, exact):
    """Supports that stop the rigid-body motions and agree with the exact field: the corner at
    the origin fixed, the corner on the x axis held in y and z, the one on the y axis in z."""
    lo, hi = m.points.min(0), m.points.max(0)
    corner = lambda p: int(np.argmin(np.linalg.norm(m.points - p, axis=1)))  # noqa: E731
    o, ax, ay = corner(lo), corner([hi[0], lo[1], lo[2]]), corner([lo[0], hi[1], lo[2]])
    uo, uax, uay = exact(m.points[[o, ax, ay]])
    m.add(fem.Displacement(np.array([o]), tuple(uo)),
          fem.Displacement(np.array([ax]), (None, uax[1], uax[2])),
          fem.Displacement(np.array([ay]), (None, None, uay[2])))


@pytest.mark.parametrize("kind", KINDS)
def test_force_patch_traction(kind):
    """Tractions t = S n on all faces of a distorted block give the constant stress S."""
    m = _distorted(kind)
    S = np.array([[2.0, 0.5, -0.3], [0.5, -1.0, 0.8], [-0.3, 0.8, 1.5]])
    C = np.linalg.inv(np.einsum("ij,kl->ijkl", np.eye(3), np.eye(3)).reshape(9, 9) * LAM
                      + 2 * MU * np.eye(9))
    eps = (C @ S.ravel()).reshape(3, 3)
    assert np.allclose(_stress(eps), S)
    lo = m.points.min(0)
    exact = lambda x: (x - lo) @ eps.T  # noqa: E731
    for axis, name in enumerate("xyz"):
        n = np.eye(3)[axis]
        m.add(fem.Traction(f"{name}max", tuple(S @ n)), fem.Traction(f"{name}min", tuple(-S @ n)))
    _three_two_one(m, exact)
    res = fem.solve(m, backend="numpy", solver="direct")

    u = np.asarray(res.displacement)
    assert np.abs(u - exact(m.points)).max() < 1e-10 * np.abs(exact(m.points)).max()
    assert np.abs(_all_ip_stress(res) - _voigt(S)).max() < 1e-9 * np.abs(S).max()
    # the tractions are self-equilibrated: the 3-2-1 supports carry nothing
    assert np.abs(res.reaction_total()).max() < 1e-9 * np.abs(S).max() * SIZE[0] * SIZE[1]


@pytest.mark.parametrize("kind", KINDS)
def test_force_patch_pressure(kind):
    """A uniform pressure p on every face is a hydrostatic stress -p I everywhere."""
    m = _distorted(kind)
    p = 0.7
    eps = -p / (3 * LAM + 2 * MU) * np.eye(3)
    lo = m.points.min(0)
    exact = lambda x: (x - lo) @ eps.T  # noqa: E731
    m.add(*(fem.Pressure(name, p) for name in ("xmin", "xmax", "ymin", "ymax", "zmin", "zmax")))
    _three_two_one(m, exact)
    res = fem.solve(m, backend="numpy", solver="direct")

    u = np.asarray(res.displacement)
    assert np.abs(u - exact(m.points)).max() < 1e-10 * np.abs(exact(m.points)).max()
    assert np.abs(_all_ip_stress(res) - _voigt(-p * np.eye(3))).max() < 1e-9 * p
    assert np.allclose(res.von_mises, 0.0, atol=1e-9 * p)
