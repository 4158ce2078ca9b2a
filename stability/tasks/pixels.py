"""Sequential and permuted pixel classification: one pixel per step, classify after the last.

Sources:

- ``source="digits"`` (the default; no download): scikit-learn's 8×8 digits (1,797 images,
  T = 64), split deterministically into train / valid / test (``valid_size``, ``test_size``).
  Needs the optional extra ``scikit-learn`` (``pip install 'stability[digits]'``).
- ``source="mnist"``: MNIST from the standard IDX files in ``data_dir`` (``train-images-idx3-ubyte``,
  ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte``, each raw or
  ``.gz``; ``.`` in place of the last ``-`` is accepted too); T = 784; 60k/10k with a validation
  split of ``valid_size`` carved from the 60k (docs/protocols.md).

``permute=True`` applies the fixed permutation ``numpy.random.RandomState(92916).permutation(T)``
(full-capacity uRNN, scoRNN, expRNN); ``permutation_seed`` changes the seed, and the definition
stores it. Pixels are scaled to [0, 1]. Models are selected on ``valid``; ``test`` is
evaluated once, at the end of training.
"""
from __future__ import annotations

import gzip
import os
import struct
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from .base import SplitClassification, check_batch, check_choice, check_int, register

SOURCES = ("digits", "mnist")
#: the pMNIST permutation seed of full-capacity uRNN, scoRNN and expRNN
PERMUTATION_SEED = 92916
#: seed of the fixed shuffle that carves the validation (and, for digits, test) split
SPLIT_SEED = 0
#: environment variable naming the MNIST directory for suites (``--mnist-dir`` wins)
MNIST_ENV = "STABILITY_MNIST_DIR"
MNIST_FILES = {"train_images": "train-images-idx3-ubyte", "train_labels": "train-labels-idx1-ubyte",
               "test_images": "t10k-images-idx3-ubyte", "test_labels": "t10k-labels-idx1-ubyte"}


def _idx_candidates(directory: Path, stem: str) -> list[Path]:
    dotted = stem[::-1].replace("-", ".", 1)[::-1]  # train-images.idx3-ubyte
    names = [stem, stem + ".gz", dotted, dotted + ".gz"]
    return [directory / n for n in names]


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (raw or gzip) as a uint8 array; ValueError naming the file if it is malformed."""
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise ValueError(f"{path}: broken gzip file ({exc})") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise ValueError(f"{path}: not an IDX file of unsigned bytes (magic {raw[:4].hex() or 'missing'}; "
                         f"expected 00000801 or 00000803)")
    ndim = raw[3]
    if len(raw) < 4 + 4 * ndim:
        raise ValueError(f"{path}: truncated IDX header")
    shape = struct.unpack(f">{ndim}I", raw[4:4 + 4 * ndim])
    size = int(np.prod(shape)) if shape else 0
    body = raw[4 + 4 * ndim:]
    if len(body) != size:
        raise ValueError(f"{path}: IDX header says shape {shape} ({size} bytes) but the file holds {len(body)}")
    return np.frombuffer(body, dtype=np.uint8).reshape(shape)


def load_mnist(data_dir) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(train images (N, 784) uint8, train labels, test images, test labels) from IDX files."""
    if data_dir is None:
        raise FileNotFoundError("source='mnist' needs data_dir=DIR holding the IDX files "
                                f"{', '.join(MNIST_FILES.values())} (raw or .gz)")
    directory = Path(data_dir).expanduser()
    if not directory.is_dir():
        raise FileNotFoundError(f"MNIST directory {str(directory)!r} does not exist")
    arrays = {}
    for key, stem in MNIST_FILES.items():
        found = [p for p in _idx_candidates(directory, stem) if p.is_file()]
        if not found:
            raise FileNotFoundError(f"MNIST file missing: {directory / stem} (or {stem}.gz); expected in "
                                    f"{directory}: {', '.join(MNIST_FILES.values())} (raw or .gz)")
        arrays[key] = read_idx(found[0])
    out = []
    for part in ("train", "test"):
        images, labels = arrays[f"{part}_images"], arrays[f"{part}_labels"]
        if images.ndim != 3 or labels.ndim != 1 or images.shape[0] != labels.shape[0]:
            raise ValueError(f"MNIST {part} files disagree: images {images.shape}, labels {labels.shape}")
        out += [images.reshape(images.shape[0], -1), labels]
    return tuple(out)


def load_digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 8×8 digits: images (1797, 64) in 0..16, labels."""
    try:
        from sklearn.datasets import load_digits as sk_load_digits
    except ImportError as exc:
        raise ImportError("source='digits' needs scikit-learn (pip install 'stability[digits]'); "
                          f"or use source='mnist', data_dir=DIR with the MNIST IDX files ({exc})") from None
    d = sk_load_digits()
    return d.data.astype(np.float32), d.target.astype(np.int64)


@register("pixels")
class PixelsTask(SplitClassification):
    """Pixel-by-pixel classification (sequential, or permuted with ``permute=True``)."""

    input_size = 1
    output_size = 10
    baseline_metric = "ce"
    output_steps = "last"
    periodic_splits = ("valid",)
    final_splits = ("test",)
    generated = False
    default_eval_batches = None

    def __init__(self, source: str = "digits", data_dir: str | os.PathLike | None = None, permute: bool = False,
                 permutation_seed: int = PERMUTATION_SEED, valid_size: int | None = None,
                 test_size: int | None = None):
        self.source = check_choice("source", source, SOURCES)
        if not isinstance(permute, bool):
            raise TypeError(f"permute must be True or False, got {permute!r}")
        self.permute = permute
        self.permutation_seed = check_int("permutation_seed", permutation_seed, minimum=0)
        rng = np.random.RandomState(SPLIT_SEED)
        if source == "digits":
            if data_dir is not None:
                raise TypeError("data_dir is only used with source='mnist'")
            images, labels = load_digits()
            images = images / 16.0
            n = images.shape[0]
            self.valid_size = 180 if valid_size is None else check_int("valid_size", valid_size)
            self.test_size = 360 if test_size is None else check_int("test_size", test_size)
            if self.valid_size + self.test_size >= n:
                raise ValueError(f"valid_size + test_size = {self.valid_size + self.test_size} leaves no "
                                 f"training images of the {n} digits")
            order = rng.permutation(n)
            cut = {"test": order[:self.test_size], "valid": order[self.test_size:self.test_size + self.valid_size],
                   "train": order[self.test_size + self.valid_size:]}
            data = {s: (images[i], labels[i]) for s, i in cut.items()}
            self.data_dir = None
        else:
            train_x, train_y, test_x, test_y = load_mnist(data_dir)
            train_x = train_x.astype(np.float32) / 255.0
            test_x = test_x.astype(np.float32) / 255.0
            n = train_x.shape[0]
            self.valid_size = 5000 if valid_size is None else check_int("valid_size", valid_size)
            if test_size is not None:
                raise TypeError("test_size is fixed by the MNIST test files (10k); leave it unset")
            if self.valid_size >= n:
                raise ValueError(f"valid_size={self.valid_size} leaves no training images of the {n}")
            self.test_size = test_x.shape[0]
            order = rng.permutation(n)
            data = {"train": (train_x[order[self.valid_size:]], train_y[order[self.valid_size:]].astype(np.int64)),
                    "valid": (train_x[order[:self.valid_size]], train_y[order[:self.valid_size]].astype(np.int64)),
                    "test": (test_x, test_y.astype(np.int64))}
            self.data_dir = str(Path(data_dir).expanduser())
        self.T = int(data["train"][0].shape[1])
        self.permutation = (np.random.RandomState(self.permutation_seed).permutation(self.T)
                            if permute else None)
        self.images: dict[str, Tensor] = {}
        self.labels: dict[str, Tensor] = {}
        for split, (x, y) in data.items():
            x = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
            if self.permutation is not None:
                x = x[:, torch.from_numpy(self.permutation)]
            self.images[split] = x.contiguous()
            self.labels[split] = torch.from_numpy(np.ascontiguousarray(y, dtype=np.int64))
        classes = int(max(int(v.max()) for v in self.labels.values())) + 1
        if classes > self.output_size:
            raise ValueError(f"labels run up to {classes - 1}; expected 0..9")
        self.baseline = float(np.log(self.output_size))

    @staticmethod
    def _as_sequence(images: Tensor) -> Tensor:
        return images.t().unsqueeze(-1)  # (B, T) -> (T, B, 1)

    def sample(self, batch_size: int, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """B random training images: x (T, B, 1) float32, y (B,) int64 labels."""
        batch = check_batch(batch_size)
        idx = torch.randint(0, self.labels["train"].numel(), (batch,), generator=generator)
        return self._as_sequence(self.images["train"][idx]), self.labels["train"][idx]

    def split_inputs(self) -> dict[str, Tensor]:
        return self.images

    def definition(self) -> dict:
        return {"task": "pixels", "source": self.source, "T": self.T, "permute": self.permute,
                "permutation": (f"numpy.random.RandomState({self.permutation_seed}).permutation({self.T})"
                                if self.permute else None),
                "permutation_seed": self.permutation_seed if self.permute else None,
                "splits": {s: int(v.numel()) for s, v in self.labels.items()}, "split_seed": SPLIT_SEED,
                "baseline": self.baseline, "baseline_metric": self.baseline_metric,
                "chance_accuracy": 0.1, "classify": "last step's output", "data_dir": self.data_dir}
