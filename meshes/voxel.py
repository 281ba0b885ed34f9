"""Synthetic CT-like voxel models for tests and benchmarks.

:func:`bone_like_block` fills a box with a smooth random modulus field spanning ``contrast``:1
(log-uniform between ``E_min`` and ``E_min * contrast``), like the heterogeneous trabecular
moduli mapped from QCT density, and loads it in axial compression: the bottom face (``zmin``)
rests on a frictionless support (z fixed; x and y fixed along two edges to remove the rigid
motions), the top face (``zmax``) carries a uniform pressure.
"""

from __future__ import annotations

import numpy as np

from ..loads import Fixed, Pressure
from ..voxel import VoxelModel


def smooth_field(shape, correlation: float = 2.0, seed: int = 0) -> np.ndarray:
    """A smooth random field on ``shape`` voxels scaled to [0, 1] (Gaussian filter of white
    noise with standard deviation ``correlation`` voxels, periodic)."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    g = ndimage.gaussian_filter(rng.standard_normal(tuple(int(n) for n in shape)), correlation,
                                mode="wrap")
    lo, hi = float(g.min()), float(g.max())
    return (g - lo) / (hi - lo if hi > lo else 1.0)


def bone_like_block(shape, *, spacing=(1.0, 1.0, 1.0), E_min: float = 100.0,
                    contrast: float = 100.0, nu: float = 0.3, pressure: float = 1.0,
                    correlation: float = 2.0, seed: int = 0) -> VoxelModel:
    """A heterogeneous voxel block (moduli E_min .. E_min * contrast MPa) in axial compression
    under ``pressure`` MPa on zmax, supported on zmin (see the module docstring)."""
    g = smooth_field(shape, correlation, seed)
    E = E_min * contrast ** g
    vm = VoxelModel(E, spacing=spacing, nu=nu)
    nx, ny, nz = vm.shape
    vm.add_node_set("edge_x", np.stack([np.arange(nx + 1), np.zeros(nx + 1, np.int64),
                                        np.zeros(nx + 1, np.int64)], axis=1))
    vm.add_node_set("edge_y", np.stack([np.zeros(ny + 1, np.int64), np.arange(ny + 1),
                                        np.zeros(ny + 1, np.int64)], axis=1))
    vm.add(Fixed("zmin", "z"), Fixed("edge_x", "y"), Fixed("edge_y", "x"),
           Pressure("zmax", pressure))
    return vm
