"""Regenerate ``reports/example/`` from the default suite: one command, never stale.

    python -m stability.report.example --ptb-dir ../shared/data/ptb

runs the default suite (``stability run``'s) afresh into ``runs/example.sqlite``, writes its
report to ``reports/example/`` with a headless-Chromium screenshot (where Chromium is
installed), and copies the suite file it ran as ``reports/example/suite.toml``: a test fails
when that copy differs from the shipped default suite, so the checked-in example always shows
what ``stability run`` does today.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ..runner import DEFAULT_SUITE, SuiteError, load_suite, run_suite, suite_source
from ..store import Store
from . import write_report
from .browser import BrowserError, find_chromium, screenshot

#: the copy of the suite an example report was made from
SUITE_COPY = "suite.toml"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m stability.report.example",
                                description="Regenerate the example report from the default suite.")
    p.add_argument("--out", default="reports/example", help="report folder (default: reports/example)")
    p.add_argument("--store", default="runs/example.sqlite", help="store, replaced (default: runs/example.sqlite)")
    p.add_argument("--ptb-dir", help="PTB data directory (default: $STABILITY_PTB_DIR; PTB runs skipped without)")
    p.add_argument("--workers", type=int, default=None, help="parallel runs (default: the suite's)")
    args = p.parse_args(argv)
    try:
        suite = load_suite(DEFAULT_SUITE, device="cpu", ptb_dir=args.ptb_dir)
    except SuiteError as exc:
        print(f"stability: error: {exc}", file=sys.stderr)
        return 2
    store_path, out = Path(args.store), Path(args.out)
    for suffix in ("", "-wal", "-shm"):
        Path(f"{store_path}{suffix}").unlink(missing_ok=True)
    workers = args.workers or min(suite.workers or 1, os.cpu_count() or 1)
    summary = run_suite(suite, Store(store_path), workers=workers, progress=sys.stderr.isatty())
    print(f"{summary.finished} runs in {summary.wall_time:.0f} s ({workers} workers); {summary.failed} failed")
    index = write_report(store_path, out, suite=suite.name)
    text, _ = suite_source(DEFAULT_SUITE)
    (out / SUITE_COPY).write_text(text, encoding="utf-8")
    if find_chromium():
        try:
            print(f"screenshot: {screenshot(index, out / 'screenshot.png')}")
        except BrowserError as exc:
            print(f"screenshot not taken: {exc}", file=sys.stderr)
    else:
        print("screenshot not taken: Chromium is not installed (apt-get install chromium)", file=sys.stderr)
    print(f"report: {index}")
    return 0 if summary.ok else 1


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
