"""Spectrum of the recurrent matrix W: singular values, condition number, spectral radius.

For W = transition.matrix():

- singular values σ_1 ≥ … ≥ σ_n from ``transition.singular_values()`` (exact where the
  parameterization knows them, e.g. the Spectral-RNN's Σ; otherwise an SVD);
- condition number κ = σ_1 / σ_n (inf when σ_n = 0);
- spectral radius ρ = max |λ_i(W)| (eigenvalues of W in float64): ρ ≤ σ_1, and ρ^t is the
  asymptotic growth of ‖W^t‖;
- orthogonality error ‖WᵀW − I‖_F, in float64 (0 for the orthogonal parameterizations).

Tracked over training (the runner's ``probe`` split) these show whether a parameterization
keeps its singular values in their band.
"""
from __future__ import annotations

import math

import pandas as pd
import torch

__all__ = ["spectrum", "spectrum_summary"]


def _transition(model):
    """The transition of a model, or the object itself when it is a transition."""
    t = getattr(model, "transition", None)
    if t is not None and callable(getattr(t, "matrix", None)):
        return t
    if callable(getattr(model, "matrix", None)):
        return model
    kind = "exposes steps but " if callable(getattr(model, "step_views", None)) else ""
    raise TypeError(f"model must be a recurrent model with .transition.matrix() or a transition with "
                    f".matrix() (the spectrum probe reads the singular values of W); {type(model).__name__} "
                    f"{kind}has no transition matrix (a gated cell has none: probe it with jacobian, "
                    f"gradient_flow or lyapunov)")


def spectrum_summary(model) -> dict:
    """``{"sigma_max", "sigma_min", "condition", "spectral_radius", "orthogonality_error"}`` of W.

    ``model``: a model with ``.transition`` (or a transition itself). Computed in float64.
    """
    return _compute(model)[1]


def _compute(model) -> tuple[torch.Tensor, dict]:
    t = _transition(model)
    with torch.no_grad():
        w = t.matrix().detach()
        if w.dim() != 2 or w.shape[0] != w.shape[1]:
            raise TypeError(f"transition.matrix() must be square, got shape {tuple(w.shape)}")
        sv = _singular_values(t, w)
        w64 = w.to(torch.float64)
        # the general eigenproblem runs on the CPU in any case (torch synchronizes for it on CUDA)
        radius = torch.linalg.eigvals(w64.cpu()).abs().max().item()
        eye = torch.eye(w.shape[0], dtype=torch.float64, device=w.device)
        ortho = torch.linalg.matrix_norm(w64.T @ w64 - eye).item()
    smax, smin = float(sv[0]), float(sv[-1])
    return sv, {"sigma_max": smax, "sigma_min": smin,
                "condition": smax / smin if smin > 0 else math.inf,
                "spectral_radius": radius, "orthogonality_error": ortho}


def _singular_values(t, w) -> torch.Tensor:
    get = getattr(t, "singular_values", None)
    sv = get() if callable(get) else torch.linalg.svdvals(w)
    sv = sv.detach().to(torch.float64).reshape(-1)
    if sv.numel() != w.shape[0]:
        raise TypeError(f"transition.singular_values() returned {sv.numel()} values for n={w.shape[0]}")
    return torch.sort(sv, descending=True).values.cpu()


def spectrum(model) -> pd.DataFrame:
    """The singular values of W, one row each: columns ``index`` (0 = largest), ``singular_value``.

    ``df.attrs`` holds the scalars of :func:`spectrum_summary` (``sigma_max``, ``sigma_min``,
    ``condition``, ``spectral_radius``, ``orthogonality_error``). ``model``: a model with
    ``.transition`` (or a transition itself).
    """
    sv, summary = _compute(model)
    df = pd.DataFrame({"index": range(sv.numel()), "singular_value": sv.numpy()})
    df.attrs.update(summary)
    return df
