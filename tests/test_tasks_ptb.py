"""PTB reader and language-model task: on a small corpus written here, and on the real files."""
import hashlib
import math

import pytest
import torch

from stability.tasks import create
from stability.tasks.ptb import batchify, tokenize
from stability.train import evaluate

TRAIN = "the cat sat\n on the mat \nthe dog\n"
VALID = "the dog sat\nthe bird\n"
TEST = "a cat\nthe mat sat on the dog\n"


def write(directory, files):
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (directory / name).write_bytes(text if isinstance(text, bytes) else text.encode())
    return directory


@pytest.fixture
def corpus(tmp_path):
    return write(tmp_path / "ptb", {"ptb.train.txt": TRAIN, "ptb.valid.txt": VALID, "ptb.test.txt": TEST})


def words(task, ids):
    return [task.itos[i] for i in ids.tolist()]


def test_reader_vocabulary_and_eos(corpus):
    task = create("ptb", data_dir=corpus)
    assert task.itos[:8] == ["the", "cat", "sat", "<eos>", "on", "mat", "dog", "<unk>"]
    assert words(task, task.ids["train"]) == "the cat sat <eos> on the mat <eos> the dog <eos>".split()
    # "bird" and "a" are not in the training vocabulary: read as <unk>, which is added once
    assert words(task, task.ids["valid"]) == "the dog sat <eos> the <unk> <eos>".split()
    assert words(task, task.ids["test"]) == "<unk> cat <eos> the mat sat on the dog <eos>".split()
    assert task.input_size == task.output_size == 8
    d = task.definition()
    assert d["oov"] == {"train": 0, "valid": 1, "test": 1} and d["vocab_size"] == 8
    assert d["tokens"] == {"train": 11, "valid": 7, "test": 10}
    assert d["eval_splits"] == ["valid"] and d["final_splits"] == ["test"] and d["train_split"] == "train"
    assert d["md5"]["test"] == hashlib.md5(TEST.encode()).hexdigest()


def test_unk_in_training_file_is_reused(tmp_path):
    d = write(tmp_path, {"ptb.train.txt": "a <unk> b\n", "ptb.valid.txt": "a z\n", "ptb.test.txt": "b\n"})
    task = create("ptb", data_dir=d)
    assert task.itos == ["a", "<unk>", "b", "<eos>"]
    assert words(task, task.ids["valid"]) == ["a", "<unk>", "<eos>"]


def test_tokenize_line_ends():
    assert tokenize("a b\r\nc\n\nd") == ["a", "b", "<eos>", "c", "<eos>", "<eos>", "d", "<eos>"]
    assert tokenize("x\n") == ["x", "<eos>"]


def test_batchify_and_segments(corpus):
    ids = torch.arange(23)
    data = batchify(ids, 4)
    assert data.shape == (5, 4) and data[:, 1].tolist() == [5, 6, 7, 8, 9]  # contiguous columns
    task = create("ptb", data_dir=corpus, bptt=3)
    full = task.batchified("train", 2)
    assert full.shape == (5, 2)
    segs = list(task.batches("train", 2))
    assert [s[0].shape[0] for s in segs] == [3, 1]                 # the last segment is shorter
    assert torch.equal(torch.cat([x for x, _ in segs]), full[:-1])
    assert torch.equal(torch.cat([y for _, y in segs]), full[1:])  # y is x shifted by one step
    assert task.segments_per_epoch(2) == 2
    assert len(list(task.batches("train", 2, max_batches=1))) == 1
    with pytest.raises(ValueError, match="too short for batch size 8"):
        list(task.batches("valid", 8))


def test_sample_windows(corpus):
    task = create("ptb", data_dir=corpus, bptt=4)
    x, y = task.sample(6, torch.Generator().manual_seed(0))
    assert x.shape == y.shape == (4, 6) and x.dtype == torch.int64
    assert torch.equal(x[1:], y[:-1])
    stream = task.ids["train"].tolist()
    for col in range(6):
        window = x[:, col].tolist() + [int(y[-1, col])]
        assert any(stream[i:i + 5] == window for i in range(len(stream) - 4))


def test_known_distribution_gives_perplexity_and_bpc(corpus, tmp_path):
    word = create("ptb", data_dir=corpus)
    V = word.output_size
    y = torch.randint(0, V, (7, 3), generator=torch.Generator().manual_seed(0))
    uniform = torch.zeros(7, 3, V)
    m = word.metrics(uniform, y)
    assert m["perplexity"] == pytest.approx(V) and m["ce"] == pytest.approx(math.log(V))
    p = torch.softmax(torch.randn(V, generator=torch.Generator().manual_seed(1)), 0)
    logits = p.log().expand(7, 3, V)
    ce = -p.log()[y].mean().item()
    m = word.metrics(logits, y)
    assert m["ce"] == pytest.approx(ce, rel=1e-6) and m["perplexity"] == pytest.approx(math.exp(ce), rel=1e-6)

    chars = write(tmp_path / "c", {"ptb.char.train.txt": "a b _ c\nd\n", "ptb.char.valid.txt": "a\n",
                                   "ptb.char.test.txt": "b _ a\n"})
    char = create("ptb_char", data_dir=chars)
    assert char.itos == ["a", "b", "_", "c", "<eos>", "d"] and char.bptt == 150
    yc = torch.randint(0, 6, (5, 2), generator=torch.Generator().manual_seed(2))
    m = char.metrics(torch.zeros(5, 2, 6), yc)
    assert m["bpc"] == pytest.approx(math.log2(6)) and "perplexity" not in m
    m = char.metrics(torch.log(torch.tensor([0.5, 0.25, 0.125, 0.0625, 0.03125, 0.03125])).expand(5, 2, 6),
                     torch.full((5, 2), 1))
    assert m["bpc"] == pytest.approx(2.0)


class FixedDistribution(torch.nn.Module):
    """Predicts the same distribution at every step (a 'model' with a known perplexity)."""

    def __init__(self, probs):
        super().__init__()
        self.logits = torch.nn.Parameter(probs.log())
        self.seen = []

    def forward(self, x, h0=None):
        self.seen.append(None if h0 is None else h0.clone())
        out = self.logits.expand(*x.shape, -1)
        return out, torch.full((*x.shape, 1), float(len(self.seen)))


def test_evaluate_is_the_token_weighted_mean_over_the_whole_split(tmp_path):
    text = "\n".join("a b c a b a d" for _ in range(9)) + "\n"
    d = write(tmp_path, {"ptb.train.txt": text, "ptb.valid.txt": text[:30], "ptb.test.txt": text})
    task = create("ptb", data_dir=d, bptt=4, eval_batch_size=3)
    p = torch.tensor([0.4, 0.3, 0.1, 0.15, 0.05], dtype=torch.float64)
    model = FixedDistribution(p)
    got = evaluate(model, task, "test")
    data = task.batchified("test", 3)
    targets = data[1:].flatten()                 # every predicted token, segments of 4 and a shorter one
    assert (data.shape[0] - 1) % 4 != 0
    ce = -p.log()[targets].mean().item()
    assert got["ce"] == pytest.approx(ce, rel=1e-9) and got["perplexity"] == pytest.approx(math.exp(ce), rel=1e-9)
    # the state is carried across segments: every segment after the first gets the last one's state
    assert model.seen[0] is None and all(h is not None for h in model.seen[1:])


def test_train_on_valid_evaluate_on_test(tmp_path):
    d = write(tmp_path, {"ptb.valid.txt": VALID, "ptb.test.txt": TEST})
    with pytest.raises(FileNotFoundError, match=r"ptb\.train\.txt.*expected layout.*train_split='valid'"):
        create("ptb", data_dir=d)
    task = create("ptb", data_dir=d, train_split="valid", eval_split="test")
    assert words(task, task.ids["train"]) == "the dog sat <eos> the bird <eos>".split()
    assert task.periodic_splits == ("test",) and task.final_splits == ()
    defn = task.definition()
    assert defn["train_split"] == "valid" and defn["files"] == {"train": "ptb.valid.txt", "test": "ptb.test.txt"}
    assert "not the standard protocol" in defn["note"] and defn["oov"]["test"] == 4  # a, cat, mat, on
    assert create("ptb", data_dir=d, train_split="valid").periodic_splits == ("test",)
    with pytest.raises(ValueError, match="eval_split='valid' is the training split"):
        create("ptb", data_dir=d, train_split="valid", eval_split="valid")
    with pytest.raises(ValueError, match="train_split='dev' is not known"):
        create("ptb", data_dir=d, train_split="dev")


def test_data_dir_from_environment(corpus, monkeypatch):
    monkeypatch.setenv("STABILITY_PTB_DIR", str(corpus))
    assert create("ptb").definition()["data_dir"] == str(corpus)
    monkeypatch.delenv("STABILITY_PTB_DIR")
    with pytest.raises(FileNotFoundError, match=r"data_dir=\.\.\. or set \$STABILITY_PTB_DIR"):
        create("ptb")


def test_bad_directories_and_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        create("ptb", data_dir=tmp_path / "nowhere")
    d = write(tmp_path / "a", {"ptb.train.txt": TRAIN, "ptb.valid.txt": VALID})
    with pytest.raises(FileNotFoundError, match=r"missing: .*ptb\.test\.txt.*DIR/ptb\.train\.txt, DIR/ptb\.valid\.txt"):
        create("ptb", data_dir=d)
    with pytest.raises(FileNotFoundError, match=r"ptb\.char\.train\.txt"):
        create("ptb_char", data_dir=d)
    d = write(tmp_path / "b", {"ptb.train.txt": TRAIN, "ptb.valid.txt": b"ok\x00\x01\xff", "ptb.test.txt": TEST})
    with pytest.raises(ValueError, match=r"ptb\.valid\.txt: not a text file"):
        create("ptb", data_dir=d)
    d = write(tmp_path / "c", {"ptb.train.txt": TRAIN, "ptb.valid.txt": VALID, "ptb.test.txt": b"caf\xe9\n"})
    with pytest.raises(ValueError, match=r"ptb\.test\.txt: not a UTF-8 text file"):
        create("ptb", data_dir=d)
    d = write(tmp_path / "d", {"ptb.train.txt": " \n\n", "ptb.valid.txt": VALID, "ptb.test.txt": TEST})
    with pytest.raises(ValueError, match=r"ptb\.train\.txt: the split is empty"):
        create("ptb", data_dir=d)
    d = write(tmp_path / "e", {"ptb.train.txt": TRAIN, "ptb.valid.txt": "", "ptb.test.txt": TEST})
    with pytest.raises(ValueError, match=r"ptb\.valid\.txt: the split is empty"):
        create("ptb", data_dir=d)
    with pytest.raises(ValueError, match="bptt=0"):
        create("ptb", data_dir=tmp_path / "a", bptt=0)


def test_real_files(ptb_dir):
    """The shared files read as their README says: token counts with <eos>, md5 sums."""
    task = create("ptb", data_dir=ptb_dir, train_split="valid", eval_split="test")
    d = task.definition()
    assert d["tokens"] == {"train": 73760, "test": 82430}
    assert d["md5"] == {"train": "aa0affc06ff7c36e977d7cd49e3839bf", "test": "8b80168b89c18661a38ef683c0dc3721"}
    assert "<unk>" in task.vocab and d["vocab_size"] < 10000
    char = create("ptb_char", data_dir=ptb_dir, train_split="valid")
    assert char.definition()["eval_splits"] == ["test"] and 40 < char.output_size < 60
    assert char.vocab.keys() >= set("abcdefghijklmnopqrstuvwxyz_") | {"<eos>"}


def test_a_diverged_model_has_infinite_perplexity_not_an_error(corpus):
    # an IRNN on PTB can reach a finite cross-entropy above log(float max) ~ 709.8
    word = create("ptb", data_dir=corpus)
    V = word.output_size
    logits = torch.zeros(2, 1, V)
    logits[..., 0] = 2000.0
    m = word.metrics(logits, torch.full((2, 1), 1))
    assert m["ce"] == pytest.approx(2000.0) and m["perplexity"] == math.inf
    assert word.finish({"ce": 700.0})["perplexity"] == pytest.approx(math.exp(700.0))
