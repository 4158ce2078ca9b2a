"""Compact-WY Householder products against the plain sequential definition (float64)."""
import math

import pytest
import torch

from stability.transitions.householder import (householder_product, householder_product_reference,
                                                reflectors_from_orthogonal)


def test_compact_wy_equals_sequential_at_256():
    g = torch.Generator().manual_seed(0)
    v = torch.randn(256, 256, generator=g, dtype=torch.float64)
    err = (householder_product(v) - householder_product_reference(v)).abs().max().item()
    assert err < 1e-10


@pytest.mark.parametrize("k,n", [(1, 5), (3, 7), (7, 7), (16, 40)])
def test_product_and_gradients_match_definition(k, n):
    g = torch.Generator().manual_seed(k * 100 + n)
    v = torch.randn(k, n, generator=g, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(n, n, generator=g, dtype=torch.float64)
    fast = householder_product(v)
    ref = householder_product_reference(v)
    assert torch.allclose(fast, ref, atol=1e-12, rtol=0)
    (gf,) = torch.autograd.grad((fast * weight).sum(), v)
    (gr,) = torch.autograd.grad((ref * weight).sum(), v)
    assert torch.allclose(gf, gr, atol=1e-10, rtol=1e-10)


def test_product_is_orthogonal_and_reflector_is_involution():
    v = torch.randn(1, 9, dtype=torch.float64)
    h = householder_product(v)
    assert torch.allclose(h @ h, torch.eye(9, dtype=torch.float64), atol=1e-13)
    q = householder_product(torch.randn(5, 9, dtype=torch.float64))
    assert torch.allclose(q.T @ q, torch.eye(9, dtype=torch.float64), atol=1e-13)


def test_zero_vector_is_identity_without_nans():
    v = torch.randn(4, 6, dtype=torch.float64)
    v[2] = 0
    v.requires_grad_(True)
    q = householder_product(v)
    ref = householder_product_reference(v.detach()[[0, 1, 3]])
    assert torch.allclose(q, ref, atol=1e-13)
    q.sum().backward()
    assert torch.isfinite(v.grad).all()


def test_gradcheck():
    v = torch.randn(3, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(householder_product, (v,))


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_reflectors_from_orthogonal_reach_both_determinants(sign):
    g = torch.Generator().manual_seed(3)
    q, _ = torch.linalg.qr(torch.randn(12, 12, generator=g, dtype=torch.float64))
    if torch.sign(torch.det(q)) != sign:
        q[:, 0] = -q[:, 0]
    vs = reflectors_from_orthogonal(q)
    assert torch.equal(vs, torch.triu(vs)), "row j must be zero before column j"
    assert (householder_product(vs) - q).abs().max() < 1e-12


def test_reflectors_from_identity():
    eye = torch.eye(6, dtype=torch.float64)
    assert torch.allclose(householder_product(reflectors_from_orthogonal(eye)), eye)


@pytest.mark.parametrize("bad", [torch.zeros(3), torch.zeros(0, 4), torch.zeros(2, 2, 2)])
def test_bad_shapes(bad):
    with pytest.raises(ValueError, match="shape"):
        householder_product(bad)


def test_not_a_tensor():
    with pytest.raises(TypeError, match="torch.Tensor"):
        householder_product([[1.0, 2.0]])


@pytest.mark.parametrize("name", ["identity", "blocks"])
def test_reflectors_from_structured_orthogonal_are_never_zero(name):
    """A zero row gets a zero gradient (it would never train): only the last, one-coordinate row may be zero."""
    n = 8
    q = torch.eye(n, dtype=torch.float64)
    if name == "blocks":  # 2×2 rotations on the diagonal, as the expRNN/scoRNN inits draw them
        for i, angle in zip(range(0, n, 2), (0.3, -1.2, 2.0, 0.0)):
            c, s = math.cos(angle), math.sin(angle)
            q[i:i + 2, i:i + 2] = torch.tensor([[c, -s], [s, c]], dtype=torch.float64)
    vs = reflectors_from_orthogonal(q)
    assert bool((vs[:-1].norm(dim=1) > 1e-3).all())
    assert (householder_product(vs) - q).abs().max() < 1e-14
    v = vs.clone().requires_grad_(True)
    (householder_product(v) * torch.randn(n, n, dtype=torch.float64)).sum().backward()
    assert bool((v.grad[:-1].norm(dim=1) > 0).all())
