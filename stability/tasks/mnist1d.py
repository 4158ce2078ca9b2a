"""MNIST-1D (Greydanus & Kobak): classify a length-40 signal into one of 10 digit templates.

The data are generated offline by the ``mnist1d`` package's own generator with its default
arguments, ``mnist1d.data.make_dataset(get_dataset_args())``: the ten templates are built into
the package (``get_templates()``), the generator seeds NumPy and Python's ``random`` with 42,
and nothing is downloaded (the package's ``get_dataset`` download path is never used). That
gives 5,000 examples of length 40, split 4,000 train / 1,000 test; the arrays are kept in
memory once per process (about 3 s to generate). Needs the optional extra ``mnist1d``
(``pip install "stability[mnist1d]"``).

``shuffle=True`` is the published "shuffled" variant: the 40 time steps of every example, train
and test alike, reordered by one fixed permutation, the one ``make_dataset`` applies with
``shuffle_seq=True`` (``numpy.random.permutation(40)`` drawn right after the examples, from the
generator's own seeded state). It is taken from that state here, so the data equal the package's
``shuffle_seq=True`` output without generating twice.

One value per step (input size 1), classified from the last output (``outputs[-1]``, or the one
output of a model with ``readout="all"``). Training batches go through the training set in
order, as the published ``notebooks/train.py`` does: the update with 0-based index i takes the
examples from ``i·B mod 4000`` on (:meth:`MNIST1DTask.train_batch`). There is no validation
split: ``test`` is evaluated every ``eval_every`` steps and the figure reported is its value at
the end of training, as published (docs/protocols.md).
"""
from __future__ import annotations

import random

import numpy as np
import torch
from torch import Tensor

from .base import SplitClassification, check_batch, check_int, register

#: what to install when the package is missing
INSTALL_HINT = 'pip install "stability[mnist1d]"'
SEQUENCE_LENGTH = 40
SPLIT_SIZES = {"train": 4000, "test": 1000}
#: test accuracies of the mnist1d README's table "Comparing MNIST and MNIST-1D" (greydanus/mnist1d)
PUBLISHED = {
    False: {"logistic regression": 0.32, "MLP": 0.68, "CNN": 0.94, "GRU": 0.91, "human expert": 0.96},
    True: {"logistic regression": 0.32, "MLP": 0.68, "CNN": 0.56, "GRU": 0.57, "human expert": 0.30},
}
PUBLISHED_SOURCE = ("greydanus/mnist1d README, table 'Comparing MNIST and MNIST-1D': test accuracy; "
                    "GRU = notebooks/models.py GRUBase (bidirectional, hidden 6, linear readout of all 40 "
                    "steps' states, 5,134 parameters) trained by notebooks/train.py (Adam 1e-2, batch 100, "
                    "8,000 steps in order); the shuffled human-expert figure is given as '~30%'")

#: the generated arrays (one entry: the package's default data set), filled on first use
_GENERATED: dict[str, dict] = {}


def _mnist1d_data():
    """The ``mnist1d.data`` module, or an ImportError naming the extra to install."""
    try:
        from mnist1d import data
    except ImportError as exc:
        raise ImportError(f"task 'mnist1d' needs the mnist1d package: {INSTALL_HINT} ({exc})") from None
    return data


def generate() -> dict:
    """The default MNIST-1D data set and its sequence permutation, generated once per process.

    Returns ``{"x", "y", "x_test", "y_test"}`` exactly as ``make_dataset(get_dataset_args())``
    gives them (float64 (N, 40) signals, int64 labels), ``"permutation"`` (the permutation
    ``shuffle_seq=True`` applies), ``"args"`` (the generator's arguments, its URL left out) and
    ``"version"`` (the package's). The global states of NumPy's and Python's random generators
    (which the package seeds) are restored afterwards.
    """
    if "default" in _GENERATED:
        return _GENERATED["default"]
    data = _mnist1d_data()
    args = data.get_dataset_args()
    py_state, np_state = random.getstate(), np.random.get_state()
    try:
        made = data.make_dataset(args)
        # with shuffle_seq=True, make_dataset draws this permutation next, from the same state
        permutation = np.random.permutation(args.final_seq_length)
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)
    got = {"train": made["x"].shape, "test": made["x_test"].shape}
    want = {s: (n, SEQUENCE_LENGTH) for s, n in SPLIT_SIZES.items()}
    if got != want:
        raise RuntimeError(f"mnist1d's default data set has shapes {got}; task 'mnist1d' expects {want} "
                           f"(the package's defaults changed: mnist1d {_version()})")
    result = {"x": made["x"], "y": made["y"], "x_test": made["x_test"], "y_test": made["y_test"],
              "permutation": permutation,
              "args": {k: v for k, v in vars(args).items() if k != "url"}, "version": _version()}
    _GENERATED["default"] = result
    return result


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version("mnist1d")
    except PackageNotFoundError:
        return "unknown"


@register("mnist1d")
class MNIST1DTask(SplitClassification):
    """MNIST-1D classification (4,000 train / 1,000 test, T = 40), optionally with the fixed shuffle."""

    input_size = 1
    output_size = 10
    output_steps = "last"
    sequence_length = SEQUENCE_LENGTH
    baseline_metric = "ce"
    periodic_splits = ("test",)
    final_splits = ()
    generated = False
    default_eval_batches = None

    def __init__(self, shuffle: bool = False):
        if not isinstance(shuffle, bool):
            raise TypeError(f"shuffle must be True or False, got {shuffle!r}")
        self.shuffle = shuffle
        made = generate()
        self.permutation = made["permutation"] if shuffle else None
        self.args, self.version = made["args"], made["version"]
        self.signals: dict[str, Tensor] = {}
        self.labels: dict[str, Tensor] = {}
        for split, (x, y) in {"train": ("x", "y"), "test": ("x_test", "y_test")}.items():
            signal = made[x] if self.permutation is None else made[x][:, self.permutation]
            self.signals[split] = torch.from_numpy(np.ascontiguousarray(signal, dtype=np.float32))
            self.labels[split] = torch.from_numpy(np.ascontiguousarray(made[y], dtype=np.int64))
        # the best answer without the signal: the training split's class frequencies
        freq = torch.bincount(self.labels["train"], minlength=self.output_size).double()
        self.baseline = float(-torch.log(freq / freq.sum())[self.labels["test"]].mean())

    def __repr__(self) -> str:
        return f"MNIST1DTask(shuffle={self.shuffle})"

    @staticmethod
    def _as_sequence(signals: Tensor) -> Tensor:
        return signals.t().unsqueeze(-1)  # (B, T) -> (T, B, 1)

    def sample(self, batch_size: int, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """B training examples drawn at random (with replacement): x (40, B, 1) float32, y (B,) int64.
        Training itself goes through the set in order (:meth:`train_batch`); this is for probes."""
        batch = check_batch(batch_size)
        idx = torch.randint(0, self.labels["train"].numel(), (batch,), generator=generator)
        return self._as_sequence(self.signals["train"][idx]), self.labels["train"][idx]

    def train_batch(self, index: int, batch_size: int,
                    generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """The batch of the update with 0-based ``index``: training examples ``s, …, s + B − 1`` with
        ``s = index·B mod 4000``, cut short at the end of the set (the published train.py's
        ``bix``); ``generator`` is not used."""
        batch = check_batch(batch_size)
        index = check_int("index", index, minimum=0)
        n = self.labels["train"].numel()
        start = (index * batch) % n
        return (self._as_sequence(self.signals["train"][start:start + batch]),
                self.labels["train"][start:start + batch])

    def split_inputs(self) -> dict[str, Tensor]:
        return self.signals

    def definition(self) -> dict:
        return {"task": "mnist1d", "shuffle": self.shuffle, "T": SEQUENCE_LENGTH,
                "splits": {s: int(v.numel()) for s, v in self.labels.items()},
                "generator": f"mnist1d.data.make_dataset(get_dataset_args()), mnist1d {self.version}, "
                             "built-in templates, no download",
                "dataset_args": {**self.args, "shuffle_seq": self.shuffle},
                "permutation": None if self.permutation is None else [int(i) for i in self.permutation],
                "train_order": "in order: the update with 0-based index i takes training examples "
                               "(i*B mod 4000) to +B (greydanus/mnist1d notebooks/train.py)",
                "reported_split": "test, at the end of training (no validation split)",
                "classify": "last step's output",
                "baseline": self.baseline, "baseline_metric": self.baseline_metric,
                "baseline_note": "training split's class frequencies, scored on test",
                "chance_accuracy": 0.1,
                "published": dict(PUBLISHED[self.shuffle]), "published_source": PUBLISHED_SOURCE}
