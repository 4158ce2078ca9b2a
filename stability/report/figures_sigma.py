"""The singular values of W (over training, or as a range at init and after training) and the
time per training step against the hidden size."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib import ticker
from matplotlib.patches import Patch

from .data import Collection, config_key
from .figures_base import (Canvas, FigureResult, add_labels, configs_by_key, group_order, missing_configs,
                           series_frame, suite_text, variant_colors, variant_order)
from .figures_lines import Drawn, aggregate, draw_lines, fit_ylim, legend, panel_notes, style_handle
from .figures_grid import Grid, collapse_grids
from .figures_text import BAND_TEXT, COINCIDE_TEXT, HOW_TO_READ
from .stats import t_interval

_SIGMA = {"sigma_max": "largest singular value σ_max(W)", "sigma_min": "smallest singular value σ_min(W)"}


def fig_singular_values_training(coll: Collection, out_dir: Path, svg: bool, grids: list[Grid] | None = None
                                 ) -> FigureResult:
    name = "singular_values_training"
    res = FigureResult(name, "Singular values of W over training", HOW_TO_READ[name])
    df = series_frame(coll, "probe", ("sigma_max", "sigma_min"))
    if not len(df):
        return fig_sigma_range(coll, out_dir, svg, grids or [])
    res.notes += missing_configs(coll, df, "σ(W) probes during training")
    df, grid_notes = collapse_grids(coll, df, grids or [])
    df = add_labels(coll, df)
    res.notes += grid_notes
    metrics = [m for m in ("sigma_max", "sigma_min") if (df["metric"] == m).any()]
    canvas = Canvas(ncols=len(metrics))
    drawn: list[tuple[str, Drawn]] = []
    identical: list[str] = []
    for i, (ax, m) in enumerate(zip(canvas.axes, metrics)):
        sub = df[df["metric"] == m]
        y = sub["y"]
        logy = bool((y > 0).all() and y.max() / y.min() > 20)
        lines = aggregate(coll, sub, log=logy)
        d = draw_lines(ax, lines, logy=logy)
        drawn.append((m, d))
        identical += [f"{', '.join(g)} ({m.replace('sigma_', 'σ_')})" for g in d.identical]
        ax.axhline(1.0, color="black", lw=0.8, ls=":", zorder=0)
        fit_ylim(ax, lines, logy, refs=(1.0,))
        ax.set_title(_SIGMA[m])
        ax.set_xlabel("training step")
        ax.set_ylabel(m.replace("sigma_", "σ_"))
        if i == len(metrics) - 1:
            legend(ax, d.handles)
    if identical:
        res.how_to_read += " " + COINCIDE_TEXT.format(groups="; ".join(identical))
    res.notes += panel_notes(drawn, None, "")
    canvas.title("Singular values of the transition matrix W over training",
                 f"{suite_text(coll)} · probes scheduled during training · {BAND_TEXT}")
    res.files = canvas.save(out_dir, name, svg)
    return res


def fig_sigma_range(coll: Collection, out_dir: Path, svg: bool, grids: list[Grid]) -> FigureResult:
    """[σ_min, σ_max] of W per configuration: open bar at init, filled bar after training."""
    name = "singular_values_init_final"
    res = FigureResult(name, "Singular values of W at init and after training", HOW_TO_READ[name])
    df = series_frame(coll, ("init", "final"), ("sigma_max", "sigma_min"))
    df = df[df["y"] > 0] if len(df) else df
    if not len(df):
        res.reason = ("no σ(W) rows: neither probes during training (split probe) nor sigma_min/sigma_max at "
                      "init/final.")
        return res
    df, grid_notes = collapse_grids(coll, df, grids)
    df = add_labels(coll, df)
    res.notes.append("No probes during training (split `probe`) were recorded; shown at init and after training only.")
    res.notes += grid_notes
    df["line"] = df["config_key"] + "|" + df["split"] + "|" + df["metric"]
    groups = group_order(zip(df["kind"], df["name"]))
    rows_per = [df.loc[(df["kind"] == k) & (df["name"] == n), "config_key"].nunique() for k, n in groups]
    canvas = Canvas(ncols=1, nrows=len(groups), width=7.0, height=1.0,
                    gridspec_kw={"height_ratios": [r + 1.2 for r in rows_per]})
    canvas.fig.set_size_inches(9.6, sum(0.42 * r + 0.9 for r in rows_per) + 1.0)
    colors, rank, cfgs = variant_colors(coll), variant_order(coll), configs_by_key(coll)
    seeds, allowed = set(), False
    lo_all, hi_all = np.inf, -np.inf
    for ax, (kind, gname) in zip(canvas.axes, groups):
        sub = df[(df["kind"] == kind) & (df["name"] == gname)]
        configs = sub.drop_duplicates("config_key")
        configs = configs.assign(rank=configs["variant"].map(rank)).sort_values(["rank", "order"])
        labels = []
        for row, (_, c) in enumerate(configs.iterrows()):
            label = c["variant"] + (f" · {c['settings']}" if c["settings"] else "")
            labels.append(label)
            topts = cfgs[c["config_key"]].get("transition_options") or {}
            if c["transition"] == "spectral" and isinstance(topts.get("margin"), (int, float)):
                center, margin = float(topts.get("center", 1.0)), float(topts["margin"])
                ax.fill_betweenx([row - 0.42, row + 0.42], max(center - margin, 1e-12), center + margin,
                                 color=colors.get(c["variant"], "#333"), alpha=0.13, lw=0, zorder=1)
                lo_all, hi_all = min(lo_all, center - margin), max(hi_all, center + margin)
                allowed = True
            for split, dy, filled in (("init", -0.17, False), ("final", 0.17, True)):
                ends = {}
                for m in ("sigma_min", "sigma_max"):
                    v = sub.loc[(sub["config_key"] == c["config_key"]) & (sub["split"] == split)
                                & (sub["metric"] == m), "y"].to_numpy(dtype=float)
                    if len(v):
                        logs = np.log10(v)
                        lo, hi = t_interval(float(logs.mean()), float(logs.std(ddof=1)) if len(v) > 1 else 0.0,
                                            len(v))
                        ends[m] = (10 ** logs.mean(), 10 ** lo, 10 ** hi, len(v))
                        seeds.add(len(v))
                if len(ends) < 2:
                    continue
                (a, alo, ahi, n), (b, blo, bhi, _) = ends["sigma_min"], ends["sigma_max"]
                lo_all, hi_all = min(lo_all, a), max(hi_all, b)
                color = colors.get(c["variant"], "#333")
                y = row + dy
                ax.plot([a, b], [y, y], color=color, lw=5 if filled else 2.2, alpha=1.0 if filled else 0.55,
                        solid_capstyle="round", zorder=3)
                ax.plot([a, b], [y, y], ls="none", marker="o", markersize=7 if filled else 6, color=color,
                        markerfacecolor=color if filled else "white", markeredgewidth=1.5, zorder=4)
                if n >= 2:
                    ax.errorbar([a, b], [y, y], xerr=[[a - alo, b - blo], [ahi - a, bhi - b]], ls="none",
                                color="#333", lw=0.8, capsize=2, zorder=5)
        ax.set_yticks(range(len(labels)))
        ax.set_yticklabels(labels, fontsize=8)
        ax.set_ylim(len(labels) - 0.5, -0.5)
        ax.axvline(1.0, color="black", lw=0.8, ls=":", zorder=0)
        ax.set_xscale("log")
        ax.set_title(f"{gname} {kind} runs ({sub['run_id'].nunique()} runs)", fontsize=10)
        ax.set_xlabel("singular value of W (log scale): bar from σ_min to σ_max")
    lo_all, hi_all = (lo_all, hi_all) if np.isfinite([lo_all, hi_all]).all() else (1.0, 1.0)
    for ax in canvas.axes:
        ax.set_xlim(min(lo_all, 1.0) / 1.5, max(hi_all, 1.0) * 1.5)
        ax.xaxis.set_major_locator(ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(ticker.NullFormatter())
    styles = [style_handle("at initialization", lw=2.2, marker="o", markerfacecolor="white"),
              style_handle("after training", lw=5, marker="o")]
    if allowed:
        styles.append(Patch(color="#d62728", alpha=0.13, label="σ range Spectral-RNN allows\n(center ± margin)"))
    legend(canvas.axes[0], [], styles)
    if seeds == {1}:
        res.notes.append("1 seed per configuration: no interval over seeds.")
    canvas.title("Singular values of the transition matrix W at init and after training",
                 f"{suite_text(coll)} · ends: geometric mean over seeds"
                 + (", whiskers: 95% Student-t interval" if max(seeds, default=1) > 1 else ""))
    res.files = canvas.save(out_dir, name, svg)
    return res


def fig_speed(coll: Collection, out_dir: Path, svg: bool) -> FigureResult:
    name = "speed"
    res = FigureResult(name, "Time per training step against hidden size", HOW_TO_READ[name])
    df = series_frame(coll, "train", "step_time")
    if not len(df):
        res.reason = "no `step_time` rows (split train) in this store."
        return res
    per_run = df.groupby(["run_id", "config_key", "kind", "name"], as_index=False)["y"].median()
    cfgs = {ck: c for ck, c in zip(coll.finished["config_key"], coll.finished["config"])}
    per_run["x"] = per_run["config_key"].map(lambda ck: cfgs[ck].get("hidden_size"))
    per_run = per_run.dropna(subset=["x"])
    drop = ("seed", "hidden_size", "match", "budget")
    per_run["line"] = per_run["config_key"].map(lambda ck: config_key(cfgs[ck], drop=drop))
    sizes = per_run.groupby("line")["x"].nunique()
    lines = sizes[sizes >= 2].index
    if not len(lines):
        res.reason = "step times exist for only one hidden size per configuration; the figure needs several."
        return res
    per_run = per_run[per_run["line"].isin(lines)].copy()
    per_run["y"] = per_run["y"] * 1000.0
    per_run["split"], per_run["metric"] = "train", "step_time"
    per_run = add_labels(coll, per_run, extra_drop=("hidden_size", "match", "budget"))
    canvas = Canvas(width=6.5)
    ax = canvas.axes[0]
    drawn_lines = aggregate(coll, per_run, log=True)
    d = draw_lines(ax, drawn_lines, logx=True, logy=True, markers=True)
    fit_ylim(ax, drawn_lines, True)
    xs = sorted(per_run["x"].unique())
    ax.set_xticks(xs)
    ax.set_xticklabels([str(int(x)) for x in xs])
    ax.minorticks_off()
    ax.set_xlabel("hidden size n")
    ax.set_ylabel("time per training step (ms, median over steps)")
    legend(ax, d.handles)
    if d.identical:
        res.how_to_read += " " + COINCIDE_TEXT.format(groups="; ".join(", ".join(g) for g in d.identical))
    res.notes += panel_notes([("speed", d)], None, "")
    canvas.title("Time per training step against hidden size", f"{suite_text(coll)} · {BAND_TEXT}")
    res.files = canvas.save(out_dir, name, svg)
    return res
