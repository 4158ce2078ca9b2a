"""Parameter-matched sizing: the hidden size that gives a model a parameter budget.

Two regimes compare parameterizations fairly (docs/protocols.md, "Comparing fairly"):

- ``"hidden"``: every parameterization at the same hidden size n; their parameter counts differ
  (expRNN and Cayley store n(n−1)/2 transition parameters, a dense W n², Spectral-RNN about n²
  with k = n reflectors per side, far fewer with small k).
- ``"params"``: every parameterization at the hidden size whose whole model (input map,
  transition, readout) has the parameter count closest to one budget.

Counts are always as built: ``sum(p.numel())`` over the model :func:`~stability.network.create_network`
builds (a transition's ``RecurrentNet`` or a gated cell's ``GatedNet``, model options such as
``bidirectional``, ``readout``, ``sequence_length``, ``layers`` included) on the ``meta`` device
(no memory, no data; a CPU build only where a constructor needs real values), so any registered
transition, plugins included, and the LSTM and GRU are sized without a formula. The hidden size
is found by a doubling search and a bisection, assuming the count does not decrease with n.

    parameter_count("exprnn", 170, 1, 10)        # -> 16415
    hidden_for_budget("dense", 16415, 1, 10)      # -> 122 (16358 parameters, the closest)
    match_parameters(16415, 1, 10)                # one row per transition, regime "params"
    hidden_for_budget("gru", 5134, 1, 10, bidirectional=True, readout="all", sequence_length=40)  # -> 6
"""
from __future__ import annotations

import math
from functools import lru_cache

import pandas as pd
import torch

from . import transitions
from .checks import check_choice, check_size
from .gated import GatedNet
from .network import check_name, create_network, is_gated

REGIMES = {
    "hidden": "equal hidden size: every parameterization uses the same hidden size n; parameter counts differ",
    "params": "equal parameter count: the hidden size of each parameterization is solved so that the whole "
              "model's parameter count (input map + transition + readout) is closest to one budget",
}

#: the largest hidden size searched
MAX_HIDDEN = 1 << 22

__all__ = ["REGIMES", "MAX_HIDDEN", "parameter_count", "hidden_for_budget", "match_parameters",
           "describe_regime"]


def _build_count(transition: str, hidden: int, input_size: int, output_size: int, options: dict) -> int:
    try:
        with torch.device("meta"):
            model = create_network(input_size, hidden, output_size, transition, **options)
    except (RuntimeError, NotImplementedError):
        # a constructor that needs real values (e.g. an eigenvalue rescale); build it for real
        model = create_network(input_size, hidden, output_size, transition, **options)
    return sum(p.numel() for p in model.parameters())


@lru_cache(maxsize=4096)
def _cached_count(cls, transition, hidden, input_size, output_size, frozen_options) -> int:
    return _build_count(transition, hidden, input_size, output_size, dict(frozen_options))


def _count(transition: str, hidden: int, input_size: int, output_size: int, options: dict) -> int:
    try:
        key = tuple(sorted(options.items()))
        hash(key)
    except TypeError:  # unhashable option values: no cache
        return _build_count(transition, hidden, input_size, output_size, options)
    cls = GatedNet if is_gated(transition) else transitions.get(transition)
    return _cached_count(cls, transition, hidden, input_size, output_size, key)


def _check_common(transition, input_size, output_size) -> None:
    if not isinstance(transition, str):
        raise TypeError(f"transition must be a registered name (str) or a gated cell, got {type(transition).__name__}")
    check_name(transition)  # ValueError listing the transitions and cells
    check_size("input_size", input_size)
    check_size("output_size", output_size)


def parameter_count(transition: str, hidden: int, input_size: int, output_size: int, **options) -> int:
    """``sum(p.numel())`` of ``create_network(input_size, hidden, output_size, transition, **options)``."""
    _check_common(transition, input_size, output_size)
    check_size("hidden", hidden)
    return _count(transition, hidden, input_size, output_size, options)


def _smallest_hidden(transition, input_size, output_size, options) -> int:
    """The smallest hidden size the transition accepts with these options (e.g. n >= reflectors)."""
    def ok(n: int) -> bool:
        try:
            _count(transition, n, input_size, output_size, options)
            return True
        except ValueError:
            return False

    if ok(1):
        return 1
    bad, good = 1, 2
    while not ok(good):
        bad, good = good, good * 2
        if good > MAX_HIDDEN:
            _count(transition, 1, input_size, output_size, options)  # re-raise the constructor's error
    while good - bad > 1:
        mid = (bad + good) // 2
        bad, good = (bad, mid) if ok(mid) else (mid, good)
    return good


def hidden_for_budget(transition: str, budget, input_size: int, output_size: int, **options) -> int:
    """The hidden size n whose model has the parameter count closest to ``budget`` (ties: the smaller n).

    Raises ValueError if ``budget`` is below the smallest model the transition allows (or above
    the model at :data:`MAX_HIDDEN`), naming the allowed range.
    """
    _check_common(transition, input_size, output_size)
    if isinstance(budget, bool) or not isinstance(budget, (int, float)) or not math.isfinite(budget):
        raise TypeError(f"budget must be a finite number of parameters, got {budget!r}")

    def count(n: int) -> int:
        return _count(transition, n, input_size, output_size, options)

    n_min = _smallest_hidden(transition, input_size, output_size, options)
    c_min = count(n_min)
    if budget < c_min:
        raise ValueError(f"budget={budget} is below the smallest {transition!r} model "
                         f"(hidden={n_min}, input_size={input_size}, output_size={output_size}: {c_min} parameters); "
                         f"allowed: budget >= {c_min}")
    lo, hi = n_min, n_min  # invariant once hi grows: count(lo) < budget <= count(hi)
    while count(hi) < budget:
        lo, hi = hi, min(hi * 2, MAX_HIDDEN)
        if lo == MAX_HIDDEN:
            raise ValueError(f"budget={budget} is above the largest {transition!r} model searched "
                             f"(hidden={MAX_HIDDEN}: {count(MAX_HIDDEN)} parameters); "
                             f"allowed: {c_min} <= budget <= {count(MAX_HIDDEN)}")
    if hi == n_min:
        return n_min
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if count(mid) < budget else (lo, mid)
    return lo if budget - count(lo) <= count(hi) - budget else hi


def match_parameters(budget, input_size: int, output_size: int, transition_names=None,
                     options: dict | None = None, model: dict | None = None) -> pd.DataFrame:
    """One row per transition (or gated cell): the hidden size matched to ``budget`` and its exact count.

    ``transition_names``: default every registered transition (gated cells by name: ``"lstm"``,
    ``"gru"``). ``options`` maps a name to its options (``{"spectral": {"reflectors": 16}}``);
    RecurrentNet options (``nonlinearity``) may go there too. ``model``: options of every model
    (``{"bidirectional": True, "readout": "all", "sequence_length": 40}``), under each name's own.
    Columns: ``transition``,
    ``hidden``, ``parameters``, ``budget``, ``deviation`` (parameters − budget),
    ``relative_deviation`` and ``regime`` (``"params"``).
    """
    names = transitions.available() if transition_names is None else list(transition_names)
    options = options or {}
    unknown = sorted(set(options) - set(names))
    if unknown:
        raise ValueError(f"options given for transition(s) not in the list: {', '.join(unknown)}; "
                         f"allowed: {', '.join(names)}")
    rows = []
    for name in names:
        opts = {**(model or {}), **options.get(name, {})}
        hidden = hidden_for_budget(name, budget, input_size, output_size, **opts)
        count = parameter_count(name, hidden, input_size, output_size, **opts)
        rows.append({"transition": name, "hidden": hidden, "parameters": count, "budget": budget,
                     "deviation": count - budget, "relative_deviation": (count - budget) / budget,
                     "regime": "params"})
    return pd.DataFrame(rows)


def describe_regime(regime: str, budget=None, hidden: int | None = None) -> str:
    """One sentence a report puts above a table: which regime it uses, and the budget or size."""
    check_choice("regime", regime, tuple(REGIMES))
    text = REGIMES[regime]
    if regime == "params" and budget is not None:
        text += f" (budget {budget:,} parameters)"
    if regime == "hidden" and hidden is not None:
        text += f" (n = {hidden})"
    return text[0].upper() + text[1:] + "."
