"""Argument checks shared by every part of the package: each names the argument and what is allowed.

They raise ``TypeError`` for a value of the wrong type and ``ValueError`` for a value out of
range, with a one-line message a user can act on; callers that talk to users (the suite runner,
the CLI) turn these into their own one-line errors.
"""
from __future__ import annotations

import difflib
import math
from typing import Iterable


def check_size(name: str, value, minimum: int = 1, maximum: int | None = None) -> int:
    """An integer in ``minimum..maximum`` (booleans are refused)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {value!r} ({type(value).__name__})")
    if value < minimum or (maximum is not None and value > maximum):
        allowed = f"{minimum}..{maximum}" if maximum is not None else f">= {minimum}"
        raise ValueError(f"{name}={value} is out of range; allowed: {allowed}")
    return value


def did_you_mean(value, choices: Iterable) -> str:
    """`` (did you mean 'x'?)`` for the closest of ``choices``, or an empty string."""
    close = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def check_choice(name: str, value, choices) -> str:
    """One of ``choices``."""
    choices = list(choices)
    if value not in choices:
        raise ValueError(f"{name}={value!r} is not known{did_you_mean(value, choices)}; "
                         f"allowed: {', '.join(map(repr, choices))}")
    return value


def check_finite_options(owner: str, options: dict) -> None:
    """Refuse a NaN or infinite float anywhere in ``options`` (nested lists and tables included)."""
    def walk(key: str, v) -> None:
        if isinstance(v, float) and not math.isfinite(v):
            raise ValueError(f"{owner}: {key} = {v} is not allowed; options must be finite numbers")
        if isinstance(v, dict):
            for k, x in v.items():
                walk(f"{key}.{k}", x)
        elif isinstance(v, (list, tuple)):
            for i, x in enumerate(v):
                walk(f"{key}[{i}]", x)

    for k, v in options.items():
        walk(str(k), v)


def check_sequence_input(x, input_size: int, dtype, sequence_length: int | None = None) -> tuple[int, int]:
    """A model's input: floats (T, B, input_size) of the parameters' ``dtype``, or int64/int32 token ids
    (T, B) in ``0..input_size-1``, with T, B >= 1 (and T = ``sequence_length`` when one is given, as
    readout "all" needs). Returns ``(T, B)``."""
    import torch

    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
    if x.dtype in (torch.int64, torch.int32):
        if x.dim() != 2:
            raise ValueError(f"token input must have shape (T, B), got {tuple(x.shape)}")
        if x.numel() and (int(x.min()) < 0 or int(x.max()) >= input_size):
            raise ValueError(f"token ids must lie in 0..{input_size - 1}, got range {int(x.min())}..{int(x.max())}")
    elif not x.is_floating_point():
        raise TypeError(f"x must be floating point (T, B, input_size) or int64/int32 token ids (T, B), "
                        f"got dtype {x.dtype}")
    else:
        if x.dim() != 3 or x.shape[2] != input_size:
            raise ValueError(f"x must have shape (T, B, input_size={input_size}), got {tuple(x.shape)}")
        if x.dtype != dtype:
            raise TypeError(f"x has dtype {x.dtype} but the model's parameters are {dtype}")
    if x.shape[0] < 1 or x.shape[1] < 1:
        raise ValueError(f"x must hold at least one step and one sequence, got shape {tuple(x.shape)}")
    steps, batch = int(x.shape[0]), int(x.shape[1])
    if sequence_length is not None and steps != sequence_length:
        raise ValueError(f"readout='all' reads exactly sequence_length={sequence_length} steps; x has T={steps}")
    return steps, batch


#: how a model's outputs are read from its states: every step's own ("last"), or all steps' at once
READOUTS = ("last", "all")


def check_readout(bidirectional, readout, sequence_length) -> tuple[bool, str, int | None]:
    """A model's ``bidirectional`` (a bool), ``readout`` (one of READOUTS) and ``sequence_length``
    (an int >= 1 or None; required by readout "all", whose W_out reads T steps' states)."""
    if not isinstance(bidirectional, bool):
        raise TypeError(f"bidirectional must be True or False, got {bidirectional!r}")
    check_choice("readout", readout, READOUTS)
    if sequence_length is not None:
        check_size("sequence_length", sequence_length)
    elif readout == "all":
        raise ValueError("readout='all' needs sequence_length (the number of steps T whose states the "
                         "readout reads), got None")
    return bidirectional, readout, sequence_length
