"""Vertebra segmentations in: per-vertebra mask files or one multilabel image, on the CT's grid.

A patient's vertebrae reach a model as a segmentation of their CT. TotalSegmentator, the tool most
groups run, writes one binary mask per structure (``vertebrae_L1.nii.gz``, ...) or, with
``--ml``, one multilabel image whose label numbers are those of its ``total`` task
(:data:`TOTALSEGMENTATOR`). :func:`read_segmentation` reads either, as NIfTI (any axis-aligned
orientation: the affine is honoured, RAS and LPS files of one scan give the same labels), as a
DICOM Segmentation object (SEG: one binary frame per segment and slice, each frame placed by its
own ImagePositionPatient, segments named by SegmentLabel) or as a DICOM mask series (one label
value per voxel, read like a CT series), and
:meth:`Segmentation.on_grid` resamples it onto a CT image's grid (nearest neighbour, by the two
images' positions in the patient frame), refusing masks that miss the image.

Axes, as in :mod:`fem.meshes.ct`: the project's patient frame (LPS): x to the patient's left,
y posterior, z cranial, mm; ``origin`` is the centre of voxel (0, 0, 0).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputFileError, MeshError, ParameterError
from .ct import CTImage, axis_aligned, optional_module, read_dicom_series, read_nifti, to_xyz

#: vertebrae cranial to caudal
LEVEL_ORDER = tuple([f"C{i}" for i in range(1, 8)] + [f"T{i}" for i in range(1, 13)]
                    + [f"L{i}" for i in range(1, 6)] + ["S1"])
#: TotalSegmentator's label numbers of the vertebrae in its ``total`` task (v2): 26 S1,
#: 27 L5 ... 31 L1, 32 T12 ... 43 T1, 44 C7 ... 50 C1 (``totalsegmentator/map_to_binary.py``)
TOTALSEGMENTATOR = {26 + i: name for i, name in enumerate(reversed(LEVEL_ORDER))}
_MASK_FILE = re.compile(r"^(?:vertebrae_)?([CTLS]\d{1,2})\.nii(?:\.gz)?$", re.IGNORECASE)


def level_name(name: str) -> str | None:
    """``"L1"`` for ``"L1"``, ``"l1"``, ``"vertebrae_L1"``; None for a name that is no vertebra."""
    n = str(name).strip()
    n = n[len("vertebrae_"):] if n.lower().startswith("vertebrae_") else n
    n = n.upper()
    return n if n in LEVEL_ORDER else None


@dataclass(frozen=True)
class Segmentation:
    """Integer ``labels`` (nx, ny, nz; 0 is background) on a grid of ``spacing`` and ``origin``
    (mm, LPS), and ``names``: label number -> level (``"L1"``)."""

    labels: np.ndarray
    names: dict
    spacing: tuple = (1.0, 1.0, 1.0)
    origin: tuple = (0.0, 0.0, 0.0)
    source: str = "<arrays>"

    def __post_init__(self):
        lab = np.asarray(self.labels)
        if lab.ndim != 3:
            raise MeshError(f"{self.source}: a segmentation is a 3-D label image, got shape "
                            f"{lab.shape}")
        if lab.dtype.kind == "f":
            if not np.isfinite(lab).all() or (lab != np.rint(lab)).any():
                raise MeshError(f"{self.source}: label values must be whole numbers")
            lab = np.rint(lab)
        if lab.size and lab.min() < 0:
            raise MeshError(f"{self.source}: label values must be >= 0, got {int(lab.min())}")
        names = {}
        for k, v in dict(self.names).items():
            level = level_name(v)
            if level is None:
                raise ParameterError(f"{self.source}: label {k} names {v!r}, not a vertebra "
                                     f"({', '.join(LEVEL_ORDER[:1] + LEVEL_ORDER[-6:])}, ...)")
            names[int(k)] = level
        if len(set(names.values())) != len(names):
            raise ParameterError(f"{self.source}: a level is named by two labels: {names}")
        object.__setattr__(self, "labels", lab.astype(np.int16))
        object.__setattr__(self, "names", names)
        object.__setattr__(self, "spacing", tuple(float(s) for s in self.spacing))
        object.__setattr__(self, "origin", tuple(float(o) for o in self.origin))

    @property
    def shape(self) -> tuple:
        return self.labels.shape

    @property
    def levels(self) -> list[str]:
        """The levels with at least one voxel, cranial to caudal."""
        present = set(np.unique(self.labels).tolist())
        return sorted((n for k, n in self.names.items() if k in present), key=LEVEL_ORDER.index)

    def mask(self, level: str) -> np.ndarray:
        """Boolean mask of ``level``'s voxels."""
        code = {n: k for k, n in self.names.items()}.get(level_name(level) or "")
        if code is None:
            raise ParameterError(f"{self.source}: no label names {level!r} (levels: "
                                 f"{', '.join(self.levels) or 'none'})")
        return self.labels == code

    def edge_reached(self, level: str) -> str | None:
        """The image axis ("x", "y" or "z") whose first or last slice ``level``'s mask reaches
        (the field of view holds only part of that vertebra), or None where it holds it whole."""
        m = self.mask(level)
        for axis, side in ((0, "x"), (1, "y"), (2, "z")):
            if np.take(m, [0, m.shape[axis] - 1], axis=axis).any():
                return side
        return None

    def voxel_counts(self) -> dict[str, int]:
        """Voxels per named level (0 for an empty mask)."""
        counts = np.bincount(self.labels.ravel(), minlength=max(self.names, default=0) + 1)
        return {n: int(counts[k]) if k < len(counts) else 0 for k, n in self.names.items()}

    def select(self, levels) -> list[str]:
        """Validated, contiguous levels cranial to caudal (``"L1-L3"``, ``"L2"`` or a list)
        that this segmentation holds, each with a non-empty mask."""
        names = _level_range(levels)
        counts = self.voxel_counts()
        missing = [n for n in names if counts.get(n, 0) == 0]
        if missing:
            where = ("has no label" if all(n not in counts for n in missing)
                     else "has an empty mask")
            raise MeshError(f"{self.source}: level(s) {', '.join(missing)} of {names[0]}-"
                            f"{names[-1]} {where} (levels segmented: "
                            f"{', '.join(self.levels) or 'none'}); a model needs every level "
                            "between the ends")
        return names

    def on_grid(self, image: CTImage) -> Segmentation:
        """This segmentation resampled onto ``image``'s grid (nearest neighbour by position).
        Raises :class:`~fem.errors.MeshError` if no labelled voxel falls inside the image."""
        index, inside = [], []
        for a, f in enumerate(grid_indices(self, image.origin, image.spacing, image.shape)):
            j = np.rint(f).astype(np.int64)
            ok = (j >= 0) & (j < self.shape[a])
            index.append(np.clip(j, 0, self.shape[a] - 1))
            inside.append(ok)
        out = self.labels[np.ix_(*index)]
        out = out * (inside[0][:, None, None] & inside[1][None, :, None]
                     & inside[2][None, None, :])
        if self.labels.any() and not out.any():
            raise MeshError(f"{self.source}: the masks do not overlap the CT image (masks span "
                            f"{_extent(self)} mm, the CT {_extent(image)} mm in x, y, z): is "
                            "this the segmentation of this scan?")
        return Segmentation(out, self.names, image.spacing, image.origin, self.source)


def grid_indices(src, origin, spacing, shape) -> list[np.ndarray]:
    """Per axis, the fractional voxel indices in ``src`` (anything with ``origin``, the centre
    of its voxel 0, and ``spacing``, mm) of the voxel centres of a grid of ``shape`` whose voxel
    0 is centred at ``origin`` with ``spacing`` (mm)."""
    return [(origin[a] + np.arange(shape[a]) * spacing[a] - src.origin[a]) / src.spacing[a]
            for a in range(3)]


def _extent(img) -> str:
    lo = np.asarray(img.origin) - 0.5 * np.asarray(img.spacing)
    hi = lo + np.asarray(img.shape) * np.asarray(img.spacing)
    return ", ".join(f"{a:.0f}..{b:.0f}" for a, b in zip(lo, hi))


def _level_range(levels) -> list[str]:
    if isinstance(levels, str):
        ends = [level_name(e) for e in levels.split("-")]
        if len(ends) not in (1, 2) or None in ends:
            raise ParameterError(f"levels must be like 'L1-L3' or 'L2', got {levels!r}")
        i, j = LEVEL_ORDER.index(ends[0]), LEVEL_ORDER.index(ends[-1])
        if j < i:
            raise ParameterError(f"levels {levels!r} run caudal to cranial: write "
                                 f"{ends[-1]}-{ends[0]}")
        return list(LEVEL_ORDER[i:j + 1])
    names = [level_name(n) for n in levels]
    if not names or None in names:
        raise ParameterError(f"levels must name vertebrae, got {levels!r}")
    idx = [LEVEL_ORDER.index(n) for n in names]
    if idx != list(range(idx[0], idx[0] + len(idx))):
        raise ParameterError(f"levels must be contiguous, cranial to caudal, got {names}")
    return names


def read_segmentation(path, *, labels=None, image: CTImage | None = None) -> Segmentation:
    """The vertebrae of a segmentation, resampled onto ``image``'s grid when one is given.

    ``path``: a folder of per-vertebra masks (``vertebrae_<LEVEL>.nii.gz`` as TotalSegmentator
    writes them, or ``<LEVEL>.nii.gz``; other files are ignored); a multilabel NIfTI file; a
    DICOM SEG file (segments labelled ``L1`` or ``vertebrae_L1``; others are dropped); or a
    folder holding a DICOM mask series (voxel values are label numbers). ``labels``: the
    multilabel image's table, label number -> name (``"L1"`` or ``"vertebrae_L1"``), default
    TotalSegmentator's (:data:`TOTALSEGMENTATOR`); labels not in it (organs) are dropped.
    """
    path = Path(path)
    if path.is_dir() and any(_MASK_FILE.match(p.name) for p in path.iterdir()):
        seg = _read_mask_folder(path)
    elif path.is_dir():
        img = read_dicom_series(path)
        seg = _from_multilabel(img, labels, str(path))
    elif path.is_file() and not path.name.lower().endswith((".nii", ".nii.gz")):
        seg = read_dicom_seg(path)
    elif path.is_file():
        seg = _from_multilabel(read_nifti(path), labels, str(path))
    else:
        raise InputFileError(f"{path}: no such file or folder")
    return seg if image is None else seg.on_grid(image)


def _from_multilabel(img: CTImage, table, source: str) -> Segmentation:
    table = TOTALSEGMENTATOR if table is None else dict(table)
    values = np.rint(img.hu).astype(np.int64)
    keep = {int(k): v for k, v in table.items() if level_name(v) is not None}
    found = set(np.unique(values).tolist()) & set(keep)
    if not found:
        raise MeshError(f"{source}: none of its label values "
                        f"({', '.join(map(str, sorted(set(np.unique(values).tolist()) - {0})[:12]))}"
                        f") is a vertebra of the label table; pass labels={{number: 'L1', ...}}")
    out = np.where(np.isin(values, list(keep)), values, 0)
    return Segmentation(out, keep, img.spacing, img.origin, source)


def _read_mask_folder(folder: Path) -> Segmentation:
    files = {}
    for p in sorted(folder.iterdir()):
        m = _MASK_FILE.match(p.name)
        if m:
            level = level_name(m.group(1))
            if level is None:
                continue
            if level in files:
                raise InputFileError(f"{p}: a second mask of {level} (also {files[level].name})")
            files[level] = p
    order = sorted(files, key=LEVEL_ORDER.index)
    first = read_nifti(files[order[0]])
    labels = np.zeros(first.shape, dtype=np.int16)
    names = {}
    for code, level in enumerate(order, start=1):
        img = first if code == 1 else read_nifti(files[level])
        if img.shape != first.shape or not np.allclose(img.spacing, first.spacing) \
                or not np.allclose(img.origin, first.origin, atol=1e-3):
            raise InputFileError(f"{files[level]}: its grid (shape {img.shape}, spacing "
                                 f"{img.spacing}, origin {np.round(img.origin, 3).tolist()}) "
                                 f"differs from {files[order[0]].name}'s: the masks of one "
                                 "segmentation share one grid")
        mask = img.hu > 0.5
        clash = mask & (labels > 0)
        if clash.any():
            other = order[int(labels[clash][0]) - 1]
            raise MeshError(f"{files[level]}: {int(clash.sum())} voxel(s) also belong to "
                            f"{other}'s mask: vertebra masks must not overlap")
        labels[mask] = code
        names[code] = level
    return Segmentation(labels, names, first.spacing, first.origin, str(folder))


def read_dicom_seg(path) -> Segmentation:
    """The vertebrae of a DICOM Segmentation object (needs pydicom): binary or fractional
    frames, one per segment and slice, placed by their ImagePositionPatient on the grid of the
    shared PlaneOrientation and PixelMeasures (frames of one slice share a position; slices
    must be evenly spaced); fractional frames count where they reach one half."""
    pydicom = optional_module("pydicom")
    path = Path(path)
    try:
        ds = pydicom.dcmread(str(path))
        kind = str(getattr(ds, "Modality", ""))
        frames = np.asarray(ds.pixel_array) if kind == "SEG" else None
    except Exception as exc:  # pydicom raises many kinds on a damaged file
        raise InputFileError(f"{path}: not a readable DICOM file ({type(exc).__name__}: "
                             f"{exc})") from None
    if kind != "SEG":
        raise InputFileError(f"{path}: a DICOM {kind or 'file'} object, not a segmentation (SEG)")
    try:
        shared = ds.SharedFunctionalGroupsSequence[0]
        iop = np.array(shared.PlaneOrientationSequence[0].ImageOrientationPatient, float)
        pm = shared.PixelMeasuresSequence[0]
        ps = [float(v) for v in pm.PixelSpacing]
        per = ds.PerFrameFunctionalGroupsSequence
        pos = np.array([f.PlanePositionSequence[0].ImagePositionPatient for f in per], float)
        seg_of = [int(f.SegmentIdentificationSequence[0].ReferencedSegmentNumber) for f in per]
        names = {int(s.SegmentNumber): str(s.SegmentLabel) for s in ds.SegmentSequence}
        fractional = str(getattr(ds, "SegmentationType", "BINARY")) == "FRACTIONAL"
        scale = float(getattr(ds, "MaximumFractionalValue", 255)) if fractional else 1.0
    except (AttributeError, IndexError, KeyError, TypeError, ValueError) as exc:
        raise InputFileError(f"{path}: an incomplete SEG object ({type(exc).__name__}: {exc})"
                             ) from None
    frames = frames.reshape((len(per),) + frames.shape[-2:])
    levels = {k: level_name(v) for k, v in names.items() if level_name(v)}
    if not levels:
        raise MeshError(f"{path}: none of its segments ({', '.join(names.values())}) names a "
                        "vertebra (L1 or vertebrae_L1, ...)")
    normal = np.cross(iop[:3], iop[3:])
    along = pos @ normal
    planes = np.unique(np.round(along, 4))
    dz = float(np.median(np.diff(planes))) if len(planes) > 1 else float(
        getattr(pm, "SpacingBetweenSlices", None) or getattr(pm, "SliceThickness", 1.0))
    k = np.rint((along - planes[0]) / dz).astype(int)
    if len(planes) > 1 and np.abs(planes[0] + k * dz - along).max() > 1e-3 * dz + 1e-4:
        raise InputFileError(f"{path}: its frames are not evenly spaced along the slice normal")
    first = pos[np.argmin(along)]
    vol = np.zeros((k.max() + 1,) + frames.shape[1:], dtype=np.int16)  # (k, row, column)
    code = {seg: i + 1 for i, seg in enumerate(sorted(levels))}
    for f, (seg, kk) in enumerate(zip(seg_of, k)):
        if seg in code:
            on = frames[f] / scale >= 0.5 if fractional else frames[f] > 0
            vol[kk][on] = code[seg]
    data = np.transpose(vol, (2, 1, 0))  # (column, row, slice)
    axis, sign = axis_aligned(np.stack([iop[:3], iop[3:], normal]), str(path))
    lab, sp, origin = to_xyz(data, (ps[1], ps[0], dz), first, axis, sign)
    return Segmentation(lab, {code[s]: levels[s] for s in code}, sp, origin, str(path))
