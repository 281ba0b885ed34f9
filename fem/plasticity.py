"""Von Mises plasticity with linear isotropic hardening, small strain, on the assembled path.

``solve_plastic(model)`` follows the model's loads and prescribed displacements, scaled by a load
factor that grows from 0 to 1 over the step time (CalculiX ``*STATIC`` semantics), and returns a
:class:`~fem.nonlinear_result.NonlinearResult` with one :class:`PlasticResult` per converged
increment. Units: mm, N, MPa.

The material
------------
Elements with plastic data (:meth:`fem.Model.set_plastic`, ``*PLASTIC`` in a deck) are
elastic-plastic: isotropic elasticity (E, nu), the von Mises yield function

    f = ||s|| - sqrt(2/3) (sigma_y + H alpha)

(s the stress deviator, alpha the equivalent plastic strain PEEQ, H the hardening modulus: the
slope of the uniaxial stress against the plastic strain, so the elasto-plastic tangent of a bar
is E H / (E + H)), associative flow and linear isotropic hardening. Every other element stays
linear elastic (isotropic or orthotropic). Strains are small (no geometric nonlinearity, like a
CalculiX step without NLGEOM). Unloading is elastic: a point whose trial stress lies inside the
yield surface keeps its plastic strain, and its yield surface stays where the hardening brought
it (reverse yield of a bar starts at -(sigma_y + H alpha), no Bauschinger effect).

The stress update is the radial return of Simo & Hughes (1998), Computational Inelasticity,
box 3.1, and the tangent its consistent (algorithmic) linearisation, box 3.2:

    C = kappa 1 (x) 1 + 2 mu theta (I - 1/3 1 (x) 1) - 2 mu theta_bar n (x) n,
    theta = 1 - 2 mu dgamma / ||s_trial||,  theta_bar = 1 / (1 + H / (3 mu)) - (1 - theta),

which makes Newton's method converge quadratically. Both are vectorised over elements and
integration points (hex8 2x2x2 as CalculiX's C3D8, B-bar hex8 where the model uses it, tet4 one
point, tet10 four points); the tangent is assembled in 3x3 blocks on the pattern of
:mod:`fem.assembly`, and constraints and rigid plates are eliminated as :func:`fem.solve` does
(:func:`fem.analysis.constrain`).

Increments
----------
``increments``: an int n (n equal increments), a sequence of end times (fixed increments, the
last is the step time), a :class:`StaticControl` (initial increment, step time, minimum, maximum,
``direct``), or None: the deck's ``*STATIC`` line (``model.metadata["static"]``) if the model
has one, else 10 equal increments. Automatic increments (``*STATIC`` without ``DIRECT``) grow by
1.5 after an increment that converged within 5 iterations, up to the maximum. An increment that
does not converge within ``max_iterations`` is halved (fixed increments too: the halves are
extra steps, after which the given end times are kept), down to the minimum increment; then
:class:`~fem.ConvergenceError` names the increment and the load factor reached.

Equilibrium: an iteration has converged when the out-of-balance force on the free dofs is below
``tol`` of the force through the model (applied loads plus support reactions) and the last
displacement correction is below ``utol`` of the increment's displacement (an increment whose
residual is at round-off level after one solve, an elastic one, needs no second solve).

Cost: the strain-displacement matrices are kept for the whole analysis (about 9 KB per hex8
element, 11 KB per tet10), each Newton iteration assembles the tangent and factorises it (direct)
or runs CG with the AMG of the first tangent; every step keeps its integration-point fields.
On CuPy the same code runs on the device (checked against NumPy to 1e-15 on an H200), but
small models are faster on the CPU.

A second analysis can continue from the end of a first (``initial=result.final``): loads and
prescribed displacements then go linearly from their values at the end of the first to the
model's, as in a second CalculiX ``*STEP`` (a tension-compression cycle, unloading).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from . import analysis, assembly
from . import system as _system
from .errors import ConvergenceError, MaterialError, SolverError, format_labels
from .kernels import elastic
from .kernels.backend import BackendError, get_backend, scatter_add
from .model import Model
from .nonlinear_result import NonlinearResult, Step
from .result import Result
from .solvers import SolveInfo, cg, direct, rigid_body_modes

logger = logging.getLogger(__name__)

SIMO_HUGHES_1998 = ("Simo JC, Hughes TJR (1998) Computational Inelasticity. Springer, New York. "
                    "Box 3.1 (radial return) and box 3.2 (consistent elastoplastic tangent)")

#: Voigt vector of the identity (tensor components xx, yy, zz, xy, yz, xz)
_ONE = (1.0, 1.0, 1.0, 0.0, 0.0, 0.0)
#: an increment whose relative residual is below this after its first solve was linear
LINEAR_RESIDUAL = 1e-10
#: automatic increments grow after an increment that converged within this many iterations
EASY_ITERATIONS = 5
GROW = 1.5


@dataclass(frozen=True)
class StaticControl:
    """Increment control of a static step, as CalculiX's ``*STATIC`` data line: ``initial``
    increment, step time ``total``, ``minimum`` and ``maximum`` increments (defaults: the
    smaller of the initial increment and 1e-5 of the step time; the step time). ``direct``:
    fixed increments of ``initial`` (``*STATIC, DIRECT``)."""

    initial: float = 1.0
    total: float = 1.0
    minimum: float | None = None
    maximum: float | None = None
    direct: bool = False

    def __post_init__(self):
        for name in ("initial", "total", "minimum", "maximum"):
            v = getattr(self, name)
            if v is None and name in ("minimum", "maximum"):
                continue
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise SolverError(f"*STATIC {name} increment/time must be a number > 0, got {v!r}")
        if self.initial > self.total * (1 + 1e-12):
            raise SolverError(f"*STATIC initial increment {self.initial:g} exceeds the step time "
                              f"{self.total:g}")
        if self.minimum is not None and self.maximum is not None and self.minimum > self.maximum:
            raise SolverError(f"*STATIC minimum increment {self.minimum:g} exceeds the maximum "
                              f"{self.maximum:g}")

    @property
    def min_increment(self) -> float:
        return self.minimum if self.minimum is not None else min(self.initial, 1e-5 * self.total)

    @property
    def max_increment(self) -> float:
        return min(self.maximum, self.total) if self.maximum is not None else self.total

    def end_times(self) -> tuple | None:
        """The fixed end times of ``direct`` increments (None for automatic ones)."""
        if not self.direct:
            return None
        n = max(1, math.ceil(self.total / self.initial - 1e-9))
        return tuple(min(self.total, (k + 1) * self.initial) for k in range(n))


def increment_control(model: Model, increments=None) -> tuple[StaticControl, tuple | None]:
    """(control, fixed end times or None) from ``increments`` (module docstring)."""
    if increments is None:
        increments = model.metadata.get("static")
        if increments is None:
            increments = 10
    if isinstance(increments, dict):
        increments = StaticControl(**increments)
    if isinstance(increments, StaticControl):
        return increments, increments.end_times()
    if isinstance(increments, (int, np.integer)) and not isinstance(increments, bool):
        n = int(increments)
        if n < 1:
            raise SolverError(f"increments must be >= 1, got {n}")
        return StaticControl(1.0 / n, 1.0, direct=True), tuple((k + 1) / n for k in range(n))
    try:
        times = [float(t) for t in increments]
    except (TypeError, ValueError):
        raise SolverError("increments must be an int, a sequence of end times, a StaticControl "
                          f"or None, got {increments!r}") from None
    if not times or not all(math.isfinite(t) for t in times) or times[0] <= 0 or any(
            b <= a for a, b in zip(times, times[1:])):
        raise SolverError(f"increment end times must be finite, > 0 and increasing, got {times}")
    return StaticControl(times[0], times[-1], direct=True), tuple(times)


# ------------------------------------------------------------------------------ the material


def radial_return(eps, ep_n, alpha_n, kappa, mu, sy, H):
    """Stress update of von Mises plasticity with linear isotropic hardening (Simo & Hughes
    1998, box 3.1), vectorised over any leading shape.

    eps, ep_n: total and plastic strain (..., 6) (tensor components, Voigt xx, yy, zz, xy, yz,
    xz); alpha_n: equivalent plastic strain (...); kappa, mu, sy, H: bulk and shear moduli,
    yield stress and hardening modulus broadcastable to (...) (sy = inf: elastic). Returns
    (stress (..., 6), plastic strain, alpha, dgamma, n (..., 6) the unit flow direction,
    ||s_trial||).
    """
    xp = _xp(eps)
    one = xp.asarray(_ONE, dtype=eps.dtype)
    ee = eps - ep_n
    tr = ee[..., 0] + ee[..., 1] + ee[..., 2]
    s = 2.0 * mu[..., None] * (ee - (tr / 3.0)[..., None] * one)
    norm = xp.sqrt(s[..., 0] ** 2 + s[..., 1] ** 2 + s[..., 2] ** 2
                   + 2.0 * (s[..., 3] ** 2 + s[..., 4] ** 2 + s[..., 5] ** 2))
    f = norm - math.sqrt(2.0 / 3.0) * (sy + H * alpha_n)
    dgamma = xp.where(f > 0.0, f / (2.0 * mu + (2.0 / 3.0) * H), 0.0)
    n = s / xp.where(norm > 0.0, norm, 1.0)[..., None]
    sig = (kappa * tr)[..., None] * one + s - (2.0 * mu * dgamma)[..., None] * n
    ep = ep_n + dgamma[..., None] * n
    alpha = alpha_n + math.sqrt(2.0 / 3.0) * dgamma
    return sig, ep, alpha, dgamma, n, norm


def consistent_tangent(kappa, mu, H, dgamma, n, norm):
    """The algorithmic tangent (Simo & Hughes 1998, box 3.2) as a Voigt matrix (..., 6, 6)
    acting on engineering shear strains; the elastic stiffness where ``dgamma`` is 0."""
    xp = _xp(n)
    one = xp.asarray(_ONE, dtype=n.dtype)
    half = xp.asarray((1.0, 1.0, 1.0, 0.5, 0.5, 0.5), dtype=n.dtype)
    plastic = dgamma > 0.0
    theta = xp.where(plastic, 1.0 - 2.0 * mu * dgamma / xp.where(norm > 0, norm, 1.0), 1.0)
    theta_bar = xp.where(plastic, 1.0 / (1.0 + H / (3.0 * mu)) - (1.0 - theta), 0.0)
    mm = one[:, None] * one[None, :]
    C = (kappa - 2.0 * mu * theta / 3.0)[..., None, None] * mm
    C = C + (2.0 * mu * theta)[..., None, None] * xp.diag(half)
    C = C - (2.0 * mu * theta_bar)[..., None, None] * (n[..., :, None] * n[..., None, :])
    return C


def _xp(a):
    from .kernels.backend import array_module

    return array_module(a)


# ------------------------------------------------------------------------------ element level


def b_matrices(G, wdet, bbar=None):
    """Strain-displacement matrices (m, g, 6, 3k) (engineering shear), with the mean dilatation
    of B-bar hex8 elements where ``bbar`` (m,) is True (as :func:`fem.kernels.elastic.strains`)."""
    return elastic.strain_displacement(G, wdet, bbar)


@dataclass
class _Chunk:
    """Geometry and material of a slice of one cell block (constant: small strain)."""

    block: int
    sl: slice
    gsl: slice  # global element indices
    B: object  # (m, g, 6, 3k)
    wdet: object  # (m, g)
    dofs: object  # (m, 3k) global mesh dofs
    kappa: object  # (m, 1)
    mu: object
    sy: object  # inf for elastic elements
    H: object
    C_ortho: object  # (m_o, 6, 6) or None
    ortho_local: object  # local indices of orthotropic elements or None
    positions: object  # (m, k, k) block positions in the pattern


@dataclass
class PlasticState:
    """The converged state at the end of an increment (backend arrays): unknowns ``z`` (mesh
    dofs, then rigid plates' six), the load vector ``f`` and prescribed values ``g`` reached,
    and per cell block at the integration points: strain, plastic strain (tensor components),
    stress (MPa), equivalent plastic strain, and where the last increment was plastic."""

    z: object
    f: object
    g: object
    strain: list
    plastic_strain: list
    stress: list
    peeq: list
    active: list
    #: the largest force through the model so far (N): the residual's scale
    force_norm: float = 0.0


class PlasticResult(Result):
    """A :class:`~fem.result.Result` of an elasto-plastic state: its stresses and strains (and
    so von Mises, principal values) are the elasto-plastic ones at the integration points, and
    ``extra_cell_fields`` carry ``peeq`` (element mean of the equivalent plastic strain) and
    ``yielded`` (1 where an integration point has plastic strain). ``strain_energy_density`` is
    the recoverable (elastic) part, 1/2 sigma : (eps - eps_p)."""

    def __init__(self, model, displacement, *, state: PlasticState, load_factor: float,
                 residuals=(), **kwargs):
        super().__init__(model, displacement, **kwargs)
        self.state = state
        self.load_factor = load_factor
        #: relative residuals of the increment's equilibrium iterations
        self.residuals = list(residuals)
        h = self.backend.to_host
        peeq = np.concatenate([h(a).mean(axis=1) for a in state.peeq])
        self.extra_cell_fields = {"peeq": peeq,
                                  "yielded": np.concatenate(
                                      [(h(a) > 0).any(axis=1) for a in state.peeq]).astype(np.int8)}

    @cached_property
    def _ip(self):
        return [(e, s, w) for e, s, w in zip(self.state.strain, self.state.stress, self._wdet)]

    @cached_property
    def _wdet(self):
        xp = self.xp
        pts = xp.asarray(self.model.points)
        return [assembly.element_geometry(self.model, bi, slice(0, len(b.conn)), xp, pts)[1]
                for bi, b in enumerate(self.model.blocks)]

    def integration_point_peeq(self) -> list:
        """Equivalent plastic strain at the integration points, one (m, g) array per cell block."""
        return list(self.state.peeq)

    def integration_point_plastic_strain(self) -> list:
        """Plastic strain (tensor components) at the integration points, (m, g, 6) per block."""
        return list(self.state.plastic_strain)

    @cached_property
    def peeq(self):
        """Element mean of the equivalent plastic strain (n_elements,) on the host."""
        return self.extra_cell_fields["peeq"]

    @cached_property
    def strain_energy_density(self):
        xp = self.xp
        out = []
        for e, ep, s in zip(self.state.strain, self.state.plastic_strain, self.state.stress):
            ee = e - ep
            w = 0.5 * ((s[..., :3] * ee[..., :3]).sum(-1)
                       + 2.0 * (s[..., 3:] * ee[..., 3:]).sum(-1))
            out.append(w.mean(axis=1))
        return xp.concatenate(out)


# ------------------------------------------------------------------------------ the solver


def solve_plastic(model: Model, *, increments=None, backend: str = "auto", solver: str = "auto",
                  rtol: float = 1e-8, tol: float = 1e-6, utol: float = 1e-5,
                  max_iterations: int = 12, initial: PlasticResult | None = None,
                  progress=None) -> NonlinearResult:
    """Elasto-plastic analysis of ``model`` (module docstring); units mm, N, MPa.

    Returns a :class:`~fem.nonlinear_result.NonlinearResult` with one
    :class:`~fem.nonlinear_result.Step` per converged increment: ``load_factor`` (the fraction of
    the loads and prescribed displacements applied), ``control`` (the step time, equal to the
    load factor for a step time of 1), ``force`` (N: with prescribed displacements the support
    reaction conjugate to their change, sum over prescribed dofs of reaction x its share of the
    largest prescribed change; with loads only the applied resultant along its direction, 0 for
    self-equilibrated loads such as an internal pressure), and ``result`` a
    :class:`PlasticResult`. ``info["residuals"]`` lists each increment's residual history.

    ``solver``: "direct" (sparse LU), "amg" (CG preconditioned by the AMG of the elastic
    stiffness, built once) or "auto" (direct up to 5 000 equations); ``rtol``: the CG
    tolerance; ``tol``, ``utol``: equilibrium and displacement-correction tolerances;
    ``initial``: continue from this state (a :class:`PlasticResult`, e.g. ``r.final``);
    ``progress(step)`` is called after every converged increment.
    """
    if solver not in ("auto", "direct", "amg"):
        raise SolverError(f"solver must be auto, direct or amg for plasticity, got {solver!r}")
    for name, v, hi in (("rtol", rtol, 1.0), ("tol", tol, 0.1), ("utol", utol, 0.5)):
        if not (0.0 < v < hi):
            raise SolverError(f"{name} must lie in (0, {hi:g}), got {v}")
    if int(max_iterations) < 2:
        raise SolverError(f"max_iterations must be >= 2, got {max_iterations}")
    try:
        be = get_backend(backend)
    except BackendError as exc:
        raise SolverError(str(exc)) from None
    if hasattr(model, "to_model") and not isinstance(model, Model):  # a VoxelModel
        model = model.to_model()
    control, fixed_times = increment_control(model, increments)
    t0 = time.perf_counter()
    prob = _Problem(model, be, solver=solver, rtol=rtol, initial=initial)
    steps, histories = _drive(prob, control, fixed_times, tol=tol, utol=utol,
                              max_iterations=int(max_iterations), progress=progress)
    info = {"residuals": histories, "static": dataclasses.asdict(control),
            "fixed_increments": fixed_times is not None, "solver": prob.solver_name,
            "backend": be.name, "time_s": time.perf_counter() - t0, "reference": SIMO_HUGHES_1998}
    info["material"] = "von Mises plasticity, linear isotropic hardening"
    return NonlinearResult(steps, control_name="step time", law=None, info=info)


class _Problem:
    """The model's constant parts: geometry, materials, pattern, constraints, loads."""

    def __init__(self, model: Model, be, *, solver, rtol, initial):
        xp = be.xp
        self.model, self.be, self.xp, self.rtol = model, be, xp, rtol
        model.check_materials()
        assembly.check_geometry(model, xp, xp.asarray(model.points))
        plastic = model.plastic_mask()
        ortho = model.orthotropic_mask()
        both = plastic & ortho
        if both.any():
            raise MaterialError(f"element(s) {format_labels(model.element_ids[both])} are "
                                "orthotropic and plastic: von Mises plasticity is isotropic")
        self.sysm = _system.compile_conditions(model)
        _system.check_constraints(model, self.sysm)
        self.n3 = 3 * model.n_nodes
        self.pattern = assembly.build_pattern(model, xp)
        self.chunks = self._chunks(plastic)
        self.fixed = np.asarray(self.sysm.fixed_dofs, dtype=np.int64)
        self.fixed_x = xp.asarray(self.fixed)
        dead = [3 * self.sysm.slave_nodes[:, None] + np.arange(3),
                3 * np.nonzero(~self.sysm.active_nodes)[0][:, None] + np.arange(3)]
        free = np.ones(self.sysm.n_dof, dtype=bool)
        free[self.fixed] = False
        free[np.concatenate([d.ravel() for d in dead]).astype(np.int64)] = False
        self.free = xp.asarray(free)
        self.T = analysis.coupling_matrix(model, self.sysm, be) if self.sysm.plates else None
        self.M = None
        self.solver = solver
        self.n_eq = self.sysm.n_dof
        self.solver_name = "direct" if solver == "direct" or (
            solver == "auto" and self.n_eq <= analysis.DIRECT_MAX_DOF) else "amg"
        # end values of this analysis, and where it starts from
        self.f1 = xp.asarray(self.sysm.f)
        self.g1 = xp.asarray(self.sysm.fixed_values, dtype=float)
        self.state = self._initial_state(initial)
        self.g0 = self.state.z[self.fixed_x] if len(self.fixed) else xp.zeros(0)
        self.f0 = self.state.f
        dg = self.be.to_host(self.g1 - self.g0)
        self.direction = dg / np.abs(dg).max() if len(dg) and np.abs(dg).max() > 0 else None
        if self.direction is None:
            df = self.be.to_host(self.f1 - self.f0)
            res = df[:self.n3].reshape(-1, 3).sum(axis=0)
            for p in self.sysm.plates:
                res = res + df[p.first_dof:p.first_dof + 3]
            nrm = float(np.linalg.norm(res))
            self.load_dir = res / nrm if nrm > 0 else np.zeros(3)

    def _chunks(self, plastic):
        model, xp = self.model, self.xp
        pts = xp.asarray(model.points)
        lam, mu, bbar_all, ortho_row, C_all = assembly.materials(model, xp)
        kappa = lam + 2.0 * mu / 3.0
        p = np.where(plastic[:, None], model.plastic if plastic.any() else 0.0, np.nan)
        sy = xp.asarray(np.where(plastic, p[:, 0], np.inf))
        H = xp.asarray(np.where(plastic, p[:, 1], 0.0))
        out = []
        for bi, sl in assembly.chunks(model, xp, per_element=4 * 81 * 8):
            b = model.blocks[bi]
            G, wdet, _ = assembly.element_geometry(model, bi, sl, xp, pts)
            gsl = slice(b.start + sl.start, b.start + sl.stop)
            B = b_matrices(G, wdet, bbar_all[gsl] if b.type == "hex8" else None)
            conn = xp.asarray(b.conn[sl])
            dofs = (3 * conn[:, :, None] + xp.arange(3)[None, None, :]).reshape(len(conn), -1)
            orth = assembly.orthotropic_rows(ortho_row, gsl)
            loc = C_o = None
            if orth is not None:
                loc, rows = (xp.asarray(a) for a in orth)
                C_o = C_all[rows]
            out.append(_Chunk(bi, sl, gsl, B, wdet, dofs, kappa[gsl, None], mu[gsl, None],
                              sy[gsl, None], H[gsl, None], C_o, loc,
                              self.pattern.positions[bi][sl].astype(xp.int64)))
        return out

    def _initial_state(self, initial) -> PlasticState:
        xp, model = self.xp, self.model
        if initial is not None:
            st = getattr(initial, "state", None)
            if not isinstance(st, PlasticState) or initial.model.n_elements != model.n_elements \
                    or st.z.shape[0] != self.sysm.n_dof:
                raise SolverError("initial must be a PlasticResult of a model with the same "
                                  "nodes, elements and rigid plates")
            return st
        zeros = [xp.zeros((len(b.conn), b.etype.weights.shape[0])) for b in model.blocks]
        six = [xp.zeros(z.shape + (6,)) for z in zeros]
        return PlasticState(xp.zeros(self.sysm.n_dof), xp.zeros(self.sysm.n_dof),
                            xp.zeros(len(self.fixed)), six, [a.copy() for a in six],
                            [a.copy() for a in six], zeros, [z.astype(bool) for z in zeros])

    # ------------------------------------------------------------------ kinematics

    def displacement(self, z):
        """Mesh displacements (3n,) of the unknowns z."""
        u = self.T @ z if self.T is not None else z
        return u[:self.n3]

    def to_z(self, v_mesh):
        """A mesh-dof vector (forces) in the unknowns' space: T^T v."""
        return self.T.T @ v_mesh if self.T is not None else v_mesh

    # ------------------------------------------------------------------ the material pass

    def evaluate(self, z, *, tangent: bool, predictor: bool = False):
        """Internal forces (unknowns' space), the trial state and, with ``tangent``, the
        assembled tangent at displacements ``z`` from the converged history. ``predictor``: the
        tangent of the converged state instead (continuum elasto-plastic where it was plastic)."""
        xp = self.xp
        u = self.displacement(z)
        fint = xp.zeros(self.n3)
        data = xp.zeros(self.pattern.nnzb * 9) if tangent else None
        ij = 3 * xp.arange(3)[:, None, None] + xp.arange(3)[None, None, :]
        st = self.state
        new = ([a.copy() for a in st.strain], [a.copy() for a in st.plastic_strain],
               [a.copy() for a in st.stress], [a.copy() for a in st.peeq],
               [a.copy() for a in st.active])
        for c in self.chunks:
            bi, sl = c.block, c.sl
            eng = xp.matmul(c.B, u[c.dofs][:, None, :, None])[..., 0]  # (m, g, 6)
            eps = eng.copy()
            eps[..., 3:] *= 0.5
            ep_n, a_n = st.plastic_strain[bi][sl], st.peeq[bi][sl]
            sig, ep, alpha, dgamma, n, norm = radial_return(eps, ep_n, a_n, c.kappa, c.mu,
                                                            c.sy, c.H)
            if c.ortho_local is not None:
                sig[c.ortho_local] = elastic_voigt(c.C_ortho, eng[c.ortho_local])
            new[0][bi][sl], new[1][bi][sl], new[2][bi][sl] = eps, ep, sig
            new[3][bi][sl], new[4][bi][sl] = alpha, dgamma > 0
            fe = (xp.swapaxes(c.B, -1, -2) @ (sig * c.wdet[..., None])[..., None])[..., 0]
            scatter_add(fint, c.dofs.ravel(), fe.sum(axis=1).ravel())
            if tangent:
                if predictor:
                    C = self._continuum(c, st.stress[bi][sl], st.active[bi][sl])
                else:
                    C = consistent_tangent(c.kappa, c.mu, c.H, dgamma, n, norm)
                if c.ortho_local is not None:
                    C[c.ortho_local] = c.C_ortho[:, None]
                Ke = elastic.stiffness_from_b(c.B, c.wdet, C)
                k = Ke.shape[1] // 3
                Ke = Ke.reshape(-1, k, 3, k, 3)
                idx = c.positions[:, :, None, :, None] * 9 + ij[None, None]
                scatter_add(data, idx.ravel(), Ke.ravel())
        K = None
        if tangent:
            K = assembly.to_matrix(self.pattern, data.reshape(-1, 3, 3), self.be)
        trial = PlasticState(z, None, None, *new)
        return self.to_z(fint), trial, K

    def _continuum(self, c: _Chunk, stress, active):
        """The continuum elasto-plastic tangent at the converged stress where the last increment
        was plastic (theta = 1, theta_bar = 1 / (1 + H / 3 mu)); elastic elsewhere."""
        xp = self.xp
        one = xp.asarray(_ONE)
        s = stress - ((stress[..., 0] + stress[..., 1] + stress[..., 2]) / 3.0)[..., None] * one
        norm = xp.sqrt((s[..., :3] ** 2).sum(-1) + 2.0 * (s[..., 3:] ** 2).sum(-1))
        n = s / xp.where(norm > 0, norm, 1.0)[..., None]
        # dgamma -> 0+ in box 3.2 gives the continuum tangent: pass a vanishing dgamma
        tiny = xp.where(active & (norm > 0), 1e-300, 0.0)
        return consistent_tangent(c.kappa, c.mu, c.H, tiny, n, xp.where(norm > 0, norm, 1.0))

    # ------------------------------------------------------------------ linear solves

    def solve(self, K, r_full, dg):
        """The correction dz of K dz = r with dz = dg on the prescribed dofs."""
        xp = self.xp
        sysm = dataclasses.replace(self.sysm, f=r_full, fixed_values=dg)
        lin = analysis.constrain(self.model, sysm, K, self.be)
        if self.solver_name == "direct":
            dz = direct(lin.K, lin.rhs)
        else:
            if self.M is None:  # the AMG of the first (elastic) tangent serves every iteration
                B = rigid_body_modes(self.model.points, np,
                                     [p.reference for p in self.sysm.plates])
                self.M = analysis.amg_preconditioner(lin.K, B, self.be)
            op = lin.K
            if self.be.name == "numpy":
                from .parallel import RowSplit

                op = RowSplit(lin.K)
            dz, _, _ = cg(op, lin.rhs, rtol=self.rtol, M=self.M)
        if len(self.fixed):
            dz[self.fixed_x] = xp.asarray(dg, dtype=dz.dtype)
        return dz

    # ------------------------------------------------------------------ loads

    def loads(self, lam):
        """(applied load vector (all dofs), prescribed values) at load factor ``lam``."""
        return self.f0 + lam * (self.f1 - self.f0), self.g0 + lam * (self.g1 - self.g0)

    def residual(self, fint_z, f_full):
        """Out-of-balance force (unknowns' space; zero on prescribed and dead dofs), its norm
        relative to the force through the model, and the reactions at the prescribed dofs."""
        xp = self.xp
        fz = self.to_z(f_full[:self.n3]) if self.sysm.plates else f_full
        if self.sysm.plates:
            fz = fz.copy()
            fz[self.n3:] += f_full[self.n3:]
        r = fz - fint_z
        react = -r[self.fixed_x] if len(self.fixed) else xp.zeros(0)
        r = xp.where(self.free, r, 0.0)
        # at a state of (nearly) no force, e.g. unloaded to zero, compare with the largest
        # force so far (CalculiX and Abaqus use a time-averaged force likewise)
        scale = max(float(xp.linalg.norm(fz)) + float(xp.linalg.norm(react)),
                    self.state.force_norm)
        return r, float(xp.linalg.norm(r)) / max(scale, 1e-300), react

    def force(self, react, f_full) -> float:
        if self.direction is not None:
            return float(self.be.to_host(react) @ self.direction)
        f = self.be.to_host(f_full)
        res = f[:self.n3].reshape(-1, 3).sum(axis=0)
        for p in self.sysm.plates:
            res = res + f[p.first_dof:p.first_dof + 3]
        return float(res @ self.load_dir)


def elastic_voigt(C, eng):
    """Stress (tensor components) of engineering strains (m, g, 6) for Voigt C (m, 6, 6)."""
    xp = _xp(eng)
    return xp.matmul(C[:, None], eng[..., None])[..., 0]


def _drive(prob: _Problem, control: StaticControl, fixed_times, *, tol, utol, max_iterations,
           progress):
    """The increment loop: Newton-Raphson per increment, cut-backs and growth."""
    total = control.total
    dmin, dmax = control.min_increment, control.max_increment
    t = 0.0
    dt = control.initial if fixed_times is None else math.inf
    target_i = 0
    steps: list[Step] = []
    histories: list[list] = []
    n_failed = 0
    eps_t = 1e-12 * total
    while t < total - eps_t:
        if fixed_times is not None:
            while fixed_times[target_i] <= t + eps_t:
                target_i += 1
            dt_try = min(dt, fixed_times[target_i] - t)
        else:
            dt_try = min(dt, dmax, total - t)
        if total - (t + dt_try) < eps_t:
            dt_try = total - t
        ok, out = _increment(prob, t, t + dt_try, total, tol=tol, utol=utol,
                             max_iterations=max_iterations)
        if not ok:
            n_failed += 1
            dt = 0.5 * dt_try
            logger.info("increment %d (step time %.6g -> %.6g) did not converge (%s); halved",
                        len(steps) + 1, t, t + dt_try, out)
            if dt < dmin * (1 - 1e-9):
                raise ConvergenceError(
                    f"increment {len(steps) + 1} did not converge ({out}) and cannot be cut back "
                    f"below the minimum increment {dmin:g}: load factor reached {t / total:.6g} "
                    f"(step time {t:.6g} of {total:g})", residuals=out_residuals(out))
            continue
        t += dt_try
        iterations, history, result, force, z = out
        histories.append(history)
        step = Step(len(steps) + 1, t / total, t, force, iterations, history[-1], result,
                    n_failed=int(result.extra_cell_fields["yielded"].sum()),
                    linear_solves=iterations)
        steps.append(step)
        logger.info("increment %d: step time %.6g, load factor %.6g, force %.6g N, %d "
                    "iterations, residual %.2e, %d elements yielded", step.index, t, t / total,
                    force, iterations, history[-1], step.n_failed)
        if progress is not None:
            progress(step)
        if fixed_times is not None:
            if abs(t - fixed_times[target_i]) <= eps_t:
                dt = math.inf  # back to the given increments after a cut-back
        elif iterations <= EASY_ITERATIONS:
            dt = min(dt_try * GROW, dmax)
        else:
            dt = dt_try
    return steps, histories


def out_residuals(out) -> list:
    return list(out.history) if isinstance(out, _Failure) else []


@dataclass
class _Failure:
    why: str
    history: list

    def __str__(self) -> str:
        return self.why


def _increment(prob: _Problem, t_start, t_end, total, *, tol, utol, max_iterations):
    """One Newton-Raphson increment to step time ``t_end``; (True, (iterations, residual
    history, result, force, z)) or (False, _Failure)."""
    xp = prob.xp
    lam = t_end / total
    f_full, g = prob.loads(lam)
    st = prob.state
    z_n = st.z
    history: list[float] = []
    try:
        fint, _, K = prob.evaluate(z_n, tangent=True, predictor=True)
        r, _, _ = prob.residual(fint, f_full)
        dg = g - z_n[prob.fixed_x] if len(prob.fixed) else xp.zeros(0)
        # r is already in the unknowns' space, zero on slave dofs, where constrain's T^T is
        # the identity: it passes as the 'load vector' unchanged
        dz = prob.solve(K, r, dg)
        z = z_n + dz
        for it in range(1, max_iterations + 1):
            fint, trial, K = prob.evaluate(z, tangent=False)
            r, res, react = prob.residual(fint, f_full)
            history.append(res)
            if not math.isfinite(res):
                return False, _Failure("the residual is not finite", history)
            du = float(xp.linalg.norm(z - z_n))
            corr = float(xp.linalg.norm(dz)) / max(du, 1e-300)  # 1 after the predictor
            if res <= tol and (corr <= utol or res <= LINEAR_RESIDUAL):
                break
            if it == max_iterations:
                return False, _Failure(f"relative residual {res:.2e} after {it} iterations",
                                       history)
            if it > 2 and res > 1e3 * history[0]:
                return False, _Failure(f"diverging: relative residual {res:.2e}", history)
            _, _, K = prob.evaluate(z, tangent=True)
            dz = prob.solve(K, r, xp.zeros(len(prob.fixed)))
            z = z + dz
    except SolverError as exc:  # a singular tangent (a collapse mechanism at this load)
        return False, _Failure(str(exc).split(":")[0], history)
    fz = prob.to_z(f_full[:prob.n3])
    norm = float(xp.linalg.norm(fz)) + float(xp.linalg.norm(react))
    state = PlasticState(z, f_full, g, trial.strain, trial.plastic_strain, trial.stress,
                         trial.peeq, trial.active, max(norm, st.force_norm))
    prob.state = state
    result = _result(prob, state, react, lam, history, it)
    return True, (it, history, result, prob.force(react, f_full), z)


def _result(prob: _Problem, state: PlasticState, react, lam, history, iterations):
    be = prob.be
    sysm = dataclasses.replace(prob.sysm, f=be.to_host(state.f),
                               fixed_values=be.to_host(state.g))
    info = SolveInfo(solver=prob.solver_name, backend=be.name, n_dof=prob.model.n_dof,
                     n_equations=prob.n_eq, residual=history[-1], iterations=iterations,
                     residuals=list(history))
    n3 = prob.n3
    return PlasticResult(prob.model, prob.displacement(state.z).reshape(-1, 3), state=state,
                         load_factor=lam, residuals=history, backend=be, system=sysm,
                         reaction_dofs=prob.sysm.fixed_dofs, reaction_values=react,
                         plate_dofs=state.z[n3:] if prob.sysm.plates else None, info=info)
