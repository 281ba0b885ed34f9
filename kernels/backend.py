"""Backend choice: the one place that decides between NumPy/SciPy and CuPy.

Everything numeric in vertebra-fem takes arrays and asks :func:`array_module` which module they
belong to, like CuPy's ``get_array_module``. Only this module imports cupy, and only when asked for
it: ``backend="auto"`` picks CuPy when ``import cupy`` and ``import cupyx.scipy.sparse.linalg``
succeed *and* ``cupy.is_available()`` says a GPU is present; otherwise NumPy, saying so once.
Setting the environment variable ``FEM_BACKEND=numpy`` forces the CPU whatever is installed.
"""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass
from types import ModuleType

import numpy as np

logger = logging.getLogger(__name__)

BACKENDS = ("auto", "numpy", "cupy")


class BackendError(RuntimeError):
    """The requested backend cannot be used on this machine."""


@dataclass(frozen=True)
class Backend:
    """An array module with its matching sparse and sparse-linear-algebra modules."""

    name: str
    xp: ModuleType
    sparse: ModuleType
    splinalg: ModuleType

    def to_host(self, a) -> np.ndarray:
        """Copy an array of this backend to a NumPy array (only at I/O boundaries)."""
        if self.name == "cupy":
            return self.xp.asnumpy(a)
        return np.asarray(a)


_announced: set[str] = set()


def _numpy_backend() -> Backend:
    import scipy.sparse
    import scipy.sparse.linalg

    return Backend("numpy", np, scipy.sparse, scipy.sparse.linalg)


def cupy_unavailable_reason() -> str | None:
    """Why CuPy cannot be used here (``None`` when it can)."""
    try:
        import cupy
        import cupyx.scipy.sparse.linalg  # noqa: F401
    except Exception as exc:  # ImportError, or a CUDA library failing to load
        return f"cupy is not importable ({type(exc).__name__}: {exc})"
    try:
        if not cupy.is_available():
            return "cupy is installed but no CUDA GPU is available"
    except Exception as exc:
        return f"cupy cannot reach a GPU ({type(exc).__name__}: {exc})"
    return None


def _cupy_backend() -> Backend:
    import cupy
    import cupyx.scipy.sparse
    import cupyx.scipy.sparse.linalg

    return Backend("cupy", cupy, cupyx.scipy.sparse, cupyx.scipy.sparse.linalg)


def get_backend(name: str | None = "auto") -> Backend:
    """Return the backend called ``name`` ("auto", "numpy" or "cupy").

    ``FEM_BACKEND=numpy`` in the environment turns "auto" and "cupy" requests into NumPy.
    Asking for "cupy" where it cannot run raises :class:`BackendError` saying why.
    """
    name = (name or "auto").lower()
    if name not in BACKENDS:
        raise BackendError(f"unknown backend {name!r}: choose one of {', '.join(BACKENDS)}")
    forced = os.environ.get("FEM_BACKEND", "").strip().lower()
    if forced and forced not in ("numpy", "cupy", "auto"):
        raise BackendError(f"FEM_BACKEND={forced!r} is not a backend: use numpy, cupy or auto")
    if forced == "numpy":
        name = "numpy"
    elif forced == "cupy" and name == "auto":
        name = "cupy"
    if name == "numpy":
        return _numpy_backend()
    reason = cupy_unavailable_reason()
    if name == "cupy":
        if reason is not None:
            raise BackendError(f"backend 'cupy' requested but {reason}")
        return _cupy_backend()
    if reason is None:
        _announce("cupy", "backend auto: using CuPy on the GPU")
        return _cupy_backend()
    _announce("numpy", f"backend auto: using NumPy on the CPU ({reason})")
    return _numpy_backend()


def _announce(key: str, message: str) -> None:
    if key not in _announced:
        _announced.add(key)
        logger.info(message)


def array_module(*arrays) -> ModuleType:
    """NumPy or CuPy, whichever the arrays belong to (NumPy for anything that is not CuPy).

    Looks at ``sys.modules`` instead of importing cupy, so asking costs nothing on a CPU machine.
    """
    cupy = sys.modules.get("cupy")
    if cupy is not None:
        for a in arrays:
            if isinstance(a, cupy.ndarray):
                return cupy
    return np



def scatter_add(target, indices, values) -> None:
    """``target[indices] += values`` with repeated indices summed (np.add.at / cupyx.scatter_add)."""
    xp = array_module(target)
    if xp is np:
        np.add.at(target, indices, values)
    else:
        import cupyx

        cupyx.scatter_add(target, indices, values)
