"""lyapunov_spectrum (QR / Benettin method) against known spectra, in float64."""
import math

import pytest
import torch

from stability import RecurrentNet
from stability.probes import jacobian_decay, lyapunov_spectrum, top_exponent

from test_probes_common import linear_net, orthogonal, probes_one_thread  # noqa: F401 (autouse fixture)


def test_orthogonal_linear_exponents_are_zero():
    model = linear_net(orthogonal(10))
    df = lyapunov_spectrum(model, torch.randn(200, 3, 3, dtype=torch.float64), warmup=10)
    assert list(df.columns) == ["index", "exponent"] and df["index"].tolist() == list(range(10))
    assert df.exponent.abs().max() < 1e-3
    assert df.attrs == {"k": 10, "warmup": 10, "steps": 190, "path": "closed", "state": "h, S = 10"}


def test_diagonal_linear_exponents_are_log_s():
    s = torch.tensor([0.7, 1.1, 0.35, 0.9, 0.5, 1.3, 0.2, 0.6], dtype=torch.float64)
    model = linear_net(torch.diag(s))
    x = torch.randn(400, 2, 3, dtype=torch.float64)
    expect = torch.sort(s.log(), descending=True).values
    for k in (3, 8):
        df = lyapunov_spectrum(model, x, k, warmup=100, per_sample=True)
        assert list(df.columns) == ["sample", "index", "exponent"] and len(df) == 2 * k
        for _, rows in df.groupby("sample"):
            got = torch.tensor(rows.sort_values("index").exponent.to_numpy())
            assert (got - expect[:k]).abs().max() < 1e-6
        assert abs(top_exponent(df) - math.log(1.3)) < 1e-6


def test_sum_of_exponents_is_mean_log_determinant():
    """k = n, no warm-up: Σ log|R_ii| = log|det J_t| exactly, so Σλ = mean_t log|det(diag(φ'_t) W)|."""
    torch.manual_seed(0)
    model = RecurrentNet(3, 6, 1, "dense").double()
    x = torch.randn(40, 2, 3, dtype=torch.float64)
    df = lyapunov_spectrum(model, x, warmup=0, per_sample=True)
    with torch.no_grad():
        _, states = model(x)
        w = model.transition.matrix()
        d = model.activation_derivative(states)
    expect = d.log().sum(dim=2).mean(dim=0) + torch.linalg.slogdet(w).logabsdet  # (B,)
    got = torch.tensor(df.groupby("sample").exponent.sum().to_numpy())
    assert (got - expect).abs().max() < 1e-10
    # descending within each sample
    for _, rows in df.groupby("sample"):
        assert rows.exponent.is_monotonic_decreasing


def test_partial_sums_are_log_volumes():
    """No warm-up: T·Σ_{i≤k} λ_i = log vol_k(J_T···J_1 Q_0) = Σ log σ_i(J_T···J_1 Q_0), exactly.

    White-box: Q_0 is rebuilt here the way lyapunov_spectrum draws it (seeded Gaussian, QR).
    """
    torch.manual_seed(3)
    n, k, steps = 6, 3, 12  # short: the unnormalized product stays well conditioned
    model = RecurrentNet(3, n, 1, "dense").double()
    x = torch.randn(steps, 2, 3, dtype=torch.float64)
    df = lyapunov_spectrum(model, x, k, warmup=0, per_sample=True, seed=7)
    q0 = torch.linalg.qr(torch.randn(n, k, generator=torch.Generator().manual_seed(7), dtype=torch.float64)).Q
    with torch.no_grad():
        _, states = model(x)
        w = model.transition.matrix()
        d = model.activation_derivative(states)
    for b, rows in df.groupby("sample"):
        m = q0
        for t in range(steps):
            m = d[t, b].unsqueeze(1) * (w @ m)  # J_t = diag(φ'_t) W
        expect = torch.linalg.svdvals(m).log().sum().item()
        assert abs(rows.exponent.sum() * steps - expect) < 1e-9


def test_top_exponent_matches_jacobian_growth():
    """log ‖∂h_T/∂h_0‖ / T approaches λ_1 (tanh, orthogonal init)."""
    torch.manual_seed(1)
    model = RecurrentNet(4, 12, 1, "exprnn").double()
    x = torch.randn(600, 2, 4, dtype=torch.float64) * 0.5
    lam = top_exponent(lyapunov_spectrum(model, x, 1, warmup=60))
    jac = jacobian_decay(model, x)
    growth = jac[jac.gap == 599].log_spectral.mean() / 599
    assert lam < 0 and abs(growth - lam) < 0.02 * abs(lam) + 5e-3


def test_float32_model_and_seed():
    torch.manual_seed(2)
    model = RecurrentNet(3, 8, 1, "cayley")
    x = torch.randn(50, 2, 3)
    a = lyapunov_spectrum(model, x, 4)
    b = lyapunov_spectrum(model, x, 4)
    c = lyapunov_spectrum(model, x, 4, seed=5)
    assert a.exponent.dtype == "float64" and (a.exponent == b.exponent).all()
    assert (a.exponent - c.exponent).abs().max() < 0.2  # another initial frame, the same spectrum roughly
    assert a.attrs["warmup"] == 5


def test_bad_inputs():
    model = RecurrentNet(3, 5, 1).double()
    x = torch.randn(10, 2, 3, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"k=6 is out of range; allowed: 1..5"):
        lyapunov_spectrum(model, x, 6)
    with pytest.raises(ValueError, match=r"k=0 is out of range"):
        lyapunov_spectrum(model, x, 0)
    with pytest.raises(ValueError, match=r"warmup=10 is out of range; allowed: 0..9"):
        lyapunov_spectrum(model, x, warmup=10)
    with pytest.raises(ValueError, match=r"x has T=1 steps"):
        lyapunov_spectrum(model, x[:1])
    with pytest.raises(TypeError, match=r"model must be a recurrent model"):
        lyapunov_spectrum(torch.nn.RNN(3, 5), x)
    with pytest.raises(TypeError, match=r"df must be a DataFrame from lyapunov_spectrum"):
        top_exponent([0.1])
