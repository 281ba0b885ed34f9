"""Run CalculiX (``ccx``) on a deck and read its printed results, for cross-checking.

CalculiX is the independent reference solver of the test suite and the benchmarks. Decks written
by :meth:`fem.Model.to_inp` request ``*NODE PRINT`` of U and ``*EL PRINT`` of S, which CalculiX
writes to ``<job>.dat``; :func:`read_dat` parses that file. CalculiX prints shear stresses in the
order xy, xz, yz; they are reordered here to vertebra-fem's xx, yy, zz, xy, yz, xz.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import SolverError


def ccx_executable() -> str | None:
    """Path of the CalculiX solver (``ccx``, or ``$FEM_CCX``), or None when it is not installed."""
    exe = os.environ.get("FEM_CCX") or shutil.which("ccx") or shutil.which("ccx_2.20")
    return exe


@dataclass
class CcxResult:
    """Printed CalculiX results: nodal displacements and integration-point stresses."""

    node_labels: np.ndarray
    displacement: np.ndarray  # (n, 3), mm
    element_labels: np.ndarray  # (n_ip,), the element of each integration point
    ip_index: np.ndarray  # (n_ip,), 1-based integration point number
    ip_stress: np.ndarray  # (n_ip, 6) xx, yy, zz, xy, yz, xz (MPa)

    def element_average_stress(self) -> tuple[np.ndarray, np.ndarray]:
        """(element labels, arithmetic mean over each element's integration points (n_e, 6))."""
        labels, inv = np.unique(self.element_labels, return_inverse=True)
        acc = np.zeros((len(labels), 6))
        np.add.at(acc, inv, self.ip_stress)
        return labels, acc / np.bincount(inv)[:, None]


def read_dat(path) -> CcxResult:
    """Parse the displacement and stress blocks of a CalculiX ``.dat`` file."""
    disp, stress = [], []
    mode = None
    for line in Path(path).read_text().splitlines():
        s = line.strip()
        if not s:
            continue
        low = s.lower()
        if low.startswith("displacements"):
            mode = "u"
            continue
        if low.startswith("stresses"):
            mode = "s"
            continue
        if s[0].isalpha():
            mode = None
            continue
        parts = s.split()
        if mode == "u" and len(parts) == 4:
            disp.append([float(x) for x in parts])
        elif mode == "s" and len(parts) == 8:
            stress.append([float(x) for x in parts])
    d = np.array(disp).reshape(-1, 4)
    st = np.array(stress).reshape(-1, 8)
    # ccx: sxx syy szz sxy sxz syz -> ours: xx yy zz xy yz xz
    s6 = st[:, [2, 3, 4, 5, 7, 6]]
    return CcxResult(d[:, 0].astype(np.int64), d[:, 1:4], st[:, 0].astype(np.int64),
                     st[:, 1].astype(np.int64), s6)


def run_ccx(deck, workdir=None, *, timeout: float = 600.0, threads: int = 1) -> CcxResult:
    """Run CalculiX on ``deck`` (in ``workdir``, default the deck's folder) and read the results."""
    exe = ccx_executable()
    if exe is None:
        raise SolverError("CalculiX (ccx) is not installed: apt-get install calculix-ccx")
    deck = Path(deck)
    work = Path(workdir) if workdir is not None else deck.parent
    if work.resolve() != deck.parent.resolve():
        shutil.copy(deck, work / deck.name)
    job = deck.stem
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), CCX_NPROC_EQUATION_SOLVER=str(threads))
    proc = subprocess.run([exe, "-i", job], cwd=work, capture_output=True, text=True,
                          timeout=timeout, env=env)
    dat = work / f"{job}.dat"
    if proc.returncode != 0 or "*ERROR" in proc.stdout or not dat.exists():
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
        raise SolverError(f"CalculiX failed on {deck.name} (exit {proc.returncode}):\n{tail}")
    return read_dat(dat)
