"""Jacobian norm decay along a trajectory: ‖∂h_T/∂h_{T−g}‖ for every gap g, and its half-life.

For the recurrence h_t = φ(a_t), a_t = W_in x_t + b + W h_{t−1}, the one-step Jacobian is

    J_t = ∂h_t/∂h_{t−1} = diag(φ'(a_t)) W,

and the Jacobian across a gap of g steps, ending at the last state h_{T−1} (0-based, as in
``hidden_states``), is the product

    P_g = ∂h_{T−1}/∂h_{T−1−g} = J_{T−1} J_{T−2} ··· J_{T−g},   P_0 = I,   P_{g+1} = P_g J_{T−1−g}.

:func:`jacobian_decay` computes the whole curve g = 0..T−1 in one backward sweep over time,
for the whole batch at once, with one of two methods (``method=``; ``"auto"``, the default,
picks the exact one for n <= 32 and the sketch above; ``df.attrs["method"]`` says which ran).
Their measured accuracy and cost, and the commands that measure them, are in
``docs/probe-accuracy.md``.

**Exact** (``method="exact"``, :mod:`stability.probes.jacobian_exact`):
P_{g+1} = (P_g · diag(φ'(a_{T−1−g}))) W is a column scaling and one (B·n × n)·(n × n) matrix
product per step (B·n³ flops), never an autograd call per step. Unscaled, these products
underflow (or overflow) float32 long before T = 1000, so after every step P is divided by its
Frobenius norm and the logarithm of that factor is added to a per-sample running log-scale
(kept in float64):

    P̂_g = P_g / ‖P_g‖_F,   log ‖P_g‖_F = Σ_{j ≤ g} log ‖P̂_{j−1} J_{T−j}‖_F,
    log ‖P_g‖₂ = log ‖P_g‖_F + log ‖P̂_g‖₂.

‖P̂_g‖₂ comes either from an exact SVD of the batch at every gap (``spectral="exact"``) or
(default, ``spectral="subspace"``) from block power iteration: an m-dimensional left subspace
(m = 8) is carried from gap to gap and refined by one iteration with Rayleigh–Ritz per gap
(see ``_SubspaceTracker``); the first 8 gaps use the SVD. The left singular subspaces of
P_g settle as g grows (new factors enter on the right), so one iteration per gap keeps up.
A single carried vector is not enough (products with near-null spaces and top singular
vectors that jump within pairs of close values, as for exprnn and cayley, trap it). The
tracked subspace costs two (B·m × n)·(n × n)-sized products and a few m-sized
factorizations per gap.

**Sketch** (``method="sketch"``, ``probes=k``, default 16, :mod:`stability.probes.jacobian_sketch`):
instead of P_g, carry the k × n block Y_g = Fᵀ P_g for a fixed orthonormal n × k frame F, with
the same recursion

    Y_{g+1} = (Y_g · diag(φ'(a_{T−1−g}))) W     (one (B·k × n)·(n × n) product per step),

rescaled the same way (per sample, in float32 if that is the model's dtype, the log-scale in
float64; here every 32 steps, with a per-step fallback when a chunk leaves the safe range).
Cost: B·n²·(k + m·256/T) flops per step instead of B·n³ (measured at n = 128, T = 1000, B = 8,
one CPU thread: the whole curve ≈ 3.2–3.4 forward + backward passes of the model, of which
the sweep's products ≈ 1.4 and the spectral bound ≈ 0.4; ``probes=8`` ≈ 2.2, ``probes=4`` ≈ 1.7
at a measured loss of accuracy; the exact method ≈ 33, about 40% of it the tracked subspace;
docs/probe-accuracy.md). Only a right-multiplied recursion
fits one sweep, so F is fixed for the whole sweep: the sketch sees P_g only through span(F).
F is

- m = min(block, k // 2) directions tracking the top left singular subspace of the products
  that end at h_{T−1}: a forward block power iteration (QR every 16 steps) of a random
  m-frame through J_{T−L}, ..., J_{T−1}, L = min(max_gap, 256) (``_forward_frame``;
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
variance even for orthogonal P.

*Spectral*: the largest singular value of the carried block with orthonormal rows,
‖Fᵀ P_g‖₂ = max over unit u ∈ span(F) of ‖uᵀ P_g‖ ≤ ‖P_g‖₂: a lower bound (up to float
rounding), from the k × k Gram matrices Ŷ_g Ŷ_gᵀ (one batched product per chunk) by a
Rayleigh quotient at a power-iterated vector (``_top_eigenvalue``; after two squarings
where a Kato–Temple bound certifies it to the dtype's rounding, else five). It is as good as the
frame's overlap with the top left singular vector of P_g: a random frame alone would hold
only ~k/n of it, hence the tracked subspace. ``probes >= n`` makes the frame complete (F is
then an orthogonal matrix): the Frobenius norm is exact and the spectral norm exact up to
the Rayleigh-quotient step, at the exact method's cost.

**Any cell** (``path=``): everything above is written for the closed form J_t = diag(φ'(a_t)) W,
but both methods touch J_t only through products with rows, Y ↦ Y J_t (and, for the sketch's
frame, r ↦ J_t r). A model's :meth:`step_views` (:mod:`stability.probes.steps`) gives its
step s_t = f(s_{t−1}, u_t) over the whole state (an LSTM's (h, c)); the general path takes
those products as ``torch.func`` VJPs / JVPs of f (:mod:`stability.probes.operators`), with
the same rescaling. ``path="auto"`` keeps the closed form wherever the view has one.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from .inputs import check_int
from .jacobian_exact import exact_norms
from .jacobian_sketch import sketch_norms
from .views import check_path, label_views, linearize, model_views, select_direction

__all__ = ["jacobian_decay", "half_life"]

METHODS = ("auto", "exact", "sketch")
SPECTRAL_METHODS = ("subspace", "exact")
#: ``method="auto"`` uses the exact products up to this width, the sketch above it
AUTO_EXACT_MAX_N = 32


def jacobian_decay(model, x: Tensor, h0: Tensor | None = None, *, max_gap: int | None = None,
                   method: str = "auto", probes: int = 16, seed: int = 0,
                   spectral: str = "subspace", block: int = 8, iters: int = 1,
                   path: str = "auto") -> pd.DataFrame:
    """Norms of ∂s_{T−1}/∂s_{T−1−g} for every gap g = 0..T−1 and every sequence of the batch.

    Args:
        model: a model with ``step_views(x, h0)`` (:class:`~stability.model.RecurrentNet`; the
            state s is its whole state, e.g. (h, c) for an LSTM) or the closed-form duck contract
            of :mod:`stability.probes.inputs` (``.transition.matrix()``, ``.activation_derivative()``,
            ``model(x, h0) -> (outputs, hidden_states)``).
        x: inputs (T, B, input_size), or integer token ids (T, B); T >= 2.
        h0: initial state (B, n) or None (zeros).
        max_gap: largest gap to measure (default T − 1, the whole curve); the cost is
            proportional to it.
        method: ``"exact"``: the full products P_g (B·n³ per step); ``"sketch"``: ``probes``
            carried directions (B·n²·(probes + block) per step, see the module docstring);
            ``"auto"`` (default): exact when n <= 32 (``AUTO_EXACT_MAX_N``; n is the state size S)
            or when ``spectral="exact"`` is asked for, the sketch otherwise.
        probes: the sketch's number k of carried directions (>= 1; k >= n makes it exact):
            min(block, k // 2) of them track the top left singular subspace, the rest are a
            random frame of its complement for the Frobenius estimate. The cost of the sweep
            is about proportional to k; fewer than the default 16 lose accuracy on slowly
            settling models (spectral, householder: docs/probe-accuracy.md, third round).
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
        path: how the products with the one-step Jacobians J_t are taken: ``"closed"``
            (J_t = diag(φ'_t) W: matrix products), ``"general"`` (VJPs / JVPs of the model's
            step by ``torch.func``, for any cell), ``"auto"`` (default: closed where the view
            has the closed form). Both give the same numbers (tested to 1e-10, float64).

    Returns:
        A DataFrame with one row per (gap, sample): ``gap``, ``sample``, ``spectral``
        (‖P_g‖₂), ``frobenius`` (‖P_g‖_F), and their natural logs ``log_spectral``,
        ``log_frobenius`` (finite even where the norms under- or overflow float64).
        Gap 0 is the identity: spectral 1, Frobenius √n (exactly, with either method).
        ``df.attrs`` says which method produced the numbers: ``{"method": "exact",
        "spectral": ...}`` (Frobenius exact, spectral as above) or ``{"method": "sketch",
        "probes": k, "block": m, "seed": seed}`` (spectral a lower bound, Frobenius an
        unbiased estimate of its square; measured accuracy in docs/probe-accuracy.md), and
        ``path`` and ``state`` (e.g. ``"(h, c), S = 12"``). A model with several views (a
        bidirectional one) gives one curve per view, stacked with a ``direction`` column in
        front (:mod:`stability.probes.views`).

    Runs in the model's dtype and on its device, without autograd (the general path uses
    ``torch.func``); one transfer to the CPU at the end builds the frame.
    """
    if method not in METHODS:
        raise ValueError(f"method={method!r} is not known; allowed: {', '.join(map(repr, METHODS))}")
    if spectral not in SPECTRAL_METHODS:
        raise ValueError(f"spectral={spectral!r} is not known; allowed: {', '.join(map(repr, SPECTRAL_METHODS))}")
    if method == "sketch" and spectral == "exact":
        raise ValueError("spectral='exact' needs the full products: use method='exact' (or 'auto')")
    check_path(path)
    check_int("iters", iters, 1)
    check_int("probes", probes, 1)
    check_int("seed", seed, 0)
    views = model_views(model, x, h0)
    check_int("block", block, 2)
    steps = views[0].states.shape[0]
    gaps = steps - 1 if max_gap is None else check_int("max_gap", max_gap, 0, steps - 1)
    frames, paths, attrs = [], [], {}
    for view in views:
        op = linearize(view, path)
        chosen = method
        if chosen == "auto":
            chosen = "exact" if op.size <= AUTO_EXACT_MAX_N or spectral == "exact" else "sketch"
        with torch.no_grad():
            if chosen == "exact":
                log_spec, log_fro = exact_norms(op, gaps, spectral, block, iters)
                attrs = attrs or {"method": "exact", "spectral": spectral}
            else:
                log_spec, log_fro, k, m = sketch_norms(op, gaps, probes, block, seed)
                attrs = attrs or {"method": "sketch", "probes": k, "block": m, "seed": seed}
        frames.append(_curve_frame(log_spec.cpu(), log_fro.cpu()))
        paths.append(op.path)
    return label_views(frames, views, paths, attrs)


def _curve_frame(log_spec: Tensor, log_fro: Tensor) -> pd.DataFrame:
    gaps1, batch = log_fro.shape
    return pd.DataFrame({
        "gap": torch.arange(gaps1).repeat_interleave(batch).numpy(),
        "sample": torch.arange(batch).repeat(gaps1).numpy(),
        "spectral": log_spec.exp().reshape(-1).numpy(),
        "frobenius": log_fro.exp().reshape(-1).numpy(),
        "log_spectral": log_spec.reshape(-1).numpy(),
        "log_frobenius": log_fro.reshape(-1).numpy(),
    })


def half_life(df: pd.DataFrame, norm: str = "spectral", *, tol: float = 1e-6,
              direction: str | None = None) -> dict:
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
        direction: for a frame of several views (a ``direction`` column), the view to fit
            (default: the first one); the other views' rows are left out.
    Returns:
        ``{"decay_rate": float, "half_life": float, "fit_min_gap": int, "fit_max_gap": int,
        "max_gap": int}``: the rate and half-life, the first and last gap of the fitted line
        (every gap of the frame, so ``fit_max_gap == max_gap``), and the largest gap measured.
    """
    if norm not in ("spectral", "frobenius"):
        raise ValueError(f"norm={norm!r} is not known; allowed: 'spectral', 'frobenius'")
    if not isinstance(df, pd.DataFrame) or "gap" not in df.columns:
        raise TypeError(f"df must be a DataFrame from jacobian_decay (with a 'gap' column), got {type(df).__name__}")
    df = select_direction(df, direction)
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
    gaps = {"fit_min_gap": int(g.min()), "fit_max_gap": int(g.max()), "max_gap": int(df["gap"].max())}
    if (y == -np.inf).any():
        return {"decay_rate": math.inf, "half_life": 0.0, **gaps}
    if (y == np.inf).any():
        return {"decay_rate": -math.inf, "half_life": math.inf, **gaps}
    gc = g - g.mean()
    slope = float((gc * (y - y.mean())).sum() / (gc * gc).sum())
    rate = -slope
    if abs(rate) * float(g.max() - g.min()) < tol:
        return {"decay_rate": 0.0, "half_life": math.inf, **gaps}
    return {"decay_rate": rate, "half_life": math.log(2.0) / rate if rate > 0 else math.inf, **gaps}
