"""The one training loop for every task: seeded, logged, deterministic on CPU.

    log = train(model, create("adding", T=50), steps=600, lr=1e-3, eval_every=100)

returns a long pandas DataFrame with columns ``step, split, metric, value`` (names in
``docs/contracts.md``):

- ``split="train"``: the training objective ``loss``, the task's metrics on the training batch
  and ``step_time`` (seconds for forward, backward, clipping, the optimizer step and the
  transitions' :meth:`~stability.transitions.Transition.after_step`), every ``log_every`` steps;
  ``step`` counts the updates made, so the row of step s is the batch of the s-th update. With
  ``lr_decay``, also ``lr``: the learning rate that update used (that of ``lr``'s group; the
  transition's group, under ``transition_lr``, decays by the same factor).
- ``split`` in the task's ``periodic_splits`` (e.g. ``"valid"``): the task's metrics on that
  split before training (step 0), every ``eval_every`` steps and after the last step.
- ``split`` in the task's ``final_splits`` (e.g. ``"test"``): once, after the last step.
- ``split="probe"``: ``half_life``, ``decay_rate`` (Jacobian norm decay, from
  ``stability.probes``) and ``sigma_min``, ``sigma_max`` (spectrum of W) on the schedule given by
  ``probes``.

Generated tasks draw every training batch from one ``torch.Generator`` seeded with ``seed``, and
evaluate on fixed data (the same for every seed); a task may instead give the batch of each
update itself (``Task.train_batch``: ``mnist1d`` goes through its training set in order);
language-model tasks run through the
training split's segments in order, epoch after epoch, carrying the hidden state (detached)
from one segment to the next and resetting it at each epoch; they are evaluated on the whole
evaluation split(s). With the model built the same way, the same seed gives the same numbers,
bit for bit, on CPU (``step_time`` aside). A non-finite loss stops training at that step (with a
warning; its update is not applied); the last evaluations and probes then run on that model.

After every optimizer step, every transition of the model that owns parameters gets its
``after_step()`` hook (:func:`after_step`): e.g. the Spectral-RNN's re-normalization of its
reflector rows. A training loop of your own should call ``after_step(model)`` the same way.

**Learning-rate decay** (``lr_decay``, ``decay_every``): the s-th update (s = 1, 2, …) uses
``lr · lr_decay ** ((s − 1) // E)`` with E = ``decay_every`` updates, or E = the task's
``steps_per_epoch(batch_size)`` for ``decay_every="epoch"`` (data sets only: pixels, PTB); the
official Spectral-RNN protocol is ``lr_decay=0.99, decay_every="epoch"`` (:func:`decayed_lr`).
"""
from __future__ import annotations

import math
import time
import warnings
from typing import Callable, Iterator

import pandas as pd
import torch
from torch import Tensor, nn

from .optim import (OPTIMIZERS, after_step, check_lr_decay, decayed_lr, make_optimizer,  # noqa: F401 (re-exported)
                    model_transitions, penalty)
from .probes import measure
from .tasks.base import Task, check_int

#: probes ``train`` can schedule: name -> (registered probe, the scalar figures it records)
PROBES = {"half_life": ("jacobian", ("half_life", "decay_rate")), "spectrum": ("spectrum", ("sigma_min", "sigma_max"))}
#: sequences in the fixed batch the Jacobian probe runs on
PROBE_BATCH = 8
#: offset of the probe batch's seed from the training seed
PROBE_SEED_OFFSET = 7919
COLUMNS = ["step", "split", "metric", "value"]

Row = tuple[int, str, str, float]


# ---------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------
def model_device_dtype(model: nn.Module) -> tuple[torch.device, torch.dtype]:
    params = list(model.parameters())
    if not params:
        raise ValueError("the model has no parameters to train")
    floats = [p for p in params if p.is_floating_point()]
    return params[0].device, (floats[0].dtype if floats else torch.get_default_dtype())


def check_sizes(model: nn.Module, task: Task) -> None:
    """Refuse a model whose input or output size does not fit the task, saying which are expected."""
    got_in, got_out = getattr(model, "input_size", None), getattr(model, "output_size", None)
    if (got_in is not None and got_in != task.input_size) or (got_out is not None and got_out != task.output_size):
        raise ValueError(f"task {task.name!r} needs a model with input_size={task.input_size} and "
                         f"output_size={task.output_size}; this model has input_size={got_in}, "
                         f"output_size={got_out}")


def _to(x: Tensor, device: torch.device, dtype: torch.dtype) -> Tensor:
    return x.to(device=device, dtype=dtype) if x.is_floating_point() else x.to(device)


def _forward(model: nn.Module, x: Tensor, h0: Tensor | None) -> tuple[Tensor, Tensor | None]:
    result = model(x) if h0 is None else model(x, h0)
    if isinstance(result, tuple):
        return result[0], result[1]
    return result, None


def evaluate(model: nn.Module, task: Task, split: str, *, batch_size: int = 32,
             max_batches: int | None = None) -> dict[str, float]:
    """The task's metrics on ``split``: weighted means over its evaluation batches.

    Language-model tasks run the whole split in ``task.eval_batch_size`` columns with the hidden
    state carried across segments; other tasks use ``batch_size`` and at most ``max_batches``
    batches (None: the task's default, e.g. the whole split for a dataset).
    """
    device, dtype = model_device_dtype(model)
    was_training = model.training
    model.eval()
    totals: dict[str, float] = {}
    count = 0
    try:
        with torch.no_grad():
            if task.stateful:
                data = task.batches(split, getattr(task, "eval_batch_size", None) or batch_size)
            else:
                data = task.batches(split, batch_size, max_batches)
            h = None
            for x, y in data:
                x, y = _to(x, device, dtype), y.to(device)
                out, states = _forward(model, x, h)
                if task.stateful and states is not None:
                    h = states[-1]
                weight = task.count(y)
                for key, value in task.metrics(out, y).items():
                    totals[key] = totals.get(key, 0.0) + float(value) * weight
                count += weight
    finally:
        model.train(was_training)
    if count == 0:
        raise ValueError(f"task {task.name!r}: split {split!r} gave no evaluation data")
    return task.finish({k: v / count for k, v in totals.items()})


def _check_probes(probes) -> dict[str, int]:
    if probes is None:
        return {}
    if not isinstance(probes, dict):
        raise TypeError(f"probes must be a dict like {{'half_life': 50, 'spectrum': 50}}, got {probes!r}")
    out = {}
    for name, every in probes.items():
        if name not in PROBES:
            raise ValueError(f"probe {name!r} is not known; allowed: {', '.join(PROBES)}")
        out[name] = check_int(f"probes[{name!r}]", every)
    return out


def _probe_rows(name: str, model: nn.Module, x: Tensor | None, step: int) -> list[Row]:
    """The scheduled probe's figures (PROBES[name]) at ``step``, measured in eval mode; NaN where absent."""
    probe, metrics = PROBES[name]
    was_training = model.training
    model.eval()
    try:
        with torch.set_grad_enabled(probe != "spectrum"):
            measured = measure(probe, model, "probe", x=x)
    finally:
        model.train(was_training)
    values = {m: v for s, _, m, v in measured if s == 0 and m in metrics}
    return [(step, "probe", m, values.get(m, math.nan)) for m in metrics]


def _train_stream(task: Task, batch_size: int, generator: torch.Generator) -> Iterator[tuple[Tensor, Tensor, bool]]:
    """(x, y, new_epoch) forever: the task's batch of each update (``Task.train_batch``: a sampled
    batch, or the next in a fixed order), or a language model's segments epoch after epoch."""
    if task.stateful:
        while True:
            first = True
            for x, y in task.batches("train", batch_size):
                yield x, y, first
                first = False
    index = 0
    while True:
        x, y = task.train_batch(index, batch_size, generator)
        index += 1
        yield x, y, False


# ---------------------------------------------------------------------------------------
# the loop
# ---------------------------------------------------------------------------------------
def train(model: nn.Module, task: Task, steps: int, *, batch_size: int = 32, optimizer: str = "rmsprop",
          lr: float = 1e-3, transition_lr: float | None = None, clip: float | None = None,
          eval_every: int | None = None, eval_batches: int | None = None, log_every: int = 1,
          seed: int = 0, probes: dict[str, int] | None = None, progress: bool = True,
          callback: Callable[[list[Row]], None] | None = None, lr_decay: float | None = None,
          decay_every: int | str = "epoch") -> pd.DataFrame:
    """Train ``model`` on ``task`` for ``steps`` updates; return the metric rows (see the module docstring).

    Args:
        model: a :class:`~stability.RecurrentNet` (or any module called as ``model(x, h0)`` returning
            ``(outputs, hidden_states)``) whose sizes fit the task; trained in place on its device.
        task: a :class:`~stability.tasks.Task` (``stability.tasks.create(name, ...)``).
        steps: number of optimizer updates (0: evaluate only).
        batch_size: sequences per training batch (columns of the batchified split for language models).
        optimizer: ``"rmsprop"``, ``"adam"`` or ``"sgd"`` (PyTorch's defaults otherwise).
        lr: learning rate; ``transition_lr``: learning rate of ``model.transition``'s parameters
            (default: ``lr``; about 10× lower is common, docs/protocols.md).
        clip: clip the gradient's total norm to this value (None or 0: no clipping).
        eval_every: evaluate the task's periodic splits every this many steps (None or 0: only
            before and after training).
        eval_batches: evaluation batches of generated tasks (copy, adding; default 10, the same fixed
            data at every evaluation); data sets (pixels, PTB) are always evaluated on whole splits.
        log_every: record the training rows every this many steps.
        seed: seeds the training data (and the probe batch).
        probes: ``{"half_life": N, "spectrum": M}``: run those probes every N (M) steps, at step 0
            and at the end.
        progress: show a tqdm progress bar.
        callback: called with each new list of ``(step, split, metric, value)`` rows as they come.
        lr_decay: multiply every learning rate by this factor, a finite number in (0, 1], every
            ``decay_every`` updates (None: constant learning rates).
        decay_every: an int >= 1 (updates), or ``"epoch"`` (the task's ``steps_per_epoch``: data
            sets only; the official Spectral-RNN protocol is ``lr_decay=0.99`` per epoch).
    """
    if not isinstance(task, Task):
        raise TypeError(f"task must be a stability.tasks.Task (stability.tasks.create(name, ...)), "
                        f"got {type(task).__name__}")
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    steps = check_int("steps", steps, minimum=0)
    batch_size = check_int("batch_size", batch_size)
    log_every = check_int("log_every", log_every)
    if eval_every is not None:
        eval_every = check_int("eval_every", eval_every, minimum=0)
    if eval_batches is not None:
        eval_batches = check_int("eval_batches", eval_batches)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int, got {seed!r}")
    if clip is not None and (isinstance(clip, bool) or not isinstance(clip, (int, float)) or clip < 0):
        raise ValueError(f"clip={clip!r} must be a number >= 0 (None or 0: no clipping)")
    schedule = _check_probes(probes)
    check_sizes(model, task)
    decay_steps = check_lr_decay(lr_decay, decay_every, task, batch_size)
    device, dtype = model_device_dtype(model)
    opt = make_optimizer(model, optimizer, lr, transition_lr)
    base_lrs = [g["lr"] for g in opt.param_groups]
    params = [p for g in opt.param_groups for p in g["params"]]
    hooked = model_transitions(model)
    generator = torch.Generator().manual_seed(seed)
    probe_x = None
    if "half_life" in schedule:
        probe_x, _ = task.sample(PROBE_BATCH, torch.Generator().manual_seed(seed + PROBE_SEED_OFFSET))
        probe_x = _to(probe_x, device, dtype)

    rows: list[Row] = []
    pending: list[Row] = []

    def emit(new: list[Row]) -> None:
        rows.extend(new)
        pending.extend(new)

    def flush() -> None:
        if callback is not None and pending:
            batch = list(pending)
            pending.clear()
            callback(batch)
        else:
            pending.clear()

    def run_evals(step: int, splits) -> None:
        for split in splits:
            limit = eval_batches if task.generated else None  # data sets: always the whole split
            result = evaluate(model, task, split, batch_size=batch_size, max_batches=limit)
            emit([(step, split, k, float(v)) for k, v in result.items()])

    def finite(module: nn.Module) -> bool:
        return all(bool(torch.isfinite(p).all()) for p in module.parameters())

    def run_probes(step: int, final: bool = False) -> None:
        for name, every in schedule.items():
            if step % every == 0 or final:
                measured = getattr(model, "transition", model) if name == "spectrum" else model
                if not finite(measured):  # a diverged model: nothing to measure, and probes would raise
                    emit([(step, "probe", metric, math.nan) for metric in PROBES[name][1]])
                else:
                    emit(_probe_rows(name, model, probe_x, step))

    def due(step: int, every: int | None) -> bool:
        return bool(every) and step % every == 0

    from tqdm.auto import tqdm

    bar = tqdm(total=steps, disable=not progress, desc=f"train {task.name}", unit="step", leave=False)
    model.train()
    run_evals(0, task.periodic_splits)
    run_probes(0)
    flush()
    stream = _train_stream(task, batch_size, generator)
    h = None
    done = 0
    try:
        for step in range(1, steps + 1):
            x, y, new_epoch = next(stream)
            if new_epoch:
                h = None
            x, y = _to(x, device, dtype), y.to(device)
            start = time.perf_counter()
            opt.zero_grad(set_to_none=True)
            out, states = _forward(model, x, h)
            loss = task.loss(out, y)
            extra = penalty(model)  # a transition's own regularizer (nnRNN's), in the gradient only
            (loss if extra is None else loss + extra).backward()
            value = loss.item()
            done = step
            if not math.isfinite(value):  # stop, and leave the model as it was before this step
                emit([(step, "train", "loss", value)])
                warnings.warn(f"training {task.name!r} stopped at step {step}: the loss is {value}; "
                              f"that step's update was not applied")
                break
            if clip:
                torch.nn.utils.clip_grad_norm_(params, float(clip))
            if decay_steps is not None:
                for group, base in zip(opt.param_groups, base_lrs):
                    group["lr"] = decayed_lr(base, step, lr_decay, decay_steps)
            opt.step()
            for transition in hooked:
                transition.after_step()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            elapsed = time.perf_counter() - start
            if task.stateful and states is not None:
                h = states[-1].detach()
            if step % log_every == 0 or step == steps:
                metrics = task.metrics(out.detach(), y)
                emit([(step, "train", "loss", value)] + [(step, "train", k, float(v)) for k, v in metrics.items()]
                     + [(step, "train", "step_time", elapsed)]
                     + ([(step, "train", "lr", opt.param_groups[0]["lr"])] if decay_steps is not None else []))
                bar.set_postfix(loss=f"{value:.4g}", refresh=False)
            bar.update(1)
            evaluated = False
            if due(step, eval_every) and step != steps:
                run_evals(step, task.periodic_splits)
                evaluated = True
            if step != steps and any(due(step, every) for every in schedule.values()):
                run_probes(step)
                evaluated = True
            if evaluated or len(pending) >= 256:
                flush()
    finally:
        bar.close()
    run_evals(done, (task.periodic_splits if done else ()) + task.final_splits)
    if done:
        run_probes(done, final=True)
    flush()
    frame = pd.DataFrame(rows, columns=COLUMNS)
    return frame.astype({"step": "int64", "split": "str", "metric": "str", "value": "float64"})
