"""The native voxel route (issue 19, deliverable 1): ``fem.solve(VoxelModel)`` compiles supports,
loads and the rigid-body check on the grid and answers on the grid, never building the hex8
Model, with the answers of the hex8 route (``fem.solve(vm.to_model())``) to 1e-12: heterogeneous
moduli with empty voxels, named planes, node sets, index targets, prescribed displacements,
B-bar; the same errors for unsupported models, hinges and bad targets; the same VTU."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest

import fem
from fem.errors import BoundaryConditionError, MechanismError, SetError, UnderConstrainedError
from fem.meshes.voxel import bone_like_block
from fem.voxel import VoxelModel
from fem.voxel_result import VoxelResult

TOL = 1e-12


def rel(a, b) -> float:
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    scale = np.abs(b).max()
    return float(np.abs(a - b).max() / scale) if scale > 0 else float(np.abs(a).max())


def holed_block(rng, shape=(9, 7, 8), spacing=(0.5, 0.6, 0.7)):
    """Random moduli 100..10 000 MPa with 15 % empty voxels and an empty tunnel along y."""
    E = rng.uniform(100.0, 10_000.0, shape)
    E[rng.random(shape) < 0.15] = 0.0
    E[3:5, :, 3:5] = 0.0
    E[:, :, 0] = np.where(E[:, :, 0] > 0, E[:, :, 0], 500.0)  # a whole support plane
    return VoxelModel(E, spacing=spacing, origin=(1.0, -2.0, 0.5), nu=0.3)


def loaded(vm: VoxelModel) -> VoxelModel:
    nx, ny, nz = vm.shape
    vm.add_node_set("line", [(i, 0, 0) for i in range(nx + 1)])
    vm.add_node_set("corner", [(0, 0, 0), (0, ny, 0)])
    vm.add_node_set("top_pin", [(nx // 2, ny // 2, nz)])
    vm.fix("zmin", "z").fix("line", "y").fix("corner", "x")
    vm.add(fem.Pressure("zmax", 2.0), fem.Traction("xmax", (0.3, -0.1, 0.2)),
           fem.TotalForce("ymax", (0.0, 5.0, -3.0)), fem.NodalForce("top_pin", (1.0, 0.5, -2.0)),
           fem.Displacement("xmax", (0.001, None, None)))
    return vm


def both(vm, **kw):
    """(new route, hex8 route) of the same model and solver arguments."""
    kw = {"solver": "gmg", "rtol": 1e-12, **kw}
    new = fem.solve(vm, **kw)
    old = fem.solve(vm.to_model(), **kw)
    return new, old


def assert_same_answers(new, old, tol=TOL):
    assert isinstance(new, VoxelResult) and not isinstance(old, VoxelResult)
    for name in ("displacement", "stress", "strain", "strain_energy_density", "von_mises",
                 "principal_stress", "principal_strain", "element_volume", "physical_stress"):
        assert rel(getattr(new, name), getattr(old, name)) < tol, name
    assert abs(new.strain_energy() - old.strain_energy()) < tol * abs(old.strain_energy())
    assert rel(new.nodal_average(new.stress), old.nodal_average(old.stress)) < tol
    for a, b in zip(new.integration_point_stress(), old.integration_point_stress()):
        assert rel(a, b) < tol
    force = max(np.abs(old.reaction_values).max(), np.abs(old.applied_total()).max())
    assert new.reactions.keys() == old.reactions.keys()
    for name, r in old.reactions.items():
        np.testing.assert_allclose(new.reactions[name], r, rtol=0, atol=1e-10 * force)
    np.testing.assert_allclose(new.reaction_values, old.reaction_values, rtol=0,
                               atol=1e-10 * force)
    np.testing.assert_allclose(new.applied_total(), old.applied_total(), rtol=1e-13,
                               atol=1e-13 * force)
    assert new.info.n_dof == old.info.n_dof and new.info.n_equations == old.info.n_equations
    assert new.info.iterations == old.info.iterations


def test_native_route_gives_the_hex8_route_s_answers(rng):
    new, old = both(loaded(holed_block(rng)))
    assert_same_answers(new, old)
    # equilibrium: the reactions balance the loads
    resultant, scale = new.balance()
    assert np.abs(resultant).max() < 1e-9 * scale
    assert new.info.imbalance < 1e-9


@pytest.mark.parametrize("case", ["bone_like", "bbar", "anisotropic"])
def test_native_route_on_the_bench_blocks(case):
    vm = {"bone_like": lambda: bone_like_block((10, 9, 12), spacing=(0.7, 0.7, 1.0)),
          "bbar": lambda: bone_like_block((6, 5, 7), nu=0.49),
          "anisotropic": lambda: bone_like_block((12, 10, 4), spacing=(0.3, 0.3, 1.5))}[case]()
    if case == "bbar":
        with pytest.warns(UserWarning, match="B-bar"):
            new = fem.solve(vm, solver="gmg", rtol=1e-12)
        with pytest.warns(UserWarning, match="B-bar"):
            old = fem.solve(vm.to_model(), solver="gmg", rtol=1e-12)
        assert new.bbar
    else:
        new, old = both(vm)
    assert_same_answers(new, old)


def test_mixed_precision_matches_too(rng):
    new, old = both(loaded(holed_block(rng)), precision="mixed", rtol=1e-9)
    assert new.info.precision == old.info.precision == "mixed"
    assert_same_answers(new, old)


def test_mixed_precision_that_stalls_is_solved_again_in_double(monkeypatch):
    import fem.voxel

    real = fem.voxel.run_grid_solver

    def stalling(problem, be, info, *, precision, **kw):
        if precision == "mixed":
            raise fem.ConvergenceError("mixed precision stalled", [1.0, 0.9])
        return real(problem, be, info, precision=precision, **kw)

    monkeypatch.setattr(fem.voxel, "run_grid_solver", stalling)
    vm = bone_like_block((10, 9, 12))
    with pytest.warns(UserWarning, match="mixed precision did not converge.*stalled"):
        r = fem.solve(vm, solver="gmg", precision="mixed", rtol=1e-10)
    assert r.info.precision == "double"
    ref = fem.solve(vm.to_model(), solver="gmg", rtol=1e-10)
    assert rel(r.displacement, ref.displacement) < TOL


def test_index_and_face_targets_use_the_hex8_numbering(rng):
    vm = holed_block(rng, shape=(6, 5, 7))
    m = vm.to_model()
    bottom = m.nodes_of("zmin")
    top = m.face_set("zmax")
    vm.add(fem.Fixed(bottom[::2], "xyz"), fem.Fixed(bottom, "z"),
           fem.Pressure((top.elements[:7], top.faces[:7]), 1.5),
           fem.NodalForce(np.array([len(bottom) + 3]), (0.0, 0.0, -1.0)))
    new, old = both(vm)
    assert_same_answers(new, old)


def test_no_hex8_model_is_built_until_it_is_asked_for(rng, monkeypatch, tmp_path):
    vm = loaded(holed_block(rng))
    ref = fem.solve(vm.to_model(), solver="gmg", rtol=1e-10)

    def refuse(self):
        raise AssertionError("to_model was called")

    monkeypatch.setattr(VoxelModel, "to_model", refuse)
    r = vm.solve(solver="gmg", rtol=1e-10)
    assert "model" not in r.__dict__ and "system" not in r.__dict__
    assert rel(r.stress, ref.stress) < 1e-12
    r.summary()
    out = r.write(tmp_path / "voxels.vtu")  # streamed from the grid: no Model either
    monkeypatch.undo()
    import meshio

    mesh, ref_mesh = meshio.read(out), meshio.read(ref.write(tmp_path / "ref.vtu"))
    assert np.array_equal(mesh.cells[0].data, ref_mesh.cells[0].data)
    assert np.allclose(mesh.points, ref_mesh.points, rtol=0, atol=1e-12)
    assert sorted(mesh.point_data) == sorted(ref_mesh.point_data)
    assert sorted(mesh.cell_data) == sorted(ref_mesh.cell_data)
    for name, values in ref_mesh.point_data.items():
        assert rel(mesh.point_data[name], values) < 1e-12, name
    for name, values in ref_mesh.cell_data.items():
        assert rel(mesh.cell_data[name][0], values[0]) < 1e-12, name
    # the hex8 view, when asked for, is the model the hex8 route solved
    assert r.model.n_elements == ref.model.n_elements
    assert np.array_equal(r.system.fixed_dofs, ref.system.fixed_dofs)
    grid, ref_grid = r.to_pyvista(), ref.to_pyvista()
    assert sorted(grid.cell_data) == sorted(ref_grid.cell_data)
    assert sorted(grid.point_data) == sorted(ref_grid.point_data)
    for name in ref_grid.point_data:
        assert rel(grid.point_data[name], ref_grid.point_data[name]) < 1e-12, name


@pytest.mark.parametrize("compression", ["zlib", None])
def test_streamed_vtu_equals_the_hex8_route_s(rng, monkeypatch, tmp_path, compression):
    """Written right after the solve (no field computed yet, no hex8 Model built), in ranges of
    a few planes (the range boundaries of cells, points and nodal averages), read by meshio and
    by VTK."""
    import meshio

    import fem.voxel_result

    vm = loaded(holed_block(rng))
    ref = fem.solve(vm.to_model(), solver="gmg", rtol=1e-10)
    r = fem.solve(vm, solver="gmg", rtol=1e-10)
    monkeypatch.setattr(fem.voxel_result, "RECOVERY_VOXELS", 150)
    assert len(r._plane_ranges(vm.shape[2])) > 3
    out = r.write(tmp_path / "v.vtu", compression=compression)
    assert not {"model", "system", "displacement"} & set(r.__dict__)
    mesh = meshio.read(out)
    ref_mesh = meshio.read(ref.write(tmp_path / "ref.vtu", compression=compression))
    assert np.array_equal(mesh.cells[0].data, ref_mesh.cells[0].data)
    assert np.array_equal(mesh.points, ref_mesh.points)
    for name, values in ref_mesh.point_data.items():
        assert rel(mesh.point_data[name], values) < 1e-12, name
    for name, values in ref_mesh.cell_data.items():
        assert rel(mesh.cell_data[name][0], values[0]) < 1e-12, name
    pv = pytest.importorskip("pyvista")
    grid = pv.read(out)
    assert grid.n_cells == ref.model.n_elements and grid.n_points == ref.model.n_nodes
    assert rel(grid.cell_data["stress"], ref.stress) < 1e-12
    assert rel(grid.point_data["displacement"], ref.displacement) < 1e-12


@pytest.mark.parametrize("compression", ["zlib", None])
def test_image_output_holds_the_vtu_fields_on_the_whole_grid(rng, monkeypatch, tmp_path,
                                                             compression):
    """``write("x.vti")``: VTK ImageData of the whole image, read back by VTK (pyvista): its
    origin, spacing and dimensions are the model's; every array of the VTU is there under the
    same name, its occupied voxels' and their nodes' values those of the VTU (the hex8 view's
    orders are the grid's C order of occupied voxels and of their nodes), the empty voxels and
    the nodes of none 0 (``region`` -1), and ``solid`` marks the occupied voxels."""
    pv = pytest.importorskip("pyvista")
    import meshio

    import fem.voxel_result

    vm = loaded(holed_block(rng))
    r = fem.solve(vm, solver="gmg", rtol=1e-10)
    monkeypatch.setattr(fem.voxel_result, "RECOVERY_VOXELS", 150)  # several ranges
    out = r.write(tmp_path / "v.vti", compression=compression)
    img = pv.read(out)
    nx, ny, nz = vm.shape
    assert tuple(img.dimensions) == (nx + 1, ny + 1, nz + 1)
    assert np.allclose(img.origin, vm.origin) and np.allclose(img.spacing, vm.spacing)
    ref = meshio.read(r.write(tmp_path / "v.vtu"))
    solid = vm.grid_moduli.ravel() > 0
    assert np.array_equal(np.asarray(img.cell_data["solid"]), solid.astype(np.uint8))
    assert set(ref.cell_data) | {"solid"} == set(img.cell_data)
    for name, (values,) in ref.cell_data.items():
        got = np.asarray(img.cell_data[name])
        assert np.array_equal(got[solid], values), name
        assert np.all(got[~solid] == (-1 if name == "region" else 0)), name
    from fem.voxel_system import active_mask

    active = active_mask(vm.grid_moduli > 0).ravel()
    assert set(ref.point_data) == set(img.point_data)
    for name, values in ref.point_data.items():
        got = np.asarray(img.point_data[name])
        assert np.array_equal(got[active], values), name
        assert np.all(got[~active] == 0), name
    assert rel(np.asarray(img.point_data["displacement"])[active], r.displacement) < 1e-12


def test_an_image_output_refuses_other_compressions(tmp_path):
    r = fem.solve(bone_like_block((12, 12, 12)), solver="gmg")
    with pytest.raises(fem.errors.InputFileError, match="compression of a .vti"):
        r.write(tmp_path / "v.vti", compression="lzma")
    with pytest.raises(fem.errors.InputFileError, match=r"\.vtu .*or \.vti"):
        r.write(tmp_path / "v.vtk")
    assert not list(tmp_path.iterdir())


def test_other_solvers_small_models_and_plates_take_the_hex8_route():
    vm = bone_like_block((4, 4, 4))
    assert not isinstance(fem.solve(vm), VoxelResult)  # 375 dofs: direct
    assert fem.solve(vm).info.solver == "direct"
    big = bone_like_block((12, 12, 12))
    assert isinstance(fem.solve(big), VoxelResult)  # auto above DIRECT_MAX_DOF: the grid
    assert fem.solve(big, solver="amg", rtol=1e-8).info.solver == "amg"
    plate = bone_like_block((12, 12, 12))
    plate.conditions = [c for c in plate.conditions if not isinstance(c, fem.Pressure)]
    plate.add(fem.RigidPlate("zmax", force=(0.0, 0.0, -100.0)))
    r = fem.solve(plate, rtol=1e-8)
    assert r.info.solver == "amg" and not isinstance(r, VoxelResult)


def test_ct_phantom_with_thresholded_voxels(rng):
    """A CT vertebra phantom thresholded at 40 mg/cm^3 (a thin stiff shell around soft
    trabecular bone, holes), as examples/ct_vertebra.py builds it."""
    from fem.meshes.ct import Calibration, ct_voxel_model, synthetic_vertebra_phantom

    image, truth = synthetic_vertebra_phantom((24, 24, 16), bmd=90.0, seed=1)
    vm = ct_voxel_model(image, Calibration.from_rods(image, truth["rods"]), threshold_mg_cm3=40.0)
    assert (vm.E == 0).any()
    vm.fix("zmin").add(fem.Pressure("zmax", 1.0))
    new, old = both(vm, rtol=1e-10)
    assert_same_answers(new, old)


@pytest.mark.parametrize("precision", ["double", "mixed"])
def test_native_route_on_each_backend(backend, precision):
    """The native route on CuPy (kernels, multigrid, stresses on the device) equals NumPy's."""
    vm = bone_like_block((10, 9, 12), spacing=(0.7, 0.7, 1.0))
    ref = fem.solve(vm, backend="numpy", solver="gmg", rtol=1e-10, precision=precision)
    r = fem.solve(vm, backend=backend, solver="gmg", rtol=1e-10, precision=precision)
    assert isinstance(r, VoxelResult) and r.info.backend == backend
    h = r.backend.to_host
    assert rel(h(r.displacement), ref.displacement) < 1e-7
    assert rel(h(r.stress), ref.stress) < 1e-7
    assert rel(h(r.nodal_average(r.von_mises)), ref.nodal_average(ref.von_mises)) < 1e-7
    np.testing.assert_allclose(r.reaction_total(), ref.reaction_total(), rtol=1e-7)


# ---------------------------------------------------------------------- the same errors

def both_raise(vm, error, match=None):
    with pytest.raises(error, match=match) as new:
        fem.solve(vm, solver="gmg")
    with pytest.raises(error) as old:
        fem.solve(vm.to_model(), solver="gmg")
    return new.value, old.value


def test_unsupported_model_is_refused_with_its_free_motions():
    vm = bone_like_block((6, 5, 7))
    vm.conditions = [c for c in vm.conditions if not isinstance(c, fem.Fixed)]
    vm.fix("zmin", "z")  # z and the tilts held; x, y and the spin about z free
    new, old = both_raise(vm, UnderConstrainedError, "under-constrained.*translation x")
    assert new.free_motions == old.free_motions
    assert len(new.free_motions) == 3


def test_floating_part_is_refused_on_the_grid():
    E = np.full((6, 4, 6), 1000.0)
    E[:, :, 3] = 0.0  # an empty layer: the upper part floats
    vm = VoxelModel(E)
    vm.fix("zmin").add(fem.Pressure("zmax", 1.0))
    new, old = both_raise(vm, UnderConstrainedError, "part containing grid node")
    assert new.free_motions == old.free_motions and len(new.free_motions) == 6
    assert not isinstance(new, MechanismError)


def test_hinge_between_voxel_parts_is_a_mechanism():
    """Two blocks sharing one edge only: the upper one turns about it."""
    E = np.zeros((4, 3, 6))
    E[:2, :, :3] = 1000.0
    E[2:, :, 3:] = 1000.0  # meets the lower block along the edge x = 2, z = 3
    vm = VoxelModel(E)
    vm.fix("zmin").add(fem.Pressure("zmax", 1.0))
    new, old = both_raise(vm, MechanismError, r"mechanism: a part of 18 element\(s\).*hinge")
    assert new.free_motions == old.free_motions


def test_hinge_held_by_its_own_support_solves():
    E = np.zeros((4, 3, 6))
    E[:2, :, :3] = 1000.0
    E[2:, :, 3:] = 1000.0
    vm = VoxelModel(E)
    vm.add_node_set("far", [(i, j, 6) for i in range(2, 5) for j in range(4)])
    vm.fix("zmin").fix("far").add(fem.NodalForce("far", (0.1, 0.0, 0.0)),
                                   fem.Pressure("xmax", 0.5))
    new, old = both(vm)
    assert rel(new.displacement, old.displacement) < TOL


def _outcome(target):
    """("ok", displacement) or (error class name, free motions) of a gmg solve."""
    try:
        if callable(target):
            target = target()
        return "ok", np.asarray(fem.solve(target, solver="gmg", rtol=1e-10).displacement)
    except fem.ModelError as exc:
        return type(exc).__name__, getattr(exc, "free_motions", None)


@pytest.mark.parametrize("seed", range(0, 30, 6))
def test_random_sparse_voxels_fail_or_solve_alike(seed):
    """Random sparse voxel sets (islands, voxels joined by an edge or a corner) with supports
    on a plane, on a few nodes or on scattered nodes: the grid route and the hex8 route refuse
    the same models with the same error and free motions, and solve the others alike."""
    kinds = set()
    for s in range(seed, seed + 6):
        rng = np.random.default_rng(s)
        E = rng.uniform(100.0, 1000.0, (5, 4, 5))
        E[rng.random(E.shape) < rng.uniform(0.3, 0.6)] = 0.0
        vm = VoxelModel(E)
        if s % 3 == 0:
            vm.fix("zmin")
        elif s % 3 == 1:
            vm.fix("zmin", "z").add_node_set("c", [(0, 0, 0), (5, 0, 0), (0, 4, 0)])
            vm.fix("c", "xy")
        else:
            vm.add_node_set("s", [(i, j, 0) for i in range(6) for j in range(5)][::2]).fix("s")
        vm.add(fem.Pressure("zmax", 1.0))
        new, old = _outcome(vm), _outcome(vm.to_model)
        assert new[0] == old[0], (s, new, old)
        kinds.add(new[0])
        if new[0] == "ok":
            assert rel(new[1], old[1]) < TOL, s
        else:
            assert new[1] == old[1], s
    assert kinds  # over the 30 seeds: 25 solve, 3 hinges, 1 unsupported part, 1 empty set


@pytest.mark.parametrize("change, error, match", [
    (lambda vm: vm.add(fem.Displacement("zmin", (None, None, 0.1))), BoundaryConditionError,
     "conflicting prescribed displacement"),
    (lambda vm: vm.fix("nowhere"), SetError, "unknown node set 'nowhere'"),
    (lambda vm: vm.add(fem.Pressure("edge_x", 1.0)), SetError, "it is a node set"),
    (lambda vm: vm.add(fem.Fixed(np.array([10 ** 6]))), SetError, "do not exist"),
    (lambda vm: vm.add(fem.NodalForce("edge_x", (1e120, 0.0, 0.0))), BoundaryConditionError,
     "outside what a solve"),
])
def test_bad_conditions_raise_as_on_the_hex8_route(change, error, match):
    vm = bone_like_block((6, 5, 7))
    change(vm)
    both_raise(vm, error, match)


def test_node_set_off_the_voxels_is_refused():
    E = np.full((4, 4, 4), 100.0)
    E[0] = 0.0
    vm = VoxelModel(E).fix("zmin").add(fem.Pressure("zmax", 1.0))
    vm.add_node_set("air", [(0, 0, 0)])
    both_raise(vm, SetError, "'air' has no node on an occupied voxel")


# ---------------------------------------------------------------------- the import cycle

def _imports(module: Path) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(module.read_text())):
        if isinstance(node, ast.ImportFrom):
            out |= {f"{node.module or ''}.{a.name}".lstrip(".") for a in node.names}
            out.add(node.module or "")
    return out


def test_analysis_does_not_import_voxel():
    """fem.voxel uses fem.analysis (the hex8 route); fem.analysis hands a VoxelModel to its own
    solve method and imports nothing of fem.voxel: no cycle (also none through a lazy import)."""
    root = Path(fem.__file__).parent
    analysis = _imports(root / "analysis.py")
    assert not {m for m in analysis if m == "voxel" or m.startswith("voxel.")}
    below = ("analysis.py", "grid.py", "gmg.py", "system.py", "result.py", "voxel_system.py",
             "voxel_result.py", "nonlinear_systems.py")
    for name in below:
        assert "voxel" not in {m.split(".")[0] for m in _imports(root / name)}, name


def test_compressed_blocks_are_the_same_bytes_on_any_number_of_threads(rng, monkeypatch,
                                                                       tmp_path):
    """The streamed writers compress their 32 KiB blocks a batch at a time on the CPU threads;
    each block is compressed alone, so the file is the same, byte for byte, on one thread or
    several, and VTK's reader gets the array back."""
    pv = pytest.importorskip("pyvista")
    from fem.io import vtu_stream

    values = rng.standard_normal((2 * vtu_stream.BATCH + 3) * vtu_stream.BLOCK // 8 + 5)
    shape = (len(values), 1, 1)  # a row of cells

    def write(path):
        return vtu_stream.write_vti_streamed(
            path, shape, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), [],
            [vtu_stream.StreamedArray("v", np.float64, 1, lambda: iter([values[:7], values[7:]]))])

    monkeypatch.setenv("FEM_THREADS", "1")
    one = write(tmp_path / "one.vti").read_bytes()
    monkeypatch.setenv("FEM_THREADS", "3")
    several = write(tmp_path / "several.vti")
    assert several.read_bytes() == one
    assert np.array_equal(np.asarray(pv.read(several).cell_data["v"]), values)


def test_a_nodal_force_field_takes_the_same_route_as_on_hex8(rng):
    """A force field (one vector per node of a set, ``NodalForce(target, F)``) on the voxel
    route gives the hex8 route's answer."""
    vm = holed_block(rng)
    nx, ny, nz = vm.shape
    vm.add_node_set("top_line", [(i, ny // 2, nz) for i in range(nx + 1)])
    vm.fix("zmin")
    F = rng.normal(size=(nx + 1, 3))
    vm.add(fem.NodalForce("top_line", F))
    new, old = both(vm)
    assert_same_answers(new, old)
    assert np.allclose(new.applied_total(), F.sum(axis=0), rtol=1e-12)
