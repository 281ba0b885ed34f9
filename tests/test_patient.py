"""Patient segments from the real CT (issue 20, deliverable 2): the L1-L3 of the shared clinical
scan and its TotalSegmentator masks, built as the other segment builders build theirs, so that
fractures, PVP, PKP, load cases and metrics run on it; the trabecular moduli follow the
calibrated density of the voxels they sit on. Skips visibly where the shared data are absent."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import fem
from fem import augment, metrics
from fem.meshes import ct, loadcases, pathology
from fem.meshes.bone import trabecular_modulus
from fem.meshes.patient import patient_segment_model
from fem.meshes.segmentation import Segmentation, read_segmentation

pytest.importorskip("nibabel")
DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "ct-abdomen-totalsegmentator"
pytestmark = pytest.mark.skipif(not (DATA / "ct.nii.gz").is_file(),
                                reason=f"the shared CT data are absent ({DATA})")
#: an assumed calibration for the tests (the scan has no phantom): the typical K2HPO4 line of
#: fem.meshes.ct.PHANTOM_HU, HU = 10 + 1.25 rho
CAL = ct.Calibration(1.0 / 1.25, -10.0 / 1.25, source="assumed (PHANTOM_HU)")
LEVELS = ["L1", "L2", "L3"]
#: the data's README: mean HU of each level's trabecular core (mask eroded by 2 voxels)
README_CORE_HU = {"L1": 109.0, "L2": 113.0, "L3": 111.0}


@pytest.fixture(scope="module")
def scan():
    return ct.read_nifti(DATA / "ct.nii.gz"), read_segmentation(DATA / "masks")


@pytest.fixture(scope="module")
def patient(scan):
    image, seg = scan
    return patient_segment_model(image, seg, CAL, levels="L1-L3", voxel_size=3.0)


def test_the_clinical_scan_does_not_resolve_the_cortex_so_the_default_is_used(patient):
    rec = patient.metadata["ct"]["cortex"]
    assert rec["source"] == "default" and rec["thickness_mm"] == 0.5
    assert all(not r["resolved"] and r["spacing_mm"] == 3.0 for r in rec["levels"].values())


def test_the_patient_s_disc_axes_are_the_normals_of_their_discs(patient):
    """The fibres of a patient's discs wind about each disc's own axis (``fem.fibres.disc_axis``,
    from its rims): within 3 degrees of the disc's thinnest direction (the principal axis of
    least spread of its volume), where the line between the endplate centres (each on its own
    body's vertical) was 44-67 degrees off in this lordotic scan."""
    from fem.fibres import disc_axis

    vol = augment.element_volumes(patient)
    for up, lo in zip(LEVELS, LEVELS[1:]):
        _, axis = disc_axis(patient, up, lo)
        el = np.concatenate([patient.regions[f"{up}-{lo}/{p}"] for p in ("annulus", "nucleus")])
        c, w = patient.element_centres(el), vol[el]
        mu = (c * w[:, None]).sum(axis=0) / w.sum()
        thin = np.linalg.eigh(((c - mu).T * w) @ (c - mu))[1][:, 0]
        assert np.degrees(np.arccos(min(1.0, abs(axis @ thin)))) < 3.0, (up, lo, axis, thin)
        e = patient.anatomy[up].inferior_centre - patient.anatomy[lo].superior_centre
        assert np.degrees(np.arccos(abs(axis @ e) / np.linalg.norm(e))) > 30.0


def test_the_patient_segment_has_every_part_and_its_anatomy(patient):
    m = patient
    assert m.anatomy.levels == LEVELS == m.metadata["levels"]
    for n in LEVELS:
        a = m.anatomy[n]
        assert set(a.parts) == {"cortex", "trabecular", "endplate_superior", "endplate_inferior",
                                "posterior"}
        # lumbar body sizes (mm): widths 40-60, depths 30-50, heights 22-35
        assert 40 < a.width < 60 and 30 < a.depth < 50 and 22 < a.height < 35, (n, a)
        f = a.frame()
        assert f.axial[2] > 0.95 and f.anterior[1] < -0.95  # z cranial, -y anterior (LPS)
        for side, s in (("left", 1.0), ("right", -1.0)):
            entry, d = a.pedicle_axes[side]
            assert s * (entry - a.centre) @ f.lateral > 5.0  # the pedicle on its own side
            assert d @ f.anterior > 0.7 and -s * d @ f.lateral > 0.0  # into the body, medially
    for up, lo in zip(LEVELS[:-1], LEVELS[1:]):
        disc = f"{up}-{lo}"
        conn = m.blocks[0].conn
        nodes = np.unique(conn[np.concatenate([m.regions[f"{disc}/annulus"],
                                               m.regions[f"{disc}/nucleus"]])])
        for level, side in ((up, "inferior"), (lo, "superior")):
            shared = np.intersect1d(nodes, m.node_sets[f"{level}/{side}"])
            assert len(shared) > 0.5 * len(m.node_sets[f"{level}/{side}"]), (disc, level)
    # the vertebrae are those of the scan: cranial to caudal, about one body height apart
    z = [m.anatomy[n].centre[2] for n in LEVELS]
    assert 25 < z[0] - z[1] < 45 and 25 < z[1] - z[2] < 45


def test_trabecular_moduli_follow_the_density_of_the_voxels_they_sit_on(scan, patient):
    """Each core element's modulus is the law's at the calibrated density of the CT at its
    centre (trilinear), found here independently from the element's position in the scan."""
    from scipy.interpolate import RegularGridInterpolator

    image, _ = scan
    m = patient
    axes = [image.origin[a] + image.spacing[a] * np.arange(image.shape[a]) for a in range(3)]
    hu_at = RegularGridInterpolator(axes, image.hu, bounds_error=False, fill_value=0.0)
    shift = np.asarray(m.metadata["ct"]["translation"])
    for n in LEVELS:
        el = m.regions[f"{n}/trabecular"]
        scan_xyz = m.element_centres(el) - shift
        hu = hu_at(scan_xyz)
        rho = np.clip(CAL.density(hu), 1e-3, None)  # none below 0: the law's floor E_min
        np.testing.assert_allclose(m.E[el], trabecular_modulus(rho), rtol=1e-9)
        rec = m.metadata["ct"]["levels"][n]
        assert rec["hu_mean"] == pytest.approx(hu.mean(), rel=1e-9)
        assert rec["density_mg_cm3"] == pytest.approx(CAL.density(hu.mean()), rel=1e-9)
        # the core is trabecular bone: near the README's eroded-core HU (the 3 mm core keeps
        # some partial volume of the shell: it reads higher, not lower)
        assert README_CORE_HU[n] - 10 < rec["hu_mean"] < README_CORE_HU[n] + 35, (n, rec)


def test_resampling_keeps_each_vertebra_s_volume(scan, patient):
    image, seg = scan
    fine = patient_segment_model(image, seg, CAL, levels="L2", voxel_size=2.0)
    for n, m in (("L2", patient), ("L2", fine)):
        h = m.metadata["voxel_size"]
        bone = sum(len(m.regions[f"{n}/{p}"]) for p in m.anatomy[n].parts) * h ** 3
        scan_ml = seg.voxel_counts()[n] * np.prod(seg.spacing)
        # the separation from the level above removes a little; trilinear half-volume keeps
        assert bone == pytest.approx(scan_ml, rel=0.10), (h, bone, scan_ml)


def test_fracture_pvp_pkp_load_and_metrics_run_on_the_patient(patient):
    m = patient
    f = pathology.compress(m, "L2", "wedge", grade=2)
    assert f.metadata["fractures"][-1].level == "L2"
    front_f, back_f, wedge = metrics.body_heights(f, "L2")
    front, back, wedge0 = metrics.body_heights(m, "L2")
    assert front_f < 0.8 * front and back_f > 0.9 * back and wedge - wedge0 > 5.0
    # the discs next to the fractured patient L2 keep their volume (issue 16 D2)
    vol0, vol1 = fem.assembly.element_volumes(m), fem.assembly.element_volumes(f)
    for disc in ("L1-L2", "L2-L3"):
        el = np.concatenate([m.regions[r] for r in m.regions if r.startswith(disc + "/")])
        assert vol1[el].sum() == pytest.approx(vol0[el].sum(), rel=1e-9), disc
    pvp = augment.pvp(f, "L2", 3.0, seed=1)
    pkp = augment.pkp(f, "L2", 3.0)
    for treated in (pvp, pkp):
        aug = treated.metadata["augmentations"][-1]
        assert aug.volume_ml + aug.leak_ml == pytest.approx(3.0, rel=0.1)
    res = fem.solve(loadcases.loaded(m, "standing"))
    t = metrics.level_metrics(res)
    assert list(t["level"]) == LEVELS
    assert (t["stiffness_n_per_mm"] > 0).all() and (t["strength_n"] > 0).all()
    # the nucleus carries the load: positive pressure in both discs
    assert (t["disc_pressure_mpa"].iloc[:2] > 0).all()


def test_bad_patient_input_names_the_fault(scan, tmp_path):
    image, seg = scan
    holed = Segmentation(
        np.where(seg.mask("L2"), 0, seg.labels), seg.names, seg.spacing, seg.origin, "holed")
    with pytest.raises(fem.MeshError, match=r"L2 of L1-L3 has an empty mask"):
        patient_segment_model(image, holed, CAL, levels="L1-L3", voxel_size=3.0)
    far = ct.CTImage(np.zeros((4, 4, 4)), image.spacing, (1e4, 1e4, 1e4))
    with pytest.raises(fem.MeshError, match="do not overlap the CT image"):
        patient_segment_model(far, seg, CAL, levels="L2", voxel_size=3.0)
    wrong = ct.Calibration(0.8, -200.0)  # puts a 110 HU core at negative density
    with pytest.raises(fem.MeshError, match="density <= 0 .* check the calibration"):
        patient_segment_model(image, seg, wrong, levels="L2", voxel_size=3.0)
    with pytest.raises(fem.ParameterError, match="calibration must be"):
        patient_segment_model(image, seg, None, levels="L2")
    with pytest.raises(fem.ParameterError, match="voxel_size"):
        patient_segment_model(image, seg, CAL, levels="L2", voxel_size=0.01)


def test_a_study_run_names_a_patient(tmp_path):
    """``anatomy = "ct"`` with ``ct`` and ``masks`` runs the patient through the study recipe
    (a PVP of L2 here); a level the masks lack, or a missing file, is refused at spec time."""
    from fem.study import SpecError, StudySpec
    from fem.study.recipe import execute

    base = {"anatomy": "ct", "ct": str(DATA / "ct.nii.gz"), "masks": str(DATA / "masks"),
            "levels": "L1-L2", "voxel_size": 3.0, "procedure": "pvp", "fracture_level": "L2",
            "cement_volume_ml": 3.0}
    (p,) = StudySpec.from_dict({"study": {"name": "patient"}, "base": base}).expand()
    out = execute(p)
    rows = {r["level"]: r for r in out["rows"]}
    assert list(rows) == ["L1", "L2"]
    assert rows["L2"]["cement_placed_ml"] > 2.0 and rows["L1"]["cement_placed_ml"] == 0.0
    assert rows["L2"]["wedge_angle_deg"] > 2.0  # fractured: the intact L2 reads about -5 deg
    with pytest.raises(SpecError, match=r"T10 are not segmented"):
        StudySpec.from_dict({"study": {"name": "x"}, "base": {**base, "levels": "T10-T12"}}
                            ).expand()
    with pytest.raises(SpecError, match=r"masks.*no such file"):
        StudySpec.from_dict({"study": {"name": "x"},
                             "base": {**base, "masks": str(tmp_path / "none")}}).expand()
    # the scan cuts T11 and T12 (their masks reach its top slice): refused at spec time, not by
    # the run; levels = "auto" spans the levels it holds whole (L1 fractured: L1-L3, where it
    # had reached T11 and failed in the run)
    with pytest.raises(SpecError, match=r"T12 reach the edge of the image.*\(L1, L2, L3, L4, L5\)"):
        StudySpec.from_dict({"study": {"name": "x"}, "base": {**base, "levels": "T12-L1"}}
                            ).expand()
    with pytest.raises(SpecError, match=r"'T12' reaches the edge of the image"):
        StudySpec.from_dict({"study": {"name": "x"}, "base": {
            **base, "levels": "auto", "fracture_level": "T12"}}).expand()
    (auto,) = StudySpec.from_dict({"study": {"name": "x"}, "base": {
        **base, "levels": "auto", "fracture_level": "L1"}}).expand()
    assert auto["levels"] == "L1-L3"


def test_a_level_cut_by_the_field_of_view_is_refused(scan):
    """The shared scan's top slice cuts T12 (173 of its voxels lie on it) and T11."""
    image, seg = scan
    with pytest.raises(fem.MeshError, match="T12's mask reaches the image's z edge"):
        patient_segment_model(image, seg, CAL, levels="T12-L1", voxel_size=3.0)


def test_a_piece_joined_only_by_an_edge_is_dropped(scan):
    """A segmentation voxel that touches its level only along an edge would hinge (a mechanism);
    the builder keeps each level's largest face-connected piece, and the model solves."""
    from scipy import ndimage

    image, seg = scan
    lab = seg.labels.copy()
    l2 = seg.mask("L2")
    code = next(k for k, n in seg.names.items() if n == "L2")
    grown = ndimage.binary_dilation(lab > 0, iterations=1)  # face neighbours of any vertebra
    for i, j, k in np.argwhere(l2):
        a, b = (i + 1, j + 1, k), (i - 1, j - 1, k)
        for c in (a, b):
            if not grown[c]:  # empty, and no vertebra voxel shares a face with it
                lab[c] = code
                break
        else:
            continue
        break
    stray = Segmentation(lab, seg.names, seg.spacing, seg.origin, "stray")
    m = patient_segment_model(image, stray, CAL, levels="L2", voxel_size=3.0)
    base = patient_segment_model(image, seg, CAL, levels="L2", voxel_size=3.0)
    assert m.n_elements == base.n_elements
    assert m.metadata["ct"]["separated_voxels"] == base.metadata["ct"]["separated_voxels"] + 1
    m.fix("bottom").add(fem.Pressure("top", 0.5))
    assert fem.solve(m).info.imbalance is not None


def test_a_patient_gets_ligaments_between_its_own_posterior_elements(scan, patient):
    """``patient_segment_model(..., ligaments=True)`` (3 mm): the gaps between the scan's real
    posterior elements behind the laminae hold the three ligaments of each disc, joined to
    nothing but the two arches (the checks of tests/test_ligaments.py's shape model)."""
    from test_ligaments import check_real_ligaments

    image, seg = scan
    m = patient_segment_model(image, seg, CAL, levels="L1-L3", voxel_size=3.0, ligaments=True)
    check_real_ligaments(m, patient, ("L1-L2", "L2-L3"))
