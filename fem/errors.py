"""The one exception family for faults in the user's input.

Every error caused by a file, a deck, a parameter, a model that cannot be solved or a solve that
does not converge is a :class:`ModelError`. Its message names the fault and where it is (file and
line, element or node labels, set names) so that the user can fix it; the CLI prints it as one
line ``error: ...`` and exits with status 2.
"""

from __future__ import annotations

from collections.abc import Sequence


class ModelError(Exception):
    """Base class: a fault in the input that the user must fix."""


class InputFileError(ModelError):
    """A file that cannot be read: missing, empty, binary, or of an unknown format."""


class DeckError(ModelError):
    """A fault in an Abaqus/CalculiX input deck, with the file and line where it is."""

    def __init__(self, message: str, path: str | None = None, line: int | None = None):
        self.path = path
        self.line = line
        where = ""
        if path is not None and line is not None:
            where = f"{path}, line {line}: "
        elif path is not None:
            where = f"{path}: "
        super().__init__(where + message)


class OutputError(ModelError):
    """An output that cannot be written: a missing or unwritable folder, a folder where the file
    goes, a full disk."""


class ParameterError(ModelError, ValueError):
    """An argument outside its limits or not one of its choices (a voxel size, a fracture
    grade, a cement volume): the message names the parameter, what it may be and what it got.
    The limits are in :data:`fem.limits.LIMITS`."""


class MeshError(ModelError):
    """Bad geometry or connectivity: inverted or degenerate elements, undefined nodes."""


class MaterialError(ModelError):
    """Missing or impossible material properties (E <= 0, nu outside (-1, 0.5), NaN)."""


class SetError(ModelError):
    """A node, element or face set that is unknown, empty or refers to what does not exist."""


class BoundaryConditionError(ModelError):
    """Boundary conditions or loads that contradict each other or cannot be applied."""


class UnderConstrainedError(BoundaryConditionError):
    """The supports leave rigid-body motions free; ``free_motions`` says which."""

    def __init__(self, message: str, free_motions: Sequence[str] = ()):
        self.free_motions = list(free_motions)
        super().__init__(message)


class MechanismError(UnderConstrainedError):
    """A part of the mesh is held only through a node or an edge (a hinge) and moves freely."""


class SolverError(ModelError):
    """The linear solver failed (singular matrix, unknown solver name)."""


class ConvergenceError(SolverError):
    """The iterative solver did not reach the tolerance; ``residuals`` is its history."""

    def __init__(self, message: str, residuals: Sequence[float] = ()):
        self.residuals = list(residuals)
        super().__init__(message)


class SlowConvergence(ConvergenceError):
    """The multigrid's first iterations project far more iterations than another solver would
    cost (``solver="auto"`` then switches; :data:`fem.gmg.PATIENCE`)."""


def format_labels(labels, limit: int = 10) -> str:
    """'12, 57, 90' or '12, 57, ... (134 in all)' for error messages."""
    labels = [int(x) for x in labels]
    if len(labels) <= limit:
        return ", ".join(str(x) for x in labels)
    return ", ".join(str(x) for x in labels[:limit]) + f", ... ({len(labels)} in all)"
