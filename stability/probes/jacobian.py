"""Jacobian norm decay along a trajectory: ‖∂h_T/∂h_{T−g}‖ for every gap g, and its half-life.

For the recurrence h_t = φ(a_t), a_t = W_in x_t + b + W h_{t−1}, the one-step Jacobian is

    J_t = ∂h_t/∂h_{t−1} = diag(φ'(a_t)) W,

and the Jacobian across a gap of g steps, ending at the last state h_{T−1} (0-based, as in
``hidden_states``), is the product

    P_g = ∂h_{T−1}/∂h_{T−1−g} = J_{T−1} J_{T−2} ··· J_{T−g},   P_0 = I,   P_{g+1} = P_g J_{T−1−g}.

:func:`jacobian_decay` accumulates P_g for g = 0..T−1 in one backward sweep over time, for the
whole batch at once: P_{g+1} = (P_g · diag(φ'(a_{T−1−g}))) W is a column scaling and one
(B·n × n)·(n × n) matrix product per step, never an autograd call per step. Unscaled, these
products underflow (or overflow) float32 long before T = 1000, so after every step P is divided
by its Frobenius norm and the logarithm of that factor is added to a per-sample running
log-scale (kept in float64):

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
m-sized factorizations per gap).

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

__all__ = ["jacobian_decay", "half_life", "check_model", "check_sequence", "trajectory"]

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


def check_int(name: str, value, minimum: int, maximum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {value!r} ({type(value).__name__})")
    if value < minimum or (maximum is not None and value > maximum):
        allowed = f"{minimum}..{maximum}" if maximum is not None else f">= {minimum}"
        raise ValueError(f"{name}={value} is out of range; allowed: {allowed}")
    return value


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


def jacobian_decay(model, x: Tensor, h0: Tensor | None = None, *, max_gap: int | None = None,
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
        spectral: how ‖P_g‖₂ is computed. ``"subspace"`` (default): exact SVDs for the first
            8 gaps, then a tracked ``block``-dimensional subspace with ``iters`` block-power
            iterations per gap (8 below gap 32, 2 below gap 128) and Rayleigh–Ritz: a lower
            bound that agreed with the SVD to float32 rounding (~3e-7 relative) at most gaps
            and within 2e-4 at the worst of all gaps in our checks (n = 64..256, T up to 1000,
            every built-in transition, tanh and relu). ``"exact"``: a batched SVD at every
            gap (4–7 times the cost of the default at n = 128 on a CPU). When n <= 2·block
            the SVD is used throughout.
        block: the tracked subspace's dimension m (>= 2); iters: iterations per gap (>= 1).

    Returns:
        A DataFrame with one row per (gap, sample): ``gap``, ``sample``, ``spectral``
        (‖P_g‖₂), ``frobenius`` (‖P_g‖_F, exact), and their natural logs ``log_spectral``,
        ``log_frobenius`` (finite even where the norms under- or overflow float64).
        Gap 0 is the identity: spectral 1, Frobenius √n.

    Runs in the model's dtype and on its device, without autograd; one transfer to the CPU
    at the end builds the frame.
    """
    if spectral not in SPECTRAL_METHODS:
        raise ValueError(f"spectral={spectral!r} is not known; allowed: {', '.join(map(repr, SPECTRAL_METHODS))}")
    check_int("iters", iters, 1)
    w, _, deriv = trajectory(model, x, h0)
    steps, batch, n = deriv.shape
    check_int("block", block, 2)
    gaps = steps - 1 if max_gap is None else check_int("max_gap", max_gap, 0, steps - 1)
    dtype, device = w.dtype, w.device
    exact = spectral == "exact" or n <= 2 * block
    log_fro = torch.empty(gaps + 1, batch, dtype=torch.float64, device=device)
    log_spec = torch.empty(gaps + 1, batch, dtype=torch.float64, device=device)
    with torch.no_grad():
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
    log_fro, log_spec = log_fro.cpu(), log_spec.cpu()
    return pd.DataFrame({
        "gap": torch.arange(gaps + 1).repeat_interleave(batch).numpy(),
        "sample": torch.arange(batch).repeat(gaps + 1).numpy(),
        "spectral": log_spec.exp().reshape(-1).numpy(),
        "frobenius": log_fro.exp().reshape(-1).numpy(),
        "log_spectral": log_spec.reshape(-1).numpy(),
        "log_frobenius": log_fro.reshape(-1).numpy(),
    })


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
