"""The fibre-reinforced annulus (issue 16, deliverable 3; ``fem.fibres``, ``fem.solve_disc``).

Verification: the fibre law against its formula; a block of fibre material against the analytic
uniaxial answer, in tension (the fibres carry stress) and in compression (they carry none),
through the secant iterations; the iterations converge to the tight-tolerance answer.

Calibration targets on the parametric L4-L5 segment (3 mm voxels, posterior elements cut so
that each solve takes a few seconds; L5 fixed, L4 loaded through platens held parallel). The
fibre law's parameters come from tissue tests (``fem.fibres``: ground substance Elliott & Setton
2001, lamella modulus Skaggs et al. 1994, angle Holzapfel et al. 2005; the toe strain is an
assumption); every segment-level number below is a prediction, none was fitted:

* Wilke et al. 1999: 0.5 MPa in the L4-L5 nucleus standing (one volunteer, no SD);
* Nachemson 1960: nucleus pressure about 1.5 x load / disc area (no SD);
* Holmes et al. 1993: the caudal endplate moves 0.14 +- 0.04 mm (n = 6) at 1.6 kN;
* the motion segment's axial stiffness, 1 400 +- 480 N/mm (secondary): NOT reproduced by the
  default disc (drained, small strain: about 150 N/mm, linear in load up to 3 kN): the test
  says so with a strict xfail, so that fixing it is noticed. Reproduced in the configuration a
  test-rate load meets, ``fem.solve_disc(..., kinematics="finite", drainage="undrained")``:
  the disc stiffens with load, and the steepest slope of a ramp to 1.6 kN (a testing machine's
  stiffness) is within one SD; the same run keeps Nachemson's ratio and Holmes's deflection
  (docs/validation.md, "An undrained disc"). Much of the default disc's miss is the parametric
  disc's height: on the shape model's real L4-L5 the same disc is 2.4x too soft, not 9x, and
  the undrained large-deformation disc is about 3x too stiff there (docs/validation.md, "The
  disc on real anatomy"; not asserted here, it needs 1.5-1 mm voxels and minutes).
"""

from __future__ import annotations

import warnings
from functools import lru_cache

import numpy as np
import pytest
from scipy.optimize import brentq

import fem
from fem import metrics
from fem.fibres import FibreLaw, FibreRegion, disc_fibres, solve_fibres
from fem.loads import Fixed, Traction
from fem.meshes import experiments, loadcases, ssm
from fem.meshes.blocks import hex_block
from fem.meshes.bone import BoneQuality
from fem.meshes.vertebra import segment_model

VOXEL = 3.0


def test_fibre_law_is_tension_only_toe_then_linear():
    law = FibreLaw(modulus=80.0, toe_strain=0.02)
    e = np.array([-0.05, -1e-4, 0.0, 0.01, 0.02, 0.05])
    np.testing.assert_allclose(law.stress(e), [0, 0, 0, 80 * 0.01 ** 2 / 0.04, 0.8, 80 * 0.04])
    pos = e > 0
    np.testing.assert_allclose(law.secant(e)[pos] * e[pos], law.stress(e)[pos])
    assert not law.secant(e)[~pos].any()
    # the tangent is continuous at the end of the toe: E_L from both sides
    d = 1e-7
    for x in (0.02 - d, 0.02 + d):
        assert (law.stress(x + d) - law.stress(x - d)) / (2 * d) == pytest.approx(80.0, rel=1e-4)


def test_secant_constants_are_the_ground_without_fibre_strain():
    """Slack fibres leave the isotropic ground substance: E = 0.8 MPa, nu = 0.45 each way."""
    c = FibreLaw().constants(np.zeros((2, 1)))[0]
    np.testing.assert_allclose(c[:3], 0.8)
    np.testing.assert_allclose(c[3:6], 0.45)
    np.testing.assert_allclose(c[6:], 0.8 / 2.9)


def _fibre_block(traction):
    """A 1 mm cube of fibre material under uniaxial stress ``traction`` (MPa) along y. Its
    fibres wind about a z axis 10^6 mm away along -x, so they run along y (to 5e-7 rad: a tilt
    couples the stiff fibres to the soft ground's shear, so a 1 000 mm radius already moves
    the strain by 2e-5)."""
    m = hex_block((2, 2, 2), distort=0.1, seed=3, E=1.0, nu=0.3)
    m.add(Fixed("ymin", "y"), Fixed("xmin", "x"), Fixed("zmin", "z"),
          Traction("ymax", (0.0, traction, 0.0)))
    region = FibreRegion("block", np.arange(m.n_elements), ((-1.0e6, 0.5, 0.5), (0, 0, 1)))
    return m, region


@pytest.mark.parametrize("traction", [1.0, -1.0])
def test_block_in_uniaxial_stress_along_the_fibres(traction):
    """Fibres along the load (angle 0: both families circumferential): the uniaxial modulus is
    E_ground + E_secant (the rank-one fibre term adds to 1 / S_yy exactly), so the strain solves
    0.8 eps + sigma_f(eps) = sigma. In tension the fibres carry most of the 1 MPa (strain
    2.23 %, their linear region); in compression none of it (strain sigma / 0.8 MPa)."""
    law = FibreLaw(angle=0.0)
    m, region = _fibre_block(traction)
    r = solve_fibres(m, [region], law, tol=1e-9, strain_tol=1e-9, solver="direct")
    E_g = law.ground[0]
    expected = brentq(lambda e: E_g * e + 2 * law.share * law.stress(e) - traction, -5.0, 5.0)
    top = m.nodes_of("ymax")
    eps = float(np.asarray(r.displacement)[top, 1].mean())
    assert eps == pytest.approx(expected, rel=1e-6)
    stress = np.asarray(r.stress)
    np.testing.assert_allclose(stress[:, 1], traction, rtol=1e-6)
    fibre = r.extra_cell_fields["fibre_stress_plus"]
    if traction > 0:
        assert eps > law.toe_strain
        np.testing.assert_allclose(fibre, law.stress(expected), rtol=1e-5)
        assert 2 * law.share * fibre.mean() > 0.9 * traction  # the fibres carry the load
    else:
        assert eps == pytest.approx(traction / E_g, rel=1e-9)  # the ground alone
        assert not fibre.any()


def test_secant_iterations_converge_to_the_tight_answer():
    """At +-30 degrees, the block loaded along y and sheared: the out-of-balance force falls
    below the tolerance, and the answer at tol 1e-3 is the tight one's (1e-8) to 1e-2."""
    m, region = _fibre_block(0.5)
    m.add(Traction("ymax", (0.0, 0.0, 0.05)))
    loose = solve_fibres(m, [region], tol=1e-3, solver="direct")
    tight = solve_fibres(m, [region], tol=1e-8, strain_tol=1e-8, solver="direct")
    assert loose.fibres.residuals[-1] < 1e-3
    hist = tight.fibres.residuals
    assert hist[-1] < 1e-8 and len(hist) < 20
    assert 0.0 < tight.fibres.tension_fraction <= 1.0
    u, u0 = np.asarray(loose.displacement), np.asarray(tight.displacement)
    assert np.abs(u - u0).max() < 1e-2 * np.abs(u0).max()
    # ``callback``: once per CG iteration of the linear solves (a progress bar's count), on
    # the direct path (CG on the first stiffness's factors) and on AMG-CG
    for solver in ("direct", "amg"):
        calls = []
        r = solve_fibres(m, [region], tol=1e-8, strain_tol=1e-8, solver=solver,
                         coupling=False, callback=calls.append)
        assert len(calls) == r.fibres.linear_iterations > 0


@pytest.mark.parametrize("coupling", [False, True])
def test_families_strained_apart_store_the_energy_of_their_stiffness(coupling):
    """A homogeneous strain prescribed at every node (circumferential 1 %, theta-z shear
    gamma 3 %) stretches the +30 degree family into its linear region (2.05 %) and leaves the
    -30 degree one slack (-0.55 %). The work of the reactions is V eps.C.eps with C the ground
    plus the stretched family: exactly, with ``coupling`` (the normal-shear terms assembled),
    and with those terms dropped without it (the orthotropic secant)."""
    law = FibreLaw()
    m = hex_block((2, 2, 2), distort=0.1, seed=5, E=1.0, nu=0.3)
    eps = np.array([[0.0, 0.0, 0.0], [0.0, 0.01, 0.015], [0.0, 0.015, 0.0]])  # tensor
    for i, x in enumerate(m.points):
        m.add_node_set(f"n{i}", [i])
        m.add(fem.Displacement(f"n{i}", tuple(eps @ x)))
    region = FibreRegion("block", np.arange(m.n_elements), ((-1.0e6, 0.5, 0.5), (0, 0, 1)))
    r = solve_fibres(m, [region], law, coupling=coupling, strain_tol=1e-9, solver="direct")
    fs = r.fibres.strain
    c, s = np.cos(np.radians(30.0)), np.sin(np.radians(30.0))
    np.testing.assert_allclose(fs[0], c * c * 0.01 + 2 * c * s * 0.015, rtol=1e-6)
    np.testing.assert_allclose(fs[1], c * c * 0.01 - 2 * c * s * 0.015, rtol=1e-6)
    assert (r.extra_cell_fields["fibre_stress_minus"] == 0).all()
    work = float(np.dot(r.system.fixed_values, r.reaction_values))
    voigt = np.array([0.0, 0.01, 0.0, 0.0, 0.03, 0.0])  # engineering shear
    C = law.stiffness(law.secant(fs[:, :1]), orthotropic=not coupling)[0]
    assert work == pytest.approx(voigt @ C @ voigt, rel=1e-6)
    other = law.stiffness(law.secant(fs[:, :1]), orthotropic=coupling)[0]
    assert abs(voigt @ other @ voigt - work) > 0.05 * work  # the terms matter here


def test_fibre_law_rejects_bad_parameters():
    with pytest.raises(fem.MaterialError, match="toe strain"):
        FibreLaw(toe_strain=0.0)
    with pytest.raises(fem.MaterialError, match="ground"):
        FibreLaw(ground=(0.8, 0.5))
    with pytest.raises(fem.SetError, match="no disc"):
        disc_fibres(hex_block((1, 1, 1)))


# ------------------------------------------------------------------ the L4-L5 segment


def _segment(force: float):
    m = segment_model("L4-L5", voxel_size=VOXEL, materials=BoneQuality(bmd=70), posterior=False)
    m = loadcases.loaded(m, "standing", scale=force / 500.0)
    m = loadcases.between_platens(m)
    return m


def _area(m, voxel: float = VOXEL) -> float:
    """The L4-L5 disc's cross-section (mm^2): its columns of voxels x the voxel area."""
    disc = np.concatenate([m.regions["L4-L5/annulus"], m.regions["L4-L5/nucleus"]])
    ijk = m.metadata["voxel_labels"]["ijk"][disc]
    return len({(i, j) for i, j, _ in ijk.tolist()}) * voxel ** 2


@lru_cache(maxsize=None)
def segment(force: float, fibres: bool = True) -> dict:
    """Disc pressure, its ratio to load / area, stiffness and caudal endplate deflection."""
    m = _segment(force)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*B-bar formulation.*")
        r = fem.solve_disc(m, solver="direct") if fibres else fem.solve(m, solver="direct")
    rows = metrics.level_metrics(r).set_index("level")
    p = float(rows.loc["L4", "disc_pressure_mpa"])
    return {"pressure": p, "ratio": p / (force / _area(m)),
            "stiffness": force / -float(r.plate_motion("load:standing")[2]),
            "bulge": float(rows.loc["L5", "endplate_bulge_superior_mm"]),
            "iterations": getattr(getattr(r, "fibres", None), "iterations", 0)}


def test_an_assembly_of_some_elements_adds_up_to_the_whole():
    """``assemble_stiffness(..., elements=)`` on the segment with its annulus orthotropic about
    the discs' axes (B-bar hex8): the annulus's and the other elements' assemblies sum to the
    whole one, and all elements given reproduce it exactly."""
    from fem import assembly
    from fem.fibres import _set, fibre_directions
    from fem.kernels.backend import get_backend

    be = get_backend("numpy")
    m = _segment(500.0).copy()
    law = FibreLaw()
    regions = disc_fibres(m)
    elements, _ = fibre_directions(m, regions, law)
    _set(m, regions, law, law.secant(np.full((2, len(elements)), 0.03)), elements)
    assert m.orthotropic_mask()[elements].all() and m.bbar_mask()[elements].any()
    pattern = assembly.build_pattern(m, np)
    _, whole = assembly.assemble_stiffness(m, be, pattern)
    others = np.setdiff1d(np.arange(m.n_elements), elements)
    _, a = assembly.assemble_stiffness(m, be, pattern, elements=elements)
    _, b = assembly.assemble_stiffness(m, be, pattern, elements=others[::-1])
    assert np.abs(a + b - whole).max() <= 1e-13 * np.abs(whole).max()
    assert np.abs(a).max() > 0 and np.abs(b).max() > 0
    _, every = assembly.assemble_stiffness(m, be, pattern, elements=np.arange(m.n_elements))
    np.testing.assert_array_equal(every, whole)


@pytest.mark.parametrize("coupling", [False, True])
def test_a_later_secant_system_is_the_first_plus_the_fibres_change(coupling):
    """``fem.fibres._SecantChanges``: a later secant iteration's system, built as the first
    constrained system plus the change of the fibre elements' blocks (those elements alone
    assembled, ``assemble_stiffness(..., elements=)``), is the reassembled and
    constrained one (the segment between platens: rigid plates' coupling and supports): its
    operator, right-hand side and reaction rows to 1e-12. (Except the operator's rows of the
    eliminated dofs, the supports' and the plates' coupled ones: an identity scaled by a
    norm of the matrix it was eliminated from, which keeps the first system's scale, as its
    right-hand side does.)"""
    from fem import assembly
    from fem import system as _system
    from fem.analysis import constrain
    from fem.fibres import _coupling, _SecantChanges, _set, fibre_directions
    from fem.kernels.backend import get_backend, scatter_add

    be = get_backend("numpy")
    m = _segment(500.0).copy()
    law = FibreLaw()
    regions = disc_fibres(m)
    elements, _ = fibre_directions(m, regions, law)
    sysm = _system.compile_conditions(m)
    assert sysm.plates and len(sysm.fixed_dofs)
    pattern = assembly.build_pattern(m, np)

    def data_at(eps, only=None):
        _set(m, regions, law, law.secant(eps), elements)
        _, data = assembly.assemble_stiffness(m, be, pattern, elements=only)
        if coupling:
            idx, val = _coupling(m, pattern, regions, law, law.secant(eps))
            scatter_add(data.reshape(-1), idx, val)
        return data

    eps0 = np.full((2, len(elements)), law.toe_strain)
    lin0 = constrain(m, sysm, assembly.to_matrix(pattern, data_at(eps0), be), be)
    changes = _SecantChanges(m, sysm, pattern, data_at(eps0, elements), lin0, be)
    rng = np.random.default_rng(3)
    eps = rng.uniform(-0.02, 0.06, (2, len(elements)))
    got = changes.system(data_at(eps, elements))
    want = constrain(m, sysm, assembly.to_matrix(pattern, data_at(eps), be), be)
    x = rng.standard_normal(want.n_eq)
    keep = changes.keep
    assert 0 < (~keep).sum() < 0.2 * len(keep)
    for a, b in ((got @ x, want.K @ x), (got.rhs, want.rhs), (got.K_rows @ x, want.K_rows @ x)):
        a, b = (a[keep], b[keep]) if len(a) == len(keep) else (a, b)
        assert np.abs(a - b).max() <= 1e-12 * np.abs(b).max()
    np.testing.assert_array_equal((got @ x)[~keep], (lin0.K @ x)[~keep])
    assert np.abs(want.K @ x - lin0.K @ x).max() > 1e-3 * np.abs(want.K @ x).max()  # it changed


def test_standing_nucleus_pressure_is_wilkes():
    """Wilke et al. 1999 (in vivo, n = 1, no SD): 0.5 MPa standing at L4-L5. The model at
    500 N: 0.55 MPa; asserted within 20 % (the measurement's own scatter is not published)."""
    ref = experiments.WILKE_1999
    p = segment(500.0)["pressure"]
    assert abs(p - ref.mean) < 0.2 * ref.mean, (p, ref.describe())


def test_nucleus_pressure_over_mean_stress_approaches_nachemsons():
    """Nachemson 1960 (in vitro, no SD): about 1.5 x load / area. The fibre disc: 1.30 (the
    isotropic 4.2 MPa annulus: 0.83). Asserted: above 1.2 and below 1.8, and well above the
    isotropic disc's, whose nucleus is not held by the annulus."""
    ref = experiments.NACHEMSON_1960
    ratio = segment(500.0)["ratio"]
    assert 0.8 * ref.mean <= ratio <= 1.2 * ref.mean, (ratio, ref.describe())
    assert ratio > 1.3 * segment(500.0, fibres=False)["ratio"]


def test_endplate_deflection_at_holmes_load_lies_within_two_sd():
    """Holmes et al. 1993 (in vitro, n = 6): the caudal endplate moved 0.14 +- 0.04 mm at
    1.6 kN. The model's L5 superior endplate: about 0.08 mm, below the mean, within 2 SD (not
    within 1)."""
    ref = experiments.HOLMES_1993
    bulge = segment(1600.0)["bulge"]
    assert ref.within(bulge, sds=2.0), (bulge, ref.describe())
    assert bulge > segment(1600.0, fibres=False)["bulge"]


@pytest.mark.xfail(strict=True, reason="the default fibre disc (drained, small strain) is about "
                   "9x softer than a measured lumbar motion segment: the parametric disc is tall "
                   "(14 mm; on the shape model's real 6.6 mm L4-L5 disc the same fibre disc is "
                   "2.4x too soft at 1 mm voxels), and in small strain the +-30 degree annulus "
                   "shortens by scissoring, which strains no fibre, so its 0.8 MPa ground carries "
                   "the load (about 200 N/mm undrained); large deformation and an undrained disc "
                   "reproduce it (test_undrained_segment_in_large_deformation_reproduces_the_"
                   "measured_disc; docs/validation.md, 'The disc on real anatomy')")
def test_segment_axial_stiffness_lies_within_one_sd():
    ref = experiments.SEGMENT_STIFFNESS
    assert ref.within(segment(500.0)["stiffness"])


def test_undrained_tissue_keeps_its_shear_modulus_and_takes_waters_bulk_modulus():
    """``fem.fibres.undrained``: the shear modulus stays, the bulk modulus becomes water's (or
    stays, where the drained one is larger); Iatridis et al. 1998's annulus drains over 5 mm in
    about 62 hours (L^2 / (H_A k)), so a test of seconds to minutes meets it undrained."""
    from fem.assembly import lame
    from fem.fibres import WATER_BULK_MODULUS, consolidation_time, undrained

    for E, nu in ((0.8, 0.45), (1.0, 0.499)):
        E_u, nu_u = undrained(E, nu)
        lam, mu = lame(E, nu)
        lam_u, mu_u = lame(E_u, nu_u)
        assert mu_u == pytest.approx(mu, rel=1e-12)
        assert lam_u + 2.0 * mu_u / 3.0 == pytest.approx(WATER_BULK_MODULUS, rel=1e-12)
    assert undrained(1e5, 0.3) == pytest.approx((1e5, 0.3), rel=1e-12)  # stiffer than water
    E_u, nu_u = undrained(np.array([0.8, 1.0]), np.array([0.45, 0.499]))
    assert nu_u.shape == (2,) and (nu_u > 0.4999).all()
    assert FibreLaw().undrained().ground == pytest.approx(undrained(*FibreLaw().ground))
    assert consolidation_time(5.0) / 3600.0 == pytest.approx(25e-6 / (0.56e6 * 0.2e-15) / 3600)
    assert consolidation_time(1.0) > 3600.0
    with pytest.raises(fem.MaterialError, match="drainage length"):
        consolidation_time(0.0)
    with pytest.raises(fem.MaterialError, match="bulk modulus"):
        undrained(0.8, 0.45, -1.0)


#: voxel size of the large-deformation segment replica (mm): at 5 mm its stiffness moves by a
#: third (docs/validation.md), at 3 mm it takes minutes
FINITE_VOXEL = 4.0
#: load factors of the ramp to 1.6 kN: the standing 500 N is a step's end
RAMP = (0.0625, 0.125, 0.1875, 0.25, 0.3125, 0.4375, 0.5625, 0.6875, 0.8125, 0.9375, 1.0)


def test_undrained_segment_in_large_deformation_reproduces_the_measured_disc():
    """The configuration a test-rate load meets (``kinematics="finite"``,
    ``drainage="undrained"``), ramped to Holmes et al. 1993's 1.6 kN between parallel platens:
    the segment stiffens with load, and the steepest slope of force over platen travel (the
    stiffness a testing machine reports, ``rigs.machine_stiffness``'s definition) lies within
    one SD of the measured 1 400 +- 480 N/mm (about 1 390 N/mm at 4 mm; 1 470 at 3 mm). At the
    standing 500 N the nucleus pressure is about 1.6 x load / area (Nachemson's about 1.5),
    and at 1.6 kN the caudal endplate moves within two SD of Holmes's 0.14 +- 0.04 mm (about
    0.09 mm). No parameter was set from these: the undrained bulk modulus is water's."""
    m = segment_model("L4-L5", voxel_size=FINITE_VOXEL, materials=BoneQuality(bmd=70),
                      posterior=False)
    area = _area(m, FINITE_VOXEL)
    m = loadcases.between_platens(loadcases.loaded(m, "standing", scale=1600.0 / 500.0))
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*B-bar formulation.*")
        # AMG on the stand-in with each tangent's disc block (the direct solver's answer to
        # 1e-7: the test below): 12.5 s here against the direct solver's 17.1
        r = fem.solve_disc(m, kinematics="finite", drainage="undrained", increments=RAMP,
                           solver="amg")
    steps = r.history.steps
    force = 1600.0 * np.array([0.0] + [s.load_factor for s in steps])
    travel = np.array([0.0] + [-float(s.result.plate_motion("load:standing")[2]) for s in steps])
    slope = np.diff(force) / np.diff(travel)
    assert (np.diff(slope) > 0).all(), slope  # stiffening at every step
    ref = experiments.SEGMENT_STIFFNESS
    assert ref.within(slope.max()), (slope.max(), ref.describe())
    standing = next(s for s in steps if abs(s.load_factor - 0.3125) < 1e-9)
    p = float(metrics.level_metrics(standing.result).set_index("level").loc[
        "L4", "disc_pressure_mpa"])
    ratio = p / (500.0 / area)
    nachemson = experiments.NACHEMSON_1960
    assert 0.8 * nachemson.mean <= ratio <= 1.2 * nachemson.mean, ratio
    bulge = float(metrics.level_metrics(r).set_index("level").loc[
        "L5", "endplate_bulge_superior_mm"])
    assert experiments.HOLMES_1993.within(bulge, sds=2.0), bulge
    with pytest.raises(fem.SolverError, match="drainage"):
        fem.solve_disc(m, drainage="wet")


def test_an_undrained_disc_in_large_deformation_solves_by_amg_as_by_the_direct_solver():
    """The AMG path of the increments on an undrained disc (``solver="amg"``: water's bulk
    modulus in the annulus ground and the nucleus, lambda / mu about 8 000): the disc is one
    nearly incompressible block, solved exactly with each tangent's own entries around the AMG
    of the first tangent's compressible stand-in (``IncompressibleBlocks.with_matrix``). Every
    increment's plate travel and nucleus pressure are the direct solver's to 1e-7, and no CG
    solve takes more than 40 iterations (measured 14-19 here, 12-17 at 4 mm; the plain AMG took
    up to 1 600, and the first tangent's blocks kept for every tangent up to 1 332 at 1.6 kN).
    Under the standing 500 N, not Holmes's 1.6 kN: the first increment is still cut back twice
    and five tangents are solved, in 7 s against 15 s (2026-12-07)."""
    m = segment_model("L4-L5", voxel_size=5.0, materials=BoneQuality(bmd=70), posterior=False)
    m = loadcases.between_platens(loadcases.loaded(m, "standing"))
    runs = {}
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*B-bar formulation.*")
        for solver in ("direct", "amg"):
            runs[solver] = fem.solve_disc(m, kinematics="finite", drainage="undrained",
                                          increments=(0.25, 0.5, 0.75, 1.0), solver=solver,
                                          rtol=1e-10)
    info = runs["amg"].history.info
    assert "1 nearly incompressible block" in info["preconditioner"], info["preconditioner"]
    assert 0 < max(info["cg_iterations"]) <= 40, info["cg_iterations"]
    for a, b in zip(runs["direct"].history.steps, runs["amg"].history.steps, strict=True):
        assert b.load_factor == a.load_factor
        wa, wb = (float(s.result.plate_motion("load:standing")[2]) for s in (a, b))
        assert wb == pytest.approx(wa, rel=1e-7)
        pa, pb = (float(metrics.level_metrics(s.result).set_index("level").loc[
            "L4", "disc_pressure_mpa"]) for s in (a, b))
        assert pb == pytest.approx(pa, rel=1e-7)


def test_large_deformation_stiffens_the_disc_and_raises_its_pressure():
    """``kinematics="finite"``: the same segment in large deformation (5 mm voxels, to keep
    it to seconds) shortens less under the standing load and pressurises its nucleus more:
    the Green strain stretches the fibres the bulge and the scissoring leave unstrained in
    small strain (docs/validation.md). Its stiffness rises with load (tangent of the last
    increment above the secant); a bad ``kinematics`` is refused by name."""
    m = segment_model("L4-L5", voxel_size=5.0, materials=BoneQuality(bmd=70), posterior=False)
    m = loadcases.loaded(m, "standing")
    m = loadcases.between_platens(m)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*B-bar formulation.*")
        small = fem.solve_disc(m, solver="direct")
        big = fem.solve_disc(m, kinematics="finite", increments=2, solver="direct")
    w = {k: -float(r.plate_motion("load:standing")[2]) for k, r in (("s", small), ("f", big))}
    assert w["f"] < 0.8 * w["s"]
    p = {k: float(metrics.level_metrics(r).set_index("level").loc["L4", "disc_pressure_mpa"])
         for k, r in (("s", small), ("f", big))}
    assert p["f"] > p["s"]
    steps = big.history.steps
    w1 = -float(steps[0].result.plate_motion("load:standing")[2])
    assert 250.0 / (w["f"] - w1) > 500.0 / w["f"]
    assert big.extra_cell_fields["fibre_strain_plus"].max() > 0
    with pytest.raises(fem.SolverError, match="kinematics"):
        fem.solve_disc(m, kinematics="large")


def test_a_pressurised_nucleus_reaches_its_pressure_before_the_load():
    """``nucleus_pressure=0.1`` (Wilke et al. 1999, L4-L5 lying): the swelling found brings the
    unloaded nucleus to 0.1 MPa within 2 %, lifts the plate, and the loaded disc then carries
    more nucleus pressure than the unswollen one (the pre-pressure adds to the load's)."""
    m = segment_model("L4-L5", voxel_size=5.0, materials=BoneQuality(bmd=70), posterior=False)
    m = loadcases.loaded(m, "standing")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*B-bar formulation.*")
        plain = fem.solve_disc(m, kinematics="finite", increments=2, solver="direct")
        pre = fem.solve_disc(m, kinematics="finite", increments=2, solver="direct",
                             nucleus_pressure=0.1)
    sw = pre.swelling
    assert sw.pressure["L4-L5/nucleus"] == pytest.approx(0.1, rel=0.02)
    assert sw.ratios["L4-L5/nucleus"] > 1.0
    from fem.finite_strain import region_pressure

    unloaded = region_pressure(sw.state, "L4-L5/nucleus")
    assert unloaded == pytest.approx(sw.pressure["L4-L5/nucleus"], rel=1e-9)
    assert sw.state.load_factor == 1.0 and abs(sw.state.state.f).max() == 0.0  # no load yet
    assert float(sw.state.plate_motion("load:standing")[2]) > 0.0  # the swelling lifts L4
    p = {k: float(metrics.level_metrics(r).set_index("level").loc["L4", "disc_pressure_mpa"])
         for k, r in (("plain", plain), ("pre", pre))}
    assert p["pre"] > p["plain"] + 0.05
    with pytest.raises(fem.SolverError, match="kinematics='finite'"):
        fem.solve_disc(m, nucleus_pressure=0.1)


def test_an_undrained_annulus_stiffens_the_disc_more_in_large_deformation():
    """The annulus's ground at nu 0.4999 instead of 0.45: in small strain the segment stiffens
    by about a fifth (it shortens by scissoring, which needs no volume change), in large
    deformation by half (a ground that keeps its volume must bulge, and the bulge stretches
    the fibres): docs/validation.md's mechanism, at 5 mm voxels."""
    m = segment_model("L4-L5", voxel_size=5.0, materials=BoneQuality(bmd=70), posterior=False)
    m = loadcases.loaded(m, "standing")
    m = loadcases.between_platens(m)
    k = {}
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*B-bar formulation.*")
        for nu in (0.45, 0.4999):
            law = FibreLaw(ground=(0.8, nu))
            for kin in ("small", "finite"):
                extra = {"increments": 2} if kin == "finite" else {}
                r = fem.solve_disc(m, law, kinematics=kin, solver="direct", **extra)
                k[nu, kin] = 500.0 / -float(r.plate_motion("load:standing")[2])
    small, finite = k[0.4999, "small"] / k[0.45, "small"], k[0.4999, "finite"] / k[0.45, "finite"]
    assert 1.05 < small < 1.35
    assert finite > 1.4 and finite > small + 0.2


def test_a_secant_that_does_not_converge_says_so_and_names_the_exact_stiffness():
    """An iteration that runs out of iterations names the out-of-balance force and the fibre
    strains' last step, and, on the orthotropic secant (which drops the two families'
    normal-shear coupling), ``coupling=True``; with the exact stiffness there is no such hint.
    ``coupling="auto"`` (the default) tries the exact stiffness after the orthotropic secant
    runs out, with a warning, and when that fails too says what both did. A bad ``coupling``
    is refused by name."""
    m = segment_model("L4-L5", voxel_size=5.0, materials=BoneQuality(bmd=70), posterior=False)
    m = loadcases.between_platens(loadcases.loaded(m, "standing"))
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*B-bar formulation.*")
        with pytest.raises(fem.ConvergenceError, match=r"strain step .*coupling=True") as exc:
            fem.solve_disc(m, max_iterations=1, coupling=False, solver="direct")
        with pytest.warns(UserWarning, match=r"\(orthotropic\) did not converge in 1 "
                          r"iterations.*solved again with coupling=True"), \
                pytest.raises(fem.ConvergenceError,
                              match=r"with coupling=True, after the orthotropic secant: fibre "
                                    r"secant iterations \(orthotropic\) did not converge"):
            fem.solve_disc(m, max_iterations=1, solver="direct")
        with pytest.raises(fem.ConvergenceError) as exact:
            fem.solve_disc(m, max_iterations=1, coupling=True, solver="direct")
        with pytest.raises(fem.SolverError, match="coupling"):
            fem.solve_disc(m, coupling="exact")
    assert "coupling=True" not in str(exact.value), str(exc.value)


@pytest.mark.skipif(not (ssm.data_folder() / "L4.ply").is_file(),
                    reason="lumbar shape model data not found (../shared/data/lumbar-ssm-mean)")
def test_a_stalled_orthotropic_secant_is_solved_again_exactly():
    """The mean L4-L5 of the shape model (3 mm voxels) between platens at Holmes's 1.6 kN, its
    annulus's fibres winding about the line between the two bodies' endplate centres (the axis
    ``disc_fibres`` took before it found the disc's own, 73 degrees off it in this lordotic
    disc): the annulus shears across its fibres, and the orthotropic secant meets equilibrium
    while fibres near zero strain keep flipping between tension and compression.
    ``coupling="auto"`` (the default) notices the stall, warns, and solves with the exact
    anisotropic stiffness, which converges: in equilibrium with the load, fibres in tension
    somewhere and slack elsewhere. About the disc's own axis the same secant converges."""
    m = ssm.ssm_segment_model("L4-L5", voxel_size=3.0, materials=BoneQuality(bmd=70))
    m = loadcases.between_platens(loadcases.loaded(m, "standing", scale=1600.0 / 500.0))
    up, lo = m.anatomy["L4"], m.anatomy["L5"]
    skew = FibreRegion("L4-L5/annulus", m.regions["L4-L5/annulus"],
                       (0.5 * (up.inferior_centre + lo.superior_centre),
                        up.inferior_centre - lo.superior_centre))
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*B-bar formulation.*")
        with pytest.warns(UserWarning, match="stalled.*coupling=True"):
            r = solve_fibres(m, [skew])
        warnings.simplefilter("error", UserWarning)  # no stall: no warning
        warnings.filterwarnings("ignore", message=".*B-bar formulation.*")
        own = fem.solve_disc(m)
    assert r.fibres.coupling and not own.fibres.coupling
    assert r.fibres.residuals[-1] < 1e-3
    assert abs(float(r.reaction_total()[2])) == pytest.approx(1600.0, rel=1e-3)
    strain = r.fibres.strain
    assert strain.max() > 0.02 and (strain <= 0).any()


def test_the_fibres_wind_about_the_disc_s_own_axis_the_bisector_of_its_rims():
    """The parametric L4-L5: L4's inferior rim is level, L5's superior rim rises to the front
    by L5's wedge (anterior minus posterior height over the depth), so the disc's mid-plane is
    tilted by half of that, about the lateral axis, towards the back. ``disc_axis`` finds it
    from the rims of the voxel disc within half a degree."""
    from fem.fibres import disc_axis
    from fem.meshes.vertebra import LEVELS

    d = LEVELS["L5"]
    half = 0.5 * np.degrees(np.arctan((d.height_anterior - d.height_posterior) / d.depth))
    for h in (3.0, 2.0):
        m = segment_model("L4-L5", voxel_size=h)
        point, axis = disc_axis(m, "L4", "L5")
        assert abs(axis[0]) < 1e-9 and axis[1] > 0 and axis[2] > 0, axis
        assert np.degrees(np.arctan2(axis[1], axis[2])) == pytest.approx(half, abs=0.5)
        assert abs(point[0]) < 1e-9
        assert m.anatomy["L5"].superior_centre[2] < point[2] < m.anatomy["L4"].inferior_centre[2]


def test_a_disc_walled_in_by_bone_falls_back_to_the_endplate_centres_with_a_warning():
    """A disc with no free side wall (here its outer ring of annulus elements handed to L4's
    cortex, so bone surrounds the rest) has no rims: ``disc_axis`` warns and takes the line
    between the endplate centres."""
    from fem.fibres import disc_axis
    from fem.topology import boundary_faces

    m = segment_model("L4-L5", voxel_size=5.0)
    outer, _ = boundary_faces(m)
    ring = np.intersect1d(m.regions["L4-L5/annulus"], outer)
    assert 0 < len(ring) < len(m.regions["L4-L5/annulus"])
    m.move_elements(ring, "L4/cortex")
    with pytest.warns(UserWarning, match="L4-L5: no free side wall"):
        point, axis = disc_axis(m, "L4", "L5")
    up, lo = m.anatomy["L4"], m.anatomy["L5"]
    assert np.allclose(point, 0.5 * (up.inferior_centre + lo.superior_centre))
    assert np.allclose(np.cross(axis, up.inferior_centre - lo.superior_centre), 0.0)


@pytest.mark.skipif(not (ssm.data_folder() / "L4.ply").is_file(),
                    reason="lumbar shape model data not found (../shared/data/lumbar-ssm-mean)")
def test_on_the_lordotic_shape_model_the_disc_axis_is_the_normal_between_its_endplates():
    """In the mean shape model the lower lumbar levels lean (L5 about 24 degrees, L4 14), so each
    disc's axis is tilted, by about the mean of the facing endplates' tilts: checked against the
    bisector of least-squares planes through the two endplate node sets (another set of nodes)
    within 3 degrees at every disc, and L4-L5 tilted by more than 15 degrees."""
    from fem.fibres import disc_axis

    m = ssm.ssm_segment_model("L2-L5", voxel_size=3.0)
    names = list(m.anatomy)
    for up, lo in zip(names, names[1:]):
        _, axis = disc_axis(m, up, lo)
        normals = []
        for key in (f"{up}/inferior", f"{lo}/superior"):
            P = m.points[m.node_sets[key]]
            n = np.linalg.svd(P - P.mean(axis=0))[2][2]
            normals.append(n * np.sign(n[2]))
        ref = normals[0] + normals[1]
        ref /= np.linalg.norm(ref)
        assert np.degrees(np.arccos(min(1.0, axis @ ref))) < 3.0, (up, lo, axis, ref)
        if up == "L4":
            assert np.degrees(np.arccos(axis[2])) > 15.0, axis
