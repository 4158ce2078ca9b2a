"""jacobian_decay and half_life against the definition ∂h_{T−1}/∂h_{T−1−g} (autograd), in float64."""
import math

import pytest
import torch
from torch.autograd.functional import jacobian

from stability import RecurrentNet
from stability.probes import half_life, jacobian_decay, lyapunov_spectrum, top_exponent
from stability.transitions import SpectralTransition

from test_probes_common import LinearNet, linear_net, orthogonal, probes_one_thread  # noqa: F401 (autouse fixture)


def reference_norms(model, x, h0):
    """(spectral, frobenius) of ∂h_{T−1}/∂h_{T−1−g}, g = 0..T−1, per sample, by autograd."""
    with torch.no_grad():
        _, states = model(x, h0)
    steps, batch, n = states.shape
    spec = torch.empty(steps, batch, dtype=torch.float64)
    fro = torch.empty(steps, batch, dtype=torch.float64)
    for g in range(steps):
        if g == 0:
            jac = torch.eye(n, dtype=torch.float64).expand(batch, n, n)
        else:
            s = steps - 1 - g  # restart the recurrence from state s with the inputs after it
            full = jacobian(lambda h: model(x[s + 1:], h)[1][-1], states[s])  # (B, n, B, n)
            jac = torch.stack([full[b, :, b, :] for b in range(batch)])
        spec[g] = torch.linalg.matrix_norm(jac, ord=2)
        fro[g] = torch.linalg.matrix_norm(jac)
    return spec, fro


def as_grid(df, col):
    steps = df["gap"].max() + 1
    return torch.tensor(df.sort_values(["gap", "sample"])[col].to_numpy()).reshape(steps, -1)


def rel(a, b):
    return ((a - b).abs() / b.abs()).max().item()


def tanh_model(transition, nonlinearity="tanh", n=8, seed=0, **opts):
    torch.manual_seed(seed)
    model = RecurrentNet(3, n, 2, transition, nonlinearity=nonlinearity, **opts).double()
    if transition == "spectral":
        with torch.no_grad():
            model.transition.p.normal_()
    return model


@pytest.mark.parametrize("case", ["dense-tanh", "spectral-tanh", "exprnn-tanh", "householder-relu", "linear"])
def test_matches_autograd(case):
    if case == "linear":
        torch.manual_seed(3)
        model = linear_net(torch.randn(8, 8, dtype=torch.float64) / 8 ** 0.5)
    else:
        name, nonlin = case.split("-")
        opts = {"reflectors": 5, "margin": 0.4} if name == "spectral" else {}
        model = tanh_model(name, nonlin, **opts)
    x = torch.randn(20, 3, 3, dtype=torch.float64)
    h0 = torch.randn(3, 8, dtype=torch.float64) * 0.5
    ref_spec, ref_fro = reference_norms(model, x, h0)
    for spectral in ("exact", "subspace"):  # n = 8 <= 2·block: both use the SVD
        df = jacobian_decay(model, x, h0, spectral=spectral)
        assert list(df.columns[:4]) == ["gap", "sample", "spectral", "frobenius"]
        assert len(df) == 20 * 3
        assert rel(as_grid(df, "spectral"), ref_spec) < 1e-8
        assert rel(as_grid(df, "frobenius"), ref_fro) < 1e-8
        assert rel(as_grid(df, "log_spectral").exp(), ref_spec) < 1e-8


def test_gap_zero_is_identity_and_max_gap():
    model = tanh_model("dense", n=6)
    x = torch.randn(12, 2, 3, dtype=torch.float64)
    df = jacobian_decay(model, x)
    first = df[df.gap == 0]
    assert torch.allclose(torch.tensor(first.spectral.to_numpy()), torch.ones(2, dtype=torch.float64))
    assert torch.allclose(torch.tensor(first.frobenius.to_numpy()), torch.full((2,), math.sqrt(6), dtype=torch.float64))
    short = jacobian_decay(model, x, max_gap=4)
    assert short.gap.max() == 4
    assert torch.allclose(torch.tensor(short.log_spectral.to_numpy()),
                          torch.tensor(df[df.gap <= 4].log_spectral.to_numpy()))


def test_subspace_tracking_agrees_with_svd():
    """n = 48 > 2·block: the tracked subspace, after the exact first gaps, against the SVD."""
    torch.manual_seed(1)
    for name in ("dense", "exprnn"):
        model = RecurrentNet(4, 48, 1, name).double()
        x = torch.randn(160, 3, 4, dtype=torch.float64)
        exact = jacobian_decay(model, x, spectral="exact")
        fast = jacobian_decay(model, x, block=4)
        diff = fast.log_spectral - exact.log_spectral
        assert (diff <= 1e-12).all()              # a lower bound
        assert diff.abs().max() < 1e-3            # and a close one
        assert (fast.log_frobenius - exact.log_frobenius).abs().max() < 1e-12


def test_token_inputs_equal_one_hot():
    model = tanh_model("dense", n=6)
    tokens = torch.randint(0, 3, (10, 2))
    one_hot = torch.nn.functional.one_hot(tokens, 3).double()
    a, b = jacobian_decay(model, tokens), jacobian_decay(model, one_hot)
    assert (a.log_spectral - b.log_spectral).abs().max() < 1e-12


def test_orthogonal_linear_norms_are_one():
    n = 24
    model = linear_net(orthogonal(n))
    df = jacobian_decay(model, torch.randn(300, 2, 3, dtype=torch.float64))
    assert (df.spectral - 1).abs().max() < 1e-6
    assert (df.frobenius / math.sqrt(n) - 1).abs().max() < 1e-6
    assert half_life(df) == {"decay_rate": 0.0, "half_life": math.inf}


def test_orthogonal_linear_float32_long_sequence():
    """T = 1000 in float32: the rescaled products neither drift nor underflow."""
    n = 40
    model = linear_net(orthogonal(n, dtype=torch.float32))
    df = jacobian_decay(model, torch.randn(1000, 2, 3))
    assert (df.spectral - 1).abs().max() < 1e-3
    assert (df.frobenius / math.sqrt(n) - 1).abs().max() < 1e-3


def test_contracting_float32_matches_float64():
    """Strong contraction: norms reach e^-700 (far below float32's range) and still agree."""
    torch.manual_seed(2)
    model = RecurrentNet(3, 12, 1, "dense", init="normal", spectral_radius=0.5)
    x = torch.randn(1000, 2, 3) * 2
    lo = jacobian_decay(model, x)
    hi = jacobian_decay(model.double(), x.double())
    assert lo.log_spectral.min() < -300
    assert ((lo.log_spectral - hi.log_spectral).abs() / hi.log_spectral.abs().clip(lower=1)).max() < 1e-4
    assert ((lo.log_frobenius - hi.log_frobenius).abs() / hi.log_frobenius.abs().clip(lower=1)).max() < 1e-4


@pytest.mark.parametrize("margin", [0.05, 0.3])
def test_spectral_band_on_linear_model(margin):
    """σ_i(W) ∈ [1 − r, 1 + r] ⇒ every σ_i(W^g) ∈ [(1 − r)^g, (1 + r)^g]."""
    n = 10
    torch.manual_seed(4)
    t = SpectralTransition(n, reflectors=n, margin=margin).double()
    with torch.no_grad():
        t.p.normal_(0, 3)
    model = LinearNet(t).double()
    df = jacobian_decay(model, torch.randn(60, 2, 3, dtype=torch.float64))
    svals = torch.linalg.svdvals(t.matrix().detach())
    for g in (1, 5, 20, 59):
        row = df[df.gap == g]
        lo, hi = (1 - margin) ** g, (1 + margin) ** g
        for col, scale in (("spectral", 1.0), ("frobenius", math.sqrt(n))):
            vals = torch.tensor(row[col].to_numpy()) / scale
            assert (vals >= lo * (1 - 1e-9)).all() and (vals <= hi * (1 + 1e-9)).all(), (g, col)
        # and the exact value: ‖W^g‖₂ (the inputs do not enter a linear model's Jacobian)
        wg = torch.linalg.matrix_power(t.matrix().detach(), g)
        assert abs(row.spectral.iloc[0] / torch.linalg.matrix_norm(wg, ord=2).item() - 1) < 1e-9
    assert svals.min() > 1 - margin and svals.max() < 1 + margin


def test_half_life_of_diagonal_linear_model():
    """W = diag(s): ‖W^g‖₂ = s_max^g, so the decay rate is −log s_max, the half-life ln 2/(−log s_max)."""
    s = torch.tensor([0.9, 0.5, 0.8, 0.3], dtype=torch.float64)
    model = linear_net(torch.diag(s))
    x = torch.randn(50, 2, 3, dtype=torch.float64)
    df = jacobian_decay(model, x)
    fit = half_life(df)
    assert abs(fit["decay_rate"] + math.log(0.9)) < 1e-10
    assert abs(fit["half_life"] - math.log(2) / -math.log(0.9)) < 1e-8
    # the top Lyapunov exponent is the same rate
    assert abs(top_exponent(lyapunov_spectrum(model, x, 1, warmup=25)) - math.log(0.9)) < 1e-3
    # exploding: a negative rate and no half-life
    up = half_life(jacobian_decay(linear_net(torch.diag(s * 2)), x))
    assert abs(up["decay_rate"] + math.log(1.8)) < 1e-10 and up["half_life"] == math.inf
    # Frobenius: log ‖W^g‖_F is not linear in g; the fit still decays
    assert half_life(df, "frobenius")["decay_rate"] > 0


def test_half_life_edge_cases():
    import pandas as pd

    dead = pd.DataFrame({"gap": [0, 1, 2], "sample": 0, "spectral": [1.0, 0.0, 0.0], "frobenius": [1.0, 0.0, 0.0]})
    assert half_life(dead) == {"decay_rate": math.inf, "half_life": 0.0}
    with pytest.raises(ValueError, match="norm='nuclear'"):
        half_life(dead, "nuclear")
    with pytest.raises(ValueError, match="at least 2"):
        half_life(dead[dead.gap == 0])
    with pytest.raises(TypeError, match="df must be a DataFrame"):
        half_life([1, 2])


def test_bad_inputs():
    model = tanh_model("dense", n=6)
    x = torch.randn(10, 2, 3, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"x has T=1 steps; allowed: T >= 2"):
        jacobian_decay(model, x[:1])
    with pytest.raises(ValueError, match=r"x must have shape \(T, B, input_size\), got \(10, 2\)"):
        jacobian_decay(model, x[:, :, 0])
    with pytest.raises(TypeError, match="x must be a torch.Tensor"):
        jacobian_decay(model, [[1.0]])
    with pytest.raises(ValueError, match=r"h0 must have shape \(B=2, n=6\), got \(3, 6\)"):
        jacobian_decay(model, x, torch.zeros(3, 6, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"max_gap=10 is out of range; allowed: 0..9"):
        jacobian_decay(model, x, max_gap=10)
    with pytest.raises(ValueError, match=r"spectral='svd' is not known; allowed: 'subspace', 'exact'"):
        jacobian_decay(model, x, spectral="svd")
    with pytest.raises(ValueError, match=r"block=1 is out of range"):
        jacobian_decay(model, x, block=1)
    with pytest.raises(TypeError, match=r"model must be a recurrent model .* lacks .transition.matrix\(\), "
                                        r".activation_derivative"):
        jacobian_decay(torch.nn.Linear(3, 3), x)
    with pytest.raises(TypeError, match=r"iters must be an int"):
        jacobian_decay(model, x, iters=1.5)
