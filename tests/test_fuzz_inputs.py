"""Fuzzing the other readers (issue 17, deliverable 2): study specs, study stores and CT images.
Whatever the input, the reader gives a result or one ``fem.ModelError`` with a message, never
another exception. Fixed, derandomised examples in CI; ``FEM_FUZZ_SCALE`` multiplies them for a
longer, randomised run (bench/fuzz.py sets it), as in tests/test_fuzz.py."""

from __future__ import annotations

import shutil
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_fuzz import FUZZ, SCALE, byte_ops, line_ops, mutate, mutate_bytes

import fem

SPEC = """\
[study]
name = "fuzz"
recipe = "augmentation"

[base]
levels = "L1-L2"
voxel_size = 3.0
bmd = 70.0
fracture_level = "L2"
fracture_shape = "wedge"
fracture_grade = 2
approach = "bipedicular"
cement = "pmma"
solver = "direct"
strength = "pistoia"

[grid]
load_case = ["standing", "flexion"]
bmd = [60.0, 80.0]

[[runs]]
procedure = "intact"

[[runs]]
procedure = "pvp"
cement_volume_ml = 4.0
seed = 3

[[runs]]
procedure = "pkp"
cement_volume_ml = 4.0
height_restoration = 0.5
"""
SPEC_TOKENS = ["=", "[", "]", "[[runs]]", "[grid]", "[base]", '"', "'", "#", "-1", "0", "1e400",
               "nan", "inf", "-inf", "true", "{}", "[]", '"L9-L1"', '"T1-S1"', '"L1-L3"',
               "levels", "voxel_size", "seed", "procedure", "cement_volume_ml", "strength",
               '"pushover"', '"all"', "strength_levels", "load_case", '"lifting"', "2.5e-320",
               "9" * 400, "é", "\x00", "\t", " = ", "fracture_grade = 7", "max_runs"]
spec_ops = st.one_of(
    line_ops,
    st.tuples(st.just("chars"), st.integers(0, 10**6), st.integers(0, 60),
              st.sampled_from(SPEC_TOKENS) | st.text(max_size=4)),
)


def _model_error_only(fn):
    """Call ``fn``; a ModelError must carry a message; any other exception propagates."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return fn()
        except fem.ModelError as exc:
            assert str(exc).strip(), "a ModelError needs a message"
            return None


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz-inputs")


def test_the_seed_spec_is_valid(work):
    from fem.study import StudySpec

    p = work / "seed.toml"
    p.write_text(SPEC)
    spec = StudySpec.from_toml(p)
    assert len(spec.expand()) == 12  # 3 runs x 2 load cases x 2 densities


@settings(FUZZ, max_examples=600 * SCALE)
@given(ops=st.lists(spec_ops, min_size=1, max_size=5))
def test_mutated_specs_raise_only_model_errors(work, ops):
    """Mutated specs: read, check and expand (everything `vfem study` does before a run)."""
    from fem.study import StudySpec

    p = work / "spec.toml"
    p.write_text("\n".join(mutate(SPEC.splitlines(), ops)) + "\n", encoding="utf-8",
                 errors="surrogatepass")

    def read():
        spec = StudySpec.from_toml(p)
        spec.check(100)
        spec.expand()

    _model_error_only(read)


@pytest.fixture(scope="module")
def store_seed(work):
    """A small finished store: two runs registered, one of them done with its metrics rows."""
    from fem.study import Study

    folder = work / "store-seed"
    spec = work / "store.toml"
    spec.write_text(SPEC.replace("bmd = [60.0, 80.0]", "bmd = [60.0]")
                    .replace('load_case = ["standing", "flexion"]', 'load_case = ["standing"]'))
    study = Study(folder, spec)
    rid, params = study.store.claim()
    rows = [{"level": lv, "load_n": 500.0, "stiffness_n_per_mm": 1.0e4,
             "strength_pistoia_n": 2000.0, "factor_of_risk_pistoia": 0.25,
             "leak_locations": "", "strength_method": "pistoia"} for lv in ("L1", "L2")]
    study.store.finish(rid, {"rows": rows, "timings": {"total": 1.0}, "backend": "numpy",
                             "solver": "direct", "iterations": 0, "n_dof": 10}, None)
    study.store.close()
    assert len(Study(folder).results()) == 2
    return folder


@settings(FUZZ, max_examples=300 * SCALE)
@given(ops=st.lists(byte_ops, min_size=1, max_size=4))
def test_mutated_stores_raise_only_model_errors(work, store_seed, ops):
    """Bytes of study.sqlite flipped, cut, inserted or truncated: opening the study and reading
    its results and counts give a result or one ModelError (a StoreError)."""
    import uuid

    from fem.study import Study

    folder = work / f"store-{uuid.uuid4().hex[:12]}"  # SQLite's -wal of the last one may linger
    shutil.copytree(store_seed, folder, ignore=shutil.ignore_patterns("*-wal", "*-shm"))
    db = folder / "study.sqlite"
    db.write_bytes(mutate_bytes(db.read_bytes(), ops))

    def read():
        study = Study(folder)
        try:
            study.results()
            study.store.counts()
        finally:
            study.store.close()

    try:
        _model_error_only(read)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def nifti_seed(work):
    nib = pytest.importorskip("nibabel")
    rng = np.random.default_rng(0)
    data = rng.integers(-1000, 1500, size=(6, 5, 4)).astype(np.int16)
    path = work / "ct.nii"
    nib.save(nib.Nifti1Image(data, np.diag([-0.7, -0.7, 1.25, 1.0])), str(path))
    from fem.meshes.ct import read_nifti

    image = read_nifti(path)
    assert image.hu.size == data.size
    return path.read_bytes()


@settings(FUZZ, max_examples=300 * SCALE)
@given(ops=st.lists(byte_ops, min_size=1, max_size=4))
def test_mutated_ct_images_raise_only_model_errors(work, nifti_seed, ops):
    """Bytes of a NIfTI CT image mutated (header, affine, data): reading it and building a
    voxel density from it give a result or one ModelError."""
    from fem.meshes.ct import Calibration, read_nifti, voxel_density

    p = work / "mutated.nii"
    p.write_bytes(mutate_bytes(nifti_seed, ops))

    def read():
        image = read_nifti(p)
        voxel_density(image, Calibration(slope=1.0, intercept=0.0))

    _model_error_only(read)


def test_what_the_longer_fuzz_found(work, store_seed):
    """Regressions from `bench/fuzz.py --scale 20`: an integer of thousands of digits in a spec
    (tomllib's ValueError), a run record whose JSON or text is damaged inside a sound page (SQLite's
    integrity check passes it), each now one ModelError naming what is damaged; a damaged run is
    not taken."""
    import sqlite3

    from fem.study import Study, StudySpec
    from fem.study.spec import SpecError
    from fem.study.store import StoreError

    p = work / "digits.toml"
    p.write_text(SPEC.replace("seed = 3", "seed = " + "9" * 5000))
    with pytest.raises(SpecError, match="not a TOML spec this reader can take"):
        StudySpec.from_toml(p)

    for sql, what in (("UPDATE runs SET params = '{\"bmd\" 60' WHERE status = 'pending'",
                       "the parameters of run"),
                      ("UPDATE runs SET run_id = CAST(X'ff61' AS TEXT) WHERE status = 'done'",
                       "its runs table")):
        folder = work / "damaged"
        if folder.exists():
            shutil.rmtree(folder)
        shutil.copytree(store_seed, folder, ignore=shutil.ignore_patterns("*-wal", "*-shm"))
        db = sqlite3.connect(folder / "study.sqlite")
        db.execute(sql)
        db.commit()
        db.close()
        study = Study(folder)
        with pytest.raises(StoreError, match=f"is damaged \\({what}"):
            study.results()
        if "params" in sql:
            with pytest.raises(StoreError, match="the parameters of run"):
                study.store.claim()
            assert study.store.counts().get("running", 0) == 0  # left as it was
        study.store.close()


@pytest.fixture(scope="module")
def dicom_seed(work):
    """A three-slice DICOM series (the writer of tests/test_ct.py), its files' bytes."""
    pytest.importorskip("pydicom")
    from test_ct import write_dicom_series

    from fem.meshes.ct import read_dicom_series

    folder = work / "dicom-seed"
    hu = np.random.default_rng(1).integers(-1000, 1500, (5, 4, 3)).astype(float)
    write_dicom_series(folder, hu, (0.6, 0.7, 1.5), (-12.0, 8.0, 100.0))
    assert read_dicom_series(folder).hu.shape == hu.shape
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


@settings(FUZZ, max_examples=300 * SCALE)
@given(which=st.integers(0, 2), ops=st.lists(byte_ops, min_size=1, max_size=4))
def test_mutated_dicom_series_raise_only_model_errors(work, dicom_seed, which, ops):
    """Bytes of one slice of a DICOM series mutated (its header's tags, spacing, position,
    rescale, pixel data): reading the series gives an image or one ModelError."""
    from fem.meshes.ct import read_dicom_series

    folder = work / "dicom"
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir()
    names = sorted(dicom_seed)
    for k, name in enumerate(names):
        data = dicom_seed[name]
        (folder / name).write_bytes(mutate_bytes(data, ops) if k == which else data)
    _model_error_only(lambda: read_dicom_series(folder))


def test_a_slice_with_a_damaged_rescale_is_one_error(work, dicom_seed):
    """Found by the longer fuzz: a RescaleSlope that is not a number (here "x") was read
    outside the reader's guard and raised ValueError; now one error naming the file."""
    from fem.meshes.ct import read_dicom_series

    folder = work / "dicom-rescale"
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir()
    names = sorted(dicom_seed)
    for name in names:
        (folder / name).write_bytes(dicom_seed[name])
    raw = bytearray(dicom_seed[names[1]])
    tag = raw.find(b"\x28\x00\x53\x10DS")  # (0028,1053) RescaleSlope, explicit VR little endian
    assert tag > 0
    n = int.from_bytes(raw[tag + 6:tag + 8], "little")
    raw[tag + 8:tag + 8 + n] = b"x".ljust(n, b" ")
    (folder / names[1]).write_bytes(bytes(raw))
    with pytest.raises(fem.InputFileError, match=f"{names[1]}: not a readable CT slice"):
        read_dicom_series(folder)
