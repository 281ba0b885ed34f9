"""How a motion segment's axial stiffness grows with the compressive preload it is measured about.

Gardner-Morse & Stokes 2004 (J Biomech 37:205; abstract checked) measured human L2-L3 and L4-L5
segments in ±0.35 mm axial cycles (and five other displacements) about preloads of 0, 250 and
500 N: their stiffness terms rose by a mean factor of 1.71 at 250 N and 2.11 at 500 N over those
at no preload. The abstract gives the mean over the eight diagonal and primary off-diagonal
terms, not the axial term alone.

The replica: the parametric L4-L5 at trabecular BMD 70 mg/cm^3 between parallel platens (the
disc rows of bench/validation.py; posterior elements cut, which between platens changes nothing
here: nothing joins the two neural arches), ramped to 1 kN in 25 N steps, with the fibre disc
three ways: undrained in large deformation (the configuration that reproduces the segment's
stiffness, docs/validation.md), drained in large deformation, and drained in small strain (what
a study solves). The axial stiffness about a preload P is the chord of the force-travel curve
over the platen travel at P, ±0.35 mm (about no preload: 0 to +0.35 mm, compression only).

    python bench/preload_stiffening.py [--voxel 4 3]

About 1-3 minutes a voxel size on one core (docs/validation.md, "Stiffening with preload").
"""

from __future__ import annotations

import argparse
import platform
import time
import warnings

import numpy as np

#: Gardner-Morse & Stokes 2004: mean stiffening over the no-preload terms at 250 and 500 N
MEASURED = {250.0: 1.71, 500.0: 2.11}
#: their axial cycle's amplitude (mm)
AMPLITUDE = 0.35
#: the ramp's top (N) and its steps
TOP, STEPS = 1000.0, 40
CONFIGURATIONS = (("finite", "undrained"), ("finite", "drained"), ("small", "drained"))


def curve(voxel: float, kinematics: str, drainage: str):
    """(force N, platen travel mm) of the L4-L5 ramp, from zero."""
    from validation import disc_segment, force_travel  # bench/, beside this script

    import fem

    m = disc_segment(voxel, 70.0, TOP, platen=True, posterior=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # B-bar hex8 in the disc, said once
        if kinematics == "small":  # linear: the chord is the same about every preload
            r = fem.solve_disc(m, drainage=drainage)
        else:
            r = fem.solve_disc(m, kinematics=kinematics, drainage=drainage, solver="amg",
                               increments=tuple(np.arange(1, STEPS + 1) / STEPS))
    f, w = force_travel(r, TOP)
    return np.array(f), np.array(w)


def stiffness_about(f, w, preload: float, amplitude: float = AMPLITUDE) -> float:
    """The chord (N/mm) of the curve over the travel at ``preload`` ± ``amplitude`` (from zero
    travel where that would be a distraction); NaN past the ramp's end."""
    at = float(np.interp(preload, f, w))
    lo, hi = max(at - amplitude, 0.0), at + amplitude
    if hi > w[-1]:
        return float("nan")
    return float((np.interp(hi, w, f) - np.interp(lo, w, f)) / (hi - lo))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--voxel", type=float, nargs="+", default=[4.0, 3.0])
    args = ap.parse_args(argv)
    print(f"machine: {platform.processor() or platform.machine()}, python "
          f"{platform.python_version()}; L4-L5, BMD 70, parallel platens, ±{AMPLITUDE} mm chords")
    print(f"{'voxel':>5} {'disc':28} {'k0 N/mm':>8} {'k250':>7} {'x':>5} {'k500':>7} {'x':>5} "
          f"{'s':>6}")
    for voxel in args.voxel:
        for kinematics, drainage in CONFIGURATIONS:
            t = time.perf_counter()
            f, w = curve(voxel, kinematics, drainage)
            k = [stiffness_about(f, w, p) for p in (0.0, 250.0, 500.0)]
            disc = f"{drainage}, " + ("large deformation" if kinematics == "finite" else
                                      "small strain")
            print(f"{voxel:5g} {disc:28} {k[0]:8.0f} {k[1]:7.0f} {k[1] / k[0]:5.2f} "
                  f"{k[2]:7.0f} {k[2] / k[0]:5.2f} "
                  f"{time.perf_counter() - t:6.1f}", flush=True)
    print(f"measured (Gardner-Morse & Stokes 2004, mean of 8 terms): x {MEASURED[250.0]} at 250 N, "
          f"x {MEASURED[500.0]} at 500 N")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
