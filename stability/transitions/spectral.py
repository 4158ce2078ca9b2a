"""The Spectral-RNN transition: W = U Σ Vᵀ with reflector products and bounded singular values.

Zhang, Lei & Dhillon, "Stabilizing Gradients for Deep Neural Networks via Efficient SVD
Parameterization", ICML 2018.

    U = H_n(u_n) ··· H_{n−k+1}(u_{n−k+1}),   V likewise,
    σᵢ = 2r (sigmoid(pᵢ) − ½) + σ*,           so every σᵢ ∈ (σ* − r, σ* + r).

Reflector H_j acts on the last j coordinates: as in the official implementation the
reflector vectors are the rows of an upper-triangular k×n matrix (row j is zero before
column j) and are stored here by those free entries only. The pᵢ start at 0, so W starts
with every σᵢ = σ*. V is materialized by the blocked triangular product
(:func:`~stability.transitions.householder.triangular_householder_product`) and U's
reflectors are applied to Σ Vᵀ block by block (:func:`svd_compose`): building W costs about
two n×n GEMMs' worth of multiply-adds forward and backward, never a reflector per time step.

With k = n the last row holds a single entry, and its "reflector" is diag(1, …, 1, −1)
for any non-zero value (the identity for 0): the paper's H₁ sign choice.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from .base import Transition, check_size, register
from .householder import reflectors_from_orthogonal, triangular_householder_product


def check_margin(margin, center) -> tuple[float, float]:
    """Validate the singular-value band [center − margin, center + margin]."""
    for name, value in (("margin", margin), ("center", center)):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"{name} must be a number, got {value!r}")
    if margin < 0:
        raise ValueError(f"margin={margin} must be >= 0")
    if center - margin <= 0:
        raise ValueError(f"center - margin = {center} - {margin} must be > 0 "
                         f"(singular values must stay positive); allowed: 0 <= margin < center")
    return float(margin), float(center)


def bounded_sigma(p: Tensor, margin: float, center: float) -> Tensor:
    """σ = 2r(sigmoid(p) − ½) + σ*: the paper's map into (σ* − r, σ* + r)."""
    return 2.0 * margin * (torch.sigmoid(p) - 0.5) + center


def sigma_to_p(sigma: Tensor, margin: float, center: float) -> Tensor:
    """Inverse of :func:`bounded_sigma`; raises if a value lies outside the open band."""
    lo, hi = center - margin, center + margin
    bad = (sigma <= lo) | (sigma >= hi) if margin > 0 else (sigma - center).abs() > 1e-12 * center
    if bool(bad.any()):
        raise ValueError(
            f"singular values in [{sigma.min().item():.6g}, {sigma.max().item():.6g}] do not fit "
            f"strictly inside [center - margin, center + margin] = [{lo:.6g}, {hi:.6g}]; "
            f"choose a larger margin or another center")
    if margin == 0:
        return torch.zeros_like(sigma)
    return torch.logit((sigma - center) / (2.0 * margin) + 0.5)


def svd_compose(u_vectors: Tensor, sigma: Tensor, v_vectors: Tensor) -> Tensor:
    """U[:, :r] diag(σ) V[:, :r]ᵀ with U, V reflector products and r = len(σ) (any m×n).

    The reflector vectors are the rows of upper-triangular (k, m) and (k', n) matrices (the
    Spectral-RNN layout; entries below the diagonal are taken as zero). V is built by the
    blocked product (:func:`~stability.transitions.householder.triangular_householder_product`);
    U is never formed: its reflectors are applied to diag(σ) V[:, :r]ᵀ, block by block.
    """
    r = sigma.shape[0]
    m, n = u_vectors.shape[1], v_vectors.shape[1]
    v = triangular_householder_product(v_vectors)[:, :r]
    right = (v * sigma).mT
    if r < m:
        right = torch.cat([right, right.new_zeros(m - r, n)])
    return triangular_householder_product(u_vectors, right)


class TriangularReflectors(nn.Module):
    """k reflector vectors in Rⁿ stored as the free entries of an upper-triangular k×n matrix."""

    def __init__(self, k: int, n: int):
        super().__init__()
        self.k, self.n = k, n
        rows, cols = torch.triu_indices(k, n)
        self.register_buffer("_rows", rows, persistent=False)
        self.register_buffer("_cols", cols, persistent=False)
        self.register_buffer("_flat", rows * n + cols, persistent=False)
        self.values = nn.Parameter(torch.randn(rows.numel()))

    def forward(self) -> Tensor:
        v = self.values
        return v.new_zeros(self.k * self.n).index_copy(0, self._flat, v).view(self.k, self.n)

    @torch.no_grad()
    def set_(self, dense: Tensor) -> None:
        """Take the free entries of a (k, n) upper-triangular matrix."""
        self.values.copy_(dense[self._rows, self._cols])


@register("spectral")
class SpectralTransition(Transition):
    """Spectral-RNN: W = U Σ Vᵀ, k reflectors per factor, σᵢ ∈ [center − margin, center + margin]."""

    def __init__(self, n: int, reflectors: int | None = None, margin: float = 0.01, center: float = 1.0):
        super().__init__(n)
        k = n if reflectors is None else reflectors
        self.reflectors = check_size("reflectors", k, minimum=1, maximum=n)
        self.margin, self.center = check_margin(margin, center)
        self.u = TriangularReflectors(k, n)
        self.v = TriangularReflectors(k, n)
        self.p = nn.Parameter(torch.zeros(n))

    def sigma(self) -> Tensor:
        """The singular values in parameter order (σᵢ pairs with column i of U and V)."""
        return bounded_sigma(self.p, self.margin, self.center)

    def matrix(self) -> Tensor:
        return svd_compose(self.u(), self.sigma(), self.v())

    def singular_values(self) -> Tensor:
        return torch.sort(self.sigma(), descending=True).values

    def options(self) -> dict:
        return {"reflectors": self.reflectors, "margin": self.margin, "center": self.center}

    @classmethod
    def from_matrix(cls, w: Tensor, margin: float | None = None, center: float | None = None) -> "SpectralTransition":
        """The paper's expressivity theorem made constructive: reflectors and Σ reproducing ``w``.

        ``w`` must be square and nonsingular. Without ``margin``/``center`` the band is chosen
        to hold w's singular values: center = (σ_max + σ_min)/2, margin = (σ_max − σ_min)/2 +
        σ_min/4. With a band too narrow for them, a ValueError says so.
        """
        if not isinstance(w, Tensor) or w.dim() != 2 or w.shape[0] != w.shape[1]:
            raise ValueError(f"from_matrix needs a square matrix, got shape {tuple(getattr(w, 'shape', ()))}")
        n = w.shape[0]
        u, s, vh = torch.linalg.svd(w.detach().to(torch.float64))
        if s[-1] <= s[0] * torch.finfo(torch.float64).eps * n:
            raise ValueError(f"from_matrix needs a nonsingular matrix; smallest singular value is {s[-1].item():.3g}")
        if center is None:
            center = float((s[0] + s[-1]) / 2)
        if margin is None:
            margin = float((s[0] - s[-1]) / 2 + s[-1] / 4)
        t = cls(n, reflectors=n, margin=margin, center=center)
        p = sigma_to_p(s, t.margin, t.center)
        t = t.to(dtype=w.dtype, device=w.device)
        with torch.no_grad():
            t.u.set_(reflectors_from_orthogonal(u).to(w.dtype))
            t.v.set_(reflectors_from_orthogonal(vh.mT).to(w.dtype))
            t.p.copy_(p.to(w.dtype))
        return t
