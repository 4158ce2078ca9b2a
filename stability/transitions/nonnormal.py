"""Non-normal recurrent matrices: W = P (Λ + T) Pᵀ (nnRNN, Kerg et al., NeurIPS 2019).

A real Schur decomposition made into a parameterization: P orthogonal, Λ block diagonal,
T strictly upper triangular. With T = 0, W is normal, its eigenvalues are γₖ e^{±iθₖ} and its
singular values the block magnitudes γ; T adds the non-normal (transient) part. Its entries
outside the 2×2 blocks leave the eigenvalues alone; its entries (2k, 2k+1) lie inside a block
(the official mask keeps them) and move that block's pair of eigenvalues.

- **P** = expm(A − Aᵀ) exactly as ``exprnn`` stores and computes it (the n(n−1)/2 free entries
  of a skew matrix, :func:`~.expm.skew_expm`); ``init`` picks its skew init, ``cayley`` by
  default (the initialization of every nnRNN row in the official README's tables).
- **Λ**: for k < n // 2, the 2×2 block at rows/columns 2k, 2k+1 is γₖ [[cos θₖ, −sin θₖ],
  [sin θₖ, cos θₖ]] (the official ``OrthoRNNCell``: a rotation multiplied entrywise by a
  2×2 block filled with its ``alpha``). θ starts U(0, 2π) (the official code draws
  U(0, 6.28)), γ starts at 1. For odd n (which the official code does not accept) the last
  row/column holds a 1×1 block γ (a real eigenvalue), so there are ⌈n/2⌉ magnitudes γ.
- **T**: the strict upper triangle, n(n−1)/2 free entries, zero at the start as in the
  official code (``upper_init_std`` > 0 draws them N(0, upper_init_std²) instead).

Free parameters: n(n−1) + n//2 + ⌈n/2⌉ = n², as many as a dense W (the official module also
holds n − n//2 angles that never reach W, and P and T as full n×n tensors; not counted here).

Orientation: the official cell multiplies row vectors (h ← h·W), this package column vectors
(h ← W h), so the official recurrence is the one of Wᵀ = P (Λ + T)ᵀ Pᵀ. The matrix itself is
the paper's and the code's (tested against a port of its construction); the two families are
the same up to transposition (T strictly lower, θ → −θ).

Protocol pieces that live outside W: :meth:`NonNormalTransition.penalty` is the official
δ Σ (γ − 1)² plus the weight decay on T; the official optimizer trains only P's skew entries
at the lower orthogonal learning rate (see docs/protocols.md, "nnRNN").

The gradient through P is autograd's exact one (the official code's Fréchet-derivative step
computes the same gradient for the skew entries); P is recomputed from A after every step
and never re-based, so there is no :meth:`after_step`. Every real n×n W is reachable:
:meth:`NonNormalTransition.inverse` reads the parameters off a real Schur form of W.
"""
from __future__ import annotations

import math

import numpy as np
import scipy.linalg
import torch
from torch import Tensor, nn

from .base import check_square, register
from .expm import skew_expm
from .orthogonal import _SkewTransition, orthogonal_log

#: the official defaults of the penalty (copy task, nnRNN README): δ on (γ − 1)², weight decay on T
DEFAULT_DELTA = 1e-4
DEFAULT_T_DECAY = 1e-6


def _check_nonnegative(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {value!r} ({type(value).__name__})")
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"{name}={value!r} is out of range; allowed: a finite number >= 0")
    return float(value)


def block_indices(n: int) -> tuple[Tensor, Tensor]:
    """Rows and columns of Λ's entries in the order :meth:`NonNormalTransition.rotation_blocks`
    fills them: all (2k, 2k), then (2k, 2k+1), (2k+1, 2k), (2k+1, 2k+1), then (n−1, n−1) for odd n."""
    even = torch.arange(n // 2) * 2
    rows = torch.cat([even, even, even + 1, even + 1, torch.arange(n // 2 * 2, n)])
    cols = torch.cat([even, even + 1, even, even + 1, torch.arange(n // 2 * 2, n)])
    return rows, cols


def paired_real_schur(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(Z, S) with W = Z S Zᵀ, Z orthogonal of determinant +1, S zero outside the 2×2 diagonal
    blocks at (2k, 2k+1) (and the last 1×1 for odd n) and the upper triangle, each 2×2 block
    with equal diagonal entries. Complex eigenvalue pairs come first (sorted real Schur form);
    two real eigenvalues sharing a block are turned by a plane rotation until its diagonal
    entries are equal (any 2×2 matrix is orthogonally similar to one with equal diagonal)."""
    n = w.shape[0]
    try:
        s, z, _ = scipy.linalg.schur(w, output="real", sort=lambda re, im: im != 0)
    except (np.linalg.LinAlgError, ValueError):  # reordering failed by rounding: plain form, checked below
        s, z = scipy.linalg.schur(w, output="real")
    for i in range(0, n - 1, 2):
        block = s[i:i + 2, i:i + 2]
        phi = 0.5 * math.atan2(block[1, 1] - block[0, 0], block[0, 1] + block[1, 0])
        c, sn = math.cos(phi), math.sin(phi)
        q = np.array([[c, -sn], [sn, c]])
        s[:, i:i + 2] = s[:, i:i + 2] @ q
        s[i:i + 2, :] = q.T @ s[i:i + 2, :]
        z[:, i:i + 2] = z[:, i:i + 2] @ q
    if np.linalg.det(z) < 0:  # exp of a skew matrix reaches determinant +1 only: flip the first column
        z[:, 0] *= -1.0
        s[0, :] *= -1.0
        s[:, 0] *= -1.0
    below = np.tril(s, -1)
    below[np.arange(1, n, 2), np.arange(0, n - 1, 2)] = 0.0  # the blocks' own lower entries
    scale = max(1.0, float(np.abs(s).max()))
    if np.abs(below).max(initial=0.0) > 1e-8 * scale:
        raise ValueError("no real Schur form of W with its complex eigenvalue pairs on the 2×2 blocks "
                         "was found (reordering failed)")
    return z, s


@register("nnrnn")
class NonNormalTransition(_SkewTransition):
    """W = P (Λ + T) Pᵀ: P = expm(A − Aᵀ), Λ blocks γₖ·rotation(θₖ), T strictly upper (nnRNN).

    Options: ``init`` (P's skew init: cayley (default), henaff, zeros, random),
    ``upper_init_std`` (0.0: T starts at zero, the official init), ``init_from``/``init_options``.
    Parameters: ``skew_params`` (A's n(n−1)/2 entries), ``thetas`` (n//2), ``gammas`` (⌈n/2⌉),
    ``upper_params`` (T's n(n−1)/2 entries, row-major strict upper triangle).
    """

    def __init__(self, n: int, init: str = "cayley", upper_init_std: float = 0.0,
                 delta: float = DEFAULT_DELTA, t_decay: float = DEFAULT_T_DECAY,
                 init_from: str | None = None, init_options: dict | None = None):
        super().__init__(n, init)
        self.upper_init_std = _check_nonnegative("upper_init_std", upper_init_std)
        self.delta = _check_nonnegative("delta", delta)
        self.t_decay = _check_nonnegative("t_decay", t_decay)
        rows, cols = block_indices(n)
        self.register_buffer("_block_rows", rows, persistent=False)
        self.register_buffer("_block_cols", cols, persistent=False)
        self.thetas = nn.Parameter(torch.empty(n // 2))
        self.gammas = nn.Parameter(torch.empty((n + 1) // 2))
        self.upper_params = nn.Parameter(torch.empty(self.skew_params.numel()))
        self._init_parameters(init_from, init_options)

    @torch.no_grad()
    def reset_parameters(self) -> None:
        super().reset_parameters()
        self.thetas.uniform_(0.0, 2 * math.pi)
        self.gammas.fill_(1.0)
        if self.upper_init_std > 0:
            self.upper_params.normal_(0.0, self.upper_init_std)
        else:
            self.upper_params.zero_()

    # -- the factors ----------------------------------------------------------------------
    def schur_basis(self) -> Tensor:
        """P = expm(A − Aᵀ), orthogonal."""
        return skew_expm(self.skew())

    def rotation_blocks(self) -> Tensor:
        """Λ: 2×2 blocks γₖ [[cos θₖ, −sin θₖ], [sin θₖ, cos θₖ]] (and γ alone last, for odd n)."""
        half = self.n // 2
        g, c, s = self.gammas[:half], torch.cos(self.thetas), torch.sin(self.thetas)
        values = torch.cat([g * c, -g * s, g * s, g * c, self.gammas[half:]])
        return values.new_zeros(self.n, self.n).index_put((self._block_rows, self._block_cols), values)

    def strictly_upper(self) -> Tensor:
        """T: the strictly upper triangular part."""
        p = self.upper_params
        return p.new_zeros(self.n, self.n).index_put((self._rows, self._cols), p)

    def schur_factor(self) -> Tensor:
        """Λ + T, the quasi-triangular factor of W's real Schur form."""
        return self.rotation_blocks() + self.strictly_upper()

    def matrix(self) -> Tensor:
        p = self.schur_basis()
        return p @ self.schur_factor() @ p.T

    def singular_values(self) -> Tensor:
        """σ(W) = σ(Λ + T) (P is orthogonal), descending; P is not formed."""
        return torch.linalg.svdvals(self.schur_factor())

    # -- the official regularization ------------------------------------------------------
    def penalty(self, delta: float | None = None, t_decay: float | None = None) -> Tensor:
        """δ Σ (γ − 1)² + (t_decay / 2) ‖T‖²_F, to add to the training loss.

        The first term is the official ``alpha_loss`` (δ, ``--alam``, pulls every block magnitude
        to 1); the second is the gradient-coupled weight decay the official optimizer applies to T
        (``--Tdecay``; with RMSprop or Adam, adding it to the loss gives the same update).
        Defaults: the transition's options ``delta`` and ``t_decay`` (themselves by default the
        copy task's values in the official README, δ = 1e-4, T decay 1e-6). The training loop
        adds it to the loss after every forward pass.
        """
        delta = self.delta if delta is None else _check_nonnegative("delta", delta)
        t_decay = self.t_decay if t_decay is None else _check_nonnegative("t_decay", t_decay)
        return delta * (self.gammas - 1).pow(2).sum() + 0.5 * t_decay * self.upper_params.pow(2).sum()

    def options(self) -> dict:
        return {"init": self.init, "upper_init_std": self.upper_init_std, "delta": self.delta, "t_decay": self.t_decay,
                "init_from": self.init_from, "init_options": self.init_options}

    def transition_lr_parameters(self) -> list[nn.Parameter]:
        """P's skew entries only: the official optimizer gives θ, γ and T the main learning rate."""
        return [self.skew_params]

    # -- the inverse ----------------------------------------------------------------------
    def inverse(self, w: Tensor, tol: float | None = None) -> dict[str, Tensor]:
        """Every real n×n W: P, Λ and T read off a real Schur form W = Z S Zᵀ (paired γ >= 0)."""
        w64 = check_square(w, self.n, "nnrnn inverse").detach().cpu().to(torch.float64)
        z, s = paired_real_schur(w64.numpy().copy())
        n, half = self.n, self.n // 2
        even = np.arange(half) * 2
        a = (s[even, even] + s[even + 1, even + 1]) / 2
        c = s[even + 1, even]
        upper = np.triu(s, 1)
        upper[even, even + 1] += c  # the block's own (2k, 2k+1) entry is −γ sin θ = −c
        gammas = np.concatenate([np.hypot(a, c), s[np.arange(half * 2, n), np.arange(half * 2, n)]])
        device = w.device
        rows, cols = self._rows.cpu(), self._cols.cpu()
        return {
            "skew_params": orthogonal_log(torch.from_numpy(z))[rows, cols].to(device),
            "thetas": torch.from_numpy(np.arctan2(c, a)).to(device),
            "gammas": torch.from_numpy(gammas).to(device),
            "upper_params": torch.from_numpy(upper)[rows, cols].to(device),
        }
