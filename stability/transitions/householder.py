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


def _block_size(n: int) -> int:
    """Reflectors per block of :func:`triangular_householder_product`: 64, n/2 below n = 128.

    Measured (1 thread, k = n, forward + backward, docs/speed.md): 64 beats 16, 32 and 128
    at n = 128, 256 and 512.
    """
    return max(16, min(64, -(-n // 2)))


def _factors_from_gram(s: Tensor) -> Tensor:
    """T = S⁻¹ from the batched Gram matrices V Vᵀ of blocks of reflectors (overwritten).

    S = diag(‖vᵢ‖²/2) + striu(V Vᵀ); a zero row stands for the identity (its diagonal entry
    of S is taken as 1). The triangular solve reads only the upper triangle.
    """
    half = s.diagonal(dim1=1, dim2=2)
    half.mul_(0.5).masked_fill_(half == 0, 1.0)
    eye = torch.eye(s.shape[1], dtype=s.dtype, device=s.device).expand_as(s)
    return torch.linalg.solve_triangular(s, eye, upper=True, left=False)


def _square_buffers(sides: list[int], like: Tensor, width: int | None = None) -> list[Tensor]:
    """Views (w, width or w) for w in ``sides``, consecutive in one new uninitialized buffer."""
    sizes = [w * (w if width is None else width) for w in sides]
    buf = like.new_empty(sum(sizes))
    return [b.view(w, w if width is None else width) for b, w in zip(buf.split(sizes), sides)]


class _TriangularBlocks(torch.autograd.Function):
    """Blocked product of triangular-layout reflectors applied to a matrix, hand-written backward.

    Blocks of b reflectors, Qᵢ = I − vᵢᵀ Tᵢ vᵢ (Tᵢ = S⁻¹, vᵢ the block's b × w vectors from
    column s = i·b on, w = n − s), are applied from the last to the first; step i maps the
    rows s.. of the operand, X, to Qᵢ X by two GEMMs: R = P X (P = T v), X − vᵀ R. Each step
    writes its result (``addmm(out=)``) into the next step's input buffer, so every step's
    input stays intact for the backward without a copy. With a ``right`` operand, step i's
    input is [right's rows s..s+b; step i+1's result] (the last step reads ``right`` itself,
    never written). With the identity it is diag(I_b, M) (M the later blocks' product,
    the last step's input is I itself): R = [P₁, P₂ M] skips the identity part.

    Backward, step by step in forward order, with G = ∂L/∂(step output) (never written):
    Y = (Tᵀ v) G (= −∂L/∂(vX)), K = Y Rᵀ (= ∂L/∂S), ∂v = K⁺ v − Y Xᵀ − R Gᵀ with
    K⁺ = striu(K) + striu(K)ᵀ + diag(K), ∂X = G − vᵀ Y, written into its own buffer (with the
    identity only its trailing part ∂M = G₂₂ − v₂ᵀ Y₂ is needed; with ``right`` the buffer is
    ∂L/∂right itself, its rows s.. ∂X, the next step's G its rows s+b..).
    """

    @staticmethod
    def forward(ctx, vectors: Tensor, right: Tensor | None, block: int) -> Tensor:
        k, n = vectors.shape
        m = -(-k // block)
        # rows beyond k are zero (identities); row j is zero before column j (block i's
        # columns before i·b are never read, those of its diagonal block made triangular)
        padded = vectors.new_empty(m * block, n)
        padded[:k] = vectors
        padded[k:].zero_()
        blocks = padded.view(m, block, n)
        vs = [b_i[:, i * block:] for i, b_i in enumerate(blocks.unbind(0))]  # block i from column i·b on
        grams = vectors.new_empty(m, block, block)
        for v, gram in zip(vs, grams.unbind(0)):  # each block's Gram matrix over its non-zero columns only
            v[:, :block].triu_()
            torch.mm(v, v.mT, out=gram)
        factors = _factors_from_gram(grams)
        ts = factors.unbind(0)
        sides = [n - i * block for i in range(m)]
        saved = [None] * m
        if right is None:
            xs = _square_buffers(sides[:-1], vectors)
            for j, x in enumerate(xs):  # diag(I_b, ·): the next step writes the trailing part ...
                if j == m - 2:  # ... over the identity (the last step's input)
                    x.zero_()
                else:
                    x[:block].zero_()
                    x[block:, :block].zero_()
                x.diagonal().fill_(1.0)
            for i in reversed(range(m)):
                v = vs[i]
                p = torch.mm(ts[i], v)
                if i == m - 1:  # the input is the identity: R = P, and I − vᵀP written over I
                    x, r = None, p
                    out = (xs[i - 1][block:, block:] if i else torch.eye(n, dtype=vectors.dtype, device=vectors.device))
                    out.addmm_(v.mT, p, alpha=-1)
                    saved[i] = (r, x)
                    continue
                x = xs[i]
                r = torch.empty_like(p)
                r[:, :block] = p[:, :block]
                torch.mm(p[:, block:], x[block:, block:], out=r[:, block:])
                out = torch.addmm(x, v.mT, r, alpha=-1, out=xs[i - 1][block:, block:] if i else None)
                saved[i] = (r, x)
        else:
            xs = _square_buffers(sides[:-1], vectors, right.shape[1])
            for i, x in enumerate(xs):
                x[:block] = right[i * block:(i + 1) * block]
            for i in reversed(range(m)):
                v = vs[i]
                x = xs[i] if i < m - 1 else right[i * block:]
                r = torch.mm(torch.mm(ts[i], v), x)
                out = torch.addmm(x, v.mT, r, alpha=-1, out=xs[i - 1][block:] if i else None)
                saved[i] = (r, x if i < m - 1 else None)
        ctx.save_for_backward(blocks, factors, right)
        ctx.steps, ctx.k, ctx.views = saved, k, vs
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_c: Tensor):
        blocks, factors, right = ctx.saved_tensors
        want_v, want_right = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        m, block, n = blocks.shape
        neg = blocks.new_empty(m, block, n) if want_v else None  # minus the per-step parts of ∂v
        ks = blocks.new_empty(m, block, block) if want_v else None
        if right is None:
            gs = _square_buffers([n - (i + 1) * block for i in range(m - 1)], blocks)
        else:
            grad_right = blocks.new_empty(right.shape)
        g, vs, ts = grad_c, ctx.views, factors.mT.unbind(0)
        negs = neg.unbind(0) if want_v else None
        for i, (r, x) in enumerate(ctx.steps):
            s, v = i * block, vs[i]
            y = torch.mm(torch.mm(ts[i], v), g)
            last = i == m - 1
            if want_v:
                nv = negs[i][:, s:]
                if right is None and last:  # X = I
                    nv.copy_(y)
                elif right is None:  # X = diag(I_b, M)
                    nv[:, :block] = y[:, :block]
                    torch.mm(y[:, block:], x[block:, block:].mT, out=nv[:, block:])
                else:
                    torch.mm(y, (right[s:] if last else x).mT, out=nv)
                nv.addmm_(r, g.mT)
                torch.mm(y, r.mT, out=ks[i])
            if right is None:
                if not last:
                    g = torch.addmm(g[block:, block:], v[:, block:].mT, y[:, block:], alpha=-1, out=gs[i])
            elif i == 0:
                g = torch.addmm(g, v.mT, y, alpha=-1, out=grad_right)[block:]
            elif not last or want_right:
                g = g.addmm_(v.mT, y, alpha=-1)[block:]
        grad_v = None
        if want_v:
            sym = ks.triu()
            sym += ks.triu(1).mT
            for i, (nv, sym_i) in enumerate(zip(negs, sym.unbind(0))):  # ∂v = K⁺v − neg, zero before the diagonal
                nv[:, :i * block].zero_()
                nv = nv[:, i * block:].addmm_(sym_i, vs[i], beta=-1)
                nv[:, :block].triu_()
            grad_v = neg.view(m * block, n)[:ctx.k]
        return grad_v, (grad_right if want_right else None), None


def triangular_householder_product(vectors: Tensor, right: Tensor | None = None,
                                   block: int | None = None) -> Tensor:
    """H(v₁)···H(v_k) (times ``right`` when given) for the rows of an upper-triangular (k, n) matrix.

    Row j of ``triu(vectors)`` is the reflector vector vⱼ (zero before column j, the
    Spectral-RNN layout); entries below the diagonal are taken as zero and get zero gradient,
    so this equals ``householder_product(vectors.triu())`` (@ ``right``). The reflectors are
    grouped in blocks of ``block`` (default 64, n/2 below n = 128); a block's product I − VᵀS⁻¹V acts only
    on the coordinates from its first row on, so the blocks are applied from the last to the
    first, each to the trailing part only (LAPACK's dorgqr order): about 2n³/3 multiply-adds
    for k = n against the full compact form's 2.5n³, all in GEMMs of inner size ``block``.
    ``right`` (n, m) is multiplied in without forming the product (about n²m multiply-adds).
    Hand-written backward (:class:`_TriangularBlocks`); first-order gradients only.
    """
    _check_vectors(vectors)
    k, n = vectors.shape
    if k > n:
        raise ValueError(f"triangular reflectors need k <= n, got shape {tuple(vectors.shape)}")
    if right is not None and (not isinstance(right, Tensor) or right.dim() != 2 or right.shape[0] != n):
        raise ValueError(f"right must be a matrix with {n} rows, got shape {tuple(getattr(right, 'shape', ()))}")
    if block is None:
        block = _block_size(n)
    elif isinstance(block, bool) or not isinstance(block, int) or block < 1:
        raise ValueError(f"block={block!r} must be an int >= 1")
    return _TriangularBlocks.apply(vectors, right, block)


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
