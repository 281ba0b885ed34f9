"""Segmentations in (issue 20, deliverable 1): TotalSegmentator's per-vertebra masks and
multilabel images, NIfTI in any axis-aligned orientation and DICOM mask series, on the CT's grid
or resampled onto it; bad input named. Reads the real scan in ../shared/data (skips visibly
where it is absent); the reoriented and multilabel forms are written from it into tmp_path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import fem
from fem.meshes import ct
from fem.meshes.segmentation import (
    TOTALSEGMENTATOR,
    Segmentation,
    level_name,
    read_segmentation,
)

nib = pytest.importorskip("nibabel")
DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "ct-abdomen-totalsegmentator"
needs_data = pytest.mark.skipif(not (DATA / "ct.nii.gz").is_file(),
                                reason=f"the shared CT data are absent ({DATA})")
LEVELS = ["T11", "T12", "L1", "L2", "L3", "L4", "L5"]


@pytest.fixture(scope="module")
def scan():
    if not (DATA / "ct.nii.gz").is_file():
        pytest.skip(f"the shared CT data are absent ({DATA})")
    return ct.read_nifti(DATA / "ct.nii.gz"), read_segmentation(DATA / "masks")


def _raw_mask(level):
    return np.asarray(nib.load(str(DATA / "masks" / f"vertebrae_{level}.nii.gz")).get_fdata()) > 0.5


@needs_data
def test_the_mask_folder_gives_every_vertebra_on_the_ct_grid(scan):
    image, seg = scan
    assert seg.levels == LEVELS and seg.shape == image.shape
    assert seg.spacing == image.spacing and seg.origin == image.origin
    counts = seg.voxel_counts()
    for level in LEVELS:
        assert counts[level] == _raw_mask(level).sum()  # every voxel kept, none shared
    assert counts["T11"] == 76  # cut by the image edge (the data's README)
    ml = {lv: counts[lv] * np.prod(seg.spacing) / 1000.0 for lv in LEVELS[1:]}
    assert all(45.0 < v < 70.0 for v in ml.values()), ml  # README: whole vertebrae 49-66 mL
    # the spine runs along z, T12 above L5 (z cranial in the project's frame)
    z = {lv: np.argwhere(seg.mask(lv))[:, 2].mean() for lv in ("T12", "L5")}
    assert z["T12"] > z["L5"]
    # the vertebrae lie in the bone of the CT: their mean HU is that of bone, not soft tissue
    assert 150.0 < image.hu[seg.mask("L2")].mean() < 600.0


def _reoriented(src: Path, dst: Path, flip=(0,), order=(1, 0, 2)):
    """The same NIfTI with its array axes flipped and permuted and the affine changed to
    match (an LPS- or PIR-ordered array of the same scan, say)."""
    img = nib.load(str(src))
    data = np.asarray(img.get_fdata())
    A = img.affine.copy()
    for a in flip:
        n = data.shape[a]
        data = np.flip(data, axis=a)
        A[:3, 3] += A[:3, a] * (n - 1)
        A[:3, a] *= -1.0
    data = np.transpose(data, order)
    A[:3, :3] = A[:3, list(order)]
    nib.save(nib.Nifti1Image(data.astype(np.float32 if "ct" in src.name else np.uint8), A),
             str(dst))


@needs_data
def test_reoriented_files_of_the_scan_give_the_same_labels(scan, tmp_path):
    image, seg = scan
    folder = tmp_path / "masks"
    folder.mkdir()
    for level in LEVELS:
        _reoriented(DATA / "masks" / f"vertebrae_{level}.nii.gz",
                    folder / f"vertebrae_{level}.nii.gz", flip=(0, 2), order=(2, 0, 1))
    _reoriented(DATA / "ct.nii.gz", tmp_path / "ct.nii.gz", flip=(1,), order=(1, 2, 0))
    image2 = ct.read_nifti(tmp_path / "ct.nii.gz")
    seg2 = read_segmentation(folder)
    np.testing.assert_array_equal(image2.hu, image.hu)
    assert image2.origin == pytest.approx(image.origin, abs=1e-4)
    np.testing.assert_array_equal(seg2.labels, seg.labels)
    assert seg2.origin == pytest.approx(seg.origin, abs=1e-4)
    # and with the CT in the other orientation, the masks resample onto it voxel for voxel
    np.testing.assert_array_equal(seg2.on_grid(image2).labels, seg.labels)


@needs_data
def test_a_multilabel_file_reads_as_the_mask_folder(scan, tmp_path):
    image, seg = scan
    ts = {v: k for k, v in TOTALSEGMENTATOR.items()}
    ml = np.zeros(seg.shape, dtype=np.int16)
    for level in LEVELS:
        ml[seg.mask(level)] = ts[level]
    ml[(image.hu < -900) & (ml == 0)] = 5  # TotalSegmentator's liver number: not a vertebra
    ref = nib.load(str(DATA / "ct.nii.gz"))
    # back to the file's RAS array order (read_nifti turned it into LPS: flip x and y)
    nib.save(nib.Nifti1Image(ml[::-1, ::-1, :], ref.affine), str(tmp_path / "total.nii.gz"))
    back = read_segmentation(tmp_path / "total.nii.gz", image=image)
    assert back.levels == LEVELS
    for level in LEVELS:
        np.testing.assert_array_equal(back.mask(level), seg.mask(level))
    # a user's table with its own numbers and names
    mine = read_segmentation(tmp_path / "total.nii.gz",
                             labels={ts["L1"]: "vertebrae_L1", ts["L2"]: "L2", 5: "liver"})
    assert mine.levels == ["L1", "L2"]


@needs_data
def test_resampling_onto_a_finer_grid_keeps_each_volume(scan):
    image, seg = scan
    sp = np.array(image.spacing) / 2.0
    fine = ct.CTImage(np.zeros(tuple(2 * np.array(image.shape))), tuple(sp),
                      tuple(np.array(image.origin) - 0.5 * sp))
    up = seg.on_grid(fine)
    for level in LEVELS[1:]:
        v0 = seg.voxel_counts()[level] * np.prod(seg.spacing)
        v1 = up.voxel_counts()[level] * np.prod(up.spacing)
        assert v1 == pytest.approx(v0, rel=1e-9)  # each voxel split in eight
    far = ct.CTImage(np.zeros((8, 8, 8)), image.spacing, (1e4, 0.0, 0.0))
    with pytest.raises(fem.MeshError, match="do not overlap the CT image"):
        seg.on_grid(far)


def test_a_dicom_mask_series_reads_with_its_positions(tmp_path, rng):
    from test_ct import write_dicom_series

    lab = np.zeros((6, 5, 4))
    lab[1:3, 1:4, 0:2] = 30  # L2
    lab[1:3, 1:4, 2:4] = 31  # L1 above it
    write_dicom_series(tmp_path / "seg", lab, (0.8, 0.8, 2.5), (10.0, -4.0, 100.0),
                       intercept=0.0, rng=rng)
    seg = read_segmentation(tmp_path / "seg")
    assert seg.levels == ["L1", "L2"] and seg.spacing == pytest.approx((0.8, 0.8, 2.5))
    assert seg.origin == pytest.approx((10.0, -4.0, 100.0))
    assert np.array_equal(seg.mask("L2"), lab == 30)


def test_levels_between_the_ends_must_be_segmented(tmp_path):
    lab = np.zeros((4, 4, 9), dtype=np.int16)
    lab[:, :, 0:3], lab[:, :, 6:9] = 3, 1  # L3 below, L1 above, no L2
    seg = Segmentation(lab, {1: "L1", 2: "L2", 3: "vertebrae_L3"}, source="seg.nii")
    assert seg.levels == ["L1", "L3"] and seg.select("L3") == ["L3"]
    with pytest.raises(fem.MeshError, match=r"seg.nii: level\(s\) L2 of L1-L3 has an empty mask"):
        seg.select("L1-L3")
    with pytest.raises(fem.MeshError, match=r"L4, L5 of L3-L5 has no label"):
        seg.select("L3-L5")
    with pytest.raises(fem.ParameterError, match="caudal to cranial"):
        seg.select("L3-L1")
    with pytest.raises(fem.ParameterError, match="contiguous"):
        seg.select(["L1", "L3"])
    with pytest.raises(fem.ParameterError, match="not a vertebra"):
        Segmentation(lab, {1: "liver"}, source="seg.nii")
    with pytest.raises(fem.ParameterError, match="named by two labels"):
        Segmentation(lab, {1: "L1", 2: "vertebrae_L1"})
    assert level_name("vertebrae_t12") == "T12" and level_name("kidney") is None


@needs_data
def test_bad_mask_folders_name_the_file(tmp_path):
    import shutil

    a, b = tmp_path / "overlap", tmp_path / "grid"
    for f in (a, b):
        f.mkdir()
        for level in ("L1", "L2"):
            shutil.copy(DATA / "masks" / f"vertebrae_{level}.nii.gz", f)
    ref = nib.load(str(DATA / "masks" / "vertebrae_L1.nii.gz"))
    nib.save(nib.Nifti1Image(np.asarray(ref.get_fdata()).astype(np.uint8), ref.affine),
             str(a / "vertebrae_L3.nii.gz"))  # L3's mask = L1's voxels
    with pytest.raises(fem.MeshError, match="vertebrae_L3.nii.gz: .* also belong to L1"):
        read_segmentation(a)
    moved = ref.affine.copy()
    moved[:3, 3] += 5.0
    nib.save(nib.Nifti1Image(np.asarray(ref.get_fdata()).astype(np.uint8), moved),
             str(b / "vertebrae_L3.nii.gz"))
    with pytest.raises(fem.InputFileError, match="vertebrae_L3.nii.gz: its grid .* differs"):
        read_segmentation(b)
    empty = tmp_path / "empty.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 4), np.uint8), np.eye(4)), str(empty))
    with pytest.raises(fem.MeshError, match="none of its label values"):
        read_segmentation(empty)
    with pytest.raises(fem.InputFileError, match="no such file or folder"):
        read_segmentation(tmp_path / "missing")


def write_dicom_seg(path, lab: np.ndarray, names: dict, spacing, origin, *, shuffle=None):
    """A binary DICOM SEG of label image ``lab`` (x, y, z; LPS, axial frames) with one segment
    per entry of ``names`` (label -> SegmentLabel); frames in shuffled order when a generator
    is given (frames carry their own positions)."""
    pydicom = pytest.importorskip("pydicom")
    from pydicom.dataset import Dataset
    from pydicom.pixels import pack_bits
    from pydicom.sequence import Sequence
    from test_ct import dicom_dataset

    ds = dicom_dataset("1.2.840.10008.5.1.4.1.1.66.4")  # Segmentation Storage
    ds.Modality, ds.SegmentationType = "SEG", "BINARY"
    ds.Rows, ds.Columns = lab.shape[1], lab.shape[0]
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 1
    ds.HighBit, ds.PixelRepresentation = 0, 0
    segs = []
    for number, (value, label) in enumerate(names.items(), start=1):
        item = Dataset()
        item.SegmentNumber, item.SegmentLabel = number, label
        segs.append((number, value, item))
    ds.SegmentSequence = Sequence([item for _, _, item in segs])
    shared = Dataset()
    po, pm = Dataset(), Dataset()
    po.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    pm.PixelSpacing = [spacing[1], spacing[0]]
    pm.SliceThickness = spacing[2]
    shared.PlaneOrientationSequence = Sequence([po])
    shared.PixelMeasuresSequence = Sequence([pm])
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    frames, per = [], []
    order = [(n, v, k) for n, v, _ in segs for k in range(lab.shape[2])]
    if shuffle is not None:
        shuffle.shuffle(order)
    for number, value, k in order:
        f = Dataset()
        pp, si = Dataset(), Dataset()
        pp.ImagePositionPatient = [origin[0], origin[1], origin[2] + k * spacing[2]]
        si.ReferencedSegmentNumber = number
        f.PlanePositionSequence = Sequence([pp])
        f.SegmentIdentificationSequence = Sequence([si])
        per.append(f)
        frames.append((lab[:, :, k] == value).T.astype(np.uint8))
    ds.PerFrameFunctionalGroupsSequence = Sequence(per)
    ds.NumberOfFrames = len(frames)
    ds.PixelData = pack_bits(np.stack(frames))
    ds.save_as(path, enforce_file_format=True)
    return pydicom


def test_a_dicom_seg_reads_with_its_frames_positions(tmp_path, rng):
    lab = np.zeros((7, 6, 5), dtype=np.int16)
    lab[1:4, 2:5, 0:2] = 29  # L3
    lab[2:5, 1:4, 3:5] = 30  # L2 above it
    lab[0, 0, 4] = 5  # liver, not a vertebra
    write_dicom_seg(tmp_path / "seg.dcm", lab, {29: "vertebrae_L3", 30: "L2", 5: "liver"},
                    (0.7, 0.9, 2.0), (-20.0, 15.0, 300.0), shuffle=rng)
    seg = read_segmentation(tmp_path / "seg.dcm")
    assert seg.levels == ["L2", "L3"]
    assert seg.spacing == pytest.approx((0.7, 0.9, 2.0))
    assert seg.origin == pytest.approx((-20.0, 15.0, 300.0))
    np.testing.assert_array_equal(seg.mask("L3"), lab == 29)
    np.testing.assert_array_equal(seg.mask("L2"), lab == 30)
    assert seg.voxel_counts() == {"L2": 18, "L3": 18}
    write_dicom_seg(tmp_path / "organs.dcm", lab, {5: "liver"}, (1, 1, 1), (0, 0, 0))
    with pytest.raises(fem.MeshError, match="none of its segments .*liver.* names a vertebra"):
        read_segmentation(tmp_path / "organs.dcm")
    (tmp_path / "junk.dcm").write_bytes(b"not dicom")
    with pytest.raises(fem.InputFileError, match="junk.dcm: not a readable DICOM file"):
        read_segmentation(tmp_path / "junk.dcm")
