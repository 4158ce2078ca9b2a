"""The Spectral-RNN's W = U Σ Vᵀ in one pass of two-sided blocked reflector updates.

U = H(u₁)···H(u_k) and V = H(v₁)···H(v_k), the reflector vectors being the rows of
upper-triangular (k, n) matrices (row j zero before column j; the Spectral-RNN layout,
given here by the free entries only, in ``torch.triu_indices`` order). In blocks of b
reflectors, U = Q₀ Q₁ ··· Q_{m−1} with Qᵢ = I − uᵢᵀ Tᵢ uᵢ acting on the coordinates from
sᵢ = i·b on (Tᵢ = S⁻¹, the compact-WY factor of block i, LAPACK's larft), V likewise, and

    W = Q⁰ᵤ (Q¹ᵤ (··· (Q^{m−1}ᵤ Σ Q^{m−1}ᵥᵀ) ···) Q¹ᵥᵀ) Q⁰ᵥᵀ.

Every bracket is diag(σ₀..σ_{s−1}, M) with M square of side w = n − s, so step i (from the
last block to the first) maps X = diag(σ_s..σ_{s+b−1}, M_{i+1}) to M_i = Qᵤ X Qᵥᵀ by four GEMMs
with inner or outer size b (P = T u, the block's b × w vectors from column s on):

    R = Pᵤ X,   A = X − uᵀ R,   S = A Pᵥᵀ,   M = A − S v.

For k = n that is about 4n³/3 multiply-adds forward (against 5n³/3 for V's product and then
U applied to Σ Vᵀ) and twice that backward. The free entries are scattered straight into a
packed block layout (block i from column i·b on only, so every per-block product reads its
non-zero columns as one contiguous block, with few view ops), and Σ into the diagonals of the
steps' inputs: no padding, identity or intermediate V passes through autograd. Each step
writes its result into the next step's input buffer, so every step's input stays intact for
the backward without a copy; the backward works in place in one copy of the incoming
gradient, step i on its [i·b:, i·b:] window, whose diagonal ends up as ∂σ.

Backward of one step, with G = ∂L/∂M and the right update seen as the left one on Aᵀ:
Yᵥ = (Tᵥᵀ v) Gᵀ, ∂v = Kᵥ⁺ v − Yᵥ A − Sᵀ G with Kᵥ = Yᵥ S, ∂A = G − Yᵥᵀ v; then
Yᵤ = (Tᵤᵀ u) ∂A, ∂u = Kᵤ⁺ u − Yᵤ Xᵀ − R ∂Aᵀ with Kᵤ = Yᵤ Rᵀ, ∂X = ∂A − uᵀ Yᵤ, where
K⁺ = striu(K) + striu(K)ᵀ + diag(K) (S depends on the vectors through their Gram matrix).
∂X's leading diagonal is ∂σ for the block's b values, its trailing part the next step's G.
"""
from __future__ import annotations

import functools

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from .householder import _block_size, _factors_from_gram, _signature_cached, _symmetric_from_upper


@functools.lru_cache(maxsize=64)
def _layout(k: int, n: int, block: int, device: torch.device):
    """Index tensors and step sizes for k reflectors per factor in blocks of ``block``, W n×n.

    Returns (flat, sigma_pos, sides, block_sizes, total): step i works on the columns from
    i·b on, sides[i] = n − i·b of them. ``flat`` scatters the free entries of U's and then V's
    reflectors into a flat zero buffer of consecutive (2, b, sides[i]) blocks (U's rows
    i·b..i·b+b−1 from column i·b on, then V's; rows beyond k stay zero: identities; block i
    has block_sizes[i] entries). Step i's input X (side sides[i]) is the i-th consecutive
    square in a flat buffer of ``total`` entries, and ``sigma_pos`` places σ on the
    diagonals of those squares (the first b entries of each, all of the last one).
    """
    m = -(-k // block)
    sides = [n - i * block for i in range(m)]
    block_sizes = [2 * block * w for w in sides]
    rows, cols = torch.triu_indices(k, n)
    i = rows // block
    start = torch.tensor([0] + block_sizes[:-1]).cumsum(0)[i]
    width = torch.tensor(sides)[i]
    at = start + rows % block * width + cols - i * block
    flat = torch.cat([at, at + block * width])
    offsets = [0]
    for w in sides:
        offsets.append(offsets[-1] + w * w)
    q = torch.arange(n)
    step = (q // block).clamp(max=m - 1)
    side = n - step * block
    sigma_pos = torch.tensor(offsets[:-1])[step] + (q - step * block) * (side + 1)
    return flat.to(device), sigma_pos.to(device), tuple(sides), tuple(block_sizes), offsets[-1]


def _squares(buffer: Tensor, sides) -> list[Tensor]:
    """The consecutive w × w squares of a flat buffer, one per side w."""
    return [x.view(w, w) for x, w in zip(buffer.split([w * w for w in sides]), sides)]


def _blocks(buffer: Tensor, block: int, sides, block_sizes) -> list[Tensor]:
    """The consecutive (2, b, w) blocks of a flat buffer, one per side w."""
    return [x.view(2, block, w) for x, w in zip(buffer.split(block_sizes), sides)]


@_signature_cached
class _SpectralSteps(torch.autograd.Function):
    """U diag(σ) Vᵀ from the free reflector entries by two-sided block steps (module docstring)."""

    @staticmethod
    def forward(u_values: Tensor, sigma: Tensor, v_values: Tensor, k: int, block: int) -> tuple[Tensor, ...]:
        n = sigma.shape[0]
        flat, sigma_pos, sides, block_sizes, total = _layout(k, n, block, sigma.device)
        m = len(sides)
        packed = sigma.new_zeros(sum(block_sizes))
        packed.index_copy_(0, flat, torch.cat([u_values, v_values]))
        blocks = _blocks(packed, block, sides, block_sizes)
        # the Gram matrices of U's and V's block i over their non-zero columns (from i·b on)
        grams = sigma.new_empty(m, 2, block, block)
        for b_i, gram in zip(blocks, grams.unbind(0)):
            torch.bmm(b_i, b_i.mT, out=gram)
        factors = _factors_from_gram(grams.view(2 * m, block, block)).view(m, 2, block, block)
        xbuf = sigma.new_zeros(total)
        xbuf.index_copy_(0, sigma_pos, sigma)
        xs = _squares(xbuf, sides)
        steps = [None] * m
        for i, (b_i, t_i) in reversed(list(enumerate(zip(blocks, factors.unbind(0))))):
            x = xs[i]
            u, v = b_i.unbind(0)
            pu, pv = torch.bmm(t_i, b_i).unbind(0)
            r = pu @ x
            a = torch.addmm(x, u.mT, r, alpha=-1)
            sv = a @ pv.mT
            if i:
                out = torch.addmm(a, sv, v, alpha=-1, out=xs[i - 1][block:, block:])
            else:
                out = torch.addmm(a, sv, v, alpha=-1)
            steps[i] = (x, r, a, sv, b_i, u, v)
        # and what the backward needs (torch.func runs forward and setup_context apart); the
        # steps' tensors (and views of the packed blocks) in one list, a plain object to
        # autograd: no per-tensor output cost
        return out, packed, factors, steps

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        _, sigma, _, k, block = inputs
        _, packed, factors, steps = output
        ctx.mark_non_differentiable(packed, factors)
        ctx.set_materialize_grads(False)  # no zero gradients made up for the extra outputs
        ctx.save_for_backward(packed, factors)
        ctx.steps = steps
        ctx.layout = _layout(k, sigma.shape[0], block, sigma.device)
        ctx.block = block

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_w: Tensor | None, *_grad_intermediates):
        if grad_w is None:  # no gradient reached W (grads are not materialized: see setup_context)
            return None, None, None, None, None
        packed, factors = ctx.saved_tensors
        flat, _, sides, block_sizes, _ = ctx.layout  # σ's gradient is the window diagonals, not sigma_pos
        block = ctx.block
        # minus the per-step parts of ∂(vectors), in the packed layout
        neg = torch.empty_like(packed)
        negs = _blocks(neg, block, sides, block_sizes)
        ks = packed.new_empty(len(sides), 2, block, block)
        # every step's ∂X in place in one n × n buffer: step i's G = ∂M is its [s:, s:] window
        # (the previous step's ∂X less its first b rows and columns), whose first b diagonal
        # entries become the block's ∂σ
        gbuf = grad_w.clone(memory_format=torch.contiguous_format)
        for i, ((x, r, a, sv, b_i, u, v), t_i, neg_i, k_i) in enumerate(
                zip(ctx.steps, factors.mT.unbind(0), negs, ks.unbind(0))):
            s = i * block
            g = gbuf[s:, s:]
            ptu, ptv = torch.bmm(t_i, b_i).unbind(0)
            neg_u, neg_v = neg_i.unbind(0)
            yv = ptv @ g.mT
            torch.mm(yv, a, out=neg_v).addmm_(sv.mT, g)
            torch.mm(yv, sv, out=k_i[1])
            ga = g.addmm_(yv.mT, v, alpha=-1)
            yu = ptu @ ga
            torch.mm(yu, x.mT, out=neg_u).addmm_(r, ga.mT)
            torch.mm(yu, r.mT, out=k_i[0])
            ga.addmm_(u.mT, yu, alpha=-1)
        sym = _symmetric_from_upper(ks)
        for neg_i, sym_i, (*_, b_i, _u, _v) in zip(negs, sym.unbind(0), ctx.steps):
            neg_i.baddbmm_(sym_i, b_i, beta=-1)
        grad_values = neg.index_select(0, flat)
        half = grad_values.shape[0] // 2
        return grad_values[:half], gbuf.diagonal().clone(), grad_values[half:], None, None


def spectral_matrix(u_values: Tensor, sigma: Tensor, v_values: Tensor, k: int, block: int | None = None) -> Tensor:
    """U diag(σ) Vᵀ (n×n, n = len(σ)) from the free entries of two upper-triangular (k, n) reflector matrices.

    ``u_values`` and ``v_values`` hold the entries of the reflector rows in
    ``torch.triu_indices(k, n)`` order (:class:`~stability.transitions.spectral.TriangularReflectors`);
    U = H(u₀)···H(u_{k−1}), V likewise. Equals ``svd_compose`` of the dense matrices (tested in
    float64). Blocks of ``block`` reflectors (default as ``triangular_householder_product``);
    hand-written backward, first-order gradients only (torch.func.grad and vjp included; not vmap,
    nor jacrev's default vmap over the rows: ``chunk_size=1`` works).
    """
    if sigma.dim() != 1 or sigma.shape[0] < 1:
        raise ValueError(f"sigma must be a vector of n >= 1 singular values, got shape {tuple(sigma.shape)}")
    n = sigma.shape[0]
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= n:
        raise ValueError(f"k={k!r} must be an int in 1..{n} (reflectors per factor, n = len(sigma))")
    free = k * n - k * (k - 1) // 2
    for name, values in (("u_values", u_values), ("v_values", v_values)):
        if values.dim() != 1 or values.shape[0] != free:
            raise ValueError(f"{name} must hold the {free} free entries of a ({k}, {n}) upper-triangular "
                             f"matrix, got shape {tuple(values.shape)}")
    if block is None:
        block = _block_size(n)
    elif isinstance(block, bool) or not isinstance(block, int) or block < 1:
        raise ValueError(f"block={block!r} must be an int >= 1")
    return _SpectralSteps.apply(u_values, sigma, v_values, k, block)[0]
