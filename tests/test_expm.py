"""The skew exponential (Padé + Newton–Schulz) against torch.linalg.matrix_exp in float64."""
import pytest
import torch

from stability.transitions.expm import _PADE, _SkewExpm7, _pade_expm, pade_expm, skew_expm, squarings_for
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


@pytest.mark.parametrize("radius", [0.5, 3.0, 20.0, 100.0])
def test_float32_path_gradient_is_autograds_along_skew_directions(radius):
    """The hand-written backward (run in float64) against autograd through the same degree-7
    Padé and squarings: equal in the skew part, which is all A = S − Sᵀ passes on."""
    a = skew(64, radius, seed=5).requires_grad_(True)
    up = torch.randn(64, 64, dtype=torch.float64, generator=torch.Generator().manual_seed(6))
    (got,) = torch.autograd.grad(_SkewExpm7.apply(a)[0], a, up)
    (full,) = torch.autograd.grad(_pade_expm(a, 7, _PADE[torch.float32][1]), a, up)
    want = (full - full.T) / 2
    assert (got + got.T).abs().max().item() == 0.0  # skew
    assert ((got - want).abs().max() / want.abs().max()).item() < 1e-10
    assert (full + full.T).abs().max() > 1e-3 * full.abs().max()  # the full one is not skew


@pytest.mark.parametrize("radius", [0.5, 12.0])
def test_float32_path_gradcheck_and_parameter_gradients(radius):
    upper = skew(10, radius, seed=7).triu(1).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda u: _SkewExpm7.apply(u - u.T)[0], (upper,))
    up = torch.randn(10, 10, dtype=torch.float64, generator=torch.Generator().manual_seed(8))
    (got,) = torch.autograd.grad(_SkewExpm7.apply(upper - upper.T)[0], upper, up)
    (want,) = torch.autograd.grad(_pade_expm(upper - upper.T, 7, _PADE[torch.float32][1]), upper, up)
    assert ((got - want).abs().max() / want.abs().max()).item() < 1e-10


@pytest.mark.parametrize("radius", [1.0, 30.0])
def test_float32_path_matches_the_autograd_formula(radius):
    a = skew(96, radius, seed=9, dtype=torch.float32)
    plain = pade_expm(a).double()  # (V − U)⁻¹(V + U) and squarings, as autograd sees them
    plain = plain + plain @ (torch.eye(96, dtype=torch.float64) - plain.T @ plain) / 2
    assert (skew_expm(a).double() - plain).abs().max().item() < 3e-7 * max(1.0, radius / 10)  # as far as either is from expm


def test_bad_input():
    with pytest.raises(ValueError, match="square matrix"):
        skew_expm(torch.randn(3, 4))
    with pytest.raises(ValueError, match="skew-symmetric"):
        skew_expm(torch.randn(3, 3))
    with pytest.raises(TypeError, match="float32 or float64"):
        pade_expm(torch.zeros(3, 3, dtype=torch.int64))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("radius", [0.5, 20.0])
def test_float32_path_on_cuda_matches_the_cpu(radius):
    a = skew(256, radius, seed=5, dtype=torch.float32)
    upstream = torch.randn(256, 256, generator=torch.Generator().manual_seed(6))
    results = []
    for device in ("cpu", "cuda"):
        leaf = a.to(device).requires_grad_(True)
        w = skew_expm(leaf)
        results.append((w, torch.autograd.grad(w, leaf, upstream.to(device))[0]))
    (w_cpu, g_cpu), (w_cuda, g_cuda) = results
    assert (w_cuda.cpu() - w_cpu).abs().max().item() < 1e-4
    assert (g_cuda.cpu() - g_cpu).abs().max().item() < 1e-3 * g_cpu.abs().max().item()
    eye = torch.eye(256, dtype=torch.float64)
    assert (w_cuda.cpu().double().T @ w_cuda.cpu().double() - eye).abs().max().item() < 1e-6
