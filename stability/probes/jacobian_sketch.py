"""The sketch method of :func:`~stability.probes.jacobian_decay`: k probe directions instead of P_g.

Carries the k × n block Y_g = Fᵀ P_g for a fixed orthonormal n × k frame F through one backward
sweep, Y_{g+1} = Y_g J_{T−1−g} (:func:`_backward_sweep`; in closed form (Y_g · diag(φ'(a_{T−1−g}))) W,
in general a VJP of the step, :mod:`stability.probes.operators`). F holds
m = min(block, k // 2) directions tracking the top left singular subspace of the products
(:func:`_forward_frame`) and k − m random directions of their complement; the Frobenius
estimate and the spectral lower bound (:func:`_top_eigenvalue`) are defined in
:mod:`stability.probes.jacobian`. Measured accuracy and cost: docs/probe-accuracy.md.
"""
from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["sketch_norms"]

#: gaps per chunk of the sketch's backward sweep: the carried block is rescaled at chunk
#: ends only (one norm, one Gram product and one range check per chunk, not per step)
SKETCH_CHUNK = 32
#: steps between re-orthonormalizations (QR) of the forward-tracked subspace
FRAME_QR_EVERY = 16
#: the forward-tracked subspace is swept over the last min(max_gap, FRAME_STEPS) steps
FRAME_STEPS = 256
#: squarings of the normalized Gram matrices that pick the vector of the Rayleigh quotient
GRAM_SQUARINGS = 5
#: squarings after which the quotients certified to the dtype's rounding are kept (the rest go on)
GRAM_EARLY_EXITS = (2,)


def _safe_range(dtype) -> tuple[float, float]:
    """How far a block's norm may drift between rescalings without losing precision."""
    info = torch.finfo(dtype)
    return info.tiny ** 0.4, info.max ** 0.4


def _orthonormal_rows(rows: Tensor) -> Tensor:
    """Orthonormal rows (B, m, n) spanning the rows of ``rows`` (a batched QR of their transpose)."""
    return torch.linalg.qr(rows.transpose(1, 2)).Q.transpose(1, 2).contiguous()


def _random_rows(batch: int, n: int, m: int, gen: torch.Generator, op) -> Tensor:
    """m random orthonormal rows per sample (B, m, n), drawn in float64, in the operator's dtype and device."""
    q = torch.randn(batch, n, m, generator=gen, dtype=torch.float64, device=op.device)
    return _orthonormal_rows(q.transpose(1, 2)).to(op.dtype)


def _forward_frame(op, length: int, m: int, gen: torch.Generator) -> Tensor:
    """Orthonormal (B, n, m) basis of span(J_{T−1} ··· J_{T−length} Q₀), Q₀ random (float64).

    Block power iteration forward in time (the QR method of Lyapunov analysis): it converges
    to the top-m left singular subspace of the long products P_g that end at h_{T−1}.
    Rows are carried ((B, m, n), r ← (J_t r)ᵀ = (r Wᵀ) ⊙ φ'(a_t) in closed form: ``op.jvp``) and
    re-orthonormalized every ``FRAME_QR_EVERY`` steps; a segment that leaves the safe range is
    redone with a QR per step.
    """
    steps, batch, n = op.steps, op.batch, op.size
    lo, hi = _safe_range(op.dtype)
    q = _random_rows(batch, n, m, gen, op)
    t = steps - length
    while t < steps:
        end = min(t + FRAME_QR_EVERY, steps)
        start = q
        for every in (end - t, 1):
            q = start.clone()
            for s in range(t, end):
                op.jvp(q, s, out=q)
                if every == 1 and s < end - 1:
                    q = _orthonormal_rows(q)
            top = torch.linalg.vector_norm(q, dim=2).amax(1)
            if bool(((top >= lo) & (top <= hi)).all()):
                break
        q = _orthonormal_rows(q)
        if not bool(torch.isfinite(q).all()):  # a product that over- or underflowed even step by step
            q = _random_rows(batch, n, m, gen, op)
        t = end
    return q.transpose(1, 2).to(torch.float64)


def _backward_sweep(op, gaps: int, y0: Tensor) -> tuple[Tensor, Tensor]:
    """Carry Y_g = Fᵀ P_g (rows, (B, k, n)) for g = 0..gaps; return (log ‖Y_g‖_F, Ŷ_g Ŷ_gᵀ).

    Y_{g+1} = Y_g J_{T−1−g} (``op.vjp``; in closed form (Y_g ⊙ φ'(a_{T−1−g})) W, one
    (B·k × n)·(n × n) product per step). The block is
    rescaled at the end of every chunk of ``SKETCH_CHUNK`` steps, by the norms that the
    chunk's Gram matrices Y_g Y_gᵀ (one batched product per chunk) hold on their diagonals; a
    chunk in which some sample's norm leaves the safe range (float32: 1e±15 from the chunk's
    start) is redone with a rescaling after every step, so no product under- or overflows.
    Returns the log of the Frobenius norms (gaps + 1, B) in float64 and the Gram matrices of
    the normalized blocks Ŷ_g = Y_g/‖Y_g‖_F (gaps + 1, B, k, k) in the model's dtype.
    """
    steps, batch, n = op.steps, op.batch, op.size
    k, dtype, device = y0.shape[1], op.dtype, op.device
    lo, hi = _safe_range(dtype)
    log_norm = torch.empty(gaps + 1, batch, dtype=torch.float64, device=device)
    grams = torch.empty(gaps + 1, batch, k, k, dtype=dtype, device=device)
    norm0 = torch.linalg.vector_norm(y0, dim=(1, 2))
    y = y0 / norm0.view(batch, 1, 1)
    log_norm[0] = torch.log(norm0.to(torch.float64))
    torch.bmm(y, y.transpose(1, 2), out=grams[0])
    size = min(SKETCH_CHUNK, max(gaps, 1))
    chunk = torch.empty(size, batch, k, n, dtype=dtype, device=device)
    blocks = chunk.unbind(0)  # views, made once
    g = 1
    while g <= gaps:
        c = min(size, gaps + 1 - g)
        out = chunk[:c]
        base = log_norm[g - 1]
        dead = torch.isneginf(base)
        for every in (c, 1):
            offset = torch.zeros(c, batch, dtype=torch.float64, device=device)
            prev, run = y, torch.zeros(batch, dtype=torch.float64, device=device)
            for j in range(c):  # gap g + j: Y ← Y J_{T−g−j} (= (Y ⊙ φ'(a_{T−g−j})) W)
                prev = op.vjp(prev, steps - g - j, out=blocks[j])
                if every == 1:
                    nrm = torch.linalg.vector_norm(prev, dim=(1, 2))
                    prev.div_(torch.where(nrm > 0, nrm, torch.ones_like(nrm)).view(batch, 1, 1))
                    run = run + torch.log(nrm.to(torch.float64))
                    offset[j] = run
            flat, gram = out.view(c * batch, k, n), grams[g:g + c]
            torch.bmm(flat, flat.transpose(1, 2), out=gram.view(c * batch, k, k))
            sq = gram.diagonal(dim1=2, dim2=3).sum(2)  # ‖Y_g‖_F², (c, B)
            if every == 1 or bool((((sq >= lo * lo) & (sq <= hi * hi)) | dead).all()):
                break
        # after a redone chunk the next ones are shorter, then grow back while they fit
        size = max(c // 4, 1) if every == 1 and c > 1 else min(2 * size, chunk.shape[0])
        sq_safe = torch.where(sq > 0, sq, torch.ones_like(sq))
        gram.div_(sq_safe.view(c, batch, 1, 1))
        log_norm[g:g + c] = base + offset + 0.5 * torch.log(sq.to(torch.float64))
        y = blocks[c - 1] / sq_safe[c - 1].sqrt().view(batch, 1, 1)
        g += c
    return log_norm, grams


def _rayleigh(gram: Tensor, powered: Tensor) -> tuple[Tensor, Tensor]:
    """Rayleigh quotient ρ of each ``gram`` at the column of ``powered`` with the largest diagonal
    entry, and whether ρ is certified to be λ_max to within the dtype's rounding (float64 ρ, bool).

    Certified (Kato–Temple): with r = Gv − ρv, ε² = ‖r‖²/‖v‖² and every other eigenvalue of a PSD
    G at most trace − λ_max ≤ trace − ρ, a ρ > trace/2 has λ_max − ρ ≤ ε²/(2ρ − trace); certified
    when that is at most ``eps`` · ρ (``eps`` of the Gram matrices' dtype).
    """
    pick = powered.diagonal(dim1=1, dim2=2).contiguous().argmax(1)
    v = powered[torch.arange(powered.shape[0], device=powered.device), :, pick].to(gram.dtype).unsqueeze(2)
    gv = torch.bmm(gram, v)  # (N, k, 1)
    num = (gv * v).sum((1, 2)).to(torch.float64)
    den = v.square().sum((1, 2)).to(torch.float64).clamp_min(torch.finfo(torch.float64).tiny)
    rho = num / den
    res = torch.linalg.vector_norm(gv.sub_(v * rho.to(gram.dtype).view(-1, 1, 1)), dim=(1, 2)).to(torch.float64)
    trace = gram.diagonal(dim1=1, dim2=2).sum(1).to(torch.float64)
    margin = 2 * rho - trace
    certified = (margin > 0) & (res.square() / den <= torch.finfo(gram.dtype).eps * rho * margin)
    return rho, certified


def _top_eigenvalue(gram: Tensor) -> Tensor:
    """A lower bound of λ_max for a batch of PSD matrices (N, k, k) of unit trace (float64).

    The Rayleigh quotient vᵀGv/vᵀv (≤ λ_max for any v) at v = the column of G^(2^s) with the
    largest diagonal entry (squarings in float32, renormalized to unit trace after every second
    one: they only pick the direction). After each count of squarings in ``GRAM_EARLY_EXITS``
    the quotients that :func:`_rayleigh` certifies to the dtype's rounding are kept (most of
    them: the top eigenvalue of these Gram matrices is usually well separated; at n = 128 on
    the dense tanh model 78% after two squarings) and only the others go on to
    s = ``GRAM_SQUARINGS``. With s = 5 the quotient misses λ_max by at most a
    (λ_i/λ₁)^64-weighted share of the gaps λ₁ − λ_i: below 1e-3 relative, except for
    eigenvalues within 10% of λ₁, which contribute little. Entries below 1e-15 of the trace are
    set to zero before each squaring (denormal floats would make the products many times
    slower; the quotient itself uses the untouched G). No eigendecomposition: a batched LAPACK
    call per gap costs more than the whole sweep. The squarings run in two preallocated
    buffers (``out=``, in place), not a new tensor per op.
    """
    a = gram.to(torch.float32)
    shrunk, squared = torch.empty_like(a), torch.empty_like(a)
    lam, index, done = None, None, 0  # index: where the matrices still going on sit in lam
    for stop in (*GRAM_EARLY_EXITS, GRAM_SQUARINGS):
        for i in range(done, stop):
            if i % 2 == 1:  # λ_max ≥ trace/k: two squarings keep it above k^-4 of the trace
                trace = a.diagonal(dim1=1, dim2=2).sum(1).clamp_min_(torch.finfo(torch.float32).tiny)
                a.div_(trace.view(-1, 1, 1))  # a is ``squared`` here, never the caller's gram
            torch.hardshrink(a, 1e-15, out=shrunk)
            a = torch.bmm(shrunk, shrunk, out=squared)
        done = stop
        rho, certified = _rayleigh(gram, a)
        if lam is None:
            lam, index = rho, torch.arange(rho.shape[0], device=rho.device)
        else:
            lam[index] = rho
        going_on = (~certified).nonzero().squeeze(1)
        if stop == GRAM_SQUARINGS or going_on.numel() == 0:
            break
        index, gram, a = index[going_on], gram[going_on], a[going_on]  # copies: a is no caller's tensor
        shrunk, squared = torch.empty_like(a), a
    return lam


def sketch_norms(op, gaps: int, probes: int, block: int, seed: int) -> tuple[Tensor, Tensor, int, int]:
    """(log spectral lower bound, log Frobenius estimate, k, m) from k carried probe directions.

    ``op``: the view's linearized steps (:mod:`stability.probes.operators`).
    """
    batch, n, device = op.batch, op.size, op.device
    k = min(probes, n)
    m = min(block, k // 2) if gaps > 0 else 0
    gen = torch.Generator(device=device).manual_seed(seed)
    parts = []
    if m > 0:
        parts.append(_forward_frame(op, min(gaps, FRAME_STEPS), m, gen))
    parts.append(torch.randn(batch, n, k - m, generator=gen, dtype=torch.float64, device=device))
    frame = torch.linalg.qr(torch.cat(parts, 2)).Q  # first m columns span the tracked subspace
    y0 = frame.transpose(1, 2).to(op.dtype).contiguous()
    log_norm, grams = _backward_sweep(op, gaps, y0)
    weights = torch.ones(k, dtype=torch.float64, device=device)
    weights[m:] = (n - m) / (k - m)
    diag = grams.diagonal(dim1=2, dim2=3).to(torch.float64)  # (gaps + 1, B, k): squared row norms
    log_fro = log_norm + 0.5 * torch.log((diag * weights).sum(2))
    lam = _top_eigenvalue(grams.view(-1, k, k)).view(gaps + 1, batch)
    log_spec = log_norm + 0.5 * torch.log(lam)
    return log_spec, log_fro, k, m
