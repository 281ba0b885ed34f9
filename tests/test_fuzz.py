"""Property tests of the deck and mesh readers (hypothesis).

(a) Mutated decks -- lines deleted, duplicated, swapped, tokens replaced, garbage and random
    keywords inserted, bytes flipped -- raise nothing but fem.ModelError subclasses, when read and
    when solved. Any other exception type is a bug in the reader or the checks. Two seed decks
    between them hold every keyword and keyword option the reader accepts (checked below), so
    that each keyword's data lines are mutated, not only inserted bare.
(b) Generated valid models survive Model -> to_inp -> from_inp: nodes, labels, connectivity,
    sets, materials and the compiled loads and supports are the same.
(c) A result written by vertebra-fem with its fields mutated (shapes, dtypes, special values)
    reads as a model or raises a fem.ModelError, and so does its solve.

Runs are derandomised so that CI sees the same examples every time.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fem
from decks import TWO_HEX_NODES
from fem.meshes.blocks import hex_block, tet_block
from fem.system import compile_conditions
from verification_models import orthotropic_result

VALID = """\
*HEADING
fuzz seed deck
""" + TWO_HEX_NODES + """\
*ELEMENT, TYPE=C3D8, ELSET=EALL
7, 101, 102, 103, 104, 105, 106, 107, 108
3, 102, 109, 110, 103, 106, 111, 112,
107
*INCLUDE, INPUT=sets.inc
*ELSET, ELSET=FIRST, GENERATE
3, 7, 4
*SURFACE, NAME=TOP, TYPE=ELEMENT
EALL, S2
*MATERIAL, NAME=BONE
*ELASTIC
1000., 0.3
*SOLID SECTION, ELSET=EALL,
MATERIAL=BONE
*STEP
*STATIC
*BOUNDARY
LEFT, ENCASTRE
RIGHT, 3, 3, -0.001
*CLOAD
RIGHT, 1, 2.5
*DLOAD
7, P6, 0.1
*DSLOAD
TOP, P, 0.2
*NODE PRINT, NSET=NALL
U
*END STEP
"""
INCLUDED = "*NSET, NSET=LEFT\n101, 104, 105, 108\n*NSET, NSET=RIGHT\n109, 110, 111, 112\n"

# the keywords and options VALID lacks: engineering constants (in cylindrical axes), plasticity,
# increments, OP=NEW, every output request
VALID_MATERIALS = """\
*HEADING
fuzz seed deck: orthotropic and plastic materials, increments, every output request
""" + TWO_HEX_NODES + """\
*ELEMENT, TYPE=C3D8, ELSET=OR
7, 101, 102, 103, 104, 105, 106, 107, 108
*ELEMENT, TYPE=C3D8, ELSET=PL
3, 102, 109, 110, 103, 106, 111, 112, 107
*ELSET, ELSET=EALL
OR, PL
*NSET, NSET=LEFT
101, 104, 105, 108
*NSET, NSET=RIGHT, GENERATE
109, 112, 1
*SURFACE, NAME=TOP, TYPE=ELEMENT
7, S2
PL, S2
*MATERIAL, NAME=ORTHO
*ELASTIC, TYPE=ENGINEERING CONSTANTS
1987., 1357., 4730., 0.31, 0.12, 0.07, 520., 910.
760.
*MATERIAL, NAME=STEEL
*ELASTIC, TYPE=ISOTROPIC
1000., 0.3
*PLASTIC, HARDENING=ISOTROPIC
20., 0.
30., 0.1
*ORIENTATION, NAME=CYL, SYSTEM=CYLINDRICAL
-5., -5., 0., -5., -5., 1.
*SOLID SECTION, ELSET=OR, MATERIAL=ORTHO, ORIENTATION=CYL
*SOLID SECTION, ELSET=PL, MATERIAL=STEEL
*STEP, NLGEOM=NO
*STATIC, DIRECT
0.25, 1., 0.1, 0.5
*BOUNDARY, OP=NEW
LEFT, 1, 3
101, PINNED
*CLOAD, OP=NEW
RIGHT, 1, 2.5
112, 3, -0.5
*DLOAD, OP=NEW
PL, P6, 0.1
*DSLOAD, OP=NEW
TOP, P, 0.2
*NODE PRINT, NSET=NALL
U
*EL PRINT, ELSET=EALL
S
*NODE FILE
U
*EL FILE
S
*OUTPUT, FIELD
*NODE OUTPUT
U
*ELEMENT OUTPUT
S
*END STEP
"""
SEEDS = {"VALID": VALID, "VALID_MATERIALS": VALID_MATERIALS}

TOKENS = ["", " ", "*", "**", ",", "=", "0", "-1", "1e30", "99999999999999999999", "nan", "inf",
          "-inf", "1e-320", "1e308", "0.5", "-0", "+3", "3.", "1D2", "abc", "P7", "S9", "P1", "S4",
          "GENERATE", "ENCASTRE", "XSYMM", "EALL", "NALL", "LEFT", "RIGHT", "TOP", "BONE", "7",
          "101", "112", "999", "C3D4", "C3D10", "C3D20", "TYPE=C3D4", "NSET=X", "ELSET=Y",
          '"', "'", "\t", "é", "\x01", "OP=NEW", "NLGEOM", "INPUT=sets.inc", "INPUT=nothere.inp",
          "INPUT=deck.inp", "INPUT=.", "1, 2, 3", "3, 1",
          # found by a longer run (issue 17): digits int() refuses or reads as other numbers,
          # and more digits than int() converts
          "\u00b9", "7\u00b9", "\u0663", "\uff17", "1_000", "9" * 5000, "1e309", "2147483648",
          "TYPE=ENGINEERING CONSTANTS", "HARDENING=KINEMATIC", "DIRECT", "OR", "PL", "ORTHO",
          "SYSTEM=CYLINDRICAL", "SYSTEM=RECTANGULAR", "ORIENTATION=CYL", "ORIENTATION=NONE",
          "-5., -5., 0., -5., -5., 0."]
KEYWORDS = ["*NODE", "*NODE, NSET=N2", "*ELEMENT, TYPE=C3D4", "*ELEMENT, TYPE=C3D10, ELSET=T",
            "*ELEMENT, TYPE=C3D8", "*ELEMENT", "*NSET, NSET=LEFT", "*NSET, NSET=Z, GENERATE",
            "*ELSET, ELSET=EALL", "*ELSET, ELSET=Q, GENERATE", "*MATERIAL, NAME=M2", "*ELASTIC",
            "*ELASTIC, TYPE=ISO", "*SOLID SECTION, ELSET=EALL, MATERIAL=M2", "*STEP", "*STATIC",
            "*END STEP", "*BOUNDARY", "*BOUNDARY, OP=NEW", "*CLOAD", "*CLOAD, OP=NEW", "*DLOAD",
            "*DSLOAD", "*SURFACE, NAME=TOP", "*SURFACE, NAME=S, TYPE=NODE", "*INCLUDE",
            "*INCLUDE, INPUT=sets.inc", "*INCLUDE, INPUT=deck.inp", "*INCLUDE, INPUT=missing.inp",
            "*HEADING", "*PLASTIC", "*DYNAMIC", "*FOO", "*", "*NODE PRINT", "*EL FILE",
            "*OUTPUT, FIELD", "*EQUATION", "*AMPLITUDE, NAME=A",
            "*ELASTIC, TYPE=ENGINEERING CONSTANTS", "*PLASTIC, HARDENING=ISOTROPIC",
            "*STATIC, DIRECT", "*STEP, NLGEOM", "*SOLID SECTION, ELSET=OR, MATERIAL=ORTHO",
            "*EL PRINT", "*NODE FILE", "*NODE OUTPUT", "*ELEMENT OUTPUT",
            "*ORIENTATION, NAME=CYL, SYSTEM=CYLINDRICAL", "*ORIENTATION, NAME=R",
            "*SOLID SECTION, ELSET=OR, MATERIAL=ORTHO, ORIENTATION=CYL"]

#: FEM_FUZZ_SCALE multiplies every example count: 1 in CI (fixed, derandomised examples); a
#: longer, randomised run (bench/fuzz.py) sets it higher
SCALE = max(1, int(os.environ.get("FEM_FUZZ_SCALE", "1")))
FUZZ = settings(max_examples=2000 * SCALE, deadline=None, derandomize=SCALE == 1,
                database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.filter_too_much])


@pytest.fixture(scope="module")
def fuzz_dir(tmp_path_factory):
    """One folder per module: hypothesis reuses it across examples (tmp_path is per test)."""
    d = tmp_path_factory.mktemp("fuzz")
    (d / "sets.inc").write_text(INCLUDED)
    return d


def read_and_solve(path: Path) -> None:
    """Only fem.ModelError may come out (the property); other exceptions propagate."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            model = fem.Model.from_inp(path)
            fem.solve(model, backend="numpy", solver="direct")
        except fem.ModelError as exc:
            assert str(exc).strip(), "a ModelError needs a message"


@pytest.mark.parametrize("seed", list(SEEDS))
def test_the_seed_deck_is_valid(fuzz_dir, seed):
    """The unmutated decks read and solve, so the mutations start from working models."""
    p = fuzz_dir / "deck.inp"
    p.write_text(SEEDS[seed])
    model = fem.Model.from_inp(p)
    r = fem.solve(model, backend="numpy", solver="direct")
    assert model.n_elements == 2
    assert len(model.conditions) == (5 if seed == "VALID" else 6)
    np.testing.assert_allclose(r.reaction_total() + r.applied_total(), 0.0, atol=1e-9)
    if seed == "VALID_MATERIALS":
        assert model.orthotropic_mask().tolist() == [True, False]
        assert model.plastic_mask().tolist() == [False, True]
        assert model.metadata["static"]["direct"]


def _keywords(text: str) -> set[str]:
    return {" ".join(ln[1:].split(",")[0].split()).upper() for ln in text.splitlines()
            if ln.startswith("*") and not ln.startswith("**")}


def test_the_fuzz_covers_every_keyword_the_reader_accepts():
    """Each accepted keyword is in a seed deck (its data lines get mutated) and in KEYWORDS
    (inserted anywhere); a keyword added to the reader must be added here."""
    from fem.io.inp import KNOWN

    in_seeds = set().union(*(_keywords(t) for t in SEEDS.values())) | _keywords(INCLUDED)
    assert KNOWN <= in_seeds, sorted(KNOWN - in_seeds)
    assert KNOWN <= _keywords("\n".join(KEYWORDS)), sorted(KNOWN - _keywords("\n".join(KEYWORDS)))


line_ops = st.one_of(
    st.tuples(st.just("delete"), st.integers(0, 10**6)),
    st.tuples(st.just("duplicate"), st.integers(0, 10**6), st.integers(0, 10**6)),
    st.tuples(st.just("swap"), st.integers(0, 10**6), st.integers(0, 10**6)),
    st.tuples(st.just("token"), st.integers(0, 10**6), st.integers(0, 20),
              st.sampled_from(TOKENS) | st.text(max_size=6)),
    st.tuples(st.just("keyword"), st.integers(0, 10**6), st.sampled_from(KEYWORDS),
              st.sampled_from(["", ", OP=NEW", ",", ", GENERATE", ", NAME=TOP", ", =", ", X"])),
    st.tuples(st.just("garbage"), st.integers(0, 10**6), st.text(max_size=20)),
    st.tuples(st.just("chars"), st.integers(0, 10**6), st.integers(0, 80),
              st.sampled_from(TOKENS) | st.text(max_size=4)),
)


def mutate(lines: list[str], ops) -> list[str]:
    lines = list(lines)
    for op in ops:
        if not lines:
            lines = [""]
        n = len(lines)
        kind, i = op[0], op[1] % n
        if kind == "delete":
            del lines[i]
        elif kind == "duplicate":
            lines.insert(op[2] % (n + 1), lines[i])
        elif kind == "swap":
            j = op[2] % n
            lines[i], lines[j] = lines[j], lines[i]
        elif kind == "token":
            toks = lines[i].split(",")
            toks[op[2] % len(toks)] = op[3]
            lines[i] = ",".join(toks)
        elif kind == "keyword":
            lines.insert(i, op[2] + op[3])
        elif kind == "garbage":
            lines.insert(i, op[2])
        else:
            p = op[2] % (len(lines[i]) + 1)
            lines[i] = lines[i][:p] + op[3] + lines[i][p:]
    return lines


@pytest.mark.parametrize("seed", list(SEEDS))
@settings(FUZZ, max_examples=700 * SCALE)  # per seed deck
@given(ops=st.lists(line_ops, min_size=1, max_size=5))
def test_mutated_decks_raise_only_model_errors(fuzz_dir, seed, ops):
    p = fuzz_dir / "deck.inp"
    p.write_text("\n".join(mutate(SEEDS[seed].splitlines(), ops)) + "\n", encoding="utf-8",
                 errors="surrogatepass")
    read_and_solve(p)


byte_ops = st.one_of(
    st.tuples(st.just("insert"), st.integers(0, 10**6), st.binary(min_size=1, max_size=8)),
    st.tuples(st.just("flip"), st.integers(0, 10**6), st.integers(1, 255)),
    st.tuples(st.just("truncate"), st.integers(0, 10**6)),
    st.tuples(st.just("cut"), st.integers(0, 10**6), st.integers(1, 40)),
)


@settings(FUZZ, max_examples=400 * SCALE)
@given(ops=st.lists(byte_ops, min_size=1, max_size=4))
def test_byte_mutations_raise_only_model_errors(fuzz_dir, ops):
    p = fuzz_dir / "bytes.inp"
    p.write_bytes(mutate_bytes(VALID.encode(), ops))
    read_and_solve(p)


def mutate_bytes(data: bytes, ops) -> bytes:
    """``data`` with the :data:`byte_ops` applied: bytes inserted, flipped, cut or truncated."""
    data = bytearray(data)
    for op in ops:
        i = op[1] % (len(data) + 1)
        if op[0] == "insert":
            data[i:i] = op[2]
        elif op[0] == "flip" and i < len(data):
            data[i] ^= op[2]
        elif op[0] == "truncate":
            del data[i:]
        elif op[0] == "cut":
            del data[i:i + op[2]]
    return bytes(data)


# ------------------------------------------------------------------------------ round trip

NAME = st.from_regex(r"[A-Za-z][A-Za-z0-9_]{0,8}(/[a-z]{1,6})?", fullmatch=True)


def _unique_names(names, taken):
    out, seen = [], {t.upper() for t in taken}
    for n in names:
        u = n.upper()
        if u in seen or u in ("NALL", "EALL") or u.startswith("VFEM"):
            continue
        seen.add(u)
        out.append(n)
    return out


@st.composite
def models(draw):
    etype = draw(st.sampled_from(["hex8", "tet4", "tet10"]))
    hi = 2 if etype == "tet10" else 3
    shape = tuple(draw(st.integers(1, hi)) for _ in range(3))
    size = tuple(draw(st.sampled_from([0.5, 1.0, 2.5, 7.0])) for _ in range(3))
    distort = draw(st.sampled_from([0.0, 0.2]))
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    if etype == "hex8":
        base = hex_block(shape, size, distort=distort, seed=seed)
    else:
        base = tet_block(shape, size, order=2 if etype == "tet10" else 1, distort=distort,
                         seed=seed)
    # shuffle node and element order and give them sparse, unsorted labels
    n, ne = base.n_nodes, base.n_elements
    pnode, pelem = rng.permutation(n), rng.permutation(ne)
    inv = np.empty(n, np.int64)
    inv[pnode] = np.arange(n)
    conn = inv[base.blocks[0].conn[pelem]]
    node_ids = rng.choice(10**6, n, replace=False) + 1
    elem_ids = rng.choice(10**6, ne, replace=False) + 1
    m = fem.Model.from_arrays(base.points[pnode], [(etype, conn)], node_ids=node_ids,
                              element_ids=elem_ids)
    einv = np.empty(ne, np.int64)
    einv[pelem] = np.arange(ne)
    for name, nodes in base.node_sets.items():
        m.add_node_set(name, inv[nodes])
    for name, fs in base.face_sets.items():
        m.add_face_set(name, einv[fs.elements], fs.faces)

    taken = list(m.node_sets)
    for name in _unique_names(draw(st.lists(NAME, max_size=3)), taken):
        m.add_node_set(name, rng.choice(n, rng.integers(1, n + 1), replace=False))
    for name in _unique_names(draw(st.lists(NAME, max_size=3)), []):
        m.add_region(name, rng.choice(ne, rng.integers(1, ne + 1), replace=False))

    if draw(st.booleans()):
        m.set_material(None, E=rng.uniform(10, 20000, ne), nu=rng.uniform(-0.5, 0.49, ne))
    else:
        m.set_material(None, E=float(rng.uniform(10, 20000)), nu=0.3)
    for name in list(m.regions)[: draw(st.integers(0, len(m.regions)))]:
        m.set_material(name, E=float(rng.uniform(10, 20000)), nu=float(rng.uniform(0, 0.45)))

    m.fix("zmin", draw(st.sampled_from(["xyz", "z", "xz"])))
    m.add(fem.Displacement("zmax", (draw(st.sampled_from([None, 0.01])), None, -0.02)))
    m.add(fem.NodalForce("ymax", (0.0, float(rng.normal()), 1.0)))
    m.add(fem.Pressure("xmax", float(rng.uniform(-1, 1))))
    return m


def _labelled_sets(model):
    nodes = {k: sorted(model.node_ids[v].tolist()) for k, v in model.node_sets.items()
             if k.upper() != "NALL"}
    regions = {k: sorted(model.element_ids[v].tolist()) for k, v in model.regions.items()
               if k.upper() != "EALL" and not k.upper().startswith("VFEM")}
    faces = {k: sorted(zip(model.element_ids[f.elements].tolist(), f.faces.tolist()))
             for k, f in model.face_sets.items()}
    return nodes, regions, faces


@settings(max_examples=60 * SCALE, deadline=None, derandomize=SCALE == 1, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(model=models())
def test_to_inp_from_inp_round_trip(fuzz_dir, model):
    path = model.to_inp(fuzz_dir / "round.inp")
    back = fem.Model.from_inp(path)
    assert back.node_ids.tolist() == model.node_ids.tolist()
    assert back.element_ids.tolist() == model.element_ids.tolist()
    np.testing.assert_allclose(back.points, model.points, rtol=1e-13, atol=1e-13)
    assert [b.type for b in back.blocks] == [b.type for b in model.blocks]
    for a, b in zip(back.blocks, model.blocks):
        assert np.array_equal(back.node_ids[a.conn], model.node_ids[b.conn])
    n0, r0, f0 = _labelled_sets(model)
    n1, r1, f1 = _labelled_sets(back)
    assert {k: v for k, v in n1.items() if k in n0} == n0
    assert {k: v for k, v in r1.items() if k in r0} == r0
    assert f1 == f0
    np.testing.assert_allclose(back.E, model.E, rtol=1e-13)
    np.testing.assert_allclose(back.nu, model.nu, rtol=1e-13, atol=1e-15)
    s0, s1 = compile_conditions(model), compile_conditions(back)
    assert np.array_equal(s0.fixed_dofs, s1.fixed_dofs)
    np.testing.assert_allclose(s1.fixed_values, s0.fixed_values, atol=1e-15)
    np.testing.assert_allclose(s1.f, s0.f, rtol=1e-12, atol=1e-12 * np.abs(s0.f).max())


# ------------------------------------------------------------------------------ mesh files

FIELDS = ["element_id", "E", "nu", "region", "orthotropic", "node_id"]
SPECIAL = [np.nan, np.inf, -np.inf, 0.0, -1.0, 0.5, 7.0, 1e30, 1e308, 1e-320, 2.0**63,
           -(2.0**63), 2.0**53 + 1]
field_ops = st.one_of(
    st.tuples(st.just("drop"), st.sampled_from(FIELDS)),
    st.tuples(st.just("width"), st.sampled_from(FIELDS), st.integers(0, 19)),
    st.tuples(st.just("value"), st.sampled_from(FIELDS), st.integers(0, 10**6),
              st.sampled_from(SPECIAL) | st.floats()),
    st.tuples(st.just("dtype"), st.sampled_from(FIELDS),
              st.sampled_from(["int8", "uint64", "int32", "float32"])),
    st.tuples(st.just("name"), st.integers(-2, 10**6),
              st.text(st.characters(blacklist_categories=("Cs",)), max_size=8)),
)


@pytest.fixture(scope="module")
def result_mesh():
    """A solved block, orthotropic in one region and isotropic in the other, as
    :meth:`fem.Result.to_meshio` gives it to the VTU writer."""
    return orthotropic_result().to_meshio()


def mutate_fields(mesh, ops):
    """A copy of ``mesh`` with its label, material and region fields mutated."""
    import meshio

    point = {k: np.asarray(v) for k, v in mesh.point_data.items()}
    cell = {k: np.asarray(v[0]) for k, v in mesh.cell_data.items()}
    names = dict(mesh.field_data)
    for op in ops:
        if op[0] == "name":
            names[f"region {op[1]}: {op[2]}"] = np.array([0])
            continue
        data = point if op[1] == "node_id" else cell
        if op[1] not in data:
            continue
        a = data[op[1]]
        if op[0] == "drop":
            del data[op[1]]
        elif op[0] == "width":  # 0: one value per item, else that many columns
            col = a.reshape(len(a), -1)
            data[op[1]] = col[:, 0] if op[2] == 0 else np.resize(col, (len(a), op[2]))
        elif op[0] == "value":
            b = a.astype(float)
            b.flat[op[2] % b.size] = op[3]
            data[op[1]] = b
        else:
            with np.errstate(all="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                data[op[1]] = a.astype(op[2])
    return meshio.Mesh(mesh.points, mesh.cells, point_data=point,
                       cell_data={k: [v] for k, v in cell.items()}, field_data=names)


@settings(FUZZ, max_examples=150 * SCALE)
@given(ops=st.lists(field_ops, min_size=1, max_size=4))
def test_mutated_result_files_raise_only_model_errors(fuzz_dir, result_mesh, ops):
    """A VTU written by vertebra-fem, its fields mutated: read (and solved) or a ModelError."""
    from fem.io.atomic import write_vtu

    path = write_vtu(fuzz_dir / "result.vtu", mutate_fields(result_mesh, ops), compression=None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            model = fem.Model.from_file(path)
            if np.isnan(model.E).any():
                model.set_material(None, E=100.0, nu=0.3)
            x = model.points[:, 0]
            model.fix(np.nonzero(x == x.min())[0])
            model.add(fem.NodalForce(np.nonzero(x == x.max())[0], (1.0, 0.0, 0.0)))
            fem.solve(model, backend="numpy", solver="direct")
        except fem.ModelError as exc:
            assert str(exc).strip(), "a ModelError needs a message"
