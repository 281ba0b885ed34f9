"""From boundary conditions and loads to the algebraic system.

:func:`compile_conditions` turns a model's conditions into a load vector, prescribed degrees of
freedom and rigid-plate couplings; :func:`check_constraints` finds, before any solve, rigid-body
motions that the supports leave free. Face loads are integrated with the face quadrature of
:mod:`fem.elements`, giving consistent nodal loads.

Degrees of freedom are numbered ``3 * node + component``. A rigid plate adds two pseudo-nodes
after the mesh nodes: one carrying its three translations, one its three rotations.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from . import loads as L
from .elements import FACE_TYPES
from .errors import BoundaryConditionError, MechanismError, UnderConstrainedError, format_labels
from .model import FaceSet, Model
from .solvers import rigid_modes_at

MOTIONS = ("translation x", "translation y", "translation z",
           "rotation about x", "rotation about y", "rotation about z")


@dataclass
class Plate:
    """A compiled rigid plate: coupled nodes, reference point, loads and prescribed components."""

    name: str
    nodes: np.ndarray
    reference: np.ndarray
    force: np.ndarray
    moment: np.ndarray
    prescribed: dict  # local dof 0..5 -> value
    first_dof: int  # the plate's 6 dofs are first_dof .. first_dof + 5


@dataclass
class System:
    """The model's conditions in algebraic form (host arrays)."""

    n_mesh_dof: int
    n_dof: int
    f: np.ndarray
    fixed_dofs: np.ndarray
    fixed_values: np.ndarray
    plates: list = field(default_factory=list)
    constraint_sets: list = field(default_factory=list)  # (name, node indices, dofs mask (3,))
    active_nodes: np.ndarray | None = None
    fixed_owners: list = field(default_factory=list)  # the condition name that fixed each dof

    @property
    def slave_nodes(self) -> np.ndarray:
        if not self.plates:
            return np.zeros(0, dtype=np.int64)
        return np.concatenate([p.nodes for p in self.plates])


def face_integrals(model: Model, fs: FaceSet):
    """Per face type: (face node indices (nf, kf), N-weighted area vectors (nf, kf, 3) and
    N-weighted areas (nf, kf)), i.e. the integrals of N_a n dA and N_a dA over each face."""
    return [(conn,) + face_vectors(ft_name, model.points[conn])
            for ft_name, conn, _ in model.face_nodes(fs)]


def face_vectors(face_type: str, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The integrals of N_a n dA (nf, kf, 3) and N_a dA (nf, kf) over faces of ``face_type``
    with nodes X (nf, kf, 3), by the face quadrature (:data:`fem.elements.FACE_TYPES`)."""
    ft = FACE_TYPES[face_type]
    # tangents dx/dxi, dx/deta at the face Gauss points: (nf, g, 3)
    t1 = np.einsum("gk,nkc->ngc", ft.dN[:, :, 0], X)
    t2 = np.einsum("gk,nkc->ngc", ft.dN[:, :, 1], X)
    nvec = np.cross(t1, t2)  # outward normal times the area scale
    area = np.linalg.norm(nvec, axis=-1)
    Nw = ft.N * ft.weights[:, None]  # (g, kf)
    return np.einsum("gk,ngc->nkc", Nw, nvec), np.einsum("gk,ng->nk", Nw, area)


def add_face_load(model: Model, cond, fv: np.ndarray) -> None:
    """Add the consistent nodal forces (N) of a Pressure, Traction or TotalForce to fv (n, 3)."""
    ints = face_integrals(model, model.faces_of(cond.target))
    if isinstance(cond, L.Pressure):
        for conn, nvec, _ in ints:
            np.add.at(fv, conn.ravel(), (-cond.pressure * nvec).reshape(-1, 3))
        return
    t = np.asarray(cond.traction if isinstance(cond, L.Traction) else cond.force, dtype=float)
    if isinstance(cond, L.TotalForce):
        t = t / sum(a.sum() for _, _, a in ints)
    for conn, _, area in ints:
        np.add.at(fv, conn.ravel(), (area[..., None] * t).reshape(-1, 3))


def compile_conditions(model: Model) -> System:
    """Load vector, prescribed dofs and plates from ``model.conditions`` (raises on conflicts)."""
    n = model.n_nodes
    plates_in = [c for c in model.conditions if isinstance(c, L.RigidPlate)]
    n_dof = 3 * n + 6 * len(plates_in)
    f = np.zeros(n_dof)
    prescribed: dict[int, tuple[float, str]] = {}
    constraint_sets = []
    used = model.used_nodes()

    def prescribe(dof: int, value: float, who: str):
        if dof in prescribed and prescribed[dof][0] != value:
            node, comp = divmod(dof, 3)
            raise BoundaryConditionError(
                f"conflicting prescribed displacement at node {model.node_ids[node]} "
                f"({'xyz'[comp]}): {prescribed[dof][0]:g} mm from {prescribed[dof][1]!r} and "
                f"{value:g} mm from {who!r}")
        prescribed[dof] = (value, who)

    for c in model.conditions:
        name = L.describe(c)
        if isinstance(c, L.CONSTRAINTS):
            nodes = model.nodes_of(c.target)
            vals = c.values()
            mask = np.array([v is not None for v in vals])
            for comp, v in enumerate(vals):
                if v is None:
                    continue
                for node in nodes.tolist():
                    prescribe(3 * node + comp, float(v), name)
            constraint_sets.append((name, nodes, mask))
        elif isinstance(c, L.NodalForce):
            nodes = model.nodes_of(c.target)
            orphan = nodes[~used[nodes]]
            if len(orphan):
                raise BoundaryConditionError(
                    f"load {name!r} acts on node(s) {format_labels(model.node_ids[orphan])} that "
                    "belong to no element")
            f[:3 * n].reshape(n, 3)[nodes] += c.forces(nodes)
        elif isinstance(c, L.FACE_LOADS):
            add_face_load(model, c, f[:3 * n].reshape(n, 3))

    plates = []
    owner: dict[int, str] = {}
    for pi, c in enumerate(plates_in):
        name = c.name or L.describe(c)
        nodes = model.nodes_of(c.target)
        for node in nodes.tolist():
            if node in owner:
                raise BoundaryConditionError(
                    f"node {model.node_ids[node]} is coupled to two rigid plates "
                    f"({owner[node]!r} and {name!r})")
            owner[node] = name
        ref = np.asarray(c.reference if c.reference is not None else model.points[nodes].mean(0))
        first = 3 * n + 6 * pi
        pres = {}
        for comp, v in enumerate(tuple(c.displacement) + tuple(c.rotation)):
            if v is not None:
                pres[comp] = float(v)
                prescribe(first + comp, float(v), name)
        f[first:first + 3] += c.force
        f[first + 3:first + 6] += c.moment
        plates.append(Plate(name, nodes, ref, np.asarray(c.force), np.asarray(c.moment),
                            pres, first))
    coupled = np.array(sorted(owner), dtype=np.int64)
    if len(coupled):
        clash = [d for d in prescribed if d < 3 * n and d // 3 in owner]
        if clash:
            node = clash[0] // 3
            raise BoundaryConditionError(
                f"node {model.node_ids[node]} is coupled to rigid plate {owner[node]!r} and also "
                f"has a boundary condition from {prescribed[clash[0]][1]!r}: over-constrained")
        # loads on coupled nodes go to the plate (they are transferred by the coupling)

    dofs = np.array(sorted(prescribed), dtype=np.int64)
    values = np.array([prescribed[d][0] for d in dofs.tolist()])
    owners = [prescribed[d][1] for d in dofs.tolist()]
    return System(3 * n, n_dof, f, dofs, values, plates, constraint_sets, used, owners)


# ------------------------------------------------------------------ rigid-body checks


def _components(model: Model, system: System) -> tuple[int, np.ndarray]:
    """Connected components of the element graph (plates join what they couple)."""
    import scipy.sparse as sp
    from scipy.sparse.csgraph import connected_components

    n = model.n_nodes
    rows, cols = [], []
    for b in model.blocks:
        c = b.conn
        rows.append(np.repeat(c[:, :1], c.shape[1], axis=1).ravel())
        cols.append(c.ravel())
    for p in system.plates:
        rows.append(np.full(len(p.nodes), p.nodes[0]))
        cols.append(p.nodes)
    r = np.concatenate(rows)
    cc = np.concatenate(cols)
    g = sp.coo_matrix((np.ones(len(r), dtype=np.int8), (r, cc)), shape=(n, n))
    return connected_components(g, directed=False)


def rigid_rows(x: np.ndarray, centre: np.ndarray, L: float) -> np.ndarray:
    """Rows (3 per point) of the six rigid-body modes about ``centre``; rotations scaled by L."""
    return rigid_modes_at((x - centre) / L)


def check_constraints(model: Model, system: System) -> None:
    """Raise :class:`UnderConstrainedError` if supports leave a rigid-body motion free.

    For each connected part of the mesh the six rigid-body modes are restricted to the
    constrained degrees of freedom; what remains in their null space is free and is named
    (translations, rotations about axes through the supported points).
    """
    n = model.n_nodes
    ncomp, labels = _components(model, system)
    used = system.active_nodes if system.active_nodes is not None else np.ones(n, bool)
    fixed = system.fixed_dofs
    mesh_fixed = fixed[fixed < 3 * n]
    fixed_mask = np.zeros(3 * n, dtype=bool)
    fixed_mask[mesh_fixed] = True
    problems = []
    for comp in range(ncomp):
        nodes = np.nonzero((labels == comp) & used)[0]
        if len(nodes) == 0:
            continue
        x = model.points[nodes]
        L = float(np.max(np.ptp(x, axis=0))) or 1.0
        rows = []
        cmask = fixed_mask.reshape(n, 3)[nodes]
        centre = x.mean(axis=0)
        R = rigid_rows(x, centre, L)
        rows.append(R[cmask])
        for p in system.plates:
            if p.prescribed and labels[p.nodes[0]] == comp:
                Rp = rigid_rows(p.reference[None], centre, L)[0]  # (3, 6)
                for k, _ in p.prescribed.items():
                    if k < 3:
                        rows.append(Rp[k][None])
                    else:
                        r = np.zeros((1, 6))
                        r[0, k] = 1.0
                        rows.append(r)
        C = np.concatenate(rows) if rows else np.zeros((0, 6))
        free = free_motions(C, centre, L)
        if free:
            where = "" if ncomp == 1 else f" of the part containing node {model.node_ids[nodes[0]]}"
            problems.append((where, free))
    if problems:
        where, free = problems[0]
        more = f" ({len(problems)} unsupported parts in all)" if len(problems) > 1 else ""
        raise UnderConstrainedError(
            f"the model is under-constrained: rigid-body motion(s) {', '.join(free)}{where} are "
            f"free{more}; add supports (Fixed/Displacement or *BOUNDARY) that stop them",
            free_motions=free)
    check_mechanisms(model, system)


def _solid_components(model: Model) -> tuple[int, np.ndarray]:
    """Connected components of the elements joined through shared faces (per element)."""
    import scipy.sparse as sp
    from scipy.sparse.csgraph import connected_components

    from .topology import face_neighbours

    a, b = face_neighbours(model)
    n = model.n_elements
    g = sp.coo_matrix((np.ones(len(a), dtype=np.int8), (a, b)), shape=(n, n))
    return connected_components(g, directed=False)


def check_mechanisms(model: Model, system: System) -> None:
    """Raise :class:`MechanismError` if a part of the mesh is held only through nodes or edges.

    Parts whose elements share faces are rigid bodies to first order when joined to others by a
    single node or the nodes of one edge: such a joint is a hinge, about which the part rotates
    freely (the stiffness matrix is singular, or nearly so, and a solver returns an arbitrary
    rotation). Each solid part (elements joined through faces; parts coupled to one rigid plate
    move with it) gets six rigid-body unknowns; its supports and the nodes it shares with other
    parts (same motion on both sides) are constraints; a non-zero motion that satisfies them
    all is a mechanism, named with the parts' regions and the joint's nodes. A model whose
    parts are joined through faces has one solid part and costs one face sort."""
    ncomp, comp = _solid_components(model)
    if ncomp <= 1:
        return
    n = model.n_nodes
    # node -> solid parts (a node of several parts is a joint)
    pairs_np = np.unique(np.concatenate([
        np.stack([b.conn.ravel(), np.repeat(comp[b.start:b.stop], b.conn.shape[1])], axis=1)
        for b in model.blocks]), axis=0)  # (node, part), sorted by node
    node_part = np.full(n, -1, dtype=np.int64)
    node_part[pairs_np[::-1, 0]] = pairs_np[::-1, 1]  # each node's first (lowest) part
    other = pairs_np[:, 1] != node_part[pairs_np[:, 0]]
    pairs = np.stack([pairs_np[other, 0], node_part[pairs_np[other, 0]], pairs_np[other, 1]],
                     axis=1)
    # parts coupled to one rigid plate move together: one group (gidx: part -> group)
    import scipy.sparse as sp
    from scipy.sparse.csgraph import connected_components

    links = [np.unique(node_part[p.nodes]) for p in system.plates]
    links = [ps[ps >= 0] for ps in links]
    a = np.concatenate([ps[:-1] for ps in links] + [np.zeros(0, np.int64)])
    b = np.concatenate([ps[1:] for ps in links] + [np.zeros(0, np.int64)])
    ng, gidx = connected_components(
        sp.coo_matrix((np.ones(len(a), dtype=np.int8), (a, b)), shape=(ncomp, ncomp)),
        directed=False)
    L = float(np.max(np.ptp(model.points, axis=0))) or 1.0
    centre = model.points.mean(axis=0)
    fixed = system.fixed_dofs
    mask = np.zeros(3 * n, dtype=bool)
    mask[fixed[fixed < 3 * n]] = True
    mask = mask.reshape(n, 3)
    node_group = np.where(node_part >= 0, gidx[np.maximum(node_part, 0)], -1)
    sup = np.nonzero(mask.any(axis=1))[0]
    R = rigid_rows(model.points[sup], centre, L).reshape(len(sup), 3, 6)
    supports = {}
    for g in range(ng):
        sel = node_group[sup] == g
        C = R[sel][mask[sup[sel]]]
        for p in system.plates:
            if p.prescribed and node_group[p.nodes[0]] == g:
                Rp = rigid_rows(p.reference[None], centre, L)[0]
                for k in p.prescribed:
                    C = np.vstack([C, Rp[k][None] if k < 3 else np.eye(6)[k][None]])
        supports[g] = C
    jn = pairs[:, 0]
    ga, gb = gidx[pairs[:, 1]], gidx[pairs[:, 2]]
    keep = ga != gb
    jn, ga, gb = jn[keep], ga[keep], gb[keep]
    found = moving_part(ng, supports, (model.points[jn], ga, gb), centre, L)
    if found is None:
        return
    g, free = found
    parts = np.nonzero(gidx == g)[0]
    els = np.nonzero(np.isin(comp, parts))[0]
    codes = np.unique(model.element_region[els])
    regions = sorted(model.region_names[r] if r >= 0 else "no material region" for r in codes)
    hinge = np.unique(np.concatenate([jn[ga == g], jn[gb == g]]))
    what = f" ({', '.join(free)})" if free else ""
    raise MechanismError(
        f"the model is a mechanism: a part of {len(els)} element(s) ({', '.join(regions)}; "
        f"element {model.element_ids[els[0]]}) is joined to the rest only "
        f"through node(s) {format_labels(model.node_ids[hinge])}, a hinge about which it moves "
        f"freely{what}; parts must share element faces (or be supported on their own)",
        free_motions=free)


def moving_part(ng: int, supports: dict, joints, centre, L: float):
    """The rigid-body algebra of :func:`check_mechanisms`, on any mesh: ``ng`` rigid parts with
    six motions each (u(x) = t + theta x (x - centre) / L), ``supports`` part -> (k, 6) rows of
    its supported motions (:func:`rigid_rows` at its supported dofs), ``joints`` (points (j, 3),
    part a (j,), part b (j,)): nodes that two parts share, where both must move alike.
    Returns None when every part is held, else (a moving part, names of its free motions)."""
    rows = []
    for g, C in supports.items():
        if len(C):
            _, sv, vt = np.linalg.svd(C, full_matrices=False)  # at most six rows kept
            row = np.zeros((len(sv), 6 * ng))
            row[:, 6 * g:6 * g + 6] = sv[:, None] * vt
            rows.append(row)
    jp, ga, gb = joints
    if len(jp):
        B = rigid_rows(jp, centre, L).reshape(len(jp), 3, 6)
        row = np.zeros((len(jp), 3, 6 * ng))
        for i in range(len(jp)):
            row[i, :, 6 * ga[i]:6 * ga[i] + 6] += B[i]
            row[i, :, 6 * gb[i]:6 * gb[i] + 6] -= B[i]
        rows.append(row.reshape(-1, 6 * ng))
    A = np.concatenate(rows) if rows else np.zeros((0, 6 * ng))
    if len(A) < 6 * ng:
        A = np.vstack([A, np.zeros((6 * ng - len(A), 6 * ng))])
    _, sv, vt = np.linalg.svd(A, full_matrices=False)
    null = vt[sv <= 1e-9 * max(1.0, sv[0])]
    if not len(null):
        return None
    moving = np.nonzero(np.abs(null).reshape(len(null), ng, 6).max(axis=(0, 2)) > 1e-6)[0]
    g = int(moving[0])
    Cg = A[:, 6 * g:6 * g + 6][np.abs(A[:, 6 * g:6 * g + 6]).sum(axis=1) > 0]
    return g, (free_motions(Cg, centre, L) if len(Cg) else [])


def free_motions(C: np.ndarray, centre, L) -> list[str]:
    """Names of the rigid-body motions in the null space of the constraint rows C (k, 6).

    A motion is (t, theta) with u(x) = t + theta x (x - centre) / L. Free translations along x, y, z
    and free rotations about axes parallel to x, y, z are named with a point of their axis; what
    else is free is described by its direction.
    """
    if len(C):
        if len(C) < 6:  # the thin SVD of fewer than six rows would hide the null space
            C = np.vstack([C, np.zeros((6 - len(C), 6))])
        _, s, vt = np.linalg.svd(C, full_matrices=False)
        rank = int((s > 1e-9 * max(1.0, s[0])).sum())
        null = vt[rank:]
    else:
        null = np.eye(6)
    if len(null) == 0:
        return []
    Q = np.eye(6) - null.T @ null  # residual of the projection onto the free motions
    names, found = [], []
    for k in range(3):
        if np.linalg.norm(Q[:, k]) < 1e-6:
            names.append(MOTIONS[k])
            found.append(np.eye(6)[k])
    for k in range(3):
        theta = np.eye(3)[k]
        t = np.linalg.lstsq(Q[:, :3], -Q[:, 3:] @ theta, rcond=None)[0]
        v = np.concatenate([t, theta])
        if np.linalg.norm(Q @ v) < 1e-6 * np.linalg.norm(v):
            names.append(f"{MOTIONS[3 + k]} through {_fmt_pt(_axis_point(t, theta, centre, L))}")
            found.append(v)
    if len(found) < len(null):
        F = np.linalg.qr(np.array(found).T)[0] if found else np.zeros((6, 0))
        rest = null.T - F @ (F.T @ null.T)
        u, sv, _ = np.linalg.svd(rest, full_matrices=False)
        for w in u[:, sv > 1e-6].T[: len(null) - len(found)]:
            t, theta = w[:3], w[3:]
            if np.linalg.norm(theta) < 1e-9:
                names.append(f"translation along {_fmt_vec(t / np.linalg.norm(t))}")
            else:
                names.append(f"rotation about an axis along {_fmt_vec(theta / np.linalg.norm(theta))}"
                             f" through {_fmt_pt(_axis_point(t, theta, centre, L))}")
    return names


def _axis_point(t, theta, centre, L):
    """A point of the rotation axis of the motion u(x) = t + theta x (x - centre) / L."""
    p = centre + L * np.cross(theta, t) / float(theta @ theta)
    p[np.abs(p) < 1e-9 * L] = 0.0
    return p


def _fmt_pt(p) -> str:
    return "(" + ", ".join(f"{v:.4g}" for v in p) + ") mm"


def _fmt_vec(v) -> str:
    return "(" + ", ".join(f"{x:.3f}" for x in v) + ")"
