"""A model's anatomy, sets and procedure records as JSON, beside the VTU of its result.

A VTU holds the mesh, the material regions and the fields; the views of a study's report also
need what the builders and procedures recorded: the levels and their anatomy, the fractures and
augmentations, the node sets of the endplates, every named region. :func:`write_model_record`
writes them (``runs/<id>.model.json`` beside ``runs/<id>.vtu``, atomically) and
:func:`read_model_record` / :func:`apply_model_record` put them back on the model read from the
VTU, so a report draws a run from what was stored and never rebuilds it.

Encoding: the anatomy is :meth:`fem.anatomy.Anatomy.to_json`'s list of levels; other dataclass
records become JSON objects with ``"__record__"`` naming their class and
are read back as :class:`types.SimpleNamespace` (attribute access, as the views and metrics read
records); NumPy arrays and tuples become lists. The record names the mesh it belongs to (node
and element counts and a digest of the element moduli), so a VTU replaced by another run's is
told apart.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import types
from pathlib import Path

import numpy as np

from ..anatomy import Anatomy
from ..errors import InputFileError
from .atomic import atomic_path

#: the metadata keys the record keeps (large per-node arrays such as "collapse" stay out)
METADATA_KEYS = ("levels", "anatomy", "fractures", "augmentations", "lesions", "kyphosis",
                 "load_case", "mesh", "layer_factors", "voxel_size")
VERSION = 1


def moduli_digest(E) -> str:
    """A digest of the element moduli (MPa, as float64), to tell meshes apart."""
    return hashlib.sha1(np.ascontiguousarray(np.asarray(E, dtype=np.float64))).hexdigest()


def _encode(value):
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out = {f.name: _encode(getattr(value, f.name)) for f in dataclasses.fields(value)}
        out["__record__"] = type(value).__name__
        return out
    if isinstance(value, dict):
        return {str(k): _encode(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_encode(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return repr(value)


def _decode(value):
    if isinstance(value, dict):
        inner = {k: _decode(v) for k, v in value.items() if k != "__record__"}
        return types.SimpleNamespace(**inner) if "__record__" in value else inner
    if isinstance(value, list):
        return [_decode(v) for v in value]
    return value


def model_record(model) -> dict:
    """What the views need of ``model`` beyond its VTU, JSON-ready."""
    return {
        "version": VERSION,
        "n_nodes": int(model.n_nodes), "n_elements": int(model.n_elements),
        "moduli_sha1": moduli_digest(model.E),
        "metadata": {k: model.anatomy.to_json() if k == "anatomy" else _encode(model.metadata[k])
                     for k in METADATA_KEYS if k in model.metadata},
        "regions": {k: np.asarray(v).tolist() for k, v in model.regions.items()},
        "node_sets": {k: np.asarray(v).tolist() for k, v in model.node_sets.items()},
    }


def write_model_record(model, path) -> Path:
    """Write :func:`model_record` as JSON, atomically."""
    path = Path(path)
    with atomic_path(path) as tmp:
        Path(tmp).write_text(json.dumps(model_record(model)))
    return path


def read_model_record(path) -> dict:
    path = Path(path)
    try:
        rec = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputFileError(f"{path}: no model record") from None
    except (OSError, ValueError) as exc:
        raise InputFileError(f"{path}: not a readable model record ({exc})") from None
    if not isinstance(rec, dict) or rec.get("version") != VERSION:
        raise InputFileError(f"{path}: not a model record of version {VERSION}")
    return rec


def mismatch(model, record: dict) -> str | None:
    """Why ``record`` does not belong to ``model`` (read from a VTU), or None."""
    if (record["n_nodes"], record["n_elements"]) != (model.n_nodes, model.n_elements):
        return (f"{model.n_nodes} nodes / {model.n_elements} elements in the VTU, "
                f"{record['n_nodes']} / {record['n_elements']} in its model record")
    if record["moduli_sha1"] != moduli_digest(model.E):
        return "the element moduli differ (another fracture, cement fill or bone quality)"
    return None


def apply_model_record(model, record: dict):
    """Put the record's regions, node sets and metadata on ``model`` (in place); returns it."""
    model.regions = {}
    for name, el in record["regions"].items():
        model.add_region(name, np.asarray(el, dtype=np.int64))
    for name, nodes in record["node_sets"].items():
        model.add_node_set(name, np.asarray(nodes, dtype=np.int64))
    model.metadata.update({k: Anatomy.from_json(v) if k == "anatomy" else _decode(v)
                           for k, v in record["metadata"].items()})
    return model
