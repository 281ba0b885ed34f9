"""The in-silico test rig (fem.meshes.rigs): a vertebral body potted in PMMA end-caps and
compressed between platens (issue 16, deliverable 1)."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import pytest

import fem
from fem.errors import BoundaryConditionError, ParameterError
from fem.meshes import rigs
from fem.meshes.bone import BoneQuality

H = 2.0
BMD = 70.0


def body(**kw):
    return rigs.potted_body("L1", voxel_size=H, materials=BoneQuality(bmd=BMD), **kw)


@lru_cache(maxsize=None)
def run_rig(contact="frictionless", platen="ball", cap_E=rigs.CAP_MATERIAL[0]):
    m = body(contact=contact, cap_material=(cap_E, 0.3))
    rigs.compression_test(m, 0.2, platen=platen)
    r = fem.solve(m, rtol=1e-10)
    return m, r, rigs.machine_stiffness(r)


def test_the_pot_holds_the_body_between_flat_parallel_caps():
    m = body(contact="tied")
    assert not any(r.endswith("/posterior") for r in m.regions)  # cut at the pedicles
    z = m.points[:, 2]
    for name, end in (("base", z.min()), ("platen", z.max())):
        np.testing.assert_allclose(m.points[m.nodes_of(name)][:, 2], end)  # flat
    low = m.points[m.nodes_of("L1/inferior")][:, 2].min()
    high = m.points[m.nodes_of("L1/superior")][:, 2].max()
    # at least cap_depth of cement beyond the body's lowest and highest points
    assert low - z.min() >= rigs.CAP_DEPTH - 1e-9 and z.max() - high >= rigs.CAP_DEPTH - 1e-9
    # every endplate node touches cement: it is a node of a cap element too
    caps = np.concatenate([m.regions["rig/cap_inferior"], m.regions["rig/cap_superior"]])
    cap_nodes = np.unique(m.blocks[0].conn[caps])
    for s in ("L1/inferior", "L1/superior"):
        assert np.isin(m.nodes_of(s), cap_nodes).all(), s


def test_platen_force_balances_the_base_and_the_caps_act_in_series():
    """Equilibrium; and the compliance the PMMA caps add (stiffness with caps of 2.45 GPa against
    nearly rigid ones, x1000) lies between two analytic bounds for two 5 mm blocks in series:
    above that of uniform prisms over the whole cap area (the load enters over the smaller
    endplate), below that of a rigid punch of the endplate's area on an elastic half-space,
    2 (1 - nu^2) / (2 a E) for two caps (a thin block on a rigid base is stiffer). Measured at
    2 mm: 8.5e-6 mm/N between 2.0e-6 and 2.2e-5, about 15 % of the rig's compliance."""
    m, r, k = run_rig(contact="tied", platen="fixed")
    _, _, k_stiff = run_rig(contact="tied", platen="fixed", cap_E=1000 * rigs.CAP_MATERIAL[0])
    platen = r.reactions["platen"][:3]
    base = r.reactions["base"]
    np.testing.assert_allclose(platen + base, 0.0, atol=1e-6 * abs(platen[2]))
    E, nu = rigs.CAP_MATERIAL
    prism = sum(rigs.CAP_DEPTH / (E * len(m.face_sets[f].elements) * H * H)
                for f in ("base", "platen"))
    a = np.sqrt(len(m.face_sets["L1/inferior"].elements) * H * H / np.pi)
    punch = 2 * (1 - nu ** 2) / (2 * a * E)
    added = 1.0 / k - 1.0 / k_stiff
    assert prism < added < punch, (prism, added, punch)


def test_frictionless_layer_carries_normal_stress_not_shear():
    """The slip layer under the inferior endplate: shear stress below 1 % of the normal stress
    it carries; that normal stress compressive; and the body stiffer with tied caps (they hold
    the endplates' Poisson expansion), a few per cent, as Day et al.'s sensitivity runs found."""
    m, r, k_slip = run_rig(contact="frictionless", platen="fixed")
    _, _, k_tied = run_rig(contact="tied", platen="fixed")
    layer = m.regions["rig/slip_inferior"]
    ijk = m.metadata["voxel_labels"]["ijk"]
    labels = m.metadata["voxel_labels"]["labels"]
    bone = set(map(tuple, ijk[labels < 60]))
    below = np.array([(i, j, k + 1) in bone for i, j, k in ijk[layer]])  # bone right above
    s = r.stress[layer[below]]  # xx yy zz xy yz xz (Voigt)
    szz, shear = s[:, 2], np.abs(s[:, [4, 5]]).max(axis=1)
    assert np.abs(szz).sum() > 0
    assert shear.max() < 0.01 * np.abs(szz).max()
    assert (szz < 0).mean() > 0.9
    assert 1.0 < k_tied / k_slip < 1.25


def test_a_ball_platen_lets_the_body_tilt_and_is_not_stiffer():
    """Free rotation can only lower the stiffness (minimum potential energy); the wedged L1
    (anterior 24.5, posterior 25.5 mm) tilts about the lateral axis and not about the others."""
    _, r_ball, k_ball = run_rig(platen="ball")
    _, r_fixed, k_fixed = run_rig(platen="fixed")
    assert k_ball <= k_fixed * (1 + 1e-9)
    rot = r_ball.plate_motion("platen")[3:]
    assert abs(rot[0]) > 10 * max(abs(rot[1]), abs(rot[2]))
    np.testing.assert_allclose(r_fixed.plate_motion("platen")[3:], 0.0, atol=1e-14)


def test_the_bare_body_between_rigid_platens_is_within_the_rig_s_compliance():
    """The rig's machine stiffness against the bare body tied to rigid platens: within 15 %
    (caps add compliance, frictionless contact frees the endplates: both lower it)."""
    from fem.meshes import loadcases
    from fem.meshes.vertebra import vertebra_model

    bare = vertebra_model("L1", voxel_size=H, materials=BoneQuality(bmd=BMD), posterior=False)
    bare = loadcases.loaded(bare, "standing")
    case = loadcases.conditions(bare)
    r = fem.solve(bare, rtol=1e-10)
    k_bare = -case["load:standing"].force[2] / -float(r.plate_motion("load:standing")[2])
    _, _, k = run_rig()
    assert 0.85 * k_bare < k < 1.15 * k_bare


def test_steepest_slope_reads_the_linear_part_of_a_curve():
    x = np.linspace(0.0, 2.0, 401)
    # a toe (slope rising), a linear part of 4 000 N/mm, then yield
    y = np.where(x < 0.5, 4000.0 * x ** 2, 4000.0 * (x - 0.25))
    y = np.where(x > 1.5, 4000.0 * 1.25 + 500.0 * (x - 1.5), y)
    assert rigs.steepest_slope(x, y, window=20) == pytest.approx(4000.0, rel=1e-9)
    with pytest.raises(ValueError, match="window"):
        rigs.steepest_slope(x[:5], y[:5], window=20)
    with pytest.raises(ValueError, match="NaN"):
        rigs.steepest_slope(x, np.where(x > 1, np.nan, y))


def test_bad_rig_input_names_the_fault():
    with pytest.raises(ParameterError, match="contact"):
        body(contact="glued")
    with pytest.raises(ParameterError, match="cap_depth"):
        body(cap_depth=0.0)
    with pytest.raises(ParameterError, match="one vertebral body"):
        rigs.potted_body("L1-L2", voxel_size=H)
    with pytest.raises(ParameterError, match="cap_material"):
        body(cap_material=(2450.0, 0.5))
    m = body()
    with pytest.raises(BoundaryConditionError, match="platen"):
        rigs.compression_test(m, platen="hinge")
    with pytest.raises(BoundaryConditionError, match="displacement"):
        rigs.compression_test(m, -0.1)
    from fem.meshes.vertebra import vertebra_model

    with pytest.raises(BoundaryConditionError, match="potted_body"):
        rigs.compression_test(vertebra_model("L1", voxel_size=3.0))


def test_a_pushover_runs_in_the_frictionless_rig_and_starts_on_the_linear_slope():
    """The slip layer is orthotropic and elastic: a pushover takes it (only yielding
    orthotropic elements are refused), and its first, elastic step has the linear machine
    stiffness (nonlinear = linear below the first yield)."""
    from fem.strength import bone_damage_law, pushover

    m, _, k = run_rig(contact="frictionless", platen="fixed")
    m2 = body(contact="frictionless")
    rigs.compression_test(m2, 0.2, platen="fixed")
    res = pushover(m2, level="L1", control="displacement")
    d, f = res.curve[1]
    assert f / d == pytest.approx(k, rel=1e-3)
    assert res.peak_reached and res.peak_load > f
    law = bone_damage_law(m2)
    slip = m2.regions["rig/slip_inferior"]
    assert np.isinf(law.yield_strain_compression[slip]).all()  # elastic
    ec = law.yield_strain_compression.copy()
    ec[slip[0]] = 0.01
    bad = type(law)(ec, law.yield_strain_tension, law.residual, law.softening_strain,
                    law.kappa0, reference_size=law.reference_size)
    with pytest.raises(fem.SolverError, match="orthotropic and can yield"):
        fem.solve_nonlinear(m2, bad, control="displacement")
