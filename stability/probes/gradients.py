"""Gradient flow through time: ‖∂L/∂h_t‖ for every step t of a task loss.

For a loss L(y_1..y_T) on the outputs y_t = W_out h_t + c (any steps: the last one only, or
every one), the gradient with respect to a state is the *total* derivative, through the
readout of that step and through every later state:

    δ_T = ∂L/∂h_T |direct,
    δ_t = ∂L/∂h_t |direct + J_{t+1}ᵀ δ_{t+1},   J_{t+1} = ∂h_{t+1}/∂h_t = diag(φ'(a_{t+1})) W.

The direct partials come from one autograd call on the hidden-state tensor the model returns
(everything downstream of it is the readout and the loss); the backward recursion is then one
(B × n)·(n × n) product per step. This is exactly what autograd gives for a state kept as a
leaf of the graph (tested against that). Each δ_t is carried as a float64 norm times a unit
vector, so a float32 model's norms are measured down to float64's range, not flushed to 0 below
float32's (≈1e-45; tested against the same model in float64).

The reported ratio ‖∂L/∂h_1‖ / ‖∂L/∂h_T‖ is the Spectral-RNN paper's vanishing-gradient figure:
≪ 1 when gradients vanish on the way back to the first step, ≫ 1 when they explode.
Steps are numbered t = 1..T (h_t = ``hidden_states[t − 1]``; h_0 is the initial state).
"""
from __future__ import annotations

import math

import pandas as pd
import torch
from torch import Tensor

from .inputs import check_h0, check_model, check_sequence

__all__ = ["gradient_flow", "grad_ratio", "step_norms"]


def gradient_flow(model, x: Tensor, loss_fn, y, h0: Tensor | None = None, *,
                  per_sample: bool = False) -> pd.DataFrame:
    """‖∂L/∂h_t‖ (total derivative) for t = 1..T, for the loss ``loss_fn(outputs, y)``.

    Args:
        model: a :class:`~stability.model.RecurrentNet` or any model with the duck-typed
            contract of :mod:`stability.probes.inputs`.
        x: inputs (T, B, input_size) or integer token ids (T, B); T >= 2.
        loss_fn: ``loss_fn(outputs, y) -> scalar tensor``; outputs are (T, B, output_size).
        y: the targets, passed through to ``loss_fn`` untouched.
        h0: initial state (B, n) or None (zeros).
        per_sample: False (default): one row per t with the norm of the whole (B, n) gradient;
            True: one row per (t, sample) with the norm of each sample's (n,) gradient.

    Returns:
        A DataFrame with columns ``t``, ``grad_norm`` (and ``sample`` when per_sample).
        ``df.attrs["grad_ratio"]`` holds ‖∂L/∂h_1‖ / ‖∂L/∂h_T‖ over the whole batch
        (also computed from the frame by :func:`grad_ratio`), ``df.attrs["loss"]`` the loss.

    Model parameters get no ``.grad``; only the states are differentiated.
    """
    w = check_model(model)
    steps, batch = check_sequence(x)
    check_h0(h0, batch, w)
    if not callable(loss_fn):
        raise TypeError(f"loss_fn must be callable as loss_fn(outputs, y) -> scalar, got {type(loss_fn).__name__}")
    n = w.shape[0]
    # an initial state that requires grad keeps the states in the graph even for a frozen model
    start = (torch.zeros(batch, n, dtype=w.dtype, device=w.device) if h0 is None
             else h0.detach().clone()).requires_grad_(True)
    with torch.enable_grad():
        outputs, states = model(x, start)
        loss = loss_fn(outputs, y)
        if not isinstance(loss, Tensor) or loss.numel() != 1:
            raise ValueError(f"loss_fn(outputs, y) must return a scalar tensor, got "
                             f"{type(loss).__name__} of shape {tuple(getattr(loss, 'shape', ()))}")
        if not loss.requires_grad:
            raise ValueError("loss_fn(outputs, y) does not depend on the outputs (no gradient reaches the states)")
        (direct,) = torch.autograd.grad(loss.reshape(()), states, allow_unused=True)
    if direct is None:
        direct = torch.zeros_like(states)
    with torch.no_grad():
        deriv = model.activation_derivative(states.detach()).to(w.dtype)
        per = _backward_norms(direct.to(w.dtype), deriv, w)      # (T, B) float64
        total = scaled_norm(per, dim=1)                           # (T,): the whole (B, n) gradient
        norms = (per if per_sample else total).cpu()
        first, last = float(total[0]), float(total[-1])
    if per_sample:
        df = pd.DataFrame({"t": torch.arange(1, steps + 1).repeat_interleave(batch).numpy(),
                           "sample": torch.arange(batch).repeat(steps).numpy(),
                           "grad_norm": norms.reshape(-1).numpy()})
    else:
        df = pd.DataFrame({"t": torch.arange(1, steps + 1).numpy(), "grad_norm": norms.numpy()})
    df.attrs["grad_ratio"] = _ratio(first, last)
    df.attrs["loss"] = float(loss.detach())
    return df


def scaled_norm(x: Tensor, dim: int) -> Tensor:
    """The 2-norm along ``dim`` in float64, scaled by the largest entry first: a norm float64 can
    represent is never lost to squares that underflow (plain ‖·‖ of 1e-200 entries is 0)."""
    x = x.to(torch.float64)
    peak = x.abs().amax(dim=dim, keepdim=True)
    safe = torch.where(peak > 0, peak, torch.ones_like(peak))
    return (torch.linalg.vector_norm(x / safe, dim=dim, keepdim=True) * peak).squeeze(dim)


def _backward_norms(direct: Tensor, deriv: Tensor, w: Tensor) -> Tensor:
    """Per-sample ‖δ_t‖ (T, B) in float64 for δ_t = g_t + (δ_{t+1} ⊙ φ'_{t+1}) W.

    Each δ_t is kept as a float64 scale (its norm) times a unit vector in the model's dtype,
    so the product in the model's dtype always works on numbers of size ~‖J‖ and a gradient
    far below float32's range (≈1e-45) is still measured; the sum with g_t is in float64.
    Per sample: one sample's scale never flushes another's gradient to zero.
    """
    f64 = torch.float64
    out = torch.empty(direct.shape[:2], dtype=f64, device=direct.device)
    d_steps, g_steps = deriv.unbind(0), direct.unbind(0)
    scale = unit = None
    for t in range(direct.shape[0] - 1, -1, -1):
        delta = g_steps[t].to(f64)
        if unit is not None:  # δ_t = g_t + s_{t+1} (u_{t+1} ⊙ φ'_{t+1}) W
            delta = delta + scale.unsqueeze(1) * ((unit * d_steps[t + 1]) @ w).to(f64)
        scale = scaled_norm(delta, dim=1)
        out[t] = scale
        unit = (delta / torch.where(scale > 0, scale, torch.ones_like(scale)).unsqueeze(1)).to(w.dtype)
    return out


def _ratio(first: float, last: float) -> float:
    if last > 0:
        return first / last
    return math.nan if first == 0 else math.inf


def step_norms(df: pd.DataFrame) -> pd.Series:
    """‖∂L/∂h_t‖ of the whole batch per t (index t, sorted) from a :func:`gradient_flow` frame:
    per-sample rows combined as √(Σ_b ‖∂L/∂h_t^{(b)}‖²) without squaring into underflow."""
    if not isinstance(df, pd.DataFrame) or not {"t", "grad_norm"} <= set(df.columns):
        raise TypeError(f"df must be a DataFrame from gradient_flow (columns 't', 'grad_norm'), "
                        f"got {type(df).__name__}")
    return df.groupby("t")["grad_norm"].apply(
        lambda v: float(scaled_norm(torch.tensor(v.to_numpy(dtype=float)), dim=0))).sort_index()


def grad_ratio(df: pd.DataFrame) -> float:
    """‖∂L/∂h_1‖ / ‖∂L/∂h_T‖ from a :func:`gradient_flow` frame (the whole batch's norms).

    Per-sample rows are combined as √(Σ_b ‖∂L/∂h_t^{(b)}‖²), the norm of the whole gradient.
    inf when the last gradient is 0 and the first is not, NaN when both are 0.
    """
    total = step_norms(df)
    if len(total) < 2:
        raise ValueError(f"df holds {len(total)} step(s); the ratio needs at least 2")
    return _ratio(float(total.iloc[0]), float(total.iloc[-1]))
