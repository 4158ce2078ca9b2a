"""What every figure shares: the result record, the data frames it is drawn from, the canvas.

The lines themselves (mean and band over seeds, layering, the float floor) are in
:mod:`.figures_lines`.
"""
from __future__ import annotations

import json
import math
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ..network import is_gated
from .data import Collection, _hidden_from_label, flatten, fmt_value, short_names, varying_keys
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
    notice: str = ""                # a protocol caveat to show above the figure (see figures_text.protocol_notice)

    @property
    def drawn(self) -> bool:
        return bool(self.files)


# -- data ----------------------------------------------------------------------------
def series_frame(coll: Collection, split: str | tuple, metric: str | tuple) -> pd.DataFrame:
    """Rows (run_id, split, metric, x, y, config_key, kind, name) for finished runs."""
    m = coll.metrics
    splits = (split,) if isinstance(split, str) else split
    metrics = (metric,) if isinstance(metric, str) else metric
    sel = m[m["split"].isin(splits) & m["metric"].isin(metrics)].dropna(subset=["value"])
    sel = sel[np.isfinite(sel["value"].to_numpy(dtype=float))]
    if not len(sel):
        return pd.DataFrame(columns=["run_id", "split", "metric", "x", "y", "config_key", "kind", "name"])
    runs = coll.finished[["id", "config_key", "kind", "name"]].rename(columns={"id": "run_id"})
    return sel.rename(columns={"step": "x", "value": "y"}).merge(runs, on="run_id")


def configs_by_key(coll: Collection) -> dict[str, dict]:
    """config key -> the full config of its first finished run (seed included)."""
    out: dict[str, dict] = {}
    for ck, cfg in zip(coll.finished["config_key"], coll.finished["config"]):
        out.setdefault(ck, cfg)
    return out


def add_labels(coll: Collection, df: pd.DataFrame, extra_drop: tuple[str, ...] = (),
               by: tuple[str, ...] = ("kind", "name")) -> pd.DataFrame:
    """Add ``variant`` (transition and its options: the color) and ``settings`` (the line style).

    The style shows only the settings that differ *within* one variant among the configurations
    of one group (``by``): settings that follow from the transition or differ only between
    groups (a panel's title) are left out.
    """
    cfg_by_key = {k: {kk: vv for kk, vv in c.items() if kk != "seed"} for k, c in configs_by_key(coll).items()}
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
    df["order"] = df["config_key"].map({k: i for i, k in enumerate(order)})
    return df


def variant_order(coll: Collection) -> dict[str, int]:
    """Variant label -> its rank (transition, then options numerically) and color."""
    return {v.label: i for i, v in enumerate(coll.variants.values())}


def variant_colors(coll: Collection) -> dict[str, str]:
    return {v.label: v.color for v in coll.variants.values()}


def missing_configs(coll: Collection, df: pd.DataFrame, what: str, needs_w: bool = False) -> list[str]:
    """Configurations of the same run kinds as those in ``df`` that have no rows of this data
    (``needs_w``: the data is about the matrix W, which gated cells do not have: said once, not as missing)."""
    groups = set(zip(df["kind"], df["name"]))
    have = set(df["config_key"])
    missing, no_w = [], set()
    for _, run in coll.finished.iterrows():
        if (run["kind"], run["name"]) in groups and run["config_key"] not in have:
            cfg = {k: v for k, v in run["config"].items() if k != "seed"}
            if needs_w and is_gated(cfg.get("transition")):
                no_w.add(cfg["transition"])
                continue
            lab = f"{coll.variant(cfg).label} ({run['kind']} {run['name']})"
            if lab not in missing:
                missing.append(lab)
    notes = [f"No {what} for: {', '.join(missing)}."] if missing else []
    if no_w:
        notes.append(f"{', '.join(sorted(no_w))}: gated cells, no single transition matrix W (not drawn).")
    return notes


def thin(df: pd.DataFrame, max_points: int = MAX_POINTS) -> tuple[pd.DataFrame, int]:
    """Average long per-run series in windows of k consecutive steps (k reported)."""
    k_max, parts = 1, []
    for _, g in df.groupby(["run_id", "split", "metric"], sort=False):
        g = g.sort_values("x")
        if len(g) > max_points:
            k = math.ceil(len(g) / max_points)
            k_max = max(k_max, k)
            agg = g.groupby(np.arange(len(g)) // k).agg({"x": "max", "y": "mean"})
            first = g.iloc[[0] * len(agg)].reset_index(drop=True)
            first["x"], first["y"] = agg["x"].to_numpy(), agg["y"].to_numpy()
            g = first
        parts.append(g)
    return (pd.concat(parts, ignore_index=True) if parts else df), k_max


def float_floor(coll: Collection, config_keys) -> tuple[float, str]:
    """The smallest normal number of the widest-floored dtype among these configurations."""
    cfgs = configs_by_key(coll)
    dtypes = {str(cfgs[k].get("dtype") or "float32") for k in config_keys if k in cfgs} or {"float32"}
    best = max(dtypes, key=lambda d: float(np.finfo(_np_dtype(d)).tiny))
    return float(np.finfo(_np_dtype(best)).tiny), best


def _np_dtype(name: str):
    return {"float64": np.float64, "double": np.float64, "float16": np.float16, "bfloat16": np.float32,
            "half": np.float16}.get(name, np.float32)


# -- canvas ------------------------------------------------------------------------------
class Canvas:
    """A seaborn-styled matplotlib Figure rendered by Agg (never through pyplot)."""

    def __init__(self, ncols: int = 1, nrows: int = 1, width: float = 6.0, height: float = 4.2, **kw):
        self.fig = Figure(figsize=(width * ncols + 2.6, height * nrows + 0.8), layout="constrained")
        FigureCanvasAgg(self.fig)
        axes = self.fig.subplots(nrows, ncols, squeeze=False, **kw)
        self.axes = [ax for row in axes for ax in row]

    def title(self, title: str, subtitle: str, notice: str = "") -> None:
        width = int(self.fig.get_size_inches()[0] * 11)
        text = f"{title}\n" + textwrap.fill(subtitle, width)
        if notice:
            text += "\n" + textwrap.fill(f"⚠ {notice}", width)
        self.fig.suptitle(text, fontsize=11, color="#000000")

    def save(self, out_dir: Path, name: str, svg: bool) -> list[str]:
        fig_dir = Path(out_dir) / "figures"
        fig_dir.mkdir(parents=True, exist_ok=True)
        self.fig.savefig(fig_dir / f"{name}.png", dpi=DPI, bbox_inches="tight", pad_inches=0.1)  # legends outside included
        files = [f"figures/{name}.png"]
        if svg:
            self.fig.savefig(fig_dir / f"{name}.svg", bbox_inches="tight", pad_inches=0.1)
            files.append(f"figures/{name}.svg")
        return files


def suite_text(coll: Collection) -> str:
    suites = sorted(set(coll.finished["suite"]))
    return "suite " + ", ".join(suites) if suites else "no suite"


def split_title(split: str) -> str:
    return {"init": "at initialization", "final": "after training"}.get(split, split)


def group_order(groups) -> list[tuple[str, str]]:
    return sorted(set(groups), key=lambda g: ({"probe": 0, "task": 1}.get(g[0], 2), g[1]))
