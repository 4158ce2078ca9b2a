"""Adding task: two markers per sequence, target the sum, MSE of the last output, baseline 1/6."""
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from stability.tasks import create


@settings(max_examples=40, deadline=None)
@given(T=st.integers(2, 60), batch=st.integers(1, 6), markers=st.sampled_from(["halves", "anywhere"]),
       seed=st.integers(0, 2**31))
def test_layout(T, batch, markers, seed):
    task = create("adding", T=T, markers=markers)
    x, y = task.sample(batch, torch.Generator().manual_seed(seed))
    assert x.shape == (T, batch, 2) and y.shape == (batch,)
    values, marks = x[..., 0], x[..., 1]
    assert bool(((values >= 0) & (values < 1)).all())
    assert torch.equal(marks.sum(0), torch.full((batch,), 2.0))
    assert bool(((marks == 0) | (marks == 1)).all())
    assert torch.allclose((values * marks).sum(0), y)
    if markers == "halves":
        assert torch.equal(marks[:T // 2].sum(0), torch.ones(batch))


def test_anywhere_places_both_markers_freely():
    T = 10
    x, _ = create("adding", T=T, markers="anywhere").sample(4000, torch.Generator().manual_seed(0))
    marks = x[..., 1]
    first_half = marks[:T // 2].sum(0)
    assert (first_half == 2).any() and (first_half == 0).any() and (first_half == 1).any()
    per_position = marks.sum(1)
    assert per_position.min() / per_position.max() > 0.85  # every position equally likely
    x, _ = create("adding", T=T).sample(4000, torch.Generator().manual_seed(0))
    assert torch.equal(x[..., 1][:T // 2].sum(0), torch.ones(4000))


def test_baseline_from_definition_and_by_simulation():
    task = create("adding", T=30)
    assert task.baseline == pytest.approx(1 / 6) and task.definition()["baseline"] == task.baseline
    assert task.definition()["markers"] == "halves"
    _, y = task.sample(50000, torch.Generator().manual_seed(3))
    predict_one = torch.ones(30, 50000, 1)
    assert task.loss(predict_one, y).item() == pytest.approx(task.baseline, abs=0.005)


def test_loss_reads_the_last_output_only():
    task = create("adding", T=8)
    _, y = task.sample(5, torch.Generator().manual_seed(4))
    out = torch.randn(8, 5, 1)
    out[-1, :, 0] = y
    assert task.loss(out, y).item() == 0.0 and task.metrics(out, y) == {"mse": 0.0}
    out[-1, :, 0] = y + 0.5
    assert task.metrics(out, y)["mse"] == pytest.approx(0.25)


def test_bad_options():
    with pytest.raises(ValueError, match="markers='middle'.*'halves', 'anywhere'"):
        create("adding", markers="middle")
    with pytest.raises(ValueError, match="T=1"):
        create("adding", T=1)
    with pytest.raises(ValueError, match="T=0"):
        create("adding", T=0)
