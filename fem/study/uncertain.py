"""Uncertain inputs of a study: distributions, sampling designs, common random numbers.

A spec's ``[uncertain]`` table names run parameters that are not known exactly, each with a
distribution, and how to sample them::

    [uncertain]
    design = "lhs"          # montecarlo, lhs, sobol or saltelli
    samples = 64            # saltelli: base samples N, N (d + 2) sampled patients
    seed = 1                # the same seed gives the same samples, on every machine

    [uncertain.parameters.bmd]      # units as in the spec: mg/cm^3
    distribution = "truncnormal"
    mean = 70.0
    sd = 15.0
    low = 30.0
    high = 120.0

    [uncertain.parameters.density_law]
    distribution = "choice"
    values = ["morgan2003", "kopperdahl1998"]
    weights = [0.5, 0.5]

The sampled parameters sit in ``[uncertain.parameters]`` (``seed`` is both the design's seed and
a run parameter, the cement spread's seed, which can be sampled too). Distributions
(:data:`DISTRIBUTIONS`): ``normal`` (mean, sd), ``lognormal`` (mean, sd of the
value itself, > 0), ``uniform`` (low, high), ``truncnormal`` (mean, sd, low, high: the normal cut
to [low, high]) and ``choice`` (values, optional weights; the only one for text and true/false
parameters). An integer parameter (``seed``, ``fracture_grade``) takes the continuous value
rounded to the nearest integer, so a ``uniform`` from 1 to 3 gives the end values half the
weight of the middle one (1 / 2 / 3 at 25 / 50 / 25 %): for whole numbers at chosen weights use
``choice``, whose values must then be whole numbers.

Every design draws points ``u`` in the unit cube, one coordinate per uncertain input, and maps each
coordinate through its distribution's inverse CDF (``ppf``), so the same machinery serves
continuous and discrete inputs:

* ``montecarlo``: independent uniform points (NumPy's PCG64 from ``seed``);
* ``lhs``: a Latin hypercube (:class:`scipy.stats.qmc.LatinHypercube`);
* ``sobol``: a scrambled Sobol sequence (:class:`scipy.stats.qmc.Sobol`; ``samples`` a power of 2);
* ``saltelli``: the Saltelli design for first-order and total Sobol indices
  (:func:`SALib.sample.sobol.sample`, without second-order terms): ``samples`` = N base points
  (a power of 2) give N (d + 2) sampled patients, in SALib's block order, which
  :mod:`fem.study.uq` hands back to :func:`SALib.analyze.sobol.analyze`.

**Common random numbers.** Sample ``i`` is one sampled patient: its values go to *every* run of
``[[runs]]`` and every grid point (a run's parameter ``sample`` = i), so "PKP against PVP" is a
difference within each sample, not a difference of two independent means.

A parameter sampled here may not also be listed in ``[base]``, ``[grid]`` or ``[[runs]]``. Every
sampled value is checked against the parameter's limits before any run starts, like every other
value of the spec; a value outside them names the sample and suggests a truncated distribution.
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass

import numpy as np

DESIGNS = ("montecarlo", "lhs", "sobol", "saltelli")
#: distribution -> its required and optional arguments
DISTRIBUTIONS = {
    "normal": (("mean", "sd"), ()),
    "lognormal": (("mean", "sd"), ()),
    "uniform": (("low", "high"), ()),
    "truncnormal": (("mean", "sd", "low", "high"), ()),
    "choice": (("values",), ("weights",)),
}
#: the most sampled inputs one study may have
MAX_INPUTS = 32
#: unit-cube coordinates are kept this far inside (0, 1), where a normal's ppf is finite
_EDGE = 1e-12


class UncertainError(ValueError):
    """A fault in ``[uncertain]``: ``key`` is the dotted key (``uncertain.bmd.sd``)."""

    def __init__(self, message: str, key: str):
        self.key = key
        super().__init__(message)


@dataclass(frozen=True)
class Distribution:
    """One uncertain parameter: its name, distribution kind and arguments."""

    name: str
    kind: str
    args: tuple  # ((argument, value), ...), sorted: hashable and stable in the store

    @property
    def arg(self) -> dict:
        return dict(self.args)

    @classmethod
    def from_dict(cls, name: str, d) -> Distribution:
        key = f"uncertain.parameters.{name}"
        if not isinstance(d, dict):
            raise UncertainError("an uncertain parameter is a table [uncertain.parameters.<name>] "
                                 "with a distribution and its arguments", key)
        kind = d.get("distribution")
        if kind not in DISTRIBUTIONS:
            raise UncertainError(f"distribution must be one of {', '.join(DISTRIBUTIONS)}, got "
                                 f"{kind!r}", key + ".distribution")
        need, optional = DISTRIBUTIONS[kind]
        for k in d:
            if k != "distribution" and k not in need + optional:
                raise UncertainError(f"unknown argument of a {kind} distribution; it takes "
                                     f"{', '.join(need + optional)}", f"{key}.{k}")
        for k in need:
            if k not in d:
                raise UncertainError(f"a {kind} distribution needs {', '.join(need)}",
                                     f"{key}.{k}")
        args = {k: d[k] for k in need + optional if k in d}
        if kind == "choice":
            _check_choice(args, key)
        else:
            for k, v in args.items():
                if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                    raise UncertainError(f"must be a finite number, got {v!r}", f"{key}.{k}")
                args[k] = float(v)
            if "sd" in args and not args["sd"] > 0:
                raise UncertainError(f"sd must be > 0, got {args['sd']}", f"{key}.sd")
            if "low" in args and not args["high"] > args["low"]:
                raise UncertainError(f"high ({args['high']}) must exceed low ({args['low']})",
                                     f"{key}.high")
            if kind == "lognormal" and not args["mean"] > 0:
                raise UncertainError(f"a lognormal's mean must be > 0, got {args['mean']}",
                                     f"{key}.mean")
            if kind == "truncnormal" and not args["low"] <= args["mean"] <= args["high"]:
                raise UncertainError(f"the mean ({args['mean']}) must lie in low..high "
                                     f"({args['low']}..{args['high']})", f"{key}.mean")
        frozen = tuple(sorted((k, tuple(v) if isinstance(v, list) else v)
                              for k, v in args.items()))
        return cls(name, kind, frozen)

    def to_dict(self) -> dict:
        return {"distribution": self.kind,
                **{k: list(v) if isinstance(v, tuple) else v for k, v in self.args}}

    @property
    def categorical(self) -> bool:
        return self.kind == "choice"

    def ppf(self, u: np.ndarray) -> list:
        """The values at unit-cube coordinates ``u`` (the inverse CDF)."""
        from scipy import stats

        a = self.arg
        u = np.clip(np.asarray(u, dtype=float), _EDGE, 1.0 - _EDGE)
        if self.kind == "choice":
            w = np.asarray(a.get("weights", [1.0] * len(a["values"])), dtype=float)
            edges = np.cumsum(w) / w.sum()
            idx = np.minimum(np.searchsorted(edges, u, side="right"), len(w) - 1)
            return [a["values"][i] for i in idx]
        if self.kind == "normal":
            x = stats.norm.ppf(u, loc=a["mean"], scale=a["sd"])
        elif self.kind == "lognormal":
            s2 = math.log1p((a["sd"] / a["mean"]) ** 2)
            x = np.exp(math.log(a["mean"]) - s2 / 2 + math.sqrt(s2) * stats.norm.ppf(u))
        elif self.kind == "uniform":
            x = a["low"] + u * (a["high"] - a["low"])
        else:
            lo, hi = (a["low"] - a["mean"]) / a["sd"], (a["high"] - a["mean"]) / a["sd"]
            x = stats.truncnorm.ppf(u, lo, hi, loc=a["mean"], scale=a["sd"])
        return [float(v) for v in x]

    def describe(self) -> str:
        a = self.arg
        if self.kind == "choice":
            w = a.get("weights")
            return "one of " + ", ".join(
                f"{v}" + (f" ({wi / sum(w):.0%})" if w else "") for v, wi in
                zip(a["values"], w or [None] * len(a["values"])))
        return f"{self.kind}(" + ", ".join(f"{k}={v:g}" for k, v in self.args) + ")"


def _check_choice(args: dict, key: str):
    values = args["values"]
    if not isinstance(values, list) or not values:
        raise UncertainError("values must be a non-empty list", key + ".values")
    if len({json_key(v) for v in values}) != len(values):
        raise UncertainError(f"values lists a value twice: {values!r}", key + ".values")
    if "weights" in args:
        w = args["weights"]
        if (not isinstance(w, list) or len(w) != len(values)
                or any(isinstance(x, bool) or not isinstance(x, (int, float)) for x in w)):
            raise UncertainError(f"weights must be a list of {len(values)} numbers, one per "
                                 "value", key + ".weights")
        if any(not (math.isfinite(x) and x >= 0) for x in w) or not sum(w) > 0:
            raise UncertainError(f"weights must be >= 0 and not all 0, got {w!r}",
                                 key + ".weights")
        args["weights"] = [float(x) for x in w]


def json_key(v):
    return (type(v).__name__, v)


@dataclass(frozen=True)
class Uncertain:
    """The ``[uncertain]`` table: design, number of samples, seed and the sampled inputs."""

    design: str
    samples: int
    seed: int
    inputs: tuple  # of Distribution, in the spec's order

    @classmethod
    def from_dict(cls, d) -> Uncertain:
        if not isinstance(d, dict):
            raise UncertainError("[uncertain] is a table", "uncertain")
        design = d.get("design", "montecarlo")
        if design not in DESIGNS:
            raise UncertainError(f"design must be one of {', '.join(DESIGNS)}, got {design!r}",
                                 "uncertain.design")
        n = d.get("samples")
        if isinstance(n, bool) or not isinstance(n, int) or n < 2:
            raise UncertainError(f"samples must be an integer >= 2, got {n!r}",
                                 "uncertain.samples")
        if design in ("sobol", "saltelli") and n & (n - 1):
            lo = 1 << (n.bit_length() - 1)
            raise UncertainError(f"a {design} design needs a power of 2 samples (its balance "
                                 f"holds only there), got {n}: use {lo} or {2 * lo}",
                                 "uncertain.samples")
        seed = d.get("seed", 0)
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**63:
            raise UncertainError(f"seed must be an integer in 0..2^63-1, got {seed!r}",
                                 "uncertain.seed")
        for k in d:
            if k not in ("design", "samples", "seed", "parameters"):
                raise UncertainError("unknown key in [uncertain] (design, samples, seed, and the "
                                     "sampled parameters in [uncertain.parameters.<name>])",
                                     f"uncertain.{k}")
        table = d.get("parameters", {})
        if not isinstance(table, dict):
            raise UncertainError("[uncertain.parameters] is a table of parameters",
                                 "uncertain.parameters")
        inputs = tuple(Distribution.from_dict(k, v) for k, v in table.items())
        if not inputs:
            raise UncertainError("[uncertain] samples no parameter: add "
                                 "[uncertain.parameters.<name>] tables", "uncertain")
        if len(inputs) > MAX_INPUTS:
            raise UncertainError(f"{len(inputs)} uncertain parameters, more than "
                                 f"{MAX_INPUTS}", "uncertain")
        if design == "saltelli" and len(inputs) < 2:
            raise UncertainError("Sobol indices (design = 'saltelli') need at least 2 uncertain "
                                 "parameters", "uncertain.design")
        return cls(design, n, seed, inputs)

    def to_dict(self) -> dict:
        return {"design": self.design, "samples": self.samples, "seed": self.seed,
                "parameters": {x.name: x.to_dict() for x in self.inputs}}

    @property
    def names(self) -> list[str]:
        return [x.name for x in self.inputs]

    @property
    def size(self) -> int:
        """The number of sampled patients: ``samples``, or N (d + 2) for a Saltelli design."""
        d = len(self.inputs)
        return self.samples * (d + 2) if self.design == "saltelli" else self.samples

    def problem(self) -> dict:
        """The SALib problem of the unit cube (one unit interval per input)."""
        return {"num_vars": len(self.inputs), "names": self.names,
                "bounds": [[0.0, 1.0]] * len(self.inputs)}

    def unit(self) -> np.ndarray:
        """The design's points in the unit cube, (size, d), in sample order."""
        d = len(self.inputs)
        if self.design == "montecarlo":
            return np.random.default_rng(self.seed).random((self.samples, d))
        if self.design in ("lhs", "sobol"):
            from scipy.stats import qmc

            cls = qmc.LatinHypercube if self.design == "lhs" else qmc.Sobol
            # the random state keyword is rng from SciPy 1.15 on, seed before
            kw = "rng" if "rng" in inspect.signature(cls).parameters else "seed"
            return cls(d, **{kw: self.seed}).random(self.samples)
        try:
            from SALib.sample import sobol
        except ImportError:
            raise UncertainError("a saltelli design needs SALib: pip install "
                                 "'vertebra-fem[study]'", "uncertain.design") from None
        return sobol.sample(self.problem(), self.samples, calc_second_order=False,
                            scramble=True, seed=self.seed)

    def values(self) -> list[dict]:
        """Each sampled patient's parameter values, in sample order (integer parameters are
        rounded by the spec, which knows their kinds)."""
        u = self.unit()
        cols = [x.ppf(u[:, j]) for j, x in enumerate(self.inputs)]
        return [{x.name: cols[j][i] for j, x in enumerate(self.inputs)} for i in range(len(u))]
