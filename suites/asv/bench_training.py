"""One training step of RecurrentNet per transition, against torch.nn.RNN (dense) as the floor
and beside what users would write instead (common.ALTERNATIVES: torch.nn.RNN with
torch.nn.utils.parametrizations.orthogonal on weight_hh_l0, each map, and geotorch's; geotorch
missing, its cases are skipped, n/a).

A step is: zero the gradients, forward over the whole sequence (W built once), MSE loss of
the readout against fixed targets, backward. The optimizer update (O(parameters)) is left
out. Inputs and targets have 16 features, batch 64; RecurrentNet uses its default engine
(fused BPTT on CPU, PyTorch's RNN kernel, cuDNN, on CUDA); k = n reflectors for the
transitions that take them.

Sizes: T x n covers issue 20's table (64/128/256 at T = 1000; 256/512 at T = 100) and the
earlier grid (T in {100, 1000} x n in {128, 512}, whose recorded history stays comparable:
setup and the timed functions are unchanged, so their asv version is too).
"""
from __future__ import annotations

import torch

from .common import (ALTERNATIVES, BATCH, BUILTIN_TRANSITIONS, DEVICES, TORCH_RNN, cached, clock, make_model,
                     prepare, sequence_batch, sync, train_step)

MODELS = BUILTIN_TRANSITIONS + [TORCH_RNN] + ALTERNATIVES
STEPS = [100, 1000]
SIZES = [64, 128, 256, 512]


def _build(model: str, steps: int, n: int, device: torch.device):
    return make_model(model, n, device), *sequence_batch(steps, BATCH, device)


def _step(case) -> None:
    train_step(*case)


class TrainStep:
    """Wall time of one training step (forward + backward) at batch 64."""
    params = (MODELS, STEPS, SIZES, DEVICES)
    param_names = ["model", "T", "n", "device"]
    timer = staticmethod(clock)
    timeout = 300
    repeat = (2, 5, 10.0)
    rounds = 2

    def setup(self, model, T, n, device):
        self.device = prepare(device)
        self.case = cached((model, T, n, device), lambda: _build(model, T, n, self.device))

    def time_train_step(self, model, T, n, device):
        _step(self.case)
        sync(self.device)


class TrainStepMemory:
    """Peak resident memory of the benchmark process through one training step (host RSS)."""
    params = (MODELS, STEPS, SIZES, DEVICES)
    param_names = ["model", "T", "n", "device"]
    timeout = 300

    def setup(self, model, T, n, device):
        self.device = prepare(device)
        self.case = _build(model, T, n, self.device)

    def peakmem_train_step(self, model, T, n, device):
        _step(self.case)
        sync(self.device)


class TrainStepDeviceMemory:
    """Peak CUDA memory allocated by one training step (torch.cuda.max_memory_allocated)."""
    params = (MODELS, STEPS, SIZES, DEVICES)
    param_names = ["model", "T", "n", "device"]
    timeout = 300
    unit = "bytes"

    def setup(self, model, T, n, device):
        if device != "cuda":
            raise NotImplementedError("device memory is tracked on CUDA only (host: peakmem_train_step)")
        self.device = prepare(device)
        self.case = _build(model, T, n, self.device)

    def track_peak_allocated(self, model, T, n, device):
        torch.cuda.reset_peak_memory_stats(self.device)
        _step(self.case)
        sync(self.device)
        return torch.cuda.max_memory_allocated(self.device)
