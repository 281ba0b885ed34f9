"""fem.meshes.transform: rigid motions move every position and direction, and nothing else.

The physics check: a rigidly moved model, solved again, gives the moved solution (u' = R u,
sigma' = R sigma R^T), which only holds if every load and support moved with it.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pytest

import fem
from fem import metrics
from fem.meshes import loadcases, pathology, vertebra
from fem.meshes.blocks import hex_block
from fem.meshes.transform import rigid_transform, rotation_matrix
from fem.result import _from_voigt

R = rotation_matrix((0.3, -0.5, 0.8), 37.0)
T = np.array([12.0, -4.0, 7.5])


@dataclass(frozen=True)
class Leak:
    region: str
    volume_ml: float
    centroid: tuple


@dataclass(frozen=True)
class Augmentation:
    level: str
    volume_ml: float
    leaks: tuple
    direction: tuple


@pytest.fixture(scope="module")
def fractured_l1():
    m = vertebra.segment_model("L1", voxel_size=2.0, posterior=False)
    m = pathology.compress(m, "L1", "wedge", grade=2)
    m = pathology.add_lesion(m, "L1", "haemangioma", "centre", (6.0, 5.0, 4.0))
    m.metadata["augmentations"] = [Augmentation(
        "L1", 4.0, (Leak("L1/cement_leak", 0.3, (1.0, 2.0, 3.0)),), (0.0, -1.0, 0.0))]
    m = loadcases.loaded(m, "flexion")
    top = m.node_sets["top"]
    m.add(fem.TotalForce("top", (1.0, 2.0, -3.0)), fem.NodalForce(top[:3], (0.5, 0.0, 0.1)),
          fem.Traction("top", (0.01, 0.0, -0.02)), fem.Pressure("top", 0.1))
    return m


def test_positions_directions_and_conditions_move(fractured_l1):
    m = fractured_l1
    before = m.points.copy()
    out = rigid_transform(m, R, T)
    np.testing.assert_array_equal(m.points, before)  # the original is untouched
    assert "rotated" not in m.metadata
    np.testing.assert_allclose(out.points, before @ R.T + T, atol=1e-12)
    a0, a1 = m.anatomy["L1"], out.anatomy["L1"]
    for key in ("centre", "superior_centre", "inferior_centre"):
        np.testing.assert_allclose(getattr(a1, key), R @ getattr(a0, key) + T, atol=1e-12)
    for side in ("left", "right"):
        (e0, d0), (e1, d1) = a0.pedicle_axes[side], a1.pedicle_axes[side]
        np.testing.assert_allclose(e1, R @ e0 + T, atol=1e-12)
        np.testing.assert_allclose(d1, R @ d0, atol=1e-15)
    assert a1.width == a0.width and a1.dims == a0.dims is not None
    np.testing.assert_allclose(out.metadata["collapse"]["L1"],
                               m.metadata["collapse"]["L1"] @ R.T, atol=1e-12)
    np.testing.assert_allclose(out.metadata["lesions"][0].centre,
                               R @ np.asarray(m.metadata["lesions"][0].centre) + T, atol=1e-12)
    aug0, aug1 = m.metadata["augmentations"][0], out.metadata["augmentations"][0]
    np.testing.assert_allclose(aug1.leaks[0].centroid, R @ np.array([1.0, 2.0, 3.0]) + T,
                               atol=1e-12)
    np.testing.assert_allclose(aug1.direction, R @ np.array(aug0.direction), atol=1e-15)
    assert aug1.volume_ml == 4.0 and aug1.leaks[0].region == "L1/cement_leak"

    moved = {type(c).__name__: (c0, c) for c0, c in zip(m.conditions, out.conditions)}
    c0, c1 = moved["RigidPlate"]
    np.testing.assert_allclose(c1.force, R @ np.array(c0.force), atol=1e-12)
    np.testing.assert_allclose(c1.moment, R @ np.array(c0.moment), atol=1e-9)
    np.testing.assert_allclose(c1.reference, R @ np.array(c0.reference) + T, atol=1e-12)
    assert c1.name == c0.name == "load:flexion"
    for kind, attr in (("TotalForce", "force"), ("NodalForce", "force"),
                       ("Traction", "traction")):
        c0, c1 = moved[kind]
        np.testing.assert_allclose(getattr(c1, attr), R @ np.array(getattr(c0, attr)),
                                   atol=1e-15)
    assert moved["Pressure"][1].pressure == 0.1
    field = m.copy()  # a force field turns row by row
    F = np.arange(12.0).reshape(4, 3)
    field.conditions = [fem.NodalForce(m.node_sets["top"][:4], F)]
    np.testing.assert_allclose(rigid_transform(field, R, T).conditions[0].force, F @ R.T,
                               atol=1e-12)
    assert moved["Fixed"][1].dofs == "xyz"
    assert out.metadata["rotated"] is True
    # the level frame turns with the model
    f0, f1 = metrics.level_frame(m, "L1"), metrics.level_frame(out, "L1")
    for v in ("axial", "anterior", "lateral"):
        np.testing.assert_allclose(getattr(f1, v), R @ getattr(f0, v), atol=1e-14)
    np.testing.assert_allclose(f0.axial, [0, 0, 1], atol=1e-14)
    np.testing.assert_allclose(f0.anterior, [0, -1, 0], atol=1e-14)
    np.testing.assert_allclose(f0.lateral, [1, 0, 0], atol=1e-14)  # patient's left = +x
    # geometry measured in the level frame does not move
    np.testing.assert_allclose(metrics.body_heights(out, "L1"), metrics.body_heights(m, "L1"),
                               rtol=1e-12)
    with pytest.raises(fem.MeshError, match="rigid_transform"):
        pathology.compress(out, "L1", "wedge", grade=1)


def test_motions_compose(fractured_l1):
    R2 = rotation_matrix((1.0, 0.0, 0.0), -20.0)
    t2 = np.array([0.0, 3.0, -1.0])
    twice = rigid_transform(rigid_transform(fractured_l1, R, T), R2, t2)
    rt = twice.metadata["rigid_transform"]
    np.testing.assert_allclose(rt["rotation"], R2 @ R, atol=1e-15)
    np.testing.assert_allclose(rt["translation"], R2 @ T + t2, atol=1e-12)
    np.testing.assert_allclose(twice.points, fractured_l1.points @ (R2 @ R).T + rt["translation"],
                               atol=1e-11)


def test_solution_moves_with_the_model():
    """A voxel block (it carries a voxel grid, which must not survive the rotation) under a
    force, a rigid plate and a full prescribed displacement: u' = R u, sigma' = R sigma R^T."""
    E = np.full((4, 3, 5), 500.0)
    E[1:3, 1, 1:4] = 2000.0
    m = fem.VoxelModel(E, spacing=(2.0, 2.0, 2.0), nu=0.3).to_model()
    m.fix("zmin")
    side = m.node_sets["xmin"]
    mid = side[np.isclose(m.points[side, 2], 4.0)]
    m.add(fem.TotalForce("xmax", (0.0, 5.0, -2.0)),
          fem.Displacement(mid, (0.001, -0.002, 0.0005)),
          fem.RigidPlate("zmax", force=(3.0, -1.0, -40.0), moment=(10.0, 0.0, 5.0)))
    mr = rigid_transform(m, R, T)
    assert "voxel_grid" in m.metadata and "voxel_grid" not in mr.metadata
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = fem.solve(m, backend="numpy", solver="direct")
        b = fem.solve(mr, backend="numpy", solver="direct")
    np.testing.assert_allclose(b.displacement, a.displacement @ R.T, atol=1e-12)
    sa, sb = _from_voigt(a.stress, np), _from_voigt(b.stress, np)
    scale = np.abs(sa).max()
    np.testing.assert_allclose(sb, R @ sa @ R.T, atol=1e-10 * scale)
    np.testing.assert_allclose(b.applied_total(), R @ a.applied_total(), atol=1e-12)
    np.testing.assert_allclose(b.reaction_total(), R @ a.reaction_total(), atol=1e-9)
    with pytest.raises(fem.SolverError, match="regular grid"):
        fem.solve(mr, backend="numpy", solver="gmg")


def test_refusals_name_the_fault():
    m = hex_block((2, 2, 2), (2.0, 2.0, 2.0), E=100.0, nu=0.3)
    with pytest.raises(fem.MeshError, match="reflection"):
        rigid_transform(m, np.diag([1.0, 1.0, -1.0]))
    with pytest.raises(fem.MeshError, match="orthonormal"):
        rigid_transform(m, 1.01 * np.eye(3))
    with pytest.raises(fem.ParameterError, match="translation"):
        rigid_transform(m, np.eye(3), (1.0, 2.0))
    o = m.copy()
    o.set_orthotropic(None, E=(50.0, 60.0, 100.0), nu=(0.3, 0.2, 0.2), G=(20.0, 30.0, 30.0))
    with pytest.raises(fem.MaterialError, match="orthotropic"):
        rigid_transform(o, R)
    for cond in (fem.Fixed("zmin", "z"), fem.Displacement("zmax", (None, None, -0.1)),
                 fem.RigidPlate("zmax", displacement=(None, None, -0.1))):
        c = m.copy().add(cond)
        with pytest.raises(fem.BoundaryConditionError, match="global components"):
            rigid_transform(c, R)
    same = rigid_transform(m.copy().fix("zmin"), np.eye(3))
    np.testing.assert_array_equal(same.points, m.points)
