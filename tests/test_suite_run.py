"""Running suites: results in the store, resume, failures, executors (local, process pool, dask),
and a killed run resumed with every run finished exactly once."""
import os
import signal
import subprocess
import sys
import textwrap
import time

import pandas as pd
import pytest
import torch
from torch import nn

from stability import runner as S
from stability.config import config_id
from stability.store import Store, StoreError
from stability.transitions import base as tbase

TINY = textwrap.dedent("""
    name = "tiny"
    hidden_size = 8
    seeds = [0, 1]
    threads = 1
    [train]
    steps = 4
    batch_size = 4
    eval_batches = 1
    [[transition]]
    name = "dense"
    [[transition]]
    name = "spectral"
    options = { reflectors = 4, margin = 0.1 }
    [[experiment]]
    probe = "jacobian"
    options = { T = 10, batch = 2 }
    [[experiment]]
    task = "copy"
    options = { T = 10, K = 2 }
    """)

#: measured, not computed: these differ between two runs of the same config
TIMINGS = ("wall_time", "step_time")


def tiny(tmp_path, text=TINY, name="tiny.toml"):
    path = tmp_path / name
    path.write_text(text)
    return S.load_suite(path, device="cpu")


def values(store: Store) -> pd.DataFrame:
    m = store.metrics()
    m = m[~m.metric.isin(TIMINGS)]
    return m.sort_values(["run_id", "split", "metric", "step"]).reset_index(drop=True)


def test_run_then_resume_then_force(tmp_path):
    suite = tiny(tmp_path)
    store = Store(tmp_path / "r.sqlite")
    summary = S.run_suite(suite, store, progress=False)
    assert (summary.finished, summary.failed, summary.skipped) == (8, 0, 0)
    runs = store.runs()
    assert set(runs.id) == {r.id for r in suite.runs} and set(runs.status) == {"finished"}
    assert runs.config.map(config_id).tolist() == runs.id.tolist()  # the id is the hash of the stored config
    m = store.metrics()
    task_ids = {r.id for r in suite.runs if r.config.kind == "task"}
    probe_ids = {r.id for r in suite.runs if r.config.kind == "probe"}
    for rid in task_ids:
        got = m[m.run_id == rid]
        have = set(zip(got.split, got.metric))
        for split in ("init", "final"):  # the Jacobian and the spectrum before and after training
            for metric in ("jacobian_spectral", "half_life", "decay_rate", "singular_value", "sigma_max"):
                assert (split, metric) in have, (split, metric)
        assert {("train", "loss"), ("valid", "ce"), ("summary", "params"), ("summary", "wall_time")} <= have
    for rid in probe_ids:
        got = m[m.run_id == rid]
        assert set(got.split) == {"init", "summary"}
        assert got[got.metric == "jacobian_spectral"].step.tolist() == list(range(10))  # one row per gap
    params = m[(m.metric == "params")].set_index("run_id").value
    assert params[next(iter(probe_ids))] > 0

    before = values(store)
    started = store.runs().set_index("id").started
    again = S.run_suite(suite, store, progress=False)
    assert (again.finished, again.skipped) == (0, 8)
    pd.testing.assert_frame_equal(values(store), before)
    assert store.runs().set_index("id").started.equals(started)

    forced = S.run_suite(suite, store, progress=False, force=True)
    assert forced.finished == 8
    after = values(store)
    assert len(after) == len(before)  # rerun, never duplicated
    pd.testing.assert_frame_equal(after, before)  # seeded: the same numbers again


def test_failing_run_is_recorded_and_the_suite_goes_on(tmp_path, monkeypatch):
    class Broken(tbase.Transition):
        def __init__(self, n):
            super().__init__(n)
            self.w = nn.Parameter(torch.eye(n))

        def matrix(self):
            raise RuntimeError("this transition is broken on purpose")

    monkeypatch.setitem(tbase.TRANSITIONS._items, "broken_for_test", Broken)
    text = TINY.replace('name = "dense"', 'name = "broken_for_test"')
    suite = tiny(tmp_path, text)
    store = Store(tmp_path / "r.sqlite")
    summary = S.run_suite(suite, store, progress=False, echo=lambda msg: None)
    assert (summary.finished, summary.failed) == (4, 4)
    runs = store.runs().set_index("id")
    failed = runs[runs.status == "failed"]
    assert set(failed.config.map(lambda c: c["transition"])) == {"broken_for_test"}
    assert all("broken on purpose" in e for e in failed.error)
    assert store.metrics(list(failed.index)).empty
    # a rerun retries the failed runs only
    again = S.run_suite(suite, store, progress=False, echo=lambda msg: None)
    assert (again.skipped, again.failed) == (4, 4)


def test_dask_executor_matches_local(tmp_path):
    distributed = pytest.importorskip("distributed")
    suite = tiny(tmp_path)
    local = Store(tmp_path / "local.sqlite")
    S.run_suite(suite, local, progress=False)
    remote = Store(tmp_path / "dask.sqlite")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                  dashboard_address=None) as cluster, distributed.Client(cluster) as client:
        summary = S.run_suite(suite, remote, executor=client.get_executor(), progress=False)
    assert summary.finished == 8
    assert set(remote.runs().status) == {"finished"}
    pd.testing.assert_frame_equal(values(remote), values(local))


def test_process_pool_matches_local(tmp_path):
    text = TINY.replace("seeds = [0, 1]", "seeds = [0]")
    suite = tiny(tmp_path, text)
    local = Store(tmp_path / "local.sqlite")
    S.run_suite(suite, local, progress=False)
    pool = Store(tmp_path / "pool.sqlite")
    summary = S.run_suite(suite, pool, workers=2, progress=False)
    assert summary.finished == 4
    a, b = values(pool), values(local)
    pd.testing.assert_frame_equal(a.drop(columns="value"), b.drop(columns="value"))
    assert ((a.value - b.value).abs() <= 1e-5 * (1 + b.value.abs())).all()


def test_interrupted_suite_resumes(tmp_path):
    """kill -9 the runner mid-suite; resuming finishes every run exactly once."""
    text = TINY.replace("steps = 4", "steps = 40").replace("seeds = [0, 1]", "seeds = [0, 1, 2]")
    path = tmp_path / "tiny.toml"
    path.write_text(text)
    db = tmp_path / "r.sqlite"
    total = len(S.load_suite(path, device="cpu").runs)
    cmd = [sys.executable, "-m", "stability", "run", str(path), "--store", str(db), "--device", "cpu",
           "--no-report", "--quiet"]
    err = open(tmp_path / "stderr.txt", "w")
    proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=err)
    done_before: set = set()
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                done_before = Store(db, create=False).finished_ids()
            except (FileNotFoundError, StoreError, Exception):
                done_before = set()
            if done_before:
                break
            time.sleep(0.02)
        assert proc.poll() is None, f"the run ended before it could be killed: {(tmp_path / 'stderr.txt').read_text()}"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        err.close()
    store = Store(db)
    killed = store.runs().set_index("id")
    finished_at_kill = set(killed.index[killed.status == "finished"])
    assert done_before <= finished_at_kill and 0 < len(finished_at_kill) < total
    in_flight = set(killed.index[killed.status == "running"])
    assert store.metrics(list(in_flight)).empty  # a run in flight left no rows
    started = killed.started

    from stability.cli import main

    assert main(["run", str(path), "--store", str(db), "--device", "cpu", "--no-report", "--quiet"]) == 0
    runs = store.runs().set_index("id")
    assert len(runs) == total and set(runs.status) == {"finished"}
    for rid in finished_at_kill:  # not run again
        assert runs.started[rid] == started[rid]
    m = store.metrics()
    assert not m.duplicated(["run_id", "step", "split", "metric"]).any()
    summary = m[m.split == "summary"]
    assert (summary.groupby("run_id").size() == 2).all() and summary.run_id.nunique() == total


def test_runs_are_seeded_by_their_seed_only(tmp_path):
    suite = tiny(tmp_path)
    by_seed = {}
    for r in suite.runs:
        if r.config.kind == "task" and r.config.transition == "spectral":
            by_seed[r.config.seed] = r
    results = []
    for outer in (123, 456):  # the caller's RNG state must not matter
        torch.manual_seed(outer)
        results.append(S.execute_run(by_seed[0].config, by_seed[0].runtime)["metrics"])
    other = S.execute_run(by_seed[1].config, by_seed[1].runtime)["metrics"]
    keep = lambda df: df[~df.metric.isin(TIMINGS)].reset_index(drop=True)  # noqa: E731
    pd.testing.assert_frame_equal(keep(results[0]), keep(results[1]))
    a, b = keep(results[0]), keep(other)
    assert len(a) == len(b) and not (a.value == b.value).all()  # another seed, other numbers
    state = torch.random.get_rng_state()
    S.execute_run(by_seed[0].config, by_seed[0].runtime)
    assert torch.equal(torch.random.get_rng_state(), state)  # and the caller's RNG is left alone
