"""Suite specs: grid expansion, stable run ids, and bad input refused before anything runs."""
import json
import textwrap
from pathlib import Path

import pytest
import torch

from stability import runner as S
from stability.config import config_id as run_id
from stability.runner import SuiteError, load_suite
from stability.tasks.pixels import MNIST_ENV
from stability.tasks.ptb import PTB_ENV

ROOT = Path(__file__).resolve().parent.parent


def spec(body: str) -> str:
    return textwrap.dedent(body)


BASE = spec("""
    name = "t"
    seeds = [0, 1]
    hidden_size = 8
    [[transition]]
    name = "dense"
    [[transition]]
    name = "spectral"
    options = { reflectors = [2, 4], margin = [0.01, 0.1] }
    [[experiment]]
    probe = "jacobian"
    options = { T = [5, 10], batch = 2 }
    """)


def load(text, tmp_path, name="s.toml", **kw):
    path = tmp_path / name
    path.write_text(text)
    return load_suite(path, device="cpu", **kw)


# ---------------------------------------------------------------------------------------
# grid expansion and ids
# ---------------------------------------------------------------------------------------
def test_grid_expansion(tmp_path):
    s = load(BASE, tmp_path)
    # (dense + 2×2 spectral) × 2 values of T × 2 seeds
    assert len(s.runs) == 5 * 2 * 2
    assert len({r.id for r in s.runs}) == len(s.runs)
    configs = [r.config.to_dict() for r in s.runs]
    spectral = {(c["transition_options"]["reflectors"], c["transition_options"]["margin"])
                for c in configs if c["transition"] == "spectral"}
    assert spectral == {(2, 0.01), (2, 0.1), (4, 0.01), (4, 0.1)}
    assert {c["options"]["T"] for c in configs} == {5, 10}
    assert {c["seed"] for c in configs} == {0, 1}
    c = configs[0]
    # the contract's config shape (docs/contracts.md), with the regime recorded
    for key in ("suite", "kind", "name", "transition", "transition_options", "hidden_size", "nonlinearity",
                "options", "train", "seed", "device", "dtype", "match", "budget"):
        assert key in c, key
    assert c["suite"] == "t" and c["kind"] == "probe" and c["name"] == "jacobian"
    assert c["device"] == "cpu" and c["dtype"] == "float32" and c["match"] == "hidden" and c["budget"] is None
    # resolved: defaults filled in (spectral's center; dense's init)
    assert configs[-1]["transition_options"]["center"] == 1.0
    assert c["transition_options"]["init"] == "xavier"


def test_ids_are_stable_hashes_of_the_config(tmp_path):
    a = load(BASE, tmp_path, "a.toml")
    b = load(BASE, tmp_path, "b.toml")
    assert [r.id for r in a.runs] == [r.id for r in b.runs]
    for r in a.runs:
        again = json.loads(r.config.to_json())  # as stored and read back
        assert run_id(again) == r.id
    # key order in the file, and 1 vs 1.0 for a float option, do not change ids
    reordered = BASE.replace("options = { reflectors = [2, 4], margin = [0.01, 0.1] }",
                             "options = { margin = [0.01, 0.1], reflectors = [2, 4] }")
    assert {r.id for r in load(reordered, tmp_path, "c.toml").runs} == {r.id for r in a.runs}
    one = spec("""
        name = "t"
        [[transition]]
        name = "spectral"
        options = { margin = 0.5, center = %s }
        [[experiment]]
        probe = "spectrum"
        """)
    assert load(one % "2", tmp_path, "d.toml").runs[0].id == load(one % "2.0", tmp_path, "e.toml").runs[0].id
    # any change of what runs changes the id
    changed = load(BASE.replace("batch = 2", "batch = 3"), tmp_path, "f.toml")
    assert not ({r.id for r in changed.runs} & {r.id for r in a.runs})


def test_reference_figures_do_not_change_ids(tmp_path):
    with_paper = BASE + 'paper = { half_life = 3.0, spectral = { half_life = 5.0 } }\n'
    a, b = load(BASE, tmp_path, "a.toml"), load(with_paper, tmp_path, "b.toml")
    assert [r.id for r in a.runs] == [r.id for r in b.runs]
    figs = {r.config.transition: r.config.paper for r in b.runs}
    assert figs == {"dense": {"half_life": 3.0}, "spectral": {"half_life": 5.0}}


def test_duplicate_points_run_once(tmp_path):
    text = spec("""
        name = "t"
        hidden_size = 8
        [[transition]]
        name = "spectral"
        options = { margin = 0.1 }
        [[transition]]
        name = "spectral"
        label = "grid"
        options = { reflectors = [4, 8], margin = 0.1 }
        [[experiment]]
        probe = "spectrum"
        """)
    s = load(text, tmp_path)
    # reflectors default to n = 8: the first entry is the grid's second point
    assert len(s.runs) == 2


def test_experiment_selects_transitions_and_overrides(tmp_path):
    text = spec("""
        name = "t"
        hidden_size = [8, 16]
        [[transition]]
        name = "dense"
        [[transition]]
        name = "householder"
        label = "oRNN"
        [[experiment]]
        probe = "spectrum"
        transitions = ["oRNN"]
        hidden_size = 4
        seeds = [3]
        nonlinearity = "relu"
        [[experiment]]
        probe = "spectrum"
        """)
    s = load(text, tmp_path)
    first = [r.config.to_dict() for r in s.runs if r.config.hidden_size == 4]
    assert [(c["transition"], c["seed"], c["nonlinearity"]) for c in first] == [("householder", 3, "relu")]
    assert sorted(r.config.hidden_size for r in s.runs if r.config.hidden_size != 4) == [8, 8, 16, 16]
    assert any(r.label.startswith("probe:spectrum oRNN:householder n=4") for r in s.runs)


def test_task_experiment_config(tmp_path):
    text = spec("""
        name = "t"
        hidden_size = 8
        train = { lr = 0.01, batch_size = 4 }
        [[transition]]
        name = "dense"
        [[experiment]]
        task = "copy"
        options = { T = [5, 6], K = 2 }
        train = { steps = 3, lr = [0.1, 0.2] }
        paper = { ce = 0.1 }
        """)
    s = load(text, tmp_path)
    assert len(s.runs) == 4
    c = s.runs[0].config.to_dict()
    assert c["kind"] == "task" and c["name"] == "copy"
    assert c["options"]["K"] == 2 and c["options"]["alphabet"] == 8  # task defaults resolved
    assert c["train"]["steps"] == 3 and c["train"]["batch_size"] == 4
    assert {r.config.train["lr"] for r in s.runs} == {0.1, 0.2}  # experiment's grid beats the default
    assert c["definition"]["baseline"] > 0 and c["definition"]["T"] in (5, 6)  # the task's definition
    assert c["measure"]["probes"] == ["jacobian", "spectrum"]
    assert c["paper"] == {"ce": 0.1}


def test_match_params(tmp_path):
    sizing = pytest.importorskip("stability.sizing")
    text = spec("""
        name = "t"
        [[transition]]
        name = "dense"
        [[transition]]
        name = "exprnn"
        [[experiment]]
        probe = "spectrum"
        match = "params"
        budget = [2000, 5000]
        options = { input_size = 2 }
        """)
    s = load(text, tmp_path)
    assert len(s.runs) == 4
    for r in s.runs:
        c = r.config.to_dict()
        assert c["match"] == "params" and c["budget"] in (2000, 5000)
        assert c["hidden_size"] == sizing.hidden_for_budget(c["transition"], c["budget"], 2, 1)
    n = {(r.config.transition, r.config.budget): r.config.hidden_size for r in s.runs}
    assert n[("exprnn", 5000)] > n[("dense", 5000)]  # half the transition parameters: a bigger n
    assert "budget=2000" in s.runs[0].label


def test_only_filters_by_label(tmp_path):
    s = load(BASE, tmp_path, only="dense")
    assert {r.config.transition for r in s.runs} == {"dense"}
    s = load(BASE, tmp_path, only="*reflectors=4*seed=1")
    assert len(s.runs) == 4 and all(r.config.seed == 1 for r in s.runs)


def test_data_tasks_skipped_without_a_directory(tmp_path, monkeypatch):
    monkeypatch.delenv(PTB_ENV, raising=False)
    text = spec("""
        name = "t"
        hidden_size = 8
        [[transition]]
        name = "dense"
        [[experiment]]
        task = "ptb"
        train = { steps = 1 }
        [[experiment]]
        task = "adding"
        options = { T = 4 }
        train = { steps = 1 }
        """)
    s = load(text, tmp_path)
    assert [r.config.name for r in s.runs] == ["adding"]
    assert len(s.notes) == 1 and "--ptb-dir" in s.notes[0]
    with pytest.raises(SuiteError, match="does not exist"):
        load(text, tmp_path, ptb_dir=tmp_path / "missing")


def test_ptb_directory_kept_out_of_the_id(tmp_path, monkeypatch, ptb_dir):
    src = ptb_dir
    monkeypatch.delenv(PTB_ENV, raising=False)
    text = spec("""
        name = "t"
        hidden_size = 8
        [[transition]]
        name = "dense"
        [[experiment]]
        task = "ptb"
        options = { train_split = "valid", eval_split = "test" }
        train = { steps = 1 }
        measure = []
        """)
    a = load(text, tmp_path, ptb_dir=src)
    copy = tmp_path / "elsewhere"
    copy.mkdir()
    for f in ("ptb.valid.txt", "ptb.test.txt"):
        (copy / f).write_bytes((src / f).read_bytes())
    monkeypatch.setenv(PTB_ENV, str(copy))
    b = load(text, tmp_path)
    assert a.runs[0].id == b.runs[0].id
    assert b.runs[0].runtime["data_dir"] == str(copy)
    assert "data_dir" not in a.runs[0].config.to_json()
    assert a.runs[0].config.definition["vocab_size"] > 1000


# ---------------------------------------------------------------------------------------
# shipped suites
# ---------------------------------------------------------------------------------------
def test_shipped_suites_parse():
    shipped = S.shipped_suites()
    assert {"quick", "cpu", "paper"} <= set(shipped)
    for name in ("quick", "cpu", "paper"):
        text, origin = S.suite_source(name)
        spec_ = S.parse_suite(text, origin)
        assert spec_["name"] == name


def test_quick_suite_expands(monkeypatch):
    monkeypatch.delenv(PTB_ENV, raising=False)
    s = load_suite(None, device="cpu")
    assert s.name == "quick"
    transitions = {r.config.transition for r in s.runs}
    assert {"dense", "exprnn", "cayley", "householder", "spectral"} <= transitions
    kinds = {(r.config.kind, r.config.name) for r in s.runs}
    assert {("probe", "jacobian"), ("task", "copy"), ("task", "adding")} <= kinds
    margins = {r.config.transition_options["margin"] for r in s.runs if r.config.transition == "spectral"}
    reflectors = {r.config.transition_options["reflectors"] for r in s.runs
                  if r.config.transition == "spectral"}
    assert len(margins) >= 3 and len(reflectors) >= 3
    assert any("PTB" in n for n in s.notes)


def test_quick_ships_inside_the_package(monkeypatch):
    """An installed package (no source tree) still has its default suite, as package data."""
    monkeypatch.setattr(S.spec, "_suite_dirs", lambda: [Path(S.spec.__file__).parents[1] / "suites"])
    text, origin = S.suite_source(None)
    assert origin.endswith("stability/suites/quick.toml") and 'name = "quick"' in text
    with pytest.raises(SuiteError, match="unknown suite 'paper'"):
        S.suite_source("paper")


def test_cpu_suite_expands(monkeypatch):
    monkeypatch.delenv(PTB_ENV, raising=False)
    monkeypatch.delenv(MNIST_ENV, raising=False)
    s = load_suite("cpu", device="cpu")
    assert s.name == "cpu" and len(s.runs) > 0


# ---------------------------------------------------------------------------------------
# bad input: refused before anything runs, naming the file and the key
# ---------------------------------------------------------------------------------------
def refused(text, tmp_path, *patterns, **kw):
    with pytest.raises(SuiteError) as info:
        load(text, tmp_path, "bad.toml", **kw)
    msg = str(info.value)
    assert "bad.toml" in msg, msg
    for p in patterns:
        assert p in msg, f"{p!r} not in {msg!r}"
    return msg


def test_toml_syntax_error(tmp_path):
    refused(BASE.replace('name = "dense"', 'name = "dense'), tmp_path, "TOML syntax error", "line 6")
    refused("name = \"t\"\n[[transition]\n", tmp_path, "line 2", "column")


def test_unknown_keys(tmp_path):
    refused(BASE.replace("seeds =", "seed ="), tmp_path, "unknown key 'seed'", "did you mean 'seeds'", "allowed:",
            "hidden_size")
    refused(BASE.replace('name = "dense"', 'name = "dense"\nopts = {}'), tmp_path, "unknown key 'opts'",
            "transition[0]", "options")
    refused(BASE.replace("batch = 2", "batch = 2, samples = 3"), tmp_path, "unknown key 'samples'",
            "experiment[0]", "max_gap")  # the probe's own options are listed
    refused(BASE.replace("margin = [0.01, 0.1]", "margn = [0.01, 0.1]"), tmp_path, "unknown key 'margn'",
            "did you mean 'margin'", "reflectors, margin, center")
    refused(BASE.replace('probe = "jacobian"', 'probe = "jacobian"\nstep = 3'), tmp_path, "unknown key 'step'",
            "experiment[0]")


def test_unknown_names(tmp_path):
    refused(BASE.replace('name = "dense"', 'name = "densse"'), tmp_path, "'densse' is not a known transition",
            "available: cayley, dense")
    refused(BASE.replace('probe = "jacobian"', 'probe = "jacobain"'), tmp_path, "'jacobain' is not a known probe",
            "jacobian", "lyapunov")
    refused(BASE.replace('probe = "jacobian"', 'task = "cpy"'), tmp_path, "'cpy' is not a known task",
            "adding, copy")


def test_option_type_and_range(tmp_path):
    # range: the spectral band must stay positive (margin < center)
    refused(BASE.replace("margin = [0.01, 0.1]", "margin = [0.01, 1.0]"), tmp_path, "transition[1]",
            "'spectral'", "margin = 1.0", "center - margin")
    refused(BASE.replace("reflectors = [2, 4]", "reflectors = [2, 40]"), tmp_path, "reflectors=40 is out of range")
    refused(BASE.replace("reflectors = [2, 4]", 'reflectors = "4"'), tmp_path, "reflectors must be an int")
    refused(BASE.replace("batch = 2", "batch = 0"), tmp_path, "experiment[0].options.batch = 0")
    refused(BASE.replace("batch = 2", "batch = 2, max_gap = 2.5"), tmp_path, "experiment[0]")
    refused(BASE.replace("hidden_size = 8", "hidden_size = -8"), tmp_path, "hidden_size = -8")
    refused(BASE.replace("seeds = [0, 1]", 'seeds = ["a"]'), tmp_path, "seeds")


def test_task_options_and_train_checked(tmp_path):
    task = spec("""
        name = "t"
        hidden_size = 8
        [[transition]]
        name = "dense"
        [[experiment]]
        task = "adding"
        options = { T = 4 }
        train = { steps = 2 }
        """)
    refused(task.replace("T = 4", "T = 1"), tmp_path, "experiment[0].options", "'adding'", "T=1")
    refused(task.replace("T = 4", 'T = 4, markers = "middle"'), tmp_path, "markers='middle'", "halves")
    refused(task.replace("T = 4", "T = 4, delay = 3"), tmp_path, "unknown key 'delay'", "allowed: T, markers")
    refused(task.replace("steps = 2", "steps = 2, learning_rate = 0.1"), tmp_path, "unknown key 'learning_rate'",
            "experiment[0].train", "lr")
    refused(task.replace("steps = 2", "steps = 0.5"), tmp_path, "train.steps = 0.5")
    refused(task.replace("steps = 2", "steps = 2, lr = -1"), tmp_path, "train.lr = -1")
    refused(task.replace("steps = 2", 'steps = 2, optimizer = "adamw"'), tmp_path, "optimizer = 'adamw'", "rmsprop")
    refused(task.replace("train = { steps = 2 }", ""), tmp_path, "needs steps")


def test_structure_errors(tmp_path):
    refused(BASE.replace('name = "t"', ""), tmp_path, "needs a name")
    refused(BASE.replace('probe = "jacobian"', 'probe = "jacobian"\ntask = "copy"'), tmp_path, "exactly one")
    refused(BASE + 'transitions = ["nope"]\n', tmp_path, "'nope' is not a [[transition]] label", "dense, spectral")
    refused(BASE + 'match = "params"\n', tmp_path, "needs budget")
    refused(BASE + 'match = "params"\nbudget = 100\nhidden_size = 8\n', tmp_path, "exclude each other")
    refused(BASE + 'match = "flops"\n', tmp_path, "match = 'flops'", "'hidden', 'params'")
    refused(BASE.replace('hidden_size = 8', 'hidden_size = 8\ndevice = "tpu"'), tmp_path, "device = 'tpu'")
    two = BASE.replace('options = { reflectors', 'label = "dense"\noptions = { reflectors')
    refused(two, tmp_path, "label 'dense' is used twice")


def test_missing_suite_file(tmp_path):
    with pytest.raises(SuiteError, match="does not exist"):
        load_suite(tmp_path / "nope.toml")
    with pytest.raises(SuiteError, match="unknown suite 'nope'.*shipped: .*quick"):
        load_suite("nope")


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
def test_cuda_without_cuda(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text(BASE)
    with pytest.raises(SuiteError, match="CUDA is not available"):
        load_suite(path, device="cuda")
    with pytest.raises(SuiteError, match="CUDA is not available"):
        load_suite(path, text=BASE.replace('hidden_size = 8', 'hidden_size = 8\ndevice = "cuda"'))
