"""The gated cells (lstm, gru) in suites: a tiny suite run end to end, their rows' configs, and the
suite errors that keep a gated row from carrying what does not apply to it."""
import textwrap
import types

import pytest

from stability import runner as S
from stability import tasks
from stability.runner.resolve import task_sequence_length
from stability.sizing import parameter_count
from stability.store import Store

TINY = textwrap.dedent("""
    name = "gated"
    hidden_size = 4
    seeds = [0]
    threads = 1
    nonlinearity = "relu"
    model = { input_init = "official" }
    [train]
    steps = 3
    batch_size = 4
    eval_batches = 1
    [[transition]]
    name = "dense"
    [[transition]]
    name = "lstm"
    [[transition]]
    name = "gru"
    [[experiment]]
    task = "copy"
    options = { T = 4, K = 2 }
    [[experiment]]
    task = "adding"
    options = { T = 6 }
    transitions = ["lstm", "gru"]
    model = { layers = 2 }
    [[experiment]]
    task = "adding"
    options = { T = 6 }
    transitions = ["gru"]
    model = { bidirectional = true, readout = "all" }
    match = "params"
    budget = 300
    """)


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: one torch thread per test


def load(tmp_path, text=TINY):
    path = tmp_path / "gated.toml"
    path.write_text(text)
    return S.load_suite(path, device="cpu")


def test_a_suite_with_lstm_and_gru_runs_end_to_end(tmp_path):
    suite = load(tmp_path)
    rows = {r.label: r.config for r in suite.runs}
    assert len(rows) == 6, list(rows)
    gated = [c for c in rows.values() if c.transition in ("lstm", "gru")]
    assert len(gated) == 5
    for c in gated:  # nothing of a transition's RecurrentNet: no transition options, no input_init, tanh
        assert c.transition_options == {} and "input_init" not in c.model and c.nonlinearity == "tanh"
    (bidi,) = [c for c in gated if c.model.get("readout") == "all"]
    assert bidi.model == {"bidirectional": True, "readout": "all", "sequence_length": 6}
    # the size closest to the budget, counted on the bidirectional readout-all model: 6n² + 36n + 1
    assert bidi.hidden_size == 5  # (a unidirectional readout-"last" GRU would get n = 8)
    assert [parameter_count("gru", n, 2, 1, bidirectional=True, readout="all", sequence_length=6)
            for n in (4, 5)] == [241, 331]
    assert any("input_init = 'official' does not apply to the gated cell 'lstm'" in n for n in suite.notes)
    assert any("nonlinearity = 'relu' does not apply to the gated cell 'gru'" in n for n in suite.notes)
    dense = [c for c in rows.values() if c.transition == "dense"]
    assert dense[0].model == {"input_init": "official"} and dense[0].nonlinearity == "relu"

    store = Store(tmp_path / "r.sqlite")
    summary = S.run_suite(suite, store, workers=1, progress=False)
    assert summary.failed == 0 and summary.finished == 6, summary.failures
    metrics = store.metrics()
    for run in suite.runs:
        c = run.config
        m = metrics[metrics.run_id == run.id]
        loss = m[(m.split == "train") & (m.metric == "loss")]
        assert len(loss) == 3 and loss.value.notna().all(), run.label
        params = int(m[m.metric == "params"].value.iloc[0])
        options = dict(c.model, **c.transition_options)
        if c.transition == "dense":
            options["nonlinearity"] = c.nonlinearity
        task = tasks.create(c.name, **c.options)
        assert params == parameter_count(c.transition, c.hidden_size, task.input_size, task.output_size,
                                         **options), run.label

    # the report: gated rows have no W, said once per table, never as "missing"; LSTM's state named
    from stability.report import write_report
    out = tmp_path / "report"
    write_report(tmp_path / "r.sqlite", out)
    text = (out / "report.md").read_text()
    assert "no single transition matrix W (gated cells)" in text
    assert not any(line.startswith("- Missing") and ("lstm" in line or "gru" in line) for line in text.splitlines())


@pytest.mark.parametrize("edit, message", [
    (('name = "lstm"', 'name = "lstm"\n    options = { reflectors = 4 }'),
     "transition[1].options: 'lstm' is a gated cell and takes no transition options (got reflectors)"),
    (('options = { T = 4, K = 2 }', 'options = { T = 4, K = 2 }\n    model = { readout = "all" }'),
     "model.readout = 'all' gives one output per sequence, but task 'copy' reads every step's output; "
     "allowed with readout = 'all': adding"),
    (('model = { input_init = "official" }', 'model = { layers = 2 }'),
     "experiment[0].model.layers = 2: the transition 'dense' has one layer; allowed: layers = 1"),
    (('model = { layers = 2 }', 'model = { layers = 0 }'), "model.layers = 0 must be an integer >= 1"),
    (('model = { layers = 2 }', 'model = { bidirectional = 1 }'), "model.bidirectional = 1; allowed: False, True"),
    (('model = { layers = 2 }', 'model = { engine = "fused" }'), "allowed: 'auto', 'native', 'loop'"),
    (('options = { T = 4, K = 2 }', 'options = { T = 4, K = 2 }\n    measure = ["spectrum"]'),
     "experiment[0].measure: probe 'spectrum' cannot measure 'lstm'"),
    (('eval_batches = 1', 'eval_batches = 1\n    lr = 0.01\n    transition_lr = 0.001'),
     "experiment[0].train.transition_lr = 0.001: the gated cell 'lstm' has no transition; allowed: unset or "
     "equal to lr = 0.01"),
    (('name = "gru"', 'name = "gruu"\n    label = "gru"'), "'gruu' is not a known transition or cell (did you mean 'gru'?)"),
])
def test_suite_errors(tmp_path, edit, message):
    old, new = edit
    assert old in TINY
    with pytest.raises(S.SuiteError) as info:
        load(tmp_path, TINY.replace(old, new, 1))
    assert message in str(info.value) and "\n" not in str(info.value), str(info.value)


def test_output_steps_and_sequence_length():
    assert {name: tasks.get(name).output_steps for name in ("adding", "copy", "pixels", "ptb", "ptb_char")} == \
        {"adding": "last", "copy": "every", "pixels": "last", "ptb": "every", "ptb_char": "every"}
    assert task_sequence_length(tasks.create("adding", T=7)) == 7  # one sampled batch's length
    declared = types.SimpleNamespace(sequence_length=40, sample=None)
    assert task_sequence_length(declared) == 40


def test_notes_shared_by_experiments_are_said_once():
    from stability.runner.expand import merge_notes
    notes = ["experiment[0]: x does not apply", "skipping experiment[3] (ptb): no PTB directory",
             "experiment[2]: x does not apply", "experiment[2]: y", "experiment[0]: x does not apply"]
    assert merge_notes(notes) == ["experiment[0, 2]: x does not apply",
                                  "skipping experiment[3] (ptb): no PTB directory", "experiment[2]: y"]
