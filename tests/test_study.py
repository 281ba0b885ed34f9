"""Studies: specs checked before any run, the SQLite store, resume after SIGKILL, failed runs,
two processes on one folder, and bad input (issue 6, deliverables 1, 3, 4 and 7).

The fault tests run the real ``vfem study`` in subprocesses and really kill or race them; they
wait by polling the store, never by sleeping a fixed time. Runs are small (4 mm voxels, the direct
solver: about half a second each) so the file stays well under a minute and a half on two cores.
"""

from __future__ import annotations

import io
import itertools
import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import fem
from fem.cli import main
from fem.meshes.ssm import data_folder as ssm_data_folder
from fem.study import (
    PARAMETERS,
    RESULT_COLUMNS,
    SCHEMA_VERSION,
    SpecError,
    Store,
    Study,
    StudySpec,
    run_id,
)
from fem.study.spec import CEMENT_ONLY, CEMENT_PROCEDURES, FRACTURE_ONLY, PUSHOVER_ONLY

_EXE = Path(sys.executable).with_name("vfem")
VFEM = [str(_EXE)] if _EXE.exists() else [sys.executable, "-m", "fem.cli"]
# one BLAS/OpenMP thread per process: the tests share two cores between xdist workers
ENV = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
HOST = socket.gethostname()

# 4 runs (2 done, 2 failed). The pvp run asks for more cement than L2 takes (fails at run time,
# every time); the bmd-60 run fails only because the test puts a folder where its VTU goes (a
# transient fault that --retry-failed gets past once the folder is gone).
FINISHED_SPEC = """\
# a small study whose runs finish in about a second
[study]
name = "faults"

[base]
levels = "L1-L2"
voxel_size = 4.0
solver = "direct"

[[runs]]
procedure = "intact"

[[runs]]
procedure = "intact"
load_case = "flexion"

[[runs]]
procedure = "pvp"
treated_level = "L2"
cement_volume_ml = 15.0

[[runs]]
procedure = "intact"
bmd = 60.0
"""

# runs that all succeed, for the kill and race tests: 4 by default
GRID_SPEC = """\
[study]
name = "{name}"

[base]
levels = "{levels}"
voxel_size = 4.0
solver = "direct"

[grid]
bmd = {bmd}
load_case = {load_cases}
"""


def grid_spec(path, name, bmd=(60.0, 80.0), load_cases=("standing", "flexion"),
              levels="L1-L2"):
    path.write_text(GRID_SPEC.format(name=name, bmd=list(bmd), levels=levels,
                                     load_cases=json.dumps(list(load_cases))))
    return path


LEVELS = ("L1", "L2")


def vfem(*args, timeout=180):
    return subprocess.run([*VFEM, *map(str, args)], capture_output=True, text=True, env=ENV,
                          timeout=timeout)


def connect(folder) -> sqlite3.Connection:
    """A plain SQLite connection (not the Store: the tests look at the file as it is)."""
    db = sqlite3.connect(Path(folder) / "study.sqlite", timeout=60.0)
    db.row_factory = sqlite3.Row
    return db


def runs_table(folder) -> dict:
    db = connect(folder)
    try:
        return {r["run_id"]: dict(r) for r in db.execute("SELECT * FROM runs")}
    finally:
        db.close()


def metrics_count(folder) -> dict:
    db = connect(folder)
    try:
        return dict(db.execute("SELECT run_id, COUNT(*) FROM metrics GROUP BY run_id"))
    finally:
        db.close()


def integrity(folder) -> str:
    db = connect(folder)
    try:
        return db.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        db.close()


def temporaries(folder) -> list:
    return sorted(p.name for p in (Path(folder) / "runs").glob(".*part*"))


def check_vtus(folder, done: set):
    """Every VTU present reads back whole, and every done run has one."""
    import meshio

    files = {p.stem: p for p in (Path(folder) / "runs").glob("*.vtu") if p.is_file()}
    assert done <= set(files)
    for p in files.values():
        m = meshio.read(p)
        assert len(m.points) > 0 and "displacement" in m.point_data


def copy_study(src, dst) -> Path:
    """A copy of a closed study. SQLite's -wal and -shm files are left out: another xdist
    worker reading the shared study creates them and removes them when it closes, and a copy
    that met one vanishing failed (their content is in study.sqlite once the writer closed)."""
    import shutil

    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("*-wal", "*-shm"))
    return Path(dst)


def ids_of(spec_path) -> list[str]:
    return [run_id(p) for p in StudySpec.from_toml(spec_path).expand()]


@pytest.fixture(scope="session")
def finished(tmp_path_factory):
    """A study run once by ``vfem study``: 2 runs done, 2 failed (read-only for the tests; copy
    it to change it). Made once per session, shared by the xdist workers under a file lock."""
    import fcntl

    base = tmp_path_factory.getbasetemp()
    root = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "study-finished"
    root.mkdir(exist_ok=True)
    spec, out, record = root / "faults.toml", root / "study", root / "proc.json"
    with open(root / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not record.exists():
            spec.write_text(FINISHED_SPEC)
            (out / "runs" / f"{ids_of(spec)[3]}.vtu").mkdir(parents=True)
            proc = vfem("study", spec, "--out", out)
            record.write_text(json.dumps({"returncode": proc.returncode, "stdout": proc.stdout,
                                          "stderr": proc.stderr}))
    proc = subprocess.CompletedProcess(VFEM, **json.loads(record.read_text()))
    return {"spec": spec, "out": out, "ids": ids_of(spec), "proc": proc}


# ---------------------------------------------------------------------- 1. specs

CANON_TOML = """\
# comments and blank lines before the tables, and comments after table headers

[study]   # the study
name = "same"

[base]    # every run
levels = "L1-L2"
voxel_size = 3
fracture_level = "L2"

[grid]
load_case = ["standing", "flexion"]

[[runs]]
procedure = "intact"

[[runs]]
procedure = "pvp"
cement_volume_ml = 4.0
approach = "unipedicular"
"""
CANON_DICT = {
    "study": {"name": "same"},
    "grid": {"load_case": ["standing", "flexion"]},
    "runs": [{"procedure": "intact"},
             {"approach": "unipedicular", "cement_volume_ml": 4, "procedure": "pvp"}],
    "base": {"fracture_level": "L2", "voxel_size": 3.0, "levels": "L1-L2"},
}


def test_toml_and_dict_give_the_same_runs_and_ids(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text(CANON_TOML)
    a = StudySpec.from_toml(path).expand()
    b = StudySpec.from_dict(CANON_DICT).expand()
    assert len(a) == 4
    assert a == b
    assert [run_id(p) for p in a] == [run_id(p) for p in b]
    assert all(set(p) == set(PARAMETERS) for p in a)
    assert all(type(p["voxel_size"]) is float and p["voxel_size"] == 3.0 for p in a)


def test_fracture_compaction_builds_a_mass_conserving_fracture():
    """``fracture_compaction`` (default "band" since 2026-12-06) hands ``conserve_mass`` to the
    fracture, with the exponent of the run's own density law, and ``fracture_damage`` (default
    the measured :data:`~fem.meshes.pathology.CRUSHED_MODULUS_RATIO`) its band's modulus ratio;
    "none" with 0.2 is the fracture before that date, and its runs keep their old ids."""
    from fem.meshes.bone import get_law
    from fem.meshes.pathology import CRUSHED_MODULUS_RATIO
    from fem.study.recipe import build_model

    d = json.loads(json.dumps(CANON_DICT))
    d["base"].update(density_law="keller1994")
    p = next(q for q in StudySpec.from_dict(d).expand() if q["procedure"] == "pvp")
    assert p["fracture_compaction"] == "band"
    assert p["fracture_damage"] == PARAMETERS["fracture_damage"].default == CRUSHED_MODULUS_RATIO
    m = build_model(p)
    rec = m.metadata["densification"]["L2"]
    assert rec["compaction"] == "band" and rec["exponents"].max() == get_law("keller1994").c
    fr = m.metadata["fractures"][-1]
    assert fr.conserve_mass and fr.damage_factor == CRUSHED_MODULUS_RATIO
    assert fr.envelope == "compacted" and (rec["factors"] >= 1.0).all()
    assert build_model(dict(p, crushed_envelope="original")).metadata["fractures"][-1] \
        .envelope == "original"
    d["base"].update(fracture_compaction="none", fracture_damage=0.2)
    old = next(q for q in StudySpec.from_dict(d).expand() if q["procedure"] == "pvp")
    built = build_model(old)
    assert "densification" not in built.metadata
    assert built.metadata["fractures"][-1].damage_factor == 0.2
    assert run_id(old) == run_id({k: v for k, v in old.items()
                                  if k not in ("fracture_compaction", "fracture_damage")})
    assert run_id(old) != run_id(old | {"fracture_damage": CRUSHED_MODULUS_RATIO})
    # the spec's choices are the library's (the spec module imports neither)
    from fem.augment import CRUSHED_PERMEABILITIES
    from fem.meshes.pathology import ENVELOPES

    assert tuple(PARAMETERS["crushed_envelope"].choices) == ENVELOPES
    assert tuple(PARAMETERS["crushed_permeability"].choices) == CRUSHED_PERMEABILITIES
    for key, bad in (("fracture_compaction", "everywhere"), ("fracture_damage", 0.0),
                     ("crushed_envelope", "dense")):
        d["base"][key] = bad
        with pytest.raises(SpecError, match="must"):
            StudySpec.from_dict(d).expand()
        d["base"][key] = PARAMETERS[key].default


def test_the_shipped_canonical_study_asks_for_both_strengths():
    """examples/canonical_study.toml (the README's main job): 12 runs of the 2 mm L1-L3
    segment, each with the Pistoia strength of every level and the pushover of L2."""
    from fem.study.spec import strength_levels

    path = Path(__file__).resolve().parent.parent / "examples" / "canonical_study.toml"
    runs = StudySpec.from_toml(path).expand()
    assert len(runs) == 12
    assert {(p["procedure"], p["load_case"]) for p in runs} >= {("intact", "flexion"),
                                                                 ("pkp", "standing")}
    assert all(p["strength"] == "pushover" and strength_levels(p) == ["L2"] for p in runs)


def test_run_ids_are_stable_and_follow_every_parameter():
    base = StudySpec.from_dict(CANON_DICT).expand()
    ids = [run_id(p) for p in base]
    assert len(set(ids)) == len(ids) and all(len(i) == 12 and int(i, 16) >= 0 for i in ids)
    # the same runs listed another way: everything in [[runs]], keys in another order, a
    # one-value grid instead of a base value; runs listed in another order
    listed = {"study": {"name": "other-name"},
              "grid": {"levels": ["L1-L2"]},
              "runs": [{"load_case": lc, "cement_volume_ml": 4.0, "procedure": "pvp",
                        "fracture_level": "L2", "approach": "unipedicular", "voxel_size": 3.0}
                       for lc in ("flexion", "standing")]
                      + [{"voxel_size": 3.0, "procedure": "intact", "fracture_level": "L2",
                          "load_case": lc} for lc in ("flexion", "standing")]}
    assert sorted(run_id(p) for p in StudySpec.from_dict(listed).expand()) == sorted(ids)
    p = base[0]
    assert run_id(dict(reversed(list(p.items())))) == ids[0]
    # in another interpreter (another hash seed) too
    code = ("import json, sys; from fem.study import run_id; "
            "print(run_id(json.loads(sys.stdin.read())))")
    out = subprocess.run([sys.executable, "-c", code], input=json.dumps(p), capture_output=True,
                         text=True, env=dict(ENV, PYTHONHASHSEED="12345"), timeout=60)
    assert out.stdout.strip() == ids[0], out.stderr
    # any change of any parameter gives another id
    changed = {}
    assert p["strength"] == "pistoia"
    assert p["procedure"] not in CEMENT_PROCEDURES and p["procedure"] == "intact"
    for k, v in p.items():
        if k in PUSHOVER_ONLY:  # hashed only with a pushover: test_parameters_added_later_...
            continue
        if k in CEMENT_ONLY:  # hashed only with cement: test_parameters_added_later_...
            continue
        if k in FRACTURE_ONLY:  # hashed only with a fracture: test_parameters_added_later_...
            continue
        q = dict(p)
        q[k] = (not v) if isinstance(v, bool) else v + 1 if isinstance(v, (int, float)) \
            else v + "x"
        changed[k] = run_id(q)
    assert ids[0] not in changed.values()
    assert len(set(changed.values())) == len(PARAMETERS) - len({*PUSHOVER_ONLY, *CEMENT_ONLY,
                                                                *FRACTURE_ONLY})
    # and through a spec: one value changed in one run changes that run's id only
    d = json.loads(json.dumps(CANON_DICT))
    d["runs"][1]["cement_volume_ml"] = 4.5
    ids2 = [run_id(q) for q in StudySpec.from_dict(d).expand()]
    assert ids2[:2] == ids[:2] and not set(ids2[2:]) & set(ids)


def test_parameters_added_later_keep_the_ids_of_existing_stores():
    """``anatomy``, ``mesh`` and ``mesh_size`` at their defaults are left out of the hash: a run
    id is what it was before they existed; any other value changes it. ``load_line``'s default
    moved from "plate" to "space": a run on the old load keeps its old id, and one on the new
    default is a new run (a store computed before does not hand it the plate's answer). So did
    ``fracture_compaction`` ("none" to "band"), ``fracture_damage`` (0.2 to 0.14) and ``disc``
    ("isotropic" to "fibres") on 2026-12-06: a run on the old fracture or disc keeps its id, and
    ``pushover_end`` ("full" to "first_failure") and ``endplate_failure`` ("elastic" to
    "in_plane") on 2026-12-07: a pushover run to the full curve, or with elastic endplates,
    keeps its id, and a run without a pushover hashes without them, whatever they hold; so
    does ``first_failure_drop`` (0.1 to 0.02, the same day) and ``first_failure_offset`` (0, off,
    to 0.002, the same day). ``permeability_anisotropy`` (1, an isotropic cement front, to 2.05,
    the same day) is hashed only where cement goes in: a cement run of before keeps its id, one
    with the new front is a new run, and a run without cement keeps its id whatever it holds.
    ``fracture_anatomy`` ("intact" to "carried", the same evening) likewise only where a level
    is fractured. ``ligaments`` ("no" to "auto", the same night) resolves per run: a run without
    them keeps its id, and the parametric segment's run with the default is a new run."""
    import hashlib

    from fem.study.spec import ADDED_LATER, PUSHOVER_ONLY

    d_old = json.loads(json.dumps(CANON_DICT))
    d_old.setdefault("base", {}).update(load_line="plate", fracture_compaction="none",
                                        fracture_damage=0.2, disc="isotropic",
                                        permeability_anisotropy=1.0, fracture_anatomy="intact",
                                        ligaments="no")
    for p, q in zip(StudySpec.from_dict(d_old).expand(), StudySpec.from_dict(CANON_DICT).expand(),
                    strict=True):
        old = {k: v for k, v in p.items() if k not in ADDED_LATER}
        blob = json.dumps(old, sort_keys=True, separators=(",", ":"))
        assert run_id(p) == hashlib.sha256(blob.encode()).hexdigest()[:12]
        assert run_id(p) == run_id(old)
        assert q["load_line"] == "space" and run_id(q) != run_id(p)
        assert q["disc"] == "fibres"
        front = ({"permeability_anisotropy": 2.05} if q["procedure"] in CEMENT_PROCEDURES
                 else {})
        if q["procedure"] != "intact":
            front["fracture_anatomy"] = "carried"
        assert q["ligaments"] == "yes"
        assert run_id(q) == run_id(dict(old, load_line="space", fracture_compaction="band",
                                        fracture_damage=0.14, disc="fibres", ligaments="yes",
                                        **front))
        for k, v in {"anatomy": "ssm", "mesh": "tet10", "mesh_size": 4.0,
                     "strength": "pushover", "strength_levels": "all",
                     "fracture_compaction": "band", "fracture_damage": 0.14,
                     "disc": "fibres_undrained"}.items():
            assert run_id(dict(p, **{k: v})) != run_id(p), k
        assert PUSHOVER_ONLY == ("pushover_end", "endplate_failure", "first_failure_drop",
                                 "first_failure_offset")
        assert p["strength"] == "pistoia" and q["endplate_failure"] == "in_plane"
        assert run_id(dict(p, pushover_end="first_failure")) == run_id(p)
        assert run_id(dict(p, endplate_failure="in_plane")) == run_id(p)
        push = dict(old, strength="pushover")
        assert run_id(dict(push, pushover_end="full")) == run_id(push)
        assert run_id(dict(push, pushover_end="first_failure")) != run_id(push)
        assert run_id(dict(push, endplate_failure="elastic")) == run_id(push)
        assert run_id(dict(push, endplate_failure="in_plane")) != run_id(push)
        assert q["first_failure_drop"] == 0.02
        assert run_id(dict(p, first_failure_drop=0.02)) == run_id(p)
        assert run_id(dict(push, first_failure_drop=0.1)) == run_id(push)
        assert run_id(dict(push, first_failure_drop=0.02)) != run_id(push)
        assert q["first_failure_offset"] == 0.002
        assert run_id(dict(p, first_failure_offset=0.002)) == run_id(p)
        first = dict(push, pushover_end="first_failure")
        assert run_id(dict(first, first_failure_offset=0.0)) == run_id(first)
        assert run_id(dict(first, first_failure_offset=0.002)) != run_id(first)
        # a run that reads the full curve (pushover_end "full", or absent: a store of before)
        # hashes without the offset, which changes nothing there
        full = dict(push, pushover_end="full")
        assert run_id(dict(full, first_failure_offset=0.002)) == run_id(full) == run_id(push)
        assert run_id(dict(push, first_failure_offset=0.002)) == run_id(push)
        assert q["permeability_anisotropy"] == 2.05
        assert CEMENT_ONLY == ("permeability_anisotropy", "crushed_permeability")
        cem = dict(old, procedure="pvp")
        assert run_id(dict(cem, permeability_anisotropy=1.0)) == run_id(cem)
        assert run_id(dict(cem, permeability_anisotropy=2.05)) != run_id(cem)
        bare = dict(old, procedure="fractured")
        assert run_id(dict(bare, permeability_anisotropy=2.05)) == run_id(bare)
        assert q["fracture_anatomy"] == "carried"
        assert FRACTURE_ONLY == ("fracture_anatomy", "crushed_envelope", "crushed_permeability")
        assert run_id(dict(bare, fracture_anatomy="intact")) == run_id(bare)
        assert run_id(dict(bare, fracture_anatomy="carried")) != run_id(bare)
        assert run_id(dict(cem, fracture_anatomy="carried")) != run_id(cem)
        whole = dict(old, procedure="intact")
        assert run_id(dict(whole, fracture_anatomy="carried")) == run_id(whole)
        assert run_id(dict(bare, fracture_level="", fracture_anatomy="carried")) == \
            run_id(dict(bare, fracture_level=""))
        # crushed_envelope (added later, its default what every run had): hashed only where a
        # level is fractured and it is not the default
        assert q["crushed_envelope"] == "compacted"
        assert run_id(dict(bare, crushed_envelope="compacted")) == run_id(bare)
        assert run_id(dict(bare, crushed_envelope="original")) != run_id(bare)
        assert run_id(dict(whole, crushed_envelope="original")) == run_id(whole)
        # crushed_permeability: only where cement goes into a fractured level
        assert run_id(dict(cem, crushed_permeability="original")) != run_id(cem)
        assert run_id(dict(cem, crushed_permeability="compacted")) == run_id(cem)
        assert run_id(dict(bare, crushed_permeability="original")) == run_id(bare)
        assert run_id(dict(cem, fracture_level="", crushed_permeability="original")) == \
            run_id(dict(cem, fracture_level=""))
    # a spec without the strength keys and one giving their defaults: the same runs and ids
    d = json.loads(json.dumps(CANON_DICT))
    d.setdefault("base", {}).update(strength="pistoia", strength_levels="treated")
    assert ([run_id(q) for q in StudySpec.from_dict(d).expand()]
            == [run_id(q) for q in StudySpec.from_dict(CANON_DICT).expand()])


def test_a_runs_permeability_anisotropy_shapes_its_cement_front():
    """``permeability_anisotropy`` reaches ``fem.augment.pvp``: the run's model holds the cement
    that pvp places with it (the default 2.05, and 1, the isotropic front of before), and the
    two fronts differ."""
    from fem import augment
    from fem.study import recipe

    p = next(q for q in StudySpec.from_dict(CANON_DICT).expand() if q["procedure"] == "pvp")
    assert p["permeability_anisotropy"] == augment.PERMEABILITY_ANISOTROPY
    got = {}
    for a in (2.05, 1.0):
        m = recipe.build_model(dict(p, permeability_anisotropy=a))
        got[a] = np.sort(m.regions["L2/cement_composite"])
        base = recipe.build_model(dict(p, procedure="fractured", cement_volume_ml=0.0))
        ref = augment.pvp(base, "L2", 4.0, approach="unipedicular", permeability_anisotropy=a)
        assert np.array_equal(got[a], np.sort(ref.regions["L2/cement_composite"]))
    assert not np.array_equal(got[2.05], got[1.0])


def test_strength_levels_forms():
    """strength_levels: "treated" (treated_level, else fracture_level), "all", a TOML list or a
    comma-separated string, each stored as one string (so a run id hashes it as written)."""
    from fem.study.spec import strength_levels

    def run(**kw):
        base = {"levels": "L1-L3", "fracture_level": "L2", "strength": "pushover", **kw}
        (p,) = StudySpec.from_dict({"study": {"name": "s"}, "base": base}).expand()
        return p

    assert strength_levels(run()) == ["L2"]
    assert strength_levels(run(treated_level="L3", procedure="pvp")) == ["L3"]
    assert strength_levels(run(strength_levels="all")) == ["L1", "L2", "L3"]
    listed = run(strength_levels=["L3", "L1"])
    assert listed["strength_levels"] == "L3,L1" and strength_levels(listed) == ["L3", "L1"]
    assert run_id(listed) == run_id(run(strength_levels="L3,L1"))
    with pytest.raises(SpecError, match="needs a treated_level or a fracture_level"):
        StudySpec.from_dict({"study": {"name": "s"},
                             "base": {"levels": "L1-L3", "strength": "pushover"}}).expand()


def test_runs_solve_the_fibre_disc_by_default_and_a_single_level_plainly():
    """``disc``'s default is "fibres" (since 2026-12-06): a segment's run is ``fem.solve_disc``'s;
    a single level has no disc, and its run is the plain solve whatever ``disc`` says (the same
    rows as ``disc = "isotropic"``)."""
    from fem.study.recipe import execute

    def run(**base):
        (p,) = StudySpec.from_dict({"study": {"name": "d"},
                                    "base": {"voxel_size": 5.0, "solver": "direct", **base}
                                    }).expand()
        return p, execute(p)

    p, seg = run(levels="L1-L2")
    assert p["disc"] == "fibres" and seg["solver"].endswith("(fibre secant)")
    _, one = run(levels="L1")
    _, iso = run(levels="L1", disc="isotropic")
    assert one["solver"] == iso["solver"] == "direct"
    assert one["rows"] == iso["rows"]


def test_a_fibre_disc_run_writes_the_model_its_vtu_holds(tmp_path):
    """A fibre disc's run writes the fields of its converged secant model, whose annulus moduli
    are not the built model's: its model record must be that model's, or the report refuses the
    VTU as another model's (it did: the views of fibre-disc studies were left out)."""
    from fem.io.meshio_io import read_result_file
    from fem.io.record import mismatch, model_record, read_model_record
    from fem.study.recipe import build_model, execute, record_path

    base = {"levels": "L1-L2", "voxel_size": 5.0, "solver": "direct", "disc": "fibres"}
    (p,) = StudySpec.from_dict({"study": {"name": "disc"}, "base": base}).expand()
    vtu = tmp_path / "run.vtu"
    execute(p, str(vtu))
    model, _, _ = read_result_file(vtu)
    record = read_model_record(record_path(vtu))
    assert mismatch(model, record) is None
    assert model.orthotropic_mask().any()  # the annulus as solved, read back
    assert mismatch(model, model_record(build_model(p))) is not None  # what was written before


def test_a_fibre_disc_run_solves_and_pushes_over_the_fibre_disc(capsys):
    """``disc = "fibres"`` / ``"fibres_undrained"``: the run is ``fem.solve_disc``'s with the
    exact secant stiffness (the same rows as calling it so directly: every run of a study uses
    the same form), and its pushover starts from the converged secant model, the discs held at
    their state under the run's load (and runs: a damage solve beside orthotropic discs). The
    fibre disc loads the endplate harder than the solid default (docs/studies.md): a higher
    nucleus pressure and factor of risk; undrained, a higher pressure still."""
    from fem import metrics
    from fem.study.recipe import build_model, execute, pushover_model

    def run(disc, progress=False, **kw):
        base = {"levels": "L1-L2", "voxel_size": 4.0, "solver": "direct", "disc": disc, **kw}
        (p,) = StudySpec.from_dict({"study": {"name": "disc"}, "base": base}).expand()
        return p, {r["level"]: r for r in execute(p, progress=progress)["rows"]}

    p, fib = run("fibres", progress=True, strength="pushover", strength_levels="L1")
    # with progress, the pushover draws each of its steps and the force reached
    err = capsys.readouterr().err
    drawn = [int(n) for n in re.findall(r"pushover L1: (\d+) step", err)]
    assert drawn and max(drawn) >= 3 and drawn == sorted(drawn), err[-500:]
    assert re.search(r"pushover L1: \d+ step.*, \d+ N", err), err[-500:]
    model = build_model(p)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        direct = fem.solve_disc(model, solver="direct", coupling=True)
    want = metrics.level_metrics(direct).set_index("level")
    for col in ("disc_pressure_mpa", "strength_pistoia_n", "stiffness_n_per_mm"):
        assert fib["L1"][col] == pytest.approx(want.loc["L1", col], rel=1e-9), col
    assert pushover_model(model, direct) is direct.model
    assert pushover_model(model, fem.solve(model, solver="direct")) is model
    assert direct.model.orthotropic_mask()[direct.fibres.elements].all()
    assert fib["L1"]["strength_pushover_n"] > fib["L1"]["load_n"]
    assert fib["L1"]["pushover_peak_reached"] == 1.0
    _, iso = run("isotropic")
    _, und = run("fibres_undrained")
    assert fib["L1"]["disc_pressure_mpa"] > 1.3 * iso["L1"]["disc_pressure_mpa"]
    assert fib["L2"]["factor_of_risk"] > 1.2 * iso["L2"]["factor_of_risk"]
    assert und["L1"]["disc_pressure_mpa"] > fib["L1"]["disc_pressure_mpa"]
    with pytest.raises(SpecError, match="must be one of"):
        StudySpec.from_dict({"study": {"name": "d"}, "base": {"disc": "fibre"}}).expand()


def test_a_study_pushover_ends_at_the_first_failure_unless_asked_for_the_full_curve(tmp_path):
    """``pushover_end``: "first_failure" (the default) stops the pushover at the first step whose
    force falls ``first_failure_drop`` (2 %) below the running maximum (or where the curve
    flattens to a plateau: tests/test_nonlinear.py), so its strength is the first failure load
    (``strength_pushover_n`` = ``strength_first_peak_n``); "full" follows the same path past it
    (the same steps, force for force) and on until the force falls to 0.8 of its peak."""
    import numpy as np
    import pandas as pd

    from fem import metrics
    from fem.nonlinear import LIMIT_TANGENT, STOP_RATIO
    from fem.nonlinear_result import FIRST_PEAK_DROP
    from fem.strength import level_strength
    from fem.study.recipe import build_model, pushover_levels, pushover_stops

    curves, rows, direct = {}, {}, None
    for end in ("first_failure", "full"):
        base = {"levels": "L1", "voxel_size": 4.0, "solver": "direct", "strength": "pushover",
                "strength_levels": "L1", "pushover_end": end}
        (p,) = StudySpec.from_dict({"study": {"name": "end"}, "base": base}).expand()
        model = build_model(p)
        table = metrics.level_metrics(fem.solve(model, solver="direct"))
        pushover_levels(model, table, p, str(tmp_path / f"{end}.csv"))
        curves[end] = pd.read_csv(tmp_path / f"{end}.csv")["force_n"].to_numpy()
        rows[end] = table.set_index("level").loc["L1"]
        if end == "first_failure":  # the library's level strength is the study's
            direct = level_strength(model, "L1", backend=p["backend"])
    assert p["first_failure_drop"] == FIRST_PEAK_DROP == 0.02
    assert pushover_stops(dict(p, pushover_end="first_failure")) == {
        "stop_ratio": 1.0 - FIRST_PEAK_DROP, "stop_plateau": LIMIT_TANGENT}
    # a run recorded before the parameter existed stopped at a fall of a tenth
    assert pushover_stops({"pushover_end": "first_failure"})["stop_ratio"] == 0.9
    assert pushover_stops({"pushover_end": "full"}) == {"stop_ratio": STOP_RATIO}
    first, full = curves["first_failure"], curves["full"]
    top = np.maximum.accumulate(first)
    assert first[-1] < (1.0 - FIRST_PEAK_DROP) * top[-2]  # it stopped on a fall of 2 %,
    assert (first[:-1] >= (1.0 - FIRST_PEAK_DROP) * top[:-1]).all()  # the first one
    assert len(full) > len(first) and full[-1] < STOP_RATIO * full.max()
    np.testing.assert_allclose(full[:len(first)], first, rtol=1e-9)
    r = rows["first_failure"]
    assert r["pushover_peak_reached"] == 1.0 and r["strength_pushover_by"] == "fall"
    assert rows["full"]["strength_pushover_by"] == "fall"  # fell to 0.8 of its peak
    assert r["strength_pushover_n"] == r["strength_first_peak_n"] == pytest.approx(first.max())
    assert direct == pytest.approx(r["strength_pushover_n"], rel=1e-9)
    # the offset yield, read again from the curve written beside the run
    from fem.nonlinear_result import NonlinearResult, Step

    c = pd.read_csv(tmp_path / "full.csv")
    again = NonlinearResult([Step(int(s), 0.0, float(u), float(f), 1, 0.0, None) for s, u, f
                             in zip(c["step"], c["displacement_mm"], c["force_n"], strict=True)
                             if s > 0])
    h = 0.5 * (rows["full"]["height_anterior_mm"] + rows["full"]["height_posterior_mm"])
    oy = rows["full"]["strength_offset_yield_n"]
    assert oy == pytest.approx(again.offset_yield(0.002 * h), rel=1e-9)
    assert 0.0 < oy <= rows["full"]["strength_pushover_n"]
    assert rows["full"]["strength_first_peak_n"] == pytest.approx(r["strength_first_peak_n"])
    with pytest.raises(SpecError, match="must be one of"):
        StudySpec.from_dict({"study": {"name": "end"}, "base": {"pushover_end": "peak"}})


@pytest.mark.skipif(not (ssm_data_folder() / "L3.ply").is_file(),
                    reason="lumbar shape model data not found (set FEM_SSM_DATA)")
def test_a_shape_model_run_executes():
    """A spec can run the real anatomy: a fractured L3 of the mean L3-L4 (3 mm voxels)."""
    from fem.study.recipe import execute

    (p,) = StudySpec.from_dict({"study": {"name": "ssm"},
                                "base": {"anatomy": "ssm", "levels": "L3-L4", "voxel_size": 3.0,
                                         "procedure": "fractured", "fracture_level": "L3",
                                         "solver": "direct"}}).expand()
    out = execute(p)
    assert [r["level"] for r in out["rows"]] == ["L3", "L4"]
    assert all(r["stiffness_n_per_mm"] > 0 for r in out["rows"])
    assert out["rows"][0]["wedge_angle_deg"] > 5.0  # the wedge fracture is in


def test_grid_times_runs_expansion():
    spec = StudySpec.from_dict({
        "study": {"name": "count"},
        "base": {"levels": "L1-L3", "fracture_level": "L2"},
        "grid": {"load_case": ["standing", "flexion"], "bmd": [50.0, 70.0, 90.0]},
        "runs": [{"procedure": "intact"}, {"procedure": "fractured"},
                 {"procedure": "pvp", "cement_volume_ml": 2.0},
                 {"procedure": "intact"}]})  # a duplicate: runs once
    runs = spec.expand()
    assert len(runs) == 3 * 2 * 3
    assert len({run_id(p) for p in runs}) == len(runs)
    assert [p["procedure"] for p in runs[::6]] == ["intact", "fractured", "pvp"]
    assert {(p["load_case"], p["bmd"]) for p in runs} == {
        (lc, b) for lc in ("standing", "flexion") for b in (50.0, 70.0, 90.0)}
    assert len(StudySpec.from_dict({"study": {"name": "one"},
                                    "base": {"levels": "L1-L3"}}).expand()) == 1


# (case, TOML text with "# <-" on the line the error must name (None: no line), key, words)
BAD_SPECS = [
    ("unknown parameter", """\
[study]
name = "bad"

[[runs]]
procedure = "intact"

[[runs]]
procedure = "pvp"
treated_level = "L2"
cement_volum_ml = 4.0  # <-
""", "runs[1].cement_volum_ml", "unknown parameter"),
    ("unknown section", """\
[study]
name = "bad"

[bases]  # <-
levels = "L2"
""", "bases", "unknown section"),
    ("wrong type", """\
[study]
name = "bad"
[base]
levels = "L2"
voxel_size = "3"  # <-
""", "base.voxel_size", "must be float"),
    ("negative volume", """\
[study]
name = "bad"
[base]
levels = "L1-L2"
treated_level = "L1"

[[runs]]
procedure = "pvp"
cement_volume_ml = 2.0

[[runs]]
procedure = "pvp"
cement_volume_ml = -2.0  # <-
""", "runs[1].cement_volume_ml", "must lie in"),
    ("unknown choice in a grid", """\
[study]
name = "bad"
[grid]
bmd = [60.0, 80.0]
load_case = ["standing", "jumping"]  # <-
""", "grid.load_case", "must be one of"),
    ("unknown level", """\
[study]
name = "bad"
[base]
voxel_size = 3.0
levels = "L1-L9"  # <-
""", "base.levels", "unknown level"),
    ("fracture level outside the levels", """\
[study]
name = "bad"
[base]
levels = "L1-L2"
[[runs]]
procedure = "fractured"
fracture_level = "L3"  # <-
""", "runs[0].fracture_level", "not in levels"),
    ("procedure that needs a fracture", """\
[study]
name = "bad"
[base]
levels = "L1-L2"
[[runs]]
procedure = "pkp"  # <-
""", "runs[0].procedure", "needs a fracture_level"),
    ("bad TOML syntax", """\
[study]
name = "bad"
[base]
voxel_size = = 3  # <-
""", None, "not valid TOML"),
    ("missing study name", """\
# no name
[study]  # <-
recipe = "augmentation"
[base]
levels = "L2"
""", "study.name", "needs a name"),
    ("missing study table", """\
[base]
levels = "L2"
""", "study.name", "needs a name"),
    ("write_vtu not a boolean", """\
[study]
name = "bad"
write_vtu = "no"  # <-
""", "study.write_vtu", "true or false"),
    ("shape model outside L2-L5", """\
[study]
name = "bad"
[base]
anatomy = "ssm"
levels = "L1-L3"  # <-
""", "base.levels", "L2, L3, L4, L5 only"),
    ("unknown strength", """\
[study]
name = "bad"
[base]
strength = "nonlinear"  # <-
""", "base.strength", "pistoia, pushover"),
    ("strength levels not level names", """\
[study]
name = "bad"
[base]
strength = "pushover"
strength_levels = ["L2", "L9"]  # <-
""", "base.strength_levels", "'treated', 'all' or level names"),
    ("strength level outside the segment", """\
[study]
name = "bad"
[base]
levels = "L1-L3"
strength = "pushover"
[[runs]]
strength_levels = ["L4"]  # <-
""", "runs[0].strength_levels", "not in levels"),
    # integers are checked in their range where they are written, not when a run fails
    ("negative seed", """\
[study]
name = "bad"
[base]
seed = -1  # <-
""", "base.seed", "must lie in 0..9223372036854775807, got -1"),
    ("negative seed in a grid", """\
[study]
name = "bad"
[grid]
seed = [0, 1, -1]  # <-
""", "grid.seed", "got -1"),
    ("negative seed in a run", """\
[study]
name = "bad"
[[runs]]
seed = 3
[[runs]]
seed = -1  # <-
""", "runs[1].seed", "got -1"),
    ("fractional seed", """\
[study]
name = "bad"
[base]
seed = 2.5  # <-
""", "base.seed", "must be int"),
    ("grade outside 1..3", """\
[study]
name = "bad"
[base]
fracture_grade = 0  # <-
""", "base.fracture_grade", "must lie in 1..3"),
    ("grid above the run limit", """\
[study]
name = "big"
[grid]  # <-
bmd = [""" + ", ".join(f"{10.0 + i}" for i in range(101)) + """]
tip_depth = [""" + ", ".join(f"{i / 100}" for i in range(100)) + """]
""", "grid", "10100 runs (101 bmd x 100 tip_depth), more than the limit of 10000: allow them "
         "with vfem study --max-runs 10100"),
]


@pytest.mark.parametrize("case,text,key,words", BAD_SPECS, ids=[c[0] for c in BAD_SPECS])
def test_invalid_spec_fails_before_any_run(tmp_path, capsys, case, text, key, words):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    marked = [i for i, s in enumerate(text.splitlines(), start=1) if s.endswith("# <-")]
    with pytest.raises(SpecError) as info:
        StudySpec.from_toml(path)
    exc = info.value
    assert exc.path is not None and Path(exc.path) == path
    assert exc.line == (marked[0] if marked else None)
    if key is not None:
        assert exc.key == key
    out = tmp_path / "out"
    assert main(["study", str(path), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
    assert str(path) in err and words in err
    if marked:
        assert f"line {marked[0]}," in err or f"line {marked[0]}:" in err
    if key is not None:
        assert repr(key) in err
    assert not out.exists()  # no store, no run


def test_invalid_dict_spec_fails_before_the_folder_is_made(tmp_path):
    d = json.loads(json.dumps(CANON_DICT))
    d["grid"]["cement_volume_ml"] = [2.0, -1.0]
    with pytest.raises(SpecError, match=r"grid\.cement_volume_ml.*must lie in"):
        Study(tmp_path / "out", d)
    assert not (tmp_path / "out").exists()


def test_a_spec_built_with_numpy_values_is_the_plain_specs():
    """A spec written in Python with NumPy numbers (``list(np.arange(...))`` for a grid, an
    ``np.int64`` grade, an ``np.bool_``) gives the runs, and run ids, of the same spec in plain
    Python numbers (it had been refused: "must be float, got np.int64(50)")."""
    import numpy as np

    plain = json.loads(json.dumps(CANON_DICT))
    plain["grid"]["bmd"] = [50.0, 75.0]
    plain["base"].update(fracture_grade=2, burst=True)
    numpy = json.loads(json.dumps(CANON_DICT))
    numpy["grid"]["bmd"] = list(np.arange(50, 100, 25))
    numpy["base"].update(fracture_grade=np.int64(2), burst=np.bool_(True))
    ids = [[run_id(p) for p in StudySpec.from_dict(d).expand()] for d in (plain, numpy)]
    assert ids[0] == ids[1] and len(ids[0]) > 1
    numpy["grid"]["bmd"] = np.array([50.0, 75.0])
    assert [run_id(p) for p in StudySpec.from_dict(numpy).expand()] == ids[0]


def test_every_integer_parameter_has_its_range():
    assert all(p.check is not None for p in PARAMETERS.values() if p.kind is int)
    with pytest.raises(TypeError, match="range"):
        type(PARAMETERS["seed"])(int, 0, "an integer without a range")


@pytest.mark.parametrize("key, value, words", [
    ("seed", -1, "must lie in 0..9223372036854775807, got -1"),
    ("seed", 2**63, "got 9223372036854775808"),  # beyond what the store's integers hold
    ("seed", True, "must be int"),
    ("seed", 1.0, "must be int"),
    ("fracture_grade", 4, "must lie in 1..3"),
])
def test_integer_parameters_out_of_range_api(tmp_path, key, value, words):
    d = {"study": {"name": "ints"}, "grid": {key: [PARAMETERS[key].default, value]}}
    with pytest.raises(SpecError) as info:
        Study(tmp_path / "out", d)
    assert info.value.key == f"grid.{key}" and words in str(info.value), str(info.value)
    assert not (tmp_path / "out").exists()


def _grid(n_axes: int, n: int) -> dict:
    """A grid of ``n_axes`` parameters of ``n`` valid values each (none read by a cross-check,
    so checking it does not visit its combinations)."""
    axes = {"bmd": lambda i: 10.0 + i, "tip_depth": lambda i: i / n,
            "height_restoration": lambda i: i / n, "seed": lambda i: i,
            "voxel_size": lambda i: 1.0 + i / n, "mesh_size": lambda i: 1.0 + i / n}
    return {k: [f(i) for i in range(n)] for k, f in list(axes.items())[:n_axes]}


def test_a_huge_grid_is_refused_without_listing_it():
    """10^12 runs: refused at once (listing them would take days and terabytes)."""
    d = {"study": {"name": "huge"}, "base": {"levels": "L1-L2"}, "grid": _grid(6, 100)}
    with pytest.raises(SpecError) as info:
        StudySpec.from_dict(d)
    msg = str(info.value)
    assert info.value.key == "grid"
    assert "1000000000000 runs (100 bmd x 100 tip_depth x 100 height_restoration" in msg, msg
    assert "--max-runs 1000000000000" in msg and "max_runs=1000000000000" in msg


def test_an_allowed_huge_grid_expands_lazily():
    d = {"study": {"name": "huge"}, "base": {"levels": "L1-L2"}, "grid": _grid(6, 100)}
    spec = StudySpec.from_dict(d, max_runs=None)
    assert spec.count() == 100**6
    first = list(itertools.islice(spec.iter_runs(max_runs=None), 3))
    assert [p["mesh_size"] for p in first] == [1.0, 1.01, 1.02]
    assert len({run_id(p) for p in first}) == 3


def test_max_runs_counts_grid_times_runs_and_is_configurable(tmp_path):
    d = {"study": {"name": "twelve"}, "grid": _grid(2, 2) | {"load_case": ["standing",
                                                                          "flexion", "flexion"]},
         "runs": [{"seed": 1}], "base": {"levels": "L1-L3"}}  # 2 x 2 x 3 = 12 runs, 8 distinct
    with pytest.raises(SpecError, match=r"12 runs \(2 bmd x 2 tip_depth x 3 load_case x 1 "
                                        r"\[\[runs\]\]\), more than the limit of 11"):
        StudySpec.from_dict(d, max_runs=11)
    spec = StudySpec.from_dict(d, max_runs=12)
    assert len(spec.expand(max_runs=12)) == 8
    with pytest.raises(SpecError, match="max_runs=12"):
        spec.expand(max_runs=7)
    with pytest.raises(SpecError, match="--max-runs 12"):
        Study(tmp_path / "out", d, max_runs=11)
    assert not (tmp_path / "out").exists()
    with pytest.raises(fem.ModelError, match="max_runs must be a positive integer"):
        spec.expand(max_runs=0)


def test_max_runs_from_the_command_line(tmp_path, capsys):
    spec = tmp_path / "twelve.toml"
    spec.write_text('[study]\nname = "twelve"\n[grid]\nbmd = [50.0, 60.0, 70.0]\n'
                    'tip_depth = [0.25, 0.5, 0.75, 1.0]\n[base]\nlevels = "L1-L3"\n')
    out = tmp_path / "out"

    def error(*args):
        assert main(["study", str(spec), "--out", str(out), *args]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1, err
        return err

    err = error("--max-runs", "11")
    assert f"{spec}, line 3, key 'grid': the study has 12 runs" in err
    assert "vfem study --max-runs 12" in err
    assert "must be >= 1" in error("--max-runs", "0")
    assert not out.exists()
    out.write_text("a file")  # allowed, the spec passes and the next check speaks
    assert "is a file, not a folder" in error("--max-runs", "12")


# ---------------------------------------------------------------------- 2. the store

def test_store_records_each_run_whole(finished):
    out, ids = finished["out"], finished["ids"]
    assert finished["proc"].returncode == 1, finished["proc"].stderr
    assert integrity(out) == "ok"
    runs = runs_table(out)
    assert set(runs) == set(ids)
    status = {r: runs[r]["status"] for r in ids}
    assert status == {ids[0]: "done", ids[1]: "done", ids[2]: "failed", ids[3]: "failed"}
    # one row per level for each done run, none for a failed one
    assert metrics_count(out) == {ids[0]: len(LEVELS), ids[1]: len(LEVELS)}
    db = connect(out)
    levels = {r: sorted(lv for (lv,) in db.execute("SELECT level FROM metrics WHERE run_id = ?",
                                                   (r,))) for r in ids[:2]}
    db.close()
    assert levels == {ids[0]: list(LEVELS), ids[1]: list(LEVELS)}
    expanded = StudySpec.from_toml(finished["spec"]).expand()
    for rid, p in zip(ids, expanded):
        r = runs[rid]
        assert json.loads(r["params"]) == p and run_id(json.loads(r["params"])) == rid
        assert r["attempts"] == 1
        assert r["started"] <= r["finished"] <= time.time()
        versions = json.loads(r["versions"])
        assert versions["vertebra-fem"] == fem.__version__ and "numpy" in versions
    for rid in ids[:2]:
        r = runs[rid]
        assert r["error"] is None and r["backend"] in ("numpy", "cupy")
        assert r["solver"] and r["n_dof"] > 1000 and Path(r["vtu"]) == out / "runs" / \
            f"{rid}.vtu"
        t = json.loads(r["timings"])
        assert min(t.values()) >= 0 and t["total"] >= t["solve"] > 0
    assert "MeshError" in runs[ids[2]]["error"] and "can take only" in runs[ids[2]]["error"]
    assert "OutputError: cannot write" in runs[ids[3]]["error"]
    assert "Is a directory" in runs[ids[3]]["error"]
    assert runs[ids[2]]["vtu"] is None and runs[ids[3]]["vtu"] is None
    check_vtus(out, set(ids[:2]))
    assert temporaries(out) == []


def test_results_and_export_round_trip(finished, tmp_path):
    folder = copy_study(finished["out"], tmp_path / "study")
    ids = finished["ids"]
    study = Study(folder)
    df = study.results()
    assert list(df.columns[:len(RESULT_COLUMNS)]) == RESULT_COLUMNS
    assert len(df) == 2 * len(LEVELS)
    assert set(df["run_id"]) == set(ids[:2]) and set(df["status"]) == {"done"}
    assert list(df["level"]) == list(LEVELS) * 2
    assert (df["cement_volume_ml"] == 0).all()
    # the larger bulge under its own name; the former name stays one release as an alias
    both = df[["endplate_bulge_superior_mm", "endplate_bulge_inferior_mm"]].max(axis=1)
    assert (df["endplate_bulge_max_mm"] == both).all()
    assert (df["endplate_bulge_mm"] == df["endplate_bulge_max_mm"]).all()
    flex = df[df["load_case"] == "flexion"]
    assert set(flex["run_id"]) == {ids[1]}
    # axial stiffness under axial compression only; the rotational one is not read where the
    # posterior ligaments (built by default here) carry the moment past the body: the bending
    # is the turn across the disc
    stand = df[df["load_case"] != "flexion"]
    assert (stand["stiffness_n_per_mm"] > 0).all() and flex["stiffness_n_per_mm"].isna().all()
    assert set(df["ligaments"]) == {"yes"}
    assert df["rotational_stiffness_nm_per_deg"].isna().all()
    turn = flex.set_index("level")["disc_rotation_deg"].astype(float)
    assert turn["L1"] > 1.0 and np.isnan(turn["L2"])
    assert df.columns.is_unique
    assert set(df["backend_used"]) <= {"numpy", "cupy"} and set(df["backend"]) == {"auto"}
    csv = study.export(tmp_path / "r.csv")
    back = pd.read_csv(csv)
    assert list(back.columns) == list(df.columns)
    # CSV keeps no types and writes "" and None alike
    pd.testing.assert_frame_equal(back, pd.read_csv(io.StringIO(df.to_csv(index=False))))
    for c in df.columns:
        if pd.api.types.is_float_dtype(df[c]):
            a, b = df[c], back[c]
            assert (a.isna() == b.isna()).all(), c
            assert ((a - b).abs()[a.notna()] <= 1e-14 * a.abs()[a.notna()]).all(), c
    pq = study.export(tmp_path / "r.parquet")
    pd.testing.assert_frame_equal(pd.read_parquet(pq), df)
    # the summary the CLI wrote is the same table
    summary = pd.read_csv(finished["out"] / "summary.csv")
    pd.testing.assert_frame_equal(summary, back)
    with pytest.raises(fem.ModelError, match=r"\.csv or \.parquet"):
        study.export(tmp_path / "r.xlsx")
    assert not (tmp_path / "r.xlsx").exists()


def test_vfem_results_formats(finished):
    table = vfem("results", finished["out"], "--format", "json")
    assert table.returncode == 0, table.stderr
    rows = json.loads(table.stdout)
    assert len(rows) == 2 * len(LEVELS) and list(rows[0]) == RESULT_COLUMNS
    csv = vfem("results", finished["out"], "--format", "csv", "--all")
    assert csv.returncode == 0 and csv.stdout.splitlines()[0].startswith(",".join(RESULT_COLUMNS))
    assert len(csv.stdout.splitlines()) == 1 + 2 * len(LEVELS)


# ---------------------------------------------------------------------- 3. resume and faults
# (the process tests pass --no-report: the report costs about 4 s a start, and what it draws is
# tested in test_viz_report.py; test_only_the_last_process_to_finish_writes_summary_and_report
# covers who writes it)

def test_rerunning_a_finished_study_runs_nothing(finished, tmp_path):
    folder = copy_study(finished["out"], tmp_path / "study")
    before = runs_table(folder)
    summary = (folder / "summary.csv").read_bytes()
    proc = vfem("study", finished["spec"], "--out", folder)
    assert proc.returncode == 1, proc.stderr  # the two failed runs are still failed
    assert "nothing to run" in proc.stderr and " done in " not in proc.stderr
    assert runs_table(folder) == before
    assert (folder / "summary.csv").read_bytes() == summary


def test_failed_run_is_recorded_and_retried(finished, tmp_path):
    ids = finished["ids"]
    proc = finished["proc"]
    assert proc.returncode == 1
    assert f"run {ids[2]} failed: MeshError" in proc.stderr
    assert f"run {ids[3]} failed: OutputError: cannot write" in proc.stderr
    assert "Traceback" not in proc.stderr
    # no report of a study with failed runs, and the last line says why and what to do
    assert not (finished["out"] / "report.html").exists()
    last = proc.stdout.strip().splitlines()[-1]
    assert last.startswith("report: not written, 2 run(s) failed"), proc.stdout
    assert "--retry-failed" in last and f"vfem report {finished['out']}" in last
    folder = copy_study(finished["out"], tmp_path / "study")
    done_before = {r: v for r, v in runs_table(folder).items() if v["status"] == "done"}
    (folder / "runs" / f"{ids[3]}.vtu").rmdir()  # the transient fault is gone
    retry = vfem("study", finished["spec"], "--out", folder, "--retry-failed", "--no-report")
    assert retry.returncode == 1, retry.stderr  # the pvp run fails again
    runs = runs_table(folder)
    assert runs[ids[3]]["status"] == "done" and runs[ids[3]]["attempts"] == 2
    assert runs[ids[3]]["error"] is None
    assert runs[ids[2]]["status"] == "failed" and runs[ids[2]]["attempts"] == 2
    assert "can take only" in runs[ids[2]]["error"]
    assert {r: runs[r] for r in done_before} == done_before
    assert metrics_count(folder) == {r: len(LEVELS) for r in (ids[0], ids[1], ids[3])}
    check_vtus(folder, {ids[0], ids[1], ids[3]})
    assert len(pd.read_csv(folder / "summary.csv")) == 3 * len(LEVELS)


def test_runs_of_an_earlier_version_of_the_spec_are_not_this_studys(finished, tmp_path):
    """A spec edited (or a default changed) and run again into the same folder: the store keeps
    the earlier runs, which have other ids, but the results, the summary and the report are the
    current spec's runs alone, with a warning saying how many were left out; and only the
    current spec's runs are counted, claimed and retried."""
    folder = copy_study(finished["out"], tmp_path / "study")
    ids = finished["ids"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the same spec: nothing left out, nothing said
        same = Study(folder, finished["spec"]).results()
    assert set(same["run_id"]) == {ids[0], ids[1]}
    edited = tmp_path / "edited.toml"
    edited.write_text(Path(finished["spec"]).read_text().replace(
        'voxel_size = 4.0', 'voxel_size = 4.0\nbmd = 75.0'))
    study = Study(folder, edited)
    new_ids = {run_id(p) for p in study.spec.expand()}
    # the run that names bmd = 60 itself is the same run; the other three are new ones
    assert new_ids & set(ids) == {ids[3]} and study.run_ids() == new_ids
    with pytest.warns(UserWarning, match=r"2 run\(s\) in the store are not runs of this "
                                          r"study's spec"):
        df = study.results()
    assert len(df) == 0
    assert len(runs_table(folder)) == len(ids) + len(new_ids) - 1  # nothing was deleted
    with pytest.warns(UserWarning, match="left out of the results"):
        assert len(Study(folder).results()) == 0  # the stored spec is the edited one
    # nor are the earlier runs counted or run again: the failed one of the first version
    # (ids[2]) would have made every later `vfem study` on this folder exit 1
    assert runs_table(folder)[ids[2]]["status"] == "failed"
    assert study.store.counts() == {"pending": 3, "failed": 1}  # ids[3] is this spec's too
    claimed = []
    while (c := study.store.claim(retry_failed=True)) is not None:
        claimed.append(c[0])
    assert set(claimed) == new_ids and runs_table(folder)[ids[2]]["status"] == "failed"


def _poll(cond, timeout, what):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        value = cond()
        if value:
            return value
        time.sleep(0.02)
    pytest.fail(f"timed out after {timeout} s waiting for {what}")


def _statuses(folder):
    """{run_id: status} from the store as it is now ({} while it does not exist yet)."""
    if not (Path(folder) / "study.sqlite").exists():
        return {}
    try:
        db = sqlite3.connect(f"file:{Path(folder) / 'study.sqlite'}?mode=ro", uri=True,
                             timeout=10)
        try:
            return dict(db.execute("SELECT run_id, status FROM runs"))
        finally:
            db.close()
    except sqlite3.OperationalError:  # created but its tables not yet
        return {}


def _group_alive(pgid) -> bool:
    """Whether a process of the group still runs (zombies waiting for init to reap them count
    as gone)."""
    if not Path("/proc/self/stat").exists():
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return False
        return True
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            state, _, pgrp = stat.read_text().rpartition(")")[2].split()[:3]
        except (OSError, ValueError):
            continue
        if int(pgrp) == pgid and state not in ("Z", "X"):
            return True
    return False


def _wait_group(pgid, timeout=30) -> bool:
    """Wait until no process of the group is left; kill what is left after ``timeout`` and
    return False."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if not _group_alive(pgid):
            return True
        time.sleep(0.05)
    os.killpg(pgid, signal.SIGKILL)
    return False


def _ignore_sigint():
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@pytest.mark.parametrize("sig, start", [(signal.SIGTERM, None), (signal.SIGINT, None),
                                        (signal.SIGINT, _ignore_sigint)],
                         ids=["SIGTERM", "SIGINT", "SIGINT-ignored-at-start"])
def test_sigterm_and_sigint_mid_run_give_the_run_back_and_leave_nothing(tmp_path, sig, start):
    """A stop signal to the study process while a run is in flight: the finished runs stay
    recorded, the run in flight goes back to pending (not left 'running'), its worker ends at
    once and no temporary is left; one error line, exit 130; the next start runs the rest. Also
    where the study was started with SIGINT ignored (a background job of a non-interactive
    shell): Python installs no handler then, and a SIGINT once let a study run to its end."""
    spec = grid_spec(tmp_path / "grid.toml", "stopped", bmd=[60.0, 70.0, 80.0],
                     load_cases=["standing"])
    ids = ids_of(spec)
    folder = tmp_path / "study"
    proc = subprocess.Popen([*VFEM, "study", str(spec), "--out", str(folder), "--no-report"], env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, preexec_fn=start)
    try:
        seen = _poll(lambda: (s := _statuses(folder)) and "running" in s.values()
                     and "done" in s.values() and s, 120, "a run running after one done")
        t0 = time.monotonic()
        os.kill(proc.pid, sig)
        _, err = proc.communicate(timeout=60)
        stopped_in = time.monotonic() - t0
    finally:
        ended = _wait_group(proc.pid)
    assert ended, "a worker outlived the stopped study process"
    assert proc.returncode == 130, err
    assert err.strip().splitlines()[-1].startswith("error: interrupted"), err
    assert "Traceback" not in err
    assert stopped_in < 20  # it did not wait for the run in flight to finish
    after = runs_table(folder)
    assert "running" not in {v["status"] for v in after.values()}
    done = {r for r, v in after.items() if v["status"] == "done"}
    assert done >= {r for r, s in seen.items() if s == "done"}
    assert metrics_count(folder) == {r: len(LEVELS) for r in done}
    assert temporaries(folder) == []
    check_vtus(folder, done)
    resumed = vfem("study", spec, "--out", folder, "--no-report")
    assert resumed.returncode == 0, resumed.stderr
    assert {v["status"] for v in runs_table(folder).values()} == {"done"}
    assert set(runs_table(folder)) == set(ids)


@pytest.mark.parametrize("target", ["study process", "process group"])
def test_sigkill_mid_run_loses_nothing_and_resumes(tmp_path, target):
    spec = grid_spec(tmp_path / "grid.toml", "killed", bmd=[60.0, 70.0, 80.0],
                     load_cases=["standing"])
    ids = ids_of(spec)
    assert len(ids) == 3
    folder = tmp_path / "study"
    proc = subprocess.Popen([*VFEM, "study", str(spec), "--out", str(folder), "--no-report"], env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        seen = _poll(lambda: (s := _statuses(folder)) and "running" in s.values()
                     and "done" in s.values() and s, 120, "a run running after one done")
    finally:
        if target == "study process":
            os.kill(proc.pid, signal.SIGKILL)  # its worker is orphaned
        else:
            os.killpg(proc.pid, signal.SIGKILL)  # the worker dies mid-run too
        proc.wait(timeout=60)
        # an orphaned worker sees the study process's pipe close and ends
        ended = _wait_group(proc.pid)
    assert ended, "a worker outlived the killed study process by 30 s"
    killed = [r for r, s in seen.items() if s == "running"]
    assert len(killed) == 1
    # the store opens and holds every finished run whole; the killed run is still 'running'
    assert integrity(folder) == "ok"
    Store(folder).close()
    after = runs_table(folder)
    assert after[killed[0]]["status"] == "running"  # killed mid-run, not after it
    done = {r for r, v in after.items() if v["status"] == "done"}
    assert done >= {r for r, s in seen.items() if s == "done"}
    assert metrics_count(folder) == {r: len(LEVELS) for r in done}
    check_vtus(folder, done)
    # a kill inside the VTU write (a ~0.1 s window) leaves these names (fem.io.atomic); put
    # such leftovers there for the next start to clean up
    for name in (f".{killed[0]}.vtu.k1lled.part", f".{killed[0]}.vtu.k1lled.part.fd"):
        (folder / "runs" / name).write_bytes(b"half a file")
    resumed = vfem("study", spec, "--out", folder, "--no-report")
    assert resumed.returncode == 0, resumed.stderr
    assert "1 run(s) left unfinished by a stopped process will run again" in resumed.stderr
    final = runs_table(folder)
    assert {v["status"] for v in final.values()} == {"done"} and set(final) == set(ids)
    for r in done:  # finished before the kill: not run again
        assert final[r]["attempts"] == 1 and final[r]["finished"] == after[r]["finished"]
    assert final[killed[0]]["attempts"] == 2
    for r in set(ids) - done - {killed[0]}:
        assert final[r]["attempts"] == 1
    ran_again = {line.split()[2] for line in resumed.stderr.splitlines() if " done in " in line}
    assert ran_again == set(ids) - done
    assert metrics_count(folder) == {r: len(LEVELS) for r in ids}
    assert temporaries(folder) == []
    check_vtus(folder, set(ids))
    assert integrity(folder) == "ok"
    assert len(pd.read_csv(folder / "summary.csv")) == len(ids) * len(LEVELS)


def _children(pid) -> list[int]:
    return [int(s.parent.name) for s in Path("/proc").glob("[0-9]*/stat")
            if _ppid(s) == pid]


def _ppid(stat) -> int | None:
    try:
        return int(stat.read_text().rpartition(")")[2].split()[1])
    except (OSError, ValueError, IndexError):
        return None


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="finds the worker in /proc")
def test_worker_killed_mid_run_is_a_failed_run(tmp_path):
    """The worker process dies mid-run (the OOM killer, say): that run is recorded as failed,
    the study goes on with a new worker, and --retry-failed runs it again."""
    spec = grid_spec(tmp_path / "grid.toml", "oom", bmd=[60.0, 70.0, 80.0],
                     load_cases=["standing"])
    ids = ids_of(spec)
    folder = tmp_path / "study"
    proc = subprocess.Popen([*VFEM, "study", str(spec), "--out", str(folder), "--no-report"], env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        seen = _poll(lambda: (s := _statuses(folder)) and "running" in s.values()
                     and "done" in s.values() and s, 120, "a run running after one done")
        # study process -> forkserver -> worker (the resource tracker has no children)
        workers = [w for c in _children(proc.pid) for w in _children(c)]
        assert len(workers) == 1
        os.kill(workers[0], signal.SIGKILL)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    killed = next(r for r, s in seen.items() if s == "running")
    assert proc.returncode == 1, err
    runs = runs_table(folder)
    assert runs[killed]["status"] == "failed" and "BrokenProcessPool" in runs[killed]["error"]
    assert {r for r, v in runs.items() if v["status"] == "done"} == set(ids) - {killed}
    assert metrics_count(folder) == {r: len(LEVELS) for r in set(ids) - {killed}}
    assert "Traceback" not in err
    retry = vfem("study", spec, "--out", folder, "--retry-failed", "--no-report")
    assert retry.returncode == 0, retry.stderr
    runs = runs_table(folder)
    assert all(v["status"] == "done" for v in runs.values())
    assert runs[killed]["attempts"] == 2 and runs[killed]["error"] is None
    assert metrics_count(folder) == {r: len(LEVELS) for r in ids}
    assert temporaries(folder) == []
    check_vtus(folder, set(ids))


def _open_store(folder, barrier, queue):
    from fem.study.store import Store

    barrier.wait()
    try:
        Store(folder, create=True).close()
        queue.put("ok")
    except Exception as exc:  # reported to the test, which names it
        queue.put(f"{type(exc).__name__}: {exc}")


def test_processes_opening_a_new_store_together_all_open_it(tmp_path):
    """Three processes open the store of one new folder at the same instant, 30 times over:
    every open succeeds. (Switching a new store to WAL mode needs the database to itself, and
    SQLite answered "database is locked" at once to the others: about 1 open in 8 failed so,
    and two `vfem study` processes started together on a new folder could fail.)"""
    import multiprocessing

    ctx = multiprocessing.get_context("fork")
    failed = []
    for i in range(30):
        barrier, queue = ctx.Barrier(3), ctx.Queue()
        procs = [ctx.Process(target=_open_store, args=(tmp_path / f"s{i}", barrier, queue))
                 for _ in range(3)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(timeout=60)
        failed += [r for r in (queue.get(timeout=10) for _ in procs) if r != "ok"]
    assert not failed, failed[:3]


def test_two_processes_on_one_folder(tmp_path):
    # 6 short runs (one level: about 0.5 s each), so the two processes take turns often
    spec = grid_spec(tmp_path / "grid.toml", "raced", bmd=[60.0, 70.0, 80.0], levels="L2")
    ids = ids_of(spec)
    assert len(ids) == 6
    folder = tmp_path / "study"
    cmd = [*VFEM, "study", str(spec), "--out", str(folder), "--no-report"]
    procs = [subprocess.Popen(cmd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(2)]
    outs = [p.communicate(timeout=180) for p in procs]
    for p, (_, err) in zip(procs, outs):
        assert p.returncode == 0, err
        assert "Traceback" not in err
    runs = runs_table(folder)
    assert set(runs) == set(ids)
    assert all(v["status"] == "done" and v["attempts"] == 1 for v in runs.values())
    assert {v["owner"] for v in runs.values()} <= {f"{HOST}:{p.pid}" for p in procs}
    done_lines = [line.split()[2] for _, err in outs for line in err.splitlines()
                  if " done in " in line]
    assert sorted(done_lines) == sorted(ids)  # each run ran once, in one of the two
    db = connect(folder)
    assert db.execute("SELECT COUNT(*) FROM metrics").fetchone()[0] == len(ids)
    assert db.execute("SELECT COUNT(*) FROM (SELECT DISTINCT run_id, level FROM metrics)"
                      ).fetchone()[0] == len(ids)
    db.close()
    assert integrity(folder) == "ok"
    assert temporaries(folder) == []
    check_vtus(folder, set(ids))
    # whichever process wrote summary.csv last, it holds every run
    assert len(pd.read_csv(folder / "summary.csv")) == len(ids)
    # and a third start finds nothing to do
    before, summary = runs_table(folder), (folder / "summary.csv").read_bytes()
    again = vfem("study", spec, "--out", folder, "--no-report")
    assert again.returncode == 0 and "nothing to run" in again.stderr, again.stderr
    assert runs_table(folder) == before and (folder / "summary.csv").read_bytes() == summary


def test_only_the_last_process_to_finish_writes_summary_and_report(finished, tmp_path):
    """A process that finds a run still held by another live process (here: this test's own
    process) leaves summary.csv and the report to that one; once no run is held, it writes."""
    folder = copy_study(finished["out"], tmp_path / "held")
    (folder / "summary.csv").unlink(missing_ok=True)
    held = finished["ids"][3]
    db = connect(folder)
    with db:
        db.execute("UPDATE runs SET status = 'running', owner = ? WHERE run_id = ?",
                   (f"{HOST}:{os.getpid()}", held))
    db.close()
    proc = vfem("study", finished["spec"], "--out", folder, "--no-report")
    assert "1 run(s) are still running in another process" in proc.stdout, proc.stdout
    assert "summary:" not in proc.stdout and not (folder / "summary.csv").exists()
    assert runs_table(folder)[held]["status"] == "running"  # not taken from its owner
    db = connect(folder)
    with db:
        db.execute("UPDATE runs SET status = 'failed', owner = NULL WHERE run_id = ?", (held,))
    db.close()
    proc = vfem("study", finished["spec"], "--out", folder, "--no-report")
    assert "summary:" in proc.stdout and (folder / "summary.csv").exists()


def test_a_new_start_keeps_the_temporaries_of_runs_another_process_holds(finished, tmp_path):
    """A second `vfem study` started on a folder mid-run must not delete the VTU temporary the
    first process is writing (its rename would fail and a good run be recorded as failed), and
    must not take that run; stale temporaries of other runs go."""
    ids = finished["ids"]
    folder = copy_study(finished["out"], tmp_path / "study")
    db = connect(folder)
    with db:
        db.execute("UPDATE runs SET status = 'running', owner = ? WHERE run_id = ?",
                   (f"{HOST}:{os.getpid()}", ids[2]))  # held by a live process: this one
    db.close()
    live = folder / "runs" / f".{ids[2]}.vtu.l1ve.part"
    stale = [folder / "runs" / f".{ids[0]}.vtu.st4le.part",
             folder / "runs" / f".{ids[0]}.vtu.st4le.part.fd"]
    for p in [live, *stale]:
        p.write_bytes(b"being written")
    proc = vfem("study", finished["spec"], "--out", folder)
    assert proc.returncode == 1, proc.stderr  # ids[3] is still failed
    assert live.exists() and not any(p.exists() for p in stale)
    runs = runs_table(folder)
    assert runs[ids[2]]["status"] == "running" and runs[ids[2]]["attempts"] == 1


# ---------------------------------------------------------------------- 7. bad input

def _one_error_line(proc, *words):
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    for w in words:
        assert w in proc.stderr, (w, proc.stderr)
    return proc.stderr


def _snapshot(path):
    return path.read_bytes(), path.stat().st_mtime_ns


def test_bad_spec_from_the_command_line(tmp_path):
    spec = tmp_path / "bad.toml"
    spec.write_text('[study]\nname = "x"\n[base]\nlevels = "L1-L2"\nvoxl_size = 3.0\n')
    _one_error_line(vfem("study", spec, "--out", tmp_path / "out"), str(spec), "line 5",
                    "'base.voxl_size'", "unknown parameter")
    assert not (tmp_path / "out").exists()
    _one_error_line(vfem("study", tmp_path / "missing.toml", "--out", tmp_path / "out"),
                    "missing.toml", "not found")
    _one_error_line(vfem("study", spec, "--out", tmp_path / "out", "--processes", "0"),
                    ">= 1")


def test_results_of_a_missing_or_empty_folder(tmp_path):
    _one_error_line(vfem("results", tmp_path / "nowhere"), "nowhere", "does not exist")
    (tmp_path / "empty").mkdir()
    _one_error_line(vfem("results", tmp_path / "empty"), "holds no study")
    assert list((tmp_path / "empty").iterdir()) == []
    (tmp_path / "dir" / "study.sqlite").mkdir(parents=True)  # a folder where the store goes
    _one_error_line(vfem("results", tmp_path / "dir"), "not a usable SQLite database")


def test_out_that_is_a_file_or_under_a_file(finished, tmp_path):
    f = tmp_path / "taken"
    f.write_text("keep me")
    _one_error_line(vfem("study", finished["spec"], "--out", f), str(f), "is a file")
    assert f.read_text() == "keep me"
    _one_error_line(vfem("study", finished["spec"], "--out", f / "sub"),
                    "cannot create the study folder")
    assert f.read_text() == "keep me"


def test_unwritable_and_unreadable_folders(finished, tmp_path):
    if os.geteuid() == 0:
        pytest.skip("running as root, which ignores permission bits (the folder-under-a-file "
                    "and folder-as-store cases cover unusable folders as root)")
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        _one_error_line(vfem("study", finished["spec"], "--out", ro), "not writable")
    finally:
        ro.chmod(0o700)
    locked = copy_study(finished["out"], tmp_path / "locked")
    locked.chmod(0)
    try:
        _one_error_line(vfem("results", locked))
    finally:
        locked.chmod(0o700)
    assert integrity(locked) == "ok"


def _as_unprivileged() -> list[str] | None:
    """The command prefix that makes permission bits hold for a child process: none for a user,
    for root util-linux's setpriv without the capabilities that override them (None where
    there is no setpriv)."""
    import shutil

    if os.geteuid() != 0:
        return []
    exe = shutil.which("setpriv")
    caps = "-dac_override,-dac_read_search"
    return None if exe is None else [exe, f"--bounding-set={caps}", f"--inh-caps={caps}", "--"]


@pytest.mark.parametrize("locked", ["folder", "store file"])
def test_a_read_only_study_reads_untouched(finished, tmp_path, locked):
    """Archived or shared results: a study folder (or its store file) this process cannot write
    still gives its results and, written elsewhere, its report; nothing in it changes and no
    file appears beside the store (it had said "attempt to write a readonly database")."""
    prefix = _as_unprivileged()
    if prefix is None:
        pytest.skip("running as root without setpriv: permission bits cannot hold")
    folder = copy_study(finished["out"], tmp_path / "archived")
    db = folder / "study.sqlite"
    db.chmod(0o444)
    if locked == "folder":
        for p in [*folder.rglob("*")]:
            p.chmod(p.stat().st_mode & 0o555)
        folder.chmod(0o555)
    before = {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    try:
        res = subprocess.run([*prefix, *VFEM, "results", str(folder), "--format", "csv"],
                             capture_output=True, text=True, env=ENV, timeout=180)
        assert res.returncode == 0, res.stderr
        table = pd.read_csv(io.StringIO(res.stdout))
        assert len(table) == 2 * len(LEVELS) and table["stiffness_n_per_mm"].notna().any()
        page = tmp_path / "elsewhere" / "report.html"
        page.parent.mkdir()
        rep = subprocess.run([*prefix, *VFEM, "report", str(folder), "--out", str(page)],
                             capture_output=True, text=True, env=ENV, timeout=300)
        assert rep.returncode == 0, rep.stderr
        assert page.is_file()
        after = {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}
        assert after == before
    finally:
        folder.chmod(0o755)
        for p in folder.rglob("*"):
            p.chmod(0o755 if p.is_dir() else 0o644)


@pytest.mark.parametrize("journal", ["wal", "delete"])
def test_store_from_a_newer_version_is_refused_untouched(finished, tmp_path, journal):
    folder = copy_study(finished["out"], tmp_path / "newer")
    db = sqlite3.connect(folder / "study.sqlite")
    db.execute(f"PRAGMA journal_mode = {journal}")  # a newer version may choose either
    with db:
        db.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'",
                   (str(SCHEMA_VERSION + 1),))
    db.close()
    store = folder / "study.sqlite"
    before = _snapshot(store)
    names = sorted(os.listdir(folder))
    for proc in (vfem("results", folder), vfem("study", finished["spec"], "--out", folder)):
        _one_error_line(proc, str(store), f"store schema {SCHEMA_VERSION + 1}",
                        f"reads up to {SCHEMA_VERSION}", "newer vertebra-fem")
        assert _snapshot(store) == before
        assert sorted(os.listdir(folder)) == names


def test_corrupt_store_is_a_clear_error(finished, tmp_path):
    folder = copy_study(finished["out"], tmp_path / "corrupt")
    store = folder / "study.sqlite"
    store.write_bytes(os.urandom(3 * 4096))
    before = _snapshot(store)
    for proc in (vfem("results", folder), vfem("study", finished["spec"], "--out", folder)):
        _one_error_line(proc, str(store), "not a usable SQLite database")
        assert _snapshot(store) == before


def _damaged_page(store: Path):
    """Garbage over every page but the first (the header and the schema table stay)."""
    db = sqlite3.connect(store)
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.execute("PRAGMA journal_mode = delete")
    page = db.execute("PRAGMA page_size").fetchone()[0]
    db.close()
    data = bytearray(store.read_bytes())
    assert len(data) >= 3 * page
    data[page:] = bytes((7 * i + 13) % 256 for i in range(len(data) - page))
    store.write_bytes(bytes(data))


def _foreign(store: Path):
    store.unlink()
    for extra in store.parent.glob("study.sqlite-*"):
        extra.unlink()
    db = sqlite3.connect(store)
    with db:
        db.execute("CREATE TABLE patients (id INTEGER, name TEXT)")
        db.execute("INSERT INTO patients VALUES (1, 'keep me')")
    db.close()


def _dropped_metrics(store: Path):
    db = sqlite3.connect(store)
    with db:
        db.execute("DROP TABLE metrics")
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()


@pytest.mark.parametrize("damage, words", [
    (_damaged_page, ["study.sqlite"]),
    (_foreign, ["not a vertebra-fem study store", "patients", "left as it is"]),
    (_dropped_metrics, ["is damaged", "metrics", "missing"]),
])
def test_damaged_foreign_or_incomplete_stores_are_refused_untouched(finished, tmp_path, damage,
                                                                    words):
    """A corrupt page, someone else's SQLite file named study.sqlite (it was adopted and the
    study ran in it) and a store missing its metrics table ("5 done" with empty results): one
    error line from every command, and the file is never modified."""
    folder = copy_study(finished["out"], tmp_path / "damaged")
    store = folder / "study.sqlite"
    damage(store)
    before = _snapshot(store)
    names = sorted(os.listdir(folder))
    for proc in (vfem("results", folder), vfem("study", finished["spec"], "--out", folder),
                 vfem("report", folder)):
        _one_error_line(proc, str(store), *words)
        assert _snapshot(store) == before
        assert sorted(os.listdir(folder)) == names


def test_a_full_disk_while_the_store_is_written_leaves_it_as_it_was(finished, tmp_path):
    """SQLite's "database or disk is full" (a page limit stands in for the disk) in the middle
    of a transaction: a StoreError saying what failed, and the store as before the transaction."""
    from fem.study.store import Store, StoreError

    folder = copy_study(finished["out"], tmp_path / "full")
    store = Store(folder)
    before = store.counts()
    pages = store.db.execute("PRAGMA page_count").fetchone()[0]
    store.db.execute(f"PRAGMA max_page_count = {pages}")
    rid = finished["ids"][3]
    rows = [{"level": f"L{i}", "load_n": float(i)} for i in range(5000)]
    out = {"rows": rows, "timings": {}, "backend": "numpy", "solver": "direct",
           "iterations": 0, "n_dof": 0}
    with pytest.raises(StoreError, match=r"database or disk is full.*as it was before"):
        store.finish(rid, out, None)
    assert store.counts() == before
    assert not store.db.in_transaction
    store.close()
    assert integrity(folder) == "ok"


#: a vfem in a child process whose writer of one kind of file runs out of space: it writes part
#: of the file, then fails as a full device does (ENOSPC). A real full disk cannot be made in a
#: test without privileges; the failing write is the real one the OS would refuse
FULL_DISK = """
import errno, sys
from pathlib import Path


def full(self, path, *args, **kwargs):
    Path(path).write_bytes(b"x" * 4096)
    raise OSError(errno.ENOSPC, "No space left on device")


if sys.argv[1] == "summary":
    import pandas
    pandas.DataFrame.to_csv = full
else:
    from matplotlib.figure import Figure
    Figure.savefig = full
from fem.cli import main
sys.exit(main(sys.argv[2:]))
"""


@pytest.mark.parametrize("target", ["summary", "report"])
def test_a_full_disk_while_the_summary_or_report_is_written(finished, tmp_path, target):
    """No space left while summary.csv (vfem study) or the report's figures (vfem report) are
    written: one error line naming the file and the fault, exit 2, no temporary left beside it,
    the summary already there untouched, no page pointing at missing figures, the store as it
    was."""
    folder = copy_study(finished["out"], tmp_path / "full")
    runs, summary = runs_table(folder), _snapshot(folder / "summary.csv")
    names = {p.relative_to(folder) for p in folder.rglob("*") if "-wal" not in p.name
             and "-shm" not in p.name}
    args = (["study", finished["spec"], "--out", folder, "--no-report"] if target == "summary"
            else ["report", folder])
    proc = subprocess.run([sys.executable, "-c", FULL_DISK, target, *map(str, args)],
                          capture_output=True, text=True, env=ENV, timeout=300)
    # the study's progress lines go to stderr too; the error is the one last line
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.splitlines()
    err = lines[-1]
    assert err.startswith("error: cannot write ") and sum(
        ln.startswith("error") for ln in lines) == 1, proc.stderr
    assert "No space left on device" in err and "nothing was left behind" in err
    assert ("summary.csv" in err) if target == "summary" else (".png" in err)
    now = {p.relative_to(folder) for p in folder.rglob("*") if "-wal" not in p.name
           and "-shm" not in p.name}
    assert not [p for p in now if p.name.startswith(".")], sorted(map(str, now - names))
    assert _snapshot(folder / "summary.csv")[0] == summary[0]
    assert not (folder / "report.html").exists()
    assert runs_table(folder) == runs and integrity(folder) == "ok"


def test_another_study_in_the_same_folder_is_refused(finished, tmp_path):
    folder = copy_study(finished["out"], tmp_path / "study")
    spec = grid_spec(tmp_path / "other.toml", "another")
    before = runs_table(folder)
    _one_error_line(vfem("study", spec, "--out", folder), "holds study 'faults'",
                    "'another'")
    assert runs_table(folder) == before


def _pushover_run(**kw):
    base = {"levels": "L2", "voxel_size": 4.0, "fracture_level": "L2", "strength": "pushover",
            "backend": "numpy", "solver": "direct", **kw}
    (p,) = StudySpec.from_dict({"study": {"name": "po"}, "base": base}).expand()
    return p


def test_pushover_columns_are_wired_into_a_run(tmp_path, monkeypatch):
    """strength = "pushover": the pushed level's row gets the pushover's readings and
    load / strength, the others NaN (None); the curve is written beside the VTU; a pistoia run
    has no pushover. The pushover's solve is stood in for by a curve that bends over without
    falling (a real :class:`NonlinearResult`, so every reading is the real one; the solves
    have their own tests in fem.strength's and tests/test_nonlinear.py): its strength is its
    offset yield at 0.2 % of the level's mean height, below the curve's largest force."""
    import numpy as np

    import fem.strength
    from fem.metrics import PUSHOVER_COLUMNS
    from fem.nonlinear_result import NonlinearResult, Step
    from fem.study.recipe import execute

    u = [0.05, 0.10, 0.15, 0.20, 0.25]
    f = [1000.0, 1800.0, 2000.0, 2050.0, 2060.0]
    bent = NonlinearResult([Step(i + 1, 0.0, x, y, 1, 0.0, None)
                            for i, (x, y) in enumerate(zip(u, f, strict=True))])
    bent.info = {"offset_yield": True}
    calls = []
    monkeypatch.setattr(fem.strength, "pushover",
                        lambda model, **kw: calls.append((model.n_dof, kw)) or bent)
    p = _pushover_run(levels="L1-L2", voxel_size=4.0)
    vtu = tmp_path / "abc.vtu"
    out = execute(p, str(vtu))
    assert [c[1]["level"] for c in calls] == ["L2"]
    assert "rtol" not in calls[0][1] and calls[0][1]["backend"] == "numpy"  # its default
    assert "pushover" in out["timings"]
    l1, l2 = out["rows"]
    assert all(l1[c] is None for c in PUSHOVER_COLUMNS)
    h = 0.5 * (l2["height_anterior_mm"] + l2["height_posterior_mm"])
    assert calls[0][1]["stop_offset"] == pytest.approx(0.002 * h)  # stopped at the run's offset
    assert calls[0][1]["stop_ratio"] == 1.0 - p["first_failure_drop"] == 0.98
    oy = bent.offset_yield(0.002 * h)
    assert 1800.0 < oy < 2050.0 and bent.first_failure_kind(0.02, 0.002 * h) == "offset"
    assert l2["strength_pushover_n"] == pytest.approx(oy, rel=1e-12)
    assert l2["strength_offset_yield_n"] == pytest.approx(oy, rel=1e-12)
    assert l2["strength_first_peak_n"] == 2060.0  # never fell 2 %: the largest force, a bound
    # the deformation and energy where the strength was read, on the crossing between steps
    x = np.concatenate([[0.0], u])
    y = np.concatenate([[0.0], f])
    at = l2["displacement_at_peak_mm"]
    assert 0.1 < at < 0.25 and np.interp(at, x, y) == pytest.approx(oy, rel=1e-9)
    fine = np.linspace(0.0, at, 200_001)
    assert l2["energy_to_failure_mj"] == pytest.approx(np.trapezoid(np.interp(fine, x, y), fine),
                                                       rel=1e-8)
    assert l2["factor_of_risk_pushover"] == pytest.approx(l2["load_n"] / oy)
    assert l2["pushover_peak_reached"] == 1.0 and l2["strength_pushover_by"] == "offset"
    assert l1["strength_pushover_by"] is None
    assert (l2["strength_n"], l2["strength_method"]) == (l2["strength_pushover_n"], "pushover")
    assert l2["factor_of_risk"] == l2["factor_of_risk_pushover"]
    assert l1["strength_method"] == "pistoia" and l1["strength_n"] == l1["strength_pistoia_n"]
    curve = pd.read_csv(tmp_path / "abc_curve.csv")
    assert list(curve["level"]) == ["L2"] * 6 and list(curve["force_n"]) == [0.0] + f
    # a run without the offset (0: as before 2026-12-07) reads its largest force
    calls.clear()
    off = execute(dict(p, first_failure_offset=0.0), str(tmp_path / "off.vtu"))
    assert "stop_offset" not in calls[0][1]
    assert off["rows"][1]["strength_pushover_n"] == 2060.0
    assert off["rows"][1]["strength_pushover_by"] == "cap"  # still rising where it stopped
    assert off["rows"][1]["strength_offset_yield_n"] == pytest.approx(oy, rel=1e-12)
    # another offset: the offset-yield column is read at it too (it had stayed at 0.2 %)
    calls.clear()
    wide = execute(dict(p, first_failure_offset=0.001), str(tmp_path / "wide.vtu"))
    assert wide["rows"][1]["strength_offset_yield_n"] == pytest.approx(
        bent.offset_yield(0.001 * h), rel=1e-12)
    assert bent.offset_yield(0.001 * h) < oy
    calls.clear()
    plain = execute(dict(p, strength="pistoia"))
    assert not calls and "pushover" not in plain["timings"]
    assert all(np.isnan(r[c]) if isinstance(r[c], float) else r[c] is None
               for r in plain["rows"] for c in PUSHOVER_COLUMNS)


def test_an_old_store_gains_the_new_metric_columns(tmp_path):
    """A store written before the pushover columns gets them (NULL for its runs) on opening."""
    from fem.study.store import DB_NAME

    store = Store(tmp_path, create=True)
    store.close()
    db = sqlite3.connect(tmp_path / DB_NAME)
    db.execute("ALTER TABLE metrics DROP COLUMN strength_pushover_n")
    db.commit()
    db.close()
    store = Store(tmp_path)
    cols = {r[1] for r in store.db.execute("PRAGMA table_info(metrics)")}
    assert "strength_pushover_n" in cols
    store.close()


def test_a_schema_1_store_is_migrated_to_the_placed_cement_name(finished, tmp_path):
    """Schema 1 named the cement a level holds ``cement_volume_ml`` in its metrics table, the
    name of the volume a run asks for; opening the store renames the column (values kept),
    records schema 2, and the summary has both: requested and placed."""
    folder = copy_study(finished["out"], tmp_path / "v1")
    db = sqlite3.connect(folder / "study.sqlite")
    with db:
        db.execute('ALTER TABLE metrics RENAME COLUMN "cement_placed_ml" TO "cement_volume_ml"')
        db.execute("UPDATE metrics SET cement_volume_ml = 1.25")
        db.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")
    db.close()
    df = Study(folder).results()
    assert SCHEMA_VERSION == 2
    assert (df["cement_placed_ml"] == 1.25).all()
    cemented = df["procedure"].isin(["pvp", "pkp"])
    assert (df.loc[~cemented, "cement_volume_ml"] == 0.0).all()
    assert (df.loc[cemented, "cement_volume_ml"] > 0.0).all()  # what the spec asked
    db = sqlite3.connect(folder / "study.sqlite")
    cols = {r[1] for r in db.execute("PRAGMA table_info(metrics)")}
    version = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0]
    db.close()
    assert "cement_placed_ml" in cols and "cement_volume_ml" not in cols and version == "2"


def test_the_headline_strength_is_the_pushover_where_one_ran(finished, tmp_path):
    """The summary's strength_n / factor_of_risk: a pushover's where a row has one, else the
    Pistoia proxy's, as strength_method says; a store written before these columns (NULL
    there, factor_of_risk holding the Pistoia one) reads the same way."""
    import numpy as np
    import pandas as pd

    from fem.study.execute import PISTOIA_RESULT_COLUMNS, result_columns

    folder = copy_study(finished["out"], tmp_path / "old")
    db = sqlite3.connect(folder / "study.sqlite")
    ((rid, level),) = db.execute("SELECT run_id, level FROM metrics LIMIT 1").fetchall()
    db.execute("UPDATE metrics SET strength_n = NULL, strength_method = NULL, "
               "factor_of_risk_pistoia = NULL")
    db.execute("UPDATE metrics SET strength_pushover_n = 2 * strength_pistoia_n "
               "WHERE run_id = ? AND level = ?", (rid, level))
    db.commit()
    db.close()
    df = Study(folder).results()
    pushed = (df["run_id"] == rid) & (df["level"] == level)
    assert list(df.loc[pushed, "strength_method"]) == ["pushover"]
    assert set(df.loc[~pushed, "strength_method"]) == {"pistoia"}
    r = df[pushed].iloc[0]
    assert r["strength_n"] == pytest.approx(2.0 * r["strength_pistoia_n"], rel=1e-12)
    assert r["factor_of_risk"] == pytest.approx(r["load_n"] / r["strength_n"], rel=1e-12)
    assert r["factor_of_risk_pistoia"] == pytest.approx(2.0 * r["factor_of_risk"], rel=1e-12)
    rest = df[~pushed]
    np.testing.assert_allclose(rest["strength_n"], rest["strength_pistoia_n"], rtol=1e-12)
    np.testing.assert_allclose(rest["factor_of_risk"], rest["load_n"] / rest["strength_n"],
                               rtol=1e-12)
    assert set(PISTOIA_RESULT_COLUMNS) <= set(result_columns(df))
    plain = Study(finished["out"]).results()  # no pushover: the headline is the Pistoia one
    assert (plain["strength_method"] == "pistoia").all()
    assert not set(PISTOIA_RESULT_COLUMNS) & set(result_columns(plain))
    pd.testing.assert_series_equal(plain["factor_of_risk"], plain["factor_of_risk_pistoia"],
                                   check_names=False)


@pytest.mark.slow
def test_a_pushover_run_gives_a_level_strength():
    """A real pushover in a run: an intact L2 alone at 3 mm. (At 4 mm its secant iteration
    stalls 0.05 % below the peak, just above tol: a known limit, docs/nonlinear.md.)"""
    import math

    from fem.study.recipe import execute

    out = execute(_pushover_run(procedure="intact", voxel_size=3.0))
    (row,) = out["rows"]
    s = row["strength_pushover_n"]
    assert s > 0 and math.isfinite(s)
    assert row["factor_of_risk_pushover"] == pytest.approx(row["load_n"] / s)
    assert row["displacement_at_peak_mm"] > 0 and row["energy_to_failure_mj"] > 0
    # above the load applied, of the order of the linear (Pistoia) estimate
    assert row["load_n"] < s < 5 * row["strength_pistoia_n"]


def test_levels_auto_centres_the_segment_on_the_treated_level():
    """levels = "auto": two free levels above and below the treated (else fractured) level,
    clipped at the spine's ends; a run's parameters name the real levels, so its id is that of
    the same run written out; without a level to centre on, an error naming the key."""
    base = {"voxel_size": 3.0, "levels": "auto"}

    def levels(**kw):
        return [p["levels"] for p in StudySpec.from_dict(
            {"study": {"name": "auto"}, "base": {**base, **kw}}).expand()]

    assert levels(fracture_level="L2") == ["T12-L4"]
    assert levels(fracture_level="L2", treated_level="L3") == ["L1-L5"]
    assert levels(fracture_level="L5") == ["L3-L5"] and levels(treated_level="T6") == ["T6-T8"]
    (auto,) = StudySpec.from_dict({"study": {"name": "a"},
                                   "base": {**base, "fracture_level": "L2"}}).expand()
    (named,) = StudySpec.from_dict({"study": {"name": "a"}, "base": {
        **base, "levels": "T12-L4", "fracture_level": "L2"}}).expand()
    assert run_id(auto) == run_id(named)
    with pytest.raises(SpecError, match="base.levels.*centres the segment"):
        StudySpec.from_dict({"study": {"name": "a"}, "base": base}).expand()
    # it is the default: a fractured L2 and no levels is T12-L4; with no level to centre on the
    # spec is refused before any run, saying what to give
    (dflt,) = StudySpec.from_dict({"study": {"name": "a"}, "base": {
        "voxel_size": 3.0, "fracture_level": "L2"}}).expand()
    assert dflt["levels"] == "T12-L4" and run_id(dflt) == run_id(named)
    with pytest.raises(SpecError, match=r"the default.*name the levels.*default of 'levels'"):
        StudySpec.from_dict({"study": {"name": "a"}, "base": {"voxel_size": 3.0}}).expand()


@pytest.mark.parametrize("where", ["submitting", "recording"])
def test_a_stop_between_claim_and_record_gives_the_run_back(tmp_path, monkeypatch, where):
    """A stop (KeyboardInterrupt from the SIGINT/SIGTERM handler) can come after a run was
    claimed but before it was submitted (starting a worker process takes a while), or after it
    ended but before it was recorded: the run then is in no list of runs in flight, and once
    stayed 'running' after the study had stopped (seen in the SIGINT test under load)."""
    import fem.study.execute as ex

    spec = grid_spec(tmp_path / "grid.toml", "raced", bmd=[60.0, 70.0], load_cases=["standing"])
    study = Study(tmp_path / "study", spec)
    if where == "submitting":
        def submit(*args, **kwargs):
            raise KeyboardInterrupt
        monkeypatch.setattr(ex, "_submit", submit)
    else:
        def finish(*args, **kwargs):
            raise KeyboardInterrupt
        monkeypatch.setattr(study.store, "finish", finish)
    with pytest.raises(KeyboardInterrupt):
        study.run(progress=False, log=lambda msg: None)
    runs = runs_table(tmp_path / "study")
    assert len(runs) == 2 and {v["status"] for v in runs.values()} == {"pending"}
    assert {v["attempts"] for v in runs.values()} == {0}


def test_an_exception_that_cannot_be_pickled_comes_back_with_its_type_and_message():
    """A run's exception crosses the process boundary by pickling. A pushover's ConvergenceError
    carries its partial result (arrays that name their backend module): it used to come back as
    "TypeError: cannot pickle 'module' object", which hid why the run failed."""
    import pickle
    import types

    from fem.errors import ConvergenceError
    from fem.study.execute import portable

    exc = ConvergenceError("step 9 did not converge", [0.1, 0.05])
    exc.partial = types.SimpleNamespace(xp=pickle)  # a module, as the partial result holds
    with pytest.raises(TypeError, match="pickle"):
        pickle.dumps(exc)
    back = pickle.loads(pickle.dumps(portable(exc)))
    assert type(back) is ConvergenceError and str(back) == "step 9 did not converge"
    assert back.residuals == [0.1, 0.05] and not hasattr(back, "partial")
    plain = ValueError("fine")
    assert portable(plain) is plain



def test_a_cleft_too_fine_for_the_voxels_names_the_specs_remedy():
    """At 4 mm voxels the damaged band under L3's collapsed endplate holds no element close
    enough for compress to open a cleft in: the error names the spec's keys (voxel_size, cleft),
    not compress's arguments alone; at 3 mm the same spec builds a cleft."""
    from fem.errors import MeshError
    from fem.study.recipe import build_model

    def params(voxel):
        return StudySpec.from_dict({"study": {"name": "c"}, "base": {
            "fracture_level": "L3", "procedure": "fractured", "cleft": True,
            "voxel_size": voxel}, "runs": [{}]}).expand()[0]

    with pytest.raises(MeshError, match=r"cleft.*voxel_size 4 mm.*finer mesh"):
        build_model(params(4.0))
    assert len(build_model(params(3.0)).regions["L3/cleft"]) > 0
