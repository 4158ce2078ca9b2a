"""stability.bench (`stability bench`, `python -m stability.bench`) in --quick mode: files and columns."""
import csv
import importlib.util
import json
import math
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
    alternatives = [a for a in bench.ALTERNATIVES if bench.missing_package(a) is None]
    # (a): 3 ratios + U and the spectral W against one GEMM at two sizes; (b): a step ratio and a W share per transition, a step ratio per
    # alternative; (c): the Jacobian curve on the closed and on the general path
    assert len(rows) == 7 + 2 * len(names) + len(alternatives) + 2
    assert sum(r["group"] == "a" for r in rows) == 7
    assert sorted(r["case"] for r in rows if r["group"] == "c") == ["probe_jacobian_decay",
                                                                   "probe_jacobian_decay_general"]
    for r in rows:
        assert 0 < float(r["ratio_median"]) < math.inf and r["rounds"] == "2" and r["device"] == "cpu"
        assert r["target_met"] == ""  # quick sizes: targets are not applied
    n, t = bench.QUICK.hidden, bench.QUICK.steps
    steps = {r["case"] for r in rows if r["baseline"] == f"step_torch.nn.RNN@n{n}_T{t}"}
    assert steps == {f"step_{m}@n{n}_T{t}" for m in [*names, *alternatives]}

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
    assert {f"orthogonality_{a}_n{n}_max_abs" for a in alternatives} <= set(checks)

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
                                  ["--transitions", ","], ["--threads", "0"], ["--sizes", "256"],
                                  ["--sizes", "0x100"], ["--sizes", "table,"], ["--alternatives", "nope"],
                                  ["--alternatives", ","]])
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


# ----------------------------------------------------------------------------- sizes and alternatives
def test_sizes_spec():
    assert bench.sizes_for("default") == bench.FULL
    assert bench.FULL.training_points == ((128, 1000),)
    assert bench.sizes_for("table").training_points == bench.TABLE_POINTS
    assert bench.TABLE_POINTS == ((64, 1000), (128, 1000), (256, 1000), (256, 100), (512, 100))
    assert bench.sizes_for("table", quick=True).training_points == bench.QUICK_TABLE_POINTS
    custom = bench.sizes_for(" 256x100, 512X100,256x100", quick=True)
    assert custom.training_points == ((256, 100), (512, 100)) and custom.batch == bench.QUICK.batch
    for bad in ("", "256", "0x100", "256x100x2", "tables"):
        with pytest.raises(ValueError, match="NxT"):
            bench.sizes_for(bad)


def _bench_b(out, *extra):
    return bench.main(["--quick", "--rounds", "2", "--device", "cpu", "--out", str(out), "--groups", "b",
                       "--allocator", "inherit", "--threads", "1", *extra])


def test_table_sizes_time_every_alternative_at_every_point(tmp_path, capsys):
    pytest.importorskip("geotorch")
    out = tmp_path / "table"
    assert _bench_b(out, "--sizes", "table", "--transitions", "dense,spectral") == 0
    data = json.loads((out / "bench.json").read_text())
    assert data["environment"]["training_points"] == [list(p) for p in bench.QUICK_TABLE_POINTS]
    assert data["environment"]["skipped"] == []
    figures = data["figures"]
    for n, t in bench.QUICK_TABLE_POINTS:
        at = [f for f in figures if (f["n"], f["T"]) == (n, t)]
        step_models = [f["model"] for f in at if f["baseline"] == f"step_torch.nn.RNN@n{n}_T{t}"]
        assert step_models == ["dense", "spectral", *bench.ALTERNATIVES]
        assert sorted(f["model"] for f in at if f["figure"].startswith("W build share")) == ["dense", "spectral"]
        assert all(0 < r < math.inf for f in at for r in f["per_round"]) and all(len(f["per_round"]) == 2 for f in at)
        for a in bench.ALTERNATIVES:
            assert data["checks"][f"orthogonality_{a}_n{n}_max_abs"] < 1e-5
    # the table: a row per (n, T), torch's maps in one column, geotorch in its own
    md = (out / "bench.md").read_text()
    assert "| n, T | dense | spectral | torch orthogonal (matrix_exp / cayley / householder) | geotorch |" in md
    for n, t in bench.QUICK_TABLE_POINTS:
        row = next(line for line in md.splitlines() if line.startswith(f"| {n}, {t} |"))
        cells = [c.strip() for c in row.strip("|").split("|")]
        torch_maps = [float(v) for v in cells[3].split(" / ")]
        assert len(cells) == 5 and len(torch_maps) == 3
        assert all(0 < float(v) < math.inf for v in [cells[1], cells[2], cells[4], *torch_maps])


def test_missing_geotorch_is_skipped_with_a_note(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "geotorch", None)  # import geotorch -> ImportError
    assert bench.missing_package("geotorch") and bench.missing_package("torch-orthogonal-cayley") is None
    with pytest.raises(ImportError, match=r"stability\[bench\]"):
        bench.alternative_model("geotorch", 4, 8, 4)
    out = tmp_path / "nogeo"
    assert _bench_b(out, "--transitions", "dense") == 0
    err = capsys.readouterr().err
    notes = [line for line in err.splitlines() if "geotorch" in line]
    assert len(notes) == 1 and "stability[bench]" in notes[0] and notes[0].startswith("note: skipping")
    data = json.loads((out / "bench.json").read_text())
    assert data["environment"]["skipped"] == [notes[0].removeprefix("note: skipping the alternative ")]
    models = [f["model"] for f in data["figures"] if f["figure"].startswith("training step")]
    assert models == ["dense", *[a for a in bench.ALTERNATIVES if a != "geotorch"]]
    md = (out / "bench.md").read_text()
    assert "- skipped: geotorch: needs geotorch" in md and "| geotorch |" not in md


def test_alternatives_none_leaves_the_table_to_the_transitions(tmp_path):
    out = tmp_path / "none"
    assert _bench_b(out, "--transitions", "dense", "--alternatives", "none") == 0
    figures = json.loads((out / "bench.json").read_text())["figures"]
    assert {f["model"] for f in figures} == {"dense"}
    assert "| n, T | dense |" in (out / "bench.md").read_text()


@pytest.mark.parametrize("name", bench.ALTERNATIVES)
def test_alternative_keeps_w_orthogonal_and_in_the_graph(name):
    if bench.missing_package(name):
        pytest.skip(bench.missing_package(name))
    torch.manual_seed(0)
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)  # built in float64 (its initial base point included)
    try:
        model = bench.alternative_model(name, 4, 8, 4)
    finally:
        torch.set_default_dtype(default)
    assert bench.orthogonality_error(model) < 1e-12
    out, _ = model(torch.randn(5, 3, 4, dtype=torch.float64))
    out.square().mean().backward()
    original = model.rnn.parametrizations.weight_hh_l0.original
    assert original.grad is not None and original.grad.abs().max() > 0


# ----------------------------------------------------------------------------- the asv suite
def _asv_suite():
    root = os.path.join(os.path.dirname(__file__), os.pardir, "suites", "asv")
    spec = importlib.util.spec_from_file_location("asv_suite", os.path.join(root, "__init__.py"),
                                                  submodule_search_locations=[root])
    package = importlib.util.module_from_spec(spec)
    sys.modules["asv_suite"] = package
    spec.loader.exec_module(package)
    return importlib.import_module("asv_suite.common"), importlib.import_module("asv_suite.bench_training")


def test_asv_training_grid_covers_the_table_and_the_alternatives(monkeypatch):
    monkeypatch.delitem(sys.modules, "asv_suite", raising=False)
    common, training = _asv_suite()
    assert training.TrainStep.param_names == ["model", "T", "n", "device"]
    assert set(common.ALTERNATIVES) == set(bench.ALTERNATIVES) <= set(training.MODELS)
    grid = {(n, t) for t in training.STEPS for n in training.SIZES}
    assert set(bench.TABLE_POINTS) <= grid and {(128, 100), (512, 1000)} <= grid  # the earlier grid too
    for name in [m for m in common.ALTERNATIVES if m != "geotorch"]:
        model = common.make_model(name, 8, torch.device("cpu"))
        w = model.rnn.weight_hh_l0.detach().double()
        assert (w.T @ w - torch.eye(8, dtype=torch.float64)).abs().max() < 1e-5
    monkeypatch.setitem(sys.modules, "geotorch", None)
    with pytest.raises(NotImplementedError, match=r"stability\[bench\]"):  # asv: skipped, n/a
        common.make_model("geotorch", 8, torch.device("cpu"))
