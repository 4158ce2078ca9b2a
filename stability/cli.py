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

EXIT_OK, EXIT_FAILED_RUNS, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


class CLIError(Exception):
    """A user error: printed as one line, exit status 2."""


def _err(msg: str) -> None:
    print(f"stability: error: {msg}", file=sys.stderr)


def _duration(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.1f}s"
    m, s = divmod(int(round(seconds)), 60)
    if m < 60:
        return f"{m}m{s:02d}s"
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m"


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
    from . import suite as S
    from .store import Store

    if args.workers is not None and args.workers < 1:
        raise CLIError(f"--workers {args.workers}: must be >= 1")
    if args.threads is not None and args.threads < 1:
        raise CLIError(f"--threads {args.threads}: must be >= 1")
    if args.scheduler and args.executor != "dask":
        raise CLIError("--scheduler needs --executor dask")
    suite = S.load_suite(args.suite, device=args.device, ptb_dir=args.ptb_dir, mnist_dir=args.mnist_dir,
                         only=args.only)
    if args.workers is None:  # the suite's own default, never more than the cores here
        args.workers = min(suite.workers or 1, os.cpu_count() or 1)
    store_path = Path(args.store) if args.store else Path("runs") / f"{suite.name}.sqlite"
    out_dir = Path(args.out) if args.out else Path("reports") / suite.name
    device = suite.runs[0].config["device"] if suite.runs else (args.device or "auto")
    say = (lambda *a: None) if args.quiet else (lambda msg: print(msg, flush=True))
    where = f"{args.workers} worker{'s' if args.workers > 1 else ''}"
    if args.executor == "dask":
        where = f"dask ({args.scheduler or f'local cluster, {args.workers} workers'})"
    say(f"suite {suite.name} ({_short(suite.origin)}): {len(suite.runs)} runs on {device}, {where}; "
        f"store {store_path}")
    for note in suite.notes:
        say(f"note: {note}")
    if args.only:
        say(f"only runs matching {args.only!r}")
    if args.dry_run:
        for run in suite.runs:
            print(f"{run.id}  {run.label}")
        return EXIT_OK
    if not suite.runs:
        say("nothing to run")
        return EXIT_OK
    store = Store(store_path)
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
    executor, close = None, None
    if args.executor == "dask":
        executor, close = S.dask_executor(args.scheduler, args.workers)
    t0 = time.perf_counter()
    try:
        summary = S.run_suite(suite, store, workers=args.workers, executor=executor, force=args.force,
                              progress=not args.quiet, threads=args.threads)
    except KeyboardInterrupt:
        _err(f"interrupted after {_duration(time.perf_counter() - t0)}; finished runs are kept in "
             f"{store_path}: run the same command again to resume")
        return EXIT_INTERRUPTED
    finally:
        if close is not None:
            close()
    say(f"done: {summary.finished} finished, {summary.failed} failed, {summary.skipped} already there, "
        f"in {_duration(summary.wall_time)}; store {store_path}")
    for label, error in summary.failures:
        say(f"  failed: {label}: {S._last_line(error)}")
    status = EXIT_OK if summary.ok else EXIT_FAILED_RUNS
    if summary.failed:
        say("the errors are kept in the store (runs.error); rerunning retries the failed runs")
    if args.report:
        status = max(status, _write_report(store_path, out_dir, suite.name, say))
    return status


def _write_report(store_path: Path, out_dir: Path, suite: str, say) -> int:
    import importlib

    try:
        write_report = importlib.import_module("stability.report").write_report
    except (ImportError, AttributeError) as exc:
        say(f"report: skipped (stability.report is not available: {exc})")
        return EXIT_OK
    try:
        index = write_report(store_path, out_dir, suite=suite)
    except Exception as exc:  # the results are safe in the store; say what went wrong
        _err(f"the report could not be written ({type(exc).__name__}: {exc}); the results are in "
             f"{store_path}: try `stability report {store_path}`")
        return EXIT_FAILED_RUNS
    say(f"report: {index}")
    return EXIT_OK


# ---------------------------------------------------------------------------------------
# stability list
# ---------------------------------------------------------------------------------------
def _fmt_defaults(defaults: dict) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in defaults.items()) or "(no options)"


def _task_options(tasks, name: str) -> str:
    import inspect

    for attr in ("option_defaults",):
        fn = getattr(tasks, attr, None)
        if callable(fn):
            try:
                return _fmt_defaults(fn(name))
            except Exception:
                pass
    getter = getattr(tasks, "get", None)
    if callable(getter):
        try:
            cls = getter(name)
            params = inspect.signature(cls).parameters
            return _fmt_defaults({k: p.default for k, p in params.items()
                                  if p.default is not p.empty and k not in ("generator", "device")})
        except Exception:
            pass
    return ""


def cmd_list(args) -> int:
    from . import suite as S
    from . import transitions

    print("transitions (option=default):")
    names = transitions.available()
    width = max(map(len, names)) + 2
    for name in names:
        print(f"  {name:<{width}}{_fmt_defaults(transitions.option_defaults(name))}")
    print("\ntasks:")
    try:
        from . import tasks
        tnames = list(tasks.available())
    except (ImportError, AttributeError) as exc:
        tnames, tasks = [], None
        print(f"  (not available: {exc})")
    if tnames:
        width = max(map(len, tnames)) + 2
        for name in tnames:
            print(f"  {name:<{width}}{_task_options(tasks, name)}")
    print("\nprobes (suite experiments: probe = NAME; task runs measure them at init and final):")
    aliases = {v: k for k, v in S.PROBE_ALIASES.items()}
    names = [n for n in S._available_probes() if n not in S.PROBE_ALIASES]
    width = max(map(len, names)) + 2
    for name in names:
        extra = S._probe_kwargs(name)
        opts = ", ".join(f"{k}={v!r}" for k, v in {**S._input_options(name), **extra}.items())
        alias = f" (or {aliases[name]})" if name in aliases else ""
        print(f"  {name:<{width}}{opts}{alias}")
    print("\nsuites (stability run NAME):")
    shipped = S.shipped_suites()
    width = max(map(len, shipped)) + 2
    for name, where in shipped.items():
        desc = ""
        try:
            text, _ = S.suite_source(name)
            desc = (S.tomllib.loads(text).get("description") or "").strip().splitlines()[0]
        except Exception:
            pass
        print(f"  {name:<{width}}{desc}  [{where}]")
    return EXIT_OK


# ---------------------------------------------------------------------------------------
# stability probe
# ---------------------------------------------------------------------------------------
def _literal(text: str):
    """A command-line value: int, float, true/false/none, else the string."""
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("none", "null"):
        return None
    for conv in (int, float):
        try:
            return conv(text)
        except ValueError:
            pass
    return text


def _transition_options(name: str, extra: list[str]) -> dict:
    from . import transitions
    from .suite import _coerce_like

    allowed = transitions.option_names(name)
    defaults = transitions.option_defaults(name)
    opts: dict = {}
    i = 0
    while i < len(extra):
        tok = extra[i]
        if not tok.startswith("--"):
            raise CLIError(f"unexpected argument {tok!r}")
        key, eq, value = tok[2:].partition("=")
        key = key.replace("-", "_")
        if not eq:
            if i + 1 >= len(extra) or extra[i + 1].startswith("--"):
                raise CLIError(f"--{key} needs a value")
            value = extra[i + 1]
            i += 1
        i += 1
        if key not in allowed:
            raise CLIError(f"unknown option --{key} for transition {name!r}; its options: "
                           f"{', '.join('--' + a for a in allowed) or '(none)'}")
        opts[key] = _coerce_like(_literal(value), defaults.get(key))
    return opts


PROBE_GAPS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000)


def cmd_probe(args, extra: list[str]) -> int:
    import pandas as pd

    from . import suite as S
    from . import transitions

    if args.transition not in transitions.available():
        raise CLIError(f"unknown transition {args.transition!r}; available: {', '.join(transitions.available())}")
    topts = _transition_options(args.transition, extra)
    device = S.resolve_device(args.device)
    given = {"T": args.T, "batch": args.batch, "input_size": args.input_size, "input_scale": args.input_scale}
    probe_opts = {k: given[k] for k in S._input_options(args.probe)}
    for k, v in probe_opts.items():
        if isinstance(v, (int, float)) and v < (0 if k == "input_scale" else 1):
            raise CLIError(f"--{k} {v}: must be {'>= 0' if k == 'input_scale' else '>= 1'}")
    res = S._Resolver("stability probe")
    try:
        resolved = res.transition(args.transition, topts, args.hidden, "--transition")
    except S.SuiteError as exc:
        raise CLIError(str(exc).replace("stability probe: --transition: ", "")) from None
    config = {"suite": "", "kind": "probe", "name": args.probe, "transition": args.transition,
              "transition_options": resolved, "hidden_size": args.hidden, "nonlinearity": args.nonlinearity,
              "options": probe_opts, "train": {}, "seed": args.seed, "device": device, "dtype": args.dtype}
    if args.threads is not None and args.threads < 1:
        raise CLIError(f"--threads {args.threads}: must be >= 1")
    result = S.execute_run(config, {"threads": args.threads})
    if result["error"]:
        print(result["error"], file=sys.stderr, end="")
        raise CLIError(f"the {args.probe} probe failed: {S._last_line(result['error'])}")
    df: pd.DataFrame = result["metrics"]
    shown = ", ".join(f"{k}={v}" for k, v in topts.items())
    what = f"{args.transition}({shown})" if shown else args.transition
    inputs = " ".join(f"{k}={v}" for k, v in probe_opts.items() if k in ("T", "batch"))
    print(f"{args.probe} at init: {what} hidden={args.hidden} {args.nonlinearity} {inputs} seed={args.seed} "
          f"{device}".replace("  ", " "))
    scalars = df[(df.split == "init") & (df.step == 0) & df.metric.isin(S.SCALARS)]
    for _, r in scalars.iterrows():
        print(f"  {r.metric:<21}{r.value:.6g}")
    params = df[df.metric == "params"].value
    if len(params):
        took = _duration(float(df[df.metric == "wall_time"].value.iloc[0]))
        print(f"  {'params':<21}{int(params.iloc[0])}   (measured in {took})")
    series = df[(df.split == "init") & ~df.metric.isin(S.SCALARS)]
    if args.probe == "jacobian" and len(series):
        table = series.pivot_table(index="step", columns="metric", values="value")
        gaps = sorted(table.index)
        show = sorted({min(gaps, key=lambda g: abs(g - want)) for want in PROBE_GAPS if want <= max(gaps)}
                      | {gaps[-1]})
        print(f"\n  {'gap':>6}  {'‖J‖₂ (mean)':>14}  {'‖J‖_F (mean)':>14}")
        for g in show:
            row = table.loc[g]
            print(f"  {g:>6}  {row.get('jacobian_spectral', float('nan')):>14.6g}  "
                  f"{row.get('jacobian_frobenius', float('nan')):>14.6g}")
    elif len(series):
        for metric, part in series.groupby("metric"):
            vals = part.sort_values("step").value.tolist()
            head = ", ".join(f"{v:.4g}" for v in vals[:8])
            print(f"  {metric} ({len(vals)}): {head}{', ...' if len(vals) > 8 else ''}")
    return EXIT_OK


# ---------------------------------------------------------------------------------------
# delegated commands
# ---------------------------------------------------------------------------------------
def _delegate(module: str, argv: list[str]) -> int:
    import importlib

    try:
        mod = importlib.import_module(f"stability.{module}")
        fn = mod.main
    except (ImportError, AttributeError) as exc:
        _err(f"`stability {module}` is not available ({exc})")
        return EXIT_USAGE
    rc = fn(argv)
    return int(rc or 0)


# ---------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
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
    r.add_argument("--out", metavar="DIR", help="report directory (default: reports/<suite>/)")
    r.add_argument("--dry-run", action="store_true", help="list the runs (id and label) and stop")
    r.add_argument("--quiet", "-q", action="store_true", help="no progress bars or messages")

    sub.add_parser("list", help="transitions with their options, tasks, probes, shipped suites")

    pr = sub.add_parser("probe", help="one measurement at init, printed as a table", allow_abbrev=False,
                        description="Measure one probe on a freshly initialized model and print a table. "
                                    "Transition options are given as --NAME VALUE (see `stability list`), "
                                    "e.g. `stability probe jacobian --transition spectral --reflectors 16 "
                                    "--margin 0.1 --hidden 128 --T 1000`.")
    pr.add_argument("probe", choices=("jacobian", "spectrum", "lyapunov", "gradient_flow", "gradients"))
    pr.add_argument("--transition", default="dense")
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
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ("report", "bench"):
        return _delegate(argv[0], argv[1:])
    parser = build_parser()
    if argv and argv[0] == "probe":
        args, extra = parser.parse_known_args(argv)
    else:
        args, extra = parser.parse_args(argv), []
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    from .store import StoreError
    from .suite import SuiteError

    try:
        if args.command == "run":
            return cmd_run(args)
        if args.command == "list":
            return cmd_list(args)
        if args.command == "probe":
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
