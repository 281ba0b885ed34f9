"""fem.metrics: per-level predictions against analytic solutions, invariance and comparisons.

Blocks stand in for vertebrae where the answer is known in closed form: they get the regions,
endplate node sets and ``metadata["levels"/"anatomy"]`` of a vertebra model by hand (anterior
= -y, cranial = +z, as the builders do). Under a uniform traction on rollers a hex8 block is in
exact uniaxial stress, so stiffness, strains and strengths follow from E, A and L alone.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
import pytest

import fem
from fem import metrics
from fem.anatomy import Anatomy, LevelAnatomy
from fem.meshes import loadcases, pathology, vertebra
from fem.meshes.blocks import hex_block, tet_block
from fem.meshes.transform import rigid_transform, rotation_matrix

ANTERIOR = np.array([0.0, -1.0, 0.0])


def anatomy(lo, hi, width, depth, name="L1"):
    """Anatomy of a box level spanning lo..hi (3,) mm, anterior = -y."""
    lo, hi = np.asarray(lo, float), np.asarray(hi, float)
    c = 0.5 * (lo + hi)
    return LevelAnatomy(name, centre=c, width=width, depth=depth, height=float(hi[2] - lo[2]),
                        superior_centre=(c[0], c[1], hi[2]), inferior_centre=(c[0], c[1], lo[2]),
                        pedicle_axes={"left": (np.array([c[0] + 5, hi[1], c[2]]), ANTERIOR),
                                      "right": (np.array([c[0] - 5, hi[1], c[2]]), ANTERIOR)})


def block_level(shape, size, *, E=1000.0, nu=0.3, level="L1", part="trabecular", h=None):
    """A hex block dressed as one vertebra (region, endplate sets, levels, anatomy)."""
    m = hex_block(shape, size, E=E, nu=nu)
    m.add_region(f"{level}/{part}", np.arange(m.n_elements))
    m.add_node_set(f"{level}/superior", m.node_sets["zmax"])
    m.add_node_set(f"{level}/inferior", m.node_sets["zmin"])
    m.metadata["levels"] = [level]
    m.anatomy = Anatomy([anatomy((0, 0, 0), size, size[0], size[1], level)])
    if h is not None:
        m.metadata["voxel_size"] = h
    return m


def rollers(m):
    """Supports that leave a block free to contract laterally: exact uniaxial stress."""
    m.fix("zmin", "z").fix("xmin", "x").fix("ymin", "y")
    return m


def solve(m, solver="direct", **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fem.solve(m, backend="numpy", solver=solver, **kw)


# ---------------------------------------------------------------------- uniaxial prism


@pytest.fixture(scope="module")
def prism():
    E, nu, F, size = 1200.0, 0.3, 250.0, (20.0, 16.0, 12.0)
    m = rollers(block_level((5, 4, 6), size, E=E, nu=nu))
    m.add(fem.TotalForce("zmax", (0.0, 0.0, -F)))
    return dict(E=E, nu=nu, F=F, A=size[0] * size[1], L=size[2], df=metrics.level_metrics(solve(m)))


def test_prism_stiffness_is_EA_over_L(prism):
    row = prism["df"].iloc[0]
    assert row["load_n"] == pytest.approx(prism["F"], rel=1e-12)
    assert row["stiffness_n_per_mm"] == pytest.approx(prism["E"] * prism["A"] / prism["L"],
                                                      rel=1e-9)


def test_prism_strengths_are_the_loads_at_the_yield_strains(prism):
    row = prism["df"].iloc[0]
    EA = prism["E"] * prism["A"]
    # Pistoia: effective strain sqrt(2 SED / E) = axial strain in uniaxial stress
    assert row["strength_pistoia_n"] == pytest.approx(EA * 0.007, rel=1e-9)
    # principal strain: compression |eps_z| / 0.84 % beats lateral tension nu eps / 0.78 %
    assert row["strength_strain_n"] == pytest.approx(EA * 0.0084, rel=1e-9)
    assert row["factor_of_risk"] == pytest.approx(prism["F"] / (EA * 0.007), rel=1e-9)
    assert row["factor_of_risk_strain"] == pytest.approx(prism["F"] / (EA * 0.0084), rel=1e-9)


def test_prism_geometry_and_flat_endplates(prism):
    row = prism["df"].iloc[0]
    assert row["height_anterior_mm"] == pytest.approx(prism["L"], abs=1e-12)
    assert row["height_posterior_mm"] == pytest.approx(prism["L"], abs=1e-12)
    assert row["wedge_angle_deg"] == pytest.approx(0.0, abs=1e-12)
    assert abs(row["endplate_bulge_superior_mm"]) < 1e-12
    assert abs(row["endplate_bulge_inferior_mm"]) < 1e-12
    assert math.isnan(row["disc_pressure_mpa"]) and math.isnan(row["interface_stress_mpa"])
    assert row["load_share_trabecular"] == pytest.approx(1.0, abs=1e-12)
    assert row["cement_placed_ml"] == 0.0 and row["leak_locations"] == ""


def test_crushed_bone_fails_by_the_strain_criteria_at_its_residual_strength():
    """A fracture's damaged bone (modulus 0.14 of what it was, Wolfram et al. 2011's measured
    damage) reloads along that modulus up to its damage history kappa0 before it yields again
    (the pushover's law, fem.strength): on the law's residual plateau, kappa0 = 0.6 / 0.14. The
    Pistoia and principal-strain criteria read its strain over kappa0, so a prism of crushed
    bone fails by them at the residual share (0.6) of the intact prism's strengths, the stress
    the damage law carries there, not at 0.14 of them (its raw strain, before 2026-12-07)."""
    from fem.strength import RESIDUAL, damage_history

    E0, r, F, size = 1200.0, pathology.CRUSHED_MODULUS_RATIO, 250.0, (20.0, 16.0, 12.0)
    m = rollers(block_level((5, 4, 6), size, E=r * E0))
    m.add_region("L1/damaged", np.arange(m.n_elements))
    m.metadata["fractures"] = [pathology.Fracture("L1", damage_factor=r)]
    m.add(fem.TotalForce("zmax", (0.0, 0.0, -F)))
    assert np.allclose(damage_history(m), RESIDUAL / r, rtol=1e-12)
    row = metrics.level_metrics(solve(m)).iloc[0]
    EA = E0 * size[0] * size[1]
    assert row["strength_pistoia_n"] == pytest.approx(RESIDUAL * EA * 0.007, rel=1e-9)
    assert row["strength_strain_n"] == pytest.approx(RESIDUAL * EA * 0.0084, rel=1e-9)
    # the same prism without the fracture's record is bone of that modulus, intact
    del m.metadata["fractures"]
    row = metrics.level_metrics(solve(m)).iloc[0]
    assert row["strength_pistoia_n"] == pytest.approx(r * EA * 0.007, rel=1e-9)


@pytest.mark.parametrize("envelope", ["compacted", "original"])
def test_compacted_crushed_bone_fails_at_the_residual_of_its_envelope(envelope):
    """Crushed bone compacted to a modulus factor f (pathology.compress's conserve_mass):
    with the "compacted" envelope it carries the residual stress of intact bone of its new
    density, f x the original's; with "original", that of the bone it was crushed from. A prism
    of it fails by the strain criteria at that residual share of the original prism's
    strength (times f, or not), analytic."""
    from fem.strength import RESIDUAL

    E0, r, f, F, size = 1200.0, pathology.CRUSHED_MODULUS_RATIO, 2.5, 250.0, (20.0, 16.0, 12.0)
    m = rollers(block_level((5, 4, 6), size, E=r * f * E0))
    every = np.arange(m.n_elements)
    m.add_region("L1/damaged", every)
    m.metadata["fractures"] = [pathology.Fracture("L1", damage_factor=r, envelope=envelope)]
    m.metadata["densification"] = {"L1": {"elements": every, "factors": np.full(len(every), f)}}
    m.add(fem.TotalForce("zmax", (0.0, 0.0, -F)))
    row = metrics.level_metrics(solve(m)).iloc[0]
    EA = E0 * size[0] * size[1] * (f if envelope == "compacted" else 1.0)
    assert row["strength_pistoia_n"] == pytest.approx(RESIDUAL * EA * 0.007, rel=1e-9)
    assert row["strength_strain_n"] == pytest.approx(RESIDUAL * EA * 0.0084, rel=1e-9)


def test_tension_uses_the_tensile_yield_strain():
    E, nu, F, size = 800.0, 0.3, 90.0, (6.0, 6.0, 9.0)
    m = rollers(block_level((3, 3, 3), size, E=E, nu=nu))
    m.add(fem.TotalForce("zmax", (0.0, 0.0, +F)))  # pulls: load_n = -F
    row = metrics.level_metrics(solve(m)).iloc[0]
    EA = E * size[0] * size[1]
    assert row["load_n"] == pytest.approx(-F, rel=1e-12)
    assert row["strength_strain_n"] == pytest.approx(-EA * 0.0078, rel=1e-9)
    assert row["strength_pistoia_n"] == pytest.approx(-EA * 0.007, rel=1e-9)


def test_pistoia_strength_scales_linearly_with_the_modulus_field(rng):
    m = block_level((6, 6, 5), (18.0, 18.0, 10.0), nu=0.25)
    m.set_material(None, E=rng.lognormal(np.log(300.0), 0.6, m.n_elements))
    m.fix("zmin")
    m.add(fem.TotalForce("zmax", (10.0, -20.0, -300.0)))
    m2 = m.copy()
    m2.set_material(None, E=2.0 * m.E)
    a = metrics.level_metrics(solve(m)).iloc[0]
    b = metrics.level_metrics(solve(m2)).iloc[0]
    for col in ("strength_pistoia_n", "strength_strain_n", "stiffness_n_per_mm"):
        assert b[col] == pytest.approx(2.0 * a[col], rel=1e-9), col
    assert b["factor_of_risk"] == pytest.approx(0.5 * a["factor_of_risk"], rel=1e-9)
    assert b["endplate_bulge_superior_mm"] == pytest.approx(0.5 * a["endplate_bulge_superior_mm"],
                                                            rel=1e-9, abs=1e-15)
    # heterogeneous: the 98th percentile strain is above the mean strain, so below E A 0.007 / L
    assert a["strength_pistoia_n"] > 0.0


# ---------------------------------------------------------------------- bending prism


def bending_prism(mx=0.0, F=0.0, *, offset=0.0, E=900.0, size=(12.0, 16.0, 20.0)):
    """A tet10 prism dressed as L1, clamped at zmin, under a rigid plate on zmax loaded by an
    axial force F (N, compression) and a flexion moment mx (N mm) about a reference ``offset``
    mm posterior of the top centroid (along +y; anterior is -y). With nu = 0 the clamp and the
    rigid plate are exact boundary conditions of pure bending and of uniform compression, and
    the exact fields (quadratic) lie in the tet10 space: rotation mx L / (E I), shortening
    F L / (E A)."""
    m = tet_block((3, 4, 5), size, order=2, E=E, nu=0.0)
    m.add_region("L1/trabecular", np.arange(m.n_elements))
    m.add_node_set("L1/superior", m.node_sets["zmax"])
    m.add_node_set("L1/inferior", m.node_sets["zmin"])
    m.metadata["levels"] = ["L1"]
    m.anatomy = Anatomy([anatomy((0, 0, 0), size, size[0], size[1])])
    m.fix("zmin")
    ref = (0.5 * size[0], 0.5 * size[1] + offset, size[2])
    # one name for every case: a bending case is told by the plate's moment, not by its name
    m.add(fem.RigidPlate("zmax", force=(0.0, 0.0, -F), moment=(mx, 0.0, 0.0), reference=ref,
                         name="load:plate"))
    return m


def test_flexion_reports_rotational_stiffness_EI_over_L_and_no_axial_stiffness():
    E, (b, d, L) = 900.0, (12.0, 16.0, 20.0)
    EI = E * b * d ** 3 / 12.0  # about the lateral (x) axis, N mm^2
    expect = EI / L * math.pi / 180.0 / 1000.0  # N m per degree
    r = solve(bending_prism(7500.0, 500.0))
    row = metrics.level_metrics(r).iloc[0]
    assert math.isnan(row["stiffness_n_per_mm"])  # ill-posed under a moment
    assert row["rotational_stiffness_nm_per_deg"] == pytest.approx(expect, rel=1e-8)
    assert row["load_n"] == pytest.approx(500.0, rel=1e-12)
    # the rigid fit of the loaded endplate turns it by M L / (E I) about x (flexion: +x)
    theta = metrics.endplate_rotation(r.model, r.displacement, "L1/superior")
    np.testing.assert_allclose(theta, [7500.0 * L / EI, 0.0, 0.0], atol=1e-9 * 7500 * L / EI)
    assert np.allclose(metrics.endplate_rotation(r.model, r.displacement, "L1/inferior"), 0.0)
    np.testing.assert_allclose(metrics.applied_moment(r.model), [7500.0, 0.0, 0.0])


def test_rotational_stiffness_is_linear_and_counts_the_forces_lever():
    """Doubling the moment doubles the rotation and leaves the stiffness (the preload on the
    axis turns nothing); a plate whose reference
    lies 5 mm posterior of the body's axis turns 500 N of preload into 2.5 N m of extension, which
    the level carries: the stiffness stays E I / L because the moment is taken about the
    level's centre."""
    rows = {}
    for key, mx, F, off in (("one", 7500.0, 500.0, 0.0), ("two", 15000.0, 500.0, 0.0),
                            ("lever", 7500.0, 500.0, 5.0)):
        r = solve(bending_prism(mx, F, offset=off))
        rows[key] = (metrics.level_metrics(r).iloc[0],
                     metrics.endplate_rotation(r.model, r.displacement, "L1/superior")[0])
    k = {key: row["rotational_stiffness_nm_per_deg"] for key, (row, _) in rows.items()}
    assert k["two"] == pytest.approx(k["one"], rel=1e-9)
    assert rows["two"][1] == pytest.approx(2.0 * rows["one"][1], rel=1e-9)
    assert rows["lever"][1] == pytest.approx((7500.0 - 5.0 * 500.0) / 7500.0 * rows["one"][1],
                                             rel=1e-9)
    assert k["lever"] == pytest.approx(k["one"], rel=1e-9)


def test_vertebra_bending_stiffness_over_axial_stiffness_is_the_sections_I_over_A():
    """A column's bending and axial stiffness share its modulus and length, E I / L and E A / L,
    so their ratio is the modulus-weighted I / A of its cross-section. For the L1 body (2 mm
    voxels, posterior elements on) under flexion and left lateral bending (500 N + 7.5 N m)
    against standing (500 N), with I / A of the body's mid-height slab about the lateral and
    the antero-posterior axis. Measured 0.92 of it about both axes (the body is not a prism:
    waisted sides, endplate layers); the axial stiffness stays what it was."""
    from fem.anatomy import level_frame

    rows, m = {}, None
    for case in ("standing", "flexion", "lateral_bending_left"):
        m = vertebra.segment_model("L1", voxel_size=2.0)
        m = loadcases.loaded(m, case)
        # AMG-CG to 1e-10 (an iterative answer that fem.solve verifies): against the 15 % this
        # test allows, the same as SuperLU's, in a tenth of the time
        rows[case] = metrics.level_metrics(solve(m, solver="amg", rtol=1e-10)).iloc[0]
    k_axial = rows["standing"]["stiffness_n_per_mm"]
    shortening = rows["standing"]["load_n"] / k_axial
    assert 5e3 < k_axial < 5e4 and shortening > 0  # N/mm, an osteoporotic L1 body
    f = level_frame(m, "L1")
    body = np.concatenate([m.regions["L1/cortex"], m.regions["L1/trabecular"]])
    rel = m.points[m.blocks[0].conn[body]].mean(axis=1) - f.centre
    slab = np.abs(rel @ f.axial) < 1.0
    E = m.E[body][slab]
    for case, across in (("flexion", f.anterior), ("lateral_bending_left", f.lateral)):
        row = rows[case]
        assert math.isnan(row["stiffness_n_per_mm"])
        y = rel[slab] @ across
        i_over_a = (E * (y - (E * y).sum() / E.sum()) ** 2).sum() / E.sum()  # mm^2
        k_rot = row["rotational_stiffness_nm_per_deg"] * 1e3 * 180.0 / math.pi  # N mm/rad
        assert k_rot > 0
        assert k_rot / k_axial == pytest.approx(i_over_a, rel=0.15), case


def test_standing_keeps_the_axial_stiffness_EA_over_L():
    E, (b, d, L) = 900.0, (12.0, 16.0, 20.0)
    row = metrics.level_metrics(solve(bending_prism(0.0, 500.0))).iloc[0]
    assert row["stiffness_n_per_mm"] == pytest.approx(E * b * d / L, rel=1e-9)
    assert math.isnan(row["rotational_stiffness_nm_per_deg"])


# ---------------------------------------------------------------------- parallel springs


def test_load_shares_of_a_three_material_column_are_EA_shares():
    """6 x 6 elements: cortex ring, trabecular ring, 2 x 2 cement core; nu = 0 and a rigid
    plate give the same axial strain in every material (parallel springs)."""
    h, n, L, F = 2.0, 6, 12.0, 400.0
    E = {"cortex": 3000.0, "trabecular": 100.0, "cement_composite": 1500.0}
    m = hex_block((n, n, 6), (n * h, n * h, L), nu=0.0)
    c = m.points[m.blocks[0].conn].mean(axis=1)
    ring = np.maximum(np.abs(c[:, 0] - n * h / 2), np.abs(c[:, 1] - n * h / 2)) // h
    part = np.where(ring == 2, "cortex", np.where(ring == 1, "trabecular", "cement_composite"))
    for p, e in E.items():
        m.add_region(f"L1/{p}", np.nonzero(part == p)[0])
        m.set_material(f"L1/{p}", E=e)
    m.add_node_set("L1/superior", m.node_sets["zmax"])
    m.add_node_set("L1/inferior", m.node_sets["zmin"])
    m.metadata.update(levels=["L1"], voxel_size=h,
                      anatomy=Anatomy([anatomy((0, 0, 0), (n * h, n * h, L), n * h, n * h)]))
    m.fix("zmin")
    m.add(fem.RigidPlate("zmax", force=(0.0, 0.0, -F), name="load:standing"))
    df = metrics.level_metrics(solve(m))
    row = df.iloc[0]
    EA = {p: E[p] * h * h * (part == p).sum() / 6 for p in E}
    total = sum(EA.values())
    assert row["load_share_cortex"] == pytest.approx(EA["cortex"] / total, rel=1e-9)
    assert row["load_share_trabecular"] == pytest.approx(EA["trabecular"] / total, rel=1e-9)
    assert row["load_share_cement"] == pytest.approx(EA["cement_composite"] / total, rel=1e-9)
    assert (row["load_share_cortex"] + row["load_share_trabecular"]
            + row["load_share_cement"]) == pytest.approx(1.0, abs=1e-12)
    eps = F / total
    assert row["stiffness_n_per_mm"] == pytest.approx(total / L, rel=1e-9)
    assert row["strength_pistoia_n"] == pytest.approx(F * 0.007 / eps, rel=1e-9)
    assert row["strength_strain_n"] == pytest.approx(F * 0.0084 / eps, rel=1e-9)
    # the cement core touches the trabecular ring only: peak |sigma| there is E_cement eps
    assert row["interface_stress_mpa"] == pytest.approx(E["cement_composite"] * eps, rel=1e-9)
    assert df.attrs["load_case"] == "standing"


# ---------------------------------------------------------------------- disc and endplates


def disc_stack(E_upper=100.0, E_lower=100.0, nu_bone=0.3, nu_disc=0.45, p=0.5):
    """L1 over an L1-L2 disc (nucleus core, annulus ring) over L2, 4 x 4 elements of 2 mm,
    confined laterally: uniaxial strain, sigma_zz = -p in every layer."""
    h, n = 2.0, 4
    m = hex_block((n, n, 8), (n * h, n * h, 16.0), nu=nu_bone)
    c = m.points[m.blocks[0].conn].mean(axis=1)
    core = (np.abs(c[:, 0] - 4.0) < 2.0) & (np.abs(c[:, 1] - 4.0) < 2.0)
    z = c[:, 2]
    m.add_region("L2/trabecular", np.nonzero(z < 6.0)[0])
    m.add_region("L1-L2/nucleus", np.nonzero((z > 6.0) & (z < 10.0) & core)[0])
    m.add_region("L1-L2/annulus", np.nonzero((z > 6.0) & (z < 10.0) & ~core)[0])
    m.add_region("L1/trabecular", np.nonzero(z > 10.0)[0])
    m.set_material("L1/trabecular", E=E_upper)
    m.set_material("L2/trabecular", E=E_lower)
    for d in ("L1-L2/nucleus", "L1-L2/annulus"):
        m.set_material(d, E=2.0, nu=nu_disc)
    zn = m.points[:, 2]
    for lv, lo, hi in (("L1", 10.0, 16.0), ("L2", 0.0, 6.0)):
        m.add_node_set(f"{lv}/superior", np.nonzero(np.isclose(zn, hi))[0])
        m.add_node_set(f"{lv}/inferior", np.nonzero(np.isclose(zn, lo))[0])
    m.metadata.update(levels=["L1", "L2"], voxel_size=h, anatomy=Anatomy([
        anatomy((0, 0, 10), (8, 8, 16), 8.0, 8.0, "L1"),
        anatomy((0, 0, 0), (8, 8, 6), 8.0, 8.0, "L2")]))
    for s in ("xmin", "xmax"):
        m.fix(s, "x")
    for s in ("ymin", "ymax"):
        m.fix(s, "y")
    m.fix("zmin", "z")
    m.add(fem.Pressure("zmax", p))
    return m


def test_confined_nucleus_pressure_and_constrained_modulus():
    p, nu_d, nu_b, E = 0.5, 0.45, 0.3, 100.0
    r = solve(disc_stack(E, E, nu_b, nu_d, p))
    df = metrics.level_metrics(r)
    # uniaxial strain: lateral stress p nu / (1 - nu), mean pressure p (1 + nu) / (3 (1 - nu))
    expect = p * (1 + nu_d) / (3 * (1 - nu_d))
    assert df.loc[0, "disc_pressure_mpa"] == pytest.approx(expect, rel=1e-9)
    assert math.isnan(df.loc[1, "disc_pressure_mpa"])  # no disc below L2
    M = E * (1 - nu_b) / ((1 + nu_b) * (1 - 2 * nu_b))
    assert df.loc[0, "load_n"] == pytest.approx(p * 64.0, rel=1e-12)
    assert df.loc[0, "stiffness_n_per_mm"] == pytest.approx(M * 64.0 / 6.0, rel=1e-9)
    dm = metrics.disc_metrics(r)
    assert list(dm["disc"]) == ["L1-L2"]
    assert dm.loc[0, "nucleus_pressure_mpa"] == pytest.approx(expect, rel=1e-9)
    assert dm.loc[0, "annulus_max_von_mises_mpa"] == pytest.approx(
        p * (1 - 2 * nu_d) / (1 - nu_d), rel=1e-9)


def test_endplate_bulge_of_a_prescribed_dome_relative_to_a_tilted_rim():
    """Endplates displaced by a tilt plus a dome that vanishes on the rim: the bulge is the
    dome's depth, measured into the body at both endplates."""
    n, h = 10, 2.0
    m = block_level((n, n, 3), (n * h, n * h, 6.0), E=50.0, nu=0.3)
    pts = m.points
    rho2 = ((pts[:, 0] - 10.0) ** 2 + (pts[:, 1] - 10.0) ** 2) / 10.0 ** 2
    rim_rho = 1.0 - 2.0 * metrics.DEFAULT_RIM / 20.0
    dome = np.maximum(0.0, 1.0 - rho2 / rim_rho ** 2)
    tilt = 0.01 + 0.002 * pts[:, 0] - 0.003 * pts[:, 1]
    for i in m.node_sets["zmax"]:
        m.add(fem.Displacement([i], (None, None, tilt[i] - 0.04 * dome[i])))
    for i in m.node_sets["zmin"]:
        m.add(fem.Displacement([i], (0.0, 0.0, -tilt[i] + 0.015 * dome[i])))
    r = solve(m)
    with pytest.raises(metrics.MetricsError, match="load="):
        metrics.level_metrics(r)
    row = metrics.level_metrics(r, load=100.0).iloc[0]
    assert row["load_n"] == 100.0
    assert row["endplate_bulge_superior_mm"] == pytest.approx(0.04, rel=1e-9)
    assert row["endplate_bulge_inferior_mm"] == pytest.approx(0.015, rel=1e-9)


# ---------------------------------------------------------------------- vertebra models


def test_wedge_fracture_heights_and_angle():
    intact = vertebra.segment_model("L1", voxel_size=2.0, posterior=False)
    broken = pathology.compress(intact, "L1", "wedge", grade=2)
    d = intact.anatomy["L1"].dims
    ha0, hp0, w0 = metrics.body_heights(intact, "L1")
    ha1, hp1, w1 = metrics.body_heights(broken, "L1")
    loss = pathology.genant_loss(2) * d.height_anterior
    assert ha0 - ha1 == pytest.approx(loss, abs=2.0)  # within a voxel
    assert hp1 == pytest.approx(hp0, abs=2.0)
    # the bands' centres lie between 0.7 and 1 depth apart: bounds of the angle's rise
    lo = math.degrees(math.atan((ha0 - ha1 - abs(hp1 - hp0)) / d.depth))
    hi = math.degrees(math.atan((ha0 - ha1 + abs(hp1 - hp0)) / (0.7 * d.depth)))
    assert lo < w1 - w0 < hi
    assert abs(w0) < 5.0 < w1


@pytest.fixture(scope="module", params=["standing", "flexion"])
def segment_pair(request):
    """An L1-L2 segment (3 mm voxels) with a burst-fractured, cemented L2 (so that the cement,
    interface and leak metrics are checked too) and a rigidly moved copy under one load case."""
    from fem import augment
    from fem.meshes import pathology

    m = pathology.compress(vertebra.segment_model("L1-L2", voxel_size=3.0), "L2", "wedge",
                           grade=2, burst=True)
    m = augment.pvp(m, "L2", 5.0, tip_depth=0.15)
    m = loadcases.loaded(m, request.param)
    mr = rigid_transform(m, rotation_matrix((0.3, -0.5, 0.8), 37.0), (12.0, -4.0, 7.5))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return [fem.solve(x, backend="numpy", solver="amg", rtol=1e-10) for x in (m, mr)]


@pytest.mark.slow
def test_metrics_are_invariant_to_a_rigid_motion(segment_pair):
    a, b = (metrics.level_metrics(r) for r in segment_pair)
    num = [c for c in a.columns if pd.api.types.is_numeric_dtype(a[c])]
    assert list(a["level"]) == list(b["level"]) == ["L1", "L2"]
    for c in num:
        x, y = a[c].to_numpy(), b[c].to_numpy()
        # entries that vanish by construction (the bulge of a plate-loaded or fixed endplate)
        # are compared against a millionth of the column's largest value
        scale = np.nanmax(np.abs(x)) if np.isfinite(x).any() else 0.0
        np.testing.assert_allclose(y, x, rtol=1e-6, atol=1e-6 * scale, err_msg=c)
    assert (a["leak_locations"] == b["leak_locations"]).all()
    l2 = a[a["level"] == "L2"].iloc[0]
    assert l2["cement_placed_ml"] > 4.7 and l2["leak_ml"] > 0
    # the cement carries load; under flexion the posterior cement (needle tips at 15 % depth)
    # lies behind the neutral axis of the kyphotic segment and carries net tension
    bending = metrics.applied_moment(segment_pair[0].model).any()
    assert abs(l2["load_share_cement"]) > 0.01 and (bending or l2["load_share_cement"] > 0)
    assert np.isfinite(l2["interface_stress_mpa"])
    da, db = (metrics.disc_metrics(r) for r in segment_pair)
    np.testing.assert_allclose(db.iloc[:, 1:].to_numpy(float), da.iloc[:, 1:].to_numpy(float),
                               rtol=1e-6)
    # sanity of the physics, not of stored numbers: compressed, positive stiffness and strength;
    # under flexion the stiffness is rotational, the axial one NaN
    bending = metrics.applied_moment(segment_pair[0].model).any()
    axial, rotational = a["stiffness_n_per_mm"], a["rotational_stiffness_nm_per_deg"]
    assert (axial.isna() if bending else axial > 0).all()
    assert (rotational > 0 if bending else rotational.isna()).all()
    assert (a["strength_pistoia_n"] > 0).all()
    # the axial load of each level: the fractured L2 carries the preload along its axis; L1,
    # tipped forward by the fracture's kyphosis, carries its component along its own axis
    angle = np.radians(segment_pair[0].model.metadata["kyphosis"]["L2"]["angle_deg"])
    np.testing.assert_allclose(a["load_n"], loadcases.PVP_PRELOAD * np.array([np.cos(angle), 1.0]),
                               rtol=1e-9)


# ---------------------------------------------------------------------- comparison


@pytest.fixture(scope="module")
def three_states():
    intact = solve(disc_stack(100.0, 100.0))
    fractured = solve(disc_stack(50.0, 100.0))
    tm = disc_stack(150.0, 100.0)
    tm.metadata["augmentations"] = [dict(
        procedure="PVP", level="L1", volume_ml=4.0, leak_ml=0.5, fill_fraction=0.3,
        leaks=(dict(region="L1/cement_leak", volume_ml=0.5, centroid=(0.0, 9.0, 12.0)),))]
    return {"intact": intact, "fractured": fractured, "treated": solve(tm)}


def test_compare_change_columns_and_headlines(three_states):
    states = dict(three_states)
    states["fractured"] = {"default": metrics.level_metrics(states["fractured"])}
    cmp = metrics.compare(states)
    t = cmp.table
    assert len(t) == 6 and list(t.columns[:3]) == ["state", "load_case", "level"]
    ref = t[t.state == "intact"].set_index("level")
    for _, row in t.iterrows():
        for c in ("stiffness_n_per_mm", "strength_pistoia_n", "factor_of_risk",
                  "disc_pressure_mpa"):
            x, x0 = row[c], ref.loc[row["level"], c]
            expect = (x - x0) / x0 * 100.0 if x0 else math.nan
            assert row[f"{c}_change_pct"] == pytest.approx(expect, rel=1e-12, nan_ok=True)
    # confined layers: stiffness of L1 proportional to its modulus; L2 untouched
    l1 = t[t.level == "L1"].set_index("state")
    assert l1.loc["fractured", "stiffness_n_per_mm_change_pct"] == pytest.approx(-50.0, rel=1e-9)
    assert l1.loc["treated", "stiffness_n_per_mm_change_pct"] == pytest.approx(50.0, rel=1e-9)
    assert l1.loc["treated", "cement_placed_ml"] == 4.0
    assert l1.loc["treated", "cement_volume_ml"] == 4.0  # the former name, kept one release
    assert l1.loc["treated", "leak_locations"] == "L1/cement_leak"
    assert math.isnan(l1.loc["intact", "cement_placed_ml_change_pct"])  # 0 reference
    cp = cmp.collapse_prevention.set_index("state")
    assert cmp.treated == "L1"
    assert cp.loc["treated", "stiffness_ratio_fractured"] == pytest.approx(3.0, rel=1e-9)
    assert cp.loc["treated", "stiffness_ratio_reference"] == pytest.approx(1.5, rel=1e-9)
    assert cp.loc["fractured", "strength_pistoia_ratio_reference"] == pytest.approx(0.5, rel=1e-9)
    ar = cmp.adjacent_risk
    assert list(ar["level"].unique()) == ["L2"] and set(ar["position"]) == {"below"}
    assert (ar["disc"] == "L1-L2").all() and (ar["endplate"] == "L2/superior").all()
    np.testing.assert_allclose(ar["factor_of_risk_change_pct"], 0.0, atol=1e-7)
    np.testing.assert_allclose(ar["disc_pressure_mpa_change_pct"], 0.0, atol=1e-7)
    text = str(cmp)
    assert "Collapse prevention at L1" in text and "Adjacent-level risk around L1" in text
    assert "stiffness_n_per_mm" in text and "MPa" in text


def test_compare_errors_name_the_fix(three_states):
    with pytest.raises(fem.ModelError, match="reference="):
        metrics.compare(three_states, reference="healthy")
    df = metrics.level_metrics(three_states["intact"])
    other = df.assign(level=["T11", "T12"])
    with pytest.raises(fem.ModelError, match="shares no"):
        metrics.compare({"intact": df, "other": other})
    no_cement = metrics.compare({"intact": three_states["intact"],
                                 "fractured": three_states["fractured"]})
    with pytest.raises(fem.ModelError, match="treated_level="):
        _ = no_cement.collapse_prevention
    assert "treated_level=" in str(no_cement)
    with pytest.raises(fem.ModelError, match="levels"):
        metrics.level_metrics(three_states["intact"], levels=["L4"])


def test_comparison_lists_the_pushover_strength_where_there_is_one():
    """Where the tables hold a pushover, the headline strength and factor of risk are its own
    (strength_method "pushover"), and collapse_prevention and adjacent_risk list the Pistoia
    ones beside them; tables without one (older stores) keep the Pistoia headline."""
    import numpy as np
    import pandas as pd

    from fem.metrics import COLUMNS, PUSHOVER_COLUMNS, compare

    def table(k, strength=None, cement=0.0, drop=False):
        rows = []
        for lv in ("L1", "L2", "L3"):
            r = {c: 1.0 for c in COLUMNS}
            r.update(level=lv, leak_locations="", stiffness_n_per_mm=k,
                     cement_placed_ml=cement if lv == "L2" else 0.0)
            r.update({c: np.nan for c in PUSHOVER_COLUMNS})
            if strength is not None:
                r.update(strength_pushover_n=strength, factor_of_risk_pushover=500.0 / strength)
            rows.append(r)
        df = pd.DataFrame(rows)
        return df.drop(columns=list(PUSHOVER_COLUMNS)) if drop else df

    c = compare({"intact": table(10, 3000), "fractured": table(5, 2000),
                 "pvp": table(8, 2500, 4.0)})
    cp = c.collapse_prevention.set_index("state")
    assert cp.loc["pvp", "strength_pushover_ratio_fractured"] == pytest.approx(1.25)
    assert cp.loc["pvp", "strength_ratio_fractured"] == pytest.approx(1.25)
    assert cp.loc["pvp", "strength_pistoia_ratio_fractured"] == pytest.approx(1.0)
    assert (cp["strength_method"] == "pushover").all()
    ar = c.adjacent_risk.set_index(["state", "level"])
    # load_n 1 N: the headline Phi is 1 / 2500 at PVP, 1 / 2000 fractured: 20 % lower
    assert ar.loc[("pvp", "L1"), "factor_of_risk"] == pytest.approx(1.0 / 2500.0)
    assert ar.loc[("pvp", "L3"), "factor_of_risk_change_pct"] == pytest.approx(-20.0)
    assert ar.loc[("pvp", "L3"), "factor_of_risk_pistoia"] == pytest.approx(1.0)
    assert "strength_pushover_n" in str(c)
    for old in (compare({"intact": table(10, drop=True), "fractured": table(5, drop=True),
                         "pvp": table(8, cement=4.0, drop=True)}),
                compare({"intact": table(10), "fractured": table(5), "pvp": table(8, None, 4.0)})):
        assert not any("pushover" in col for col in old.collapse_prevention.columns)
        assert not any("pushover" in col or "pistoia" in col for col in
                       old.adjacent_risk.columns)
        assert (old.table["strength_method"] == "pistoia").all()
        np.testing.assert_allclose(old.table["factor_of_risk"], 1.0)  # the Pistoia one
        str(old)


def test_axial_stiffness_is_taken_along_the_load_line_of_a_kyphotic_segment():
    """A wedge fracture tips the levels above, so standing loads the fractured level off its
    axis where the plate rides the tipped segment (load_line "plate"; the default, "space",
    keeps the load over the intact top). Along the load's line the shortening is the one
    the load works through: the stiffness stays positive and grows with the cement, where the
    shortening at the axis mixed in the level's bending (it reached -4.9e5 N/mm at 2 mm)."""
    from fem.anatomy import level_frame
    from fem.study.recipe import build_model
    from fem.study.spec import PARAMETERS

    base = {k: v.default for k, v in PARAMETERS.items()}
    base.update(levels="T12-L4", fracture_level="L2", voxel_size=4.0, load_line="plate")
    k = {}
    for proc, ml in (("intact", 4.0), ("fractured", 4.0), ("pvp", 2.0), ("pvp", 4.0),
                     ("pvp", 6.0)):
        m = build_model({**base, "procedure": proc, "cement_volume_ml": ml})
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            r = fem.solve(m)
        fd = metrics._Fields(r)
        f = level_frame(m, "L2")
        # the line of action of the plate's vertical force: through its reference point
        (plate,) = fd.plates
        off = plate.reference - f.centre
        off = off - (off @ plate.force) / (plate.force @ plate.force) * plate.force
        assert np.allclose(metrics.load_line(fd, f), (off @ f.lateral, off @ f.anterior),
                           atol=1e-9)
        k[(proc, ml)] = float(metrics.level_metrics(r).set_index("level").at[
            "L2", "stiffness_n_per_mm"])
        if proc == "fractured":  # the tipped segment carries the load well in front of L2
            assert metrics.load_line(fd, f)[1] > 10.0
    assert k[("fractured", 4.0)] < k[("pvp", 2.0)] < k[("pvp", 4.0)] < k[("pvp", 6.0)]
    assert k[("fractured", 4.0)] > 0 and k[("pvp", 6.0)] < k[("intact", 4.0)]


def test_cement_endplate_contact_counts_the_endplate_cement_lies_against():
    """``cement_endplate_contact``: on a voxel L2, cement put in the trabecular voxels right
    under the superior endplate touches exactly the endplate voxels above them (found here from
    the voxel centroids, not from shared faces), and none of the inferior endplate; the columns
    come out of ``level_metrics``; a PVP's cloud touches more as its volume grows, and more with
    the anisotropic front than with the isotropic one."""
    from fem import augment

    m = vertebra.vertebra_model("L2", voxel_size=2.0, posterior=False)
    assert metrics.cement_endplate_contact(m, "L2") == {"superior": 0.0, "inferior": 0.0}
    c = fem.assembly.element_centroids(m)
    sup, trab = m.regions["L2/endplate_superior"], m.regions["L2/trabecular"]
    def cell(x):  # the voxel's index (centroids lie at half-voxels: no rounding ties)
        return tuple(np.floor((x - c.min(axis=0)) / 2.0 + 0.5).astype(int))

    key = {cell(x): e for e, x in zip(trab, c[trab])}
    below = [key.get(cell(c[e] - [0, 0, 2.0])) for e in sup]
    take = np.array([b for b in below if b is not None])[::2]  # half of those under it
    out = m.copy()
    out.move_elements(take, "L2/cement_composite", E=2000.0, nu=0.3)
    cemented = {cell(c[e]) for e in take}
    steps = 2.0 * np.vstack([np.eye(3), -np.eye(3)])  # the six face neighbours
    expected = np.mean([any(cell(c[e] + d) in cemented for d in steps) for e in sup])
    got = metrics.cement_endplate_contact(out, "L2")
    assert got["superior"] == pytest.approx(expected, rel=1e-12) and 0.2 < expected < 0.6
    assert got["inferior"] == 0.0
    loaded = loadcases.loaded(out, "standing")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        row = metrics.level_metrics(fem.solve(loaded)).iloc[0]
    assert row["cement_contact_superior"] == pytest.approx(expected, rel=1e-12)
    assert row["cement_contact_inferior"] == 0.0

    fr = pathology.compress(vertebra.segment_model("L1-L3", voxel_size=2.0), "L2", "wedge",
                            grade=2)
    both = {}
    for a in (1.0, 2.05):
        for v in (2.0, 5.0):
            t = metrics.cement_endplate_contact(
                augment.pvp(fr, "L2", v, permeability_anisotropy=a), "L2")
            both[a, v] = t["superior"] + t["inferior"]
    assert both[2.05, 5.0] > both[2.05, 2.0] and both[1.0, 5.0] > both[1.0, 2.0]
    assert both[2.05, 5.0] > both[1.0, 5.0]


@pytest.mark.parametrize("degrees", [0.5, 12.0])
def test_disc_rotation_is_the_turn_across_the_disc_and_warns_beyond_small_strain(degrees):
    """A displacement field that turns every node of L1 rigidly (linearised, u = theta x r)
    about a tilted axis through its centre and leaves L2 where it is: the rotation across the
    L1-L2 disc is theta exactly (least-squares rigid fits of exact rigid fields), the lowest
    level has none; beyond SMALL_ROTATION_DEG the table comes with a SmallStrainWarning that
    names the disc, and the study's log note says so."""
    import copy

    from fem.study.execute import _small_strain_note

    m = loadcases.loaded(vertebra.segment_model("L1-L2", voxel_size=4.0, posterior=False),
                         "standing")
    r = fem.solve(m, rtol=1e-8)
    l1 = np.unique(m.element_nodes(np.concatenate(
        [e for name, e in m.regions.items() if name.startswith("L1/")])))
    l1 = np.setdiff1d(l1, m.node_sets["L2/superior"])  # the disc keeps L2's endplate still
    axis = np.array([1.0, 0.4, 0.2]) / np.linalg.norm([1.0, 0.4, 0.2])
    theta = np.radians(degrees) * axis
    centre = m.anatomy["L1"].centre
    u = np.zeros((m.n_nodes, 3))
    u[l1] = np.cross(theta, m.points[l1] - centre)
    turned = copy.copy(r)
    turned.displacement = u
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        t = metrics.level_metrics(turned).set_index("level")
    assert t.loc["L1", "disc_rotation_deg"] == pytest.approx(degrees, rel=1e-9)
    assert math.isnan(t.loc["L2", "disc_rotation_deg"])
    said = [str(w.message) for w in caught if issubclass(w.category, metrics.SmallStrainWarning)]
    note = _small_strain_note(t.reset_index().to_dict("records"))
    if degrees > metrics.SMALL_ROTATION_DEG:
        assert len(said) == 1 and f"L1-L2 {degrees:.0f} deg" in said[0]
        assert f"beyond small strain: L1-L2 {degrees:.0f} deg" in note
    else:
        assert not said and note == ""
