"""Global stiffness assembly: vectorised over elements, in 3x3 node blocks, on ``xp``.

The sparsity pattern is the node adjacency graph (one 3x3 block per pair of nodes sharing an
element, plus every diagonal block). It is computed once from the connectivity by sorting the
pair keys, which also yields each element's 64 (hex8) or 100 (tet10) block positions.
Element matrices are then computed for chunks of a few hundred elements (small enough that their
temporaries stay in cache, which makes the batched kernels 4x faster than large batches) on the
worker threads, and added into the block data array with one scatter-add per chunk. The result is
a symmetric block-CSR matrix: ``scipy.sparse.bsr_matrix`` on the CPU (what pyamg prefers for
elasticity), CSR on CuPy.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from .arrays import row_of_entries
from .errors import MaterialError, MeshError, format_labels
from .kernels import elastic
from .kernels.backend import Backend, scatter_add
from .model import Model
from .parallel import map_ordered

logger = logging.getLogger(__name__)

#: entries of element matrices per chunk on the CPU (about 2.5 MB of float64, cache-sized); on a
#: GPU chunks are made larger (GPU_CHUNK_ENTRIES) to fill the device
CHUNK_ENTRIES = 320_000
GPU_CHUNK_ENTRIES = 40_000_000

#: scaled Jacobian (det J over the product of the Jacobian's column lengths) below which an
#: element counts as degenerate (flat or collapsed)
DEGENERATE_TOL = 1e-6


@dataclass
class Pattern:
    """Block sparsity pattern: block-CSR (``indptr``, ``indices``) over nodes (every diagonal
    block included), and per cell block the position of every element's (a, b) node block in
    the data array, shape (m, k, k)."""

    n_nodes: int
    indptr: object
    indices: object
    positions: list

    @property
    def nnzb(self) -> int:
        return int(self.indices.shape[0])

    def block_rows(self, xp):
        """Block-row index of every stored block."""
        return row_of_entries(xp.asarray(self.indptr)).astype(xp.int64)


def build_pattern(model: Model, xp) -> Pattern:
    """The block sparsity pattern of the model's stiffness matrix.

    One argsort of all (row node, column node) keys gives both the unique pattern and, through
    the inverse permutation, every element's block positions (cheaper than a binary search of
    each key in the pattern).
    """
    n = model.n_nodes
    keys = []
    for b in model.blocks:
        c = xp.asarray(b.conn)
        keys.append((c[:, :, None] * n + c[:, None, :]).ravel())
    diag = xp.arange(n, dtype=xp.int64) * (n + 1)
    allkeys = xp.concatenate(keys + [diag])
    sizes = [k.shape[0] for k in keys]
    del keys
    order = xp.argsort(allkeys)
    sorted_keys = allkeys[order]
    del allkeys
    flag = xp.empty(sorted_keys.shape[0], dtype=bool)
    flag[0] = True
    xp.not_equal(sorted_keys[1:], sorted_keys[:-1], out=flag[1:])
    uniq = sorted_keys[flag]
    del sorted_keys
    pos_type = xp.int32 if uniq.shape[0] < 2**31 // 9 else xp.int64
    inverse = xp.empty(order.shape[0], dtype=pos_type)
    inverse[order] = (xp.cumsum(flag) - 1).astype(pos_type)
    del order, flag
    rows = uniq // n
    cols = (uniq - rows * n).astype(xp.int32)
    indptr = xp.zeros(n + 1, dtype=xp.int64)
    indptr[1:] = xp.cumsum(xp.bincount(rows, minlength=n))
    positions = []
    start = 0
    for b, size in zip(model.blocks, sizes):
        k = b.etype.n_nodes
        positions.append(inverse[start:start + size].reshape(-1, k, k))
        start += size
    return Pattern(n, indptr, cols, positions)


def chunks(model: Model, xp, per_element: int | None = None, elements=None):
    """(block index, slice) pairs covering every element in cache-sized chunks; with
    ``elements`` (global indices), (block index, local indices) pairs covering just those."""
    out = []
    budget = CHUNK_ENTRIES if xp is np else GPU_CHUNK_ENTRIES
    if elements is not None:
        elements = np.unique(np.asarray(elements, dtype=np.int64))
    for bi, b in enumerate(model.blocks):
        k = b.etype.n_nodes
        step = max(1, budget // (per_element or (k * k * 9)))
        if elements is None:
            out.extend((bi, slice(s0, min(len(b.conn), s0 + step)))
                       for s0 in range(0, len(b.conn), step))
        else:
            local = b.local(elements)
            out.extend((bi, local[s0:s0 + step]) for s0 in range(0, len(local), step))
    return out


def element_geometry(model: Model, block_index: int, sl: slice, xp, points=None):
    """Gradients G (m, g, k, 3), weights x det J (m, g) and det J at the nodes for a slice of a block."""
    b = model.blocks[block_index]
    et = b.etype
    pts = xp.asarray(model.points) if points is None else points
    X = pts[xp.asarray(b.conn[sl])]
    G, det = elastic.gradients(X, et.dN)
    return G, det * xp.asarray(et.weights), X


def element_volumes(model: Model) -> np.ndarray:
    """Element volumes (mm^3) on the host, by the stiffness quadrature."""
    out = []
    for bi, b in enumerate(model.blocks):
        _, wdet, _ = element_geometry(model, bi, slice(0, len(b.conn)), np)
        out.append(wdet.sum(axis=1))
    return np.concatenate(out)


def element_centroids(model: Model) -> np.ndarray:
    """Mean of each element's corner nodes (n_elements, 3) on the host, mm."""
    return np.concatenate([model.points[b.conn[:, :b.etype.n_corners]].mean(axis=1)
                           for b in model.blocks])


def check_geometry(model: Model, xp, points=None) -> None:
    """Raise :class:`MeshError` naming inverted or degenerate elements.

    The Jacobian is checked at every Gauss point (where the stiffness is integrated): an element
    is inverted where det J < 0 and degenerate where the scaled Jacobian (det J over the product of
    the Jacobian's column lengths) is below 1e-6. A negative Jacobian only at a corner node of a
    hex8 (a badly distorted but integrable element) gives a warning.
    """
    import warnings

    pts = xp.asarray(model.points) if points is None else points

    def check(item):
        bi, sl = item
        b = model.blocks[bi]
        X = pts[xp.asarray(b.conn[sl])]
        found = []
        for dN in (b.etype.dN, b.etype.dN_nodes if b.type == "hex8" else None):
            if dN is None:
                found.append(None)
                continue
            J = elastic.jacobians(X, dN)
            det = elastic.det3(J)
            norms = xp.sqrt((J * J).sum(axis=-1))  # lengths of dx/dxi_a
            scale = norms[..., 0] * norms[..., 1] * norms[..., 2]
            sj = det / xp.where(scale > 0, scale, 1.0)
            inv = xp.any(sj < -DEGENERATE_TOL, axis=1)
            deg = xp.any(xp.abs(sj) <= DEGENERATE_TOL, axis=1) & ~inv
            found.append((_where(xp, inv, b.start + sl.start), _where(xp, deg, b.start + sl.start)))
        return found

    inverted, degenerate, corner = [], [], []
    work = chunks(model, xp, per_element=64)
    for gp, nodes in (map_ordered(check, work) if xp is np else map(check, work)):
        inverted.append(gp[0])
        degenerate.append(gp[1])
        if nodes is not None:
            corner.append(nodes[0])
    inverted = np.concatenate(inverted)
    degenerate = np.concatenate(degenerate)
    if len(inverted):
        raise MeshError(
            f"inverted element(s) {format_labels(model.element_ids[inverted])} (negative Jacobian): "
            "check the node order (VTK/Abaqus order) and the coordinates of their nodes")
    if len(degenerate):
        raise MeshError(
            f"degenerate element(s) {format_labels(model.element_ids[degenerate])} (zero volume: "
            "flat, collapsed or with repeated nodes)")
    corner = np.concatenate(corner) if corner else np.zeros(0, np.int64)
    if len(corner):
        warnings.warn(f"element(s) {format_labels(model.element_ids[corner])} have a negative "
                      "Jacobian at a corner node (badly distorted); stresses near them are "
                      "inaccurate", stacklevel=3)


def _where(xp, mask, offset) -> np.ndarray:
    idx = xp.nonzero(mask)[0]
    return np.asarray(_host(xp, idx), dtype=np.int64) + offset


def _host(xp, a):
    return a.get() if hasattr(a, "get") else a


def lame(E, nu):
    """Lame constants (lambda, mu) in MPa from E (MPa) and nu."""
    lam = E * nu / ((1.0 + nu) * (1.0 - 2.0 * nu))
    mu = E / (2.0 * (1.0 + nu))
    return lam, mu


def materials(model: Model, xp):
    """Per element on ``xp``: Lame constants (lambda, mu) of the isotropic fast path, the B-bar
    mask, and for orthotropic elements their row in C (-1 elsewhere) and the Voigt stiffnesses
    C (n_ortho, 6, 6) (:func:`fem.kernels.elastic.orthotropic_stiffness`)."""
    ortho = model.orthotropic_mask()
    nu = np.where(ortho, 0.0, model.nu)  # orthotropic rows: any finite value, overwritten later
    lam, mu = lame(xp.asarray(model.E), xp.asarray(nu))
    row = np.full(model.n_elements, -1, dtype=np.int64)
    row[ortho] = np.arange(int(ortho.sum()))
    C = elastic.orthotropic_stiffness(xp.asarray(model.ortho[ortho])) if ortho.any() else None
    return lam, mu, xp.asarray(model.bbar_mask()), row, C


def orthotropic_rows(row: np.ndarray, gsl: slice):
    """(local element positions, rows of C) of the orthotropic elements of a slice, or None."""
    r = row[gsl]
    local = np.nonzero(r >= 0)[0]
    return (local, r[local]) if len(local) else None


def orthotropic_at(model: Model, C_all, orth, gsl: slice, X, etype, xp):
    """The Voigt stiffness in the global axes of the orthotropic elements ``orth`` = (local
    positions, rows of ``C_all``) of the slice ``gsl`` whose nodes are ``X`` (m, k, 3): (n, 6, 6)
    where all are in the global axes, else (n, g, 6, 6), the cylindrical ones rotated at each
    integration point (:meth:`fem.Model.set_orthotropic`, ``cylinder=``)."""
    loc, rows = orth
    C = C_all[xp.asarray(rows)]
    axis = getattr(model, "ortho_axis", None)
    if axis is None or len(axis) != model.n_elements:
        return C
    ax = axis[gsl][loc]
    cyl = np.nonzero(np.isfinite(ax[:, 0]))[0]
    if not len(cyl):
        return C
    g = etype.n_gauss
    Cq = xp.ascontiguousarray(xp.broadcast_to(C[:, None], (len(loc), g, 6, 6)))
    xq = xp.einsum("gk,mkc->mgc", xp.asarray(etype.N), X[xp.asarray(loc[cyl])])
    a = xp.asarray(ax[cyl])
    R = elastic.cylinder_frames(xq, a[:, None, :3], a[:, None, 3:])
    if not bool(xp.isfinite(R).all()):
        host = np.asarray(_host(xp, R))
        bad = int(np.nonzero(~np.isfinite(host).reshape(len(cyl), -1).all(axis=1))[0][0])
        label = int(model.element_ids[gsl.start + int(loc[cyl][bad])])
        raise MaterialError(f"element {label}: an integration point lies on the axis of its "
                            "cylindrical orthotropic material, where the radial direction is "
                            "undefined; move the axis or leave a hole around it")
    Cq[xp.asarray(cyl)] = elastic.rotate_stiffness(Cq[xp.asarray(cyl)], R)
    return Cq


def assemble_stiffness(model: Model, backend: Backend, pattern: Pattern | None = None,
                       elements=None):
    """Assemble the global stiffness matrix; returns (pattern, block data (nnzb, 3, 3)).
    ``elements``: only these elements' contributions (global indices; the data of the others'
    blocks stay 0), e.g. the change of a few elements' stiffness.

    Element geometry must already have been checked (:func:`check_geometry`).
    """
    xp = backend.xp
    if pattern is None:
        pattern = build_pattern(model, xp)
    data = xp.zeros(pattern.nnzb * 9, dtype=xp.float64)
    pts = xp.asarray(model.points)
    lam_all, mu_all, bbar_all, ortho_row, C_all = materials(model, xp)
    ij = 3 * xp.arange(3)[:, None, None] + xp.arange(3)[None, None, :]  # (3, 1, 3)

    def element_matrices(item):
        bi, sl = item
        b = model.blocks[bi]
        G, wdet, X = element_geometry(model, bi, sl, xp, pts)
        gsl = (slice(b.start + sl.start, b.start + sl.stop) if isinstance(sl, slice)
               else b.start + sl)
        bbar = bbar_all[gsl] if b.type == "hex8" else None
        Ke = elastic.stiffness_matrices(G, wdet, lam_all[gsl], mu_all[gsl], bbar)
        orth = orthotropic_rows(ortho_row, gsl)
        if orth is not None:
            loc = xp.asarray(orth[0])
            C = orthotropic_at(model, C_all, orth, gsl, X, b.etype, xp)
            Ke[loc] = elastic.general_stiffness_matrices(
                G[loc], wdet[loc], C, None if bbar is None else bbar[loc])
        pos = pattern.positions[bi][sl].astype(xp.int64)  # (m, k, k)
        # flat data index of entry [a, i, b, j]: pos[a, b] * 9 + 3 i + j
        idx = pos[:, :, None, :, None] * 9 + ij[None, None]
        return idx.ravel(), Ke.ravel()

    work = chunks(model, xp, elements=elements)
    results = map_ordered(element_matrices, work) if xp is np else map(element_matrices, work)
    for idx, ke in results:
        scatter_add(data, idx, ke)
    return pattern, data.reshape(-1, 3, 3)


def stiffness_triplets(model: Model, elements, moduli=None, *, lame_constants=None,
                       chunk: int = 5_000):
    """The element stiffness matrices of the isotropic ``elements`` as COO triplets in the full
    dof space (host), a block chunk at a time: yields (positions of the chunk's elements in
    ``elements``, their connectivity, rows, cols, values). The elements' moduli are ``moduli``
    (MPa, one per element) with the model's nu, or ``lame_constants`` = (lambda, mu) (MPa, one
    pair per element: any pair, e.g. a change of lambda alone); the hex8 formulation is the
    model's (:meth:`~fem.model.Model.bbar_mask`)."""
    if (moduli is None) == (lame_constants is None):
        raise ValueError("give moduli or lame_constants")
    elements = np.asarray(elements, dtype=np.int64)
    nu_all = np.asarray(model.nu)
    bbar_all = model.bbar_mask()
    for b in model.blocks:
        pos = np.nonzero(b.holds(elements))[0]
        for lo in range(0, len(pos), chunk):
            part = pos[lo:lo + chunk]
            el = elements[part]
            conn = b.conn[el - b.start]
            G, det = elastic.gradients(model.points[conn], b.etype.dN)
            if lame_constants is None:
                lam, mu = lame(np.asarray(moduli)[part], nu_all[el])
            else:
                lam, mu = (np.asarray(c, dtype=float)[part] for c in lame_constants)
            Ke = elastic.stiffness_matrices(G, det * b.etype.weights, lam, mu,
                                            bbar_all[el] if b.type == "hex8" else None)
            k3 = 3 * conn.shape[1]
            dof = (3 * conn[:, :, None] + np.arange(3)).reshape(len(el), k3)
            yield (part, conn, np.repeat(dof, k3, axis=1).ravel(), np.tile(dof, (1, k3)).ravel(),
                   Ke.reshape(len(el), k3 * k3).ravel())


def stiffness_of(model: Model, elements, moduli=None, *, lame_constants=None, T=None):
    """The stiffness of the isotropic ``elements`` alone (:func:`stiffness_triplets`, the same
    ``moduli`` or ``lame_constants``) as a host CSR matrix over the model's dofs, or ``T^T K T``
    with a plates' coupling ``T`` (host; :func:`fem.analysis.coupling_matrix`)."""
    import scipy.sparse as sp

    rows, cols, vals = [], [], []
    for _, _, r, c, v in stiffness_triplets(model, elements, moduli,
                                            lame_constants=lame_constants):
        rows.append(r)
        cols.append(c)
        vals.append(v)
    n3 = 3 * model.n_nodes
    K = sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                      shape=(n3, n3))
    return K if T is None else (T.T @ K @ T).tocsr()


def to_matrix(pattern: Pattern, data, backend: Backend):
    """The assembled block data as a sparse matrix of the backend (BSR on SciPy, CSR on CuPy)."""
    n = 3 * pattern.n_nodes
    if backend.name == "numpy":
        import scipy.sparse as sp

        return sp.bsr_matrix((data, pattern.indices, pattern.indptr), shape=(n, n))
    xp = backend.xp
    # expand 3x3 blocks to scalar CSR rows: row 3r+i holds blocks of row r, columns 3c+j
    brow = pattern.block_rows(xp)
    rows = (3 * brow[:, None, None] + xp.arange(3)[None, :, None]) * xp.ones((1, 1, 3), xp.int64)
    cols = (3 * pattern.indices.astype(xp.int64)[:, None, None] + xp.arange(3)[None, None, :]) \
        * xp.ones((1, 3, 1), xp.int64)
    A = backend.sparse.coo_matrix((data.ravel(), (rows.ravel(), cols.ravel())), shape=(n, n))
    return A.tocsr()
