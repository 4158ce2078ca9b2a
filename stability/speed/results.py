"""Read an asv results folder through asv's own API into one table of measurements.

The folder is asv's ``results_dir``: ``benchmarks.json`` (what each benchmark is: type, unit,
parameters, version) and one folder per machine with ``machine.json`` and one JSON file per
(commit, environment). :func:`load_results` checks the folder, loads every results file
with :class:`asv.results.Results` and keeps, as asv's ``publish`` does, only the results whose
benchmark version matches ``benchmarks.json`` (``Results.get_result_keys``).
"""
from __future__ import annotations

import itertools
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd


class SpeedError(Exception):
    """A one-line error for ``stability speed`` (printed without a traceback, exit status 2)."""


@dataclass
class Measurements:
    """Every measured value in a results folder, with what it needs to be read.

    ``table`` has one row per (machine, env, benchmark, parameter combination, commit):
    columns machine, env, benchmark, kind (time, track, peakmemory), unit, case (the
    parameter combination as ``name=value, ...``), param_index, commit, date (commit date,
    ms since the epoch, as asv stores it), value (NaN where the case failed or was skipped)
    weight (asv's data-point weight from the 99% interval, NaN where unknown) and ci_low,
    ci_high (that interval).
    """
    folder: Path
    table: pd.DataFrame
    machines: dict[str, dict] = field(default_factory=dict)
    environments: dict[tuple[str, str], dict] = field(default_factory=dict)
    stale: int = 0  # results left out: benchmark changed since they were measured


def _asv():
    try:
        from asv import results as asv_results, util as asv_util
        from asv.benchmarks import Benchmarks
        from asv.machine import Machine
        from asv import _stats
    except ImportError as exc:  # asv is in the 'bench' extra
        raise SpeedError(f"asv is not installed ({exc}); install it with pip install -e '.[bench]'") from None
    return asv_results, asv_util, Benchmarks, Machine, _stats


def _has_files(folder: Path) -> bool:
    return any(p.is_file() for p in folder.rglob("*"))


def check_folder(folder: Path) -> tuple[dict, list[Path]]:
    """The loaded ``benchmarks.json`` and the machine folders of an asv results folder.

    Raises :class:`SpeedError` naming the path when the folder is missing, empty or not asv's.
    """
    _, asv_util, Benchmarks, _, _ = _asv()
    if not folder.exists():
        raise SpeedError(f"results folder {folder} does not exist (run asv first; see docs/speed.md)")
    if not folder.is_dir():
        raise SpeedError(f"results folder {folder} is not a folder (give asv's results_dir, e.g. .asv/results)")
    if not _has_files(folder):
        raise SpeedError(f"results folder {folder} is empty: no asv results to read (run asv first; see docs/speed.md)")
    bench_file = folder / "benchmarks.json"
    machine_dirs = sorted(p.parent for p in folder.glob("*/machine.json"))
    if not bench_file.is_file() or not machine_dirs:
        missing = "benchmarks.json" if not bench_file.is_file() else "<machine>/machine.json"
        raise SpeedError(f"results folder {folder} is not an asv results folder (no {missing}; "
                         "expected asv's results_dir with benchmarks.json and <machine>/machine.json)")
    try:
        benchmarks = asv_util.load_json(str(bench_file), api_version=Benchmarks.api_version)
    except (asv_util.UserError, ValueError, OSError) as exc:
        raise SpeedError(f"results folder {folder}: cannot read {bench_file.name}: {_one_line(exc)}") from None
    benchmarks.pop("version", None)
    return benchmarks, machine_dirs


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def case_labels(benchmark: dict) -> list[str]:
    """``name=value, ...`` for every parameter combination of a benchmark, in asv's order."""
    names, params = benchmark.get("param_names") or [], benchmark.get("params") or []
    if not params:
        return [""]
    return [", ".join(f"{n}={_unquote(v)}" for n, v in zip(names, combo))
            for combo in itertools.product(*params)]


def _unquote(value: str) -> str:
    return value[1:-1] if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"" else value


def _kind(name: str, benchmark: dict) -> str:
    return benchmark.get("type") or name.rsplit(".", 1)[-1].split("_", 1)[0]


def _finite(x) -> float:
    return float(x) if x is not None and not (isinstance(x, float) and math.isnan(x)) else math.nan


def load_results(folder: str | os.PathLike) -> Measurements:
    """Every result in an asv results folder; see :class:`Measurements`."""
    folder = Path(folder)
    asv_results, asv_util, _, Machine, stats_mod = _asv()
    benchmarks, machine_dirs = check_folder(folder)
    rows, machines, environments, stale = [], {}, {}, 0
    for machine_dir in machine_dirs:
        try:
            info = asv_util.load_json(str(machine_dir / "machine.json"), api_version=Machine.api_version)
        except (asv_util.UserError, ValueError, OSError) as exc:
            raise SpeedError(f"results folder {folder}: cannot read {machine_dir.name}/machine.json: "
                             f"{_one_line(exc)}") from None
        info.pop("version", None)
        machines[machine_dir.name] = info
        for path in sorted(machine_dir.glob("*.json")):
            if path.name == "machine.json":
                continue
            try:
                result = asv_results.Results.load(str(path), machine_dir.name)
            except (asv_util.UserError, ValueError, KeyError, OSError) as exc:
                raise SpeedError(f"results folder {folder}: {machine_dir.name}/{path.name} is not an asv "
                                 f"results file: {_one_line(exc)}") from None
            env_key = (machine_dir.name, result.env_name)
            # asv stores the machine's description and the environment's (python and the
            # requirements of the matrix) together in the result's params
            env_params = {k: v for k, v in (result.params or {}).items() if k not in info and k != "machine"}
            environments.setdefault(env_key, {
                "python": env_params.pop("python", ""),
                "requirements": env_params,
                "env_vars": dict(result.env_vars or {}),
            })
            keys = set(result.get_result_keys(benchmarks))
            stale += len(set(result.get_all_result_keys()) - keys)
            for name in sorted(keys):
                bench = benchmarks[name]
                values = result.get_result_value(name, bench["params"])
                stats = result.get_result_stats(name, bench["params"])
                for index, (label, value, stat) in enumerate(zip(case_labels(bench), values, stats)):
                    weight = stats_mod.get_weight(stat)
                    rows.append({
                        "machine": machine_dir.name, "env": result.env_name, "benchmark": name,
                        "kind": _kind(name, bench), "unit": bench.get("unit", ""), "case": label,
                        "param_index": index, "commit": result.commit_hash, "date": result.date,
                        "value": _finite(value), "weight": _finite(weight),
                        "ci_low": _finite((stat or {}).get("ci_99_a")),
                        "ci_high": _finite((stat or {}).get("ci_99_b")),
                    })
    if not rows:
        detail = f" ({stale} results of benchmarks changed since)" if stale else ""
        raise SpeedError(f"results folder {folder} holds no results of the benchmarks in benchmarks.json{detail}")
    table = pd.DataFrame(rows)
    return Measurements(folder=folder, table=table, machines=machines, environments=environments, stale=stale)
