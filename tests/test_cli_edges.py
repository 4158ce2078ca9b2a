"""The rough edges a newcomer hit (issue 16), each refused or said plainly, never a traceback."""
import math
import subprocess
import sys

import pytest

from stability.cli import main
from stability.runner import load_suite
from stability.store import Store

from test_cli import TINY, one_clean_error, run, suite_file  # noqa: F401  (a fixture)


@pytest.mark.parametrize("argv, says", [
    (["probe", "spectrum", "--transition", "spectral", "--margin", "nan", "--hidden", "8"], "margin = nan"),
    (["probe", "spectrum", "--transition", "spectral", "--center", "nan", "--hidden", "8"], "center = nan"),
    (["probe", "jacobian", "--hidden", "8", "--T", "20", "--input-scale", "nan"], "input_scale = nan"),
    (["probe", "jacobian", "--hidden", "8", "--T", "20", "--input-scale", "inf"], "input_scale = inf"),
    (["probe", "jacobian", "--hidden", "8", "--T", "1"], "T >= 2"),
    (["probe", "lyapunov", "--hidden", "8", "--T", "1"], "T >= 2"),
    (["probe", "spectrum", "--hiden", "16"], "did you mean '--hidden'"),
    (["probe", "jacobian", "--hidden", "4", "--methd", "exact"], "did you mean '--method'"),
])
def test_probe_refuses_bad_options_in_one_line(argv, says, capsys):
    rc, out, err = run(argv, capsys)
    assert rc == 2
    one_clean_error(err, says)


def test_probe_takes_its_own_options(capsys):
    rc, out, err = run(["probe", "jacobian", "--hidden", "4", "--T", "12", "--method", "exact"], capsys)
    assert rc == 0, err
    assert "half_life" in out and "‖J‖₂" in out


def test_nan_option_in_a_suite_is_refused_before_running(tmp_path, capsys):
    path = tmp_path / "nan.toml"
    path.write_text(TINY.replace('name = "householder"', 'name = "spectral"\noptions = { margin = nan }'))
    rc, out, err = run(["run", path, "--device", "cpu", "--store", tmp_path / "s.sqlite"], capsys)
    assert rc == 2
    one_clean_error(err, "margin = nan", "finite")
    assert not (tmp_path / "s.sqlite").exists()


def test_store_under_a_file_is_a_clear_error(tmp_path, suite_file, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    rc, out, err = run(["run", suite_file, "--device", "cpu", "--store", blocker / "x.sqlite", "--no-report"], capsys)
    assert rc == 2
    one_clean_error(err, "cannot create the results store", str(blocker))


def test_only_matching_nothing_says_so(suite_file, tmp_path, capsys):
    rc, out, err = run(["run", suite_file, "--device", "cpu", "--store", tmp_path / "s.sqlite", "--only", "nomatch"],
                       capsys)
    assert rc == 2
    one_clean_error(err, "--only 'nomatch' matched none of the 4 runs", "probe:jacobian")


def test_more_workers_than_cores_warns(suite_file, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    rc, out, err = run(["run", suite_file, "--device", "cpu", "--store", tmp_path / "s.sqlite", "--workers", "64",
                        "--dry-run"], capsys)
    assert rc == 0 and "--workers 64 is more than the 2 cores" in err


def test_header_names_the_device_chosen(suite_file, tmp_path, capsys):
    rc, out, err = run(["run", suite_file, "--store", tmp_path / "s.sqlite", "--dry-run"], capsys)
    assert rc == 0 and " runs on cpu," in out and "auto" not in out.splitlines()[0]


def test_merged_grid_points_are_said(tmp_path):
    text = TINY.replace('name = "householder"', 'name = "householder"\n[[transition]]\nname = "householder"\n'
                                                'label = "h2"\noptions = { reflectors = 8 }')
    s = load_suite(text=text, origin="t.toml", device="cpu")
    assert any("h2:householder(reflectors=8)" in n and "resolves to the same config as" in n for n in s.notes)


def test_off_a_terminal_one_line_per_run_and_the_summary(suite_file, tmp_path):
    """Output to a file: no progress-bar codes, one line per finished run, the summary even with -q."""
    cmd = [sys.executable, "-m", "stability", "run", str(suite_file), "--device", "cpu", "--store",
           str(tmp_path / "s.sqlite"), "--no-report"]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "\r" not in out.stdout + out.stderr and "\x1b[" not in out.stdout + out.stderr
    finished = [ln for ln in out.stdout.splitlines() if "] finished " in ln]
    assert len(finished) == 4 and finished[-1].startswith("[4/4]")
    quiet = subprocess.run(cmd + ["--force", "-q"], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert quiet.stdout.strip().splitlines() == [ln for ln in quiet.stdout.strip().splitlines() if ln.startswith("done:")]
    assert quiet.stdout.startswith("done: 4 finished")


def test_report_goes_to_an_ignored_folder_by_default(suite_file, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rc, out, err = run(["run", suite_file, "--device", "cpu", "-q"], capsys)
    assert rc == 0, err
    assert (tmp_path / "runs" / "tiny-report" / "index.html").is_file()
    assert not (tmp_path / "reports").exists()


def test_progress_label_keeps_what_tells_runs_apart():
    from stability.runner.schedule import short_label

    grid = [f"probe:jacobian(T=300, batch=8) spectral-grid:spectral(reflectors={k}, margin={m}) n=64 seed=0"
            for k in (8, 64) for m in (0.01, 0.1)]
    shown = [short_label(label) for label in grid]
    assert len(set(shown)) == len(grid) and all(len(s) <= 72 for s in shown)
    assert short_label("task:copy dense n=8 seed=0") == "task:copy dense n=8 seed=0"


def test_bench_help_describes_every_group(capsys):
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf), pytest.raises(SystemExit):
        main(["bench", "--help"])
    text = " ".join(buf.getvalue().split())
    assert "(a)" in text and "(b)" in text and "(c)" in text and "Jacobian" in text


def test_readme_links_resolve():
    """Every relative link of the README (files and in-page anchors) points at something that exists."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    text = (root / "README.md").read_text(encoding="utf-8")
    anchors = {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-")
               for h in re.findall(r"^#+ (.+)$", text, flags=re.M)}
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if target.startswith(("http://", "https://", "mailto:")):
            continue
        path, _, anchor = target.partition("#")
        if path:
            assert (root / path).exists(), f"README links to a missing file: {target}"
        elif anchor:
            assert anchor in anchors, f"README links to a missing section: #{anchor}"
