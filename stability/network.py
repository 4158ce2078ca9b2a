"""One factory for every recurrent model: a transition's RecurrentNet or a gated cell's GatedNet.

    create_network(1, 128, 10, "spectral", reflectors=16)          # RecurrentNet(transition="spectral")
    create_network(1, 6, 10, "gru", bidirectional=True, readout="all", sequence_length=40)   # GatedNet

``name`` is a registered transition (``stability.transitions.available()``) or a gated cell
(:data:`~stability.gated.GATED_CELLS`). The runner, :mod:`stability.sizing` and ``stability probe``
build their models here, so a gated cell goes wherever a transition name does.

Options: a gated cell takes ``layers``, ``bidirectional``, ``readout``, ``sequence_length`` and
``engine`` (nothing of a transition's, nor ``nonlinearity``/``input_init``); a transition takes
its own options and RecurrentNet's, ``bidirectional``/``readout``/``sequence_length`` included,
and ``layers = 1`` only (RecurrentNet has one layer).
"""
from __future__ import annotations

from torch import nn

from . import transitions
from .checks import check_size, did_you_mean
from .gated import GATED_CELLS, GatedNet
from .model import RecurrentNet

#: the options a gated cell takes (besides its sizes)
GATED_OPTIONS = ("layers", "bidirectional", "readout", "sequence_length", "engine")
#: model options with the value RecurrentNet has without them (passed on only when they differ)
MODEL_DEFAULTS = {"bidirectional": False, "readout": "last", "sequence_length": None}

__all__ = ["GATED_CELLS", "GATED_OPTIONS", "available", "create_network", "is_gated"]


def available() -> list[str]:
    """Every name ``create_network`` takes: the registered transitions, then the gated cells."""
    return transitions.available() + list(GATED_CELLS)


def is_gated(name) -> bool:
    """True for a gated cell's name (``"lstm"``, ``"gru"``)."""
    return isinstance(name, str) and name in GATED_CELLS


def check_name(name) -> str:
    """``name`` if it is a transition or a gated cell; a ValueError listing both otherwise."""
    if not isinstance(name, str):
        raise TypeError(f"a network name must be a string (a transition or a gated cell), got {type(name).__name__}")
    if name not in available():
        raise ValueError(f"unknown transition or cell {name!r}{did_you_mean(name, available())}; "
                         f"transitions: {', '.join(transitions.available())}; cells: {', '.join(GATED_CELLS)}")
    return name


def create_network(input_size: int, hidden_size: int, output_size: int, name="dense", **options) -> nn.Module:
    """``GatedNet(cell=name, ...)`` for a gated cell, else ``RecurrentNet(transition=name, ...)``.

    Raises a one-line TypeError/ValueError for an option the model does not take (naming the
    allowed ones), ``layers`` < 1, ``layers`` > 1 with a transition, or an unknown name.
    """
    if isinstance(name, transitions.Transition):  # a ready transition: RecurrentNet checks the rest
        return RecurrentNet(input_size, hidden_size, output_size, name, **_recurrent_options(name, options))
    check_name(name)
    if "layers" in options:
        check_size("layers", options["layers"])
    if is_gated(name):
        unknown = [k for k in options if k not in GATED_OPTIONS]
        if unknown:
            raise TypeError(f"the gated cell {name!r} does not take option(s) {', '.join(unknown)} (no transition "
                            f"options, nonlinearity or input_init); allowed: {', '.join(GATED_OPTIONS)}")
        return GatedNet(input_size, hidden_size, output_size, name, **options)
    return RecurrentNet(input_size, hidden_size, output_size, name, **_recurrent_options(name, options))


def _recurrent_options(name, options: dict) -> dict:
    """RecurrentNet's keyword arguments: ``layers`` (1 only) dropped, model options at their defaults left out."""
    options = dict(options)
    layers = options.pop("layers", 1)
    if layers != 1:
        what = name if isinstance(name, str) else type(name).__name__
        raise ValueError(f"layers={layers}: the transition {what!r} builds a single-layer RecurrentNet; "
                         f"allowed: layers=1 (stacked layers: the gated cells {', '.join(GATED_CELLS)})")
    return {k: v for k, v in options.items() if not (k in MODEL_DEFAULTS and v == MODEL_DEFAULTS[k]
                                                      and type(v) is type(MODEL_DEFAULTS[k]))}
