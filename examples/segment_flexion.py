"""A T12-L2 segment in flexion (500 N + 7.5 N m): load sharing between the vertebrae and discs.

Builds the three-level voxel segment with its two discs (annulus, nearly incompressible nucleus),
applies the flexion load case through a rigid plate on T12's superior endplate with L2's inferior
endplate fixed, and prints the mean von Mises stress and the peak minimum principal stress in each
vertebral body; writes the result as a VTU file.

    python examples/segment_flexion.py [--voxel 1.5] [--out results/]
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

import numpy as np

import fem
from fem.meshes import loadcases
from fem.meshes.vertebra import segment_model


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--voxel", type=float, default=1.5, help="voxel size in mm (default 1.5)")
    p.add_argument("--out", type=Path, default=Path("results"), help="folder for the VTU file")
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)

    model = segment_model("T12-L2", voxel_size=args.voxel)
    model = loadcases.loaded(model, "flexion")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the nucleus uses B-bar hex8 (nu 0.499)
        result = fem.solve(model)
    vm = np.asarray(result.von_mises)
    p3 = np.asarray(result.principal_stress)[:, 2]
    print(f"{'level':6s} {'mean von Mises (MPa)':>21s} {'min principal (MPa)':>20s}")
    for level in model.metadata["levels"]:
        body = np.concatenate([model.regions[f"{level}/{part}"]
                               for part in ("cortex", "trabecular")])
        print(f"{level:6s} {vm[body].mean():21.3f} {p3[body].min():20.3f}")
    result.write(args.out / "T12-L2_flexion.vtu")
    print(f"reactions balance the load to {np.abs(result.reaction_total() + result.applied_total()).max():.1e} N")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
