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

import inspect

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


def _signature_cached(function_class: type) -> type:
    """An autograd.Function with setup_context binds its arguments to forward's signature on every
    apply; this computes the signature once (about 10 µs a call otherwise)."""
    function_class.forward.__signature__ = inspect.signature(function_class.forward)
    return function_class


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


def _diagonal_blocks(padded: Tensor, block: int) -> Tensor:
    """The (m, b, b) view of the diagonal blocks of a (m·b, w) matrix with w >= m·b."""
    m = padded.shape[0] // block
    row, col = padded.stride()
    return padded.as_strided((m, block, block), (block * row + block * col, row, col), padded.storage_offset())


def _symmetric_from_upper(k: Tensor) -> Tensor:
    """striu(K) + striu(K)ᵀ + diag(K) = triu(K) + striu(K)ᵀ, batched over the leading dimensions."""
    m = k.triu()
    m += k.triu(1).mT
    return m


@_signature_cached
class _TriangularBlocks(torch.autograd.Function):
    """Blocked product of triangular-layout reflectors applied to a matrix, hand-written backward.

    Blocks of b reflectors are applied from the last to the first. Block i (rows st..st+b of
    the reflector matrix) acts on rows st.. of the operand C: with v its (b, N) vectors
    (columns st..), T = S⁻¹ its compact-WY factor and X the window of C it reads,

        R = (T v) X,  X ← X − vᵀ R.

    With the identity as operand the window is also restricted to columns st..: the later
    blocks leave it diag(I_b, C'), so X is kept as C' alone and the products with it skip
    the identity part. Backward, block by block in forward order, with G the
    window of ∂L/∂C: Y = (Tᵀ v) G (= −∂L/∂(vX)), K = Y Rᵀ (= ∂L/∂S),
    ∂L/∂v = −Y Xᵀ − R Gᵀ + (striu(K) + striu(K)ᵀ + diag(K)) v, and G ← G − vᵀ Y.
    T v, Tᵀ v and the last term are batched over the blocks.
    """

    @staticmethod
    def forward(vectors: Tensor, right: Tensor | None, block: int) -> tuple[Tensor, ...]:
        k, n = vectors.shape
        identity = right is None
        m = -(-k // block)
        # zero rows are identity reflectors; zero columns beyond n are never read
        padded = vectors.new_zeros(m * block, max(n, m * block))
        padded[:k, :n] = vectors
        for i in range(1, m):  # the rows of block i are zero before column i·b ...
            padded[i * block:(i + 1) * block, :i * block] = 0.0
        _diagonal_blocks(padded, block).triu_()  # ... and below the diagonal inside it
        blocks = padded.view(m, block, -1)
        grams = vectors.new_empty(m, block, block)
        for i in range(m):  # each block's Gram matrix over its non-zero columns only
            torch.mm(blocks[i, :, i * block:n], blocks[i, :, i * block:n].mT, out=grams[i])
        factors = _factors_from_gram(grams)
        c = torch.eye(n, dtype=vectors.dtype, device=vectors.device) if identity else right.clone()
        saved = [None] * m
        for i in reversed(range(m)):
            start = i * block
            tv = factors[i] @ blocks[i, :, start:n]
            if identity:  # the window is diag(I, C') with C' the later blocks' product: R = [Tv₁, Tv₂C']
                window, stop = c[start:, start:], min(start + block, n)
                x = c[stop:, stop:].clone()
                r = tv if stop == n else torch.cat([tv[:, :stop - start], tv[:, stop - start:] @ x], 1)
            else:
                window = c[start:]
                x = window.clone()
                r = tv @ x
            window.addmm_(blocks[i, :, start:n].mT, r, alpha=-1)
            saved[i] = (r, x)
        # and what the backward needs (torch.func runs forward and setup_context apart); the
        # blocks' tensors in one list, a plain object to autograd: no per-tensor output cost
        return c, blocks, factors, saved

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        vectors, right, _ = inputs
        _, blocks, factors, saved = output
        ctx.mark_non_differentiable(blocks, factors)
        ctx.set_materialize_grads(False)  # no zero gradients made up for the extra outputs
        ctx.save_for_backward(blocks, factors)
        ctx.saved_blocks = saved
        ctx.identity, ctx.k = right is None, vectors.shape[0]

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_c: Tensor | None, *_grad_intermediates):
        if grad_c is None:  # no gradient reached the product (not materialized: see setup_context)
            return None, None, None
        blocks, factors = ctx.saved_tensors
        identity, want_v = ctx.identity, ctx.needs_input_grad[0]
        m, block, _ = blocks.shape
        n = grad_c.shape[0]
        grad_c = grad_c.clone()
        grad_blocks = torch.zeros_like(blocks) if want_v else None
        ks = blocks.new_empty(m, block, block) if want_v else None
        for i, (r, x) in enumerate(ctx.saved_blocks):
            start = i * block
            g = grad_c[start:, start:] if identity else grad_c[start:]
            y = factors[i].mT @ blocks[i, :, start:n] @ g
            if want_v:
                torch.mm(y, r.mT, out=ks[i])
                gv = grad_blocks[i, :, start:n]
                if identity:  # X = diag(I, C')
                    width = n - start - x.shape[0]
                    gv[:, :width].sub_(y[:, :width])
                    if x.shape[0]:
                        gv[:, width:].addmm_(y[:, width:], x.mT, alpha=-1)
                else:
                    gv.addmm_(y, x.mT, alpha=-1)
                gv.addmm_(r, g.mT, alpha=-1)
            g.addmm_(blocks[i, :, start:n].mT, y, alpha=-1)
        grad_v = None
        if want_v:
            sym = _symmetric_from_upper(ks)
            for i in range(m):
                grad_blocks[i, :, i * block:n].addmm_(sym[i], blocks[i, :, i * block:n])
            grad_v = grad_blocks.view(m * block, -1)
            _diagonal_blocks(grad_v, block).triu_()
            grad_v = grad_v[:ctx.k, :n]
        return grad_v, (None if identity else grad_c), None


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
    Hand-written backward (:class:`_TriangularBlocks`); first-order gradients only (torch.func.grad
    and vjp included; not vmap, nor jacrev's default vmap over the rows: ``chunk_size=1`` works).
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
    return _TriangularBlocks.apply(vectors, right, block)[0]


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
