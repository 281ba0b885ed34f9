"""Pictures of results: PyVista scenes (:mod:`fem.viz.scenes`); 3-D views return a
:class:`pyvista.Plotter` to show or save. Off-screen rendering works without a display (EGL)."""

from .plots import risk_bars, study_curves
from .report import write_report
from .scenes import (
    FIELDS,
    bar_title,
    bulge_map,
    cement_view,
    endplate_deflection,
    headless,
    mid_coronal,
    mid_sagittal,
    side_by_side,
    stress_map,
    treated_level,
)
from .uncertainty import uq_convergence, uq_distributions, uq_fracture, uq_sensitivity

__all__ = ["FIELDS", "bar_title", "bulge_map", "cement_view", "endplate_deflection", "headless",
           "mid_coronal", "mid_sagittal", "risk_bars", "side_by_side", "stress_map", "study_curves",
           "treated_level", "uq_convergence", "uq_distributions", "uq_fracture", "uq_sensitivity",
           "write_report"]
