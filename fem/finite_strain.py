"""Large deformation: a total-Lagrangian analysis of hyperelastic solids on the assembled path,
with the fibre-reinforced annulus of :mod:`fem.fibres` stretched by its Green-Lagrange strain.
Units: mm, N, MPa.

Why: a disc under a standing load shortens by a quarter of its height in the small-strain fibre
model, and at that deformation the linear strain misses most of the fibres' stretch (the bulge
lengthens a ±30 degree fibre to second order, and an annulus that shortens axially while it
grows circumferentially by a third as much strains no fibre at all in small strain:
docs/validation.md). Here the strain is the Green-Lagrange strain ``E = (F^T F - I) / 2`` of
the deformation gradient F, and equilibrium is written on the reference configuration.

Materials
---------
Every isotropic element (E, nu) is a decoupled neo-Hookean solid with the same small-strain
shear and bulk moduli, ``mu = E / 2 (1 + nu)`` and ``kappa = E / 3 (1 - 2 nu)``
(:mod:`fem.kernels.finite_strain`; CalculiX's and Abaqus's ``*HYPERELASTIC, NEO HOOKE`` with
C10 = mu / 2, D1 = 2 / kappa), so that at small loads the analysis is :func:`fem.solve`'s. Hex8
elements that :meth:`fem.Model.bbar_mask` marks (nearly incompressible) take the element's mean
dilatation in the volumetric energy, the finite-strain form of B-bar. Elements of ``fibres``
regions are the ground substance of a :class:`~fem.fibres.FibreLaw` (neo-Hookean, as above) plus
its two fibre families, each adding the second Piola-Kirchhoff stress
``share sigma_f(E_aa) a (x) a`` with ``E_aa = a . E . a`` the Green-Lagrange strain along the
family's reference direction ``a`` (at the element centre), and the tangent
``share sigma_f'(E_aa) a (x) a (x) a (x) a``: the fibre law of :mod:`fem.fibres` with the Green
strain in place of the linear one (they agree to first order). Orthotropic elements outside the
fibre regions and plastic elements are refused.

Swelling: ``swelling`` gives elements a stress-free volume ratio theta (isotropic growth,
F = F_e theta^(1/3)): their energy per reference volume is theta W(F_e), which leaves the
isochoric part's invariants unchanged and makes the volumetric one ``theta kappa / 2 (J / theta
- 1)^2``. A nucleus that swells inside its annulus and endplates is pressurised before any load
(:func:`nucleus_swelling` finds theta for a pressure, e.g. Wilke et al. 1999's 0.1 MPa lying).
From the reference state the swelling ramps with the load factor; an analysis that continues
from a swollen state (``initial=``) holds it.

Loads are dead: nodal forces keep their direction and size as the body deforms (a pressure on a
face does not follow it). Rigid plates and ties are the linear constraints of :func:`fem.solve`,
so a plate's rotation must stay small: a state in which a plate has turned beyond
:data:`MAX_PLATE_ROTATION` (7.4 degrees) is refused with a :class:`~fem.SolverError`. A segment
under a dead load on a plate free to tilt gets there as it sways
(:meth:`_Problem.check_plate_rotations`). The increments and Newton iterations are
:mod:`fem.increments`'s; the tangent is the consistent one (material, geometric and volumetric
parts), so Newton's method converges quadratically.

Results
-------
:func:`solve_finite_strain` returns a :class:`~fem.nonlinear_result.NonlinearResult` whose steps
carry :class:`FiniteStrainResult`: displacements, Cauchy stresses and Green-Lagrange strains
(tensor components, xx yy zz xy yz xz) at the integration points, ``jacobian`` (J = det F,
element mean; the volume ratio) and, with fibres, ``fibre_strain_plus/minus`` (Green-Lagrange
fibre strains) and ``fibre_stress_plus/minus`` (MPa) among the cell fields. Every metric reads it
as any other result.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from . import assembly
from .errors import ConvergenceError, MaterialError, SetError, SolverError, format_labels
from .fibres import FibreLaw, FibreRegion, fibre_directions
from .increments import IncrementalProblem, drive, increment_control, prepare
from .kernels import finite_strain as fs
from .kernels.backend import backend_of, get_backend, scatter_add
from .kernels.elastic import stiffness_from_b
from .model import Model
from .nonlinear_result import NonlinearResult
from .parallel import serial_blas
from .result import Result, mean_pressure
from .validate import in_range

logger = logging.getLogger(__name__)

#: the largest rotation (rad; 7.4 degrees) of a rigid plate that a large-deformation analysis
#: accepts: the plate's coupling is linear in its rotation and stretches the plate's face by about
#: theta^2 / 2, here the compressive yield strain of vertebral bone (0.84 %,
#: fem.strength.YIELD_COMPRESSION), beyond which that error alone would yield the bone under the
#: plate. The README's L4-L5 at 2 mm turns by 5.7 degrees at 500 N (drained, free plate)
MAX_PLATE_ROTATION = float(np.sqrt(2.0 * 0.0084))

HOLZAPFEL_2000 = ("Holzapfel GA (2000) Nonlinear Solid Mechanics. Wiley, Chichester. Section 6.5 "
                  "(decoupled neo-Hookean energy, its stress and elasticity tensors)")
SIMO_TAYLOR_PISTER_1985 = ("Simo JC, Taylor RL, Pister KS (1985) Variational and projection "
                           "methods for the volume constraint in finite deformation "
                           "elasto-plasticity. Comput Methods Appl Mech Eng 51:177-208 (mean "
                           "dilatation)")


@dataclass
class FiniteStrainState:
    """A converged state: unknowns ``z`` (mesh dofs, then rigid plates' six), the load vector
    ``f`` and prescribed values ``g`` reached, and the largest force through the model so far
    (N). The material is elastic, so the state is its displacements."""

    z: object
    f: object
    g: object
    force_norm: float = 0.0


@dataclass
class _Chunk:
    """Reference geometry and materials of a slice of one cell block."""

    block: int
    sl: slice
    gsl: slice
    G: object  # (m, g, k, 3)
    wdet: object  # (m, g)
    dofs: object  # (m, 3k)
    mu: object  # (m, 1)
    kappa: object  # (m,)
    mean: object  # (m,) bool
    fibre_local: object  # local indices of fibre elements, or None
    dirs: object  # (2, n_f, 3) their families' reference directions, or None
    positions: object  # (m, k, k)


class _Material:
    """The chunks and the fibre law: evaluates stresses, forces and tangents at displacements."""

    def __init__(self, model: Model, xp, fibres, law: FibreLaw, pattern):
        self.model, self.xp, self.law = model, xp, law
        self.to_host = backend_of(xp).to_host  # the fibre law is evaluated on the host
        pts = xp.asarray(model.points)
        E, nu = model.E, model.nu
        mu = xp.asarray(E / (2.0 * (1.0 + nu)))
        kappa = xp.asarray(E / (3.0 * (1.0 - 2.0 * nu)))
        mean = xp.asarray(model.bbar_mask())
        row = np.full(model.n_elements, -1, dtype=np.int64)
        dirs_all = None
        if fibres:
            els, dirs_all = fibre_directions(model, fibres, law)
            row[els] = np.arange(len(els))
        self.fibre_elements = np.nonzero(row >= 0)[0]
        self.chunks = []
        for bi, sl in assembly.chunks(model, xp, per_element=4 * 81 * 8):
            b = model.blocks[bi]
            G, wdet, _ = assembly.element_geometry(model, bi, sl, xp, pts)
            gsl = slice(b.start + sl.start, b.start + sl.stop)
            conn = xp.asarray(b.conn[sl])
            dofs = (3 * conn[:, :, None] + xp.arange(3)[None, None, :]).reshape(len(conn), -1)
            loc = np.nonzero(row[gsl] >= 0)[0]
            fl = d = None
            if len(loc):
                fl = xp.asarray(loc)
                d = xp.asarray(dirs_all[:, row[gsl][loc]])
            pos = pattern.positions[bi][sl].astype(xp.int64) if pattern is not None else None
            m_mean = mean[gsl] if b.type == "hex8" else xp.zeros(len(conn), dtype=bool)
            self.chunks.append(_Chunk(bi, sl, gsl, G, wdet, dofs, mu[gsl, None], kappa[gsl],
                                      m_mean, fl, d, pos))

    def gradients(self, c: _Chunk, u):
        """Displacement gradients H (m, g, 3, 3) of chunk ``c`` at displacements ``u`` (3n,)."""
        return fs.displacement_gradients(c.G, u[c.dofs].reshape(len(c.dofs), -1, 3))

    def fibre_strains(self, c: _Chunk, H):
        """(Green-Lagrange strains (2, n, g) along the families, the strain tensors) of the
        chunk's fibre elements at displacement gradients ``H``."""
        xp = self.xp
        E = fs.green_lagrange_h(H[c.fibre_local])
        e = xp.einsum("fni,nqij,fnj->fnq", c.dirs, E, c.dirs)
        return e, E

    def state(self, c: _Chunk, u, *, tangent: bool, growth=None):
        """H, the isochoric + fibre second Piola-Kirchhoff stress (m, g, 3, 3), its tangent
        (m, g, 6, 6) or None, and the fibre strains (2, n, g) or None, of chunk ``c``;
        ``growth`` (n_elements,) the swelling volume ratios or None."""
        H = self.gradients(c, u)
        # a swollen element's isochoric energy counts per grown volume: mu x theta
        mu = c.mu if growth is None else c.mu * growth[c.gsl, None]
        S, D = fs.neo_hookean_isochoric(H, mu)
        ef = None
        if c.fibre_local is not None:
            law = self.law
            ef, _ = self.fibre_strains(c, H)
            h = self.xp.asarray
            sig = h(law.stress(self.to_host(ef))) * law.share
            aa = c.dirs[:, :, None, :, None] * c.dirs[:, :, None, None, :]  # (2, n, 1, 3, 3)
            S[c.fibre_local] += (sig[..., None, None] * aa).sum(axis=0)
            if tangent:
                dsig = h(law.tangent(self.to_host(ef))) * law.share
                v = fs.to_voigt(aa)  # (2, n, 1, 6)
                # engineering shear: the strain along a is sum_I a_I^2 E_II + sum_I<J a_I a_J 2E_IJ
                D[c.fibre_local] += (dsig[..., None, None]
                                     * (v[..., :, None] * v[..., None, :])).sum(axis=0)
        return H, S, (D if tangent else None), ef

    def forces(self, u, *, tangent: bool, pattern=None, n3: int, growth=None):
        """Internal forces (3n,) and, with ``tangent``, the assembled block data."""
        xp = self.xp
        fint = xp.zeros(n3)
        data = xp.zeros(pattern.nnzb * 9) if tangent else None
        ij = 3 * xp.arange(3)[:, None, None] + xp.arange(3)[None, None, :]
        for c in self.chunks:
            H, S, D, _ = self.state(c, u, tangent=tangent, growth=growth)
            B = fs.b_nonlinear(c.G, H + xp.eye(3))
            fe = fs.internal_forces(B, fs.to_voigt(S), c.wdet)
            fv, Kv, _ = fs.volumetric(c.G, H, c.wdet, c.kappa, c.mean,
                                      None if growth is None else growth[c.gsl],
                                      stiffness=tangent)
            scatter_add(fint, c.dofs.ravel(), (fe + fv).ravel())
            if tangent:
                Ke = stiffness_from_b(B, c.wdet, D) + fs.geometric_stiffness(c.G, S, c.wdet) + Kv
                k = Ke.shape[1] // 3
                Ke = Ke.reshape(-1, k, 3, k, 3)
                idx = c.positions[:, :, None, :, None] * 9 + ij[None, None]
                scatter_add(data, idx.ravel(), Ke.ravel())
        return fint, data

    def fields(self, u, growth=None):
        """Per cell block: Green-Lagrange strain and Cauchy stress at the integration points
        (m, g, 6), reference w det J (m, g), J (m, g), and per fibre element its families'
        strains (2, n) (element mean) with their global indices."""
        xp = self.xp
        parts = [([], [], [], []) for _ in self.model.blocks]
        fib_el, fib_e = [], []
        for c in self.chunks:
            H, S, _, ef = self.state(c, u, tangent=False, growth=growth)
            _, _, p = fs.volumetric(c.G, H, c.wdet, c.kappa, c.mean,
                                    None if growth is None else growth[c.gsl], stiffness=False)
            sig = fs.cauchy(H, S, p)
            parts[c.block][0].append(fs.to_voigt(fs.green_lagrange_h(H)))
            parts[c.block][1].append(fs.to_voigt(sig))
            parts[c.block][2].append(c.wdet)
            parts[c.block][3].append(1.0 + fs.jacobian_minus_one(H))
            if ef is not None:
                fib_el.append(self.to_host(c.fibre_local) + c.gsl.start)
                fib_e.append(self.to_host(ef).mean(axis=2))
        blocks = [tuple(xp.concatenate(p) for p in blk) for blk in parts]
        if fib_el:
            return blocks, np.concatenate(fib_el), np.concatenate(fib_e, axis=1)
        return blocks, np.zeros(0, dtype=np.int64), np.zeros((2, 0))


class FiniteStrainResult(Result):
    """A :class:`~fem.result.Result` of a large-deformation state (module docstring): stresses
    are Cauchy stresses (MPa), strains Green-Lagrange strains, both tensor components at the
    integration points and their element means; ``strain_energy_density`` is the stored
    energy per unit reference volume (mJ/mm^3); ``load_factor`` the share of the loads
    carried."""

    def __init__(self, model, displacement, *, material: _Material, state: FiniteStrainState,
                 load_factor: float, residuals=(), growth=None, **kwargs):
        super().__init__(model, displacement, **kwargs)
        self.material = material
        #: the swelling volume ratios at this load factor (n_elements,), or None
        self.growth = growth
        self.state = state
        self.load_factor = load_factor
        self.residuals = list(residuals)
        blocks, fel, fe = self._fields
        J = np.concatenate([self.backend.to_host(b[3]).mean(axis=1) for b in blocks])
        self.extra_cell_fields = {"jacobian": J}
        if len(fel):
            law = material.law
            for i, sign in enumerate(("plus", "minus")):
                for name, v in (("strain", fe[i]), ("stress", law.stress(fe[i]))):
                    full = np.zeros(model.n_elements)
                    full[fel] = v
                    self.extra_cell_fields[f"fibre_{name}_{sign}"] = full

    @cached_property
    def _fields(self):
        u = self.xp.asarray(self.displacement).reshape(-1)
        return self.material.fields(u, self.growth)

    @cached_property
    def _ip(self):
        return [(e, s, w) for e, s, w, _ in self._fields[0]]

    @cached_property
    def strain_energy_density(self):
        """Element mean of the stored energy per unit reference volume (mJ/mm^3)."""
        xp, law = self.xp, self.material.law
        out = []
        u = xp.asarray(self.displacement).reshape(-1)
        for c in self.material.chunks:
            H = self.material.gradients(c, u)
            E = fs.green_lagrange_h(H)
            Jm1 = fs.jacobian_minus_one(H)
            I1 = 3.0 + 2.0 * (E[..., 0, 0] + E[..., 1, 1] + E[..., 2, 2])
            th = xp.ones(len(c.dofs)) if self.growth is None else self.growth[c.gsl]
            W = 0.5 * c.mu * th[:, None] * (xp.where(Jm1 > -1.0, 1.0 + Jm1, xp.nan) ** (-2.0 / 3.0)
                                             * I1 - 3.0)
            if bool(xp.any(c.mean)):
                Jbar_m1 = (c.wdet * Jm1).sum(axis=1) / c.wdet.sum(axis=1)
                Jm1 = xp.where(c.mean[:, None], Jbar_m1[:, None], Jm1)
            W = W + 0.5 * (c.kappa / th)[:, None] * (Jm1 - (th - 1.0)[:, None]) ** 2
            if c.fibre_local is not None:
                ef, _ = self.material.fibre_strains(c, H)
                W[c.fibre_local] += xp.asarray(law.energy(self.material.to_host(ef))
                                              * law.share).sum(axis=0)
            out.append((W * c.wdet).sum(axis=1) / c.wdet.sum(axis=1))
        return xp.concatenate(out)

    def integration_point_jacobian(self) -> list:
        """J = det F at the integration points, one (m, g) array per cell block."""
        return [j for _, _, _, j in self._fields[0]]


def _prepared(model: Model, fibres, law: FibreLaw) -> Model:
    """``model`` checked for the materials this analysis takes, with the fibre regions'
    elements made of the law's isotropic ground substance (a copy where they are)."""
    plastic = model.plastic_mask()
    if plastic.any():
        raise MaterialError(f"element(s) {format_labels(model.element_ids[plastic])} are "
                            "plastic: solve_finite_strain takes hyperelastic materials only")
    fib = np.zeros(model.n_elements, dtype=bool)
    for reg in fibres or ():
        if not isinstance(reg, FibreRegion):
            raise MaterialError(f"fibres must be FibreRegion objects, got {reg!r:.60}")
        if reg.law is not None:
            raise MaterialError(f"fibre region {reg.name!r} has a law of its own (a ligament's): "
                                "solve_finite_strain takes one law for every region; solve it "
                                "in small strain (fem.solve_fibres)")
        if reg.elements.min() < 0 or reg.elements.max() >= model.n_elements:
            raise MaterialError(f"fibre region {reg.name!r} names elements outside the model "
                                f"(0 to {model.n_elements - 1})")
        fib[reg.elements] = True
    ortho = model.orthotropic_mask() & ~fib
    if ortho.any():
        raise MaterialError(f"element(s) {format_labels(model.element_ids[ortho])} are "
                            "orthotropic outside the fibre regions: solve_finite_strain takes "
                            "isotropic (neo-Hookean) and fibre elements")
    if fib.any():
        model = model.copy()
        model.set_material(np.nonzero(fib)[0], *law.ground)
    return model


def internal_forces(model: Model, displacement, *, fibres: list[FibreRegion] | None = None,
                    law: FibreLaw | None = None, tangent: bool = False):
    """The internal nodal forces (n, 3) in N of ``model`` at ``displacement`` (n, 3) mm, with
    the materials of :func:`solve_finite_strain`, and with ``tangent`` its consistent tangent
    stiffness (a SciPy sparse matrix, 3n x 3n, N/mm; no supports applied): for checking
    equilibrium or the tangent. Host (NumPy) only."""
    law = law or FibreLaw()
    model = _prepared(model, fibres, law)
    u = np.asarray(displacement, dtype=float)
    if u.shape != (model.n_nodes, 3) or not np.isfinite(u).all():
        raise SolverError(f"displacement must be finite, shape ({model.n_nodes}, 3), got "
                          f"shape {u.shape}")
    be = get_backend("numpy")
    pattern = assembly.build_pattern(model, np) if tangent else None
    mat = _Material(model, np, fibres, law, pattern)
    f, data = mat.forces(u.reshape(-1), tangent=tangent, pattern=pattern, n3=u.size)
    K = assembly.to_matrix(pattern, data.reshape(-1, 3, 3), be).tocsr() if tangent else None
    return (f.reshape(-1, 3), K) if tangent else f.reshape(-1, 3)


def swelling_ratios(model: Model, swelling) -> np.ndarray | None:
    """Per element stress-free volume ratios (n_elements,) from ``swelling``: None, a mapping
    region name -> ratio, or an array of one ratio per element (1: no swelling)."""
    if swelling is None:
        return None
    out = np.ones(model.n_elements)
    if isinstance(swelling, dict):
        for name, ratio in swelling.items():
            if name not in model.regions:
                raise SetError(f"swelling names region {name!r}, which the model does not have "
                               f"(it has {sorted(model.regions)[:8]}...)")
            out[model.regions[name]] = float(ratio)
    else:
        a = np.asarray(swelling, dtype=float)
        if a.shape != (model.n_elements,):
            raise MaterialError(f"swelling needs one volume ratio per element "
                                f"({model.n_elements}) or a mapping region -> ratio, got "
                                f"shape {a.shape}")
        out[:] = a
    bad = ~np.isfinite(out) | (out <= 0.0)
    if bad.any():
        raise MaterialError(f"swelling volume ratios must be finite and > 0: element(s) "
                            f"{format_labels(model.element_ids[bad])}")
    return out


class _Problem(IncrementalProblem):
    def __init__(self, model: Model, be, *, fibres, law, solver, rtol, swelling=None,
                 loaded: bool = True, initial=None):
        model = _prepared(model, fibres, law)
        self.swelling = swelling_ratios(model, swelling)
        self.ramp = initial is None  # from the reference the swelling ramps; else it is held
        self.lam = 0.0
        super().__init__(model, be, solver=solver, rtol=rtol, initial=initial)
        if not loaded:  # the swelling alone (the model's loads left out)
            self.f1 = self.xp.zeros_like(self.f1)
        self.material = _Material(self.model, self.xp, fibres, law, self.pattern)

    def growth(self, lam):
        """The swelling ratios reached at load factor ``lam`` (ramped with the loads)."""
        if self.swelling is None:
            return None
        return self.xp.asarray(1.0 + (lam if self.ramp else 1.0) * (self.swelling - 1.0))

    def loads(self, lam):
        self.lam = lam  # the increment's swelling follows its load factor
        return super().loads(lam)

    def internal_force_scale(self) -> float:
        """The nodal forces the swelling reached would exert on a body held in its reference
        shape: the residual's scale where nothing resists the swelling."""
        if self.swelling is None:
            return 0.0
        key = (self.lam, self.ramp)
        if getattr(self, "_scale_key", None) != key:
            f, _ = self.material.forces(self.xp.zeros(self.n3), tangent=False, n3=self.n3,
                                        growth=self.growth(self.lam))
            self._scale_key, self._scale = key, float(self.xp.linalg.norm(f))
        return self._scale

    def _initial_state(self, initial) -> FiniteStrainState:
        xp = self.xp
        if initial is not None:
            st = getattr(initial, "state", None)
            if not isinstance(st, FiniteStrainState) or st.z.shape[0] != self.sysm.n_dof \
                    or initial.model.n_elements != self.model.n_elements:
                raise SolverError("initial must be a FiniteStrainResult of a model with the "
                                  "same nodes, elements and rigid plates")
            return st
        return FiniteStrainState(xp.zeros(self.sysm.n_dof), xp.zeros(self.sysm.n_dof),
                                 xp.zeros(len(self.fixed)))

    def evaluate(self, z, *, tangent: bool, predictor: bool = False):
        fint, data = self.material.forces(self.displacement(z), tangent=tangent,
                                          pattern=self.pattern, n3=self.n3,
                                          growth=self.growth(self.lam))
        K = assembly.to_matrix(self.pattern, data.reshape(-1, 3, 3), self.be) if tangent \
            else None
        return self.to_z(fint), None, K

    def accept(self, trial, z, f, g, force_norm) -> FiniteStrainState:
        self.check_plate_rotations(z)
        return FiniteStrainState(z, f, g, force_norm)

    def check_plate_rotations(self, z) -> None:
        """Refuse a converged state in which a rigid plate has turned beyond
        :data:`MAX_PLATE_ROTATION`: its coupling is linear in the rotation (``u = u_ref +
        theta x r``), which stretches the plate's face by about theta^2 / 2, so beyond it the
        answer is not the rigid plate's. The message says why a segment gets there: Crisco JJ,
        Panjabi MM, Yamamoto I, Oxland TR (1992) Euler stability of the human ligamentous lumbar
        spine. Part II: Experiment. Clin Biomech 7:27-32 (intact lumbar spines buckled under 88 N
        on average); Patwardhan AG, Havey RM, Meade KP, Lee B, Dunlap B (1999) A follower load
        increases the load-carrying capacity of the lumbar spine in compression. Spine
        24:1003-1009."""
        for p in self.sysm.plates:
            rot = self.be.to_host(z[p.first_dof + 3:p.first_dof + 6])
            angle = float(np.linalg.norm(rot))
            if angle > MAX_PLATE_ROTATION:
                raise SolverError(
                    f"rigid plate {p.name!r} turned by {np.degrees(angle):.1f} degrees at load "
                    f"factor {self.lam:.4g}, beyond the {np.degrees(MAX_PLATE_ROTATION):.1f} "
                    "degrees up to which its linear coupling holds in large deformation (it "
                    f"would stretch the plate's face by {100 * angle ** 2 / 2:.2f} %). Under a "
                    "dead load a segment whose loading plate is free to tilt sways: a "
                    "ligamentous lumbar spine is unstable under a vertical load without its "
                    "muscles (it buckles at about 90 N, Crisco et al. 1992), and cadaver tests "
                    "carry body-weight loads only along a follower path (Patwardhan et al. "
                    "1999). Hold the plates as a testing machine does "
                    "(fem.meshes.loadcases.between_platens), or solve in small strain")

    def result(self, state, react, lam, history, iterations):
        be = self.be
        sysm = dataclasses.replace(self.sysm, f=be.to_host(state.f),
                                   fixed_values=be.to_host(state.g))
        return FiniteStrainResult(
            self.model, self.displacement(state.z).reshape(-1, 3), material=self.material,
            state=state, load_factor=lam, residuals=history, growth=self.growth(lam),
            backend=be, system=sysm, reaction_dofs=self.sysm.fixed_dofs,
            reaction_values=react, plate_dofs=state.z[self.n3:] if self.sysm.plates else None,
            info=self.result_info(history, iterations))

    def n_failed(self, result) -> int:
        return 0


@serial_blas()  # the same path whatever the caller's BLAS threads
def solve_finite_strain(model: Model, *, fibres: list[FibreRegion] | None = None,
                        law: FibreLaw | None = None, swelling=None, loaded: bool = True,
                        initial: FiniteStrainResult | None = None, increments=10, backend: str = "auto", solver: str = "auto",
                        rtol: float = 1e-8, tol: float = 1e-6, utol: float = 1e-5,
                        max_iterations: int = 15, progress=None) -> NonlinearResult:
    """Large-deformation analysis of ``model`` (module docstring; mm, N, MPa): its loads and
    prescribed displacements applied over ``increments`` (an int n: n equal increments; a
    sequence of end times; a :class:`~fem.increments.StaticControl`; None: the deck's
    ``*STATIC`` line), each solved by Newton's method.

    ``fibres``: regions of fibre-reinforced annulus (:func:`fem.fibres.disc_fibres`) made of
    ``law`` (:class:`~fem.fibres.FibreLaw`, default the cited one). ``swelling``: stress-free
    volume ratios (a mapping region name -> ratio, or one per element; module docstring),
    ramped from 1 with the loads: a nucleus that swells inside its annulus and endplates is
    pressurised before any load (:func:`nucleus_swelling` finds the ratio for a pressure).
    ``loaded=False`` leaves the model's loads out (the swelling alone). ``initial``: continue
    from this state (a :class:`FiniteStrainResult`, e.g. of the swelling alone): the loads go
    from its loads to the model's, and the swelling is held at its full value (displacements
    still count from the reference configuration). ``solver``: "direct",
    "amg" or "auto" (direct up to 5 000 equations); ``rtol`` the CG tolerance; ``tol``,
    ``utol``: equilibrium and displacement-correction tolerances; ``progress(step)`` is called
    after every converged increment. Returns a :class:`~fem.nonlinear_result.NonlinearResult`
    whose steps' results are :class:`FiniteStrainResult`. Raises
    :class:`~fem.ConvergenceError` when an increment cannot be cut back far enough to converge
    (the message names the load factor reached)."""
    model, be = prepare(model, backend=backend, solver=solver, rtol=rtol, tol=tol, utol=utol,
                        max_iterations=max_iterations, what="large deformation")
    law = law or FibreLaw()
    control, fixed_times = increment_control(model, increments)
    t0 = time.perf_counter()
    prob = _Problem(model, be, fibres=fibres, law=law, solver=solver, rtol=rtol,
                    swelling=swelling, loaded=loaded, initial=initial)
    steps, histories = drive(prob, control, fixed_times, tol=tol, utol=utol,
                             max_iterations=int(max_iterations), progress=progress)
    info = {"residuals": histories, "static": dataclasses.asdict(control),
            "fixed_increments": fixed_times is not None, "solver": prob.solver_name,
            "backend": be.name, "time_s": time.perf_counter() - t0,
            **prob.solver_info(),
            "material": "decoupled neo-Hookean" + (", fibre-reinforced annulus" if fibres
                                                   else ""),
            "reference": [HOLZAPFEL_2000, SIMO_TAYLOR_PISTER_1985]}
    return NonlinearResult(steps, control_name="step time", law=None, info=info)


def region_pressure(result: Result, name: str) -> float:
    """Volume-mean hydrostatic pressure -tr(sigma)/3 (MPa) of region ``name`` of a result."""
    h = result.backend.to_host
    return mean_pressure(h(result.stress), h(result.element_volume), result.model.regions[name])


@dataclass(frozen=True)
class Swelling:
    """The swelling that pressurises each nucleus before any load (:func:`nucleus_swelling`):
    ``ratios`` region -> volume ratio, the ``pressure`` (MPa) reached in each, the target, the
    (ratios, pressures) of every trial, and ``state``: the pressurised, unloaded
    :class:`FiniteStrainResult` (to continue from with ``initial=``)."""

    ratios: dict
    pressure: dict
    target: float
    trials: tuple
    state: object = None


def nucleus_swelling(model: Model, pressure: float, nuclei: list[str], *,
                     fibres: list[FibreRegion] | None = None, law: FibreLaw | None = None,
                     rtol: float = 0.02, max_trials: int = 6, increments: int = 2,
                     **kwargs) -> Swelling:
    """The volume ratio of each region of ``nuclei`` that pressurises it to ``pressure`` (MPa,
    volume-mean hydrostatic) under the model's supports without its loads, to ``rtol``: secant
    steps on each nucleus's pressure against its ratio, the nuclei solved together (they are
    apart, so each pressure follows its own ratio). Keyword arguments go to
    :func:`solve_finite_strain`. Raises :class:`~fem.ConvergenceError` after ``max_trials``."""
    pressure = in_range("nucleus pressure", pressure, 0.0, 5.0, lo_open=True, unit="MPa",
                        error=MaterialError)
    for name in nuclei:
        if name not in model.regions:
            raise SetError(f"nucleus region {name!r} is not in the model")
    law = law or FibreLaw()
    ratios = {n: 1.0 + pressure / float(np.median(
        model.E[model.regions[n]] / (3.0 * (1.0 - 2.0 * model.nu[model.regions[n]]))))
        for n in nuclei}  # a first guess: the nucleus held rigidly
    last = {}
    trials = []
    for _ in range(max_trials):
        r = solve_finite_strain(model, fibres=fibres, law=law, swelling=ratios, loaded=False,
                                increments=increments, **kwargs).final
        got = {n: region_pressure(r, n) for n in nuclei}
        trials.append((dict(ratios), got))
        logger.info("nucleus swelling %s -> pressure %s MPa", ratios, got)
        if all(abs(got[n] - pressure) <= rtol * pressure for n in nuclei):
            return Swelling(dict(ratios), got, pressure, tuple(trials), r)
        new = {}
        for n in nuclei:
            g = ratios[n] - 1.0
            if n in last and got[n] != last[n][1]:  # secant through the last two trials
                g0, p0 = last[n]
                slope = (got[n] - p0) / (g - g0)
            else:  # through the origin: no swelling, no pressure
                slope = got[n] / g
            if not slope > 0:
                raise ConvergenceError(f"nucleus {n!r}: swelling {ratios[n]:.6g} gives "
                                       f"{got[n]:.4g} MPa; the pressure does not rise with it")
            new[n] = 1.0 + g + (pressure - got[n]) / slope
            last[n] = (g, got[n])
        ratios = new
    raise ConvergenceError(f"nucleus swelling: pressures {got} MPa after {max_trials} trials "
                           f"(target {pressure:g} MPa, rtol {rtol:g})")
