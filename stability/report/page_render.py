"""The report page as text: Markdown (``report.md``) and self-contained HTML (``index.html``).

What the page shows is assembled first (:class:`.page.Report`); this module only renders it:
the header facts, notices, tables with their captions, paper vs measured, the comparison
(worst rows first, the gate's rule in words), figures and failed runs.
"""
from __future__ import annotations

import datetime as _dt
import html
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from .compare import FASTER, IMPROVEMENT, REGRESSION, SLOWER, VERDICT_ORDER, Comparison
from .data import Collection, env_summary
from .figures_text import protocol_notice
from .render import df_to_html, df_to_markdown, to_html, to_markdown

if TYPE_CHECKING:
    from .page import Report

e = html.escape


# -- facts for the header ------------------------------------------------------------
def _header_facts(coll: Collection, generated: str) -> list[tuple[str, str]]:
    runs = coll.runs
    env = env_summary(runs)
    suites = sorted(set(runs["suite"])) if len(runs) else []
    facts = [("suite", ", ".join(suites) if suites else (coll.suite or "–")),
             ("report generated", generated)]
    started = pd.to_numeric(runs["started"], errors="coerce").dropna() if len(runs) else pd.Series(dtype=float)
    finished = pd.to_numeric(runs["finished"], errors="coerce").dropna() if len(runs) else pd.Series(dtype=float)
    if len(started):
        t0 = _dt.datetime.fromtimestamp(started.min(), _dt.timezone.utc).strftime("%Y-%m-%d %H:%M")
        t1 = _dt.datetime.fromtimestamp(finished.max() if len(finished) else started.max(),
                                        _dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        facts.append(("runs measured", f"{t0} – {t1}"))
    for label in ("commit", "device", "device name", "torch", "stability", "python", "threads", "tf32", "note"):
        values = env[label]
        if values or label in ("commit", "device", "torch"):
            text = ", ".join(v[:12] if label == "commit" else v for v in values) or "not recorded"
            if len(values) > 1:
                text += f"  (⚠ {len(values)} different values in one report)"
            facts.append((label, text))
    n = runs["status"].value_counts().to_dict() if len(runs) else {}
    facts.append(("runs", f"{n.get('finished', 0)} finished, {n.get('failed', 0)} failed, "
                          f"{n.get('running', 0)} unfinished"))
    facts.append(("store", str(coll.path)))
    return facts


def _failure_rows(coll: Collection) -> list[tuple[str, str, str]]:
    out = []
    for _, r in coll.runs[coll.runs["status"] != "finished"].iterrows():
        cfg = {k: v for k, v in r["config"].items() if k != "seed"}
        what = f"{r['kind']} {r['name']} · {coll.variant(cfg).label} · seed {r['seed']}"
        err = r["error"] or ("never finished (interrupted or still running)" if r["status"] == "running"
                             else "no error recorded")
        out.append((r["id"], what, err))
    return out


def _first_notice(coll: Collection, t, shown: set) -> str:
    """The protocol caveat of a table's experiment, at the first of its tables only."""
    key = (t.kind, t.name)
    if key in shown:
        return ""
    shown.add(key)
    return protocol_notice(coll, t.kind, t.name)


def _first_line(err: str) -> str:
    lines = [ln for ln in str(err).strip().splitlines() if ln.strip()]
    return lines[-1].strip() if lines else ""


# -- Markdown ------------------------------------------------------------------------
def render_markdown(rep: Report) -> str:
    coll = rep.coll
    title = "Stability report" + (f": {', '.join(sorted(set(coll.runs['suite'])))}" if len(coll.runs) else "")
    lines = [f"# {title}", ""]
    for k, v in _header_facts(coll, rep.generated):
        lines.append(f"- **{k}**: {v}")
    lines.append("")
    for n in rep.notices:
        lines += [f"> {n}", ""]
    if rep.tables:
        lines += ["## Results", ""]
        shown: set = set()
        for t in rep.tables:
            notice = _first_notice(coll, t, shown)
            lines += ([f"> **{notice}**", ""] if notice else []) + [
                to_markdown(t), f"CSV: [tables/{t.slug}.csv](tables/{t.slug}.csv)", ""]
    if rep.paper is not None and len(rep.paper):
        lines += ["## Paper vs measured", "", _PAPER_NOTE, "", df_to_markdown(_drop_empty(rep.paper)), ""]
    if rep.comparison is not None:
        lines += _comparison_md(rep)
    drawn = [f for f in rep.figures if f.drawn]
    if drawn:
        lines += ["## Figures", ""]
        for f in drawn:
            lines += [f"### {f.title}", ""] + ([f"> **{f.notice}**", ""] if f.notice else [])
            lines += [f"![{f.title}]({f.files[0]})", "", f"*How to read it:* {f.how_to_read}", ""]
            lines += [f"- {n}" for n in f.notes] + ([""] if f.notes else [])
    skipped = [f for f in rep.figures if not f.drawn]
    if skipped and len(coll.finished):
        lines += ["## Figures not drawn", ""] + [f"- {f.title}: {f.reason}" for f in skipped] + [""]
    failures = _failure_rows(coll)
    if failures:
        lines += ["## Failed runs", ""]
        for rid, what, err in failures:
            tail = ["  " + ln for ln in str(err).strip().splitlines()[-12:]]
            lines += [f"- `{rid}` {what}: {_first_line(err)}", "", "  ```", *tail, "  ```", ""]
    return "\n".join(lines).rstrip() + "\n"


_PAPER_NOTE = ("Figures the suite's run configs carry from the papers, beside our own measurement of the same "
               "configuration. “Measured” comes only from our runs; “not measured” means we have no such "
               "value.")


def _comparison_md(rep: Report) -> list[str]:
    cmp, b = rep.comparison, rep.against
    lines = ["## Comparison", "", f"A = this store, B = `{b.path}` ({_commit_text(b)}). {cmp.rule()} "
             f"{_ORDER_NOTE}", "",
             _counts_text(cmp), ""]
    if len(cmp.regressions):
        reg = cmp.regressions
        lines += ["### Regressions", "", df_to_markdown(_drop_empty(reg[["table"] + [c for c in reg.columns
                                                                                     if c != "table"]])), ""]
    if cmp.only_a:
        lines += ["Only in A: " + "; ".join(cmp.only_a), ""]
    if cmp.only_b:
        lines += ["Only in B: " + "; ".join(cmp.only_b), ""]
    for t in cmp.tables_only_a:
        lines += [f"Table only in A: {t}", ""]
    for t in cmp.tables_only_b:
        lines += [f"Table only in B: {t}", ""]
    for title, df in cmp.tables:
        if not len(df):
            continue
        df = df.copy()
        df["verdict"] = [f"**{v}**" if v in _gated(cmp) else v for v in df["verdict"]]
        lines += [f"### {title}", "", df_to_markdown(_drop_empty(df)), ""]
    return lines


def _drop_empty(df: pd.DataFrame) -> pd.DataFrame:
    """Without the text columns that are empty in every row (e.g. settings when nothing differs);
    p-values shown with two significant digits ("–": not tested)."""
    if "p_holm" in df.columns:
        df = df.assign(p_holm=[f"{p:.2g}" if pd.notna(p) else "" for p in df["p_holm"]])
    keep = [c for c in df.columns if not (df[c].astype(str).str.strip() == "").all()]
    return df[keep]


_ORDER_NOTE = ("Rows are listed worst first; p_holm is the Holm-adjusted p-value of Welch's t-test "
               "(two or more seeds on both sides).")


def _gated(cmp: Comparison) -> set[str]:
    return {REGRESSION} | ({SLOWER} if cmp.fail_on_slowdown else set())


def _commit_text(c: Collection) -> str:
    commits = env_summary(c.runs)["commit"]
    return "commit " + ", ".join(x[:12] for x in commits) if commits else "commit not recorded"


def _counts_text(cmp: Comparison) -> str:
    counts = cmp.counts()
    if not counts:
        return "No values in common."
    keys = VERDICT_ORDER + sorted(k for k in counts if k not in VERDICT_ORDER)
    return "Values compared: " + ", ".join(f"{counts[k]} {k}" for k in keys if k in counts) + "."


# -- HTML ----------------------------------------------------------------------------
_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;margin:0;color:#1d1d1f;
 background:#fafafa;line-height:1.45}
main{max-width:1400px;margin:0 auto;padding:1.2rem 1.6rem 3rem;background:#fff}
h1{font-size:1.6rem;margin:.2rem 0 .6rem}h2{font-size:1.25rem;margin-top:2.2rem;border-bottom:2px solid #e3e3e3;
 padding-bottom:.2rem}h3{font-size:1.05rem;margin:1.6rem 0 .3rem}
dl.facts{display:grid;grid-template-columns:max-content 1fr;gap:.15rem 1rem;font-size:.9rem;margin:.4rem 0 1rem}
dl.facts dt{color:#555;font-weight:600}dl.facts dd{margin:0;font-family:ui-monospace,Menlo,Consolas,monospace}
.notice{background:#fff7e0;border-left:4px solid #e0a800;padding:.45rem .8rem;margin:.4rem 0;font-size:.92rem}
nav.toc{font-size:.9rem;columns:2}nav.toc a{color:#0b57d0;text-decoration:none}
.caption{font-size:.85rem;color:#444;margin:.2rem 0 .4rem}.common{font-size:.8rem;color:#666;margin:.2rem 0 .5rem}
.scroll{overflow-x:auto}
table{border-collapse:collapse;font-size:.82rem;margin:.3rem 0}
th,td{border:1px solid #ddd;padding:.25rem .4rem;text-align:left;vertical-align:top}
th{background:#f2f2f2;font-weight:600}tbody tr:nth-child(even){background:#fbfbfb}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
td.best{font-weight:700;background:#e6f4ea}td.tied{background:#f1f9f3}td.missing{color:#aaa}
td.nolearn{color:#8a8a8a;font-style:italic}td .mark{font-weight:700;color:#555}
td.learned-no{color:#b00020;font-weight:600}td.learned-yes{color:#137333}td.learned-unclear{color:#8a6d00}
td .sd{display:block;font-size:.72rem;color:#666;font-weight:400}td.config{white-space:nowrap}
th.group{text-align:center;background:#e9eef6}
.swatch{display:inline-block;width:.8em;height:.8em;border-radius:2px;margin-right:.4em;vertical-align:-.05em}
tr.regression td{background:#fde7e7}tr.regression td:last-child{font-weight:700;color:#b00020}
tr.improvement td:last-child{color:#137333}tr.slower td:last-child{color:#8a6d00;font-weight:600}
ul.notes{font-size:.82rem;color:#555;margin:.2rem 0}
figure{margin:1rem 0 2rem}figure img{max-width:100%;height:auto;border:1px solid #eee}
figcaption{font-size:.88rem;color:#333;max-width:60rem}.read{font-weight:600}
.links{font-size:.8rem}.links a{margin-right:.8rem}
pre{background:#f6f6f6;padding:.5rem;font-size:.78rem;overflow-x:auto;max-height:16rem}
.broken{color:#b00020;font-weight:700}
footer{font-size:.8rem;color:#777;margin-top:3rem}
"""

# Marks every image once the page has loaded (a missing file shows a visible warning); a
# headless browser reads the counts back from <body> (see browser.py).
_SCRIPT = """
window.addEventListener('load', function () {
  var imgs = document.querySelectorAll('img'), ok = 0;
  imgs.forEach(function (img) {
    var good = img.complete && img.naturalWidth > 0;
    img.setAttribute('data-loaded', good ? '1' : '0');
    if (good) { ok += 1; } else {
      var p = document.createElement('p'); p.className = 'broken';
      p.textContent = 'Image failed to load: ' + img.getAttribute('src');
      img.insertAdjacentElement('afterend', p);
    }
  });
  document.body.setAttribute('data-images-total', String(imgs.length));
  document.body.setAttribute('data-images-loaded', String(ok));
  document.body.setAttribute('data-page-height', String(document.documentElement.scrollHeight));
});
"""


def render_html(rep: Report) -> str:
    coll = rep.coll
    suites = sorted(set(coll.runs["suite"])) if len(coll.runs) else []
    title = "Stability report" + (f": {', '.join(suites)}" if suites else "")
    parts = [f"<h1>{e(title)}</h1>", '<dl class="facts">']
    for k, v in _header_facts(coll, rep.generated):
        parts.append(f"<dt>{e(k)}</dt><dd>{e(v)}</dd>")
    parts.append("</dl>")
    for n in rep.notices:
        parts.append(f'<p class="notice">{e(n)}</p>')
    toc: list[tuple[str, str]] = []
    body: list[str] = []
    if rep.tables:
        body.append('<h2 id="results">Results</h2>')
        toc.append(("results", "Results"))
        shown: set = set()
        for t in rep.tables:
            anchor = f"t-{t.slug}"
            toc.append((anchor, t.title))
            body.append(f'<h3 id="{e(anchor)}">{e(t.title)}</h3>')
            notice = _first_notice(rep.coll, t, shown)
            if notice:
                body.append(f'<p class="notice">{e(notice)}</p>')
            body.append(f'<p class="caption">{e(t.caption())}</p>')
            if t.common:
                body.append(f'<p class="common">Common settings: {e(t.common_text())}.</p>')
            body.append(f'<div class="scroll">{to_html(t)}</div>')
            if t.notes:
                body.append('<ul class="notes">' + "".join(f"<li>{e(n)}</li>" for n in t.notes) + "</ul>")
            body.append(f'<p class="links"><a href="tables/{e(t.slug)}.csv">CSV</a></p>')
    if rep.paper is not None and len(rep.paper):
        toc.append(("paper", "Paper vs measured"))
        body += ['<h2 id="paper">Paper vs measured</h2>', f'<p class="caption">{e(_PAPER_NOTE)}</p>',
                 f'<div class="scroll">{df_to_html(_drop_empty(rep.paper))}</div>',
                 '<p class="links"><a href="tables/paper_vs_measured.csv">CSV</a></p>']
    if rep.comparison is not None:
        toc.append(("comparison", "Comparison"))
        body += _comparison_html(rep)
    drawn = [f for f in rep.figures if f.drawn]
    if drawn:
        toc.append(("figures", "Figures"))
        body.append('<h2 id="figures">Figures</h2>')
        for f in drawn:
            anchor = f"f-{f.name}"
            body.append(f'<figure id="{e(anchor)}"><h3>{e(f.title)}</h3>')
            if f.notice:
                body.append(f'<p class="notice">{e(f.notice)}</p>')
            body.append(f'<img src="{e(f.files[0])}" alt="{e(f.title)}" loading="eager">')
            body.append(f'<figcaption><span class="read">How to read it:</span> {e(f.how_to_read)}')
            if f.notes:
                body.append('<ul class="notes">' + "".join(f"<li>{e(n)}</li>" for n in f.notes) + "</ul>")
            links = "".join(f'<a href="{e(p)}">{e(Path(p).suffix[1:].upper())}</a>' for p in f.files)
            body.append(f'<div class="links">{links}</div></figcaption></figure>')
    skipped = [f for f in rep.figures if not f.drawn]
    if skipped and len(coll.finished):
        toc.append(("not-drawn", "Figures not drawn"))
        body.append('<h2 id="not-drawn">Figures not drawn</h2><ul class="notes">'
                    + "".join(f"<li><b>{e(f.title)}</b>: {e(f.reason)}</li>" for f in skipped) + "</ul>")
    failures = _failure_rows(coll)
    if failures:
        toc.append(("failures", "Failed runs"))
        body.append('<h2 id="failures">Failed runs</h2><table class="plain"><thead><tr><th>run</th><th>what</th>'
                    "<th>error</th></tr></thead><tbody>")
        for rid, what, err in failures:
            body.append(f"<tr><td><code>{e(rid)}</code></td><td>{e(what)}</td><td><b>{e(_first_line(err))}</b>"
                        f"<details><summary>full error</summary><pre>{e(str(err))}</pre></details></td></tr>")
        body.append("</tbody></table>")
    body.append('<p class="links"><a href="tables/runs.csv">All runs (CSV)</a> · <a href="report.md">Markdown</a></p>')
    if len(toc) > 1:
        links = "".join(f'<div><a href="#{e(a)}">{e(t)}</a></div>' for a, t in toc)
        parts.append(f'<nav class="toc">{links}</nav>')
    parts += body
    parts.append(f"<footer>Written by <code>stability report</code> from {e(str(coll.path.name))}. "
                 "Regenerate with <code>stability report STORE --out DIR</code>.</footer>")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{e(title)}</title>"
            f"<style>{_CSS}</style></head><body><main>{''.join(parts)}</main>"
            f"<script>{_SCRIPT}</script></body></html>\n")


def _comparison_html(rep: Report) -> list[str]:
    cmp, b = rep.comparison, rep.against
    out = ['<h2 id="comparison">Comparison</h2>',
           f'<p class="caption">A = this store, B = <code>{e(str(b.path))}</code> ({e(_commit_text(b))}). '
           f"{e(cmp.rule())} {e(_ORDER_NOTE)}</p>", f'<p class="notice">{e(_counts_text(cmp))}</p>']
    reg = cmp.regressions
    if len(reg):
        reg = _drop_empty(reg[["table"] + [c for c in reg.columns if c != "table"]])
        table = df_to_html(reg, "plain", ["regression"] * len(reg))
        out += ["<h3>Regressions</h3>", f'<div class="scroll">{table}</div>']
    for label, items in (("Only in A", cmp.only_a), ("Only in B", cmp.only_b),
                         ("Tables only in A", cmp.tables_only_a), ("Tables only in B", cmp.tables_only_b)):
        if items:
            out.append(f'<p class="caption"><b>{e(label)}:</b> {e("; ".join(items))}</p>')
    for title, df in cmp.tables:
        if not len(df):
            continue
        classes = [v if v in (REGRESSION, IMPROVEMENT, SLOWER, FASTER) else "" for v in df["verdict"]]
        out += [f"<h3>{e(title)}</h3>", f'<div class="scroll">{df_to_html(_drop_empty(df), "plain", classes)}</div>']
    return out
