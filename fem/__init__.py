"""vertebra-fem: finite-element stress analysis of osteoporotic vertebrae before and after cement
augmentation. Units are mm, N and MPa throughout.

Quick use::

    import fem
    model = fem.Model.from_inp("deck.inp")      # or Model.from_file("mesh.vtu"), from_arrays(...)
    result = fem.solve(model)                    # backend="auto" | "numpy" | "cupy"
    result.write("out.vtu")
"""

def _map_source_tree() -> None:
    """Make ``fem.kernels`` and ``fem.meshes`` importable from a source checkout.

    Installed, they are subpackages (setuptools maps ``kernels/`` and ``meshes/`` into ``fem``);
    run from the repository without installing (``python -m fem.cli`` in the checkout, where the
    checkout's ``fem/`` shadows the installed one), they live beside ``fem/``.
    """
    import importlib.util
    import os
    import sys

    here = os.path.dirname(os.path.abspath(__file__))
    root = os.path.dirname(here)
    if not os.path.isfile(os.path.join(root, "pyproject.toml")):
        return
    for sub in ("kernels", "meshes"):
        name = f"{__name__}.{sub}"
        init = os.path.join(root, sub, "__init__.py")
        if name in sys.modules or os.path.isdir(os.path.join(here, sub)) or not os.path.isfile(init):
            continue
        spec = importlib.util.spec_from_file_location(
            name, init, submodule_search_locations=[os.path.join(root, sub)])
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        globals()[sub] = module  # fem.meshes, as a wheel's subpackage would be bound


_map_source_tree()

from .analysis import solve  # noqa: E402
from .errors import (  # noqa: E402
    BoundaryConditionError,
    ConvergenceError,
    DeckError,
    InputFileError,
    MaterialError,
    MechanismError,
    MeshError,
    ModelError,
    OutputError,
    ParameterError,
    SetError,
    SolverError,
    UnderConstrainedError,
)
from .fibres import FibreLaw, solve_disc, solve_fibres  # noqa: E402
from .finite_strain import solve_finite_strain  # noqa: E402
from .loads import (  # noqa: E402
    Displacement,
    Fixed,
    NodalForce,
    Pressure,
    RigidPlate,
    TotalForce,
    Traction,
)
from .model import FaceSet, Model  # noqa: E402
from .nonlinear import DamageLaw, solve_nonlinear  # noqa: E402
from .plasticity import solve_plastic  # noqa: E402
from .result import Result  # noqa: E402
from .voxel import VoxelModel  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "BoundaryConditionError", "ConvergenceError", "DeckError", "Displacement", "FaceSet", "Fixed",
    "InputFileError", "MaterialError", "MeshError", "Model", "ModelError", "NodalForce",
    "ParameterError", "Pressure", "Result", "RigidPlate", "SetError", "SolverError", "TotalForce", "Traction",
    "UnderConstrainedError", "MechanismError", "OutputError", "VoxelModel", "solve", "solve_plastic", "solve_nonlinear",
    "DamageLaw", "FibreLaw", "solve_disc", "solve_fibres", "solve_finite_strain", "__version__",
]
