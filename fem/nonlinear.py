"""Nonlinear pushover analysis: strength as the peak of a force-displacement curve.

``fem.solve_nonlinear(model, law)`` drives the model's loads (a rigid loading plate's force and
moment, pressures, nodal forces) or its prescribed displacements (a platen) proportionally, by a
load factor ``lambda``, in increments of a controlled displacement, and follows the curve past its
peak. Units: mm, N, MPa; energies in mJ (= N mm).

The material law: scalar damage with a secant modulus
-------------------------------------------------------
:class:`DamageLaw` is a per-element strain-based damage law (one state per element, from the
element's volume-average strain). With principal strains e1 >= e2 >= e3, the normalised strain is

    r = max(-e3 / eps_yc, e1 / eps_yt, 0)

(eps_yc, eps_yt: yield strains in compression and tension), so yield is asymmetric. A thin layer
represented by thicker elements (a bony endplate, whose modulus the mesh scales by thickness /
element size) has a through-thickness strain inflated by that ratio and a physical in-plane
strain: its ``layer_normal`` n makes r the same measure of the in-plane strain ``P eps P``
(``P = I - n n``), the through-thickness and transverse-shear components left out. Its history
maximum kappa (kappa = 1 at first yield) sets the stress the element carries, as a fraction
``s(kappa)`` of its yield stress ``E0 eps_y``: 1 up to yield, falling linearly to the residual
fraction ``residual`` at ``kappa_s`` and constant after (a plateau, the crushed bone's residual
strength before densification). The element's secant modulus is ``E = E0 s(kappa) / kappa``;
``damage = 1 - E / E0``. Unloading and reloading follow the secant, back to the origin (no
permanent strain: a damage law, not plasticity; measured damaged trabecular bone recovers much
but not all of its deformation).

The softening slope is regularised in one of two ways:

* **crack band** (``nonlocal_length = 0``; Bazant & Oh 1983, Mater Struct 16:155): the strain
  over which the stress falls, ``softening_strain``, is given for a reference element size
  ``reference_size`` and scaled by ``reference_size / h``, so the energy dissipated per unit area
  of a band one element wide does not depend on the mesh. That assumes the damage localises into
  one element layer before the peak; where it spreads over many (the crushing of a vertebral
  body), the finer mesh gets the more ductile law and a higher peak (+5.5 % from 2 to 1 mm on the
  benchmark L1);
* **nonlocal** (``nonlocal_length = l > 0``; Pijaudier-Cabot & Bazant 1987, J Eng Mech 113:1512):
  the history is driven by the normalised strain averaged over the neighbourhood, weights
  ``V_j exp(-d^2 / (2 l^2))`` (cut at ``NONLOCAL_TRUNCATE`` l along each axis) among elements of the same yield
  strains, so a failing band is several l wide whatever the mesh and the law's
  ``softening_strain`` is the material's: unscaled in elements up to ``reference_size``, crack
  band scaled beyond it (elements too coarse to resolve the band).

A damaged material state (a fracture's band: reduced modulus, kept residual strength) is an
initial ``kappa0`` (:meth:`DamageLaw.kappa_for_modulus_ratio`): such an element reloads along its
reduced secant modulus to the stress it carried when damaged, and no further. Its stiffness is
lost much faster than its strength, as measured on overloaded vertebrae.

Why a secant modulus
--------------------
Every element stiffness stays ``E_e x Ke``: the assembled path reassembles it (the pattern, the
constraints and the AMG hierarchy of the elastic model are reused as preconditioner), and the
matrix-free voxel path (:mod:`fem.gmg`, its CUDA kernels on a GPU) only swaps the fine grid's
moduli. The secant stiffness stays positive definite past the peak, so each iteration is one
linear solve with CG.

The increment loop
------------------
Each secant iteration solves the linear problem with the current moduli for the reference loads
(``lambda = 1``), scales it so the controlled displacement is the step's target, updates the
damage from the strains and checks equilibrium with the updated moduli: the step is converged when
the out-of-balance force (2-norm over the dofs) is below ``tol`` of the load the model carries
(the loads' resultant, or the platen's reaction). The first step
goes exactly to first yield (found from the linear solution, so the curve is linear up to there);
then steps grow by ``grow`` after easy steps and are halved when ``max_iterations`` pass without
convergence, or when a converged step destroyed more than ``max_damage_step`` of the yieldable
elements' modulus (a step must resolve the path through the damage: ``MAX_DAMAGE_STEP``), down
to ``min_step`` (at once, where a halving did not lower the out-of-balance force by a fifth:
``FUTILE_HALVING``), after which :class:`~fem.ConvergenceError` names the step and
the load reached. The analysis stops after the peak once the force has fallen to ``stop_ratio``
of it, with ``stop_plateau`` once the curve has stopped rising (a plateau: its slope over the
last first-yield displacement below that share of the initial stiffness), at
``max_displacement`` or after ``max_steps``. A step that stalls at ``min_step`` is
iterated once more monotonically (each iterate's history at least the last one's: a bounded
non-decreasing sequence that settles, linearly, so it gets ``MONOTONE_ITERATIONS`` times
``max_iterations``; the steps are listed in ``info["monotone_steps"]``).

Control: with a rigid plate or other loads, the controlled displacement is the work-conjugate
displacement ``f0 . u / |F0|`` (for a loading plate: its displacement along its force, plus its
rotation times the moment over the force), and the force is ``lambda |F0|`` (N): a combined load
case (flexion) keeps its force and moment in proportion. With prescribed displacements (a platen
moved by ``Displacement`` conditions), the controlled displacement is ``lambda`` times the largest
prescribed one and the force the support reaction conjugate to them; loads then scale with it.

Limits: small strain, no contact (platens and discs are tied), no rate effects, no geometric
nonlinearity; the damage of an element is uniform over it.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import math
import time
import warnings
from dataclasses import dataclass

import numpy as np

from .errors import ConvergenceError, MaterialError, SolverError
from .nonlinear_result import NonlinearResult, Step
from .validate import in_range

logger = logging.getLogger(__name__)

#: iterates remembered by the Anderson acceleration of the secant iteration
ANDERSON_DEPTH = 5
#: a curve that cannot be followed further once its force has fallen this fraction below its
#: peak ends there (with a warning): the peak is bracketed by converged steps
PAST_PEAK = 0.01
#: a rising curve whose slope over its last three steps fell below this fraction of the initial
#: stiffness, and that cannot be followed further, has reached its limit load
LIMIT_TANGENT = 0.05
#: default ``stop_ratio``: the analysis ends once the force has fallen to this share of its peak
STOP_RATIO = 0.8
#: the linear solves' default tolerance is the equilibrium tolerance over this
RTOL_PER_TOL = 25.0
#: default first step beyond first yield and largest step, as multiples of the displacement at
#: first yield (the first was 0.25 before 2026-12-06)
FIRST_STEP = 0.05
MAX_STEP = 2.0
#: default ``max_damage_step``: a step may take at most this share of the modulus of the elements
#: that can yield (stiffness-weighted, :func:`_drive`), else it is halved and solved again. A
#: damage path is path-dependent where elements unload, and a long step damages at once elements
#: of which, followed in small steps, some would have unloaded as their neighbours failed: it
#: lands on a more diffuse, stronger branch. Before 2026-12-06 (steps set by convergence
#: alone) the bare L3 of the Wegrzyn replica failed 7 234 elements in its first step past first
#: yield at 1.5 mm and peaked at 4 978 N; with equal steps of 0.004 / 0.002 / 0.001 mm at 2 mm
#: the peak converges 4 331 / 4 288 / 4 269 N (first order), with this bound 4 304 N
#: (docs/nonlinear.md)
MAX_DAMAGE_STEP = 0.005
#: solves remembered to start the next one of a step (:func:`_start`)
GUESS_DEPTH = 4
#: the monotone fallback of a stalled smallest step iterates this many times max_iterations: its
#: bounded, non-decreasing sequence converges, but linearly (no acceleration), and a step it
#: would settle was otherwise failed (the fractured L2 of T12-L4 under a load kept in space
#: stalled at 7.6e-3 after 20 iterations at any step size, and converged with 60; the crushed L3
#: at 40 mg/cm^3, 3 mm voxels, mass kept, stalled at 8.2e-3 after 60 and converged within 120,
#: 2026-12-06). It costs only steps that would otherwise fail or stop
MONOTONE_ITERATIONS = 10
#: iterations of a step after which its rate of convergence is judged (:func:`_hopeless`)
STAGNATION_CHECK = 6
#: a step that did not converge, cut in half, and did not converge again with its best
#: out-of-balance force above this share of the longer attempt's has shown that halving does not
#: help: the force stalls where elements at their damage threshold cycle between loading and
#: unloading, whatever the step. It is cut at once to the smallest step (where the monotone
#: fallback settles it), not halved a few times more. Where every attempt between would have
#: failed too, the curve is the same to the last bit; the canonical segment's L2 under flexion
#: (PVP 4 mL, 2 mm) stalled at 7.4, 7.1, 6.5, 6.4, 6.4, 6.2, 6.0 ... 6.1e-3 (tol 5e-3; each
#: attempt's best) over ten halvings before its monotone step, 70 of its 141 linear solves
#: (2026-12-06). Should the smallest step then fail too, monotone fallback included, where the
#: analysis would otherwise raise :class:`~fem.ConvergenceError`, the skipped sizes are tried
#: after all, halving one by one from the first of them (a run the cut made fail would have
#: been carried on by halving there). None disables
FUTILE_HALVING = 0.8

BAZANT_OH_1983 = ("Bazant ZP, Oh BH (1983) Crack band theory for fracture of concrete. Materiaux "
                  "et Constructions 16:155-177 (crack band regularisation)")
PIJAUDIER_CABOT_BAZANT_1987 = ("Pijaudier-Cabot G, Bazant ZP (1987) Nonlocal damage theory. J Eng "
                               "Mech 113:1512-1533 (nonlocal averaging of the damage driver)")
#: the nonlocal weights are cut at this many nonlocal lengths along each axis (exp(-4.5) = 1.1 %)
NONLOCAL_TRUNCATE = 3.0


@dataclass(frozen=True)
class DamageLaw:
    """Per-element parameters of the strain-based damage law (module docstring).

    All arrays have one entry per element of the model the law is used with:

    ``yield_strain_compression``, ``yield_strain_tension``: > 0 (strain, not %); ``inf`` makes an
    element elastic. ``residual``: residual stress / yield stress in [0, 1]. ``softening_strain``:
    strain beyond yield over which the stress falls to the residual, for elements of
    ``reference_size`` mm (scaled by reference_size / h). ``kappa0``: initial normalised strain
    history (0 intact; > 1 a damaged element). ``sources``: where the numbers come from.
    ``intact_modulus``: the undamaged modulus (MPa) of pre-damaged elements, whose model
    modulus must then be their secant at kappa0 (NaN or None: the model's modulus is intact).
    ``nonlocal_length``: l (mm) of the nonlocal average of the damage driver; 0: local, crack
    band (module docstring). ``layer_normal``: None, or (n, 3) unit normals of the elements
    that represent a thin layer (rows of zeros for the others): their damage is driven by their
    in-plane strain (module docstring), and they average nonlocally among themselves.
    """

    yield_strain_compression: np.ndarray
    yield_strain_tension: np.ndarray
    residual: np.ndarray
    softening_strain: np.ndarray
    kappa0: np.ndarray
    reference_size: float = 1.0
    sources: tuple = ()
    intact_modulus: object = None
    nonlocal_length: float = 0.0
    layer_normal: object = None

    def __post_init__(self):
        n = None
        for name in ("yield_strain_compression", "yield_strain_tension", "residual",
                     "softening_strain", "kappa0"):
            a = np.asarray(getattr(self, name), dtype=float)
            if a.ndim != 1:
                raise MaterialError(f"damage law {name} must be one value per element")
            if n is None:
                n = len(a)
            elif len(a) != n:
                raise MaterialError(f"damage law {name} has {len(a)} values for {n} elements")
            if np.isnan(a).any():
                raise MaterialError(f"damage law {name} has NaN at element index "
                                    f"{int(np.nonzero(np.isnan(a))[0][0])}")
            object.__setattr__(self, name, a)
        for name in ("yield_strain_compression", "yield_strain_tension", "softening_strain"):
            a = getattr(self, name)
            if (a <= 0).any():
                i = int(np.nonzero(a <= 0)[0][0])
                raise MaterialError(f"damage law {name} must be > 0, got {a[i]:g} at element "
                                    f"index {i}")
        r = self.residual
        if ((r < 0) | (r > 1)).any():
            i = int(np.nonzero((r < 0) | (r > 1))[0][0])
            raise MaterialError(f"damage law residual must lie in [0, 1], got {r[i]:g} at "
                                f"element index {i}")
        if (self.kappa0 < 0).any() or not np.isfinite(self.kappa0).all():
            raise MaterialError("damage law kappa0 must be finite and >= 0")
        in_range("damage law reference_size", self.reference_size, 0.0, lo_open=True, unit="mm",
                 error=MaterialError)
        in_range("damage law nonlocal_length", self.nonlocal_length, 0.0, 100.0, unit="mm",
                 error=MaterialError)
        if self.intact_modulus is not None:
            e = np.asarray(self.intact_modulus, dtype=float)
            if e.shape != (n,):
                raise MaterialError(f"damage law intact_modulus must have one value per element "
                                    f"({n}), got shape {e.shape}")
            if (e[np.isfinite(e)] <= 0).any() or np.isinf(e).any():
                raise MaterialError("damage law intact_modulus must be > 0 MPa (NaN: the "
                                    "model's modulus)")
            object.__setattr__(self, "intact_modulus", e)
        if self.layer_normal is not None:
            a = np.asarray(self.layer_normal, dtype=float)
            if a.shape != (n, 3) or not np.isfinite(a).all():
                raise MaterialError(f"damage law layer_normal must be finite, one (3,) normal "
                                    f"per element ({n}), got shape {a.shape}")
            norm = np.linalg.norm(a, axis=1)
            bad = (norm > 0) & (np.abs(norm - 1.0) > 1e-6)
            if bad.any():
                i = int(np.nonzero(bad)[0][0])
                raise MaterialError(f"damage law layer_normal must be a unit vector or zero, got "
                                    f"length {norm[i]:g} at element index {i}")
            object.__setattr__(self, "layer_normal", a if (norm > 0).any() else None)

    @property
    def layer(self) -> np.ndarray:
        """Elements whose damage follows their in-plane strain (``layer_normal``)."""
        if self.layer_normal is None:
            return np.zeros(self.n_elements, dtype=bool)
        return np.linalg.norm(self.layer_normal, axis=1) > 0

    def intact_moduli(self, E_model) -> np.ndarray:
        """The undamaged moduli E0 the law scales (MPa): ``intact_modulus`` where given, else
        the model's. A pre-damaged element's model modulus is its secant at ``kappa0``."""
        E_model = np.asarray(E_model, dtype=float)
        if self.intact_modulus is None:
            return E_model
        return np.where(np.isfinite(self.intact_modulus), self.intact_modulus, E_model)

    @classmethod
    def uniform(cls, n_elements: int, *, yield_strain_compression: float,
                yield_strain_tension: float, residual: float, softening_strain: float,
                reference_size: float = 1.0, sources=(),
                nonlocal_length: float = 0.0, layer_normal=None) -> DamageLaw:
        """The same law for every element (``layer_normal``: the thin-layer elements' normals,
        class docstring)."""
        def full(v):
            return np.full(int(n_elements), float(v))
        return cls(full(yield_strain_compression), full(yield_strain_tension), full(residual),
                   full(softening_strain), np.zeros(int(n_elements)), float(reference_size),
                   tuple(sources), nonlocal_length=float(nonlocal_length),
                   layer_normal=layer_normal)

    @property
    def n_elements(self) -> int:
        return len(self.residual)

    @property
    def elastic(self) -> np.ndarray:
        """Elements that never yield (infinite yield strains)."""
        return ~(np.isfinite(self.yield_strain_compression)
                 | np.isfinite(self.yield_strain_tension))

    def kappa_s(self, h) -> np.ndarray:
        """End of softening in normalised strain for element sizes h (mm): 1 + softening strain
        (scaled by the crack band; with a nonlocal length, only in elements coarser than
        ``reference_size``) over the compressive yield strain (the normalised history is shared
        by both directions; in tension the softening strain is scaled by eps_yt/eps_yc)."""
        eps_y = np.where(np.isfinite(self.yield_strain_compression),
                         self.yield_strain_compression, self.yield_strain_tension)
        with np.errstate(invalid="ignore", divide="ignore"):
            scale = self.reference_size / np.asarray(h, dtype=float)
            if self.nonlocal_length > 0.0:
                scale = np.minimum(scale, 1.0)
            k = 1.0 + self.softening_strain * scale / eps_y
        return np.where(np.isfinite(k), k, np.inf)

    def with_kappa0(self, kappa0) -> DamageLaw:
        return dataclasses.replace(self, kappa0=np.asarray(kappa0, dtype=float))

    def select(self, elements) -> DamageLaw:
        """The law with every element outside ``elements`` made elastic (e.g. to find the
        strength of one level of a segment)."""
        keep = np.zeros(self.n_elements, dtype=bool)
        keep[np.asarray(elements, dtype=np.int64)] = True
        inf = np.inf
        return dataclasses.replace(
            self, yield_strain_compression=np.where(keep, self.yield_strain_compression, inf),
            yield_strain_tension=np.where(keep, self.yield_strain_tension, inf))

    def kappa_for_modulus_ratio(self, ratio, h) -> np.ndarray:
        """The history kappa at which the secant modulus is ``ratio`` x E0 (0 < ratio <= 1):
        the state of bone whose modulus damage lowered by that factor, on the law's envelope
        (residual strength kept). Elements whose residual cannot give so low a modulus before
        ... are put on the plateau (kappa = residual / ratio)."""
        ratio = np.broadcast_to(np.asarray(ratio, dtype=float), self.residual.shape)
        if ((ratio <= 0) | (ratio > 1)).any():
            raise MaterialError("a modulus ratio of damaged bone must lie in (0, 1]")
        ks = self.kappa_s(h)
        rho = self.residual
        a = np.where(np.isfinite(ks), (1.0 - rho) / np.maximum(ks - 1.0, 1e-300), 0.0)
        k_soft = (1.0 + a) / (ratio + a)  # s(k)/k = ratio on the falling branch
        k_plateau = rho / ratio
        k = np.where(k_soft <= ks, k_soft, np.maximum(k_plateau, ks))
        return np.where(ratio >= 1.0, 0.0, k)


def stress_fraction(kappa, kappa_s, residual):
    """s(kappa): the stress carried at normalised strain history kappa, as a fraction of the
    yield stress (1 up to kappa = 1, linear fall to ``residual`` at ``kappa_s``, then constant).
    Works on numpy and cupy arrays alike."""
    xp = _xp(kappa)
    span = xp.maximum(kappa_s - 1.0, 1e-300)
    falling = 1.0 - (1.0 - residual) * xp.minimum((kappa - 1.0) / span, 1.0)
    return xp.where(kappa <= 1.0, 1.0, falling)


def secant_ratio(kappa, kappa_s, residual):
    """E_secant / E0 = s(kappa) / kappa for kappa > 1, else 1."""
    xp = _xp(kappa)
    s = stress_fraction(kappa, kappa_s, residual)
    return xp.where(kappa <= 1.0, 1.0, s / xp.maximum(kappa, 1.0))


def _xp(a):
    from .kernels.backend import array_module

    return array_module(a)


def normalised_strain(strain, eps_c, eps_t, normal=None):
    """r = max(-e3 / eps_c, e1 / eps_t, 0) of element strains (n, 6) (Voigt xx, yy, zz, xy, yz,
    xz, tensor shear components); infinite yield strains give 0. ``normal``: None, or (n, 3)
    unit normals (zero rows: bulk elements) of thin-layer elements, whose principal strains are
    then those of their in-plane strain ``P eps P``, ``P = I - n n`` (module docstring)."""
    from .result import principal, tensors

    xp = _xp(strain)
    if normal is None:
        p = principal(strain)
    else:  # a zero normal gives P = I: the bulk measure
        P = xp.eye(3)[None, :, :] - normal[:, :, None] * normal[:, None, :]
        p = xp.linalg.eigvalsh(P @ tensors(strain) @ P)[:, ::-1]
    rc = -p[:, 2] / eps_c
    rt = p[:, 0] / eps_t
    return xp.maximum(xp.maximum(rc, rt), 0.0)


# ---------------------------------------------------------------------------- the entry point


def solve_nonlinear(model, law=None, *, backend: str = "auto", solver: str = "auto",
                    control: str = "auto", max_displacement: float | None = None,
                    max_steps: int = 60, first_step: float | None = None,
                    min_step: float | None = None, max_step: float | None = None,
                    grow: float = 1.5, tol: float = 5e-3, max_iterations: int = 20,
                    stop_ratio: float = STOP_RATIO, stop_plateau: float | None = None,
                    stop_offset: float | None = None, rtol: float | None = None, progress=None,
                    increments=None, max_damage_step: float | None = MAX_DAMAGE_STEP,
                    ) -> NonlinearResult:
    """Pushover of ``model`` with the damage ``law`` (:class:`DamageLaw`) past its peak.

    Returns a :class:`~fem.nonlinear_result.NonlinearResult`: a Result per converged step (cell
    data ``damage``, ``kappa``, ``failed``), the force-displacement curve (mm, N), the peak load
    (the strength, N), the displacement at the peak and the energy to failure (mJ). Its
    ``info`` says what the analysis cost: ``linear_solves`` (all of them), ``cut_solves`` (those
    of attempts that were cut: a step that did not converge, or destroyed more than
    ``max_damage_step``, solved again shorter), ``cg_iterations`` (of each CG solve, as the
    large-deformation and plastic analyses give them; empty with the direct solver),
    ``damage_rejections``, ``monotone_steps``, ``time_s`` and ``setup_s``.

    ``law=None`` on a model with von Mises plastic elements (``*PLASTIC`` in a deck,
    :meth:`Model.set_plastic`) runs the elasto-plastic analysis (:func:`fem.plasticity.solve_plastic`,
    load increments as in the deck's ``*STATIC``; ``increments`` overrides them).

    Step control (controlled displacement in mm): ``first_step`` defaults to a twentieth of the
    displacement at first yield beyond it, ``max_step`` to twice the displacement at first yield,
    ``min_step`` to 1/64 of the first; ``max_displacement`` defaults to 30 times the displacement
    at first yield. ``max_damage_step``: the largest share of the yieldable elements' modulus
    (stiffness-weighted) one step may destroy; a converged step that destroyed more is halved
    and solved again (down to ``min_step``), and steps grow only while they destroy less than
    half of it (``None``: steps set by convergence alone, as before 2026-12-06; the peak then
    depends on the step size, docs/nonlinear.md). ``tol``: out-of-balance force over the force
    through the model; ``rtol``: the
    linear solver's tolerance (default ``tol / RTOL_PER_TOL``; at most ``tol / 10``: the
    equilibrium check at every iteration verifies the state whatever it is; the peaks of the
    benchmark L1 at 3 and 2 mm agree to 0.1 % between 2e-4 and 1e-6, docs/nonlinear.md). A step whose
    out-of-balance force stagnates (:func:`_hopeless`) is cut at once. ``progress(step)`` is called after
    each converged step. ``solver``: as :func:`fem.solve` ("auto": the voxel multigrid for voxel
    grids without rigid plates, else direct or AMG-CG).

    Where it ends: once the force has fallen below ``stop_ratio`` of its peak; with
    ``stop_plateau`` (a share of the initial stiffness, e.g. :data:`LIMIT_TANGENT`) also once
    the curve's chord over the last first-yield displacement is flatter than that, a plateau:
    the strength is then the limit load the curve reached (``info["plateau"]`` True, and
    :attr:`~fem.nonlinear_result.NonlinearResult.peak_reached` counts it as reached); with
    ``stop_offset`` (mm of the controlled displacement) also at the first step past the curve's
    offset yield, where it crosses the line of its initial stiffness (the first step's secant)
    shifted by ``stop_offset`` (``info["offset_yield"]`` True, counted as reached:
    :meth:`~fem.nonlinear_result.NonlinearResult.first_failure` with that ``offset`` reads the
    crossing). A study's ``pushover_end = "first_failure"`` uses all three
    (``fem.study.recipe.pushover_stops``).
    """
    if law is None:
        if hasattr(model, "plastic_mask") and model.plastic_mask().any():
            from .plasticity import solve_plastic

            return solve_plastic(model, backend=backend, increments=increments)
        raise MaterialError("solve_nonlinear needs a material law: a DamageLaw (e.g. from "
                            "fem.meshes.strength.bone_damage_law) or plastic elements")
    if not isinstance(law, DamageLaw):
        raise MaterialError(f"law must be a DamageLaw, got {type(law).__name__}")
    if hasattr(model, "to_model") and not hasattr(model, "blocks"):  # a VoxelModel
        model = model.to_model()
    if law.n_elements != model.n_elements:
        raise MaterialError(f"the damage law has {law.n_elements} elements, the model "
                            f"{model.n_elements}")
    in_range("tol", tol, 0.0, 0.1, lo_open=True, error=SolverError)
    in_range("stop_ratio", stop_ratio, 0.0, 1.0, hi_open=True, error=SolverError)
    if stop_plateau is not None:
        in_range("stop_plateau", stop_plateau, 0.0, 1.0, lo_open=True, hi_open=True,
                 error=SolverError)
    if stop_offset is not None:
        in_range("stop_offset", stop_offset, 0.0, lo_open=True, error=SolverError)
    in_range("grow", grow, 1.0, 4.0, error=SolverError)
    if max_damage_step is not None:
        in_range("max_damage_step", max_damage_step, 0.0, 1.0, lo_open=True, error=SolverError)
    if rtol is None:
        rtol = tol / RTOL_PER_TOL
    if not (0.0 < rtol <= 0.1 * tol):
        raise SolverError(f"rtol = {rtol:g} must lie in (0, tol/10 = {0.1 * tol:g}]: the linear "
                          "solves must be more accurate than the equilibrium check")
    if int(max_steps) < 1 or int(max_iterations) < 2:
        raise SolverError("max_steps must be >= 1 and max_iterations >= 2")
    from .nonlinear_systems import make_system
    from .parallel import serial_blas

    t0 = time.perf_counter()
    with serial_blas():  # the same path whatever the caller's BLAS threads
        sysx = make_system(model, law, backend=backend, solver=solver, rtol=rtol,
                           control=control)
        return _drive(sysx, law, max_displacement=max_displacement, max_steps=int(max_steps),
                      first_step=first_step, min_step=min_step, max_step=max_step, grow=grow,
                      tol=tol, max_iterations=int(max_iterations), stop_ratio=stop_ratio,
                      stop_plateau=stop_plateau, stop_offset=stop_offset,
                      progress=progress, t0=t0, max_damage_step=max_damage_step)


def _drive(sysx, law: DamageLaw, *, max_displacement, max_steps, first_step, min_step, max_step,
           grow, tol, max_iterations, stop_ratio, progress, t0, stop_plateau=None,
           stop_offset=None, max_damage_step) -> NonlinearResult:
    """The increment loop over a system (:mod:`fem.nonlinear_systems`)."""
    xp = sysx.xp
    kappa_n = sysx.kappa0  # converged history (backend array, the system's element layout)
    E = sysx.moduli(kappa_n)
    # the elastic (or pre-damaged) reference solution: where does the first element yield?
    ref = sysx.solve(E, None)
    c_ref = sysx.control_of(ref)
    if not (abs(c_ref) > 0.0 and math.isfinite(c_ref)):
        raise SolverError("the loads do no work on the model (controlled displacement "
                          f"{c_ref:g} mm under the reference load): nothing to push over")
    r_ref = sysx.measure(ref)
    r_max = float(xp.max(r_ref)) if r_ref.shape[0] else 0.0
    k_max = float(xp.max(kappa_n)) if kappa_n.shape[0] else 0.0
    if r_max <= 0.0:
        raise MaterialError("no element of the model can yield under this load (every element "
                            "elastic, or strained in no direction its law limits)")
    # first yield of an intact element: lambda_y = 1 / r_max; pre-damaged elements reload
    # linearly along their secant up to their history kappa0
    lam_y = 1.0 / r_max
    if k_max > 1.0:
        ratio = r_ref / xp.maximum(kappa_n, 1.0)
        lam_y = 1.0 / max(float(xp.max(ratio)), 1e-300)
    c_y = abs(c_ref) * lam_y
    sign = 1.0 if c_ref > 0 else -1.0
    first = float(first_step) if first_step is not None else FIRST_STEP * c_y
    dmax = float(max_step) if max_step is not None else MAX_STEP * c_y
    dmin = float(min_step) if min_step is not None else first / 64.0
    cmax = float(max_displacement) if max_displacement is not None else 30.0 * c_y
    for name, v in (("first_step", first), ("max_step", dmax), ("min_step", dmin),
                    ("max_displacement", cmax)):
        if not (v > 0.0 and math.isfinite(v)):
            raise SolverError(f"{name} must be > 0 mm, got {v}")

    steps: list[Step] = []
    n_solves = 1
    E_yield = float(xp.sum(xp.where(sysx.can_yield, sysx.E0, 0.0)))

    def damaged(E_) -> float:
        """Share of the yieldable elements' modulus (stiffness-weighted) lost at moduli E_."""
        return float(xp.sum(sysx.E0 - E_)) / max(E_yield, 1e-300)

    # step 1: linear up to first yield (exact: no element has yielded)
    u = sysx.scale(ref, lam_y)
    kappa_n = xp.maximum(kappa_n, sysx.measure(u))
    E = sysx.moduli(kappa_n)
    steps.append(sysx.step(1, u, lam_y, E, kappa_n, iterations=1, residual=0.0,
                           linear_solves=1))
    if progress is not None:
        progress(steps[-1])
    k_initial = steps[0].force / max(steps[0].control, 1e-300)
    c, lam, u_ref_last = c_y, lam_y, ref
    kappa_prev, c_prev, u_ref_prev = None, 0.0, None
    monotone = []  # steps that converged only with the monotone iteration
    stopped = ""
    plateau = False  # stopped by stop_plateau: the strength is a limit load, not a bound
    offset_yield = False  # stopped by stop_offset: past the curve's offset yield
    dc = first
    cut = False
    peak = steps[-1].force
    D_n = damaged(E)  # of the converged state
    rejected = 0  # converged steps solved again for destroying more than max_damage_step
    cut_solves = 0  # linear solves of the attempts that were cut (not converged or rejected)
    stalled = None  # best out-of-balance of the last attempt from here that did not converge
    skipped = None  # the first step size a straight cut (FUTILE_HALVING) skipped from here
    resumed = False  # the skipped sizes are being tried: no straight cut again from here
    while len(steps) < max_steps and c < cmax - 1e-12 * cmax:
        target = min(c + dc, cmax)
        pred, guess = None, u_ref_last
        if kappa_prev is not None and c > c_prev:
            # the last step's growth of the damage and of the reference solution, extrapolated:
            # the first solve of a step then starts near its answer
            a = (target - c) / (c - c_prev)
            pred = kappa_n + (kappa_n - kappa_prev) * a
            guess = u_ref_last + (u_ref_last - u_ref_prev) * a
        ok, out = _step(sysx, kappa_n, E, guess, sign * target, tol, max_iterations,
                        predictor=pred)
        n_solves += out["solves"]
        if not ok and 0.5 * dc < dmin:
            # the smallest step stalled: iterate it again with the damage only growing from
            # iterate to iterate (a bounded, non-decreasing sequence), which settles where the
            # accelerated iteration cycled (module docstring)
            cut_solves += out["solves"]
            ok, out = _step(sysx, kappa_n, E, guess, sign * target, tol,
                            MONOTONE_ITERATIONS * max_iterations, predictor=pred,
                            monotone=True)
            n_solves += out["solves"]
            if ok:
                monotone.append(len(steps) + 1)
        D_out = damaged(out["E"]) if ok else D_n
        if (max_damage_step is not None and D_out - D_n > max_damage_step
                and 0.5 * dc >= dmin):
            # too long a step: the path through the damage is not resolved (MAX_DAMAGE_STEP)
            logger.info("step %d: %.4g mm destroyed %.3g of the modulus (max_damage_step %g), "
                        "halving", len(steps) + 1, dc, D_out - D_n, max_damage_step)
            rejected += 1
            cut_solves += out["solves"]
            dc *= 0.5
            cut = True
            stalled = None
            continue
        if not ok:
            cut_solves += out["solves"]
            tried, dc = dc, 0.5 * dc
            best = min(out.get("history") or [math.inf])
            if (FUTILE_HALVING is not None and stalled is not None and not resumed
                    and best > FUTILE_HALVING * stalled and 0.5 * dc >= dmin):
                skipped = dc
                while 0.5 * dc >= dmin:  # halving did not help: straight to the smallest step
                    dc *= 0.5
            stalled = best
            if dc < dmin and steps[-1].force < (1.0 - PAST_PEAK) * peak:
                # the peak is bracketed by converged steps on both sides: the strength is
                # known; say why the curve ends here instead of failing the analysis
                stopped = (f"no convergence beyond {c:.4g} mm (step {len(steps) + 1}, "
                           f"out-of-balance {out['residual']:.2e} > tol {tol:g}) after the "
                           f"force had fallen {100 * (1 - steps[-1].force / peak):.1f} % "
                           "below the peak")
                warnings.warn(f"pushover: {stopped}; the curve ends there", stacklevel=3)
                break
            if dc < dmin and len(steps) >= 3 and (_flat(steps) < LIMIT_TANGENT * k_initial
                                                  or steps[-1].force <= steps[-2].force):
                # a limit point: the curve has flattened to a plateau, or stopped rising at a
                # peak, where the secant iteration cannot step on (no equilibrium near the path:
                # a snap-back); its largest force is the strength (a lower bound, said so)
                stopped = (f"the curve reached a limit point at {c:.4g} mm (tangent stiffness "
                           f"{100 * _flat(steps) / k_initial:.1f} % of the initial over the last "
                           f"three steps) where step {len(steps) + 1} did not converge "
                           f"(out-of-balance {out['residual']:.2e} > tol {tol:g}); the strength "
                           "is the largest force reached, a lower bound")
                warnings.warn(f"pushover: {stopped}", stacklevel=3)
                break
            if dc < dmin and skipped is not None:
                # the smallest step failed after a straight cut: the sizes it skipped, one by one
                logger.info("step %d: no convergence at the smallest step after a straight cut; "
                            "halving from %.4g mm instead", len(steps) + 1, skipped)
                dc, skipped, resumed, stalled = skipped, None, True, None
                cut = True
                continue
            if dc < dmin:
                exc = ConvergenceError(
                    f"step {len(steps) + 1} did not converge: the out-of-balance force stayed at "
                    f"{out['residual']:.2e} of the force (tol {tol:g}) after "
                    f"{len(out.get('history', []))} iterations even with a step of {tried:.3g} "
                    f"mm (min_step {dmin:.3g}); reached {c:.4g} mm at {steps[-1].force:.6g} N, "
                    f"load factor {steps[-1].load_factor:.4g} (peak so far {peak:.6g} N; the "
                    "converged steps are in the exception's partial result)",
                    out.get("history", []))
                # the steps that did converge, each verified: not a strength (the curve was
                # still rising), but what a user needs to see where and why it stopped
                exc.partial = NonlinearResult(steps, control_name=sysx.control_name, law=law)
                exc.partial.info = {"stopped": str(exc), "linear_solves": n_solves,
                                    "time_s": time.perf_counter() - t0}
                raise exc
            logger.info("step %d: no convergence with %.4g mm (out-of-balance %.2e), trying %.4g mm",
                        len(steps) + 1, tried, best, dc)
            cut = True
            continue
        stalled, skipped, resumed = None, None, False
        kappa_prev, c_prev, u_ref_prev = kappa_n, c, u_ref_last
        c, lam, u_ref_last = target, out["lam"], out["u_ref"]
        kappa_n, E = out["kappa"], out["E"]
        dD, D_n = D_out - D_n, D_out
        st = sysx.step(len(steps) + 1, out["u"], lam, E, kappa_n, iterations=out["iterations"],
                       residual=out["residual"], linear_solves=out["solves"])
        steps.append(st)
        logger.info("step %d: %.4g mm, %.6g N, %d iterations, %d failed elements, damage "
                    "+%.3g", st.index, st.control, st.force, st.iterations, st.n_failed, dD)
        if progress is not None:
            progress(st)
        peak = max(peak, st.force)
        if st.force < stop_ratio * peak:
            stopped = f"the force fell below {stop_ratio:g} of the peak"
            break
        slope = _window_slope(steps, c_y) if stop_plateau is not None else None
        if slope is not None and slope < stop_plateau * k_initial:
            plateau = True
            stopped = (f"the curve reached a plateau: its slope over the last {c_y:.3g} mm (the "
                       f"displacement at first yield) is {100 * slope / k_initial:.1f} % of the "
                       f"initial stiffness, below stop_plateau {stop_plateau:g}")
            break
        if stop_offset is not None and st.force <= k_initial * (st.control - stop_offset):
            offset_yield = True
            stopped = (f"the curve crossed its initial stiffness's line shifted by "
                       f"{stop_offset:.4g} mm (stop_offset): its offset yield")
            break
        easy = out["iterations"] <= 3 and (max_damage_step is None
                                           or dD <= 0.5 * max_damage_step)
        if easy and not cut:  # no growth right after a cut-back
            dc = min(dc * grow, dmax)
        cut = False
    res = NonlinearResult(steps, control_name=sysx.control_name, law=law)
    res.info = {"stopped": stopped, "plateau": plateau, "offset_yield": offset_yield,
                "backend": sysx.be.name,
                "solver": sysx.solver_name, "n_dof": sysx.n_dof,
                "linear_solves": n_solves, "time_s": time.perf_counter() - t0,
                "first_yield_mm": c_y, "first_yield_n": steps[0].force,
                "setup_s": sysx.setup_time, "monotone_steps": monotone,
                "damage_rejections": rejected, "cut_solves": cut_solves,
                "cg_iterations": list(sysx.cg_iterations)}
    return res


def _window_slope(steps, width: float) -> float | None:
    """The chord slope (N/mm) of the curve from the last converged step at least ``width`` mm
    behind the newest one (never the origin: the first step's end, first yield, at the
    earliest) to the newest; None where the curve is not yet that long. The window is as long
    as the elastic range, so that the equilibrium tolerance's scatter of the forces (about
    0.5 %) over short steps near a snap cannot read as a plateau."""
    c = steps[-1].control
    behind = [s for s in steps[:-1] if s.control <= c - width]
    if not behind:
        return None
    return (steps[-1].force - behind[-1].force) / max(c - behind[-1].control, 1e-300)


def _flat(steps) -> float:
    """The slope (N/mm) of the curve over its last three converged steps (a chord, so that a
    last tiny step does not decide). Negative where the force fell over them: a curve stalled
    within PAST_PEAK of its peak (not yet bracketed by a 1 % fall) is at a limit point too, as
    the fractured L2 of the canonical segment at 1 753 N, which otherwise raised."""
    s = steps[-3:]
    return (s[-1].force - s[0].force) / max(s[-1].control - s[0].control, 1e-300)


def _step(sysx, kappa_n, E, u_ref, target, tol, max_iterations, depth: int = ANDERSON_DEPTH,
          predictor=None, monotone: bool = False):
    """Secant iterations of one step to controlled displacement ``target``; returns
    (converged, data).

    The iteration is a fixed point of the damage history: kappa -> moduli -> solve -> strains ->
    kappa' = max(kappa_n, r). Plain, it converges linearly and slowly where softening elements
    draw strain from their neighbours (a contraction near 1); Anderson acceleration (Walker & Ni
    2011, SIAM J Numer Anal 49:1715) over the last ``depth`` iterates turns that into a few
    iterations. Each iterate is kept at or above the converged history kappa_n (damage does not
    heal), and equilibrium is checked with the moduli of the updated history. ``monotone``: each
    iterate is kept at or above the last one instead (the fallback for a stalled step,
    :func:`_drive`), and the step is not cut for stagnating."""
    xp = sysx.xp
    history = []
    solves = 0
    res = math.inf
    x = kappa_n  # the history the moduli E come from
    if predictor is not None:  # the damage growth of the last step, extrapolated
        x = xp.maximum(kappa_n, predictor)
        E = sysx.moduli(x)
    X, G = [], []  # Anderson memory: iterates and their images
    Es, Us = [], []  # the moduli solved with and their solutions: the next solve's start
    for it in range(1, max_iterations + 1):
        u_ref = sysx.solve(E, _start(xp, Es, Us, E, u_ref))
        solves += 1
        Es.append(E)
        Us.append(u_ref)
        if len(Es) > GUESS_DEPTH:
            Es.pop(0)
            Us.pop(0)
        c_ref = sysx.control_of(u_ref)
        if c_ref == 0.0 or not math.isfinite(c_ref):
            return False, {"residual": math.inf, "solves": solves, "history": history}
        lam = target / c_ref
        u = sysx.scale(u_ref, lam)
        # monotone: the iterates' damage is kept as history, so once the strains stop growing
        # past it the moduli solved with are the state's and equilibrium holds
        g = xp.maximum(x if monotone else kappa_n, sysx.measure(u))
        E_new = sysx.moduli(g)
        res = sysx.residual(E_new, u, lam)
        history.append(res)
        if not math.isfinite(res):
            break
        if res <= tol:
            return True, {"u": u, "u_ref": u_ref, "lam": lam, "kappa": g, "E": E_new,
                          "iterations": it, "residual": res, "solves": solves,
                          "history": history}
        if not monotone and _hopeless(history, tol, max_iterations):
            break
        X.append(x)
        G.append(g)
        if len(X) > depth + 1:
            X.pop(0)
            G.pop(0)
        x = xp.maximum(x if monotone else kappa_n, _anderson(xp, X, G))
        E = sysx.moduli(x)
    return False, {"residual": res, "solves": solves, "history": history}


def _start(xp, Es, Us, E, last):
    """The start of the next secant solve at moduli E: the last solution plus the combination of
    the last solutions' differences whose moduli differences best match E's change (least
    squares). The solution is linear in the moduli change to first order (dK u + K du = 0), so
    where the iterates' damage grows along a few directions this starts CG near its answer; with
    fewer than two solves it is the last solution."""
    if len(Es) < 2:
        return last
    D = [Es[i + 1] - Es[i] for i in range(len(Es) - 1)]
    c = _least_squares(xp, D, E - Es[-1])
    if c is None:
        return last
    out = last.copy()
    for i in range(len(D)):
        out += c[i] * (Us[i + 1] - Us[i])
    return out


def _least_squares(xp, D, d):
    """The coefficients c (host) minimising ``|sum_i c_i D_i - d|`` over backend arrays D_i, by
    the normal equations with a 1e-10 relative ridge (the D_i of a stalling iteration are nearly
    parallel); None where every D_i is zero or the system is singular."""
    m = len(D)
    A = np.array([[float(xp.sum(D[i] * D[j])) for j in range(m)] for i in range(m)])
    b = np.array([float(xp.sum(D[i] * d)) for i in range(m)])
    scale = float(np.trace(A))
    if not scale > 0.0:
        return None
    try:
        return np.linalg.solve(A + 1e-10 * scale * np.eye(m), b)
    except np.linalg.LinAlgError:
        return None


def _hopeless(history, tol: float, max_iterations: int) -> bool:
    """Whether the out-of-balance force, at the rate it fell over the last three iterations
    (best of those against the best before them), would still be above ``tol`` after
    ``max_iterations``: a step that stagnates is cut at once instead of iterating on (each
    iteration is a linear solve)."""
    n = len(history)
    if n < STAGNATION_CHECK or history[-1] <= tol:
        return False
    before, last = min(history[:-3]), min(history[-3:])
    if last >= before:
        return True
    rate = (last / before) ** (1.0 / 3.0)
    return n + math.log(tol / last) / math.log(rate) > max_iterations


def _anderson(xp, X, G):
    """The Anderson-mixed next iterate from iterates X and images G (backend arrays): only
    elements past yield (max of x and g above 1) count, the others' history does not change
    their modulus."""
    g = G[-1]
    if len(X) < 2:
        return g
    active = xp.maximum(X[-1], g) > 1.0
    F = [xp.where(active, gi - xi, 0.0) for xi, gi in zip(X, G)]
    dF = [F[i + 1] - F[i] for i in range(len(F) - 1)]
    dG = [G[i + 1] - G[i] for i in range(len(G) - 1)]
    gamma = _least_squares(xp, dF, F[-1])
    if gamma is None:
        return g
    out = g
    for i in range(len(dF)):
        out = out - gamma[i] * dG[i]
    return out


def model_with_moduli(model, E):
    """A shallow copy of ``model`` whose per-element moduli are ``E`` (host array, MPa)."""
    m = copy.copy(model)
    m.E = np.asarray(E, dtype=float)
    return m


__all__ = ["DamageLaw", "solve_nonlinear", "stress_fraction", "secant_ratio",
           "normalised_strain"]
