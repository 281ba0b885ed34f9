"""CPU threads for the NumPy backend: row-split sparse products and chunked element loops, and
BLAS held to one thread where an answer must not depend on it (:func:`serial_blas`).

SciPy's sparse kernels and NumPy's array operations release the GIL, so a few threads give real
speed-up on a multi-core CPU (1.9x for a 1M-dof block-CSR product on 2 cores). The number of
threads is ``FEM_THREADS`` if set, else the number of CPUs this process may use. On the CuPy
backend nothing here is used: the GPU is parallel already.
"""

from __future__ import annotations

import contextlib
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

_POOL: ThreadPoolExecutor | None = None

#: rows below which a sparse product is not worth splitting
MIN_ROWS_PER_THREAD = 20_000
#: row parts of a large matrix, whatever the number of threads: the partition, and with it the
#: summation order of A.T @ r, must not depend on the machine, or results would differ in the
#: last digits between machines with different core counts
MAX_PARTS = 16


def n_threads() -> int:
    env = os.environ.get("FEM_THREADS", "").strip()
    if env:
        try:
            return max(1, int(env))
        except ValueError:
            pass
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


@contextlib.contextmanager
def serial_blas():
    """BLAS held to one thread while the block runs, then given back the caller's setting.

    Why. A multi-threaded BLAS sums a long dot product in parts, in an order set by its thread
    count, so CG's inner products, and every iterate after them, differ in the last digits
    between one BLAS thread and two (1e-13 on a 13 083-dof pushover). A linear answer does not
    care; a nonlinear analysis can: near a snap its path turns on those digits, and the
    canonical PKP 4 mL pushover first failed at 1 053 N with SciPy's BLAS on two threads and at
    1 075 N on one (bench/README.md). The nonlinear solvers (:func:`fem.solve_nonlinear`,
    :func:`fem.fibres.solve_fibres`, :func:`fem.finite_strain.solve_finite_strain`) run in this
    block, so the answer is the same whatever the caller's BLAS threads, and the same as a
    study's run, which pins BLAS to one thread for good (``fem.study.recipe._prepare``). The
    analyses' sparse products run on this module's own threads, which it leaves alone; one BLAS
    thread was also the faster on 2 busy cores. Every BLAS is loaded before it is limited (a
    library loaded later would keep its threads). ``threadpoolctl``'s limits are per process:
    two analyses on threads of a process that has not pinned BLAS itself can give each other
    back the other's setting on leaving, so such a program pins BLAS once, as a study does."""
    import scipy.linalg  # noqa: F401 (every BLAS loaded before it is limited)
    import scipy.sparse.linalg  # noqa: F401
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        yield


def pool() -> ThreadPoolExecutor:
    global _POOL
    if _POOL is None:
        _POOL = ThreadPoolExecutor(max_workers=n_threads(), thread_name_prefix="fem")
    return _POOL


def map_ordered(func, items):
    """``[func(x) for x in items]`` on the thread pool, results in order, at most a few in flight."""
    items = list(items)
    if n_threads() == 1 or len(items) < 2:
        yield from (func(x) for x in items)
        return
    ex = pool()
    depth = n_threads() + 1
    futures = [ex.submit(func, x) for x in items[:depth]]
    nxt = depth
    for i in range(len(items)):
        result = futures[i].result()
        futures[i] = None
        if nxt < len(items):
            futures.append(ex.submit(func, items[nxt]))
            nxt += 1
        yield result


def row_block(M, a: int, b: int):
    """(Block) rows a..b of a SciPy CSR or BSR matrix, sharing its arrays."""
    import scipy.sparse as sp

    ip = M.indptr
    lo, hi = ip[a], ip[b]
    if M.format == "bsr":
        R = M.blocksize[0]
        return sp.bsr_matrix((M.data[lo:hi], M.indices[lo:hi], ip[a:b + 1] - lo),
                             shape=(R * (b - a), M.shape[1]))
    return sp.csr_matrix((M.data[lo:hi], M.indices[lo:hi], ip[a:b + 1] - lo),
                         shape=(b - a, M.shape[1]))


class RowSplit:
    """A SciPy BSR or CSR matrix whose product with a vector runs on several threads.

    The rows are cut into contiguous parts of about equal numbers of stored entries (how many
    depends on the matrix only, :data:`MAX_PARTS`, not on the thread count); each part is a view
    sharing the parent's arrays (no copy of the data).
    """

    def __init__(self, A, parts: int | None = None):
        self.A = A
        self.shape = A.shape
        self.dtype = A.dtype
        R = A.blocksize[0] if A.format == "bsr" else 1
        nrows = A.shape[0] // R
        if parts is None:
            parts = max(1, min(MAX_PARTS, nrows // max(1, MIN_ROWS_PER_THREAD // R)))
        parts = max(1, min(parts, nrows))
        ip = A.indptr
        cuts = np.searchsorted(ip, np.linspace(0, ip[-1], parts + 1)).astype(np.int64)
        cuts[0], cuts[-1] = 0, nrows
        cuts = np.unique(cuts)
        self.rows = [(R * a, R * b) for a, b in zip(cuts[:-1], cuts[1:])]
        self.parts = [row_block(A, a, b) for a, b in zip(cuts[:-1], cuts[1:])]

    def __matmul__(self, x):
        if len(self.parts) == 1:
            return self.parts[0] @ x
        out = np.empty(self.shape[0], dtype=np.result_type(self.dtype, x.dtype))
        ex = pool()

        def run(i):
            a, b = self.rows[i]
            out[a:b] = self.parts[i] @ x

        futures = [ex.submit(run, i) for i in range(1, len(self.parts))]
        run(0)
        for f in futures:
            f.result()
        return out

    def matvec(self, x):
        return self @ x


def _rmatvec_part(part, r):
    return part.T @ r


def rmatvec(split: RowSplit, r):
    """``A.T @ r`` for a :class:`RowSplit` matrix: partial products of the row parts, summed."""
    if len(split.parts) == 1:
        return split.parts[0].T @ r
    ex = pool()
    futures = [ex.submit(_rmatvec_part, split.parts[i], r[a:b])
               for i, (a, b) in enumerate(split.rows) if i > 0]
    a, b = split.rows[0]
    y = split.parts[0].T @ r[a:b]
    for f in futures:
        y += f.result()
    return y


def map_parts(func, split: RowSplit):
    """``[func(part, (row0, row1)) for each row part]`` on the thread pool."""
    ex = pool()
    futures = [ex.submit(func, p, rows) for p, rows in zip(split.parts, split.rows)]
    return [f.result() for f in futures]
