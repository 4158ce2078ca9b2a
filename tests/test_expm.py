"""The skew exponential (Padé + Newton–Schulz) against torch.linalg.matrix_exp in float64."""
import pytest
import torch

from stability.transitions.expm import pade_expm, skew_expm, squarings_for
from stability.transitions.orthogonal import ExpRNNTransition


def skew(n, radius, seed, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(n, n, generator=g, dtype=torch.float64)
    a = a - a.T
    return (a * (radius / torch.linalg.matrix_norm(a, 2))).to(dtype)


@pytest.mark.parametrize("radius", [0.0, 0.3, 3.0, 20.0, 100.0])
def test_float64_matches_matrix_exp(radius):
    a = skew(40, radius, seed=int(radius))
    ref = torch.linalg.matrix_exp(a)
    assert (skew_expm(a) - ref).abs().max().item() < 1e-12
    assert (pade_expm(a) - ref).abs().max().item() < 1e-12


@pytest.mark.parametrize("radius", [0.5, 6.0])
def test_gradient_matches_matrix_exp_and_gradcheck(radius):
    a = skew(12, radius, seed=1).requires_grad_(True)
    up = torch.randn(12, 12, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    (got,) = torch.autograd.grad(skew_expm(a), a, up)
    (want,) = torch.autograd.grad(torch.linalg.matrix_exp(a), a, up)
    assert ((got - want).abs().max() / want.abs().max()).item() < 1e-10
    upper = a.detach().triu(1).requires_grad_(True)  # a skew perturbation keeps W orthogonal
    assert torch.autograd.gradcheck(lambda u: skew_expm(u - u.T), (upper,))


@pytest.mark.parametrize("radius", [1.0, 5.0, 60.0])
def test_float32_stays_orthogonal(radius):
    a64 = skew(128, radius, seed=3)
    w = skew_expm(a64.float())
    assert w.dtype == torch.float32
    w64 = w.double()
    assert (w64.T @ w64 - torch.eye(128, dtype=torch.float64)).abs().max().item() < 1e-7
    assert (w64 - torch.linalg.matrix_exp(a64)).abs().max().item() < 5e-6


def test_squarings_use_the_spectral_radius_not_the_1_norm():
    a = skew(64, 3.0, seed=4)  # ‖A‖₁ is several times ρ(A) = 3 < θ₁₃
    assert a.abs().sum(0).max().item() > 2 * 5.37
    assert squarings_for(a) == 0
    assert squarings_for(skew(64, 30.0, seed=4)) == 3


def test_exprnn_default_is_float32_padé_and_orthogonal():
    torch.manual_seed(0)
    t = ExpRNNTransition(64)
    assert t.options()["exp_in_float64"] is False
    with torch.no_grad():
        t.skew_params.mul_(4.0)
    w = t.matrix().double()
    assert (w.T @ w - torch.eye(64, dtype=torch.float64)).abs().max().item() < 1e-7
    ref = ExpRNNTransition(64, exp_in_float64=True)
    ref.load_state_dict(t.state_dict())
    assert (ref.matrix().double() - w).abs().max().item() < 5e-6


def test_bad_input():
    with pytest.raises(ValueError, match="square matrix"):
        skew_expm(torch.randn(3, 4))
    with pytest.raises(TypeError, match="float32 or float64"):
        pade_expm(torch.zeros(3, 3, dtype=torch.int64))
