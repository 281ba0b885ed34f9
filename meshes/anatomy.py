"""A level's anatomical frame, from the vectors of ``model.metadata["anatomy"][level]`` only.

Procedures (:mod:`fem.augment`), metrics (:mod:`fem.metrics`) and pictures (:mod:`fem.viz`) all
work in this frame, so they follow any rigid motion of the model
(:func:`fem.meshes.transform.rigid_transform`) and any builder that writes the same metadata:

* axial ``e_ax`` = normalise(superior_centre - inferior_centre);
* anterior ``e_ant`` = the part of normalise(left + right pedicle direction) orthogonal to
  ``e_ax`` (the pedicle directions point into the body, i.e. anteriorly);
* lateral ``e_lat = e_ax x e_ant`` (the patient's left).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import MeshError, SetError

#: width of the endplate rim (mm) where the anatomy does not give one (Wang 2012: 3-7 mm)
DEFAULT_RIM = 4.0


@dataclass(frozen=True)
class LevelFrame:
    """A level's anatomical frame: unit vectors (3,) and the anatomy it came from."""

    axial: np.ndarray
    anterior: np.ndarray
    lateral: np.ndarray
    centre: np.ndarray
    width: float
    depth: float
    rim: float


def _unit(v, what: str) -> np.ndarray:
    v = np.asarray(v, dtype=float)
    n = np.linalg.norm(v)
    if not n > 0.0:
        raise MeshError(f"{what} is a zero vector: the level's anatomy is degenerate")
    return v / n


def level_frame(model, level: str) -> LevelFrame:
    """The anatomical frame of ``level`` (module docstring)."""
    anat = model.metadata.get("anatomy", {})
    if level not in anat:
        raise SetError(f"level {level!r} has no anatomy in this model (levels with one: "
                       f"{', '.join(anat) or 'none'}); build models with fem.meshes.vertebra")
    a = anat[level]
    try:
        ax = _unit(np.subtract(a["superior_centre"], a["inferior_centre"]),
                   f"{level} superior_centre - inferior_centre")
        ped = a["pedicle_axes"]
        d = _unit(np.add(ped["left"][1], ped["right"][1]), f"{level} pedicle directions")
    except KeyError as exc:
        raise MeshError(f"anatomy of {level} lacks {exc.args[0]!r}: the frame needs "
                        "superior_centre, inferior_centre and pedicle_axes") from None
    ant = _unit(d - (d @ ax) * ax, f"{level} pedicle directions orthogonal to the axis")
    dims = a.get("dims")
    rim = float(getattr(dims, "rim", DEFAULT_RIM) or DEFAULT_RIM)
    return LevelFrame(ax, ant, np.cross(ax, ant), np.asarray(a["centre"], dtype=float),
                      float(a["width"]), float(a["depth"]), rim)
