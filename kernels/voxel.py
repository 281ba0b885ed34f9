"""Matrix-free kernels of the regular hex8 voxel grid: NumPy twins of ``voxel.cu``.

A voxel model is a grid of ``nz x ny x nx`` identical box elements (spacing ``hx, hy, hz`` mm)
of one Poisson's ratio, each with its own Young's modulus ``E[k, j, i]`` (MPa; 0 for an empty
voxel). Every element stiffness is the same reference matrix ``Ke`` (24 x 24, for E = 1) scaled by
the element's modulus, so the global product ``A u`` needs no assembled matrix: 8 bytes per voxel
instead of about 1 KB per dof.

Layout (C order, the same on the GPU): nodal vectors are ``(nz + 1, ny + 1, nx + 1, 3)``, i.e.
node ``(i, j, k)`` has the flat index ``i + (nx + 1) * (j + (ny + 1) * k)`` and its three dofs
follow each other; element dofs are ordered corner-major in the VTK hex8 corner order
(:data:`CORNERS`), the same as :mod:`fem.kernels.elastic`.

The kernels work on a range of node planes ``k0 <= k < k1`` (the GPU kernels launch one thread
per node of the range) so that a solver can stream through the grid plane range by plane range
and update vectors in place without a second full-size buffer. Each function here has the
signature of its CUDA kernel's launcher in :mod:`fem.kernels.cuda` and gives the same numbers.
The twins use only the Array API standard, on the namespace of their ``out`` array (NumPy, or
array-api-strict in the tests, which proves that they call nothing CuPy lacks); like the CUDA
kernels they compute in the dtype of ``out``, converting ``u``, ``E`` and ``Ke`` to it.
"""

from __future__ import annotations

import numpy as np

from .backend import namespace

#: corner offsets (di, dj, dk) of the hex8 element in VTK (= Abaqus C3D8) node order
CORNERS = np.array([(0, 0, 0), (1, 0, 0), (1, 1, 0), (0, 1, 0),
                    (0, 0, 1), (1, 0, 1), (1, 1, 1), (0, 1, 1)], dtype=np.int64)
#: the same as Python ints, to index arrays of any Array API namespace
CORNER_OFFSETS = tuple(tuple(int(v) for v in c) for c in CORNERS)

#: strain components produced by :func:`voxel_strain` (tensor components, not engineering shear)
STRAIN_ORDER = ("xx", "yy", "zz", "xy", "yz", "xz")

#: voxels per GEMM in the NumPy matvec (keeps its temporaries near 3 MB and in cache)
CHUNK_VOXELS = 8192
#: voxels per GEMM where the twin takes several whole element planes at once (planes of fewer
#: voxels: a multigrid's coarse levels). Measured with one thread (bench/voxel_twin.py): blocks
#: of 1 024 voxels cost 230-270 ns a voxel on 8^3 to 32^3 grids; larger multi-plane blocks
#: 210-380, varying from run to run; one plane a call 340-2 700 on grids of 16^3 and less
PLANE_BLOCK_VOXELS = 1024


def gauss_gradients(spacing):
    """Shape-function gradients (8 Gauss points, 8 nodes, 3) and weights x det J of the box."""
    h = np.asarray(spacing, dtype=np.float64)
    g = 1.0 / np.sqrt(3.0)
    signs = 2.0 * CORNERS - 1.0  # natural coordinates of the corners, +-1
    pts = signs * g  # 2x2x2 Gauss points in the same order
    # N_a = prod_d (1 + s_ad xi_d) / 8 ; dN_a/dxi_d = s_ad prod_{e != d}(1 + s_ae xi_e) / 8
    one = 1.0 + pts[:, None, :] * signs[None, :, :]  # (g, a, d)
    dN = np.empty((8, 8, 3))
    for d in range(3):
        others = [e for e in range(3) if e != d]
        dN[:, :, d] = signs[None, :, d] * one[:, :, others[0]] * one[:, :, others[1]] / 8.0
    G = dN * (2.0 / h)[None, None, :]  # d/dx = (2/h) d/dxi for a box
    wdet = np.full(8, np.prod(h) / 8.0)
    return G, wdet


def reference_stiffness(spacing, nu: float) -> np.ndarray:
    """The 24 x 24 stiffness of one box element with E = 1 MPa and Poisson's ratio ``nu``
    (full 2x2x2 integration, dofs corner-major in VTK order), in N/mm per MPa of modulus."""
    G, wdet = gauss_gradients(spacing)
    lam = nu / ((1.0 + nu) * (1.0 - 2.0 * nu))
    mu = 1.0 / (2.0 * (1.0 + nu))
    H = (G * np.sqrt(wdet)[:, None, None]).reshape(8, 24)
    A = (H.T @ H).reshape(8, 3, 8, 3)  # [a, i, b, j] = sum_g w dNa_i dNb_j
    trace = A[:, 0, :, 0] + A[:, 1, :, 1] + A[:, 2, :, 2]
    K = lam * A + mu * A.transpose(0, 3, 2, 1)
    for i in range(3):
        K[:, i, :, i] += mu * trace
    return K.reshape(24, 24)


def mean_strain_operator(spacing) -> np.ndarray:
    """B (6, 24): element-average strain (xx, yy, zz, xy, yz, xz; tensor components) from the
    element's 24 nodal displacements, averaged over the 8 Gauss points like :class:`fem.Result`."""
    G, _ = gauss_gradients(spacing)
    Gm = G.mean(axis=0)  # (8 nodes, 3)
    B = np.zeros((6, 8, 3))
    for c, (i, j) in enumerate(((0, 0), (1, 1), (2, 2), (0, 1), (1, 2), (0, 2))):
        B[c, :, i] += 0.5 * Gm[:, j]
        B[c, :, j] += 0.5 * Gm[:, i]
    return B.reshape(6, 24)


def _grid(E):
    nz, ny, nx = E.shape
    return nx, ny, nz


def voxel_matvec(u, E, Ke, out, k0: int, k1: int) -> None:
    """``out[k - k0] = (A u)[k]`` for the node planes ``k0 <= k < k1``.

    u: (nz+1, ny+1, nx+1, 3) nodal vector; E: (nz, ny, nx) moduli; Ke: (24, 24) reference
    stiffness; out: (k1-k0, ny+1, nx+1, 3), whose dtype is the compute precision.
    The product is element by element: gather the 24 dofs of each voxel in the element planes
    that touch the node planes, one GEMM with Ke, scale by E, add back to the nodes.
    """
    xp = namespace(out)
    nx, ny, nz = _grid(E)
    e0, e1 = max(k0 - 1, 0), min(k1, nz)  # element planes touching node planes k0..k1-1
    Ke = xp.astype(Ke, out.dtype, copy=False)
    out[...] = 0
    # voxels per GEMM: bounded temporaries (about 2 x 24 x 8 bytes x CHUNK_VOXELS): rows of a
    # plane, or whole planes where several fit (a coarse level's few voxels in one GEMM)
    rows = max(1, min(ny, CHUNK_VOXELS // max(nx, 1)))
    if rows == ny:
        planes = max(1, PLANE_BLOCK_VOXELS // max(nx * ny, 1))
        for e in range(e0, e1, planes):
            _matvec_block(xp, u, E, Ke, out, k0, k1, e, 0, ny, min(e1, e + planes))
        return
    for e in range(e0, e1):
        for j0 in range(0, ny, rows):
            j1 = min(ny, j0 + rows)
            _matvec_block(xp, u, E, Ke, out, k0, k1, e, j0, j1)


def voxel_matvec_acc(u, E, Ke, out, k0: int, k1: int) -> None:
    """:func:`voxel_matvec` with the sums in Ke's precision and the result rounded once into
    ``out``: u, E and out float32, Ke float64 (mixed precision's CG product, CUDA twin
    ``voxel_matvec_acc_f32_f32``). A node's force sums its voxels' forces, which cancel for a
    smooth u: summed in float64, then rounded, as the CUDA kernel does per node. Element plane
    by element plane into a float64 window of the two node planes it touches, so the
    temporaries are two node planes, not the range."""
    xp = namespace(out)
    nx, ny, nz = _grid(E)
    e0, e1 = max(k0 - 1, 0), min(k1, nz)
    Ke = xp.astype(Ke, xp.float64, copy=False)
    # every node plane k0..k1-1 is assigned below (its window plane, rounded): no zeroing first
    win = xp.zeros((2, ny + 1, nx + 1, 3), dtype=xp.float64)  # node planes e, e + 1
    rows = max(1, min(ny, CHUNK_VOXELS // max(nx, 1)))
    for e in range(e0, e1):
        for j0 in range(0, ny, rows):
            _matvec_block(xp, u, E, Ke, win, e, e + 2, e, j0, min(ny, j0 + rows))
        if k0 <= e < k1:  # node plane e has had both of its element planes
            out[e - k0, ...] = xp.astype(win[0, ...], out.dtype)
        win[0, ...] = win[1, ...]
        win[1, ...] = 0
    if e0 < e1 and k0 <= e1 < k1:  # the last node plane, after the last element plane
        out[e1 - k0, ...] = xp.astype(win[0, ...], out.dtype)


#: the order in which a block adds its corners' forces: the upper corners (dk = 1) first, so
#: that a node plane receives the forces of the element plane below it before those of the one
#: above, in one block of several planes as in blocks of one plane each (the same sums in the
#: same order however many planes a block takes; the GEMM's own rows are bit-identical across
#: block sizes only where the BLAS rounds a row the same whatever the number of rows, which
#: OpenBLAS on an AMD EPYC does not for float32: an ulp apart)
_SCATTER_ORDER = (4, 5, 6, 7, 0, 1, 2, 3)


def _matvec_block(xp, u, E, Ke, out, k0, k1, e, j0, j1, e_end=None):
    """Add the products of the voxels (e..e_end-1, j0..j1-1, all i) to the node planes in
    [k0, k1); ``e_end`` defaults to e + 1 (one element plane)."""
    nx = E.shape[2]
    e_end = e + 1 if e_end is None else e_end
    p, m = e_end - e, j1 - j0
    ue = xp.empty((p, m, nx, 8, 3), dtype=out.dtype)
    for c, (di, dj, dk) in enumerate(CORNER_OFFSETS):
        ue[:, :, :, c, :] = xp.astype(u[e + dk:e_end + dk, j0 + dj:j1 + dj, di:di + nx, :],
                                      out.dtype, copy=False)
    fe = xp.reshape(ue, (p * m * nx, 24)) @ Ke
    fe *= xp.reshape(xp.astype(E[e:e_end, j0:j1, :], out.dtype, copy=False), (p * m * nx, 1))
    fe = xp.reshape(fe, (p, m, nx, 8, 3))
    for c in _SCATTER_ORDER:
        di, dj, dk = CORNER_OFFSETS[c]
        lo, hi = max(k0, e + dk), min(k1, e_end + dk)  # node planes this corner reaches
        if hi > lo:
            out[lo - k0:hi - k0, j0 + dj:j1 + dj, di:di + nx, :] += \
                fe[lo - dk - e:hi - dk - e, :, :, c, :]


def voxel_diagonal(E, kdiag, out, k0: int, k1: int) -> None:
    """``out[k - k0]`` = the diagonal of A at the node planes ``k0 <= k < k1``.

    kdiag: (24,) the diagonal of the reference stiffness; out: (k1-k0, ny+1, nx+1, 3).
    """
    xp = namespace(out)
    nx, ny, nz = _grid(E)
    e0, e1 = max(k0 - 1, 0), min(k1, nz)
    out[...] = 0
    kd = xp.reshape(xp.astype(kdiag, out.dtype, copy=False), (8, 3))
    for c, (di, dj, dk) in enumerate(CORNER_OFFSETS):
        lo = max(k0, e0 + dk)
        hi = min(k1, e1 + dk)
        if hi > lo:
            Ec = xp.astype(E[lo - dk:hi - dk, ...], out.dtype, copy=False)
            out[lo - k0:hi - k0, dj:dj + ny, di:di + nx, :] += Ec[..., None] * kd[c, :]


def voxel_strain(u, B, out, e0: int, e1: int) -> None:
    """Element-average strains of the element planes ``e0 <= e < e1``.

    u: (nz+1, ny+1, nx+1, 3); B: (6, 24) from :func:`mean_strain_operator`;
    out: (e1-e0, ny, nx, 6), components xx, yy, zz, xy, yz, xz.
    """
    xp = namespace(out)
    ny, nx = out.shape[1], out.shape[2]
    m = e1 - e0
    if m <= 0:
        return
    ue = xp.empty((m, ny, nx, 8, 3), dtype=out.dtype)
    for c, (di, dj, dk) in enumerate(CORNER_OFFSETS):
        ue[:, :, :, c, :] = xp.astype(u[e0 + dk:e1 + dk, dj:dj + ny, di:di + nx, :], out.dtype,
                                      copy=False)
    Bt = xp.astype(B, out.dtype, copy=False).T
    out[...] = xp.reshape(xp.reshape(ue, (m * ny * nx, 24)) @ Bt, (m, ny, nx, 6))


# --- the V-cycle's fused steps ---------------------------------------------------------------
#
# Each voxel_* function below is one CUDA kernel in voxel.cu (one thread per node), so that a
# multigrid level's Jacobi sweep, residual, transfers and masking each read and write the grid
# once on the GPU instead of once per array operation. The twins are the array code the multigrid
# ran before the kernels existed, operation for operation, so the CPU's numbers are those of that
# code. free_mask, inverse_diagonal, restrict_axis and prolong_axis are their array helpers (the
# multigrid's set-up uses them too); vector_dot, cg_update and cg_direction, at the end, are CG's.

#: bits of the per-node support flags (fem.gmg): bits 0-2 supported x/y/z, bit 3 in no voxel
FIXED_BITS = (1, 2, 4)
INACTIVE = 8


def free_mask(xp, bits, dtype):
    """F: 1 on the free dofs of the nodes ``bits`` (..., 3), 0 on supported dofs and on nodes
    of no voxel."""
    comps = [((bits & b) == 0) & ((bits & INACTIVE) == 0) for b in FIXED_BITS]
    return xp.astype(xp.stack(comps, axis=-1), dtype)


def inverse_diagonal(E, kdiag, bits, k0: int, k1: int, dtype):
    """F D^-1 at the node planes k0..k1-1 (0 on supported dofs and nodes of no voxel). A box
    voxel's stiffness diagonal is the same at its eight corners, so D = kdiag[:3] x (the sum of
    the moduli of the node's voxels), recomputed from the moduli (8 shifted sums of one range)
    rather than stored, which saves 8 bytes per node."""
    xp = namespace(E)
    nz, ny, nx = E.shape
    S = xp.zeros((k1 - k0, ny + 1, nx + 1), dtype=dtype)
    for dk in (0, 1):
        # node plane k touches voxel plane k - dk
        lo, hi = max(k0, dk), min(k1, nz + dk)
        if hi <= lo:
            continue
        Ek = E[lo - dk:hi - dk, ...]
        for dj in (0, 1):
            for di in (0, 1):
                S[lo - k0:hi - k0, dj:dj + ny, di:di + nx] += Ek
    inv = 1.0 / xp.where(S > 0, S, xp.full_like(S, float("inf")))  # 0 where no voxel
    del S
    out = free_mask(xp, bits[k0:k1, ...], dtype)  # built in place: few temporaries
    out *= inv[..., None]
    out /= xp.reshape(xp.astype(kdiag[:3], dtype, copy=False), (1, 1, 1, 3))
    return out


def voxel_jacobi_first(r, E, kdiag, bits, omega: float, out, k0: int, k1: int) -> None:
    """``out = omega F D^-1 r`` at the node planes k0..k1-1: a damped Jacobi sweep from z = 0.

    r: (nz+1, ny+1, nx+1, 3); E: (nz, ny, nx); kdiag: (24,) the reference stiffness's diagonal;
    bits: (nz+1, ny+1, nx+1) uint8 support flags; out: (k1-k0, ny+1, nx+1, 3), its dtype the
    compute precision."""
    d = inverse_diagonal(E, kdiag, bits, k0, k1, out.dtype)
    d *= omega
    d *= r[k0:k1, ...]
    out[...] = d


def voxel_jacobi(z, r, E, Ke, kdiag, bits, omega: float, out, k0: int, k1: int) -> None:
    """``out = omega F D^-1 (A z - r)`` at the node planes k0..k1-1: the negative of a damped
    Jacobi sweep's update of z (the caller subtracts it once no other range reads z there)."""
    voxel_matvec(z, E, Ke, out, k0, k1)
    out -= r[k0:k1, ...]
    d = inverse_diagonal(E, kdiag, bits, k0, k1, out.dtype)
    d *= omega
    out *= d


def voxel_residual(z, r, E, Ke, bits, out, k0: int, k1: int) -> None:
    """``out = F (r - A z)`` at the node planes k0..k1-1."""
    xp = namespace(out)
    voxel_matvec(z, E, Ke, out, k0, k1)
    out *= -1.0
    out += r[k0:k1, ...]
    out *= free_mask(xp, bits[k0:k1, ...], out.dtype)


def voxel_cg_product(p, E, Ke, bits, out, k0: int, k1: int, acc64: bool = False) -> float:
    """CG's product: ``out = F A p`` at the node planes k0..k1-1; returns ``p . out`` over them
    (float64). ``acc64``: :func:`voxel_matvec_acc`'s product (float32 p, E and out, float64 Ke
    and sums), else :func:`voxel_matvec`'s."""
    if acc64:
        voxel_matvec_acc(p, E, Ke, out, k0, k1)
    else:
        voxel_matvec(p, E, Ke, out, k0, k1)
    voxel_mask(out, bits, k0, k1)
    return vector_dot(p[k0:k1, ...], out)


def voxel_mask(v, bits, k0: int, k1: int) -> None:
    """``v *= F`` for v the node planes k0..k1-1 ((k1-k0, ny+1, nx+1, 3)) of a grid with support
    flags ``bits``."""
    v *= free_mask(namespace(v), bits[k0:k1, ...], v.dtype)


def voxel_restrict_add(t, rc, factors, k0: int) -> None:
    """``rc += R t``: the trilinear restriction of the fine node planes k0..k0+len(t)-1 (t:
    (m, nfy, nfx, 3)) added into the coarse nodal vector rc (ncz, ncy, ncx, 3). ``factors``
    (fx, fy, fz): 2 where the axis is coarsened (coarse node I takes fine 2I, and half of 2I-1
    and 2I+1), 1 where it is kept. Called range after range, it sums R over the whole grid."""
    xp = namespace(rc)
    fx, fy, fz = factors
    k1 = k0 + t.shape[0]
    ncz, ncy, ncx = rc.shape[:3]
    if fx == 2:
        t = restrict_axis(xp, t, 2, ncx)
    if fy == 2:
        t = restrict_axis(xp, t, 1, ncy)
    if fz == 1:
        rc[k0:k1, ...] += t
        return
    # z: fine plane k -> coarse k/2 (even) or halves to (k-1)/2 and (k+1)/2 (odd)
    e0 = k0 + (k0 % 2)
    if e0 < k1:
        rc[e0 // 2:(k1 - 1) // 2 + 1, ...] += t[e0 - k0::2, ...]
    o0 = k0 + 1 - (k0 % 2)
    if o0 < k1:
        odd = 0.5 * t[o0 - k0::2, ...]
        c0 = (o0 - 1) // 2
        rc[c0:c0 + odd.shape[0], ...] += odd
        rc[c0 + 1:c0 + 1 + odd.shape[0], ...] += odd


def voxel_restrict(t, rc, coarse_bits, factors) -> None:
    """``rc = F_c R t`` for t the whole fine grid (a level of one range of node planes): the
    coarse residual written at once with the coarse supports ``coarse_bits`` applied, where
    ranges need ``rc = 0``, :func:`voxel_restrict_add` per range and :func:`voxel_mask`."""
    rc[...] = 0
    voxel_restrict_add(t, rc, factors, 0)
    voxel_mask(rc, coarse_bits, 0, rc.shape[0])


def voxel_prolong_add(zc, bits, z, factors, k0: int, k1: int) -> None:
    """``z += F P zc`` at the fine node planes k0..k1-1: each fine node takes the coarse node it
    coincides with, or the mean of the two it lies between, axis by axis (``factors`` as in
    :func:`voxel_restrict_add`); bits: the fine grid's support flags."""
    xp = namespace(z)
    nfz, nfy, nfx = z.shape[:3]
    fx, fy, fz = factors
    if fz == 1:
        f = zc[k0:k1, ...]
    else:
        c0, c1 = k0 // 2, min(k1 // 2 + 1, zc.shape[0])  # coarse planes needed
        sub = zc[c0:c1, ...]
        f = xp.empty((k1 - k0,) + sub.shape[1:], dtype=z.dtype)
        ev0 = k0 + (k0 % 2)
        if ev0 < k1:
            n_ev = len(range(ev0, k1, 2))
            f[ev0 - k0::2, ...] = sub[ev0 // 2 - c0:ev0 // 2 - c0 + n_ev, ...]
        od0 = k0 + 1 - (k0 % 2)
        if od0 < k1:
            n_od = len(range(od0, k1, 2))
            a = (od0 - 1) // 2 - c0
            f[od0 - k0::2, ...] = 0.5 * (sub[a:a + n_od, ...] + sub[a + 1:a + 1 + n_od, ...])
    if fy == 2:
        f = prolong_axis(xp, f, 1, nfy)
    if fx == 2:
        f = prolong_axis(xp, f, 2, nfx)
    m = free_mask(xp, bits[k0:k1, ...], z.dtype)
    m *= f
    z[k0:k1, ...] += m


def _axis_key(ndim: int, axis: int, s: slice) -> tuple:
    """An index selecting ``s`` along ``axis`` and everything along the other axes."""
    key = [slice(None)] * ndim
    key[axis] = s
    return tuple(key)


def restrict_axis(xp, f, axis: int, nc: int):
    """R along one axis: c[I] = f[2I] + (f[2I-1] + f[2I+1]) / 2."""
    shape = list(f.shape)
    shape[axis] = nc
    out = xp.zeros(tuple(shape), dtype=f.dtype)

    def sl(s):
        return _axis_key(f.ndim, axis, s)

    even = f[sl(slice(0, None, 2))]
    odd = 0.5 * f[sl(slice(1, None, 2))]
    ne, no = even.shape[axis], odd.shape[axis]
    out[sl(slice(0, ne))] += even
    out[sl(slice(0, no))] += odd
    out[sl(slice(1, no + 1))] += odd
    return out


def prolong_axis(xp, c, axis: int, nf: int):
    """P along one axis: f[2I] = c[I], f[2I+1] = (c[I] + c[I+1]) / 2, for nf fine nodes."""
    shape = list(c.shape)
    shape[axis] = nf
    out = xp.empty(tuple(shape), dtype=c.dtype)

    def sl(s):
        return _axis_key(c.ndim, axis, s)

    ne, no = (nf + 1) // 2, nf // 2
    out[sl(slice(0, None, 2))] = c[sl(slice(0, ne))]
    out[sl(slice(1, None, 2))] = 0.5 * (c[sl(slice(0, no))] + c[sl(slice(1, no + 1))])
    return out


# --- CG's vector steps (CUDA: vector_dot, cg_update, cg_direction) ----------------------------

def vector_dot(a, b) -> float:
    """``sum(a * b)`` accumulated in float64 (no copy of float64 operands)."""
    xp = namespace(a, b)
    return float(xp.sum(xp.astype(a, xp.float64, copy=False)
                        * xp.astype(b, xp.float64, copy=False)))


def cg_update(x, r, p, q, alpha: float) -> float:
    """``x += alpha p`` (x float64), ``r -= alpha q``, in place; returns the new ``sum(r * r)``
    in float64. x, r, p, q: arrays of one shape (a range of a CG's vectors)."""
    xp = namespace(r)
    x += alpha * xp.astype(p, xp.float64, copy=False)
    r -= alpha * q
    return vector_dot(r, r)


def cg_direction(p, z, beta: float) -> None:
    """``p = beta p + z``, in place."""
    p *= beta
    p += z
