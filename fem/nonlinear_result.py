"""The outcome of a nonlinear (incremental) analysis: one :class:`~fem.result.Result` per converged
step and the force-displacement curve, with its peak (the strength), the displacement at the peak
and the energy to failure.

Units: displacement mm, force N, energy mJ (= N mm).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import InputFileError, ParameterError
from .validate import in_range

#: a fall of at least this share below the curve's running maximum marks a failure
#: (:attr:`NonlinearResult.first_peak_load`): the curve's first local maximum that a real fall
#: follows, as a cadaver test's operator reads the first drop of its curve as the failure load.
#: Two per cent is four times the default equilibrium tolerance (``tol`` of
#: :func:`fem.solve_nonlinear`, 5e-3 of the force), so that no fall within a step's force
#: error counts, and nothing more: in a segment a level's curve can fall by 4-10 % where its
#: first region fails and then rise far past it as the bone around that region and the discs
#: take over (docs/nonlinear.md, "The first failure"), and a larger threshold then reads that
#: later rise on some inputs and not on others. It was 0.1 until 2026-12-07: the intact
#: canonical L2 under standing read 1 235, 1 369, 1 091, 1 696 and 1 847 N at BMD 50, 60, 70,
#: 80 and 100 mg/cm^3
FIRST_PEAK_DROP = 0.02
#: the offset of a level's offset yield, a share of its height (its mean anterior and posterior
#: height, :func:`fem.anatomy.level_height`): 0.2 %, the offset yield of materials testing (a
#: convention, not a fit). Since 2026-12-07 a level's first failure is the first of a fall of
#: :data:`FIRST_PEAK_DROP` and this offset yield (:meth:`NonlinearResult.first_failure` with
#: ``offset``): a level loaded through its discs can bend over without falling, and its curve's
#: plateau, millimetres on, read a fractured or cemented level stronger than it yields
#: (docs/nonlinear.md, "The first failure")
OFFSET_YIELD = 0.002


def reached_at(curve, force: float) -> tuple[float, float]:
    """(deformation mm, energy mJ) where a force-displacement ``curve`` ((n, 2): displacement,
    force, from the origin) first reaches ``force`` (N), linear between its points, and the
    area under it up to there: where a strength read off the curve was reached (a running
    maximum or a plateau's is a point of the curve, an offset yield lies between two). NaN
    where the curve never reaches it."""
    c = np.asarray(curve, dtype=float)
    tol = 1e-9 * max(abs(force), 1.0)
    hit = np.nonzero(c[:, 1] >= force - tol)[0] if np.isfinite(force) else []
    if not len(hit):
        return float("nan"), float("nan")
    i = int(hit[0])
    if i == 0 or c[i, 1] - c[i - 1, 1] <= 0.0:
        x = float(c[i, 0])
        return x, float(np.trapezoid(c[: i + 1, 1], c[: i + 1, 0])) if i else 0.0
    t = min(max((force - c[i - 1, 1]) / (c[i, 1] - c[i - 1, 1]), 0.0), 1.0)
    x = float(c[i - 1, 0] + t * (c[i, 0] - c[i - 1, 0]))
    head = np.trapezoid(c[:i, 1], c[:i, 0]) if i > 1 else 0.0
    return x, float(head + 0.5 * (c[i - 1, 1] + force) * (x - c[i - 1, 0]))


@dataclass
class Step:
    """One converged increment.

    ``load_factor``: the multiple of the model's loads (and prescribed displacements) carried at
    the end of the step; ``control``: the controlled displacement (mm, positive in the load's
    direction); ``force``: the load conjugate to it (N, positive in the load's direction);
    ``iterations``: equilibrium iterations the step took; ``residual``: its final relative
    equilibrium residual; ``result``: the fields at the end of the step (its
    ``extra_cell_fields`` hold the material state, e.g. ``damage``, ``yielded``, ``peeq``).
    """

    index: int
    load_factor: float
    control: float
    force: float
    iterations: int
    residual: float
    result: object
    n_failed: int = 0
    linear_solves: int = 0


@dataclass
class NonlinearResult:
    """Steps of an incremental analysis and its force-displacement curve.

    ``curve`` starts at the origin: (n_steps + 1, 2) columns displacement (mm), force (N).
    ``peak_load`` is the largest force reached (N): the strength; ``displacement_at_peak`` (mm);
    ``energy_to_failure`` the area under the curve up to the peak (mJ = N mm).
    ``first_peak_load`` the force at the first fall of at least :data:`FIRST_PEAK_DROP` (N).
    ``peak_reached`` says whether the curve fell after its peak, or stopped on a plateau (else
    the strength is a lower bound: the analysis stopped before the peak, at
    ``max_displacement`` or ``max_steps``).
    """

    steps: list
    control_name: str = "displacement"
    law: object = None
    info: dict = field(default_factory=dict)

    @property
    def curve(self) -> np.ndarray:
        pts = [(0.0, 0.0)] + [(s.control, s.force) for s in self.steps]
        return np.asarray(pts, dtype=float)

    @property
    def _peak_index(self) -> int:
        return int(np.argmax(self.curve[:, 1]))

    @property
    def peak_load(self) -> float:
        return float(self.curve[self._peak_index, 1])

    @property
    def first_peak_load(self) -> float:
        """The force (N) at the curve's first failure, :meth:`first_failure` with
        :data:`FIRST_PEAK_DROP`."""
        return self.first_failure()

    def first_failure(self, drop: float = FIRST_PEAK_DROP, offset: float | None = None) -> float:
        """The force (N) at the curve's first failure: its running maximum when the force first
        falls at least ``drop`` (a share) below it, as a testing machine's operator reads the
        first drop of a curve. :attr:`peak_load` where the force never fell so far (a curve
        that rises to the end, or stops at its only peak before such a fall), so it is never
        above the peak load.

        With ``offset`` (mm of the controlled displacement), whichever comes first along the
        curve: that fall, or the curve crossing its initial stiffness's line shifted by
        ``offset`` (:meth:`offset_yield`, read at the crossing), as the yield of a curve that
        bends over without falling. A fall found at the step that crosses counts as the fall.
        ``None``: the fall alone."""
        return self._first_failure(drop, offset)[0]

    def first_failure_kind(self, drop: float = FIRST_PEAK_DROP,
                           offset: float | None = None) -> str:
        """What :meth:`first_failure` read with these arguments: ``"fall"``, ``"offset"`` (the
        offset yield), or, where neither happened, the curve's largest force: ``"plateau"``
        where the analysis stopped on one (``info["plateau"]``, a limit load), else ``"cap"``
        (it stopped still rising: a lower bound). A study's ``strength_pushover_by``."""
        return self._first_failure(drop, offset)[1]

    def _first_failure(self, drop: float, offset: float | None) -> tuple[float, str]:
        in_range("drop", drop, 0.0, 1.0, lo_open=True, hi_open=True, error=ParameterError)
        gap = None
        if offset is not None:
            in_range("offset", offset, 0.0, lo_open=True, error=ParameterError)
            gap = self._offset_gap(offset)
        top = 0.0
        for i, force in enumerate(self.curve[:, 1]):
            top = max(top, float(force))
            if force < (1.0 - drop) * top:
                return top, "fall"
            if gap is not None and i >= 1 and gap[i] <= 0.0:
                return self._crossing(gap, i), "offset"
        return self.peak_load, "plateau" if self.info.get("plateau") else "cap"

    def _offset_gap(self, offset: float):
        """The curve's force above its initial stiffness's line shifted by ``offset`` (N, one per
        point of :attr:`curve`), or None where the curve has no first step to take it from."""
        c = self.curve
        if len(c) < 2 or c[1, 0] <= 0.0:
            return None
        k0 = c[1, 1] / c[1, 0]
        return c[:, 1] - k0 * (c[:, 0] - offset)

    def _crossing(self, gap, i: int) -> float:
        """The force where the curve crosses the shifted line between points i - 1 and i."""
        c = self.curve
        t = gap[i - 1] / (gap[i - 1] - gap[i])
        return float(c[i - 1, 1] + t * (c[i, 1] - c[i - 1, 1]))

    def offset_yield(self, offset: float) -> float:
        """The force (N) where the curve crosses the line of its initial stiffness shifted by
        ``offset`` (mm of the controlled displacement): the offset yield of materials testing
        (``offset`` = :data:`OFFSET_YIELD` of a level's height is the usual choice), linear
        between converged steps. The initial stiffness is the first step's secant (the curve is
        elastic up to first yield, where the first step ends). NaN where the curve has not
        crossed it (the analysis stopped first); on a curve run on past a fall, the first
        crossing wherever it is. Studies write it as ``strength_offset_yield_n``; their headline
        strength is :meth:`first_failure` with this offset (the first of a fall and this)."""
        in_range("offset", offset, 0.0, lo_open=True, error=ParameterError)
        gap = self._offset_gap(offset)
        if gap is None:
            return float("nan")
        below = np.nonzero(gap <= 0.0)[0]
        if not len(below):
            return float("nan")
        return self._crossing(gap, int(below[0]))  # gap[0] = k0 offset > 0, so i >= 1

    @property
    def displacement_at_peak(self) -> float:
        return float(self.curve[self._peak_index, 0])

    @property
    def energy_to_failure(self) -> float:
        c = self.curve[: self._peak_index + 1]
        return float(np.trapezoid(c[:, 1], c[:, 0])) if len(c) > 1 else 0.0

    @property
    def peak_reached(self) -> bool:
        """The curve fell after its peak, or the analysis stopped on a plateau (``stop_plateau``
        of :func:`fem.solve_nonlinear`: a limit load) or at its offset yield (``stop_offset``);
        else the strength is a lower bound."""
        return (self._peak_index < len(self.curve) - 1 or bool(self.info.get("plateau"))
                or bool(self.info.get("offset_yield")))

    @property
    def final(self):
        """The :class:`~fem.result.Result` of the last converged step."""
        return self.steps[-1].result

    @property
    def peak(self):
        """The :class:`~fem.result.Result` at the peak load."""
        return self.steps[max(self._peak_index - 1, 0)].result

    def summary(self) -> str:
        s = (f"{len(self.steps)} steps: peak load {self.peak_load:.6g} N at "
             f"{self.displacement_at_peak:.4g} mm, energy to failure {self.energy_to_failure:.4g} mJ")
        if not self.peak_reached:
            s += " (the curve had not fallen yet: the strength is a lower bound)"
        n_it = sum(st.iterations for st in self.steps)
        n_lin = sum(st.linear_solves for st in self.steps)
        return s + f"; {n_it} equilibrium iterations, {n_lin} linear solves"

    def curve_table(self):
        """The curve as a pandas DataFrame: step, displacement_mm, force_n, load_factor,
        failed_elements."""
        import pandas as pd

        rows = [{"step": 0, "displacement_mm": 0.0, "force_n": 0.0, "load_factor": 0.0,
                 "failed_elements": 0}]
        rows += [{"step": s.index, "displacement_mm": s.control, "force_n": s.force,
                  "load_factor": s.load_factor, "failed_elements": s.n_failed}
                 for s in self.steps]
        return pd.DataFrame(rows)

    def write(self, path) -> Path:
        """Write the final state as a VTU file (atomically); returns the path."""
        return self.final.write(path)

    def write_series(self, directory) -> Path:
        """Write every step as ``step_0001.vtu`` ... and a ParaView collection ``steps.pvd``
        (time = controlled displacement in mm) in ``directory``; returns the .pvd path."""
        from .io.atomic import atomic_path

        d = Path(directory)
        if d.exists() and not d.is_dir():
            raise InputFileError(f"{d} exists and is not a directory")
        d.mkdir(parents=True, exist_ok=True)
        entries = []
        for s in self.steps:
            name = f"step_{s.index:04d}.vtu"
            s.result.write(d / name)
            entries.append(f'    <DataSet timestep="{s.control:.9g}" part="0" file="{name}"/>')
        pvd = ('<?xml version="1.0"?>\n<VTKFile type="Collection" version="0.1">\n'
               "  <Collection>\n" + "\n".join(entries) + "\n  </Collection>\n</VTKFile>\n")
        out = d / "steps.pvd"
        with atomic_path(out) as tmp:
            Path(tmp).write_text(pvd)
        return out
