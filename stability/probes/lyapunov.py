"""Lyapunov spectrum of the hidden-state dynamics by the QR (Benettin) method, in float64.

Along a trajectory with one-step Jacobians J_t (diag(φ'(a_t)) W for a plain RNN; for any cell
the Jacobian of its step over the whole state, by ``torch.func``), the Lyapunov exponents are
the growth rates λ_1 ≥ λ_2 ≥ … of k-dimensional volumes under the product J_T ··· J_1:

    λ_i = lim (1/T) log σ_i(J_T ··· J_1).

The QR method (Benettin et al. 1980; Shimada & Nagashima 1979) never forms the product: from
an orthonormal n×k frame Q_0, at every step

    J_t Q_{t−1} = Q_t R_t   (thin QR),     λ_i ≈ (1/(T − w)) Σ_{t > w} log |R_t[i, i]|,

where the first w steps (``warmup``) only align the frame with the most expanding directions
and are not counted. All of it runs in float64 on the model's device (the general path's JVPs
in the model's dtype), for the whole batch at once (batched QR); each sequence of the batch is
one trajectory.

A linear network with orthogonal W has every exponent 0; with W = diag(s) the exponents are
the log s_i, sorted. For any trajectory, log‖∂h_T/∂h_0‖ / T approaches λ_1.
"""
from __future__ import annotations

import pandas as pd
import torch
from torch import Tensor

from .inputs import check_int
from .views import check_path, label_views, linearize, model_views, select_direction

__all__ = ["lyapunov_spectrum", "top_exponent"]


def lyapunov_spectrum(model, x: Tensor, k: int | None = None, *, warmup: int | None = None,
                      h0: Tensor | None = None, per_sample: bool = False, seed: int = 0,
                      path: str = "auto") -> pd.DataFrame:
    """The k largest Lyapunov exponents (per step, natural log) of the trajectory of model on x.

    Args:
        model: a model with ``step_views(x, h0)`` (:class:`~stability.model.RecurrentNet`; the
            exponents are those of its whole state, e.g. (h, c) for an LSTM) or the closed-form
            duck contract of :mod:`stability.probes.inputs`.
        x: inputs (T, B, input_size) or integer token ids (T, B); T >= 2.
        k: how many exponents, 1..S (default S, the whole spectrum; S the state size).
        warmup: steps that align the frame but are not counted, 0..T−1 (default T // 10).
        h0: initial state (B, n) or None (zeros).
        per_sample: False (default): the mean over the batch's trajectories, one row per
            index; True: one row per (sample, index).
        seed: seeds the random initial frame Q_0 (a local generator; the global RNG is untouched).
        path: ``"closed"`` (J_t Q = diag(φ'_t) (W Q), float64), ``"general"`` (JVPs of the
            model's step by ``torch.func``, in the model's dtype; the QR in float64) or
            ``"auto"`` (default: closed where the view has the closed form).

    Returns:
        A DataFrame ``index, exponent`` (or ``sample, index, exponent``), index 0 the
        largest, exponents sorted descending (per sample). ``df.attrs`` records ``k``,
        ``warmup``, ``steps`` (the number of steps averaged), ``path`` and ``state``. A model
        with several views (bidirectional) gives one spectrum per view with a ``direction``
        column in front (:mod:`stability.probes.views`).
    """
    check_path(path)
    views = model_views(model, x, h0)
    steps = views[0].states.shape[0]
    size = min(view.size for view in views)
    k = size if k is None else check_int("k", k, 1, size)
    warmup = steps // 10 if warmup is None else check_int("warmup", warmup, 0, steps - 1)
    frames, paths = [], []
    for view in views:
        op = linearize(view, path, dtype=torch.float64)
        exps = _exponents(op, k, warmup, seed)
        if per_sample:
            batch = op.batch
            frames.append(pd.DataFrame({"sample": torch.arange(batch).repeat_interleave(k).numpy(),
                                        "index": torch.arange(k).repeat(batch).numpy(),
                                        "exponent": exps.reshape(-1).numpy()}))
        else:
            frames.append(pd.DataFrame({"index": torch.arange(k).numpy(), "exponent": exps.mean(dim=0).numpy()}))
        paths.append(op.path)
    return label_views(frames, views, paths, {"k": k, "warmup": warmup, "steps": steps - warmup})


def _exponents(op, k: int, warmup: int, seed: int) -> Tensor:
    """(B, k) exponents, sorted descending per sample, on the CPU: the frame Q is carried as
    its k rows, J_t Q one ``op.jvp`` of k rows (in float64 for the closed form)."""
    steps, batch, n = op.steps, op.batch, op.size
    with torch.no_grad():
        gen = torch.Generator().manual_seed(seed)
        q0 = torch.linalg.qr(torch.randn(n, k, generator=gen, dtype=torch.float64)).Q
        rows = q0.T.to(op.device).expand(batch, k, n).contiguous()
        total = torch.zeros(batch, k, dtype=torch.float64, device=op.device)
        for t in range(steps):  # (J_t Q)ᵀ = (Qᵀ Wᵀ) ⊙ φ'_t in closed form
            z = op.jvp(rows, t).to(torch.float64)
            q, r = torch.linalg.qr(z.transpose(1, 2))
            rows = q.transpose(1, 2)
            if t >= warmup:
                total += torch.log(torch.diagonal(r, dim1=1, dim2=2).abs())
        return torch.sort(total / (steps - warmup), dim=1, descending=True).values.cpu()


def top_exponent(df: pd.DataFrame, direction: str | None = None) -> float:
    """λ_1 from a :func:`lyapunov_spectrum` frame (the mean over samples of each sample's largest);
    of one ``direction`` of a frame of several views (default: the first)."""
    if not isinstance(df, pd.DataFrame) or not {"index", "exponent"} <= set(df.columns):
        raise TypeError(f"df must be a DataFrame from lyapunov_spectrum (columns 'index', 'exponent'), "
                        f"got {type(df).__name__}")
    if len(df) == 0:
        raise ValueError("df is empty")
    df = select_direction(df, direction)
    if "sample" in df.columns:
        return float(df.groupby("sample")["exponent"].max().mean())
    return float(df["exponent"].max())
