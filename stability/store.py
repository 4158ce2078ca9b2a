"""The results store: one SQLite file (WAL mode), append-only, resumable.

Two tables (layout and metric names: ``docs/contracts.md``):

- ``runs``: id, suite, config (resolved config as JSON), status (``running`` | ``finished``
  | ``failed``), started / finished (Unix time), error text, env (JSON: package version,
  torch version, device name, git commit when available);
- ``metrics``: run_id, step, split, metric, value, in long ("tidy") form.

Every write is one transaction. A run's metric rows and its ``finished`` status are
committed together by :meth:`Store.finish`, so a crash, a Ctrl-C or a killed process leaves
every finished run intact and the run in flight marked ``running`` (not finished), with
none of its rows: a rerun starts it afresh and no row is ever duplicated.
"""
from __future__ import annotations

import json
import os
import sqlite3
import time
from contextlib import closing
from pathlib import Path
from typing import Iterable

import pandas as pd


SCHEMA_VERSION = 1
APPLICATION_ID = 0x53544142  # "STAB": marks a SQLite file as ours

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    suite TEXT NOT NULL,
    config TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('running', 'finished', 'failed')),
    started REAL,
    finished REAL,
    error TEXT,
    env TEXT
);
CREATE TABLE IF NOT EXISTS metrics (
    run_id TEXT NOT NULL REFERENCES runs(id),
    step INTEGER NOT NULL,
    split TEXT NOT NULL,
    metric TEXT NOT NULL,
    value REAL
);
CREATE INDEX IF NOT EXISTS metrics_run ON metrics(run_id);
"""

METRIC_COLUMNS = ["run_id", "step", "split", "metric", "value"]


class StoreError(RuntimeError):
    """The file is not a stability results store, or it is corrupt."""


class Store:
    """A results store at ``path`` (created if missing; refused if it is not ours)."""

    def __init__(self, path: str | os.PathLike, create: bool = True):
        self.path = Path(path)
        if not self.path.exists():
            if not create:
                raise FileNotFoundError(f"results store {str(self.path)!r} does not exist")
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                with closing(self._connect()) as con, con:
                    con.executescript(_SCHEMA)
                    con.execute(f"PRAGMA application_id = {APPLICATION_ID}")
                    con.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            except (OSError, sqlite3.Error) as exc:
                reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
                raise StoreError(f"cannot create the results store {str(self.path)!r}: {reason}"
                                 + (f" ({exc.filename})" if getattr(exc, "filename", None) else "")) from None
        else:
            self._verify()

    # -- plumbing -----------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        con = sqlite3.connect(self.path, timeout=60.0)
        con.execute("PRAGMA journal_mode = WAL")
        con.execute("PRAGMA synchronous = NORMAL")
        return con

    def _verify(self) -> None:
        if self.path.is_dir():
            raise StoreError(f"{str(self.path)!r} is a directory, not a results store")
        try:
            with open(self.path, "rb") as fh:
                header = fh.read(16)
        except OSError as exc:
            raise StoreError(f"cannot read results store {str(self.path)!r}: {exc}") from exc
        if header != b"SQLite format 3\x00":
            raise StoreError(f"{str(self.path)!r} is not a stability results store (not an SQLite file); "
                             "it was left untouched")
        try:
            uri = f"file:{self.path.resolve()}?mode=ro"
            with closing(sqlite3.connect(uri, uri=True)) as con:
                app = con.execute("PRAGMA application_id").fetchone()[0]
                check = con.execute("PRAGMA quick_check").fetchone()[0]
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{str(self.path)!r} is corrupt or not a results store ({exc}); "
                             "it was left untouched") from exc
        if app != APPLICATION_ID:
            raise StoreError(f"{str(self.path)!r} is an SQLite file but not a stability results store; "
                             "it was left untouched")
        if check != "ok":
            raise StoreError(f"{str(self.path)!r} is corrupt (integrity check: {check}); it was left untouched")

    def _execute(self, sql: str, params: Iterable = ()) -> list[tuple]:
        with closing(self._connect()) as con, con:
            return con.execute(sql, tuple(params)).fetchall()

    # -- writing ------------------------------------------------------------------
    def start(self, run_id: str, suite: str, config: dict, env: dict | None = None) -> None:
        """Mark a run as in flight (replacing any earlier unfinished or failed attempt)."""
        with closing(self._connect()) as con, con:
            con.execute("DELETE FROM metrics WHERE run_id = ?", (run_id,))
            con.execute("INSERT OR REPLACE INTO runs (id, suite, config, status, started, finished, error, env) "
                        "VALUES (?, ?, ?, 'running', ?, NULL, NULL, ?)",
                        (run_id, suite, json.dumps(config, sort_keys=True), time.time(),
                         json.dumps(env or {}, sort_keys=True)))

    def finish(self, run_id: str, metrics: pd.DataFrame | Iterable[tuple]) -> None:
        """Write all of a run's metric rows and mark it finished, in one transaction."""
        rows = _metric_rows(run_id, metrics)
        with closing(self._connect()) as con, con:
            con.execute("DELETE FROM metrics WHERE run_id = ?", (run_id,))
            con.executemany("INSERT INTO metrics (run_id, step, split, metric, value) VALUES (?, ?, ?, ?, ?)", rows)
            cur = con.execute("UPDATE runs SET status = 'finished', finished = ?, error = NULL WHERE id = ?",
                              (time.time(), run_id))
            if cur.rowcount != 1:
                raise KeyError(f"run {run_id!r} was never started in {self.path}")

    def fail(self, run_id: str, error: str) -> None:
        """Record a run's error; its partial metrics are discarded."""
        with closing(self._connect()) as con, con:
            con.execute("DELETE FROM metrics WHERE run_id = ?", (run_id,))
            con.execute("UPDATE runs SET status = 'failed', finished = ?, error = ? WHERE id = ?",
                        (time.time(), error, run_id))

    def forget(self, run_id: str) -> None:
        with closing(self._connect()) as con, con:
            con.execute("DELETE FROM metrics WHERE run_id = ?", (run_id,))
            con.execute("DELETE FROM runs WHERE id = ?", (run_id,))

    # -- reading ------------------------------------------------------------------
    def status(self, run_id: str) -> str | None:
        rows = self._execute("SELECT status FROM runs WHERE id = ?", (run_id,))
        return rows[0][0] if rows else None

    def finished_ids(self) -> set[str]:
        return {r[0] for r in self._execute("SELECT id FROM runs WHERE status = 'finished'")}

    def runs(self, suite: str | None = None) -> pd.DataFrame:
        """One row per run; ``config`` and ``env`` parsed into dicts."""
        sql = "SELECT id, suite, config, status, started, finished, error, env FROM runs"
        params: tuple = ()
        if suite is not None:
            sql += " WHERE suite = ?"
            params = (suite,)
        with closing(self._connect()) as con:
            df = pd.read_sql_query(sql + " ORDER BY started", con, params=params)
        df["config"] = df["config"].map(json.loads)
        df["env"] = df["env"].map(lambda s: json.loads(s) if s else {})
        return df

    def metrics(self, run_ids: Iterable[str] | None = None, metric: str | None = None) -> pd.DataFrame:
        """Metric rows in long form (run_id, step, split, metric, value)."""
        sql = "SELECT run_id, step, split, metric, value FROM metrics"
        clauses, params = [], []
        if metric is not None:
            clauses.append("metric = ?")
            params.append(metric)
        if run_ids is not None:
            ids = list(run_ids)
            if not ids:
                return pd.DataFrame(columns=METRIC_COLUMNS)
            clauses.append(f"run_id IN ({', '.join('?' * len(ids))})")
            params.extend(ids)
        if clauses:
            sql += " WHERE " + " AND ".join(clauses)
        with closing(self._connect()) as con:
            return pd.read_sql_query(sql, con, params=params)

    def suites(self) -> list[str]:
        return [r[0] for r in self._execute("SELECT DISTINCT suite FROM runs ORDER BY suite")]


def _metric_rows(run_id: str, metrics) -> list[tuple]:
    if isinstance(metrics, pd.DataFrame):
        missing = {"step", "split", "metric", "value"} - set(metrics.columns)
        if missing:
            raise ValueError(f"metric rows need columns step, split, metric, value; missing {sorted(missing)}")
        it = metrics[["step", "split", "metric", "value"]].itertuples(index=False, name=None)
    else:
        it = metrics
    rows = []
    for step, split, metric, value in it:
        v = float(value) if value is not None else None
        rows.append((run_id, int(step), str(split), str(metric), v))
    return rows


#: metrics that measure time, which differ between two runs of the same config by nature
TIMING_METRICS = ("wall_time", "step_time")


def diff_stores(a: str | os.PathLike, b: str | os.PathLike, *, ignore: Iterable[str] = TIMING_METRICS) -> list[str]:
    """Differences between the finished runs of two stores, bit for bit (timings ignored).

    Runs are matched by id (the hash of the config); for each run in both, every metric row
    ``(step, split, metric)`` must hold the identical float. Returns one line per difference
    (empty: the same results).
    """
    sa, sb = Store(a, create=False), Store(b, create=False)
    ra = sa.runs().set_index("id")
    rb = sb.runs().set_index("id")
    ra, rb = ra[ra.status == "finished"], rb[rb.status == "finished"]
    out = [f"run {i} ({ra.config[i].get('name')}) only in {a}" for i in sorted(set(ra.index) - set(rb.index))]
    out += [f"run {i} ({rb.config[i].get('name')}) only in {b}" for i in sorted(set(rb.index) - set(ra.index))]
    ignore = set(ignore)
    for run_id in sorted(set(ra.index) & set(rb.index)):
        ma, mb = ({(int(r.step), r.split, r.metric): r.value for r in m.itertuples() if r.metric not in ignore}
                  for m in (sa.metrics([run_id]), sb.metrics([run_id])))
        for key in sorted(set(ma) | set(mb)):
            va, vb = ma.get(key), mb.get(key)
            same = va is not None and vb is not None and (va == vb or (va != va and vb != vb))  # NaN == NaN
            if not same:
                out.append(f"run {run_id} {ra.config[run_id].get('name')} {key}: {va!r} vs {vb!r}")
    return out
