"""The linearized steps of a :class:`~stability.probes.steps.StepView`: products with J_t.

Every probe of the dynamics (Jacobian decay, gradient flow, Lyapunov spectrum) touches the
one-step Jacobians J_t = ∂s_t/∂s_{t−1} only through two products with a batch of directions
held as rows, ``rows`` (B, k, S) (k directions per sample; samples never interact):

- ``vjp(rows, t)``: rows · J_t, each row r ↦ rᵀ J_t (vector-Jacobian product; backward in time);
- ``jvp(rows, t)``: each row r ↦ (J_t r)ᵀ (Jacobian-vector product; forward in time);
- ``vjp_one(vectors, t)``: the VJP of one direction per sample, (B, S) (gradient flow).

Two operators provide them:

- :class:`ClosedSteps` for J_t = diag(φ'_t) W: a column scaling and one (B·k × S)·(S × S)
  matrix product, written into ``out=`` buffers (the probes' fast path);
- :class:`GeneralSteps` for any differentiable ``step``: ``torch.func.vjp`` / ``torch.func.jvp``
  of ``step(·, u_t)`` at s_{t−1} (one batched call per step, the batch's samples at once),
  with ``torch.func.vmap`` over the k directions.

Both compute in their ``dtype``; ``out`` (same shape as ``rows``, contiguous) may be ``rows``
itself. The probes rescale the carried directions themselves (see each probe).
"""
from __future__ import annotations

import torch
from torch import Tensor

from .steps import StepView

__all__ = ["ClosedSteps", "GeneralSteps"]


class ClosedSteps:
    """J_t = diag(d_t) W from ``view.closed_form`` = (W, d), in ``dtype`` (default W's)."""

    path = "closed"

    def __init__(self, w: Tensor, deriv: Tensor, dtype: torch.dtype | None = None):
        dtype = w.dtype if dtype is None else dtype
        self.w = w.to(dtype)
        self.wt = self.w.t()
        self.deriv = deriv.to(dtype)
        self.rows_deriv = self.deriv.unsqueeze(2).unbind(0)  # (B, 1, S) per step: scales every row
        self.steps, self.batch, self.size = self.deriv.shape
        self.dtype, self.device = dtype, self.w.device
        self._shape = None  # the scratch buffer's shape, its flat view, made once per shape

    def _scratch_for(self, rows: Tensor) -> None:
        if rows.shape != self._shape:
            batch, k, size = self._shape = rows.shape
            self._flat = (batch * k, size)
            self._scratch = torch.empty(self._shape, dtype=self.dtype, device=self.device)
            self._scratch_flat = self._scratch.view(self._flat)

    def vjp(self, rows: Tensor, t: int, out: Tensor | None = None) -> Tensor:
        """rows · J_t = (rows ⊙ d_t) W: a column scaling, then one (B·k × S)·(S × S) product."""
        if out is None:
            return torch.matmul(rows * self.rows_deriv[t], self.w)
        self._scratch_for(rows)
        torch.mul(rows, self.rows_deriv[t], out=self._scratch)
        torch.mm(self._scratch_flat, self.w, out=out.view(self._flat))
        return out

    def vjp_one(self, vectors: Tensor, t: int) -> Tensor:
        """One direction per sample, (B, S): vectors · J_t = (vectors ⊙ d_t) W."""
        return (vectors * self.deriv[t]) @ self.w

    def jvp(self, rows: Tensor, t: int, out: Tensor | None = None) -> Tensor:
        """Each row r ↦ (J_t r)ᵀ = (r Wᵀ) ⊙ d_t: one (B·k × S)·(S × S) product, then a scaling."""
        if out is None:
            return torch.matmul(rows, self.wt).mul_(self.rows_deriv[t])
        self._scratch_for(rows)
        torch.mm(rows.view(self._flat), self.wt, out=self._scratch_flat)
        return torch.mul(self._scratch, self.rows_deriv[t], out=out)


class GeneralSteps:
    """Products with J_t = ∂ step(s, u_t)/∂s at s = s_{t−1} by ``torch.func``, for any view.

    The step runs in the view's dtype; directions given in another dtype (the Lyapunov
    probe's float64) are cast to it and the result back.
    """

    path = "general"

    def __init__(self, view: StepView):
        self.step, self.inputs, self.initial, self.states = view.step, view.inputs, view.initial, view.states
        self.steps, self.batch, self.size = view.states.shape
        self.dtype, self.device = view.states.dtype, view.states.device

    def _linearize(self, t: int):
        u = self.inputs[t]
        # a copy, not a view of all the states: forward AD gives a view's tangent its base's whole size
        previous = (self.initial if t == 0 else self.states[t - 1]).clone()
        return (lambda s: self.step(s, u)), previous

    @staticmethod
    def _finish(result: Tensor, rows: Tensor, out: Tensor | None) -> Tensor:
        if out is None:
            return result.to(rows.dtype)
        return out.copy_(result)

    def vjp(self, rows: Tensor, t: int, out: Tensor | None = None) -> Tensor:
        """rows · J_t: one VJP of the batched step at s_{t−1}, vmapped over the k rows."""
        step_at, previous = self._linearize(t)
        _, pull = torch.func.vjp(step_at, previous)
        result = torch.func.vmap(lambda r: pull(r)[0], in_dims=1, out_dims=1)(rows.to(self.dtype))
        return self._finish(result, rows, out)

    def vjp_one(self, vectors: Tensor, t: int) -> Tensor:
        """One direction per sample, (B, S): vectors · J_t, one VJP of the batched step (no vmap)."""
        step_at, previous = self._linearize(t)
        return torch.func.vjp(step_at, previous)[1](vectors.to(self.dtype))[0].to(vectors.dtype)

    def jvp(self, rows: Tensor, t: int, out: Tensor | None = None) -> Tensor:
        """Each row r ↦ (J_t r)ᵀ: one JVP of the batched step at s_{t−1}, vmapped over the k rows."""
        step_at, previous = self._linearize(t)

        def push(r: Tensor) -> Tensor:
            return torch.func.jvp(step_at, (previous,), (r,))[1]

        result = torch.func.vmap(push, in_dims=1, out_dims=1)(rows.to(self.dtype))
        return self._finish(result, rows, out)
