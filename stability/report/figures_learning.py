"""Learning curves, one figure per task: the smoothed training loss, the validation loss, the
test value at the end, and the task's baseline, in the unit the task reports (perplexity or
bits per character for a language model, converted from the training cross-entropy).
"""
from __future__ import annotations

import json
import math
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd

from .data import CE_UNITS, Collection, baseline_of, config_key, settings_labels
from .figures_base import (Canvas, FigureResult, add_labels, configs_by_key, missing_configs, series_frame,
                           suite_text, thin)
from .figures_lines import Drawn, aggregate, draw_lines, fit_ylim, legend, panel_notes, style_handle
from .figures_grid import Grid, collapse_grids
from .figures_text import BAND_TEXT, COINCIDE_TEXT, HOW_TO_READ, protocol_notice

#: losses a curve may show, in the order tried
LOSSES = ("ce", "mse", "loss", "bpc", "perplexity")


def _have(coll: Collection, task: str) -> set[tuple[str, str]]:
    m = coll.metrics
    ids = coll.finished.loc[(coll.finished["kind"] == "task") & (coll.finished["name"] == task), "id"]
    sel = m[m["run_id"].isin(ids)].dropna(subset=["value"])
    return set(zip(sel["split"], sel["metric"]))


def choose_unit(have: set[tuple[str, str]]) -> tuple[str, dict[str, tuple[str, object]]] | None:
    """The unit to plot and, per split (train, valid, test), the metric read and its conversion.

    A language model logs its training cross-entropy but reports perplexity (or bpc): its curves
    are drawn in the reported unit, the training CE converted (:data:`.data.CE_UNITS`)."""
    reported = next((u for u in ("perplexity", "bpc") if any((s, u) in have for s in ("train", "valid", "test"))),
                    None)
    if reported and (("train", reported) in have or ("train", "ce") in have):
        unit = reported
    else:
        unit = next((u for u in LOSSES if ("train", u) in have), None) or next(
            (u for u in LOSSES if ("valid", u) in have), None)
    if unit is None:
        return None
    read = {}
    for split in ("train", "valid", "test"):
        if (split, unit) in have:
            read[split] = (unit, None)
        elif unit in CE_UNITS and (split, "ce") in have:
            read[split] = ("ce", CE_UNITS[unit])
    return unit, read


def ema_span(df: pd.DataFrame) -> tuple[int, float]:
    """The smoothing span in logged points (an eighth of a run's points, 5 to 50) and the
    steps between logged points."""
    per_run = df.groupby("run_id")["x"]
    n = float(per_run.size().median())
    dx = float(per_run.apply(lambda x: np.median(np.diff(np.sort(x.to_numpy()))) if len(x) > 1 else 1.0).median())
    return int(min(max(round(n / 8), 5), 50)), dx


def smooth(df: pd.DataFrame, span: int) -> pd.DataFrame:
    parts = []
    for _, g in df.groupby("run_id", sort=False):
        g = g.sort_values("x").copy()
        g["y"] = g["y"].ewm(span=span, adjust=True).mean()
        parts.append(g)
    return pd.concat(parts, ignore_index=True) if parts else df


def _frame(coll: Collection, task: str, split: str, metric: str, convert) -> pd.DataFrame:
    d = series_frame(coll, split, metric)
    d = d[(d["kind"] == "task") & (d["name"] == task)].copy()
    if convert is not None and len(d):
        d["y"] = d["y"].map(convert)
    return d[np.isfinite(d["y"].to_numpy(dtype=float))] if len(d) else d


def fig_learning_curves(coll: Collection, out_dir: Path, svg: bool, grids: list[Grid] | None = None
                        ) -> list[FigureResult]:
    results = []
    fin = coll.finished
    for task in sorted({n for k, n in zip(fin["kind"], fin["name"]) if k == "task"}):
        results.append(_one_task(coll, out_dir, svg, task, grids or []))
    return results


def _one_task(coll: Collection, out_dir: Path, svg: bool, task: str, grids: list[Grid]) -> FigureResult:
    name = f"learning_curves_{task}"
    res = FigureResult(name, f"Learning curves: {task} task", HOW_TO_READ["learning_curves"])
    res.notice = protocol_notice(coll, "task", task)
    choice = choose_unit(_have(coll, task))
    if choice is None:
        res.reason = (f"no training-loss rows (ce, mse, loss, bpc or perplexity on train or valid) for the "
                      f"{task} task.")
        return res
    unit, read = choice
    frames = {s: _frame(coll, task, s, m, conv) for s, (m, conv) in read.items()}
    frames = {s: f for s, f in frames.items() if len(f)}
    for s, f in list(frames.items()):
        bad = f["y"] <= 0
        if bad.any():
            res.notes.append(f"{int(bad.sum())} non-positive {s} {unit} value(s) left out of the log-scale plot.")
            frames[s] = f[~bad]
    if "train" in frames and read["train"][1] is not None:
        res.notes.append(f"Training curve in {unit}: the logged training cross-entropy converted "
                         f"({'exp(ce)' if unit == 'perplexity' else 'ce / ln 2'}).")
    if "train" in frames:
        span, dx = ema_span(frames["train"])
        frames["train"], k = thin(smooth(frames["train"], span))
        res.notes.append(f"Training curves smoothed per run by an exponential moving average over the logged points "
                         f"(pandas ewm, span {span} points ≈ {span * dx:g} steps), then averaged over seeds; "
                         "validation and test values are not smoothed.")
        if k > 1:
            res.notes.append(f"Smoothed curves averaged over windows of up to {k} logged points.")
    else:
        res.notes.append(f"No training curve: only validation {unit} was logged.")
    if "valid" not in frames:
        res.notes.append(f"No validation curve: the runs logged no `valid` {unit}.")
    main = frames.get("train", frames.get("valid"))
    cfgs = configs_by_key(coll)

    def task_def(ck):  # facets: one per task definition (its options, without the paper's figures)
        opts = dict(cfgs[ck].get("options") or {})
        for k2 in ("paper", "baseline", "threshold"):
            opts.pop(k2, None)
        return json.dumps(opts, sort_keys=True, default=str)
    every = pd.concat(list(frames.values()), ignore_index=True)
    res.notes += missing_configs(coll, every[every["split"] == main["split"].iloc[0]], f"{unit} curve")
    every, grid_notes = collapse_grids(coll, every, grids)
    every["facet"] = every["config_key"].map(task_def)
    every = add_labels(coll, every, extra_drop=("options",) if every["facet"].nunique() > 1 else ())
    res.notes += grid_notes
    facets = list(dict.fromkeys(sorted(every["facet"])))
    facet_titles = settings_labels([{"options": json.loads(f)} for f in facets]) if len(facets) > 1 else {}
    ncols = min(len(facets), 3)
    canvas = Canvas(ncols=ncols, nrows=math.ceil(len(facets) / ncols))
    drawn: list[tuple[str, Drawn]] = []
    identical: list[str] = []
    missing_baseline: set[str] = set()
    baseline_notes: list[str] = []
    for i, facet in enumerate(facets):
        ax = canvas.axes[i]
        sub = every[every["facet"] == facet]
        curves = []
        handles, styles = [], []
        if (sub["split"] == "train").any():
            lines = aggregate(coll, sub[sub["split"] == "train"], log=True)
            d = draw_lines(ax, lines, logy=True, markers=False, lw=1.8)
            drawn.append(("train", d))
            identical += [", ".join(g) + " (training)" for g in d.identical]
            handles, curves = d.handles, curves + lines
            styles.append(style_handle(f"train (smoothed, span {span})", lw=1.8))
        if (sub["split"] == "valid").any():
            vlines = aggregate(coll, sub[sub["split"] == "valid"], log=True)
            d = draw_lines(ax, vlines, logy=True, markers=True, lw=1.0, marker_face="white")
            drawn.append(("valid", d))
            identical += [", ".join(g) + " (validation)" for g in d.identical]
            handles, curves = handles or d.handles, curves + vlines
            styles.append(style_handle("valid", lw=1.0, marker="o", markerfacecolor="white", markersize=5))
        if (sub["split"] == "test").any():
            for ln in aggregate(coll, sub[sub["split"] == "test"], log=True):
                err = None
                if ln.n >= 2 and np.isfinite(ln.lo).all():
                    err = np.vstack([ln.y - ln.lo, ln.hi - ln.y])
                ax.errorbar(ln.x, ln.y, yerr=err, ls="none", marker="*", markersize=11, color=ln.color,
                            markeredgecolor="black", markeredgewidth=0.5, zorder=6)
                curves.append(ln)
            styles.append(style_handle("test", ls="none", marker="*", markersize=10))
        baselines = {}
        for ck in dict.fromkeys(sub["config_key"]):
            rid = sub.loc[sub["config_key"] == ck, "run_id"].iloc[0]
            b = baseline_of(cfgs[ck], coll.data(rid), unit)
            if b is None:
                missing_baseline.add(ck)
            elif math.isfinite(b) and b > 0:
                baselines[round(b, 12)] = (b, (cfgs[ck].get("definition") or {}).get("baseline_note"))
        for b, note in baselines.values():
            ax.axhline(b, color="black", lw=1.1, ls="--", zorder=4)
            if len(baselines) > 1:
                ax.annotate(f"baseline {b:.3g}", xy=(0.0, b), xycoords=("axes fraction", "data"), xytext=(4, 3),
                            textcoords="offset points", ha="left", va="bottom", fontsize=8)
            if note and note not in baseline_notes:
                baseline_notes.append(note)
        if baselines:
            (b, note), = list(baselines.values())[:1]
            text = "baseline" + (f" {b:.3g}" if len(baselines) == 1 else "") + (f": {note}" if note else "")
            styles.append(style_handle(textwrap.fill(text, 48), color="black", ls="--", lw=1.1))
        fit_ylim(ax, curves, True, include=[b for b, _ in baselines.values()])
        ft = facet_titles.get(config_key({"options": json.loads(facet)}), "")
        ax.set_title((ft + " · " if ft else "") + f"{sub['run_id'].nunique()} runs")
        ax.set_xlabel("training step")
        ax.set_ylabel(unit)
        if i == len(facets) - 1:
            legend(ax, handles, styles)
    for ax in canvas.axes[len(facets):]:
        ax.set_visible(False)
    for note in baseline_notes:
        res.notes.append(f"Baseline: {note}.")
    if missing_baseline:
        res.notes.append(f"No baseline in {unit} in the task's definition for {len(missing_baseline)} "
                         "configuration(s): no baseline line drawn for them.")
    if identical:
        res.how_to_read += " " + COINCIDE_TEXT.format(groups="; ".join(identical))
    res.notes += panel_notes(drawn, None, "")
    canvas.title(f"Learning curves: {task} task, {unit} against step", f"{suite_text(coll)} · {BAND_TEXT}",
                 notice=res.notice)
    res.files = canvas.save(out_dir, name, svg)
    return res
