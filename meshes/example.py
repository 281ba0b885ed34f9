"""The bundled example: an idealised osteoporotic lumbar (L3-like) vertebral body, hex8.

Geometry: an elliptic cylinder 32 mm deep (anterior-posterior, x), 45 mm wide (lateral, y) and
26 mm high at the rim (z), inside the lumbar ranges of ../shared/reference/biomechanics.md (body
height 20-30 mm, depth 30-35 mm, width 40-50 mm), with concave endplates (1.5 mm cranial, 0.7 mm
caudal, Wang 2012). A cortical shell 0.6 mm thick anteriorly and posteriorly (0.84 mm laterally,
the elliptic mapping scales it) and bony endplates 0.6 mm thick enclose the
trabecular core (mean shell thickness 0.38 mm, Silva 1994 / Eswaran 2007, is thinner than a
sensible hex layer at this mesh size; the shell modulus is not scaled for this).

Materials (MPa): osteoporotic cortex and bony endplates 8040 / 0.3 (67 % of 12 000; J Orthop Surg
Res 2020, s13018-020-01650-5, Tab. 1); osteoporotic trabecular bone 70 / 0.2 (inside the 34-146
range of the same tables).

Load case: relaxed standing, 0.5 MPa intradiscal pressure (Wilke 1999, Spine 24:755) acting on
the superior endplate surface (about 560 N), inferior endplate surface fixed.

The mesh is an O-grid: a square core block and a ring of radial layers, mapped onto the ellipse
and extruded between the two endplate surfaces. ``python -m fem.meshes.example OUT.inp`` rewrites
the bundled deck.
"""

from __future__ import annotations

import sys
from importlib import resources
from pathlib import Path

import numpy as np

from ..loads import Fixed, Pressure
from ..model import Model

DECK_NAME = "vertebral_body_L3.inp"

DEPTH, WIDTH, HEIGHT = 32.0, 45.0, 26.0
CONCAVITY_SUP, CONCAVITY_INF = 1.5, 0.7
SHELL = 0.6
E_SHELL, NU_SHELL = 8040.0, 0.3
E_TRAB, NU_TRAB = 70.0, 0.2
PRESSURE = 0.5


def _disk(n: int, nr: int, shell: float):
    """O-grid of the unit disk: points (p, 2), quads (q, 4) counter-clockwise, and the ring
    layer index of each quad (-1 in the core; nr - 1 is the outermost layer)."""
    s = 0.55
    g = np.linspace(-s, s, n + 1)
    X, Y = np.meshgrid(g, g, indexing="ij")
    core = np.stack([X.ravel(), Y.ravel()], 1)
    cid = np.arange((n + 1) ** 2).reshape(n + 1, n + 1)
    quads = [np.stack([cid[:-1, :-1].ravel(), cid[1:, :-1].ravel(), cid[1:, 1:].ravel(),
                       cid[:-1, 1:].ravel()], 1)]
    layer = [np.full(n * n, -1)]
    # boundary of the core square, counter-clockwise, 4n points
    ring_ids = np.concatenate([cid[:, 0], cid[-1, 1:], cid[-2::-1, -1], cid[0, -2:0:-1]])
    P = core[ring_ids]
    theta = np.arctan2(P[:, 1], P[:, 0])
    C = np.stack([np.cos(theta), np.sin(theta)], 1)
    # radial parameter: uniform to the inner face of the shell, then the shell layer
    r_in = 1.0 - shell
    frac = np.linspace(0.0, 1.0, nr)
    pts = [core]
    ids = [ring_ids]
    nxt = len(core)
    m = len(ring_ids)
    for j in range(1, nr + 1):
        if j < nr:
            q = (1 - frac[j]) * P + frac[j] * C * r_in
        else:
            q = C.copy()
        pts.append(q)
        ids.append(np.arange(nxt, nxt + m))
        nxt += m
    for j in range(nr):
        a, b = ids[j], ids[j + 1]
        quads.append(np.stack([a, b, np.roll(b, -1), np.roll(a, -1)], 1))
        layer.append(np.full(m, j))
    return np.concatenate(pts), np.concatenate(quads), np.concatenate(layer)


def build_example(n: int = 12, nr: int = 5, nz: int = 16) -> Model:
    """The example vertebral body as a :class:`~fem.model.Model` with materials and loads."""
    a, b = DEPTH / 2, WIDTH / 2
    p2, quads, layer = _disk(n, nr, SHELL / a)
    rho2 = np.clip((p2 ** 2).sum(1), 0, 1)
    z_top = HEIGHT / 2 - CONCAVITY_SUP * (1 - rho2)
    z_bot = -HEIGHT / 2 + CONCAVITY_INF * (1 - rho2)
    # through-height parameter: endplate layers of thickness SHELL at both ends
    h_mid = HEIGHT - CONCAVITY_SUP - CONCAVITY_INF
    e = SHELL / h_mid
    zeta = np.concatenate([[0.0], e + (1 - 2 * e) * np.linspace(0, 1, nz - 1), [1.0]])
    npl = len(p2)
    pts = np.zeros((npl * (nz + 1), 3))
    for k, zk in enumerate(zeta):
        sl = slice(k * npl, (k + 1) * npl)
        pts[sl, 0] = a * p2[:, 0]
        pts[sl, 1] = b * p2[:, 1]
        pts[sl, 2] = z_bot + zk * (z_top - z_bot)
    hexes, lay, lev = [], [], []
    for k in range(nz):
        hexes.append(np.concatenate([quads + k * npl, quads + (k + 1) * npl], axis=1))
        lay.append(layer)
        lev.append(np.full(len(quads), k))
    conn = np.concatenate(hexes)
    lay = np.concatenate(lay)
    lev = np.concatenate(lev)
    model = Model.from_arrays(pts, [("hex8", conn)], source="example")
    cortex = lay == layer.max()
    sup = (lev == nz - 1) & ~cortex
    inf = (lev == 0) & ~cortex
    trab = ~(cortex | sup | inf)
    model.add_region("L3/cortex", np.nonzero(cortex)[0])
    model.add_region("L3/endplate_superior", np.nonzero(sup)[0])
    model.add_region("L3/endplate_inferior", np.nonzero(inf)[0])
    model.add_region("L3/trabecular", np.nonzero(trab)[0])
    model.set_material("L3/trabecular", E=E_TRAB, nu=NU_TRAB)
    model.set_material("L3/cortex", E=E_SHELL, nu=NU_SHELL)
    model.set_material("L3/endplate_superior", E=E_SHELL, nu=NU_SHELL)
    model.set_material("L3/endplate_inferior", E=E_SHELL, nu=NU_SHELL)
    top = np.nonzero(lev == nz - 1)[0]
    bot = np.nonzero(lev == 0)[0]
    model.add_face_set("L3/superior_surface", top, np.full(len(top), 1))  # S2: nodes 5-8
    model.add_face_set("L3/inferior_surface", bot, np.full(len(bot), 0))  # S1: nodes 1-4
    model.add(Fixed("L3/inferior_surface"), Pressure("L3/superior_surface", PRESSURE))
    model.metadata["heading"] = ("vertebra-fem example: osteoporotic L3-like vertebral body, "
                                 "0.5 MPa on the superior endplate, inferior endplate fixed")
    return model


def example_deck() -> Path:
    """Path of the bundled example deck."""
    return Path(str(resources.files("fem.meshes").joinpath("data", DECK_NAME)))


def main(argv=None) -> int:  # pragma: no cover - maintenance entry point
    argv = sys.argv[1:] if argv is None else argv
    out = Path(argv[0]) if argv else Path(__file__).parent / "data" / DECK_NAME
    build_example().to_inp(out)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
