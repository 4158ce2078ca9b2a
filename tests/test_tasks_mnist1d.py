"""MNIST-1D: the package's own default data set, the fixed shuffle, batches in order, loss and metrics."""
import hashlib
import importlib.util
import json
import random
import sys

import numpy as np
import pytest
import torch

from stability import RecurrentNet
from stability.tasks import create
from stability.tasks import mnist1d as M
from stability.train import train

pytestmark = pytest.mark.skipif(importlib.util.find_spec("mnist1d") is None,
                                reason="mnist1d (the optional extra 'mnist1d') is not installed")

#: make_dataset(get_dataset_args()) of mnist1d 0.0.2.post1: sha256 of the signals rounded to 1e-6
#: (so that a last-bit difference between machines does not count) and of the int64 labels
CHECKSUMS = {"x": "a628c903554582c85cd522460f0ac9376d8f2c1daf90d5ea251968c8de2fc707",
             "x_test": "40736dec6f794f2e52a879797628fb8f41ae44a628489bf5cd8d19ef39a28d42",
             "y": "d97dc7aecec8ad6b5d8f143ba3e9c4bd7e25c420d7dfc2eb990591cfc0ed3e15",
             "y_test": "8de99be3ff9dab15ae0dc072c3d6ced7cf6b33d365888ce4a386fc944489452c"}
LABEL_COUNTS = {"y": [398, 396, 411, 394, 394, 402, 401, 404, 402, 398],
                "y_test": [102, 104, 89, 106, 106, 98, 99, 96, 98, 102]}
#: the permutation make_dataset applies with shuffle_seq=True (defaults otherwise)
PERMUTATION = [19, 22, 4, 32, 17, 18, 28, 31, 11, 24, 23, 7, 25, 35, 34, 6, 3, 13, 12, 26,
               1, 27, 20, 10, 36, 9, 37, 29, 8, 30, 5, 38, 16, 15, 33, 39, 14, 21, 0, 2]


def checksum(a: np.ndarray) -> str:
    a = np.round(a, 6) + 0.0 if a.dtype.kind == "f" else a.astype(np.int64)  # + 0.0: no -0.0
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


@pytest.fixture(scope="module")
def generated():
    """The task's data, generated here (not taken from another module's cache), and the global
    random states before and after."""
    M._GENERATED.clear()
    before = (random.getstate(), np.random.get_state()[1].copy())
    made = M.generate()
    after = (random.getstate(), np.random.get_state()[1].copy())
    return made, before, after


@pytest.fixture(scope="module")
def reference():
    from mnist1d.data import get_dataset_args, make_dataset
    return make_dataset(get_dataset_args())


def test_data_are_the_package_default_data_set(generated, reference):
    made, before, after = generated
    for key in ("x", "y", "x_test", "y_test"):
        assert np.array_equal(made[key], reference[key]), key
        assert checksum(made[key]) == CHECKSUMS[key], f"{key}: mnist1d's default data set changed"
    assert made["x"].shape == (4000, 40) and made["x_test"].shape == (1000, 40)
    for key, counts in LABEL_COUNTS.items():
        assert np.bincount(made[key], minlength=10).tolist() == counts
    assert before[0] == after[0] and np.array_equal(before[1], after[1])  # the package's seeding undone
    assert made["args"]["seed"] == 42 and "url" not in made["args"]
    task = create("mnist1d")
    assert torch.equal(task.signals["train"], torch.from_numpy(reference["x"]).float())
    assert torch.equal(task.labels["test"], torch.from_numpy(reference["y_test"]))


def test_shuffle_is_one_fixed_permutation_of_both_splits(generated):
    plain, shuffled = create("mnist1d"), create("mnist1d", shuffle=True)
    assert plain.permutation is None and shuffled.permutation.tolist() == PERMUTATION
    for split in ("train", "test"):
        assert torch.equal(shuffled.signals[split], plain.signals[split][:, PERMUTATION])
        assert torch.equal(shuffled.labels[split], plain.labels[split])
    d = shuffled.definition()
    assert d["permutation"] == PERMUTATION and d["dataset_args"]["shuffle_seq"] is True
    assert d["published"]["GRU"] == 0.57 and plain.definition()["published"]["GRU"] == 0.91


@pytest.mark.slow
def test_shuffle_equals_the_package_shuffle_seq_output(generated):
    from mnist1d.data import get_dataset_args, make_dataset
    args = get_dataset_args()
    args.shuffle_seq = True
    ref = make_dataset(args)
    task = create("mnist1d", shuffle=True)
    assert torch.equal(task.signals["train"], torch.from_numpy(ref["x"]).float())
    assert torch.equal(task.signals["test"], torch.from_numpy(ref["x_test"]).float())


def test_interface_and_definition(generated):
    task = create("mnist1d")
    assert (task.input_size, task.output_size, task.sequence_length, task.output_steps) == (1, 10, 40, "last")
    assert (task.periodic_splits, task.final_splits, task.generated) == (("test",), (), False)
    d = json.loads(json.dumps(task.definition()))
    assert d["chance_accuracy"] == 0.1 and d["shuffle"] is False and d["splits"] == {"train": 4000, "test": 1000}
    assert d["published"] == {"logistic regression": 0.32, "MLP": 0.68, "CNN": 0.94, "GRU": 0.91, "human expert": 0.96}
    assert abs(task.baseline - np.log(10)) < 1e-2 and task.baseline > np.log(10)  # nearly balanced classes
    x, y = task.sample(5, torch.Generator().manual_seed(0))
    assert x.shape == (40, 5, 1) and x.dtype == torch.float32 and y.dtype == torch.int64
    with pytest.raises(TypeError, match="shuffle must be True or False"):
        create("mnist1d", shuffle="yes")
    with pytest.raises(ValueError, match="no split 'valid'; allowed: train, test"):
        next(task.batches("valid", 10))
    assert task.steps_per_epoch(100) == 40 and task.steps_per_epoch(300) == 14


def test_training_batches_go_through_the_set_in_order(generated):
    task = create("mnist1d")
    xs, ys = task.signals["train"], task.labels["train"]
    for index, start in ((0, 0), (1, 100), (39, 3900), (40, 0), (8001, 100)):  # bix = i·B mod 4000
        x, y = task.train_batch(index, 100)
        assert torch.equal(y, ys[start:start + 100]) and torch.equal(x[:, :, 0].t(), xs[start:start + 100])
    assert task.train_batch(13, 300)[1].numel() == 100  # cut short at the end of the set, as published
    assert torch.equal(task.train_batch(14, 300)[1], ys[200:500])
    # the training loop asks for the batch of each update by its index
    seen = []
    original = task.train_batch
    task.train_batch = lambda i, b, g=None: (seen.append(i), original(i, b, g))[1]
    model = RecurrentNet(1, 4, 10, "dense")
    log = train(model, task, 3, batch_size=50, log_every=1, progress=False)
    assert seen == [0, 1, 2] and set(log[log.split == "test"].metric) == {"ce", "accuracy"}
    got = list(task.batches("test", 300))
    assert [b[1].numel() for b in got] == [300, 300, 300, 100]
    assert torch.equal(torch.cat([b[1] for b in got]), task.labels["test"])


def test_default_train_batch_is_a_fresh_sample():
    task = create("adding", T=6)
    a = task.train_batch(7, 4, torch.Generator().manual_seed(1))
    b = task.sample(4, torch.Generator().manual_seed(1))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_loss_and_metrics_read_the_last_output(generated):
    task = create("mnist1d")
    y = torch.tensor([3, 1, 4, 1])
    last = torch.full((4, 10), -2.0, dtype=torch.float64)
    last[torch.arange(4), torch.tensor([3, 1, 4, 0])] = 2.0  # three of four right
    outputs = torch.cat([torch.randn(2, 4, 10, dtype=torch.float64), last[None]]).requires_grad_()
    loss = task.loss(outputs, y)
    logp = last.log_softmax(-1)
    assert torch.allclose(loss, -logp[torch.arange(4), y].mean(), rtol=1e-12, atol=0)
    loss.backward()
    assert outputs.grad[:2].abs().max() == 0 and outputs.grad[2].abs().max() > 0
    m = task.metrics(outputs.detach(), y)
    assert m["accuracy"] == 0.75 and abs(m["ce"] - float(loss.detach())) < 1e-12


def test_missing_package_names_the_extra(monkeypatch):
    monkeypatch.setattr(M, "_GENERATED", {})
    monkeypatch.setitem(sys.modules, "mnist1d", None)  # import mnist1d raises ImportError
    with pytest.raises(ImportError, match=r'needs the mnist1d package: pip install "stability\[mnist1d\]"') as err:
        create("mnist1d")
    assert "\n" not in str(err.value)
