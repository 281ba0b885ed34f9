"""Reference elements: node order, shape functions, quadrature and faces.

Node order is VTK's, which for these three types is also Abaqus/CalculiX's:

* ``tet4``  (VTK_TETRA, C3D4): corners at (0,0,0), (1,0,0), (0,1,0), (0,0,1).
* ``tet10`` (VTK_QUADRATIC_TETRA, C3D10): the four corners, then mid-edge nodes on edges
  (0,1), (1,2), (2,0), (0,3), (1,3), (2,3).
* ``hex8``  (VTK_HEXAHEDRON, C3D8): the face z=-1 counter-clockwise seen from +z, then z=+1.

Faces are numbered as Abaqus numbers them (S1, S2, ... stored 0-based); each face's nodes are
listed so that the right-hand rule gives the outward normal (corner nodes first, then mid-edge
nodes for tet10).

Volume quadrature is full Gauss integration: tet4 one point, tet10 four points (degree 2),
hex8 2x2x2. Face loads are integrated as CalculiX integrates them: 2x2 points on the bilinear
quadrilateral (exact for any hex8 face), and 3 points (degree 2, at (1/6, 1/6), (2/3, 1/6),
(1/6, 2/3)) on triangles, exact for flat straight-sided faces; on curved tet10 faces the total
force stays exact (the area vector is quadratic) and its split between the face nodes is the
3-point rule's, the same as CalculiX's.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# --------------------------------------------------------------------------------------------
# quadrature rules


def _gauss_hex() -> tuple[np.ndarray, np.ndarray]:
    g = 1.0 / np.sqrt(3.0)
    # VTK-like ordering of the 8 points: xi fastest, then eta, then zeta
    pts = np.array([[x, y, z] for z in (-g, g) for y in (-g, g) for x in (-g, g)])
    return pts, np.ones(8)


def _gauss_tet4() -> tuple[np.ndarray, np.ndarray]:
    return np.full((1, 3), 0.25), np.array([1.0 / 6.0])


def _gauss_tet10() -> tuple[np.ndarray, np.ndarray]:
    a, b = 0.5854101966249685, 0.1381966011250105
    pts = np.array([[b, b, b], [a, b, b], [b, a, b], [b, b, a]])
    return pts, np.full(4, 1.0 / 24.0)


def _gauss_quad() -> tuple[np.ndarray, np.ndarray]:
    g = 1.0 / np.sqrt(3.0)
    pts = np.array([[-g, -g], [g, -g], [g, g], [-g, g]])
    return pts, np.ones(4)


def _gauss_tri3() -> tuple[np.ndarray, np.ndarray]:
    pts = np.array([[1 / 6, 1 / 6], [2 / 3, 1 / 6], [1 / 6, 2 / 3]])
    return pts, np.full(3, 1.0 / 6.0)


# --------------------------------------------------------------------------------------------
# shape functions: each returns N (g, k) and dN/dxi (g, k, dim) at points (g, dim)


def _tet4_shape(p: np.ndarray):
    xi, eta, zeta = p[:, 0], p[:, 1], p[:, 2]
    N = np.stack([1 - xi - eta - zeta, xi, eta, zeta], axis=1)
    dN = np.broadcast_to(
        np.array([[-1.0, -1.0, -1.0], [1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0]]), (len(p), 4, 3)
    ).copy()
    return N, dN


_TET10_EDGES = ((0, 1), (1, 2), (2, 0), (0, 3), (1, 3), (2, 3))


def _tet10_shape(p: np.ndarray):
    L = np.stack([1 - p[:, 0] - p[:, 1] - p[:, 2], p[:, 0], p[:, 1], p[:, 2]], axis=1)
    dL = np.array([[-1.0, -1.0, -1.0], [1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0]])  # (4, 3)
    g = len(p)
    N = np.empty((g, 10))
    dN = np.empty((g, 10, 3))
    for a in range(4):
        N[:, a] = L[:, a] * (2 * L[:, a] - 1)
        dN[:, a, :] = (4 * L[:, a] - 1)[:, None] * dL[a]
    for m, (i, j) in enumerate(_TET10_EDGES):
        N[:, 4 + m] = 4 * L[:, i] * L[:, j]
        dN[:, 4 + m, :] = 4 * (L[:, j, None] * dL[i] + L[:, i, None] * dL[j])
    return N, dN


_HEX8_CORNERS = np.array(
    [[-1, -1, -1], [1, -1, -1], [1, 1, -1], [-1, 1, -1], [-1, -1, 1], [1, -1, 1], [1, 1, 1], [-1, 1, 1]],
    dtype=float,
)


def _hex8_shape(p: np.ndarray):
    c = _HEX8_CORNERS
    f = 1 + p[:, None, :] * c[None, :, :]  # (g, 8, 3)
    N = 0.125 * f[..., 0] * f[..., 1] * f[..., 2]
    dN = np.empty((len(p), 8, 3))
    dN[..., 0] = 0.125 * c[:, 0] * f[..., 1] * f[..., 2]
    dN[..., 1] = 0.125 * c[:, 1] * f[..., 0] * f[..., 2]
    dN[..., 2] = 0.125 * c[:, 2] * f[..., 0] * f[..., 1]
    return N, dN


def _tri3_shape(p: np.ndarray):
    xi, eta = p[:, 0], p[:, 1]
    N = np.stack([1 - xi - eta, xi, eta], axis=1)
    dN = np.broadcast_to(np.array([[-1.0, -1.0], [1.0, 0], [0, 1.0]]), (len(p), 3, 2)).copy()
    return N, dN


def _tri6_shape(p: np.ndarray):
    L = np.stack([1 - p[:, 0] - p[:, 1], p[:, 0], p[:, 1]], axis=1)
    dL = np.array([[-1.0, -1.0], [1.0, 0], [0, 1.0]])
    g = len(p)
    N = np.empty((g, 6))
    dN = np.empty((g, 6, 2))
    for a in range(3):
        N[:, a] = L[:, a] * (2 * L[:, a] - 1)
        dN[:, a, :] = (4 * L[:, a] - 1)[:, None] * dL[a]
    for m, (i, j) in enumerate(((0, 1), (1, 2), (2, 0))):
        N[:, 3 + m] = 4 * L[:, i] * L[:, j]
        dN[:, 3 + m, :] = 4 * (L[:, j, None] * dL[i] + L[:, i, None] * dL[j])
    return N, dN


def _quad4_shape(p: np.ndarray):
    c = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], dtype=float)
    f = 1 + p[:, None, :] * c[None, :, :]
    N = 0.25 * f[..., 0] * f[..., 1]
    dN = np.empty((len(p), 4, 2))
    dN[..., 0] = 0.25 * c[:, 0] * f[..., 1]
    dN[..., 1] = 0.25 * c[:, 1] * f[..., 0]
    return N, dN


# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FaceType:
    """A surface element used to integrate loads over element faces."""

    name: str
    n_nodes: int
    points: np.ndarray = field(repr=False)
    weights: np.ndarray = field(repr=False)
    N: np.ndarray = field(repr=False)
    dN: np.ndarray = field(repr=False)
    meshio: str = ""


def _face_type(name, shape, rule, meshio_name) -> FaceType:
    pts, w = rule()
    N, dN = shape(pts)
    return FaceType(name, N.shape[1], pts, w, N, dN, meshio_name)


FACE_TYPES = {
    "tri3": _face_type("tri3", _tri3_shape, _gauss_tri3, "triangle"),
    "tri6": _face_type("tri6", _tri6_shape, _gauss_tri3, "triangle6"),
    "quad4": _face_type("quad4", _quad4_shape, _gauss_quad, "quad"),
}


@dataclass(frozen=True)
class ElementType:
    """A solid element: reference geometry, shape functions and quadrature.

    ``N`` (g, k) and ``dN`` (g, k, 3) are the shape functions and their derivatives with respect
    to the reference coordinates at the ``g`` Gauss points; ``node_coords`` are the nodes'
    reference coordinates (used to check the Jacobian at the nodes too).
    """

    name: str
    n_nodes: int
    vtk_id: int
    meshio: str
    abaqus: str
    points: np.ndarray = field(repr=False)
    weights: np.ndarray = field(repr=False)
    N: np.ndarray = field(repr=False)
    dN: np.ndarray = field(repr=False)
    node_coords: np.ndarray = field(repr=False)
    dN_nodes: np.ndarray = field(repr=False)
    faces: tuple = field(repr=False)
    face_type: str = ""
    n_corners: int = 0

    @property
    def n_gauss(self) -> int:
        return len(self.weights)

    @property
    def n_faces(self) -> int:
        return len(self.faces)

    def shape(self, points: np.ndarray):
        """N and dN/dxi at arbitrary reference points (g, 3)."""
        return _SHAPES[self.name](np.asarray(points, dtype=float))


_SHAPES = {"tet4": _tet4_shape, "tet10": _tet10_shape, "hex8": _hex8_shape}

_TET4_NODES = np.array([[0.0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]])
_TET10_NODES = np.vstack(
    [_TET4_NODES, [(_TET4_NODES[i] + _TET4_NODES[j]) / 2 for i, j in _TET10_EDGES]]
)


def _element_type(name, vtk_id, meshio_name, abaqus, rule, nodes, faces, face_type, n_corners):
    pts, w = rule()
    N, dN = _SHAPES[name](pts)
    _, dN_nodes = _SHAPES[name](nodes)
    return ElementType(
        name, N.shape[1], vtk_id, meshio_name, abaqus, pts, w, N, dN, nodes, dN_nodes,
        tuple(tuple(f) for f in faces), face_type, n_corners,
    )


ELEMENT_TYPES: dict[str, ElementType] = {
    "tet4": _element_type(
        "tet4", 10, "tetra", "C3D4", _gauss_tet4, _TET4_NODES,
        [(0, 2, 1), (0, 1, 3), (1, 2, 3), (0, 3, 2)], "tri3", 4,
    ),
    "tet10": _element_type(
        "tet10", 24, "tetra10", "C3D10", _gauss_tet10, _TET10_NODES,
        [(0, 2, 1, 6, 5, 4), (0, 1, 3, 4, 8, 7), (1, 2, 3, 5, 9, 8), (0, 3, 2, 7, 9, 6)],
        "tri6", 4,
    ),
    "hex8": _element_type(
        "hex8", 12, "hexahedron", "C3D8", _gauss_hex, _HEX8_CORNERS,
        [(0, 3, 2, 1), (4, 5, 6, 7), (0, 1, 5, 4), (1, 2, 6, 5), (2, 3, 7, 6), (3, 0, 4, 7)],
        "quad4", 8,
    ),
}

MESHIO_TO_TYPE = {t.meshio: name for name, t in ELEMENT_TYPES.items()}
ABAQUS_TO_TYPE = {t.abaqus: name for name, t in ELEMENT_TYPES.items()}
