"""suites/paper.toml holds the Spectral-RNN paper's settings; suites/cpu.toml keeps its comparisons."""
import gzip
import struct
import tomllib
from pathlib import Path

import numpy as np
import pytest

from stability import runner as S
from stability.model import RecurrentNet
from stability.runner import load_suite
from stability.tasks.pixels import MNIST_ENV

ROOT = Path(__file__).resolve().parents[1]
#: every figure a shipped suite may attach, as recorded in docs/protocols.md: pixel-MNIST test
#: accuracy, Spectral-RNN 97.7 (ICML 2018, Table 2, hidden 128); oRNN 97.2 and RNN 94.1 (the
#: paper's ICLR 2018 version)
RECORDED = {("spectral-rnn-60", "accuracy"): 0.977, ("ornn", "accuracy"): 0.972, ("rnn", "accuracy"): 0.941,
            ("lstm", "accuracy"): 0.973}  # docs/protocols.md: the svdRNN ICLR 2018 submission's table


def spec(name: str) -> dict:
    with open(ROOT / "suites" / f"{name}.toml", "rb") as f:
        return tomllib.load(f)


def transitions(s: dict) -> dict:
    return {t.get("label", t["name"]): (t["name"], t.get("options", {})) for t in s["transition"]}


def comparison(e: dict, s: dict) -> tuple:
    """What an experiment compares: kind, name, permuted or not, nonlinearity, regime, who."""
    kind = "probe" if "probe" in e else "task"
    return (kind, e.get(kind), bool(e.get("options", {}).get("permute", False)),
            e.get("nonlinearity", s.get("nonlinearity")), e.get("match", "hidden"),
            tuple(sorted(e.get("transitions", transitions(s)))))


def figures(s: dict) -> dict:
    out = {}
    for e in s["experiment"]:
        for label, figs in e.get("paper", {}).items():
            for metric, value in figs.items():
                if metric != "source":
                    out[(label, metric)] = value
    return out


def test_paper_suite_uses_the_official_settings():
    p = spec("paper")
    assert (p["hidden_size"], p["nonlinearity"]) == (128, "relu")
    t = p["train"]
    assert (t["optimizer"], t["lr"], t["transition_lr"], t["clip"], t["batch_size"]) == ("adam", 1e-3, 1e-3, 0.0, 128)
    tr = transitions(p)
    assert tr["spectral-rnn"] == ("spectral", {"reflectors": 16, "margin": 0.01})
    assert tr["spectral-rnn-60"] == ("spectral", {"reflectors": 60, "margin": 0.01})
    assert {name for name, _ in tr.values()} == {"dense", "householder", "exprnn", "cayley", "spectral", "lstm", "gru"}
    tasks = {e.get("task") for e in p["experiment"]} - {None}
    assert tasks == {"adding", "copy", "pixels", "ptb"}
    adding = [e for e in p["experiment"] if e.get("task") == "adding"]
    assert all(e["options"]["markers"] == "halves" for e in adding)
    assert any(100 in np.atleast_1d(e["options"]["T"]) for e in adding)
    copy_t = {t for e in p["experiment"] if e.get("task") == "copy" for t in e["options"]["T"]}
    assert copy_t == {1000, 2000}
    pixels = [e for e in p["experiment"] if e.get("task") == "pixels"]
    assert {e["options"]["source"] for e in pixels} == {"mnist"}
    assert {e["options"].get("permutation_seed") for e in pixels if e["options"].get("permute")} == {92916}


def test_cpu_suite_keeps_every_comparison_of_the_paper_suite():
    p, c = spec("paper"), spec("cpu")
    assert {comparison(e, p) for e in p["experiment"]} == {comparison(e, c) for e in c["experiment"]}
    assert transitions(p) == transitions(c)  # the same models, reflector counts and margins
    assert (c["hidden_size"], c["nonlinearity"]) == (p["hidden_size"], p["nonlinearity"])
    for key in ("optimizer", "lr", "transition_lr", "clip", "batch_size"):
        assert c["train"][key] == p["train"][key], key
    # only lengths, steps and data shrink
    pixels = [e for e in c["experiment"] if e.get("task") == "pixels"]
    assert {e["options"]["source"] for e in pixels} == {"digits"}
    for e in (e for e in c["experiment"] if e.get("task") == "ptb"):
        assert (e["options"]["train_split"], e["options"]["eval_split"]) == ("valid", "test")


def test_attached_figures_are_the_recorded_ones():
    for name in ("paper", "cpu"):
        s = spec(name)
        assert figures(s) == RECORDED, name
        for e in s["experiment"]:
            for label, figs in e.get("paper", {}).items():
                assert figs["source"], (name, label)
                assert label in e["transitions"], (name, label)  # attached to a run that exists
    for e in spec("cpu")["experiment"]:  # on digits, say so where the figure is printed
        for figs in e.get("paper", {}).values():
            assert "not comparable" in figs["source"]


@pytest.mark.parametrize("suite, inputs, outputs, reflectors", [("paper", 2, 1, 16), ("paper", 1, 10, 60),
                                                               ("cpu", 2, 1, 16), ("cpu", 1, 10, 60)])
def test_parameter_budgets_are_spectral_rnn_s_own(suite, inputs, outputs, reflectors):
    model = RecurrentNet(inputs, 128, outputs, "spectral", reflectors=reflectors, margin=0.01)
    own = sum(p.numel() for p in model.parameters())
    task = "adding" if outputs == 1 else "pixels"
    budgets = {e["budget"] for e in spec(suite)["experiment"] if e.get("task") == task and "budget" in e}
    assert budgets == {own}


def test_cpu_suite_expands_on_the_real_ptb(ptb_dir, monkeypatch):
    monkeypatch.delenv(MNIST_ENV, raising=False)
    s = load_suite("cpu", device="cpu", ptb_dir=ptb_dir)
    assert not [n for n in s.notes if n.startswith("skipping")] and len(s.runs) == len({r.id for r in s.runs})
    kinds = {(r.config.kind, r.config.name) for r in s.runs}
    assert kinds == {("probe", "jacobian"), ("task", "adding"), ("task", "copy"), ("task", "pixels"),
                     ("task", "ptb")}
    attached = [r for r in s.runs if r.config.paper]
    assert {r.config.paper["accuracy"] for r in attached} == set(RECORDED.values())
    assert all(r.config.name == "pixels" and not r.config.options["permute"] for r in attached)
    params = [r for r in s.runs if r.config.match == "params"]
    assert {r.config.budget for r in params} == {4497, 13494}


def write_idx(path: Path, array: np.ndarray) -> None:
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path.with_name(path.name + ".gz"), "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def test_paper_suite_expands_with_its_data(tmp_path, monkeypatch):
    ptb, mnist = tmp_path / "ptb", tmp_path / "mnist"
    ptb.mkdir(), mnist.mkdir()
    for split in ("train", "valid", "test"):
        (ptb / f"ptb.{split}.txt").write_text(" the cat sat on the mat \n a dog \n" * 100)  # a few epochs of batch 20
    for prefix, n in (("train", 5010), ("t10k", 10)):  # MNIST's validation split takes 5,000
        write_idx(mnist / f"{prefix}-images-idx3-ubyte", np.arange(n * 784).reshape(n, 28, 28) % 256)
        write_idx(mnist / f"{prefix}-labels-idx1-ubyte", np.arange(n) % 10)
    s = load_suite("paper", device="cpu", ptb_dir=ptb, mnist_dir=mnist)
    assert not [n for n in s.notes if n.startswith("skipping")]
    pixels = [r for r in s.runs if r.config.name == "pixels"]
    assert {r.config.definition["T"] for r in pixels} == {784}
    ptb_runs = [r for r in s.runs if r.config.name == "ptb"]
    assert ptb_runs and all(r.config.options.get("train_split", "train") == "train" for r in ptb_runs)
    spectral = [r for r in pixels if r.config.transition == "spectral" and r.config.match == "hidden"
                and not r.config.options.get("permute") and r.config.nonlinearity == "relu"
                and " spectral-rnn-60:" in r.label]  # not the ablations
    assert spectral and all(r.config.paper["accuracy"] == 0.977 for r in spectral)
    assert {r.config.seed for r in s.runs} == {0, 1, 2}
