"""Orthotropic linear elasticity in the global axes: uniaxial-stress patch tests against the
compliance, agreement with CalculiX (``*ELASTIC, TYPE=ENGINEERING CONSTANTS``), validation and
the deck round trip."""

import numpy as np
import pytest

import fem
from fem.io.calculix import run_ccx
from fem.meshes.blocks import hex_block, tet_block

#: deliberately unequal constants (trabecular-like moduli, distinct Poisson's ratios)
E = (1987.0, 1357.0, 4730.0)
NU = (0.31, 0.12, 0.07)
G = (520.0, 910.0, 760.0)


def _compliance(E, nu, G) -> np.ndarray:
    """Voigt compliance (xx, yy, zz, xy, yz, xz; engineering shear) from engineering constants."""
    Ex, Ey, Ez = E
    S = np.diag([1 / Ex, 1 / Ey, 1 / Ez, 1 / G[0], 1 / G[2], 1 / G[1]])
    S[0, 1] = S[1, 0] = -nu[0] / Ex
    S[0, 2] = S[2, 0] = -nu[1] / Ex
    S[1, 2] = S[2, 1] = -nu[2] / Ey
    return S


def _block(etype: str):
    if etype == "hex8":
        return hex_block((3, 2, 3), (2.0, 1.5, 3.0), distort=0.2, seed=3)
    return tet_block((2, 2, 3), (2.0, 1.5, 3.0), order=2, distort=0.2, seed=3)


@pytest.mark.parametrize("etype", ["hex8", "tet10"])
@pytest.mark.parametrize("axis", [0, 1, 2])
def test_uniaxial_stress_patch(etype, axis):
    """Rollers on the three min faces and a traction on one max face give uniform uniaxial
    stress; every element's strain must be the compliance times that stress."""
    m = _block(etype).set_orthotropic(None, E=E, nu=NU, G=G)
    for d in "xyz":
        m.fix(f"{d}min", d)
    t = np.zeros(3)
    t[axis] = 3.0
    m.add(fem.Traction("xyz"[axis] + "max", tuple(t)))
    r = fem.solve(m, solver="direct")
    sigma = np.zeros(6)
    sigma[axis] = 3.0
    eng = _compliance(E, NU, G) @ sigma
    expected = eng * np.array([1, 1, 1, 0.5, 0.5, 0.5])  # tensor shear components
    assert np.abs(r.strain - expected).max() < 1e-10 * np.abs(expected).max()
    assert np.abs(r.stress - sigma).max() < 1e-9 * 3.0
    ip = np.concatenate([s.reshape(-1, 6) for s in r.integration_point_strain()])
    assert np.abs(ip - expected).max() < 1e-10 * np.abs(expected).max()


def test_simple_shear_gives_gxz():
    """Simple shear in the xz plane: the shear strain is tau / Gxz (engineering)."""
    m = hex_block((2, 2, 2), (1.0, 1.0, 1.0)).set_orthotropic(None, E=E, nu=NU, G=G)
    p = m.points
    u = np.zeros_like(p)
    u[:, 0] = 1e-3 * p[:, 2]
    for n in range(m.n_nodes):
        m.add(fem.Displacement(np.array([n]), tuple(u[n])))
    r = fem.solve(m, solver="direct")
    assert np.allclose(r.stress[:, 5], G[1] * 1e-3, rtol=1e-12)
    assert np.abs(r.stress[:, [0, 1, 2, 3, 4]]).max() < 1e-12 * G[1]


def _ccx_model(etype: str):
    """A distorted block, orthotropic in its upper half and isotropic below, fixed at the bottom
    and loaded by a pressure, a traction and a point force that excite every constant."""
    m = _block(etype)
    c = np.array([m.points[b.conn].mean(axis=1) for b in m.blocks][0])
    upper = np.nonzero(c[:, 2] > 1.5)[0]
    m.add_region("upper", upper).add_region("lower", np.setdiff1d(np.arange(m.n_elements), upper))
    m.set_material("lower", E=900.0, nu=0.3)
    m.set_orthotropic("upper", E=E, nu=NU, G=G)
    m.fix("zmin")
    m.add(fem.Pressure("zmax", 2.0), fem.Traction("xmax", (0.4, -0.7, 0.3)),
          fem.Traction("ymin", (0.2, 0.0, -0.5)))
    return m


@pytest.mark.parametrize("etype", ["hex8", "tet10"])
def test_agrees_with_calculix(etype, ccx, tmp_path):
    m = _ccx_model(etype)
    assert m.orthotropic_mask().sum() == len(m.regions["upper"])
    deck = m.to_inp(tmp_path / f"ortho_{etype}.inp")
    assert "TYPE=ENGINEERING CONSTANTS" in deck.read_text()
    ref = run_ccx(deck)
    r = fem.solve(m, solver="direct")
    pos = np.searchsorted(m.node_ids, ref.node_labels)
    umax = np.abs(ref.displacement).max()
    eu = np.abs(r.displacement[pos] - ref.displacement).max() / umax
    labels, s_ref = ref.element_average_stress()
    s = r.stress[np.searchsorted(m.element_ids, labels)]
    es = np.abs(s - s_ref).max() / np.abs(s_ref).max()
    assert umax > 0 and len(labels) == m.n_elements
    assert eu < 1e-6, f"displacements differ from CalculiX by {eu:.2e} of the largest"
    assert es < 1e-5, f"element stresses differ from CalculiX by {es:.2e} of the largest"


def test_deck_round_trip_keeps_constants(tmp_path):
    m = _ccx_model("hex8")
    back = fem.Model.from_inp(m.to_inp(tmp_path / "rt.inp"))
    ortho = back.orthotropic_mask()
    assert np.array_equal(ortho, m.orthotropic_mask())
    assert np.allclose(back.ortho[ortho], m.ortho[ortho], rtol=1e-14, atol=0)
    assert np.allclose(back.E, m.E, rtol=1e-14) and np.allclose(back.nu, m.nu, rtol=1e-14)
    assert np.allclose(back.ortho[ortho][0], list(E) + list(NU) + list(G), rtol=1e-14)


def test_vtu_round_trip_keeps_constants(tmp_path):
    m = _ccx_model("hex8")
    r = fem.solve(m)
    back = fem.Model.from_file(r.write(tmp_path / "o.vtu"))
    ortho = back.orthotropic_mask()
    assert np.array_equal(ortho, m.orthotropic_mask()) and ortho.any() and not ortho.all()
    assert np.allclose(back.ortho[ortho], m.ortho[ortho], rtol=1e-14, atol=0)
    back.node_sets, back.face_sets, back.conditions = m.node_sets, m.face_sets, m.conditions
    assert np.allclose(fem.solve(back).displacement, r.displacement, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("kwargs, match", [
    (dict(E=(1000.0, -5.0, 3000.0), nu=NU, G=G), "moduli of region 'all' must be > 0"),
    (dict(E=E, nu=NU, G=(500.0, 0.0, 700.0)), "must be > 0"),
    (dict(E=(1000.0, 1000.0, 1000.0), nu=(0.6, 0.6, 0.6), G=G), "not positive definite"),
    (dict(E=E, nu=(0.2, 0.2), G=G), r"three numbers or an \(12, 3\) array"),
    (dict(E=E, nu=NU, G=(1.0, float("nan"), 1.0)), "not finite"),
])
def test_bad_constants_rejected(kwargs, match):
    m = hex_block((3, 2, 2), (1.0, 1.0, 1.0))
    m.add_region("all", np.arange(m.n_elements))
    with pytest.raises(fem.MaterialError, match=match):
        m.set_orthotropic("all", **kwargs)


def test_bad_constants_in_deck_name_the_line(tmp_path):
    m = _ccx_model("hex8")
    text = m.to_inp(tmp_path / "a.inp").read_text().replace("1987, 1357, 4730, 0.31",
                                                              "1987, 1357, 4730, 1.9")
    (tmp_path / "b.inp").write_text(text)
    with pytest.raises(fem.DeckError, match="not positive definite"):
        fem.Model.from_inp(tmp_path / "b.inp")


def test_orthotropic_elements_take_bbar_only_when_nearly_incompressible_and_never_voxel():
    m = hex_block((2, 2, 2), (1.0, 1.0, 1.0), E=100.0, nu=0.49)
    assert m.bbar_mask().all()
    m.set_orthotropic(np.arange(4), E=E, nu=NU, G=G)
    assert not m.bbar_mask()[:4].any() and m.bbar_mask()[4:].all()
    # a soft, nearly incompressible ground with one stiff direction (a fibre-reinforced
    # annulus's kind): Reuss bulk 12.4 MPa against a smallest shear modulus of 0.3 MPa
    soft = fem.model.nearly_incompressible
    ground = [0.8, 0.8, 0.8, 0.49, 0.49, 0.49, 0.8 / 2.98, 0.8 / 2.98, 0.8 / 2.98]
    assert soft(ground)
    for nu in (0.3, 0.4499):
        g = 100.0 / (2.0 * (1.0 + nu))
        assert not soft([100.0, 100.0, 100.0, nu, nu, nu, g, g, g])
    g = 100.0 / 2.9
    assert soft([100.0, 100.0, 100.0, 0.45, 0.45, 0.45, g, g, g])  # the isotropic threshold
    s = m.copy()
    s.set_orthotropic(np.arange(2), E=(0.8, 0.8, 0.8), nu=(0.49,) * 3, G=(0.8 / 2.98,) * 3)
    assert s.bbar_mask()[:2].all() and not s.bbar_mask()[2:4].any()
    s.hex8_formulation = "full"
    assert not s.bbar_mask().any()
    s.hex8_formulation = "bbar"
    assert s.bbar_mask().all()
    grid, why = fem.voxel.grid_of(m)
    assert grid is None and "orthotropic" in why
    c = m.copy()
    c.ortho[0, 0] = 1.0
    assert m.ortho[0, 0] == E[0]
    m.set_material(np.arange(2), E=50.0, nu=0.3)
    assert m.orthotropic_mask().sum() == 2 and m.E[0] == 50.0 and m.E[3] == E[2]
