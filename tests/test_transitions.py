"""The transition interface, the registry and every built-in parameterization."""
from importlib import metadata

import pytest
import torch
from torch import nn

import stability.transitions as T
from stability import registry
from stability import RecurrentNet
from stability.transitions import base
from stability.transitions.spectral import SpectralTransition
from stability.transitions.orthogonal import HouseholderTransition

BUILTINS = ["cayley", "dense", "exprnn", "householder", "spectral"]
ORTHOGONAL = ["cayley", "exprnn", "householder"]


def test_builtins_registered():
    assert set(BUILTINS) <= set(T.available())


@pytest.mark.parametrize("name", BUILTINS)
def test_gradcheck_matrix(name):
    torch.manual_seed(0)
    opts = {"margin": 0.5} if name == "spectral" else {}
    t = T.create(name, 5, **opts).double()
    params = list(t.parameters())

    def fn(*values):
        torch.nn.utils.vector_to_parameters  # noqa: B018 (documentation: we swap parameters below)
        for p, v in zip(params, values):
            p.data = v
        return torch.func.functional_call(t, {n: v for (n, _), v in zip(t.named_parameters(), values)}, ())

    inputs = tuple(p.detach().clone().requires_grad_(True) for p in params)
    if name == "spectral":  # move off p = 0 so sigmoid' varies
        inputs[-1].data.normal_()
    assert torch.autograd.gradcheck(fn, inputs)


def _w_and_params(name, n, dtype, seed=3):
    torch.manual_seed(seed)
    t = T.create(name, n).to(dtype)
    params = {k: p.detach().clone() for k, p in t.named_parameters()}
    for p in params.values():  # off the init's special points (identity reflectors, p = 0, ...)
        p.add_(0.1 * torch.randn_like(p))
    return (lambda values: torch.func.functional_call(t, values, ())), params


@pytest.mark.parametrize("name, n, dtype", [(name, 6, torch.float64) for name in BUILTINS]
                         + [("spectral", 70, torch.float64), ("exprnn", 6, torch.float32)])
def test_torch_func_grad_of_w_equals_autograd(name, n, dtype):
    """torch.func.grad over every W (the hand-written Functions included: spectral at n = 70
    has two blocks of reflectors, exprnn in float32 uses _SkewExpm7) gives autograd's gradient."""
    w_of, params = _w_and_params(name, n, dtype)
    weight = torch.randn(n, n, dtype=dtype, generator=torch.Generator().manual_seed(4))
    loss = lambda values: (w_of(values) * weight).sum() + w_of(values).square().sum()  # noqa: E731
    got = torch.func.grad(loss)(params)
    leaves = {k: p.clone().requires_grad_(True) for k, p in params.items()}
    want = torch.autograd.grad(loss(leaves), list(leaves.values()))
    assert got.keys() == leaves.keys()
    tol = 1e-12 if dtype == torch.float64 else 1e-5  # func and autograd may round differently
    for (key, g), w in zip(got.items(), want):
        assert w.abs().max() > 0, key
        torch.testing.assert_close(g, w, rtol=tol, atol=tol * w.abs().max().item(), msg=key)


def test_torch_func_jacrev_of_spectral_w_equals_autograd():
    """Row by row (chunk_size=1): the hand-written backwards write into buffers (out=), which
    vmap, jacrev's default over the rows, does not support."""
    w_of, params = _w_and_params("spectral", 5, torch.float64)
    names = list(params)
    got = torch.func.jacrev(w_of, chunk_size=1)(params)
    want = torch.autograd.functional.jacobian(
        lambda *values: w_of(dict(zip(names, values))), tuple(params.values()))
    for key, w in zip(names, want):
        torch.testing.assert_close(got[key], w, rtol=1e-12, atol=1e-14, msg=key)


@pytest.mark.parametrize("name", BUILTINS)
def test_singular_values_match_svdvals(name):
    torch.manual_seed(1)
    opts = {"margin": 0.3} if name == "spectral" else {}
    t = T.create(name, 12, **opts).double()
    if name == "spectral":
        with torch.no_grad():
            t.p.normal_()
    sv = t.singular_values()
    assert torch.allclose(sv, torch.linalg.svdvals(t.matrix()), atol=1e-10)
    assert sv.shape == (12,)


@pytest.mark.parametrize("name", ORTHOGONAL)
def test_orthogonal_stays_orthogonal_float32(name):
    torch.manual_seed(2)
    n = 256
    t = T.create(name, n)
    eye = torch.eye(n)

    def err():
        w = t.matrix().detach()
        return (w.T @ w - eye).abs().max().item()

    assert err() < 1e-5
    opt = torch.optim.Adam(t.parameters(), lr=1e-2)
    target = torch.randn(n, n)
    for _ in range(100):
        opt.zero_grad()
        ((t.matrix() - target) ** 2).sum().backward()
        opt.step()
    assert err() < 1e-5


def test_spectral_singular_values_stay_in_band_under_adversarial_sgd():
    torch.manual_seed(3)
    n, r, center = 32, 0.1, 1.0
    t = SpectralTransition(n, reflectors=8, margin=r, center=center)
    opt = torch.optim.SGD(t.parameters(), lr=1e4)
    for step in range(100):
        opt.zero_grad()
        w = t.matrix()
        # push the top singular values up and the bottom ones down, hard
        s = torch.linalg.svdvals(w)
        (-(s[: n // 2].sum()) + s[n // 2:].sum()).backward()
        opt.step()
    s = torch.linalg.svdvals(t.matrix().detach().double())
    assert s.max() <= center + r + 1e-5 and s.min() >= center - r - 1e-5
    assert s.max() > center + r - 1e-2, "the push should reach the band's edge"
    assert torch.allclose(t.singular_values().double(), s, atol=1e-5)


def test_spectral_starts_at_center_and_uses_triangular_layout():
    t = SpectralTransition(10, reflectors=4, margin=0.2, center=0.9).double()
    assert torch.allclose(t.singular_values(), torch.full((10,), 0.9, dtype=torch.float64))
    u = t.u()
    assert u.shape == (4, 10) and torch.equal(u, torch.triu(u))
    assert t.u.values.numel() == sum(10 - j for j in range(4))


def test_spectral_from_matrix_reproduces_random_w():
    g = torch.Generator().manual_seed(4)
    w = torch.randn(64, 64, generator=g, dtype=torch.float64)
    t = SpectralTransition.from_matrix(w)
    rel = ((t.matrix() - w).norm() / w.norm()).item()
    assert rel < 1e-5
    t2 = SpectralTransition.from_matrix(w, margin=20.0, center=20.001)
    assert ((t2.matrix() - w).norm() / w.norm()).item() < 1e-5


def test_spectral_from_matrix_margin_too_small():
    w = torch.randn(8, 8, dtype=torch.float64)
    with pytest.raises(ValueError, match="larger margin"):
        SpectralTransition.from_matrix(w, margin=0.01, center=1.0)


@pytest.mark.parametrize("bad", [torch.zeros(3, 3, dtype=torch.float64), torch.ones(3, 4)])
def test_spectral_from_matrix_rejects_singular_or_non_square(bad):
    with pytest.raises(ValueError, match="nonsingular|square"):
        SpectralTransition.from_matrix(bad)


@pytest.mark.parametrize("det_sign", [1.0, -1.0])
def test_householder_reaches_any_orthogonal(det_sign):
    g = torch.Generator().manual_seed(5)
    q, _ = torch.linalg.qr(torch.randn(16, 16, generator=g, dtype=torch.float64))
    if torch.sign(torch.det(q)) != det_sign:
        q[:, 3] = -q[:, 3]
    t = HouseholderTransition.from_matrix(q)
    assert t.reflectors == 16
    assert (t.matrix() - q).abs().max() < 1e-10


def test_householder_from_matrix_rejects_non_orthogonal():
    with pytest.raises(ValueError, match="orthogonal"):
        HouseholderTransition.from_matrix(torch.randn(4, 4, dtype=torch.float64))


def test_exprnn_and_cayley_definitions():
    torch.manual_seed(6)
    e = T.create("exprnn", 6).double()
    a = e.skew()
    assert torch.allclose(a, -a.T)
    assert torch.allclose(e.matrix(), torch.linalg.matrix_exp(a))
    c = T.create("cayley", 6, negatives=2).double()
    a = c.skew()
    eye = torch.eye(6, dtype=torch.float64)
    d = torch.diag(torch.tensor([1.0, 1, 1, 1, -1, -1], dtype=torch.float64))  # scoRNN: the −1's last
    assert torch.allclose(c.matrix(), torch.linalg.inv(eye + a) @ (eye - a) @ d)
    assert e.skew_params.numel() == 15  # n(n-1)/2 free parameters


@pytest.mark.parametrize("init", ["xavier", "orthogonal", "identity", "normal"])
def test_dense_inits(init):
    torch.manual_seed(7)
    t = T.create("dense", 20, init=init, spectral_radius=0.9)
    w = t.matrix().detach().double()
    if init == "identity":
        assert torch.equal(w, torch.eye(20, dtype=torch.float64))
    if init == "orthogonal":
        assert torch.allclose(w.T @ w, torch.eye(20, dtype=torch.float64), atol=1e-5)
    if init == "normal":
        assert abs(torch.linalg.eigvals(w).abs().max().item() - 0.9) < 1e-5


@pytest.mark.parametrize("call, match", [
    (lambda: T.create("nope", 8), "available: cayley, dense, exprnn, householder"),
    (lambda: T.create("dense", 0), "n=0"),
    (lambda: T.create("dense", 8, init="zeros"), "init='zeros'"),
    (lambda: T.create("dense", 8, colour=1), "allowed: init, spectral_radius"),
    (lambda: T.create("spectral", 8, reflectors=9), "reflectors=9 .*1..8"),
    (lambda: T.create("spectral", 8, reflectors=0), "reflectors=0"),
    (lambda: T.create("householder", 8, reflectors=12), "reflectors=12"),
    (lambda: T.create("spectral", 8, margin=-0.1), "margin=-0.1"),
    (lambda: T.create("spectral", 8, margin=1.0, center=1.0), "center - margin"),
    (lambda: T.create("cayley", 8, negatives=9), "negatives=9"),
])
def test_bad_options_raise_clear_errors(call, match):
    with pytest.raises((ValueError, TypeError), match=match):
        call()


def test_type_errors():
    with pytest.raises(TypeError, match="n must be an int"):
        T.create("dense", 8.0)
    with pytest.raises(TypeError, match="margin must be a number"):
        T.create("spectral", 8, margin="big")


def test_third_party_transition_by_decorator_works_in_model():
    @T.register("test_diagonal")
    class Diagonal(T.Transition):
        def __init__(self, n, scale: float = 0.5):
            super().__init__(n)
            self.d = nn.Parameter(torch.full((n,), scale))

        def matrix(self):
            return torch.diag(self.d)

    try:
        assert "test_diagonal" in T.available()
        model = RecurrentNet(3, 4, 2, transition="test_diagonal", scale=0.25).double()
        x = torch.randn(7, 2, 3, dtype=torch.float64)
        out, states = model(x)
        out.sum().backward()
        assert out.shape == (7, 2, 2) and states.shape == (7, 2, 4)
        assert model.transition.d.grad is not None and model.transition.d.grad.abs().sum() > 0
        ref = RecurrentNet(3, 4, 2, transition="test_diagonal", scale=0.25, engine="loop").double()
        ref.load_state_dict(model.state_dict())
        assert torch.allclose(ref(x)[0], out)
    finally:
        base.TRANSITIONS.unregister("test_diagonal")


def test_entry_point_plugins_are_loaded(monkeypatch):
    ep = metadata.EntryPoint(name="plugin_dense", value="stability.transitions.dense:DenseTransition",
                             group=base.ENTRY_POINT_GROUP)
    broken = metadata.EntryPoint(name="broken", value="no_such_module:Thing", group=base.ENTRY_POINT_GROUP)
    monkeypatch.setattr(registry.metadata, "entry_points",
                        lambda group: [ep, broken] if group == base.ENTRY_POINT_GROUP else [])
    monkeypatch.setattr(base.TRANSITIONS, "_loaded", False)
    try:
        with pytest.warns(UserWarning, match="broken"):
            names = T.available()
        assert "plugin_dense" in names and "broken" not in names
        assert T.create("plugin_dense", 4).matrix().shape == (4, 4)
    finally:
        base.TRANSITIONS.unregister("plugin_dense")
