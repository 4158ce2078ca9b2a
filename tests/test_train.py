"""The training loop: rows and schedule, determinism, options, probes, and two real learning checks."""
import importlib.util
import math
import time

import pandas as pd
import pytest
import torch

from stability import RecurrentNet
from stability.tasks import create
from stability.train import OPTIMIZERS, evaluate, make_optimizer, train

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: one thread is as fast, and robust on a busy CPU

needs_sklearn = pytest.mark.skipif(importlib.util.find_spec("sklearn") is None,
                                   reason="scikit-learn (the optional extra 'digits') is not installed")


def model_for(task, hidden=8, transition="dense", seed=0, **options):
    torch.manual_seed(seed)
    return RecurrentNet(task.input_size, hidden, task.output_size, transition, **options)


def rows(log, split, metric):
    sel = log[(log.split == split) & (log.metric == metric)]
    return sel.step.tolist(), sel.value.tolist()


@pytest.fixture
def corpus(tmp_path):
    text = "".join(f"w{i % 7} w{(i * 3) % 5} x{i % 4}\n" for i in range(60))
    for split in ("train", "valid", "test"):
        (tmp_path / f"ptb.{split}.txt").write_text(text)
    return tmp_path


def test_rows_and_schedule():
    task = create("copy", T=5)
    log = train(model_for(task), task, 7, batch_size=4, eval_every=3, log_every=2, progress=False)
    assert list(log.columns) == ["step", "split", "metric", "value"]
    assert str(log.step.dtype) == "int64" and str(log.value.dtype) == "float64"
    assert set(log.split) == {"train", "valid"}
    for metric in ("loss", "ce", "accuracy", "step_time"):
        assert rows(log, "train", metric)[0] == [2, 4, 6, 7]
    for metric in ("ce", "accuracy"):
        assert rows(log, "valid", metric)[0] == [0, 3, 6, 7]
    assert all(0 < t < 10 for t in rows(log, "train", "step_time")[1])
    # the training objective of copy is the cross-entropy
    assert rows(log, "train", "loss")[1] == pytest.approx(rows(log, "train", "ce")[1])


@needs_sklearn
def test_test_split_once_at_the_end_and_zero_steps():
    task = create("pixels")
    model = model_for(task)
    log = train(model, task, 4, batch_size=16, eval_every=2, eval_batches=1, progress=False)
    assert rows(log, "valid", "accuracy")[0] == [0, 2, 4]
    # a data set is evaluated on whole splits whatever eval_batches says (it is for generated tasks)
    whole = evaluate(model, task, "test", batch_size=16)
    assert rows(log, "test", "ce")[1] == [pytest.approx(whole["ce"], rel=1e-12)]
    assert whole != evaluate(model, task, "test", batch_size=16, max_batches=1)
    assert rows(log, "test", "accuracy")[0] == [4] and rows(log, "test", "ce")[0] == [4]
    log = train(model_for(task), task, 0, progress=False)
    assert set(zip(log.step, log.split)) == {(0, "valid"), (0, "test")} and len(log) == 4


def frames_equal(a: pd.DataFrame, b: pd.DataFrame) -> bool:
    a, b = a[a.metric != "step_time"], b[b.metric != "step_time"]
    return a.reset_index(drop=True).equals(b.reset_index(drop=True))


def task_cases():
    yield pytest.param("copy", {"T": 6}, id="copy")
    yield pytest.param("adding", {"T": 8, "markers": "anywhere"}, id="adding")
    yield pytest.param("pixels", {"permute": True}, id="pixels", marks=needs_sklearn)
    yield pytest.param("ptb", {"bptt": 5}, id="ptb")


@pytest.mark.parametrize("name, options", task_cases())
def test_bit_for_bit_deterministic(name, options, corpus):
    if name == "ptb":
        options = {**options, "data_dir": corpus}
    task = create(name, **options)
    kw = dict(batch_size=4, eval_every=5, eval_batches=2, optimizer="adam", lr=1e-2, clip=1.0, progress=False)
    m1, m2, m3 = (model_for(task, transition="spectral", margin=0.2) for _ in range(3))
    a = train(m1, task, 12, seed=3, **kw)
    b = train(m2, task, 12, seed=3, **kw)
    assert frames_equal(a, b)
    assert all(torch.equal(p, q) for p, q in zip(m1.parameters(), m2.parameters()))
    assert not all(torch.equal(p, q) for p, q in zip(m1.parameters(), model_for(task, transition="spectral", margin=0.2).parameters()))
    c = train(m3, task, 12, seed=4, **kw)
    if name == "ptb":  # the training split is read in order: the seed does not enter
        assert frames_equal(a, c)
    else:
        assert not frames_equal(a, c)


def test_model_sizes_must_fit():
    task = create("copy", T=5)
    with pytest.raises(ValueError, match="task 'copy' needs a model with input_size=10 and output_size=9; "
                                         "this model has input_size=3, output_size=9"):
        train(RecurrentNet(3, 4, 9), task, 1, progress=False)


def test_bad_options():
    task = create("adding", T=5)
    model = model_for(task)
    with pytest.raises(ValueError, match="optimizer='lbfgs' is not known; allowed: 'rmsprop', 'adam', 'sgd'"):
        train(model, task, 1, optimizer="lbfgs", progress=False)
    with pytest.raises(ValueError, match="lr=-1"):
        train(model, task, 1, lr=-1, progress=False)
    with pytest.raises(ValueError, match="steps=-1"):
        train(model, task, -1, progress=False)
    with pytest.raises(ValueError, match="probe 'lyapunov' is not known; allowed: half_life, spectrum"):
        train(model, task, 1, probes={"lyapunov": 5}, progress=False)
    with pytest.raises(ValueError, match="clip"):
        train(model, task, 1, clip=-1.0, progress=False)
    with pytest.raises(TypeError, match="stability.tasks.Task"):
        train(model, "adding", 1, progress=False)
    assert set(OPTIMIZERS) == {"rmsprop", "adam", "sgd"}


def test_transition_lr_applies_to_the_transition_only():
    task = create("adding", T=5)
    # renormalize=False: re-normalizing unit rows in float32 moves them by rounding (~1e-8) every step
    model = model_for(task, transition="spectral", margin=0.5, renormalize=False)
    opt = make_optimizer(model, "sgd", 0.1, 1e-3)
    lrs = {id(p): g["lr"] for g in opt.param_groups for p in g["params"]}
    assert all(lrs[id(p)] == 1e-3 for p in model.transition.parameters())
    assert all(lrs[id(p)] == 0.1 for p in model.readout.parameters())
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    train(model, task, 3, optimizer="sgd", lr=0.1, transition_lr=1e-12, progress=False)
    for n, p in model.named_parameters():
        moved = (p - before[n]).abs().max().item()
        assert (moved < 1e-9) if n.startswith("transition.") else (moved > 1e-6), n


def test_clip_bounds_the_update():
    task = create("adding", T=5)
    steps = {}
    for clip in (None, 1e-3):
        model = model_for(task)
        before = torch.cat([p.detach().flatten().clone() for p in model.parameters()])
        train(model, task, 1, optimizer="sgd", lr=1.0, clip=clip, progress=False)
        after = torch.cat([p.detach().flatten() for p in model.parameters()])
        steps[clip] = (after - before).norm().item()
    assert steps[1e-3] == pytest.approx(1e-3, rel=1e-3) and steps[None] > 1e-2


def test_callback_gets_every_row_as_it_comes():
    task = create("copy", T=3)
    seen = []
    log = train(model_for(task), task, 120, batch_size=2, eval_every=40, progress=True,
                callback=lambda new: seen.append(list(new)))
    assert len(seen) >= 4 and all(seen)
    assert [r for batch in seen for r in batch] == list(log.itertuples(index=False, name=None))


def test_probes_on_schedule():
    pytest.importorskip("stability.probes")
    task = create("copy", T=6)
    model = model_for(task, hidden=8, transition="spectral", margin=0.3)
    log = train(model, task, 10, batch_size=4, probes={"half_life": 4, "spectrum": 5}, progress=False)
    assert rows(log, "probe", "half_life")[0] == [0, 4, 8, 10] == rows(log, "probe", "decay_rate")[0]
    assert rows(log, "probe", "sigma_max")[0] == [0, 5, 10] == rows(log, "probe", "sigma_min")[0]
    sv = model.transition.singular_values().detach()
    assert rows(log, "probe", "sigma_max")[1][-1] == pytest.approx(sv.max().item(), rel=1e-6)
    assert rows(log, "probe", "sigma_min")[1][-1] == pytest.approx(sv.min().item(), rel=1e-6)
    assert all(0.7 - 1e-6 <= v <= 1.3 + 1e-6 for v in log[log.metric.str.startswith("sigma")].value)
    rates = rows(log, "probe", "decay_rate")[1]
    lives = rows(log, "probe", "half_life")[1]
    assert all(r > 0 and h == pytest.approx(math.log(2) / r) for r, h in zip(rates, lives))


class Recording(RecurrentNet):
    """A RecurrentNet that remembers the h0 of every training call."""

    def forward(self, x, h0=None):
        if self.training:
            self.calls.append(None if h0 is None else h0.clone())
        out, states = super().forward(x, h0)
        if self.training:
            self.last.append(states[-1].detach().clone())
        return out, states


def test_language_model_carries_state_within_an_epoch(corpus):
    task = create("ptb", data_dir=corpus, bptt=7)
    per_epoch = task.segments_per_epoch(3)
    torch.manual_seed(0)
    model = Recording(task.input_size, 6, task.output_size)
    model.calls, model.last = [], []
    train(model, task, 2 * per_epoch + 2, batch_size=3, lr=1e-2, progress=False)
    for i, h0 in enumerate(model.calls):
        if i % per_epoch == 0:
            assert h0 is None, i       # a new epoch starts from zeros
        else:
            assert torch.equal(h0, model.last[i - 1]), i
    assert len(model.calls) == 2 * per_epoch + 2 and per_epoch > 2


def test_a_diverging_run_stops_with_a_warning():
    task = create("adding", T=5)
    model = model_for(task)
    with torch.no_grad():
        model.readout.weight.fill_(float("nan"))
    with pytest.warns(UserWarning, match="stopped at step 1"):
        log = train(model, task, 50, probes={"spectrum": 10}, progress=False)
    assert rows(log, "train", "loss")[0] == [1] and math.isnan(rows(log, "train", "loss")[1][0])
    assert rows(log, "valid", "mse")[0] == [0, 1]
    steps, sigma = rows(log, "probe", "sigma_max")
    assert steps == [0, 1] and sigma[0] == sigma[1] and math.isfinite(sigma[0])  # the bad update is not applied
    model = model_for(task, transition="spectral")
    with torch.no_grad():
        model.transition.p.fill_(float("nan"))
    with pytest.warns(UserWarning, match="stopped at step 1"):
        log = train(model, task, 5, probes={"spectrum": 2, "half_life": 2}, progress=False)
    assert set(log[log.split == "probe"].metric) == {"sigma_min", "sigma_max", "half_life", "decay_rate"}
    assert log[log.split == "probe"].value.isna().all()


# ---------------------------------------------------------------------------------------
# real learning checks
# ---------------------------------------------------------------------------------------
ADDING_CHECK = dict(T=50, hidden=64, transition="spectral", margin=0.1, optimizer="adam", lr=3e-3,
                    batch_size=50, steps=2000, seed=0)


def test_adding_is_learned_by_a_spectral_rnn(one_thread):
    """Adding, T = 50: a spectral RNN goes from the baseline 1/6 to MSE < 0.05 (seeds 0–4: 0.020–0.042 with
    the official re-normalized reflector rows, the default; 0.009–0.037 with renormalize=False)."""
    c = ADDING_CHECK
    task = create("adding", T=c["T"])
    model = model_for(task, hidden=c["hidden"], transition=c["transition"], seed=c["seed"], margin=c["margin"])
    start = time.perf_counter()
    log = train(model, task, c["steps"], batch_size=c["batch_size"], optimizer=c["optimizer"], lr=c["lr"],
                eval_every=500, seed=c["seed"], progress=False)
    elapsed = time.perf_counter() - start
    steps, mse = rows(log, "valid", "mse")
    print(f"adding T=50 {c}: valid MSE {dict(zip(steps, [round(v, 4) for v in mse]))} in {elapsed:.1f}s")
    assert mse[0] > task.baseline         # an untrained net is no better than the baseline
    assert mse[-1] < 0.05 < task.baseline


PTB_CHECK = dict(hidden=64, transition="spectral", optimizer="rmsprop", lr=3e-3, clip=1.0, batch_size=32,
                 bptt=35, steps=200)


def test_ptb_perplexity_beats_the_unigram(ptb_dir, one_thread):
    """Train on ptb.valid.txt, evaluate on ptb.test.txt: well under the test text's unigram perplexity."""
    c = PTB_CHECK
    task = create("ptb", data_dir=ptb_dir, train_split="valid", eval_split="test", bptt=c["bptt"])
    counts = torch.bincount(task.ids["test"], minlength=task.output_size).double()
    p = counts[counts > 0] / counts.sum()
    unigram = math.exp(-(p * p.log()).sum().item())  # the best unigram model of the test text itself
    model = model_for(task, hidden=c["hidden"], transition=c["transition"])
    start = time.perf_counter()
    log = train(model, task, c["steps"], batch_size=c["batch_size"], optimizer=c["optimizer"], lr=c["lr"],
                clip=c["clip"], progress=False)
    elapsed = time.perf_counter() - start
    steps, ppl = rows(log, "test", "perplexity")
    print(f"PTB (train: valid, eval: test) {c}: test perplexity {ppl[0]:.0f} -> {ppl[-1]:.1f}; "
          f"unigram perplexity of the test text {unigram:.1f}; {elapsed:.1f}s")
    assert steps == [0, c["steps"]]
    assert ppl[0] > unigram
    assert ppl[-1] < 0.8 * unigram


def test_lr_decay_every_n_steps_gives_the_expected_rates():
    task = create("adding", T=5)
    model = model_for(task, transition="spectral", margin=0.5)
    seen = []

    class Spy(torch.optim.SGD):  # records every group's learning rate at each step
        def step(self, closure=None):
            seen.append([g["lr"] for g in self.param_groups])
            return super().step(closure)

    OPTIMIZERS["spy"] = Spy
    try:
        log = train(model, task, 7, batch_size=4, optimizer="spy", lr=0.1, transition_lr=0.01, lr_decay=0.5,
                    decay_every=3, log_every=1, progress=False)
    finally:
        del OPTIMIZERS["spy"]
    # updates 1–3 at lr, 4–6 at lr·0.5, 7 at lr·0.25; the transition's group decays alike
    factors = [1, 1, 1, 0.5, 0.5, 0.5, 0.25]
    assert seen == [[pytest.approx(0.1 * f), pytest.approx(0.01 * f)] for f in factors]
    steps, lrs = rows(log, "train", "lr")
    assert steps == list(range(1, 8)) and lrs == pytest.approx([0.1 * f for f in factors])
    no_decay = train(model, task, 2, batch_size=4, progress=False)
    assert "lr" not in set(no_decay.metric)


@needs_sklearn
def test_lr_decay_per_epoch_on_a_data_set():
    task = create("pixels")
    per_epoch = task.steps_per_epoch(500)
    assert per_epoch == math.ceil(task.labels["train"].numel() / 500) == 3  # 1257 training digits
    model = model_for(task)
    log = train(model, task, 7, batch_size=500, lr=1e-3, lr_decay=0.99, decay_every="epoch", eval_batches=1,
                progress=False)
    _, lrs = rows(log, "train", "lr")
    assert lrs == pytest.approx([1e-3 * 0.99 ** (s // 3) for s in range(7)])


def test_lr_decay_per_epoch_follows_the_language_models_segments(corpus):
    task = create("ptb", data_dir=str(corpus), bptt=5)
    per_epoch = task.steps_per_epoch(4)
    assert per_epoch == task.segments_per_epoch(4) and per_epoch >= 2
    log = train(model_for(task), task, per_epoch + 1, batch_size=4, lr=0.01, lr_decay=0.5, progress=False)
    _, lrs = rows(log, "train", "lr")
    assert lrs == pytest.approx([0.01] * per_epoch + [0.005])


@pytest.mark.parametrize("options, match", [
    (dict(lr_decay=0.0), r"lr_decay=0.0 must be a finite number in \(0, 1\]"),
    (dict(lr_decay=1.5), r"lr_decay=1.5 must be"),
    (dict(lr_decay=float("nan")), r"lr_decay=nan must be"),
    (dict(lr_decay=True), r"lr_decay=True must be"),
    (dict(lr_decay=0.9, decay_every=0), r"decay_every=0 must be an int >= 1 \(updates\) or 'epoch'"),
    (dict(lr_decay=0.9, decay_every="week"), r"decay_every='week'"),
    (dict(lr_decay=0.9), r"decay_every='epoch' needs a task with epochs .*task 'adding' generates its batches"),
])
def test_lr_decay_bad_options(options, match):
    task = create("adding", T=3)
    with pytest.raises(ValueError, match=match):
        train(model_for(task), task, 1, progress=False, **options)
