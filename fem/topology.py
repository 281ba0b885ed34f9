"""Mesh topology: element faces, the boundary surface, and matching surface cells to faces."""

from __future__ import annotations

import numpy as np

from .model import Model


def _face_keys(model: Model):
    """All element faces: (elements, local faces, sorted corner keys (F, 4), -1 padded)."""
    els, fcs, keys = [], [], []
    for b in model.blocks:
        et = b.etype
        ncorner = 4 if et.face_type == "quad4" else 3
        table = np.array([f[:ncorner] for f in et.faces])  # (nf, ncorner)
        m = len(b.conn)
        corners = b.conn[:, table]  # (m, nf, ncorner)
        k = np.full((m, len(table), 4), -1, dtype=np.int64)
        k[..., :ncorner] = np.sort(corners, axis=-1)
        if ncorner == 3:
            k = np.roll(k, 1, axis=-1)  # -1 first, keeps rows sorted
        keys.append(k.reshape(-1, 4))
        els.append(np.repeat(np.arange(b.start, b.stop), len(table)))
        fcs.append(np.tile(np.arange(len(table)), m))
    return np.concatenate(els), np.concatenate(fcs), np.concatenate(keys)


def face_neighbours(model: Model) -> tuple[np.ndarray, np.ndarray]:
    """Pairs of elements (a, b) that share a face (its corner nodes)."""
    e, _, k = _face_keys(model)
    if model.n_nodes < 2 ** 21:  # the three largest corners name a face of a conforming mesh
        key = (k[:, 1] << 42) | (k[:, 2] << 21) | k[:, 3]
        order = np.argsort(key, kind="stable")
        ks = key[order]
    else:
        order = np.lexsort(k.T[::-1])
        ks = k[order]
        ks = np.concatenate([[0], np.cumsum(np.any(ks[1:] != ks[:-1], axis=1))])
    same = ks[1:] == ks[:-1]
    return e[order[:-1][same]], e[order[1:][same]]


def _sorted_keys(corners: np.ndarray) -> np.ndarray:
    c = np.sort(np.asarray(corners, dtype=np.int64), axis=1)
    k = np.full((len(c), 4), -1, dtype=np.int64)
    k[:, 4 - c.shape[1]:] = c
    return k


def boundary_faces(model: Model) -> tuple[np.ndarray, np.ndarray]:
    """Faces that belong to exactly one element: (elements, local faces)."""
    e, f, k = _face_keys(model)
    _, inv, counts = np.unique(k, axis=0, return_inverse=True, return_counts=True)
    once = counts[inv.ravel()] == 1
    return e[once], f[once]


def match_faces(model: Model, corners: np.ndarray):
    """Element faces whose corner nodes are the rows of ``corners`` (nq, 3 or 4).

    Returns (elements, faces, found) where ``found`` (nq,) says which rows matched a face; for a
    face shared by two elements the one with the lower index is returned.
    """
    e, f, k = _face_keys(model)
    q = _sorted_keys(corners)
    allk = np.concatenate([k, q])
    _, inv = np.unique(allk, axis=0, return_inverse=True)
    inv = inv.ravel()
    ids_f, ids_q = inv[: len(k)], inv[len(k):]
    # first element face for each key id (faces are listed in element order)
    first = np.full(inv.max() + 1, -1, dtype=np.int64)
    order = np.arange(len(k))[::-1]
    first[ids_f[order]] = order
    hit = first[ids_q]
    found = hit >= 0
    hit = np.where(found, hit, 0)
    return e[hit], f[hit], found
