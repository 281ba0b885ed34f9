"""One table of the limits of the parameters that the builders, the CLI and the study spec check.

A parameter outside its limits is a :class:`fem.errors.ParameterError` (a ``ModelError`` and a
``ValueError``) whose message names the parameter, its limits with their unit and the value
given. The builders (:mod:`fem.meshes.vertebra`, ``rigs``, ``ssm``, ``ssm_gmsh``,
``vertebra_gmsh``), the study spec (:data:`fem.study.spec.PARAMETERS`) and the material checks
read their bounds from :data:`LIMITS`, so that a value one accepts the others accept too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .errors import ParameterError


@dataclass(frozen=True)
class Limit:
    """``low`` to ``high`` in ``unit`` (ends included unless ``open_low`` / ``open_high``), and
    why the ends are where they are."""

    low: float
    high: float
    unit: str
    why: str
    open_low: bool = False
    open_high: bool = False

    def contains(self, value) -> bool:
        try:
            v = float(value)
        except (TypeError, ValueError):
            return False
        if not math.isfinite(v):
            return False
        above = v > self.low if self.open_low else v >= self.low
        below = v < self.high if self.open_high else v <= self.high
        return above and below

    def describe(self) -> str:
        lo, hi = ("(" if self.open_low else "["), (")" if self.open_high else "]")
        unit = f" {self.unit}" if self.unit else ""
        return f"{lo}{self.low:g}, {self.high:g}{hi}{unit}"

    def check(self, name: str, value) -> float:
        """``value`` as a float, or :class:`ParameterError` naming ``name`` and the limits."""
        if not self.contains(value):
            raise ParameterError(f"{name} must lie in {self.describe()}, got {value!r}")
        return float(value)


#: the limits by parameter name
LIMITS = {
    "voxel_size": Limit(
        0.25, 5.0, "mm", "0.25 mm is the bony endplate's thickness: a finer voxel resolves "
        "nothing more of the builders' anatomy (and an L1-L3 segment at 0.25 mm is about 10^8 "
        "DOF); at 5 mm a vertebral body is a few voxels across"),
    "mesh_size": Limit(
        0.75, 10.0, "mm", "gmsh's target edge length of the tet10 builders: below 0.75 mm the "
        "shape model's source surfaces (about 1 mm facets) are remeshed finer than they are "
        "described; at 10 mm a vertebral body is a few elements across"),
    "poisson": Limit(-1.0, 0.5, "", "the isotropic material is stable (positive definite) "
                     "only for -1 < nu < 0.5", open_low=True, open_high=True),
    "cement_volume_ml": Limit(0.1, 15.0, "mL", "clinical fills are 2-8 mL per level; 15 mL "
                              "exceeds a lumbar body's trabecular volume at low fill"),
    "bmd": Limit(10.0, 400.0, "mg/cm^3", "trabecular QCT BMD: below 10 the density-modulus "
                 "laws leave their data; 400 is dense young bone"),
}


def check(name: str, value) -> float:
    """``value`` checked against ``LIMITS[name]``: as a float, or :class:`ParameterError`."""
    return LIMITS[name].check(name, value)
