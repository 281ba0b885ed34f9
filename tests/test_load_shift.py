"""Cement's load shift onto the next disc (issue 16: the adjacent-level effect of augmentation;
docs/validation.md, "Cement's load shift onto the next disc"; ``bench/load_shift.py``).

The mechanism, as Baroud et al. 2003's FE study (``experiments.BAROUD_2003_PRESSURE``) put it:
cement under an endplate keeps it from bulging into its body, so the nucleus between it and the
next vertebra, which can no longer give way there, presses harder and bulges the other endplate
more. Its size is bounded by the share of the disc's volume change that the stiffened endplate
had taken: its swept volume over the disc's shortening times its cross-section.

Set-up: the parametric L4-L5 (posterior elements included) at 4 mm, BMD 70, between platens held
parallel, 500 N, the studies' disc (fibres, drained, small strain, exact secant); L5 treated by
a unipedicular PVP to its centre with a tall front (permeability anisotropy 20), 3 mL, so that
the cement reaches both endplates.
"""

from __future__ import annotations

from functools import lru_cache

import pytest

import fem
from fem import augment, metrics
from fem.meshes import experiments, loadcases
from fem.meshes.bone import BoneQuality
from fem.meshes.vertebra import segment_model

VOXEL = 4.0
FORCE = 500.0


@lru_cache(maxsize=None)
def models():
    m = segment_model("L4-L5", voxel_size=VOXEL, materials=BoneQuality(bmd=70.0))
    m = loadcases.between_platens(loadcases.loaded(m, "standing"))
    return m, augment.pvp(m, "L5", 3.0, approach="unipedicular", tip_depth=0.5,
                          permeability_anisotropy=20.0)


def _swept(result, level, side):
    """Volume (mm^3) the endplate sweeps into its body (deflection relative to its rim's plane,
    h^2 per endplate node of a voxel model)."""
    _, d, _, _ = metrics.endplate_deflection(result, level, side)
    return float(d.sum()) * VOXEL ** 2


@lru_cache(maxsize=None)
def state(treated: bool) -> dict:
    m = models()[treated]
    r = fem.solve_disc(m, coupling=True)
    rows = metrics.level_metrics(r).set_index("level")
    disc = m.regions["L4-L5/annulus"].tolist() + m.regions["L4-L5/nucleus"].tolist()
    ijk = m.metadata["voxel_labels"]["ijk"][disc]
    return {"travel": -float(r.plate_motion("load:standing")[2]),
            "pressure": float(metrics.disc_metrics(r).set_index("disc")
                              .loc["L4-L5", "nucleus_pressure_mpa"]),
            "adjacent": float(rows.loc["L4", "endplate_bulge_inferior_mm"]),
            "treated": float(rows.loc["L5", "endplate_bulge_superior_mm"]),
            "swept": _swept(r, "L5", "superior"),
            "area": len({(i, j) for i, j, _ in ijk.tolist()}) * VOXEL ** 2}


def test_cement_under_an_endplate_shifts_load_onto_the_next_disc():
    """The cement reaches both L5 endplates; the treated endplate bulges less than half as much
    (the pillar of bench/load_shift.py: to 1 %; Baroud: 7 %); the L4-L5 nucleus pressure and the
    bulge of L4's endplate across the disc rise. The pressure rise is of the order of the
    endplate's share of the disc's volume change (more than that share times the bulge removed,
    less than four times the whole share: the cement also stiffens the body under the disc),
    here 0.15 % and a pressure rise of 0.23 % (2026-12-07)."""
    contact = metrics.cement_endplate_contact(models()[1], "L5")
    assert min(contact.values()) > 0.1, contact
    before, after = state(False), state(True)
    removed = 1.0 - after["treated"] / before["treated"]
    assert removed > 0.5
    rise = after["pressure"] / before["pressure"] - 1.0
    assert rise > 0.0 and after["adjacent"] > before["adjacent"]
    share = before["swept"] / (before["travel"] * before["area"])
    assert removed * share < rise < 4.0 * share, (rise, share, removed)


@pytest.mark.xfail(strict=True, reason="the studies' disc (drained, small strain) shortens about "
                   "nine times as much as a measured segment while its endplates deflect about as "
                   "measured (Holmes), so an endplate takes 0.15 % of the disc's volume change "
                   "against about 3 % from measured numbers, and cement moves the next disc's "
                   "pressure by 0.2-0.5 % (Rohlmann et al. 2006's FE: 2.4 %): issue 16's D3, the "
                   "disc; docs/validation.md, 'Cement's load shift onto the next disc'")
def test_the_endplates_share_of_the_discs_volume_change_is_the_measured_one():
    """The share from measured numbers: Holmes et al. 1993's caudal endplate, 0.14 mm at 1.6 kN,
    spread over the model's own deflection shape (swept volume per mm of centre deflection),
    against the shortening of a segment of 1 400 N/mm (the secondary SEGMENT_STIFFNESS) at
    1.6 kN: about 3 %. Asserted: the model's share at least half of it."""
    s = state(False)
    shape = s["swept"] / s["treated"]
    measured = (experiments.HOLMES_1993.mean * shape
                / (1600.0 / experiments.SEGMENT_STIFFNESS.mean * s["area"]))
    assert s["swept"] / (s["travel"] * s["area"]) >= 0.5 * measured
