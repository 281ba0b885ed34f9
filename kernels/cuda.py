"""CuPy launchers of the voxel kernels in ``voxel.cu``, with the signatures of their NumPy twins.

Each function here takes CuPy arrays and gives the numbers of the function of the same name in
:mod:`fem.kernels.voxel` (the twin defines layout and semantics). The CUDA source is read from
the installed package, compiled with NVRTC once per device and cached. Importing this module
imports cupy: ask :func:`fem.kernels.backend.voxel_kernels` for the kernels instead.
"""

from __future__ import annotations

from importlib import resources

import cupy
import numpy as np

BLOCK = 256
_SOURCE = "voxel.cu"
_modules: dict[int, cupy.RawModule] = {}
_TAGS = {np.dtype(np.float64): "f64", np.dtype(np.float32): "f32"}


def source() -> str:
    """The CUDA source of the kernels, as installed with the package."""
    return resources.files(__package__).joinpath(_SOURCE).read_text(encoding="utf-8")


def _module() -> cupy.RawModule:
    """The compiled ``voxel.cu`` of the current device (compiled on first use)."""
    dev = cupy.cuda.Device().id
    mod = _modules.get(dev)
    if mod is None:
        mod = cupy.RawModule(code=source(), options=("--std=c++14",))
        _modules[dev] = mod
    return mod


def _tag(a, what: str) -> str:
    try:
        return _TAGS[np.dtype(a.dtype)]
    except KeyError:
        raise TypeError(f"{what} must be float32 or float64, got {a.dtype}") from None


def _output(out, shape, what: str = "out") -> str:
    """Check the in-place output the kernel writes through a raw pointer; return its dtype tag."""
    if not isinstance(out, cupy.ndarray) or not out.flags.c_contiguous:
        raise ValueError(f"{what} must be a C-contiguous cupy array")
    if tuple(out.shape) != tuple(shape):
        raise ValueError(f"{what} has shape {tuple(out.shape)}, expected {tuple(shape)}")
    return _tag(out, what)


def _input(a, shape, dtype, what: str):
    a = cupy.ascontiguousarray(a, dtype=dtype)
    if tuple(a.shape) != tuple(shape):
        raise ValueError(f"{what} has shape {tuple(a.shape)}, expected {tuple(shape)}")
    return a


def _moduli(E):
    E = cupy.ascontiguousarray(E)
    if E.ndim != 3:
        raise ValueError(f"E must be (nz, ny, nx), got shape {E.shape}")
    if np.dtype(E.dtype) not in _TAGS:
        E = E.astype(np.float64)
    return E


def _launch(name: str, n: int, args) -> None:
    if n <= 0:
        return
    grid = (n + BLOCK - 1) // BLOCK
    _module().get_function(name)((grid,), (BLOCK,), args)


def _planes(lo: int, hi: int, top: int, what: str) -> None:
    """Out-of-range planes would read past the arrays on the device: refuse them."""
    if not 0 <= lo <= hi <= top:
        raise ValueError(f"{what} range [{lo}, {hi}) is not inside [0, {top}]")


def _ints(*values):
    return tuple(np.int64(v) for v in values)


def voxel_matvec(u, E, Ke, out, k0: int, k1: int) -> None:
    """``out[k - k0] = (A u)[k]`` for the node planes ``k0 <= k < k1`` (one thread per node)."""
    E = _moduli(E)
    nz, ny, nx = E.shape
    _planes(k0, k1, nz + 1, "node plane")
    t = _output(out, (k1 - k0, ny + 1, nx + 1, 3))
    u = _input(u, (nz + 1, ny + 1, nx + 1, 3), out.dtype, "u")
    Ke = _input(Ke, (24, 24), out.dtype, "Ke")
    _launch(f"voxel_matvec_{t}_{_tag(E, 'E')}", out.size // 3,
            (u, E, Ke, out, *_ints(nx, ny, nz, k0, k1)))


def voxel_matvec_acc(u, E, Ke, out, k0: int, k1: int) -> None:
    """:func:`voxel_matvec` of float32 u and E into float32 out, summed in float64 (Ke float64):
    mixed precision's CG product (twin :func:`fem.kernels.voxel.voxel_matvec_acc`)."""
    E = cupy.ascontiguousarray(E)
    if E.ndim != 3 or np.dtype(E.dtype) != np.float32:
        raise TypeError(f"E must be a float32 (nz, ny, nx) array, got {E.dtype} {E.shape}")
    nz, ny, nx = E.shape
    _planes(k0, k1, nz + 1, "node plane")
    if _output(out, (k1 - k0, ny + 1, nx + 1, 3)) != "f32":
        raise TypeError(f"out must be float32, got {out.dtype}")
    u = _input(u, (nz + 1, ny + 1, nx + 1, 3), np.float32, "u")
    Ke = _input(Ke, (24, 24), np.float64, "Ke")
    _launch("voxel_matvec_acc_f32_f32", out.size // 3, (u, E, Ke, out, *_ints(nx, ny, nz, k0, k1)))


def voxel_diagonal(E, kdiag, out, k0: int, k1: int) -> None:
    """``out[k - k0]`` = the diagonal of A at the node planes ``k0 <= k < k1``."""
    E = _moduli(E)
    nz, ny, nx = E.shape
    _planes(k0, k1, nz + 1, "node plane")
    t = _output(out, (k1 - k0, ny + 1, nx + 1, 3))
    kdiag = _input(kdiag, (24,), out.dtype, "kdiag")
    _launch(f"voxel_diagonal_{t}_{_tag(E, 'E')}", out.size // 3,
            (E, kdiag, out, *_ints(nx, ny, nz, k0, k1)))


def voxel_strain(u, B, out, e0: int, e1: int) -> None:
    """Element-average strains of the element planes ``e0 <= e < e1`` (one thread per element)."""
    if out.ndim != 4:
        raise ValueError(f"out must be (e1-e0, ny, nx, 6), got shape {out.shape}")
    ny, nx = out.shape[1], out.shape[2]
    nz = u.shape[0] - 1
    _planes(e0, e1, nz, "element plane")
    t = _output(out, (e1 - e0, ny, nx, 6))
    u = _input(u, (nz + 1, ny + 1, nx + 1, 3), out.dtype, "u")
    B = _input(B, (6, 24), out.dtype, "B")
    _launch(f"voxel_strain_{t}", out.size // 6, (u, B, out, *_ints(nx, ny, nz, e0, e1)))
