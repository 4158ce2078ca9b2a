"""The exponential of a skew-symmetric matrix in the working precision, kept orthogonal.

expm(A) for skew A is orthogonal, and so is every diagonal Padé approximant of it:
r(A) = q(−A)⁻¹ q(A) with q(−A) = q(A)ᵀ (even powers of A are symmetric, odd ones skew),
so r(A) = P⁻ᵀP for P = q(A). :func:`skew_expm` evaluates it by scaling and squaring
(Higham 2005: degree 7 in float32, 13 in float64, with their θₘ bounds), then removes
the rounding left in WᵀW − I by one Newton–Schulz step W + W(I − WᵀW)/2, which squares
that error. Only the residual I − WᵀW (one GEMM, no backward) is formed in float64: in
float32 its own rounding (about n·u) would stay in W. Over 2,000 Adam steps (lr 1e-2,
n = 256, RecurrentNet on a fixed regression) max|WᵀW − I| stayed at 7.9e-8 (measured in
float64) this way (7.3e-8 with the float32 backward below), against 1.9e-5 for
torch.linalg.matrix_exp in float32. The correction is the identity on the tangent space at an
orthogonal W (its derivative there is dW − W·sym(WᵀdW), and dW = W·skew for the exponential),
so the backward goes straight through it to the Padé and squarings: autograd's in float64,
a hand-written one in float32 (:class:`_SkewExpm7`, exact along skew directions).

Cost, forward + backward, in multiples of one n×n GEMM forward + backward (float32, 1 thread,
0 squarings; docs/speed.md, issue 20): 8.2 at n = 256 and 7.2 at 512 (each squaring adds
about 1), against 10.2 and 9.5 with autograd through the same formula, about 40 for
torch.linalg.matrix_exp in float32 (whose backward is the exponential of a 2n×2n block
matrix) and 85 for it in float64.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from .householder import _signature_cached

# Padé degree and its θₘ (the largest ‖2⁻ˢA‖₁ at which r_m meets the unit roundoff), Higham 2005
_PADE = {
    torch.float32: (7, 3.925724783138660),
    torch.float64: (13, 5.371920351148152),
}
_COEFFS = {
    7: (17297280.0, 8648640.0, 1995840.0, 277200.0, 25200.0, 1512.0, 56.0, 1.0),
    13: (64764752532480000.0, 32382376266240000.0, 7771770303897600.0, 1187353796428800.0,
         129060195264000.0, 10559470521600.0, 670442572800.0, 33522128640.0, 1323241920.0,
         40840800.0, 960960.0, 16380.0, 182.0, 1.0),
}


def _norm1(a: Tensor) -> float:
    return float(a.detach().abs().sum(0).max())


def _scaled_powers(a: Tensor, theta: float) -> tuple[int, list[Tensor]]:
    """(s, [B, B², B⁴, B⁶]) for B = 2⁻ˢA with the fewest squarings s whose bound meets θ.

    A first s₀ comes from ‖A‖₁ (overflow-safe); the powers of 2⁻ˢ⁰A then give the tighter
    ρ(A) <= min(‖A²‖₁^½, ‖A⁴‖₁^¼, ‖A⁶‖₁^⅙), which bounds the Padé error for a normal A
    (its error is that of the scalar map on the spectrum), and the powers are scaled back up
    by the squarings this saves (Al-Mohy & Higham 2009 use the same ‖Aᵏ‖^(1/k)).
    """
    norm = _norm1(a)
    s0 = max(0, math.ceil(math.log2(norm / theta))) if norm > theta else 0
    b = a * (2.0 ** -s0) if s0 else a
    b2 = b @ b
    b4 = b2 @ b2
    b6 = b4 @ b2
    rho = min(_norm1(b2) ** 0.5, _norm1(b4) ** 0.25, _norm1(b6) ** (1 / 6))
    spare = 0 if rho == 0 else min(s0, max(0, math.floor(math.log2(theta / rho))))
    if spare:
        f = 2.0 ** spare
        b, b2, b4, b6 = b * f, b2 * f ** 2, b4 * f ** 4, b6 * f ** 6
    return s0 - spare, [b, b2, b4, b6]


def _pade_parts(powers: list[Tensor], degree: int) -> tuple[Tensor, Tensor]:
    """(V, U): the even and odd parts of the Padé numerator q(A) = V + U from A, A², A⁴, A⁶."""
    c = _COEFFS[degree]
    a, a2, a4, a6 = powers
    eye = torch.eye(a.shape[0], dtype=a.dtype, device=a.device)
    if degree == 7:
        u = a @ (c[7] * a6 + c[5] * a4 + c[3] * a2 + c[1] * eye)
        v = c[6] * a6 + c[4] * a4 + c[2] * a2 + c[0] * eye
        return v, u
    u = a @ (a6 @ (c[13] * a6 + c[11] * a4 + c[9] * a2) + c[7] * a6 + c[5] * a4 + c[3] * a2 + c[1] * eye)
    v = a6 @ (c[12] * a6 + c[10] * a4 + c[8] * a2) + c[6] * a6 + c[4] * a4 + c[2] * a2 + c[0] * eye
    return v, u


def squarings_for(a: Tensor) -> int:
    """The squarings :func:`pade_expm` uses for ``a`` (normal, float32 or float64)."""
    return _scaled_powers(a.detach(), _PADE[a.dtype][1])[0]


def _pade_expm(a: Tensor, degree: int, theta: float) -> Tensor:
    s, powers = _scaled_powers(a, theta)
    v, u = _pade_parts(powers, degree)
    w = torch.linalg.solve(v - u, v + u)
    for _ in range(s):
        w = w @ w
    return w


def pade_expm(a: Tensor) -> Tensor:
    """expm(a) for a normal (e.g. skew-symmetric) ``a`` by scaling and squaring of a diagonal
    Padé approximant (float32: degree 7, float64: degree 13); differentiable by autograd.

    The squarings are chosen from a bound on the spectral radius (:func:`_scaled_powers`),
    valid for normal matrices; for skew ``a`` the result is orthogonal up to rounding.
    """
    if a.dtype not in _PADE:
        raise TypeError(f"pade_expm needs float32 or float64, got {a.dtype}")
    return _pade_expm(a, *_PADE[a.dtype])


def _gram_minus_eye(w: Tensor) -> Tensor:
    """WᵀW − I formed in float64, rounded to w's dtype: float32 GEMMs would leave ~n·u in it."""
    wide = w.double()
    gram = wide.mT @ wide
    gram.diagonal().sub_(1.0)
    return gram.to(w.dtype)


@_signature_cached
class _SkewExpm7(torch.autograd.Function):
    """Degree-7 Padé + squarings + Newton–Schulz for a skew ``a``, with a hand-written backward.

    For skew B the even powers and Uₑ (U = B·Uₑ) are symmetric and U is skew, so V − U = Pᵀ
    for P = V + U: one LU of P gives R = P⁻ᵀP and, backward, P⁻¹R̄. The gradient is the
    one along skew directions (the skew part of autograd's, which is all A = S − Sᵀ
    passes on): for skew dB, dR = P⁻ᵀ(dP − dPᵀR), so P̄ = Z − RZᵀ with Z = P⁻¹R̄; the
    adjoint of each symmetric power is needed only through its symmetric part, so each
    product of two symmetric (or symmetric and skew) factors costs one GEMM, not two.
    """

    @staticmethod
    def forward(a: Tensor) -> tuple[Tensor, ...]:
        c = _COEFFS[7]
        s, (b, b2, b4, b6) = _scaled_powers(a, _PADE[torch.float32][1])
        ue = torch.add(b6, b4, alpha=c[5])  # Uₑ = A⁶ + c₅A⁴ + c₃A² + c₁I  (c₇ = 1)
        ue.add_(b2, alpha=c[3])
        ue.diagonal().add_(c[1])
        q = torch.mul(b6, c[6])  # V = c₆A⁶ + c₄A⁴ + c₂A² + c₀I, then Q = V − U = V − Uₑ·A
        q.add_(b4, alpha=c[4])
        q.add_(b2, alpha=c[2])
        q.diagonal().add_(c[0])
        q.addmm_(ue, b, alpha=-1.0)
        p = q.mT  # P = V + U = Qᵀ, column-major as LAPACK takes it (no transposing copies)
        lu, pivots = torch.linalg.lu_factor(p)
        w = torch.linalg.lu_solve(lu, pivots, p, adjoint=True)  # (V − U)⁻¹(V + U) = P⁻ᵀP
        squared = [w]  # R, R², R⁴, ...: the factors of each squaring, R first
        for _ in range(s):
            squared.append(squared[-1] @ squared[-1])
        w = squared.pop()
        # W + W(I − WᵀW)/2: one Newton–Schulz step, the identity on the tangent space; then what
        # the backward needs, returned (non-differentiable) rather than copied, B as None when it is A
        return (torch.addmm(w, w, _gram_minus_eye(w), alpha=-0.5), s, None if b is a else b,
                b2, b4, ue, lu, pivots, *(squared or [w]))

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        (a,) = inputs
        _, s, b, *saved = output
        ctx.mark_non_differentiable(*(saved if b is None else [b, *saved]))
        ctx.set_materialize_grads(False)  # no zero gradients made up for the extra outputs
        ctx.scale = 2.0 ** -s
        ctx.save_for_backward(a if b is None else b, *saved)

    @staticmethod
    def backward(ctx, grad: Tensor | None, *_grad_intermediates) -> Tensor | None:
        if grad is None:  # no gradient reached W (grads are not materialized: see setup_context)
            return None
        c = _COEFFS[7]
        b, b2, b4, ue, lu, pivots, *squared = ctx.saved_tensors
        r = squared[0]  # the Padé result R
        for w in reversed(squared if ctx.scale < 1 else []):  # X = Y²: Ȳ = X̄Yᵀ + YᵀX̄
            grad = torch.addmm(w.mT @ grad, grad, w.mT)
        z = torch.linalg.lu_solve(lu, pivots, grad)  # P⁻¹R̄
        pbar = torch.addmm(z, r, z.mT, alpha=-1.0)  # P̄ = V̄ = Ū = Z − RZᵀ (along skew directions)
        nbar = b @ pbar  # Ūₑ = Bᵀ Ū = −B·P̄
        m6 = torch.add(pbar, nbar, alpha=-c[7] / c[6])  # (c₆V̄ + c₇Ūₑ)/c₆: A⁶'s adjoint
        s6 = m6 + m6.mT  # 2·sym, over c₆
        m4 = torch.add(pbar, nbar, alpha=-c[5] / c[4]).addmm_(s6, b2, beta=c[4], alpha=c[6] / 2)
        s4 = m4 + m4.mT  # A⁴ = A²A² and A⁶ = A⁴A² (commuting symmetric factors)
        m2 = torch.add(pbar, nbar, alpha=-c[3] / c[2]).addmm_(s6, b4, beta=c[2], alpha=c[6] / 2)
        m2.addmm_(s4, b2)
        s2 = m2 + m2.mT
        t = (s2 @ b).addmm_(pbar, ue, beta=-ctx.scale / 2, alpha=ctx.scale / 2)  # B̄ from A² and U
        return t - t.mT


def skew_expm(a: Tensor) -> Tensor:
    """expm(a) for a skew-symmetric ``a`` (n×n, float32 or float64), orthogonal to rounding.

    :func:`pade_expm`, then one Newton–Schulz step W(3I − WᵀW)/2 whose backward is the
    identity (see the module docstring). Other dtypes are computed in float32. In float32
    the gradient is the one along skew directions (``_SkewExpm7``): the skew part of the
    full one, which is all that reaches the parameters of A = S − Sᵀ; first order, torch.func.grad
    and vjp included (not vmap: the squarings are chosen from the values).
    """
    if not isinstance(a, Tensor) or a.dim() != 2 or a.shape[0] != a.shape[1]:
        raise ValueError(f"skew_expm needs a square matrix, got shape {tuple(getattr(a, 'shape', ()))}")
    if a.numel() and (a.diagonal().any() or not torch.equal(a[0], -a[:, 0])):  # a cheap probe, O(n)
        raise ValueError("skew_expm needs a skew-symmetric matrix (a = −aᵀ); its first row or diagonal is not")
    dtype = a.dtype
    if dtype == torch.float64:
        w = pade_expm(a)
        with torch.no_grad():
            correction = torch.mm(w.detach(), _gram_minus_eye(w.detach())).mul_(-0.5)
        return w + correction
    return _SkewExpm7.apply(a.float())[0].to(dtype)
