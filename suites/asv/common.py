"""Helpers shared by the asv benchmarks (this module defines no benchmark).

- Every benchmark takes a ``device`` parameter (``DEVICES``); :func:`prepare` skips the CUDA
  cases the asv way (``NotImplementedError`` in ``setup``) where CUDA is absent, sets the
  thread count and pins the allocator.
- Timed functions end with :func:`sync`, so CUDA work is finished before the clock stops.
- Nothing here touches torch's compute or CUDA at import time: asv forks one process per
  benchmark from the process that imported these modules.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import time

import torch
# The first backward pass in a process imports this (and sympy: about 0.3 s). Importing it
# here, in the process asv forks every benchmark from, keeps that out of the timings; an
# import is pure Python and safe across fork, unlike starting torch's thread pools or CUDA.
try:
    import torch.fx.experimental.symbolic_shapes  # noqa: F401
except ImportError:  # another torch version: only the timings of a first call suffer
    pass

DEVICES = ["cpu", "cuda"]
INPUT_SIZE = OUTPUT_SIZE = 16
BATCH = 64

_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_CACHE: dict = {}


def num_threads() -> int:
    """$STABILITY_BENCH_THREADS, else min(4, CPU count): fixed, so timings compare across runs."""
    value = os.environ.get("STABILITY_BENCH_THREADS")
    return int(value) if value else min(4, os.cpu_count() or 1)


def pin_allocator() -> bool:
    """glibc's mallopt equivalent of MALLOC_MMAP_MAX_=0 and a large MALLOC_TRIM_THRESHOLD_.

    Without it, page faults from freshly mapped large blocks dominate CPU timings. Returns
    False (and does nothing) where the C library has no mallopt.
    """
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    ok = mallopt(_M_MMAP_MAX, 0)
    ok &= mallopt(_M_TRIM_THRESHOLD, 2**31 - 1)
    return bool(ok)


_CLOCK = [time.perf_counter]


def clock() -> float:
    """The clock of the time_ benchmarks (their ``timer``), chosen per case by :func:`prepare`.

    Wall time (asv's default), except for CPU cases where $STABILITY_BENCH_TIMER=process: then
    the process's CPU time, which other jobs on a shared machine barely move (the per-commit
    history in asv.conf.json sets it; docs/speed.md).
    """
    return _CLOCK[0]()


def prepare(device: str) -> torch.device:
    """Common setup: skip CUDA cases without CUDA, fix the thread count, pin the allocator."""
    if device == "cuda" and not torch.cuda.is_available():
        raise NotImplementedError("CUDA is not available on this machine")
    torch.set_num_threads(num_threads())
    pin_allocator()
    process = device == "cpu" and os.environ.get("STABILITY_BENCH_TIMER") == "process"
    _CLOCK[0] = time.process_time if process else time.perf_counter
    return torch.device(device)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def cached(key, build):
    """Build once per benchmark process: asv re-runs setup before every timed call.

    (No warm-up call here: asv's own warm-up discards the first call, which carries a few
    hundred milliseconds of one-time autograd initialization, except under ``--quick``,
    whose single sample is a smoke test and is not saved.)
    """
    if key not in _CACHE:
        _CACHE[key] = build()
    return _CACHE[key]


#: the transitions shipped with stability, as a fixed list. asv takes every benchmark's
#: parameter grid from the commit it discovered the benchmarks with and runs a case by its index
#: in that grid, in a process that has imported another commit: a grid read from the installed
#: package (``transitions.available()``) had nnrnn at index 4 from its commit on, so every case
#: from there on ran the next case's model under this one's label ("spectral" timed nnRNN,
#: "torch.nn.RNN" timed the Spectral-RNN; docs/speed.md). A commit that lacks one of them gets
#: n/a for its cases (:func:`require_transition`). tests/test_asv_suite.py checks that this list is
#: the package's built-ins.
BUILTIN_TRANSITIONS = ["cayley", "dense", "exprnn", "householder", "nnrnn", "spectral"]
#: those of them that take a reflector count (k = n in the training benchmarks, n/4 or n in the W ones)
REFLECTED_TRANSITIONS = ["householder", "spectral"]


def require_transition(name: str) -> None:
    """NotImplementedError (asv: n/a) when the installed commit of stability lacks ``name``."""
    from stability import transitions

    if name not in transitions.available():
        raise NotImplementedError(f"transition {name!r} is not in this commit of stability")


def reflector_count(spec: str, n: int) -> int:
    """'n' -> n, 'n/4' -> n // 4 (at least 1)."""
    if spec == "n":
        return n
    if spec.startswith("n/"):
        return max(1, n // int(spec[2:]))
    return int(spec)


class TorchRNN(torch.nn.Module):
    """torch.nn.RNN (tanh, dense W) with RecurrentNet's readout: the floor of the training step."""

    def __init__(self, input_size: int, hidden_size: int, output_size: int):
        super().__init__()
        self.rnn = torch.nn.RNN(input_size, hidden_size)
        self.readout = torch.nn.Linear(hidden_size, output_size)

    def forward(self, x):
        states, _ = self.rnn(x)
        return self.readout(states), states


TORCH_RNN = "torch.nn.RNN"
#: what users would write instead: torch.nn.RNN with weight_hh_l0 kept orthogonal by torch's
#: parametrization (each map) or by geotorch. A copy of stability.bench.baselines, because these
#: benchmarks also run against commits of the package that predate it.
TORCH_ORTHOGONAL = {f"torch-orthogonal-{m}": m for m in ("matrix_exp", "cayley", "householder")}
ALTERNATIVES = [*TORCH_ORTHOGONAL, "geotorch"]


def alternative_model(name: str, n: int) -> TorchRNN:
    """TorchRNN with ``rnn.weight_hh_l0`` parametrized as alternative ``name``, as users would
    write it (no ``parametrize.cached()``); geotorch missing: skipped the asv way."""
    model = TorchRNN(INPUT_SIZE, n, OUTPUT_SIZE)
    if name == "geotorch":
        try:
            import geotorch
        except ImportError:
            raise NotImplementedError('geotorch is not installed (pip install "stability[bench]")') from None
        geotorch.orthogonal(model.rnn, "weight_hh_l0")
    else:
        from torch.nn.utils.parametrizations import orthogonal

        orthogonal(model.rnn, "weight_hh_l0", orthogonal_map=TORCH_ORTHOGONAL[name])
    return model


def make_model(name: str, n: int, device: torch.device, seed: int = 0) -> torch.nn.Module:
    """RecurrentNet with transition ``name`` (k = n reflectors where it takes them), the floor,
    or one of the ALTERNATIVES."""
    from stability import RecurrentNet

    if name != TORCH_RNN and name not in ALTERNATIVES:
        require_transition(name)
    torch.manual_seed(seed)
    if name == TORCH_RNN:
        model = TorchRNN(INPUT_SIZE, n, OUTPUT_SIZE)
    elif name in ALTERNATIVES:
        model = alternative_model(name, n)
    else:
        options = {"reflectors": n} if name in REFLECTED_TRANSITIONS else {}
        model = RecurrentNet(INPUT_SIZE, n, OUTPUT_SIZE, transition=name, **options)
    return model.to(device)


def sequence_batch(steps: int, batch: int, device: torch.device, seed: int = 1):
    """A fixed (inputs, targets) pair of shape (T, B, 16) each."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(steps, batch, INPUT_SIZE, generator=gen)
    y = torch.randn(steps, batch, OUTPUT_SIZE, generator=gen)
    return x.to(device), y.to(device)


def train_step(model: torch.nn.Module, x, y) -> torch.Tensor:
    """One training step without the optimizer update: zero grads, forward, MSE loss, backward."""
    model.zero_grad(set_to_none=True)
    out, _ = model(x)
    loss = torch.nn.functional.mse_loss(out, y)
    loss.backward()
    return loss
