"""Abaqus/CalculiX deck reader: every supported keyword and syntax rule, checked with numbers.

Face numbering is written out here from the Abaqus manual (not taken from fem.elements) so that a
wrong face table in the core shows up as a wrong loaded face.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pytest

import fem
from decks import TWO_HEX
from fem.system import compile_conditions

# Abaqus face definitions, 1-based node positions within the element
ABAQUS_FACES = {
    "C3D8": [(1, 2, 3, 4), (5, 8, 7, 6), (1, 5, 6, 2), (2, 6, 7, 3), (3, 7, 8, 4), (4, 8, 5, 1)],
    "C3D4": [(1, 2, 3), (1, 4, 2), (2, 4, 3), (3, 4, 1)],
    "C3D10": [(1, 2, 3, 5, 6, 7), (1, 4, 2, 8, 9, 5), (2, 4, 3, 9, 10, 6), (3, 4, 1, 10, 8, 7)],
}

# one element of each type with unequal edges, so that every face has its own area and normal
HEX_XYZ = np.array([[0, 0, 0], [1, 0, 0], [1, 2, 0], [0, 2, 0],
                    [0, 0, 3], [1, 0, 3], [1, 2, 3], [0, 2, 3]], float)
TET_XYZ = np.array([[0, 0, 0], [2, 0, 0], [0, 3, 0], [0, 0, 5]], float)
TET10_EDGES = [(0, 1), (1, 2), (2, 0), (0, 3), (1, 3), (2, 3)]
TET10_XYZ = np.vstack([TET_XYZ, [(TET_XYZ[a] + TET_XYZ[b]) / 2 for a, b in TET10_EDGES]])
SINGLE = {"C3D8": HEX_XYZ, "C3D4": TET_XYZ, "C3D10": TET10_XYZ}

# two hexes side by side along x; labels are non-contiguous and not sorted


def write(folder: Path, text: str, name: str = "deck.inp") -> Path:
    p = folder / name
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(textwrap.dedent(text))
    return p


def read(folder: Path, text: str, name: str = "deck.inp") -> fem.Model:
    return fem.Model.from_inp(write(folder, text, name))


def labels(model, kind, name):
    """The labels (sorted) of a node set or region, for comparison with the deck."""
    if kind == "node":
        return sorted(model.node_ids[model.node_sets[name]].tolist())
    return sorted(model.element_ids[model.regions[name]].tolist())


def fixed_map(model) -> dict:
    """{(node label, 'x'|'y'|'z'): prescribed value} from the compiled conditions."""
    s = compile_conditions(model)
    return {(int(model.node_ids[d // 3]), "xyz"[d % 3]): float(v)
            for d, v in zip(s.fixed_dofs.tolist(), s.fixed_values.tolist())}


def nodal_forces(model) -> dict:
    """{node label: force (3,)} of the nodes with a non-zero load."""
    f = compile_conditions(model).f[: 3 * model.n_nodes].reshape(-1, 3)
    return {int(model.node_ids[i]): f[i] for i in np.nonzero(np.abs(f).sum(1))[0]}


def single_element_deck(etype: str, load: str, node_labels=None, elem_label=77) -> str:
    xyz = SINGLE[etype]
    node_labels = node_labels if node_labels is not None else [10 * i + 3 for i in range(len(xyz))]
    nodes = "\n".join(f"{n}, {x:g}, {y:g}, {z:g}" for n, (x, y, z) in zip(node_labels, xyz))
    conn = ", ".join(str(n) for n in node_labels)
    return (f"*NODE\n{nodes}\n*ELEMENT, TYPE={etype}, ELSET=E1\n{elem_label}, {conn}\n"
            "*MATERIAL, NAME=M\n*ELASTIC\n100, 0.25\n*SOLID SECTION, ELSET=E1, MATERIAL=M\n"
            f"*STEP\n*STATIC\n{load}\n*END STEP\n")


# ------------------------------------------------------------------------------ nodes, elements


def test_nodes_and_elements_keep_deck_order_and_labels(tmp_path):
    m = read(tmp_path, TWO_HEX)
    assert m.node_ids.tolist() == [101, 102, 103, 104, 105, 106, 107, 108, 112, 109, 110, 111]
    assert m.element_ids.tolist() == [7, 3]
    assert m.points[m.node_ids.tolist().index(112)].tolist() == [2, 1, 1]
    assert m.points[m.node_ids.tolist().index(109)].tolist() == [2, 0, 0]
    assert [b.type for b in m.blocks] == ["hex8"]
    conn_labels = m.node_ids[m.blocks[0].conn]
    assert conn_labels.tolist() == [[101, 102, 103, 104, 105, 106, 107, 108],
                                    [102, 109, 110, 103, 106, 111, 112, 107]]
    assert m.metadata["heading"] == "two hexes, non-contiguous labels"
    assert (m.n_nodes, m.n_elements) == (12, 2)


def test_node_nset_and_element_elset_parameters(tmp_path):
    m = read(tmp_path, TWO_HEX)
    assert labels(m, "node", "NALL") == list(range(101, 113))
    assert labels(m, "elem", "EALL") == [3, 7]
    assert labels(m, "node", "LEFT") == [101, 104, 105, 108]
    assert labels(m, "node", "RIGHT") == [109, 110, 111, 112]


def test_several_node_and_element_blocks_of_mixed_types(tmp_path):
    m = read(tmp_path, """\
        *NODE, NSET=A
        5, 0, 0, 0
        9, 1, 0, 0
        *NODE, NSET=B
        2, 0, 1, 0
        40, 0, 0, 1
        41, 1, 1, 1
        *ELEMENT, TYPE=C3D4, ELSET=TETS
        300, 5, 9, 2, 40
        *ELEMENT, TYPE=C3D4, ELSET=TETS
        100, 9, 2, 40, 41
        """)
    assert m.node_ids.tolist() == [5, 9, 2, 40, 41]
    assert labels(m, "node", "A") == [5, 9] and labels(m, "node", "B") == [2, 40, 41]
    assert m.element_ids.tolist() == [300, 100]
    assert labels(m, "elem", "TETS") == [100, 300]
    assert m.node_ids[np.vstack([b.conn for b in m.blocks])].tolist() == [[5, 9, 2, 40],
                                                                          [9, 2, 40, 41]]


def test_mixed_hex_and_tet_blocks_keep_input_element_order(tmp_path):
    m = read(tmp_path, """\
        *NODE
        1, 0, 0, 0
        2, 1, 0, 0
        3, 1, 1, 0
        4, 0, 1, 0
        5, 0, 0, 1
        6, 1, 0, 1
        7, 1, 1, 1
        8, 0, 1, 1
        9, 2, 0, 0
        *ELEMENT, TYPE=C3D4
        20, 2, 9, 3, 6
        *ELEMENT, TYPE=C3D8
        10, 1, 2, 3, 4, 5, 6, 7, 8
        *ELEMENT, TYPE=C3D4
        15, 9, 3, 6, 7
        """)
    assert m.element_ids.tolist() == [20, 10, 15]
    assert [(b.type, b.start, len(b.conn)) for b in m.blocks] == [("tet4", 0, 1), ("hex8", 1, 1),
                                                                  ("tet4", 2, 1)]


def test_fortran_d_exponents_and_comments_and_blank_lines(tmp_path):
    m = read(tmp_path, """\
        ** a comment before anything
        *NODE

        1, 0.0D0, 0, 0
        ** a comment inside the data
        2, 1.5d0, 0, 0
        3, 0, 2.5E+00, 0
        4, 0, 0, 1.25e0
        *ELEMENT, TYPE=C3D4
        1, 1, 2, 3, 4
        *MATERIAL, NAME=M
        *ELASTIC
        1.2D3, 0.25
        *SOLID SECTION, ELSET=ALL, MATERIAL=M
        *ELSET, ELSET=ALL
        1
        """)
    assert m.points.tolist() == [[0, 0, 0], [1.5, 0, 0], [0, 2.5, 0], [0, 0, 1.25]]
    assert m.E.tolist() == [1200.0] and m.nu.tolist() == [0.25]


# ------------------------------------------------------------------------------ sets


def test_nset_and_elset_generate_with_and_without_increment(tmp_path):
    nodes = "\n".join(f"{i}, {i}, 0, 0" for i in range(1, 21))
    m = read(tmp_path, f"""\
*NODE
{nodes}
*ELEMENT, TYPE=C3D4
1, 1, 2, 3, 4
2, 5, 6, 7, 8
3, 9, 10, 11, 12
4, 13, 14, 15, 16
5, 17, 18, 19, 20
*NSET, NSET=ODD, GENERATE
1, 19, 2
*NSET, NSET=RUN, GENERATE
4, 7
*ELSET, ELSET=EVERY2, GENERATE
1, 5, 2
*ELSET, ELSET=FIRST3, GENERATE
1, 3
""")
    assert labels(m, "node", "ODD") == list(range(1, 20, 2))
    assert labels(m, "node", "RUN") == [4, 5, 6, 7]
    assert labels(m, "elem", "EVERY2") == [1, 3, 5]
    assert labels(m, "elem", "FIRST3") == [1, 2, 3]


def test_set_of_sets_and_repeated_set_cards_accumulate(tmp_path):
    m = read(tmp_path, TWO_HEX.replace("*MATERIAL", """\
*NSET, NSET=BOTH
LEFT, RIGHT, 102
*NSET, NSET=NESTED
BOTH, 103
*NSET, NSET=LEFT
102
*ELSET, ELSET=ONE
7
*ELSET, ELSET=ONE
3
*ELSET, ELSET=ALL2
ONE
*MATERIAL"""))
    left = [101, 102, 104, 105, 108]  # the later *NSET, NSET=LEFT card adds 102
    assert labels(m, "node", "LEFT") == left
    assert labels(m, "node", "BOTH") == sorted(left + [109, 110, 111, 112])
    assert labels(m, "node", "NESTED") == sorted(left + [103, 109, 110, 111, 112])
    assert labels(m, "elem", "ONE") == [3, 7]
    assert labels(m, "elem", "ALL2") == [3, 7]


def test_set_may_be_referenced_before_it_is_defined(tmp_path):
    m = read(tmp_path, TWO_HEX.replace("*MATERIAL", """\
*NSET, NSET=EARLY
LATE
*NSET, NSET=LATE
103, 107
*MATERIAL"""))
    assert labels(m, "node", "EARLY") == [103, 107]


def test_keywords_parameters_and_names_are_case_insensitive(tmp_path):
    deck = """\
*heading
lower case
*Node, nset=Nall
1, 0, 0, 0
2, 1, 0, 0
3, 0, 1, 0
4, 0, 0, 1
*element, type=c3d4, elset=Tets
9, 1, 2, 3, 4
*nset, Nset=Base
1, 2, 3
*Material, Name=Bone
*elastic
500, 0.2
*solid   section, ELSET=TETS, material=BONE
*Step
*Static
*boundary
base, encastre
*cload
ALL_OF_IT, 3, -1.5
*nset, nset=all_of_it
4
*End Step
"""
    m = read(tmp_path, deck)
    assert set(m.node_sets) == {"Nall", "Base", "all_of_it"}  # spelling of the definition
    assert labels(m, "elem", "Tets") == [9]
    assert m.E.tolist() == [500.0] and m.nu.tolist() == [0.2]
    assert fixed_map(m) == {(n, a): 0.0 for n in (1, 2, 3) for a in "xyz"}
    f = nodal_forces(m)
    assert list(f) == [4] and f[4].tolist() == [0.0, 0.0, -1.5]


# ------------------------------------------------------------------------------ continuation


def test_keyword_line_continued_on_next_line(tmp_path):
    m = read(tmp_path, """\
        *NODE,
        NSET=N1
        1, 0, 0, 0
        2, 1, 0, 0
        3, 0, 1, 0
        4, 0, 0, 1
        *ELEMENT, TYPE=C3D4,
          ELSET=E1
        5, 1, 2, 3, 4
        *MATERIAL,
        NAME=M
        *ELASTIC
        10, 0.1
        *SOLID SECTION,
        ELSET=E1,
        MATERIAL=M
        """)
    assert labels(m, "node", "N1") == [1, 2, 3, 4]
    assert labels(m, "elem", "E1") == [5]
    assert m.E.tolist() == [10.0] and m.nu.tolist() == [0.1]


@pytest.mark.parametrize("sep", [",\n", "\n"], ids=["trailing-comma", "no-trailing-comma"])
def test_c3d10_element_data_split_over_two_lines(tmp_path, sep):
    xyz = np.vstack([TET10_XYZ, TET10_XYZ + [5, 0, 0]])
    nodes = "\n".join(f"{i + 1}, {x:g}, {y:g}, {z:g}" for i, (x, y, z) in enumerate(xyz))
    e1 = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]
    e2 = [11, 12, 13, 14, 15, 16, 17, 18, 19, 20]

    def split(label, c):
        return f"{label}, " + ", ".join(map(str, c[:6])) + sep + ", ".join(map(str, c[6:]))

    m = read(tmp_path, f"*NODE\n{nodes}\n*ELEMENT, TYPE=C3D10, ELSET=T\n{split(41, e1)}\n"
                       f"{split(42, e2)}\n*ELSET, ELSET=SECOND\n42\n")
    assert m.element_ids.tolist() == [41, 42]
    assert m.node_ids[m.blocks[0].conn].tolist() == [e1, e2]
    assert labels(m, "elem", "SECOND") == [42]


def test_c3d8_element_data_over_three_lines(tmp_path):
    deck = TWO_HEX.replace("7, 101, 102, 103, 104, 105, 106, 107, 108",
                           "7, 101, 102,\n103, 104, 105,\n106, 107, 108")
    m = read(tmp_path, deck)
    assert m.node_ids[m.blocks[0].conn[0]].tolist() == list(range(101, 109))
    assert m.element_ids.tolist() == [7, 3]


# ------------------------------------------------------------------------------ include


def test_nested_include_is_relative_to_the_including_file(tmp_path, monkeypatch):
    top = tmp_path / "model"
    write(top, """\
        *HEADING
        main
        *INCLUDE, INPUT=parts/mesh.inp
        *include, input="material.inp"
        *SOLID SECTION, ELSET=EALL, MATERIAL=BONE
        *STEP
        *STATIC
        *INCLUDE, INPUT=parts/loads/bc.inp
        *END STEP
        """, "main.inp")
    write(top, "*NODE, NSET=NALL\n" + "\n".join(TWO_HEX.split("*NODE, NSET=NALL\n")[1]
                                                .split("*ELEMENT")[0].splitlines()) + "\n"
          "*INCLUDE, INPUT=elements.inp\n", "parts/mesh.inp")
    write(top, "*ELEMENT, TYPE=C3D8, ELSET=EALL\n7, 101, 102, 103, 104, 105, 106, 107, 108\n"
          "3, 102, 109, 110, 103, 106, 111, 112, 107\n*INCLUDE, INPUT=../sets.inp\n",
          "parts/elements.inp")
    write(top, "*NSET, NSET=LEFT\n101, 104, 105, 108\n*NSET, NSET=RIGHT\n109, 110, 111, 112\n",
          "sets.inp")
    write(top, "*MATERIAL, NAME=BONE\n*ELASTIC\n1000., 0.3\n", "material.inp")
    write(top, "*BOUNDARY\nLEFT, ENCASTRE\n*CLOAD\nRIGHT, 1, 2.5\n", "parts/loads/bc.inp")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    m = fem.Model.from_inp(top / "main.inp")
    ref = read(tmp_path, TWO_HEX)
    assert m.node_ids.tolist() == ref.node_ids.tolist()
    np.testing.assert_array_equal(m.points, ref.points)
    np.testing.assert_array_equal(m.blocks[0].conn, ref.blocks[0].conn)
    assert labels(m, "node", "LEFT") == [101, 104, 105, 108]
    assert m.E.tolist() == [1000.0, 1000.0]
    assert fixed_map(m) == fixed_map(ref)
    assert {k: v.tolist() for k, v in nodal_forces(m).items()} == {
        n: [2.5, 0, 0] for n in (109, 110, 111, 112)}


# ------------------------------------------------------------------------------ output requests


def test_output_requests_are_accepted_and_ignored(tmp_path):
    outputs = """\
*NODE PRINT, NSET=NALL
U
*EL PRINT, ELSET=EALL
S, E
*NODE FILE
U, RF
*EL FILE
S
*OUTPUT, FIELD
*NODE OUTPUT
U
*ELEMENT OUTPUT
S
*END STEP"""
    ref = read(tmp_path, TWO_HEX, "ref.inp")
    m = read(tmp_path, TWO_HEX.replace("*END STEP", outputs))
    assert len(m.conditions) == len(ref.conditions) == 2
    assert fixed_map(m) == fixed_map(ref)
    np.testing.assert_array_equal(compile_conditions(m).f, compile_conditions(ref).f)
    assert set(m.node_sets) == set(ref.node_sets) and set(m.regions) == set(ref.regions)


# ------------------------------------------------------------------------------ materials


def test_two_materials_and_sections_give_per_element_properties(tmp_path):
    deck = TWO_HEX.replace("""*MATERIAL, NAME=BONE
*ELASTIC
1000., 0.3
*SOLID SECTION, ELSET=EALL, MATERIAL=BONE""", """*ELSET, ELSET=CEMENT
3
*ELSET, ELSET=TRAB
7
*MATERIAL, NAME=PMMA
*ELASTIC
3000., 0.4
*MATERIAL, NAME=BONE
*ELASTIC
100, 0.2, 37.0
*SOLID SECTION, ELSET=TRAB, MATERIAL=BONE
*SOLID SECTION, ELSET=CEMENT, MATERIAL=PMMA""")
    m = read(tmp_path, deck)
    assert m.element_ids.tolist() == [7, 3]
    assert m.E.tolist() == [100.0, 3000.0]
    assert m.nu.tolist() == [0.2, 0.4]
    names = [m.region_names[c] for c in m.element_region]
    assert names == ["TRAB", "CEMENT"]


# ------------------------------------------------------------------------------ *BOUNDARY


@pytest.mark.parametrize("kind, dofs", [("ENCASTRE", "xyz"), ("PINNED", "xyz"), ("XSYMM", "x"),
                                        ("YSYMM", "y"), ("ZSYMM", "z"), ("encastre", "xyz"),
                                        ("Xsymm", "x")])
def test_boundary_types(tmp_path, kind, dofs):
    m = read(tmp_path, TWO_HEX.replace("LEFT, ENCASTRE", f"LEFT, {kind}"))
    assert fixed_map(m) == {(n, a): 0.0 for n in (101, 104, 105, 108) for a in dofs}


@pytest.mark.parametrize("line, expected", [
    ("LEFT, 1", {"x": 0.0}),
    ("LEFT, 2, 3", {"y": 0.0, "z": 0.0}),
    ("LEFT, 1, 3", {"x": 0.0, "y": 0.0, "z": 0.0}),
    ("LEFT, 1, 2, 0.0", {"x": 0.0, "y": 0.0}),
    ("LEFT, 3, 3, -0.02", {"z": -0.02}),
    ("LEFT, 1, 3, 0.5", {"x": 0.5, "y": 0.5, "z": 0.5}),
    ("LEFT, 2, , 0.125", {"y": 0.125}),
])
def test_boundary_dof_ranges_and_prescribed_values(tmp_path, line, expected):
    m = read(tmp_path, TWO_HEX.replace("LEFT, ENCASTRE", line))
    assert fixed_map(m) == {(n, a): v for n in (101, 104, 105, 108) for a, v in expected.items()}


def test_boundary_on_node_labels_and_several_lines(tmp_path):
    m = read(tmp_path, TWO_HEX.replace("LEFT, ENCASTRE", "101, 1, 3\n104, 1, 2\n105, 1\n"
                                       "RIGHT, 1, 1, 0.01"))
    expected = {(101, "x"): 0, (101, "y"): 0, (101, "z"): 0, (104, "x"): 0, (104, "y"): 0,
                (105, "x"): 0}
    expected.update({(n, "x"): 0.01 for n in (109, 110, 111, 112)})
    assert fixed_map(m) == expected


def test_prescribed_displacement_is_met_by_the_solution(tmp_path):
    """Symmetry planes and a prescribed face displacement: an exact linear field."""
    deck = TWO_HEX.replace("""*NSET, NSET=LEFT
101, 104, 105, 108""", """*NSET, NSET=LEFT
101, 104, 105, 108
*NSET, NSET=YMIN
101, 102, 105, 106, 109, 111
*NSET, NSET=ZMIN
101, 102, 103, 104, 109, 110""").replace("LEFT, ENCASTRE", """LEFT, XSYMM
YMIN, YSYMM
ZMIN, ZSYMM
RIGHT, 1, 1, 0.004""").replace("*CLOAD\nRIGHT, 1, 2.5\n", "")
    m = read(tmp_path, deck)
    r = fem.solve(m, backend="numpy", solver="direct")
    x = m.points
    eps = 0.004 / 2.0
    expect = np.column_stack([eps * x[:, 0], -0.3 * eps * x[:, 1], -0.3 * eps * x[:, 2]])
    np.testing.assert_allclose(r.displacement, expect, atol=1e-12)
    np.testing.assert_allclose(r.stress[:, 0], 1000.0 * eps, rtol=1e-9)


def test_boundary_outside_the_step_applies_too(tmp_path):
    deck = TWO_HEX.replace("*STEP\n*STATIC\n*BOUNDARY\nLEFT, ENCASTRE\n",
                           "*BOUNDARY\nLEFT, ENCASTRE\n*STEP\n*STATIC\n")
    m = read(tmp_path, deck)
    assert fixed_map(m) == {(n, a): 0.0 for n in (101, 104, 105, 108) for a in "xyz"}


# ------------------------------------------------------------------------------ *CLOAD


def test_cload_on_a_set_applies_the_force_to_each_node(tmp_path):
    m = read(tmp_path, TWO_HEX.replace("RIGHT, 1, 2.5", "RIGHT, 1, 2.5\nRIGHT, 3, -1\n107, 2, 4"))
    f = nodal_forces(m)
    assert sorted(f) == [107, 109, 110, 111, 112]
    for n in (109, 110, 111, 112):
        assert f[n].tolist() == [2.5, 0.0, -1.0]
    assert f[107].tolist() == [0.0, 4.0, 0.0]
    r = fem.solve(m, backend="numpy", solver="direct")
    np.testing.assert_allclose(r.applied_total(), [10.0, 4.0, -4.0], atol=1e-12)
    np.testing.assert_allclose(r.reaction_total(), [-10.0, -4.0, 4.0], atol=1e-9)


# ------------------------------------------------------------------------------ face loads


def _outward(xyz, face_pos):
    """Unit outward normal and area of a planar face given by corner positions (1-based)."""
    c = xyz[[p - 1 for p in face_pos]]
    if len(c) == 4:
        n = 0.5 * np.cross(c[2] - c[0], c[3] - c[1])
    else:
        n = 0.5 * np.cross(c[1] - c[0], c[2] - c[0])
    area = np.linalg.norm(n)
    n = n / area
    if np.dot(n, c.mean(0) - xyz[: (8 if len(xyz) == 8 else 4)].mean(0)) < 0:
        n = -n
    return n, area


CASES = [(t, k) for t in ("C3D8", "C3D4", "C3D10") for k in range(len(ABAQUS_FACES[t]))]


@pytest.mark.parametrize("etype, face", CASES, ids=[f"{t}-P{k + 1}" for t, k in CASES])
def test_dload_face_pressure_loads_exactly_the_abaqus_face(tmp_path, etype, face):
    xyz = SINGLE[etype]
    node_labels = [10 * i + 3 for i in range(len(xyz))]
    p = 0.75
    m = read(tmp_path, single_element_deck(etype, f"*DLOAD\n77, P{face + 1}, {p}", node_labels))
    f = nodal_forces(m)
    pos = ABAQUS_FACES[etype][face]
    corners = pos[:3] if etype != "C3D8" else pos
    n, area = _outward(xyz, corners)
    on_face = {node_labels[q - 1] for q in pos}
    assert set(f) <= on_face
    total = sum(f.values())
    np.testing.assert_allclose(total, -p * area * n, rtol=1e-12, atol=1e-12)
    if etype == "C3D8":
        expect = {node_labels[q - 1]: -p * area / 4 * n for q in pos}
    elif etype == "C3D4":
        expect = {node_labels[q - 1]: -p * area / 3 * n for q in pos}
    else:  # tri6 with uniform pressure: nothing at the corners, a third at each midside
        expect = {node_labels[q - 1]: -p * area / 3 * n * (q in pos[3:]) for q in pos}
    for k, v in expect.items():
        np.testing.assert_allclose(f.get(k, np.zeros(3)), v, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("etype", ["C3D8", "C3D4", "C3D10"])
def test_surface_and_dsload_match_dload(tmp_path, etype):
    nf = len(ABAQUS_FACES[etype])
    for face in range(nf):
        surf = f"*SURFACE, NAME=Top, TYPE=ELEMENT\n77, S{face + 1}\n"
        d = single_element_deck(etype, "*DSLOAD\ntop, P, -2.0")
        d = d.replace("*MATERIAL", surf + "*MATERIAL")
        m = read(tmp_path, d, f"s{face}.inp")
        fs = m.face_sets["Top"]
        assert fs.elements.tolist() == [0] and fs.faces.tolist() == [face]
        ref = read(tmp_path, single_element_deck(etype, f"*DLOAD\n77, P{face + 1}, -2.0"),
                   f"d{face}.inp")
        np.testing.assert_allclose(compile_conditions(m).f, compile_conditions(ref).f,
                                   rtol=1e-14, atol=1e-14)


def test_surface_on_an_element_set_and_dload_on_an_element_set(tmp_path):
    deck = TWO_HEX.replace("*MATERIAL", "*SURFACE, NAME=BOTTOM\nEALL, S1\n*MATERIAL").replace(
        "*CLOAD\nRIGHT, 1, 2.5\n", "*DLOAD\nEALL, P2, 0.5\n*DSLOAD\nBOTTOM, P, 0.25\n")
    m = read(tmp_path, deck)
    fs = m.face_sets["BOTTOM"]
    assert sorted(zip(m.element_ids[fs.elements].tolist(), fs.faces.tolist())) == [(3, 0), (7, 0)]
    f = compile_conditions(m).f[: 3 * m.n_nodes].reshape(-1, 3)
    z = m.points[:, 2]
    # P2 (top, z = 1) pushes down with 0.5 MPa over 2 mm^2, S1 (bottom) up with 0.25 MPa
    np.testing.assert_allclose(f[z == 1].sum(0), [0, 0, -1.0], atol=1e-14)
    np.testing.assert_allclose(f[z == 0].sum(0), [0, 0, 0.5], atol=1e-14)


# ------------------------------------------------------------------------------ OP=NEW


def test_boundary_op_new_replaces_earlier_boundaries(tmp_path):
    m = read(tmp_path, TWO_HEX.replace("LEFT, ENCASTRE",
                                       "RIGHT, 1, 3\n*BOUNDARY, OP=NEW\nLEFT, 1, 2"))
    assert fixed_map(m) == {(n, a): 0.0 for n in (101, 104, 105, 108) for a in "xy"}


def test_boundary_op_mod_keeps_earlier_boundaries(tmp_path):
    m = read(tmp_path, TWO_HEX.replace("LEFT, ENCASTRE",
                                       "RIGHT, 3\n*BOUNDARY, OP=MOD\nLEFT, 1"))
    assert fixed_map(m) == {**{(n, "z"): 0.0 for n in (109, 110, 111, 112)},
                            **{(n, "x"): 0.0 for n in (101, 104, 105, 108)}}


def test_cload_op_new_replaces_earlier_cloads(tmp_path):
    m = read(tmp_path, TWO_HEX.replace("RIGHT, 1, 2.5",
                                       "RIGHT, 1, 2.5\n107, 3, 9\n*CLOAD, OP=NEW\n106, 2, -3"))
    f = nodal_forces(m)
    assert list(f) == [106] and f[106].tolist() == [0.0, -3.0, 0.0]
    assert fixed_map(m)  # the boundary is not touched by a *CLOAD, OP=NEW


def test_dload_and_dsload_op_new(tmp_path):
    deck = TWO_HEX.replace("*MATERIAL", "*SURFACE, NAME=TOP\nEALL, S2\n*MATERIAL").replace(
        "*CLOAD\nRIGHT, 1, 2.5\n",
        "*DLOAD\nEALL, P1, 5\n*DLOAD, OP=NEW\n3, P2, 1\n"
        "*DSLOAD\nTOP, P, 7\n*DSLOAD, OP=NEW\nTOP, P, 0.5\n")
    m = read(tmp_path, deck)
    f = compile_conditions(m).f[: 3 * m.n_nodes].reshape(-1, 3)
    # only element 3's top (1 mm^2, 1 MPa) and the 2 mm^2 top surface at 0.5 MPa remain
    np.testing.assert_allclose(f.sum(0), [0, 0, -2.0], atol=1e-14)
    np.testing.assert_allclose(f[m.points[:, 2] == 0], 0.0, atol=0)


def test_elastic_type_iso_abbreviation(tmp_path):
    """CalculiX and Abaqus accept TYPE=ISO for isotropic elasticity."""
    m = read(tmp_path, TWO_HEX.replace("*ELASTIC\n", "*ELASTIC, TYPE=ISO\n"))
    assert np.allclose(m.E, 1000.0) and np.allclose(m.nu, 0.3)
