"""What ``stability bench`` reports: figures (per-round ratios and their summary), the
environment and allocator state, and the files bench.json, bench.csv, bench.md, rounds.csv."""
from __future__ import annotations

import csv
import datetime as _dt
import json
import os
import platform
import statistics
from pathlib import Path
from typing import Callable

import torch

from ..environment import device_name, git_commit
from .cases import GROUPS, Sizes
from .timing import Case, quartiles

ALLOCATOR_ENV = {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": str(1 << 36)}
#: set in the child process that re-runs the measurement with the allocator pinned
REEXEC_MARK = "STABILITY_BENCH_REEXEC"

CSV_COLUMNS = ["group", "figure", "case", "baseline", "ratio_median", "ratio_q1", "ratio_q3",
               "ratio_min", "ratio_max", "case_median_s", "baseline_median_s", "target",
               "target_met", "rounds", "sizes", "device"]
ROUND_COLUMNS = ["round", "position", "case", "seconds", "calls"]


def figure(group: str, label: str, case: Case, baseline: Case, target: str | None,
           check: Callable[[float], bool] | None, sizes: str, device: torch.device,
           apply_target: bool) -> dict:
    """The per-round ratio case/baseline and its summary."""
    ratios = [c / b for c, b in zip(case.times, baseline.times)]
    q1, med, q3 = quartiles(ratios)
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
    if pinned and os.environ.get(REEXEC_MARK) == "1":
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
