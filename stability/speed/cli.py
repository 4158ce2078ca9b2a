"""``stability speed``: the offline history page from asv's results (see docs/speed.md)."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import pandas as pd

from .results import SpeedError, load_results
from .steps import THRESHOLD, Step, find_repo, find_steps, order_commits

PROG = "stability speed"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Write an offline HTML page (with PNG/SVG figures) of asv's results over commits: "
                    "each benchmark case per commit, the steps asv's step detection finds, and the "
                    "current regressions.")
    parser.add_argument("--results", default=".asv/results", metavar="DIR",
                        help="asv's results folder (results_dir; default .asv/results)")
    parser.add_argument("--out", default=None, metavar="DIR",
                        help="where to write index.html, figures/, speed.csv (measured values) and steps.csv "
                             "(default: a folder 'speed' beside the results folder, e.g. .asv/speed)")
    parser.add_argument("--repo", default=None, metavar="DIR",
                        help="git repository that orders the commits (default: the one holding --results)")
    parser.add_argument("--threshold", type=float, default=THRESHOLD, metavar="FRACTION",
                        help=f"relative size below which a step is noise (default {THRESHOLD}, asv's)")
    return parser


def steps_frame(steps: list[Step], env_ids: dict) -> pd.DataFrame:
    columns = ["kind_of_step", "benchmark", "case", "machine", "env", "env_name", "introduced_by",
               "before", "after", "commits_in_range", "value_before", "value_after", "ratio", "current", "unit"]
    rows = [["regression" if s.regression else "improvement", s.benchmark, s.case, s.machine,
             env_ids[(s.machine, s.env)], s.env, s.introduced_by, s.before, s.after, s.commits_in_range,
             s.value_before, s.value_after, s.ratio, s.current, s.unit] for s in steps]
    return pd.DataFrame(rows, columns=columns)


def run(results: Path, out: Path, repo: Path | None, threshold: float) -> dict:
    """Load, detect, draw, write; returns a summary (paths, counts) for the caller."""
    from . import figures as figures_mod, page

    if not 0 <= threshold < 1:
        raise SpeedError(f"--threshold must be in [0, 1), got {threshold}")
    data = load_results(results)
    if repo is not None and not repo.is_dir():
        raise SpeedError(f"--repo {repo} is not a folder")
    order = order_commits(data.table, repo if repo is not None else find_repo(results))
    env_ids = {key: f"e{i + 1}" for i, key in enumerate(sorted(data.environments))}
    steps = find_steps(data.table, order, threshold)
    out.mkdir(parents=True, exist_ok=True)
    cpu_time = frozenset(key for key, info in data.environments.items()
                         if info.get("env_vars", {}).get("STABILITY_BENCH_TIMER") == "process")
    drawn = figures_mod.draw(data.table, order, steps, env_ids, out, cpu_time)
    table = data.table.assign(position=data.table["commit"].map(order.position),
                              env_id=[env_ids[(m, e)] for m, e in zip(data.table["machine"], data.table["env"])])
    measured = table[table["value"].notna()]  # n/a cases (not selected, skipped, failed) left out
    measured.sort_values(["machine", "env_id", "benchmark", "param_index", "position"]).to_csv(
        out / "speed.csv", index=False)
    steps_frame(steps, env_ids).to_csv(out / "steps.csv", index=False)
    try:  # as seen from the page
        label = os.path.relpath(results.resolve(), out.resolve())
    except ValueError:  # another drive
        label = str(results)
    page.write(out / "index.html", page.render(data, order, steps, drawn, env_ids, label, threshold))
    return {"page": out / "index.html", "figures": len(drawn), "commits": len(order.commits),
            "regressions": sum(s.current for s in steps), "steps": len(steps)}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    results = Path(args.results)
    out = Path(args.out) if args.out else results.parent / "speed"
    try:
        summary = run(results, out, Path(args.repo) if args.repo else None, args.threshold)
    except SpeedError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # the output folder: not writable, a file in the way, disk full
        print(f"{PROG}: error: cannot write {exc.filename or out}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    print(f"{PROG}: {summary['commits']} commits, {summary['figures']} figures, {summary['steps']} steps, "
          f"{summary['regressions']} current regression(s); page {summary['page']}")
    return 0
