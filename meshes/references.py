"""Phantomless calibration: internal reference tissues found in the CT (or given as masks), and
a HU-to-density line fitted through them with its quality reported.

Most clinical CT has no calibration phantom. Phantomless methods use tissues every scan holds as
the rods of a phantom (Lee et al. 2017, Bone 103:325: air and aortic blood or adipose tissue;
a 2023 review in Curr Osteoporos Rep, PMC9925590, Table 2, lists the variants). Their
equivalent mineral densities (mg/cm^3 of the phantom material) are not universal: they depend on
the scanner and its tube voltage and come from scans of that scanner with a phantom. This module
therefore finds the regions and measures them, and fits the line through the equivalent
densities the user gives; it does not invent them. How much that matters: against simultaneous
phantom calibration, phantomless methods precalibrated on a reference dataset of the same
protocol erred by 0.1 +- 2.7 to 2.4 +- 3.5 mg/cm^3, a method without precalibration by
12.6 +- 13.2 mg/cm^3 (350 women, one standardized protocol; wider on clinical-routine scans of
mixed protocols: "Opportunistic screening with CT: comparison of phantomless BMD calibration
methods", J Bone Miner Res 2023). A study can sample that error (``density_error``,
docs/uncertainty.md).

:func:`find_references` finds, in a :class:`~fem.meshes.ct.CTImage`:

* ``air``: voxels under -900 HU connected to the image border (outside the patient), eroded by
  two voxels away from the skin and the table;
* ``fat``: voxels of -150 to -50 HU inside the body (subcutaneous and visceral adipose tissue),
  eroded by one voxel against partial volume;
* ``muscle``: with a vertebra segmentation, the paraspinal muscles: 0 to 100 HU behind the
  vertebrae (up to 40 mm behind their most posterior voxel, within 45 mm of their mid-sagittal
  plane, over their cranio-caudal span), two voxels away from bone, eroded by one voxel.

Each comes back as a :class:`Reference` (mask, mean and SD HU, voxel count), and
:func:`calibrate` fits density = intercept + slope x HU through the references' means by least
squares (:class:`~fem.meshes.ct.Calibration` with ``r2`` and the per-reference residuals in
``source``), refusing fewer than two references, an empty or too small region, or a fit with
r^2 under :data:`fem.meshes.ct.MIN_R2`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import MaterialError, MeshError
from .ct import MIN_R2, Calibration, CTImage, fit_line

#: HU windows of the reference tissues (typical values at 120 kVp: air -1000, adipose tissue
#: -150..-50, skeletal muscle 10..80; the windows are wide enough for scanner drift)
AIR_BELOW = -900.0
FAT_WINDOW = (-150.0, -50.0)
MUSCLE_WINDOW = (0.0, 100.0)
#: the fewest voxels a reference region may have
MIN_VOXELS = 50


@dataclass(frozen=True)
class Reference:
    """A reference region: its ``mask`` on the image grid, mean and SD of its HU, voxels."""

    name: str
    mask: np.ndarray
    hu_mean: float
    hu_sd: float
    voxels: int


def reference(image: CTImage, name: str, mask) -> Reference:
    """The reference region ``mask`` (bool, the image's shape) of tissue ``name``."""
    m = np.asarray(mask, dtype=bool)
    if m.shape != image.shape:
        raise MeshError(f"reference {name!r}: its mask has shape {m.shape}, the CT {image.shape}")
    n = int(m.sum())
    if n < MIN_VOXELS:
        raise MeshError(f"reference {name!r}: {n} voxel(s), fewer than {MIN_VOXELS}: the region "
                        "is empty or too small to average")
    hu = image.hu[m]
    return Reference(name, m, float(hu.mean()), float(hu.std()), n)


def find_references(image: CTImage, segmentation=None) -> dict[str, Reference]:
    """Air and fat, and with a vertebra ``segmentation`` (on the image's grid) the paraspinal
    muscles, found in ``image`` (module docstring)."""
    from scipy import ndimage

    hu = image.hu
    outside = _outside(hu < AIR_BELOW)
    body = ndimage.binary_fill_holes(~outside)
    out = {"air": reference(image, "air", ndimage.binary_erosion(outside, iterations=2))}
    fat = (hu > FAT_WINDOW[0]) & (hu < FAT_WINDOW[1]) & body
    out["fat"] = reference(image, "fat", ndimage.binary_erosion(fat, iterations=1))
    if segmentation is not None:
        out["muscle"] = reference(image, "muscle", _paraspinal(image, segmentation, body))
    return out


def _outside(air):
    """The air connected to the image border."""
    from scipy import ndimage

    lab, _ = ndimage.label(air)
    faces = [lab[0], lab[-1], lab[:, 0], lab[:, -1], lab[:, :, 0], lab[:, :, -1]]
    border = np.unique(np.concatenate([f.ravel() for f in faces]))
    return np.isin(lab, border[border > 0])


def _paraspinal(image: CTImage, segmentation, body):
    from scipy import ndimage

    seg = segmentation
    if seg.shape != image.shape:
        raise MeshError(f"the segmentation's grid {seg.shape} is not the CT's {image.shape}: "
                        "resample it with Segmentation.on_grid(image)")
    bone = seg.labels > 0
    if not bone.any():
        raise MeshError("the segmentation is empty: no vertebra to find the muscles behind")
    ijk = np.argwhere(bone)
    x = image.origin[0] + np.arange(image.shape[0]) * image.spacing[0]
    y = image.origin[1] + np.arange(image.shape[1]) * image.spacing[1]
    cx, y_back = x[ijk[:, 0]].mean(), y[ijk[:, 1]].max()
    box = (np.abs(x[:, None] - cx) < 45.0) & (y[None, :] > y_back - 20.0) \
        & (y[None, :] < y_back + 40.0)
    m = (image.hu > MUSCLE_WINDOW[0]) & (image.hu < MUSCLE_WINDOW[1]) & box[:, :, None] & body
    k = np.arange(image.shape[2])
    m &= ((k >= ijk[:, 2].min()) & (k <= ijk[:, 2].max()))[None, None, :]
    m &= ~ndimage.binary_dilation(bone, iterations=2)
    return ndimage.binary_erosion(m, iterations=1)


def calibrate(references: dict, densities: dict, *, min_r2: float = MIN_R2) -> Calibration:
    """The least-squares line density = intercept + slope x HU through the references' mean HU
    and the equivalent densities (mg/cm^3) given for them (by name); ``references``: name ->
    :class:`Reference` or a mean HU. The Calibration's ``r2`` is the fit's, its ``source``
    lists each reference's HU, density and residual."""
    names = [n for n in densities if n in references]
    missing = sorted(set(densities) - set(references))
    if missing:
        raise MaterialError(f"no reference region for {', '.join(missing)} (found: "
                            f"{', '.join(references) or 'none'})")
    if len(names) < 2:
        raise MaterialError(f"a calibration needs at least 2 references with densities, got "
                            f"{len(names)} ({', '.join(names) or 'none'})")
    hu = np.array([getattr(references[n], "hu_mean", references[n]) for n in names], float)
    rho = np.array([densities[n] for n in names], float)
    if not (np.isfinite(hu).all() and np.isfinite(rho).all()):
        raise MaterialError("reference HU values and densities must be finite")
    if np.ptp(hu) <= 0:
        raise MaterialError(f"the references {', '.join(names)} read the same HU")
    slope, intercept, r2, resid = fit_line(hu, rho)
    table = "; ".join(f"{n} {h:.1f} HU -> {d:g} mg/cm^3 (residual {e:+.1f})"
                      for n, h, d, e in zip(names, hu, rho, resid))
    if slope <= 0 or r2 < min_r2:
        raise MaterialError(f"internal calibration: r^2 = {r2:.3f} (< {min_r2}) or a slope "
                            f"{slope:.3g} <= 0 over {table}: a reference region or its density "
                            "is wrong")
    return Calibration(slope, intercept, r2, f"internal references: {table}")
