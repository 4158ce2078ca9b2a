"""stability.bench (`stability bench`, `python -m stability.bench`) in --quick mode: files and columns."""
import csv
import json
import os
import subprocess
import sys

import pytest
import torch

from stability import bench

FIGURE_KEYS = {"group", "figure", "case", "baseline", "ratio_median", "ratio_q1", "ratio_q3",
               "target", "target_met", "rounds", "per_round"}


def _read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_quick_run_writes_every_output(tmp_path, capsys):
    out = tmp_path / "bench"
    rc = bench.main(["--quick", "--rounds", "2", "--device", "cpu", "--out", str(out),
                     "--allocator", "inherit", "--threads", "1"])
    assert rc == 0
    assert {p.name for p in out.iterdir()} == {"bench.json", "bench.csv", "bench.md", "rounds.csv"}

    rows = _read_csv(out / "bench.csv")
    assert list(rows[0]) == bench.CSV_COLUMNS
    names = bench._builtin_names()
    # (a): 3 ratios; (b): a step ratio and a W share each; (c): the Jacobian curve
    assert len(rows) == 3 + 2 * len(names) + 1
    assert sum(r["group"] == "a" for r in rows) == 3 and sum(r["group"] == "c" for r in rows) == 1
    for r in rows:
        assert float(r["ratio_median"]) > 0 and r["rounds"] == "2" and r["device"] == "cpu"
        assert r["target_met"] == ""  # quick sizes: targets are not applied
    steps = {r["case"] for r in rows if r["baseline"] == "step_torch.nn.RNN"}
    assert steps == {f"step_{n}" for n in names}

    timings = _read_csv(out / "rounds.csv")
    assert list(timings[0]) == bench.ROUND_COLUMNS
    cases = {t["case"] for t in timings}
    assert len(timings) == 2 * len(cases)  # every case once per round
    assert {int(t["position"]) for t in timings} == set(range(len(cases)))

    data = json.loads((out / "bench.json").read_text())
    env = data["environment"]
    for key in ("device_name", "torch", "threads", "allocator", "rounds", "quick"):
        assert key in env
    assert env["threads"] == 1 and env["rounds"] == 2 and env["quick"] is True
    assert env["allocator"]["pinned"] in (True, False)
    assert all(FIGURE_KEYS <= set(f) and len(f["per_round"]) == 2 for f in data["figures"])
    # the compared forms agree before anything is timed (exactly where they compute the same thing;
    # the Jacobian sketch is an estimate: its distance from the exact norms is recorded, in log)
    checks = data["checks"]
    sketch = {k: v for k, v in checks.items() if k.startswith("jacobian_sketch_vs_exact_")}
    assert set(sketch) == {"jacobian_sketch_vs_exact_spectral_max_abs_log_ratio",
                           "jacobian_sketch_vs_exact_frobenius_max_abs_log_ratio"}
    assert all(0 <= v < 0.5 for v in sketch.values())
    assert checks and all(v < 1e-3 for k, v in checks.items() if k not in sketch)

    md = (out / "bench.md").read_text()
    assert "torch " in md and "threads 1" in md and "allocator pinned" in md
    assert md in capsys.readouterr().out


@pytest.mark.slow
def test_pinned_allocator_reexecutes_with_the_variables(tmp_path):
    """`python -m stability.bench` re-runs itself with MALLOC_MMAP_MAX_/MALLOC_TRIM_THRESHOLD_ set."""
    env = {k: v for k, v in os.environ.items() if k not in bench.ALLOCATOR_ENV}
    out = tmp_path / "pinned"
    proc = subprocess.run([sys.executable, "-m", "stability.bench", "--quick", "--rounds", "1",
                           "--device", "cpu", "--out", str(out), "--transitions", "dense",
                           "--threads", "1"], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    alloc = json.loads((out / "bench.json").read_text())["environment"]["allocator"]
    assert alloc["pinned"] is True and alloc["how"].startswith("re-executed")
    assert alloc["MALLOC_MMAP_MAX_"] == "0"


@pytest.mark.parametrize("args", [["--device", "tpu"], ["--rounds", "0"], ["--transitions", "nope"],
                                  ["--transitions", ","], ["--threads", "0"]])
def test_bad_arguments_exit_with_usage_error(args, capsys):
    with pytest.raises(SystemExit) as exc:
        bench.main(["--quick", "--allocator", "inherit", *args])
    assert exc.value.code == 2
    assert "error" in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message where CUDA is absent")
def test_cuda_request_without_cuda_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exc:
        bench.main(["--quick", "--device", "cuda"])
    assert exc.value.code == 2 and "CUDA is not available" in capsys.readouterr().err
