"""pytest-benchmark micro-benchmarks (docs/benchmarking.md).

CI runs them once each as ordinary tests (``--benchmark-disable`` is in addopts), and they
assert their results. Real numbers: ``pytest tests/benchmarks --benchmark-enable
--benchmark-only --benchmark-autosave`` (``--benchmark-enable`` overrides the addopts).
"""
import os

import pytest
import torch


def _timing(config) -> bool:
    session = getattr(config, "_benchmarksession", None)
    return session is not None and not session.disabled


@pytest.fixture(autouse=True)
def _fixed_threads(request):
    """Timing: $STABILITY_BENCH_THREADS, else min(4, CPUs). Checks only: one thread, which runs
    fastest and steadiest on a shared CI machine. Restored afterwards."""
    before = torch.get_num_threads()
    if _timing(request.config):
        value = os.environ.get("STABILITY_BENCH_THREADS")
        torch.set_num_threads(int(value) if value else min(4, os.cpu_count() or 1))
    else:
        torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
