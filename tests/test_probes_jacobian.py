"""jacobian_decay and half_life against the definition ∂h_{T−1}/∂h_{T−1−g} (autograd), in float64."""
import math

import pytest
import torch
from torch.autograd.functional import jacobian

from stability import RecurrentNet
from stability.probes import half_life, jacobian_decay, lyapunov_spectrum, top_exponent
from stability.transitions import SpectralTransition

from test_probes_common import LinearNet, linear_net, orthogonal, probes_one_thread  # noqa: F401 (autouse fixture)


def reference_norms(model, x, h0):
    """(spectral, frobenius) of ∂h_{T−1}/∂h_{T−1−g}, g = 0..T−1, per sample, by autograd."""
    with torch.no_grad():
        _, states = model(x, h0)
    steps, batch, n = states.shape
    spec = torch.empty(steps, batch, dtype=torch.float64)
    fro = torch.empty(steps, batch, dtype=torch.float64)
    for g in range(steps):
        if g == 0:
            jac = torch.eye(n, dtype=torch.float64).expand(batch, n, n)
        else:
            s = steps - 1 - g  # restart the recurrence from state s with the inputs after it
            full = jacobian(lambda h: model(x[s + 1:], h)[1][-1], states[s])  # (B, n, B, n)
            jac = torch.stack([full[b, :, b, :] for b in range(batch)])
        spec[g] = torch.linalg.matrix_norm(jac, ord=2)
        fro[g] = torch.linalg.matrix_norm(jac)
    return spec, fro


def as_grid(df, col):
    steps = df["gap"].max() + 1
    return torch.tensor(df.sort_values(["gap", "sample"])[col].to_numpy()).reshape(steps, -1)


def rel(a, b):
    return ((a - b).abs() / b.abs()).max().item()


def tanh_model(transition, nonlinearity="tanh", n=8, seed=0, **opts):
    torch.manual_seed(seed)
    model = RecurrentNet(3, n, 2, transition, nonlinearity=nonlinearity, **opts).double()
    if transition == "spectral":
        with torch.no_grad():
            model.transition.p.normal_()
    return model


@pytest.mark.parametrize("case", ["dense-tanh", "spectral-tanh", "exprnn-tanh", "householder-relu", "linear"])
def test_matches_autograd(case):
    if case == "linear":
        torch.manual_seed(3)
        model = linear_net(torch.randn(8, 8, dtype=torch.float64) / 8 ** 0.5)
    else:
        name, nonlin = case.split("-")
        opts = {"reflectors": 5, "margin": 0.4} if name == "spectral" else {}
        model = tanh_model(name, nonlin, **opts)
    x = torch.randn(20, 3, 3, dtype=torch.float64)
    h0 = torch.randn(3, 8, dtype=torch.float64) * 0.5
    ref_spec, ref_fro = reference_norms(model, x, h0)
    for spectral in ("exact", "subspace"):  # n = 8 <= 2·block: both use the SVD
        df = jacobian_decay(model, x, h0, spectral=spectral)
        assert df.attrs == {"method": "exact", "spectral": spectral, "path": "closed", "state": "h, S = 8"}  # n = 8 <= 32: "auto" is exact
        assert list(df.columns) == ["gap", "sample", "spectral", "frobenius", "log_spectral", "log_frobenius"]
        assert len(df) == 20 * 3
        assert rel(as_grid(df, "spectral"), ref_spec) < 1e-8
        assert rel(as_grid(df, "frobenius"), ref_fro) < 1e-8
        assert rel(as_grid(df, "log_spectral").exp(), ref_spec) < 1e-8
    # the sketch with probes >= n carries a complete frame: Frobenius exact, spectral a lower
    # bound within the Rayleigh-quotient step
    df = jacobian_decay(model, x, h0, method="sketch", probes=50)
    assert {k: df.attrs[k] for k in ("method", "probes", "block", "seed")} == {"method": "sketch", "probes": 8, "block": 4, "seed": 0}
    assert list(df.columns) == ["gap", "sample", "spectral", "frobenius", "log_spectral", "log_frobenius"]
    assert rel(as_grid(df, "frobenius"), ref_fro) < 1e-8
    ratio = as_grid(df, "spectral") / ref_spec
    assert ratio.max() < 1 + 1e-10 and ratio.min() > 0.99


def test_gap_zero_is_identity_and_max_gap():
    model = tanh_model("dense", n=6)
    x = torch.randn(12, 2, 3, dtype=torch.float64)
    df = jacobian_decay(model, x)
    first = df[df.gap == 0]
    assert torch.allclose(torch.tensor(first.spectral.to_numpy()), torch.ones(2, dtype=torch.float64))
    assert torch.allclose(torch.tensor(first.frobenius.to_numpy()), torch.full((2,), math.sqrt(6), dtype=torch.float64))
    short = jacobian_decay(model, x, max_gap=4)
    assert short.gap.max() == 4
    assert torch.allclose(torch.tensor(short.log_spectral.to_numpy()),
                          torch.tensor(df[df.gap <= 4].log_spectral.to_numpy()))


def test_subspace_tracking_agrees_with_svd():
    """n = 48 > 2·block: the tracked subspace, after the exact first gaps, against the SVD."""
    torch.manual_seed(1)
    for name in ("dense", "exprnn"):
        model = RecurrentNet(4, 48, 1, name).double()
        x = torch.randn(160, 3, 4, dtype=torch.float64)
        exact = jacobian_decay(model, x, spectral="exact")
        fast = jacobian_decay(model, x, block=4, method="exact")
        assert exact.attrs["method"] == fast.attrs["method"] == "exact"
        diff = fast.log_spectral - exact.log_spectral
        assert (diff <= 1e-12).all()              # a lower bound
        assert diff.abs().max() < 1e-3            # and a close one
        assert (fast.log_frobenius - exact.log_frobenius).abs().max() < 1e-12


def test_token_inputs_equal_one_hot():
    model = tanh_model("dense", n=6)
    tokens = torch.randint(0, 3, (10, 2))
    one_hot = torch.nn.functional.one_hot(tokens, 3).double()
    a, b = jacobian_decay(model, tokens), jacobian_decay(model, one_hot)
    assert (a.log_spectral - b.log_spectral).abs().max() < 1e-12


def test_orthogonal_linear_norms_are_one():
    n = 24
    model = linear_net(orthogonal(n))
    df = jacobian_decay(model, torch.randn(300, 2, 3, dtype=torch.float64))
    assert (df.spectral - 1).abs().max() < 1e-6
    assert (df.frobenius / math.sqrt(n) - 1).abs().max() < 1e-6
    assert half_life(df) == {"decay_rate": 0.0, "half_life": math.inf,
                             "fit_min_gap": 0, "fit_max_gap": 299, "max_gap": 299}


def test_orthogonal_linear_float32_long_sequence():
    """T = 1000 in float32: the rescaled products neither drift nor underflow."""
    n = 40
    model = linear_net(orthogonal(n, dtype=torch.float32))
    df = jacobian_decay(model, torch.randn(1000, 2, 3))
    assert (df.spectral - 1).abs().max() < 1e-3
    assert (df.frobenius / math.sqrt(n) - 1).abs().max() < 1e-3


def test_contracting_float32_matches_float64():
    """Strong contraction: norms reach e^-700 (far below float32's range) and still agree."""
    torch.manual_seed(2)
    model = RecurrentNet(3, 12, 1, "dense", init="normal", spectral_radius=0.5)
    x = torch.randn(1000, 2, 3) * 2
    lo = jacobian_decay(model, x)
    hi = jacobian_decay(model.double(), x.double())
    assert lo.log_spectral.min() < -300
    assert ((lo.log_spectral - hi.log_spectral).abs() / hi.log_spectral.abs().clip(lower=1)).max() < 1e-4
    assert ((lo.log_frobenius - hi.log_frobenius).abs() / hi.log_frobenius.abs().clip(lower=1)).max() < 1e-4


@pytest.mark.parametrize("margin", [0.05, 0.3])
def test_spectral_band_on_linear_model(margin):
    """σ_i(W) ∈ [1 − r, 1 + r] ⇒ every σ_i(W^g) ∈ [(1 − r)^g, (1 + r)^g]."""
    n = 10
    torch.manual_seed(4)
    t = SpectralTransition(n, reflectors=n, margin=margin).double()
    with torch.no_grad():
        t.p.normal_(0, 3)
    model = LinearNet(t).double()
    df = jacobian_decay(model, torch.randn(60, 2, 3, dtype=torch.float64))
    svals = torch.linalg.svdvals(t.matrix().detach())
    for g in (1, 5, 20, 59):
        row = df[df.gap == g]
        lo, hi = (1 - margin) ** g, (1 + margin) ** g
        for col, scale in (("spectral", 1.0), ("frobenius", math.sqrt(n))):
            vals = torch.tensor(row[col].to_numpy()) / scale
            assert (vals >= lo * (1 - 1e-9)).all() and (vals <= hi * (1 + 1e-9)).all(), (g, col)
        # and the exact value: ‖W^g‖₂ (the inputs do not enter a linear model's Jacobian)
        wg = torch.linalg.matrix_power(t.matrix().detach(), g)
        assert abs(row.spectral.iloc[0] / torch.linalg.matrix_norm(wg, ord=2).item() - 1) < 1e-9
    assert svals.min() > 1 - margin and svals.max() < 1 + margin


def test_half_life_of_diagonal_linear_model():
    """W = diag(s): ‖W^g‖₂ = s_max^g, so the decay rate is −log s_max, the half-life ln 2/(−log s_max)."""
    s = torch.tensor([0.9, 0.5, 0.8, 0.3], dtype=torch.float64)
    model = linear_net(torch.diag(s))
    x = torch.randn(50, 2, 3, dtype=torch.float64)
    df = jacobian_decay(model, x)
    fit = half_life(df)
    assert abs(fit["decay_rate"] + math.log(0.9)) < 1e-10
    assert abs(fit["half_life"] - math.log(2) / -math.log(0.9)) < 1e-8
    # the top Lyapunov exponent is the same rate
    assert abs(top_exponent(lyapunov_spectrum(model, x, 1, warmup=25)) - math.log(0.9)) < 1e-3
    # exploding: a negative rate and no half-life
    up = half_life(jacobian_decay(linear_net(torch.diag(s * 2)), x))
    assert abs(up["decay_rate"] + math.log(1.8)) < 1e-10 and up["half_life"] == math.inf
    # Frobenius: log ‖W^g‖_F is not linear in g; the fit still decays
    assert half_life(df, "frobenius")["decay_rate"] > 0


def test_half_life_reports_the_fitted_gap_range():
    """The fit range and the largest gap are those of the frame; the rate ignores the extra keys."""
    s = torch.tensor([0.9, 0.5, 0.8], dtype=torch.float64)
    x = torch.randn(40, 2, 3, dtype=torch.float64)
    df = jacobian_decay(linear_net(torch.diag(s)), x, max_gap=25)
    fit = half_life(df)
    assert list(fit) == ["decay_rate", "half_life", "fit_min_gap", "fit_max_gap", "max_gap"]
    assert (fit["fit_min_gap"], fit["fit_max_gap"], fit["max_gap"]) == (0, 25, 25)
    assert all(type(fit[k]) is int for k in ("fit_min_gap", "fit_max_gap", "max_gap"))
    assert abs(fit["decay_rate"] + math.log(0.9)) < 1e-10
    # a frame cut to gaps 5..17 fits over exactly those
    part = half_life(df[(df.gap >= 5) & (df.gap <= 17)], "frobenius")
    assert (part["fit_min_gap"], part["fit_max_gap"], part["max_gap"]) == (5, 17, 17)


def test_half_life_edge_cases():
    import pandas as pd

    dead = pd.DataFrame({"gap": [0, 1, 2], "sample": 0, "spectral": [1.0, 0.0, 0.0], "frobenius": [1.0, 0.0, 0.0]})
    assert half_life(dead) == {"decay_rate": math.inf, "half_life": 0.0,
                               "fit_min_gap": 0, "fit_max_gap": 2, "max_gap": 2}
    with pytest.raises(ValueError, match="norm='nuclear'"):
        half_life(dead, "nuclear")
    with pytest.raises(ValueError, match="at least 2"):
        half_life(dead[dead.gap == 0])
    with pytest.raises(TypeError, match="df must be a DataFrame"):
        half_life([1, 2])


def test_bad_inputs():
    model = tanh_model("dense", n=6)
    x = torch.randn(10, 2, 3, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"x has T=1 steps; allowed: T >= 2"):
        jacobian_decay(model, x[:1])
    with pytest.raises(ValueError, match=r"x must have shape \(T, B, input_size\), got \(10, 2\)"):
        jacobian_decay(model, x[:, :, 0])
    with pytest.raises(TypeError, match="x must be a torch.Tensor"):
        jacobian_decay(model, [[1.0]])
    with pytest.raises(ValueError, match=r"h0 must have shape \(B=2, (n|hidden_size)=6\), got \(3, 6\)"):
        jacobian_decay(model, x, torch.zeros(3, 6, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"max_gap=10 is out of range; allowed: 0..9"):
        jacobian_decay(model, x, max_gap=10)
    with pytest.raises(ValueError, match=r"spectral='svd' is not known; allowed: 'subspace', 'exact'"):
        jacobian_decay(model, x, spectral="svd")
    with pytest.raises(ValueError, match=r"block=1 is out of range"):
        jacobian_decay(model, x, block=1)
    with pytest.raises(TypeError, match=r"model must be a recurrent model .* lacks .transition.matrix\(\), "
                                        r".activation_derivative"):
        jacobian_decay(torch.nn.Linear(3, 3), x)
    with pytest.raises(TypeError, match=r"iters must be an int"):
        jacobian_decay(model, x, iters=1.5)
    with pytest.raises(ValueError, match=r"method='fast' is not known; allowed: 'auto', 'exact', 'sketch'"):
        jacobian_decay(model, x, method="fast")
    with pytest.raises(ValueError, match=r"probes=0 is out of range; allowed: >= 1"):
        jacobian_decay(model, x, method="sketch", probes=0)
    with pytest.raises(ValueError, match=r"seed=-1 is out of range"):
        jacobian_decay(model, x, method="sketch", seed=-1)
    with pytest.raises(ValueError, match=r"spectral='exact' needs the full products"):
        jacobian_decay(model, x, method="sketch", spectral="exact")


# ---------------------------------------------------------------------------------------
# the sketch (method="sketch"): k carried probe directions instead of the full products
# ---------------------------------------------------------------------------------------
def sketch_vs_exact(name, n=64, steps=200, batch=3, seed=0, **opts):
    torch.manual_seed(seed)
    model = RecurrentNet(4, n, 2, name).double()
    if name == "spectral":
        with torch.no_grad():
            model.transition.p.normal_()
    x = torch.randn(steps, batch, 4, dtype=torch.float64)
    exact = jacobian_decay(model, x, method="exact", spectral="exact")
    sketch = jacobian_decay(model, x, method="sketch", **opts)
    return exact, sketch


@pytest.mark.parametrize("name", ["dense", "spectral", "exprnn"])
def test_sketch_against_exact(name):
    """n = 64, T = 200, float64, default probes (k = 16: 8 tracked + 8 random directions)."""
    exact, sketch = sketch_vs_exact(name)
    assert sketch.attrs == {"method": "sketch", "probes": 16, "block": 8, "seed": 0, "path": "closed",
                            "state": "h, S = 64"}
    assert (sketch[["gap", "sample"]] == exact[["gap", "sample"]]).all().all()
    # spectral: a lower bound, exact at the median gap, within 5% at >= 90% of the gaps, within
    # 1% at >= 90% of the gaps >= 32, and never a factor 3 off (a random frame alone: ~2x low
    # at nearly every gap)
    diff = as_grid(sketch, "log_spectral") - as_grid(exact, "log_spectral")
    assert diff.max() < 1e-9
    assert diff.median() > -1e-3
    assert (diff > -0.05).double().mean() >= 0.9
    assert (diff[32:] > -0.01).double().mean() >= 0.9
    assert diff.min() > -math.log(3)
    # Frobenius: unbiased, relative SD <= sqrt(2/(k - m)) = 0.5 at any gap (module docstring):
    # the squared-norm ratio within 1 ± 4 SD at every gap; its mean log near 0; and (far
    # tighter, as the tracked subspace holds most of the mass) within 1 ± 0.1 in rms
    ratio = (2 * (as_grid(sketch, "log_frobenius") - as_grid(exact, "log_frobenius"))).exp()
    sd = math.sqrt(2 / 8)
    assert ratio.max() < 1 + 4 * sd and ratio.min() > 0
    assert abs(ratio.log().mean()) < 0.05
    assert ((ratio - 1) ** 2).mean().sqrt() < 0.1
    assert (as_grid(sketch, "log_frobenius")[0] - 0.5 * math.log(64)).abs().max() < 1e-12


def test_sketch_frobenius_is_unbiased():
    """Over 40 seeds the mean squared-norm estimate matches the exact one (a 4-sigma z-test)."""
    torch.manual_seed(5)
    model = RecurrentNet(4, 40, 2, "dense").double()
    x = torch.randn(40, 2, 4, dtype=torch.float64)
    exact = as_grid(jacobian_decay(model, x, method="exact"), "log_frobenius")
    runs = torch.stack([as_grid(jacobian_decay(model, x, method="sketch", probes=8, seed=s), "log_frobenius")
                        for s in range(40)])  # (seeds, gaps, batch); k = 8: 4 tracked + 4 random
    ratio = (2 * (runs - exact)).exp()
    mean, sd = ratio.mean(0), ratio.std(0)
    for g in (3, 10, 39):
        z = (mean[g] - 1).abs() / (sd[g] / math.sqrt(40)).clamp_min(1e-12)
        assert (z < 4).all(), (g, mean[g], sd[g])
    assert (sd[3:] > 1e-3).all()  # a real estimate (not exact), so the test can fail
    # the spectral bound holds for every seed
    spec = torch.stack([as_grid(jacobian_decay(model, x, method="sketch", probes=8, seed=s), "log_spectral")
                        for s in range(3)])
    assert (spec - as_grid(jacobian_decay(model, x, method="exact", spectral="exact"), "log_spectral")).max() < 1e-9


def test_sketch_orthogonal_linear_is_exact():
    """P_g = W^g orthogonal: the orthonormal frame's rows stay orthonormal, so both norms are
    exact (the complement frame is Haar, not Gaussian: no variance for a flat spectrum)."""
    n = 64
    model = linear_net(orthogonal(n))
    df = jacobian_decay(model, torch.randn(300, 2, 3, dtype=torch.float64))
    assert df.attrs["method"] == "sketch"  # n = 64 > 32: "auto" is the sketch
    assert (df.spectral - 1).abs().max() < 1e-9
    assert (df.frobenius / math.sqrt(n) - 1).abs().max() < 1e-9
    assert half_life(df) == {"decay_rate": 0.0, "half_life": math.inf,
                             "fit_min_gap": 0, "fit_max_gap": 299, "max_gap": 299}
    lo = jacobian_decay(linear_net(orthogonal(48, dtype=torch.float32)), torch.randn(1000, 2, 3))
    assert lo.attrs["method"] == "sketch"
    assert (lo.spectral - 1).abs().max() < 1e-3
    assert (lo.frobenius / math.sqrt(48) - 1).abs().max() < 1e-3


def test_sketch_deterministic_and_seeded():
    model = tanh_model("dense", n=40)
    x = torch.randn(50, 2, 3, dtype=torch.float64)
    a = jacobian_decay(model, x, seed=3)
    b = jacobian_decay(model, x, seed=3)
    c = jacobian_decay(model, x, seed=4)
    assert a.attrs["seed"] == 3 and c.attrs["seed"] == 4
    assert a.equals(b)
    assert (a.log_frobenius - c.log_frobenius).abs().max() > 1e-6
    torch.manual_seed(123)
    before = torch.randn(3)
    torch.manual_seed(123)
    jacobian_decay(model, x)
    assert torch.equal(torch.randn(3), before)  # the global RNG is untouched


def test_auto_method_rule():
    x = torch.randn(30, 2, 3, dtype=torch.float64)
    assert jacobian_decay(tanh_model("dense", n=32), x).attrs["method"] == "exact"
    assert jacobian_decay(tanh_model("dense", n=33), x).attrs["method"] == "sketch"
    assert jacobian_decay(tanh_model("dense", n=33), x, spectral="exact").attrs["method"] == "exact"
    assert jacobian_decay(tanh_model("dense", n=33), x, method="exact").attrs == {
        "method": "exact", "spectral": "subspace", "path": "closed", "state": "h, S = 33"}
    small = jacobian_decay(tanh_model("dense", n=6), x, method="sketch", probes=3, block=2)
    assert small.attrs == {"method": "sketch", "probes": 3, "block": 1, "seed": 0, "path": "closed", "state": "h, S = 6"}


def test_sketch_gap_zero_and_max_gap():
    model = tanh_model("dense", n=40)
    x = torch.randn(30, 2, 3, dtype=torch.float64)
    df = jacobian_decay(model, x, method="sketch")
    first = df[df.gap == 0]
    assert (first.spectral - 1).abs().max() < 1e-12
    assert (first.frobenius / math.sqrt(40) - 1).abs().max() < 1e-12
    short = jacobian_decay(model, x, method="sketch", max_gap=4)
    assert short.gap.max() == 4 and len(short) == 10
    zero = jacobian_decay(model, x, method="sketch", max_gap=0)
    assert len(zero) == 2 and (zero.spectral - 1).abs().max() < 1e-12


def test_sketch_contracting_float32_matches_float64():
    """Contraction by ~20x per step: the fast chunks leave float32's range and are redone with a
    rescaling per step; the log-norms reach e^-1000 and agree with float64 (same seed, same frame)."""
    torch.manual_seed(2)
    model = RecurrentNet(3, 40, 1, "dense", init="normal", spectral_radius=0.05)
    x = torch.randn(400, 2, 3) * 2
    lo = jacobian_decay(model, x, method="sketch")
    hi = jacobian_decay(model.double(), x.double(), method="sketch")
    assert lo.log_spectral.min() < -1000
    for col in ("log_spectral", "log_frobenius"):
        assert ((lo[col] - hi[col]).abs() / hi[col].abs().clip(lower=1)).max() < 1e-4
    exact = jacobian_decay(model, x.double(), method="exact", spectral="exact")
    assert (hi.log_spectral - exact.log_spectral).max() < 1e-9


def test_sketch_dead_relu_gives_zero_norms():
    torch.manual_seed(0)
    model = RecurrentNet(3, 40, 1, "dense", nonlinearity="relu").double()
    with torch.no_grad():
        model.input_map.bias.fill_(-100.0)  # every unit off: φ' ≡ 0, P_g = 0 for g >= 1
    x = torch.randn(50, 2, 3, dtype=torch.float64)
    for method in ("sketch", "exact"):
        df = jacobian_decay(model, x, method=method)
        later = df[df.gap > 0]
        assert not df.isna().any().any()
        assert (later.spectral == 0).all() and (later.frobenius == 0).all()
        assert (later.log_spectral == -math.inf).all()
        assert (df[df.gap == 0].spectral - 1).abs().max() < 1e-12


def unit_trace_psd(eigenvalues, seed):
    """PSD matrices (N, k, k) with the given eigenvalues (N, k), in random orthonormal bases (float64)."""
    gen = torch.Generator().manual_seed(seed)
    q = torch.linalg.qr(torch.randn(*eigenvalues.shape, eigenvalues.shape[1], generator=gen,
                                    dtype=torch.float64)).Q
    lam = eigenvalues / eigenvalues.sum(1, keepdim=True)
    return (q * lam.unsqueeze(1)) @ q.transpose(1, 2)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_top_eigenvalue_early_exit_against_eigvalsh(dtype, monkeypatch):
    """_top_eigenvalue's certified early exit (Kato–Temple after 2 squarings) against eigvalsh in
    float64 and against the plain 5-squaring path: a lower bound, within the dtype's rounding of
    λ_max where certified, and the plain path's numbers exactly where not."""
    from stability.probes import jacobian_sketch as js
    k, gen = 16, torch.Generator().manual_seed(3)
    separated = torch.rand(200, k, generator=gen, dtype=torch.float64) * 0.02
    separated[:, 0] = 1.0  # λ₂/λ₁ <= 0.02: certified after two squarings
    close = torch.rand(200, k, generator=gen, dtype=torch.float64) * 0.1
    close[:, :2] = torch.tensor([1.0, 0.97])  # λ₂/λ₁ = 0.97: goes on to five squarings
    flat = torch.full((1, k), 1.0, dtype=torch.float64)  # I/k: every vector is an eigenvector
    block = torch.zeros(1, k, k, dtype=torch.float64)  # the largest diagonal entry is not in the top block
    block[0, :2, :2] = torch.tensor([[0.2, 0.19], [0.19, 0.2]])
    block[0, 2, 2] = 0.25
    block[0, 3:, 3:] = torch.eye(k - 3, dtype=torch.float64) * 0.35 / (k - 3)
    gram = torch.cat([unit_trace_psd(separated, 0), unit_trace_psd(close, 1), unit_trace_psd(flat, 2), block,
                      torch.zeros(1, k, k, dtype=torch.float64)]).to(dtype)
    truth = torch.linalg.eigvalsh(gram.double())[:, -1]
    lam = js._top_eigenvalue(gram)
    eps = torch.finfo(dtype).eps
    assert lam.dtype == torch.float64 and lam.shape == (403,)
    assert (lam <= truth * (1 + 8 * eps) + 1e-300).all()  # a lower bound (up to rounding)
    # separated: to the rounding of the float32 squarings that pick the vector (quadratic in it)
    assert (lam[:200] >= truth[:200] * (1 - (8 * eps if dtype == torch.float32 else 1e-12))).all()
    assert abs(lam[400] - 1 / k) < 8 * eps / k and abs(lam[401] - 0.39) < 1e-3 and lam[402] == 0
    rho, certified = js._rayleigh(gram, _powered(gram, 2))
    assert not certified[200:400].any()  # close eigenvalues: never certified after two squarings
    if dtype == torch.float32:
        assert certified[:200].all()
    else:
        assert certified[:200].any()
    assert (rho[certified] >= truth[certified] * (1 - 16 * eps)).all()  # what is certified holds
    monkeypatch.setattr(js, "GRAM_EARLY_EXITS", ())
    plain = js._top_eigenvalue(gram)
    assert torch.equal(lam[200:400], plain[200:400])  # not certified: the plain path's numbers
    assert ((lam - plain).abs() <= 8 * eps * truth).all()


def _powered(gram, squarings):
    """G^(2^s) up to a positive factor, by plain squarings in float64 (the direction picker's input)."""
    a = gram.double()
    for _ in range(squarings):
        a = a @ a
        a = a / a.diagonal(dim1=1, dim2=2).sum(1).clamp_min(1e-300).view(-1, 1, 1)
    return a.to(gram.dtype)
