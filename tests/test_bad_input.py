"""Bad input: every fault gives a fem.ModelError subclass whose message names the fault and its
place (file and line, element or node labels, set or keyword names).

Each test asserts the exception type and the key content of the message; a raw Python exception
(KeyError, IndexError, ValueError, OverflowError, OSError, ...) escaping for bad input is a bug.
"""

from __future__ import annotations

import os
import re
import textwrap
from pathlib import Path

import numpy as np
import pytest

import fem
from decks import TWO_HEX
from fem.meshes.blocks import hex_block, name_planes, tet_block
from verification_models import orthotropic_result

# two hexes; labels non-contiguous. Line numbers below are looked up, never hard-coded.
BASE = TWO_HEX


def edit(old: str, new: str, text: str = BASE) -> str:
    assert old in text, old
    return text.replace(old, new, 1)


def line_of(text: str, fragment: str, nth: int = 1) -> int:
    """1-based number of the line holding the nth occurrence of ``fragment``."""
    hits = [i + 1 for i, ln in enumerate(text.splitlines()) if fragment in ln]
    return hits[nth - 1]


def write(folder: Path, text, name: str = "deck.inp") -> Path:
    p = folder / name
    if isinstance(text, bytes):
        p.write_bytes(text)
    else:
        p.write_text(textwrap.dedent(text))
    return p


def deck_fault(tmp_path, text, exc=fem.DeckError, *fragments, line=None, solve=False):
    """Read (and optionally solve) the deck; assert the error type, message parts and line."""
    path = write(tmp_path, text)
    with pytest.raises(fem.ModelError) as info:
        model = fem.Model.from_inp(path)
        if solve:
            fem.solve(model, backend="numpy", solver="direct")
    err = info.value
    assert isinstance(err, exc), f"{type(err).__name__}: {err}"
    msg = str(err)
    for frag in fragments:
        assert frag in msg, f"{frag!r} not in {msg!r}"
    if line is not None:
        assert f"line {line}:" in msg, msg
        assert err.line == line
        assert err.path is not None and Path(err.path).name == path.name
    return err


def labels_in(msg: str, word: str) -> set[int]:
    """The element labels an error message lists after e.g. 'inverted element(s)'."""
    m = re.search(word + r" element\(s\) ([0-9, ]+)", msg)
    assert m, msg
    return {int(x) for x in m.group(1).split(",") if x.strip()}


# ------------------------------------------------------------------------------ files


def test_missing_file(tmp_path):
    with pytest.raises(fem.InputFileError, match="nope.inp.*no such file"):
        fem.Model.from_inp(tmp_path / "nope.inp")


def test_directory_given_as_input(tmp_path):
    d = tmp_path / "folder.inp"
    d.mkdir()
    with pytest.raises(fem.InputFileError, match="folder.inp.*folder"):
        fem.Model.from_inp(d)


@pytest.mark.parametrize("content", ["", "   \n\n\t\n", "** only a comment\n"],
                         ids=["empty", "whitespace", "comment-only"])
def test_empty_files(tmp_path, content):
    p = write(tmp_path, content)
    with pytest.raises(fem.InputFileError) as info:
        fem.Model.from_inp(p)
    assert "deck.inp" in str(info.value)
    assert ("empty" in str(info.value)) or ("no keyword" in str(info.value))


def test_binary_file_with_nul_bytes(tmp_path):
    raw = np.random.default_rng(3).integers(0, 256, 4096, dtype=np.uint8).tobytes()
    p = write(tmp_path, b"\x00" + raw)
    with pytest.raises(fem.InputFileError, match="deck.inp.*binary"):
        fem.Model.from_inp(p)


def test_binary_file_without_nul_bytes(tmp_path):
    raw = bytes(range(1, 256)) * 8
    deck_fault(tmp_path, raw, fem.DeckError, "data line before any keyword", line=1)


def test_deck_with_a_nul_after_valid_text_is_binary(tmp_path):
    p = write(tmp_path, BASE.encode() + b"\x00\x01\x02")
    with pytest.raises(fem.InputFileError, match="binary"):
        fem.Model.from_inp(p)


def test_unreadable_mesh_file_is_an_input_error(tmp_path):
    """A corrupt .vtu: meshio calls sys.exit(1) for it; that must not escape as SystemExit."""
    p = write(tmp_path, np.random.default_rng(1).bytes(300), "mesh.vtu")
    with pytest.raises(fem.InputFileError, match="mesh.vtu"):
        fem.Model.from_file(p, E=100, nu=0.3)


def test_missing_include_names_the_including_file_and_line(tmp_path):
    text = edit("*MATERIAL", "*INCLUDE, INPUT=sub/missing.inp\n*MATERIAL")
    deck_fault(tmp_path, text, fem.DeckError, "missing.inp", "no such file",
               line=line_of(text, "*INCLUDE"))


def test_missing_nested_include_names_the_inner_file(tmp_path):
    write(tmp_path, "*INCLUDE, INPUT=gone.inp\n", "inner.inp")
    text = edit("*MATERIAL", "*INCLUDE, INPUT=inner.inp\n*MATERIAL")
    path = write(tmp_path, text)
    with pytest.raises(fem.DeckError) as info:
        fem.Model.from_inp(path)
    assert Path(info.value.path).name == "inner.inp" and info.value.line == 1
    assert "inner.inp, line 1:" in str(info.value) and "gone.inp" in str(info.value)


def test_include_of_a_directory(tmp_path):
    (tmp_path / "dir.inp").mkdir()
    text = edit("*MATERIAL", "*INCLUDE, INPUT=dir.inp\n*MATERIAL")
    deck_fault(tmp_path, text, fem.DeckError, "dir.inp", line=line_of(text, "*INCLUDE"))


def test_include_without_input(tmp_path):
    text = edit("*MATERIAL", "*INCLUDE\n*MATERIAL")
    deck_fault(tmp_path, text, fem.DeckError, "*INCLUDE", "INPUT", line=line_of(text, "*INCLUDE"))


def test_include_cycle(tmp_path):
    write(tmp_path, "*INCLUDE, INPUT=b.inp\n", "a.inp")
    write(tmp_path, "** b includes a\n*INCLUDE, INPUT=a.inp\n", "b.inp")
    text = edit("*MATERIAL", "*INCLUDE, INPUT=a.inp\n*MATERIAL")
    path = write(tmp_path, text)
    with pytest.raises(fem.DeckError) as info:
        fem.Model.from_inp(path)
    msg = str(info.value)
    assert "cycle" in msg and "a.inp" in msg
    assert "b.inp, line 2:" in msg


def test_include_of_itself(tmp_path):
    text = edit("*MATERIAL", "*INCLUDE, INPUT=deck.inp\n*MATERIAL")
    deck_fault(tmp_path, text, fem.DeckError, "cycle", line=line_of(text, "*INCLUDE"))


def test_include_with_an_impossibly_long_file_name(tmp_path):
    """The OS refuses the name (ENAMETOOLONG): must be a deck error, not a raw OSError."""
    text = edit("*MATERIAL", "*INCLUDE, INPUT=" + "x" * 300 + ".inp\n*MATERIAL")
    deck_fault(tmp_path, text, fem.DeckError, line=line_of(text, "*INCLUDE"))


# ------------------------------------------------------------------------------ keywords


@pytest.mark.parametrize("keyword, anchor", [
    ("*EXPANSION\n1.2e-5", "*SOLID SECTION"),
    ("*DYNAMIC", "*BOUNDARY"),
    ("*FOO, BAR=1", "*MATERIAL"),
    ("*HEAT TRANSFER", "*BOUNDARY"),
    ("*EQUATION\n2\n101, 1, 1., 102, 1, -1.", "*STEP"),
    ("*DENSITY\n1e-9", "*SOLID SECTION"),
])
def test_unsupported_keyword_is_named_with_its_line(tmp_path, keyword, anchor):
    text = edit(anchor, keyword + "\n" + anchor)
    name = keyword.split("\n")[0].split(",")[0]
    deck_fault(tmp_path, text, fem.DeckError, name, "unsupported",
               line=line_of(text, name))


def test_lower_case_unsupported_keyword(tmp_path):
    text = edit("*MATERIAL", "*expansion\n1e-5\n*MATERIAL")
    deck_fault(tmp_path, text, fem.DeckError, "*EXPANSION", "unsupported",
               line=line_of(text, "*expansion"))


@pytest.mark.parametrize("etype", ["C3D20", "C3D8R", "C3D20R", "S4", "C3D6"])
def test_unsupported_element_type(tmp_path, etype):
    text = edit("*ELEMENT, TYPE=C3D8", f"*ELEMENT, TYPE={etype}")
    deck_fault(tmp_path, text, fem.DeckError, etype, "not supported",
               line=line_of(text, "*ELEMENT"))


def test_element_without_type(tmp_path):
    text = edit("*ELEMENT, TYPE=C3D8, ELSET=EALL", "*ELEMENT, ELSET=EALL")
    deck_fault(tmp_path, text, fem.DeckError, "TYPE", line=line_of(text, "*ELEMENT"))


def test_second_step(tmp_path):
    text = BASE + "*STEP\n*STATIC\n*CLOAD\nRIGHT, 2, 1.\n*END STEP\n"
    deck_fault(tmp_path, text, fem.DeckError, "*STEP", line=line_of(text, "*STEP", 2))


@pytest.mark.parametrize("param", ["NLGEOM", "NLGEOM=YES", "nlgeom=yes", "INC=100, NLGEOM"])
def test_nlgeom_is_refused(tmp_path, param):
    """Bare NLGEOM means NLGEOM=YES in Abaqus and CalculiX: a nonlinear analysis."""
    text = edit("*STEP", f"*STEP, {param}")
    deck_fault(tmp_path, text, fem.DeckError, "NLGEOM", line=line_of(text, "*STEP"))


def test_step_without_static(tmp_path):
    text = edit("*STATIC\n", "")
    deck_fault(tmp_path, text, fem.DeckError, "*STATIC", line=line_of(text, "*STEP"))


def test_step_without_end_step(tmp_path):
    text = edit("*END STEP\n", "")
    deck_fault(tmp_path, text, fem.DeckError, "*END STEP", line=line_of(text, "*STEP"))


@pytest.mark.parametrize("load", ["*CLOAD\nRIGHT, 1, 1.", "*DLOAD\nEALL, P1, 1.",
                                  "*SURFACE, NAME=S\nEALL, S1\n*DSLOAD\nS, P, 1."])
def test_loads_outside_a_step(tmp_path, load):
    text = edit("*STEP", load + "\n*STEP")
    kw = load.split("\n")[-2] if load.startswith("*SURFACE") else load.split("\n")[0]
    deck_fault(tmp_path, text, fem.DeckError, kw, "outside a *STEP", line=line_of(text, kw))


def test_data_line_before_any_keyword(tmp_path):
    text = "1, 2, 3\n" + BASE
    deck_fault(tmp_path, text, fem.DeckError, "data line before any keyword", line=1)


def test_lone_star(tmp_path):
    text = edit("*STEP", "*\n*STEP")
    deck_fault(tmp_path, text, fem.DeckError, "empty keyword", line=line_of(text, "*STEP") - 1)


# ------------------------------------------------------------------------------ malformed data


@pytest.mark.parametrize("old, new, what", [
    ("103, 1, 1, 0", "103, 1, 1", "expected 4 values"),
    ("103, 1, 1, 0", "103, 1, 1, 0, 7", "expected 4 values"),
    ("103, 1, 1, 0", "103, 1, one, 0", "'one' is not a number"),
    ("103, 1, 1, 0", "103, 1, , 0", "empty field"),
    ("103, 1, 1, 0", "103.5, 1, 1, 0", "103.5"),
    ("103, 1, 1, 0", "-103, 1, 1, 0", "-103"),
])
def test_malformed_node_lines(tmp_path, old, new, what):
    text = edit(old, new)
    deck_fault(tmp_path, text, fem.DeckError, what, line=line_of(text, new))


def test_element_line_with_too_many_nodes(tmp_path):
    new = "7, 101, 102, 103, 104, 105, 106, 107, 108, 109"
    text = edit("7, 101, 102, 103, 104, 105, 106, 107, 108", new)
    deck_fault(tmp_path, text, fem.DeckError, "expected 9 values", line=line_of(text, new))


def test_element_data_incomplete_at_the_end(tmp_path):
    old = "3, 102, 109, 110, 103, 106, 111, 112, 107"
    text = edit(old, "3, 102, 109, 110, 103")
    deck_fault(tmp_path, text, fem.DeckError, "incomplete", line=line_of(text, "3, 102, 109"))


def test_element_with_non_integer_node(tmp_path):
    text = edit("7, 101, 102, 103", "7, 101, 102.5, 103")
    deck_fault(tmp_path, text, fem.DeckError, "element 7", "102.5",
               line=line_of(text, "7, 101, 102.5"))


@pytest.mark.parametrize("old, new, what", [
    ("*NSET, NSET=RIGHT\n109, 110, 111, 112", "*NSET, NSET=RIGHT, GENERATE\n112, 109",
     "smaller than first"),
    ("*NSET, NSET=RIGHT\n109, 110, 111, 112", "*NSET, NSET=RIGHT, GENERATE\n109, 112, 0",
     "increment"),
    ("*NSET, NSET=RIGHT\n109, 110, 111, 112", "*NSET, NSET=RIGHT, GENERATE\n109, 112, 1, 1",
     "GENERATE"),
    ("*NSET, NSET=RIGHT\n109, 110, 111, 112", "*NSET, NSET=RIGHT, GENERATE\n109, x",
     "'x'"),
])
def test_malformed_generate(tmp_path, old, new, what):
    text = edit(old, new)
    deck_fault(tmp_path, text, fem.DeckError, what, line=line_of(text, new.split("\n")[1]))


def test_set_without_name(tmp_path):
    text = edit("*NSET, NSET=RIGHT", "*NSET")
    deck_fault(tmp_path, text, fem.DeckError, "NSET=", line=line_of(text, "*NSET", 2))


@pytest.mark.parametrize("line, what", [
    ("LEFT, 7", "7..7"), ("LEFT, 3, 1", "3..1"), ("LEFT, 0", "'0'"),
    ("LEFT, 1, 3, abc", "'abc'"), ("LEFT, 1, 3, nan", "'nan'"), ("LEFT", "*BOUNDARY data"),
    ("LEFT, ENCASTRE, 1", "ENCASTRE"),
])
def test_malformed_boundary(tmp_path, line, what):
    text = edit("LEFT, ENCASTRE", line)
    deck_fault(tmp_path, text, fem.DeckError, what, line=line_of(text, "*BOUNDARY") + 1)


@pytest.mark.parametrize("line, what", [
    ("RIGHT, 4, 1.", "dof 4"), ("RIGHT, 1, inf", "'inf'"), ("RIGHT, 1", "*CLOAD data"),
    ("RIGHT, 1, 2, 3", "*CLOAD data"),
])
def test_malformed_cload(tmp_path, line, what):
    text = edit("RIGHT, 1, 2.5", line)
    deck_fault(tmp_path, text, fem.DeckError, what, line=line_of(text, line))


@pytest.mark.parametrize("load, what", [
    ("*DLOAD\nEALL, BZ, -9.81", "'BZ'"), ("*DLOAD\nEALL, P7, 1", "'P7'"),
    ("*DLOAD\nEALL, P1, nan", "'nan'"), ("*DSLOAD\nS, TRVEC, 1", "'TRVEC'"),
])
def test_unsupported_distributed_loads(tmp_path, load, what):
    text = edit("*MATERIAL", "*SURFACE, NAME=S\nEALL, S1\n*MATERIAL")
    text = edit("*END STEP", load + "\n*END STEP", text)
    deck_fault(tmp_path, text, fem.DeckError, what, line=line_of(text, load.split("\n")[1]))


def test_pressure_on_a_face_a_tet_does_not_have(tmp_path):
    text = """\
*NODE
1, 0, 0, 0
2, 1, 0, 0
3, 0, 1, 0
4, 0, 0, 1
*ELEMENT, TYPE=C3D4, ELSET=T
9, 1, 2, 3, 4
*STEP
*STATIC
*DLOAD
9, P5, 1.
*END STEP
"""
    deck_fault(tmp_path, text, fem.DeckError, "element 9", "P5", line=line_of(text, "9, P5"))


def test_surface_face_out_of_range(tmp_path):
    text = edit("*MATERIAL", "*SURFACE, NAME=S\n7, S9\n*MATERIAL")
    deck_fault(tmp_path, text, fem.DeckError, "'S9'", line=line_of(text, "7, S9"))


def test_surface_of_node_type_is_refused(tmp_path):
    text = edit("*MATERIAL", "*SURFACE, NAME=S, TYPE=NODE\nLEFT\n*MATERIAL")
    deck_fault(tmp_path, text, fem.DeckError, "TYPE=NODE", line=line_of(text, "*SURFACE"))


# ------------------------------------------------------------------------------ labels


def test_element_refers_to_undefined_node(tmp_path):
    new = "3, 102, 109, 110, 103, 106, 111, 999, 107"
    text = edit("3, 102, 109, 110, 103, 106, 111, 112, 107", new)
    deck_fault(tmp_path, text, fem.DeckError, "element 3", "undefined node 999",
               line=line_of(text, new))


def test_element_refers_to_undefined_node_across_blocks(tmp_path):
    text = edit("*NSET, NSET=LEFT", "*ELEMENT, TYPE=C3D4\n40, 101, 102, 103, 555\n*NSET, NSET=LEFT")
    deck_fault(tmp_path, text, fem.DeckError, "element 40", "555",
               line=line_of(text, "40, 101, 102"))


def test_duplicate_node_label(tmp_path):
    text = edit("110, 2, 1, 0", "110, 2, 1, 0\n104, 9, 9, 9")
    deck_fault(tmp_path, text, fem.DeckError, "node 104", "twice")


def test_duplicate_element_label(tmp_path):
    text = edit("*NSET, NSET=LEFT", "*ELEMENT, TYPE=C3D4\n7, 101, 102, 103, 105\n*NSET, NSET=LEFT")
    deck_fault(tmp_path, text, fem.DeckError, "element 7", "twice")


def test_huge_node_label_in_a_set(tmp_path):
    """A label beyond 64-bit integers (was an OverflowError in fem/io/inp.py _set)."""
    text = edit("109, 110, 111, 112", "109, 110, 111, 112, 99999999999999999999")
    err = deck_fault(tmp_path, text, fem.DeckError, line=line_of(text, "99999999999999999999"))
    assert re.search(r"99999999999999999999|1(e\+20|0{20})", str(err)), str(err)


def test_huge_element_label_is_not_silently_wrapped(tmp_path):
    text = edit("7, 101, 102", "1e30, 101, 102")
    deck_fault(tmp_path, text, fem.DeckError, "1e+30", line=line_of(text, "1e30, 101"))


def test_huge_node_label_in_an_element_is_reported_as_written(tmp_path):
    text = edit("7, 101, 102", "7, 1e30, 102")
    err = deck_fault(tmp_path, text, fem.DeckError, "element 7",
                     line=line_of(text, "7, 1e30, 102"))
    assert "-9223372036854775808" not in str(err)


def test_generate_over_a_huge_range_of_undefined_labels(tmp_path):
    """GENERATE 1, 1e12 must be refused from the defined labels, not by allocating 8 TB."""
    text = edit("*NSET, NSET=RIGHT\n109, 110, 111, 112",
                "*NSET, NSET=RIGHT, GENERATE\n1, 1000000000000")
    deck_fault(tmp_path, text, fem.DeckError, "RIGHT", line=line_of(text, "1, 1000000000000"))


def test_node_block_without_data_and_no_other_nodes(tmp_path):
    """An empty *NODE block: IndexError in fem/io/inp.py (_node_index) before the fix."""
    head = BASE.split("*NODE, NSET=NALL\n")[0]
    text = head + "*NODE, NSET=NALL\n" + BASE[BASE.index("*ELEMENT"):]
    deck_fault(tmp_path, text, fem.DeckError, "node")


def test_deck_without_nodes_or_elements(tmp_path):
    deck_fault(tmp_path, "*HEADING\nnothing\n", fem.DeckError, "no nodes")
    text = BASE[:BASE.index("*ELEMENT")] + BASE[BASE.index("*NSET, NSET=LEFT"):]
    text = text.replace("*SOLID SECTION, ELSET=EALL, MATERIAL=BONE\n", "")
    deck_fault(tmp_path, text, fem.DeckError, "no elements")


# ------------------------------------------------------------------------------ sets and loads


def test_section_on_undefined_element_set(tmp_path):
    text = edit("ELSET=EALL, MATERIAL=BONE", "ELSET=SPONGE, MATERIAL=BONE")
    deck_fault(tmp_path, text, fem.DeckError, "'SPONGE'", line=line_of(text, "*SOLID SECTION"))


def test_section_with_undefined_material(tmp_path):
    text = edit("ELSET=EALL, MATERIAL=BONE", "ELSET=EALL, MATERIAL=STEEL")
    deck_fault(tmp_path, text, fem.DeckError, "'STEEL'", line=line_of(text, "*SOLID SECTION"))


def test_material_without_elastic(tmp_path):
    text = edit("*ELASTIC\n1000., 0.3\n", "")
    deck_fault(tmp_path, text, fem.DeckError, "'BONE'", "*ELASTIC",
               line=line_of(text, "*SOLID SECTION"))


def test_element_set_referenced_but_not_defined(tmp_path):
    text = edit("*NSET, NSET=RIGHT", "*ELSET, ELSET=BOTH\nEALL, CORTEX\n*NSET, NSET=RIGHT")
    deck_fault(tmp_path, text, fem.DeckError, "'CORTEX'", line=line_of(text, "EALL, CORTEX"))


def test_node_set_referenced_but_not_defined(tmp_path):
    text = edit("RIGHT, 1, 2.5", "TOP, 1, 2.5")
    deck_fault(tmp_path, text, fem.DeckError, "unknown node set 'TOP'",
               line=line_of(text, "TOP, 1, 2.5"))


def test_set_refers_to_itself(tmp_path):
    text = edit("*NSET, NSET=RIGHT\n109, 110, 111, 112",
                "*NSET, NSET=RIGHT\n109, 110, 111, 112, OTHER\n*NSET, NSET=OTHER\nRIGHT")
    deck_fault(tmp_path, text, fem.DeckError, "refers to itself")


def test_dload_on_undefined_element_set(tmp_path):
    text = edit("*END STEP", "*DLOAD\nCORTEX, P1, 1.\n*END STEP")
    deck_fault(tmp_path, text, fem.DeckError, "'CORTEX'", line=line_of(text, "CORTEX, P1"))


def test_dsload_on_undefined_surface(tmp_path):
    text = edit("*END STEP", "*DSLOAD\nENDPLATE, P, 1.\n*END STEP")
    deck_fault(tmp_path, text, fem.DeckError, "'ENDPLATE'", line=line_of(text, "ENDPLATE, P"))


def test_surface_on_undefined_element_set(tmp_path):
    text = edit("*MATERIAL", "*SURFACE, NAME=S\nCORTEX, S2\n*MATERIAL")
    deck_fault(tmp_path, text, fem.DeckError, "'CORTEX'", line=line_of(text, "CORTEX, S2"))


def test_empty_node_set_used_by_a_load(tmp_path):
    text = edit("*NSET, NSET=RIGHT\n109, 110, 111, 112", "*NSET, NSET=RIGHT")
    deck_fault(tmp_path, text, fem.DeckError, "'RIGHT'", "empty",
               line=line_of(text, "RIGHT, 1, 2.5"))


def test_empty_node_set_used_by_a_boundary(tmp_path):
    text = edit("*NSET, NSET=LEFT\n101, 104, 105, 108", "*NSET, NSET=LEFT")
    deck_fault(tmp_path, text, fem.DeckError, "'LEFT'", "empty",
               line=line_of(text, "LEFT, ENCASTRE"))


def test_empty_element_set_in_a_surface_with_pressure(tmp_path):
    text = edit("*MATERIAL", "*ELSET, ELSET=NONE\n*SURFACE, NAME=S\nNONE, S1\n*MATERIAL")
    text = edit("*END STEP", "*DSLOAD\nS, P, 1.\n*END STEP", text)
    deck_fault(tmp_path, text, fem.DeckError, "'NONE'", "empty", line=line_of(text, "NONE, S1"))


def test_empty_element_set_in_a_section(tmp_path):
    text = edit("*MATERIAL", "*ELSET, ELSET=NONE\n*MATERIAL")
    text = edit("*SOLID SECTION, ELSET=EALL, MATERIAL=BONE",
                "*SOLID SECTION, ELSET=EALL, MATERIAL=BONE\n"
                "*SOLID SECTION, ELSET=NONE, MATERIAL=BONE", text)
    deck_fault(tmp_path, text, fem.DeckError, "'NONE'", "empty",
               line=line_of(text, "ELSET=NONE, MATERIAL"))


@pytest.mark.parametrize("old, new, bad, label", [
    ("RIGHT, 1, 2.5", "999, 1, 2.5", "999, 1, 2.5", "node 999"),
    ("LEFT, ENCASTRE", "LEFT, ENCASTRE\n4242, 1, 3", "4242, 1, 3", "node 4242"),
    ("*END STEP", "*DLOAD\n99, P1, 1.\n*END STEP", "99, P1", "element 99"),
    ("*MATERIAL", "*SURFACE, NAME=S\n98, S1\n*MATERIAL", "98, S1", "element 98"),
    ("109, 110, 111, 112", "109, 110, 111, 112, 113", "109, 110, 111, 112, 113", "node 113"),
    ("*MATERIAL", "*ELSET, ELSET=X\n7, 8\n*MATERIAL", "7, 8", "element 8"),
])
def test_reference_to_undefined_label(tmp_path, old, new, bad, label):
    text = edit(old, new)
    deck_fault(tmp_path, text, fem.DeckError, label, "not defined", line=line_of(text, bad))


def test_load_on_a_node_that_belongs_to_no_element(tmp_path):
    text = edit("112, 2, 1, 1", "112, 2, 1, 1\n500, 9, 9, 9")
    text = edit("RIGHT, 1, 2.5", "RIGHT, 1, 2.5\n500, 2, 1.", text)
    deck_fault(tmp_path, text, fem.DeckError, "node 500", line=line_of(text, "500, 2, 1."))


def test_conflicting_prescribed_values_on_one_dof(tmp_path):
    text = edit("LEFT, ENCASTRE", "LEFT, ENCASTRE\n104, 2, 2, 0.1")
    deck_fault(tmp_path, text, fem.BoundaryConditionError, "node 104", "(y)", "0.1",
               solve=True)


def test_conflicting_prescribed_values_api():
    m = hex_block((1, 1, 1), E=100, nu=0.3)
    m.node_ids = m.node_ids + 40
    m.fix("xmin")
    m.add(fem.Displacement("ymin", (None, None, 0.2)))
    with pytest.raises(fem.BoundaryConditionError) as info:
        fem.solve(m, backend="numpy")
    shared = np.intersect1d(m.node_sets["xmin"], m.node_sets["ymin"])
    msg = str(info.value)
    assert f"node {m.node_ids[shared[0]]}" in msg and "(z)" in msg and "0.2" in msg


# ------------------------------------------------------------------------------ materials


@pytest.mark.parametrize("values, what", [
    ("0., 0.3", "Young's modulus"), ("-5., 0.3", "Young's modulus"),
    ("1000., 0.5", "Poisson"), ("1000., 0.7", "Poisson"), ("1000., -1.", "Poisson"),
    ("1000., -3", "Poisson"), ("nan, 0.3", "'nan'"), ("inf, 0.3", "'inf'"),
    ("1000., NaN", "'NaN'"), ("1000., -Infinity", "'-Infinity'"), ("1000.", "E, nu"),
    ("abc, 0.3", "'abc'"),
])
def test_bad_elastic_constants_in_a_deck(tmp_path, values, what):
    text = edit("1000., 0.3", values)
    deck_fault(tmp_path, text, fem.DeckError, what, line=line_of(text, values))


def test_temperature_dependent_elastic(tmp_path):
    text = edit("1000., 0.3", "1000., 0.3, 20.\n900., 0.3, 40.")
    deck_fault(tmp_path, text, fem.DeckError, "temperature", line=line_of(text, "900., 0.3"))


@pytest.mark.parametrize("line, what", [
    ("*ELASTIC, TYPE=ORTHOTROPIC", "ORTHOTROPIC"), ("*ELASTIC, TYPE=ENGINEERING CONSTANTS",
                                                     "ENGINEERING CONSTANTS"),
])
def test_anisotropic_elastic(tmp_path, line, what):
    text = edit("*ELASTIC", line)
    deck_fault(tmp_path, text, fem.DeckError, what, line=line_of(text, "*ELASTIC"))


def test_elastic_outside_material(tmp_path):
    text = edit("*MATERIAL, NAME=BONE\n", "")
    deck_fault(tmp_path, text, fem.DeckError, "*ELASTIC", line=line_of(text, "*ELASTIC"))


@pytest.mark.parametrize("coord", ["nan", "inf", "-inf", "1e400"])
def test_non_finite_coordinates_in_a_deck(tmp_path, coord):
    new = f"106, 1, {coord}, 1"
    text = edit("106, 1, 0, 1", new)
    deck_fault(tmp_path, text, fem.DeckError, f"'{coord}'", line=line_of(text, new))


def test_elements_without_material_are_named(tmp_path):
    text = edit("ELSET=EALL, MATERIAL", "ELSET=ONE, MATERIAL")
    text = edit("*MATERIAL", "*ELSET, ELSET=ONE\n3\n*MATERIAL", text)
    with pytest.raises(fem.MaterialError, match=r"element\(s\) 7 have no material"):
        fem.solve(fem.Model.from_inp(write(tmp_path, text)), backend="numpy")


@pytest.mark.parametrize("bad", ["nan", "inf"])
def test_non_finite_coordinates_api(bad):
    pts = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1.0]])
    pts[2, 1] = float(bad)
    with pytest.raises(fem.MeshError, match=r"coordinates.*\(2, 1\)"):
        fem.Model.from_arrays(pts, [("tet4", [[0, 1, 2, 3]])], E=1, nu=0.3)


def test_non_numeric_coordinates_api():
    with pytest.raises(fem.MeshError):
        fem.Model.from_arrays([["a", "b", "c"]] * 4, [("tet4", [[0, 1, 2, 3]])])


@pytest.mark.parametrize("E, nu, kind", [
    (0.0, 0.3, fem.MaterialError), (-10.0, 0.3, fem.MaterialError),
    (100.0, 0.5, fem.MaterialError), (100.0, 0.6, fem.MaterialError),
    (100.0, -1.0, fem.MaterialError), (100.0, -1.5, fem.MaterialError),
    (np.nan, 0.3, fem.MaterialError), (np.inf, 0.3, fem.MaterialError),
    (100.0, np.nan, fem.MaterialError), (100.0, -np.inf, fem.MaterialError),
])
def test_bad_material_api_names_the_elements(E, nu, kind):
    """Only the elements of the region get the bad value; the message names exactly them."""
    m = hex_block((3, 1, 1), E=1000.0, nu=0.3)
    m.element_ids = np.array([11, 22, 33])
    m.add_region("soft", [1])
    m.fix("xmin")
    m.add(fem.NodalForce("xmax", (1.0, 0, 0)))
    with pytest.raises(kind) as info:
        m.set_material("soft", E=E, nu=nu)
        fem.solve(m, backend="numpy")
    msg = str(info.value)
    assert "22" in msg and "11" not in msg and "33" not in msg


def test_bad_material_from_arrays():
    with pytest.raises(fem.MaterialError, match="Young"):
        m = fem.Model.from_arrays([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]],
                                  [("tet4", [[0, 1, 2, 3]])], E=-1.0, nu=0.3)
        m.fix(np.array([0, 1, 2]))
        fem.solve(m, backend="numpy")


def test_non_numeric_material_api():
    m = hex_block((1, 1, 1))
    with pytest.raises(fem.MaterialError):
        m.set_material(None, E="soft", nu=0.3)
        fem.solve(m.fix("xmin"), backend="numpy")


def test_duplicate_labels_api():
    pts = [[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]]
    with pytest.raises(fem.MeshError, match="7"):
        fem.Model.from_arrays(pts, [("tet4", [[0, 1, 2, 3]])], node_ids=[1, 7, 7, 9])


# ------------------------------------------------------------------------------ geometry


def _hex_case():
    m = hex_block((3, 2, 1), E=100.0, nu=0.3)
    return m, [4, 5, 6, 7, 0, 1, 2, 3]


def _tet_case():
    return tet_block((2, 1, 1), E=100.0, nu=0.3), [0, 2, 1, 3]


def _tet10_case():
    return tet_block((2, 1, 1), order=2, E=100.0, nu=0.3), [0, 2, 1, 3, 6, 5, 4, 7, 9, 8]


@pytest.mark.parametrize("case", [_hex_case, _tet_case, _tet10_case], ids=["hex8", "tet4", "tet10"])
def test_inverted_elements_are_named_exactly(case):
    m, mirror = case()
    n = m.n_elements
    m.element_ids = 1000 + 7 * np.arange(n)[::-1]
    bad = np.array([1, n - 2])
    conn = m.blocks[0].conn
    conn[bad] = conn[bad][:, mirror]
    m.fix("xmin")
    m.add(fem.NodalForce("xmax", (0.0, 0.0, 1.0)))
    with pytest.raises(fem.MeshError) as info:
        fem.solve(m, backend="numpy")
    assert labels_in(str(info.value), "inverted") == set(m.element_ids[bad].tolist())


def test_inverted_element_in_a_deck(tmp_path):
    text = edit("7, 101, 102, 103, 104, 105, 106, 107, 108",
                "7, 105, 106, 107, 108, 101, 102, 103, 104")
    err = deck_fault(tmp_path, text, fem.MeshError, "inverted", solve=True)
    assert labels_in(str(err), "inverted") == {7}


def test_degenerate_elements_are_named_exactly():
    """A collapsed hex (top face on the bottom one), a flat hex and a flat tet among good hexes."""
    b = hex_block((2, 1, 1), size=(2.0, 1.0, 1.0))
    pts, conn = b.points, b.blocks[0].conn

    def at(x, y, z):
        return int(np.nonzero((pts == [x, y, z]).all(1))[0][0])

    collapsed = conn[0][[0, 1, 2, 3, 0, 1, 2, 3]]
    flat_hex = [at(0, 0, 0), at(1, 0, 0), at(1, 1, 0), at(0, 1, 0),
                at(1, 0, 0), at(2, 0, 0), at(2, 1, 0), at(1, 1, 0)]
    flat_tet = conn[0][[0, 1, 2, 3]]
    m = fem.Model.from_arrays(pts, [("hex8", np.vstack([conn, collapsed, flat_hex])),
                                    ("tet4", flat_tet[None])],
                              element_ids=[5, 6, 50, 60, 70], E=100.0, nu=0.3)
    name_planes(m)
    m.fix("xmin")
    m.add(fem.NodalForce("xmax", (1.0, 0.0, 0.0)))
    with pytest.raises(fem.MeshError) as info:
        fem.solve(m, backend="numpy")
    assert labels_in(str(info.value), "degenerate") == {50, 60, 70}


def test_connectivity_outside_the_nodes_api():
    with pytest.raises(fem.MeshError, match=r"element\(s\) 2 refer to undefined nodes"):
        fem.Model.from_arrays([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 1]],
                              [("tet4", [[0, 1, 2, 3], [1, 2, 3, 5]])])


# ------------------------------------------------------------------------------ constraints


def test_under_constrained_deck_names_the_free_motions(tmp_path):
    text = edit("LEFT, ENCASTRE", "LEFT, 1")
    err = deck_fault(tmp_path, text, fem.UnderConstrainedError, "translation y", solve=True)
    free = err.free_motions
    assert free[:2] == ["translation y", "translation z"]
    assert len(free) == 3 and free[2].startswith("rotation about x")
    assert not any("translation x" in f for f in free)


def test_unsupported_model_has_all_six_motions_free():
    m = hex_block((1, 1, 1), E=100.0, nu=0.3)
    with pytest.raises(fem.UnderConstrainedError) as info:
        fem.solve(m, backend="numpy")
    free = info.value.free_motions
    assert len(free) == 6
    assert [f.split(" through")[0] for f in free] == [
        "translation x", "translation y", "translation z",
        "rotation about x", "rotation about y", "rotation about z"]


def test_single_fixed_node_leaves_three_rotations_free():
    """Fewer constraint rows (3) than rigid-body modes (6): all three rotations stay free."""
    m = hex_block((2, 2, 2), E=100.0, nu=0.3)
    m.fix(np.array([0]))
    m.add(fem.NodalForce("xmax", (1.0, 0.0, 0.0)))
    with pytest.raises(fem.UnderConstrainedError) as info:
        fem.solve(m, backend="numpy", solver="direct")
    free = [f.split(" through")[0] for f in info.value.free_motions]
    assert free == ["rotation about x", "rotation about y", "rotation about z"]


def test_pinned_line_leaves_one_rotation_free():
    m = hex_block((2, 2, 2), E=100.0, nu=0.3)
    line = np.nonzero((m.points[:, 0] == 0) & (m.points[:, 2] == 0))[0]
    m.fix(line)
    with pytest.raises(fem.UnderConstrainedError) as info:
        fem.solve(m, backend="numpy")
    assert len(info.value.free_motions) == 1
    assert info.value.free_motions[0].startswith("rotation about y")


# ------------------------------------------------------------------------------ API targets


def test_unknown_set_names_api():
    m = hex_block((1, 1, 1), E=100.0, nu=0.3)
    with pytest.raises(fem.SetError, match="'top'"):
        m.fix("top")
    with pytest.raises(fem.SetError, match="'endplate'"):
        m.add(fem.Pressure("endplate", 1.0))
    with pytest.raises(fem.SetError, match="empty"):
        m.fix(np.array([], dtype=np.int64))
    with pytest.raises(fem.SetError, match="99"):
        m.fix(np.array([0, 99]))
    with pytest.raises(fem.SetError, match="'cortex'"):
        m.set_material("cortex", E=1.0, nu=0.3)


def test_empty_named_sets_api():
    m = hex_block((1, 1, 1), E=100.0, nu=0.3)
    m.add_node_set("none", [])
    m.add_face_set("nofaces", [], [])
    with pytest.raises(fem.SetError, match="'none'.*empty"):
        m.fix("none")
    with pytest.raises(fem.SetError, match="'nofaces'.*empty"):
        m.add(fem.Pressure("nofaces", 1.0))


@pytest.mark.parametrize("kwargs, what", [
    ({"solver": "lu"}, "'lu'"), ({"solver": "AMG "}, "'AMG '"), ({"backend": "torch"}, "'torch'"),
    ({"backend": "gpu"}, "'gpu'"), ({"rtol": 0.0}, "rtol"), ({"rtol": 1.0}, "rtol"),
    ({"rtol": -1e-6}, "rtol"), ({"rtol": float("nan")}, "rtol"), ({"rtol": 5.0}, "rtol"),
])
def test_bad_solver_options(kwargs, what):
    m = hex_block((1, 1, 1), E=100.0, nu=0.3).fix("xmin")
    with pytest.raises(fem.SolverError) as info:
        fem.solve(m, **kwargs)
    assert what in str(info.value)


def test_surface_elements_exported_beside_the_volume_get_a_hint(tmp_path):
    """gmsh writes CPS3/T3D2 blocks beside the C3D4 volume; the error says what to delete."""
    text = edit("*NSET, NSET=LEFT", "*ELEMENT, TYPE=CPS3, ELSET=Surface1\n"
                "20, 101, 102, 103\n*NSET, NSET=LEFT")
    deck_fault(tmp_path, text, fem.DeckError, "CPS3", "surface or line element",
               line=line_of(text, "*ELEMENT, TYPE=CPS3"))


# ------------------------------------------------------------------------------ readers that
# cannot crash (issue 17): inputs a fuzzer found that gave tracebacks


def test_symlink_loop_given_as_the_input(tmp_path):
    (tmp_path / "a.inp").symlink_to(tmp_path / "b.inp")
    (tmp_path / "b.inp").symlink_to(tmp_path / "a.inp")
    (tmp_path / "self.vtu").symlink_to(tmp_path / "self.vtu")
    with pytest.raises(fem.InputFileError, match=r"a\.inp: a loop of symbolic links"):
        fem.Model.from_inp(tmp_path / "a.inp")
    with pytest.raises(fem.InputFileError, match=r"self\.vtu: a loop of symbolic links"):
        fem.Model.from_file(tmp_path / "self.vtu", E=100, nu=0.3)


def test_symlink_loop_in_an_include(tmp_path):
    (tmp_path / "sets.inp").symlink_to(tmp_path / "sets.inp")
    text = edit("*MATERIAL", "*INCLUDE, INPUT=sets.inp\n*MATERIAL")
    deck_fault(tmp_path, text, fem.DeckError, "sets.inp", "loop of symbolic links",
               line=line_of(text, "*INCLUDE"))


def test_include_cycle_through_a_symlink(tmp_path):
    """The link resolves to the including deck: a cycle, however the file is named."""
    (tmp_path / "alias.inp").symlink_to(tmp_path / "deck.inp")
    text = edit("*MATERIAL", "*INCLUDE, INPUT=alias.inp\n*MATERIAL")
    deck_fault(tmp_path, text, fem.DeckError, "cycle", line=line_of(text, "*INCLUDE"))


def test_symlink_to_a_missing_file(tmp_path):
    (tmp_path / "gone.inp").symlink_to(tmp_path / "nowhere.inp")
    with pytest.raises(fem.InputFileError, match=r"gone\.inp: a symbolic link to a missing file"):
        fem.Model.from_inp(tmp_path / "gone.inp")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes on this platform")
def test_named_pipe_is_refused_not_read_forever(tmp_path):
    os.mkfifo(tmp_path / "pipe.inp")
    with pytest.raises(fem.InputFileError, match=r"pipe\.inp: not a regular file"):
        fem.Model.from_inp(tmp_path / "pipe.inp")


# a label field of each keyword that takes one, as (old text, new text with TOKEN)
LABEL_FIELDS = {
    "surface": ("*MATERIAL", "*SURFACE, NAME=TOP\nTOKEN, S2\n*MATERIAL"),
    "dload": ("*END STEP", "*DLOAD\nTOKEN, P1, 1.\n*END STEP"),
    "cload": ("RIGHT, 1, 2.5", "TOKEN, 1, 2.5"),
    "boundary": ("LEFT, ENCASTRE", "LEFT, ENCASTRE\nTOKEN, 1, 3"),
    "nset": ("109, 110, 111, 112", "109, 110, TOKEN, 112"),
    "elset": ("*MATERIAL", "*ELSET, ELSET=E2\n7, TOKEN\n*MATERIAL"),
    "node": ("110, 2, 1, 0", "TOKEN, 2, 1, 0"),
    "element": ("3, 102, 109", "TOKEN, 102, 109"),
    "element node": ("3, 102, 109", "3, TOKEN, 109"),
}


@pytest.mark.parametrize("token", ["7\u00b9", "\u00b9", "\u0663", "\uff17"],
                         ids=["7-superscript-1", "superscript-1", "arabic-indic-3", "fullwidth-7"])
@pytest.mark.parametrize("field", list(LABEL_FIELDS))
def test_label_written_with_other_digits(tmp_path, field, token):
    """'¹' passes str.isdigit() and int() refuses it; '٣' and '７' pass int() and float() as 3
    and 7. A label is ASCII digits: each is an error at its line, never a traceback or a
    silently different label."""
    old, new = LABEL_FIELDS[field]
    text = edit(old, new.replace("TOKEN", token))
    err = deck_fault(tmp_path, text, fem.DeckError, repr(token)[1:-1],
                     line=line_of(text, token))
    assert "not a number" in str(err) or "digits 0-9" in str(err), str(err)


@pytest.mark.parametrize("token", ["99999999999999999999", "2147483648", "00000",
                                   "9" * 5000],  # int() refuses more than 4300 digits
                         ids=["beyond-int64", "beyond-int32", "zero", "5000-digits"])
@pytest.mark.parametrize("field", list(LABEL_FIELDS))
def test_label_out_of_range_in_every_label_field(tmp_path, field, token):
    old, new = LABEL_FIELDS[field]
    text = edit(old, new.replace("TOKEN", token))
    err = deck_fault(tmp_path, text, fem.DeckError, line=line_of(text, token))
    msg = str(err)
    assert "positive integer label (1..2147483647)" in msg or "not a finite number" in msg, msg


@pytest.mark.parametrize("old, new, what", [
    ("1000., 0.3", "1_000., 0.3", "'1_000.' is not a number"),  # float() takes it as 1000
    ("1000., 0.3", "\u0661000., 0.3", "is not a number"),
    ("111, 2, 0, 1", "111, 2, \u0660, 1", "is not a number"),
    ("RIGHT, 1, 2.5", "RIGHT, 1, 2\u0665", "is not a number"),
])
def test_numbers_written_with_other_digits(tmp_path, old, new, what):
    text = edit(old, new)
    deck_fault(tmp_path, text, fem.DeckError, what, line=line_of(text, new))


ORTHO = "*ELASTIC, TYPE=ENGINEERING CONSTANTS\n{}, {}, {}, {}, {}, {}, {}, {}\n{}"


@pytest.mark.parametrize("constants, what", [
    ((1e300, 1e-300, 1000, .3, .3, .3, 400, 400, 400), "not positive definite"),  # was LinAlgError
    ((1000, 1e-320, 1000, .3, .3, .3, 400, 400, 400), "not positive definite"),
    ((1e-320, 1e-320, 1e-320, 0, 0, 0, 400, 400, 400), "beyond double precision"),
    ((1000, 1000, 1000, 0, 0, 0, 400, 1e-320, 400), "beyond double precision"),
    ((1e308, 1e308, 1e308, 0.45, 0.45, 0.45, 1e308, 1e308, 1e308), "beyond double precision"),
    ((1000, 1000, 1000, 1e300, .3, .3, 400, 400, 400), "not positive definite"),
    ((1000, 1000, 1000, .3, .3, .3, 400, 400, "1e309"), "not a finite number"),
])
def test_extreme_orthotropic_constants_in_a_deck(tmp_path, constants, what):
    text = edit("*ELASTIC\n1000., 0.3", ORTHO.format(*constants))
    finite = what != "not a finite number"
    deck_fault(tmp_path, text, fem.DeckError, what, *(["BONE"] if finite else []),
               line=line_of(text, "*ELASTIC") + (1 if finite else 2))


def test_orthotropic_constants_that_read_but_cannot_be_solved_are_refused(tmp_path):
    """Moduli of 1e308 make a positive definite, finite compliance and stiffness (the reader
    keeps them); the solve refuses them as beyond what double precision carries."""
    text = edit("*ELASTIC\n1000., 0.3",
                ORTHO.format(1e308, 1e308, 1e308, .3, .3, .3, 1e308, 1e308, 1e308))
    deck_fault(tmp_path, text, fem.ModelError, "1e+308", solve=True)


def _edited_vtu(tmp_path, edit_mesh):
    """The result written by vertebra-fem's own writer after ``edit_mesh(mesh)``."""
    from fem.io.atomic import write_vtu

    mesh = orthotropic_result().to_meshio()
    edit_mesh(mesh)
    return write_vtu(tmp_path / "edited.vtu", mesh)


def test_orthotropic_vtu_reads_back():
    r = orthotropic_result()
    assert r.model.orthotropic_mask().tolist() == [True, False]


def _set_cell(name, f):
    def edit_mesh(mesh):
        mesh.cell_data[name] = [f(np.asarray(a)) for a in mesh.cell_data[name]]
    return edit_mesh


@pytest.mark.parametrize("edit_mesh, what", [
    (_set_cell("orthotropic", lambda a: a[:, :8]), "'orthotropic' of cell block 0 (hexahedron) "
                                                   "has shape (2, 8), expected (2, 9)"),
    (_set_cell("orthotropic", lambda a: a[:, :3]), "shape (2, 3), expected (2, 9)"),
    # 18 values per cell reshaped to 9 would have read the right count of wrong rows
    (_set_cell("orthotropic", lambda a: np.hstack([a, a])), "shape (2, 18), expected (2, 9)"),
    (_set_cell("orthotropic", lambda a: a[:, 0]), "shape (2,), expected (2, 9)"),
    (_set_cell("E", lambda a: np.column_stack([a, a])), "'E' of cell block 0 (hexahedron) has "
                                                        "shape (2, 2), expected (2,)"),
    (_set_cell("region", lambda a: a + 7), "code 8 of element 1 is not -1 (none) or a "
                                           "region the field data names (0..1)"),
    (_set_cell("region", lambda a: a - 0.5), "code 0.5 of element 1"),
    (_set_cell("element_id", lambda a: a + 0.5), "element label 1.5 is not an integer"),
    (_set_cell("element_id", lambda a: a * 1e30), "element label 1e+30 is not an integer"),
    (lambda mesh: mesh.point_data.__setitem__("node_id", mesh.point_data["node_id"] * 0.5),
     "node label 0.5 is not an integer"),
    (lambda mesh: mesh.point_data.__setitem__(
        "node_id", np.column_stack([mesh.point_data["node_id"]] * 2)),
     "point data 'node_id' has shape (12, 2), expected (12,)"),
], ids=["ortho-8", "ortho-3", "ortho-18", "ortho-1d", "E-2", "region-7", "region-half",
        "element-id-half", "element-id-1e30", "node-id-half", "node-id-2"])
def test_vtu_with_malformed_cell_data(tmp_path, edit_mesh, what):
    """A VTU written by vertebra-fem whose fields were edited: a MeshError naming the file, the
    field and the shape; never a reshape error or a silently misread material."""
    path = _edited_vtu(tmp_path, edit_mesh)
    with pytest.raises(fem.MeshError) as info:
        fem.Model.from_file(path)
    msg = str(info.value)
    assert msg.startswith(str(path)) and what in msg, msg


def test_vtu_with_extreme_orthotropic_constants(tmp_path):
    def edit_mesh(mesh):
        c = np.asarray(mesh.cell_data["orthotropic"][0]).copy()
        c[0, :3] = 1e-320  # subnormal moduli: their compliance is infinite
        c[0, 3:6] = 0.0
        mesh.cell_data["orthotropic"] = [c]

    path = _edited_vtu(tmp_path, edit_mesh)
    with pytest.raises(fem.MaterialError, match=r"edited\.vtu: .*beyond double precision.*"
                                                r"element\(s\) 1;"):
        fem.Model.from_file(path)
