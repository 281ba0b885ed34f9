"""Boundary conditions and loads: small frozen dataclasses that validate themselves.

Units are mm, N and MPa. Each condition names what it acts on (``target``): a node set or face set
of the model by name, or explicit node indices (0-based) / ``(elements, faces)`` index arrays.

* :class:`Fixed` -- zero displacement of chosen components on a node set.
* :class:`Displacement` -- prescribed displacement components (mm); ``None`` leaves one free.
* :class:`NodalForce` -- a force (N) applied at *each* node of the set (Abaqus ``*CLOAD``).
* :class:`Pressure` -- a uniform pressure (MPa) on a face set, positive pushing into the body.
* :class:`Traction` -- a uniform traction vector (MPa) on a face set.
* :class:`TotalForce` -- a total force (N) spread over a face set in proportion to area.
* :class:`RigidPlate` -- a rigid loading plate: a reference point kinematically coupled to a face
  or node set, taking a force and a moment (N, N mm) or prescribed displacement/rotation,
  as loading plates and follower preloads are applied in spine FE studies.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .errors import BoundaryConditionError
from .validate import finite, finite_array, vector3

AXES = "xyz"


def _target(value):
    if isinstance(value, str):
        if not value.strip():
            raise BoundaryConditionError("a boundary condition's target set name is empty")
        return value
    if isinstance(value, tuple) and len(value) == 2:
        e = np.asarray(value[0], dtype=np.int64).ravel()
        f = np.asarray(value[1], dtype=np.int64).ravel()
        if e.shape != f.shape:
            raise BoundaryConditionError("face target needs as many face numbers as elements")
        return (e, f)
    arr = np.asarray(value)
    if arr.dtype.kind not in "iu":
        raise BoundaryConditionError(
            f"a target must be a set name or integer indices, got {type(value).__name__}"
        )
    return arr.astype(np.int64).ravel()


def _dofs(dofs: str) -> str:
    d = str(dofs).lower()
    if not d or any(c not in AXES for c in d) or len(set(d)) != len(d):
        raise BoundaryConditionError(f"dofs must be a combination of 'x', 'y', 'z', got {dofs!r}")
    return "".join(c for c in AXES if c in d)


@dataclass(frozen=True, eq=False)
class Fixed:
    """Zero displacement of the components ``dofs`` (e.g. "xyz", "z") of a node set."""

    target: object
    dofs: str = "xyz"

    def __post_init__(self):
        object.__setattr__(self, "target", _target(self.target))
        object.__setattr__(self, "dofs", _dofs(self.dofs))

    def values(self) -> tuple:
        return tuple(0.0 if a in self.dofs else None for a in AXES)


@dataclass(frozen=True, eq=False)
class Displacement:
    """Prescribed displacement (mm) of a node set; ``None`` components stay free."""

    target: object
    value: tuple = (None, None, None)

    def __post_init__(self):
        object.__setattr__(self, "target", _target(self.target))
        v = vector3("prescribed displacement", self.value, allow_none=True,
                    error=BoundaryConditionError)
        if all(x is None for x in v):
            raise BoundaryConditionError("a prescribed displacement needs at least one component")
        object.__setattr__(self, "value", v)

    def values(self) -> tuple:
        return self.value


@dataclass(frozen=True, eq=False)
class NodalForce:
    """A force (N) applied at every node of the target (as Abaqus ``*CLOAD`` on a node set).

    ``force`` is one 3-vector for every node, or a force field: an (n, 3) array, one row per
    node of the target in the order ``model.nodes_of(target)`` gives (sorted node indices for
    explicit indices), e.g. the equivalent nodal forces of an eigenstrain."""

    target: object
    force: tuple = (0.0, 0.0, 0.0)

    def __post_init__(self):
        object.__setattr__(self, "target", _target(self.target))
        try:
            f = np.asarray(self.force, dtype=float)
        except (TypeError, ValueError):
            f = None  # vector3 says what is wrong
        if f is not None and f.ndim == 2:
            if f.shape[1] != 3 or not len(f):
                raise BoundaryConditionError(
                    f"a nodal force field must be an (n, 3) array, got shape {f.shape}")
            field_ = finite_array("nodal force field", f, BoundaryConditionError)
            field_.setflags(write=False)
            object.__setattr__(self, "force", field_)
        else:
            object.__setattr__(self, "force", vector3("nodal force", self.force,
                                                      error=BoundaryConditionError))

    @property
    def is_field(self) -> bool:
        """Whether ``force`` holds one vector per node."""
        return isinstance(self.force, np.ndarray)

    def forces(self, nodes) -> np.ndarray:
        """The (len(nodes), 3) forces at ``nodes`` (the target's nodes); a field whose length
        is not the target's raises :class:`BoundaryConditionError`."""
        if not self.is_field:
            return np.broadcast_to(np.asarray(self.force, dtype=float), (len(nodes), 3))
        if len(self.force) != len(nodes):
            raise BoundaryConditionError(
                f"nodal force field {describe(self)!r} has {len(self.force)} rows for "
                f"{len(nodes)} target nodes: give one force per node of the target")
        return self.force


@dataclass(frozen=True, eq=False)
class Pressure:
    """Uniform pressure (MPa) on a face set; positive pushes into the body (compression)."""

    target: object
    pressure: float = 0.0

    def __post_init__(self):
        object.__setattr__(self, "target", _target(self.target))
        object.__setattr__(self, "pressure", finite("pressure", self.pressure,
                                                    BoundaryConditionError))


@dataclass(frozen=True, eq=False)
class Traction:
    """Uniform traction vector (MPa = N/mm^2) on a face set."""

    target: object
    traction: tuple = (0.0, 0.0, 0.0)

    def __post_init__(self):
        object.__setattr__(self, "target", _target(self.target))
        object.__setattr__(self, "traction", vector3("traction", self.traction,
                                                     error=BoundaryConditionError))


@dataclass(frozen=True, eq=False)
class TotalForce:
    """A total force (N) spread over a face set as a uniform traction force / area."""

    target: object
    force: tuple = (0.0, 0.0, 0.0)

    def __post_init__(self):
        object.__setattr__(self, "target", _target(self.target))
        object.__setattr__(self, "force", vector3("total force", self.force,
                                                  error=BoundaryConditionError))


@dataclass(frozen=True, eq=False)
class RigidPlate:
    """A rigid loading plate on a face or node set (kinematic coupling to a reference point).

    Every node of the target moves with the plate: ``u = u_ref + theta x (x - x_ref)`` (small
    rotations). The plate's six degrees of freedom are loaded by ``force`` (N) and ``moment``
    (N mm, about the reference point) or prescribed by ``displacement`` (mm) and ``rotation``
    (rad) components; a prescribed component takes precedence over the load on it. The
    reference point defaults to the centroid of the target's nodes.
    """

    target: object
    force: tuple = (0.0, 0.0, 0.0)
    moment: tuple = (0.0, 0.0, 0.0)
    reference: tuple | None = None
    displacement: tuple = (None, None, None)
    rotation: tuple = (None, None, None)
    name: str | None = field(default=None)

    def __post_init__(self):
        err = BoundaryConditionError
        object.__setattr__(self, "target", _target(self.target))
        object.__setattr__(self, "force", vector3("plate force", self.force, error=err))
        object.__setattr__(self, "moment", vector3("plate moment", self.moment, error=err))
        if self.reference is not None:
            object.__setattr__(self, "reference", vector3("plate reference point",
                                                          self.reference, error=err))
        object.__setattr__(self, "displacement", vector3(
            "plate displacement", self.displacement, allow_none=True, error=err))
        object.__setattr__(self, "rotation", vector3(
            "plate rotation", self.rotation, allow_none=True, error=err))


CONSTRAINTS = (Fixed, Displacement)
NODE_LOADS = (NodalForce,)
FACE_LOADS = (Pressure, Traction, TotalForce)


def describe(cond) -> str:
    """A short name for messages and reaction tables: the set name, or kind and size."""
    t = cond.target
    if isinstance(t, str):
        return t
    if isinstance(t, tuple):
        return f"{type(cond).__name__.lower()}[{len(t[0])} faces]"
    return f"{type(cond).__name__.lower()}[{len(t)} nodes]"
