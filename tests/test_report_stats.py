"""Intervals, tests and marks of the report tables, on numbers computed by hand."""
from __future__ import annotations

import math
import re

import pytest

from stability.report import build_tables, load
from stability.report.render import display_frame, to_markdown
from stability.report.stats import aggregate, holm, welch_p
from stability.store import Store

from test_report import add, cfg

T975 = {1: 12.706204736, 2: 4.302652730, 3: 3.182446305}     # Student's t quantile 0.975 by degrees of freedom


def t4_two_sided_p(t: float) -> float:
    """Two-sided p of Student's t with 4 degrees of freedom, from its closed-form CDF."""
    u = t * t / 4
    cdf = 0.5 + 3 / 8 * (abs(t) / math.sqrt(1 + u)) * (1 - t * t / (12 * (1 + u)))
    return 2 * (1 - cdf)


# -- the statistics ------------------------------------------------------------------
def test_interval_is_student_t():
    a = aggregate([1.0, 2.0, 3.0, 4.0], 4)
    s = math.sqrt(5 / 3)                                           # sample std of 1..4
    assert a.mean == 2.5 and a.std == pytest.approx(s)
    assert (a.lo, a.hi) == pytest.approx((2.5 - T975[3] * s / 2, 2.5 + T975[3] * s / 2))
    assert (a.lo, a.hi) == pytest.approx((0.445740, 4.554260), abs=1e-6)
    one = aggregate([5.0, None], 2)
    assert one.n == 1 and math.isnan(one.lo) and math.isnan(one.hi) and not one.has_interval
    wider = aggregate([1.0, 2.0, 3.0, 4.0], 4, alpha=0.01)
    assert wider.lo < a.lo and wider.hi > a.hi
    reached = aggregate([30.0, 50.0, math.inf], 3, until=True)      # steps to a threshold: one never reached
    assert reached.n_reached == 2 and reached.mean == 40.0
    assert reached.hi - reached.mean == pytest.approx(T975[1] * math.sqrt(200) / math.sqrt(2))


def test_welch_and_holm_on_known_numbers():
    # [1, 2, 3] vs [4, 5, 6]: t = −3 / √(2/3) = −3.674, Welch's df = 4
    assert welch_p([1, 2, 3], [4, 5, 6]) == pytest.approx(t4_two_sided_p(3 / math.sqrt(2 / 3)), rel=1e-9)
    assert welch_p([1, 2, 3], [4, 5, 6]) == pytest.approx(0.0213116, rel=1e-5)
    assert welch_p([1, 1], [1, 1]) == 1.0 and welch_p([1, 1], [2, 2]) == 0.0          # no spread: exact
    assert math.isnan(welch_p([1], [2, 3])) and math.isnan(welch_p([1, math.inf], [2, 3]))
    # Holm: sorted 0.01, 0.03, 0.04 -> 3·0.01, max(0.03, 2·0.03), max(0.06, 1·0.04)
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    out = holm([0.2, math.nan, 0.6])
    assert out[0] == pytest.approx(0.4) and math.isnan(out[1]) and out[2] == pytest.approx(0.6)
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])                              # capped at 1


# -- marks in a table ------------------------------------------------------------------
ADDING = {"task": "adding", "baseline": 1.0, "baseline_metric": "mse"}
MSE = {"dense": [0.10, 0.12, 0.14], "cayley": [0.11, 0.13, 0.15], "spectral": [0.50, 0.52, 0.54]}


def _adding_store(path, values: dict, definition=ADDING, metric="mse", name="adding", options=None):
    st = Store(path)
    for tr, vals in values.items():
        for seed, v in enumerate(vals):
            add(st, cfg(name=name, transition=tr, seed=seed, options=options or {"T": 10}, definition=definition),
                [(0, "test", metric, v)])
    return path


def test_best_ties_and_differences_marked(tmp_path):
    t = build_tables(load(_adding_store(tmp_path / "s.sqlite", MSE)))[0]
    df = t.frame().set_index("variant")
    # dense is best (mean 0.12); cayley: t = 0.01/√(2·0.0004/3) = 0.612, df 4; spectral: t = 24.49, df 4
    p_cayley, p_spectral = t4_two_sided_p(0.01 / math.sqrt(0.0008 / 3)), t4_two_sided_p(0.4 / math.sqrt(0.0008 / 3))
    assert df["mse_test_mark"].to_dict() == {"dense": "best", "cayley": "tied", "spectral": "apart"}
    assert df.loc["spectral", "mse_test_p_holm"] == pytest.approx(2 * p_spectral, rel=1e-6)   # Holm: ×2 first
    assert df.loc["cayley", "mse_test_p_holm"] == pytest.approx(p_cayley, rel=1e-6)           # then ×1
    assert math.isnan(df.loc["dense", "mse_test_p_holm"])
    half = T975[2] * 0.02 / math.sqrt(3)
    assert (df.loc["dense", "mse_test_lo"], df.loc["dense", "mse_test_hi"]) == pytest.approx((0.12 - half, 0.12 + half))
    assert df.loc["dense", "mse_test_n"] == 3
    md = to_markdown(t)
    assert "| **0.12 [0.0703, 0.17]** " in md and "| 0.13 [0.0803, 0.18] ≈ " in md
    assert re.search(r"\| 0\.52 \[0\.47, 0\.57\] +\|", md)                  # told apart: no mark
    assert "Welch's t-test" in md and "Holm's correction" in md and "Student's t" in md


def test_one_seed_table_says_nothing_is_tested(tmp_path):
    t = build_tables(load(_adding_store(tmp_path / "s.sqlite", {k: v[:1] for k, v in MSE.items()})))[0]
    caption = t.caption()
    assert "One seed per row" in caption and "no difference is tested" in caption and "Welch" not in caption
    df = t.frame().set_index("variant")
    assert df["mse_test_mark"].to_dict() == {"dense": "best", "cayley": "untested", "spectral": "untested"}
    assert math.isnan(df.loc["dense", "mse_test_lo"])
    assert "≈" not in to_markdown(t) and "**0.1**" in to_markdown(t)


def test_rows_that_learned_nothing_are_marked_and_never_best(tmp_path):
    b = 1 / 6
    values = {"dense": [1.02 * b, 1.04 * b, 1.06 * b], "spectral": [1.03 * b, 1.05 * b, 1.06 * b]}
    definition = {"task": "adding", "baseline": b, "baseline_metric": "mse"}
    t = build_tables(load(_adding_store(tmp_path / "a.sqlite", values, definition)))[0]
    shown = display_frame(t, "md").set_index("transition")
    assert shown["learned?"].tolist() == ["no", "no"]
    assert not t.best(t.columns[0]) and "**" not in to_markdown(t).split("| transition")[1]
    assert shown.loc["dense", "MSE/baseline (test) ↓"] == "1.04 [0.99, 1.09] ✗"
    # a row that learned (interval wholly below the baseline) is the best, the others never are
    values["cayley"] = [0.10 * b, 0.12 * b, 0.11 * b]
    t = build_tables(load(_adding_store(tmp_path / "b.sqlite", values, definition)))[0]
    df = t.frame().set_index("variant")
    assert df["learned"].to_dict() == {"dense": "no", "cayley": "yes", "spectral": "no"}
    assert df["mse_test_rel_mark"].to_dict() == {"dense": "", "cayley": "best", "spectral": ""}
    assert df.loc["dense", "mse_test_rel_learned"] == "no" and df.loc["dense", "mse_test_reference"] == pytest.approx(b)
    # a mean below the baseline whose interval reaches it: unclear
    values = {"dense": [0.5 * b, 0.9 * b, 1.2 * b]}
    t = build_tables(load(_adding_store(tmp_path / "c.sqlite", values, definition)))[0]
    assert t.frame()["learned"].tolist() == ["unclear"] and "?" in display_frame(t).iloc[0]["MSE (test) ↓"]


def test_accuracy_at_chance_learned_nothing(tmp_path):
    definition = {"task": "copy", "baseline": 0.5, "baseline_metric": "ce", "chance_accuracy": 0.1}
    values = {"dense": [0.10, 0.09, 0.11], "spectral": [0.5, 0.6, 0.7]}
    t = build_tables(load(_adding_store(tmp_path / "s.sqlite", values, definition, "accuracy", "copy",
                                        {"T": 10, "K": 10})))[0]
    df = t.frame().set_index("variant")
    assert df["accuracy_test_learned"].to_dict() == {"dense": "no", "spectral": "yes"}
    assert df["accuracy_test_mark"].to_dict() == {"dense": "", "spectral": "best"}
    assert display_frame(t).set_index("transition").loc["dense", "accuracy (test) ↑"] == "0.1 [0.0752, 0.125] ✗"


# -- half-lives beyond the gaps measured --------------------------------------------------
def _jacobian_store(path, with_max_gap: bool):
    st = Store(path)
    for tr, half_life in (("exprnn", 1055.0), ("dense", 10.0), ("cayley", 2000.0)):
        rows = [(g, "init", "jacobian_spectral", 0.999 ** g) for g in range(0, 35)] + \
               [(0, "init", "half_life", half_life)]
        if with_max_gap:
            rows.append((0, "init", "max_gap", 34.0))
        add(st, cfg(kind="probe", name="jacobian", transition=tr, seed=0, options={"T": 35}), rows)
    return path


@pytest.mark.parametrize("with_max_gap", [True, False])
def test_half_life_beyond_measured_gaps_is_a_bound(tmp_path, with_max_gap):
    t = build_tables(load(_jacobian_store(tmp_path / "j.sqlite", with_max_gap)))[0]
    shown = display_frame(t, "md").set_index("transition")["half-life (init) ↑"]
    assert shown["dense"] == "10"
    assert shown["exprnn"] == "**> 34**" and shown["cayley"] == "**> 34**"    # both beyond G: tied as the best
    assert "fitted over gaps 0–34" in t.caption() and "shown as > G" in t.caption()
    df = t.frame().set_index("variant")
    assert df.loc["exprnn", "half_life_init_beyond_gap"] == 34 and math.isnan(df.loc["dense", "half_life_init_beyond_gap"])
    assert df.loc["exprnn", "half_life_init_mean"] == 1055.0                 # the CSV keeps the fitted value


def test_a_zero_ratio_is_never_the_best(tmp_path):
    st = Store(tmp_path / "g.sqlite")
    for tr, ratio in (("dense", 0.0), ("cayley", 1e-26)):
        add(st, cfg(kind="probe", name="gradient_flow", transition=tr, options={"T": 200}),
            [(0, "init", "grad_ratio", ratio)])
    t = build_tables(load(st.path))[0]
    assert t.frame().set_index("variant")["grad_ratio_init_mark"].to_dict() == {"dense": "", "cayley": "best"}


@pytest.mark.parametrize("said, row", [(("yes", "yes"), "yes"), (("no", "no"), "no"), (("yes", "no"), "mixed"),
                                       (("yes", "unclear"), "unclear"), (("no", "unclear"), "no"), ((), "")])
def test_learned_at_a_glance_combines_the_row_s_figures(said, row):
    """An accuracy above chance with a cross-entropy above the baseline is neither "yes" nor "no"."""
    from stability.report.tables import Mark, Row, Table
    from stability.report.columns import Column
    cols = [Column(key=f"c{i}", title=f"c{i}", better="lower", get=lambda d, cfg: None) for i in range(2)]
    r = Row(config_key="k", config={}, transition="gru", variant="gru", color="#000", settings="",
            run_ids=["a"], seeds=[0])
    t = Table(slug="s", title="t", kind="task", name="x", part="results", regime="", common={}, rows=[r],
              columns=cols, cells={}, marks={("k", c.key): Mark(learned=s) for c, s in zip(cols, said)})
    assert t.learned(r) == row


def test_rows_are_ranked_within_their_problem_not_across_task_options():
    """Adding at T = 100 and at T = 200 are different problems: each has its own best."""
    from stability.report.columns import Column
    from stability.report.stats import aggregate
    from stability.report.tables import BEST, TIED, Mark, Row, Table, problem_groups, mark_column
    col = Column(key="mse", title="MSE", better="lower", get=lambda d, cfg: None, part="results")
    rows, cells = [], {}
    for key, T, values in [("a", 100, [0.1, 0.11, 0.12]), ("b", 100, [0.5, 0.52, 0.51]),
                           ("c", 200, [0.9, 0.91, 0.92]), ("d", 200, [0.95, 0.9, 1.0])]:
        rows.append(Row(config_key=key, config={"options": {"T": T}}, transition=key, variant=key, color="#000",
                        settings=f"T={T}", run_ids=["x", "y", "z"], seeds=[0, 1, 2]))
        cells[(key, "mse")] = aggregate(values, 3, until=False, alpha=0.05)
    t = Table(slug="s", title="t", kind="task", name="adding", part="results", regime="", common={}, rows=rows,
              columns=[col], cells=cells, marks={(r.config_key, "mse"): Mark() for r in rows})
    groups = problem_groups(t)
    assert [[r.config_key for r in g] for g in groups] == [["a", "b"], ["c", "d"]]
    for g in groups:
        mark_column(t, col, {}, g)
    assert [t.mark(k, "mse").rank for k in "abcd"] == [BEST, "apart", BEST, TIED]
    assert "among the rows of the same task or probe options" in t.caption()


def test_norms_over_seeds_are_geometric_and_never_negative():
    """Norms spread over orders of magnitude: the geometric mean and the logs' t interval, mapped back."""
    from scipy import stats as st
    from stability.report.stats import aggregate
    a = aggregate([1e-17, 1e-18, 1e-19], 3, geometric=True)
    assert a.geometric and math.isclose(a.mean, 1e-18, rel_tol=1e-9)
    half = st.t.ppf(0.975, 2) * math.log(10) / math.sqrt(3)  # the logs' std is ln 10
    assert math.isclose(a.lo, 1e-18 * math.exp(-half), rel_tol=1e-9) and 0 < a.lo < a.mean < a.hi
    arith = aggregate([1e-17, 1e-18, 1e-19], 3)
    assert arith.lo < 0 and not arith.geometric  # what the arithmetic form would print for a norm
    zero = aggregate([0.0, 1e-3, 1e-2], 3, geometric=True)  # an underflowed 0: no logs, arithmetic
    assert not zero.geometric and math.isclose(zero.mean, 0.011 / 3)
