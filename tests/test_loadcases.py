"""Physiological load cases: every case solves and its support reactions balance the applied force
and moment (from nodal reactions K u - f at the supported nodes), the pressure variant carries
the same axial force even on a concave endplate, and every registry entry names its source."""

import numpy as np
import pytest

import fem
from fem.assembly import assemble_stiffness, to_matrix
from fem.kernels.backend import get_backend
from fem.meshes import loadcases as lc
from fem.meshes.blocks import hex_block

SIZE = (40.0, 30.0, 25.0)


def stand_in(bowl: float = 0.0):
    """A 40 x 30 x 25 mm block standing in for a vertebral body, with sets "top" and "bottom";
    ``bowl`` (mm) sinks the top surface into a paraboloid like a concave endplate."""
    m = hex_block((4, 4, 3), SIZE, E=100.0, nu=0.3)
    for new, old in (("top", "zmax"), ("bottom", "zmin")):
        m.add_node_set(new, m.node_sets[old])
        fs = m.face_sets[old]
        m.add_face_set(new, fs.elements, fs.faces)
    if bowl:
        top = m.node_sets["top"]
        x, y = m.points[top, 0] / SIZE[0] - 0.5, m.points[top, 1] / SIZE[1] - 0.5
        m.points[top, 2] -= bowl * (1.0 - 4.0 * (x * x + y * y)) / 2.0
    return m


def nodal_reactions(model, result, nodes):
    """Reaction forces (N) at ``nodes``: K u - f, straight from the assembled stiffness."""
    be = get_backend("numpy")
    K = to_matrix(*assemble_stiffness(model, be), be)
    r = (K @ np.asarray(result.displacement).ravel() - result.system.f[:3 * model.n_nodes])
    return r.reshape(-1, 3)[nodes]


@pytest.mark.parametrize("name", list(lc.LOAD_CASES))
def test_case_solves_and_reactions_balance_force_and_moment(name):
    m = stand_in()
    case = lc.LOAD_CASES[name]
    m = lc.loaded(m, name)
    conds = lc.conditions(m)
    assert list(conds) == ["support", f"load:{name}"]
    plate = conds[f"load:{name}"]
    ref = np.asarray(plate.reference)
    np.testing.assert_allclose(ref, [SIZE[0] / 2, SIZE[1] / 2, SIZE[2]], atol=1e-9)

    res = fem.solve(m, solver="direct")
    F = np.array(case.force)
    M = np.array(case.moment)
    np.testing.assert_allclose(res.applied_total(), F, atol=1e-9)
    np.testing.assert_allclose(res.reaction_total(), -F, atol=1e-6 * max(case.axial_force, 1))
    np.testing.assert_allclose(res.reactions["bottom"], -F, atol=1e-6 * case.axial_force)

    bottom = m.node_sets["bottom"]
    R = nodal_reactions(m, res, bottom)
    np.testing.assert_allclose(R.sum(0), -F, atol=1e-6 * case.axial_force)
    arm = m.points[bottom] - ref
    np.testing.assert_allclose(np.cross(arm, R).sum(0), -M, atol=1e-6 * case.axial_force * 25)


@pytest.mark.parametrize("name", ["flexion", "extension", "lateral_bending_left",
                                  "lateral_bending_right", "axial_rotation_left",
                                  "axial_rotation_right"])
def test_moment_signs_read_anatomically(name):
    """Flexion tilts the top forward (anterior = -y edge sinks), left bending tilts it to the
    patient's left (+x edge sinks); every moment turns the plate the way it pushes."""
    m = stand_in()
    m = lc.loaded(m, name)
    res = fem.solve(m, solver="direct")
    case = lc.LOAD_CASES[name]
    rot = res.plate_motion(f"load:{name}")[3:]
    axis = int(np.argmax(np.abs(case.moment)))
    assert np.sign(rot[axis]) == np.sign(case.moment[axis])
    assert abs(rot[axis]) > 100 * np.abs(np.delete(rot, axis)).max()
    top = m.node_sets["top"]
    uz, p = res.displacement[top, 2], m.points[top]
    if axis == 0:
        anterior, posterior = uz[p[:, 1] < 1e-9].mean(), uz[p[:, 1] > SIZE[1] - 1e-9].mean()
        assert (anterior < posterior) == (case.mx > 0)
    elif axis == 1:
        left, right = uz[p[:, 0] > SIZE[0] - 1e-9].mean(), uz[p[:, 0] < 1e-9].mean()
        assert (left < right) == (case.my > 0)


@pytest.mark.parametrize("bowl", [0.0, 1.5])
def test_pressure_gives_the_same_axial_force(bowl):
    """p = F / projected area: the resultant is F on a flat and on a 1.5 mm concave endplate,
    where the surface area exceeds the projected area and p = F / area would fall short."""
    case = lc.LOAD_CASES["forward_bending"]
    m = stand_in(bowl)
    m = lc.loaded(m, case, method="pressure")
    conds = lc.conditions(m)
    p = conds["load:forward_bending"].pressure
    _, vec, area = lc.surface_geometry(m, "top")
    np.testing.assert_allclose(vec[2], SIZE[0] * SIZE[1], rtol=1e-12)
    if bowl:
        assert area > vec[2] * (1 + 1e-4)
    res = fem.solve(m, solver="direct")
    F = np.array(case.force)
    np.testing.assert_allclose(res.applied_total(), F, atol=1e-9 * case.axial_force)
    np.testing.assert_allclose(res.reaction_total(), -F, atol=1e-6 * case.axial_force)
    np.testing.assert_allclose(p, case.axial_force / (SIZE[0] * SIZE[1]), rtol=1e-12)

    mp = stand_in(bowl)
    mp = lc.loaded(mp, case, method="plate")
    rp = fem.solve(mp, solver="direct")
    np.testing.assert_allclose(rp.reaction_total(), res.reaction_total(), atol=1e-6 * 1100)


def test_plate_reference_is_the_area_centroid_of_a_curved_top():
    m = stand_in(1.5)
    c, _, _ = lc.surface_geometry(m, "top")
    np.testing.assert_allclose(c[:2], [SIZE[0] / 2, SIZE[1] / 2], atol=1e-9)
    assert SIZE[2] - 1.5 < c[2] < SIZE[2]
    conds = lc.conditions(lc.loaded(m, "flexion"))
    np.testing.assert_allclose(conds["load:flexion"].reference, c)


def test_scale_multiplies_force_and_moment():
    m = stand_in()
    m = lc.loaded(m, "extension", scale=2.0)
    res = fem.solve(m, solver="direct")
    np.testing.assert_allclose(res.reaction_total(), [0, 0, 1000.0], atol=1e-6)
    R = nodal_reactions(m, res, m.node_sets["bottom"])
    arm = m.points[m.node_sets["bottom"]] - [SIZE[0] / 2, SIZE[1] / 2, SIZE[2]]
    np.testing.assert_allclose(np.cross(arm, R).sum(0), [15000.0, 0, 0], atol=1e-3)


def test_pressure_refuses_a_moment_and_names_the_case():
    with pytest.raises(fem.BoundaryConditionError, match="flexion.*uniform pressure"):
        lc.loaded(stand_in(), "flexion", method="pressure")


def test_bad_arguments_raise_model_errors():
    m = stand_in()
    with pytest.raises(fem.BoundaryConditionError, match="unknown load case 'jumping'"):
        m = lc.loaded(m, "jumping")
    with pytest.raises(fem.BoundaryConditionError, match="method"):
        m = lc.loaded(m, "standing", method="springs")
    with pytest.raises(fem.SetError, match="floor"):
        m = lc.loaded(m, "standing", support="floor")
    with pytest.raises(fem.BoundaryConditionError, match="source"):
        lc.LoadCase("nowhere", 500.0)
    with pytest.raises(fem.BoundaryConditionError, match="axial force"):
        lc.LoadCase("pull", -10.0, source="x")
    assert m.conditions == []


def test_registry_covers_the_deliverable_and_every_case_has_a_source():
    wanted = {"standing", "relaxed_standing", "flexion", "extension", "lateral_bending_left",
              "lateral_bending_right", "axial_rotation_left", "axial_rotation_right",
              "forward_bending", "lifting_20kg_round_back", "lifting_20kg_flexed_knees",
              "coughing_sneezing"}
    assert wanted <= set(lc.LOAD_CASES)
    for name, case in lc.LOAD_CASES.items():
        assert case.name == name
        assert case.source.strip()
        assert 300.0 <= case.axial_force <= 2500.0
    moments = {n: c.moment for n, c in lc.LOAD_CASES.items() if c.has_moment}
    assert all(np.isclose(np.linalg.norm(m), 7500.0) for m in moments.values())


def test_wilke_pressures_convert_in_order_of_the_activities():
    """The conversion is linear in pressure, so the activities keep Wilke's order; relaxed
    standing lands on the 500 N FE preload (the cross-check the disc area was chosen against)."""
    f = {n: lc.LOAD_CASES[n].axial_force for n in
         ("relaxed_standing", "forward_bending", "lifting_20kg_flexed_knees",
          "lifting_20kg_round_back")}
    assert list(f.values()) == sorted(f.values())
    np.testing.assert_allclose(f["relaxed_standing"], lc.LOAD_CASES["standing"].axial_force)
    np.testing.assert_allclose(lc.force_from_disc_pressure(2.3, area=1800.0), 2760.0)


def test_coughing_is_nachemsons_ratio_of_relaxed_standing():
    """Nachemson's relative disc loads put coughing at 140 % of standing; on Wilke's relaxed
    standing (0.5 MPa -> 500 N) that is 700 N, between standing and forward bending, and the
    case cites its sources instead of the old placeholder assumption."""
    case = lc.LOAD_CASES["coughing_sneezing"]
    standing = lc.LOAD_CASES["relaxed_standing"].axial_force
    np.testing.assert_allclose(case.axial_force, 1.4 * standing, rtol=1e-12)
    assert standing < case.axial_force < lc.LOAD_CASES["forward_bending"].axial_force
    assert "ASSUMPTION" not in case.source
    assert "Nachemson" in case.source and "Wilke" in case.source


def test_loaded_returns_a_new_model_and_records_the_case():
    """Every Model transform returns a new Model (issue 18, deliverable 4): loaded leaves its
    input without conditions, records the case as data, and the metrics read its name there;
    the former in-place apply still works, with a DeprecationWarning."""
    from fem import metrics

    m = stand_in()
    out = lc.loaded(m, "flexion", scale=2.0)
    assert out is not m and m.conditions == [] and "load_case" not in m.metadata
    rec = out.metadata["load_case"]
    assert rec["name"] == "flexion" and rec["method"] == "plate" and rec["scale"] == 2.0
    np.testing.assert_allclose(rec["force_n"], 2.0 * np.array(lc.LOAD_CASES["flexion"].force))
    np.testing.assert_allclose(rec["moment_nmm"],
                               2.0 * np.array(lc.LOAD_CASES["flexion"].moment))
    assert set(lc.conditions(out)) == {"support", "load:flexion"}
    assert metrics._load_case_name(out) == "flexion"
    with pytest.raises(fem.BoundaryConditionError, match="no load case"):
        lc.conditions(m)
    with pytest.warns(DeprecationWarning, match="loaded"):
        conds = lc.apply(m, "standing")
    assert list(conds) == ["support", "load:standing"] and len(m.conditions) == 2


def test_model_solve_is_fem_solve():
    """Model.solve as VoxelModel.solve (issue 18, deliverable 4: one API for both)."""
    m = lc.loaded(stand_in(), "standing")
    a, b = m.solve(solver="direct"), fem.solve(m, solver="direct")
    np.testing.assert_array_equal(a.displacement, b.displacement)
    np.testing.assert_allclose(a.reaction_total(), [0.0, 0.0, 500.0], atol=1e-6)


def test_a_load_kept_in_space_does_not_ride_the_tipped_segment():
    """After a wedge fracture tips the levels above, line='space' puts the plate's load where the
    intact segment's top was (the default), line='plate' where the tipped top is; with the load
    kept in space the fractured level's answer does not depend on how many levels sit above it."""
    import warnings

    from fem import metrics
    from fem.meshes import pathology, vertebra

    out = {}
    for levels in ("L1-L3", "T12-L3"):
        intact = vertebra.segment_model(levels, voxel_size=3.0)
        broken = pathology.compress(intact, "L2", "wedge", grade=2)
        ref0 = np.asarray(lc.loaded(intact, "standing").conditions[-1].reference)
        ride = lc.loaded(broken, "standing", line="plate")
        keep = lc.loaded(broken, "standing")  # line="space", the default
        assert np.allclose(keep.conditions[-1].reference, ref0, atol=1e-6)
        shift = np.asarray(ride.conditions[-1].reference) - ref0
        assert shift[1] < -8.0  # the tipped top moved forward (y is posterior)
        assert keep.metadata["load_case"]["line"] == "space"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            out[levels] = {line: metrics.level_metrics(fem.solve(m)).set_index("level").at[
                "L2", "stiffness_n_per_mm"] for line, m in (("plate", ride), ("space", keep))}
    assert out["L1-L3"]["space"] == pytest.approx(out["T12-L3"]["space"], rel=0.05)
    assert out["T12-L3"]["plate"] < 0.8 * out["L1-L3"]["plate"]  # the longer lever
    straight = vertebra.segment_model("L1-L2", voxel_size=4.0)  # nothing tipped: the same
    assert (lc.loaded(straight, "standing", line="space").conditions[-1].reference
            == lc.loaded(straight, "standing").conditions[-1].reference)
    with pytest.raises(fem.BoundaryConditionError, match="line must be one of"):
        lc.loaded(broken, "standing", line="pelvis")


def test_between_platens_holds_the_plate_parallel_and_leaves_the_model_alone():
    """A flexion moment on a plate held between platens: the plate moves only along z, it does
    not tilt, and the axial force still reaches the support; the original model keeps its
    free plate (which tilts under the moment)."""
    m = hex_block((2, 2, 4), (10.0, 10.0, 20.0), E=100.0, nu=0.3)
    m.add(fem.Fixed("zmin", "xyz"),
          fem.RigidPlate("zmax", force=(0.0, 0.0, -100.0), moment=(50.0, 0.0, 0.0),
                         name="plate"))
    held = lc.between_platens(m)
    free = fem.solve(m).plate_motion("plate")
    fixed = fem.solve(held).plate_motion("plate")
    assert abs(free[3]) > 1e-4  # the free plate tilts about x
    np.testing.assert_allclose(fixed[[0, 1, 3, 4, 5]], 0.0, atol=1e-12)
    assert fixed[2] < 0.0
    assert m.conditions[-1].rotation is None or m.conditions[-1].rotation != (0.0, 0.0, 0.0)
