"""Figures: drawn and not blank, y-limits per panel, options grids as heatmaps, coinciding lines
named, the 95% band over seeds (only with two or more), values on the float floor, learning
curves with validation, test and baseline, protocol notices."""
from __future__ import annotations

import hashlib
import json
import math

import numpy as np
import pytest
from matplotlib.collections import PolyCollection, QuadMesh
from scipy import stats as scipy_stats

from stability.report import figures_base
from stability.report.data import load
from stability.report.figures import build_figures, protocol_notice, protocol_notices
from stability.report.figures_lines import aggregate
from stability.report.figures_base import add_labels, series_frame
from stability.store import Store

GAPS = [1, 2, 5, 10, 20, 50]


def cfg(kind="probe", name="jacobian", transition="dense", seed=0, topts=None, options=None, definition=None,
        dtype="float32"):
    c = {"suite": "figs", "kind": kind, "name": name, "transition": transition, "transition_options": topts or {},
         "hidden_size": 16, "nonlinearity": "tanh", "options": options or {}, "seed": seed, "device": "cpu",
         "dtype": dtype, "train": {"steps": 100, "optimizer": "adam", "lr": 0.01} if kind == "task" else {}}
    if definition is not None:
        c["definition"] = definition
    return c


def add(store: Store, config: dict, rows) -> str:
    rid = hashlib.sha1(json.dumps(config, sort_keys=True).encode()).hexdigest()[:12]
    store.start(rid, config["suite"], config, {"torch": "2.13.0+cpu", "device": "cpu"})
    store.finish(rid, rows)
    return rid


def jacobian(decay: float, split: str = "init", scale: float = 1.0) -> list[tuple]:
    return [(g, split, "jacobian_spectral", scale * decay ** g) for g in GAPS]


@pytest.fixture
def captured(monkeypatch):
    """The matplotlib Figure of every figure saved, by file stem."""
    figs = {}
    save = figures_base.Canvas.save

    def keep(self, out_dir, name, svg):
        figs[name] = self.fig
        return save(self, out_dir, name, svg)
    monkeypatch.setattr(figures_base.Canvas, "save", keep)
    return figs


def panels(fig) -> dict[str, object]:
    """Axes with a title (heatmap color bars and hidden panels left out), by title."""
    return {ax.get_title(): ax for ax in fig.axes if ax.get_title() and ax.get_visible()}


def bands(ax) -> int:
    return sum(isinstance(c, PolyCollection) for c in ax.collections)


# -- every figure drawn, not blank ------------------------------------------------------
def test_every_figure_drawn_and_not_blank(tmp_path):
    from PIL import Image
    st = Store(tmp_path / "s.sqlite")
    copy_def = {"task": "copy", "baseline": 0.3, "baseline_metric": "ce"}
    for seed in (0, 1):
        for tr, decay in (("dense", 0.5), ("spectral", 0.97)):
            add(st, cfg(transition=tr, seed=seed), jacobian(decay * (1 + 0.01 * seed)))
            rows = jacobian(decay, "init") + jacobian(decay, "final")
            rows += [(s, "train", "ce", 2.0 * math.exp(-s / 40) + 0.01 * seed) for s in range(0, 101, 5)]
            rows += [(s, "valid", "ce", 2.1 * math.exp(-s / 40)) for s in range(0, 101, 25)]
            rows += [(100, "test", "ce", 0.05), (0, "init", "sigma_min", 0.1 if tr == "dense" else 0.99),
                     (0, "init", "sigma_max", 2.0 if tr == "dense" else 1.01)]
            add(st, cfg("task", "copy", tr, seed, definition=copy_def), rows)
    out = tmp_path / "r"
    figs = build_figures(load(st.path), out, svg=False)
    drawn = {f.name for f in figs if f.drawn}
    assert drawn == {"jacobian_norm", "learning_curves_copy", "singular_values_init_final"}
    for f in figs:
        if not f.drawn:
            assert f.reason, f.name
            continue
        with Image.open(out / f.files[0]) as im:
            lo, hi = im.convert("L").getextrema()
            assert im.width > 300 and im.height > 200 and hi - lo > 100, f.name
            # more than a frame and a title: a good share of the pixels is not background
            assert np.mean(np.asarray(im.convert("L")) < 250) > 0.03, f.name


# -- y-limits per panel -------------------------------------------------------------------
def test_each_panel_has_y_limits_fitted_to_its_data(tmp_path, captured):
    st = Store(tmp_path / "s.sqlite")
    add(st, cfg(), jacobian(0.05))                                    # probe: down to 1e-65
    add(st, cfg(transition="spectral"), jacobian(0.3))
    add(st, cfg("task", "copy"), jacobian(0.9))                       # task: only down to 0.005
    add(st, cfg("task", "copy", "spectral"), jacobian(0.95))
    build_figures(load(st.path), tmp_path / "r", svg=False)
    p = panels(captured["jacobian_norm"])
    probe = p["jacobian probe runs, at initialization (2 configurations, 1 seed(s) each)"].get_ylim()
    task = p["copy task runs, at initialization (2 configurations, 1 seed(s) each)"].get_ylim()
    assert 1e-3 < task[0] < 0.005 and 1.0 < task[1] < 2.0, task       # fitted to 0.005 … 1, not to 1e-38
    assert probe[0] < 1e-30 and probe != task


def test_rows_share_limits_only_when_ranges_are_alike(tmp_path, captured):
    st = Store(tmp_path / "s.sqlite")
    add(st, cfg("task", "copy"), jacobian(0.9) + jacobian(0.88, "final"))
    add(st, cfg("task", "adding"), jacobian(0.9) + jacobian(0.2, "final"))
    build_figures(load(st.path), tmp_path / "r", svg=False)
    p = {t.split(" (")[0]: ax.get_ylim() for t, ax in panels(captured["jacobian_norm"]).items()}
    assert p["copy task runs, at initialization"] == p["copy task runs, after training"]
    assert p["adding task runs, at initialization"] != p["adding task runs, after training"]


# -- options grid -------------------------------------------------------------------------
def test_a_grid_of_two_options_is_a_heatmap_not_lines(tmp_path, captured):
    st = Store(tmp_path / "s.sqlite")
    for margin in (0.01, 0.1, 0.5):
        for refl in (4, 8):
            hl = 5.0 * refl                        # the half-life depends on reflectors only
            add(st, cfg(transition="spectral", topts={"margin": margin, "reflectors": refl}),
                jacobian(0.97) + [(0, "init", "half_life", hl)])
    add(st, cfg(transition="dense"), jacobian(0.5) + [(0, "init", "half_life", 1.0)])
    figs = {f.name: f for f in build_figures(load(st.path), tmp_path / "r", svg=False)}
    grid = figs["options_grid_spectral"]
    assert grid.drawn and "margin × reflectors" in grid.title
    ax = next(a for a in captured["options_grid_spectral"].axes if a.get_title())
    assert any(isinstance(c, QuadMesh) for c in ax.collections)
    cells = sorted(t.get_text() for t in ax.texts)
    assert cells == ["20", "20", "20", "40", "40", "40"]
    assert "range 20–40" in ax.get_title()
    jac = figs["jacobian_norm"]
    assert any("summarized in the figure “spectral options grid: margin × reflectors”" in n for n in jac.notes)
    lines = [ln for ln in captured["jacobian_norm"].axes[0].get_lines() if ln.get_label().startswith("spectral")]
    assert len(lines) == 1                         # one line of the six kept


def test_a_half_life_beyond_the_gaps_is_shown_as_a_bound(tmp_path, captured):
    st = Store(tmp_path / "s.sqlite")
    for margin in (0.01, 0.1):
        for refl in (4, 8):
            add(st, cfg(transition="spectral", topts={"margin": margin, "reflectors": refl}),
                jacobian(0.999) + [(0, "init", "half_life", 700.0 if refl == 8 else 20.0)])
    figs = {f.name: f for f in build_figures(load(st.path), tmp_path / "r", svg=False)}
    ax = next(a for a in captured["options_grid_spectral"].axes if a.get_title())
    assert sorted(t.get_text() for t in ax.texts) == ["20", "20", "> 50", "> 50"]
    assert any("extrapolation" in n for n in figs["options_grid_spectral"].notes)


# -- coinciding lines ---------------------------------------------------------------------
def test_identical_series_are_named_and_drawn_distinctly(tmp_path, captured):
    st = Store(tmp_path / "s.sqlite")
    add(st, cfg(transition="exprnn"), jacobian(0.99))
    add(st, cfg(transition="cayley"), jacobian(0.99))                  # the very same numbers
    add(st, cfg(transition="dense"), jacobian(0.5))
    fig = {f.name: f for f in build_figures(load(st.path), tmp_path / "r", svg=False)}["jacobian_norm"]
    assert "coincide exactly" in fig.how_to_read and "exprnn, cayley (jacobian probe" in fig.how_to_read
    lines = {ln.get_label(): ln for ln in captured["jacobian_norm"].axes[0].get_lines()}
    exprnn, cayley = lines["exprnn"], lines["cayley"]
    assert exprnn.get_linewidth() > cayley.get_linewidth()              # thick under thin
    assert exprnn.get_marker() != cayley.get_marker()


def test_different_series_get_no_coincidence_note(tmp_path):
    st = Store(tmp_path / "s.sqlite")
    add(st, cfg(transition="exprnn"), jacobian(0.99))
    add(st, cfg(transition="cayley"), jacobian(0.9))
    fig = {f.name: f for f in build_figures(load(st.path), tmp_path / "r", svg=False)}["jacobian_norm"]
    assert "coincide" not in fig.how_to_read


# -- the band over seeds ---------------------------------------------------------------------
def test_band_with_two_seeds_and_none_with_one(tmp_path, captured):
    st = Store(tmp_path / "two.sqlite")
    for seed, d in ((0, 0.9), (1, 0.8)):
        add(st, cfg(transition="dense", seed=seed), jacobian(d))
    figs = {f.name: f for f in build_figures(load(st.path), tmp_path / "r2", svg=False)}
    assert bands(captured["jacobian_norm"].axes[0]) == 1
    assert not any("1 seed" in n for n in figs["jacobian_norm"].notes)
    st1 = Store(tmp_path / "one.sqlite")
    add(st1, cfg(transition="dense"), jacobian(0.9))
    figs = {f.name: f for f in build_figures(load(st1.path), tmp_path / "r1", svg=False)}
    assert bands(captured["jacobian_norm"].axes[0]) == 0
    assert any(n.startswith("1 seed per configuration: no band") for n in figs["jacobian_norm"].notes)


def test_band_is_the_student_t_interval_of_the_mean(tmp_path):
    st = Store(tmp_path / "s.sqlite")
    values = {0: [-0.10, -0.30], 1: [-0.14, -0.32], 2: [-0.09, -0.25]}   # seed -> exponents (linear axis)
    for seed, v in values.items():
        add(st, cfg(transition="dense", seed=seed), [(i, "init", "lyapunov", x) for i, x in enumerate(v)])
    coll = load(st.path)
    df = add_labels(coll, series_frame(coll, "init", "lyapunov"))
    line, = aggregate(coll, df, log=False)
    for i in range(2):
        x = np.array([values[s][i] for s in values])
        half = scipy_stats.t.ppf(0.975, 2) * x.std(ddof=1) / math.sqrt(3)
        assert line.y[i] == pytest.approx(x.mean(), rel=1e-12)
        assert (line.lo[i], line.hi[i]) == pytest.approx((x.mean() - half, x.mean() + half), rel=1e-12)
    # on a log axis: the geometric mean, the interval on log10 values
    line, = aggregate(coll, df.assign(y=-df["y"]), log=True)
    x = np.log10(np.array([-values[s][0] for s in values]))
    assert line.y[0] == pytest.approx(10 ** x.mean(), rel=1e-12)
    half = scipy_stats.t.ppf(0.975, 2) * x.std(ddof=1) / math.sqrt(3)
    assert line.hi[0] == pytest.approx(10 ** (x.mean() + half), rel=1e-12)


# -- the float floor ------------------------------------------------------------------------
def test_norms_at_the_float32_floor_are_marked_not_plotted_as_values(tmp_path, captured):
    st = Store(tmp_path / "s.sqlite")
    rows = [(1, "init", "jacobian_spectral", 0.1), (2, "init", "jacobian_spectral", 1e-20),
            (5, "init", "jacobian_spectral", 7e-44), (10, "init", "jacobian_spectral", 0.0)]
    add(st, cfg(transition="dense"), rows)
    fig = {f.name: f for f in build_figures(load(st.path), tmp_path / "r", svg=False)}["jacobian_norm"]
    note = next(n for n in fig.notes if "underflow floor" in n)
    assert note.startswith("2 point(s) at or below the float32 underflow floor (1.2e-38")
    ax = captured["jacobian_norm"].axes[0]
    floor = np.finfo(np.float32).tiny
    marks = [ln for ln in ax.get_lines() if ln.get_marker() == "v"]
    assert len(marks) == 1 and np.allclose(marks[0].get_ydata(), floor)
    assert ax.get_ylim()[0] > 1e-42                  # the axis stops near the floor, not at 7e-44


# -- learning curves -------------------------------------------------------------------------
def ptb_definition() -> dict:
    return {"task": "ptb", "baseline": 6.0, "baseline_metric": "ce", "train_split": "valid",
            "baseline_note": "unigram model of the valid file (add-one smoothing), scored on test",
            "note": "trained on the valid file, evaluated on test; not the standard protocol"}


def test_learning_curves_smoothed_with_validation_test_and_baseline(tmp_path, captured):
    st = Store(tmp_path / "s.sqlite")
    rng = np.random.default_rng(0)
    for tr in ("dense", "spectral"):
        for seed in (0, 1):
            ce = [7.5 - s / 100 + 0.3 * rng.standard_normal() for s in range(0, 200, 2)]
            rows = [(s, "train", "ce", c) for s, c in zip(range(0, 200, 2), ce)]
            rows += [(s, "valid", "ce", 7.0 - s / 120) for s in (0, 50, 100, 150)]
            rows += [(s, "valid", "perplexity", math.exp(7.0 - s / 120)) for s in (0, 50, 100, 150)]
            rows += [(200, "test", "ce", 6.1), (200, "test", "perplexity", math.exp(6.1))]
            add(st, cfg("task", "ptb", tr, seed, definition=ptb_definition()), rows)
    coll = load(st.path)
    fig = {f.name: f for f in build_figures(coll, tmp_path / "r", svg=False)}["learning_curves_ptb"]
    assert fig.drawn
    assert any("exponential moving average" in n and "span 12 points ≈ 24 steps" in n for n in fig.notes)
    assert any("exp(ce)" in n for n in fig.notes)                  # the training CE shown as perplexity
    assert fig.notice == protocol_notice(coll, "task", "ptb")
    assert "not the standard protocol" in fig.notice
    f = captured["learning_curves_ptb"]
    assert "not the standard protocol" in " ".join(f.get_suptitle().split())   # visible in the PNG itself
    ax = next(a for a in f.axes if a.get_visible())
    baseline = [ln for ln in ax.get_lines() if ln.get_linestyle() == "--" and ln.get_color() == "black"]
    assert len(baseline) == 1 and baseline[0].get_ydata()[0] == pytest.approx(math.exp(6.0))
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert any(t.startswith("train (smoothed, span 12)") for t in labels) and "valid" in labels
    assert "test" in labels and any(t.startswith("baseline 403: unigram model") for t in labels)
    valid = [ln for ln in ax.get_lines() if ln.get_markerfacecolor() == "white" and len(ln.get_xdata()) == 4]
    assert len(valid) == 2                                          # one validation curve per configuration
    assert "dense, spectral (validation)" in fig.how_to_read         # identical here: named
    assert ax.get_ylabel() == "perplexity"


def test_protocol_notices_only_where_a_definition_has_a_note(tmp_path):
    st = Store(tmp_path / "s.sqlite")
    add(st, cfg("task", "ptb", definition=ptb_definition()), [(0, "train", "ce", 7.0)])
    add(st, cfg("task", "copy", definition={"task": "copy", "baseline": 0.3, "baseline_metric": "ce"}),
        [(0, "train", "ce", 1.0)])
    coll = load(st.path)
    assert protocol_notice(coll, "task", "copy") == ""
    assert list(protocol_notices(coll)) == [("task", "ptb")]
    assert protocol_notice(coll, "task", "ptb") == (
        "Protocol of the ptb task: trained on the valid file, evaluated on test; not the standard protocol. "
        "Its numbers are not comparable with published ones.")
