"""One seaborn figure per benchmark and (machine, environment): its cases over commits.

x is the commit (git order, labelled by short hash), y the value (times in s/ms/µs, other
kinds in their unit), one line per parameter combination with asv's 99% interval as error
bars; regressions are marked with a red triangle at the first commit of the new level and
labelled with the commit that introduced them, improvements with a green one.
Written as PNG and SVG with fixed metadata, so regenerating the same data gives the same files.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from .steps import CommitOrder, Step

TIME_UNITS = [(1.0, "s"), (1e-3, "ms"), (1e-6, "µs"), (1e-9, "ns")]
BYTE_UNITS = [(2.0**30, "GiB"), (2.0**20, "MiB"), (2.0**10, "KiB"), (1.0, "bytes")]


@dataclass
class Figure:
    machine: str
    env: str
    benchmark: str
    png: str   # paths relative to the page
    svg: str
    title: str
    cases: int
    unit: str


def scale_for(kind: str, unit: str, values: pd.Series) -> tuple[float, str]:
    """(divisor, label) that puts the median value between 1 and 1000 where the unit allows."""
    median = float(values.abs().median()) if len(values) else 1.0
    if kind == "time" or unit == "seconds":
        table = TIME_UNITS
    elif kind == "peakmemory" or unit == "bytes":
        table = BYTE_UNITS
    else:
        return 1.0, unit or "value"
    for factor, label in table:
        if median >= factor:
            return factor, label
    return table[-1]


def split_cases(cases: list[str]) -> tuple[str, dict[str, str]]:
    """(the parameters every case shares, as text; per case, the parameters that differ)."""
    parsed = {c: [p.split("=", 1) for p in c.split(", ")] if c else [] for c in cases}
    names = {n for parts in parsed.values() for n, _ in parts}
    shared = {}
    for name in sorted(names):
        values = {dict(parts).get(name) for parts in parsed.values()}
        if len(values) == 1:
            shared[name] = values.pop()
    common = ", ".join(f"{n}={v}" for n, v in shared.items() if v is not None)
    labels = {c: ", ".join(f"{n}={v}" for n, v in parts if n not in shared) or (c or "value")
              for c, parts in parsed.items()}
    return common, labels


def slug(*parts: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", "--".join(parts)).strip("_")[:150]


#: the stem :func:`slug` gives a figure: machine--e<N>--benchmark
_FIGURE_NAME = re.compile(r"[A-Za-z0-9_.-]+--e[0-9]+--[A-Za-z0-9_.-]+")


def draw(table: pd.DataFrame, order: CommitOrder, steps: list[Step], env_ids: dict[tuple[str, str], str],
         out: Path, cpu_time_envs: frozenset = frozenset()) -> list[Figure]:
    """Write every figure under ``out/figures`` and return their descriptions.

    ``cpu_time_envs``: (machine, env) pairs whose CPU cases were timed with the process's CPU
    time ($STABILITY_BENCH_TIMER=process), labelled "CPU time" instead of "time".
    """
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    import seaborn as sns

    sns.set_theme(style="whitegrid", context="notebook")
    plt.rcParams["svg.hashsalt"] = "stability-speed"
    folder = out / "figures"
    folder.mkdir(parents=True, exist_ok=True)
    figures = []
    by_series = {}
    for s in steps:
        by_series.setdefault((s.machine, s.env, s.benchmark, s.case), []).append(s)
    kinds_first = {"time": 0, "peakmemory": 1, "track": 2}
    groups = sorted(table.groupby(["machine", "env", "benchmark"]),
                    key=lambda kv: (kinds_first.get(kv[1]["kind"].iloc[0], 3), kv[0]))
    for (machine, env, benchmark), rows in groups:
        rows = rows[rows["value"].notna()]
        if rows.empty:
            continue
        kind, unit = rows["kind"].iloc[0], rows["unit"].iloc[0]
        factor, label = scale_for(kind, unit, rows["value"])
        common, case_label = split_cases(sorted(rows["case"].unique()))
        data = rows.assign(pos=rows["commit"].map(order.position), y=rows["value"] / factor,
                           lo=rows["ci_low"] / factor, hi=rows["ci_high"] / factor,
                           line=rows["case"].map(case_label)).sort_values(["line", "pos"])
        positions = sorted(data["pos"].unique())
        fig, ax = plt.subplots(figsize=(max(6.0, 0.9 * len(positions) + 3), 4.2))
        sns.lineplot(data=data, x="pos", y="y", hue="line", style="line", markers=True, dashes=False,
                     ax=ax, errorbar=None, sort=True)
        palette = {line.get_label(): line.get_color() for line in ax.get_lines()}
        for line_label, part in data.groupby("line"):
            ok = part["lo"].notna() & part["hi"].notna()
            if ok.any():
                p = part[ok]
                ax.errorbar(p["pos"], p["y"], yerr=[(p["y"] - p["lo"]).clip(lower=0), (p["hi"] - p["y"]).clip(lower=0)],
                            fmt="none", ecolor=palette.get(line_label, "grey"), alpha=0.6, capsize=3)
        for case in data["case"].unique():
            for s in by_series.get((machine, env, benchmark, case), []):
                x = order.position(s.after)
                y = s.value_after / factor
                colour = "#c0392b" if s.regression else "#1e8449"
                ax.plot([x], [y], marker="^" if s.regression else "v", markersize=13, color=colour,
                        markeredgecolor="black", zorder=5, linestyle="none")
                if s.regression:
                    ax.axvspan(order.position(s.before), x, color=colour, alpha=0.08, zorder=0)
                    ax.annotate(f"{s.ratio:.2f}× {s.introduced_short}",
                                (x, y), textcoords="offset points", xytext=(6, 8), fontsize=8, color=colour)
        ax.set_xticks(positions)
        ax.set_xticklabels([order.commits[p].short for p in positions], rotation=45, ha="right",
                           fontsize=8, family="monospace")
        ax.set_xlabel("commit (oldest → newest, git order)")
        clock = "CPU time" if (machine, env) in cpu_time_envs and "device=cuda" not in common else "time"
        ax.set_ylabel(label if kind != "time" else f"{clock} ({label})")
        ax.set_ylim(bottom=0)
        name = benchmark.split(".", 1)[-1]
        title = f"{name}" + (f" [{common}]" if common else "")
        ax.set_title(f"{title}\n{machine} · environment {env_ids[(machine, env)]}", fontsize=10)
        ax.legend(title=None, fontsize=8, loc="best")
        fig.tight_layout()
        stem = slug(machine, env_ids[(machine, env)], benchmark)
        fig.savefig(folder / f"{stem}.png", dpi=110, metadata={"Software": None})
        fig.savefig(folder / f"{stem}.svg", metadata={"Date": None, "Creator": None})
        plt.close(fig)
        figures.append(Figure(machine, env, benchmark, f"figures/{stem}.png", f"figures/{stem}.svg",
                              title, data["case"].nunique(), label))
    _remove_stale(folder, {Path(f.png).stem for f in figures})
    return figures


def _remove_stale(folder: Path, kept: set[str]) -> None:
    """Delete the figures an earlier page left in ``folder`` that this one did not draw (a series
    gone, or its environment renumbered ``e1`` → ``e2``); files not named like a figure stay."""
    for path in folder.iterdir():
        if path.suffix in (".png", ".svg") and _FIGURE_NAME.fullmatch(path.stem) and path.stem not in kept:
            path.unlink()
