"""Reflector products: compact WY against the sequential definition and torch.linalg.householder_product."""
import pytest
import torch

from stability.transitions import householder_product, householder_product_reference


def _vectors(k, n, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(k, n, generator=g).requires_grad_(True), torch.randn(n, n, generator=g)


def _forward_backward(fn, leaf, upstream):
    leaf.grad = None
    out = fn(leaf)
    out.backward(upstream)
    return out.detach(), leaf.grad.clone()


@pytest.mark.benchmark(group="reflector product k=n=128 fwd+bwd")
def test_compact_wy_128(benchmark):
    v, g = _vectors(128, 128)
    q, grad = benchmark(_forward_backward, householder_product, v, g)
    q_ref, grad_ref = _forward_backward(householder_product_reference, v, g)
    assert torch.allclose(q, q_ref, atol=2e-5)
    assert torch.allclose(grad, grad_ref, atol=1e-4 * grad_ref.abs().max().item())
    assert torch.allclose(q.T @ q, torch.eye(128), atol=1e-5)


@pytest.mark.benchmark(group="reflector product k=n=128 fwd+bwd")
def test_sequential_definition_128(benchmark):
    v, g = _vectors(128, 128)
    q, grad = benchmark(_forward_backward, householder_product_reference, v, g)
    assert torch.allclose(q.T @ q, torch.eye(128), atol=1e-4)
    assert torch.isfinite(grad).all()


def _packed_forms(m, seed=1):
    """The same m reflectors in LAPACK's packed layout, for both implementations."""
    g = torch.Generator().manual_seed(seed)
    packed = torch.randn(m, m, generator=g).requires_grad_(True)
    eye = torch.eye(m)

    def wy(a):
        return householder_product((torch.tril(a, -1) + eye).T)

    def lapack(a):
        lower = torch.tril(a, -1)
        return torch.linalg.householder_product(a, 2.0 / (1.0 + (lower * lower).sum(0)))

    return packed, torch.randn(m, m, generator=g), wy, lapack


@pytest.mark.benchmark(group="reflector product k=n=128 packed fwd+bwd")
@pytest.mark.parametrize("form", ["compact_wy", "torch_householder_product"])
def test_packed_forms_agree(benchmark, form):
    packed, upstream, wy, lapack = _packed_forms(128)
    fn = wy if form == "compact_wy" else lapack
    other = lapack if form == "compact_wy" else wy
    q, grad = benchmark(_forward_backward, fn, packed, upstream)
    q_other, grad_other = _forward_backward(other, packed, upstream)
    assert torch.allclose(q, q_other, atol=2e-5)
    assert torch.allclose(grad, grad_other, atol=1e-4 * grad_other.abs().max().item())
