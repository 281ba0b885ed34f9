"""The parts of a vertebra or segment model, named in one place.

A model's regions are named ``"<level>/<part>"`` (``"L2/trabecular"``), a disc's
``"<upper>-<lower>/<part>"`` (``"L1-L2/nucleus"``). The builders (:mod:`fem.meshes`) make the
intact parts, the procedures (fractures, lesions, PVP, PKP) turn them into others; the metrics,
the strength laws and the views group them. :data:`PARTS` names every part any of them makes or
reads, with what it is; the groups below are the selections the modules use, each said once.
:func:`region` and :func:`split` write and read a region name; :func:`level_elements` gathers
a level's (or a disc's) regions.
"""

from __future__ import annotations

import numpy as np

#: every part name, with what it is
PARTS = {
    # the builders' intact parts
    "cortex": "cortical shell of the vertebral body",
    "trabecular": "trabecular core of the vertebral body",
    "endplate_superior": "bony endplate under the disc above",
    "endplate_inferior": "bony endplate over the disc below",
    "posterior": "posterior elements (pedicles, laminae, processes)",
    "annulus": "annulus fibrosus of a disc",
    "nucleus": "nucleus pulposus of a disc",
    "ligament_interspinous": "interspinous and supraspinous ligaments between two levels "
                             "(fem.ligaments)",
    "ligament_flavum": "ligamentum flavum between two levels' laminae (fem.ligaments)",
    "ligament_capsular": "the facet capsules between two levels' laminae (fem.ligaments)",
    # what fractures and lesions make (fem.meshes.pathology)
    "damaged": "trabecular bone in a fracture's damaged band",
    "damaged_shell": "cortex in a fracture's damaged band",
    "damaged_endplate": "bony endplate in a fracture's damaged band",
    "posterior_wall_breach": "breached cortex of the posterior wall (burst fracture)",
    "cleft": "intravertebral cleft (Kummell's): fluid and fibrous tissue",
    "basivertebral_foramen": "the basivertebral veins' opening in the posterior wall, open to "
                             "cement (fem.meshes.pathology.open_breach)",
    "endplate_breach": "a fracture line through a bony endplate, open to cement",
    "lesion": "osteolytic metastasis: soft tissue in place of bone",
    "haemangioma": "haemangioma: bone of reduced modulus",
    # what procedures make (fem.augment)
    "cement": "solid cement (a PKP bolus, or cement filling a cleft)",
    "cement_composite": "cement interdigitated with trabecular bone",
    "compacted": "bone compacted around a balloon's cavity",
    "cement_leak": "cement leaked out of the body",
    # names the strength law accepts from other builders (decks, patient models)
    "leak": "leaked cement (another builder's name)",
    "leaked_cement": "leaked cement (another builder's name)",
    "pedicle": "pedicle bone (another builder's name)",
    "cartilage": "cartilage (another builder's name)",
    "cartilage_endplate": "cartilaginous endplate (another builder's name)",
}

#: the bone parts the builders make
BUILT_BONE = ("cortex", "trabecular", "endplate_superior", "endplate_inferior", "posterior")
#: a disc's parts
DISC = ("annulus", "nucleus")
#: the posterior ligaments between two levels (fem.ligaments)
LIGAMENT = ("ligament_interspinous", "ligament_flavum", "ligament_capsular")

#: parts of the vertebral body whose strain decides the Pistoia strength (fem.metrics): the
#: endplates are left out, since a layer represented by thicker elements has an inflated
#: through-thickness strain (fem.metrics explains)
STRAIN_BODY = ("cortex", "trabecular", "damaged", "damaged_shell", "posterior_wall_breach",
               "haemangioma", "compacted", "cement_composite")
#: trabecular-type parts for the principal-strain criterion
STRAIN_TRABECULAR = ("trabecular", "damaged", "haemangioma", "compacted", "cement_composite")
#: load-share groups through the mid-height cross-section
SHARE_GROUPS = {
    "cortex": ("cortex", "endplate_superior", "endplate_inferior", "damaged_shell",
               "damaged_endplate", "posterior_wall_breach"),
    "trabecular": ("trabecular", "damaged", "haemangioma", "compacted"),
    "cement": ("cement", "cement_composite"),
}
#: cement inside the body (solid and interdigitated): the cement side of the interface
CEMENT_IN_BODY = ("cement", "cement_composite")
#: bone on the far side of the cement-bone interface
INTERFACE_BONE = tuple(p for p in STRAIN_BODY if p not in CEMENT_IN_BODY) + (
    "endplate_superior", "endplate_inferior", "damaged_endplate")

#: parts of a level the cement can enter
FILLABLE = ("trabecular", "damaged", "haemangioma", "lesion", "posterior_wall_breach", "cleft",
            "basivertebral_foramen", "endplate_breach")
#: parts that make up the vertebral body, the volume a fill fraction is taken of: cortex, bony
#: endplates and trabecular bone, and what fractures, lesions and procedures turn them into
#: (leaked cement included: it took the place of body elements at the body's boundary); the
#: posterior elements are not part of it
VERTEBRAL_BODY = ("cortex", "endplate_superior", "endplate_inferior", "trabecular", "damaged",
                  "damaged_shell", "damaged_endplate", "posterior_wall_breach", "haemangioma",
                  "lesion", "cleft", "compacted", "cement", "cement_composite", "cement_leak",
                  "basivertebral_foramen", "endplate_breach")

#: the strength law's classes (fem.strength): bone that yields and softens
FAILING_BONE = ("trabecular", "compacted", "cortex", "posterior", "haemangioma", "lesion",
                "pedicle")
#: bone a fracture damaged (it carries the overload's history)
FRACTURE_DAMAGED = ("damaged", "damaged_shell", "posterior_wall_breach", "damaged_endplate")
#: bony endplates: thin layers that yield and soften by their in-plane strain (fem.strength)
FAILING_LAYER = ("endplate_superior", "endplate_inferior", "damaged_endplate")
#: bulk and leaked cement (brittle)
BULK_CEMENT = ("cement", "leak", "leaked_cement", "cement_leak")
#: cement-bone composite (fails at the cement's strains)
COMPOSITE = ("cement_composite",)
#: parts that stay elastic in a pushover
ELASTIC_IN_PUSHOVER = ("annulus", "nucleus", "cartilage", "cartilage_endplate", "cleft",
                       "basivertebral_foramen", "endplate_breach") + LIGAMENT


def region(level: str, part: str) -> str:
    """The region name of ``part`` of ``level`` (a level or a disc, ``"L1-L2"``)."""
    return f"{level}/{part}"


def split(name: str) -> tuple[str, str]:
    """(level or disc, part) of a region name; ("", name) for a name without a level."""
    level, _, part = name.rpartition("/")
    return level, part


def regions_of(model, parts) -> list[str]:
    """The names of ``model``'s regions whose part (:func:`split`) is one of ``parts``, in the
    model's region order."""
    return [name for name in model.regions if split(name)[1] in parts]


def level_elements(model, level: str) -> np.ndarray:
    """The elements (sorted) of every region of ``level``, a level or a disc
    (``"<level>/..."``); empty where it has none."""
    got = [model.regions[r] for r in model.regions if r.startswith(level + "/")]
    return np.unique(np.concatenate(got)) if got else np.zeros(0, dtype=np.int64)
