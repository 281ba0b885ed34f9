"""A model's anatomy as a type: its levels, each with its frame, endplates, pedicle axes and parts.

Every anatomical builder (the parametric voxel and tet10 segments, the shape-model segments, the
test rigs) ends by storing an :class:`Anatomy` on the model (``model.anatomy``, kept in
``model.metadata["anatomy"]``); the procedures (fractures, lesions, PVP, PKP), the load cases,
the metrics and the views read it and nothing else of the builder. An :class:`Anatomy` is a
read-only mapping from level name to :class:`LevelAnatomy`, cranial to caudal.

Positions are in the model frame (mm); directions are unit vectors. A level's frame
(:meth:`LevelAnatomy.frame`) is built from its vectors only, so it follows any rigid motion of
the model (:func:`fem.meshes.transform.rigid_transform` moves the anatomy with the points):

* axial ``e_ax`` = normalise(superior_centre - inferior_centre);
* anterior ``e_ant`` = the part of normalise(left + right pedicle direction) orthogonal to
  ``e_ax`` (the pedicle directions point into the body, i.e. anteriorly);
* lateral ``e_lat = e_ax x e_ant`` (the patient's left).

The part names (``"<level>/<part>"`` regions) are those of :mod:`fem.parts`.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field

import numpy as np

from .errors import MeshError, SetError

#: width of the endplate rim (mm) where the anatomy does not give one (Wang 2012: 3-7 mm)
DEFAULT_RIM = 4.0
SIDES = ("left", "right")


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

    def superior(self, points) -> np.ndarray:
        """Which of ``points`` (n, 3) lie on the superior side of the level's centre, along its
        axis (how a damaged endplate's elements are told superior from inferior)."""
        return (np.asarray(points, dtype=float) - self.centre) @ self.axial > 0.0


def _point(value, what: str) -> np.ndarray:
    a = np.array(value, dtype=float)
    if a.shape != (3,) or not np.isfinite(a).all():
        raise MeshError(f"{what} must be three finite numbers (mm), got {value!r}")
    a.flags.writeable = False
    return a


def _unit(v, what: str) -> np.ndarray:
    v = np.asarray(v, dtype=float)
    n = np.linalg.norm(v)
    if not n > 0.0:
        raise MeshError(f"{what} is a zero vector: the level's anatomy is degenerate")
    return v / n


@dataclass(frozen=True, eq=False)
class LevelAnatomy:
    """One vertebral level of a model.

    ``centre``: the body's centre; ``superior_centre`` / ``inferior_centre``: the centres of the
    outer surfaces of its superior and inferior bony endplates (mm, model frame).
    ``pedicle_axes``: ``{"left"|"right": (entry point, unit direction into the body)}``, the
    transpedicular needle paths. ``width`` (lateral), ``depth`` (antero-posterior) and
    ``height`` (endplate centre to endplate centre) of the body, mm. ``parts``: the parts of
    :mod:`fem.parts` the model has for this level. ``rim``: the width of the flat endplate rim
    (mm). Where the builder knows them: ``dims``, the parametric dimensions
    (:class:`fem.meshes.vertebra.LevelDims`) and ``z0``, the height of the level's local origin
    (what the axis-aligned fracture builder works in); ``posterior_wall_y``, the y of the body's
    posterior wall plane.
    """

    name: str
    centre: np.ndarray
    superior_centre: np.ndarray
    inferior_centre: np.ndarray
    pedicle_axes: Mapping[str, tuple[np.ndarray, np.ndarray]]
    width: float
    depth: float
    height: float
    parts: tuple[str, ...] = ()
    rim: float = DEFAULT_RIM
    z0: float | None = None
    dims: object = None
    posterior_wall_y: float | None = None
    extra: Mapping[str, object] = field(default_factory=dict)

    def __post_init__(self):
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731 (frozen)
        for key in ("centre", "superior_centre", "inferior_centre"):
            set_(key, _point(getattr(self, key), f"{self.name} {key}"))
        if set(self.pedicle_axes) != set(SIDES):
            raise MeshError(f"{self.name} pedicle_axes must name 'left' and 'right', got "
                            f"{sorted(self.pedicle_axes)}")
        set_("pedicle_axes", {s: (_point(self.pedicle_axes[s][0], f"{self.name} {s} entry"),
                                  _point(_unit(self.pedicle_axes[s][1],
                                               f"{self.name} {s} pedicle direction"),
                                         f"{self.name} {s} pedicle direction"))
                              for s in SIDES})
        for key in ("width", "depth", "height", "rim"):
            v = float(getattr(self, key))
            if not v > 0.0:
                raise MeshError(f"{self.name} {key} must be > 0 mm, got {v}")
            set_(key, v)
        set_("parts", tuple(self.parts))

    @property
    def superior_set(self) -> str:
        """The face and node set of the superior endplate's outer surface."""
        return f"{self.name}/superior"

    @property
    def inferior_set(self) -> str:
        """The face and node set of the inferior endplate's outer surface."""
        return f"{self.name}/inferior"

    def frame(self) -> LevelFrame:
        """The level's anatomical frame (module docstring)."""
        ax = _unit(self.superior_centre - self.inferior_centre,
                   f"{self.name} superior_centre - inferior_centre")
        d = _unit(self.pedicle_axes["left"][1] + self.pedicle_axes["right"][1],
                  f"{self.name} pedicle directions")
        ant = _unit(d - (d @ ax) * ax, f"{self.name} pedicle directions orthogonal to the axis")
        return LevelFrame(ax, ant, np.cross(ax, ant), self.centre, self.width, self.depth,
                          self.rim)

    def moved(self, point: Callable, vector: Callable) -> LevelAnatomy:
        """This level carried by a rigid motion: ``point`` maps positions, ``vector``
        directions. ``dims`` and ``z0`` describe the builder's axis-aligned frame and stay."""
        return dataclasses.replace(
            self, centre=point(self.centre), superior_centre=point(self.superior_centre),
            inferior_centre=point(self.inferior_centre),
            pedicle_axes={s: (point(e), vector(d)) for s, (e, d) in self.pedicle_axes.items()})

    def __getitem__(self, key: str):
        """Deprecated dict access (``anatomy[level]["centre"]``) of releases before the type."""
        warnings.warn(f"anatomy[level][{key!r}] is deprecated: use the attribute "
                      f"(model.anatomy[level].{key})", DeprecationWarning, stacklevel=2)
        if key in self.extra:
            return self.extra[key]
        try:
            return getattr(self, key)
        except AttributeError:
            raise KeyError(key) from None

    def to_json(self) -> dict:
        """The level as JSON-ready values (``dims`` as a plain dict, when present)."""
        dims = self.dims
        if dataclasses.is_dataclass(dims):
            dims = dataclasses.asdict(dims)
        elif dims is not None and not isinstance(dims, dict):
            dims = dict(vars(dims))
        return {"name": self.name, "centre": self.centre.tolist(),
                "superior_centre": self.superior_centre.tolist(),
                "inferior_centre": self.inferior_centre.tolist(),
                "pedicle_axes": {s: [e.tolist(), d.tolist()]
                                 for s, (e, d) in self.pedicle_axes.items()},
                "width": self.width, "depth": self.depth, "height": self.height,
                "parts": list(self.parts), "rim": self.rim, "z0": self.z0, "dims": dims,
                "posterior_wall_y": self.posterior_wall_y, "extra": dict(self.extra)}

    @classmethod
    def from_json(cls, value: dict, name: str | None = None) -> LevelAnatomy:
        """The level from :meth:`to_json`'s form or the dict of releases before the type."""
        v = {k: value[k] for k in value if not k.startswith("__")}
        v.setdefault("name", name)
        dims = v.get("dims")
        if isinstance(dims, dict):  # attribute access, as the builders' LevelDims
            from types import SimpleNamespace

            v["dims"] = SimpleNamespace(**{k: x for k, x in dims.items()
                                           if not k.startswith("__")})
        if v.get("rim") is None:
            v["rim"] = float(getattr(v.get("dims"), "rim", None) or DEFAULT_RIM)
        known = {f.name for f in dataclasses.fields(cls)}
        extra = dict(v.pop("extra", None) or {})
        extra.update({k: v.pop(k) for k in list(v) if k not in known})
        return cls(**v, extra=extra)


class Anatomy(Mapping):
    """The levels of a model, cranial to caudal: a read-only mapping name -> LevelAnatomy."""

    def __init__(self, levels: Iterable[LevelAnatomy] = ()):
        levels = tuple(levels)
        for a in levels:
            if not isinstance(a, LevelAnatomy):
                raise TypeError(f"Anatomy holds LevelAnatomy records, got {type(a).__name__}")
        names = [a.name for a in levels]
        if len(set(names)) != len(names):
            raise MeshError(f"an anatomy names each level once, got {names}")
        self._levels = {a.name: a for a in levels}

    def __getitem__(self, level: str) -> LevelAnatomy:
        try:
            return self._levels[level]
        except KeyError:
            raise SetError(f"level {level!r} is not in this model (levels with an anatomy: "
                           f"{', '.join(self._levels) or 'none'}; the anatomical builders are "
                           "fem.meshes.vertebra, fem.meshes.ssm and their tet10 forms)") from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._levels)

    def __len__(self) -> int:
        return len(self._levels)

    def __repr__(self) -> str:
        return f"Anatomy({', '.join(self._levels) or 'no levels'})"

    @property
    def levels(self) -> list[str]:
        """The level names, cranial to caudal."""
        return list(self._levels)

    def replaced(self, *levels: LevelAnatomy) -> Anatomy:
        """A copy with the given levels in place of those of the same name."""
        new = {a.name: a for a in levels}
        unknown = set(new) - set(self._levels)
        if unknown:
            raise SetError(f"levels {sorted(unknown)} are not in this anatomy ({self.levels})")
        return Anatomy(new.get(n, a) for n, a in self._levels.items())

    def moved(self, point: Callable, vector: Callable, levels: Iterable[str] | None = None):
        """A copy with ``levels`` (default all) carried by a rigid motion (LevelAnatomy.moved)."""
        names = self.levels if levels is None else list(levels)
        return self.replaced(*(self[n].moved(point, vector) for n in names))

    def to_json(self) -> list:
        return [a.to_json() for a in self._levels.values()]

    @classmethod
    def from_json(cls, value) -> Anatomy:
        """From :meth:`to_json`'s list, or the ``{level: dict}`` of releases before the type."""
        def level(v, name=None):
            return v if isinstance(v, LevelAnatomy) else LevelAnatomy.from_json(dict(v), name)

        if isinstance(value, Mapping):
            return cls(level(v, k) for k, v in value.items())
        return cls(level(v) for v in value)


def anatomy_of(model) -> Anatomy:
    """The model's anatomy: ``metadata["anatomy"]`` as an :class:`Anatomy` (an empty one if the
    model has none; a dict written by hand or by an older release is converted)."""
    value = model.metadata.get("anatomy")
    if value is None:
        return Anatomy()
    if not isinstance(value, Anatomy):
        value = Anatomy.from_json(value)
        model.metadata["anatomy"] = value
    return value


def level_frame(model, level: str) -> LevelFrame:
    """The anatomical frame of ``level`` of ``model`` (module docstring)."""
    return anatomy_of(model)[level].frame()


#: anterior and posterior bands for the body heights, as a fraction of the depth
HEIGHT_BAND = 0.15


def endplate_nodes(model, name: str) -> np.ndarray:
    """The nodes of an endplate node set (``"<level>/superior"`` or ``"<level>/inferior"``); a
    missing or empty one is a SetError that names it."""
    if name not in model.node_sets or not len(model.node_sets[name]):
        raise SetError(f"node set {name!r} is missing or empty: a level's heights and metrics "
                       "need the '<level>/superior' and '<level>/inferior' endplate node sets")
    return model.node_sets[name]


def body_heights(model, level: str, points=None) -> tuple[float, float, float]:
    """(anterior height mm, posterior height mm, wedge angle deg) of a level's body.

    Nodes of ``"<level>/superior"`` and ``"<level>/inferior"`` within 15 % of the depth of the
    anterior and of the posterior extreme (of both sets together); a height is the mean axial
    coordinate of the superior band minus that of the inferior band; the wedge angle is
    atan2(h_post - h_ant, distance between the band centres), positive for anterior wedging
    (kyphotic). Geometric: ``points`` default to the model's (undisplaced) points.
    """
    f = level_frame(model, level)
    pts = model.points if points is None else np.asarray(points)
    sup = pts[endplate_nodes(model, f"{level}/superior")]
    inf = pts[endplate_nodes(model, f"{level}/inferior")]
    a_sup, a_inf = sup @ f.anterior, inf @ f.anterior
    lo = min(a_sup.min(), a_inf.min())
    hi = max(a_sup.max(), a_inf.max())
    band = HEIGHT_BAND * f.depth
    out = []
    for sel_sup, sel_inf in ((a_sup >= hi - band, a_inf >= hi - band),
                             (a_sup <= lo + band, a_inf <= lo + band)):
        if not sel_sup.any() or not sel_inf.any():
            out.append((math.nan, math.nan))
            continue
        h = (sup[sel_sup] @ f.axial).mean() - (inf[sel_inf] @ f.axial).mean()
        centre = np.concatenate([a_sup[sel_sup], a_inf[sel_inf]]).mean()
        out.append((float(h), float(centre)))
    (h_ant, c_ant), (h_post, c_post) = out
    wedge = math.degrees(math.atan2(h_post - h_ant, c_ant - c_post))
    return h_ant, h_post, wedge


def level_height(model, level: str) -> float:
    """The mean of a level's anterior and posterior body heights (mm, :func:`body_heights`):
    the length over which a share of a level's height (an offset yield) is read."""
    h_ant, h_post, _ = body_heights(model, level)
    return 0.5 * (h_ant + h_post)
