"""Figures with seaborn, rendered off-screen by Agg (never through pyplot: no display, no
global backend switch, safe inside a notebook or a worker process).

Every figure keeps one color per transition (:data:`.data.TRANSITION_COLORS`), a shade per
set of transition options, and a line style for any other setting that differs. A line is
the median over seeds; the band is the range (min to max) over seeds. A figure is drawn
only when it has data; otherwise the report says why it is missing.
"""
from __future__ import annotations

import json
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from matplotlib import ticker

from .data import (Collection, _hidden_from_label, baseline_of, config_key, flatten, fmt_value, settings_labels,
                   short_names, varying_keys)
from .tables import _settings_sort

#: at most this many points per run in a learning curve (longer curves are averaged in windows)
MAX_POINTS = 400
DPI = 110


@dataclass
class FigureResult:
    name: str                       # file stem
    title: str
    how_to_read: str
    files: list[str] = field(default_factory=list)   # paths relative to the report folder (PNG first)
    notes: list[str] = field(default_factory=list)   # what is missing or how the data was reduced
    reason: str = ""                # why it was not drawn (when files is empty)

    @property
    def drawn(self) -> bool:
        return bool(self.files)


HOW_TO_READ = {
    "jacobian_norm": (
        "The norm of the Jacobian ∂h_{t+g}/∂h_t: how much a perturbation of the hidden state is amplified or "
        "damped after g steps, on log–log axes. A flat line at 1 means gradients neither vanish nor explode over "
        "that many steps; a line falling towards 0 means gradients vanish (dependencies that long cannot be "
        "learned); a rising line means they explode. The slope is the decay rate; the gap where a line crosses 0.5 "
        "is the half-life."),
    "gradient_flow": (
        "The norm of the gradient of the loss with respect to the hidden state at each time step t (log scale). "
        "The loss sits at the end of the sequence, so small t is far from it: a flat profile means early steps "
        "receive as much learning signal as late ones; a profile that drops towards small t means gradients vanish "
        "on the way back, one that rises means they explode."),
    "learning_curves": (
        "The training loss against the training step (log scale), one line per configuration. The dashed line is "
        "the task's baseline, the loss of the best input-independent guess (copy: blanks, then uniform over the 8 "
        "symbols; adding: always predict 1). A curve that stays on the baseline has learned nothing the guess does "
        "not know; a sudden jump up is a loss spike."),
    "singular_values_training": (
        "The largest and smallest singular value of the transition matrix W at the probes scheduled during "
        "training. Both at 1 means W is orthogonal (norm-preserving); σ_max above 1 lets gradients explode, "
        "σ_min below 1 lets them vanish. Spectral-RNN keeps every σ inside [center − margin, center + margin] by "
        "construction; orthogonal parameterizations pin both at 1."),
    "singular_values_init_final": (
        "σ_max and σ_min of W at initialization and after training: how far training moved W away from (or "
        "towards) norm preservation. Points are medians over seeds, bars the range."),
    "singular_value_spectrum": (
        "All singular values of W in descending order, at initialization and after training. A flat spectrum at "
        "1 is an orthogonal W; the spread of the spectrum is the condition number."),
    "lyapunov_spectrum": (
        "The Lyapunov exponents of the hidden-state dynamics in descending order (per step). A top exponent "
        "above 0 means perturbations grow along the trajectory (explosion), below 0 that they shrink (vanishing "
        "gradients); exponents at 0 are marginally stable, the regime long memory needs."),
    "speed": (
        "The median time per training step against the hidden size (log–log). The slope shows how the cost grows "
        "with n: slope 2 is the n×n matrix products, a steeper slope an O(n³) construction of W. Lower is faster; "
        "compare lines at the same n."),
}


# -- data helpers --------------------------------------------------------------------
def _series_frame(coll: Collection, split: str | tuple, metric: str | tuple) -> pd.DataFrame:
    """Rows (run_id, split, metric, x, y, config_key, kind, name) for finished runs."""
    m = coll.metrics
    splits = (split,) if isinstance(split, str) else split
    metrics = (metric,) if isinstance(metric, str) else metric
    sel = m[m["split"].isin(splits) & m["metric"].isin(metrics)].dropna(subset=["value"])
    sel = sel[np.isfinite(sel["value"].to_numpy(dtype=float))]
    if not len(sel):
        return pd.DataFrame(columns=["run_id", "split", "metric", "x", "y", "config_key", "kind", "name"])
    runs = coll.finished[["id", "config_key", "kind", "name"]].rename(columns={"id": "run_id"})
    out = sel.rename(columns={"step": "x", "value": "y"}).merge(runs, on="run_id")
    return out


def _labels(coll: Collection, df: pd.DataFrame, extra_drop: tuple[str, ...] = (),
            by: tuple[str, ...] = ("kind", "name")) -> pd.DataFrame:
    """Add the hue (``variant``: transition and its options) and ``settings`` (line style) columns.

    The style shows only the settings that differ *within* one variant among the configurations
    of one group (``by``): settings that follow from the transition (the hidden size solved for a
    parameter budget) or that differ only between groups (a facet's title) are left out.
    """
    cfg_by_key = {}
    for _, run in coll.finished.iterrows():
        cfg_by_key.setdefault(run["config_key"], {k: v for k, v in run["config"].items() if k != "seed"})
    df = df.copy()
    df["variant"] = df["config_key"].map(lambda k: coll.variant(cfg_by_key[k]).label)
    df["transition"] = df["config_key"].map(lambda k: str(cfg_by_key[k].get("transition", "?")))
    labels: dict[str, str] = {}
    groups = df.groupby(list(by), sort=False)["config_key"] if by else [((), df["config_key"])]
    for _, keys in groups:
        keys = list(dict.fromkeys(keys))
        flat = {k: flatten({kk: vv for kk, vv in cfg_by_key[k].items() if kk not in extra_drop}) for k in keys}
        vary = varying_keys(list(flat.values()), include=lambda key: not _hidden_from_label(key))
        by_variant: dict[str, list[str]] = {}
        for k in keys:
            by_variant.setdefault(coll.variant(cfg_by_key[k]).label, []).append(k)
        def differs_within_a_variant(v):
            return any(len({json.dumps(flat[k].get(v, "–"), default=str) for k in ks}) > 1
                       for ks in by_variant.values())
        keep = [v for v in vary if differs_within_a_variant(v)]
        names = short_names(keep)
        for k in keys:
            text = ", ".join(f"{names[v]}={fmt_value(flat[k].get(v, '–'))}" for v in keep)
            labels[k] = text if len(text) <= 60 else text[:57] + "…"
    df["settings"] = df["config_key"].map(labels)
    order = sorted(dict.fromkeys(df["config_key"]), key=lambda k: _settings_sort(cfg_by_key[k]))
    rank = {labels[k]: i for i, k in reversed(list(enumerate(order)))}
    df.attrs["style_order"] = sorted({labels[k] for k in order if labels[k]}, key=lambda t: rank[t])
    return df


def _hue(coll: Collection, df: pd.DataFrame) -> tuple[list[str], dict[str, str]]:
    present = set(df["variant"])
    order, palette = [], {}
    for v in coll.variants.values():  # already in order: transition, then options (numerically)
        if v.label in present and v.label not in palette:
            order.append(v.label)
            palette[v.label] = v.color
    return order, palette


def _missing_configs(coll: Collection, df: pd.DataFrame, what: str) -> list[str]:
    """Configurations of the same run kinds as those in ``df`` that have no rows of this data."""
    fin = coll.finished
    groups = set(zip(df["kind"], df["name"]))
    have = set(df["config_key"])
    missing = []
    for _, run in fin.iterrows():
        if (run["kind"], run["name"]) in groups and run["config_key"] not in have:
            cfg = {k: v for k, v in run["config"].items() if k != "seed"}
            lab = f"{coll.variant(cfg).label} ({run['kind']} {run['name']})"
            if lab not in missing:
                missing.append(lab)
    return [f"No {what} for: {', '.join(missing)}."] if missing else []


def _thin(df: pd.DataFrame, max_points: int = MAX_POINTS) -> tuple[pd.DataFrame, int]:
    """Average long per-run series in windows of k consecutive steps (k reported)."""
    k_max = 1
    parts = []
    for _, g in df.groupby(["run_id", "split", "metric"], sort=False):
        g = g.sort_values("x")
        n = len(g)
        if n > max_points:
            k = math.ceil(n / max_points)
            k_max = max(k_max, k)
            block = np.arange(n) // k
            agg = g.groupby(block).agg({"x": "max", "y": "mean"})
            first = g.iloc[[0] * len(agg)].reset_index(drop=True)
            first["x"] = agg["x"].to_numpy()
            first["y"] = agg["y"].to_numpy()
            g = first
        parts.append(g)
    return (pd.concat(parts, ignore_index=True) if parts else df), k_max


# -- drawing -------------------------------------------------------------------------
class _Canvas:
    """A seaborn-styled matplotlib Figure rendered by Agg."""

    def __init__(self, ncols: int = 1, nrows: int = 1, width: float = 6.0, height: float = 4.2, sharey=False):
        self.fig = Figure(figsize=(width * ncols + 2.6, height * nrows + 0.6), layout="constrained")
        FigureCanvasAgg(self.fig)
        axes = self.fig.subplots(nrows, ncols, squeeze=False, sharey=sharey)
        self.axes = [ax for row in axes for ax in row]

    def save(self, out_dir: Path, name: str, svg: bool) -> list[str]:
        files = []
        fig_dir = out_dir / "figures"
        fig_dir.mkdir(parents=True, exist_ok=True)
        self.fig.savefig(fig_dir / f"{name}.png", dpi=DPI)
        files.append(f"figures/{name}.png")
        if svg:
            self.fig.savefig(fig_dir / f"{name}.svg")
            files.append(f"figures/{name}.svg")
        return files


def _title(canvas: _Canvas, title: str, subtitle: str) -> None:
    canvas.fig.suptitle(f"{title}\n{subtitle}", fontsize=11)


def _lines(ax, df: pd.DataFrame, coll: Collection, legend: bool, logx=False, logy=False, markers=None):
    order, palette = _hue(coll, df)
    present = set(df["settings"])
    styles = [s for s in df.attrs.get("style_order", sorted(present)) if s in present and s]
    kw = {}
    if len(styles) > 1:
        kw.update(style="settings", style_order=styles)
    if markers is None:
        markers = df.groupby("line" if "line" in df.columns else "config_key")["x"].nunique().max() <= 15
    if markers:
        kw.update(marker="o", markersize=4)
    # median and range over seeds, computed once (vectorized) rather than by seaborn per point
    df = df.assign(unit=df["line"] if "line" in df.columns else df["config_key"])
    agg = (df.groupby(["unit", "variant", "settings", "x"], sort=True)["y"]
             .agg(["median", "min", "max"]).reset_index())
    for _, g in agg.groupby("unit", sort=False):
        if (g["max"] > g["min"]).any():
            ax.fill_between(g["x"].to_numpy(dtype=float), g["min"].to_numpy(dtype=float),
                            g["max"].to_numpy(dtype=float), color=palette[g["variant"].iloc[0]], alpha=0.18, lw=0)
    sns.lineplot(data=agg, x="x", y="median", hue="variant", hue_order=order, palette=palette, units="unit",
                 estimator=None, ax=ax, legend="auto" if legend else False, linewidth=1.6, **kw)
    if logx:
        ax.set_xscale("log")
    if logy:
        ax.set_yscale("log")
        _nice_log(ax)
    if legend and ax.get_legend() is not None:
        sns.move_legend(ax, "upper left", bbox_to_anchor=(1.02, 1.0), frameon=False, fontsize=8, title=None)


def _nice_log(ax) -> None:
    """Plain numbers (0.5, 1, 2) on a log axis spanning less than three decades."""
    lo, hi = ax.get_ylim()
    if lo > 0 and hi / lo < 1000:
        ax.yaxis.set_major_locator(ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.yaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
        ax.yaxis.set_minor_formatter(ticker.NullFormatter())


def _positive(df: pd.DataFrame, notes: list[str], what: str) -> pd.DataFrame:
    bad = df["y"] <= 0
    if bad.any():
        notes.append(f"{int(bad.sum())} non-positive {what} value(s) left out of the log-scale plot.")
    return df[~bad]


def _suite_text(coll: Collection) -> str:
    suites = sorted(set(coll.finished["suite"]))
    return "suite " + ", ".join(suites) if suites else "no suite"


def _split_title(split: str) -> str:
    return {"init": "at initialization", "final": "after training"}.get(split, split)


# -- the figures ---------------------------------------------------------------------
def fig_by_split(coll: Collection, out_dir: Path, svg: bool, *, name: str, title: str, metric: str, what: str,
                 xlabel: str, ylabel: str, logx: bool, logy: bool, hline: float | None = None,
                 alt_metric: str | None = None) -> FigureResult:
    res = FigureResult(name, title, HOW_TO_READ[name])
    df = _series_frame(coll, ("init", "final"), metric)
    used = metric
    if not len(df) and alt_metric:
        df = _series_frame(coll, ("init", "final"), alt_metric)
        used = alt_metric
    if not len(df):
        res.reason = f"no `{metric}` rows (split init or final) in this store."
        return res
    if logy:
        df = _positive(df, res.notes, what)
    if logx:
        df = df[df["x"] > 0]
    if not len(df):
        res.reason = f"no positive `{used}` values to plot."
        return res
    df = _labels(coll, df)
    res.notes += _missing_configs(coll, df, what)
    if used != metric:
        res.notes.append(f"`{metric}` was not recorded; `{used}` is plotted instead.")
    splits = [s for s in ("init", "final") if (df["split"] == s).any()]
    groups = sorted(set(zip(df["kind"], df["name"])), key=lambda g: ({"probe": 0, "task": 1}.get(g[0], 2), g[1]))
    canvas = _Canvas(ncols=len(splits), nrows=len(groups), sharey=True, height=3.6 if len(groups) > 1 else 4.2)
    for gi, (kind, gname) in enumerate(groups):
        gdf = df[(df["kind"] == kind) & (df["name"] == gname)]
        gdf.attrs = df.attrs
        for si, split in enumerate(splits):
            ax = canvas.axes[gi * len(splits) + si]
            sub = gdf[gdf["split"] == split]
            ax.set_xlabel(xlabel)
            ax.set_ylabel(ylabel)
            if not len(sub):
                ax.set_axis_off()
                ax.text(0.5, 0.5, f"({gname} {kind} runs: nothing recorded {_split_title(split)})", ha="center",
                        va="center", transform=ax.transAxes, fontsize=9, color="#666")
                continue
            sub.attrs = df.attrs
            _lines(ax, sub, coll, legend=(si == len(splits) - 1 or not (gdf["split"] == splits[-1]).any()),
                   logx=logx, logy=logy)
            if hline is not None:
                ax.axhline(hline, color="black", lw=0.8, ls=":", zorder=0)
            ax.set_title(f"{gname} {kind} runs, {_split_title(split)} ({sub['run_id'].nunique()} runs)", fontsize=10)
    _title(canvas, title, f"{_suite_text(coll)} · line: median over seeds, band: min–max over seeds")
    res.files = canvas.save(out_dir, name, svg)
    return res


def fig_learning_curves(coll: Collection, out_dir: Path, svg: bool) -> list[FigureResult]:
    results = []
    fin = coll.finished
    tasks = sorted({n for k, n in zip(fin["kind"], fin["name"]) if k == "task"})
    for task in tasks:
        name = f"learning_curves_{task}"
        res = FigureResult(name, f"Learning curves: {task} task", HOW_TO_READ["learning_curves"])
        df = None
        for split in ("train", "valid"):
            for metric in ("ce", "mse", "loss", "bpc", "perplexity"):
                d = _series_frame(coll, split, metric)
                d = d[(d["kind"] == "task") & (d["name"] == task)]
                if len(d):
                    df, used_split, used_metric = d, split, metric
                    break
            if df is not None:
                break
        if df is None:
            res.reason = (f"no training-loss rows (ce, mse, loss, bpc or perplexity on train or valid) for the "
                          f"{task} task.")
            results.append(res)
            continue
        df = _positive(df, res.notes, used_metric)
        df, k = _thin(df)
        if k > 1:
            res.notes.append(f"Curves averaged over windows of up to {k} consecutive logged steps.")
        cfg_by_key = {ck: {kk: vv for kk, vv in c.items() if kk != "seed"}
                      for ck, c in zip(fin["config_key"], fin["config"])}
        # facets: one per task definition (the options, without the paper's figures)
        def task_def(ck):
            opts = dict(cfg_by_key[ck].get("options") or {})
            for k2 in ("paper", "baseline", "threshold"):
                opts.pop(k2, None)
            return json.dumps(opts, sort_keys=True, default=str)
        df["facet"] = df["config_key"].map(task_def)
        df = _labels(coll, df, extra_drop=("options",) if df["facet"].nunique() > 1 else ())
        res.notes += _missing_configs(coll, df, f"{used_split} {used_metric} curve")
        facets = list(dict.fromkeys(sorted(df["facet"])))
        facet_titles = settings_labels([{"options": json.loads(f)} for f in facets]) if len(facets) > 1 else {}
        ncols = min(len(facets), 3)
        nrows = math.ceil(len(facets) / ncols)
        canvas = _Canvas(ncols=ncols, nrows=nrows)
        missing_baseline = []
        for i, facet in enumerate(facets):
            ax = canvas.axes[i]
            sub = df[df["facet"] == facet]
            sub.attrs = df.attrs
            _lines(ax, sub, coll, legend=(i == len(facets) - 1), logy=True, markers=False)
            baselines = {}
            for ck in dict.fromkeys(sub["config_key"]):
                rid = sub.loc[sub["config_key"] == ck, "run_id"].iloc[0]
                b = baseline_of(cfg_by_key[ck], coll.data(rid))
                if b is None:
                    missing_baseline.append(ck)
                elif used_metric in ("ce", "mse", "loss"):
                    baselines[round(b, 12)] = b
            for b in baselines.values():
                ax.axhline(b, color="black", lw=1.0, ls="--", zorder=1)
                ax.annotate(f"baseline {b:.3g}", xy=(1.0, b), xycoords=("axes fraction", "data"), xytext=(-4, 3),
                            textcoords="offset points", ha="right", va="bottom", fontsize=8)
            ft = facet_titles.get(config_key({"options": json.loads(facet)}), "")
            ax.set_title((ft + " · " if ft else "") + f"{sub['run_id'].nunique()} runs")
            ax.set_xlabel("training step")
            ax.set_ylabel(f"{used_metric} ({used_split})")
        for ax in canvas.axes[len(facets):]:
            ax.set_visible(False)
        if missing_baseline:
            res.notes.append("No baseline recorded (neither options.baseline in the run config nor a `baseline` "
                             f"metric) for {len(set(missing_baseline))} configuration(s): no baseline line drawn "
                             "for them.")
        _title(canvas, f"Learning curves: {task} task, {used_split} {used_metric} against step",
               f"{_suite_text(coll)} · line: median over seeds, band: min–max over seeds")
        res.files = canvas.save(out_dir, name, svg)
        results.append(res)
    return results


def fig_singular_values_training(coll: Collection, out_dir: Path, svg: bool) -> FigureResult:
    name = "singular_values_training"
    res = FigureResult(name, "Singular values of W over training", HOW_TO_READ[name])
    df = _series_frame(coll, "probe", ("sigma_max", "sigma_min"))
    if len(df):
        df = _labels(coll, df)
        res.notes += _missing_configs(coll, df, "σ(W) probes during training")
        metrics = [m for m in ("sigma_max", "sigma_min") if (df["metric"] == m).any()]
        canvas = _Canvas(ncols=len(metrics))
        for i, (ax, m) in enumerate(zip(canvas.axes, metrics)):
            sub = df[df["metric"] == m]
            sub.attrs = df.attrs
            y = sub["y"]
            logy = bool((y > 0).all() and y.max() / y.min() > 20)
            _lines(ax, sub, coll, legend=(i == len(metrics) - 1), logy=logy)
            ax.axhline(1.0, color="black", lw=0.8, ls=":", zorder=0)
            ax.set_title({"sigma_max": "largest singular value σ_max(W)",
                          "sigma_min": "smallest singular value σ_min(W)"}[m])
            ax.set_xlabel("training step")
            ax.set_ylabel(m.replace("sigma_", "σ_"))
        _title(canvas, "Singular values of the transition matrix W over training",
               f"{_suite_text(coll)} · probes scheduled during training · line: median over seeds, band: min–max")
        res.files = canvas.save(out_dir, name, svg)
        return res
    # fall back on the values at init and after training
    name = "singular_values_init_final"
    res = FigureResult(name, "Singular values of W at init and after training", HOW_TO_READ[name])
    df = _series_frame(coll, ("init", "final"), ("sigma_max", "sigma_min"))
    if not len(df):
        res.reason = ("no σ(W) rows: neither probes during training (split probe) nor sigma_min/sigma_max at "
                      "init/final.")
        return res
    df = _labels(coll, df)
    res.notes.append("No probes during training (split `probe`) were recorded; shown at init and after training only.")
    df["when"] = df["split"].map(_split_title)
    metrics = [m for m in ("sigma_max", "sigma_min") if (df["metric"] == m).any()]
    groups = sorted(set(zip(df["kind"], df["name"])), key=lambda g: ({"probe": 0, "task": 1}.get(g[0], 2), g[1]))
    canvas = _Canvas(ncols=len(metrics), nrows=len(groups), width=4.5, height=3.4)
    for gi, (kind, gname) in enumerate(groups):
        for mi, m in enumerate(metrics):
            ax = canvas.axes[gi * len(metrics) + mi]
            sub = df[(df["metric"] == m) & (df["kind"] == kind) & (df["name"] == gname)]
            if not len(sub):
                ax.set_axis_off()
                continue
            order, palette = _hue(coll, sub)
            legend = mi == len(metrics) - 1
            sns.pointplot(data=sub, x="when", y="y", hue="variant", hue_order=order, palette=palette,
                          estimator="median", errorbar=("pi", 100), dodge=0.3, ax=ax, legend=legend,
                          order=[w for w in ("at initialization", "after training") if w in set(sub["when"])])
            ax.axhline(1.0, color="black", lw=0.8, ls=":", zorder=0)
            ax.set_xlabel("")
            ax.set_ylabel(m.replace("sigma_", "σ_"))
            ax.set_title(f"{gname} {kind} runs ({sub['run_id'].nunique()} runs)", fontsize=10)
            if legend and ax.get_legend() is not None:
                sns.move_legend(ax, "upper left", bbox_to_anchor=(1.02, 1.0), frameon=False, fontsize=8, title=None)
    _title(canvas, "Singular values of the transition matrix W at init and after training",
           f"{_suite_text(coll)} · point: median over seeds, bar: min–max")
    res.files = canvas.save(out_dir, name, svg)
    return res


def fig_speed(coll: Collection, out_dir: Path, svg: bool) -> FigureResult:
    name = "speed"
    res = FigureResult(name, "Time per training step against hidden size", HOW_TO_READ[name])
    df = _series_frame(coll, "train", "step_time")
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
    per_run["split"] = "train"
    per_run["metric"] = "step_time"
    per_run = _labels(coll, per_run, extra_drop=("hidden_size", "match", "budget"))
    canvas = _Canvas(width=6.5)
    ax = canvas.axes[0]
    _lines(ax, per_run, coll, legend=True, logx=True, logy=True, markers=True)
    xs = sorted(per_run["x"].unique())
    ax.set_xticks(xs)
    ax.set_xticklabels([str(int(x)) for x in xs])
    ax.minorticks_off()
    ax.set_xlabel("hidden size n")
    ax.set_ylabel("time per training step (ms, median over steps)")
    _title(canvas, "Time per training step against hidden size",
           f"{_suite_text(coll)} · line: median over seeds, band: min–max over seeds")
    res.files = canvas.save(out_dir, name, svg)
    return res


def build_figures(coll: Collection, out_dir: Path, svg: bool = True) -> list[FigureResult]:
    """Draw every figure the store has data for; the rest come back with a reason."""
    out_dir = Path(out_dir)
    with sns.axes_style("whitegrid"), sns.plotting_context("notebook", font_scale=0.85):
        return _build(coll, out_dir, svg)


def _build(coll: Collection, out_dir: Path, svg: bool) -> list[FigureResult]:
    jobs = [
        ("jacobian_norm", "Jacobian norm against gap", lambda: fig_by_split(
            coll, out_dir, svg, name="jacobian_norm", title="Jacobian norm against gap", metric="jacobian_spectral",
            alt_metric="jacobian_frobenius", what="Jacobian norms", xlabel="gap g (steps)",
            ylabel=r"$\|\partial h_{t+g} / \partial h_t\|_2$", logx=True, logy=True, hline=1.0)),
        ("gradient_flow", "Gradient flow: ‖∂L/∂h_t‖ over t", lambda: fig_by_split(
            coll, out_dir, svg, name="gradient_flow", title="Gradient flow: ‖∂L/∂h_t‖ over t",
            metric="grad_norm", what="gradient norms", xlabel="time step t",
            ylabel=r"$\|\partial L / \partial h_t\|$", logx=False, logy=True)),
        ("learning_curves", "Learning curves", lambda: fig_learning_curves(coll, out_dir, svg)),
        ("singular_values_training", "Singular values of W over training",
         lambda: fig_singular_values_training(coll, out_dir, svg)),
        ("singular_value_spectrum", "Singular value spectrum of W", lambda: fig_by_split(
            coll, out_dir, svg, name="singular_value_spectrum", title="Singular value spectrum of W",
            metric="singular_value", what="singular values", xlabel="index i (descending)",
            ylabel=r"$\sigma_i(W)$", logx=False, logy=True, hline=1.0)),
        ("lyapunov_spectrum", "Lyapunov spectrum", lambda: fig_by_split(
            coll, out_dir, svg, name="lyapunov_spectrum", title="Lyapunov spectrum", metric="lyapunov",
            what="Lyapunov exponents", xlabel="index i (descending)", ylabel=r"exponent $\lambda_i$ (per step)",
            logx=False, logy=False, hline=0.0)),
        ("speed", "Time per training step against hidden size", lambda: fig_speed(coll, out_dir, svg)),
    ]
    figs: list[FigureResult] = []
    for name, title, job in jobs:
        try:
            out = job()
        except Exception as exc:  # noqa: BLE001 - one broken figure must not cost the whole report
            warnings.warn(f"stability report: figure {name!r} could not be drawn: {exc!r}", RuntimeWarning,
                          stacklevel=2)
            out = FigureResult(name, title, HOW_TO_READ.get(name, ""),
                               reason=f"could not be drawn ({type(exc).__name__}: {exc}); please report this.")
        figs += out if isinstance(out, list) else [out]
    return figs
