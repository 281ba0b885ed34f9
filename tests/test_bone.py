"""Bone quality laws (fem.meshes.bone): values at hand-computed points, monotonicity, T-scores,
osteoporosis scaling and input validation."""

import numpy as np
import pytest

import fem
from fem.meshes import bone


@pytest.mark.parametrize("law, bmd, expected", [
    # 100 mg/cm^3 -> rho_ash 0.1 -> rho_app 0.1/0.6; 4730 * (1/6)^1.56
    ("morgan2003", 100.0, 4730.0 * (1.0 / 6.0) ** 1.56),
    # 150 mg/cm^3 -> rho_app 0.25 g/cm^3; 0.25^1.56 = exp(1.56 ln 0.25) = 0.115023
    ("morgan2003", 150.0, 4730.0 * 0.115023),
    # rho_ash = 0.2 g/cm^3: 1890 * 0.2^1.92 = 1890 * 0.045496
    ("keller1994", 200.0, 1890.0 * 0.045496),
    # rho_app = 0.3 g/cm^3: -80 + 2100 * 0.3 = 550
    ("kopperdahl1998", 180.0, 550.0),
    # rho_QCT = 0.1 g/cm^3: -34.7 + 323 = 288.3
    ("crawford2003", 100.0, 288.3),
])
def test_laws_at_hand_computed_points(law, bmd, expected):
    assert bone.trabecular_modulus(bmd, law) == pytest.approx(expected, rel=2e-4)


def test_conversion_rules_at_known_points():
    # Keyak 1994: 1.22 * 0.1 + 0.0523; Schileo 2008: (0.1 + 0.09) / 1.14
    assert bone.ash_density(100.0, "keyak1994") == pytest.approx(0.1743)
    assert bone.ash_density(100.0, "schileo2008") == pytest.approx(0.19 / 1.14)
    assert bone.apparent_density(120.0) == pytest.approx(0.2)
    for rule in bone.ASH_RULES:
        assert bone.qct_from_ash(bone.ash_density(137.0, rule), rule) == pytest.approx(137.0)


def test_morgan_default_agrees_with_vertebral_qct_law():
    """The default conversion makes Morgan 2003 agree with Crawford 2003 within 20 % over the
    clinical range, 21 % at most (the reason for the default, see the module docstring)."""
    b = np.linspace(60.0, 150.0, 19)
    m = bone.trabecular_modulus(b, "morgan2003")
    c = bone.trabecular_modulus(b, "crawford2003")
    assert np.max(np.abs(m / c - 1.0)) < 0.22


@pytest.mark.parametrize("law", sorted(bone.LAWS))
def test_laws_increase_with_density(law):
    b = np.linspace(20.0, 1700.0, 400)
    E = bone.trabecular_modulus(b, law)
    assert np.all(np.diff(E) >= 0) and E[-1] > E[0]
    assert np.all(E >= 1.0)


def test_linear_laws_are_floored():
    assert bone.trabecular_modulus(5.0, "kopperdahl1998", E_min=2.5) == 2.5


def test_transverse_moduli_ratios():
    e = bone.trabecular_modulus(110.0)
    t1, t2 = bone.transverse_moduli(110.0)
    assert t1 / e == pytest.approx(1987.0 / 4730.0)
    assert t2 / e == pytest.approx(1357.0 / 4730.0)


def test_tscore_round_trip():
    for t in (-4.0, -2.5, -1.0, 0.0, 1.5):
        assert bone.tscore_from_bmd(bone.bmd_from_tscore(t)) == pytest.approx(t, abs=1e-12)
    mean, sd = bone.YOUNG_ADULT_QCT
    assert bone.bmd_from_tscore(-2.0) == pytest.approx(mean - 2 * sd)
    assert bone.bmd_from_tscore(-1.0, reference=(160.0, 20.0)) == pytest.approx(140.0)


@pytest.mark.parametrize("bmd", [30.0, 60.0, 80.0])
def test_osteoporotic_cortex(bmd):
    mats = bone.BoneQuality(bmd=bmd).materials()
    assert mats["cortex"] == (8040.0, 0.3)
    assert mats["endplate"] == (8040.0, 0.3)
    assert mats["posterior"] == (2800.0, 0.25)


def test_scaling_between_thresholds():
    mats = bone.BoneQuality(bmd=100.0).materials()
    assert mats["cortex"][0] == pytest.approx(0.5 * (8040.0 + 12000.0))
    assert bone.BoneQuality(bmd=150.0).materials()["cortex"][0] == 12000.0
    assert bone.BoneQuality(t_score=0.0).materials()["cortex"][0] == 12000.0
    assert bone.BoneQuality(bmd=100.0).osteoporotic is False
    assert bone.BoneQuality(bmd=70.0).osteoporotic is True


def test_materials_table():
    q = bone.BoneQuality(t_score=-3.0, law="crawford2003")
    m = q.materials()
    assert set(m) == {"cortex", "trabecular", "endplate", "posterior", "annulus", "nucleus"}
    assert m["trabecular"][0] == pytest.approx(-34.7 + 3.230 * q.bmd_mg_cm3)
    assert m["nucleus"] == (1.0, 0.499) and m["annulus"] == (4.2, 0.45)


@pytest.mark.parametrize("kwargs, match", [
    (dict(bmd=0.0), "not plausible"),
    (dict(bmd=-5.0), "not plausible"),
    (dict(bmd=2000.0), "1750"),
    (dict(bmd=float("nan")), "not plausible"),
    (dict(t_score=-7.0), "T-score"),
    (dict(), "exactly one"),
    (dict(bmd=100.0, t_score=-1.0), "exactly one"),
    (dict(bmd=100.0, law="hooke"), "known laws: crawford2003, keller1994, kopperdahl1998, "
                                   "morgan2003"),
    (dict(bmd=100.0, rule="guess"), "known rules"),
    (dict(bmd=100.0, law="kopperdahl1998", anisotropic=True), "transverse moduli"),
])
def test_bad_input(kwargs, match):
    with pytest.raises(fem.MaterialError, match=match):
        bone.BoneQuality(**kwargs)


def test_bad_law_name_in_function():
    with pytest.raises(fem.MaterialError, match="known laws"):
        bone.trabecular_modulus(100.0, "carter1977")


def test_anisotropic_trabecular_constants():
    """Axial law along z, the transverse laws along x and y (stated assumption), Poisson's ratio
    0.2 for loading along the stiffer axis, G_ij = sqrt(E_i E_j) / 2.4."""
    q = bone.BoneQuality(bmd=110.0, anisotropic=True)
    c = q.materials()["trabecular"]
    Ex, Ey, Ez = c["E"]
    assert Ez == pytest.approx(bone.trabecular_modulus(110.0), rel=1e-14)
    assert (Ex / Ez, Ey / Ez) == pytest.approx((1987.0 / 4730.0, 1357.0 / 4730.0), rel=1e-12)
    nxy, nxz, nyz = c["nu"]
    assert (nxy, nxz * Ez / Ex, nyz * Ez / Ey) == pytest.approx((0.2, 0.2, 0.2), rel=1e-14)
    assert c["G"] == pytest.approx([np.sqrt(a * b) / 2.4 for a, b in ((Ex, Ey), (Ex, Ez), (Ey, Ez))],
                                   rel=1e-14)
    assert q.materials()["cortex"] == bone.BoneQuality(bmd=110.0).materials()["cortex"]


def test_anisotropic_segment_model_is_orthotropic_in_trabecular_only():
    from fem.meshes.vertebra import vertebra_model

    q = bone.BoneQuality(bmd=90.0, anisotropic=True)
    m = vertebra_model("L1", voxel_size=3.0, materials=q, posterior=False)
    trab = m.regions["L1/trabecular"]
    ortho = m.orthotropic_mask()
    assert len(trab) > 0 and np.array_equal(np.nonzero(ortho)[0], trab)
    c = q.materials()["trabecular"]
    assert np.allclose(m.ortho[trab], list(c["E"]) + list(c["nu"]) + list(c["G"]), rtol=1e-14)
    assert np.allclose(m.E[trab], c["E"][2], rtol=1e-14)
    assert fem.voxel.grid_of(m)[0] is None
