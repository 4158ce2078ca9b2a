"""The core speed comparison, as ratios: ``stability bench`` / ``python -m stability.bench``.

Figures (each one a ratio measured inside a round, then the median over the rounds):

(a) Materializing a reflector product, forward + backward:
    - compact WY (:func:`~stability.transitions.householder_product`) from k = n = 256
      reflectors vs the sequential definition
      (:func:`~stability.transitions.householder_product_reference`): target >= 20× faster;
    - the same vs one 256×256 matrix product forward + backward: target within 4.5×;
    - compact WY vs ``torch.linalg.householder_product`` at n = k = 512, both built from the
      same (LAPACK-layout) reflectors: target >= 8× faster.
(b) One training step (forward + loss + backward; the optimizer update is left out) of
    :class:`~stability.model.RecurrentNet` with each built-in transition (n = 128, k = n
    reflectors for householder and spectral), T = 1000, batch 64, against ``torch.nn.RNN``
    (dense, same sizes, same readout): the ratio of step times, and the share of the step spent
    building W (``transition.matrix()`` forward + backward, timed in the same round). Targets:
    spectral <= 1.0× the ``torch.nn.RNN`` step, and W build < 3 % of its step.
(c) The full Jacobian decay curve (:func:`~stability.probes.jacobian_decay`, default method,
    every gap g = 0..T−1) of a dense tanh :class:`~stability.model.RecurrentNet` at n = 128,
    T = 1000, batch 8 against one forward + backward pass of the same model on the same input:
    target <= 3×.

``--groups`` picks the figures to measure (default: all three).

Every round runs all cases once, in a freshly shuffled order; a case that takes less than
``--min-time`` is called several times in a row and its time divided. Ratios are formed
inside each round, so slow drifts of the machine cancel; the report gives their median and
quartiles. Results: ``bench.json``, ``bench.csv``, ``bench.md`` (figures) and ``rounds.csv``
(every timing) under ``--out`` (default ``reports/bench/``).

The allocator is pinned (``MALLOC_MMAP_MAX_=0``, ``MALLOC_TRIM_THRESHOLD_`` large) because page
faults otherwise dominate the differences on CPU. glibc reads these at process start, so by
default the measurement re-runs itself in a child process with them set
(``--allocator inherit`` measures in the current process as it is); the output records
whether they were set.
"""
from __future__ import annotations

import argparse
import csv
import datetime as _dt
import json
import math
import os
import platform
import random
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from .store import device_name, git_commit

DEFAULT_OUT = os.path.join("reports", "bench")
DEFAULT_ROUNDS = 15
ALLOCATOR_ENV = {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": str(1 << 36)}
_REEXEC_MARK = "STABILITY_BENCH_REEXEC"
INPUT_SIZE = OUTPUT_SIZE = 16

CSV_COLUMNS = ["group", "figure", "case", "baseline", "ratio_median", "ratio_q1", "ratio_q3",
               "ratio_min", "ratio_max", "case_median_s", "baseline_median_s", "target",
               "target_met", "rounds", "sizes", "device"]
ROUND_COLUMNS = ["round", "position", "case", "seconds", "calls"]


# ----------------------------------------------------------------------------- sizes
@dataclass(frozen=True)
class Sizes:
    reflect_n: int = 256      # (a) k = n for compact WY vs sequential and vs one GEMM
    lapack_n: int = 512       # (a) k = n for compact WY vs torch.linalg.householder_product
    hidden: int = 128         # (b) n
    steps: int = 1000         # (b) T
    batch: int = 64           # (b) B
    probe_batch: int = 8      # (c) B; n and T as in (b)


FULL = Sizes()
QUICK = Sizes(reflect_n=24, lapack_n=32, hidden=16, steps=20, batch=4, probe_batch=2)
GROUPS = ("a", "b", "c")


# ----------------------------------------------------------------------------- cases
@dataclass
class Case:
    """One timed operation. ``fn`` does the work once and waits for the device."""
    name: str
    fn: Callable[[], None]
    calls: int = 1
    times: list[float] = field(default_factory=list)  # seconds per call, one per round


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(case: Case, device: torch.device) -> float:
    _sync(device)
    start = time.perf_counter()
    for _ in range(case.calls):
        case.fn()
    _sync(device)  # the clock stops only once the device is done
    return (time.perf_counter() - start) / case.calls


def _leaf(shape, device, generator=None, fill: Callable | None = None) -> torch.Tensor:
    t = torch.randn(*shape, generator=generator)
    if fill is not None:
        t = fill(t)
    return t.to(device).requires_grad_(True)


def reflector_cases(sizes: Sizes, device: torch.device, checks: dict) -> list[Case]:
    """Cases of figure (a); records the agreement of the compared forms in ``checks``."""
    from .transitions import householder_product, householder_product_reference

    gen = torch.Generator().manual_seed(1)
    n = sizes.reflect_n
    # the Spectral-RNN layout of U: k = n reflectors, row j zero before column j
    vectors = _leaf((n, n), device, gen, torch.triu)
    upstream = torch.randn(n, n, generator=gen).to(device)
    a = _leaf((n, n), device, gen)
    b = _leaf((n, n), device, gen)

    def wy():
        vectors.grad = None
        householder_product(vectors).backward(upstream)

    def sequential():
        vectors.grad = None
        householder_product_reference(vectors).backward(upstream)

    def gemm():
        a.grad = b.grad = None
        (a @ b).backward(upstream)

    m = sizes.lapack_n
    packed = _leaf((m, m), device, gen)  # LAPACK layout: reflector i is e_i + packed[i+1:, i]
    upstream_m = torch.randn(m, m, generator=gen).to(device)
    eye_m = torch.eye(m, device=device)

    def wy_from_packed():
        return householder_product((torch.tril(packed, -1) + eye_m).T)

    def lapack_from_packed():
        lower = torch.tril(packed, -1)
        tau = 2.0 / (1.0 + (lower * lower).sum(0))
        return torch.linalg.householder_product(packed, tau)

    def wy_packed():
        packed.grad = None
        wy_from_packed().backward(upstream_m)

    def lapack():
        packed.grad = None
        lapack_from_packed().backward(upstream_m)

    # the compared forms must compute the same thing (forward and gradient)
    q_wy = householder_product(vectors)
    q_seq = householder_product_reference(vectors)
    g_wy = torch.autograd.grad(q_wy, vectors, upstream)[0]
    g_seq = torch.autograd.grad(q_seq, vectors, upstream)[0]
    checks["wy_vs_sequential_max_abs_diff"] = float((q_wy - q_seq).detach().abs().max())
    checks["wy_vs_sequential_grad_max_rel_diff"] = float((g_wy - g_seq).abs().max() / g_seq.abs().max())
    q1, q2 = wy_from_packed(), lapack_from_packed()
    g1 = torch.autograd.grad(q1, packed, upstream_m)[0]
    g2 = torch.autograd.grad(q2, packed, upstream_m)[0]
    checks["wy_vs_torch_householder_product_max_abs_diff"] = float((q1 - q2).detach().abs().max())
    checks["wy_vs_torch_householder_product_grad_max_rel_diff"] = float((g1 - g2).abs().max() / g2.abs().max())

    return [Case(f"wy_{n}", wy), Case(f"sequential_{n}", sequential), Case(f"gemm_{n}", gemm),
            Case(f"wy_{m}", wy_packed), Case(f"torch_householder_product_{m}", lapack)]


class TorchRNN(nn.Module):
    """``torch.nn.RNN`` (tanh, dense W) with the same readout as RecurrentNet: the floor."""

    def __init__(self, input_size: int, hidden_size: int, output_size: int):
        super().__init__()
        self.rnn = nn.RNN(input_size, hidden_size)
        self.readout = nn.Linear(hidden_size, output_size)

    def forward(self, x):
        states, _ = self.rnn(x)
        return self.readout(states), states


def transition_options(name: str, n: int) -> dict:
    """k = n reflectors for every transition that takes a reflector count."""
    from .transitions import option_names

    return {"reflectors": n} if "reflectors" in option_names(name) else {}


def training_cases(sizes: Sizes, device: torch.device, names: list[str]) -> list[Case]:
    """Cases of figure (b): a training step per model, and W's build per transition."""
    from .model import RecurrentNet

    gen = torch.Generator().manual_seed(2)
    n, steps, batch = sizes.hidden, sizes.steps, sizes.batch
    x = torch.randn(steps, batch, INPUT_SIZE, generator=gen).to(device)
    target = torch.randn(steps, batch, OUTPUT_SIZE, generator=gen).to(device)
    w_upstream = torch.randn(n, n, generator=gen).to(device)

    def step_fn(model: nn.Module):
        def step():
            model.zero_grad(set_to_none=True)
            out, _ = model(x)
            nn.functional.mse_loss(out, target).backward()
        return step

    def build_fn(transition):
        def build():
            transition.zero_grad(set_to_none=True)
            transition.matrix().backward(w_upstream)
        return build

    torch.manual_seed(3)
    cases = [Case("step_torch.nn.RNN", step_fn(TorchRNN(INPUT_SIZE, n, OUTPUT_SIZE).to(device)))]
    for name in names:
        model = RecurrentNet(INPUT_SIZE, n, OUTPUT_SIZE, transition=name,
                             **transition_options(name, n)).to(device)
        cases.append(Case(f"step_{name}", step_fn(model)))
        cases.append(Case(f"build_{name}", build_fn(model.transition)))
    return cases


def probe_cases(sizes: Sizes, device: torch.device, checks: dict) -> list[Case]:
    """Cases of figure (c): the whole Jacobian decay curve, and one forward + backward pass;
    records how far the timed method (the sketch, at this n) is from the exact norms in ``checks``."""
    from .model import RecurrentNet
    from .probes import jacobian_decay

    gen = torch.Generator().manual_seed(4)
    x = torch.randn(sizes.steps, sizes.probe_batch, INPUT_SIZE, generator=gen).to(device)
    torch.manual_seed(5)
    model = RecurrentNet(INPUT_SIZE, sizes.hidden, OUTPUT_SIZE, transition="dense").to(device)

    def forward_backward():
        model.zero_grad(set_to_none=True)
        out, _ = model(x)
        out.sum().backward()

    def decay_curve():
        jacobian_decay(model, x)

    sketch, exact = jacobian_decay(model, x, method="sketch"), jacobian_decay(model, x, method="exact")
    for norm in ("spectral", "frobenius"):
        a, b = sketch[norm].to_numpy(), exact[norm].to_numpy()
        ok = (a > 0) & (b > 0)  # float32 underflows to 0 at long gaps in both
        checks[f"jacobian_sketch_vs_exact_{norm}_max_abs_log_ratio"] = float(np.abs(np.log(a[ok] / b[ok])).max())

    return [Case("probe_forward_backward", forward_backward), Case("probe_jacobian_decay", decay_curve)]


# ----------------------------------------------------------------------------- running
def calibrate(cases: list[Case], device: torch.device, min_time: float, warmup: int) -> None:
    """Warm every case up, then choose its calls per measurement (>= min_time seconds)."""
    for case in cases:
        for _ in range(warmup):
            case.fn()
        _sync(device)
        one = min(_timed(Case(case.name, case.fn), device) for _ in range(2))
        case.calls = max(1, min(1000, math.ceil(min_time / max(one, 1e-9))))


def run_rounds(cases: list[Case], device: torch.device, rounds: int, seed: int,
               log: Callable[[str], None] = lambda s: None) -> list[dict]:
    """Every round times each case once, in a new shuffled order; returns every timing."""
    rng = random.Random(seed)
    rows = []
    for r in range(rounds):
        order = list(cases)
        rng.shuffle(order)
        for pos, case in enumerate(order):
            seconds = _timed(case, device)
            case.times.append(seconds)
            rows.append({"round": r, "position": pos, "case": case.name, "seconds": seconds,
                         "calls": case.calls})
        log(f"round {r + 1}/{rounds} done")
    return rows


def _quartiles(values: list[float]) -> tuple[float, float, float]:
    if len(values) == 1:
        return values[0], values[0], values[0]
    q = statistics.quantiles(values, n=4, method="inclusive")
    return q[0], q[1], q[2]


def figure(group: str, label: str, case: Case, baseline: Case, target: str | None,
           check: Callable[[float], bool] | None, sizes: str, device: torch.device,
           apply_target: bool) -> dict:
    """The per-round ratio case/baseline and its summary."""
    ratios = [c / b for c, b in zip(case.times, baseline.times)]
    q1, med, q3 = _quartiles(ratios)
    met = None
    if check is not None and apply_target:
        met = bool(check(med))
    return {"group": group, "figure": label, "case": case.name, "baseline": baseline.name,
            "ratio_median": med, "ratio_q1": q1, "ratio_q3": q3,
            "ratio_min": min(ratios), "ratio_max": max(ratios),
            "case_median_s": statistics.median(case.times),
            "baseline_median_s": statistics.median(baseline.times),
            "target": target or "", "target_met": met, "rounds": len(ratios),
            "sizes": sizes, "device": str(device), "per_round": ratios}


def build_figures(cases: dict[str, Case], sizes: Sizes, names: list[str], device: torch.device,
                  quick: bool, groups: tuple[str, ...] = GROUPS) -> list[dict]:
    full = not quick
    out = []
    if "a" in groups:
        out += _reflector_figures(cases, sizes, device, full)
    if "b" in groups:
        out += _training_figures(cases, sizes, names, device, full)
    if "c" in groups:
        out.append(figure("c", "Jacobian decay curve (all gaps) / one forward + backward pass",
                          cases["probe_jacobian_decay"], cases["probe_forward_backward"], "<= 3",
                          lambda r: r <= 3, f"n={sizes.hidden}, T={sizes.steps}, batch={sizes.probe_batch}, dense tanh",
                          device, full))
    return out


def _reflector_figures(cases, sizes, device, full) -> list[dict]:
    n, m = sizes.reflect_n, sizes.lapack_n
    return [
        figure("a", f"sequential definition / compact WY (k = n = {n}, fwd+bwd): speed-up",
               cases[f"sequential_{n}"], cases[f"wy_{n}"], ">= 20", lambda r: r >= 20,
               f"n=k={n}", device, full),
        figure("a", f"compact WY / one {n}x{n} matrix product (fwd+bwd)",
               cases[f"wy_{n}"], cases[f"gemm_{n}"], "<= 4.5", lambda r: r <= 4.5,
               f"n=k={n}", device, full),
        figure("a", f"torch.linalg.householder_product / compact WY (k = n = {m}, fwd+bwd): speed-up",
               cases[f"torch_householder_product_{m}"], cases[f"wy_{m}"], ">= 8", lambda r: r >= 8,
               f"n=k={m}", device, full),
    ]


def _training_figures(cases, sizes, names, device, full) -> list[dict]:
    out = []
    size_text = f"n={sizes.hidden}, T={sizes.steps}, batch={sizes.batch}"
    rnn = cases["step_torch.nn.RNN"]
    for name in names:
        spectral = name == "spectral"
        out.append(figure("b", f"training step {name} / torch.nn.RNN", cases[f"step_{name}"], rnn,
                          "<= 1.0" if spectral else None, (lambda r: r <= 1.0) if spectral else None,
                          size_text, device, full))
    for name in names:
        spectral = name == "spectral"
        out.append(figure("b", f"W build share of the {name} step", cases[f"build_{name}"],
                          cases[f"step_{name}"], "< 0.03" if spectral else None,
                          (lambda r: r < 0.03) if spectral else None, size_text, device, full))
    return out


# ----------------------------------------------------------------------------- environment
def allocator_state() -> dict:
    """Whether the allocator variables were set when this process started."""
    values = {k: os.environ.get(k) for k in ALLOCATOR_ENV}
    pinned = values["MALLOC_MMAP_MAX_"] == "0" and values["MALLOC_TRIM_THRESHOLD_"] is not None
    if pinned and os.environ.get(_REEXEC_MARK) == "1":
        how = "re-executed with the variables set"
    elif pinned:
        how = "set by the caller"
    else:
        how = "not pinned"
    return {"pinned": pinned, "how": how, **values}


def environment(device: torch.device, args) -> dict:
    env = {
        "device": str(device),
        "device_name": device_name(device),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "allocator": allocator_state(),
        "rounds": args.rounds,
        "quick": args.quick,
        "seed": args.seed,
        "min_time_s": args.min_time,
        "commit": git_commit(),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "host": platform.node(),
    }
    if device.type == "cuda":
        env["cuda"] = torch.version.cuda
        env["cudnn"] = torch.backends.cudnn.version()
        env["tf32_matmul"] = torch.backends.cuda.matmul.allow_tf32
        env["tf32_cudnn"] = torch.backends.cudnn.allow_tf32
    return env


# ----------------------------------------------------------------------------- output
def _fmt(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "NO"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def markdown(env: dict, figures: list[dict], checks: dict) -> str:
    alloc = env["allocator"]
    lines = [
        "# stability bench",
        "",
        f"- device: {env['device']} ({env['device_name']}); torch {env['torch']}; "
        f"threads {env['threads']}; python {env['python']}",
        f"- allocator pinned: {'yes' if alloc['pinned'] else 'no'} ({alloc['how']}; "
        f"MALLOC_MMAP_MAX_={alloc['MALLOC_MMAP_MAX_']}, MALLOC_TRIM_THRESHOLD_={alloc['MALLOC_TRIM_THRESHOLD_']})",
        f"- {env['rounds']} interleaved rounds in shuffled order; ratios per round, median [q1, q3]"
        + ("; QUICK mode: reduced sizes, targets not applied" if env["quick"] else ""),
        f"- commit {env['commit'] or 'unknown'}, {env['date']}",
        "",
        "| | figure | sizes | ratio (median) | [q1, q3] | case s | baseline s | target | met |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for f in figures:
        lines.append(f"| {f['group']} | {f['figure']} | {f['sizes']} | {_fmt(f['ratio_median'])} | "
                     f"[{_fmt(f['ratio_q1'])}, {_fmt(f['ratio_q3'])}] | {_fmt(f['case_median_s'])} | "
                     f"{_fmt(f['baseline_median_s'])} | {f['target']} | {_fmt(f['target_met'])} |")
    if checks:
        lines += ["", "Agreement of the compared forms (checked before timing):", ""]
        lines += [f"- {k}: {v:.3g}" for k, v in checks.items()]
    return "\n".join(lines) + "\n"


def write_outputs(out_dir: Path, env: dict, figures: list[dict], rows: list[dict], checks: dict) -> dict:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": out_dir / "bench.json", "csv": out_dir / "bench.csv",
             "md": out_dir / "bench.md", "rounds": out_dir / "rounds.csv"}
    with open(paths["json"], "w") as f:
        json.dump({"environment": env, "checks": checks, "figures": figures}, f, indent=2)
    with open(paths["csv"], "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=CSV_COLUMNS, extrasaction="ignore")
        w.writeheader()
        for fig in figures:
            w.writerow({k: ("" if fig[k] is None else fig[k]) for k in CSV_COLUMNS})
    with open(paths["rounds"], "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=ROUND_COLUMNS)
        w.writeheader()
        w.writerows(rows)
    paths["md"].write_text(markdown(env, figures, checks))
    return paths


# ----------------------------------------------------------------------------- entry point
def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="stability bench",
        description="Core speed comparison as ratios over interleaved, shuffled rounds: compact-WY "
                    "reflector products vs the sequential definition, one GEMM and "
                    "torch.linalg.householder_product; a RecurrentNet training step per transition "
                    "vs torch.nn.RNN, and the share of the step spent building W.")
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
    from . import transitions

    return [n for n in transitions.available() if transitions.get(n).__module__.startswith("stability.")]


def _all_names() -> list[str]:
    from . import transitions

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
    if args.device == "cuda" and not torch.cuda.is_available():
        cli.error("--device cuda: CUDA is not available here")

    if args.allocator == "pin" and not allocator_state()["pinned"]:
        env = dict(os.environ, **ALLOCATOR_ENV, **{_REEXEC_MARK: "1"})
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
    sizes = QUICK if args.quick else FULL
    torch.manual_seed(0)
    checks: dict = {}
    log = lambda s: print(s, file=sys.stderr, flush=True)  # noqa: E731
    log(f"stability bench: {device} ({device_name(device)}), torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, allocator pinned: {allocator_state()['pinned']}")
    cases = ((reflector_cases(sizes, device, checks) if "a" in groups else [])
             + (training_cases(sizes, device, names) if "b" in groups else [])
             + (probe_cases(sizes, device, checks) if "c" in groups else []))
    calibrate(cases, device, args.min_time, warmup=1 if args.quick else 2)
    rows = run_rounds(cases, device, args.rounds, args.seed, log)
    figures = build_figures({c.name: c for c in cases}, sizes, names, device, args.quick, groups)
    env = environment(device, args)
    paths = write_outputs(Path(args.out), env, figures, rows, checks)
    print(paths["md"].read_text(), end="")
    print(f"written: {', '.join(str(p) for p in paths.values())}")
    missed = [f["figure"] for f in figures if f["target_met"] is False]
    if missed:
        print("targets missed: " + "; ".join(missed), file=sys.stderr)
    return 1 if (args.strict and missed) else 0


if __name__ == "__main__":
    sys.exit(main())
