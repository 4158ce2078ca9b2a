"""One run executed: seeded, model built, probe measured or task trained, metric rows returned.

:func:`execute_run` is a plain top-level function, so any ``concurrent.futures.Executor`` can
run it (a local process pool, a dask cluster). It never raises for a failing run: the
traceback comes back as text and the suite goes on. Runs in one process are serialized by a
lock, so threads of an executor cannot interleave their use of the global RNGs; each seeds
Python, NumPy and torch from its seed, so the same seed and device give the same numbers
whichever executor runs it.
"""
from __future__ import annotations

import random
import threading
import time
import traceback

import numpy as np
import pandas as pd
import torch

from .. import probes, tasks
from ..config import RunConfig, config_of
from ..environment import torch_dtype
from ..network import create_network, is_gated
from ..train import PROBE_SEED_OFFSET, train
from .resolve import last_step_mse

_RUN_LOCK = threading.RLock()


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and every CUDA device)."""
    random.seed(seed)
    np.random.seed(seed % 2 ** 32)
    torch.manual_seed(seed)


class threads:
    """Set torch's intra-op threads for the duration of a run (None: leave them)."""

    def __init__(self, n: int | None):
        self.n, self.before = n, None

    def __enter__(self):
        if self.n:
            self.before = torch.get_num_threads()
            torch.set_num_threads(int(self.n))
        return self

    def __exit__(self, *exc):
        if self.before is not None:
            torch.set_num_threads(self.before)
        return False


def execute_run(config: RunConfig | dict, runtime: dict | None = None) -> dict:
    """Run one configuration; never raises for a failing run.

    Returns ``{"metrics": DataFrame or None, "error": traceback text or None, "wall_time": s}``.
    ``runtime``: ``data_dir`` (where the task reads its data), ``threads``, ``progress``.
    """
    runtime = dict(runtime or {})
    with _RUN_LOCK, threads(runtime.get("threads")):
        t0 = time.perf_counter()
        try:
            cfg = config_of(config)
            devices = []
            if cfg.device.startswith("cuda") and torch.cuda.is_available():
                devices = [torch.device(cfg.device).index or 0]
            with torch.random.fork_rng(devices=devices):
                seed_everything(cfg.seed)
                rows, params = (run_probe if cfg.kind == "probe" else run_task)(cfg, runtime)
            wall = time.perf_counter() - t0
            rows.append((0, "summary", "params", float(params)))
            rows.append((0, "summary", "wall_time", wall))
            df = pd.DataFrame(rows, columns=["step", "split", "metric", "value"])
            return {"metrics": df, "error": None, "wall_time": wall}
        except Exception:  # a failing run is recorded, the suite goes on
            return {"metrics": None, "error": traceback.format_exc(), "wall_time": time.perf_counter() - t0}


def build_model(cfg: RunConfig, input_size: int, output_size: int) -> torch.nn.Module:
    """The run's model (:func:`~stability.network.create_network`: a transition's RecurrentNet or a gated
    cell's GatedNet, whose nonlinearities are its own), on its device and in its dtype (built from the
    global RNG: seed first)."""
    own = {} if is_gated(cfg.transition) else {"nonlinearity": cfg.nonlinearity}
    model = create_network(input_size, cfg.hidden_size, output_size, cfg.transition, **own, **cfg.model,
                           **cfg.transition_options)
    return model.to(device=torch.device(cfg.device), dtype=torch_dtype(cfg.dtype))


def _n_params(model) -> int:
    return sum(p.numel() for p in model.parameters())


def run_probe(cfg: RunConfig, runtime: dict | None = None) -> tuple[list[tuple], int]:
    """A probe at init: inputs x ~ input_scale·N(0, 1) drawn from a generator seeded with the seed."""
    probe = probes.get_probe(cfg.name)
    opts = dict(cfg.options)
    inputs = {k: opts.pop(k, v) for k, v in probe.input_options().items()}
    model = build_model(cfg, inputs["input_size"], 1)
    kwargs = {}
    if "x" in probe.inputs:
        gen = torch.Generator().manual_seed(cfg.seed)
        T, batch, isz = inputs["T"], inputs["batch"], inputs["input_size"]
        x = torch.randn(T, batch, isz, generator=gen, dtype=torch.float64) * inputs["input_scale"]
        kwargs["x"] = x.to(device=torch.device(cfg.device), dtype=torch_dtype(cfg.dtype))
        if "y" in probe.inputs:  # at init, for a regression of the last output on a random target
            kwargs["y"] = torch.randn(batch, 1, generator=gen, dtype=torch.float64).to(kwargs["x"])
            kwargs["loss_fn"] = last_step_mse
    rows = probes.measure(probe.name, model, "init", options=opts, **kwargs)
    return rows, _n_params(model)


def _task_measure(cfg: RunConfig, model, task, split: str) -> list[tuple]:
    """The run's ``measure`` probes on one fixed batch of the task (the same at init and final)."""
    rows: list[tuple] = []
    names = (cfg.measure or {}).get("probes", [])
    if not names:
        return rows
    x = y = None
    if any(probes.get_probe(p).inputs for p in names):
        gen = torch.Generator().manual_seed(cfg.seed + PROBE_SEED_OFFSET)
        x, y = task.sample(cfg.measure["batch"], gen)
        param = next(model.parameters())
        x, y = x.to(param.device), y.to(param.device)
        if x.is_floating_point():
            x = x.to(param.dtype)
    for p in names:
        inputs = probes.get_probe(p).inputs
        supplied = {"x": x, "loss_fn": task.loss, "y": y}
        rows += probes.measure(p, model, split, **{k: v for k, v in supplied.items() if k in inputs})
    return rows


def run_task(cfg: RunConfig, runtime: dict | None = None) -> tuple[list[tuple], int]:
    """A task run: measured at init, trained with :func:`stability.train.train`, measured again."""
    runtime = runtime or {}
    kwargs = dict(cfg.options)
    if runtime.get("data_dir"):
        kwargs["data_dir"] = runtime["data_dir"]
    task = tasks.create(cfg.name, **kwargs)
    model = build_model(cfg, int(task.input_size), int(task.output_size))
    rows = _task_measure(cfg, model, task, "init")
    options = dict(cfg.train)
    steps = options.pop("steps")
    log = train(model, task, steps, **options, seed=cfg.seed, progress=bool(runtime.get("progress", False)))
    if log is not None and len(log):
        rows += [(int(s), str(sp), str(m), float(v))
                 for s, sp, m, v in log[["step", "split", "metric", "value"]].itertuples(index=False, name=None)]
    rows += _task_measure(cfg, model, task, "final")
    return rows, _n_params(model)
