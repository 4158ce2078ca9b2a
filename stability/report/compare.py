"""Comparing two stores (two commits, two machines): every table value, A against B.

Rows are matched by configuration (the run config without ``seed`` and ``suite``), tables by
their kind, name, part and regime. The gate, as asv and pytest-benchmark users know it:

- A quality figure (task metric, stability figure) is a *regression* when it goes the worse
  way (by the column's direction) by more than ``threshold`` relative to B (default 10%), and,
  when both sides have two or more seeds, Welch's t-test across seeds says so at ``alpha``
  after Holm's correction over the rows of that column (:mod:`.stats`). With one seed on
  either side the threshold alone decides.
- A timing figure (ms/step) is compared by the ratio A/B against a noise factor
  (``time_factor``, default 1.25 as ``asv compare --factor``): "slower" beyond it, "faster"
  below its inverse, else "within noise". Slower rows count as regressions only when
  ``fail_on_slowdown`` is set.
- Columns without a direction (parameter count) report any change as "changed".

Rows are listed worst first: regressions, then slower, then worse within the threshold.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

import pandas as pd

from .columns import Column, badness
from .render import format_agg
from .stats import ALPHA, Agg, holm, welch_p
from .tables import Mark, Table

REGRESSION = "regression"
IMPROVEMENT = "improvement"
SLOWER = "slower"
FASTER = "faster"
#: default relative change a quality figure must exceed to count (10%)
THRESHOLD = 0.10
#: default noise factor for timings (as `asv compare --factor`)
TIME_FACTOR = 1.25

#: verdicts in the order rows are listed (worst first); others follow
VERDICT_ORDER = [REGRESSION, SLOWER, "missing in A", "worse (not significant)", "worse (within threshold)",
                 "changed", "not comparable", "missing in B", "within noise", "unchanged",
                 "better (within threshold)", "better (not significant)", FASTER, IMPROVEMENT]


@dataclass
class Comparison:
    tables: list[tuple[str, pd.DataFrame]] = field(default_factory=list)   # (table title, rows)
    only_a: list[str] = field(default_factory=list)
    only_b: list[str] = field(default_factory=list)
    tables_only_a: list[str] = field(default_factory=list)
    tables_only_b: list[str] = field(default_factory=list)
    threshold: float = THRESHOLD
    time_factor: float = TIME_FACTOR
    alpha: float = ALPHA
    fail_on_slowdown: bool = False

    @property
    def all_rows(self) -> pd.DataFrame:
        frames = [df.assign(table=title) for title, df in self.tables if len(df)]
        if not frames:
            return pd.DataFrame(columns=COLUMNS + ["table"])
        return sort_worst_first(pd.concat(frames, ignore_index=True))

    @property
    def regressions(self) -> pd.DataFrame:
        """The rows the gate fails on: quality regressions, and slower timings when asked."""
        rows = self.all_rows
        gated = [REGRESSION] + ([SLOWER] if self.fail_on_slowdown else [])
        return rows[rows["verdict"].isin(gated)]

    @property
    def slower(self) -> pd.DataFrame:
        rows = self.all_rows
        return rows[rows["verdict"] == SLOWER]

    def counts(self) -> dict[str, int]:
        rows = self.all_rows
        return rows["verdict"].value_counts().to_dict() if len(rows) else {}

    def rule(self) -> str:
        """The gate in words (for the page and the command line)."""
        return (f"A quality figure is a regression when it is worse (by the column's direction) by more than "
                f"{100 * self.threshold:g}% of B and, with two or more seeds on both sides, Welch's t-test across "
                f"seeds (Holm's correction over the rows of the column) finds the difference at the "
                f"{100 * self.alpha:g}% level; with one seed the {100 * self.threshold:g}% threshold alone decides. "
                f"Timings are compared by the ratio A/B against a noise factor of {self.time_factor:g}: "
                + ("slower timings fail the gate (--fail-on-slowdown)." if self.fail_on_slowdown
                   else "slower timings are reported, never counted as regressions (unless --fail-on-slowdown)."))


COLUMNS = ["transition", "settings", "figure", "A", "B", "change", "verdict", "p_holm"]


def sort_worst_first(df: pd.DataFrame) -> pd.DataFrame:
    rank = {v: i for i, v in enumerate(VERDICT_ORDER)}
    order = df["verdict"].map(lambda v: rank.get(v, len(rank))).to_numpy()
    return df.iloc[sorted(range(len(df)), key=lambda i: order[i])].reset_index(drop=True)


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


@dataclass
class _Cell:
    """One value compared, before the column's tests are corrected together."""

    change: str
    verdict: str = ""              # decided already (no test pending) when set
    worse: bool = False
    beyond: bool = False           # beyond the relative threshold
    p: float = math.nan            # raw Welch p (both sides n >= 2)


def _capped(v: float, m: Mark) -> float:
    return min(v, m.bound) if m.bound is not None else v


def _per_seed(c: Column, a: Agg, m: Mark) -> list[float]:
    return [badness(c.better, _capped(v, m)) for v in a.values]


def _judge(c: Column, a: Agg, b: Agg, ma: Mark, mb: Mark, threshold: float, time_factor: float) -> _Cell:
    if c.until:
        fa = a.n_reached / a.n if a.n else math.nan
        fb = b.n_reached / b.n if b.n else math.nan
        if fa != fb:
            return _Cell(f"reached {a.n_reached}/{a.n} vs {b.n_reached}/{b.n}", REGRESSION if fa < fb else IMPROVEMENT)
        if a.n_reached == 0:
            return _Cell("neither reached", "unchanged")
    va, vb = _capped(a.mean, ma), _capped(b.mean, mb)
    if math.isnan(va) or math.isnan(vb):
        return _Cell("–", "not comparable")
    if math.isinf(va) or math.isinf(vb):
        if va == vb:
            return _Cell("0", "unchanged")
        if c.better is None:
            return _Cell(f"{vb:g} → {va:g}", "changed")
        worse = badness(c.better, va) > badness(c.better, vb)
        return _Cell(f"{vb:g} → {va:g}", REGRESSION if worse else IMPROVEMENT)
    delta = va - vb
    rel = delta / abs(vb) if vb != 0 else math.copysign(math.inf, delta) if delta else 0.0
    change = f"{delta * (1000.0 if c.fmt == 'ms' else 1.0):+.3g}" + (f" ({100 * rel:+.1f}%)" if vb != 0 else "")
    if delta == 0:
        return _Cell("0", "unchanged")
    if c.better is None:
        return _Cell(change, "changed")
    if c.timing:
        ratio = va / vb if vb > 0 else math.inf
        change += f", ×{ratio:.3g}"
        return _Cell(change, SLOWER if ratio > time_factor else FASTER if ratio < 1 / time_factor else "within noise")
    worse = badness(c.better, va) > badness(c.better, vb)
    cell = _Cell(change, worse=worse, beyond=abs(rel) > threshold)
    if not cell.beyond:
        cell.verdict = "worse (within threshold)" if worse else "better (within threshold)"
        return cell
    if a.n >= 2 and b.n >= 2:
        cell.p = welch_p(_per_seed(c, a, ma), _per_seed(c, b, mb))
    if math.isnan(cell.p):      # one seed (or values no test takes): the threshold decides
        cell.verdict = REGRESSION if worse else IMPROVEMENT
    return cell


def compare(a_tables: list[Table], b_tables: list[Table], *, threshold: float = THRESHOLD,
            time_factor: float = TIME_FACTOR, alpha: float = ALPHA, fail_on_slowdown: bool = False) -> Comparison:
    """Every value of A's tables against B's; see the module docstring for the verdicts."""
    if not (threshold >= 0 and math.isfinite(threshold)):
        raise ValueError(f"threshold={threshold!r}: a relative change must be a finite number >= 0 (0.1 = 10%)")
    if not (time_factor >= 1 and math.isfinite(time_factor)):
        raise ValueError(f"time_factor={time_factor!r}: the timing noise factor must be a finite number >= 1")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha={alpha!r}: the significance level must lie strictly between 0 and 1")
    cmp = Comparison(threshold=threshold, time_factor=time_factor, alpha=alpha, fail_on_slowdown=fail_on_slowdown)
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
        recs: list[dict] = []
        pending: dict[str, list[tuple[dict, _Cell]]] = {}     # column key -> cells awaiting Holm
        for i, ra in enumerate(ta.rows):
            rb = pairs.get(i)
            if rb is None:
                cmp.only_a.append(f"{ta.title}: {ra.label}")
                continue
            for c in ta.columns:
                if c.key not in b_cols:
                    continue
                a, b = ta.cell(ra, c), tb.cell(rb, b_cols[c.key])
                ma, mb = ta.mark(ra, c), tb.mark(rb, b_cols[c.key])
                if not a.present and not b.present:
                    continue
                rec = {"transition": ra.variant, "settings": ra.settings, "figure": c.header,
                       "A": format_agg(a, c, ma), "B": format_agg(b, b_cols[c.key], mb), "p_holm": math.nan}
                if not a.present or not b.present:
                    rec.update(change="–", verdict="missing in A" if not a.present else "missing in B")
                else:
                    cell = _judge(c, a, b, ma, mb, threshold, time_factor)
                    rec.update(change=cell.change, verdict=cell.verdict)
                    if not cell.verdict:
                        pending.setdefault(c.key, []).append((rec, cell))
                recs.append(rec)
        for cells in pending.values():
            for (rec, cell), p in zip(cells, holm([cell.p for _, cell in cells])):
                rec["p_holm"] = p
                if p < alpha:
                    rec["verdict"] = REGRESSION if cell.worse else IMPROVEMENT
                else:
                    rec["verdict"] = "worse (not significant)" if cell.worse else "better (not significant)"
        matched = {id(rb) for rb in pairs.values()}
        cmp.only_b += [f"{tb.title}: {rb.label}" for rb in tb.rows if id(rb) not in matched]
        df = pd.DataFrame.from_records(recs, columns=COLUMNS)
        cmp.tables.append((ta.title, sort_worst_first(df) if len(df) else df))
    return cmp
