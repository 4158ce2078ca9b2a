"""Recurrence engines and a training step: fused/native against the loop, RecurrentNet against torch.nn.RNN."""
import pytest
import torch
from torch import nn

from stability import RecurrentNet
from stability.recurrence import fused_recurrence, loop_recurrence, native_recurrence

T, B, N, I = 100, 16, 64, 16


def _inputs(seed=0):
    g = torch.Generator().manual_seed(seed)
    xw = torch.randn(T, B, N, generator=g).requires_grad_(True)
    h0 = torch.randn(B, N, generator=g).requires_grad_(True)
    w = (torch.randn(N, N, generator=g) * 0.9 / N ** 0.5).requires_grad_(True)
    upstream = torch.randn(T, B, N, generator=g)
    return xw, h0, w, upstream


def _run(engine, xw, h0, w, upstream):
    for t in (xw, h0, w):
        t.grad = None
    states = engine(xw, h0, w, "tanh")
    states.backward(upstream)
    return states.detach(), xw.grad.clone(), h0.grad.clone(), w.grad.clone()


@pytest.mark.benchmark(group=f"recurrence T={T} B={B} n={N} fwd+bwd")
@pytest.mark.parametrize("engine", ["fused", "loop"])
def test_engine_matches_loop(benchmark, engine):
    xw, h0, w, upstream = _inputs()
    fn = fused_recurrence if engine == "fused" else loop_recurrence
    got = benchmark(_run, fn, xw, h0, w, upstream)
    ref = _run(loop_recurrence, xw, h0, w, upstream)
    for a, b in zip(got, ref):
        assert torch.allclose(a, b, atol=1e-5 * max(1.0, b.abs().max().item()))


@pytest.mark.benchmark(group=f"recurrence T={T} B={B} n={N} fwd+bwd")
def test_native_engine_matches_loop(benchmark):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(T, B, I, generator=g)
    w_ih = torch.randn(N, I, generator=g).requires_grad_(True)
    b_ih = torch.zeros(N).requires_grad_(True)
    h0 = torch.zeros(B, N)
    w = (torch.randn(N, N, generator=g) * 0.9 / N ** 0.5).requires_grad_(True)
    upstream = torch.randn(T, B, N, generator=g)

    def run(native):
        w.grad = w_ih.grad = None
        states = (native_recurrence(x, h0, w, "tanh", w_ih, b_ih) if native
                  else loop_recurrence(x @ w_ih.T + b_ih, h0, w, "tanh"))
        states.backward(upstream)
        return states.detach(), w.grad.clone(), w_ih.grad.clone()

    got = benchmark(run, True)
    ref = run(False)
    for a, b in zip(got, ref):
        assert torch.allclose(a, b, atol=1e-5 * max(1.0, b.abs().max().item()))


def _step(model, x, y):
    model.zero_grad(set_to_none=True)
    out = model(x)
    out = out[0] if isinstance(out, tuple) else out
    loss = nn.functional.mse_loss(out, y)
    loss.backward()
    return loss.item()


class _TorchRNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.rnn = nn.RNN(I, N)
        self.readout = nn.Linear(N, I)

    def forward(self, x):
        return self.readout(self.rnn(x)[0])


@pytest.mark.benchmark(group=f"training step T={T} B={B} n={N}")
@pytest.mark.parametrize("model_name", ["torch.nn.RNN", "dense", "spectral"])
def test_training_step(benchmark, model_name):
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(2)
    x, y = torch.randn(T, B, I, generator=g), torch.randn(T, B, I, generator=g)
    rnn = _TorchRNN()
    if model_name == "torch.nn.RNN":
        model = rnn
    else:
        model = RecurrentNet(I, N, I, transition=model_name)
    loss = benchmark(_step, model, x, y)
    assert loss > 0 and all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    if model_name == "dense":
        # the same weights give torch.nn.RNN's outputs and gradients
        with torch.no_grad():
            model.transition.weight.copy_(rnn.rnn.weight_hh_l0)
            model.input_map.weight.copy_(rnn.rnn.weight_ih_l0)
            model.input_map.bias.copy_(rnn.rnn.bias_ih_l0 + rnn.rnn.bias_hh_l0)
            model.readout.load_state_dict(rnn.readout.state_dict())
        assert _step(model, x, y) == pytest.approx(_step(rnn, x, y), rel=1e-5)
        assert torch.allclose(model.transition.weight.grad, rnn.rnn.weight_hh_l0.grad, atol=1e-5)
