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
    """An array module with its matching sparse and sparse-linear-algebra modules; ``note`` says
    why this backend was chosen (NumPy) or on which device it runs (CuPy)."""

    name: str
    xp: ModuleType
    sparse: ModuleType
    splinalg: ModuleType
    note: str = ""

    def to_host(self, a) -> np.ndarray:
        """Copy an array of this backend to a NumPy array (only at I/O boundaries)."""
        if self.name == "cupy":
            return self.xp.asnumpy(a)
        return np.asarray(a)

    def sparse_to_host(self, A):
        """A SciPy copy of a sparse matrix of this backend (for set-up done on the host)."""
        return A.get() if self.name == "cupy" else A

    def describe(self) -> str:
        """One line for logs and the command line: "numpy (why)" or "cupy (device name)"."""
        return f"{self.name} ({self.note})" if self.note else self.name


_announced: set[str] = set()


def _numpy_backend(note: str = "") -> Backend:
    import scipy.sparse
    import scipy.sparse.linalg

    return Backend("numpy", np, scipy.sparse, scipy.sparse.linalg, note)


def cupy_unavailable_reason() -> str | None:
    """Why CuPy cannot be used here, in one line (``None`` when it can)."""
    try:
        import cupy
        import cupyx.scipy.sparse.linalg  # noqa: F401
    except Exception as exc:  # ImportError, or a CUDA library failing to load
        return f"cupy is not importable ({type(exc).__name__}: {_one_line(exc)})"
    try:
        if not cupy.is_available():
            return "cupy is installed but no CUDA GPU is available"
    except Exception as exc:
        return f"cupy cannot reach a GPU ({type(exc).__name__}: {_one_line(exc)})"
    return None


def _one_line(exc) -> str:
    return " ".join(str(exc).split())


def _cupy_backend() -> Backend:
    import cupy
    import cupyx.scipy.sparse
    import cupyx.scipy.sparse.linalg

    return Backend("cupy", cupy, cupyx.scipy.sparse, cupyx.scipy.sparse.linalg, _device_name(cupy))


def _device_name(cupy) -> str:
    dev = cupy.cuda.Device()
    name = cupy.cuda.runtime.getDeviceProperties(dev.id)["name"]
    name = name.decode() if isinstance(name, bytes) else str(name)
    return f"{name}, device {dev.id}"


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
        return _numpy_backend("FEM_BACKEND=numpy" if name != "numpy" else "requested")
    if forced == "cupy" and name == "auto":
        name = "cupy"
    if name == "numpy":
        return _numpy_backend("requested")
    reason = cupy_unavailable_reason()
    if name == "cupy":
        if reason is not None:
            raise BackendError(f"backend 'cupy' requested but {reason}")
        return _cupy_backend()
    if reason is None:
        be = _cupy_backend()
        _announce("cupy", f"backend auto: using CuPy on the GPU ({be.note})")
        return be
    _announce("numpy", f"backend auto: using NumPy on the CPU ({reason})")
    return _numpy_backend(reason)


def backend_of(xp) -> Backend:
    """The backend whose array module is ``xp`` (for code that is handed arrays, not a backend)."""
    return _cupy_backend() if getattr(xp, "__name__", "") == "cupy" else _numpy_backend()


def _announce(key: str, message: str) -> None:
    if key not in _announced:
        _announced.add(key)
        logger.info(message)


def array_module(*arrays) -> ModuleType:
    """NumPy or CuPy, whichever the arrays belong to (NumPy for anything that is not CuPy).

    Looks at ``sys.modules`` instead of importing cupy, so asking costs nothing on a CPU machine.
    """
    cupy = sys.modules.get("cupy")
    # another thread may be importing cupy right now: until it is done, no array is a CuPy one
    ndarray = getattr(cupy, "ndarray", None) if cupy is not None else None
    if ndarray is not None:
        for a in arrays:
            if isinstance(a, ndarray):
                return cupy
    return np


def namespace(*arrays) -> ModuleType:
    """The Array API namespace of the arrays: ``a.__array_namespace__()`` of the first array that
    has one (NumPy >= 2, array-api-strict), else :func:`array_module` (CuPy arrays lack it).

    Backend-neutral code (the voxel kernels' twins, :mod:`fem.gmg`) asks this and calls only the
    standard on the answer, so the tests can run it under array-api-strict.
    """
    for a in arrays:
        get = getattr(a, "__array_namespace__", None)
        if get is not None:
            return get()
    return array_module(*arrays)


def _is_cupy(xp) -> bool:
    return getattr(xp, "__name__", "") == "cupy"


def scatter_add(target, indices, values) -> None:
    """``target[indices] += values`` in place, repeated indices summed: ``np.add.at`` on NumPy,
    ``cupy.add.at`` on CuPy (``cupyx.scatter_add``, which did this before, is deprecated in CuPy
    14)."""
    xp = array_module(target)
    xp.add.at(target, indices, values)


def add_at_flat(target, flat_index, values) -> None:
    """``target`` += ``values`` at the positions ``flat_index`` of its C-order flattening, in
    place, repeated indices summed: the one scatter of :mod:`fem.gmg` (inserting the loads), which
    the Array API standard lacks. On NumPy and CuPy through a flat view of the C-contiguous
    ``target``; on any other namespace (array-api-strict in the tests) by a round trip through
    NumPy, a full copy each way, which is only meant for tests."""
    xp = namespace(target)
    if xp is np or _is_cupy(xp):
        if not target.flags.c_contiguous:
            raise ValueError("add_at_flat needs a C-contiguous target")
        scatter_add(target.reshape(-1), flat_index, values)
        return
    # beyond NumPy and CuPy: copy to the host, scatter there, write the whole array back
    host = np.array(np.from_dlpack(target), copy=True)
    np.add.at(host.reshape(-1), np.from_dlpack(flat_index), np.from_dlpack(values))
    target[...] = xp.asarray(host)


def voxel_kernels(xp) -> ModuleType:
    """The voxel-grid kernels (``voxel_matvec``, ``voxel_matvec_acc``, ``voxel_diagonal``,
    ``voxel_strain``) for the array namespace ``xp``: the CUDA launchers in
    :mod:`fem.kernels.cuda` for CuPy, else the twins in :mod:`fem.kernels.voxel` (written
    against the Array API standard), which have the same signatures."""
    if _is_cupy(xp):
        from . import cuda

        return cuda
    from . import voxel

    return voxel

