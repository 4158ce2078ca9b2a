"""Jacobian norm decay along a trajectory: ‖∂h_T/∂h_{T−g}‖ for every gap g, and its half-life.

For the recurrence h_t = φ(a_t), a_t = W_in x_t + b + W h_{t−1}, the one-step Jacobian is

    J_t = ∂h_t/∂h_{t−1} = diag(φ'(a_t)) W,

and the Jacobian across a gap of g steps, ending at the last state h_{T−1} (0-based, as in
``hidden_states``), is the product

    P_g = ∂h_{T−1}/∂h_{T−1−g} = J_{T−1} J_{T−2} ··· J_{T−g},   P_0 = I,   P_{g+1} = P_g J_{T−1−g}.

:func:`jacobian_decay` computes the whole curve g = 0..T−1 in one backward sweep over time,
for the whole batch at once, with one of two methods (``method=``; ``"auto"``, the default,
picks the exact one for n <= 32 and the sketch above; ``df.attrs["method"]`` says which ran).

**Exact** (``method="exact"``): P_{g+1} = (P_g · diag(φ'(a_{T−1−g}))) W is a column scaling
and one (B·n × n)·(n × n) matrix product per step (B·n³ flops), never an autograd call per
step. Unscaled, these products underflow (or overflow) float32 long before T = 1000, so
after every step P is divided by its Frobenius norm and the logarithm of that factor is added
to a per-sample running log-scale (kept in float64):

    P̂_g = P_g / ‖P_g‖_F,   log ‖P_g‖_F = Σ_{j ≤ g} log ‖P̂_{j−1} J_{T−j}‖_F,
    log ‖P_g‖₂ = log ‖P_g‖_F + log ‖P̂_g‖₂.

‖P̂_g‖₂ comes either from an exact SVD of the batch at every gap (``spectral="exact"``) or
(default, ``spectral="subspace"``) from block power iteration: an m-dimensional left subspace
(m = 8) is carried from gap to gap and refined by one iteration with Rayleigh–Ritz per gap
(see :class:`_SubspaceTracker`); the first 8 gaps use the SVD. The left singular subspaces of
P_g settle as g grows (new factors enter on the right), so one iteration per gap keeps up.
Single-vector power iteration is not enough: in our checks (n = 128, tanh and relu, every
built-in transition) a warm-started vector with two iterations per gap was off by up to 30%,
and by many orders of magnitude for exprnn and cayley, whose products have near-null spaces
the vector gets stuck in and top singular vectors that jump within pairs of close values.
Exact SVDs of 8 matrices of size 128 cost about ten times the product itself; the tracked
subspace costs about as much as the product (two (B·m × n)·(n × n)-sized products and a few
m-sized factorizations per gap). At n = 128 the exact method costs ~30 times one forward and
backward pass of the model on the same input (CPU).

**Sketch** (``method="sketch"``, ``probes=k``, default 16): instead of P_g, carry the k × n
block Y_g = Fᵀ P_g for a fixed orthonormal n × k frame F, with the same recursion

    Y_{g+1} = (Y_g · diag(φ'(a_{T−1−g}))) W     (one (B·k × n)·(n × n) product per step),

rescaled the same way (per sample, in float32 if that is the model's dtype, the log-scale in
float64; here every 32 steps, with a per-step fallback when a chunk leaves the safe range).
Cost: B·n²·(k + m·256/T) flops per step instead of B·n³, about 2.8 times one forward and
backward pass at n = 128, T = 1000, B = 8 on 2 CPU cores (a quarter of it is the forward
pass that gives the trajectory; the sweep's k-row products are the floor: at k = 16 they
alone cost ~1.2 forward + backward passes). Only a right-multiplied recursion fits one
sweep, so F is fixed for the whole sweep: the sketch sees P_g only through span(F). F is

- m = min(block, k // 2) directions tracking the top left singular subspace of the products
  that end at h_{T−1}: a forward block power iteration (QR every 16 steps) of a random
  m-frame through J_{T−L}, ..., J_{T−1}, L = min(max_gap, 256) (:func:`_forward_frame`;
  the randomized range finder of P_L, which for g ≳ 30 also holds the top of P_g: the left
  singular subspaces settle as new factors enter on the right), and
- k − m directions of a uniformly random (Haar) frame of the complement of those, drawn
  from a generator seeded with ``seed`` (deterministic; the global RNG is untouched).

*Frobenius*: with U the tracked m-frame and Z the complement frame (n' = n − m),

    est_g = ‖Uᵀ P_g‖_F² + (n'/(k − m)) · ‖Zᵀ P_g‖_F²,     E[est_g] = ‖P_g‖_F²,

unbiased for any U (Z is Haar in U's complement; Hutch++-style deflation). With a_i the
eigenvalues of the complement part C = P_gᵀ(I − UUᵀ)P_g (Σa_i = ‖(I − UUᵀ)P_g‖_F²), the
estimator's variance is exactly

    Var = (2/(k − m)) · n'(n' − k + m)/((n' + 2)(n' − 1)) · (Σa_i² − (Σa_i)²/n'),

so its relative standard deviation is at most sqrt(2/(k − m)) · ρ_g ≤ sqrt(2/(k − m)) (= 0.5
at the default k = 16, m = 8), where ρ_g is the share of ‖P_g‖_F² outside the tracked
subspace, and 0 when the complement spectrum is flat (an orthogonal P_g gives √n exactly). A
Gaussian sketch ‖GᵀP‖_F²/k would have sqrt(2/k) · ‖PᵀP‖_F/‖P‖_F² at every gap, and
variance even for orthogonal P. In practice the tracked subspace holds most of the mass:
at n = 128, T = 1000 (7 models: dense tanh/relu, spectral, householder, exprnn, cayley,
dense normal with radius 1.5) the squared-norm ratio deviated from 1 by 0.6–1.6% rms over
all gaps and by at most 8–19% at the worst gap; at n = 64, T = 200 by at most 16% (dense,
spectral) and up to a factor 2.2 at a few gaps of exprnn. Mean log-ratios are within ±0.02.

*Spectral*: the largest singular value of the carried block with orthonormal rows,
‖Fᵀ P_g‖₂ = max over unit u ∈ span(F) of ‖uᵀ P_g‖ ≤ ‖P_g‖₂: a lower bound (up to float
rounding), from the k × k Gram matrices Ŷ_g Ŷ_gᵀ (one batched product per chunk) by a
Rayleigh quotient at a power-iterated vector (:func:`_top_eigenvalue`, within ~1e-5 of
λ_max at 99% of gaps, 8e-3 at the worst). It is as good as the frame's overlap with the
top left singular vector of P_g. In our checks (float64 against SVDs of the exact
products): at n = 128, T = 1000 (the 7 models above) the median gap is exact to 2e-4 in
log, 90% of (gap, sample) pairs within 0.3%, 95% within 4%; the worst gaps are short ones
(g < 32, where the top direction of P_g is not yet the settled one): 0.23–0.88 below in log
(factor 0.8–0.4), and at g ≥ 32 at most 0.11 below. At n = 64, T = 200 (4 models × 3 seeds)
92–98% of pairs are within 5% for dense and spectral, 82–97% for exprnn, whose products
have top directions that jump between close singular values (worst 1.16 below in log). The
spectral *decay rate* (the slope that :func:`half_life` fits) is barely affected. Without
the tracked subspace (a random frame only) the bound would sit ~0.7 below in log (a factor
2) at nearly every gap: a random k-frame holds only ~k/n of the top direction. ``probes >= n``
makes the frame complete (F is then an orthogonal matrix): the Frobenius norm is exact and
the spectral norm exact up to the Rayleigh-quotient step, at the exact method's cost.

The duck-typed model contract (every probe in :mod:`stability.probes` uses it): the model
needs

- ``model.transition.matrix()`` → W, the (n, n) recurrent matrix (in the model's dtype and device);
- ``model.activation_derivative(hidden_states)`` → φ'(a_t), same shape as the states (T, B, n);
- ``model(x, h0)`` → ``(outputs, hidden_states)`` with hidden_states (T, B, n), h0 either None
  (zeros) or (B, n).

:class:`~stability.model.RecurrentNet` satisfies it for every registered transition; a linear
network (φ = identity, φ' ≡ 1) needs only those three members.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from ..transitions.base import check_size as check_int

__all__ = ["jacobian_decay", "half_life", "check_model", "check_sequence", "trajectory"]

METHODS = ("auto", "exact", "sketch")
SPECTRAL_METHODS = ("subspace", "exact")


# ---------------------------------------------------------------------------------------
# shared checks (used by every probe)
# ---------------------------------------------------------------------------------------
def check_model(model, name: str = "model") -> Tensor:
    """Check the duck-typed model contract; return W = model.transition.matrix() (detached).

    Raises a TypeError naming what is missing.
    """
    transition = getattr(model, "transition", None)
    missing = []
    if transition is None or not callable(getattr(transition, "matrix", None)):
        missing.append(".transition.matrix()")
    if not callable(getattr(model, "activation_derivative", None)):
        missing.append(".activation_derivative(hidden_states)")
    if not callable(model):
        missing.append("__call__(x, h0) -> (outputs, hidden_states)")
    if missing:
        raise TypeError(f"{name} must be a recurrent model (e.g. stability.RecurrentNet) with "
                        f".transition.matrix(), .activation_derivative(hidden_states) and "
                        f"model(x, h0) -> (outputs, hidden_states); {type(model).__name__} lacks "
                        f"{', '.join(missing)}")
    with torch.no_grad():
        w = transition.matrix()
    if not isinstance(w, Tensor) or w.dim() != 2 or w.shape[0] != w.shape[1] or w.shape[0] < 1:
        raise TypeError(f"{name}.transition.matrix() must return a square (n, n) tensor, got "
                        f"{type(w).__name__} of shape {tuple(getattr(w, 'shape', ()))}")
    if not w.is_floating_point():
        raise TypeError(f"{name}.transition.matrix() must be floating point, got {w.dtype}")
    return w.detach()


def check_sequence(x, name: str = "x", min_steps: int = 2) -> tuple[int, int]:
    """Check an input sequence: float (T, B, I) or integer token ids (T, B); return (T, B)."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape (T, B, input_size) or integer "
                        f"token ids (T, B), got {type(x).__name__}")
    if x.is_floating_point():
        if x.dim() != 3:
            raise ValueError(f"{name} must have shape (T, B, input_size), got {tuple(x.shape)}")
    elif x.dtype in (torch.int64, torch.int32):
        if x.dim() != 2:
            raise ValueError(f"{name} holds token ids and must have shape (T, B), got {tuple(x.shape)}")
    else:
        raise TypeError(f"{name} must be floating point (T, B, input_size) or int64/int32 token ids "
                        f"(T, B), got dtype {x.dtype}")
    steps, batch = int(x.shape[0]), int(x.shape[1])
    if steps < min_steps:
        raise ValueError(f"{name} has T={steps} steps; allowed: T >= {min_steps} "
                         f"(a probe along a trajectory needs at least {min_steps} states)")
    if batch < 1:
        raise ValueError(f"{name} has batch size B={batch}; allowed: B >= 1")
    return steps, batch


def check_h0(h0, batch: int, w: Tensor, name: str = "h0") -> None:
    if h0 is None:
        return
    n = w.shape[0]
    if not isinstance(h0, Tensor):
        raise TypeError(f"{name} must be None or a tensor of shape (B={batch}, n={n}), got {type(h0).__name__}")
    if tuple(h0.shape) != (batch, n):
        raise ValueError(f"{name} must have shape (B={batch}, n={n}), got {tuple(h0.shape)}")


def trajectory(model, x: Tensor, h0: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """(W, hidden_states, φ'(a_t)) for the model's trajectory on x, all detached (no grad).

    Validates the model, x and h0 first (see the module docstring for the contract).
    """
    w = check_model(model)
    steps, batch = check_sequence(x)
    check_h0(h0, batch, w)
    with torch.no_grad():
        out = model(x, h0)
        if not (isinstance(out, (tuple, list)) and len(out) == 2):
            raise TypeError(f"model(x, h0) must return (outputs, hidden_states), got {type(out).__name__}")
        states = out[1]
        n = w.shape[0]
        if not isinstance(states, Tensor) or tuple(states.shape) != (steps, batch, n):
            raise TypeError(f"model(x, h0) returned hidden_states of shape "
                            f"{tuple(getattr(states, 'shape', ()))}; expected (T, B, n) = {(steps, batch, n)}")
        deriv = model.activation_derivative(states)
        if not isinstance(deriv, Tensor) or deriv.shape != states.shape:
            raise TypeError(f"model.activation_derivative(hidden_states) must return a tensor of shape "
                            f"{tuple(states.shape)}, got {tuple(getattr(deriv, 'shape', ()))}")
    return w, states.detach(), deriv.detach().to(w.dtype)


# ---------------------------------------------------------------------------------------
# Jacobian norm decay
# ---------------------------------------------------------------------------------------
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


def _exact_norms(w: Tensor, deriv: Tensor, gaps: int, spectral: str, block: int,
                 iters: int) -> tuple[Tensor, Tensor]:
    """(log ‖P_g‖₂, log ‖P_g‖_F), each (gaps + 1, B) float64, from the full products P_g."""
    steps, batch, n = deriv.shape
    dtype, device = w.dtype, w.device
    exact = spectral == "exact" or n <= 2 * block
    log_fro = torch.empty(gaps + 1, batch, dtype=torch.float64, device=device)
    log_spec = torch.empty(gaps + 1, batch, dtype=torch.float64, device=device)
    p = torch.eye(n, dtype=dtype, device=device).div_(math.sqrt(n)).expand(batch, n, n).contiguous()
    scaled = torch.empty_like(p)
    scale = torch.full((batch,), 0.5 * math.log(n), dtype=torch.float64, device=device)
    tracker = None if exact else _SubspaceTracker(batch, n, block, dtype, device)
    for g in range(gaps + 1):
        if g > 0:  # P_g = P_{g−1} diag(φ'(a_{T−g})) W, then rescale to unit Frobenius norm
            torch.mul(p, deriv[steps - g].unsqueeze(1), out=scaled)
            torch.mm(scaled.view(batch * n, n), w, out=p.view(batch * n, n))
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


# ---------------------------------------------------------------------------------------
# the sketch: k probe directions instead of the full product
# ---------------------------------------------------------------------------------------
#: ``method="auto"`` uses the exact products up to this width, the sketch above it
AUTO_EXACT_MAX_N = 32
#: gaps per chunk of the sketch's backward sweep: the carried block is rescaled at chunk
#: ends only (one norm, one Gram product and one range check per chunk, not per step)
SKETCH_CHUNK = 32
#: steps between re-orthonormalizations (QR) of the forward-tracked subspace
FRAME_QR_EVERY = 16
#: the forward-tracked subspace is swept over the last min(max_gap, FRAME_STEPS) steps
FRAME_STEPS = 256
#: squarings of the normalized Gram matrices that pick the vector of the Rayleigh quotient
GRAM_SQUARINGS = 5


def _safe_range(dtype) -> tuple[float, float]:
    """How far a block's norm may drift between rescalings without losing precision."""
    info = torch.finfo(dtype)
    return info.tiny ** 0.4, info.max ** 0.4


def _orthonormal_rows(rows: Tensor) -> Tensor:
    """Orthonormal rows (B, m, n) spanning the rows of ``rows`` (a batched QR of their transpose)."""
    return torch.linalg.qr(rows.transpose(1, 2)).Q.transpose(1, 2).contiguous()


def _random_rows(batch: int, n: int, m: int, gen: torch.Generator, w: Tensor) -> Tensor:
    """m random orthonormal rows per sample (B, m, n), drawn in float64, in W's dtype and device."""
    q = torch.randn(batch, n, m, generator=gen, dtype=torch.float64, device=w.device)
    return _orthonormal_rows(q.transpose(1, 2)).to(w.dtype)


def _forward_frame(w: Tensor, deriv: Tensor, length: int, m: int, gen: torch.Generator) -> Tensor:
    """Orthonormal (B, n, m) basis of span(J_{T−1} ··· J_{T−length} Q₀), Q₀ random (float64).

    Block power iteration forward in time (the QR method of Lyapunov analysis): it converges
    to the top-m left singular subspace of the long products P_g that end at h_{T−1}.
    Rows are carried ((B, m, n), r ← (r Wᵀ) ⊙ φ'(a_t)) and re-orthonormalized every
    ``FRAME_QR_EVERY`` steps; a segment that leaves the safe range is redone with a QR per step.
    """
    steps, batch, n = deriv.shape
    lo, hi = _safe_range(w.dtype)
    q = _random_rows(batch, n, m, gen, w)
    wt, buf = w.t(), torch.empty_like(q)
    d = deriv.unsqueeze(2).unbind(0)  # (B, 1, n) per step
    t = steps - length
    while t < steps:
        end = min(t + FRAME_QR_EVERY, steps)
        start = q
        for every in (end - t, 1):
            q = start.clone()
            for s in range(t, end):
                torch.mm(q.view(batch * m, n), wt, out=buf.view(batch * m, n))
                torch.mul(buf, d[s], out=q)
                if every == 1 and s < end - 1:
                    q = _orthonormal_rows(q)
            top = torch.linalg.vector_norm(q, dim=2).amax(1)
            if bool(((top >= lo) & (top <= hi)).all()):
                break
        q = _orthonormal_rows(q)
        if not bool(torch.isfinite(q).all()):  # a product that over- or underflowed even step by step
            q = _random_rows(batch, n, m, gen, w)
        t = end
    return q.transpose(1, 2).to(torch.float64)


def _backward_sweep(w: Tensor, deriv: Tensor, gaps: int, y0: Tensor) -> tuple[Tensor, Tensor]:
    """Carry Y_g = Fᵀ P_g (rows, (B, k, n)) for g = 0..gaps; return (log ‖Y_g‖_F, Ŷ_g Ŷ_gᵀ).

    Y_{g+1} = (Y_g ⊙ φ'(a_{T−1−g})) W: one (B·k × n)·(n × n) product per step. The block is
    rescaled at the end of every chunk of ``SKETCH_CHUNK`` steps, by the norms that the
    chunk's Gram matrices Y_g Y_gᵀ (one batched product per chunk) hold on their diagonals; a
    chunk in which some sample's norm leaves the safe range (float32: 1e±15 from the chunk's
    start) is redone with a rescaling after every step, so no product under- or overflows.
    Returns the log of the Frobenius norms (gaps + 1, B) in float64 and the Gram matrices of
    the normalized blocks Ŷ_g = Y_g/‖Y_g‖_F (gaps + 1, B, k, k) in the model's dtype.
    """
    steps, batch, n = deriv.shape
    k = y0.shape[1]
    lo, hi = _safe_range(w.dtype)
    log_norm = torch.empty(gaps + 1, batch, dtype=torch.float64, device=w.device)
    grams = torch.empty(gaps + 1, batch, k, k, dtype=w.dtype, device=w.device)
    norm0 = torch.linalg.vector_norm(y0, dim=(1, 2))
    y = y0 / norm0.view(batch, 1, 1)
    log_norm[0] = torch.log(norm0.to(torch.float64))
    torch.bmm(y, y.transpose(1, 2), out=grams[0])
    size = min(SKETCH_CHUNK, max(gaps, 1))
    chunk = torch.empty(size, batch, k, n, dtype=w.dtype, device=w.device)
    blocks, rows = chunk.unbind(0), chunk.view(size, batch * k, n).unbind(0)  # views, made once
    tmp = torch.empty_like(y)
    tmp_rows = tmp.view(batch * k, n)
    d = deriv.unsqueeze(2).unbind(0)
    g = 1
    while g <= gaps:
        c = min(size, gaps + 1 - g)
        out = chunk[:c]
        base = log_norm[g - 1]
        dead = torch.isneginf(base)
        for every in (c, 1):
            offset = torch.zeros(c, batch, dtype=torch.float64, device=w.device)
            prev, run = y, torch.zeros(batch, dtype=torch.float64, device=w.device)
            for j in range(c):  # gap g + j: Y ← (Y ⊙ φ'(a_{T−g−j})) W
                torch.mul(prev, d[steps - g - j], out=tmp)
                torch.mm(tmp_rows, w, out=rows[j])
                prev = blocks[j]
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


def _top_eigenvalue(gram: Tensor) -> Tensor:
    """A lower bound of λ_max for a batch of PSD matrices (N, k, k) of unit trace (float64).

    The Rayleigh quotient vᵀGv/vᵀv (≤ λ_max for any v) at v = the column of G^(2^s) with the
    largest diagonal entry (s = ``GRAM_SQUARINGS`` squarings in float32, renormalized to unit
    trace after every second one: they only pick the direction). With s = 5 the quotient
    misses λ_max by at most a (λ_i/λ₁)^64-weighted share of the gaps λ₁ − λ_i: below 1e-3
    relative, except for eigenvalues within 10% of λ₁, which contribute little. Entries
    below 1e-15 of the trace are set to zero before each squaring (denormal floats would make
    the products many times slower; the quotient itself uses the untouched G). No
    eigendecomposition: a batched LAPACK call per gap costs more than the whole sweep.
    """
    shrink = torch.nn.functional.hardshrink
    a = gram.to(torch.float32)
    for i in range(GRAM_SQUARINGS):
        if i % 2 == 1:  # λ_max ≥ trace/k: two squarings keep it above k^-4 of the trace
            trace = a.diagonal(dim1=1, dim2=2).sum(1).clamp_min(torch.finfo(torch.float32).tiny)
            a = a / trace.view(-1, 1, 1)
        a = shrink(a, 1e-15)
        a = torch.bmm(a, a)
    pick = a.diagonal(dim1=1, dim2=2).contiguous().argmax(1)
    v = a[torch.arange(a.shape[0], device=a.device), :, pick].to(gram.dtype).unsqueeze(2)  # (N, k, 1)
    num = torch.bmm(gram, v).mul_(v).sum((1, 2)).to(torch.float64)
    den = v.square().sum((1, 2)).to(torch.float64)
    return num / den.clamp_min(torch.finfo(torch.float64).tiny)


def _sketch_norms(w: Tensor, deriv: Tensor, gaps: int, probes: int, block: int,
                  seed: int) -> tuple[Tensor, Tensor, int, int]:
    """(log spectral lower bound, log Frobenius estimate, k, m) from k carried probe directions."""
    steps, batch, n = deriv.shape
    k = min(probes, n)
    m = min(block, k // 2) if gaps > 0 else 0
    gen = torch.Generator(device=w.device).manual_seed(seed)
    parts = []
    if m > 0:
        parts.append(_forward_frame(w, deriv, min(gaps, FRAME_STEPS), m, gen))
    parts.append(torch.randn(batch, n, k - m, generator=gen, dtype=torch.float64, device=w.device))
    frame = torch.linalg.qr(torch.cat(parts, 2)).Q  # first m columns span the tracked subspace
    y0 = frame.transpose(1, 2).to(w.dtype).contiguous()
    log_norm, grams = _backward_sweep(w, deriv, gaps, y0)
    weights = torch.ones(k, dtype=torch.float64, device=w.device)
    weights[m:] = (n - m) / (k - m)
    diag = grams.diagonal(dim1=2, dim2=3).to(torch.float64)  # (gaps + 1, B, k): squared row norms
    log_fro = log_norm + 0.5 * torch.log((diag * weights).sum(2))
    lam = _top_eigenvalue(grams.view(-1, k, k)).view(gaps + 1, batch)
    log_spec = log_norm + 0.5 * torch.log(lam)
    return log_spec, log_fro, k, m


def jacobian_decay(model, x: Tensor, h0: Tensor | None = None, *, max_gap: int | None = None,
                   method: str = "auto", probes: int = 16, seed: int = 0,
                   spectral: str = "subspace", block: int = 8, iters: int = 1) -> pd.DataFrame:
    """Norms of ∂h_{T−1}/∂h_{T−1−g} for every gap g = 0..T−1 and every sequence of the batch.

    Args:
        model: a :class:`~stability.model.RecurrentNet` or any model with the duck-typed
            contract of this module (``.transition.matrix()``, ``.activation_derivative()``,
            ``model(x, h0) -> (outputs, hidden_states)``).
        x: inputs (T, B, input_size), or integer token ids (T, B); T >= 2.
        h0: initial state (B, n) or None (zeros).
        max_gap: largest gap to measure (default T − 1, the whole curve); the cost is
            proportional to it.
        method: ``"exact"``: the full products P_g (B·n³ per step); ``"sketch"``: ``probes``
            carried directions (B·n²·(probes + block) per step, see the module docstring);
            ``"auto"`` (default): exact when n <= 32 (``AUTO_EXACT_MAX_N``) or when
            ``spectral="exact"`` is asked for, the sketch otherwise.
        probes: the sketch's number k of carried directions (>= 1; k >= n makes it exact):
            min(block, k // 2) of them track the top left singular subspace, the rest are a
            random frame of its complement for the Frobenius estimate.
        seed: seeds the sketch's random directions (the result is deterministic for a seed;
            the global RNG is untouched).
        spectral: exact method only: how ‖P_g‖₂ is computed. ``"subspace"`` (default): exact
            SVDs for the first 8 gaps, then a tracked ``block``-dimensional subspace with
            ``iters`` block-power iterations per gap (8 below gap 32, 2 below gap 128) and
            Rayleigh–Ritz: a lower bound that agreed with the SVD to float32 rounding (~3e-7
            relative) at most gaps and within 2e-4 at the worst of all gaps in our checks
            (n = 64..256, T up to 1000, every built-in transition, tanh and relu).
            ``"exact"``: a batched SVD at every gap (4–7 times the cost of the default at
            n = 128 on a CPU). When n <= 2·block the SVD is used throughout.
        block: the tracked subspace's dimension m (>= 2): of the exact method's subspace
            iteration, or (at most probes // 2) of the sketch's forward-tracked subspace.
        iters: exact method only: iterations per gap (>= 1).

    Returns:
        A DataFrame with one row per (gap, sample): ``gap``, ``sample``, ``spectral``
        (‖P_g‖₂), ``frobenius`` (‖P_g‖_F), and their natural logs ``log_spectral``,
        ``log_frobenius`` (finite even where the norms under- or overflow float64).
        Gap 0 is the identity: spectral 1, Frobenius √n (exactly, with either method).
        ``df.attrs`` says which method produced the numbers: ``{"method": "exact",
        "spectral": ...}`` (Frobenius exact, spectral as above) or ``{"method": "sketch",
        "probes": k, "block": m, "seed": seed}`` (spectral a lower bound, Frobenius an
        unbiased estimate of its square; accuracy in the module docstring).

    Runs in the model's dtype and on its device, without autograd; one transfer to the CPU
    at the end builds the frame.
    """
    if method not in METHODS:
        raise ValueError(f"method={method!r} is not known; allowed: {', '.join(map(repr, METHODS))}")
    if spectral not in SPECTRAL_METHODS:
        raise ValueError(f"spectral={spectral!r} is not known; allowed: {', '.join(map(repr, SPECTRAL_METHODS))}")
    if method == "sketch" and spectral == "exact":
        raise ValueError("spectral='exact' needs the full products: use method='exact' (or 'auto')")
    check_int("iters", iters, 1)
    check_int("probes", probes, 1)
    check_int("seed", seed, 0)
    w, _, deriv = trajectory(model, x, h0)
    steps, batch, n = deriv.shape
    check_int("block", block, 2)
    gaps = steps - 1 if max_gap is None else check_int("max_gap", max_gap, 0, steps - 1)
    if method == "auto":
        method = "exact" if n <= AUTO_EXACT_MAX_N or spectral == "exact" else "sketch"
    with torch.no_grad():
        if method == "exact":
            log_spec, log_fro = _exact_norms(w, deriv, gaps, spectral, block, iters)
            attrs = {"method": "exact", "spectral": spectral}
        else:
            log_spec, log_fro, k, m = _sketch_norms(w, deriv, gaps, probes, block, seed)
            attrs = {"method": "sketch", "probes": k, "block": m, "seed": seed}
    log_fro, log_spec = log_fro.cpu(), log_spec.cpu()
    df = pd.DataFrame({
        "gap": torch.arange(gaps + 1).repeat_interleave(batch).numpy(),
        "sample": torch.arange(batch).repeat(gaps + 1).numpy(),
        "spectral": log_spec.exp().reshape(-1).numpy(),
        "frobenius": log_fro.exp().reshape(-1).numpy(),
        "log_spectral": log_spec.reshape(-1).numpy(),
        "log_frobenius": log_fro.reshape(-1).numpy(),
    })
    df.attrs.update(attrs)
    return df


def half_life(df: pd.DataFrame, norm: str = "spectral", *, tol: float = 1e-6) -> dict:
    """Decay rate per step and gradient half-life (in steps) fitted to a :func:`jacobian_decay` frame.

    With ℓ_g the mean over samples of log ‖P_g‖ (the log of the geometric mean), a least-squares
    line ℓ_g ≈ c − ρ g over every gap in the frame gives

        decay_rate = ρ   (per step; > 0 decays, < 0 explodes),
        half_life  = ln 2 / ρ   for ρ > 0, else inf (the norm never halves).

    A fit whose total change |ρ|·(g_max − g_min) is below ``tol`` counts as flat: rate 0,
    half-life inf. A norm that reaches exactly 0 (e.g. every relu unit off) gives rate inf,
    half-life 0.

    Args:
        df: the frame from :func:`jacobian_decay` (``gap`` and ``log_<norm>`` or ``<norm>``
            columns).
        norm: ``"spectral"`` or ``"frobenius"``.
    Returns:
        ``{"decay_rate": float, "half_life": float}``.
    """
    if norm not in ("spectral", "frobenius"):
        raise ValueError(f"norm={norm!r} is not known; allowed: 'spectral', 'frobenius'")
    if not isinstance(df, pd.DataFrame) or "gap" not in df.columns:
        raise TypeError(f"df must be a DataFrame from jacobian_decay (with a 'gap' column), got {type(df).__name__}")
    col = f"log_{norm}"
    if col in df.columns:
        logs = df[col].astype(float)
    elif norm in df.columns:
        with np.errstate(divide="ignore"):
            logs = pd.Series(np.log(df[norm].to_numpy(dtype=float)), index=df.index)
    else:
        raise ValueError(f"df has neither {col!r} nor {norm!r} columns; columns: {', '.join(map(str, df.columns))}")
    curve = logs.groupby(df["gap"]).mean().sort_index()
    if len(curve) < 2:
        raise ValueError(f"df holds {len(curve)} gap(s); fitting a decay rate needs at least 2")
    g = curve.index.to_numpy(dtype=float)
    y = curve.to_numpy(dtype=float)
    if np.isnan(y).any():
        raise ValueError("df holds NaN log-norms; cannot fit a decay rate")
    if (y == -np.inf).any():
        return {"decay_rate": math.inf, "half_life": 0.0}
    if (y == np.inf).any():
        return {"decay_rate": -math.inf, "half_life": math.inf}
    gc = g - g.mean()
    slope = float((gc * (y - y.mean())).sum() / (gc * gc).sum())
    rate = -slope
    if abs(rate) * float(g.max() - g.min()) < tol:
        return {"decay_rate": 0.0, "half_life": math.inf}
    return {"decay_rate": rate, "half_life": math.log(2.0) / rate if rate > 0 else math.inf}
