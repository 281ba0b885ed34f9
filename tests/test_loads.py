"""Loads, rigid plates, reactions and the under-constrained check (units mm, N, MPa).

Surface loads are consistent nodal loads (the integrals of N_a t dA); on a curved face set their
resultant and moment depend only on the set's boundary curve, which gives exact checks on bumpy
surfaces. Rigid-plate and reaction checks use problems whose exact solutions are linear or
quadratic fields (nu = 0 where a plate would otherwise restrain the Poisson contraction).
"""

import re

import numpy as np
import pytest

import fem
from fem.assembly import assemble_stiffness, to_matrix
from fem.kernels.backend import get_backend
from fem.system import compile_conditions
from verification_models import block, straighten_tet10

KINDS = ["tet4", "tet10", "hex8"]
LX, LY, LZ = 2.0, 1.5, 1.0
ORIGIN = np.array([0.5, -0.25, 0.2])


def _solve(m):
    return fem.solve(m, backend="numpy", solver="direct")


def _bumpy_top(kind, rng, in_plane=0.0, bump=0.0):
    """A distorted block whose top face (zmax) is moved: inner corner nodes in-plane at random
    (tet10 edges kept straight, so no face folds), then all its nodes up by a smooth bump (curved
    tet10 faces). The face's boundary, where it meets the four sides, stays in place."""
    m = block(kind, (4, 3, 3), (LX, LY, LZ), ORIGIN, distort=0.2, seed=5, E=100.0, nu=0.3)
    top = m.node_sets["zmax"]
    sides = np.concatenate([m.node_sets[s] for s in ("xmin", "xmax", "ymin", "ymax")])
    corners = np.unique(m.blocks[0].conn[:, :m.blocks[0].etype.n_corners])
    inner = np.intersect1d(np.setdiff1d(top, sides), corners)
    m.points[inner, :2] += rng.uniform(-in_plane, in_plane, (len(inner), 2)) * [LX / 4, LY / 3]
    straighten_tet10(m)
    s = (m.points[top, :2] - ORIGIN[:2]) / [LX, LY]
    m.points[top, 2] += bump * LZ * np.sin(np.pi * s[:, 0]) * np.sin(2 * np.pi * s[:, 1])
    return m


def _nodal(m):
    return compile_conditions(m).f[:3 * m.n_nodes].reshape(-1, 3)


def _loop_integral(phi, z, n=4):
    """Integral of phi(x) dl around the top rectangle, counter-clockwise seen from +z."""
    x0, y0 = ORIGIN[:2]
    corners = np.array([[x0, y0], [x0 + LX, y0], [x0 + LX, y0 + LY], [x0, y0 + LY], [x0, y0]])
    s, w = np.polynomial.legendre.leggauss(n)
    total = 0.0
    for a, b in zip(corners[:-1], corners[1:]):
        pts = 0.5 * (a + b) + 0.5 * np.outer(s, b - a)
        x = np.column_stack([pts, np.full(n, z)])
        dl = 0.5 * np.outer(w, np.append(b - a, 0.0))  # (n, 3) weighted tangent
        total = total + (phi(x)[:, None] * dl).sum(axis=0)
    return total


@pytest.mark.parametrize("kind", KINDS)
def test_pressure_on_curved_faces_gives_projected_area_force(kind, rng):
    """sum f = -p int n dA = -p (0, 0, LX LY): the vector area of a surface depends only on its
    boundary. The moment sum x_a x f_a = p oint |x|^2/2 dl is exact too, since x = sum N_a x_a,
    where the face rule integrates x (x) n exactly: on hex8 and tet4 faces. Curved tet10 faces use
    CalculiX's 3-point rule (degree 2; the integrand is quartic), so there the moment is only
    close, while the force (quadratic integrand) stays exact."""
    m = _bumpy_top(kind, rng, in_plane=0.2, bump=0.3)
    top_z = ORIGIN[2] + LZ
    assert np.ptp(m.points[m.node_sets["zmax"], 2]) > 0.05  # really curved
    p = 0.8
    m.add(fem.Pressure("zmax", p))
    f = _nodal(m)
    assert np.allclose(f.sum(axis=0), [0.0, 0.0, -p * LX * LY], rtol=0, atol=1e-13 * p * LX * LY)
    moment = np.cross(m.points, f).sum(axis=0)
    expected = p * _loop_integral(lambda x: 0.5 * (x * x).sum(axis=1), top_z)
    tol = 1e-4 if kind == "tet10" else 1e-12
    assert np.allclose(moment, expected, rtol=0, atol=tol * np.abs(expected).max())
    assert np.all(f[np.setdiff1d(np.arange(m.n_nodes), m.nodes_of("zmax"))] == 0.0)


@pytest.mark.parametrize("kind", KINDS)
def test_traction_and_total_force(kind, rng):
    """A traction t on a flat face set with moved nodes gives t * area; a total force F is
    reproduced exactly, also on a curved face set, and is spread in proportion to area."""
    t = np.array([0.3, -0.2, 0.5])
    m = _bumpy_top(kind, rng, in_plane=0.25)
    m.add(fem.Traction("zmax", tuple(t)))
    assert np.allclose(_nodal(m).sum(axis=0), t * LX * LY, rtol=1e-13)
    # first moment: uniform traction on a flat rectangle acts at its centre
    f = _nodal(m)
    centre = ORIGIN + [LX / 2, LY / 2, LZ]
    assert np.allclose(np.cross(m.points - centre, f).sum(axis=0), 0.0, atol=1e-13 * LX * LY)

    F = np.array([-3.0, 7.0, 11.0])
    curved = _bumpy_top(kind, rng, in_plane=0.2, bump=0.3)
    curved.add(fem.TotalForce("zmax", tuple(F)))
    fc = _nodal(curved)
    assert np.allclose(fc.sum(axis=0), F, rtol=1e-13)
    flat = _bumpy_top(kind, rng, in_plane=0.25)
    flat.add(fem.TotalForce("zmax", tuple(F)), fem.Traction("zmin", tuple(F / (LX * LY))))
    ff = _nodal(flat)
    top, bottom = flat.nodes_of("zmax"), flat.nodes_of("zmin")
    assert np.allclose(ff[top].sum(axis=0), F, rtol=1e-13)
    assert np.allclose(ff[bottom].sum(axis=0), F, rtol=1e-13)


@pytest.mark.parametrize("kind,expected", [
    ("tet4", [1 / 3] * 3),  # linear triangle: a third at each corner
    ("tet10", [0, 0, 0, 1 / 3, 1 / 3, 1 / 3]),  # quadratic triangle: nothing at the corners
    ("hex8", [1 / 4] * 4),  # bilinear quadrilateral (a parallelogram here)
])
def test_consistent_nodal_loads_of_one_face(kind, expected):
    """The textbook consistent loads of a uniform pressure on one flat face."""
    et = fem.elements.ELEMENT_TYPES[kind]
    A = np.array([[2.0, 0.3, 0.0], [0.0, 1.5, 0.2], [0.1, 0.0, 1.2]])
    pts = et.node_coords @ A.T
    m = fem.Model.from_arrays(pts, [(kind, np.arange(et.n_nodes)[None])], E=100.0, nu=0.3)
    face = list(et.faces[1])
    m.add(fem.Pressure((np.array([0]), np.array([1])), 2.0))
    f = _nodal(m)
    X = pts[face[:3]]
    nA = np.cross(X[1] - X[0], X[2] - X[0]) * (1.0 if kind == "hex8" else 0.5)  # area vector
    assert np.allclose(f[face], -2.0 * np.outer(expected, nA), rtol=0, atol=1e-13)
    assert np.all(f[np.setdiff1d(np.arange(et.n_nodes), face)] == 0.0)


# ------------------------------------------------------------------ rigid plates


def _bar(kind, shape=(2, 2, 6), size=(1.0, 1.5, 4.0), nu=0.0, E=200.0):
    return block(kind, shape, size, distort=0.2, seed=9, E=E, nu=nu)


@pytest.mark.parametrize("kind", KINDS)
def test_plate_compression_gives_axial_stiffness(kind):
    """A force on a plate over the top of a bar fixed at the bottom (nu = 0: the plate does not
    restrain any lateral strain): the plate moves by F L / (E A) and nothing else moves."""
    F, E, A, L = 30.0, 200.0, 1.5, 4.0
    m = _bar(kind)
    m.add(fem.Fixed("zmin"), fem.RigidPlate("zmax", force=(0, 0, -F), name="plate"))
    res = _solve(m)
    motion = res.plate_motion("plate")
    assert np.isclose(motion[2], -F * L / (E * A), rtol=1e-10)
    assert np.abs(motion[[0, 1]]).max() < 1e-10 * F * L / (E * A)
    assert np.abs(motion[3:]).max() < 1e-10 * F / (E * A)
    assert np.allclose(np.asarray(res.stress), [0, 0, -F / A, 0, 0, 0], rtol=0, atol=1e-9 * F / A)
    top = m.node_sets["zmax"]
    assert np.allclose(np.asarray(res.displacement)[top, 2], motion[2], rtol=1e-12)
    assert np.allclose(res.reactions["zmin"], [0, 0, F], rtol=0, atol=1e-9 * F)


@pytest.mark.parametrize("kind", KINDS)
def test_prescribed_plate_displacement_reaction(kind):
    """Plate pushed down by d: its reaction is the axial stiffness E A / L times d, the base
    takes the opposite force, and result.plate_motion reports the prescribed motion."""
    d, E, A, L = 0.02, 200.0, 1.5, 4.0
    m = _bar(kind)
    m.add(fem.Fixed("zmin"), fem.RigidPlate("zmax", displacement=(None, None, -d), name="plate"))
    res = _solve(m)
    R = res.reactions["plate"]
    assert R.shape == (6,)
    assert np.isclose(R[2], -E * A / L * d, rtol=1e-10)
    assert np.all(R[[0, 1, 3, 4, 5]] == 0.0)  # not prescribed: no reaction reported
    assert np.isclose(res.reactions["zmin"][2], E * A / L * d, rtol=1e-10)
    assert np.isclose(res.plate_motion("plate")[2], -d, rtol=1e-14)
    assert np.allclose(res.reaction_total(), 0.0, atol=1e-9 * E * A / L * d)


BL, BE = 10.0, 1000.0  # cantilever 10 x 1 x 1 mm, nu = 0
BI = 1.0 / 12


def _beam(kind, shape):
    return block(kind, shape, (BL, 1.0, 1.0), origin=(0.0, -0.5, -0.5), E=BE, nu=0.0)


def test_plate_moment_bends_cantilever_exactly_tet10():
    """Pure bending through a plate on the free end (nu = 0: the end section stays plane and
    rigid): rotation M L / (E I), deflection -M L^2 / (2 E I). The field is quadratic, so tet10
    is exact."""
    M = 5.0
    m = _beam("tet10", (5, 1, 1))
    m.add(fem.Fixed("xmin"), fem.RigidPlate("xmax", moment=(0, M, 0), name="end"))
    motion = _solve(m).plate_motion("end")
    theta = M * BL / (BE * BI)
    assert np.isclose(motion[4], theta, rtol=1e-9)
    assert np.isclose(motion[2], -theta * BL / 2, rtol=1e-9)
    assert np.abs(motion[[0, 1, 3, 5]]).max() < 1e-9 * theta * BL


def test_plate_moment_bends_cantilever_hex8():
    """hex8 (full integration) is too stiff in bending (parasitic shear); the plate rotation
    approaches M L / (E I) at O(h^2) (observed 33 %, 11 %, 3.0 %, 0.78 % low)."""
    M = 5.0
    theta = M * BL / (BE * BI)
    err = []
    for n in (2, 4, 8, 16):
        m = _beam("hex8", (5 * n, 1, n))
        m.add(fem.Fixed("xmin"), fem.RigidPlate("xmax", moment=(0, M, 0), name="end"))
        err.append(abs(_solve(m).plate_motion("end")[4] / theta - 1))
    rates = np.log2(np.array(err[:-1]) / err[1:])
    assert err[-1] < 0.01 and np.all(rates[-2:] > 1.8), (err, rates)


def test_prescribed_plate_rotation_reaction_moment():
    """Plate turned by theta about y, its other motions free: reaction moment E I theta / L."""
    theta = 0.01
    m = _beam("tet10", (5, 1, 1))
    m.add(fem.Fixed("xmin"), fem.RigidPlate("xmax", rotation=(None, theta, None), name="end"))
    res = _solve(m)
    assert np.isclose(res.reactions["end"][4], BE * BI * theta / BL, rtol=1e-9)
    assert np.isclose(res.plate_motion("end")[2], -theta * BL / 2, rtol=1e-9)


# ------------------------------------------------------------------ reactions


@pytest.mark.parametrize("kind", KINDS)
def test_reactions_balance_applied_loads(kind, rng):
    """Every kind of load at once, including loads on nodes coupled to a plate: the support
    reactions balance the applied total to 1e-8 relative (direct solver)."""
    m = _bumpy_top(kind, rng, in_plane=0.2, bump=0.1)
    m.set_material(None, nu=0.3)
    side = m.node_sets["xmax"]
    m.add(fem.Fixed("zmin"),
          fem.Pressure("xmax", 0.4), fem.Traction("ymin", (0.1, -0.3, 0.2)),
          fem.TotalForce("ymax", (2.0, 1.0, -3.0)),
          fem.NodalForce(side[:3], (0.5, -0.25, 1.0)),
          fem.RigidPlate("zmax", force=(1.0, 2.0, -20.0), moment=(3.0, -1.0, 0.5), name="plate"))
    res = _solve(m)
    applied = res.applied_total()
    expected = (np.array([-0.4 * LY * LZ, 0, 0]) + np.array([0.1, -0.3, 0.2]) * LX * LZ
                + [2.0, 1.0, -3.0] + 3 * np.array([0.5, -0.25, 1.0]) + [1.0, 2.0, -20.0])
    assert np.allclose(applied, expected, rtol=1e-12)
    total = res.reaction_total()
    assert np.abs(total + applied).max() < 1e-8 * np.abs(applied).max()
    assert np.allclose(res.reactions["zmin"], total, rtol=1e-12)

    # moments too: nodal reactions K u - f at the base, applied loads, and the plate's force at
    # its reference point plus its moment
    be = get_backend("numpy")
    K = to_matrix(*assemble_stiffness(m, be), be)
    u = np.asarray(res.displacement)
    f = compile_conditions(m).f
    n3 = 3 * m.n_nodes
    r = (K @ u.ravel() - f[:n3]).reshape(-1, 3)
    base = m.node_sets["zmin"]
    assert np.allclose(r[base].sum(axis=0), total, rtol=1e-10)
    ref = m.points[m.nodes_of("zmax")].mean(axis=0)
    moment = (np.cross(m.points[base], r[base]).sum(axis=0)
              + np.cross(m.points, f[:n3].reshape(-1, 3)).sum(axis=0)
              + np.cross(ref, f[n3:n3 + 3]) + f[n3 + 3:n3 + 6])
    assert np.abs(moment).max() < 1e-8 * np.abs(np.cross(m.points[base], r[base])).sum()


@pytest.mark.parametrize("kind", KINDS)
def test_reactions_per_set_follow_statics(kind):
    """A simply supported beam (end faces held in z, one pin in x, one side in y) with a total
    force on a strip of the top: the end reactions are F (L - a) / L and F a / L."""
    L, F = 6.0, 9.0
    m = block(kind, (6, 2, 2), (L, 1.0, 1.0), distort=0.2, seed=2, E=500.0, nu=0.3)
    fs = m.face_sets["zmax"]
    c = np.zeros(len(fs))
    for _, conn, rows in m.face_nodes(fs):
        c[rows] = m.points[conn, 0].mean(axis=1)
    strip = (c > 3.0) & (c < 5.0)  # faces between x = 3 and x = 5: resultant at a = 4
    m.add_face_set("strip", fs.elements[strip], fs.faces[strip])
    pin = m.node_sets["xmin"][np.argmin(np.linalg.norm(m.points[m.node_sets["xmin"]], axis=1))]
    m.add_node_set("pin", [pin])
    m.add(fem.Fixed("xmin", "z"), fem.Fixed("xmax", "z"), fem.Fixed("pin", "x"),
          fem.Fixed("ymin", "y"), fem.TotalForce("strip", (0.0, 0.0, -F)))
    r = _solve(m).reactions
    a = 4.0
    assert np.isclose(r["xmin"][2], F * (L - a) / L, rtol=1e-9)
    assert np.isclose(r["xmax"][2], F * a / L, rtol=1e-9)
    assert abs(r["pin"][0]) < 1e-9 * F and abs(r["ymin"][1]) < 1e-9 * F
    assert np.all(r["xmin"][:2] == 0.0)  # only z is constrained there


def test_reactions_of_overlapping_sets_sum_to_the_total():
    """Supports on two faces that share an edge: the per-set reactions still add up to the total
    reaction (a shared dof is reported once), which balances the load."""
    m = block("hex8", (4, 2, 2), (4.0, 1.0, 1.0), E=100.0, nu=0.3)
    m.add(fem.Fixed("xmin"), fem.Fixed("zmin"), fem.TotalForce("xmax", (0.0, 0.0, -1.0)))
    res = _solve(m)
    assert np.abs(res.reaction_total() + [0.0, 0.0, -1.0]).max() < 1e-10
    per_set = sum(res.reactions.values())
    assert np.abs(per_set + res.applied_total()).max() < 1e-8, res.reactions


# ------------------------------------------------------------------ under-constrained


def _free(m):
    with pytest.raises(fem.UnderConstrainedError) as info:
        fem.solve(m, backend="numpy", solver="direct")
    for motion in info.value.free_motions:
        assert motion in str(info.value)
    return info.value


def _names(err):
    return sorted(re.sub(r" through .*", "", s) for s in err.free_motions)


def _through(motion):
    point = re.search(r"through \((.*)\) mm", motion).group(1)
    return np.array([float(v) for v in point.split(",")])


ALL_SIX = sorted(["translation x", "translation y", "translation z",
                  "rotation about x", "rotation about y", "rotation about z"])


@pytest.mark.parametrize("kind", KINDS)
def test_no_supports_all_six_free(kind):
    m = block(kind, (2, 2, 2), E=100.0, nu=0.3)
    m.add(fem.Pressure("zmax", 1.0))
    assert _names(_free(m)) == ALL_SIX


def test_one_face_held_in_z():
    m = block("hex8", (2, 2, 2), E=100.0, nu=0.3)
    m.fix("zmin", "z")
    assert _names(_free(m)) == ["rotation about z", "translation x", "translation y"]


def test_single_fixed_node_leaves_rotations_through_it():
    m = block("tet10", (2, 2, 2), (2.0, 3.0, 4.0), origin=(1.0, 1.0, 1.0), E=100.0, nu=0.3)
    node = 5
    m.fix(np.array([node]))
    err = _free(m)
    assert _names(err) == ["rotation about x", "rotation about y", "rotation about z"]
    for axis, motion in enumerate(sorted(err.free_motions)):
        others = [a for a in range(3) if a != axis]  # the named point is on the axis
        assert np.allclose(_through(motion)[others], m.points[node, others], atol=1e-3), motion


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_pinned_line_leaves_rotation_about_it(axis):
    m = block("hex8", (2, 2, 2), (1.0, 2.0, 3.0), E=100.0, nu=0.3)
    others = [a for a in range(3) if a != axis]
    on = np.all(np.isclose(m.points[:, others], m.points[:, others].max(axis=0)), axis=1)
    m.fix(np.nonzero(on)[0])
    err = _free(m)
    assert _names(err) == [f"rotation about {'xyz'[axis]}"]
    p = _through(err.free_motions[0])
    assert np.allclose(p[others], m.points[:, others].max(axis=0), atol=1e-3)


def test_unsupported_part_of_two():
    """Two blocks that do not touch; only the first is supported: the second is named by one of
    its node labels, with all six motions free."""
    a = block("hex8", (2, 2, 2))
    b = block("hex8", (2, 2, 2), origin=(3.0, 0.0, 0.0))
    n = a.n_nodes
    m = fem.Model.from_arrays(np.vstack([a.points, b.points]),
                              [("hex8", np.vstack([a.blocks[0].conn, b.blocks[0].conn + n]))],
                              node_ids=np.arange(1, 2 * n + 1) * 10, E=100.0, nu=0.3)
    m.add_node_set("base", a.node_sets["zmin"])
    m.fix("base")
    err = _free(m)
    assert _names(err) == ALL_SIX
    label = int(re.search(r"part containing node (\d+)", str(err)).group(1))
    assert label in m.node_ids[n:]
    m.add_node_set("base2", b.node_sets["zmin"] + n)
    m.fix("base2")
    fem.solve(m, backend="numpy", solver="direct")


def test_plate_with_one_prescribed_component_is_not_a_support_for_the_rest():
    m = block("hex8", (2, 2, 2), E=100.0, nu=0.3)
    m.add(fem.RigidPlate("zmax", displacement=(None, None, -0.01), name="plate"))
    assert _names(_free(m)) == ["rotation about x", "rotation about y", "rotation about z",
                                "translation x", "translation y"]
    m.conditions[-1] = fem.RigidPlate("zmax", displacement=(0.0, 0.0, -0.01),
                                      rotation=(0.0, 0.0, 0.0), name="plate")
    res = fem.solve(m, backend="numpy", solver="direct")
    assert np.isclose(res.plate_motion("plate")[2], -0.01)
    assert np.allclose(res.reaction_total(), 0.0, atol=1e-12)
