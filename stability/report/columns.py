"""Which columns a table of runs has, and how each column reads one run.

A :class:`Column` knows its direction (which way is better), how to read its value from one
run, and, for task figures, the reference that says whether anything was learned (the
baseline loss, or chance accuracy). Half-life columns know the largest gap the run measured:
a half-life beyond it is an extrapolation, shown as a bound.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import pandas as pd

from ..config import Definition
from .data import Collection, RunData, baseline_of

#: how "better" reads in a column header
DIRECTION_SYMBOL = {"higher": "↑", "lower": "↓", "one": "→1", "zero": "→0", None: ""}
DIRECTION_TEXT = {"higher": "higher is better", "lower": "lower is better",
                  "one": "closest to 1 is better (distance |log x|)", "zero": "closest to 0 is better",
                  None: "not ranked"}

#: the Jacobian gaps tabulated
GAPS = (100, 1000)
#: final task metrics in table order: metric -> direction
TASK_METRICS = {"accuracy": "higher", "ce": "lower", "mse": "lower", "loss": "lower", "perplexity": "lower",
                "bpc": "lower"}
#: splits searched for a final task metric, in order of preference
FINAL_SPLITS = ("test", "valid", "train")
#: splits searched for a learning curve (steps to threshold), in order of preference
CURVE_SPLITS = ("train", "valid")
SPLIT_TEXT = {"init": "init", "final": "trained"}

Getter = Callable[[RunData, dict], "float | None"]


@dataclass
class Column:
    key: str                                    # CSV name
    title: str                                  # display title (without the direction symbol)
    better: str | None                          # "higher" | "lower" | "one" | "zero" | None
    get: Getter = field(repr=False)
    fmt: str = "g"                              # "g" | "int" | "ms"
    part: str = "stability"                     # "stability" | "results"
    until: bool = False                         # steps-to-threshold: inf means "not reached"
    metric: str = ""                            # the task metric behind it (paper matching)
    gloss: str = ""                             # what the column is, for the table's caption
    reference: Getter | None = field(default=None, repr=False)   # baseline loss / chance accuracy
    learned_when: str = ""                      # "below" (a loss) | "above" (an accuracy) the reference
    geometric: bool = False                     # geometric mean and log-scale interval (positive norms)
    bound: Getter | None = field(default=None, repr=False)       # largest gap measured (half-lives)

    @property
    def header(self) -> str:
        sym = DIRECTION_SYMBOL[self.better]
        return f"{self.title} {sym}" if sym else self.title

    @property
    def when(self) -> str:
        """"at init" / "after training" for the stability columns, else ""."""
        for suffix, text in ((" (init)", "at init"), (" (trained)", "after training")):
            if self.title.endswith(suffix):
                return text
        return ""

    @property
    def short_header(self) -> str:
        title = self.title
        for suffix in (" (init)", " (trained)"):
            title = title.removesuffix(suffix)
        sym = DIRECTION_SYMBOL[self.better]
        return f"{title} {sym}" if sym else title

    @property
    def timing(self) -> bool:
        """A wall-clock figure: compared by ratio against a noise factor, not by a test."""
        return self.fmt == "ms"


def badness(better: str, v: float) -> float:
    """A column's value as "how bad" (lower is better) for ranking and testing."""
    if better == "higher":
        return -v
    if better == "lower":
        return v
    if better == "one":
        return abs(math.log(v)) if v > 0 else math.inf
    if better == "zero":
        return abs(v)
    raise ValueError(better)


# -- per-run getters -----------------------------------------------------------------
def _scalar(split, metric, series_fallback=None):
    def get(d: RunData, cfg: dict):
        v = d.scalar(split, metric)
        if v is None and series_fallback is not None:
            s = d.series(split, series_fallback[0])
            if s is not None:
                v = float(series_fallback[1](s.to_numpy()))
        return v
    return get


def jacobian_at(s: pd.Series, gap: float) -> float | None:
    """The norm at ``gap``: exact where measured, else interpolated linearly in log-log between
    the nearest measured gaps; None outside the measured range."""
    s = s[(s.index > 0)]
    if not len(s):
        return None
    if gap in s.index:
        return float(s.loc[gap])
    x = np.log(np.asarray(s.index, dtype=float))
    if not (x[0] <= math.log(gap) <= x[-1]):
        return None
    y = s.to_numpy(dtype=float)
    if (y <= 0).any():
        return float(np.interp(math.log(gap), x, y))
    return float(np.exp(np.interp(math.log(gap), x, np.log(y))))


def _jacobian(split, metric, gap):
    def get(d: RunData, cfg: dict):
        s = d.series(split, metric)
        return None if s is None else jacobian_at(s, gap)
    return get


def _jacobian_series(d: RunData, split: str) -> pd.Series | None:
    s = d.series(split, "jacobian_spectral")
    return s if s is not None else d.series(split, "jacobian_frobenius")


def largest_gap(split: str) -> Getter:
    """The largest Jacobian gap a run measured: its ``max_gap`` row, else its largest stored gap."""
    def get(d: RunData, cfg: dict):
        v = d.scalar(split, "max_gap")
        if v is not None:
            return v
        s = _jacobian_series(d, split)
        return None if s is None else float(s.index.max())
    return get


def fitted_gaps(data: list[RunData], split: str) -> tuple[float, float] | None:
    """The gaps the half-lives were fitted over, across runs: (smallest, largest), from the
    ``fit_min_gap``/``fit_max_gap`` rows, else the gaps stored."""
    lows, highs = [], []
    for d in data:
        lo, hi = d.scalar(split, "fit_min_gap"), d.scalar(split, "fit_max_gap")
        s = _jacobian_series(d, split)
        if lo is None and s is not None:
            lo = float(s.index.min())
        if hi is None and s is not None:
            hi = float(s.index.max())
        if lo is not None and hi is not None:
            lows.append(lo)
            highs.append(hi)
    return (min(lows), max(highs)) if lows else None


def _final(split, metric, relative=False):
    def get(d: RunData, cfg: dict):
        v = d.scalar(split, metric)
        if v is None or not relative:
            return v
        b = baseline_of(cfg, d, metric)
        return None if not b else v / b
    return get


def _baseline(metric, relative=False):
    def get(d: RunData, cfg: dict):
        b = baseline_of(cfg, d, metric)
        return None if b is None else (1.0 if relative else b)
    return get


def chance_of(config: dict) -> float | None:
    """Chance accuracy from the task's definition (``chance_accuracy``); None where it has none."""
    return Definition(config.get("definition") or {}).chance_accuracy


def _chance(d: RunData, cfg: dict):
    return chance_of(cfg)


def _steps_to(split, metric, value, relative):
    def get(d: RunData, cfg: dict):
        s = d.series(split, metric)
        if s is None:
            return None
        thr = value
        if relative:
            b = baseline_of(cfg, d, metric)
            if not b:
                return None
            thr = value * b
        below = s[s < thr]
        return float(below.index[0]) if len(below) else math.inf
    return get


def _step_time(d: RunData, cfg: dict):
    for split in ("train", "valid", "test"):
        s = d.series(split, "step_time")
        if s is not None:
            return float(s.median())
    return None


# -- which columns a group of runs has -----------------------------------------------
def columns_for(coll: Collection, run_ids: list[str], configs: list[dict],
                name: str) -> tuple[list[Column], list[tuple[str, str]]]:
    """The columns with data for these runs, and notes on figures that could not be computed."""
    data = [coll.data(r) for r in run_ids]
    have = set()
    for d in data:
        have |= {k for k, s in d.series_by_key.items() if s.notna().any()}
    has = lambda split, metric: (split, metric) in have  # noqa: E731
    notes: list[tuple[str, str]] = []     # (part, text)
    cols: list[Column] = []
    uncovered: dict[tuple, dict[int, list[str]]] = {}

    # -- gradient stability, at init then after training
    for split in ("init", "final"):
        when = SPLIT_TEXT[split]
        if has(split, "half_life"):
            fit = fitted_gaps(data, split)
            fit_text = (f"; half-lives ({when}) fitted over gaps {fit[0]:g}–{fit[1]:g}: one beyond the largest "
                        "gap measured, G, is an extrapolation, shown as > G") if fit else ""
            cols.append(Column(f"half_life_{split}", f"half-life ({when})", "higher", _scalar(split, "half_life"),
                               gloss="half-life: steps until the gradient norm halves" + fit_text,
                               bound=largest_gap(split)))
        jmetric = "jacobian_spectral" if has(split, "jacobian_spectral") else (
            "jacobian_frobenius" if has(split, "jacobian_frobenius") else None)
        if jmetric:
            norm = "‖J‖₂" if jmetric == "jacobian_spectral" else "‖J‖_F"
            series = [s for s in (d.series(split, jmetric) for d in data) if s is not None]
            for gap in GAPS:
                if not any(jacobian_at(s, gap) is not None for s in series):
                    largest = max(int(s.index.max()) for s in series)
                    uncovered.setdefault((norm, largest), {}).setdefault(gap, []).append(when)
                    continue
                cols.append(Column(f"jacobian_{gap}_{split}", f"{norm} gap {gap} ({when})", "one",
                                   _jacobian(split, jmetric, gap),
                                   geometric=True,
                                   gloss=f"{norm} gap g: {'spectral' if norm == '‖J‖₂' else 'Frobenius'} norm of "
                                         "∂h_{t+g}/∂h_t, mean over samples (log-log interpolated between "
                                         "measured gaps); over seeds a geometric mean, its interval from the "
                                         "logs (a norm spans orders of magnitude and is never negative)"))
        if has(split, "grad_ratio"):
            cols.append(Column(f"grad_ratio_{split}", f"gradient ratio ({when})", "one", _scalar(split, "grad_ratio"),
                               gloss="gradient ratio: ‖∂L/∂h_1‖ / ‖∂L/∂h_T‖ (the gradient reaching the first "
                                     "step over the one at the last)"))
        if has(split, "lyapunov_max") or has(split, "lyapunov"):
            cols.append(Column(f"lyapunov_max_{split}", f"λ_max ({when})", "zero",
                               _scalar(split, "lyapunov_max", ("lyapunov", np.max)),
                               gloss="λ_max: top Lyapunov exponent (per step)"))
        for m, fn in (("sigma_min", np.min), ("sigma_max", np.max)):
            if has(split, m) or has(split, "singular_value"):
                sym = "σ_min" if m == "sigma_min" else "σ_max"
                cols.append(Column(f"{m}_{split}", f"{sym}(W) ({when})", "one",
                                   _scalar(split, m, ("singular_value", fn)),
                                   gloss="σ(W): singular values of the transition matrix"))

    for (norm, largest), gaps in uncovered.items():
        whens = sorted({w for ws in gaps.values() for w in ws}, key=["init", "trained"].index)
        notes.append(("stability", f"{norm} at gap {' and '.join(str(g) for g in gaps)} not shown: no run measured "
                                   f"that far (largest gap measured: {largest}; {', '.join(whens)})."))

    cols += _task_columns(configs, data, has, name, notes)
    if has("summary", "params"):
        cols.append(Column("params", "params", None, _scalar("summary", "params"), fmt="int", part="results",
                           gloss="params: trainable parameter count"))
    if any(has(sp, "step_time") for sp in ("train", "valid", "test")):
        cols.append(Column("step_time_ms", "ms/step", "lower", _step_time, fmt="ms", part="results",
                           gloss="ms/step: time per training step, median over steps"))
    return cols, notes


def _thresholds(configs: list[dict], name: str) -> list[tuple[str, float, bool]]:
    """(metric, value, relative) of "steps to reach a threshold", from the task's definition."""
    for cfg in configs:
        listed = Definition(cfg.get("definition") or {}).thresholds
        if listed:
            return [(str(t["metric"]), float(t["value"]), bool(t.get("relative"))) for t in listed]
    return []


def _task_columns(configs: list[dict], data: list[RunData], has, name: str,
                  notes: list[tuple[str, str]]) -> list[Column]:
    def have_baseline(metric):
        return any(baseline_of(c, d, metric) is not None for c, d in zip(configs, data))

    cols: list[Column] = []
    main_loss = [m for m in ("ce", "mse") if any(has(sp, m) for sp in FINAL_SPLITS)]
    for metric, better in TASK_METRICS.items():
        if metric == "loss" and main_loss:
            continue
        split = next((sp for sp in FINAL_SPLITS if has(sp, metric)), None)
        if split is None:
            continue
        title = {"ce": "CE", "mse": "MSE", "bpc": "bpc"}.get(metric, metric)
        col = Column(f"{metric}_{split}", f"{title} ({split})", better, _final(split, metric),
                     part="results", metric=metric, gloss="task figures: the value at the last step logged")
        if metric not in ("accuracy",) and have_baseline(metric):     # losses, perplexity, bpc
            col.reference, col.learned_when = _baseline(metric), "below"
        if metric == "accuracy" and any(chance_of(c) is not None for c in configs):
            col.reference, col.learned_when = _chance, "above"
        cols.append(col)
        if metric in ("ce", "mse", "loss"):
            if have_baseline(metric):
                cols.append(Column(f"{metric}_{split}_rel", f"{title}/baseline ({split})", "lower",
                                   _final(split, metric, relative=True), part="results", metric=f"{metric}/baseline",
                                   gloss="baseline: the loss of the best input-independent guess",
                                   reference=_baseline(metric, relative=True), learned_when="below"))
            else:
                notes.append(("results", f"{title} relative to the baseline is not shown: the task's definition "
                                         "in the run config carries no baseline."))
    thresholds = _thresholds(configs, name)
    for metric, value, relative in thresholds:
        cand = [metric] + (["loss"] if metric == "ce" else [])
        found = next(((sp, m) for m in cand for sp in CURVE_SPLITS if has(sp, m)), None)
        if found is None:
            continue
        split, m = found
        if relative and not have_baseline(m):
            notes.append(("results", f"steps to {m} < baseline × {value:g} not shown: no baseline recorded."))
            continue
        thr = f"baseline/{1 / value:g}" if relative else f"{value:g}"
        title = {"ce": "CE", "mse": "MSE"}.get(m, m)
        cols.append(Column(f"steps_{m}_below_{'baseline_x' if relative else ''}{value:g}",
                           f"steps to {title} < {thr} ({split})", "lower", _steps_to(split, m, value, relative),
                           fmt="int", part="results", until=True,
                           gloss="steps to …: first logged step below the threshold (mean over the seeds that "
                                 "reached it)"))
    return cols
