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
