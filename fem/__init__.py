"""vertebra-fem: finite-element stress analysis of osteoporotic vertebrae before and after cement
augmentation. Units are mm, N and MPa throughout.

Quick use::

    import fem
    model = fem.Model.from_inp("deck.inp")      # or Model.from_file("mesh.vtu"), from_arrays(...)
    result = fem.solve(model)                    # backend="auto" | "numpy" | "cupy"
    result.write("out.vtu")
"""

from .errors import (
    BoundaryConditionError,
    ConvergenceError,
    DeckError,
    InputFileError,
    MaterialError,
    MeshError,
    ModelError,
    SetError,
    SolverError,
    UnderConstrainedError,
)
from .loads import (
    Displacement,
    Fixed,
    NodalForce,
    Pressure,
    RigidPlate,
    TotalForce,
    Traction,
)
from .model import FaceSet, Model
from .result import Result
from .analysis import solve

__version__ = "0.1.0"

__all__ = [
    "BoundaryConditionError", "ConvergenceError", "DeckError", "Displacement", "FaceSet", "Fixed",
    "InputFileError", "MaterialError", "MeshError", "Model", "ModelError", "NodalForce",
    "Pressure", "Result", "RigidPlate", "SetError", "SolverError", "TotalForce", "Traction",
    "UnderConstrainedError", "solve", "__version__",
]
