"""The tet10 (gmsh) vertebra: valid quadratic elements, the voxel form's volumes and sets,
equilibrium under endplate pressure."""

from itertools import combinations

import numpy as np
import pytest

import fem
from fem.assembly import check_geometry
from fem.elements import ELEMENT_TYPES
from fem.errors import MeshError
from fem.kernels.elastic import det3, jacobians

pytest.importorskip("gmsh")
from fem.meshes.vertebra import _section, segment_model  # noqa: E402
from fem.meshes.vertebra_gmsh import segment_model_tet10  # noqa: E402

BODY = ("cortex", "trabecular", "endplate_superior", "endplate_inferior")


@pytest.fixture(scope="module")
def l1():
    return segment_model_tet10("L1", mesh_size=3.0)


def _volumes(m):
    et = ELEMENT_TYPES["tet10"]
    v = (det3(jacobians(m.points[m.blocks[0].conn], et.dN)) * et.weights).sum(axis=1)
    return {k: v[e].sum() for k, e in m.regions.items()}


def test_regions_sets_metadata(l1):
    assert set(l1.regions) == {f"L1/{p}" for p in BODY + ("posterior",)}
    for s in ("L1/superior", "L1/inferior", "top", "bottom"):
        assert s in l1.face_sets and s in l1.node_sets and len(l1.face_sets[s].elements) > 50
    assert l1.metadata["levels"] == ["L1"]
    assert set(l1.metadata["anatomy"]["L1"]["pedicle_axes"]) == {"left", "right"}
    E = l1.E[l1.regions["L1/cortex"]]
    assert np.all(E == 8040.0)


def test_valid_quadratic_elements(l1):
    check_geometry(l1, np)
    X = l1.points[l1.blocks[0].conn]
    edges = [(0, 1), (1, 2), (2, 0), (0, 3), (1, 3), (2, 3)]
    mid = np.stack([0.5 * (X[:, i] + X[:, j]) for i, j in edges], axis=1)
    length = np.stack([np.linalg.norm(X[:, i] - X[:, j], axis=1) for i, j in edges], axis=1)
    # VTK order: each mid-edge node lies near the midpoint of its own edge
    assert np.all(np.linalg.norm(X[:, 4:] - mid, axis=2) < 0.25 * length)
    L2 = sum(((X[:, i] - X[:, j]) ** 2).sum(axis=1) for i, j in combinations(range(4), 2))
    V6 = np.einsum("ij,ij->i", X[:, 1] - X[:, 0], np.cross(X[:, 2] - X[:, 0], X[:, 3] - X[:, 0]))
    q = 12 * (V6 / 2) ** (2 / 3) / L2  # mean-ratio quality, 1 for a regular tetrahedron
    assert q.min() > 0.01 and np.percentile(q, 1) > 0.15


def test_volumes_match_voxel_form(l1):
    vt = _volumes(l1)
    vox = segment_model("L1", voxel_size=0.5)
    vv = {k: len(e) * 0.5**3 for k, e in vox.regions.items()}
    body = [sum(v[f"L1/{p}"] for p in BODY) for v in (vt, vv)]
    assert body[0] == pytest.approx(body[1], rel=0.03)
    assert vt["L1/posterior"] == pytest.approx(vv["L1/posterior"], rel=0.03)
    d, t = l1.metadata["anatomy"]["L1"]["dims"], l1.metadata["mesh"]["endplate"]
    x, y = np.meshgrid(np.linspace(-d.width / 2, d.width / 2, 801),
                       np.linspace(-d.depth / 2, d.depth / 2, 601))
    area = _section(d, x, y).mean() * d.width * d.depth
    for key in ("endplate_superior", "endplate_inferior"):
        assert vt[f"L1/{key}"] == pytest.approx(area * t, rel=0.05)


def test_endplate_face_sets_face_outward(l1):
    b = l1.blocks[0]
    for name, sign in (("top", 1.0), ("bottom", -1.0)):
        fs = l1.face_sets[name]
        tri = l1.points[b.conn[fs.elements[:, None], np.array(b.etype.faces)[fs.faces, :3]]]
        n = 0.5 * np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
        d = l1.metadata["anatomy"]["L1"]["dims"]
        x, y = np.meshgrid(np.linspace(-d.width / 2, d.width / 2, 801),
                           np.linspace(-d.depth / 2, d.depth / 2, 601))
        area = _section(d, x, y).mean() * d.width * d.depth
        assert sign * n[:, 2].sum() == pytest.approx(area, rel=0.02)


def test_pressure_on_top_balances():
    m = segment_model_tet10("L1", mesh_size=3.0, posterior=False)
    m.add(fem.Pressure("top", 1.0))
    m.fix("bottom")
    r = fem.solve(m, rtol=1e-10)
    applied, reaction = r.applied_total(), r.reaction_total()
    assert applied[2] < -800.0
    np.testing.assert_allclose(reaction[:3], -applied[:3], atol=1e-6 * abs(applied[2]))
    assert np.all(np.isfinite(r.displacement)) and r.displacement[:, 2].min() < 0


def test_bad_arguments():
    with pytest.raises(MeshError, match="mesh_size"):
        segment_model_tet10("L1", mesh_size=0.01)
    with pytest.raises(MeshError, match="unknown level"):
        segment_model_tet10("L9")


@pytest.mark.slow
@pytest.mark.xfail(strict=True, raises=MeshError,
                   reason="disc faces do not yet glue to the split endplate faces in gmsh")
def test_two_level_segment_shares_disc_nodes():
    m = segment_model_tet10("L1-L2", mesh_size=3.0, posterior=False)
    conn = m.blocks[0].conn
    disc = np.unique(conn[m.regions["L1-L2/annulus"]])
    bone = np.unique(conn[np.concatenate([m.regions[f"L2/{p}"] for p in BODY])])
    assert len(np.intersect1d(disc, bone)) > 100
    assert np.isin(m.node_sets["L2/superior"], np.unique(conn)).all()


@pytest.mark.slow
def test_two_level_segment_meshes_at_4mm():
    """At 4 mm (layers 2 mm) the segment meshes; at 3 mm it does not (xfail above)."""
    m = segment_model_tet10("L1-L2", mesh_size=4.0, posterior=False)
    check_geometry(m, np)
    conn = m.blocks[0].conn
    disc = np.unique(conn[np.concatenate([m.regions["L1-L2/annulus"],
                                          m.regions["L1-L2/nucleus"]])])
    for level in ("L1", "L2"):
        bone = np.unique(conn[np.concatenate([m.regions[f"{level}/{p}"] for p in BODY])])
        assert len(np.intersect1d(disc, bone)) > 300
