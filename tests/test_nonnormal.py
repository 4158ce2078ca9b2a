"""nnRNN's transition W = P (Λ + T) Pᵀ against plain formulas and the official construction (float64)."""
from __future__ import annotations

import math

import pytest
import torch

from stability import transitions as T
from stability.transitions.nonnormal import NonNormalTransition

pytestmark = pytest.mark.usefixtures("one_thread")
F64 = torch.float64


def perturbed(n: int, seed: int = 0, scale: float = 0.5, **options) -> NonNormalTransition:
    torch.manual_seed(seed)
    t = T.create("nnrnn", n, **options).double()
    with torch.no_grad():
        for p in t.parameters():
            p.add_(scale * torch.randn_like(p))
    return t


def plain_parts(t: NonNormalTransition):
    """P, Λ, T written out entry by entry from the parameters (no use of the module's helpers)."""
    n = t.n
    a = torch.zeros(n, n, dtype=F64)
    upper = torch.zeros(n, n, dtype=F64)
    k = 0
    for i in range(n):
        for j in range(i + 1, n):
            a[i, j] = t.skew_params[k]
            upper[i, j] = t.upper_params[k]
            k += 1
    p = torch.linalg.matrix_exp(a - a.T)
    lam = torch.zeros(n, n, dtype=F64)
    for b in range(n // 2):
        g, th = t.gammas[b], t.thetas[b]
        lam[2 * b:2 * b + 2, 2 * b:2 * b + 2] = g * torch.stack(
            [torch.stack([torch.cos(th), -torch.sin(th)]), torch.stack([torch.sin(th), torch.cos(th)])])
    if n % 2:
        lam[n - 1, n - 1] = t.gammas[-1]
    return p, lam, upper


@pytest.mark.parametrize("n", [1, 2, 5, 8])
def test_matrix_is_the_plain_formula(n):
    t = perturbed(n, seed=n)
    with torch.no_grad():
        p, lam, upper = plain_parts(t)
        torch.testing.assert_close(t.matrix(), p @ (lam + upper) @ p.T, rtol=0, atol=1e-12)
        torch.testing.assert_close(t.schur_basis(), p, rtol=0, atol=1e-12)
        torch.testing.assert_close(t.rotation_blocks(), lam, rtol=0, atol=1e-15)
        torch.testing.assert_close(t.strictly_upper(), upper, rtol=0, atol=0)


def official_rec(log_p, upp_t, thetas, alphas):
    """A port of the official OrthoRNNCell.calc_rec (KyleGoyette/nnRNN, RNN_Cell.py), even n only:
    P = expm of the skew part of log_P's strict upper triangle, D rotation blocks from the thetas,
    an alpha block filling each 2×2 block, rec = P (UppT ∘ M + alpha_block ∘ D) Pᵀ."""
    n = log_p.shape[0]
    a = log_p.triu(diagonal=1)
    p = torch.linalg.matrix_exp(a - a.t())
    mask = torch.triu(torch.ones_like(upp_t), diagonal=1)
    d = torch.zeros_like(upp_t)
    alpha_block = torch.zeros_like(upp_t)
    for i in range(0, n, 2):
        th, al = thetas[i // 2], alphas[i // 2]
        d[i, i], d[i, i + 1], d[i + 1, i], d[i + 1, i + 1] = th.cos(), -th.sin(), th.sin(), th.cos()
        alpha_block[i:i + 2, i:i + 2] = al
    return p @ (upp_t * mask + alpha_block * d) @ p.t()


@pytest.mark.parametrize("n", [2, 6, 10])
def test_matrix_equals_the_official_construction(n):
    t = perturbed(n, seed=10 + n)
    rows, cols = torch.triu_indices(n, n, offset=1)
    gen = torch.Generator().manual_seed(n)
    # the official full n×n tensors: junk below the diagonal must not matter
    log_p = torch.randn(n, n, generator=gen, dtype=F64)
    upp_t = torch.randn(n, n, generator=gen, dtype=F64)
    with torch.no_grad():
        log_p[rows, cols] = t.skew_params
        upp_t[rows, cols] = t.upper_params
        rec = official_rec(log_p, upp_t, t.thetas, t.gammas)
        torch.testing.assert_close(t.matrix(), rec, rtol=0, atol=1e-12)


@pytest.mark.parametrize("n", [3, 4])
def test_gradcheck_every_parameter(n):
    t = perturbed(n, seed=20 + n)
    names = [k for k, _ in t.named_parameters()]
    assert names == ["skew_params", "thetas", "gammas", "upper_params"]
    base = {k: p.detach().clone() for k, p in t.named_parameters()}
    for name in names:
        def matrix_of(value, name=name):
            return torch.func.functional_call(t, {**base, name: value}, ())
        assert torch.autograd.gradcheck(matrix_of, (base[name].clone().requires_grad_(True),)), name


@pytest.mark.parametrize("n", [7, 16])
def test_p_is_orthogonal(n):
    t = perturbed(n, seed=30 + n, scale=3.0, init="random")
    with torch.no_grad():
        p = t.schur_basis()
    torch.testing.assert_close(p.T @ p, torch.eye(n, dtype=F64), rtol=0, atol=1e-12)


@pytest.mark.parametrize("n", [6, 7])
def test_without_t_the_singular_values_are_the_block_magnitudes(n):
    t = perturbed(n, seed=40 + n)
    with torch.no_grad():
        t.upper_params.zero_()
        g = t.gammas.abs()
        expected = torch.cat([g[:n // 2], g[:n // 2], g[n // 2:]]).sort(descending=True).values
        torch.testing.assert_close(t.singular_values(), expected, rtol=0, atol=1e-12)
        torch.testing.assert_close(torch.linalg.svdvals(t.matrix()), expected, rtol=0, atol=1e-12)


def test_eigenvalues_are_those_of_the_diagonal_blocks_of_lambda_plus_t():
    """T's entries outside the 2×2 blocks leave the eigenvalues alone (γ e^{±iθ} when the in-block
    entries (2k, 2k+1) of T, which the official mask includes, are zero) but move the singular values."""
    t = perturbed(7, seed=50, scale=1.0)
    with torch.no_grad():
        factor = t.schur_factor()
        blocks = [factor[i:i + 2, i:i + 2] for i in range(0, 6, 2)] + [factor[6:, 6:]]
        expected = torch.cat([torch.linalg.eigvals(b) for b in blocks])
        eig = torch.linalg.eigvals(t.matrix())
        for z in expected:
            assert (eig - z).abs().min() < 1e-9
        t.upper_params[torch.tensor([0, 11, 18])] = 0.0  # (0, 1), (2, 3), (4, 5) in row-major order
        assert (t.strictly_upper().diagonal(1)[0::2] == 0).all()
        g, th = t.gammas, t.thetas
        rotations = torch.cat([g[:3] * torch.exp(1j * th), g[:3] * torch.exp(-1j * th), g[3:].to(torch.complex128)])
        eig = torch.linalg.eigvals(t.matrix())
        for z in rotations:
            assert (eig - z).abs().min() < 1e-9
        assert (t.singular_values() - torch.linalg.svdvals(t.rotation_blocks())).abs().max() > 0.1


def test_odd_n_has_a_lone_real_block():
    t = perturbed(5, seed=60)
    assert t.thetas.shape == (2,) and t.gammas.shape == (3,)
    assert sum(p.numel() for p in t.parameters()) == 25  # n(n−1) + n//2 + ⌈n/2⌉ = n²
    lam = t.rotation_blocks()
    assert lam[4, 4] == t.gammas[2] and (lam[4, :4] == 0).all() and (lam[:4, 4] == 0).all()


def test_defaults_are_the_official_init():
    torch.manual_seed(0)
    t = T.create("nnrnn", 64)
    assert t.options() == {"init": "cayley", "upper_init_std": 0.0, "delta": 1e-4, "t_decay": 1e-6,
                           "init_from": None, "init_options": None}
    assert (t.upper_params == 0).all() and (t.gammas == 1).all()
    assert ((t.thetas >= 0) & (t.thetas < 2 * math.pi)).all() and t.thetas.std() > 1.0
    torch.manual_seed(0)
    cayley_init_p = T.create("exprnn", 64, init="cayley").skew_params
    torch.testing.assert_close(t.skew_params, cayley_init_p)
    assert T.create("nnrnn", 8, upper_init_std=0.1).upper_params.abs().max() > 0


def test_penalty_is_the_official_gamma_loss_plus_weight_decay_on_t():
    t = perturbed(6, seed=70)
    got = t.penalty(delta=0.1, t_decay=1e-3)
    expected = 0.1 * ((t.gammas - 1) ** 2).sum() + 0.5e-3 * (t.upper_params ** 2).sum()
    torch.testing.assert_close(got, expected, rtol=1e-14, atol=0)
    got.backward()
    torch.testing.assert_close(t.upper_params.grad, 1e-3 * t.upper_params.detach(), rtol=1e-14, atol=0)
    torch.testing.assert_close(t.penalty().detach(), 1e-4 * ((t.gammas.detach() - 1) ** 2).sum()
                               + 0.5e-6 * (t.upper_params.detach() ** 2).sum())


@pytest.mark.parametrize("w", [
    torch.randn(9, 9, generator=torch.Generator().manual_seed(1), dtype=F64),              # complex pairs and reals
    torch.triu(torch.randn(6, 6, generator=torch.Generator().manual_seed(2), dtype=F64)),  # real eigenvalues only
    torch.roll(torch.eye(8, dtype=F64), 1, 0),                                            # det −1, eigenvalues on the circle
    torch.diag(torch.ones(4, dtype=F64), 1),                                               # nilpotent
], ids=["random", "triangular", "cyclic", "shift"])
def test_from_matrix_reaches_any_real_matrix(w):
    t = NonNormalTransition.from_matrix(w)
    torch.testing.assert_close(t.matrix(), w, rtol=0, atol=1e-12)
    assert (t.gammas[:t.n // 2] >= 0).all()  # the paired magnitudes; a lone real block keeps its sign


def test_init_from_another_transition():
    torch.manual_seed(3)
    dense = T.create("dense", 7)
    torch.manual_seed(3)
    t = T.create("nnrnn", 7, init_from="dense")
    torch.testing.assert_close(t.matrix(), dense.matrix(), rtol=0, atol=1e-6)


@pytest.mark.parametrize("call, error, match", [
    (lambda: T.create("nnrnn", 0), ValueError, r"n=0 is out of range; allowed: >= 1"),
    (lambda: T.create("nnrnn", 8, init="orthogonal"), ValueError, r"init='orthogonal' is not known.*allowed: 'henaff'"),
    (lambda: T.create("nnrnn", 8, upper_init_std=-0.1), ValueError, r"upper_init_std=-0.1 is out of range; allowed"),
    (lambda: T.create("nnrnn", 8, upper_init_std=float("nan")), ValueError, r"upper_init_std=nan"),
    (lambda: T.create("nnrnn", 8, upper_init_std="big"), TypeError, r"upper_init_std must be a number"),
    (lambda: T.create("nnrnn", 8, alpha=0.1), TypeError, r"does not take option\(s\) alpha; allowed: init, upper_init_std, delta, t_decay"),
    (lambda: T.create("nnrnn", 4).penalty(delta=-1.0), ValueError, r"delta=-1.0 is out of range"),
    (lambda: T.create("nnrnn", 4).penalty(t_decay=True), TypeError, r"t_decay must be a number"),
    (lambda: NonNormalTransition.from_matrix(torch.ones(3, 4)), ValueError, r"needs a square matrix, got shape \(3, 4\)"),
])
def test_bad_input_gets_one_line_errors(call, error, match):
    with pytest.raises(error, match=match) as info:
        call()
    assert "\n" not in str(info.value)


def test_training_adds_the_penalty_and_gives_transition_lr_to_the_skew_entries_only():
    """The official protocol: δ Σ(γ−1)² + T decay in the gradient, the orthogonal rate on P only."""
    from stability.model import RecurrentNet
    from stability.optim import make_optimizer, penalty

    torch.manual_seed(0)
    model = RecurrentNet(2, 6, 1, "nnrnn", delta=0.5, t_decay=0.25).double()
    t = model.transition
    with torch.no_grad():
        t.gammas.add_(0.5)
        t.upper_params.fill_(2.0)
    expected = 0.5 * (t.gammas - 1).pow(2).sum() + 0.5 * 0.25 * t.upper_params.pow(2).sum()
    assert torch.allclose(penalty(model), expected)
    opt = make_optimizer(model, "adam", 1e-2, 1e-4)
    slow = [g for g in opt.param_groups if g["lr"] == 1e-4]
    assert len(slow) == 1 and [id(p) for p in slow[0]["params"]] == [id(t.skew_params)]
    assert penalty(RecurrentNet(2, 6, 1, "dense")) is None


def test_penalty_options_are_checked():
    with pytest.raises(ValueError, match="delta"):
        T.create("nnrnn", 4, delta=-1.0)
