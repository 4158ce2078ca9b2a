"""The copy (memory) task: remember K symbols across a delay of T steps.

Two layouts, both of length T + 2K with the same targets (docs/protocols.md)::

    layout="urnn" (default; uRNN's memory_problem.py, scoRNN, nnRNN):
    input : s_1 … s_K   0 … 0 (T − 1 blanks)   9 (marker)   0 … 0 (K blanks)      marker at T + K − 1
    layout="exprnn" (expRNN's 1_copying.py, one step later):
    input : s_1 … s_K   0 … 0 (T blanks)       9 (marker)   0 … 0 (K − 1 blanks)  marker at T + K
    target: 0 … 0 (T + K blanks)                            s_1 … s_K

with s_i uniform in {1..A} (A = 8), blank 0, marker A + 1. Under "exprnn" the marker arrives
at the step the first symbol is due. Inputs are one-hot over A + 2 symbols, outputs A + 1
classes. Loss: cross-entropy averaged over every position. Baseline (blanks, then uniform
over the A symbols): K·log A / (T + 2K). Accuracy counts the last K positions in both
layouts (expRNN's script counts every position).
"""
from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.nn import functional as F

from .base import Task, check_batch, check_choice, check_int, register

#: where the marker goes: "urnn" at index T + K − 1 (uRNN, scoRNN, nnRNN), "exprnn" at T + K
LAYOUTS = ("urnn", "exprnn")


@register("copy")
class CopyTask(Task):
    """Copy K symbols after a delay T (T is the delay, not the sequence length)."""

    baseline_metric = "ce"
    output_steps = "every"

    def __init__(self, T: int = 200, K: int = 10, alphabet: int = 8, layout: str = "urnn"):
        self.T = check_int("T", T)
        self.K = check_int("K", K)
        self.alphabet = check_int("alphabet", alphabet, minimum=2)
        self.layout = check_choice("layout", layout, LAYOUTS)
        self.marker_position = self.T + self.K - 1 + (1 if self.layout == "exprnn" else 0)
        self.length = self.T + 2 * self.K
        self.input_size = self.alphabet + 2
        self.output_size = self.alphabet + 1
        self.marker = self.alphabet + 1
        self.baseline = self.K * math.log(self.alphabet) / self.length

    def tokens(self, batch_size: int, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """The input and target symbols, both (T + 2K, B) int64."""
        batch = check_batch(batch_size)
        symbols = torch.randint(1, self.alphabet + 1, (self.K, batch), generator=generator)
        x = torch.zeros(self.length, batch, dtype=torch.int64)
        y = torch.zeros(self.length, batch, dtype=torch.int64)
        x[:self.K] = symbols
        x[self.marker_position] = self.marker
        y[self.T + self.K:] = symbols
        return x, y

    def sample(self, batch_size: int, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """x: (T + 2K, B, A + 2) one-hot float32; y: (T + 2K, B) int64 class ids."""
        ids, y = self.tokens(batch_size, generator)
        return F.one_hot(ids, self.input_size).to(torch.float32), y

    def loss(self, outputs: Tensor, y: Tensor) -> Tensor:
        return F.cross_entropy(outputs.reshape(-1, outputs.shape[-1]), y.reshape(-1))

    @torch.no_grad()
    def metrics(self, outputs: Tensor, y: Tensor) -> dict[str, float]:
        recall = outputs[-self.K:].argmax(-1) == y[-self.K:]
        return {"ce": float(self.loss(outputs, y)), "accuracy": float(recall.float().mean())}

    def definition(self) -> dict:
        return {"task": "copy", "T": self.T, "K": self.K, "alphabet": self.alphabet,
                "length": self.length, "layout": self.layout, "marker_position": self.marker_position,
                "baseline": self.baseline, "baseline_metric": self.baseline_metric,
                "loss": "cross-entropy over all positions", "accuracy": f"over the last {self.K} positions",
                "chance_accuracy": 1.0 / self.alphabet,
                "thresholds": [{"metric": "ce", "value": 0.1, "relative": True}]}
