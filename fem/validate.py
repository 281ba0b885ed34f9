"""Small checks shared by every dataclass and reader that validates user input."""

from __future__ import annotations

import math

import numpy as np

from .errors import ModelError


def finite(name: str, value, error=ModelError) -> float:
    """``value`` as a float; raises if it is not a finite number."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise error(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(v):
        raise error(f"{name} must be finite, got {v}")
    return v


def in_range(name: str, value, lo=-math.inf, hi=math.inf, *, lo_open=False, hi_open=False,
             unit: str = "", error=ModelError) -> float:
    """``value`` as a float inside [lo, hi] (or the open ends asked for); raises otherwise."""
    v = finite(name, value, error)
    below = v <= lo if lo_open else v < lo
    above = v >= hi if hi_open else v > hi
    if below or above:
        left = "(" if lo_open else "["
        right = ")" if hi_open else "]"
        u = f" {unit}" if unit else ""
        raise error(f"{name} = {v:g}{u} is outside the allowed range {left}{lo:g}, {hi:g}{right}")
    return v


def vector3(name: str, value, allow_none: bool = False, error=ModelError) -> tuple:
    """A 3-vector of finite floats (entries may be ``None`` with ``allow_none``)."""
    try:
        items = list(value)
    except TypeError:
        raise error(f"{name} must have 3 components, got {value!r}") from None
    if len(items) != 3:
        raise error(f"{name} must have 3 components, got {len(items)}")
    out = []
    for axis, v in zip("xyz", items):
        if v is None and allow_none:
            out.append(None)
        else:
            out.append(finite(f"{name}[{axis}]", v, error))
    return tuple(out)


def finite_array(name: str, a, error=ModelError) -> np.ndarray:
    """A float64 array with no NaN or infinity; the message gives the first bad index."""
    arr = np.asarray(a, dtype=float)
    bad = ~np.isfinite(arr)
    if bad.any():
        idx = np.argwhere(bad)[0]
        raise error(f"{name} has a non-finite value {arr[tuple(idx)]} at index {tuple(int(i) for i in idx)}")
    return arr
