"""Lyapunov spectrum of the hidden-state dynamics by the QR (Benettin) method, in float64.

Along a trajectory with one-step Jacobians J_t = diag(φ'(a_t)) W, the Lyapunov exponents are
the growth rates λ_1 ≥ λ_2 ≥ … of k-dimensional volumes under the product J_T ··· J_1:

    λ_i = lim (1/T) log σ_i(J_T ··· J_1).

The QR method (Benettin et al. 1980; Shimada & Nagashima 1979) never forms the product: from
an orthonormal n×k frame Q_0, at every step

    J_t Q_{t−1} = Q_t R_t   (thin QR),     λ_i ≈ (1/(T − w)) Σ_{t > w} log |R_t[i, i]|,

where the first w steps (``warmup``) only align the frame with the most expanding directions
and are not counted. All of it runs in float64 on the model's device, for the whole batch at
once (batched QR); each sequence of the batch is one trajectory.

A linear network with orthogonal W has every exponent 0; with W = diag(s) the exponents are
the log s_i, sorted. For any trajectory, log‖∂h_T/∂h_0‖ / T approaches λ_1.
"""
from __future__ import annotations

import pandas as pd
import torch
from torch import Tensor

from .inputs import check_int, trajectory

__all__ = ["lyapunov_spectrum", "top_exponent"]


def lyapunov_spectrum(model, x: Tensor, k: int | None = None, *, warmup: int | None = None,
                      h0: Tensor | None = None, per_sample: bool = False, seed: int = 0) -> pd.DataFrame:
    """The k largest Lyapunov exponents (per step, natural log) of the trajectory of model on x.

    Args:
        model: a :class:`~stability.model.RecurrentNet` or any model with the duck-typed
            contract of :mod:`stability.probes.inputs`.
        x: inputs (T, B, input_size) or integer token ids (T, B); T >= 2.
        k: how many exponents, 1..n (default n, the whole spectrum).
        warmup: steps that align the frame but are not counted, 0..T−1 (default T // 10).
        h0: initial state (B, n) or None (zeros).
        per_sample: False (default): the mean over the batch's trajectories, one row per
            index; True: one row per (sample, index).
        seed: seeds the random initial frame Q_0 (a local generator; the global RNG is untouched).

    Returns:
        A DataFrame ``index, exponent`` (or ``sample, index, exponent``), index 0 the
        largest, exponents sorted descending (per sample). ``df.attrs`` records ``k``,
        ``warmup`` and ``steps`` (the number of steps averaged).
    """
    w, _, deriv = trajectory(model, x, h0)
    steps, batch, n = deriv.shape
    k = n if k is None else check_int("k", k, 1, n)
    warmup = steps // 10 if warmup is None else check_int("warmup", warmup, 0, steps - 1)
    w64 = w.to(torch.float64)
    with torch.no_grad():
        gen = torch.Generator().manual_seed(seed)
        q0 = torch.linalg.qr(torch.randn(n, k, generator=gen, dtype=torch.float64)).Q
        q = q0.to(w.device).expand(batch, n, k)
        total = torch.zeros(batch, k, dtype=torch.float64, device=w.device)
        for t, d_t in enumerate(deriv.unbind(0)):  # J_t Q = diag(φ'_t) (W Q)
            z = torch.matmul(w64, q).mul_(d_t.to(torch.float64).unsqueeze(2))
            q, r = torch.linalg.qr(z)
            if t >= warmup:
                total += torch.log(torch.diagonal(r, dim1=1, dim2=2).abs())
        exps = torch.sort(total / (steps - warmup), dim=1, descending=True).values.cpu()
    if per_sample:
        df = pd.DataFrame({"sample": torch.arange(batch).repeat_interleave(k).numpy(),
                           "index": torch.arange(k).repeat(batch).numpy(),
                           "exponent": exps.reshape(-1).numpy()})
    else:
        df = pd.DataFrame({"index": torch.arange(k).numpy(), "exponent": exps.mean(dim=0).numpy()})
    df.attrs.update({"k": k, "warmup": warmup, "steps": steps - warmup})
    return df


def top_exponent(df: pd.DataFrame) -> float:
    """λ_1 from a :func:`lyapunov_spectrum` frame (the mean over samples of each sample's largest)."""
    if not isinstance(df, pd.DataFrame) or not {"index", "exponent"} <= set(df.columns):
        raise TypeError(f"df must be a DataFrame from lyapunov_spectrum (columns 'index', 'exponent'), "
                        f"got {type(df).__name__}")
    if len(df) == 0:
        raise ValueError("df is empty")
    if "sample" in df.columns:
        return float(df.groupby("sample")["exponent"].max().mean())
    return float(df["exponent"].max())
