"""Vertebroplasty (PVP) and balloon kyphoplasty (PKP): procedures that turn a Model into a new Model.

A procedure reads the treated level's anatomy from the model (regions ``"<L>/<part>"``,
``model.anatomy[L]``: centre, endplate centres, pedicle axes) and never touches the solver,
so it applies to every model that carries them (parametric voxel and tet10 vertebrae, segments).
Units: mm, mL (= 1000 mm^3), MPa, Pa s.

**Needles** (:func:`needles`). Transpedicular: each needle enters on its pedicle's axis. With the
bipedicular approach each needle follows its pedicle's axis; with the unipedicular approach the
single needle is angled from its pedicle's entry point to the midline, as clinicians do to reach
the middle of the body from one side. The tip lies at ``tip_depth`` of the body's
antero-posterior extent (0 = posterior wall, 1 = anterior wall; default 0.75, the anterior third
where the needle is usually placed), at the height its pedicle's path reaches there (the
entry's, where the path runs square to the axis, as in an intact parametric level; in a fractured
level the path was carried with the collapsed bone, :func:`fem.meshes.pathology.carried_anatomy`,
so it aims at the same bone), plus ``tip_offset`` (lateral, anterior, axial mm in the level's
frame).

**Cement spreading (PVP)**. Cement invades the trabecular bone along the path of least hydraulic
resistance from the needle tips: the fillable elements (trabecular bone, its damaged and
haemangioma zones, lytic lesions, posterior-wall breaches) form a graph over shared faces; an edge
costs its length times the mean of 1/k of its two elements (Darcy: for a given pressure
gradient the flow speed is proportional to the permeability k), and the elements fill in the
order of their least-resistance path length from the nearest tip (multi-source Dijkstra) until the
requested volume is placed (within half of the last element's capacity). The permeability is
anisotropic: vertebral trabeculae run mostly superior-inferior, and the bone is
:data:`PERMEABILITY_ANISOTROPY` (2.05, Nauman et al. 1999) times as permeable along the level's
axis as across it. k is the axial permeability, and an edge's length is measured in the
coordinates that make the medium isotropic: sqrt(d_axial^2 + a d_transverse^2), a the
anisotropy. In uniform bone the cement front from a point source is then an ellipsoid sqrt(a) =
1.43 times as tall as it is wide (Darcy flow from a source in an anisotropic medium), so the
cloud reaches the endplates with about half the volume an isotropic front needs. The cortex and bony
endplates are not in the graph, so the cement stops there. Each element takes cement in its pores:
capacity porosity x volume, porosity 1 - rho_app / :data:`TISSUE_DENSITY`, the apparent density
obtained from the element's modulus by inverting the density-modulus law that made it
(:func:`fem.meshes.bone.get_law`, Morgan 2003 by default); a fracture's damaged band lost
stiffness to microdamage, not mass, so its damage factor is undone first
(:func:`intact_modulus`). Permeability follows the porosity by a
Kozeny-Carman form k = K0 phi^3 / (1 - phi)^2, calibrated by :data:`PERMEABILITY_REFERENCE`, times a
seeded log-normal factor (``heterogeneity``, standard deviation of ln k; an assumption standing for
the local scatter of trabecular architecture) that makes the cloud irregular and reproducible.

Bone a fracture compacted (``pathology.compress``'s ``conserve_mass``: the crushed band is denser)
has less pore space, so it takes less cement; how easily cement flows through it is an
ASSUMPTION either way (``crushed_permeability``): "compacted" (default), Kozeny-Carman on its
compacted porosity (a third of the permeability in the Wegrzyn replica's band, 1.6 times as
dense); "original", the permeability of the bone before the compaction, as if the fracture's
cracks and fragments kept the flow paths open (no source on cement flow in crushed trabecular
bone was found). On the Molloy et al. 2003 replica at 2 mm the two bracket the measured fills
(docs/validation.md, "Molloy, Mathis & Belkoff 2003").

**Leakage**. A fillable element with a face on the model's outer surface or against a disc or
another level is an exit: the cement it takes is outside the body's bony envelope (through a
posterior-wall breach of a burst fracture, a cortex breached by a lytic lesion, or a fractured
endplate). Such elements become ``"<L>/cement_leak"``; each connected cluster is reported as a
:class:`Leak` with its location and volume. Cement entering a fracture cleft (``"<L>/cleft"``,
:func:`fem.meshes.pathology.compress` with ``cleft=True``) is reported as a leak too (site
"fracture cleft"), as the issue defines it; being a void inside the body, its cement is solid
and joins ``"<L>/cement"``. The reported volume is the cement in the breach
itself, a lower bound: what flows on into the canal or the paravertebral tissue is not modelled.

**Fill fraction** (``Augmentation.fill_fraction``): the cement inside the body over the volume
of the whole vertebral body, as cadaver and clinical studies define it (the "percentage fill"
of Molloy, Mathis & Belkoff 2003, Spine 28:1549, cement volume over the body's volume; cited
from memory, not checked here).
The body is the level's cortex, bony endplates and trabecular bone, with what fractures, lesions
and earlier procedures turned them into (:data:`VERTEBRAL_BODY`), without the posterior elements;
its volume is that of the model the cement goes into (after a PKP's height restoration). Leaked
cement (``leak_ml``) is outside the body and not counted. The trabecular core alone is not the
denominator: it is what is left inside a cortex one voxel thick, about 65 % of the body at 2 mm
and 81 % at 1 mm, so a fill over it moved with the voxel size; the whole body's volume does not
(21 280 and 21 298 mm^3 for the parametric L1 at 2 and 1 mm).

**Composite modulus** of cement-filled trabecular bone (:func:`composite_modulus`). The composite
is two interpenetrating networks loaded in parallel: the bone keeps its apparent modulus and the
cement, which fills the pores (volume fraction phi), is a porous solid whose modulus scales with
the square of its volume fraction (Gibson and Ashby's open-cell law): ``E = E_bone + E_cement
phi^2``. This follows the reference table's note that the cement's porosity, not the bone, governs
the composite (Kinzl et al. 2012, J Biomech 45:1478); the exponent 2 is an assumption of this
model. Poisson's ratio mixes by volume.

**PKP** (:func:`pkp`). (1) Height restoration: a share of the fracture's collapse field
(``metadata["collapse"][L]``, recorded by :func:`fem.meshes.pathology.compress`) is undone, which
moves the body and the adjacent discs back towards their pre-fracture shape. (2) Balloons: one
ellipsoid per needle centred at its tip, semi-axes 1.5 : 1 : 1 (along the needle, lateral,
axial); the cavity is the set of fillable elements nearest the balloon centres in that metric,
grown until it holds the inflation volume. (3) Compacted rim: the bone that stood in the cavity
is pushed into a shell of ``rim_thickness`` mm around it (mass conservation): the rim's apparent
density rises by the cavity's bone mass over the rim's volume and its modulus, scaled from
the bone's pre-damage modulus, follows the density law's exponent (the compacted shell is
treated as dense new bone, without the microdamage of the fracture band). (4) The cavity is filled with a solid cement bolus (``"<L>/cement"``);
cement beyond the balloon volume interdigitates from the cavity wall by the PVP front.

**Injection pressure** (:func:`injection_pressure`): the pressure the filling model implies for
cement of viscosity mu pushed at flow rate Q: Hagen-Poiseuille flow through the cannula,
8 mu L Q / (pi r^4), plus radial Darcy flow from the tip into bone of permeability k,
mu Q / (4 pi k) (1/r0 - 1/R), with k the harmonic mean over the filled bone (of the axial
permeability, times a^(-2/3): the geometric mean of the three principal permeabilities, which
radial flow from a source meets) and R the radius of a
sphere of the filled bone's volume per needle. A PKP bolus flows into a cavity the balloon has
already opened (no bone term) through a wider cannula, which is why it needs less pressure.
These are order-of-magnitude estimates for comparing procedures; the setting of PMMA (its
viscosity rises during injection) is not modelled.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import sparse
from scipy.sparse import csgraph
from scipy.spatial import cKDTree

from .anatomy import level_frame
from .assembly import check_geometry, element_volumes
from .errors import MaterialError, MeshError, ModelError, ParameterError, SetError
from .limits import LIMITS
from .meshes.pathology import restore
from .model import Model
from .parts import FILLABLE, VERTEBRAL_BODY
from .validate import in_range

#: Cement-volume unit: 1 mL = 1000 mm^3.
ML = 1000.0

#: Mineral (ash) mass per unit volume of trabecular bone tissue, g/cm^3: 1.24 +- 0.16 (Tassani,
#: Ohman & Baleani 2011, J Biomech 44:103, abstract checked).
TISSUE_ASH_DENSITY = 1.24
#: Wet density of bone tissue (the trabeculae's material), g/cm^3, to turn apparent density into
#: porosity: the ash density above over the ash fraction of wet bone used by fem.meshes.bone
#: (0.6, Schileo 2008, secondary), 2.07; derived here, not measured.
TISSUE_DENSITY = TISSUE_ASH_DENSITY / 0.6

#: (porosity, permeability m^2) anchoring the Kozeny-Carman form: the superior-inferior
#: permeability of human vertebral cancellous bone, 4.45 +- 1.72 e-8 m^2 (Baroud et al. 2004,
#: J Biomech 37:189, abstract), at an ASSUMED porosity of 0.9 (the donors' porosity is not in the
#: abstract). Nauman, Fong & Keaveny 1999 (Ann Biomed Eng 27:517) measured 2.7e-11 to 2.0e-8
#: m^2 across sites, falling nonlinearly with the volume fraction.
PERMEABILITY_REFERENCE = (0.9, 4.45e-8)

#: Anisotropy of the permeability of vertebral trabecular bone: the permeability along the
#: principal trabecular orientation (superior-inferior in a vertebral body) over the one across
#: it, 2.05 on average for human vertebral bodies (Nauman, Fong & Keaveny 1999, Ann Biomed Eng
#: 27:517, n = 20, abstract checked). :data:`PERMEABILITY_REFERENCE` (Baroud et al.'s
#: superior-inferior measurement) is the axial permeability; across the axis it is this many
#: times lower.
PERMEABILITY_ANISOTROPY = 2.05

#: FILLABLE (the parts cement can enter) and VERTEBRAL_BODY (the parts a fill fraction is taken
#: of): fem.parts
APPROACHES = ("unipedicular", "bipedicular")


@dataclass(frozen=True)
class Cement:
    """A bone cement: elastic modulus E (MPa), Poisson's ratio, viscosity during injection
    (Pa s) and where the numbers come from. ``base``: the listed cement (:data:`CEMENTS`) this
    one is a variant of (a study's ``cement_modulus``), whose yield strains its strength keeps
    (:mod:`fem.strength`); empty for a cement of its own."""

    name: str
    E: float
    nu: float
    viscosity: float = 100.0
    source: str = "user-defined"
    base: str = ""

    def __post_init__(self):
        if not (np.isfinite(self.E) and self.E > 0):
            raise MaterialError(f"cement {self.name!r}: E must be > 0 MPa, got {self.E}")
        if not LIMITS["poisson"].contains(self.nu):
            raise MaterialError(f"cement {self.name!r}: nu must lie in "
                                f"{LIMITS['poisson'].describe()}, got {self.nu}")
        if not (np.isfinite(self.viscosity) and self.viscosity > 0):
            raise MaterialError(f"cement {self.name!r}: viscosity must be > 0 Pa s, "
                                f"got {self.viscosity}")


CEMENTS = {c.name: c for c in (
    Cement("pmma", 3000.0, 0.4, 100.0,
           "PMMA as modelled in vertebral FE studies, 3 000 MPa / 0.4: Kosmopoulos & Keller "
           "2004, Eur Spine J 13:617 (reference/biomechanics.md); vertebroplasty PMMA cements "
           "measure 2-2.7 GPa in compression (Jasper et al. 2002, J Mater Sci Mater Med 13:1)"),
    Cement("pmma_iso5833", 1937.0, 0.4, 100.0,
           "standard PMMA measured to ISO 5833, 1 937 +- 478 MPa (PMC3698342, "
           "reference/biomechanics.md); nu 0.4 as the FE convention"),
    Cement("pmma_low_modulus", 954.0, 0.4, 100.0,
           "low-modulus PMMA measured to ISO 5833, 954 +- 141 MPa (PMC3698342, "
           "reference/biomechanics.md); nu 0.4 as the FE convention"),
    Cement("calcium_phosphate", 13500.0, 0.21, 100.0,
           "apatitic calcium phosphate cement, 13.5 +- 1.6 GPa / 0.21 by digital image "
           "correlation (Ajaxon et al. 2017, J Mech Behav Biomed Mater 74:428; brushite 24.3, "
           "monetite 7.1 GPa; platen-displacement moduli read up to 62 % lower)"),
)}
#: viscosity of every listed cement during injection (Pa s): an ASSUMPTION (PMMA's viscosity
#: rises from tens to thousands of Pa s as it sets; no measured value was checked here)
DEFAULT_VISCOSITY = 100.0


def get_cement(spec) -> Cement:
    """A :class:`Cement` from a name in :data:`CEMENTS`, a Cement, or a dict
    ``{"name", "E", "nu", "viscosity"}`` (user-defined)."""
    if isinstance(spec, Cement):
        return spec
    if isinstance(spec, str):
        if spec not in CEMENTS:
            raise MaterialError(f"unknown cement {spec!r}; known: {', '.join(CEMENTS)}, or give "
                                "fem.augment.Cement(name, E, nu)")
        return CEMENTS[spec]
    if isinstance(spec, dict):
        try:
            return Cement(**{"name": "user", **spec})
        except TypeError as exc:
            raise MaterialError(f"cement dict: {exc}; keys are name, E, nu, viscosity, "
                                "source, base") from None
    raise MaterialError(f"cement must be a name, a Cement or a dict, got {type(spec).__name__}")


@dataclass(frozen=True)
class Needle:
    """A transpedicular needle: side ("left"/"right"), entry point, tip (mm, model frame) and
    unit direction from entry to tip."""

    side: str
    entry: tuple
    tip: tuple
    direction: tuple


@dataclass(frozen=True)
class Leak:
    """Cement outside the body's bony envelope: where it left (``site``: "posterior wall",
    "endplate into <disc>", "outer surface"), its volume (mL) and centroid (mm, model frame)."""

    site: str
    volume_ml: float
    centroid: tuple


@dataclass(frozen=True)
class Augmentation:
    """What a procedure did (``model.metadata["augmentations"]``): volumes in mL (requested;
    placed, leaks included; leaked), ``fill_fraction`` = cement inside the body / volume of the
    whole vertebral body (module docstring, :func:`body_volume`), the injection pressure (MPa)."""

    procedure: str
    level: str
    approach: str
    cement: Cement
    requested_ml: float
    volume_ml: float
    leak_ml: float
    leaks: tuple
    fill_fraction: float
    height_restoration: float
    injection_pressure_mpa: float
    needles: tuple
    cavity_ml: float = 0.0
    seed: int = 0


# ------------------------------------------------------------------------------- geometry

def _single_block(model: Model):
    if len(model.blocks) != 1:
        raise MeshError("augmentation expects a model with one cell block (a vertebra or segment "
                        "from fem.meshes)")
    return model.blocks[0]


def _centroids(model: Model, elements=None) -> np.ndarray:
    _single_block(model)
    return model.element_centres(elements)


def _regions_of(model: Model, level: str, parts) -> np.ndarray:
    got = [model.regions[f"{level}/{p}"] for p in parts if f"{level}/{p}" in model.regions]
    return np.unique(np.concatenate(got)) if got else np.zeros(0, np.int64)


def body_volume(model: Model, level: str, volumes=None) -> float:
    """Volume (mm^3) of ``level``'s vertebral body: its elements in :data:`VERTEBRAL_BODY`
    (cortex, bony endplates, trabecular bone; no posterior elements). ``volumes``: the model's
    element volumes where already computed."""
    vol = element_volumes(model) if volumes is None else volumes
    return float(vol[_regions_of(model, level, VERTEBRAL_BODY)].sum())


def needles(model: Model, level: str, approach: str = "bipedicular", *, tip_depth: float = 0.75,
            tip_offset=(0.0, 0.0, 0.0), side: str = "left") -> list[Needle]:
    """Needle placement for ``level`` (see the module docstring). ``side`` picks the pedicle of
    a unipedicular approach."""
    if approach not in APPROACHES:
        raise ParameterError(f"approach must be one of {', '.join(APPROACHES)}, got {approach!r}")
    if not (0.0 <= tip_depth <= 1.0):
        raise ParameterError(f"tip_depth must lie in 0..1 (posterior wall..anterior wall), "
                        f"got {tip_depth}")
    off = np.asarray(tip_offset, dtype=float)
    if off.shape != (3,) or not np.isfinite(off).all():
        raise ParameterError("tip_offset must be (lateral, anterior, axial) in mm")
    _check_level(model, level)
    f = level_frame(model, level)
    centre, e_ax, e_ant, e_lat = f.centre, f.axial, f.anterior, f.lateral
    body = _regions_of(model, level, FILLABLE)
    if not len(body):
        raise SetError(f"level {level} has no trabecular region to inject into")
    a = (_centroids(model, body) - centre) @ e_ant
    a_tip = a.min() + tip_depth * (a.max() - a.min())
    axes = model.anatomy[level].pedicle_axes
    sides = ["left", "right"] if approach == "bipedicular" else [side]
    if side not in axes:
        raise ParameterError(f"side must be 'left' or 'right', got {side!r}")
    shift = off[0] * e_lat + off[1] * e_ant + off[2] * e_ax
    out = []
    for s in sides:
        entry, d = (np.asarray(v, float) for v in axes[s])
        d = d / np.linalg.norm(d)
        if approach == "bipedicular":
            t = (a_tip - (entry - centre) @ e_ant) / (d @ e_ant)
            tip = entry + t * d
        else:  # to the midline, at the height the pedicle's path reaches at that depth
            rise = (a_tip - (entry - centre) @ e_ant) * (d @ e_ax) / (d @ e_ant)
            tip = centre + a_tip * e_ant + ((entry - centre) @ e_ax + rise) * e_ax
        tip = tip + shift
        direction = (tip - entry) / np.linalg.norm(tip - entry)
        out.append(Needle(s, tuple(entry), tuple(tip), tuple(direction)))
    return out


# ------------------------------------------------------------------------------- bone state

def compaction_factors(model: Model, levels=None) -> np.ndarray:
    """Per element, the modulus factor the densification of a fracture that kept the bone's
    mass gave it (``metadata["densification"][level]["factors"]``, :mod:`fem.meshes.pathology`),
    1 elsewhere; ``levels``: only those levels' records (default every one). A record without
    its factors is a ModelError."""
    out = np.ones(model.n_elements)
    for level, rec in model.metadata.get("densification", {}).items():
        if levels is not None and level not in levels:
            continue
        if rec.get("factors") is None:
            raise ModelError(f"{level}'s densification record has no modulus factors "
                             "(metadata['densification'][level]['factors']): fracture the "
                             "level with fem.meshes.pathology.compress")
        out[np.asarray(rec["elements"])] = np.asarray(rec["factors"], dtype=float)
    return out


def intact_modulus(model: Model, elements, *, before_compaction: bool = False) -> np.ndarray:
    """The elements' moduli before fracture damage: a fracture's damaged band
    (``"<L>/damaged"``) lost stiffness to microdamage, not bone mass, so its density (and
    porosity) is that of the bone it was; the damage factor is undone here.
    ``before_compaction``: also undo the densification of a fracture that kept the bone's mass
    (``metadata["densification"][level]["factors"]``): the moduli of the uncompacted bone."""
    elements = np.asarray(elements, dtype=np.int64)
    E = model.E[elements].astype(float)
    for fr in model.metadata.get("fractures", []):
        band = model.regions.get(f"{fr.level}/damaged")
        if band is not None and len(band) and fr.damage_factor > 0:
            E[np.isin(elements, band)] /= fr.damage_factor
    if before_compaction:
        E /= compaction_factors(model)[elements]
    return E


def porosity(model: Model, elements, law: str = "morgan2003", *,
             before_compaction: bool = False) -> np.ndarray:
    """Porosity of trabecular elements from their axial modulus (before fracture damage,
    :func:`intact_modulus`, and with ``before_compaction`` before a fracture's densification),
    by inverting the density law that made it to its density, taken to apparent density where
    the law is in ash or QCT density (:func:`fem.meshes.bone.apparent_from_law_density`, the
    equivalent-density rule)."""
    from .meshes.bone import apparent_from_law_density, get_law

    lw = get_law(law)
    E = np.maximum(intact_modulus(model, elements, before_compaction=before_compaction) - lw.a,
                   1e-9)
    rho = apparent_from_law_density((E / lw.b) ** (1.0 / lw.c), law)
    return np.clip(1.0 - rho / TISSUE_DENSITY, 0.05, 1.0)


def permeability(phi) -> np.ndarray:
    """Kozeny-Carman permeability (m^2) of porous bone of porosity phi, anchored at
    :data:`PERMEABILITY_REFERENCE`."""
    p0, k0 = PERMEABILITY_REFERENCE
    phi = np.clip(np.asarray(phi, float), 1e-3, 0.999)
    return k0 * (phi ** 3 / (1 - phi) ** 2) / (p0 ** 3 / (1 - p0) ** 2)


def composite_modulus(E_bone, phi, cem: Cement):
    """(E, nu) of trabecular bone whose pores (volume fraction phi) are filled with cement; see
    the module docstring."""
    phi = np.asarray(phi, float)
    return E_bone + cem.E * phi ** 2, phi * cem.nu + (1 - phi) * 0.2


# ------------------------------------------------------------------------------- graph

def _face_graph(model: Model, elements: np.ndarray):
    """Pairs (i, j) of positions in ``elements`` whose elements share a face, and per position
    whether it has a face shared with no element of ``elements`` (its outside neighbours).

    Returns (i, j, face_out, out_faces) where ``out_faces`` holds, for the faces of the subset
    that are not internal to it, (position, sorted corner key)."""
    b = _single_block(model)
    et = b.etype
    nc = 4 if et.face_type == "quad4" else 3
    table = np.array([f[:nc] for f in et.faces])
    keys = np.sort(b.conn[elements][:, table], axis=-1).reshape(-1, nc)
    pos = np.repeat(np.arange(len(elements)), len(table))
    order = np.lexsort(keys.T[::-1])
    k, p = keys[order], pos[order]
    same = np.all(k[1:] == k[:-1], axis=1)
    i, j = p[:-1][same], p[1:][same]
    internal = np.zeros(len(k), bool)
    internal[1:] |= same
    internal[:-1] |= same
    return i, j, p[~internal], k[~internal]


def _exit_sites(model: Model, level: str, elements, pos_out, keys_out) -> dict:
    """For fillable elements with faces outside the fillable set: position -> site name, for
    those faces that lie on the model's outer surface or touch an element of another level or
    a disc ("" for faces against the level's own shell, which are not exits)."""
    b = _single_block(model)
    et = b.etype
    nc = 4 if et.face_type == "quad4" else 3
    table = np.array([f[:nc] for f in et.faces])
    node_in = np.zeros(model.n_nodes, bool)
    node_in[b.conn[elements].ravel()] = True
    cand = np.flatnonzero(node_in[b.conn].any(axis=1))
    cand = np.setdiff1d(cand, elements)
    ck = np.sort(b.conn[cand][:, table], axis=-1).reshape(-1, nc)
    owner = np.repeat(cand, len(table))
    allk = np.concatenate([keys_out, ck])
    _, inv = np.unique(allk, axis=0, return_inverse=True)
    inv = inv.ravel()
    io, ic = inv[: len(keys_out)], inv[len(keys_out):]
    neighbour = np.full(inv.max() + 1, -1, np.int64)
    neighbour[ic] = owner
    nb = neighbour[io]
    own = np.zeros(model.n_elements, bool)
    own[_regions_of(model, level, ("cortex", "endplate_superior", "endplate_inferior",
                                   "posterior", "damaged_shell", "damaged_endplate", "cement", "cement_composite",
                                   "compacted", "cement_leak"))] = True
    region_of = _region_lookup(model)
    sites = {}
    for p, e in zip(pos_out, nb):
        if e >= 0 and own[e]:
            continue
        if e < 0:
            site = ("posterior wall" if region_of.get(int(elements[p]), "").endswith(
                "posterior_wall_breach") else "outer surface")
        else:
            name = region_of.get(int(e), "")
            site = (f"endplate into {name.split('/')[0]}" if name.split("/")[-1] in
                    ("annulus", "nucleus") else f"into {name or 'another part'}")
        sites.setdefault(int(p), site)
    # openings of the shell (fem.meshes.pathology.open_breach): what enters one has left the
    # body, by the veins or into the disc, whether or not the grid shows the way out
    for part, site in (("basivertebral_foramen", "basivertebral foramen"),
                       ("endplate_breach", None), ("cleft", "fracture cleft")):
        region = model.regions.get(f"{level}/{part}")
        if region is None or not len(region):
            continue
        pos = np.flatnonzero(np.isin(elements, region))
        names = [site] * len(pos) if site else _breach_sites(model, level, elements[pos],
                                                             [sites.get(int(p)) for p in pos])
        sites.update(zip((int(p) for p in pos), names))
    return sites


def _next_disc(model: Model, level: str) -> dict:
    """The discs above and below ``level`` ("superior"/"inferior" -> "<L>-<L>"), where present."""
    levels = list(model.metadata.get("levels", []))
    out = {}
    if level in levels:
        i = levels.index(level)
        if i > 0 and f"{levels[i - 1]}-{level}/nucleus" in model.regions:
            out["superior"] = f"{levels[i - 1]}-{level}"
        if i + 1 < len(levels) and f"{level}-{levels[i + 1]}/nucleus" in model.regions:
            out["inferior"] = f"{level}-{levels[i + 1]}"
    return out


def _breach_sites(model: Model, level: str, elements, found) -> list:
    """The sites of an endplate breach's elements: the disc each one's face touches where the
    face search ``found`` one, else the disc on its side of the level (a vertebra alone:
    "endplate")."""
    discs = _next_disc(model, level)
    f = level_frame(model, level)
    up = f.superior(model.element_centres(elements))
    out = []
    for above, seen in zip(up, found):
        side = "superior" if above else "inferior"
        out.append(seen if seen and seen.startswith("endplate into") else
                   f"endplate into {discs[side]}" if side in discs else "endplate")
    return out


def _region_lookup(model: Model) -> dict:
    out = {}
    for name, el in model.regions.items():
        for e in el.tolist():
            out.setdefault(e, name)
    return out


def _check_anisotropy(a) -> float:
    """``permeability_anisotropy`` (axial over transverse permeability; 1 isotropic), > 0."""
    return in_range("permeability_anisotropy", a, 0.0, lo_open=True, error=ParameterError)


def _radial_permeability(k, anisotropy: float) -> float:
    """The permeability radial flow from a tip meets in bone of axial permeabilities ``k``:
    their harmonic mean, times ``anisotropy ** (-2/3)`` (the geometric mean of the three
    principal permeabilities)."""
    return len(k) / float(np.sum(1.0 / k)) * anisotropy ** (-2.0 / 3.0)


def _fill_order(model, level, elements, sources_xyz, cap, k, *, source_positions=None,
                anisotropy: float = PERMEABILITY_ANISOTROPY):
    """Elements (positions) in fill order and their path resistance from the sources. ``k``:
    the axial permeability; across the level's axis it is ``anisotropy`` times lower."""
    i, j, pos_out, keys_out = _face_graph(model, elements)
    c = _centroids(model, elements)
    d = c[i] - c[j]
    axial = d @ np.asarray(level_frame(model, level).axial, float)
    transverse2 = np.maximum(np.einsum("ij,ij->i", d, d) - axial ** 2, 0.0)
    length = np.sqrt(axial ** 2 + anisotropy * transverse2)  # in the isotropic coordinates
    w = length * 0.5 * (1.0 / k[i] + 1.0 / k[j])
    w = w / np.median(w) if len(w) else w
    n = len(elements)
    g = sparse.coo_matrix((np.r_[w, w], (np.r_[i, j], np.r_[j, i])), shape=(n, n)).tocsr()
    if source_positions is None:
        _, src = cKDTree(c).query(np.asarray(sources_xyz, float))
        source_positions = np.unique(np.atleast_1d(src))
    dist = csgraph.dijkstra(g, indices=source_positions, min_only=True)
    reach = np.isfinite(dist)
    order = np.flatnonzero(reach)[np.argsort(dist[reach], kind="stable")]
    return order, pos_out, keys_out


def _take(order, cap, target):
    """Prefix of ``order`` whose capacity reaches ``target`` (the last element kept when that
    lands closer to the target)."""
    cum = np.cumsum(cap[order])
    n = int(np.searchsorted(cum, target))
    if n >= len(order):
        return None
    if n > 0 and abs(cum[n - 1] - target) <= abs(cum[n] - target):
        return order[:n]
    return order[: n + 1]


def _leaks(model, level, elements, taken, exits, cap) -> tuple:
    """Leak records for the exit elements that took cement, clustered by shared nodes."""
    hit = [p for p in taken if p in exits]
    if not hit:
        return ()
    hit = np.asarray(hit)
    b = _single_block(model)
    conn = b.conn[elements[hit]]
    n = len(hit)
    # clusters: elements sharing a node
    rows = np.repeat(np.arange(n), conn.shape[1])
    inc = sparse.coo_matrix((np.ones(rows.size), (rows, conn.ravel())),
                            shape=(n, model.n_nodes)).tocsr()
    ncl, lab = csgraph.connected_components(inc @ inc.T, directed=False)
    c = _centroids(model, elements[hit])
    out = []
    for q in range(ncl):
        sel = lab == q
        vol = float(cap[hit[sel]].sum()) / ML
        sites = [exits[int(p)] for p in hit[sel]]
        site = max(set(sites), key=sites.count)
        cen = (c[sel] * cap[hit[sel], None]).sum(0) / cap[hit[sel]].sum()
        out.append(Leak(site, vol, tuple(float(v) for v in cen)))
    return tuple(sorted(out, key=lambda L: -L.volume_ml))


# ------------------------------------------------------------------------------- pressure

def injection_pressure(cem: Cement, *, flow_ml_min: float, cannula_diameter_mm: float,
                       cannula_length_mm: float, k_bone=None, bone_volume_mm3: float = 0.0,
                       n_needles: int = 1) -> float:
    """Injection pressure (MPa) per needle: cannula (Hagen-Poiseuille) plus radial Darcy flow
    into bone of permeability ``k_bone`` (m^2) out to a sphere of ``bone_volume_mm3 / n_needles``
    (see the module docstring)."""
    mu = cem.viscosity
    Q = flow_ml_min * 1e-6 / 60.0 / n_needles
    r = 0.5 * cannula_diameter_mm * 1e-3
    p = 8.0 * mu * cannula_length_mm * 1e-3 * Q / (np.pi * r ** 4)
    if k_bone is not None and bone_volume_mm3 > 0:
        R = (3.0 * bone_volume_mm3 / n_needles / (4.0 * np.pi)) ** (1.0 / 3.0) * 1e-3
        if R > r:
            p += mu * Q / (4.0 * np.pi * k_bone) * (1.0 / r - 1.0 / R)
    return float(p * 1e-6)


# ------------------------------------------------------------------------------- procedures

def _check_volume(volume_ml, name="volume_ml"):
    v = float(volume_ml)
    if not (np.isfinite(v) and v > 0):
        raise ParameterError(f"{name} must be > 0 mL, got {volume_ml}")
    return v


def _check_level(model, level):
    if level not in model.metadata.get("levels", []):
        raise SetError(f"level {level!r} is not in this model (levels: "
                       f"{', '.join(model.metadata.get('levels', [])) or 'none'})")


#: how cement flows through bone a fracture compacted (``crushed_permeability`` of :func:`pvp`
#: and :func:`pkp`; module docstring): Kozeny-Carman on its compacted porosity, or on the
#: porosity the bone had before
CRUSHED_PERMEABILITIES = ("compacted", "original")


def _prepare(model, level, law, seed, heterogeneity, crushed_permeability="compacted"):
    _check_level(model, level)
    if crushed_permeability not in CRUSHED_PERMEABILITIES:
        raise ParameterError(f"crushed_permeability must be one of "
                             f"{', '.join(CRUSHED_PERMEABILITIES)}, got {crushed_permeability!r}")
    fill = _regions_of(model, level, FILLABLE)
    if not len(fill):
        raise SetError(f"level {level} has no trabecular bone left to fill")
    vol = element_volumes(model)
    phi = porosity(model, fill, law)
    flow = phi if crushed_permeability == "compacted" else porosity(model, fill, law,
                                                                     before_compaction=True)
    rng = np.random.default_rng(seed)
    k = permeability(flow) * np.exp(heterogeneity * rng.standard_normal(len(fill)))
    return fill, vol, phi, k, body_volume(model, level, vol)


def _apply_fill(out, level, fill, taken, phi, vol, exits, cem):
    """Give the taken elements their cement materials and regions; return the placed volume
    inside the body and the leak records."""
    taken = np.asarray(taken, np.int64)
    leak_pos = np.asarray([p for p in taken if p in exits], np.int64)
    body_pos = np.setdiff1d(taken, leak_pos)
    cap = phi * vol[fill]
    cap[leak_pos] = vol[fill[leak_pos]]
    if len(body_pos):
        E, nu = composite_modulus(out.E[fill[body_pos]], phi[body_pos], cem)
        out.move_elements(fill[body_pos], f"{level}/cement_composite", E=E, nu=nu)
    in_cleft = np.asarray([exits[int(p)] == "fracture cleft" for p in leak_pos], bool)
    if (~in_cleft).any():
        out.move_elements(fill[leak_pos[~in_cleft]], f"{level}/cement_leak", E=cem.E, nu=cem.nu)
    if in_cleft.any():  # a void inside the body: the cement in it is solid
        out.move_elements(fill[leak_pos[in_cleft]], f"{level}/cement", E=cem.E, nu=cem.nu)
    return float(cap[body_pos].sum()), cap


def pvp(model: Model, level: str, volume_ml: float, *, approach: str = "bipedicular",
        cement="pmma", tip_depth: float = 0.75, tip_offset=(0.0, 0.0, 0.0), side: str = "left",
        seed: int = 0, heterogeneity: float = 0.5, law: str = "morgan2003",
        flow_ml_min: float = 3.0, cannula_diameter_mm: float = 2.0,
        cannula_length_mm: float = 120.0,
        permeability_anisotropy: float = PERMEABILITY_ANISOTROPY,
        crushed_permeability: str = "compacted") -> Model:
    """Percutaneous vertebroplasty of ``level`` with ``volume_ml`` of ``cement``: a copy of the
    model with regions ``"<L>/cement_composite"`` (and ``"<L>/cement_leak"``) and an
    :class:`Augmentation` record (see the module docstring). ``permeability_anisotropy``: the
    bone's axial over transverse permeability (1 for an isotropic front).
    ``crushed_permeability``: :data:`CRUSHED_PERMEABILITIES` (module docstring)."""
    v = _check_volume(volume_ml)
    a = _check_anisotropy(permeability_anisotropy)
    cem = get_cement(cement)
    nds = needles(model, level, approach, tip_depth=tip_depth, tip_offset=tip_offset, side=side)
    out = model.copy()
    fill, vol, phi, k, body_vol = _prepare(out, level, law, seed, heterogeneity,
                                           crushed_permeability)
    order, pos_out, keys_out = _fill_order(out, level, fill, [n.tip for n in nds], None, k,
                                           anisotropy=a)
    exits = _exit_sites(out, level, fill, pos_out, keys_out)
    cap = phi * vol[fill]
    if exits:
        cap[list(exits)] = vol[fill[list(exits)]]
    taken = _take(order, cap, v * ML)
    if taken is None:
        raise MeshError(f"{level} can take only {cap[order].sum() / ML:.2f} mL of cement from "
                        f"these needle tips; asked for {v} mL")
    placed, cap = _apply_fill(out, level, fill, taken, phi, vol, exits, cem)
    leaks = _leaks(out, level, fill, taken, exits, cap)
    body = np.setdiff1d(taken, list(exits))
    k_h = _radial_permeability(k[body], a) if len(body) else None
    p = injection_pressure(cem, flow_ml_min=flow_ml_min, cannula_diameter_mm=cannula_diameter_mm,
                           cannula_length_mm=cannula_length_mm, k_bone=k_h,
                           bone_volume_mm3=float(vol[fill[body]].sum()), n_needles=len(nds))
    leak_ml = sum(L.volume_ml for L in leaks)
    out.metadata.setdefault("augmentations", []).append(Augmentation(
        "PVP", level, approach, cem, v, placed / ML + leak_ml, leak_ml, leaks,
        placed / body_vol, 0.0, p, tuple(nds), 0.0, seed))
    return out


def pkp(model: Model, level: str, volume_ml: float, *, balloon_ml: float | None = None,
        approach: str = "bipedicular", height_restoration: float = 0.5, cement="pmma",
        tip_depth: float = 0.6, tip_offset=(0.0, 0.0, 0.0), side: str = "left",
        rim_thickness: float = 2.0, seed: int = 0, heterogeneity: float = 0.5,
        law: str = "morgan2003", flow_ml_min: float = 3.0, cannula_diameter_mm: float = 3.0,
        cannula_length_mm: float = 120.0,
        permeability_anisotropy: float = PERMEABILITY_ANISOTROPY,
        crushed_permeability: str = "compacted") -> Model:
    """Balloon kyphoplasty of ``level``: ``volume_ml`` of cement into a cavity of ``balloon_ml``
    (default: the same volume), restoring ``height_restoration`` (0..1) of the fracture's lost
    height; cement beyond the balloon volume interdigitates around the cavity. Regions
    ``"<L>/cement"``, ``"<L>/compacted"``, ``"<L>/cement_composite"``; see the module docstring.
    ``permeability_anisotropy`` and ``crushed_permeability`` as in :func:`pvp` (the
    interdigitating cement's front)."""
    v, vb, s = _pkp_amounts(volume_ml, balloon_ml, height_restoration, rim_thickness)
    a = _check_anisotropy(permeability_anisotropy)
    cem = get_cement(cement)
    out = _restore_height(model.copy(), level, s)
    nds = needles(out, level, approach, tip_depth=tip_depth, tip_offset=tip_offset, side=side)
    fill, vol, phi, k, body_vol = _prepare(out, level, law, seed, heterogeneity,
                                           crushed_permeability)
    c = _centroids(out, fill)
    i, j, pos_out, keys_out = _face_graph(out, fill)
    exits = _exit_sites(out, level, fill, pos_out, keys_out)
    cavity = _balloon_cavity(out, level, nds, c, vol[fill], exits, vb)
    _compact_rim(out, level, fill, vol, phi, k, c, cavity, exits, rim_thickness, law)
    out.move_elements(fill[cavity], f"{level}/cement", E=cem.E, nu=cem.nu)
    cav_vol = float(vol[fill[cavity]].sum())
    extra = v * ML - cav_vol
    placed, leaks, p_bone_k, bone_vol = cav_vol, (), None, 0.0
    if extra > 0.5 * float(np.median(phi * vol[fill])):
        more, leaks, p_bone_k, bone_vol = _interdigitate(
            out, level, fill, vol, phi, k, (i, j), cavity, exits, extra, cem, a)
        placed += more
    p = injection_pressure(cem, flow_ml_min=flow_ml_min, cannula_diameter_mm=cannula_diameter_mm,
                           cannula_length_mm=cannula_length_mm, k_bone=p_bone_k,
                           bone_volume_mm3=bone_vol, n_needles=len(nds))
    leak_ml = sum(L.volume_ml for L in leaks)
    out.metadata.setdefault("augmentations", []).append(Augmentation(
        "PKP", level, approach, cem, v, placed / ML + leak_ml, leak_ml, leaks,
        placed / body_vol, s, p, tuple(nds), cav_vol / ML, seed))
    return out


def _pkp_amounts(volume_ml, balloon_ml, height_restoration, rim_thickness):
    """(cement mL, balloon mL, share of the lost height restored), checked."""
    v = _check_volume(volume_ml)
    vb = v if balloon_ml is None else _check_volume(balloon_ml, "balloon_ml")
    if vb > v * (1 + 1e-9):
        raise MeshError(f"the cavity ({vb} mL) would not be filled by {v} mL of cement: give "
                        "volume_ml >= balloon_ml")
    s = float(height_restoration)
    if not (0.0 <= s <= 1.0):
        raise ParameterError(f"height_restoration must lie in 0..1, got {height_restoration}")
    if rim_thickness < 0:
        raise ParameterError(f"rim_thickness must be >= 0 mm, got {rim_thickness}")
    return v, vb, s


def _restore_height(out: Model, level: str, share: float) -> Model:
    """The balloon's height restoration: ``share`` of the recorded collapse of ``level`` undone
    (the body, its discs, and the levels its kyphosis tipped)."""
    if share <= 0:
        return out
    if level not in out.metadata.get("collapse", {}):
        raise MeshError(f"{level} has no recorded fracture to restore (fracture it with "
                        "fem.meshes.pathology.compress first, or give height_restoration=0)")
    out = restore(out, level, share)
    try:
        check_geometry(out, np)
    except MeshError as exc:
        raise MeshError(f"restoring {share:.0%} of {level}'s height inverts elements ({exc})") \
            from None
    return out


def _balloon_cavity(out: Model, level: str, nds, c, vol_fill, exits, vb: float) -> np.ndarray:
    """Positions (in the fill) of the cavity: the ``vb`` mL nearest the needle tips in the
    balloon's metric, an ellipsoid 1.5 : 1 : 1 along the needle, lateral and axial; never an
    exit site."""
    e_ax = level_frame(out, level).axial
    r = np.full(len(c), np.inf)
    for nd in nds:
        d = np.asarray(nd.direction)
        lat = np.cross(e_ax, d)
        x = c - np.asarray(nd.tip)
        r = np.minimum(r, np.sqrt((x @ d / 1.5) ** 2 + (x @ lat) ** 2 + (x @ e_ax) ** 2))
    r[list(exits)] = np.inf
    order = np.argsort(r, kind="stable")
    order = order[np.isfinite(r[order])]
    cavity = _take(order, vol_fill, vb * ML)
    if cavity is None:
        room = float(vol_fill[order].sum()) / ML
        raise MeshError(
            f"{level} cannot hold a {vb:g} mL balloon cavity: its trabecular bone away from "
            f"the exit sites holds {room:.2f} mL at this mesh; give a smaller balloon "
            f"(balloon_ml, else cement_volume_ml, below {room:.2f} mL) or a larger level")
    return cavity


def _compact_rim(out: Model, level: str, fill, vol, phi, k, c, cavity, exits,
                 rim_thickness: float, law: str) -> None:
    """The bone the balloon pushed aside: the cavity's bone mass spread over a rim of
    ``rim_thickness`` mm around it (``"<L>/compacted"``), its modulus raised by the density law
    and its porosity and permeability lowered (``phi``, ``k`` updated in place)."""
    rest = np.setdiff1d(np.arange(len(fill)), cavity)
    if rim_thickness <= 0 or not len(rest):
        return
    dist, _ = cKDTree(c[cavity]).query(c[rest])
    h = np.cbrt(np.median(vol[fill]))
    rim = rest[(dist <= rim_thickness + 0.5 * h) & ~np.isin(rest, list(exits))]
    if not len(rim):
        return
    from .meshes.bone import get_law

    rho_cav = (1.0 - phi[cavity]) * TISSUE_DENSITY
    rho_rim = (1.0 - phi[rim]) * TISSUE_DENSITY
    gain = float((rho_cav * vol[fill[cavity]]).sum() / vol[fill[rim]].sum())
    ratio = ((rho_rim + gain) / rho_rim) ** get_law(law).c
    phi[rim] = 1.0 - (rho_rim + gain) / TISSUE_DENSITY
    out.move_elements(fill[rim], f"{level}/compacted",
                      E=intact_modulus(out, fill[rim]) * ratio, nu=out.nu[fill[rim]])
    k[rim] = permeability(phi[rim])


def _interdigitate(out: Model, level: str, fill, vol, phi, k, graph, cavity, exits,
                   extra: float, cem, anisotropy: float):
    """The cement beyond the balloon volume (``extra`` mm^3) flowing from the cavity wall into
    the surrounding bone. Returns (volume placed in the body mm^3, leaks, the bone's
    permeability along the filled path or None, the volume of bone filled mm^3)."""
    i, j = graph
    others = np.setdiff1d(np.arange(len(fill)), cavity)
    sub = fill[others]
    src = np.flatnonzero(np.isin(others, _neighbours(i, j, cavity)))
    if not len(src):
        raise MeshError(f"no bone around the {level} cavity to take the extra cement")
    order, _, _ = _fill_order(out, level, sub, None, None, k[others], source_positions=src,
                              anisotropy=anisotropy)
    sub_exits = {int(np.flatnonzero(others == p)[0]): s_ for p, s_ in exits.items()}
    cap = phi[others] * vol[sub]
    if sub_exits:
        cap[list(sub_exits)] = vol[sub[list(sub_exits)]]
    taken = _take(order, cap, extra)
    if taken is None:
        raise MeshError(f"{level} cannot take {extra / ML:.2f} mL beyond the cavity")
    more, cap = _apply_fill(out, level, sub, taken, phi[others], vol, sub_exits, cem)
    leaks = _leaks(out, level, sub, taken, sub_exits, cap)
    body = np.setdiff1d(taken, list(sub_exits))
    if not len(body):
        return more, leaks, None, 0.0
    return (more, leaks, _radial_permeability(k[others][body], anisotropy),
            float(vol[sub[body]].sum()))


def _neighbours(i, j, positions) -> np.ndarray:
    """Positions adjacent (by a face) to any of ``positions``, excluding them."""
    inside = np.zeros(max(i.max(initial=0), j.max(initial=0)) + 1, bool)
    inside[positions] = True
    nb = np.r_[j[inside[i]], i[inside[j]]]
    return np.setdiff1d(nb, positions)
