"""An osteoporotic L1 vertebra, intact and with a grade-2 wedge fracture, under standing load.

Builds the parametric L1 (voxel form), fractures a copy (Genant grade 2 wedge, damaged trabecular
zone under the collapsed endplate), loads both with 500 N through a rigid plate on the superior
endplate over a fixed inferior endplate, and prints the plate displacement and the axial stiffness
(N/mm) of each; writes both results as VTU files for ParaView/PyVista.

    python examples/parametric_vertebra.py [--voxel 1.0] [--out results/]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import fem
from fem.meshes import loadcases
from fem.meshes.pathology import compress
from fem.meshes.vertebra import vertebra_model


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--voxel", type=float, default=1.0, help="voxel size in mm (default 1.0)")
    p.add_argument("--out", type=Path, default=Path("results"), help="folder for the VTU files")
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)

    intact = vertebra_model("L1", voxel_size=args.voxel)
    fractured = compress(intact, "L1", "wedge", grade=2)
    print(f"{'model':12s} {'elements':>9s} {'plate dz (mm)':>14s} {'stiffness (N/mm)':>17s}")
    for name, model in (("intact", intact), ("wedge", fractured)):
        model = loadcases.loaded(model, "standing")
        result = fem.solve(model)
        dz = float(result.plate_motion("load:standing")[2])
        print(f"{name:12s} {model.n_elements:9d} {dz:14.5f} {500.0 / -dz:17.0f}")
        result.write(args.out / f"L1_{name}.vtu")
    print(f"wrote {args.out}/L1_intact.vtu and L1_wedge.vtu")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
