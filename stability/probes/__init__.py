"""Probes: measurements of gradient stability on a recurrent model, each a tidy DataFrame.

- ``jacobian``: :func:`jacobian_decay` — ‖∂h_T/∂h_{T−g}‖ (spectral and Frobenius) for every gap
  g, in one rescaled backward sweep of batched matrix products; :func:`half_life` fits a decay
  rate per step and a half-life in steps.
- ``gradient_flow``: :func:`gradient_flow` — ‖∂L/∂h_t‖ (total derivative) for every t of a task
  loss, and the ratio ‖∂L/∂h_1‖ / ‖∂L/∂h_T‖ (:func:`grad_ratio`).
- ``lyapunov``: :func:`lyapunov_spectrum` — the k largest Lyapunov exponents by the QR
  (Benettin) method in float64; :func:`top_exponent`.
- ``spectrum``: :func:`spectrum` — singular values of W, with condition number, spectral radius
  and orthogonality error (:func:`spectrum_summary`).
- :func:`init_study` — any probe over transitions × options × seeds at initialization.

Every probe takes the model first and works on any model with the duck-typed contract
described in :mod:`stability.probes.jacobian` (``.transition.matrix()``,
``.activation_derivative(hidden_states)``, ``model(x, h0) -> (outputs, hidden_states)``),
in the model's dtype and on its device. Probes never write files.

The registry (:func:`available`, :func:`get`, :func:`register`) lets the CLI and the suite
runner call probes by name.
"""
from __future__ import annotations

from typing import Callable

from .gradients import grad_ratio, gradient_flow
from .jacobian import half_life, jacobian_decay
from .lyapunov import lyapunov_spectrum, top_exponent
from .spectrum import spectrum, spectrum_summary

_REGISTRY: dict[str, Callable] = {}
#: other names accepted by :func:`get` (the CLI and suite runner say "gradients")
ALIASES = {"gradients": "gradient_flow"}


def register(name: str) -> Callable[[Callable], Callable]:
    """Decorator adding a probe function ``fn(model, ...)`` to the registry under ``name``."""
    if not isinstance(name, str) or not name:
        raise TypeError(f"a probe name must be a non-empty string, got {name!r}")

    def decorate(fn: Callable) -> Callable:
        if not callable(fn):
            raise TypeError(f"@register({name!r}) needs a callable, got {fn!r}")
        _REGISTRY[name] = fn
        return fn

    return decorate


def available() -> list[str]:
    """Names of the registered probes, sorted."""
    return sorted(_REGISTRY)


def get(name: str) -> Callable:
    """The probe function registered under ``name`` (``"gradients"`` is an alias of ``"gradient_flow"``)."""
    if not isinstance(name, str):
        raise TypeError(f"probe name must be a string, got {type(name).__name__}")
    key = ALIASES.get(name, name)
    if key not in _REGISTRY:
        raise ValueError(f"unknown probe {name!r}; available: {', '.join(available())}")
    return _REGISTRY[key]


register("jacobian")(jacobian_decay)
register("gradient_flow")(gradient_flow)
register("lyapunov")(lyapunov_spectrum)
register("spectrum")(spectrum)

from .study import init_study, options_label  # noqa: E402  (uses the registry above)

__all__ = ["available", "get", "register", "jacobian_decay", "half_life", "gradient_flow", "grad_ratio",
           "lyapunov_spectrum", "top_exponent", "spectrum", "spectrum_summary", "init_study",
           "options_label"]
