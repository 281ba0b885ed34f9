"""The anatomy type (issue 18, deliverable 2): every builder fills a fem.anatomy.Anatomy, the
procedures read it, it moves with the model, it survives the model record, and an older
release's dict form is still read (with a deprecation warning on dict access)."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

import fem
from fem.anatomy import Anatomy, LevelAnatomy, level_frame
from fem.io.record import apply_model_record, model_record
from fem.meshes import rigs, vertebra
from fem.meshes.transform import rigid_transform, rotation_matrix
from fem.parts import BUILT_BONE, PARTS

SSM = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "lumbar-ssm-mean")


@pytest.fixture(scope="module")
def segment():
    return vertebra.segment_model("L1-L2", voxel_size=2.0)


def _check_filled(m, names):
    assert isinstance(m.anatomy, Anatomy) and m.anatomy.levels == names == m.metadata["levels"]
    for n in names:
        a = m.anatomy[n]
        assert a.parts == tuple(p for p in PARTS if f"{n}/{p}" in m.regions)
        assert a.superior_set in m.node_sets and a.inferior_set in m.node_sets
        f = a.frame()
        basis = np.stack([f.axial, f.anterior, f.lateral])
        np.testing.assert_allclose(basis @ basis.T, np.eye(3), atol=1e-12)
        assert np.linalg.det(basis) == pytest.approx(1.0)
        # the superior endplate's nodes lie above its inferior one's along the axis
        up = (m.points[m.node_sets[a.superior_set]] - a.centre) @ f.axial
        down = (m.points[m.node_sets[a.inferior_set]] - a.centre) @ f.axial
        assert up.mean() > 0.25 * a.height and down.mean() < -0.25 * a.height


def test_parametric_segment_fills_the_type(segment):
    _check_filled(segment, ["L1", "L2"])
    a = segment.anatomy["L1"]
    assert set(BUILT_BONE) <= set(a.parts) and a.dims is vertebra.LEVELS["L1"]
    assert a.z0 is not None and a.rim == vertebra.LEVELS["L1"].rim
    # the body centre lies between its endplates
    assert a.inferior_centre[2] < a.centre[2] < a.superior_centre[2]


def test_potted_body_fills_the_type():
    m = rigs.potted_body("L1", voxel_size=2.0)
    _check_filled(m, ["L1"])
    assert "posterior" not in m.anatomy["L1"].parts  # cut at the pedicles


@pytest.mark.skipif(not os.path.isdir(SSM), reason="shared data lumbar-ssm-mean is absent")
def test_shape_model_segment_fills_the_type():
    from fem.meshes.ssm import ssm_segment_model

    m = ssm_segment_model("L3", voxel_size=2.0)
    _check_filled(m, ["L3"])
    a = m.anatomy["L3"]
    assert a.posterior_wall_y is not None and a.dims.height == pytest.approx(a.height)


def test_it_moves_with_the_model_and_the_frame_with_it(segment):
    R = rotation_matrix((1.0, 2.0, 0.5), 35.0)
    t = np.array([3.0, -4.0, 10.0])
    out = rigid_transform(segment, R, t)
    f0, f1 = level_frame(segment, "L2"), level_frame(out, "L2")
    for key in ("axial", "anterior", "lateral"):
        np.testing.assert_allclose(getattr(f1, key), R @ getattr(f0, key), atol=1e-12)
    np.testing.assert_allclose(f1.centre, R @ f0.centre + t, atol=1e-12)
    assert segment.anatomy["L2"].centre is not out.anatomy["L2"].centre  # a copy, not a view
    with pytest.raises(ValueError, match="read-only"):
        out.anatomy["L2"].centre[0] = 1.0


def test_record_round_trip_through_json(segment):
    rec = json.loads(json.dumps(model_record(segment)))
    back = apply_model_record(fem.Model.from_arrays(segment.points, [("hex8", segment.blocks[0].conn)]),
                              rec)
    for n in ("L1", "L2"):
        a, b = segment.anatomy[n], back.anatomy[n]
        for key in ("centre", "superior_centre", "inferior_centre"):
            np.testing.assert_allclose(getattr(b, key), getattr(a, key), atol=1e-12)
        for side in ("left", "right"):
            np.testing.assert_allclose(b.pedicle_axes[side], a.pedicle_axes[side], atol=1e-12)
        assert (b.width, b.depth, b.height, b.parts, b.rim, b.z0) == (
            a.width, a.depth, a.height, a.parts, a.rim, a.z0)
        assert b.dims.depth == a.dims.depth  # attribute access, as the views read it
        np.testing.assert_allclose(level_frame(back, n).anterior, level_frame(segment, n).anterior)


def test_an_older_release_s_dict_form_is_read_and_dict_access_warns(segment):
    a = segment.anatomy["L1"]
    old = {"L1": dict(centre=tuple(a.centre), superior_centre=list(a.superior_centre),
                      inferior_centre=a.inferior_centre.tolist(), width=a.width, depth=a.depth,
                      height=a.height, z0=a.z0, pedicle_axes=a.pedicle_axes,
                      dims={"rim": 3.0, "__record__": "LevelDims"}, note="kept")}
    m = fem.Model()
    m.metadata["anatomy"] = old
    b = m.anatomy["L1"]
    assert isinstance(m.metadata["anatomy"], Anatomy)
    assert b.rim == 3.0 and b.extra == {"note": "kept"}
    np.testing.assert_allclose(b.frame().anterior, a.frame().anterior)
    with pytest.warns(DeprecationWarning, match=r"model.anatomy\[level\].centre"):
        np.testing.assert_array_equal(b["centre"], a.centre)
    with pytest.warns(DeprecationWarning), pytest.raises(KeyError):
        b["no_such_key"]


def test_bad_anatomy_names_the_fault(segment):
    a = segment.anatomy["L1"]
    with pytest.raises(fem.SetError, match=r"'L7' is not in this model .*L1, L2"):
        segment.anatomy["L7"]
    with pytest.raises(fem.MeshError, match="names each level once"):
        Anatomy([a, a])
    with pytest.raises(fem.MeshError, match="'left' and 'right'"):
        LevelAnatomy("L1", a.centre, a.superior_centre, a.inferior_centre,
                      {"left": a.pedicle_axes["left"]}, a.width, a.depth, a.height)
    with pytest.raises(fem.MeshError, match="L1 left pedicle direction is a zero vector"):
        LevelAnatomy("L1", a.centre, a.superior_centre, a.inferior_centre,
                     {"left": (a.centre, (0, 0, 0)), "right": a.pedicle_axes["right"]},
                     a.width, a.depth, a.height)
    with pytest.raises(fem.MeshError, match="L1 width must be > 0 mm"):
        LevelAnatomy("L1", a.centre, a.superior_centre, a.inferior_centre, a.pedicle_axes,
                     -1.0, a.depth, a.height)
    with pytest.raises(fem.MeshError, match="L1 centre must be three finite numbers"):
        LevelAnatomy("L1", (0.0, np.nan, 0.0), a.superior_centre, a.inferior_centre,
                     a.pedicle_axes, a.width, a.depth, a.height)
    with pytest.raises(TypeError, match="fem.anatomy.Anatomy"):
        segment.copy().anatomy = {"L1": a}
    m = fem.Model()
    assert len(m.anatomy) == 0
    with pytest.raises(fem.SetError, match="none"):
        level_frame(m, "L1")


def test_a_fracture_reads_the_type_and_refuses_a_level_without_dimensions(segment):
    from fem.meshes.pathology import compress

    f = compress(segment, "L2", "wedge")
    assert f.anatomy["L2"].dims is not None
    m = segment.copy()
    m.anatomy = m.anatomy.replaced(LevelAnatomy(
        "L2", **{k: getattr(segment.anatomy["L2"], k) for k in
                 ("centre", "superior_centre", "inferior_centre", "pedicle_axes", "width",
                  "depth", "height")}))
    with pytest.raises(fem.MeshError, match="L2's anatomy has no parametric dimensions"):
        compress(m, "L2", "wedge")
