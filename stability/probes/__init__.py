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
described in :mod:`stability.probes.inputs` (``.transition.matrix()``,
``.activation_derivative(hidden_states)``, ``model(x, h0) -> (outputs, hidden_states)``),
in the model's dtype and on its device. Probes never write files.

The registry (:mod:`.registry`: :func:`available`, :func:`get`, :func:`register`, :func:`measure`)
lets the CLI, the training loop and the suite runner call probes by name and store their rows.
"""
from __future__ import annotations

from typing import Callable

from .gradients import grad_ratio, gradient_flow, step_norms
from .jacobian import half_life, jacobian_decay
from .lyapunov import lyapunov_spectrum, top_exponent
from .spectrum import spectrum, spectrum_summary

from .registry import PROBES, Probe, get_probe, measure, register, scalar_rows


def available() -> list[str]:
    """Names of the registered probes, sorted."""
    return PROBES.available()


def get(name: str) -> Callable:
    """The probe function registered under ``name`` (``"gradients"`` is an alias of ``"gradient_flow"``)."""
    return get_probe(name).fn


# -- the built-in probes and their stored rows (metric names: docs/contracts.md) --------
def _jacobian_rows(df, split: str) -> list:
    mean = df.groupby("gap")[["spectral", "frobenius"]].mean()
    rows = [(int(g), split, "jacobian_spectral", float(r.spectral)) for g, r in mean.iterrows()]
    rows += [(int(g), split, "jacobian_frobenius", float(r.frobenius)) for g, r in mean.iterrows()]
    return rows + scalar_rows(half_life(df), JACOBIAN_SCALARS, split)


def _spectrum_rows(df, split: str) -> list:
    rows = [(int(i), split, "singular_value", float(v)) for i, v in zip(df["index"], df["singular_value"])]
    return rows + scalar_rows(df.attrs, SPECTRUM_SCALARS, split)


def _lyapunov_rows(df, split: str) -> list:
    rows = [(int(i), split, "lyapunov", float(v)) for i, v in df.groupby("index")["exponent"].mean().items()]
    return rows + [(0, split, "lyapunov_max", float(top_exponent(df)))]


def _gradient_rows(df, split: str) -> list:
    rows = [(int(t), split, "grad_norm", float(v)) for t, v in step_norms(df).items()]
    return rows + [(0, split, "grad_ratio", float(grad_ratio(df)))]


JACOBIAN_SCALARS = ("half_life", "decay_rate", "max_gap", "fit_min_gap", "fit_max_gap")
SPECTRUM_SCALARS = ("sigma_min", "sigma_max", "condition", "spectral_radius", "orthogonality_error")

register("jacobian", inputs=("x",), rows=_jacobian_rows, scalars=JACOBIAN_SCALARS,
         series=("jacobian_spectral", "jacobian_frobenius"))(jacobian_decay)
register("spectrum", rows=_spectrum_rows, scalars=SPECTRUM_SCALARS, series=("singular_value",))(spectrum)
register("lyapunov", inputs=("x",), rows=_lyapunov_rows, scalars=("lyapunov_max",),
         series=("lyapunov",))(lyapunov_spectrum)
register("gradient_flow", inputs=("x", "loss_fn", "y"), rows=_gradient_rows, scalars=("grad_ratio",),
         series=("grad_norm",))(gradient_flow)

from .study import init_study, options_label  # noqa: E402  (uses the registry above)

__all__ = ["available", "get", "register", "measure", "get_probe", "Probe", "PROBES", "jacobian_decay", "half_life", "gradient_flow", "grad_ratio",
           "lyapunov_spectrum", "top_exponent", "spectrum", "spectrum_summary", "init_study",
           "options_label"]
