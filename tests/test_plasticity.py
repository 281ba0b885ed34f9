"""Von Mises plasticity with linear isotropic hardening (:mod:`fem.plasticity`).

Verification: a homogeneous bar (one hex8, a block of tet4) in uniaxial tension then compression
against the exact 1-D elasto-plastic response; the linear answer below yield; quadratic
convergence of Newton's method with the consistent tangent; and CalculiX (C3D8, C3D10) on the
same deck, increment by increment: reaction force and integration-point PEEQ.
"""

from __future__ import annotations

import math

import meshio
import numpy as np
import pytest

import fem
from fem.cli import main
from fem.io.calculix import run_ccx
from fem.meshes.blocks import hex_block, tet_block
from fem.plasticity import StaticControl, increment_control, radial_return, solve_plastic

E, NU, SY, H = 200000.0, 0.3, 250.0, 1000.0
EPS_Y = SY / E


def _bar(etype: str, *, hardening: float = H, strain: float = 0.01):
    """A 1 x 1 x 1 mm bar on symmetry supports (lateral faces free) stretched along x."""
    if etype == "hex8":
        m = hex_block((1, 1, 1), (1.0, 1.0, 1.0), E=E, nu=NU)
    else:
        m = tet_block((1, 1, 1), (1.0, 1.0, 1.0), E=E, nu=NU)
    m.set_plastic(None, SY, hardening)
    m.add(fem.Fixed("xmin", "x"), fem.Fixed("ymin", "y"), fem.Fixed("zmin", "z"),
          fem.Displacement("xmax", (strain, None, None)))
    return m


def _uniaxial(strains, hardening):
    """The exact stress of a 1-D bar with linear isotropic hardening along a strain path."""
    ep = alpha = 0.0
    out = []
    for e in strains:
        trial = E * (e - ep)
        f = abs(trial) - (SY + hardening * alpha)
        if f > 0:
            dg = f / (E + hardening)
            ep += math.copysign(dg, trial)
            alpha += dg
        out.append(E * (e - ep))
    return np.array(out)


@pytest.mark.parametrize("etype", ["hex8", "tet4"])
@pytest.mark.parametrize("hardening", [H, 0.0])
def test_tension_then_compression_follows_the_exact_uniaxial_response(etype, hardening):
    strain = 8 * EPS_Y
    m = _bar(etype, hardening=hardening, strain=strain)
    # an increment ends exactly at first yield
    times = [0.5 / 8, 1.0 / 8, 2.0 / 8, 3.5 / 8, 5.0 / 8, 6.5 / 8, 1.0]
    up = solve_plastic(m, increments=times)
    F = np.array([s.force for s in up.steps])  # area 1 mm^2: force = stress
    assert F[1] == pytest.approx(SY, rel=1e-10)  # A sigma_y at yield
    slope = np.diff(F[1:]) / np.diff(np.array(times[1:]) * strain)
    assert slope == pytest.approx(np.full(len(slope), hardening * E / (E + hardening)),
                                  rel=1e-8, abs=1e-6)
    assert F == pytest.approx(_uniaxial(np.array(times) * strain, hardening), rel=1e-10)
    peeq = up.final.extra_cell_fields["peeq"]
    alpha = (F[-1] - SY) / hardening if hardening else strain - F[-1] / E
    assert peeq == pytest.approx(np.full(m.n_elements, alpha), rel=1e-9)
    assert up.final.extra_cell_fields["yielded"].all()
    assert up.steps[0].result.extra_cell_fields["yielded"].sum() == 0
    # elastic unloading, reverse yield at -(sigma_y + H alpha), hardening in compression
    down_model = m.copy()
    down_model.conditions[-1] = fem.Displacement("xmax", (-strain, None, None))
    down = solve_plastic(down_model, initial=up.final, increments=32)
    path = strain - 2 * strain * np.array([s.load_factor for s in down.steps])
    sigma = np.array([s.result.reactions[_name(s.result, "xmax")][0] for s in down.steps])
    exact = _uniaxial(np.concatenate([np.array(times) * strain, path]), hardening)[len(times):]
    assert sigma == pytest.approx(exact, rel=1e-9, abs=1e-9 * SY)
    assert sigma[0] > 0 > sigma[-1]  # unloading first stays elastic, then compression yields
    # element-average stress of the Result is the elasto-plastic one
    assert down.final.stress[:, 0] == pytest.approx(np.full(m.n_elements, exact[-1]), rel=1e-9)
    assert down.final.von_mises == pytest.approx(np.full(m.n_elements, abs(exact[-1])), rel=1e-9)


def _name(result, node_set):
    return next(n for n in result.reactions if node_set in n)


def _notched(etype: str, displacement: float = 0.03, shape=(10, 4, 2), increments=8):
    """A quarter of a bar with a smooth notch (width 40 % smaller at x = 0), symmetry planes
    x = 0, y = 0, z = 0, pulled at x = 10 mm by a prescribed displacement."""
    L, W, T = 10.0, 2.5, 1.0
    if etype == "hex8":
        m = hex_block(shape, (L, W, T), E=E, nu=NU)
    else:
        m = tet_block(shape, (L, W, T), order=2, E=E, nu=NU)
    x = m.points[:, 0]
    m.points[:, 1] *= 1.0 - 0.4 * np.exp(-(x / 1.5) ** 2)
    m.set_plastic(None, SY, H)
    m.metadata["static"] = {"initial": 1.0 / increments, "total": 1.0, "direct": True}
    m.add(fem.Fixed("xmin", "x"), fem.Fixed("ymin", "y"), fem.Fixed("zmin", "z"),
          fem.Displacement("xmax", (displacement, None, None)))
    return m


def test_below_yield_the_answer_is_the_linear_one():
    m = _notched("hex8", displacement=0.004)
    r = solve_plastic(m, increments=2)
    lin = fem.solve(m, solver="direct")
    final = r.final
    assert final.extra_cell_fields["peeq"].max() == 0.0
    assert lin.von_mises.max() < SY
    err = np.abs(final.displacement - lin.displacement).max() / np.abs(lin.displacement).max()
    assert err < 1e-10
    assert np.abs(final.stress - lin.stress).max() < 1e-10 * np.abs(lin.stress).max()
    assert r.steps[-1].force == pytest.approx(lin.reactions[_name(lin, "xmax")][0], rel=1e-10)
    assert [s.iterations for s in r.steps] == [1, 1]  # a linear increment takes one solve


def test_rigid_plate_and_elastic_elements_below_and_above_yield():
    """A block, its upper half plastic, pushed by a rigid plate: linear below yield, reactions in
    equilibrium above it; the elastic half never yields."""
    m = hex_block((2, 2, 4), (2.0, 2.0, 4.0), E=E, nu=NU)
    upper = np.nonzero(m.points[m.blocks[0].conn].mean(axis=1)[:, 2] > 2.0)[0]
    m.add_region("upper", upper)
    m.set_plastic("upper", SY, H)
    m.add(fem.Fixed("zmin"), fem.RigidPlate("zmax", displacement=(0.0, 0.0, -0.002),
                                            rotation=(0.0, 0.0, 0.0), name="plate"))
    lin = fem.solve(m, solver="direct")
    r = solve_plastic(m, increments=[0.5, 1.0])
    assert np.abs(r.final.displacement - lin.displacement).max() < 1e-10 * np.abs(
        lin.displacement).max()
    m.conditions[-1] = fem.RigidPlate("zmax", displacement=(0.0, 0.0, -0.02),
                                      rotation=(0.0, 0.0, 0.0), name="plate")
    r = solve_plastic(m, increments=6)
    peeq = r.final.extra_cell_fields["peeq"]
    assert peeq[upper].min() > 0 and np.delete(peeq, upper).max() == 0
    plate = r.final.reactions["plate"]
    bottom = r.final.reactions[_name(r.final, "zmin")]
    assert plate[2] == pytest.approx(-bottom[2], rel=1e-8)
    assert r.steps[-1].force == pytest.approx(-plate[2] / 1.0, rel=1e-8)  # pushing down: > 0
    assert r.steps[-1].force < 0.9 * lin.reactions["plate"][2] * -10  # it has softened


def test_amg_cg_agrees_with_the_direct_solver():
    m = _notched("hex8", shape=(8, 3, 2), increments=4)
    a = solve_plastic(m, solver="direct")
    b = solve_plastic(m, solver="amg", rtol=1e-10)
    assert b.info["solver"] == "amg"
    assert [s.force for s in b.steps] == pytest.approx([s.force for s in a.steps], rel=1e-8)
    assert np.abs(b.final.peeq - a.final.peeq).max() < 1e-7 * a.final.peeq.max()


def test_backends_agree(backend):
    """The same increments on each backend (CuPy: a visible skip without a GPU)."""
    m = _notched("tet10", shape=(4, 2, 1), increments=4)
    a = solve_plastic(m, backend="numpy")
    b = solve_plastic(m, backend=backend)
    assert [s.force for s in b.steps] == pytest.approx([s.force for s in a.steps], rel=1e-9)
    assert np.abs(b.final.peeq - a.final.peeq).max() < 1e-9 * a.final.peeq.max()


@pytest.mark.parametrize("etype", ["hex8", "tet10"])
def test_newton_converges_quadratically(etype):
    r = solve_plastic(_notched(etype, shape=(6, 3, 1) if etype == "tet10" else (10, 4, 2)))
    checked = 0
    for hist in r.info["residuals"]:
        assert len(hist) <= 6
        # the asymptotic regime: the last iteration whose square lies above round-off (1e-14)
        pairs = [(a, b) for a, b in zip(hist[1:], hist[2:]) if a > 1e-6]
        if pairs:
            a, b = pairs[-1]
            assert b < 10 * a * a, hist  # quadratic: r_{k+1} ~ r_k^2
            checked += 1
    assert checked >= 3


@pytest.mark.ccx
@pytest.mark.parametrize("etype", ["hex8", "tet10"])
def test_notched_bar_agrees_with_calculix_at_every_increment(etype, ccx, tmp_path):
    m = _notched(etype, shape=(10, 4, 2) if etype == "hex8" else (8, 3, 2))
    deck = m.write_inp(tmp_path / f"notched_{etype}.inp")
    incs = run_ccx(deck, increments=True)
    back = fem.Model.from_inp(deck)  # the deck's *PLASTIC and *STATIC, DIRECT read back
    r = solve_plastic(back)
    assert len(r.steps) == len(incs) == 8
    xmax = back.node_sets["xmax"]
    worst_f = worst_p = 0.0
    for step, ref in zip(r.steps, incs):
        assert step.control == pytest.approx(ref.time, rel=1e-6)
        at = np.isin(np.searchsorted(back.node_ids, ref.force_node_labels), xmax)
        F = ref.forces[at, 0].sum()
        worst_f = max(worst_f, abs(step.force - F) / abs(F))
        peeq = step.result.integration_point_peeq()[0]
        ours = peeq[np.searchsorted(back.element_ids, ref.peeq_element_labels),
                    ref.peeq_ip_index - 1]
        worst_p = max(worst_p, np.abs(ours - ref.ip_peeq).max() / ref.ip_peeq.max()
                      if ref.ip_peeq.max() > 0 else np.abs(ours).max())
        assert abs(step.force - F) < 0.01 * abs(F), (step.index, step.force, F)
        assert np.abs(ours - ref.ip_peeq).max() <= 0.02 * max(ref.ip_peeq.max(), 1e-12)
    assert incs[-1].ip_peeq.max() > 4 * EPS_Y  # well into plasticity
    assert r.final.extra_cell_fields["yielded"].sum() > 0
    print(f"{etype}: max reaction difference {worst_f:.1e}, max PEEQ difference {worst_p:.1e} "
          "of the largest")


# ------------------------------------------------------------------------------ the material


def test_radial_return_is_on_the_yield_surface_and_the_tangent_is_its_derivative(rng):
    kappa = np.array([E / (3 * (1 - 2 * NU))])
    mu = np.array([E / (2 * (1 + NU))])
    sy, hh = np.array([SY]), np.array([H])
    eps = rng.normal(scale=3 * EPS_Y, size=(1, 6))
    ep0 = rng.normal(scale=EPS_Y, size=(1, 6))
    ep0[:, :3] -= ep0[:, :3].mean()
    a0 = np.array([2e-4])
    sig, ep, alpha, dg, n, norm = radial_return(eps, ep0, a0, kappa, mu, sy, hh)
    assert dg[0] > 0
    s = sig[0] - sig[0, :3].mean() * np.array([1, 1, 1, 0, 0, 0])
    snorm = math.sqrt((s[:3] ** 2).sum() + 2 * (s[3:] ** 2).sum())
    assert snorm == pytest.approx(math.sqrt(2 / 3) * (SY + H * alpha[0]), rel=1e-12)
    from fem.plasticity import consistent_tangent

    C = consistent_tangent(kappa, mu, hh, dg, n, norm)[0]
    h = 1e-9
    num = np.empty((6, 6))
    for j in range(6):
        d = np.zeros(6)
        d[j] = h if j < 3 else h / 2  # engineering shear strain h
        sp = radial_return(eps + d, ep0, a0, kappa, mu, sy, hh)[0][0]
        sm = radial_return(eps - d, ep0, a0, kappa, mu, sy, hh)[0][0]
        num[:, j] = (sp - sm) / (2 * h)
    assert np.abs(C - num).max() < 1e-5 * np.abs(C).max()
    assert np.abs(C - C.T).max() < 1e-9 * np.abs(C).max()


def test_set_plastic_validates_and_copies(tmp_path):
    m = hex_block((2, 1, 1), E=E, nu=NU)
    m.add_region("left", [0])
    assert np.isnan(m.plastic).all() and m.plastic.shape == (2, 2)
    with pytest.raises(fem.MaterialError, match="yield stress of region 'left'"):
        m.set_plastic("left", -1.0)
    with pytest.raises(fem.MaterialError, match="hardening modulus of region 'left'"):
        m.set_plastic("left", SY, -5.0)
    m.set_plastic("left", SY, H)
    assert m.plastic_mask().tolist() == [True, False]
    c = m.copy()
    c.set_plastic("left", None)
    assert m.plastic_mask().tolist() == [True, False] and not c.plastic_mask().any()


def test_collapse_raises_convergence_error_naming_the_increment():
    """Perfect plasticity under a force above the limit load: no equilibrium beyond it."""
    m = hex_block((1, 1, 1), E=E, nu=NU)
    m.set_plastic(None, SY, 0.0)
    m.add(fem.Fixed("xmin", "x"), fem.Fixed("ymin", "y"), fem.Fixed("zmin", "z"),
          fem.TotalForce("xmax", (2.0 * SY, 0.0, 0.0)))
    with pytest.raises(fem.ConvergenceError, match=r"increment \d+ .*load factor reached 0\.49"):
        solve_plastic(m, increments=StaticControl(0.25, 1.0, minimum=1e-3))


def test_increment_control():
    m = hex_block((1, 1, 1), E=E, nu=NU)
    assert increment_control(m)[1] == pytest.approx([k / 10 for k in range(1, 11)])
    assert increment_control(m, 4)[1] == (0.25, 0.5, 0.75, 1.0)
    m.metadata["static"] = {"initial": 0.3, "total": 1.2, "direct": True}
    assert increment_control(m)[1] == pytest.approx([0.3, 0.6, 0.9, 1.2])
    c, fixed = increment_control(m, StaticControl(0.1, 2.0, 1e-3, 0.5))
    assert fixed is None and c.max_increment == 0.5 and c.min_increment == 1e-3
    assert StaticControl(0.1).min_increment == pytest.approx(1e-5)
    with pytest.raises(fem.SolverError, match="increasing"):
        increment_control(m, [0.5, 0.2])


def test_automatic_increments_grow_and_reach_the_end():
    m = _bar("hex8", strain=0.005)
    r = solve_plastic(m, increments=StaticControl(0.05, 1.0, maximum=0.3))
    dt = np.diff([0.0] + [s.control for s in r.steps])
    assert r.steps[-1].control == pytest.approx(1.0)
    assert dt.max() <= 0.3 + 1e-12 and dt[1] > dt[0]
    assert r.steps[-1].force == pytest.approx(_uniaxial([0.005], H)[0], rel=1e-10)


# ------------------------------------------------------------------------------ the deck


def _deck(plastic: str, static: str = "*STATIC", step: str = "*STEP") -> str:
    return f"""*NODE, NSET=NALL
1, 0, 0, 0
2, 1, 0, 0
3, 1, 1, 0
4, 0, 1, 0
5, 0, 0, 1
6, 1, 0, 1
7, 1, 1, 1
8, 0, 1, 1
*ELEMENT, TYPE=C3D8, ELSET=EALL
1, 1, 2, 3, 4, 5, 6, 7, 8
*NSET, NSET=X0
1, 4, 5, 8
*NSET, NSET=X1
2, 3, 6, 7
*NSET, NSET=Y0
1, 2, 5, 6
*NSET, NSET=Z0
1, 2, 3, 4
*MATERIAL, NAME=STEEL
*ELASTIC
200000, 0.3
{plastic}
*SOLID SECTION, ELSET=EALL, MATERIAL=STEEL
{step}
{static}
*BOUNDARY
X0, 1, 1, 0
Y0, 2, 2, 0
Z0, 3, 3, 0
X1, 1, 1, 0.004
*NODE PRINT, NSET=X1, TOTALS=ONLY
RF
*EL PRINT, ELSET=EALL
S, PEEQ
*END STEP
"""


@pytest.mark.parametrize("lines, hardening", [
    ("250, 0", 0.0),
    ("250, 0\n1250, 1", 1000.0),
    ("250., 0.\n260., 0.01\n350, 0.1", 1000.0),
])
def test_deck_plastic_and_static(tmp_path, lines, hardening):
    p = tmp_path / "bar.inp"
    p.write_text(_deck(f"*PLASTIC\n{lines}", "*STATIC, DIRECT\n0.25, 1.0"))
    m = fem.Model.from_inp(p)
    assert m.plastic.tolist() == [[250.0, hardening]]
    assert m.metadata["static"] == {"initial": 0.25, "total": 1.0, "direct": True}
    r = solve_plastic(m)
    assert [s.control for s in r.steps] == [0.25, 0.5, 0.75, 1.0]
    assert r.steps[-1].force == pytest.approx(_uniaxial([0.004], hardening)[0], rel=1e-10)
    back = fem.Model.from_inp(m.write_inp(tmp_path / "back.inp"))
    assert back.plastic.tolist() == m.plastic.tolist()
    assert back.metadata["static"] == m.metadata["static"]


def test_deck_static_line_automatic(tmp_path):
    p = tmp_path / "bar.inp"
    p.write_text(_deck("*PLASTIC\n250, 0", "*STATIC\n0.1, 2., 1e-4, 0.5"))
    m = fem.Model.from_inp(p)
    assert m.metadata["static"] == {"initial": 0.1, "total": 2.0, "minimum": 1e-4,
                                    "maximum": 0.5, "direct": False}
    p.write_text(_deck("", "*STATIC"))
    assert "static" not in fem.Model.from_inp(p).metadata


@pytest.mark.parametrize("plastic, static, step, match, line", [
    ("*PLASTIC\n250, 0\n260, 0.01\n400, 0.1", "*STATIC", "*STEP", "not on the straight line",
     26),
    ("*PLASTIC, HARDENING=KINEMATIC\n250, 0", "*STATIC", "*STEP", "KINEMATIC", 23),
    ("*PLASTIC\n250, 0.01", "*STATIC", "*STEP", "plastic strain 0", 24),
    ("*PLASTIC\n250, 0\n240, 0.01", "*STATIC", "*STEP", "softening", 25),
    ("*PLASTIC\n250, 0\n260, 0", "*STATIC", "*STEP", "must increase", 25),
    ("*PLASTIC\n250, 0, 20", "*STATIC", "*STEP", "temperature", 24),
    ("*PLASTIC\n-250, 0", "*STATIC", "*STEP", "> 0", 24),
    ("", "*STATIC\n2, 1", "*STEP", "exceeds the step time", 27),
    ("", "*STATIC\n0.1, 1, 0.5, 0.2", "*STEP", "minimum increment", 27),
    ("", "*STATIC\n0.1, -1", "*STEP", "must be > 0", 27),
    ("*PLASTIC\n250, 0", "*STATIC", "*STEP, NLGEOM", "NLGEOM", 26),
])
def test_deck_errors(tmp_path, plastic, static, step, match, line):
    p = tmp_path / "bad.inp"
    p.write_text(_deck(plastic, static, step))
    with pytest.raises(fem.DeckError, match=match) as exc:
        fem.Model.from_inp(p)
    assert f"{p}, line {line}:" in str(exc.value)


def test_plastic_outside_a_material(tmp_path):
    p = tmp_path / "bad.inp"
    p.write_text("*PLASTIC\n250, 0\n" + _deck(""))
    with pytest.raises(fem.DeckError, match=r"line 1: \*PLASTIC outside a \*MATERIAL"):
        fem.Model.from_inp(p)


# ------------------------------------------------------------------------------ the CLI


def test_cli_solves_a_plastic_deck(tmp_path, capsys):
    p = tmp_path / "bar.inp"
    p.write_text(_deck("*PLASTIC\n250, 0\n1250, 1", "*STATIC, DIRECT\n0.2, 1."))
    out = tmp_path / "bar.vtu"
    assert main(["solve", str(p), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert text.count("increment ") >= 5 and "increment 5: load factor 1" in text
    mesh = meshio.read(out)
    peeq = mesh.cell_data["peeq"][0]
    expect = (_uniaxial([0.004], H)[0] - SY) / H
    assert peeq == pytest.approx([expect], rel=1e-9)
    assert mesh.cell_data["yielded"][0].tolist() == [1]
    assert mesh.cell_data["stress"][0][0, 0] == pytest.approx(_uniaxial([0.004], H)[0])


def test_cli_reports_non_convergence_as_an_error(tmp_path, capsys):
    p = tmp_path / "bar.inp"
    deck = _deck("*PLASTIC\n250, 0", "*STATIC, DIRECT\n0.25, 1.")
    deck = deck.replace("X1, 1, 1, 0.004\n", "").replace("*NODE PRINT", "*CLOAD\nX1, 1, 150\n"
                                                          "*NODE PRINT")
    p.write_text(deck)
    out = tmp_path / "bar.vtu"
    assert main(["solve", str(p), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: increment") and "load factor reached" in err
    assert not out.exists()
