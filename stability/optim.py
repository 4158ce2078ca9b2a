"""The optimizer of the training loop, its learning-rate decay, and the per-step transition hooks.

    opt = make_optimizer(model, "adam", lr=1e-3, transition_lr=1e-4)
    every = check_lr_decay(0.99, "epoch", task, batch_size)     # updates per decay (None: none)
    for step in range(1, steps + 1):
        ...                                                        # forward, backward
        for group, base in zip(opt.param_groups, base_lrs):
            group["lr"] = decayed_lr(base, step, 0.99, every)
        opt.step()
        after_step(model)                                          # e.g. re-normalize reflectors

:func:`stability.train.train` does exactly this; these are the pieces for a loop of your own.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from .tasks.base import Task
from .transitions.base import Transition

OPTIMIZERS = {"rmsprop": torch.optim.RMSprop, "adam": torch.optim.Adam, "sgd": torch.optim.SGD}


def model_transitions(model: nn.Module) -> list[Transition]:
    """The transitions of ``model`` that own parameters (those inside a parametrization, whose
    parameter was moved to ``parametrizations.*.original``, are left out)."""
    return [m for m in model.modules() if isinstance(m, Transition) and next(m.parameters(), None) is not None]


def penalty(model: nn.Module):
    """The sum of the model's transitions' :meth:`~Transition.penalty` terms, or None when none has one."""
    terms = [p for p in (t.penalty() for t in model_transitions(model)) if p is not None]
    return sum(terms) if terms else None


def after_step(model: nn.Module) -> None:
    """Call :meth:`Transition.after_step` on every transition of ``model``: after each ``optimizer.step()``."""
    for transition in model_transitions(model):
        transition.after_step()


def check_lr_decay(lr_decay, decay_every, task: Task | None = None, batch_size: int | None = None) -> int | None:
    """Validate the decay options; the number of updates between two decays (None: no decay).

    ``lr_decay``: None (no decay) or a finite number in (0, 1]; ``decay_every``: an int >= 1
    (updates), or ``"epoch"`` (the task's ``steps_per_epoch(batch_size)``; data sets only).
    """
    if lr_decay is None:
        return None
    if isinstance(lr_decay, bool) or not isinstance(lr_decay, (int, float)) or not math.isfinite(lr_decay) \
            or not 0 < lr_decay <= 1:
        raise ValueError(f"lr_decay={lr_decay!r} must be a finite number in (0, 1] (None: no decay)")
    if decay_every == "epoch":
        if task is None:
            return None
        every = task.steps_per_epoch(batch_size)
        if every is None:
            raise ValueError(f"decay_every='epoch' needs a task with epochs (a data set: pixels, ptb, "
                             f"ptb_char); task {task.name!r} generates its batches: give decay_every as a "
                             f"number of updates")
        return int(every)
    if isinstance(decay_every, bool) or not isinstance(decay_every, int) or decay_every < 1:
        raise ValueError(f"decay_every={decay_every!r} must be an int >= 1 (updates) or 'epoch'")
    return decay_every


def decayed_lr(lr: float, step: int, lr_decay: float | None, every: int | None) -> float:
    """The learning rate of the ``step``-th update (1-based): ``lr · lr_decay ** ((step − 1) // every)``."""
    if lr_decay is None or every is None:
        return float(lr)
    return float(lr) * float(lr_decay) ** ((step - 1) // every)


def make_optimizer(model: nn.Module, optimizer: str, lr: float, transition_lr: float | None) -> torch.optim.Optimizer:
    """The optimizer over the model's parameters; the transitions' own (``model.transition_parameters()``
    where the model has it, else ``model.transition``'s) get ``transition_lr`` if given."""
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer={optimizer!r} is not known; allowed: {', '.join(map(repr, OPTIMIZERS))}")
    for name, value in (("lr", lr), ("transition_lr", transition_lr)):
        if value is None and name == "transition_lr":
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not (value > 0 and math.isfinite(value)):
            raise ValueError(f"{name}={value!r} must be a number > 0")
    if getattr(model, "transition", None) is None and transition_lr is not None and float(transition_lr) != float(lr):
        raise ValueError(f"transition_lr={transition_lr!r} is for a transition's parameters, and "
                         f"{type(model).__name__} has no transition (e.g. a gated cell); allowed: None or lr={lr!r}")
    # every transition of the model (both directions of a bidirectional one), as each says
    own = [p for t in model_transitions(model) for p in t.transition_lr_parameters()]
    ids = {id(p) for p in own}
    rest = [p for p in model.parameters() if id(p) not in ids]
    groups = [{"params": rest, "lr": float(lr)}]
    if own:
        groups.append({"params": own, "lr": float(transition_lr if transition_lr is not None else lr)})
    groups = [g for g in groups if g["params"]]
    return OPTIMIZERS[optimizer](groups, lr=float(lr))
