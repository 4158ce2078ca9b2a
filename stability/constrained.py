"""The parametrizations behind :mod:`stability.parametrize`: a weight matrix as a function of
free parameters (``torch.nn.utils.parametrize`` modules), with the inverse map from a weight.

- :class:`SpectralMatrix`: W = U[:, :r] diag(σ) V[:, :r]ᵀ with every σ in (center − margin,
  center + margin), U and V products of Householder reflectors (compact WY);
- :class:`OrthogonalMatrix`: W orthogonal through one of the core's maps (householder, exprnn,
  cayley), built on the transitions' own public methods.

``right_inverse`` follows ``fit`` (exact, project, none): see :mod:`stability.parametrize`.
"""
from __future__ import annotations

import math
from contextlib import contextmanager

import torch
from torch import Tensor, nn

from .checks import check_choice, check_size
from .transitions.base import create
from .transitions.householder import reflectors_from_orthogonal
from .transitions.spectral import (TriangularReflectors, bounded_sigma, check_margin, sigma_to_p,
                                   svd_compose)

FITS = ("exact", "project", "none")
ORTHOGONAL_MAPS = ("householder", "exprnn", "cayley")

#: fraction of the band's width kept free at each edge when ``fit="project"`` clips σ
PROJECT_INSET = 1e-2

__all__ = ["FITS", "ORTHOGONAL_MAPS", "SpectralMatrix", "OrthogonalMatrix", "fitted_band"]


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
