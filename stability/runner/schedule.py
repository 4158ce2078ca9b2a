"""Running a suite: executors (in-process, local processes, dask) and the scheduler.

The parent process writes the store: each run is marked running when submitted, and
finished (rows and status in one transaction) or failed (with its traceback) when its
result arrives; a failing run never stops the suite, and a killed suite keeps every
finished run.
"""
from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import os
import sys
import time
import traceback
from dataclasses import dataclass, field
from typing import Callable

import torch
from tqdm.auto import tqdm

from ..environment import environment
from .execute import execute_run
from .expand import Run, Suite
from .spec import SuiteError

#: runs of at least this many training steps show their own progress bar (with --workers 1)
LONG_RUN_STEPS = 200


@dataclass
class RunSummary:
    total: int = 0
    skipped: int = 0
    finished: int = 0
    failed: int = 0
    wall_time: float = 0.0
    failures: list[tuple[str, str]] = field(default_factory=list)  # (label, error text)

    @property
    def ok(self) -> bool:
        return self.failed == 0


class InlineExecutor(cf.Executor):
    """Runs each submitted call at once, in this process (the ``--workers 1`` executor)."""

    _max_workers = 1

    def submit(self, fn, /, *args, **kwargs):
        fut: cf.Future = cf.Future()
        try:
            fut.set_result(fn(*args, **kwargs))
        except BaseException as exc:
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise
            fut.set_exception(exc)
        return fut


def _init_worker(threads: int) -> None:
    torch.set_num_threads(max(1, threads))


def local_executor(workers: int, threads: int | None = None) -> cf.Executor:
    """A process pool of ``workers`` (spawned; each with ``threads`` or cores/workers torch threads)."""
    if workers <= 1:
        return InlineExecutor()
    threads = threads or max(1, (os.cpu_count() or 1) // workers)
    return cf.ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                                  initializer=_init_worker, initargs=(threads,))


def dask_executor(scheduler: str | None = None, workers: int = 1):
    """(executor, closer) for a dask.distributed cluster at ``scheduler``, or a local one."""
    try:
        from distributed import Client, LocalCluster
    except ImportError as exc:
        raise SuiteError("--executor dask needs dask.distributed: pip install 'stability[dask]' "
                         f"({exc})") from None
    if scheduler:
        try:
            client = Client(scheduler, timeout="15s")
        except (OSError, TimeoutError, ValueError) as exc:
            raise SuiteError(f"cannot reach the dask scheduler at {scheduler!r}: {exc}") from None
        cluster = None
    else:
        cluster = LocalCluster(n_workers=max(1, workers), threads_per_worker=1, processes=True,
                               dashboard_address=None)
        client = Client(cluster)

    def close():
        client.close()
        if cluster is not None:
            cluster.close()

    return client.get_executor(pure=False), close


def _window(executor: cf.Executor, workers: int) -> int:
    n = getattr(executor, "_max_workers", None)
    if isinstance(n, int) and n > 0:
        return n
    client = getattr(executor, "_client", None)
    if client is not None:
        try:
            return max(1, sum(client.nthreads().values()))
        except Exception:  # pragma: no cover
            pass
    return max(1, workers)


def short_label(label: str, width: int = 72) -> str:
    """A run label cut to ``width`` from the left: its end (transition, options, size, seed) is what
    tells the runs of one experiment apart."""
    return label if len(label) <= width else "…" + label[-(width - 1):]


def last_line(text: str) -> str:
    """The last non-empty line of an error text (what a one-line report shows)."""
    lines = [ln for ln in (text or "").strip().splitlines() if ln.strip()]
    return lines[-1].strip() if lines else "(no message)"


def run_suite(suite: Suite, store, *, workers: int = 1, executor: cf.Executor | None = None,
              force: bool = False, progress: bool = True, echo: Callable[[str], None] | None = None,
              window: int | None = None, threads: int | None = None) -> RunSummary:
    """Run every run of ``suite`` not yet finished in ``store`` (all of them with ``force``).

    ``executor``: any ``concurrent.futures.Executor`` (a dask cluster's included); without one,
    ``workers`` local processes (1: in this process). The parent writes the store: each run is
    marked running when submitted and finished (rows and status in one transaction) or failed
    (with its traceback) when its result arrives; a failing run never stops the suite.
    ``threads``: torch threads per run (default: the suite's ``threads``, else torch's default
    in this process and cores/workers in a local pool).
    """
    echo = echo or (lambda msg: tqdm.write(msg, file=sys.stderr))
    terminal = sys.stderr.isatty()  # off a terminal (a log file, CI): one plain line per finished run
    summary = RunSummary(total=len(suite.runs))
    done = set() if force else store.finished_ids()
    todo = [r for r in suite.runs if r.id not in done]
    summary.skipped = len(suite.runs) - len(todo)
    t0 = time.perf_counter()
    if not todo:
        summary.wall_time = time.perf_counter() - t0
        return summary
    own = executor is None
    threads = threads or suite.threads
    ex = executor if executor is not None else local_executor(workers, threads)
    inline = isinstance(ex, InlineExecutor)
    width = window or _window(ex, workers)
    envs: dict[str, dict] = {}
    bar = tqdm(total=len(todo), desc=suite.name, unit="run", disable=not (progress and terminal),
               dynamic_ncols=True, file=sys.stderr)
    count = 0
    pending: dict[cf.Future, Run] = {}
    queue = iter(todo)

    def record(run: Run, fut: cf.Future) -> None:
        nonlocal count
        try:
            result = fut.result()
        except Exception:
            result = {"metrics": None, "error": traceback.format_exc()}
        if result.get("error"):
            store.fail(run.id, result["error"])
            summary.failed += 1
            summary.failures.append((run.label, result["error"]))
            echo(f"FAILED {run.label}: {last_line(result['error'])}")
        else:
            store.finish(run.id, result["metrics"])
            summary.finished += 1
            if progress and not terminal:
                print(f"[{count + 1}/{len(todo)}] finished {run.label} ({result.get('wall_time', 0.0):.1f}s)",
                      flush=True)
        count += 1
        bar.update(1)

    def submit_next() -> bool:
        run = next(queue, None)
        if run is None:
            return False
        dev = run.config.device
        if dev not in envs:
            envs[dev] = environment(dev)
        env = dict(envs[dev])
        if run.runtime.get("data_dir"):
            env["data_dir"] = run.runtime["data_dir"]
        if threads:
            env["threads"] = threads
        store.start(run.id, suite.name, run.config.to_dict(), env)
        if inline:
            bar.set_postfix_str(short_label(run.label), refresh=True)
        long_run = run.config.train.get("steps", 0) >= LONG_RUN_STEPS
        rt = {**run.runtime, "progress": bool(progress and terminal and inline and long_run), "threads": threads}
        fut = ex.submit(execute_run, run.config.to_dict(), rt)
        if inline:
            record(run, fut)
        else:
            pending[fut] = run
        return True

    try:
        while True:
            while len(pending) < width and submit_next():
                pass
            if not pending:
                break
            finished, _ = cf.wait(list(pending), return_when=cf.FIRST_COMPLETED)
            for fut in finished:
                record(pending.pop(fut), fut)
    except BaseException:
        for fut in pending:
            fut.cancel()
        if own:
            ex.shutdown(wait=False, cancel_futures=True)
            own = False
        raise
    finally:
        bar.close()
        if own:
            ex.shutdown(wait=True)
    summary.wall_time = time.perf_counter() - t0
    return summary
