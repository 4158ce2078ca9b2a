"""What the ``stability`` commands share: exit codes, the one-line user error, small formatters."""
from __future__ import annotations

import sys

EXIT_OK, EXIT_FAILED_RUNS, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


class CLIError(Exception):
    """A user error: printed as one line, exit status 2."""


def error_line(msg: str) -> None:
    print(f"stability: error: {msg}", file=sys.stderr)


def duration(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.1f}s"
    m, s = divmod(int(round(seconds)), 60)
    if m < 60:
        return f"{m}m{s:02d}s"
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m"


def device_or_error(device: str | None) -> str:
    from .environment import resolve_device

    try:
        return resolve_device(device)
    except ValueError as exc:
        raise CLIError(str(exc)) from None
