"""Timing for ``stability bench``: one timed operation (:class:`Case`), calibration, and
interleaved rounds in shuffled order; quartiles of the per-round ratios."""
from __future__ import annotations

import math
import random
import statistics
import time
from dataclasses import dataclass, field
from typing import Callable

import torch


@dataclass
class Case:
    """One timed operation. ``fn`` does the work once and waits for the device."""
    name: str
    fn: Callable[[], None]
    calls: int = 1
    times: list[float] = field(default_factory=list)  # seconds per call, one per round


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(case: Case, device: torch.device) -> float:
    _sync(device)
    start = time.perf_counter()
    for _ in range(case.calls):
        case.fn()
    _sync(device)  # the clock stops only once the device is done
    return (time.perf_counter() - start) / case.calls


def calibrate(cases: list[Case], device: torch.device, min_time: float, warmup: int) -> None:
    """Warm every case up, then choose its calls per measurement (>= min_time seconds)."""
    for case in cases:
        for _ in range(warmup):
            case.fn()
        _sync(device)
        one = min(_timed(Case(case.name, case.fn), device) for _ in range(2))
        case.calls = max(1, min(1000, math.ceil(min_time / max(one, 1e-9))))


def run_rounds(cases: list[Case], device: torch.device, rounds: int, seed: int,
               log: Callable[[str], None] = lambda s: None) -> list[dict]:
    """Every round times each case once, in a new shuffled order; returns every timing."""
    rng = random.Random(seed)
    rows = []
    for r in range(rounds):
        order = list(cases)
        rng.shuffle(order)
        for pos, case in enumerate(order):
            seconds = _timed(case, device)
            case.times.append(seconds)
            rows.append({"round": r, "position": pos, "case": case.name, "seconds": seconds,
                         "calls": case.calls})
        log(f"round {r + 1}/{rounds} done")
    return rows


def quartiles(values: list[float]) -> tuple[float, float, float]:
    """(q1, median, q3) of the values (inclusive method; all three equal for a single value)."""
    if len(values) == 1:
        return values[0], values[0], values[0]
    q = statistics.quantiles(values, n=4, method="inclusive")
    return q[0], q[1], q[2]
