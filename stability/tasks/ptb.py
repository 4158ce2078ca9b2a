"""Penn Treebank language modelling, word level (``ptb``) and character level (``ptb_char``).

Reads Mikolov's preprocessed files from a directory the user names (``data_dir=``, else the
environment variable ``STABILITY_PTB_DIR``)::

    DIR/ptb.train.txt  DIR/ptb.valid.txt  DIR/ptb.test.txt                  (word level)
    DIR/ptb.char.train.txt  DIR/ptb.char.valid.txt  DIR/ptb.char.test.txt   (character level)

As in PyTorch's ``word_language_model`` example: every line is split on whitespace and ends
with ``<eos>``; the vocabulary is the training split's tokens in order of first appearance;
a split is "batchified" into B columns (the tail that does not fill a row is dropped) and cut
into segments of ``bptt`` steps; the hidden state is carried from one segment to the next
(detached between segments in training). Perplexity = exp(mean cross-entropy in nats),
bits per character = mean cross-entropy / ln 2 (nnRNN's protocol).

Where the training file is absent, ``train_split="valid"`` trains on the validation file and
evaluates on the test file (``eval_split``, by default the split that is not the training
one); the vocabulary then comes from the training split's file, evaluation tokens outside it
are read as ``<unk>`` (added to the vocabulary if the file has none), and ``definition()``
says all of that.
"""
from __future__ import annotations

import hashlib
import math
import os
import re
import sys
from pathlib import Path
from typing import Iterator

import torch
from torch import Tensor
from torch.nn import functional as F

from .base import Task, check_batch, check_choice, check_int, register

#: environment variable naming the PTB directory when no ``data_dir`` is given
PTB_ENV = "STABILITY_PTB_DIR"
SPLITS = ("train", "valid", "test")
PATTERNS = {"word": "ptb.{}.txt", "char": "ptb.char.{}.txt"}
EOS, UNK = "<eos>", "<unk>"
_CONTROL = re.compile(rb"[\x00-\x08\x0e-\x1f\x7f]")


def layout(level: str) -> str:
    return ", ".join("DIR/" + PATTERNS[level].format(s) for s in SPLITS)


def resolve_data_dir(data_dir, level: str = "word") -> Path:
    """The PTB directory: ``data_dir``, else $STABILITY_PTB_DIR; FileNotFoundError if neither exists."""
    if data_dir is None:
        data_dir = os.environ.get(PTB_ENV) or None
        if data_dir is None:
            raise FileNotFoundError(f"the PTB tasks need their data directory: pass data_dir=... or set "
                                    f"${PTB_ENV}; expected layout: {layout(level)}")
    if not isinstance(data_dir, (str, os.PathLike)):
        raise TypeError(f"data_dir must be a path, got {data_dir!r} ({type(data_dir).__name__})")
    path = Path(data_dir).expanduser()
    if not path.is_dir():
        raise FileNotFoundError(f"PTB directory {str(path)!r} does not exist; expected layout: {layout(level)}")
    return path


def read_text(path: Path) -> str:
    """A file's text; ValueError naming the file if it holds bytes that are not text."""
    data = path.read_bytes()
    bad = _CONTROL.search(data)
    if bad is not None:
        raise ValueError(f"{path}: not a text file (byte 0x{data[bad.start()]:02x} at offset {bad.start()})")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: not a UTF-8 text file (byte 0x{data[exc.start]:02x} at offset {exc.start})") from None


def tokenize(text: str) -> list[str]:
    """Whitespace tokens of every line, each line followed by ``<eos>`` (word_language_model)."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    tokens: list[str] = []
    for line in lines:
        tokens.extend(line.split())
        tokens.append(EOS)
    return tokens


def read_tokens(path: Path) -> list[str]:
    """The tokens of a split file; ValueError naming the file if it is not text or holds no words."""
    tokens = tokenize(read_text(path))
    if len(tokens) == sum(t == EOS for t in tokens):
        raise ValueError(f"{path}: the split is empty (no tokens besides line ends)")
    return tokens


def batchify(ids: Tensor, batch_size: int) -> Tensor:
    """(rows, B): the token stream cut into B contiguous columns; the leftover tail is dropped."""
    rows = ids.numel() // batch_size
    return ids[:rows * batch_size].view(batch_size, rows).t().contiguous()


_LOG_FLOAT_MAX = math.log(sys.float_info.max)


class LanguageModelTask(Task):
    """Next-token prediction on one of the PTB files; see the module docstring."""

    output_steps = "every"
    stateful = True
    generated = False
    default_eval_batches = None
    level = "word"

    def __init__(self, data_dir: str | os.PathLike | None = None, bptt: int = 35, train_split: str = "train",
                 eval_split: str | None = None, eval_batch_size: int = 10):
        self.bptt = check_int("bptt", bptt)
        self.eval_batch_size = check_int("eval_batch_size", eval_batch_size)
        self.train_split = check_choice("train_split", train_split, SPLITS)
        if eval_split is None:
            if train_split == "train":
                periodic, final = ("valid",), ("test",)
            else:  # the one that is neither the training file nor "train"
                periodic, final = (next(s for s in SPLITS[1:] if s != train_split),), ()
        else:
            check_choice("eval_split", eval_split, SPLITS)
            if eval_split == train_split:
                raise ValueError(f"eval_split={eval_split!r} is the training split; choose another: "
                                 f"{', '.join(s for s in SPLITS if s != train_split)}")
            if eval_split == "train":
                raise ValueError("eval_split='train' is not allowed: 'train' names the training split; "
                                 "train on another split with train_split=... instead")
            periodic, final = (eval_split,), ()
        self.periodic_splits, self.final_splits = periodic, final
        self.data_dir = resolve_data_dir(data_dir, self.level)

        # split name used in metric rows -> file split it is read from
        self.files = {"train": train_split, **{s: s for s in periodic + final}}
        paths = {}
        for split, file_split in self.files.items():
            path = self.data_dir / PATTERNS[self.level].format(file_split)
            if not path.is_file():
                hint = ""
                if file_split == "train":
                    hint = ("; without a training file, train on another split: "
                            "train_split='valid', eval_split='test'")
                raise FileNotFoundError(f"PTB file missing: {path} (expected layout: {layout(self.level)}){hint}")
            paths[split] = path
        texts = {split: read_tokens(path) for split, path in paths.items()}
        self.md5 = {split: hashlib.md5(paths[split].read_bytes()).hexdigest() for split in paths}

        vocab: dict[str, int] = {}
        for tok in texts["train"]:
            if tok not in vocab:
                vocab[tok] = len(vocab)
        self.oov = {split: sum(tok not in vocab for tok in toks) for split, toks in texts.items()}
        if any(self.oov.values()) and UNK not in vocab:
            vocab[UNK] = len(vocab)
        self.vocab = vocab
        self.itos = list(vocab)
        unk = vocab.get(UNK, -1)
        self.ids = {split: torch.tensor([vocab.get(t, unk) for t in toks], dtype=torch.int64)
                    for split, toks in texts.items()}
        self.input_size = self.output_size = len(vocab)
        self._batched: dict[tuple[str, int], Tensor] = {}

    # data ----------------------------------------------------------------------------
    def split_ids(self, split: str) -> Tensor:
        if split not in self.ids:
            raise ValueError(f"task {self.name!r} has no split {split!r} here; "
                             f"allowed: {', '.join(self.ids)}")
        return self.ids[split]

    def batchified(self, split: str, batch_size: int) -> Tensor:
        key = (split, check_batch(batch_size))
        if key not in self._batched:
            data = batchify(self.split_ids(split), batch_size)
            if data.shape[0] < 2:
                raise ValueError(f"the {split!r} split ({self.files[split]} file, {self.ids[split].numel()} tokens) "
                                 f"is too short for batch size {batch_size}")
            self._batched[key] = data
        return self._batched[key]

    def batches(self, split: str, batch_size: int, max_batches: int | None = None) -> Iterator[tuple[Tensor, Tensor]]:
        """Consecutive segments (x, y) of ``split``, each (≤ bptt, B) token ids, y = x shifted by one.

        One pass over the split; the hidden state is meant to be carried from one to the next.
        """
        data = self.batchified(split, batch_size)
        rows = data.shape[0]
        for n, i in enumerate(range(0, rows - 1, self.bptt)):
            if max_batches is not None and n >= max_batches:
                return
            seq = min(self.bptt, rows - 1 - i)
            yield data[i:i + seq], data[i + 1:i + 1 + seq]

    def segments_per_epoch(self, batch_size: int) -> int:
        rows = self.batchified("train", batch_size).shape[0]
        return math.ceil((rows - 1) / self.bptt)

    def steps_per_epoch(self, batch_size: int) -> int:
        """One update per segment: :meth:`segments_per_epoch`."""
        return self.segments_per_epoch(batch_size)

    def sample(self, batch_size: int, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """B random windows of the training split: x, y both (bptt, B) token ids (for probes)."""
        batch = check_batch(batch_size)
        ids = self.ids["train"]
        steps = min(self.bptt, ids.numel() - 1)
        starts = torch.randint(0, ids.numel() - steps, (batch,), generator=generator)
        idx = starts[None, :] + torch.arange(steps)[:, None]
        return ids[idx], ids[idx + 1]

    @property
    def reported_split(self) -> str:
        """The split whose figures a report shows: the last evaluated one (test, or the eval split)."""
        return (self.periodic_splits + self.final_splits)[-1]

    def unigram_ce(self) -> float:
        """Cross-entropy (nats per token) of the training split's unigram distribution (add-one
        smoothing) on the reported split: the best model that ignores context."""
        counts = torch.bincount(self.ids["train"], minlength=self.output_size).double() + 1.0
        logp = torch.log(counts / counts.sum())
        return float(-logp[self.ids[self.reported_split]].mean())

    # loss and metrics ----------------------------------------------------------------
    def loss(self, outputs: Tensor, y: Tensor) -> Tensor:
        return F.cross_entropy(outputs.reshape(-1, outputs.shape[-1]), y.reshape(-1))

    def count(self, y: Tensor) -> int:
        return int(y.numel())

    @torch.no_grad()
    def metrics(self, outputs: Tensor, y: Tensor) -> dict[str, float]:
        return self.finish({"ce": float(self.loss(outputs, y))})

    def finish(self, means: dict[str, float]) -> dict[str, float]:
        ce = means["ce"]
        if self.level == "char":
            return {"ce": ce, "bpc": ce / math.log(2.0)}
        # a diverged model has a finite cross-entropy whose exponential overflows: report inf
        return {"ce": ce, "perplexity": math.exp(ce) if ce < _LOG_FLOAT_MAX else math.inf}

    def definition(self) -> dict:
        d = {"task": self.name, "level": self.level, "bptt": self.bptt, "train_split": self.train_split,
             "eval_splits": list(self.periodic_splits), "final_splits": list(self.final_splits),
             "files": {s: PATTERNS[self.level].format(f) for s, f in self.files.items()},
             "vocab_size": len(self.vocab), "vocabulary": f"{self.train_split} split, first appearance",
             "tokens": {s: int(v.numel()) for s, v in self.ids.items()}, "oov": dict(self.oov),
             "md5": dict(self.md5), "eval_batch_size": self.eval_batch_size,
             "baseline": self.unigram_ce(), "baseline_metric": "ce",
             "baseline_note": (f"unigram model of the {self.train_split} file (add-one smoothing), "
                               f"scored on {self.reported_split}"),
             "data_dir": str(self.data_dir)}
        if self.train_split != "train":
            d["note"] = (f"trained on the {self.train_split} file, evaluated on "
                         f"{' and '.join(self.periodic_splits + self.final_splits)}; not the standard protocol")
        return d


@register("ptb")
class PTBWordTask(LanguageModelTask):
    """Word-level PTB: perplexity; truncated BPTT of 35 by default (PyTorch's example)."""

    level = "word"

    def __init__(self, data_dir: str | os.PathLike | None = None, bptt: int = 35, train_split: str = "train",
                 eval_split: str | None = None, eval_batch_size: int = 10):
        super().__init__(data_dir, bptt, train_split, eval_split, eval_batch_size)


@register("ptb_char")
class PTBCharTask(LanguageModelTask):
    """Character-level PTB (``ptb.char.*``): bits per character; BPTT 150 by default (nnRNN)."""

    level = "char"

    def __init__(self, data_dir: str | os.PathLike | None = None, bptt: int = 150, train_split: str = "train",
                 eval_split: str | None = None, eval_batch_size: int = 10):
        super().__init__(data_dir, bptt, train_split, eval_split, eval_batch_size)
