"""Reports from a results store: pandas tables, seaborn figures, one HTML page.

Entry points:

- :func:`write_report` ``(store, out_dir, suite=None, against=None) -> Path`` writes
  ``out_dir/index.html`` (self-contained, opens from disk), ``report.md``, ``tables/*.csv`` and
  ``figures/*.png|svg``; ``against`` adds a comparison with another store.
- :func:`main` ``(argv) -> int``: ``stability report STORE [--out DIR] [--suite NAME]
  [--against OTHER.sqlite] [--threshold 10%] [--time-factor 1.25] [--alpha 0.05]
  [--fail-on-regression] [--fail-on-slowdown] [--screenshot PNG] [--no-svg]``.
- :func:`screenshot` ``(index_html, png_path)``: a full-page PNG through headless Chromium.

The pieces: :mod:`.data` (reading the store, configurations, colors), :mod:`.stats` (intervals,
tests), :mod:`.columns` and :mod:`.tables` (what is tabulated), :mod:`.render` (cells as text
and HTML), :mod:`.figures`, :mod:`.compare` (the regression gate), :mod:`.page` (writing the
folder) with :mod:`.page_render`, :mod:`.browser`.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..store import StoreError
from .browser import BrowserError, find_chromium, image_check, screenshot
from .data import load
from .compare import THRESHOLD, TIME_FACTOR
from .page import build_and_write, write_report
from .stats import ALPHA
from .tables import build_tables

__all__ = ["write_report", "main", "screenshot", "image_check", "find_chromium", "build_tables", "load"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="stability report",
                                description="Write tables, figures and an HTML page from a results store.")
    p.add_argument("store", help="the results store (SQLite file written by `stability run`)")
    p.add_argument("--out", help="output folder (default: reports/<suite or store name>)")
    p.add_argument("--suite", help="report only this suite (default: every run in the store)")
    p.add_argument("--against", metavar="OTHER", help="another store to compare with (regressions flagged)")
    p.add_argument("--threshold", type=_fraction, default=THRESHOLD, metavar="REL",
                   help="relative change a quality figure must exceed to count as a regression, as a fraction "
                        "or a percentage (default 10%%); with two or more seeds per side it must also pass "
                        "Welch's t-test (Holm-corrected)")
    p.add_argument("--time-factor", type=_factor, default=TIME_FACTOR, metavar="F",
                   help="timings count as slower when A/B exceeds F, faster below 1/F (default 1.25, as "
                        "`asv compare --factor`)")
    p.add_argument("--alpha", type=_level, default=ALPHA, metavar="A",
                   help="significance level of the tests; intervals are at 1 − A (default 0.05: 95%%)")
    p.add_argument("--fail-on-regression", action="store_true",
                   help="exit with status 3 when --against finds a regression")
    p.add_argument("--fail-on-slowdown", action="store_true",
                   help="count slower timings (beyond --time-factor) as regressions")
    p.add_argument("--screenshot", metavar="PNG", help="also save a full-page screenshot (needs Chromium)")
    p.add_argument("--no-svg", action="store_true", help="write PNG figures only")
    return p


def _number(text: str, what: str, allowed: str, ok) -> float:
    try:
        v = float(text[:-1]) / 100 if text.endswith("%") else float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number; {what} must be {allowed}") from None
    if not ok(v):
        raise argparse.ArgumentTypeError(f"{text!r}: {what} must be {allowed}")
    return v


def _fraction(text: str) -> float:
    return _number(text, "the threshold", "a fraction >= 0 (0.1) or a percentage (10%)",
                   lambda v: 0 <= v < float("inf"))


def _factor(text: str) -> float:
    return _number(text, "the time factor", "a number >= 1 (1.25 = 25% slower)", lambda v: 1 <= v < float("inf"))


def _level(text: str) -> float:
    return _number(text, "the significance level", "strictly between 0 and 1 (0.05)", lambda v: 0 < v < 1)


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
        index, rep = build_and_write(store, out, suite=args.suite, against=args.against, svg=not args.no_svg,
                                     alpha=args.alpha, threshold=args.threshold, time_factor=args.time_factor,
                                     fail_on_slowdown=args.fail_on_slowdown)
    except FileNotFoundError as exc:
        print(f"{prog}: error: {exc.args[0] if exc.args else exc}", file=sys.stderr)
        return 2
    except StoreError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    print(f"report written to {index}")
    status = 0
    if rep.comparison is not None:
        cmp = rep.comparison
        regressions, slower = cmp.regressions, cmp.slower
        print(f"comparison with {args.against}: {len(regressions)} regression(s). {cmp.rule()}")
        for r in regressions.itertuples():
            print(f"  {r.verdict}: {r.figure} · {r.table} · {r.transition}{' · ' + r.settings if r.settings else ''}: "
                  f"{r.B} → {r.A} ({r.change})")
        if not args.fail_on_slowdown:
            for r in slower.itertuples():
                print(f"  slower (not gated): {r.figure} · {r.table} · "
                      f"{r.transition}{' · ' + r.settings if r.settings else ''}: {r.B} → {r.A} ({r.change})")
        if len(regressions) and args.fail_on_regression:
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
