"""The report: tables from known numbers, figures, the HTML page, bad input, comparison, a real browser."""
from __future__ import annotations

import hashlib
import json
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest

from stability.report import build_tables, load, main, write_report
from stability.report import browser
from stability.report.data import TRANSITION_COLORS, shades
from stability.report.tables import jacobian_at
from stability.config import RunConfig
from stability.store import Store

# -- building stores -----------------------------------------------------------------


def cfg(name="copy", transition="dense", seed=0, kind="task", hidden=16, topts=None, options=None, **extra):
    """A run config in the declared shape (stability.config.RunConfig), as the runner writes it."""
    return RunConfig(suite=extra.pop("suite", "known"), kind=kind, name=name, transition=transition,
                     transition_options=topts or {}, hidden_size=hidden, nonlinearity="tanh",
                     options=options if options is not None else {},
                     train={"steps": 100, "optimizer": "adam", "lr": 0.01} if kind == "task" else {},
                     seed=seed, **{"device": "cpu", "dtype": "float32", **extra}).to_dict()


def add(store: Store, config: dict, rows=None, error=None, env=None):
    rid = hashlib.sha1(json.dumps(config, sort_keys=True).encode()).hexdigest()[:12]
    store.start(rid, config["suite"], config, env or {"torch": "2.13.0+cpu", "device": "cpu", "git_commit": "abc123"})
    if error is not None:
        store.fail(rid, error)
    elif rows is not None:
        store.finish(rid, rows)
    return rid


COPY = {"T": 10, "K": 10}
COPY_DEFINITION = {"task": "copy", "baseline": 0.5, "baseline_metric": "ce", "chance_accuracy": 0.125,
                   "thresholds": [{"metric": "ce", "value": 0.1, "relative": True}]}
SPECTRAL = {"margin": 0.01}
# per seed: test accuracy, test ce, first train step with ce < 0.05 (None: never), init half-life
DENSE = [(0.2, 0.5, None, 10.0), (0.4, 0.5, None, 20.0), (0.6, 0.5, None, 30.0)]
SPEC = [(0.9, 0.01, 30, 100.0), (1.0, 0.02, 50, 100.0), (0.95, 0.03, None, 100.0)]


def copy_rows(acc, ce, reach, half_life, step_time, params, jac):
    rows = [(2000, "test", "accuracy", acc), (2000, "test", "ce", ce), (0, "init", "half_life", half_life),
            (0, "summary", "params", params)]
    for step in range(0, 101, 10):
        value = 0.01 if (reach is not None and step >= reach) else 0.6
        rows.append((step, "train", "ce", value))
    for step, t in enumerate(step_time):
        rows.append((step, "train", "step_time", t))
    for gap, v in jac.items():
        rows.append((gap, "init", "jacobian_spectral", v))
    return rows


def fill_known(path: Path, spec_accuracy=None, dense_accuracy=None, paper=True) -> Path:
    st = Store(path)
    for seed, (acc, ce, reach, hl) in enumerate(DENSE):
        acc = dense_accuracy[seed] if dense_accuracy else acc
        extra = {"paper": {"accuracy": 0.5, "bpc": 1.4}} if paper else {}
        add(st, cfg(seed=seed, options=COPY, definition=COPY_DEFINITION, match="hidden", **extra),
            copy_rows(acc, ce, reach, hl, [0.010, 0.012, 0.011], 300, {1: 1.0, 10: 0.5, 100: 0.1, 1000: 0.001}))
    for seed, (acc, ce, reach, hl) in enumerate(SPEC):
        acc = spec_accuracy[seed] if spec_accuracy else acc
        extra = {"paper": {"accuracy": 0.97, "source": "Table 2"}} if paper else {}
        rows = copy_rows(acc, ce, reach, hl, [0.02, 0.02, 0.02], 290, {1: 1.0, 10: 0.99, 100: 0.9, 1000: 0.5})
        if seed < 2:
            rows.append((0, "final", "half_life", 150.0 + 10 * seed))
        add(st, cfg(transition="spectral", topts=SPECTRAL, seed=seed, options=COPY, definition=COPY_DEFINITION,
                    match="hidden", **extra), rows)
    # the adding task under the equal-parameter regime (a second table with its own header)
    for seed in range(2):
        add(st, cfg(name="adding", seed=seed, hidden=20, options={"T": 10}, match="params", budget=1000,
                    definition={"task": "adding", "baseline": 1 / 6, "baseline_metric": "mse"}),
            [(0, "test", "mse", 0.1 + 0.02 * seed), (0, "summary", "params", 990)])
    return path


@pytest.fixture(scope="module")
def known(tmp_path_factory):
    d = tmp_path_factory.mktemp("known")
    store = fill_known(d / "known.sqlite")
    index = write_report(store, d / "report")              # PNG and SVG
    return store, index


# -- tables ----------------------------------------------------------------------------
def _table(tables, title_start):
    return next(t for t in tables if t.title.startswith(title_start))


def test_table_aggregates_seeds_exactly(known):
    store, _ = known
    tables = build_tables(load(store))
    res = _table(tables, "copy task — results")
    df = res.frame().set_index("variant")
    assert list(df.index) == ["dense", "spectral"]
    assert df.loc["dense", "n_seeds"] == 3
    assert df.loc["dense", "accuracy_test_mean"] == pytest.approx(0.4)
    assert df.loc["dense", "accuracy_test_std"] == pytest.approx(0.2)        # sample std, ddof = 1
    assert df.loc["spectral", "accuracy_test_mean"] == pytest.approx(0.95)
    assert df.loc["spectral", "accuracy_test_std"] == pytest.approx(0.05)
    assert df.loc["spectral", "ce_test_mean"] == pytest.approx(0.02)
    assert df.loc["spectral", "ce_test_rel_mean"] == pytest.approx(0.04)     # ce / baseline 0.5
    assert df.loc["dense", "ce_test_rel_mean"] == pytest.approx(1.0)
    # steps to CE < baseline/10 = 0.05: seeds reached at 30 and 50, one never
    steps = [c for c in df.columns if c.startswith("steps_ce_below") and c.endswith("_mean")][0]
    assert df.loc["spectral", steps] == pytest.approx(40.0)
    assert df.loc["spectral", steps.replace("_mean", "_reached")] == 2
    assert df.loc["dense", steps.replace("_mean", "_reached")] == 0
    assert df.loc["dense", "step_time_ms_mean"] == pytest.approx(0.011)      # median over steps, seconds
    assert df.loc["spectral", "params_mean"] == 290

    stab = _table(tables, "copy task — gradient stability")
    sf = stab.frame().set_index("variant")
    assert sf.loc["dense", "half_life_init_mean"] == pytest.approx(20.0)
    assert sf.loc["dense", "half_life_init_std"] == pytest.approx(10.0)
    assert sf.loc["dense", "jacobian_100_init_mean"] == pytest.approx(0.1)
    assert sf.loc["spectral", "jacobian_1000_init_mean"] == pytest.approx(0.5)
    assert sf.loc["spectral", "half_life_final_n"] == 2                      # only two seeds had it
    assert sf.loc["spectral", "half_life_final_mean"] == pytest.approx(155.0)


def test_table_text_marks_best_and_states_regime(known):
    _, index = known
    md = (index.parent / "report.md").read_text()
    # 95% t intervals: mean ± t(0.975, n − 1)·s/√n, t(0.975, 2) = 4.3027, t(0.975, 1) = 12.706
    assert "**0.95 [0.826, 1.07]**" in md and "| 0.4 [-0.0968, 0.897] " in md   # best accuracy bold, the other not
    assert "40 [-87, 167] (2/3 reached)" in md                              # 30, 50: 40 ± 12.706·14.14/√2
    assert "not reached (3/3)" in md
    assert "**11**" in md                                                     # dense is faster: 11 ms, no spread
    assert "155 [91.5, 219] (2/3)" in md                                    # two seeds: 150, 160
    assert "Regime: equal hidden size (hidden size 16)" in md
    assert "Regime: equal parameter count (budget 1,000 parameters" in md
    assert "mean [95% interval] over seeds" in md and "scipy.stats.t" in md and "Holm" in md
    page = index.read_text()
    assert '<td class="num best" title="reference 0.125">0.95<span class="sd">[0.826, 1.07]</span></td>' in page
    # dense's interval reaches chance accuracy (0.125): marked "?", never best
    assert ('<td class="num nolearn" title="the interval reaches the baseline; reference 0.125">0.4 '
            '<span class="mark">?</span><span class="sd">[-0.0968, 0.897]</span></td>') in page
    csv = pd.read_csv(index.parent / "tables" / "task-copy-results.csv")
    assert csv["accuracy_test_mean"].round(6).tolist() == [0.4, 0.95]


def test_paper_vs_measured_never_fills_measured_from_paper(known):
    _, index = known
    paper = pd.read_csv(index.parent / "tables" / "paper_vs_measured.csv", keep_default_na=False, dtype=str)
    rows = {(r.transition, r.figure): r for r in paper.itertuples()}
    spec = rows[("spectral", "accuracy")]
    assert spec.paper == "0.97" and spec.measured == "0.95 [0.826, 1.07] (n=3)"
    assert spec._8 == "source: Table 2"
    assert rows[("dense", "bpc")].measured == "not measured"
    assert "Paper vs measured" in index.read_text()


def test_jacobian_interpolates_between_gaps_in_log_log():
    s = pd.Series([1.0, 0.01], index=[10, 1000])
    assert jacobian_at(s, 100) == pytest.approx(0.1)
    assert jacobian_at(s, 10) == 1.0
    assert jacobian_at(s, 5000) is None


def test_one_color_per_transition_and_shades_for_options(tmp_path):
    st = Store(tmp_path / "s.sqlite")
    for m in (0.01, 0.1):
        add(st, cfg(transition="spectral", topts={"margin": m}), [(0, "test", "accuracy", 1.0)])
    add(st, cfg(transition="dense"), [(0, "test", "accuracy", 0.5)])
    v = {x.label: x.color for x in load(st.path).variants.values()}
    assert v["dense"] == TRANSITION_COLORS["dense"]
    assert [v["spectral (margin=0.01)"], v["spectral (margin=0.1)"]] == shades(TRANSITION_COLORS["spectral"], 2)
    assert len(set(v.values())) == 3


# -- figures and the page ----------------------------------------------------------------
EXPECTED_FIGURES = ["jacobian_norm", "gradient_flow", "learning_curves_copy", "learning_curves_adding",
                    "learning_curves_pixels", "singular_values_training", "singular_value_spectrum",
                    "lyapunov_spectrum", "speed"]


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    from stability.report import demo as demo_mod
    d = tmp_path_factory.mktemp("demo")
    store = demo_mod.fill(d / "demo.sqlite", seeds=(0, 1))
    return store, write_report(store, d / "report", suite=demo_mod.SUITE, svg=False)   # PNG only: faster


def test_every_figure_written_and_not_blank(demo, known):
    from PIL import Image
    _, index = demo
    for name in EXPECTED_FIGURES:
        png = index.parent / "figures" / f"{name}.png"
        assert png.exists() and png.stat().st_size > 5000, name
        with Image.open(png) as im:
            lo, hi = im.convert("L").getextrema()
            assert im.width > 300 and im.height > 200 and hi - lo > 100, name
    assert not list(index.parent.glob("figures/*.svg"))
    _, index = known
    pngs = sorted(p.stem for p in index.parent.glob("figures/*.png"))
    assert pngs == ["jacobian_norm", "learning_curves_copy"]                  # adding: test MSE only, no curve
    assert "no training-loss rows (ce, mse, loss, bpc or perplexity on train or valid) for the adding task" \
        in index.read_text()
    for name in pngs:
        svg = index.parent / "figures" / f"{name}.svg"
        assert svg.stat().st_size > 5000 and "<svg" in svg.read_text()[:2000], name


class _Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.refs, self.imgs = [], []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        for key in ("src", "href"):
            if a.get(key):
                self.refs.append(a[key])
        if tag == "img":
            self.imgs.append(a.get("src"))


def _local_refs(index: Path) -> tuple[list[str], list[str]]:
    p = _Links()
    p.feed(index.read_text())
    local = [r for r in p.refs if not r.startswith(("#", "http:", "https:", "data:", "mailto:"))]
    return local, p.imgs


def test_page_references_only_existing_files(demo, known):
    for _, index in (demo, known):
        local, imgs = _local_refs(index)
        assert local, "the page links its CSVs and figures"
        for ref in local:
            assert not Path(ref).is_absolute() and (index.parent / ref).is_file(), ref
        md_links = re.findall(r"\]\(([^)#]+)\)", (index.parent / "report.md").read_text())
        assert md_links and all((index.parent / ref).is_file() for ref in md_links)
    _, index = demo
    assert sorted(Path(s).stem for s in _local_refs(index)[1]) == sorted(EXPECTED_FIGURES)
    html = index.read_text()
    for fact in ("suite", "commit", "device", "torch", "2.13.0+cpu", "How to read it"):
        assert fact in html
    assert "FloatingPointError: loss is NaN at step 812" in html        # the demo's failed run is listed


# -- bad input -------------------------------------------------------------------------
def test_empty_store_says_so(tmp_path):
    Store(tmp_path / "empty.sqlite")
    index = write_report(tmp_path / "empty.sqlite", tmp_path / "r")
    html = index.read_text()
    assert "holds no runs" in html and "<img" not in html
    assert "holds no runs" in (tmp_path / "r" / "report.md").read_text()
    assert not list((tmp_path / "r").glob("figures/*.png"))


def test_only_failed_runs_lists_failures(tmp_path):
    st = Store(tmp_path / "failed.sqlite")
    add(st, cfg(seed=0), error="Traceback ...\nValueError: boom zero")
    add(st, cfg(seed=1, transition="spectral"), error="RuntimeError: out of memory")
    index = write_report(st.path, tmp_path / "r")
    html = index.read_text()
    assert "No run finished" in html and "<img" not in html
    assert "ValueError: boom zero" in html and "RuntimeError: out of memory" in html
    md = (tmp_path / "r" / "report.md").read_text()
    assert "## Failed runs" in md and "ValueError: boom zero" in md


def test_missing_metrics_are_reported_not_drawn(tmp_path):
    st = Store(tmp_path / "partial.sqlite")
    for seed in range(2):
        add(st, cfg(kind="probe", name="jacobian", seed=seed, transition="spectral", topts=SPECTRAL),
            [(g, "init", "jacobian_spectral", 0.9 ** g) for g in (1, 10, 100)])
        add(st, cfg(kind="probe", name="jacobian", seed=seed, transition="dense"), [(0, "init", "half_life", 5.0)])
    add(st, cfg(kind="probe", name="jacobian", seed=9, transition="cayley"), [])          # finished, no rows
    index = write_report(st.path, tmp_path / "r", svg=False)
    html, md = index.read_text(), (tmp_path / "r" / "report.md").read_text()
    assert "Missing “‖J‖₂ gap 100 (init)” for: dense, cayley." in md
    assert "Missing “half-life (init)” for: cayley, spectral." in md
    assert "‖J‖₂ at gap 1000 not shown: no run measured that far (largest gap measured: 100; init)." in md
    assert "No Jacobian norms for: dense (probe jacobian), cayley (probe jacobian)." in md
    assert "1 finished run(s) recorded no metric rows." in html
    figures = {p.stem for p in (tmp_path / "r" / "figures").glob("*.png")}
    assert figures == {"jacobian_norm"}
    assert "Figures not drawn" in html and "no `grad_norm` rows" in html
    # the same folder rewritten from an empty store: no stale figure is left behind
    Store(tmp_path / "empty.sqlite")
    write_report(tmp_path / "empty.sqlite", tmp_path / "r")
    assert not list((tmp_path / "r" / "figures").glob("*.png"))


def test_cli_errors_are_clear(tmp_path, capsys):
    assert main([str(tmp_path / "nope.sqlite"), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "does not exist" in err and "Traceback" not in err
    assert not (tmp_path / "nope.sqlite").exists()
    (tmp_path / "notes.txt").write_text("not a database")
    assert main([str(tmp_path / "notes.txt"), "--out", str(tmp_path / "r")]) == 2
    assert "not a stability results store" in capsys.readouterr().err
    Store(tmp_path / "s.sqlite")
    add(Store(tmp_path / "s.sqlite"), cfg(), [(0, "test", "accuracy", 1.0)])
    assert main([str(tmp_path / "s.sqlite"), "--suite", "other", "--out", str(tmp_path / "r")]) == 2
    assert "'other' is not in" in capsys.readouterr().err
    with pytest.raises(FileNotFoundError):
        write_report(tmp_path / "missing.sqlite", tmp_path / "r")


# -- comparison ------------------------------------------------------------------------
def test_against_flags_regressions_beyond_seed_spread(tmp_path, capsys):
    a = fill_known(tmp_path / "a.sqlite")
    # B: dense far more accurate (A regressed by 0.5 > spread 0.2); spectral a little better (within spread 0.05)
    b = fill_known(tmp_path / "b.sqlite", dense_accuracy=[0.9, 0.9, 0.92], spec_accuracy=[0.92, 1.0, 0.96])
    code = main([str(a), "--against", str(b), "--out", str(tmp_path / "r"), "--no-svg", "--fail-on-regression"])
    assert code == 3
    assert "1 regression(s)" in capsys.readouterr().out
    cmp = pd.read_csv(tmp_path / "r" / "tables" / "comparison.csv")
    acc = cmp[cmp["figure"].str.startswith("accuracy")].set_index("transition")
    assert acc.loc["dense", "verdict"] == "regression"
    assert acc.loc["spectral", "verdict"] == "worse (within threshold)"      # −1%: under the 10% threshold
    assert acc.loc["dense", "change"].startswith("-0.507")
    assert (cmp.loc[cmp["figure"] == "params", "verdict"] == "unchanged").all()
    html = (tmp_path / "r" / "index.html").read_text()
    assert '<tr class="regression">' in html and "Comparison" in html
    assert main([str(a), "--against", str(a), "--out", str(tmp_path / "r2"), "--no-svg",
                 "--fail-on-regression"]) == 0


# -- a real browser --------------------------------------------------------------------
needs_chromium = pytest.mark.skipif(browser.find_chromium() is None, reason="chromium is not installed")


@needs_chromium
def test_every_image_loads_in_headless_chromium(demo, tmp_path):
    _, index = demo
    seen = browser.image_check(index)
    assert seen["total"] == len(EXPECTED_FIGURES) and seen["loaded"] == seen["total"] and not seen["broken"]
    assert seen["height"] > 2000
    # the check can fail: the same page with one figure removed
    copy = tmp_path / "copy"
    shutil.copytree(index.parent, copy)
    (copy / "figures" / "speed.png").unlink()
    seen = browser.image_check(copy / "index.html")
    assert seen["broken"] == ["figures/speed.png"] and seen["loaded"] == len(EXPECTED_FIGURES) - 1


@needs_chromium
def test_screenshot(known, tmp_path):
    from PIL import Image
    _, index = known
    png = browser.screenshot(index, tmp_path / "shot.png")
    with Image.open(png) as im:
        assert im.width == 1400 and im.height > 600


def test_against_matches_the_same_suite_on_another_device(tmp_path):
    from stability.report.compare import compare
    a, b = Store(tmp_path / "a.sqlite"), Store(tmp_path / "b.sqlite")
    for seed in range(2):
        add(a, cfg(seed=seed), [(0, "test", "accuracy", 0.5 + 0.1 * seed)])
        add(b, cfg(seed=seed, device="cuda", suite="other"), [(0, "test", "accuracy", 0.5 + 0.1 * seed)])
        add(b, cfg(seed=seed, transition="cayley", device="cuda", suite="other"), [(0, "test", "accuracy", 0.9)])
    cmp = compare(build_tables(load(a.path)), build_tables(load(b.path)))
    rows = cmp.all_rows
    assert rows[["transition", "verdict"]].values.tolist() == [["dense", "unchanged"]]
    assert cmp.only_b == ["copy task — results: cayley"] and not cmp.only_a
