"""Element kernels against a plain B^T D B implementation, and the reference elements."""

import numpy as np
import pytest

from fem.elements import ELEMENT_TYPES, FACE_TYPES
from fem.kernels import elastic


def _naive_stiffness(X, et, E, nu):
    lam = E * nu / ((1 + nu) * (1 - 2 * nu))
    mu = E / (2 * (1 + nu))
    D = np.zeros((6, 6))
    D[:3, :3] = lam
    D[np.arange(3), np.arange(3)] += 2 * mu
    D[3:, 3:] = np.eye(3) * mu  # engineering shear strains
    k = et.n_nodes
    K = np.zeros((3 * k, 3 * k))
    for g in range(et.n_gauss):
        J = et.dN[g].T @ X
        G = et.dN[g] @ np.linalg.inv(J).T
        B = np.zeros((6, 3 * k))
        for a in range(k):
            dx, dy, dz = G[a]
            B[:, 3 * a:3 * a + 3] = [[dx, 0, 0], [0, dy, 0], [0, 0, dz],
                                     [dy, dx, 0], [0, dz, dy], [dz, 0, dx]]
        K += B.T @ D @ B * et.weights[g] * np.linalg.det(J)
    return K


@pytest.mark.parametrize("name", ["tet4", "tet10", "hex8"])
def test_stiffness_matches_btdb(name, rng):
    et = ELEMENT_TYPES[name]
    X = et.node_coords[None] * 2.0 + rng.uniform(-0.1, 0.1, (5, et.n_nodes, 3))
    E = rng.uniform(50, 5000, 5)
    nu = rng.uniform(0.1, 0.45, 5)
    G, det = elastic.gradients(X, et.dN)
    lam = E * nu / ((1 + nu) * (1 - 2 * nu))
    mu = E / (2 * (1 + nu))
    K = elastic.stiffness_matrices(G, det * et.weights, lam, mu).reshape(5, 3 * et.n_nodes, -1)
    for i in range(5):
        ref = _naive_stiffness(X[i], et, E[i], nu[i])
        assert np.allclose(K[i], ref, rtol=1e-12, atol=1e-12 * np.abs(ref).max())


@pytest.mark.parametrize("name", ["tet4", "tet10", "hex8"])
def test_partition_of_unity_and_volume(name):
    et = ELEMENT_TYPES[name]
    assert np.allclose(et.N.sum(axis=1), 1.0)
    assert np.allclose(et.dN.sum(axis=1), 0.0)
    ref_volume = {"tet4": 1 / 6, "tet10": 1 / 6, "hex8": 8.0}[name]
    assert np.isclose(et.weights.sum(), ref_volume)
    # shape functions are 1 at their own node and 0 at the others
    N, _ = et.shape(et.node_coords)
    assert np.allclose(N, np.eye(et.n_nodes), atol=1e-14)


@pytest.mark.parametrize("name", ["tri3", "tri6", "quad4"])
def test_face_rules_integrate_the_area(name):
    ft = FACE_TYPES[name]
    assert np.isclose(ft.weights.sum(), 4.0 if name == "quad4" else 0.5)
    assert np.allclose(ft.N.sum(axis=1), 1.0)


@pytest.mark.parametrize("name", ["tet4", "tet10", "hex8"])
def test_faces_point_outward(name):
    et = ELEMENT_TYPES[name]
    X = et.node_coords
    centre = X[: et.n_corners].mean(0)
    for face in et.faces:
        p = X[list(face[:3])]
        n = np.cross(p[1] - p[0], p[2] - p[0])
        assert np.dot(n, p.mean(0) - centre) > 0


def test_bbar_equals_full_for_compressible_volumetric_part(rng):
    """B-bar only changes the volumetric part: on a parallelepiped (constant strain states
    integrate exactly) the two agree for uniform dilatation."""
    et = ELEMENT_TYPES["hex8"]
    X = (et.node_coords @ np.array([[1.0, 0.2, 0], [0, 1.1, 0.1], [0, 0, 0.9]]))[None]
    G, det = elastic.gradients(X, et.dN)
    lam, mu = np.array([100.0]), np.array([40.0])
    u = 0.01 * X  # uniform dilatation: a constant-strain field
    Kf = elastic.stiffness_matrices(G, det * et.weights, lam, mu).reshape(24, 24)
    Kb = elastic.stiffness_matrices(G, det * et.weights, lam, mu, np.array([True])).reshape(24, 24)
    assert np.allclose(Kf @ u.ravel(), Kb @ u.ravel(), rtol=1e-12, atol=1e-12)
    assert np.allclose(Kb, Kb.T, atol=1e-12 * np.abs(Kb).max())


def test_a_blocks_elements_are_picked_out_of_global_indices():
    """``CellBlock.holds`` / ``CellBlock.local``: which of a set of global element indices lie
    in a block, and their indices within it, on a model of a tet4 block followed by a hex8
    block; ``Model.element_nodes`` reads the right connectivity through them."""
    from fem.model import Model

    pts = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0], [1, 0, 1],
                    [0, 1, 1], [1, 1, 1]], dtype=float)
    tets = np.array([[0, 1, 2, 3], [1, 4, 2, 7]])
    hexes = np.array([[0, 1, 4, 2, 3, 5, 7, 6]])
    m = Model.from_arrays(pts, [("tet4", tets), ("hex8", hexes)])
    tet, hexa = m.blocks
    assert (tet.start, tet.stop, hexa.start, hexa.stop) == (0, 2, 2, 3)
    el = np.array([2, 1, 0, 2])
    assert tet.holds(el).tolist() == [False, True, True, False]
    assert tet.local(el).tolist() == [1, 0] and hexa.local(el).tolist() == [0, 0]
    assert hexa.local(np.array([0, 1], dtype=np.int64)).size == 0
    assert m.element_nodes([1]).tolist() == [1, 2, 4, 7]
    assert m.element_nodes([2, 0]).tolist() == list(range(8))
