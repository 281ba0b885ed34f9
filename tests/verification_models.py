"""Models with known exact solutions, shared by the verification tests (units mm, N, MPa).

* :func:`cylinder_quarter` -- a quarter of a thick-walled cylinder (Lame's problem), meshed in
  (r, theta, z) and mapped to (x, y, z) so that tet10 mid-edge nodes lie on the arcs.
* :func:`lame_plane_strain` -- Lame's solution for internal pressure in plane strain.
* :func:`impose_field` -- one prescribed displacement per node, for patch tests and exact clamps.
* :func:`consistent_nodal_forces` -- nodal forces of a non-uniform traction (the cantilever's
  parabolic end shear), applied with :func:`apply_nodal_forces`.
* :func:`snap_plane` -- keeps a material interface plane in a distorted mesh.
* :func:`rigid_body_modes` -- the six rigid-body motions as columns of a (3n, 6) matrix.

This module lives in tests/ (not fem.meshes): it imports nothing that users need.
"""

from __future__ import annotations

import numpy as np

import fem
from fem.assembly import element_centroids
from fem.meshes.blocks import hex_block, tet_block

# block plane -> name on the quarter cylinder (r = x, theta = y of the parameter block)
CYLINDER_SETS = {"xmin": "inner", "xmax": "outer", "ymin": "y0", "ymax": "x0"}


def block(kind: str, shape, size=(1.0, 1.0, 1.0), origin=(0.0, 0.0, 0.0), **kw) -> fem.Model:
    """A block of ``kind`` "hex8", "hex8-bbar", "tet4" or "tet10" (hex8 formulation set)."""
    if kind.startswith("hex8"):
        m = hex_block(shape, size, origin, **kw)
        m.hex8_formulation = "bbar" if kind == "hex8-bbar" else "full"
        return m
    return tet_block(shape, size, origin, order={"tet4": 1, "tet10": 2}[kind], **kw)


def cylinder_quarter(kind: str, nr: int, nt: int, nz: int = 1, *, ri=1.0, ro=2.0, length=0.5,
                     E=1000.0, nu=0.3, formulation: str = "full") -> fem.Model:
    """Quarter cylinder ri <= r <= ro, 0 <= theta <= pi/2, 0 <= z <= length.

    Sets (node and face): "inner", "outer", "y0" (the plane y = 0), "x0" (x = 0), "zmin", "zmax".
    """
    m = block(kind, (nr, nt, nz), size=(ro - ri, 0.5 * np.pi, length), origin=(ri, 0.0, 0.0),
              E=E, nu=nu)
    if kind.startswith("hex8"):
        m.hex8_formulation = formulation
    r, t, z = m.points.T
    m.points = np.column_stack([r * np.cos(t), r * np.sin(t), z])
    for old, new in CYLINDER_SETS.items():
        m.node_sets[new] = m.node_sets.pop(old)
        m.face_sets[new] = m.face_sets.pop(old)
    return m


def lame_plane_strain(r, p, ri, ro, E, nu):
    """Radial displacement, radial and hoop stress of a thick cylinder under internal pressure p
    with no axial strain (plane strain)."""
    A = p * ri**2 / (ro**2 - ri**2)
    B = A * ro**2
    ur = (1.0 + nu) / E * ((1.0 - 2.0 * nu) * A * r + B / r)
    return ur, A - B / r**2, A + B / r**2


def solve_lame(model: fem.Model, p: float = 1.0) -> fem.Result:
    """Internal pressure, symmetry planes, no axial displacement on both end faces."""
    model.add(fem.Pressure("inner", p), fem.Fixed("y0", "y"), fem.Fixed("x0", "x"),
              fem.Fixed("zmin", "z"), fem.Fixed("zmax", "z"))
    return fem.solve(model, backend="numpy", solver="direct")


def polar_stress(model: fem.Model, stress: np.ndarray):
    """Element-centroid radius, radial and hoop components of element stresses (n, 6)."""
    c = element_centroids(model)
    t = np.arctan2(c[:, 1], c[:, 0])
    cs, sn = np.cos(t), np.sin(t)
    sxx, syy, sxy = stress[:, 0], stress[:, 1], stress[:, 3]
    srr = cs**2 * sxx + sn**2 * syy + 2 * cs * sn * sxy
    stt = sn**2 * sxx + cs**2 * syy - 2 * cs * sn * sxy
    return np.hypot(c[:, 0], c[:, 1]), srr, stt


def impose_field(model: fem.Model, nodes, field) -> fem.Model:
    """Prescribe ``field(x) -> (n, 3)`` at each of ``nodes`` (one Displacement per node)."""
    nodes = np.asarray(nodes)
    values = field(model.points[nodes])
    model.add(*(fem.Displacement(np.array([n]), tuple(float(v) for v in val))
                for n, val in zip(nodes.tolist(), values)))
    return model


def boundary_nodes(model: fem.Model) -> np.ndarray:
    from fem.topology import boundary_faces

    e, f = boundary_faces(model)
    return model.nodes_of((e, f))


def rigid_body_modes(points: np.ndarray) -> np.ndarray:
    """(3n, 6): translations x, y, z and rotations about x, y, z through the centroid."""
    d = points - points.mean(axis=0)
    n = len(points)
    R = np.zeros((n, 3, 6))
    R[:, 0, 0] = R[:, 1, 1] = R[:, 2, 2] = 1.0
    R[:, 1, 3], R[:, 2, 3] = -d[:, 2], d[:, 1]
    R[:, 0, 4], R[:, 2, 4] = d[:, 2], -d[:, 0]
    R[:, 0, 5], R[:, 1, 5] = -d[:, 1], d[:, 0]
    return R.reshape(3 * n, 6)


def observed_rates(h, err) -> np.ndarray:
    """log(e_i / e_i+1) / log(h_i / h_i+1) for consecutive refinements."""
    h, err = np.asarray(h, float), np.asarray(err, float)
    return np.log(err[:-1] / err[1:]) / np.log(h[:-1] / h[1:])


def consistent_nodal_forces(model: fem.Model, face_set: str, traction):
    """Nodes and consistent nodal forces (N) of a traction field ``traction(x) -> (g, 3)`` (MPa)
    on a face set: f_a = int N_a t dA with the face quadrature of :mod:`fem.elements` (exact for
    tractions quadratic in x on flat faces)."""
    from fem.elements import FACE_TYPES

    f = np.zeros((model.n_nodes, 3))
    for ft_name, conn, _ in model.face_nodes(model.face_sets[face_set]):
        ft = FACE_TYPES[ft_name]
        X = model.points[conn]
        xg = np.einsum("gk,nkc->ngc", ft.N, X)
        t1 = np.einsum("gk,nkc->ngc", ft.dN[:, :, 0], X)
        t2 = np.einsum("gk,nkc->ngc", ft.dN[:, :, 1], X)
        dA = np.linalg.norm(np.cross(t1, t2), axis=-1) * ft.weights
        tg = traction(xg.reshape(-1, 3)).reshape(xg.shape)
        np.add.at(f, conn.ravel(), np.einsum("gk,ng,ngc->nkc", ft.N, dA, tg).reshape(-1, 3))
    nodes = np.nonzero(np.abs(f).sum(axis=1) > 0)[0]
    return nodes, f[nodes]


def apply_nodal_forces(model: fem.Model, nodes, forces) -> fem.Model:
    model.add(*(fem.NodalForce(np.array([n]), tuple(float(v) for v in fv))
                for n, fv in zip(np.asarray(nodes).tolist(), forces)))
    return model


def snap_plane(model: fem.Model, twin: fem.Model, axis: int, value: float) -> np.ndarray:
    """Put back onto the plane x_axis = value the nodes that ``twin`` (the same mesh undistorted)
    has there, so that a material interface stays plane in a distorted mesh; returns them."""
    on = np.nonzero(np.abs(twin.points[:, axis] - value) < 1e-12)[0]
    model.points[on, axis] = value
    straighten_tet10(model)
    return on


def straighten_tet10(model: fem.Model) -> fem.Model:
    """Put every tet10 mid-edge node back at the middle of its edge."""
    for b in model.blocks:
        if b.type == "tet10":
            for m, (i, j) in enumerate(((0, 1), (1, 2), (2, 0), (0, 3), (1, 3), (2, 3))):
                model.points[b.conn[:, 4 + m]] = 0.5 * (model.points[b.conn[:, i]]
                                                        + model.points[b.conn[:, j]])
    return model


def orthotropic_result() -> fem.Result:
    """A solved 2-element block, orthotropic (bone) in one region and isotropic (cement) in the
    other: the result files the readers' tests write and mutate."""
    m = hex_block((2, 1, 1), (2.0, 1.0, 1.0))
    m.add_region("bone", [0])
    m.add_region("cement", [1])
    m.set_material("cement", E=3000.0, nu=0.3)
    m.set_orthotropic("bone", E=(1987.0, 1357.0, 4730.0), nu=(0.31, 0.12, 0.07),
                      G=(520.0, 910.0, 760.0))
    m.fix("xmin").add(fem.NodalForce("xmax", (1.0, 0.0, 0.0)))
    return fem.solve(m, backend="numpy", solver="direct")

