"""Agreement with CalculiX 2.20, the independent reference solver, on the same decks.

Each test writes a deck (with :meth:`fem.Model.to_inp`, or as hand-written text), runs ``ccx`` on
it and solves the deck read back with :meth:`fem.Model.from_inp`. Nodal displacements must agree
to 1e-6 of the largest displacement and element-average stresses to 1e-5 of the largest stress.
CalculiX prints seven significant digits, so 1e-6 is about twice its printing resolution.

All decks keep nu < 0.45: there hex8 is the fully integrated element, identical to C3D8. (Above
that we switch to B-bar and ccx's C3D8 locks; the two are not expected to agree.)
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import fem
from fem.elements import ELEMENT_TYPES
from fem.errors import BoundaryConditionError
from fem.io.calculix import run_ccx
from fem.loads import Displacement, Fixed, NodalForce, Pressure, RigidPlate, Traction
from fem.meshes.blocks import hex_block, name_planes, tet_block

pytestmark = pytest.mark.ccx

U_TOL = 1e-6
S_TOL = 1e-5
SIZE = (3.0, 2.0, 2.5)
BONE = (150.0, 0.3)
CEMENT = (3000.0, 0.4)
ENDPLATE = (800.0, 0.25)

SHAPES = {"tet4": (5, 4, 4), "tet10": (3, 3, 3), "hex8": (6, 4, 5)}


def _symmetries(etype: str) -> np.ndarray:
    """Orientation-preserving renumberings of an element's nodes, (k, n_nodes): row r lists, for
    each new local node, the old local node that takes its place."""
    X = ELEMENT_TYPES[etype].node_coords
    if etype == "hex8":
        coords = X
        signed_perms = [np.eye(3)[list(p)] * np.array(s) for p in itertools.permutations(range(3))
                        for s in itertools.product((-1, 1), repeat=3)]
        images = [X @ R.T for R in signed_perms if np.linalg.det(R) > 0]
    else:  # even permutations of the four vertices, acting on barycentric coordinates
        coords = np.column_stack([1.0 - X.sum(axis=1), X])
        images = [coords[:, list(p)] for p in itertools.permutations(range(4))
                  if np.linalg.det(np.eye(4)[list(p)]) > 0]
    match = np.abs(np.asarray(images)[:, :, None] - coords[None, None]).sum(axis=-1) < 1e-12
    assert (match.sum(axis=-1) == 1).all()
    return match.argmax(axis=-1)


def _block(etype: str, shape, *, distort: float = 0.25, seed: int = 1, size=SIZE):
    """A distorted block whose elements are renumbered at random (orientation kept), so that
    every local face number S1..S6 / P1..P6 lies on the boundary somewhere."""
    if etype == "hex8":
        m = hex_block(shape, size, distort=distort, seed=seed)
    else:
        m = tet_block(shape, size, order=2 if etype == "tet10" else 1, distort=distort, seed=seed)
    sym = _symmetries(etype)
    conn = m.blocks[0].conn
    pick = np.random.default_rng(seed).integers(len(sym), size=len(conn))
    conn = np.take_along_axis(conn, sym[pick], axis=1)
    return name_planes(fem.Model.from_arrays(m.points, [(etype, conn)]))


def _centroids(model) -> np.ndarray:
    return np.concatenate([model.points[b.conn].mean(axis=1) for b in model.blocks])


def _cement_mask(model) -> np.ndarray:
    """A cylindrical cement bolus along z through the middle of the block."""
    c = _centroids(model)
    mid = 0.5 * (model.points.min(0) + model.points.max(0))
    return np.hypot(c[:, 0] - mid[0], c[:, 1] - mid[1]) < 0.6


def _positions(labels: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Indices into ``labels`` (any order) of the labels ``query``; all must be present."""
    order = np.argsort(labels)
    pos = np.clip(np.searchsorted(labels[order], query), 0, len(labels) - 1)
    assert np.array_equal(labels[order][pos], query), "CalculiX printed unknown labels"
    return order[pos]


def _errors(model, result, ref) -> tuple[float, float]:
    """Largest displacement and stress differences, relative to CalculiX's largest values."""
    assert len(ref.node_labels) == model.n_nodes
    u = result.displacement[_positions(model.node_ids, ref.node_labels)]
    umax = np.abs(ref.displacement).max()
    labels, s_ref = ref.element_average_stress()
    assert len(labels) == model.n_elements
    s = result.stress[_positions(model.element_ids, labels)]
    smax = np.abs(s_ref).max()
    assert umax > 0 and smax > 0, "trivial comparison: CalculiX computed no deformation"
    return np.abs(u - ref.displacement).max() / umax, np.abs(s - s_ref).max() / smax


def _assert_agree(model, result, ref):
    eu, es = _errors(model, result, ref)
    assert eu < U_TOL, f"displacements differ from CalculiX by {eu:.2e} of the largest"
    assert es < S_TOL, f"element stresses differ from CalculiX by {es:.2e} of the largest"
    return eu, es


def _loaded_block(etype: str, shape=None, seed: int = 1):
    """A distorted two-material block with supports, point loads, pressures, a traction and
    prescribed non-zero displacements."""
    model = _block(etype, shape or SHAPES[etype], seed=seed)
    cement = _cement_mask(model)
    model.add_region("bone", np.nonzero(~cement)[0])
    model.add_region("cement", np.nonzero(cement)[0])
    model.set_material("bone", E=BONE[0], nu=BONE[1])
    model.set_material("cement", E=CEMENT[0], nu=CEMENT[1])
    free_side = np.setdiff1d(model.node_sets["xmin"], model.node_sets["zmin"])
    model.add(
        Fixed("zmin"),
        Displacement(free_side, (0.004, None, -0.003)),
        NodalForce("zmax", (0.2, -0.1, -0.5)),
        NodalForce("ymax", (0.0, 0.3, 0.0)),
        Pressure("xmax", 2.0),
        Pressure("zmax", 1.0),
        Pressure("ymin", -0.5),
        Traction("ymax", (0.0, 0.0, 0.4)),
    )
    return model


@pytest.mark.parametrize("etype", ["tet4", "tet10", "hex8"])
def test_written_deck_agrees_with_calculix(etype, ccx, tmp_path):
    model = _loaded_block(etype)
    assert len(model.regions["bone"]) and len(model.regions["cement"])
    assert not model.bbar_mask().any()
    deck = model.to_inp(tmp_path / f"{etype}.inp")
    ref = run_ccx(deck)
    read = fem.Model.from_inp(deck)
    _assert_agree(read, fem.solve(read, solver="direct"), ref)
    # the in-memory model too: the deck carries every condition (it is not just self-consistent)
    _assert_agree(model, fem.solve(model, solver="direct"), ref)


@pytest.mark.parametrize("etype", ["tet4", "hex8"])
def test_every_load_changes_the_answer(etype, ccx, tmp_path):
    """Dropping any one load or prescribed displacement puts the solution far outside the
    tolerances, so the agreement above really tests each of them."""
    model = _loaded_block(etype)
    ref = run_ccx(model.to_inp(tmp_path / f"{etype}.inp"))
    for i in range(1, len(model.conditions)):
        part = model.copy()
        del part.conditions[i]
        eu, es = _errors(part, fem.solve(part, solver="direct"), ref)
        assert eu > 100 * U_TOL or es > 100 * S_TOL, type(model.conditions[i]).__name__


def test_amg_cg_agrees_with_calculix(ccx, tmp_path):
    model = _loaded_block("hex8", shape=(12, 8, 10), seed=5)
    deck = model.to_inp(tmp_path / "amg.inp")
    ref = run_ccx(deck)
    read = fem.Model.from_inp(deck)
    result = fem.solve(read, solver="amg", rtol=1e-10)
    assert result.info.solver == "amg" and result.info.iterations > 0
    _assert_agree(read, result, ref)


# ------------------------------------------------------------------ hand-written decks


def _lines(labels, per_line: int = 8) -> str:
    labels = [str(int(x)) for x in labels]
    return "\n".join(", ".join(labels[i:i + per_line]) for i in range(0, len(labels), per_line))


def _node_lines(labels, points) -> str:
    return "\n".join(f"{int(i)}, {x!r}, {y!r}, {z!r}" for i, (x, y, z) in
                     zip(labels, points.tolist()))


def _element_lines(labels, conn, split: bool) -> str:
    rows = []
    for e, nodes in zip(labels.tolist(), conn.tolist()):
        fields = [str(e)] + [str(n) for n in nodes]
        if split:  # a data line ending in a comma continues on the next
            rows.append(", ".join(fields[:6]) + ",\n" + ", ".join(fields[6:]))
        else:
            rows.append(", ".join(fields))
    return "\n".join(rows)


def _hand_deck(tmp_path, etype: str):
    """A deck in the style people write by hand, built from a block mesh: gappy labels,
    generated and nested sets, P1..P6 pressures, a surface, several materials, an include.
    Returns the deck path and the labels and materials it should produce."""
    m = _block(etype, SHAPES[etype], distort=0.3, seed=7)
    n = m.n_nodes
    on = {k: np.zeros(n, dtype=bool) for k in m.node_sets}
    for k, v in m.node_sets.items():
        on[k][v] = True
    base = np.nonzero(on["zmin"])[0]
    other = np.nonzero(~on["zmin"])[0]
    nid = np.empty(n, dtype=np.int64)
    nid[base] = 1001 + np.arange(len(base))
    nid[other] = 5000 + 3 * np.arange(len(other))

    c = _centroids(m)
    cement = _cement_mask(m)
    endplate = ~cement & (c[:, 2] > 0.75 * SIZE[2])
    bone = ~cement & ~endplate
    groups = {k: np.nonzero(v)[0] for k, v in
              (("bone", bone), ("cement", cement), ("endplate", endplate))}
    assert all(len(g) for g in groups.values())
    eid = np.empty(m.n_elements, dtype=np.int64)
    eid[groups["bone"]] = 2001 + np.arange(len(groups["bone"]))
    eid[groups["cement"]] = 7001 + 2 * np.arange(len(groups["cement"]))
    eid[groups["endplate"]] = 9001 + 5 * np.arange(len(groups["endplate"]))
    conn = nid[m.blocks[0].conn]
    abaqus = {"tet4": "C3D4", "tet10": "C3D10", "hex8": "C3D8"}[etype]
    split = etype == "tet10"

    pull = np.nonzero(on["ymax"] & ~on["zmin"])[0]
    single = np.nonzero(on["xmin"] & ~on["zmin"] & ~on["zmax"] & ~on["ymin"] & ~on["ymax"])[0][0]
    top = np.nonzero(on["zmax"])[0]
    top_a, top_b = top[: len(top) // 2], top[len(top) // 2:]

    xmax, ymin = m.face_sets["xmax"], m.face_sets["ymin"]
    dload_sets, dloads = [], []
    for f in np.unique(xmax.faces).tolist():
        dload_sets.append(f"*Elset, elset=PX{f + 1}\n{_lines(eid[xmax.elements[xmax.faces == f]])}")
        dloads.append(f"px{f + 1}, P{f + 1}, 1.5")
    assert len(dloads) >= 3
    side_sets, side_lines = [], []
    for k, f in enumerate(np.unique(ymin.faces).tolist()):
        els = eid[ymin.elements[ymin.faces == f]]
        if k == 0:  # one face number by element set, the others element by element
            side_sets.append(f"*ELSET, ELSET=side{f + 1}\n{_lines(els)}")
            side_lines.append(f"SIDE{f + 1}, S{f + 1}")
        else:
            side_lines += [f"{e}, S{f + 1}" for e in els.tolist()]

    (tmp_path / "nodes.inp").write_text(
        "** the nodes off the base, included from the main deck\n"
        f"*Node, nset=NALL\n{_node_lines(nid[other], m.points[other])}\n")
    text = f"""*Heading
 hand-written {etype} deck: labels with gaps, generated sets, includes
** units: mm, N, MPa
*NODE, NSET=Nall
{_node_lines(nid[base[:3]], m.points[base[:3]])}
** a comment between data lines
{_node_lines(nid[base[3:]], m.points[base[3:]])}
*include, input=nodes.inp
*Element, Type={abaqus}, Elset=Eall
{_element_lines(eid[groups["bone"]], conn[groups["bone"]], split)}
*element, type={abaqus.lower()}, elset=EALL
{_element_lines(eid[groups["cement"]], conn[groups["cement"]], split)}
*ELEMENT, TYPE={abaqus}, ELSET=Endplate
{_element_lines(eid[groups["endplate"]], conn[groups["endplate"]], split)}
*ELSET, ELSET=eall
ENDPLATE
*ELSET, ELSET=Bone, GENERATE
2001, {2000 + len(groups["bone"])}
*Elset, Elset=cement, generate
7001, {7001 + 2 * (len(groups["cement"]) - 1)}, 2
*elset, elset=Solid
BONE, Cement
endplate
*NSET, NSET=base, GENERATE
1001, {1000 + len(base)}, 1
*Nset, nset=pull
{_lines(nid[pull])}
*NSET, NSET=Top_A
{_lines(nid[top_a])}
*nset, nset=top_b
{_lines(nid[top_b])}
*NSET, NSET=TOP
top_a, TOP_B
{chr(10).join(dload_sets)}
{chr(10).join(side_sets)}
*Surface, Name=Side, Type=Element
{chr(10).join(side_lines)}
*MATERIAL, NAME=Bone
*ELASTIC
{BONE[0]}, {BONE[1]}
*material, name=CEMENT
*elastic
{CEMENT[0]:.6e}, {CEMENT[1]}
*Material, Name=Endplate
*Elastic
{ENDPLATE[0]}, {ENDPLATE[1]}
*SOLID SECTION, ELSET=bone, MATERIAL=BONE
*Solid Section, Elset=CEMENT, Material=cement
*solid section, elset=Endplate, material=endplate
**
*BOUNDARY
base, 1, 3
*Step
*Static
*Boundary
pull, 2, 3, -0.002
{nid[single]}, 1, 1, 0.001
*cload
top, 3, -0.2
TOP, 1, 0.05
{nid[top_a[0]]}, 2, 0.3
*Dload
{chr(10).join(dloads)}
*dsload
side, P, 0.8
*Node Print, Nset=Nall
U
*EL PRINT, ELSET=Solid
S
*End Step
"""
    deck = tmp_path / f"hand_{etype}.inp"
    deck.write_text(text)
    E = np.empty(m.n_elements)
    for k, (mat, _) in zip(("bone", "cement", "endplate"), (BONE, CEMENT, ENDPLATE)):
        E[groups[k]] = mat
    return deck, nid, eid, E


@pytest.mark.parametrize("etype", ["tet4", "tet10", "hex8"])
def test_hand_written_deck_agrees_with_calculix(etype, ccx, tmp_path):
    deck, nid, eid, E = _hand_deck(tmp_path, etype)
    ref = run_ccx(deck)
    model = fem.Model.from_inp(deck)
    assert np.array_equal(np.sort(model.node_ids), np.sort(nid))
    assert np.array_equal(np.sort(model.element_ids), np.sort(eid))
    assert np.array_equal(model.E[_positions(model.element_ids, eid)], E)
    assert not model.bbar_mask().any()
    _assert_agree(model, fem.solve(model, solver="direct"), ref)


# ------------------------------------------------------------------ rigid plates


PLATES = {
    "loaded": dict(force=(3.0, -2.0, -20.0), moment=(4.0, -6.0, 2.5)),
    "prescribed": dict(displacement=(0.002, None, -0.01), rotation=(0.003, None, 0.004),
                       force=(0.0, 1.0, 0.0), moment=(0.0, 2.0, 0.0)),
}


@pytest.mark.parametrize("case", sorted(PLATES))
def test_rigid_plate_agrees_with_calculix(case, ccx, tmp_path):
    """The writer exports a plate as a reference node and a rotation node tied by linear
    *EQUATIONs; our reader does not read *EQUATION, so we solve the in-memory model."""
    model = _block("hex8", (4, 4, 5), size=(2.0, 2.0, 2.5), distort=0.2, seed=4)
    model.set_material(None, E=BONE[0], nu=BONE[1])
    model.set_material(np.nonzero(_cement_mask(model))[0], E=CEMENT[0], nu=CEMENT[1])
    model.add(Fixed("zmin"), Pressure("xmax", 0.5), RigidPlate("zmax", **PLATES[case]))
    ref = run_ccx(model.to_inp(tmp_path / f"plate_{case}.inp"))
    _assert_agree(model, fem.solve(model, solver="direct"), ref)


def test_curved_tet10_faces_under_pressure_agree_with_calculix(ccx, tmp_path):
    """Mesh generators put mid-edge nodes on curved geometry: the loaded faces are then curved
    quadratic triangles, where the split of a pressure between the face nodes depends on the face
    quadrature. vertebra-fem uses CalculiX's 3-point rule, so the answers still agree."""
    m = tet_block((3, 3, 3), (3.0, 3.0, 3.0), order=2, distort=0.15, seed=4, E=200.0, nu=0.3)
    pts = m.points
    top = m.nodes_of("zmax")
    conn = m.blocks[0].conn
    mid = np.intersect1d(top, conn[:, 4:].ravel())  # mid-edge nodes of the top faces
    pts[mid, 2] += 0.08 * np.sin(pts[mid, 0]) * np.cos(pts[mid, 1])  # a wavy, curved top
    m.add(Fixed("zmin"), Pressure("zmax", 1.5), Traction("xmax", (0.0, 0.3, 0.0)))
    deck = m.to_inp(tmp_path / "curved.inp")
    ref = run_ccx(deck)
    back = fem.Model.from_inp(deck)
    _assert_agree(back, fem.solve(back, solver="direct"), ref)


def test_nearly_incompressible_hex8_full_integration_is_calculix_c3d8(ccx, tmp_path):
    """At nu = 0.499 CalculiX's C3D8 is plain full integration (it locks); vertebra-fem's
    hex8_formulation="full" is the same element, while the default B-bar does not lock and so
    gives a visibly different (larger) displacement."""
    m = _block("hex8", (3, 3, 4), seed=5)
    m.set_material(None, E=1.0, nu=0.499)  # a disc nucleus
    m.add(Fixed("zmin"), Pressure("zmax", 0.01), Traction("xmax", (0.0, 0.004, 0.0)))
    deck = m.to_inp(tmp_path / "nucleus.inp")
    ref = run_ccx(deck)
    back = fem.Model.from_inp(deck)
    back.hex8_formulation = "full"
    _assert_agree(back, fem.solve(back, solver="direct"), ref)
    back.hex8_formulation = "auto"
    with pytest.warns(UserWarning, match="B-bar"):
        eu, _ = _errors(back, fem.solve(back, solver="direct"), ref)
    assert eu > 1e-2


def test_per_element_moduli_agree_with_calculix(ccx, tmp_path, rng):
    """A CT-mapped model gives every element its own modulus; the deck then carries one material
    per distinct (E, nu) and CalculiX agrees element by element."""
    m = _block("hex8", (4, 4, 5), seed=7)
    z = _centroids(m)[:, 2]
    E = 50.0 + 450.0 * rng.random(m.n_elements) * (1.0 + z / z.max())  # graded, heterogeneous
    m.set_material(None, E=E, nu=0.3)
    m.add(Fixed("zmin"), Pressure("zmax", 0.5), NodalForce(m.node_sets["xmax"][:3], (0, 1.0, 0)))
    deck = m.to_inp(tmp_path / "ct.inp")
    back = fem.Model.from_inp(deck)
    assert np.allclose(back.E, E, rtol=1e-13) and len(np.unique(back.E)) == m.n_elements
    _assert_agree(back, fem.solve(back, solver="direct"), run_ccx(deck))


def test_a_nodal_force_field_is_one_force_per_node_and_calculix_agrees(ccx, tmp_path, rng):
    """``NodalForce(target, F)`` with an (n, 3) field: the same answer as n single-node forces
    (to round-off), the deck carries it node by node and CalculiX agrees; a field of the wrong
    length is refused, naming the counts."""
    m = _block("hex8", (3, 4, 5), seed=3)
    m.set_material(None, E=BONE[0], nu=BONE[1])
    top = m.nodes_of("zmax")
    F = rng.normal(size=(len(top), 3))
    field = m.copy()
    field.add(Fixed("zmin"), NodalForce("zmax", F))
    single = m.copy()
    single.add(Fixed("zmin"), *(NodalForce(np.array([n]), f) for n, f in zip(top, F)))
    r = fem.solve(field, solver="direct")
    assert np.abs(r.displacement - fem.solve(single, solver="direct").displacement).max() \
        < 1e-12 * np.abs(r.displacement).max()
    assert np.allclose(r.applied_total(), F.sum(axis=0), rtol=1e-12)
    deck = field.to_inp(tmp_path / "field.inp")
    _assert_agree(field, r, run_ccx(deck))
    short = m.copy()
    short.add(Fixed("zmin"), NodalForce("zmax", F[:-1]))
    with pytest.raises(BoundaryConditionError, match=f"{len(top) - 1} rows for {len(top)}"):
        fem.solve(short, solver="direct")
    with pytest.raises(BoundaryConditionError, match=r"\(n, 3\)"):
        NodalForce("zmax", np.zeros((4, 2)))
