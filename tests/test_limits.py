"""One table of parameter limits (issue 18, deliverable 4): the builders and the study spec read
fem.limits.LIMITS, so a value one refuses the others refuse too, with a ParameterError (a
ModelError and a ValueError) that names the parameter, its limits and the value."""

from __future__ import annotations

import pytest

import fem
from fem.limits import LIMITS, Limit
from fem.meshes import rigs, ssm, ssm_gmsh, vertebra, vertebra_gmsh
from fem.study.spec import SpecError, StudySpec

BUILDERS = {
    "voxel_size": [lambda v: vertebra.segment_model("L1", voxel_size=v),
                   lambda v: rigs.potted_body("L1", voxel_size=v),
                   lambda v: ssm.ssm_segment_model("L3", voxel_size=v)],
    "mesh_size": [lambda v: vertebra_gmsh.segment_model_tet10("L1", mesh_size=v),
                  lambda v: ssm_gmsh.ssm_segment_model_tet10("L3", mesh_size=v)],
}


def _outside(lim: Limit) -> list[float]:
    return [lim.low - 0.01 * abs(lim.low or 1.0), lim.high * 1.01, float("nan")]


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_every_builder_refuses_what_the_table_refuses(name):
    lim = LIMITS[name]
    for build in BUILDERS[name]:
        for v in _outside(lim):
            with pytest.raises(fem.ParameterError, match=name) as err:
                build(v)
            assert lim.describe() in str(err.value) and isinstance(err.value, ValueError)


@pytest.mark.parametrize("name", ["voxel_size", "mesh_size", "bmd", "cement_volume_ml"])
def test_the_study_spec_refuses_and_accepts_as_the_table_does(name):
    lim = LIMITS[name]
    base = {"levels": "L1-L3", **({"mesh": "tet10"} if name == "mesh_size" else {})}
    for v in _outside(lim)[:2]:
        with pytest.raises(SpecError, match=name):
            StudySpec.from_dict({"study": {"name": "x"}, "base": {**base, name: v}})
    for v in (lim.low, lim.high):
        StudySpec.from_dict({"study": {"name": "x"}, "base": {**base, name: v}})


def test_the_ends_of_a_limit():
    nu = LIMITS["poisson"]
    assert not nu.contains(0.5) and not nu.contains(-1.0) and nu.contains(0.499)
    assert nu.describe() == "(-1, 0.5)"
    assert LIMITS["voxel_size"].describe() == "[0.25, 5] mm"
    assert not LIMITS["voxel_size"].contains("two") and LIMITS["voxel_size"].contains(5.0)
    with pytest.raises(fem.MaterialError, match=r"\(-1, 0.5\)"):
        fem.VoxelModel([[[1.0]]], nu=0.5)


def test_the_coarsest_voxel_the_table_allows_builds():
    m = vertebra.segment_model("L1", voxel_size=LIMITS["voxel_size"].high)
    assert m.n_elements > 0
