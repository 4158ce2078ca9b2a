"""The stability story for depth: Jacobian norms through a deep feed-forward stack at init.

For an L-layer MLP h_l = φ(W_l h_{l−1} + b_l), the input-output Jacobian after layer l is

    J_l = ∂h_l/∂h_0 = D_l W_l ··· D_1 W_1,   D_l = diag(φ'(W_l h_{l−1} + b_l)),   J_0 = I,

the depth analogue of ∂h_T/∂h_0 through time. With linear layers whose singular values lie in
[σ* − r, σ* + r] (:func:`~stability.parametrize.spectral_`), every singular value of J_l lies in
[(σ* − r)^l, (σ* + r)^l]; a dense stack with PyTorch's default init shrinks by about 1/√3 per layer.

- :func:`build_mlp`: width, depth, nonlinearity (``"linear"``, ``"tanh"``, ``"relu"``) and
  parameterization (``"dense"``, ``"spectral"``, or an orthogonal map: ``"householder"``,
  ``"exprnn"``, ``"cayley"``).
- :func:`jacobian_norms`: ‖J_l‖₂ and ‖J_l‖_F for l = 0..L and every input sample, exact: each
  layer's Jacobian by one batched backward pass, multiplied in float64 with batched
  matrix products (an O(L·B·n³) job: meant for widths up to a few hundred).
- :func:`layer_singular_values`: the singular values of every layer's weight.
- :func:`compare_depth`: both tables for several parameterizations side by side.

All tables are tidy pandas DataFrames (one row per observation).
"""
from __future__ import annotations

import copy

import pandas as pd
import torch
from torch import Tensor, nn

from ..parametrize import ORTHOGONAL_MAPS, orthogonal_, singular_values, spectral_
from ..checks import check_choice, check_size

NONLINEARITIES = ("linear", "tanh", "relu")
PARAMETERIZATIONS = ("dense", "spectral") + ORTHOGONAL_MAPS

__all__ = ["NONLINEARITIES", "PARAMETERIZATIONS", "build_mlp", "jacobian_norms", "layer_singular_values",
           "compare_depth"]

_ACTIVATIONS = {"linear": nn.Identity, "tanh": nn.Tanh, "relu": nn.ReLU}


def build_mlp(width: int, depth: int, nonlinearity: str = "linear", parameterization: str = "dense", *,
              input_size: int | None = None, output_size: int | None = None, bias: bool = True,
              seed: int | None = None, dtype: torch.dtype = torch.float32, **options) -> nn.Sequential:
    """An MLP of ``depth`` layers: ``Sequential(Sequential(Linear, activation), ...)``, one block per layer.

    Layers are width×width, except the first (``input_size`` → width) and the last
    (width → ``output_size``) when those are given. Dense layers keep PyTorch's default init.
    ``"spectral"`` constrains every weight with :func:`~stability.parametrize.spectral_`
    (options: ``reflectors``, ``margin``, ``center``, ``fit``; default ``fit="none"``: random
    reflectors and every σ = center, the Spectral-RNN's init); the orthogonal maps use
    :func:`~stability.parametrize.orthogonal_` (square layers only; default ``fit="none"``).
    ``seed`` makes the build reproducible without touching the global RNG.
    """
    width = check_size("width", width)
    depth = check_size("depth", depth)
    check_choice("nonlinearity", nonlinearity, NONLINEARITIES)
    check_choice("parameterization", parameterization, PARAMETERIZATIONS)
    if parameterization == "dense" and options:
        raise TypeError(f"dense layers take no options; got {', '.join(sorted(options))}")
    sizes = [width] * (depth + 1)
    if input_size is not None:
        sizes[0] = check_size("input_size", input_size)
    if output_size is not None:
        sizes[-1] = check_size("output_size", output_size)
    options = {"fit": "none", **options}
    with torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(seed)
        blocks = []
        for l in range(depth):
            linear = nn.Linear(sizes[l], sizes[l + 1], bias=bias, dtype=dtype)
            if parameterization == "spectral":
                spectral_(linear, "weight", **options)
            elif parameterization != "dense":
                orthogonal_(linear, "weight", map=parameterization, **options)
            blocks.append(nn.Sequential(linear, _ACTIVATIONS[nonlinearity]()))
    return nn.Sequential(*blocks)


def _layers(model: nn.Module) -> list[nn.Module]:
    if not isinstance(model, nn.Sequential) or len(model) == 0:
        raise TypeError(f"expected a non-empty nn.Sequential (each child is one layer), got {type(model).__name__}")
    return list(model.children())


def _in_features(model: nn.Module) -> int:
    for module in model.modules():
        if isinstance(module, nn.Linear):
            return module.in_features
    raise ValueError("cannot infer the input size (no nn.Linear in the model); pass x")


@torch.no_grad()
def _float64_copy(model: nn.Module) -> nn.Module:
    tensors = list(model.parameters()) + list(model.buffers())
    if all(t.dtype == torch.float64 for t in tensors if t.is_floating_point()):
        return model
    return copy.deepcopy(model).double()


def _layer_jacobian(layer: nn.Module, h: Tensor) -> tuple[Tensor, Tensor]:
    """(∂layer(h_b)/∂h_b for every sample b, as (B, out, in); layer(h)): one forward (W built once),
    one batched backward over the `out` basis vectors. Assumes samples do not interact."""
    h = h.detach().requires_grad_(True)
    with torch.enable_grad():
        y = layer(h)
        if y.dim() != 2 or y.shape[0] != h.shape[0]:
            raise ValueError(f"each layer must map (B, in) to (B, out); got {tuple(h.shape)} -> {tuple(y.shape)}")
        out = y.shape[1]
        basis = torch.eye(out, dtype=y.dtype, device=y.device).unsqueeze(1).expand(out, *y.shape)
        (rows,) = torch.autograd.grad(y, h, basis, is_grads_batched=True)  # (out, B, in)
    return rows.transpose(0, 1).detach(), y.detach()


def jacobian_norms(model: nn.Sequential, x: Tensor | None = None, *, batch: int = 4,
                   seed: int = 0) -> pd.DataFrame:
    """‖∂h_l/∂h_0‖ after every layer l = 0..L, per input sample, in float64.

    Args:
        model: an ``nn.Sequential`` whose children are the layers (as :func:`build_mlp` makes).
        x: inputs (B, input_size); default ``batch`` samples from N(0, 1) drawn with ``seed``.

    Returns a DataFrame with columns ``layer`` (0..L, 0 being the identity), ``sample``,
    ``spectral`` (‖J_l‖₂) and ``frobenius`` (‖J_l‖_F).
    """
    layers = _layers(_float64_copy(model))
    if x is None:
        check_size("batch", batch)
        g = torch.Generator().manual_seed(seed)
        x = torch.randn(batch, _in_features(model), generator=g, dtype=torch.float64)
    elif not isinstance(x, Tensor) or x.dim() != 2:
        raise ValueError(f"x must be a (B, input_size) tensor, got {getattr(x, 'shape', type(x).__name__)}")
    device = next((p.device for p in model.parameters()), x.device)
    h = x.detach().to(dtype=torch.float64, device=device)
    b, n = h.shape
    jac = torch.eye(n, dtype=torch.float64, device=device).expand(b, n, n)
    rows = []

    def record(layer: int, j: Tensor) -> None:
        spectral = torch.linalg.matrix_norm(j, ord=2).tolist()
        frobenius = torch.linalg.matrix_norm(j, ord="fro").tolist()
        rows.extend({"layer": layer, "sample": i, "spectral": s, "frobenius": f}
                    for i, (s, f) in enumerate(zip(spectral, frobenius)))

    record(0, jac)
    for l, layer in enumerate(layers, start=1):
        local, h = _layer_jacobian(layer, h)
        jac = torch.bmm(local, jac)
        record(l, jac)
    return pd.DataFrame(rows, columns=["layer", "sample", "spectral", "frobenius"])


def _weighted(block: nn.Module) -> nn.Module | None:
    for module in block.modules():
        w = getattr(module, "weight", None)
        if isinstance(w, Tensor) and w.dim() >= 2:
            return module
    return None


@torch.no_grad()
def layer_singular_values(model: nn.Sequential) -> pd.DataFrame:
    """Singular values of each layer's weight (the first module with a matrix ``weight`` in each
    child), exact for spectral/orthogonal parametrizations. Columns ``layer`` (1..L), ``index``
    (0 = largest), ``sigma``."""
    rows = []
    for l, block in enumerate(_layers(model), start=1):
        module = _weighted(block)
        if module is None:
            continue
        s = singular_values(module, "weight").double().cpu().tolist()
        rows.extend({"layer": l, "index": i, "sigma": v} for i, v in enumerate(s))
    return pd.DataFrame(rows, columns=["layer", "index", "sigma"])


def compare_depth(width: int = 64, depth: int = 50, nonlinearity: str = "linear",
                  parameterizations=("dense", "spectral"), *, batch: int = 4, seed: int = 0,
                  options: dict | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Build one MLP per parameterization (same seed) and return ``(norms, sigmas)``:
    :func:`jacobian_norms` and :func:`layer_singular_values` stacked, with columns
    ``parameterization``, ``nonlinearity``, ``width`` and ``depth`` added. ``options`` maps a
    parameterization to its :func:`build_mlp` options, e.g. ``{"spectral": {"margin": 0.1}}``."""
    parameterizations = list(parameterizations)
    options = options or {}
    unknown = sorted(set(options) - set(parameterizations))
    if unknown:
        raise ValueError(f"options given for parameterization(s) not compared: {', '.join(unknown)}; "
                         f"allowed: {', '.join(parameterizations)}")
    norms, sigmas = [], []
    for name in parameterizations:
        model = build_mlp(width, depth, nonlinearity, name, seed=seed, **options.get(name, {}))
        labels = {"parameterization": name, "nonlinearity": nonlinearity, "width": width, "depth": depth}
        norms.append(jacobian_norms(model, batch=batch, seed=seed).assign(**labels))
        sigmas.append(layer_singular_values(model).assign(**labels))
    return pd.concat(norms, ignore_index=True), pd.concat(sigmas, ignore_index=True)
