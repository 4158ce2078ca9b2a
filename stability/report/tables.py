"""Result tables: one row per configuration, seeds aggregated as mean ± std.

Tables are grouped by what the runs are (``kind``/``name``: the jacobian probe, the copy
task, ...) and by the comparison regime (``config["match"]``), since their columns differ.
A group's figures are split into two tables when it has both: *results* (final task
metrics, steps to a threshold, parameter count, time per step) and *gradient stability*
(half-life, Jacobian norms, Lyapunov exponent, singular values, at init and after
training). Every column says which way is better; the best row is marked.
"""
from __future__ import annotations

import html
import json
import math
import re
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import pandas as pd

from .data import (Collection, RunData, baseline_of, common_settings, flatten, fmt_value, paper_of,
                   _natural, regime_of, regime_text, settings_labels, short_names, transition_sort_key)

#: how "better" reads in a column header
DIRECTION_SYMBOL = {"higher": "↑", "lower": "↓", "one": "→1", "zero": "→0", None: ""}
DIRECTION_TEXT = {"higher": "higher is better", "lower": "lower is better",
                  "one": "closest to 1 is better (distance |log x|)", "zero": "closest to 0 is better",
                  None: "not ranked"}

#: the Jacobian gaps tabulated
GAPS = (100, 1000)
#: "steps to reach a threshold": task -> [(metric, value, relative to the baseline?)]
THRESHOLDS: dict[str, list[tuple[str, float, bool]]] = {
    "adding": [("mse", 0.05, False)],
    "copy": [("ce", 0.1, True)],
}
#: final task metrics in table order: metric -> direction
TASK_METRICS = {"accuracy": "higher", "ce": "lower", "mse": "lower", "loss": "lower", "perplexity": "lower",
                "bpc": "lower"}
#: splits searched for a final task metric, in order of preference
FINAL_SPLITS = ("test", "valid", "train")
#: splits searched for a learning curve (steps to threshold), in order of preference
CURVE_SPLITS = ("train", "valid")
SPLIT_TEXT = {"init": "init", "final": "trained"}


@dataclass
class Column:
    key: str                                    # CSV name
    title: str                                  # display title (without the direction symbol)
    better: str | None                          # "higher" | "lower" | "one" | "zero" | None
    get: Callable[[RunData, dict], float | None] = field(repr=False)
    fmt: str = "g"                              # "g" | "int" | "ms"
    part: str = "stability"                     # "stability" | "results"
    until: bool = False                         # steps-to-threshold: inf means "not reached"
    metric: str = ""                            # the task metric behind it (paper matching)
    gloss: str = ""                             # what the column is, for the table's caption

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


@dataclass
class Agg:
    """Aggregate over the seeds of one configuration."""

    mean: float = math.nan
    std: float = math.nan      # sample std (ddof = 1); NaN with fewer than 2 values
    n: int = 0                 # seeds with a value (finite, or inf = "not reached")
    n_seeds: int = 0           # seeds of the configuration
    n_reached: int = 0         # for steps-to-threshold columns
    values: list = field(default_factory=list)

    @property
    def present(self) -> bool:
        return self.n > 0


def aggregate(values: list[float | None], n_seeds: int, until: bool = False) -> Agg:
    vals = [float(v) for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    agg = Agg(n=len(vals), n_seeds=n_seeds, values=vals)
    if until:
        reached = [v for v in vals if math.isfinite(v)]
        agg.n_reached = len(reached)
        vals = reached
    if vals:
        arr = np.asarray(vals, dtype=float)
        with np.errstate(invalid="ignore"):
            agg.mean = float(arr.mean()) if np.isfinite(arr).all() else (
                float(arr[0]) if len(set(arr.tolist())) == 1 else float(np.mean(arr)))
            agg.std = float(arr.std(ddof=1)) if len(arr) > 1 and np.isfinite(arr).all() else math.nan
            if agg.std < 1e-9 * abs(agg.mean):  # rounding noise of identical values
                agg.std = 0.0
    return agg


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


def _final(split, metric, relative=False):
    def get(d: RunData, cfg: dict):
        v = d.scalar(split, metric)
        if v is None or not relative:
            return v
        b = baseline_of(cfg, d, metric)
        return None if not b else v / b
    return get


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
            cols.append(Column(f"half_life_{split}", f"half-life ({when})", "higher", _scalar(split, "half_life"),
                               gloss="half-life: steps until the gradient norm halves"))
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
                                   gloss=f"{norm} gap g: {'spectral' if norm == '‖J‖₂' else 'Frobenius'} norm of "
                                         "∂h_{t+g}/∂h_t, mean over samples (log-log interpolated between "
                                         "measured gaps)"))
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

    # -- task results
    def have_baseline(metric):
        return any(baseline_of(c, d, metric) is not None for c, d in zip(configs, data))

    main_loss = [m for m in ("ce", "mse") if any(has(sp, m) for sp in FINAL_SPLITS)]
    for metric, better in TASK_METRICS.items():
        if metric == "loss" and main_loss:
            continue
        split = next((sp for sp in FINAL_SPLITS if has(sp, metric)), None)
        if split is None:
            continue
        title = {"ce": "CE", "mse": "MSE", "bpc": "bpc"}.get(metric, metric)
        cols.append(Column(f"{metric}_{split}", f"{title} ({split})", better, _final(split, metric),
                           part="results", metric=metric, gloss="task figures: the value at the last step logged"))
        if metric in ("ce", "mse", "loss"):
            if have_baseline(metric):
                cols.append(Column(f"{metric}_{split}_rel", f"{title}/baseline ({split})", "lower",
                                   _final(split, metric, relative=True), part="results", metric=f"{metric}/baseline",
                                   gloss="baseline: the loss of the best input-independent guess"))
            else:
                notes.append(("results", f"{title} relative to the baseline is not shown: no baseline in the run "
                                         "config (options.baseline, definition.baseline) or in a `baseline` metric."))
    thresholds = list(THRESHOLDS.get(name, []))
    for cfg in configs:
        t = (cfg.get("options") or {}).get("threshold")
        if isinstance(t, dict):
            thresholds = [(m, float(v), False) for m, v in t.items() if isinstance(v, (int, float))]
            break
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
    if has("summary", "params"):
        cols.append(Column("params", "params", None, _scalar("summary", "params"), fmt="int", part="results",
                           gloss="params: trainable parameter count"))
    if any(has(sp, "step_time") for sp in ("train", "valid", "test")):
        cols.append(Column("step_time_ms", "ms/step", "lower", _step_time, fmt="ms", part="results",
                           gloss="ms/step: time per training step, median over steps"))
    return cols, notes


# -- tables --------------------------------------------------------------------------
@dataclass
class Row:
    config_key: str
    config: dict           # without the seed
    transition: str
    variant: str           # transition label with its distinguishing options
    color: str
    settings: str          # what else distinguishes it within its table
    run_ids: list[str]
    seeds: list

    @property
    def label(self) -> str:
        return self.variant + (f" · {self.settings}" if self.settings else "")


@dataclass
class Table:
    slug: str
    title: str
    kind: str
    name: str
    part: str              # "results" | "stability"
    regime: str
    common: dict
    rows: list[Row]
    columns: list[Column]
    cells: dict[tuple[str, str], Agg]   # (config key, column key) -> aggregate
    notes: list[str] = field(default_factory=list)

    def cell(self, row: Row | str, col: Column | str) -> Agg:
        rk = row.config_key if isinstance(row, Row) else row
        ck = col.key if isinstance(col, Column) else col
        return self.cells.get((rk, ck), Agg())

    # -- best per column
    def best(self, col: Column) -> set[str]:
        """Config keys of the best row(s) in ``col`` (empty when fewer than two rows have values)."""
        if col.better is None:
            return set()
        scored = {}
        for r in self.rows:
            a = self.cell(r, col)
            if col.until:
                if a.n == 0:
                    continue
                if a.n_reached == 0:
                    continue  # "not reached" is never the best
                frac = a.n_reached / a.n
                scored[r.config_key] = (-frac, a.mean if a.n_reached else math.inf)
                continue
            if not a.present or math.isnan(a.mean):
                continue
            scored[r.config_key] = (_badness(col.better, a.mean),)
        if len(scored) < (1 if col.until else 2):
            return set()
        best = min(scored.values())
        return {k for k, v in scored.items() if _close(v, best)}

    # -- numeric form (CSV, tests)
    def frame(self) -> pd.DataFrame:
        recs = []
        for r in self.rows:
            rec = {"transition": r.transition, "variant": r.variant, "settings": r.settings, "n_seeds": len(r.run_ids),
                   "seeds": " ".join(str(s) for s in r.seeds)}
            for c in self.columns:
                a = self.cell(r, c)
                rec[f"{c.key}_mean"] = a.mean
                rec[f"{c.key}_std"] = a.std
                rec[f"{c.key}_n"] = a.n
                if c.until:
                    rec[f"{c.key}_reached"] = a.n_reached
            rec["config"] = r.config_key
            recs.append(rec)
        return pd.DataFrame.from_records(recs)

    def display_frame(self, markup: str = "text") -> pd.DataFrame:
        """Formatted cells (``markup``: "text", "md" bolds the best, "html" returns escaped text)."""
        show_settings = any(r.settings for r in self.rows)
        best = {c.key: self.best(c) for c in self.columns}
        recs = []
        for r in self.rows:
            rec = {"transition": r.variant}
            if show_settings:
                rec["settings"] = r.settings
            rec["n"] = len(r.run_ids)
            for c in self.columns:
                text = format_agg(self.cell(r, c), c)
                if markup == "md" and r.config_key in best[c.key]:
                    text = f"**{text}**"
                rec[c.header] = text
            recs.append(rec)
        return pd.DataFrame.from_records(recs)

    def caption(self) -> str:
        dirs = sorted({c.better for c in self.columns if c.better}, key=list(DIRECTION_SYMBOL).index)
        legend = "; ".join(f"{DIRECTION_SYMBOL[d]} {DIRECTION_TEXT[d]}" for d in dirs)
        glosses = "; ".join(dict.fromkeys(c.gloss for c in self.columns if c.gloss))
        return (f"Regime: {self.regime}. Cells: mean ± std over seeds (sample std, ddof = 1; n = seeds per row; "
                f"'k/n' = only k seeds had that figure)."
                + (f" Best per column in bold ({legend})." if legend else "")
                + (f" Columns: {glosses}." if glosses else ""))

    def common_text(self) -> str:
        names = short_names(list(self.common))
        return ", ".join(f"{names[k]}={fmt_value(v)}" for k, v in self.common.items())


def _badness(better: str, v: float) -> float:
    if better == "higher":
        return -v
    if better == "lower":
        return v
    if better == "one":
        return abs(math.log(v)) if v > 0 else math.inf
    if better == "zero":
        return abs(v)
    raise ValueError(better)


def _close(a: tuple, b: tuple) -> bool:
    return all(x == y or (math.isfinite(x) and math.isfinite(y) and abs(x - y) <= 1e-12 * max(1.0, abs(x), abs(y)))
               for x, y in zip(a, b))


def format_number(x: float, fmt: str = "g", std: bool = False) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    if math.isinf(x):
        return "∞" if x > 0 else "−∞"
    if fmt == "ms":
        x = x * 1000.0
    if fmt == "int" and abs(x) >= 1:
        return f"{x:,.0f}"
    return f"{x:.2g}" if std else f"{x:.4g}"


def format_parts(a: Agg, col: Column) -> tuple[str, str, str]:
    """(mean, "± std", "(k/n …)") of a cell, each possibly empty."""
    if not a.present:
        return "–", "", ""
    if col.until and a.n_reached == 0:
        return "not reached", "", (f"({a.n}/{a.n})" if a.n == a.n_seeds else f"({a.n}/{a.n_seeds} with data)")
    std = ""
    if not math.isnan(a.std) and a.std != 0:
        std = "± " + format_number(a.std, col.fmt, std=True)
    count = ""
    if col.until and a.n_reached < a.n_seeds:
        count = f"({a.n_reached}/{a.n_seeds} reached)"
    elif a.n < a.n_seeds:
        count = f"({a.n}/{a.n_seeds})"
    return format_number(a.mean, col.fmt), std, count


def format_agg(a: Agg, col: Column) -> str:
    return " ".join(p for p in format_parts(a, col) if p)


def _group_title(kind: str, name: str) -> str:
    return f"{name} {'task' if kind == 'task' else 'probe' if kind == 'probe' else kind}".strip()


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "table"


def build_tables(coll: Collection) -> list[Table]:
    """The result tables of a loaded store, in a stable order."""
    fin = coll.finished
    if not len(fin):
        return []
    groups: dict[tuple, list] = {}
    for _, run in fin.iterrows():
        cfg = run["config"]
        regime = regime_of(cfg)
        groups.setdefault((run["kind"], run["name"], json.dumps(regime, default=str)), []).append(run)
    kinds_order = {"task": 0, "probe": 1}
    keys = sorted(groups, key=lambda k: (kinds_order.get(k[0], 2), k[1], k[2]))
    names_with_regimes: dict[tuple, int] = {}
    for k in keys:
        names_with_regimes[k[:2]] = names_with_regimes.get(k[:2], 0) + 1
    tables: list[Table] = []
    for key in keys:
        kind, name, regime_json = key
        runs = groups[key]
        by_config: dict[str, list] = {}
        for run in runs:
            by_config.setdefault(run["config_key"], []).append(run)
        configs = [by_config[k][0]["config"] for k in by_config]
        configs = [{kk: vv for kk, vv in c.items() if kk != "seed"} for c in configs]
        settings = settings_labels(configs)
        rows = []
        for ck, rs in by_config.items():
            cfg = {k: v for k, v in rs[0]["config"].items() if k != "seed"}
            var = coll.variant(cfg)
            rs = sorted(rs, key=lambda r: (str(type(r["seed"])), r["seed"]) if r["seed"] is not None else ("", 0))
            rows.append(Row(ck, cfg, var.transition, var.label, var.color, settings[ck], [r["id"] for r in rs],
                            [r["seed"] for r in rs]))
        rows.sort(key=lambda r: (transition_sort_key(r.transition), r.variant, _settings_sort(r.config), r.settings))
        run_ids = [rid for r in rows for rid in r.run_ids]
        run_cfgs = [r.config for r in rows for _ in r.run_ids]
        cols, notes = columns_for(coll, run_ids, run_cfgs, name)
        regime = regime_text(json.loads(regime_json) if regime_json != "null" else None,
                             [c.get("hidden_size") for c in configs])
        common = common_settings([flatten(c) for c in configs])
        for k in ("kind", "name", "match", "budget", "suite"):
            common.pop(k, None)
        common = {k: v for k, v in common.items() if v not in ({}, [], "{}", "[]")}
        parts = {"results": [c for c in cols if c.part == "results"],
                 "stability": [c for c in cols if c.part == "stability"]}
        task_cols = [c for c in parts["results"] if c.key not in ("params", "step_time_ms")]
        if not task_cols and parts["stability"]:
            parts = {"stability": parts["stability"] + parts["results"]}
        base = _group_title(kind, name)
        suffix = ""
        if names_with_regimes[(kind, name)] > 1:
            r = json.loads(regime_json) if regime_json != "null" else None
            if r is None:
                suffix = " [regime not recorded]"
            else:
                suffix = f" [equal {'hidden size' if r[0] == 'hidden' else 'parameters'}{f' {r[1]}' if r[1] else ''}]"
        for part, pcols in parts.items():
            if not pcols and part == "stability":
                continue
            title = base + (" — results" if part == "results" else " — gradient stability") + suffix
            t = Table(slug=_slug(f"{kind}-{name}-{part}{suffix}"), title=title, kind=kind, name=name, part=part,
                      regime=regime, common=common, rows=rows, columns=pcols, cells={},
                      notes=[text for p, text in notes if p == part or len(parts) == 1])
            for r in rows:
                cfgs = {rid: r.config for rid in r.run_ids}
                for c in pcols:
                    vals = [c.get(coll.data(rid), cfgs[rid]) for rid in r.run_ids]
                    t.cells[(r.config_key, c.key)] = aggregate(vals, len(r.run_ids), until=c.until)
            t.notes += _missing_notes(t)
            if not pcols:
                t.notes.append("No figures recorded for these runs (no metric rows this report knows).")
            tables.append(t)
    return tables


def _settings_sort(cfg: dict) -> tuple:
    """Rows in a natural order of their settings (hidden 64 before 128 before 256)."""
    return _natural(cfg)


def _missing_notes(t: Table) -> list[str]:
    notes = []
    for c in t.columns:
        none = [r.label for r in t.rows if not t.cell(r, c).present]
        part = [f"{r.label} ({t.cell(r, c).n}/{len(r.run_ids)} seeds)" for r in t.rows
                if t.cell(r, c).present and t.cell(r, c).n < len(r.run_ids)]
        if none:
            notes.append(f"Missing “{c.title}” for: {', '.join(none)}.")
        if part:
            notes.append(f"“{c.title}” only for some seeds of: {', '.join(part)}.")
    return notes


# -- rendering -----------------------------------------------------------------------
def to_markdown(t: Table) -> str:
    df = t.display_frame("md")
    lines = [f"### {t.title}", "", t.caption(), ""]
    if t.common:
        lines += [f"Common settings: {t.common_text()}.", ""]
    lines.append(df.to_markdown(index=False, disable_numparse=True) if len(df.columns) else "(no columns)")
    lines.append("")
    for n in t.notes:
        lines.append(f"- {n}")
    if t.notes:
        lines.append("")
    return "\n".join(lines)


def to_html(t: Table) -> str:
    """The table with a two-level header (at init / after training) and the spread under each mean."""
    show_settings = any(r.settings for r in t.rows)
    best = {c.key: t.best(c) for c in t.columns}
    e = html.escape
    lead = ["transition"] + (["settings"] if show_settings else []) + ["n"]
    grouped = any(c.when for c in t.columns)
    if grouped:
        top = "".join(f'<th rowspan="2">{e(x)}</th>' for x in lead)
        spans: list[list] = []
        for c in t.columns:
            if spans and spans[-1][0] == c.when:
                spans[-1][1] += 1
            else:
                spans.append([c.when, 1])
        top += "".join(f'<th colspan="{n}" class="group">{e(w)}</th>' if w else f'<th colspan="{n}" class="group"></th>'
                       for w, n in spans)
        second = "".join(f'<th title="{e(DIRECTION_TEXT[c.better])}">{e(c.short_header)}</th>' for c in t.columns)
        head = f"<tr>{top}</tr><tr>{second}</tr>"
    else:
        head = "<tr>" + "".join(f"<th>{e(x)}</th>" for x in lead) + "".join(
            f'<th title="{e(DIRECTION_TEXT[c.better])}">{e(c.header)}</th>' for c in t.columns) + "</tr>"
    body = []
    for r in t.rows:
        cells = [f'<td class="config"><span class="swatch" style="background:{e(r.color)}"></span>{e(r.variant)}</td>']
        if show_settings:
            cells.append(f'<td class="settings">{e(r.settings)}</td>')
        cells.append(f'<td class="num">{len(r.run_ids)}</td>')
        for c in t.columns:
            a = t.cell(r, c)
            mean, std, count = format_parts(a, c)
            classes = ["num"] + (["best"] if r.config_key in best[c.key] else []) + ([] if a.present else ["missing"])
            extra = " ".join(x for x in (std, count) if x)
            sub = f'<span class="sd">{e(extra)}</span>' if extra else ""
            cells.append(f'<td class="{" ".join(classes)}">{e(mean)}{sub}</td>')
        body.append("<tr>" + "".join(cells) + "</tr>")
    return (f'<table class="results" id="table-{e(t.slug)}"><thead>{head}</thead>'
            f'<tbody>{"".join(body)}</tbody></table>')


# -- paper vs measured ----------------------------------------------------------------
_PAPER_ALIASES = {"acc": "accuracy", "test_accuracy": "accuracy", "test_acc": "accuracy", "ppl": "perplexity",
                  "test_perplexity": "perplexity", "bits_per_character": "bpc", "parameters": "params",
                  "n_params": "params", "param_count": "params", "cross_entropy": "ce"}


def paper_table(coll: Collection, tables: list[Table]) -> pd.DataFrame:
    """Rows (task, configuration, figure, paper, measured, difference, source) for every
    configuration whose run config carries the paper's figures; "measured" only from our runs."""
    recs = []
    for t in tables:
        if t.part != "results" and any(tt.part == "results" and tt.kind == t.kind and tt.name == t.name
                                       and tt.regime == t.regime for tt in tables):
            continue  # one row set per group: use the results table
        for r in t.rows:
            paper = paper_of(r.config)
            if not paper:
                continue
            source = "; ".join(f"{k}: {v}" for k, v in paper.items() if not _number(v))
            for metric, value in paper.items():
                if not _number(value):
                    continue
                m = _PAPER_ALIASES.get(metric.lower(), metric.lower())
                col = _measured_column(t, m, tables, r)
                measured_text, diff, unit = "not measured", None, ""
                if col is not None:
                    tab, c = col
                    a = tab.cell(r, c)
                    if a.present and not math.isnan(a.mean):
                        scale = 100.0 if (m == "accuracy" and float(value) > 1 and a.mean <= 1) else 1.0
                        unit = " (%)" if scale == 100.0 else ""
                        mean = a.mean * scale
                        measured_text = format_number(mean, c.fmt if c.fmt != "ms" else "g")
                        if not math.isnan(a.std):
                            fmt = c.fmt if c.fmt != "ms" else "g"
                            measured_text += " ± " + format_number(a.std * scale, fmt, True)
                        measured_text += f" (n={a.n})"
                        diff = mean - float(value)
                recs.append({"task": _group_title(t.kind, t.name), "transition": r.variant, "settings": r.settings,
                             "figure": m + unit, "paper": fmt_value(float(value)), "measured": measured_text,
                             "measured − paper": "–" if diff is None else f"{diff:+.4g}", "paper source": source})
    return pd.DataFrame.from_records(recs, columns=["task", "transition", "settings", "figure", "paper", "measured",
                                                    "measured − paper", "paper source"])


def _measured_column(t: Table, metric: str, tables: list[Table], row: Row):
    same = [tt for tt in tables if tt.kind == t.kind and tt.name == t.name and tt.regime == t.regime]
    for tt in same:
        for c in tt.columns:
            if (c.metric or c.key.split("_")[0]) == metric or c.key == metric:
                return tt, c
    return None


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def df_to_html(df: pd.DataFrame, cls: str = "plain", row_classes: list[str] | None = None) -> str:
    e = html.escape
    head = "".join(f"<th>{e(str(c))}</th>" for c in df.columns)
    body = []
    for i, (_, rec) in enumerate(df.iterrows()):
        rc = f' class="{e(row_classes[i])}"' if row_classes and row_classes[i] else ""
        body.append(f"<tr{rc}>" + "".join(f"<td>{e(str(v))}</td>" for v in rec.tolist()) + "</tr>")
    return f'<table class="{e(cls)}"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def df_to_markdown(df: pd.DataFrame) -> str:
    return df.to_markdown(index=False, disable_numparse=True) if len(df) else "(none)"
