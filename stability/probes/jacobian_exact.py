"""The exact method of :func:`~stability.probes.jacobian_decay`: the full products P_g.

P_{g+1} = P_g J_{T−1−g}: with the closed form J_t = diag(φ'(a_t)) W a column scaling and one
(B·n × n)·(n × n) matrix product per step (B·n³ flops); in general a VJP of the step with
the n rows of P_g (``torch.func``, :mod:`stability.probes.operators`). Rescaled to unit
Frobenius norm after every step with the log of the factor kept in float64 (definitions in
:mod:`stability.probes.jacobian`). ‖P̂_g‖₂ comes from an SVD (the first ``EXACT_GAPS`` gaps, or every gap with ``spectral="exact"``) or from
the block power iteration of :class:`_SubspaceTracker`. Measured accuracy and cost:
docs/probe-accuracy.md.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["exact_norms"]

#: gaps whose spectral norm is always computed exactly (the top singular directions of the
#: first few products are far from those of their neighbours, and their singular values
#: crowd together, so a tracked subspace converges slowly there)
EXACT_GAPS = 8
#: the iteration schedule after those: EARLY_ITERS[j] iterations (at least ``iters``) for
#: gaps below EARLY_GAPS[j], while the tracked subspace settles
EARLY_GAPS, EARLY_ITERS = (32, 128), (8, 2)


class _SubspaceTracker:
    """Top singular value of a sequence of related batched matrices P̂_g, by subspace iteration.

    Keeps, per sample, an orthonormal basis U (m rows) of a left subspace carried from gap to
    gap. One iteration on the current P̂ (B, n, n):

        Y = U P̂                     (B, m, n): the images P̂ᵀu_i as rows,
        H = Y Yᵀ = z Λ zᵀ            Rayleigh–Ritz of P̂P̂ᵀ on span(U),
        V = rows of zᵀY, normalized  right Ritz vectors (orthonormal: zᵀHz = Λ),
        Z = V P̂ᵀ                    (P̂ v_i)ᵀ as rows;  σ = ‖P̂ v_1‖,  U ← orth(Z).

    σ ≥ √λ_max(H) is a lower bound of ‖P̂‖₂ that converges to it (block power iteration with
    Rayleigh–Ritz; it converges where single-vector power iteration stalls: the top singular
    vector of these products jumps within a cluster of close singular values, e.g. for
    the rotation pairs of orthogonal transitions). After every gap the least useful direction
    (the last Ritz vector) is replaced by a fresh random vector, so no direction is missed for
    good (a warm start alone can get stuck in the near-null space of a rank-deficient
    product). The small m-sized algebra runs in float64; the two (B, m, n)·(B, n, n) products
    in the model's dtype. Its random vectors come from its own seeded generator on the
    model's device: results are reproducible and the global RNG is untouched.
    """

    def __init__(self, batch: int, n: int, m: int, dtype, device):
        self.m, self.dtype = m, dtype
        self.gen = torch.Generator(device=device).manual_seed(0)
        self.shape = (batch, n)
        u = torch.randn(batch, n, m, generator=self.gen, dtype=torch.float64, device=device)
        self.u = torch.linalg.qr(u).Q.transpose(1, 2)  # (B, m, n), orthonormal rows

    def __call__(self, p: Tensor, iters: int) -> Tensor:
        u, pt = self.u, p.transpose(1, 2)
        for i in range(iters):
            y = torch.bmm(u.to(self.dtype), p).to(torch.float64)             # U P̂
            lam, z = torch.linalg.eigh(y @ y.transpose(1, 2))               # ascending
            v = z.flip(2).transpose(1, 2) @ y                               # right Ritz vectors, σ descending
            v = v / torch.linalg.vector_norm(v, dim=2, keepdim=True).clamp_min(1e-300)
            zr = torch.bmm(v.to(self.dtype), pt).to(torch.float64)          # (P̂ v_i)ᵀ
            sigma = torch.linalg.vector_norm(zr[:, 0], dim=1)
            if i == iters - 1:  # the least useful direction makes way for a fresh random one
                zr[:, -1] = torch.randn(self.shape, generator=self.gen, dtype=torch.float64, device=p.device)
            u = torch.linalg.qr(zr.transpose(1, 2)).Q.transpose(1, 2)
        self.u = u
        return sigma


def _iterations(gap: int, iters: int) -> int:
    for limit, count in zip(EARLY_GAPS, EARLY_ITERS):
        if gap < limit:
            return max(iters, count)
    return iters


def exact_norms(op, gaps: int, spectral: str, block: int, iters: int) -> tuple[Tensor, Tensor]:
    """(log ‖P_g‖₂, log ‖P_g‖_F), each (gaps + 1, B) float64, from the full products P_g.

    ``op``: the view's linearized steps (:mod:`stability.probes.operators`); P_g is carried as
    its n rows, P_g = P_{g−1} J_{T−g} one ``op.vjp`` of n rows per sample.
    """
    steps, batch, n = op.steps, op.batch, op.size
    dtype, device = op.dtype, op.device
    exact = spectral == "exact" or n <= 2 * block
    log_fro = torch.empty(gaps + 1, batch, dtype=torch.float64, device=device)
    log_spec = torch.empty(gaps + 1, batch, dtype=torch.float64, device=device)
    p = torch.eye(n, dtype=dtype, device=device).div_(math.sqrt(n)).expand(batch, n, n).contiguous()
    scale = torch.full((batch,), 0.5 * math.log(n), dtype=torch.float64, device=device)
    tracker = None if exact else _SubspaceTracker(batch, n, block, dtype, device)
    for g in range(gaps + 1):
        if g > 0:  # P_g = P_{g−1} J_{T−g} (= P_{g−1} diag(φ'(a_{T−g})) W), then rescale to unit Frobenius norm
            op.vjp(p, steps - g, out=p)
            fro = torch.linalg.vector_norm(p, dim=(1, 2))
            p.div_(torch.where(fro > 0, fro, torch.ones_like(fro)).view(batch, 1, 1))
            scale = scale + torch.log(fro.to(torch.float64))
        log_fro[g] = scale
        if exact or g < EXACT_GAPS:
            sigma = torch.linalg.matrix_norm(p, ord=2)
            if tracker is not None:  # warm the tracked subspace up meanwhile
                tracker(p, EARLY_ITERS[0])
        else:
            sigma = tracker(p, _iterations(g, iters))
        log_spec[g] = scale + torch.log(sigma.to(torch.float64))
    return log_spec, log_fro
