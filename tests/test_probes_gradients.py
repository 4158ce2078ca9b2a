"""gradient_flow against autograd on retained hidden states (float64)."""
import math

import pytest
import torch

from stability import RecurrentNet
from stability.probes import grad_ratio, gradient_flow

from test_probes_common import linear_net, orthogonal, probes_one_thread  # noqa: F401 (autouse fixture)


def every_step_ce(outputs, y):
    return torch.nn.functional.cross_entropy(outputs.reshape(-1, outputs.shape[-1]), y.reshape(-1))


def last_step_mse(outputs, y):
    return torch.nn.functional.mse_loss(outputs[-1], y)


def reference(model, x, h0, loss_fn, y):
    """‖∂L/∂h_t‖ with every h_t a retained node of a step-by-step graph (the definition)."""
    w = model.transition.matrix()
    h = h0
    states = []
    for x_t in model.input_map(x).unbind(0):
        a = x_t + h @ w.T
        h = torch.tanh(a) if getattr(model, "nonlinearity", "linear") == "tanh" else (
            torch.relu(a) if getattr(model, "nonlinearity", "linear") == "relu" else a)
        h.retain_grad()
        states.append(h)
    loss = loss_fn(model.readout(torch.stack(states)), y)
    loss.backward()
    model.zero_grad()
    return torch.stack([s.grad for s in states])  # (T, B, n)


@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
@pytest.mark.parametrize("loss", ["every_step", "last_step"])
def test_matches_autograd(nonlinearity, loss):
    torch.manual_seed(0)
    model = RecurrentNet(3, 7, 4, "spectral", nonlinearity=nonlinearity, reflectors=4, margin=0.5).double()
    with torch.no_grad():
        model.transition.p.normal_()
    x = torch.randn(15, 3, 3, dtype=torch.float64)
    h0 = torch.randn(3, 7, dtype=torch.float64)
    if loss == "every_step":
        loss_fn, y = every_step_ce, torch.randint(0, 4, (15, 3))
    else:
        loss_fn, y = last_step_mse, torch.randn(3, 4, dtype=torch.float64)
    grads = reference(model, x, h0, loss_fn, y)
    expect = torch.linalg.vector_norm(grads.reshape(15, -1), dim=1)
    df = gradient_flow(model, x, loss_fn, y, h0)
    assert list(df.columns) == ["t", "grad_norm"] and df.t.tolist() == list(range(1, 16))
    got = torch.tensor(df.grad_norm.to_numpy())
    assert ((got - expect).abs() / expect).max() < 1e-10
    assert abs(df.attrs["grad_ratio"] / (expect[0] / expect[-1]).item() - 1) < 1e-10
    assert abs(grad_ratio(df) / df.attrs["grad_ratio"] - 1) < 1e-12
    per = gradient_flow(model, x, loss_fn, y, h0, per_sample=True)
    per_expect = torch.linalg.vector_norm(grads, dim=2).reshape(-1)
    assert ((torch.tensor(per.grad_norm.to_numpy()) - per_expect).abs() / per_expect).max() < 1e-10
    assert abs(grad_ratio(per) / df.attrs["grad_ratio"] - 1) < 1e-10
    assert all(p.grad is None for p in model.parameters())  # the probe leaves no gradients behind


def test_duck_typed_linear_model():
    model = linear_net(orthogonal(6))
    x = torch.randn(10, 2, 3, dtype=torch.float64)
    h0 = torch.zeros(2, 6, dtype=torch.float64)
    y = torch.randn(2, 2, dtype=torch.float64)
    grads = reference(model, x, h0, last_step_mse, y)
    df = gradient_flow(model, x, last_step_mse, y)
    expect = torch.linalg.vector_norm(grads.reshape(10, -1), dim=1)
    assert ((torch.tensor(df.grad_norm.to_numpy()) - expect).abs() / expect).max() < 1e-10
    # orthogonal and linear, loss on the last step: the gradient norm is the same at every t
    assert abs(df.attrs["grad_ratio"] - 1) < 1e-10


def test_frozen_model_and_token_inputs():
    torch.manual_seed(1)
    model = RecurrentNet(5, 6, 5, "exprnn").double().requires_grad_(False)
    tokens = torch.randint(0, 5, (8, 2))
    df = gradient_flow(model, tokens, every_step_ce, tokens)
    assert len(df) == 8 and (df.grad_norm > 0).all()
    ref = gradient_flow(model, torch.nn.functional.one_hot(tokens, 5).double(), every_step_ce, tokens)
    assert (df.grad_norm - ref.grad_norm).abs().max() < 1e-12


def test_ratio_edge_cases():
    import pandas as pd

    assert grad_ratio(pd.DataFrame({"t": [1, 2], "grad_norm": [1.0, 0.0]})) == math.inf
    assert math.isnan(grad_ratio(pd.DataFrame({"t": [1, 2], "grad_norm": [0.0, 0.0]})))
    with pytest.raises(TypeError, match="gradient_flow"):
        grad_ratio(pd.DataFrame({"step": [1]}))


def test_bad_inputs():
    model = RecurrentNet(3, 4, 2).double()
    x = torch.randn(6, 2, 3, dtype=torch.float64)
    y = torch.randn(2, 2, dtype=torch.float64)
    with pytest.raises(TypeError, match="loss_fn must be callable"):
        gradient_flow(model, x, "mse", y)
    with pytest.raises(ValueError, match=r"loss_fn\(outputs, y\) must return a scalar tensor, "
                                         r"got Tensor of shape \(2, 2\)"):
        gradient_flow(model, x, lambda o, t: o[-1] - t, y)
    with pytest.raises(ValueError, match="x has T=1 steps"):
        gradient_flow(model, x[:1], last_step_mse, y)
    with pytest.raises(TypeError, match="model must be a recurrent model"):
        gradient_flow(object(), x, last_step_mse, y)


@pytest.mark.parametrize("transition", ["dense", "cayley"])
def test_float32_norms_do_not_underflow(transition):
    """Inputs ×3 saturate tanh: the norms fall to ~1e-60 (dense) and ~1e-69 (cayley) by t = 1,
    far below float32's ≈1e-45. The float32 model must still give the float64 model's norms."""
    import copy

    torch.manual_seed(0)
    model = RecurrentNet(8, 64, 4, transition)
    model64 = copy.deepcopy(model).double()
    x, y = 3 * torch.randn(200, 4, 8), torch.randn(4, 4)
    for per_sample in (False, True):
        got = gradient_flow(model, x, last_step_mse, y, per_sample=per_sample)
        ref = gradient_flow(model64, x.double(), last_step_mse, y.double(), per_sample=per_sample)
        a, b = got.grad_norm.to_numpy(), ref.grad_norm.to_numpy()
        assert b.min() < 1e-55 and b.max() > 0.1                     # the span the test is about
        assert not ((a == 0) & (b > 1e-300)).any()
        wide = b > 1e-30
        assert (abs(a[wide] / b[wide] - 1) < 1e-2).all()
        assert got.attrs["grad_ratio"] > 0 and abs(got.attrs["grad_ratio"] / ref.attrs["grad_ratio"] - 1) < 1e-2
        assert abs(grad_ratio(got) / got.attrs["grad_ratio"] - 1) < 1e-9


def test_ratio_of_norms_below_float64_squares():
    import pandas as pd

    # 1e-200 squared underflows even in float64; the ratio must still be 1e-200 / 1e-10
    df = pd.DataFrame({"t": [1, 1, 2, 2], "grad_norm": [3e-200, 4e-200, 3e-10, 4e-10]})
    assert grad_ratio(df) == pytest.approx(1e-190, rel=1e-12)


def test_step_norms_combine_samples_without_underflow():
    import pandas as pd

    from stability.probes.gradients import step_norms

    df = pd.DataFrame({"t": [2, 2, 1, 1], "grad_norm": [3e-200, 4e-200, 0.0, 0.0]})
    got = step_norms(df)
    assert got.index.tolist() == [1, 2] and got.loc[1] == 0.0 and got.loc[2] == pytest.approx(5e-200, rel=1e-12)
