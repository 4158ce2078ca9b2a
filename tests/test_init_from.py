"""Inverses of the transitions (inverse, set_matrix_, from_matrix) and starting from another's W."""
import math

import pytest
import torch

import stability.transitions as T
from stability import RecurrentNet
from stability.transitions import Transition

from test_parametrize import random_orthogonal


@pytest.fixture
def float64():
    """Build every transition in float64 (its own random draws included)."""
    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        yield
    finally:
        torch.set_default_dtype(before)


def test_every_builtin_has_an_inverse():
    for name in ["cayley", "dense", "exprnn", "householder", "spectral"]:
        assert T.get(name).has_inverse()

    class NoInverse(Transition):
        def matrix(self):
            return torch.eye(self.n)

    assert not NoInverse.has_inverse()
    with pytest.raises(NotImplementedError, match="has no inverse"):
        NoInverse(3).inverse(torch.eye(3))
    with pytest.raises(TypeError, match="no from_matrix"):
        NoInverse.from_matrix(torch.eye(3))


@pytest.mark.parametrize("name, options, det", [
    ("householder", {}, -1.0), ("householder", {"renormalize": False}, 1.0),
    ("exprnn", {}, 1.0), ("cayley", {"negatives": 3}, -1.0), ("cayley", {"negatives": 0}, 1.0),
    ("spectral", {}, -1.0), ("dense", {}, 1.0)])
def test_from_matrix_reproduces_an_orthogonal_w(name, options, det):
    q = random_orthogonal(10, det, seed=3)
    state = torch.random.get_rng_state()
    t = T.get(name).from_matrix(q, **options)
    assert torch.equal(state, torch.random.get_rng_state())  # draws nothing from the global generator
    assert (t.matrix().detach() - q).abs().max() < 1e-10
    assert next(t.parameters()).dtype == torch.float64


def test_inverse_does_not_read_the_parameters():
    t = T.create("cayley", 6, negatives=2).double()
    q = random_orthogonal(6, 1.0, seed=4)
    values = t.inverse(q)
    del t.skew_params  # as a parametrization does
    assert torch.equal(t.inverse(q)["skew_params"], values["skew_params"])


def test_spectral_from_cayleys_initial_w_reproduces_it(float64):
    torch.manual_seed(5)
    cayley = T.create("cayley", 32)
    after_cayley = torch.rand(3)
    torch.manual_seed(5)
    spectral = T.create("spectral", 32, init_from="cayley")
    after_spectral = torch.rand(3)
    assert (spectral.matrix() - cayley.matrix()).abs().max().item() < 1e-10
    # the global generator moved exactly as for cayley alone: the rest of a model is drawn the same
    assert torch.equal(after_cayley, after_spectral)
    opts = spectral.options()
    assert opts["init_from"] == "cayley" and opts["init_options"] == {"init": "cayley", "negatives": 16}
    # unit rows, none of them zero (a zero row would never train), except possibly the last,
    # one-coordinate reflector (a constant sign flip or the identity)
    for rows in (spectral.u(), spectral.v()):
        assert (rows[:-1].norm(dim=1) - 1).abs().max() < 1e-12


@pytest.mark.parametrize("target, options, source, source_options", [
    ("householder", {}, "exprnn", {}),
    ("householder", {"renormalize": False}, "cayley", {"negatives": 3}),
    ("exprnn", {}, "cayley", {"negatives": 0}),
    ("exprnn", {}, "householder", {"reflectors": 6}),  # an even number of reflectors: determinant +1
    ("cayley", {"negatives": 4}, "exprnn", {"init": "random"}),
    ("cayley", {}, "householder", {}),
    ("dense", {}, "spectral", {"margin": 0.5}),
    ("spectral", {"margin": 0.5, "center": 0.8}, "spectral", {"margin": 0.3, "center": 0.7}),
])
def test_init_from_reproduces_the_source(float64, target, options, source, source_options):
    torch.manual_seed(6)
    w = T.create(source, 12, **source_options).matrix().detach()
    torch.manual_seed(6)
    t = T.create(target, 12, init_from=source, init_options=source_options, **options)
    assert (t.matrix().detach() - w).abs().max() < 1e-10
    assert t.options()["init_from"] == source


def test_a_model_started_from_cayley_matches_the_cayley_model(float64):
    torch.manual_seed(7)
    ref = RecurrentNet(3, 16, 2, "cayley")
    torch.manual_seed(7)
    model = RecurrentNet(3, 16, 2, "householder", init_from="cayley")
    assert (model.transition.matrix() - ref.transition.matrix()).abs().max() < 1e-10
    assert torch.equal(model.input_map.weight, ref.input_map.weight)
    assert torch.equal(model.readout.bias, ref.readout.bias)


@pytest.mark.parametrize("call, error, match", [
    # dense xavier W has singular values from ~0 to ~2: far outside (0.99, 1.01)
    (lambda: T.create("spectral", 16, init_from="dense"), ValueError,
     r"^spectral \(reflectors=16, margin=0.01, center=1.0, renormalize=True\) cannot start from the "
     r"initial W of 'dense' at n=16: singular values in \[.*\] do not fit strictly inside .* = \[0.99, 1.01\] "
     r"\(the farthest lies \d\.\d+ outside the band\); choose a larger margin"),
    (lambda: T.create("spectral", 16, reflectors=4, init_from="cayley"), ValueError,
     r"cannot start from the initial W of 'cayley' at n=16: .*max error .*reflectors=4 < n=16 .*use reflectors=16$"),
    (lambda: T.create("exprnn", 8, init_from="cayley", init_options={"negatives": 1}), ValueError,
     r"cannot start from the initial W of 'cayley' at n=8: W has determinant -1 but expm of a skew matrix "
     r"reaches only determinant \+1$"),
    (lambda: T.create("cayley", 8, negatives=2, init_from="householder", init_options={"reflectors": 3}),
     ValueError, r"W has determinant -1 but cayley with negatives=2 reaches only determinant \+1$"),
    (lambda: T.create("householder", 8, init_from="spectral", init_options={"center": 0.8, "margin": 0.5}),
     ValueError,
     r"householder inverse needs an orthogonal matrix: max\|WᵀW − I\| = .* > tol="),
    (lambda: T.create("spectral", 8, init_from="givens"), ValueError,
     r"init_from='givens' is not a known transition; allowed: cayley, dense"),
    (lambda: T.create("spectral", 8, init_options={"negatives": 2}), ValueError, r"needs init_from"),
    (lambda: T.create("spectral", 8, init_from="cayley", init_options={"colour": 2}), TypeError,
     r"init_options for init_from='cayley': transition 'cayley' does not take option\(s\) colour"),
    (lambda: T.create("spectral", 8, init_from="cayley", init_options=[1]), TypeError, r"must be a dict"),
    (lambda: T.create("spectral", 8, renormalize=1), TypeError, r"renormalize must be True or False"),
    (lambda: T.get("spectral").from_matrix(torch.ones(3, 4)), ValueError, r"square"),
    (lambda: T.create("exprnn", 4).set_matrix_(torch.eye(5)), ValueError, r"4×4 matrix, got shape \(5, 5\)"),
])
def test_refusals_are_one_clear_line(call, error, match):
    torch.manual_seed(8)
    with pytest.raises(error, match=match) as info:
        call()
    assert "\n" not in str(info.value)


def test_cayley_refuses_w_d_with_eigenvalue_minus_one():
    t = T.create("cayley", 4, negatives=0).double()
    w = torch.diag(torch.tensor([-1.0, -1.0, 1.0, 1.0], dtype=torch.float64))  # det +1, eigenvalue −1
    with pytest.raises(ValueError, match=r"eigenvalue at \(or near\) −1 .*choose another `negatives`"):
        t.set_matrix_(w)
    t2 = T.create("cayley", 4, negatives=2).double()  # D = diag(1, 1, −1, −1): W·D = −I ... also refused
    with pytest.raises(ValueError, match="eigenvalue"):
        t2.set_matrix_(torch.diag(torch.tensor([-1.0, -1.0, 1.0, 1.0], dtype=torch.float64)))
    t3 = T.create("cayley", 4, negatives=2).double()  # but W = D is reached (A = 0)
    d = torch.diag(torch.tensor([1.0, 1.0, -1.0, -1.0], dtype=torch.float64))
    assert (t3.set_matrix_(d).matrix() - d).abs().max() < 1e-14


def test_exprnn_reaches_rotations_by_pi():
    q = torch.diag(torch.tensor([-1.0, -1.0, 1.0], dtype=torch.float64))
    t = T.get("exprnn").from_matrix(q)
    assert (t.matrix().detach() - q).abs().max() < 1e-12
    assert math.isclose(torch.linalg.matrix_norm(t.skew(), 2).item(), math.pi, rel_tol=1e-12)


def test_meta_device_build_skips_the_start():
    with torch.device("meta"):
        t = T.create("spectral", 8, init_from="cayley")
    assert t.options()["init_from"] == "cayley" and t.u.values.device.type == "meta"
