"""Small ready-made models shipped under ``meshes/data/``, each regenerated bit for bit by its
builder (``python -m fem.meshes.shipped`` rewrites them; a test rebuilds each and compares bytes).

* ``vertebral_body_L3.inp``: the bundled example (:mod:`fem.meshes.example`), an L3-like body.
* ``L1_voxel_2mm.inp``: the parametric osteoporotic L1 (:func:`fem.meshes.vertebra.vertebra_model`,
  2 mm voxels, posterior elements included) under standing load as endplate pressure (500 N over
  the superior endplate, inferior endplate fixed).
* ``T12-L2_voxel_2.5mm.inp``: the T12-L2 segment with its discs (2.5 mm voxels), same load case.
* ``L1_wedge_grade2_voxel_2mm.inp``: the L1 with a Genant grade-2 wedge fracture
  (:func:`fem.meshes.pathology.compress`), same load case.
* ``ct_phantom_64x64x48.nii``: the seeded synthetic QCT phantom of a vertebral body with its four
  calibration rods (:func:`fem.meshes.ct.synthetic_vertebra_phantom`, HU as int16), for the CT
  pipeline (``fem.meshes.ct.read_nifti``).

Decks open in CalculiX (``ccx``) and in vertebra-fem (``fem.Model.from_inp``) alike.
"""

from __future__ import annotations

import sys
from importlib import resources
from pathlib import Path

import numpy as np

DATA = Path(__file__).parent / "data"


def _with_standing_pressure(model):
    from .loadcases import loaded

    return loaded(model, "standing", method="pressure")


def _l1():
    from .vertebra import vertebra_model

    return _with_standing_pressure(vertebra_model("L1", voxel_size=2.0))


def _segment():
    from .vertebra import segment_model

    return _with_standing_pressure(segment_model("T12-L2", voxel_size=2.5))


def _wedge():
    from .pathology import compress
    from .vertebra import vertebra_model

    return _with_standing_pressure(compress(vertebra_model("L1", voxel_size=2.0), "L1", "wedge",
                                            grade=2))


def _example():
    from .example import build_example

    return build_example()


def _write_deck(build, heading):
    def write(path: Path) -> None:
        build().to_inp(path, heading=heading)
    return write


def _write_phantom(path: Path) -> None:
    import nibabel as nib

    from .ct import synthetic_vertebra_phantom

    image, _ = synthetic_vertebra_phantom((64, 64, 48), bmd=90.0, seed=1)
    affine = np.diag([*image.spacing, 1.0])
    affine[:3, 3] = image.origin
    # NIfTI is RAS+, the project's frame is LPS-like (x left, y posterior): flip x and y so that
    # read_nifti gives back the same array and frame
    affine[0, :] *= -1.0
    affine[1, :] *= -1.0
    hu = np.rint(np.asarray(image.hu)).astype(np.int16)
    img = nib.Nifti1Image(hu, affine)
    img.header.set_xyzt_units("mm")
    img.to_filename(str(path))


#: file name -> writer(path)
SHIPPED = {
    "vertebral_body_L3.inp": lambda p: _example().to_inp(p),
    "L1_voxel_2mm.inp": _write_deck(_l1, "vertebra-fem: parametric osteoporotic L1, 2 mm voxels, "
                                         "standing 500 N as endplate pressure"),
    "T12-L2_voxel_2.5mm.inp": _write_deck(_segment, "vertebra-fem: T12-L2 segment with discs, "
                                                    "2.5 mm voxels, standing 500 N"),
    "L1_wedge_grade2_voxel_2mm.inp": _write_deck(_wedge, "vertebra-fem: L1 with a Genant grade-2 "
                                                         "wedge fracture, 2 mm voxels, standing"),
    "ct_phantom_64x64x48.nii": _write_phantom,
}


def path(name: str) -> Path:
    """Path of a shipped file (installed with the package)."""
    if name not in SHIPPED:
        raise KeyError(f"no shipped file {name!r}: choose one of {', '.join(SHIPPED)}")
    return Path(str(resources.files("fem.meshes").joinpath("data", name)))


def main(argv=None) -> int:  # maintenance entry point
    args = sys.argv[1:] if argv is None else argv
    out = Path(args[0]) if args else DATA
    out.mkdir(parents=True, exist_ok=True)
    for name, write in SHIPPED.items():
        write(out / name)
        print(f"wrote {out / name} ({(out / name).stat().st_size / 1e3:.0f} kB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
