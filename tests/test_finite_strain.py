"""Large deformation (``fem.finite_strain``): total-Lagrangian neo-Hookean solids and the
fibre-reinforced annulus stretched by its Green-Lagrange strain.

Verification: the exact homogeneous answers (uniaxial stretch and compression of a neo-Hookean
block, hex8 with and without mean dilatation and tet4; uniaxial stretch along fibres); the
small-load limit is :func:`fem.solve`'s answer; the assembled tangent is the derivative of the
internal forces (finite differences, with fibres and mean dilatation); Newton's method
converges quadratically; and CalculiX (``*HYPERELASTIC, NEO HOOKE`` with ``NLGEOM``, C3D8 and
C3D10) on the same cantilever, increment by increment, through a large deflection.
"""

from __future__ import annotations

import contextlib
import re

import numpy as np
import pytest
from scipy.optimize import brentq

import fem
from fem.errors import MaterialError, SolverError
from fem.fibres import FibreLaw, FibreRegion
from fem.finite_strain import internal_forces, solve_finite_strain
from fem.io.calculix import run_ccx
from fem.loads import Displacement, Fixed, TotalForce
from fem.meshes.blocks import hex_block, tet_block

E, NU = 10.0, 0.3


def _moduli(E, nu):
    return E / (2.0 * (1.0 + nu)), E / (3.0 * (1.0 - 2.0 * nu))


def _uniaxial(stretch, E, nu):
    """(lateral stretch, axial Cauchy stress MPa, stored energy per reference volume) of a
    decoupled neo-Hookean bar stretched by ``stretch`` with its lateral faces free."""
    mu, kappa = _moduli(E, nu)

    def state(s):
        J = stretch * s * s
        I1 = stretch ** 2 + 2 * s * s
        lateral = mu * J ** (-5 / 3) * (s * s - I1 / 3) + kappa * (J - 1)
        axial = mu * J ** (-5 / 3) * (stretch ** 2 - I1 / 3) + kappa * (J - 1)
        W = 0.5 * mu * (J ** (-2 / 3) * I1 - 3) + 0.5 * kappa * (J - 1) ** 2
        return lateral, axial, W

    s = brentq(lambda s: state(s)[0], 0.3, 3.0, xtol=1e-15)
    return s, state(s)[1], state(s)[2]


def _block(etype, nu, stretch):
    mk = {"hex8": lambda: hex_block((2, 2, 2), distort=0.1, seed=3, E=E, nu=nu),
          "tet4": lambda: tet_block((2, 2, 2), distort=0.1, seed=3, E=E, nu=nu)}[etype]
    m = mk()
    m.add(Fixed("xmin", "x"), Fixed("ymin", "y"), Fixed("zmin", "z"),
          Displacement("xmax", (stretch - 1.0, None, None)))
    return m


@pytest.mark.parametrize("stretch", [1.5, 0.7])
@pytest.mark.parametrize("etype,nu", [("hex8", 0.3), ("hex8", 0.4999), ("tet4", 0.3)])
def test_uniaxial_stretch_is_the_exact_neo_hookean_answer(etype, nu, stretch):
    """A distorted unit cube pulled to 1.5x or pushed to 0.7x its length, lateral faces free:
    the deformation is homogeneous, so every element type gives the exact lateral stretch,
    Cauchy stress, reaction (stress x current area) and stored energy. At nu 0.4999 the hex8
    elements take the mean dilatation (exact for a homogeneous state)."""
    m = _block(etype, nu, stretch)
    r = solve_finite_strain(m, increments=4, solver="direct", tol=1e-10)
    s, sigma, W = _uniaxial(stretch, E, nu)
    f = r.final
    u = np.asarray(f.displacement)
    top = m.nodes_of("ymax")
    np.testing.assert_allclose(1.0 + u[top, 1], s, rtol=1e-9)
    stress = np.asarray(f.stress)
    np.testing.assert_allclose(stress[:, 0], sigma, rtol=1e-8)
    assert np.abs(stress[:, 1:]).max() < 1e-8 * abs(sigma)
    assert r.steps[-1].force == pytest.approx(abs(sigma) * s * s, rel=1e-8)
    np.testing.assert_allclose(f.strain_energy_density, W, rtol=1e-8)
    np.testing.assert_allclose(f.extra_cell_fields["jacobian"], stretch * s * s, rtol=1e-9)
    if nu > 0.49:
        assert abs(stretch * s * s - 1.0) < 1e-3  # nearly incompressible, and not locked


def test_small_loads_give_the_linear_answer():
    """At 1e-6 N the large-deformation answer is fem.solve's to 1e-5 (B-bar hex8 too), and the
    difference is the geometric nonlinearity: 1 000 times the load, 1 000 times the
    difference."""
    diffs = {}
    for nu in (0.3, 0.4999):
        for load in (1e-6, 1e-3):
            m = hex_block((4, 2, 2), (4.0, 1.0, 1.0), E=E, nu=nu)
            m.add(Fixed("xmin", "xyz"), TotalForce("xmax", (0.0, 0.0, -load)))
            with pytest.warns(UserWarning) if nu > 0.45 else contextlib.nullcontext():
                lin = np.asarray(fem.solve(m, backend="numpy").displacement)
            big = np.asarray(solve_finite_strain(m, increments=1, backend="numpy")
                             .final.displacement)
            diffs[nu, load] = np.abs(big - lin).max() / np.abs(lin).max()
        assert diffs[nu, 1e-6] < 1e-5
        assert diffs[nu, 1e-3] / diffs[nu, 1e-6] == pytest.approx(1e3, rel=1e-2)


@pytest.mark.parametrize("etype", ["hex8", "tet10"])
def test_the_tangent_is_the_derivative_of_the_internal_forces(etype, rng):
    """Central differences of the internal forces along a random direction, at a random
    state of 10-20 % strain, on elements with fibres in tension, slack fibres, and (hex8,
    nu 0.4999) the mean dilatation: K du matches to 1e-6."""
    if etype == "hex8":
        m = hex_block((2, 2, 2), distort=0.15, seed=4, E=1.0, nu=0.4999)
    else:
        m = tet_block((2, 1, 1), distort=0.15, seed=4, E=1.0, nu=0.45, order=2)
    fibres = [FibreRegion("half", np.arange(m.n_elements // 2), ((-3.0, 0.5, 0.5), (0, 0, 1)))]
    law = FibreLaw()
    u = 0.03 * rng.standard_normal((m.n_nodes, 3))
    du = rng.standard_normal((m.n_nodes, 3))
    f0, K = internal_forces(m, u, fibres=fibres, law=law, tangent=True)
    h = 1e-6
    fp = internal_forces(m, u + h * du, fibres=fibres, law=law)
    fm = internal_forces(m, u - h * du, fibres=fibres, law=law)
    fd = ((fp - fm) / (2 * h)).ravel()
    Kdu = K @ du.ravel()
    assert np.linalg.norm(Kdu - fd) < 1e-6 * np.linalg.norm(fd)
    assert abs(K - K.T).max() < 1e-10 * abs(K).max()
    # the state exercised both branches of the fibre law
    from fem.finite_strain import _Material  # noqa: PLC0415  (a test of the internals)

    mat = _Material(m, np, fibres, law, None)
    e = np.concatenate([mat.fibre_strains(c, mat.gradients(c, u.reshape(-1)))[0].ravel()
                        for c in mat.chunks if c.fibre_local is not None])
    assert (e > law.toe_strain).any() and (e < 0).any()


def test_fibres_along_the_load_carry_it_by_their_green_strain():
    """Both families along y (angle 0) in a block stretched along y to 1.1x: the lateral
    stretch is the ground's alone, and the axial Cauchy stress adds the fibres'
    ``lambda^2 sigma_f(E_yy) / J`` to the ground's, with E_yy = (lambda^2 - 1) / 2: the Green
    strain (10.5 %), not the linear one (10 %)."""
    law = FibreLaw(angle=0.0)
    lam = 1.1
    m = hex_block((2, 2, 2), distort=0.1, seed=3, E=1.0, nu=0.3)
    m.add(Fixed("ymin", "y"), Fixed("xmin", "x"), Fixed("zmin", "z"),
          Displacement("ymax", (None, lam - 1.0, None)))
    region = FibreRegion("block", np.arange(m.n_elements), ((-1.0e6, 0.5, 0.5), (0, 0, 1)))
    r = solve_finite_strain(m, fibres=[region], law=law, increments=4, solver="direct",
                            tol=1e-10)
    s, ground, _ = _uniaxial(lam, *law.ground)
    Eyy = 0.5 * (lam * lam - 1.0)
    J = lam * s * s
    expected = ground + lam * lam * law.stress(Eyy) / J
    stress = np.asarray(r.final.stress)
    np.testing.assert_allclose(stress[:, 1], expected, rtol=1e-5)
    u = np.asarray(r.final.displacement)
    np.testing.assert_allclose(1.0 + u[m.nodes_of("xmax"), 0], s, rtol=1e-5)
    np.testing.assert_allclose(r.final.extra_cell_fields["fibre_strain_plus"], Eyy, rtol=1e-5)
    assert r.steps[-1].force == pytest.approx(expected * s * s, rel=1e-5)


def test_newton_converges_quadratically():
    m = hex_block((10, 2, 2), (10.0, 1.0, 1.0), E=E, nu=NU)
    m.add(Fixed("xmin", "xyz"), TotalForce("xmax", (0.0, 0.0, -0.03)))
    r = solve_finite_strain(m, increments=5, solver="direct", tol=1e-12, utol=1e-12)
    checked = 0
    for hist in r.info["residuals"]:
        pairs = [(a, b) for a, b in zip(hist, hist[1:]) if 1e-7 < a < 1e-3]
        for a, b in pairs:
            assert b < 100 * a * a, hist
            checked += 1
    assert checked >= 5


def test_reusing_the_factors_gives_the_direct_answer(monkeypatch):
    """The direct solver's Newton iterations reuse the last LU factors as CG's preconditioner
    (fem.increments): fewer factorisations than solves, and the same answer as factorising
    every iteration, to 1e-9."""
    import fem.increments

    m = hex_block((10, 2, 2), (10.0, 1.0, 1.0), E=E, nu=NU)
    m.add(Fixed("xmin", "xyz"), TotalForce("xmax", (0.0, 0.0, -0.03)))
    r = solve_finite_strain(m, increments=5, solver="direct", tol=1e-10)
    solves = r.info["factorisations"] + r.info["reused_factorisations"]
    assert r.info["reused_factorisations"] > r.info["factorisations"] > 0
    assert solves == sum(len(h) for h in r.info["residuals"])
    monkeypatch.setattr(fem.increments, "REUSE_ITERATIONS", 0)
    fresh = solve_finite_strain(m, increments=5, solver="direct", tol=1e-10)
    assert fresh.info["reused_factorisations"] == 0
    u, u0 = np.asarray(r.final.displacement), np.asarray(fresh.final.displacement)
    assert np.abs(u - u0).max() < 1e-9 * np.abs(u0).max()


def _neo_hooke_deck(m, path, increments):
    deck = m.write_inp(path)
    mu, kappa = _moduli(E, NU)
    txt = deck.read_text()
    txt, n = re.subn(r"\*ELASTIC\n[^\n]*\n",
                     f"*HYPERELASTIC, NEO HOOKE\n{mu / 2:.17g}, {2 / kappa:.17g}\n", txt)
    assert n == 1
    # CalculiX's default equilibrium tolerances (R_n 5e-3 of the mean force, C_n 1e-2 of the
    # increment's displacement) would dominate the comparison: *CONTROLS asks for 1e-9
    txt = txt.replace("*STEP\n*STATIC\n", "*STEP, NLGEOM, INC=1000\n*STATIC, DIRECT\n"
                      f"{1 / increments:.17g}, 1.0\n*CONTROLS, PARAMETERS=FIELD\n1e-9, 1e-9\n")
    deck.write_text(txt)
    return deck


@pytest.mark.ccx
@pytest.mark.parametrize("etype", ["hex8", "tet10"])
def test_cantilever_agrees_with_calculix_nlgeom_at_every_increment(etype, ccx, tmp_path):
    """A 10 x 1 x 1 mm cantilever under a tip load that bends it through about 45 degrees
    (the tip falls 5.8 mm (hex8) where the linear answer is 8.3): displacements and
    element-average Cauchy stresses of every increment against CalculiX's.

    Even with its tolerances tightened (``*CONTROLS``), CalculiX accepts some increments (the
    first, typically) off by up to 4e-4 and others within 1e-7, the error of one increment
    corrected in the next; ours are converged to 1e-9 (and at a quarter of this load every
    increment agreed within 1e-6). So every increment must agree within 1e-3, half of them
    within 1e-5, and the last within 2e-6."""
    if etype == "hex8":
        m = hex_block((10, 2, 2), (10.0, 1.0, 1.0), E=E, nu=NU)
    else:
        m = tet_block((10, 2, 2), (10.0, 1.0, 1.0), E=E, nu=NU, order=2)
    m.add(Fixed("xmin", "xyz"), TotalForce("xmax", (0.0, 0.0, -0.03)))
    incs = run_ccx(_neo_hooke_deck(m, tmp_path / f"cantilever_{etype}.inp", 10),
                   increments=True)
    r = solve_finite_strain(m, increments=10, solver="direct", tol=1e-9)
    assert len(incs) == len(r.steps) == 10
    order = np.searchsorted(m.node_ids, incs[0].node_labels)
    du, ds = [], []
    for step, ref in zip(r.steps, incs):
        assert step.control == pytest.approx(ref.time, rel=1e-9)
        u = np.asarray(step.result.displacement)[order]
        du.append(np.abs(u - ref.displacement).max() / np.abs(ref.displacement).max())
        labels, s_ref = ref.element_average_stress()
        s = np.asarray(step.result.stress)[np.searchsorted(m.element_ids, labels)]
        ds.append(np.abs(s - s_ref).max() / np.abs(s_ref).max())
    du, ds = np.array(du), np.array(ds)
    assert du.max() < 1e-3 and ds.max() < 1e-3, (du, ds)
    assert np.median(du) < 1e-5 and np.median(ds) < 3e-5, (du, ds)
    assert du[-1] < 2e-6 and ds[-1] < 1e-5, (du, ds)
    tip = -np.asarray(r.final.displacement)[:, 2].min()
    linear = -np.asarray(fem.solve(m).displacement)[:, 2].min()
    assert tip < 0.85 * linear  # well into the geometric nonlinearity
    print(f"{etype}: tip {tip:.4f} mm (linear {linear:.4f}); largest difference per increment "
          "(displacement, stress): " + ", ".join(f"{a:.0e}/{b:.0e}" for a, b in zip(du, ds)))


@pytest.mark.parametrize("etype,nu", [("hex8", 0.3), ("hex8", 0.4999), ("tet4", 0.45)])
def test_swelling_is_free_on_rollers_and_a_pressure_when_confined(etype, nu):
    """A block that swells by theta = 1.05: on rollers (one face of each axis held normal) it
    grows freely, J = theta everywhere and no stress; held on all six faces it keeps J = 1 and
    carries the pressure kappa (1 - 1 / theta) of the volumetric energy, with no deviatoric
    stress. Both exact for every element type (the mean dilatation included)."""
    theta = 1.05
    free = _block(etype, nu, 1.0)
    free.conditions = [Fixed("xmin", "x"), Fixed("ymin", "y"), Fixed("zmin", "z")]
    r = solve_finite_strain(free, swelling=np.full(free.n_elements, theta), increments=2,
                            solver="direct", tol=1e-10).final
    np.testing.assert_allclose(r.extra_cell_fields["jacobian"], theta, rtol=1e-10)
    assert np.abs(np.asarray(r.stress)).max() < 1e-9 * E
    held = _block(etype, nu, 1.0)
    held.conditions = [Fixed(f, a) for f, a in (("xmin", "x"), ("xmax", "x"), ("ymin", "y"),
                                                 ("ymax", "y"), ("zmin", "z"), ("zmax", "z"))]
    held.add_region("block", np.arange(held.n_elements))
    r = solve_finite_strain(held, swelling={"block": theta}, increments=2, solver="direct",
                            tol=1e-10).final
    _, kappa = _moduli(E, nu)
    stress = np.asarray(r.stress)
    np.testing.assert_allclose(stress[:, :3], -kappa * (1.0 - 1.0 / theta), rtol=1e-9)
    assert np.abs(stress[:, 3:]).max() < 1e-9 * kappa
    np.testing.assert_allclose(r.extra_cell_fields["jacobian"], 1.0, atol=1e-12)


def test_refuses_what_it_cannot_model():
    m = hex_block((2, 1, 1), E=E, nu=NU)
    m.add(Fixed("xmin", "xyz"), TotalForce("xmax", (0.0, 0.0, -0.01)))
    p = m.copy().set_plastic([0], 1.0, 0.0)
    with pytest.raises(MaterialError, match="plastic"):
        solve_finite_strain(p)
    o = m.copy().set_orthotropic([1], (1, 2, 3), (0.2, 0.2, 0.2), (1, 1, 1))
    with pytest.raises(MaterialError, match="orthotropic outside the fibre regions"):
        solve_finite_strain(o)
    with pytest.raises(MaterialError, match="outside the model"):
        solve_finite_strain(m, fibres=[FibreRegion("x", [5], ((0, 0, 0), (0, 0, 1)))])
    with pytest.raises(SolverError, match="solver"):
        solve_finite_strain(m, solver="lu")
    with pytest.raises(SolverError, match="displacement"):
        internal_forces(m, np.zeros((2, 3)))
    with pytest.raises(fem.SetError, match="nucleus"):
        solve_finite_strain(m, swelling={"nucleus": 1.1})
    with pytest.raises(MaterialError, match="finite and > 0"):
        solve_finite_strain(m, swelling=np.array([1.0, -1.0]))


def test_the_result_writes_a_vtu_with_cauchy_stress_and_the_volume_ratio(tmp_path):
    """The state opens in ParaView/PyVista as any result, with ``jacobian`` beside the
    stresses: read back, the file holds the exact uniaxial answer."""
    import meshio

    m = _block("hex8", NU, 1.5)
    r = solve_finite_strain(m, increments=4, solver="direct", tol=1e-10)
    out = r.final.write(tmp_path / "stretched.vtu")
    back = meshio.read(out if out is not None else tmp_path / "stretched.vtu")
    s, sigma, _ = _uniaxial(1.5, E, NU)
    np.testing.assert_allclose(back.cell_data["stress"][0][:, 0], sigma, rtol=1e-8)
    np.testing.assert_allclose(back.cell_data["jacobian"][0], 1.5 * s * s, rtol=1e-9)


def _column(force: float, lateral: float, held: bool = False):
    """A 10 x 10 x 100 mm column (E 100 MPa, nu 0.3) fixed at its base, its top face on a rigid
    plate loaded by an axial ``force`` (N, downward) and a ``lateral`` one (N, along x); with
    ``held`` the plate is held parallel and laterally, as a testing machine's platen."""
    m = hex_block((4, 4, 40), (10.0, 10.0, 100.0), E=100.0, nu=0.3)
    m.hex8_formulation = "full"
    free = (None, None, None)
    m.add(Fixed("zmin", "xyz"),
          fem.RigidPlate("zmax", force=(lateral, 0.0, -force), name="top",
                         displacement=(0.0, 0.0, None) if held else free,
                         rotation=(0.0, 0.0, 0.0) if held else free))
    return m


def test_a_column_sways_by_the_beam_column_amplification_and_a_turning_plate_is_refused():
    """Large deformation with a rigid plate on a slender cantilever: under an axial load P
    and a small lateral one H, the top sways by the exact beam-column factor over the linear
    sway, 3 (tan kL - kL) / (kL)^3 with k = sqrt(P / EI) (Timoshenko & Gere, Theory of Elastic
    Stability, section 1.5), EI taken from the model's own linear sway. Loaded past its Euler
    load (pi^2 EI / 4 L^2) it sways until its plate turns beyond the
    ``MAX_PLATE_ROTATION`` its linear coupling allows, and the analysis is refused, naming the
    plate, the angle and the load factor; held by platens it carries the same load."""
    from fem.finite_strain import MAX_PLATE_ROTATION
    from fem.strength import YIELD_COMPRESSION

    L, H = 100.0, 0.01
    lin = fem.solve(_column(0.0, H), solver="direct")
    sway_lin = float(lin.plate_motion("top")[0])
    # the beam's 100 x 10^4 / 12 = 83 333 N mm^2, a few % stiffer: hex8 shear locking and the
    # sections held plane at the base and the plate
    EI = H * L ** 3 / (3.0 * sway_lin)
    p_cr = np.pi ** 2 * EI / (4.0 * L ** 2)
    assert 1.0 < EI / 83_333 < 1.1, EI
    P = 0.4 * p_cr
    r = solve_finite_strain(_column(P, H), increments=4, solver="direct")
    kl = L * np.sqrt(P / EI)
    exact = 3.0 * (np.tan(kl) - kl) / kl ** 3  # 1.66 at 0.4 of the Euler load
    assert float(r.final.plate_motion("top")[0]) / sway_lin == pytest.approx(exact, rel=0.01)
    with pytest.raises(SolverError, match=r"rigid plate 'top' turned by [0-9.]+ degrees at load "
                                          r"factor .*between_platens"):
        solve_finite_strain(_column(1.5 * p_cr, 0.01 * p_cr), increments=10, solver="direct")
    held = solve_finite_strain(_column(1.5 * p_cr, 0.01 * p_cr, held=True), increments=2,
                               solver="direct")
    assert float(np.abs(held.final.plate_motion("top")[3:]).max()) == 0.0
    assert MAX_PLATE_ROTATION == pytest.approx(np.sqrt(2.0 * YIELD_COMPRESSION))
