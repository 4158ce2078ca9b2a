"""Recurrence engines: run h_t = φ(xw_t + W h_{t−1}) over a whole sequence for a given W.

All engines take the input projections ``xw`` (T, B, n) (input map and bias already
applied), the initial state ``h0`` (B, n) and the materialized ``w`` (n, n), and return
every state (T, B, n). Gradients reach xw, h0 and w.

- ``loop``: a plain Python loop of autograd ops: the definition the others are tested against.
- ``fused``: a hand-written BPTT (:class:`FusedRecurrence`): the forward writes every state
  into one preallocated tensor; the backward runs one GEMM per step for ∂L/∂h and computes
  ∂L/∂W as a single (n × TB) · (TB × n) GEMM over all steps. The CPU default.
- ``native``: PyTorch's own RNN kernel (``torch._VF.rnn_tanh`` / ``rnn_relu``; cuDNN on
  CUDA) fed the materialized W. The CUDA default.
"""
from __future__ import annotations

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

ENGINES = ("auto", "fused", "native", "loop")
NONLINEARITIES = ("tanh", "relu")


def activation(name: str):
    return torch.tanh if name == "tanh" else torch.relu


def derivative_from_output(h: Tensor, name: str) -> Tensor:
    """φ'(a) computed from h = φ(a): 1 − h² for tanh, 1[h > 0] for relu."""
    if name == "tanh":
        return 1.0 - h * h
    return (h > 0).to(h.dtype)


def loop_recurrence(xw: Tensor, h0: Tensor, w: Tensor, nonlinearity: str) -> Tensor:
    phi = activation(nonlinearity)
    h = h0
    states = []
    for x_t in xw.unbind(0):  # unbind, never xw[t]: indexing makes backward O(T²)
        h = phi(x_t + h @ w.T)
        states.append(h)
    return torch.stack(states)


class FusedRecurrence(torch.autograd.Function):
    """Hand-written BPTT for h_t = φ(xw_t + h_{t−1} Wᵀ); see the module docstring."""

    @staticmethod
    def forward(ctx, xw: Tensor, h0: Tensor, w: Tensor, relu: bool) -> Tensor:
        xw = xw.contiguous()
        states = torch.empty_like(xw)
        wt = w.t()
        h = h0
        act_ = torch.relu_ if relu else torch.tanh_
        for x_t, out in zip(xw.unbind(0), states.unbind(0)):
            torch.addmm(x_t, h, wt, out=out)
            act_(out)
            h = out
        ctx.save_for_backward(states, h0, w)
        ctx.relu = relu
        return states

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_states: Tensor):
        states, h0, w = ctx.saved_tensors
        steps = states.shape[0]
        n = w.shape[0]
        if ctx.relu:
            deriv = (states > 0).to(states.dtype)
        else:
            deriv = torch.mul(states, states).neg_().add_(1.0)
        grad_states = grad_states.contiguous()
        delta = torch.empty_like(states)
        torch.mul(grad_states[steps - 1], deriv[steps - 1], out=delta[steps - 1])
        buf = torch.empty_like(states[0])
        g_steps, d_steps, delta_steps = grad_states.unbind(0), deriv.unbind(0), delta.unbind(0)
        for t in range(steps - 2, -1, -1):
            torch.addmm(g_steps[t], delta_steps[t + 1], w, out=buf)
            torch.mul(buf, d_steps[t], out=delta_steps[t])
        grad_h0 = grad_w = None
        if ctx.needs_input_grad[1]:
            grad_h0 = delta_steps[0] @ w
        if ctx.needs_input_grad[2]:
            grad_w = delta_steps[0].T @ h0
            if steps > 1:
                grad_w.addmm_(delta[1:].reshape(-1, n).T, states[:-1].reshape(-1, n))
        return delta, grad_h0, grad_w, None


def fused_recurrence(xw: Tensor, h0: Tensor, w: Tensor, nonlinearity: str) -> Tensor:
    return FusedRecurrence.apply(xw, h0, w, nonlinearity == "relu")


def native_recurrence(x: Tensor, h0: Tensor, w: Tensor, nonlinearity: str,
                      w_ih: Tensor, b_ih: Tensor, training: bool = True) -> Tensor:
    """PyTorch's RNN kernel with the materialized W (cuDNN on CUDA); x is the raw input."""
    fn = torch._VF.rnn_tanh if nonlinearity == "tanh" else torch._VF.rnn_relu
    b_hh = torch.zeros_like(b_ih)
    out, _ = fn(x, h0.unsqueeze(0), [w_ih, w, b_ih, b_hh], True, 1, 0.0, training, False, False)
    return out


def resolve_engine(engine: str, device: torch.device) -> str:
    if engine == "auto":
        return "native" if device.type == "cuda" else "fused"
    return engine
