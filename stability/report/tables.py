"""Result tables: one row per configuration, seeds aggregated as a mean with a 95% interval.

Tables are grouped by what the runs are (``kind``/``name``: the jacobian probe, the copy
task, ...) and by the comparison regime (``config["match"]``), since their columns differ.
A group's figures are split into two tables when it has both: *results* (final task
metrics, steps to a threshold, parameter count, time per step) and *gradient stability*
(half-life, Jacobian norms, Lyapunov exponent, singular values, at init and after
training).

Every column says which way is better. In each column the best row is marked, and so are the
rows that cannot be told apart from it across seeds (:mod:`.stats`: Welch's t-test, Holm's
correction over the column). A task figure with a baseline says whether anything was learned
(interval below the baseline loss, above chance accuracy); rows that learned nothing are never
the best. The columns: :mod:`.columns`; text and HTML: :mod:`.render`.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field

import pandas as pd

from .columns import (DIRECTION_SYMBOL, DIRECTION_TEXT, Column, badness, columns_for,  # noqa: F401 (re-exported)
                      jacobian_at)
from .data import (Collection, _natural, common_settings, flatten, fmt_value, regime_of, regime_text,
                   settings_labels, short_names, transition_sort_key)
from .stats import ALPHA, INTERVAL_TEXT, TEST_TEXT, Agg, aggregate, holm, welch_p
from ..network import is_gated

#: a cell's place in its column (CSV ``<column>_mark``)
BEST, TIED, APART, UNTESTED = "best", "tied", "apart", "untested"


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
    run_configs: list[dict] = field(default_factory=list)   # each seed's full run config

    def run_config(self, i: int = 0) -> dict:
        return self.run_configs[i] if self.run_configs else self.config

    @property
    def label(self) -> str:
        return self.variant + (f" · {self.settings}" if self.settings else "")


@dataclass
class Mark:
    """What a cell says beyond its numbers."""

    rank: str = ""                 # BEST | TIED | APART | UNTESTED | "" (not ranked)
    p: float = math.nan            # Holm-adjusted p-value of the test against the best
    learned: str = ""              # "yes" | "no" | "unclear" | "" (no baseline or chance level)
    reference: float | None = None  # the baseline loss or chance accuracy
    bound: float | None = None     # a half-life beyond this gap (the largest measured): shown as "> bound"


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
    marks: dict[tuple[str, str], Mark] = field(default_factory=dict)
    alpha: float = ALPHA

    def cell(self, row: Row | str, col: Column | str) -> Agg:
        return self.cells.get(_key(row, col), Agg())

    def mark(self, row: Row | str, col: Column | str) -> Mark:
        return self.marks.get(_key(row, col), Mark())

    def best(self, col: Column) -> set[str]:
        """Config keys of the best row(s) in ``col``."""
        return {r.config_key for r in self.rows if self.mark(r, col).rank == BEST}

    def learned(self, row: Row) -> str:
        """The row at a glance: "yes" when every task figure with a reference beat it, "no" when
        none did and one is clearly on the wrong side, "mixed" when some figures beat their
        reference and others clearly do not (an accuracy above chance with a cross-entropy above
        the baseline: confident wrong answers), "unclear" otherwise; "" when no column has one."""
        said = [self.mark(row, c).learned for c in self.columns if self.mark(row, c).learned]
        if not said:
            return ""
        if "no" in said:
            return "mixed" if "yes" in said else "no"
        return "yes" if all(s == "yes" for s in said) else "unclear"

    @property
    def has_learned(self) -> bool:
        return any(self.mark(r, c).learned for r in self.rows for c in self.columns)

    # -- numeric form (CSV, tests)
    def frame(self) -> pd.DataFrame:
        recs = []
        for r in self.rows:
            rec = {"transition": r.transition, "variant": r.variant, "settings": r.settings, "n_seeds": len(r.run_ids),
                   "seeds": " ".join(str(s) for s in r.seeds)}
            if self.has_learned:
                rec["learned"] = self.learned(r)
            for c in self.columns:
                a, m = self.cell(r, c), self.mark(r, c)
                rec.update({f"{c.key}_mean": a.mean, f"{c.key}_std": a.std, f"{c.key}_lo": a.lo,
                            f"{c.key}_hi": a.hi, f"{c.key}_n": a.n})
                if c.until:
                    rec[f"{c.key}_reached"] = a.n_reached
                if c.better is not None:
                    rec[f"{c.key}_mark"] = m.rank
                    rec[f"{c.key}_p_holm"] = m.p
                if c.reference is not None:
                    rec[f"{c.key}_reference"] = m.reference
                    rec[f"{c.key}_learned"] = m.learned
                if c.bound is not None:
                    rec[f"{c.key}_beyond_gap"] = m.bound
            rec["config"] = r.config_key
            recs.append(rec)
        return pd.DataFrame.from_records(recs)

    def caption(self) -> str:
        dirs = sorted({c.better for c in self.columns if c.better}, key=list(DIRECTION_SYMBOL).index)
        legend = "; ".join(f"{DIRECTION_SYMBOL[d]} {DIRECTION_TEXT[d]}" for d in dirs)
        glosses = "; ".join(dict.fromkeys(g for c in self.columns for g in c.gloss.split("; ") if g))
        level = f"{100 * (1 - self.alpha):g}%"
        seeds = [len(r.run_ids) for r in self.rows]
        text = f"Regime: {self.regime}. "
        among = (" among the rows of the same task or probe options (each a different problem)"
                 if len(problem_groups(self)) > 1 else "")
        if seeds and max(seeds) < 2:
            text += ("One seed per row: cells are single values, with no interval, and no difference is tested"
                     + ("; bold marks the best value only." if legend else "."))
        else:
            text += (f"Cells: mean [{level} interval] over seeds, n = seeds per row ({INTERVAL_TEXT}; one seed: "
                     "no interval; 'k/n': only k seeds had that figure).")
            if legend:
                text += (f" Bold: the best per column{among}; ≈: cannot be told apart from the best at the "
                         f"{100 * self.alpha:g}% level ({TEST_TEXT}); unmarked: told apart from it, or not tested "
                         "(one seed, or values that are not finite).")
        if legend:
            text += f" Directions: {legend}."
        if any(c.reference is not None for c in self.columns):
            text += (" Learned?: ✗ = nothing learned, the value is not below the baseline loss (accuracy: not "
                     "above chance); ? = the mean is, but its interval reaches the baseline; yes = the whole "
                     "interval is (one seed: the value). Rows that learned nothing, and cells marked ✗ or ?, "
                     "are never marked best.")
        return text + (f" Columns: {glosses}." if glosses else "")

    def common_text(self) -> str:
        names = short_names(list(self.common))
        return ", ".join(f"{names[k]}={fmt_value(v)}" for k, v in self.common.items())


def _key(row: Row | str, col: Column | str) -> tuple[str, str]:
    return (row.config_key if isinstance(row, Row) else row, col.key if isinstance(col, Column) else col)


# -- marks: learned?, beyond the measured gaps, best and ties -------------------------
def _learned(a: Agg, reference: float | None, when: str) -> str:
    if reference is None or not a.present or math.isnan(a.mean):
        return ""
    sign = 1.0 if when == "below" else -1.0           # compare as "below" for both
    mean, ref = sign * a.mean, sign * reference
    far = (sign * a.hi if sign > 0 else sign * a.lo) if a.has_interval else mean
    if far < ref:
        return "yes"
    return "no" if mean >= ref else "unclear"


def _capped(c: Column, m: Mark, v: float) -> float:
    """A half-life beyond the gaps measured counts as the largest gap (all we know is v > G)."""
    return min(v, m.bound) if m.bound is not None else v


def _sample(t: Table, r: Row, c: Column) -> list[float] | None:
    """The per-seed values a test compares (as badness, so "closest to 1" compares |log x|)."""
    a, m = t.cell(r, c), t.mark(r, c)
    if c.until and a.n_reached < a.n:
        return None
    vals = [badness(c.better, _capped(c, m, v)) for v in a.values]
    return vals if all(math.isfinite(v) for v in vals) else None


def problem_groups(t: Table) -> list[list[Row]]:
    """The table's rows grouped by the problem they solve (their task or probe options: adding at
    T = 100 and at T = 200, digits in order and permuted, are different problems); models,
    nonlinearities and hidden sizes are compared within a group."""
    groups: dict[str, list[Row]] = {}
    for r in t.rows:
        groups.setdefault(json.dumps(r.config.get("options", {}), sort_keys=True, default=str), []).append(r)
    return list(groups.values())


def mark_column(t: Table, c: Column, learned_rows: dict[str, str], rows: list[Row] | None = None) -> None:
    """Set every cell's rank in ``c`` among ``rows`` (default: all): the best (eligible) rows,
    then a Welch test of each other eligible row against the best, Holm-adjusted over them."""
    if c.better is None:
        return
    rows = t.rows if rows is None else rows
    task = c.part == "results" and not c.timing
    scored: dict[str, tuple] = {}
    for r in rows:
        a, m = t.cell(r, c), t.mark(r, c)
        if not a.present or (not c.until and math.isnan(a.mean)):
            continue
        if m.learned in ("no", "unclear") or (task and learned_rows.get(r.config_key) == "no"):
            continue
        if c.until:
            if a.n_reached:  # "not reached" is never the best
                scored[r.config_key] = (-a.n_reached / a.n, a.mean)
        else:
            score = badness(c.better, _capped(c, m, a.mean))
            if score != math.inf:   # e.g. a gradient ratio of 0 "closest to 1": never the best
                scored[r.config_key] = (score,)
    present = sum(t.cell(r, c).present for r in rows)
    if not scored or present < (1 if c.until else 2):
        return
    top = min(scored.values())
    best = [r for r in rows if r.config_key in scored and _close(scored[r.config_key], top)]
    for r in best:
        t.marks[_key(r, c)].rank = BEST
    others = [r for r in rows if r.config_key in scored and r not in best]
    ref = _sample(t, best[0], c)
    pvals = [welch_p(ref, s) if ref is not None and (s := _sample(t, r, c)) is not None else math.nan
             for r in others]
    for r, p in zip(others, holm(pvals)):
        m = t.marks[_key(r, c)]
        m.p = p
        m.rank = UNTESTED if math.isnan(p) else TIED if p >= t.alpha else APART


def _close(a: tuple, b: tuple) -> bool:
    return all(x == y or (math.isfinite(x) and math.isfinite(y) and abs(x - y) <= 1e-12 * max(1.0, abs(x), abs(y)))
               for x, y in zip(a, b))


# -- building the tables --------------------------------------------------------------
def group_title(kind: str, name: str) -> str:
    return f"{name} {'task' if kind == 'task' else 'probe' if kind == 'probe' else kind}".strip()


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "table"


def build_tables(coll: Collection, alpha: float = ALPHA) -> list[Table]:
    """The result tables of a loaded store, in a stable order; intervals at 1 − ``alpha``,
    differences tested at ``alpha``."""
    if not 0 < alpha < 1:
        raise ValueError(f"alpha={alpha!r}: the significance level must lie strictly between 0 and 1")
    fin = coll.finished
    if not len(fin):
        return []
    groups: dict[tuple, list] = {}
    for _, run in fin.iterrows():
        groups.setdefault((run["kind"], run["name"], json.dumps(regime_of(run["config"]), default=str)), []).append(run)
    kinds_order = {"task": 0, "probe": 1}
    keys = sorted(groups, key=lambda k: (kinds_order.get(k[0], 2), k[1], k[2]))
    names_with_regimes: dict[tuple, int] = {}
    for k in keys:
        names_with_regimes[k[:2]] = names_with_regimes.get(k[:2], 0) + 1
    tables: list[Table] = []
    for key in keys:
        kind, name, regime_json = key
        by_config: dict[str, list] = {}
        for run in groups[key]:
            by_config.setdefault(run["config_key"], []).append(run)
        configs = [{kk: vv for kk, vv in by_config[k][0]["config"].items() if kk != "seed"} for k in by_config]
        settings = settings_labels(configs)
        rows = []
        for ck, rs in by_config.items():
            cfg = {k: v for k, v in rs[0]["config"].items() if k != "seed"}
            var = coll.variant(cfg)
            rs = sorted(rs, key=lambda r: (str(type(r["seed"])), r["seed"]) if r["seed"] is not None else ("", 0))
            rows.append(Row(ck, cfg, var.transition, var.label, var.color, settings[ck], [r["id"] for r in rs],
                            [r["seed"] for r in rs], [r["config"] for r in rs]))
        rows.sort(key=lambda r: (transition_sort_key(r.transition), _natural(r.config.get("transition_options") or {}),
                                 r.variant, _settings_sort(r.config), r.settings))
        cols, notes = columns_for(coll, [rid for r in rows for rid in r.run_ids],
                                  [r.run_config(i) for r in rows for i in range(len(r.run_ids))], name)
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
        base = group_title(kind, name)
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
                      notes=[text for p, text in notes if p == part or len(parts) == 1], alpha=alpha)
            _fill(t, coll)
            t.notes += _missing_notes(t)
            if not pcols:
                t.notes.append("No figures recorded for these runs (no metric rows this report knows).")
            tables.append(t)
    return tables


def _fill(t: Table, coll: Collection) -> None:
    """Cells, then marks: learned? and bounds per cell, then best and ties per column."""
    for r in t.rows:
        runs = [(coll.data(rid), r.run_config(i)) for i, rid in enumerate(r.run_ids)]
        for c in t.columns:
            a = aggregate([c.get(d, cfg) for d, cfg in runs], len(r.run_ids), until=c.until, alpha=t.alpha,
                          geometric=c.geometric)
            t.cells[(r.config_key, c.key)] = a
            m = t.marks[(r.config_key, c.key)] = Mark()
            if c.reference is not None:
                refs = [v for v in (c.reference(d, cfg) for d, cfg in runs) if v is not None]
                m.reference = sum(refs) / len(refs) if refs else None
                m.learned = _learned(a, m.reference, c.learned_when)
            if c.bound is not None and a.present:
                gaps = [v for v in (c.bound(d, cfg) for d, cfg in runs) if v is not None]
                if gaps and a.mean > max(gaps):
                    m.bound = max(gaps)
    learned_rows = {r.config_key: t.learned(r) for r in t.rows}
    mixed = [r.label for r in t.rows if learned_rows[r.config_key] == "mixed"]
    if mixed:
        t.notes.append(f"learned? “mixed” for {', '.join(mixed)}: some figures beat their reference (chance, "
                       f"baseline) and others do not, e.g. an accuracy above chance with a cross-entropy above "
                       f"the baseline (confident wrong answers, typically overfitting).")
    groups = problem_groups(t)
    for c in t.columns:
        for rows in groups:
            mark_column(t, c, learned_rows, rows)


def _settings_sort(cfg: dict) -> tuple:
    """Rows in a natural order of their settings (hidden 64 before 128 before 256)."""
    return _natural(cfg)


def _missing_notes(t: Table) -> list[str]:
    notes = []
    gated = [r for r in t.rows if is_gated(r.transition)]
    no_w = [c for c in t.columns if c.key.startswith(("sigma_min_", "sigma_max_"))]  # the columns about W
    if gated and no_w:  # a gated cell has no single transition matrix W: nothing is missing
        notes.append(f"{', '.join(sorted({r.transition for r in gated}))}: no single transition matrix W "
                     f"(gated cells), so no {', '.join(sorted({c.title.split(' ')[0] for c in no_w}))} (–).")
    for c in t.columns:
        none = [r.label for r in t.rows if not t.cell(r, c).present
                and not (c in no_w and is_gated(r.transition))]
        part = [f"{r.label} ({t.cell(r, c).n}/{len(r.run_ids)} seeds)" for r in t.rows
                if t.cell(r, c).present and t.cell(r, c).n < len(r.run_ids)]
        if none:
            notes.append(f"Missing “{c.title}” for: {', '.join(none)}.")
        if part:
            notes.append(f"“{c.title}” only for some seeds of: {', '.join(part)}.")
    return notes
