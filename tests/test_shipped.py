"""Shipped models: each is regenerated bit for bit by its builder, reads back, and is solved by
CalculiX to vertebra-fem's answer."""

from __future__ import annotations

import hashlib
import warnings

import numpy as np
import pytest

import fem
from fem.meshes import shipped


def digest(p) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def test_total_size_is_small():
    assert sum(shipped.path(n).stat().st_size for n in shipped.SHIPPED) < 5e6


@pytest.mark.parametrize("name", sorted(shipped.SHIPPED))
def test_regenerated_bit_for_bit(name, tmp_path):
    out = tmp_path / name
    shipped.SHIPPED[name](out)
    assert digest(out) == digest(shipped.path(name)), (
        f"{name} differs from what its builder makes now: run `python -m fem.meshes.shipped`")


def test_moduli_an_ulp_apart_are_one_material_so_a_deck_is_the_same_on_any_cpu(tmp_path):
    """A power or logarithm may round its last bit differently on another CPU (NumPy's AVX-512
    routines against glibc's): the shipped wedge deck, rebuilt on an AMD EPYC, had the same
    moduli to 14 digits but in other material groups. Constants that print alike are one
    material; constants that print differently stay apart."""
    m = fem.Model.from_inp(shipped.path("L1_voxel_2mm.inp"))
    trab = np.asarray(m.regions["L1/trabecular"])
    m.E[trab] = 50.0
    m.E[trab[::2]] = np.nextafter(50.0, 60.0)  # an ulp apart: the region is no longer uniform
    text = m.to_inp(tmp_path / "ulp.inp").read_text()
    assert text.count("*MATERIAL, NAME=VFEM_MAT") == 1
    assert np.array_equal(fem.Model.from_inp(tmp_path / "ulp.inp").E[trab], np.full(len(trab), 50.0))
    m.E[trab[:3]] = 50.0 * (1 + 1e-12)  # prints differently at 14 significant digits
    text = m.to_inp(tmp_path / "apart.inp").read_text()
    assert text.count("*MATERIAL, NAME=VFEM_MAT") == 2


@pytest.mark.parametrize("name, regions", [
    ("L1_voxel_2mm.inp", ["L1/cortex", "L1/trabecular", "L1/posterior"]),
    ("T12-L2_voxel_2.5mm.inp", ["T12-L1/nucleus", "L1-L2/annulus", "L2/endplate_inferior"]),
    ("L1_wedge_grade2_voxel_2mm.inp", ["L1/damaged"]),
])
def test_decks_read_back(name, regions):
    m = fem.Model.from_inp(shipped.path(name))
    for r in regions:
        assert len(m.regions[r]) > 0
    assert len(m.conditions) >= 2


def test_shipped_L1_deck_agrees_with_calculix(tmp_path, ccx):
    from fem.io.calculix import run_ccx

    deck = tmp_path / "L1.inp"
    deck.write_bytes(shipped.path("L1_voxel_2mm.inp").read_bytes())
    out = run_ccx(deck)
    m = fem.Model.from_inp(deck)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        r = fem.solve(m, rtol=1e-12)
    u = r.displacement[np.searchsorted(m.node_ids, out.node_labels)]
    assert np.abs(u - out.displacement).max() / np.abs(u).max() < 1e-6
    assert np.isclose(r.applied_total()[2], -500.0, rtol=1e-9)
