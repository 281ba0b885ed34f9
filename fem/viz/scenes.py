"""Standard PyVista views of a solved vertebra or segment model.

Every view returns a :class:`pyvista.Plotter`; the caller shows it (``plotter.show()``) or saves
it (``plotter.screenshot("view.png")``). Plotters are off-screen where no display is reachable
(:func:`headless`), so the same script runs on a desktop and on a headless server or CI, where
VTK renders through EGL (Debian/Ubuntu packages ``libegl1`` and ``libgl1-mesa-dri``).

Views are built from *scenes*: the datasets to draw, the field shown and its data range. The
colour range of a view is the data range of what it shows (the cut, the clipped body, the
endplates), so the colour bar's ends are the extreme values on screen; :func:`side_by_side`
puts several results on one colour scale, the union of their ranges. Units: mm, MPa; colour-bar
titles carry them.

Anatomical frame: :func:`fem.anatomy.level_frame` (axial, anterior, lateral = patient's left).
Mid-sagittal cuts are seen from the patient's left (anterior on the left of the image),
mid-coronal cuts from the front.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field

import numpy as np

from .. import metrics
from ..anatomy import level_frame
from ..errors import SetError
from ..parts import DISC, LIGAMENT
from ..result import FIELD_UNITS, add_region_parts

#: fields the views colour by: name -> (label, colour map). Cell arrays of
#: :meth:`fem.Result.to_pyvista`; ``smooth=True`` shows their nodal average ``<name>_nodal``.
FIELDS = {
    "von_mises": ("von Mises stress", "viridis"),
    "min_principal_strain": ("minimum principal strain", "viridis_r"),
    "max_principal_strain": ("maximum principal strain", "viridis"),
    "min_principal_stress": ("minimum principal stress", "viridis_r"),
    "strain_energy_density": ("strain energy density", "viridis"),
    "displacement_magnitude": ("displacement", "viridis"),
    "E": ("elastic modulus", "viridis"),
}
#: colours of the cement parts in :func:`cement_view`
CEMENT_COLOURS = {"cement": "royalblue", "cement_composite": "deepskyblue",
                  "cement_leak": "red"}
BONE_COLOUR = "wheat"
DISC_COLOUR = "lightgray"
#: parts drawn grey, outside the colour scale, unless a view is asked to colour them: their
#: strains (tens of %) would squeeze the bone's into one colour (the discs, and the posterior
#: ligaments, soft tissue as they are)
DISC_PARTS = DISC + LIGAMENT
OUTLINE_COLOUR = "red"
BULGE_LABEL = "endplate bulge into the body [mm]"
WINDOW = (800, 600)


# ---------------------------------------------------------------------- rendering set-up

def headless() -> bool:
    """True on Linux without an X or Wayland display, where only off-screen rendering works."""
    return sys.platform.startswith("linux") and not (os.environ.get("DISPLAY")
                                                     or os.environ.get("WAYLAND_DISPLAY"))


def _plotter(shape, off_screen, window_size):
    import pyvista as pv

    if headless():
        # VTK's Linux wheels try X first and warn before falling back; go to EGL directly
        os.environ.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkEGLRenderWindow")
        off_screen = True
    elif off_screen is None:
        off_screen = bool(pv.OFF_SCREEN)
    return pv.Plotter(shape=shape, off_screen=off_screen, window_size=list(window_size),
                      border=False)


# ---------------------------------------------------------------------- scene description

@dataclass
class Layer:
    """One dataset of a scene: coloured by the scene's field when ``scalars`` is set, else drawn
    with ``style`` (colour, opacity, line width, ...)."""

    name: str
    mesh: object
    scalars: str | None = None
    preference: str = "cell"
    style: dict = field(default_factory=dict)


@dataclass
class Scene:
    """What one subplot shows. ``data_range`` is (min, max) of the field over the coloured
    layers; ``camera`` is (position, focal point, view up)."""

    title: str
    layers: list
    camera: tuple
    field: str | None = None
    bar_title: str | None = None
    cmap: str = "viridis"
    data_range: tuple | None = None
    parallel: bool = True
    legend: list | None = None
    zoom: float = 1.0


def _data_range(layers) -> tuple | None:
    vals = [np.asarray(ly.mesh.cell_data[ly.scalars] if ly.preference == "cell"
                       else ly.mesh.point_data[ly.scalars], dtype=float)
            for ly in layers if ly.scalars is not None and ly.mesh.n_points]
    vals = [v[np.isfinite(v)] for v in vals]
    vals = [v for v in vals if v.size]
    if not vals:
        return None
    return float(min(v.min() for v in vals)), float(max(v.max() for v in vals))


def _draw(pl, scene: Scene, clim, scale: float = 1.0) -> None:
    if clim is not None and clim[0] == clim[1]:
        clim = (clim[0] - 0.5 * abs(clim[0]) - 1e-12, clim[1] + 0.5 * abs(clim[1]) + 1e-12)

    def pt(size):
        return max(5, round(size * scale))

    pl.add_text(scene.title, position="upper_edge", font_size=pt(10), name="title")
    for ly in scene.layers:
        if not ly.mesh.n_points:
            continue
        if ly.scalars is not None:
            pl.add_mesh(ly.mesh, scalars=ly.scalars, preference=ly.preference, clim=clim,
                        cmap=scene.cmap, name=ly.name, show_scalar_bar=True,
                        scalar_bar_args={"title": scene.bar_title, "n_labels": 5,
                                         "fmt": "%.3g", "vertical": False,
                                         "position_x": 0.15, "position_y": 0.01,
                                         "width": 0.7, "height": 0.1,
                                         "unconstrained_font_size": True,
                                         "title_font_size": pt(13),
                                         "label_font_size": pt(11)},
                        **ly.style)
            # labels below the bar, title above: otherwise they overlap
            pl.scalar_bars[scene.bar_title].SetTextPositionToPrecedeScalarBar()
        else:
            pl.add_mesh(ly.mesh, name=ly.name, **ly.style)
    if scene.legend:
        pl.add_legend(scene.legend, bcolor="white", face="rectangle", size=(0.3, 0.06 * len(
            scene.legend)), loc="lower left")
    pl.camera_position = scene.camera
    if scene.parallel:
        pl.enable_parallel_projection()
    pl.reset_camera()
    _frame(pl.camera, scene.zoom, scene.data_range is not None)


def _frame(camera, zoom: float, bar: bool) -> None:
    """Leave room for the title (top) and the colour bar (bottom): shrink the fitted view to
    80 % and, with a bar, move it up by 3 % of the height."""
    camera.zoom(0.8 * zoom)
    if not bar:
        return
    pos, foc, up = (np.asarray(v, float) for v in (camera.position, camera.focal_point,
                                                   camera.up))
    d = foc - pos
    up = up - (up @ d) / (d @ d) * d
    up /= np.linalg.norm(up)
    half = (camera.parallel_scale if camera.parallel_projection
            else np.linalg.norm(d) * np.tan(np.radians(camera.view_angle) / 2))
    shift = -0.06 * half * up
    camera.position, camera.focal_point = tuple(pos + shift), tuple(foc + shift)


def _show(rows, *, off_screen=None, window_size=None, link=False):
    """A plotter with ``rows`` (list of lists of scenes) as subplots; scenes colouring by the
    same field share one colour range, the union of their data ranges."""
    n_rows, n_cols = len(rows), max(len(r) for r in rows)
    size = window_size or (min(WINDOW[0] * n_cols, 1800), min(WINDOW[1] * n_rows, 1200))
    pl = _plotter((n_rows, n_cols), off_screen, size)
    shared = {}
    for s in (s for r in rows for s in r):
        if s.data_range is not None:
            lo, hi = shared.get(s.bar_title, s.data_range)
            shared[s.bar_title] = (min(lo, s.data_range[0]), max(hi, s.data_range[1]))
    scale = min(size[0] / n_cols / WINDOW[0], size[1] / n_rows / WINDOW[1])
    for i, r in enumerate(rows):
        for j, s in enumerate(r):
            pl.subplot(i, j)
            _draw(pl, s, shared.get(s.bar_title), scale)
    if link and n_rows * n_cols > 1:
        pl.link_views()
    return pl


# ---------------------------------------------------------------------- data access

def _model(source):
    return getattr(source, "model", source)


def _grid(source):
    """The PyVista grid of a Result (every field) or of a Model (regions only)."""
    if hasattr(source, "to_pyvista") and hasattr(source, "displacement"):
        return source.to_pyvista()
    import pyvista as pv

    grid = pv.from_meshio(source.to_meshio())
    add_region_parts(grid, source)
    return grid


def _attr(record, name: str, default=None):
    """A field of a metadata record (a dataclass, or a dict once stored as JSON)."""
    if isinstance(record, dict):
        return record.get(name, default)
    return getattr(record, name, default)


def treated_level(*models) -> str:
    """The level the views show by default: the last augmented level, else the last fractured
    one, else the middle level of ``metadata["levels"]`` (of the first model that has one)."""
    for key in ("augmentations", "fractures"):
        for model in models:
            recs = model.metadata.get(key) or []
            if recs:
                return _attr(recs[-1], "level")
    md = models[0].metadata
    levels = md.get("levels") or list(md.get("anatomy", {}))
    if not levels:
        raise SetError("the model has no levels (metadata['levels']): build it with "
                       "fem.meshes.vertebra, or pass level=")
    return levels[len(levels) // 2]


def _level_code(grid, level: str) -> int:
    names = [str(n) for n in grid.field_data["level_names"]]
    if level not in names:
        raise SetError(f"level {level!r} is not in this model (levels: {', '.join(names)})")
    return names.index(level)


def _field(grid, name: str, smooth: bool) -> tuple[str, str]:
    """(array name, "cell" | "point") of a field to colour by."""
    if name not in FIELDS:
        raise ValueError(f"unknown field {name!r}: one of {', '.join(FIELDS)}")
    if name in grid.point_data and name not in grid.cell_data:
        return name, "point"
    if smooth and f"{name}_nodal" in grid.point_data:
        return f"{name}_nodal", "point"
    if name not in grid.cell_data:
        raise ValueError(f"field {name!r} needs a solved Result, not a Model")
    return name, "cell"


def bar_title(name: str) -> str:
    """Colour-bar title of a field with its unit, e.g. ``"von Mises stress [MPa]"``."""
    return f"{FIELDS[name][0]} [{FIELD_UNITS[name]}]"


def _camera(centre, direction, up, distance=200.0):
    d = np.asarray(direction, float)
    d /= np.linalg.norm(d)
    return (tuple(centre + distance * d), tuple(centre), tuple(up))


def _cells(grid, mask):
    return grid.extract_cells(np.nonzero(mask)[0])


def _surface(grid):
    """The outer surface of a set of cells (PyVista >= 0.47 wants the algorithm named)."""
    try:
        return grid.extract_surface(algorithm="dataset_surface")
    except TypeError:
        return grid.extract_surface()


# ---------------------------------------------------------------------- cuts

CUTS = {"sagittal": "lateral", "coronal": "anterior"}


def cut_plane(model, level: str, plane: str) -> tuple[np.ndarray, np.ndarray]:
    """(origin, unit normal) of the mid-sagittal or mid-coronal plane of ``level``: through
    the level's centre, normal to e_lateral (sagittal) or e_anterior (coronal)."""
    f = level_frame(model, level)
    return f.centre, (f.lateral if CUTS[plane] == "lateral" else f.anterior)


def cement_outline(grid, level_code: int | None, origin, normal):
    """The cement's boundary on a cut: boundary edges of the slice through the cement cells
    (of one level, or all levels with ``level_code=None``), as line polydata."""
    mask = grid.cell_data["cement"] == 1
    if level_code is not None:
        mask &= grid.cell_data["level"] == level_code
    if not mask.any():
        return None
    cut = _cells(grid, mask).slice(normal=normal, origin=origin)
    if not cut.n_points:
        return None
    return cut.extract_feature_edges(boundary_edges=True, feature_edges=False,
                                     manifold_edges=False, non_manifold_edges=False)


def _part_mask(grid, parts) -> np.ndarray:
    names = [str(p) for p in grid.field_data["part_names"]]
    codes = [names.index(p) for p in parts if p in names]
    return np.isin(grid.cell_data["part"], codes)


def _coloured_and_grey(grid, mask, field, smooth, discs):
    """Layers of the cells in ``mask``: coloured by ``field``, discs grey unless ``discs``."""
    name, pref = _field(grid, field, smooth)
    disc = np.zeros(grid.n_cells, bool) if discs else _part_mask(grid, DISC_PARTS)
    return (_cells(grid, mask & ~disc), name, pref), _cells(grid, mask & disc)


def _cut_scene(result, level, field, plane, smooth, context, discs) -> Scene:
    model = _model(result)
    level = level or treated_level(model)
    grid = _grid(result)
    code = _level_code(grid, level)
    origin, normal = cut_plane(model, level, plane)
    mask = np.ones(grid.n_cells, bool) if context else grid.cell_data["level"] == code
    (body, name, pref), grey = _coloured_and_grey(grid, mask, field, smooth, discs)
    layers = [Layer("cut", body.slice(normal=normal, origin=origin), name, pref),
              Layer("discs", grey.slice(normal=normal, origin=origin),
                    style={"color": DISC_COLOUR})]
    outline = cement_outline(grid, code, origin, normal)
    if outline is not None and outline.n_points:
        layers.append(Layer("cement outline", outline,
                            style={"color": OUTLINE_COLOUR, "line_width": 3}))
    e_ax = level_frame(model, level).axial
    return Scene(f"{level} mid-{plane} cut", layers, _camera(origin, normal, e_ax), field,
                 bar_title(field), FIELDS[field][1], _data_range(layers))


def mid_sagittal(result, level: str | None = None, field: str = "von_mises", *,
                 smooth: bool = False, context: bool = True, discs: bool = False,
                 off_screen: bool | None = None, window_size=None):
    """The mid-sagittal cut through ``level`` (default :func:`treated_level`), coloured by
    ``field`` (element values; ``smooth=True``: nodal averages), the cement outlined.
    ``context=True`` cuts the whole segment (neighbours and discs), else the level alone;
    discs are grey and outside the colour scale unless ``discs=True``."""
    return _show([[_cut_scene(result, level, field, "sagittal", smooth, context, discs)]],
                 off_screen=off_screen, window_size=window_size)


def mid_coronal(result, level: str | None = None, field: str = "von_mises", *,
                smooth: bool = False, context: bool = True, discs: bool = False,
                off_screen: bool | None = None, window_size=None):
    """The mid-coronal cut through ``level``, seen from the front (see :func:`mid_sagittal`)."""
    return _show([[_cut_scene(result, level, field, "coronal", smooth, context, discs)]],
                 off_screen=off_screen, window_size=window_size)


# ---------------------------------------------------------------------- 3-D maps

def _stress_scene(result, field, level, smooth, clip, discs) -> Scene:
    model = _model(result)
    level = level or treated_level(model)
    grid = _grid(result)
    f = level_frame(model, level)
    centre, e_ax, e_ant, e_lat = f.centre, f.axial, f.anterior, f.lateral
    (body, name, pref), grey = _coloured_and_grey(grid, np.ones(grid.n_cells, bool), field,
                                                  smooth, discs)

    def show(g):
        return g.clip(normal=e_lat, origin=centre) if clip else _surface(g)

    layers = [Layer("body", show(body), name, pref),
              Layer("discs", show(grey), style={"color": DISC_COLOUR})]
    cam = _camera(centre, e_lat + 0.6 * e_ant + 0.45 * e_ax, e_ax)
    what = ", cut open mid-sagittally" if clip else ""
    return Scene(f"{level}{what}", layers, cam, field,
                 bar_title(field), FIELDS[field][1], _data_range(layers), parallel=False)


def stress_map(result, field: str = "von_mises", level: str | None = None, *,
               smooth: bool = True, clip: bool = True, discs: bool = False,
               off_screen: bool | None = None, window_size=None):
    """A 3-D map of ``field`` ("von_mises", "min_principal_strain", ... see :data:`FIELDS`)
    over the model, cut open at the mid-sagittal plane of ``level`` (``clip=False``: the outer
    surface), seen from the patient's left front; ``smooth`` shows nodal averages; discs grey
    unless ``discs=True``."""
    return _show([[_stress_scene(result, field, level, smooth, clip, discs)]],
                 off_screen=off_screen, window_size=window_size)


def _cement_scene(source, level) -> Scene:
    model = _model(source)
    level = level or treated_level(model)
    grid = _grid(source)
    code = _level_code(grid, level)
    parts = [str(p) for p in grid.field_data["part_names"]]
    in_level = grid.cell_data["level"] == code
    cement = grid.cell_data["cement"] == 1
    layers = [Layer("bone", _surface(_cells(grid, in_level & ~cement)),
                    style={"color": BONE_COLOUR, "opacity": 0.18, "smooth_shading": False})]
    legend = []
    for code_p, part in enumerate(parts):
        sel = in_level & (grid.cell_data["part"] == code_p) & cement
        if sel.any():
            colour = CEMENT_COLOURS.get(part, "navy")
            layers.append(Layer(part, _surface(_cells(grid, sel)),
                                style={"color": colour}))
            legend.append([part.replace("_", " "), colour])
    import pyvista as pv

    recs = [r for r in model.metadata.get("augmentations", []) if _attr(r, "level") == level]
    title = f"{level}: no cement"
    if recs:
        r = recs[-1]
        for k, nd in enumerate(_attr(r, "needles", ())):
            layers.append(Layer(f"needle {k}", pv.Line(_attr(nd, "entry"), _attr(nd, "tip"))
                                .tube(radius=0.6), style={"color": "dimgray"}))
        leak = _attr(r, "leak_ml", 0.0)
        title = (f"{level}: {_attr(r, 'procedure')} {_attr(r, 'volume_ml'):.1f} mL cement"
                 + (f", {leak:.2f} mL leaked" if leak else ""))
    f = level_frame(model, level)
    cam = _camera(f.centre, f.lateral - 0.5 * f.anterior + 0.6 * f.axial, f.axial)
    return Scene(title, layers, cam, parallel=False, legend=legend or None, zoom=1.6)


def cement_view(source, level: str | None = None, *, off_screen: bool | None = None,
                window_size=None):
    """The cement of ``level`` (solid; cement, composite and leaks in their own colours) in
    the level's translucent bone, with the needles, from the left, above and behind.
    ``source``: a Result or a Model (no solve needed)."""
    return _show([[_cement_scene(source, level)]], off_screen=off_screen,
                 window_size=window_size)


# ---------------------------------------------------------------------- endplate bulge

def adjacent_endplates(model, level: str) -> list[tuple[str, str]]:
    """The endplates facing ``level`` across its discs: (level above, "inferior") and
    (level below, "superior"), those that exist, cranial first."""
    order = list(model.metadata.get("levels", []))
    if level not in order:
        raise SetError(f"level {level!r} is not in this model (levels: {', '.join(order)})")
    i = order.index(level)
    out = [(order[i - 1], "inferior")] if i > 0 else []
    return out + ([(order[i + 1], "superior")] if i + 1 < len(order) else [])


def endplate_deflection(result, level: str, side: str):
    """(node indices, deflection into the body (mm), rim mask) of ``"<level>/<side>"``: the
    definition of :func:`fem.metrics.endplate_deflection`, whose maximum over the endplate centre
    is ``endplate_bulge_*_mm``."""
    m = result.model
    name = f"{level}/{side}"
    if name not in m.node_sets or not len(m.node_sets[name]):
        raise SetError(f"node set {name!r} is missing or empty")
    nodes, d, rim, _ = metrics.endplate_deflection(result, level, side)
    return nodes, d, rim


def node_set_surface(model, nodes):
    """The element faces whose corners all lie in ``nodes``, as PolyData (each face once);
    point data ``node`` holds the model's node index."""
    import pyvista as pv

    inset = np.zeros(model.n_nodes, dtype=bool)
    inset[nodes] = True
    faces = []
    for b in model.blocks:
        for f in b.etype.faces:
            corners = b.conn[:, list(f[: (4 if b.etype.face_type == "quad4" else 3)])]
            faces.append(corners[inset[corners].all(axis=1)])
    by_size = {}
    for f in faces:
        if len(f):
            by_size.setdefault(f.shape[1], []).append(f)
    used = np.unique(np.concatenate([np.concatenate(v).ravel() for v in by_size.values()])
                     if by_size else np.asarray(nodes))
    local = np.full(model.n_nodes, -1, dtype=np.int64)
    local[used] = np.arange(len(used))
    cells = []
    for k, fs in by_size.items():
        f = np.concatenate(fs)
        _, first = np.unique(np.sort(f, axis=1), axis=0, return_index=True)
        f = local[f[np.sort(first)]]
        cells.append(np.hstack([np.full((len(f), 1), k), f]).ravel())
    surf = pv.PolyData(model.points[used], np.concatenate(cells) if cells else None)
    surf.point_data["node"] = used
    return surf


def _bulge_scenes(result, level) -> list[Scene]:
    model = _model(result)
    level = level or treated_level(model)
    scenes = []
    for lv, side in adjacent_endplates(model, level):
        endplate_deflection(result, lv, side)  # names a missing set
        nodes, d, rim, centre = metrics.endplate_deflection(result, lv, side)
        surf = node_set_surface(model, nodes)
        pos = np.full(model.n_nodes, -1, dtype=np.int64)
        pos[nodes] = np.arange(len(nodes))
        at = pos[surf.point_data["node"]]
        surf.point_data["endplate_bulge"] = d[at]
        surf.point_data["rim"] = rim[at].astype(np.uint8)
        surf.point_data["centre"] = centre[at].astype(np.uint8)
        f = level_frame(model, lv)
        e_ax, e_ant = f.axial, f.anterior
        points_only = {"render_points_as_spheres": True, "point_size": 8}
        layers = [Layer("endplate", surf, "endplate_bulge", "point",
                        style={} if surf.n_cells else points_only)]
        cam = _camera(model.points[nodes].mean(axis=0), e_ax, e_ant)
        scenes.append(Scene(f"{lv} {side} endplate: {d[centre].max():.3g} mm",
                            layers, cam, "endplate_bulge", BULGE_LABEL, "viridis",
                            _data_range(layers)))
    if not scenes:
        raise SetError(f"{level} has no neighbouring level in this model: no adjacent endplate")
    return scenes


def bulge_map(result, level: str | None = None, *, off_screen: bool | None = None,
              window_size=None):
    """The axial deflection of the endplates facing ``level`` (the inferior endplate of the
    level above, the superior endplate of the level below; :func:`endplate_deflection`), both
    seen from above, anterior up, on one colour scale; titles give the metric's value."""
    return _show([_bulge_scenes(result, level)], off_screen=off_screen,
                 window_size=window_size)


# ---------------------------------------------------------------------- comparison

_BUILDERS = {
    "mid_sagittal": lambda r, level=None, field="von_mises", smooth=False, context=True,
    discs=False: [_cut_scene(r, level, field, "sagittal", smooth, context, discs)],
    "mid_coronal": lambda r, level=None, field="von_mises", smooth=False, context=True,
    discs=False: [_cut_scene(r, level, field, "coronal", smooth, context, discs)],
    "stress_map": lambda r, level=None, field="von_mises", smooth=True, clip=True,
    discs=False: [_stress_scene(r, field, level, smooth, clip, discs)],
    "cement_view": lambda r, level=None: [_cement_scene(r, level)],
    "bulge_map": lambda r, level=None: _bulge_scenes(r, level),
}


def side_by_side(results: dict, view=None, *, off_screen: bool | None = None,
                 window_size=None, **kwargs):
    """One plotter with ``view`` (a view function of this module or its name; default
    :func:`mid_sagittal`) of each result in a column, titled with the dict's keys, on ONE
    colour scale: the union of the data ranges. ``kwargs`` go to the view (``field``,
    ``level``, ...); ``level=None``: :func:`treated_level` of the results together (the first
    augmented level), so every column shows the same level; where some result has no such level
    (a study whose runs treat different levels, or segments of different levels), each column
    shows its own result's treated level instead."""
    name = getattr(view, "__name__", view) or "mid_sagittal"
    if name not in _BUILDERS:
        raise ValueError(f"unknown view {name!r}: one of {', '.join(_BUILDERS)}")
    if not results:
        raise ValueError("side_by_side needs at least one result")
    levels = {label: kwargs.get("level") for label in results}
    if kwargs.get("level") is None:
        models = {label: _model(r) for label, r in results.items()}
        common = treated_level(*models.values())
        own = all(common in (m.metadata.get("levels") or ()) for m in models.values())
        levels = {label: common if own else treated_level(m) for label, m in models.items()}
    columns = []
    for label, r in results.items():
        scenes = _BUILDERS[name](r, **{**kwargs, "level": levels[label]})
        for s in scenes:
            s.title = f"{label}: {s.title}"
        columns.append(scenes)
    rows = [list(r) for r in zip(*columns)]
    return _show(rows, off_screen=off_screen, window_size=window_size,
                 link=len(rows) == 1)
