"""Models from meshio meshes: gmsh physical groups, cell sets, point sets, and VTU round trips."""

import meshio
import numpy as np
import pytest

import fem
from fem.meshes.blocks import hex_block, tet_block
from fem.topology import boundary_faces


def _gmsh_mesh(tmp_path, fmt):
    """A tet4 block written as a gmsh file with physical volumes and a physical surface."""
    m = tet_block((3, 3, 4), (3.0, 3.0, 4.0))
    tets = m.blocks[0].conn
    centroid_z = m.points[tets].mean(axis=1)[:, 2]
    vol_tag = np.where(centroid_z < 2.0, 1, 2)  # physical 1 = bone (lower half), 2 = cement
    fs = m.face_sets["zmax"]
    tris = np.array([m.blocks[0].conn[e][list(m.blocks[0].etype.faces[f])] for e, f in
                     zip(fs.elements, fs.faces)])
    mesh = meshio.Mesh(
        m.points,
        [("triangle", tris), ("tetra", tets)],
        cell_data={"gmsh:physical": [np.full(len(tris), 3), vol_tag],
                   "gmsh:geometrical": [np.full(len(tris), 1), np.ones(len(tets), int)]},
        field_data={"bone": np.array([1, 3]), "cement": np.array([2, 3]),
                    "top": np.array([3, 2])},
    )
    path = tmp_path / f"block.{fmt}"
    meshio.write(path, mesh, file_format="gmsh22" if fmt == "msh" else fmt, binary=False)
    return path, vol_tag, fs


def test_gmsh_physical_groups_become_regions_and_face_sets(tmp_path):
    path, vol_tag, fs = _gmsh_mesh(tmp_path, "msh")
    model = fem.Model.from_file(path, E=100.0, nu=0.3)
    assert np.array_equal(model.regions["bone"], np.nonzero(vol_tag == 1)[0])
    assert np.array_equal(model.regions["cement"], np.nonzero(vol_tag == 2)[0])
    top = model.face_sets["top"]
    assert len(top) == len(fs)
    assert np.array_equal(np.sort(top.elements * 8 + top.faces), np.sort(fs.elements * 8 + fs.faces))
    # the surface group carries a load: total force equals pressure times area (9 mm^2)
    model.set_material("cement", E=3000.0, nu=0.4)
    z0 = np.nonzero(np.isclose(model.points[:, 2], 0.0))[0]
    model.add(fem.Fixed(z0), fem.Pressure("top", 2.0))
    r = fem.solve(model)
    assert np.allclose(r.applied_total(), [0, 0, -18.0], atol=1e-10)
    assert np.allclose(r.reaction_total() + r.applied_total(), 0, atol=1e-8 * 18)


def test_surface_cell_that_is_no_face_is_an_error():
    m = hex_block((2, 2, 2))
    mesh = meshio.Mesh(m.points, [("hexahedron", m.blocks[0].conn), ("quad", np.array([[0, 4, 13, 9]]))],
                       cell_sets={"bad": [np.array([], int), np.array([0])]})
    with pytest.raises(fem.SetError, match="bad.*not a face"):
        fem.Model.from_meshio(mesh)


def test_unsupported_solid_cells_are_refused():
    pts = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 0, 1], [0, 1, 1.0]])
    mesh = meshio.Mesh(pts, [("wedge", np.array([[0, 1, 2, 3, 4, 5]]))])
    with pytest.raises(fem.MeshError, match="wedge"):
        fem.Model.from_meshio(mesh)


def test_cell_sets_and_point_sets():
    m = hex_block((2, 2, 2))
    bf_e, bf_f = boundary_faces(m)
    mesh = meshio.Mesh(m.points, [("hexahedron", m.blocks[0].conn)],
                       cell_sets={"left": [np.array([0, 1, 2, 3])]},
                       point_sets={"corner": np.array([0])})
    model = fem.Model.from_meshio(mesh)
    assert np.array_equal(model.regions["left"], [0, 1, 2, 3])
    assert np.array_equal(model.node_sets["corner"], [0])
    assert len(bf_e) == 24


def test_vtu_round_trip_keeps_materials_regions_and_labels(tmp_path):
    m = hex_block((3, 2, 2), distort=0.2)
    m.node_ids = m.node_ids * 10 + 7
    m.element_ids = m.element_ids[::-1] * 3
    m.add_region("bone", np.arange(6))
    m.add_region("cement", np.arange(6, 12))
    m.set_material("bone", E=150.0, nu=0.3)
    m.set_material("cement", E=3000.0, nu=0.4)
    m.add(fem.Fixed("zmin"), fem.Pressure("zmax", 1.0))
    r = fem.solve(m)
    out = r.write(tmp_path / "r.vtu")
    back = fem.Model.from_file(out)
    assert np.array_equal(back.node_ids, m.node_ids)
    assert np.array_equal(back.element_ids, m.element_ids)
    assert np.allclose(back.E, m.E) and np.allclose(back.nu, m.nu)
    assert back.region_names == ["bone", "cement"]
    assert np.array_equal(back.regions["cement"], np.arange(6, 12))
    assert np.allclose(back.points, m.points)
