"""Lines: one configuration each, the mean over its seeds (the geometric mean on a log axis)
with a 95% Student-t band (:func:`.stats.t_interval`, on log values for a log axis); one seed
draws no band. Lines that coincide are layered thick under thin with distinct markers (and
named in the how-to-read text when identical); a value at or below the float underflow floor
is drawn as a ▼ on the floor, never as a number. Y-limits are fitted to each panel's lines.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from matplotlib import ticker
from matplotlib.lines import Line2D

from .data import Collection
from .figures_base import variant_colors, variant_order
from .stats import t_interval

#: relative tolerance under which two series count as identical
IDENTICAL_RTOL = 1e-6
#: two lines closer than this fraction of the panel's height everywhere are drawn layered
OVERLAP_FRACTION = 0.015
_DASHES = ["-", "--", "-.", ":", (0, (5, 1, 1, 1, 1, 1)), (0, (8, 2)), (0, (1, 1))]
_MARKERS = ["o", "s", "^", "D", "v", "P", "X", "*"]


@dataclass
class Line:
    unit: str
    label: str
    color: str
    x: np.ndarray
    y: np.ndarray            # the mean (geometric on a log axis)
    lo: np.ndarray           # 95% t band; NaN where fewer than two seeds
    hi: np.ndarray
    n: int                   # seeds (the most at any point)
    at_floor: np.ndarray     # points where a seed's value is at or below the float floor
    dash: object = "-"


def aggregate(coll: Collection, df: pd.DataFrame, log: bool, floor: float | None = None) -> list[Line]:
    """One :class:`Line` per unit (``line`` column if present, else configuration)."""
    df = df.assign(unit=df["line"] if "line" in df.columns else df["config_key"])
    y = df["y"].to_numpy(dtype=float)
    low = (y <= floor) if floor is not None else np.zeros(len(df), bool)
    if floor is not None:
        y = np.where(low, floor, y)
    df = df.assign(t=np.log10(y) if log else y, low=low)
    agg = df.groupby(["unit", "x"], sort=True).agg(mean=("t", "mean"), std=("t", "std"), n=("t", "size"),
                                                  low=("low", "any")).reset_index()
    factor = {n: t_interval(0.0, 1.0, int(n))[1] for n in agg["n"].unique()}
    half = agg["n"].map(factor).to_numpy(dtype=float) * agg["std"].fillna(0.0).to_numpy(dtype=float)
    back = (lambda v: np.power(10.0, v)) if log else (lambda v: v)
    agg["c"], agg["lo"], agg["hi"] = back(agg["mean"]), back(agg["mean"] - half), back(agg["mean"] + half)
    meta = df.drop_duplicates("unit").set_index("unit")
    colors = variant_colors(coll)
    styles = [s for s in dict.fromkeys(meta.sort_values("order")["settings"]) if s]
    dash = {s: _DASHES[i % len(_DASHES)] for i, s in enumerate(styles)}
    rank = variant_order(coll)
    lines = []
    for unit, g in agg.groupby("unit", sort=False):
        m = meta.loc[unit]
        label = m["variant"] + (f" · {m['settings']}" if m["settings"] else "")
        lines.append(Line(unit, label, colors.get(m["variant"], "#333333"), g["x"].to_numpy(dtype=float),
                          g["c"].to_numpy(dtype=float), g["lo"].to_numpy(dtype=float), g["hi"].to_numpy(dtype=float),
                          int(g["n"].max()), g["low"].to_numpy(dtype=bool), dash.get(m["settings"], "-")))
    lines.sort(key=lambda ln: (rank.get(ln.label.split(" · ")[0], 1 << 20), int(meta.loc[ln.unit, "order"])))
    return lines


def _same_x(a: Line, b: Line) -> bool:
    return len(a.x) == len(b.x) and bool(np.array_equal(a.x, b.x))


def identical_groups(lines: list[Line], rtol: float = IDENTICAL_RTOL) -> list[list[Line]]:
    """Groups (two or more) of lines with the same x and the same values to ``rtol``."""
    return _groups(lines, lambda a, b: _same_x(a, b) and bool(np.allclose(a.y, b.y, rtol=rtol, atol=0.0,
                                                                           equal_nan=True)))


def overlapping_groups(lines: list[Line], log: bool) -> list[list[Line]]:
    """Groups of lines that lie within :data:`OVERLAP_FRACTION` of the panel's height everywhere."""
    tr = (lambda v: np.log10(np.maximum(v, 1e-300))) if log else (lambda v: v)
    ys = np.concatenate([tr(ln.y) for ln in lines]) if lines else np.zeros(1)
    ys = ys[np.isfinite(ys)]
    span = float(ys.max() - ys.min()) if len(ys) else 0.0
    tol = OVERLAP_FRACTION * (span if span > 0 else 1.0)
    return _groups(lines, lambda a, b: _same_x(a, b) and float(np.nanmax(np.abs(tr(a.y) - tr(b.y)))) <= tol)


def _groups(lines: list[Line], same) -> list[list[Line]]:
    parent = list(range(len(lines)))

    def root(i):
        while parent[i] != i:
            i = parent[i]
        return i
    for i in range(len(lines)):
        for j in range(i + 1, len(lines)):
            if root(i) != root(j) and same(lines[i], lines[j]):
                parent[root(j)] = root(i)
    out: dict[int, list[Line]] = {}
    for i, ln in enumerate(lines):
        out.setdefault(root(i), []).append(ln)
    return [g for g in out.values() if len(g) > 1]


@dataclass
class Drawn:
    """What :func:`draw_lines` found in one panel."""

    identical: list[list[str]] = field(default_factory=list)   # labels of lines that coincide exactly
    at_floor: int = 0                                          # points drawn as ▼ on the float floor
    seeds: set = field(default_factory=set)                    # seed counts of the lines
    handles: list = field(default_factory=list)


def draw_lines(ax, lines: list[Line], *, logx=False, logy=False, markers=None, floor: float | None = None,
               floor_name: str = "float32", lw: float = 1.6, band=True, marker_face=None) -> Drawn:
    """Draw the lines with their bands; layer lines that overlap; mark points on the float floor."""
    out = Drawn(identical=[[ln.label for ln in g] for g in identical_groups(lines)], seeds={ln.n for ln in lines})
    if markers is None:
        markers = max((len(ln.x) for ln in lines), default=0) <= 15
    layer: dict[str, tuple[int, int]] = {}
    for g in overlapping_groups(lines, logy):
        for j, ln in enumerate(g):
            layer[ln.unit] = (j, len(g))
    for ln in lines:
        if band and ln.n >= 2 and np.isfinite(ln.lo).any():
            ax.fill_between(ln.x, ln.lo, ln.hi, color=ln.color, alpha=0.16, lw=0, zorder=1)
        j, k = layer.get(ln.unit, (0, 1))
        width = lw + 1.5 * (k - 1 - j)
        kw = dict(color=ln.color, ls=ln.dash, lw=width, zorder=2 + j, solid_capstyle="butt")
        if k > 1 or markers:
            kw.update(marker=_MARKERS[j % len(_MARKERS)], markersize=(4.0 + 2.2 * (k - 1 - j)) if markers else 5.0)
            if marker_face:
                kw.update(markerfacecolor=marker_face)
            if not markers:  # many points: markers staggered so each member of the group shows its own
                step = max(k * 2, len(ln.x) // 8)
                kw.update(markevery=(j * step // k, step))
        y = np.where(ln.at_floor, np.nan, ln.y) if floor is not None else ln.y
        handle, = ax.plot(ln.x, y, label=ln.label, **kw)
        out.handles.append(handle)
        if floor is not None and ln.at_floor.any():
            ax.plot(ln.x[ln.at_floor], np.full(int(ln.at_floor.sum()), floor), ls="none", marker="v",
                    markersize=5, color=ln.color, zorder=3 + j, clip_on=False)
            out.at_floor += int(ln.at_floor.sum())
    if out.at_floor:
        ax.axhline(floor, color="#444444", lw=0.9, ls=":", zorder=0)
        ax.annotate(f"{floor_name} underflow floor {floor:.1e}", xy=(0.01, floor), xycoords=("axes fraction", "data"),
                    xytext=(0, 3), textcoords="offset points", fontsize=7, color="#444444")
    if logx:
        ax.set_xscale("log")
    if logy:
        ax.set_yscale("log")
    return out


def fit_ylim(ax, lines: list[Line], logy: bool, refs=(), floor: float | None = None,
             include=()) -> tuple[float, float]:
    """Y-limits fitted to this panel's lines (bands count up to a quarter of the lines' span beyond them);
    a reference value (the line at 1) is included when it lies near the data, one in ``include``
    (a baseline) always."""
    tr = (lambda v: np.log10(v)) if logy else (lambda v: np.asarray(v, dtype=float))
    centers = [tr(ln.y[~ln.at_floor]) for ln in lines if (~ln.at_floor).any()]
    centers += [tr(np.array([v], dtype=float)) for v in include if (v > 0 or not logy)]
    if floor is not None and any(ln.at_floor.any() for ln in lines):
        centers.append(tr(np.array([floor])))
    c = np.concatenate(centers) if centers else np.zeros(1)
    c = c[np.isfinite(c)]
    lo, hi = (float(c.min()), float(c.max())) if len(c) else (0.0, 1.0)
    span = hi - lo
    bands = [tr(np.r_[ln.lo, ln.hi]) for ln in lines if ln.n >= 2]
    b = np.concatenate(bands) if bands else np.zeros(0)
    b = b[np.isfinite(b)]
    if len(b):
        lo, hi = max(min(lo, float(b.min())), lo - 0.25 * span), min(max(hi, float(b.max())), hi + 0.25 * span)
    for r in refs:
        tr_r = float(tr(np.array([r]))[0]) if (not logy or r > 0) else math.nan
        if math.isfinite(tr_r) and lo - 0.3 * max(span, 1e-12) <= tr_r <= hi + 0.3 * max(span, 1e-12):
            lo, hi = min(lo, tr_r), max(hi, tr_r)
    span = hi - lo
    pad = 0.06 * span if span > 0 else (0.05 if logy else max(0.05 * abs(hi), 0.05))
    lo, hi = lo - pad, hi + pad
    limits = (10.0 ** lo, 10.0 ** hi) if logy else (lo, hi)
    ax.set_ylim(*limits)
    if logy:
        nice_log(ax)
    return limits


def share_similar_ylims(axes_limits: list[tuple], logy: bool) -> None:
    """Give panels of one row the same y-limits when their ranges are alike (union at most 1.5×
    the narrowest span), so heights compare across them; otherwise each keeps its own."""
    if len(axes_limits) < 2:
        return
    tr = (lambda v: math.log10(v)) if logy else (lambda v: v)
    spans = [tr(hi) - tr(lo) for _, (lo, hi) in axes_limits]
    lo = min(tr(lo) for _, (lo, _h) in axes_limits)
    hi = max(tr(h) for _, (_l, h) in axes_limits)
    if min(spans) > 0 and hi - lo <= 1.5 * min(spans):
        limits = (min(l for _, (l, _h) in axes_limits), max(h for _, (_l, h) in axes_limits))
        for ax, _ in axes_limits:
            ax.set_ylim(*limits)
            if logy:
                nice_log(ax)


def nice_log(ax) -> None:
    """Plain numbers (0.5, 1, 2) on a log axis spanning less than three decades."""
    lo, hi = ax.get_ylim()
    if lo > 0 and hi / lo < 1000:
        subs = (1.0, 1.5, 2.0, 3.0, 5.0, 7.0) if hi / lo < 8 else (1.0, 2.0, 5.0)
        ax.yaxis.set_major_locator(ticker.LogLocator(subs=subs))
        ax.yaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
        ax.yaxis.set_minor_formatter(ticker.NullFormatter())


#: legend entries per column before a legend wraps into a second column (a panel's height holds ~20)
LEGEND_ROWS = 18


def legend(ax, handles, extra: list | None = None, inside: bool = False) -> None:
    """The legend right of ``ax``, or (``inside``) filling ``ax`` itself, an empty panel's place;
    long legends wrap into columns so they stay within their row of panels."""
    handles = list(handles) + list(extra or [])
    if handles:
        ncol = -(-len(handles) // LEGEND_ROWS)
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(0.0, 1.0) if inside else (1.02, 1.0),
                  frameon=False, fontsize=8 if ncol == 1 else 7, ncol=ncol)


def style_handle(label: str, **kw) -> Line2D:
    """A legend entry for a style (not a configuration): gray, with the given line/marker."""
    kw.setdefault("color", "#555555")
    return Line2D([], [], label=label, **kw)


def panel_notes(drawn: list[tuple[str, Drawn]], floor: float | None, floor_name: str) -> list[str]:
    """The notes a figure's panels call for: points on the float floor, lines drawn without a band."""
    notes = []
    n_floor = sum(d.at_floor for _, d in drawn)
    if n_floor:
        notes.append(f"{n_floor} point(s) at or below the {floor_name} underflow floor ({floor:.2g}; 0 included) "
                     "are drawn as ▼ on the floor: the value underflowed and is not a measurement of the norm.")
    seeds = set().union(*(d.seeds for _, d in drawn)) if drawn else set()
    if seeds == {1}:
        notes.append("1 seed per configuration: no band over seeds (an interval needs at least 2).")
    elif 1 in seeds:
        notes.append("Lines from 1 seed carry no band (an interval needs at least 2 seeds).")
    return notes
