"""Parameter-matched sizing: counts as built, hidden sizes closest to a budget."""
import pytest

from stability import RecurrentNet
from stability.sizing import describe_regime, hidden_for_budget, match_parameters, parameter_count

BUILTINS = ["cayley", "dense", "exprnn", "householder", "spectral"]
CASES = [(name, {}) for name in BUILTINS] + [
    ("spectral", {"reflectors": 3}), ("householder", {"reflectors": 2}), ("cayley", {"negatives": 1}),
    ("dense", {"init": "normal", "nonlinearity": "relu"}),  # needs real values: built on CPU
]


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: one torch thread per test


def built_count(name, hidden, input_size, output_size, **options):
    model = RecurrentNet(input_size, hidden, output_size, name, **options)
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name, options", CASES)
def test_parameter_count_is_the_built_count(name, options):
    for hidden in (3, 4, 17, 40):
        assert parameter_count(name, hidden, 7, 5, **options) == built_count(name, hidden, 7, 5, **options)


def test_known_counts():
    n, i, o = 170, 1, 10
    other = n * i + n + o * n + o
    assert parameter_count("exprnn", n, i, o) == n * (n - 1) // 2 + other
    assert parameter_count("dense", n, i, o) == n * n + other
    assert parameter_count("spectral", n, i, o, reflectors=8) == 2 * (8 * n - 8 * 7 // 2) + n + other


@pytest.mark.parametrize("name, options", CASES)
def test_hidden_for_budget_is_exact_and_closest(name, options):
    i, o = 10, 9
    for hidden in (3, 5, 37, 128):
        assert hidden_for_budget(name, parameter_count(name, hidden, i, o, **options), i, o, **options) == hidden
    budgets = (1_000, 12_345, 100_000) + (() if "init" in options else (1_320_000,))  # init=normal builds on CPU
    for budget in budgets:
        h = hidden_for_budget(name, budget, i, o, **options)
        gap = abs(parameter_count(name, h, i, o, **options) - budget)
        for other in (h - 1, h + 1):
            if other >= 3:
                assert gap <= abs(parameter_count(name, other, i, o, **options) - budget)


def test_hidden_for_budget_against_brute_force():
    counts = {n: parameter_count("exprnn", n, 4, 3) for n in range(1, 120)}
    for budget in range(40, 7000, 37):
        best = min(counts, key=lambda n: (abs(counts[n] - budget), n))  # ties: the smaller n
        assert hidden_for_budget("exprnn", budget, 4, 3) == best
    # a tie between two sizes goes to the smaller one
    budget = (counts[50] + counts[51]) / 2
    assert hidden_for_budget("exprnn", budget, 4, 3) == 50


def test_budget_below_the_smallest_model():
    smallest = parameter_count("dense", 1, 10, 9)
    assert hidden_for_budget("dense", smallest, 10, 9) == 1
    with pytest.raises(ValueError, match=rf"budget={smallest - 1} is below .*allowed: budget >= {smallest}"):
        hidden_for_budget("dense", smallest - 1, 10, 9)
    # with reflectors=16 the smallest hidden size is 16
    smallest = parameter_count("spectral", 16, 10, 9, reflectors=16)
    assert hidden_for_budget("spectral", smallest + 1, 10, 9, reflectors=16) == 16
    with pytest.raises(ValueError, match=rf"hidden=16.*allowed: budget >= {smallest}"):
        hidden_for_budget("spectral", 100, 10, 9, reflectors=16)


@pytest.mark.parametrize("call, error, match", [
    (lambda: hidden_for_budget("lstmm", 1000, 2, 2), ValueError,
     "unknown transition or cell 'lstmm' .*; transitions: cayley.*; cells: lstm, gru"),
    (lambda: hidden_for_budget(RecurrentNet, 1000, 2, 2), TypeError, "registered name"),
    (lambda: hidden_for_budget("dense", "1e6", 2, 2), TypeError, "budget must be a finite number"),
    (lambda: hidden_for_budget("dense", 1000, 0, 2), ValueError, "input_size=0"),
    (lambda: parameter_count("dense", 0, 2, 2), ValueError, "hidden=0"),
    (lambda: parameter_count("dense", 8, 2, 2, colour=1), TypeError, "allowed: init, spectral_radius"),
    (lambda: hidden_for_budget("spectral", 1000, 2, 2, margin=-1.0), ValueError, "margin=-1.0"),
])
def test_bad_input(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_match_parameters_table_and_regime_text():
    table = match_parameters(16415, 1, 10, transition_names=["dense", "exprnn", "spectral"],
                             options={"spectral": {"reflectors": 16}})
    assert list(table.transition) == ["dense", "exprnn", "spectral"]
    assert (table.regime == "params").all()
    assert table.set_index("transition").loc["exprnn", "hidden"] == 170
    assert (table.parameters - table.budget == table.deviation).all()
    row = table.set_index("transition").loc["spectral"]
    assert row.parameters == parameter_count("spectral", int(row.hidden), 1, 10, reflectors=16)
    with pytest.raises(ValueError, match="not in the list: householder"):
        match_parameters(1000, 1, 10, ["dense"], options={"householder": {}})
    assert "budget 1,320,000" in describe_regime("params", 1_320_000)
    assert describe_regime("hidden", hidden=128).startswith("Equal hidden size")
