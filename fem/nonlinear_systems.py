"""The linear systems behind a pushover (:mod:`fem.nonlinear`): one secant solve per iteration.

Two implementations with one interface, chosen like :func:`fem.solve` chooses its path:

* :class:`AssembledSystem` (tet4, tet10, hex8, rigid plates): the sparsity pattern, the
  constraint elimination and the preconditioner (AMG of the elastic model, or a direct
  factorisation below 5 000 equations) are built once; each iteration reassembles ``E_e x Ke`` on
  the same pattern and warm-starts CG from the last solution.
* :class:`VoxelSystem` (a regular voxel grid, no rigid plates): the matrix-free multigrid of
  :mod:`fem.gmg` is built once on the intact moduli; each iteration swaps the fine grid's moduli
  (:meth:`fem.gmg.VoxelSolver.set_moduli`) and warm-starts CG. Everything stays on the backend
  (a GPU with CuPy); the damage state lives on the grid.

Both scale the reference problem (the model's loads and prescribed displacements, load factor 1)
and report the controlled displacement and its conjugate force (module docstring of
:mod:`fem.nonlinear`).
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np

from . import analysis, assembly
from . import grid as fem_grid
from . import system as _system
from .errors import BoundaryConditionError, SolverError
from .kernels import elastic
from .kernels.backend import BackendError, get_backend
from .nonlinear import NONLOCAL_TRUNCATE, model_with_moduli, normalised_strain, secant_ratio
from .nonlinear_result import Step
from .parallel import map_ordered
from .result import Result
from .solvers import SolveInfo, cg, direct, rigid_body_modes

CONTROLS = ("auto", "load", "displacement")


def make_system(model, law, *, backend, solver, rtol, control):
    """The system for ``model``: voxel grids without plates take the matrix-free path.

    ``control``: "auto", "load", "displacement" (module docstring of :mod:`fem.nonlinear`) or a
    pair of node set names (upper, lower): the controlled displacement is then the mean
    displacement of the upper set minus that of the lower one along the load's direction (the
    shortening of what lies between them, e.g. one level of a segment), the force the load's."""
    sets = None
    if isinstance(control, (tuple, list)):
        if len(control) != 2 or not all(isinstance(c, str) for c in control):
            raise SolverError(f"control as node sets must be two set names, got {control!r}")
        sets = tuple(control)
        control = "load"
    if control not in CONTROLS:
        raise SolverError(f"control must be one of {', '.join(CONTROLS)} or two node set "
                          f"names, got {control!r}")
    if solver not in analysis.SOLVERS:
        raise SolverError(f"unknown solver {solver!r}: choose one of "
                          f"{', '.join(analysis.SOLVERS)}")
    try:
        be = get_backend(backend)
    except BackendError as exc:
        raise SolverError(str(exc)) from None
    model.check_materials()
    # the damage law scales an isotropic modulus: an orthotropic element may take part only
    # as an elastic one (a rig's slip layer, fem.meshes.rigs), whose stiffness never changes
    ortho = model.orthotropic_mask()
    if ortho.any() and law.n_elements == len(ortho):
        bad = np.nonzero(ortho & ~law.elastic)[0]
        if len(bad):
            raise SolverError(
                f"the damage law is isotropic: element {int(model.element_ids[bad[0]])} is "
                f"orthotropic and can yield ({len(bad)} such elements); give them infinite "
                "yield strains (elastic) or an isotropic material")
    sysm = _system.compile_conditions(model)
    _system.check_constraints(model, sysm)
    grid = None
    if solver in ("auto", "gmg") and not sysm.plates and 3 * model.n_nodes > \
            analysis.DIRECT_MAX_DOF or solver == "gmg":
        grid = model.metadata.get("voxel_grid")
        why = ""
        if grid is None:
            grid, why = fem_grid.grid_of(model)
        if sysm.plates:
            grid, why = None, "it has rigid plates"
        if grid is None and solver == "gmg":
            raise SolverError(f"solver 'gmg' needs a hex8 voxel grid without rigid plates: {why}")
    if grid is not None:
        sysx = VoxelSystem(model, law, sysm, grid, be, rtol=rtol, control=control)
    else:
        sysx = AssembledSystem(model, law, sysm, be, solver=solver, rtol=rtol, control=control)
    if sets is not None:
        sysx.set_control_sets(*sets)
    return sysx


def _control_mode(sysm, control: str) -> str:
    prescribed = np.asarray(sysm.fixed_values)
    moving = bool(len(prescribed)) and bool(np.any(prescribed != 0.0))
    if control == "auto":
        return "displacement" if moving else "load"
    if control == "displacement" and not moving:
        raise BoundaryConditionError("control='displacement' needs a non-zero prescribed "
                                     "displacement (a Displacement condition, the platen)")
    return control


def _resultant(model, sysm) -> tuple[float, str]:
    """|F0| (N) of the reference loads, or |M0| (N mm) for a pure moment."""
    n3 = 3 * model.n_nodes
    f = np.asarray(sysm.f)
    F = f[:n3].reshape(-1, 3).sum(axis=0)
    M = np.zeros(3)
    for p in sysm.plates:
        F = F + f[p.first_dof:p.first_dof + 3]
        M = M + f[p.first_dof + 3:p.first_dof + 6]
    if np.linalg.norm(F) > 0:
        return float(np.linalg.norm(F)), "displacement along the load (mm)"
    if np.linalg.norm(M) > 0:
        return float(np.linalg.norm(M)), "rotation about the moment (rad)"
    raise BoundaryConditionError("the model has no load and no non-zero prescribed displacement:"
                                 " a pushover needs one of them to scale")


def law_groups(eps_c, eps_t, layer=None) -> np.ndarray:
    """Per element, the index of its pair of yield strains among the elements that can yield
    (-1 for elastic ones): the nonlocal average runs within a group only, so that cement and
    bone, whose strains mean different things, do not mix. ``layer``: a mask of thin-layer
    elements (:attr:`fem.nonlinear.DamageLaw.layer`), whose in-plane measure forms groups of
    its own."""
    eps_c, eps_t = np.asarray(eps_c, dtype=float), np.asarray(eps_t, dtype=float)
    can = np.isfinite(eps_c) | np.isfinite(eps_t)
    gid = np.full(eps_c.shape, -1, dtype=np.int64)
    if can.any():
        cols = [np.where(np.isfinite(eps_c), eps_c, -1.0),
                np.where(np.isfinite(eps_t), eps_t, -1.0)]
        if layer is not None:
            cols.append(np.broadcast_to(np.asarray(layer, dtype=float), eps_c.shape))
        keys = np.stack(cols, axis=-1)[can]
        gid[can] = np.unique(keys, axis=0, return_inverse=True)[1].ravel()
    return gid


def _layer_rows(law, rows, xp, index=None):
    """(where they sit in the measured array, their unit normals) of the thin-layer elements
    (:attr:`fem.nonlinear.DamageLaw.layer`) among ``rows`` of ``law``, on the backend; None
    without any. ``index``:
    the place of each of ``rows`` in the measured array (default: its position among them; a
    grid's cell of each element). Only these take the in-plane measure: most elements are
    bulk."""
    if law.layer_normal is None:
        return None
    at = np.nonzero(law.layer[rows])[0]
    if not len(at):
        return None
    n = np.asarray(law.layer_normal)[rows][at]
    return xp.asarray(at if index is None else np.asarray(index)[at]), xp.asarray(n)


def _measure(strain, eps_c, eps_t, layer):
    """The normalised strain of elements (:func:`fem.nonlinear.normalised_strain`), in-plane at
    the thin-layer positions of ``layer`` (:func:`_layer_rows`)."""
    r = normalised_strain(strain, eps_c, eps_t)
    if layer is not None:
        at, n = layer
        r[at] = normalised_strain(strain[at], eps_c[at], eps_t[at], n)
    return r


class GridAverage:
    """The nonlocal average (:mod:`fem.nonlinear`) of an element field on a voxel grid (array
    shape (nz, ny, nx), spacing (hx, hy, hz) mm): a separable Gaussian of standard deviation
    ``length`` per group of :func:`law_groups`, normalised by the same filter of the group's
    mask (so a boundary element averages over its group's elements only)."""

    def __init__(self, groups, spacing, length: float, xp):
        if xp is np:
            from scipy import ndimage
        else:  # pragma: no cover - needs a GPU
            from cupyx.scipy import ndimage
        self.xp, self.ndimage = xp, ndimage
        hx, hy, hz = (float(v) for v in spacing)
        self.sigma = (length / hz, length / hy, length / hx)
        self.masks = []
        for g in range(int(groups.max()) + 1):
            mask = xp.asarray((groups == g).astype(np.float64))
            den = self._filter(mask)
            self.masks.append((mask > 0, mask, xp.maximum(den, 1e-300)))

    def _filter(self, a):
        return self.ndimage.gaussian_filter(a, self.sigma, mode="constant", cval=0.0,
                                            truncate=NONLOCAL_TRUNCATE)

    def __call__(self, r):
        out = r
        for sel, mask, den in self.masks:
            out = self.xp.where(sel, self._filter(r * mask) / den, out)
        return out


def element_average_matrix(model, groups, length: float):
    """The nonlocal average (:mod:`fem.nonlinear`) of an element field of an assembled mesh as a
    sparse row-stochastic matrix W (host CSR): ``W[i, j]`` proportional to ``V_j exp(-d_ij^2 /
    (2 length^2))`` for elements of i's group within ``NONLOCAL_TRUNCATE`` x length of its
    centroid along each axis (a box, as the grid's separable filter; distance d between
    centroids); the rows of elastic elements are the identity."""
    import scipy.sparse as sp
    from scipy.spatial import cKDTree

    cent = assembly.element_centroids(model)
    vol = assembly.element_volumes(model)
    n = len(vol)
    can = np.nonzero(groups >= 0)[0]
    elastic = np.nonzero(groups < 0)[0]
    tree = cKDTree(cent[can])
    cut = NONLOCAL_TRUNCATE * length * (1.0 + 1e-9)
    pairs = tree.query_pairs(np.sqrt(3.0) * cut, output_type="ndarray")
    i, j = can[pairs[:, 0]], can[pairs[:, 1]]
    same = (groups[i] == groups[j]) & (np.abs(cent[i] - cent[j]).max(axis=1) <= cut)
    i, j = i[same], j[same]
    d2 = np.sum((cent[i] - cent[j]) ** 2, axis=1)
    w = np.exp(-0.5 * d2 / length ** 2)
    rows = np.concatenate([i, j, can, elastic])
    cols = np.concatenate([j, i, can, elastic])
    vals = np.concatenate([w * vol[j], w * vol[i], vol[can], np.ones(len(elastic))])
    W = sp.csr_matrix((vals, (rows, cols)), shape=(n, n))
    return sp.diags(1.0 / np.asarray(W.sum(axis=1)).ravel()) @ W


class _Base:
    """Shared parts: the law on the backend, the control, the damage fields of a step."""

    def _setup_law(self, law, h, E0):
        xp = self.xp
        self.E0 = xp.asarray(E0, dtype=xp.float64)
        self.eps_c = xp.asarray(law.yield_strain_compression)
        self.eps_t = xp.asarray(law.yield_strain_tension)
        self.rho = xp.asarray(law.residual)
        self.ks = xp.asarray(law.kappa_s(h))
        self.kappa0 = xp.asarray(law.kappa0)
        self.can_yield = xp.isfinite(self.eps_c) | xp.isfinite(self.eps_t)

    def moduli(self, kappa):
        return self.E0 * secant_ratio(kappa, self.ks, self.rho)

    def _set_weights(self, upper: str, lower: str):
        """Per-node weights (n_nodes, 3) of the deformation between two node sets that is
        work-conjugate to the load carried through them, per unit of its force: with the load's
        resultant F and its moments M_s, M_i about the sets' centroids, and each set's mean
        displacement t and least-squares rotation theta, ``(F . (t_s - t_i) + M_s . theta_s -
        M_i . theta_i) / |F|`` (mm). Under an axial force through the centroids that is the
        shortening along the force; under flexion it adds the relative rotation times the
        moment over the force, so the control grows with the work done on what lies between
        the sets (the mean shortening alone barely moves under a bending moment). All the
        model's loads are taken to pass between the sets (loads above them, supports below)."""
        m = self.model
        if self.mode != "load":
            raise BoundaryConditionError("control by node sets needs the model to be loaded "
                                         "(forces, pressures or a loading plate), not driven "
                                         "by prescribed displacements")
        f = np.asarray(self.sysm.f)
        fn = f[:3 * m.n_nodes].reshape(-1, 3)
        F = fn.sum(axis=0)
        for p in self.sysm.plates:
            F = F + f[p.first_dof:p.first_dof + 3]
        if not np.linalg.norm(F) > 0:
            raise BoundaryConditionError("control by node sets needs a resultant force")

        def moment_about(c):
            M = np.cross(m.points - c, fn).sum(axis=0)
            for p in self.sysm.plates:
                M = M + f[p.first_dof + 3:p.first_dof + 6] + np.cross(
                    p.reference - c, f[p.first_dof:p.first_dof + 3])
            return M

        norm = float(np.linalg.norm(F))
        w = np.zeros((m.n_nodes, 3))
        for name, sign in ((upper, 1.0), (lower, -1.0)):
            nodes = m.nodes_of(name)
            c = m.points[nodes].mean(axis=0)
            r = m.points[nodes] - c
            J = (r * r).sum() * np.eye(3) - r.T @ r
            if np.linalg.cond(J) > 1e12:
                raise BoundaryConditionError(f"node set {name!r} lies on a line: its rotation, "
                                             "and so the control, is undefined")
            a = np.linalg.solve(J, moment_about(c))
            w[nodes] += sign * (F / len(nodes) + np.cross(a, r)) / norm
        self.control_name = (f"deformation between {upper!r} and {lower!r}, work-conjugate to "
                             "the load (mm)")
        return w

    def scale(self, u, lam: float):
        return u * lam

    def _load_carried(self, r, lam) -> float:
        """The load the model carries (N): the loads' resultant, or the platen's reaction along
        its motion. Equilibrium is judged against it: an out-of-balance force (2-norm over the
        dofs) below ``tol`` of the load, whether the load enters at one plate dof or is spread
        over the hundreds of nodes of a platen (where the 2-norm of the reactions alone is about
        load / sqrt(nodes), and a tolerance on it would be that much stricter)."""
        return abs(self._force(r, lam))

    def _force(self, r, lam) -> float:
        """The force (N) conjugate to the controlled displacement at load factor lam: the
        loads' resultant, or the platen's reaction (r: the reactions at the prescribed dofs)."""
        if self.mode == "load":
            return lam * self.F0
        return float(-(self.be.to_host(r) @ self.g0)) / self.gmax

    def _state_fields(self, E_el, kappa_el, E0_el) -> dict:
        h = self.be.to_host
        E_el, kappa_el, E0_el = h(E_el), h(kappa_el), h(E0_el)
        with np.errstate(invalid="ignore", divide="ignore"):
            damage = np.where(E0_el > 0, 1.0 - E_el / E0_el, 0.0)
        return {"damage": damage, "kappa": kappa_el, "failed": (kappa_el > 1.0).astype(np.int8),
                "E_intact": E0_el}


class AssembledSystem(_Base):
    """Secant solves on the assembled stiffness (module docstring)."""

    def __init__(self, model, law, sysm, be, *, solver, rtol, control):
        t = time.perf_counter()
        self.cg_iterations: list[int] = []  # of each CG solve (none with the direct solver)
        self.model, self.sysm, self.be, self.xp = model, sysm, be, be.xp
        self.rtol = rtol
        xp = self.xp
        assembly.check_geometry(model, xp, xp.asarray(model.points))
        self.pattern = assembly.build_pattern(model, xp)
        vol = assembly.element_volumes(model)
        self._setup_law(law, np.cbrt(vol), law.intact_moduli(model.E))
        self._average = None
        groups = law_groups(law.yield_strain_compression, law.yield_strain_tension, law.layer)
        # the strains of the elements that can yield, one sparse product (the others' normalised
        # strain is 0: in a segment whose one level can fail, most of the model)
        self._yielding = np.nonzero(groups >= 0)[0]
        S = element_strain_operator(model, self._yielding)
        self._S = S if xp is np else be.sparse.csr_matrix(S)
        self._sel = xp.asarray(self._yielding)
        self._eps_sel = (self.eps_c[self._sel], self.eps_t[self._sel])
        self._layer = _layer_rows(law, self._yielding, xp)
        if law.nonlocal_length > 0.0:
            W = element_average_matrix(model, groups, law.nonlocal_length)
            if xp is not np:  # pragma: no cover - needs a GPU
                import cupyx.scipy.sparse as csp

                W = csp.csr_matrix(W)
            self._average = W
        self.n_dof = model.n_dof
        self.mode = _control_mode(sysm, control)
        self.g0 = np.asarray(sysm.fixed_values, dtype=float)
        self.fixed = xp.asarray(sysm.fixed_dofs)
        self._lin_E = None
        self._lin = None
        self._lin0 = None
        self.M = None
        self._lu_E = None
        self._change = None  # ChangeMap, built on the first damaged system (False: none)
        lin = self._system(self.E0)
        self.n_eq = lin.n_eq
        self.use_direct = solver == "direct" or (solver == "auto"
                                                 and lin.n_eq <= analysis.DIRECT_MAX_DOF)
        if solver in ("cg", "gmg"):
            self.use_direct = False
        self.solver_name = "direct" if self.use_direct else "amg-cg"
        if not self.use_direct:
            B = rigid_body_modes(model.points, np, [p.reference for p in sysm.plates])
            self.M = analysis.amg_preconditioner(
                lin.K, B, be, model=model_with_moduli(model, be.to_host(self.E0)), sysm=sysm,
                T=lin.T)
        if self.mode == "load":
            self.F0, self.control_name = _resultant(model, sysm)
            self.f_red = lin.f
        else:
            self.gmax = float(np.max(np.abs(self.g0)))
            self.control_name = "prescribed displacement (mm)"
        self.setup_time = time.perf_counter() - t

    def _system(self, E):
        """The constrained system at moduli E: the elastic one plus the change of the elements
        whose modulus differs from E0, so that an iteration costs a sparse product of the few
        damaged elements instead of a reassembly (and keeps the plate coupling T^T K T)."""
        if self._lin_E is E:
            return self._lin
        if self._lin0 is None:
            m = model_with_moduli(self.model, self.be.to_host(self.E0))
            _, data = assembly.assemble_stiffness(m, self.be, self.pattern)
            K = assembly.to_matrix(self.pattern, data, self.be)
            self._lin0 = analysis.constrain(m, self.sysm, K, self.be)
            lin = self._lin0
            self._keep, self._g_full = kept_dofs(self.model, self.sysm, lin.n_eq)
            self._lin, self._lin_E = lin, E
            if E is self.E0:
                return lin
        dE = self.be.to_host(E) - self.be.to_host(self.E0)
        changed = np.nonzero(dE != 0.0)[0]
        if not len(changed):
            self._lin, self._lin_E = self._lin0, E
            return self._lin0
        if self._change is None:
            self._change = ChangeMap.build(self.model, self._yielding, self._lin0, self._keep,
                                           self.sysm, self.be)
        if self._change is not False and np.isin(changed, self._yielding).all():
            pieces = self._change.pieces(dE[self._yielding], self._g_full)
        else:
            pieces = change_pieces(self._delta(changed, dE[changed]), self._keep, self._g_full,
                                   self.sysm.fixed_dofs, self.be)
        self._lin = Perturbed(self._lin0, *pieces, self.be)
        self._lin_E = E
        return self._lin

    def _delta(self, elements, dE):
        """T^T dK T of the stiffness change dK = sum_e dE_e Ke(E=1) (host CSR)."""
        T = self._lin0.T
        if T is not None and self.be.name != "numpy":
            T = self.be.sparse_to_host(T)
        return assembly.stiffness_of(self.model, elements, dE, T=T)

    def solve(self, E, guess):
        lin = self._system(E)
        xp = self.xp
        if self.use_direct:
            z = direct(lin.matrix() if isinstance(lin, Perturbed) else lin.K, lin.rhs)
        else:
            op = lin if isinstance(lin, Perturbed) else self._op0()
            z, its, _ = cg(op, lin.rhs, x0=guess, rtol=self.rtol, M=self.M)
            self.cg_iterations.append(its)
        if len(self.sysm.fixed_dofs):
            z[self.fixed] = xp.asarray(self.g0, dtype=z.dtype)
        return z

    def _op0(self):
        if self.be.name == "numpy":
            from .parallel import RowSplit

            return RowSplit(self._lin0.K)
        return self._lin0.K

    def set_control_sets(self, upper: str, lower: str):
        w = self._set_weights(upper, lower).ravel()
        T = self._lin0.T
        if T is not None:
            w = (self.be.sparse_to_host(T) if self.be.name != "numpy" else T).T @ w
        self._a = self.xp.asarray(w)

    def control_of(self, z) -> float:
        if getattr(self, "_a", None) is not None:
            return float(self.xp.dot(self._a, z))
        if self.mode == "load":
            return float(self.xp.dot(self.f_red, z)) / self.F0
        g = self.be.to_host(z[self.fixed])
        return float(g @ self.g0) / float(self.g0 @ self.g0) * self.gmax

    def _displacement(self, z):
        lin = self._lin
        n3 = 3 * self.model.n_nodes
        return (lin.T @ z if lin.T is not None else z)[:n3].reshape(-1, 3)

    def measure(self, z):
        xp = self.xp
        strain = (self._S @ self._displacement(z).reshape(-1)).reshape(-1, 6)
        r = xp.zeros(self.model.n_elements)
        r[self._sel] = _measure(strain, *self._eps_sel, self._layer)
        return r if self._average is None else self._average @ r

    def _reactions(self, lin, z, lam):
        if not len(self.sysm.fixed_dofs):
            return self.xp.zeros(0)
        return lin.K_rows @ z - lam * lin.f[self.fixed]

    def residual(self, E_new, z, lam) -> float:
        lin = self._system(E_new)
        xp = self.xp
        R = lin.K @ z - lam * lin.rhs
        r = self._reactions(lin, z, lam)
        scale = max(self._load_carried(r, lam), float(xp.linalg.norm(lam * lin.f)),
                    float(xp.linalg.norm(r)))
        return float(xp.linalg.norm(R)) / max(scale, 1e-300)

    def step(self, index, z, lam, E, kappa, *, iterations, residual, linear_solves) -> Step:
        lin = self._system(E)
        E_h = self.be.to_host(E)
        m = model_with_moduli(self.model, E_h)
        sysm = dataclasses.replace(self.sysm, f=lam * np.asarray(self.sysm.f),
                                   fixed_values=lam * self.g0)
        info = SolveInfo(solver=self.solver_name, backend=self.be.name, n_dof=self.n_dof,
                         n_equations=self.n_eq, residual=residual, iterations=iterations)
        r = self._reactions(lin, z, lam)
        result = Result(m, self._displacement(z), backend=self.be, system=sysm,
                        reaction_dofs=self.sysm.fixed_dofs, reaction_values=r,
                        plate_dofs=z[3 * self.model.n_nodes:] if lin.T is not None else None,
                        info=info)
        result.extra_cell_fields = self._state_fields(E, kappa, self.E0)
        control = self.control_of(z)
        return Step(index, lam, abs(control), abs(self._force(r, lam)), iterations, residual,
                    result, int(result.extra_cell_fields["failed"].sum()), linear_solves)


def kept_dofs(model, sysm, n_eq: int):
    """(keep, g) of a constrained system of n_eq equations: keep is False on the dofs
    :func:`fem.analysis.constrain` eliminated (the prescribed ones, and the plates' coupled and
    unused ones), g the prescribed values in the same numbering (0 elsewhere): what
    :func:`change_pieces` takes."""
    g = np.zeros(n_eq)
    g[np.asarray(sysm.fixed_dofs, dtype=np.int64)] = sysm.fixed_values
    return ~analysis.eliminated(model, sysm, n_eq), g


def change_pieces(dK, keep, g_full, fixed, be):
    """What :class:`Perturbed` needs of a change dK (host CSR, constrained dof space): D dK D
    (D zeroing the eliminated dofs), the rows of the prescribed dofs and D dK g (g: the
    prescribed values at load factor 1), on the backend."""
    import scipy.sparse as sp

    Dk = sp.diags(keep.astype(float))
    dKc = (Dk @ dK @ Dk).tocsr()
    rows = dK[np.asarray(fixed, dtype=np.int64)] if len(fixed) else None
    dKg = keep * (dK @ g_full)
    if be.name != "numpy":
        dKc = be.sparse.csr_matrix(dKc)
        if rows is not None:
            rows = be.sparse.csr_matrix(rows)
    return dKc, rows, be.xp.asarray(dKg)


class ChangeMap:
    """The stiffness change of the elements that can yield as a linear map of their moduli
    changes: ``dK = sum_e dE_e Ke(E=1)`` on a pattern fixed once, its values one sparse
    product ``C @ dE`` (on the backend) instead of a reassembly at every secant iteration.
    Only where no such element touches a rigid plate's coupled node (then T is the identity on
    their dofs); otherwise :meth:`build` returns False and the reassembly stays."""

    @classmethod
    def build(cls, model, elements, lin0, keep, sysm, be):
        import scipy.sparse as sp

        if len(elements) == 0:
            return False
        slave = np.zeros(model.n_nodes, dtype=bool)
        for p in sysm.plates:
            slave[p.nodes] = True
        n = lin0.K.shape[0]
        rows, cols, vals, owner = [], [], [], []
        for part, conn, r, c, v in assembly.stiffness_triplets(model, elements,
                                                                     np.ones(len(elements))):
            if slave[conn].any():
                return False
            rows.append(r)
            cols.append(c)
            vals.append(v)
            owner.append(np.repeat(part, len(v) // len(part)))
        rows, cols = np.concatenate(rows), np.concatenate(cols)
        key, slot = np.unique(rows * n + cols, return_inverse=True)
        self = cls()
        C = sp.csr_matrix((np.concatenate(vals), (slot, np.concatenate(owner))),
                          shape=(len(key), len(elements)))
        prow, self.pcol = np.divmod(key, n)
        self.indptr = np.concatenate([[0], np.cumsum(np.bincount(prow, minlength=n))])
        self.n = n
        kept = keep[prow] & keep[self.pcol]
        fixed = np.asarray(sysm.fixed_dofs, dtype=np.int64)
        at = np.full(n, -1)
        at[fixed] = np.arange(len(fixed))
        in_rows = np.nonzero(at[prow] >= 0)[0]
        in_rows = in_rows[np.argsort(at[prow[in_rows]], kind="stable")]  # in fixed_dofs' order
        self.rows_shape = (len(fixed), n)
        self.rows_pos = in_rows
        self.rows_indptr = np.concatenate(
            [[0], np.cumsum(np.bincount(at[prow[in_rows]], minlength=len(fixed)))])
        self.be = be
        xp = be.xp
        if be.name != "numpy":
            C = be.sparse.csr_matrix(C)
        self.C, self.kept = C, xp.asarray(kept.astype(float))
        self.keep = xp.asarray(keep.astype(float))
        for name in ("pcol", "indptr", "rows_pos", "rows_indptr"):
            setattr(self, name, xp.asarray(getattr(self, name)))
        self.rows_col = self.pcol[self.rows_pos]
        return self

    def pieces(self, dE, g_full):
        """:func:`change_pieces` of the change dE (host, per element of the map)."""
        be, xp = self.be, self.be.xp
        if be.name == "numpy":
            import scipy.sparse as sparse
        else:
            sparse = be.sparse
        data = self.C @ xp.asarray(dE)
        dK = sparse.csr_matrix((data, self.pcol, self.indptr), shape=(self.n, self.n))
        dKc = sparse.csr_matrix((data * self.kept, self.pcol, self.indptr),
                                shape=(self.n, self.n))
        rows = None
        if self.rows_shape[0]:
            rows = sparse.csr_matrix((data[self.rows_pos], self.rows_col, self.rows_indptr),
                                     shape=self.rows_shape)
        return dKc, rows, self.keep * (dK @ xp.asarray(g_full))


class Perturbed:
    """The constrained elastic system plus a change dK (damaged elements): ``K = K0 + D dK D``
    with D zeroing the eliminated dofs (their rows keep K0's scaled identity), the right-hand
    side and the reaction rows corrected alike (:func:`change_pieces`). Acts as CG's operator
    (``matvec``)."""

    def __init__(self, lin0, dKc, dK_rows, dKg, be):
        self.lin0, self.be = lin0, be
        self.dK_rows, self.dKg, self.dKc = dK_rows, dKg, dKc
        self.rhs = lin0.rhs - dKg
        self.f, self.T = lin0.f, lin0.T
        self.n_eq = lin0.n_eq
        if be.name == "numpy":
            from .parallel import RowSplit

            self._K0 = RowSplit(lin0.K)
        else:
            self._K0 = lin0.K

    @property
    def K(self):
        return self

    @property
    def shape(self):
        return self.lin0.K.shape

    def matvec(self, x):
        return self._K0 @ x + self.dKc @ x

    def __matmul__(self, x):
        return self.matvec(x)

    @property
    def K_rows(self):
        return _RowsSum(self.lin0.K_rows, self.dK_rows)

    def matrix(self):
        """K0 + D dK D as one sparse matrix (for the direct solver)."""
        return (self.lin0.K.tocsr() + self.dKc).tocsr()


class _RowsSum:
    def __init__(self, a, b):
        self.a, self.b = a, b

    def __matmul__(self, x):
        return self.a @ x + (self.b @ x if self.b is not None else 0.0)


def element_strains(model, u, xp):
    """Element-average small strains (n_elements, 6) (Voigt, tensor shear) of displacements u
    (n_nodes, 3) on ``xp``, by the stiffness quadrature."""
    from .result import to_voigt

    pts = xp.asarray(model.points)
    bbar_all = xp.asarray(model.bbar_mask())

    def one(item):
        bi, sl = item
        b = model.blocks[bi]
        G, wdet, _ = assembly.element_geometry(model, bi, sl, xp, pts)
        gsl = slice(b.start + sl.start, b.start + sl.stop)
        bbar = bbar_all[gsl] if b.type == "hex8" else None
        eps = elastic.strains(G, wdet, u[xp.asarray(b.conn[sl])], bbar)
        w = wdet / wdet.sum(axis=1)[:, None]
        return to_voigt((eps * w[:, :, None, None]).sum(axis=1), xp)

    work = assembly.chunks(model, xp, per_element=96)
    parts = list(map_ordered(one, work) if xp is np else map(one, work))
    return xp.concatenate(parts)


def element_strain_operator(model, elements):
    """The element-average small strains of ``elements`` as one host CSR matrix S (6 x
    len(elements), 3 x n_nodes): ``(S @ u.ravel()).reshape(-1, 6)`` is
    :func:`element_strains` of those elements (Voigt order of :data:`fem.result.VOIGT`, tensor
    shear). The average over the stiffness quadrature of B equals that of B-bar, so hex8 B-bar
    elements need nothing of their own."""
    import scipy.sparse as sp

    from .result import VOIGT

    elements = np.asarray(elements, dtype=np.int64)
    rows, cols, vals = [], [], []
    for b in model.blocks:
        pos = np.nonzero(b.holds(elements))[0]
        for lo in range(0, len(pos), 20_000):
            part = pos[lo:lo + 20_000]
            conn = b.conn[elements[part] - b.start]
            G, det = elastic.gradients(model.points[conn], b.etype.dN)
            w = det * b.etype.weights
            Gbar = (G * w[:, :, None, None]).sum(axis=1) / w.sum(axis=1)[:, None, None]
            k = conn.shape[1]
            for c, (i, j) in enumerate(VOIGT):
                r = np.repeat(6 * part + c, k)
                for d, coeff in ((i, 0.5 * Gbar[:, :, j]), (j, 0.5 * Gbar[:, :, i])):
                    rows.append(r)
                    cols.append((3 * conn + d).ravel())
                    vals.append(coeff.ravel())
    n = 6 * len(elements)
    if not rows:
        return sp.csr_matrix((n, 3 * model.n_nodes))
    return sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                         shape=(n, 3 * model.n_nodes))


class VoxelSystem(_Base):
    """Secant solves on the matrix-free voxel multigrid (module docstring)."""

    def __init__(self, model, law, sysm, grid, be, *, rtol, control):
        from .gmg import VoxelSolver

        t = time.perf_counter()
        self.cg_iterations: list[int] = []  # of each CG solve
        self.model, self.sysm, self.grid, self.be, self.xp = model, sysm, grid, be, be.xp
        xp = self.xp
        self.rtol = rtol
        self.n_dof = model.n_dof
        self.n_eq = model.n_dof - len(sysm.fixed_dofs)
        self.solver_name = "gmg"
        self.mode = _control_mode(sysm, control)
        gc = fem_grid.grid_conditions(model, grid, sysm)
        self.fd = np.asarray(sysm.fixed_dofs, dtype=np.int64)
        self.fixed_flat = xp.asarray(gc.fixed_flat)
        self.g0 = np.asarray(sysm.fixed_values, dtype=float)
        self.load_index = xp.asarray(gc.load_index)
        self.load_value = xp.asarray(gc.load_value)
        self.f_fixed = xp.asarray(gc.f_fixed)
        E0 = grid.moduli(law.intact_moduli(model.E))  # the hierarchy: undamaged moduli
        self.free = xp.asarray(((gc.bits.ravel() & 7) == 0).astype(np.float64))  # per node
        problem = gc.problem(grid, E0, xp)
        self.solver = VoxelSolver(problem, xp)
        self._E_set = None
        h = float(np.cbrt(np.prod(grid.spacing)))

        def on_grid(a, empty):
            g = np.full(int(np.prod(grid.shape)), empty, dtype=float)
            g[grid.element_index] = a
            nx, ny, nz = grid.shape
            return g.reshape(nz, ny, nx)

        law_g = dataclasses.replace(
            law, yield_strain_compression=on_grid(law.yield_strain_compression, np.inf).ravel(),
            yield_strain_tension=on_grid(law.yield_strain_tension, np.inf).ravel(),
            residual=on_grid(law.residual, 1.0).ravel(),
            softening_strain=on_grid(law.softening_strain, 1.0).ravel(),
            kappa0=on_grid(law.kappa0, 0.0).ravel(), layer_normal=None)
        self._setup_law(law_g, h, E0.ravel())
        self._layer = _layer_rows(law, slice(None), xp, index=grid.element_index)
        self.E0 = xp.reshape(self.E0, E0.shape)
        for name in ("eps_c", "eps_t", "rho", "ks", "kappa0", "can_yield"):
            setattr(self, name, xp.reshape(getattr(self, name), E0.shape))
        self.element_index = xp.asarray(grid.element_index)
        self._average = None
        if law.nonlocal_length > 0.0:
            groups = law_groups(law_g.yield_strain_compression, law_g.yield_strain_tension,
                                on_grid(law.layer, 0.0).ravel())
            self._average = GridAverage(groups.reshape(E0.shape), grid.spacing,
                                        law.nonlocal_length, xp)
        if self.mode == "load":
            self.F0, self.control_name = _resultant(model, sysm)
        else:
            self.gmax = float(np.max(np.abs(self.g0)))
            self.control_name = "prescribed displacement (mm)"
        self.setup_time = time.perf_counter() - t

    def _set(self, E):
        if self._E_set is not E:
            self.solver.set_moduli(E)
            self._E_set = E

    def solve(self, E, guess):
        self._set(E)
        u, info = self.solver.solve(rtol=self.rtol, x0=guess)
        self.cg_iterations.append(info.iterations)
        return u

    def set_control_sets(self, upper: str, lower: str):
        w = self._set_weights(upper, lower)
        nodes = np.nonzero(np.abs(w).sum(axis=1) > 0)[0]
        idx = (3 * self.grid.node_index[nodes][:, None] + np.arange(3)).ravel()
        self._a_index = self.xp.asarray(idx)
        self._a_value = self.xp.asarray(w[nodes].ravel())

    def control_of(self, u) -> float:
        xp = self.xp
        flat = xp.reshape(u, (-1,))
        if getattr(self, "_a_index", None) is not None:
            return float(xp.sum(flat[self._a_index] * self._a_value))
        if self.mode == "load":
            return float(xp.sum(flat[self.load_index] * self.load_value)) / self.F0
        g = self.be.to_host(flat[self.fixed_flat])
        return float(g @ self.g0) / float(self.g0 @ self.g0) * self.gmax

    def measure(self, u):
        r = _measure(grid_strains(u, self.grid.spacing, self.xp), self.eps_c.ravel(),
                     self.eps_t.ravel(), self._layer).reshape(self.E0.shape)
        return r if self._average is None else self._average(r)

    def _Au(self, E, u):
        self._set(E)
        return self.xp.reshape(self.solver.apply(u), (-1,))

    def _reactions(self, Au, lam):
        if not len(self.fd):
            return self.xp.zeros(0)
        return Au[self.fixed_flat] - lam * self.f_fixed

    def residual(self, E_new, u, lam) -> float:
        xp = self.xp
        Au = self._Au(E_new, u)
        R = xp.reshape(Au, (-1, 3)) * self.free[:, None]
        R = xp.reshape(R, (-1,))
        if self.load_index.shape[0]:
            free_at = xp.repeat(self.free, 3)[self.load_index]
            R[self.load_index] -= lam * self.load_value * free_at
        r = self._reactions(Au, lam)
        scale = max(self._load_carried(r, lam), float(xp.linalg.norm(lam * self.load_value)),
                    float(xp.linalg.norm(r)))
        return float(xp.linalg.norm(R)) / max(scale, 1e-300)

    def step(self, index, u, lam, E, kappa, *, iterations, residual, linear_solves) -> Step:
        xp = self.xp
        Au = self._Au(E, u)
        r = self._reactions(Au, lam)
        ei = self.element_index
        E_el = xp.reshape(E, (-1,))[ei]
        m = model_with_moduli(self.model, self.be.to_host(E_el))
        sysm = dataclasses.replace(self.sysm, f=lam * np.asarray(self.sysm.f),
                                   fixed_values=lam * self.g0)
        flat = xp.reshape(u, (-1, 3))
        node_index = xp.asarray(self.grid.node_index)
        un = flat[xp.maximum(node_index, 0)] * xp.asarray(self.grid.node_index >= 0)[:, None]
        info = SolveInfo(solver="gmg", backend=self.be.name, n_dof=self.n_dof,
                         n_equations=self.n_eq, residual=residual, iterations=iterations)
        result = Result(m, un, backend=self.be, system=sysm, reaction_dofs=self.sysm.fixed_dofs,
                        reaction_values=r, info=info)
        result.extra_cell_fields = self._state_fields(
            E_el, xp.reshape(kappa, (-1,))[ei], xp.reshape(self.E0, (-1,))[ei])
        return Step(index, lam, abs(self.control_of(u)), abs(self._force(r, lam)), iterations,
                    residual, result,
                    int(result.extra_cell_fields["failed"].sum()), linear_solves)


def grid_strains(u, spacing, xp):
    """Volume-average strains (n_voxels, 6) of every voxel of a grid displacement u
    (nz+1, ny+1, nx+1, 3), voxels in flat order i + nx (j + ny k). The average of a trilinear
    field's gradient over a box is the mean of its four edge differences along each axis."""
    hx, hy, hz = spacing

    def avg_kj(d):  # average over the 4 edges: the two other axes' node pairs
        return 0.25 * (d[:-1, :-1] + d[1:, :-1] + d[:-1, 1:] + d[1:, 1:])

    dx = u[:, :, 1:, :] - u[:, :, :-1, :]  # (nz+1, ny+1, nx, 3)
    gx = avg_kj(dx) / hx  # d u_c / dx
    dy = u[:, 1:, :, :] - u[:, :-1, :, :]  # (nz+1, ny, nx+1, 3)
    gy = 0.25 * (dy[:-1, :, :-1] + dy[1:, :, :-1] + dy[:-1, :, 1:] + dy[1:, :, 1:]) / hy
    dz = u[1:, :, :, :] - u[:-1, :, :, :]  # (nz, ny+1, nx+1, 3)
    gz = 0.25 * (dz[:, :-1, :-1] + dz[:, 1:, :-1] + dz[:, :-1, 1:] + dz[:, 1:, 1:]) / hz
    n = gx.shape[0] * gx.shape[1] * gx.shape[2]
    gx, gy, gz = (xp.reshape(g, (n, 3)) for g in (gx, gy, gz))
    # Voigt xx, yy, zz, xy, yz, xz (tensor shear)
    return xp.stack([gx[:, 0], gy[:, 1], gz[:, 2], 0.5 * (gy[:, 0] + gx[:, 1]),
                     0.5 * (gz[:, 1] + gy[:, 2]), 0.5 * (gz[:, 0] + gx[:, 2])], axis=1)


__all__ = ["AssembledSystem", "VoxelSystem", "make_system", "element_strains",
           "element_strain_operator", "grid_strains"]
