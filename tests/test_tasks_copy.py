"""Copy task: the layout of every batch, the baseline from the definition, metrics."""
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from stability.tasks import create


@settings(max_examples=40, deadline=None)
@given(T=st.integers(1, 40), K=st.integers(1, 12), alphabet=st.integers(2, 9), batch=st.integers(1, 5),
       seed=st.integers(0, 2**31))
def test_layout(T, K, alphabet, batch, seed):
    task = create("copy", T=T, K=K, alphabet=alphabet)
    x, y = task.sample(batch, torch.Generator().manual_seed(seed))
    L = T + 2 * K
    assert x.shape == (L, batch, alphabet + 2) and x.dtype == torch.float32
    assert y.shape == (L, batch) and y.dtype == torch.int64
    assert task.input_size == alphabet + 2 and task.output_size == alphabet + 1
    assert torch.equal(x.sum(-1), torch.ones(L, batch))  # one-hot
    ids = x.argmax(-1)
    symbols = ids[:K]
    assert bool(((symbols >= 1) & (symbols <= alphabet)).all())
    assert bool((ids[K:T + K - 1] == 0).all())            # T − 1 blanks
    assert bool((ids[T + K - 1] == alphabet + 1).all())   # the marker
    assert bool((ids[T + K:] == 0).all())                 # K blanks
    assert bool((y[:T + K] == 0).all())
    assert torch.equal(y[T + K:], symbols)                # recall the symbols, in order
    assert task.definition()["marker_position"] == T + K - 1


def test_symbols_are_uniform_and_seeded():
    task = create("copy", T=5)
    x, _ = task.tokens(4000, torch.Generator().manual_seed(0))
    counts = torch.bincount(x[:10].flatten(), minlength=10)[1:9].double()
    assert counts.min() / counts.max() > 0.9
    a = task.sample(3, torch.Generator().manual_seed(7))
    b = task.sample(3, torch.Generator().manual_seed(7))
    c = task.sample(3, torch.Generator().manual_seed(8))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) and not torch.equal(a[1], c[1])


@pytest.mark.parametrize("T, expected", [(200, 0.0945), (1000, 0.0204), (2000, 0.0103)])
def test_baseline_matches_protocol(T, expected):
    task = create("copy", T=T)
    assert task.baseline == pytest.approx(10 * math.log(8) / (T + 20))
    assert round(task.baseline, 4) == expected
    d = task.definition()
    assert d["baseline"] == task.baseline and d["T"] == T and d["K"] == 10 and d["length"] == T + 20


@pytest.mark.parametrize("T, K", [(1, 1), (7, 10), (50, 3)])
def test_baseline_is_the_memoryless_strategy(T, K):
    """Blanks with certainty, then uniform over the alphabet: its cross-entropy is the baseline."""
    task = create("copy", T=T, K=K)
    _, y = task.sample(16, torch.Generator().manual_seed(1))
    logits = torch.full((T + 2 * K, 16, 9), -1e4)
    logits[:T + K, :, 0] = 0.0
    logits[T + K:, :, 1:] = 0.0
    assert task.loss(logits, y).item() == pytest.approx(task.baseline, rel=1e-6)


def test_metrics_perfect_and_blank():
    task = create("copy", T=12)
    _, y = task.sample(8, torch.Generator().manual_seed(2))
    perfect = 50.0 * torch.nn.functional.one_hot(y, 9).float()
    m = task.metrics(perfect, y)
    assert m["accuracy"] == 1.0 and m["ce"] < 1e-6
    blank = torch.zeros(32, 8, 9)
    blank[..., 0] = 50.0
    m = task.metrics(blank, y)
    assert m["accuracy"] == 0.0 and m["ce"] > task.baseline
    half = perfect.clone()
    half[-5:] = blank[-5:]        # recall only the first 5 of 10
    assert task.metrics(half, y)["accuracy"] == 0.5


def test_bad_options():
    with pytest.raises(ValueError, match="T=0"):
        create("copy", T=0)
    with pytest.raises(TypeError, match="T must be an int"):
        create("copy", T=2.5)
    with pytest.raises(ValueError, match="batch_size"):
        create("copy", T=3).sample(0)


@settings(max_examples=30, deadline=None)
@given(T=st.integers(1, 40), K=st.integers(1, 12), batch=st.integers(1, 4), seed=st.integers(0, 2**31))
def test_exprnn_layout(T, K, batch, seed):
    """expRNN's 1_copying.py: K symbols, T blanks, the marker at T + K, K − 1 blanks; same targets."""
    task = create("copy", T=T, K=K, layout="exprnn")
    ids, y = task.tokens(batch, torch.Generator().manual_seed(seed))
    L = T + 2 * K
    assert ids.shape == (L, batch) and task.length == L
    assert bool(((ids[:K] >= 1) & (ids[:K] <= 8)).all())
    assert bool((ids[K:T + K] == 0).all())               # T blanks
    assert bool((ids[T + K] == 9).all())                 # the marker, one step later than "urnn"
    assert bool((ids[T + K + 1:] == 0).all())            # K − 1 blanks
    assert bool((y[:T + K] == 0).all()) and torch.equal(y[T + K:], ids[:K])
    d = task.definition()
    assert d["layout"] == "exprnn" and d["marker_position"] == T + K
    # the same symbols and targets as the default layout from the same generator; only the marker moved
    ids_u, y_u = create("copy", T=T, K=K).tokens(batch, torch.Generator().manual_seed(seed))
    assert torch.equal(y, y_u) and torch.equal(ids[:K], ids_u[:K])
    assert bool((ids_u[T + K - 1] == 9).all()) and create("copy", T=T, K=K).definition()["layout"] == "urnn"
    assert task.baseline == create("copy", T=T, K=K).baseline


def test_bad_layout():
    with pytest.raises(ValueError, match=r"layout='exp' is not known \(did you mean 'exprnn'\?\); allowed: 'urnn', 'exprnn'"):
        create("copy", layout="exp")
