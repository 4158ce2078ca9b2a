"""`stability speed`: asv's results over commits on an offline page (docs/speed.md).

The end-to-end test builds a throwaway git repository with three commits of a tiny package
(the middle one makes one benchmark 3x slower; the last changes something else), measures
each commit with asv's `existing` environment and `--set-commit-hash`, then checks that the
page names the middle commit as the regression and references only local files.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest

from stability.speed import main
from stability.speed.figures import split_cases
from stability.speed.steps import series_steps

PACKAGE = """\
import time

SLOWDOWN = {slowdown}
VALUE = 1.5


def work(size):
    time.sleep(0.02 * size * SLOWDOWN)


def other(size):
    time.sleep(0.02 * size)
"""

BENCHMARKS = """\
import tinypkg


class Tiny:
    params = [1, 2]
    param_names = ["size"]
    number = 1
    repeat = 4
    rounds = 1
    warmup_time = 0
    min_run_count = 1

    def time_work(self, size):
        tinypkg.work(size)

    def time_other(self, size):
        tinypkg.other(size)


def track_value():
    return tinypkg.VALUE
"""

CONFIG = {
    "version": 1, "project": "tinypkg", "repo": ".", "branches": ["main"], "dvcs": "git",
    "environment_type": "existing", "pythons": ["same"], "benchmark_dir": "benchmarks",
    "env_dir": ".asv/env", "results_dir": ".asv/results", "html_dir": ".asv/html",
}


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.org",
                           "-c", "commit.gpgsign=false", *args],
                          check=True, capture_output=True, text=True).stdout.strip()


def _commit(repo: Path, slowdown: int, message: str, extra: str = "") -> str:
    (repo / "tinypkg" / "__init__.py").write_text(PACKAGE.format(slowdown=slowdown) + extra)
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", message)
    return _git(repo, "rev-parse", "HEAD")


def _asv(repo: Path, env: dict, *args: str) -> None:
    done = subprocess.run([sys.executable, "-m", "asv", *args], cwd=repo, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"asv {' '.join(args)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"


@pytest.fixture(scope="module")
def measured(tmp_path_factory):
    """(repo, [c1, c2, c3]) with asv results for every commit under repo/.asv/results."""
    root = tmp_path_factory.mktemp("speed")
    repo = root / "repo"
    (repo / "tinypkg").mkdir(parents=True)
    (repo / "benchmarks").mkdir()
    (repo / "benchmarks" / "__init__.py").write_text("")
    (repo / "benchmarks" / "bench_tiny.py").write_text(BENCHMARKS)
    (repo / "asv.conf.json").write_text(json.dumps(CONFIG, indent=1))
    (repo / ".gitignore").write_text(".asv/\n__pycache__/\n")
    subprocess.run(["git", "init", "-q", "-b", "main", str(repo)], check=True)
    commits = [_commit(repo, 1, "tiny package"),
               _commit(repo, 3, "work() three times slower"),
               _commit(repo, 3, "a comment, same speed", extra="# unrelated change\n")]
    home = root / "home"
    home.mkdir()
    env = {**os.environ, "HOME": str(home), "ASV_PYTHONPATH": str(repo)}
    _asv(repo, env, "machine", "--yes", "--machine", "testbox")
    for commit in commits:
        _git(repo, "checkout", "-q", commit)
        _asv(repo, env, "run", "--python=same", "--machine", "testbox", "--set-commit-hash", commit)
    _git(repo, "checkout", "-q", "main")
    return repo, commits


class _References(HTMLParser):
    def __init__(self):
        super().__init__()
        self.refs: list[tuple[str, str, str]] = []

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if name in ("src", "href") and value is not None:
                self.refs.append((tag, name, value))


def test_page_marks_the_slow_commit_and_is_offline(measured, tmp_path, capsys):
    repo, (c1, c2, c3) = measured
    out = tmp_path / "page"
    (out / "figures").mkdir(parents=True)
    stale = out / "figures" / "testbox--e9--bench_tiny.Tiny.time_work.png"  # an earlier page's series
    stale.write_bytes(b"old")
    users = out / "figures" / "diagram.png"  # not named like a figure: the user's, kept
    users.write_bytes(b"mine")
    # steps under 50% are left out: the 3x step must be found, timing noise (a loaded CI machine) must not
    assert main(["--results", str(repo / ".asv" / "results"), "--out", str(out), "--threshold", "0.5"]) == 0
    assert f"page {out / 'index.html'}" in capsys.readouterr().out

    steps = pd.read_csv(out / "steps.csv")
    big = steps[steps["ratio"] > 2]
    # both cases of time_work, and only those, got ~3x slower, introduced by the middle commit
    assert sorted(big["case"]) == ["size=1", "size=2"], steps.to_string()
    assert set(big["benchmark"]) == {"bench_tiny.Tiny.time_work"}
    assert set(big["introduced_by"]) == {c2}
    assert big["current"].all() and (big["kind_of_step"] == "regression").all()
    assert big["ratio"].between(2.4, 3.6).all(), big["ratio"].tolist()
    other = steps[steps["benchmark"] != "bench_tiny.Tiny.time_work"]
    assert not (other["ratio"] > 1.5).any(), other.to_string()
    assert not (steps["benchmark"] == "bench_tiny.track_value").any()

    page = (out / "index.html").read_text()
    current = page.split("<h2>Current regressions", 1)[1].split("<h2>", 1)[0]
    assert c2[:8] in current and c1[:8] not in current and c3[:8] not in current
    assert "time_work" in current and "time_other" not in current
    assert "testbox" in page and "existing-py" in page   # machine and environment are named

    parser = _References()
    parser.feed(page)
    assert parser.refs, "the page references its figures"
    for tag, attr, value in parser.refs:
        assert "http" not in value and not value.startswith("//"), (tag, attr, value)
        assert (out / value).is_file(), f"{tag} {attr}={value} is not a file beside the page"
    assert not any(tag in ("script", "link") for tag, _, _ in parser.refs)
    figures = sorted(p.name for p in (out / "figures").iterdir())
    assert any(n.endswith("time_work.png") for n in figures) and any(n.endswith("time_work.svg") for n in figures)
    assert any(n.endswith("track_value.svg") for n in figures)
    assert not stale.exists() and users.read_bytes() == b"mine"


def test_series_steps_uses_asv_detection():
    # a regression still present at the newest commit is "current"
    bounds, current = series_steps([1.0, 1.01, 3.0, 3.02], None)
    assert [(b, a) for b, a, _, _ in bounds] == [(1, 2)] and current == {(1, 2)}
    # one fixed since: a step up then down, nothing current
    bounds, current = series_steps([1.0, 3.0, 1.0], None)
    assert [(b, a, v1 > v0) for b, a, v0, v1 in bounds] == [(0, 1, True), (1, 2, False)]
    assert current == set()
    # flat within the threshold (5%), and too short to judge
    assert series_steps([1.0, 1.02, 0.99, 1.01], None) == ([], set())
    assert series_steps([1.0, float("nan")], None) == ([], set())


def test_split_cases_names_what_differs():
    common, labels = split_cases(["model=a, T=1000, device=cpu", "model=b, T=1000, device=cpu"])
    assert common == "T=1000, device=cpu"
    assert labels == {"model=a, T=1000, device=cpu": "model=a", "model=b, T=1000, device=cpu": "model=b"}


def _error(capsys, argv) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("stability speed: error: "), err
    return err


def test_refuses_missing_empty_and_foreign_folders(tmp_path, capsys):
    missing = tmp_path / "nowhere"
    assert str(missing) in _error(capsys, ["--results", str(missing), "--out", str(tmp_path / "o")])
    empty = tmp_path / "empty"
    (empty / "sub").mkdir(parents=True)
    err = _error(capsys, ["--results", str(empty), "--out", str(tmp_path / "o")])
    assert str(empty) in err and "empty" in err
    # pytest-benchmark's folder: JSON files, but not asv's layout
    foreign = tmp_path / "benchmarks"
    (foreign / "Linux-CPython-3.11-64bit").mkdir(parents=True)
    (foreign / "Linux-CPython-3.11-64bit" / "0001_abc.json").write_text(json.dumps({"machine_info": {}, "benchmarks": []}))
    err = _error(capsys, ["--results", str(foreign), "--out", str(tmp_path / "o")])
    assert str(foreign) in err and "not an asv results folder" in err
    # asv's layout with a file in it that is not an asv results file
    fake = tmp_path / "fake"
    (fake / "box").mkdir(parents=True)
    (fake / "benchmarks.json").write_text(json.dumps({"version": 2}))
    (fake / "box" / "machine.json").write_text(json.dumps({"version": 1, "machine": "box"}))
    (fake / "box" / "abc-existing.json").write_text(json.dumps({"hello": 1}))
    err = _error(capsys, ["--results", str(fake), "--out", str(tmp_path / "o")])
    assert "abc-existing.json" in err and "not an asv results file" in err
    assert not (tmp_path / "o" / "index.html").exists()


def test_module_entry_point_prints_one_line_without_traceback(tmp_path):
    done = subprocess.run([sys.executable, "-m", "stability.speed", "--results", str(tmp_path / "none")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"stability speed: error: results folder {tmp_path / 'none'} does not exist (run asv first; see docs/speed.md)"]
