"""Initialization studies: one probe over transitions × options × seeds, as one DataFrame.

    from stability.probes import init_study, half_life
    df = init_study(["dense", ("spectral", {"reflectors": 16, "margin": [0.1, 0.5]})],
                    "jacobian", seeds=[0, 1, 2], hidden_size=128, T=200)
    df.groupby(["transition", "options", "gap"])["spectral"].mean()

    # one number per model: reduce each probe result first
    init_study(["dense", "exprnn"], "jacobian", seeds=range(3), reduce=half_life)

Each run is what the suite runner's probe experiment does at init: the global torch RNG is
seeded with ``seed`` and the model built (so initializations are reproducible), then inputs
x ~ input_scale · N(0, 1) of shape (T, batch, input_size) are drawn from a generator seeded
with ``seed`` (drawn in float64, then cast), and for ``gradient_flow`` targets y ~ N(0, 1) of
shape (batch, output_size) with the loss MSE(outputs[−1], y) unless ``loss_fn`` is given.
The caller's RNG state is restored afterwards.
"""
from __future__ import annotations

import inspect
import itertools
from typing import Callable, Iterable

import pandas as pd
import torch

from .inputs import check_int

__all__ = ["init_study", "options_label"]

_DTYPES = {"float32": torch.float32, "float64": torch.float64}


def options_label(name: str, options: dict | None = None) -> str:
    """A readable label: ``spectral(reflectors=16, margin=0.1)``; the bare name without options."""
    if not options:
        return name
    return f"{name}({', '.join(f'{k}={v}' for k, v in options.items())})"


def _expand(transitions) -> list[tuple[str, dict]]:
    """Normalize the transition argument to a list of (name, options)."""
    if isinstance(transitions, str):
        transitions = [transitions]
    elif isinstance(transitions, dict):
        transitions = list(transitions.items())
    if not isinstance(transitions, Iterable):
        raise TypeError(f"transitions must be a name, a list of names or (name, options) pairs, or a "
                        f"dict name -> options, got {type(transitions).__name__}")
    out = []
    for entry in transitions:
        if isinstance(entry, str):
            out.append((entry, {}))
            continue
        if not (isinstance(entry, (tuple, list)) and len(entry) == 2 and isinstance(entry[0], str)):
            raise TypeError(f"transitions entry {entry!r} must be a name or a (name, options) pair, with "
                            f"options a dict or a list of dicts")
        name, opts = entry
        if opts is None:
            opts = [{}]
        elif isinstance(opts, dict):  # a suite's form: every list is a grid axis
            opts = _grid(opts)
        for o in opts:
            if not isinstance(o, dict):
                raise TypeError(f"options for transition {name!r} must be dicts, got {o!r}")
            out.append((name, dict(o)))
    if not out:
        raise ValueError("transitions is empty; give at least one transition name")
    return out


def _grid(options: dict) -> list[dict]:
    """Every combination of the list-valued options, as in a suite's ``options`` (to pass a list as
    one value, wrap it in another list)."""
    keys = list(options)
    axes = [options[k] if isinstance(options[k], list) else [options[k]] for k in keys]
    return [dict(zip(keys, combo)) for combo in itertools.product(*axes)]


def _probe(probe) -> tuple[str, Callable]:
    from . import get

    if isinstance(probe, str):
        return probe, get(probe)
    if callable(probe):
        return getattr(probe, "__name__", "probe"), probe
    raise TypeError(f"probe must be a probe name (see stability.probes.available()) or a callable, "
                    f"got {type(probe).__name__}")


def _tabulate(result) -> pd.DataFrame:
    if isinstance(result, pd.DataFrame):
        return result.reset_index(drop=True)
    if isinstance(result, pd.Series):
        return result.to_frame().T.reset_index(drop=True)
    if isinstance(result, dict):
        return pd.DataFrame([result])
    if isinstance(result, (int, float)):
        return pd.DataFrame({"value": [float(result)]})
    raise TypeError(f"the probe (or reduce) returned {type(result).__name__}; expected a DataFrame, a dict "
                    f"or a number")


def init_study(transitions, probe, seeds: Iterable[int] = (0,), *, hidden_size: int = 64, T: int = 100,
               batch: int = 8, input_size: int = 8, input_scale: float = 1.0, output_size: int = 1,
               nonlinearity: str = "tanh", dtype="float32", device="cpu", loss_fn: Callable | None = None,
               reduce: Callable | None = None, **probe_options) -> pd.DataFrame:
    """Run ``probe`` on freshly initialized models for every transition × options × seed.

    Args:
        transitions: a name (``"dense"``), a list of names and ``(name, options)`` pairs where
            options is a dict whose lists are grid axes (a suite's ``options``: ``{"margin": [0.1, 0.5]}``
            is two models) or a list of dicts (one model per dict), or a dict ``{name: options}``.
        probe: a registered probe name (:func:`stability.probes.available`) or a callable
            ``probe(model, x=..., loss_fn=..., y=..., **probe_options)`` taking those of
            x, loss_fn, y it names.
        seeds: the seeds (each seeds the model's initialization and the inputs).
        hidden_size, T, batch, input_size, input_scale, output_size, nonlinearity: the model
            (:class:`~stability.model.RecurrentNet`) and its random inputs.
        dtype: ``"float32"``/``"float64"`` or a torch dtype; device: where the model runs.
        loss_fn: the loss for probes that take one (default MSE of the last step's outputs).
        reduce: applied to each probe result before tabulating, e.g.
            :func:`~stability.probes.half_life` for one row per model.
        **probe_options: passed to the probe (e.g. ``k=16`` for ``"lyapunov"``).

    Returns:
        One DataFrame: the probe's rows, preceded by ``transition`` (name), ``options``
        (a readable label such as ``"spectral(reflectors=16, margin=0.1)"``) and ``seed``.
    """
    from ..model import RecurrentNet

    entries = _expand(transitions)
    probe_name, fn = _probe(probe)
    seeds = list(seeds)
    if not seeds:
        raise ValueError("seeds is empty; give at least one seed")
    for s in seeds:
        check_int("seed", s, 0)
    for name, value in (("hidden_size", hidden_size), ("T", T), ("batch", batch), ("input_size", input_size),
                        ("output_size", output_size)):
        check_int(name, value, 1)
    if isinstance(input_scale, bool) or not isinstance(input_scale, (int, float)) or input_scale < 0:
        raise ValueError(f"input_scale={input_scale!r} must be a number >= 0")
    if isinstance(dtype, str):
        if dtype not in _DTYPES:
            raise ValueError(f"dtype={dtype!r} is not known; allowed: {', '.join(_DTYPES)}")
        dtype = _DTYPES[dtype]
    device = torch.device(device)
    params = inspect.signature(fn).parameters
    frames = []
    for name, opts in entries:
        label = options_label(name, opts)
        for seed in seeds:
            devices = [device.index or 0] if device.type == "cuda" else []
            with torch.random.fork_rng(devices=devices):
                torch.manual_seed(seed)
                model = RecurrentNet(input_size, hidden_size, output_size, name, nonlinearity=nonlinearity, **opts)
                model = model.to(device=device, dtype=dtype)
                gen = torch.Generator().manual_seed(seed)
                x = torch.randn(T, batch, input_size, generator=gen, dtype=torch.float64) * input_scale
                x = x.to(device=device, dtype=dtype)
                kwargs = {}
                if "x" in params:
                    kwargs["x"] = x
                if "loss_fn" in params or "y" in params:
                    y = torch.randn(batch, output_size, generator=gen, dtype=torch.float64).to(x)
                    kwargs["loss_fn"] = loss_fn or _last_step_mse
                    kwargs["y"] = y
                result = fn(model, **kwargs, **probe_options)
            if reduce is not None:
                result = reduce(result)
            df = _tabulate(result)
            df.insert(0, "seed", seed)
            df.insert(0, "options", label)
            df.insert(0, "transition", name)
            frames.append(df)
    out = pd.concat(frames, ignore_index=True)
    out.attrs["probe"] = probe_name
    return out


def _last_step_mse(outputs, y):
    return torch.nn.functional.mse_loss(outputs[-1], y)
