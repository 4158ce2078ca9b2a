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
# ----------------------------------------------------------------------------- triangular blocks
from stability.transitions.householder import triangular_householder_product  # noqa: E402


def test_triangular_product_equals_sequential_at_256():
    g = torch.Generator().manual_seed(20)
    v = torch.randn(256, 256, generator=g, dtype=torch.float64).triu().requires_grad_(True)
    upstream = torch.randn(256, 256, generator=g, dtype=torch.float64)
    fast, ref = triangular_householder_product(v), householder_product_reference(v)
    assert (fast - ref).abs().max().item() < 1e-10
    (gf,) = torch.autograd.grad(fast, v, upstream)
    (gr,) = torch.autograd.grad(ref, v, upstream)
    assert ((gf - gr.triu()).abs().max() / gr.abs().max()).item() < 1e-10
    assert gf.tril(-1).abs().max().item() == 0.0


@pytest.mark.parametrize("k,n,block", [(1, 1, None), (5, 20, 2), (7, 9, 3), (9, 9, 4), (33, 64, 8), (64, 64, 64)])
def test_triangular_product_and_right_operand_match_definition(k, n, block):
    g = torch.Generator().manual_seed(k * 100 + n)
    v = torch.randn(k, n, generator=g, dtype=torch.float64).triu()
    if k > 1:
        v[k // 2] = 0.0  # a zero vector stands for the identity
    v.requires_grad_(True)
    right = torch.randn(n, 3, generator=g, dtype=torch.float64, requires_grad=True)
    up_q, up_r = torch.randn(n, n, generator=g, dtype=torch.float64), torch.randn(n, 3, generator=g, dtype=torch.float64)
    q, ref = triangular_householder_product(v, block=block), householder_product_reference(v)
    assert torch.allclose(q, ref, atol=1e-12, rtol=0)
    y = triangular_householder_product(v, right, block=block)
    assert torch.allclose(y, ref @ right, atol=1e-12, rtol=0)
    loss = lambda a, b: (a * up_q).sum() + (b * up_r).sum()  # noqa: E731
    got = torch.autograd.grad(loss(q, y), (v, right))
    want = torch.autograd.grad(loss(ref, ref @ right), (v, right))
    assert torch.allclose(got[0], want[0].triu(), atol=1e-11, rtol=0)
    assert torch.allclose(got[1], want[1], atol=1e-11, rtol=0)


def test_triangular_product_ignores_entries_below_the_diagonal():
    g = torch.Generator().manual_seed(3)
    v = torch.randn(6, 8, generator=g, dtype=torch.float64, requires_grad=True)
    q = triangular_householder_product(v, block=4)
    assert torch.allclose(q, householder_product_reference(v.detach().triu()), atol=1e-13)
    (grad,) = torch.autograd.grad(q.sum(), v)
    assert grad.tril(-1).abs().max().item() == 0.0


def test_triangular_product_gradcheck():
    g = torch.Generator().manual_seed(4)
    v = torch.randn(5, 7, generator=g, dtype=torch.float64).triu().requires_grad_(True)
    right = torch.randn(7, 2, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a: triangular_householder_product(a.triu(), block=2), (v,))
    assert torch.autograd.gradcheck(lambda a, b: triangular_householder_product(a.triu(), b, block=3), (v, right))


@pytest.mark.parametrize("k,n,block", [(7, 7, 3), (4, 9, 3), (6, 11, 4), (5, 5, 5), (3, 8, 2)])
def test_triangular_steps_gradcheck_blocks_not_dividing_n(k, n, block):
    g = torch.Generator().manual_seed(10 * k + n)
    v = torch.randn(k, n, generator=g, dtype=torch.float64).requires_grad_(True)
    right = torch.randn(n, 3, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a: triangular_householder_product(a, block=block), (v,))
    assert torch.autograd.gradcheck(lambda a, b: triangular_householder_product(a, b, block=block), (v, right))
    fixed = right.detach()
    assert torch.autograd.gradcheck(lambda a: triangular_householder_product(a, fixed, block=block), (v,))
    fixed_v = v.detach()
    assert torch.autograd.gradcheck(lambda b: triangular_householder_product(fixed_v, b, block=block), (right,))


def test_triangular_steps_leave_right_and_upstream_gradient_unchanged():
    g = torch.Generator().manual_seed(6)
    v = torch.randn(9, 9, generator=g, dtype=torch.float64).triu().requires_grad_(True)
    right = torch.randn(9, 4, generator=g, dtype=torch.float64, requires_grad=True)
    kept, up = right.detach().clone(), torch.randn(9, 4, generator=g, dtype=torch.float64)
    up_kept = up.clone()
    y = triangular_householder_product(v, right, block=2)
    torch.autograd.grad(y, (v, right), up)
    assert torch.equal(right.detach(), kept) and torch.equal(up, up_kept)
    up_q = torch.randn(9, 9, generator=g, dtype=torch.float64)
    up_q_kept = up_q.clone()
    torch.autograd.grad(triangular_householder_product(v, block=2), v, up_q)
    assert torch.equal(up_q, up_q_kept)


@pytest.mark.parametrize("call,match", [
    (lambda: triangular_householder_product(torch.randn(5, 4)), r"k <= n"),
    (lambda: triangular_householder_product(torch.randn(3, 4), torch.randn(5, 2)), r"right must be a matrix with 4 rows"),
    (lambda: triangular_householder_product(torch.randn(3, 4), block=0), r"block=0 must be an int >= 1"),
])
def test_triangular_product_bad_arguments(call, match):
    with pytest.raises(ValueError, match=match):
        call()
