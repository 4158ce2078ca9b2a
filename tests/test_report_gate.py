"""`stability report A --against B --fail-on-regression`: the gate fires at any number of seeds,
and never on timing noise unless asked."""
from __future__ import annotations

import pandas as pd
import pytest

from stability.report import main
from stability.store import Store

from test_report import add, cfg

ADDING = {"task": "adding", "baseline": 1 / 6, "baseline_metric": "mse"}
COPY = {"task": "copy", "baseline": 0.5, "baseline_metric": "ce", "chance_accuracy": 0.1}
LM = {"task": "ptb", "baseline": 6.0, "baseline_metric": "ce"}
#: quality figures per task and transition (a 5× worse store: losses ×5, accuracy ×0.2)
QUALITY = [("adding", ADDING, "dense", {"mse": 0.02}), ("adding", ADDING, "cayley", {"mse": 0.03}),
           ("copy", COPY, "dense", {"accuracy": 0.6, "ce": 0.2}), ("copy", COPY, "spectral", {"accuracy": 0.9, "ce": 0.05}),
           ("ptb", LM, "dense", {"perplexity": 120.0})]
#: gated figures: adding MSE and MSE/baseline, copy accuracy, CE and CE/baseline, perplexity
N_QUALITY = 2 * 2 + 2 * 3 + 1


def gate_store(path, seeds: int, worse: float = 1.0, time_scale: float = 1.0):
    st = Store(path)
    for name, definition, tr, figures in QUALITY:
        for seed in range(seeds):
            rows = [(0, "summary", "params", 300)]
            for metric, v in figures.items():
                v = v * (1 + 0.05 * seed)                       # a spread across seeds
                rows.append((1000, "test", metric, v / worse if metric == "accuracy" else v * worse))
            rows += [(step, "train", "step_time", t * time_scale) for step, t in enumerate((0.010, 0.011, 0.012))]
            add(st, cfg(name=name, transition=tr, seed=seed, suite="gate", definition=definition,
                        options={"T": 10}), rows)
    return path


def _run(tmp_path, a, b, *flags):
    out = tmp_path / f"r{len(list(tmp_path.iterdir()))}"
    return main([str(a), "--against", str(b), "--out", str(out), "--no-svg", *flags]), out


@pytest.mark.parametrize("seeds", [1, 3])
def test_five_times_worse_fails_the_gate(tmp_path, capsys, seeds):
    ref = gate_store(tmp_path / "ref.sqlite", seeds)
    bad = gate_store(tmp_path / "bad.sqlite", seeds, worse=5.0)
    code, out = _run(tmp_path, bad, ref, "--fail-on-regression")
    assert code == 3
    printed = capsys.readouterr().out
    lines = [ln for ln in printed.splitlines() if ln.startswith("  regression: ")]
    assert len(lines) == N_QUALITY and f"{N_QUALITY} regression(s)" in printed
    for figure in ("MSE (test)", "MSE/baseline (test)", "accuracy (test)", "CE (test)", "CE/baseline (test)",
                   "perplexity (test)"):
        assert any(ln.startswith(f"  regression: {figure} ") for ln in lines), figure
    assert any("· copy task — results · spectral: 0.9" in ln and "→ 0.18" in ln for ln in lines)  # before → after
    cmp = pd.read_csv(out / "tables" / "comparison.csv")
    assert cmp["verdict"].tolist()[:N_QUALITY] == ["regression"] * N_QUALITY       # worse rows first
    assert (cmp["verdict"] == "regression").sum() == N_QUALITY
    if seeds > 1:
        assert (cmp.loc[cmp["verdict"] == "regression", "p_holm"] < 0.05).all()
    assert not (cmp["figure"].str.startswith("ms/step") & (cmp["verdict"] == "regression")).any()
    # reported, but no failure, without the flag
    assert _run(tmp_path, bad, ref)[0] == 0


def test_threshold_decides_at_one_seed(tmp_path):
    ref = gate_store(tmp_path / "ref.sqlite", 1)
    slightly = gate_store(tmp_path / "slightly.sqlite", 1, worse=1.05)             # 5% worse
    assert _run(tmp_path, slightly, ref, "--fail-on-regression")[0] == 0
    assert _run(tmp_path, slightly, ref, "--fail-on-regression", "--threshold", "1%")[0] == 3


def test_same_commit_timing_noise_never_fails(tmp_path, capsys):
    ref = gate_store(tmp_path / "ref.sqlite", 2)
    again = gate_store(tmp_path / "again.sqlite", 2, time_scale=1.786)            # ms/step +78.6%
    code, out = _run(tmp_path, again, ref, "--fail-on-regression")
    assert code == 0
    printed = capsys.readouterr().out
    assert "0 regression(s)" in printed and "slower (not gated): ms/step" in printed
    cmp = pd.read_csv(out / "tables" / "comparison.csv")
    timing = cmp[cmp["figure"].str.startswith("ms/step")]
    assert len(timing) == len(QUALITY) and (timing["verdict"] == "slower").all()
    assert not (cmp["verdict"] == "regression").any()
    assert set(cmp.loc[~cmp["figure"].str.startswith("ms/step"), "verdict"]) == {"unchanged"}
    assert cmp["verdict"].tolist()[:len(QUALITY)] == ["slower"] * len(QUALITY)         # listed first
    # asked to gate slowdowns: the same stores fail; a 10% difference is within the noise factor
    assert _run(tmp_path, again, ref, "--fail-on-regression", "--fail-on-slowdown")[0] == 3
    near = gate_store(tmp_path / "near.sqlite", 2, time_scale=1.1)
    code, out = _run(tmp_path, near, ref, "--fail-on-regression", "--fail-on-slowdown")
    cmp = pd.read_csv(out / "tables" / "comparison.csv")
    assert code == 0 and set(cmp.loc[cmp["figure"].str.startswith("ms/step"), "verdict"]) == {"within noise"}


@pytest.mark.parametrize("flag, value, message", [
    ("--threshold", "ten", "'ten' is not a number; the threshold must be a fraction >= 0"),
    ("--time-factor", "0.9", "the time factor must be a number >= 1"),
    ("--alpha", "1.5", "the significance level must be strictly between 0 and 1"),
])
def test_bad_gate_flags_are_named(tmp_path, capsys, flag, value, message):
    with pytest.raises(SystemExit) as exc:
        main([str(tmp_path / "a.sqlite"), flag, value])
    assert exc.value.code == 2 and message in capsys.readouterr().err
