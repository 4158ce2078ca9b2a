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

import math
from contextlib import contextmanager

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from .checks import check_choice, check_size
from .transitions.base import create, option_defaults
from .transitions.householder import reflectors_from_orthogonal
from .transitions.spectral import (TriangularReflectors, bounded_sigma, check_margin, sigma_to_p,
                                   svd_compose)

FITS = ("exact", "project", "none")
ORTHOGONAL_MAPS = ("householder", "exprnn", "cayley")

#: fraction of the band's width kept free at each edge when ``fit="project"`` clips σ
PROJECT_INSET = 1e-2

__all__ = ["FITS", "ORTHOGONAL_MAPS", "SpectralMatrix", "OrthogonalMatrix", "spectral_",
           "orthogonal_", "constrain_", "singular_values", "fitted_band"]


@contextmanager
def _bound(module: nn.Module, name: str, value: Tensor):
    """Make ``module.<name>`` read ``value`` for the duration (its Parameter was removed)."""
    module.__dict__[name] = value
    try:
        yield
    finally:
        del module.__dict__[name]


def _detach_parameter(module: nn.Module, name: str) -> Tensor:
    """Remove the Parameter ``name`` from a core module and return its initial value.

    The parametrization's originals take its place (see :func:`_bound`), so the core module's
    own ``forward``/``matrix`` computes W and no parameter is counted twice.
    """
    value = getattr(module, name).detach().clone()
    delattr(module, name)
    return value


def _matrix_shape(shape: torch.Size, flatten: bool, where: str) -> tuple[int, int]:
    if len(shape) == 2:
        return int(shape[0]), int(shape[1])
    if len(shape) > 2 and flatten:
        return int(shape[0]), int(math.prod(shape[1:]))
    allowed = "2-D (m×n), or more dimensions with flatten=True" if len(shape) > 2 else "2-D (m×n)"
    raise ValueError(f"{where} needs a matrix weight; got shape {tuple(shape)} ({len(shape)}-D); "
                     f"allowed: {allowed}")


def fitted_band(s: Tensor) -> tuple[float, float]:
    """(margin, center) holding singular values ``s`` strictly inside: the rule of
    ``SpectralTransition.from_matrix`` (center = (σ_max + σ_min)/2, margin = (σ_max − σ_min)/2 + σ_min/4)."""
    hi, lo = float(s.max()), float(s.min())
    return (hi - lo) / 2 + lo / 4, (hi + lo) / 2


def _check_rank(s: Tensor, shape, where: str) -> None:
    tiny = float(s.max()) * torch.finfo(torch.float64).eps * max(shape) if s.numel() else 0.0
    if s.numel() == 0 or float(s.min()) <= tiny:
        raise ValueError(f"{where}: the weight of shape {tuple(shape)} is rank-deficient (smallest singular "
                         f"value {float(s.min()) if s.numel() else 0.0:.3g}), so no band (center - margin > 0) "
                         f"holds it; pass margin/center with fit='project' or fit='none'")


def _resolve_reflectors(reflectors, m: int, n: int) -> tuple[int, int]:
    r = min(m, n)
    if reflectors is None:
        pair = (None, None)
    elif isinstance(reflectors, (tuple, list)):
        if len(reflectors) != 2:
            raise ValueError(f"reflectors={reflectors!r} must be an int or a pair (k_u, k_v); "
                             f"allowed: k_u in 1..{m}, k_v in 1..{n}")
        pair = tuple(reflectors)
    else:
        pair = (reflectors, reflectors)
    k_u = r if pair[0] is None else check_size(f"reflectors (U side, size m={m})", pair[0], 1, m)
    k_v = r if pair[1] is None else check_size(f"reflectors (V side, size n={n})", pair[1], 1, n)
    return k_u, k_v


def _polar(q64: Tensor, det_sign: float | None = None) -> Tensor:
    """The nearest orthogonal matrix (Frobenius) to ``q64``; with ``det_sign``, the nearest one of
    that determinant (the direction of the smallest singular value flips)."""
    u, _, vh = torch.linalg.svd(q64)
    if det_sign is not None and float(torch.det(u @ vh)) * det_sign < 0:
        u = u.clone()
        u[:, -1] = -u[:, -1]
    return u @ vh


class _MatrixParametrization(nn.Module):
    """Shared plumbing: the weight's shape, the fit mode, the one-off fresh initialization."""

    def __init__(self, shape, fit: str, where: str):
        super().__init__()
        self.shape = torch.Size(shape)
        self.fit = check_choice("fit", fit, FITS)
        self._where = where
        self._fresh: tuple[Tensor, ...] | None = None  # consumed by the first right_inverse when fit="none"

    def _as_matrix(self, w: Tensor) -> Tensor:
        if not isinstance(w, Tensor):
            raise TypeError(f"{self._where}: expected a tensor, got {type(w).__name__}")
        if w.shape != self.shape:
            raise ValueError(f"{self._where}: expected a weight of shape {tuple(self.shape)}, got {tuple(w.shape)}")
        return w.detach().reshape(self.m, self.n)

    def _shaped(self, w: Tensor) -> Tensor:
        return w if w.shape == self.shape else w.reshape(self.shape)

    def _take_fresh(self, w: Tensor) -> tuple[Tensor, ...] | None:
        if self._fresh is None:
            return None
        fresh, self._fresh = self._fresh, None
        return tuple(t.to(dtype=w.dtype, device=w.device) for t in fresh)

    def extra_repr(self) -> str:
        return f"shape={tuple(self.shape)}, fit={self.fit!r}"


class SpectralMatrix(_MatrixParametrization):
    """Parametrization W (m×n) = U[:, :r] diag(σ) V[:, :r]ᵀ with σ in (center − margin, center + margin).

    ``forward(u_values, v_values, p)``; ``right_inverse(W)`` returns those three tensors
    (see the module docstring for ``fit``). For m = n the layout and the map are exactly
    those of :class:`~stability.transitions.spectral.SpectralTransition`.
    """

    def __init__(self, m: int, n: int, reflectors=None, margin: float = 0.01, center: float = 1.0,
                 fit: str = "exact", shape=None):
        m = check_size("m", m)
        n = check_size("n", n)
        super().__init__((m, n) if shape is None else shape, fit, "spectral_")
        if math.prod(self.shape) != m * n:
            raise ValueError(f"shape={tuple(self.shape)} does not hold an {m}×{n} matrix")
        self.m, self.n, self.r = m, n, min(m, n)
        self.k_u, self.k_v = _resolve_reflectors(reflectors, m, n)
        self.margin, self.center = check_margin(margin, center)
        self.u = TriangularReflectors(self.k_u, m)
        self.v = TriangularReflectors(self.k_v, n)
        fresh_u = _detach_parameter(self.u, "values")
        fresh_v = _detach_parameter(self.v, "values")
        if self.fit == "none":
            self._fresh = (fresh_u, fresh_v, torch.zeros(self.r))

    def sigma(self, p: Tensor) -> Tensor:
        """σ in parameter order (σᵢ pairs with column i of U and V)."""
        return bounded_sigma(p, self.margin, self.center)

    def reflector_vectors(self, u_values: Tensor, v_values: Tensor) -> tuple[Tensor, Tensor]:
        """The (k_u, m) and (k_v, n) upper-triangular reflector matrices."""
        with _bound(self.u, "values", u_values), _bound(self.v, "values", v_values):
            return self.u(), self.v()

    def forward(self, u_values: Tensor, v_values: Tensor, p: Tensor) -> Tensor:
        u, v = self.reflector_vectors(u_values, v_values)
        return self._shaped(svd_compose(u, self.sigma(p), v))

    @torch.no_grad()
    def right_inverse(self, w: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        fresh = self._take_fresh(w)
        if fresh is not None:
            return fresh
        a = self._as_matrix(w)
        if min(self.k_u, self.k_v) < self.r:
            raise ValueError(
                f"spectral_: reflectors=({self.k_u}, {self.k_v}) cannot reproduce a general {self.m}×{self.n} "
                f"weight; fit='{self.fit}' needs at least r = min(m, n) = {self.r} per side "
                f"(allowed: k_u in {self.r}..{self.m}, k_v in {self.r}..{self.n}), or use fit='none'")
        u, s, vh = torch.linalg.svd(a.to(torch.float64), full_matrices=True)
        if self.fit == "exact":
            try:
                p = sigma_to_p(s, self.margin, self.center)
            except ValueError as exc:
                raise ValueError(f"spectral_ (fit='exact') on a weight of shape {tuple(self.shape)}: {exc}; "
                                 f"or pass fit='project' to clip them into the band, or leave margin and "
                                 f"center unset to fit the band to the weight") from None
        else:
            p = self._clip_to_p(s)
        u_dense = reflectors_from_orthogonal(u)[: self.k_u]
        v_dense = reflectors_from_orthogonal(vh.T)[: self.k_v]
        values = (self.u.entries(u_dense), self.v.entries(v_dense), p)
        return tuple(t.to(dtype=w.dtype, device=w.device) for t in values)

    def _clip_to_p(self, s: Tensor) -> Tensor:
        if self.margin == 0:
            return torch.zeros_like(s)
        inset = PROJECT_INSET * 2 * self.margin
        lo, hi = self.center - self.margin + inset, self.center + self.margin - inset
        return sigma_to_p(s.clamp(lo, hi), self.margin, self.center)

    def extra_repr(self) -> str:
        return (f"m={self.m}, n={self.n}, reflectors=({self.k_u}, {self.k_v}), margin={self.margin}, "
                f"center={self.center}, " + super().extra_repr())


class OrthogonalMatrix(_MatrixParametrization):
    """Parametrization of a square weight by an orthogonal map of the core (one tensor: the map's own
    parameter, e.g. the n(n−1)/2 free entries of A for exprnn/cayley, the (k, n) vectors for householder).

    The map is the core transition itself (``stability.transitions.create(map, n, **options)``)
    with its parameter replaced by the parametrization's original tensor.
    """

    def __init__(self, n: int, map: str = "householder", fit: str = "exact", tol: float | None = None,
                 shape=None, **options):
        n = check_size("n", n)
        super().__init__((n, n) if shape is None else shape, fit, f"orthogonal_(map={map!r})")
        if math.prod(self.shape) != n * n:
            raise ValueError(f"shape={tuple(self.shape)} does not hold an {n}×{n} matrix")
        self.m = self.n = n
        self.map = check_choice("map", map, ORTHOGONAL_MAPS)
        if tol is not None and not (isinstance(tol, (int, float)) and not isinstance(tol, bool) and tol > 0):
            raise ValueError(f"tol={tol!r} must be a number > 0")
        self.tol = tol
        self.transition = create(map, n, **options)
        (self._param,) = [name for name, _ in self.transition.named_parameters()]
        fresh = _detach_parameter(self.transition, self._param)
        if self.fit == "none":
            self._fresh = (fresh,)

    def forward(self, x: Tensor) -> Tensor:
        with _bound(self.transition, self._param, x):
            return self._shaped(self.transition.matrix())

    def _tol(self, dtype: torch.dtype) -> float:
        return self.tol if self.tol is not None else math.sqrt(torch.finfo(dtype).eps)

    def _det_sign(self) -> float | None:
        if self.map == "exprnn":
            return 1.0
        if self.map == "cayley":
            return self.transition.determinant()
        return None

    @torch.no_grad()
    def right_inverse(self, w: Tensor) -> Tensor:
        fresh = self._take_fresh(w)
        if fresh is not None:
            return fresh[0]
        a = self._as_matrix(w).to(torch.float64)
        tol = self._tol(w.dtype)
        eye = torch.eye(self.n, dtype=torch.float64, device=a.device)
        det_sign = self._det_sign()
        if self.fit == "exact":
            err = float((a.T @ a - eye).abs().max())
            if err > tol:
                raise ValueError(f"{self._where} (fit='exact'): the weight is not orthogonal: max|WᵀW − I| = "
                                 f"{err:.3g} > tol={tol:.3g}; pass fit='project' (nearest orthogonal matrix) "
                                 f"or fit='none' (the map's own init)")
            q = _polar(a)
            if det_sign is not None and float(torch.det(q)) * det_sign < 0:
                raise ValueError(f"{self._where} (fit='exact'): the weight has determinant "
                                 f"{float(torch.det(q)):+.0f} but this map reaches only determinant "
                                 f"{det_sign:+.0f}; use map='householder' (any orthogonal matrix) or fit='project'")
        else:
            q = _polar(a, det_sign)
        x = self._inverse(q, tol)
        rebuilt = self.forward(x).reshape(self.n, self.n).to(torch.float64)
        err = float((rebuilt - q).abs().max())
        if err > tol:
            hint = ("with reflectors < n only a thin set of orthogonal matrices is reachable; use reflectors=n"
                    if self.map == "householder" else "the matrix lies (nearly) outside the map's reach")
            raise ValueError(f"{self._where}: cannot reproduce the weight (max error {err:.3g} > tol={tol:.3g}); "
                             f"{hint}; or fit='none'")
        return x.to(dtype=w.dtype, device=w.device)

    def _inverse(self, q: Tensor, tol: float) -> Tensor:
        """The map's own inverse (a public transition method; it never reads the removed parameter)."""
        try:
            return self.transition.inverse(q, tol)[self._param]
        except ValueError as exc:
            raise ValueError(f"{self._where}: {exc}; or fit='none'") from None

    def extra_repr(self) -> str:
        return f"map={self.map!r}, n={self.n}, " + super().extra_repr()


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
