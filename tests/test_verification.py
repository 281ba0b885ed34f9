"""Verification against exact solutions of linear elasticity (units mm, N, MPa).

* uniaxial bar: exact for every element (a linear field), Poisson contraction included;
* cantilever under an end shear load: the Saint-Venant flexure solution, whose centroidal axis
  deflects exactly as an Euler-Bernoulli beam, with measured convergence rates (hex8, tet10);
* Lame's thick-walled cylinder under internal pressure (plane strain), with convergence rates;
* two-material bars (bone and cement) in series and in parallel: exact composite stiffness;
* the stiffness matrix: symmetric, with exactly the six rigid-body motions as its null space.
"""

import numpy as np
import pytest

import fem
from fem.assembly import assemble_stiffness, element_centroids, to_matrix
from fem.kernels.backend import get_backend
from verification_models import (
    apply_nodal_forces,
    block,
    consistent_nodal_forces,
    cylinder_quarter,
    impose_field,
    lame_plane_strain,
    observed_rates,
    polar_stress,
    rigid_body_modes,
    snap_plane,
    solve_lame,
)

KINDS = ["tet4", "tet10", "hex8", "hex8-bbar"]


def _solve(m):
    return fem.solve(m, backend="numpy", solver="direct")


# ------------------------------------------------------------------ uniaxial bar


@pytest.mark.parametrize("kind", KINDS)
def test_uniaxial_bar_exact(kind):
    """A bar pulled by a total force F on one end, held on three symmetry planes so that it
    contracts freely: u = (s x, -nu s y, -nu s z) sigma/E with sigma = F/A, exactly."""
    E, nu, F = 250.0, 0.35, 12.0
    L, a, b = 6.0, 1.5, 1.0
    m = block(kind, (6, 2, 2), (L, a, b), distort=0.2, seed=3, E=E, nu=nu)
    m.add(fem.Fixed("xmin", "x"), fem.Fixed("ymin", "y"), fem.Fixed("zmin", "z"),
          fem.TotalForce("xmax", (F, 0.0, 0.0)))
    res = _solve(m)

    s = F / (a * b)
    exact = m.points * (s / E) * np.array([1.0, -nu, -nu])
    u = np.asarray(res.displacement)
    assert np.abs(u - exact).max() < 1e-10 * s / E * L
    assert np.isclose(u[m.node_sets["xmax"], 0].mean(), F * L / (E * a * b), rtol=1e-10)
    sig = np.concatenate([q.reshape(-1, 6) for q in res.integration_point_stress()])
    assert np.abs(sig - [s, 0, 0, 0, 0, 0]).max() < 1e-9 * s
    eps = np.asarray(res.strain)
    assert np.abs(eps - np.array([1, -nu, -nu, 0, 0, 0]) * s / E).max() < 1e-9 * s / E
    assert np.allclose(res.reactions["xmin"], [-F, 0, 0], rtol=0, atol=1e-9 * F)
    assert np.allclose(res.reactions["ymin"], 0.0, atol=1e-9 * F)


# ------------------------------------------------------------------ cantilever

# beam 0 <= x <= L, |y| <= b/2, |z| <= c; nu = 0 makes the Saint-Venant flexure solution
# independent of y (no anticlastic curvature), so it is exact in 3D
CL, CB, CH, CE, CP = 10.0, 1.0, 1.0, 1000.0, 1.0
CC, CI = CH / 2, CB * CH**3 / 12
CG = CE / 2  # nu = 0


def _flexure(x):
    """Exact displacement for the parabolic end shear P (Timoshenko & Goodier, section 21) with
    the clamp that keeps the centroidal axis horizontal and lets the section warp."""
    X, Z = x[:, 0], x[:, 2]
    ux = -CP * (CL * X - X**2 / 2) * Z / (CE * CI) + CP * (CC**2 * Z - Z**3 / 3) / (2 * CI * CG)
    uz = CP * (CL * X**2 / 2 - X**3 / 6) / (CE * CI)
    return np.column_stack([ux, np.zeros_like(X), uz])


def _shear(x):
    t = CP / (2 * CI) * (CC**2 - x[:, 2] ** 2)
    return np.column_stack([np.zeros_like(t), np.zeros_like(t), t])


def _tip_axis(m):
    """Tip nodes on the neutral plane z = 0 (the exact u_z is the same for all of them)."""
    tip = m.node_sets["xmax"]
    on = tip[np.abs(m.points[tip, 2]) < 1e-12]
    assert len(on) >= 2
    return on


def _cantilever(kind, shape):
    m = block(kind, shape, (CL, CB, CH), origin=(0.0, -CB / 2, -CC), E=CE, nu=0.0)
    impose_field(m, m.node_sets["xmin"], _flexure)
    apply_nodal_forces(m, *consistent_nodal_forces(m, "xmax", _shear))
    return m, _solve(m)


# (kind, meshes, expected rate, bounds on the last two observed rates of the tip deflection,
#  lower bound for the largest nodal error)
CANTILEVER = {
    # hex8, fully integrated: O(h^2) nodal displacement; parasitic shear makes the coarse
    # meshes far too stiff (33 % on 10 x 2 elements), so the rate approaches 2 from below
    "hex8": ([(10, 1, 2), (20, 1, 4), (40, 1, 8), (80, 1, 16)], 2.0, (1.8, 2.2), 1.8),
    # tet10: O(h^(p+1)) = O(h^3) nodal displacement; the tip deflection converges faster
    # (observed about 3.7), so only the lower bound is asserted; the largest nodal error
    # falls at 2.7-3.4
    "tet10": ([(5, 1, 1), (10, 1, 2), (20, 1, 4), (40, 1, 8)], 3.0, (2.8, np.inf), 2.5),
}


@pytest.mark.parametrize("kind", sorted(CANTILEVER))
def test_cantilever_converges_to_beam_theory(kind):
    """Tip deflection -> P L^3 / (3 E I) (Euler-Bernoulli, exact for the centroidal axis of the
    Saint-Venant solution) at the expected rate under uniform refinement in x and z. The
    solution does not depend on y (nu = 0), so one element across the width suffices."""
    meshes, expected, (lo, hi), lo_all = CANTILEVER[kind]
    w = CP * CL**3 / (3 * CE * CI)
    h, err, err_all = [], [], []
    for shape in meshes:
        m, res = _cantilever(kind, shape)
        u = np.asarray(res.displacement)
        h.append(CL / shape[0])
        err.append(np.abs(u[_tip_axis(m), 2] / w - 1.0).max())
        err_all.append(np.abs(u - _flexure(m.points)).max() / w)
        assert np.allclose(res.applied_total(), [0, 0, CP], rtol=1e-12, atol=1e-12)
    rates = observed_rates(h, err)
    assert np.all(np.diff(err) < 0), err
    assert np.all((rates[-2:] > lo) & (rates[-2:] < hi)), (rates, expected)
    assert np.all(observed_rates(h, err_all)[-2:] > lo_all), err_all
    assert err[-1] < {"hex8": 0.01, "tet10": 1e-5}[kind]


def test_clamped_cantilever_matches_timoshenko():
    """The everyday model (fully fixed end, total force spread uniformly over the tip) agrees with
    Timoshenko's beam (shear coefficient 5/6) to 1e-3 for L/h = 10: end effects are that small."""
    m = block("tet10", (20, 1, 4), (CL, CB, CH), origin=(0.0, -CB / 2, -CC), E=CE, nu=0.0)
    m.add(fem.Fixed("xmin"), fem.TotalForce("xmax", (0.0, 0.0, CP)))
    res = _solve(m)
    w_timo = CP * CL**3 / (3 * CE * CI) + CP * CL / (5 / 6 * CG * CB * CH)
    assert np.abs(np.asarray(res.displacement)[_tip_axis(m), 2] / w_timo - 1.0).max() < 1e-3


# ------------------------------------------------------------------ Lame


RI, RO, LE, LNU, LP = 1.0, 2.0, 1000.0, 0.3, 1.0

LAME = {
    # hex8: nodal displacement O(h^2); element-average stress O(h) in general, superconvergent
    # O(h^2) at the centroids of these regular meshes (observed 1.7-1.9)
    "hex8": ([(2, 4), (4, 8), (8, 16), (16, 32)], (1.8, 2.3), (1.5, 2.3)),
    # tet10 (mid-edge nodes on the arcs): displacement O(h^3) (observed 2.6 -> 2.8, still
    # pre-asymptotic), element-average stress O(h^2) (observed 1.9)
    "tet10": ([(2, 4), (4, 8), (8, 16), (16, 32)], (2.3, 3.3), (1.7, 2.5)),
}


@pytest.mark.parametrize("kind", sorted(LAME))
def test_lame_thick_cylinder(kind):
    """Quarter cylinder (symmetry planes), internal pressure, no axial displacement on both end
    faces (plane strain): radial displacement at the nodes and radial/hoop stress at element
    centroids against Lame's solution (displacement error: the largest nodal |u - u_exact|,
    tangential part included), errors falling at the expected rates. The slab is one
    element thick with thickness equal to the radial spacing, so elements keep their shape."""
    meshes, (ulo, uhi), (slo, shi) = LAME[kind]
    u_ref = lame_plane_strain(RI, LP, RI, RO, LE, LNU)[0]
    h, eu, es = [], [], []
    for nr, nt in meshes:
        m = cylinder_quarter(kind, nr, nt, 1, ri=RI, ro=RO, length=(RO - RI) / nr, E=LE, nu=LNU)
        res = solve_lame(m, LP)
        x, u = m.points, np.asarray(res.displacement)
        r = np.hypot(x[:, 0], x[:, 1])
        exact = lame_plane_strain(r, LP, RI, RO, LE, LNU)[0][:, None] * x[:, :2] / r[:, None]
        rc, srr, stt = polar_stress(m, np.asarray(res.stress))
        _, esrr, estt = lame_plane_strain(rc, LP, RI, RO, LE, LNU)
        h.append((RO - RI) / nr)
        eu.append(np.linalg.norm(u[:, :2] - exact, axis=1).max() / u_ref)
        es.append(max(np.abs(srr - esrr).max(), np.abs(stt - estt).max()) / LP)
        # plane strain: sigma_z = nu (sigma_r + sigma_theta) = 2 nu A
        sz = np.asarray(res.stress)[:, 2]
        assert abs(sz.mean() / (2 * LNU * LP * RI**2 / (RO**2 - RI**2)) - 1) < 2 * es[-1] + 1e-3
    ru, rs = observed_rates(h, eu), observed_rates(h, es)
    assert np.all(np.diff(eu) < 0) and np.all(np.diff(es) < 0), (eu, es)
    assert np.all((ru[-2:] > ulo) & (ru[-2:] < uhi)), ru
    assert np.all((rs[-2:] > slo) & (rs[-2:] < shi)), rs
    assert eu[-1] < 2e-3 and es[-1] < 5e-3


# ------------------------------------------------------------------ two materials

BONE, CEMENT = 300.0, 3000.0


def _composite(kind, axis, split):
    """A 4 x 2 x 2 mm distorted bar, bone below ``split`` along ``axis``, cement above; the
    interface plane is kept plane."""
    shape, size = (8, 4, 4), (4.0, 2.0, 2.0)
    m = block(kind, shape, size, distort=0.25, seed=11, E=1.0, nu=0.3)
    snap_plane(m, block(kind, shape, size), axis, split)
    c = element_centroids(m)[:, axis]
    m.add_region("bone", np.nonzero(c < split)[0]).add_region("cement", np.nonzero(c > split)[0])
    m.set_material("bone", E=BONE).set_material("cement", E=CEMENT)
    return m


def _constrained_modulus(E, nu):
    return E * (1 - nu) / ((1 + nu) * (1 - 2 * nu))


@pytest.mark.parametrize("kind", KINDS)
def test_two_materials_in_series(kind):
    """Bone (1.5 mm) and cement (2.5 mm) in series along x, laterally confined (uniaxial strain,
    so the two materials' different lateral strains cannot make the interface incompatible):
    F/u = A / (L1/M1 + L2/M2) with the constrained moduli M = E (1-nu) / ((1+nu)(1-2nu))."""
    nu, F, L1, L2, A = 0.3, 20.0, 1.5, 2.5, 4.0
    m = _composite(kind, 0, L1)
    m.add(fem.Fixed("xmin", "x"), fem.Fixed("ymin", "y"), fem.Fixed("ymax", "y"),
          fem.Fixed("zmin", "z"), fem.Fixed("zmax", "z"), fem.TotalForce("xmax", (-F, 0, 0)))
    res = _solve(m)
    k = A / (L1 / _constrained_modulus(BONE, nu) + L2 / _constrained_modulus(CEMENT, nu))
    u = np.asarray(res.displacement)[m.node_sets["xmax"], 0]
    assert np.abs(u / (-F / k) - 1).max() < 1e-10
    assert np.abs(np.asarray(res.stress)[:, 0] / (-F / A) - 1).max() < 1e-9
    assert np.isclose(res.reactions["xmin"][0], F, rtol=1e-10)


@pytest.mark.parametrize("kind", KINDS)
def test_two_materials_in_parallel(kind):
    """Bone (y < 0.5 mm) beside cement (y > 0.5 mm), both stretched by a prescribed end
    displacement d, equal nu (equal lateral strain): reaction = (E1 A1 + E2 A2) d / L."""
    d, L = 0.01, 4.0
    m = _composite(kind, 1, 0.5)
    m.add(fem.Fixed("xmin", "x"), fem.Fixed("ymin", "y"), fem.Fixed("zmin", "z"),
          fem.Displacement("xmax", (d, None, None)))
    res = _solve(m)
    k = (BONE * 0.5 * 2.0 + CEMENT * 1.5 * 2.0) / L
    assert np.isclose(res.reactions["xmax"][0], k * d, rtol=1e-10)
    assert np.isclose(res.reactions["xmin"][0], -k * d, rtol=1e-10)
    bone = m.regions["bone"]
    assert np.allclose(np.asarray(res.stress)[bone, 0], BONE * d / L, rtol=1e-9)


# ------------------------------------------------------------------ stiffness matrix


def _warped(kind, nu):
    """A small unconstrained block under a smooth nonlinear map (curved tet10 edges too)."""
    m = block(kind, (2, 2, 2) if kind == "tet10" else (3, 2, 2), (1.5, 1.0, 1.0), E=500.0, nu=nu)
    x = m.points.copy()
    m.points = x + 0.08 * np.column_stack([np.sin(3 * x[:, 1]), np.cos(2 * x[:, 2]) * x[:, 0],
                                           x[:, 0] * x[:, 1]])
    return m


@pytest.mark.parametrize("kind,nu", [("tet4", 0.3), ("tet10", 0.3), ("hex8", 0.3),
                                     ("hex8-bbar", 0.49)])
def test_stiffness_symmetric_with_six_rigid_body_modes(kind, nu):
    m = _warped(kind, nu)
    be = get_backend("numpy")
    K = to_matrix(*assemble_stiffness(m, be), be).toarray()
    scale = np.abs(K).max()
    assert np.abs(K - K.T).max() < 1e-13 * scale
    w, V = np.linalg.eigh(K)
    assert w[0] > -1e-10 * w[-1]
    assert np.all(np.abs(w[:6]) < 1e-10 * w[-1]), w[:8] / w[-1]
    assert w[6] > 1e-5 * w[-1], w[:8] / w[-1]  # no spurious (hourglass) mode
    R = rigid_body_modes(m.points)
    assert np.abs(K @ R).max() < 1e-10 * scale * np.abs(R).max()
    null = V[:, :6]
    # the null space is spanned by the rigid-body modes: projecting R onto it loses nothing
    assert np.linalg.norm(R - null @ (null.T @ R)) < 1e-8 * np.linalg.norm(R)
