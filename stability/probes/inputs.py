"""Input checks shared by every probe, and the trajectory the Jacobian probes start from.

The duck-typed model contract (every probe in :mod:`stability.probes` uses it): the model
needs

- ``model.transition.matrix()`` → W, the (n, n) recurrent matrix (in the model's dtype and device);
- ``model.activation_derivative(hidden_states)`` → φ'(a_t), same shape as the states (T, B, n);
- ``model(x, h0)`` → ``(outputs, hidden_states)`` with hidden_states (T, B, n), h0 either None
  (zeros) or (B, n).

:class:`~stability.model.RecurrentNet` satisfies it for every registered transition; a linear
network (φ = identity, φ' ≡ 1) needs only those three members. The Jacobian, gradient-flow and
Lyapunov probes prefer ``model.step_views(x, h0)`` (:mod:`stability.probes.steps`) where a model
has it, and read a model with only this contract as one closed-form view
(:mod:`stability.probes.views`).
"""
from __future__ import annotations

import torch
from torch import Tensor

from ..checks import check_size as check_int

__all__ = ["check_int", "check_model", "check_sequence", "check_h0", "trajectory"]


def check_model(model, name: str = "model") -> Tensor:
    """Check the duck-typed model contract; return W = model.transition.matrix() (detached).

    Raises a TypeError naming what is missing.
    """
    transition = getattr(model, "transition", None)
    missing = []
    if transition is None or not callable(getattr(transition, "matrix", None)):
        missing.append(".transition.matrix()")
    if not callable(getattr(model, "activation_derivative", None)):
        missing.append(".activation_derivative(hidden_states)")
    if not callable(model):
        missing.append("__call__(x, h0) -> (outputs, hidden_states)")
    if missing:
        raise TypeError(f"{name} must be a recurrent model (e.g. stability.RecurrentNet) with "
                        f".transition.matrix(), .activation_derivative(hidden_states) and "
                        f"model(x, h0) -> (outputs, hidden_states); {type(model).__name__} lacks "
                        f"{', '.join(missing)}")
    with torch.no_grad():
        w = transition.matrix()
    if not isinstance(w, Tensor) or w.dim() != 2 or w.shape[0] != w.shape[1] or w.shape[0] < 1:
        raise TypeError(f"{name}.transition.matrix() must return a square (n, n) tensor, got "
                        f"{type(w).__name__} of shape {tuple(getattr(w, 'shape', ()))}")
    if not w.is_floating_point():
        raise TypeError(f"{name}.transition.matrix() must be floating point, got {w.dtype}")
    return w.detach()


def check_sequence(x, name: str = "x", min_steps: int = 2) -> tuple[int, int]:
    """Check an input sequence: float (T, B, I) or integer token ids (T, B); return (T, B)."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape (T, B, input_size) or integer "
                        f"token ids (T, B), got {type(x).__name__}")
    if x.is_floating_point():
        if x.dim() != 3:
            raise ValueError(f"{name} must have shape (T, B, input_size), got {tuple(x.shape)}")
    elif x.dtype in (torch.int64, torch.int32):
        if x.dim() != 2:
            raise ValueError(f"{name} holds token ids and must have shape (T, B), got {tuple(x.shape)}")
    else:
        raise TypeError(f"{name} must be floating point (T, B, input_size) or int64/int32 token ids "
                        f"(T, B), got dtype {x.dtype}")
    steps, batch = int(x.shape[0]), int(x.shape[1])
    if steps < min_steps:
        raise ValueError(f"{name} has T={steps} steps; allowed: T >= {min_steps} "
                         f"(a probe along a trajectory needs at least {min_steps} states)")
    if batch < 1:
        raise ValueError(f"{name} has batch size B={batch}; allowed: B >= 1")
    return steps, batch


def check_h0(h0, batch: int, w: Tensor, name: str = "h0") -> None:
    if h0 is None:
        return
    n = w.shape[0]
    if not isinstance(h0, Tensor):
        raise TypeError(f"{name} must be None or a tensor of shape (B={batch}, n={n}), got {type(h0).__name__}")
    if tuple(h0.shape) != (batch, n):
        raise ValueError(f"{name} must have shape (B={batch}, n={n}), got {tuple(h0.shape)}")


def trajectory(model, x: Tensor, h0: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """(W, hidden_states, φ'(a_t)) for the model's trajectory on x, all detached (no grad).

    Validates the model, x and h0 first (see the module docstring for the contract).
    """
    w = check_model(model)
    steps, batch = check_sequence(x)
    check_h0(h0, batch, w)
    with torch.no_grad():
        out = model(x, h0)
        if not (isinstance(out, (tuple, list)) and len(out) == 2):
            raise TypeError(f"model(x, h0) must return (outputs, hidden_states), got {type(out).__name__}")
        states = out[1]
        n = w.shape[0]
        if not isinstance(states, Tensor) or tuple(states.shape) != (steps, batch, n):
            raise TypeError(f"model(x, h0) returned hidden_states of shape "
                            f"{tuple(getattr(states, 'shape', ()))}; expected (T, B, n) = {(steps, batch, n)}")
        deriv = model.activation_derivative(states)
        if not isinstance(deriv, Tensor) or deriv.shape != states.shape:
            raise TypeError(f"model.activation_derivative(hidden_states) must return a tensor of shape "
                            f"{tuple(states.shape)}, got {tuple(getattr(deriv, 'shape', ()))}")
    return w, states.detach(), deriv.detach().to(w.dtype)
