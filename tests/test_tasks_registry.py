"""The task registry and the interface every task shares."""
import importlib.util
import json

import pytest
import torch

from stability import tasks
from stability.tasks import create


def test_available_and_unknown():
    assert {"copy", "adding", "ptb", "ptb_char", "pixels"} <= set(tasks.available())
    with pytest.raises(ValueError, match="unknown task 'kopy' \\(did you mean 'copy'\\?\\); available: adding, copy"):
        create("kopy")


def test_unknown_option_lists_allowed():
    with pytest.raises(TypeError, match=r"does not take option\(s\) delay; allowed: T, K, alphabet"):
        create("copy", delay=10)
    with pytest.raises(TypeError, match="allowed: T, markers"):
        create("adding", T=10, marker="halves")


@pytest.mark.parametrize("name, options", [
    ("copy", {"T": 5}), ("adding", {"T": 6}),
    pytest.param("pixels", {}, marks=pytest.mark.skipif(importlib.util.find_spec("sklearn") is None,
                                                        reason="scikit-learn is not installed"))])
def test_interface(name, options):
    task = create(name, **options)
    d = task.definition()
    json.dumps(d)
    assert d["task"] == name and d["baseline"] == task.baseline
    x, y = task.sample(3, torch.Generator().manual_seed(0))
    assert x.shape[1:] == (3, task.input_size)
    out = torch.zeros(x.shape[0], 3, task.output_size, requires_grad=True)
    loss = task.loss(out, y)
    assert loss.dim() == 0
    loss.backward()
    m = task.metrics(out.detach(), y)
    assert m and all(isinstance(v, float) for v in m.values())
    assert tasks.option_defaults(name).keys() == set(tasks.option_names(name))


def test_generated_evaluation_data_is_fixed():
    task = create("copy", T=4)
    a = list(task.batches("valid", 4, max_batches=3))
    b = list(task.batches("valid", 4, max_batches=3))
    assert len(a) == 3 and all(torch.equal(p[0], q[0]) for p, q in zip(a, b))
    test = next(task.batches("test", 4))
    assert not torch.equal(test[1], a[0][1])
    assert len(list(task.batches("valid", 2))) == 10
    with pytest.raises(ValueError, match="no split 'train'"):
        next(task.batches("train", 2))
