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

import functools

import numpy as np
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
        h = phi(x_t + h @ w.mT)
        states.append(h)
    return torch.stack(states)


def _denormals_flushed() -> bool:
    """Whether this thread already flushes subnormal floats to zero (FTZ/DAZ)."""
    return float(torch.tensor(1e-40, dtype=torch.float32) * 2.0) == 0.0


def flushing_denormals(backward):
    """Run a BPTT backward with subnormal numbers flushed to zero, then restore the mode.

    Over long sequences δ_t decays geometrically and ends up below the normal range
    (1.2e-38 in float32, 2.2e-308 in float64), where every multiply takes a microcode
    assist: measured on this CPU, a T = 1000 backward ran 2-5× slower than with them
    flushed. Flushing changes values only below those bounds. It applies to the calling
    thread (PyTorch sets the mode per thread); a mode the caller set is left as it was.
    """

    @functools.wraps(backward)
    def wrapped(*args, **kwargs):
        if _denormals_flushed() or not torch.set_flush_denormal(True):
            return backward(*args, **kwargs)
        try:
            return backward(*args, **kwargs)
        finally:
            torch.set_flush_denormal(False)

    return wrapped


def _activation_backward_(grad: Tensor, h: Tensor, relu: bool) -> Tensor:
    """grad ⊙ φ'(a) from h = φ(a), in place in ``grad``: one pass (1 − h² for tanh, 1[h > 0] for relu)."""
    if relu:
        return torch.ops.aten.threshold_backward.grad_input(grad, h, 0.0, grad_input=grad)
    return torch.ops.aten.tanh_backward.grad_input(grad, h, grad_input=grad)


#: dtypes whose in-place tanh on the CPU goes through NumPy's vectorized ufunc (:func:`tanh_`)
_NUMPY_TANH_DTYPES = (torch.float32, torch.float64)


def tanh_(x: Tensor) -> Tensor:
    """tanh in place, for tensors outside autograd (the engines' forward passes).

    On the CPU, float32 and float64 go through ``numpy.tanh`` on the same memory: torch 2.13's
    CPU tanh is not vectorized (about 2 ns per element, 17.5 µs for a (64, 128) float32 state,
    against 2.8 µs for NumPy's SIMD tanh and 12.5 µs for the step's GEMM at 2 threads on an
    AMD EPYC), and it runs once per step. NumPy's float32 tanh is within 1.4 ulp of the
    correctly rounded value (torch's 0.5), its float64 tanh within 1 ulp (measured over 12 M
    values from 1e-6 to 30 in magnitude and the special values; docs/speed.md). Elsewhere
    (CUDA, other dtypes, a tensor that requires grad): ``torch.tanh_``.
    """
    if x.device.type == "cpu" and x.dtype in _NUMPY_TANH_DTYPES and not x.requires_grad:
        a = x.numpy()
        np.tanh(a, out=a)
        return x
    return x.tanh_()


def _run_forward(states: Tensor, h0: Tensor, w: Tensor, relu: bool) -> None:
    """In place: states[t] holds xw_t on entry and h_t = φ(xw_t + h_{t−1}Wᵀ) on exit."""
    wt = w.t()
    act_ = torch.relu_ if relu else tanh_
    h = h0
    for out in states.unbind(0):
        out.addmm_(h, wt)
        act_(out)
        h = out


class FusedRecurrence(torch.autograd.Function):
    """Hand-written BPTT for h_t = φ(xw_t + h_{t−1} Wᵀ); see the module docstring.

    Two passes over the (B, n) state per step each way: forward the GEMM accumulates into
    the state (which starts as xw_t) and φ is applied in place; backward one GEMM writes
    δ_{t+1}W and one fused pass adds ∂L/∂h_t and multiplies by φ' (computed from h_t).
    """

    @staticmethod
    def forward(ctx, xw: Tensor, h0: Tensor, w: Tensor, relu: bool) -> Tensor:
        states = xw.clone(memory_format=torch.contiguous_format)
        _run_forward(states, h0, w, relu)
        ctx.save_for_backward(states, h0, w)
        ctx.relu = relu
        return states

    @staticmethod
    @once_differentiable
    @flushing_denormals
    def backward(ctx, grad_states: Tensor):
        states, h0, w = ctx.saved_tensors
        steps, n = states.shape[0], w.shape[0]
        delta = grad_states.clone(memory_format=torch.contiguous_format)  # δ_t is built over ∂L/∂h_t in place
        h_steps, d_steps = states.unbind(0), delta.unbind(0)
        _activation_backward_(d_steps[-1], h_steps[-1], ctx.relu)
        for t in range(steps - 2, -1, -1):
            d_steps[t].addmm_(d_steps[t + 1], w)
            _activation_backward_(d_steps[t], h_steps[t], ctx.relu)
        grad_h0 = grad_w = None
        if ctx.needs_input_grad[1]:
            grad_h0 = d_steps[0] @ w
        if ctx.needs_input_grad[2]:
            grad_w = d_steps[0].mT @ h0
            if steps > 1:
                grad_w.addmm_(delta[1:].reshape(-1, n).mT, states[:-1].reshape(-1, n))
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


def native_bidirectional_recurrence(x: Tensor, h0: Tensor, weights: list[tuple[Tensor, Tensor, Tensor]],
                                    nonlinearity: str, training: bool = True) -> Tensor:
    """Both directions in one call of PyTorch's bidirectional RNN kernel (cuDNN on CUDA).

    ``h0``: (2, B, n), forward then backward; ``weights``: (W, W_in, b_in) per direction.
    Returns (T, B, 2n): [forward h_t ; backward h_t], the backward one run from t = T−1 down to 0.
    """
    fn = torch._VF.rnn_tanh if nonlinearity == "tanh" else torch._VF.rnn_relu
    params = []
    for w, w_ih, b_ih in weights:
        params += [w_ih, w, b_ih, torch.zeros_like(b_ih)]
    out, _ = fn(x, h0, params, True, 1, 0.0, training, True, False)
    return out


def resolve_engine(engine: str, device: torch.device) -> str:
    if engine == "auto":
        return "native" if device.type == "cuda" else "fused"
    return engine


class FusedNetwork(torch.autograd.Function):
    """Input map and recurrence in one hand-written BPTT (the model's CPU path).

        xw_t = W_in x_t + b_in (tokens: column x_t of W_in),  h_t = φ(xw_t + h_{t−1}Wᵀ).

    Forward writes xw straight into the state buffer and runs :func:`_run_forward` on it
    (no copy of xw). Backward: ∂L/∂h of ``chunk`` steps is copied at once into a small ring,
    then per step one in-place GEMM adds δ_{t+1}W to it (``addmm_``: no per-step copy of the
    bias, 2–7% of a training step) and one fused pass applies φ' (from h_t); the gradients of
    W, W_in and b_in are accumulated chunk by chunk from the ring, so the backward holds
    ``chunk`` steps of δ, not a (T, B, n) tensor.
    """

    @staticmethod
    def forward(ctx, x: Tensor, h0: Tensor, w: Tensor, w_in: Tensor, b_in: Tensor, relu: bool,
                chunk: int) -> Tensor:
        steps, batch = x.shape[0], x.shape[1]
        n = w.shape[0]
        tokens = not x.is_floating_point()
        states = torch.empty(steps, batch, n, dtype=w.dtype, device=w.device)
        flat = states.view(-1, n)
        if tokens:
            torch.index_select(w_in.t(), 0, x.reshape(-1), out=flat)
            flat.add_(b_in)
        else:
            torch.addmm(b_in, x.reshape(-1, x.shape[2]), w_in.t(), out=flat)
        _run_forward(states, h0, w, relu)
        ctx.save_for_backward(x, h0, w, w_in, states)
        ctx.relu, ctx.tokens, ctx.chunk = relu, tokens, chunk
        return states

    @staticmethod
    @once_differentiable
    @flushing_denormals
    def backward(ctx, grad_states: Tensor):
        x, h0, w, w_in, states = ctx.saved_tensors
        need = ctx.needs_input_grad
        steps, batch, n = states.shape
        relu, chunk = ctx.relu, max(1, min(ctx.chunk, steps))
        h_steps = states.unbind(0)
        grad_w = torch.zeros_like(w) if need[2] else None
        grad_w_in = torch.zeros_like(w_in) if need[3] else None
        grad_b_in = torch.zeros(n, dtype=w.dtype, device=w.device) if need[4] else None
        grad_x = torch.zeros_like(x) if need[0] else None
        rings = [states.new_empty(chunk, batch, n), states.new_empty(chunk, batch, n)]
        delta_next = None
        stop = steps
        for c, start in enumerate(range(((steps - 1) // chunk) * chunk, -1, -chunk)):
            ring = rings[c % 2][: stop - start]
            ring.copy_(grad_states[start:stop])  # ∂L/∂h of the chunk in one copy; δ_t is then built over it
            d_steps = ring.unbind(0)
            for t in range(stop - 1, start - 1, -1):
                d = d_steps[t - start]
                if delta_next is not None:
                    d.addmm_(delta_next, w)
                _activation_backward_(d, h_steps[t], relu)
                delta_next = d
            flat = ring.view(-1, n)
            if grad_w is not None:
                if start > 0:
                    grad_w.addmm_(flat.mT, states[start - 1:stop - 1].reshape(-1, n))
                else:
                    grad_w.addmm_(d_steps[0].mT, h0)
                    if stop > 1:
                        grad_w.addmm_(ring[1:].reshape(-1, n).mT, states[:stop - 1].reshape(-1, n))
            if ctx.tokens:
                if grad_w_in is not None:
                    grad_w_in.t().index_add_(0, x[start:stop].reshape(-1), flat)
            else:
                xs = x[start:stop].reshape(-1, x.shape[2])
                if grad_w_in is not None:
                    grad_w_in.addmm_(flat.mT, xs)
                if grad_x is not None:
                    grad_x[start:stop].view(-1, x.shape[2]).addmm_(flat, w_in)
            if grad_b_in is not None:
                grad_b_in.add_(flat.sum(0))
            stop = start
        grad_h0 = delta_next @ w if need[1] else None
        return grad_x, grad_h0, grad_w, grad_w_in, grad_b_in, None, None


class ReadSteps(torch.autograd.Function):
    """y_t = W_out h_t + b_out for every step; the backward works only on the steps the loss
    reads (those where ∂L/∂y_t ≠ 0, found by one scan of ∂L/∂y): ∂L/∂h is zero elsewhere."""

    @staticmethod
    def forward(ctx, states: Tensor, w_out: Tensor, b_out: Tensor) -> Tensor:
        n = states.shape[-1]
        out = torch.addmm(b_out, states.reshape(-1, n), w_out.t())
        ctx.save_for_backward(states, w_out)
        return out.view(*states.shape[:-1], -1)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out: Tensor):
        states, w_out = ctx.saved_tensors
        steps, n = states.shape[0], states.shape[-1]
        read = grad_out.reshape(steps, -1).ne(0).any(1).nonzero().flatten()
        if len(read) == steps:
            go, hs = grad_out, states
        else:
            go, hs = grad_out.index_select(0, read), states.index_select(0, read)
        go2 = go.reshape(-1, go.shape[-1])
        grad_states = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_states = torch.zeros_like(states) if len(read) < steps else torch.empty_like(states)
            if len(read):
                grad_states.index_copy_(0, read, (go2 @ w_out).view(len(read), *states.shape[1:]))
        if ctx.needs_input_grad[1]:
            grad_w = go2.mT @ hs.reshape(-1, n)
        if ctx.needs_input_grad[2]:
            grad_b = go2.sum(0)
        return grad_states, grad_w, grad_b


def fused_network(x: Tensor, h0: Tensor, w: Tensor, w_in: Tensor, b_in: Tensor, w_out: Tensor,
                  b_out: Tensor, nonlinearity: str, chunk: int = 64) -> tuple[Tensor, Tensor]:
    """(outputs, states) of a whole RecurrentNet: :class:`FusedNetwork` then :class:`ReadSteps`.

    The outputs are computed from the returned states in the autograd graph, so
    ``torch.autograd.grad(loss, states)`` gives the direct ∂L/∂h_t through the readout.
    """
    states = FusedNetwork.apply(x, h0, w, w_in, b_in, nonlinearity == "relu", chunk)
    return ReadSteps.apply(states, w_out, b_out), states
