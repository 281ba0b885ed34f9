"""Batched linear-elastic element kernels (NumPy/CuPy twin, written against ``xp``): a fast
isotropic path and a general-stiffness path (any Voigt C) for orthotropic elements.

All functions work on a batch of ``m`` elements of one type with ``k`` nodes and ``g`` Gauss
points, vectorised over elements; the only loops are over the 3x3 components of small tensors.

Stiffness in 3x3 node blocks. For an isotropic material with Lame constants lambda and mu,

    K_ab,ij = sum_g w_g detJ_g [ lambda dNa_i dNb_j + mu dNa_j dNb_i + mu delta_ij (dNa . dNb) ],

i.e. with ``A_ab,ij = sum_g w_g detJ_g dNa_i dNb_j``:  ``K = lambda A + mu (A^T_ij + delta_ij tr A)``.

The B-bar (mean-dilatation, Hughes 1980) hex8 replaces the dilatation at each point by its
element mean, computed from ``bbar_a = (1/V) sum_g w_g detJ_g dNa``. For an isotropic material this
gives, exactly,

    K = kappa V bbar_a (x) bbar_b + mu (A^T_ij + delta_ij tr A - 2/3 A),   kappa = lambda + 2 mu / 3,

so the deviatoric part keeps full integration and only the volumetric part is averaged: the
element does not lock as nu -> 0.5. Both forms are ``c1 A + mu (A^T + delta tr A) + c2 V bbar bbar``
with ``(c1, c2) = (lambda, 0)`` or ``(-2 mu / 3, kappa)``.
"""

from __future__ import annotations

from .backend import array_module


def inv3(J):
    """Inverse and determinant of a stack of 3x3 matrices (..., 3, 3) by cofactors."""
    xp = array_module(J)
    a, b, c = J[..., 0, 0], J[..., 0, 1], J[..., 0, 2]
    d, e, f = J[..., 1, 0], J[..., 1, 1], J[..., 1, 2]
    g, h, i = J[..., 2, 0], J[..., 2, 1], J[..., 2, 2]
    c00 = e * i - f * h
    c01 = f * g - d * i
    c02 = d * h - e * g
    det = a * c00 + b * c01 + c * c02
    inv = xp.empty_like(J)
    inv[..., 0, 0] = c00
    inv[..., 1, 0] = c01
    inv[..., 2, 0] = c02
    inv[..., 0, 1] = c * h - b * i
    inv[..., 1, 1] = a * i - c * g
    inv[..., 2, 1] = b * g - a * h
    inv[..., 0, 2] = b * f - c * e
    inv[..., 1, 2] = c * d - a * f
    inv[..., 2, 2] = a * e - b * d
    with _errstate(xp):
        inv /= det[..., None, None]
    return inv, det


class _errstate:
    def __init__(self, xp):
        self.ctx = xp.errstate(divide="ignore", invalid="ignore") if hasattr(xp, "errstate") else None

    def __enter__(self):
        if self.ctx is not None:
            self.ctx.__enter__()

    def __exit__(self, *exc):
        if self.ctx is not None:
            self.ctx.__exit__(*exc)


def det3(J):
    """Determinants of a stack of 3x3 matrices (..., 3, 3)."""
    return (J[..., 0, 0] * (J[..., 1, 1] * J[..., 2, 2] - J[..., 1, 2] * J[..., 2, 1])
            - J[..., 0, 1] * (J[..., 1, 0] * J[..., 2, 2] - J[..., 1, 2] * J[..., 2, 0])
            + J[..., 0, 2] * (J[..., 1, 0] * J[..., 2, 1] - J[..., 1, 1] * J[..., 2, 0]))


def jacobians(X, dN_ref):
    """Jacobian matrices J[m, g, a, b] = d x_b / d xi_a for nodes X (m, k, 3), dN_ref (g, k, 3)."""
    xp = array_module(X)
    dN = xp.asarray(dN_ref)
    m, k, _ = X.shape
    g = dN.shape[0]
    # one GEMM: (m*3, k) @ (k, g*3) -> J^T stacked as (m, 3[b], g, 3[a])
    Xt = xp.reshape(xp.swapaxes(X, 1, 2), (m * 3, k))
    D = xp.reshape(xp.transpose(dN, (1, 0, 2)), (k, g * 3))
    Jt = xp.reshape(Xt @ D, (m, 3, g, 3))
    return xp.transpose(Jt, (0, 2, 3, 1))


def gradients(X, dN_ref):
    """Physical shape-function gradients G (m, g, k, 3) and det J (m, g)."""
    xp = array_module(X)
    inv, det = inv3(jacobians(X, dN_ref))
    dN = xp.asarray(dN_ref)
    # G[m,g,k,b] = sum_a invJ[m,g,b,a] dN[g,k,a]
    G = dN[None, :, :, 0, None] * inv[:, :, None, :, 0]
    G += dN[None, :, :, 1, None] * inv[:, :, None, :, 1]
    G += dN[None, :, :, 2, None] * inv[:, :, None, :, 2]
    return G, det


def mean_gradients(G, wdetJ):
    """(the element means of the shape-function gradients (m, k, 3), ``bbar_a = (1/V) sum_g
    w_g detJ_g dNa``; the element volumes V (m,)): the B-bar hex8's mean dilatation is
    ``sum_a bbar_a . u_a``."""
    V = wdetJ.sum(axis=1)
    return (G * wdetJ[:, :, None, None]).sum(axis=1) / V[:, None, None], V


def stiffness_matrices(G, wdetJ, lam, mu, bbar=None):
    """Element stiffness matrices, shape (m, k, 3, k, 3): entry [a, i, b, j] couples dof i of
    node a with dof j of node b (reshape to (m, 3k, 3k) for the usual element matrix).

    G: (m, g, k, 3) gradients; wdetJ: (m, g) weights times det J; lam, mu: (m,) Lame constants;
    bbar: optional (m,) boolean, True where the B-bar (mean-dilatation) form is wanted.
    """
    xp = array_module(G)
    m, g, k, _ = G.shape
    H = xp.reshape(G * xp.sqrt(wdetJ)[:, :, None, None], (m, g, 3 * k))
    A = xp.reshape(xp.matmul(xp.swapaxes(H, 1, 2), H), (m, k, 3, k, 3))  # [a, i, b, j]
    trace = A[:, :, 0, :, 0] + A[:, :, 1, :, 1] + A[:, :, 2, :, 2]  # (m, k, k)
    c1 = lam
    if bbar is not None:
        c1 = xp.where(bbar, -2.0 * mu / 3.0, lam)
    K = xp.multiply(A, c1[:, None, None, None, None])
    K += mu[:, None, None, None, None] * xp.transpose(A, (0, 1, 4, 3, 2))
    mt = mu[:, None, None] * trace
    for i in range(3):
        K[:, :, i, :, i] += mt
    if bbar is not None and bool(xp.any(bbar)):
        b, V = mean_gradients(G, wdetJ)
        kappa = xp.where(bbar, lam + 2.0 * mu / 3.0, 0.0) * V
        K += kappa[:, None, None, None, None] * (b[:, :, :, None, None] * b[:, None, None, :, :])
    return K


def strains(G, wdetJ, u, bbar=None):
    """Small-strain tensors at the Gauss points, (m, g, 3, 3).

    u: element nodal displacements (m, k, 3). With ``bbar`` (m,) True the dilatation at each point
    is replaced by the element's mean dilatation, consistently with :func:`stiffness_blocks`.
    """
    xp = array_module(G)
    # grad[m,g,i,j] = sum_k u[m,k,i] G[m,g,k,j]
    grad = xp.matmul(xp.swapaxes(u, 1, 2)[:, None], G)
    eps = 0.5 * (grad + xp.swapaxes(grad, -1, -2))
    if bbar is not None and bool(xp.any(bbar)):
        b, _ = mean_gradients(G, wdetJ)
        theta_bar = (b * u).sum(axis=(1, 2))  # (m,)
        theta = eps[..., 0, 0] + eps[..., 1, 1] + eps[..., 2, 2]
        corr = xp.where(bbar[:, None], (theta_bar[:, None] - theta) / 3.0, 0.0)
        eps = eps + corr[..., None, None] * xp.eye(3, dtype=G.dtype)
    return eps


def isotropic_stress(eps, lam, mu):
    """Cauchy stress sigma = lambda tr(eps) I + 2 mu eps for strains (m, g, 3, 3)."""
    xp = array_module(eps)
    tr = eps[..., 0, 0] + eps[..., 1, 1] + eps[..., 2, 2]
    sig = 2.0 * mu[:, None, None, None] * eps
    sig += (lam[:, None] * tr)[..., None, None] * xp.eye(3, dtype=eps.dtype)
    return sig


#: Voigt order of stresses and strains, as in :mod:`fem.result`: xx, yy, zz, xy, yz, xz
VOIGT = ((0, 0), (1, 1), (2, 2), (0, 1), (1, 2), (0, 2))


def orthotropic_stiffness(constants):
    """Voigt stiffness C (m, 6, 6) from engineering constants (m, 9) in the global axes:
    Ex, Ey, Ez, nu_xy, nu_xz, nu_yz, Gxy, Gxz, Gyz, with nu_ij = -eps_j / eps_i under uniaxial
    stress along i (the Abaqus/CalculiX convention, so nu_ji = nu_ij E_j / E_i). C acts on
    engineering shear strains (2 eps_xy, ...) in the order of :data:`VOIGT`."""
    xp = array_module(constants)
    c = constants
    Ex, Ey, Ez, nxy, nxz, nyz, Gxy, Gxz, Gyz = (c[:, i] for i in range(9))
    S = xp.zeros((c.shape[0], 6, 6), dtype=c.dtype)
    S[:, 0, 0], S[:, 1, 1], S[:, 2, 2] = 1.0 / Ex, 1.0 / Ey, 1.0 / Ez
    S[:, 0, 1] = S[:, 1, 0] = -nxy / Ex
    S[:, 0, 2] = S[:, 2, 0] = -nxz / Ex
    S[:, 1, 2] = S[:, 2, 1] = -nyz / Ey
    S[:, 3, 3], S[:, 4, 4], S[:, 5, 5] = 1.0 / Gxy, 1.0 / Gyz, 1.0 / Gxz
    return xp.linalg.inv(S)


def strain_displacement(G, wdetJ=None, bbar=None):
    """B matrices (m, g, 6, 3k) from gradients G (m, g, k, 3): Voigt rows of :data:`VOIGT` with
    engineering shear strains, columns dof 3a + i (node a, direction i). With ``bbar`` (m,) True
    (and the weights ``wdetJ`` (m, g)) the dilatation rows of those elements take the element's
    mean dilatation (B-bar, as :func:`strains`): a kinematic change, valid for any material."""
    xp = array_module(G)
    m, g, k, _ = G.shape
    B = xp.zeros((m, g, 6, k, 3), dtype=G.dtype)
    for row, (i, j) in enumerate(VOIGT):
        B[:, :, row, :, i] = G[..., j]
        if i != j:
            B[:, :, row, :, j] = G[..., i]
    B = xp.reshape(B, (m, g, 6, 3 * k))
    if bbar is not None and bool(xp.any(bbar)):
        b = mean_gradients(G, wdetJ)[0].reshape(m, 1, 3 * k)
        vol = B[:, :, 0] + B[:, :, 1] + B[:, :, 2]  # (m, g, 3k)
        corr = xp.where(bbar[:, None, None], (b - vol) / 3.0, 0.0)
        for i in range(3):
            B[:, :, i] += corr
    return B


def general_stiffness_matrices(G, wdetJ, C, bbar=None):
    """Element stiffness K = sum_g w detJ B^T C B for any Voigt stiffness C (m, 6, 6), or one
    per integration point (m, g, 6, 6), shaped (m, k, 3, k, 3) like :func:`stiffness_matrices`
    (slower: for anisotropic elements only); ``bbar`` (m,): B-bar where True
    (:func:`strain_displacement`), for a nearly incompressible anisotropic material."""
    xp = array_module(G)
    m, g, k, _ = G.shape
    K = stiffness_from_b(strain_displacement(G, wdetJ, bbar), wdetJ,
                         C[:, None] if C.ndim == 3 else C)
    return xp.reshape(K, (m, k, 3, k, 3))


def voigt_rotation(R):
    """M (..., 6, 6) with sigma = M sigma' for Voigt stress vectors in the order of
    :data:`VOIGT`, where R (..., 3, 3) has the local axes as its columns (x = R x'), so the
    tensor sigma = R sigma' R^T. The engineering strains transform with M^-T = M^T's inverse
    transposed, and a Voigt stiffness C' in the local axes is C = M C' M^T."""
    xp = array_module(R)
    M = xp.zeros(R.shape[:-2] + (6, 6), dtype=R.dtype)
    for p, (i, j) in enumerate(VOIGT):
        for q, (a, b) in enumerate(VOIGT):
            v = R[..., i, a] * R[..., j, b]
            if a != b:
                v = v + R[..., i, b] * R[..., j, a]
            M[..., p, q] = v
    return M


def rotate_stiffness(C, R):
    """A Voigt stiffness C (..., 6, 6) given in the local axes R (..., 3, 3) (columns), in the
    global axes: M C M^T (:func:`voigt_rotation`)."""
    xp = array_module(C)
    M = voigt_rotation(R)
    return xp.matmul(xp.matmul(M, C), xp.swapaxes(M, -1, -2))


def cylinder_frames(x, point, direction):
    """Local axes (..., 3, 3), columns radial, circumferential, axial, at points x (..., 3)
    about axes through ``point`` along the unit ``direction`` (both (..., 3), broadcast
    against x): e3 = direction, e1 = the part of x - point orthogonal to it, normalised,
    e2 = e3 x e1. Points on an axis give NaN columns (the caller refuses them)."""
    xp = array_module(x)
    rel = x - point
    r = rel - (rel * direction).sum(axis=-1, keepdims=True) * direction
    n = xp.sqrt((r * r).sum(axis=-1, keepdims=True))
    e1 = r / xp.where(n > 0, n, xp.nan)
    e3 = xp.broadcast_to(direction, e1.shape)
    e2 = xp.cross(e3, e1)
    return xp.stack([e1, e2, e3], axis=-1)


def stiffness_from_b(B, wdetJ, C):
    """K = sum_g w detJ B^T C_g B (m, 3k, 3k), symmetrised, from the strain-displacement
    matrices B (m, g, 6, 3k) and a Voigt stiffness per integration point C (m, g, 6, 6) (or
    (m, 1, 6, 6), the same at every point)."""
    xp = array_module(B)
    m, g, _, n = B.shape
    CB = xp.reshape(xp.matmul(C, B), (m, g * 6, n))
    Bw = xp.reshape(B * wdetJ[:, :, None, None], (m, g * 6, n))
    K = xp.matmul(xp.swapaxes(Bw, 1, 2), CB)
    return 0.5 * (K + xp.swapaxes(K, 1, 2))


def general_stress(eps, C):
    """Cauchy stress tensors (m, g, 3, 3) from strain tensors (m, g, 3, 3) and Voigt C (m, 6, 6)
    or one per integration point (m, g, 6, 6)."""
    xp = array_module(eps)
    ev = xp.stack([eps[..., i, j] * (1.0 if i == j else 2.0) for i, j in VOIGT], axis=-1)
    sv = xp.matmul(C[:, None] if C.ndim == 3 else C, ev[..., None])[..., 0]
    sig = xp.empty_like(eps)
    for row, (i, j) in enumerate(VOIGT):
        sig[..., i, j] = sv[..., row]
        sig[..., j, i] = sv[..., row]
    return sig
