"""A tiny real suite, run into a store, reported: the report's tables hold the stored values, and the
same seeds give the same stored values bit for bit whichever executor ran them."""
import numpy as np
import pandas as pd
import pytest
from scipy import stats

from stability.report import write_report
from stability.runner import load_suite, run_suite
from stability.store import Store, diff_stores

TINY = """
name = "tiny"
hidden_size = 8
seeds = [0, 1, 2]
threads = 1
[[transition]]
name = "dense"
[[transition]]
name = "spectral"
options = { reflectors = 4, margin = 0.1 }
[[experiment]]
probe = "jacobian"
options = { T = 12, batch = 2 }
[[experiment]]
task = "adding"
options = { T = 8 }
train = { steps = 5, batch_size = 4, eval_batches = 1, eval_every = 0 }
"""


@pytest.fixture(scope="module")
def reported(tmp_path_factory):
    d = tmp_path_factory.mktemp("e2e")
    suite = load_suite(text=TINY, origin="tiny.toml", device="cpu")
    summary = run_suite(suite, Store(d / "a.sqlite"), workers=1, progress=False)
    assert summary.ok and summary.finished == len(suite.runs) == 12
    write_report(d / "a.sqlite", d / "report", suite="tiny")
    return d, suite


def stored(d, name: str, split: str, metric: str) -> dict[str, list[float]]:
    """transition -> the stored value of each seed (the last step of the series), from the store itself."""
    store = Store(d / "a.sqlite")
    runs = store.runs()
    out: dict[str, list[float]] = {}
    for run_id, config in zip(runs.id, runs.config):
        if config["name"] != name:
            continue
        m = store.metrics([run_id])
        m = m[(m.split == split) & (m.metric == metric)].sort_values("step")
        out.setdefault(config["transition"], []).append(float(m.value.iloc[-1]))
    return out


@pytest.mark.parametrize("table, name, split, metric, column", [
    ("task-adding-results", "adding", "valid", "mse", "mse_valid"),
    ("probe-jacobian-stability", "jacobian", "init", "half_life", "half_life_init"),
])
def test_report_tables_hold_the_stored_values(reported, table, name, split, metric, column):
    d, _ = reported
    csv = pd.read_csv(d / "report" / "tables" / f"{table}.csv").set_index("transition")
    for transition, values in stored(d, name, split, metric).items():
        row = csv.loc[transition]
        v = np.asarray(values)
        assert row["n_seeds"] == 3 and row[f"{column}_n"] == 3
        assert row[f"{column}_mean"] == pytest.approx(v.mean(), rel=1e-12)
        assert row[f"{column}_std"] == pytest.approx(v.std(ddof=1), rel=1e-12)
        half = stats.t.ppf(0.975, 2) * v.std(ddof=1) / np.sqrt(3)
        assert row[f"{column}_lo"] == pytest.approx(v.mean() - half, rel=1e-9)
        assert row[f"{column}_hi"] == pytest.approx(v.mean() + half, rel=1e-9)


def test_same_values_in_a_process_pool(reported, tmp_path):
    d, suite = reported
    summary = run_suite(suite, Store(tmp_path / "b.sqlite"), workers=2, threads=1, progress=False)
    assert summary.ok
    assert diff_stores(d / "a.sqlite", tmp_path / "b.sqlite") == []


def test_diff_stores_sees_one_changed_value(reported, tmp_path):
    d, _ = reported
    import shutil
    import sqlite3

    shutil.copy(d / "a.sqlite", tmp_path / "c.sqlite")
    with sqlite3.connect(tmp_path / "c.sqlite") as con:
        con.execute("UPDATE metrics SET value = value * (1 + 1e-15) WHERE rowid = "
                    "(SELECT min(rowid) FROM metrics WHERE metric = 'mse')")
    diff = diff_stores(d / "a.sqlite", tmp_path / "c.sqlite")
    assert len(diff) == 1 and "mse" in diff[0]
