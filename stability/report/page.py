"""The report folder: ``index.html`` (self-contained, opens from disk), ``report.md``,
``tables/*.csv``, ``figures/*.png|svg``.

Layout of the folder::

    index.html            header, tables, paper vs measured, comparison, figures, failures
    report.md             the same in Markdown (figures by relative path)
    tables/<table>.csv    one per table: per column mean, std, 95% interval (lo, hi), n, the mark
                          against the best (and its Holm-adjusted p), learned?, and the configuration
    tables/runs.csv       every run with its status and error
    tables/paper_vs_measured.csv, tables/comparison.csv   when present
    figures/<name>.png    (and .svg)
"""
from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from .compare import THRESHOLD, TIME_FACTOR, Comparison, compare
from .data import Collection, env_summary, load
from .figures import FigureResult, build_figures
from .page_render import render_html, render_markdown
from .render import paper_table
from .stats import ALPHA
from .tables import Table, build_tables

MARKER = ".stability-report"


@dataclass
class Report:
    """Everything a report page shows (built before anything is written)."""

    coll: Collection
    tables: list[Table]
    figures: list[FigureResult] = field(default_factory=list)
    paper: pd.DataFrame | None = None
    comparison: Comparison | None = None
    against: Collection | None = None
    notices: list[str] = field(default_factory=list)
    generated: str = ""


def write_report(store, out_dir, suite: str | None = None, against=None, *, svg: bool = True,
                 alpha: float = ALPHA, threshold: float = THRESHOLD, time_factor: float = TIME_FACTOR,
                 fail_on_slowdown: bool = False) -> Path:
    """Write the report of ``store`` (a path or :class:`~stability.store.Store`) to ``out_dir``.

    ``suite`` restricts it to one suite; ``against`` (another store) adds the comparison of every
    table value (:func:`.compare.compare`: ``threshold``, ``time_factor``, ``fail_on_slowdown``).
    Intervals are at 1 − ``alpha``, differences tested at ``alpha``. Returns ``index.html``.
    A missing store raises FileNotFoundError, a foreign or corrupt file StoreError.
    """
    return build_and_write(store, out_dir, suite=suite, against=against, svg=svg, alpha=alpha, threshold=threshold,
                           time_factor=time_factor, fail_on_slowdown=fail_on_slowdown)[0]


def build_and_write(store, out_dir, suite: str | None = None, against=None, *, svg: bool = True,
                    alpha: float = ALPHA, threshold: float = THRESHOLD, time_factor: float = TIME_FACTOR,
                    fail_on_slowdown: bool = False) -> tuple[Path, Report]:
    """:func:`write_report`, also returning what the page shows (the CLI reads the comparison)."""
    coll = load(store, suite)
    coll_b = None
    notices: list[str] = []
    if against is not None:
        coll_b = load(against, suite)
        if suite is not None and not len(coll_b.runs):
            notices.append(f"The comparison store has no runs of suite {suite!r}; all of its runs are compared.")
            coll_b = load(against, None)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    _clean(out)
    rep = Report(coll=coll, tables=build_tables(coll, alpha), against=coll_b, notices=notices,
                 generated=_dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"))
    rep.figures = build_figures(coll, out, svg=svg)
    rep.paper = paper_table(coll, rep.tables)
    if coll_b is not None:
        rep.comparison = compare(rep.tables, build_tables(coll_b, alpha), threshold=threshold,
                                 time_factor=time_factor, alpha=alpha, fail_on_slowdown=fail_on_slowdown)
    rep.notices = _notices(rep) + rep.notices
    _write_csvs(rep, out)
    (out / "report.md").write_text(render_markdown(rep), encoding="utf-8")
    index = out / "index.html"
    index.write_text(render_html(rep), encoding="utf-8")
    (out / MARKER).write_text("written by stability.report; figures/ and tables/ are regenerated\n")
    return index, rep


def _clean(out: Path) -> None:
    """Remove the files an earlier report wrote here (only where our marker says it was ours)."""
    if not (out / MARKER).exists():
        return
    for sub, suffixes in (("figures", {".png", ".svg"}), ("tables", {".csv"})):
        d = out / sub
        if d.is_dir():
            for f in d.iterdir():
                if f.is_file() and f.suffix in suffixes:
                    f.unlink()


def _notices(rep: Report) -> list[str]:
    coll = rep.coll
    out = []
    if not len(coll.runs):
        where = f" for suite {coll.suite!r}" if coll.suite else ""
        other = (f" (suites in the store: {', '.join(coll.suites_in_store)})"
                 if coll.suite and coll.suites_in_store else "")
        out.append(f"This store holds no runs{where}{other}: there is nothing to tabulate or plot.")
    elif not len(coll.finished):
        out.append(f"No run finished: nothing to tabulate or plot. {len(coll.failed)} run(s) failed (errors below)"
                   + (f", {len(coll.running)} never finished" if len(coll.running) else "") + ".")
    else:
        if len(coll.failed):
            out.append(f"{len(coll.failed)} run(s) failed; their errors are listed under “Failed runs”. "
                       "Table rows aggregate only the finished seeds (n per row).")
        if len(coll.running):
            out.append(f"{len(coll.running)} run(s) never finished (still running, or interrupted): left out.")
        finished_without_rows = [rid for rid in coll.finished["id"] if not coll.data(rid).series_by_key]
        if finished_without_rows:
            out.append(f"{len(finished_without_rows)} finished run(s) recorded no metric rows.")
    for note in env_summary(coll.runs)["note"]:
        out.insert(0, f"Note recorded with the runs: {note}")
    if len(coll.finished) and not any(f.drawn for f in rep.figures):
        out.append("No figure could be drawn from this store (reasons under “Figures not drawn”).")
    return out


def _runs_frame(coll: Collection) -> pd.DataFrame:
    rows = []
    for _, r in coll.runs.iterrows():
        cfg = {k: v for k, v in r["config"].items() if k != "seed"}
        rows.append({"id": r["id"], "suite": r["suite"], "status": r["status"], "kind": r["kind"], "name": r["name"],
                     "transition": coll.variant(cfg).label, "seed": r["seed"], "error": r["error"] or "",
                     "config": r["config_key"]})
    return pd.DataFrame.from_records(rows, columns=["id", "suite", "status", "kind", "name", "transition", "seed",
                                                    "error", "config"])


def _write_csvs(rep: Report, out: Path) -> None:
    d = out / "tables"
    d.mkdir(parents=True, exist_ok=True)
    for t in rep.tables:
        t.frame().to_csv(d / f"{t.slug}.csv", index=False)
    _runs_frame(rep.coll).to_csv(d / "runs.csv", index=False)
    if rep.paper is not None and len(rep.paper):
        rep.paper.to_csv(d / "paper_vs_measured.csv", index=False)
    if rep.comparison is not None:
        rep.comparison.all_rows.to_csv(d / "comparison.csv", index=False)


