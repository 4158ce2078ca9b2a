"""Reports from a results store: pandas tables, seaborn figures, one HTML page.

Entry points:

- :func:`write_report` ``(store, out_dir, suite=None, against=None) -> Path`` writes
  ``out_dir/index.html`` (self-contained, opens from disk), ``report.md``, ``tables/*.csv`` and
  ``figures/*.png|svg``; ``against`` adds a comparison with another store.
- :func:`main` ``(argv) -> int``: ``stability report STORE [--out DIR] [--suite NAME]
  [--against OTHER.sqlite] [--screenshot PNG] [--no-svg] [--fail-on-regression]``.
- :func:`screenshot` ``(index_html, png_path)``: a full-page PNG through headless Chromium.

The pieces: :mod:`.data` (reading the store, configurations, colors), :mod:`.tables`,
:mod:`.figures`, :mod:`.compare`, :mod:`.page` (writing the folder), :mod:`.browser`.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..store import StoreError
from .browser import BrowserError, find_chromium, image_check, screenshot
from .data import load
from .page import build_and_write, write_report
from .tables import build_tables

__all__ = ["write_report", "main", "screenshot", "image_check", "find_chromium", "build_tables", "load"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="stability report",
                                description="Write tables, figures and an HTML page from a results store.")
    p.add_argument("store", help="the results store (SQLite file written by `stability run`)")
    p.add_argument("--out", help="output folder (default: reports/<suite or store name>)")
    p.add_argument("--suite", help="report only this suite (default: every run in the store)")
    p.add_argument("--against", metavar="OTHER", help="another store to compare with (regressions flagged)")
    p.add_argument("--screenshot", metavar="PNG", help="also save a full-page screenshot (needs Chromium)")
    p.add_argument("--no-svg", action="store_true", help="write PNG figures only")
    p.add_argument("--fail-on-regression", action="store_true",
                   help="exit with status 3 when --against finds a regression beyond the seeds' spread")
    return p


def main(argv: list[str] | None = None) -> int:
    """The `stability report` command; returns the exit status (0 ok, 2 bad input, 3 regression)."""
    args = _parser().parse_args(argv)
    prog = "stability report"
    store = Path(args.store)
    try:
        coll_suites = None
        if args.suite is not None:
            from .data import open_store
            coll_suites = open_store(store).suites()
            if coll_suites and args.suite not in coll_suites:
                print(f"{prog}: error: suite {args.suite!r} is not in {store} (suites there: "
                      f"{', '.join(coll_suites)})", file=sys.stderr)
                return 2
        if args.against is not None and not Path(args.against).exists():
            print(f"{prog}: error: comparison store {args.against!r} does not exist", file=sys.stderr)
            return 2
        out = Path(args.out) if args.out else Path("reports") / (args.suite or store.stem)
        index, rep = build_and_write(store, out, suite=args.suite, against=args.against, svg=not args.no_svg)
    except FileNotFoundError as exc:
        print(f"{prog}: error: {exc.args[0] if exc.args else exc}", file=sys.stderr)
        return 2
    except StoreError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    print(f"report written to {index}")
    status = 0
    if rep.comparison is not None:
        regressions = rep.comparison.regressions
        n_reg = len(regressions)
        print(f"comparison with {args.against}: {n_reg} regression(s) beyond the spread across seeds")
        for r in regressions.itertuples():
            print(f"  regression: {r.table} · {r.transition}{' · ' + r.settings if r.settings else ''} · "
                  f"{r.figure}: {r.B} -> {r.A} ({r.change})")
        if n_reg and args.fail_on_regression:
            status = 3
    if args.screenshot:
        try:
            png = screenshot(index, args.screenshot)
            print(f"screenshot written to {png}")
        except BrowserError as exc:
            print(f"{prog}: error: {exc}", file=sys.stderr)
            return 1
    return status


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
