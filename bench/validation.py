"""Replicas of the experiments the model is checked against, beside the published numbers
(issue 16, deliverable 6; the numbers and their sources: ``fem.meshes.experiments``, the
protocols: docs/validation.md).

    python bench/validation.py [--voxel 1.0] [--bmd 70] [--no-pushover] [--no-fibres]
                               [--finite] [--ssm] [--molloy] [--load-shift] [--bending]

Rows:

* Day et al. 2020: L1-L5 bodies cut at the pedicles, potted in PMMA end-caps with frictionless
  contact, upper cap on a ball, stiffness = platen force / platen travel
  (``fem.meshes.rigs``), each level at trabecular BMD ``--bmd`` (the donors' densities are not
  published); the model's mean over L1-L5 against the 14 crosshead stiffnesses. Below the table,
  per level: the series stiffness (machine, fixtures, seating) that would bring the model's
  stiffness down to the measured mean, 1 / (1/k_measured - 1/k_model);
* the Bonelab spine FE benchmark, lumbar vertebrae of 60-80 mg/cm^3: its protocol (PMMA disks of
  2 500 MPa tied to the endplates, fixed platen, 0.2 mm) on the L1 body at ``--bmd``; linear
  stiffness, and the peak of a damage pushover of L1 in the same rig (``--no-pushover`` skips
  it);
* Wilke et al. 1999 and Nachemson 1960: an L4-L5 segment under the 500 N standing case (rigid
  plate on L4, L5 fixed): the nucleus pressure, and its ratio to the load over the disc's
  cross-section (columns of disc voxels x voxel area);
* the motion segment's axial stiffness (500 N over the travel of platens held parallel) and
  Holmes et al. 1993's endplate displacement (the caudal endplate, L5 superior, at 1.6 kN
  between parallel platens) on the same segment;
* the disc rows twice: the default disc (isotropic annulus) and the fibre-reinforced annulus of
  ``fem.solve_disc`` (tension-only stiffening fibres, ``fem.fibres``; ``--no-fibres`` skips it);
  with ``--ssm`` again on real anatomy, the L4-L5 of the lumbar shape model's mean
  (``fem.meshes.ssm``): the default disc, and the fibre disc with the exact anisotropic secant
  (``coupling=True``: the orthotropic one still stalls on that disc at 1 mm) drained and
  undrained, with ``--finite`` also the undrained disc in large deformation, and the Wegrzyn
  rows again on the shape model's L3;
* Wegrzyn et al. 2011: the L3 body before and after the fracture model's 25 % crush, standing on
  a rigid plate: the stiffness lost (a prediction: the damage factor is measured) and the
  failure load lost (peaks of damage pushovers of L3; ``--no-pushover`` skips it) and, with the
  pushovers, the deformation the crushed body recovers unloaded: its elastic springback (its
  residual strength over its stiffness) plus what its trabecular core gives back
  (``fem.strength.crush_recovery``: the recoverable share of crushed vertebral trabecular bone
  from Fyhrie & Schaffler 1994, a lower bound, the shell keeping its collapse), over the crush.

* with ``--load-shift``, Baroud et al. 2003's pillar (``bench/load_shift.py``): the rise of the
  L4-L5 nucleus pressure when L5's trabecular bone under the nucleus is cement composite from
  endplate to endplate, the segment between parallel platens at 500 N, the studies' fibre disc;

* with ``--bending``, Niosi et al. 2006's flexibility tests (``bench/bending.py``): L3-L4 with
  its posterior ligaments (``fem.ligaments``) under a pure 7.5 N·m in flexion and extension and
  flexion with 600 N, the rotation across the disc, both disc models;

* with ``--molloy``, Molloy, Mathis & Belkoff 2003: the crushed L3 of the Wegrzyn rows treated
  by bipedicular PVP with 2, 4, 6 and 8 mL of PMMA, each state's stiffness and strength over
  the intact body's, and the cement fill (of the body's volume) at which each is restored
  (measured on average: strength 16.2 %, stiffness 29.8 %; :func:`molloy`).

A "yes"/"no" says whether the model lies within mean +- 1 SD and within the published range;
"n/a" where none was published.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import time
import warnings

LEVELS = ("L1", "L2", "L3", "L4", "L5")


def _materials(bmd):
    from fem.meshes.bone import BoneQuality

    return BoneQuality(bmd=bmd)


def day_rig(level: str, h: float, bmd: float) -> float:
    """Machine stiffness (N/mm) of Day et al.'s protocol on a parametric body."""
    import fem
    from fem.meshes import rigs

    m = rigs.potted_body(level, voxel_size=h, materials=_materials(bmd), contact="frictionless")
    rigs.compression_test(m, 0.2, platen="ball")
    return rigs.machine_stiffness(fem.solve(m, rtol=1e-8))


def spinefe_rig(level: str, h: float, bmd: float, pushover: bool):
    """(linear stiffness N/mm, pushover peak N or NaN) of the benchmark's protocol."""
    import fem
    from fem.meshes import rigs
    from fem.strength import pushover as push

    def rig():
        m = rigs.potted_body(level, voxel_size=h, materials=_materials(bmd), contact="tied",
                             cap_material=(2500.0, 0.3))
        rigs.compression_test(m, 0.2, platen="fixed")
        return m

    k = rigs.machine_stiffness(fem.solve(rig(), rtol=1e-8))
    peak = push(rig(), level=level, control="displacement").peak_load if pushover else math.nan
    return k, peak


def disc_segment(h: float, bmd: float, force: float = 500.0, platen: bool = False,
                 anatomy: str = "parametric", posterior: bool = True):
    """The L4-L5 segment (posterior elements included; parametric with ``posterior=False``:
    cut) at ``bmd``, L5 fixed, the standing case scaled to ``force`` N on a rigid plate on L4:
    free (the standing replica) or, with ``platen``, held parallel and laterally (a testing
    machine's platens). ``anatomy``: "parametric" (``fem.meshes.vertebra``) or "ssm" (the mean
    shape of ``fem.meshes.ssm``, real anatomy: its own disc heights and cross-sections)."""
    from fem.meshes import loadcases, ssm
    from fem.meshes.vertebra import segment_model

    if anatomy == "ssm":
        m = ssm.ssm_segment_model("L4-L5", voxel_size=h, materials=_materials(bmd))
    else:
        m = segment_model("L4-L5", voxel_size=h, materials=_materials(bmd), posterior=posterior)
    m = loadcases.loaded(m, "standing", scale=force / 500.0)
    return loadcases.between_platens(m) if platen else m


#: load factors of the ramp to 1.6 kN (Holmes et al. 1993's load) in large deformation: 100 N
#: steps to 500 N (the standing load, a step end), then 200 N steps
RAMP = (0.0625, 0.125, 0.1875, 0.25, 0.3125, 0.4375, 0.5625, 0.6875, 0.8125, 0.9375, 1.0)


def disc_area(m, h: float) -> float:
    """The L4-L5 disc's cross-section (mm^2) of a voxel model at voxel ``h`` mm: its columns of
    voxels x the voxel area."""
    import numpy as np

    disc = np.concatenate([m.regions["L4-L5/annulus"], m.regions["L4-L5/nucleus"]])
    ijk = m.metadata["voxel_labels"]["ijk"][disc]
    return len({(i, j) for i, j, _ in ijk.tolist()}) * h * h


def force_travel(result, force: float) -> tuple[list, list]:
    """(forces N, plate travels mm) of a loaded segment's solve, from the origin: each
    increment of a large-deformation ramp (``result.history``, cut-backs included) at its share
    of ``force``, or the one point of a linear solve."""
    steps = getattr(getattr(result, "history", None), "steps", None)
    if not steps:
        return [0.0, force], [0.0, -float(result.plate_motion("load:standing")[2])]
    return ([0.0] + [force * s.load_factor for s in steps],
            [0.0] + [-float(s.result.plate_motion("load:standing")[2]) for s in steps])


def disc_rows(h: float, bmd: float, fibres: bool, kinematics: str = "small",
              drainage: str = "drained", anatomy: str = "parametric",
              coupling: bool = False) -> dict:
    """The disc's replicas on the L4-L5 segment (``anatomy``: ``disc_segment``'s), with the
    default disc or (``fibres``) the fibre-reinforced annulus of ``fem.solve_disc``
    (``kinematics`` "small" or "finite": large deformation; ``drainage`` "drained" or
    "undrained"; ``coupling``: the exact anisotropic secant of small strain):

    * ``pressure`` (MPa) and ``ratio`` (pressure / (load / disc area); the area: columns of disc
      voxels x voxel area) under the 500 N standing case, free plate (Wilke 1999, Nachemson);
    * ``stiffness`` (N/mm): the steepest slope of force over platen travel on a ramp to 1.6 kN,
      platens held parallel (the stiffness a testing machine reports, ``rigs``); in small strain
      1.6 kN over the travel (the response is linear);
    * ``bulge`` (mm): the caudal endplate's (L5 superior) deflection at the end of that ramp
      (Holmes et al. 1993's load)."""

    import fem
    from fem import metrics

    def solve(m, increments):
        if not fibres:
            return fem.solve(m, rtol=1e-8)
        if kinematics == "finite":
            return fem.solve_disc(m, kinematics="finite", drainage=drainage,
                                  increments=increments)
        return fem.solve_disc(m, drainage=drainage, coupling=coupling)

    m = disc_segment(h, bmd, anatomy=anatomy)
    rows = metrics.level_metrics(solve(m, 5)).set_index("level")
    area = disc_area(m, h)
    p = float(rows.loc["L4", "disc_pressure_mpa"])
    r = solve(disc_segment(h, bmd, 1600.0, platen=True, anatomy=anatomy), RAMP)
    f, w = force_travel(r, 1600.0)  # a linear solve: one slope, 1.6 kN over the travel
    k = max((f[i + 1] - f[i]) / (w[i + 1] - w[i]) for i in range(len(w) - 1))
    bulge = float(metrics.level_metrics(r).set_index("level").loc["L5",
                                                                  "endplate_bulge_superior_mm"])
    return {"pressure": p, "ratio": p / (500.0 / area), "stiffness": k, "bulge": bulge}


def bare_l3(model, pushover: bool = True) -> tuple[float, float, float]:
    """(stiffness N/mm, strength N, Pistoia strength N) of an L3 body standing on its base under
    a rigid plate (the Wegrzyn and Molloy replicas): the standing 500 N over the plate's travel,
    the peak of a damage pushover of L3 (NaN without ``pushover``) and the linear Pistoia
    estimate of the same solve (``fem.metrics``)."""
    import fem
    from fem import metrics
    from fem.meshes import loadcases
    from fem.strength import pushover as push

    model = model.copy()
    model.conditions = []
    model = loadcases.loaded(model, "standing")
    res = fem.solve(model, rtol=1e-8)
    k = 500.0 / -float(res.plate_motion("load:standing")[2])
    pistoia = float(metrics.level_metrics(res).set_index("level").loc["L3",
                                                                      "strength_pistoia_n"])
    return k, (push(model, level="L3").peak_load if pushover else math.nan), pistoia


def wegrzyn(h: float, bmd: float, pushover: bool, anatomy: str = "parametric") -> dict:
    """{variant: (stiffness lost %, failure load lost %, deformation recovered %, Pistoia
    strength lost %)} of the
    parametric L3 body (posterior elements cut) after the fracture model's 25 % crush
    (``pathology.compress``), between a fixed base and a rigid plate under the standing load; the
    failure load is the peak of a damage pushover of L3 (NaN without ``pushover``). Variants:
    "default" (the crushed bone keeps its mass, compacted into the damaged band, whose modulus
    ratio is the measured ``CRUSHED_MODULUS_RATIO``), "mass lost" (``conserve_mass=False``, with
    the measured damage and with the factor 0.2 calibrated on this experiment's stiffness loss
    before 2026-12-06), "mass kept, uniform" (every element keeps its own mass) and "mass kept,
    original envelope" (the band's strength envelope that of the bone it was crushed from,
    ``compress``'s ``envelope="original"``).

    The recovery (the model imposes the crushed geometry and has no time-dependent term) is the
    crushed body's elastic springback from its residual strength, F_crushed / k_crushed (its
    pushover peak over its stiffness), plus what its trabecular core gives back of the strain
    the crush imposed (``fem.strength.crush_recovery``: Fyhrie & Schaffler 1994's lower bound,
    60 %, with the shell keeping its collapse), both over the crush (the superior endplate's
    mean descent relative to the inferior one); without the pushover, the core's term alone.

    ``anatomy`` "ssm": the L3 of the lumbar shape model's mean (``fem.meshes.ssm``, real
    anatomy) instead of the parametric body; its posterior elements stay (the shape model
    does not cut them), unloaded, as the plate sits on the body's superior endplate."""
    from fem.meshes.pathology import compress
    from fem.meshes.vertebra import vertebra_model
    from fem.strength import crush_recovery

    if anatomy == "ssm":
        from fem.meshes import ssm

        m = ssm.ssm_segment_model("L3", voxel_size=h, materials=_materials(bmd))
    else:
        m = vertebra_model("L3", voxel_size=h, materials=_materials(bmd), posterior=False)
    k0, s0, p0 = bare_l3(m, pushover)
    out = {}
    for label, opts in (("default", {}),
                        ("mass lost, measured damage", {"conserve_mass": False}),
                        ("mass lost, damage 0.2 (before 2026-12-06)",
                         {"conserve_mass": False, "damage_factor": 0.2}),
                        ("mass kept, uniform", {"compaction": "uniform"}),
                        ("mass kept, original envelope", {"envelope": "original"})):
        crushed = compress(m, "L3", "crush", height_loss=0.25, **opts)
        k1, s1, p1 = bare_l3(crushed, pushover)
        core = crush_recovery(crushed, "L3")
        springback = s1 / k1 if pushover else 0.0
        out[label] = (100.0 * (1.0 - k1 / k0), 100.0 * (1.0 - s1 / s0),
                      100.0 * (springback + core.recovered_mm) / core.crush_mm,
                      100.0 * (1.0 - p1 / p0))
    return out


#: Molloy et al. 2003's cement volumes (mL), bipedicular
MOLLOY_VOLUMES = (2.0, 4.0, 6.0, 8.0)


def molloy(h: float, bmd: float, anisotropy: float | None = None,
           envelope: str = "compacted", permeability: str = "compacted") -> dict:
    """Molloy, Mathis & Belkoff 2003's protocol on the parametric L3 body (posterior elements
    cut): intact, then the Wegrzyn replica's 25 % crush (the fracture model's defaults; the
    height their fractures lost is not in the abstract, an ASSUMPTION), then bipedicular PVP
    with 2, 4, 6 and 8 mL of PMMA (``fem.augment.pvp``, the study's defaults). Each state's
    stiffness (standing load on a rigid plate, 500 N over its travel) and strength (the peak of
    a damage pushover of L3) as a ratio to the intact body's, and the fill (cement in the body
    over the body's volume) at which each ratio first reaches 1, linear between the volumes
    (NaN if it does not by the largest volume the body takes). ``anisotropy``: the bone's axial
    over transverse permeability (default ``fem.augment.PERMEABILITY_ANISOTROPY``).
    ``envelope``: the crushed band's strength envelope (``pathology.compress``'s);
    ``permeability``: how cement flows through it (``augment.pvp``'s ``crushed_permeability``).
    Returns
    {"rows": [(volume mL, fill, stiffness ratio, strength ratio)], "contact": [(superior,
    inferior)] (the share of each endplate the cement touches,
    ``fem.metrics.cement_endplate_contact``, one per row), "strength_fill": %,
    "stiffness_fill": %}."""
    from fem import augment
    from fem.errors import MeshError
    from fem.meshes.pathology import compress
    from fem.meshes.vertebra import vertebra_model
    from fem.metrics import cement_endplate_contact

    m = vertebra_model("L3", voxel_size=h, materials=_materials(bmd), posterior=False)
    a = augment.PERMEABILITY_ANISOTROPY if anisotropy is None else anisotropy
    k0, s0, _ = bare_l3(m)
    crushed = compress(m, "L3", "crush", height_loss=0.25, envelope=envelope)
    k, s, _ = bare_l3(crushed)
    rows = [(0.0, 0.0, k / k0, s / s0)]
    contact = [(0.0, 0.0)]
    for volume in MOLLOY_VOLUMES:
        try:
            treated = augment.pvp(crushed, "L3", volume, approach="bipedicular",
                                  permeability_anisotropy=a, crushed_permeability=permeability)
        except MeshError:  # the body takes no more from these needle tips
            break
        fill = treated.metadata["augmentations"][-1].fill_fraction
        k, s, _ = bare_l3(treated)
        rows.append((volume, fill, k / k0, s / s0))
        touch = cement_endplate_contact(treated, "L3")
        contact.append((touch["superior"], touch["inferior"]))
    return {"rows": rows, "contact": contact, "strength_fill": 100.0 * restoring_fill(rows, 3),
            "stiffness_fill": 100.0 * restoring_fill(rows, 2)}


def restoring_fill(rows, column: int) -> float:
    """The fill at which ``rows``' ratio in ``column`` first reaches 1, linear between rows
    (rows: (volume, fill, stiffness ratio, strength ratio), by rising fill); NaN if never."""
    for a, b in zip(rows, rows[1:]):
        if a[column] < 1.0 <= b[column]:
            return a[1] + (1.0 - a[column]) * (b[1] - a[1]) / (b[column] - a[column])
    return 0.0 if rows and rows[0][column] >= 1.0 else math.nan


def _yes(flag) -> str:
    return "n/a" if flag is None else ("yes" if flag else "no")


def main(argv=None) -> int:
    from fem.augment import CRUSHED_PERMEABILITIES
    from fem.meshes import experiments as ex
    from fem.meshes.pathology import ENVELOPES

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--voxel", type=float, default=1.0, help="voxel size (mm), default 1")
    ap.add_argument("--bmd", type=float, default=70.0,
                    help="trabecular QCT BMD (mg/cm^3) of the bodies, default 70")
    ap.add_argument("--no-pushover", action="store_true", help="skip the nonlinear failure row")
    ap.add_argument("--no-fibres", action="store_true",
                    help="skip the fibre-reinforced disc's rows (fem.solve_disc)")
    ap.add_argument("--finite", action="store_true",
                    help="also the fibre disc in large deformation (solve_disc(kinematics="
                         "'finite')), drained and undrained: several minutes at 3 mm, much "
                         "longer at 2 mm")
    ap.add_argument("--disc-vs-caps", action="store_true",
                    help="also the same L2 potted in PMMA caps and through its discs in the "
                         "canonical T12-L4 (bench/disc_vs_caps.py; at 2 mm whatever --voxel "
                         "says: the segment at 1 mm would take long), against Maquer et al.'s "
                         "FE ratio")
    ap.add_argument("--load-shift", action="store_true",
                    help="also Baroud et al. 2003's pillar: the L4-L5 nucleus pressure rise when "
                         "L5 under it is cemented from endplate to endplate, the studies' fibre "
                         "disc (bench/load_shift.py, which also runs the other disc models)")
    ap.add_argument("--bending", action="store_true",
                    help="also Niosi et al. 2006's flexibility tests: L3-L4 with its posterior "
                         "ligaments under 7.5 N·m, both disc models (bench/bending.py, which "
                         "also runs the segment without ligaments)")
    ap.add_argument("--molloy", action="store_true",
                    help="also Molloy et al. 2003's fills: the crushed L3 with 2-8 mL of "
                         "bipedicular PMMA, the fill that restores its strength and its "
                         "stiffness (six pushovers: minutes at 2 mm, long at 1 mm)")
    ap.add_argument("--permeability-anisotropy", type=float, default=None, metavar="A",
                    help="with --molloy: the bone's axial over transverse permeability "
                         "(default fem.augment.PERMEABILITY_ANISOTROPY, 2.05, Nauman et al. "
                         "1999; 1.29 is Baroud et al. 2004's SI over AP cores, 1 isotropic)")
    ap.add_argument("--crushed-envelope", default="compacted", choices=ENVELOPES,
                    help="with --molloy: the crushed band's strength envelope "
                         "(pathology.compress's envelope; default compacted)")
    ap.add_argument("--crushed-permeability", default="compacted",
                    choices=CRUSHED_PERMEABILITIES,
                    help="with --molloy: how cement flows through the crushed, compacted band "
                         "(fem.augment.pvp's crushed_permeability; default compacted)")
    ap.add_argument("--ssm", action="store_true",
                    help="also rows on real anatomy, the lumbar shape model's mean "
                         "(fem.meshes.ssm; its data folder must exist): the disc rows on its "
                         "L4-L5 (default disc, fibre disc with the exact anisotropic secant, "
                         "drained and undrained; with --finite also the undrained disc in "
                         "large deformation) and the Wegrzyn rows on its L3")
    args = ap.parse_args(argv)
    h, bmd = args.voxel, args.bmd
    # the nucleus (nu 0.499) takes the B-bar hex8, as intended; the notice is not news here
    warnings.filterwarnings("ignore", message=".*B-bar formulation.*")
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, python "
          f"{platform.python_version()}; voxel {h:g} mm, trabecular BMD {bmd:g} mg/cm^3")
    t0 = time.perf_counter()
    day = {lv: day_rig(lv, h, bmd) for lv in LEVELS}
    k_day = sum(day.values()) / len(day)
    k_fe, peak = spinefe_rig("L1", h, bmd, not args.no_pushover)
    disc = disc_rows(h, bmd, fibres=False)
    fib = disc_rows(h, bmd, fibres=True) if not args.no_fibres else None
    big = disc_rows(h, bmd, fibres=True, kinematics="finite") if args.finite else None
    wet = (disc_rows(h, bmd, fibres=True, kinematics="finite", drainage="undrained")
           if args.finite else None)
    real = {}
    if args.ssm:
        from fem.fibres import DRAINAGES
        from fem.meshes import ssm

        if not (ssm.data_folder() / "L4.ply").is_file():
            raise SystemExit(f"--ssm: the shape model's surfaces are not in {ssm.data_folder()} "
                             "(set FEM_SSM_DATA)")
        real = {"L4-L5 SSM mean": disc_rows(h, bmd, fibres=False, anatomy="ssm")}
        if not args.no_fibres:
            for drainage in DRAINAGES:
                real[f"L4-L5 SSM mean, fibres (exact), {drainage}"] = disc_rows(
                    h, bmd, fibres=True, anatomy="ssm", coupling=True, drainage=drainage)
            if args.finite:  # the configuration that reproduces the parametric segment's
                real["L4-L5 SSM mean, fibres, finite strain, undrained"] = disc_rows(
                    h, bmd, fibres=True, kinematics="finite", drainage="undrained",
                    anatomy="ssm")
    crush = wegrzyn(h, bmd, not args.no_pushover)
    if args.ssm:
        crush.update({f"SSM mean, {label}": v for label, v in
                      wegrzyn(h, bmd, not args.no_pushover, anatomy="ssm").items()})
    rows = [(ex.DAY_2020, "L1-L5 mean", k_day), (ex.SPINEFE_STIFFNESS, "L1", k_fe),
            (ex.SPINEFE_FAILURE, "L1", peak)]
    for d, label in ((disc, "L4-L5"), (fib, "L4-L5, fibres"),
                     (big, "L4-L5, fibres, finite strain"),
                     (wet, "L4-L5, fibres, finite strain, undrained"),
                     *((d, label) for label, d in real.items())):
        if d is not None:
            rows += [(ex.WILKE_1999, label, d["pressure"]), (ex.NACHEMSON_1960, label, d["ratio"]),
                     (ex.SEGMENT_STIFFNESS, label, d["stiffness"]),
                     (ex.HOLMES_1993, label, d["bulge"])]
    if args.disc_vs_caps:
        from disc_vs_caps import caps, segment  # bench/disc_vs_caps.py, beside this script

        ratio = caps(2.0, bmd)["first"] / segment(2.0, bmd)["first"]
        rows.append((ex.MAQUER_EMBEDDING, "L2, 2 mm, first failures", ratio))
    if args.load_shift:
        from load_shift import replica  # bench/load_shift.py, beside this script

        shift = replica(h, bmd, discs=("fibres",), states=("intact", "pillar"))["rows"]["fibres"]
        rows.append((ex.BAROUD_2003_PRESSURE, "L4-L5, pillar in L5, fibre disc",
                     100.0 * (shift["pillar"]["pressure"] / shift["intact"]["pressure"] - 1.0)))
    if args.bending:
        from bending import replica as bending  # bench/bending.py, beside this script

        for r in bending(h, bmd, ligaments=(True,)):
            rows.append((r["reference"], f"L3-L4, ligaments, {r['disc']} disc", r["rotation"]))
    fills = (molloy(h, bmd, args.permeability_anisotropy, args.crushed_envelope,
                    args.crushed_permeability)
             if args.molloy and not args.no_pushover else None)
    if fills is not None:
        label = "L3, 25 % crush, bipedicular PVP"
        if args.permeability_anisotropy is not None:
            label += f", permeability anisotropy {args.permeability_anisotropy:g}"
        if args.crushed_envelope != "compacted":
            label += f", {args.crushed_envelope} envelope"
        if args.crushed_permeability != "compacted":
            label += f", {args.crushed_permeability} permeability"
        rows += [(ex.MOLLOY_STRENGTH_FILL, label, fills["strength_fill"]),
                 (ex.MOLLOY_STIFFNESS_FILL, label, fills["stiffness_fill"])]
    for label, (k_lost, s_lost, recovered, p_lost) in crush.items():
        rows += [(ex.WEGRZYN_STIFFNESS, f"L3, {label}", k_lost),
                 (ex.WEGRZYN_STRENGTH, f"L3, {label}", s_lost),
                 (ex.WEGRZYN_STRENGTH, f"L3, {label}, linear Pistoia estimate", p_lost),
                 (ex.WEGRZYN_RECOVERY, f"L3, {label}, springback + core (Fyhrie), shell kept",
                  recovered)]
    print()
    print(f"{'source':58s} {'quantity':84s} {'kind':9s} {'n':>3s} {'measured':>28s} "
          f"{'model':>10s} {'1 SD':>4s} {'range':>5s}")
    for ref, where, value in rows:
        if not math.isfinite(value):
            continue
        print(f"{ref.source[:58]:58s} {(ref.quantity + ', ' + where)[:84]:84s} {ref.kind:9s} "
              f"{ref.n:3d} {ref.describe():>28s} {value:10.4g} {_yes(ref.within(value)):>4s} "
              f"{_yes(ref.in_range(value)):>5s}")
    print()
    print("Day et al. 2020 per level: model machine stiffness, and the series stiffness that "
          "brings it to the measured mean")
    print(f"{'level':5s} {'model N/mm':>11s} {'series N/mm':>12s}")
    for lv, k in day.items():
        series = 1.0 / (1.0 / ex.DAY_2020.mean - 1.0 / k) if k > ex.DAY_2020.mean else math.inf
        print(f"{lv:5s} {k:11.0f} {series:12.0f}")
    if fills is not None:
        print("\nMolloy et al. 2003 replica: L3 crushed 25 %, then bipedicular PVP; ratios to "
              "the intact body")
        print(f"{'PMMA mL':>7s} {'fill %':>7s} {'stiffness':>9s} {'strength':>9s} "
              f"{'endplate contact sup / inf':>27s}")
        for (volume, fill, k, s), (up, down) in zip(fills["rows"], fills["contact"]):
            print(f"{volume:7.0f} {100.0 * fill:7.1f} {k:9.2f} {s:9.2f} {up:13.3f} / {down:.3f}")
        largest = 100.0 * fills["rows"][-1][1]
        said = {key: (f"{fills[key]:.1f} %" if math.isfinite(fills[key]) else
                      f"not by {largest:.1f} % (the largest fill)")
                for key in ("strength_fill", "stiffness_fill")}
        print(f"fill restoring the strength: {said['strength_fill']}; the stiffness: "
              f"{said['stiffness_fill']} (measured: 16.2 % and 29.8 %)")
    print(f"\ntotal {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
