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

For any cell (a model's ``step_views``, :mod:`stability.probes.steps`) h is its whole state s
(an LSTM's (h, c)): the direct partials with respect to the ``hidden_states`` the model returns
are mapped onto s by ``view.output_gradient`` (zero for the parts no output reads, the LSTM's c),
and δ_{t+1} J_{t+1} is a VJP of the step (``torch.func``, ``path="general"``); the closed form
above is the fast path where the view has it.

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
from .views import check_path, closed_view, has_closed_contract, label_views, linearize, model_views, select_direction

__all__ = ["gradient_flow", "grad_ratio", "step_norms"]


def gradient_flow(model, x: Tensor, loss_fn, y, h0: Tensor | None = None, *,
                  per_sample: bool = False, path: str = "auto") -> pd.DataFrame:
    """‖∂L/∂s_t‖ (total derivative) for t = 1..T, for the loss ``loss_fn(outputs, y)``.

    Args:
        model: a model with ``step_views(x, h0)`` (:class:`~stability.model.RecurrentNet`; s is
            its whole state, e.g. (h, c) for an LSTM) or the closed-form duck contract of
            :mod:`stability.probes.inputs`.
        x: inputs (T, B, input_size) or integer token ids (T, B); T >= 2.
        loss_fn: ``loss_fn(outputs, y) -> scalar tensor``; outputs are (T, B, output_size).
        y: the targets, passed through to ``loss_fn`` untouched.
        h0: initial state (B, n) or None (zeros).
        per_sample: False (default): one row per t with the norm of the whole (B, S) gradient;
            True: one row per (t, sample) with the norm of each sample's (S,) gradient.
        path: the backward recursion's products δ J: ``"closed"`` ((δ ⊙ φ') W), ``"general"``
            (VJPs of the model's step by ``torch.func``) or ``"auto"`` (default: closed where
            the view has the closed form).

    Returns:
        A DataFrame with columns ``t``, ``grad_norm`` (and ``sample`` when per_sample).
        ``df.attrs["grad_ratio"]`` holds ‖∂L/∂s_1‖ / ‖∂L/∂s_T‖ over the whole batch
        (also computed from the frame by :func:`grad_ratio`), ``df.attrs["loss"]`` the loss,
        ``path`` and ``state`` how it was computed. A model with several views (bidirectional):
        one curve per view with a ``direction`` column in front, t counted in that view's own
        time order (t = 1 is the backward direction's first step, i.e. the last input), and
        ``grad_ratio`` of the first view plus ``grad_ratio[<name>]`` of each other one.

    Model parameters get no ``.grad``; only the states are differentiated.
    """
    check_path(path)
    if not callable(loss_fn):
        raise TypeError(f"loss_fn must be callable as loss_fn(outputs, y) -> scalar, got {type(loss_fn).__name__}")
    views, direct, loss = _views_and_partials(model, x, loss_fn, y, h0, path)
    frames, paths, attrs = [], [], {}
    for i, view in enumerate(views):
        op = linearize(view, path)
        steps, batch = op.steps, op.batch
        with torch.no_grad():
            per = _backward_norms(view.output_gradient(direct).to(op.dtype), op)  # (T, B) float64
            total = scaled_norm(per, dim=1)                           # (T,): the whole (B, S) gradient
            norms = (per if per_sample else total).cpu()
            first, last = float(total[0]), float(total[-1])
        if per_sample:
            frames.append(pd.DataFrame({"t": torch.arange(1, steps + 1).repeat_interleave(batch).numpy(),
                                        "sample": torch.arange(batch).repeat(steps).numpy(),
                                        "grad_norm": norms.reshape(-1).numpy()}))
        else:
            frames.append(pd.DataFrame({"t": torch.arange(1, steps + 1).numpy(), "grad_norm": norms.numpy()}))
        attrs["grad_ratio" if i == 0 else f"grad_ratio[{view.name}]"] = _ratio(first, last)
        paths.append(op.path)
    attrs["loss"] = float(loss.detach())
    return label_views(frames, views, paths, attrs)


def _views_and_partials(model, x: Tensor, loss_fn, y, h0: Tensor | None, path: str):
    """(views, direct partials, loss). A model with the closed-form duck contract whose hidden
    states are its whole state (a unidirectional RecurrentNet) is not run twice: its one view
    comes from the states of the forward that gives the partials (unless path="general")."""
    check_sequence(x)
    if path != "general" and has_closed_contract(model):
        w = check_model(model)
        check_h0(h0, x.shape[1], w)
        direct, loss, states = _direct_partials(model, x, loss_fn, y, h0)
        if states.dim() == 3 and states.shape[2] == w.shape[0]:
            with torch.no_grad():
                deriv = model.activation_derivative(states).to(w.dtype)
            return [closed_view(w, states, deriv, h0)], direct, loss
        return model_views(model, x, h0), direct, loss
    views = model_views(model, x, h0)
    return views, *_direct_partials(model, x, loss_fn, y, h0)[:2]


def _direct_partials(model, x: Tensor, loss_fn, y, h0: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
    """(∂L/∂hidden_states direct, L, hidden_states detached): one autograd call on the states
    the model returns."""
    # an initial state that requires grad keeps the states in the graph even for a frozen model;
    # without one, a frozen model's parameters are made to require grad for this forward only
    start = None if h0 is None else h0.detach().clone().requires_grad_(True)
    frozen = [] if start is not None else [p for p in model.parameters() if not p.requires_grad] \
        if isinstance(model, torch.nn.Module) else []
    try:
        for p in frozen:
            p.requires_grad_(True)
        with torch.enable_grad():
            outputs, states = model(x, start)
            loss = loss_fn(outputs, y)
            if not isinstance(loss, Tensor) or loss.numel() != 1:
                raise ValueError(f"loss_fn(outputs, y) must return a scalar tensor, got "
                                 f"{type(loss).__name__} of shape {tuple(getattr(loss, 'shape', ()))}")
            if not loss.requires_grad:
                raise ValueError("loss_fn(outputs, y) does not depend on the outputs (no gradient reaches the states)")
            (direct,) = torch.autograd.grad(loss.reshape(()), states, allow_unused=True)
    finally:
        for p in frozen:
            p.requires_grad_(False)
    return (torch.zeros_like(states) if direct is None else direct), loss, states.detach()


def scaled_norm(x: Tensor, dim: int) -> Tensor:
    """The 2-norm along ``dim`` in float64, scaled by the largest entry first: a norm float64 can
    represent is never lost to squares that underflow (plain ‖·‖ of 1e-200 entries is 0)."""
    x = x.to(torch.float64)
    peak = x.abs().amax(dim=dim, keepdim=True)
    safe = torch.where(peak > 0, peak, torch.ones_like(peak))
    return (torch.linalg.vector_norm(x / safe, dim=dim, keepdim=True) * peak).squeeze(dim)


def _backward_norms(direct: Tensor, op) -> Tensor:
    """Per-sample ‖δ_t‖ (T, B) in float64 for δ_t = g_t + δ_{t+1} J_{t+1} (``op.vjp``).

    Each δ_t is kept as a float64 scale (its norm) times a unit vector in the model's dtype,
    so the product in the model's dtype always works on numbers of size ~‖J‖ and a gradient
    far below float32's range (≈1e-45) is still measured; the sum with g_t is in float64.
    Per sample: one sample's scale never flushes another's gradient to zero.
    """
    f64 = torch.float64
    out = torch.empty(direct.shape[:2], dtype=f64, device=direct.device)
    g_steps = direct.unbind(0)
    scale = unit = None
    for t in range(direct.shape[0] - 1, -1, -1):
        delta = g_steps[t].to(f64)
        if unit is not None:  # δ_t = g_t + s_{t+1} u_{t+1} J_{t+1}  (closed form: (u ⊙ φ'_{t+1}) W)
            delta = delta + scale.unsqueeze(1) * op.vjp_one(unit, t + 1).to(f64)
        scale = scaled_norm(delta, dim=1)
        out[t] = scale
        unit = (delta / torch.where(scale > 0, scale, torch.ones_like(scale)).unsqueeze(1)).to(op.dtype)
    return out


def _ratio(first: float, last: float) -> float:
    if last > 0:
        return first / last
    return math.nan if first == 0 else math.inf


def step_norms(df: pd.DataFrame, direction: str | None = None) -> pd.Series:
    """‖∂L/∂h_t‖ of the whole batch per t (index t, sorted) from a :func:`gradient_flow` frame:
    per-sample rows combined as √(Σ_b ‖∂L/∂h_t^{(b)}‖²) without squaring into underflow; of one
    ``direction`` of a frame of several views (default: the first)."""
    if not isinstance(df, pd.DataFrame) or not {"t", "grad_norm"} <= set(df.columns):
        raise TypeError(f"df must be a DataFrame from gradient_flow (columns 't', 'grad_norm'), "
                        f"got {type(df).__name__}")
    df = select_direction(df, direction)
    return df.groupby("t")["grad_norm"].apply(
        lambda v: float(scaled_norm(torch.tensor(v.to_numpy(dtype=float)), dim=0))).sort_index()


def grad_ratio(df: pd.DataFrame, direction: str | None = None) -> float:
    """‖∂L/∂h_1‖ / ‖∂L/∂h_T‖ from a :func:`gradient_flow` frame (the whole batch's norms).

    Per-sample rows are combined as √(Σ_b ‖∂L/∂h_t^{(b)}‖²), the norm of the whole gradient.
    A frame of several views: the ``direction`` given (default: the first).
    inf when the last gradient is 0 and the first is not, NaN when both are 0.
    """
    total = step_norms(df, direction)
    if len(total) < 2:
        raise ValueError(f"df holds {len(total)} step(s); the ratio needs at least 2")
    return _ratio(float(total.iloc[0]), float(total.iloc[-1]))
