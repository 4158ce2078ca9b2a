"""The shipped quick suite shows what its comments say, on a slice of its own runs (unchanged).

- the Jacobian panel at init: the IRNN, expRNN and Cayley norms stay near 1 out to gap 100,
  the dense (Xavier, ReLU) one vanishes;
- copy (delay 20): Cayley learns it, 95% interval over the seeds below the baseline, and the
  dense RNN stays at the baseline.

The slice: 8 probe runs (T = 300) and the 4 copy runs of Cayley and the dense RNN, both seeds,
exactly as `stability run` runs them (~15 CPU-seconds).
"""
from dataclasses import replace

import numpy as np
import pytest
from scipy import stats

from stability.runner import load_suite, run_suite
from stability.store import Store
from stability.tasks.ptb import PTB_ENV


def kind_of(run) -> str:
    """'dense', 'irnn', 'cayley', ... as the suite's labels say (IRNN: dense with init = identity)."""
    cfg = run.config
    if cfg.transition == "dense" and cfg.transition_options.get("init") == "identity":
        return "irnn"
    return cfg.transition


@pytest.fixture(scope="module")
def quick_slice(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.delenv(PTB_ENV, raising=False)
    try:
        suite = load_suite("quick", device="cpu")
    finally:
        mp.undo()
    probes = [r for r in suite.runs if r.config.kind == "probe" and r.config.name == "jacobian"
              and kind_of(r) in ("dense", "irnn", "exprnn", "cayley")]
    copy = [r for r in suite.runs if r.config.kind == "task" and r.config.name == "copy"
            and kind_of(r) in ("dense", "cayley")]
    runs = probes + copy
    assert len(probes) == 8 and len(copy) == 4, [r.label for r in runs]
    assert {r.config.seed for r in runs} == {0, 1}
    store = Store(tmp_path_factory.mktemp("quick") / "quick.sqlite")
    summary = run_suite(replace(suite, runs=runs), store, workers=1, progress=False, echo=lambda msg: None)
    assert (summary.finished, summary.failed) == (len(runs), 0)
    return runs, store.metrics()


def test_jacobian_at_init_flat_for_identity_and_rotations_vanishing_for_dense(quick_slice):
    runs, m = quick_slice
    norms = m[(m.metric == "jacobian_spectral") & (m.split == "init") & (m.step == 100)].set_index("run_id").value
    for run in runs:
        if run.config.kind != "probe":
            continue
        norm = norms[run.id]
        if kind_of(run) == "dense":
            assert norm < 1e-3, (run.label, norm)  # measured 1.6e-15 and 1.4e-5
        else:
            assert 0.5 < norm < 2.0, (run.label, norm)  # measured 0.91-1.0


def upper_95(x) -> float:
    x = np.asarray(x, dtype=float)
    return float(x.mean() + stats.t.ppf(0.975, len(x) - 1) * x.std(ddof=1) / np.sqrt(len(x)))


def test_copy_cayley_learns_and_the_dense_rnn_stays_at_the_baseline(quick_slice):
    runs, m = quick_slice
    relative = {"dense": [], "cayley": []}
    for run in runs:
        if run.config.kind != "task":
            continue
        definition = run.config.definition
        assert definition["baseline_metric"] == "ce"
        valid = m[(m.run_id == run.id) & (m.split == "valid") & (m.metric == "ce")]
        final = valid[valid.step == valid.step.max()].value.iloc[0]
        assert valid.step.max() == run.config.train["steps"]
        relative[kind_of(run)].append(final / definition["baseline"])
    cayley, dense = relative["cayley"], relative["dense"]
    assert len(cayley) == len(dense) == 2
    assert max(cayley) < 0.5 and upper_95(cayley) < 1.0, cayley  # measured 0.005, 0.007
    assert min(dense) > 0.9, dense  # measured 0.998, 0.982: nothing learned
