"""The adding task: sum the two marked values of a long sequence.

Two input channels over T steps: values ~ U(0, 1), and a marker row with exactly two ones;
the target is the sum of the two marked values, read from the last step's output; MSE.
Marker placement (docs/protocols.md): ``"halves"`` (one in each half: uRNN, scoRNN, Spectral-RNN's
generator; the default) or ``"anywhere"`` (two distinct positions: oRNN). Baseline: always
predicting 1 gives MSE = Var(U₁ + U₂) = 1/6.
"""
from __future__ import annotations

import torch
from torch import Tensor
from torch.nn import functional as F

from .base import Task, check_batch, check_choice, check_int, register

MARKERS = ("halves", "anywhere")


@register("adding")
class AddingTask(Task):
    """Adding problem of length T with two markers placed per ``markers``."""

    input_size = 2
    output_size = 1
    baseline_metric = "mse"
    output_steps = "last"

    def __init__(self, T: int = 100, markers: str = "halves"):
        self.T = check_int("T", T, minimum=2)
        self.markers = check_choice("markers", markers, MARKERS)
        self.baseline = 1.0 / 6.0

    def positions(self, batch: int, generator: torch.Generator | None = None) -> Tensor:
        """The two marker positions of each sequence, (B, 2) int64, first < second."""
        T = self.T
        if self.markers == "halves":
            half = T // 2
            first = torch.randint(0, half, (batch,), generator=generator)
            second = torch.randint(half, T, (batch,), generator=generator)
        else:
            first = torch.randint(0, T, (batch,), generator=generator)
            # a second position uniform among the other T − 1
            other = torch.randint(0, T - 1, (batch,), generator=generator)
            second = other + (other >= first).long()
            first, second = torch.minimum(first, second), torch.maximum(first, second)
        return torch.stack([first, second], 1)

    def sample(self, batch_size: int, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """x: (T, B, 2) float32 (values, markers); y: (B,) float32 sums."""
        batch = check_batch(batch_size)
        values = torch.rand(self.T, batch, generator=generator)
        pos = self.positions(batch, generator)
        marks = torch.zeros(self.T, batch)
        cols = torch.arange(batch)
        marks[pos[:, 0], cols] = 1.0
        marks[pos[:, 1], cols] = 1.0
        y = values[pos[:, 0], cols] + values[pos[:, 1], cols]
        return torch.stack([values, marks], 2), y

    def loss(self, outputs: Tensor, y: Tensor) -> Tensor:
        return F.mse_loss(outputs[-1, :, 0], y.to(outputs.dtype))

    @torch.no_grad()
    def metrics(self, outputs: Tensor, y: Tensor) -> dict[str, float]:
        return {"mse": float(self.loss(outputs, y))}

    def definition(self) -> dict:
        return {"task": "adding", "T": self.T, "markers": self.markers, "baseline": self.baseline,
                "baseline_metric": self.baseline_metric, "loss": "MSE of the last output",
                "thresholds": [{"metric": "mse", "value": 0.05, "relative": False}]}
