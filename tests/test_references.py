"""Phantomless calibration (issue 20, deliverable 3): air, fat and paraspinal muscle found in the
shared clinical CT, and the line fitted through the equivalent densities given for them, with the
fit's quality; poor fits and bad regions refused by name."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import fem
from fem.meshes import ct
from fem.meshes.references import calibrate, find_references, reference
from fem.meshes.segmentation import read_segmentation

pytest.importorskip("nibabel")
DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "ct-abdomen-totalsegmentator"
pytestmark = pytest.mark.skipif(not (DATA / "ct.nii.gz").is_file(),
                                reason=f"the shared CT data are absent ({DATA})")


@pytest.fixture(scope="module")
def found():
    image = ct.read_nifti(DATA / "ct.nii.gz")
    seg = read_segmentation(DATA / "masks", image=image)
    return image, seg, find_references(image, seg)


def test_the_reference_tissues_are_found_where_and_as_they_read(found):
    image, seg, refs = found
    assert set(refs) == {"air", "fat", "muscle"}
    air, fat, muscle = refs["air"], refs["fat"], refs["muscle"]
    assert -1030 < air.hu_mean < -960 and air.hu_sd < 40  # README: air about -1012 HU
    assert -130 < fat.hu_mean < -80 and fat.hu_sd < 25
    assert 10 < muscle.hu_mean < 70 and muscle.voxels > 1000
    for a, b in ((air, fat), (air, muscle), (fat, muscle)):
        assert not (a.mask & b.mask).any()
    assert not (muscle.mask & (seg.labels > 0)).any()
    # the muscle lies behind the vertebrae (+y posterior) and beside their mid-plane
    y = image.origin[1] + np.argwhere(muscle.mask)[:, 1] * image.spacing[1]
    y_bone = image.origin[1] + np.argwhere(seg.labels > 0)[:, 1] * image.spacing[1]
    assert np.median(y) > np.median(y_bone) + 20.0


def test_the_fit_recovers_a_line_and_reports_its_quality(found):
    _, _, refs = found
    line = lambda hu: (hu - 10.0) / 1.25  # noqa: E731  (a K2HPO4 line, fem.meshes.ct.PHANTOM_HU)
    dens = {n: line(r.hu_mean) for n, r in refs.items()}
    cal = calibrate(refs, dens)
    assert cal.slope == pytest.approx(0.8, rel=1e-9)
    assert cal.intercept == pytest.approx(-8.0, abs=1e-6)
    assert cal.r2 == pytest.approx(1.0, abs=1e-12)
    for n in refs:
        assert f"{n} {refs[n].hu_mean:.1f} HU" in cal.source
    # two references are enough; plain mean HU values are accepted too
    two = calibrate({"air": -1000.0, "fat": -100.0}, {"air": -808.0, "fat": -88.0})
    assert two.slope == pytest.approx(0.8) and two.intercept == pytest.approx(-8.0)


def test_a_wrong_density_or_region_is_refused(found):
    image, _, refs = found
    line = lambda hu: (hu - 10.0) / 1.25  # noqa: E731
    dens = {n: line(r.hu_mean) for n, r in refs.items()}
    dens["muscle"] = dens["fat"] - 200.0  # a mislabelled reference
    with pytest.raises(fem.MaterialError, match=r"r\^2 = .*muscle .* a reference region or its"):
        calibrate(refs, dens)
    with pytest.raises(fem.MaterialError, match="at least 2 references"):
        calibrate(refs, {"air": -800.0})
    with pytest.raises(fem.MaterialError, match="no reference region for blood"):
        calibrate(refs, {"air": -800.0, "blood": 30.0})
    with pytest.raises(fem.MeshError, match="fewer than 50: the region is empty"):
        reference(image, "blood", np.zeros(image.shape, bool))
    with pytest.raises(fem.MeshError, match="its mask has shape"):
        reference(image, "blood", np.ones((2, 2, 2), bool))
    with pytest.raises(fem.MeshError, match="not the CT's"):
        find_references(image, _coarser(read_segmentation(DATA / "masks")))


def _coarser(seg):
    """The segmentation on a grid other than the CT's."""
    sp = tuple(2 * s for s in seg.spacing)
    return seg.on_grid(ct.CTImage(np.zeros(tuple(n // 2 for n in seg.shape)), sp, seg.origin))
