"""Depth probe: Jacobian norms through deep MLPs, dense against spectral."""
import math

import pytest
import torch
from torch import nn

from stability.probes.depth import build_mlp, compare_depth, jacobian_norms, layer_singular_values


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: one torch thread per test


def spread_sigmas(model, scale=3.0, seed=0):
    """Move every layer's σ off the center, across the whole band."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for block in model:
            p = block[0].parametrizations.weight.original2
            p.copy_(torch.randn(p.shape, generator=g) * scale)


def test_50_layer_linear_spectral_mlp_stays_within_the_band_dense_does_not():
    width, depth, r = 16, 50, 0.05
    spectral = build_mlp(width, depth, "linear", "spectral", margin=r, seed=1)
    spread_sigmas(spectral)
    norms = jacobian_norms(spectral, batch=3)
    assert len(norms) == (depth + 1) * 3 and list(norms.columns) == ["layer", "sample", "spectral", "frobenius"]
    low = (1 - r) ** norms.layer
    high = (1 + r) ** norms.layer
    assert ((norms.spectral >= low * (1 - 1e-9)) & (norms.spectral <= high * (1 + 1e-9))).all()
    fro = norms.frobenius / math.sqrt(width)  # every singular value of J_l lies in the band too
    assert ((fro >= low * (1 - 1e-9)) & (fro <= high * (1 + 1e-9))).all()
    last = norms[norms.layer == depth]
    assert last.spectral.max() > 1.2 and last.spectral.min() < last.spectral.max() * 1.0001  # moved off σ* = 1

    sigmas = layer_singular_values(spectral)
    assert len(sigmas) == depth * width
    assert sigmas.sigma.between(1 - r, 1 + r).all()

    dense = build_mlp(width, depth, "linear", "dense", seed=1)
    dense_last = jacobian_norms(dense, batch=3).query("layer == @depth")
    assert (dense_last.spectral < (1 - r) ** depth * 1e-3).all(), "PyTorch's default init vanishes with depth"


def test_bounds_are_tight_at_the_band_edges():
    width, depth, r = 8, 50, 0.02
    for sign, base in ((1.0, 1 + r), (-1.0, 1 - r)):
        model = build_mlp(width, depth, "linear", "spectral", margin=r, seed=2)
        with torch.no_grad():
            for block in model:
                block[0].parametrizations.weight.original2.fill_(sign * 40.0)
        norms = jacobian_norms(model, batch=2)
        expected = base ** norms.layer
        assert ((norms.spectral / expected - 1).abs() < 1e-9).all()


def test_layer_jacobians_match_autograd_on_the_whole_model():
    torch.manual_seed(3)
    model = build_mlp(5, 4, "tanh", "spectral", input_size=3, output_size=2, margin=0.3, fit="project",
                      dtype=torch.float64)
    x = torch.randn(4, 3, dtype=torch.float64)
    norms = jacobian_norms(model, x)
    last = norms[norms.layer == 4].sort_values("sample")
    for b in range(4):
        j = torch.autograd.functional.jacobian(model, x[b:b + 1]).reshape(2, 3)
        assert last.spectral.iloc[b] == pytest.approx(torch.linalg.matrix_norm(j, 2).item(), rel=1e-10)
        assert last.frobenius.iloc[b] == pytest.approx(j.norm().item(), rel=1e-10)
    first = norms[norms.layer == 0]
    assert (first.spectral == 1.0).all() and ((first.frobenius - math.sqrt(3)).abs() < 1e-12).all()


def test_tanh_spectral_is_bounded_above_and_float32_models_are_probed_in_float64():
    width, depth, r = 12, 30, 0.1
    model = build_mlp(width, depth, "tanh", "spectral", margin=r, seed=4)
    assert model[0][0].parametrizations.weight.original0.dtype == torch.float32
    norms = jacobian_norms(model)
    assert (norms.spectral <= (1 + r) ** norms.layer * (1 + 1e-9)).all()
    assert model[0][0].parametrizations.weight.original0.dtype == torch.float32  # the model is untouched


def test_compare_depth_tables():
    norms, sigmas = compare_depth(width=6, depth=5, parameterizations=("dense", "spectral", "householder"),
                                  batch=2, options={"spectral": {"margin": 0.1}})
    assert set(norms.parameterization) == {"dense", "spectral", "householder"}
    assert len(norms) == 3 * 6 * 2
    assert {"parameterization", "nonlinearity", "width", "depth"} <= set(sigmas.columns)
    ortho = sigmas[sigmas.parameterization == "householder"].sigma
    assert ((ortho - 1).abs() < 1e-12).all()
    spectral = norms[norms.parameterization == "spectral"]
    assert ((spectral.spectral - 1).abs() < 1e-6).all()  # σ = center = 1 at init: exact isometry


def test_compare_depth_options_must_name_a_compared_parameterization():
    with pytest.raises(ValueError, match="not compared: exprnn"):
        compare_depth(width=4, depth=2, options={"exprnn": {}})


def test_same_seed_same_model():
    a = build_mlp(6, 3, "relu", "spectral", seed=5)
    b = build_mlp(6, 3, "relu", "spectral", seed=5)
    assert torch.equal(a[2][0].weight, b[2][0].weight)


@pytest.mark.parametrize("call, error, match", [
    (lambda: build_mlp(8, 3, "sigmoid"), ValueError, "nonlinearity='sigmoid'.*'linear', 'tanh', 'relu'"),
    (lambda: build_mlp(8, 0), ValueError, "depth=0"),
    (lambda: build_mlp(8, 3, parameterization="lowrank"), ValueError, "parameterization='lowrank'"),
    (lambda: build_mlp(8, 3, margin=0.1), TypeError, "dense layers take no options"),
    (lambda: build_mlp(8, 3, parameterization="exprnn", input_size=4), ValueError, "square weight"),
    (lambda: jacobian_norms(nn.Linear(3, 3)), TypeError, "nn.Sequential"),
])
def test_bad_input(call, error, match):
    with pytest.raises(error, match=match):
        call()
