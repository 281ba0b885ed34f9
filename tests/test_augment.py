"""PVP and PKP procedures (fem.augment): volumes, reproducibility, leakage, restoration, materials."""

import re
import warnings

import numpy as np
import pytest

import fem
from fem import augment
from fem.anatomy import level_frame
from fem.errors import MeshError
from fem.meshes import loadcases, pathology, vertebra


@pytest.fixture(scope="module")
def intact():
    return vertebra.segment_model("L1-L3", voxel_size=2.0)


@pytest.fixture(scope="module")
def fractured(intact):
    return pathology.compress(intact, "L2", "wedge", grade=2)


def _record(model):
    return model.metadata["augmentations"][-1]


def _cement_volume(model, level="L2"):
    """Cement actually in the model, recomputed from regions and moduli (not from the record)."""
    vol = augment.element_volumes(model)
    solid = vol[model.regions.get(f"{level}/cement", [])].sum()
    leak = vol[model.regions.get(f"{level}/cement_leak", [])].sum()
    return solid, leak


@pytest.mark.parametrize("volume", [2.0, 4.0, 6.0])
@pytest.mark.parametrize("approach", ["unipedicular", "bipedicular"])
def test_pvp_places_the_requested_volume(fractured, volume, approach):
    out = augment.pvp(fractured, "L2", volume, approach=approach, seed=3)
    rec = _record(out)
    assert rec.volume_ml == pytest.approx(volume, rel=0.05)
    # independent recount: pores of the composite elements (porosity from the pre-fill moduli)
    el = out.regions["L2/cement_composite"]
    phi = augment.porosity(fractured, el)
    placed = (phi * augment.element_volumes(fractured)[el]).sum() + _cement_volume(out)[1]
    assert placed / augment.ML == pytest.approx(volume, rel=0.05)
    assert rec.procedure == "PVP" and rec.approach == approach
    assert len(rec.needles) == (2 if approach == "bipedicular" else 1)


@pytest.mark.parametrize("volume,balloon", [(4.0, None), (5.0, 4.0), (3.0, 2.0)])
def test_pkp_places_the_requested_volume(fractured, volume, balloon):
    out = augment.pkp(fractured, "L2", volume, balloon_ml=balloon, height_restoration=0.5)
    rec = _record(out)
    solid, _ = _cement_volume(out)
    assert solid / augment.ML == pytest.approx(balloon or volume, rel=0.05)
    assert rec.cavity_ml == pytest.approx(balloon or volume, rel=0.05)
    assert rec.volume_ml == pytest.approx(volume, rel=0.05)
    assert ("L2/cement_composite" in out.regions) == (balloon is not None)


def _body_volume(model, level):
    """The whole vertebral body's volume (mm^3), counted here from the regions: every part of
    the level but its posterior elements."""
    vol = augment.element_volumes(model)
    parts = [r for r in model.regions
             if r.startswith(f"{level}/") and r != f"{level}/posterior"]
    return float(sum(vol[model.regions[r]].sum() for r in parts))


def test_fill_fraction_is_cement_over_the_whole_body_at_any_voxel_size():
    """The clinical fill fraction: cement in the body over the volume of the whole vertebral body
    (cortex, bony endplates, trabecular bone; no posterior elements). The same 3 mL in an L1 of
    2 and 1 mm voxels fills the same share of it (measured: 0.1410 and 0.1409); over the voxel
    trabecular core it read 0.218 and 0.174, because a one-voxel cortex eats a third of the body
    at 2 mm and a fifth at 1 mm."""
    fills = {}
    for h in (2.0, 1.0):
        m = vertebra.segment_model("L1", voxel_size=h)
        out = augment.pvp(m, "L1", 3.0)
        rec = _record(out)
        vol = augment.element_volumes(m)
        el = out.regions["L1/cement_composite"]
        cement = float((augment.porosity(m, el) * vol[el]).sum())  # the pores it filled
        assert rec.leak_ml == 0.0 and cement / augment.ML == pytest.approx(rec.volume_ml,
                                                                           rel=1e-9)
        body = sum(float(vol[m.regions[f"L1/{p}"]].sum())
                   for p in ("cortex", "endplate_superior", "endplate_inferior", "trabecular"))
        assert body == pytest.approx(_body_volume(out, "L1"), rel=1e-12)  # same body after
        assert rec.fill_fraction == pytest.approx(cement / body, rel=1e-9)
        assert rec.fill_fraction == pytest.approx(augment.ML * rec.volume_ml
                                                  / augment.body_volume(m, "L1"), rel=1e-9)
        fills[h] = rec.fill_fraction
    assert fills[1.0] == pytest.approx(fills[2.0], rel=0.10)
    assert 0.1 < fills[2.0] < 0.2  # 3 mL of a body of about 21 mL


def test_pkp_fill_fraction_is_over_the_restored_body(fractured):
    """PKP's fill is taken of the body the cement goes into: the height-restored one."""
    out = augment.pkp(fractured, "L2", 4.0, height_restoration=0.5)
    rec = _record(out)
    solid, leak = _cement_volume(out)
    assert leak == 0.0 and "L2/cement_composite" not in out.regions
    restored = _body_volume(out, "L2")
    assert restored > _body_volume(fractured, "L2")
    assert rec.fill_fraction == pytest.approx(solid / restored, rel=1e-9)


def test_fill_is_reproducible_with_a_seed(fractured):
    a = augment.pvp(fractured, "L2", 3.0, seed=7)
    b = augment.pvp(fractured, "L2", 3.0, seed=7)
    c = augment.pvp(fractured, "L2", 3.0, seed=8)
    ra, rb, rc = (m.regions["L2/cement_composite"] for m in (a, b, c))
    assert np.array_equal(ra, rb)
    assert np.array_equal(a.E, b.E)
    # another seed moves part of the cloud, not all of it
    overlap = len(np.intersect1d(ra, rc)) / len(ra)
    assert 0.3 < overlap < 0.999


def test_cement_stays_inside_the_fillable_bone(fractured):
    out = augment.pvp(fractured, "L2", 6.0, seed=1)
    fill = augment._regions_of(fractured, "L2", augment.FILLABLE)
    assert np.isin(out.regions["L2/cement_composite"], fill).all()
    # the shell and the other levels keep their moduli
    shell = augment._regions_of(fractured, "L2", ("cortex", "damaged_shell", "endplate_inferior"))
    other = np.setdiff1d(np.arange(fractured.n_elements), fill)
    assert np.array_equal(out.E[other], fractured.E[other])
    assert len(shell) and np.array_equal(out.E[shell], fractured.E[shell])


def test_leak_detected_through_a_posterior_wall_breach_and_not_otherwise(intact, fractured):
    for model in (intact, fractured):
        for approach in ("unipedicular", "bipedicular"):
            rec = _record(augment.pvp(model, "L2", 6.0, approach=approach))
            assert rec.leak_ml == 0.0 and rec.leaks == ()
    burst = pathology.compress(intact, "L2", "wedge", grade=2, burst=True)
    out = augment.pvp(burst, "L2", 6.0, tip_depth=0.15)
    rec = _record(out)
    assert rec.leak_ml > 0 and rec.leaks[0].site == "posterior wall"
    breach = burst.regions["L2/posterior_wall_breach"]
    assert np.isin(out.regions["L2/cement_leak"], breach).all()
    # the leak is where the wall is: posterior of the body's centre, between the pedicles
    f = level_frame(burst, "L2")
    centre, e_ant, e_lat = f.centre, f.anterior, f.lateral
    rel = np.asarray(rec.leaks[0].centroid) - centre
    assert rel @ e_ant < -0.3 * burst.anatomy["L2"].depth
    assert abs(rel @ e_lat) < 0.25 * burst.anatomy["L2"].width
    assert _cement_volume(out)[1] / augment.ML == pytest.approx(rec.leak_ml, rel=1e-9)


def _heights(model, level="L2"):
    """Anterior and posterior body height from the endplate node sets (builder axes)."""
    p = model.points
    d = model.anatomy[level].depth
    out = []
    for band in (lambda y: y < y.min() + 0.15 * d, lambda y: y > y.max() - 0.15 * d):
        zs = []
        for s in ("superior", "inferior"):
            q = p[model.node_sets[f"{level}/{s}"]]
            zs.append(q[band(q[:, 1]), 2].mean())
        out.append(zs[0] - zs[1])
    return out


def test_pkp_restores_more_anterior_height_than_pvp(intact, fractured):
    h0, _ = _heights(intact)
    hf, _ = _heights(fractured)
    pvp = augment.pvp(fractured, "L2", 4.0)
    pkp = augment.pkp(fractured, "L2", 4.0, height_restoration=0.5)
    full = augment.pkp(fractured, "L2", 4.0, height_restoration=1.0)
    assert _heights(pvp)[0] == pytest.approx(hf, abs=1e-9)
    assert _heights(pkp)[0] == pytest.approx(hf + 0.5 * (h0 - hf), rel=1e-6)
    assert _heights(full)[0] == pytest.approx(h0, rel=1e-6)
    assert _record(pkp).height_restoration == 0.5
    # the collapse left for a later procedure is the unrestored half: half the field on the
    # fractured level, and on the level its kyphosis tipped, the rigid motion of half the angle
    left, col = pkp.metadata["collapse"]["L2"], fractured.metadata["collapse"]["L2"]
    l2 = pkp.element_nodes(np.concatenate([pkp.regions[r] for r in pkp.regions
                                           if r.startswith("L2/")]))
    np.testing.assert_allclose(left[l2], 0.5 * col[l2], atol=1e-12)
    np.testing.assert_allclose(pkp.points - left, intact.points, atol=1e-9)
    assert pkp.metadata["kyphosis"]["L2"]["angle_deg"] == pytest.approx(
        0.5 * fractured.metadata["kyphosis"]["L2"]["angle_deg"], rel=0.05)


def test_compacted_rim_conserves_bone_mass(fractured):
    out = augment.pkp(fractured, "L2", 4.0, height_restoration=0.0)
    vol = augment.element_volumes(out)
    cav, rim = out.regions["L2/cement"], out.regions["L2/compacted"]

    def mass(model, el):
        return ((1 - augment.porosity(model, el)) * augment.TISSUE_DENSITY * vol[el]).sum()

    assert mass(out, rim) == pytest.approx(mass(fractured, rim) + mass(fractured, cav), rel=1e-9)
    assert (out.E[rim] > fractured.E[rim]).all()
    assert np.allclose(out.E[cav], augment.CEMENTS["pmma"].E)


def test_composite_modulus_rule():
    cem = augment.Cement("test", 2000.0, 0.4)
    E, nu = augment.composite_modulus(np.array([50.0, 50.0]), np.array([0.9, 0.5]), cem)
    assert E == pytest.approx([50 + 2000 * 0.81, 50 + 2000 * 0.25])
    assert nu == pytest.approx([0.9 * 0.4 + 0.1 * 0.2, 0.5 * 0.4 + 0.5 * 0.2])


def test_injection_pressure_poiseuille_and_pkp_below_pvp(fractured):
    cem = augment.Cement("c", 2000.0, 0.4, viscosity=50.0)
    p = augment.injection_pressure(cem, flow_ml_min=6.0, cannula_diameter_mm=2.0,
                                   cannula_length_mm=100.0)
    Q = 6e-6 / 60
    assert p == pytest.approx(8 * 50.0 * 0.1 * Q / (np.pi * 1e-3 ** 4) * 1e-6, rel=1e-12)
    pv = _record(augment.pvp(fractured, "L2", 4.0)).injection_pressure_mpa
    pk = _record(augment.pkp(fractured, "L2", 4.0)).injection_pressure_mpa
    assert 0 < pk < pv


def test_needle_tips_lie_in_the_body_at_the_requested_depth(fractured):
    fill = augment._regions_of(fractured, "L2", augment.FILLABLE)
    f = level_frame(fractured, "L2")
    centre, e_ant, e_lat = f.centre, f.anterior, f.lateral
    a = (augment._centroids(fractured, fill) - centre) @ e_ant
    for depth in (0.3, 0.75):
        for approach in ("unipedicular", "bipedicular"):
            for nd in augment.needles(fractured, "L2", approach, tip_depth=depth):
                t = (np.asarray(nd.tip) - centre) @ e_ant
                assert (t - a.min()) / (a.max() - a.min()) == pytest.approx(depth, abs=1e-9)
                if approach == "unipedicular":
                    assert abs((np.asarray(nd.tip) - centre) @ e_lat) < 1e-9


def _l2_stiffness(model):
    m = model.copy()
    m = loadcases.loaded(m, "standing")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = fem.solve(m, rtol=1e-8)
    u = r.displacement[:, 2]
    z = []
    for s in ("superior", "inferior"):
        n = m.node_sets[f"L2/{s}"]
        A = np.c_[np.ones(len(n)), m.points[n, :2]]
        z.append(np.linalg.lstsq(A, u[n], rcond=None)[0][0])
    return 500.0 / (z[1] - z[0])


@pytest.mark.slow
def test_stiffness_rises_with_cement_volume_and_modulus():
    m = pathology.compress(vertebra.segment_model("L2", voxel_size=2.0), "L2", "wedge", grade=2)
    k = [_l2_stiffness(augment.pvp(m, "L2", v)) for v in (2.0, 4.0, 6.0)]
    k0 = _l2_stiffness(m)
    assert k0 < k[0] < k[1] < k[2]
    soft = _l2_stiffness(augment.pvp(m, "L2", 4.0, cement="pmma_low_modulus"))
    assert k0 < soft < k[1]


def test_cements_and_bad_input(fractured):
    assert set(augment.CEMENTS) >= {"pmma", "pmma_low_modulus", "calcium_phosphate"}
    user = augment.get_cement({"name": "mine", "E": 1500.0, "nu": 0.35})
    out = augment.pvp(fractured, "L2", 1.0, cement=user)
    assert _record(out).cement.E == 1500.0
    with pytest.raises(fem.MaterialError, match="unknown cement 'glue'"):
        augment.pvp(fractured, "L2", 1.0, cement="glue")
    with pytest.raises(fem.MaterialError, match="E must be > 0"):
        augment.get_cement({"E": -1.0, "nu": 0.3})
    with pytest.raises(fem.ModelError, match="volume_ml must be > 0"):
        augment.pvp(fractured, "L2", -2.0)
    with pytest.raises(fem.ModelError, match="level 'L9' is not in this model"):
        augment.pvp(fractured, "L9", 2.0)
    with pytest.raises(fem.ModelError, match="approach must be one of"):
        augment.pvp(fractured, "L2", 2.0, approach="transoral")
    with pytest.raises(fem.ModelError, match="can take only"):
        augment.pvp(fractured, "L2", 60.0)
    with pytest.raises(fem.ModelError, match="no recorded fracture"):
        augment.pkp(vertebra.segment_model("L2", voxel_size=2.0), "L2", 3.0)
    with pytest.raises(fem.ModelError, match="volume_ml >= balloon_ml"):
        augment.pkp(fractured, "L2", 3.0, balloon_ml=4.0)


@pytest.mark.ccx
@pytest.mark.parametrize("procedure", ["pvp", "pkp"])
def test_augmented_deck_agrees_with_calculix(procedure, tmp_path, ccx):
    """Issue 4, deliverable 9: an augmented model exports a deck CalculiX solves to our answer."""
    from ccx_compare import agree_with_ccx

    m = pathology.compress(vertebra.segment_model("L2", voxel_size=2.5, posterior=False), "L2",
                           "wedge", grade=2, burst=True)
    if procedure == "pvp":
        m = augment.pvp(m, "L2", 4.0, approach="unipedicular", tip_depth=0.1)
        assert "L2/cement_leak" in m.regions
    else:
        m = augment.pkp(m, "L2", 4.0, balloon_ml=3.0, height_restoration=0.5)
        assert {"L2/cement", "L2/compacted", "L2/cement_composite"} <= set(m.regions)
    m.fix("bottom").add(fem.Pressure("top", 1.0))
    agree_with_ccx(m, tmp_path / f"{procedure}.inp")


def test_cement_entering_a_fracture_cleft_is_reported(intact):
    cleft = pathology.compress(intact, "L2", "wedge", grade=2, cleft=True)
    gap = cleft.regions["L2/cleft"]
    assert len(gap) > 5 and np.allclose(cleft.E[gap], pathology.CLEFT_MATERIAL[0])
    out = augment.pvp(cleft, "L2", 4.0)
    rec = _record(out)
    sites = {lk.site for lk in rec.leaks}
    assert sites == {"fracture cleft"}
    vol = augment.element_volumes(cleft)
    filled = np.intersect1d(out.regions["L2/cement"], gap)
    assert rec.leak_ml == pytest.approx(vol[filled].sum() / augment.ML, rel=1e-9)
    # the cleft is the path of least resistance: it fills completely before much else
    assert len(filled) == len(gap)
    assert rec.volume_ml == pytest.approx(4.0, rel=0.05)


@pytest.mark.parametrize("law", ["morgan2003", "keller1994", "kopperdahl1998", "crawford2003"])
def test_porosity_inverts_every_density_law_to_the_builders_density(law):
    """Whatever law made the trabecular moduli (apparent, ash or QCT density), inverting it gives
    back the bone the builder made: the apparent density of its BMD."""
    from fem.meshes.bone import BoneQuality, apparent_density
    from fem.meshes.vertebra import segment_model

    m = segment_model("L1-L2", voxel_size=4.0, materials=BoneQuality(bmd=70.0, law=law))
    el = m.regions["L1/trabecular"]
    expect = 1.0 - float(apparent_density(70.0)) / augment.TISSUE_DENSITY
    assert np.allclose(augment.porosity(m, el, law=law), expect, rtol=1e-9)


@pytest.mark.parametrize("site,position,tip,where", [
    ("basivertebral", 0.5, 0.2, "basivertebral foramen"),
    ("superior", 0.5, 0.6, "endplate into L1-L2"),
])
def test_cement_leaves_through_an_open_shell_and_only_there(intact, fractured, site, position, tip,
                                                           where):
    """A basivertebral foramen or an endplate fracture line is a way out: the same injection
    leaks through it when it is open and stays in the body when it is not. The endplate's case
    on a fracture whose crushed band is not compacted (``conserve_mass=False``): the default
    band, densified under the endplate, is less porous, and this 8 mL from a tip at 0.6 of the
    depth no longer reaches the line through it (2026-12-06). (The tip was at 0.75 until the
    needles followed the wedge's collapsed bone, 2026-12-07: they now aim lower in front, and 8
    mL from 0.75 stays under the line.)"""
    if site == "superior":
        fractured = pathology.compress(intact, "L2", "wedge", grade=2, conserve_mass=False)
    closed = _record(augment.pvp(fractured, "L2", 8.0, tip_depth=tip))
    assert closed.leak_ml == 0.0
    opened = pathology.open_breach(fractured, "L2", site, 5.0, position=position)
    region = "L2/basivertebral_foramen" if site == "basivertebral" else "L2/endplate_breach"
    hole = opened.regions[region]
    assert 1 <= len(hole) and np.allclose(opened.E[hole], pathology.CLEFT_MATERIAL[0])
    out = augment.pvp(opened, "L2", 8.0, tip_depth=tip)
    rec = _record(out)
    assert rec.leak_ml > 0 and {lk.site for lk in rec.leaks} == {where}
    assert np.isin(out.regions["L2/cement_leak"], hole).all()
    f = level_frame(opened, "L2")
    rel = opened.element_centres(hole) - f.centre
    body = opened.element_centres(fractured.regions["L2/trabecular"]) - f.centre
    if site == "basivertebral":  # in the posterior wall, on the midline
        assert (rel @ f.anterior < (body @ f.anterior).min()).all()
        assert (np.abs(rel @ f.lateral) <= 2.5 + 1e-9).all()
    else:  # in the superior endplate, above the core, within the radius of the midline point
        assert (rel @ f.axial > (body @ f.axial).max()).all()
        assert (np.abs(rel @ f.lateral) <= 2.5 + 1e-9).all()


@pytest.mark.parametrize("kw,fault", [({"site": "anterior"}, "site"),
                                      ({"diameter_mm": 0.0}, "diameter"),
                                      ({"position": 1.5}, "position")])
def test_open_breach_refuses_bad_input(fractured, kw, fault):
    args = {"site": "basivertebral", "diameter_mm": 4.0, **kw}
    pos = args.pop("position", 0.5)
    with pytest.raises(fem.ParameterError, match=fault):
        pathology.open_breach(fractured, "L2", args["site"], args["diameter_mm"], position=pos)


def test_cement_front_is_as_tall_as_the_permeability_anisotropy_says():
    """Darcy flow from a source in bone sqrt(a) times more permeable along the axis than across
    it fills an ellipsoid sqrt(a) times taller than wide (in coordinates stretched by sqrt(a)
    across the axis the medium is isotropic). A uniform L2 body at 1 mm, one needle's tip at the
    body's middle, no heterogeneity: the cloud's axial spread over its transverse spread, against
    the isotropic front's, is sqrt(a) within 6 %, for Nauman et al.'s 2.05 and for 4."""
    m = vertebra.vertebra_model("L2", voxel_size=1.0, posterior=False)
    f = level_frame(m, "L2")
    fill = augment._regions_of(m, "L2", augment.FILLABLE)
    ax_fill = (augment._centroids(m, fill) - f.centre) @ f.axial
    middle = 0.5 * (ax_fill.min() + ax_fill.max())  # the body's mid-height, off the centre
    tip = augment.needles(m, "L2", "unipedicular", tip_depth=0.5)[0].tip
    shift = middle - (np.asarray(tip) - f.centre) @ f.axial

    def shape(a, volume):
        out = augment.pvp(m, "L2", volume, approach="unipedicular", heterogeneity=0.0,
                          tip_depth=0.5, tip_offset=(0.0, 0.0, shift), permeability_anisotropy=a)
        c = augment._centroids(out, out.regions["L2/cement_composite"]) - f.centre
        return (c @ f.axial).std() / np.sqrt((c @ f.lateral).std() * (c @ f.anterior).std())

    assert augment.PERMEABILITY_ANISOTROPY == 2.05
    for volume in (0.3, 0.6):
        iso = shape(1.0, volume)
        assert iso == pytest.approx(1.0, abs=0.06)  # the isotropic front is as tall as wide
        for a in (2.05, 4.0):
            assert shape(a, volume) / iso == pytest.approx(np.sqrt(a), rel=0.06), (a, volume)
    # PKP's cement beyond the balloon interdigitates by the same front: taller with a > 1
    fr = pathology.compress(m, "L2", "wedge", grade=2)
    spread = {}
    for a in (1.0, 4.0):
        out = augment.pkp(fr, "L2", 4.0, balloon_ml=2.0, permeability_anisotropy=a)
        c = augment._centroids(out, out.regions["L2/cement_composite"]) - f.centre
        spread[a] = (c @ f.axial).std() / np.sqrt((c @ f.lateral).std() * (c @ f.anterior).std())
        assert _record(out).volume_ml == pytest.approx(4.0, rel=0.05)
    assert spread[4.0] > 1.1 * spread[1.0]  # 0.66 against 0.57: the shell around the cavity
    with pytest.raises(fem.ParameterError, match="permeability_anisotropy"):
        augment.pvp(m, "L2", 1.0, permeability_anisotropy=0.0)
    with pytest.raises(fem.ParameterError, match="permeability_anisotropy"):
        augment.pkp(m, "L2", 1.0, permeability_anisotropy=float("nan"))


def test_crushed_bone_takes_cement_by_its_compacted_or_its_original_permeability():
    """``crushed_permeability``: a crush that keeps the bone's mass (the Wegrzyn replica's 25 %
    crush of L3, 3 mm) makes its band denser, so Kozeny-Carman on its porosity makes it less
    permeable ("compacted", the default); "original" takes the porosity the bone had before,
    which ``porosity(..., before_compaction=True)`` gives back exactly: the intact model's. The
    band's capacity (porosity x volume) stays the compacted one either way, so the same volume
    goes in, and with the crushed bands as permeable as the bone around them the cloud reaches
    the endplates sooner (the Molloy replica, docs/validation.md)."""
    from fem.metrics import cement_endplate_contact

    m = vertebra.vertebra_model("L3", voxel_size=3.0, posterior=False)
    c = pathology.compress(m, "L3", "crush", height_loss=0.25)
    fill = augment._regions_of(c, "L3", augment.FILLABLE)
    band = np.isin(fill, c.regions["L3/damaged"])
    assert band.any()
    now = augment.porosity(c, fill)
    before = augment.porosity(c, fill, before_compaction=True)
    np.testing.assert_allclose(before, augment.porosity(m, fill), rtol=1e-12)
    assert (now[band] < before[band] - 0.01).all()  # the band was compacted
    np.testing.assert_allclose(now[~band], before[~band], rtol=1e-12)  # the rest was not
    k_ratio = augment.permeability(before[band]) / augment.permeability(now[band])
    assert k_ratio.min() > 2.0  # Kozeny-Carman: a third of the permeability at 1.6 x density
    touch = {}
    for how in augment.CRUSHED_PERMEABILITIES:
        out = augment.pvp(c, "L3", 4.0, crushed_permeability=how)
        assert _record(out).volume_ml == pytest.approx(4.0, rel=0.05)
        t = cement_endplate_contact(out, "L3")
        touch[how] = t["superior"] + t["inferior"]
    assert touch["original"] > touch["compacted"] + 0.05
    with pytest.raises(fem.ParameterError, match="crushed_permeability"):
        augment.pvp(c, "L3", 1.0, crushed_permeability="open")


def test_moving_elements_into_a_region_gives_them_its_new_material_only():
    """``Model.move_elements(..., E=, nu=)``, what every procedure does to the bone it fills:
    the moved elements leave their regions and take the given material; the region's elements
    already there, and every other element, keep theirs; E without nu is refused."""
    from fem.errors import MaterialError

    m = vertebra.segment_model("L1", voxel_size=4.0)
    core = m.regions["L1/trabecular"]
    first, second = core[:5], core[5:9]
    before = m.E.copy(), m.nu.copy()
    m.move_elements(first, "L1/cement", E=3000.0, nu=0.3)
    m.move_elements(second, "L1/cement", E=np.arange(4) + 100.0, nu=np.full(4, 0.25))
    assert set(m.regions["L1/cement"]) == set(first) | set(second)
    assert not np.isin(m.regions["L1/trabecular"], m.regions["L1/cement"]).any()
    assert np.all(m.E[first] == 3000.0) and np.all(m.nu[first] == 0.3)
    assert np.array_equal(m.E[second], np.arange(4) + 100.0) and np.all(m.nu[second] == 0.25)
    rest = np.setdiff1d(np.arange(m.n_elements), np.r_[first, second])
    assert np.array_equal(m.E[rest], before[0][rest]) and np.array_equal(m.nu[rest],
                                                                           before[1][rest])
    with pytest.raises(MaterialError, match="L1/cement.*both E and nu"):
        m.move_elements(core[9:10], "L1/cement", E=10.0)


def test_a_balloon_too_large_for_the_level_is_refused_with_the_room_there_is(fractured):
    """A balloon larger than the level's fillable trabecular bone: the error names the level,
    the room there is at this mesh and what to change; a balloon just inside that room is
    made."""
    with pytest.raises(MeshError, match=r"L2 cannot hold a 14 mL balloon cavity: .* holds "
                       r"(\d+\.\d\d) mL .*balloon_ml") as exc:
        augment.pkp(fractured, "L2", 14.0, height_restoration=0.0)
    room = float(re.search(r"holds (\d+\.\d\d) mL", str(exc.value)).group(1))
    assert 4.0 < room < 14.0
    out = augment.pkp(fractured, "L2", 0.9 * room, height_restoration=0.0)
    solid, leak = _cement_volume(out)
    assert (solid + leak) / 1000.0 == pytest.approx(0.9 * room, rel=0.05)
