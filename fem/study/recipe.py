"""The "augmentation" recipe: from a run's parameters to a solved model and its metrics.

A run builds the segment (bone quality from the trabecular BMD): parametric
(:func:`fem.meshes.vertebra.segment_model`, or ``segment_model_tet10`` with ``mesh = "tet10"``)
or the mean lumbar shape model (``anatomy = "ssm"``: :func:`fem.meshes.ssm.ssm_segment_model` or
:func:`fem.meshes.ssm_gmsh.ssm_segment_model_tet10`), fractures it
(:func:`fem.meshes.pathology.compress`) unless the state is intact, augments it
(:func:`fem.augment.pvp` / :func:`fem.augment.pkp`), applies the load case, solves it (with
``disc = "fibres"`` or ``"fibres_undrained"``: :func:`fem.fibres.solve_disc`, small strain) and
returns the per-level metrics (:func:`fem.metrics.level_metrics`). It runs in a worker process
or on a Dask worker; it writes nothing but its own VTU file (atomically), and
returns plain data, so the study process can record it in one transaction.
"""

from __future__ import annotations

import math
import threading
import time
import warnings
from pathlib import Path

from ..errors import MeshError
from ..io.record import write_model_record


def recorded(p: dict) -> dict:
    """A run's parameters, those it lacks at the values it ran with: a run recorded before some
    parameters existed ran with the values :data:`~fem.study.spec.ADDED_LATER` keeps (the
    parametric voxel segment, no sampling inputs, the plate's load, the pushover run on with
    elastic endplates and read at a fall of a tenth)."""
    from .spec import ADDED_LATER

    return {**ADDED_LATER, **p}


def build_model(p: dict):
    """The loaded model of one run (parameters as completed by :meth:`StudySpec.expand`)."""
    from .. import augment
    from ..meshes import loadcases, pathology
    from ..meshes.bone import BoneQuality, get_law
    from ..meshes.vertebra import segment_model
    from .spec import fractures

    p = recorded(p)
    law = p["density_law"]
    mats = BoneQuality(bmd=p["bmd"] + (0.0 if p["anatomy"] == "ct" else p["density_error"]),
                       law=law)
    anatomy, mesh = p["anatomy"], p["mesh"]
    if anatomy == "ct":
        m = _patient(p, mats)
    elif anatomy == "ssm" and mesh == "tet10":
        from ..meshes.ssm_gmsh import ssm_segment_model_tet10

        m = ssm_segment_model_tet10(p["levels"], mesh_size=p["mesh_size"], materials=mats)
    elif anatomy == "ssm":
        from ..meshes.ssm import ssm_segment_model

        m = ssm_segment_model(p["levels"], voxel_size=p["voxel_size"], materials=mats,
                              ligaments=p["ligaments"] == "yes")
    elif mesh == "tet10":
        from ..meshes.vertebra_gmsh import segment_model_tet10

        m = segment_model_tet10(p["levels"], mesh_size=p["mesh_size"], materials=mats)
    else:
        m = segment_model(p["levels"], voxel_size=p["voxel_size"], materials=mats,
                          ligaments=p["ligaments"] == "yes")
    proc = p["procedure"]
    if fractures(p):
        mass = {"conserve_mass": False} if p["fracture_compaction"] == "none" else {
            "conserve_mass": True, "compaction": p["fracture_compaction"],
            "envelope": p["crushed_envelope"],
            "density_exponent": get_law(law).c}  # the model's own density law
        try:
            m = pathology.compress(m, p["fracture_level"], p["fracture_shape"],
                                   grade=p["fracture_grade"], burst=p["burst"],
                                   cleft=p["cleft"], damage_factor=p["fracture_damage"],
                                   carry_anatomy=p["fracture_anatomy"] == "carried", **mass)
        except pathology.CleftError as exc:
            # its remedies are compress's arguments, which a spec does not set: say the spec's
            size = (f"mesh_size {p['mesh_size']:g}" if mesh == "tet10"
                    else f"voxel_size {p['voxel_size']:g}")
            raise MeshError(f"{exc}. In a study spec: cleft = true needs elements fine enough "
                            f"to resolve the damaged band under the endplate; with {size} mm "
                            "none lies close enough, so use a finer mesh (3 mm or less) or "
                            "cleft = false") from None
        if p["endplate_breach_mm"]:
            m = pathology.open_breach(m, p["fracture_level"], p["endplate_breach_side"],
                                      p["endplate_breach_mm"],
                                      position=p["endplate_breach_position"])
    level = p["treated_level"] or p["fracture_level"]
    if p["basivertebral_mm"] and level:
        m = pathology.open_breach(m, level, "basivertebral", p["basivertebral_mm"])
    needle = {"approach": p["approach"], "cement": cement_of(p), "seed": p["seed"], "law": law,
              "heterogeneity": p["heterogeneity"],
              "permeability_anisotropy": p["permeability_anisotropy"],
              "crushed_permeability": p["crushed_permeability"],
              "tip_offset": (p["tip_offset_lateral"], 0.0, p["tip_offset_axial"])}
    if proc == "pvp":
        m = augment.pvp(m, level, p["cement_volume_ml"], tip_depth=p["tip_depth"], **needle)
    elif proc == "pkp":
        m = augment.pkp(m, level, p["cement_volume_ml"], balloon_ml=p["balloon_ml"] or None,
                        height_restoration=p["height_restoration"], **needle)
    m = loadcases.loaded(m, p["load_case"], scale=p["load_scale"], line=p["load_line"])
    return m


def cement_of(p: dict):
    """The run's cement: its name, or the named cement with ``cement_modulus`` (MPa) where that
    is given (> 0); ``p`` completed as :func:`build_model` completes it."""
    from ..augment import get_cement

    e = p["cement_modulus"]
    if not e:
        return p["cement"]
    c = get_cement(p["cement"])
    return {"name": f"{c.name} (E {e:g} MPa)", "E": float(e), "nu": c.nu,
            "viscosity": c.viscosity, "source": f"{c.name} with the spec's cement_modulus",
            "base": c.name}


def _patient(p: dict, mats):
    """The patient segment of ``p["ct"]`` and ``p["masks"]`` (fem.meshes.patient): trabecular
    moduli from the CT's calibrated density, the other parts from the bone quality ``mats``."""
    from ..meshes import ct
    from ..meshes.patient import patient_segment_model

    image = (ct.read_dicom_series(p["ct"]) if Path(p["ct"]).is_dir()
             else ct.read_nifti(p["ct"]))
    cal = ct.Calibration(p["ct_slope"], p["ct_intercept"] + p["density_error"],
                         source="study spec")
    return patient_segment_model(image, p["masks"], cal, levels=p["levels"],
                                 voxel_size=p["voxel_size"], materials=mats, law=mats.law,
                                 ligaments=p["ligaments"] == "yes")


def execute(p: dict, vtu: str | None = None, *, progress: bool = False) -> dict:
    """Run one study run; returns {"rows": metrics rows, "timings", "backend", "solver",
    "iterations", "n_dof"}. ``vtu``: where to write the fields (atomically). Pins this
    process's BLAS to one thread (so results are identical on every executor)."""
    import fem

    from .. import metrics
    from ..fibres import annuli
    from ..ligaments import has_ligaments, solve_solid_discs

    t0 = time.perf_counter()
    _prepare(p["backend"])
    model = build_model(p)
    t1 = time.perf_counter()
    disc = recorded(p)["disc"]
    if disc != "isotropic" and not annuli(model):
        disc = "isotropic"  # a single level: no disc for the fibres, the plain solve
    bar = _solve_bar(model) if progress else None
    tick = None if bar is None else (lambda x: bar.update())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # B-bar hex8 in the nucleus, said once
        if disc == "isotropic":  # the solid annulus (and the ligaments' fibres, if any)
            result = solve_solid_discs(model, backend=p["backend"], solver=p["solver"],
                                       callback=tick)
        else:  # the exact secant stiffness in every run, so that runs compare like with like
            result = fem.solve_disc(model, backend=p["backend"], solver=p["solver"],
                                    coupling=True, callback=tick, drainage="undrained"
                                    if disc == "fibres_undrained" else "drained")
    if bar is not None:
        bar.close()
    t2 = time.perf_counter()
    with warnings.catch_warnings():  # the study's log says so, once per run (execute.py)
        warnings.simplefilter("ignore", metrics.SmallStrainWarning)
        table = metrics.level_metrics(result)
    if vtu is not None:
        # the model record first: a run's VTU on disk has its record beside it. The record is
        # of the model the VTU holds: a fibre disc's run writes its converged secant model,
        # whose annulus moduli differ from the built model's
        write_model_record(result.model, record_path(vtu))
        result.write(Path(vtu))
    t3 = time.perf_counter()
    timings = {"build": t1 - t0, "solve": t2 - t1, "output": t3 - t2}
    if p.get("strength", "pistoia") == "pushover":
        pushover_levels(pushover_model(model, result), table, p,
                        None if vtu is None else _curve_path(vtu), progress=progress)
        timings["pushover"] = time.perf_counter() - t3
    timings["total"] = time.perf_counter() - t0
    rows = [{k: (None if isinstance(v, float) and math.isnan(v) else
                 v.item() if hasattr(v, "item") else v) for k, v in r.items()}
            for r in table.to_dict(orient="records")]
    return {"rows": rows, "timings": timings,
            "backend": result.backend.name, "solver": result.info.solver,
            "iterations": int(result.info.iterations), "n_dof": int(model.n_dof),
            "ligaments": has_ligaments(model)}


def pushover_model(model, result):
    """The model a run's pushover starts from: the loaded model it solved, or where fibres were
    solved (a fibre disc, ligaments) its converged secant model (``result.model`` of
    :func:`fem.fibres.solve_fibres`: the discs and ligaments held at their state under the
    run's load, the orthotropic part of it)."""
    return model if getattr(result, "fibres", None) is None else result.model


def pushover_stops(p: dict, height: float | None = None) -> dict:
    """The stop keywords of a run's pushovers (:func:`fem.solve_nonlinear`), by its
    ``pushover_end``. ``"first_failure"``: at the level's first failure, where its curve first
    stops rising: its force ``first_failure_drop`` (0.02 by default,
    :data:`~fem.nonlinear_result.FIRST_PEAK_DROP`) below its running maximum (``stop_ratio``
    1 - drop), or a plateau, its chord over the last first-yield
    displacement flatter than :data:`~fem.nonlinear.LIMIT_TANGENT` of the initial stiffness
    (``stop_plateau``), or, with the level's ``height`` (mm), its offset yield: the first step
    past the line of its initial stiffness shifted by ``first_failure_offset`` times the height
    (``stop_offset``; :func:`failure_offset`). The strength is the first of the fall (the
    running maximum there) and the offset yield (the force at the crossing). ``"full"``:
    :func:`fem.solve_nonlinear`'s default, on until the force falls to
    :data:`~fem.nonlinear.STOP_RATIO` of its peak, or the cap; the strength is the curve's
    largest force.

    Why the first failure by default. A cadaver test reads the first failure of its curve as
    the failure load. In a segment, the level's curve can fail and then rise again: the
    canonical L2 under standing first fails at about 1.1 kN, drops, and carries 1.9-2.9 kN at
    the pushover's displacement or step cap (30 times the displacement at first yield, or 60
    steps), a lower bound that moves with the cap, and past where small strain holds
    (docs/augmentation.md). Under flexion the curves flatten (a plateau) and then rise by a
    fifth to the cap. Stopping at the failure also spares the steps after it, half or more of
    such a curve's. Why the plateau too: the canonical fractured L2 at 1.5 mm does not drop but
    holds 1.08-1.11 kN over 0.16-0.30 mm, where at 2 mm it dropped at 1.06 kN. Why a fall of
    2 % and not more: the first fall of such a curve is 4-10 % on different inputs, and a
    larger threshold reads the later rise where the fall was smaller. Why the offset yield: a
    fractured or cemented level under the nucleus can bend over without falling and rise on to
    a plateau millimetres later, which read a fractured T8 70 % stronger than intact; at its
    offset yield it is 2 % weaker (docs/nonlinear.md, "The first failure")."""
    from ..nonlinear import STOP_RATIO
    from ..strength import first_failure_stops

    end = recorded(p)["pushover_end"]
    if end == "first_failure":
        offset = failure_offset(p)
        return first_failure_stops(failure_drop(p),
                                   None if offset is None or height is None else offset * height)
    if end == "full":
        return {"stop_ratio": STOP_RATIO}
    raise ValueError(f"pushover_end must be 'first_failure' or 'full', got {end!r}")


def failure_drop(p: dict) -> float:
    """The fall that marks a run's first failure (``first_failure_drop``; :func:`recorded`)."""
    return float(recorded(p)["first_failure_drop"])


def failure_offset(p: dict) -> float | None:
    """The offset yield that also marks a run's first failure, a share of the level's height
    (``first_failure_offset``; :func:`recorded`): None where it is 0 (the fall alone) or the
    run reads the full curve (``pushover_end = "full"``)."""
    q = recorded(p)
    offset = float(q["first_failure_offset"])
    return offset if offset > 0.0 and q["pushover_end"] == "first_failure" else None


def pushover_levels(model, table, p: dict, curve_csv: str | None = None, *,
                    progress: bool = False):
    """Fill ``table``'s pushover columns (:data:`fem.metrics.PUSHOVER_COLUMNS`) for the levels of
    ``strength_levels``: one :func:`fem.strength.pushover` each, in which only that level can
    fail, on the loaded model of the linear solve (which it leaves as it was), stopped where
    ``pushover_end`` says (:func:`pushover_stops`). ``curve_csv``:
    where to write the curves (level, step, displacement_mm, force_n, ...), atomically.
    ``progress``: a bar of each pushover's converged steps and the force reached (a pushover is
    most of a run's time: tens of linear solves)."""
    import pandas as pd

    from .. import metrics, strength
    from ..anatomy import level_height
    from ..io.atomic import atomic_path
    from .spec import strength_levels

    curves = []
    # one law for every level's pushover (each selects its level from it): the endplates'
    # normals are found once
    law = strength.bone_damage_law(model, endplates=recorded(p)["endplate_failure"])
    for level in strength_levels(p):
        bar = _PushoverBar(level) if progress else None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            try:
                res = strength.pushover(model, level=level, backend=p["backend"], law=law,
                                        **pushover_stops(p, level_height(model, level)),
                                        progress=None if bar is None else bar.step)
            finally:
                if bar is not None:
                    bar.close()
        metrics.add_pushover(table, level, res, drop=failure_drop(p), offset=failure_offset(p))
        curves.append(res.curve_table().assign(level=level))
    if curve_csv is not None and curves:
        df = pd.concat(curves, ignore_index=True)
        with atomic_path(curve_csv) as tmp:
            df[["level"] + [c for c in df.columns if c != "level"]].to_csv(tmp, index=False)


def record_path(vtu) -> Path:
    """The model record (:mod:`fem.io.record`) beside a run's VTU: ``<id>.model.json``."""
    v = Path(vtu)
    return v.with_name(v.stem + ".model.json")


def _curve_path(vtu: str) -> str:
    v = Path(vtu)
    return str(v.with_name(v.stem + "_curve.csv"))


_PREPARE = threading.Lock()


def _prepare(backend: str):
    """Ready this (worker) process for a run, once per run, one thread at a time.

    A Dask worker with several threads runs several runs at once: the backend is resolved
    (``import cupy`` for "auto") once, under a lock, before any model is built, so that no run
    meets cupy half-imported by another (``fem.kernels.backend.array_module`` tolerates that
    now, other cupy users might not). BLAS is pinned to one
    thread, for good: the sums inside a dot product depend on the thread count, which differs
    between executors (Dask's nanny sets 1, a local process inherits the machine's), and so would
    the results in their last digits (4e-12 relative on an AMG-CG run); one BLAS thread was
    also 1.2-5x the faster on 2 busy cores (the solver's own threads, ``FEM_THREADS``, split the
    sparse products). Not a context manager: a restore by one run would unpin another."""
    import scipy.linalg  # noqa: F401 (load every BLAS before pinning it)
    import scipy.sparse.linalg  # noqa: F401
    from threadpoolctl import threadpool_limits

    from ..kernels.backend import get_backend

    with _PREPARE:
        try:
            get_backend(backend)
        except Exception:  # noqa: BLE001 (fem.solve raises it again, as the run's error)
            pass
        threadpool_limits(limits=1, user_api="blas")


class _PushoverBar:
    """The bar of a pushover's converged steps, with the force reached (under the runs bar)."""

    def __init__(self, level: str):
        from tqdm import tqdm

        # every step drawn: a step is one or more linear solves of the model, never a flood
        self.bar = tqdm(desc=f"  pushover {level}", unit=" step", leave=False, position=1,
                        mininterval=0, miniters=1)

    def step(self, st):
        self.bar.set_postfix_str(f"{st.force:.0f} N", refresh=False)
        self.bar.update()

    def close(self):
        self.bar.close()


def _solve_bar(model):
    from tqdm import tqdm

    # on the line below the runs bar, which the study process draws
    return tqdm(desc=f"  CG ({model.n_dof} DOF)", unit=" it", leave=False, position=1)
