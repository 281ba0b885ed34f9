"""Result fields: derived stresses against formulas, energy, nodal averages, and the output
contract of DESIGN.md (VTU through meshio, PyVista) in input order. Units mm, N, MPa; strain
energy N mm, strain energy density MPa = mJ/mm^3."""

import meshio
import numpy as np
import pytest

import fem
from fem.result import principal, von_mises
from verification_models import block

KINDS = ["tet4", "tet10", "hex8", "hex8-bbar"]


def _solve(m):
    return fem.solve(m, backend="numpy", solver="direct")


def _tensor(v):
    i = [[0, 3, 5], [3, 1, 4], [5, 4, 2]]
    return np.asarray(v)[..., i]


# ------------------------------------------------------------------ formulas


def test_von_mises_and_principal_of_known_states():
    s, t, p = 12.0, 5.0, -3.0
    states = np.array([
        [s, 0, 0, 0, 0, 0],  # uniaxial tension
        [0, 0, -s, 0, 0, 0],  # uniaxial compression
        [0, 0, 0, t, 0, 0],  # pure shear
        [p, p, p, 0, 0, 0],  # hydrostatic
        [s, -s, 0, 0, 0, 0],  # pure shear in principal axes
    ])
    assert np.allclose(von_mises(states), [s, s, np.sqrt(3) * t, 0.0, np.sqrt(3) * s])
    assert np.allclose(principal(states), [[s, 0, 0], [0, 0, -s], [t, 0, -t], [p, p, p],
                                           [s, 0, -s]])


def test_von_mises_and_principal_of_random_states(rng):
    v = rng.normal(0, 10, (50, 6))
    T = _tensor(v)
    dev = T - np.trace(T, axis1=1, axis2=2)[:, None, None] / 3 * np.eye(3)
    assert np.allclose(von_mises(v), np.sqrt(1.5 * (dev * dev).sum(axis=(1, 2))), rtol=1e-12)
    pr = principal(v)
    assert np.all(np.diff(pr, axis=1) <= 0)  # descending
    assert np.allclose(pr, np.sort(np.linalg.eigvals(T).real, axis=1)[:, ::-1], rtol=1e-10)
    # invariance: von Mises of the principal state is the same
    diag = np.column_stack([pr, np.zeros((50, 3))])
    assert np.allclose(von_mises(diag), von_mises(v), rtol=1e-10)


# ------------------------------------------------------------------ a bar with a known state


def _bar(kind, F=6.0, E=150.0, nu=0.25, distort=0.2):
    """A 4 x 1 x 1.5 mm bar in uniaxial tension sigma = F / 1.5 (symmetry supports)."""
    m = block(kind, (4, 2, 2), (4.0, 1.0, 1.5), distort=distort, seed=1, E=E, nu=nu)
    m.add(fem.Fixed("xmin", "x"), fem.Fixed("ymin", "y"), fem.Fixed("zmin", "z"),
          fem.TotalForce("xmax", (F, 0.0, 0.0)))
    return m, _solve(m)


@pytest.mark.parametrize("kind", KINDS)
def test_derived_fields_of_uniaxial_tension(kind):
    F, E, nu = 6.0, 150.0, 0.25
    m, res = _bar(kind, F, E, nu)
    s = F / 1.5
    e = s / E
    assert np.allclose(res.von_mises, s, rtol=1e-9)
    assert np.allclose(res.principal_stress, [s, 0, 0], rtol=0, atol=1e-9 * s)
    assert np.allclose(res.principal_strain, [e, -nu * e, -nu * e], rtol=0, atol=1e-9 * e)
    # strain energy density sigma^2 / (2 E) in MPa (= mJ/mm^3); total energy F^2 L / (2 E A)
    assert np.allclose(res.strain_energy_density, s**2 / (2 * E), rtol=1e-9)
    assert np.isclose(res.strain_energy(), F**2 * 4.0 / (2 * E * 1.5), rtol=1e-10)
    assert np.isclose(np.asarray(res.element_volume).sum(), 6.0, rtol=1e-12)


@pytest.mark.parametrize("kind", KINDS)
def test_integration_point_fields_and_element_averages(kind):
    """Integration-point arrays have the element's Gauss points (1, 4, 8); the element values
    are their means."""
    m = block(kind, (3, 2, 2), (3.0, 2.0, 2.0), distort=0.25, seed=4, E=100.0, nu=0.3)
    m.add(fem.Fixed("zmin"), fem.Traction("zmax", (0.2, -0.1, -0.5)))
    res = _solve(m)
    (sig,), (eps,) = res.integration_point_stress(), res.integration_point_strain()
    g = {"tet4": 1, "tet10": 4, "hex8": 8, "hex8-bbar": 8}[kind]
    assert sig.shape == eps.shape == (m.n_elements, g, 6)
    assert np.allclose(np.asarray(res.stress), sig.mean(axis=1), rtol=1e-14)
    assert np.allclose(np.asarray(res.strain), eps.mean(axis=1), rtol=1e-14)
    E, nu = 100.0, 0.3
    lam, mu = E * nu / ((1 + nu) * (1 - 2 * nu)), E / (2 * (1 + nu))
    tr = eps[..., :3].sum(-1, keepdims=True)
    assert np.allclose(sig, lam * tr * [1, 1, 1, 0, 0, 0] + 2 * mu * eps, rtol=1e-12,
                       atol=1e-12 * np.abs(sig).max())


@pytest.mark.parametrize("kind", KINDS)
def test_strain_energy_is_half_f_dot_u(kind, rng):
    """With loads only (supports at zero), U = 1/2 u.K.u = 1/2 f.u (Clapeyron)."""
    m = block(kind, (3, 2, 3), (3.0, 2.0, 2.5), distort=0.25, seed=6, E=100.0, nu=0.3)
    m.set_material(np.arange(0, m.n_elements, 2), E=900.0)  # two materials, irregularly
    nodes = m.node_sets["xmax"][:4]
    m.add(fem.Fixed("zmin"), fem.Pressure("zmax", 0.3), fem.Traction("ymax", (0.1, 0.2, -0.1)),
          fem.NodalForce(nodes, tuple(rng.normal(0, 1, 3))))
    res = _solve(m)
    f = np.asarray(res.system.f)[:m.n_dof]
    work = 0.5 * f @ np.asarray(res.displacement).ravel()
    assert work > 0
    assert np.isclose(res.strain_energy(), work, rtol=1e-10)


@pytest.mark.parametrize("kind", ["tet4", "tet10", "hex8"])
def test_energy_density_integrates_to_energy_on_affine_elements(kind):
    """On undistorted elements (constant det J) the element-average density times the volume
    sums to the total strain energy."""
    m = block(kind, (3, 2, 2), (3.0, 2.0, 2.0), E=100.0, nu=0.3)
    m.add(fem.Fixed("zmin"), fem.Traction("zmax", (0.2, 0.0, -0.5)))
    res = _solve(m)
    total = (np.asarray(res.strain_energy_density) * np.asarray(res.element_volume)).sum()
    assert np.isclose(total, res.strain_energy(), rtol=1e-12)


def test_nodal_averages():
    m, res = _bar("hex8", distort=0.3)
    c = np.array([1.0, -2.0, 3.0, 0.5, 0.0, -0.25])
    avg = np.asarray(res.nodal_average(np.tile(c, (m.n_elements, 1))))
    assert avg.shape == (m.n_nodes, 6)
    assert np.allclose(avg, c, rtol=1e-14)
    # a linear displacement field: every nodal average of the stress is the exact stress
    assert np.allclose(np.asarray(res.nodal_average(res.stress)), [6.0 / 1.5, 0, 0, 0, 0, 0],
                       rtol=0, atol=1e-9)
    # a node in one element only takes that element's value; a scalar field stays (n,)
    vals = np.arange(m.n_elements, dtype=float)
    avg = np.asarray(res.nodal_average(vals))
    assert avg.shape == (m.n_nodes,)
    corner = int(np.argmin(np.linalg.norm(m.points, axis=1)))
    owner = [i for i, row in enumerate(m.blocks[0].conn) if corner in row]
    assert len(owner) == 1 and avg[corner] == vals[owner[0]]
    node = int(np.argmin(np.linalg.norm(m.points - [1.0, 0.5, 0.75], axis=1)))
    owners = np.nonzero((m.blocks[0].conn == node).any(axis=1))[0]
    assert len(owners) == 8 and np.isclose(avg[node], vals[owners].mean())


# ------------------------------------------------------------------ output contract


def _two_part_model():
    """A hex8 block (bone) and a tet10 block (cement) side by side, not touching, with labels
    that are neither 1-based nor sorted, each part held at its base."""
    a = block("hex8", (2, 2, 2), (2.0, 2.0, 2.0))
    b = block("tet10", (1, 1, 2), (1.0, 1.0, 2.0), origin=(3.0, 0.0, 0.0))
    n = a.n_nodes
    node_ids = 1000 + 7 * np.arange(n + b.n_nodes)[::-1]
    ne = a.n_elements + b.n_elements
    element_ids = np.concatenate([500 + np.arange(a.n_elements) * 3,
                                  50 + np.arange(b.n_elements)])
    m = fem.Model.from_arrays(np.vstack([a.points, b.points]),
                              [("hex8", a.blocks[0].conn), ("tet10", b.blocks[0].conn + n)],
                              node_ids=node_ids, element_ids=element_ids)
    m.add_region("bone", np.arange(a.n_elements)).add_region("cement",
                                                             np.arange(a.n_elements, ne))
    m.set_material("bone", E=300.0, nu=0.3).set_material("cement", E=3000.0, nu=0.25)
    m.add_node_set("base", np.concatenate([a.node_sets["zmin"], b.node_sets["zmin"] + n]))
    m.add_face_set("top", np.concatenate([a.face_sets["zmax"].elements,
                                          b.face_sets["zmax"].elements + a.n_elements]),
                   np.concatenate([a.face_sets["zmax"].faces, b.face_sets["zmax"].faces]))
    m.add(fem.Fixed("base"), fem.Traction("top", (0.1, 0.05, -0.4)))
    return m


CELL_FIELDS = {"element_id": (), "stress": (6,), "strain": (6,), "von_mises": (),
               "principal_stress": (3,), "strain_energy_density": (), "E": (), "nu": (),
               "region": ()}


def _expected_cells(m, res):
    return {
        "element_id": m.element_ids, "stress": np.asarray(res.stress),
        "strain": np.asarray(res.strain), "von_mises": np.asarray(res.von_mises),
        "principal_stress": np.asarray(res.principal_stress),
        "strain_energy_density": np.asarray(res.strain_energy_density),
        "E": m.E, "nu": m.nu, "region": m.element_region,
    }


def test_write_round_trips_every_contract_field(tmp_path):
    m = _two_part_model()
    res = _solve(m)
    path = res.write(tmp_path / "out.vtu")
    back = meshio.read(path)
    assert [c.type for c in back.cells] == ["hexahedron", "tetra10"]
    assert np.array_equal(back.cells[0].data, m.blocks[0].conn)
    assert np.array_equal(back.cells[1].data, m.blocks[1].conn)
    assert np.array_equal(back.points, m.points)
    assert np.array_equal(back.point_data["displacement"], np.asarray(res.displacement))
    assert np.array_equal(back.point_data["node_id"].ravel(), m.node_ids)
    expected = _expected_cells(m, res)
    for name, shape in CELL_FIELDS.items():
        got = np.concatenate(back.cell_data[name])
        assert got.shape == (m.n_elements,) + shape, name
        assert np.array_equal(got, expected[name]), name
    # regions: the element sets' materials, coded in the order they were assigned
    assert m.region_names == ["bone", "cement"]
    assert np.array_equal(np.concatenate(back.cell_data["region"]),
                          np.repeat([0, 1], [m.blocks[0].conn.shape[0], m.blocks[1].conn.shape[0]]))
    names = {k: int(np.ravel(v)[0]) for k, v in back.field_data.items() if k.startswith("region ")}
    assert names == {"region 0: bone": 0, "region 1: cement": 1}
    assert any("mJ/mm^3" in k and "MPa" in k for k in back.field_data)  # units travel with it
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.vtu"]  # no temporary left


def test_write_refuses_other_suffixes(tmp_path):
    m, res = _bar("tet4")
    with pytest.raises(fem.InputFileError):
        res.write(tmp_path / "out.vtk")
    assert not list(tmp_path.iterdir())


def test_to_pyvista_carries_the_same_arrays():
    import pyvista as pv

    m = _two_part_model()
    res = _solve(m)
    grid = res.to_pyvista()
    assert isinstance(grid, pv.UnstructuredGrid)
    assert grid.n_points == m.n_nodes and grid.n_cells == m.n_elements
    assert np.array_equal(grid.points, m.points)
    assert np.array_equal(grid.point_data["displacement"], np.asarray(res.displacement))
    assert np.array_equal(np.ravel(grid.point_data["node_id"]), m.node_ids)
    for name, value in _expected_cells(m, res).items():
        got = np.asarray(grid.cell_data[name])
        assert got.shape == (m.n_elements,) + CELL_FIELDS[name], name
        assert np.array_equal(got, value), name
    assert np.array_equal(grid.celltypes, np.repeat([12, 24], [8, m.blocks[1].conn.shape[0]]))


def _slab(h: float, t: float, factor: float):
    """A 4 x 4 x 8 mm prism of soft bone with a stiff layer on its x = 4 face, compressed by a
    bonded platen: the layer is t thick, resolved (h = t, factor 1) or one h-thick element layer
    carrying E t / h (factor t / h), as the builders compensate thin layers."""
    from fem.meshes.blocks import hex_block

    n = int(round(4.0 / h))
    m = hex_block((n, n, 2 * n), (4.0, 4.0, 8.0), E=90.0, nu=0.3)
    xc = m.points[m.blocks[0].conn].mean(axis=1)[:, 0]
    width = t if factor == 1.0 else h
    layer = np.nonzero(xc > 4.0 - width)[0]
    m.add_region("layer", layer)
    m.set_material("layer", E=8040.0 * factor, nu=0.3)
    if factor < 1.0:
        m.metadata["layer_factors"] = {"layer": factor}
    m.add(fem.Fixed("zmin"), fem.Displacement("zmax", (0.0, 0.0, -0.04)))
    return m, layer


def test_thin_layer_stress_is_recovered_at_its_physical_thickness():
    """The compensated layer (1 mm elements standing for a 0.5 mm layer, E t / h) reports half
    the stress of the resolved layer; its physical stress equals the resolved one (1 %), its
    load share is kept, and elements outside the layer are untouched."""
    ref, lay_r = _slab(0.5, 0.5, 1.0)
    r = fem.solve(ref)
    comp, lay_c = _slab(1.0, 0.5, 0.5)
    c = fem.solve(comp)
    vm_ref = float(np.mean(r.von_mises[lay_r]))
    assert float(np.mean(c.von_mises[lay_c])) == pytest.approx(0.5 * vm_ref, rel=0.02)
    assert float(np.mean(c.von_mises_physical[lay_c])) == pytest.approx(vm_ref, rel=0.01)
    others = np.setdiff1d(np.arange(comp.n_elements), lay_c)
    assert np.array_equal(c.physical_stress[others], c.stress[others])
    assert np.array_equal(r.physical_stress, r.stress)  # no compensated layer: the same array
    assert "von_mises_physical" in c.cell_fields() and "von_mises_physical" not in r.cell_fields()
    force = [float(-res.reaction_total()[2]) for res in (r, c)]
    assert force[1] == pytest.approx(force[0], rel=0.03)


def test_builders_record_their_thickness_compensation():
    from fem.meshes.vertebra import LEVELS, layer_factors, segment_model

    m = segment_model("L1-L2", voxel_size=2.0)
    d = LEVELS["L1"]
    f = m.metadata["layer_factors"]
    # the shell's 2 mm voxels: 0.4 mm of cortex (8 040 MPa) beside 1.6 mm of trabecular bone
    # (90 MPa), the defaults; the endplates' modulus x t / h
    mix = (d.cortex * 8040.0 + (2.0 - d.cortex) * 90.0) / 2.0
    assert f["L2/cortex"] == pytest.approx(mix / 8040.0)
    assert f["L1/endplate_superior"] == pytest.approx(d.endplate / 2.0)
    code = m.region_names.index("L1/cortex")
    el = np.nonzero(m.element_region == code)[0]
    assert np.allclose(m.E[el], mix)
    # voxels thinner than a layer resolve it: nothing compensated
    from fem.meshes.vertebra import DEFAULT_MATERIALS

    assert layer_factors(["L1"], DEFAULT_MATERIALS, d, 0.9 * d.endplate) == {}
    between = layer_factors(["L1"], DEFAULT_MATERIALS, d, 0.5 * (d.cortex + d.endplate))  # only the thinner
    thinner = ({"L1/endplate_superior", "L1/endplate_inferior"} if d.endplate < d.cortex
               else {"L1/cortex"})
    assert set(between) == thinner
