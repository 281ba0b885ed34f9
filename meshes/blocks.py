"""Structured block meshes (hex8, tet4, tet10) for verification, tests and benchmarks.

Every block gets node sets and face sets named after its six bounding planes: ``xmin``, ``xmax``,
``ymin``, ``ymax``, ``zmin``, ``zmax``. ``distort`` moves interior nodes by a seeded random amount
(a fraction of the local grid spacing) so that no shortcut for regular grids applies; nodes on the
bounding planes stay on them, so the planes remain exact supports and load surfaces.
"""

from __future__ import annotations

import numpy as np

from ..model import Model
from ..topology import boundary_faces

PLANES = ("xmin", "xmax", "ymin", "ymax", "zmin", "zmax")


def _grid(shape, size, origin, distort, seed):
    nx, ny, nz = (int(v) for v in shape)
    if min(nx, ny, nz) < 1:
        raise ValueError(f"block shape must be at least 1 element per axis, got {shape}")
    axes = [np.linspace(o, o + s, n + 1) for o, s, n in zip(origin, size, (nx, ny, nz))]
    X, Y, Z = np.meshgrid(*axes, indexing="ij")
    pts = np.stack([X.ravel(), Y.ravel(), Z.ravel()], axis=1)
    if distort:
        h = np.array([s / n for s, n in zip(size, (nx, ny, nz))])
        rng = np.random.default_rng(seed)
        idx = np.indices((nx + 1, ny + 1, nz + 1)).reshape(3, -1).T
        interior = np.ones(len(pts), dtype=bool)
        for a, n in enumerate((nx, ny, nz)):
            interior &= (idx[:, a] > 0) & (idx[:, a] < n)
        pts[interior] += rng.uniform(-distort, distort, (interior.sum(), 3)) * h
    ids = np.arange(len(pts)).reshape(nx + 1, ny + 1, nz + 1)
    return pts, ids


def _hex_conn(ids):
    c = [ids[:-1, :-1, :-1], ids[1:, :-1, :-1], ids[1:, 1:, :-1], ids[:-1, 1:, :-1],
         ids[:-1, :-1, 1:], ids[1:, :-1, 1:], ids[1:, 1:, 1:], ids[:-1, 1:, 1:]]
    return np.stack([a.ravel() for a in c], axis=1)


def name_planes(model: Model, tol: float | None = None) -> Model:
    """Add node and face sets xmin..zmax for the model's bounding planes."""
    lo, hi = model.points.min(0), model.points.max(0)
    tol = 1e-9 * float(np.max(hi - lo)) if tol is None else tol
    e, f = boundary_faces(model)
    face_nodes = {}
    for ft, conn, rows in model.face_nodes(_fs(e, f)):
        face_nodes[ft] = (conn, rows)
    for name in PLANES:
        a = "xyz".index(name[0])
        v = lo[a] if name.endswith("min") else hi[a]
        on = np.abs(model.points[:, a] - v) <= tol
        model.add_node_set(name, np.nonzero(on)[0])
        keep = np.zeros(len(e), dtype=bool)
        for conn, rows in face_nodes.values():
            keep[rows] = on[conn].all(axis=1)
        model.add_face_set(name, e[keep], f[keep])
    return model


def _fs(e, f):
    from ..model import FaceSet

    return FaceSet(e, f)


def hex_block(shape=(4, 4, 4), size=(1.0, 1.0, 1.0), origin=(0.0, 0.0, 0.0), *,
              distort: float = 0.0, seed: int = 0, E=None, nu=None) -> Model:
    """A box of hex8 elements, ``shape`` elements along x, y, z, ``size`` in mm."""
    pts, ids = _grid(shape, size, origin, distort, seed)
    model = Model.from_arrays(pts, [("hex8", _hex_conn(ids))], E=E, nu=nu, source="hex_block")
    return name_planes(model)


# Kuhn split of a cube into 6 tetrahedra around the diagonal 0-6 (VTK hex numbering); the same
# split in every cube makes the mesh conforming.
_KUHN = np.array([[0, 1, 2, 6], [0, 2, 3, 6], [0, 3, 7, 6], [0, 7, 4, 6], [0, 4, 5, 6],
                  [0, 5, 1, 6]])


def tet_block(shape=(4, 4, 4), size=(1.0, 1.0, 1.0), origin=(0.0, 0.0, 0.0), *, order: int = 1,
              distort: float = 0.0, seed: int = 0, E=None, nu=None) -> Model:
    """A box of tet4 (``order=1``) or straight-sided tet10 (``order=2``) elements."""
    if order not in (1, 2):
        raise ValueError(f"order must be 1 (tet4) or 2 (tet10), got {order}")
    pts, ids = _grid(shape, size, origin, distort, seed)
    hexes = _hex_conn(ids)
    tets = hexes[:, _KUHN].reshape(-1, 4)
    tets = _orient(pts, tets)
    if order == 2:
        pts, tets = quadratic_tets(pts, tets)
    model = Model.from_arrays(pts, [("tet10" if order == 2 else "tet4", tets)], E=E, nu=nu,
                              source="tet_block")
    return name_planes(model)


def _orient(pts, tets):
    d = pts[tets[:, 1:]] - pts[tets[:, :1]]
    vol = np.einsum("ij,ij->i", d[:, 0], np.cross(d[:, 1], d[:, 2]))
    tets = tets.copy()
    neg = vol < 0
    tets[neg, 1], tets[neg, 2] = tets[neg, 2].copy(), tets[neg, 1].copy()
    return tets


def quadratic_tets(pts, tets):
    """Add a node at the middle of every edge: tet4 connectivity -> tet10 (VTK order)."""
    edges = np.array([[0, 1], [1, 2], [2, 0], [0, 3], [1, 3], [2, 3]])
    e = np.sort(tets[:, edges], axis=2).reshape(-1, 2)  # (6m, 2)
    uniq, inv = np.unique(e, axis=0, return_inverse=True)
    mid = 0.5 * (pts[uniq[:, 0]] + pts[uniq[:, 1]])
    new_ids = len(pts) + inv.ravel().reshape(-1, 6)
    return np.vstack([pts, mid]), np.hstack([tets, new_ids])
