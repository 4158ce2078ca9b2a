"""Every registered transition × hidden size × dtype × recurrence engine, end to end.

The transition list is read from the registry (built-ins and plugins), never written out here,
so a transition registered later gets these checks for free; transitions that a test module
registers for itself are left out. For each one:

- it builds for n ∈ SIZES (or refuses n with a ValueError naming n and what is allowed), and
  ``matrix()`` is (n, n) in the module's dtype;
- RecurrentNet runs it in every engine (ENGINES minus "auto") with the shapes promised, and the
  engines agree with "loop" in outputs and in every parameter's gradient;
- ``matrix()`` passes gradcheck with respect to the transition's parameters (float64, small n);
- ``singular_values()`` equals ``svdvals(matrix())`` (float64);
- ``from_matrix``, where the class offers it, rebuilds the same matrix (float64).
"""
from __future__ import annotations

import inspect
import sys
from pathlib import Path

import pytest
import torch

from stability import RecurrentNet
from stability import transitions as T
from stability.recurrence import ENGINES

pytestmark = pytest.mark.usefixtures("one_thread")

TESTS_DIR = Path(__file__).resolve().parent
SIZES = (1, 2, 3, 8, 17)
GRADCHECK_SIZES = (1, 2, 3)
DTYPES = (torch.float32, torch.float64)
ENGINES_UNDER_TEST = tuple(e for e in ENGINES if e != "auto")
OTHER_ENGINES = tuple(e for e in ENGINES_UNDER_TEST if e != "loop")
#: normwise relative tolerance between an engine and "loop"
ENGINE_RTOL = {torch.float64: 1e-10, torch.float32: 1e-5}
STEPS, BATCH, INPUT_SIZE, OUTPUT_SIZE = 5, 2, 3, 2


def registered_by_a_test(cls) -> bool:
    """A transition class defined in a test module (registered there for that test only)."""
    module = cls.__module__
    if module.split(".")[0] == "tests" or module.rsplit(".", 1)[-1].startswith("test_"):
        return True
    file = getattr(sys.modules.get(module), "__file__", None)
    return file is not None and Path(file).resolve().is_relative_to(TESTS_DIR)


TRANSITIONS = [name for name in T.available() if not registered_by_a_test(T.get(name))]
FROM_MATRIX = [name for name in TRANSITIONS if hasattr(T.get(name), "from_matrix")]


def seed_for(*parts) -> int:
    """A fixed seed per parameter combination (stable across runs and processes)."""
    return sum((i + 1) * ord(c) for i, c in enumerate(":".join(map(str, parts)))) % (2 ** 31)


@torch.no_grad()
def perturb(module: torch.nn.Module, scale: float = 0.3) -> None:
    """Move every floating parameter off its (often symmetric) init so the checks are generic."""
    for p in module.parameters():
        if p.is_floating_point():
            p.add_(scale * torch.randn_like(p))


def build(name: str, n: int, dtype: torch.dtype = torch.float64):
    """The transition for n in ``dtype``, perturbed; None when it refuses n (with a clear message)."""
    torch.manual_seed(seed_for(name, n))
    try:
        t = T.create(name, n)
    except ValueError as exc:
        message = str(exc)
        assert f"n={n}" in message and "allowed" in message, \
            f"{name} refused n={n} without naming n and what is allowed: {message!r}"
        return None
    t = t.to(dtype)
    perturb(t)
    return t


def build_or_skip(name: str, n: int, dtype: torch.dtype = torch.float64):
    t = build(name, n, dtype)
    if t is None:
        pytest.skip(f"{name} refuses n={n} (message checked in test_matrix_shape_and_dtype)")
    return t


def max_rel_err(actual: torch.Tensor, expected: torch.Tensor, floor: float = 0.0) -> float:
    """max|a − b| / max(max|b|, floor) (normwise; 0 when both are exactly zero)."""
    diff = (actual - expected).abs().max().item() if actual.numel() else 0.0
    scale = max(expected.abs().max().item() if expected.numel() else 0.0, floor)
    if diff == 0.0:
        return 0.0
    return diff / scale if scale > 0 else float("inf")


def assert_close_rel(actual, expected, rtol: float, what: str, floor: float = 0.0) -> None:
    assert actual.shape == expected.shape and actual.dtype == expected.dtype, \
        f"{what}: {tuple(actual.shape)} {actual.dtype} vs {tuple(expected.shape)} {expected.dtype}"
    err = max_rel_err(actual, expected, floor)
    assert err <= rtol, f"{what}: relative error {err:.3g} > {rtol:g}"


def test_the_registry_is_covered():
    assert {"dense", "exprnn", "cayley", "householder", "spectral"} <= set(TRANSITIONS)
    assert set(ENGINES_UNDER_TEST) == {"fused", "native", "loop"}


# --- shapes --------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("name", TRANSITIONS)
def test_matrix_shape_and_dtype(name, n, dtype):
    t = build(name, n, dtype)
    if t is None:
        return  # refused with a message naming n and what is allowed (asserted in build)
    assert t.n == n
    w = t.matrix()
    assert w.shape == (n, n) and w.dtype == dtype
    assert torch.isfinite(w).all()
    sv = t.singular_values()
    assert sv.shape == (n,) and sv.dtype == dtype


@pytest.mark.parametrize("name", TRANSITIONS)
def test_size_zero_is_refused_naming_n(name):
    with pytest.raises(ValueError, match=r"n=0 .*allowed"):
        T.create(name, 0)


@pytest.mark.parametrize("name", TRANSITIONS)
def test_size_options_beyond_n_are_refused(name):
    """Options counting rows or columns of W (reflectors, negatives) stop at n, and say so."""
    n = 3
    counted = [opt for opt in ("reflectors", "negatives") if opt in T.option_names(name)]
    if not counted:
        pytest.skip(f"{name} has no option bounded by n")
    for opt in counted:
        with pytest.raises(ValueError, match=rf"{opt}={n + 1} is out of range; allowed: \d+\.\.{n}"):
            T.create(name, n, **{opt: n + 1})


@pytest.mark.parametrize("name", [n for n in TRANSITIONS if {"margin", "center"} <= set(T.option_names(n))])
def test_margin_at_or_above_center_is_refused(name):
    with pytest.raises(ValueError, match=r"allowed: 0 <= margin < center"):
        T.create(name, 4, margin=1.0, center=1.0)


# --- every engine agrees with the loop ------------------------------------------------------------

def run_model(name: str, n: int, dtype: torch.dtype, engine: str, state: dict | None):
    torch.manual_seed(seed_for("model", name, n))
    model = RecurrentNet(input_size=INPUT_SIZE, hidden_size=n, output_size=OUTPUT_SIZE,
                         transition=name, engine=engine).to(dtype)
    if state is None:
        perturb(model.transition)
    else:
        model.load_state_dict(state)
    gen = torch.Generator().manual_seed(seed_for("data", n))
    x = torch.randn(STEPS, BATCH, INPUT_SIZE, generator=gen, dtype=torch.float64).to(dtype)
    out_weight = torch.randn(STEPS, BATCH, OUTPUT_SIZE, generator=gen, dtype=torch.float64).to(dtype)
    state_weight = torch.randn(STEPS, BATCH, n, generator=gen, dtype=torch.float64).to(dtype)
    out, states = model(x)
    # a loss reading both outputs and states, so every path to W carries gradient
    ((out * out_weight).sum() + (states * state_weight).sum()).backward()
    grads = {k: p.grad for k, p in model.named_parameters()}
    return model, out.detach(), states.detach(), grads


@pytest.mark.parametrize("engine", OTHER_ENGINES)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("name", TRANSITIONS)
def test_engine_matches_loop(name, n, dtype, engine):
    if build(name, n) is None:
        pytest.skip(f"{name} refuses n={n}")
    ref_model, ref_out, ref_states, ref_grads = run_model(name, n, dtype, "loop", None)
    state = {k: v.clone() for k, v in ref_model.state_dict().items()}
    _, out, states, grads = run_model(name, n, dtype, engine, state)
    rtol = ENGINE_RTOL[dtype]
    assert ref_out.shape == out.shape == (STEPS, BATCH, OUTPUT_SIZE)
    assert ref_states.shape == states.shape == (STEPS, BATCH, n)
    assert out.dtype == states.dtype == dtype
    assert_close_rel(out, ref_out, rtol, f"{engine} outputs")
    assert_close_rel(states, ref_states, rtol, f"{engine} hidden states")
    assert grads.keys() == ref_grads.keys()
    # a gradient that is zero in exact arithmetic (a lone reflector at n = 1 is −1 whatever its vector)
    # is rounding noise in both engines: compare it on the scale of the model's other gradients, with
    # room for ten units of the dtype's rounding (float32 on an AMD EPYC: 1.9e-6 against a largest
    # gradient of 11.2, 1.4 eps of it; a floor of 1e-2 of it allowed 1.1e-6)
    scale = max(1e-2, 10 * torch.finfo(dtype).eps / rtol)
    floor = scale * max(g.abs().max().item() for g in ref_grads.values() if g.numel())
    for key, ref in ref_grads.items():
        assert ref is not None and grads[key] is not None, f"{key}: no gradient"
        assert_close_rel(grads[key], ref, rtol, f"{engine} gradient of {key}", floor)
    w_grads = [ref_grads[k] for k in ref_grads if k.startswith("transition.")]
    if any(g.numel() for g in w_grads):  # e.g. exprnn/cayley at n=1 have no parameters
        assert any(g.abs().max() > 0 for g in w_grads if g.numel()), "W's parameters got no gradient"


# --- gradcheck of matrix() -------------------------------------------------------------------------

@pytest.mark.parametrize("n", GRADCHECK_SIZES)
@pytest.mark.parametrize("name", TRANSITIONS)
def test_gradcheck_matrix(name, n):
    t = build_or_skip(name, n)
    names = [k for k, _ in t.named_parameters()]
    values = tuple(p.detach().clone().requires_grad_(True) for _, p in t.named_parameters())
    if not any(v.numel() for v in values):
        # nothing to differentiate (e.g. a skew matrix at n = 1): W must then be a constant
        assert not any(p.requires_grad for p in t.parameters() if p.numel())
        return

    def matrix_of(*vals):
        return torch.func.functional_call(t, dict(zip(names, vals)), ())

    assert torch.allclose(matrix_of(*values), t.matrix())
    assert torch.autograd.gradcheck(matrix_of, values, eps=1e-6, atol=1e-7, rtol=1e-5)


# --- singular values ---------------------------------------------------------------------------------

@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("name", TRANSITIONS)
def test_singular_values_match_svdvals(name, n):
    t = build_or_skip(name, n)
    with torch.no_grad():
        sv, expected = t.singular_values(), torch.linalg.svdvals(t.matrix())
    assert sv.shape == expected.shape == (n,)
    torch.testing.assert_close(sv, expected, rtol=0, atol=1e-10)


# --- from_matrix round trip ------------------------------------------------------------------------------

@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("name", FROM_MATRIX)
def test_from_matrix_round_trip(name, n):
    t = build_or_skip(name, n)
    cls = type(t)
    # pass along the options from_matrix takes (e.g. spectral's band), so the same configuration is rebuilt
    accepted = inspect.signature(cls.from_matrix).parameters
    options = {k: v for k, v in t.options().items() if k in accepted}
    with torch.no_grad():
        w = t.matrix().clone()
        t2 = cls.from_matrix(w, **options)
        assert isinstance(t2, cls) and t2.n == n
        w2 = t2.matrix()
    assert w2.shape == (n, n) and w2.dtype == torch.float64
    torch.testing.assert_close(w2, w, rtol=0, atol=1e-8)
    if options:  # and with the class's own defaults
        with torch.no_grad():
            w3 = cls.from_matrix(w).matrix()
        torch.testing.assert_close(w3, w, rtol=0, atol=1e-8)
