"""Study specifications: a base recipe, parameters as a grid and/or a list, in Python or TOML.

A study names a recipe (:data:`RECIPES`; ``"augmentation"``: a parametric segment, optionally
fractured, optionally augmented, under one load case) and its parameters:

* ``base``: values every run shares;
* ``grid``: parameter -> list of values; every combination is a run;
* ``runs``: a list of parameter tables; each is a run (combined with every grid point).

In TOML::

    [study]
    name = "canonical"
    recipe = "augmentation"

    [base]
    levels = "L1-L3"
    fracture_level = "L2"

    [grid]
    load_case = ["standing", "flexion"]

    [[runs]]
    procedure = "intact"

    [[runs]]
    procedure = "pvp"
    cement_volume_ml = 4.0

Every run's parameters are completed with the defaults of :data:`PARAMETERS` and checked before
any run starts; a fault raises :class:`SpecError` naming the file, line and key. A study of more
than ``max_runs`` runs (:data:`MAX_RUNS` unless raised: ``vfem study --max-runs N``, or
``max_runs=N`` where the Python API expands the grid) is refused at that check, counted as the
product of the grid's lengths and never listed to count it; runs expand lazily
(:meth:`StudySpec.iter_runs`). A run's id is a hash of its complete parameters, so it is stable
across restarts, machines and the order runs are listed in.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ModelError
from ..limits import LIMITS


class SpecError(ModelError):
    """A fault in a study specification, with the file, line and key where it is."""

    def __init__(self, message: str, *, path=None, line: int | None = None, key: str | None = None):
        self.path, self.line, self.key = path, line, key
        where = []
        if path is not None:
            where.append(str(path))
        if line is not None:
            where.append(f"line {line}")
        if key is not None:
            where.append(f"key {key!r}")
        super().__init__((", ".join(where) + ": " if where else "") + message)


def _levels():
    from ..meshes.vertebra import ORDER

    return ORDER


def _load_cases():
    from ..meshes.loadcases import LOAD_CASES

    return sorted(LOAD_CASES)


def _cements():
    from ..augment import CEMENTS

    return sorted(CEMENTS)


def _density_laws():
    from ..meshes.bone import LAWS

    return sorted(LAWS)


@dataclass(frozen=True)
class Param:
    """One recipe parameter: type, default, check (returns an error text or None), help."""

    kind: type
    default: object
    help: str
    check: object = None
    choices: object = None  # a list or a callable returning one
    #: the value as stored from the value as written, where more than one form is accepted
    coerce: object = None

    def __post_init__(self):
        if self.kind is int and self.check is None:
            raise TypeError("an integer parameter needs its range (check=_range(lo, hi))")


def _range(lo, hi, unit=""):
    def check(v):
        return None if lo <= v <= hi else f"must lie in {lo}..{hi}{unit}, got {v}"
    return check


def _limit(name):
    """The check of a parameter whose limits are in :data:`fem.limits.LIMITS`."""
    lim = LIMITS[name]

    def check(v):
        return None if lim.contains(v) else f"must lie in {lim.describe()}, got {v}"
    return check


PROCEDURES = ("intact", "fractured", "pvp", "pkp")
STRENGTHS = ("pistoia", "pushover")
#: where a study's pushover ends (``pushover_end``): at the level's first failure, or run on
#: (:func:`fem.study.recipe.pushover_stops` gives each its stops)
PUSHOVER_ENDS = ("first_failure", "full")
#: how a pushover's bony endplates fail (``endplate_failure``; fem.strength.ENDPLATE_LAWS)
ENDPLATE_FAILURES = ("in_plane", "elastic")
#: the disc models a run can solve with: the fibre disc, drained (the default) or undrained
#: (fem.fibres.solve_disc, small strain), or the solid annulus of the builders (fem.solve)
DISCS = ("isotropic", "fibres", "fibres_undrained")


def _level_names(v):
    if v in ("treated", "all"):
        return None
    names = v.split(",")
    bad = [n for n in names if n not in _levels()]
    if bad or not names:
        return (f"must be 'treated', 'all' or level names (e.g. ['L2', 'L3']), got {v!r}")
    if len(set(names)) != len(names):
        return f"lists a level twice: {v!r}"
    return None


def _join_levels(v):
    if isinstance(v, (list, tuple)) and v and all(isinstance(n, str) for n in v):
        return ",".join(v)
    return v


#: ``ligaments``: built where the anatomy allows (auto), always (yes: refused where it does not)
#: or never; TOML's true and false read as yes and no
LIGAMENT_CHOICES = ("auto", "yes", "no")


def _yes_no(v):
    return {True: "yes", False: "no"}.get(v, v) if isinstance(v, bool) else v


def ligaments_built(p: dict) -> bool:
    """Whether ``ligaments = "auto"`` builds ligaments in run ``p``: a voxel segment (any
    anatomy) of two levels or more (``p["levels"]`` resolved). Levels that name no range build
    none here: the spec's own check of ``levels`` says what is wrong with them."""
    from ..errors import MeshError
    from ..meshes.vertebra import level_range

    if p.get("mesh") != "voxel":
        return False
    try:
        return len(level_range(p["levels"])) > 1
    except MeshError:
        return False


def strength_levels(p: dict) -> list[str]:
    """The levels a run's pushover covers (``strength_levels`` resolved against the run)."""
    from ..meshes.vertebra import level_range

    v = p.get("strength_levels", "treated")
    if v == "all":
        return list(level_range(p["levels"]))
    if v == "treated":
        lv = p["treated_level"] or p["fracture_level"]
        return [lv] if lv else []
    return v.split(",")

#: parameters of the "augmentation" recipe (units in the help)
PARAMETERS = {
    "levels": Param(str, "auto", "contiguous levels, cranial to caudal, e.g. 'L1-L3'; or "
                    "auto: the treated level (else the fracture level) with two free levels "
                    "above and two below, the outermost carrying the plate and the support "
                    "(fewer at the ends of the spine or the shape model); a study with neither "
                    "level names its levels"),
    "anatomy": Param(str, "parametric", "segment geometry: parametric (fem.meshes.vertebra, "
                     "T6-L5), ssm (the mean lumbar shape model, L2-L5; data from "
                     "$FEM_SSM_DATA or ../shared/data/lumbar-ssm-mean) or ct (a patient: "
                     "the ct image and its masks, fem.meshes.patient)",
                     choices=("parametric", "ssm", "ct")),
    "ct": Param(str, "", "with anatomy = ct: the CT image, a NIfTI file or a DICOM series folder "
                "(absolute, or relative to the working directory)"),
    "masks": Param(str, "", "with anatomy = ct: its vertebra segmentation, a folder of "
                   "vertebrae_<LEVEL>.nii.gz (TotalSegmentator), a multilabel NIfTI or a DICOM "
                   "mask series"),
    "ct_slope": Param(float, 0.8, "with anatomy = ct: HU to density slope (mg/cm^3 per HU); "
                      "the default is an ASSUMPTION, a typical K2HPO4 line (fem.meshes.ct."
                      "PHANTOM_HU): give the scan's own calibration", _range(1e-3, 10.0)),
    "ct_intercept": Param(float, -8.0, "with anatomy = ct: HU to density intercept (mg/cm^3)",
                          _range(-1000.0, 1000.0, " mg/cm^3")),
    "mesh": Param(str, "voxel", "voxel (hex8, voxel_size) or tet10 (gmsh, mesh_size)",
                  choices=("voxel", "tet10")),
    "voxel_size": Param(float, 2.0, "voxel size (mm)", _limit("voxel_size")),
    "mesh_size": Param(float, 3.0, "tet10 mesh size (mm), with mesh = tet10",
                       _limit("mesh_size")),
    "bmd": Param(float, 70.0, "trabecular QCT BMD (mg/cm^3); < 80 is osteoporotic",
                 _limit("bmd")),
    "procedure": Param(str, "intact", "model state", choices=PROCEDURES),
    "fracture_level": Param(str, "", "fractured level (empty: none); fractured/pvp/pkp need one "
                            "unless treated_level is given"),
    "fracture_shape": Param(str, "wedge", "Genant shape", choices=("wedge", "biconcave", "crush")),
    "fracture_grade": Param(int, 2, "Genant grade", _range(1, 3)),
    "burst": Param(bool, False, "burst fracture (posterior-wall breach)"),
    "fracture_compaction": Param(str, "band", "where the collapsed body's bone mass goes: band "
                                 "(into the damaged band: the default), uniform (every element "
                                 "keeps its own), none (lost with its volume: the fracture model "
                                 "before 2026-12-06); fem.meshes.pathology.compress's "
                                 "conserve_mass", choices=("none", "band", "uniform")),
    "fracture_anatomy": Param(str, "carried", "where the fractured level's anatomy (centre, "
                              "endplate centres, transpedicular needle paths) stands: carried "
                              "(with its collapsed bone: the default) or intact (where the "
                              "intact level had it: before 2026-12-07 evening, when a crushed "
                              "body's needles stayed at the intact pedicles' height); "
                              "fem.meshes.pathology.compress's carry_anatomy",
                              choices=("carried", "intact")),
    "crushed_envelope": Param(str, "compacted", "the strength envelope of the fracture's "
                              "crushed band where it kept its mass (fracture_compaction band or "
                              "uniform): compacted (that of intact bone of its compacted density: "
                              "the default) or original (that of the bone it was crushed from, "
                              "a cellular solid's crushing plateau: denser and stiffer, no "
                              "stronger); the pushover and the linear strengths both read it; "
                              "fem.meshes.pathology.compress's envelope, docs/augmentation.md",
                              choices=("compacted", "original")),
    "crushed_permeability": Param(str, "compacted", "how cement flows through the fracture's "
                                  "compacted bone (fracture_compaction band or uniform): "
                                  "compacted (Kozeny-Carman on its compacted porosity: the "
                                  "default) or original (the permeability of the bone before the "
                                  "compaction, as if the fracture's cracks kept the flow paths "
                                  "open); pvp and pkp runs; fem.augment.pvp's "
                                  "crushed_permeability, docs/validation.md",
                                  choices=("compacted", "original")),
    "fracture_damage": Param(float, 0.14, "modulus of the fracture's crushed band over its intact "
                             "modulus (fem.meshes.pathology.CRUSHED_MODULUS_RATIO, measured: "
                             "Wolfram et al. 2011; 0.2 was the earlier calibrated factor)",
                             _range(0.01, 1.0)),
    "disc": Param(str, "fibres", "intervertebral disc model: fibres (the default since "
                  "2026-12-06: a fibre-reinforced annulus, drained, that loads the endplate as "
                  "measured discs do; fem.fibres.solve_disc with its exact secant stiffness, "
                  "about twice a linear solve's time), fibres_undrained (the same, loaded too "
                  "fast for the disc's water to leave) or isotropic (the annulus a 4.2 MPa "
                  "solid, the default before); a single level has no disc and solves plainly; "
                  "docs/studies.md", choices=DISCS),
    "ligaments": Param(str, "auto", "posterior ligaments between neighbouring levels "
                       "(interspinous and supraspinous, flavum, facet capsules): tension-only "
                       "fibres solved with the discs (fem.ligaments), which hold a bending "
                       "moment as a ligamentous segment does (without them the discs alone "
                       "hold it, and a segment turns tens of degrees). auto (the default since "
                       "the night of 2026-12-07: yes for voxel segments of two levels or more, "
                       "parametric, shape model or CT, no elsewhere), yes (true: refused where "
                       "they are not built, tet10 meshes) or no (false: the segments of "
                       "before); with them rotational_stiffness_nm_per_deg is NaN (the arch "
                       "carries the moment past the body); docs/studies.md",
                       choices=LIGAMENT_CHOICES, coerce=_yes_no),
    "treated_level": Param(str, "", "augmented level (empty: the fractured level)"),
    "approach": Param(str, "bipedicular", "needle approach",
                      choices=("unipedicular", "bipedicular")),
    "cement": Param(str, "pmma", "cement name (fem.augment.CEMENTS)", choices=_cements),
    "cement_volume_ml": Param(float, 4.0, "cement volume (mL); used by pvp and pkp",
                              _limit("cement_volume_ml")),
    "balloon_ml": Param(float, 0.0, "PKP balloon volume (mL); 0: the cement volume",
                        _range(0.0, 15.0, " mL")),
    "height_restoration": Param(float, 0.5, "PKP share of the lost height restored (0..1)",
                                _range(0.0, 1.0)),
    "tip_depth": Param(float, 0.75, "needle tip depth, 0 posterior wall .. 1 anterior wall",
                       _range(0.0, 1.0)),
    "load_case": Param(str, "standing", "load case (fem.meshes.loadcases)", choices=_load_cases),
    "seed": Param(int, 0, "seed of the cement fill", _range(0, 2**63 - 1)),
    "solver": Param(str, "auto", "linear solver", choices=("auto", "direct", "amg")),
    "backend": Param(str, "auto", "array backend", choices=("auto", "numpy", "cupy")),
    "strength": Param(str, "pistoia", "strength of the levels: pistoia (linear, every level, "
                      "always) or pushover (also the damage pushover of fem.strength: about 100 "
                      "linear solves per level, docs/nonlinear.md)", choices=STRENGTHS),
    "strength_levels": Param(str, "treated", "levels the pushover runs on: treated (the "
                             "treated_level, else the fracture_level), all, or a list of level "
                             "names (TOML list or 'L1,L2')", check=_level_names,
                             coerce=_join_levels),
    "pushover_end": Param(str, "first_failure", "where the pushover stops: first_failure (the "
                          "default since 2026-12-07: at the level's first failure, where its "
                          "force falls first_failure_drop below its running maximum or its "
                          "curve flattens to a plateau, as a cadaver test reads the failure "
                          "load; "
                          "strength_pushover_n is then that failure load) or full "
                          "(on until the force falls to 0.8 of its peak or the displacement or "
                          "step cap, the default before: the largest force of the curve, which "
                          "in a segment can rise again after a first failure); docs/studies.md",
                          choices=PUSHOVER_ENDS),
    "first_failure_drop": Param(float, 0.02, "the fall below the running maximum of a level's "
                                "pushover curve that marks its first failure "
                                "(strength_first_peak_n, and where pushover_end = first_failure "
                                "stops): 0.02 since 2026-12-07, four times the equilibrium "
                                "tolerance (0.1 before: on some inputs it read a later rise "
                                "past a first failure; fem.nonlinear_result.FIRST_PEAK_DROP)",
                                _range(0.005, 0.5)),
    "first_failure_offset": Param(float, 0.002, "the offset yield that also marks a level's first "
                                  "failure, a share of the level's mean height: where the "
                                  "pushover curve crosses its initial stiffness's line shifted "
                                  "by it, if that comes before a fall of first_failure_drop "
                                  "(a curve that bends over without falling); 0.002 since "
                                  "2026-12-07, the offset yield of materials testing (0: the "
                                  "fall alone, as before); strength_pushover_n and strength_n "
                                  "read it where pushover_end = first_failure "
                                  "(fem.nonlinear_result.OFFSET_YIELD)", _range(0.0, 0.05)),
    "endplate_failure": Param(str, "in_plane", "how the pushover's bony endplates fail: "
                              "in_plane (the default since 2026-12-07: bone's yield strains on "
                              "their in-plane strain, the strains across the thin layer, "
                              "inflated by its thickness-scaled modulus, left out; "
                              "fem.strength.bone_damage_law) or elastic (they never fail, the "
                              "law before); docs/nonlinear.md", choices=ENDPLATE_FAILURES),
    # inputs worth sampling ([uncertain], fem.study.uncertain); their defaults change nothing
    "density_error": Param(float, 0.0, "error of the density calibration (mg/cm^3), added to "
                           "the trabecular density the model gets: to bmd (parametric, ssm) or "
                           "to the CT calibration's intercept (ct)", _range(-200.0, 200.0,
                                                                            " mg/cm^3")),
    "density_law": Param(str, "morgan2003", "trabecular density-modulus law "
                         "(fem.meshes.bone.LAWS); also the law the cement filling inverts",
                         choices=_density_laws),
    "cement_modulus": Param(float, 0.0, "the cement's elastic modulus (MPa); 0: the named "
                            "cement's own", _range(0.0, 20000.0, " MPa")),
    "tip_offset_lateral": Param(float, 0.0, "needle tip offset (mm) from the planned tip along "
                                "the level's lateral axis (fem.anatomy.LevelFrame; the "
                                "antero-posterior place is tip_depth)",
                                _range(-15.0, 15.0, " mm")),
    "tip_offset_axial": Param(float, 0.0, "needle tip offset (mm) from the planned tip along "
                              "the level's axial (cranial) axis",
                              _range(-15.0, 15.0, " mm")),
    "heterogeneity": Param(float, 0.5, "scatter of the cement's spread: SD of ln permeability "
                           "of the trabecular bone (fem.augment)", _range(0.0, 3.0)),
    "permeability_anisotropy": Param(float, 2.05, "the trabecular bone's permeability along "
                                     "the level's axis over across it, which makes the cement "
                                     "front sqrt of it times as tall as wide (Nauman et al. "
                                     "1999, fem.augment.PERMEABILITY_ANISOTROPY; 1: the "
                                     "isotropic front of before 2026-12-07); pvp and pkp runs",
                                     _range(0.1, 10.0)),
    "load_line": Param(str, "space", "where the load acts on a segment a fracture has "
                       "tipped: space (its line kept over the intact segment's top: the trunk "
                       "held upright; the answer does not depend on how many levels sit above) "
                       "or plate (riding the tipped top plate: the trunk carried forward; the "
                       "default before 2026-12); fem.meshes.loadcases.loaded",
                       choices=("space", "plate")),
    "load_scale": Param(float, 1.0, "load magnitude, a factor on the load case's force and "
                        "moment", _range(0.05, 10.0)),
    "cleft": Param(bool, False, "an intravertebral cleft (Kuemmell) in the fractured level "
                   "(fem.meshes.pathology.compress)"),
    "basivertebral_mm": Param(float, 0.0, "diameter (mm) of an open basivertebral foramen in "
                              "the treated level's posterior wall, a venous way out for cement "
                              "(fem.meshes.pathology.open_breach); 0: closed",
                              _range(0.0, 10.0, " mm")),
    "endplate_breach_mm": Param(float, 0.0, "diameter (mm) of a fracture line through the "
                                "fractured level's endplate, a way into the disc for cement; 0: "
                                "none; fractured, pvp and pkp runs", _range(0.0, 15.0, " mm")),
    "endplate_breach_side": Param(str, "superior", "which endplate the breach is in",
                                  choices=("superior", "inferior")),
    "endplate_breach_position": Param(float, 0.5, "where the endplate breach is: 0 posterior .. "
                                      "1 anterior of the body's depth, on the midline",
                                      _range(0.0, 1.0)),
    "sample": Param(int, -1, "index of the sampled patient of [uncertain] (set by it; -1: the "
                    "run is not sampled)", _range(-1, 2**31 - 1)),
}
#: parameters a spec may not sample: they change how a run computes, not what it models
NOT_SAMPLED = ("sample", "backend", "solver", "anatomy", "ct", "masks", "mesh", "levels",
               "strength", "strength_levels", "pushover_end", "first_failure_drop",
               "first_failure_offset", "endplate_failure", "voxel_size", "mesh_size")
RECIPES = {"augmentation": PARAMETERS}
#: the most runs a study may have unless allowed more (``vfem study --max-runs``, ``max_runs=``)
MAX_RUNS = 10_000


@dataclass
class StudySpec:
    """A study: name, recipe, base values, grid, list of runs, and whether runs write VTU."""

    name: str
    recipe: str = "augmentation"
    base: dict = field(default_factory=dict)
    grid: dict = field(default_factory=dict)
    runs: list = field(default_factory=list)
    write_vtu: bool = True
    path: str | None = None
    _lines: object = field(default=None, repr=False)
    #: the ``[uncertain]`` table (:class:`fem.study.uncertain.Uncertain`), or None
    uncertain: object = None

    # ------------------------------------------------------------------ construction

    @classmethod
    def from_dict(cls, d: dict, *, path=None, lines=None,
                  max_runs: int | None = MAX_RUNS) -> StudySpec:
        """From the TOML layout: {"study": {name, recipe, write_vtu}, "base", "grid", "runs"};
        checked whole (:meth:`check`), with at most ``max_runs`` runs (None: no limit)."""
        where = _Where(path, lines)
        if not isinstance(d, dict):
            raise SpecError("a study spec is a table", path=path)
        d = _plain(d)
        unknown = set(d) - {"study", "base", "grid", "runs", "uncertain"}
        if unknown:
            k = sorted(unknown)[0]
            raise where.error(k, None, "unknown section; use [study], [base], [grid], "
                              "[[runs]] and [uncertain]")
        st = d.get("study", {})
        if not isinstance(st, dict) or "name" not in st:
            raise where.error("name", "study", "the [study] table needs a name")
        for k in st:
            if k not in ("name", "recipe", "write_vtu"):
                raise where.error(k, "study", "unknown key in [study] (name, recipe, write_vtu)")
        name = st["name"]
        if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", name):
            raise where.error("name", "study", "the study name must be 1-64 letters, digits, "
                              f"'_', '.' or '-', got {name!r}")
        recipe = st.get("recipe", "augmentation")
        if recipe not in RECIPES:
            raise where.error("recipe", "study", f"unknown recipe {recipe!r}; known: "
                              f"{', '.join(RECIPES)}")
        runs = d.get("runs", [])
        if not isinstance(runs, list) or not all(isinstance(r, dict) for r in runs):
            raise where.error("runs", None, "runs must be a list of tables ([[runs]])")
        if not isinstance(st.get("write_vtu", True), bool):
            raise where.error("write_vtu", "study", f"must be true or false, got "
                              f"{st['write_vtu']!r}")
        grid = d.get("grid", {})
        if not isinstance(grid, dict):
            raise where.error("grid", None, "grid must be a table of lists")
        unc = None
        if "uncertain" in d:
            from .uncertain import Uncertain, UncertainError

            try:
                unc = Uncertain.from_dict(d["uncertain"])
            except UncertainError as exc:
                raise where.dotted_error(exc.key, str(exc)) from None
        spec = cls(name, recipe, dict(d.get("base", {})), dict(grid), [dict(r) for r in runs],
                   bool(st.get("write_vtu", True)), None if path is None else str(path), where,
                   unc)
        spec.check(max_runs)  # validate everything now, before any run starts
        return spec

    @classmethod
    def from_toml(cls, path, *, max_runs: int | None = MAX_RUNS) -> StudySpec:
        try:
            import tomllib
        except ModuleNotFoundError:  # Python 3.10
            import tomli as tomllib

        path = Path(path)
        try:
            text = path.read_text()
        except FileNotFoundError:
            raise SpecError("study spec not found", path=path) from None
        except (OSError, UnicodeDecodeError) as exc:
            raise SpecError(f"cannot read the study spec ({exc})", path=path) from None
        try:
            d = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            m = re.search(r"line (\d+)", str(exc))
            raise SpecError(f"not valid TOML ({exc})", path=path,
                            line=int(m.group(1)) if m else None) from None
        except (ValueError, RecursionError) as exc:  # an integer of thousands of digits, ...
            raise SpecError(f"not a TOML spec this reader can take ({exc})", path=path) \
                from None
        return cls.from_dict(d, path=path, lines=text.splitlines(), max_runs=max_runs)

    def to_dict(self) -> dict:
        d = {"study": {"name": self.name, "recipe": self.recipe, "write_vtu": self.write_vtu},
             "base": self.base, "grid": self.grid, "runs": self.runs}
        if self.uncertain is not None:
            d["uncertain"] = self.uncertain.to_dict()
        return d

    def samples(self) -> list[dict]:
        """The sampled patients' values of ``[uncertain]`` (integers rounded), in sample order;
        ``[{}]`` without it. Computed once."""
        if self.uncertain is None:
            return [{}]
        cached = self.__dict__.get("_samples")
        if cached is None or cached[0] != self.uncertain:
            params = RECIPES[self.recipe]
            values = [{k: round(v) if params[k].kind is int else v for k, v in row.items()}
                      for row in self.uncertain.values()]
            self.__dict__["_samples"] = cached = (self.uncertain, values)
        return cached[1]

    # ------------------------------------------------------------------ runs

    def count(self) -> int:
        """The number of runs: the product of the grid's lengths times the listed runs (before
        duplicates are removed), computed without listing them."""
        return math.prod(len(v) if isinstance(v, list) else 1 for v in self.grid.values()) \
            * max(1, len(self.runs)) * (1 if self.uncertain is None else self.uncertain.size)

    def check(self, max_runs: int | None = MAX_RUNS) -> int:
        """Check every value, the number of runs against ``max_runs`` (None: no limit) and each
        combination of the values the cross-checks read, without listing the runs; returns
        :meth:`count`. Raises :class:`SpecError` naming the file, line and key."""
        if max_runs is not None and (isinstance(max_runs, bool) or not isinstance(max_runs, int)
                                     or max_runs < 1):
            raise ModelError(f"max_runs must be a positive integer or None, got {max_runs!r}")
        params = RECIPES[self.recipe]
        where = self._where()
        for k, v in self.base.items():
            _check(params, k, v, where, "base")
        for k, values in self.grid.items():
            if not isinstance(values, list) or not values:
                raise where.error(k, "grid", "a grid entry is a non-empty list of values")
            for v in values:
                _check(params, k, v, where, "grid")
        for i, r in enumerate(self.runs):
            for k, v in r.items():
                _check(params, k, v, where, "runs", i)
        if self.uncertain is not None:
            self._check_uncertain(params, where)
        else:
            listed = [("base", self.base, None), ("grid", self.grid, None)]
            listed += [("runs", r, i) for i, r in enumerate(self.runs)]
            for table, t, i in listed:
                if "sample" in t:  # named where it was written, with its line
                    raise where.error("sample", table, "sample is set by [uncertain], not "
                                      "written", i)
        n = self.count()
        if max_runs is not None and n > max_runs:
            shape = " x ".join([f"{len(v)} {k}" for k, v in self.grid.items()]
                               + ([f"{len(self.runs)} [[runs]]"] if self.runs else []))
            raise where.error("grid" if self.grid else "runs", None,
                              f"the study has {n} runs ({shape}), more than the limit of "
                              f"{max_runs}: allow them with vfem study --max-runs {n} (Python: "
                              f"max_runs={n}), or make the grid smaller")
        seen = set()
        for p, err in self._combinations(CROSS_KEYS):  # the rest cannot fail a cross-check
            key = tuple(p.values())
            if key not in seen:
                seen.add(key)
                _cross_check(p, err)
        return n

    def _check_uncertain(self, params, where):
        """The sampled parameters exist, may be sampled, are not also listed, and every
        sampled value passes the parameter's check."""
        for dist in self.uncertain.inputs:
            name, key = dist.name, f"uncertain.parameters.{dist.name}"
            if name not in params:
                try:
                    _check(params, name, None, _Where(None, None), None)  # names the near ones
                except SpecError as exc:
                    raise where.dotted_error(key, str(exc)) from None
            if name in NOT_SAMPLED:
                raise where.dotted_error(key, f"{name} cannot be sampled (it changes how a run "
                                         "computes, not what it models)")
            kind = params[name].kind
            if kind is int and dist.categorical:
                odd = [v for v in dist.arg["values"]
                       if not (isinstance(v, (int, float)) and float(v).is_integer())]
                if odd:
                    raise where.dotted_error(f"{key}.values", f"{name} is a whole number: its "
                                             f"choices must be whole numbers, got "
                                             f"{', '.join(repr(v) for v in odd)}")
            if kind in (str, bool) and not dist.categorical:
                raise where.dotted_error(f"{key}.distribution", f"{name} is "
                                         f"{'text' if kind is str else 'true/false'}: sample it "
                                         f"with distribution = 'choice'")
            listed = [(table, t, None) for table, t in (("base", self.base), ("grid", self.grid))]
            listed += [("runs", r, i) for i, r in enumerate(self.runs)]
            for table, t, i in listed:
                if name in t:
                    shown = "[[runs]]" if table == "runs" else f"[{table}]"
                    raise where.error(name, table, f"{name} is sampled in [{key}]: remove it "
                                      f"from {shown}", i)
        for i, row in enumerate(self.samples()):
            for name, v in row.items():
                try:
                    _check(params, name, v, _Where(None, None), None)
                except SpecError as exc:
                    hint = ("; use a truncnormal (or uniform) distribution inside the limits"
                            if not isinstance(v, str) else "")
                    raise where.dotted_error(f"uncertain.parameters.{name}", f"sample {i} of "
                                             f"{self.uncertain.size}: {name} = {v!r} {exc}"
                                             f"{hint}") from None

    def iter_runs(self, max_runs: int | None = MAX_RUNS):
        """Every run's complete, checked parameters, one at a time (in listing order,
        duplicates removed): a grid of any size is never held in memory whole. The spec is
        checked (:meth:`check`) before the first run is given."""
        self.check(max_runs)
        seen = set()
        for p, _ in self._combinations():
            rid = run_id(p)
            if rid not in seen:
                seen.add(rid)
                yield p

    def expand(self, max_runs: int | None = MAX_RUNS) -> list[dict]:
        """Every run's complete, checked parameters as a list (:meth:`iter_runs`); a study of
        more than ``max_runs`` runs is refused before any is listed."""
        return list(self.iter_runs(max_runs))

    def _where(self):
        return self._lines if isinstance(self._lines, _Where) else _Where(self.path, None)

    def _combinations(self, only=None):
        """(parameters, error factory) of each listed run times each grid point, in order;
        restricted to the parameters ``only`` (and the grid axes among them) where given."""
        params = RECIPES[self.recipe]
        where = self._where()
        keys = [k for k in self.grid if only is None or k in only]
        sampled = self.uncertain is not None
        # sample-major: every run of a sampled patient is listed (and claimed) together
        for s, values in enumerate(self.samples()):
            yield from self._runs_of(params, where, keys, only, values, s if sampled else None)

    def _runs_of(self, params, where, keys, only, values, sample):
        for i, r in enumerate(self.runs or [{}]):
            for combo in itertools.product(*(self.grid[k] for k in keys)):
                p = {k: v.default for k, v in params.items()}
                p.update(self.base)
                p.update(values)
                if sample is not None:
                    p["sample"] = sample
                p.update(r)
                p.update(zip(keys, combo))
                if only is not None:
                    p = {k: p[k] for k in only}
                p = {k: params[k].kind(_coerced(params[k], v)) for k, v in p.items()}

                def err(key, message, r=r, i=i):
                    if key in keys:
                        return where.error(key, "grid", message)
                    if key in r:
                        return where.error(key, "runs", message, i)
                    if key in self.base:
                        return where.error(key, "base", message)
                    if key in values:
                        return where.dotted_error(f"uncertain.parameters.{key}", f"sample {sample}: "
                                                  f"{message}")
                    return SpecError(f"{message} (default of {key!r})", path=self.path)

                if p.get("levels") == AUTO_LEVELS:  # a run's parameters name its real levels
                    p["levels"] = auto_levels(p, err)
                if p.get("ligaments") == "auto" and "levels" in p:  # ... and its ligaments
                    p["ligaments"] = "yes" if ligaments_built(p) else "no"
                yield p, err


#: parameters added after the first stores were written, with the values the runs of those stores
#: had: a run that keeps them at these values hashes without them, so its id (and a store's runs)
#: stay what they were. ``load_line`` is "plate" here though its default is now "space": a run
#: computed with the old load hashes as before, and one with the new default is a new run; so
#: are ``fracture_compaction`` ("band" by default since 2026-12-06), ``fracture_damage`` (0.14,
#: measured, since 2026-12-06; 0.2 calibrated before) and ``disc`` ("fibres" by default since
#: 2026-12-06), ``pushover_end`` ("first_failure" by default since 2026-12-07),
#: ``endplate_failure`` ("in_plane" by default since 2026-12-07), ``first_failure_drop`` (0.02
#: since 2026-12-07), ``first_failure_offset`` (0.002 since 2026-12-07; 0, off, before) and
#: ``permeability_anisotropy`` (2.05 since 2026-12-07; 1, an isotropic cement front, before);
#: ``fracture_anatomy`` ("carried" since 2026-12-07 evening; "intact" before);
#: ``crushed_envelope`` and ``crushed_permeability`` (added 2026-12-07 late, "compacted": what
#: every run had before); ``ligaments`` ("auto" since the night of 2026-12-07, which a voxel
#: segment resolves to "yes" and every other run to "no": those keep their ids)
ADDED_LATER = {"anatomy": "parametric", "mesh": "voxel", "mesh_size": 3.0,
               "strength": "pistoia", "strength_levels": "treated", "ct": "", "masks": "",
               "ct_slope": 0.8, "ct_intercept": -8.0, "density_error": 0.0,
               "density_law": "morgan2003", "cement_modulus": 0.0, "tip_offset_lateral": 0.0,
               "tip_offset_axial": 0.0, "heterogeneity": 0.5, "load_scale": 1.0,
               "cleft": False, "sample": -1, "basivertebral_mm": 0.0, "endplate_breach_mm": 0.0,
               "endplate_breach_side": "superior", "endplate_breach_position": 0.5,
               "load_line": "plate", "fracture_compaction": "none", "disc": "isotropic",
               "fracture_damage": 0.2, "pushover_end": "full", "endplate_failure": "elastic",
               "first_failure_drop": 0.1, "first_failure_offset": 0.0,
               "permeability_anisotropy": 1.0, "fracture_anatomy": "intact",
               "crushed_envelope": "compacted", "crushed_permeability": "compacted",
               "ligaments": "no"}
#: parameters that change nothing unless ``strength = "pushover"``: a run without a pushover
#: hashes without them, so a linear-only run keeps its id whatever they hold
PUSHOVER_ONLY = ("pushover_end", "endplate_failure", "first_failure_drop",
                 "first_failure_offset")
#: parameters that change nothing unless the pushover stops at the first failure
#: (``pushover_end = "first_failure"``): a run that reads the full curve hashes without them
FIRST_FAILURE_ONLY = ("first_failure_offset",)
#: parameters that change nothing unless cement goes in (``procedure`` pvp or pkp): a run
#: without cement hashes without them
CEMENT_ONLY = ("permeability_anisotropy", "crushed_permeability")
#: parameters that change nothing unless a level is fractured (a procedure other than intact
#: with a ``fracture_level``): a run without a fracture hashes without them
FRACTURE_ONLY = ("fracture_anatomy", "crushed_envelope", "crushed_permeability")
#: the procedures that put cement in
CEMENT_PROCEDURES = ("pvp", "pkp")


def fractures(params: dict) -> bool:
    """Whether the run fractures a level: a procedure other than intact, with a
    ``fracture_level`` (what :func:`fem.study.recipe.build_model` compresses)."""
    return params.get("procedure", "intact") != "intact" and bool(params.get("fracture_level"))


def run_id(params: dict) -> str:
    """A stable id: the first 12 hex digits of the SHA-256 of the sorted parameters (those of
    :data:`ADDED_LATER` left out where they hold their defaults, those of
    :data:`PUSHOVER_ONLY` where the run has no pushover, those of :data:`FIRST_FAILURE_ONLY`
    where its pushover reads the full curve, those of :data:`CEMENT_ONLY` where it puts no
    cement in, and those of :data:`FRACTURE_ONLY` where it fractures no level)."""
    unused = set()  # parameters that change nothing in this run
    if params.get("procedure") not in CEMENT_PROCEDURES:
        unused.update(CEMENT_ONLY)
    if not fractures(params):
        unused.update(FRACTURE_ONLY)
    if params.get("strength", "pistoia") != "pushover":
        unused.update(PUSHOVER_ONLY)
    if params.get("pushover_end", ADDED_LATER["pushover_end"]) != "first_failure":
        unused.update(FIRST_FAILURE_ONLY)
    kept = {k: v for k, v in params.items()
            if k not in unused and (k not in ADDED_LATER or v != ADDED_LATER[k])}
    blob = json.dumps(kept, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


class _Where:
    """Finds the line of a key in the TOML text (tomllib keeps no positions)."""

    def __init__(self, path, lines):
        self.path, self.lines = path, lines

    def line(self, key, table=None, index=None):
        """The line of ``key`` in ``table`` (its ``index``-th ``[[table]]``); the table's header
        line when the key is missing from it (a required key), None when neither is found."""
        if not self.lines:
            return None
        current, count, header = None, -1, None
        for no, raw in enumerate(self.lines, start=1):
            s = raw.strip()
            m = re.fullmatch(r"(\[\[?)\s*([\w.-]+)\s*\]\]?\s*(#.*)?", s)
            if m:
                current = m.group(2)
                if m.group(1) == "[[" and current == table:
                    count += 1
                if table is None and current == key:
                    return no
                if header is None and current == table and (index is None or count == index):
                    header = no
                continue
            if current == table and (index is None or count == index) \
                    and re.match(rf"\s*[\"']?{re.escape(key)}[\"']?\s*=", raw):
                return no
        return header

    def dotted_error(self, dotted: str, message: str):
        """The error at a dotted key of a sub-table (``uncertain.bmd.sd``), or at the header of
        the table it names (``uncertain.bmd``)."""
        table, _, key = dotted.rpartition(".")
        line = self.line(dotted, None)  # the header [uncertain.parameters.bmd] itself
        if line is None:
            line = self.line(key, table or None)
        return SpecError(message, path=self.path, line=line, key=dotted)

    def error(self, key, table, message, index=None):
        where_key = key if table is None else (f"{table}[{index}].{key}" if index is not None
                                               else f"{table}.{key}")
        return SpecError(message, path=self.path, line=self.line(key, table, index),
                         key=where_key)


def _plain(x):
    """``x`` with NumPy scalars as the Python numbers and booleans they hold and NumPy arrays as
    lists, in dicts and lists at any depth (a spec built in Python, ``list(np.arange(...))``
    for a grid, reads as the same TOML would)."""
    import numpy as np

    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_plain(v) for v in x]
    if isinstance(x, np.ndarray):
        return [_plain(v) for v in x.tolist()]
    if isinstance(x, np.generic):
        return x.item()
    return x


def _check(params, key, value, where, table, index=None):
    if key not in params:
        near = [k for k in params if k.split("_")[0] == key.split("_")[0]]
        hint = f" (did you mean {', '.join(near)}?)" if near else ""
        raise where.error(key, table, f"unknown parameter{hint}; known: "
                          f"{', '.join(sorted(params))}", index)
    p = params[key]
    value = _coerced(p, value)
    ok = (isinstance(value, bool) if p.kind is bool else
          isinstance(value, (int, float)) and not isinstance(value, bool) if p.kind is float else
          isinstance(value, int) and not isinstance(value, bool) if p.kind is int else
          isinstance(value, str))
    if not ok:
        raise where.error(key, table, f"must be {p.kind.__name__} ({p.help}), got "
                          f"{value!r}", index)
    choices = p.choices() if callable(p.choices) else p.choices
    if choices is not None and value not in choices:
        raise where.error(key, table, f"must be one of {', '.join(map(str, choices))}, got "
                          f"{value!r}", index)
    if p.check is not None:
        msg = p.check(value)
        if msg:
            raise where.error(key, table, msg, index)


#: ``levels = "auto"``: the treated (else fractured) level and this many levels on each side
AUTO_LEVELS = "auto"
AUTO_REACH = 2


def auto_levels(p: dict, err) -> str:
    """The segment ``levels = "auto"`` stands for in run ``p``: the treated level (else the
    fracture level) with :data:`AUTO_REACH` levels above and below, as far as the spine (or the
    shape model, ``anatomy = "ssm"``) goes, e.g. L2 -> "T12-L4", L5 -> "L3-L5"."""
    from ..meshes.vertebra import ORDER

    centre = p.get("treated_level") or p.get("fracture_level")
    if not centre:
        raise err("levels", "levels = 'auto' (the default) centres the segment on the "
                  "treated_level or the fracture_level: give one of them, or name the levels "
                  "(e.g. levels = 'L1-L3')")
    if p.get("anatomy") == "ssm":
        from ..meshes.ssm import SSM_LEVELS as available
    elif p.get("anatomy") == "ct":
        available = _segmented_levels(p, err)
    else:
        available = ORDER
    if centre not in available:
        raise err("levels", f"level {centre!r} is not one of the {p.get('anatomy')} anatomy's "
                  f"levels ({', '.join(available)})")
    if p.get("anatomy") == "ct":  # the levels the scan holds whole, around the centre
        cut = set(_cut_levels(p, available))
        if centre in cut:
            raise err("levels", f"level {centre!r} reaches the edge of the image in "
                      f"{p['masks']}: the scan holds only part of it")
        i = list(available).index(centre)
        lo = max([j + 1 for j in range(i) if available[j] in cut], default=0)
        hi = min([j for j in range(i + 1, len(available)) if available[j] in cut],
                 default=len(available))
        available = list(available)[lo:hi]
    i = list(available).index(centre)
    names = list(available)[max(0, i - AUTO_REACH):i + AUTO_REACH + 1]
    return f"{names[0]}-{names[-1]}"


def _coerced(param, value):
    return value if param.coerce is None else param.coerce(value)


#: the parameters :func:`_cross_check` reads (it is given only these: reading another raises
#: KeyError), so that it runs once per combination of their values, not once per run
CROSS_KEYS = ("levels", "anatomy", "fracture_level", "treated_level", "procedure", "strength",
              "strength_levels", "balloon_ml", "cement_volume_ml", "ct", "masks", "bmd",
              "density_error", "ligaments", "mesh")


def _segmented_levels(p, err) -> list[str]:
    """The levels the run's masks hold (anatomy = ct), cranial to caudal; the CT and masks
    must exist."""
    for key in ("ct", "masks"):
        if not p[key]:
            raise err(key, f"anatomy = 'ct' needs {key} (a path)")
        if not Path(p[key]).exists():
            raise err(key, f"{p[key]}: no such file or folder (relative paths are taken from "
                      f"the working directory, {Path.cwd()})")
    from ..meshes.segmentation import read_segmentation

    path = Path(p["masks"])
    try:
        try:
            stamp = _stamp(path)
        except OSError:  # unreadable: the reader says what is wrong
            return read_segmentation(path).levels
        return list(_mask_view(str(path.resolve()), stamp))
    except ModelError as exc:
        raise err("masks", str(exc)) from None


def _stamp(path: Path) -> tuple:
    """What changes when a mask file or folder does: (name, size, mtime) of each entry."""
    stats = ((e.name, e.stat()) for e in (sorted(path.iterdir()) if path.is_dir() else [path]))
    return tuple((name, st.st_size, st.st_mtime_ns) for name, st in stats)


@functools.lru_cache(maxsize=16)
def _mask_view(path: str, stamp: tuple) -> dict:
    """{level: whether the image holds it whole} of a segmentation (cranial to caudal), read
    once per version of it (``stamp``): a spec is checked run by run, and reading a
    TotalSegmentator folder takes a quarter of a second. A mask that reaches the first or last
    slice of an axis is cut by the field of view (``Segmentation.edge_reached``, by which
    :mod:`fem.meshes.patient` refuses such a level when a run builds it)."""
    from ..meshes.segmentation import read_segmentation

    seg = read_segmentation(path)
    return {n: seg.edge_reached(n) is None for n in seg.levels}


def _cut_levels(p, names) -> list[str]:
    """The levels of ``names`` the run's CT holds only in part (anatomy = ct); [] where its
    masks cannot be stamped (the run's own check then says so)."""
    path = Path(p["masks"])
    try:
        view = _mask_view(str(path.resolve()), _stamp(path))
    except (OSError, ModelError):
        return []
    return [n for n in names if n in view and not view[n]]


def _cross_check(p, err):
    from ..meshes.vertebra import level_range

    try:
        names = level_range(p["levels"])
    except ModelError as exc:
        raise err("levels", str(exc)) from None
    if p["anatomy"] == "ct":
        segmented = _segmented_levels(p, err)
        missing = [n for n in names if n not in segmented]
        if missing:
            raise err("levels", f"level(s) {', '.join(missing)} are not segmented in "
                      f"{p['masks']} (levels: {', '.join(segmented) or 'none'})")
        cut_any = set(_cut_levels(p, segmented))
        cut = [n for n in names if n in cut_any]
        if cut:
            whole = [n for n in segmented if n not in cut_any]
            raise err("levels", f"level(s) {', '.join(cut)} reach the edge of the image: the "
                      f"scan holds only part of them; choose levels it holds whole "
                      f"({', '.join(whole) or 'none'})")
    if p["anatomy"] == "ssm":
        from ..meshes.ssm import SSM_LEVELS, data_folder, has_data

        outside = [n for n in names if n not in SSM_LEVELS]
        if outside:
            raise err("levels", f"the shape model (anatomy = 'ssm') has levels "
                      f"{', '.join(SSM_LEVELS)} only, not {', '.join(outside)}")
        if not has_data(names):
            raise err("anatomy", f"the lumbar shape model's surfaces are not in "
                      f"{data_folder()}: set FEM_SSM_DATA to the folder holding L2.ply..L5.ply")
    if p["ligaments"] == "yes" and p["mesh"] != "voxel":
        raise err("ligaments", f"ligaments = 'yes' is built on voxel segments only (mesh = "
                  f"'voxel'), not mesh = {p['mesh']!r}: use 'auto' or 'no'")
    for key in ("fracture_level", "treated_level"):
        if p[key] and p[key] not in names:
            raise err(key, f"level {p[key]!r} is not in levels {p['levels']!r} "
                      f"({', '.join(names)})")
    if p["procedure"] in ("fractured", "pkp") and not p["fracture_level"]:
        raise err("procedure", f"procedure {p['procedure']!r} needs a fracture_level")
    if p["procedure"] == "pvp" and not (p["fracture_level"] or p["treated_level"]):
        raise err("procedure", "pvp needs a fracture_level or a treated_level")
    if p["strength"] == "pushover":
        chosen = strength_levels(p)
        if not chosen:
            raise err("strength_levels", "strength_levels = 'treated' needs a treated_level or "
                      "a fracture_level: name the levels (e.g. ['L2']) or use 'all'")
        outside = [n for n in chosen if n not in names]
        if outside:
            raise err("strength_levels", f"level(s) {', '.join(outside)} are not in levels "
                      f"{p['levels']!r} ({', '.join(names)})")
    if p["anatomy"] != "ct" and p["density_error"]:
        lim = LIMITS["bmd"]
        if not lim.contains(p["bmd"] + p["density_error"]):
            raise err("density_error", f"bmd + density_error = {p['bmd']} + "
                      f"{p['density_error']} must lie in {lim.describe()}")
    if p["procedure"] == "pkp" and p["balloon_ml"] > p["cement_volume_ml"]:
        raise err("balloon_ml", f"the balloon ({p['balloon_ml']} mL) would not be filled by "
                  f"{p['cement_volume_ml']} mL of cement")
