"""The Spectral-RNN transition: W = U Σ Vᵀ with reflector products and bounded singular values.

Zhang, Lei & Dhillon, "Stabilizing Gradients for Deep Neural Networks via Efficient SVD
Parameterization", ICML 2018.

    U = H_n(u_n) ··· H_{n−k+1}(u_{n−k+1}),   V likewise,
    σᵢ = 2r (sigmoid(pᵢ) − ½) + σ*,           so every σᵢ ∈ (σ* − r, σ* + r).

Reflector H_j acts on the last j coordinates: as in the official implementation the
reflector vectors are the rows of an upper-triangular k×n matrix (row j is zero before
column j) and are stored here by those free entries only. The pᵢ start at 0, so W starts
with every σᵢ = σ*. :meth:`SpectralTransition.matrix` builds W in one autograd Function
(:func:`~stability.transitions.wy.spectral_matrix`): the free entries go straight into the
padded block layout, and U's and V's blocks act on diag(σ) from both sides at once, from the
last block to the first (about 4n³/3 multiply-adds forward for k = n, twice that backward),
never a reflector per time step. :func:`svd_compose` is the general form (any m×n, dense
reflector matrices; used by :class:`~stability.constrained.SpectralMatrix`): V by the blocked
triangular product, then U's blocks applied to Σ Vᵀ.

With k = n the last row holds a single entry, and its "reflector" is diag(1, …, 1, −1)
for any non-zero value (the identity for 0): the paper's H₁ sign choice.

**Re-normalization** (``renormalize=True``, the default, as the official training loop does
after every optimizer step, ``code/rnn.py``): every reflector row starts at unit length and
is scaled back to unit length by :meth:`SpectralTransition.after_step`. A reflector does not
depend on the length of its vector, so W is unchanged; what changes is the optimizer's
step: rows of length ≈ √(n − i) (random normal entries, left alone) make one Adam step move
W several times less (6.5–7.4× at n = 64, docs/protocols.md). ``renormalize=False`` keeps the
rows as the optimizer leaves them.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from .base import Transition, check_bool, check_size, check_square, register
from .householder import normalize_rows, reflectors_from_orthogonal, triangular_householder_product
from .wy import spectral_matrix


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
        smin, smax = sigma.min().item(), sigma.max().item()
        outside = max(lo - smin, smax - hi, 0.0)
        raise ValueError(
            f"singular values in [{smin:.6g}, {smax:.6g}] do not fit "
            f"strictly inside [center - margin, center + margin] = [{lo:.6g}, {hi:.6g}] "
            f"(the farthest lies {outside:.3g} outside the band); choose a larger margin or another center")
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
        return self.dense(self.values)

    def dense(self, values: Tensor) -> Tensor:
        """The (k, n) upper-triangular matrix holding free entries ``values``."""
        flat = self._flat.to(values.device)
        return values.new_zeros(self.k * self.n).index_copy(0, flat, values).view(self.k, self.n)

    def entries(self, dense: Tensor) -> Tensor:
        """The free entries of a (k, n) matrix (its upper triangle), in storage order."""
        return dense[self._rows.to(dense.device), self._cols.to(dense.device)]

    @torch.no_grad()
    def set_(self, dense: Tensor) -> None:
        """Take the free entries of a (k, n) upper-triangular matrix."""
        self.values.copy_(self.entries(dense))

    @torch.no_grad()
    def normalize_(self) -> None:
        """Scale every non-zero row to unit length (zero rows, identity reflectors, stay zero)."""
        self.set_(normalize_rows(self()))


@register("spectral")
class SpectralTransition(Transition):
    """Spectral-RNN: W = U Σ Vᵀ, k reflectors per factor, σᵢ ∈ [center − margin, center + margin].

    Options: ``reflectors`` k (default n; the official code's default is n // 4), ``margin``
    r and ``center`` σ*, ``renormalize`` (unit-length reflector rows at the start and after
    every optimizer step: the official training protocol), ``init_from``/``init_options``
    (start from another transition's initial W, see :meth:`Transition.start_from`; needs a
    band that holds its singular values and, in general, k = n).
    """

    def __init__(self, n: int, reflectors: int | None = None, margin: float = 0.01, center: float = 1.0,
                 renormalize: bool = True, init_from: str | None = None, init_options: dict | None = None):
        super().__init__(n)
        k = n if reflectors is None else reflectors
        self.reflectors = check_size("reflectors", k, minimum=1, maximum=n)
        self.margin, self.center = check_margin(margin, center)
        self.renormalize = check_bool("renormalize", renormalize)
        source = self.start_from(init_from, init_options)
        with torch.random.fork_rng(devices=[], enabled=source is not None):
            self.u = TriangularReflectors(k, n)
            self.v = TriangularReflectors(k, n)
        self.p = nn.Parameter(torch.zeros(n))
        if self.renormalize:
            self.after_step()
        self.finish_start(source)

    def sigma(self) -> Tensor:
        """The singular values in parameter order (σᵢ pairs with column i of U and V)."""
        return bounded_sigma(self.p, self.margin, self.center)

    def matrix(self) -> Tensor:
        return spectral_matrix(self.u.values, self.sigma(), self.v.values, self.reflectors)

    def singular_values(self) -> Tensor:
        return torch.sort(self.sigma(), descending=True).values

    @torch.no_grad()
    def after_step(self) -> None:
        """With ``renormalize``: scale every reflector row of U and V back to unit length (W unchanged)."""
        if self.renormalize:
            self.u.normalize_()
            self.v.normalize_()

    def options(self) -> dict:
        return {"reflectors": self.reflectors, "margin": self.margin, "center": self.center,
                "renormalize": self.renormalize, "init_from": self.init_from, "init_options": self.init_options}

    def inverse(self, w: Tensor, tol: float | None = None) -> dict[str, Tensor]:
        """Reflectors and p reproducing ``w`` at this transition's band and k (SVD in float64).

        Refuses a singular ``w`` and singular values outside the band (saying by how much);
        with k < n, :meth:`set_matrix_` refuses a ``w`` the k reflectors miss.
        """
        w = check_square(w, self.n, "spectral inverse")
        u, s, vh = torch.linalg.svd(w.detach().to(torch.float64))
        if s[-1] <= s[0] * torch.finfo(torch.float64).eps * self.n:
            raise ValueError(f"W is singular (smallest singular value {s[-1].item():.3g}); "
                             f"the spectral transition needs every singular value > 0")
        p = sigma_to_p(s, self.margin, self.center)
        u_dense = reflectors_from_orthogonal(u)[: self.reflectors]
        v_dense = reflectors_from_orthogonal(vh.T)[: self.reflectors]
        if self.renormalize:
            u_dense, v_dense = normalize_rows(u_dense), normalize_rows(v_dense)
        return {"u.values": self.u.entries(u_dense), "v.values": self.v.entries(v_dense), "p": p}

    def unreachable_hint(self) -> str:
        if self.reflectors < self.n:
            return (f"; with reflectors={self.reflectors} < n={self.n} only a thin set of matrices is "
                    f"reachable: use reflectors={self.n}")
        return ""

    @classmethod
    def from_matrix(cls, w: Tensor, margin: float | None = None, center: float | None = None,
                    reflectors: int | None = None, renormalize: bool = True) -> "SpectralTransition":
        """The paper's expressivity theorem made constructive: reflectors and Σ reproducing ``w``.

        ``w`` must be square and nonsingular. Without ``margin``/``center`` the band is chosen
        to hold w's singular values: center = (σ_max + σ_min)/2, margin = (σ_max − σ_min)/2 +
        σ_min/4. With a band too narrow for them, a ValueError says so (and by how much).
        ``reflectors`` defaults to n (k < n reaches only a thin set). Draws no random numbers.
        """
        w = check_square(w, None, "from_matrix")
        n = w.shape[0]
        s = torch.linalg.svdvals(w.detach().to(torch.float64))
        if s[-1] <= s[0] * torch.finfo(torch.float64).eps * n:
            raise ValueError(f"from_matrix needs a nonsingular matrix; smallest singular value is {s[-1].item():.3g}")
        if center is None:
            center = float((s[0] + s[-1]) / 2)
        if margin is None:
            margin = float((s[0] - s[-1]) / 2 + s[-1] / 4)
        return super().from_matrix(w, reflectors=reflectors, margin=margin, center=center,
                                   renormalize=renormalize)
