"""Figures of one quantity at initialization and after training, one row per experiment:
the Jacobian norm against the gap, the gradient flow, the singular-value and Lyapunov spectra.

Every panel has its own y-axis fitted to its data (a probe decaying to 1e-40 does not squash a
task decaying to 1e-3); the two panels of one row share it only when their ranges are alike.
"""
from __future__ import annotations

from pathlib import Path

from .data import Collection
from .figures_base import (FigureResult, Canvas, add_labels, float_floor, group_order, missing_configs, series_frame,
                           split_title, suite_text)
from .figures_lines import Drawn, aggregate, draw_lines, fit_ylim, legend, panel_notes, share_similar_ylims
from .figures_grid import Grid, collapse_grids
from .figures_text import BAND_TEXT, COINCIDE_TEXT, HOW_TO_READ


def fig_by_split(coll: Collection, out_dir: Path, svg: bool, grids: list[Grid], *, name: str, title: str,
                 metric: str, what: str, xlabel: str, ylabel: str, logx: bool, logy: bool,
                 hline: float | None = None, alt_metric: str | None = None) -> FigureResult:
    res = FigureResult(name, title, HOW_TO_READ[name])
    df = series_frame(coll, ("init", "final"), metric)
    used = metric
    if not len(df) and alt_metric:
        df = series_frame(coll, ("init", "final"), alt_metric)
        used = alt_metric
    if not len(df):
        res.reason = f"no `{metric}` rows (split init or final) in this store."
        return res
    floor, floor_name = (float_floor(coll, set(df["config_key"])) if logy else (None, ""))
    if logy:
        negative = df["y"] < 0
        if negative.any():
            res.notes.append(f"{int(negative.sum())} negative {what} value(s) left out of the log-scale plot.")
        df = df[~negative]
    if logx:
        df = df[df["x"] > 0]
    if not len(df):
        res.reason = f"no positive `{used}` values to plot."
        return res
    res.notes += missing_configs(coll, df, what, needs_w=metric == "singular_value")
    keys = set(df["config_key"])
    if metric != "singular_value" and any(run["config"].get("transition") == "lstm" and run["config_key"] in keys
                                          for _, run in coll.finished.iterrows()):
        res.notes.append("LSTM: the state is the pair (h, c), 2n numbers; the probe's h_t here is that pair.")
    df, grid_notes = collapse_grids(coll, df, grids)
    df = add_labels(coll, df)
    if used != metric:
        res.notes.append(f"`{metric}` was not recorded; `{used}` is plotted instead.")
    res.notes += grid_notes
    splits = [s for s in ("init", "final") if (df["split"] == s).any()]
    groups = group_order(zip(df["kind"], df["name"]))
    canvas = Canvas(ncols=len(splits), nrows=len(groups), height=3.6 if len(groups) > 1 else 4.2)
    drawn: list[tuple[str, Drawn]] = []
    identical: list[str] = []
    for gi, (kind, gname) in enumerate(groups):
        gdf = df[(df["kind"] == kind) & (df["name"] == gname)]
        row, handles, empty = [], {}, None
        for si, split in enumerate(splits):
            ax = canvas.axes[gi * len(splits) + si]
            sub = gdf[gdf["split"] == split]
            ax.set_xlabel(xlabel)
            ax.set_ylabel(ylabel)
            if not len(sub):
                ax.set_axis_off()
                empty = ax
                ax.text(0.5, 0.02, f"({gname} {kind} runs: nothing recorded {split_title(split)})", ha="center",
                        va="bottom", transform=ax.transAxes, fontsize=9, color="#666")
                continue
            lines = aggregate(coll, sub, log=logy, floor=floor)
            d = draw_lines(ax, lines, logx=logx, logy=logy, floor=floor, floor_name=floor_name)
            drawn.append((f"{gname} {kind} {split_title(split)}", d))
            identical += [f"{', '.join(g)} ({gname} {kind}, {split_title(split)})" for g in d.identical]
            handles.update({h.get_label(): h for h in d.handles if h.get_label() not in handles})
            if hline is not None:
                ax.axhline(hline, color="black", lw=0.8, ls=":", zorder=0)
            row.append((ax, fit_ylim(ax, lines, logy, refs=(hline,) if hline is not None else (), floor=floor)))
            seeds = sorted(d.seeds)
            seeds_text = f"{seeds[0]}" + (f"–{seeds[-1]}" if len(seeds) > 1 else "")
            ax.set_title(f"{gname} {kind} runs, {split_title(split)} ({len(lines)} configurations, "
                         f"{seeds_text} seed(s) each)", fontsize=10)
        share_similar_ylims(row, logy)
        if row and empty is not None and empty is canvas.axes[gi * len(splits) + len(splits) - 1]:
            legend(empty, handles.values(), inside=True)  # the empty panel on the right holds it
        elif row:
            legend(row[-1][0], handles.values())
    if identical:
        res.how_to_read += " " + COINCIDE_TEXT.format(groups="; ".join(identical))
    res.notes += panel_notes(drawn, floor, floor_name)
    canvas.title(title, f"{suite_text(coll)} · {BAND_TEXT} · each panel has its own y-axis")
    res.files = canvas.save(out_dir, name, svg)
    return res


def split_jobs(coll: Collection, out_dir: Path, svg: bool, grids: list[Grid]) -> list[tuple]:
    """(name, title, job) for the four figures drawn by :func:`fig_by_split`."""
    def job(**kw):
        return lambda: fig_by_split(coll, out_dir, svg, grids, **kw)
    return [
        ("jacobian_norm", "Jacobian norm against gap", job(
            name="jacobian_norm", title="Jacobian norm against gap", metric="jacobian_spectral",
            alt_metric="jacobian_frobenius", what="Jacobian norms", xlabel="gap g (steps)",
            ylabel=r"$\|\partial h_{t+g} / \partial h_t\|_2$", logx=True, logy=True, hline=1.0)),
        ("gradient_flow", "Gradient flow: ‖∂L/∂h_t‖ over t", job(
            name="gradient_flow", title="Gradient flow: ‖∂L/∂h_t‖ over t", metric="grad_norm",
            what="gradient norms", xlabel="time step t", ylabel=r"$\|\partial L / \partial h_t\|$", logx=False,
            logy=True)),
        ("singular_value_spectrum", "Singular value spectrum of W", job(
            name="singular_value_spectrum", title="Singular value spectrum of W", metric="singular_value",
            what="singular values", xlabel="index i (descending)", ylabel=r"$\sigma_i(W)$", logx=False, logy=True,
            hline=1.0)),
        ("lyapunov_spectrum", "Lyapunov spectrum", job(
            name="lyapunov_spectrum", title="Lyapunov spectrum", metric="lyapunov", what="Lyapunov exponents",
            xlabel="index i (descending)", ylabel=r"exponent $\lambda_i$ (per step)", logx=False, logy=False,
            hline=0.0)),
    ]


__all__ = ["fig_by_split", "split_jobs"]
