"""The cortex thickness measured on an image where it resolves it (issue 20, deliverable 2):
synthetic scans of a body with a shell of known thickness, blurred like a scanner."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from fem.errors import MeshError, ParameterError
from fem.meshes import patient
from fem.meshes.ct import CTImage
from fem.meshes.segmentation import Segmentation


def body(h, t, *, sigma=0.3, levels=1):
    """A cylindrical body (radius 15 mm, 20 mm high; ``levels`` of them stacked 4 mm apart) with a
    shell ``t`` mm thick of 1 200 HU around a 150 HU core, in 40 HU tissue, blurred by a Gaussian
    of ``sigma`` mm; returns the image and the label image (1, 2, ...)."""
    nx, nz = int(round(40 / h)), int(round((24 * levels + 8) / h))
    x = (np.arange(nx) + 0.5) * h - 20
    z = (np.arange(nz) + 0.5) * h - 4
    X, Y, Z = np.meshgrid(x, x, z, indexing="ij")
    r = np.hypot(X, Y)
    labels = np.zeros(X.shape, np.int16)
    hu = np.full(X.shape, 40.0)
    for i in range(levels):
        zc = 10.0 + 24.0 * i
        inside = (r <= 15.0) & (np.abs(Z - zc) <= 10.0)
        depth = np.minimum(15.0 - r, 10.0 - np.abs(Z - zc))
        labels[inside] = i + 1
        hu[inside] = np.where(depth[inside] <= t, 1200.0, 150.0)
    return CTImage(gaussian_filter(hu, sigma / h), (h, h, h)), labels


@pytest.mark.parametrize("h,t", [(0.4, 1.0), (0.4, 2.0), (0.5, 3.0), (1.0, 3.0)])
def test_a_resolved_cortex_is_measured_to_its_thickness(h, t):
    image, labels = body(h, t)
    r = patient.measure_cortex(image, labels == 1)
    assert r["resolved"]
    assert abs(r["thickness_mm"] - t) <= 0.08 * t
    assert r["core_hu"] == pytest.approx(150.0, abs=1.0) and r["shell_hu"] > 900.0


@pytest.mark.parametrize("h,t", [(1.0, 1.0), (3.0, 0.5), (0.4, 0.5)])
def test_a_cortex_thinner_than_two_voxels_is_not_resolved(h, t):
    image, labels = body(h, t)
    r = patient.measure_cortex(image, labels == 1)
    assert not r["resolved"]
    assert r["thickness_mm"] > t  # partial volume over-estimates what it cannot resolve


def test_the_model_takes_the_measured_thickness_only_where_every_level_resolves_it():
    image, labels = body(0.5, 2.0, levels=2)
    seg = Segmentation(labels, {1: "L2", 2: "L1"})
    t, rec = patient._cortex(image, seg, ["L1", "L2"], "image")
    assert rec["source"] == "image" and t == pytest.approx(2.0, rel=0.08)
    assert set(rec["levels"]) == {"L1", "L2"}
    coarse, one = body(1.0, 1.0)
    thin, rec = patient._cortex(coarse, Segmentation(one, {1: "L1"}), ["L1"], "image")
    assert thin == patient.CORTEX_DEFAULT and rec["source"] == "default"
    assert "does not resolve the cortex of L1" in rec["why"]
    assert patient._cortex(image, seg, ["L1"], 0.8)[0] == 0.8
    for bad in ("auto", -1.0, 9.0):
        with pytest.raises(ParameterError, match="cortex"):
            patient._cortex(image, seg, ["L1"], bad)


def test_measure_cortex_refuses_an_empty_mask():
    image, labels = body(1.0, 3.0)
    with pytest.raises(MeshError, match="non-empty mask"):
        patient.measure_cortex(image, labels == 7)
