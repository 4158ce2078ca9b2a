"""The probe registry and init_study; every probe on every registered transition."""
import math

import pytest
import pandas as pd
import torch

import stability.probes as P
from stability.transitions import available as transitions_available

from test_probes_common import probes_one_thread  # noqa: F401 (autouse fixture)


def test_registry():
    assert P.available() == ["gradient_flow", "jacobian", "lyapunov", "spectrum"]
    assert P.get("jacobian") is P.jacobian_decay
    assert P.get("gradient_flow") is P.gradient_flow and P.get("gradients") is P.gradient_flow
    assert P.get("lyapunov") is P.lyapunov_spectrum and P.get("spectrum") is P.spectrum
    with pytest.raises(ValueError, match=r"unknown probe 'nope'; "
                                         r"available: gradient_flow, jacobian, lyapunov, spectrum"):
        P.get("nope")


def test_register_custom_probe():
    @P.register("trace_probe")
    def trace_probe(model):
        return {"trace": float(model.transition.matrix().detach().trace())}

    try:
        assert "trace_probe" in P.available()
        df = P.init_study("dense", "trace_probe", seeds=[0], hidden_size=4, T=2)
        assert list(df.columns) == ["transition", "options", "seed", "trace"]
    finally:
        P.PROBES.unregister("trace_probe")


def test_grid_labels_and_reproducibility():
    state = torch.get_rng_state()
    spec = ["dense", ("spectral", [{"reflectors": 4, "margin": 0.1}, {"reflectors": 4, "margin": 0.5}])]
    df = P.init_study(spec, "jacobian", seeds=[0, 1], hidden_size=8, T=12, batch=2)
    assert torch.equal(torch.get_rng_state(), state)  # the caller's RNG is untouched
    assert list(df.columns[:4]) == ["transition", "options", "seed", "gap"]
    assert df.groupby(["options", "seed"]).size().tolist() == [12 * 2] * 6
    assert sorted(df.options.unique()) == ["dense", "spectral(reflectors=4, margin=0.1)",
                                           "spectral(reflectors=4, margin=0.5)"]
    again = P.init_study({"spectral": {"reflectors": 4, "margin": 0.5}}, "jacobian", seeds=[1], hidden_size=8, T=12,
                         batch=2)
    ref = df[(df.options == "spectral(reflectors=4, margin=0.5)") & (df.seed == 1)]
    assert (again.log_spectral.to_numpy() == ref.log_spectral.to_numpy()).all()
    other = df[(df.options == "dense")]
    assert not (other[other.seed == 0].log_spectral.to_numpy() == other[other.seed == 1].log_spectral.to_numpy()).all()


def test_reduce_to_one_row_per_model():
    df = P.init_study(["dense", "exprnn"], "jacobian", seeds=range(2), hidden_size=8, T=20, reduce=P.half_life)
    assert list(df.columns) == ["transition", "options", "seed", "decay_rate", "half_life",
                                "fit_min_gap", "fit_max_gap", "max_gap"] and len(df) == 4
    assert (df.max_gap == 19).all() and (df.fit_min_gap == 0).all()
    lyap = P.init_study("cayley", "lyapunov", seeds=[3], hidden_size=8, T=20, k=3)
    assert len(lyap) == 3 and lyap.attrs["probe"] == "lyapunov"
    flow = P.init_study("householder", "gradient_flow", seeds=[0], hidden_size=8, T=10, reduce=P.grad_ratio)
    assert list(flow.columns) == ["transition", "options", "seed", "value"] and flow.value.iloc[0] > 0


@pytest.mark.parametrize("transition", sorted(transitions_available()))
@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
def test_every_probe_on_every_transition(transition, nonlinearity):
    for probe in P.available():
        df = P.init_study(transition, probe, seeds=[0], hidden_size=20, T=40, batch=2, nonlinearity=nonlinearity)
        assert len(df) > 0 and (df.transition == transition).all()
        numeric = df.select_dtypes("number").drop(columns="seed")
        assert not numeric.isna().any().any(), (probe, transition)
        if probe == "jacobian":
            assert math.isfinite(P.half_life(df)["decay_rate"]) or nonlinearity == "relu"


def test_bad_inputs():
    with pytest.raises(ValueError, match="unknown probe 'bogus'"):
        P.init_study("dense", "bogus")
    with pytest.raises(ValueError, match="seeds is empty"):
        P.init_study("dense", "spectrum", seeds=[])
    with pytest.raises(ValueError, match="unknown transition 'nope'"):
        P.init_study("nope", "spectrum")
    with pytest.raises(TypeError, match="does not take option"):
        P.init_study([("dense", {"margin": 0.1})], "spectrum")
    with pytest.raises(TypeError, match=r"transitions entry 3 must be a name or a \(name, options\) pair"):
        P.init_study([3], "spectrum")
    with pytest.raises(ValueError, match=r"T=0 is out of range"):
        P.init_study("dense", "jacobian", T=0)
    with pytest.raises(ValueError, match=r"dtype='half' is not known"):
        P.init_study("dense", "spectrum", dtype="half")


def test_options_in_the_suites_grid_form():
    """A dict of lists is a grid, as in a suite's options: the same models as the list of dicts."""
    grid = P.init_study([("spectral", {"reflectors": 4, "margin": [0.1, 0.5]})], "spectrum", seeds=[0],
                        hidden_size=6)
    listed = P.init_study([("spectral", [{"reflectors": 4, "margin": 0.1}, {"reflectors": 4, "margin": 0.5}])],
                          "spectrum", seeds=[0], hidden_size=6)
    assert sorted(grid.options.unique()) == ["spectral(reflectors=4, margin=0.1)", "spectral(reflectors=4, margin=0.5)"]
    pd.testing.assert_frame_equal(grid, listed)
