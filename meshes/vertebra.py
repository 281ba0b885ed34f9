"""Parametric vertebrae and spine segments (T6-L5), defined implicitly and meshed as voxels.

Geometry (one level, local axes of the project: x lateral, y antero-posterior with anterior at -y,
z cranial; z = 0 at the inferior endplate's rim):

* the body's cross-section is an ellipse (width x depth) whose posterior wall is flattened and
  slightly concave (``y <= b (POSTERIOR_FLAT + (1 - POSTERIOR_FLAT) (x/a)^2)``), the usual
  kidney shape;
* its height varies linearly from anterior (``height_anterior``) to posterior
  (``height_posterior``), which gives the level's wedge angle;
* the endplates are concave: the superior surface dips by ``concavity_superior`` at the centre
  and the inferior surface rises by ``concavity_inferior``, as paraboloids inside a rim (Wang
  2012: about 1.5 mm cranial, 0.7 mm caudal; rim 3-7 mm wide);
* a cortical shell of ``cortex`` mm on the side wall (0.38 +- 0.06 mm measured, Silva 1994 /
  Eswaran 2007; FE models use 0.4 mm) and bony endplates of ``endplate`` mm (0.25 mm layers in FE
  practice) enclose the trabecular core. The bony endplate covers the core inside the shell; the
  shell runs up to the endplate surfaces, as the cortical wall meets the rim of the endplate (the
  ring apophysis, the dense peripheral rim of the endplate) in the vertebra: the wall's load does
  not pass through the thin, porous central endplate;
* posterior elements: two pedicles (elliptic cylinders from the posterior wall, converging
  towards the body at ``pedicle_angle``), a lamina joining them, a spinous process and two
  transverse processes. The pedicle axes are the transpedicular paths into the body
  (``model.anatomy[level].pedicle_axes``).

Dimensions per level (:data:`LEVELS`). Sourced: L5 anterior height 30.3, posterior 26.3, superior
depth (VB superior length) 35.7 mm (Cook & Baker 2021, Int J Spine Surg 15(6):1072, Table 6: CT of
196 patients; the values the reference table of ../shared/reference/biomechanics.md quotes); lumbar
disc mid-heights L1/2 10.0, L2/3 11.6, L3/4 12.5, L4/5 13.8 mm (MRI, same reference table,
secondary); thoracic body heights after Egwu et al. 2019 (J Anat Soc India 68:110; 208 adult male
thoracic vertebrae: anterior height 16.9 mm at T2 rising to 18.8 at T9, posterior 17.6 to 20.5):
T9 18.8 / 20.5 mm, T6 18.0 / 19.3 (between their T2 and T9), T7-T8 interpolated, T10-T12
interpolated from T9 to the assumed L1; thoracic discs T6/T7 4.5 mm rising linearly to T12/L1
7.2 mm, the range of anterior and posterior disc heights Kunkel et al. 2011 (J Anat 219:375,
abstract checked; 72 thoracic segments of 30 donors, direct measurement) report for the thoracic
spine, with the thinnest disc put at T6/T7 and the thickest at T12/L1 (ASSUMPTION: the abstract
gives the range, not its levels; Fletcher et al. 2015, Eur Spine J, doi:10.1007/s00586-015-3925-y,
CT, shows disc height rising caudally from T4-5 to T10-11). Assumptions (not sourced here: the
per-level tables of Panjabi et al. 1991/1992, Zhou et al. 2000 and Kunkel et al. 2010, J Anat
216:320, could not be read): L1 width 40, depth 30, heights 24.5 / 25.5 mm; L5 width 50 (the upper
end of the 40-50 mm lumbar range of the reference table); T6 width 30, depth 26 with T7-T12 widths
and depths interpolated towards L1; the L5/S1 disc (13.8 mm, unused: no model has a level below
L5); pedicle sizes as fractions of the body. L2-L4 are interpolated linearly between L1 and L5, so
they inherit L1's assumptions. Levels with any assumed dimension are marked ``assumed`` in
:data:`LEVELS`.

Meshing: :func:`vertebra_model` and :func:`segment_model` sample the implicit regions at voxel
centres and build a hex8 :class:`~fem.model.Model` on the grid (shared nodes at every interface,
one region per part, face sets of the endplate surfaces). A layer thinner than the voxel size is
kept one voxel thick, with the modulus of what that voxel holds (:func:`thickness_compensated`):
the shell's voxels hold t of cortex and h - t of trabecular bone side by side (in parallel under
axial load), the endplates' carry the endplate's membrane stiffness (modulus x t / h). Regions per
level: ``"L2/cortex"``, ``"L2/trabecular"``, ``"L2/endplate_superior"``, ``"L2/endplate_inferior"``,
``"L2/posterior"``; per disc ``"L1-L2/annulus"``, ``"L1-L2/nucleus"``. Face and node sets:
``"L2/superior"``, ``"L2/inferior"`` (outer surfaces of the bony endplates), ``"top"`` and
``"bottom"`` (those of the model's top and bottom level).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from ..anatomy import Anatomy, LevelAnatomy
from ..errors import MeshError
from ..kernels.voxel import CORNERS
from ..ligaments import GROUND as LIGAMENT_GROUND
from ..limits import check as check_limit
from ..model import Model
from ..parts import BUILT_BONE, DISC, LIGAMENT, PARTS

POSTERIOR_FLAT = 0.72
#: nucleus semi-axes as a fraction of the disc's (area fraction 0.55^2 = 30 %, assumption within
#: the 30-50 % usually modelled)
NUCLEUS_FRACTION = 0.55

#: default materials (E MPa, nu), reference table of ../shared/reference/biomechanics.md:
#: osteoporotic cortex 8 040 (J Orthop Surg Res 2020), osteoporotic trabecular bone in the middle
#: of the 34-146 MPa spread, bony endplate 1 000 / 0.2 as a thin layer (IJSS), posterior elements
#: osteoporotic 2 800 / 0.25, annulus ground substance 4.2 / 0.45, nucleus 1 / 0.499
DEFAULT_MATERIALS = {
    "cortex": (8040.0, 0.3),
    "trabecular": (90.0, 0.2),
    "endplate_superior": (1000.0, 0.2),
    "endplate_inferior": (1000.0, 0.2),
    "posterior": (2800.0, 0.25),
    "annulus": (4.2, 0.45),
    "nucleus": (1.0, 0.499),
    # the posterior ligaments' ground substance: their fibres come with the fibre solve
    # (fem.ligaments)
    **{part: LIGAMENT_GROUND for part in LIGAMENT},
}
BONE_PARTS = BUILT_BONE
DISC_PARTS = DISC


@dataclass(frozen=True)
class LevelDims:
    """Dimensions of one vertebra in mm (see the module docstring for sources)."""

    name: str
    width: float  # lateral endplate width
    depth: float  # antero-posterior endplate depth
    height_anterior: float
    height_posterior: float
    disc_below: float  # height of the disc under this level (mm)
    concavity_superior: float = 1.5
    concavity_inferior: float = 0.7
    rim: float = 4.0  # width of the flat endplate rim
    cortex: float = 0.4
    endplate: float = 0.25
    pedicle_width: float = 0.0  # 0: derived from the body
    pedicle_height: float = 0.0
    pedicle_angle: float = 10.0  # degrees, medial convergence towards anterior
    assumed: bool = True

    @property
    def height(self) -> float:
        return 0.5 * (self.height_anterior + self.height_posterior)

    @property
    def pedicle(self) -> tuple[float, float]:
        w = self.pedicle_width or 0.2 * self.width
        h = self.pedicle_height or 0.55 * self.height
        return w, h


def _interp(a: LevelDims, b: LevelDims, t: float, name: str, disc: float, assumed: bool):
    f = {k: (1 - t) * getattr(a, k) + t * getattr(b, k)
         for k in ("width", "depth", "height_anterior", "height_posterior")}
    return LevelDims(name, disc_below=disc, assumed=assumed, **f)


def _levels() -> dict[str, LevelDims]:
    L1 = LevelDims("L1", 40.0, 30.0, 24.5, 25.5, disc_below=10.0, assumed=True)
    L5 = LevelDims("L5", 50.0, 35.7, 30.3, 26.3, disc_below=13.8, assumed=True)
    discs = {"L1": 10.0, "L2": 11.6, "L3": 12.5, "L4": 13.8, "L5": 13.8}
    out = {"L1": L1}
    for i, name in enumerate(("L2", "L3", "L4"), start=1):
        out[name] = _interp(L1, L5, i / 4, name, discs[name], assumed=True)
    out["L5"] = replace(L5, disc_below=discs["L5"])
    T6 = LevelDims("T6", 30.0, 26.0, 18.0, 19.0, disc_below=4.5, pedicle_angle=5.0)
    T12 = _interp(T6, L1, 6.5 / 7, "T12", 7.2, assumed=True)
    # body heights: T9 measured (Egwu 2019), T6 between Egwu's T2 and T9, T10-T12 towards L1;
    # discs across the thoracic range of Kunkel 2011, thinnest at T6/T7, thickest at T12/L1
    heights = {"T6": (18.0, 19.3), "T9": (18.8, 20.5), "L1": (24.5, 25.5)}
    for i, name in enumerate(("T6", "T7", "T8", "T9", "T10", "T11", "T12")):
        lv = _interp(T6, T12, i / 6, name, 4.5 + (7.2 - 4.5) * i / 6, assumed=True)
        lo, hi, t = (("T6", "T9", i / 3) if i <= 3 else ("T9", "L1", (i - 3) / 4))
        ha = (1 - t) * heights[lo][0] + t * heights[hi][0]
        hp = (1 - t) * heights[lo][1] + t * heights[hi][1]
        out[name] = replace(lv, height_anterior=ha, height_posterior=hp, pedicle_angle=5.0)
    order = ["T6", "T7", "T8", "T9", "T10", "T11", "T12", "L1", "L2", "L3", "L4", "L5"]
    return {k: out[k] for k in order}


#: level name -> dimensions, cranial to caudal
LEVELS: dict[str, LevelDims] = _levels()
ORDER = list(LEVELS)


def level_range(spec: str) -> list[str]:
    """"T12-L2" -> ["T12", "L1", "L2"] (cranial to caudal); a single name gives one level."""
    parts = [p.strip().upper() for p in spec.split("-")]
    if len(parts) == 1:
        parts = parts * 2
    if len(parts) != 2 or any(p not in LEVELS for p in parts):
        raise MeshError(f"unknown level range {spec!r}: use levels {ORDER[0]}..{ORDER[-1]}, "
                        "e.g. 'L1' or 'T12-L2'")
    i, j = ORDER.index(parts[0]), ORDER.index(parts[1])
    if i > j:
        raise MeshError(f"level range {spec!r} must run cranial to caudal, e.g. 'T12-L2'")
    return ORDER[i:j + 1]


# ---------------------------------------------------------------------- implicit geometry

def _section(d: LevelDims, x, y, shrink: float = 0.0):
    """Inside the body's cross-section shrunk by ``shrink`` mm (approximately a parallel
    offset)."""
    a0, b0 = 0.5 * d.width, 0.5 * d.depth
    a, b = a0 - shrink, b0 - shrink
    ell = (x / a) ** 2 + (y / b) ** 2 <= 1.0
    post = y <= b0 * (POSTERIOR_FLAT + (1.0 - POSTERIOR_FLAT) * (x / a0) ** 2) - shrink
    return ell & post


def rim_profile(d: LevelDims, x, y):
    """1 at the centre, 0 on and outside the rim: the depth profile of the endplate concavity."""
    a = max(0.5 * d.width - d.rim, 1e-3)
    b = max(0.5 * d.depth - d.rim, 1e-3)
    return np.clip(1.0 - (x / a) ** 2 - (y / b) ** 2, 0.0, 1.0)


def superior_rim_height(d: LevelDims, y):
    """Height of the superior rim plane at antero-posterior position y (wedge)."""
    t = np.clip(0.5 - y / d.depth, 0.0, 1.0)  # 1 at the anterior edge (y = -depth/2)
    return d.height_posterior + (d.height_anterior - d.height_posterior) * t


def surfaces(d: LevelDims, x, y):
    """(z of the inferior bony surface, z of the superior bony surface) at (x, y), local frame."""
    prof = rim_profile(d, x, y)
    return d.concavity_inferior * prof, superior_rim_height(d, y) - d.concavity_superior * prof


@dataclass(frozen=True)
class _Arch:
    """The dimensions of a level's posterior elements (mm, local frame): pedicle width ``w``
    and height ``h``, the pedicles' height ``zc``, the posterior wall ``ybody``, the pedicles'
    ``length`` from it to the lamina at ``y_lam``, the lamina's half-width ``half_lam`` and
    half-thickness ``t_lam``, the spinous process's mid-height ``zs``; one place for
    :func:`pedicle_axes`, :func:`_posterior` and the ligaments' boxes."""

    w: float
    h: float
    zc: float
    ybody: float
    length: float
    y_lam: float
    half_lam: float
    t_lam: float
    zs: float

    @classmethod
    def of(cls, d: LevelDims) -> _Arch:
        w, h = d.pedicle
        zc = 0.55 * d.height
        ybody = 0.5 * d.depth * POSTERIOR_FLAT
        length = 0.3 * d.depth + 0.5 * h
        return cls(w, h, zc, ybody, length, ybody + length, 0.5 * d.width * 0.55 + 0.5 * w,
                   0.5 * w, zc - 0.1 * h)


def pedicle_axes(d: LevelDims) -> dict:
    """Transpedicular paths: entry point on the posterior surface of each pedicle's root at the
    lamina and the unit direction into the body (towards anterior, converging medially)."""
    a = _Arch.of(d)
    ang = np.radians(d.pedicle_angle)
    zc, ybody, length = a.zc, a.ybody, a.length
    out = {}
    for side, s in (("left", 1.0), ("right", -1.0)):
        x_root = s * (0.5 * d.width * 0.55)
        entry = np.array([x_root + s * np.sin(ang) * length, ybody + np.cos(ang) * length, zc])
        direction = np.array([-s * np.sin(ang), -np.cos(ang), 0.0])
        out[side] = (entry, direction)
    return out


@dataclass(frozen=True)
class _Box:
    """An axis-aligned box (lo, hi) of 3 floats each, in a level's local frame or the model's."""

    lo: tuple
    hi: tuple

    def lifted(self, dz: float) -> _Box:
        return _Box((self.lo[0], self.lo[1], self.lo[2] + dz),
                    (self.hi[0], self.hi[1], self.hi[2] + dz))


def _posterior_boxes(d: LevelDims) -> dict:
    """The spinous process and the lamina of :func:`_posterior` as boxes (local frame)."""
    a = _Arch.of(d)
    return {"spinous": _Box((-0.35 * a.w, a.y_lam, a.zs - 0.45 * a.h),
                            (0.35 * a.w, a.y_lam + 0.9 * d.depth, a.zs + 0.45 * a.h)),
            "lamina": _Box((-a.half_lam, a.y_lam - a.t_lam, a.zc - 0.5 * a.h),
                           (a.half_lam, a.y_lam + a.t_lam, a.zc + 0.5 * a.h))}


def _ligament_boxes(upper: LevelDims, z_upper: float, lower: LevelDims, z_lower: float):
    """{ligament part: [boxes]} in the model's frame filling the gaps between two levels'
    posterior elements (:mod:`fem.ligaments`): between the spinous processes, and between the
    laminae, the medial half of their width (the flavum) and the lateral quarters (the
    capsules), each spanning what both levels' boxes share across."""
    a = {k: b.lifted(z_upper) for k, b in _posterior_boxes(upper).items()}
    b = {k: v.lifted(z_lower) for k, v in _posterior_boxes(lower).items()}

    def between(key, x_lo, x_hi):
        lo = (x_lo, max(a[key].lo[1], b[key].lo[1]), b[key].hi[2])
        hi = (x_hi, min(a[key].hi[1], b[key].hi[1]), a[key].lo[2])
        return _Box(lo, hi)

    half = min(a["lamina"].hi[0], b["lamina"].hi[0])
    spin = min(a["spinous"].hi[0], b["spinous"].hi[0])
    return {"ligament_interspinous": [between("spinous", -spin, spin)],
            "ligament_flavum": [between("lamina", -0.5 * half, 0.5 * half)],
            "ligament_capsular": [between("lamina", -half, -0.5 * half),
                                  between("lamina", 0.5 * half, half)]}


def _posterior(d: LevelDims, x, y, z):
    """Posterior elements: pedicles, lamina, spinous and transverse processes (local frame)."""
    a = _Arch.of(d)
    w, h, zc, length = a.w, a.h, a.zc, a.length
    inside = np.zeros(np.broadcast(x, y, z).shape, dtype=bool)
    for entry, direction in pedicle_axes(d).values():
        # points along the axis from the body wall (t = length) back to the entry (t = 0)
        rel = np.stack(np.broadcast_arrays(x - entry[0], y - entry[1], z - entry[2]), axis=-1)
        along = rel @ direction  # distance from the entry towards the body
        perp = rel - along[..., None] * direction
        # ellipse of width w (horizontal) and height h (vertical) around the axis
        horiz = perp[..., 0] * direction[1] - perp[..., 1] * direction[0]
        ell = (horiz / (0.5 * w)) ** 2 + (perp[..., 2] / (0.5 * h)) ** 2 <= 1.0
        inside |= ell & (along >= -0.5 * w) & (along <= length + 0.5 * w)
    y_lam, half_lam, t_lam = a.y_lam, a.half_lam, a.t_lam
    lamina = (np.abs(x) <= half_lam) & (y >= y_lam - t_lam) & (y <= y_lam + t_lam) \
        & (np.abs(z - zc) <= 0.5 * h)
    spinous = (np.abs(x) <= 0.35 * w) & (y >= y_lam) & (y <= y_lam + 0.9 * d.depth) \
        & (np.abs(z - a.zs) <= 0.45 * h)
    transverse = (np.abs(x) >= half_lam - 0.5 * w) & (np.abs(x) <= half_lam + 0.45 * d.width) \
        & (np.abs(y - (y_lam - 0.5 * w)) <= 0.35 * w) & (np.abs(z - zc) <= 0.3 * h)
    return inside | lamina | spinous | transverse


def classify_level(d: LevelDims, x, y, z):
    """Part index (1-5 for BONE_PARTS, 0 outside) of points in the level's local frame."""
    zi, zs = surfaces(d, x, y)
    body = _section(d, x, y) & (z >= zi) & (z <= zs)
    out = np.zeros(np.broadcast(x, y, z).shape, dtype=np.int8)
    post = _posterior(d, x, y, z) & ~_section(d, x, y)
    out[post] = 5
    out[body] = 1  # cortex unless inner
    core = body & _section(d, x, y, shrink=d.cortex)
    out[core] = 2
    out[core & (z > zs - d.endplate)] = 3  # the bony endplates cover the core; the shell runs
    out[core & (z < zi + d.endplate)] = 4  # up to the surfaces (the rim)
    return out


# ---------------------------------------------------------------------- voxel meshing

@dataclass
class LevelStack:
    levels: list  # LevelDims cranial to caudal
    z0: list  # z of each level's local origin in the model frame

    @classmethod
    def of(cls, names: list[str]) -> LevelStack:
        dims = [LEVELS[n] for n in names]
        z0 = [0.0] * len(dims)
        z = 0.0
        for i in range(len(dims) - 1, -1, -1):  # caudal first
            z0[i] = z
            if i > 0:
                z += _max_top(dims[i]) + dims[i - 1].disc_below
        return cls(dims, z0)


def _max_top(d: LevelDims) -> float:
    """Rim height at the middle of the body (the disc above starts there)."""
    return float(superior_rim_height(d, 0.0))


def grid_labels(stack: LevelStack, h: float, with_posterior: bool, ligaments: bool = False):
    """Labels on a voxel grid (codes: level i part p -> 1 + 10 i + (p-1); disc i (below level i)
    part q -> 1 + 10 i + 5 + q; with ``ligaments`` (and ``with_posterior``) the ligaments
    between level i and i + 1 -> 1 + 10 i + 7 + r, r indexing :data:`fem.parts.LIGAMENT`), the
    grid's origin and shape."""
    xs, ys, zs = [], [], []
    for d in stack.levels:
        w, hp = d.pedicle
        ext_post = 0.5 * d.depth * POSTERIOR_FLAT + 0.3 * d.depth + 0.5 * hp + 0.9 * d.depth + w
        xs.append(0.5 * d.width + (0.5 * d.width if with_posterior else 0.0) + w)
        ys.append(ext_post if with_posterior else 0.5 * d.depth)
        zs.append(0.0)
    half_x = max(xs)
    y_min = -0.5 * max(d.depth for d in stack.levels)
    y_max = max(ys)
    z_max = stack.z0[0] + max(d.height_anterior, d.height_posterior) + 0.0
    nx = int(np.ceil(2 * half_x / h))
    ny = int(np.ceil((y_max - y_min) / h))
    nz = int(np.ceil(z_max / h))
    origin = np.array([-0.5 * nx * h, y_min, 0.0])
    cx = origin[0] + (np.arange(nx) + 0.5) * h
    cy = origin[1] + (np.arange(ny) + 0.5) * h
    cz = origin[2] + (np.arange(nz) + 0.5) * h
    X, Y = np.meshgrid(cx, cy, indexing="ij")
    labels = np.zeros((nx, ny, nz), dtype=np.int16)
    for i, d in enumerate(stack.levels):
        dd = replace(d, cortex=max(d.cortex, h), endplate=max(d.endplate, h))
        z_lo, z_hi = stack.z0[i], stack.z0[i] + max(d.height_anterior, d.height_posterior)
        k0 = max(0, int(np.floor(z_lo / h)) - 1)
        k1 = min(nz, int(np.ceil(z_hi / h)) + 1)
        for k in range(k0, k1):
            part = classify_level(dd, X, Y, cz[k] - stack.z0[i])
            if not with_posterior:
                part[part == 5] = 0
            sel = part > 0
            labels[:, :, k][sel] = 1 + 10 * i + part[sel] - 1
        if i + 1 < len(stack.levels):  # the disc below level i, above level i+1
            lo = stack.levels[i + 1]
            zi_up, _ = surfaces(d, X, Y)
            _, zs_lo = surfaces(lo, X, Y)
            zi_up = zi_up + stack.z0[i]
            zs_lo = zs_lo + stack.z0[i + 1]
            sec = _section(lo, X, Y) & _section(d, X, Y)
            a = 0.5 * min(lo.width, d.width) * NUCLEUS_FRACTION
            b = 0.5 * min(lo.depth, d.depth) * NUCLEUS_FRACTION
            nuc = (X / a) ** 2 + ((Y + 0.05 * lo.depth) / b) ** 2 <= 1.0
            kk0 = max(0, int(np.floor(stack.z0[i + 1] / h)))
            kk1 = min(nz, int(np.ceil((stack.z0[i] + d.concavity_inferior) / h)) + 1)
            for k in range(kk0, kk1):
                inside = sec & (cz[k] > zs_lo) & (cz[k] < zi_up) & (labels[:, :, k] == 0)
                lab = labels[:, :, k]
                lab[inside & ~nuc] = 1 + 10 * i + 5
                lab[inside & nuc] = 1 + 10 * i + 6
    if ligaments and with_posterior:
        _fill_ligaments(labels, origin, h, stack)
    return labels, origin


def _fill_ligaments(labels, origin, h: float, stack: LevelStack) -> None:
    """Label the empty voxels whose centres lie in :func:`_ligament_boxes` of each pair of
    neighbouring levels (codes of :func:`grid_labels`)."""
    centres = [origin[a] + (np.arange(labels.shape[a]) + 0.5) * h for a in range(3)]
    for i in range(len(stack.levels) - 1):
        boxes = _ligament_boxes(stack.levels[i], stack.z0[i], stack.levels[i + 1],
                                stack.z0[i + 1])
        for r, part in enumerate(LIGAMENT):
            for box in boxes[part]:
                sel = [np.nonzero((c > lo) & (c < hi))[0]
                       for c, lo, hi in zip(centres, box.lo, box.hi, strict=True)]
                if not all(len(v) for v in sel):
                    raise MeshError(f"voxel size {h:g} mm leaves no voxel for the {part} "
                                    f"between {stack.levels[i].name} and "
                                    f"{stack.levels[i + 1].name}: use a finer voxel size")
                block = labels[np.ix_(*sel)]
                block[block == 0] = 1 + 10 * i + 7 + r
                labels[np.ix_(*sel)] = block


def label_names(names: list[str]) -> dict[int, str]:
    """Region names of the voxel label codes: level i part p -> 1 + 10 i + p (p indexes
    :data:`BONE_PARTS`), the disc below level i -> 1 + 10 i + 5 (annulus) and + 6 (nucleus)."""
    out = {}
    for i, n in enumerate(names):
        for p, part in enumerate(BONE_PARTS):
            out[1 + 10 * i + p] = f"{n}/{part}"
        if i + 1 < len(names):
            disc = f"{n}-{names[i + 1]}"
            out[1 + 10 * i + 5] = f"{disc}/annulus"
            out[1 + 10 * i + 6] = f"{disc}/nucleus"
            for r, part in enumerate(LIGAMENT):
                out[1 + 10 * i + 7 + r] = f"{disc}/{part}"
    return out


def model_from_labels(labels, origin, h, names: dict[int, str], materials: dict) -> Model:
    """hex8 Model of the labelled voxels (label 0 empty), one region per label name."""
    nx, ny, nz = labels.shape
    occ = np.argwhere(labels > 0)  # (m, 3) i, j, k
    if len(occ) == 0:
        raise MeshError("the geometry produced no voxel: the voxel size is too large")
    node = lambda i, j, k: i + (nx + 1) * (j + (ny + 1) * k)  # noqa: E731
    gconn = np.stack([node(occ[:, 0] + di, occ[:, 1] + dj, occ[:, 2] + dk)
                      for di, dj, dk in CORNERS], axis=1)
    gnodes = np.unique(gconn)
    conn = np.searchsorted(gnodes, gconn)
    kk, r = np.divmod(gnodes, (nx + 1) * (ny + 1))
    jj, ii = np.divmod(r, nx + 1)
    pts = np.stack([origin[0] + ii * h, origin[1] + jj * h, origin[2] + kk * h], axis=1)
    m = Model.from_arrays(pts, [("hex8", conn)], source="<parametric vertebra>")
    lab = labels[occ[:, 0], occ[:, 1], occ[:, 2]]
    for code, name in names.items():
        sel = np.nonzero(lab == code)[0]
        if len(sel):
            m.add_region(name, sel)
            apply_material(m, name, materials[name.split("/")[1]])
    m.metadata["voxel_labels"] = {"ijk": occ, "labels": lab, "spacing": h,
                                  "origin": origin.tolist()}
    return m


def _endplate_faces(m: Model, labels, level_codes, up: bool, rim=None):
    """(elements, faces): faces of the given endplate voxels, and of the shell voxels at the
    endplate's rim, whose neighbour above (up) or below is not bone of the same level. ``rim``:
    a mask over the model's elements of the rim voxels; None: every voxel of
    ``level_codes["cortex"]`` (a prismatic body, whose shell meets only the endplate surfaces
    there)."""
    info = m.metadata["voxel_labels"]
    occ, lab = info["ijk"], info["labels"]
    surface = np.isin(lab, [level_codes["endplate"]])
    surface |= (lab == level_codes["cortex"]) if rim is None else rim
    sel = np.nonzero(surface)[0]
    nz = labels.shape[2]
    i, j, k = occ[sel].T
    kn = k + (1 if up else -1)
    inside = (kn >= 0) & (kn < nz)
    nb = np.zeros(len(sel), dtype=labels.dtype)
    nb[inside] = labels[i[inside], j[inside], kn[inside]]
    same = np.isin(nb, level_codes["bone"])
    keep = sel[~same]
    return keep, np.full(len(keep), 1 if up else 0)  # hex8 face S2 (+z) or S1 (-z)


def add_endplate_sets(m: Model, labels, names, rims=None) -> None:
    """Face and node sets ``"<level>/superior"`` and ``"<level>/inferior"`` of a voxel model
    built from ``labels`` with the codes of :func:`label_names`: the outer faces of each level's
    bony endplates and of the shell voxels at their rim (:func:`_endplate_faces`). ``rims``: per
    level, (superior, inferior) masks on the label grid of the rim voxels; None: the cortex (a
    prismatic body)."""
    ijk = m.metadata["voxel_labels"]["ijk"]
    for i, n in enumerate(names):
        bone = [1 + 10 * i + p for p in range(5)]
        for j, (key, up) in enumerate((("superior", True), ("inferior", False))):
            rim = None if rims is None else rims[i][j][ijk[:, 0], ijk[:, 1], ijk[:, 2]]
            e, f = _endplate_faces(m, labels, {"endplate": 1 + 10 * i + 2 + j, "bone": bone,
                                                "cortex": bone[0]}, up, rim=rim)
            m.add_face_set(f"{n}/{key}", e, f)
            m.add_node_set(f"{n}/{key}", m.nodes_of(f"{n}/{key}"))


def level_names(levels: str | list[str]) -> list[str]:
    """Validated level names, cranial to caudal: "T12-L2", "L1" or a list of contiguous names."""
    names = level_range(levels) if isinstance(levels, str) else [str(n).upper() for n in levels]
    for n in names:
        if n not in LEVELS:
            raise MeshError(f"unknown level {n!r}: use {ORDER[0]}..{ORDER[-1]}")
    idx = [ORDER.index(n) for n in names]
    if not idx or idx != list(range(idx[0], idx[0] + len(idx))):
        raise MeshError(f"levels {names} are not contiguous and cranial to caudal")
    return names


def resolve_materials(materials=None) -> dict:
    """{part: (E MPa, nu) or orthotropic constants}: :data:`DEFAULT_MATERIALS` overridden by
    ``materials`` (a dict, ``"endplate"`` setting both bony endplates, or a
    :class:`fem.meshes.bone.BoneQuality`)."""
    mats = dict(DEFAULT_MATERIALS)
    if hasattr(materials, "materials"):  # a fem.meshes.bone.BoneQuality
        materials = materials.materials()
    for part, value in (materials or {}).items():
        if part == "endplate":  # one value for both bony endplates
            mats["endplate_superior"] = mats["endplate_inferior"] = tuple(value)
        elif part in mats:
            mats[part] = dict(value) if isinstance(value, dict) else tuple(value)
        else:
            raise MeshError(f"unknown material part {part!r}: use {', '.join(mats)} or "
                            "'endplate'")
    return mats


def apply_material(m: Model, region: str, value) -> None:
    """Set a region's material: (E, nu), or a dict of orthotropic engineering constants."""
    if isinstance(value, dict):
        m.set_orthotropic(region, **value)
    else:
        E, nu = value
        m.set_material(region, E=E, nu=nu)


def _thin_layers(d: LevelDims, h: float) -> dict:
    """``{part: t (mm)}`` of the thin layers (cortex, bony endplates) thinner than ``h``."""
    return {part: t for part, t in (("cortex", d.cortex), ("endplate_superior", d.endplate),
                                    ("endplate_inferior", d.endplate)) if h > t}


def thickness_compensated(materials: dict, d: LevelDims, h: float) -> dict:
    """Moduli of the thin layers for a voxel size ``h``. A layer of physical thickness t < h is
    one voxel thick in the voxel form:

    * the shell's voxels hold t of cortex and h - t of the trabecular bone inside it, side by
      side along the wall: their modulus is the mixture ``(t E_cortex + (h - t) E_trabecular) / h``
      (exact in parallel, as the wall carries axial load), so the shell keeps its membrane
      stiffness and the core keeps the bone the shell voxels hold;
    * a bony endplate's voxels carry its modulus x t / h, its membrane stiffness (E t) under the
      disc's pressure (through the thickness, in series with the core, the layer is then stiffer
      than t of endplate and h - t of core; the endplates lie inside the shell, so the wall's
      load does not pass through them).

    Bending stiffness (E t^3) is too high by about (h / t)^2 either way. An orthotropic
    trabecular bone enters the mixture with its axial modulus Ez."""
    out = dict(materials)
    for part, t in _thin_layers(d, h).items():
        if isinstance(out[part], dict):
            raise MeshError(f"{part}: thin layers must be isotropic (E, nu) here")
        E, nu = out[part]
        if part == "cortex":
            core = materials["trabecular"]
            E_core = float(core["E"][2]) if isinstance(core, dict) else float(core[0])
            out[part] = ((t * E + (h - t) * E_core) / h, nu)
        else:
            out[part] = (E * t / h, nu)
    return out


def layer_factors(names, materials: dict, d: LevelDims, h: float) -> dict:
    """``{region: model modulus / physical modulus}`` of the thin layers of levels ``names``
    that :func:`thickness_compensated` changed for voxel size ``h`` (``materials``: the physical
    ones; ``model.metadata["layer_factors"]``). Their strain is the physical one (in parallel
    along the layer), so their physical stress is the model's over the factor
    (:attr:`fem.Result.physical_stress`)."""
    comp = thickness_compensated(materials, d, h)
    return {f"{n}/{part}": comp[part][0] / materials[part][0] for n in names
            for part in _thin_layers(d, h)}


def segment_model(levels: str | list[str] = "L1", *, voxel_size: float = 1.0,
                  materials: dict | None = None, posterior: bool = True,
                  ligaments: bool = False) -> Model:
    """A voxel (hex8) model of one vertebra or a segment of contiguous levels with their discs.

    ``levels``: "L1", "T12-L2" or a list of names cranial to caudal; ``voxel_size`` mm;
    ``materials``: {part: (E MPa, nu)} overriding :data:`DEFAULT_MATERIALS` (parts cortex,
    trabecular, endplate_superior, endplate_inferior or endplate for both, posterior, annulus,
    nucleus), or a :class:`fem.meshes.bone.BoneQuality` (its ``materials()``); thin layers are
    then :func:`thickness_compensated`; ``posterior``: include the posterior elements. A part
    given as a dict ``{E: (Ex, Ey, Ez), nu: (nu_xy, nu_xz, nu_yz), G: (Gxy, Gxz, Gyz)}`` (e.g.
    the trabecular bone of ``BoneQuality(anisotropic=True)``) is orthotropic in the model's axes
    (:meth:`fem.Model.set_orthotropic`); such a model has no voxel fast path.
    ``ligaments``: also the posterior ligaments between neighbouring levels (regions
    ``"<upper>-<lower>/ligament_interspinous"``, ``.../ligament_flavum``,
    ``.../ligament_capsular``; :mod:`fem.ligaments`), which need the posterior elements and
    carry their fibres only where the fibre solve runs (:func:`fem.fibres.solve_disc`).
    Regions, sets and metadata as in the module docstring.
    """
    names = level_names(levels)
    h = check_limit("voxel_size", voxel_size)
    physical = resolve_materials(materials)
    mats = thickness_compensated(physical, LEVELS[names[0]], h)
    if ligaments and not posterior:
        raise MeshError("ligaments=True needs posterior=True: the ligaments join the levels' "
                        "posterior elements")
    stack = LevelStack.of(names)
    labels, origin = grid_labels(stack, h, posterior, ligaments)
    m = model_from_labels(labels, origin, h, label_names(names), mats)
    add_endplate_sets(m, labels, names)
    annotate(m, names, stack)
    m.metadata["voxel_size"] = h
    m.metadata["layer_factors"] = layer_factors(names, physical, LEVELS[names[0]], h)
    return m


def parametric_anatomy(names: list[str], stack: LevelStack) -> list[LevelAnatomy]:
    """Each level's anatomy from its parametric dimensions: the body centre, endplate centres
    (the middle of the concave surfaces), pedicle axes, and the dimensions themselves."""
    out = []
    for n, d, z0 in zip(names, stack.levels, stack.z0, strict=True):
        lift = np.array([0.0, 0.0, z0])
        out.append(LevelAnatomy(
            n, centre=(0.0, 0.0, z0 + 0.5 * d.height),
            superior_centre=(0.0, 0.0, z0 + float(superior_rim_height(d, 0.0))
                             - d.concavity_superior),
            inferior_centre=(0.0, 0.0, z0 + d.concavity_inferior),
            pedicle_axes={s: (e + lift, v) for s, (e, v) in pedicle_axes(d).items()},
            width=d.width, depth=d.depth, height=d.height, rim=d.rim, z0=z0, dims=d))
    return out


def annotate(m: Model, names: list[str], stack: LevelStack | None = None, *,
             levels: list[LevelAnatomy] | None = None) -> None:
    """Add what every vertebra or segment model carries whatever its mesh: the ``top`` and
    ``bottom`` face and node sets (from the ``<level>/superior`` and ``<level>/inferior`` sets,
    which must exist), ``metadata["levels"]`` and the :class:`~fem.anatomy.Anatomy`
    (``m.anatomy``): ``levels`` as the builder measured them, or those of the parametric
    ``stack``; each level's ``parts`` are the regions the model has for it."""
    if levels is None:
        levels = parametric_anatomy(names, stack)
    if [a.name for a in levels] != list(names):
        raise MeshError(f"the anatomy's levels {[a.name for a in levels]} are not {names}")
    levels = [replace(a, parts=tuple(p for p in PARTS if f"{a.name}/{p}" in m.regions))
              for a in levels]
    top, bottom = names[0], names[-1]
    fs = m.face_sets
    m.add_face_set("top", fs[f"{top}/superior"].elements, fs[f"{top}/superior"].faces)
    m.add_face_set("bottom", fs[f"{bottom}/inferior"].elements, fs[f"{bottom}/inferior"].faces)
    m.add_node_set("top", m.node_sets[f"{top}/superior"])
    m.add_node_set("bottom", m.node_sets[f"{bottom}/inferior"])
    m.metadata["levels"] = list(names)
    m.anatomy = Anatomy(levels)


def vertebra_model(level: str = "L1", **kwargs) -> Model:
    """One vertebra (see :func:`segment_model`)."""
    return segment_model([level.upper()], **kwargs)
