"""Shared fixtures: the PTB data directory, and a single-threaded torch for timed learning checks."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
PTB_ENV = "STABILITY_PTB_DIR"


@pytest.fixture(scope="session")
def ptb_dir() -> Path:
    """The real PTB directory: $STABILITY_PTB_DIR, else <repo>/../shared/data/ptb; skipped if absent."""
    env = os.environ.get(PTB_ENV)
    path = Path(env).expanduser() if env else (REPO.parent / "shared" / "data" / "ptb").resolve()
    if not path.is_dir():
        source = f"${PTB_ENV}" if env else f"the default location (${PTB_ENV} is not set)"
        pytest.skip(f"PTB data directory {path} (from {source}) does not exist; "
                    f"set ${PTB_ENV} to a directory holding ptb.valid.txt and ptb.test.txt")
    return path


@pytest.fixture
def one_thread():
    """Run a test with one torch thread (robust timings on a shared CPU), then restore."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
