"""Rows of an option grid sort numerically (reflectors 8 before 32 before 64), not as text."""
from stability.config import RunConfig
from stability.report import build_tables, load
from stability.store import Store


def test_grid_rows_sort_numerically(tmp_path):
    store = Store(tmp_path / "s.sqlite")
    for k in (64, 8, 32):
        cfg = RunConfig(suite="s", kind="probe", name="spectrum", transition="spectral",
                        transition_options={"reflectors": k, "margin": 0.1}, hidden_size=64, nonlinearity="relu",
                        options={"input_size": 8}, train={}, seed=0, device="cpu", dtype="float32")
        store.start(cfg.id, "s", cfg.to_dict(), {})
        store.finish(cfg.id, [(0, "init", "sigma_max", 1.0), (0, "init", "sigma_min", 1.0)])
    (table,) = build_tables(load(tmp_path / "s.sqlite"))
    assert [r.config["transition_options"]["reflectors"] for r in table.rows] == [8, 32, 64]
