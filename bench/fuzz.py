"""A longer, randomised run of the reader fuzz tests (issue 17, deliverable 2).

CI runs ``tests/test_fuzz.py`` (decks, VTU files, models) and ``tests/test_fuzz_inputs.py`` (study
specs, stores, CT images) with a fixed, derandomised set of examples; this script runs the
same properties with ``FEM_FUZZ_SCALE`` times as many examples, drawn at random (hypothesis
prints the seed of any failing example so it can be replayed), and prints a table: scale,
tests, examples per property (the CI count times the scale), failures and seconds.

    python bench/fuzz.py --scale 20
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", type=int, default=20, help="example count multiplier (CI: 1)")
    args = ap.parse_args(argv)
    if args.scale < 1:
        ap.error("--scale must be >= 1")
    root = Path(__file__).resolve().parents[1]
    env = dict(os.environ, FEM_FUZZ_SCALE=str(args.scale))
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:xdist",
                           "-p", "no:cacheprovider", str(root / "tests" / "test_fuzz.py"),
                           str(root / "tests" / "test_fuzz_inputs.py")],
                          env=env, capture_output=True, text=True, cwd=root)
    seconds = time.perf_counter() - t
    last = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""
    passed = int(m.group(1)) if (m := re.search(r"(\d+) passed", last)) else 0
    failed = int(m.group(1)) if (m := re.search(r"(\d+) failed", last)) else 0
    print(f"machine: {platform.processor() or platform.machine()}, python "
          f"{platform.python_version()}")
    print(f"{'scale':>5} {'tests':>5} {'failed':>6} {'seconds':>8}  (examples per property: the "
          "CI count x scale)")
    print(f"{args.scale:5d} {passed + failed:5d} {failed:6d} {seconds:8.1f}")
    if proc.returncode != 0:
        print(proc.stdout[-6000:])
    return proc.returncode


if __name__ == "__main__":
    raise SystemExit(main())
