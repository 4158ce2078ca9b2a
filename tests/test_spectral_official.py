"""The Spectral-RNN against the official formula, and the official training step's re-normalization.

The official code (zhangjiong724/spectral-RNN) keeps U and V as (k, n) matrices, takes their
upper triangles (``tf.matrix_band_part(·, 0, -1)``), and applies reflector i to the last n − i
coordinates of a row vector h: h ← h·H(v₀)···H(v_{k−1}), then ·Σ, then ·H(u_{k−1})···H(u₀).
As a map on columns that is W = U Σ Vᵀ with U = H(u₀)···H(u_{k−1}), V likewise, and every
σᵢ = 2r(sigmoid(pᵢ) − ½) + σ*. After every optimizer step it scales each reflector row to unit
length (``code/rnn.py``).
"""
import numpy as np
import pytest
import torch

import stability.transitions as T
from stability import RecurrentNet
from stability.tasks import create
from stability.train import after_step, train

pytestmark = pytest.mark.usefixtures("one_thread")


# --- the official formula, from its equations (numpy, float64) ------------------------------------
def reflector(u: np.ndarray) -> np.ndarray:
    """H(u) = I − 2uuᵀ/‖u‖² (the identity for u = 0)."""
    n = u.shape[0]
    norm2 = u @ u
    return np.eye(n) if norm2 == 0 else np.eye(n) - 2.0 * np.outer(u, u) / norm2


def official_w(u_full: np.ndarray, v_full: np.ndarray, p: np.ndarray, r: float, sigma_star: float) -> np.ndarray:
    """W = U Σ Vᵀ, U = H(u₀)···H(u_{k−1}) from the rows of triu(u_full), V likewise."""
    u_rows, v_rows = np.triu(u_full), np.triu(v_full)
    n = u_full.shape[1]
    u, v = np.eye(n), np.eye(n)
    for ui, vi in zip(u_rows, v_rows):
        u, v = u @ reflector(ui), v @ reflector(vi)
    sigma = 2.0 * r * (1.0 / (1.0 + np.exp(-p)) - 0.5) + sigma_star
    return u @ np.diag(sigma) @ v.T


def official_row_map(u_full, v_full, p, r, sigma_star, h: np.ndarray) -> np.ndarray:
    """The official cell's order of operations on row vectors h (B, n): reflector i touches the
    last n − i coordinates; V's reflectors first, then Σ, then U's in reverse order."""
    u_rows, v_rows = np.triu(u_full), np.triu(v_full)
    k, n = u_full.shape

    def reflect_tail(h, vec, i):
        tail = vec[i:]
        h = h.copy()
        h[:, i:] -= 2.0 * np.outer(h[:, i:] @ tail, tail) / (tail @ tail)
        return h

    for i in range(k):
        h = reflect_tail(h, v_rows[i], i)
    h = h * (2.0 * r * (1.0 / (1.0 + np.exp(-p)) - 0.5) + sigma_star)
    for i in reversed(range(k)):
        h = reflect_tail(h, u_rows[i], i)
    return h


@pytest.mark.parametrize("n, k", [(12, 3), (12, 11), (12, 12), (7, 7), (16, 4)])
def test_matrix_equals_the_official_formula(n, k):
    rng = np.random.default_rng(n * 100 + k)
    u_full, v_full = rng.standard_normal((k, n)), rng.standard_normal((k, n))
    p = rng.standard_normal(n)
    r, sigma_star = 0.3, 1.0
    t = T.create("spectral", n, reflectors=k, margin=r, center=sigma_star, renormalize=False).double()
    with torch.no_grad():
        t.u.set_(torch.from_numpy(np.triu(u_full)))
        t.v.set_(torch.from_numpy(np.triu(v_full)))
        t.p.copy_(torch.from_numpy(p))
    ours = t.matrix().detach().numpy()
    expected = official_w(u_full, v_full, p, r, sigma_star)
    assert np.abs(ours - expected).max() < 1e-12
    # and the official order of operations on row vectors is h ↦ (W hᵀ)ᵀ
    h = rng.standard_normal((5, n))
    assert np.abs(official_row_map(u_full, v_full, p, r, sigma_star, h) - h @ expected.T).max() < 1e-12
    assert np.abs(np.linalg.svd(expected, compute_uv=False) - t.singular_values().detach().numpy()).max() < 1e-12


# --- re-normalization -----------------------------------------------------------------------------
def row_norms(t) -> torch.Tensor:
    if t.name == "spectral":
        return torch.cat([t.u().norm(dim=1), t.v().norm(dim=1)])
    return t.vectors.norm(dim=1)


@pytest.mark.parametrize("name, options", [("spectral", {"reflectors": 9, "margin": 0.2}),
                                           ("spectral", {"margin": 0.2}),
                                           ("householder", {}), ("householder", {"reflectors": 5})])
def test_after_step_keeps_w_and_makes_rows_unit(name, options):
    torch.manual_seed(0)
    t = T.create(name, 24, **options).double()
    assert torch.allclose(row_norms(t), torch.ones(()).double(), atol=1e-12)  # unit rows from the start
    reflector_params = [t.u.values, t.v.values] if name == "spectral" else [t.vectors]
    with torch.no_grad():  # rows of any length, as an optimizer would leave them
        for p in reflector_params:
            p.mul_(torch.empty_like(p).uniform_(0.5, 3.0))
        if name == "spectral":
            t.p.normal_()
    assert (row_norms(t) - 1).abs().max() > 0.1
    before = t.matrix().detach().clone()
    t.after_step()
    assert (t.matrix().detach() - before).abs().max() < 1e-12
    assert (row_norms(t) - 1).abs().max() < 1e-12


def test_renormalize_false_is_a_no_op_and_keeps_the_old_init():
    torch.manual_seed(1)
    t = T.create("spectral", 16, renormalize=False).double()
    norms = row_norms(t)
    assert (norms - 1).abs().max() > 0.5  # N(0, 1) entries: row i has norm ≈ √(n − i)
    values = [p.detach().clone() for p in t.parameters()]
    t.after_step()
    assert all(torch.equal(a, b) for a, b in zip(values, t.parameters()))
    assert t.options()["renormalize"] is False and T.create("spectral", 4).options()["renormalize"] is True
    assert T.create("householder", 4).options()["renormalize"] is True


def test_a_zero_row_stays_zero():
    t = T.create("householder", 6).double()
    with torch.no_grad():
        t.vectors[2] = 0.0
        t.vectors[4] *= 5.0
    before = t.matrix().detach().clone()
    t.after_step()
    assert torch.equal(t.vectors[2], torch.zeros(6, dtype=torch.float64))
    assert (t.matrix().detach() - before).abs().max() < 1e-12


@pytest.mark.parametrize("transition", ["spectral", "householder"])
def test_training_keeps_every_row_unit_norm(transition):
    task = create("adding", T=6)
    torch.manual_seed(2)
    model = RecurrentNet(task.input_size, 12, task.output_size, transition, reflectors=6)
    start = [p.detach().clone() for p in model.transition.parameters()]
    train(model, task, 5, batch_size=8, optimizer="adam", lr=0.05, progress=False)
    moved = max((p.detach() - s).abs().max().item() for p, s in zip(model.transition.parameters(), start))
    assert moved > 1e-3  # the rows did move...
    norms = row_norms(model.transition).detach()
    assert (norms - 1).abs().max() < 1e-6  # ...and were scaled back to unit length after every step


def test_after_step_of_a_model_skips_transitions_without_parameters():
    from torch import nn

    from stability.parametrize import orthogonal_

    lin = nn.Linear(4, 4)
    orthogonal_(lin, map="householder", fit="project")
    after_step(lin)  # the map's own parameter lives in the parametrization: nothing to do, no error
    model = RecurrentNet(2, 4, 1, "spectral", renormalize=False)
    with torch.no_grad():
        model.transition.u.values.mul_(3.0)
    after_step(model)
    assert (row_norms(model.transition) - 1).abs().max() > 0.5  # renormalize=False: left alone
