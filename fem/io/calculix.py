"""Run CalculiX (``ccx``) on a deck and read its printed results, for cross-checking.

CalculiX is the independent reference solver of the test suite and the benchmarks. Decks written
by :meth:`fem.Model.to_inp` request ``*NODE PRINT`` of U and ``*EL PRINT`` of S, which CalculiX
writes to ``<job>.dat``; :func:`read_dat` parses that file. CalculiX prints shear stresses in the
order xy, xz, yz; they are reordered here to vertebra-fem's xx, yy, zz, xy, yz, xz.

A nonlinear step prints its blocks once per increment, each header ending in ``and time T``;
:func:`read_dat_increments` splits them into one :class:`CcxResult` per step time. Besides U and
S it reads nodal forces (``RF``), their totals (``*NODE PRINT, TOTALS=YES|ONLY``) and the
equivalent plastic strain at the integration points (``PEEQ``).
"""

from __future__ import annotations

import os
import re
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
    """Printed CalculiX results of one increment: nodal displacements and integration-point
    stresses; where printed, nodal forces (RF), total forces per node set, and the equivalent
    plastic strain at the integration points (PEEQ, in the order of ``peeq_element_labels``)."""

    node_labels: np.ndarray
    displacement: np.ndarray  # (n, 3), mm
    element_labels: np.ndarray  # (n_ip,), the element of each integration point
    ip_index: np.ndarray  # (n_ip,), 1-based integration point number
    ip_stress: np.ndarray  # (n_ip, 6) xx, yy, zz, xy, yz, xz (MPa)
    time: float = 1.0  # the step time of the increment
    force_node_labels: np.ndarray | None = None
    forces: np.ndarray | None = None  # (n, 3), N
    total_forces: dict | None = None  # node set name (upper case) -> (3,), N
    peeq_element_labels: np.ndarray | None = None
    peeq_ip_index: np.ndarray | None = None
    ip_peeq: np.ndarray | None = None  # (n_ip,)

    def element_mean_peeq(self) -> tuple[np.ndarray, np.ndarray]:
        """(element labels, mean equivalent plastic strain over each element's points)."""
        labels, inv = np.unique(self.peeq_element_labels, return_inverse=True)
        return labels, np.bincount(inv, weights=self.ip_peeq) / np.bincount(inv)

    def element_average_stress(self) -> tuple[np.ndarray, np.ndarray]:
        """(element labels, arithmetic mean over each element's integration points (n_e, 6))."""
        labels, inv = np.unique(self.element_labels, return_inverse=True)
        acc = np.zeros((len(labels), 6))
        np.add.at(acc, inv, self.ip_stress)
        return labels, acc / np.bincount(inv)[:, None]


_TIME = re.compile(r"and\s+time\s+(\S+)\s*$", re.IGNORECASE)
_SET = re.compile(r"for\s+set\s+(\S+)", re.IGNORECASE)


def read_dat_increments(path) -> list[CcxResult]:
    """Every increment of a CalculiX ``.dat`` file, in order of their step times."""
    incs: dict[float, dict] = {}
    cur = None
    mode = None
    for line in Path(path).read_text().splitlines():
        s = line.strip()
        if not s:
            continue
        if s[0].isalpha():
            low = s.lower()
            m = _TIME.search(s)
            t = float(m.group(1)) if m else 1.0
            cur = incs.setdefault(t, {"u": [], "s": [], "rf": [], "pe": [], "tot": {}})
            mode = None
            if low.startswith("displacements"):
                mode = "u"
            elif low.startswith("stresses"):
                mode = "s"
            elif low.startswith("forces"):
                mode = "rf"
            elif low.startswith("equivalent plastic strain"):
                mode = "pe"
            elif low.startswith("total force"):
                mode = "tot"
                ms = _SET.search(s)
                cur["set"] = ms.group(1).upper() if ms else ""
            continue
        if mode is None:
            continue
        parts = s.split()
        if mode in ("u", "rf") and len(parts) == 4:
            cur[mode].append([float(x) for x in parts])
        elif mode == "s" and len(parts) == 8:
            cur["s"].append([float(x) for x in parts])
        elif mode == "pe" and len(parts) == 3:
            cur["pe"].append([float(x) for x in parts])
        elif mode == "tot" and len(parts) == 3:
            cur["tot"][cur["set"]] = np.array([float(x) for x in parts])
    out = []
    for t, d in sorted(incs.items()):
        u = np.array(d["u"]).reshape(-1, 4)
        st = np.array(d["s"]).reshape(-1, 8)
        rf = np.array(d["rf"]).reshape(-1, 4)
        pe = np.array(d["pe"]).reshape(-1, 3)
        # ccx: sxx syy szz sxy sxz syz -> ours: xx yy zz xy yz xz
        out.append(CcxResult(
            u[:, 0].astype(np.int64), u[:, 1:4], st[:, 0].astype(np.int64),
            st[:, 1].astype(np.int64), st[:, [2, 3, 4, 5, 7, 6]], time=t,
            force_node_labels=rf[:, 0].astype(np.int64) if len(rf) else None,
            forces=rf[:, 1:4] if len(rf) else None, total_forces=d["tot"] or None,
            peeq_element_labels=pe[:, 0].astype(np.int64) if len(pe) else None,
            peeq_ip_index=pe[:, 1].astype(np.int64) if len(pe) else None,
            ip_peeq=pe[:, 2] if len(pe) else None))
    return out


def read_dat(path) -> CcxResult:
    """Parse the displacement and stress blocks of a CalculiX ``.dat`` file (the last increment
    of a nonlinear step: :func:`read_dat_increments` gives them all)."""
    incs = read_dat_increments(path)
    if not incs:
        e = np.zeros(0, np.int64)
        return CcxResult(e, np.zeros((0, 3)), e, e, np.zeros((0, 6)))
    return incs[-1]


def run_ccx(deck, workdir=None, *, timeout: float = 600.0, threads: int = 1,
            increments: bool = False):
    """Run CalculiX on ``deck`` (in ``workdir``, default the deck's folder) and read the results:
    a :class:`CcxResult`, or with ``increments`` the list of every increment's."""
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
    return read_dat_increments(dat) if increments else read_dat(dat)
