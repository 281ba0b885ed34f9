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
_functions: dict[tuple, cupy.RawKernel] = {}
_symbols: dict[tuple, cupy.cuda.MemoryPointer] = {}
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


def _function(name: str):
    """The kernel ``name`` of the current device's module (looked up once: a multigrid iteration
    launches some fifty kernels, so per-launch Python work counts on small grids)."""
    key = (cupy.cuda.Device().id, name)
    fn = _functions.get(key)
    if fn is None:
        fn = _functions[key] = _module().get_function(name)
    return fn


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


def _upload_ke(Ke) -> None:
    """Copy the reference stiffness (24 x 24, float64 or float32, contiguous on the device) into
    the constant ``voxel_ke_<dtype>`` of ``voxel.cu`` that the next product launch reads. The copy
    is queued on the current stream before the launch, so launches with different Ke (the levels
    of a multigrid) follow each other correctly on one stream; launches on several streams at
    once must not use different Ke."""
    key = (cupy.cuda.Device().id, _tag(Ke, "Ke"))
    sym = _symbols.get(key)
    if sym is None:
        sym = _symbols[key] = _module().get_global(f"voxel_ke_{key[1]}")
    sym.copy_from_device_async(Ke.data, Ke.nbytes, cupy.cuda.get_current_stream())


#: most items (nodes, elements, vector entries) one launch may cover: the kernels split an
#: item's index into grid coordinates in 32-bit arithmetic (voxel.cu, split3); the solvers'
#: ranges of node planes (GPU_RANGE_NODES in fem.gmg) stay far below it
MAX_ITEMS = 2**32 - 1


def _launch(name: str, n: int, args) -> None:
    if n <= 0:
        return
    if n > MAX_ITEMS:
        raise ValueError(f"{name}: a launch over {n} items; at most {MAX_ITEMS} (split the "
                         "range of planes)")
    grid = (n + BLOCK - 1) // BLOCK
    _function(name)((grid,), (BLOCK,), args)


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
    _upload_ke(_input(Ke, (24, 24), out.dtype, "Ke"))
    _launch(f"voxel_matvec_{t}_{_tag(E, 'E')}", out.size // 3,
            (u, E, out, *_ints(nx, ny, nz, k0, k1)))


def _acc_operands(E, out, k0: int, k1: int):
    """The float32 moduli of a float64-summed product (mixed precision's CG product), checked
    with its float32 output over the node planes k0..k1-1."""
    E = cupy.ascontiguousarray(E)
    if E.ndim != 3 or np.dtype(E.dtype) != np.float32:
        raise TypeError(f"E must be a float32 (nz, ny, nx) array, got {E.dtype} {E.shape}")
    nz, ny, nx = E.shape
    _planes(k0, k1, nz + 1, "node plane")
    if _output(out, (k1 - k0, ny + 1, nx + 1, 3)) != "f32":
        raise TypeError(f"out must be float32, got {out.dtype}")
    return E


def voxel_matvec_acc(u, E, Ke, out, k0: int, k1: int) -> None:
    """:func:`voxel_matvec` of float32 u and E into float32 out, summed in float64 (Ke float64):
    mixed precision's CG product (twin :func:`fem.kernels.voxel.voxel_matvec_acc`)."""
    E = _acc_operands(E, out, k0, k1)
    nz, ny, nx = E.shape
    u = _input(u, (nz + 1, ny + 1, nx + 1, 3), np.float32, "u")
    _upload_ke(_input(Ke, (24, 24), np.float64, "Ke"))
    _launch("voxel_matvec_acc_f32_f32", out.size // 3, (u, E, out, *_ints(nx, ny, nz, k0, k1)))


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


# --- the V-cycle's fused steps (twins in fem.kernels.voxel) ----------------------------------

_SMOOTH_FIRST, _SMOOTH_JACOBI, _SMOOTH_RESIDUAL = 0, 1, 2


def _bits(bits, shape):
    return _input(bits, shape, np.uint8, "bits")


def _smooth(z, r, E, Ke, kdiag, bits, omega, out, k0, k1, mode):
    E = _moduli(E)
    nz, ny, nx = E.shape
    _planes(k0, k1, nz + 1, "node plane")
    t = _output(out, (k1 - k0, ny + 1, nx + 1, 3))
    nodes = (nz + 1, ny + 1, nx + 1, 3)
    r = _input(r, nodes, out.dtype, "r")
    # what a mode does not read (z of the first sweep, kdiag of the residual) is passed as
    # another array of the call: the kernel never dereferences it
    z = r if z is None else _input(z, nodes, out.dtype, "z")
    kdiag = r if kdiag is None else _input(kdiag, (24,), out.dtype, "kdiag")
    if Ke is not None:  # the first sweep needs no product
        _upload_ke(_input(Ke, (24, 24), out.dtype, "Ke"))
    bits = _bits(bits, nodes[:3])
    _launch(f"voxel_smooth_{t}_{_tag(E, 'E')}", out.size // 3,
            (z, r, E, kdiag, bits, out.dtype.type(omega), out, *_ints(nx, ny, nz, k0, k1),
             np.int32(mode)))


def voxel_jacobi_first(r, E, kdiag, bits, omega: float, out, k0: int, k1: int) -> None:
    """``out = omega F D^-1 r`` at the node planes k0..k1-1 (one thread per node)."""
    _smooth(None, r, E, None, kdiag, bits, omega, out, k0, k1, _SMOOTH_FIRST)


def voxel_jacobi(z, r, E, Ke, kdiag, bits, omega: float, out, k0: int, k1: int) -> None:
    """``out = omega F D^-1 (A z - r)`` at the node planes k0..k1-1 (one thread per node)."""
    _smooth(z, r, E, Ke, kdiag, bits, omega, out, k0, k1, _SMOOTH_JACOBI)


def voxel_residual(z, r, E, Ke, bits, out, k0: int, k1: int) -> None:
    """``out = F (r - A z)`` at the node planes k0..k1-1 (one thread per node)."""
    _smooth(z, r, E, Ke, None, bits, 0.0, out, k0, k1, _SMOOTH_RESIDUAL)


def _coarse_fits(coarse, fine, factors) -> None:
    """A coarse grid too small for the fine one would be read or written past its end."""
    for nc, nf, f in zip(coarse, fine, factors):
        if nc < -(-(nf - 1) // int(f)) + 1:
            raise ValueError(f"a coarse grid of {tuple(coarse)} nodes cannot take a fine grid of "
                             f"{tuple(fine)} nodes coarsened by {tuple(factors)}")


def voxel_cg_product(p, E, Ke, bits, out, k0: int, k1: int, acc64: bool = False) -> float:
    """``out = F A p`` at the node planes k0..k1-1 and ``p . out`` over them, in one pass (one
    thread per node; float64 partial sums per thread). ``acc64``: float32 p, E and out, float64
    Ke and sums."""
    if acc64:
        E, t = _acc_operands(E, out, k0, k1), "f32"
    else:
        E = _moduli(E)
        _planes(k0, k1, E.shape[0] + 1, "node plane")
        t = _output(out, (k1 - k0, E.shape[1] + 1, E.shape[2] + 1, 3))
    nz, ny, nx = E.shape
    nodes = (nz + 1, ny + 1, nx + 1, 3)
    p = _input(p, nodes, out.dtype, "p")
    _upload_ke(_input(Ke, (24, 24), np.float64 if acc64 else out.dtype, "Ke"))
    bits = _bits(bits, nodes[:3])
    name = "voxel_cg_product_acc_f32_f32" if acc64 else f"voxel_cg_product_{t}_{_tag(E, 'E')}"
    return _reduce(name, out.size // 3, (p, E, bits, out), _ints(nx, ny, nz, k0, k1))


def voxel_mask(v, bits, k0: int, k1: int) -> None:
    """``v *= F`` for v the node planes k0..k1-1 of a grid with support flags ``bits``."""
    if v.ndim != 4:
        raise ValueError(f"v must be (k1-k0, ny+1, nx+1, 3), got shape {v.shape}")
    t = _output(v, (k1 - k0,) + tuple(v.shape[1:]), "v")
    ny, nx = v.shape[1] - 1, v.shape[2] - 1
    _planes(k0, k1, bits.shape[0], "node plane")
    bits = _bits(bits, (bits.shape[0], ny + 1, nx + 1))
    _launch(f"voxel_mask_{t}", v.size // 3, (v, bits, *_ints(nx, ny, k0, k1)))


def voxel_restrict_add(t, rc, factors, k0: int) -> None:
    """``rc += R t`` for t the fine node planes k0..k0+len(t)-1 (one thread per coarse node)."""
    _restrict(t, rc, None, factors, k0)


def voxel_restrict(t, rc, coarse_bits, factors) -> None:
    """``rc = F_c R t`` for t the whole fine grid, written at once with the coarse supports
    applied (one thread per coarse node; no zeroing or masking launch)."""
    _restrict(t, rc, coarse_bits, factors, 0)


def _restrict(t, rc, coarse_bits, factors, k0: int) -> None:
    if t.ndim != 4 or rc.ndim != 4:
        raise ValueError(f"t and rc must be nodal vectors, got shapes {t.shape} and {rc.shape}")
    tag = _output(rc, rc.shape, "rc")
    ncz, ncy, ncx = rc.shape[:3]
    m, nfy, nfx = t.shape[:3]
    _coarse_fits((ncx, ncy), (nfx, nfy), factors[:2])
    t = _input(t, (m, nfy, nfx, 3), rc.dtype, "t")
    fx, fy, fz = (int(f) for f in factors)
    whole = coarse_bits is not None
    if whole:  # every coarse plane must be written: t must reach them all
        _coarse_fits((ncz,), (m,), (fz,))
        bits_c = _bits(coarse_bits, (ncz, ncy, ncx))
    else:
        bits_c = rc  # not read
    c0, c1 = (k0 // 2, min(ncz, (k0 + m) // 2 + 1)) if fz == 2 else (k0, min(ncz, k0 + m))
    if whole and (c0, c1) != (0, ncz):
        raise ValueError(f"voxel_restrict: {m} fine planes reach coarse planes [{c0}, {c1}) of "
                         f"{ncz}: the whole fine grid is needed")
    _launch(f"voxel_restrict_{tag}", max(0, c1 - c0) * ncy * ncx,
            (t, rc, bits_c, *_ints(nfx, nfy, ncx, ncy, ncz), np.int32(fx), np.int32(fy),
             np.int32(fz), *_ints(k0, m), np.int32(whole)))


def voxel_prolong_add(zc, bits, z, factors, k0: int, k1: int) -> None:
    """``z += F P zc`` at the fine node planes k0..k1-1 (one thread per fine node)."""
    tag = _output(z, z.shape, "z")
    nfz, nfy, nfx = z.shape[:3]
    _planes(k0, k1, nfz, "node plane")
    zc = _input(zc, zc.shape, z.dtype, "zc")
    ncy, ncx = zc.shape[1], zc.shape[2]
    _coarse_fits((ncx, ncy, zc.shape[0]), (nfx, nfy, nfz), factors)
    bits = _bits(bits, (nfz, nfy, nfx))
    fx, fy, fz = (int(f) for f in factors)
    _launch(f"voxel_prolong_{tag}", (k1 - k0) * nfy * nfx,
            (zc, bits, z, *_ints(nfx, nfy, ncx, ncy), np.int32(fx), np.int32(fy), np.int32(fz),
             *_ints(k0, k1)))


# --- CG's vector steps (twins in fem.kernels.voxel) --------------------------------------------

#: most threads of a reduction's launch: each leaves one float64 partial sum (2 MB at most)
REDUCE_THREADS = 1024 * BLOCK


def _flat(a, what: str):
    if not isinstance(a, cupy.ndarray) or not a.flags.c_contiguous:
        raise ValueError(f"{what} must be a C-contiguous cupy array")
    return a


def _reduce(name: str, n: int, args, tail=None) -> float:
    """Launch a reduction kernel over n items (arguments ``args``, the partials, then ``tail``,
    by default n) and sum its partials."""
    if n <= 0:
        return 0.0
    if n > MAX_ITEMS:
        raise ValueError(f"{name}: a launch over {n} items; at most {MAX_ITEMS}")
    grid = min(REDUCE_THREADS, n + BLOCK - 1) // BLOCK
    partial = cupy.empty(grid * BLOCK, dtype=np.float64)
    tail = (np.int64(n),) if tail is None else tuple(tail)
    _function(name)((grid,), (BLOCK,), (*args, partial, *tail))
    return float(partial.sum())


def _same(a, b, what: str) -> None:
    if a.shape != b.shape:
        raise ValueError(f"{what}: shapes {a.shape} and {b.shape} differ")


def vector_dot(a, b) -> float:
    """``sum(a * b)`` accumulated in float64 (one pass; partial sums per thread)."""
    a, b = _flat(a, "a"), _flat(b, "b")
    _same(a, b, "vector_dot")
    return _reduce(f"vector_dot_{_tag(a, 'a')}_{_tag(b, 'b')}", a.size, (a, b))


def cg_update(x, r, p, q, alpha: float) -> float:
    """``x += alpha p`` (x float64), ``r -= alpha q``; returns the new ``sum(r * r)``."""
    x, r, p, q = (_flat(a, w) for a, w in ((x, "x"), (r, "r"), (p, "p"), (q, "q")))
    for a, w in ((x, "x"), (p, "p"), (q, "q")):
        _same(r, a, f"cg_update {w}")
    if x.dtype != np.float64 or p.dtype != r.dtype or q.dtype != r.dtype:
        raise TypeError(f"cg_update takes float64 x and r, p, q of one dtype, got {x.dtype}, "
                        f"{r.dtype}, {p.dtype}, {q.dtype}")
    return _reduce(f"cg_update_{_tag(r, 'r')}", r.size, (x, r, p, q, np.float64(alpha)))


def cg_direction(p, z, beta: float) -> None:
    """``p = beta p + z``, in place."""
    p, z = _flat(p, "p"), _flat(z, "z")
    _same(p, z, "cg_direction")
    if z.dtype != p.dtype:
        raise TypeError(f"cg_direction takes p and z of one dtype, got {p.dtype}, {z.dtype}")
    _launch(f"cg_direction_{_tag(p, 'p')}", p.size, (p, z, np.float64(beta), np.int64(p.size)))
