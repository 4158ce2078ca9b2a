"""RecurrentNet: every recurrence engine against the plain Python loop, in float64."""
import math

import pytest
import torch

from stability import RecurrentNet
from stability.recurrence import fused_recurrence, loop_recurrence
from stability.transitions import create

BUILTINS = ["cayley", "dense", "exprnn", "householder", "spectral"]


def run(model, x, h0=None):
    model.zero_grad()
    out, states = model(x, h0)
    loss = (out.sin()).sum() + (states ** 2).sum() * 0.1
    loss.backward()
    grads = {name: p.grad.clone() for name, p in model.named_parameters()}
    return out.detach(), states.detach(), grads


def rel(a, b):
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-300)).item()


@pytest.mark.parametrize("transition", BUILTINS)
@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
@pytest.mark.parametrize("engine", ["fused", "native"])
def test_engine_matches_loop(transition, nonlinearity, engine):
    torch.manual_seed(0)
    opts = {"reflectors": 6, "margin": 0.3} if transition == "spectral" else {}
    model = RecurrentNet(3, 10, 4, transition, nonlinearity=nonlinearity, engine="loop", **opts).double()
    if transition == "spectral":
        with torch.no_grad():
            model.transition.p.normal_()
    x = torch.randn(25, 5, 3, dtype=torch.float64)
    h0 = torch.randn(5, 10, dtype=torch.float64)
    ref = run(model, x, h0)
    model.engine = engine
    got = run(model, x, h0)
    assert rel(got[0], ref[0]) < 1e-8 and rel(got[1], ref[1]) < 1e-8
    assert ref[2].keys() == got[2].keys()
    for name in ref[2]:
        assert rel(got[2][name], ref[2][name]) < 1e-8, name


def test_h0_gradient_and_single_step():
    torch.manual_seed(1)
    x = torch.randn(1, 2, 3, dtype=torch.float64)
    xw = torch.randn(6, 2, 4, dtype=torch.float64, requires_grad=True)
    h0 = torch.randn(2, 4, dtype=torch.float64, requires_grad=True)
    w = torch.randn(4, 4, dtype=torch.float64, requires_grad=True)
    for steps in (1, 6):
        args = (xw[:steps], h0, w)
        assert torch.autograd.gradcheck(lambda a, b, c: fused_recurrence(a, b, c, "tanh"), args)
        g_fused = torch.autograd.grad(fused_recurrence(*args, "relu").sum(), args)
        g_loop = torch.autograd.grad(loop_recurrence(*args, "relu").sum(), args)
        for a, b in zip(g_fused, g_loop):
            assert torch.allclose(a, b, atol=1e-12)
    model = RecurrentNet(3, 4, 2).double()
    assert model(x)[0].shape == (1, 2, 2)


def test_token_input_equals_one_hot():
    torch.manual_seed(2)
    model = RecurrentNet(7, 5, 7, "spectral").double()
    tokens = torch.randint(0, 7, (9, 3))
    one_hot = torch.nn.functional.one_hot(tokens, 7).double()
    for engine in ("fused", "native", "loop"):
        model.engine = engine
        assert torch.allclose(model(tokens)[0], model(one_hot)[0], atol=1e-12)


def test_w_is_materialized_once_per_forward(monkeypatch):
    model = RecurrentNet(2, 6, 1, "spectral")
    calls = []
    original = model.transition.matrix
    monkeypatch.setattr(model.transition, "matrix", lambda: calls.append(1) or original())
    out, _ = model(torch.randn(50, 3, 2))
    out.sum().backward()
    assert len(calls) == 1


def test_deterministic_for_a_seed():
    def make():
        torch.manual_seed(123)
        model = RecurrentNet(2, 8, 1, "spectral")
        return run(model, torch.randn(20, 4, 2))

    a, b = make(), make()
    assert torch.equal(a[0], b[0])
    assert all(torch.equal(a[2][k], b[2][k]) for k in a[2])


def test_transition_instance_and_accessors():
    from stability.transitions import create
    t = create("householder", 6, reflectors=2)
    model = RecurrentNet(3, 6, 2, t)
    assert model.transition is t and model.transition_name == "householder"
    ids = {id(p) for p in model.transition_parameters()}
    assert ids.isdisjoint({id(p) for p in model.other_parameters()})
    assert len(ids) + len(model.other_parameters()) == len(list(model.parameters()))


@pytest.mark.parametrize("call, exc, match", [
    (lambda m: m(torch.randn(5, 3)), ValueError, r"x must have shape \(T, B, input_size=3\)"),
    (lambda m: m(torch.randn(5, 2, 4)), ValueError, "input_size=3"),
    (lambda m: m(torch.randn(5, 2, 3, dtype=torch.float64)), TypeError, "dtype"),
    (lambda m: m(torch.randn(5, 2, 3), torch.zeros(3, 6)), ValueError, r"h0 must have shape \(B=2"),
    (lambda m: m(torch.randint(0, 9, (4, 2))), ValueError, "token ids must lie in 0..2"),
    (lambda m: m(torch.zeros(0, 2, 3)), ValueError, "at least one step"),
    (lambda m: m([[1.0]]), TypeError, "torch.Tensor"),
])
def test_bad_input(call, exc, match):
    model = RecurrentNet(3, 6, 2)
    with pytest.raises(exc, match=match):
        call(model)


@pytest.mark.parametrize("kwargs, match", [
    (dict(nonlinearity="sigmoid"), "nonlinearity='sigmoid'.*'tanh', 'relu'"),
    (dict(engine="cuda"), "engine='cuda'"),
    (dict(transition="nope"), "unknown transition 'nope'; available"),
    (dict(transition="spectral", reflectors=7), "reflectors=7"),
])
def test_bad_construction(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        RecurrentNet(3, 6, 2, **kwargs)


def test_hidden_size_must_match_transition_instance():
    from stability.transitions import create
    with pytest.raises(ValueError, match="hidden_size=5"):
        RecurrentNet(3, 5, 2, create("dense", 4))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("transition", BUILTINS)
def test_cuda_engines_match_cpu(transition):
    torch.manual_seed(3)
    model = RecurrentNet(3, 16, 2, transition).double()
    x = torch.randn(30, 4, 3, dtype=torch.float64)
    ref = run(model, x)
    cuda = model.cuda()
    for engine in ("native", "fused"):
        cuda.engine = engine
        got = run(cuda, x.cuda())
        assert rel(got[0].cpu(), ref[0]) < 1e-8
        for name in ref[2]:
            assert rel(got[2][name].cpu(), ref[2][name]) < 1e-8


@pytest.mark.parametrize("input_init", ["glorot", "official"])
def test_official_input_and_readout_init(input_init):
    torch.manual_seed(4)
    model = RecurrentNet(30, 50, 7, "spectral", input_init=input_init)
    w_in, w_out = model.input_map.weight, model.readout.weight
    bound_in = math.sqrt(6 / (30 + 50))
    assert w_in.abs().max() <= bound_in and w_in.abs().max() > 0.95 * bound_in  # U(±√(6/(fan_in+fan_out)))
    assert abs(w_in.std().item() - bound_in / math.sqrt(3)) < 0.05 * bound_in
    assert torch.equal(model.input_map.bias, torch.zeros(50))
    if input_init == "glorot":
        bound_out = math.sqrt(6 / (50 + 7))
        assert w_out.abs().max() <= bound_out and w_out.abs().max() > 0.9 * bound_out
        assert torch.equal(model.readout.bias, torch.zeros(7))
    else:  # the official readout: truncated normal, σ = 0.1, cut at ±0.2, weights and bias
        assert w_out.abs().max() <= 0.2 and 0.07 < w_out.std().item() < 0.1
        assert model.readout.bias.abs().max() <= 0.2 and model.readout.bias.abs().max() > 0
    assert model.options() == {"nonlinearity": "tanh", "input_init": input_init, "bidirectional": False,
                               "readout": "last", "sequence_length": None}


def test_default_input_init_is_nn_linear_and_draws_as_before():
    torch.manual_seed(5)
    model = RecurrentNet(3, 6, 2, "dense")
    torch.manual_seed(5)
    transition = create("dense", 6)
    lin_in, lin_out = torch.nn.Linear(3, 6), torch.nn.Linear(6, 2)
    assert torch.equal(model.transition.weight, transition.weight)
    assert torch.equal(model.input_map.weight, lin_in.weight) and torch.equal(model.readout.bias, lin_out.bias)
    assert model.options()["input_init"] == "torch"
    with pytest.raises(ValueError, match=r"input_init='xavier' is not known; allowed: 'torch', 'glorot', 'official'"):
        RecurrentNet(3, 6, 2, input_init="xavier")
# ----------------------------------------------------------------------------- fused network
LOSSES = {
    "all outputs": lambda out, st: (out ** 2).sum(),
    "last output": lambda out, st: (out[-1] ** 2).sum(),
    "two outputs": lambda out, st: (out[2] ** 2).sum() + out[4].sum(),
    "states only": lambda out, st: (st ** 3).sum(),
    "outputs and states": lambda out, st: (out[-2] ** 2).sum() + (st[1] * st[3]).sum(),
}


@pytest.mark.parametrize("loss_name", list(LOSSES))
@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
@pytest.mark.parametrize("tokens", [False, True])
def test_fused_network_matches_loop_for_every_read_pattern(loss_name, nonlinearity, tokens):
    torch.manual_seed(7)
    model = RecurrentNet(5, 6, 4, "dense", nonlinearity=nonlinearity).double()
    x = (torch.randint(0, 5, (7, 3)) if tokens
         else torch.randn(7, 3, 5, dtype=torch.float64, requires_grad=True))
    h0 = torch.randn(3, 6, dtype=torch.float64, requires_grad=True)
    results = {}
    for engine in ("fused", "loop"):
        model.engine = engine
        model.zero_grad(set_to_none=True)
        out, states = model(x, h0)
        inputs = [h0, *model.parameters()] + ([] if tokens else [x])
        grads = torch.autograd.grad(LOSSES[loss_name](out, states), inputs, allow_unused=True)
        results[engine] = [out.detach(), states.detach()] + [
            torch.zeros(1, dtype=torch.float64) if g is None else g for g in grads]
    for a, b in zip(results["fused"], results["loop"]):
        assert (a - b).abs().max().item() < 1e-12


def test_fused_network_chunks_agree_and_direct_state_gradient_reaches_readout():
    from stability.recurrence import fused_network

    torch.manual_seed(8)
    model = RecurrentNet(5, 6, 4).double()
    x = torch.randn(9, 2, 5, dtype=torch.float64)
    h0 = torch.zeros(2, 6, dtype=torch.float64)
    w = model.transition.matrix()
    grads = []
    for chunk in (1, 2, 4, 9, 50):
        out, states = fused_network(x, h0, w, model.input_map.weight, model.input_map.bias,
                                    model.readout.weight, model.readout.bias, "tanh", chunk=chunk)
        params = list(model.parameters())
        grads.append(torch.cat([g.flatten() for g in torch.autograd.grad((out ** 2).sum(), params, retain_graph=True)]))
        # the outputs hang off the returned states: ∂L/∂h_t through the readout, as with nn.Linear
        (direct,) = torch.autograd.grad(out[-1].sum(), states)
        assert torch.allclose(direct[-1], model.readout.weight.sum(0).expand(2, 6)) and direct[:-1].abs().max() == 0
    for g in grads[1:]:
        assert (g - grads[0]).abs().max().item() < 1e-13


def test_backward_flushes_subnormals_only_while_it_runs():
    from stability.recurrence import _denormals_flushed

    torch.manual_seed(9)
    model = RecurrentNet(3, 8, 2, "dense").double()
    x = torch.randn(300, 2, 3, dtype=torch.float64)
    assert not _denormals_flushed()
    out, _ = model(x)
    out[-1].sum().backward()
    assert not _denormals_flushed()
    assert torch.isfinite(model.input_map.weight.grad).all()
    torch.set_flush_denormal(True)
    try:
        model.zero_grad()
        model(x)[0][-1].sum().backward()
        assert _denormals_flushed()  # a mode the caller set stays set
    finally:
        torch.set_flush_denormal(False)


@pytest.mark.parametrize("dtype, ulps", [(torch.float32, 2.0), (torch.float64, 1.0)])
def test_engine_tanh_against_correctly_rounded_tanh(dtype, ulps):
    """The fused forward's in-place tanh (NumPy's on the CPU) against tanh in float64 rounded
    (float32) or mpmath's (float64 on a sample): within ``ulps`` units in the last place,
    over magnitudes from 1e-6 to 30 and the special values, in place, through a strided view."""
    import numpy as np

    from stability.recurrence import tanh_

    gen = torch.Generator().manual_seed(0)
    x = torch.cat([torch.randn(20_000, generator=gen, dtype=torch.float64) * s for s in (1e-6, 1e-3, 0.1, 1, 3, 30)])
    special = torch.tensor([0.0, -0.0, 1e-40, -1e-40, 9.0, 20.0, -20.0, 89.0, math.inf, -math.inf])
    x = torch.cat([x, special.double()]).to(dtype)
    if dtype == torch.float32:
        ref = torch.tanh(x.double())  # exact to float64: far finer than float32's ulp
    else:
        import mpmath
        x = x[::20].contiguous()
        ref = torch.tensor([float(mpmath.tanh(mpmath.mpf(float(v)))) for v in x], dtype=torch.float64)
    y = x.clone()
    assert tanh_(y) is y
    ulp = torch.from_numpy(np.spacing(np.abs(ref.to(dtype).numpy()))).double()
    err = ((y.double() - ref).abs() / ulp).max().item()
    assert err <= ulps, f"max error {err:.2f} ulp"
    assert tanh_(torch.tensor([math.nan], dtype=dtype)).isnan().all()
    grid = x[:64].view(8, 8).clone()
    view = grid[:, ::2]  # not contiguous: NumPy works on the same strided memory
    tanh_(view)
    assert torch.equal(grid[:, 1::2], x[:64].view(8, 8)[:, 1::2])
    assert ((view.double() - ref[:64].view(8, 8)[:, ::2]).abs() / ulp[:64].view(8, 8)[:, ::2]).max() <= ulps


def test_engine_tanh_falls_back_to_torch_outside_numpy():
    """Half precision and tensors that require grad take torch.tanh_ (bitwise its result)."""
    from stability.recurrence import tanh_

    x = torch.linspace(-4, 4, 101)
    half = x.half()
    assert torch.equal(tanh_(half.clone()), torch.tanh(half))
    leaf = x.clone().requires_grad_()
    y = tanh_(leaf * 1.0)  # non-leaf in a graph: autograd's in-place tanh
    y.sum().backward()
    assert torch.allclose(leaf.grad, 1 - torch.tanh(x) ** 2, atol=1e-6)
