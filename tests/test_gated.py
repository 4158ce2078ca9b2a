"""GatedNet (LSTM, GRU) against a plain Python loop of nn.LSTMCell / nn.GRUCell sharing its weights
(outputs and every parameter's gradient, float64), its step views against PyTorch's kernels, the
create_network factory, gated sizing, and bad input (one-line errors)."""
import pytest
import torch
from torch import nn

from stability.gated import GatedNet
from stability.network import create_network
from stability.sizing import hidden_for_budget, match_parameters, parameter_count
from stability.tasks import create as create_task
from stability.train import train

I, N, O, T, B = 3, 4, 2, 6, 3
SHAPES = [(1, False, "last"), (2, False, "last"), (1, True, "last"), (2, True, "all")]


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: one torch thread per test


def make(cell, layers=1, bidirectional=False, readout="last", engine="auto", seed=0):
    torch.manual_seed(seed)
    return GatedNet(I, N, O, cell, layers=layers, bidirectional=bidirectional, readout=readout,
                    sequence_length=T if readout == "all" else None, engine=engine).double()


def reference(model: GatedNet, x: torch.Tensor):
    """The same network as nn.LSTMCell / nn.GRUCell stepped in Python, sharing the model's parameters."""
    kind = nn.LSTMCell if model.cell == "lstm" else nn.GRUCell
    layer_input = x
    for layer in range(model.layers):
        directions = []
        for j in range(model.directions):
            cell = kind(layer_input.shape[-1], N).double()
            cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh = model.weights(layer, j)  # shared
            h = torch.zeros(x.shape[1], N, dtype=torch.float64)
            state = (h, h.clone()) if model.cell == "lstm" else h
            seq = {}
            for t in (reversed(range(x.shape[0])) if j else range(x.shape[0])):
                state = cell(layer_input[t], state)
                seq[t] = state[0] if model.cell == "lstm" else state
            directions.append(torch.stack([seq[t] for t in range(x.shape[0])]))
        layer_input = torch.cat(directions, dim=-1)
    states = layer_input
    if model.readout_mode == "all":
        flat = torch.cat([states[t] for t in range(states.shape[0])], dim=-1)  # h_1, h_2, ... per sequence
        return model.readout(flat)[None], states
    return model.readout(states), states


def grads(model, loss):
    model.zero_grad()
    loss.backward()
    return {name: p.grad.clone() for name, p in model.named_parameters()}


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("layers, bidirectional, readout", SHAPES)
@pytest.mark.parametrize("engine", ["auto", "loop"])
def test_matches_a_loop_of_cells(cell, layers, bidirectional, readout, engine):
    model = make(cell, layers, bidirectional, readout, engine)
    x = torch.randn(T, B, I, dtype=torch.float64)
    target = torch.randn(1 if readout == "all" else T, B, O, dtype=torch.float64)
    out, states = model(x)
    ref_out, ref_states = reference(model, x)
    assert out.shape == ref_out.shape == ((1, B, O) if readout == "all" else (T, B, O))
    assert states.shape == (T, B, N * (2 if bidirectional else 1))
    torch.testing.assert_close(out, ref_out, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(states, ref_states, rtol=1e-12, atol=1e-12)
    got = grads(model, ((model(x)[0] - target) ** 2).sum() + model(x)[1].sum())
    want = grads(model, ((reference(model, x)[0] - target) ** 2).sum() + reference(model, x)[1].sum())
    assert set(got) == set(want) and len(got) == 4 * layers * model.directions + 2
    for name in got:
        torch.testing.assert_close(got[name], want[name], rtol=1e-10, atol=1e-12, msg=name)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_token_ids_are_one_hot_inputs(cell, bidirectional):
    model = make(cell, 2, bidirectional)
    tokens = torch.randint(0, I, (T, B))
    one_hot = nn.functional.one_hot(tokens, I).double()
    got = grads(model, model(tokens)[0].square().sum())
    want = grads(model, model(one_hot)[0].square().sum())
    torch.testing.assert_close(model(tokens)[1], model(one_hot)[1], rtol=1e-12, atol=1e-12)
    for name in got:
        torch.testing.assert_close(got[name], want[name], rtol=1e-10, atol=1e-12, msg=name)


def full_state(model, batch, seed=1):
    """A random full initial state as nn.LSTM / nn.GRU take it, requiring grad."""
    gen = torch.Generator().manual_seed(seed)
    k = model.layers * model.directions
    parts = 2 if model.cell == "lstm" else 1
    return tuple(torch.randn(k, batch, N, generator=gen, dtype=torch.float64).requires_grad_() for _ in range(parts))


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("layers, bidirectional", [(1, False), (2, False), (1, True), (2, True)])
def test_step_views_reproduce_the_kernel(cell, layers, bidirectional):
    model = make(cell, layers, bidirectional)
    x = torch.randn(T, B, I, dtype=torch.float64)
    h0 = full_state(model, B)
    states, final = model.rnn(x, h0 if cell == "lstm" else h0[0])
    final = final if isinstance(final, tuple) else (final,)
    views = model.step_views(x, tuple(s.detach() for s in h0))
    parts = 2 if cell == "lstm" else 1
    k = parts * N
    assert [v.name for v in views] == (["forward", "backward"] if bidirectional else ["forward"])
    if not bidirectional:
        (view,) = views
        assert view.size == layers * k and view.closed_form is None
        names = [p for p, _ in view.layout]
        assert names == (["h", "c"][:parts] if layers == 1 else [f"{p}{l}" for l in (1, 2) for p in "hc"[:parts]])
        top = (layers - 1) * k
        torch.testing.assert_close(view.states[..., top:top + N], states, rtol=1e-12, atol=1e-12)
        for layer in range(layers):  # the final state of every layer, c included
            for i in range(parts):
                got = view.states[-1][:, layer * k + i * N: layer * k + (i + 1) * N]
                torch.testing.assert_close(got, final[i][layer], rtol=1e-12, atol=1e-12)
    else:
        for j, view in enumerate(views):
            assert view.size == k
            seq = view.states.flip(0) if j else view.states
            torch.testing.assert_close(seq[..., :N], states[..., j * N:(j + 1) * N], rtol=1e-12, atol=1e-12)
            for i in range(parts):
                torch.testing.assert_close(view.states[-1][:, i * N:(i + 1) * N], final[i][(layers - 1) * 2 + j],
                                           rtol=1e-12, atol=1e-12)
    for view in views:  # the step is the one that produced the states
        torch.testing.assert_close(view.step(view.initial, view.inputs[0]), view.states[0], rtol=1e-12, atol=1e-12)
        for t in range(1, T):
            torch.testing.assert_close(view.step(view.states[t - 1], view.inputs[t]), view.states[t],
                                       rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("layers, bidirectional", [(2, False), (2, True)])
def test_step_views_backpropagate_to_the_initial_state(cell, layers, bidirectional):
    """Adjoints through each view's step from output_gradient(∂L/∂hidden_states) give autograd's ∂L/∂h0."""
    model = make(cell, layers, bidirectional)
    x = torch.randn(T, B, I, dtype=torch.float64)
    h0 = full_state(model, B)
    weight = torch.randn(T, B, model.directions * N, dtype=torch.float64)
    _, states = model(x, h0)
    (states * weight).sum().backward()
    views = model.step_views(x, tuple(s.detach() for s in h0))
    for j, view in enumerate(views):
        direct = view.output_gradient(weight)
        adjoint = torch.zeros_like(view.initial)
        for t in reversed(range(T)):
            adjoint = adjoint + direct[t]
            previous = view.initial if t == 0 else view.states[t - 1]
            _, vjp = torch.func.vjp(lambda s: view.step(s, view.inputs[t]), previous)
            (adjoint,) = vjp(adjoint)
        if bidirectional:  # the view's state: the top layer's direction j
            index = (layers - 1) * 2 + j
            want = torch.cat([s.grad[index] for s in h0], dim=-1)
        else:
            want = torch.cat([s.grad[layer] for layer in range(layers) for s in h0], dim=-1)
        torch.testing.assert_close(adjoint, want, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_continuing_a_sequence_carries_the_whole_state(cell):
    model = make(cell, layers=2)
    x = torch.randn(2 * T, B, I, dtype=torch.float64)
    _, whole = model(x)
    _, first = model(x[:T])
    h = first[-1].detach()  # what the training loop carries
    model(torch.randn(T, B, I, dtype=torch.float64))  # another call in between (an evaluation)
    _, second = model(x[T:], h)
    torch.testing.assert_close(second, whole[T:], rtol=1e-12, atol=1e-12)
    # any other (B, n) tensor sets the top layer's h; c and the lower layer start at zero
    h_other = h.clone()
    zeros = torch.zeros(2, B, N, dtype=torch.float64)
    top = zeros.clone()
    top[1] = h_other
    want, _ = model.rnn(x[T:], (top, zeros) if cell == "lstm" else top)
    torch.testing.assert_close(model(x[T:], h_other)[1], want, rtol=1e-12, atol=1e-12)


def test_trains_with_the_training_loop():
    model = GatedNet(2, 5, 1, "lstm")
    log = train(model, create_task("adding", T=8), 4, batch_size=4, eval_batches=1, progress=False, seed=0)
    loss = log[(log.split == "train") & (log.metric == "loss")].value
    assert len(loss) == 4 and loss.notna().all()
    with pytest.raises(ValueError, match="transition_lr=0.1 .* GatedNet has no transition"):
        train(GatedNet(2, 5, 1, "gru"), create_task("adding", T=8), 1, transition_lr=0.1, progress=False)


def test_published_mnist1d_gru_size():
    model = GatedNet(1, 6, 10, "gru", bidirectional=True, readout="all", sequence_length=40)
    assert sum(p.numel() for p in model.parameters()) == 5134
    assert model.options() == {"cell": "gru", "layers": 1, "bidirectional": True, "readout": "all",
                               "sequence_length": 40}
    opts = dict(bidirectional=True, readout="all", sequence_length=40)
    assert parameter_count("gru", 6, 1, 10, **opts) == 5134
    assert hidden_for_budget("gru", 5134, 1, 10, **opts) == 6


def test_gated_sizing():
    n, i, o = 7, 3, 2
    for cell, gates in (("lstm", 4), ("gru", 3)):
        one = gates * (n * i + n * n + 2 * n)
        two = one + gates * (n * n + n * n + 2 * n)
        assert parameter_count(cell, n, i, o) == one + n * o + o
        assert parameter_count(cell, n, i, o, layers=2) == two + n * o + o
        budget = parameter_count(cell, 37, i, o, layers=2)
        assert hidden_for_budget(cell, budget, i, o, layers=2) == 37
    table = match_parameters(5134, 1, 10, ["gru", "lstm"], model={"readout": "all", "sequence_length": 40},
                             options={"gru": {"bidirectional": True}})
    rows = table.set_index("transition")
    assert rows.loc["gru", "hidden"] == 6 and rows.loc["gru", "parameters"] == 5134
    assert rows.loc["lstm", "parameters"] == parameter_count("lstm", int(rows.loc["lstm", "hidden"]), 1, 10,
                                                             readout="all", sequence_length=40)


def test_create_network():
    assert isinstance(create_network(2, 3, 1, "gru", layers=2), GatedNet)
    net = create_network(2, 3, 1, "dense", layers=1, bidirectional=False, readout="last", sequence_length=None)
    assert type(net).__name__ == "RecurrentNet" and net.transition_name == "dense"


@pytest.mark.parametrize("call, error, match", [
    (lambda: create_network(2, 3, 1, "lstm", reflectors=4), TypeError,
     r"gated cell 'lstm' does not take option\(s\) reflectors .*allowed: layers, bidirectional, readout"),
    (lambda: create_network(2, 3, 1, "gru", nonlinearity="relu"), TypeError, "allowed: layers"),
    (lambda: create_network(2, 3, 1, "gru", layers=0), ValueError, "layers=0 is out of range; allowed: >= 1"),
    (lambda: create_network(2, 3, 1, "dense", layers=2), ValueError,
     "layers=2: the transition 'dense' builds a single-layer RecurrentNet; allowed: layers=1"),
    (lambda: create_network(2, 3, 1, "lsmt"), ValueError,
     r"unknown transition or cell 'lsmt' \(did you mean 'lstm'\?\); transitions: cayley, dense.*; cells: lstm, gru"),
    (lambda: GatedNet(2, 3, 1, "rnn"), ValueError, "cell='rnn' is not known; allowed: 'lstm', 'gru'"),
    (lambda: GatedNet(2, 3, 1, "gru", readout="first"), ValueError, "readout='first'"),
    (lambda: GatedNet(2, 3, 1, "gru", readout="all"), ValueError, "readout='all' needs sequence_length"),
    (lambda: GatedNet(2, 3, 1, "gru", sequence_length=5), ValueError, "only for readout='all'"),
    (lambda: GatedNet(2, 3, 1, "gru", bidirectional=1), TypeError, "bidirectional must be True or False"),
    (lambda: GatedNet(2, 3, 1, "lstm", engine="fused"), ValueError, "allowed: 'auto', 'native', 'loop'"),
    (lambda: GatedNet(2, 3, 1, "gru", readout="all", sequence_length=5)(torch.zeros(4, 1, 2)), ValueError,
     "reads exactly sequence_length=5 steps; x has T=4"),
    (lambda: GatedNet(2, 3, 1, "gru")(torch.zeros(4, 1, 3)), ValueError, r"shape \(T, B, input_size=2\)"),
    (lambda: GatedNet(2, 3, 1, "gru")(torch.zeros(4, 1, 2, dtype=torch.float64)), TypeError, "dtype"),
    (lambda: GatedNet(2, 3, 1, "gru")(torch.tensor([[0, 2]])), ValueError, r"token ids must lie in 0\.\.1"),
    (lambda: GatedNet(2, 3, 1, "gru")(torch.zeros(4, 2, 2), torch.zeros(3, 3)), ValueError, r"h0 must be None, \(B=2, 3\)"),
    (lambda: GatedNet(2, 3, 1, "lstm")(torch.zeros(4, 2, 2), (torch.zeros(1, 2, 3),)), ValueError, r"\(h, c\)"),
])
def test_bad_input(call, error, match):
    with pytest.raises(error, match=match) as info:
        call()
    assert "\n" not in str(info.value)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("layers, bidirectional, readout", SHAPES)
def test_cuda_kernels_match_the_cpu(cell, layers, bidirectional, readout):
    """cuDNN (float64 on CUDA) against the CPU kernels: outputs, states and every gradient; and the
    general Jacobian path runs on the device."""
    from stability.probes import jacobian_decay
    cpu = make(cell, layers, bidirectional, readout)
    gpu = make(cell, layers, bidirectional, readout).cuda()
    x = torch.randn(T, B, I, dtype=torch.float64)
    (y_cpu, h_cpu), (y_gpu, h_gpu) = cpu(x), gpu(x.cuda())
    torch.testing.assert_close(y_gpu.cpu(), y_cpu, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(h_gpu.cpu(), h_cpu, rtol=1e-10, atol=1e-12)
    g_cpu, g_gpu = grads(cpu, y_cpu.square().sum()), grads(gpu, y_gpu.square().sum())
    for name in g_cpu:
        torch.testing.assert_close(g_gpu[name].cpu(), g_cpu[name], rtol=1e-9, atol=1e-12, msg=name)
    # the whole state (≤ 8 numbers) is tracked, so the device's own random start does not matter
    a, b = jacobian_decay(cpu, x, method="exact"), jacobian_decay(gpu, x.cuda(), method="exact")
    assert list(a.columns) == list(b.columns) and len(a) == len(b)
    for norm in ("spectral", "frobenius"):
        torch.testing.assert_close(torch.tensor(b[norm].to_numpy()), torch.tensor(a[norm].to_numpy()),
                                   rtol=1e-7, atol=1e-12)
