"""Global stiffness assembly: vectorised over elements, in 3x3 node blocks, on ``xp``.

The sparsity pattern is the node adjacency graph (one 3x3 block per pair of nodes sharing an
element, plus every diagonal block). It is computed once from the connectivity by sorting the
pair keys; each element's 64 (hex8) or 100 (tet10) block positions are found by binary search.
Element matrices are then computed for chunks of elements at a time (bounded memory) and added
into the block data array with one scatter-add per chunk. The result is a symmetric block-CSR
matrix: ``scipy.sparse.bsr_matrix`` on the CPU (what pyamg prefers for elasticity), CSR on CuPy.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from .errors import MeshError, format_labels
from .model import Model
from .kernels import elastic
from .kernels.backend import Backend, scatter_add

logger = logging.getLogger(__name__)

#: elements per chunk: bounds the temporary element matrices to about 100 MB
CHUNK_ENTRIES = 12_000_000

#: scaled Jacobian (det J over the product of the Jacobian's column lengths) below which an
#: element counts as degenerate (flat or collapsed)
DEGENERATE_TOL = 1e-6


@dataclass
class Pattern:
    """Block sparsity pattern: block-CSR (``indptr``, ``indices``) over nodes, and per cell block
    the position of every element's (a, b) node block in the data array, shape (m, k, k)."""

    n_nodes: int
    indptr: object
    indices: object
    positions: list
    diagonal: object

    @property
    def nnzb(self) -> int:
        return int(self.indices.shape[0])

    def block_rows(self, xp):
        """Block-row index of every stored block."""
        counts = self.indptr[1:] - self.indptr[:-1]
        return xp.repeat(xp.arange(self.n_nodes, dtype=xp.int64), counts)


def build_pattern(model: Model, xp) -> Pattern:
    """The block sparsity pattern of the model's stiffness matrix."""
    n = model.n_nodes
    keys = []
    for b in model.blocks:
        c = xp.asarray(b.conn)
        keys.append((c[:, :, None] * n + c[:, None, :]).ravel())
    diag = xp.arange(n, dtype=xp.int64) * (n + 1)
    allkeys = xp.sort(xp.concatenate(keys + [diag]))
    flag = xp.empty(allkeys.shape[0], dtype=bool)
    flag[0] = True
    xp.not_equal(allkeys[1:], allkeys[:-1], out=flag[1:])
    uniq = allkeys[flag]
    del allkeys, flag
    rows = uniq // n
    cols = (uniq - rows * n).astype(xp.int32)
    indptr = xp.zeros(n + 1, dtype=xp.int64)
    indptr[1:] = xp.cumsum(xp.bincount(rows, minlength=n))
    positions = []
    for b, key in zip(model.blocks, keys):
        k = b.etype.n_nodes
        positions.append(xp.searchsorted(uniq, key).reshape(-1, k, k))
    diagonal = xp.searchsorted(uniq, diag)
    return Pattern(n, indptr, cols, positions, diagonal)


def element_geometry(model: Model, block_index: int, sl: slice, xp, points=None):
    """Gradients G (m, g, k, 3), weights x det J (m, g) and det J at the nodes for a slice of a block."""
    b = model.blocks[block_index]
    et = b.etype
    pts = xp.asarray(model.points) if points is None else points
    X = pts[xp.asarray(b.conn[sl])]
    G, det = elastic.gradients(X, et.dN)
    return G, det * xp.asarray(et.weights), X


def check_geometry(model: Model, xp, points=None) -> None:
    """Raise :class:`MeshError` naming inverted or degenerate elements.

    The Jacobian is checked at every Gauss point (where the stiffness is integrated): an element
    is inverted where det J < 0 and degenerate where the scaled Jacobian (det J over the product of
    the Jacobian's column lengths) is below 1e-6. A negative Jacobian only at a corner node (a
    badly distorted but integrable element; a collapsed hex8 corner) gives a warning.
    """
    import warnings

    pts = xp.asarray(model.points) if points is None else points
    inverted, degenerate, corner = [], [], []
    for b in model.blocks:
        et = b.etype
        conn = xp.asarray(b.conn)
        step = max(1, CHUNK_ENTRIES // (et.n_nodes * et.n_nodes * 9))
        for s0 in range(0, len(b.conn), step):
            X = pts[conn[s0:s0 + step]]
            for at_nodes, dN in ((False, et.dN), (True, et.dN_nodes)):
                J = elastic.jacobians(X, dN)
                det = elastic.inv3(J)[1]
                norms = xp.sqrt((J * J).sum(axis=-1))  # lengths of dx/dxi_a
                scale = norms[..., 0] * norms[..., 1] * norms[..., 2]
                sj = det / xp.where(scale > 0, scale, 1.0)
                bad_inv = xp.any(sj < -DEGENERATE_TOL, axis=1)
                bad_deg = xp.any(xp.abs(sj) <= DEGENERATE_TOL, axis=1) & ~bad_inv
                if at_nodes:
                    if b.type != "hex8":  # affine tet4, straight tet10: nodes add nothing new
                        continue
                    bad = bad_inv
                    if bool(xp.any(bad)):
                        corner.append(np.asarray(_host(xp, xp.nonzero(bad)[0])) + b.start + s0)
                    continue
                if bool(xp.any(bad_inv)):
                    inverted.append(np.asarray(_host(xp, xp.nonzero(bad_inv)[0])) + b.start + s0)
                if bool(xp.any(bad_deg)):
                    degenerate.append(np.asarray(_host(xp, xp.nonzero(bad_deg)[0])) + b.start + s0)
    if inverted:
        e = np.unique(np.concatenate(inverted))
        raise MeshError(
            f"inverted element(s) {format_labels(model.element_ids[e])} (negative Jacobian): "
            "check the node order (VTK/Abaqus order) and the coordinates of their nodes")
    if degenerate:
        e = np.unique(np.concatenate(degenerate))
        raise MeshError(
            f"degenerate element(s) {format_labels(model.element_ids[e])} (zero volume: flat, "
            "collapsed or with repeated nodes)")
    if corner:
        e = np.unique(np.concatenate(corner))
        warnings.warn(f"element(s) {format_labels(model.element_ids[e])} have a negative Jacobian "
                      "at a corner node (badly distorted); stresses near them are inaccurate",
                      stacklevel=3)


def _host(xp, a):
    return a.get() if hasattr(a, "get") else a


def lame(E, nu):
    """Lame constants (lambda, mu) in MPa from E (MPa) and nu."""
    lam = E * nu / ((1.0 + nu) * (1.0 - 2.0 * nu))
    mu = E / (2.0 * (1.0 + nu))
    return lam, mu


def assemble_stiffness(model: Model, backend: Backend, pattern: Pattern | None = None):
    """Assemble the global stiffness matrix; returns (pattern, block data (nnzb, 3, 3)).

    Element geometry must already have been checked (:func:`check_geometry`).
    """
    xp = backend.xp
    if pattern is None:
        pattern = build_pattern(model, xp)
    data = xp.zeros(pattern.nnzb * 9, dtype=xp.float64)
    pts = xp.asarray(model.points)
    lam_all, mu_all = lame(xp.asarray(model.E), xp.asarray(model.nu))
    bbar_all = xp.asarray(model.bbar_mask())
    for bi, b in enumerate(model.blocks):
        k = b.etype.n_nodes
        step = max(1, CHUNK_ENTRIES // (k * k * 9))
        ij = (3 * xp.arange(3)[:, None, None] + xp.arange(3)[None, None, :])  # (3, 1, 3)
        for s0 in range(0, len(b.conn), step):
            sl = slice(s0, min(len(b.conn), s0 + step))
            G, wdet, _ = element_geometry(model, bi, sl, xp, pts)
            gsl = slice(b.start + sl.start, b.start + sl.stop)
            bbar = bbar_all[gsl] if b.type == "hex8" else None
            Ke = elastic.stiffness_matrices(G, wdet, lam_all[gsl], mu_all[gsl], bbar)
            pos = pattern.positions[bi][sl]  # (m, k, k)
            # flat data index of entry [a, i, b, j]: pos[a, b] * 9 + 3 i + j
            idx = pos[:, :, None, :, None] * 9 + ij[None, None]
            scatter_add(data, idx.ravel(), Ke.ravel())
    return pattern, data.reshape(-1, 3, 3)


def to_matrix(pattern: Pattern, data, backend: Backend):
    """The assembled block data as a sparse matrix of the backend (BSR on SciPy, CSR on CuPy)."""
    n = 3 * pattern.n_nodes
    if backend.name == "numpy":
        import scipy.sparse as sp

        return sp.bsr_matrix((data, pattern.indices, pattern.indptr), shape=(n, n))
    xp = backend.xp
    # expand 3x3 blocks to scalar CSR rows: row 3r+i holds blocks of row r, columns 3c+j
    counts = pattern.indptr[1:] - pattern.indptr[:-1]
    brow = pattern.block_rows(xp)
    rows = (3 * brow[:, None, None] + xp.arange(3)[None, :, None]) * xp.ones((1, 1, 3), xp.int64)
    cols = (3 * pattern.indices.astype(xp.int64)[:, None, None] + xp.arange(3)[None, None, :]) \
        * xp.ones((1, 3, 1), xp.int64)
    del counts
    A = backend.sparse.coo_matrix((data.ravel(), (rows.ravel(), cols.ravel())), shape=(n, n))
    return A.tocsr()
