"""Where a result was measured, and on what: versions, device name, commit, the device rule.

Used alike by the results store (every run's ``env``), the suite runner and the benchmarks.
"""
from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path

#: dtype names a run may ask for
DTYPES = ("float32", "float64")


def torch_dtype(name: str):
    """The torch dtype of a name in :data:`DTYPES`."""
    import torch

    from .checks import check_choice

    return getattr(torch, check_choice("dtype", name, DTYPES))


def resolve_device(device: str | None) -> str:
    """``auto``/None → ``cuda`` if available else ``cpu``; a CUDA device that is not here → ValueError."""
    import torch

    if device in (None, "", "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    device = str(device)
    if device == "cpu":
        return device
    if device == "cuda" or device.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise ValueError(f"device {device!r} was asked for, but CUDA is not available here "
                             f"(torch {torch.__version__}); use --device cpu")
        if ":" in device:
            idx = device.split(":", 1)[1]
            if not idx.isdigit() or int(idx) >= torch.cuda.device_count():
                raise ValueError(f"device {device!r}: no such CUDA device "
                                 f"({torch.cuda.device_count()} available)")
        return device
    raise ValueError(f"device {device!r} is not known; allowed: auto, cpu, cuda, cuda:N")


def device_name(device) -> str:
    """The GPU's name for a CUDA device; the CPU's model name (from /proc/cpuinfo) otherwise."""
    import torch

    device = torch.device(device)
    if device.type == "cuda" and torch.cuda.is_available():
        return torch.cuda.get_device_name(device)
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def git_commit(cwd: str | os.PathLike | None = None) -> str | None:
    """The commit checked out where the package lives (or at ``cwd``); None outside git."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=cwd or Path(__file__).resolve().parent)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def environment(device: str | None = None) -> dict:
    """What every stored result carries about where it was measured."""
    import torch

    from . import __version__

    env = {
        "stability": __version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "threads": torch.get_num_threads(),
        "device": device or "cpu",
        "device_name": device_name(device or "cpu"),
        "git_commit": git_commit(),
    }
    if env["device"].startswith("cuda") and torch.cuda.is_available():
        env["tf32"] = bool(torch.backends.cuda.matmul.allow_tf32)
    return env
