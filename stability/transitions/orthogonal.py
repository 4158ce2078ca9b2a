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

Every map here has an inverse (:meth:`~stability.transitions.base.Transition.inverse`):
Cayley's A = (I + W D)⁻¹(I − W D) where W D has no eigenvalue −1, expRNN's real logarithm
of an orthogonal W of determinant +1 (:func:`orthogonal_log`), the reflectors of a Householder
QR. So each can start from another transition's initial W (``init_from``, ``init_options``).
"""
from __future__ import annotations

import math

import numpy as np
import scipy.linalg
import torch
from torch import Tensor, nn

from .base import Transition, check_bool, check_choice, check_size, check_square, default_tol, register
from .expm import skew_expm
from .householder import householder_product, normalize_rows, reflectors_from_orthogonal

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


def check_orthogonal(w: Tensor, tol: float | None, where: str) -> Tensor:
    """``w`` in float64 after checking max|WᵀW − I| <= tol (default sqrt(eps) of w's dtype)."""
    limit = default_tol(w.dtype, tol)
    w64 = w.detach().to(torch.float64)
    eye = torch.eye(w64.shape[0], dtype=torch.float64, device=w64.device)
    err = float((w64.T @ w64 - eye).abs().max())
    if not err <= limit:
        raise ValueError(f"{where} needs an orthogonal matrix: max|WᵀW − I| = {err:.3g} > tol={limit:.3g}")
    return w64


def orthogonal_log(q64: Tensor) -> Tensor:
    """A real skew-symmetric S with expm(S) = q for an orthogonal q of determinant +1 (float64).

    Real Schur form q = Z T Zᵀ: T is block diagonal (q is normal) with 2×2 rotation blocks
    (angle θ → log block θ[[0, −1], [1, 0]]), +1's (log 0) and an even number of −1's, paired
    into rotations by π. (The principal logarithm, scipy.linalg.logm's, where that is real.)
    """
    t, z = scipy.linalg.schur(q64.detach().cpu().to(torch.float64).numpy(), output="real")
    n = t.shape[0]
    log = np.zeros((n, n))
    negatives = []
    i = 0
    while i < n:
        if i + 1 < n and t[i + 1, i] != 0.0:
            theta = math.atan2((t[i + 1, i] - t[i, i + 1]) / 2, (t[i, i] + t[i + 1, i + 1]) / 2)
            log[i, i + 1], log[i + 1, i] = -theta, theta
            i += 2
        else:
            if t[i, i] < 0:
                negatives.append(i)
            i += 1
    for a, b in zip(negatives[0::2], negatives[1::2]):
        log[a, b], log[b, a] = -math.pi, math.pi
    s = z @ log @ z.T
    return torch.from_numpy((s - s.T) / 2).to(q64.device)


class _SkewTransition(Transition):
    """Shared storage: the strict upper triangle of a skew-symmetric A as a flat parameter.

    Subclasses set their own attributes, then call :meth:`_init_parameters`.
    """

    def __init__(self, n: int, init: str):
        super().__init__(n)
        self.init = check_choice("init", init, SKEW_INITS)
        rows, cols = torch.triu_indices(n, n, offset=1)
        self.register_buffer("_rows", rows, persistent=False)
        self.register_buffer("_cols", cols, persistent=False)
        self.skew_params = nn.Parameter(torch.empty(rows.numel()))

    def _init_parameters(self, init_from: str | None, init_options: dict | None) -> None:
        source = self.start_from(init_from, init_options)
        with torch.random.fork_rng(devices=[], enabled=source is not None):
            self.reset_parameters()
        self.finish_start(source)

    @torch.no_grad()
    def reset_parameters(self) -> None:
        a = skew_block_init(self.n, self.init)
        self.skew_params.copy_(self.skew_entries(a))

    def skew_entries(self, a: Tensor) -> Tensor:
        """The free entries (strict upper triangle, storage order) of an n×n matrix ``a``."""
        return a[self._rows.to(a.device), self._cols.to(a.device)]

    def skew(self) -> Tensor:
        """A − Aᵀ as a dense n×n matrix."""
        p = self.skew_params
        upper = p.new_zeros(self.n, self.n).index_put((self._rows, self._cols), p)
        return upper - upper.T

    def singular_values(self) -> Tensor:
        w = self.matrix()
        return torch.ones(self.n, dtype=w.dtype, device=w.device)

    def options(self) -> dict:
        return {"init": self.init, "init_from": self.init_from, "init_options": self.init_options}


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

    def __init__(self, n: int, init: str = "henaff", exp_in_float64: bool = False,
                 init_from: str | None = None, init_options: dict | None = None):
        super().__init__(n, init)
        self.exp_in_float64 = bool(exp_in_float64)
        self._init_parameters(init_from, init_options)

    def matrix(self) -> Tensor:
        a = self.skew()
        if self.exp_in_float64 and a.dtype in (torch.float32, torch.float16, torch.bfloat16):
            return torch.linalg.matrix_exp(a.double()).to(a.dtype)
        return skew_expm(a)

    def options(self) -> dict:
        return {"init": self.init, "exp_in_float64": self.exp_in_float64,
                "init_from": self.init_from, "init_options": self.init_options}

    def inverse(self, w: Tensor, tol: float | None = None) -> dict[str, Tensor]:
        """A = a real logarithm of the orthogonal ``w`` (determinant +1 only)."""
        q = check_orthogonal(check_square(w, self.n, "exprnn inverse"), tol, "exprnn inverse")
        det = float(torch.det(q))
        if det < 0:
            raise ValueError(f"W has determinant {det:+.0f} but expm of a skew matrix reaches only determinant +1")
        return {"skew_params": self.skew_entries(orthogonal_log(q))}


@register("cayley")
class CayleyTransition(_SkewTransition):
    """W = (I + A)⁻¹(I − A) D, A skew, D = diag(±1) fixed with ``negatives`` entries −1.

    As in scoRNN, the −1 entries of D come last: D = diag(1, …, 1, −1, …, −1) (n − negatives
    ones, then ``negatives`` minus ones).
    """

    def __init__(self, n: int, init: str = "cayley", negatives: int | None = None,
                 init_from: str | None = None, init_options: dict | None = None):
        super().__init__(n, init)
        negatives = n // 2 if negatives is None else negatives
        self.negatives = check_size("negatives", negatives, minimum=0, maximum=n)
        d = torch.ones(n)
        d[n - negatives:] = -1.0
        self.register_buffer("d", d)
        self._init_parameters(init_from, init_options)

    def matrix(self) -> Tensor:
        a = self.skew()
        eye = torch.eye(self.n, dtype=a.dtype, device=a.device)
        return torch.linalg.solve(eye + a, eye - a) * self.d

    def options(self) -> dict:
        return {"init": self.init, "negatives": self.negatives,
                "init_from": self.init_from, "init_options": self.init_options}

    def determinant(self) -> float:
        """det W = det D = (−1)^negatives, for every A."""
        return -1.0 if self.negatives % 2 else 1.0

    def inverse(self, w: Tensor, tol: float | None = None) -> dict[str, Tensor]:
        """A = (I + C)⁻¹(I − C) with C = W D, for an orthogonal ``w`` of determinant det D whose
        W D has no eigenvalue −1."""
        limit = default_tol(w.dtype, tol)
        q = check_orthogonal(check_square(w, self.n, "cayley inverse"), limit, "cayley inverse")
        det = float(torch.det(q))
        if det * self.determinant() < 0:
            raise ValueError(f"W has determinant {det:+.0f} but cayley with negatives={self.negatives} reaches "
                             f"only determinant {self.determinant():+.0f}")
        c = q * self.d.to(q)
        eye = torch.eye(self.n, dtype=q.dtype, device=q.device)
        cond = float(torch.linalg.cond(eye + c))
        if not math.isfinite(cond) or cond > 1.0 / limit:
            raise ValueError(f"W·D has an eigenvalue at (or near) −1 (cond(I + W·D) = {cond:.3g}), which the "
                             f"Cayley map cannot reach; choose another `negatives`")
        a = torch.linalg.solve(eye + c, eye - c)
        return {"skew_params": self.skew_entries((a - a.T) / 2)}


@register("householder")
class HouseholderTransition(Transition):
    """W = H(v₁)···H(v_k): a product of k Householder reflectors (oRNN).

    With k = n every orthogonal matrix is reachable (:meth:`from_matrix`); with k < n
    only those of determinant (−1)^k that fix an (n − k)-dimensional subspace.

    ``renormalize`` (default True): the vectors start at unit length and :meth:`after_step`
    scales them back after every optimizer step (W unchanged). The default follows the
    official Spectral-RNN training loop, which applies this same step to its oRNN baseline
    (``code/rnn.py``), and keeps the two reflector parameterizations comparable at one
    learning rate: H(v) depends only on v's direction, and left alone the norms grow under
    the optimizer (a gradient is orthogonal to v), so each step would turn the reflectors
    less and less, by an amount that depends on n.
    """

    def __init__(self, n: int, reflectors: int | None = None, renormalize: bool = True,
                 init_from: str | None = None, init_options: dict | None = None):
        super().__init__(n)
        k = n if reflectors is None else reflectors
        self.reflectors = check_size("reflectors", k, minimum=1, maximum=n)
        self.renormalize = check_bool("renormalize", renormalize)
        self.vectors = nn.Parameter(torch.empty(k, n))
        source = self.start_from(init_from, init_options)
        with torch.random.fork_rng(devices=[], enabled=source is not None):
            self.reset_parameters()
        self.finish_start(source)

    @torch.no_grad()
    def reset_parameters(self) -> None:
        nn.init.normal_(self.vectors)
        self.after_step()

    @torch.no_grad()
    def after_step(self) -> None:
        """With ``renormalize``: scale every reflector vector back to unit length (W unchanged)."""
        if self.renormalize:
            self.vectors.copy_(normalize_rows(self.vectors))

    def matrix(self) -> Tensor:
        return householder_product(self.vectors)

    def singular_values(self) -> Tensor:
        v = self.vectors
        return torch.ones(self.n, dtype=v.dtype, device=v.device)

    def options(self) -> dict:
        return {"reflectors": self.reflectors, "renormalize": self.renormalize,
                "init_from": self.init_from, "init_options": self.init_options}

    def inverse(self, w: Tensor, tol: float | None = None) -> dict[str, Tensor]:
        """The first k reflectors of a Householder QR of the orthogonal ``w`` (all of it for k = n)."""
        q = check_orthogonal(check_square(w, self.n, "householder inverse"), tol, "householder inverse")
        vectors = reflectors_from_orthogonal(q)[: self.reflectors]
        return {"vectors": normalize_rows(vectors) if self.renormalize else vectors}

    def unreachable_hint(self) -> str:
        if self.reflectors < self.n:
            return (f"; with reflectors={self.reflectors} < n={self.n} only a thin set of orthogonal matrices "
                    f"is reachable: use reflectors={self.n}")
        return ""

    @classmethod
    def from_matrix(cls, q: Tensor, tol: float | None = None, reflectors: int | None = None,
                    renormalize: bool = True) -> "HouseholderTransition":
        """A transition (k = n reflectors by default) whose matrix() equals the orthogonal ``q``
        (``tol``: orthogonality and reconstruction tolerance, default sqrt(eps) of q's dtype)."""
        return super().from_matrix(q, tol=tol, reflectors=reflectors, renormalize=renormalize)
