"""The one interface every recurrent transition parameterization implements, and its registry.

A transition is an ``nn.Module`` that owns its parameters and returns the n×n recurrent
matrix W through :meth:`Transition.matrix`. Everything downstream (the model, the probes,
the tasks, the benchmarks, the reports) sees only this interface, so a parameterization
registered here gets every probe and report for free::

    from stability.transitions import Transition, register

    @register("diagonal")
    class Diagonal(Transition):
        def __init__(self, n):
            super().__init__(n)
            self.d = nn.Parameter(torch.ones(n))
        def matrix(self):
            return torch.diag(self.d)

Other packages register through the entry-point group ``stability.transitions``
(``name = "package.module:Class"``); those are loaded the first time the registry is read.
"""
from __future__ import annotations

import inspect
from importlib import metadata
from typing import Callable

import torch
from torch import Tensor, nn

ENTRY_POINT_GROUP = "stability.transitions"

_REGISTRY: dict[str, type["Transition"]] = {}
_entry_points_loaded = False


class Transition(nn.Module):
    """Base class: a module whose :meth:`matrix` is the (differentiable) n×n transition W."""

    #: short registry name, set by :func:`register`
    name: str = ""

    def __init__(self, n: int):
        super().__init__()
        self.n = check_size("n", n)

    def matrix(self) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def singular_values(self) -> Tensor:
        """Singular values of W in descending order (exact where the parameterization knows them)."""
        return torch.linalg.svdvals(self.matrix())

    def forward(self) -> Tensor:
        return self.matrix()

    def options(self) -> dict:
        """The options this transition was built with (for logging and result rows)."""
        return {}

    def extra_repr(self) -> str:
        opts = ", ".join(f"{k}={v}" for k, v in self.options().items())
        return f"n={self.n}" + (", " + opts if opts else "")


def check_size(name: str, value, minimum: int = 1, maximum: int | None = None) -> int:
    """Validate an integer size argument; raise a ValueError/TypeError naming it otherwise."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {value!r} ({type(value).__name__})")
    if value < minimum or (maximum is not None and value > maximum):
        allowed = f"{minimum}..{maximum}" if maximum is not None else f">= {minimum}"
        raise ValueError(f"{name}={value} is out of range; allowed: {allowed}")
    return value


def check_choice(name: str, value, choices) -> str:
    if value not in choices:
        raise ValueError(f"{name}={value!r} is not known; allowed: {', '.join(map(repr, choices))}")
    return value


def register(name: str) -> Callable[[type[Transition]], type[Transition]]:
    """Class decorator adding a :class:`Transition` subclass to the registry under ``name``."""

    def decorate(cls: type[Transition]) -> type[Transition]:
        if not (isinstance(cls, type) and issubclass(cls, Transition)):
            raise TypeError(f"@register({name!r}) needs a Transition subclass, got {cls!r}")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return decorate


def _load_entry_points() -> None:
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    _entry_points_loaded = True
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        if ep.name in _REGISTRY:
            continue
        try:
            cls = ep.load()
        except Exception as exc:  # a broken plugin must not break the suite
            import warnings

            warnings.warn(f"could not load transition plugin {ep.name!r} ({ep.value}): {exc}")
            continue
        register(ep.name)(cls)


def available() -> list[str]:
    """Names of every registered transition (built-ins and plugins), sorted."""
    _load_entry_points()
    return sorted(_REGISTRY)


def get(name: str) -> type[Transition]:
    """The transition class registered under ``name``."""
    _load_entry_points()
    if name not in _REGISTRY:
        raise ValueError(f"unknown transition {name!r}; available: {', '.join(available())}")
    return _REGISTRY[name]


def option_names(name: str) -> list[str]:
    """The keyword options a transition's constructor accepts (besides n)."""
    sig = inspect.signature(get(name).__init__)
    return [p for p in sig.parameters if p not in ("self", "n")
            and sig.parameters[p].kind in (inspect.Parameter.KEYWORD_ONLY,
                                           inspect.Parameter.POSITIONAL_OR_KEYWORD)]


def option_defaults(name: str) -> dict:
    """The options of a transition with their default values."""
    sig = inspect.signature(get(name).__init__)
    return {p: sig.parameters[p].default for p in option_names(name)}


def create(name: str, n: int, **options) -> Transition:
    """Build the transition registered under ``name`` for hidden size ``n``.

    Unknown options raise a TypeError listing the accepted ones.
    """
    cls = get(name)
    allowed = option_names(name)
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise TypeError(f"transition {name!r} does not take option(s) {', '.join(unknown)}; "
                        f"allowed: {', '.join(allowed) or '(none)'}")
    return cls(n, **options)
