"""The matrix-free geometric-multigrid voxel solver (fem.gmg) and its backend-neutral kernels.

Checked against independent references: the assembled hex8 stiffness of the same voxels
(fem.assembly) and a direct sparse solve of the same problem; the algebra the multigrid relies on
(restriction = prolongation transposed, a symmetric positive definite V-cycle, iteration counts
that do not grow with the grid); and, under array-api-strict (the Array API standard's reference
implementation, which rejects anything outside the standard), the same numbers as on NumPy, which
shows that the backend-neutral code calls nothing CuPy lacks.
"""

from __future__ import annotations

from dataclasses import dataclass

import array_api_strict as xps
import numpy as np
import pytest
import scipy.sparse.linalg as sla

import fem
from fem import gmg
from fem.assembly import assemble_stiffness, to_matrix
from fem.errors import ConvergenceError, SolverError
from fem.kernels import voxel
from fem.kernels.backend import add_at_flat, get_backend, namespace, voxel_kernels

# ---------------------------------------------------------------------- problems and references

@dataclass
class Case:
    E: np.ndarray  # (nz, ny, nx)
    spacing: tuple
    nu: float
    bits: np.ndarray  # (nz+1, ny+1, nx+1) uint8
    load_index: np.ndarray
    load_value: np.ndarray
    u0: np.ndarray | None = None
    bbar: bool = False

    def problem(self, xp=np) -> gmg.GridProblem:
        return gmg.GridProblem(
            E=xp.asarray(self.E), nu=self.nu, spacing=self.spacing, bits=xp.asarray(self.bits),
            load_index=xp.asarray(self.load_index), load_value=xp.asarray(self.load_value),
            u0=None if self.u0 is None else xp.asarray(self.u0), bbar=self.bbar)

    @property
    def node_shape(self):
        nz, ny, nx = self.E.shape
        return (nz + 1, ny + 1, nx + 1, 3)


def _moduli(rng, shape, empty=0.0):
    nx, ny, nz = shape
    E = rng.uniform(1.0, 100.0, (nz, ny, nx))
    E[rng.random(E.shape) < empty] = 0.0
    return E


def _loads(rng, E, extra=6):
    """-z on the top face, plus random point loads (some on supported or empty nodes, which
    do nothing, and one dof loaded twice, which counts twice)."""
    nz, ny, nx = E.shape
    node = np.arange((nz + 1) * (ny + 1) * (nx + 1)).reshape(nz + 1, ny + 1, nx + 1)
    idx = [3 * node[nz].ravel() + 2]
    val = [np.full(idx[0].size, -1.0)]
    pick = rng.integers(0, 3 * node.size, extra)
    idx += [pick, pick[:1]]
    val += [rng.uniform(-2.0, 2.0, extra), np.array([0.7])]
    return np.concatenate(idx), np.concatenate(val)


def make_case(name: str) -> Case:
    rng = np.random.default_rng(sum(map(ord, name)))
    shapes = {"odd": (5, 7, 3), "even": (6, 4, 8), "plate": (9, 8, 1), "empty": (8, 7, 6),
              "u0": (6, 5, 4), "bbar": (5, 4, 6), "aniso": (7, 5, 4)}
    shape = shapes[name]
    E = _moduli(rng, shape, empty=0.15 if name == "empty" else 0.0)
    if name == "empty":
        E[2:4, 2:5, 3:6] = 0.0  # a closed cavity, apart from the other empty voxels
        E[:, :2, :2] = 0.0  # and an empty column through the whole grid
    nz, ny, nx = E.shape
    bits = np.zeros((nz + 1, ny + 1, nx + 1), np.uint8)
    spacing = {"aniso": (0.3, 0.7, 1.6), "plate": (1.0, 1.0, 0.4)}.get(name, (0.5, 0.6, 0.7))
    if name == "plate":
        bits[:, :, 0] = 7  # a clamped edge: a cantilever plate one voxel thick
        node = np.arange(bits.size).reshape(bits.shape)
        idx, val = 3 * node[:, :, nx].ravel() + 2, np.full(2 * (ny + 1), -0.5)
    else:
        bits[0] = 7
        bits[nz, 0, :] |= 1  # a line of x supports on the top: mixed bits
        idx, val = _loads(rng, E)
    u0 = None
    if name == "u0":
        bits[nz] = 7
        u0 = np.zeros((nz + 1, ny + 1, nx + 1, 3))
        u0[nz, ..., 2] = -0.02
        u0[nz, ..., 0] = 0.005 * np.arange(nx + 1)[None, :]
    return Case(E=E, spacing=spacing, nu=0.49 if name == "bbar" else 0.3, bits=bits,
                load_index=idx, load_value=val, u0=u0, bbar=(name == "bbar"))


CASES = ["odd", "even", "plate", "empty", "u0", "bbar", "aniso"]


def grid_model(E, spacing, nu, bbar=False) -> fem.Model:
    """The hex8 model of the non-empty voxels, its nodes numbered like the grid's."""
    nz, ny, nx = E.shape
    k, j, i = np.meshgrid(np.arange(nz + 1), np.arange(ny + 1), np.arange(nx + 1), indexing="ij")
    pts = np.stack([i.ravel() * spacing[0], j.ravel() * spacing[1], k.ravel() * spacing[2]],
                   axis=1).astype(float)
    node = np.arange(pts.shape[0]).reshape(nz + 1, ny + 1, nx + 1)
    conn = np.stack([node[dk:dk + nz, dj:dj + ny, di:di + nx].ravel()
                     for di, dj, dk in voxel.CORNER_OFFSETS], axis=1)
    keep = E.ravel() > 0
    model = fem.Model.from_arrays(pts, [("hex8", conn[keep])], E=E.ravel()[keep], nu=nu)
    model.hex8_formulation = "bbar" if bbar else "full"
    return model


def assembled(E, spacing, nu, bbar=False):
    be = get_backend("numpy")
    pattern, data = assemble_stiffness(grid_model(E, spacing, nu, bbar), be)
    n = 3 * (E.shape[0] + 1) * (E.shape[1] + 1) * (E.shape[2] + 1)
    K = to_matrix(pattern, data, be).tocsr()
    assert K.shape == (n, n)
    return K


@dataclass
class Reference:
    K: object
    f: np.ndarray
    free: np.ndarray  # bool per dof: not supported and on a voxel
    u: np.ndarray  # direct solution, flat
    u0: np.ndarray  # prescribed values, flat


def direct(case: Case) -> Reference:
    """The same problem assembled and solved by a sparse direct solver on the free dofs."""
    K = assembled(case.E, case.spacing, case.nu, case.bbar)
    n = K.shape[0]
    f = np.zeros(n)
    np.add.at(f, case.load_index, case.load_value)
    fixed = ((case.bits[..., None] >> np.arange(3)) & 1).ravel() > 0
    used = np.abs(K).sum(axis=1).A1 > 0
    free = ~fixed & used
    u0 = np.zeros(n) if case.u0 is None else case.u0.ravel().copy()
    u = u0.copy()
    rhs = f - K @ u0
    u[free] = sla.spsolve(K[free][:, free].tocsc(), rhs[free])
    return Reference(K=K, f=f, free=free, u=u, u0=u0)


def _planes(case: Case, planes: int | None):
    """range_nodes that streams the fine grid ``planes`` node planes at a time (None: default)."""
    if planes is None:
        return None
    nz, ny, nx = case.E.shape
    return planes * (ny + 1) * (nx + 1)


def _rel(a, b) -> float:
    return float(np.abs(np.asarray(a) - np.asarray(b)).max() / np.abs(np.asarray(b)).max())


# ---------------------------------------------------------------------- transfer operators

def _matrix_of(op, n_in: int, axis: int, ndim: int, n_out: int) -> np.ndarray:
    """The matrix of a linear map along ``axis`` of an array, column by column."""
    cols = []
    for c in range(n_in):
        shape = [2] * ndim
        shape[axis] = n_in
        e = np.zeros(shape)
        key = [0] * ndim
        key[axis] = c
        e[tuple(key)] = 1.0
        out = op(e)
        assert out.shape[axis] == n_out
        idx = [0] * ndim
        idx[axis] = slice(None)
        cols.append(out[tuple(idx)])
        # the other entries are untouched
        assert np.count_nonzero(out) == np.count_nonzero(out[tuple(idx)])
    return np.stack(cols, axis=1)


@pytest.mark.parametrize("nf", [2, 3, 4, 5, 8, 9])
@pytest.mark.parametrize("axis", [0, 1, 2])
def test_restriction_is_prolongation_transposed(nf, axis):
    nc = gmg._padded(nf - 1) // 2 + 1
    P = _matrix_of(lambda c: voxel.prolong_axis(np, c, axis, nf), nc, axis, 4, nf)
    R = _matrix_of(lambda f: voxel.restrict_axis(np, f, axis, nc), nf, axis, 4, nc)
    np.testing.assert_array_equal(R, P.T)
    # linear interpolation: reproduces constants on the fine nodes and the coarse node positions
    np.testing.assert_array_equal(P.sum(axis=1), np.ones(nf))
    np.testing.assert_allclose(P @ (2.0 * np.arange(nc)), np.arange(nf), rtol=0, atol=1e-15)


@pytest.mark.parametrize("shape", [(5, 4, 7), (6, 6, 6), (9, 8, 1), (1, 1, 9), (3, 8, 2)])
@pytest.mark.parametrize("planes", [None, 3])
def test_streamed_restriction_is_adjoint_of_prolongation(shape, planes, rng):
    """<R r, zc> == <r, P zc> for the level-to-level transfers as the solver streams them
    (ranges of node planes with odd and even starts, thin axes not coarsened)."""
    E = _moduli(rng, shape, empty=0.1)
    E[0] = 50.0  # voxels on the supported face
    bits = np.zeros((E.shape[0] + 1, E.shape[1] + 1, E.shape[2] + 1), np.uint8)
    bits[0] = 7
    case = Case(E=E, spacing=(1.0, 1.0, 1.0), nu=0.3, bits=bits, load_index=np.zeros(0, int),
                load_value=np.zeros(0))
    s = gmg.VoxelSolver(case.problem(), np, range_nodes=_planes(case, planes), coarse_max_dof=1)
    fine, coarse = s.levels[0], s.levels[1]
    if planes and E.shape[0] >= 4:
        assert len(fine.ranges) > 1
    r = rng.standard_normal(fine.node_shape)
    zc = rng.standard_normal(coarse.node_shape) * voxel.free_mask(np, coarse.bits, np.float64)
    s._residual_restrict(fine, r, np.zeros(fine.node_shape), coarse)
    z = np.zeros(fine.node_shape)
    coarse.z[...] = zc
    s._prolong_add(coarse, fine, z)
    lhs, rhs = float(np.sum(coarse.r * zc)), float(np.sum(r * z))
    assert abs(lhs - rhs) <= 1e-13 * np.linalg.norm(r) * np.linalg.norm(zc) * 8
    assert np.any(coarse.r) and np.any(z)


def test_coarse_moduli_are_means_of_children():
    E = np.arange(1.0, 1.0 + 5 * 4 * 3).reshape(3, 4, 5)
    Ec = gmg._coarsen_moduli(np, E, (2, 2, 2), np.float64)
    assert Ec.shape == (2, 2, 3)
    P = np.zeros((4, 4, 6))
    P[:3, :4, :5] = E  # odd counts padded with empty voxels
    ref = P.reshape(2, 2, 2, 2, 3, 2).mean(axis=(1, 3, 5))
    np.testing.assert_allclose(Ec, ref, rtol=1e-15)
    thin = gmg._coarsen_moduli(np, E, (2, 2, 1), np.float64)  # z not coarsened
    np.testing.assert_allclose(thin, P[:3].reshape(3, 2, 2, 3, 2).mean(axis=(2, 4)), rtol=1e-15)


# ---------------------------------------------------------------------- operator

@pytest.mark.parametrize("name", CASES)
def test_matrix_free_product_equals_assembled_stiffness(name, rng):
    case = make_case(name)
    K = assembled(case.E, case.spacing, case.nu, case.bbar)
    u = rng.standard_normal(case.node_shape)
    ref = (K @ u.ravel()).reshape(case.node_shape)
    for planes in (None, 3):
        s = gmg.VoxelSolver(case.problem(), np, range_nodes=_planes(case, planes))
        assert _rel(s.apply(u), ref) <= 1e-12
    # the float32 operator of mixed precision, streamed range by range
    s = gmg.VoxelSolver(case.problem(), np, precision="mixed", range_nodes=_planes(case, 2))
    lv = s.levels[0]
    got = np.empty(case.node_shape, np.float32)
    for k0, k1, Au in s._products(lv, u.astype(np.float32)):
        got[k0:k1] = Au
    assert _rel(got, ref) <= 1e-5


@pytest.mark.parametrize("name", ["odd", "empty", "plate", "bbar", "aniso"])
def test_dense_coarse_stiffness_equals_assembled(name):
    """The scatter-free dense builder of the coarsest operator gives the assembled matrix."""
    case = make_case(name)
    K = assembled(case.E, case.spacing, case.nu, case.bbar).toarray()
    Ke = gmg.box_stiffness(case.spacing, case.nu, case.bbar)
    D = gmg._dense_stiffness(np, case.E, Ke)
    assert np.abs(D - K).max() <= 1e-12 * np.abs(K).max()


# ---------------------------------------------------------------------- preconditioner

@pytest.mark.parametrize("name", ["empty", "plate", "aniso", "bbar"])
def test_vcycle_is_symmetric_positive_definite(name, rng):
    case = make_case(name)
    s = gmg.VoxelSolver(case.problem(), np, range_nodes=_planes(case, 3), coarse_max_dof=60)
    assert len(s.levels) >= 3
    mask = voxel.free_mask(np, s.levels[0].bits, np.float64)
    for _ in range(3):
        x = rng.standard_normal(case.node_shape) * mask
        y = rng.standard_normal(case.node_shape) * mask
        Mx, My = np.empty_like(x), np.empty_like(y)
        s.vcycle(x, Mx)
        s.vcycle(y, My)
        xMy, yMx = float(np.sum(x * My)), float(np.sum(y * Mx))
        assert abs(xMy - yMx) <= 1e-12 * np.linalg.norm(x) * np.linalg.norm(My)
        assert float(np.sum(x * Mx)) > 0.0
        assert float(np.sum(y * My)) > 0.0
        # M maps onto the free dofs only
        assert not np.any(Mx * (1.0 - mask))


# ---------------------------------------------------------------------- the solve

def _true_residual(ref: Reference, u) -> tuple[float, float]:
    """(||b - A u|| on the free dofs, ||b - A u0|| there), in float64, from the assembled K."""
    r = (ref.f - ref.K @ np.asarray(u).ravel())[ref.free]
    b_eff = (ref.f - ref.K @ ref.u0)[ref.free]
    return float(np.linalg.norm(r)), float(np.linalg.norm(b_eff))


@pytest.mark.parametrize("planes", [None, 3])
@pytest.mark.parametrize("name", CASES)
def test_double_solve_equals_direct_solve(name, planes):
    case = make_case(name)
    ref = direct(case)
    s = gmg.VoxelSolver(case.problem(), np, range_nodes=_planes(case, planes))
    u, info = s.solve(rtol=1e-10)
    assert _rel(u.ravel(), ref.u) <= 1e-7
    np.testing.assert_array_equal(u.ravel()[~ref.free & (ref.u0 != 0)],
                                  ref.u0[~ref.free & (ref.u0 != 0)])
    res, b_eff = _true_residual(ref, u)
    assert res <= 1e-9 * b_eff
    assert info.residual <= 1e-10


@pytest.mark.parametrize("planes", [None, 3])
@pytest.mark.parametrize("name", CASES)
def test_mixed_solve_reaches_the_true_residual(name, planes):
    case = make_case(name)
    ref = direct(case)
    rtol = 1e-8
    s = gmg.VoxelSolver(case.problem(), np, precision="mixed", range_nodes=_planes(case, planes))
    u, info = s.solve(rtol=rtol)
    assert u.dtype == np.float64
    res, b_eff = _true_residual(ref, u)
    assert res <= rtol * b_eff
    assert info.replacements >= 1
    assert _rel(u.ravel(), ref.u) <= 1e-5


def _smooth_field(n: int) -> np.ndarray:
    """Moduli 100..10000 MPa (100:1) from one smooth function of position, sampled at voxel
    centres of an n^3 grid on the unit cube (the same material at every resolution)."""
    c = (np.arange(n) + 0.5) / n
    z, y, x = np.meshgrid(c, c, c, indexing="ij")
    g = 0.5 + 0.5 * np.sin(2 * np.pi * x) * np.cos(3 * np.pi * y) * np.sin(np.pi * (z + 0.25))
    return 100.0 * 10.0 ** (2.0 * g)


def test_iterations_do_not_grow_with_the_grid():
    its = {}
    for n in (8, 16, 32):
        E = _smooth_field(n)
        bits = np.zeros((n + 1,) * 3, np.uint8)
        bits[0] = 7
        node = np.arange((n + 1) ** 3).reshape((n + 1,) * 3)
        top = node[n].ravel()
        prob = gmg.GridProblem(E=E, nu=0.3, spacing=(1.0 / n,) * 3, bits=bits,
                               load_index=3 * top + 2, load_value=np.full(top.size, -1.0 / n**2))
        _, info = gmg.VoxelSolver(prob, np).solve(rtol=1e-8)
        its[n] = info.iterations
    assert its[32] <= 1.5 * its[8] + 3, its
    assert its[16] <= 1.5 * its[8] + 3, its


def test_smoother_diagonal_is_the_stiffness_diagonal(rng):
    """The Jacobi diagonal recomputed from the moduli range by range equals diag(A) from the
    diagonal kernel (on free dofs; 0 on supported dofs and nodes of no voxel)."""
    from fem.kernels.voxel import voxel_diagonal

    E = rng.uniform(1.0, 100.0, (5, 4, 6))
    E[rng.random(E.shape) < 0.2] = 0.0
    bits = np.zeros((6, 5, 7), np.uint8)
    bits[0] = 7
    prob = gmg.GridProblem(E=E, nu=0.3, spacing=(0.5, 0.6, 0.7), bits=bits,
                           load_index=np.array([3 * 209 + 2]), load_value=np.array([-1.0]))
    s = gmg.VoxelSolver(prob, np, range_nodes=2 * 35)
    lv = s.levels[0]
    D = np.empty(lv.node_shape)
    voxel_diagonal(lv.E, lv.kdiag, D, 0, 6)
    dinv = np.concatenate([voxel.inverse_diagonal(lv.E, lv.kdiag, lv.bits, k0, k1, lv.dtype)
                           for k0, k1 in lv.ranges])
    free = voxel.free_mask(np, lv.bits, np.float64) > 0
    assert free.sum() > 100
    np.testing.assert_allclose(dinv[free], 1.0 / D[free], rtol=1e-13)
    assert not dinv[~free].any()


@pytest.mark.parametrize("spacing, shape", [((0.3, 0.3, 1.5), (30, 30, 6)),
                                            ((0.2, 1.0, 1.0), (40, 8, 8))])
def test_anisotropic_voxels_semi_coarsen(spacing, shape):
    """Clinical QCT voxels are often 3-5x longer in z; point Jacobi cannot smooth across them, so
    the fine axes are coarsened first. Without it these take 57 and 63 iterations."""
    assert gmg._coarsening_factors(shape, spacing) != (2, 2, 2)
    from fem.meshes.voxel import bone_like_block

    iso = fem.solve(bone_like_block((12, 12, 12)), solver="gmg", rtol=1e-8).info.iterations
    r = fem.solve(bone_like_block(shape, spacing=spacing), solver="gmg", rtol=1e-8)
    assert r.info.iterations <= 1.5 * iso + 3, (r.info.iterations, iso, r.info.levels)


# ---------------------------------------------------------------------- errors

def test_model_without_supports_is_refused():
    case = make_case("odd")
    case.bits[...] = 0
    with pytest.raises(SolverError, match="no support"):
        gmg.VoxelSolver(case.problem(), np)


@pytest.mark.parametrize("precision", ["double", "mixed"])
def test_floating_part_is_a_clear_error(precision):
    """A part cut off from the supports by a layer of empty voxels, loaded: a mechanism."""
    case = make_case("even")
    case.E[4] = 0.0
    with pytest.raises(ConvergenceError, match="mechanism|converge|diverged"):
        gmg.VoxelSolver(case.problem(), np, precision=precision).solve(rtol=1e-8, maxiter=200)


def test_bad_precision_is_refused():
    with pytest.raises(SolverError, match="precision"):
        gmg.VoxelSolver(make_case("odd").problem(), np, precision="half")


# ---------------------------------------------------------------------- under array-api-strict

def _host(a) -> np.ndarray:
    return np.asarray(np.from_dlpack(a)) if namespace(a) is xps else np.asarray(a)


def test_namespace_of_arrays():
    assert namespace(np.zeros(2)) is np
    assert namespace(xps.zeros(2)) is xps
    assert namespace(None, xps.zeros(2)) is xps
    assert namespace([1.0]) is np
    assert voxel_kernels(xps) is voxel


@pytest.mark.parametrize("name", ["empty", "u0", "odd"])
def test_strict_solve_equals_numpy(name):
    """The whole solve, set-up included, under array-api-strict: the NumPy answer."""
    case = make_case(name)
    planes = _planes(case, 3)
    u_np, info_np = gmg.VoxelSolver(case.problem(np), np, range_nodes=planes).solve(rtol=1e-12)
    solver = gmg.VoxelSolver(case.problem(xps), xps, range_nodes=planes)
    assert solver.threads == 1
    u_st, info_st = solver.solve(rtol=1e-12)
    assert namespace(u_st) is xps
    assert _rel(_host(u_st), u_np) <= 1e-12
    assert abs(info_st.iterations - info_np.iterations) <= 1
    Au = solver.apply(u_st)
    assert _rel(_host(Au), (direct(case).K @ _host(u_st).ravel()).reshape(case.node_shape)) \
        <= 1e-12


@pytest.mark.parametrize("name", ["empty", "plate"])
def test_strict_mixed_solve_reaches_the_true_residual(name):
    case = make_case(name)
    ref = direct(case)
    u, info = gmg.VoxelSolver(case.problem(xps), xps, precision="mixed",
                              range_nodes=_planes(case, 3)).solve(rtol=1e-8)
    res, b_eff = _true_residual(ref, _host(u))
    assert res <= 1e-8 * b_eff
    assert info.held_bytes > 0


def test_strict_transfer_and_coarsening_helpers(rng):
    E = _moduli(rng, (5, 6, 7), empty=0.2)
    bits = rng.integers(0, 8, (8, 7, 6)).astype(np.uint8)
    Es, bs = xps.asarray(E), xps.asarray(bits)
    f = rng.standard_normal((8, 7, 6, 3))
    for axis, n in ((0, 8), (1, 7), (2, 6)):
        nc = gmg._padded(n - 1) // 2 + 1
        got = voxel.restrict_axis(xps, xps.asarray(f), axis, nc)
        np.testing.assert_array_equal(_host(got), voxel.restrict_axis(np, f, axis, nc))
        c = np.take(f, np.arange(nc) % n, axis=axis)
        got = voxel.prolong_axis(xps, xps.asarray(c), axis, n)
        np.testing.assert_array_equal(_host(got), voxel.prolong_axis(np, c, axis, n))
    for factors in ((2, 2, 2), (2, 1, 2), (1, 2, 1)):
        np.testing.assert_array_equal(_host(gmg._coarsen_moduli(xps, Es, factors, xps.float64)),
                                      gmg._coarsen_moduli(np, E, factors, np.float64))
        np.testing.assert_array_equal(_host(gmg._coarsen_bits(xps, bs, factors)),
                                      gmg._coarsen_bits(np, bits, factors))
    np.testing.assert_array_equal(_host(gmg._inactive_bits(xps, Es)), gmg._inactive_bits(np, E))
    np.testing.assert_array_equal(_host(voxel.free_mask(xps, bs, xps.float32)),
                                  voxel.free_mask(np, bits, np.float32))
    idx = rng.integers(0, bits.size * 3, 50)
    np.testing.assert_array_equal(_host(gmg._free_at(xps, bs, xps.asarray(idx))),
                                  gmg._free_at(np, bits, idx))
    np.testing.assert_array_equal(_host(gmg._noise(xps, 17, (3, 4, 3), xps.float64)),
                                  gmg._noise(np, 17, (3, 4, 3), np.float64))
    Ke = gmg.box_stiffness((0.5, 0.6, 0.7), 0.3)
    np.testing.assert_array_equal(_host(gmg._dense_stiffness(xps, Es[:2, :2, :3], xps.asarray(Ke))),
                                  gmg._dense_stiffness(np, E[:2, :2, :3], Ke))
    assert gmg._nbytes(xps, bs) == bits.nbytes
    assert gmg._nbytes(xps, Es) == E.nbytes


def test_add_at_flat_sums_repeated_indices(rng):
    idx = np.array([0, 5, 5, 23, 0, 7])
    val = rng.standard_normal(idx.size)
    ref = np.zeros((2, 4, 3))
    np.add.at(ref.reshape(-1), idx, val)
    a = np.zeros((2, 4, 3))
    add_at_flat(a, idx, val)
    np.testing.assert_array_equal(a, ref)
    s = xps.zeros((2, 4, 3), dtype=xps.float64)
    add_at_flat(s, xps.asarray(idx), xps.asarray(val))
    np.testing.assert_array_equal(_host(s), ref)
    with pytest.raises(ValueError, match="contiguous"):
        add_at_flat(np.zeros((4, 6))[:, ::2], idx[:1], val[:1])


@pytest.mark.parametrize("dtype,etype", [("float64", "float64"), ("float32", "float32"),
                                         ("float32", "float64")])
def test_strict_kernel_twins_equal_numpy(dtype, etype, rng):
    """voxel_matvec, voxel_diagonal and voxel_strain on array-api-strict arrays."""
    nx, ny, nz = 4, 3, 5
    E = _moduli(rng, (nx, ny, nz), empty=0.2).astype(etype)
    u = rng.standard_normal((nz + 1, ny + 1, nx + 1, 3)).astype(dtype)
    Ke = voxel.reference_stiffness((0.5, 0.7, 0.9), 0.3)
    kdiag = np.diag(Ke).copy()
    B = voxel.mean_strain_operator((0.5, 0.7, 0.9))
    tol = 1e-12 if dtype == "float64" else 1e-5
    sdt = getattr(xps, dtype)
    for k0, k1 in ((0, nz + 1), (0, 1), (2, 5), (nz, nz + 1)):
        out_n = np.empty((k1 - k0, ny + 1, nx + 1, 3), dtype)
        out_s = xps.empty((k1 - k0, ny + 1, nx + 1, 3), dtype=sdt)
        voxel.voxel_matvec(u, E, Ke.astype(dtype), out_n, k0, k1)
        voxel.voxel_matvec(xps.asarray(u), xps.asarray(E), xps.asarray(Ke.astype(dtype)), out_s,
                           k0, k1)
        assert _rel(_host(out_s), out_n) <= tol
        voxel.voxel_diagonal(E, kdiag.astype(dtype), out_n, k0, k1)
        voxel.voxel_diagonal(xps.asarray(E), xps.asarray(kdiag.astype(dtype)), out_s, k0, k1)
        assert _rel(_host(out_s), out_n) <= tol
    for e0, e1 in ((0, nz), (1, 3), (nz - 1, nz)):
        out_n = np.empty((e1 - e0, ny, nx, 6), dtype)
        out_s = xps.empty((e1 - e0, ny, nx, 6), dtype=sdt)
        voxel.voxel_strain(u, B.astype(dtype), out_n, e0, e1)
        voxel.voxel_strain(xps.asarray(u), xps.asarray(B.astype(dtype)), out_s, e0, e1)
        assert _rel(_host(out_s), out_n) <= tol
    # and the twin's product is the assembled one (the strict run checks the code, this the maths)
    K = assembled(E.astype(np.float64), (0.5, 0.7, 0.9), 0.3)
    out = xps.empty((nz + 1, ny + 1, nx + 1, 3), dtype=xps.float64)
    voxel.voxel_matvec(xps.asarray(u.astype(np.float64)), xps.asarray(E), xps.asarray(Ke), out,
                       0, nz + 1)
    assert _rel(_host(out).ravel(), K @ u.astype(np.float64).ravel()) <= 1e-12


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_the_twin_product_does_not_depend_on_its_block_size(dtype, rng, monkeypatch):
    """Where whole element planes fit in a GEMM's block the NumPy twin takes several at once
    (a coarse level's few voxels in one product); the sums are those of one plane at a time (a
    node plane adds the forces of the element plane below it first, then those of the one
    above). Equal to within a few roundings, not bit for bit: whether a GEMM rounds a row the
    same whatever the number of rows is the BLAS's choice (OpenBLAS 0.3.31 on an AMD EPYC
    rounds float32 rows of 30- and 90-row products differently, by an ulp); a block that took
    the wrong voxels or planes would be off by the forces themselves."""
    nz, ny, nx = 7, 5, 6
    E = _moduli(rng, (nx, ny, nz), empty=0.2)
    u = rng.standard_normal((nz + 1, ny + 1, nx + 1, 3)).astype(dtype)
    Ke = voxel.reference_stiffness((0.5, 0.7, 0.9), 0.3).astype(dtype)
    got = {}
    for chunk in (nx * ny, 3 * nx * ny, nz * ny * nx):  # one plane, three planes, all
        monkeypatch.setattr(voxel, "PLANE_BLOCK_VOXELS", chunk)
        for k0, k1 in ((0, nz + 1), (2, 5), (nz, nz + 1)):
            out = np.empty((k1 - k0, ny + 1, nx + 1, 3), dtype)
            voxel.voxel_matvec(u, E, Ke, out, k0, k1)
            got.setdefault((k0, k1), []).append(out)
    tol = 16 * np.finfo(dtype).eps * float(np.abs(got[(0, nz + 1)][0]).max())
    for outs in got.values():
        for out in outs[1:]:
            np.testing.assert_allclose(out, outs[0], rtol=0, atol=tol)


def test_the_accumulating_twin_writes_every_plane_of_its_range(rng):
    """voxel_matvec_acc assigns each node plane of [k0, k1) once, rounded from its float64
    window (no zeroing of ``out`` first): an output filled with NaN comes back finite and equal
    to the float64 product, for every range."""
    nz, ny, nx = 4, 3, 5
    E = _moduli(rng, (nx, ny, nz), empty=0.2).astype(np.float32)
    u = rng.standard_normal((nz + 1, ny + 1, nx + 1, 3)).astype(np.float32)
    Ke = voxel.reference_stiffness((0.5, 0.7, 0.9), 0.3)
    ref = np.empty((nz + 1, ny + 1, nx + 1, 3))
    voxel.voxel_matvec(u.astype(np.float64), E.astype(np.float64), Ke, ref, 0, nz + 1)
    for k0 in range(nz + 1):
        for k1 in range(k0 + 1, nz + 2):
            out = np.full((k1 - k0, ny + 1, nx + 1, 3), np.nan, np.float32)
            voxel.voxel_matvec_acc(u, E, Ke, out, k0, k1)
            assert _rel(out, ref[k0:k1]) <= 1e-6, (k0, k1)
