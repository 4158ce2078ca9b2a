"""A recurrent model seen one step at a time: the contract of the general Jacobian path.

Every probe of the hidden-state dynamics (Jacobian decay, gradient flow, Lyapunov spectrum)
needs the one-step Jacobians J_t = ∂s_t/∂s_{t−1} of a recurrence s_t = f(s_{t−1}, u_t) over
the model's *whole* state s (for an LSTM the pair (h, c), concatenated). A model exposes them
through ``model.step_views(x, h0=None) -> list[StepView]``: one view per recurrence that runs
over time (one for a unidirectional model, stacked layers included in one state; one per
direction for a bidirectional one).

A view whose Jacobians have the closed form J_t = diag(φ'(a_t)) W carries ``closed_form``
(W, φ') and the probes take the fast path; any other view is probed through
vector-Jacobian / Jacobian-vector products of ``step`` (``torch.func``), which must agree with
the closed form wherever both exist.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from torch import Tensor

__all__ = ["StepView", "no_step"]


def no_step(s: Tensor, u: Tensor) -> Tensor:
    """The ``step`` of a view known only by its closed form (a model with ``.transition.matrix()`` and
    ``.activation_derivative`` but no ``step_views``): there is no step to differentiate."""
    raise TypeError("this view has no step to differentiate, only its closed form J_t = diag(φ'_t) W")


@dataclass(frozen=True)
class StepView:
    """One recurrence of a model, s_t = step(s_{t−1}, u_t), along one input sequence.

    Attributes:
        name: what the view is, as probe output labels it: ``"forward"``, ``"backward"``,
            ``"layer 2 backward"``.
        layout: the parts of the state in order with their sizes, e.g. ``(("h", 6), ("c", 6))``;
            S = the sum of the sizes.
        step: ``step(s, u) -> s'`` for (B, S) states and (B, U) inputs; differentiable in both;
            the rows of a batch never interact (so a batched VJP is a per-sample VJP).
        inputs: (T, B, U): u_t in this view's own time order (reversed for a backward direction).
        initial: (B, S): the state before the first step.
        states: (T, B, S), detached: s_0..s_{T−1} as ``step`` produces them from ``initial``.
        output_gradient: maps the gradient of a loss with respect to the ``hidden_states``
            the model returns, (T, B, H), to this view's direct partials ∂L/∂s_t (T, B, S),
            in this view's time order (zeros for the parts of the state no output reads,
            e.g. the LSTM's c).
        closed_form: ``(W, deriv)`` with W (S, S) and deriv (T, B, S) when
            J_t = diag(deriv_t) W exactly, else None.
    """

    name: str
    layout: tuple[tuple[str, int], ...]
    step: Callable[[Tensor, Tensor], Tensor]
    inputs: Tensor
    initial: Tensor
    states: Tensor
    output_gradient: Callable[[Tensor], Tensor]
    closed_form: tuple[Tensor, Tensor] | None = None

    @property
    def size(self) -> int:
        """S, the size of the whole state."""
        return sum(size for _, size in self.layout)

    def describe(self) -> str:
        """The state in words, e.g. ``"(h, c), S = 12"``."""
        parts = ", ".join(part for part, _ in self.layout)
        return f"({parts}), S = {self.size}" if len(self.layout) > 1 else f"{parts}, S = {self.size}"
