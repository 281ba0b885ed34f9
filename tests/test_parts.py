"""One place names the parts (issue 18, deliverable 2): every group of fem.parts uses names of
its catalogue, and every region the builders and procedures make is "<level>/<part>" with a
catalogued part."""

from __future__ import annotations

import warnings

import pytest

from fem import augment, parts
from fem.meshes import pathology, vertebra


def test_every_group_names_catalogued_parts():
    groups = {k: v for k, v in vars(parts).items()
              if k.isupper() and k != "PARTS" and isinstance(v, (tuple, dict))}
    assert len(groups) >= 12
    for name, group in groups.items():
        members = [p for g in group.values() for p in g] if isinstance(group, dict) else group
        unknown = set(members) - set(parts.PARTS)
        assert not unknown, f"{name} names parts fem.parts.PARTS lacks: {sorted(unknown)}"


@pytest.fixture(scope="module")
def procedures():
    m = vertebra.segment_model("L1-L3", voxel_size=3.0, ligaments=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        f = pathology.compress(m, "L2", "wedge", grade=2, burst=True, cleft=True)
        f = pathology.add_lesion(f, "L3", "osteolytic", "centre", (5, 4, 4), breach_cortex=True)
        f = pathology.add_lesion(f, "L1", "haemangioma", "centre", (5, 4, 4))
        f = pathology.open_breach(f, "L2", "basivertebral", 4.0)
        f = pathology.open_breach(f, "L2", "inferior", 4.0)
        return [m, f, augment.pvp(f, "L2", 5.0, tip_depth=0.15),
                augment.pkp(f, "L2", 4.0, balloon_ml=3.0)]


def test_every_region_made_is_a_level_and_a_catalogued_part(procedures):
    seen = set()
    for m in procedures:
        for name in m.regions:
            level, part = parts.split(name)
            assert level and part in parts.PARTS, name
            assert parts.region(level, part) == name
            seen.add(part)
    # the catalogue is not padded with what nothing here makes, beyond the names kept for
    # other builders' decks
    made_elsewhere = {"leak", "leaked_cement", "pedicle", "cartilage", "cartilage_endplate"}
    assert set(parts.PARTS) - seen - made_elsewhere <= {"damaged_endplate", "cement_leak"}
