"""The ``vfem`` command line: the output contract of DESIGN.md and the bad-input contract.

The solved deck is a uniform stretch (symmetry planes on three faces, a prescribed displacement on
the fourth) of a distorted hex block made of two materials in layers y < 1 and y > 1 with the same
nu: the exact solution is a linear displacement field, so every output field has a closed form.
Node and element labels are sparse and the deck lists them in a shuffled order, so the check that
the VTU keeps the deck's order is not trivial.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import meshio
import numpy as np
import pytest

import fem
from fem.cli import main
from fem.meshes.blocks import hex_block

SIZE = (3.0, 2.0, 2.0)
STRETCH = 0.006  # mm at x = 3
MATS = {"SOFT": (150.0, 0.3), "HARD": (4500.0, 0.3)}
CONTRACT_POINT = {"displacement": 3, "node_id": 1}
CONTRACT_CELL = {"element_id": 1, "stress": 6, "strain": 6, "von_mises": 1,
                 "principal_stress": 3, "strain_energy_density": 1, "E": 1, "nu": 1, "region": 1}


def stretch_deck(folder: Path, name: str = "stretch.inp") -> dict:
    """Write the deck; return what the test needs to check the output (in deck order)."""
    base = hex_block((3, 2, 2), SIZE)
    rng = np.random.default_rng(11)
    n, ne = base.n_nodes, base.n_elements
    # distort in x and z only: the layer interface y = 1 stays a plane normal to y
    pts = base.points.copy()
    for a in (0, 2):
        inner = (pts[:, a] > 0) & (pts[:, a] < SIZE[a])
        pts[inner, a] += rng.uniform(-0.3, 0.3, inner.sum())
    pnode, pelem = rng.permutation(n), rng.permutation(ne)
    inv = np.empty(n, np.int64)
    inv[pnode] = np.arange(n)
    pts = pts[pnode]
    conn = inv[base.blocks[0].conn[pelem]]
    nid = rng.choice(np.arange(1, 10**5), n, replace=False)
    eid = rng.choice(np.arange(1, 10**5), ne, replace=False)
    centroid_y = pts[conn].mean(1)[:, 1]
    soft = centroid_y < SIZE[1] / 2

    def lines(labels):
        return "\n".join(", ".join(str(v) for v in labels[i:i + 8])
                         for i in range(0, len(labels), 8))

    rows = [f"{e}, " + ", ".join(str(v) for v in nid[c]) for e, c in zip(eid, conn)]
    half = ne // 2
    planes = {"XMIN": (0, 0.0), "YMIN": (1, 0.0), "ZMIN": (2, 0.0), "XMAX": (0, SIZE[0])}
    text = ["*HEADING", "uniform stretch of two layers", "** units mm, N, MPa", "*NODE"]
    text += [f"{i}, {x:.17g}, {y:.17g}, {z:.17g}" for i, (x, y, z) in zip(nid, pts)]
    text += ["*ELEMENT, TYPE=C3D8, ELSET=ALL"] + rows[:half]
    text += ["*ELEMENT, TYPE=C3D8, ELSET=ALL"] + rows[half:]
    text += ["*ELSET, ELSET=SOFT", lines(eid[soft]), "*ELSET, ELSET=HARD", lines(eid[~soft])]
    for pname, (a, v) in planes.items():
        text += [f"*NSET, NSET={pname}", lines(nid[np.abs(pts[:, a] - v) < 1e-12])]
    for mname, (E, nu) in MATS.items():
        text += [f"*MATERIAL, NAME=M_{mname}", "*ELASTIC", f"{E}, {nu}",
                 f"*SOLID SECTION, ELSET={mname}, MATERIAL=M_{mname}"]
    text += ["*STEP", "*STATIC", "*BOUNDARY", "XMIN, XSYMM", "YMIN, YSYMM", "ZMIN, ZSYMM",
             f"XMAX, 1, 1, {STRETCH}", "*NODE PRINT, NSET=XMAX", "U", "*EL PRINT, ELSET=ALL", "S",
             "*END STEP"]
    path = folder / name
    path.write_text("\n".join(text) + "\n")
    E = np.where(soft, MATS["SOFT"][0], MATS["HARD"][0])
    return {"path": path, "nid": nid, "eid": eid, "points": pts, "conn": conn, "E": E,
            "nu": np.full(ne, 0.3), "soft": soft}


def check_contract(out: Path, deck: dict, atol: float = 1e-10) -> None:
    mesh = meshio.read(out)
    n, ne = len(deck["nid"]), len(deck["eid"])
    for name, k in CONTRACT_POINT.items():
        assert name in mesh.point_data, name
        a = np.asarray(mesh.point_data[name])
        assert a.reshape(n, -1).shape == (n, k) and len(a) == n, (name, a.shape)
    cd = {name: np.concatenate([np.asarray(v) for v in mesh.cell_data[name]])
          for name in CONTRACT_CELL if name in mesh.cell_data}
    assert set(cd) == set(CONTRACT_CELL)
    for name, k in CONTRACT_CELL.items():
        assert cd[name].reshape(ne, -1).shape == (ne, k) and len(cd[name]) == ne, name

    # the deck's node and element order, with the deck's labels and coordinates
    assert mesh.point_data["node_id"].ravel().tolist() == deck["nid"].tolist()
    assert cd["element_id"].ravel().tolist() == deck["eid"].tolist()
    np.testing.assert_allclose(mesh.points, deck["points"], rtol=0, atol=1e-14)
    assert [c.type for c in mesh.cells] == ["hexahedron"] * len(mesh.cells)
    np.testing.assert_array_equal(np.vstack([c.data for c in mesh.cells]), deck["conn"])

    # the exact uniform-strain solution
    eps, nu = STRETCH / SIZE[0], 0.3
    x = deck["points"]
    u = np.asarray(mesh.point_data["displacement"])
    np.testing.assert_allclose(u, np.column_stack([eps * x[:, 0], -nu * eps * x[:, 1],
                                                   -nu * eps * x[:, 2]]), atol=atol * 1e3 * eps)
    E = deck["E"]
    strain = np.tile([eps, -nu * eps, -nu * eps, 0, 0, 0], (ne, 1))
    stress = np.zeros((ne, 6))
    stress[:, 0] = E * eps
    np.testing.assert_allclose(cd["strain"], strain, atol=atol * eps * 1e3)
    np.testing.assert_allclose(cd["stress"], stress, atol=atol * E.max() * eps * 1e3)
    np.testing.assert_allclose(cd["von_mises"].ravel(), E * eps, rtol=1e-6)
    np.testing.assert_allclose(cd["principal_stress"], np.column_stack([E * eps, 0 * E, 0 * E]),
                               atol=atol * E.max() * eps * 1e3)
    np.testing.assert_allclose(cd["strain_energy_density"].ravel(), 0.5 * E * eps**2, rtol=1e-6)
    np.testing.assert_array_equal(cd["E"].ravel(), E)
    np.testing.assert_array_equal(cd["nu"].ravel(), deck["nu"])
    region = cd["region"].ravel()
    assert len(np.unique(region[deck["soft"]])) == 1 and len(np.unique(region[~deck["soft"]])) == 1
    assert region[deck["soft"]][0] != region[~deck["soft"]][0]
    names = {int(np.ravel(v)[0]): k.split(": ", 1)[1] for k, v in mesh.field_data.items()
             if k.startswith("region ")}
    assert names[region[deck["soft"]][0]] == "SOFT" and names[region[~deck["soft"]][0]] == "HARD"


def run_cli(capsys, argv) -> tuple[int, str, str]:
    rc = main(argv)
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


# ------------------------------------------------------------------------------ success


def test_solve_writes_the_contract_fields_in_deck_order(tmp_path, capsys):
    deck = stretch_deck(tmp_path)
    outdir = tmp_path / "out"
    outdir.mkdir()
    out = outdir / "result.vtu"
    rc, stdout, err = run_cli(capsys, ["solve", str(deck["path"]), "--out", str(out)])
    assert rc == 0, err
    assert "Traceback" not in stdout + err
    assert sorted(os.listdir(outdir)) == ["result.vtu"]
    check_contract(out, deck)


@pytest.mark.parametrize("extra", [["--backend", "numpy"],
                                   ["--backend", "numpy", "--rtol", "1e-11", "--solver", "amg"],
                                   ["--rtol", "1e-11", "--solver", "cg"]],
                         ids=["numpy", "numpy-amg-rtol", "cg-rtol"])
def test_solve_options(tmp_path, capsys, extra):
    deck = stretch_deck(tmp_path)
    out = tmp_path / "r.vtu"
    rc, _, err = run_cli(capsys, ["solve", str(deck["path"]), "--out", str(out), *extra])
    assert rc == 0, err
    check_contract(out, deck, atol=1e-7 if "--solver" in extra else 1e-10)


def test_loose_rtol_gives_a_looser_answer(tmp_path, capsys):
    """--rtol reaches the iterative solver: 1e-2 leaves an error that 1e-11 does not."""
    deck = stretch_deck(tmp_path)
    errs = []
    for rtol in ("1e-2", "1e-11"):
        out = tmp_path / f"r{rtol}.vtu"
        rc, _, err = run_cli(capsys, ["solve", str(deck["path"]), "--out", str(out),
                                      "--backend", "numpy", "--solver", "cg", "--rtol", rtol])
        assert rc == 0, err
        u = meshio.read(out).point_data["displacement"]
        x = deck["points"]
        eps = STRETCH / SIZE[0]
        exact = np.column_stack([eps * x[:, 0], -0.3 * eps * x[:, 1], -0.3 * eps * x[:, 2]])
        errs.append(np.abs(u - exact).max() / STRETCH)
    assert errs[1] < 1e-8 < errs[0]


def test_console_script_in_a_real_process(tmp_path):
    deck = stretch_deck(tmp_path)
    out = tmp_path / "proc.vtu"
    script = Path(sys.executable).with_name("vfem")
    cmd = [str(script)] if script.exists() else [sys.executable, "-m", "fem.cli"]
    proc = subprocess.run(cmd + ["solve", str(deck["path"]), "--out", str(out), "--backend",
                                 "numpy"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    check_contract(out, deck)


def test_module_entry_point_reports_bad_input(tmp_path):
    bad = tmp_path / "bad.inp"
    bad.write_text("*HEADING\nx\n*NODE\n1, 0, 0, 0\n*FOO\n")
    out = tmp_path / "bad.vtu"
    proc = subprocess.run([sys.executable, "-m", "fem.cli", "solve", str(bad), "--out", str(out)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [proc.stderr.strip()]
    assert proc.stderr.startswith("error: ") and "*FOO" in proc.stderr and "line 5" in proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    assert not out.exists()


def test_example_command(tmp_path, capsys):
    from fem.meshes.example import example_deck

    out = tmp_path / "x.vtu"
    rc, stdout, err = run_cli(capsys, ["example", "--out", str(out)])
    assert rc == 0, err
    assert sorted(os.listdir(tmp_path)) == ["x.vtu"]
    mesh = meshio.read(out)
    model = fem.Model.from_inp(example_deck())
    assert mesh.point_data["node_id"].ravel().tolist() == model.node_ids.tolist()
    ids = np.concatenate([np.asarray(v).ravel() for v in mesh.cell_data["element_id"]])
    assert ids.tolist() == model.element_ids.tolist()
    assert set(CONTRACT_CELL) <= set(mesh.cell_data)
    u = mesh.point_data["displacement"]
    assert u.shape == (model.n_nodes, 3) and np.isfinite(u).all() and np.abs(u).max() > 0


# ------------------------------------------------------------------------------ bad input


def _deck_edit(folder, old, new):
    deck = stretch_deck(folder)
    text = deck["path"].read_text()
    assert old in text
    text = text.replace(old, new, 1)
    deck["path"].write_text(text)
    line = next(i + 1 for i, ln in enumerate(text.splitlines()) if new.split("\n")[0] in ln)
    return deck["path"], [deck["path"].name, f"line {line}"]


def _first_element(folder):
    deck = stretch_deck(folder)
    return deck, f"{deck['eid'][0]}, " + ", ".join(str(v) for v in deck["nid"][deck["conn"][0]])


def case_missing(folder):
    return folder / "absent.inp", ["absent.inp", "no such file"]


def case_directory(folder):
    d = folder / "adir.inp"
    d.mkdir()
    return d, ["adir.inp", "folder"]


def case_empty(folder):
    p = folder / "empty.inp"
    p.write_text("")
    return p, ["empty.inp", "empty"]


def case_binary(folder):
    p = folder / "blob.inp"
    p.write_bytes(b"\x7fELF\x00\x00" + np.random.default_rng(0).bytes(2000))
    return p, ["blob.inp", "binary"]


def case_unsupported_keyword(folder):
    return _deck_edit(folder, "*STATIC", "*DYNAMIC")


def case_plastic(folder):
    path, frags = _deck_edit(folder, "*SOLID SECTION, ELSET=SOFT",
                             "*PLASTIC\n*SOLID SECTION, ELSET=SOFT")
    return path, frags + ["*PLASTIC"]


def case_undefined_node(folder):
    deck, row = _first_element(folder)
    nodes = [str(v) for v in deck["nid"][deck["conn"][0]]]
    bad = f"{deck['eid'][0]}, " + ", ".join(nodes[:3] + ["777777"] + nodes[4:])
    path, frags = _deck_edit(folder, row, bad)
    return path, frags + [f"element {deck['eid'][0]}", "777777"]


def case_inverted(folder):
    deck, row = _first_element(folder)
    nodes = deck["nid"][deck["conn"][0]]
    flipped = f"{deck['eid'][0]}, " + ", ".join(str(v) for v in np.r_[nodes[4:], nodes[:4]])
    path, _ = _deck_edit(folder, row, flipped)
    return path, ["inverted", str(deck["eid"][0])]


def case_under_constrained(folder):
    path, _ = _deck_edit(folder, "YMIN, YSYMM\n", "")
    return path, ["under-constrained", "translation y"]


def case_bad_nu(folder):
    path, frags = _deck_edit(folder, "4500.0, 0.3", "4500.0, 0.5")
    return path, frags + ["Poisson"]


def case_negative_E(folder):
    path, frags = _deck_edit(folder, "150.0, 0.3", "-150.0, 0.3")
    return path, frags + ["Young"]


def case_nan_coordinate(folder):
    deck = stretch_deck(folder)
    text = deck["path"].read_text().splitlines()
    i = text.index("*NODE") + 3
    label = text[i].split(",")[0]
    text[i] = f"{label}, nan, 0, 0"
    deck["path"].write_text("\n".join(text) + "\n")
    return deck["path"], [deck["path"].name, f"line {i + 1}", "'nan'"]


def case_missing_include(folder):
    path, frags = _deck_edit(folder, "*STEP", "*INCLUDE, INPUT=loads/missing.inp\n*STEP")
    return path, frags + ["missing.inp"]


def case_unknown_set(folder):
    path, frags = _deck_edit(folder, "XMAX, 1, 1,", "TOP, 1, 1,")
    return path, frags + ["'TOP'"]


def case_conflict(folder):
    path, _ = _deck_edit(folder, "ZMIN, ZSYMM", "ZMIN, ZSYMM\nXMAX, 1, 1, 0.5")
    return path, ["conflicting", "(x)"]


def case_corrupt_mesh_file(folder):
    p = folder / "mesh.vtu"
    p.write_bytes(np.random.default_rng(2).bytes(500))
    return p, ["mesh.vtu"]


def case_reader_crash(folder):
    """An empty *NODE block (the deck's only one): IndexError in the reader, see test_bad_input."""
    deck = stretch_deck(folder)
    text = deck["path"].read_text()
    head, rest = text.split("*NODE\n", 1)
    text = head + "*NODE\n" + rest[rest.index("*ELEMENT"):]
    deck["path"].write_text(text)
    return deck["path"], [deck["path"].name]


CASES = [case_missing, case_directory, case_empty, case_binary, case_unsupported_keyword,
         case_plastic, case_undefined_node, case_inverted, case_under_constrained, case_bad_nu,
         case_negative_E, case_nan_coordinate, case_missing_include, case_unknown_set,
         case_conflict, case_corrupt_mesh_file, case_reader_crash]


@pytest.mark.parametrize("case", CASES, ids=[c.__name__[5:] for c in CASES])
def test_bad_input_exit_2_one_line_no_output(tmp_path, capsys, case):
    src = tmp_path / "in"
    src.mkdir()
    path, fragments = case(src)
    outdir = tmp_path / "out"
    outdir.mkdir()
    out = outdir / "result.vtu"
    rc, stdout, err = run_cli(capsys, ["solve", str(path), "--out", str(out), "--backend", "numpy",
                                       "--E", "100", "--nu", "0.3"])
    assert rc == 2
    assert "Traceback" not in stdout + err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for frag in fragments:
        assert frag in lines[0], (frag, lines[0])
    assert not out.exists()
    assert os.listdir(outdir) == []


@pytest.mark.parametrize("argv_tail, fragment", [
    (["--rtol", "0"], "rtol"), (["--rtol", "1.5"], "rtol"), (["--rtol=-1e-6"], "rtol"),
])
def test_bad_rtol(tmp_path, capsys, argv_tail, fragment):
    deck = stretch_deck(tmp_path)
    out = tmp_path / "r.vtu"
    rc, _, err = run_cli(capsys, ["solve", str(deck["path"]), "--out", str(out), *argv_tail])
    assert rc == 2 and err.count("\n") == 1 and err.startswith("error: ") and fragment in err
    assert not out.exists()


@pytest.mark.parametrize("name, fragment", [("result.vtk", ".vtu"), ("nodir/result.vtu", "nodir")])
def test_bad_output_path(tmp_path, capsys, name, fragment):
    deck = stretch_deck(tmp_path)
    out = tmp_path / name
    rc, _, err = run_cli(capsys, ["solve", str(deck["path"]), "--out", str(out)])
    assert rc == 2 and err.count("\n") == 1 and err.startswith("error: ") and fragment in err
    assert not out.exists()


@pytest.mark.parametrize("args, fragment", [(["--backend", "torch"], "torch"),
                                            (["--solver", "lu"], "lu"),
                                            (["--rtol", "tight"], "tight")])
def test_bad_option_values_are_usage_errors(tmp_path, args, fragment):
    """argparse rejects them with status 2 and its usage text; never a traceback or output."""
    deck = stretch_deck(tmp_path)
    out = tmp_path / "r.vtu"
    proc = subprocess.run([sys.executable, "-m", "fem.cli", "solve", str(deck["path"]), "--out",
                           str(out), *args], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stdout + proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert "error:" in last and fragment in last
    assert not out.exists()


# ------------------------------------------------------------------ mesh files with CLI loads


def _gmsh_block(folder: Path) -> Path:
    """A hex8 block as a gmsh file: physical volume 'bone', physical surfaces 'bottom', 'top'."""
    m = hex_block((2, 2, 4), (2.0, 2.0, 4.0))
    conn = m.blocks[0].conn
    faces = {}
    for name in ("zmin", "zmax"):
        fs = m.face_sets[name]
        faces[name] = np.array([conn[e][list(m.blocks[0].etype.faces[f])] for e, f in
                                zip(fs.elements, fs.faces)])
    mesh = meshio.Mesh(
        m.points,
        [("quad", faces["zmin"]), ("quad", faces["zmax"]), ("hexahedron", conn)],
        cell_data={"gmsh:physical": [np.full(len(faces["zmin"]), 1), np.full(len(faces["zmax"]), 2),
                                     np.full(len(conn), 3)],
                   "gmsh:geometrical": [np.ones(len(faces["zmin"]), int),
                                        np.full(len(faces["zmax"]), 2), np.ones(len(conn), int)]},
        field_data={"bottom": np.array([1, 2]), "top": np.array([2, 2]),
                    "bone": np.array([3, 3])})
    path = folder / "block.msh"
    meshio.write(path, mesh, file_format="gmsh22", binary=False)
    return path


def test_mesh_file_supported_only_along_z_is_refused(tmp_path, capsys):
    """Fixing only z on the bottom face leaves x, y translations and the rotation about z free."""
    msh = _gmsh_block(tmp_path)
    out = tmp_path / "bar.vtu"
    rc, _, err = run_cli(capsys, ["solve", str(msh), "--out", str(out), "--E", "200",
                                  "--nu", "0.25", "--fix", "bottom:z", "--pressure", "top=2"])
    assert rc == 2 and err.count("\n") == 1
    assert "under-constrained" in err and "translation x" in err and "rotation about z" in err
    assert not out.exists()


def test_mesh_file_solved_from_options(tmp_path, capsys):
    msh = _gmsh_block(tmp_path)
    out = tmp_path / "bar.vtu"
    rc, stdout, err = run_cli(capsys, ["solve", str(msh), "--out", str(out), "--E", "200",
                                       "--nu", "0.0", "--fix", "bottom", "--force",
                                       "top=0,0,-8"])
    assert rc == 0, err
    res = meshio.read(out)
    u = res.point_data["displacement"]
    top = np.isclose(res.points[:, 2], 4.0)
    # nu = 0: the fixed bottom face adds no lateral constraint; sigma_zz = -8 N / 4 mm^2
    assert np.allclose(u[top, 2], -2.0 * 4.0 / 200.0, rtol=1e-9)
    assert np.allclose(np.concatenate(res.cell_data["stress"])[:, 2], -2.0, rtol=1e-9)


@pytest.mark.parametrize("opt, value, fragment", [("--pressure", "top", "FACESET"),
                                                  ("--force", "top=1,2", "FACESET=Fx,Fy,Fz"),
                                                  ("--displace", "nosuch=0,0,0", "nosuch"),
                                                  ("--fix", "bottom:q", "dofs")])
def test_bad_load_options_are_one_line_errors(tmp_path, capsys, opt, value, fragment):
    msh = _gmsh_block(tmp_path)
    out = tmp_path / "x.vtu"
    rc, _, err = run_cli(capsys, ["solve", str(msh), "--out", str(out), "--E", "200",
                                  "--nu", "0.3", opt, value])
    assert rc == 2
    assert err.count("\n") == 1 and err.startswith("error: ")
    assert fragment in err or fragment.lower() in err.lower()
    assert not out.exists()


def _vfem_limited(args, fsize: int):
    """vfem in a child process whose files may not grow beyond ``fsize`` bytes (a full disk, as
    the writer sees it: the write fails with EFBIG; SIGXFSZ ignored so the process lives on)."""
    import resource
    import signal

    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))

    return subprocess.run([sys.executable, "-m", "fem.cli", *map(str, args)],
                          capture_output=True, text=True, preexec_fn=limit, timeout=120,
                          env=dict(os.environ, OMP_NUM_THREADS="1"))


def test_a_full_disk_during_the_vtu_write_leaves_nothing_behind(tmp_path):
    """The VTU cannot be written whole: one error line naming the output file (not a hidden
    temporary), exit 2, and no temporary left in the folder."""
    m = hex_block((8, 8, 8), (4.0, 4.0, 4.0), E=100.0, nu=0.3)
    m.add(fem.Fixed("zmin"), fem.Pressure("zmax", 1.0))
    deck = m.write_inp(tmp_path / "block.inp")
    out = tmp_path / "out"
    out.mkdir()
    proc = _vfem_limited(["solve", deck, "--out", out / "block.vtu"], fsize=20_000)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("error: cannot write ") and proc.stderr.count("\n") == 1
    assert str(out / "block.vtu") in proc.stderr and "Traceback" not in proc.stderr
    assert list(out.iterdir()) == []


def test_an_output_that_cannot_be_written_is_refused_before_the_solve(tmp_path, capsys):
    """--out names a folder: refused at once (it was found only after the whole solve)."""
    m = hex_block((2, 2, 2), E=100.0, nu=0.3)
    m.add(fem.Fixed("zmin"), fem.Pressure("zmax", 1.0))
    deck = m.write_inp(tmp_path / "block.inp")
    (tmp_path / "taken.vtu").mkdir()
    assert main(["solve", str(deck), "--out", str(tmp_path / "taken.vtu")]) == 2
    err = capsys.readouterr()
    assert "taken.vtu: it is a folder" in err.err and "solved" not in err.out
