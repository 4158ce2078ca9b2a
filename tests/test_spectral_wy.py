"""The Spectral-RNN's W by two-sided block steps (stability.transitions.wy) against plain definitions (float64)."""
import pytest
import torch

import stability.transitions as T
from stability.transitions.householder import householder_product_reference
from stability.transitions.spectral import svd_compose
from stability.transitions.wy import spectral_matrix


def random_reflectors(k: int, n: int, seed: int, zero_row: int | None = None):
    """Free entries of two (k, n) upper-triangular reflector matrices, σ in (0.5, 1.5), and their dense forms."""
    g = torch.Generator().manual_seed(seed)
    rows, cols = torch.triu_indices(k, n)
    u, v = (torch.randn(rows.numel(), generator=g, dtype=torch.float64) for _ in range(2))
    if zero_row is not None:  # a zero vector stands for the identity
        u[rows == zero_row] = 0.0
    sigma = torch.rand(n, generator=g, dtype=torch.float64) + 0.5

    def dense(values):
        return torch.zeros(k, n, dtype=values.dtype).index_put((rows, cols), values)
    return u, sigma, v, dense


def plain_w(u_dense: torch.Tensor, sigma: torch.Tensor, v_dense: torch.Tensor) -> torch.Tensor:
    """U diag(σ) Vᵀ with U, V multiplied one reflector at a time."""
    return householder_product_reference(u_dense) @ torch.diag(sigma) @ householder_product_reference(v_dense).T


@pytest.mark.parametrize("k,n,block", [(1, 1, None), (1, 4, None), (3, 5, 2), (5, 5, 2), (7, 9, 3), (9, 9, 4),
                                       (12, 12, 5), (10, 12, 12), (33, 64, 8), (64, 64, 64), (100, 130, None)])
def test_matrix_and_gradients_match_the_plain_definition(k, n, block):
    u, sigma, v, dense = random_reflectors(k, n, seed=k * 100 + n, zero_row=k // 2 if k > 2 else None)
    inputs = [t.clone().requires_grad_(True) for t in (u, sigma, v)]
    upstream = torch.randn(n, n, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    fast = spectral_matrix(inputs[0], inputs[1], inputs[2], k, block)
    ref = plain_w(dense(inputs[0]), inputs[1], dense(inputs[2]))
    assert (fast - ref).abs().max().item() < 1e-12
    got = torch.autograd.grad(fast, inputs, upstream)
    want = torch.autograd.grad(ref, inputs, upstream)
    for a, b in zip(got, want):
        assert (a - b).abs().max().item() < 1e-11 * max(1.0, b.abs().max().item())


def test_agrees_with_the_sequential_definition_at_256():
    u, sigma, v, dense = random_reflectors(256, 256, seed=20)
    w = spectral_matrix(u, sigma, v, 256)
    assert (w - plain_w(dense(u), sigma, dense(v))).abs().max().item() < 1e-10


@pytest.mark.parametrize("k,n", [(128, 128), (100, 200)])
def test_gradients_match_svd_compose_to_1e12(k, n):
    u, sigma, v, dense = random_reflectors(k, n, seed=k + n)
    inputs = [t.clone().requires_grad_(True) for t in (u, sigma, v)]
    upstream = torch.randn(n, n, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    got = torch.autograd.grad(spectral_matrix(*inputs, k), inputs, upstream)
    want = torch.autograd.grad(svd_compose(dense(inputs[0]), inputs[1], dense(inputs[2])), inputs, upstream)
    for a, b in zip(got, want):
        assert ((a - b).abs().max() / b.abs().max()).item() < 1e-12


@pytest.mark.parametrize("k,n,block", [(5, 5, 2), (6, 9, 4), (12, 12, 5), (8, 12, 3)])
def test_gradcheck(k, n, block):
    u, sigma, v, _ = random_reflectors(k, n, seed=k * 10 + n)
    inputs = [t.clone().requires_grad_(True) for t in (u, sigma, v)]
    assert torch.autograd.gradcheck(lambda a, s, b: spectral_matrix(a, s, b, k, block), inputs)


def test_spectral_transition_matrix_equals_svd_compose_with_the_same_gradients():
    torch.manual_seed(5)
    t = T.create("spectral", 40, reflectors=30, margin=0.3, renormalize=False).double()
    with torch.no_grad():
        t.p.normal_()
    up = torch.randn(40, 40, dtype=torch.float64)
    params = [t.u.values, t.p, t.v.values]
    got = torch.autograd.grad(t.matrix(), params, up)
    ref = svd_compose(t.u(), t.sigma(), t.v())
    want = torch.autograd.grad(ref, params, up)
    assert (t.matrix() - ref).abs().max().item() < 1e-13
    for a, b in zip(got, want):
        assert ((a - b).abs().max() / b.abs().max()).item() < 1e-12


@pytest.mark.parametrize("call,match", [
    (lambda: spectral_matrix(torch.zeros(3), torch.ones(2, 2), torch.zeros(3), 2), r"sigma must be a vector"),
    (lambda: spectral_matrix(torch.zeros(3), torch.ones(2), torch.zeros(3), 3), r"k=3 must be an int in 1..2"),
    (lambda: spectral_matrix(torch.zeros(4), torch.ones(2), torch.zeros(3), 2), r"u_values must hold the 3 free"),
    (lambda: spectral_matrix(torch.zeros(3), torch.ones(2), torch.zeros(3), 2, block=0), r"block=0 must be an int"),
])
def test_bad_input_is_refused_clearly(call, match):
    with pytest.raises(ValueError, match=match):
        call()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("k,n,block", [(9, 9, 4), (100, 130, None), (256, 256, None)])
def test_cuda_matches_the_cpu(k, n, block):
    u, sigma, v, _ = random_reflectors(k, n, seed=11)
    upstream = torch.randn(n, n, generator=torch.Generator().manual_seed(8), dtype=torch.float64)
    results = []
    for device in ("cpu", "cuda"):
        inputs = [t.to(device).requires_grad_(True) for t in (u, sigma, v)]
        w = spectral_matrix(*inputs, k, block)
        results.append([w, *torch.autograd.grad(w, inputs, upstream.to(device))])
    for cpu, cuda in zip(*results):
        assert (cuda.cpu() - cpu).abs().max().item() < 1e-10 * max(1.0, cpu.abs().max().item())
