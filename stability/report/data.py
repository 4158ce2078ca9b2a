"""Reading a results store for the report: runs, configurations, labels, colors, metric access.

A *configuration* is a run config without its ``seed`` (``docs/contracts.md``): the seeds of
one configuration are aggregated into one table row and one line per figure.

Nothing here draws or formats; :mod:`.tables` and :mod:`.figures` build on it.
"""
from __future__ import annotations

import colorsys
import json
import math
import os
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..config import Definition, RunConfig
from ..store import Store, StoreError

# -- configurations ------------------------------------------------------------------

#: keys (dotted, flattened config) never shown as a distinguishing setting in a label
_HIDDEN_FROM_LABEL_LEAVES = {"seed", "baseline", "threshold", "thresholds"}
#: prefixes never shown as a setting: the transition is its own label part, the paper's
#: figures are not a setting of the run
_HIDDEN_FROM_LABEL_PREFIXES = ("transition", "transition_options", "paper", "options.paper", "definition", "measure",
                               "options.data_dir")
#: shorter names for a few settings in labels and table columns
_SHORT = {"hidden_size": "hidden", "transition_lr": "transition lr", "batch_size": "batch"}
#: the order transitions appear in (tables, legends); unknown ones follow alphabetically
TRANSITION_ORDER = ["dense", "lstm", "exprnn", "cayley", "householder", "orthogonal", "spectral"]
#: one fixed color per transition, the same in every figure and every report
TRANSITION_COLORS = {
    "dense": "#6e6e6e",        # the plain RNN: neutral gray
    "lstm": "#8c564b",         # brown
    "exprnn": "#1f77b4",       # blue
    "cayley": "#2ca02c",       # green
    "householder": "#ff7f0e",  # orange
    "orthogonal": "#17becf",   # cyan
    "spectral": "#d62728",     # red
    "diagonal": "#bcbd22",     # olive
}
_SPARE_COLORS = ["#9467bd", "#e377c2", "#7f7f00", "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173"]


def config_key(config: dict, drop: tuple[str, ...] = ("seed",)) -> str:
    """A canonical string for a configuration: the config without ``seed`` (and ``drop``)."""
    return json.dumps({k: v for k, v in config.items() if k not in drop}, sort_keys=True, default=str)


def flatten(config: dict, prefix: str = "") -> dict[str, object]:
    """``{"train": {"lr": 1e-3}}`` -> ``{"train.lr": 1e-3}``; lists become JSON text."""
    out: dict[str, object] = {}
    for k, v in config.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(flatten(v, key + "."))
        elif isinstance(v, (list, tuple, dict)):
            out[key] = json.dumps(v, sort_keys=True, default=str)
        else:
            out[key] = v
    return out


def _hidden_from_label(key: str) -> bool:
    leaf = key.rsplit(".", 1)[-1]
    if leaf in _HIDDEN_FROM_LABEL_LEAVES:
        return True
    return any(key == p or key.startswith(p + ".") for p in _HIDDEN_FROM_LABEL_PREFIXES)


def fmt_value(v) -> str:
    if isinstance(v, bool) or v is None:
        return str(v)
    if isinstance(v, float):
        if v.is_integer() and abs(v) < 1e15:
            return str(int(v))
        return f"{v:g}"
    return str(v)


def short_names(keys: list[str]) -> dict[str, str]:
    """Last path component (``train.lr`` -> ``lr``) unless two keys would collide."""
    leaves = [k.rsplit(".", 1)[-1] for k in keys]
    out = {}
    for k, leaf in zip(keys, leaves):
        name = leaf if leaves.count(leaf) == 1 else k
        out[k] = _SHORT.get(name, name)
    return out


def varying_keys(flat_configs: list[dict], include=lambda k: True) -> list[str]:
    """Keys whose value differs between the configs (a key absent in one counts as differing)."""
    keys: list[str] = []
    for fc in flat_configs:
        for k in fc:
            if k not in keys:
                keys.append(k)
    out = []
    for k in keys:
        if not include(k):
            continue
        values = {json.dumps(fc.get(k, "<absent>"), sort_keys=True, default=str) for fc in flat_configs}
        if len(values) > 1:
            out.append(k)
    return sorted(out, key=_setting_order)


def common_settings(flat_configs: list[dict]) -> dict[str, object]:
    """Keys with one value in every config (shown once in a table's header)."""
    if not flat_configs:
        return {}
    first = flat_configs[0]
    out = {}
    for k, v in first.items():
        if k == "seed" or any(k == p or k.startswith(p + ".") for p in ("paper", "options.paper", "measure")):
            continue
        if all(k in fc and fc[k] == v for fc in flat_configs[1:]):
            out[k] = v
    # the task's definition repeats its options (T, K, ...): keep each (name, value) once
    seen, dedup = set(), {}
    for k, v in sorted(out.items(), key=lambda kv: _setting_order(kv[0])):
        leaf = (k.rsplit(".", 1)[-1], json.dumps(v, default=str))
        if leaf in seen or k in ("definition.task", "definition.loss", "definition.accuracy"):
            continue
        seen.add(leaf)
        dedup[k] = v
    return dedup


def _setting_order(key: str) -> tuple:
    head = ["kind", "name", "hidden_size", "match", "budget", "options", "nonlinearity", "train", "dtype", "device",
            "suite"]
    first = key.split(".", 1)[0]
    return (head.index(first) if first in head else len(head), key)


def transition_sort_key(name: str) -> tuple:
    return (TRANSITION_ORDER.index(name) if name in TRANSITION_ORDER else len(TRANSITION_ORDER), name)


# -- colors --------------------------------------------------------------------------
def transition_color(name: str) -> str:
    if name in TRANSITION_COLORS:
        return TRANSITION_COLORS[name]
    return _SPARE_COLORS[zlib.crc32(name.encode()) % len(_SPARE_COLORS)]


def _hex_to_rgb(h: str) -> tuple[float, float, float]:
    h = h.lstrip("#")
    return tuple(int(h[i:i + 2], 16) / 255 for i in (0, 2, 4))  # type: ignore[return-value]


def shade(color: str, amount: float) -> str:
    """Darker (amount < 0) or lighter (amount > 0) version of ``color`` in HLS lightness."""
    h, l, s = colorsys.rgb_to_hls(*_hex_to_rgb(color))
    l = l + amount * (1 - l) if amount > 0 else l * (1 + amount)
    r, g, b = colorsys.hls_to_rgb(h, min(max(l, 0.0), 1.0), s)
    return "#{:02x}{:02x}{:02x}".format(*(round(c * 255) for c in (r, g, b)))


def shades(color: str, k: int) -> list[str]:
    """k distinguishable shades of one color, dark to light (the color itself for k = 1)."""
    if k <= 1:
        return [color]
    return [shade(color, a) for a in np.linspace(-0.4, 0.5, k)]


# -- the loaded store ----------------------------------------------------------------
@dataclass
class Variant:
    """A transition with its options: the unit of color (hue) in every figure."""

    transition: str
    options_json: str
    label: str
    color: str


@dataclass
class Collection:
    """The runs of one store (optionally one suite), with their metric rows."""

    path: Path
    suite: str | None
    runs: pd.DataFrame                      # every run (any status)
    metrics: pd.DataFrame                   # rows of finished runs only
    suites_in_store: list[str] = field(default_factory=list)
    variants: dict[str, Variant] = field(default_factory=dict)  # variant key -> Variant
    _data: dict[str, "RunData"] = field(default_factory=dict, repr=False)

    @property
    def finished(self) -> pd.DataFrame:
        return self.runs[self.runs["status"] == "finished"]

    @property
    def failed(self) -> pd.DataFrame:
        return self.runs[self.runs["status"] == "failed"]

    @property
    def running(self) -> pd.DataFrame:
        return self.runs[self.runs["status"] == "running"]

    def data(self, run_id: str) -> "RunData":
        if run_id not in self._data:
            self._data[run_id] = RunData({})
        return self._data[run_id]

    def variant(self, config: dict) -> Variant:
        return self.variants[variant_key(config)]

    def has(self, split: str, metric: str) -> bool:
        m = self.metrics
        return bool(((m["split"] == split) & (m["metric"] == metric)).any()) if len(m) else False


def variant_key(config: dict) -> str:
    return json.dumps([config.get("transition", "?"), config.get("transition_options") or {}], sort_keys=True,
                      default=str)


class RunData:
    """One run's metric rows as series keyed by (split, metric), indexed by step (sorted)."""

    def __init__(self, series: dict[tuple[str, str], pd.Series]):
        self.series_by_key = series

    def series(self, split: str, metric: str) -> pd.Series | None:
        s = self.series_by_key.get((split, metric))
        if s is None:
            return None
        s = s.dropna()
        return s if len(s) else None

    def scalar(self, split: str, metric: str) -> float | None:
        """The value at the last step (scalars are stored at step 0)."""
        s = self.series(split, metric)
        return None if s is None else float(s.iloc[-1])

    def splits_with(self, metric: str) -> set[str]:
        return {sp for (sp, m), s in self.series_by_key.items() if m == metric and s.notna().any()}


def open_store(store) -> Store:
    """A :class:`Store` for a path (never created: a missing path raises FileNotFoundError)."""
    if isinstance(store, Store):
        return store
    return Store(Path(os.fspath(store)), create=False)


def load(store, suite: str | None = None) -> Collection:
    st = open_store(store)
    runs = st.runs(suite)
    runs = runs.reset_index(drop=True)
    runs["config"] = [_declared(rid, c, st.path) for rid, c in zip(runs["id"], runs["config"])]
    runs["seed"] = runs["config"].map(lambda c: c.get("seed"))
    runs["config_key"] = runs["config"].map(config_key)
    runs["transition"] = runs["config"].map(lambda c: str(c.get("transition", "?")))
    runs["kind"] = runs["config"].map(lambda c: str(c.get("kind", "?")))
    runs["name"] = runs["config"].map(lambda c: str(c.get("name", "?")))
    finished_ids = runs.loc[runs["status"] == "finished", "id"].tolist()
    frames = [st.metrics(finished_ids[i:i + 500]) for i in range(0, len(finished_ids), 500)]
    frames = [f for f in frames if len(f)]
    metrics = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(
        columns=["run_id", "step", "split", "metric", "value"])
    metrics["value"] = pd.to_numeric(metrics["value"], errors="coerce")
    coll = Collection(path=Path(st.path), suite=suite, runs=runs, metrics=metrics, suites_in_store=st.suites())
    for (rid, split, metric), g in metrics.groupby(["run_id", "split", "metric"], sort=False):
        s = g.groupby("step")["value"].mean().sort_index()
        coll._data.setdefault(rid, RunData({})).series_by_key[(split, metric)] = s
    coll.variants = _variants(runs)
    return coll


def _declared(run_id: str, config: dict, path) -> dict:
    """A stored config in the declared shape (docs/contracts.md); a StoreError naming the run otherwise."""
    try:
        return RunConfig.from_dict(config).to_dict()
    except (TypeError, ValueError) as exc:
        raise StoreError(f"{path}: run {run_id}: its config is not a RunConfig ({exc})") from None


def _variants(runs: pd.DataFrame) -> dict[str, Variant]:
    by_transition: dict[str, dict[str, dict]] = {}
    for cfg in runs["config"]:
        name = str(cfg.get("transition", "?"))
        opts = cfg.get("transition_options") or {}
        by_transition.setdefault(name, {})[json.dumps(opts, sort_keys=True, default=str)] = opts
    out = {}
    for name in sorted(by_transition, key=transition_sort_key):
        options = by_transition[name]
        keys = sorted(options, key=lambda k: _natural(options[k]))
        # the options of the source transition (init_options.*) follow from init_from: not shown
        flat = [{k: v for k, v in flatten(options[k]).items() if not k.startswith("init_options")} for k in keys]
        vary = varying_keys(flat)
        colors = shades(transition_color(name), len(keys))
        for k, fl, color in zip(keys, flat, colors):
            label = name
            shown = [v for v in vary if fl.get(v) is not None]  # an option a variant leaves unset is not shown
            if shown:
                label += " (" + ", ".join(f"{short_names(vary)[v]}={fmt_value(fl[v])}" for v in shown) + ")"
            out[json.dumps([name, options[k]], sort_keys=True, default=str)] = Variant(name, k, label, color)
    return out


def _natural(options: dict) -> tuple:
    """Sort options numerically where values are numbers (margin 0.01 before 0.1 before 1)."""
    out = []
    for k, v in sorted(flatten(options).items()):
        number = isinstance(v, (int, float)) and not isinstance(v, bool)
        out.append((k, 0, float(v), "") if number else (k, 1, 0.0, str(v)))
    return tuple(out)


# -- labels for a set of configurations ----------------------------------------------
def settings_labels(configs: list[dict]) -> dict[str, str]:
    """config key -> the settings that distinguish it from the others (not the transition)."""
    flat = {config_key(c): flatten({k: v for k, v in c.items() if k != "seed"}) for c in configs}
    vary = varying_keys(list(flat.values()), include=lambda k: not _hidden_from_label(k))
    names = short_names(vary)
    return {key: ", ".join(f"{names[k]}={fmt_value(fc.get(k, '–'))}" for k in vary) for key, fc in flat.items()}


# -- facts a run config carries ------------------------------------------------------
def task_options(config: dict) -> dict:
    return config.get("options") or {}


def baseline_of(config: dict, data: RunData | None = None, metric: str | None = None) -> float | None:
    """The task's baseline loss (its ``definition()["baseline"]``); None where the task has none, or
    when the baseline is in another metric than ``metric`` (a copy baseline in CE is no baseline
    for an accuracy)."""
    task = Definition(config.get("definition") or {})
    unit, b = task.baseline_metric, task.baseline
    if b is None or metric is None or not unit or metric in (unit, "loss"):
        return b
    if unit == "ce" and metric in CE_UNITS:  # the same baseline in the units of the metric
        return CE_UNITS[metric](b)
    return None


#: metrics that are a cross-entropy in other units: the conversion from nats
CE_UNITS = {"perplexity": lambda ce: math.exp(min(ce, 700.0)), "bpc": lambda ce: ce / math.log(2.0)}


def paper_of(config: dict) -> dict:
    """Figures reported by the paper for this configuration ({} where none were given)."""
    return RunConfig.from_dict(config).paper


def regime_of(config: dict) -> tuple[str, object]:
    """The comparison regime: ("hidden", None) or ("params", budget)."""
    cfg = RunConfig.from_dict(config)
    return (cfg.match, cfg.budget)


def regime_text(regime: tuple[str, object] | None, hidden_sizes: list) -> str:
    hs = sorted({h for h in hidden_sizes if h is not None}, key=lambda h: (str(type(h)), h))
    hs_text = ", ".join(str(h) for h in hs) if hs else "not recorded"
    if regime is None:
        return f"not recorded in the run config (hidden size {hs_text})"
    by, budget = regime
    if by == "hidden":
        return f"equal hidden size (hidden size {hs_text})"
    if by == "params":
        b = f"{int(budget):,}" if _is_number(budget) else "budget not recorded"
        return f"equal parameter count (budget {b} parameters; hidden size solved per transition: {hs_text})"
    return f"{by}" + (f" (budget {budget})" if budget is not None else "") + f" (hidden size {hs_text})"


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(float(v))


def env_summary(runs: pd.DataFrame) -> dict[str, list[str]]:
    """Distinct values of the environment facts across runs (several values are worth seeing)."""
    keys = {"commit": ("git_commit",), "device": ("device",), "device name": ("device_name",),
            "torch": ("torch",), "stability": ("stability",), "python": ("python",), "tf32": ("tf32",),
            "threads": ("threads",), "note": ("note",)}
    out: dict[str, list[str]] = {}
    for label, names in keys.items():
        values: list[str] = []
        for env in runs["env"]:
            for n in names:
                if isinstance(env, dict) and env.get(n) not in (None, ""):
                    v = str(env[n])
                    if v not in values:
                        values.append(v)
        out[label] = values
    return out
