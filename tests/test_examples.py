"""Every script in examples/ runs (at a small size) and prints what it promises."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

CASES = {
    "parametric_vertebra.py": (["--voxel", "2.0"], ["intact", "wedge", "stiffness"]),
    "segment_flexion.py": (["--voxel", "2.5"], ["T12", "L1", "L2", "reactions balance"]),
    "disc_large_deformation.py": (["--voxel", "5", "--load", "500", "--increments", "2"],
                                  ["small strain", "large deformation", "undrained",
                                   "nucleus pressure"]),
    "ct_vertebra.py": (["--shape", "40", "40", "30"], ["calibration from 4 rods", "N/mm"]),
    "patient_ct.py": (["--voxel", "4.0", "--levels", "L1-L2"],
                      ["pkp    L2", "trabecular core", "patient vs parametric", "report:"]),
}
#: examples that read the shared data (../shared/data): skipped visibly where it is absent
SHARED = {"patient_ct.py": EXAMPLES.parents[1] / "shared" / "data" / "ct-abdomen-totalsegmentator"}
#: examples run, with their numbers checked, by their own test file
OWN_TESTS = {"augmentation_study.py": "test_canonical_study.py"}


def test_every_example_is_covered():
    assert sorted(p.name for p in EXAMPLES.glob("*.py")) == sorted({**CASES, **OWN_TESTS})
    here = Path(__file__).resolve().parent
    assert all((here / t).exists() for t in OWN_TESTS.values())


@pytest.mark.parametrize("name", sorted(CASES))
def test_example_runs(name, tmp_path, capsys):
    if name in SHARED and not SHARED[name].is_dir():
        pytest.skip(f"{name} reads the shared data, absent here ({SHARED[name]})")
    args, expected = CASES[name]
    spec = importlib.util.spec_from_file_location(name[:-3], EXAMPLES / name)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.main(args + ["--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    for text in expected:
        assert text in out
    assert list(tmp_path.glob("*.vtu"))
