"""The ``stability`` command: ``run``, ``list``, ``probe``, ``report``, ``bench``.

    stability run [SUITE] [--store PATH] [--device cpu|cuda] [--workers N] [--threads N]
                  [--ptb-dir DIR] [--mnist-dir DIR] [--only PATTERN] [--force]
                  [--executor local|dask] [--scheduler ADDR] [--report | --no-report] [--out DIR]
                  [--dry-run] [--quiet]
    stability list
    stability probe jacobian --transition spectral --reflectors 16 --margin 0.1 --hidden 128 --T 1000
    stability report STORE [--out DIR] [--suite NAME] [--against OTHER]
    stability bench ...

Bad input (a suite, a store, a device) ends with one ``stability: error: ...`` line and a
non-zero exit status, never a traceback.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from .cli_common import (EXIT_FAILED_RUNS, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, CLIError,  # noqa: F401
                         device_or_error as _device, duration as _duration, error_line as _err)


def _short(path: str) -> str:
    """A path relative to the working directory where it lies below it."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except (ValueError, OSError):
        return path


# ---------------------------------------------------------------------------------------
# stability run
# ---------------------------------------------------------------------------------------
def cmd_run(args) -> int:
    from .runner import dask_executor, last_line, load_suite, run_suite
    from .store import Store

    if args.workers is not None and args.workers < 1:
        raise CLIError(f"--workers {args.workers}: must be >= 1")
    if args.threads is not None and args.threads < 1:
        raise CLIError(f"--threads {args.threads}: must be >= 1")
    if args.scheduler and args.executor != "dask":
        raise CLIError("--scheduler needs --executor dask")
    cores = os.cpu_count() or 1
    everything = load_suite(args.suite, device=args.device, ptb_dir=args.ptb_dir, mnist_dir=args.mnist_dir)
    suite = everything.select(args.only)
    if args.workers is None:  # the suite's own default, never more than the cores here
        args.workers = min(suite.workers or 1, cores)
    store_path = Path(args.store) if args.store else Path("runs") / f"{suite.name}.sqlite"
    out_dir = Path(args.out) if args.out else Path("runs") / f"{suite.name}-report"
    device = suite.runs[0].config.device if suite.runs else _device(args.device)
    say = (lambda *a: None) if args.quiet else (lambda msg: print(msg, flush=True))
    where = f"{args.workers} worker{'s' if args.workers > 1 else ''}"
    if args.executor == "dask":
        where = f"dask ({args.scheduler or f'local cluster, {args.workers} workers'})"
    say(f"suite {suite.name} ({_short(suite.origin)}): {len(suite.runs)} runs on {device}, {where}; "
        f"store {store_path}")
    if args.executor == "local" and args.workers > cores:
        print(f"stability: warning: --workers {args.workers} is more than the {cores} cores here; "
              "runs will compete for them (and their timings with them)", file=sys.stderr)
    for note in suite.notes:
        say(f"note: {note}")
    if args.only:
        say(f"only runs matching {args.only!r}")
        if not suite.runs:
            sample = "; ".join(r.label for r in everything.runs[:3])
            raise CLIError(f"--only {args.only!r} matched none of the {len(everything.runs)} runs of suite "
                           f"{suite.name} (labels look like: {sample}; list them all with --dry-run)")
    if args.dry_run:
        for run in suite.runs:
            print(f"{run.id}  {run.label}")
        return EXIT_OK
    if not suite.runs:
        say("nothing to run")
        return EXIT_OK
    store = Store(store_path)
    _say_resume(store, store_path, suite, args, say)
    executor, close = None, None
    if args.executor == "dask":
        executor, close = dask_executor(args.scheduler, args.workers)
    t0 = time.perf_counter()
    try:
        summary = run_suite(suite, store, workers=args.workers, executor=executor, force=args.force,
                            progress=not args.quiet, threads=args.threads)
    except KeyboardInterrupt:
        _err(f"interrupted after {_duration(time.perf_counter() - t0)}; finished runs are kept in "
             f"{store_path}: run the same command again to resume")
        return EXIT_INTERRUPTED
    finally:
        if close is not None:
            close()
    print(f"done: {summary.finished} finished, {summary.failed} failed, {summary.skipped} already there, "
          f"in {_duration(summary.wall_time)}; store {store_path}", flush=True)
    for label, error in summary.failures:
        print(f"  failed: {label}: {last_line(error)}", flush=True)
    status = EXIT_OK if summary.ok else EXIT_FAILED_RUNS
    if summary.failed:
        say("the errors are kept in the store (runs.error); rerunning retries the failed runs")
    if args.report:
        from .report import write_report

        try:
            index = write_report(store_path, out_dir, suite=suite.name)
        except Exception as exc:  # the results are safe in the store; say what went wrong
            _err(f"the report could not be written ({type(exc).__name__}: {exc}); the results are in "
                 f"{store_path}: try `stability report {store_path}`")
            return max(status, EXIT_FAILED_RUNS)
        print(f"report: {index}", flush=True)
    return status


def _say_resume(store, store_path: Path, suite, args, say) -> None:
    """What a rerun will skip, retry, and leave alone in the store."""
    ids = {r.id for r in suite.runs}
    stored = store.runs(suite=suite.name)
    stored_status = dict(zip(stored.id, stored.status))
    if not args.force:
        have = {i for i in ids if stored_status.get(i) == "finished"}
        if have:
            say(f"resuming: {len(have)} of {len(suite.runs)} runs already finished in {store_path} "
                "(--force redoes them)")
    retry = {i for i in ids if stored_status.get(i) in ("failed", "running")}
    if retry:
        failed = sum(stored_status[i] == "failed" for i in retry)
        say(f"retrying {len(retry)} run(s) left failed ({failed}) or unfinished ({len(retry) - failed}) "
            "by an earlier attempt")
    if not args.only:
        gone = set(stored_status) - ids
        if gone:
            say(f"note: {len(gone)} run(s) of suite {suite.name} in {store_path} are not in the suite as it "
                "is now (kept in the store)")


# ---------------------------------------------------------------------------------------
# stability list
# ---------------------------------------------------------------------------------------
def _fmt_defaults(defaults: dict) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in defaults.items()) or "(no options)"


def _listing(title: str, entries: dict[str, str]) -> None:
    print(title)
    width = max(map(len, entries), default=0) + 2
    for name, text in entries.items():
        print(f"  {name:<{width}}{text}")


def cmd_list(args) -> int:
    from . import probes, tasks, transitions
    from .runner import shipped_suites, suite_description

    _listing("transitions (option=default):",
             {n: _fmt_defaults(transitions.option_defaults(n)) for n in transitions.available()})
    print()
    from .gated import GATED_CELLS

    _listing("gated cells (in place of a transition name; options in the suite's model = {...}):",
             {n: "layers=1, bidirectional=False, readout='last'" for n in GATED_CELLS})
    print()
    _listing("tasks:", {n: _fmt_defaults({k: v for k, v in tasks.option_defaults(n).items() if k != "data_dir"})
                        for n in tasks.available()})
    print()
    aliases = {v: k for k, v in probes.PROBES.aliases.items()}
    entries = {}
    for name in probes.available():
        p = probes.get_probe(name)
        alias = f" (or {aliases[name]})" if name in aliases else ""
        entries[name] = _fmt_defaults({**p.input_options(), **p.options()}) + alias
    _listing("probes (suite experiments: probe = NAME; task runs measure them at init and final):", entries)
    print()
    _listing("suites (stability run NAME):",
             {n: f"{suite_description(n)}  [{_short(w)}]" for n, w in shipped_suites().items()})
    return EXIT_OK


# ---------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    from . import probes

    probe_names = probes.available() + sorted(probes.PROBES.aliases)
    p = argparse.ArgumentParser(
        prog="stability", allow_abbrev=False,
        description="Gradient-stability suite for recurrent transition parameterizations.")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    r = sub.add_parser("run", help="run a suite (default: quick) into a results store, then report",
                       description="Run a suite's grid of runs into a results store (resumable), then write "
                                   "the report. SUITE: a shipped suite name (see `stability list`) or a path "
                                   "to a .toml file; default: quick.")
    r.add_argument("suite", nargs="?", default=None, metavar="SUITE")
    r.add_argument("--store", metavar="PATH", help="results store (default: runs/<suite>.sqlite)")
    r.add_argument("--device", help="cpu, cuda or cuda:N (default: the suite's, auto: cuda if available)")
    r.add_argument("--workers", type=int, default=None, metavar="N",
                   help="parallel runs (default: the suite's `workers`, at most the cores; else 1)")
    r.add_argument("--ptb-dir", metavar="DIR",
                   help="PTB data directory (default: $STABILITY_PTB_DIR; PTB runs are skipped without one)")
    r.add_argument("--mnist-dir", metavar="DIR",
                   help="MNIST IDX files (default: $STABILITY_MNIST_DIR; MNIST runs are skipped without one)")
    r.add_argument("--only", metavar="PATTERN",
                   help="only runs whose label matches (substring or glob; comma-separated; see --dry-run)")
    r.add_argument("--force", action="store_true", help="redo runs the store already holds")
    r.add_argument("--threads", type=int, metavar="N",
                   help="torch threads per run (default: the suite's `threads`, else cores / workers)")
    r.add_argument("--executor", choices=("local", "dask"), default="local",
                   help="local processes (default) or a dask.distributed cluster")
    r.add_argument("--scheduler", metavar="ADDR",
                   help="dask scheduler address (default with --executor dask: a local cluster)")
    r.add_argument("--report", action=argparse.BooleanOptionalAction, default=True,
                   help="write the report at the end (default: yes)")
    r.add_argument("--out", metavar="DIR", help="report directory (default: runs/<suite>-report/)")
    r.add_argument("--dry-run", action="store_true", help="list the runs (id and label) and stop")
    r.add_argument("--quiet", "-q", action="store_true",
                   help="no progress or messages; the final summary and errors are still printed")

    sub.add_parser("list", help="transitions with their options, tasks, probes, shipped suites")

    pr = sub.add_parser("probe", help="one measurement at init, printed as a table", allow_abbrev=False,
                        description="Measure one probe on a freshly initialized model and print a table. "
                                    "Transition options are given as --NAME VALUE (see `stability list`), "
                                    "e.g. `stability probe jacobian --transition spectral --reflectors 16 "
                                    "--margin 0.1 --hidden 128 --T 1000`.")
    pr.add_argument("probe", choices=probe_names)
    pr.add_argument("--transition", default="dense", metavar="NAME",
                    help="a transition (stability list) or a gated cell: lstm, gru (options --layers, "
                         "--bidirectional, --readout); default dense")
    pr.add_argument("--hidden", type=int, default=128, help="hidden size (default 128)")
    pr.add_argument("--T", type=int, default=1000, help="sequence length (default 1000)")
    pr.add_argument("--batch", type=int, default=8, help="samples (default 8)")
    pr.add_argument("--input-size", type=int, default=8)
    pr.add_argument("--input-scale", type=float, default=1.0)
    pr.add_argument("--nonlinearity", choices=("tanh", "relu"), default="tanh")
    pr.add_argument("--seed", type=int, default=0)
    pr.add_argument("--device", help="cpu, cuda, cuda:N (default: cuda if available)")
    pr.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    pr.add_argument("--threads", type=int, metavar="N", help="torch threads (default: torch's)")

    sub.add_parser("report", help="write the HTML report of a store (stability report --help)", add_help=False)
    sub.add_parser("bench", help="benchmarks (stability bench --help)", add_help=False)
    sub.add_parser("speed", help="the speed history page from asv's results (stability speed --help)", add_help=False)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "report":
        from .report import main as report_main

        return int(report_main(argv[1:]) or 0)
    if argv and argv[0] == "bench":
        from .bench import main as bench_main

        return int(bench_main(argv[1:]) or 0)
    if argv and argv[0] == "speed":
        from .speed import main as speed_main

        return int(speed_main(argv[1:]) or 0)
    parser = build_parser()
    if argv and argv[0] == "probe":
        args, extra = parser.parse_known_args(argv)
    else:
        args, extra = parser.parse_args(argv), []
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    from .runner import SuiteError
    from .store import StoreError

    try:
        if args.command == "run":
            return cmd_run(args)
        if args.command == "list":
            return cmd_list(args)
        if args.command == "probe":
            from .cli_probe import cmd_probe

            return cmd_probe(args, extra)
    except (CLIError, SuiteError, StoreError) as exc:
        _err(str(exc))
        return EXIT_USAGE
    except KeyboardInterrupt:
        _err("interrupted")
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # e.g. `stability run --dry-run | head`
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_FAILED_RUNS
    parser.error(f"unknown command {args.command!r}")  # pragma: no cover
    return EXIT_USAGE


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
