"""Small array helpers shared by the core (backend-neutral)."""

from __future__ import annotations

from .kernels.backend import array_module


def unique_sorted(a):
    """Sorted unique values of an integer array, by sort and compare.

    NumPy 2's ``np.unique`` hashes and is about 80x slower on the 10^5-10^6 labels of a set.
    """
    xp = array_module(a)
    b = xp.sort(xp.asarray(a).ravel())
    if b.shape[0] < 2:
        return b
    keep = xp.empty(b.shape[0], dtype=bool)
    keep[0] = True
    xp.not_equal(b[1:], b[:-1], out=keep[1:])
    return b[keep]


def row_of_entries(indptr):
    """Row index of every stored entry of a CSR (or block-CSR) matrix with row pointer ``indptr``.

    By a search of the entry positions in ``indptr`` rather than ``repeat(arange, diff(indptr))``:
    CuPy's ``repeat`` takes no array of counts.
    """
    xp = array_module(indptr)
    nnz = int(indptr[-1])
    return xp.searchsorted(indptr, xp.arange(nnz, dtype=indptr.dtype), side="right") - 1
