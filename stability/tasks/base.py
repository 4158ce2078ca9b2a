"""The task interface and its registry.

A task is a small object that knows its data, its loss and its metrics; the one training loop
(:func:`stability.train.train`) runs any of them. Every task has

- ``input_size``, ``output_size``: the sizes a :class:`~stability.RecurrentNet` must have;
- ``baseline``: the loss of the best memoryless answer (``baseline_metric`` names the metric),
  or ``None``;
- ``sample(batch_size, generator=None) -> (x, y)``: one training batch; ``x`` is (T, B, input_size)
  floats, or (T, B) token ids for language-model tasks;
- ``train_batch(index, batch_size, generator)``: the batch of the update with 0-based ``index``
  (default: ``sample(batch_size, generator)``; a task that goes through its training set in a
  fixed order, like ``mnist1d``, overrides it);
- ``loss(outputs, y)``: the scalar training objective from the model's outputs (T, B, output_size);
- ``metrics(outputs, y) -> dict[str, float]``: the task's metrics (names: ``docs/contracts.md``);
- ``batches(split, batch_size, max_batches=None)``: the evaluation data of a split;
- ``definition()``: a JSON-able dict that every result row carries (docs/protocols.md);
- ``output_steps``: ``"every"`` (the loss reads every step's output) or ``"last"`` (only outputs[-1]).

and, for the training loop: ``periodic_splits`` (evaluated every ``eval_every`` steps, e.g.
``("valid",)``) and ``final_splits`` (once at the end, e.g. ``("test",)``); ``generated`` (evaluation
data drawn with a fixed seed per split, vs. a data set's fixed splits); ``stateful`` (language
models: the hidden state runs on from one batch of a split to the next); ``count(y)`` and
``finish(means)``, which turn per-batch metrics into a whole split's (token-weighted for language
models, with perplexity and bpc recomputed from the mean cross-entropy).

Tasks are built by name: ``create("copy", T=200)``; ``available()`` lists the names.
"""
from __future__ import annotations

import inspect
import math
from typing import Iterator

import torch
from torch import Tensor
from torch.nn import functional as F

from ..checks import check_choice, check_size as check_int  # noqa: F401 (re-exported to the tasks)
from ..registry import Registry

#: the seed of the fixed evaluation data of generated (synthetic) tasks, per split
EVAL_SEEDS = {"valid": 2_147_483_029, "test": 2_147_482_951}


class Task:
    """Base class of every task; see the module docstring for the interface."""

    #: registry name, set by :func:`register`
    name: str = ""
    input_size: int
    output_size: int
    baseline: float | None = None
    #: the metric ``baseline`` is expressed in
    baseline_metric: str | None = None
    #: which outputs the loss reads: ``"every"`` step's, or only the ``"last"`` one (outputs[-1]);
    #: a model with ``readout="all"`` (one output per sequence) fits only a ``"last"`` task
    output_steps: str = "every"
    #: True for language models: hidden state is carried across the consecutive batches of a split
    stateful: bool = False
    #: splits evaluated every ``eval_every`` steps (and at the end), and only at the end
    periodic_splits: tuple[str, ...] = ("valid",)
    final_splits: tuple[str, ...] = ()
    #: True where evaluation data are generated (drawn with a fixed seed), False for data sets
    generated: bool = True
    #: number of evaluation batches when the caller gives none (None: the whole split)
    default_eval_batches: int | None = 10

    def sample(self, batch_size: int, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        raise NotImplementedError

    def train_batch(self, index: int, batch_size: int,
                    generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """The training batch of the update with 0-based ``index``: by default a fresh sample,
        ``self.sample(batch_size, generator)``, whatever the index."""
        return self.sample(batch_size, generator)

    def loss(self, outputs: Tensor, y: Tensor) -> Tensor:
        raise NotImplementedError

    def metrics(self, outputs: Tensor, y: Tensor) -> dict[str, float]:
        raise NotImplementedError

    def definition(self) -> dict:
        raise NotImplementedError

    def steps_per_epoch(self, batch_size: int) -> int | None:
        """Training updates per epoch at ``batch_size`` (None for generated tasks: no epochs)."""
        return None

    def count(self, y: Tensor) -> int:
        """How many scored items a batch holds (the weight of its metrics in a split's mean)."""
        return int(y.shape[-1]) if y.dim() >= 1 else 1

    def finish(self, means: dict[str, float]) -> dict[str, float]:
        """Metrics of a whole split from the weighted means of the per-batch metrics."""
        return means

    def batches(self, split: str, batch_size: int, max_batches: int | None = None) -> Iterator[tuple[Tensor, Tensor]]:
        """Evaluation batches of ``split``: for generated tasks, ``max_batches`` (default 10) batches
        from a generator with a fixed seed per split, the same data at every evaluation and for
        every training seed."""
        if split not in EVAL_SEEDS:
            raise ValueError(f"task {self.name!r} has no split {split!r}; allowed: {', '.join(EVAL_SEEDS)}")
        n = self.default_eval_batches if max_batches is None else check_int("max_batches", max_batches)
        gen = torch.Generator().manual_seed(EVAL_SEEDS[split])
        for _ in range(n):
            yield self.sample(batch_size, gen)

    def __repr__(self) -> str:
        opts = ", ".join(f"{k}={v!r}" for k, v in self.definition().items() if k not in ("task", "baseline"))
        return f"{type(self).__name__}({opts})"


class SplitClassification(Task):
    """A classification data set held in memory by split, classified from the model's last output.

    Subclasses keep ``self.labels[split]`` (class ids) and return their inputs by split from
    :meth:`split_inputs`; ``_as_sequence(examples)`` turns a batch of examples into (T, B, I).
    """

    output_steps = "last"

    def split_inputs(self) -> dict[str, Tensor]:
        raise NotImplementedError

    def steps_per_epoch(self, batch_size: int) -> int:
        """ceil(training examples / batch_size): the updates that take as many examples as the split holds."""
        return math.ceil(self.labels["train"].numel() / check_batch(batch_size))

    def batches(self, split: str, batch_size: int, max_batches: int | None = None) -> Iterator[tuple[Tensor, Tensor]]:
        """The whole split in order (or its first ``max_batches`` batches)."""
        inputs = self.split_inputs()
        if split not in inputs:
            raise ValueError(f"task {self.name!r} has no split {split!r}; allowed: {', '.join(inputs)}")
        check_batch(batch_size)
        examples, labels = inputs[split], self.labels[split]
        for n, start in enumerate(range(0, labels.numel(), batch_size)):
            if max_batches is not None and n >= max_batches:
                return
            yield self._as_sequence(examples[start:start + batch_size]), labels[start:start + batch_size]

    def loss(self, outputs: Tensor, y: Tensor) -> Tensor:
        return F.cross_entropy(outputs[-1], y)

    @torch.no_grad()
    def metrics(self, outputs: Tensor, y: Tensor) -> dict[str, float]:
        last = outputs[-1]
        return {"ce": float(F.cross_entropy(last, y)), "accuracy": float((last.argmax(-1) == y).float().mean())}


# ---------------------------------------------------------------------------------------
# validation helpers
# ---------------------------------------------------------------------------------------
def check_batch(batch_size) -> int:
    return check_int("batch_size", batch_size)


# ---------------------------------------------------------------------------------------
# registry
# ---------------------------------------------------------------------------------------
def _check_task(name: str, cls) -> None:
    if not (isinstance(cls, type) and issubclass(cls, Task)):
        raise TypeError(f"@register({name!r}) needs a Task subclass, got {cls!r}")


#: every task by name (plugins: the entry-point group ``stability.tasks``)
TASKS: Registry[type[Task]] = Registry("task", entry_points="stability.tasks", check=_check_task)
register = TASKS.register
available = TASKS.available
get = TASKS.get


def option_names(name: str) -> list[str]:
    """The keyword options a task's constructor accepts."""
    sig = inspect.signature(get(name).__init__)
    return [p for p, v in sig.parameters.items() if p != "self"
            and v.kind in (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)]


def option_defaults(name: str) -> dict:
    """The options of a task with their default values."""
    sig = inspect.signature(get(name).__init__)
    return {p: sig.parameters[p].default for p in option_names(name)}


def create(name: str, **options) -> Task:
    """Build the task registered under ``name``; unknown options raise a TypeError listing the allowed ones."""
    cls = get(name)
    allowed = option_names(name)
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise TypeError(f"task {name!r} does not take option(s) {', '.join(unknown)}; "
                        f"allowed: {', '.join(allowed) or '(none)'}")
    return cls(**options)
