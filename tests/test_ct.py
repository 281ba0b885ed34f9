"""CT-based voxel models (fem.meshes.ct): calibration, density-to-modulus mapping, coarsening,
NIfTI and DICOM readers, an axial-compression solve and input errors."""

import numpy as np
import pytest

import fem
from fem.meshes import bone, ct


@pytest.fixture(scope="module")
def phantom():
    return ct.synthetic_vertebra_phantom(seed=3)


def phantom_calibration(image, truth):
    return ct.Calibration.from_rods(image, truth["rods"])


def test_calibration_from_rods_recovers_the_phantom_line(phantom):
    image, truth = phantom
    cal = phantom_calibration(image, truth)
    a, b = truth["a"], truth["b"]  # HU = a + b rho  <=>  rho = -a/b + HU/b
    assert cal.slope == pytest.approx(1.0 / b, rel=0.01)
    # intercept within 1 % of the rods' density span (200 mg/cm^3): it is near zero
    assert abs(cal.intercept - (-a / b)) < 0.01 * 200.0
    assert cal.r2 > 0.999
    with pytest.raises(fem.errors.MaterialError, match="at least 2 rods"):
        ct.Calibration.from_rods(image, truth["rods"][:1])
    with pytest.raises(fem.errors.MaterialError, match="at least 2 rods"):
        ct.Calibration.from_rods(image, [])


def test_internal_calibration_through_two_points():
    cal = ct.Calibration.from_internal(-1000.0, 30.0, 1030.0)
    assert cal.density(-1000.0) == pytest.approx(0.0)
    assert cal.density(30.0) == pytest.approx(1030.0)
    assert cal.slope == pytest.approx(1.0)


def test_calibrated_density_matches_truth(phantom):
    image, truth = phantom
    cal = phantom_calibration(image, truth)
    rho = cal.density(image.hu)
    trab = truth["trabecular"]
    assert rho[trab].mean() == pytest.approx(truth["bmd"], abs=1.0)
    assert truth["density"][trab].mean() == pytest.approx(truth["bmd"], rel=1e-12)
    # the density gradient: rim of the trabecular core denser than its centre
    core = truth["density"][trab]
    assert core.max() / core.min() == pytest.approx(1.6, rel=0.05)


def test_voxel_moduli_follow_the_law(phantom):
    image, truth = phantom
    cal = phantom_calibration(image, truth)
    vm = ct.ct_voxel_model(image, cal, labels=truth["mask"], law="morgan2003")
    trab = truth["trabecular"]
    E = vm.E
    assert np.all(E[~truth["mask"]] == 0)
    # exactly the law at each voxel's calibrated density
    expected = bone.trabecular_modulus(np.clip(cal.density(image.hu[trab]), 1e-6, None))
    np.testing.assert_allclose(E[trab], expected, rtol=1e-12)
    # and, on average, the law at the noise-free density: noise of 15 HU is 12 mg/cm^3
    truth_E = bone.trabecular_modulus(truth["density"][trab])
    assert E[trab].mean() == pytest.approx(truth_E.mean(), rel=0.03)


def test_threshold_empties_soft_tissue_and_keeps_the_body():
    image, truth = ct.synthetic_vertebra_phantom(seed=1, rods=False)
    cal = ct.Calibration(1.0 / truth["b"], -truth["a"] / truth["b"])
    vm = ct.ct_voxel_model(image, cal, threshold_mg_cm3=50.0)
    occupied = vm.E > 0
    # soft tissue (24 mg/cm^3 +- 12) is empty except a few noisy voxels touching the body
    assert (occupied & ~truth["mask"]).sum() < 0.005 * truth["mask"].sum()
    assert (occupied & truth["mask"]).sum() > 0.995 * truth["mask"].sum()


@pytest.mark.parametrize("c, shape", [(2, (32, 32, 24)), (3, (21, 21, 16))])
def test_coarsening_shape_and_mean_density(phantom, c, shape):
    image, truth = phantom
    cal = phantom_calibration(image, truth)
    rho, frac, sp = ct.voxel_density(image, cal, coarsen=c)
    assert rho.shape == shape and frac is None
    assert sp == pytest.approx(tuple(c * h for h in image.spacing))
    fine = cal.density(image.hu)[:shape[0] * c, :shape[1] * c, :shape[2] * c]
    assert rho.mean() == pytest.approx(fine.mean(), rel=1e-12)
    vm = ct.ct_voxel_model(image, cal, labels=truth["mask"], coarsen=c)
    assert vm.shape == shape


def test_coarsened_labels_keep_bone_density(phantom):
    image, truth = phantom
    cal = phantom_calibration(image, truth)
    rho, frac, _ = ct.voxel_density(image, cal, coarsen=2, labels=truth["mask"])
    fine = cal.density(image.hu)
    assert frac.sum() * 8 == pytest.approx(truth["mask"].sum())
    assert (rho * frac).sum() * 8 == pytest.approx(fine[truth["mask"]].sum(), rel=1e-12)


def test_nifti_round_trip(tmp_path, rng):
    nib = pytest.importorskip("nibabel")
    hu = rng.normal(0.0, 300.0, (5, 6, 7)).round()
    sp = (0.7, 0.8, 1.25)
    # an LPS-aligned file (as converted from DICOM): RAS affine diag(-sx, -sy, sz)
    aff = np.diag([-sp[0], -sp[1], sp[2], 1.0])
    aff[:3, 3] = (10.0, 20.0, -5.0)
    nib.save(nib.Nifti1Image(hu.astype(np.int16), aff), tmp_path / "a.nii.gz")
    img = ct.read_nifti(tmp_path / "a.nii.gz")
    np.testing.assert_array_equal(img.hu, hu)
    assert img.spacing == pytest.approx(sp)
    assert img.origin == pytest.approx((-10.0, -20.0, -5.0))
    # a RAS-aligned file: x and y are flipped into the LPS convention
    nib.save(nib.Nifti1Image(hu.astype(np.int16), np.diag([*sp, 1.0])), tmp_path / "b.nii")
    img = ct.read_nifti(tmp_path / "b.nii")
    np.testing.assert_array_equal(img.hu, hu[::-1, ::-1, :])
    assert img.origin == pytest.approx((-4 * sp[0], -5 * sp[1], 0.0))


def test_nifti_oblique_affine_is_refused(tmp_path):
    nib = pytest.importorskip("nibabel")
    c, s = np.cos(0.3), np.sin(0.3)
    aff = np.array([[c, -s, 0, 0], [s, c, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1.0]])
    nib.save(nib.Nifti1Image(np.zeros((3, 3, 3), np.int16), aff), tmp_path / "o.nii")
    with pytest.raises(fem.InputFileError, match="oblique"):
        ct.read_nifti(tmp_path / "o.nii")


def dicom_dataset(sop_class: str):
    """An empty DICOM dataset of ``sop_class`` with its file meta and a new instance UID,
    explicit VR little endian."""
    pytest.importorskip("pydicom")
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = sop_class, meta.MediaStorageSOPInstanceUID
    return ds


def write_dicom_series(folder, hu, spacing, origin, *, slope=1.0, intercept=-1024.0, rng=None,
                       overrides=None):
    """One file per z slice with shuffled names; raw = (HU - intercept) / slope as uint16."""
    pydicom = pytest.importorskip("pydicom")
    from pydicom.uid import CTImageStorage, generate_uid

    folder.mkdir(exist_ok=True)
    uid = generate_uid()
    names = np.arange(hu.shape[2])
    if rng is not None:
        rng.shuffle(names)
    for k in range(hu.shape[2]):
        ds = dicom_dataset(CTImageStorage)
        ds.Modality = "CT"
        ds.SeriesInstanceUID = uid
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [origin[0], origin[1], origin[2] + k * spacing[2]]
        ds.PixelSpacing = [spacing[1], spacing[0]]
        ds.SliceThickness = spacing[2]
        ds.Rows, ds.Columns = hu.shape[1], hu.shape[0]
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated = ds.BitsStored = 16
        ds.HighBit = 15
        ds.PixelRepresentation = 0
        ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
        raw = np.round((hu[:, :, k].T - intercept) / slope).astype(np.uint16)
        ds.PixelData = raw.tobytes()
        for key, value in (overrides or {}).get(k, {}).items():
            setattr(ds, key, value)
        ds.save_as(folder / f"img{names[k]:03d}.dcm", enforce_file_format=True)
    return pydicom


def test_dicom_series_round_trip(tmp_path, rng):
    hu = rng.integers(-1000, 1500, (6, 5, 7)).astype(float)
    sp, origin = (0.6, 0.7, 1.5), (-12.0, 8.0, 100.0)
    write_dicom_series(tmp_path / "s", hu, sp, origin, slope=0.5, intercept=-1024.0, rng=rng)
    img = ct.read_dicom_series(tmp_path / "s")
    np.testing.assert_allclose(img.hu, hu)
    assert img.spacing == pytest.approx(sp)
    assert img.origin == pytest.approx(origin)


def test_dicom_inconsistent_series_names_the_file(tmp_path, rng):
    hu = rng.integers(-1000, 1500, (4, 4, 5)).astype(float)
    write_dicom_series(tmp_path / "s", hu, (1.0, 1.0, 2.0), (0, 0, 0),
                       overrides={3: {"PixelSpacing": [0.9, 0.9]}})
    with pytest.raises(fem.InputFileError, match=r"img003\.dcm: pixel spacing"):
        ct.read_dicom_series(tmp_path / "s")
    write_dicom_series(tmp_path / "t", hu, (1.0, 1.0, 2.0), (0, 0, 0),
                       overrides={2: {"ImagePositionPatient": [0, 0, 2.0]}})
    with pytest.raises(fem.InputFileError, match="same slice position"):
        ct.read_dicom_series(tmp_path / "t")


def test_axial_compression_balances(phantom):
    image, truth = phantom
    cal = phantom_calibration(image, truth)
    vm = ct.ct_voxel_model(image, cal, labels=truth["mask"], coarsen=2)
    p = 1.0
    vm.fix("zmin")
    vm.add(fem.Pressure("zmax", p))
    res = fem.solve(vm)
    top = (vm.E[:, :, -1] > 0).sum() * vm.spacing[0] * vm.spacing[1]
    r = res.reactions["zmin"]
    assert r[2] == pytest.approx(p * top, rel=1e-6)
    assert np.abs(r[:2]).max() < 1e-6 * p * top
    np.testing.assert_allclose(res.reaction_total() + res.applied_total(), 0.0,
                               atol=1e-6 * p * top)
    assert res.displacement[:, 2].min() < 0


def test_bad_input_messages(tmp_path):
    with pytest.raises(fem.MeshError, match="3-D"):
        ct.CTImage(np.zeros((4, 4)))
    with pytest.raises(fem.MeshError, match="spacing must be > 0"):
        ct.CTImage(np.zeros((2, 2, 2)), spacing=(1.0, 0.0, 1.0))
    with pytest.raises(fem.MaterialError, match=r"r\^2 = 0\.\d+ < 0.95"):
        ct.Calibration.from_phantom([0.0, 100.0, 200.0, 300.0], [0.0, 200.0, 20.0, 190.0])
    with pytest.raises(fem.MaterialError, match="at least 2 rods"):
        ct.Calibration.from_phantom([10.0], [0.0])
    with pytest.raises(fem.MaterialError, match="higher than air"):
        ct.Calibration.from_internal(-1000.0, -1200.0, 50.0)
    image = ct.CTImage(np.full((4, 4, 4), 100.0))
    cal = ct.Calibration(1.0, 0.0)
    with pytest.raises(fem.MaterialError, match="threshold_mg_cm3 or labels"):
        ct.ct_voxel_model(image, cal)
    with pytest.raises(fem.MaterialError, match="known laws"):
        ct.ct_voxel_model(image, cal, threshold_mg_cm3=50.0, law="wolff")
    with pytest.raises(fem.ParameterError, match="coarsen"):
        ct.ct_voxel_model(image, cal, threshold_mg_cm3=50.0, coarsen=0)
    with pytest.raises(fem.MeshError, match="label image shape"):
        ct.ct_voxel_model(image, cal, labels=np.ones((3, 3, 3)))
    with pytest.raises(fem.MaterialError, match="no bone voxel"):
        ct.ct_voxel_model(image, cal, threshold_mg_cm3=500.0)
    with pytest.raises(fem.InputFileError, match="no such file"):
        ct.read_nifti(tmp_path / "missing.nii")


def test_missing_reader_names_the_extra(tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "pydicom", None)
    with pytest.raises(fem.InputFileError, match=r'pip install "vertebra-fem\[ct\]"'):
        ct.read_dicom_series(tmp_path)
