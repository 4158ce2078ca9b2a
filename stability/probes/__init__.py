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

Every probe takes the model first. The Jacobian, gradient-flow and Lyapunov probes work on any
model that exposes its steps, ``model.step_views(x, h0) -> list[StepView]``
(:mod:`stability.probes.steps`; RecurrentNet, gated cells), or has the closed-form duck contract
of :mod:`stability.probes.inputs` (``.transition.matrix()``,
``.activation_derivative(hidden_states)``, ``model(x, h0) -> (outputs, hidden_states)``); their
``path=`` option (``"auto"``, ``"closed"``, ``"general"``) picks matrix products with
J_t = diag(φ'_t) W or ``torch.func`` VJPs / JVPs of the step (:mod:`stability.probes.views`).
``spectrum`` needs a transition matrix W. Probes run in the model's dtype and on its device,
and never write files.

The registry (:mod:`.registry`: :func:`available`, :func:`get`, :func:`register`, :func:`measure`)
lets the CLI, the training loop and the suite runner call probes by name and store their rows.
"""
from __future__ import annotations

from typing import Callable

from .gradients import grad_ratio, gradient_flow, step_norms
from .jacobian import half_life, jacobian_decay
from .lyapunov import lyapunov_spectrum, top_exponent
from .spectrum import spectrum, spectrum_summary
from .steps import StepView
from .views import PATHS, per_direction

from .registry import PROBES, Probe, get_probe, measure, register, scalar_rows


def available() -> list[str]:
    """Names of the registered probes, sorted."""
    return PROBES.available()


def get(name: str) -> Callable:
    """The probe function registered under ``name`` (``"gradients"`` is an alias of ``"gradient_flow"``)."""
    return get_probe(name).fn


# -- the built-in probes and their stored rows (metric names: docs/contracts.md) --------
# A frame of several views (a bidirectional model) stores the first view's rows under these
# names and every other view's with its name appended in brackets, e.g. half_life[backward]
# (views.per_direction; docs/probe-accuracy.md).
def _jacobian_rows(df, split: str) -> list:
    rows = []
    for suffix, part in per_direction(df):
        mean = part.groupby("gap")[["spectral", "frobenius"]].mean()
        rows += [(int(g), split, f"jacobian_spectral{suffix}", float(r.spectral)) for g, r in mean.iterrows()]
        rows += [(int(g), split, f"jacobian_frobenius{suffix}", float(r.frobenius)) for g, r in mean.iterrows()]
        fit = half_life(part)
        rows += scalar_rows({f"{k}{suffix}": v for k, v in fit.items()},
                            tuple(f"{k}{suffix}" for k in JACOBIAN_SCALARS), split)
    return rows


def _spectrum_rows(df, split: str) -> list:
    rows = [(int(i), split, "singular_value", float(v)) for i, v in zip(df["index"], df["singular_value"])]
    return rows + scalar_rows(df.attrs, SPECTRUM_SCALARS, split)


def _lyapunov_rows(df, split: str) -> list:
    rows = []
    for suffix, part in per_direction(df):
        rows += [(int(i), split, f"lyapunov{suffix}", float(v))
                 for i, v in part.groupby("index")["exponent"].mean().items()]
        rows.append((0, split, f"lyapunov_max{suffix}", float(top_exponent(part.drop(columns="direction",
                                                                                     errors="ignore")))))
    return rows


def _gradient_rows(df, split: str) -> list:
    rows = []
    for suffix, part in per_direction(df):
        part = part.drop(columns="direction", errors="ignore")
        rows += [(int(t), split, f"grad_norm{suffix}", float(v)) for t, v in step_norms(part).items()]
        rows.append((0, split, f"grad_ratio{suffix}", float(grad_ratio(part))))
    return rows


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
           "options_label", "StepView", "PATHS"]
