"""Products of Householder reflectors: the plain definition and the fast compact-WY form.

A reflector is H(v) = I − 2 v vᵀ / ‖v‖². For vectors v₁..v_k (the rows of a (k, n) tensor)

    H(v₁) H(v₂) ··· H(v_k) = I − Vᵀ S⁻¹ V,    S = diag(‖vᵢ‖²/2) + striu(V Vᵀ)

(the "UT transform" of the compact WY representation; Schreiber & Van Loan 1989,
Joffrain et al. 2006). One Gram matrix, one triangular solve and one matrix product
replace k rank-1 updates, so the whole product costs a few n×n GEMMs, forward and backward.

A zero vector stands for the identity (LAPACK's τ = 0 convention): this is how a product
of n reflectors reaches every orthogonal matrix, whatever its determinant (the last,
one-coordinate reflector is either the identity or a sign flip; see
:func:`reflectors_from_orthogonal`).
"""
from __future__ import annotations

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable


def _check_vectors(vectors: Tensor) -> None:
    if not isinstance(vectors, Tensor):
        raise TypeError(f"vectors must be a torch.Tensor, got {type(vectors).__name__}")
    if vectors.dim() != 2:
        raise ValueError(f"vectors must have shape (k, n), got shape {tuple(vectors.shape)}")
    if vectors.shape[0] < 1 or vectors.shape[1] < 1:
        raise ValueError(f"vectors must hold at least one reflector of size >= 1, got shape {tuple(vectors.shape)}")


class _CompactWY(torch.autograd.Function):
    """Q = I − Vᵀ S⁻¹ V with a hand-written backward (4 GEMMs and one triangular solve).

    For Q̄ = ∂L/∂Q and X = S⁻¹V:  Z = S⁻ᵀ(V Q̄),  S̄ = Z Xᵀ,  M = striu(S̄) + striu(S̄)ᵀ + diag(S̄),
    ∂L/∂V = M V − Z − X Q̄ᵀ  (S depends on V through its Gram entries and ‖vᵢ‖²/2).
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(vectors: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        n = vectors.shape[-1]
        s = vectors @ vectors.transpose(-1, -2)
        half = 0.5 * s.diagonal(dim1=-2, dim2=-1)
        half = torch.where(half > 0, half, torch.ones_like(half))  # zero vector: identity
        s = s.triu(1) + torch.diag_embed(half)
        x = torch.linalg.solve_triangular(s, vectors, upper=True)
        q = torch.eye(n, dtype=vectors.dtype, device=vectors.device) - vectors.transpose(-1, -2) @ x
        return q, s, x

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        (vectors,) = inputs
        _, s, x = output
        ctx.mark_non_differentiable(s, x)
        ctx.save_for_backward(vectors, s, x)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_q: Tensor, _grad_s=None, _grad_x=None) -> Tensor:
        vectors, s, x = ctx.saved_tensors
        t = lambda a: a.transpose(-1, -2)  # noqa: E731
        z = torch.linalg.solve_triangular(t(s), vectors @ grad_q, upper=False)
        grad_s = z @ t(x)
        m = grad_s.triu(1)
        m = m + t(m) + torch.diag_embed(grad_s.diagonal(dim1=-2, dim2=-1))
        return m @ vectors - z - x @ t(grad_q)


def householder_product(vectors: Tensor) -> Tensor:
    """H(v₁)···H(v_k) for the rows vᵢ of ``vectors`` (shape (k, n)), as an n×n matrix.

    Compact WY form with a fused backward; agrees with :func:`householder_product_reference`
    (tested in float64). First-order gradients only.
    """
    _check_vectors(vectors)
    return _CompactWY.apply(vectors)[0]


def householder_product_reference(vectors: Tensor) -> Tensor:
    """The plain definition: multiply the k reflectors one rank-1 update at a time."""
    _check_vectors(vectors)
    k, n = vectors.shape
    q = torch.eye(n, dtype=vectors.dtype, device=vectors.device)
    for v in vectors.unbind(0):
        norm2 = v @ v
        if norm2 == 0:
            continue  # identity
        q = q - (2.0 / norm2) * torch.outer(q @ v, v)
    return q


def normalize_rows(vectors: Tensor) -> Tensor:
    """``vectors`` with every non-zero row scaled to unit length; zero rows (identities) stay zero.

    H(c v) = H(v) for every c ≠ 0, so the product of the reflectors is unchanged.
    """
    norms = torch.linalg.vector_norm(vectors, dim=-1, keepdim=True)
    return vectors / torch.where(norms > 0, norms, torch.ones_like(norms))


def apply_reflector(v: Tensor, x: Tensor) -> Tensor:
    """H(v) x for a single reflector (x of shape (n,) or (n, m))."""
    norm2 = v @ v
    if norm2 == 0:
        return x
    return x - (2.0 / norm2) * torch.outer(v, v @ x) if x.dim() == 2 else x - (2.0 / norm2) * v * (v @ x)


def reflectors_from_orthogonal(q: Tensor) -> Tensor:
    """Rows v₀..v_{n−1} of an upper-triangular (n, n) matrix with H(v₀)···H(v_{n−1}) = q.

    Row j is zero before column j (reflector j acts on the last n − j coordinates), the
    layout of the Spectral-RNN. Householder QR of the orthogonal ``q`` with every reflector
    mapping its column onto +‖x‖e_j (Parlett's formula avoids the cancellation), so R is
    the identity except for the last entry, which the last (one-coordinate) reflector
    supplies: v = e_{n−1} for −1, v = 0 (identity) for +1. Computed in float64.

    Where a column already is +‖x‖e_j (structured matrices: the identity, block rotations),
    any v ⟂ e_j would do; this takes v = e_{j+1}, never the zero vector: the gradient of a
    product with respect to a zero row is zero, so a zero row would never move in training.
    Only the last row (one coordinate, a constant sign flip or the identity) can be zero.
    """
    if q.dim() != 2 or q.shape[0] != q.shape[1]:
        raise ValueError(f"q must be a square matrix, got shape {tuple(q.shape)}")
    n = q.shape[0]
    a = q.detach().to(torch.float64).clone()
    vs = torch.zeros(n, n, dtype=torch.float64, device=q.device)
    for j in range(n - 1):
        x = a[j:, j]
        tail2 = (x[1:] @ x[1:])
        norm = torch.sqrt(x[0] * x[0] + tail2)
        if tail2 == 0 and x[0] >= 0:  # already +‖x‖e_j: a reflector orthogonal to e_j keeps it
            v = torch.zeros_like(x)
            v[1] = 1.0
        else:
            v = x.clone()
            if x[0] <= 0:
                v[0] = x[0] - norm
            else:
                v[0] = -tail2 / (x[0] + norm)
        vs[j, j:] = v
        a[j:, j:] = apply_reflector(v, a[j:, j:])
    if a[n - 1, n - 1] < 0:
        vs[n - 1, n - 1] = 1.0
    return vs.to(q.dtype)
