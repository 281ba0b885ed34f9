"""Batched total-Lagrangian kernels for large deformation (NumPy/CuPy twin, written against
``xp``): deformation gradients, the nonlinear strain-displacement matrices, a decoupled
neo-Hookean material, its volumetric part per point or as the element's mean dilatation, and
the geometric (initial-stress) stiffness.

Conventions as :mod:`fem.kernels.elastic`: ``m`` elements of one type with ``k`` nodes and ``g``
integration points; reference gradients ``G`` (m, g, k, 3) = dN/dX; element displacements
``ue`` (m, k, 3); ``F`` (m, g, 3, 3) with ``F[..., i, J] = dx_i / dX_J``; Voigt pairs of
:data:`fem.kernels.elastic.VOIGT` (xx, yy, zz, xy, yz, xz) with engineering shear on strains
and tensor components on stresses; element dofs ``3 a + i`` (node a, direction i). Units:
mm, N, MPa.

The material (Holzapfel 2000, Nonlinear Solid Mechanics, section 6.5; the form CalculiX and
Abaqus call NEO HOOKE, with C10 = mu / 2 and D1 = 2 / kappa):

    W = mu / 2 (J^(-2/3) I1 - 3) + kappa / 2 (J - 1)^2,   I1 = tr C, C = F^T F, J = det F,

so that at small strain it is the linear isotropic material of the same shear and bulk moduli.
Second Piola-Kirchhoff stress and material tangent (``2 dS/dC``) of the isochoric part:

    S_iso = mu J^(-2/3) (I - I1/3 C^-1)
    D_iso = 2/3 mu J^(-2/3) [I1 C^-1 (.) C^-1 + I1/3 C^-1 (x) C^-1 - I (x) C^-1 - C^-1 (x) I]

with ``(A (.) A)_IJKL = (A_IK A_JL + A_IL A_JK) / 2``. The volumetric part is written in the
current configuration (spatial gradients ``g = dN/dx = G F^-1``): its internal force is
``U'(J) J g`` per unit reference volume, and its stiffness

    U''(J) J^2 g_ai g_bk + U'(J) J (g_ai g_bk - g_ak g_bi).

Where ``mean`` is set (hex8 elements that would lock: :meth:`fem.Model.bbar_mask`), ``J`` is
replaced by the element's mean dilatation ``Jbar = v / V`` (current over reference volume;
Simo, Taylor & Pister 1985, Comput Methods Appl Mech Eng 51:177), whose energy ``V U(Jbar)``
gives the force ``U'(Jbar) sum_g w J g`` and the stiffness ``V U'' d (x) d + U'(Jbar) sum_g w J
(g g - g g)`` with ``d = sum_g w J g / V``: at small strain, exactly the B-bar hex8 of
:mod:`fem.kernels.elastic`.
"""

from __future__ import annotations

from .backend import array_module
from .elastic import VOIGT, det3, inv3

#: the Voigt pairs as index arrays (rows I, columns J)
_VI = (0, 1, 2, 0, 1, 0)
_VJ = (0, 1, 2, 1, 2, 2)


def displacement_gradients(G, ue):
    """H (m, g, 3, 3) = sum_a u_a (x) dN_a/dX; the deformation gradient is F = I + H (kept
    apart: J - 1 and the strains of small displacements lose their digits in I + H)."""
    xp = array_module(G)
    return xp.matmul(xp.swapaxes(ue, 1, 2)[:, None], G)


def jacobian_minus_one(H):
    """det(I + H) - 1 (...,) without the cancellation of computing det(I + H) first:
    tr H + the second invariant of H + det H."""
    tr = H[..., 0, 0] + H[..., 1, 1] + H[..., 2, 2]
    i2 = (H[..., 0, 0] * H[..., 1, 1] + H[..., 1, 1] * H[..., 2, 2] + H[..., 0, 0] * H[..., 2, 2]
          - H[..., 0, 1] * H[..., 1, 0] - H[..., 1, 2] * H[..., 2, 1] - H[..., 0, 2] * H[..., 2, 0])
    return tr + i2 + det3(H)


def green_lagrange_h(H):
    """E = (H + H^T + H^T H) / 2 (..., 3, 3) from the displacement gradient."""
    xp = array_module(H)
    Ht = xp.swapaxes(H, -1, -2)
    return 0.5 * (H + Ht + xp.matmul(Ht, H))


def to_voigt(T):
    """Voigt vector (..., 6) of symmetric tensors (..., 3, 3): tensor components."""
    xp = array_module(T)
    return T[..., xp.asarray(_VI), xp.asarray(_VJ)]


def b_nonlinear(G, F):
    """Strain-displacement matrices (m, g, 6, 3k) of the Green-Lagrange strain's variation:
    row IJ, column 3a + i holds ``F_iI G_aJ + F_iJ G_aI`` (engineering shear), ``F_iI G_aI`` on
    the normal rows. With F = I these are the small-strain B matrices."""
    xp = array_module(G)
    m, g, k, _ = G.shape
    B = xp.zeros((m, g, 6, k, 3), dtype=G.dtype)
    for row, (i, j) in enumerate(VOIGT):
        B[:, :, row] = G[..., i][..., None] * F[:, :, None, :, j]
        if i != j:
            B[:, :, row] += G[..., j][..., None] * F[:, :, None, :, i]
    return xp.reshape(B, (m, g, 6, 3 * k))


def _odot(A):
    """Voigt (..., 6, 6) of (A_IK A_JL + A_IL A_JK) / 2 for symmetric A (..., 3, 3)."""
    xp = array_module(A)
    vi, vj = xp.asarray(_VI), xp.asarray(_VJ)
    a, b = vi[:, None], vj[:, None]
    c, d = vi[None, :], vj[None, :]
    return 0.5 * (A[..., a, c] * A[..., b, d] + A[..., a, d] * A[..., b, c])


def neo_hookean_isochoric(H, mu):
    """Second Piola-Kirchhoff stress (m, g, 3, 3) and material tangent (m, g, 6, 6) of the
    isochoric neo-Hookean energy ``mu / 2 (J^(-2/3) I1 - 3)`` (module docstring) at the
    displacement gradients ``H``; ``mu`` (m, 1) or scalar, MPa. The stress is evaluated as
    ``2 mu J^(-2/3) C^-1 dev(E)`` (equal to the form above, since ``C - I1/3 I = 2 dev E``),
    which keeps its digits at small strain."""
    xp = array_module(H)
    eye = xp.eye(3, dtype=H.dtype)
    E = green_lagrange_h(H)
    C = eye + 2.0 * E
    Ci, _ = inv3(C)
    J = 1.0 + jacobian_minus_one(H)
    trE = E[..., 0, 0] + E[..., 1, 1] + E[..., 2, 2]
    I1 = 3.0 + 2.0 * trE
    # an inverted point (an overshooting Newton iterate) gives NaN, which the increment loop
    # answers with a cut-back; NaN ** p raises no floating-point warning, J <= 0 would
    a = mu * xp.where(J > 0.0, J, xp.nan) ** (-2.0 / 3.0)
    dev = E - (trE / 3.0)[..., None, None] * eye
    S = 2.0 * a[..., None, None] * xp.matmul(Ci, dev)
    S = 0.5 * (S + xp.swapaxes(S, -1, -2))
    civ = to_voigt(Ci)
    iv = xp.asarray((1.0, 1.0, 1.0, 0.0, 0.0, 0.0), dtype=H.dtype)
    D = I1[..., None, None] * _odot(Ci) + (I1 / 3.0)[..., None, None] * (
        civ[..., :, None] * civ[..., None, :])
    D = D - iv[:, None] * civ[..., None, :] - civ[..., :, None] * iv[None, :]
    return S, (2.0 / 3.0) * a[..., None, None] * D


def volumetric(G, H, wdet, kappa, mean, growth=None, *, stiffness: bool = True):
    """Internal forces (m, 3k), stiffness (m, 3k, 3k; None without ``stiffness``) and pressure
    ``U'(J)`` (m, g) of the volumetric energy ``kappa / 2 (J - 1)^2`` per unit reference volume,
    at each point or, where ``mean`` (m,) is True, of the element's mean dilatation (module
    docstring). ``kappa`` (m,) MPa; ``wdet`` (m, g) the reference weights x det J; ``H`` the
    displacement gradients.

    ``growth`` (m,): a stress-free volume ratio theta per element (isotropic swelling, F = F_e
    theta^(1/3)): the energy per reference volume becomes ``theta kappa / 2 (J / theta - 1)^2``,
    so an element whose neighbours hold it at J < theta is under pressure."""
    xp = array_module(G)
    m, g, k, _ = G.shape
    Fi, _ = inv3(H + xp.eye(3, dtype=H.dtype))
    Jm1 = jacobian_minus_one(H)
    J = 1.0 + Jm1
    gs = xp.matmul(G, Fi)  # spatial gradients dN/dx (m, g, k, 3)
    wJ = wdet * J
    V = wdet.sum(axis=1)
    Jbar_m1 = (wdet * Jm1).sum(axis=1) / V
    theta = xp.ones_like(kappa) if growth is None else growth
    k_eff = kappa / theta  # U''(J) = kappa / theta
    p = k_eff[:, None] * (xp.where(mean[:, None], Jbar_m1[:, None], Jm1)
                          - (theta - 1.0)[:, None])
    pw = p * wJ
    gflat = gs.reshape(m, g, 3 * k)  # column 3a + i holds g_ai
    f = (pw[:, :, None] * gflat).sum(axis=1)
    if not stiffness:  # a residual or a stress recovery: the 5-index products are not wanted
        return f, None, p

    def weighted_outer(w):
        """sum_g w g_ai g_bk (m, 3k, 3k), row 3a + i, column 3b + k, as one batched product."""
        return xp.matmul(xp.swapaxes(w[:, :, None] * gflat, 1, 2), gflat)

    K = weighted_outer(pw).reshape(m, k, 3, k, 3)
    # - sum_g w g_ak g_bi: the same sum with the direction indices i and k exchanged
    K = K - xp.transpose(K, (0, 1, 4, 3, 2))
    point = weighted_outer(k_eff[:, None] * wJ * J).reshape(m, k, 3, k, 3)
    d = (wJ[:, :, None] * gflat).sum(axis=1).reshape(m, k, 3) / V[:, None, None]
    avg = (k_eff * V)[:, None, None, None, None] * (d[:, :, :, None, None] * d[:, None, None])
    K = K + xp.where(mean[:, None, None, None, None], avg, point)
    return f, K.reshape(m, 3 * k, 3 * k), p


def geometric_stiffness(G, S, wdet):
    """Initial-stress stiffness (m, 3k, 3k): ``delta_ik sum_g w G_aI S_IJ G_bJ`` for the second
    Piola-Kirchhoff stress S (m, g, 3, 3)."""
    xp = array_module(G)
    m, g, k, _ = G.shape
    GS = xp.matmul(G, S) * wdet[:, :, None, None]  # (m, g, k, 3): w G_aI S_IJ
    # sum over g and J at once: (m, k, 3g) x (m, 3g, k)
    s = xp.matmul(xp.swapaxes(GS, 1, 2).reshape(m, k, 3 * g),
                  xp.swapaxes(G, 1, 2).reshape(m, k, 3 * g).swapaxes(1, 2))
    K = s[:, :, None, :, None] * xp.eye(3, dtype=G.dtype)[None, None, :, None, :]
    return K.reshape(m, 3 * k, 3 * k)


def internal_forces(B, S, wdet):
    """sum_g w B^T S (m, 3k) for Voigt stresses S (m, g, 6) (tensor components)."""
    xp = array_module(B)
    m, g, r, n = B.shape
    ws = (wdet[:, :, None] * S).reshape(m, 1, g * r)
    return xp.matmul(ws, B.reshape(m, g * r, n))[:, 0]


def cauchy(H, S, pressure):
    """Cauchy stress (m, g, 3, 3) of the second Piola-Kirchhoff stress S of the isochoric and
    fibre parts at displacement gradients H, plus the volumetric part's ``pressure`` (m, g)
    times I."""
    xp = array_module(H)
    eye = xp.eye(3, dtype=H.dtype)
    F = eye + H
    J = 1.0 + jacobian_minus_one(H)
    sig = xp.matmul(xp.matmul(F, S), xp.swapaxes(F, -1, -2)) / J[..., None, None]
    return sig + pressure[..., None, None] * eye
