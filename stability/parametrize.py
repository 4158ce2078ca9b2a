"""Constrain any module's weight with one call: ``torch.nn.utils.parametrize`` integration.

    spectral_(module, "weight", reflectors=None, margin=None, center=None, fit="exact")
    orthogonal_(module, "weight", map="householder" | "exprnn" | "cayley", fit="project", **options)
    constrain_(model, "spectral", margin=0.1, fit="none")      # every nn.Linear in a model

**Spectral, rectangular.** A weight W of shape m×n (``nn.Linear``: out × in) becomes

    W = U[:, :r] diag(σ) V[:, :r]ᵀ,   r = min(m, n),   σᵢ = 2·margin·(sigmoid(pᵢ) − ½) + center,

with U = H(u₀)···H(u_{k_u−1}) a product of reflectors in Rᵐ and V likewise in Rⁿ, both in
compact-WY form (:func:`~stability.transitions.spectral.svd_compose`). As in the square
Spectral-RNN, reflector j acts on the last (side − j) coordinates: the vectors are the rows
of an upper-triangular k×side matrix, stored by their free entries. Every σᵢ stays in
(center − margin, center + margin) whatever the optimizer does.

``reflectors``: an int (both sides) or a pair ``(k_u, k_v)`` (either may be None); each in
1..side. The default r = min(m, n) on both sides reaches every m×n matrix of full rank whose
singular values lie in the band: only reflectors 0..r−1 touch the first r columns of U and
V, so reflectors beyond r never change W (their gradient is zero); they are allowed, not useful.

The three tensors live in ``module.parametrizations.weight.original0`` (U's free entries),
``original1`` (V's) and ``original2`` (p, length r). Build the optimizer after registering.

**From the current weight** (``fit``; torch calls ``right_inverse`` at registration and on
every assignment ``module.weight = X``):

- ``"exact"`` (default): reproduce the weight: SVD in float64, then
  :func:`~stability.transitions.householder.reflectors_from_orthogonal` of the full U (m×m)
  and V (n×n). With neither margin nor center given, the band is fitted to the weight's
  singular values, as in ``SpectralTransition.from_matrix``: center = (σ_max + σ_min)/2,
  margin = (σ_max − σ_min)/2 + σ_min/4. With a band given that cannot hold them (or a
  rank-deficient weight), a ValueError names the values and the band. Needs at least r
  reflectors per side.
- ``"project"``: the nearest weight in the constrained set: the same singular vectors,
  singular values clipped into the band (to 1% of its width inside the edges: exactly at an
  edge p would be infinite, and there sigmoid' is 1/25 of its value at the center, so the
  clipped values can still move). For orthogonal maps: the polar factor (nearest
  orthogonal matrix), with the determinant the map can reach.
- ``"none"``: ignore the current weight; the parameterization's own initialization
  (spectral: random reflectors, every σ = center; orthogonal: the transition's own init).
  Later assignments are then reproduced exactly.

Without a band, ``fit="project"`` and ``fit="none"`` use the Spectral-RNN defaults
(margin 0.01, center 1.0); a partial band fills the missing value from those defaults.

Works with ``parametrize.cached()``; ``parametrize.remove_parametrizations(module,
"weight")`` leaves a plain weight equal to the last materialized one. Weights of more
than two dimensions (convolutions) are viewed as matrices (shape[0], prod(shape[1:])) with
``flatten=True``.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from .checks import check_choice
from .constrained import (FITS, ORTHOGONAL_MAPS, OrthogonalMatrix, SpectralMatrix,  # noqa: F401 (re-exported)
                          _check_rank, _matrix_shape, fitted_band)
from .transitions.base import option_defaults

__all__ = ["FITS", "ORTHOGONAL_MAPS", "SpectralMatrix", "OrthogonalMatrix", "spectral_",
           "orthogonal_", "constrain_", "singular_values", "fitted_band"]


def _target(module, name: str, where: str) -> Tensor:
    if not isinstance(module, nn.Module):
        raise TypeError(f"{where} needs an nn.Module, got {type(module).__name__}")
    if not isinstance(name, str):
        raise TypeError(f"{where}: name must be a string, got {name!r}")
    if parametrize.is_parametrized(module, name):
        kinds = ", ".join(type(p).__name__ for p in module.parametrizations[name])
        raise ValueError(f"{where}: {type(module).__name__}.{name} is already parametrized (by {kinds}); "
                         f"call torch.nn.utils.parametrize.remove_parametrizations(module, {name!r}) first")
    tensor = getattr(module, name, None)
    if not isinstance(tensor, Tensor) or (name not in module._parameters and name not in module._buffers):
        names = list(module._parameters) + list(module._buffers)
        raise ValueError(f"{where}: {type(module).__name__} has no parameter or buffer {name!r}; "
                         f"allowed: {', '.join(names) or '(none)'}")
    if not tensor.is_floating_point():
        raise TypeError(f"{where}: {name} must be a floating-point tensor, got {tensor.dtype}")
    return tensor


def spectral_(module: nn.Module, name: str = "weight", *, reflectors=None, margin: float | None = None,
              center: float | None = None, fit: str = "exact", flatten: bool = False) -> nn.Module:
    """Constrain ``module.<name>`` (m×n) to U Σ Vᵀ, every singular value in [center − margin, center + margin].

    Args:
        reflectors: int for both sides or a pair ``(k_u, k_v)``; default min(m, n) per side.
        margin, center: the band. Both None with ``fit="exact"``: fitted to the current weight
            (:func:`fitted_band`); otherwise a missing value takes the default (0.01, 1.0).
        fit: ``"exact"`` | ``"project"`` | ``"none"`` (see the module docstring).
        flatten: view a weight of more than 2 dimensions as (shape[0], prod(shape[1:])).

    Returns the module (registered in place). Raises ValueError/TypeError on bad input.
    """
    where = "spectral_"
    weight = _target(module, name, where)
    m, n = _matrix_shape(weight.shape, flatten, where)
    check_choice("fit", fit, FITS)
    defaults = option_defaults("spectral")
    if margin is None and center is None and fit == "exact":
        s = torch.linalg.svdvals(weight.detach().reshape(m, n).to(torch.float64))
        _check_rank(s, (m, n), where)
        margin, center = fitted_band(s)
    else:
        margin = defaults["margin"] if margin is None else margin
        center = defaults["center"] if center is None else center
    param = SpectralMatrix(m, n, reflectors=reflectors, margin=margin, center=center, fit=fit, shape=weight.shape)
    parametrize.register_parametrization(module, name, param.to(device=weight.device))
    return module


def orthogonal_(module: nn.Module, name: str = "weight", *, map: str = "householder", fit: str = "project",
                tol: float | None = None, flatten: bool = False, **options) -> nn.Module:
    """Constrain the square ``module.<name>`` to be orthogonal through one of the core's maps.

    Args:
        map: ``"householder"`` (any orthogonal matrix with reflectors=n, the default),
            ``"exprnn"`` (expm of a skew matrix: determinant +1) or ``"cayley"``
            (determinant (−1)^negatives).
        fit: ``"project"`` (default: the nearest orthogonal matrix of a reachable determinant, so a
            freshly built layer, whose weight is not orthogonal, is constrained as it is),
            ``"exact"`` (the weight must already be orthogonal to ``tol`` and reachable by the map)
            or ``"none"`` (the map's own initialization).
        tol: orthogonality / reconstruction tolerance; default sqrt(eps) of the weight's dtype.
        **options: the map's own options (``reflectors``; ``init``, ``exp_in_float64``; ``negatives``).
    """
    where = f"orthogonal_(map={map!r})"
    weight = _target(module, name, where)
    m, n = _matrix_shape(weight.shape, flatten, where)
    check_choice("map", map, ORTHOGONAL_MAPS)
    if m != n:
        raise ValueError(f"{where} needs a square weight; got {m}×{n} (shape {tuple(weight.shape)}); "
                         f"for a rectangular weight use spectral_(..., margin=0) (every σ = center)")
    param = OrthogonalMatrix(n, map=map, fit=fit, tol=tol, shape=weight.shape, **options)
    param = param.to(dtype=weight.dtype, device=weight.device)
    parametrize.register_parametrization(module, name, param)
    return module


def constrain_(model: nn.Module, how: str = "spectral", *, types=(nn.Linear,), name: str = "weight",
               **options) -> nn.Module:
    """Apply :func:`spectral_` (``how="spectral"``) or :func:`orthogonal_` (``how`` a map name) to
    ``<name>`` of every submodule of ``model`` that is an instance of ``types`` (default: every
    ``nn.Linear``), with the same options. Returns ``model``."""
    check_choice("how", how, ("spectral",) + ORTHOGONAL_MAPS)
    targets = [m for m in model.modules() if isinstance(m, types)]
    if not targets:
        raise ValueError(f"constrain_: no submodule of type {', '.join(t.__name__ for t in types)} in "
                         f"{type(model).__name__}")
    for module in targets:
        if how == "spectral":
            spectral_(module, name, **options)
        else:
            orthogonal_(module, name, map=how, **options)
    return model


def singular_values(module: nn.Module, name: str = "weight") -> Tensor:
    """Singular values of ``module.<name>`` as a matrix, descending: exact from the parameters for
    spectral_ and orthogonal_ (all ones), else ``svdvals``. Differentiable."""
    if parametrize.is_parametrized(module, name):
        plist = module.parametrizations[name]
        first = plist[0]
        if len(plist) == 1 and isinstance(first, SpectralMatrix):
            return torch.sort(first.sigma(plist.original2), descending=True).values
        if len(plist) == 1 and isinstance(first, OrthogonalMatrix):
            x = plist.original
            return torch.ones(first.n, dtype=x.dtype, device=x.device)
    w = getattr(module, name)
    return torch.linalg.svdvals(w.reshape(w.shape[0], -1) if w.dim() > 2 else w)
