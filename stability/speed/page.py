"""The history page: one self-contained HTML file (inline CSS, no script) beside its figures.

Everything it references is a relative path under the output folder, so it opens from disk
with no network: where each series comes from (machines, environments), the current
regressions, every step asv's step detection found, the commits, and the figures.
"""
from __future__ import annotations

import datetime as _dt
import html
import math
from pathlib import Path

import pandas as pd

from .figures import Figure, scale_for
from .results import Measurements
from .steps import CommitOrder, Step

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 2em auto;
       max-width: 1150px; padding: 0 1em; color: #222; line-height: 1.45; }
h1 { margin-bottom: 0.2em; } h2 { margin-top: 1.8em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: 0.6em 0 1em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.55em; text-align: left; vertical-align: top; }
th { background: #f3f3f3; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
code { font-size: 0.92em; } .note { color: #7a4b00; background: #fff6e0; padding: 0.4em 0.7em; }
tr.regression td { background: #fdecea; } tr.improvement td { background: #eafaf1; }
figure { margin: 1.2em 0 2em; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { font-size: 0.88em; color: #555; } .muted { color: #777; }
"""


def _e(value) -> str:
    return html.escape(str(value), quote=True)


def _table(header: list[str], rows: list[list[str]], classes: list[str] | None = None, numeric=()) -> str:
    """An HTML table; cells are already-escaped HTML."""
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = []
    for i, row in enumerate(rows):
        cls = f' class="{classes[i]}"' if classes and classes[i] else ""
        cells = "".join(f'<td class="num">{c}</td>' if j in numeric else f"<td>{c}</td>" for j, c in enumerate(row))
        body.append(f"<tr{cls}>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def format_value(value: float, kind: str, unit: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    factor, label = scale_for(kind, unit, pd.Series([value]))
    return f"{value / factor:.4g} {label}"


def _commit_cell(text: str) -> str:
    return f"<code>{_e(text)}</code>"


def _steps_table(steps: list[Step], env_ids, current_only: bool) -> str:
    chosen = [s for s in steps if s.current] if current_only else steps
    if not chosen:
        return ("<p>None: no benchmark is slower at the newest commit than before a step.</p>"
                if current_only else "<p>No steps: every series is flat within its noise.</p>")
    chosen = sorted(chosen, key=lambda s: (-s.ratio if s.regression else s.ratio))
    rows, classes = [], []
    for s in chosen:
        rows.append([
            "regression" if s.regression else "improvement",
            f"<code>{_e(s.benchmark)}</code>", _e(s.case or "-"),
            f"{_e(s.machine)} · {_e(env_ids[(s.machine, s.env)])}",
            _commit_cell(s.introduced_short),
            _e(format_value(s.value_before, s.kind, s.unit)),
            _e(format_value(s.value_after, s.kind, s.unit)),
            f"{s.ratio:.2f}×",
        ] + ([] if current_only else ["yes" if s.current else "no"]))
        classes.append("regression" if s.regression else "improvement")
    header = ["step", "benchmark", "case", "machine · env", "introduced by", "before", "after", "ratio"]
    if not current_only:
        header.append("still present")
    return _table(header, rows, classes, numeric={5, 6, 7})


def _machines(data: Measurements) -> str:
    keys = ["cpu", "num_cpu", "ram", "os", "arch"]
    rows = [[_e(name)] + [_e(info.get(k, "")) for k in keys] for name, info in sorted(data.machines.items())]
    return _table(["machine"] + keys, rows)


def _environments(data: Measurements, env_ids, table: pd.DataFrame) -> str:
    rows = []
    for (machine, env), ident in sorted(env_ids.items(), key=lambda kv: kv[1]):
        info = data.environments.get((machine, env), {})
        reqs = ", ".join(f"{k} {v}".strip() for k, v in sorted(info.get("requirements", {}).items()))
        env_vars = ", ".join(f"{k}={v}" for k, v in sorted(info.get("env_vars", {}).items()))
        n = table[(table["machine"] == machine) & (table["env"] == env)]["commit"].nunique()
        rows.append([_e(ident), _e(machine), f"<code>{_e(env)}</code>", _e(info.get("python", "")),
                     _e(reqs or "-"), _e(env_vars or "-"), str(n)])
    return _table(["env", "machine", "asv environment", "python", "requirements", "env vars", "commits"], rows)


def _commits(order: CommitOrder, table: pd.DataFrame, env_ids) -> str:
    measured = table.groupby("commit").apply(
        lambda g: ", ".join(sorted({env_ids[(m, e)] for m, e in zip(g["machine"], g["env"])})),
        include_groups=False).to_dict()
    rows = [[str(c.position), _commit_cell(c.short), _e(c.date or "-"),
             _e(c.subject if c.in_repo else "(not in the repository)"), _e(measured.get(c.hash, ""))]
            for c in reversed(order.commits)]
    return _table(["#", "commit", "date", "subject", "measured in"], rows, numeric={0})


def _figures(figures: list[Figure], env_ids, data: Measurements) -> str:
    parts, current = [], None
    for f in figures:
        if f.benchmark != current:
            current = f.benchmark
            parts.append(f'<h3 id="{_e(f.benchmark)}"><code>{_e(f.benchmark)}</code></h3>')
        parts.append(
            f'<figure><img src="{_e(f.svg)}" alt="{_e(f.title)} over commits">'
            f"<figcaption>{_e(f.title)}: {f.cases} case(s), {_e(f.unit)}, machine {_e(f.machine)}, "
            f"environment {_e(env_ids[(f.machine, f.env)])}{_e(_env_vars(data, f.machine, f.env))}. "
            f'<a href="{_e(f.png)}">PNG</a> · <a href="{_e(f.svg)}">SVG</a></figcaption></figure>')
    return "\n".join(parts) or "<p>No measured values to draw.</p>"


def _env_vars(data: Measurements, machine: str, env: str) -> str:
    env_vars = data.environments.get((machine, env), {}).get("env_vars", {})
    return f" ({', '.join(f'{k}={v}' for k, v in sorted(env_vars.items()))})" if env_vars else ""


def render(data: Measurements, order: CommitOrder, steps: list[Step], figures: list[Figure],
           env_ids: dict, results_label: str, threshold: float) -> str:
    table = data.table
    notes = []
    if order.note:
        notes.append(order.note)
    if data.stale:
        notes.append(f"{data.stale} stored result(s) left out: their benchmark changed since they were "
                     "measured (asv keeps only results whose benchmark version matches benchmarks.json).")
    skipped = "Cases without a value (not selected, skipped or failed) are left out."
    current = [s for s in steps if s.current]
    generated = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d")
    body = [
        "<h1>Speed over commits</h1>",
        f'<p class="muted">From the asv results in <code>{_e(results_label)}</code> (relative to this page): '
        f"{table['benchmark'].nunique()} benchmark(s), {table[table['value'].notna()].groupby(['benchmark', 'param_index']).ngroups} "
        f"measured case(s), {len(order.commits)} commit(s), {len(data.machines)} machine(s), "
        f"{len(env_ids)} environment(s). Generated {generated} by <code>stability speed</code>; "
        "steps found with <code>asv.step_detect</code> (relative threshold "
        f"{threshold:.0%}); smaller is better for every benchmark. {_e(skipped)}</p>",
        *[f'<p class="note">{_e(n)}</p>' for n in notes],
        f"<h2>Current regressions ({len(current)})</h2>",
        "<p>Benchmarks slower at the newest measured commit than before a step "
        "(<code>asv.step_detect.detect_regressions</code>). <em>Introduced by</em> names the commit when "
        "git lists exactly one commit between the two measured ones, else the range to search with "
        "<code>asv find</code>.</p>",
        _steps_table(steps, env_ids, current_only=True),
        "<h2>Where the numbers come from</h2>",
        "<p>Every series (line) belongs to one machine and one environment; figures and tables name both.</p>",
        _machines(data), _environments(data, env_ids, table),
        f"<h2>All steps ({len(steps)})</h2>",
        "<p>Every rise (regression) or fall (improvement) of a series beyond its noise, including the "
        "regressions fixed since.</p>",
        _steps_table(steps, env_ids, current_only=False),
        "<h2>Benchmarks over commits</h2>",
        "<p>One line per parameter combination (shared parameters in the title), bars: asv's 99% "
        "interval; ▲ red: a regression at the first commit of the new level (labelled with the ratio and "
        "the commit that introduced it), ▼ green: an improvement.</p>",
        _figures(figures, env_ids, data),
        "<h2>Commits (newest first)</h2>",
        _commits(order, table, env_ids),
    ]
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<title>Speed over commits</title>"
            f"<style>{CSS}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
