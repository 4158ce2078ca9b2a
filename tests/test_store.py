"""The results store: layout, atomic finish, resume semantics, refusing files that are not ours."""
import json
import sqlite3
import threading

import pandas as pd
import pytest

from stability.environment import environment
from stability.store import Store, StoreError


def rows(n, split="train", metric="loss"):
    return pd.DataFrame({"step": range(n), "split": split, "metric": metric, "value": [float(i) for i in range(n)]})


def test_roundtrip(tmp_path):
    s = Store(tmp_path / "a" / "r.sqlite")  # parent folders are created
    cfg = {"suite": "s", "kind": "task", "seed": 1, "options": {"T": 10}}
    s.start("r1", "s", cfg, {"device": "cpu"})
    assert s.status("r1") == "running"
    assert s.finished_ids() == set()
    s.finish("r1", rows(3))
    assert s.status("r1") == "finished"
    assert s.finished_ids() == {"r1"}
    runs = s.runs()
    assert list(runs.id) == ["r1"]
    assert runs.config[0] == cfg and runs.env[0] == {"device": "cpu"}
    assert runs.started[0] <= runs.finished[0]
    m = s.metrics()
    assert list(m.columns) == ["run_id", "step", "split", "metric", "value"]
    assert m.value.tolist() == [0.0, 1.0, 2.0]
    assert s.suites() == ["s"]
    assert s.runs(suite="other").empty


def test_reopen_existing_store(tmp_path):
    path = tmp_path / "r.sqlite"
    Store(path).start("r1", "s", {})
    s2 = Store(path, create=False)
    assert s2.status("r1") == "running"


def test_missing_store_without_create(tmp_path):
    with pytest.raises(FileNotFoundError):
        Store(tmp_path / "nope.sqlite", create=False)
    assert not (tmp_path / "nope.sqlite").exists()


def test_restart_replaces_rows_never_duplicates(tmp_path):
    s = Store(tmp_path / "r.sqlite")
    s.start("r1", "s", {"a": 1})
    s.finish("r1", rows(4))
    s.start("r1", "s", {"a": 1})  # --force: a fresh attempt
    assert s.status("r1") == "running"
    assert s.metrics(["r1"]).empty  # the old rows went with the old attempt
    s.finish("r1", rows(2))
    assert len(s.metrics(["r1"])) == 2
    assert len(s.runs()) == 1


def test_fail_keeps_error_and_drops_partial_rows(tmp_path):
    s = Store(tmp_path / "r.sqlite")
    s.start("r1", "s", {})
    s.fail("r1", "Traceback ...\nValueError: boom")
    assert s.status("r1") == "failed"
    assert "boom" in s.runs().error[0]
    assert "r1" not in s.finished_ids()
    s.start("r1", "s", {})  # a rerun retries it
    s.finish("r1", rows(1))
    assert s.runs().error[0] is None


def test_finish_unknown_run_writes_nothing(tmp_path):
    s = Store(tmp_path / "r.sqlite")
    with pytest.raises(KeyError):
        s.finish("ghost", rows(3))
    assert s.metrics().empty  # the transaction was rolled back


def test_finish_checks_columns(tmp_path):
    s = Store(tmp_path / "r.sqlite")
    s.start("r1", "s", {})
    with pytest.raises(ValueError, match="value"):
        s.finish("r1", pd.DataFrame({"step": [0], "split": ["x"], "metric": ["m"]}))
    assert s.status("r1") == "running"


def test_metric_filters(tmp_path):
    s = Store(tmp_path / "r.sqlite")
    for rid in ("a", "b"):
        s.start(rid, "s", {})
        s.finish(rid, pd.concat([rows(2), rows(1, "summary", "params")]))
    assert set(s.metrics(["a"]).run_id) == {"a"}
    assert set(s.metrics(metric="params").metric) == {"params"}
    assert len(s.metrics(["a", "b"], metric="loss")) == 4
    assert s.metrics([]).empty
    # plain tuples work as well as a DataFrame
    s.start("c", "s", {})
    s.finish("c", [(0, "summary", "wall_time", 1.5), (0, "summary", "params", None)])
    m = s.metrics(["c"]).set_index("metric")
    assert m.loc["wall_time", "value"] == 1.5 and pd.isna(m.loc["params", "value"])


def test_concurrent_writers(tmp_path):
    """Threads (each with its own connections) writing at once lose nothing."""
    path = tmp_path / "r.sqlite"
    Store(path)
    errors = []

    def work(k):
        try:
            s = Store(path)
            for i in range(5):
                rid = f"w{k}-{i}"
                s.start(rid, "s", {"k": k, "i": i})
                s.finish(rid, rows(20))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    s = Store(path)
    assert len(s.finished_ids()) == 20
    m = s.metrics()
    assert len(m) == 400
    assert not m.duplicated(["run_id", "step", "split", "metric"]).any()


@pytest.mark.parametrize("content", [
    b"just some text, not a database\n" * 10,
    b"SQLite format 3\x00" + b"\xff" * 2000,  # the right header, then garbage
])
def test_refuses_files_that_are_not_stores(tmp_path, content):
    path = tmp_path / "r.sqlite"
    path.write_bytes(content)
    with pytest.raises(StoreError, match="left untouched|corrupt|not a stability"):
        Store(path)
    assert path.read_bytes() == content  # never overwritten


def test_refuses_a_foreign_sqlite_file(tmp_path):
    path = tmp_path / "other.sqlite"
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE people (name TEXT)")
    con.commit()
    con.close()
    before = path.read_bytes()
    with pytest.raises(StoreError, match="not a stability results store"):
        Store(path)
    assert path.read_bytes() == before


def test_refuses_a_directory(tmp_path):
    with pytest.raises(StoreError, match="directory"):
        Store(tmp_path)


def test_environment_fields():
    env = environment("cpu")
    for key in ("stability", "torch", "python", "threads", "device", "device_name"):
        assert key in env
    assert env["device"] == "cpu"
    json.dumps(env)  # storable
