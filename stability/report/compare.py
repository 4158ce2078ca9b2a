"""Comparing two stores (two commits, two machines): every table value, A against B.

Rows are matched by configuration (the run config without ``seed`` and ``suite``), tables by
their kind, name, part and regime. A change is flagged as a *regression* when it goes the
worse way (by the column's direction) by more than the spread across seeds, taken as the
larger of the two standard deviations. With a single seed on either side there is no spread:
the change is reported as "worse/better (no spread: 1 seed)" and never flagged. Columns
without a direction (parameter count) report any change as "changed".
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

import pandas as pd

from .tables import Agg, Column, Table, _badness, format_agg

REGRESSION = "regression"
IMPROVEMENT = "improvement"


@dataclass
class Comparison:
    tables: list[tuple[str, pd.DataFrame]] = field(default_factory=list)   # (table title, rows)
    only_a: list[str] = field(default_factory=list)
    only_b: list[str] = field(default_factory=list)
    tables_only_a: list[str] = field(default_factory=list)
    tables_only_b: list[str] = field(default_factory=list)

    @property
    def all_rows(self) -> pd.DataFrame:
        frames = [df.assign(table=title) for title, df in self.tables if len(df)]
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=COLUMNS + ["table"])

    @property
    def regressions(self) -> pd.DataFrame:
        rows = self.all_rows
        return rows[rows["verdict"] == REGRESSION]

    def counts(self) -> dict[str, int]:
        rows = self.all_rows
        return rows["verdict"].value_counts().to_dict() if len(rows) else {}


COLUMNS = ["transition", "settings", "figure", "A", "B", "change", "verdict"]


def _match_key(config: dict, relaxed: bool = False) -> str:
    """The configuration without seed, suite and where the data lies (and, ``relaxed``, the device:
    to compare one suite measured on two machines)."""
    drop = ("seed", "suite") + (("device", "dtype") if relaxed else ())
    cfg = {k: v for k, v in config.items() if k not in drop}
    for key in ("definition", "options"):
        if isinstance(cfg.get(key), dict) and "data_dir" in cfg[key]:
            cfg[key] = {k: v for k, v in cfg[key].items() if k != "data_dir"}
    return json.dumps(cfg, sort_keys=True, default=str)


def _pair_rows(a_rows: list, b_rows: list) -> dict[int, object]:
    """Index of each A row -> its B row: same configuration, else (one candidate only) the same
    configuration on another device or dtype."""
    by_key = {_match_key(r.config): r for r in b_rows}
    pairs, used = {}, set()
    for i, r in enumerate(a_rows):
        rb = by_key.get(_match_key(r.config))
        if rb is not None:
            pairs[i] = rb
            used.add(id(rb))
    for i, r in enumerate(a_rows):
        if i in pairs:
            continue
        cand = [rb for rb in b_rows if id(rb) not in used and _match_key(rb.config, True) == _match_key(r.config, True)]
        if len(cand) == 1:
            pairs[i] = cand[0]
            used.add(id(cand[0]))
    return pairs


def _table_key(t: Table) -> tuple:
    return (t.kind, t.name, t.part, t.regime)


def verdict(col: Column, a: Agg, b: Agg) -> tuple[str, str]:
    """(change text, verdict) for one cell."""
    if col.until:
        fa = a.n_reached / a.n if a.n else math.nan
        fb = b.n_reached / b.n if b.n else math.nan
        if fa != fb:
            change = f"reached {a.n_reached}/{a.n} vs {b.n_reached}/{b.n}"
            return change, (REGRESSION if fa < fb else IMPROVEMENT)
        if a.n_reached == 0:
            return "neither reached", "unchanged"
    if math.isnan(a.mean) or math.isnan(b.mean):
        return "–", "not comparable"
    if math.isinf(a.mean) or math.isinf(b.mean):
        if a.mean == b.mean:
            return "0", "unchanged"
        worse = _badness(col.better, a.mean) > _badness(col.better, b.mean) if col.better else None
        return f"{b.mean:g} → {a.mean:g}", ("changed" if worse is None else REGRESSION if worse else IMPROVEMENT)
    delta = a.mean - b.mean
    scale = col.fmt
    d_text = _signed(delta * (1000.0 if scale == "ms" else 1.0))
    rel = f" ({delta / abs(b.mean) * 100:+.1f}%)" if b.mean != 0 else ""
    change = d_text + rel
    if delta == 0:
        return "0", "unchanged"
    if col.better is None:
        return change, "changed"
    worse = _badness(col.better, a.mean) > _badness(col.better, b.mean)
    stds = [s for s in (a.std, b.std) if not math.isnan(s)]
    if len(stds) < 2:
        return change, ("worse" if worse else "better") + " (no spread: 1 seed)"
    spread = max(stds)
    if abs(delta) <= spread:
        return change, "within spread"
    return change, REGRESSION if worse else IMPROVEMENT


def _signed(x: float) -> str:
    return f"{x:+.3g}"


def compare(a_tables: list[Table], b_tables: list[Table]) -> Comparison:
    cmp = Comparison()
    b_by_key = {_table_key(t): t for t in b_tables}
    a_keys = {_table_key(t) for t in a_tables}
    cmp.tables_only_b = [t.title for t in b_tables if _table_key(t) not in a_keys]
    for ta in a_tables:
        tb = b_by_key.get(_table_key(ta))
        if tb is None:
            cmp.tables_only_a.append(ta.title)
            continue
        pairs = _pair_rows(ta.rows, tb.rows)
        b_cols = {c.key: c for c in tb.columns}
        recs = []
        for i, ra in enumerate(ta.rows):
            rb = pairs.get(i)
            if rb is None:
                cmp.only_a.append(f"{ta.title}: {ra.label}")
                continue
            for c in ta.columns:
                if c.key not in b_cols:
                    continue
                a, b = ta.cell(ra, c), tb.cell(rb, b_cols[c.key])
                if not a.present and not b.present:
                    continue
                if not a.present or not b.present:
                    change, v = "–", ("missing in A" if not a.present else "missing in B")
                else:
                    change, v = verdict(c, a, b)
                recs.append({"transition": ra.variant, "settings": ra.settings, "figure": c.header,
                             "A": format_agg(a, c), "B": format_agg(b, b_cols[c.key]), "change": change, "verdict": v})
        matched = {id(rb) for rb in pairs.values()}
        cmp.only_b += [f"{tb.title}: {rb.label}" for rb in tb.rows if id(rb) not in matched]
        cmp.tables.append((ta.title, pd.DataFrame.from_records(recs, columns=COLUMNS)))
    return cmp
