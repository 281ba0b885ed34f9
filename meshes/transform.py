"""Rigid motions of a whole model: a rotated and translated copy for invariance checks.

A rigid motion changes no prediction: the metrics of :mod:`fem.metrics` work in each level's
anatomical frame, built from the vectors of ``model.anatomy``, so a model and its rotated
copy must give the same numbers (issue 5, deliverable 7). :func:`rigid_transform` moves
everything that is a position or a direction: the points, the anatomy (centres, pedicle entry
points and directions), the fracture collapse fields, lesion centres, the points and directions
of augmentation records, and the vectors of the boundary conditions.

Refused, because they are tied to the global axes: orthotropic materials (their constants are in
the global axes), reflections (they swap left and right), and conditions that prescribe only some
global components (``Fixed(..., "z")``, ``Displacement`` or rigid-plate motions with ``None``
components): rotated, they would constrain different directions.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import numpy as np

from ..anatomy import Anatomy
from ..errors import BoundaryConditionError, MaterialError, MeshError, ParameterError
from ..loads import Displacement, Fixed, NodalForce, RigidPlate, TotalForce, Traction
from ..model import Model

#: fields of metadata records (dataclasses or dicts) that hold positions (mm) ...
POINT_FIELDS = ("centre", "centroid", "superior_centre", "inferior_centre", "entry", "tip",
                "start", "end", "position", "reference")
#: ... and directions (unit vectors or displacements)
VECTOR_FIELDS = ("direction", "axis", "normal")
#: metadata that describes the builder's axis-aligned grid and stops being valid once rotated
GRID_METADATA = ("voxel_grid",)


def rotation_matrix(axis, angle_deg: float) -> np.ndarray:
    """The (3, 3) rotation by ``angle_deg`` degrees about ``axis`` (right-hand rule)."""
    a = np.asarray(axis, dtype=float)
    n = np.linalg.norm(a)
    if a.shape != (3,) or not np.isfinite(a).all() or n == 0.0:
        raise ParameterError(f"rotation axis must be a non-zero 3-vector, got {axis!r}")
    k = a / n
    t = np.radians(float(angle_deg))
    K = np.array([[0.0, -k[2], k[1]], [k[2], 0.0, -k[0]], [-k[1], k[0], 0.0]])
    return np.eye(3) + np.sin(t) * K + (1.0 - np.cos(t)) * (K @ K)


def _check_rotation(rotation) -> np.ndarray:
    R = np.asarray(rotation, dtype=float)
    if R.shape != (3, 3) or not np.isfinite(R).all():
        raise ParameterError(f"rotation must be a finite (3, 3) matrix, got shape {R.shape}")
    err = np.abs(R @ R.T - np.eye(3)).max()
    if err > 1e-9:
        raise MeshError(f"rotation is not orthonormal (|R R^T - I| = {err:.2g}): build it with "
                        "fem.meshes.transform.rotation_matrix or scipy's Rotation")
    if np.linalg.det(R) < 0.0:
        raise MeshError("rotation has determinant -1 (a reflection, which swaps the patient's "
                        "left and right): pass a proper rotation")
    return R


class Motion:
    """x -> R x + t on positions, v -> R v on directions, applied to nested metadata."""

    def __init__(self, R: np.ndarray, t: np.ndarray):
        self.R, self.t = R, t

    def point(self, p):
        return self._keep_type(p, self.R @ np.asarray(p, dtype=float) + self.t)

    def vector(self, v):
        return self._keep_type(v, self.R @ np.asarray(v, dtype=float))

    @staticmethod
    def _keep_type(old, new):
        if isinstance(old, np.ndarray):
            return new
        return tuple(float(x) for x in new)

    def field(self, name, value):
        if _is3(value):
            if name in POINT_FIELDS:
                return self.point(value)
            if name in VECTOR_FIELDS:
                return self.vector(value)
        return self.record(value)

    def record(self, value):
        """Transform the point and direction fields of a record, recursively."""
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            changes = {}
            for f in dataclasses.fields(value):
                old = getattr(value, f.name)
                new = self.field(f.name, old)
                if new is not old:
                    changes[f.name] = new
            return dataclasses.replace(value, **changes) if changes else value
        if isinstance(value, Mapping):
            return {k: self.field(k, v) for k, v in value.items()}
        if isinstance(value, (list, tuple)) and value and not _is3(value):
            out = [self.record(v) for v in value]
            return type(value)(out) if isinstance(value, tuple) else out
        return value

    def anatomy(self, anat: Anatomy, levels=None) -> Anatomy:
        """``anat`` with ``levels`` (default all) moved."""
        return anat.moved(self.point, self.vector, levels)


def _is3(value) -> bool:
    if isinstance(value, (str, bytes)) or dataclasses.is_dataclass(value):
        return False
    try:
        a = np.asarray(value)
    except (TypeError, ValueError):
        return False
    return a.shape == (3,) and a.dtype.kind in "iuf"


def _all_or_none(name: str, v: tuple, what: str):
    given = [x is not None for x in v]
    if any(given) and not all(given):
        raise BoundaryConditionError(
            f"{what} prescribes only some global components ({name} = {v}); rotated, it would "
            "constrain other directions: prescribe all three components or none before "
            "rigid_transform()")
    return all(given)


def _condition(c, m: Motion):
    if isinstance(c, Fixed):
        if c.dofs != "xyz":
            raise BoundaryConditionError(
                f"Fixed({c.target!r}, dofs={c.dofs!r}) fixes global components only; a rigid "
                "motion would change what it constrains: fix 'xyz' or add the condition after "
                "rigid_transform()")
        return c
    if isinstance(c, Displacement):
        _all_or_none("value", c.value, "a Displacement")
        return dataclasses.replace(c, value=m.vector(c.value))
    if isinstance(c, NodalForce) and c.is_field:
        return dataclasses.replace(c, force=c.force @ m.R.T)
    if isinstance(c, NodalForce | TotalForce):
        return dataclasses.replace(c, force=m.vector(c.force))
    if isinstance(c, Traction):
        return dataclasses.replace(c, traction=m.vector(c.traction))
    if isinstance(c, RigidPlate):
        what = f"rigid plate {c.name or c.target!r}"
        changes = dict(force=m.vector(c.force), moment=m.vector(c.moment))
        if c.reference is not None:
            changes["reference"] = m.point(c.reference)
        for key in ("displacement", "rotation"):
            if _all_or_none(key, getattr(c, key), what):
                changes[key] = m.vector(getattr(c, key))
        return dataclasses.replace(c, **changes)
    return c  # Pressure acts along the face normal: unchanged by a rigid motion


def rigid_transform(model: Model, rotation, translation=(0.0, 0.0, 0.0)) -> Model:
    """A copy of ``model`` moved rigidly: ``x -> rotation @ x + translation`` (mm).

    Points, the anatomy's (``model.anatomy``) vectors, ``metadata["collapse"]`` fields, metadata records'
    position and direction fields (:data:`POINT_FIELDS`, :data:`VECTOR_FIELDS`) and the
    boundary conditions' vectors move with it; sets, regions and materials are unchanged. The
    copy has ``metadata["rotated"] = True`` (axis-aligned builders such as
    :func:`fem.meshes.pathology.compress` refuse it) and ``metadata["rigid_transform"]``, the
    accumulated ``{"rotation": (3, 3), "translation": (3,)}`` from the builder's frame. Raises
    :class:`~fem.MaterialError` for models orthotropic in the global axes (cylindrical axes move
    with the model), :class:`~fem.MeshError` for a matrix that
    is not a proper rotation and :class:`~fem.BoundaryConditionError` for conditions on some
    global components only.
    """
    R = _check_rotation(rotation)
    t = np.asarray(translation, dtype=float)
    if t.shape != (3,) or not np.isfinite(t).all():
        raise ParameterError(f"translation must be three finite numbers (mm), got {translation!r}")
    cyl = model.cylindrical_mask()
    fixed_axes = model.orthotropic_mask() & ~cyl
    if fixed_axes.any():
        raise MaterialError(
            f"{int(fixed_axes.sum())} element(s) are orthotropic with constants in the global "
            "axes, which a rotation would not carry along: rotate an isotropic model (or one "
            "whose orthotropic constants are in cylindrical axes)")
    m = Motion(R, t)
    conditions = [_condition(c, m) for c in model.conditions]
    out = model.copy()
    out.points = model.points @ R.T + t
    if cyl.any():  # cylindrical axes move with the model: their constants need no change
        out.ortho_axis[cyl, :3] = model.ortho_axis[cyl, :3] @ R.T + t
        out.ortho_axis[cyl, 3:] = model.ortho_axis[cyl, 3:] @ R.T
    out.conditions = conditions
    meta = out.metadata
    for key in GRID_METADATA:
        meta.pop(key, None)
    for key, value in list(meta.items()):
        if key == "anatomy":
            meta[key] = m.anatomy(out.anatomy)
        elif key == "collapse":
            meta[key] = {lv: np.asarray(u, dtype=float) @ R.T for lv, u in value.items()}
        elif key == "kyphosis":  # x -> K x + k in the new frame: R K R^T, R k + t - R K R^T t
            meta[key] = {}
            for lv, kv in value.items():
                Kn = R @ np.asarray(kv["rotation"]) @ R.T
                meta[key][lv] = {**kv, "rotation": Kn,
                                 "translation": R @ np.asarray(kv["translation"]) + t - Kn @ t}
        elif key in ("fractures", "lesions", "augmentations"):
            meta[key] = m.record(value)
    prev = meta.get("rigid_transform", {"rotation": np.eye(3), "translation": np.zeros(3)})
    meta["rigid_transform"] = {"rotation": R @ prev["rotation"],
                               "translation": R @ prev["translation"] + t}
    meta["rotated"] = True
    return out
