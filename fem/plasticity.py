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
The increment loop is :mod:`fem.increments`'s (shared with :mod:`fem.finite_strain`).
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

from . import assembly
from .errors import MaterialError, SolverError, format_labels
from .increments import (
    IncrementalProblem,
    StaticControl,  # noqa: F401  (re-exported: fem.plasticity's API)
    drive,
    increment_control,
    prepare,
)
from .kernels import elastic
from .kernels.backend import scatter_add
from .model import Model
from .nonlinear_result import NonlinearResult
from .parallel import serial_blas
from .result import Result

logger = logging.getLogger(__name__)

SIMO_HUGHES_1998 = ("Simo JC, Hughes TJR (1998) Computational Inelasticity. Springer, New York. "
                    "Box 3.1 (radial return) and box 3.2 (consistent elastoplastic tangent)")

#: Voigt vector of the identity (tensor components xx, yy, zz, xy, yz, xz)
_ONE = (1.0, 1.0, 1.0, 0.0, 0.0, 0.0)



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


@serial_blas()  # the same path whatever the caller's BLAS threads
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
    model, be = prepare(model, backend=backend, solver=solver, rtol=rtol, tol=tol, utol=utol,
                        max_iterations=max_iterations, what="plasticity")
    control, fixed_times = increment_control(model, increments)
    t0 = time.perf_counter()
    prob = _Problem(model, be, solver=solver, rtol=rtol, initial=initial)
    steps, histories = drive(prob, control, fixed_times, tol=tol, utol=utol,
                              max_iterations=int(max_iterations), progress=progress)
    info = {"residuals": histories, "static": dataclasses.asdict(control),
            "fixed_increments": fixed_times is not None, "solver": prob.solver_name,
            **prob.solver_info(),
            "backend": be.name, "time_s": time.perf_counter() - t0, "reference": SIMO_HUGHES_1998}
    info["material"] = "von Mises plasticity, linear isotropic hardening"
    return NonlinearResult(steps, control_name="step time", law=None, info=info)


class _Problem(IncrementalProblem):
    """The model's constant parts (:class:`~fem.increments.IncrementalProblem`) and its
    elements' geometry and materials, in chunks."""

    def __init__(self, model: Model, be, *, solver, rtol, initial):
        plastic = model.plastic_mask()
        ortho = model.orthotropic_mask()
        both = plastic & ortho
        if both.any():
            raise MaterialError(f"element(s) {format_labels(model.element_ids[both])} are "
                                "orthotropic and plastic: von Mises plasticity is isotropic")
        super().__init__(model, be, solver=solver, rtol=rtol, initial=initial)
        self.chunks = self._chunks(plastic)

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

    def accept(self, trial, z, f, g, force_norm) -> PlasticState:
        return PlasticState(z, f, g, trial.strain, trial.plastic_strain, trial.stress,
                            trial.peeq, trial.active, force_norm)

    def result(self, state, react, lam, history, iterations):
        return _result(self, state, react, lam, history, iterations)

    def n_failed(self, result) -> int:
        return int(result.extra_cell_fields["yielded"].sum())

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

def elastic_voigt(C, eng):
    """Stress (tensor components) of engineering strains (m, g, 6) for Voigt C (m, 6, 6)."""
    xp = _xp(eng)
    return xp.matmul(C[:, None], eng[..., None])[..., 0]



def _result(prob: _Problem, state: PlasticState, react, lam, history, iterations):
    be = prob.be
    sysm = dataclasses.replace(prob.sysm, f=be.to_host(state.f),
                               fixed_values=be.to_host(state.g))
    n3 = prob.n3
    return PlasticResult(prob.model, prob.displacement(state.z).reshape(-1, 3), state=state,
                         load_factor=lam, residuals=history, backend=be, system=sysm,
                         reaction_dofs=prob.sysm.fixed_dofs, reaction_values=react,
                         plate_dofs=state.z[n3:] if prob.sysm.plates else None,
                         info=prob.result_info(history, iterations))
