"""Results of a linear static solve: displacements, strains, stresses, derived fields, reactions.

Units: displacement mm, stress MPa, strain mm/mm, strain energy density MPa (= mJ/mm^3), force N.
Tensors are stored as 6 components in the order xx, yy, zz, xy, yz, xz (tensor components, not
engineering shear strains). "Element averages" are the arithmetic means over the element's
integration points (the usual post-processing of CalculiX's integration-point output).
Arrays live on the solve's backend; they are copied to the host only for output.
"""

from __future__ import annotations

import logging
from functools import cached_property
from pathlib import Path

import numpy as np

from . import assembly
from .errors import InputFileError, ModelError
from .io.atomic import write_vtu
from .kernels import elastic
from .parallel import map_ordered

logger = logging.getLogger(__name__)

VOIGT = ((0, 0), (1, 1), (2, 2), (0, 1), (1, 2), (0, 2))
UNITS_NOTE = "units: length mm, force N, stress MPa, strain mm/mm, energy density mJ/mm^3"


#: per-element fields a stored result keeps instead of recovering them (:meth:`Result.stored`)
STORED_CELL_FIELDS = ("stress", "strain", "von_mises", "principal_stress", "principal_strain",
                      "strain_energy_density")
#: unit of every array :meth:`Result.to_pyvista` returns (``1`` for dimensionless codes)
FIELD_UNITS = {
    "displacement": "mm", "displacement_magnitude": "mm", "node_id": "1", "element_id": "1",
    "stress": "MPa", "stress_nodal": "MPa", "strain": "mm/mm", "von_mises": "MPa",
    "von_mises_physical": "MPa",
    "von_mises_nodal": "MPa", "principal_stress": "MPa", "principal_strain": "mm/mm",
    "min_principal_stress": "MPa", "min_principal_stress_nodal": "MPa",
    "min_principal_strain": "mm/mm", "min_principal_strain_nodal": "mm/mm",
    "max_principal_strain": "mm/mm", "max_principal_strain_nodal": "mm/mm",
    "strain_energy_density": "mJ/mm^3", "E": "MPa", "nu": "1", "orthotropic": "MPa, 1",
    "orthotropic_axis": "mm, 1",
    "region": "1", "level": "1", "part": "1", "cement": "1",
}


def region_parts(model):
    """Each element's region name split as ``"<level>/<part>"`` (at the last ``/``).

    Returns (level codes (n_elements,), level names, part codes, part names); codes index the
    names, ``-1`` where an element has no level (a name without ``/``) or no region at all.
    A disc's elements (``"L1-L2/annulus"``) get the disc's name as their level.
    An element's region is its material region (``element_region``) overridden by the named
    regions in the order they were added, so a later, more specific region (a fracture's
    ``damaged`` bone cut out of ``trabecular``, cement placed in it) wins where sets overlap.
    """
    names = np.full(model.n_elements, -1, dtype=np.int64)
    all_names = list(model.region_names)
    if len(model.element_region):
        names[:] = model.element_region
    for name, idx in model.regions.items():
        if name not in all_names:
            all_names.append(name)
        names[np.asarray(idx, dtype=np.int64)] = all_names.index(name)
    split = [n.rpartition("/") for n in all_names]
    level_names = list(dict.fromkeys(lv for lv, _, _ in split if lv))
    part_names = list(dict.fromkeys(p for _, _, p in split))
    lv_of = np.array([level_names.index(lv) if lv else -1 for lv, _, _ in split] + [-1])
    part_of = np.array([part_names.index(p) for _, _, p in split] + [-1])
    return lv_of[names], level_names, part_of[names], part_names


def add_region_parts(grid, model) -> None:
    """Cell data ``level``, ``part``, ``cement`` and field data ``level_names``,
    ``part_names`` (:func:`region_parts`) on a PyVista grid of ``model``'s elements."""
    level, level_names, part, part_names = region_parts(model)
    grid.cell_data["level"] = level
    grid.cell_data["part"] = part
    is_cement = np.array([p.startswith("cement") for p in part_names] + [False])
    grid.cell_data["cement"] = is_cement[part].astype(np.uint8)
    grid.field_data["level_names"] = level_names or [""]
    grid.field_data["part_names"] = part_names or [""]


def to_voigt(t, xp):
    return xp.stack([t[..., i, j] for i, j in VOIGT], axis=-1)


def _from_voigt(v, xp):
    t = xp.empty(v.shape[:-1] + (3, 3), dtype=v.dtype)
    for c, (i, j) in enumerate(VOIGT):
        t[..., i, j] = v[..., c]
        t[..., j, i] = v[..., c]
    return t


class Result:
    """The solution of :func:`fem.solve` on a :class:`~fem.model.Model`."""

    def __init__(self, model, displacement, *, backend, system, reaction_dofs, reaction_values,
                 plate_dofs=None, info=None):
        self.model = model
        self.backend = backend
        self.displacement = displacement  # (n, 3), mm
        self.system = system
        self.info = info
        self._reaction_dofs = np.asarray(reaction_dofs)
        self._reaction_values = backend.to_host(reaction_values)
        self._plate_dofs = plate_dofs
        #: more per-element fields written with the result (host arrays, n_elements first), e.g.
        #: the damage or equivalent plastic strain of a nonlinear step (:mod:`fem.nonlinear`)
        self.extra_cell_fields: dict = {}

    @property
    def xp(self):
        return self.backend.xp

    @classmethod
    def stored(cls, model, displacement, cell_fields: dict | None = None) -> Result:
        """A result read back from a file (a study run's VTU): the model and the displacement
        (n, 3) mm, and the stored per-element fields (``stress``, ``von_mises``, ...), which are
        then not recovered again. Reactions and applied loads are not stored: asking for them
        is a :class:`fem.ModelError` that says so."""
        from .kernels.backend import get_backend

        r = cls(model, np.asarray(displacement, dtype=float), backend=get_backend("numpy"),
                system=None, reaction_dofs=np.zeros(0, dtype=np.int64),
                reaction_values=np.zeros(0))
        for name, value in (cell_fields or {}).items():
            if name in STORED_CELL_FIELDS:
                r.__dict__[name] = np.asarray(value, dtype=float)
        return r

    def _solved(self, what: str) -> None:
        if self.system is None:
            raise ModelError(f"this result was read back from a file, which does not store "
                             f"{what}: solve the model to get them")

    # ------------------------------------------------------------ integration points

    @cached_property
    def _ip(self):
        """Per cell block: strain and stress at the integration points (m, g, 6), w det J (m, g)."""
        xp = self.xp
        model = self.model
        pts = xp.asarray(model.points)
        u = self.displacement
        lam_all, mu_all, bbar_all, ortho_row, C_all = assembly.materials(model, xp)

        def recover(item):
            bi, sl = item
            b = model.blocks[bi]
            G, wdet, X = assembly.element_geometry(model, bi, sl, xp, pts)
            gsl = slice(b.start + sl.start, b.start + sl.stop)
            ue = u[xp.asarray(b.conn[sl])]
            bbar = bbar_all[gsl] if b.type == "hex8" else None
            eps = elastic.strains(G, wdet, ue, bbar)
            sig = elastic.isotropic_stress(eps, lam_all[gsl], mu_all[gsl])
            orth = assembly.orthotropic_rows(ortho_row, gsl)
            if orth is not None:
                loc = xp.asarray(orth[0])
                C = assembly.orthotropic_at(model, C_all, orth, gsl, X, b.etype, xp)
                sig[loc] = elastic.general_stress(eps[loc], C)
            return bi, to_voigt(eps, xp), to_voigt(sig, xp), wdet

        parts = [([], [], []) for _ in model.blocks]
        work = assembly.chunks(model, xp, per_element=96)
        for bi, e, s, w in (map_ordered(recover, work) if xp is np else map(recover, work)):
            parts[bi][0].append(e)
            parts[bi][1].append(s)
            parts[bi][2].append(w)
        return [tuple(xp.concatenate(p) for p in blk) for blk in parts]

    def integration_point_stress(self) -> list:
        """Stress at the integration points, one (m, g, 6) array per cell block (MPa)."""
        return [s for _, s, _ in self._ip]

    def integration_point_strain(self) -> list:
        """Strain at the integration points, one (m, g, 6) array per cell block."""
        return [e for e, _, _ in self._ip]

    @cached_property
    def strain(self):
        """Element-average strain (n_elements, 6): xx, yy, zz, xy, yz, xz."""
        return self.xp.concatenate([e.mean(axis=1) for e, _, _ in self._ip])

    @cached_property
    def stress(self):
        """Element-average Cauchy stress (n_elements, 6) in MPa: xx, yy, zz, xy, yz, xz."""
        return self.xp.concatenate([s.mean(axis=1) for _, s, _ in self._ip])

    @cached_property
    def element_volume(self):
        """Element volumes (mm^3) by the same quadrature as the stiffness."""
        return self.xp.concatenate([w.sum(axis=1) for _, _, w in self._ip])

    @cached_property
    def strain_energy_density(self):
        """Element-average strain energy density 1/2 sigma:epsilon (MPa = mJ/mm^3)."""
        return self.xp.concatenate([_sed(e, s).mean(axis=1) for e, s, _ in self._ip])

    def strain_energy(self) -> float:
        """Total strain energy (N mm), integrated with the stiffness quadrature (= 1/2 u.K.u)."""
        return float(sum((_sed(e, s) * w).sum() for e, s, w in self._ip))

    @cached_property
    def von_mises(self):
        """Von Mises equivalent stress of the element-average stress (MPa)."""
        return von_mises(self.stress)

    @cached_property
    def physical_stress(self):
        """The element-average stress at the physical thickness of thin layers (MPa): a layer
        thinner than its elements carries a scaled modulus (the builders' thickness
        compensation, ``model.metadata["layer_factors"]``, region -> model / physical modulus,
        e.g. t / h), which keeps its share of the load but reports the factor times its stress;
        its strain is the physical one, so its physical stress is the model's over the factor.
        Elsewhere it is :attr:`stress`."""
        f = layer_stress_factors(self.model)
        if f is None:
            return self.stress
        xp = self.xp
        return self.stress * xp.asarray(f)[:, None]

    @cached_property
    def von_mises_physical(self):
        """Von Mises stress of :attr:`physical_stress` (MPa)."""
        return von_mises(self.physical_stress)

    @cached_property
    def principal_stress(self):
        """Principal stresses of the element-average stress (n, 3), descending (MPa)."""
        return principal(self.stress)

    @cached_property
    def principal_strain(self):
        """Principal strains of the element-average strain (n, 3), descending."""
        return principal(self.strain)

    def nodal_average(self, values):
        """Average element values (n_elements, ...) at the nodes, for smooth contour plots."""
        xp = self.xp
        values = xp.asarray(values)
        flat = values.reshape(values.shape[0], -1)
        acc = xp.zeros((self.model.n_nodes, flat.shape[1]))
        cnt = xp.zeros(self.model.n_nodes)
        for b in self.model.blocks:
            conn = xp.asarray(b.conn)
            v = flat[b.start:b.stop]
            idx = conn.ravel()
            for c in range(flat.shape[1]):
                acc[:, c] += xp.bincount(idx, weights=xp.repeat(v[:, c], conn.shape[1]),
                                         minlength=self.model.n_nodes)
            cnt += xp.bincount(idx, minlength=self.model.n_nodes)
        acc /= xp.maximum(cnt, 1)[:, None]
        return acc.reshape((self.model.n_nodes,) + values.shape[1:])

    # ------------------------------------------------------------ reactions

    @cached_property
    def reactions(self) -> dict:
        """Support reactions per constrained set: name -> force (3,) in N. Each constrained dof
        counts once, for the first condition that constrained it (sets sharing an edge do not
        count it twice), so the forces add up to :meth:`reaction_total`. Rigid plates with
        prescribed components give (6,): force (N) and moment (N mm) about the reference point,
        zero where not prescribed."""
        self._solved("the reactions")
        out = {}
        rd, rv = self._reaction_dofs, self._reaction_values
        n3 = 3 * self.model.n_nodes
        for name, _, _ in self.system.constraint_sets:
            out.setdefault(name, np.zeros(3))
        for d, v, owner in zip(rd.tolist(), rv.tolist(), self.system.fixed_owners):
            if d < n3:
                out[owner][d % 3] += v
        pos = {d: i for i, d in enumerate(rd.tolist()) if d >= n3}
        for p in self.system.plates:
            fm = np.zeros(6)
            for comp in p.prescribed:
                fm[comp] = rv[pos[p.first_dof + comp]]
            if p.prescribed:
                out[p.name] = fm
        return out

    @property
    def reaction_values(self) -> np.ndarray:
        """The reaction at each constrained dof (host array: N, or N mm at a plate's
        prescribed rotations), in the order of ``system.fixed_dofs``."""
        return self._reaction_values

    def _force_reactions(self) -> tuple[np.ndarray, np.ndarray]:
        """(component 0..2, value N) of each reaction that is a force: those at mesh dofs and
        at the prescribed translations of rigid plates (not their moments)."""
        self._solved("the reactions")
        rd, rv = self._reaction_dofs, self._reaction_values
        n3 = 3 * self.model.n_nodes
        comp = np.where(rd < n3, rd % 3, -1)
        for p in self.system.plates:
            local = rd - p.first_dof
            on = (local >= 0) & (local < 3)
            comp[on] = local[on]
        keep = comp >= 0
        return comp[keep], rv[keep]

    def _applied_forces(self) -> np.ndarray:
        """The applied forces as (k, 3): mesh nodes', then each rigid plate's (N)."""
        self._solved("the applied loads")
        f = np.asarray(self.system.f)
        n3 = 3 * self.model.n_nodes
        return np.concatenate([f[:n3].reshape(-1, 3)]
                              + [f[p.first_dof:p.first_dof + 3][None] for p in self.system.plates])

    def reaction_total(self) -> np.ndarray:
        """Sum of all support reaction forces (N), each constrained dof counted once."""
        comp, val = self._force_reactions()
        total = np.zeros(3)
        np.add.at(total, comp, val)
        return total

    def applied_total(self) -> np.ndarray:
        """Sum of all applied forces (N): nodal forces, surface loads and plate forces."""
        return self._applied_forces().sum(axis=0)

    def balance(self) -> tuple[np.ndarray, float]:
        """(resultant (3,), forces involved): the sum of the applied forces and the reactions
        (N; zero in equilibrium) and the 1-norm of both (N), what the resultant is judged
        against (:func:`fem.analysis.verify_answer`)."""
        _, val = self._force_reactions()
        scale = float(np.abs(self._applied_forces()).sum() + np.abs(val).sum())
        return self.applied_total() + self.reaction_total(), scale

    def plate_motion(self, name: str) -> np.ndarray:
        """Displacement (mm) and rotation (rad) of a rigid plate's reference point, (6,)."""
        self._solved("a plate's motion")
        for p in self.system.plates:
            if p.name == name:
                z = self.backend.to_host(self._plate_dofs)
                off = p.first_dof - 3 * self.model.n_nodes
                return z[off:off + 6]
        raise KeyError(f"no rigid plate named {name!r}")

    # ------------------------------------------------------------ output

    def cell_fields(self) -> dict:
        """Host arrays of the per-element output fields, in the model's element order."""
        h = self.backend.to_host
        m = self.model
        return {
            "element_id": m.element_ids,
            **{name: h(getattr(self, name)) for name in STORED_CELL_FIELDS},
            "E": m.E,
            "nu": m.nu,
            "region": m.element_region,
            **({"orthotropic": m.ortho} if m.orthotropic_mask().any() else {}),
            **({"orthotropic_axis": m.ortho_axis} if m.cylindrical_mask().any() else {}),
            **({"von_mises_physical": h(self.von_mises_physical)}
               if layer_stress_factors(m) is not None else {}),
            **self.extra_cell_fields,
        }

    def point_fields(self) -> dict:
        h = self.backend.to_host
        return {
            "displacement": h(self.displacement),
            "node_id": self.model.node_ids,
            "von_mises_nodal": h(self.nodal_average(self.von_mises)),
        }

    def to_meshio(self):
        """A :class:`meshio.Mesh` with every output field (what :meth:`write` writes)."""
        import meshio

        m = self.model
        cells = [(b.etype.meshio, b.conn) for b in m.blocks]
        cf = self.cell_fields()
        cell_data = {k: [v[b.start:b.stop] for b in m.blocks] for k, v in cf.items()}
        field_data = {UNITS_NOTE: np.array([1])}
        for code, name in enumerate(m.region_names):
            field_data[f"region {code}: {name}"] = np.array([code])
        return meshio.Mesh(m.points, cells, point_data=self.point_fields(), cell_data=cell_data,
                           field_data=field_data)

    def write(self, path, *, compression: str | None = "zlib") -> Path:
        """Write a VTU file atomically (temporary file, then rename); returns the path."""
        path = Path(path)
        if path.suffix.lower() != ".vtu":
            raise InputFileError(f"output file {path} must end in .vtu")
        return write_vtu(path, self.to_meshio(), compression=compression)

    def to_pyvista(self):
        """A :class:`pyvista.UnstructuredGrid` for plotting: every field :meth:`write` writes,
        under the same names, plus

        * cell data ``level`` and ``part``: integer codes of the element's region name split as
          ``"<level>/<part>"`` (``-1`` for no level; names in field data ``level_names`` and
          ``part_names``; see :func:`region_parts`), and ``cement`` (1 where the part's name
          starts with ``cement``: solid cement, cement-bone composite, leaked cement);
        * cell data ``min_principal_stress``, ``min_principal_strain``, ``max_principal_strain``
          (the last and first columns of the principal values) and point data ``<name>_nodal``,
          their averages at the nodes (with ``von_mises_nodal`` and ``stress_nodal``) for smooth
          contours, and ``displacement_magnitude``.

        Units: array names stay as in the VTU (the names the DESIGN contract lists, so scripts
        and ParaView see the same arrays); each array's unit is in field data ``units`` as
        ``"<name>: <unit>"`` strings and in :data:`FIELD_UNITS`.
        """
        import pyvista as pv

        m = self.model
        grid = pv.from_meshio(self.to_meshio())
        h = self.backend.to_host
        ps, pe = h(self.principal_stress), h(self.principal_strain)
        derived = {"min_principal_stress": ps[:, -1], "min_principal_strain": pe[:, -1],
                   "max_principal_strain": pe[:, 0]}
        for name, values in derived.items():
            grid.cell_data[name] = values
            grid.point_data[f"{name}_nodal"] = h(self.nodal_average(self.xp.asarray(values)))
        grid.point_data["stress_nodal"] = h(self.nodal_average(self.stress))
        grid.point_data["displacement_magnitude"] = np.linalg.norm(h(self.displacement), axis=1)
        add_region_parts(grid, m)
        grid.field_data["units"] = [f"{k}: {u}" for k, u in FIELD_UNITS.items()
                                    if k in grid.cell_data or k in grid.point_data]
        grid.field_data["region_names"] = list(m.region_names) or [""]
        return grid

    def summary(self) -> str:
        m = self.model
        return summary_text(self, m.n_nodes, m.n_elements, m.n_dof, self.von_mises)


def _sed(eps, sig):
    # 1/2 sigma:eps with tensor components: shear terms count twice
    return 0.5 * ((sig[..., :3] * eps[..., :3]).sum(-1) + 2.0 * (sig[..., 3:] * eps[..., 3:]).sum(-1))


def layer_stress_factors(model):
    """Per element, physical stress / model stress (1 / factor) for the elements of the thin
    layers in ``model.metadata["layer_factors"]`` (by material region), 1 elsewhere; None when
    the model has no thickness-compensated layer."""
    factors = model.metadata.get("layer_factors") or {}
    f = None
    for code, name in enumerate(model.region_names):
        k = factors.get(name)
        if k is None or not (0.0 < k < 1.0):
            continue
        if f is None:
            f = np.ones(model.n_elements)
        f[model.element_region == code] = 1.0 / k
    return f


def von_mises(s):
    """Von Mises stress of Voigt-ordered tensors (..., 6)."""
    from .kernels.backend import array_module

    xp = array_module(s)
    a, b, c = s[..., 0], s[..., 1], s[..., 2]
    return xp.sqrt(0.5 * ((a - b) ** 2 + (b - c) ** 2 + (c - a) ** 2)
                   + 3.0 * (s[..., 3] ** 2 + s[..., 4] ** 2 + s[..., 5] ** 2))


def tensors(v):
    """Symmetric 3 x 3 tensors (..., 3, 3) of Voigt-ordered ones (..., 6), on their backend."""
    from .kernels.backend import array_module

    return _from_voigt(v, array_module(v))


def principal(s):
    """Principal values of Voigt-ordered symmetric tensors (..., 6), descending (..., 3)."""
    from .kernels.backend import array_module

    xp = array_module(s)
    w = xp.linalg.eigvalsh(_from_voigt(s, xp))
    return w[..., ::-1]


def mean_pressure(stress, volume, elements) -> float:
    """Volume-mean hydrostatic pressure -tr(sigma)/3 (MPa) of ``elements`` from the element
    stresses (n_elements, 6) and volumes (n_elements,) on the host (a nucleus's pressure)."""
    p = -np.asarray(stress)[elements, :3].sum(axis=1) / 3.0
    v = np.asarray(volume)[elements]
    return float((p * v).sum() / v.sum())


def summary_text(result, n_nodes: int, n_elements: int, n_dof: int, von_mises_) -> str:
    """The lines of a result's ``summary()``: sizes, the largest displacement and von Mises
    stress, the applied and reaction totals, and the solve's own summary."""
    h = result.backend.to_host
    u = np.linalg.norm(h(result.displacement), axis=1)
    lines = [
        f"nodes {n_nodes}, elements {n_elements}, dofs {n_dof}",
        f"max displacement {u.max():.6g} mm, max von Mises {h(von_mises_).max():.6g} MPa",
        f"applied force {np.array2string(result.applied_total(), precision=4)} N, "
        f"reaction total {np.array2string(result.reaction_total(), precision=4)} N",
    ]
    if result.info is not None:
        lines.append(result.info.summary())
    return "\n".join(lines)
