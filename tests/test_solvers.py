"""Solvers: choice by size, AMG-CG against the direct solve, tolerances, failures and records."""

import re

import numpy as np
import pytest

import fem
from fem import analysis
from fem.amg import SmoothedAggregationAMG, lanczos_max_eig
from fem.meshes.blocks import hex_block, tet_block


def _block(n, distort=0.2, tet=False):
    if tet:
        m = tet_block((n, n, 2 * n), (10.0, 10.0, 20.0), order=2, distort=distort, E=500.0, nu=0.3)
    else:
        m = hex_block((n, n, 2 * n), (10.0, 10.0, 20.0), distort=distort, E=500.0, nu=0.3)
    # a stiff layer (cement-like) makes the problem heterogeneous
    top = np.nonzero(m.points[m.blocks[0].conn].mean(axis=1)[:, 2] > 10.0)[0]
    m.add_region("cement", top)
    m.set_material("cement", E=3000.0, nu=0.35)
    m.add(fem.Fixed("zmin"), fem.Pressure("zmax", 1.0), fem.TotalForce("xmax", (0.0, 5.0, 0.0)))
    return m


@pytest.mark.parametrize("tet", [False, True])
def test_amg_cg_agrees_with_direct(tet):
    m = _block(5 if tet else 8, tet=tet)
    ref = fem.solve(m, solver="direct")
    res = fem.solve(m, solver="amg", rtol=1e-10)
    scale = np.abs(ref.displacement).max()
    assert np.abs(res.displacement - ref.displacement).max() < 1e-8 * scale
    assert res.info.solver == "amg" and res.info.iterations > 0
    assert res.info.residual <= 1e-10
    assert res.info.residuals[0] == pytest.approx(1.0)
    assert len(res.info.residuals) == res.info.iterations + 1
    for phase in ("checks", "assembly", "constraints", "setup", "solve", "total"):
        assert res.info.times[phase] >= 0.0


def test_amg_iterations_do_not_grow_with_the_mesh():
    """Smoothed aggregation with the rigid-body modes: iterations stay nearly flat under
    refinement (8x the elements), unlike Jacobi-preconditioned CG."""
    its = [fem.solve(_block(n), solver="amg", rtol=1e-8).info.iterations for n in (6, 12)]
    assert its[1] <= 1.5 * its[0] + 2, its
    jac = [fem.solve(_block(n), solver="cg", rtol=1e-8).info.iterations for n in (6, 12)]
    assert jac[1] > 1.6 * jac[0], jac
    assert its[1] < jac[1] / 5


def test_mixed_precision_reaches_the_same_tolerance():
    m = _block(8)
    d = fem.solve(m, solver="amg", rtol=1e-10)
    x = fem.solve(m, solver="amg", rtol=1e-10, precision="mixed")
    assert x.info.residual <= 1e-10
    assert x.info.precision == "mixed"
    scale = np.abs(d.displacement).max()
    assert np.abs(x.displacement - d.displacement).max() < 1e-8 * scale


def test_the_mixed_precision_cycle_stays_in_float32():
    """A float32 hierarchy's smoothers invert their diagonal blocks in float32 too. A float64
    inverse (the identity it starts from was float64) promoted every smoothing vector to
    float64, so the mixed cycle cost more than the double one (0.061 against 0.052 s a cycle
    on the canonical T12-L4 at 2 mm) and gained nothing from its float32 matrices."""
    from fem.assembly import assemble_stiffness, to_matrix
    from fem.kernels.backend import get_backend
    from fem.solvers import rigid_body_modes

    m = hex_block((12, 12, 12), distort=0.2, E=100.0, nu=0.3)
    be = get_backend("numpy")
    A = to_matrix(*assemble_stiffness(m, be), be)
    M = SmoothedAggregationAMG(A, rigid_body_modes(m.points), precision="mixed")
    assert M.n_levels >= 2
    seen = []

    def recording(prec):
        def apply(r):
            z = prec(r)
            seen.append(z.dtype)
            return z
        return apply

    for lv in M.levels:
        assert lv.A.dtype == np.float32 and lv.smooth.prec.Dinv.dtype == np.float32
        lv.smooth.prec = recording(lv.smooth.prec)
    z = M.matvec(np.ones(A.shape[0]))
    assert z.dtype == np.float64 and np.isfinite(z).all()
    assert seen and set(seen) == {np.dtype(np.float32)}


def test_rtol_is_respected_and_tighter_costs_more():
    m = _block(8)
    loose = fem.solve(m, solver="amg", rtol=1e-4)
    tight = fem.solve(m, solver="amg", rtol=1e-11)
    assert loose.info.residual <= 1e-4 and tight.info.residual <= 1e-11
    assert tight.info.iterations > loose.info.iterations


def test_non_convergence_raises_with_the_history():
    m = _block(8)
    with pytest.raises(fem.ConvergenceError) as info:
        fem.solve(m, solver="cg", rtol=1e-12, maxiter=5)
    err = info.value
    assert len(err.residuals) == 6 and err.residuals[0] == pytest.approx(1.0)
    assert err.residuals[-1] > 1e-12
    assert "did not converge in 5 iterations" in str(err)


def test_auto_chooses_by_size():
    small = _block(3)  # 3 (4*4*7) = 336 dofs
    big = _block(10)
    assert big.n_dof > analysis.DIRECT_MAX_DOF >= small.n_dof
    assert fem.solve(small).info.solver == "direct"
    assert fem.solve(big).info.solver == "amg"


@pytest.mark.parametrize("solver", ["direct", "amg", "cg"])
def test_hinge_mechanism_is_refused_before_solving(solver):
    """Two cubes sharing a single corner node pass the rigid-body check (the mesh is connected)
    but the upper cube can rotate about the shared node: refused, naming the node, the part and
    the free rotations about the node, on every solver."""
    a = hex_block((1, 1, 1), (1.0, 1.0, 1.0))
    corners = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0],
                        [0, 0, 1], [1, 0, 1], [1, 1, 1], [0, 1, 1]], dtype=float)
    shared = int(np.nonzero(np.all(np.isclose(a.points, 1.0), axis=1))[0][0])
    pts = np.vstack([a.points, corners[1:] + 1.0])
    conn_b = np.r_[shared, len(a.points) + np.arange(7)][None]
    model = fem.Model.from_arrays(pts, [("hex8", a.blocks[0].conn), ("hex8", conn_b)],
                                  E=100.0, nu=0.3)
    model.add(fem.Fixed(np.nonzero(pts[:, 2] < 1e-9)[0]))
    with pytest.raises(fem.MechanismError, match=r"1 element\(s\).*element 2\b.*through node\(s\) "
                       rf"{model.node_ids[shared]},.*rotation about x through \(1, 1, 1\) mm, "
                       r"rotation about y .*rotation about z") as e:
        fem.solve(model, solver=solver)
    assert isinstance(e.value, fem.ModelError) and len(e.value.free_motions) == 3


def test_lanczos_estimate_brackets_the_spectrum():
    """The Chebyshev smoother's lambda_max estimate is close to the true largest eigenvalue of
    the block-Jacobi operator and never far below it (which would make the smoother diverge)."""
    from fem.amg import BlockJacobi
    from fem.assembly import assemble_stiffness, to_matrix
    from fem.kernels.backend import get_backend

    m = hex_block((4, 4, 4), distort=0.2, E=100.0, nu=0.3)
    be = get_backend("numpy")
    A = to_matrix(*assemble_stiffness(m, be), be)
    prec = BlockJacobi(A)
    est = lanczos_max_eig(lambda v: A @ v, A.shape[0], prec)
    Dinv = np.zeros(A.shape)
    for i in range(A.shape[0] // 3):
        Dinv[3 * i:3 * i + 3, 3 * i:3 * i + 3] = prec.Dinv[i]
    true = np.max(np.real(np.linalg.eigvals(Dinv @ A.toarray())))
    assert 0.9 * true <= est <= 1.0001 * true


def test_amg_hierarchy_coarsens():
    from fem.assembly import assemble_stiffness, to_matrix
    from fem.kernels.backend import get_backend
    from fem.solvers import rigid_body_modes

    m = hex_block((12, 12, 12), distort=0.2, E=100.0, nu=0.3)
    be = get_backend("numpy")
    A = to_matrix(*assemble_stiffness(m, be), be)
    M = SmoothedAggregationAMG(A, rigid_body_modes(m.points))
    assert M.n_levels >= 2
    assert all(b < a for a, b in zip(M.sizes, M.sizes[1:]))
    assert M.sizes[-1] <= 6 * 100
    assert 1.0 < M.operator_complexity < 2.0


@pytest.mark.parametrize("solver", ["amg", "cg"])
def test_prescribed_displacements_hold_exactly_with_iterative_solvers(solver):
    """CG solves the identity rows of prescribed dofs only to its tolerance; the solution must
    carry the prescribed values exactly whatever rtol."""
    m = hex_block((8, 8, 8), (10.0, 10.0, 10.0), E=100.0, nu=0.3, distort=0.2, seed=3)
    m.fix("zmin").add(fem.Displacement("zmax", (0.01, None, -0.02)))
    r = fem.solve(m, solver=solver, rtol=1e-3)
    u = r.displacement
    assert np.all(u[m.node_sets["zmin"]] == 0.0)
    assert np.all(u[m.node_sets["zmax"], 0] == 0.01)
    assert np.all(u[m.node_sets["zmax"], 2] == -0.02)


def _joined(a, b):
    """One model of two meshes, nodes at the same place merged."""
    P = np.vstack([a.points, b.points])
    _, keep, inv = np.unique(np.round(P, 9), axis=0, return_index=True, return_inverse=True)
    inv = inv.ravel()
    et = a.blocks[0].type
    conn = np.vstack([inv[a.blocks[0].conn], inv[b.blocks[0].conn + len(a.points)]])
    return fem.Model.from_arrays(P[keep], [(et, conn)], E=1000.0, nu=0.3)


@pytest.mark.parametrize("kind", ["hex8", "tet4", "tet10"])
def test_a_part_hinged_along_an_edge_is_refused_unless_supported_on_its_own(kind):
    """The upper block shares only the edge x = z = 2 with the fixed lower one: it rotates
    freely about that edge (the issue's 4 347-dof case passed the pivot test by a hair). Given
    its own support it is no mechanism and solves."""
    if kind == "hex8":
        mk = hex_block
    else:
        def mk(shape, size, origin=(0.0, 0.0, 0.0)):
            return tet_block(shape, size, origin, order=1 if kind == "tet4" else 2)
    m = _joined(mk((2, 2, 2), (2.0, 2.0, 2.0)), mk((2, 2, 2), (2.0, 2.0, 2.0), (2.0, 0.0, 2.0)))
    z, x = m.points[:, 2], m.points[:, 0]
    m.add_node_set("base", np.nonzero((z < 1e-9) & (x < 2 + 1e-9))[0])
    m.add_node_set("tip", np.nonzero(z > 4 - 1e-9)[0])
    m.add(fem.Fixed("base"), fem.NodalForce("tip", (0.0, 0.0, -1.0)))
    for solver in ("direct", "amg"):
        with pytest.raises(fem.MechanismError, match=r"rotation about y through \(2, [\d.]+, 2\)"):
            fem.solve(m, solver=solver)
    m.add(fem.Fixed(np.nonzero((z > 4 - 1e-9) & (x > 4 - 1e-9))[0]))
    r = fem.solve(m, solver="direct")
    assert r.info.true_residual < 1e-10 and r.info.imbalance < 1e-9


def test_loads_beyond_double_precision_are_refused_naming_them():
    """1e200 N overflows the squares of a norm (infinite von Mises stress, a NaN residual);
    1e-300 N underflows (AMG returned zero): both refused before solving, naming the load."""
    for load, shown in ((1e200, "1e+200 N"), (1e-300, "1e-300 N")):
        m = hex_block((2, 2, 2), E=100.0, nu=0.3)
        m.add(fem.Fixed("zmin"), fem.NodalForce("zmax", (0.0, 0.0, load)))
        with pytest.raises(fem.BoundaryConditionError, match=re.escape(f"load of {shown}")):
            fem.solve(m)
    m = hex_block((2, 2, 2), size=(1e101, 1e101, 1e101), E=100.0, nu=0.3)
    m.add(fem.Fixed("zmin"), fem.NodalForce("zmax", (0.0, 0.0, 1.0)))
    with pytest.raises(fem.BoundaryConditionError, match=re.escape("node coordinate of 1e+101 mm")):
        fem.solve(m)


@pytest.mark.parametrize("solver", ["direct", "amg", "gmg"])
def test_every_solve_records_its_verified_residual_and_balance(solver):
    """The true residual and the resultant of loads and reactions are checked after every solve
    and recorded: below the requested tolerance and balanced."""
    m = hex_block((6, 6, 6), E=100.0, nu=0.3)
    m.add(fem.Fixed("zmin"), fem.NodalForce("zmax", (1.0, 0.0, -2.0)))
    r = fem.solve(m, solver=solver, rtol=1e-9)
    assert r.info.true_residual <= (1e-9 if solver == "direct" else 1e-8)
    assert r.info.imbalance < 1e-6
    n_top = int(np.isclose(m.points[:, 2], m.points[:, 2].max()).sum())
    assert np.allclose(r.reaction_total(), -np.array([1.0, 0.0, -2.0]) * n_top, rtol=1e-7)


@pytest.mark.parametrize("solver", ["gmg", "amg"])
def test_a_voxel_touching_the_rest_by_an_edge_is_refused(solver):
    """A voxel model whose top voxel shares only an edge with the column below it (the voxel
    path raised LinAlgError with AMG): refused as a mechanism on both solvers."""
    E = np.zeros((3, 3, 6))
    E[1, 1, :5] = 100.0  # a column of five voxels
    E[2, 1, 5] = 100.0  # on top, shifted one voxel in x: it shares the column's edge only
    vm = fem.VoxelModel(E, nu=0.3)
    vm.fix("zmin").add(fem.Pressure("zmax", 1.0))
    with pytest.raises(fem.MechanismError, match=r"1 element\(s\).*rotation about y"):
        fem.solve(vm, solver=solver)


def test_the_factorisation_keeps_its_ordering_s_fill_and_still_pivots_a_zero_diagonal(
        monkeypatch):
    """``fem.solvers.factorise`` keeps diagonal pivots that are at least ``DIAG_PIVOT`` (0.1) of
    their column: on the constrained stiffness of a block under a rigid plate (SPD, the plate's
    six dofs coupled to a face) its factors hold at least 10 % less fill than with SuperLU's
    partial pivoting (threshold 1: 16 % less here, 21 % on the L1 at 3 mm) and solve to
    round-off; a matrix with a zero diagonal (a Lagrange multiplier prescribing one dof) is
    still pivoted, and its solution holds the constraint."""
    import scipy.sparse as sp

    from fem import solvers, system
    from fem.assembly import assemble_stiffness, to_matrix
    from fem.kernels.backend import get_backend

    m = hex_block((8, 8, 16), (10.0, 10.0, 20.0), distort=0.2, E=500.0, nu=0.3)
    m.add(fem.Fixed("zmin"), fem.RigidPlate("zmax", force=(0.0, 0.0, -100.0), name="plate"))
    be = get_backend("numpy")
    K = to_matrix(*assemble_stiffness(m, be), be)
    A = analysis.constrain(m, system.compile_conditions(m), K, be).K.tocsc()
    b = np.random.default_rng(0).normal(size=A.shape[0])
    fill = {}
    for threshold in (solvers.DIAG_PIVOT, 1.0):
        monkeypatch.setattr(solvers, "DIAG_PIVOT", threshold)
        lu = solvers.factorise(A)
        fill[threshold] = lu.L.nnz + lu.U.nnz
        x = solvers.factored_solve(lu, b)
        assert np.linalg.norm(A @ x - b) <= 1e-12 * np.linalg.norm(b) * np.abs(A).max()
    assert fill[0.1] < 0.9 * fill[1.0], fill
    monkeypatch.undo()
    n, i = A.shape[0], 5
    c = sp.csc_matrix(([1.0], ([i], [0])), shape=(n, 1))
    saddle = sp.bmat([[A, c], [c.T, None]], format="csc")  # its last diagonal entry is zero
    y = solvers.factored_solve(solvers.factorise(saddle), np.append(b, 0.25))
    assert y[i] == pytest.approx(0.25, abs=1e-12)
    assert np.linalg.norm(saddle @ y - np.append(b, 0.25)) <= 1e-12 * np.linalg.norm(b) * \
        np.abs(A).max()


# ------------------------------------------------------------------ nearly incompressible regions


def _two_levels(formulation="auto"):
    """The parametric L4-L5 at 4 mm under the standing plate: a disc nucleus at nu 0.499 between
    two vertebrae, a rigid plate and a fixed base (a few seconds)."""
    from fem.meshes import loadcases
    from fem.meshes.vertebra import segment_model

    m = segment_model("L4-L5", voxel_size=4.0)
    m.hex8_formulation = formulation
    return loadcases.loaded(m, "standing")


def _constrained(m):
    """(backend, system, constrained stiffness) of m, as fem.solve builds them."""
    from fem import assembly, system
    from fem.kernels.backend import get_backend

    be = get_backend("numpy")
    sysm = system.compile_conditions(m)
    K = assembly.to_matrix(*assembly.assemble_stiffness(m, be), be)
    return be, sysm, analysis.constrain(m, sysm, K, be)


def test_the_stand_in_is_k_with_the_nuclei_lambda_lowered_and_nothing_else():
    """K - dK (:func:`fem.analysis.incompressible_parts`) against the constrained stiffness of
    an independently built model whose nuclei have the same shear modulus and lambda =
    STAND_IN_RATIO mu. B-bar everywhere, so that both models use one hex8 formulation (with
    "auto" the stand-in's nu would switch its nuclei to full integration)."""
    m = _two_levels("bbar")
    be, sysm, lin = _constrained(m)
    dK, blocks = analysis.incompressible_parts(m, sysm, lin.T, lin.K.shape[0])
    stand_in = m
    r = analysis.STAND_IN_RATIO
    nu_s = r / (2.0 * (r + 1.0))
    nuclei = [k for k in m.regions if k.endswith("/nucleus")]
    assert nuclei
    for k in nuclei:
        el = m.regions[k]
        mu = np.asarray(m.E)[el] / (2.0 * (1.0 + np.asarray(m.nu)[el]))
        stand_in = stand_in.set_material(el, E=2.0 * mu * (1.0 + nu_s), nu=nu_s)
    _, _, lin_s = _constrained(stand_in)
    keep = ~analysis.eliminated(m, sysm, lin.K.shape[0])
    import scipy.sparse as sp

    D = sp.diags(keep.astype(float))
    diff = (D @ (lin.K.tocsr() - dK - lin_s.K.tocsr()) @ D).tocsr()
    scale = np.abs(lin_s.K.data).max()
    tol = 1e-12 * scale
    assert np.abs(diff.data).max(initial=0.0) < tol
    assert np.abs(dK.data).max() > 1e3 * tol  # so that K itself would fail the check
    # one block per nucleus: disjoint, every dof of its nodes that the constraints keep
    assert len(blocks) == len(nuclei)
    conn = m.blocks[0].conn
    for k in nuclei:
        nodes = np.unique(conn[m.regions[k]])
        dofs = (3 * nodes[:, None] + np.arange(3)).ravel()
        assert any(np.array_equal(np.sort(b), dofs[keep[dofs]]) for b in blocks), k


def test_without_nearly_incompressible_elements_the_plain_amg_is_kept():
    m = _block(6)
    be, sysm, lin = _constrained(m)
    assert analysis.incompressible_parts(m, sysm, lin.T, lin.K.shape[0]) is None
    from fem.solvers import rigid_body_modes

    M = analysis.amg_preconditioner(lin.K, rigid_body_modes(m.points), be, model=m, sysm=sysm,
                                    T=lin.T)
    assert isinstance(M, SmoothedAggregationAMG)


def test_block_elimination_is_exact_with_an_exact_inner_solve():
    """With K's exact inverse in place of the stand-in's AMG, the preconditioner's block
    factorisation (eliminate U exactly, R through M's R rows and columns) must be K^-1 itself:
    a wrong sign or a missed coupling in any of its three steps fails this."""
    import scipy.sparse.linalg as sla

    from fem.amg import IncompressibleBlocks

    m = _two_levels()
    be, sysm, lin = _constrained(m)
    _, blocks = analysis.incompressible_parts(m, sysm, lin.T, lin.K.shape[0])
    lu = sla.splu(lin.K.tocsc())

    class Exact:
        matvec = staticmethod(lu.solve)

    P = IncompressibleBlocks(Exact(), lin.K, blocks)
    r = np.random.default_rng(1).standard_normal(lin.K.shape[0])
    x = lu.solve(r)
    # (K^-1)_RR is the inverse of the Schur complement on R, so P is K^-1 exactly
    assert np.abs(P.matvec(r) - x).max() < 1e-9 * np.abs(x).max()
    assert P.U.size and P.U.size < 0.5 * lin.K.shape[0]


def test_the_incompressible_preconditioner_is_symmetric_and_cuts_the_iterations():
    """On L1-L3 at 3 mm (three nuclei at nu 0.499, a rigid plate): P is symmetric, CG with it
    reaches the direct answer, and in well under the plain AMG's iterations (98 -> 37 when
    written; bench/amg_segments.py)."""
    import math

    from fem.meshes import loadcases
    from fem.meshes.vertebra import segment_model

    m = loadcases.loaded(segment_model("L1-L3", voxel_size=3.0), "standing")
    ref = fem.solve(m, solver="direct")
    res = fem.solve(m, solver="amg", rtol=1e-10)
    scale = np.abs(ref.displacement).max()
    assert np.abs(res.displacement - ref.displacement).max() < 1e-7 * scale
    old = analysis.INCOMPRESSIBLE_RATIO
    analysis.INCOMPRESSIBLE_RATIO = math.inf
    try:
        plain = fem.solve(m, solver="amg", rtol=1e-10)
    finally:
        analysis.INCOMPRESSIBLE_RATIO = old
    assert res.info.iterations <= 0.6 * plain.info.iterations, (res.info.iterations,
                                                                plain.info.iterations)
    from fem.solvers import rigid_body_modes

    be, sysm, lin = _constrained(m)
    P = analysis.amg_preconditioner(lin.K, rigid_body_modes(m.points, np, [
        p.reference for p in sysm.plates]), be, model=m, sysm=sysm, T=lin.T)
    assert "nearly incompressible" in P.describe()
    a, b = np.random.default_rng(2).standard_normal((2, lin.K.shape[0]))
    assert abs(a @ P.matvec(b) - b @ P.matvec(a)) < 1e-10 * abs(a @ P.matvec(b))
