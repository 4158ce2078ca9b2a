"""The probe registry: each probe with what it needs and the metric rows it stores.

One entry per probe says which inputs the caller supplies (``x`` a batch of input sequences,
``loss_fn`` and ``y`` a loss), how its result becomes stored rows ``(step, split, metric,
value)`` and which of those rows are scalar figures (``step`` 0). The suite runner, the
training loop's scheduled probes and ``stability probe`` all go through :func:`measure`, so a
probe's stored rows are defined once, here (metric names: ``docs/contracts.md``).

A third-party probe registers with :func:`register`; without a ``rows`` function its result
must be a DataFrame with columns ``metric``, ``value`` (and optionally ``step``).
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Callable

import pandas as pd

from ..registry import Registry

Row = tuple[int, str, str, float]

#: what a caller may supply to a probe (never a probe option)
SUPPLIED = ("model", "x", "h0", "loss_fn", "y")
#: options the runner reads itself for probes fed input sequences, with their defaults
INPUT_OPTIONS = {"T": 100, "batch": 8, "input_size": 8, "input_scale": 1.0}


@dataclass(frozen=True)
class Probe:
    """A registered probe: its function, the inputs it needs, and its stored rows."""

    name: str
    fn: Callable
    inputs: tuple[str, ...] = ()               # of "x", "loss_fn", "y"
    rows: Callable[[object, str], list[Row]] | None = None
    scalars: tuple[str, ...] = ()               # scalar metrics among its rows
    series: tuple[str, ...] = ()                # per-step / per-index metrics among its rows

    def options(self) -> dict:
        """The probe's own keyword options with their defaults (what a suite may set)."""
        params = inspect.signature(self.fn).parameters
        return {k: p.default for k, p in list(params.items())[1:]
                if k not in SUPPLIED and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}

    def input_options(self) -> dict:
        """The options the caller reads to build the probe's inputs, with defaults."""
        if "x" in self.inputs:
            return dict(INPUT_OPTIONS)
        return {"input_size": INPUT_OPTIONS["input_size"]}


PROBES: Registry[Probe] = Registry("probe", entry_points="stability.probes", aliases={"gradients": "gradient_flow"})


def register(name: str, *, inputs: tuple[str, ...] = (), rows: Callable | None = None,
             scalars: tuple[str, ...] = (), series: tuple[str, ...] = ()) -> Callable[[Callable], Callable]:
    """Decorator registering a probe function ``fn(model, ...)`` under ``name``."""
    for i in inputs:
        if i not in SUPPLIED[1:]:
            raise ValueError(f"probe {name!r}: input {i!r} is not one a caller supplies; allowed: "
                             f"{', '.join(SUPPLIED[1:])}")

    def decorate(fn: Callable) -> Callable:
        if not callable(fn):
            raise TypeError(f"register({name!r}) needs a callable, got {fn!r}")
        PROBES.register(name)(Probe(name, fn, tuple(inputs), rows, tuple(scalars), tuple(series)))
        return fn

    return decorate


def get_probe(name: str) -> Probe:
    """The registered :class:`Probe` (aliases resolved); a ValueError naming the probes otherwise."""
    entry = PROBES.get(name)
    if not isinstance(entry, Probe):  # registered through the entry-point group as a bare function
        entry = Probe(PROBES.canonical(name), entry)
    return entry


def scalar_rows(values: dict, names: tuple[str, ...], split: str) -> list[Row]:
    """``(0, split, name, value)`` for each of ``names`` present in ``values`` as a number."""
    rows = []
    for k in names:
        if k in values:
            try:
                rows.append((0, split, k, float(values[k])))
            except (TypeError, ValueError):
                continue
    return rows


def _generic_rows(out, split: str) -> list[Row]:
    if isinstance(out, pd.DataFrame) and {"metric", "value"} <= set(out.columns):
        steps = out["step"] if "step" in out.columns else [0] * len(out)
        return [(int(s), split, str(m), float(v)) for s, m, v in zip(steps, out["metric"], out["value"])]
    raise TypeError(f"a probe registered without rows= must return a DataFrame with columns metric, value "
                    f"(and step); got {type(out).__name__}")


def measure(name: str, model, split: str, *, x=None, loss_fn=None, y=None, options: dict | None = None) -> list[Row]:
    """Run probe ``name`` on ``model``; its stored rows ``(step, split, metric, value)``."""
    probe = get_probe(name)
    supplied = {"x": x, "loss_fn": loss_fn, "y": y}
    missing = [k for k in probe.inputs if supplied[k] is None]
    if missing:
        raise ValueError(f"probe {probe.name!r} needs {', '.join(missing)}")
    args = [supplied[k] for k in ("x", "loss_fn", "y") if k in probe.inputs]
    out = probe.fn(model, *args, **dict(options or {}))
    return (probe.rows or _generic_rows)(out, split)
