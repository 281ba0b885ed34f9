"""Orthotropic materials in cylindrical axes (``set_orthotropic(..., cylinder=...)``): the Voigt
rotation against the tensor rule, a uniform-stress patch test on a ring, agreement with CalculiX
(``*ORIENTATION, SYSTEM=CYLINDRICAL``), the deck round trip and the faults refused."""

import numpy as np
import pytest

import fem
from fem.kernels import elastic

#: radial, circumferential, axial: an annulus-like material, distinct in every constant
E = (0.5, 12.0, 2.0)
NU = (0.1, 0.15, 0.3)
G = (0.4, 0.3, 0.6)


def _tensor(C):
    T = np.zeros((3, 3, 3, 3))
    for p, (i, j) in enumerate(elastic.VOIGT):
        for q, (k, m) in enumerate(elastic.VOIGT):
            for a, b in {(i, j), (j, i)}:
                for c, d in {(k, m), (m, k)}:
                    T[a, b, c, d] = C[p, q]
    return T


def test_voigt_rotation_is_the_tensor_rotation():
    rng = np.random.default_rng(1)
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    q[:, 0] *= np.sign(np.linalg.det(q))
    C = elastic.orthotropic_stiffness(np.array([list(E) + list(NU) + list(G)]))[0]
    Tg = np.einsum("ia,jb,kc,ld,abcd->ijkl", q, q, q, q, _tensor(C))
    Cg = np.array([[Tg[i, j, k, m] for k, m in elastic.VOIGT] for i, j in elastic.VOIGT])
    np.testing.assert_allclose(elastic.rotate_stiffness(C, q), Cg, atol=1e-12 * np.abs(C).max())
    iso = elastic.orthotropic_stiffness(np.array([[5.0] * 3 + [0.3] * 3 + [5.0 / 2.6] * 3]))[0]
    np.testing.assert_allclose(elastic.rotate_stiffness(iso, q), iso, atol=1e-12 * 5)


def ring(etype="hex8", n=(2, 16, 3), radii=(4.0, 7.0), height=3.0, distort=0.0):
    """A hollow cylinder about the z axis: hex8 or tet10 on a polar grid (n radial,
    circumferential, axial divisions), node sets "bottom" and "top"."""
    nr, nt, nz = n
    r = np.linspace(*radii, nr + 1)
    t = np.linspace(0.0, 2 * np.pi, nt, endpoint=False)
    z = np.linspace(0.0, height, nz + 1)
    R, T, Z = np.meshgrid(r, t, z, indexing="ij")
    pts = np.column_stack([(R * np.cos(T)).ravel(), (R * np.sin(T)).ravel(), Z.ravel()])
    if distort:
        rng = np.random.default_rng(4)
        inner = (np.abs(np.hypot(pts[:, 0], pts[:, 1]) - np.mean(radii)) < 1e-9)
        pts[inner] += distort * rng.uniform(-1, 1, size=(inner.sum(), 3)) * [1, 1, 0]
    idx = np.arange(pts.shape[0]).reshape(nr + 1, nt, nz + 1)
    cells = []
    for i in range(nr):
        for j in range(nt):
            jn = (j + 1) % nt
            for k in range(nz):
                cells.append([idx[i, j, k], idx[i + 1, j, k], idx[i + 1, jn, k], idx[i, jn, k],
                              idx[i, j, k + 1], idx[i + 1, j, k + 1], idx[i + 1, jn, k + 1],
                              idx[i, jn, k + 1]])
    cells = np.array(cells)
    if etype == "tet10":
        from fem.meshes.blocks import _KUHN, _orient, quadratic_tets

        pts, tets = quadratic_tets(pts, _orient(pts, cells[:, _KUHN].reshape(-1, 4)))
        m = fem.Model.from_arrays(pts, [("tet10", tets)])
    else:
        m = fem.Model.from_arrays(pts, [("hex8", cells)])
    z = m.points[:, 2]
    m.add_node_set("bottom", np.nonzero(np.isclose(z, 0.0))[0])
    m.add_node_set("top", np.nonzero(np.isclose(z, height))[0])
    return m


def test_uniform_axial_stress_in_a_ring_is_exact():
    """Constants with nu13 / E1 = nu23 / E2 make uniaxial axial stress compatible in a ring
    (u_r = c r): axial displacement on the top, rollers below, the radius free. Every element
    then has sigma_zz = E3 eps and no other stress, and its circumferential strain is the
    compliance's, in the local axes (hex8 with straight edges represents u_r = c r exactly)."""
    E3, nu13 = 3.0, 0.05
    E_ = (2.0, 10.0, E3)
    nu = (0.1, nu13, nu13 * E_[1] / E_[0])
    m = ring()
    m.add_region("ring", np.arange(m.n_elements))
    m.set_orthotropic("ring", E=E_, nu=nu, G=G, cylinder=((0.0, 0.0, -5.0), (0.0, 0.0, 2.0)))
    m.add(fem.Displacement("bottom", (None, None, 0.0)),
          fem.Displacement("top", (None, None, -0.03)))
    # no rigid motion in the plane: the bottom's inner nodes at 0, 90 and 180 degrees keep
    # their circumferential position (u_r = c r leaves them there)
    nz1 = 4  # axial nodes per column
    m.add(fem.Displacement(np.array([0]), (None, 0.0, None)),
          fem.Displacement(np.array([4 * nz1]), (0.0, None, None)),
          fem.Displacement(np.array([8 * nz1]), (None, 0.0, None)))
    r = fem.solve(m, solver="direct")
    eps = -0.01  # -0.03 / 3
    sz = E3 * eps
    np.testing.assert_allclose(r.stress[:, 2], sz, rtol=1e-9)
    assert np.abs(r.stress[:, [0, 1, 3, 4, 5]]).max() < 1e-9 * abs(sz)
    # radial displacement u_r = -nu31 eps r (nu31 = nu13 E3 / E1), the same strain around
    ur = np.einsum("ij,ij->i", r.displacement[:, :2], m.points[:, :2]) / np.hypot(
        m.points[:, 0], m.points[:, 1])
    np.testing.assert_allclose(ur, -nu13 * E3 / E_[0] * eps * np.hypot(*m.points[:, :2].T),
                               rtol=1e-8, atol=1e-12)


def _loaded_ring(etype):
    m = ring(etype, distort=0.3)
    c = np.array([m.points[b.conn].mean(axis=1) for b in m.blocks][0])
    outer = np.nonzero(np.hypot(c[:, 0], c[:, 1]) > 5.5)[0]
    m.add_region("outer", outer).add_region("inner", np.setdiff1d(np.arange(m.n_elements), outer))
    m.set_material("inner", E=3.0, nu=0.3)
    m.set_orthotropic("outer", E=E, nu=NU, G=G,
                      cylinder=((0.3, -0.2, 0.0), (0.1, 0.05, 1.0)))  # a tilted, offset axis
    m.fix("bottom")
    m.add(fem.Displacement("top", (0.01, -0.02, -0.05)))
    return m


@pytest.mark.parametrize("etype", ["hex8", "tet10"])
def test_agrees_with_calculix(etype, ccx, tmp_path):
    """Measured: 1e-7 in displacements and element stresses on both meshes."""
    from ccx_compare import agree_with_ccx

    m = _loaded_ring(etype)
    deck = tmp_path / f"cyl_{etype}.inp"
    agree_with_ccx(m, deck, u_tol=1e-6, s_tol=1e-5)
    assert "SYSTEM=CYLINDRICAL" in deck.read_text()


def test_deck_round_trip_keeps_the_axis(tmp_path):
    m = _loaded_ring("hex8")
    back = fem.Model.from_inp(m.to_inp(tmp_path / "rt.inp"))
    cyl = back.cylindrical_mask()
    assert np.array_equal(cyl, m.cylindrical_mask()) and cyl.any() and not cyl.all()
    np.testing.assert_allclose(back.ortho_axis[cyl], m.ortho_axis[cyl], rtol=1e-13, atol=1e-14)
    np.testing.assert_allclose(fem.solve(back).displacement, fem.solve(m).displacement,
                               rtol=1e-9, atol=1e-14)


def test_faults_are_refused(tmp_path):
    m = ring()
    with pytest.raises(fem.MaterialError, match="direction .* is zero"):
        m.set_orthotropic(None, E=E, nu=NU, G=G, cylinder=((0, 0, 0), (0, 0, 0)))
    with pytest.raises(fem.MaterialError, match="point and direction"):
        m.set_orthotropic(None, E=E, nu=NU, G=G, cylinder=((0, 0), (0, 0, 1)))
    # an axis through the elements: an integration point on it has no radial direction
    m.set_orthotropic(None, E=E, nu=NU, G=G, cylinder=((5.5, 0.0, 0.0), (0.0, 0.0, 1.0)))
    m.fix("bottom")
    m.add(fem.Displacement("top", (0.0, 0.0, -0.01)))
    m2 = ring(n=(1, 4, 1), radii=(1.0, 3.0))
    m2.set_orthotropic(None, E=E, nu=NU, G=G, cylinder=((0.0, 0.0, 0.0), (0.0, 0.0, 1.0)))
    # the axis through an integration point of element 1: refused, naming it
    xq = np.einsum("gk,kc->gc", m2.blocks[0].etype.N, m2.points[m2.blocks[0].conn[0]])
    m2.set_orthotropic(None, E=E, nu=NU, G=G, cylinder=(tuple(xq[0]), (0.0, 0.0, 1.0)))
    m2.fix("bottom")
    m2.add(fem.Displacement("top", (0.0, 0.0, -0.01)))
    with pytest.raises(fem.MaterialError, match=r"element 1: an integration point lies on the"):
        fem.solve(m2, solver="direct")
    deck = _loaded_ring("hex8").to_inp(tmp_path / "a.inp").read_text()
    (tmp_path / "b.inp").write_text(deck.replace("SYSTEM=CYLINDRICAL", "SYSTEM=RECTANGULAR"))
    with pytest.raises(fem.DeckError, match="SYSTEM=RECTANGULAR is not supported"):
        fem.Model.from_inp(tmp_path / "b.inp")


def test_vtu_round_trip_and_rigid_motion_keep_the_axis(tmp_path):
    """The VTU carries the axis (``orthotropic_axis``); a rigid motion carries it along, so the
    moved model's stresses are the rotated ones."""
    from fem.meshes.transform import rigid_transform

    m = _loaded_ring("hex8")
    r = fem.solve(m)
    back = fem.Model.from_file(r.write(tmp_path / "c.vtu"))
    cyl = back.cylindrical_mask()
    assert np.array_equal(cyl, m.cylindrical_mask())
    np.testing.assert_allclose(back.ortho_axis[cyl], m.ortho_axis[cyl], rtol=1e-14, atol=1e-15)
    Rz = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    a = np.pi / 5
    Rx = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    R = Rx @ Rz
    moved = rigid_transform(m, R, (3.0, -1.0, 2.0))
    rm = fem.solve(moved)
    np.testing.assert_allclose(rm.displacement, r.displacement @ R.T, atol=1e-9 * np.abs(
        r.displacement).max())
    S = np.array([[r.stress[:, i] for i in (0, 3, 5)], [r.stress[:, i] for i in (3, 1, 4)],
                  [r.stress[:, i] for i in (5, 4, 2)]]).transpose(2, 0, 1)
    Sm = np.einsum("ia,eab,jb->eij", R, S, R)
    np.testing.assert_allclose(rm.stress[:, 2], Sm[:, 2, 2], atol=1e-8 * np.abs(S).max())
