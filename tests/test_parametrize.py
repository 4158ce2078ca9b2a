"""spectral_ / orthogonal_: rectangular Spectral parameterization through torch.nn.utils.parametrize."""
import math

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

from stability.parametrize import OrthogonalMatrix, SpectralMatrix, constrain_, orthogonal_, singular_values, spectral_
from stability.transitions.spectral import SpectralTransition


pytestmark = pytest.mark.usefixtures("one_thread")  # small matrices: threads only fight over the cores


def linear(m, n, dtype=torch.float64, seed=0):
    """An nn.Linear whose weight is m×n (out × in)."""
    torch.manual_seed(seed)
    return nn.Linear(n, m, dtype=dtype)


# --- the band holds whatever the optimizer does ------------------------------------------------

@pytest.mark.parametrize("shape", [(12, 7), (7, 12)])
def test_rectangular_singular_values_stay_in_band_under_adversarial_sgd(shape):
    m, n = shape
    r, center = 0.1, 1.0
    constrained = linear(m, n, torch.float32, seed=1)
    spectral_(constrained, margin=r, center=center, fit="project")
    dense = linear(m, n, torch.float32, seed=1)
    for module in (constrained, dense):
        opt = torch.optim.SGD(module.parameters(), lr=1e3)
        for _ in range(100):
            opt.zero_grad()
            s = torch.linalg.svdvals(module.weight)
            half = len(s) // 2
            (-(s[:half].sum()) + s[half:].sum()).backward()  # top half up, bottom half down, hard
            opt.step()
    s = torch.linalg.svdvals(constrained.weight.detach().double())
    assert len(s) == min(m, n)
    assert s.max() <= center + r + 1e-5 and s.min() >= center - r - 1e-5
    assert s.max() > center + r - 1e-2 and s.min() < center - r + 1e-2, "the push must reach both edges"
    assert torch.isfinite(constrained.weight).all()
    assert torch.allclose(singular_values(constrained).double(), s, atol=1e-5)
    s_dense = torch.linalg.svdvals(dense.weight.detach().double())
    assert s_dense.max() > center + r + 1.0, "without the constraint the same push leaves the band"


# --- registering keeps the trained weight --------------------------------------------------------

@pytest.mark.parametrize("shape", [(64, 32), (32, 64)])
def test_right_inverse_then_matrix_reproduces_random_weight(shape):
    g = torch.Generator().manual_seed(2)
    w = torch.randn(*shape, generator=g, dtype=torch.float64)
    lin = linear(*shape)
    with torch.no_grad():
        lin.weight.copy_(w)
    spectral_(lin)  # band fitted to w's singular values
    assert (lin.weight - w).abs().max().item() < 1e-6
    p = lin.parametrizations.weight
    r = min(shape)
    assert p.original2.shape == (r,)
    assert p.original0.numel() == sum(shape[0] - j for j in range(r))  # triangular free entries only
    assert p.original1.numel() == sum(shape[1] - j for j in range(r))
    assert torch.allclose(singular_values(lin), torch.linalg.svdvals(w), atol=1e-10)
    # assignment goes through right_inverse too: new singular vectors, the same (fitting) values
    w2 = torch.linalg.qr(torch.randn(shape[0], shape[0], generator=g, dtype=torch.float64))[0] @ w
    lin.weight = w2
    assert (lin.weight - w2).abs().max().item() < 1e-6


def test_exact_fit_with_a_given_band_and_a_band_too_narrow():
    g = torch.Generator().manual_seed(3)
    w = torch.randn(10, 6, generator=g, dtype=torch.float64)
    s = torch.linalg.svdvals(w)
    lin = linear(10, 6)
    with torch.no_grad():
        lin.weight.copy_(w)
    spectral_(lin, margin=float(s.max()), center=float(s.max()) + 1e-3)
    assert (lin.weight - w).abs().max().item() < 1e-8
    lin2 = linear(10, 6)
    with torch.no_grad():
        lin2.weight.copy_(w)
    with pytest.raises(ValueError, match=r"do not fit.*\[0\.9, 1\.1\].*fit='project'"):
        spectral_(lin2, margin=0.1, center=1.0)
    assert not parametrize.is_parametrized(lin2)
    assert torch.equal(lin2.weight, w)


def test_project_keeps_singular_vectors_and_clips_values():
    g = torch.Generator().manual_seed(4)
    w = torch.randn(9, 5, generator=g, dtype=torch.float64)
    u, s, vh = torch.linalg.svd(w, full_matrices=False)
    lin = linear(9, 5)
    with torch.no_grad():
        lin.weight.copy_(w)
    spectral_(lin, margin=0.5, center=2.0, fit="project")
    inset = 0.01 * 1.0  # 1% of the band's width
    clipped = s.clamp(1.5 + inset, 2.5 - inset)
    assert (s != clipped).any() and (s == clipped).any()  # some values move, some stay
    expected = (u * clipped) @ vh
    assert (lin.weight - expected).abs().max().item() < 1e-10
    assert torch.allclose(torch.linalg.svdvals(lin.weight.detach()), clipped, atol=1e-10)


def test_fit_none_is_the_spectral_rnn_init():
    lin = linear(6, 11)
    spectral_(lin, margin=0.2, center=0.7, fit="none")
    assert torch.allclose(torch.linalg.svdvals(lin.weight.detach()), torch.full((6,), 0.7, dtype=torch.float64))
    # later assignments are reproduced exactly
    u, _, vh = torch.linalg.svd(torch.randn(6, 11, dtype=torch.float64), full_matrices=False)
    w = (u * torch.linspace(0.85, 0.55, 6, dtype=torch.float64)) @ vh
    lin.weight = w
    assert (lin.weight - w).abs().max() < 1e-10


def test_square_case_is_the_spectral_transition():
    torch.manual_seed(5)
    t = SpectralTransition(7, reflectors=3, margin=0.3, center=1.1).double()
    with torch.no_grad():
        t.p.normal_()
    sm = SpectralMatrix(7, 7, reflectors=3, margin=0.3, center=1.1, fit="none")
    assert torch.allclose(sm(t.u.values, t.v.values, t.p), t.matrix(), atol=1e-14)


def test_reflectors_per_side_and_default():
    lin = linear(10, 4)
    spectral_(lin, reflectors=(6, None), fit="none")
    p = lin.parametrizations.weight
    assert (p[0].k_u, p[0].k_v) == (6, 4)
    assert p.original0.numel() == sum(10 - j for j in range(6))
    # reflectors beyond r = min(m, n) never change W: zero gradient
    lin.weight.sum().backward()
    rows, cols = torch.triu_indices(6, 10)
    grad = p.original0.grad
    assert grad[rows >= 4].abs().max() == 0 and grad[rows < 4].abs().max() > 0


@pytest.mark.parametrize("shape, reflectors", [((5, 3), None), ((3, 5), None), ((5, 3), (4, 2)), ((4, 4), 2)])
def test_gradcheck_rectangular_map(shape, reflectors):
    m, n = shape
    sm = SpectralMatrix(m, n, reflectors=reflectors, margin=0.4, center=1.0, fit="none")
    g = torch.Generator().manual_seed(6)
    inputs = (torch.randn(sm.u._rows.numel(), generator=g, dtype=torch.float64, requires_grad=True),
              torch.randn(sm.v._rows.numel(), generator=g, dtype=torch.float64, requires_grad=True),
              torch.randn(sm.r, generator=g, dtype=torch.float64, requires_grad=True))
    assert sm(*inputs).shape == shape
    assert torch.autograd.gradcheck(sm, inputs)


# --- the same math by hand -------------------------------------------------------------------------

class HandSpectralLinear(nn.Module):
    """W = U[:, :r] diag(σ) V[:, :r]ᵀ from the plain definitions: one reflector at a time, dense storage."""

    def __init__(self, u, v, p, bias, margin, center):
        super().__init__()
        self.u, self.v, self.p, self.bias = (nn.Parameter(t.detach().clone()) for t in (u, v, p, bias))
        self.margin, self.center = margin, center

    @staticmethod
    def product(vectors):
        k, size = vectors.shape
        q = torch.eye(size, dtype=vectors.dtype)
        for j in range(k):
            v = vectors[j] * (torch.arange(size) >= j)  # row j acts on coordinates j..size-1
            if v.detach().norm() == 0:
                continue
            q = q @ (torch.eye(size, dtype=v.dtype) - 2 * torch.outer(v, v) / (v @ v))
        return q

    def weight(self):
        r = self.p.shape[0]
        sigma = 2 * self.margin * (torch.sigmoid(self.p) - 0.5) + self.center
        return self.product(self.u)[:, :r] @ torch.diag(sigma) @ self.product(self.v)[:, :r].T

    def forward(self, x):
        return x @ self.weight().T + self.bias


def test_trained_linear_matches_hand_written_equivalent():
    m, n, margin, center = 4, 6, 0.3, 1.0
    lin = linear(m, n, seed=7)
    spectral_(lin, margin=margin, center=center, fit="project")
    p = lin.parametrizations.weight
    k_u, k_v = p[0].k_u, p[0].k_v
    u = torch.zeros(k_u, m, dtype=torch.float64).index_put(tuple(torch.triu_indices(k_u, m)), p.original0.detach())
    v = torch.zeros(k_v, n, dtype=torch.float64).index_put(tuple(torch.triu_indices(k_v, n)), p.original1.detach())
    hand = HandSpectralLinear(u, v, p.original2, lin.bias, margin, center)
    assert torch.allclose(hand.weight(), lin.weight, atol=1e-12)

    g = torch.Generator().manual_seed(8)
    x = torch.randn(32, n, generator=g, dtype=torch.float64)
    y = torch.randn(32, m, generator=g, dtype=torch.float64)
    w_start = lin.weight.detach().clone()
    losses = {}
    for name, module in (("parametrized", lin), ("hand", hand)):
        opt = torch.optim.SGD(module.parameters(), lr=0.5, momentum=0.9)
        losses[name] = []
        for _ in range(25):
            opt.zero_grad()
            loss = ((module(x) - y) ** 2).mean()
            loss.backward()
            opt.step()
            losses[name].append(loss.item())
    assert losses["parametrized"] == pytest.approx(losses["hand"], rel=1e-10, abs=1e-12)
    assert torch.allclose(lin.weight, hand.weight(), atol=1e-10)
    assert (lin.weight - w_start).abs().max() > 0.05, "training must move the weight"
    assert losses["hand"][-1] < 0.8 * losses["hand"][0]


# --- torch.nn.utils.parametrize contract -------------------------------------------------------------

def test_cached_builds_once_and_remove_leaves_last_weight():
    lin = linear(8, 5, seed=9)
    spectral_(lin, margin=0.5, fit="project")
    calls = []
    lin.parametrizations.weight[0].register_forward_hook(lambda *a: calls.append(1))
    x = torch.randn(3, 5, dtype=torch.float64)
    uncached = lin(x) + lin(x)
    assert len(calls) == 2
    with parametrize.cached():
        cached_out = lin(x) + lin(x)
        assert lin.weight is lin.weight
        cached_out.sum().backward()
    assert len(calls) == 3
    assert torch.allclose(uncached, cached_out)
    assert lin.parametrizations.weight.original2.grad is not None
    opt = torch.optim.SGD(lin.parameters(), lr=0.1)
    opt.step()
    last = lin.weight.detach().clone()
    parametrize.remove_parametrizations(lin, "weight")
    assert type(lin) is nn.Linear and isinstance(lin.weight, nn.Parameter)
    assert torch.equal(lin.weight.detach(), last)
    assert {name for name, _ in lin.named_parameters()} == {"weight", "bias"}


def test_constrain_every_linear_of_a_model_with_one_call():
    torch.manual_seed(14)
    mlp = nn.Sequential(nn.Linear(20, 16), nn.Tanh(), nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 3))
    constrain_(mlp, "spectral", margin=0.1, fit="none")
    linears = [m for m in mlp if isinstance(m, nn.Linear)]
    assert all(parametrize.is_parametrized(m, "weight") for m in linears)
    for m in linears:
        s = torch.linalg.svdvals(m.weight.detach())
        assert ((s - 1.0).abs() < 1e-5).all()
    square = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 8))
    constrain_(square, "exprnn", fit="none")
    maps = [m.parametrizations.weight[0] for m in square if isinstance(m, nn.Linear)]
    assert len(maps) == 2 and all(isinstance(p, OrthogonalMatrix) and p.map == "exprnn" for p in maps)
    with pytest.raises(ValueError, match="no submodule of type Linear"):
        constrain_(nn.Sequential(nn.Tanh()))
    with pytest.raises(ValueError, match="how='svd'"):
        constrain_(mlp, "svd")


def test_conv_weight_flattened():
    torch.manual_seed(10)
    conv = nn.Conv2d(3, 4, 3, dtype=torch.float64)
    w = conv.weight.detach().clone()
    spectral_(conv, flatten=True)
    assert conv.weight.shape == w.shape
    assert (conv.weight - w).abs().max() < 1e-10
    assert singular_values(conv).shape == (4,)
    conv(torch.randn(1, 3, 6, 6, dtype=torch.float64)).sum().backward()


# --- orthogonal maps ---------------------------------------------------------------------------------

def random_orthogonal(n, det, seed):
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))
    if torch.sign(torch.det(q)) != det:
        q[:, 0] = -q[:, 0]
    return q


@pytest.mark.parametrize("map, options", [("householder", {}), ("exprnn", {}), ("cayley", {}),
                                          ("cayley", {"negatives": 3})])
def test_orthogonal_exact_reproduces_and_stays_orthogonal(map, options):
    det = -1.0 if options.get("negatives", 0) % 2 else 1.0
    q = random_orthogonal(12, det, seed=11)
    lin = linear(12, 12)
    with torch.no_grad():
        lin.weight.copy_(q)
    orthogonal_(lin, map=map, **options)
    assert (lin.weight - q).abs().max() < 1e-10
    assert singular_values(lin).shape == (12,)
    opt = torch.optim.Adam(lin.parameters(), lr=0.05)
    target = torch.randn(12, 12, dtype=torch.float64)
    for _ in range(20):
        opt.zero_grad()
        ((lin.weight - target) ** 2).sum().backward()
        opt.step()
    w = lin.weight.detach()
    assert (w - q).abs().max() > 0.05
    assert (w.T @ w - torch.eye(12, dtype=torch.float64)).abs().max() < 1e-10


def test_exprnn_logarithm_handles_eigenvalues_at_minus_one():
    lin = linear(6, 6)
    q = -torch.eye(6, dtype=torch.float64)
    q[4:, 4:] = torch.tensor([[0.0, -1.0], [1.0, 0.0]], dtype=torch.float64)  # a rotation by π/2 as well
    with torch.no_grad():
        lin.weight.copy_(q)
    orthogonal_(lin, map="exprnn", fit="exact")
    assert (lin.weight - q).abs().max() < 1e-10


@pytest.mark.parametrize("map", ["householder", "exprnn", "cayley"])
def test_orthogonal_project_and_none(map):
    lin = linear(10, 10, torch.float32, seed=12)
    w = lin.weight.detach().double()
    orthogonal_(lin, map=map, fit="project")
    q = lin.weight.detach().double()
    assert (q.T @ q - torch.eye(10, dtype=torch.float64)).abs().max() < 1e-5
    u, _, vh = torch.linalg.svd(w)
    polar = u @ vh
    reachable = {"householder": None, "exprnn": 1.0, "cayley": (-1.0) ** (10 // 2)}[map]
    if reachable is None or torch.det(polar) * reachable > 0:  # the nearest orthogonal matrix, when reachable
        assert (q - polar).abs().max() < 1e-5
    else:  # else the nearest one of the reachable determinant: the smallest singular direction flips
        u[:, -1] = -u[:, -1]
        assert (q - u @ vh).abs().max() < 1e-5
    fresh = linear(10, 10, torch.float32, seed=12)
    orthogonal_(fresh, map=map, fit="none")
    q = fresh.weight.detach().double()
    assert (q.T @ q - torch.eye(10, dtype=torch.float64)).abs().max() < 1e-5


# --- bad input ---------------------------------------------------------------------------------------

def zero_linear():
    lin = nn.Linear(3, 3)
    nn.init.zeros_(lin.weight)
    return lin


BAD_INPUT = [
    (lambda: spectral_(nn.Conv2d(2, 3, 3)), ValueError,
     r"shape \(3, 2, 3, 3\) \(4-D\); allowed: 2-D .*flatten=True"),
    (lambda: spectral_(nn.Linear(4, 3), "bias"), ValueError, r"shape \(3,\) \(1-D\); allowed: 2-D"),
    (lambda: spectral_(nn.Linear(8, 5), reflectors=6), ValueError,
     r"U side, size m=5\)=6 is out of range; allowed: 1..5"),
    (lambda: spectral_(nn.Linear(8, 5), reflectors=(2, 9)), ValueError,
     r"V side, size n=8\)=9 is out of range; allowed: 1..8"),
    (lambda: spectral_(nn.Linear(8, 5), reflectors=(1, 2, 3)), ValueError, r"pair \(k_u, k_v\)"),
    (lambda: spectral_(nn.Linear(8, 5), reflectors=2.0), TypeError, r"must be an int"),
    (lambda: spectral_(nn.Linear(8, 5), reflectors=3), ValueError, r"at least r = min\(m, n\) = 5 .*fit='none'"),
    (lambda: spectral_(nn.Linear(8, 5), margin=-1.0), ValueError, r"margin=-1.0"),
    (lambda: spectral_(nn.Linear(8, 5), fit="nearest"), ValueError, r"fit='nearest'.*'exact', 'project', 'none'"),
    (lambda: spectral_(nn.Linear(8, 5), "kernel"), ValueError,
     r"no parameter or buffer 'kernel'; allowed: weight, bias"),
    (lambda: spectral_("not a module"), TypeError, r"nn.Module"),
    (lambda: spectral_(zero_linear()), ValueError, r"rank-deficient"),
    (lambda: orthogonal_(nn.Linear(4, 3)), ValueError, r"square weight; got 3×4"),
    (lambda: orthogonal_(nn.Linear(4, 4), map="givens"), ValueError,
     r"map='givens'.*'householder', 'exprnn', 'cayley'"),
    (lambda: orthogonal_(nn.Linear(4, 4), fit="exact"), ValueError, r"not orthogonal: max\|WᵀW − I\| = .*fit='project'"),
    (lambda: orthogonal_(nn.Linear(4, 4), map="exprnn", colour=1), TypeError, r"allowed: init, exp_in_float64"),
]


@pytest.mark.parametrize("call, error, match", BAD_INPUT)
def test_bad_input_raises_clear_errors(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_registering_twice_is_refused():
    lin = nn.Linear(4, 4)
    spectral_(lin, margin=0.1, fit="project")
    with pytest.raises(ValueError, match=r"Linear.weight is already parametrized \(by SpectralMatrix\).*remove_param"):
        spectral_(lin, margin=0.1, fit="project")
    with pytest.raises(ValueError, match="already parametrized"):
        orthogonal_(lin, fit="project")


def test_orthogonal_exact_refuses_unreachable_matrices():
    lin = linear(8, 8)
    with torch.no_grad():
        lin.weight.copy_(random_orthogonal(8, -1.0, seed=13))
    with pytest.raises(ValueError, match=r"determinant -1 but this map reaches only determinant \+1"):
        orthogonal_(lin, map="exprnn", fit="exact")
    with pytest.raises(ValueError, match=r"cannot reproduce the weight .*reflectors=n"):
        orthogonal_(lin, map="householder", reflectors=3, fit="exact")
    orthogonal_(lin, map="householder", reflectors=3, fit="none")  # fine without fitting
    assert lin.parametrizations.weight.original.shape == (3, 8)
    assert math.isclose(singular_values(lin).sum().item(), 8.0)


def test_orthogonal_constrains_a_fresh_layer_by_default():
    """The common case: constrain a layer just built (its weight is not orthogonal): projected."""
    lin = nn.Linear(12, 12).double()
    before = lin.weight.detach().clone()
    orthogonal_(lin, "weight", map="householder")
    w = lin.weight.detach()
    assert (w.T @ w - torch.eye(12, dtype=torch.float64)).abs().max() < 1e-10
    u, _, vh = torch.linalg.svd(before)
    polar = u @ vh
    if torch.linalg.det(polar) * torch.linalg.det(w) > 0:  # the nearest orthogonal matrix of that determinant
        assert (w - polar).abs().max() < 1e-8
