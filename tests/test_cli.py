"""The `stability` command: run, list, probe, delegation, and clean errors (no tracebacks)."""
import subprocess
import sys
import textwrap
import types

import pytest
import torch

from stability.cli import main
from stability.store import Store

TINY = textwrap.dedent("""
    name = "tiny"
    hidden_size = 8
    threads = 1
    [[transition]]
    name = "dense"
    [[transition]]
    name = "householder"
    [[experiment]]
    probe = "jacobian"
    options = { T = 6, batch = 2 }
    [[experiment]]
    task = "adding"
    options = { T = 6 }
    train = { steps = 2, batch_size = 4, eval_batches = 1 }
    measure = ["spectrum"]
    """)


@pytest.fixture
def suite_file(tmp_path):
    path = tmp_path / "tiny.toml"
    path.write_text(TINY)
    return path


def run(argv, capsys):
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def one_clean_error(err: str, *patterns):
    assert "Traceback" not in err
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("stability: error: "), err
    for p in patterns:
        assert p in lines[0], (p, lines[0])


def test_run_resume_and_dry_run(tmp_path, suite_file, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rc, out, err = run(["run", suite_file, "--device", "cpu", "--no-report", "--quiet"], capsys)
    assert rc == 0, err
    store = Store(tmp_path / "runs" / "tiny.sqlite")  # the default store
    assert len(store.finished_ids()) == 4
    rc, out, err = run(["run", suite_file, "--device", "cpu", "--no-report"], capsys)
    assert rc == 0
    assert "suite tiny" in out and "4 runs on cpu" in out
    assert "resuming: 4 of 4 runs already finished" in out
    assert "done: 0 finished, 0 failed, 4 already there" in out
    rc, out, _ = run(["run", suite_file, "--device", "cpu", "--dry-run", "--only", "householder"], capsys)
    assert rc == 0
    listed = [ln for ln in out.splitlines() if "householder" in ln and not ln.startswith(("suite", "only"))]
    assert len(listed) == 2 and all(len(ln.split()[0]) == 16 for ln in listed)


def test_run_writes_the_report(tmp_path, suite_file, capsys, monkeypatch):
    calls = []

    def write_report(store, out, suite=None, against=None):
        calls.append((str(store), str(out), suite))
        out.mkdir(parents=True, exist_ok=True)
        (out / "index.html").write_text("<html></html>")
        return out / "index.html"

    monkeypatch.setitem(sys.modules, "stability.report", types.SimpleNamespace(write_report=write_report))
    store, out_dir = tmp_path / "s.sqlite", tmp_path / "rep"
    rc, out, err = run(["run", suite_file, "--device", "cpu", "--store", store, "--out", out_dir, "--quiet"], capsys)
    assert rc == 0, err
    assert calls == [(str(store), str(out_dir), "tiny")]
    rc, out, _ = run(["run", suite_file, "--device", "cpu", "--store", store, "--out", out_dir], capsys)
    assert f"report: {out_dir / 'index.html'}" in out


def test_failed_runs_exit_nonzero(tmp_path, capsys, monkeypatch):
    from torch import nn

    from stability.transitions import base

    class Broken(base.Transition):
        def __init__(self, n):
            super().__init__(n)
            self.w = nn.Parameter(torch.eye(n))

        def matrix(self):
            raise RuntimeError("broken on purpose")

    monkeypatch.setitem(base.TRANSITIONS._items, "broken_cli", Broken)
    path = tmp_path / "b.toml"
    path.write_text(TINY.replace('name = "householder"', 'name = "broken_cli"'))
    rc, out, err = run(["run", path, "--device", "cpu", "--store", tmp_path / "s.sqlite", "--no-report"], capsys)
    assert rc == 1
    assert "2 finished, 2 failed" in out and "broken on purpose" in out + err


def test_bad_suite_is_one_clean_line(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text(TINY.replace('name = "dense"', 'name = "dense"\nfoo = 1'))
    store = tmp_path / "s.sqlite"
    rc, out, err = run(["run", bad, "--store", store, "--device", "cpu"], capsys)
    assert rc == 2
    one_clean_error(err, "bad.toml", "unknown key 'foo'", "allowed: name, label, options")
    assert not store.exists()  # refused before anything ran
    bad.write_text("name = 'x'\n[[transition]\n")
    rc, _, err = run(["run", bad, "--device", "cpu"], capsys)
    assert rc == 2
    one_clean_error(err, "TOML syntax error", "line 2")
    rc, _, err = run(["run", tmp_path / "missing.toml"], capsys)
    one_clean_error(err, "does not exist")
    rc, _, err = run(["run", "no-such-suite"], capsys)
    one_clean_error(err, "unknown suite", "quick")


@pytest.mark.parametrize("content", [b"hello, not a database\n", b"SQLite format 3\x00" + b"\x00\xff" * 500])
def test_store_that_is_not_ours(tmp_path, suite_file, capsys, content):
    store = tmp_path / "notes.sqlite"
    store.write_bytes(content)
    rc, _, err = run(["run", suite_file, "--store", store, "--device", "cpu", "--no-report"], capsys)
    assert rc == 2
    one_clean_error(err, "notes.sqlite")
    assert store.read_bytes() == content


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
def test_cuda_without_cuda(suite_file, capsys):
    rc, _, err = run(["run", suite_file, "--device", "cuda"], capsys)
    assert rc == 2
    one_clean_error(err, "CUDA is not available", "--device cpu")
    rc, _, err = run(["probe", "jacobian", "--device", "cuda"], capsys)
    one_clean_error(err, "CUDA is not available")


def test_usage_errors(suite_file, capsys):
    rc, _, err = run(["run", suite_file, "--workers", "0"], capsys)
    one_clean_error(err, "--workers 0")
    rc, _, err = run(["run", suite_file, "--scheduler", "tcp://x:1"], capsys)
    one_clean_error(err, "--scheduler needs --executor dask")
    rc, _, err = run(["run", suite_file, "--ptb-dir", "/no/such/dir"], capsys)
    one_clean_error(err, "does not exist")


def test_list(capsys):
    rc, out, _ = run(["list"], capsys)
    assert rc == 0
    for word in ("transitions", "spectral", "reflectors=None", "margin=0.01", "tasks", "copy", "ptb",
                 "probes", "jacobian", "lyapunov", "suites", "quick", "paper", "cpu"):
        assert word in out, word


def test_probe_jacobian_table(capsys):
    rc, out, err = run(["probe", "jacobian", "--transition", "spectral", "--reflectors", "4", "--margin", "0.1",
                        "--hidden", "8", "--T", "60", "--device", "cpu"], capsys)
    assert rc == 0, err
    assert "spectral(reflectors=4, margin=0.1) hidden=8" in out
    assert "half_life" in out and "decay_rate" in out
    gaps = [int(ln.split()[0]) for ln in out.splitlines() if ln.strip() and ln.split()[0].isdigit()]
    assert gaps == [1, 2, 5, 10, 20, 50, 59]
    rc, out, err = run(["probe", "spectrum", "--transition", "dense", "--hidden", "6", "--device", "cpu"], capsys)
    assert rc == 0 and "sigma_max" in out and "singular_value (6)" in out


def test_probe_bad_options(capsys):
    rc, _, err = run(["probe", "jacobian", "--transition", "spectral", "--reflector", "4"], capsys)
    assert rc == 2
    one_clean_error(err, "unknown option --reflector", "--reflectors")
    rc, _, err = run(["probe", "jacobian", "--transition", "spectral", "--margin", "2", "--hidden", "8",
                      "--device", "cpu"], capsys)
    one_clean_error(err, "margin")
    rc, _, err = run(["probe", "jacobian", "--transition", "nope"], capsys)
    one_clean_error(err, "unknown transition 'nope'", "spectral")


def test_report_and_bench_are_delegated(monkeypatch):
    seen = {}
    for name in ("report", "bench"):
        fake = types.SimpleNamespace(main=lambda argv, name=name: seen.setdefault(name, argv) and 0)
        monkeypatch.setitem(sys.modules, f"stability.{name}", fake)
    assert main(["report", "x.sqlite", "--out", "d"]) == 0
    assert main(["bench", "--quick"]) == 0
    assert seen == {"report": ["x.sqlite", "--out", "d"], "bench": ["--quick"]}


def test_python_dash_m(tmp_path):
    out = subprocess.run([sys.executable, "-m", "stability", "run", "--help"], capture_output=True, text=True,
                         cwd=tmp_path, timeout=120)
    assert out.returncode == 0 and "--workers" in out.stdout and "--no-report" in out.stdout
    out = subprocess.run([sys.executable, "-m", "stability"], capture_output=True, text=True, cwd=tmp_path,
                         timeout=120)
    assert out.returncode == 2 and "run" in out.stdout and "probe" in out.stdout


def test_dask_scheduler_address(tmp_path, suite_file, capsys):
    distributed = pytest.importorskip("distributed")
    store = tmp_path / "d.sqlite"
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                                  dashboard_address=None) as cluster:
        rc, out, err = run(["run", suite_file, "--device", "cpu", "--store", store, "--no-report", "--quiet",
                            "--executor", "dask", "--scheduler", cluster.scheduler_address], capsys)
    assert rc == 0, err
    assert len(Store(store).finished_ids()) == 4


def test_retry_message_after_a_failure(tmp_path, suite_file, capsys):
    from stability import runner as S

    suite = S.load_suite(suite_file, device="cpu")
    store = Store(tmp_path / "s.sqlite")
    store.start(suite.runs[0].id, "tiny", suite.runs[0].config.to_dict())
    store.start(suite.runs[1].id, "tiny", suite.runs[1].config.to_dict())
    store.fail(suite.runs[1].id, "boom")
    rc, out, _ = run(["run", suite_file, "--device", "cpu", "--store", store.path, "--no-report"], capsys)
    assert rc == 0
    assert "retrying 2 run(s) left failed (1) or unfinished (1)" in out
    assert set(store.runs().status) == {"finished"}
