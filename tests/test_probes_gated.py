"""The probes on GatedNet's own step views (LSTM: the whole state (h, c)) against autograd."""
from __future__ import annotations

import pytest
import torch

from stability import create_network
from stability.probes.gradients import gradient_flow
from stability.probes.jacobian import jacobian_decay


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_jacobian_decay_of_a_gated_net_equals_the_autograd_jacobian_of_its_unrolled_step(cell):
    torch.manual_seed(0)
    model = create_network(2, 4, 1, cell).double()
    x = torch.randn(6, 2, 2, dtype=torch.float64)
    (view,) = model.step_views(x)
    df = jacobian_decay(model, x, method="exact", spectral="exact")
    assert df.attrs["path"] == "general" and df.attrs["state"] == view.describe()
    steps = x.shape[0]
    for gap in range(1, steps):
        for b in range(x.shape[1]):
            start = view.states[steps - 1 - gap, b:b + 1]

            def unrolled(s, b=b, gap=gap):
                for t in range(steps - gap, steps):
                    s = view.step(s, view.inputs[t, b:b + 1])
                return s

            jac = torch.autograd.functional.jacobian(unrolled, start).reshape(view.size, view.size)
            row = df[(df.gap == gap) & (df["sample"] == b)].iloc[0]
            assert row.spectral == pytest.approx(float(torch.linalg.matrix_norm(jac, 2)), rel=1e-10)
            assert row.frobenius == pytest.approx(float(torch.linalg.matrix_norm(jac)), rel=1e-10)


def test_gradient_flow_of_a_bidirectional_lstm_has_one_curve_per_direction():
    torch.manual_seed(1)
    model = create_network(1, 3, 2, "lstm", bidirectional=True, readout="all", sequence_length=5).double()
    x = torch.randn(5, 2, 1, dtype=torch.float64)
    df = gradient_flow(model, x, lambda out, y: out[-1].square().sum(), None)
    assert df.attrs["directions"] == ["forward", "backward"]
    assert sorted(df["direction"].unique()) == ["backward", "forward"]
    assert (df["grad_norm"] > 0).all()
