"""Deprecated home of the level frame: it moved to :mod:`fem.anatomy` with the anatomy type.

Kept for one release so that users' ``from fem.meshes.anatomy import level_frame`` still works.
"""

from __future__ import annotations

from ..anatomy import DEFAULT_RIM, LevelFrame, level_frame

__all__ = ["DEFAULT_RIM", "LevelFrame", "level_frame"]
