"""CT image in, voxel model out: readers, HU-to-density calibration, density-to-modulus mapping.

Axes follow the project convention, which is DICOM's patient frame (LPS): x towards the patient's
left, y posterior, z cranial; lengths in mm. ``CTImage.origin`` is the centre of voxel (0, 0, 0).
Densities are QCT equivalent mineral densities in mg/cm^3 (the phantom's material, K2HPO4 or HA).

Pipeline: :func:`read_nifti` / :func:`read_dicom_series` (or a NumPy array) -> :class:`CTImage`;
:class:`Calibration` (phantom rods or two internal references) -> density per voxel;
:func:`ct_voxel_model` -> :class:`fem.VoxelModel` with E from a law of :mod:`fem.meshes.bone`.
:func:`synthetic_vertebra_phantom` makes a seeded test image so that nothing is downloaded.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputFileError, MaterialError, MeshError, ParameterError
from ..validate import finite, in_range, vector3
from ..voxel import VoxelModel
from .bone import get_law, trabecular_modulus

logger = logging.getLogger(__name__)

CT_EXTRA = 'pip install "vertebra-fem[ct]"'
MIN_R2 = 0.95


def optional_module(module: str):
    """The module, or an InputFileError naming the extra that installs it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise InputFileError(f"reading this image needs {module}: {CT_EXTRA}") from None


@dataclass(frozen=True)
class CTImage:
    """Hounsfield units ``hu`` (nx, ny, nz), voxel ``spacing`` (mm) and ``origin`` (mm, centre of
    voxel (0, 0, 0))."""

    hu: np.ndarray
    spacing: tuple = (1.0, 1.0, 1.0)
    origin: tuple = (0.0, 0.0, 0.0)

    def __post_init__(self):
        try:
            hu = np.asarray(self.hu, dtype=float)
        except (TypeError, ValueError):
            raise MeshError("CT image values must be numbers (HU)") from None
        if hu.ndim != 3 or min(hu.shape) < 1:
            raise MeshError(f"CT image must be a 3-D array (nx, ny, nz), got shape {hu.shape}")
        if not np.isfinite(hu).all():
            i = tuple(int(v) for v in np.argwhere(~np.isfinite(hu))[0])
            raise MeshError(f"CT image has a non-finite value at voxel {i}")
        sp = vector3("CT spacing", self.spacing, error=MeshError)
        if min(sp) <= 0:
            raise MeshError(f"CT voxel spacing must be > 0 mm, got {sp}")
        object.__setattr__(self, "hu", hu)
        object.__setattr__(self, "spacing", sp)
        object.__setattr__(self, "origin", vector3("CT origin", self.origin, error=MeshError))

    @property
    def shape(self) -> tuple:
        return self.hu.shape


# ---------------------------------------------------------------------------------- readers

def axis_aligned(dirs, where: str):
    """Permutation and signs mapping array axes onto x, y, z for direction vectors ``dirs``
    (3, 3), one row per array axis; refuses oblique frames."""
    d = np.asarray(dirs, dtype=float)
    d = d / np.linalg.norm(d, axis=1, keepdims=True)
    axis = np.argmax(np.abs(d), axis=1)
    if sorted(axis) != [0, 1, 2] or np.abs(np.abs(d[np.arange(3), axis]) - 1.0).max() > 1e-4:
        raise InputFileError(f"{where}: the image axes are oblique to the scanner axes "
                             f"(direction cosines {np.round(d, 4).tolist()}); resample it onto "
                             f"axis-aligned voxels first")
    return axis, np.sign(d[np.arange(3), axis])


def to_xyz(data, spacing, first, axis, sign):
    """Reorder array axes to x, y, z with increasing coordinates; returns (data, spacing,
    origin) where ``first`` is the position of element (0, 0, 0)."""
    order = np.argsort(axis)
    data = np.transpose(data, order)
    sp = np.asarray(spacing, float)[order]
    sg = sign[order]
    origin = np.asarray(first, float).copy()
    for a in range(3):
        if sg[a] < 0:
            data = np.flip(data, axis=a)
            origin[a] -= (data.shape[a] - 1) * sp[a]
    return np.ascontiguousarray(data), tuple(sp), tuple(origin)


def read_nifti(path) -> CTImage:
    """A CT image from a NIfTI file (needs nibabel). NIfTI world coordinates (RAS+) are turned
    into the project's LPS axes; the affine must be axis-aligned (flips and axis permutations
    are undone); oblique affines are refused."""
    nib = optional_module("nibabel")
    path = Path(path)
    if not path.is_file():
        raise InputFileError(f"{path}: no such file")
    try:
        img = nib.load(str(path))
        data = np.asarray(img.get_fdata(), dtype=float)
    except Exception as exc:
        raise InputFileError(f"{path}: not a readable NIfTI image ({exc})") from None
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise InputFileError(f"{path}: a 3-D image is needed, got shape {data.shape}")
    affine = np.diag([-1.0, -1.0, 1.0, 1.0]) @ np.asarray(img.affine, dtype=float)
    m = affine[:3, :3]
    spacing = np.linalg.norm(m, axis=0)
    if (spacing <= 0).any():
        raise InputFileError(f"{path}: the affine has a zero voxel size {spacing.tolist()}")
    axis, sign = axis_aligned(m.T, str(path))
    hu, sp, origin = to_xyz(data, spacing, affine[:3, 3], axis, sign)
    return CTImage(hu, sp, origin)


def read_dicom_series(folder) -> CTImage:
    """A CT image from a folder holding one DICOM series, one slice per file (needs pydicom).

    Slices are sorted by ImagePositionPatient along the slice normal (row x column direction);
    pixel values become HU through RescaleSlope and RescaleIntercept; in-plane spacing is
    PixelSpacing, slice spacing comes from the positions. A series whose slices differ in
    orientation, size, pixel spacing or series UID, repeat a position or are unevenly spaced is
    refused, naming the file.
    """
    pydicom = optional_module("pydicom")
    folder = Path(folder)
    if not folder.is_dir():
        raise InputFileError(f"{folder}: not a folder")
    files = sorted(p for p in folder.iterdir()
                   if p.is_file() and not p.name.startswith(".") and p.name != "DICOMDIR")
    if not files:
        raise InputFileError(f"{folder}: no DICOM files")
    slices = []
    for p in files:
        try:
            ds = pydicom.dcmread(str(p))
            iop = np.array(ds.ImageOrientationPatient, dtype=float)
            ipp = np.array(ds.ImagePositionPatient, dtype=float)
            ps = tuple(float(v) for v in ds.PixelSpacing)
            arr = ds.pixel_array.astype(float)
            slope = float(getattr(ds, "RescaleSlope", 1.0))
            intercept = float(getattr(ds, "RescaleIntercept", 0.0))
            uid = str(getattr(ds, "SeriesInstanceUID", ""))
            thickness = getattr(ds, "SliceThickness", None)  # read where a lone slice needs it
        except Exception as exc:  # pydicom raises many kinds on a damaged file
            raise InputFileError(f"{p}: not a readable CT slice ({type(exc).__name__}: "
                                 f"{exc})") from None
        values = np.concatenate([iop, ipp, ps, [slope, intercept]])
        if iop.shape != (6,) or ipp.shape != (3,) or len(ps) != 2 \
                or not np.isfinite(values).all() or min(ps) <= 0 or arr.ndim != 2:
            raise InputFileError(f"{p}: not a usable CT slice (orientation {iop.tolist()}, "
                                 f"position {ipp.tolist()}, pixel spacing {list(ps)}, rescale "
                                 f"{slope:g} / {intercept:g}, pixel array {arr.shape})")
        slices.append((p, iop, ipp, ps, arr * slope + intercept, uid, thickness))
    p0, iop0, _, ps0, a0, uid0, _ = slices[0]
    for p, iop, _, ps, arr, uid, _ in slices[1:]:
        if np.abs(iop - iop0).max() > 1e-4:
            raise InputFileError(f"{p}: slice orientation {iop.tolist()} differs from "
                                 f"{p0.name}'s {iop0.tolist()}")
        if arr.shape != a0.shape:
            raise InputFileError(f"{p}: slice size {arr.shape} differs from {p0.name}'s "
                                 f"{a0.shape}")
        if np.abs(np.subtract(ps, ps0)).max() > 1e-6:
            raise InputFileError(f"{p}: pixel spacing {ps} differs from {p0.name}'s {ps0}")
        if uid != uid0:
            raise InputFileError(f"{p}: belongs to another series ({uid}) than {p0.name}")
    row, col = iop0[:3], iop0[3:]
    normal = np.cross(row, col)
    pos = np.array([s[2] @ normal for s in slices])
    order = np.argsort(pos, kind="stable")
    slices = [slices[i] for i in order]
    pos = pos[order]
    if len(slices) > 1:
        gaps = np.diff(pos)
        if gaps.min() < 1e-6:
            i = int(np.argmin(gaps))
            raise InputFileError(f"{slices[i + 1][0]}: same slice position as "
                                 f"{slices[i][0].name}")
        dz = float(np.median(gaps))
        bad = np.abs(gaps - dz) > 1e-3 * dz + 1e-4
        if bad.any():
            i = int(np.argmax(bad))
            raise InputFileError(f"{slices[i + 1][0]}: slice gap {gaps[i]:g} mm differs from "
                                 f"the series' {dz:g} mm (missing or extra slice?)")
    else:
        try:
            dz = float(slices[0][6] or 1.0)
        except Exception as exc:
            raise InputFileError(f"{slices[0][0]}: no usable SliceThickness ({exc})") from None
        if not (np.isfinite(dz) and dz > 0):
            raise InputFileError(f"{slices[0][0]}: SliceThickness {dz:g} mm is not a length")
    vol = np.stack([s[4] for s in slices], axis=0)           # (k, row index r, column index c)
    data = np.transpose(vol, (2, 1, 0))                      # (c, r, k)
    spacing = (ps0[1], ps0[0], dz)                           # column step, row step, slice step
    axis, sign = axis_aligned(np.stack([row, col, normal]), str(folder))
    hu, sp, origin = to_xyz(data, spacing, slices[0][2], axis, sign)
    return CTImage(hu, sp, origin)


# ------------------------------------------------------------------------------ calibration

@dataclass(frozen=True)
class Calibration:
    """density (mg/cm^3) = intercept + slope * HU: linear calibration of CT numbers to QCT
    equivalent mineral density (linear and repeatable up to 1 750 mg/cm^3, Crookshank et al.
    2014). ``r2`` is the fit's coefficient of determination (None for two exact points)."""

    slope: float
    intercept: float
    r2: float | None = None
    source: str = ""

    def __post_init__(self):
        in_range("calibration slope", self.slope, 0.0, lo_open=True, unit="mg/cm^3 per HU",
                 error=MaterialError)
        finite("calibration intercept", self.intercept, MaterialError)

    @classmethod
    def from_phantom(cls, hu_values, densities_mg_cm3) -> Calibration:
        """Least-squares line through the rods' mean HU and known densities (>= 2 rods);
        refuses a fit with r^2 < 0.95 (a misplaced region or a mislabelled rod)."""
        hu = np.asarray(hu_values, dtype=float).ravel()
        rho = np.asarray(densities_mg_cm3, dtype=float).ravel()
        if hu.size != rho.size:
            raise MaterialError(f"phantom calibration: {hu.size} HU values for {rho.size} "
                                f"densities")
        if hu.size < 2:
            raise MaterialError(f"phantom calibration needs at least 2 rods, got {hu.size}")
        if not (np.isfinite(hu).all() and np.isfinite(rho).all()):
            raise MaterialError("phantom calibration: HU values and densities must be finite")
        if np.ptp(hu) <= 0:
            raise MaterialError("phantom calibration: all rods have the same HU")
        slope, intercept, r2, _ = fit_line(hu, rho)
        if r2 < MIN_R2:
            raise MaterialError(f"phantom calibration: r^2 = {r2:.3f} < {MIN_R2} over "
                                f"{hu.size} rods (HU {hu.round(1).tolist()}, densities "
                                f"{rho.tolist()} mg/cm^3): check the rods' regions and labels")
        if slope <= 0:
            raise MaterialError(f"phantom calibration: density falls with HU (slope {slope:g})")
        return cls(slope, intercept, r2, f"phantom, {hu.size} rods")

    @classmethod
    def from_rods(cls, image: CTImage, rods) -> Calibration:
        """:meth:`from_phantom` on the rods of a phantom in the image: each rod a mapping with
        ``centre`` (x, y mm), ``radius`` (mm) and ``density`` (mg/cm^3), as
        :func:`synthetic_vertebra_phantom`'s ``truth["rods"]``; the HU are :func:`rod_means`
        (the first rod's radius for all)."""
        rods = list(rods)
        if not rods:
            raise MaterialError("phantom calibration needs at least 2 rods, got none")
        hu = rod_means(image, [r["centre"] for r in rods], rods[0]["radius"])
        return cls.from_phantom(hu, [r["density"] for r in rods])

    @classmethod
    def from_internal(cls, hu_air, hu_ref, density_ref, *, density_air: float = 0.0
                      ) -> Calibration:
        """Phantomless calibration through two internal references: air (``hu_air``, about
        -1000 HU) and a tissue of known equivalent density (blood or fat, ``hu_ref``,
        ``density_ref`` mg/cm^3). Both densities must be on the scale of the result: the
        default air density 0 is an assumption; phantomless methods (Lee et al. 2017, Bone
        103:325) assign air and the reference scanner-calibrated equivalent densities."""
        ha = finite("hu_air", hu_air, MaterialError)
        hr = finite("hu_ref", hu_ref, MaterialError)
        dr = finite("density_ref", density_ref, MaterialError)
        da = finite("density_air", density_air, MaterialError)
        if hr <= ha:
            raise MaterialError(f"internal calibration: the reference ({hr:g} HU) must read "
                                f"higher than air ({ha:g} HU)")
        slope = (dr - da) / (hr - ha)
        if slope <= 0:
            raise MaterialError(f"internal calibration: density_ref {dr:g} must exceed "
                                f"density_air {da:g} mg/cm^3")
        return cls(slope, da - slope * ha, None, "internal references (air and tissue)")

    def density(self, hu):
        """Equivalent mineral density (mg/cm^3) of CT numbers ``hu``."""
        return self.intercept + self.slope * np.asarray(hu, dtype=float)


def fit_line(hu, rho):
    """The least-squares line rho = intercept + slope x hu: (slope, intercept, r^2, residuals);
    r^2 is 0 where the densities do not vary."""
    hu, rho = np.asarray(hu, dtype=float), np.asarray(rho, dtype=float)
    slope, intercept = np.polyfit(hu, rho, 1)
    resid = rho - (intercept + slope * hu)
    ss = float(((rho - rho.mean()) ** 2).sum())
    r2 = 1.0 - float((resid ** 2).sum()) / ss if ss > 0 else 0.0
    return float(slope), float(intercept), r2, resid


def rod_means(image: CTImage, centres_xy, radius: float) -> np.ndarray:
    """Mean HU inside vertical (z) cylinders of ``radius`` mm around each (x, y) centre in mm:
    the regions of interest of calibration rods that run along the scan axis."""
    r = in_range("rod radius", radius, 0.0, lo_open=True, unit="mm", error=MeshError)
    x = image.origin[0] + image.spacing[0] * np.arange(image.shape[0])
    y = image.origin[1] + image.spacing[1] * np.arange(image.shape[1])
    out = []
    for cx, cy in np.asarray(centres_xy, dtype=float).reshape(-1, 2):
        m = (x[:, None] - cx) ** 2 + (y[None, :] - cy) ** 2 <= r * r
        if not m.any():
            raise MeshError(f"rod at ({cx:g}, {cy:g}) mm, radius {r:g} mm covers no voxel")
        out.append(float(image.hu[m].mean()))
    return np.array(out)


# -------------------------------------------------------------------------- voxel model

def _blocks(a, c, reduce="mean"):
    nx, ny, nz = (n // c for n in a.shape)
    a = a[:nx * c, :ny * c, :nz * c].reshape(nx, c, ny, c, nz, c)
    return a.mean(axis=(1, 3, 5)) if reduce == "mean" else a.sum(axis=(1, 3, 5))


def voxel_density(image: CTImage, calibration: Calibration, *, coarsen: int = 1, labels=None):
    """(density mg/cm^3, labelled fraction or None, spacing mm) per (coarsened) voxel.

    Coarsening averages DENSITY over coarsen^3 blocks (before any law: the laws are nonlinear and
    the density is what the scanner averages); voxels that do not fill a whole block at the high
    end of each axis are dropped. With ``labels``, a block's density is the mean over its
    labelled (non-zero) voxels, and its labelled fraction is returned."""
    c = int(coarsen)
    if c != coarsen or c < 1 or c > min(image.shape):
        raise ParameterError(f"coarsen must be an integer from 1 to {min(image.shape)}, got {coarsen}")
    rho = calibration.density(image.hu)
    sp = tuple(h * c for h in image.spacing)
    if labels is not None:
        lab = np.asarray(labels)
        if lab.shape != image.shape:
            raise MeshError(f"label image shape {lab.shape} differs from the CT's {image.shape}")
        bone = lab != 0
        if c == 1:
            return rho, bone.astype(float), sp
        n = _blocks(bone.astype(float), c, "sum")
        s = _blocks(np.where(bone, rho, 0.0), c, "sum")
        mean = np.where(n > 0, s / np.maximum(n, 1), 0.0)
        return mean, n / c ** 3, sp
    if any(n % c for n in image.shape):
        logger.info("coarsening by %d drops the last %s voxels along x, y, z", c,
                    tuple(n % c for n in image.shape))
    return (rho if c == 1 else _blocks(rho, c)), None, sp


def ct_voxel_model(image: CTImage, calibration: Calibration, *, law: str = "morgan2003",
                   threshold_mg_cm3: float | None = None, labels=None, coarsen: int = 1,
                   nu: float = 0.3, E_min: float = 1.0, rule: str = "equivalent",
                   keep_largest: bool = True) -> VoxelModel:
    """A :class:`fem.VoxelModel` of the bone in ``image``: HU -> density (``calibration``) ->
    E per voxel (``law`` of :mod:`fem.meshes.bone`, floored at ``E_min`` MPa).

    Bone is where the (coarsened) density reaches ``threshold_mg_cm3``, or, with ``labels``
    (same shape as the image), where the label is non-zero (label 0 is empty; after coarsening,
    blocks at least half labelled), and above the threshold too when both are given. With
    ``keep_largest`` only the largest face-connected piece is kept: islands left by noise would
    have no support. The grid's faces are named xmin..zmax as in :class:`fem.VoxelModel`; its
    corner lies half a (fine) voxel below the image origin.
    """
    get_law(law)
    if threshold_mg_cm3 is None and labels is None:
        raise MaterialError("give threshold_mg_cm3 or labels to say which voxels are bone")
    rho, frac, sp = voxel_density(image, calibration, coarsen=coarsen, labels=labels)
    bone = np.ones(rho.shape, bool) if frac is None else frac >= 0.5
    if threshold_mg_cm3 is not None:
        t = finite("threshold_mg_cm3", threshold_mg_cm3, MaterialError)
        bone &= rho >= t
    if not bone.any():
        raise MaterialError(f"no bone voxel: densities span {rho.min():.1f} to {rho.max():.1f} "
                            f"mg/cm^3 (threshold {threshold_mg_cm3})")
    if keep_largest:
        from scipy import ndimage

        lab, n = ndimage.label(bone)
        if n > 1:
            sizes = np.bincount(lab.ravel())[1:]
            bone = lab == 1 + int(np.argmax(sizes))
            logger.info("kept the largest of %d connected pieces (%d of %d voxels)", n,
                        int(sizes.max()), int(sizes.sum()))
    E = np.zeros(rho.shape)
    b = np.clip(rho[bone], 1e-6, None)
    E[bone] = trabecular_modulus(b, law, rule=rule, E_min=E_min)
    origin = tuple(o - h / 2 for o, h in zip(image.origin, image.spacing))
    return VoxelModel(E, spacing=sp, origin=origin, nu=nu, mask=bone)


# ------------------------------------------------------------------------------ phantom

PHANTOM_HU = (10.0, 1.25)
"""(a HU, b HU per mg/cm^3) of the phantom's HU = a + b rho. Assumption: typical of clinical
scanners at 120 kVp, where K2HPO4 calibration slopes are about 1.1-1.4 HU per mg/cm^3 and the
zero-density rod reads within a few tens of HU of water."""

SOFT_TISSUE_HU = 40.0
ROD_DENSITIES = (0.0, 50.0, 100.0, 200.0)


def synthetic_vertebra_phantom(shape=(64, 64, 48), spacing=(0.5, 0.5, 0.6), *,
                               bmd: float = 100.0, cortex_density: float = 700.0,
                               gradient: float = 0.6, seed: int = 0, noise_hu: float = 15.0,
                               rods: bool = True, rod_radius: float = 1.5):
    """A seeded synthetic QCT of a vertebral body: (CTImage, truth).

    An elliptic cylinder (semi-axes 31 % and 28 % of the field's x and y extent) spans the whole
    z range; its outer voxel layer (lateral shell one voxel thick, and the first and last slices
    as endplates) has ``cortex_density``; inside, the trabecular density rises from the centre
    outwards as 1 + ``gradient`` r^2 (r the normalised elliptic radius) scaled so that its mean
    is exactly ``bmd`` mg/cm^3. Soft tissue around it reads 40 HU. With ``rods``, four K2HPO4
    rods (0, 50, 100, 200 mg/cm^3) of ``rod_radius`` mm run along z beside the body. Densities map
    to HU = a + b rho (``PHANTOM_HU``); Gaussian noise of ``noise_hu`` is added everywhere.

    truth: bmd, density (noise-free, mg/cm^3; NaN outside bone and rods), mask (body), cortex,
    trabecular (masks), rods (list of dicts centre (x, y) mm, radius, density), a, b.
    """
    from scipy import ndimage

    shape = tuple(int(n) for n in shape)
    img0 = CTImage(np.zeros(shape), spacing)
    in_range("bmd", bmd, 0.0, 1750.0, lo_open=True, unit="mg/cm^3", error=MaterialError)
    sp = np.asarray(img0.spacing)
    L = sp * np.array(shape)
    x = (np.arange(shape[0]) + 0.5) * sp[0]
    y = (np.arange(shape[1]) + 0.5) * sp[1]
    cx, cy = 0.41 * L[0], 0.5 * L[1]
    ax, ay = 0.31 * L[0], 0.28 * L[1]
    r2 = ((x[:, None] - cx) / ax) ** 2 + ((y[None, :] - cy) / ay) ** 2
    body = np.repeat((r2 <= 1.0)[:, :, None], shape[2], axis=2)
    inner = ndimage.binary_erosion(body, border_value=0)
    cortex = body & ~inner
    f = np.repeat(1.0 + gradient * r2[:, :, None], shape[2], axis=2)
    rho = np.full(shape, np.nan)
    rho[inner] = bmd * f[inner] / f[inner].mean()
    rho[cortex] = cortex_density
    rod_list = []
    if rods:
        rx = L[0] - 2.0 * rod_radius - 0.5
        ys = np.linspace(0.15, 0.85, len(ROD_DENSITIES)) * L[1]
        for ry, d in zip(ys, ROD_DENSITIES):
            m = (x[:, None] - rx) ** 2 + (y[None, :] - ry) ** 2 <= rod_radius ** 2
            rho[np.repeat(m[:, :, None], shape[2], axis=2)] = d
            rod_list.append(dict(centre=(float(rx), float(ry)), radius=float(rod_radius),
                                 density=float(d)))
    a, b = PHANTOM_HU
    hu = np.where(np.isnan(rho), SOFT_TISSUE_HU, a + b * np.nan_to_num(rho))
    hu = hu + np.random.default_rng(seed).normal(0.0, float(noise_hu), shape)
    origin = tuple(h / 2 for h in sp)
    truth = dict(bmd=float(bmd), density=rho, mask=body, cortex=cortex, trabecular=inner,
                 rods=rod_list, a=a, b=b)
    return CTImage(hu, tuple(sp), origin), truth
