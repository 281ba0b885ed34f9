"""The tet10 (gmsh) vertebra and segments: valid quadratic elements, discs conformal with both
bodies, the voxel form's volumes and sets,
equilibrium under endplate pressure."""

from itertools import combinations

import numpy as np
import pytest

import fem
from fem.assembly import check_geometry
from fem.elements import ELEMENT_TYPES
from fem.errors import MeshError, ParameterError
from fem.kernels.elastic import det3, jacobians

pytest.importorskip("gmsh")
from fem.meshes.vertebra import _section, segment_model  # noqa: E402
from fem.meshes.vertebra_gmsh import segment_model_tet10  # noqa: E402

BODY = ("cortex", "trabecular", "endplate_superior", "endplate_inferior")


@pytest.fixture(scope="module")
def l1():
    """L1 at 3 mm with a study's bone (BMD 70 mg/cm^3: cortex and endplates 8 040 MPa,
    trabecular bone 165.7 MPa)."""
    from fem.meshes.bone import BoneQuality

    return segment_model_tet10("L1", mesh_size=3.0, materials=BoneQuality(bmd=70.0))


def _volumes(m):
    et = ELEMENT_TYPES["tet10"]
    v = (det3(jacobians(m.points[m.blocks[0].conn], et.dN)) * et.weights).sum(axis=1)
    return {k: v[e].sum() for k, e in m.regions.items()}


def test_regions_sets_metadata(l1):
    assert set(l1.regions) == {f"L1/{p}" for p in BODY + ("posterior",)}
    for s in ("L1/superior", "L1/inferior", "top", "bottom"):
        assert s in l1.face_sets and s in l1.node_sets and len(l1.face_sets[s].elements) > 50
    assert l1.metadata["levels"] == ["L1"]
    assert set(l1.anatomy["L1"].pedicle_axes) == {"left", "right"}
    # the layers are 1.5 mm thick (half the mesh size) for a 0.4 mm cortex and 0.25 mm
    # endplates: the cortex layer holds 0.4 mm of cortex and 1.1 mm of trabecular bone, an
    # endplate keeps its membrane stiffness E t (8 040 MPa x 0.25 mm)
    layer = l1.metadata["mesh"]["min_layer"]
    assert layer == 1.5
    E_c, E_t = 8040.0, float(l1.E[l1.regions["L1/trabecular"]][0])
    assert E_t == pytest.approx(165.69, abs=0.01)
    np.testing.assert_allclose(l1.E[l1.regions["L1/cortex"]], (0.4 * E_c + 1.1 * E_t) / 1.5,
                               rtol=1e-12)
    for side in ("superior", "inferior"):
        E = l1.E[l1.regions[f"L1/endplate_{side}"]]
        np.testing.assert_allclose(E * layer, E_c * 0.25, rtol=1e-12)
        assert l1.metadata["layer_factors"][f"L1/endplate_{side}"] == pytest.approx(0.25 / 1.5)
    assert l1.metadata["layer_factors"]["L1/cortex"] == pytest.approx(
        (0.4 * E_c + 1.1 * E_t) / 1.5 / E_c)


def test_tet10_and_voxel_forms_give_the_same_vertebra(l1):
    """The two forms of one parametric L1 with a study's bone (the ``l1`` fixture's) under the
    standing load (a plate on the superior endplate, the inferior one fixed): axial stiffness
    and Pistoia strength within 10 % (tet10 at 3 mm 19 270 N/mm and 2 537 N against voxels at
    2 mm 20 512 N/mm and 2 699 N, at 1 mm 20 292 and 2 769). Until 2026-12-07 the tet10 form's
    1.5 mm layers kept the full cortical and endplate moduli for a 0.4 mm cortex and 0.25 mm
    endplates: 56 030 N/mm and 7 351 N, 2.7 times the voxel form."""
    from fem import metrics
    from fem.meshes import loadcases
    from fem.meshes.bone import BoneQuality

    bone = BoneQuality(bmd=70.0)
    rows = {}
    for name, m in (("tet10", l1), ("voxel", segment_model("L1", voxel_size=2.0,
                                                           materials=bone))):
        r = fem.solve(loadcases.loaded(m, "standing"))
        rows[name] = metrics.level_metrics(r).set_index("level").loc["L1"]
    for col in ("stiffness_n_per_mm", "strength_pistoia_n"):
        assert rows["tet10"][col] == pytest.approx(rows["voxel"][col], rel=0.10), col


def _check_quadratic_elements(m):
    """No inverted element, mid-edge nodes near their own edges (VTK order) and mean-ratio quality
    (1 for a regular tetrahedron) bounded below."""
    check_geometry(m, np)
    X = m.points[m.blocks[0].conn]
    edges = [(0, 1), (1, 2), (2, 0), (0, 3), (1, 3), (2, 3)]
    mid = np.stack([0.5 * (X[:, i] + X[:, j]) for i, j in edges], axis=1)
    length = np.stack([np.linalg.norm(X[:, i] - X[:, j], axis=1) for i, j in edges], axis=1)
    assert np.all(np.linalg.norm(X[:, 4:] - mid, axis=2) < 0.25 * length)
    L2 = sum(((X[:, i] - X[:, j]) ** 2).sum(axis=1) for i, j in combinations(range(4), 2))
    V6 = np.einsum("ij,ij->i", X[:, 1] - X[:, 0], np.cross(X[:, 2] - X[:, 0], X[:, 3] - X[:, 0]))
    q = 12 * (V6 / 2) ** (2 / 3) / L2
    assert q.min() > 0.01 and np.percentile(q, 1) > 0.15


def test_valid_quadratic_elements(l1):
    _check_quadratic_elements(l1)


def test_volumes_match_voxel_form(l1):
    vt = _volumes(l1)
    vox = segment_model("L1", voxel_size=0.5)
    vv = {k: len(e) * 0.5**3 for k, e in vox.regions.items()}
    body = [sum(v[f"L1/{p}"] for p in BODY) for v in (vt, vv)]
    assert body[0] == pytest.approx(body[1], rel=0.03)
    assert vt["L1/posterior"] == pytest.approx(vv["L1/posterior"], rel=0.03)
    d, t = l1.anatomy["L1"].dims, l1.metadata["mesh"]["endplate"]
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
        d = l1.anatomy["L1"].dims
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
    with pytest.raises(ParameterError, match="mesh_size"):
        segment_model_tet10("L1", mesh_size=0.01)
    with pytest.raises(MeshError, match="unknown level"):
        segment_model_tet10("L9")
    with pytest.raises(ParameterError, match="layers"):
        segment_model_tet10("L1", layers="thin")
    with pytest.raises(ParameterError, match="min_layer"):
        segment_model_tet10("L1", layers="physical", min_layer=0.5)


def _section_area(d):
    x, y = np.meshgrid(np.linspace(-d.width / 2, d.width / 2, 801),
                       np.linspace(-d.depth / 2, d.depth / 2, 601))
    return _section(d, x, y).mean() * d.width * d.depth


def _faces(m, elems):
    """One integer key per face of ``elems`` (from its sorted corner nodes) and its area vector."""
    b = m.blocks[0]
    tri = b.conn[elems][:, np.array([f[:3] for f in b.etype.faces])].reshape(-1, 3)
    k = np.sort(tri, axis=1).astype(np.int64)
    X = m.points[tri]
    return (k[:, 0] * m.n_nodes + k[:, 1]) * m.n_nodes + k[:, 2], \
        0.5 * np.cross(X[:, 1] - X[:, 0], X[:, 2] - X[:, 0])


def _disc_contact(m, disc, level):
    """Projected area of the faces that a disc shares with a level's body, and |n_z| of the
    disc's faces that no other element shares (which must all lie on its side wall)."""
    kd, n = _faces(m, np.concatenate([m.regions[f"{disc}/{p}"] for p in ("annulus", "nucleus")]))
    kb, _ = _faces(m, np.concatenate([m.regions[f"{level}/{p}"] for p in BODY]))
    keys, counts = np.unique(_faces(m, np.arange(m.n_elements))[0], return_counts=True)
    shared, free = np.isin(kd, kb), np.isin(kd, keys[counts == 1])
    return np.abs(n[shared, 2]).sum(), np.abs(n[free, 2]) / np.linalg.norm(n[free], axis=1)


@pytest.fixture(scope="module")
def l1_l2():
    return segment_model_tet10("L1-L2", mesh_size=3.0, posterior=False)


def test_segment_discs_share_faces_with_both_bodies(l1_l2):
    """Every face of the disc against a body is a face of that body (conformal mesh), the
    contact covers each body's whole rim-plane section (no free strip where one endplate is
    larger), and the disc's free faces are only those of its side wall."""
    _check_quadratic_elements(l1_l2)
    anatomy = l1_l2.anatomy
    for level in ("L1", "L2"):
        area, free_nz = _disc_contact(l1_l2, "L1-L2", level)
        assert area == pytest.approx(_section_area(anatomy[level].dims), rel=0.02)
        assert len(free_nz) > 50 and free_nz.max() < 0.5
    for name in ("L1/inferior", "L2/superior"):
        fs = l1_l2.face_sets[name]
        n = _faces(l1_l2, fs.elements)[1].reshape(len(fs.elements), 4, 3)[
            np.arange(len(fs.elements)), fs.faces]
        dims = anatomy[name.split("/")[0]].dims
        assert np.abs(n[:, 2]).sum() == pytest.approx(_section_area(dims), rel=0.02)


def test_segment_volumes_match_voxel_form(l1_l2):
    """Bodies as the voxel form within the mesh-size error; the lofted disc lies between the
    voxel form's disc (the intersection of the two sections) and that disc scaled by the ratio
    of the larger section to the smaller."""
    vt = _volumes(l1_l2)
    vox = segment_model("L1-L2", voxel_size=0.5, posterior=False)
    vv = {k: len(e) * 0.5**3 for k, e in vox.regions.items()}
    for level in ("L1", "L2"):
        body = [sum(v[f"{level}/{p}"] for p in BODY) for v in (vt, vv)]
        assert body[0] == pytest.approx(body[1], rel=0.03)
    disc = [v["L1-L2/annulus"] + v["L1-L2/nucleus"] for v in (vt, vv)]
    anatomy = l1_l2.anatomy
    ratio = _section_area(anatomy["L2"].dims) / _section_area(anatomy["L1"].dims)
    assert 0.98 * disc[1] < disc[0] < 1.02 * ratio * disc[1]
    assert vt["L1-L2/nucleus"] == pytest.approx(vv["L1-L2/nucleus"], rel=0.05)


@pytest.mark.slow
@pytest.mark.parametrize("levels, size", [("T12-L2", 3.0), ("L1-L2", 2.0),
                                          ("L5", 2.0)])
def test_segments_and_levels_mesh_conformally(levels, size):
    m = segment_model_tet10(levels, mesh_size=size, posterior=False)
    _check_quadratic_elements(m)
    names = m.metadata["levels"]
    anatomy = m.anatomy
    for up, lo in zip(names[:-1], names[1:]):
        for level in (up, lo):
            area, free_nz = _disc_contact(m, f"{up}-{lo}", level)
            assert area == pytest.approx(_section_area(anatomy[level].dims), rel=0.02)
            assert free_nz.max() < 0.5


@pytest.mark.slow
def test_a_size_gmsh_cannot_mesh_is_meshed_a_little_finer_with_a_warning():
    """gmsh's boundary recovery fails on L1-L3 at mesh_size 8 ("PLC Error: a segment and a
    facet intersect"; a study's tet10 runs had failed so): the segment is meshed at the next of
    RETRY_SIZES that works, no coarser than asked, with a warning naming both sizes."""
    from fem.meshes.vertebra_gmsh import RETRY_SIZES

    with pytest.warns(UserWarning, match=r"mesh_size=8.0.*meshed at 7\.\d+ mm instead"):
        m = segment_model_tet10("L1-L3", mesh_size=8.0, posterior=False)
    _check_quadratic_elements(m)
    info = m.metadata["mesh"]
    assert info["asked_mesh_size"] == 8.0
    assert info["mesh_size"] in [8.0 * f for f in RETRY_SIZES[1:]]
    assert info["min_layer"] == pytest.approx(info["mesh_size"] / 2)


def test_two_level_segment_shares_disc_nodes(l1_l2):
    """Was a strict xfail: at 3 mm gmsh failed on the disc/endplate interfaces."""
    conn = l1_l2.blocks[0].conn
    disc = np.unique(conn[l1_l2.regions["L1-L2/annulus"]])
    bone = np.unique(conn[np.concatenate([l1_l2.regions[f"L2/{p}"] for p in BODY])])
    assert len(np.intersect1d(disc, bone)) > 100
    assert np.isin(l1_l2.node_sets["L2/superior"], np.unique(conn)).all()


@pytest.mark.parametrize("shape", ["wedge", "biconcave", "crush"])
def test_fracture_of_a_tet10_segment_keeps_every_element_valid(l1_l2, shape):
    """The disc above the fractured body follows its endplate without being pushed through it
    (its nodes inside the endplate concavity move with the body's own map), and the level
    above follows rigidly (the kyphosis)."""
    from fem.meshes.pathology import compress

    f = compress(l1_l2, "L2", shape, grade=2)
    _check_quadratic_elements(f)
    vol0, vol1 = (fem.assembly.element_volumes(x) for x in (l1_l2, f))
    disc_el = np.concatenate([f.regions[r] for r in f.regions if r.startswith("L1-L2/")])
    assert vol1[disc_el].sum() == pytest.approx(vol0[disc_el].sum(), rel=1e-9)
    moved = np.abs(f.points - l1_l2.points).max(axis=1) > 0
    disc = f.element_nodes(np.concatenate([f.regions[r] for r in f.regions
                                           if r.startswith("L1-L2/")]))
    assert moved[disc].any()
    k = f.metadata["kyphosis"]["L2"]
    top = f.node_sets["L1/superior"]
    np.testing.assert_allclose(f.points[top], l1_l2.points[top] @ k["rotation"].T
                               + k["translation"], atol=1e-9)


@pytest.mark.parametrize("shape", ["wedge", "biconcave", "crush"])
def test_restoring_a_share_of_a_tet10_fracture_keeps_the_disc_above_and_every_element(l1_l2,
                                                                                      shape):
    """A kyphoplasty's restoration (``pathology.restore``) of a quarter and of half the height:
    every element stays valid and the disc above keeps its intact volume, as the fracture left
    it. Until 2026-12-08 restore moved the disc's inner nodes back along straight lines while
    the level above turned back rigidly, refitted to the restored endplate alone: under the
    wedge's 17 degrees a few of the disc's thin quadratic elements inverted (a kyphoplasty of a
    tet10 wedge failed), and under the others the disc grew by up to 2 %. The disc now keeps
    the fracture's blend between its endplate and the level above, and the level above its
    volume-keeping shift."""
    from fem.meshes.pathology import compress, restore

    f = compress(l1_l2, "L2", shape, grade=2)
    disc = np.concatenate([f.regions[f"L1-L2/{p}"] for p in ("annulus", "nucleus")])
    v0 = fem.assembly.element_volumes(l1_l2)[disc].sum()
    for share in (0.25, 0.5):
        r = restore(f, "L2", share)
        fem.assembly.check_geometry(r, np)
        assert fem.assembly.element_volumes(r)[disc].sum() == pytest.approx(v0, rel=1e-9)
    back = restore(f, "L2", 1.0)
    assert np.abs(back.points - l1_l2.points).max() < 1e-9
