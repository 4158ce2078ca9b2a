"""A results store filled with SYNTHETIC numbers shaped like a real suite's, for trying the
report's layout (and for its tests) without training anything.

Nothing here is a measurement: the suite is named ``demo-synthetic`` and every run's
environment says ``device_name: "synthetic demo data (not measured)"``.

    python -m stability.report.demo OUT_DIR      # OUT_DIR/demo-synthetic.sqlite, the report, screenshot.png
"""
from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np

from ..config import RunConfig
from ..store import Store

SUITE = "demo-synthetic"
ENV = {"stability": "0.1.0", "torch": "2.13.0+cpu", "python": "3.11", "device": "cpu",
       "device_name": "synthetic demo data (not measured)", "git_commit": "0000000000000000demo", "threads": 4,
       "note": "SYNTHETIC numbers from stability.report.demo, for the layout only: nothing here was measured."}
TRAIN = {"steps": 2000, "optimizer": "rmsprop", "lr": 1e-3, "transition_lr": 1e-4, "clip": 1.0, "batch_size": 128}

# transition, options, time constant of the Jacobian decay (steps), sigma band after training,
# whether it learns the copy task, relative speed
VARIANTS = [
    ("dense", {"init": "xavier"}, 25.0, (0.02, 2.4), False, 1.0),
    ("exprnn", {"init": "henaff"}, 300.0, (1.0, 1.0), True, 1.25),
    ("cayley", {"init": "cayley"}, 260.0, (1.0, 1.0), True, 1.2),
    ("householder", {"reflectors": None}, 280.0, (1.0, 1.0), True, 1.6),
    ("spectral", {"margin": 0.01}, 320.0, (0.99, 1.01), True, 1.4),
    ("spectral", {"margin": 0.1}, 150.0, (0.9, 1.1), True, 1.4),
]
GAPS = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000]


def _config(kind, name, transition, topts, hidden, options, seed, *, definition=None, **extra) -> RunConfig:
    return RunConfig(suite=SUITE, kind=kind, name=name, transition=transition, transition_options=topts,
                     hidden_size=hidden, nonlinearity="tanh", options=options, train=TRAIN if kind == "task" else {},
                     seed=seed, device="cpu", dtype="float32", definition=definition or {},
                     measure={"probes": ["jacobian", "spectrum"], "batch": 8} if kind == "task" else None, **extra)


def _add(st: Store, cfg: RunConfig, rows=None, error: str | None = None) -> None:
    st.start(cfg.id, SUITE, cfg.to_dict(), ENV)
    if error is not None:
        st.fail(cfg.id, error)
    else:
        st.finish(cfg.id, rows)


def _probe_rows(rng, tau, band, split, n, trained: bool):
    rows = []
    tau = tau * (1.0 + 0.08 * rng.standard_normal())
    for g in GAPS:
        rows.append((g, split, "jacobian_spectral", math.exp(-g / tau) * (1 + 0.05 * rng.standard_normal())))
    rows.append((0, split, "half_life", tau * math.log(2)))
    lo, hi = band if trained else ((0.02, 2.0) if band[0] < 0.5 else (1.0, 1.0))
    sv = np.sort(np.linspace(lo, hi, n) * (1 + 0.002 * rng.standard_normal(n)))[::-1] if hi > lo else np.ones(n)
    for i, s in enumerate(sv):
        rows.append((i, split, "singular_value", float(s)))
    rows += [(0, split, "sigma_min", float(sv.min())), (0, split, "sigma_max", float(sv.max()))]
    lyap = np.linspace(-1.0 / tau, -3.0 / tau - 0.05, 16)
    for i, v in enumerate(lyap):
        rows.append((i, split, "lyapunov", float(v)))
    rows.append((0, split, "lyapunov_max", float(lyap[0])))
    return rows


def _copy_rows(rng, vi: int, hidden: int, base: float) -> list[tuple]:
    tr, topts, tau, band, learns, slow = VARIANTS[vi]
    rows = _probe_rows(rng, tau, band, "init", hidden, trained=False)
    rows += _probe_rows(rng, tau * (0.7 if tr == "dense" else 1.1), band, "final", hidden, trained=True)
    escape = (500 + 150 * vi + 60 * rng.standard_normal()) if learns else math.inf
    ce = base
    for step in range(0, 2001, 10):
        ce = base + 2.2 * math.exp(-step / 15)
        if step > escape:
            ce = base * math.exp(-(step - escape) / 120) + 2e-4
        ce *= 1 + 0.04 * rng.standard_normal()
        rows.append((step, "train", "ce", ce))
        rows.append((step, "train", "step_time", 0.012 * slow * (1 + 0.05 * abs(rng.standard_normal()))))
        if step % 200 == 0:
            lo, hi = band
            frac = min(step / 2000, 1)
            rows.append((step, "probe", "sigma_max", 1 + (hi - 1) * frac if tr != "dense" else 2.0 + 0.4 * frac))
            rows.append((step, "probe", "sigma_min", 1 + (lo - 1) * frac if tr != "dense" else 0.02 + 0.01 * frac))
    rows.append((2000, "test", "ce", ce * (1 + 0.05 * rng.standard_normal())))
    rows.append((2000, "test", "accuracy", min(1.0, (0.995 if learns else 0.125) + 0.004 * rng.standard_normal())))
    rows.append((0, "summary", "params", 20000 - (hidden * 3 % 97)))
    rows.append((0, "summary", "wall_time", 30.0 * slow))
    return rows



def fill(path: str | Path, seeds=(0, 1, 2), failed: bool = True) -> Path:
    """Write the synthetic store at ``path`` (replacing nothing: the file must not exist)."""
    path = Path(path)
    if path.exists():
        raise FileExistsError(path)
    st = Store(path)
    for vi, (tr, topts, tau, band, learns, slow) in enumerate(VARIANTS):
        for seed in seeds:
            rng = np.random.default_rng(1000 * vi + seed)
            # -- the Jacobian / gradient-flow probe at initialization
            cfg = _config("probe", "jacobian", tr, topts, 128, {"T": 1000, "batch": 8, "input_size": 8,
                                                                 "input_scale": 1.0}, seed)
            rows = _probe_rows(rng, tau, band, "init", 128, trained=False)
            for t in range(0, 220, 5):
                g = 1e-2 * math.exp(-(220 - t) / tau) * (1 + 0.05 * rng.standard_normal())
                rows.append((t, "init", "grad_norm", g))
            rows.append((0, "summary", "params", 128 * 128))
            _add(st, cfg, rows)

            # -- copy task, equal parameter count
            hidden = 128 if tr == "dense" else (176 if tr == "spectral" else 180)
            base = 10 * math.log(8) / 220
            cfg = _config("task", "copy", tr, topts, hidden, {"T": 200}, seed, match="params", budget=20000,
                          definition={"task": "copy", "T": 200, "K": 10, "baseline": round(base, 6),
                                      "baseline_metric": "ce", "chance_accuracy": 0.125,
                                      "thresholds": [{"metric": "ce", "value": 0.1, "relative": True}]})
            if failed and tr == "dense" and seed == seeds[-1]:
                _add(st, cfg, error="Traceback (most recent call last):\n  File \"stability/train.py\", line 88, in train\n"
                             "    raise FloatingPointError(msg)\nFloatingPointError: loss is NaN at step 812 "
                             "(clip 1.0, lr 0.001)")
            else:
                _add(st, cfg, _copy_rows(rng, vi, hidden, base))

            # -- adding task at three hidden sizes (speed figure)
            for n in (64, 128, 256):
                cfg = _config("task", "adding", tr, topts, n, {"T": 200, "markers": "halves"}, seed,
                              definition={"task": "adding", "T": 200, "markers": "halves", "baseline": 1 / 6,
                                          "baseline_metric": "mse",
                                          "thresholds": [{"metric": "mse", "value": 0.05, "relative": False}]})
                rows = []
                start = (300 + 80 * vi + 30 * rng.standard_normal()) if learns else math.inf
                for step in range(0, 2001, 20):
                    mse = 0.167 if step < start else max(0.167 * math.exp(-(step - start) / 150), 2e-3)
                    rows.append((step, "train", "mse", mse * (1 + 0.05 * rng.standard_normal())))
                    t = 1e-3 * slow * (n / 64) ** 1.6 * (1 + 0.04 * abs(rng.standard_normal()))
                    rows.append((step, "train", "step_time", t))
                rows.append((2000, "test", "mse", rows[-2][3]))
                rows.append((0, "summary", "params", n * n + 4 * n))
                _add(st, cfg, rows)

            # -- pixel MNIST with the paper's reported accuracies (paper figures, synthetic measured values)
            paper = {"dense": 94.1, "householder": 97.2, "spectral": 97.7}.get(tr)
            if paper is not None and topts.get("margin", 0.01) == 0.01:
                cfg = _config("task", "pixels", tr, topts, 128, {"source": "mnist", "permute": False}, seed,
                              paper={"accuracy": paper, "source": "Spectral-RNN (svdRNN) paper, pixel-MNIST, hidden 128"},
                              definition={"task": "pixels", "source": "mnist", "T": 784, "chance_accuracy": 0.1})
                acc = {"dense": 0.93, "householder": 0.968, "spectral": 0.971}[tr] + 0.003 * rng.standard_normal()
                rows = [(s, "train", "ce", 2.3 * math.exp(-s / 300) + 0.1) for s in range(0, 2001, 50)]
                rows += [(2000, "test", "accuracy", acc), (0, "summary", "params", 16000 + 10 * vi)]
                _add(st, cfg, rows)
    return path


def main(argv=None) -> int:
    """``python -m stability.report.demo [OUT_DIR]``: fill a synthetic store at
    OUT_DIR/demo-synthetic.sqlite (replaced), write its report to OUT_DIR and a screenshot."""
    import argparse

    from . import screenshot, write_report

    p = argparse.ArgumentParser(prog="python -m stability.report.demo")
    p.add_argument("out", nargs="?", default="reports/demo-synthetic")
    p.add_argument("--svg", action="store_true", help="write SVG figures too")
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    store = out / "demo-synthetic.sqlite"
    for suffix in ("", "-wal", "-shm"):
        Path(str(store) + suffix).unlink(missing_ok=True)
    fill(store)
    index = write_report(store, out, suite=SUITE, svg=args.svg)
    print(index)
    try:
        print(screenshot(index, out / "screenshot.png"))
    except Exception as exc:  # noqa: BLE001 - the screenshot is optional here
        print(f"no screenshot: {exc}", file=sys.stderr)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
