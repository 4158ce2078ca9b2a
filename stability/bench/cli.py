"""The ``stability bench`` command line: arguments, the allocator re-run, and the measurement."""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import torch

from ..environment import device_name
from .baselines import ALTERNATIVES, missing_package, parse_alternatives
from .cases import GROUPS, probe_cases, reflector_cases, sizes_for, training_cases
from .output import ALLOCATOR_ENV, REEXEC_MARK, allocator_state, build_figures, environment, write_outputs
from .timing import calibrate, run_rounds

DEFAULT_OUT = os.path.join("reports", "bench")
DEFAULT_ROUNDS = 15


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="stability bench",
        description="Core speed comparison as ratios over interleaved, shuffled rounds: "
                    "(a) compact-WY reflector products vs the sequential definition, one GEMM and "
                    "torch.linalg.householder_product; (b) a RecurrentNet training step per "
                    "transition vs torch.nn.RNN, and the share of the step spent building W, beside "
                    "the alternatives users would write (torch.nn.RNN with torch's orthogonal "
                    "parametrization or geotorch's); "
                    "(c) the whole Jacobian decay curve (stability.probes.jacobian_decay, every gap) "
                    "vs one forward + backward pass of the same model.")
    p.add_argument("--device", choices=["cpu", "cuda"], default=None,
                   help="where to measure (default: cuda if available, else cpu)")
    p.add_argument("--rounds", type=int, default=None,
                   help=f"interleaved rounds (default {DEFAULT_ROUNDS}; 3 with --quick)")
    p.add_argument("--quick", action="store_true",
                   help="tiny sizes for a smoke test (targets are not applied)")
    p.add_argument("--out", default=DEFAULT_OUT, help=f"output folder (default {DEFAULT_OUT})")
    p.add_argument("--threads", type=int, default=None,
                   help="torch.set_num_threads (default: $STABILITY_BENCH_THREADS, else torch's default)")
    p.add_argument("--transitions", default=None,
                   help="comma-separated transitions for figure (b) (default: every built-in)")
    p.add_argument("--alternatives", default="all",
                   help="what users would write instead, timed in figure (b): all (default), none, or "
                        f"a comma list of {', '.join(ALTERNATIVES)} (geotorch needs the bench extra; "
                        "missing, it is skipped with a note)")
    p.add_argument("--sizes", default="default",
                   help="figure (b)'s (n, T) points: default (128x1000), table (64x1000, 128x1000, "
                        "256x1000, 256x100, 512x100), or a comma "
                        "list of NxT such as 256x100,512x100")
    p.add_argument("--min-time", type=float, default=None,
                   help="shortest measurement in seconds; faster cases are repeated (default 0.05; 0.002 with --quick)")
    p.add_argument("--groups", default=",".join(GROUPS),
                   help="comma-separated figure groups: a (reflector products), b (training step "
                        "per transition), c (Jacobian decay curve vs forward + backward); default all")
    p.add_argument("--seed", type=int, default=0, help="seed of the shuffled order")
    p.add_argument("--allocator", choices=["pin", "inherit"], default="pin",
                   help="pin: re-run in a child process with MALLOC_MMAP_MAX_=0 and a large "
                        "MALLOC_TRIM_THRESHOLD_ unless they are already set (default); "
                        "inherit: measure in this process as it is")
    p.add_argument("--strict", action="store_true",
                   help="exit with status 1 when a target is missed (full sizes only)")
    return p


def _builtin_names() -> list[str]:
    from .. import transitions

    return [n for n in transitions.available() if transitions.get(n).__module__.startswith("stability.")]


def _all_names() -> list[str]:
    from .. import transitions

    return transitions.available()


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    cli = parser()
    args = cli.parse_args(argv)
    if args.rounds is not None and args.rounds < 1:
        cli.error("--rounds must be >= 1")
    if args.threads is not None and args.threads < 1:
        cli.error("--threads must be >= 1")
    names = _builtin_names()
    if args.transitions:
        names = [s.strip() for s in args.transitions.split(",") if s.strip()]
        unknown = [n for n in names if n not in _all_names()]
        if unknown or not names:
            cli.error(f"--transitions: unknown {', '.join(unknown) or '(none given)'}; "
                      f"available: {', '.join(_all_names())}")
    groups = tuple(g.strip() for g in args.groups.split(",") if g.strip())
    bad = [g for g in groups if g not in GROUPS]
    if bad or not groups:
        cli.error(f"--groups: unknown {', '.join(bad) or '(none given)'}; allowed: {', '.join(GROUPS)}")
    try:
        sizes = sizes_for(args.sizes, args.quick)
    except ValueError as e:
        cli.error(f"--sizes: {e}")
    try:
        wanted = parse_alternatives(args.alternatives)
    except ValueError as e:
        cli.error(f"--alternatives: {e}")
    if args.device == "cuda" and not torch.cuda.is_available():
        cli.error("--device cuda: CUDA is not available here")

    if args.allocator == "pin" and not allocator_state()["pinned"]:
        env = dict(os.environ, **ALLOCATOR_ENV, **{REEXEC_MARK: "1"})
        cmd = [sys.executable, "-m", "stability.bench", *argv]
        return subprocess.call(cmd, env=env)

    if args.device is None:
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.rounds is None:
        args.rounds = 3 if args.quick else DEFAULT_ROUNDS
    if args.min_time is None:
        args.min_time = 0.002 if args.quick else 0.05
    threads = args.threads or (int(os.environ["STABILITY_BENCH_THREADS"])
                               if os.environ.get("STABILITY_BENCH_THREADS") else None)
    if threads:
        torch.set_num_threads(threads)
    if not args.quick and args.rounds < DEFAULT_ROUNDS:
        print(f"note: {args.rounds} rounds; the reported figures use >= {DEFAULT_ROUNDS}", file=sys.stderr)

    device = torch.device(args.device)
    torch.manual_seed(0)
    checks: dict = {}
    log = lambda s: print(s, file=sys.stderr, flush=True)  # noqa: E731
    log(f"stability bench: {device} ({device_name(device)}), torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, allocator pinned: {allocator_state()['pinned']}")
    skipped = [f"{a}: needs {missing_package(a)}" for a in wanted if "b" in groups and missing_package(a)]
    for note in skipped:
        log(f"note: skipping the alternative {note}")
    alternatives = [a for a in wanted if not missing_package(a)] if "b" in groups else []
    cases = ((reflector_cases(sizes, device, checks) if "a" in groups else [])
             + (training_cases(sizes, device, names, alternatives, checks) if "b" in groups else [])
             + (probe_cases(sizes, device, checks) if "c" in groups else []))
    calibrate(cases, device, args.min_time, warmup=1 if args.quick else 2)
    rows = run_rounds(cases, device, args.rounds, args.seed, log)
    figures = build_figures({c.name: c for c in cases}, sizes, names, device, args.quick, groups, alternatives)
    env = {**environment(device, args), "training_points": [list(p) for p in sizes.training_points], "skipped": skipped}
    paths = write_outputs(Path(args.out), env, figures, rows, checks)
    print(paths["md"].read_text(), end="")
    print(f"written: {', '.join(str(p) for p in paths.values())}")
    missed = [f["figure"] for f in figures if f["target_met"] is False]
    if missed:
        print("targets missed: " + "; ".join(missed), file=sys.stderr)
    return 1 if (args.strict and missed) else 0
