"""A grid of options of one transition (e.g. Spectral-RNN's reflectors × margin) as a heatmap.

Nine lines of one color on top of each other say nothing; a table of nine cells colored by a
figure of merit (the half-life of the Jacobian norm, the test loss) says at a glance which
option matters. The line figures keep one line of such a grid (:func:`collapse_grids`) and
point here.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import seaborn as sns

from .data import Collection, flatten, fmt_value, short_names
from .figures_base import Canvas, FigureResult, configs_by_key, group_order, split_title, suite_text
from .figures_text import HOW_TO_READ

_PREFIX = "transition_options."
#: test metrics in the order a grid prefers them, with whether higher is better
TEST_METRICS = [("accuracy", True), ("perplexity", False), ("bpc", False), ("mse", False), ("ce", False)]


@dataclass
class Grid:
    """Configurations of one transition in one experiment that differ in exactly two options."""

    kind: str
    name: str
    transition: str
    key_a: str                     # flattened option keys (without the transition_options. prefix)
    key_b: str
    values_a: list
    values_b: list
    cells: dict = field(default_factory=dict)   # (value_a, value_b) -> config key
    keep: str = ""                 # the configuration the line figures keep
    keep_why: str = ""

    @property
    def title(self) -> str:
        names = short_names([self.key_a, self.key_b])
        return f"{self.transition} options grid: {names[self.key_a]} × {names[self.key_b]}"

    @property
    def slug(self) -> str:
        return f"options_grid_{self.transition}"

    def cell_text(self, ck: str) -> str:
        names = short_names([self.key_a, self.key_b])
        a, b = next(k for k, v in self.cells.items() if v == ck)
        return f"{names[self.key_a]}={fmt_value(a)}, {names[self.key_b]}={fmt_value(b)}"


def find_grids(coll: Collection) -> list[Grid]:
    """Every two-option grid (at least 2 × 2 values, 4 cells) of one transition in one experiment."""
    cfgs = configs_by_key(coll)
    by_group: dict[tuple, list[str]] = {}
    for ck, cfg in cfgs.items():
        by_group.setdefault((cfg["kind"], cfg["name"], str(cfg.get("transition"))), []).append(ck)
    grids = []
    for (kind, name, transition), keys in by_group.items():
        if len(keys) < 4:
            continue
        flat = {k: flatten({kk: vv for kk, vv in cfgs[k].items() if kk != "seed"}) for k in keys}
        all_keys = sorted({kk for f in flat.values() for kk in f})
        vary = [kk for kk in all_keys
                if len({json.dumps(f.get(kk, "<absent>"), default=str) for f in flat.values()}) > 1]
        if len(vary) != 2 or not all(v.startswith(_PREFIX) for v in vary):
            continue
        a, b = vary
        cells = {(flat[k].get(a), flat[k].get(b)): k for k in keys}
        va = sorted({c[0] for c in cells}, key=_natural)
        vb = sorted({c[1] for c in cells}, key=_natural)
        if len(va) < 2 or len(vb) < 2 or len(cells) != len(keys):
            continue
        g = Grid(kind, name, transition, a[len(_PREFIX):], b[len(_PREFIX):], va, vb, cells)
        _choose_kept(coll, g, cfgs)
        grids.append(g)
    rank = {gr: i for i, gr in enumerate(group_order((g.kind, g.name) for g in grids))}
    return sorted(grids, key=lambda g: (g.transition, rank[(g.kind, g.name)]))


def _natural(v):
    number = isinstance(v, (int, float)) and not isinstance(v, bool)
    return (0, float(v), "") if number else (1, 0.0, str(v))


def _choose_kept(coll: Collection, g: Grid, cfgs: dict) -> None:
    """The line figures keep the cell whose options other experiments use; else the first cell."""
    elsewhere = {json.dumps(c.get("transition_options") or {}, sort_keys=True, default=str)
                 for c in cfgs.values() if (c["kind"], c["name"]) != (g.kind, g.name)
                 and str(c.get("transition")) == g.transition}
    for ck in g.cells.values():
        if json.dumps(cfgs[ck].get("transition_options") or {}, sort_keys=True, default=str) in elsewhere:
            g.keep, g.keep_why = ck, "the options the other experiments use"
            return
    g.keep, g.keep_why = next(iter(g.cells[(a, b)] for a in g.values_a for b in g.values_b
                                   if (a, b) in g.cells)), "the first cell"


def collapse_grids(coll: Collection, df: pd.DataFrame, grids: list[Grid]) -> tuple[pd.DataFrame, list[str]]:
    """Drop all but one configuration of each grid from a line figure's rows; say where the rest are."""
    notes = []
    for g in grids:
        sel = (df["kind"] == g.kind) & (df["name"] == g.name)
        members = set(g.cells.values()) - {g.keep}
        drop = sel & df["config_key"].isin(members)
        if drop.any():
            df = df[~drop]
            notes.append(f"{g.name} {g.kind}: the {len(g.cells)} {g.transition} configurations of the grid "
                         f"{g.title.split(': ', 1)[1]} are summarized in the figure “{g.title}”; the line shown is "
                         f"{g.cell_text(g.keep)} ({g.keep_why}).")
    return df, notes


# -- figures of merit ------------------------------------------------------------------------
@dataclass
class Merit:
    split: str
    metric: str
    label: str
    higher_better: bool


def merits(coll: Collection, g: Grid) -> list[Merit]:
    ids = coll.finished.loc[coll.finished["config_key"].isin(g.cells.values()), "id"]
    have = set()
    for rid in ids:
        have |= {k for k, s in coll.data(rid).series_by_key.items() if s.notna().any()}
    out = [Merit(s, "half_life", f"half-life {split_title(s)} (steps)", True)
           for s in ("init", "final") if (s, "half_life") in have]
    for split in ("test", "valid"):
        found = [(m, hb) for m, hb in TEST_METRICS if (split, m) in have]
        if found:
            m, hb = found[0]
            out.append(Merit(split, m, f"{m} ({split}, end of training)", hb))
            break
    return out


def _cell_values(coll: Collection, ck: str, m: Merit) -> tuple[float, float | None]:
    """Mean over seeds of the merit, and the largest gap measured when a half-life lies beyond it."""
    fin = coll.finished
    vals, beyond = [], None
    for rid in fin.loc[fin["config_key"] == ck, "id"]:
        d = coll.data(rid)
        v = d.scalar(m.split, m.metric)
        if v is None or math.isnan(v):
            continue
        vals.append(v)
        if m.metric == "half_life":
            s = d.series(m.split, "jacobian_spectral")
            s = s if s is not None else d.series(m.split, "jacobian_frobenius")
            gap = float(s.index.max()) if s is not None else None
            if gap is not None and v > gap:
                beyond = gap
    if not vals:
        return math.nan, None
    return (float(np.mean(vals)) if all(math.isfinite(v) for v in vals) else math.inf), beyond


def fig_options_grids(coll: Collection, out_dir: Path, svg: bool, grids: list[Grid] | None = None
                      ) -> list[FigureResult]:
    grids = find_grids(coll) if grids is None else grids
    results: list[FigureResult] = []
    by_fig: dict[str, list[Grid]] = {}
    for g in grids:
        by_fig.setdefault(f"{g.slug}_{g.key_a}_{g.key_b}", []).append(g)
    slugs = {g.slug for g in grids}
    for fig_key, gs in by_fig.items():
        name = gs[0].slug if len(by_fig) == len(slugs) else fig_key.replace(".", "_")
        res = FigureResult(name, gs[0].title, HOW_TO_READ["options_grid"])
        panels = [(g, m) for g in gs for m in merits(coll, g)]
        if not panels:
            res.reason = f"the {gs[0].title} has no half-life or test metric recorded."
            results.append(res)
            continue
        ncols = min(len(panels), 3)
        canvas = Canvas(ncols=ncols, nrows=math.ceil(len(panels) / ncols), width=4.6, height=3.8)
        seeds = set()
        for ax, (g, m) in zip(canvas.axes, panels):
            seeds |= _heatmap(ax, coll, g, m, res.notes)
        for ax in canvas.axes[len(panels):]:
            ax.set_visible(False)
        seeds_text = f"{min(seeds)}" + (f"–{max(seeds)}" if max(seeds) != min(seeds) else "") if seeds else "0"
        canvas.title(gs[0].title, f"{suite_text(coll)} · cell: mean over seeds ({seeds_text} seed(s) per cell)")
        res.files = canvas.save(out_dir, name, svg)
        results.append(res)
    return results


def _heatmap(ax, coll: Collection, g: Grid, m: Merit, notes: list[str]) -> set:
    names = short_names([g.key_a, g.key_b])
    values = np.full((len(g.values_a), len(g.values_b)), np.nan)
    text = np.full(values.shape, "—", dtype=object)
    seeds = set()
    fin = coll.finished
    for i, a in enumerate(g.values_a):
        for j, b in enumerate(g.values_b):
            ck = g.cells.get((a, b))
            if ck is None:
                continue
            v, beyond = _cell_values(coll, ck, m)
            seeds.add(int((fin["config_key"] == ck).sum()))
            if math.isnan(v):
                continue
            values[i, j] = v
            text[i, j] = "∞" if math.isinf(v) else (f"> {beyond:g}" if beyond is not None else f"{v:.3g}")
    finite = values[np.isfinite(values)]
    color = np.where(np.isinf(values), finite.max() if len(finite) else 0.0, values)
    lo, hi = (float(finite.min()), float(finite.max())) if len(finite) else (0.0, 1.0)
    # the color scale spans at least ±5% of the values' center: a 1% difference stays a faint one
    center, half = (lo + hi) / 2, max((hi - lo) / 2, 0.05 * abs((lo + hi) / 2), 1e-12)
    lo, hi = center - half, center + half
    sns.heatmap(pd.DataFrame(color, index=[fmt_value(a) for a in g.values_a],
                             columns=[fmt_value(b) for b in g.values_b]),
                annot=text, fmt="", cmap="viridis" if m.higher_better else "viridis_r", vmin=lo, vmax=hi,
                linewidths=1.0, linecolor="white", ax=ax, cbar_kws={"label": m.label, "shrink": 0.85},
                annot_kws={"fontsize": 10})
    ax.set_ylabel(names[g.key_a])
    ax.set_xlabel(names[g.key_b])
    ax.tick_params(axis="y", rotation=0)
    if len(finite):
        a, b = float(finite.min()), float(finite.max())
        spread = "all cells equal" if a == b else (f"range {a:.3g}–{b:.3g}"
                                                   + (f" ({(b - a) / abs(a):.0%} apart)" if a else ""))
    else:
        spread = "no values"
    ax.set_title(f"{g.name} {g.kind} runs: {m.label}\n{spread}", fontsize=9.5)
    if any(isinstance(t, str) and t.startswith(">") for t in text.ravel()):
        notes.append(f"{g.name} {g.kind}, {m.label}: a cell “> G” is a half-life beyond the largest gap measured "
                     "(G): an extrapolation of the fitted decay, only a lower bound.")
    if (text == "∞").any():
        notes.append(f"{g.name} {g.kind}, {m.label}: “∞” is a norm that never halves (no decay fitted); its cell "
                     "takes the top color.")
    return seeds
