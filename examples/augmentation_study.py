"""The canonical augmentation study: does cement stop the collapse, and what does it do next door?

An osteoporotic T12-L4 segment (trabecular QCT BMD 70 mg/cm^3, below the 80 mg/cm^3 osteoporosis
threshold; L1 and L3, next to the fracture, free, T12 under the loading plate and L4 on the
support) with a Genant grade-2 wedge fracture of L2, in six states: intact, fractured,
vertebroplasty (PVP, bipedicular PMMA) with 2, 4 and 6 mL, and balloon kyphoplasty (PKP,
bipedicular) with 4 mL restoring 50 % of the lost height. Each state is solved under standing
(500 N) and flexion (500 N + 7.5 N m), the load kept over the intact segment's top when the
wedge tips the levels above (``loadcases.loaded``'s default line, "space"). Prints the
per-level table (stiffness: axial under standing, rotational under flexion; strength, factor of
risk, endplate bulge, disc pressure, heights, cement) and the two headline predictions: collapse
prevention at L2 and adjacent-level risk at L1 and L3. Writes the full table as CSV and one VTU
per state and load case. The discs are the fibre-reinforced annulus, as a study's default
(``fem.solve_disc(..., coupling=True)``, docs/studies.md, "The disc"); ``--disc isotropic``
solves the builders' solid annulus instead. The voxel segments have their posterior ligaments
(``fem.ligaments``, solved with the discs' fibres), as a study's default ``ligaments = "auto"``;
``--no-ligaments`` leaves them out (the segment of before, whose discs alone hold a bending
moment); the tet10 form has none.

With ``--anatomy ssm`` the same study runs on real anatomy: the mean L2-L4 of a statistical shape
model of 87 patients (Clouthier et al. 2023, J Biomech 146:111421; data from
../shared/data/lumbar-ssm-mean or $FEM_SSM_DATA) with the wedge fracture in L3; add
``--tet10 3.5`` to mesh it with quadratic tetrahedra of that size (gmsh) instead of voxels.

    python examples/augmentation_study.py [--voxel 1.5] [--anatomy parametric|ssm]
                                          [--tet10 MM] [--disc fibres|isotropic]
                                          [--no-ligaments] [--out results/]
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import fem
from fem import augment, metrics
from fem.ligaments import solve_solid_discs
from fem.meshes import loadcases, pathology
from fem.meshes.bone import BoneQuality
from fem.meshes.vertebra import segment_model

LOAD_CASES = ("standing", "flexion")
SHOWN = ["state", "load_case", "level", "stiffness_n_per_mm",
         "rotational_stiffness_nm_per_deg", "strength_pistoia_n",
         "factor_of_risk_pistoia", "endplate_bulge_superior_mm", "endplate_bulge_inferior_mm",
         "disc_pressure_mpa", "height_anterior_mm", "wedge_angle_deg", "cement_volume_ml",
         "leak_ml"]


#: the segment and the fractured level of each anatomy: two free levels each side of the
#: fracture where the anatomy has them (the shape model stops at L2, so none above L3 is free)
ANATOMIES = {"parametric": ("T12-L4", "L2"), "ssm": ("L2-L4", "L3")}


def states(voxel: float, *, bmd: float = 70.0, seed: int = 0, anatomy: str = "parametric",
           tet10: float | None = None, ligaments: bool | None = None) -> dict:
    """The six model states of the canonical study (name -> Model, no loads applied);
    ``tet10``: mesh size (mm) of the real anatomy's tet10 form, instead of voxels;
    ``ligaments``: the segment's posterior ligaments (None, the default: where they are
    built, the voxel segments; the tet10 form has none)."""
    levels, level = ANATOMIES[anatomy]
    if ligaments and tet10 is not None:
        raise SystemExit("the posterior ligaments are built on voxel segments only, not --tet10")
    if ligaments is None:
        ligaments = tet10 is None
    if tet10 is not None and anatomy != "ssm":
        raise SystemExit("--tet10 applies to --anatomy ssm (the parametric tet10 segments are "
                         "fem.meshes.vertebra_gmsh)")
    if tet10 is not None:
        from fem.meshes.ssm_gmsh import ssm_segment_model_tet10

        intact = ssm_segment_model_tet10(levels, mesh_size=tet10, materials=BoneQuality(bmd=bmd))
    elif anatomy == "ssm":
        from fem.meshes.ssm import ssm_segment_model

        intact = ssm_segment_model(levels, voxel_size=voxel, materials=BoneQuality(bmd=bmd),
                                   ligaments=ligaments)
    else:
        intact = segment_model(levels, voxel_size=voxel, materials=BoneQuality(bmd=bmd),
                               ligaments=ligaments)
    fractured = pathology.compress(intact, level, "wedge", grade=2)
    out = {"intact": intact, "fractured": fractured}
    for v in (2.0, 4.0, 6.0):
        out[f"pvp_{v:g}ml"] = augment.pvp(fractured, level, v, approach="bipedicular", seed=seed)
    out["pkp_4ml"] = augment.pkp(fractured, level, 4.0, approach="bipedicular",
                                 height_restoration=0.5, seed=seed)
    return out


def run(voxel: float, out: Path, *, load_cases=LOAD_CASES, write_vtu: bool = True,
        solver: str = "auto", anatomy: str = "parametric", tet10: float | None = None,
        disc: str = "fibres", ligaments: bool | None = None):
    """Solve every state under every load case; return the :class:`fem.metrics.Comparison`.
    ``disc``: "fibres" (the fibre-reinforced annulus, as a study's default) or "isotropic";
    ``ligaments``: the segment's posterior ligaments (None: where they are built, as a
    study's "auto")."""
    if disc not in ("fibres", "isotropic"):
        raise ValueError(f"disc must be 'fibres' or 'isotropic', got {disc!r}")
    out.mkdir(parents=True, exist_ok=True)
    results = {}
    for name, model in states(voxel, anatomy=anatomy, tet10=tet10,
                              ligaments=ligaments).items():
        results[name] = {}
        for case in load_cases:
            m = model.copy()
            m = loadcases.loaded(m, case)
            t = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # B-bar hex8 in the nucleus
                r = (fem.solve_disc(m, solver=solver, coupling=True) if disc == "fibres" else
                     solve_solid_discs(m, solver=solver))
            print(f"solved {name:10s} {case:9s} {m.n_dof:7d} DOF in "
                  f"{time.perf_counter() - t:5.1f} s", file=sys.stderr)
            results[name][case] = metrics.level_metrics(r)
            if write_vtu:
                r.write(out / f"{name}_{case}.vtu")
    comp = metrics.compare(results, reference="intact", fractured="fractured",
                           treated_level=ANATOMIES[anatomy][1])
    comp.table.to_csv(out / "canonical_study.csv", index=False)
    return comp


def report(comp) -> str:
    """The printed table and the two headline predictions."""
    fmt = {"float_format": lambda v: f"{v:.4g}", "index": False}
    levels, lv = comp.levels, comp.treated
    return "\n".join([
        f"Canonical study: osteoporotic {levels[0]}-{levels[-1]}, {lv} wedge fracture "
        "(Genant 2); units N, mm, MPa, mL, deg",
        comp.table[SHOWN].to_string(**fmt),
        f"\nCollapse prevention at {lv} (ratios to the fractured and the intact state)",
        comp.collapse_prevention.to_string(**fmt),
        "\nAdjacent-level risk (change % relative to the fractured state)",
        comp.adjacent_risk.to_string(**fmt)])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--voxel", type=float, default=1.5, help="voxel size in mm (default 1.5)")
    p.add_argument("--out", type=Path, default=Path("results"), help="folder for CSV and VTU")
    p.add_argument("--solver", default="auto", choices=["auto", "direct", "amg", "cg"],
                   help="linear solver (default auto; cg only with --disc isotropic)")
    p.add_argument("--disc", default="fibres", choices=["fibres", "isotropic"],
                   help="disc model: the fibre-reinforced annulus (default, a study's) or the "
                        "builders' solid annulus")
    p.add_argument("--anatomy", default="parametric", choices=sorted(ANATOMIES),
                   help="parametric T12-L4 (default) or the real mean L2-L4 (ssm)")
    p.add_argument("--tet10", type=float, default=None, metavar="MM",
                   help="with --anatomy ssm: tet10 mesh of this size (mm) instead of voxels")
    p.add_argument("--ligaments", action=argparse.BooleanOptionalAction, default=None,
                   help="the segment's posterior ligaments (fem.ligaments), which hold a "
                        "bending moment as a ligamentous segment does (default: with them on "
                        "voxel segments, without on the tet10 form, which has none)")
    args = p.parse_args(argv)
    if args.ligaments and args.tet10 is not None:
        p.error("--ligaments is built on voxel segments only, not with --tet10")
    ligaments = args.tet10 is None if args.ligaments is None else args.ligaments
    if args.solver == "cg" and (args.disc == "fibres" or ligaments):
        p.error("--solver cg solves the solid annulus without ligaments only: use --disc "
                "isotropic --no-ligaments, or auto, direct or amg")
    comp = run(args.voxel, args.out, solver=args.solver, anatomy=args.anatomy, tet10=args.tet10,
               disc=args.disc, ligaments=ligaments)
    print(report(comp))
    print(f"\nfull table: {args.out / 'canonical_study.csv'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
