"""Pixel classification: 8×8 digits built in, MNIST from IDX files, the fixed permutation."""
import gzip
import importlib.util
import struct
import sys

import numpy as np
import pytest
import torch

from stability.tasks import create
from stability.tasks.pixels import read_idx

needs_sklearn = pytest.mark.skipif(importlib.util.find_spec("sklearn") is None,
                                   reason="scikit-learn (the optional extra 'digits') is not installed")


@needs_sklearn
def test_digits_shapes_and_splits():
    task = create("pixels")
    x, y = task.sample(5, torch.Generator().manual_seed(0))
    assert x.shape == (64, 5, 1) and x.dtype == torch.float32 and y.shape == (5,) and y.dtype == torch.int64
    assert task.input_size == 1 and task.output_size == 10 and task.T == 64
    assert float(x.min()) >= 0 and float(x.max()) <= 1
    d = task.definition()
    assert d["splits"] == {"train": 1257, "valid": 180, "test": 360} and d["permute"] is False
    # the splits are disjoint and together the whole data set (rows compared as bytes)
    rows = [tuple(r) for s in ("train", "valid", "test") for r in task.images[s].mul(16).round().int().tolist()]
    assert len(rows) == 1797
    from sklearn.datasets import load_digits
    assert sorted(rows) == sorted(tuple(int(v) for v in r) for r in load_digits().data)
    # deterministic: a second task holds the same splits
    again = create("pixels")
    assert all(torch.equal(task.images[s], again.images[s]) for s in task.images)
    assert set(task.labels["test"].tolist()) == set(range(10))


@needs_sklearn
def test_permutation_is_the_fixed_one():
    plain = create("pixels")
    perm = create("pixels", permute=True)
    expected = np.random.RandomState(92916).permutation(64)
    assert np.array_equal(perm.permutation, expected)
    xp, yp = perm.sample(7, torch.Generator().manual_seed(3))
    x, y = plain.sample(7, torch.Generator().manual_seed(3))
    assert torch.equal(y, yp) and torch.equal(xp, x[torch.from_numpy(expected)])  # step t shows pixel perm[t]
    d = perm.definition()
    assert d["permutation_seed"] == 92916 and d["permutation"] == "numpy.random.RandomState(92916).permutation(64)"
    other = create("pixels", permute=True, permutation_seed=1234)
    assert other.definition()["permutation_seed"] == 1234 and not np.array_equal(other.permutation, expected)


@needs_sklearn
def test_batches_cover_a_split_once_in_order():
    task = create("pixels")
    got = list(task.batches("valid", 50))
    assert [b[1].numel() for b in got] == [50, 50, 50, 30]
    assert torch.equal(torch.cat([b[1] for b in got]), task.labels["valid"])
    assert torch.equal(torch.cat([b[0] for b in got], 1)[:, :, 0].t(), task.images["valid"])
    assert len(list(task.batches("test", 50, max_batches=2))) == 2
    with pytest.raises(ValueError, match="no split 'dev'"):
        next(task.batches("dev", 4))


@needs_sklearn
def test_loss_from_the_last_step():
    task = create("pixels")
    _, y = task.sample(6, torch.Generator().manual_seed(0))
    out = torch.randn(64, 6, 10)
    out[-1] = 30.0 * torch.nn.functional.one_hot(y, 10)
    m = task.metrics(out, y)
    assert m["accuracy"] == 1.0 and m["ce"] < 1e-6
    assert task.baseline == pytest.approx(np.log(10))


def idx_bytes(array: np.ndarray) -> bytes:
    code = 0x08
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_mnist(directory, n_train=30, n_test=10, gz=True, dotted=False):
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.RandomState(0)
    arrays = {"train-images-idx3-ubyte": rng.randint(0, 256, (n_train, 28, 28)),
              "train-labels-idx1-ubyte": np.arange(n_train) % 10,
              "t10k-images-idx3-ubyte": rng.randint(0, 256, (n_test, 28, 28)),
              "t10k-labels-idx1-ubyte": (np.arange(n_test) * 3) % 10}
    for name, a in arrays.items():
        data = idx_bytes(a)
        if dotted:
            name = name[::-1].replace("-", ".", 1)[::-1]
        if gz:
            (directory / (name + ".gz")).write_bytes(gzip.compress(data))
        else:
            (directory / name).write_bytes(data)
    return arrays


@pytest.mark.parametrize("gz, dotted", [(True, False), (False, True)])
def test_mnist_from_idx_files(tmp_path, gz, dotted):
    arrays = write_mnist(tmp_path, gz=gz, dotted=dotted)
    task = create("pixels", source="mnist", data_dir=tmp_path, valid_size=5)
    assert task.T == 784 and task.definition()["splits"] == {"train": 25, "valid": 5, "test": 10}
    test = arrays["t10k-images-idx3-ubyte"].reshape(10, 784) / 255.0
    assert np.allclose(task.images["test"].numpy(), test, atol=1e-7)
    assert task.labels["test"].tolist() == arrays["t10k-labels-idx1-ubyte"].tolist()
    assert sorted(task.labels["train"].tolist() + task.labels["valid"].tolist()) == sorted(np.arange(30) % 10)
    x, y = task.sample(4, torch.Generator().manual_seed(0))
    assert x.shape == (784, 4, 1)
    perm = create("pixels", source="mnist", data_dir=tmp_path, valid_size=5, permute=True)
    assert perm.definition()["permutation"] == "numpy.random.RandomState(92916).permutation(784)"
    assert torch.equal(perm.images["test"], task.images["test"][:, torch.from_numpy(perm.permutation)])


def test_mnist_bad_input(tmp_path):
    with pytest.raises(FileNotFoundError, match="needs data_dir"):
        create("pixels", source="mnist")
    write_mnist(tmp_path / "m")
    (tmp_path / "m" / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(FileNotFoundError, match="t10k-labels-idx1-ubyte"):
        create("pixels", source="mnist", data_dir=tmp_path / "m")
    bad = tmp_path / "bad"
    write_mnist(bad, gz=False)
    (bad / "train-images-idx3-ubyte").write_bytes(b"\x12\x34\x56\x78junk")
    with pytest.raises(ValueError, match="train-images-idx3-ubyte: not an IDX file"):
        create("pixels", source="mnist", data_dir=bad)
    short = tmp_path / "short.idx"
    short.write_bytes(idx_bytes(np.zeros((3, 2, 2)))[:-1])
    with pytest.raises(ValueError, match="short.idx: IDX header says shape"):
        read_idx(short)
    with pytest.raises(ValueError, match="source='emnist' is not known"):
        create("pixels", source="emnist")
    with pytest.raises(TypeError, match="only used with source='mnist'"):
        create("pixels", data_dir=tmp_path)


def test_digits_without_sklearn(monkeypatch):
    for name in [m for m in sys.modules if m == "sklearn" or m.startswith("sklearn.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "sklearn", None)  # import sklearn raises ImportError
    with pytest.raises(ImportError, match=r"needs scikit-learn \(pip install 'stability\[digits\]'\)"):
        create("pixels")
