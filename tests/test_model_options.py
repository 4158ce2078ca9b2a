"""RecurrentNet's model options (issue 19): ``bidirectional``, ``readout="all"``, ``sequence_length``.

Every engine against a plain definition written here (two Python loops, concatenation,
time-major flattening, one matrix product), in float64: outputs, hidden states and the
gradients of every parameter, of h0 and of the inputs; then the step views, the training
hooks that must see both directions, and every bad input.
"""
from __future__ import annotations

import math

import pytest
import torch

from stability import RecurrentNet
from stability import transitions as T
from stability.optim import after_step, make_optimizer, model_transitions

pytestmark = pytest.mark.usefixtures("one_thread")

ENGINES = ("loop", "fused", "native")
STEPS, BATCH, INPUT, HIDDEN, OUTPUT = 6, 3, 4, 5, 3


def plain_forward(model: RecurrentNet, x: torch.Tensor, h0: torch.Tensor | None):
    """The definition: a_t = W_in x_t + b + W h_{t−1}, h_t = φ(a_t), the backward direction the same
    loop from t = T−1 down to 0 with its own W, W_in, b; [forward ; backward] per step; readout
    "last": y_t = W_out h_t + c; "all": y = W_out (h_1 … h_T flattened batch-first, as
    ``outputs.reshape(B, T·2n)`` of a batch_first nn.GRU) + c, as (1, B, O)."""
    phi = torch.tanh if model.nonlinearity == "tanh" else torch.relu
    inputs = torch.nn.functional.one_hot(x, model.input_size).double() if not x.is_floating_point() else x
    steps, batch = inputs.shape[:2]
    directions = [(model.transition, model.input_map, range(steps))]
    if model.bidirectional:
        directions.append((model.backward_transition, model.backward_input_map, range(steps - 1, -1, -1)))
    per_direction = []
    for d, (transition, input_map, order) in enumerate(directions):
        w = transition.matrix()
        h = torch.zeros(batch, model.hidden_size, dtype=torch.float64) if h0 is None else \
            (h0[d] if model.bidirectional else h0)
        states = [None] * steps
        for t in order:
            h = phi(inputs[t] @ input_map.weight.T + input_map.bias + h @ w.T)
            states[t] = h
        per_direction.append(torch.stack(states))
    hidden = torch.cat(per_direction, dim=2)
    if model.readout_mode == "all":
        batch_first = hidden.transpose(0, 1)                       # (B, T, 2n)
        flat = batch_first.reshape(batch, -1)                      # (B, T·2n)
        return (flat @ model.readout.weight.T + model.readout.bias).unsqueeze(0), hidden
    return hidden @ model.readout.weight.T + model.readout.bias, hidden


def loss_of(outputs, states):
    return outputs.sin().sum() + 0.1 * (states ** 2).sum() + 0.3 * (states[1] * states[-2]).sum()


def results(model, x, h0, forward):
    outputs, states = forward(model, x, h0)
    wrt = [*model.parameters(), h0] + ([x] if x.is_floating_point() else [])
    grads = torch.autograd.grad(loss_of(outputs, states), wrt)
    return [outputs.detach(), states.detach(), *grads]


def rel(a, b):
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-300)).item()


def make(bidirectional, readout, nonlinearity="tanh", transition="spectral", n=HIDDEN, seed=0, **options):
    torch.manual_seed(seed)
    if transition == "spectral":
        options.setdefault("reflectors", n)
        options.setdefault("margin", 0.3)
    model = RecurrentNet(INPUT, n, OUTPUT, transition, nonlinearity=nonlinearity, bidirectional=bidirectional,
                         readout=readout, sequence_length=STEPS, **options).double()
    with torch.no_grad():  # off every symmetric init, so that a mixed-up direction would show
        for p in model.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return model


def inputs(tokens, n=HIDDEN, bidirectional=False, seed=1):
    torch.manual_seed(seed)
    x = torch.randint(0, INPUT, (STEPS, BATCH)) if tokens else \
        torch.randn(STEPS, BATCH, INPUT, dtype=torch.float64, requires_grad=True)
    shape = (2, BATCH, n) if bidirectional else (BATCH, n)
    return x, (0.5 * torch.randn(*shape, dtype=torch.float64)).requires_grad_()


@pytest.mark.parametrize("tokens", [False, True], ids=["float", "tokens"])
@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
@pytest.mark.parametrize("readout", ["last", "all"])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("engine", ENGINES)
def test_engine_matches_plain_definition(engine, bidirectional, readout, nonlinearity, tokens):
    model = make(bidirectional, readout, nonlinearity)
    model.engine = engine
    x, h0 = inputs(tokens, bidirectional=bidirectional)
    ref = results(model, x, h0, plain_forward)
    got = results(model, x, h0, lambda m, a, b: m(a, b))
    assert got[0].shape == ((1, BATCH, OUTPUT) if readout == "all" else (STEPS, BATCH, OUTPUT))
    assert got[1].shape == (STEPS, BATCH, HIDDEN * (2 if bidirectional else 1))
    names = ["outputs", "states", *(name for name, _ in model.named_parameters()), "h0", "x"]
    for name, a, b in zip(names, got, ref):
        assert rel(a, b) < 1e-12, name


@pytest.mark.parametrize("engine", ENGINES)
def test_zero_initial_state_and_no_h0(engine):
    model = make(True, "all")
    model.engine = engine
    x, _ = inputs(False, bidirectional=True)
    zeros = torch.zeros(2, BATCH, HIDDEN, dtype=torch.float64)
    assert torch.allclose(model(x)[0], plain_forward(model, x, zeros)[0], rtol=0, atol=1e-13)


@pytest.mark.parametrize("name", T.available())
def test_every_transition_runs_bidirectional_with_both_directions_trained(name):
    n = 4
    torch.manual_seed(2)
    try:
        T.create(name, n)
    except ValueError as exc:
        pytest.skip(f"{name} refuses n={n}: {exc}")
    model = make(True, "all", transition=name, n=n, seed=3)
    assert model.backward_transition is not model.transition
    assert type(model.backward_transition) is type(model.transition)
    assert model.backward_transition.options() == model.transition.options()
    x, h0 = inputs(False, n=n, bidirectional=True)
    ref = results(model, x, h0, plain_forward)
    for engine in ENGINES:
        model.engine = engine
        got = results(model, x, h0, lambda m, a, b: m(a, b))
        for a, b in zip(got, ref):
            assert rel(a, b) < 1e-10, engine
    # both directions' transitions are trained: the optimizer's transition group and the after_step hooks
    own = {id(p) for p in model.transition_parameters()}
    assert own == {id(p) for t in (model.transition, model.backward_transition) for p in t.parameters()}
    assert own.isdisjoint(id(p) for p in model.other_parameters())
    assert len(own) + len(model.other_parameters()) == len(list(model.parameters()))
    opt = make_optimizer(model, "adam", lr=1e-2, transition_lr=1e-3)
    groups = [{id(p) for p in g["params"]} for g in opt.param_groups]
    slow = {id(p) for t in (model.transition, model.backward_transition) for p in t.transition_lr_parameters()}
    if own:
        assert groups[-1] == slow and opt.param_groups[-1]["lr"] == 1e-3
    hooked = model_transitions(model)
    assert (model.transition in hooked) == (model.backward_transition in hooked) == bool(own)


def test_after_step_reaches_the_backward_direction(monkeypatch):
    model = make(True, "last", transition="householder")
    called = []
    for label, t in (("forward", model.transition), ("backward", model.backward_transition)):
        monkeypatch.setattr(t, "after_step", lambda label=label: called.append(label))
    after_step(model)
    assert sorted(called) == ["backward", "forward"]


def test_bidirectional_layout_is_nn_rnn():
    """With the dense transition the model is nn.RNN(bidirectional=True) with b_hh = 0."""
    model = make(True, "last", transition="dense")
    rnn = torch.nn.RNN(INPUT, HIDDEN, bidirectional=True).double()
    with torch.no_grad():
        for suffix, t, m in (("", model.transition, model.input_map),
                             ("_reverse", model.backward_transition, model.backward_input_map)):
            getattr(rnn, "weight_hh_l0" + suffix).copy_(t.matrix())
            getattr(rnn, "weight_ih_l0" + suffix).copy_(m.weight)
            getattr(rnn, "bias_ih_l0" + suffix).copy_(m.bias)
            getattr(rnn, "bias_hh_l0" + suffix).zero_()
    x, h0 = inputs(False, bidirectional=True)
    for engine in ENGINES:
        model.engine = engine
        assert torch.allclose(model(x, h0)[1], rnn(x, h0)[0], rtol=0, atol=1e-13), engine


def test_unidirectional_last_keeps_the_fused_network(monkeypatch):
    import stability.model as model_module

    calls = []
    original = model_module.fused_network
    monkeypatch.setattr(model_module, "fused_network", lambda *a, **k: calls.append(1) or original(*a, **k))
    x, _ = inputs(False)
    for bidirectional, readout, expected in ((False, "last", 1), (False, "all", 1), (True, "last", 1)):
        make(bidirectional, readout, engine="fused")(x)
        assert len(calls) == expected


@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("tokens", [False, True], ids=["float", "tokens"])
def test_step_views_reproduce_states_and_gradients(bidirectional, tokens):
    model = make(bidirectional, "all", engine="fused")
    x, h0 = inputs(tokens, bidirectional=bidirectional)
    views = model.step_views(x, h0)
    assert [v.name for v in views] == (["forward", "backward"] if bidirectional else ["forward"])
    outputs, hidden = model(x, h0)
    for d, view in enumerate(views):
        # states from the view's own step, in its own time order
        s, produced = view.initial, []
        for u in view.inputs.unbind(0):
            s = view.step(s, u)
            produced.append(s)
        assert torch.allclose(torch.stack(produced), view.states, rtol=0, atol=1e-13)
        own = hidden[..., d * HIDDEN:(d + 1) * HIDDEN].detach()
        assert torch.allclose(view.states, own.flip(0) if d else own, rtol=0, atol=1e-13)
        # the closed form is the step's Jacobian
        w, deriv = view.closed_form
        t = 2
        jac = torch.autograd.functional.jacobian(lambda s: view.step(s, view.inputs[t])[0],
                                                 view.states[t - 1])[:, 0]
        assert torch.allclose(jac, deriv[t, 0][:, None] * w, rtol=0, atol=1e-13)
    # backpropagation through each view's closed form with its output_gradient = autograd's ∂L/∂h0
    loss = loss_of(outputs, hidden)
    g_hidden, g_h0 = torch.autograd.grad(loss, [hidden, h0])
    for d, view in enumerate(views):
        w, deriv = view.closed_form
        direct, delta = view.output_gradient(g_hidden), torch.zeros_like(view.initial)
        for t in range(STEPS - 1, -1, -1):
            delta = ((delta + direct[t]) * deriv[t]) @ w
        assert rel(delta, g_h0[d] if bidirectional else g_h0) < 1e-12, view.name


def test_options_repr_and_parameters():
    model = make(True, "all", transition="householder", reflectors=2)
    assert model.options() == {"nonlinearity": "tanh", "input_init": "torch", "bidirectional": True,
                               "readout": "all", "sequence_length": STEPS}
    assert "bidirectional=True, readout='all', sequence_length=6" in repr(model)
    assert model.transition_name == "householder" and model.backward_transition.options()["reflectors"] == 2
    assert model.readout.in_features == STEPS * 2 * HIDDEN
    plain = RecurrentNet(INPUT, HIDDEN, OUTPUT)
    assert plain.backward_transition is None and plain.backward_input_map is None
    assert set(plain.state_dict()) == {"transition.weight", "input_map.weight", "input_map.bias",
                                       "readout.weight", "readout.bias"}
    assert "bidirectional" not in repr(plain) and "readout=" not in repr(plain)


@pytest.mark.parametrize("input_init", ["glorot", "official"])
def test_input_init_for_both_directions_and_the_flat_readout(input_init):
    torch.manual_seed(4)
    model = RecurrentNet(30, 20, 7, bidirectional=True, readout="all", sequence_length=40, input_init=input_init)
    for m in (model.input_map, model.backward_input_map):
        bound = math.sqrt(6 / (30 + 20))
        assert m.weight.abs().max() <= bound and m.weight.abs().max() > 0.95 * bound
        assert torch.equal(m.bias, torch.zeros(20))
    assert not torch.equal(model.input_map.weight, model.backward_input_map.weight)
    w_out = model.readout.weight
    if input_init == "glorot":  # fan_in = T·2n = 1600
        bound = math.sqrt(6 / (40 * 2 * 20 + 7))
        assert w_out.abs().max() <= bound and w_out.abs().max() > 0.95 * bound
    else:
        assert w_out.abs().max() <= 0.2 and 0.07 < w_out.std().item() < 0.1


@pytest.mark.parametrize("kwargs, exc, match", [
    (dict(readout="all"), ValueError, r"readout='all' needs sequence_length .*got None"),
    (dict(readout="every"), ValueError, r"readout='every' is not known; allowed: 'last', 'all'"),
    (dict(readout="all", sequence_length=0), ValueError, r"sequence_length=0 is out of range; allowed: >= 1"),
    (dict(readout="all", sequence_length=4.0), TypeError, r"sequence_length must be an int"),
    (dict(bidirectional="yes"), TypeError, r"bidirectional must be True or False, got 'yes'"),
    (dict(bidirectional=True, transition=T.create("dense", 6)), TypeError,
     r"bidirectional=True needs a transition name.*ready DenseTransition instance"),
])
def test_bad_construction(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        RecurrentNet(3, 6, 2, **kwargs)


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("call, exc, match", [
    (lambda m: m(torch.randn(5, 2, 3)), ValueError, r"readout='all' reads exactly sequence_length=4 steps; x has T=5"),
    (lambda m: m(torch.randn(4, 2, 3), torch.zeros(2, 6)), ValueError,
     r"h0 of a bidirectional model must have shape \(2, B=2, hidden_size=6\).*got \(2, 6\)"),
    (lambda m: m(torch.randn(4, 2, 3), torch.zeros(1, 2, 6)), ValueError, r"got \(1, 2, 6\)"),
    (lambda m: m(torch.randn(4, 2, 3), [0.0]), TypeError, r"h0 must be a torch.Tensor or None, got list"),
    (lambda m: m.recurrence(torch.randn(4, 2, 3), None, torch.eye(6)), TypeError,
     r"w of a bidirectional model must be a pair \(forward W, backward W\)"),
    (lambda m: m.step_views(torch.randn(4, 2, 3), torch.zeros(2, 6)), ValueError, r"h0 of a bidirectional"),
])
def test_bad_input(engine, call, exc, match):
    model = RecurrentNet(3, 6, 2, bidirectional=True, readout="all", sequence_length=4, engine=engine)
    with pytest.raises(exc, match=match) as info:
        call(model)
    assert "\n" not in str(info.value)


def test_readout_last_accepts_any_length_and_step_views_any_length():
    model = RecurrentNet(3, 6, 2, bidirectional=True, sequence_length=4)  # accepted, unused with "last"
    assert model(torch.randn(9, 2, 3))[0].shape == (9, 2, 2)
    flat = RecurrentNet(3, 6, 2, readout="all", sequence_length=4, bidirectional=True)
    assert [v.states.shape for v in flat.step_views(torch.randn(9, 2, 3))] == [(9, 2, 6), (9, 2, 6)]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("readout", ["last", "all"])
def test_cuda_engines_match_plain_definition(readout):
    model = make(True, readout)
    x, h0 = inputs(False, bidirectional=True)
    ref = results(model, x, h0, plain_forward)
    cuda = model.cuda()
    for engine in ("native", "fused"):  # native: cuDNN's bidirectional kernel
        cuda.engine = engine
        xc, hc = x.detach().cuda().requires_grad_(), h0.detach().cuda().requires_grad_()
        got = results(cuda, xc, hc, lambda m, a, b: m(a, b))
        for a, b in zip(got, ref):
            assert rel(a.cpu(), b) < 1e-10, engine
