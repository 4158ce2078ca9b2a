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

import torch
from torch import Tensor, nn

from ..checks import check_choice, check_size  # noqa: F401  (re-exported for transition modules and plugins)
from ..registry import Registry

ENTRY_POINT_GROUP = "stability.transitions"


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


def _check_transition(name: str, cls) -> None:
    if not (isinstance(cls, type) and issubclass(cls, Transition)):
        raise TypeError(f"@register({name!r}) needs a Transition subclass, got {cls!r}")


#: every transition by name: the built-ins, decorated classes and the entry-point group's plugins
TRANSITIONS: Registry[type[Transition]] = Registry("transition", entry_points=ENTRY_POINT_GROUP,
                                                    check=_check_transition)
register = TRANSITIONS.register
available = TRANSITIONS.available
get = TRANSITIONS.get


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
