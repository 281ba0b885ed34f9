"""A patient's L1-L3 from a clinical CT and its TotalSegmentator masks: intact, a simulated
Genant grade-2 wedge fracture of L2, vertebroplasty and kyphoplasty with 4 mL of PMMA, standing.

Runs the four states as a study (``anatomy = "ct"``: fem.meshes.patient), writes its summary and
report, then prints the density the pipeline gives each level's trabecular core beside the
measured HU, and the patient's intact stiffness and strength beside the parametric segment at the
same density. The scan has no calibration phantom: the HU-to-density line is an ASSUMED typical
K2HPO4 line (fem.meshes.ct.PHANTOM_HU; spec keys ct_slope, ct_intercept), so absolute densities
are indicative only.

    python examples/patient_ct.py [--voxel 2.0] [--levels L1-L3] [--out results/patient_ct]
        [--ct ../shared/data/ct-abdomen-totalsegmentator/ct.nii.gz]
        [--masks ../shared/data/ct-abdomen-totalsegmentator/masks]

Data: Wasserthal et al., TotalSegmentator, Radiol Artif Intell 2023;5:e230024 (Apache-2.0).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "ct-abdomen-totalsegmentator"
#: the data's README: mean HU of each trabecular core (its mask eroded by 2 voxels)
README_CORE_HU = {"L1": 109.0, "L2": 113.0, "L3": 111.0}


def spec(ct: Path, masks: Path, voxel: float, levels: str = "L1-L3") -> dict:
    return {"study": {"name": "patient-ct"},
            "base": {"anatomy": "ct", "ct": str(ct), "masks": str(masks), "levels": levels,
                     "voxel_size": voxel, "fracture_level": "L2", "fracture_shape": "wedge",
                     "fracture_grade": 2, "load_case": "standing", "cement_volume_ml": 4.0},
            "runs": [{"procedure": "intact"}, {"procedure": "fractured"},
                     {"procedure": "pvp"}, {"procedure": "pkp"}]}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ct", type=Path, default=DATA / "ct.nii.gz")
    p.add_argument("--masks", type=Path, default=DATA / "masks")
    p.add_argument("--voxel", type=float, default=2.0, help="voxel size (mm)")
    p.add_argument("--levels", default="L1-L3", help="contiguous levels holding L2")
    p.add_argument("--out", type=Path, default=Path("results/patient_ct"))
    args = p.parse_args(argv)
    if not args.ct.exists() or not args.masks.exists():
        print(f"the CT ({args.ct}) or its masks ({args.masks}) are missing: pass --ct and "
              "--masks", file=sys.stderr)
        return 2

    import fem
    from fem import metrics
    from fem.meshes import ct, loadcases
    from fem.meshes.bone import BoneQuality
    from fem.meshes.patient import patient_segment_model
    from fem.meshes.vertebra import segment_model
    from fem.study import Study
    from fem.viz.report import write_report

    s = spec(args.ct, args.masks, args.voxel, args.levels)
    study = Study(args.out / "study", s)
    study.run(progress=False, log=lambda msg: None)
    table = study.results()
    report = write_report(args.out / "study")
    cols = ["procedure", "level", "stiffness_n_per_mm", "strength_n", "factor_of_risk",
            "disc_pressure_mpa", "cement_placed_ml", "fill_fraction", "wedge_angle_deg"]
    print(f"patient {args.levels} at {args.voxel:g} mm, standing 500 N (study: {args.out / 'study'})")
    print(table[cols].to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    print(f"report: {report}")

    base = s["base"]
    cal = ct.Calibration(0.8, -8.0, source="assumed typical K2HPO4 line")
    patient = patient_segment_model(ct.read_nifti(args.ct), args.masks, cal, levels=args.levels,
                                    voxel_size=args.voxel)
    cores = patient.metadata["ct"]["levels"]
    print("\ntrabecular core: measured HU (data README, eroded core) | model core HU | "
          "density mg/cm^3 | mean E MPa")
    for n, c in cores.items():
        print(f"  {n}: {README_CORE_HU.get(n, float('nan')):6.0f} | {c['hu_mean']:6.1f} | "
              f"{c['density_mg_cm3']:6.1f} | {c['E_mean_mpa']:6.0f}")
    bmd = sum(c["density_mg_cm3"] for c in cores.values()) / len(cores)
    par = segment_model(base["levels"], voxel_size=args.voxel, materials=BoneQuality(bmd=bmd))
    res = fem.solve(loadcases.loaded(par, "standing"))
    par_rows = metrics.level_metrics(res).set_index("level")
    intact = table[table["procedure"] == "intact"].set_index("level")
    print(f"\nintact, standing: patient vs parametric segment at its mean core density "
          f"({bmd:.0f} mg/cm^3)")
    print("  level | stiffness N/mm patient / parametric | strength N patient / parametric")
    for n in intact.index:
        print(f"  {n}    | {intact.loc[n, 'stiffness_n_per_mm']:9.0f} / "
              f"{par_rows.loc[n, 'stiffness_n_per_mm']:9.0f}      | "
              f"{intact.loc[n, 'strength_n']:7.0f} / {par_rows.loc[n, 'strength_n']:7.0f}")
    args.out.mkdir(parents=True, exist_ok=True)
    res_p = fem.solve(loadcases.loaded(patient, "standing"))
    res_p.write(args.out / "patient_intact.vtu")
    print(f"fields: {args.out / 'patient_intact.vtu'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
