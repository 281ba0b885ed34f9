"""Patient-specific segments from a CT and its vertebra segmentation.

:func:`patient_segment_model` takes a :class:`~fem.meshes.ct.CTImage`, a segmentation
(:func:`fem.meshes.segmentation.read_segmentation`: TotalSegmentator's masks) and a HU-to-density
:class:`~fem.meshes.ct.Calibration`, and builds the same kind of hex8 voxel segment as the
parametric and shape-model builders, so that fractures, PVP/PKP, load cases, metrics, studies
and the report run on it unchanged:

1. **Resampling.** The selected levels' masks are resampled onto an isotropic grid of
   ``voxel_size`` (finer or coarser than the scan): each level's mask trilinearly, as a volume
   fraction, kept where it reaches one half (a smoother surface than nearest-neighbour
   staircases; a voxel claimed by two levels goes to the cranial one), the HU trilinearly.
2. **Parts, discs and anatomy.** As for the shape model (:func:`fem.meshes.ssm.
   segment_from_levels`, whose module docstring says how): the posterior wall on the
   mid-sagittal strip splits body from posterior elements; the body's shell is cortex, the top
   and bottom voxels of its columns the bony endplates, the rest the trabecular core; discs
   (annulus and nucleus) fill the space between adjacent bodies, sharing nodes with the
   endplates; centres, endplate centres and pedicle axes are measured on the voxels. The
   distance of a voxel to the level's surface is its Euclidean distance to the nearest voxel
   outside the resampled mask less half a voxel. A clinical scan's voxel pedicle is too
   ragged to fit an axis on (fits of 0 to 60 degrees on the shared scan), so each pedicle axis
   runs through the pedicle's isthmus (found on the voxels) at the trajectory angle of
   :data:`fem.meshes.ssm.TRAJECTORY_DEG` from the level's anterior direction.
3. **Moduli.** The trabecular core gets one modulus per voxel from its calibrated density
   through ``law`` (:mod:`fem.meshes.bone`), floored at ``E_min``. Clinical CT (0.5-3 mm voxels)
   does not resolve the 0.2-0.5 mm cortex and bony endplates (partial volume blurs them into
   the trabecular bone beside them), so these layers take their default (or ``materials``)
   moduli, thickness-compensated at the voxel size as in the other builders; so do the
   posterior elements and the discs.

The model keeps the project's axes (x the patient's left, y posterior, z cranial: the scan's
LPS axes) and is translated like the shape model (``metadata["ct"]["translation"]``: model
position = scan position + translation, mm). ``metadata["ct"]`` also records the calibration,
the law, and per level the mean HU and density of the trabecular core.
"""

from __future__ import annotations

import logging

import numpy as np

from ..errors import MeshError, ParameterError
from ..limits import check as check_limit
from .bone import get_law, trabecular_modulus
from .ct import Calibration, CTImage
from .segmentation import Segmentation, grid_indices, read_segmentation
from .ssm import segment_from_levels

logger = logging.getLogger(__name__)

#: empty voxels kept around the selected levels' bounding box (mm)
MARGIN = 6.0


def patient_segment_model(image: CTImage, segmentation, calibration: Calibration, *,
                          levels: str = "L1-L3", voxel_size: float | None = None,
                          law: str = "morgan2003", E_min: float = 1.0, materials=None,
                          cortex: float = 0.5, endplate: float = 0.25):
    """A hex8 voxel model of ``levels`` of a patient (module docstring).

    ``image``: the CT (HU); ``segmentation``: a :class:`~fem.meshes.segmentation.Segmentation`
    or a path :func:`~fem.meshes.segmentation.read_segmentation` reads (resampled onto the CT's
    grid); ``calibration``: HU to equivalent mineral density (mg/cm^3); ``voxel_size``: mm,
    default the scan's finest spacing; ``law``, ``E_min``: the trabecular density-modulus law
    and its floor (MPa); ``materials``, ``cortex``, ``endplate``: the other parts' materials and
    the physical layer thicknesses (mm), as :func:`fem.meshes.ssm.ssm_segment_model`.
    """
    if not isinstance(image, CTImage):
        raise ParameterError(f"image must be a fem.meshes.ct.CTImage, got {type(image).__name__}")
    if not isinstance(calibration, Calibration):
        raise ParameterError("calibration must be a fem.meshes.ct.Calibration (from_phantom or "
                             f"from_internal), got {type(calibration).__name__}")
    get_law(law)
    seg = (segmentation if isinstance(segmentation, Segmentation)
           else read_segmentation(segmentation))
    seg = seg.on_grid(image)
    names = seg.select(levels)
    _check_in_view(seg, names)
    h = check_limit("voxel_size", min(image.spacing) if voxel_size is None else voxel_size)
    origin, shape = _grid(seg, names, h)
    # the segmentation is on the image's grid: one set of sampling points serves both
    pts = np.meshgrid(*grid_indices(image, origin + 0.5 * h, (h, h, h), shape), indexing="ij")
    lvl, dist = _levels_on_grid(seg, names, pts, h)
    hu = _sample(image.hu, pts)
    m, made = segment_from_levels(lvl, dist, origin, h, names, materials=materials,
                                  cortex=cortex, endplate=endplate)
    cores = _trabecular_moduli(m, names, hu, calibration, law, E_min)
    m.source = f"<patient CT {seg.source}>"
    m.metadata["ct"] = dict(segmentation=seg.source, calibration=dict(
        slope=calibration.slope, intercept=calibration.intercept, r2=calibration.r2,
        source=calibration.source), law=law, E_min=E_min, scan_spacing=list(image.spacing),
        translation=made["translation"].tolist(), levels=cores,
        separated_voxels=made["separated_voxels"],
        nucleus_area_fraction=made["nucleus_area_fraction"])
    logger.info("patient %s at %g mm: %d elements, %d nodes", "-".join(names), h,
                m.n_elements, m.n_nodes)
    return m


def _check_in_view(seg: Segmentation, names) -> None:
    """Refuse a level cut by the image's edge: its mask reaches the first or last slice of an
    axis (the field of view holds only part of the vertebra)."""
    for n in names:
        m = seg.mask(n)
        for axis, side in ((0, "x"), (1, "y"), (2, "z")):
            ends = np.take(m, [0, m.shape[axis] - 1], axis=axis)
            if ends.any():
                raise MeshError(f"{seg.source}: {n}'s mask reaches the image's {side} edge: the "
                                "scan holds only part of that vertebra; choose levels the field "
                                "of view holds whole")


def _grid(seg: Segmentation, names, h: float):
    """Corner and shape of the isotropic grid around the levels' voxels (plus :data:`MARGIN`)."""
    sel = np.isin(seg.labels, [k for k, n in seg.names.items() if n in names])
    ijk = np.argwhere(sel)
    sp, o = np.asarray(seg.spacing), np.asarray(seg.origin)
    lo = o + (ijk.min(axis=0) - 0.5) * sp - MARGIN
    hi = o + (ijk.max(axis=0) + 0.5) * sp + MARGIN
    shape = tuple(int(n) for n in np.ceil((hi - lo) / h))
    if np.prod(shape) > 4e8:
        raise ParameterError(f"a {h:g} mm grid around {names[0]}-{names[-1]} has "
                             f"{np.prod(shape):.2g} voxels: choose a larger voxel_size")
    return lo, shape


def _sample(values, pts):
    """``values`` at the fractional voxel indices ``pts`` (three arrays), trilinearly; 0
    outside."""
    from scipy.ndimage import map_coordinates

    return map_coordinates(np.asarray(values, dtype=float), pts, order=1, mode="constant",
                           cval=0.0)


def _levels_on_grid(seg: Segmentation, names, pts, h: float):
    """(level index per voxel of the new grid, whose centres sit at the fractional indices
    ``pts`` of the segmentation, -1 empty; distance of each occupied voxel to its level's
    surface, mm)."""
    from scipy.ndimage import distance_transform_edt

    shape = pts[0].shape
    lvl = np.full(shape, -1, dtype=np.int16)
    dist = np.full(shape, np.inf, dtype=np.float32)
    for i, n in enumerate(names):
        frac = _sample(seg.mask(n).astype(float), pts)
        inside = (frac >= 0.5) & (lvl < 0)
        if not inside.any():
            raise MeshError(f"{seg.source}: {n}'s mask leaves no voxel at {h:g} mm")
        lvl[inside] = i
        d = (distance_transform_edt(frac >= 0.5) - 0.5) * h
        dist[inside] = d[inside]
    return lvl, dist


def _trabecular_moduli(m, names, hu, calibration: Calibration, law: str, E_min: float) -> dict:
    """Set each trabecular-core voxel's modulus from its calibrated density; returns, per
    level, the core's mean HU, density (mg/cm^3) and modulus (MPa)."""
    ijk = m.metadata["voxel_labels"]["ijk"]
    out = {}
    for n in names:
        el = m.regions.get(f"{n}/trabecular")
        if el is None or not len(el):
            raise MeshError(f"{n}: no trabecular core at this voxel size")
        i, j, k = ijk[el].T
        h_el = hu[i, j, k]
        rho = calibration.density(h_el)
        if (rho <= 0).mean() > 0.5:
            raise MeshError(f"{n}: the calibration gives {100 * (rho <= 0).mean():.0f} % of the "
                            f"core a density <= 0 mg/cm^3 (mean core {h_el.mean():.0f} HU): "
                            "check the calibration")
        E = trabecular_modulus(np.clip(rho, 1e-3, None), law, E_min=E_min)
        m.E[el] = E
        out[n] = dict(hu_mean=float(h_el.mean()), density_mg_cm3=float(rho.mean()),
                      E_mean_mpa=float(np.mean(E)), voxels=int(len(el)))
    return out
