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
   posterior elements and the discs. The cortex's thickness is measured on the image
   (:func:`measure_cortex`, ``cortex="image"``, the default) and used where the image resolves
   it on every level (at least :data:`RESOLVED_VOXELS` voxels thick: a high-resolution or
   micro-CT scan); elsewhere it is :data:`CORTEX_DEFAULT`, as on the shared 3 mm scan, where
   it measures about 1 mm, blurred, under the 6 mm the criterion asks.

The model keeps the project's axes (x the patient's left, y posterior, z cranial: the scan's
LPS axes) and is translated like the shape model (``metadata["ct"]["translation"]``: model
position = scan position + translation, mm). ``metadata["ct"]`` also records the calibration,
the law, and per level the mean HU and density of the trabecular core.
"""

from __future__ import annotations

import logging
import math

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
#: the cortex thickness (mm) where the image does not resolve it (``cortex="image"``): the
#: builders' default shell (fem.meshes.vertebra.LevelDims), an assumption for the osteoporotic
#: lumbar body
CORTEX_DEFAULT = 0.5
#: a layer counts as resolved when it spans at least this many of the scan's largest spacing
RESOLVED_VOXELS = 2.0
#: depth (mm) below the body's surface the cortex is looked for in; deeper is the core
CORTEX_BAND = 5.0


def measure_cortex(image: CTImage, mask, *, band: float = CORTEX_BAND) -> dict:
    """The cortex thickness of one vertebral body from the image, where the image resolves it.

    On the body (the ``mask``'s voxels anterior of its centroid, leaving the posterior elements
    out), each voxel's depth is its distance to the nearest voxel outside the mask less half a
    voxel. The cortex is what is brighter than half-way between the core (the median HU deeper
    than ``band`` mm) and the shell (the 95th percentile HU within 2 mm of the surface); its
    thickness is the integral over depth of the share of voxels that bright (a full-width-at-
    half-maximum measure averaged over the surface: a shell of uniform thickness t gives t).
    The thickness counts as resolved when it spans at least :data:`RESOLVED_VOXELS` of the
    scan's largest spacing; a thinner one is blurred by partial volume into the bone beside it
    and over-estimated, so it is not used (clinical CT of 0.5-3 mm voxels does not resolve the
    0.2-0.5 mm vertebral cortex).

    Returns ``{"thickness_mm": t, "resolved": bool, "core_hu", "shell_hu", "spacing_mm"}``.
    """
    from scipy.ndimage import distance_transform_edt

    mask = np.asarray(mask, bool)
    if mask.shape != image.hu.shape or not mask.any():
        raise MeshError("measure_cortex needs a non-empty mask on the image's grid")
    sp = np.asarray(image.spacing, float)
    ijk = np.argwhere(mask)
    body = mask.copy()
    body[mask] = ijk[:, 1] < ijk[:, 1].mean()  # y grows posterior: the body is in front
    depth = distance_transform_edt(mask, sampling=sp) - 0.5 * float(sp.min())
    d, hu = depth[body], image.hu[body]
    deep = d > band
    if deep.sum() < 8 or (d <= 2.0).sum() < 8:
        raise MeshError(f"the body is too small for a cortex measurement: fewer than 8 voxels "
                        f"deeper than {band:g} mm or within 2 mm of its surface")
    core, shell = float(np.median(hu[deep])), float(np.quantile(hu[d <= 2.0], 0.95))
    bright = hu >= 0.5 * (core + shell)
    step = 0.5 * float(sp.min())
    edges = np.arange(0.0, band + step, step)
    which = np.digitize(d, edges) - 1
    inside = (which >= 0) & (which < len(edges) - 1)
    n = np.bincount(which[inside], minlength=len(edges) - 1)
    k = np.bincount(which[inside], weights=bright[inside], minlength=len(edges) - 1)
    # voxel centres sit at discrete depths: bins between them take the share beside them
    # (and those above the outermost centres, half a voxel deep, the outermost share)
    full = n > 0
    mids = 0.5 * (edges[:-1] + edges[1:])
    share = np.interp(mids, mids[full], k[full] / n[full])
    t = float((share * step).sum())
    return {"thickness_mm": t, "resolved": bool(shell > core and
                                                t >= RESOLVED_VOXELS * float(sp.max())),
            "core_hu": core, "shell_hu": shell, "spacing_mm": float(sp.max())}


def patient_segment_model(image: CTImage, segmentation, calibration: Calibration, *,
                          levels: str = "L1-L3", voxel_size: float | None = None,
                          law: str = "morgan2003", E_min: float = 1.0, materials=None,
                          cortex="image", endplate: float = 0.25, ligaments: bool = False):
    """A hex8 voxel model of ``levels`` of a patient (module docstring).

    ``image``: the CT (HU); ``segmentation``: a :class:`~fem.meshes.segmentation.Segmentation`
    or a path :func:`~fem.meshes.segmentation.read_segmentation` reads (resampled onto the CT's
    grid); ``calibration``: HU to equivalent mineral density (mg/cm^3); ``voxel_size``: mm,
    default the scan's finest spacing; ``law``, ``E_min``: the trabecular density-modulus law
    and its floor (MPa); ``materials``, ``cortex``, ``endplate``: the other parts' materials and
    the physical layer thicknesses (mm), as :func:`fem.meshes.ssm.ssm_segment_model`;
    ``cortex="image"`` (the default) measures it on each level (:func:`measure_cortex`) and uses
    the levels' median where the image resolves every level's cortex, else
    :data:`CORTEX_DEFAULT` (``metadata["ct"]["cortex"]`` says which, and why);
    ``ligaments``: the posterior ligaments between neighbouring levels' posterior elements
    (:func:`fem.meshes.ssm.segment_from_levels`, :mod:`fem.ligaments`).
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
    cortex, cortex_record = _cortex(image, seg, names, cortex)
    h = check_limit("voxel_size", min(image.spacing) if voxel_size is None else voxel_size)
    origin, shape = _grid(seg, names, h)
    # the segmentation is on the image's grid: one set of sampling points serves both
    pts = np.meshgrid(*grid_indices(image, origin + 0.5 * h, (h, h, h), shape), indexing="ij")
    lvl, dist = _levels_on_grid(seg, names, pts, h)
    hu = _sample(image.hu, pts)
    m, made = segment_from_levels(lvl, dist, origin, h, names, materials=materials,
                                  cortex=cortex, endplate=endplate, ligaments=ligaments)
    cores = _trabecular_moduli(m, names, hu, calibration, law, E_min)
    m.source = f"<patient CT {seg.source}>"
    m.metadata["ct"] = dict(segmentation=seg.source, calibration=dict(
        slope=calibration.slope, intercept=calibration.intercept, r2=calibration.r2,
        source=calibration.source), law=law, E_min=E_min, scan_spacing=list(image.spacing),
        translation=made["translation"].tolist(), levels=cores,
        separated_voxels=made["separated_voxels"],
        nucleus_area_fraction=made["nucleus_area_fraction"], cortex=cortex_record)
    logger.info("patient %s at %g mm: %d elements, %d nodes", "-".join(names), h,
                m.n_elements, m.n_nodes)
    return m


def _cortex(image: CTImage, seg: Segmentation, names, cortex):
    """The cortex thickness (mm) the model gets, and the record of where it came from."""
    if not isinstance(cortex, str):
        try:
            t = float(cortex)
        except (TypeError, ValueError):
            t = math.nan
        if not (np.isfinite(t) and 0.0 < t <= 5.0):
            raise ParameterError(f"cortex thickness must lie in (0, 5] mm or be 'image', got "
                                 f"{cortex!r}")
        return t, {"source": "given", "thickness_mm": t}
    if cortex != "image":
        raise ParameterError(f"cortex must be a thickness (mm) or 'image', got {cortex!r}")
    per = {n: measure_cortex(image, seg.mask(n)) for n in names}
    measured = all(r["resolved"] for r in per.values())
    if measured:
        t = float(np.median([r["thickness_mm"] for r in per.values()]))
        why = "measured: the image resolves every level's cortex (the levels' median)"
    else:
        t = CORTEX_DEFAULT
        thin = [n for n, r in per.items() if not r["resolved"]]
        why = (f"default: the image does not resolve the cortex of {', '.join(thin)} (it "
               f"measures under {RESOLVED_VOXELS:g} x its {max(image.spacing):g} mm spacing)")
        logger.info("patient cortex %g mm, %s", t, why)
    return t, {"source": "image" if measured else "default", "thickness_mm": t, "why": why,
               "levels": {n: {k: (round(v, 4) if isinstance(v, float) else v)
                              for k, v in r.items()} for n, r in per.items()}}


def _check_in_view(seg: Segmentation, names) -> None:
    """Refuse a level cut by the image's edge: its mask reaches the first or last slice of an
    axis (the field of view holds only part of the vertebra)."""
    for n in names:
        side = seg.edge_reached(n)
        if side is not None:
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
