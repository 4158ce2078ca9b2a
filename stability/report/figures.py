"""Figures with seaborn, rendered off-screen by Agg (never through pyplot: no display, no
global backend switch, safe inside a notebook or a worker process).

Every figure keeps one color per transition (:data:`.data.TRANSITION_COLORS`), a shade per
set of transition options, and a line style for any other setting that differs. A line is the
mean over seeds (geometric on a log axis) with a 95% Student-t band; one seed draws no band.
Each panel has its own y-axis. A grid of two options of one transition is a heatmap, not a
bundle of lines. A figure is drawn only when it has data; otherwise the report says why.

The figures live in modules by job: :mod:`.figures_split` (Jacobian norm, gradient flow,
spectra), :mod:`.figures_learning` (learning curves), :mod:`.figures_sigma` (σ(W), speed),
:mod:`.figures_grid` (options grids); :mod:`.figures_base` has what they share and
:mod:`.figures_text` the words (how to read each figure, protocol notices).
"""
from __future__ import annotations

import warnings
from pathlib import Path

import seaborn as sns

from .data import Collection
from .figures_base import MAX_POINTS, FigureResult
from .figures_grid import fig_options_grids, find_grids
from .figures_learning import fig_learning_curves
from .figures_sigma import fig_singular_values_training, fig_speed
from .figures_split import fig_by_split, split_jobs
from .figures_text import HOW_TO_READ, protocol_notice, protocol_notices


def build_figures(coll: Collection, out_dir: Path, svg: bool = True) -> list[FigureResult]:
    """Draw every figure the store has data for; the rest come back with a reason."""
    out_dir = Path(out_dir)
    with sns.axes_style("whitegrid"), sns.plotting_context("notebook", font_scale=0.85):
        return _build(coll, out_dir, svg)


def _build(coll: Collection, out_dir: Path, svg: bool) -> list[FigureResult]:
    try:
        grids = find_grids(coll)
    except Exception as exc:  # noqa: BLE001 - without grids every configuration is drawn as a line
        warnings.warn(f"stability report: options grids not found: {exc!r}", RuntimeWarning, stacklevel=3)
        grids = []
    split = {name: (title, job) for name, title, job in split_jobs(coll, out_dir, svg, grids)}
    jobs = [
        ("jacobian_norm", *split["jacobian_norm"]),
        ("options_grid", "Options grids", lambda: fig_options_grids(coll, out_dir, svg, grids)),
        ("gradient_flow", *split["gradient_flow"]),
        ("learning_curves", "Learning curves", lambda: fig_learning_curves(coll, out_dir, svg, grids)),
        ("singular_values_training", "Singular values of W over training",
         lambda: fig_singular_values_training(coll, out_dir, svg, grids)),
        ("singular_value_spectrum", *split["singular_value_spectrum"]),
        ("lyapunov_spectrum", *split["lyapunov_spectrum"]),
        ("speed", "Time per training step against hidden size", lambda: fig_speed(coll, out_dir, svg)),
    ]
    figs: list[FigureResult] = []
    for name, title, job in jobs:
        try:
            out = job()
        except Exception as exc:  # noqa: BLE001 - one broken figure must not cost the whole report
            warnings.warn(f"stability report: figure {name!r} could not be drawn: {exc!r}", RuntimeWarning,
                          stacklevel=3)
            out = FigureResult(name, title, HOW_TO_READ.get(name, ""),
                               reason=f"could not be drawn ({type(exc).__name__}: {exc}); please report this.")
        figs += out if isinstance(out, list) else [out]
    return figs


__all__ = ["FigureResult", "HOW_TO_READ", "MAX_POINTS", "build_figures", "fig_by_split", "fig_learning_curves",
           "fig_options_grids", "fig_singular_values_training", "fig_speed", "find_grids", "protocol_notice",
           "protocol_notices"]
