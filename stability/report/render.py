"""Tables as text: numbers, cells with their intervals and marks, Markdown and HTML; the paper
vs measured table.

A cell reads ``mean [lo, hi]`` (the interval from :mod:`.stats`), ``> G`` for a half-life
beyond the largest gap measured, and carries its marks: bold for the best in its column,
``≈`` for a row that cannot be told apart from the best, ``✗`` for a task figure that learned
nothing and ``?`` for one whose interval reaches the baseline.
"""
from __future__ import annotations

import html
import math

import pandas as pd

from .columns import DIRECTION_TEXT, Column
from .data import Collection, fmt_value, paper_of
from .stats import Agg
from .tables import BEST, TIED, Mark, Row, Table, group_title

#: the symbol a cell carries for its mark (see Table.caption)
LEARNED_SYMBOL = {"no": "✗", "unclear": "?"}
TIED_SYMBOL = "≈"


def format_number(x: float, fmt: str = "g", std: bool = False, digits: int | None = None) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    if math.isinf(x):
        return "∞" if x > 0 else "−∞"
    if fmt == "ms":
        x = x * 1000.0
    if fmt == "int" and abs(x) >= 1:
        return f"{x:,.0f}"
    digits = digits if digits is not None else (2 if std else 4)
    return f"{x:.{digits}g}"


def format_interval(a: Agg, fmt: str = "g") -> str:
    """"[lo, hi]" (three significant digits), or "" without an interval or spread."""
    if not a.has_interval or a.hi <= a.lo:
        return ""
    return f"[{format_number(a.lo, fmt, digits=3)}, {format_number(a.hi, fmt, digits=3)}]"


def format_parts(a: Agg, col: Column, mark: Mark | None = None) -> tuple[str, str, str]:
    """(value, "[lo, hi]", "(k/n …)") of a cell, each possibly empty."""
    if not a.present:
        return "–", "", ""
    if col.until and a.n_reached == 0:
        return "not reached", "", (f"({a.n}/{a.n})" if a.n == a.n_seeds else f"({a.n}/{a.n_seeds} with data)")
    count = ""
    if col.until and a.n_reached < a.n_seeds:
        count = f"({a.n_reached}/{a.n_seeds} reached)"
    elif a.n < a.n_seeds:
        count = f"({a.n}/{a.n_seeds})"
    if mark is not None and mark.bound is not None:
        return f"> {format_number(mark.bound, 'int')}", "", count
    return format_number(a.mean, col.fmt), format_interval(a, col.fmt), count


def format_agg(a: Agg, col: Column, mark: Mark | None = None) -> str:
    return " ".join(p for p in format_parts(a, col, mark) if p)


def mark_symbols(mark: Mark) -> str:
    return " ".join(s for s in (TIED_SYMBOL if mark.rank == TIED else "", LEARNED_SYMBOL.get(mark.learned, "")) if s)


def display_frame(t: Table, markup: str = "text") -> pd.DataFrame:
    """Formatted cells (``markup``: "text", or "md": the best in bold)."""
    show_settings = any(r.settings for r in t.rows)
    recs = []
    for r in t.rows:
        rec = {"transition": r.variant}
        if show_settings:
            rec["settings"] = r.settings
        rec["n"] = len(r.run_ids)
        if t.has_learned:
            rec["learned?"] = t.learned(r)
        for c in t.columns:
            m = t.mark(r, c)
            text = format_agg(t.cell(r, c), c, m)
            if markup == "md" and m.rank == BEST:
                text = f"**{text}**"
            rec[c.header] = " ".join(x for x in (text, mark_symbols(m)) if x)
        recs.append(rec)
    return pd.DataFrame.from_records(recs)


def to_markdown(t: Table) -> str:
    df = display_frame(t, "md")
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


def _cell_title(t: Table, m: Mark) -> str:
    said = []
    if not math.isnan(m.p):
        said.append(f"against the best: Holm-adjusted p = {m.p:.2g}")
    if m.learned == "no":
        said.append("nothing learned")
    elif m.learned == "unclear":
        said.append("the interval reaches the baseline")
    if m.reference is not None:
        said.append(f"reference {m.reference:.4g}")
    if m.bound is not None:
        said.append(f"the fitted half-life lies beyond the largest gap measured ({m.bound:g})")
    return "; ".join(said)


def to_html(t: Table) -> str:
    """The table with a two-level header (at init / after training) and the interval under each mean."""
    show_settings = any(r.settings for r in t.rows)
    e = html.escape
    lead = ["transition"] + (["settings"] if show_settings else []) + ["n"] + (["learned?"] if t.has_learned else [])
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
        if t.has_learned:
            said = t.learned(r)
            cells.append(f'<td class="learned learned-{e(said or "none")}">{e(said or "–")}</td>')
        for c in t.columns:
            a, m = t.cell(r, c), t.mark(r, c)
            mean, interval, count = format_parts(a, c, m)
            classes = (["num"] + (["best"] if m.rank == BEST else []) + (["tied"] if m.rank == TIED else [])
                       + (["nolearn"] if m.learned in LEARNED_SYMBOL else []) + ([] if a.present else ["missing"]))
            extra = " ".join(x for x in (interval, count) if x)
            sub = f'<span class="sd">{e(extra)}</span>' if extra else ""
            sym = mark_symbols(m)
            sym = f' <span class="mark">{e(sym)}</span>' if sym else ""
            title = _cell_title(t, m)
            title = f' title="{e(title)}"' if title else ""
            cells.append(f'<td class="{" ".join(classes)}"{title}>{e(mean)}{sym}{sub}</td>')
        body.append("<tr>" + "".join(cells) + "</tr>")
    return (f'<table class="results" id="table-{e(t.slug)}"><thead>{head}</thead>'
            f'<tbody>{"".join(body)}</tbody></table>')


# -- paper vs measured ----------------------------------------------------------------
_PAPER_ALIASES = {"acc": "accuracy", "test_accuracy": "accuracy", "test_acc": "accuracy", "ppl": "perplexity",
                  "test_perplexity": "perplexity", "bits_per_character": "bpc", "parameters": "params",
                  "n_params": "params", "param_count": "params", "cross_entropy": "ce"}


def paper_table(coll: Collection, tables: list[Table]) -> pd.DataFrame:
    """Rows (task, configuration, figure, paper, measured, difference, source) for every
    configuration whose run config carries the paper's figures; "measured" only from our runs,
    as the mean [95% interval] (n = seeds)."""
    recs = []
    for t in tables:
        if t.part != "results" and any(tt.part == "results" and tt.kind == t.kind and tt.name == t.name
                                       and tt.regime == t.regime for tt in tables):
            continue  # one row set per group: use the results table
        for r in t.rows:
            paper = paper_of(r.run_config())
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
                        fmt = c.fmt if c.fmt != "ms" else "g"
                        mean = a.mean * scale
                        measured_text = format_number(mean, fmt)
                        scaled = Agg(mean=mean, lo=a.lo * scale, hi=a.hi * scale, n=a.n)
                        interval = format_interval(scaled, fmt)
                        measured_text += (f" {interval}" if interval else "") + f" (n={a.n})"
                        diff = mean - float(value)
                recs.append({"task": group_title(t.kind, t.name), "transition": r.variant, "settings": r.settings,
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
