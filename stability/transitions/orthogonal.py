"""Orthogonal recurrent matrices: matrix exponential (expRNN), Cayley (scoRNN), reflectors (oRNN).

- ``exprnn``: W = expm(A − Aᵀ) (Lezcano-Casado & Martínez-Rubio, ICML 2019).
- ``cayley``: W = (I + A)⁻¹(I − A) D with A skew and D a fixed diagonal of ±1 holding
  ``negatives`` entries −1 (scoRNN, Helfrich, Willmott & Ye, ICML 2018).
- ``householder``: W = H(v₁)···H(v_k), k = ``reflectors`` (oRNN, Mhammedi et al., ICML 2017).

The skew matrices are stored by their n(n−1)/2 free entries (strict upper triangle), so the
parameter count is the number of free parameters. Skew inits, as in the expRNN/scoRNN code:
``henaff`` (2×2 rotation blocks with angles U(−π, π); Henaff et al. 2016), ``cayley``
(blocks whose Cayley transform has angles U(0, π/2)), ``zeros`` (W = I, or D for cayley),
``random`` (entries U(−1/√n, 1/√n)).
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .base import Transition, check_choice, check_size, register
from .expm import skew_expm
from .householder import householder_product, reflectors_from_orthogonal

SKEW_INITS = ("henaff", "cayley", "zeros", "random")


def skew_block_init(n: int, init: str, generator: torch.Generator | None = None) -> Tensor:
    """An n×n skew-symmetric matrix with 2×2 blocks [[0, a], [−a, 0]] on the diagonal."""
    a = torch.zeros(n, n)
    if init == "zeros":
        return a
    if init == "random":
        b = torch.empty(n, n).uniform_(-n ** -0.5, n ** -0.5, generator=generator)
        return torch.triu(b, 1) - torch.triu(b, 1).T
    half = n // 2
    if init == "henaff":
        values = torch.empty(half).uniform_(-math.pi, math.pi, generator=generator)
    else:  # cayley: angles s in U(0, π/2), a = -sqrt((1 - cos s)/(1 + cos s))
        s = torch.empty(half).uniform_(0.0, math.pi / 2, generator=generator)
        values = -torch.sqrt((1 - torch.cos(s)) / (1 + torch.cos(s)))
    idx = torch.arange(half) * 2
    a[idx, idx + 1] = values
    return a - a.T


class _SkewTransition(Transition):
    """Shared storage: the strict upper triangle of a skew-symmetric A as a flat parameter."""

    def __init__(self, n: int, init: str):
        super().__init__(n)
        self.init = check_choice("init", init, SKEW_INITS)
        rows, cols = torch.triu_indices(n, n, offset=1)
        self.register_buffer("_rows", rows, persistent=False)
        self.register_buffer("_cols", cols, persistent=False)
        self.skew_params = nn.Parameter(torch.empty(rows.numel()))
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        a = skew_block_init(self.n, self.init)
        self.skew_params.copy_(a[self._rows, self._cols])

    def skew(self) -> Tensor:
        """A − Aᵀ as a dense n×n matrix."""
        p = self.skew_params
        upper = p.new_zeros(self.n, self.n).index_put((self._rows, self._cols), p)
        return upper - upper.T

    def singular_values(self) -> Tensor:
        w = self.matrix()
        return torch.ones(self.n, dtype=w.dtype, device=w.device)

    def options(self) -> dict:
        return {"init": self.init}


@register("exprnn")
class ExpRNNTransition(_SkewTransition):
    """W = expm(A − Aᵀ): every orthogonal matrix of determinant +1 is reachable.

    The exponential is computed in the parameters' precision by :func:`~.expm.skew_expm`
    (a Padé approximant, exactly orthogonal for skew A, then one Newton–Schulz step): in
    float32 ‖WᵀW − I‖ stays at the rounding level (below 1e-6 at n = 256 for any ‖A‖)
    where torch.linalg.matrix_exp's Taylor form drifted to 1.3e-5 as ‖A‖ grew in training.
    ``exp_in_float64=True`` computes torch.linalg.matrix_exp in float64 and rounds instead
    (5–10× the cost of building W this way).
    """

    def __init__(self, n: int, init: str = "henaff", exp_in_float64: bool = False):
        super().__init__(n, init)
        self.exp_in_float64 = bool(exp_in_float64)

    def matrix(self) -> Tensor:
        a = self.skew()
        if self.exp_in_float64 and a.dtype in (torch.float32, torch.float16, torch.bfloat16):
            return torch.linalg.matrix_exp(a.double()).to(a.dtype)
        return skew_expm(a)

    def options(self) -> dict:
        return {"init": self.init, "exp_in_float64": self.exp_in_float64}


@register("cayley")
class CayleyTransition(_SkewTransition):
    """W = (I + A)⁻¹(I − A) D, A skew, D = diag(±1) fixed with ``negatives`` entries −1."""

    def __init__(self, n: int, init: str = "cayley", negatives: int | None = None):
        super().__init__(n, init)
        negatives = n // 2 if negatives is None else negatives
        self.negatives = check_size("negatives", negatives, minimum=0, maximum=n)
        d = torch.ones(n)
        d[:negatives] = -1.0
        self.register_buffer("d", d)

    def matrix(self) -> Tensor:
        a = self.skew()
        eye = torch.eye(self.n, dtype=a.dtype, device=a.device)
        return torch.linalg.solve(eye + a, eye - a) * self.d

    def options(self) -> dict:
        return {"init": self.init, "negatives": self.negatives}


@register("householder")
class HouseholderTransition(Transition):
    """W = H(v₁)···H(v_k): a product of k Householder reflectors (oRNN).

    With k = n every orthogonal matrix is reachable (:meth:`from_matrix`); with k < n
    only those of determinant (−1)^k that fix an (n − k)-dimensional subspace.
    """

    def __init__(self, n: int, reflectors: int | None = None):
        super().__init__(n)
        k = n if reflectors is None else reflectors
        self.reflectors = check_size("reflectors", k, minimum=1, maximum=n)
        self.vectors = nn.Parameter(torch.empty(k, n))
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        nn.init.normal_(self.vectors)

    def matrix(self) -> Tensor:
        return householder_product(self.vectors)

    def singular_values(self) -> Tensor:
        v = self.vectors
        return torch.ones(self.n, dtype=v.dtype, device=v.device)

    def options(self) -> dict:
        return {"reflectors": self.reflectors}

    @classmethod
    def from_matrix(cls, q: Tensor, tol: float = 1e-6) -> "HouseholderTransition":
        """A transition with k = n reflectors whose matrix() equals the orthogonal ``q``."""
        if not isinstance(q, Tensor) or q.dim() != 2 or q.shape[0] != q.shape[1]:
            raise ValueError(f"from_matrix needs a square matrix, got {getattr(q, 'shape', q)!r}")
        n = q.shape[0]
        err = (q.T.double() @ q.double() - torch.eye(n, dtype=torch.float64, device=q.device)).abs().max().item()
        if err > tol:
            raise ValueError(f"from_matrix needs an orthogonal matrix: max|QᵀQ − I| = {err:.3g} > tol={tol}")
        t = cls(n).to(dtype=q.dtype, device=q.device)
        with torch.no_grad():
            t.vectors.copy_(reflectors_from_orthogonal(q))
        return t
