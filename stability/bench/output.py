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
from .baselines import ALTERNATIVES, TORCH_ORTHOGONAL_MAPS, TORCH_RNN
from .cases import GROUPS, Sizes, case_name
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
                  quick: bool, groups: tuple[str, ...] = GROUPS, alternatives=()) -> list[dict]:
    full = not quick
    out = []
    if "a" in groups:
        out += _reflector_figures(cases, sizes, device, full)
    if "b" in groups:
        for n, steps in sizes.training_points:
            out += _training_figures(cases, n, steps, sizes.batch, names, alternatives, device, full)
    if "c" in groups:
        where = f"n={sizes.hidden}, T={sizes.steps}, batch={sizes.probe_batch}, dense tanh"
        out.append(figure("c", "Jacobian decay curve (all gaps) / one forward + backward pass",
                          cases["probe_jacobian_decay"], cases["probe_forward_backward"], "<= 1.5",
                          lambda r: r <= 1.5, where, device, full))  # issue 20's target (sketch, closed path)
        if "probe_jacobian_decay_general" in cases:  # the general (torch.func) path any cell takes: no target
            out.append(figure("c", "Jacobian decay curve, general path / one forward + backward pass",
                              cases["probe_jacobian_decay_general"], cases["probe_forward_backward"], None,
                              None, where, device, full))
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
    ] + [row for k in (n, m) for row in (  # issue 20's W-build targets
        figure("a", f"U from k = n triangular reflectors (blocked) / one {k}x{k} matrix product (fwd+bwd)",
               cases[f"build_triangular_u_{k}"], cases[f"gemm_{k}"], "<= 2", lambda r: r <= 2,
               f"n=k={k}", device, full),
        figure("a", f"Spectral-RNN W = U Σ Vᵀ (k = n) / one {k}x{k} matrix product (fwd+bwd)",
               cases[f"build_spectral_w_{k}"], cases[f"gemm_{k}"], "<= 4", lambda r: r <= 4,
               f"n=k={k}", device, full))]


def _training_figures(cases, n, steps, batch, names, alternatives, device, full) -> list[dict]:
    """At one (n, T): each transition's and each alternative's step / torch.nn.RNN's (target for
    spectral: <= 1.0), then each transition's W build / its step (target for spectral where
    T >= 1000: < 0.03; at short T building W is a larger share by design)."""
    size_text = f"n={n}, T={steps}, batch={batch}"
    rnn = cases[case_name("step", TORCH_RNN, n, steps)]
    out = []

    def add(model, label, case, baseline, target, check):
        f = figure("b", label, case, baseline, target, check, size_text, device, full)
        out.append({**f, "model": model, "n": n, "T": steps})

    for name in [*names, *alternatives]:
        spectral = name == "spectral"
        add(name, f"training step {name} / torch.nn.RNN", cases[case_name("step", name, n, steps)], rnn,
            "<= 1.0" if spectral else None, (lambda r: r <= 1.0) if spectral else None)
    for name in names:
        targeted = name == "spectral" and steps >= 1000
        add(name, f"W build share of the {name} step", cases[case_name("build", name, n, steps)],
            cases[case_name("step", name, n, steps)], "< 0.03" if targeted else None,
            (lambda r: r < 0.03) if targeted else None)
    return out


def training_table(figures: list[dict]) -> list[str]:
    """Figure (b)'s step ratios as issue 20's table: one row per (n, T), one column per
    transition, torch's orthogonal maps in one column, geotorch in its own."""
    steps = [f for f in figures if f["group"] == "b" and f["baseline"].startswith(f"step_{TORCH_RNN}@")]
    if not steps:
        return []
    models = list(dict.fromkeys(f["model"] for f in steps))
    maps = [m for m in TORCH_ORTHOGONAL_MAPS if f"torch-orthogonal-{m}" in models]
    own = [m for m in models if m not in ALTERNATIVES]
    header = [*own] + ([f"torch orthogonal ({' / '.join(maps)})"] if maps else []) \
        + (["geotorch"] if "geotorch" in models else [])
    ratio = {(f["n"], f["T"], f["model"]): f["ratio_median"] for f in steps}
    lines = ["| n, T | " + " | ".join(header) + " |", "|---" * (len(header) + 1) + "|"]
    for n, t in dict.fromkeys((f["n"], f["T"]) for f in steps):
        cells = [_fmt2(ratio.get((n, t, m))) for m in own]
        if maps:
            cells.append(" / ".join(_fmt2(ratio.get((n, t, f"torch-orthogonal-{m}"))) for m in maps))
        if "geotorch" in models:
            cells.append(_fmt2(ratio.get((n, t, "geotorch"))))
        lines.append(f"| {n}, {t} | " + " | ".join(cells) + " |")
    return lines


def _fmt2(value) -> str:
    return "" if value is None else f"{value:.2f}"


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
        *[f"- skipped: {note}" for note in env.get("skipped", [])],
        "",
        "| | figure | sizes | ratio (median) | [q1, q3] | case s | baseline s | target | met |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for f in figures:
        lines.append(f"| {f['group']} | {f['figure']} | {f['sizes']} | {_fmt(f['ratio_median'])} | "
                     f"[{_fmt(f['ratio_q1'])}, {_fmt(f['ratio_q3'])}] | {_fmt(f['case_median_s'])} | "
                     f"{_fmt(f['baseline_median_s'])} | {f['target']} | {_fmt(f['target_met'])} |")
    table = training_table(figures)
    if table:
        lines += ["", "Training step / torch.nn.RNN (median of the per-round ratios; what users would write "
                  "instead: torch.nn.RNN with torch's orthogonal parametrization or geotorch's on weight_hh_l0):",
                  "", *table]
    if checks:
        lines += ["", "Checked before timing (agreement of the compared forms; max |WᵀW − I| of the "
                  "alternatives' W):", ""]
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
